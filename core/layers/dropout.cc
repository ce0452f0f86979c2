#include "core/layers/dropout.h"

#include "core/rng.h"

namespace psgrid {

absl::StatusOr<Shape> DropoutLayer::Build(const Shape& input, const std::string& prefix,
                                          ParameterSet* params) {
  if (NumElements(input) <= 0) return absl::InvalidArgumentError("dropout: the input is empty");
  return input;
}

uint64_t DropoutLayer::PassSeed(uint64_t pass) const {
  // A Weyl sequence over passes; Backend::DropoutForward mixes the seed before use. Each
  // stream starts the sequence at its own point, mixed so that neighbouring streams' and
  // passes' seeds never coincide (stream 0: the sequence itself).
  uint64_t start = seed_;
  if (stream_ != 0) start ^= Rng(stream_).NextU64();
  return start + pass * 0xD1B54A32D192ED03ull;
}

void DropoutLayer::Forward(Backend& backend, const Tensor& x, Tensor* y) {
  y->Resize(x.shape());
  masked_ = training_;
  if (!training_) {
    backend.Axpby(x.size(), 1.0f, x.data(), 0.0f, y->data());  // y = x exactly
    return;
  }
  mask_.Resize(x.shape());
  backend.DropoutForward(x.size(), rate_, PassSeed(passes_), x.data(), mask_.data(), y->data());
  ++passes_;
}

void DropoutLayer::Backward(Backend& backend, const Tensor& x, const Tensor& y, const Tensor& dy,
                            Tensor* dx) {
  if (dx == nullptr) return;
  dx->Resize(x.shape());
  if (masked_) {
    backend.DropoutBackward(dy.size(), mask_.data(), dy.data(), dx->data());
  } else {
    backend.Axpby(dy.size(), 1.0f, dy.data(), 0.0f, dx->data());
  }
}

}  // namespace psgrid
