#include "core/layers/recurrent.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace psgrid {

std::string_view RecurrentLayer::type() const {
  switch (opt_.cell) {
    case RecurrentCell::kRnn:
      return "rnn";
    case RecurrentCell::kLstm:
      return "lstm";
    case RecurrentCell::kGru:
      return "gru";
  }
  return "?";
}

int64_t RecurrentLayer::gates() const {
  switch (opt_.cell) {
    case RecurrentCell::kRnn:
      return 1;
    case RecurrentCell::kLstm:
      return 4;
    case RecurrentCell::kGru:
      return 3;
  }
  return 1;
}

bool RecurrentLayer::Carries(int64_t t) const {
  // Chunks end at T, T − k, T − 2k, ...: step t starts a chunk when T − t is a multiple of k.
  return t > 0 && (opt_.truncation <= 0 || (steps_ - t) % opt_.truncation != 0);
}

absl::StatusOr<Shape> RecurrentLayer::Build(const Shape& input, const std::string& prefix,
                                            ParameterSet* params) {
  if (input.size() != 2 || input[0] < 1 || input[1] < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(opt_.cell == RecurrentCell::kGru ? "a " : "an ", std::string(type()),
                     " layer needs a per-sample input [steps, features]",
                     input.size() == 1 ? " (token ids need an embedding layer first)" : "",
                     ", got ", ShapeToString(input)));
  }
  steps_ = input[0];
  in_ = input[1];
  const int64_t h = opt_.units, gh = gates() * h;
  w_ih_index_ = params->Declare(prefix + ".weight_ih_l0", {gh, in_}, ParamKind::kWeight, in_, h);
  w_hh_index_ = params->Declare(prefix + ".weight_hh_l0", {gh, h}, ParamKind::kWeight, h, h);
  b_ih_index_ = params->Declare(prefix + ".bias_ih_l0", {gh}, ParamKind::kBias, in_, h);
  b_hh_index_ = params->Declare(prefix + ".bias_hh_l0", {gh}, ParamKind::kBias, h, h);
  if (opt_.return_sequences) return Shape{steps_, h};
  return Shape{h};
}

void RecurrentLayer::Bind(ParameterSet* params) {
  w_ih_ = params->Value(w_ih_index_);
  w_hh_ = params->Value(w_hh_index_);
  b_ih_ = params->Value(b_ih_index_);
  b_hh_ = params->Value(b_hh_index_);
  w_ih_grad_ = params->Grad(w_ih_index_);
  w_hh_grad_ = params->Grad(w_hh_index_);
  b_ih_grad_ = params->Grad(b_ih_index_);
  b_hh_grad_ = params->Grad(b_hh_index_);
}

void RecurrentLayer::UseMemory(DeviceMemory* memory) {
  for (Tensor* t : {&xt_, &gates_, &hproj_, &h_, &c_, &tanh_c_, &bias_sum_, &dh_, &dgates_,
                    &dhproj_, &dc_[0], &dc_[1], &dxt_, &dbias_, &refresh_}) {
    t->SetMemory(memory);
  }
}

