// Training with the model on a device, end to end, on FakeDeviceBackend (a CPU computing in its
// own "device" memory and checking every pointer it is given): the single-process trainer
// (LocalTrainer, evaluation and init_from included) gives the CPU's results bit for bit, and a
// worker on the device in a real job (gRPC parameter server in this process) pushes the same
// gradients as a CPU worker beside it, step after step, and ends the job with the weights of an
// all-CPU job.
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/backend/cpu_backend.h"
#include "core/io/safetensors.h"
#include "proto/job_spec_codec.h"
#include "tests/device_job_harness.h"
#include "tests/fake_device_backend.h"
#include "tests/test_util.h"
#include "worker/local_trainer.h"

namespace psgrid {
namespace {

using ::psgrid::testing::FakeDeviceBackend;
using ::psgrid::testing::JobRecord;
using ::psgrid::testing::PushedGradient;
using ::psgrid::testing::RunJob;
using ::psgrid::testing::TwinJobSpec;
using ::psgrid::testing::WorkerDevice;
using ::psgrid::testing::WriteTwinCsv;

bool SameBits(const Tensor& a, const Tensor& b) {
  return a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), static_cast<size_t>(a.size()) * sizeof(float)) == 0;
}

bool SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// ---- LocalTrainer -----------------------------------------------------------------------------

struct LocalRun {
  std::vector<EpochReport> epochs;
  TrainResult result;
  Tensor weights;  // host
};

LocalRun TrainLocally(const v1::JobSpec& spec, Backend* backend) {
  LocalRun run;
  auto trainer = LocalTrainer::Create(spec, backend);
  EXPECT_OK(trainer);
  if (!trainer.ok()) return run;
  EXPECT_EQ((*trainer)->model().parameters().values().on_device(), !backend->is_host());
  auto result = (*trainer)->Run([&](const EpochReport& r) { run.epochs.push_back(r); });
  EXPECT_OK(result);
  if (result.ok()) run.result = *result;
  run.weights = (*trainer)->model().parameters().values().ToHost();
  return run;
}

void ExpectLocalTrainingMatchesCpu(const v1::JobSpec& spec) {
  CpuBackend cpu;
  const LocalRun want = TrainLocally(spec, &cpu);
  FakeDeviceBackend device;
  const LocalRun got = TrainLocally(spec, &device);
  EXPECT_EQ(device.violations(), 0);
  EXPECT_EQ(device.live_allocations(), 0);  // the trainer freed its device memory
  ASSERT_FALSE(want.epochs.empty());
  ASSERT_EQ(got.epochs.size(), want.epochs.size());
  for (size_t e = 0; e < want.epochs.size(); ++e) {
    EXPECT_EQ(got.epochs[e].train_loss, want.epochs[e].train_loss) << "epoch " << e + 1;
    EXPECT_EQ(got.epochs[e].train_accuracy, want.epochs[e].train_accuracy) << "epoch " << e + 1;
    EXPECT_EQ(got.epochs[e].test_loss, want.epochs[e].test_loss) << "epoch " << e + 1;
    EXPECT_EQ(got.epochs[e].test_accuracy, want.epochs[e].test_accuracy) << "epoch " << e + 1;
  }
  EXPECT_EQ(got.result.steps, want.result.steps);
  EXPECT_TRUE(SameBits(got.weights, want.weights));
}

std::string WriteText(const std::string& name) {
  std::string text;
  for (int i = 0; i < 12; ++i) {
    text += "the quick brown fox jumps over the lazy dog; pack my box with five dozen jugs. ";
  }
  return ::psgrid::testing::WriteTempFile(name, text);
}

v1::JobSpec Spec(const std::string& text) {
  auto spec = ParseJobSpec(text, "spec");
  EXPECT_OK(spec);
  return *spec;
}

TEST(DeviceLocalTrainer, MlpRegressionWithClippingMatchesCpu) {
  ExpectLocalTrainingMatchesCpu(Spec(
      "name: linear\n"
      "model: {layers: [{type: dense, units: 8}, {type: tanh}, {type: dense, units: 1}], "
      "loss: mse, init: {seed: 3}}\n"
      "data: {dataset: csv, path: " + ::psgrid::testing::WriteLinearCsv("device_linear.csv") +
      ", seed: 5}\n"
      "training: {workers: 2, batch_size: 8, epochs: 3}\n"
      "optimizer: {type: momentum, learning_rate: 0.05, momentum: 0.5, clip_norm: 1.0}\n"));
}

