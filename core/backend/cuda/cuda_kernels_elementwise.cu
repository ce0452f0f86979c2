// CudaBackend: the element-wise operations (bias rows, activations, Axpby), the bias gradient
// SumRows, FillZeros and SwapLeadingDims.
//
// One thread per element in grid-stride loops; the formulas are CpuBackend's, written in the
// same order of operations (the folder compiles with --fmad=false, as the CPU side with
// -ffp-contract=off).
#include "core/backend/cuda/cuda_kernels.cuh"

namespace psgrid {
namespace cuda_internal {
namespace {

__global__ void BroadcastRowsKernel(int64_t rows, int64_t cols, const float* bias, float* y) {
  const int64_t total = rows * cols;
  for (int64_t i = GlobalThread(); i < total; i += GridThreads()) y[i] = bias[i % cols];
}

// out[j] = Σ_i x[i, j]: a block of 32 columns × 8 row lanes; lane r sums rows r, r + 8, ...,
// then the 8 lane sums of a column are added in lane order.
constexpr int kSumRowsLanes = 8;
__global__ void SumRowsKernel(int64_t rows, int64_t cols, const float* x, float* out) {
  __shared__ float partial[kSumRowsLanes][33];
  const int64_t j = static_cast<int64_t>(blockIdx.x) * 32 + threadIdx.x;
  float s = 0.0f;
  if (j < cols) {
    for (int64_t i = threadIdx.y; i < rows; i += kSumRowsLanes) s += x[i * cols + j];
  }
  partial[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && j < cols) {
    float t = partial[0][threadIdx.x];
    for (int r = 1; r < kSumRowsLanes; ++r) t += partial[r][threadIdx.x];
    out[j] = t;
  }
}

// y[i] = op(x[i]) and y[i] = op(a[i], b[i]); y may be one of the inputs.
template <typename Op>
__global__ void Map1(int64_t n, Op op, const float* x, float* y) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) y[i] = op(x[i]);
}
template <typename Op>
__global__ void Map2(int64_t n, Op op, const float* a, const float* b, float* y) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) y[i] = op(a[i], b[i]);
}

// std::max(x, 0.0f): x unless x < 0, so that NaN and −0 pass through as on the CPU.
struct Relu {
  __device__ float operator()(float x) const { return x < 0.0f ? 0.0f : x; }
};
struct ReluGrad {  // (y, dy)
  __device__ float operator()(float y, float dy) const { return y > 0.0f ? dy : 0.0f; }
};
struct Sigmoid {
  __device__ float operator()(float x) const { return 1.0f / (1.0f + expf(-x)); }
};
struct SigmoidGrad {
  __device__ float operator()(float y, float dy) const { return dy * y * (1.0f - y); }
};
struct Tanh {
  __device__ float operator()(float x) const { return tanhf(x); }
};
struct TanhGrad {
  __device__ float operator()(float y, float dy) const { return dy * (1.0f - y * y); }
};
struct Scale {  // Axpby with beta = 0: y's old value is not read
  float alpha;
  __device__ float operator()(float x) const { return alpha * x; }
};
struct AddScaled {  // beta = 1: y + alpha·x
  float alpha;
  __device__ float operator()(float x, float y) const { return y + alpha * x; }
};
struct Blend {  // alpha·x + beta·y
  float alpha, beta;
  __device__ float operator()(float x, float y) const { return alpha * x + beta * y; }
};

// dst[j, i, :] = src[i, j, :]: one thread per element of dst (coalesced writes; reads are
// coalesced within a row of `inner`).
__global__ void SwapLeadingDimsKernel(int64_t d0, int64_t d1, int64_t inner, const float* src,
                                      float* dst) {
  const int64_t total = d0 * d1 * inner;
  for (int64_t idx = GlobalThread(); idx < total; idx += GridThreads()) {
    const int64_t k = idx % inner;
    const int64_t t = idx / inner;  // j·d0 + i
    const int64_t i = t % d0;
    const int64_t j = t / d0;
    dst[idx] = src[(i * d1 + j) * inner + k];
  }
}

}  // namespace

cudaError_t ProbeKernelImage() {
  cudaFuncAttributes attributes;
  return cudaFuncGetAttributes(&attributes, BroadcastRowsKernel);
}

}  // namespace cuda_internal

using cuda_internal::BlocksFor;
using cuda_internal::kThreads;

