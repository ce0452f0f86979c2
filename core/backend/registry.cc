#include "core/backend/registry.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "core/backend/cpu_backend.h"

#ifdef PSGRID_WITH_CUDA
#include "core/backend/cuda/cuda_device.h"
#endif

namespace psgrid {
namespace {

absl::Status UnknownBackend(const std::string& name) {
  return absl::InvalidArgumentError(
      absl::StrCat("unknown backend '", name,
                   "'; this build has: ", absl::StrJoin(AvailableBackends(), ", "), " (and auto)"));
}

// The device ordinal of "cuda" (0) or "cuda:N"; -1 when `name` is not of that form.
int CudaOrdinal(const std::string& name) {
  const absl::string_view view(name);
  if (view == "cuda") return 0;
  constexpr absl::string_view kPrefix = "cuda:";
  if (view.substr(0, kPrefix.size()) != kPrefix) return -1;
  const absl::string_view digits = view.substr(kPrefix.size());
  if (digits.empty() || digits.size() > 6) return -1;
  for (const char c : digits) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return -1;
  }
  int ordinal = -1;
  return absl::SimpleAtoi(digits, &ordinal) ? ordinal : -1;
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCuda(int ordinal) {
#ifdef PSGRID_WITH_CUDA
  return CreateCudaBackend(ordinal);
#else
  return absl::UnavailableError(absl::StrCat(
      "cuda: this build has no CUDA backend (built without nvcc, or with PSGRID_CUDA=off)"));
#endif
}

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> CreateBackend(const std::string& name,
                                                       std::string* fallback) {
  if (fallback != nullptr) fallback->clear();
  if (name == "cpu") return std::make_unique<CpuBackend>();
  if (name == "auto") {
    absl::StatusOr<std::unique_ptr<Backend>> cuda = CreateCuda(0);
    if (cuda.ok()) return cuda;
    if (fallback != nullptr) *fallback = std::string(cuda.status().message());
    return std::make_unique<CpuBackend>();
  }
  if (name.rfind("cuda", 0) == 0) {
    const int ordinal = CudaOrdinal(name);
    if (ordinal < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "malformed backend '", name, "': want cuda or cuda:N with N a device number"));
    }
    return CreateCuda(ordinal);
  }
  return UnknownBackend(name);
}

std::vector<std::string> AvailableBackends() {
#ifdef PSGRID_WITH_CUDA
  return {"cpu", "cuda"};
#else
  return {"cpu"};
#endif
}

}  // namespace psgrid
