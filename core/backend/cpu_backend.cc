#include "core/backend/cpu_backend.h"

#include <cblas.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "core/backend/cpu_clones.h"

namespace psgrid {

void CpuBackend::Gemm(Trans trans_a, Trans trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                      const float* a, const float* b, float beta, float* c) {
  const bool ta = trans_a == Trans::kYes;
  const bool tb = trans_b == Trans::kYes;
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), alpha, a,
              static_cast<blasint>(ta ? m : k), b, static_cast<blasint>(tb ? k : n), beta, c,
              static_cast<blasint>(n));
}

void CpuBackend::BroadcastRows(int64_t rows, int64_t cols, const float* bias, float* y) {
  for (int64_t i = 0; i < rows; ++i) std::copy(bias, bias + cols, y + i * cols);
}

void CpuBackend::SumRows(int64_t rows, int64_t cols, const float* x, float* out) {
  std::fill(out, out + cols, 0.0f);
  for (int64_t i = 0; i < rows; ++i) {
    const float* row = x + i * cols;
    for (int64_t j = 0; j < cols; ++j) out[j] += row[j];
  }
}

namespace {

// ReLU runs over every activation of a convolutional model: cloned for AVX2/AVX-512 too.
PSGRID_CPU_CLONES void ReluForwardLoop(int64_t n, const float* __restrict x, float* __restrict y) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::max(x[i], 0.0f);  // NaN stays NaN, as torch
}

PSGRID_CPU_CLONES void ReluBackwardLoop(int64_t n, const float* __restrict y,
                                        const float* __restrict dy, float* __restrict dx) {
  // Both operands loaded unconditionally, so the select vectorises (a conditional load of dy
  // compiles to a branch per element, mispredicted on every sign change).
  for (int64_t i = 0; i < n; ++i) {
    const float g = dy[i];
    dx[i] = y[i] > 0.0f ? g : 0.0f;
  }
}

}  // namespace

// The element-wise loops promise no aliasing (__restrict) and use no branches, so that they
// vectorise.
void CpuBackend::ReluForward(int64_t n, const float* __restrict x, float* __restrict y) {
  ReluForwardLoop(n, x, y);
}

void CpuBackend::ReluBackward(int64_t n, const float* __restrict y, const float* __restrict dy,
                              float* __restrict dx) {
  ReluBackwardLoop(n, y, dy, dx);
}

void CpuBackend::SigmoidForward(int64_t n, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = 1.0f / (1.0f + std::exp(-x[i]));
}

void CpuBackend::SigmoidBackward(int64_t n, const float* y, const float* dy, float* dx) {
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * y[i] * (1.0f - y[i]);
}

void CpuBackend::TanhForward(int64_t n, const float* x, float* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
}

void CpuBackend::TanhBackward(int64_t n, const float* y, const float* dy, float* dx) {
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}

double CpuBackend::SoftmaxCrossEntropy(int64_t rows, int64_t cols, const float* logits,
                                       const int32_t* labels, float* dlogits, int64_t* correct) {
  double total = 0.0;
  int64_t hits = 0;
  const float inv_rows = 1.0f / static_cast<float>(rows);
  for (int64_t i = 0; i < rows; ++i) {
    const float* z = logits + i * cols;
    const int32_t label = labels[i];
    int64_t argmax = 0;
    for (int64_t j = 1; j < cols; ++j) {
      if (z[j] > z[argmax]) argmax = j;
    }
    if (argmax == label) ++hits;
    const float max = z[argmax];
    double sum = 0.0;
    for (int64_t j = 0; j < cols; ++j) sum += std::exp(static_cast<double>(z[j] - max));
    const double log_sum = std::log(sum);
    total += log_sum - static_cast<double>(z[label] - max);
    if (dlogits != nullptr) {
      float* dz = dlogits + i * cols;
      const float inv_sum = static_cast<float>(1.0 / sum);
      for (int64_t j = 0; j < cols; ++j) dz[j] = std::exp(z[j] - max) * inv_sum * inv_rows;
      dz[label] -= inv_rows;
    }
  }
  if (correct != nullptr) *correct = hits;
  return total / static_cast<double>(rows);
}

double CpuBackend::MeanSquaredError(int64_t n, const float* pred, const float* target,
                                    float* dpred) {
  double total = 0.0;
  const float scale = 2.0f / static_cast<float>(n);
  for (int64_t i = 0; i < n; ++i) {
    const float d = pred[i] - target[i];
    total += static_cast<double>(d) * d;
    if (dpred != nullptr) dpred[i] = scale * d;
  }
  return total / static_cast<double>(n);
}

