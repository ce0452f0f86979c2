// CudaBackend: whole convolutions over a batch (Backend::Conv2dForward / Conv2dBackward).
//
// Backend's default takes one sample at a time through Im2Col and a GEMM: on a GPU that is a few
// small launches per sample, and the step is launch-bound. Here the batch goes through at once:
// the columns of every sample side by side, cols [channels·k·k, batch·out_h·out_w], so that one
// GEMM does the forward pass, one the weight gradient and one the input gradient, with a
// transposition between the GEMMs' [filters, batch·spatial] layout and NCHW. Batches whose
// columns would not fit kMaxWorkspaceFloats go through in chunks of samples.
#include "core/backend/cuda/cuda_kernels.cuh"

namespace psgrid {
namespace cuda_internal {
namespace {

// 128 MiB of columns at most: every usual layer's batch in one chunk.
constexpr int64_t kMaxWorkspaceFloats = int64_t{1} << 25;

// cols[(c·k + i)·k + j, n·plane + oh·out_w + ow] = x[n, c, oh·stride − padding + i,
// ow·stride − padding + j] for the samples n < samples of x.
__global__ void Im2ColBatchKernel(int64_t samples, int64_t channels, int64_t height,
                                  int64_t width, int64_t kernel, int64_t stride, int64_t padding,
                                  int64_t out_h, int64_t out_w, const float* x, float* cols) {
  const int64_t plane = out_h * out_w;
  const int64_t row = samples * plane;
  const int64_t total = channels * kernel * kernel * row;
  for (int64_t idx = GlobalThread(); idx < total; idx += GridThreads()) {
    const int64_t r = idx / row;
    const int64_t q = idx % row;
    const int64_t n = q / plane;
    const int64_t p = q % plane;
    const int64_t oh = p / out_w;
    const int64_t ow = p % out_w;
    const int64_t j = r % kernel;
    const int64_t i = (r / kernel) % kernel;
    const int64_t c = r / (kernel * kernel);
    const int64_t ih = oh * stride - padding + i;
    const int64_t iw = ow * stride - padding + j;
    const bool inside = ih >= 0 && ih < height && iw >= 0 && iw < width;
    cols[idx] = inside ? x[((n * channels + c) * height + ih) * width + iw] : 0.0f;
  }
}

// The adjoint: dx[n, c, h, w] = Σ over (i, j) in row-major order of the column entries that
// Im2ColBatchKernel copies from (n, c, h, w); a thread per input pixel (no atomics).
__global__ void Col2ImBatchKernel(int64_t samples, int64_t channels, int64_t height,
                                  int64_t width, int64_t kernel, int64_t stride, int64_t padding,
                                  int64_t out_h, int64_t out_w, const float* cols, float* dx) {
  const int64_t plane = out_h * out_w;
  const int64_t row = samples * plane;
  const int64_t total = samples * channels * height * width;
  for (int64_t idx = GlobalThread(); idx < total; idx += GridThreads()) {
    const int64_t w = idx % width;
    int64_t t = idx / width;
    const int64_t h = t % height;
    t /= height;
    const int64_t c = t % channels;
    const int64_t n = t / channels;
    const float* base = cols + n * plane;
    float s = 0.0f;
    for (int64_t i = 0; i < kernel; ++i) {
      const int64_t th = h + padding - i;  // oh·stride
      if (th < 0 || th % stride != 0 || th / stride >= out_h) continue;
      const int64_t oh = th / stride;
      for (int64_t j = 0; j < kernel; ++j) {
        const int64_t tw = w + padding - j;  // ow·stride
        if (tw < 0 || tw % stride != 0 || tw / stride >= out_w) continue;
        s += base[((c * kernel + i) * kernel + j) * row + oh * out_w + tw / stride];
      }
    }
    dx[idx] = s;
  }
}

// y[n, f, p] = yt[f, n·plane + p] (+ bias[f]): the GEMM's layout back to NCHW.
__global__ void FromFilterMajorKernel(int64_t samples, int64_t filters, int64_t plane,
                                      const float* yt, const float* bias, float* y) {
  const int64_t total = samples * filters * plane;
  for (int64_t idx = GlobalThread(); idx < total; idx += GridThreads()) {
    const int64_t p = idx % plane;
    const int64_t t = idx / plane;
    const int64_t f = t % filters;
    const int64_t n = t / filters;
    const float v = yt[f * samples * plane + n * plane + p];
    y[idx] = bias != nullptr ? v + bias[f] : v;
  }
}

// dyt[f, n·plane + p] = dy[n, f, p]: NCHW to the GEMMs' layout.
__global__ void ToFilterMajorKernel(int64_t samples, int64_t filters, int64_t plane,
                                    const float* dy, float* dyt) {
  const int64_t total = samples * filters * plane;
  for (int64_t idx = GlobalThread(); idx < total; idx += GridThreads()) {
    const int64_t q = idx % (samples * plane);
    const int64_t f = idx / (samples * plane);
    const int64_t n = q / plane;
    const int64_t p = q % plane;
    dyt[idx] = dy[(n * filters + f) * plane + p];
  }
}

// Samples per chunk: as many as fit kMaxWorkspaceFloats, one at the least.
int64_t ChunkOf(const Conv2dShape& s) {
  const int64_t per_sample =
      (s.channels * s.kernel * s.kernel + s.filters) * s.out_h() * s.out_w();
  if (per_sample <= 0) return std::max<int64_t>(1, s.batch);
  return std::clamp<int64_t>(kMaxWorkspaceFloats / per_sample, 1, std::max<int64_t>(1, s.batch));
}

}  // namespace
}  // namespace cuda_internal

using cuda_internal::BlocksFor;
using cuda_internal::kThreads;

int64_t CudaBackend::Conv2dWorkspaceFloats(const Conv2dShape& s) {
  // A chunk's columns and its output (or output gradient) in the GEMMs' layout.
  return cuda_internal::ChunkOf(s) * (s.channels * s.kernel * s.kernel + s.filters) * s.out_h() *
         s.out_w();
}

void CudaBackend::Conv2dForward(const Conv2dShape& s, const float* x, const float* w,
                                const float* bias, float* y, float* workspace) {
  const int64_t plane = s.out_h() * s.out_w();
  const int64_t patch = s.channels * s.kernel * s.kernel;
  if (s.batch <= 0 || s.filters <= 0 || plane <= 0) return;
  Activate();
  const int64_t chunk = cuda_internal::ChunkOf(s);
  const int64_t sample_in = s.channels * s.height * s.width;
  const int64_t sample_out = s.filters * plane;
  for (int64_t n0 = 0; n0 < s.batch; n0 += chunk) {
    const int64_t nb = std::min(chunk, s.batch - n0);
    float* cols = workspace;
    float* yt = workspace + patch * nb * plane;
    const int64_t cols_total = patch * nb * plane;
    cuda_internal::Im2ColBatchKernel<<<BlocksFor(cols_total), kThreads, 0, stream_>>>(
        nb, s.channels, s.height, s.width, s.kernel, s.stride, s.padding, s.out_h(), s.out_w(),
        x + n0 * sample_in, cols);
    CheckLaunch("Conv2dForward (columns)");
    Gemm(Trans::kNo, Trans::kNo, s.filters, nb * plane, patch, 1.0f, w, cols, 0.0f, yt);
    cuda_internal::FromFilterMajorKernel<<<BlocksFor(nb * sample_out), kThreads, 0, stream_>>>(
        nb, s.filters, plane, yt, bias, y + n0 * sample_out);
    CheckLaunch("Conv2dForward (to NCHW)");
  }
}

void CudaBackend::Conv2dBackward(const Conv2dShape& s, const float* x, const float* w,
                                 const float* dy, float* dw, float* dbias, float* dx,
                                 float* workspace) {
  const int64_t plane = s.out_h() * s.out_w();
  const int64_t patch = s.channels * s.kernel * s.kernel;
  if (s.filters <= 0 || patch <= 0) return;
  Activate();
  if (dbias != nullptr) SumChannels(s.batch, s.filters, plane, dy, dbias);
  if (s.batch <= 0 || plane <= 0) {
    FillZeros(s.filters * patch, dw);
    if (dx != nullptr) FillZeros(s.batch * s.channels * s.height * s.width, dx);
    return;
  }
  const int64_t chunk = cuda_internal::ChunkOf(s);
  const int64_t sample_in = s.channels * s.height * s.width;
  const int64_t sample_out = s.filters * plane;
  for (int64_t n0 = 0; n0 < s.batch; n0 += chunk) {
    const int64_t nb = std::min(chunk, s.batch - n0);
    float* cols = workspace;
    float* dyt = workspace + patch * nb * plane;
    cuda_internal::ToFilterMajorKernel<<<BlocksFor(nb * sample_out), kThreads, 0, stream_>>>(
        nb, s.filters, plane, dy + n0 * sample_out, dyt);
    CheckLaunch("Conv2dBackward (from NCHW)");
    cuda_internal::Im2ColBatchKernel<<<BlocksFor(patch * nb * plane), kThreads, 0, stream_>>>(
        nb, s.channels, s.height, s.width, s.kernel, s.stride, s.padding, s.out_h(), s.out_w(),
        x + n0 * sample_in, cols);
    CheckLaunch("Conv2dBackward (columns)");
    // dW (+)= dYᵀ-layout · colsᵀ over the chunk's samples.
    Gemm(Trans::kNo, Trans::kYes, s.filters, patch, nb * plane, 1.0f, dyt, cols,
         n0 == 0 ? 0.0f : 1.0f, dw);
    if (dx == nullptr) continue;
    // The columns' gradient Wᵀ · dY into the columns' place (the stream orders it after the
    // weight gradient read them), folded back onto the images.
    Gemm(Trans::kYes, Trans::kNo, patch, nb * plane, s.filters, 1.0f, w, dyt, 0.0f, cols);
    const int64_t dx_total = nb * sample_in;
    cuda_internal::Col2ImBatchKernel<<<BlocksFor(dx_total), kThreads, 0, stream_>>>(
        nb, s.channels, s.height, s.width, s.kernel, s.stride, s.padding, s.out_h(), s.out_w(),
        cols, dx + n0 * sample_in);
    CheckLaunch("Conv2dBackward (images)");
  }
}

}  // namespace psgrid
