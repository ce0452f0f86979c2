#include "core/backend/registry.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/backend/cpu_backend.h"

namespace psgrid {

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const std::string& name) {
  if (name == "cpu") return std::make_unique<CpuBackend>();
  return absl::InvalidArgumentError(absl::StrCat("unknown backend '", name, "'; this build has: ",
                                                 absl::StrJoin(AvailableBackends(), ", ")));
}

std::vector<std::string> AvailableBackends() { return {"cpu"}; }

}  // namespace psgrid
