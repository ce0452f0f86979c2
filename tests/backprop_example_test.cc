// The worked example of the backpropagation chapter: two ReLU neurons, one gradient step.
//
// x = (0.2, 0.1, 0.4) plus a bias input 1.0. Neuron a: weights (0.1, 0.2, 0.3), bias weight
// 0.6, ReLU. Neuron b: weight 0.4 from a, bias weight 0.5, ReLU. Target 1.0.
// The chapter's error is E = ½(y − ŷ)²; psgrid's mse is torch.nn.MSELoss, (y − ŷ)² = 2E, so its
// gradients are twice the chapter's and a step with learning rate 0.3 is the chapter's step
// with 0.6.
#include "core/backend/cpu_backend.h"
#include "core/model.h"
#include "core/optimizer.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

using ::psgrid::testing::MakeModelSpec;

TEST(BackpropChapterExample, ForwardErrorTermsAndOneStepMatchTheChapter) {
  CpuBackend backend;
  auto model_or = Model::Create(MakeModelSpec({{"dense", 1}, {"relu", 0}, {"dense", 1}, {"relu", 0}}, "mse"),
                                {3}, 1, &backend);
  ASSERT_OK(model_or);
  Model& model = **model_or;
  ParameterSet& p = model.parameters();
  Tensor wa = p.Value(p.Find("0.weight"));
  wa[0] = 0.1f, wa[1] = 0.2f, wa[2] = 0.3f;
  p.Value(p.Find("0.bias"))[0] = 0.6f;
  p.Value(p.Find("2.weight"))[0] = 0.4f;
  p.Value(p.Find("2.bias"))[0] = 0.5f;

  Tensor x({1, 3}, std::vector<float>{0.2f, 0.1f, 0.4f});
  Tensor y({1, 1}, std::vector<float>{1.0f});
  Targets targets;
  targets.values = &y;

  auto out = model.Forward(x);
  ASSERT_OK(out);
  EXPECT_NEAR((**out)[0], 0.804, 1e-6);  // ŷ = relu(0.4 · 0.76 + 0.5)

  auto result = model.ComputeGradients(x, targets);
  ASSERT_OK(result);
  const double chapter_error = result->loss / 2;
  EXPECT_NEAR(chapter_error, 0.019208, 1e-6);

  // With batch 1 the bias gradient of a neuron is its error term δ (times 2 for mse).
  const double delta_b = p.Grad(p.Find("2.bias"))[0] / 2;
  const double delta_a = p.Grad(p.Find("0.bias"))[0] / 2;
  EXPECT_NEAR(delta_b, -0.196, 1e-6);
  EXPECT_NEAR(delta_a, -0.0784, 1e-6);
  // z_a = 0.76 is what the weight from a to b multiplies: ∂E/∂w_b1 = δ_b · 0.76.
  EXPECT_NEAR(p.Grad(p.Find("2.weight"))[0] / 2, -0.196 * 0.76, 1e-6);

  v1::OptimizerSpec sgd;
  sgd.set_type("sgd");
  sgd.set_learning_rate(0.3);  // = the chapter's 0.6 on E = mse / 2
  auto opt = CreateOptimizer(sgd, p.total_size());
  ASSERT_OK(opt);
  (*opt)->Step(backend, p.values(), p.grads());
  EXPECT_NEAR(p.Value(p.Find("2.weight"))[0], 0.489376, 1e-6);  // w_b1
  EXPECT_NEAR(p.Value(p.Find("0.weight"))[0], 0.109408, 1e-6);  // w_a1
}

}  // namespace
}  // namespace psgrid
