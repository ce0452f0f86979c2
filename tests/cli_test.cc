// The psgrid command line, run in-process: exit codes and what the user reads. `local` runs its
// workers from the built psgrid program (PSGRID_BINARY), since this test binary is not one.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "client/cli.h"
#include "client/progress_printer.h"
#include "nlohmann/json.hpp"
#include "tests/cli_runner.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

using ::testing::HasSubstr;

using ::psgrid::testing::CliRun;
using ::psgrid::testing::LastLine;
using ::psgrid::testing::RunPsgrid;
using ::psgrid::testing::WriteTempFile;

// y = 3x on 50 rows (45 train, 5 test).
std::string LinearCsv(const std::string& name) {
  std::string csv = "x,y\n";
  for (int i = 0; i < 50; ++i) csv += std::to_string(i / 50.0) + "," + std::to_string(3 * i / 50.0) + "\n";
  return WriteTempFile(name, csv);
}


TEST(Cli, LocalSingleProcessTrainsACsvJobAndReportsTheResult) {
  const std::string data = LinearCsv("cli.csv");
  const std::string spec = WriteTempFile(
      "cli.yaml", "model: {layers: [{type: dense, units: 1}], loss: mse}\n"
                  "data: {dataset: csv, path: " + data + "}\n"
                  "training: {batch_size: 8, epochs: 2}\n");
  CliRun run = RunPsgrid({"local", spec, "--single-process"});
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("epoch 2/2"));
  EXPECT_THAT(run.out, HasSubstr("samples/s"));
  EXPECT_THAT(run.out, HasSubstr("done: 12 steps"));  // ceil(45 / 8) = 6 per epoch
}

TEST(Cli, LocalSingleProcessWithJsonPrintsOneJsonObject) {
  const std::string data = WriteTempFile("cli2.csv", "1,2\n2,4\n3,6\n4,8\n5,10\n");
  const std::string spec = WriteTempFile(
      "cli2.yaml", "model: {layers: [{type: dense, units: 1}], loss: mse}\n"
                   "data: {dataset: csv, path: " + data + "}\n");
  CliRun run = RunPsgrid({"local", spec, "--single-process", "--json", "--max-steps", "1"});
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_THAT(run.out, ::testing::StartsWith("{\"job\":"));
  const nlohmann::json result = nlohmann::json::parse(run.out, nullptr, false);
  ASSERT_TRUE(result.is_object()) << run.out;
  EXPECT_EQ(result["steps"], 1);
  EXPECT_EQ(result["state"], "completed");
  EXPECT_TRUE(result.contains("samples_per_s"));  // the benchmarks' keys stay
}

// A status that arrives epochs after the previous one (a fast job): every epoch still gets its
// line, from the status's history of epoch results, and none twice.
TEST(ProgressPrinter, ShowsEveryEpochOfTheHistory) {
  char* buffer = nullptr;
  size_t size = 0;
  std::FILE* out = open_memstream(&buffer, &size);
  ASSERT_NE(out, nullptr);
  {
    ProgressPrinter printer(out, ProgressPrinter::Mode::kLines);
    v1::JobStatus s;
    s.set_job_id("job-1");
    s.set_state(v1::JOB_STATE_RUNNING);
    s.set_epochs(3);
    s.set_total_steps(9);
    printer.Update(s);
    s.set_step(9);
    s.set_epoch(3);
    for (int e = 1; e <= 3; ++e) {
      v1::EpochResult* r = s.add_history();
      r->set_epoch(e);
      r->set_step(3 * e);
      r->set_train_loss(1.0 / e);
      r->set_test_loss(2.0 / e);
    }
    printer.Update(s);  // epochs 1 to 3 at once
    s.set_state(v1::JOB_STATE_COMPLETED);
    printer.Update(s);
  }
  std::fclose(out);
  const std::string text(buffer, size);
  std::free(buffer);
  EXPECT_THAT(text, HasSubstr("epoch 1/3  step 3/9  loss 1.0000"));
  EXPECT_THAT(text, HasSubstr("epoch 2/3  step 6/9  loss 0.5000"));
  EXPECT_THAT(text, HasSubstr("epoch 3/3  step 9/9  loss 0.3333"));
  size_t lines_of_epoch_3 = 0;
  for (size_t at = text.find("epoch 3/3"); at != std::string::npos;
       at = text.find("epoch 3/3", at + 1)) {
    ++lines_of_epoch_3;
  }
  EXPECT_EQ(lines_of_epoch_3, 1u) << text;
}

