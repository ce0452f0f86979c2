// Backend: the compute operations that layers, losses and optimizers are made of.
//
// Every operation works on raw float pointers that belong to the backend's device (host memory
// for the CPU backend), in row-major layout, so that a CUDA backend can implement the same
// interface without the callers changing. Layers never do arithmetic of their own on tensors:
// one piece of maths, one place, and a parity test can run every operation on every backend.
//
// Thread-safety: a Backend instance is used by one training thread at a time.
#ifndef PSGRID_CORE_BACKEND_BACKEND_H_
#define PSGRID_CORE_BACKEND_BACKEND_H_

#include <cstdint>
#include <string_view>

namespace psgrid {

enum class Trans { kNo, kYes };

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string_view name() const = 0;

  // C[m×n] = alpha · op(A)[m×k] · op(B)[k×n] + beta · C. op(A) is A or Aᵀ; A is stored m×k
  // (or k×m when transposed), B k×n (or n×k).
  virtual void Gemm(Trans trans_a, Trans trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                    const float* a, const float* b, float beta, float* c) = 0;

  // y[i, :] = bias for every row i < rows (a row broadcast; y is rows×cols).
  virtual void BroadcastRows(int64_t rows, int64_t cols, const float* bias, float* y) = 0;
  // out[j] = Σ_i x[i, j] (x is rows×cols): the bias gradient.
  virtual void SumRows(int64_t rows, int64_t cols, const float* x, float* out) = 0;

  // Element-wise activations over n elements; the backward passes use the forward output y.
  virtual void ReluForward(int64_t n, const float* x, float* y) = 0;
  virtual void ReluBackward(int64_t n, const float* y, const float* dy, float* dx) = 0;
  virtual void SigmoidForward(int64_t n, const float* x, float* y) = 0;
  virtual void SigmoidBackward(int64_t n, const float* y, const float* dy, float* dx) = 0;
  virtual void TanhForward(int64_t n, const float* x, float* y) = 0;
  virtual void TanhBackward(int64_t n, const float* y, const float* dy, float* dx) = 0;

  // Fused, numerically stable softmax cross-entropy over rows×cols logits with integer labels
  // in [0, cols). Returns the mean loss over rows; when dlogits is not null writes its gradient
  // (softmax − onehot) / rows. `correct`, when not null, receives the number of rows whose
  // arg-max equals the label.
  virtual double SoftmaxCrossEntropy(int64_t rows, int64_t cols, const float* logits,
                                     const int32_t* labels, float* dlogits,
                                     int64_t* correct) = 0;
  // Mean squared error over n elements, mean((pred − target)²) as torch.nn.MSELoss; when dpred
  // is not null writes 2·(pred − target)/n.
  virtual double MeanSquaredError(int64_t n, const float* pred, const float* target,
                                  float* dpred) = 0;

  // y ← alpha·x + beta·y over n elements (gradient sums). With beta = 0, y's old contents
  // are ignored, not multiplied.
  virtual void Axpby(int64_t n, float alpha, const float* x, float beta, float* y) = 0;

  // Optimizer kernels over n parameters, on the gradient g = grad_scale·grad (so that a sum of
  // gradients becomes their mean in the same pass).
  // SGD: w ← w − lr·g.
  virtual void SgdUpdate(int64_t n, float lr, float grad_scale, const float* grad,
                         float* weights) = 0;
  // Momentum: v ← μ·v − lr·g; w ← w + v.
  virtual void MomentumUpdate(int64_t n, float lr, float momentum, float grad_scale,
                              const float* grad, float* velocity, float* weights) = 0;
};

}  // namespace psgrid

#endif  // PSGRID_CORE_BACKEND_BACKEND_H_
