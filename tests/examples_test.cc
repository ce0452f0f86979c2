// Every job spec in examples/ parses, and its model builds on its data (the data sets are
// Debian packages: skipped, saying so, where one is missing).
#include <filesystem>
#include <string>

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
                                           "fmnist_cnn.yaml", "gpl_char_lstm.yaml"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string name = info.param.substr(0, info.param.find('.'));
                           for (char& c : name) c = c == '_' ? 'X' : c;
                           return name;
                         });

}  // namespace
}  // namespace psgrid