TEST(Cli, LocalRunsWorkerProcessesAndReportsTheResult) {
  const std::string data = LinearCsv("cli_dist.csv");
  const std::string spec = WriteTempFile(
      "cli_dist.yaml", "model: {layers: [{type: dense, units: 1}], loss: mse}\n"
                       "data: {dataset: csv, path: " + data + "}\n"
                       "training: {batch_size: 8, epochs: 2}\n");
  CliRun run = RunPsgrid({"local", spec, "--workers", "2", "--worker-binary", PSGRID_BINARY});
  EXPECT_EQ(run.code, 0) << run.out << run.err;
  EXPECT_THAT(run.out, HasSubstr("2 worker process(es)"));
  EXPECT_THAT(run.out, HasSubstr("epoch 1/2"));
  EXPECT_THAT(run.out, HasSubstr("epoch 2/2"));
  EXPECT_THAT(run.out, HasSubstr("samples/s"));
  // 2 workers x batch 8: ceil(45 / 16) = 3 steps per epoch.
  EXPECT_THAT(LastLine(run.out), HasSubstr("completed: 6 steps, 2 epoch(s)"));
}

TEST(Cli, LocalWithJsonEndsWithTheResultObject) {
  const std::string data = LinearCsv("cli_json.csv");
  const std::string spec = WriteTempFile(
      "cli_json.yaml", "model: {layers: [{type: dense, units: 1}], loss: mse}\n"
                       "data: {dataset: csv, path: " + data + "}\n"
                       "training: {batch_size: 4, epochs: 3, workers: 2}\n");
  CliRun run = RunPsgrid({"local", spec, "-o", "json", "--max-steps", "4", "--worker-binary",
                          PSGRID_BINARY});
  EXPECT_EQ(run.code, 0) << run.err;
  const nlohmann::json result = nlohmann::json::parse(LastLine(run.out), nullptr, false);
  ASSERT_TRUE(result.is_object()) << run.out;
  EXPECT_EQ(result["state"], "completed");
  EXPECT_EQ(result["steps"], 4);
  EXPECT_EQ(result["epochs"], 1);  // 4 steps of 8 samples: within the first epoch of 45
  for (const char* key : {"train_loss", "test_accuracy", "samples_per_second", "wall_seconds"}) {
    EXPECT_TRUE(result.contains(key)) << key;
  }
  EXPECT_GT(result["samples_per_second"].get<double>(), 0);
  EXPECT_THAT(run.err, HasSubstr("epoch 1/1"));  // progress on stderr; max_steps ends it
}

TEST(Cli, LocalFailsAtOnceNamingAWorkerThatExits) {
  const std::string data = LinearCsv("cli_dead.csv");
  const std::string spec = WriteTempFile(
      "cli_dead.yaml", "model: {layers: [{type: dense, units: 1}], loss: mse}\n"
                       "data: {dataset: csv, path: " + data + "}\n"
                       "training: {workers: 2, epochs: 1000}\n");
  const absl::Time start = absl::Now();
  // /bin/false exits 1 whatever its arguments: a worker that dies at once.
  CliRun run = RunPsgrid({"local", spec, "--worker-binary", "/bin/false"});
  EXPECT_EQ(run.code, 1);
  EXPECT_THAT(run.err, HasSubstr("worker process 1 of 2 (pid "));
  EXPECT_THAT(run.err, HasSubstr("exited with status 1"));
  EXPECT_THAT(run.out, HasSubstr("failed"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));  // not the server's liveness timeout
}

TEST(Cli, LocalWithAMissingWorkerBinaryFailsNamingIt) {
  const std::string data = LinearCsv("cli_nobin.csv");
  const std::string spec = WriteTempFile(
      "cli_nobin.yaml", "model: {layers: [{type: dense, units: 1}], loss: mse}\n"
                        "data: {dataset: csv, path: " + data + "}\n");
  CliRun run = RunPsgrid({"local", spec, "--worker-binary", "/nonexistent/psgrid"});
  EXPECT_EQ(run.code, 1);
  EXPECT_THAT(run.err, HasSubstr("cannot start /nonexistent/psgrid"));
}

TEST(Cli, LocalStartedByAPsgridChildStartsNoWorkers) {
  // What a worker binary that is not psgrid (e.g. a test program) would do: run `local` again.
  const std::string data = LinearCsv("cli_nested.csv");
  const std::string spec = WriteTempFile(
      "cli_nested.yaml", "model: {layers: [{type: dense, units: 1}], loss: mse}\n"
                         "data: {dataset: csv, path: " + data + "}\n");
  setenv("PSGRID_SPAWNED_CHILD", "1", 1);
  CliRun run = RunPsgrid({"local", spec, "--worker-binary", PSGRID_BINARY});
  unsetenv("PSGRID_SPAWNED_CHILD");
  EXPECT_EQ(run.code, 1);
  EXPECT_THAT(run.err, HasSubstr("refusing to start workers"));
}

