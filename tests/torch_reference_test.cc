// psgrid against PyTorch, the outside reference: the same model, parameters and batch give the
// same loss and gradients as torch.nn.Sequential (computed in float64 there), and momentum SGD
// gives the same weights as torch.optim.SGD. Skipped, saying so, when python3-torch is absent.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/backend/cpu_backend.h"
#include "core/model.h"
#include "core/optimizer.h"
#include "core/rng.h"
#include "proto/job_spec_codec.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

using ::psgrid::testing::MakeModelSpec;
using ::psgrid::testing::RandomBatch;
using ::psgrid::testing::TorchAvailable;
using ::psgrid::testing::WriteRaw;

bool RunTorch(const std::string& dir) {
  return std::system(("/usr/bin/python3 tests/torch_reference.py " + dir).c_str()) == 0;
}

void CompareWithTorch(const v1::ModelSpec& spec, int64_t batch, int64_t in, int64_t out) {
  SCOPED_TRACE(spec.loss());
  CpuBackend backend;
  auto model_or = Model::Create(spec, {in}, out, &backend);
  ASSERT_OK(model_or);
  Model& model = **model_or;
  Rng rng(99);
  for (float& v : model.parameters().values().span()) v = rng.Uniform(-0.5f, 0.5f);
  RandomBatch data(rng, batch, in, out);
  const Tensor& x = data.x;
  auto result = model.ComputeGradients(x, data.targets(model.loss()));
  ASSERT_OK(result);

  const std::string dir = ::psgrid::testing::MakeTempDir("psgrid_torch");
  ASSERT_FALSE(dir.empty());
  std::vector<std::string> layers, params;
  for (const v1::LayerSpec& l : spec.layers()) {
    layers.push_back(absl::StrCat("{\"type\": \"", l.type(), "\", \"units\": ", l.units(), "}"));
  }
  ParameterSet& p = model.parameters();
  for (int i = 0; i < static_cast<int>(p.infos().size()); ++i) {
    const ParamInfo& info = p.infos()[i];
    params.push_back(absl::StrCat("{\"name\": \"", info.name, "\", \"shape\": [",
                                  absl::StrJoin(info.shape, ", "), "]}"));
    WriteRaw(dir + "/param_" + info.name + ".bin", p.Value(i).data(), info.size);
  }
  WriteRaw(dir + "/x.bin", x.data(), x.size());
  WriteRaw(dir + "/labels.bin", data.labels.data(), data.labels.size());
  WriteRaw(dir + "/targets.bin", data.values.data(), data.values.size());
  std::ofstream(dir + "/manifest.json")
      << "{\"layers\": [" << absl::StrJoin(layers, ", ") << "], \"loss\": \"" << spec.loss()
      << "\", \"x_shape\": [" << batch << ", " << in << "], \"params\": ["
      << absl::StrJoin(params, ", ") << "]}";
  ASSERT_TRUE(RunTorch(dir)) << "tests/torch_reference.py failed on " << dir;

  std::ifstream loss_file(dir + "/loss.txt");
  double torch_loss = 0;
  loss_file >> torch_loss;
  EXPECT_NEAR(result->loss, torch_loss, 1e-5 * std::max(1.0, std::abs(torch_loss)));
  const std::vector<float> torch_grads = ::psgrid::testing::ReadRaw<float>(dir + "/grads.bin");
  size_t k = 0;
  for (int i = 0; i < static_cast<int>(p.infos().size()); ++i) {
    Tensor g = p.Grad(i);
    for (int64_t j = 0; j < g.size(); ++j, ++k) {
      ASSERT_LT(k, torch_grads.size());
      EXPECT_NEAR(g[j], torch_grads[k], 1e-5 + 1e-4 * std::abs(torch_grads[k]))
          << p.infos()[i].name << "[" << j << "]";
    }
  }
  EXPECT_EQ(k, torch_grads.size());
}

TEST(TorchReference, MlpGradientsWithCrossEntropyMatchTorch) {
  if (!TorchAvailable()) GTEST_SKIP() << "python3-torch is not installed; skipping the PyTorch comparison";
  CompareWithTorch(MakeModelSpec({{"dense", 32}, {"relu", 0}, {"dense", 16}, {"tanh", 0},
                                  {"dense", 8}, {"sigmoid", 0}, {"dense", 5}}),
                   7, 12, 5);
}

TEST(TorchReference, MlpGradientsWithMseMatchTorch) {
  if (!TorchAvailable()) GTEST_SKIP() << "python3-torch is not installed; skipping the PyTorch comparison";
  CompareWithTorch(MakeModelSpec({{"dense", 9}, {"relu", 0}, {"dense", 3}}, "mse"), 4, 6, 3);
}

struct OptimizerCase {
  const char* yaml;         // our spec (the optimizer: field)
  const char* torch_class;  // torch.optim.<class>
  const char* torch_kwargs;  // JSON
  const char* scheduler = nullptr;  // JSON {"class": lr_scheduler.<class>, "kwargs": {...}}
  double clip_norm = 0;             // torch.nn.utils.clip_grad_norm_ before each step
};

