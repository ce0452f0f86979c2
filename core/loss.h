// Losses: softmax cross-entropy (fused, mean over the batch) and mean squared error.
#ifndef PSGRID_CORE_LOSS_H_
#define PSGRID_CORE_LOSS_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"
#include "core/backend/backend.h"
#include "core/tensor.h"

namespace psgrid {

// What a batch is trained towards: class labels (classification) or values (regression).
struct Targets {
  std::span<const int32_t> labels;  // host memory
  const Tensor* values = nullptr;   // [batch, outputs], in the backend's memory; borrowed
  // The same labels in the backend's device memory, when it is not the host (Model copies
  // them there); the loss checks `labels` and hands the backend these.
  const int32_t* device_labels = nullptr;
};

struct LossResult {
  double loss = 0;        // mean over the batch
  int64_t correct = 0;    // classification: rows whose arg-max is the label
};

// Thread-compatible, stateless apart from its name.
class Loss {
 public:
  virtual ~Loss() = default;
  virtual std::string_view name() const = 0;
  // Whether targets are class labels (else values).
  virtual bool uses_labels() const = 0;
  // Loss of output [batch, width]; when grad is not null it receives ∂loss/∂output. output,
  // grad and targets.values are in the backend's memory.
  // INVALID_ARGUMENT when the targets do not fit the output (count, label range, shape).
  virtual absl::StatusOr<LossResult> Compute(Backend& backend, const Tensor& output,
                                             const Targets& targets, Tensor* grad) const = 0;
};

// "softmax_cross_entropy" or "mse"; INVALID_ARGUMENT for anything else.
absl::StatusOr<std::unique_ptr<Loss>> CreateLoss(const std::string& name);

}  // namespace psgrid

#endif  // PSGRID_CORE_LOSS_H_
