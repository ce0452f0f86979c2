// CudaBackend: the operations that hand a value back to the host. The fused softmax
// cross-entropy, the mean squared error, SquaredNorm and AllFinite.
//
// Sums are taken in double in two passes with a fixed shape (per-row or per-block partials in
// scratch memory, then one block adds them in a fixed tree), so a result does not depend on
// scheduling: the same inputs give the same bits on every run. The result goes through the
// backend's Result (device, then pinned host) and the call waits for it.
#include <cmath>

#include "core/backend/cuda/cuda_kernels.cuh"

namespace psgrid {
namespace cuda_internal {
namespace {

// One warp per row of logits. The arg-max is CpuBackend's scan (the first maximum, NaN never
// taken, except that a NaN in column 0 stays the arg-max): each lane scans its columns, then the
// lanes' (value, column) pairs meet in a butterfly where the larger value, or on a tie the lower
// column, wins, so that every lane ends with the row's answer.
__global__ void SoftmaxCrossEntropyRows(int64_t rows, int64_t cols, float inv_rows,
                                        const float* logits, const int32_t* labels, float* dlogits,
                                        double* row_loss, int* row_hit) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = GridThreads() / 32;
  for (int64_t row = GlobalThread() / 32; row < rows; row += warps) {
    const float* z = logits + row * cols;
    float best = 0.0f;
    long long where = -1;
    for (int64_t j = lane; j < cols; j += 32) {
      const float v = z[j];
      if (!isnan(v) && (where < 0 || v > best)) {
        best = v;
        where = j;
      }
    }
    for (int offset = 16; offset > 0; offset /= 2) {
      const float other_best = __shfl_xor_sync(0xffffffffu, best, offset);
      const long long other_where = __shfl_xor_sync(0xffffffffu, where, offset);
      if (other_where >= 0 &&
          (where < 0 || other_best > best || (other_best == best && other_where < where))) {
        best = other_best;
        where = other_where;
      }
    }
    if (where < 0 || isnan(z[0])) where = 0;
    const float max = z[where];
    double sum = 0.0;
    for (int64_t j = lane; j < cols; j += 32) sum += exp(static_cast<double>(z[j] - max));
    sum = WarpSum(sum);
    const int32_t label = labels[row];
    const bool valid = label >= 0 && label < cols;  // else the CPU reads out of bounds
    if (lane == 0) {
      row_loss[row] = valid ? log(sum) - static_cast<double>(z[label] - max) : NAN;
      row_hit[row] = where == label ? 1 : 0;
    }
    if (dlogits != nullptr) {
      float* dz = dlogits + row * cols;
      const float inv_sum = static_cast<float>(1.0 / sum);
      for (int64_t j = lane; j < cols; j += 32) {
        float d = expf(z[j] - max) * inv_sum * inv_rows;
        if (j == label) d -= inv_rows;
        dz[j] = d;
      }
    }
  }
}

// One block: result.sum = Σ row_loss, result.count = Σ row_hit.
__global__ void SumRowResults(int64_t rows, const double* row_loss, const int* row_hit,
                              CudaBackend::Result* result) {
  double loss = 0.0;
  unsigned long long hits = 0;
  for (int64_t i = threadIdx.x; i < rows; i += blockDim.x) {
    loss += row_loss[i];
    hits += static_cast<unsigned long long>(row_hit[i]);
  }
  loss = BlockSum(loss);
  hits = BlockSum(hits);
  if (threadIdx.x == 0) {
    result->sum = loss;
    result->count = hits;
  }
}

// partial[block] = Σ term(i) over the block's elements of a grid-stride loop.
template <typename Term>
__global__ void PartialSums(int64_t n, Term term, double* partial) {
  double s = 0.0;
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) s += term(i);
  s = BlockSum(s);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// One block: result.sum = Σ partial[0, count).
__global__ void SumPartials(int count, const double* partial, CudaBackend::Result* result) {
  double s = 0.0;
  for (int i = threadIdx.x; i < count; i += blockDim.x) s += partial[i];
  s = BlockSum(s);
  if (threadIdx.x == 0) result->sum = s;
}

// (pred − target)² in double; writes 2·(pred − target)/n when dpred is not null.
struct SquaredError {
  const float* pred;
  const float* target;
  float* dpred;
  float scale;
  __device__ double operator()(int64_t i) const {
    const float d = pred[i] - target[i];
    if (dpred != nullptr) dpred[i] = scale * d;
    return static_cast<double>(d) * d;
  }
};

struct Square {
  const float* x;
  __device__ double operator()(int64_t i) const { return static_cast<double>(x[i]) * x[i]; }
};

__global__ void FindNonFinite(int64_t n, const float* x, CudaBackend::Result* result) {
  bool bad = false;
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) bad |= !IsFinite(x[i]);
  if (bad) result->flag = 1;
}

}  // namespace
}  // namespace cuda_internal

