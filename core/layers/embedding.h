// Embedding: a table of `vocab` vectors of `units` values, as torch.nn.Embedding. The input
// holds token ids stored as floats (exact integers); per sample [T] → [T, units] (any input
// shape S gives S + [units]). One parameter, "<prefix>.weight" [vocab, units] (for the init
// schemes fan_in = 1, a row being read as it is, and fan_out = units).
//
// Out-of-range ids. Layer::Forward returns nothing and Model has no channel for a layer's
// error, so the ids are validated by the data set (a text data set gives ids in [0, vocab) of
// its own vocabulary; the model's vocab must be at least that size). The layer still never
// reads out of bounds: an id that is not an integer in [0, vocab) gives a zero vector and no
// gradient (Backend::EmbeddingForward), and the layer counts such batches and keeps the
// position of the first bad id of the latest one (invalid_batches(), last_invalid_position()).
//
// No input gradient: ids are not differentiable, so dx, when requested, is set to zero.
#ifndef PSGRID_CORE_LAYERS_EMBEDDING_H_
#define PSGRID_CORE_LAYERS_EMBEDDING_H_

#include "core/layers/layer.h"

namespace psgrid {

class EmbeddingLayer final : public Layer {
 public:
  EmbeddingLayer(int64_t vocab, int64_t units) : vocab_(vocab), units_(units) {}

  std::string_view type() const override { return "embedding"; }
  absl::StatusOr<Shape> Build(const Shape& input, const std::string& prefix,
                              ParameterSet* params) override;
  void Bind(ParameterSet* params) override;
  void Forward(Backend& backend, const Tensor& x, Tensor* y) override;
  void Backward(Backend& backend, const Tensor& x, const Tensor& y, const Tensor& dy,
                Tensor* dx) override;

  // Forward passes that met an invalid id, and the flat position (in x) of the first invalid
  // id of the latest pass (−1 when it had none).
  int64_t invalid_batches() const { return invalid_batches_; }
  int64_t last_invalid_position() const { return last_invalid_position_; }

 private:
  int64_t vocab_, units_;
  int weight_index_ = -1;
  Tensor weight_, weight_grad_;  // views into the ParameterSet
  int64_t invalid_batches_ = 0;
  int64_t last_invalid_position_ = -1;
};

}  // namespace psgrid

#endif  // PSGRID_CORE_LAYERS_EMBEDDING_H_
