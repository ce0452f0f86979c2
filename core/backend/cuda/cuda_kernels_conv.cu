// CudaBackend: convolution (im2col / col2im), the channel bias and its gradient, pooling and
// dropout.
//
// One thread per output element. The adjoints (Col2Im, the pooling backward passes) gather
// instead of scattering: a thread per input pixel adds up the entries that reach it, in the
// order in which CpuBackend's loops add them, so there are no atomics, the result does not
// depend on scheduling, and it matches the CPU bit for bit.
#include "core/backend/cuda/cuda_kernels.cuh"

namespace psgrid {
namespace cuda_internal {
namespace {

int64_t OutSize(int64_t in, int64_t kernel, int64_t stride, int64_t padding) {
  return (in + 2 * padding - kernel) / stride + 1;
}

// cols[(c·k + i)·k + j, oh·out_w + ow] = x[c, oh·stride − padding + i, ow·stride − padding + j].
__global__ void Im2ColKernel(int64_t channels, int64_t height, int64_t width, int64_t kernel,
                             int64_t stride, int64_t padding, int64_t out_h, int64_t out_w,
                             const float* x, float* cols) {
  const int64_t total = channels * kernel * kernel * out_h * out_w;
  for (int64_t idx = GlobalThread(); idx < total; idx += GridThreads()) {
    const int64_t ow = idx % out_w;
    int64_t t = idx / out_w;
    const int64_t oh = t % out_h;
    t /= out_h;  // (c·kernel + i)·kernel + j
    const int64_t j = t % kernel;
    t /= kernel;
    const int64_t i = t % kernel;
    const int64_t c = t / kernel;
    const int64_t ih = oh * stride - padding + i;
    const int64_t iw = ow * stride - padding + j;
    const bool inside = ih >= 0 && ih < height && iw >= 0 && iw < width;
    cols[idx] = inside ? x[(c * height + ih) * width + iw] : 0.0f;
  }
}

// dx[c, h, w] = Σ over (i, j) in row-major order of the column entry that Im2Col copies from
// (h, w): the one with oh·stride − padding + i = h and ow·stride − padding + j = w.
__global__ void Col2ImKernel(int64_t channels, int64_t height, int64_t width, int64_t kernel,
                             int64_t stride, int64_t padding, int64_t out_h, int64_t out_w,
                             const float* cols, float* dx) {
  const int64_t plane_out = out_h * out_w;
  const int64_t total = channels * height * width;
  for (int64_t idx = GlobalThread(); idx < total; idx += GridThreads()) {
    const int64_t w = idx % width;
    const int64_t t = idx / width;
    const int64_t h = t % height;
    const int64_t c = t / height;
    float s = 0.0f;
    for (int64_t i = 0; i < kernel; ++i) {
      const int64_t th = h + padding - i;  // oh·stride
      if (th < 0 || th % stride != 0 || th / stride >= out_h) continue;
      const int64_t oh = th / stride;
      for (int64_t j = 0; j < kernel; ++j) {
        const int64_t tw = w + padding - j;  // ow·stride
        if (tw < 0 || tw % stride != 0 || tw / stride >= out_w) continue;
        s += cols[((c * kernel + i) * kernel + j) * plane_out + oh * out_w + tw / stride];
      }
    }
    dx[idx] = s;
  }
}

__global__ void BroadcastChannelsKernel(int64_t batch, int64_t channels, int64_t spatial,
                                        const float* bias, float* y) {
  const int64_t total = batch * channels * spatial;
  for (int64_t idx = GlobalThread(); idx < total; idx += GridThreads()) {
    y[idx] = bias[(idx / spatial) % channels];
  }
}

// Block (c, split) sums channel c over the samples b ≡ split (mod splits): per plane in float
// lanes, the planes in double, then the block's lanes in a tree, into partial[c·splits + split].
__global__ void SumChannelsPartial(int64_t batch, int64_t channels, int64_t spatial, int splits,
                                   const float* x, double* partial) {
  const int64_t c = blockIdx.x;
  const int split = static_cast<int>(blockIdx.y);
  double total = 0.0;
  for (int64_t b = split; b < batch; b += splits) {
    const float* plane = x + (b * channels + c) * spatial;
    float s = 0.0f;
    for (int64_t k = threadIdx.x; k < spatial; k += blockDim.x) s += plane[k];
    total += s;
  }
  total = BlockSum(total);
  if (threadIdx.x == 0) partial[c * splits + split] = total;
}

__global__ void SumChannelsFinal(int64_t channels, int splits, const double* partial, float* out) {
  for (int64_t c = GlobalThread(); c < channels; c += GridThreads()) {
    double total = 0.0;
    for (int s = 0; s < splits; ++s) total += partial[c * splits + s];
    out[c] = static_cast<float>(total);
  }
}

// CpuBackend's scan of a window: its first element, then the others in row-major order; a later
// one wins when strictly greater or NaN.
template <typename I>
__global__ void MaxPoolForwardKernel(I planes, I height, I width, I size, I stride, I out_h,
                                     I out_w, const float* x, float* y, int32_t* argmax) {
  const I total = planes * out_h * out_w;
  for (I idx = static_cast<I>(GlobalThread()); idx < total; idx += static_cast<I>(GridThreads())) {
    const I ow = idx % out_w;
    const I t = idx / out_w;
    const I oh = t % out_h;
    const I p = t / out_h;
    const float* xp = x + p * height * width;
    const I top = oh * stride * width + ow * stride;
    float best = xp[top];
    I where = top;
    for (I i = 0; i < size; ++i) {
      for (I j = (i == 0 ? 1 : 0); j < size; ++j) {
        const I at = top + i * width + j;
        const float v = xp[at];
        if (v > best || isnan(v)) {
          best = v;
          where = at;
        }
      }
    }
    y[idx] = best;
    argmax[idx] = static_cast<int32_t>(where);
  }
}

// The windows (oh, ow) of an input pixel (h, w): oh·stride <= h < oh·stride + size, so
// oh in [lo, hi] below (empty when lo > hi).
template <typename I>
__device__ inline void WindowsOf(I h, I size, I stride, I out, I* lo, I* hi) {
  *lo = h >= size ? (h - size) / stride + 1 : 0;
  *hi = min(h / stride, out - 1);
}

// dx[p, h, w] = Σ dy[p, o] over the outputs o whose arg-max is (h, w), in increasing o.
template <typename I>
__global__ void MaxPoolBackwardKernel(I planes, I height, I width, I size, I stride, I out_h,
                                      I out_w, const int32_t* argmax, const float* dy, float* dx) {
  const I total = planes * height * width;
  const I plane_out = out_h * out_w;
  for (I idx = static_cast<I>(GlobalThread()); idx < total; idx += static_cast<I>(GridThreads())) {
    const I w = idx % width;
    const I t = idx / width;
    const I h = t % height;
    const I p = t / height;
    const int32_t here = static_cast<int32_t>(h * width + w);
    const int32_t* a = argmax + p * plane_out;
    const float* g = dy + p * plane_out;
    I oh_lo, oh_hi, ow_lo, ow_hi;
    WindowsOf(h, size, stride, out_h, &oh_lo, &oh_hi);
    WindowsOf(w, size, stride, out_w, &ow_lo, &ow_hi);
    float s = 0.0f;
    for (I oh = oh_lo; oh <= oh_hi; ++oh) {
      for (I ow = ow_lo; ow <= ow_hi; ++ow) {
        const I o = oh * out_w + ow;
        if (a[o] == here) s += g[o];
      }
    }
    dx[idx] = s;
  }
}

template <typename I>
__global__ void AvgPoolForwardKernel(I planes, I height, I width, I size, I stride, I out_h,
                                     I out_w, float divisor, const float* x, float* y) {
  const I total = planes * out_h * out_w;
  for (I idx = static_cast<I>(GlobalThread()); idx < total; idx += static_cast<I>(GridThreads())) {
    const I ow = idx % out_w;
    const I t = idx / out_w;
    const I oh = t % out_h;
    const I p = t / out_h;
    const float* in = x + p * height * width + oh * stride * width + ow * stride;
    float s = 0.0f;
    for (I i = 0; i < size; ++i) {
      for (I j = 0; j < size; ++j) s += in[i * width + j];
    }
    y[idx] = s / divisor;
  }
}

// dx[p, h, w] = Σ dy/size² over the windows of (h, w), in the CPU's order: oh increasing and,
// within one oh, ow decreasing (its loops run over the window offset j outside ow).
template <typename I>
__global__ void AvgPoolBackwardKernel(I planes, I height, I width, I size, I stride, I out_h,
                                      I out_w, float divisor, const float* dy, float* dx) {
  const I total = planes * height * width;
  for (I idx = static_cast<I>(GlobalThread()); idx < total; idx += static_cast<I>(GridThreads())) {
    const I w = idx % width;
    const I t = idx / width;
    const I h = t % height;
    const I p = t / height;
    const float* g = dy + p * out_h * out_w;
    I oh_lo, oh_hi, ow_lo, ow_hi;
    WindowsOf(h, size, stride, out_h, &oh_lo, &oh_hi);
    WindowsOf(w, size, stride, out_w, &ow_lo, &ow_hi);
    float s = 0.0f;
    for (I oh = oh_lo; oh <= oh_hi; ++oh) {
      for (I ow = ow_hi; ow >= ow_lo; --ow) s += g[oh * out_w + ow] / divisor;
    }
    dx[idx] = s;
  }
}

// SplitMix64's output function.
__host__ __device__ inline uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Element i is kept iff (mix(state + (i + 1)·γ) >> 40)·2⁻²⁴ >= rate, state = mix(seed).
__global__ void DropoutForwardKernel(int64_t n, float rate, float keep_scale, uint64_t state,
                                     const float* x, float* mask, float* y) {
  constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ull;
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const uint64_t h = Mix64(state + static_cast<uint64_t>(i + 1) * kGamma);
    const float u = static_cast<float>(h >> 40) * (1.0f / 16777216.0f);
    const float m = u >= rate ? keep_scale : 0.0f;
    mask[i] = m;
    y[i] = x[i] * m;
  }
}

__global__ void MultiplyKernel(int64_t n, const float* a, const float* b, float* y) {
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) y[i] = a[i] * b[i];
}

}  // namespace
}  // namespace cuda_internal

