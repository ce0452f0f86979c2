// CudaBackend: the optimizer kernels (SGD, momentum, Nesterov, Adagrad, RMSprop, Adam/AdamW).
//
// Each element's update is CpuBackend's, operation for operation (no FMA contraction, IEEE
// division and square root), so the weights and state match the CPU's bit for bit. The loop that
// writes a weight also tests it: a thread that wrote a NaN or ±Inf sets the Result's flag, and
// the call returns whether it stayed clear.
#include <cmath>

#include "core/backend/cuda/cuda_kernels.cuh"

namespace psgrid {
namespace cuda_internal {
namespace {

// w[i] ← step(i) (which updates the state too) for i < n; flags a weight that is not finite.
template <typename Step>
__global__ void UpdateKernel(int64_t n, Step step, float* w, CudaBackend::Result* result) {
  bool bad = false;
  for (int64_t i = GlobalThread(); i < n; i += GridThreads()) {
    const float wi = step(i);
    w[i] = wi;
    bad |= !IsFinite(wi);
  }
  if (bad) result->flag = 1;
}

struct SgdStep {
  UpdateRule r;
  const float* grad;
  const float* w;
  __device__ float operator()(int64_t i) const {
    return w[i] - r.lr * (r.grad_scale * grad[i] + r.weight_decay * w[i]);
  }
};

struct MomentumStep {
  UpdateRule r;
  const float* grad;
  float* buf;
  const float* w;
  __device__ float operator()(int64_t i) const {
    const float b = r.momentum * buf[i] + (r.grad_scale * grad[i] + r.weight_decay * w[i]);
    buf[i] = b;
    return w[i] - r.lr * b;
  }
};

struct NesterovStep {
  UpdateRule r;
  const float* grad;
  float* buf;
  const float* w;
  __device__ float operator()(int64_t i) const {
    const float g = r.grad_scale * grad[i] + r.weight_decay * w[i];
    const float b = r.momentum * buf[i] + g;
    buf[i] = b;
    return w[i] - r.lr * (g + r.momentum * b);
  }
};

struct AdagradStep {
  UpdateRule r;
  const float* grad;
  float* sum;
  const float* w;
  __device__ float operator()(int64_t i) const {
    const float wi = w[i];
    const float g = r.grad_scale * grad[i] + r.weight_decay * wi;
    const float s = sum[i] + g * g;
    sum[i] = s;
    return wi - r.lr * g / (sqrtf(s) + r.eps);
  }
};

struct RmspropStep {
  UpdateRule r;
  const float* grad;
  float* square_avg;
  float* buf;  // null without momentum
  const float* w;
  __device__ float operator()(int64_t i) const {
    const float wi = w[i];
    const float g = r.grad_scale * grad[i] + r.weight_decay * wi;
    const float a = r.alpha * square_avg[i] + (1.0f - r.alpha) * g * g;
    square_avg[i] = a;
    const float d = g / (sqrtf(a) + r.eps);
    if (buf == nullptr) return wi - r.lr * d;
    const float b = r.momentum * buf[i] + d;
    buf[i] = b;
    return wi - r.lr * b;
  }
};

// Adam's constants of one step, worked out on the host as CpuBackend does.
struct AdamConstants {
  float grad_scale, coupled, shrink, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size,
      root_bc2, eps;
};

struct AdamStep {
  AdamConstants k;
  const float* grad;
  float* m;
  float* v;
  const float* w;
  __device__ float operator()(int64_t i) const {
    const float wi = w[i];
    const float shrunk = wi * k.shrink;
    const float g = k.grad_scale * grad[i] + k.coupled * wi;
    const float mi = k.beta1 * m[i] + k.one_minus_beta1 * g;
    const float vi = k.beta2 * v[i] + k.one_minus_beta2 * g * g;
    m[i] = mi;
    v[i] = vi;
    return shrunk - k.step_size * mi / (sqrtf(vi) / k.root_bc2 + k.eps);
  }
};

}  // namespace
}  // namespace cuda_internal

namespace {

// Queues one update kernel over n weights; it flags result when a weight it wrote is not finite.
template <typename Step>
void RunUpdate(cudaStream_t stream, int64_t n, Step step, float* w, CudaBackend::Result* result) {
  cuda_internal::UpdateKernel<<<cuda_internal::BlocksFor(n), cuda_internal::kThreads, 0, stream>>>(
      n, step, w, result);
}

}  // namespace

bool CudaBackend::SgdUpdate(int64_t n, const UpdateRule& r, const float* grad, float* w) {
  if (n <= 0) return true;
  Activate();
  ClearResult();
  RunUpdate(stream_, n, cuda_internal::SgdStep{r, grad, w}, w, result_device_);
  CheckLaunch("SgdUpdate");
  return FetchResult().flag == 0;
}

bool CudaBackend::MomentumUpdate(int64_t n, const UpdateRule& r, const float* grad, float* buf,
                                 float* w) {
  if (n <= 0) return true;
  Activate();
  ClearResult();
  RunUpdate(stream_, n, cuda_internal::MomentumStep{r, grad, buf, w}, w, result_device_);
  CheckLaunch("MomentumUpdate");
  return FetchResult().flag == 0;
}

bool CudaBackend::NesterovUpdate(int64_t n, const UpdateRule& r, const float* grad, float* buf,
                                 float* w) {
  if (n <= 0) return true;
  Activate();
  ClearResult();
  RunUpdate(stream_, n, cuda_internal::NesterovStep{r, grad, buf, w}, w, result_device_);
  CheckLaunch("NesterovUpdate");
  return FetchResult().flag == 0;
}

bool CudaBackend::AdagradUpdate(int64_t n, const UpdateRule& r, const float* grad, float* sum,
                                float* w) {
  if (n <= 0) return true;
  Activate();
  ClearResult();
  RunUpdate(stream_, n, cuda_internal::AdagradStep{r, grad, sum, w}, w, result_device_);
  CheckLaunch("AdagradUpdate");
  return FetchResult().flag == 0;
}

bool CudaBackend::RmspropUpdate(int64_t n, const UpdateRule& r, const float* grad,
                                float* square_avg, float* buf, float* w) {
  if (n <= 0) return true;
  Activate();
  ClearResult();
  RunUpdate(stream_, n, cuda_internal::RmspropStep{r, grad, square_avg, buf, w}, w, result_device_);
  CheckLaunch("RmspropUpdate");
  return FetchResult().flag == 0;
}

bool CudaBackend::AdamUpdate(int64_t n, const UpdateRule& r, bool decoupled, const float* grad,
                             float* m, float* v, float* w) {
  if (n <= 0) return true;
  Activate();
  cuda_internal::AdamConstants k;
  k.grad_scale = r.grad_scale;
  k.coupled = decoupled ? 0.0f : r.weight_decay;
  k.shrink = decoupled ? 1.0f - r.lr * r.weight_decay : 1.0f;
  k.beta1 = r.beta1;
  k.one_minus_beta1 = 1.0f - r.beta1;
  k.beta2 = r.beta2;
  k.one_minus_beta2 = 1.0f - r.beta2;
  k.step_size = r.lr / r.bias_correction1;
  k.root_bc2 = std::sqrt(r.bias_correction2);
  k.eps = r.eps;
  ClearResult();
  RunUpdate(stream_, n, cuda_internal::AdamStep{k, grad, m, v, w}, w, result_device_);
  CheckLaunch("AdamUpdate");
  return FetchResult().flag == 0;
}

}  // namespace psgrid
