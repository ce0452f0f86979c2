// Dense (fully connected, torch.nn.Linear): y = x·Wᵀ + b with W [units, in] and b [units].
// The input is flattened per sample, so [B, 28, 28] feeds a dense layer as [B, 784].
#ifndef PSGRID_CORE_LAYERS_DENSE_H_
#define PSGRID_CORE_LAYERS_DENSE_H_

#include "core/layers/layer.h"

namespace psgrid {

class DenseLayer final : public Layer {
 public:
  explicit DenseLayer(int64_t units) : units_(units) {}

  std::string_view type() const override { return "dense"; }
  absl::StatusOr<Shape> Build(const Shape& input, const std::string& prefix,
                              ParameterSet* params) override;
  void Bind(ParameterSet* params) override;
  void Forward(Backend& backend, const Tensor& x, Tensor* y) override;
  void Backward(Backend& backend, const Tensor& x, const Tensor& y, const Tensor& dy,
                Tensor* dx) override;

 private:
  int64_t units_;
  int64_t in_ = 0;
  int weight_index_ = -1;
  int bias_index_ = -1;
  Tensor weight_, bias_, weight_grad_, bias_grad_;  // views into the ParameterSet
};

}  // namespace psgrid

#endif  // PSGRID_CORE_LAYERS_DENSE_H_
