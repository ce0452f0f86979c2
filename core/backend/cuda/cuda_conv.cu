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

// The kernels index in I: int32_t where every index fits (Fits32), int64_t beyond; 32-bit
// division is several times cheaper on a GPU, and these kernels are mostly index arithmetic.
//
// cols[(c·k + i)·k + j, n·plane + oh·out_w + ow] = x[n, c, oh·stride − padding + i,
// ow·stride − padding + j] for the samples n < samples of x. Grid: y over the channels c, x over
// the columns; a thread writes its column's k·k rows of channel c, so that the divisions that
// place the column are made once for k·k elements.
template <typename I>
__global__ void Im2ColBatchKernel(I samples, I channels, I height, I width, I kernel, I stride,
                                  I padding, I out_h, I out_w, const float* x, float* cols) {
  const I plane = out_h * out_w;
  const I row = samples * plane;
  for (I c = blockIdx.y; c < channels; c += gridDim.y) {
    for (I q = static_cast<I>(GlobalThread()); q < row; q += static_cast<I>(GridThreads())) {
      const I n = q / plane;
      const I p = q - n * plane;
      const I oh = p / out_w;
      const I ow = p - oh * out_w;
      const I ih0 = oh * stride - padding;
      const I iw0 = ow * stride - padding;
      const float* image = x + (n * channels + c) * height * width;
      float* out = cols + static_cast<int64_t>(c * kernel * kernel) * row + q;
      for (I i = 0; i < kernel; ++i) {
        const I ih = ih0 + i;
        const bool row_inside = ih >= 0 && ih < height;
        for (I j = 0; j < kernel; ++j) {
          const I iw = iw0 + j;
          out[static_cast<int64_t>(i * kernel + j) * row] =
              row_inside && iw >= 0 && iw < width ? image[ih * width + iw] : 0.0f;
        }
      }
    }
  }
}

// The adjoint: dx[n, c, h, w] = Σ over (i, j) in row-major order of the column entries that
// Im2ColBatchKernel copies from (n, c, h, w); a thread per input pixel (no atomics). The i
// that reach row h are those ≡ h + padding (mod stride), each one window row lower.
template <typename I>
__global__ void Col2ImBatchKernel(I samples, I channels, I height, I width, I kernel, I stride,
                                  I padding, I out_h, I out_w, const float* cols, float* dx) {
  const I plane = out_h * out_w;
  const I row = samples * plane;
  const I total = samples * channels * height * width;
  for (I idx = static_cast<I>(GlobalThread()); idx < total; idx += static_cast<I>(GridThreads())) {
    I t = idx / width;
    const I w = idx - t * width;
    const I h = t % height;
    t /= height;
    const I c = t % channels;
    const I n = t / channels;
    const float* base = cols + n * plane;
    const I i0 = (h + padding) % stride, j0 = (w + padding) % stride;
    float s = 0.0f;
    for (I i = i0, oh = (h + padding - i0) / stride; i < kernel; i += stride, --oh) {
      if (oh < 0) break;
      if (oh >= out_h) continue;
      const float* rows = base + static_cast<int64_t>((c * kernel + i) * kernel) * row + oh * out_w;
      for (I j = j0, ow = (w + padding - j0) / stride; j < kernel; j += stride, --ow) {
        if (ow < 0) break;
        if (ow >= out_w) continue;
        s += rows[static_cast<int64_t>(j) * row + ow];
      }
    }
    dx[idx] = s;
  }
}

// y[n, f, p] = yt[f, n·plane + p] (+ bias[f]): the GEMM's layout back to NCHW. Grid: y over f.
template <typename I>
__global__ void FromFilterMajorKernel(I samples, I filters, I plane, const float* yt,
                                      const float* bias, float* y) {
  const I row = samples * plane;
  for (I f = blockIdx.y; f < filters; f += gridDim.y) {
    const float b = bias != nullptr ? bias[f] : 0.0f;
    const float* in = yt + static_cast<int64_t>(f) * row;
    for (I q = static_cast<I>(GlobalThread()); q < row; q += static_cast<I>(GridThreads())) {
      const I n = q / plane;
      const I p = q - n * plane;
      const float v = in[q];
      y[(n * filters + f) * plane + p] = bias != nullptr ? v + b : v;
    }
  }
}

