// The psgrid command line, run in-process: exit codes and what the user reads.
#include <fstream>
#include <vector>

#include "client/cli.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

struct CliRun {
  int code;
  std::string out;
  std::string err;
};

CliRun RunPsgrid(std::vector<std::string> args) {
  args.insert(args.begin(), "psgrid");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  const int code = RunCli(static_cast<int>(argv.size()), argv.data());
  std::fflush(stdout);
  std::fflush(stderr);
  CliRun run{code, ::testing::internal::GetCapturedStdout(), ::testing::internal::GetCapturedStderr()};
  return run;
}

std::string WriteFile(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

TEST(Cli, LocalTrainsACsvJobAndReportsTheResult) {
  std::string csv = "x,y\n";
  for (int i = 0; i < 50; ++i) csv += std::to_string(i / 50.0) + "," + std::to_string(3 * i / 50.0) + "\n";
  const std::string data = WriteFile("cli.csv", csv);
  const std::string spec = WriteFile(
      "cli.yaml", "model: {layers: [{type: dense, units: 1}], loss: mse}\n"
                  "data: {dataset: csv, path: " + data + "}\n"
                  "training: {batch_size: 8, epochs: 2}\n");
  CliRun run = RunPsgrid({"local", spec});
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_THAT(run.out, ::testing::HasSubstr("epoch 2/2"));
  EXPECT_THAT(run.out, ::testing::HasSubstr("samples/s"));
  EXPECT_THAT(run.out, ::testing::HasSubstr("done: 12 steps"));  // ceil(45 / 8) = 6 per epoch
}

TEST(Cli, LocalWithJsonPrintsOneJsonObject) {
  const std::string data = WriteFile("cli2.csv", "1,2\n2,4\n3,6\n4,8\n5,10\n");
  const std::string spec = WriteFile(
      "cli2.yaml", "model: {layers: [{type: dense, units: 1}], loss: mse}\n"
                   "data: {dataset: csv, path: " + data + "}\n");
  CliRun run = RunPsgrid({"local", spec, "--json", "--max-steps", "1"});
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_THAT(run.out, ::testing::StartsWith("{\"job\": "));
  EXPECT_THAT(run.out, ::testing::HasSubstr("\"steps\": 1,"));
}

TEST(Cli, BadSpecFailsWithTheFileAndField) {
  const std::string spec = WriteFile("bad.yaml", "model: {layers: [{type: dense, units: 10}]}\n"
                                                 "training: {workers: 0.5}\n");
  CliRun run = RunPsgrid({"local", spec});
  EXPECT_EQ(run.code, 1);
  EXPECT_THAT(run.err, ::testing::HasSubstr("bad.yaml"));
  EXPECT_THAT(run.err, ::testing::HasSubstr("training.workers"));
}

TEST(Cli, ModelErrorsNameTheSpecFileAndField) {
  const std::string data = WriteFile("cli3.csv", "1,2\n2,4\n3,6\n");
  const std::string spec = WriteFile(
      "model_bad.yaml", "model: {layers: [{type: dense, units: 1}, {type: softplus}], loss: mse}\n"
                        "data: {dataset: csv, path: " + data + "}\n");
  CliRun run = RunPsgrid({"summary", spec});
  EXPECT_EQ(run.code, 1);
  EXPECT_THAT(run.err, ::testing::HasSubstr("model_bad.yaml: model.layers[1].type"));
}

TEST(Cli, MissingSubcommandIsAUsageError) {
  EXPECT_EQ(RunPsgrid({}).code, 2);
  EXPECT_EQ(RunPsgrid({"local"}).code, 2);
}

TEST(Cli, VersionPrintsTheVersion) {
  CliRun run = RunPsgrid({"version"});
  EXPECT_EQ(run.code, 0);
  EXPECT_THAT(run.out, ::testing::StartsWith("psgrid "));
}

}  // namespace
}  // namespace psgrid
