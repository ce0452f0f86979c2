// The single-process training loop end to end: data, model, optimizer, evaluation.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/backend/cpu_backend.h"
#include "proto/job_spec_codec.h"
#include "tests/test_util.h"
#include "worker/local_trainer.h"

namespace psgrid {
namespace {

using ::psgrid::testing::WriteLinearCsv;

v1::JobSpec LinearSpec(const std::string& csv) {
  auto spec = ParseJobSpec(
      "name: linear\n"
      "model: {layers: [{type: dense, units: 1}], loss: mse, init: {seed: 3}}\n"
      "data: {dataset: csv, path: " + csv + ", seed: 5}\n"
      "training: {batch_size: 16, epochs: 40}\n"
      "optimizer: {type: momentum, learning_rate: 0.05, momentum: 0.5}\n",
      "linear.yaml");
  EXPECT_OK(spec);
  return *spec;
}

TEST(LocalTrainer, LearnsALinearFunctionWithMse) {
  CpuBackend backend;
  auto trainer = LocalTrainer::Create(LinearSpec(WriteLinearCsv()), &backend);
  ASSERT_OK(trainer);
  EXPECT_EQ((*trainer)->data().train.size(), 180);  // the last 10% are held out
  EXPECT_EQ((*trainer)->data().test.size(), 20);
  int epochs_reported = 0;
  auto result = (*trainer)->Run([&](const EpochReport&) { ++epochs_reported; });
  ASSERT_OK(result);
  EXPECT_EQ(epochs_reported, 40);
  EXPECT_LT(result->test_loss, 1e-4);
  ParameterSet& p = (*trainer)->model().parameters();
  Tensor w = p.Value(p.Find("0.weight"));
  EXPECT_NEAR(w[0], 2.0, 1e-2);
  EXPECT_NEAR(w[1], -3.0, 1e-2);
  EXPECT_NEAR(p.Value(p.Find("0.bias"))[0], 1.0, 1e-2);
}

TEST(LocalTrainer, TheSameSpecTrainsToBitIdenticalWeights) {
  CpuBackend backend;
  const v1::JobSpec spec = LinearSpec(WriteLinearCsv());
  auto a = LocalTrainer::Create(spec, &backend);
  auto b = LocalTrainer::Create(spec, &backend);
  ASSERT_OK(a);
  ASSERT_OK(b);
  ASSERT_OK((*a)->Run(nullptr));
  ASSERT_OK((*b)->Run(nullptr));
  const Tensor& va = (*a)->model().parameters().values();
  const Tensor& vb = (*b)->model().parameters().values();
  EXPECT_EQ(0, std::memcmp(va.data(), vb.data(), va.size() * sizeof(float)));
}

TEST(LocalTrainer, MaxStepsStopsTraining) {
  CpuBackend backend;
  v1::JobSpec spec = LinearSpec(WriteLinearCsv());
  spec.mutable_training()->set_max_steps(7);
  auto trainer = LocalTrainer::Create(spec, &backend);
  ASSERT_OK(trainer);
  auto result = (*trainer)->Run(nullptr);
  ASSERT_OK(result);
  EXPECT_EQ(result->steps, 7);
  EXPECT_EQ(result->samples, 7 * 16);
}

TEST(LocalTrainer, ClassificationLossOnRegressionDataNamesTheLoss) {
  CpuBackend backend;
  v1::JobSpec spec = LinearSpec(WriteLinearCsv());
  spec.mutable_model()->set_loss("softmax_cross_entropy");
  EXPECT_STATUS(LocalTrainer::Create(spec, &backend), absl::StatusCode::kInvalidArgument,
                "model.loss");
}

TEST(LocalTrainer, MissingDataIsReportedWithThePath) {
  CpuBackend backend;
  v1::JobSpec spec = LinearSpec("/nonexistent/data.csv");
  EXPECT_STATUS(LocalTrainer::Create(spec, &backend), absl::StatusCode::kNotFound,
                "/nonexistent/data.csv");
}

constexpr char kFashionMnist[] = "/usr/share/datasets/fashion-mnist";

TEST(LocalTrainer, FashionMnistMlpLearnsInAFewHundredSteps) {
  if (!std::filesystem::exists(kFashionMnist)) GTEST_SKIP() << kFashionMnist << " is not installed";
  CpuBackend backend;
  auto spec = LoadJobSpecFile("examples/fmnist_mlp.yaml");
  ASSERT_OK(spec);
  spec->mutable_training()->set_max_steps(400);
  auto trainer = LocalTrainer::Create(*spec, &backend);
  ASSERT_OK(trainer);
  auto before = (*trainer)->Evaluate((*trainer)->data().test);
  ASSERT_OK(before);
  EXPECT_LT(before->accuracy, 0.3);
  auto result = (*trainer)->Run(nullptr);
  ASSERT_OK(result);
  EXPECT_EQ(result->steps, 400);
  EXPECT_GT(result->test_accuracy, 0.75);
}

TEST(LocalTrainer, FashionMnistWithAnOutputThatDoesNotFitNamesTheLayer) {
  if (!std::filesystem::exists(kFashionMnist)) GTEST_SKIP() << kFashionMnist << " is not installed";
  CpuBackend backend;
  auto spec = LoadJobSpecFile("examples/fmnist_mlp.yaml");
  ASSERT_OK(spec);
  spec->mutable_model()->mutable_layers(4)->set_units(7);
  EXPECT_STATUS(LocalTrainer::Create(*spec, &backend), absl::StatusCode::kInvalidArgument,
                "model.layers[4].units");
}

}  // namespace
}  // namespace psgrid
