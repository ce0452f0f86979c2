#include "core/layers/activation.h"

namespace psgrid {

std::string_view ActivationLayer::type() const {
  switch (kind_) {
    case Activation::kRelu: return "relu";
    case Activation::kSigmoid: return "sigmoid";
    case Activation::kTanh: return "tanh";
  }
  return "?";
}

absl::StatusOr<Shape> ActivationLayer::Build(const Shape& input, const std::string& prefix,
                                             ParameterSet* params) {
  return input;
}

void ActivationLayer::Forward(Backend& backend, const Tensor& x, Tensor* y) {
  y->Resize(x.shape());
  switch (kind_) {
    case Activation::kRelu: backend.ReluForward(x.size(), x.data(), y->data()); break;
    case Activation::kSigmoid: backend.SigmoidForward(x.size(), x.data(), y->data()); break;
    case Activation::kTanh: backend.TanhForward(x.size(), x.data(), y->data()); break;
  }
}

void ActivationLayer::Backward(Backend& backend, const Tensor& x, const Tensor& y,
                               const Tensor& dy, Tensor* dx) {
  if (dx == nullptr) return;
  dx->Resize(x.shape());
  const int64_t n = y.size();
  switch (kind_) {
    case Activation::kRelu: backend.ReluBackward(n, y.data(), dy.data(), dx->data()); break;
    case Activation::kSigmoid: backend.SigmoidBackward(n, y.data(), dy.data(), dx->data()); break;
    case Activation::kTanh: backend.TanhBackward(n, y.data(), dy.data(), dx->data()); break;
  }
}

}  // namespace psgrid