TEST(TorchReference, EveryOptimizerMatchesTorchOptimOnTheSameGradients) {
  if (!TorchAvailable()) GTEST_SKIP() << "python3-torch is not installed; skipping the PyTorch comparison";
  const OptimizerCase cases[] = {
      {"{type: momentum, learning_rate: 0.05, momentum: 0.9}", "SGD",
       R"({"lr": 0.05, "momentum": 0.9})"},
      {"{type: sgd, learning_rate: 0.05, weight_decay: 0.01}", "SGD",
       R"({"lr": 0.05, "weight_decay": 0.01})"},
      {"{type: momentum, learning_rate: 0.05, momentum: 0.9, weight_decay: 0.01}", "SGD",
       R"({"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01})"},
      {"{type: nesterov, learning_rate: 0.05, momentum: 0.9, weight_decay: 0.01}", "SGD",
       R"({"lr": 0.05, "momentum": 0.9, "nesterov": true, "weight_decay": 0.01})"},
      {"{type: adagrad, learning_rate: 0.05, lr_decay: 0.01, weight_decay: 0.01}", "Adagrad",
       R"({"lr": 0.05, "lr_decay": 0.01, "weight_decay": 0.01})"},
      {"{type: rmsprop, learning_rate: 0.01}", "RMSprop", R"({"lr": 0.01})"},
      {"{type: rmsprop, learning_rate: 0.01, alpha: 0.9, momentum: 0.5, weight_decay: 0.01}",
       "RMSprop", R"({"lr": 0.01, "alpha": 0.9, "momentum": 0.5, "weight_decay": 0.01})"},
      {"{type: adam}", "Adam", R"({})"},
      {"{type: adam, learning_rate: 0.01, betas: [0.8, 0.99], eps: 1e-6, weight_decay: 0.01}",
       "Adam", R"({"lr": 0.01, "betas": [0.8, 0.99], "eps": 1e-6, "weight_decay": 0.01})"},
      {"{type: adamw, learning_rate: 0.01}", "AdamW", R"({"lr": 0.01})"},
      {"{type: sgd, learning_rate: 0.1, schedule: {type: step, step_size: 2, gamma: 0.5}}", "SGD",
       R"({"lr": 0.1})", R"({"class": "StepLR", "kwargs": {"step_size": 2, "gamma": 0.5}})"},
      {"{type: adam, learning_rate: 0.01, schedule: {type: cosine, total_steps: 6, "
       "min_lr: 0.001}}",
       "Adam", R"({"lr": 0.01})",
       R"({"class": "CosineAnnealingLR", "kwargs": {"T_max": 6, "eta_min": 0.001}})"},
      {"{type: momentum, learning_rate: 0.05, momentum: 0.9, schedule: {warmup_steps: 3}}", "SGD",
       R"({"lr": 0.05, "momentum": 0.9})",
       R"({"class": "LinearLR", "kwargs": {"start_factor": 0.3333333333333333, "total_iters": 2}})"},
      // Gradients of norm ~4 (50 values in [-1, 1)): clipped to 1.5.
      {"{type: adam, learning_rate: 0.01, clip_norm: 1.5}", "Adam", R"({"lr": 0.01})", nullptr,
       1.5},
      {"{type: momentum, learning_rate: 0.05, momentum: 0.9, clip_norm: 1.5}", "SGD",
       R"({"lr": 0.05, "momentum": 0.9})", nullptr, 1.5},
  };
  constexpr int64_t kN = 50;
  constexpr int kSteps = 6;
  for (const OptimizerCase& c : cases) {
    SCOPED_TRACE(c.yaml);
    Rng rng(5);
    Tensor w({kN});
    for (float& v : w.span()) v = rng.Uniform(-1.0f, 1.0f);
    std::vector<float> grads(kN * kSteps);
    for (float& g : grads) g = rng.Uniform(-1.0f, 1.0f);
    const std::string dir = ::psgrid::testing::MakeTempDir("psgrid_torch");
    ASSERT_FALSE(dir.empty());
    WriteRaw(dir + "/w.bin", w.data(), kN);
    WriteRaw(dir + "/g.bin", grads.data(), grads.size());
    std::ofstream(dir + "/manifest.json")
        << "{\"n\": " << kN << ", \"optimizer\": {\"class\": \"" << c.torch_class
        << "\", \"kwargs\": " << c.torch_kwargs << ", \"steps\": " << kSteps
        << (c.scheduler != nullptr ? std::string(", \"scheduler\": ") + c.scheduler : "")
        << (c.clip_norm > 0 ? absl::StrCat(", \"clip_norm\": ", c.clip_norm) : "") << "}}";
    ASSERT_TRUE(RunTorch(dir));

    auto spec = ParseJobSpec(std::string("model: {layers: [{type: dense, units: 1}]}\n"
                                         "optimizer: ") + c.yaml + "\n",
                             "case");
    ASSERT_OK(spec);
    CpuBackend backend;
    auto opt = CreateOptimizer(spec->optimizer(), kN);
    ASSERT_OK(opt);
    for (int s = 0; s < kSteps; ++s) {
      Tensor g = Tensor::View(grads.data() + s * kN, {kN});
      (*opt)->Step(backend, w, g,
                   ClippedGradScale(backend, g, 1.0f, spec->optimizer().clip_norm()));
    }
    const std::vector<float> torch_w = ::psgrid::testing::ReadRaw<float>(dir + "/weights.bin");
    ASSERT_EQ(torch_w.size(), static_cast<size_t>(kN));
    for (int64_t i = 0; i < kN; ++i) EXPECT_NEAR(w[i], torch_w[i], 1e-6) << "w[" << i << "]";
  }
}

}  // namespace
}  // namespace psgrid
