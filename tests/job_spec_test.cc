// Job files: YAML and JSON decode to the same JobSpec; bad specs are rejected naming the field.
#include "proto/job_spec_codec.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

constexpr char kYaml[] = R"(
name: fmnist-mlp
model:
  layers:
    - {type: dense, units: 256}
    - {type: relu}
    - {type: dense, units: 10}
  loss: softmax_cross_entropy
  init: {scheme: he, seed: 42}
data:
  dataset: fashion-mnist
  path: /usr/share/datasets/fashion-mnist
  shuffle: true
  seed: 7
training:
  workers: 2
  batch_size: 64
  epochs: 10
  max_steps: 0
optimizer: {type: momentum, learning_rate: 0.05, momentum: 0.9}
snapshot: {every_steps: 500, every_seconds: 600, keep_last: 3}
)";

TEST(JobSpec, YamlDecodesEveryField) {
  auto spec = ParseJobSpec(kYaml, "spec.yaml");
  ASSERT_OK(spec);
  EXPECT_EQ(spec->name(), "fmnist-mlp");
  ASSERT_EQ(spec->model().layers_size(), 3);
  EXPECT_EQ(spec->model().layers(0).type(), "dense");
  EXPECT_EQ(spec->model().layers(0).units(), 256);
  EXPECT_EQ(spec->model().layers(1).type(), "relu");
  EXPECT_EQ(spec->model().init().seed(), 42u);
  EXPECT_EQ(spec->data().path(), "/usr/share/datasets/fashion-mnist");
  EXPECT_TRUE(spec->data().shuffle());
  EXPECT_EQ(spec->data().seed(), 7u);
  EXPECT_EQ(spec->training().workers(), 2);
  EXPECT_EQ(spec->training().batch_size(), 64);
  EXPECT_EQ(spec->training().epochs(), 10);
  EXPECT_EQ(spec->optimizer().type(), "momentum");
  EXPECT_DOUBLE_EQ(spec->optimizer().learning_rate(), 0.05);
  EXPECT_DOUBLE_EQ(spec->optimizer().momentum(), 0.9);
  EXPECT_EQ(spec->snapshot().every_steps(), 500);
  EXPECT_DOUBLE_EQ(spec->snapshot().every_seconds(), 600);
  EXPECT_EQ(spec->snapshot().keep_last(), 3);
}

TEST(JobSpec, JsonDecodesToTheSameSpecAsYaml) {
  auto from_yaml = ParseJobSpec(kYaml, "spec.yaml");
  ASSERT_OK(from_yaml);
  auto from_json = ParseJobSpec(JobSpecToJson(*from_yaml), "spec.json");
  ASSERT_OK(from_json);
  EXPECT_EQ(from_yaml->SerializeAsString(), from_json->SerializeAsString());
}

TEST(JobSpec, DefaultsFillAMinimalSpec) {
  auto spec = ParseJobSpec("model: {layers: [{type: dense, units: 10}]}", "min.yaml");
  ASSERT_OK(spec);
  EXPECT_EQ(spec->model().loss(), "softmax_cross_entropy");
  EXPECT_EQ(spec->model().init().scheme(), "he");
  EXPECT_EQ(spec->data().dataset(), "fashion-mnist");
  EXPECT_EQ(spec->data().path(), "/usr/share/datasets/fashion-mnist");
  EXPECT_TRUE(spec->data().shuffle());
  EXPECT_EQ(spec->training().workers(), 1);
  EXPECT_EQ(spec->training().batch_size(), 64);
  EXPECT_EQ(spec->optimizer().type(), "sgd");
}

TEST(JobSpec, ShuffleFalseIsKept) {
  auto spec = ParseJobSpec("model: {layers: [{type: dense, units: 10}]}\ndata: {shuffle: false}", "s");
  ASSERT_OK(spec);
  EXPECT_FALSE(spec->data().shuffle());
}

TEST(JobSpec, UnknownFieldIsRejectedByName) {
  EXPECT_STATUS(ParseJobSpec("model: {layers: [{type: dense, units: 10}]}\ntraining: {wrokers: 2}", "bad.yaml"),
                absl::StatusCode::kInvalidArgument, "wrokers");
}

TEST(JobSpec, WrongTypeIsRejectedByName) {
  EXPECT_STATUS(ParseJobSpec("model: {layers: [{type: dense, units: 10}]}\ntraining: {workers: two}", "bad.yaml"),
                absl::StatusCode::kInvalidArgument, "workers");
}

TEST(JobSpec, ImpossibleValuesNameTheField) {
  const std::string model = "model: {layers: [{type: dense, units: 10}]}\n";
  EXPECT_STATUS(ParseJobSpec(model + "training: {workers: -1}", "s"),
                absl::StatusCode::kInvalidArgument, "training.workers");
  EXPECT_STATUS(ParseJobSpec(model + "training: {batch_size: -5}", "s"),
                absl::StatusCode::kInvalidArgument, "training.batch_size");
  EXPECT_STATUS(ParseJobSpec(model + "optimizer: {type: sgd, learning_rate: -0.1}", "s"),
                absl::StatusCode::kInvalidArgument, "optimizer.learning_rate");
  EXPECT_STATUS(ParseJobSpec(model + "optimizer: {type: momentum, learning_rate: 0.1, momentum: 1.5}", "s"),
                absl::StatusCode::kInvalidArgument, "optimizer.momentum");
  EXPECT_STATUS(ParseJobSpec(model + "optimizer: {type: lbfgs}", "s"),
                absl::StatusCode::kInvalidArgument, "optimizer.type");
  EXPECT_STATUS(ParseJobSpec(model + "snapshot: {every_steps: -1}", "s"),
                absl::StatusCode::kInvalidArgument, "snapshot.every_steps");
  EXPECT_STATUS(ParseJobSpec(model + "snapshot: {every_seconds: -2.5}", "s"),
                absl::StatusCode::kInvalidArgument, "snapshot.every_seconds");
  EXPECT_STATUS(ParseJobSpec(model + "snapshot: {keep_last: -3}", "s"),
                absl::StatusCode::kInvalidArgument, "snapshot.keep_last");
  EXPECT_STATUS(ParseJobSpec(model + "snapshot: {every_step: 5}", "s"),
                absl::StatusCode::kInvalidArgument, "every_step");
  EXPECT_STATUS(ParseJobSpec(model + "data: {dataset: imagenet}", "s"),
                absl::StatusCode::kInvalidArgument, "data.dataset");
  EXPECT_STATUS(ParseJobSpec(model + "model: {loss: hinge}", "s"),
                absl::StatusCode::kInvalidArgument, "");
  EXPECT_STATUS(ParseJobSpec("name: x", "s"), absl::StatusCode::kInvalidArgument, "model.layers");
}

TEST(JobSpec, SyntaxErrorGivesTheLine) {
  EXPECT_STATUS(ParseJobSpec("name: x\nmodel: {layers: [\n", "broken.yaml"),
                absl::StatusCode::kInvalidArgument, "broken.yaml");
}

TEST(JobSpec, MissingFileIsNotFound) {
  EXPECT_STATUS(LoadJobSpecFile("/nonexistent/spec.yaml"), absl::StatusCode::kNotFound,
                "/nonexistent/spec.yaml");
}

TEST(JobSpec, TheShippedExampleParses) {
  auto spec = LoadJobSpecFile("examples/fmnist_mlp.yaml");
  ASSERT_OK(spec);
  EXPECT_EQ(spec->model().layers_size(), 5);
}

}  // namespace
}  // namespace psgrid
