#include "worker/evaluation.h"

#include <algorithm>
#include <numeric>

#include "core/status_macros.h"

namespace psgrid {

Targets MakeTargets(const Dataset& data, const std::vector<int32_t>& labels, const Tensor& values) {
  Targets t;
  if (data.is_regression()) {
    t.values = &values;
  } else {
    t.labels = labels;
  }
  return t;
}

absl::StatusOr<EvalResult> EvaluateDataset(Model& model, const Dataset& data) {
  constexpr int64_t kBatch = 1000;
  EvalResult result;
  const int64_t n = data.size();
  if (n == 0) return result;
  std::vector<int64_t> indices;
  Tensor x, values;
  std::vector<int32_t> labels;
  double loss_sum = 0;
  int64_t correct = 0;
  for (int64_t begin = 0; begin < n; begin += kBatch) {
    const int64_t end = std::min(n, begin + kBatch);
    indices.resize(end - begin);
    std::iota(indices.begin(), indices.end(), begin);
    GatherBatch(data, indices, &x, &labels, &values);
    ASSIGN_OR_RETURN(LossResult r, model.Evaluate(x, MakeTargets(data, labels, values)));
    loss_sum += r.loss * static_cast<double>(end - begin);
    correct += r.correct;
  }
  result.loss = loss_sum / static_cast<double>(n);
  result.accuracy = static_cast<double>(correct) / static_cast<double>(n);
  return result;
}

}  // namespace psgrid
