// Models on a GPU against the CPU: for every case of tests/model_cases.h (dense, conv, pooling,
// flatten, dropout, rnn, lstm, gru, embedding, both losses) the first step's loss, correct count
// and parameter gradient of a model on CUDA match those of the same model on the CPU within
// float32 tolerance (cuBLAS and the tree reductions sum in another order), as does the loss after
// a few steps with the case's optimizer on the device. Labelled gpu; skips, saying why, where no
// CUDA device is usable.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/backend/cpu_backend.h"
#include "core/backend/registry.h"
#include "core/model.h"
#include "core/optimizer.h"
#include "core/pinned_buffer.h"
#include "tests/model_cases.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

using ::psgrid::testing::AllModelCases;
using ::psgrid::testing::Batch;
using ::psgrid::testing::MakeBatch;
using ::psgrid::testing::ModelCase;
using ::psgrid::testing::TargetsOf;
using ::psgrid::testing::ToVector;

class GpuModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto backend = CreateBackend("cuda");
    if (!backend.ok()) GTEST_SKIP() << "no CUDA device to test on: " << backend.status().message();
    gpu_ = std::move(*backend);
  }

  std::unique_ptr<Backend> gpu_;
  CpuBackend cpu_;
};

// Each of `got` within atol + rtol·max|want| of `want`.
void ExpectClose(const std::vector<float>& want, const std::vector<float>& got,
                 const std::string& what, double rtol = 1e-3, double atol = 1e-5) {
  ASSERT_EQ(want.size(), got.size()) << what;
  double scale = 0;
  for (float v : want) scale = std::max(scale, static_cast<double>(std::abs(v)));
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::abs(static_cast<double>(got[i]) - want[i]) > atol + rtol * scale) {
      ADD_FAILURE() << what << "[" << i << "]: cpu " << want[i] << ", gpu " << got[i]
                    << " (largest |cpu value| " << scale << ")";
      return;
    }
  }
}

TEST_F(GpuModelTest, EveryModelCaseMatchesTheCpu) {
  for (const ModelCase& c : AllModelCases()) {
    SCOPED_TRACE(c.name);
    const v1::ModelSpec spec = ::psgrid::testing::ModelSpecOf(c);
    auto on_gpu = Model::Create(spec, c.input, c.outputs, gpu_.get());
    auto on_cpu = Model::Create(spec, c.input, c.outputs, &cpu_);
    ASSERT_OK(on_gpu);
    ASSERT_OK(on_cpu);
    Model& g = **on_gpu;
    Model& h = **on_cpu;
    ASSERT_TRUE(g.parameters().values().on_device());
    ExpectClose(ToVector(h.parameters().values()), ToVector(g.parameters().values()),
                "initial weights", 0, 0);
    auto opt_g = CreateOptimizer(::psgrid::testing::OptimizerSpecOf(c),
                                 g.parameters().total_size(), 0, gpu_.get());
    auto opt_h = CreateOptimizer(::psgrid::testing::OptimizerSpecOf(c),
                                 h.parameters().total_size(), 0, &cpu_);
    ASSERT_OK(opt_g);
    ASSERT_OK(opt_h);
    for (int step = 0; step < 3; ++step) {
      const Batch b = MakeBatch(c, step, 8);
      auto rg = g.ComputeGradients(b.x, TargetsOf(g, b));
      auto rh = h.ComputeGradients(b.x, TargetsOf(h, b));
      ASSERT_OK(rg);
      ASSERT_OK(rh);
      EXPECT_NEAR(rg->loss, rh->loss, 1e-4 * std::max(1.0, std::abs(rh->loss))) << "step " << step;
      if (step == 0) {
        EXPECT_EQ(rg->correct, rh->correct);
        ExpectClose(ToVector(h.parameters().grads()), ToVector(g.parameters().grads()),
                    "first step gradient");
      }
      (*opt_g)->Step(*gpu_, g.parameters().values(), g.parameters().grads());
      (*opt_h)->Step(cpu_, h.parameters().values(), h.parameters().grads());
    }
    const Batch b = MakeBatch(c, 99, 5);
    auto eg = g.Evaluate(b.x, TargetsOf(g, b));
    auto eh = h.Evaluate(b.x, TargetsOf(h, b));
    ASSERT_OK(eg);
    ASSERT_OK(eh);
    EXPECT_NEAR(eg->loss, eh->loss, 1e-3 * std::max(1.0, std::abs(eh->loss)));
  }
}

// The memory methods this issue added: device-to-device copies, and device-to-host copies into
// pinned memory (one DMA) and into plain memory (staged).
TEST_F(GpuModelTest, CopyOnDeviceAndPinnedCopies) {
  constexpr int64_t kN = (int64_t{3} << 20) + 5;  // > the backend's 4 MiB staging chunk
  Tensor host({kN});
  for (int64_t i = 0; i < kN; ++i) host[i] = static_cast<float>(i % 1000) - 500.0f;
  Tensor a({kN}, gpu_.get()), b({kN}, gpu_.get());
  a.CopyFrom(host);
  b.CopyFrom(a);  // CopyOnDevice
  PinnedBuffer pinned(gpu_.get(), kN);
  Tensor back = pinned.View({kN});
  b.Read(0, back.span());
  EXPECT_EQ(0, std::memcmp(back.data(), host.data(), kN * sizeof(float)));
  const Tensor plain = b.ToHost();
  EXPECT_EQ(0, std::memcmp(plain.data(), host.data(), kN * sizeof(float)));
  b.SetZero();
  b.Read(0, back.span());
  EXPECT_TRUE(std::all_of(back.span().begin(), back.span().end(), [](float v) { return v == 0; }));
}

}  // namespace
}  // namespace psgrid
