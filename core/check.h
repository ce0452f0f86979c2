// CHECK for broken invariants of our own code (never for bad input: that gets a Status).
// The Debian Abseil has no absl/log, so this is a small one of our own.
#ifndef PSGRID_CORE_CHECK_H_
#define PSGRID_CORE_CHECK_H_

#include <cstdio>
#include <cstdlib>

#define PSGRID_CHECK(cond, msg)                                                    \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      std::fprintf(stderr, "%s:%d: check failed: %s (%s)\n", __FILE__, __LINE__, #cond, \
                   msg);                                                           \
      std::abort();                                                                \
    }                                                                              \
  } while (0)

#endif  // PSGRID_CORE_CHECK_H_
