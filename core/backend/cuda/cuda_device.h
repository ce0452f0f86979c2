// The CUDA backend's entry points for the registry: how many devices there are, and a backend on
// one of them. Plain C++ (no CUDA header), for code compiled by g++ alone.
#ifndef PSGRID_CORE_BACKEND_CUDA_CUDA_DEVICE_H_
#define PSGRID_CORE_BACKEND_CUDA_CUDA_DEVICE_H_

#include <memory>

#include "absl/status/statusor.h"
#include "core/backend/backend.h"

namespace psgrid {

// The number of CUDA devices this process can use (>= 1). UNAVAILABLE "cuda: no CUDA device is
// usable: <why>" when there is none: no driver, no device, CUDA_VISIBLE_DEVICES empty, ...
absl::StatusOr<int> CudaDeviceCount();

// A CudaBackend on device `ordinal`. UNAVAILABLE when no device is usable, when ordinal is not
// below CudaDeviceCount(), or when the device cannot be set up (its message says which).
absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(int ordinal);

}  // namespace psgrid

#endif  // PSGRID_CORE_BACKEND_CUDA_CUDA_DEVICE_H_
