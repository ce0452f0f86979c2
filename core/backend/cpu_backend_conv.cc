// CpuBackend: convolution (im2col / col2im), pooling and dropout kernels.
//
// Every loop keeps the output row as its inner, contiguous dimension: an image row of im2col
// columns, a row of pooled outputs, a run of elements. Bounds are worked out once per row (the
// range of output columns whose input column lies inside the image), so the inner loops carry
// no branches and vectorise; stride 1 rows are plain copies and adds. Compiled with
// -ffp-contract=off (core/CMakeLists.txt): results do not depend on FMA contraction.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/backend/cpu_backend.h"
#include "core/backend/cpu_clones.h"

namespace psgrid {
namespace {

int64_t OutSize(int64_t in, int64_t kernel, int64_t stride, int64_t padding) {
  return (in + 2 * padding - kernel) / stride + 1;
}

// The output columns [lo, hi) whose input column ow·stride − padding + j lies in [0, width).
void ValidRange(int64_t width, int64_t out_w, int64_t stride, int64_t offset, int64_t* lo,
                int64_t* hi) {
  // iw = ow·stride + offset >= 0  ⇔  ow >= ceil(−offset / stride)
  int64_t l = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  // iw <= width − 1  ⇔  ow <= floor((width − 1 − offset) / stride)
  const int64_t last = width - 1 - offset;
  int64_t h = last < 0 ? 0 : last / stride + 1;
  l = std::min(l, out_w);
  h = std::clamp(h, l, out_w);
  *lo = l;
  *hi = h;
}

// SplitMix64's output function.
inline uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The loops of Im2Col, Col2Im and max pooling, compiled for AVX-512 and AVX2 too.
PSGRID_CPU_CLONES void Im2ColLoop(int64_t channels, int64_t height, int64_t width, int64_t kernel,
                        int64_t stride, int64_t padding, const float* __restrict x,
                        float* __restrict cols) {
  const int64_t out_h = OutSize(height, kernel, stride, padding);
  const int64_t out_w = OutSize(width, kernel, stride, padding);
  const int64_t plane_out = out_h * out_w;
  for (int64_t c = 0; c < channels; ++c) {
    const float* xc = x + c * height * width;
    for (int64_t i = 0; i < kernel; ++i) {
      for (int64_t j = 0; j < kernel; ++j) {
        float* row = cols + ((c * kernel + i) * kernel + j) * plane_out;
        const int64_t offset = j - padding;
        int64_t lo, hi;
        ValidRange(width, out_w, stride, offset, &lo, &hi);
        for (int64_t oh = 0; oh < out_h; ++oh) {
          float* out = row + oh * out_w;
          const int64_t ih = oh * stride - padding + i;
          if (ih < 0 || ih >= height || lo >= hi) {
            std::fill(out, out + out_w, 0.0f);
            continue;
          }
          // in[t·stride] = x[c, ih, iw] for output column lo + t.
          const float* in = xc + ih * width + (lo * stride + offset);
          const int64_t n = hi - lo;
          // Rows are short (an image row: tens of floats), so plain loops the compiler
          // inlines and vectorises beat calls to memcpy and fill.
          for (int64_t t = 0; t < lo; ++t) out[t] = 0.0f;
          float* o = out + lo;
          if (stride == 1) {
            for (int64_t t = 0; t < n; ++t) o[t] = in[t];
          } else {
            for (int64_t t = 0; t < n; ++t) o[t] = in[t * stride];
          }
          for (int64_t t = hi; t < out_w; ++t) out[t] = 0.0f;
        }
      }
    }
  }
}

PSGRID_CPU_CLONES void Col2ImLoop(int64_t channels, int64_t height, int64_t width, int64_t kernel,
                        int64_t stride, int64_t padding, const float* __restrict cols,
                        float* __restrict dx) {
  const int64_t out_h = OutSize(height, kernel, stride, padding);
  const int64_t out_w = OutSize(width, kernel, stride, padding);
  const int64_t plane_out = out_h * out_w;
  std::fill(dx, dx + channels * height * width, 0.0f);
  for (int64_t c = 0; c < channels; ++c) {
    float* dxc = dx + c * height * width;
    for (int64_t i = 0; i < kernel; ++i) {
      for (int64_t j = 0; j < kernel; ++j) {
        const float* row = cols + ((c * kernel + i) * kernel + j) * plane_out;
        const int64_t offset = j - padding;
        int64_t lo, hi;
        ValidRange(width, out_w, stride, offset, &lo, &hi);
        if (lo >= hi) continue;
        for (int64_t oh = 0; oh < out_h; ++oh) {
          const int64_t ih = oh * stride - padding + i;
          if (ih < 0 || ih >= height) continue;
          const float* in = row + oh * out_w + lo;
          // out[t·stride] = dx[c, ih, iw] for output column lo + t.
          float* out = dxc + ih * width + (lo * stride + offset);
          const int64_t n = hi - lo;
          if (stride == 1) {
            for (int64_t t = 0; t < n; ++t) out[t] += in[t];
          } else {
            // Distinct columns hit distinct pixels: no dependence between iterations.
            for (int64_t t = 0; t < n; ++t) out[t * stride] += in[t];
          }
        }
      }
    }
  }
}

// The common 2×2 window moved by 2, with the window's size and stride known to the compiler:
// the even and odd columns of two input rows, compared in the window's row-major order.
PSGRID_CPU_CLONES void MaxPool2x2Loop(int64_t planes, int64_t height, int64_t width,
                                      const float* __restrict x, float* __restrict y,
                                      int32_t* __restrict argmax) {
  const int64_t out_h = height / 2, out_w = width / 2;
  for (int64_t p = 0; p < planes; ++p) {
    const float* xp = x + p * height * width;
    for (int64_t oh = 0; oh < out_h; ++oh) {
      const int64_t top = 2 * oh * width;
      const float* r0 = xp + top;
      const float* r1 = r0 + width;
      float* best = y + (p * out_h + oh) * out_w;
      int32_t* where = argmax + (p * out_h + oh) * out_w;
      for (int64_t ow = 0; ow < out_w; ++ow) {
        const int32_t at = static_cast<int32_t>(top + 2 * ow);
        float m = r0[2 * ow];
        int32_t w = at;
        // A later element wins only when strictly greater or NaN (v != v): ties keep the first.
        float v = r0[2 * ow + 1];
        bool take = v > m || v != v;
        m = take ? v : m;
        w = take ? at + 1 : w;
        v = r1[2 * ow];
        take = v > m || v != v;
        m = take ? v : m;
        w = take ? at + static_cast<int32_t>(width) : w;
        v = r1[2 * ow + 1];
        take = v > m || v != v;
        m = take ? v : m;
        w = take ? at + static_cast<int32_t>(width) + 1 : w;
        best[ow] = m;
        where[ow] = w;
      }
    }
  }
}

PSGRID_CPU_CLONES void MaxPool2dForwardLoop(int64_t planes, int64_t height, int64_t width, int64_t size,
                                  int64_t stride, const float* __restrict x, float* __restrict y,
                                  int32_t* __restrict argmax) {
  const int64_t out_h = OutSize(height, size, stride, 0);
  const int64_t out_w = OutSize(width, size, stride, 0);
  for (int64_t p = 0; p < planes; ++p) {
    const float* xp = x + p * height * width;
    for (int64_t oh = 0; oh < out_h; ++oh) {
      float* best = y + (p * out_h + oh) * out_w;
      int32_t* where = argmax + (p * out_h + oh) * out_w;
      // The window's first element, then the others in row-major order: a later one wins
      // only when strictly greater (or NaN), so ties keep the first.
      const int64_t top = oh * stride * width;
      for (int64_t ow = 0; ow < out_w; ++ow) {
        best[ow] = xp[top + ow * stride];
        where[ow] = static_cast<int32_t>(top + ow * stride);
      }
      for (int64_t i = 0; i < size; ++i) {
        const int64_t row = top + i * width;
        for (int64_t j = (i == 0 ? 1 : 0); j < size; ++j) {
          const float* in = xp + row + j;
          const int32_t base = static_cast<int32_t>(row + j);
          for (int64_t ow = 0; ow < out_w; ++ow) {
            const float v = in[ow * stride];
            const bool take = v > best[ow] || std::isnan(v);
            best[ow] = take ? v : best[ow];
            where[ow] = take ? base + static_cast<int32_t>(ow * stride) : where[ow];
          }
        }
      }
    }
  }
}

}  // namespace

void CpuBackend::Im2Col(int64_t channels, int64_t height, int64_t width, int64_t kernel,
                        int64_t stride, int64_t padding, const float* __restrict x,
                        float* __restrict cols) {
  Im2ColLoop(channels, height, width, kernel, stride, padding, x, cols);
}

void CpuBackend::Col2Im(int64_t channels, int64_t height, int64_t width, int64_t kernel,
                        int64_t stride, int64_t padding, const float* __restrict cols,
                        float* __restrict dx) {
  Col2ImLoop(channels, height, width, kernel, stride, padding, cols, dx);
}

void CpuBackend::BroadcastChannels(int64_t batch, int64_t channels, int64_t spatial,
                                   const float* bias, float* y) {
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t c = 0; c < channels; ++c) {
      float* out = y + (b * channels + c) * spatial;
      std::fill(out, out + spatial, bias[c]);
    }
  }
}