void RecurrentLayer::Forward(Backend& backend, const Tensor& x, Tensor* y) {
  const int64_t b = x.dim(0), t_steps = steps_, h = opt_.units, gh = gates() * h;
  const int64_t bh = b * h, bgh = b * gh;
  batch_ = b;
  xt_.Resize({t_steps, b, in_});
  backend.SwapLeadingDims(b, t_steps, in_, x.data(), xt_.data());

  // The input projection of every step at once, with the biases that add up front.
  gates_.Resize({t_steps, b, gh});
  if (opt_.cell == RecurrentCell::kGru) {
    backend.BroadcastRows(t_steps * b, gh, b_ih_.data(), gates_.data());
  } else {
    bias_sum_.Resize({gh});
    backend.Axpby(gh, 1.0f, b_ih_.data(), 0.0f, bias_sum_.data());
    backend.Axpby(gh, 1.0f, b_hh_.data(), 1.0f, bias_sum_.data());
    backend.BroadcastRows(t_steps * b, gh, bias_sum_.data(), gates_.data());
  }
  backend.Gemm(Trans::kNo, Trans::kYes, t_steps * b, gh, in_, 1.0f, xt_.data(), w_ih_.data(), 1.0f,
               gates_.data());

  h_.Resize({t_steps, b, h});
  if (opt_.cell == RecurrentCell::kLstm) {
    c_.Resize({t_steps, b, h});
    tanh_c_.Resize({t_steps, b, h});
  } else if (opt_.cell == RecurrentCell::kGru) {
    hproj_.Resize({t_steps, b, gh});
  }
  for (int64_t t = 0; t < t_steps; ++t) {
    float* g = gates_.data() + t * bgh;
    const float* h_prev = t > 0 ? h_.data() + (t - 1) * bh : nullptr;
    float* h_t = h_.data() + t * bh;
    switch (opt_.cell) {
      case RecurrentCell::kRnn:
        if (h_prev != nullptr) {
          backend.Gemm(Trans::kNo, Trans::kYes, b, gh, h, 1.0f, h_prev, w_hh_.data(), 1.0f, g);
        }
        switch (opt_.activation) {
          case Activation::kTanh:
            backend.TanhForward(bh, g, h_t);
            break;
          case Activation::kRelu:
            backend.ReluForward(bh, g, h_t);
            break;
          case Activation::kSigmoid:
            backend.SigmoidForward(bh, g, h_t);
            break;
        }
        break;
      case RecurrentCell::kLstm:
        if (h_prev != nullptr) {
          backend.Gemm(Trans::kNo, Trans::kYes, b, gh, h, 1.0f, h_prev, w_hh_.data(), 1.0f, g);
        }
        backend.LstmCellForward(b, h, g, t > 0 ? c_.data() + (t - 1) * bh : nullptr,
                                c_.data() + t * bh, tanh_c_.data() + t * bh, h_t);
        break;
      case RecurrentCell::kGru: {
        float* q = hproj_.data() + t * bgh;
        backend.BroadcastRows(b, gh, b_hh_.data(), q);
        if (h_prev != nullptr) {
          backend.Gemm(Trans::kNo, Trans::kYes, b, gh, h, 1.0f, h_prev, w_hh_.data(), 1.0f, q);
        }
        backend.GruCellForward(b, h, g, q, h_prev, h_t);
        break;
      }
    }
  }

  if (opt_.return_sequences) {
    y->Resize({b, t_steps, h});
    backend.SwapLeadingDims(t_steps, b, h, h_.data(), y->data());
  } else {
    y->Resize({b, h});
    backend.Axpby(bh, 1.0f, h_.data() + (t_steps - 1) * bh, 0.0f, y->data());
  }
}

