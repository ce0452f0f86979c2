// Recurrent layers: rnn (Elman), lstm and gru, as torch.nn.RNN / LSTM / GRU with one layer, one
// direction, batch_first=True and a zero initial state.
//
// Per sample the input is a sequence [T, features] (T steps); the output is every step's
// hidden state [T, units] with return_sequences, else the last step's [units]. H = units.
//
//   rnn:  h_t = act(x_t·W_ihᵀ + b_ih + h_{t−1}·W_hhᵀ + b_hh), act = tanh (default), relu or
//         sigmoid (torch.nn.RNN has tanh and relu; sigmoid is the same maths).
//   lstm: gates i, f, g, o (torch's order) = x_t·W_ihᵀ + b_ih + h_{t−1}·W_hhᵀ + b_hh, through
//         σ, σ, tanh, σ; c_t = f⊙c_{t−1} + i⊙g, h_t = o⊙tanh(c_t).
//   gru:  r, z = σ(x_t·W_i{r,z}ᵀ + b_i{r,z} + h_{t−1}·W_h{r,z}ᵀ + b_h{r,z}),
//         n = tanh(x_t·W_inᵀ + b_in + r⊙(h_{t−1}·W_hnᵀ + b_hn)), h_t = (1−z)⊙n + z⊙h_{t−1}.
//
// Parameters, with torch's names and shapes (G = 1, 4, 3 gates): "<prefix>.weight_ih_l0"
// [G·H, features], "<prefix>.weight_hh_l0" [G·H, H], "<prefix>.bias_ih_l0" [G·H],
// "<prefix>.bias_hh_l0" [G·H], so that an export loads into torch.nn.RNN/LSTM/GRU. For the
// init schemes each weight has fan_in = its column count and fan_out = H (one gate's block).
//
// Backpropagation through time. Full BPTT (truncation 0, the default) is the exact gradient.
// With truncation k > 0 the sequence is cut into chunks of k steps aligned to its end:
// [T−k, T), [T−2k, T−k), ..., the first chunk the short one when k does not divide T. The
// forward pass is unchanged (the state is carried across chunk boundaries); the backward pass
// treats the state entering each chunk (h, and c for lstm) as a constant: no gradient flows
// from a step into an earlier chunk. The result is the exact gradient of that "detached"
// computation, as torch gives when h (and c) are detach()ed at every chunk boundary. Gradient
// from any step thus flows back at most k − 1 state transitions; the last step, where the loss
// of a layer without return_sequences enters, always gets k steps of history (all T when
// k >= T). Aligning to the end keeps that guarantee; when k divides T both alignments agree.
//
// The parameter gradient is the sum over steps; with average_over_time it is divided by T
// (the input gradient is not: it is the gradient of each step's input).
//
// Backward uses the state cached by the last Forward, which must have been on the same x (as
// Model::ComputeGradients does; a batch of another size makes Backward run Forward again). All
// arithmetic goes through the Backend; buffers are time-major inside ([T, batch, ·]), so the input
// projection of all steps is one GEMM
// ([T·batch, features]·W_ihᵀ) and each step's recurrence one more.
#ifndef PSGRID_CORE_LAYERS_RECURRENT_H_
#define PSGRID_CORE_LAYERS_RECURRENT_H_

#include "core/layers/activation.h"
#include "core/layers/layer.h"

namespace psgrid {

enum class RecurrentCell { kRnn, kLstm, kGru };

struct RecurrentOptions {
  RecurrentCell cell = RecurrentCell::kRnn;
  int64_t units = 0;                          // H >= 1
  Activation activation = Activation::kTanh;  // rnn only
  int64_t truncation = 0;                     // 0: full BPTT
  bool return_sequences = false;
  bool average_over_time = false;
};

class RecurrentLayer final : public Layer {
 public:
  explicit RecurrentLayer(const RecurrentOptions& options) : opt_(options) {}

  std::string_view type() const override;
  absl::StatusOr<Shape> Build(const Shape& input, const std::string& prefix,
                              ParameterSet* params) override;
  void Bind(ParameterSet* params) override;
  void UseMemory(DeviceMemory* memory) override;
  void Forward(Backend& backend, const Tensor& x, Tensor* y) override;
  void Backward(Backend& backend, const Tensor& x, const Tensor& y, const Tensor& dy,
                Tensor* dx) override;

  const RecurrentOptions& options() const { return opt_; }

 private:
  int64_t gates() const;  // G: 1, 4 or 3
  // Whether the gradient flows from step t's state into step t − 1's (t >= 1).
  bool Carries(int64_t t) const;

  RecurrentOptions opt_;
  int64_t steps_ = 0, in_ = 0;
  int w_ih_index_ = -1, w_hh_index_ = -1, b_ih_index_ = -1, b_hh_index_ = -1;
  // Views into the ParameterSet.
  Tensor w_ih_, w_hh_, b_ih_, b_hh_, w_ih_grad_, w_hh_grad_, b_ih_grad_, b_hh_grad_;

  // Forward state, time-major: xt_ [T, B, in]; gates_ [T, B, G·H] (pre-activations, then the
  // gate activations; rnn: pre-activations only); hproj_ (gru) [T, B, 3H] = h_{t−1}·W_hhᵀ +
  // b_hh; h_ [T, B, H]; c_, tanh_c_ (lstm) [T, B, H].
  int64_t batch_ = 0;
  Tensor xt_, gates_, hproj_, h_, c_, tanh_c_, bias_sum_;
  // Backward scratch: dh_ [T, B, H] (∂L/∂h_t), dgates_ / dhproj_ [T, B, G·H], dc_[2] [B, H],
  // dxt_ [T, B, in], dbias_ [G·H].
  Tensor dh_, dgates_, dhproj_, dc_[2], dxt_, dbias_;
  Tensor refresh_;  // the output of a Forward that Backward had to redo
};

}  // namespace psgrid

#endif  // PSGRID_CORE_LAYERS_RECURRENT_H_
