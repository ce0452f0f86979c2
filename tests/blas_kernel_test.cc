// OpenBLAS kernel selection for CPUs newer than the OpenBLAS build.
#include "core/backend/blas_kernel.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

TEST(BlasKernel, AModernKernelIsLeftAlone) {
  for (const char* k : {"Haswell", "Zen", "SkylakeX", "skylakex", "SapphireRapids"}) {
    EXPECT_EQ(RecommendedBlasKernel(k), "") << k;
  }
}

TEST(BlasKernel, AGenericFallbackIsReplacedByWhatTheCpuSupports) {
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const std::string expected = avx512 ? "SkylakeX" : avx2 ? "Haswell" : "";
  EXPECT_EQ(RecommendedBlasKernel("Prescott"), expected);
  EXPECT_EQ(RecommendedBlasKernel("Nehalem"), expected);
}

TEST(BlasKernel, TheLoadedKernelHasAName) { EXPECT_FALSE(BlasKernelName().empty()); }

}  // namespace
}  // namespace psgrid
