#include "core/layers/flatten.h"

namespace psgrid {

absl::StatusOr<Shape> FlattenLayer::Build(const Shape& input, const std::string& prefix,
                                          ParameterSet* params) {
  size_ = NumElements(input);
  if (size_ <= 0) return absl::InvalidArgumentError("flatten: the input is empty");
  return Shape{size_};
}

// Row-major storage is already flat: a copy (Axpby with beta 0 is y = x exactly).
void FlattenLayer::Forward(Backend& backend, const Tensor& x, Tensor* y) {
  y->Resize({x.dim(0), size_});
  backend.Axpby(x.size(), 1.0f, x.data(), 0.0f, y->data());
}

void FlattenLayer::Backward(Backend& backend, const Tensor& x, const Tensor& y, const Tensor& dy,
                            Tensor* dx) {
  if (dx == nullptr) return;
  dx->Resize(x.shape());
  backend.Axpby(dy.size(), 1.0f, dy.data(), 0.0f, dx->data());
}

}  // namespace psgrid
