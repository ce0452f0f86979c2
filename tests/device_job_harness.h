// A whole job in this process for comparing workers on different devices: a real parameter
// server (JobManager + GrpcServer on loopback), one Worker thread per backend, and a client
// wrapper that records every gradient each worker pushes.
//
// The data set ("twin" CSV) repeats each run of B rows once, so that with shuffle off and W = 2
// workers of batch B both ranks train every step on the same samples: their gradients must then
// be the same, whatever device computed them, and which rank a worker got does not matter.
#ifndef PSGRID_TESTS_DEVICE_JOB_HARNESS_H_
#define PSGRID_TESTS_DEVICE_JOB_HARNESS_H_

#include <cmath>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "core/backend/backend.h"
#include "proto/job_spec_codec.h"
#include "server/job_manager.h"
#include "server/rpc/grpc_server.h"
#include "tests/test_util.h"
#include "worker/parameter_client.h"
#include "worker/rpc/grpc_parameter_client.h"
#include "worker/worker.h"

namespace psgrid::testing {

// `blocks` blocks of 2·batch rows "a,b,c,target", each block the same `batch` rows twice.
inline std::string WriteTwinCsv(const std::string& name, int batch, int blocks) {
  const std::string path = TempPath(name);
  std::ofstream out(path);
  int row = 0;
  for (int k = 0; k < blocks; ++k) {
    for (int twice = 0; twice < 2; ++twice) {
      for (int i = 0; i < batch; ++i) {
        const int r = row + i;
        const double a = std::sin(r * 0.37), b = std::cos(r * 0.11), c = (r % 9) * 0.1 - 0.4;
        out << a << "," << b << "," << c << "," << a * b - 0.5 * c + 0.1 << "\n";
      }
    }
    row += batch;
  }
  return path;
}

// Two workers of batch `batch` on a twin CSV, shuffle off, a three-layer tanh MLP with MSE.
inline v1::JobSpec TwinJobSpec(const std::string& csv, int batch, int epochs,
                               const std::string& optimizer) {
  auto spec = ParseJobSpec(
      "name: twins\n"
      "model: {layers: [{type: dense, units: 16}, {type: tanh}, {type: dense, units: 8}, "
      "{type: tanh}, {type: dense, units: 1}], loss: mse, init: {scheme: xavier, seed: 5}}\n"
      "data: {dataset: csv, path: " + csv + ", test_path: " + csv + ", shuffle: false}\n"
      "training: {workers: 2, batch_size: " + std::to_string(batch) +
          ", epochs: " + std::to_string(epochs) + "}\n"
          "optimizer: " + optimizer + "\n",
      "twins");
  EXPECT_OK(spec);
  return *spec;
}

// One push as the transport got it: what the server would receive.
struct PushedGradient {
  int64_t step = 0;
  int64_t sample_count = 0;
  double loss_sum = 0;
  std::vector<float> gradient;  // the whole arena
};

// Forwards every call to the gRPC client and keeps a copy of each pushed gradient. The copy
// reads the tensor on the host (span()): a device tensor handed to the transport would abort.
class RecordingClient : public ParameterClient {
 public:
  explicit RecordingClient(std::unique_ptr<ParameterClient> inner) : inner_(std::move(inner)) {}

  absl::StatusOr<v1::RegisterWorkerResponse> Register(const std::string& job_id,
                                                      const std::string& worker_name,
                                                      absl::Time deadline) override {
    return inner_->Register(job_id, worker_name, deadline);
  }
  absl::StatusOr<v1::PushGradientsResponse> Push(const v1::PushHeader& header,
                                                 const std::vector<ParamInfo>& layout,
                                                 const Tensor& gradients,
                                                 absl::Time deadline) override {
    {
      absl::MutexLock lock(&mu_);
      pushes_.push_back({header.step(), header.sample_count(), header.loss_sum(),
                         std::vector<float>(gradients.span().begin(), gradients.span().end())});
    }
    return inner_->Push(header, layout, gradients, deadline);
  }
  absl::StatusOr<PullResult> Pull(const std::string& job_id, const std::string& worker_id,
                                  int64_t min_version, const std::vector<ParamInfo>& layout,
                                  Tensor* values, absl::Time deadline) override {
    (void)values->span();  // host memory only
    return inner_->Pull(job_id, worker_id, min_version, layout, values, deadline);
  }
  absl::Status ReportMetrics(const v1::ReportMetricsRequest& request,
                             absl::Time deadline) override {
    return inner_->ReportMetrics(request, deadline);
  }
  absl::StatusOr<v1::JobState> Heartbeat(const std::string& job_id, const std::string& worker_id,
                                         absl::Time deadline) override {
    return inner_->Heartbeat(job_id, worker_id, deadline);
  }
  absl::StatusOr<SharedArenas> UseSharedMemory(const std::string& job_id,
                                               const std::string& worker_id,
                                               absl::Time deadline) override {
    {
      absl::MutexLock lock(&mu_);
      ++shared_memory_requests_;
    }
    return inner_->UseSharedMemory(job_id, worker_id, deadline);
  }
  absl::StatusOr<v1::HeartbeatResponse> CheckIn(const std::string& job_id,
                                                const std::string& worker_id,
                                                absl::Time deadline) override {
    return inner_->CheckIn(job_id, worker_id, deadline);
  }
  bool TakesGradientParts() const override { return inner_->TakesGradientParts(); }
  void PushPart(const v1::PushHeader& header, const std::vector<ParamInfo>& layout,
                const Tensor& gradients, int64_t ready_from, absl::Time deadline) override {
    (void)gradients.span();  // host memory only
    {
      absl::MutexLock lock(&mu_);
      ++parts_;
    }
    inner_->PushPart(header, layout, gradients, ready_from, deadline);
  }