using cuda_internal::BlocksFor;
using cuda_internal::kReduceBlocks;
using cuda_internal::kThreads;

double CudaBackend::SoftmaxCrossEntropy(int64_t rows, int64_t cols, const float* logits,
                                        const int32_t* labels, float* dlogits, int64_t* correct) {
  if (rows <= 0) {  // the CPU's 0/0
    if (correct != nullptr) *correct = 0;
    return std::nan("");
  }
  Activate();
  auto* row_loss = static_cast<double*>(Scratch(static_cast<size_t>(rows) * (8 + 4)));
  auto* row_hit = reinterpret_cast<int*>(row_loss + rows);
  constexpr int kRowsPerBlock = kThreads / 32;
  cuda_internal::SoftmaxCrossEntropyRows<<<BlocksFor(rows, kRowsPerBlock), kThreads, 0, stream_>>>(
      rows, cols, 1.0f / static_cast<float>(rows), logits, labels, dlogits, row_loss, row_hit);
  CheckLaunch("SoftmaxCrossEntropy");
  cuda_internal::SumRowResults<<<1, kThreads, 0, stream_>>>(rows, row_loss, row_hit,
                                                            result_device_);
  CheckLaunch("SoftmaxCrossEntropy (sum)");
  const Result& r = FetchResult();
  if (correct != nullptr) *correct = static_cast<int64_t>(r.count);
  return r.sum / static_cast<double>(rows);
}

namespace {

// Queues result.sum = Σ term(i) for i < n (n > 0) in double, by the fixed two-pass reduction.
template <typename Term>
void SumOf(cudaStream_t stream, int64_t n, Term term, double* partial,
           CudaBackend::Result* result) {
  const unsigned blocks = std::min<unsigned>(BlocksFor(n), kReduceBlocks);
  cuda_internal::PartialSums<<<blocks, kThreads, 0, stream>>>(n, term, partial);
  cuda_internal::SumPartials<<<1, kThreads, 0, stream>>>(static_cast<int>(blocks), partial, result);
}

}  // namespace

double CudaBackend::MeanSquaredError(int64_t n, const float* pred, const float* target,
                                     float* dpred) {
  if (n <= 0) return std::nan("");  // the CPU's 0/0
  Activate();
  auto* partial = static_cast<double*>(Scratch(kReduceBlocks * sizeof(double)));
  SumOf(stream_, n, cuda_internal::SquaredError{pred, target, dpred, 2.0f / static_cast<float>(n)},
        partial, result_device_);
  CheckLaunch("MeanSquaredError");
  return FetchResult().sum / static_cast<double>(n);
}

double CudaBackend::SquaredNorm(int64_t n, const float* x) {
  if (n <= 0) return 0.0;
  Activate();
  auto* partial = static_cast<double*>(Scratch(kReduceBlocks * sizeof(double)));
  SumOf(stream_, n, cuda_internal::Square{x}, partial, result_device_);
  CheckLaunch("SquaredNorm");
  return FetchResult().sum;
}

bool CudaBackend::AllFinite(int64_t n, const float* x) {
  if (n <= 0) return true;
  Activate();
  ClearResult();
  cuda_internal::FindNonFinite<<<BlocksFor(n), kThreads, 0, stream_>>>(n, x, result_device_);
  CheckLaunch("AllFinite");
  return FetchResult().flag == 0;
}

}  // namespace psgrid
