// Models with their tensors on a device: on FakeDeviceBackend (a CPU computing in its own
// "device" memory and checking every pointer it is given), an MLP, a CNN (conv, the fused
// relu + max pooling, average pooling, flatten), LSTM and GRU/RNN models with embeddings, a
// dropout model and an MSE regression train for several steps, with an optimizer on the device,
// to losses, correct counts, gradients, weights and evaluation outputs bit-identical to
// CpuBackend's, without one host pointer reaching an operation.
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/backend/cpu_backend.h"
#include "core/model.h"
#include "core/optimizer.h"
#include "gtest/gtest.h"
#include "tests/fake_device_backend.h"
#include "tests/model_cases.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

using ::psgrid::testing::Batch;
using ::psgrid::testing::CnnCase;
using ::psgrid::testing::DropoutCase;
using ::psgrid::testing::FakeDeviceBackend;
using ::psgrid::testing::GruCase;
using ::psgrid::testing::LstmCase;
using ::psgrid::testing::MakeBatch;
using ::psgrid::testing::MlpCase;
using ::psgrid::testing::ModelCase;
using ::psgrid::testing::MseCase;
using ::psgrid::testing::TargetsOf;
using ::psgrid::testing::ToVector;

// What one run recorded, all on the host.
struct Trace {
  std::vector<double> losses;
  std::vector<int64_t> correct;
  std::vector<std::vector<float>> grads, weights;  // after each step's backward and update
  double eval_loss = 0;
  int64_t eval_correct = 0;
  std::vector<float> forward;  // Forward's output on the last batch
};

// Batch sizes that shrink (buffers reused in place) and grow (buffers reallocated).
constexpr int64_t kBatches[] = {6, 6, 3, 9, 5};

Trace Train(const ModelCase& c, Backend* backend) {
  Trace trace;
  const v1::ModelSpec spec = ::psgrid::testing::ModelSpecOf(c);
  const v1::OptimizerSpec opt_spec = ::psgrid::testing::OptimizerSpecOf(c);
  auto model_or = Model::Create(spec, c.input, c.outputs, backend);
  EXPECT_OK(model_or);
  if (!model_or.ok()) return trace;
  Model& model = **model_or;
  model.SetRandomStream(3);
  ParameterSet& params = model.parameters();
  EXPECT_EQ(params.values().on_device(), !backend->is_host());
  auto opt_or = CreateOptimizer(opt_spec, params.total_size(), 0, backend);
  EXPECT_OK(opt_or);
  Optimizer& optimizer = **opt_or;
  for (int step = 0; step < static_cast<int>(std::size(kBatches)); ++step) {
    const Batch b = MakeBatch(c, step, kBatches[step]);
    auto r = model.ComputeGradients(b.x, TargetsOf(model, b));
    EXPECT_OK(r);
    if (!r.ok()) return trace;
    trace.losses.push_back(r->loss);
    trace.correct.push_back(r->correct);
    trace.grads.push_back(ToVector(params.grads()));
    const float scale = ClippedGradScale(*backend, params.grads(), 1.0f, c.clip_norm);
    EXPECT_TRUE(optimizer.Step(*backend, params.values(), params.grads(), scale));
    trace.weights.push_back(ToVector(params.values()));
  }
  const Batch b = MakeBatch(c, 99, 7);
  auto eval = model.Evaluate(b.x, TargetsOf(model, b));
  EXPECT_OK(eval);
  if (eval.ok()) {
    trace.eval_loss = eval->loss;
    trace.eval_correct = eval->correct;
  }
  auto out = model.Forward(b.x);
  EXPECT_OK(out);
  if (out.ok()) {
    EXPECT_EQ((*out)->on_device(), !backend->is_host());
    trace.forward = ToVector(**out);
  }
  return trace;
}

// Bit for bit (NaN patterns included), naming the first difference.
void ExpectBitIdentical(const std::vector<float>& want, const std::vector<float>& got,
                        const std::string& what) {
  ASSERT_EQ(want.size(), got.size()) << what;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::memcmp(&want[i], &got[i], sizeof(float)) != 0) {
      ADD_FAILURE() << what << "[" << i << "]: cpu " << want[i] << ", device " << got[i];
      return;
    }
  }
}

