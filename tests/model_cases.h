// Small models of every layer kind, with their batches, for comparing backends: an MLP, a CNN
// (conv, the fused relu + max pooling, average pooling, flatten), an LSTM and a GRU/RNN stack
// over embeddings, a dropout model and an MSE regression. Each case draws its batches from its
// own seeded stream, so every backend sees the same numbers.
#ifndef PSGRID_TESTS_MODEL_CASES_H_
#define PSGRID_TESTS_MODEL_CASES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "core/loss.h"
#include "core/model.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"

namespace psgrid::testing {

struct ModelCase {
  std::string name;
  std::string model;      // ModelSpec in protobuf text format
  Shape input;            // per sample
  int64_t outputs;        // classes, or target values for mse
  int64_t vocab = 0;      // > 0: the inputs are token ids below it
  std::string optimizer;  // OptimizerSpec in text format
  double clip_norm = 0;
};


inline std::vector<float> ToVector(const Tensor& t) {
  const Tensor host = t.ToHost();
  return std::vector<float>(host.span().begin(), host.span().end());
}

// The same batches for every backend: step `step` of `c` with `batch` samples.
struct Batch {
  Tensor x, values;
  std::vector<int32_t> labels;
};

inline Batch MakeBatch(const ModelCase& c, int step, int64_t batch) {
  Rng rng(1000 + step, c.name);
  Batch b;
  Shape shape = c.input;
  shape.insert(shape.begin(), batch);
  b.x = Tensor(shape);
  for (float& v : b.x.span()) {
    v = c.vocab > 0 ? static_cast<float>(rng.Below(c.vocab)) : rng.Uniform(-1.0f, 1.0f);
  }
  b.labels.resize(batch);
  for (int32_t& l : b.labels) l = static_cast<int32_t>(rng.Below(c.outputs));
  b.values = Tensor({batch, c.outputs});
  for (float& v : b.values.span()) v = rng.Uniform(-1.0f, 1.0f);
  return b;
}

inline Targets TargetsOf(const Model& model, const Batch& b) {
  Targets t;
  if (model.loss().uses_labels()) {
    t.labels = b.labels;
  } else {
    t.values = &b.values;
  }
  return t;
}

// The case's model spec and optimizer spec, parsed.
inline v1::ModelSpec ModelSpecOf(const ModelCase& c) {
  v1::ModelSpec spec;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(c.model, &spec)) << c.model;
  return spec;
}

inline v1::OptimizerSpec OptimizerSpecOf(const ModelCase& c) {
  v1::OptimizerSpec spec;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(c.optimizer, &spec)) << c.optimizer;
  return spec;
}

inline ModelCase MlpCase() {
  return {"mlp",
          "layers {type: 'dense' units: 16} layers {type: 'relu'} "
          "layers {type: 'dense' units: 8} layers {type: 'sigmoid'} "
          "layers {type: 'dense' units: 5} loss: 'softmax_cross_entropy' "
          "init {scheme: 'he' seed: 4}",
          {12}, 5, 0, "type: 'momentum' learning_rate: 0.1 momentum: 0.9"};
}

inline ModelCase CnnCase() {
  return {"cnn",
          "layers {type: 'conv2d' filters: 4 kernel: 3 padding: 1} "
          "layers {type: 'relu'} layers {type: 'maxpool2d' size: 2} "
          "layers {type: 'conv2d' filters: 3 kernel: 3 bias: false} "
          "layers {type: 'tanh'} layers {type: 'avgpool2d' size: 2 stride: 1} "
          "layers {type: 'flatten'} layers {type: 'dense' units: 6} "
          "loss: 'softmax_cross_entropy' init {scheme: 'he' seed: 5}",
          {2, 9, 9}, 6, 0, "type: 'adam' learning_rate: 0.01", /*clip_norm=*/0.5};
}

inline ModelCase LstmCase() {
  return {"lstm",
          "layers {type: 'embedding' units: 6 vocab: 11} "
          "layers {type: 'lstm' units: 7 truncation: 3} "
          "layers {type: 'dense' units: 11} loss: 'softmax_cross_entropy' "
          "init {scheme: 'xavier' seed: 6}",
          {5}, 11, 11, "type: 'rmsprop' learning_rate: 0.01 momentum: 0.5"};
}

inline ModelCase GruCase() {
  return {"gru",
          "layers {type: 'embedding' units: 5 vocab: 9} "
          "layers {type: 'gru' units: 6 return_sequences: true} "
          "layers {type: 'rnn' units: 4 activation: 'relu' average_over_time: true} "
          "layers {type: 'dense' units: 9} loss: 'softmax_cross_entropy' "
          "init {scheme: 'xavier' seed: 7}",
          {6}, 9, 9, "type: 'adagrad' learning_rate: 0.05"};
}

inline ModelCase DropoutCase() {
  return {"dropout",
          "layers {type: 'dense' units: 20} layers {type: 'relu'} "
          "layers {type: 'dropout' rate: 0.3} layers {type: 'dense' units: 10} "
          "layers {type: 'tanh'} layers {type: 'dropout' rate: 0.5} "
          "layers {type: 'dense' units: 4} loss: 'softmax_cross_entropy' "
          "init {scheme: 'he' seed: 8}",
          {10}, 4, 0, "type: 'nesterov' learning_rate: 0.05 momentum: 0.8"};
}

inline ModelCase MseCase() {
  return {"mse",
          "layers {type: 'dense' units: 8} layers {type: 'tanh'} "
          "layers {type: 'dense' units: 3} loss: 'mse' "
          "init {scheme: 'xavier' seed: 9}",
          {4}, 3, 0, "type: 'adamw' learning_rate: 0.02", /*clip_norm=*/0.1};
}

inline std::vector<ModelCase> AllModelCases() {
  return {MlpCase(), CnnCase(), LstmCase(), GruCase(), DropoutCase(), MseCase()};
}

}  // namespace psgrid::testing

#endif  // PSGRID_TESTS_MODEL_CASES_H_
