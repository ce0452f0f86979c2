// Optimizer update rules against values computed by hand, step by step.
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "core/backend/cpu_backend.h"
#include "core/optimizer.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

v1::OptimizerSpec Spec(const std::string& type, double lr, double momentum = 0) {
  v1::OptimizerSpec s;
  s.set_type(type);
  s.set_learning_rate(lr);
  s.set_momentum(momentum);
  return s;
}

TEST(Optimizer, SgdSubtractsTheScaledGradient) {
  CpuBackend backend;
  auto opt = CreateOptimizer(Spec("sgd", 0.5), 2);
  ASSERT_OK(opt);
  Tensor w({2}, std::vector<float>{1.0f, -2.0f});
  Tensor g({2}, std::vector<float>{0.2f, -0.4f});
  (*opt)->Step(backend, w, g);
  EXPECT_FLOAT_EQ(w[0], 0.9f);
  EXPECT_FLOAT_EQ(w[1], -1.8f);
  EXPECT_TRUE((*opt)->State().empty());
}

TEST(Optimizer, MomentumAccumulatesItsBufferOverSteps) {
  CpuBackend backend;
  auto opt = CreateOptimizer(Spec("momentum", 0.1, 0.9), 1);
  ASSERT_OK(opt);
  Tensor w({1}, std::vector<float>{1.0f});
  // b1 = 1, w = 1 - 0.1*1 = 0.9; b2 = 0.9*1 + 2 = 2.9, w = 0.61;
  // b3 = 0.9*2.9 - 1 = 1.61, w = 0.449 (the velocity form: v = -0.1*b).
  const float grads[] = {1.0f, 2.0f, -1.0f};
  const float expected_w[] = {0.9f, 0.61f, 0.449f};
  const float expected_b[] = {1.0f, 2.9f, 1.61f};
  for (int i = 0; i < 3; ++i) {
    Tensor g({1}, std::vector<float>{grads[i]});
    (*opt)->Step(backend, w, g);
    EXPECT_NEAR(w[0], expected_w[i], 1e-6) << "step " << i + 1;
    auto state = (*opt)->State();
    ASSERT_EQ(state.size(), 1u);
    EXPECT_EQ(state[0].first, "momentum_buffer");
    EXPECT_NEAR((*state[0].second)[0], expected_b[i], 1e-6) << "step " << i + 1;
  }
}

// By hand, w = 1, gradients 2 then -1:
//   adam (lr 0.1): m = 0.2, v = 0.004, m^ = 2, v^ = 4 → w = 1 − 0.1·2/2 = 0.9; then m = 0.08,
//     v = 0.004996, m^ = 0.08/0.19, v^ = 0.004996/0.001999 → w = 0.8733663.
//   adagrad (lr 0.1): s = 4 → w = 1 − 0.1·2/2 = 0.9; s = 5 → w = 0.9 + 0.1/√5 = 0.9447214.
//   rmsprop (lr 0.01, α 0.99): a = 0.04 → w = 1 − 0.01·2/0.2 = 0.9; a = 0.0496 →
//     w = 0.9 + 0.01/√0.0496 = 0.9449013.
TEST(Optimizer, AdaptiveRulesMatchHandComputedSteps) {
  CpuBackend backend;
  struct Case {
    const char* type;
    double lr;
    float after1, after2;
  } cases[] = {{"adam", 0.1, 0.9f, 0.8733663f},
               {"adagrad", 0.1, 0.9f, 0.9447214f},
               {"rmsprop", 0.01, 0.9f, 0.9449013f}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.type);
    v1::OptimizerSpec spec;
    spec.set_type(c.type);
    spec.set_learning_rate(c.lr);
    auto opt = CreateOptimizer(spec, 1);
    ASSERT_OK(opt);
    Tensor w({1}, std::vector<float>{1.0f});
    (*opt)->Step(backend, w, Tensor({1}, std::vector<float>{2.0f}));
    EXPECT_NEAR(w[0], c.after1, 1e-6);
    (*opt)->Step(backend, w, Tensor({1}, std::vector<float>{-1.0f}));
    EXPECT_NEAR(w[0], c.after2, 1e-6);
    EXPECT_EQ((*opt)->step(), 2);
  }
  // AdamW with no gradient only decays: w·(1 − lr·λ) with torch's default λ = 0.01.
  v1::OptimizerSpec adamw;
  adamw.set_type("adamw");
  adamw.set_learning_rate(0.1);
  auto opt = CreateOptimizer(adamw, 1);
  ASSERT_OK(opt);
  Tensor w({1}, std::vector<float>{2.0f});
  (*opt)->Step(backend, w, Tensor({1}, std::vector<float>{0.0f}));
  EXPECT_NEAR(w[0], 2.0f * (1 - 0.1f * 0.01f), 1e-7);
}