void ExpectSameTraining(const ModelCase& c) {
  SCOPED_TRACE(c.name);
  CpuBackend cpu;
  const Trace want = Train(c, &cpu);
  FakeDeviceBackend device;
  const Trace got = Train(c, &device);
  EXPECT_EQ(device.violations(), 0);
  ASSERT_EQ(want.losses.size(), std::size(kBatches));
  ASSERT_EQ(got.losses.size(), want.losses.size());
  for (size_t s = 0; s < want.losses.size(); ++s) {
    EXPECT_EQ(std::memcmp(&want.losses[s], &got.losses[s], sizeof(double)), 0)
        << "step " << s << " loss: cpu " << want.losses[s] << ", device " << got.losses[s];
    EXPECT_EQ(want.correct[s], got.correct[s]) << "step " << s;
    ExpectBitIdentical(want.grads[s], got.grads[s], "step " + std::to_string(s) + " gradient");
    ExpectBitIdentical(want.weights[s], got.weights[s], "step " + std::to_string(s) + " weights");
  }
  EXPECT_EQ(want.eval_loss, got.eval_loss);
  EXPECT_EQ(want.eval_correct, got.eval_correct);
  ExpectBitIdentical(want.forward, got.forward, "forward output");
  // The weights moved (the comparison is not of untouched arrays), and the device did copy.
  EXPECT_NE(want.weights.front(), want.weights.back());
  EXPECT_GT(device.copies_to_device(), 0);
}

TEST(DeviceModel, MlpTrainsAsOnTheCpu) { ExpectSameTraining(MlpCase()); }
TEST(DeviceModel, CnnTrainsAsOnTheCpu) { ExpectSameTraining(CnnCase()); }
TEST(DeviceModel, LstmWithEmbeddingTrainsAsOnTheCpu) { ExpectSameTraining(LstmCase()); }
TEST(DeviceModel, GruAndRnnWithEmbeddingTrainAsOnTheCpu) { ExpectSameTraining(GruCase()); }
TEST(DeviceModel, DropoutTrainsAsOnTheCpu) { ExpectSameTraining(DropoutCase()); }
TEST(DeviceModel, MseRegressionTrainsAsOnTheCpu) { ExpectSameTraining(MseCase()); }

// Inputs and targets already in the device's memory are used where they are; the gradient
// announcements (on_ready) come as on the CPU, with complete device gradients above them.
TEST(DeviceModel, DeviceInputsAndGradientAnnouncements) {
  const ModelCase c{"ready",
                    "layers {type: 'dense' units: 7} layers {type: 'relu'} "
                    "layers {type: 'dense' units: 3} loss: 'mse' init {scheme: 'he' seed: 2}",
                    {5}, 3, 0, "type: 'sgd' learning_rate: 0.1"};
  const v1::ModelSpec spec = ::psgrid::testing::ModelSpecOf(c);
  FakeDeviceBackend device;
  CpuBackend cpu;
  auto on_device = Model::Create(spec, c.input, c.outputs, &device);
  auto on_cpu = Model::Create(spec, c.input, c.outputs, &cpu);
  ASSERT_OK(on_device);
  ASSERT_OK(on_cpu);
  const Batch b = MakeBatch(c, 0, 4);
  Tensor x({4, 5}, &device), values({4, 3}, &device);
  x.CopyFrom(b.x);
  values.CopyFrom(b.values);
  Targets device_targets;
  device_targets.values = &values;
  const int64_t copies_before = device.copies_to_device();
  std::vector<int64_t> device_ready, cpu_ready;
  std::vector<std::vector<float>> partial;
  auto r = (*on_device)->ComputeGradients(x, device_targets, [&](int64_t from) {
    device_ready.push_back(from);
    const Tensor& grads = (*on_device)->parameters().grads();
    std::vector<float> part(grads.size() - from);
    grads.Read(from, part);
    partial.push_back(part);
  });
  ASSERT_OK(r);
  EXPECT_EQ(device.copies_to_device(), copies_before);  // nothing staged
  auto want = (*on_cpu)->ComputeGradients(b.x, TargetsOf(**on_cpu, b),
                                          [&](int64_t from) { cpu_ready.push_back(from); });
  ASSERT_OK(want);
  EXPECT_EQ(r->loss, want->loss);
  EXPECT_EQ(device_ready, cpu_ready);
  ASSERT_EQ(device_ready.size(), 2u);
  EXPECT_EQ(device_ready.back(), 0);
  // Each announced part was already final.
  const std::vector<float> grads = ToVector((*on_cpu)->parameters().grads());
  for (size_t k = 0; k < partial.size(); ++k) {
    ExpectBitIdentical(std::vector<float>(grads.begin() + device_ready[k], grads.end()),
                       partial[k], "part " + std::to_string(k));
  }
  EXPECT_EQ(device.violations(), 0);
}

TEST(DeviceModel, CreateTakesADeviceBackend) {
  FakeDeviceBackend device;
  auto model = Model::Create(::psgrid::testing::MakeModelSpec({{"dense", 2}}), {3}, 2, &device);
  ASSERT_OK(model);
  EXPECT_TRUE((*model)->parameters().values().on_device());
  EXPECT_EQ((*model)->parameters().memory(), &device);
}

}  // namespace
}  // namespace psgrid
