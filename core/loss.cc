#include "core/loss.h"

#include "absl/strings/str_cat.h"

namespace psgrid {
namespace {

class SoftmaxCrossEntropyLoss final : public Loss {
 public:
  std::string_view name() const override { return "softmax_cross_entropy"; }
  bool uses_labels() const override { return true; }

  absl::StatusOr<LossResult> Compute(Backend& backend, const Tensor& output,
                                     const Targets& targets, Tensor* grad) const override {
    const int64_t rows = output.dim(0);
    const int64_t cols = output.size() / rows;
    if (static_cast<int64_t>(targets.labels.size()) != rows) {
      return absl::InvalidArgumentError(absl::StrCat("softmax_cross_entropy: ", rows,
                                                     " outputs but ", targets.labels.size(),
                                                     " labels"));
    }
    for (int32_t label : targets.labels) {
      if (label < 0 || label >= cols) {
        return absl::InvalidArgumentError(absl::StrCat("softmax_cross_entropy: label ", label,
                                                       " outside the model's ", cols,
                                                       " classes"));
      }
    }
    if (grad != nullptr) grad->Resize(output.shape());
    LossResult result;
    const int32_t* labels =
        targets.device_labels != nullptr ? targets.device_labels : targets.labels.data();
    result.loss = backend.SoftmaxCrossEntropy(rows, cols, output.data(), labels,
                                              grad ? grad->data() : nullptr, &result.correct);
    return result;
  }
};

class MeanSquaredErrorLoss final : public Loss {
 public:
  std::string_view name() const override { return "mse"; }
  bool uses_labels() const override { return false; }

  absl::StatusOr<LossResult> Compute(Backend& backend, const Tensor& output,
                                     const Targets& targets, Tensor* grad) const override {
    if (targets.values == nullptr || targets.values->size() != output.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "mse: the output has ", output.size(), " values but the targets have ",
          targets.values ? targets.values->size() : 0));
    }
    if (grad != nullptr) grad->Resize(output.shape());
    LossResult result;
    result.loss = backend.MeanSquaredError(output.size(), output.data(), targets.values->data(),
                                           grad ? grad->data() : nullptr);
    return result;
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<Loss>> CreateLoss(const std::string& name) {
  if (name == "softmax_cross_entropy") return std::make_unique<SoftmaxCrossEntropyLoss>();
  if (name == "mse") return std::make_unique<MeanSquaredErrorLoss>();
  return absl::InvalidArgumentError(absl::StrCat(
      "model.loss: unknown loss '", name, "'; expected softmax_cross_entropy or mse"));
}

}  // namespace psgrid
