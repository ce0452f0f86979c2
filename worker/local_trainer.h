// LocalTrainer: trains a job spec in this process (data, model, optimizer, loop, evaluation).
//
// A spec with W workers of batch B is trained as one process with batch W·B: the same maths
// as W synchronous workers whose gradients are averaged by sample count. The distributed
// runtime replaces this loop with workers and a parameter server; the pieces (Model,
// BatchSampler, Optimizer) are the same. Not thread-safe.
#ifndef PSGRID_WORKER_LOCAL_TRAINER_H_
#define PSGRID_WORKER_LOCAL_TRAINER_H_

#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "core/backend/backend.h"
#include "core/data/dataset.h"
#include "core/model.h"
#include "core/optimizer.h"
#include "psgrid/v1/job.pb.h"
#include "worker/evaluation.h"

namespace psgrid {

// Progress at the end of an epoch (or when max_steps stops training).
struct EpochReport {
  int epoch = 0;  // 1-based
  int epochs = 0;
  int64_t step = 0;       // steps done so far
  double train_loss = 0;  // mean over the epoch's batches
  double train_accuracy = 0;
  double samples_per_second = 0;  // training only, evaluation excluded
  double test_loss = 0;
  double test_accuracy = 0;  // classification only
  double elapsed_seconds = 0;
};

struct TrainResult {
  int64_t steps = 0;
  int64_t samples = 0;
  double train_seconds = 0;  // wall time in training steps (evaluation excluded)
  double samples_per_second = 0;
  double test_loss = 0;
  double test_accuracy = 0;
};

class LocalTrainer {
 public:
  // Loads the data and builds the model and optimizer. Errors name the spec field.
  // `backend` is borrowed and must outlive the trainer. With a device backend (CUDA) the model,
  // its gradients and the optimizer's state stay on the device; each batch is copied there,
  // and the losses and counts come back through the backend's results.
  static absl::StatusOr<std::unique_ptr<LocalTrainer>> Create(const v1::JobSpec& spec,
                                                              Backend* backend);

  // Runs training to the end (epochs or max_steps), calling `on_epoch` after each epoch.
  absl::StatusOr<TrainResult> Run(const std::function<void(const EpochReport&)>& on_epoch);

  // Mean loss and accuracy over a whole data set, in batches of 1000.
  absl::StatusOr<EvalResult> Evaluate(const Dataset& data);

  Model& model() { return *model_; }
  const TrainTestData& data() const { return data_; }

 private:
  LocalTrainer() = default;

  v1::JobSpec spec_;
  Backend* backend_ = nullptr;
  TrainTestData data_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Optimizer> optimizer_;
};

}  // namespace psgrid

#endif  // PSGRID_WORKER_LOCAL_TRAINER_H_
