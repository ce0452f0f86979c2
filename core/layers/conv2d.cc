#include "core/layers/conv2d.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace psgrid {

Conv2dLayer::Conv2dLayer(int64_t filters, int64_t kernel, int64_t stride, int64_t padding,
                         bool bias, std::string field)
    : filters_(filters),
      kernel_(kernel),
      stride_(stride),
      padding_(padding),
      bias_(bias),
      field_(std::move(field)) {}

absl::StatusOr<Shape> Conv2dLayer::Build(const Shape& input, const std::string& prefix,
                                         ParameterSet* params) {
  if (input.size() == 2) {
    channels_ = 1;
    height_ = input[0];
    width_ = input[1];
  } else if (input.size() == 3) {
    channels_ = input[0];
    height_ = input[1];
    width_ = input[2];
  } else {
    return absl::InvalidArgumentError(
        "conv2d: the input per sample must be [channels, height, width] or [height, width]");
  }
  if (channels_ < 1 || height_ < 1 || width_ < 1) {
    return absl::InvalidArgumentError("conv2d: the input is empty");
  }
  if (height_ + 2 * padding_ < kernel_ || width_ + 2 * padding_ < kernel_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "conv2d: ", field_, ".kernel is ", kernel_, ", larger than the padded input ",
        height_ + 2 * padding_, "×", width_ + 2 * padding_, " (padding ", padding_, ")"));
  }
  out_h_ = (height_ + 2 * padding_ - kernel_) / stride_ + 1;
  out_w_ = (width_ + 2 * padding_ - kernel_) / stride_ + 1;
  const int64_t patch = channels_ * kernel_ * kernel_;
  const int64_t fan_in = patch;
  const int64_t fan_out = filters_ * kernel_ * kernel_;
  weight_index_ = params->Declare(prefix + ".weight", {filters_, channels_, kernel_, kernel_},
                                  ParamKind::kWeight, fan_in, fan_out);
  if (bias_) {
    bias_index_ = params->Declare(prefix + ".bias", {filters_}, ParamKind::kBias, fan_in, fan_out);
  }
  return Shape{filters_, out_h_, out_w_};
}

void Conv2dLayer::Bind(ParameterSet* params) {
  weight_ = params->Value(weight_index_);
  weight_grad_ = params->Grad(weight_index_);
  if (bias_) {
    bias_value_ = params->Value(bias_index_);
    bias_grad_ = params->Grad(bias_index_);
  }
}

void Conv2dLayer::Forward(Backend& backend, const Tensor& x, Tensor* y) {
  const Conv2dShape shape = ShapeFor(x.dim(0));
  y->Resize({shape.batch, filters_, out_h_, out_w_});
  workspace_.Resize({std::max<int64_t>(backend.Conv2dWorkspaceFloats(shape), 1)});
  backend.Conv2dForward(shape, x.data(), weight_.data(), bias_ ? bias_value_.data() : nullptr,
                        y->data(), workspace_.data());
}

void Conv2dLayer::Backward(Backend& backend, const Tensor& x, const Tensor& y, const Tensor& dy,
                           Tensor* dx) {
  const Conv2dShape shape = ShapeFor(x.dim(0));
  if (dx != nullptr) dx->Resize(x.shape());
  workspace_.Resize({std::max<int64_t>(backend.Conv2dWorkspaceFloats(shape), 1)});
  backend.Conv2dBackward(shape, x.data(), weight_.data(), dy.data(), weight_grad_.data(),
                         bias_ ? bias_grad_.data() : nullptr,
                         dx != nullptr ? dx->data() : nullptr, workspace_.data());
}

Conv2dShape Conv2dLayer::ShapeFor(int64_t batch) const {
  Conv2dShape s;
  s.batch = batch;
  s.channels = channels_;
  s.height = height_;
  s.width = width_;
  s.filters = filters_;
  s.kernel = kernel_;
  s.stride = stride_;
  s.padding = padding_;
  return s;
}

}  // namespace psgrid
