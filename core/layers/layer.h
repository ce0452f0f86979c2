// Layer: one stage of a sequential model, with a forward and a backward pass.
//
// Lifecycle: Build() checks the input shape, declares parameters and returns the output shape;
// after the ParameterSet is allocated, Bind() takes views of the layer's parameters; then
// Forward()/Backward() run for each batch. With a device backend, UseMemory() places the
// layer's buffers on the device before the first pass, and the tensors passed in are there too.
// Shapes passed to Build() are per sample (no batch dimension); tensors passed to
// Forward()/Backward() carry the batch as their first dimension.
// All arithmetic goes through the Backend. Not thread-safe.
#ifndef PSGRID_CORE_LAYERS_LAYER_H_
#define PSGRID_CORE_LAYERS_LAYER_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "core/backend/backend.h"
#include "core/parameters.h"
#include "core/tensor.h"
#include "psgrid/v1/job.pb.h"

namespace psgrid {

class Layer {
 public:
  virtual ~Layer() = default;

  virtual std::string_view type() const = 0;

  // `prefix` is the layer's index in the model ("0", "2", ...): parameters are named
  // prefix + ".weight" etc. INVALID_ARGUMENT when the input shape does not fit the layer.
  virtual absl::StatusOr<Shape> Build(const Shape& input, const std::string& prefix,
                                      ParameterSet* params) = 0;
  virtual void Bind(ParameterSet* params) {}
  // Places the layer's own buffers (workspaces, masks, recurrent state; not its parameters,
  // which are views into the ParameterSet) in `memory`: a device backend's, so that Forward and
  // Backward hand the backend device pointers only. Model::Create calls it, before the first
  // pass, when its backend is not the host; the default (host buffers) does nothing.
  virtual void UseMemory(DeviceMemory* memory) {}
  // Training (ComputeGradients) or evaluation (Forward, Evaluate): dropout is on only while
  // training. Called before each pass.
  virtual void SetTraining(bool training) {}
  // Layers that draw random numbers (dropout) draw an independent stream for each value of
  // `stream`, so that data-parallel workers (stream = the worker's rank) do not all drop the
  // same units. Stream 0 is the default.
  virtual void SetRandomStream(uint64_t stream) {}

  // y ← layer(x); y is resized to [batch, output shape...].
  virtual void Forward(Backend& backend, const Tensor& x, Tensor* y) = 0;
  // Given x, y of the forward pass and dy = ∂L/∂y: overwrites the gradients of this layer's
  // parameters and, when dx is not null, writes ∂L/∂x (resized like x).
  virtual void Backward(Backend& backend, const Tensor& x, const Tensor& y, const Tensor& dy,
                        Tensor* dx) = 0;
};

// Builds a layer from its spec. `field` names it in errors, e.g. "model.layers[3]". `seed`
// (the model's init seed) seeds layers that draw random numbers (dropout's masks, together
// with `field`).
absl::StatusOr<std::unique_ptr<Layer>> CreateLayer(const v1::LayerSpec& spec,
                                                   const std::string& field, uint64_t seed = 0);

}  // namespace psgrid

#endif  // PSGRID_CORE_LAYERS_LAYER_H_
