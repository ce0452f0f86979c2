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

// The hyper-parameters of one optimizer step (torch.optim's names).
struct UpdateRule {
  float lr = 0;
  float momentum = 0;
  float weight_decay = 0;
  float beta1 = 0.9f, beta2 = 0.999f;  // Adam
  float eps = 1e-8f;                   // Adam, RMSprop, Adagrad
  float alpha = 0.99f;                 // RMSprop
  float bias_correction1 = 1, bias_correction2 = 1;  // Adam: 1 − β^t
  float grad_scale = 1;
};

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
  // Σ x² over n elements, accumulated in double (gradient clipping by global norm).
  virtual double SquaredNorm(int64_t n, const float* x) = 0;

  // true when none of x[0, n) is NaN or ±Inf (n = 0: true). One pass, for checking a
  // pushed gradient before it is applied.
  virtual bool AllFinite(int64_t n, const float* x) = 0;

  // Optimizer kernels over n parameters, as torch.optim defines them, on the gradient
  // g = rule.grad_scale·grad (+ rule.weight_decay·w where torch adds it), so that a sum of
  // gradients becomes their mean in the same pass.
  //
  // Each returns true when every weight it wrote, w[0, n), is finite, false when one of them
  // is NaN or ±Inf (a NaN or Inf in the gradient, a NaN in the state, an update that overflowed).
  // The test runs in the loop that writes the weights (no second pass over memory); the
  // weights and state are written either way, so a caller that wants to keep the old weights
  // on false must hold a copy. The state buffers themselves are not tested: a NaN in them, or
  // an Inf in a momentum buffer, reaches the weight in the same step, but an Inf in a
  // second-moment state (Adagrad's sum, RMSprop's square_avg, Adam's v; e.g. from a finite
  // gradient of 1e19 or more, whose square overflows) only stops that weight from moving.
  //
  // SGD: w ← w − lr·g.
  virtual bool SgdUpdate(int64_t n, const UpdateRule& rule, const float* grad, float* w) = 0;
  // Momentum (torch.optim.SGD's form): b ← μ·b + g; w ← w − lr·b. (With V = −lr·b this is
  // V ← μ·V − lr·g, W ← W + V at a constant lr.)
  virtual bool MomentumUpdate(int64_t n, const UpdateRule& rule, const float* grad, float* buf,
                              float* w) = 0;
  // Nesterov: b ← μ·b + g; w ← w − lr·(g + μ·b).
  virtual bool NesterovUpdate(int64_t n, const UpdateRule& rule, const float* grad, float* buf,
                              float* w) = 0;
  // Adagrad: s ← s + g²; w ← w − lr·g / (√s + eps) (rule.lr already decayed).
  virtual bool AdagradUpdate(int64_t n, const UpdateRule& rule, const float* grad, float* sum,
                             float* w) = 0;
  // RMSprop: a ← α·a + (1−α)·g²; d = g / (√a + eps); with momentum b ← μ·b + d, w ← w − lr·b,
  // else w ← w − lr·d. `buf` may be null without momentum.
  virtual bool RmspropUpdate(int64_t n, const UpdateRule& rule, const float* grad,
                             float* square_avg, float* buf, float* w) = 0;
  // Adam: m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
  // w ← w − (lr/bc1)·m / (√v/√bc2 + eps), bc = 1 − β^t. AdamW (`decoupled`): the weight decay
  // is w ← w·(1 − lr·λ) first, not added to g.
  virtual bool AdamUpdate(int64_t n, const UpdateRule& rule, bool decoupled, const float* grad,
                          float* m, float* v, float* w) = 0;
};

}  // namespace psgrid

#endif  // PSGRID_CORE_BACKEND_BACKEND_H_
