// CudaBackend: the LSTM and GRU cells and the embedding lookup and its gradient.
//
// The cells run one thread per (row, unit) with CpuBackend's formulas; they use the device's
// expf and tanhf where the CPU uses its own polynomial ones (both within about 2 ulp), so the
// activations agree to float32 rounding rather than bit for bit. The embedding gradient is
// deterministic without atomics: each block owns a range of vocabulary rows and adds the
// gradient rows of its ids in increasing position, the CPU's order.
#include <cmath>

#include "core/backend/cuda/cuda_kernels.cuh"

namespace psgrid {
namespace cuda_internal {
namespace {

__device__ inline float Sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// gates [batch, 4·hidden] in torch's order i, f, g, o; c_prev null for zeros.
__global__ void LstmForwardKernel(int64_t batch, int64_t hidden, float* gates, const float* c_prev,
                                  float* c, float* tanh_c, float* h) {
  const int64_t total = batch * hidden;
  for (int64_t idx = GlobalThread(); idx < total; idx += GridThreads()) {
    const int64_t b = idx / hidden;
    const int64_t j = idx % hidden;
    float* g = gates + 4 * hidden * b;
    const float i = Sigmoid(g[j]);
    const float f = Sigmoid(g[hidden + j]);
    const float n = tanhf(g[2 * hidden + j]);
    const float o = Sigmoid(g[3 * hidden + j]);
    g[j] = i;
    g[hidden + j] = f;
    g[2 * hidden + j] = n;
    g[3 * hidden + j] = o;
    const float cj = c_prev != nullptr ? f * c_prev[idx] + i * n : i * n;
    c[idx] = cj;
    const float t = tanhf(cj);
    tanh_c[idx] = t;
    h[idx] = o * t;
  }
}

__global__ void LstmBackwardKernel(int64_t batch, int64_t hidden, const float* gates,
                                   const float* c_prev, const float* tanh_c, const float* dh,
                                   const float* dc_next, float* dgates, float* dc_prev) {
  const int64_t total = batch * hidden;
  for (int64_t idx = GlobalThread(); idx < total; idx += GridThreads()) {
    const int64_t b = idx / hidden;
    const int64_t j = idx % hidden;
    const float* g = gates + 4 * hidden * b;
    float* dg = dgates + 4 * hidden * b;
    const float i = g[j], f = g[hidden + j], n = g[2 * hidden + j], o = g[3 * hidden + j];
    const float t = tanh_c[idx];
    const float d = dh[idx];
    const float dc = (dc_next != nullptr ? dc_next[idx] : 0.0f) + d * o * (1.0f - t * t);
    dg[j] = dc * n * i * (1.0f - i);
    dg[hidden + j] = c_prev != nullptr ? dc * c_prev[idx] * f * (1.0f - f) : 0.0f;
    dg[2 * hidden + j] = dc * i * (1.0f - n * n);
    dg[3 * hidden + j] = d * t * o * (1.0f - o);
    if (dc_prev != nullptr) dc_prev[idx] = dc * f;
  }
}

// gates [batch, 3·hidden] (r, z, n) holds gx, hproj gh; h_prev null for zeros.
__global__ void GruForwardKernel(int64_t batch, int64_t hidden, float* gates, const float* hproj,
                                 const float* h_prev, float* h) {
  const int64_t total = batch * hidden;
  for (int64_t idx = GlobalThread(); idx < total; idx += GridThreads()) {
    const int64_t b = idx / hidden;
    const int64_t j = idx % hidden;
    float* g = gates + 3 * hidden * b;
    const float* gh = hproj + 3 * hidden * b;
    const float r = Sigmoid(g[j] + gh[j]);
    const float z = Sigmoid(g[hidden + j] + gh[hidden + j]);
    const float n = tanhf(g[2 * hidden + j] + r * gh[2 * hidden + j]);
    g[j] = r;
    g[hidden + j] = z;
    g[2 * hidden + j] = n;
    h[idx] = h_prev != nullptr ? (1.0f - z) * n + z * h_prev[idx] : (1.0f - z) * n;
  }
}

// dh_prev gets z⊙dh added only when h_prev is given, as on the CPU.
__global__ void GruBackwardKernel(int64_t batch, int64_t hidden, const float* gates,
                                  const float* hproj, const float* h_prev, const float* dh,
                                  float* dgx, float* dgh, float* dh_prev) {
  const int64_t total = batch * hidden;
  for (int64_t idx = GlobalThread(); idx < total; idx += GridThreads()) {
    const int64_t b = idx / hidden;
    const int64_t j = idx % hidden;
    const int64_t row = 3 * hidden * b;
    const float r = gates[row + j], z = gates[row + hidden + j], n = gates[row + 2 * hidden + j];
    const float d = dh[idx];
    const float hp = h_prev != nullptr ? h_prev[idx] : 0.0f;
    const float dn = d * (1.0f - z) * (1.0f - n * n);
    const float dr = dn * hproj[row + 2 * hidden + j] * r * (1.0f - r);
    const float dz = d * (hp - n) * z * (1.0f - z);
    dgx[row + j] = dr;
    dgx[row + hidden + j] = dz;
    dgx[row + 2 * hidden + j] = dn;
    dgh[row + j] = dr;
    dgh[row + hidden + j] = dz;
    dgh[row + 2 * hidden + j] = dn * r;
    if (h_prev != nullptr && dh_prev != nullptr) dh_prev[idx] += d * z;
  }
}

// The id that v holds when it is an integer in [0, vocab), else −1 (NaN fails every test).
__device__ inline int64_t ValidId(float v, int64_t vocab) {
  if (!(v >= 0.0f && v < 9.0e15f) || v != floorf(v)) return -1;
  const int64_t id = static_cast<int64_t>(v);
  return id < vocab ? id : -1;
}

// y[i, :] = weight[id_i, :] or zeros, one thread per element (per id when dim is 0); the
// lowest invalid position goes to result.first.
__global__ void EmbeddingForwardKernel(int64_t n, int64_t vocab, int64_t dim, const float* ids,
                                       const float* weight, float* y, CudaBackend::Result* result) {
  const int64_t columns = dim > 0 ? dim : 1;
  const int64_t total = n * columns;
  for (int64_t idx = GlobalThread(); idx < total; idx += GridThreads()) {
    const int64_t i = idx / columns;
    const int64_t k = idx % columns;
    const int64_t id = ValidId(ids[i], vocab);
    if (id < 0 && k == 0) atomicMin(&result->first, static_cast<unsigned long long>(i));
    if (dim > 0) y[idx] = id < 0 ? 0.0f : weight[id * dim + k];
  }
}

// dweight was zeroed. Block b owns vocabulary rows [b·rows_per_block, (b + 1)·rows_per_block):
// it reads the ids a chunk of blockDim at a time, lists in shared memory, in position order,
// those that fall in its rows, then its threads add those gradient rows across `dim`. Every
// weight row thus receives its ids' gradient rows in increasing position, from one block.
__global__ void EmbeddingBackwardKernel(int64_t n, int64_t vocab, int64_t dim,
                                        int64_t rows_per_block, const float* ids, const float* dy,
                                        float* dweight) {
  extern __shared__ long long shared[];  // [blockDim] positions, then [blockDim] ids
  long long* match_pos = shared;
  long long* match_id = shared + blockDim.x;
  __shared__ int warp_counts[32];
  const int64_t lo = static_cast<int64_t>(blockIdx.x) * rows_per_block;
  const int64_t hi = min(lo + rows_per_block, vocab);
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int warps = static_cast<int>(blockDim.x / 32);
  for (int64_t base = 0; base < n; base += blockDim.x) {
    const int64_t i = base + threadIdx.x;
    const int64_t id = i < n ? ValidId(ids[i], vocab) : -1;
    const bool mine = id >= lo && id < hi;
    // Compaction in position order: the rank of a match is the number of matches before it,
    // within its warp (ballot) and in the warps before (their counts).
    const unsigned ballot = __ballot_sync(0xffffffffu, mine);
    if (lane == 0) warp_counts[warp] = __popc(ballot);
    __syncthreads();
    int before = __popc(ballot & ((1u << lane) - 1u));
    int count = 0;
    for (int w = 0; w < warps; ++w) {
      if (w < warp) before += warp_counts[w];
      count += warp_counts[w];
    }
    if (mine) {
      match_pos[before] = i;
      match_id[before] = id;
    }
    __syncthreads();
    for (int m = 0; m < count; ++m) {
      const float* src = dy + match_pos[m] * dim;
      float* dst = dweight + match_id[m] * dim;
      for (int64_t k = threadIdx.x; k < dim; k += blockDim.x) dst[k] += src[k];
    }
    __syncthreads();  // match_* and warp_counts are refilled by the next chunk
  }
}

}  // namespace
}  // namespace cuda_internal

using cuda_internal::BlocksFor;
using cuda_internal::kThreads;

void CudaBackend::LstmCellForward(int64_t batch, int64_t hidden, float* gates, const float* c_prev,
                                  float* c, float* tanh_c, float* h) {
  if (batch * hidden <= 0) return;
  Activate();
  cuda_internal::LstmForwardKernel<<<BlocksFor(batch * hidden), kThreads, 0, stream_>>>(
      batch, hidden, gates, c_prev, c, tanh_c, h);
  CheckLaunch("LstmCellForward");
}

void CudaBackend::LstmCellBackward(int64_t batch, int64_t hidden, const float* gates,
                                   const float* c_prev, const float* tanh_c, const float* dh,
                                   const float* dc_next, float* dgates, float* dc_prev) {
  if (batch * hidden <= 0) return;
  Activate();
  cuda_internal::LstmBackwardKernel<<<BlocksFor(batch * hidden), kThreads, 0, stream_>>>(
      batch, hidden, gates, c_prev, tanh_c, dh, dc_next, dgates, dc_prev);
  CheckLaunch("LstmCellBackward");
}

void CudaBackend::GruCellForward(int64_t batch, int64_t hidden, float* gates, const float* hproj,
                                 const float* h_prev, float* h) {
  if (batch * hidden <= 0) return;
  Activate();
  cuda_internal::GruForwardKernel<<<BlocksFor(batch * hidden), kThreads, 0, stream_>>>(
      batch, hidden, gates, hproj, h_prev, h);
  CheckLaunch("GruCellForward");
}

void CudaBackend::GruCellBackward(int64_t batch, int64_t hidden, const float* gates,
                                  const float* hproj, const float* h_prev, const float* dh,
                                  float* dgx, float* dgh, float* dh_prev) {
  if (batch * hidden <= 0) return;
  Activate();
  cuda_internal::GruBackwardKernel<<<BlocksFor(batch * hidden), kThreads, 0, stream_>>>(
      batch, hidden, gates, hproj, h_prev, dh, dgx, dgh, dh_prev);
  CheckLaunch("GruCellBackward");
}

int64_t CudaBackend::EmbeddingForward(int64_t n, int64_t vocab, int64_t dim, const float* ids,
                                      const float* weight, float* y) {
  if (n <= 0) return -1;
  Activate();
  ClearResult();
  cuda_internal::
      EmbeddingForwardKernel<<<BlocksFor(n * std::max<int64_t>(dim, 1)), kThreads, 0, stream_>>>(
          n, vocab, dim, ids, weight, y, result_device_);
  CheckLaunch("EmbeddingForward");
  const unsigned long long first = FetchResult().first;
  return first == ~0ull ? -1 : static_cast<int64_t>(first);
}

void CudaBackend::EmbeddingBackward(int64_t n, int64_t vocab, int64_t dim, const float* ids,
                                    const float* dy, float* dweight) {
  if (vocab <= 0 || dim <= 0) return;
  Activate();
  PSGRID_CUDA_CHECK(
      cudaMemsetAsync(dweight, 0, static_cast<size_t>(vocab * dim) * sizeof(float), stream_));
  if (n <= 0) return;
  // Up to 1024 blocks, each scanning every id once: many blocks for parallel row updates, few
  // enough that the scans stay cheap.
  constexpr int kBlockThreads = 128;
  const int64_t blocks = std::min<int64_t>(vocab, 1024);
  const int64_t rows_per_block = (vocab + blocks - 1) / blocks;
  const size_t shared = 2 * kBlockThreads * sizeof(long long);
  cuda_internal::
      EmbeddingBackwardKernel<<<static_cast<unsigned>(blocks), kBlockThreads, shared, stream_>>>(
          n, vocab, dim, rows_per_block, ids, dy, dweight);
  CheckLaunch("EmbeddingBackward");
}

}  // namespace psgrid
