// Conv2d (torch.nn.Conv2d): a 2-D convolution of NCHW images with a square kernel.
// Spec fields: filters (output channels, required >= 1), kernel (side of the square kernel,
// required >= 1), stride (default 1), padding (zeros on each side, default 0), bias (default
// true). Parameters "<i>.weight" [filters, in_channels, kernel, kernel] and "<i>.bias"
// [filters]. Input per sample [C, H, W], or [H, W] taken as [1, H, W]; output
// [filters, (H + 2·padding − kernel) / stride + 1, (W + ...) / stride + 1] (floor).
#ifndef PSGRID_CORE_LAYERS_CONV2D_H_
#define PSGRID_CORE_LAYERS_CONV2D_H_

#include <string>

#include "core/layers/layer.h"

namespace psgrid {

class Conv2dLayer final : public Layer {
 public:
  // `field` names the layer's spec in errors ("model.layers[0]"). stride >= 1, padding >= 0.
  Conv2dLayer(int64_t filters, int64_t kernel, int64_t stride, int64_t padding, bool bias,
              std::string field);

  std::string_view type() const override { return "conv2d"; }
  absl::StatusOr<Shape> Build(const Shape& input, const std::string& prefix,
                              ParameterSet* params) override;
  void Bind(ParameterSet* params) override;
  void UseMemory(DeviceMemory* memory) override { workspace_.SetMemory(memory); }
  // Backend::Conv2dForward and Conv2dBackward over the whole batch.
  void Forward(Backend& backend, const Tensor& x, Tensor* y) override;
  void Backward(Backend& backend, const Tensor& x, const Tensor& y, const Tensor& dy,
                Tensor* dx) override;

 private:
  Conv2dShape ShapeFor(int64_t batch) const;

  int64_t filters_, kernel_, stride_, padding_;
  bool bias_;
  std::string field_;
  int64_t channels_ = 0, height_ = 0, width_ = 0, out_h_ = 0, out_w_ = 0;
  int weight_index_ = -1;
  int bias_index_ = -1;
  Tensor weight_, bias_value_, weight_grad_, bias_grad_;  // views into the ParameterSet
  Tensor workspace_;  // Backend::Conv2dWorkspaceFloats floats
};

}  // namespace psgrid

#endif  // PSGRID_CORE_LAYERS_CONV2D_H_
