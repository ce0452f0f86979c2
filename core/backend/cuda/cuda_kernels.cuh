// Inside the CUDA backend only: what the kernel files share. Launch shapes (grid-stride loops
// over int64 indices), warp and block sums, and the finiteness test of the update kernels.
#ifndef PSGRID_CORE_BACKEND_CUDA_CUDA_KERNELS_CUH_
#define PSGRID_CORE_BACKEND_CUDA_CUDA_KERNELS_CUH_

#include <cuda_runtime.h>

#include <algorithm>
#include <cfloat>
#include <climits>
#include <cstdint>

#include "core/backend/cuda/cuda_backend.h"
#include "core/backend/cuda/cuda_check.h"

namespace psgrid::cuda_internal {

// Threads of a block for the element-wise kernels.
constexpr int kThreads = 256;
// Grid-stride loops cap the grid here: beyond it more blocks bring no speed, only launch cost.
constexpr int64_t kMaxBlocks = 8192;
// The number of partial sums of a two-pass reduction: fixed (not the device's SM count), so that
// a sum is reduced in the same order, hence to the same bits, on every GPU.
constexpr int kReduceBlocks = 256;

// Blocks of `threads` for a grid-stride loop over n items (at least 1).
inline unsigned BlocksFor(int64_t n, int threads = kThreads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::clamp<int64_t>(blocks, 1, kMaxBlocks));
}

// Whether a grid-stride loop over n items (and the indices it computes below n) fits int32_t:
// the last stride past n included.
inline bool Fits32(int64_t n) { return n <= INT32_MAX - kMaxBlocks * kThreads; }

// Calls launch(int32_t{}) when every index below `extent` fits in 32 bits (Fits32), else
// launch(int64_t{}): the launching lambda takes the kernel's index type from its argument.
template <typename Launch>
void WithIndexType(int64_t extent, Launch&& launch) {
  if (Fits32(extent)) {
    launch(int32_t{});
  } else {
    launch(int64_t{});
  }
}

// Index of the calling thread in the grid, and the grid's size, for grid-stride loops.
__device__ inline int64_t GlobalThread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ inline int64_t GridThreads() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// The sum over the warp's 32 lanes, in a fixed tree order; every lane receives it.
template <typename T>
__device__ inline T WarpSum(T v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// The sum over the block (blockDim.x a multiple of 32, at most 1024), valid in thread 0. Every
// thread of the block must call it.
template <typename T>
__device__ inline T BlockSum(T v) {
  __shared__ T warp_sums[32];
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  v = WarpSum(v);
  __syncthreads();  // warp_sums may still be read by a previous call
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < static_cast<int>(blockDim.x / 32) ? warp_sums[lane] : T(0);
    v = WarpSum(v);
  }
  return v;
}

// false for NaN and ±Inf: |x| <= FLT_MAX, as CpuBackend's FiniteMask.
__device__ inline bool IsFinite(float x) { return fabsf(x) <= FLT_MAX; }

}  // namespace psgrid::cuda_internal

#endif  // PSGRID_CORE_BACKEND_CUDA_CUDA_KERNELS_CUH_
