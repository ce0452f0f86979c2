// Model: a sequence of layers built from a model description, with its loss and parameters.
//
//   ASSIGN_OR_RETURN(auto model, Model::Create(spec.model(), /*input=*/{28, 28},
//                                              /*outputs=*/10, &backend));
//   ASSIGN_OR_RETURN(LossResult r, model->ComputeGradients(x, targets));
//   // model->parameters().grads() now holds ∂loss/∂parameters
//
// Parameter names and shapes are those of the equivalent torch.nn.Sequential state dict
// ("0.weight" [256, 784], "0.bias" [256], ...), stored without transposes. Not thread-safe:
// one model per training thread. The backend is borrowed and must outlive the model.
//
// Device backends. When the backend's memory is not the host (CUDA), every tensor of the model
// lives on the device: parameters() (values and gradients), the activations, the layers' and
// the loss's buffers. The inputs and targets that Forward, Evaluate and ComputeGradients take
// may be host tensors (they are copied to the device first) or already the device's; what the
// host needs back (loss, correct count) comes back in LossResult. Host code that reads
// parameters() or Forward's output copies them (Tensor::Read, ToHost, CopyFrom). With the CPU
// backend every tensor is a plain host tensor, as before.
#ifndef PSGRID_CORE_MODEL_H_
#define PSGRID_CORE_MODEL_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/backend/backend.h"
#include "core/layers/layer.h"
#include "core/loss.h"
#include "core/parameters.h"
#include "psgrid/v1/job.pb.h"

namespace psgrid {

struct LayerSummary {
  int index;
  std::string type;
  Shape output_shape;  // per sample
  int64_t parameters;
};

struct ModelSummary {
  Shape input_shape;
  std::vector<LayerSummary> layers;
  int64_t weights = 0;  // elements of weight tensors
  int64_t biases = 0;   // elements of bias tensors
  int64_t parameters() const { return weights + biases; }
  int64_t bytes() const { return parameters() * 4; }  // float32
};

// A human-readable table of the summary.
std::string FormatSummary(const ModelSummary& summary);

class Model {
 public:
  // Builds the layers for per-sample `input_shape`; `outputs` is the number of classes
  // (softmax_cross_entropy) or of target values (mse) the last layer must produce.
  // Parameters are allocated and initialised from spec.init. INVALID_ARGUMENT names the
  // offending field (e.g. "model.layers[4].units") when the layers do not fit the data.
  static absl::StatusOr<std::unique_ptr<Model>> Create(const v1::ModelSpec& spec,
                                                       const Shape& input_shape, int64_t outputs,
                                                       Backend* backend);

  ParameterSet& parameters() { return params_; }
  // Switches the parameter and gradient arenas to caller-owned memory (see
  // ParameterSet::AdoptArenas) and rebinds the layers to it. Host backends only.
  void AdoptParameterArenas(float* values, float* grads);
  const ParameterSet& parameters() const { return params_; }
  const Loss& loss() const { return *loss_; }
  // Gives every layer that draws random numbers (dropout) the random stream `stream` (a
  // worker's rank), see Layer::SetRandomStream.
  void SetRandomStream(uint64_t stream);
  ModelSummary Summary() const;

  // Forward pass of x [batch, input shape...] in evaluation mode (no dropout); the output
  // [batch, outputs], in the backend's memory, stays valid until the next call.
  // INVALID_ARGUMENT when x does not have the input shape.
  absl::StatusOr<const Tensor*> Forward(const Tensor& x);
  // Forward, loss and backward: overwrites parameters().grads() with the gradient of the mean
  // loss over the batch. Backward runs from the last layer to the first; after each layer
  // with parameters, `on_ready` (when set) is called with the arena offset from which on the
  // gradient is now complete (0 after the first layer), so that it can be sent while the
  // earlier layers are still computed.
  absl::StatusOr<LossResult> ComputeGradients(
      const Tensor& x, const Targets& targets,
      const std::function<void(int64_t ready_from)>& on_ready = nullptr);
  // Forward and loss only.
  absl::StatusOr<LossResult> Evaluate(const Tensor& x, const Targets& targets);

 private:
  Model() = default;
  // INVALID_ARGUMENT when x is not [batch] + the input shape.
  absl::Status CheckInput(const Tensor& x) const;
  // Forward of x (in the backend's memory) with the layers in training (dropout on) or
  // evaluation mode.
  const Tensor* ForwardPass(const Tensor& x, bool training);
  // `t` itself when it is in the backend's memory, else its copy in *staging.
  const Tensor& InBackendMemory(const Tensor& t, Tensor* staging);
  // `targets` with its labels and values in the backend's memory (labels_, target_values_).
  Targets TargetsInBackendMemory(const Targets& targets);

  Backend* backend_ = nullptr;
  DeviceMemory* memory_ = nullptr;  // the backend's, when it is not host memory
  Shape input_shape_;
  std::vector<std::unique_ptr<Layer>> layers_;
  std::vector<Shape> output_shapes_;
  // pool_first_[i]: layer i is a relu and layer i + 1 a max pooling, run in the other order
  // (pool, then relu on the pooled values): max(relu(x)) = relu(max(x)) exactly, the gradients
  // are the same (a window whose maximum is <= 0 passes no gradient either way), and the relu
  // touches a quarter of the values. activations_[i] then holds the pooled values before the
  // relu.
  std::vector<bool> pool_first_;
  // Per layer: the index of its first parameter in params_, -1 when it has none. Layers
  // declare their parameters in order, so a layer's gradient lies above the earlier layers'.
  std::vector<int> first_param_;
  std::unique_ptr<Loss> loss_;
  ParameterSet params_;
  // activations_[i] is the output of layer i; grad_a_/grad_b_ carry ∂L/∂activation backwards.
  std::vector<Tensor> activations_;
  Tensor loss_grad_, grad_a_, grad_b_;
  // Device backends: the batch's input and targets copied from the host (labels are int32 in
  // float cells).
  Tensor input_, target_values_, labels_;
};

}  // namespace psgrid

#endif  // PSGRID_CORE_MODEL_H_