void CpuBackend::Axpby(int64_t n, float alpha, const float* x, float beta, float* y) {
  if (beta == 0.0f) {
    for (int64_t i = 0; i < n; ++i) y[i] = alpha * x[i];
  } else if (beta == 1.0f) {
    for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = alpha * x[i] + beta * y[i];
  }
}

double CpuBackend::SquaredNorm(int64_t n, const float* x) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  return sum;
}

// The optimizer kernels report whether every weight they wrote is finite, tested in the loop
// that writes it: `ok &= FiniteMask(w)` accumulates in an int that starts at all ones (a bool
// accumulator does not vectorise with g++). |x| <= FLT_MAX is false exactly for NaN and ±Inf:
// per vector an AND with the sign mask, a compare and an AND into the accumulator.
namespace {

int FiniteMask(float x) { return -static_cast<int>(std::fabs(x) <= FLT_MAX); }

}  // namespace

// The loops of AllFinite, SGD, momentum and Nesterov auto-vectorise. On x86-64 each is also
// compiled for AVX2 and AVX-512 (core/backend/cpu_clones.h): one thread streams memory faster
// with fewer instructions per byte, and these kernels are bound by that stream
// (bench/update_bench). No copy uses FMA: their results are bit-identical.
namespace {

PSGRID_CPU_CLONES int AllFiniteLoop(int64_t n, const float* __restrict x) {
  int ok = -1;
#pragma GCC unroll 4
  for (int64_t i = 0; i < n; ++i) ok &= FiniteMask(x[i]);
  return ok;
}

PSGRID_CPU_CLONES int SgdLoop(int64_t n, const UpdateRule& r, const float* __restrict grad,
                              float* __restrict w) {
  int ok = -1;
#pragma GCC unroll 4
  for (int64_t i = 0; i < n; ++i) {
    const float wi = w[i] - r.lr * (r.grad_scale * grad[i] + r.weight_decay * w[i]);
    w[i] = wi;
    ok &= FiniteMask(wi);
  }
  return ok;
}

PSGRID_CPU_CLONES int MomentumLoop(int64_t n, const UpdateRule& r, const float* __restrict grad,
                                   float* __restrict buf, float* __restrict w) {
  int ok = -1;
#pragma GCC unroll 4
  for (int64_t i = 0; i < n; ++i) {
    const float b = r.momentum * buf[i] + (r.grad_scale * grad[i] + r.weight_decay * w[i]);
    buf[i] = b;
    const float wi = w[i] - r.lr * b;
    w[i] = wi;
    ok &= FiniteMask(wi);
  }
  return ok;
}

PSGRID_CPU_CLONES int NesterovLoop(int64_t n, const UpdateRule& r, const float* __restrict grad,
                                   float* __restrict buf, float* __restrict w) {
  int ok = -1;
#pragma GCC unroll 4
  for (int64_t i = 0; i < n; ++i) {
    const float g = r.grad_scale * grad[i] + r.weight_decay * w[i];
    const float b = r.momentum * buf[i] + g;
    buf[i] = b;
    const float wi = w[i] - r.lr * (g + r.momentum * b);
    w[i] = wi;
    ok &= FiniteMask(wi);
  }
  return ok;
}

// The kernels that take a square root (Adagrad, RMSprop, Adam) do not auto-vectorise: without
// -fno-math-errno g++ keeps a branch to sqrtf (for errno) in the loop. Each is written once, as
// a template over the element type: T = float (one element: the tail, and every element where
// SSE2 is missing) or F4 (four elements, SSE2 intrinsics), with the same operations in the same
// order, so that both paths give the results of the scalar code bit for bit (IEEE-754 +, −, ×,
// ÷ and √ are correctly rounded either way, and nothing is fused or reordered).
float Sqrt(float x) { return std::sqrt(x); }

#if defined(__SSE2__)
#define PSGRID_CPU_F4 1
struct F4 {
  __m128 v;
};
F4 Load4(const float* p) { return {_mm_loadu_ps(p)}; }
void Store4(float* p, F4 x) { _mm_storeu_ps(p, x.v); }
F4 operator+(F4 a, F4 b) { return {_mm_add_ps(a.v, b.v)}; }
F4 operator-(F4 a, F4 b) { return {_mm_sub_ps(a.v, b.v)}; }
F4 operator*(F4 a, F4 b) { return {_mm_mul_ps(a.v, b.v)}; }
F4 operator/(F4 a, F4 b) { return {_mm_div_ps(a.v, b.v)}; }
F4 operator+(F4 a, float b) { return a + F4{_mm_set1_ps(b)}; }
F4 operator/(F4 a, float b) { return a / F4{_mm_set1_ps(b)}; }
F4 operator*(float a, F4 b) { return F4{_mm_set1_ps(a)} * b; }
F4 operator*(F4 a, float b) { return a * F4{_mm_set1_ps(b)}; }
F4 Sqrt(F4 x) { return {_mm_sqrt_ps(x.v)}; }
// FiniteMask of four lanes.
__m128 FiniteMask(F4 x) {
  const __m128 abs = _mm_and_ps(x.v, _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff)));
  return _mm_cmple_ps(abs, _mm_set1_ps(FLT_MAX));
}
__m128 AllLanes() { return _mm_castsi128_ps(_mm_set1_epi32(-1)); }
// -1 when every lane of the mask is set, else 0 (FiniteMask's int form).
int AllLanesSet(__m128 mask) { return _mm_movemask_ps(mask) == 0xf ? -1 : 0; }
#endif

