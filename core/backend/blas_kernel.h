// Choosing OpenBLAS's kernel on CPUs newer than the OpenBLAS build.
//
// Debian 12's OpenBLAS 0.3.21 does not recognise recent CPUs (Sapphire and Emerald Rapids,
// for example) and falls back to its generic "Prescott" SSE3 kernels, about 3x slower than its
// AVX-512 ones on the same machine. OpenBLAS picks its kernel once, when the library loads, from
// OPENBLAS_CORETYPE or its own CPU detection; so the only fix from inside a program is to set
// the variable and start again.
//
//   int main(int argc, char** argv) {
//     psgrid::ReexecWithBestBlasKernel(argv);  // first thing: may not return
//     ...
//   }
#ifndef PSGRID_CORE_BACKEND_BLAS_KERNEL_H_
#define PSGRID_CORE_BACKEND_BLAS_KERNEL_H_

#include <string>

namespace psgrid {

// The kernel OpenBLAS is using now, e.g. "SkylakeX" or "Prescott".
std::string BlasKernelName();

// The OPENBLAS_CORETYPE this CPU should use when OpenBLAS chose `detected`: "SkylakeX" on a
// CPU with AVX-512 (F, BW, DQ, VL), "Haswell" on one with AVX2 and FMA, when `detected` is a
// kernel without AVX2; "" when OpenBLAS's own choice should stand.
std::string RecommendedBlasKernel(const std::string& detected);

// When OpenBLAS fell back to a kernel weaker than the CPU supports and the user set neither
// OPENBLAS_CORETYPE nor PSGRID_BLAS_KERNEL=auto-off, sets OPENBLAS_CORETYPE and re-executes
// this program with the same arguments (once). Returns normally in every other case, including
// a failed exec.
void ReexecWithBestBlasKernel(char** argv);

}  // namespace psgrid

#endif  // PSGRID_CORE_BACKEND_BLAS_KERNEL_H_
