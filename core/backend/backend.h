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

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/device_memory.h"

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

// The geometry of a convolution over a batch (see Backend::Conv2dForward).
struct Conv2dShape {
  int64_t batch = 0, channels = 0, height = 0, width = 0;
  int64_t filters = 0, kernel = 0, stride = 1, padding = 0;
  int64_t out_h() const { return (height + 2 * padding - kernel) / stride + 1; }
  int64_t out_w() const { return (width + 2 * padding - kernel) / stride + 1; }
  bool operator==(const Conv2dShape&) const = default;
};

class Backend : public DeviceMemory {
 public:
  ~Backend() override = default;

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

  // ---- Convolution, pooling and dropout ---------------------------------------------------
  // Images are NCHW, row-major. A square window of `kernel` (pooling: `size`) moved by `stride`
  // over an input padded with `padding` zeros on each side gives
  // out_h = (height + 2·padding − kernel) / stride + 1 (floor; likewise out_w), as torch.

  // One sample's input x [channels, height, width] as the columns matrix of a convolution,
  // cols [channels·kernel·kernel, out_h·out_w]:
  //   cols[(c·kernel + i)·kernel + j, oh·out_w + ow] = x[c, oh·stride − padding + i,
  //                                                       ow·stride − padding + j]  (0 outside).
  virtual void Im2Col(int64_t channels, int64_t height, int64_t width, int64_t kernel,
                      int64_t stride, int64_t padding, const float* x, float* cols) = 0;
  // The adjoint of Im2Col: dx [channels, height, width] ← the sum, per pixel, of the column
  // entries that Im2Col copies from it (dx is overwritten; padding entries are dropped).
  virtual void Col2Im(int64_t channels, int64_t height, int64_t width, int64_t kernel,
                      int64_t stride, int64_t padding, const float* cols, float* dx) = 0;
  // y[b, c, s] = bias[c] for y [batch, channels, spatial] (a convolution's bias).
  virtual void BroadcastChannels(int64_t batch, int64_t channels, int64_t spatial,
                                 const float* bias, float* y) = 0;
  // out[c] = Σ_b Σ_s x[b, c, s] for x [batch, channels, spatial] (its gradient).
  virtual void SumChannels(int64_t batch, int64_t channels, int64_t spatial, const float* x,
                           float* out) = 0;
  // Max pooling (torch.nn.MaxPool2d, no padding, floor mode) of `planes` planes
  // [height, width] into y [planes, out_h, out_w]; argmax (same shape) receives the index
  // ih·width + iw, within its plane, of the first maximum in row-major window order (a NaN
  // counts as the maximum, as in torch).
  virtual void MaxPool2dForward(int64_t planes, int64_t height, int64_t width, int64_t size,
                                int64_t stride, const float* x, float* y, int32_t* argmax) = 0;
  // dx [planes, height, width] ← 0, then dx[p, argmax[p, o]] += dy[p, o].
  virtual void MaxPool2dBackward(int64_t planes, int64_t height, int64_t width, int64_t size,
                                 int64_t stride, const int32_t* argmax, const float* dy,
                                 float* dx) = 0;
  // Average pooling (torch.nn.AvgPool2d, no padding, floor mode): each output is the sum of
  // its size×size window divided by size².
  virtual void AvgPool2dForward(int64_t planes, int64_t height, int64_t width, int64_t size,
                                int64_t stride, const float* x, float* y) = 0;
  // dx ← 0, then every input of a window gets dy of that window / size².
  virtual void AvgPool2dBackward(int64_t planes, int64_t height, int64_t width, int64_t size,
                                 int64_t stride, const float* dy, float* dx) = 0;
  // Inverted dropout (torch.nn.Dropout in training) over n elements, rate in [0, 1):
  // mask[i] = 1/(1 − rate) when element i is kept, else 0; y = x ⊙ mask. The draw is a pure
  // function of (seed, i), so that every backend makes the same mask: with
  // mix(z) = SplitMix64's output function and h = mix(mix(seed) + (i + 1)·0x9E3779B97F4A7C15),
  // element i is kept iff (h >> 40)·2⁻²⁴ >= rate (as floats).
  virtual void DropoutForward(int64_t n, float rate, uint64_t seed, const float* x, float* mask,
                              float* y) = 0;
  // dx = dy ⊙ mask.
  virtual void DropoutBackward(int64_t n, const float* mask, const float* dy, float* dx) = 0;

  // Whole convolutions (torch.nn.Conv2d over a batch). The defaults (backend.cc) take each
  // sample through Im2Col and one Gemm (the weight gradient summed over samples, the input
  // gradient through Col2Im), in `workspace` of Conv2dWorkspaceFloats floats; a backend with a
  // faster convolution overrides all three (the CPU backend with oneDNN where it is built).
  // Weights w [filters, channels, kernel, kernel]; bias [filters] or null.
  virtual int64_t Conv2dWorkspaceFloats(const Conv2dShape& s);
  // y [batch, filters, out_h, out_w] = conv(x [batch, channels, height, width], w) + bias.
  virtual void Conv2dForward(const Conv2dShape& s, const float* x, const float* w,
                             const float* bias, float* y, float* workspace);
  // From x, w and dy = ∂L/∂y: overwrites dw (and dbias when not null) with the gradient summed
  // over the batch and, when dx is not null, writes dx = ∂L/∂x.
  virtual void Conv2dBackward(const Conv2dShape& s, const float* x, const float* w,
                              const float* dy, float* dw, float* dbias, float* dx,
                              float* workspace);
  // ---- end of convolution, pooling and dropout --------------------------------------------