TEST(Cli, LocalInterruptedBySigintStopsTheJobAndExits130) {
  const std::string data = LinearCsv("cli_int.csv");
  const std::string spec = WriteTempFile(
      "cli_int.yaml", "model: {layers: [{type: dense, units: 1}], loss: mse}\n"
                      "data: {dataset: csv, path: " + data + "}\n"
                      "training: {workers: 2, batch_size: 1, epochs: 100000}\n");
  const std::string data_dir = ::psgrid::testing::TempPath("cli_int_dir");
  std::filesystem::remove_all(data_dir);
  std::string binary = PSGRID_BINARY;
  std::string local = "local";
  std::string worker_binary = "--worker-binary";
  std::string data_dir_flag = "--data-dir";
  std::string program = "psgrid";
  std::string spec_arg = spec;
  std::string dir_arg = data_dir;
  char* argv[] = {program.data(), local.data(), spec_arg.data(), worker_binary.data(),
                  binary.data(), data_dir_flag.data(), dir_arg.data()};
  int code = -1;
  std::thread run([&] { code = RunCli(7, argv); });
  // The job's record appears once the job is submitted, after the handlers are installed.
  const std::filesystem::path jobs = std::filesystem::path(data_dir) / "jobs";
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (!std::filesystem::exists(jobs) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_TRUE(std::filesystem::exists(jobs));
  const absl::Time start = absl::Now();
  kill(getpid(), SIGINT);
  run.join();
  EXPECT_EQ(code, 130);
  EXPECT_LT(absl::Now() - start, absl::Seconds(15));
}

TEST(Cli, BadSpecFailsWithTheFileAndField) {
  const std::string spec = WriteTempFile("bad.yaml", "model: {layers: [{type: dense, units: 10}]}\n"
                                                 "training: {workers: 0.5}\n");
  CliRun run = RunPsgrid({"local", spec});
  EXPECT_EQ(run.code, 1);
  EXPECT_THAT(run.err, HasSubstr("bad.yaml"));
  EXPECT_THAT(run.err, HasSubstr("training.workers"));
}

TEST(Cli, ModelErrorsNameTheSpecFileAndField) {
  const std::string data = WriteTempFile("cli3.csv", "1,2\n2,4\n3,6\n");
  const std::string spec = WriteTempFile(
      "model_bad.yaml", "model: {layers: [{type: dense, units: 1}, {type: softplus}], loss: mse}\n"
                        "data: {dataset: csv, path: " + data + "}\n");
  CliRun run = RunPsgrid({"summary", spec});
  EXPECT_EQ(run.code, 1);
  EXPECT_THAT(run.err, HasSubstr("model_bad.yaml: model.layers[1].type"));
  // The same error from the server that `local` starts.
  run = RunPsgrid({"local", spec, "--worker-binary", PSGRID_BINARY});
  EXPECT_EQ(run.code, 1);
  EXPECT_THAT(run.err, HasSubstr("model_bad.yaml: model.layers[1].type"));
}

TEST(Cli, MissingSubcommandIsAUsageError) {
  EXPECT_EQ(RunPsgrid({}).code, 2);
  EXPECT_EQ(RunPsgrid({"local"}).code, 2);
  EXPECT_EQ(RunPsgrid({"status"}).code, 2);
}

TEST(Cli, UnknownOutputFormatIsAUsageError) {
  CliRun run = RunPsgrid({"list", "-o", "yaml"});
  EXPECT_EQ(run.code, 2);
}

TEST(Cli, BlasThreadsWithoutSingleProcessIsAUsageError) {
  // Worker processes take --threads; --blas-threads is the one-process reference's.
  CliRun run = RunPsgrid({"local", "spec.yaml", "--blas-threads", "2"});
  EXPECT_EQ(run.code, 2);
  EXPECT_THAT(run.err, HasSubstr("--single-process"));
}

TEST(Cli, WorkerSubcommandPassesItsFlagsToTheWorker) {
  CliRun run = RunPsgrid({"worker", "--server", "127.0.0.1:1", "--connect-timeout", "0.2",
                          "--threads", "1", "--quiet"});
  EXPECT_EQ(run.code, 1);
  EXPECT_THAT(run.err, HasSubstr("127.0.0.1:1"));
  EXPECT_EQ(RunPsgrid({"worker", "--no-such-flag"}).code, 2);
}

TEST(Cli, VersionPrintsTheVersion) {
  CliRun run = RunPsgrid({"version"});
  EXPECT_EQ(run.code, 0);
  EXPECT_THAT(run.out, ::testing::StartsWith("psgrid "));
}

}  // namespace
}  // namespace psgrid
