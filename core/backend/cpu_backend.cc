#include "core/backend/cpu_backend.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

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

// The element-wise loops promise no aliasing (__restrict) and use no branches, so that they
// vectorise.
void CpuBackend::ReluForward(int64_t n, const float* __restrict x, float* __restrict y) {
  for (int64_t i = 0; i < n; ++i) y[i] = std::max(x[i], 0.0f);
}

void CpuBackend::ReluBackward(int64_t n, const float* __restrict y, const float* __restrict dy,
                              float* __restrict dx) {
  for (int64_t i = 0; i < n; ++i) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
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

void CpuBackend::SgdUpdate(int64_t n, const UpdateRule& r, const float* __restrict grad,
                           float* __restrict w) {
  for (int64_t i = 0; i < n; ++i) w[i] -= r.lr * (r.grad_scale * grad[i] + r.weight_decay * w[i]);
}

void CpuBackend::MomentumUpdate(int64_t n, const UpdateRule& r, const float* __restrict grad,
                                float* __restrict buf, float* __restrict w) {
  for (int64_t i = 0; i < n; ++i) {
    const float b = r.momentum * buf[i] + (r.grad_scale * grad[i] + r.weight_decay * w[i]);
    buf[i] = b;
    w[i] -= r.lr * b;
  }
}

void CpuBackend::NesterovUpdate(int64_t n, const UpdateRule& r, const float* __restrict grad,
                                float* __restrict buf, float* __restrict w) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = r.grad_scale * grad[i] + r.weight_decay * w[i];
    const float b = r.momentum * buf[i] + g;
    buf[i] = b;
    w[i] -= r.lr * (g + r.momentum * b);
  }
}

void CpuBackend::AdagradUpdate(int64_t n, const UpdateRule& r, const float* __restrict grad,
                               float* __restrict sum, float* __restrict w) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = r.grad_scale * grad[i] + r.weight_decay * w[i];
    const float s = sum[i] + g * g;
    sum[i] = s;
    w[i] -= r.lr * g / (std::sqrt(s) + r.eps);
  }
}

void CpuBackend::RmspropUpdate(int64_t n, const UpdateRule& r, const float* __restrict grad,
                               float* __restrict square_avg, float* __restrict buf,
                               float* __restrict w) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = r.grad_scale * grad[i] + r.weight_decay * w[i];
    const float a = r.alpha * square_avg[i] + (1.0f - r.alpha) * g * g;
    square_avg[i] = a;
    const float d = g / (std::sqrt(a) + r.eps);
    if (buf != nullptr) {
      const float b = r.momentum * buf[i] + d;
      buf[i] = b;
      w[i] -= r.lr * b;
    } else {
      w[i] -= r.lr * d;
    }
  }
}

void CpuBackend::AdamUpdate(int64_t n, const UpdateRule& r, bool decoupled,
                            const float* __restrict grad, float* __restrict m,
                            float* __restrict v, float* __restrict w) {
  const float step_size = r.lr / r.bias_correction1;
  const float root_bc2 = std::sqrt(r.bias_correction2);
  const float coupled = decoupled ? 0.0f : r.weight_decay;
  const float shrink = decoupled ? 1.0f - r.lr * r.weight_decay : 1.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float wi = w[i] * shrink;
    const float g = r.grad_scale * grad[i] + coupled * w[i];
    const float mi = r.beta1 * m[i] + (1.0f - r.beta1) * g;
    const float vi = r.beta2 * v[i] + (1.0f - r.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    w[i] = wi - step_size * mi / (std::sqrt(vi) / root_bc2 + r.eps);
  }
}

int SetBlasThreads(int n) {
  if (n > 0) openblas_set_num_threads(n);
  return openblas_get_num_threads();
}

}  // namespace psgrid