// dyt[f, n·plane + p] = dy[n, f, p]: NCHW to the GEMMs' layout. Grid: y over f.
template <typename I>
__global__ void ToFilterMajorKernel(I samples, I filters, I plane, const float* dy, float* dyt) {
  const I row = samples * plane;
  for (I f = blockIdx.y; f < filters; f += gridDim.y) {
    float* out = dyt + static_cast<int64_t>(f) * row;
    for (I q = static_cast<I>(GlobalThread()); q < row; q += static_cast<I>(GridThreads())) {
      const I n = q / plane;
      const I p = q - n * plane;
      out[q] = dy[(n * filters + f) * plane + p];
    }
  }
}

// A grid of blocks over `row` items in x and `rows` rows in y (capped; the kernels loop).
dim3 RowsGrid(int64_t row, int64_t rows) {
  return dim3(BlocksFor(row), static_cast<unsigned>(std::clamp<int64_t>(rows, 1, 65535)));
}

// Samples per chunk: as many as fit kMaxWorkspaceFloats, one at the least.
int64_t ChunkOf(const Conv2dShape& s) {
  const int64_t per_sample = (s.channels * s.kernel * s.kernel + s.filters) * s.out_h() * s.out_w();
  if (per_sample <= 0) return std::max<int64_t>(1, s.batch);
  return std::clamp<int64_t>(kMaxWorkspaceFloats / per_sample, 1, std::max<int64_t>(1, s.batch));
}

}  // namespace
}  // namespace cuda_internal

using cuda_internal::BlocksFor;
using cuda_internal::kThreads;

void CudaBackend::Im2ColBatch(const Conv2dShape& s, int64_t samples, const float* x, float* cols) {
  const int64_t row = samples * s.out_h() * s.out_w();
  const int64_t rows = s.channels * s.kernel * s.kernel;
  const dim3 grid = cuda_internal::RowsGrid(row, s.channels);
  cuda_internal::WithIndexType(
      std::max(rows * row, samples * s.channels * s.height * s.width), [&](auto index) {
        cuda_internal::Im2ColBatchKernel<decltype(index)>
            <<<grid, kThreads, 0, stream_>>>(samples, s.channels, s.height, s.width, s.kernel,
                                             s.stride, s.padding, s.out_h(), s.out_w(), x, cols);
      });
}

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
    Im2ColBatch(s, nb, x + n0 * sample_in, cols);
    CheckLaunch("Conv2dForward (columns)");
    Gemm(Trans::kNo, Trans::kNo, s.filters, nb * plane, patch, 1.0f, w, cols, 0.0f, yt);
    const dim3 grid = cuda_internal::RowsGrid(nb * plane, s.filters);
    cuda_internal::WithIndexType(nb * sample_out, [&](auto index) {
      cuda_internal::FromFilterMajorKernel<decltype(index)>
          <<<grid, kThreads, 0, stream_>>>(nb, s.filters, plane, yt, bias, y + n0 * sample_out);
    });
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
    const dim3 grid = cuda_internal::RowsGrid(nb * plane, s.filters);
    cuda_internal::WithIndexType(nb * sample_out, [&](auto index) {
      cuda_internal::ToFilterMajorKernel<decltype(index)>
          <<<grid, kThreads, 0, stream_>>>(nb, s.filters, plane, dy + n0 * sample_out, dyt);
    });
    CheckLaunch("Conv2dBackward (from NCHW)");
    Im2ColBatch(s, nb, x + n0 * sample_in, cols);
    CheckLaunch("Conv2dBackward (columns)");
    // dW (+)= dYᵀ-layout · colsᵀ over the chunk's samples.
    Gemm(Trans::kNo, Trans::kYes, s.filters, patch, nb * plane, 1.0f, dyt, cols,
         n0 == 0 ? 0.0f : 1.0f, dw);
    if (dx == nullptr) continue;
    // The columns' gradient Wᵀ · dY into the columns' place (the stream orders it after the
    // weight gradient read them), folded back onto the images.
    Gemm(Trans::kYes, Trans::kNo, patch, nb * plane, s.filters, 1.0f, w, dyt, 0.0f, cols);
    const int64_t dx_total = nb * sample_in;
    cuda_internal::WithIndexType(std::max(dx_total, patch * nb * plane), [&](auto index) {
      cuda_internal::Col2ImBatchKernel<decltype(index)>
          <<<BlocksFor(dx_total), kThreads, 0, stream_>>>(nb, s.channels, s.height, s.width,
                                                          s.kernel, s.stride, s.padding, s.out_h(),
                                                          s.out_w(), cols, dx + n0 * sample_in);
    });
    CheckLaunch("Conv2dBackward (images)");
  }
}

}  // namespace psgrid
