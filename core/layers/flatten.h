// Flatten (torch.nn.Flatten): per sample [C, H, W] (any shape) → [C·H·W], in row-major
// (C, H, W) order; the batch dimension stays. Spec fields: none (type only). No parameters.
// Dense layers flatten their input themselves; flatten makes it explicit in a spec.
#ifndef PSGRID_CORE_LAYERS_FLATTEN_H_
#define PSGRID_CORE_LAYERS_FLATTEN_H_

#include "core/layers/layer.h"

namespace psgrid {

class FlattenLayer final : public Layer {
 public:
  std::string_view type() const override { return "flatten"; }
  absl::StatusOr<Shape> Build(const Shape& input, const std::string& prefix,
                              ParameterSet* params) override;
  void Forward(Backend& backend, const Tensor& x, Tensor* y) override;
  void Backward(Backend& backend, const Tensor& x, const Tensor& y, const Tensor& dy,
                Tensor* dx) override;

 private:
  int64_t size_ = 0;  // elements per sample
};

}  // namespace psgrid

#endif  // PSGRID_CORE_LAYERS_FLATTEN_H_
