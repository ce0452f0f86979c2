// Every job spec in examples/ parses, and its model builds on its data (the data sets are
// Debian packages: skipped, saying so, where one is missing; relative data paths are the
// repository's, as the examples run from its root). The small "alley" RNN also trains, through
// `psgrid local` with 2 workers, to predict every next character of its validation text.
#include <filesystem>
#include <string>

#include "nlohmann/json.hpp"
#include "tests/cli_runner.h"

#include "core/backend/cpu_backend.h"
#include "core/data/loader.h"
#include "core/model.h"
#include "proto/job_spec_codec.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

class ExampleSpec : public ::testing::TestWithParam<std::string> {};

TEST_P(ExampleSpec, ParsesAndBuildsItsModelOnItsData) {
  const std::string path = std::string(PSGRID_SOURCE_DIR) + "/examples/" + GetParam();
  auto spec = LoadJobSpecFile(path);
  ASSERT_OK(spec);
  if (std::filesystem::path(spec->data().path()).is_relative()) {
    spec->mutable_data()->set_path(std::string(PSGRID_SOURCE_DIR) + "/" + spec->data().path());
  }
  if (!std::filesystem::exists(spec->data().path())) {
    GTEST_SKIP() << spec->data().path() << " is not on this machine";
  }
  auto shape = DescribeJobData(spec->data());
  ASSERT_OK(shape);
  CpuBackend backend;
  auto model = Model::Create(spec->model(), shape->sample_shape, shape->output_width, &backend);
  ASSERT_OK(model);
  EXPECT_GT((*model)->parameters().total_size(), 0);
}

INSTANTIATE_TEST_SUITE_P(Examples, ExampleSpec,
                         ::testing::Values("fmnist_mlp.yaml", "fmnist_mlp_async.yaml",
                                           "fmnist_cnn.yaml", "gpl_char_lstm.yaml",
                                           "alley_rnn.yaml"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param.substr(0, info.param.find('.'));
                           for (char& c : name) c = c == '_' ? 'X' : c;
                           return name;
                         });

// The recurrent chapter's example: after a, al, all, alle the RNN predicts l, l, e, y (and the
// space and the next word's a): validation accuracy 1.0 on the held-out tail of the text.
TEST(AlleyRnnExample, TrainsThroughPsgridLocalToPredictEveryNextCharacter) {
  const std::string source = PSGRID_SOURCE_DIR;
  std::string spec = testing::ReadBytes(source + "/examples/alley_rnn.yaml");
  const std::string from = "path: examples/data/alley.txt";
  const size_t at = spec.find(from);
  ASSERT_NE(at, std::string::npos) << "the example's data path changed";
  spec.replace(at, from.size(), "path: " + source + "/examples/data/alley.txt");
  const std::string spec_path = testing::WriteTempFile("alley_rnn.yaml", spec);
  testing::CliRun run = testing::RunPsgrid(
      {"local", spec_path, "-o", "json", "--worker-binary", PSGRID_BINARY});
  ASSERT_EQ(run.code, 0) << run.err;
  const nlohmann::json r = nlohmann::json::parse(testing::LastLine(run.out), nullptr, false);
  ASSERT_TRUE(r.is_object()) << run.out;
  EXPECT_EQ(r["state"], "completed");
  EXPECT_EQ(r["workers"], 2);
  EXPECT_EQ(r["test_accuracy"].get<double>(), 1.0);
  EXPECT_LT(r["test_loss"].get<double>(), 0.05);
}

}  // namespace
}  // namespace psgrid
