#include "client/single_process.h"

#include <cstdio>
#include <memory>

#include "absl/strings/str_format.h"
#include "core/backend/blas_kernel.h"
#include "core/backend/cpu_backend.h"
#include "core/backend/registry.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"
#include "worker/local_trainer.h"

namespace psgrid {

absl::Status RunSingleProcess(const SingleProcessOptions& opts) {
  ASSIGN_OR_RETURN(v1::JobSpec spec, LoadJobSpecWithOverrides(opts.spec_path, opts.overrides));
  const bool json = opts.output == OutputFormat::kJson;
  const int threads = SetBlasThreads(opts.blas_threads);
  ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, CreateBackend(opts.backend));
  std::FILE* log = json ? stderr : stdout;
  std::fprintf(log,
               "job %s: %d worker(s) x batch %d in one process, %d epoch(s), %s lr %g, "
               "backend %s (OpenBLAS %s kernel, %d thread(s))\n",
               spec.name().c_str(), spec.training().workers(), spec.training().batch_size(),
               spec.training().epochs(), spec.optimizer().type().c_str(),
               spec.optimizer().learning_rate(), std::string(backend->name()).c_str(),
               BlasKernelName().c_str(), threads);
  ASSIGN_OR_RETURN(std::unique_ptr<LocalTrainer> trainer,
                   WithSpecSource(opts.spec_path, LocalTrainer::Create(spec, backend.get())));
  std::fprintf(log, "data: %lld training and %lld test samples from %s\n",
               static_cast<long long>(trainer->data().train.size()),
               static_cast<long long>(trainer->data().test.size()), spec.data().path().c_str());
  std::fputs(FormatSummary(trainer->model().Summary()).c_str(), log);
  std::fflush(log);
  const bool classification = spec.model().loss() == "softmax_cross_entropy";
  EpochReport last;
  ASSIGN_OR_RETURN(TrainResult result, trainer->Run([&](const EpochReport& r) {
    last = r;
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
  std::fflush(log);
  if (json) {
    // The keys of the distributed `psgrid local -o json` (state ... wall_seconds) and the
    // benchmarks' (samples_per_s, test_acc, blas_*).
    nlohmann::ordered_json j;
    j["job"] = spec.name();
    j["state"] = "completed";
    j["steps"] = result.steps;
    j["epochs"] = last.epoch;
    j["samples"] = result.samples;
    j["train_loss"] = last.train_loss;
    j["test_loss"] = result.test_loss;
    j["test_accuracy"] = result.test_accuracy;
    j["samples_per_second"] = result.samples_per_second;
    j["wall_seconds"] = last.elapsed_seconds;
    j["train_seconds"] = result.train_seconds;
    j["samples_per_s"] = result.samples_per_second;
    j["test_acc"] = result.test_accuracy;
    j["blas_threads"] = threads;
    j["blas_kernel"] = BlasKernelName();
    std::printf("%s\n",
                j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());
    std::fflush(stdout);
  }
  return absl::OkStatus();
}

}  // namespace psgrid