  // ---- Recurrent cells and embeddings -------------------------------------------------------
  // Used by core/layers/recurrent.h and core/layers/embedding.h. Recurrent layers keep their
  // per-step buffers time-major ([steps, batch, ·]) so that one step is one contiguous
  // [batch, ·] block and the per-step products are plain Gemm calls.
  //
  // dst[j, i, :] = src[i, j, :] for src [d0, d1, inner] and dst [d1, d0, inner]: batch-major ↔
  // time-major. src and dst must not overlap.
  virtual void SwapLeadingDims(int64_t d0, int64_t d1, int64_t inner, const float* src,
                               float* dst) = 0;
  // FillZeros(n, y), y[0, n) = 0, is DeviceMemory's.
  // One LSTM step for `batch` rows of `hidden` units, gates in torch's order i, f, g, o.
  // gates [batch, 4·hidden]: in, the pre-activations x·W_ihᵀ + b_ih + h_prev·W_hhᵀ + b_hh;
  // out, the activations σ(i), σ(f), tanh(g), σ(o). c_prev [batch, hidden], null for zeros.
  // Writes c = f⊙c_prev + i⊙g, tanh_c = tanh(c) and h = o⊙tanh_c, each [batch, hidden].
  virtual void LstmCellForward(int64_t batch, int64_t hidden, float* gates, const float* c_prev,
                               float* c, float* tanh_c, float* h) = 0;
  // Its backward pass, from the forward's gates (activations), c_prev (null: zeros) and
  // tanh_c, dh = ∂L/∂h and dc_next = ∂L/∂c from the later steps (null: zeros). Writes
  // dgates [batch, 4·hidden] (∂L/∂pre-activations) and, when not null, dc_prev = ∂L/∂c_prev.
  virtual void LstmCellBackward(int64_t batch, int64_t hidden, const float* gates,
                                const float* c_prev, const float* tanh_c, const float* dh,
                                const float* dc_next, float* dgates, float* dc_prev) = 0;
  // One GRU step, torch's order r, z, n. gates [batch, 3·hidden]: in, gx = x·W_ihᵀ + b_ih;
  // out, the activations r, z, n. hproj [batch, 3·hidden] is gh = h_prev·W_hhᵀ + b_hh; h_prev
  // null for zeros. r = σ(gx_r + gh_r), z = σ(gx_z + gh_z), n = tanh(gx_n + r⊙gh_n),
  // h = (1 − z)⊙n + z⊙h_prev.
  virtual void GruCellForward(int64_t batch, int64_t hidden, float* gates, const float* hproj,
                              const float* h_prev, float* h) = 0;
  // Its backward pass from the forward's gates (activations), hproj and h_prev (null: zeros)
  // and dh = ∂L/∂h: writes dgx = ∂L/∂gx and dgh = ∂L/∂gh, both [batch, 3·hidden], and, when
  // dh_prev is not null, adds the direct part z⊙dh to it (the caller adds dgh·W_hh).
  virtual void GruCellBackward(int64_t batch, int64_t hidden, const float* gates,
                               const float* hproj, const float* h_prev, const float* dh,
                               float* dgx, float* dgh, float* dh_prev) = 0;
  // Embedding lookup: y[i, :] = weight[ids[i], :] for n ids (floats holding integers) into
  // weight [vocab, dim]. An id that is not an integer in [0, vocab) (NaN included) is never
  // used as an index: its row of y is zero. Returns the position of the first such id, −1
  // when every id is valid.
  virtual int64_t EmbeddingForward(int64_t n, int64_t vocab, int64_t dim, const float* ids,
                                   const float* weight, float* y) = 0;
  // dweight [vocab, dim] = Σ_i onehot(ids[i]) ⊗ dy[i, :], overwritten: repeated ids add up
  // (in the order of i), invalid ids are skipped.
  virtual void EmbeddingBackward(int64_t n, int64_t vocab, int64_t dim, const float* ids,
                                 const float* dy, float* dweight) = 0;
  // ---- end of recurrent cells and embeddings ------------------------------------------------

  // ---- Memory -------------------------------------------------------------------------------
  // The buffers that the operations above take belong to the backend's device: see DeviceMemory
  // (core/device_memory.h) for is_host, AllocateBytes/AllocateFloats, Free, CopyToDevice,
  // CopyToHost, CopyOnDevice, FillZeros, Synchronize and the pinned host buffers. Where is_host()
  // is true (the CPU backend) host pointers may be passed to the operations directly.
  //
  // The operations of one backend run in the order they are called. Those that return a value
  // to the host (the losses, SquaredNorm, AllFinite, the update kernels, EmbeddingForward) wait
  // for their result; the others may still be running on the device when they return.
  // ---- end of memory ------------------------------------------------------------------------
};

}  // namespace psgrid

#endif  // PSGRID_CORE_BACKEND_BACKEND_H_