  std::vector<PushedGradient> pushes() {
    absl::MutexLock lock(&mu_);
    return pushes_;
  }
  int parts() {
    absl::MutexLock lock(&mu_);
    return parts_;
  }
  int shared_memory_requests() {
    absl::MutexLock lock(&mu_);
    return shared_memory_requests_;
  }

 private:
  const std::unique_ptr<ParameterClient> inner_;
  absl::Mutex mu_;
  std::vector<PushedGradient> pushes_ ABSL_GUARDED_BY(mu_);
  int parts_ ABSL_GUARDED_BY(mu_) = 0;
  int shared_memory_requests_ ABSL_GUARDED_BY(mu_) = 0;
};

// Makes a worker's backend on the worker's thread; `check` runs there too, after the worker
// ended and before the backend is destroyed (e.g. to look at a FakeDeviceBackend's counters).
struct WorkerDevice {
  std::function<std::unique_ptr<Backend>()> make;
  std::function<void(Backend&)> check;
};

struct WorkerRecord {
  absl::Status status;
  std::vector<PushedGradient> pushes;
  int parts = 0;
  int shared_memory_requests = 0;
};

struct JobRecord {
  v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
  std::string message;
  Tensor weights;  // the final version (host)
  std::vector<WorkerRecord> workers;
};

// Runs `spec` to its end with one worker per entry of `devices`.
inline JobRecord RunJob(const v1::JobSpec& spec, const std::vector<WorkerDevice>& devices,
                        bool shared_memory = false) {
  JobRecord record;
  JobManagerOptions manager_options;
  manager_options.shared_memory = shared_memory;
  JobManager manager(manager_options);
  auto server = GrpcServer::Start("127.0.0.1:0", &manager);
  EXPECT_OK(server);
  if (!server.ok()) return record;
  auto id = manager.Submit(spec);
  EXPECT_OK(id);
  if (!id.ok()) return record;
  const std::string address = "127.0.0.1:" + std::to_string((*server)->port());
  record.workers.resize(devices.size());
  std::vector<std::thread> threads;
  for (size_t w = 0; w < devices.size(); ++w) {
    threads.emplace_back([&, w] {
      WorkerRecord& out = record.workers[w];
      auto grpc = GrpcParameterClient::Connect(address, absl::Seconds(10));
      if (!grpc.ok()) {
        out.status = grpc.status();
        return;
      }
      RecordingClient client(std::move(*grpc));
      std::unique_ptr<Backend> backend = devices[w].make();
      WorkerOptions options;
      options.job_id = *id;
      options.verbose = false;
      options.shared_memory = shared_memory;
      options.wait_for_job = absl::Seconds(30);
      out.status = Worker(&client, backend.get(), options).Run();
      out.pushes = client.pushes();
      out.parts = client.parts();
      out.shared_memory_requests = client.shared_memory_requests();
      if (devices[w].check) devices[w].check(*backend);
    });
  }
  for (std::thread& t : threads) t.join();
  auto job = manager.Get(*id);
  EXPECT_OK(job);
  if (job.ok()) {
    const v1::JobStatus status = (*job)->Status();
    record.state = status.state();
    record.message = status.message();
    auto version = (*job)->WaitForVersion((*job)->total_steps(), absl::Now() + absl::Seconds(5));
    EXPECT_OK(version);
    if (version.ok()) record.weights = *version->values;
  }
  (*server)->Shutdown(absl::Seconds(1));
  return record;
}

}  // namespace psgrid::testing

#endif  // PSGRID_TESTS_DEVICE_JOB_HARNESS_H_
