#include "core/layers/dense.h"

namespace psgrid {

absl::StatusOr<Shape> DenseLayer::Build(const Shape& input, const std::string& prefix,
                                        ParameterSet* params) {
  in_ = NumElements(input);
  if (in_ <= 0) return absl::InvalidArgumentError("dense: the input is empty");
  weight_index_ = params->Declare(prefix + ".weight", {units_, in_}, ParamKind::kWeight, in_, units_);
  bias_index_ = params->Declare(prefix + ".bias", {units_}, ParamKind::kBias, in_, units_);
  return Shape{units_};
}

void DenseLayer::Bind(ParameterSet* params) {
  weight_ = params->Value(weight_index_);
  bias_ = params->Value(bias_index_);
  weight_grad_ = params->Grad(weight_index_);
  bias_grad_ = params->Grad(bias_index_);
}

void DenseLayer::Forward(Backend& backend, const Tensor& x, Tensor* y) {
  const int64_t batch = x.dim(0);
  y->Resize({batch, units_});
  backend.BroadcastRows(batch, units_, bias_.data(), y->data());
  backend.Gemm(Trans::kNo, Trans::kYes, batch, units_, in_, 1.0f, x.data(), weight_.data(), 1.0f,
               y->data());
}

void DenseLayer::Backward(Backend& backend, const Tensor& x, const Tensor& y, const Tensor& dy,
                          Tensor* dx) {
  const int64_t batch = x.dim(0);
  // dW = dYᵀ·X, db = Σ_rows dY, dX = dY·W.
  backend.Gemm(Trans::kYes, Trans::kNo, units_, in_, batch, 1.0f, dy.data(), x.data(), 0.0f,
               weight_grad_.data());
  backend.SumRows(batch, units_, dy.data(), bias_grad_.data());
  if (dx != nullptr) {
    dx->Resize(x.shape());
    backend.Gemm(Trans::kNo, Trans::kNo, batch, in_, units_, 1.0f, dy.data(), weight_.data(), 0.0f,
                 dx->data());
  }
}

}  // namespace psgrid
