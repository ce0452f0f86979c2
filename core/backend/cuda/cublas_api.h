// Inside the CUDA backend only: the few cuBLAS functions it calls, loaded with dlopen when the
// first CudaBackend is created rather than linked. Mapping libcublas (and libcublasLt, half a
// gigabyte) costs a process about 0.2 s and 200 MB of resident memory at start-up, which every
// CPU-only worker, server and test would otherwise pay.
#ifndef PSGRID_CORE_BACKEND_CUDA_CUBLAS_API_H_
#define PSGRID_CORE_BACKEND_CUDA_CUBLAS_API_H_

#include <cublas_v2.h>

#include <string>

namespace psgrid::cuda_internal {

// cuBLAS's v2 entry points (cublas_v2.h maps cublasCreate to cublasCreate_v2, and so on).
struct CublasApi {
  decltype(&cublasCreate_v2) create;
  decltype(&cublasDestroy_v2) destroy;
  decltype(&cublasSetStream_v2) set_stream;
  decltype(&cublasSetMathMode) set_math_mode;
  decltype(&cublasSgemm_v2) sgemm;
  decltype(&cublasGetStatusString) status_string;
};

// The loaded API, loaded once per process (thread-safe). Null when libcublas cannot be loaded
// or lacks a function; *error then says which.
const CublasApi* LoadCublas(std::string* error);

}  // namespace psgrid::cuda_internal

#endif  // PSGRID_CORE_BACKEND_CUDA_CUBLAS_API_H_
