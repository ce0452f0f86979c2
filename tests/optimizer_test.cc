// Optimizer update rules against values computed by hand, step by step.
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

TEST(Optimizer, MomentumAccumulatesVelocityOverSteps) {
  CpuBackend backend;
  auto opt = CreateOptimizer(Spec("momentum", 0.1, 0.9), 1);
  ASSERT_OK(opt);
  Tensor w({1}, std::vector<float>{1.0f});
  // v1 = -0.1*1 = -0.1, w = 0.9; v2 = 0.9*-0.1 - 0.1*2 = -0.29, w = 0.61;
  // v3 = 0.9*-0.29 - 0.1*(-1) = -0.161, w = 0.449.
  const float grads[] = {1.0f, 2.0f, -1.0f};
  const float expected_w[] = {0.9f, 0.61f, 0.449f};
  const float expected_v[] = {-0.1f, -0.29f, -0.161f};
  for (int i = 0; i < 3; ++i) {
    Tensor g({1}, std::vector<float>{grads[i]});
    (*opt)->Step(backend, w, g);
    EXPECT_NEAR(w[0], expected_w[i], 1e-6) << "step " << i + 1;
    auto state = (*opt)->State();
    ASSERT_EQ(state.size(), 1u);
    EXPECT_EQ(state[0].first, "velocity");
    EXPECT_NEAR((*state[0].second)[0], expected_v[i], 1e-6) << "step " << i + 1;
  }
}

TEST(Optimizer, AStepAppliedInRangesEqualsTheWholeStep) {
  CpuBackend backend;
  for (const char* type : {"sgd", "momentum"}) {
    SCOPED_TRACE(type);
    auto whole = CreateOptimizer(Spec(type, 0.1, 0.9), 10);
    auto ranged = CreateOptimizer(Spec(type, 0.1, 0.9), 10);
    ASSERT_OK(whole);
    ASSERT_OK(ranged);
    Tensor a({10}), b({10}), g({10});
    for (int i = 0; i < 10; ++i) a[i] = b[i] = 0.1f * static_cast<float>(i) - 0.3f;
    for (int step = 0; step < 3; ++step) {
      for (int i = 0; i < 10; ++i) g[i] = static_cast<float>((i * 7 + step * 3) % 11) - 5.0f;
      (*whole)->Step(backend, a, g, 0.5f);
      // From the top down, as the server applies the layers of a gradient arriving in parts.
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
