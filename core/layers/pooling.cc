#include "core/layers/pooling.h"

#include <cstdint>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

namespace psgrid {

Pool2dLayer::Pool2dLayer(Pooling kind, int64_t size, int64_t stride, std::string field)
    : kind_(kind), size_(size), stride_(stride), field_(std::move(field)) {}

std::string_view Pool2dLayer::type() const {
  return kind_ == Pooling::kMax ? "maxpool2d" : "avgpool2d";
}

absl::StatusOr<Shape> Pool2dLayer::Build(const Shape& input, const std::string& prefix,
                                         ParameterSet* params) {
  const std::string name(type());
  if (input.size() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        name, ": the input per sample must be [channels, height, width] or [height, width]"));
  }
  const size_t r = input.size();
  height_ = input[r - 2];
  width_ = input[r - 1];
  planes_ = 1;
  for (size_t i = 0; i + 2 < r; ++i) planes_ *= input[i];
  if (planes_ < 1 || height_ < 1 || width_ < 1) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": the input is empty"));
  }
  if (height_ < size_ || width_ < size_) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": ", field_, ".size is ", size_,
                                                   ", larger than the input ", height_, "×",
                                                   width_));
  }
  if (height_ * width_ > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": the input planes are too large"));
  }
  output_ = input;
  output_[r - 2] = (height_ - size_) / stride_ + 1;
  output_[r - 1] = (width_ - size_) / stride_ + 1;
  return output_;
}

void Pool2dLayer::Forward(Backend& backend, const Tensor& x, Tensor* y) {
  const int64_t batch = x.dim(0);
  Shape shape = output_;
  shape.insert(shape.begin(), batch);
  y->Resize(std::move(shape));
  if (kind_ == Pooling::kMax) {
    argmax_.Resize(y->shape());
    backend.MaxPool2dForward(batch * planes_, height_, width_, size_, stride_, x.data(),
                             y->data(), reinterpret_cast<int32_t*>(argmax_.data()));
  } else {
    backend.AvgPool2dForward(batch * planes_, height_, width_, size_, stride_, x.data(),
                             y->data());
  }
}

void Pool2dLayer::Backward(Backend& backend, const Tensor& x, const Tensor& y, const Tensor& dy,
                           Tensor* dx) {
  if (dx == nullptr) return;
  const int64_t batch = x.dim(0);
  dx->Resize(x.shape());
  if (kind_ == Pooling::kMax) {
    backend.MaxPool2dBackward(batch * planes_, height_, width_, size_, stride_,
                              reinterpret_cast<const int32_t*>(argmax_.data()), dy.data(),
                              dx->data());
  } else {
    backend.AvgPool2dBackward(batch * planes_, height_, width_, size_, stride_, dy.data(),
                              dx->data());
  }
}

}  // namespace psgrid
