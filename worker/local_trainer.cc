#include "worker/local_trainer.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "core/data/loader.h"
#include "core/data/sampler.h"
#include "core/io/weights_file.h"
#include "core/status_macros.h"
#include "proto/job_spec_codec.h"
#include "worker/evaluation.h"

namespace psgrid {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

absl::StatusOr<std::unique_ptr<LocalTrainer>> LocalTrainer::Create(const v1::JobSpec& spec,
                                                                   Backend* backend) {
  RETURN_IF_ERROR(ValidateJobSpec(spec));
  std::unique_ptr<LocalTrainer> t(new LocalTrainer());
  t->spec_ = spec;
  t->backend_ = backend;
  ASSIGN_OR_RETURN(t->data_, LoadJobData(spec.data()));
  if (t->data_.train.size() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.path: ", spec.data().path(), " has no training samples"));
  }
  const bool regression = t->data_.train.is_regression();
  if (regression != (spec.model().loss() == "mse")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model.loss: ", spec.model().loss(), " does not fit the ",
        regression ? "regression targets of " : "class labels of ", spec.data().dataset(),
        regression ? " (use mse)" : " (use softmax_cross_entropy)"));
  }
  ASSIGN_OR_RETURN(t->model_, Model::Create(spec.model(), t->data_.train.sample_shape(),
                                            OutputWidth(t->data_.train), backend));
  if (!spec.model().init_from().empty()) {
    RETURN_IF_ERROR(
        LoadWeightsFile(spec.model().init_from(), "model.init_from", &t->model_->parameters()));
  }
  ASSIGN_OR_RETURN(t->optimizer_,
                   CreateOptimizer(spec.optimizer(), t->model_->parameters().total_size(),
                                   BatchSampler::PlannedSteps(
                                       BatchSampler::StepsPerEpoch(t->data_.train.size(),
                                                                   spec.training().batch_size(),
                                                                   spec.training().workers()),
                                       spec.training().epochs(), spec.training().max_steps()),
                                   backend));  // its state beside the arena (host or device)
  return t;
}

absl::StatusOr<EvalResult> LocalTrainer::Evaluate(const Dataset& data) {
  return EvaluateDataset(*model_, data);
}

absl::StatusOr<TrainResult> LocalTrainer::Run(
    const std::function<void(const EpochReport&)>& on_epoch) {
  const v1::TrainingSpec& ts = spec_.training();
  const Dataset& train = data_.train;
  const int64_t batch = static_cast<int64_t>(ts.batch_size()) * ts.workers();
  BatchSampler sampler(train.size(), batch, /*world_size=*/1, spec_.data().shuffle(),
                       spec_.data().seed());
  ParameterSet& params = model_->parameters();
  Tensor x, values;
  std::vector<int32_t> labels;
  TrainResult result;
  const auto start = std::chrono::steady_clock::now();
  for (int epoch = 0; epoch < ts.epochs(); ++epoch) {
    if (ts.max_steps() > 0 && result.steps >= ts.max_steps()) break;
    sampler.StartEpoch(epoch);
    const auto epoch_start = std::chrono::steady_clock::now();
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    for (int64_t step = 0; step < sampler.steps_per_epoch(); ++step) {
      if (ts.max_steps() > 0 && result.steps >= ts.max_steps()) break;
      std::span<const int64_t> indices = sampler.Batch(step, 0);
      GatherBatch(train, indices, &x, &labels, &values);
      ASSIGN_OR_RETURN(LossResult r,
                       model_->ComputeGradients(x, MakeTargets(train, labels, values)));
      optimizer_->Step(*backend_, params.values(), params.grads(),
                       ClippedGradScale(*backend_, params.grads(), 1.0f,
                                        spec_.optimizer().clip_norm()));
      loss_sum += r.loss * static_cast<double>(indices.size());
      correct += r.correct;
      seen += static_cast<int64_t>(indices.size());
      ++result.steps;
    }
    const double epoch_seconds = SecondsSince(epoch_start);
    result.train_seconds += epoch_seconds;
    result.samples += seen;
    ASSIGN_OR_RETURN(EvalResult test, Evaluate(data_.test));
    result.test_loss = test.loss;
    result.test_accuracy = test.accuracy;
    if (on_epoch) {
      EpochReport report;
      report.epoch = epoch + 1;
      report.epochs = ts.epochs();
      report.step = result.steps;
      report.train_loss = seen ? loss_sum / static_cast<double>(seen) : 0;
      report.train_accuracy = seen ? static_cast<double>(correct) / static_cast<double>(seen) : 0;
      report.samples_per_second = epoch_seconds > 0 ? seen / epoch_seconds : 0;
      report.test_loss = test.loss;
      report.test_accuracy = test.accuracy;
      report.elapsed_seconds = SecondsSince(start);
      on_epoch(report);
    }
  }
  result.samples_per_second = result.train_seconds > 0 ? result.samples / result.train_seconds : 0;
  return result;
}

}  // namespace psgrid
