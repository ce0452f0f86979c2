// Weights out of psgrid: `psgrid local --export` writes a safetensors file with PyTorch
// state-dict names and shapes, and torch.nn.Sequential of the same layers loads it strictly and
// predicts as psgrid does (when python3-torch is installed; skipped, saying so, otherwise).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

#include "absl/strings/str_split.h"
#include "client/cli.h"
#include "core/io/safetensors.h"
#include "nlohmann/json.hpp"
#include "proto/job_spec_codec.h"
#include "server/job_manager.h"
#include "tests/cli_runner.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

using ::psgrid::testing::CliRun;
using ::psgrid::testing::LastLine;
using ::psgrid::testing::RunPsgrid;
using ::psgrid::testing::TempPath;
using ::psgrid::testing::TorchAvailable;

constexpr char kData[] = "/usr/share/datasets/fashion-mnist";

TEST(Export, LocalExportIsASafetensorsFileThatPyTorchLoadsAndAgreesWith) {
  const std::string spec = TempPath("export.yaml");
  std::ofstream(spec) << "name: export\n"
                         "model: {layers: [{type: dense, units: 32}, {type: relu}, "
                         "{type: dense, units: 10}]}\n"
                         "data: {dataset: fashion-mnist, path: " << kData << "}\n"
                         "training: {workers: 2, batch_size: 32, epochs: 1, max_steps: 40}\n"
                         "optimizer: {type: momentum, learning_rate: 0.05, momentum: 0.9}\n";
  const std::string file = TempPath("export.safetensors");
  CliRun run = RunPsgrid({"local", spec, "--export", file, "-o", "json", "--worker-binary",
                          PSGRID_BINARY});
  ASSERT_EQ(run.code, 0) << run.err;
  EXPECT_THAT(run.err, ::testing::HasSubstr("weights of step 40 written to " + file));
  const nlohmann::json result = nlohmann::json::parse(LastLine(run.out), nullptr, false);
  ASSERT_TRUE(result.is_object()) << run.out;

  auto read = ReadSafetensors(file);
  ASSERT_OK(read);
  std::vector<std::string> names;
  std::vector<Shape> shapes;
  for (const auto& [name, tensor] : read->tensors) {
    names.push_back(name);
    shapes.push_back(tensor.shape());
  }
  EXPECT_THAT(names, ::testing::ElementsAre("0.weight", "0.bias", "2.weight", "2.bias"));
  EXPECT_THAT(shapes, ::testing::ElementsAre(Shape{32, 784}, Shape{32}, Shape{10, 32}, Shape{10}));
  EXPECT_EQ(read->metadata["psgrid.step"], "40");

  // psgrid evaluate on the file gives the job's own final numbers.
  CliRun evaluated = RunPsgrid({"evaluate", file, "--spec", spec, "-o", "json"});
  ASSERT_EQ(evaluated.code, 0) << evaluated.err;
  const nlohmann::json eval = nlohmann::json::parse(LastLine(evaluated.out), nullptr, false);
  ASSERT_TRUE(eval.is_object()) << evaluated.out;
  // (Up to float rounding: the worker and this process may run different BLAS thread counts.)
  EXPECT_NEAR(eval["test_accuracy"].get<double>(), result["test_accuracy"].get<double>(), 2e-4);
  EXPECT_NEAR(eval["test_loss"].get<double>(), result["test_loss"].get<double>(), 1e-6);

  // A job that starts from the file starts from exactly its weights.
  auto imported = ParseJobSpec(
      "model: {layers: [{type: dense, units: 32}, {type: relu}, {type: dense, units: 10}], "
      "init_from: " + file + "}\n",
      "import");
  ASSERT_OK(imported);
  JobManager manager({});
  auto id = manager.Submit(*imported);
  ASSERT_OK(id);
  auto start = (*manager.Get(*id))->Weights("");
  ASSERT_OK(start);
  ASSERT_EQ(start->tensors.size(), read->tensors.size());
  for (size_t i = 0; i < start->tensors.size(); ++i) {
    EXPECT_EQ(start->tensors[i].first, read->tensors[i].first);
    EXPECT_EQ(0, std::memcmp(start->tensors[i].second.data(), read->tensors[i].second.data(),
                             read->tensors[i].second.size() * sizeof(float)));
  }
  // One that does not fit is refused at submit, naming the tensor.
  v1::JobSpec wider = *imported;
  wider.mutable_model()->mutable_layers(0)->set_units(64);
  EXPECT_STATUS(manager.Submit(wider), absl::StatusCode::kInvalidArgument,
                "tensor 0.weight has shape [32, 784], the model needs [64, 784]");
  v1::JobSpec missing = *imported;
  missing.mutable_model()->set_init_from(TempPath("none.safetensors"));
  EXPECT_STATUS(manager.Submit(missing), absl::StatusCode::kNotFound, "model.init_from");
  EXPECT_EQ(manager.List().size(), 1u);

  if (!TorchAvailable()) {
    GTEST_SKIP() << "python3-torch is not installed: the PyTorch half of the check is skipped";
  }
  const std::string out = TempPath("export_torch.json");
  const std::string command = "/usr/bin/python3 tests/torch_export_check.py " + file + " " +
                              kData + " '[[\"dense\", 32], [\"relu\", 0], [\"dense\", 10]]' > " +
                              out;
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  std::ifstream in(out);
  const nlohmann::json torch = nlohmann::json::parse(in, nullptr, false);
  ASSERT_TRUE(torch.is_object());
  // The same predictions, up to float rounding deciding a near tie (at most 2 of 10,000).
  EXPECT_NEAR(torch["test_accuracy"].get<double>(), result["test_accuracy"].get<double>(), 2e-4);
}

}  // namespace
}  // namespace psgrid