using cuda_internal::BlocksFor;
using cuda_internal::kThreads;
using cuda_internal::OutSize;

void CudaBackend::Im2Col(int64_t channels, int64_t height, int64_t width, int64_t kernel,
                         int64_t stride, int64_t padding, const float* x, float* cols) {
  const int64_t out_h = OutSize(height, kernel, stride, padding);
  const int64_t out_w = OutSize(width, kernel, stride, padding);
  const int64_t total = channels * kernel * kernel * out_h * out_w;
  if (out_h <= 0 || out_w <= 0 || total <= 0) return;
  Activate();
  cuda_internal::Im2ColKernel<<<BlocksFor(total), kThreads, 0, stream_>>>(
      channels, height, width, kernel, stride, padding, out_h, out_w, x, cols);
  CheckLaunch("Im2Col");
}

void CudaBackend::Col2Im(int64_t channels, int64_t height, int64_t width, int64_t kernel,
                         int64_t stride, int64_t padding, const float* cols, float* dx) {
  const int64_t total = channels * height * width;
  if (total <= 0) return;
  Activate();
  const int64_t out_h = std::max<int64_t>(0, OutSize(height, kernel, stride, padding));
  const int64_t out_w = std::max<int64_t>(0, OutSize(width, kernel, stride, padding));
  cuda_internal::Col2ImKernel<<<BlocksFor(total), kThreads, 0, stream_>>>(
      channels, height, width, kernel, stride, padding, out_h, out_w, cols, dx);
  CheckLaunch("Col2Im");
}

