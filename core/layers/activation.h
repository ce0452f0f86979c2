// Element-wise activations: relu, sigmoid, tanh. No parameters; output shape = input shape.
#ifndef PSGRID_CORE_LAYERS_ACTIVATION_H_
#define PSGRID_CORE_LAYERS_ACTIVATION_H_

#include "core/layers/layer.h"

namespace psgrid {

enum class Activation { kRelu, kSigmoid, kTanh };

class ActivationLayer final : public Layer {
 public:
  explicit ActivationLayer(Activation kind) : kind_(kind) {}

  std::string_view type() const override;
  absl::StatusOr<Shape> Build(const Shape& input, const std::string& prefix,
                              ParameterSet* params) override;
  void Forward(Backend& backend, const Tensor& x, Tensor* y) override;
  void Backward(Backend& backend, const Tensor& x, const Tensor& y, const Tensor& dy,
                Tensor* dx) override;

 private:
  Activation kind_;
};

}  // namespace psgrid

#endif  // PSGRID_CORE_LAYERS_ACTIVATION_H_
