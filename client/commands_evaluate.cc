#include "client/commands_evaluate.h"

#include <cstdio>
#include <memory>

#include "absl/strings/str_cat.h"
#include "core/backend/registry.h"
#include "core/data/loader.h"
#include "core/io/weights_file.h"
#include "core/model.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"
#include "proto/job_spec_codec.h"
#include "worker/evaluation.h"

namespace psgrid {
namespace {

struct Evaluated {
  EvalResult result;
  int64_t samples = 0;
  bool regression = false;
};

// Builds the spec's model on its data, lets `load` fill the weights, and evaluates the test set.
template <typename Load>
absl::StatusOr<Evaluated> Evaluate(const v1::JobSpec& spec, Load load) {
  ASSIGN_OR_RETURN(TrainTestData data, LoadJobData(spec.data()));
  ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, CreateBackend("cpu"));
  ASSIGN_OR_RETURN(std::unique_ptr<Model> model,
                   Model::Create(spec.model(), data.train.sample_shape(), OutputWidth(data.train),
                                 backend.get()));
  RETURN_IF_ERROR(load(&model->parameters()));
  Evaluated e;
  ASSIGN_OR_RETURN(e.result, EvaluateDataset(*model, data.test));
  e.samples = data.test.size();
  e.regression = data.test.is_regression();
  return e;
}

int Print(const absl::StatusOr<Evaluated>& e, const std::string& what, OutputFormat format) {
  if (!e.ok()) return PrintError(e.status());
  if (format == OutputFormat::kJson) {
    nlohmann::json out = {{"weights", what}, {"test_loss", e->result.loss},
                          {"test_samples", e->samples}};
    if (!e->regression) out["test_accuracy"] = e->result.accuracy;
    std::printf("%s\n", out.dump().c_str());
  } else if (e->regression) {
    std::printf("%s: test loss %.6f on %lld samples\n", what.c_str(), e->result.loss,
                static_cast<long long>(e->samples));
  } else {
    std::printf("%s: test loss %.6f, test accuracy %.4f on %lld samples\n", what.c_str(),
                e->result.loss, e->result.accuracy, static_cast<long long>(e->samples));
  }
  std::fflush(stdout);
  return kExitOk;
}

}  // namespace

int RunEvaluateFileCommand(const std::string& weights_path, const std::string& spec_path,
                           OutputFormat format) {
  absl::StatusOr<v1::JobSpec> spec = LoadJobSpecFile(spec_path);
  if (!spec.ok()) return PrintError(spec.status());
  return Print(Evaluate(*spec,
                        [&](ParameterSet* params) {
                          return LoadWeightsFile(weights_path, "evaluate", params);
                        }),
               weights_path, format);
}

int RunEvaluateJobCommand(const ServerFlags& server, const std::string& job_id,
                          const std::string& snapshot_id, OutputFormat format) {
  absl::StatusOr<std::unique_ptr<ControlClient>> client = ConnectToServer(server);
  if (!client.ok()) return PrintError(client.status());
  absl::StatusOr<v1::JobStatus> status = (*client)->Get(job_id);
  if (!status.ok()) return PrintError(status.status());
  absl::StatusOr<ControlClient::Weights> weights = (*client)->ExportWeights(job_id, snapshot_id);
  if (!weights.ok()) return PrintError(weights.status());
  const std::string what =
      snapshot_id.empty() ? absl::StrCat("job ", job_id, " at step ", weights->step)
                          : absl::StrCat("snapshot ", snapshot_id, " of job ", job_id,
                                         " (step ", weights->step, ")");
  return Print(Evaluate(status->spec(),
                        [&](ParameterSet* params) {
                          return LoadWeights(weights->tensors, what, params);
                        }),
               what, format);
}

}  // namespace psgrid
