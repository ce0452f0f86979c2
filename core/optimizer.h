// Optimizer: the update rule that turns a gradient into new weights. One implementation,
// used by the single-process trainer now and by the parameter server later.
//
//   sgd:      W ← W − η·g
//   momentum: B ← μ·B + g;  W ← W − η·B   (torch.optim.SGD(momentum=μ); with V = −η·B it is
//             V ← μ·V − η·g, W ← W + V at a constant η)
//   nesterov, adagrad, rmsprop, adam, adamw: torch.optim's rules and defaults (see the
//   Backend's kernels); weight_decay where torch has it.
//
// Works on a flat parameter arena (ParameterSet::values()). Holds its state (e.g. the momentum
// buffer) itself, named so that snapshots can save and restore it, in the arena's memory (host,
// or a device's: see CreateOptimizer). Not thread-safe.
#ifndef PSGRID_CORE_OPTIMIZER_H_
#define PSGRID_CORE_OPTIMIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/backend/backend.h"
#include "core/tensor.h"
#include "psgrid/v1/job.pb.h"

namespace psgrid {

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  // One update of `weights` (n elements) from the gradient grad_scale·`grads` (n elements):
  // the next step (BeginStep(steps() + 1)) applied to the whole arena. Returns Update's
  // verdict: true when every weight is finite afterwards.
  bool Step(Backend& backend, Tensor& weights, const Tensor& grads, float grad_scale = 1.0f) {
    BeginStep(step_ + 1);
    return Update(backend, weights, grads, grad_scale, 0, weights.size());
  }
  // Makes step t (1-based: Adam's bias correction, Adagrad's decay) the one Update applies.
  // The parameter server calls it with its version + 1, so a restored job goes on exactly.
  virtual void BeginStep(int64_t t) { step_ = t; }
  int64_t step() const { return step_; }
  // The same update restricted to elements [begin, end): one step may be applied as disjoint
  // ranges that together cover the arena, each once (the parameter server applies a layer as
  // soon as every worker's gradient of it is in). The result equals Step's.
  // Returns true when every weight it wrote, [begin, end), is finite; false when one is NaN or
  // ±Inf (from a non-finite gradient, a NaN in the state, or an overflow; see the Backend's
  // kernels). Tested in the pass that writes the weights, so it costs no extra pass; the
  // weights and state are written either way. An empty range returns true.
  virtual bool Update(Backend& backend, Tensor& weights, const Tensor& grads, float grad_scale,
                      int64_t begin, int64_t end) = 0;
  // Named state buffers, as torch names them (e.g. {"momentum_buffer"}); empty for plain SGD.
  virtual std::vector<std::pair<std::string, Tensor*>> State() = 0;

 private:
  int64_t step_ = 0;
};

// From the spec, for a parameter arena of `num_parameters` floats. INVALID_ARGUMENT names the
// field for an unknown type or an impossible hyper-parameter.
// The grad_scale that clips grad_scale·`grads` to the global L2 norm `clip_norm` as
// torch.nn.utils.clip_grad_norm_ does (× clip_norm / (norm + 1e-6) when that is below 1);
// `grad_scale` itself when clip_norm is 0.
float ClippedGradScale(Backend& backend, const Tensor& grads, float grad_scale, double clip_norm);

// `total_steps` (the job's) is the cosine schedule's default length. The state buffers are
// allocated in `memory` (a device backend's, to update device arenas; null: the host).
absl::StatusOr<std::unique_ptr<Optimizer>> CreateOptimizer(const v1::OptimizerSpec& spec,
                                                           int64_t num_parameters,
                                                           int64_t total_steps = 0,
                                                           DeviceMemory* memory = nullptr);

// The learning-rate factor of step t (1-based) under `schedule` (see job.proto), with T the
// cosine length already resolved. Exposed for tests.
double ScheduleFactor(const v1::ScheduleSpec& schedule, double base_lr, int64_t cosine_steps,
                      int64_t t);

}  // namespace psgrid

#endif  // PSGRID_CORE_OPTIMIZER_H_