void CudaBackend::BroadcastRows(int64_t rows, int64_t cols, const float* bias, float* y) {
  if (rows <= 0 || cols <= 0) return;
  Activate();
  cuda_internal::BroadcastRowsKernel<<<BlocksFor(rows * cols), kThreads, 0, stream_>>>(rows, cols,
                                                                                       bias, y);
  CheckLaunch("BroadcastRows");
}

void CudaBackend::SumRows(int64_t rows, int64_t cols, const float* x, float* out) {
  if (cols <= 0) return;
  Activate();
  const dim3 block(32, cuda_internal::kSumRowsLanes);
  const dim3 grid(static_cast<unsigned>((cols + 31) / 32));
  cuda_internal::SumRowsKernel<<<grid, block, 0, stream_>>>(rows, cols, x, out);
  CheckLaunch("SumRows");
}

namespace {

template <typename Op>
void LaunchMap1(cudaStream_t stream, int64_t n, Op op, const float* x, float* y) {
  cuda_internal::Map1<<<BlocksFor(n), kThreads, 0, stream>>>(n, op, x, y);
}
template <typename Op>
void LaunchMap2(cudaStream_t stream, int64_t n, Op op, const float* a, const float* b, float* y) {
  cuda_internal::Map2<<<BlocksFor(n), kThreads, 0, stream>>>(n, op, a, b, y);
}

}  // namespace

void CudaBackend::ReluForward(int64_t n, const float* x, float* y) {
  if (n <= 0) return;
  Activate();
  LaunchMap1(stream_, n, cuda_internal::Relu{}, x, y);
  CheckLaunch("ReluForward");
}

void CudaBackend::ReluBackward(int64_t n, const float* y, const float* dy, float* dx) {
  if (n <= 0) return;
  Activate();
  LaunchMap2(stream_, n, cuda_internal::ReluGrad{}, y, dy, dx);
  CheckLaunch("ReluBackward");
}

void CudaBackend::SigmoidForward(int64_t n, const float* x, float* y) {
  if (n <= 0) return;
  Activate();
  LaunchMap1(stream_, n, cuda_internal::Sigmoid{}, x, y);
  CheckLaunch("SigmoidForward");
}

void CudaBackend::SigmoidBackward(int64_t n, const float* y, const float* dy, float* dx) {
  if (n <= 0) return;
  Activate();
  LaunchMap2(stream_, n, cuda_internal::SigmoidGrad{}, y, dy, dx);
  CheckLaunch("SigmoidBackward");
}

void CudaBackend::TanhForward(int64_t n, const float* x, float* y) {
  if (n <= 0) return;
  Activate();
  LaunchMap1(stream_, n, cuda_internal::Tanh{}, x, y);
  CheckLaunch("TanhForward");
}

void CudaBackend::TanhBackward(int64_t n, const float* y, const float* dy, float* dx) {
  if (n <= 0) return;
  Activate();
  LaunchMap2(stream_, n, cuda_internal::TanhGrad{}, y, dy, dx);
  CheckLaunch("TanhBackward");
}

void CudaBackend::Axpby(int64_t n, float alpha, const float* x, float beta, float* y) {
  if (n <= 0) return;
  Activate();
  if (beta == 0.0f) {
    LaunchMap1(stream_, n, cuda_internal::Scale{alpha}, x, y);
  } else if (beta == 1.0f) {
    LaunchMap2(stream_, n, cuda_internal::AddScaled{alpha}, x, y, y);
  } else {
    LaunchMap2(stream_, n, cuda_internal::Blend{alpha, beta}, x, y, y);
  }
  CheckLaunch("Axpby");
}

void CudaBackend::FillZeros(int64_t n, float* y) {
  if (n <= 0) return;
  Activate();
  PSGRID_CUDA_CHECK(cudaMemsetAsync(y, 0, static_cast<size_t>(n) * sizeof(float), stream_));
}

void CudaBackend::SwapLeadingDims(int64_t d0, int64_t d1, int64_t inner, const float* src,
                                  float* dst) {
  const int64_t total = d0 * d1 * inner;
  if (total <= 0) return;
  Activate();
  cuda_internal::SwapLeadingDimsKernel<<<BlocksFor(total), kThreads, 0, stream_>>>(d0, d1, inner,
                                                                                   src, dst);
  CheckLaunch("SwapLeadingDims");
}

}  // namespace psgrid