void CudaBackend::BroadcastChannels(int64_t batch, int64_t channels, int64_t spatial,
                                    const float* bias, float* y) {
  const int64_t total = batch * channels * spatial;
  if (total <= 0) return;
  Activate();
  cuda_internal::BroadcastChannelsKernel<<<BlocksFor(total), kThreads, 0, stream_>>>(
      batch, channels, spatial, bias, y);
  CheckLaunch("BroadcastChannels");
}

void CudaBackend::SumChannels(int64_t batch, int64_t channels, int64_t spatial, const float* x,
                              float* out) {
  if (channels <= 0) return;
  Activate();
  if (batch <= 0 || spatial <= 0) {
    PSGRID_CUDA_CHECK(
        cudaMemsetAsync(out, 0, static_cast<size_t>(channels) * sizeof(float), stream_));
    return;
  }
  // About 512 blocks in all, a sample per block at the least.
  const int splits =
      static_cast<int>(std::clamp<int64_t>(512 / channels, 1, std::min<int64_t>(batch, 65535)));
  auto* partial = static_cast<double*>(
      Scratch(static_cast<size_t>(channels) * static_cast<size_t>(splits) * sizeof(double)));
  const dim3 grid(static_cast<unsigned>(channels), static_cast<unsigned>(splits));
  cuda_internal::SumChannelsPartial<<<grid, kThreads, 0, stream_>>>(batch, channels, spatial,
                                                                    splits, x, partial);
  CheckLaunch("SumChannels");
  cuda_internal::SumChannelsFinal<<<BlocksFor(channels), kThreads, 0, stream_>>>(channels, splits,
                                                                                 partial, out);
  CheckLaunch("SumChannels (final)");
}