// Adagrad's update of one element (or four): s ← s + g²; returns w − lr·g / (√s + eps).
template <typename T>
T AdagradStep(const UpdateRule& r, T grad, T w, T& sum) {
  const T g = r.grad_scale * grad + r.weight_decay * w;
  sum = sum + g * g;
  return w - r.lr * g / (Sqrt(sum) + r.eps);
}

// RMSprop's: a ← α·a + (1−α)·g²; d = g / (√a + eps); with momentum (buf not null)
// b ← μ·b + d and w − lr·b, else w − lr·d.
template <typename T>
T RmspropStep(const UpdateRule& r, T grad, T w, T& square_avg, T* buf) {
  const T g = r.grad_scale * grad + r.weight_decay * w;
  square_avg = r.alpha * square_avg + (1.0f - r.alpha) * g * g;
  const T d = g / (Sqrt(square_avg) + r.eps);
  if (buf == nullptr) return w - r.lr * d;
  *buf = r.momentum * *buf + d;
  return w - r.lr * *buf;
}

// Adam's constants of one step (see AdamUpdate in backend.h).
struct AdamConstants {
  float grad_scale, coupled, shrink, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size,
      root_bc2, eps;
};

template <typename T>
T AdamStep(const AdamConstants& k, T grad, T w, T& m, T& v) {
  const T shrunk = w * k.shrink;
  const T g = k.grad_scale * grad + k.coupled * w;
  m = k.beta1 * m + k.one_minus_beta1 * g;
  v = k.beta2 * v + k.one_minus_beta2 * g * g;
  return shrunk - k.step_size * m / (Sqrt(v) / k.root_bc2 + k.eps);
}

}  // namespace

bool CpuBackend::AllFinite(int64_t n, const float* x) { return AllFiniteLoop(n, x) != 0; }

bool CpuBackend::SgdUpdate(int64_t n, const UpdateRule& r, const float* grad, float* w) {
  return SgdLoop(n, r, grad, w) != 0;
}

bool CpuBackend::MomentumUpdate(int64_t n, const UpdateRule& r, const float* grad, float* buf,
                                float* w) {
  return MomentumLoop(n, r, grad, buf, w) != 0;
}

bool CpuBackend::NesterovUpdate(int64_t n, const UpdateRule& r, const float* grad, float* buf,
                                float* w) {
  return NesterovLoop(n, r, grad, buf, w) != 0;
}

bool CpuBackend::AdagradUpdate(int64_t n, const UpdateRule& r, const float* __restrict grad,
                               float* __restrict sum, float* __restrict w) {
  int64_t i = 0;
  int ok = -1;
#ifdef PSGRID_CPU_F4
  __m128 ok4 = AllLanes();
  for (; i + 4 <= n; i += 4) {
    F4 s = Load4(sum + i);
    const F4 wi = AdagradStep(r, Load4(grad + i), Load4(w + i), s);
    Store4(sum + i, s);
    Store4(w + i, wi);
    ok4 = _mm_and_ps(ok4, FiniteMask(wi));
  }
  ok = AllLanesSet(ok4);
#endif
  for (; i < n; ++i) {
    float s = sum[i];
    const float wi = AdagradStep(r, grad[i], w[i], s);
    sum[i] = s;
    w[i] = wi;
    ok &= FiniteMask(wi);
  }
  return ok != 0;
}