TEST(DeviceLocalTrainer, CharacterCnnMatchesCpu) {
  ExpectLocalTrainingMatchesCpu(Spec(
      "name: char-cnn\n"
      "model: {layers: [{type: embedding, units: 6}, {type: conv2d, filters: 3, kernel: 3, "
      "padding: 1}, {type: relu}, {type: maxpool2d, size: 2}, {type: flatten}, {type: dense}], "
      "init: {seed: 4}}\n"
      "data: {dataset: text, path: " + WriteText("device_cnn.txt") +
      ", sequence_length: 8, seed: 2}\n"
      "training: {batch_size: 16, epochs: 2}\n"
      "optimizer: {type: adam, learning_rate: 0.01}\n"));
}

TEST(DeviceLocalTrainer, CharacterLstmWithDropoutMatchesCpu) {
  ExpectLocalTrainingMatchesCpu(Spec(
      "name: char-lstm\n"
      "model: {layers: [{type: embedding, units: 8}, {type: lstm, units: 12, truncation: 4}, "
      "{type: dropout, rate: 0.2}, {type: dense}], init: {scheme: xavier, seed: 5}}\n"
      "data: {dataset: text, path: " + WriteText("device_lstm.txt") +
      ", sequence_length: 6, seed: 3}\n"
      "training: {workers: 2, batch_size: 8, epochs: 2, max_steps: 40}\n"
      "optimizer: {type: adamw, learning_rate: 0.01, schedule: {type: cosine}}\n"));
}

TEST(DeviceLocalTrainer, InitFromAFileLoadsIntoTheDevice) {
  const std::string csv = ::psgrid::testing::WriteLinearCsv("device_init.csv");
  const std::string file = ::psgrid::testing::TempPath("device_init.safetensors");
  // Weights that no init would draw: 0.01·i.
  std::vector<float> w(16), b(8), w2(8), b2(1);
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.01f * static_cast<float>(i);
  for (size_t i = 0; i < b.size(); ++i) b[i] = -0.02f * static_cast<float>(i);
  for (size_t i = 0; i < w2.size(); ++i) w2[i] = 0.03f * static_cast<float>(i);
  b2[0] = 0.5f;
  ASSERT_OK(WriteSafetensors(file, {{"0.weight", {8, 2}, w.data()},
                                    {"0.bias", {8}, b.data()},
                                    {"2.weight", {1, 8}, w2.data()},
                                    {"2.bias", {1}, b2.data()}}));
  v1::JobSpec spec = Spec(
      "name: init\n"
      "model: {layers: [{type: dense, units: 8}, {type: tanh}, {type: dense, units: 1}], "
      "loss: mse, init_from: " + file + "}\n"
      "data: {dataset: csv, path: " + csv + "}\n"
      "training: {batch_size: 16, epochs: 1, max_steps: 0}\n"
      "optimizer: {type: sgd, learning_rate: 0.1}\n");
  FakeDeviceBackend device;
  auto trainer = LocalTrainer::Create(spec, &device);
  ASSERT_OK(trainer);
  ParameterSet& params = (*trainer)->model().parameters();
  std::vector<float> loaded(16);
  params.values().Read(params.infos()[0].offset, loaded);
  EXPECT_EQ(loaded, w);
  std::vector<float> bias(1);
  params.values().Read(params.infos()[3].offset, bias);
  EXPECT_EQ(bias[0], 0.5f);
  // And trains on from there as the CPU does.
  spec.mutable_training()->set_max_steps(5);
  ExpectLocalTrainingMatchesCpu(spec);
  EXPECT_EQ(device.violations(), 0);
}

// ---- Workers in a job -------------------------------------------------------------------------

WorkerDevice Cpu() {
  return {[] { return std::unique_ptr<Backend>(std::make_unique<CpuBackend>()); }, nullptr};
}