void CudaBackend::MaxPool2dForward(int64_t planes, int64_t height, int64_t width, int64_t size,
                                   int64_t stride, const float* x, float* y, int32_t* argmax) {
  const int64_t out_h = OutSize(height, size, stride, 0);
  const int64_t out_w = OutSize(width, size, stride, 0);
  const int64_t total = planes * out_h * out_w;
  if (out_h <= 0 || out_w <= 0 || total <= 0) return;
  Activate();
  cuda_internal::WithIndexType(std::max(total, planes * height * width), [&](auto index) {
    cuda_internal::MaxPoolForwardKernel<decltype(index)>
        <<<BlocksFor(total), kThreads, 0, stream_>>>(planes, height, width, size, stride, out_h,
                                                     out_w, x, y, argmax);
  });
  CheckLaunch("MaxPool2dForward");
}

void CudaBackend::MaxPool2dBackward(int64_t planes, int64_t height, int64_t width, int64_t size,
                                    int64_t stride, const int32_t* argmax, const float* dy,
                                    float* dx) {
  const int64_t total = planes * height * width;
  if (total <= 0) return;
  Activate();
  const int64_t out_h = std::max<int64_t>(0, OutSize(height, size, stride, 0));
  const int64_t out_w = std::max<int64_t>(0, OutSize(width, size, stride, 0));
  cuda_internal::WithIndexType(total, [&](auto index) {
    cuda_internal::MaxPoolBackwardKernel<decltype(index)>
        <<<BlocksFor(total), kThreads, 0, stream_>>>(planes, height, width, size, stride, out_h,
                                                     out_w, argmax, dy, dx);
  });
  CheckLaunch("MaxPool2dBackward");
}

void CudaBackend::AvgPool2dForward(int64_t planes, int64_t height, int64_t width, int64_t size,
                                   int64_t stride, const float* x, float* y) {
  const int64_t out_h = OutSize(height, size, stride, 0);
  const int64_t out_w = OutSize(width, size, stride, 0);
  const int64_t total = planes * out_h * out_w;
  if (out_h <= 0 || out_w <= 0 || total <= 0) return;
  Activate();
  cuda_internal::WithIndexType(std::max(total, planes * height * width), [&](auto index) {
    cuda_internal::AvgPoolForwardKernel<decltype(index)>
        <<<BlocksFor(total), kThreads, 0, stream_>>>(planes, height, width, size, stride, out_h,
                                                     out_w, static_cast<float>(size * size), x, y);
  });
  CheckLaunch("AvgPool2dForward");
}

void CudaBackend::AvgPool2dBackward(int64_t planes, int64_t height, int64_t width, int64_t size,
                                    int64_t stride, const float* dy, float* dx) {
  const int64_t total = planes * height * width;
  if (total <= 0) return;
  Activate();
  const int64_t out_h = std::max<int64_t>(0, OutSize(height, size, stride, 0));
  const int64_t out_w = std::max<int64_t>(0, OutSize(width, size, stride, 0));
  cuda_internal::WithIndexType(std::max(total, planes * out_h * out_w), [&](auto index) {
    cuda_internal::AvgPoolBackwardKernel<decltype(index)>
        <<<BlocksFor(total), kThreads, 0, stream_>>>(planes, height, width, size, stride, out_h,
                                                     out_w, static_cast<float>(size * size), dy,
                                                     dx);
  });
  CheckLaunch("AvgPool2dBackward");
}

void CudaBackend::DropoutForward(int64_t n, float rate, uint64_t seed, const float* x, float* mask,
                                 float* y) {
  if (n <= 0) return;
  Activate();
  cuda_internal::DropoutForwardKernel<<<BlocksFor(n), kThreads, 0, stream_>>>(
      n, rate, 1.0f / (1.0f - rate), cuda_internal::Mix64(seed), x, mask, y);
  CheckLaunch("DropoutForward");
}

void CudaBackend::DropoutBackward(int64_t n, const float* mask, const float* dy, float* dx) {
  if (n <= 0) return;
  Activate();
  cuda_internal::MultiplyKernel<<<BlocksFor(n), kThreads, 0, stream_>>>(n, dy, mask, dx);
  CheckLaunch("DropoutBackward");
}

}  // namespace psgrid
