// Inside the CUDA backend only: aborting on a CUDA runtime error, and the probe that tells
// whether this binary has kernels for a device. Includes the CUDA runtime API (a C header that
// g++ compiles too), so nothing outside core/backend/cuda includes it.
#ifndef PSGRID_CORE_BACKEND_CUDA_CUDA_CHECK_H_
#define PSGRID_CORE_BACKEND_CUDA_CUDA_CHECK_H_

#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>

namespace psgrid::cuda_internal {

[[noreturn]] inline void CudaCallFailed(const char* file, int line, const char* call,
                                        const char* error) {
  std::fprintf(stderr, "%s:%d: CUDA call failed: %s: %s\n", file, line, call, error);
  std::abort();
}

// The kernels' attributes on the current device: cudaErrorInvalidDeviceFunction (or
// cudaErrorNoKernelImageForDevice) when this binary holds no code that the device can run
// (cuda_kernels_elementwise.cu).
cudaError_t ProbeKernelImage();

}  // namespace psgrid::cuda_internal

// Aborts with the call and the error's text unless `call` returns cudaSuccess.
#define PSGRID_CUDA_CHECK(call)                                                      \
  do {                                                                               \
    const cudaError_t psgrid_cuda_err_ = (call);                                     \
    if (psgrid_cuda_err_ != cudaSuccess) {                                           \
      ::psgrid::cuda_internal::CudaCallFailed(__FILE__, __LINE__, #call,             \
                                              cudaGetErrorString(psgrid_cuda_err_)); \
    }                                                                                \
  } while (0)

#endif  // PSGRID_CORE_BACKEND_CUDA_CUDA_CHECK_H_