void CpuBackend::SumChannels(int64_t batch, int64_t channels, int64_t spatial,
                             const float* __restrict x, float* __restrict out) {
  // Eight float lanes per plane (a fixed order, so it vectorises without -ffast-math and
  // gives the same sum on every ISA), the planes then added in double.
  constexpr int kLanes = 8;
  const int64_t whole = spatial / kLanes * kLanes;
  for (int64_t c = 0; c < channels; ++c) {
    double total = 0;
    for (int64_t b = 0; b < batch; ++b) {
      const float* p = x + (b * channels + c) * spatial;
      float lanes[kLanes] = {};
      for (int64_t s = 0; s < whole; s += kLanes) {
        for (int l = 0; l < kLanes; ++l) lanes[l] += p[s + l];
      }
      float tail = 0;
      for (int64_t s = whole; s < spatial; ++s) tail += p[s];
      double plane = tail;
      for (int l = 0; l < kLanes; ++l) plane += lanes[l];
      total += plane;
    }
    out[c] = static_cast<float>(total);
  }
}

void CpuBackend::MaxPool2dForward(int64_t planes, int64_t height, int64_t width, int64_t size,
                                  int64_t stride, const float* __restrict x, float* __restrict y,
                                  int32_t* __restrict argmax) {
  if (size == 2 && stride == 2) {
    MaxPool2x2Loop(planes, height, width, x, y, argmax);
  } else {
    MaxPool2dForwardLoop(planes, height, width, size, stride, x, y, argmax);
  }
}

