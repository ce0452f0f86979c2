// conv2d, maxpool2d, avgpool2d, flatten and dropout: numerical gradient checks (layers and a
// whole CNN), output shapes, spec errors, dropout's statistics and reproducibility, and parity
// with torch.nn.functional (skipped, saying so, when /usr/bin/python3 has no torch).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/backend/cpu_backend.h"
#include "core/layers/dropout.h"
#include "core/layers/layer.h"
#include "core/model.h"
#include "core/rng.h"
#include "tests/gradient_check.h"
#include "tests/test_util.h"

#ifndef PSGRID_SOURCE_DIR
#define PSGRID_SOURCE_DIR "."
#endif

namespace psgrid {
namespace {

using ::psgrid::testing::BuildLayer;
using ::psgrid::testing::BuiltLayer;
using ::psgrid::testing::WriteRaw;

// ---------------------------------------------------------------------------------------------
// Spec helpers

struct ConvConfig {
  int64_t channels, height, width;
  int filters, kernel, stride, padding;
  bool bias;
};

std::string Describe(const ConvConfig& c) {
  return absl::StrCat("conv2d in [", c.channels, ", ", c.height, ", ", c.width, "] filters ",
                      c.filters, " kernel ", c.kernel, " stride ", c.stride, " padding ",
                      c.padding, c.bias ? " bias" : " no bias");
}

v1::LayerSpec ConvSpec(int filters, int kernel, int stride = 0, int padding = 0,
                       int bias = -1) {  // bias: -1 unset, 0 false, 1 true
  v1::LayerSpec s;
  s.set_type("conv2d");
  s.set_filters(filters);
  s.set_kernel(kernel);
  s.set_stride(stride);
  s.set_padding(padding);
  if (bias >= 0) s.set_bias(bias == 1);
  return s;
}

v1::LayerSpec PoolSpec(const std::string& type, int size, int stride = 0) {
  v1::LayerSpec s;
  s.set_type(type);
  s.set_size(size);
  s.set_stride(stride);
  return s;
}

v1::LayerSpec TypeSpec(const std::string& type) {
  v1::LayerSpec s;
  s.set_type(type);
  return s;
}

v1::LayerSpec DropoutSpec(double rate) {
  v1::LayerSpec s;
  s.set_type("dropout");
  s.set_rate(rate);
  return s;
}

v1::LayerSpec DenseSpec(int units) {
  v1::LayerSpec s;
  s.set_type("dense");
  s.set_units(units);
  return s;
}

v1::ModelSpec ModelOf(const std::vector<v1::LayerSpec>& layers, uint64_t seed = 1) {
  v1::ModelSpec m;
  for (const v1::LayerSpec& l : layers) *m.add_layers() = l;
  m.set_loss("softmax_cross_entropy");
  m.mutable_init()->set_scheme("he");
  m.mutable_init()->set_seed(seed);
  return m;
}

Shape Batched(int64_t batch, Shape sample) {
  sample.insert(sample.begin(), batch);
  return sample;
}

// ---------------------------------------------------------------------------------------------
// Numerical gradient checks: central differences of L = Σ r ⊙ layer(x), summed in double.

constexpr double kStep = 1e-2;

void FillUniform(Rng& rng, Tensor& t, float lo = -1.0f, float hi = 1.0f) {
  for (float& v : t.span()) v = rng.Uniform(lo, hi);
}

// Distinct values far apart (at least 4·kStep): a max-pooling window's winner does not change
// under a perturbation of kStep.
void FillDistinct(Rng& rng, Tensor& t) {
  std::vector<int64_t> order(t.size());
  std::iota(order.begin(), order.end(), 0);
  for (int64_t i = t.size() - 1; i > 0; --i) {
    std::swap(order[i], order[rng.Below(static_cast<uint64_t>(i + 1))]);
  }
  for (int64_t i = 0; i < t.size(); ++i) {
    t[i] = 0.05f * static_cast<float>(order[i] - t.size() / 2);
  }
}

struct CheckOptions {
  bool training = true;
  bool distinct_inputs = false;                      // max pooling
  std::function<void(Layer&)> before_forward;       // e.g. replay dropout's mask
};

void CheckLayerGradients(const v1::LayerSpec& spec, const Shape& sample, int64_t batch,
                         uint64_t seed, const CheckOptions& options = {}) {
  CpuBackend backend;
  Rng rng(seed);
  BuiltLayer built;
  ASSERT_OK(BuildLayer(spec, sample, &built, seed));
  Layer& layer = *built.layer;
  ParameterSet& params = built.params;
  layer.SetTraining(options.training);
  FillUniform(rng, params.values());

  Tensor x(Batched(batch, sample));
  if (options.distinct_inputs) {
    FillDistinct(rng, x);
  } else {
    FillUniform(rng, x);
  }
  const auto forward = [&](Tensor* y) {
    if (options.before_forward) options.before_forward(layer);
    layer.Forward(backend, x, y);
  };
  Tensor y;
  forward(&y);
  ASSERT_EQ(y.shape(), Batched(batch, built.output));
  Tensor r(y.shape());
  FillUniform(rng, r);
  Tensor dx;
  params.grads().SetZero();
  for (float& g : params.grads().span()) g = std::numeric_limits<float>::quiet_NaN();  // overwritten
  layer.Backward(backend, x, y, r, &dx);
  ASSERT_EQ(dx.shape(), x.shape());
  const Tensor analytic_params = params.grads();
  ::psgrid::testing::ExpectLayerGradientsMatchDifferences(
      backend, layer, params, x, r, dx, static_cast<float>(kStep),
      ::psgrid::testing::ExpectGradientClose, options.before_forward);

  // Without dx the parameter gradients are the same.
  if (params.total_size() > 0) {
    forward(&y);
    layer.Backward(backend, x, y, r, nullptr);
    for (const ParamInfo& info : params.infos()) {
      for (int64_t i = info.offset; i < info.offset + info.size; ++i) {
        ASSERT_EQ(params.grads()[i], analytic_params[i]) << info.name << " without dx";
      }
    }
  }
}

const ConvConfig kGradConfigs[] = {
    // channels, h, w, filters, kernel, stride, padding, bias
    {1, 6, 6, 2, 3, 1, 0, true},
    {3, 7, 5, 4, 3, 2, 1, true},
    {1, 8, 8, 3, 5, 1, 2, false},
    {3, 5, 6, 2, 1, 1, 0, true},  // 1×1: the input is its own columns matrix
    {2, 6, 7, 3, 1, 2, 1, false},
    {3, 9, 8, 2, 5, 2, 2, true},
    {1, 4, 4, 2, 5, 1, 1, true},  // kernel wider than the image, padding makes it fit
    {3, 6, 6, 2, 3, 3, 0, false},
};

TEST(ConvGradientCheck, Conv2dInputWeightAndBiasGradients) {
  uint64_t seed = 100;
  for (const ConvConfig& c : kGradConfigs) {
    SCOPED_TRACE(Describe(c));
    CheckLayerGradients(ConvSpec(c.filters, c.kernel, c.stride, c.padding, c.bias ? 1 : 0),
                        {c.channels, c.height, c.width}, /*batch=*/2, seed++);
  }
}

TEST(ConvGradientCheck, Conv2dOnARank2InputAndBatchOfOne) {
  CheckLayerGradients(ConvSpec(3, 3, 1, 1), {6, 5}, 1, 7);
  CheckLayerGradients(ConvSpec(2, 3, 2, 0), {7, 7}, 3, 8);
}

TEST(ConvGradientCheck, MaxPool2d) {
  CheckOptions distinct;
  distinct.distinct_inputs = true;
  CheckLayerGradients(PoolSpec("maxpool2d", 2), {2, 6, 6}, 2, 20, distinct);
  CheckLayerGradients(PoolSpec("maxpool2d", 3, 2), {3, 7, 8}, 2, 21, distinct);  // overlapping
  CheckLayerGradients(PoolSpec("maxpool2d", 2, 1), {1, 5, 5}, 3, 22, distinct);
  CheckLayerGradients(PoolSpec("maxpool2d", 3), {2, 7, 8}, 1, 23, distinct);  // floor mode
  CheckLayerGradients(PoolSpec("maxpool2d", 2), {6, 7}, 2, 24, distinct);     // rank 2
}

TEST(ConvGradientCheck, AvgPool2d) {
  CheckLayerGradients(PoolSpec("avgpool2d", 2), {2, 6, 6}, 2, 30);
  CheckLayerGradients(PoolSpec("avgpool2d", 3, 2), {3, 7, 8}, 2, 31);
  CheckLayerGradients(PoolSpec("avgpool2d", 2, 1), {1, 5, 5}, 3, 32);
  CheckLayerGradients(PoolSpec("avgpool2d", 3), {2, 7, 8}, 1, 33);
}

TEST(ConvGradientCheck, Flatten) {
  CheckLayerGradients(TypeSpec("flatten"), {2, 3, 4}, 3, 40);
  CheckLayerGradients(TypeSpec("flatten"), {5}, 2, 41);
}

TEST(ConvGradientCheck, DropoutWithAFixedMask) {
  CheckOptions fixed;
  fixed.before_forward = [](Layer& layer) { static_cast<DropoutLayer&>(layer).set_passes(3); };
  CheckLayerGradients(DropoutSpec(0.4), {3, 4, 5}, 2, 50, fixed);
  CheckOptions evaluation;
  evaluation.training = false;
  CheckLayerGradients(DropoutSpec(0.4), {7}, 3, 51, evaluation);
}

// ---------------------------------------------------------------------------------------------
// Shapes and spec errors

TEST(ConvShapes, Conv2dOutputSizeIsFloorOfPaddedInputMinusKernelOverStridePlusOne) {
  struct Case {
    Shape input;
    int filters, kernel, stride, padding;
  };
  const Case cases[] = {
      {{28, 28}, 8, 5, 1, 2},  {{28, 28}, 8, 5, 1, 0}, {{3, 32, 32}, 4, 3, 2, 1},
      {{3, 7, 9}, 2, 3, 2, 0}, {{1, 5, 5}, 1, 5, 3, 0}, {{2, 10, 6}, 3, 4, 3, 2},
      {{1, 1, 1}, 2, 1, 1, 0},
  };
  for (const Case& c : cases) {
    BuiltLayer built;
    ASSERT_OK(BuildLayer(ConvSpec(c.filters, c.kernel, c.stride, c.padding), c.input, &built));
    const int64_t h = c.input[c.input.size() - 2], w = c.input.back();
    const Shape expected = {c.filters, (h + 2 * c.padding - c.kernel) / c.stride + 1,
                            (w + 2 * c.padding - c.kernel) / c.stride + 1};
    EXPECT_EQ(built.output, expected) << ShapeToString(c.input);
    const int64_t in_channels = c.input.size() == 3 ? c.input[0] : 1;
    ASSERT_EQ(built.params.infos().size(), 2u);
    EXPECT_EQ(built.params.infos()[0].name, "0.weight");
    EXPECT_EQ(built.params.infos()[0].shape,
              (Shape{c.filters, in_channels, c.kernel, c.kernel}));
    EXPECT_EQ(built.params.infos()[0].fan_in, in_channels * c.kernel * c.kernel);
    EXPECT_EQ(built.params.infos()[0].fan_out, c.filters * c.kernel * c.kernel);
    EXPECT_EQ(built.params.infos()[1].name, "0.bias");
    EXPECT_EQ(built.params.infos()[1].shape, (Shape{c.filters}));
  }
  // 28 + 4 − 5 = 27: stride 2 gives 14, stride 3 gives 10.
  BuiltLayer s2, s3;
  ASSERT_OK(BuildLayer(ConvSpec(4, 5, 2, 2), {28, 28}, &s2));
  ASSERT_OK(BuildLayer(ConvSpec(4, 5, 3, 2), {28, 28}, &s3));
  EXPECT_EQ(s2.output, (Shape{4, 14, 14}));
  EXPECT_EQ(s3.output, (Shape{4, 10, 10}));
}

TEST(ConvShapes, Conv2dWithoutBiasDeclaresOnlyTheWeight) {
  BuiltLayer built;
  ASSERT_OK(BuildLayer(ConvSpec(4, 3, 1, 1, /*bias=*/0), {2, 5, 5}, &built));
  ASSERT_EQ(built.params.infos().size(), 1u);
  EXPECT_EQ(built.params.infos()[0].name, "0.weight");
  BuiltLayer with;
  ASSERT_OK(BuildLayer(ConvSpec(4, 3, 1, 1, /*bias=*/1), {2, 5, 5}, &with));
  EXPECT_EQ(with.params.infos().size(), 2u);
}

TEST(ConvShapes, PoolingFlattenAndDropoutShapes) {
  BuiltLayer a, b, c, d, e, f;
  ASSERT_OK(BuildLayer(PoolSpec("maxpool2d", 2), {8, 28, 28}, &a));
  EXPECT_EQ(a.output, (Shape{8, 14, 14}));
  ASSERT_OK(BuildLayer(PoolSpec("avgpool2d", 3, 2), {4, 7, 8}, &b));
  EXPECT_EQ(b.output, (Shape{4, 3, 3}));
  ASSERT_OK(BuildLayer(PoolSpec("maxpool2d", 3), {5, 7}, &c));  // floor: 7/3 → 2
  EXPECT_EQ(c.output, (Shape{1, 2}));
  ASSERT_OK(BuildLayer(TypeSpec("flatten"), {8, 7, 7}, &d));
  EXPECT_EQ(d.output, (Shape{392}));
  ASSERT_OK(BuildLayer(DropoutSpec(0.5), {8, 7, 7}, &e));
  EXPECT_EQ(e.output, (Shape{8, 7, 7}));
  ASSERT_OK(BuildLayer(DropoutSpec(0), {3}, &f));
  EXPECT_EQ(f.output, (Shape{3}));
  for (BuiltLayer* l : {&a, &b, &c, &d, &e, &f}) EXPECT_EQ(l->params.total_size(), 0);
}

TEST(ConvShapes, FlattenKeepsChannelRowColumnOrder) {
  CpuBackend backend;
  BuiltLayer built;
  ASSERT_OK(BuildLayer(TypeSpec("flatten"), {2, 3, 4}, &built));
  Tensor x({2, 2, 3, 4});
  for (int64_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i);
  Tensor y;
  built.layer->Forward(backend, x, &y);
  EXPECT_EQ(y.shape(), (Shape{2, 24}));
  for (int64_t i = 0; i < y.size(); ++i) EXPECT_EQ(y[i], static_cast<float>(i));
}

absl::Status CreateStatus(const v1::LayerSpec& spec) {
  return CreateLayer(spec, "model.layers[0]").status();
}

TEST(ConvSpecErrors, FieldErrorsNameTheField) {
  using ::testing::HasSubstr;
  const auto expect = [](const v1::LayerSpec& spec, const std::string& message) {
    EXPECT_STATUS(CreateStatus(spec), absl::StatusCode::kInvalidArgument, message);
  };
  expect(ConvSpec(4, 0), "model.layers[0].kernel: a conv2d layer needs kernel >= 1, got 0");
  expect(ConvSpec(0, 3), "model.layers[0].filters: a conv2d layer needs filters >= 1, got 0");
  expect(ConvSpec(4, 3, -1), "model.layers[0].stride: a conv2d layer needs stride >= 1, got -1");
  expect(ConvSpec(4, 3, 1, -2),
         "model.layers[0].padding: a conv2d layer needs padding >= 0, got -2");
  v1::LayerSpec conv_units = ConvSpec(4, 3);
  conv_units.set_units(5);
  expect(conv_units, "model.layers[0].units: a conv2d layer takes no units");
  v1::LayerSpec conv_rate = ConvSpec(4, 3);
  conv_rate.set_rate(0.5);
  expect(conv_rate, "model.layers[0].rate: a conv2d layer takes no rate");

  expect(PoolSpec("maxpool2d", 0), "model.layers[0].size: a maxpool2d layer needs size >= 1, got 0");
  expect(PoolSpec("avgpool2d", 2, -1),
         "model.layers[0].stride: an avgpool2d layer needs stride >= 1, got -1");
  v1::LayerSpec pool_units = PoolSpec("maxpool2d", 2);
  pool_units.set_units(3);
  expect(pool_units, "model.layers[0].units: a maxpool2d layer takes no units");
  v1::LayerSpec pool_kernel = PoolSpec("avgpool2d", 2);
  pool_kernel.set_kernel(3);
  expect(pool_kernel, "model.layers[0].kernel: an avgpool2d layer takes no kernel");
  v1::LayerSpec pool_bias = PoolSpec("maxpool2d", 2);
  pool_bias.set_bias(true);
  expect(pool_bias, "model.layers[0].bias: a maxpool2d layer takes no bias");

  v1::LayerSpec flatten_units = TypeSpec("flatten");
  flatten_units.set_units(10);
  expect(flatten_units, "model.layers[0].units: a flatten layer takes no units");

  expect(DropoutSpec(1.0), "model.layers[0].rate: a dropout layer needs rate in [0, 1), got 1");
  expect(DropoutSpec(-0.1), "model.layers[0].rate: a dropout layer needs rate in [0, 1)");
  expect(DropoutSpec(std::nan("")), "model.layers[0].rate: a dropout layer needs rate in [0, 1)");
  v1::LayerSpec dropout_size = DropoutSpec(0.5);
  dropout_size.set_size(2);
  expect(dropout_size, "model.layers[0].size: a dropout layer takes no size");

  EXPECT_STATUS(CreateStatus(TypeSpec("conv3d")), absl::StatusCode::kInvalidArgument,
                "conv2d, maxpool2d, avgpool2d, flatten, dropout");
  EXPECT_OK(CreateStatus(DropoutSpec(0)));
  EXPECT_OK(CreateStatus(ConvSpec(1, 1)));
}

TEST(ConvSpecErrors, AWindowLargerThanTheInputIsAnErrorNamingTheField) {
  CpuBackend backend;
  // 5 + 2·1 = 7 < 9
  auto too_big = Model::Create(ModelOf({ConvSpec(2, 9, 1, 1), DenseSpec(3)}), {5, 5}, 3, &backend);
  EXPECT_STATUS(too_big, absl::StatusCode::kInvalidArgument, "model.layers[0].kernel");
  EXPECT_THAT(std::string(too_big.status().message()), ::testing::HasSubstr("7×7"));
  // The padded input just fits.
  EXPECT_OK(Model::Create(ModelOf({ConvSpec(2, 7, 1, 1), DenseSpec(3)}), {5, 5}, 3, &backend));
  auto pool = Model::Create(
      ModelOf({ConvSpec(2, 3), PoolSpec("maxpool2d", 4), DenseSpec(3)}), {5, 5}, 3, &backend);
  EXPECT_STATUS(pool, absl::StatusCode::kInvalidArgument, "model.layers[1].size");
  auto rank = Model::Create(ModelOf({ConvSpec(2, 3), DenseSpec(3)}), {25}, 3, &backend);
  EXPECT_STATUS(rank, absl::StatusCode::kInvalidArgument, "model.layers[0]");
  EXPECT_THAT(std::string(rank.status().message()), ::testing::HasSubstr("[channels, height, width]"));
}

// ---------------------------------------------------------------------------------------------
// A small CNN through Model

v1::ModelSpec SmallCnn(int filters, int kernel, int padding, int units, uint64_t seed = 1) {
  return ModelOf({ConvSpec(filters, kernel, 1, padding), TypeSpec("relu"),
                  PoolSpec("maxpool2d", 2), TypeSpec("flatten"), DenseSpec(units)},
                 seed);
}

TEST(ConvModel, SmallCnnBuildsOnFashionMnistImagesWithTorchNames) {
  CpuBackend backend;
  auto model = Model::Create(SmallCnn(8, 5, 2, 10), {28, 28}, 10, &backend);
  ASSERT_OK(model);
  const auto& infos = (*model)->parameters().infos();
  ASSERT_EQ(infos.size(), 4u);
  EXPECT_EQ(infos[0].name, "0.weight");
  EXPECT_EQ(infos[0].shape, (Shape{8, 1, 5, 5}));
  EXPECT_EQ(infos[1].name, "0.bias");
  EXPECT_EQ(infos[1].shape, (Shape{8}));
  EXPECT_EQ(infos[2].name, "4.weight");
  EXPECT_EQ(infos[2].shape, (Shape{10, 8 * 14 * 14}));
  EXPECT_EQ(infos[3].name, "4.bias");
  const ModelSummary summary = (*model)->Summary();
  ASSERT_EQ(summary.layers.size(), 5u);
  EXPECT_EQ(summary.layers[0].type, "conv2d");
  EXPECT_EQ(summary.layers[0].output_shape, (Shape{8, 28, 28}));
  EXPECT_EQ(summary.layers[2].output_shape, (Shape{8, 14, 14}));
  EXPECT_EQ(summary.layers[3].output_shape, (Shape{8 * 14 * 14}));
  EXPECT_EQ(summary.layers[0].parameters, 8 * 25 + 8);
  // He initialisation reached the conv weights (fan_in 25: bound √(6/25)).
  const Tensor w = (*model)->parameters().Value(0);
  float max_abs = 0;
  for (float v : w.span()) max_abs = std::max(max_abs, std::abs(v));
  EXPECT_GT(max_abs, 0.1f);
  EXPECT_LE(max_abs, std::sqrt(6.0f / 25.0f));

  Rng rng(3);
  Tensor x({4, 28, 28});
  FillUniform(rng, x, 0.0f, 1.0f);
  auto out = (*model)->Forward(x);
  ASSERT_OK(out);
  EXPECT_EQ((*out)->shape(), (Shape{4, 10}));
  std::vector<int32_t> labels = {0, 3, 9, 4};
  Targets targets;
  targets.labels = labels;
  EXPECT_OK((*model)->ComputeGradients(x, targets));
}

// Every parameter of a whole model against central differences of its loss. The loss is only
// piecewise smooth in a parameter: where a ReLU or a max-pool decision flips within the step,
// difference quotients are off by a jump, whatever the step when the kink is (nearly) at the
// parameter's value itself. Such entries are detected and skipped: the one-sided quotients
// (L(w + h) − L(w))/h and (L(w) − L(w − h))/h, or the central ones at h and h/2, disagree
// (on a smooth stretch they agree to O(h·L'') and O(h²)). At most a tenth may be skipped.
void CheckModelGradients(const v1::ModelSpec& spec, const Shape& sample, int64_t batch,
                         int64_t classes, uint64_t seed) {
  SCOPED_TRACE(absl::StrCat("model of ", spec.layers_size(), " layers on ",
                            ShapeToString(sample), ", seed ", seed));
  CpuBackend backend;
  auto model_or = Model::Create(spec, sample, classes, &backend);
  ASSERT_OK(model_or);
  Model& model = **model_or;
  Rng rng(seed);
  Tensor x(Batched(batch, sample));
  for (float& v : x.span()) v = (rng.Below(2) ? 1.0f : -1.0f) * rng.Uniform(0.1f, 1.0f);
  std::vector<int32_t> labels(batch);
  for (int32_t& l : labels) l = static_cast<int32_t>(rng.Below(classes));
  Targets targets;
  targets.labels = labels;
  ASSERT_OK(model.ComputeGradients(x, targets));
  const Tensor analytic = model.parameters().grads();
  const double base = model.Evaluate(x, targets)->loss;
  // (L(w + step) − L(w)) / step with the step as float rounds it.
  const auto one_sided = [&](float& w, double step) {
    const float saved = w;
    w = saved + static_cast<float>(step);
    const double actual = static_cast<double>(w) - saved;
    const double loss = model.Evaluate(x, targets)->loss;
    w = saved;
    return (loss - base) / actual;
  };
  constexpr double kModelStep = 1e-3;
  int64_t skipped = 0, checked = 0;
  for (const ParamInfo& info : model.parameters().infos()) {
    for (int64_t i = info.offset; i < info.offset + info.size; ++i) {
      float& w = model.parameters().values()[i];
      const double up = one_sided(w, kModelStep), down = one_sided(w, -kModelStep);
      const double half_up = one_sided(w, kModelStep / 2);
      const double half_down = one_sided(w, -kModelStep / 2);
      const double numeric = (half_up + half_down) / 2;
      const double tol = 2e-4 + 2e-2 * std::abs(numeric);
      if (std::abs(up - down) > tol || std::abs((up + down) / 2 - numeric) > tol / 2) {
        ++skipped;
        continue;
      }
      ++checked;
      EXPECT_NEAR(analytic[i], numeric, tol) << info.name << "[" << i - info.offset << "]";
    }
  }
  EXPECT_LE(skipped * 10, skipped + checked)
      << skipped << " of " << skipped + checked << " entries skipped (a kink within the step)";
}

TEST(ConvModel, WholeCnnGradientCheck) {
  // conv2d → relu → maxpool2d → flatten → dense on 10×10 images, batch 2.
  CheckModelGradients(SmallCnn(3, 3, 1, 4), {10, 10}, 2, 4, 60);
  // Two convolutions (stride 2, 3 channels in), average pooling and a smooth activation.
  CheckModelGradients(ModelOf({ConvSpec(4, 3, 2, 1), TypeSpec("tanh"), ConvSpec(3, 3, 1, 1, 0),
                               PoolSpec("avgpool2d", 2), DenseSpec(3)}),
                      {3, 9, 9}, 3, 3, 61);
}

TEST(ConvModel, ReluThenMaxPoolRunsPooledFirstWithIdenticalResults) {
  // The model runs relu → maxpool2d as pool, then relu (max(relu(x)) = relu(max(x))). A
  // dropout of rate 0 (exactly the identity) between the two keeps the written order: the
  // outputs, the loss and every gradient must be bit-identical, windows whose maximum is
  // negative (no gradient through them) included. The dense layer after the pool sends a
  // gradient to every pooled value. Windows moved by 2 and overlapping windows (stride 1).
  CpuBackend backend;
  for (int stride : {2, 1}) {
    SCOPED_TRACE(stride);
    const auto model_of = [stride](bool separated) {
      std::vector<v1::LayerSpec> layers = {ConvSpec(4, 3, 1, 1), TypeSpec("relu")};
      if (separated) layers.push_back(DropoutSpec(0));
      layers.push_back(PoolSpec("maxpool2d", 2, stride));
      layers.push_back(TypeSpec("flatten"));
      layers.push_back(DenseSpec(3));
      return ModelOf(layers, 3);
    };
    auto fused = Model::Create(model_of(false), {2, 8, 8}, 3, &backend);
    auto plain = Model::Create(model_of(true), {2, 8, 8}, 3, &backend);
    ASSERT_OK(fused);
    ASSERT_OK(plain);
    ParameterSet& pf = (*fused)->parameters();
    ParameterSet& pp = (*plain)->parameters();
    ASSERT_EQ(pf.total_size(), pp.total_size());
    std::copy(pf.values().span().begin(), pf.values().span().end(), pp.values().span().begin());
    Rng rng(17);
    Tensor x({5, 2, 8, 8});
    FillUniform(rng, x);  // in [-1, 1): some windows are all negative after the convolution
    const std::vector<int32_t> labels = {0, 1, 2, 1, 0};
    Targets targets;
    targets.labels = labels;
    auto rf = (*fused)->ComputeGradients(x, targets);
    auto rp = (*plain)->ComputeGradients(x, targets);
    ASSERT_OK(rf);
    ASSERT_OK(rp);
    EXPECT_EQ(rf->loss, rp->loss);
    for (int64_t i = 0; i < pf.total_size(); ++i) {
      ASSERT_EQ(pf.grads()[i], pp.grads()[i]) << "gradient element " << i;
    }
    auto yf = (*fused)->Forward(x);
    ASSERT_OK(yf);
    const Tensor fused_out = **yf;
    auto yp = (*plain)->Forward(x);
    ASSERT_OK(yp);
    for (int64_t i = 0; i < fused_out.size(); ++i) ASSERT_EQ(fused_out[i], (**yp)[i]) << i;
  }
}

// ---------------------------------------------------------------------------------------------
// Dropout

TEST(Dropout, EvaluationIsTheIdentity) {
  CpuBackend backend;
  BuiltLayer built;
  ASSERT_OK(BuildLayer(DropoutSpec(0.5), {100}, &built, 7));
  built.layer->SetTraining(false);
  Rng rng(1);
  Tensor x({3, 100});
  FillUniform(rng, x);
  Tensor y, dx;
  built.layer->Forward(backend, x, &y);
  ASSERT_EQ(y.shape(), x.shape());
  for (int64_t i = 0; i < x.size(); ++i) ASSERT_EQ(y[i], x[i]);
  built.layer->Backward(backend, x, y, x, &dx);
  for (int64_t i = 0; i < x.size(); ++i) ASSERT_EQ(dx[i], x[i]);
  EXPECT_EQ(static_cast<DropoutLayer&>(*built.layer).passes(), 0u);  // no mask drawn
}

TEST(Dropout, TrainingZeroesAboutRateAndScalesTheRest) {
  CpuBackend backend;
  for (double rate : {0.1, 0.3, 0.5, 0.9}) {
    SCOPED_TRACE(rate);
    BuiltLayer built;
    ASSERT_OK(BuildLayer(DropoutSpec(rate), {1000}, &built, 11));
    built.layer->SetTraining(true);
    Rng rng(2);
    Tensor x({100, 1000});  // 10⁵ elements: the zero fraction is within ±0.01 of rate
    FillUniform(rng, x, 0.5f, 1.5f);
    Tensor y, dy(x.shape()), dx;
    built.layer->Forward(backend, x, &y);
    const float scale = 1.0f / (1.0f - static_cast<float>(rate));
    int64_t zeros = 0;
    for (int64_t i = 0; i < x.size(); ++i) {
      if (y[i] == 0.0f) {
        ++zeros;
      } else {
        ASSERT_FLOAT_EQ(y[i], x[i] * scale) << i;
      }
    }
    EXPECT_NEAR(static_cast<double>(zeros) / x.size(), rate, 0.01);
    // The gradient goes through the same mask.
    for (float& g : dy.span()) g = 1.0f;
    built.layer->Backward(backend, x, y, dy, &dx);
    for (int64_t i = 0; i < x.size(); ++i) {
      ASSERT_EQ(dx[i], y[i] == 0.0f ? 0.0f : scale) << i;
    }
  }
}

TEST(Dropout, RateZeroIsTheIdentityInTraining) {
  CpuBackend backend;
  BuiltLayer built;
  ASSERT_OK(BuildLayer(DropoutSpec(0), {50}, &built, 3));
  built.layer->SetTraining(true);
  Rng rng(4);
  Tensor x({2, 50});
  FillUniform(rng, x);
  Tensor y;
  built.layer->Forward(backend, x, &y);
  for (int64_t i = 0; i < x.size(); ++i) ASSERT_EQ(y[i], x[i]);
}

std::vector<bool> KeptMask(Layer& layer, const Tensor& x) {
  CpuBackend backend;
  Tensor y;
  layer.Forward(backend, x, &y);
  std::vector<bool> kept(y.size());
  for (int64_t i = 0; i < y.size(); ++i) kept[i] = y[i] != 0.0f;
  return kept;
}

TEST(Dropout, TheMaskDependsOnlyOnTheSeedAndThePassCount) {
  Tensor x({4, 256});
  for (float& v : x.span()) v = 1.0f;
  BuiltLayer a, b, other_seed;
  ASSERT_OK(BuildLayer(DropoutSpec(0.5), {256}, &a, 42));
  ASSERT_OK(BuildLayer(DropoutSpec(0.5), {256}, &b, 42));
  ASSERT_OK(BuildLayer(DropoutSpec(0.5), {256}, &other_seed, 43));
  for (BuiltLayer* l : {&a, &b, &other_seed}) l->layer->SetTraining(true);
  const std::vector<bool> a0 = KeptMask(*a.layer, x);
  const std::vector<bool> a1 = KeptMask(*a.layer, x);
  EXPECT_NE(a0, a1) << "each pass draws a new mask";
  EXPECT_EQ(static_cast<DropoutLayer&>(*a.layer).passes(), 2u);
  EXPECT_EQ(KeptMask(*b.layer, x), a0) << "same seed, pass 0";
  EXPECT_EQ(KeptMask(*b.layer, x), a1) << "same seed, pass 1";
  EXPECT_NE(KeptMask(*other_seed.layer, x), a0);
  // Evaluation passes do not advance the count.
  a.layer->SetTraining(false);
  KeptMask(*a.layer, x);
  a.layer->SetTraining(true);
  const std::vector<bool> a2 = KeptMask(*a.layer, x);
  static_cast<DropoutLayer&>(*b.layer).set_passes(2);
  EXPECT_EQ(KeptMask(*b.layer, x), a2);
  static_cast<DropoutLayer&>(*b.layer).set_passes(0);
  EXPECT_EQ(KeptMask(*b.layer, x), a0) << "a pass replays";

  // A mask element is a function of (seed, index) only, whatever the tensor's size.
  CpuBackend backend;
  std::vector<float> ones(1000, 1.0f), mask_small(10), mask_big(1000), y(1000);
  backend.DropoutForward(10, 0.5f, 1234, ones.data(), mask_small.data(), y.data());
  backend.DropoutForward(1000, 0.5f, 1234, ones.data(), mask_big.data(), y.data());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(mask_small[i], mask_big[i]) << i;
}

TEST(Dropout, EachRandomStreamDrawsItsOwnMasks) {
  // Data-parallel workers (stream = rank) must not all drop the same units.
  Tensor x({4, 256});
  for (float& v : x.span()) v = 1.0f;
  BuiltLayer s0, s1, s2, s1_again;
  for (BuiltLayer* l : {&s0, &s1, &s2, &s1_again}) {
    ASSERT_OK(BuildLayer(DropoutSpec(0.5), {256}, l, 42));
    l->layer->SetTraining(true);
  }
  s1.layer->SetRandomStream(1);
  s2.layer->SetRandomStream(2);
  s1_again.layer->SetRandomStream(1);
  const std::vector<bool> m0 = KeptMask(*s0.layer, x);
  const std::vector<bool> m1 = KeptMask(*s1.layer, x);
  const std::vector<bool> m2 = KeptMask(*s2.layer, x);
  EXPECT_NE(m0, m1);
  EXPECT_NE(m1, m2);
  EXPECT_NE(m0, m2);
  EXPECT_EQ(KeptMask(*s1_again.layer, x), m1) << "a stream is reproducible";
  // Stream 1's first masks are not another stream's later ones.
  EXPECT_NE(KeptMask(*s0.layer, x), m1);
  // About half of the elements of two streams' masks agree (independent draws).
  int agree = 0;
  for (size_t i = 0; i < m0.size(); ++i) agree += m0[i] == m1[i];
  EXPECT_GT(agree, 400);
  EXPECT_LT(agree, 624);
}

TEST(Dropout, ModelsWithTheSameInitSeedDrawTheSameMasks) {
  CpuBackend backend;
  const auto spec = [](uint64_t seed) {
    return ModelOf({DenseSpec(32), TypeSpec("relu"), DropoutSpec(0.5), DenseSpec(3)}, seed);
  };
  auto m1 = Model::Create(spec(5), {6}, 3, &backend);
  auto m2 = Model::Create(spec(5), {6}, 3, &backend);
  auto m3 = Model::Create(spec(6), {6}, 3, &backend);
  ASSERT_OK(m1);
  ASSERT_OK(m2);
  ASSERT_OK(m3);
  // Same weights, other masks.
  const Tensor& w1 = (*m1)->parameters().values();
  std::copy(w1.span().begin(), w1.span().end(), (*m3)->parameters().values().span().begin());
  Rng rng(9);
  Tensor x({4, 6});
  FillUniform(rng, x);
  std::vector<int32_t> labels = {0, 1, 2, 0};
  Targets targets;
  targets.labels = labels;
  for (int step = 0; step < 2; ++step) {
    ASSERT_OK((*m1)->ComputeGradients(x, targets));
    ASSERT_OK((*m2)->ComputeGradients(x, targets));
    ASSERT_OK((*m3)->ComputeGradients(x, targets));
    const Tensor& g1 = (*m1)->parameters().grads();
    const Tensor& g2 = (*m2)->parameters().grads();
    const Tensor& g3 = (*m3)->parameters().grads();
    bool differs = false;
    for (int64_t i = 0; i < g1.size(); ++i) {
      ASSERT_EQ(g1[i], g2[i]) << "step " << step << " grad " << i;
      differs |= g1[i] != g3[i];
    }
    EXPECT_TRUE(differs) << "another init seed gives other masks";
  }
  // Evaluation ignores dropout: equal outputs for equal weights.
  auto e1 = (*m1)->Forward(x);
  ASSERT_OK(e1);
  const Tensor o1 = **e1;
  auto e3 = (*m3)->Forward(x);
  ASSERT_OK(e3);
  for (int64_t i = 0; i < o1.size(); ++i) EXPECT_EQ(o1[i], (**e3)[i]);
}

// ---------------------------------------------------------------------------------------------
// Parity with torch.nn.functional

// One layer run here, its forward output and gradients then compared with torch's.
struct ParityCase {
  std::string name;
  std::string op;  // conv2d | max_pool2d | avg_pool2d
  v1::LayerSpec spec;
  Shape x_shape;  // with the batch
  BuiltLayer built;
  Tensor x, y, dy, dx;
  std::string manifest;
};

void RunParityCase(ParityCase& c, const std::string& dir, uint64_t seed) {
  CpuBackend backend;
  Rng rng(seed);
  const Shape sample(c.x_shape.begin() + 1, c.x_shape.end());
  ASSERT_OK(BuildLayer(c.spec, sample, &c.built));
  FillUniform(rng, c.built.params.values());
  c.x = Tensor(c.x_shape);
  FillUniform(rng, c.x);
  c.built.layer->SetTraining(true);
  c.built.layer->Forward(backend, c.x, &c.y);
  c.dy = Tensor(c.y.shape());
  FillUniform(rng, c.dy);
  c.built.layer->Backward(backend, c.x, c.y, c.dy, &c.dx);
  const std::string base = dir + "/" + c.name;
  WriteRaw(base + "_x.bin", c.x.data(), c.x.size());
  WriteRaw(base + "_dy.bin", c.dy.data(), c.dy.size());
  std::string extra;
  if (c.op == "conv2d") {
    ParameterSet& p = c.built.params;
    WriteRaw(base + "_w.bin", p.Value(0).data(), p.infos()[0].size);
    const bool bias = p.infos().size() > 1;
    if (bias) WriteRaw(base + "_b.bin", p.Value(1).data(), p.infos()[1].size);
    extra = absl::StrCat(", \"w_shape\": [", absl::StrJoin(p.infos()[0].shape, ", "),
                         "], \"bias\": ", bias ? "true" : "false",
                         ", \"stride\": ", c.spec.stride() == 0 ? 1 : c.spec.stride(),
                         ", \"padding\": ", c.spec.padding());
  } else {
    extra = absl::StrCat(", \"size\": ", c.spec.size(), ", \"stride\": ",
                         c.spec.stride() == 0 ? c.spec.size() : c.spec.stride());
  }
  c.manifest = absl::StrCat("{\"name\": \"", c.name, "\", \"op\": \"", c.op,
                            "\", \"x_shape\": [", absl::StrJoin(c.x_shape, ", "), "]", extra, "}");
}

// |ours − torch| <= 1e-4·|torch|, plus 1e-6 of the tensor's largest magnitude for entries that
// are sums cancelling to nearly 0.
void ExpectMatches(const float* ours, int64_t n, const std::string& path, const std::string& what) {
  const std::vector<double> ref = ::psgrid::testing::ReadRaw<double>(path);
  ASSERT_EQ(static_cast<int64_t>(ref.size()), n) << what << ": " << path;
  double scale = 0;
  for (double v : ref) scale = std::max(scale, std::abs(v));
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double err = std::abs(ours[i] - ref[i]);
    worst = std::max(worst, err / (std::abs(ref[i]) + 1e-2 * scale + 1e-30));
    EXPECT_LE(err, 1e-4 * std::abs(ref[i]) + 1e-6 * scale)
        << what << "[" << i << "]: " << ours[i] << " vs torch " << ref[i];
  }
  ::testing::Test::RecordProperty(what, absl::StrCat(worst));
}

// ---------------------------------------------------------------------------------------------
// The CPU backend's whole convolutions: oneDNN (where built) against the Backend defaults
// (Im2Col + Gemm per sample), forward and every gradient, on random data (float32 sums in
// another order: within 1e-4 relative, as the PyTorch parity tests).

TEST(CpuConvolutions, OneDnnMatchesIm2colAndGemm) {
  CpuBackend fast;
  CpuBackendOptions options;
  options.onednn_convolutions = false;
  CpuBackend reference(options);
  if (!fast.onednn_convolutions()) GTEST_SKIP() << "this build has no oneDNN (PSGRID_DNNL)";
  EXPECT_FALSE(reference.onednn_convolutions());
  struct Case {
    int64_t batch, channels, size, filters, kernel, stride, padding;
    bool bias, input_grad;
  };
  const Case cases[] = {
      {4, 1, 28, 8, 5, 1, 2, true, false},  // the first layer of the example CNN
      {3, 8, 14, 16, 5, 1, 2, true, true},   // its second
      {2, 3, 9, 4, 3, 2, 1, true, true},     // stride 2
      {5, 4, 7, 6, 1, 1, 0, false, true},    // 1×1, no bias
      {1, 2, 6, 3, 3, 3, 0, true, true},     // windows that do not cover the last column
      {2, 16, 5, 17, 2, 1, 1, true, true},   // odd filter count, even kernel
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrCat("batch ", c.batch, " channels ", c.channels, " size ", c.size,
                              " filters ", c.filters, " kernel ", c.kernel, " stride ", c.stride,
                              " padding ", c.padding));
    Conv2dShape s;
    s.batch = c.batch;
    s.channels = c.channels;
    s.height = s.width = c.size;
    s.filters = c.filters;
    s.kernel = c.kernel;
    s.stride = c.stride;
    s.padding = c.padding;
    Rng rng(static_cast<uint64_t>(c.channels * 100 + c.kernel));
    Tensor x({c.batch, c.channels, c.size, c.size}), w({c.filters, c.channels, c.kernel, c.kernel});
    Tensor bias({c.filters}), dy({c.batch, c.filters, s.out_h(), s.out_w()});
    for (Tensor* t : {&x, &w, &bias, &dy}) FillUniform(rng, *t);
    Tensor workspace({std::max<int64_t>(reference.Conv2dWorkspaceFloats(s), 1)});
    EXPECT_EQ(fast.Conv2dWorkspaceFloats(s), 0);
    const float* b = c.bias ? bias.data() : nullptr;
    Tensor y_fast(dy.shape()), y_ref(dy.shape());
    fast.Conv2dForward(s, x.data(), w.data(), b, y_fast.data(), nullptr);
    reference.Conv2dForward(s, x.data(), w.data(), b, y_ref.data(), workspace.data());
    Tensor dw_fast(w.shape()), dw_ref(w.shape()), db_fast({c.filters}), db_ref({c.filters});
    Tensor dx_fast(x.shape()), dx_ref(x.shape());
    fast.Conv2dBackward(s, x.data(), w.data(), dy.data(), dw_fast.data(),
                        c.bias ? db_fast.data() : nullptr, c.input_grad ? dx_fast.data() : nullptr,
                        nullptr);
    reference.Conv2dBackward(s, x.data(), w.data(), dy.data(), dw_ref.data(),
                             c.bias ? db_ref.data() : nullptr,
                             c.input_grad ? dx_ref.data() : nullptr, workspace.data());
    const auto expect_near = [](const Tensor& got, const Tensor& want, const char* what) {
      for (int64_t i = 0; i < want.size(); ++i) {
        ASSERT_NEAR(got[i], want[i], 1e-4f * (1.0f + std::fabs(want[i]))) << what << " " << i;
      }
    };
    expect_near(y_fast, y_ref, "y");
    expect_near(dw_fast, dw_ref, "dw");
    if (c.bias) expect_near(db_fast, db_ref, "dbias");
    if (c.input_grad) expect_near(dx_fast, dx_ref, "dx");
  }
}

