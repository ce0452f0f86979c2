// Backend selection by name: the one place that knows which backends exist.
#ifndef PSGRID_CORE_BACKEND_REGISTRY_H_
#define PSGRID_CORE_BACKEND_REGISTRY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/backend/backend.h"

namespace psgrid {

// A backend by name:
//   "cpu"              the CPU (always);
//   "cuda", "cuda:N"   the CUDA backend on device 0 or N. UNAVAILABLE when this build has no
//                      CUDA backend, when no CUDA device is usable ("cuda: no CUDA device is
//                      usable: <why>") or when device N does not exist;
//   "auto"             "cuda:0" when that can be created, else "cpu". When it falls back and
//                      `fallback` is not null, *fallback receives why (the message that "cuda"
//                      would have failed with), for the caller's warning; it is cleared
//                      otherwise.
// INVALID_ARGUMENT for any other name, "cuda:x" and "cuda:-1" included.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const std::string& name,
                                                       std::string* fallback = nullptr);

// Names of the backends compiled into this binary ("cpu", and "cuda" when built with CUDA),
// whether or not a device is present.
std::vector<std::string> AvailableBackends();

}  // namespace psgrid

#endif  // PSGRID_CORE_BACKEND_REGISTRY_H_