void CpuBackend::MaxPool2dBackward(int64_t planes, int64_t height, int64_t width, int64_t size,
                                   int64_t stride, const int32_t* __restrict argmax,
                                   const float* __restrict dy, float* __restrict dx) {
  const int64_t out = OutSize(height, size, stride, 0) * OutSize(width, size, stride, 0);
  std::fill(dx, dx + planes * height * width, 0.0f);
  for (int64_t p = 0; p < planes; ++p) {
    float* dxp = dx + p * height * width;
    const int32_t* a = argmax + p * out;
    const float* g = dy + p * out;
    // Windows overlap when stride < size: a scatter-add, one pass over the outputs.
    for (int64_t o = 0; o < out; ++o) dxp[a[o]] += g[o];
  }
}

void CpuBackend::AvgPool2dForward(int64_t planes, int64_t height, int64_t width, int64_t size,
                                  int64_t stride, const float* __restrict x,
                                  float* __restrict y) {
  const int64_t out_h = OutSize(height, size, stride, 0);
  const int64_t out_w = OutSize(width, size, stride, 0);
  const float divisor = static_cast<float>(size * size);
  for (int64_t p = 0; p < planes; ++p) {
    const float* xp = x + p * height * width;
    for (int64_t oh = 0; oh < out_h; ++oh) {
      float* out = y + (p * out_h + oh) * out_w;
      std::fill(out, out + out_w, 0.0f);
      for (int64_t i = 0; i < size; ++i) {
        for (int64_t j = 0; j < size; ++j) {
          const float* in = xp + (oh * stride + i) * width + j;
          for (int64_t ow = 0; ow < out_w; ++ow) out[ow] += in[ow * stride];
        }
      }
      for (int64_t ow = 0; ow < out_w; ++ow) out[ow] /= divisor;
    }
  }
}

void CpuBackend::AvgPool2dBackward(int64_t planes, int64_t height, int64_t width, int64_t size,
                                   int64_t stride, const float* __restrict dy,
                                   float* __restrict dx) {
  const int64_t out_h = OutSize(height, size, stride, 0);
  const int64_t out_w = OutSize(width, size, stride, 0);
  const float divisor = static_cast<float>(size * size);
  std::fill(dx, dx + planes * height * width, 0.0f);
  for (int64_t p = 0; p < planes; ++p) {
    float* dxp = dx + p * height * width;
    for (int64_t oh = 0; oh < out_h; ++oh) {
      const float* g = dy + (p * out_h + oh) * out_w;
      for (int64_t i = 0; i < size; ++i) {
        for (int64_t j = 0; j < size; ++j) {
          float* out = dxp + (oh * stride + i) * width + j;
          for (int64_t ow = 0; ow < out_w; ++ow) out[ow * stride] += g[ow] / divisor;
        }
      }
    }
  }
}

void CpuBackend::DropoutForward(int64_t n, float rate, uint64_t seed, const float* __restrict x,
                                float* __restrict mask, float* __restrict y) {
  constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ull;
  const uint64_t state = Mix64(seed);
  const float keep_scale = 1.0f / (1.0f - rate);
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t h = Mix64(state + static_cast<uint64_t>(i + 1) * kGamma);
    const float u = static_cast<float>(h >> 40) * (1.0f / 16777216.0f);
    const float m = u >= rate ? keep_scale : 0.0f;
    mask[i] = m;
    y[i] = x[i] * m;
  }
}

void CpuBackend::DropoutBackward(int64_t n, const float* __restrict mask,
                                 const float* __restrict dy, float* __restrict dx) {
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * mask[i];
}

}  // namespace psgrid