bool CpuBackend::RmspropUpdate(int64_t n, const UpdateRule& r, const float* __restrict grad,
                               float* __restrict square_avg, float* __restrict buf,
                               float* __restrict w) {
  int64_t i = 0;
  int ok = -1;
#ifdef PSGRID_CPU_F4
  __m128 ok4 = AllLanes();
  for (; i + 4 <= n; i += 4) {
    F4 a = Load4(square_avg + i);
    F4 b = buf != nullptr ? Load4(buf + i) : F4{};
    const F4 wi = RmspropStep(r, Load4(grad + i), Load4(w + i), a, buf != nullptr ? &b : nullptr);
    Store4(square_avg + i, a);
    if (buf != nullptr) Store4(buf + i, b);
    Store4(w + i, wi);
    ok4 = _mm_and_ps(ok4, FiniteMask(wi));
  }
  ok = AllLanesSet(ok4);
#endif
  for (; i < n; ++i) {
    float a = square_avg[i];
    float b = buf != nullptr ? buf[i] : 0.0f;
    const float wi = RmspropStep(r, grad[i], w[i], a, buf != nullptr ? &b : nullptr);
    square_avg[i] = a;
    if (buf != nullptr) buf[i] = b;
    w[i] = wi;
    ok &= FiniteMask(wi);
  }
  return ok != 0;
}

bool CpuBackend::AdamUpdate(int64_t n, const UpdateRule& r, bool decoupled,
                            const float* __restrict grad, float* __restrict m,
                            float* __restrict v, float* __restrict w) {
  const AdamConstants k{.grad_scale = r.grad_scale,
                        .coupled = decoupled ? 0.0f : r.weight_decay,
                        .shrink = decoupled ? 1.0f - r.lr * r.weight_decay : 1.0f,
                        .beta1 = r.beta1,
                        .one_minus_beta1 = 1.0f - r.beta1,
                        .beta2 = r.beta2,
                        .one_minus_beta2 = 1.0f - r.beta2,
                        .step_size = r.lr / r.bias_correction1,
                        .root_bc2 = std::sqrt(r.bias_correction2),
                        .eps = r.eps};
  int64_t i = 0;
  int ok = -1;
#ifdef PSGRID_CPU_F4
  __m128 ok4 = AllLanes();
  for (; i + 4 <= n; i += 4) {
    F4 mi = Load4(m + i), vi = Load4(v + i);
    const F4 wi = AdamStep(k, Load4(grad + i), Load4(w + i), mi, vi);
    Store4(m + i, mi);
    Store4(v + i, vi);
    Store4(w + i, wi);
    ok4 = _mm_and_ps(ok4, FiniteMask(wi));
  }
  ok = AllLanesSet(ok4);
#endif
  for (; i < n; ++i) {
    float mi = m[i], vi = v[i];
    const float wi = AdamStep(k, grad[i], w[i], mi, vi);
    m[i] = mi;
    v[i] = vi;
    w[i] = wi;
    ok &= FiniteMask(wi);
  }
  return ok != 0;
}

void* CpuBackend::AllocateBytes(size_t bytes) {
  if (bytes == 0) return nullptr;
  constexpr size_t kAlign = 64;  // a cache line, and a whole AVX-512 vector
  // std::aligned_alloc wants a multiple of the alignment.
  return std::aligned_alloc(kAlign, (bytes + kAlign - 1) / kAlign * kAlign);
}

void CpuBackend::Free(void* p) { std::free(p); }

void CpuBackend::CopyToDevice(void* dst, const void* src, size_t bytes) {
  if (bytes != 0) std::memcpy(dst, src, bytes);
}

void CpuBackend::CopyToHost(void* dst, const void* src, size_t bytes) {
  if (bytes != 0) std::memcpy(dst, src, bytes);
}

void CpuBackend::CopyOnDevice(void* dst, const void* src, size_t bytes) {
  if (bytes != 0) std::memcpy(dst, src, bytes);
}

int SetBlasThreads(int n) {
  if (n > 0) openblas_set_num_threads(n);
  return openblas_get_num_threads();
}

}  // namespace psgrid
