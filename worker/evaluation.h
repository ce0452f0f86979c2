// Evaluation of a model on a whole data set, shared by the single-process trainer and the
// distributed worker so that both report the same numbers.
#ifndef PSGRID_WORKER_EVALUATION_H_
#define PSGRID_WORKER_EVALUATION_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "core/data/dataset.h"
#include "core/loss.h"
#include "core/model.h"

namespace psgrid {

struct EvalResult {
  double loss = 0;      // mean over the samples
  double accuracy = 0;  // classification only
};

// The targets of a gathered batch: labels for classification, values for regression. Borrows
// `labels` and `values` for as long as the result is used.
Targets MakeTargets(const Dataset& data, const std::vector<int32_t>& labels, const Tensor& values);

// Mean loss and accuracy of `model` over all of `data`, in batches of 1000 (zeros when empty),
// on the model's backend (a device one included: Model::Evaluate copies each batch there).
absl::StatusOr<EvalResult> EvaluateDataset(Model& model, const Dataset& data);

}  // namespace psgrid

#endif  // PSGRID_WORKER_EVALUATION_H_
