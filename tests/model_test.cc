// Model construction: PyTorch names and shapes, the summary, initialisation, and errors that
// name the offending field.
#include <cmath>
#include <cstring>

#include "core/backend/cpu_backend.h"
#include "core/model.h"
#include "core/rng.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

using ::psgrid::testing::MakeModelSpec;
using ::psgrid::testing::RandomBatch;
using ::testing::ElementsAre;

TEST(Model, ParameterNamesAndShapesFollowTorchSequential) {
  CpuBackend backend;
  auto model = Model::Create(
      MakeModelSpec({{"dense", 256}, {"relu", 0}, {"dense", 128}, {"relu", 0}, {"dense", 10}}),
      {784}, 10, &backend);
  ASSERT_OK(model);
  EXPECT_THAT(::psgrid::testing::ParameterNames((*model)->parameters()),
              ElementsAre("0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"));
  EXPECT_THAT(::psgrid::testing::ParameterShapes((*model)->parameters()),
              ElementsAre(Shape{256, 784}, Shape{256}, Shape{128, 256}, Shape{128}, Shape{10, 128},
                          Shape{10}));
}

TEST(Model, BackwardAnnouncesEachLayersGradientOnceItIsComplete) {
  CpuBackend backend;
  auto model = Model::Create(
      MakeModelSpec({{"dense", 6}, {"relu", 0}, {"dense", 4}, {"tanh", 0}, {"dense", 3}}), {5}, 3,
      &backend);
  ASSERT_OK(model);
  const std::vector<ParamInfo>& infos = (*model)->parameters().infos();
  Rng rng(3);
  RandomBatch batch(rng, 7, 5, 3);
  std::vector<int64_t> announced;
  std::vector<std::vector<float>> seen;  // the arena from each announced offset on, then
  const Tensor& grads = (*model)->parameters().grads();
  ASSERT_OK((*model)->ComputeGradients(batch.x, batch.targets((*model)->loss()),
                                       [&](int64_t ready_from) {
                                         announced.push_back(ready_from);
                                         seen.emplace_back(grads.data() + ready_from,
                                                           grads.data() + grads.size());
                                       }));
  EXPECT_THAT(announced, ElementsAre(infos[4].offset, infos[2].offset, 0));
  // What was announced complete did not change afterwards.
  for (size_t k = 0; k < announced.size(); ++k) {
    EXPECT_EQ(0, std::memcmp(seen[k].data(), grads.data() + announced[k],
                             seen[k].size() * sizeof(float)))
        << "from offset " << announced[k];
  }
}

TEST(Model, SummaryCountsWeightsBiasesAndBytes) {
  CpuBackend backend;
  auto model = Model::Create(MakeModelSpec({{"dense", 128}, {"relu", 0}, {"dense", 10}}), {784},
                             10, &backend);
  ASSERT_OK(model);
  ModelSummary s = (*model)->Summary();
  EXPECT_EQ(s.weights, 101632);
  EXPECT_EQ(s.biases, 138);
  EXPECT_EQ(s.weights * 4, 406528);
  EXPECT_EQ(s.bytes(), (101632 + 138) * 4);
  ASSERT_EQ(s.layers.size(), 3u);
  EXPECT_EQ(s.layers[0].output_shape, Shape{128});
  EXPECT_EQ(s.layers[0].parameters, 784 * 128 + 128);
  EXPECT_EQ(s.layers[1].parameters, 0);
  const std::string text = FormatSummary(s);
  EXPECT_THAT(text, ::testing::HasSubstr("101632 weights + 138 biases"));
}

TEST(Model, ImageInputIsFlattenedByTheFirstDenseLayer) {
  CpuBackend backend;
  auto model = Model::Create(MakeModelSpec({{"dense", 10}}), {28, 28}, 10, &backend);
  ASSERT_OK(model);
  EXPECT_EQ((*model)->parameters().infos()[0].shape, (Shape{10, 784}));
}

TEST(Model, InitialisationIsDeterministicAndWithinTheHeBound) {
  CpuBackend backend;
  auto spec = MakeModelSpec({{"dense", 64}, {"relu", 0}, {"dense", 10}}, "softmax_cross_entropy", 42);
  auto a = Model::Create(spec, {100}, 10, &backend);
  auto b = Model::Create(spec, {100}, 10, &backend);
  ASSERT_OK(a);
  ASSERT_OK(b);
  const Tensor& va = (*a)->parameters().values();
  const Tensor& vb = (*b)->parameters().values();
  ASSERT_EQ(va.size(), vb.size());
  EXPECT_EQ(0, std::memcmp(va.data(), vb.data(), va.size() * sizeof(float)));

  ParameterSet& p = (*a)->parameters();
  Tensor w = p.Value(p.Find("0.weight"));
  const double bound = std::sqrt(6.0 / 100);
  double sum_sq = 0;
  for (float v : w.span()) {
    EXPECT_LE(std::abs(v), bound);
    sum_sq += static_cast<double>(v) * v;
  }
  EXPECT_NEAR(sum_sq / w.size(), 2.0 / 100, 0.1 * 2.0 / 100);  // He variance 2/fan_in
  for (float v : p.Value(p.Find("0.bias")).span()) EXPECT_EQ(v, 0.0f);

  auto c = Model::Create(MakeModelSpec({{"dense", 64}, {"relu", 0}, {"dense", 10}},
                                       "softmax_cross_entropy", 43),
                         {100}, 10, &backend);
  ASSERT_OK(c);
  EXPECT_NE(0, std::memcmp(va.data(), (*c)->parameters().values().data(), 64 * sizeof(float)));
}

