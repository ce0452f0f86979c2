// RETURN_IF_ERROR / ASSIGN_OR_RETURN for absl::Status (the Debian Abseil predates its own).
#ifndef PSGRID_CORE_STATUS_MACROS_H_
#define PSGRID_CORE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define PSGRID_CONCAT_INNER_(a, b) a##b
#define PSGRID_CONCAT_(a, b) PSGRID_CONCAT_INNER_(a, b)

// Returns the status of `expr` from the current function if it is not OK.
#define RETURN_IF_ERROR(expr)                                  \
  do {                                                         \
    ::absl::Status psgrid_status_ = (expr);                    \
    if (!psgrid_status_.ok()) return psgrid_status_;           \
  } while (0)

// `lhs = value of rexpr`, or returns its error status from the current function.
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  PSGRID_ASSIGN_OR_RETURN_IMPL_(PSGRID_CONCAT_(psgrid_statusor_, __LINE__), lhs, rexpr)

#define PSGRID_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                  \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = std::move(statusor).value()

#endif  // PSGRID_CORE_STATUS_MACROS_H_