void RecurrentLayer::Backward(Backend& backend, const Tensor& x, const Tensor& y, const Tensor& dy,
                              Tensor* dx) {
  // The forward state must be x's (see recurrent.h); a batch of another size cannot be, so
  // its state is recomputed rather than read out of bounds.
  if (x.dim(0) != batch_) Forward(backend, x, &refresh_);
  const int64_t b = batch_, t_steps = steps_, h = opt_.units, gh = gates() * h;
  const int64_t bh = b * h, bgh = b * gh;
  const bool gru = opt_.cell == RecurrentCell::kGru;
  // Without return_sequences the loss enters at the last step only: with truncation, the steps
  // before its chunk get no gradient at all and are skipped.
  const int64_t first = !opt_.return_sequences && opt_.truncation > 0
                            ? std::max<int64_t>(0, t_steps - opt_.truncation)
                            : 0;

  // dh_[t] = ∂L/∂h_t from the output; the recurrence adds the later steps' part below.
  dh_.Resize({t_steps, b, h});
  if (opt_.return_sequences) {
    backend.SwapLeadingDims(b, t_steps, h, dy.data(), dh_.data());
  } else {
    if (t_steps > 1) backend.FillZeros((t_steps - 1) * bh, dh_.data());
    backend.Axpby(bh, 1.0f, dy.data(), 0.0f, dh_.data() + (t_steps - 1) * bh);
  }
  dgates_.Resize({t_steps, b, gh});
  if (gru) dhproj_.Resize({t_steps, b, gh});
  if (opt_.cell == RecurrentCell::kLstm) {
    dc_[0].Resize({b, h});
    dc_[1].Resize({b, h});
  }
  bool dc_valid = false;  // lstm: whether dc_[cur] holds ∂L/∂c_t from the later steps
  int cur = 0;
  for (int64_t t = t_steps - 1; t >= first; --t) {
    const bool carry = Carries(t);
    const float* h_t = h_.data() + t * bh;
    float* dh_t = dh_.data() + t * bh;
    float* dh_prev = carry ? dh_.data() + (t - 1) * bh : nullptr;
    float* dg = dgates_.data() + t * bgh;
    switch (opt_.cell) {
      case RecurrentCell::kRnn:
        switch (opt_.activation) {
          case Activation::kTanh:
            backend.TanhBackward(bh, h_t, dh_t, dg);
            break;
          case Activation::kRelu:
            backend.ReluBackward(bh, h_t, dh_t, dg);
            break;
          case Activation::kSigmoid:
            backend.SigmoidBackward(bh, h_t, dh_t, dg);
            break;
        }
        if (carry) {
          backend.Gemm(Trans::kNo, Trans::kNo, b, h, gh, 1.0f, dg, w_hh_.data(), 1.0f, dh_prev);
        }
        break;
      case RecurrentCell::kLstm: {
        float* dc_prev = carry ? dc_[1 - cur].data() : nullptr;
        backend.LstmCellBackward(
            b, h, gates_.data() + t * bgh, t > 0 ? c_.data() + (t - 1) * bh : nullptr,
            tanh_c_.data() + t * bh, dh_t, dc_valid ? dc_[cur].data() : nullptr, dg, dc_prev);
        if (carry) {
          backend.Gemm(Trans::kNo, Trans::kNo, b, h, gh, 1.0f, dg, w_hh_.data(), 1.0f, dh_prev);
        }
        dc_valid = carry;
        cur = 1 - cur;
        break;
      }
      case RecurrentCell::kGru: {
        float* dq = dhproj_.data() + t * bgh;
        backend.GruCellBackward(b, h, gates_.data() + t * bgh, hproj_.data() + t * bgh,
                                t > 0 ? h_.data() + (t - 1) * bh : nullptr, dh_t, dg, dq, dh_prev);
        if (carry) {
          backend.Gemm(Trans::kNo, Trans::kNo, b, h, gh, 1.0f, dq, w_hh_.data(), 1.0f, dh_prev);
        }
        break;
      }
    }
  }

  // Parameter gradients over the steps [first, T), in one GEMM each.
  const float scale = opt_.average_over_time ? 1.0f / static_cast<float>(t_steps) : 1.0f;
  const int64_t rows = (t_steps - first) * b;
  const float* dg_first = dgates_.data() + first * bgh;
  backend.Gemm(Trans::kYes, Trans::kNo, gh, in_, rows, scale, dg_first,
               xt_.data() + first * b * in_, 0.0f, w_ih_grad_.data());
  dbias_.Resize({gh});
  backend.SumRows(rows, gh, dg_first, dbias_.data());
  backend.Axpby(gh, scale, dbias_.data(), 0.0f, b_ih_grad_.data());
  // ∂L/∂(h_{t−1}·W_hhᵀ + b_hh): the gate gradient itself for rnn and lstm, its own for gru.
  const float* dq = gru ? dhproj_.data() : dgates_.data();
  if (gru) {
    backend.SumRows(rows, gh, dq + first * bgh, dbias_.data());
  }
  backend.Axpby(gh, scale, dbias_.data(), 0.0f, b_hh_grad_.data());
  // W_hh meets h_{t−1} at steps t >= 1 (h_{−1} = 0).
  const int64_t first_hh = std::max<int64_t>(first, 1);
  if (first_hh < t_steps) {
    backend.Gemm(Trans::kYes, Trans::kNo, gh, h, (t_steps - first_hh) * b, scale,
                 dq + first_hh * bgh, h_.data() + (first_hh - 1) * bh, 0.0f, w_hh_grad_.data());
  } else {
    backend.FillZeros(gh * h, w_hh_grad_.data());
  }

  if (dx != nullptr) {
    dx->Resize(x.shape());
    dxt_.Resize({t_steps, b, in_});
    if (first > 0) backend.FillZeros(first * b * in_, dxt_.data());
    backend.Gemm(Trans::kNo, Trans::kNo, rows, in_, gh, 1.0f, dg_first, w_ih_.data(), 0.0f,
                 dxt_.data() + first * b * in_);
    backend.SwapLeadingDims(t_steps, b, in_, dxt_.data(), dx->data());
  }
}

}  // namespace psgrid
