// Backend's default whole-convolution operations, made of its other operations: per sample,
// the columns matrix of Im2Col and one Gemm (a 1×1 kernel with stride 1 and no padding uses
// the image itself as its columns).
#include "core/backend/backend.h"

namespace psgrid {
namespace {

bool IsDirect(const Conv2dShape& s) { return s.kernel == 1 && s.stride == 1 && s.padding == 0; }

}  // namespace

int64_t Backend::Conv2dWorkspaceFloats(const Conv2dShape& s) {
  // One sample's columns [channels·k·k, out_h·out_w] (forward and weight gradient), and their
  // gradient before Col2Im (input gradient).
  return IsDirect(s) ? 0 : 2 * s.channels * s.kernel * s.kernel * s.out_h() * s.out_w();
}

void Backend::Conv2dForward(const Conv2dShape& s, const float* x, const float* w,
                            const float* bias, float* y, float* workspace) {
  const int64_t spatial = s.out_h() * s.out_w();
  const int64_t patch = s.channels * s.kernel * s.kernel;
  const int64_t sample = s.channels * s.height * s.width;
  for (int64_t b = 0; b < s.batch; ++b) {
    float* yb = y + b * s.filters * spatial;
    // The bias per sample, just before the product adds to it: yb is still in cache then.
    if (bias != nullptr) BroadcastChannels(1, s.filters, spatial, bias, yb);
    const float* cols = x + b * sample;
    if (!IsDirect(s)) {
      Im2Col(s.channels, s.height, s.width, s.kernel, s.stride, s.padding, cols, workspace);
      cols = workspace;
    }
    Gemm(Trans::kNo, Trans::kNo, s.filters, spatial, patch, 1.0f, w, cols,
         bias != nullptr ? 1.0f : 0.0f, yb);
  }
}

void Backend::Conv2dBackward(const Conv2dShape& s, const float* x, const float* w,
                             const float* dy, float* dw, float* dbias, float* dx,
                             float* workspace) {
  const int64_t spatial = s.out_h() * s.out_w();
  const int64_t patch = s.channels * s.kernel * s.kernel;
  const int64_t sample = s.channels * s.height * s.width;
  float* cols_buffer = workspace;
  float* dcols = workspace + patch * spatial;
  if (dbias != nullptr) SumChannels(s.batch, s.filters, spatial, dy, dbias);
  for (int64_t b = 0; b < s.batch; ++b) {
    const float* dyb = dy + b * s.filters * spatial;
    // dW += dY_b · cols_bᵀ (overwritten by the first sample).
    const float* cols = x + b * sample;
    if (!IsDirect(s)) {
      Im2Col(s.channels, s.height, s.width, s.kernel, s.stride, s.padding, cols, cols_buffer);
      cols = cols_buffer;
    }
    Gemm(Trans::kNo, Trans::kYes, s.filters, patch, spatial, 1.0f, dyb, cols,
         b == 0 ? 0.0f : 1.0f, dw);
    if (dx == nullptr) continue;
    // dcols = Wᵀ · dY_b, folded back onto the image.
    float* dxb = dx + b * sample;
    if (IsDirect(s)) {
      Gemm(Trans::kYes, Trans::kNo, patch, spatial, s.filters, 1.0f, w, dyb, 0.0f, dxb);
    } else {
      Gemm(Trans::kYes, Trans::kNo, patch, spatial, s.filters, 1.0f, w, dyb, 0.0f, dcols);
      Col2Im(s.channels, s.height, s.width, s.kernel, s.stride, s.padding, dcols, dxb);
    }
  }
}

}  // namespace psgrid
