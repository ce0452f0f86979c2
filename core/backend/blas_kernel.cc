#include "core/backend/blas_kernel.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>

extern "C" char* openblas_get_corename(void);

namespace psgrid {
namespace {

// OpenBLAS x86-64 kernels that use AVX2 or better; any other choice on an AVX2 CPU is a
// fallback.
constexpr const char* kModernKernels[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake",
                                          "SapphireRapids"};

bool HasAvx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
}

bool HasAvx2Fma() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }

}  // namespace

std::string BlasKernelName() {
  const char* name = openblas_get_corename();
  return name ? name : "";
}

std::string RecommendedBlasKernel(const std::string& detected) {
  for (const char* k : kModernKernels) {
    if (strcasecmp(detected.c_str(), k) == 0) return "";
  }
  if (HasAvx512()) return "SkylakeX";
  if (HasAvx2Fma()) return "Haswell";
  return "";
}

void ReexecWithBestBlasKernel(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;  // the user's choice stands
  const char* setting = std::getenv("PSGRID_BLAS_KERNEL");
  if (setting != nullptr && std::strcmp(setting, "auto-off") == 0) return;
  if (std::getenv("PSGRID_BLAS_REEXEC") != nullptr) return;  // we already tried once
  const std::string kernel = RecommendedBlasKernel(BlasKernelName());
  if (kernel.empty()) return;
  setenv("OPENBLAS_CORETYPE", kernel.c_str(), 1);
  setenv("PSGRID_BLAS_REEXEC", "1", 1);
  execv("/proc/self/exe", argv);
  // The exec failed: carry on with OpenBLAS's own kernel.
  unsetenv("OPENBLAS_CORETYPE");
}

}  // namespace psgrid
