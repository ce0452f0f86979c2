// The proof that distributed averaging and the update are right, through the whole stack: a
// real gRPC parameter server and two workers talking to it over loopback, with shuffle: false,
// end with the same weights as one process training at twice the batch.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "core/backend/cpu_backend.h"
#include "proto/job_spec_codec.h"
#include "server/job_manager.h"
#include "server/rpc/grpc_server.h"
#include "tests/test_util.h"
#include "worker/local_trainer.h"
#include "worker/rpc/grpc_parameter_client.h"
#include "worker/worker.h"

namespace psgrid {
namespace {

// 157 rows: the last step of every epoch is short, and uneven between the two workers.
std::string WriteData() {
  const std::string path = ::psgrid::testing::TempPath("equivalence.csv");
  std::ofstream out(path);
  for (int i = 0; i < 157; ++i) {
    const double a = std::sin(i * 0.37), b = std::cos(i * 0.11), c = (i % 9) * 0.1 - 0.4;
    out << a << "," << b << "," << c << "," << a * b - 0.5 * c + 0.1 << "\n";
  }
  return path;
}

v1::JobSpec Spec(int workers, int batch, const std::string& optimizer) {
  const std::string data = WriteData();
  auto spec = ParseJobSpec(
      "name: equivalence\n"
      // Three layers, most weights above the first: gradients travel in parts over both
      // transports while backward runs (GradientSender over gRPC, the doorbell in shared memory).
      "model: {layers: [{type: dense, units: 3}, {type: tanh}, {type: dense, units: 6}, "
      "{type: tanh}, {type: dense, units: 1}], "
      "loss: mse, init: {scheme: xavier, seed: 5}}\n"
      "data: {dataset: csv, path: " +
          data + ", test_path: " + data +
          ", shuffle: false}\n"
          "training: {workers: " +
          std::to_string(workers) + ", batch_size: " + std::to_string(batch) +
          ", epochs: 2}\n"
          "optimizer: " +
          optimizer + "\n",
      "spec");
  EXPECT_OK(spec);
  return *spec;
}

Tensor TrainDistributed(const v1::JobSpec& spec, bool shared_memory) {
  JobManagerOptions manager_options;
  manager_options.shared_memory = shared_memory;
  JobManager manager(manager_options);
  auto server = GrpcServer::Start("127.0.0.1:0", &manager);
  EXPECT_OK(server);
  auto id = manager.Submit(spec);
  EXPECT_OK(id);
  const std::string address = "127.0.0.1:" + std::to_string((*server)->port());
  std::vector<std::thread> workers;
  for (int r = 0; r < spec.training().workers(); ++r) {
    workers.emplace_back([&] {
      auto client = GrpcParameterClient::Connect(address, absl::Seconds(10));
      ASSERT_OK(client);
      CpuBackend backend;
      WorkerOptions options;
      options.job_id = *id;
      options.verbose = false;
      options.shared_memory = shared_memory;
      options.wait_for_job = absl::Seconds(30);
      EXPECT_OK(Worker(client->get(), &backend, options).Run());
    });
  }
  for (std::thread& t : workers) t.join();
  auto job = manager.Get(*id);
  EXPECT_OK(job);
  EXPECT_EQ((*job)->Status().state(), v1::JOB_STATE_COMPLETED) << (*job)->Status().message();
  if (shared_memory) {  // the workers did take the shared-memory path
    EXPECT_TRUE(std::filesystem::exists("/dev/shm/psgrid-" + std::to_string(getpid()) + "-" + *id +
                                        "-w1-grads"));
  }
  auto snapshot = (*job)->WaitForVersion((*job)->total_steps(), absl::Now() + absl::Seconds(5));
  EXPECT_OK(snapshot);
  (*server)->Shutdown(absl::Seconds(1));
  return *snapshot->values;
}

Tensor TrainInOneProcess(const v1::JobSpec& spec) {
  CpuBackend backend;
  auto trainer = LocalTrainer::Create(spec, &backend);
  EXPECT_OK(trainer);
  EXPECT_OK((*trainer)->Run(nullptr));
  return (*trainer)->model().parameters().values();
}

void ExpectTwoWorkersMatchOneProcess(bool shared_memory) {
  for (const std::string optimizer : {"{type: sgd, learning_rate: 0.1}",
                                      "{type: momentum, learning_rate: 0.05, momentum: 0.9}"}) {
    SCOPED_TRACE(optimizer);
    const Tensor distributed = TrainDistributed(Spec(2, 10, optimizer), shared_memory);
    const Tensor single = TrainInOneProcess(Spec(1, 20, optimizer));
    const Tensor initial = [&] {
      v1::JobSpec untrained = Spec(1, 20, optimizer);
      untrained.mutable_training()->set_max_steps(0);
      CpuBackend backend;
      auto t = LocalTrainer::Create(untrained, &backend);
      EXPECT_OK(t);
      return (*t)->model().parameters().values();
    }();
    ASSERT_EQ(distributed.size(), single.size());
    // Relative error of the weight vector, ‖distributed − single‖ / ‖single‖: the two runs add
    // the same numbers in a different order (per-worker means, then their weighted mean), so
    // they differ by float32 rounding only.
    double diff_sq = 0, norm_sq = 0, max_abs = 0, moved = 0;
    for (int64_t i = 0; i < single.size(); ++i) {
      const double d = static_cast<double>(distributed[i]) - single[i];
      diff_sq += d * d;
      norm_sq += static_cast<double>(single[i]) * single[i];
      max_abs = std::max(max_abs, std::abs(d));
      moved = std::max(moved, static_cast<double>(std::abs(single[i] - initial[i])));
    }
    EXPECT_LE(std::sqrt(diff_sq / norm_sq), 1e-5);
    EXPECT_LE(max_abs, 1e-6);
    EXPECT_GT(moved, 1e-2);  // training really changed the weights
  }
}

TEST(DistributedEquivalence, TwoGrpcWorkersAtBatchBMatchOneProcessAtBatch2B) {
  ExpectTwoWorkersMatchOneProcess(/*shared_memory=*/false);
}

TEST(DistributedEquivalence, TwoSharedMemoryWorkersAtBatchBMatchOneProcessAtBatch2B) {
  ExpectTwoWorkersMatchOneProcess(/*shared_memory=*/true);
}

}  // namespace
}  // namespace psgrid