TEST(TorchConvParity, Conv2dAndPoolingMatchTorchNnFunctional) {
  if (!::psgrid::testing::TorchAvailable()) {
    GTEST_SKIP() << "/usr/bin/python3 has no torch (python3-torch is not installed); skipping "
                    "the PyTorch comparison";
  }
  const std::string dir = ::psgrid::testing::MakeTempDir("psgrid_torch_conv");
  ASSERT_FALSE(dir.empty());

  std::vector<std::unique_ptr<ParityCase>> cases;
  const auto add = [&](const std::string& op, const v1::LayerSpec& spec, const Shape& x_shape) {
    auto c = std::make_unique<ParityCase>();
    c->name = absl::StrCat("case", cases.size());
    c->op = op;
    c->spec = spec;
    c->x_shape = x_shape;
    cases.push_back(std::move(c));
  };
  add("conv2d", ConvSpec(8, 5, 1, 2), {4, 1, 28, 28});         // the first layer of a CNN
  add("conv2d", ConvSpec(6, 3, 2, 1), {3, 3, 11, 10});         // stride 2, padding 1
  add("conv2d", ConvSpec(5, 3, 1, 0, 0), {2, 4, 9, 9});        // no bias
  add("conv2d", ConvSpec(4, 5, 2, 2), {2, 3, 12, 13});         // stride 2, padding 2
  add("conv2d", ConvSpec(7, 1, 1, 0), {3, 6, 5, 5});           // 1×1
  add("conv2d", ConvSpec(3, 1, 2, 1, 0), {2, 2, 6, 7});        // 1×1, stride 2, padding
  add("conv2d", ConvSpec(16, 3, 1, 1), {2, 32, 14, 14});       // many channels in
  add("conv2d", ConvSpec(2, 4, 3, 1), {2, 2, 10, 11});         // even kernel, stride 3
  add("max_pool2d", PoolSpec("maxpool2d", 2), {3, 4, 28, 28});
  add("max_pool2d", PoolSpec("maxpool2d", 3, 2), {2, 3, 11, 10});  // overlapping windows
  add("max_pool2d", PoolSpec("maxpool2d", 3), {2, 2, 8, 7});       // floor mode
  add("avg_pool2d", PoolSpec("avgpool2d", 2), {3, 4, 28, 28});
  add("avg_pool2d", PoolSpec("avgpool2d", 3, 2), {2, 3, 11, 10});
  add("avg_pool2d", PoolSpec("avgpool2d", 3, 1), {2, 2, 8, 7});

  std::vector<std::string> manifests;
  uint64_t seed = 500;
  for (auto& c : cases) {
    SCOPED_TRACE(c->name);
    RunParityCase(*c, dir, seed++);
    manifests.push_back(c->manifest);
  }
  std::ofstream(dir + "/manifest.json") << "{\"cases\": [" << absl::StrJoin(manifests, ",\n")
                                         << "]}";
  const std::string command =
      absl::StrCat("/usr/bin/python3 ", PSGRID_SOURCE_DIR, "/tests/torch_conv_check.py ", dir);
  ASSERT_EQ(std::system(command.c_str()), 0) << command;

  for (auto& c : cases) {
    SCOPED_TRACE(absl::StrCat(c->name, ": ", c->manifest));
    const std::string base = dir + "/" + c->name;
    ExpectMatches(c->y.data(), c->y.size(), base + "_y.bin", c->name + " y");
    ExpectMatches(c->dx.data(), c->dx.size(), base + "_dx.bin", c->name + " dx");
    if (c->op == "conv2d") {
      ParameterSet& p = c->built.params;
      ExpectMatches(p.Grad(0).data(), p.infos()[0].size, base + "_dw.bin", c->name + " dweight");
      if (p.infos().size() > 1) {
        ExpectMatches(p.Grad(1).data(), p.infos()[1].size, base + "_db.bin", c->name + " dbias");
      }
    }
  }
}

}  // namespace
}  // namespace psgrid