TEST(Model, ATensorsInitialValuesDependOnlyOnSeedAndName) {
  CpuBackend backend;
  auto a = Model::Create(MakeModelSpec({{"dense", 8}, {"relu", 0}, {"dense", 3}}), {5}, 3, &backend);
  auto b = Model::Create(MakeModelSpec({{"dense", 8}, {"tanh", 0}, {"dense", 3}}), {5}, 3, &backend);
  ASSERT_OK(a);
  ASSERT_OK(b);
  Tensor wa = (*a)->parameters().Value(0);
  Tensor wb = (*b)->parameters().Value(0);
  EXPECT_EQ(0, std::memcmp(wa.data(), wb.data(), wa.size() * sizeof(float)));
}

TEST(Model, XavierUsesBothFans) {
  CpuBackend backend;
  auto spec = MakeModelSpec({{"dense", 300}});
  spec.mutable_init()->set_scheme("xavier");
  auto model = Model::Create(spec, {100}, 300, &backend);
  ASSERT_OK(model);
  const double bound = std::sqrt(6.0 / 400);
  float max_abs = 0;
  for (float v : (*model)->parameters().Value(0).span()) max_abs = std::max(max_abs, std::abs(v));
  EXPECT_LE(max_abs, bound);
  EXPECT_GT(max_abs, 0.95 * bound);
}

TEST(Model, UnknownLayerTypeNamesTheField) {
  CpuBackend backend;
  EXPECT_STATUS(Model::Create(MakeModelSpec({{"dense", 4}, {"softplus", 0}}), {3}, 4, &backend),
                absl::StatusCode::kInvalidArgument, "model.layers[1].type");
}

TEST(Model, DenseWithoutUnitsNamesTheField) {
  CpuBackend backend;
  EXPECT_STATUS(Model::Create(MakeModelSpec({{"dense", 0}, {"relu", 0}, {"dense", 4}}), {3}, 4,
                              &backend),
                absl::StatusCode::kInvalidArgument, "model.layers[0].units");
}

TEST(Model, TheLastDenseLayerWithoutUnitsOutputsWhatTheDataNeeds) {
  CpuBackend backend;
  auto model = Model::Create(MakeModelSpec({{"dense", 8}, {"relu", 0}, {"dense", 0}}), {3}, 5,
                             &backend);
  ASSERT_OK(model);
  EXPECT_EQ((*model)->parameters().infos().back().shape, Shape({5}));  // "2.bias"
}

TEST(Model, OutputThatDoesNotFitTheClassesNamesTheLastDenseLayer) {
  CpuBackend backend;
  EXPECT_STATUS(Model::Create(MakeModelSpec({{"dense", 16}, {"relu", 0}, {"dense", 5}, {"relu", 0}}),
                              {784}, 10, &backend),
                absl::StatusCode::kInvalidArgument, "model.layers[2].units");
}

TEST(Model, UnknownLossIsRejected) {
  CpuBackend backend;
  EXPECT_STATUS(Model::Create(MakeModelSpec({{"dense", 2}}, "hinge"), {3}, 2, &backend),
                absl::StatusCode::kInvalidArgument, "model.loss");
}

TEST(Model, InputOfTheWrongShapeIsRejected) {
  CpuBackend backend;
  auto model = Model::Create(MakeModelSpec({{"dense", 2}}), {3}, 2, &backend);
  ASSERT_OK(model);
  Tensor x({4, 5});
  EXPECT_STATUS((*model)->Forward(x), absl::StatusCode::kInvalidArgument, "[batch] + [3]");
}

TEST(Model, LabelOutsideTheClassesIsRejected) {
  CpuBackend backend;
  auto model = Model::Create(MakeModelSpec({{"dense", 2}}), {3}, 2, &backend);
  ASSERT_OK(model);
  Tensor x({1, 3});
  std::vector<int32_t> labels = {2};
  Targets t;
  t.labels = labels;
  EXPECT_STATUS((*model)->ComputeGradients(x, t), absl::StatusCode::kInvalidArgument, "label 2");
}

}  // namespace
}  // namespace psgrid
