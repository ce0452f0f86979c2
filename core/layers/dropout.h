// Dropout (torch.nn.Dropout): spec field rate, the probability of zeroing an element, in
// [0, 1) (default 0); no other field. While training, each element is zeroed with probability
// `rate` and the others are scaled by 1/(1 − rate) (inverted dropout); in evaluation the layer
// is the identity. Output shape = input shape; no parameters. The mask is reproducible: it is
// a function of the layer's seed (from the model's init seed and the layer's index), of its
// random stream (a worker's rank; Layer::SetRandomStream) and of the number of training passes
// the layer has made (Backend::DropoutForward).
#ifndef PSGRID_CORE_LAYERS_DROPOUT_H_
#define PSGRID_CORE_LAYERS_DROPOUT_H_

#include <cstdint>

#include "core/layers/layer.h"

namespace psgrid {

class DropoutLayer final : public Layer {
 public:
  // rate in [0, 1); `seed` identifies the layer's stream of masks.
  DropoutLayer(float rate, uint64_t seed) : rate_(rate), seed_(seed) {}

  std::string_view type() const override { return "dropout"; }
  absl::StatusOr<Shape> Build(const Shape& input, const std::string& prefix,
                              ParameterSet* params) override;
  void SetTraining(bool training) override { training_ = training; }
  void SetRandomStream(uint64_t stream) override { stream_ = stream; }
  void UseMemory(DeviceMemory* memory) override { mask_.SetMemory(memory); }
  // Training: draws the mask of pass passes(), then counts the pass.
  void Forward(Backend& backend, const Tensor& x, Tensor* y) override;
  // Uses the mask of the last Forward (dy passes through unchanged after an evaluation pass).
  void Backward(Backend& backend, const Tensor& x, const Tensor& y, const Tensor& dy,
                Tensor* dx) override;

  float rate() const { return rate_; }
  // Training passes made so far; setting it replays a pass's mask (tests, restarts).
  uint64_t passes() const { return passes_; }
  void set_passes(uint64_t passes) { passes_ = passes; }
  // The seed Backend::DropoutForward gets for training pass `pass`.
  uint64_t PassSeed(uint64_t pass) const;

 private:
  float rate_;
  uint64_t seed_;
  uint64_t stream_ = 0;
  bool training_ = false;
  bool masked_ = false;  // whether the last Forward applied a mask
  uint64_t passes_ = 0;
  Tensor mask_;
};

}  // namespace psgrid

#endif  // PSGRID_CORE_LAYERS_DROPOUT_H_
