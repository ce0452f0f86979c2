#include "core/layers/conv2d.h"

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
  direct_ = kernel_ == 1 && stride_ == 1 && padding_ == 0;
  const int64_t patch = channels_ * kernel_ * kernel_;
  const int64_t fan_in = patch;
  const int64_t fan_out = filters_ * kernel_ * kernel_;
  weight_index_ = params->Declare(prefix + ".weight", {filters_, channels_, kernel_, kernel_},
                                  ParamKind::kWeight, fan_in, fan_out);
  if (bias_) {
    bias_index_ = params->Declare(prefix + ".bias", {filters_}, ParamKind::kBias, fan_in, fan_out);
  }
  if (!direct_) {
    cols_.Resize({patch, out_h_ * out_w_});
    dcols_.Resize({patch, out_h_ * out_w_});
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

const float* Conv2dLayer::Columns(Backend& backend, const Tensor& x, int64_t b) {
  const float* xb = x.data() + b * channels_ * height_ * width_;
  if (direct_) return xb;
  backend.Im2Col(channels_, height_, width_, kernel_, stride_, padding_, xb, cols_.data());
  return cols_.data();
}

void Conv2dLayer::Forward(Backend& backend, const Tensor& x, Tensor* y) {
  const int64_t batch = x.dim(0);
  const int64_t spatial = out_h_ * out_w_;
  const int64_t patch = channels_ * kernel_ * kernel_;
  y->Resize({batch, filters_, out_h_, out_w_});
  if (bias_) backend.BroadcastChannels(batch, filters_, spatial, bias_value_.data(), y->data());
  const float beta = bias_ ? 1.0f : 0.0f;
  for (int64_t b = 0; b < batch; ++b) {
    const float* cols = Columns(backend, x, b);
    backend.Gemm(Trans::kNo, Trans::kNo, filters_, spatial, patch, 1.0f, weight_.data(), cols,
                 beta, y->data() + b * filters_ * spatial);
  }
}

void Conv2dLayer::Backward(Backend& backend, const Tensor& x, const Tensor& y, const Tensor& dy,
                           Tensor* dx) {
  const int64_t batch = x.dim(0);
  const int64_t spatial = out_h_ * out_w_;
  const int64_t patch = channels_ * kernel_ * kernel_;
  const int64_t sample = channels_ * height_ * width_;
  if (bias_) backend.SumChannels(batch, filters_, spatial, dy.data(), bias_grad_.data());
  if (dx != nullptr) dx->Resize(x.shape());
  for (int64_t b = 0; b < batch; ++b) {
    const float* dyb = dy.data() + b * filters_ * spatial;
    // dW += dY_b · cols_bᵀ  (overwritten by the first sample).
    const float* cols = Columns(backend, x, b);
    backend.Gemm(Trans::kNo, Trans::kYes, filters_, patch, spatial, 1.0f, dyb, cols,
                 b == 0 ? 0.0f : 1.0f, weight_grad_.data());
    if (dx == nullptr) continue;
    // dcols = Wᵀ · dY_b, folded back onto the image.
    float* dxb = dx->data() + b * sample;
    if (direct_) {
      backend.Gemm(Trans::kYes, Trans::kNo, patch, spatial, filters_, 1.0f, weight_.data(), dyb,
                   0.0f, dxb);
    } else {
      backend.Gemm(Trans::kYes, Trans::kNo, patch, spatial, filters_, 1.0f, weight_.data(), dyb,
                   0.0f, dcols_.data());
      backend.Col2Im(channels_, height_, width_, kernel_, stride_, padding_, dcols_.data(), dxb);
    }
  }
}

}  // namespace psgrid