// A fake device whose checks and traffic are verified when its worker ends: `steps` steps of
// the twin model (three layers with parameters), each layer's gradient copied to the host on
// its own as backward produced it.
WorkerDevice FakeDevice(int steps) {
  return {[] { return std::unique_ptr<Backend>(std::make_unique<FakeDeviceBackend>()); },
          [steps](Backend& backend) {
            auto& device = static_cast<FakeDeviceBackend&>(backend);
            EXPECT_EQ(device.violations(), 0);
            EXPECT_EQ(device.live_allocations(), 0);  // the worker freed its device memory
            // Per step one copy per layer into the pinned gradient buffer, queued while
            // backward goes on, and one of the initial weights into the pinned parameter
            // buffer; each pulled version went out.
            EXPECT_EQ(device.copies_to_pinned_host(), 3 * steps + 1);
            EXPECT_EQ(device.async_copies_to_host(), 3 * steps);
            EXPECT_EQ(device.copies_to_host(), device.copies_to_pinned_host());
            EXPECT_GT(device.copies_to_device(), steps);
          }};
}

// Every step's push of the two workers, by step.
std::map<int64_t, std::vector<PushedGradient>> PushesByStep(const JobRecord& job) {
  std::map<int64_t, std::vector<PushedGradient>> by_step;
  for (const auto& w : job.workers) {
    for (const PushedGradient& p : w.pushes) by_step[p.step].push_back(p);
  }
  return by_step;
}

void ExpectFakeDeviceWorkerMatchesCpuWorker(const std::string& optimizer) {
  SCOPED_TRACE(optimizer);
  // 2 workers × batch 6, 5 blocks: 5 steps per epoch, both ranks on the same rows each step.
  const std::string csv = WriteTwinCsv("device_twins.csv", 6, 5);
  const v1::JobSpec spec = TwinJobSpec(csv, 6, 2, optimizer);
  const JobRecord mixed = RunJob(spec, {FakeDevice(10), Cpu()});
  ASSERT_EQ(mixed.state, v1::JOB_STATE_COMPLETED) << mixed.message;
  for (const auto& w : mixed.workers) EXPECT_OK(w.status);
  const auto by_step = PushesByStep(mixed);
  ASSERT_EQ(by_step.size(), 10u);
  for (const auto& [step, pushes] : by_step) {
    ASSERT_EQ(pushes.size(), 2u) << "step " << step;
    EXPECT_EQ(pushes[0].sample_count, 6);
    EXPECT_EQ(pushes[0].sample_count, pushes[1].sample_count);
    EXPECT_EQ(pushes[0].loss_sum, pushes[1].loss_sum) << "step " << step;
    EXPECT_TRUE(SameBits(pushes[0].gradient, pushes[1].gradient)) << "step " << step;
  }
  // The job's weights are those of two CPU workers, bit for bit.
  const JobRecord cpu_only = RunJob(spec, {Cpu(), Cpu()});
  ASSERT_EQ(cpu_only.state, v1::JOB_STATE_COMPLETED) << cpu_only.message;
  EXPECT_TRUE(SameBits(mixed.weights, cpu_only.weights));
}

TEST(DeviceWorker, FakeDeviceWorkerPushesTheCpuWorkersGradients) {
  ExpectFakeDeviceWorkerMatchesCpuWorker("{type: sgd, learning_rate: 0.1}");
}

TEST(DeviceWorker, FakeDeviceWorkerMatchesWithMomentum) {
  ExpectFakeDeviceWorkerMatchesCpuWorker("{type: momentum, learning_rate: 0.05, momentum: 0.9}");
}

TEST(DeviceWorker, ADeviceWorkerStaysOffSharedMemory) {
  const std::string csv = WriteTwinCsv("device_shm.csv", 4, 3);
  const v1::JobSpec spec = TwinJobSpec(csv, 4, 1, "{type: sgd, learning_rate: 0.1}");
  const JobRecord job = RunJob(spec, {FakeDevice(3), Cpu()}, /*shared_memory=*/true);
  ASSERT_EQ(job.state, v1::JOB_STATE_COMPLETED) << job.message;
  ASSERT_EQ(job.workers.size(), 2u);
  EXPECT_EQ(job.workers[0].shared_memory_requests, 0);  // the device worker: gRPC
  EXPECT_EQ(job.workers[1].shared_memory_requests, 1);  // the CPU worker: shared memory
  const auto by_step = PushesByStep(job);
  for (const auto& [step, pushes] : by_step) {
    ASSERT_EQ(pushes.size(), 2u) << "step " << step;
    EXPECT_TRUE(SameBits(pushes[0].gradient, pushes[1].gradient)) << "step " << step;
  }
}

}  // namespace
}  // namespace psgrid
