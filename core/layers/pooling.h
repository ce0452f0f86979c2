// Max and average pooling (torch.nn.MaxPool2d, torch.nn.AvgPool2d) without padding, floor
// mode. Spec fields: size (side of the square window, required >= 1), stride (default
// `size`); no other field. Input per sample [..., H, W] (e.g. [C, H, W], or [H, W]); each
// of the last-two-dims planes is pooled on its own: output [..., (H − size) / stride + 1,
// (W − size) / stride + 1]. No parameters. Max pooling routes the gradient to the first
// maximum of each window (recorded by Forward: Backward needs the Forward of the same x).
#ifndef PSGRID_CORE_LAYERS_POOLING_H_
#define PSGRID_CORE_LAYERS_POOLING_H_

#include <string>

#include "core/layers/layer.h"

namespace psgrid {

enum class Pooling { kMax, kAverage };

class Pool2dLayer final : public Layer {
 public:
  // size >= 1, stride >= 1; `field` names the layer's spec in errors.
  Pool2dLayer(Pooling kind, int64_t size, int64_t stride, std::string field);

  std::string_view type() const override;
  absl::StatusOr<Shape> Build(const Shape& input, const std::string& prefix,
                              ParameterSet* params) override;
  void UseMemory(DeviceMemory* memory) override { argmax_.SetMemory(memory); }
  void Forward(Backend& backend, const Tensor& x, Tensor* y) override;
  void Backward(Backend& backend, const Tensor& x, const Tensor& y, const Tensor& dy,
                Tensor* dx) override;

 private:
  Pooling kind_;
  int64_t size_, stride_;
  std::string field_;
  int64_t planes_ = 0, height_ = 0, width_ = 0;  // planes per sample
  Shape output_;
  Tensor argmax_;  // max pooling: int32 indices of the last Forward, stored in float-sized cells
};

}  // namespace psgrid

#endif  // PSGRID_CORE_LAYERS_POOLING_H_
