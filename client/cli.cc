#include "client/cli.h"

#include <cstdio>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/backend/blas_kernel.h"
#include "core/backend/cpu_backend.h"
#include "core/backend/registry.h"
#include "core/status_macros.h"
#include "proto/job_spec_codec.h"
#include "worker/local_trainer.h"

namespace psgrid {
namespace {

struct LocalOptions {
  std::string spec_path;
  int epochs = 0;
  int64_t max_steps = -1;
  int blas_threads = 0;
  std::string backend = "cpu";
  bool json = false;
};

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "psgrid: error: %s\n", std::string(status.message()).c_str());
  return 1;
}

// Prefixes a spec error (which names the field) with the spec file, keeping the code.
template <typename T>
absl::StatusOr<T> WithSource(const std::string& spec_path, absl::StatusOr<T> result) {
  if (result.ok() || result.status().code() != absl::StatusCode::kInvalidArgument) return result;
  return absl::InvalidArgumentError(absl::StrCat(spec_path, ": ", result.status().message()));
}

absl::Status RunLocal(const LocalOptions& opts) {
  ASSIGN_OR_RETURN(v1::JobSpec spec, LoadJobSpecFile(opts.spec_path));
  if (opts.epochs > 0) spec.mutable_training()->set_epochs(opts.epochs);
  if (opts.max_steps >= 0) spec.mutable_training()->set_max_steps(opts.max_steps);
  const int threads = SetBlasThreads(opts.blas_threads);
  ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, CreateBackend(opts.backend));
  std::FILE* log = opts.json ? stderr : stdout;
  std::fprintf(log,
               "job %s: %d worker(s) x batch %d, %d epoch(s), %s lr %g, backend %s "
               "(OpenBLAS %s kernel, %d thread(s))\n",
               spec.name().c_str(), spec.training().workers(), spec.training().batch_size(),
               spec.training().epochs(), spec.optimizer().type().c_str(),
               spec.optimizer().learning_rate(), std::string(backend->name()).c_str(),
               BlasKernelName().c_str(), threads);
  ASSIGN_OR_RETURN(std::unique_ptr<LocalTrainer> trainer,
                   WithSource(opts.spec_path, LocalTrainer::Create(spec, backend.get())));
  std::fprintf(log, "data: %lld training and %lld test samples from %s\n",
               static_cast<long long>(trainer->data().train.size()),
               static_cast<long long>(trainer->data().test.size()), spec.data().path().c_str());
  std::fputs(FormatSummary(trainer->model().Summary()).c_str(), log);
  std::fflush(log);
  const bool classification = spec.model().loss() == "softmax_cross_entropy";
  ASSIGN_OR_RETURN(TrainResult result, trainer->Run([&](const EpochReport& r) {
    std::fprintf(log,
                 "epoch %d/%d  step %lld  loss %.4f  train-acc %.4f  samples/s %.0f  "
                 "test-loss %.4f%s  elapsed %.1fs\n",
                 r.epoch, r.epochs, static_cast<long long>(r.step), r.train_loss,
                 r.train_accuracy, r.samples_per_second, r.test_loss,
                 classification ? absl::StrFormat("  test-acc %.4f", r.test_accuracy).c_str() : "",
                 r.elapsed_seconds);
    std::fflush(log);
  }));
  std::fprintf(log, "done: %lld steps, %lld samples, %.0f samples/s; test loss %.4f",
               static_cast<long long>(result.steps), static_cast<long long>(result.samples),
               result.samples_per_second, result.test_loss);
  if (classification) std::fprintf(log, ", test accuracy %.4f", result.test_accuracy);
  std::fputs("\n", log);
  if (opts.json) {
    std::printf(
        "{\"job\": \"%s\", \"steps\": %lld, \"samples\": %lld, \"train_seconds\": %.4f, "
        "\"samples_per_s\": %.1f, \"test_loss\": %.6f, \"test_acc\": %.6f, \"blas_threads\": %d, \"blas_kernel\": \"%s\"}\n",
        spec.name().c_str(), static_cast<long long>(result.steps),
        static_cast<long long>(result.samples), result.train_seconds, result.samples_per_second,
        result.test_loss, result.test_accuracy, threads, BlasKernelName().c_str());
  }
  return absl::OkStatus();
}

absl::Status RunSummary(const std::string& spec_path) {
  ASSIGN_OR_RETURN(v1::JobSpec spec, LoadJobSpecFile(spec_path));
  ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, CreateBackend("cpu"));
  ASSIGN_OR_RETURN(std::unique_ptr<LocalTrainer> trainer,
                   WithSource(spec_path, LocalTrainer::Create(spec, backend.get())));
  std::fputs(FormatSummary(trainer->model().Summary()).c_str(), stdout);
  return absl::OkStatus();
}

}  // namespace

int RunCli(int argc, char** argv) {
  CLI::App app{"psgrid: data-parallel neural-network training on a parameter server"};
  app.require_subcommand(1);

  LocalOptions local;
  CLI::App* local_cmd = app.add_subcommand("local", "Run a whole job on this machine");
  local_cmd->add_option("spec", local.spec_path, "Job spec file (YAML or JSON)")->required();
  local_cmd->add_option("--epochs", local.epochs, "Override training.epochs")->check(CLI::PositiveNumber);
  local_cmd->add_option("--max-steps", local.max_steps, "Override training.max_steps (0 = no limit)")
      ->check(CLI::NonNegativeNumber);
  local_cmd->add_option("--blas-threads", local.blas_threads,
                        "OpenBLAS threads (0 = OpenBLAS default)")->check(CLI::NonNegativeNumber);
  local_cmd->add_option("--backend", local.backend, "Compute backend")->default_val("cpu");
  local_cmd->add_flag("--json", local.json, "Print the result as JSON on stdout (progress on stderr)");

  std::string summary_spec;
  CLI::App* summary_cmd = app.add_subcommand("summary", "Print the model summary of a job spec");
  summary_cmd->add_option("spec", summary_spec, "Job spec file (YAML or JSON)")->required();

  CLI::App* version_cmd = app.add_subcommand("version", "Print the version");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (*local_cmd) {
    absl::Status s = RunLocal(local);
    return s.ok() ? 0 : Fail(s);
  }
  if (*summary_cmd) {
    absl::Status s = RunSummary(summary_spec);
    return s.ok() ? 0 : Fail(s);
  }
  if (*version_cmd) {
    std::printf("psgrid %s (OpenBLAS %s kernel)\n", PSGRID_VERSION, BlasKernelName().c_str());
    return 0;
  }
  return 2;
}

}  // namespace psgrid
