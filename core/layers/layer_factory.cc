// CreateLayer: the one table of layer types a model description may name.
#include "absl/strings/str_cat.h"
#include "core/layers/activation.h"
#include "core/layers/dense.h"
#include "core/layers/layer.h"

namespace psgrid {

absl::StatusOr<std::unique_ptr<Layer>> CreateLayer(const v1::LayerSpec& spec,
                                                   const std::string& field) {
  const std::string& type = spec.type();
  if (type == "dense") {
    if (spec.units() < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".units: a dense layer needs units >= 1, got ", spec.units()));
    }
    return std::make_unique<DenseLayer>(spec.units());
  }
  Activation kind;
  if (type == "relu") {
    kind = Activation::kRelu;
  } else if (type == "sigmoid") {
    kind = Activation::kSigmoid;
  } else if (type == "tanh") {
    kind = Activation::kTanh;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".type: unknown layer type '", type, "'; expected one of dense, relu, sigmoid, tanh"));
  }
  if (spec.units() != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".units: a ", type, " layer takes no units"));
  }
  return std::make_unique<ActivationLayer>(kind);
}

}  // namespace psgrid
