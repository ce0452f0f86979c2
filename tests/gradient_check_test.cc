// Numerical gradient checks: every layer and both losses against central differences, the
// difference quotients taken in double precision, on random inputs and odd batch sizes.
#include <cmath>
#include <memory>

#include "core/backend/cpu_backend.h"
#include "core/layers/layer.h"
#include "core/loss.h"
#include "core/model.h"
#include "core/rng.h"
#include "tests/gradient_check.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

using ::psgrid::testing::MakeModelSpec;
using ::psgrid::testing::RandomBatch;

constexpr double kStep = 1e-2;  // perturbation; float32 forward noise limits how small it can be

// Fills with values in ±[0.05, 1): away from ReLU's kink at 0 by more than the step.
void FillAwayFromZero(Rng& rng, Tensor& t) {
  for (float& v : t.span()) {
    const float mag = rng.Uniform(0.05f, 1.0f);
    v = rng.Below(2) ? mag : -mag;
  }
}

void CheckLayer(const v1::LayerSpec& spec, const Shape& sample, int64_t batch, uint64_t seed) {
  SCOPED_TRACE(spec.type() + " batch " + std::to_string(batch));
  CpuBackend backend;
  Rng rng(seed);
  ::psgrid::testing::BuiltLayer built;
  ASSERT_OK(::psgrid::testing::BuildLayer(spec, sample, &built));
  Layer& layer = *built.layer;
  ParameterSet& params = built.params;
  for (float& v : params.values().span()) v = rng.Uniform(-1.0f, 1.0f);

  Shape in_shape = sample;
  in_shape.insert(in_shape.begin(), batch);
  Tensor x(in_shape);
  FillAwayFromZero(rng, x);
  Tensor y;
  layer.Forward(backend, x, &y);
  Tensor r(y.shape());
  for (float& v : r.span()) v = rng.Uniform(-1.0f, 1.0f);
  Tensor dx;
  layer.Backward(backend, x, y, r, &dx);
  ::psgrid::testing::ExpectLayerGradientsMatchDifferences(backend, layer, params, x, r, dx, kStep);
}

v1::LayerSpec Spec(const std::string& type, int units = 0) {
  v1::LayerSpec s;
  s.set_type(type);
  s.set_units(units);
  return s;
}

TEST(GradientCheck, Dense) {
  CheckLayer(Spec("dense", 5), {7}, 3, 1);
  CheckLayer(Spec("dense", 1), {3}, 1, 2);
  CheckLayer(Spec("dense", 4), {2, 3}, 5, 3);  // input flattened per sample
}

TEST(GradientCheck, Activations) {
  for (const char* type : {"relu", "sigmoid", "tanh"}) {
    CheckLayer(Spec(type), {6}, 1, 4);
    CheckLayer(Spec(type), {3, 5}, 7, 5);
  }
}

// ∂loss/∂output of a loss against central differences of the loss itself.
void CheckLoss(const std::string& name, int64_t batch, int64_t width, uint64_t seed) {
  SCOPED_TRACE(name + " batch " + std::to_string(batch));
  CpuBackend backend;
  Rng rng(seed);
  auto loss_or = CreateLoss(name);
  ASSERT_OK(loss_or);
  const Loss& loss = **loss_or;
  Tensor out({batch, width});
  for (float& v : out.span()) v = rng.Uniform(-3.0f, 3.0f);
  std::vector<int32_t> labels(batch);
  for (int32_t& l : labels) l = static_cast<int32_t>(rng.Below(width));
  Tensor values({batch, width});
  for (float& v : values.span()) v = rng.Uniform(-1.0f, 1.0f);
  Targets targets;
  if (loss.uses_labels()) {
    targets.labels = labels;
  } else {
    targets.values = &values;
  }
  Tensor grad;
  ASSERT_OK(loss.Compute(backend, out, targets, &grad));
  for (int64_t i = 0; i < out.size(); ++i) {
    const float saved = out[i];
    out[i] = saved + kStep;
    const double up = loss.Compute(backend, out, targets, nullptr)->loss;
    out[i] = saved - kStep;
    const double down = loss.Compute(backend, out, targets, nullptr)->loss;
    out[i] = saved;
    const double numeric = (up - down) / (2 * kStep);
    EXPECT_NEAR(grad[i], numeric, 1e-4 + 1e-2 * std::abs(numeric)) << "output[" << i << "]";
  }
}

TEST(GradientCheck, SoftmaxCrossEntropy) {
  CheckLoss("softmax_cross_entropy", 1, 10, 6);
  CheckLoss("softmax_cross_entropy", 7, 3, 7);
}

TEST(GradientCheck, MeanSquaredError) {
  CheckLoss("mse", 1, 1, 8);
  CheckLoss("mse", 5, 3, 9);
}

// The whole model: layers and loss together, every parameter.
void CheckModel(const v1::ModelSpec& spec, int64_t batch, int64_t in, int64_t out, uint64_t seed) {
  SCOPED_TRACE(spec.loss() + " batch " + std::to_string(batch));
  CpuBackend backend;
  auto model_or = Model::Create(spec, {in}, out, &backend);
  ASSERT_OK(model_or);
  Model& model = **model_or;
  Rng rng(seed);
  RandomBatch batch_data(rng, batch, in, out);
  Tensor& x = batch_data.x;
  FillAwayFromZero(rng, x);
  const Targets targets = batch_data.targets(model.loss());
  ASSERT_OK(model.ComputeGradients(x, targets));
  ::psgrid::testing::ExpectModelGradientsMatchDifferences(model, x, targets, kStep);
}

TEST(GradientCheck, WholeModelWithCrossEntropy) {
  auto spec = MakeModelSpec({{"dense", 6}, {"tanh", 0}, {"dense", 5}, {"sigmoid", 0}, {"dense", 4}});
  CheckModel(spec, 1, 3, 4, 10);
  CheckModel(spec, 9, 3, 4, 11);
}

TEST(GradientCheck, WholeModelWithMeanSquaredError) {
  auto spec = MakeModelSpec({{"dense", 5}, {"sigmoid", 0}, {"dense", 2}}, "mse");
  CheckModel(spec, 1, 4, 2, 12);
  CheckModel(spec, 6, 4, 2, 13);
}

// A wrong backward pass must be caught: the check is not vacuous.
TEST(GradientCheck, DetectsAWrongGradient) {
  CpuBackend backend;
  auto model = Model::Create(MakeModelSpec({{"dense", 3}}), {2}, 3, &backend);
  ASSERT_OK(model);
  Tensor x({1, 2}, std::vector<float>{0.5f, -1.0f});
  std::vector<int32_t> labels = {1};
  Targets targets;
  targets.labels = labels;
  ASSERT_OK((*model)->ComputeGradients(x, targets));
  float& w = (*model)->parameters().values()[0];
  const float saved = w;
  w = saved + kStep;
  const double up = (*model)->Evaluate(x, targets)->loss;
  w = saved - kStep;
  const double down = (*model)->Evaluate(x, targets)->loss;
  const double numeric = (up - down) / (2 * kStep);
  const double wrong = (*model)->parameters().grads()[0] * 1.1;
  EXPECT_GT(std::abs(wrong - numeric), 2e-4 + 2e-2 * std::abs(numeric));
}

}  // namespace
}  // namespace psgrid
