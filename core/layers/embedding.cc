#include "core/layers/embedding.h"

namespace psgrid {

absl::StatusOr<Shape> EmbeddingLayer::Build(const Shape& input, const std::string& prefix,
                                            ParameterSet* params) {
  if (input.empty() || NumElements(input) < 1) {
    return absl::InvalidArgumentError(
        "an embedding layer needs a per-sample input of token ids, e.g. [steps]");
  }
  weight_index_ =
      params->Declare(prefix + ".weight", {vocab_, units_}, ParamKind::kWeight, 1, units_);
  Shape out = input;
  out.push_back(units_);
  return out;
}

void EmbeddingLayer::Bind(ParameterSet* params) {
  weight_ = params->Value(weight_index_);
  weight_grad_ = params->Grad(weight_index_);
}

void EmbeddingLayer::Forward(Backend& backend, const Tensor& x, Tensor* y) {
  Shape out = x.shape();
  out.push_back(units_);
  y->Resize(out);
  last_invalid_position_ =
      backend.EmbeddingForward(x.size(), vocab_, units_, x.data(), weight_.data(), y->data());
  if (last_invalid_position_ >= 0) ++invalid_batches_;
}

void EmbeddingLayer::Backward(Backend& backend, const Tensor& x, const Tensor& y, const Tensor& dy,
                              Tensor* dx) {
  backend.EmbeddingBackward(x.size(), vocab_, units_, x.data(), dy.data(), weight_grad_.data());
  if (dx != nullptr) {
    dx->Resize(x.shape());
    backend.FillZeros(dx->size(), dx->data());
  }
}

}  // namespace psgrid