TEST(Optimizer, FieldsAnOptimizerDoesNotUseOrCannotTakeAreRefusedByName) {
  auto make = [](const std::string& yaml) {
    v1::OptimizerSpec spec;
    spec.set_learning_rate(0.1);
    std::vector<std::string> parts = absl::StrSplit(yaml, ' ');
    spec.set_type(parts[0]);
    for (size_t i = 1; i + 1 < parts.size(); i += 2) {
      const double v = std::stod(parts[i + 1]);
      if (parts[i] == "momentum") spec.set_momentum(v);
      if (parts[i] == "eps") spec.set_eps(v);
      if (parts[i] == "alpha") spec.set_alpha(v);
      if (parts[i] == "weight_decay") spec.set_weight_decay(v);
      if (parts[i] == "beta") spec.add_betas(v);
      if (parts[i] == "lr_decay") spec.set_lr_decay(v);
      if (parts[i] == "clip_norm") spec.set_clip_norm(v);
    }
    return CreateOptimizer(spec, 1).status();
  };
  const std::pair<const char*, const char*> refused[] = {
      {"sgd momentum 0.9", "optimizer.momentum: is not used by sgd"},
      {"nesterov", "optimizer.momentum"},
      {"adam beta 0.9", "optimizer.betas"},
      {"adam beta 0.9 beta 1.5", "optimizer.betas"},
      {"sgd beta 0.9 beta 0.99", "optimizer.betas: is not used by sgd"},
      {"adam eps -1", "optimizer.eps"},
      {"adam alpha 0.9", "optimizer.alpha"},
      {"rmsprop alpha 1.5", "optimizer.alpha"},
      {"adamw weight_decay -0.1", "optimizer.weight_decay"},
      {"adam lr_decay 0.1", "optimizer.lr_decay"},
      {"sgd clip_norm -1", "optimizer.clip_norm"}};
  for (const auto& [input, message] : refused) {
    SCOPED_TRACE(input);
    EXPECT_STATUS(make(input), absl::StatusCode::kInvalidArgument, message);
  }
  EXPECT_OK(make("rmsprop momentum 0.5 alpha 0.9 eps 1e-6 weight_decay 0.1"));
}

TEST(Optimizer, SchedulesGiveTheLearningRateOfEachStep) {
  v1::ScheduleSpec step;
  step.set_type("step");
  step.set_step_size(2);
  step.set_gamma(0.5);
  v1::ScheduleSpec warmup;
  warmup.set_warmup_steps(3);
  v1::ScheduleSpec cosine;
  cosine.set_type("cosine");
  // t = 1, 2, ...: step halves every 2 steps; warm-up climbs over 3; cosine over 4 steps to 0.
  const double expect_step[] = {1, 1, 0.5, 0.5, 0.25};
  const double expect_warmup[] = {1.0 / 3, 2.0 / 3, 1, 1, 1};
  const double expect_cosine[] = {1, 0.8535534, 0.5, 0.1464466, 0, 0};
  for (int t = 1; t <= 5; ++t) {
    EXPECT_NEAR(ScheduleFactor(step, 1.0, 0, t), expect_step[t - 1], 1e-7) << t;
    EXPECT_NEAR(ScheduleFactor(warmup, 1.0, 0, t), expect_warmup[t - 1], 1e-7) << t;
  }
  for (int t = 1; t <= 6; ++t) {
    EXPECT_NEAR(ScheduleFactor(cosine, 1.0, 4, t), expect_cosine[t - 1], 1e-7) << t;
  }
  // A cosine without a length (none given, none from the job) is refused by name.
  v1::OptimizerSpec spec;
  spec.set_type("sgd");
  spec.set_learning_rate(0.1);
  *spec.mutable_schedule() = cosine;
  EXPECT_STATUS(CreateOptimizer(spec, 1), absl::StatusCode::kInvalidArgument,
                "optimizer.schedule.total_steps");
  EXPECT_OK(CreateOptimizer(spec, 1, /*total_steps=*/100));
  spec.mutable_schedule()->set_type("exponential");
  EXPECT_STATUS(CreateOptimizer(spec, 1, 100), absl::StatusCode::kInvalidArgument,
                "optimizer.schedule.type");
}

TEST(Optimizer, AStepAppliedInRangesEqualsTheWholeStep) {
  CpuBackend backend;
  for (const char* type : {"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"}) {
    SCOPED_TRACE(type);
    const std::string t = type;
    const double momentum = t == "momentum" || t == "nesterov" || t == "rmsprop" ? 0.9 : 0.0;
    auto whole = CreateOptimizer(Spec(type, 0.1, momentum), 10);
    auto ranged = CreateOptimizer(Spec(type, 0.1, momentum), 10);
    ASSERT_OK(whole);
    ASSERT_OK(ranged);
    Tensor a({10}), b({10}), g({10});
    for (int i = 0; i < 10; ++i) a[i] = b[i] = 0.1f * static_cast<float>(i) - 0.3f;
    for (int step = 0; step < 3; ++step) {
      for (int i = 0; i < 10; ++i) g[i] = static_cast<float>((i * 7 + step * 3) % 11) - 5.0f;
      (*whole)->Step(backend, a, g, 0.5f);
      // From the top down, as the server applies the layers of a gradient arriving in parts.
      (*ranged)->BeginStep(step + 1);
      (*ranged)->Update(backend, b, g, 0.5f, 7, 10);
      (*ranged)->Update(backend, b, g, 0.5f, 2, 7);
      (*ranged)->Update(backend, b, g, 0.5f, 0, 2);
      for (int i = 0; i < 10; ++i) EXPECT_EQ(a[i], b[i]) << "step " << step << " element " << i;
    }
  }
}

TEST(Optimizer, BadSpecsNameTheField) {
  EXPECT_STATUS(CreateOptimizer(Spec("adamax", 0.1), 1), absl::StatusCode::kInvalidArgument,
                "optimizer.type");
  EXPECT_STATUS(CreateOptimizer(Spec("sgd", 0), 1), absl::StatusCode::kInvalidArgument,
                "optimizer.learning_rate");
  EXPECT_STATUS(CreateOptimizer(Spec("momentum", 0.1, -0.5), 1),
                absl::StatusCode::kInvalidArgument, "optimizer.momentum");
}

}  // namespace
}  // namespace psgrid
