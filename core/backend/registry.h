// Backend selection by name: the one place that knows which backends exist.
#ifndef PSGRID_CORE_BACKEND_REGISTRY_H_
#define PSGRID_CORE_BACKEND_REGISTRY_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/backend/backend.h"

namespace psgrid {

// "cpu" (always); later "cuda[:N]". INVALID_ARGUMENT for an unknown name, UNAVAILABLE for a
// backend that is built but has no usable device.
absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const std::string& name);

// Names of the backends compiled into this binary.
std::vector<std::string> AvailableBackends();

}  // namespace psgrid

#endif  // PSGRID_CORE_BACKEND_REGISTRY_H_
