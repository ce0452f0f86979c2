// The client end to end: a JobManager and GrpcServer on 127.0.0.1:0 in this process, real
// worker processes started from the built psgrid program (PSGRID_BINARY), and the psgrid
// command line (submit, list, status, watch, stop) run in-process against them. Waits are
// bounded; job states are awaited through the in-process Job, never by sleeping.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "client/child_process.h"
#include "client/cli.h"
#include "client/rpc/grpc_control_client.h"
#include "nlohmann/json.hpp"
#include "server/job_manager.h"
#include "server/rpc/grpc_server.h"
#include "tests/cli_runner.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

using ::testing::HasSubstr;

using ::psgrid::testing::CliRun;
using ::psgrid::testing::LastLine;
using ::psgrid::testing::RunPsgrid;
using ::psgrid::testing::WriteTempFile;

// Runs the command line without capturing its output (for calls on other threads).
int RunPsgridUncaptured(std::vector<std::string> args) {
  args.insert(args.begin(), "psgrid");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  return RunCli(static_cast<int>(argv.size()), argv.data());
}



// A job file for linear regression on a small CSV (y = 2a - b; 10% held out).
std::string CsvSpec(const std::string& name, int epochs, int batch_size = 4, int rows = 80) {
  std::string csv = "a,b,y\n";
  for (int i = 0; i < rows; ++i) {
    const double a = i / static_cast<double>(rows), b = (i % 7) / 7.0;
    absl::StrAppend(&csv, a, ",", b, ",", 2 * a - b, "\n");
  }
  const std::string data = WriteTempFile(name + ".csv", csv);
  return WriteTempFile(name + ".yaml",
                   absl::StrCat("name: ", name, "\n",
                                "model: {layers: [{type: dense, units: 1}], loss: mse}\n",
                                "data: {dataset: csv, path: ", data, "}\n",
                                "training: {workers: 2, batch_size: ", batch_size,
                                ", epochs: ", epochs, "}\n",
                                "optimizer: {type: sgd, learning_rate: 0.1}\n"));
}

class ClientE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unsetenv("PSGRID_SERVER");
    JobManagerOptions options;
    options.worker_timeout = absl::Seconds(3);
    options.liveness_period = absl::Milliseconds(100);
    manager_ = std::make_unique<JobManager>(options);
    absl::StatusOr<std::unique_ptr<GrpcServer>> server =
        GrpcServer::Start("127.0.0.1:0", manager_.get());
    ASSERT_OK(server);
    server_ = *std::move(server);
    address_ = absl::StrCat("127.0.0.1:", server_->port());
  }

  void TearDown() override {
    manager_->StopAll("test over");
    for (auto& w : workers_) {
      if (!w->WaitFor(absl::Seconds(20))) w->Terminate(absl::Seconds(2));
    }
    workers_.clear();
    server_->Shutdown(absl::Seconds(1));
    server_->Wait();
  }

  // Submits through the command line; the id is the last line of stdout.
  std::string Submit(const std::string& spec_path) {
    CliRun run = RunPsgrid({"submit", spec_path, "--server", address_});
    EXPECT_EQ(run.code, 0) << run.err;
    EXPECT_THAT(run.err, HasSubstr("psgrid worker --server " + address_));
    return LastLine(run.out);
  }

  // Starts `count` worker processes for the job; returns their indices in workers_.
  std::vector<size_t> StartWorkers(const std::string& job_id, int count) {
    std::vector<size_t> started;
    for (int i = 0; i < count; ++i) {
      absl::StatusOr<std::unique_ptr<ChildProcess>> child = ChildProcess::Spawn(
          {PSGRID_BINARY, "worker", "--server", address_, "--job", job_id, "--quiet"});
      EXPECT_OK(child);
      if (!child.ok()) continue;
      started.push_back(workers_.size());
      workers_.push_back(*std::move(child));
    }
    return started;
  }

  // Waits (bounded) until `ready` holds for the job's status; returns the status then.
  template <typename Pred>
  v1::JobStatus WaitForJob(const std::string& job_id, Pred ready,
                           absl::Duration timeout = absl::Seconds(30)) {
    absl::StatusOr<std::shared_ptr<Job>> job = manager_->Get(job_id);
    EXPECT_OK(job);
    if (!job.ok()) return v1::JobStatus();
    const absl::Time deadline = absl::Now() + timeout;
    int64_t revision = -1;
    v1::JobStatus status = (*job)->WaitForChange(&revision, deadline);
    while (!ready(status) && absl::Now() < deadline) {
      status = (*job)->WaitForChange(&revision, deadline);
    }
    return status;
  }

  static bool Running(const v1::JobStatus& s) {
    return s.state() == v1::JOB_STATE_RUNNING && s.step() > 0;
  }

  std::unique_ptr<JobManager> manager_;
  std::unique_ptr<GrpcServer> server_;
  std::string address_;
  std::vector<std::unique_ptr<ChildProcess>> workers_;
};

TEST_F(ClientE2eTest, SubmitWatchAndStatusOfATwoWorkerJob) {
  const std::string id = Submit(CsvSpec("two", /*epochs=*/3));
  ASSERT_FALSE(id.empty());
  StartWorkers(id, 2);

  CliRun watch = RunPsgrid({"watch", id, "--server", address_});
  EXPECT_EQ(watch.code, 0) << watch.out << watch.err;
  EXPECT_THAT(watch.out, HasSubstr("epoch 3/3"));
  EXPECT_THAT(LastLine(watch.out), HasSubstr("job " + id + " completed: 27 steps"));  // 72 / (2 x 4) x 3

  CliRun status = RunPsgrid({"status", id, "-o", "json", "--server", address_});
  EXPECT_EQ(status.code, 0) << status.err;
  const nlohmann::json j = nlohmann::json::parse(status.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << status.out;
  EXPECT_EQ(j["id"], id);
  EXPECT_EQ(j["state"], "completed");
  EXPECT_EQ(j["step"], 27);
  EXPECT_EQ(j["epoch"], 3);
  EXPECT_GT(j["train_loss"].get<double>(), 0);
  EXPECT_TRUE(j["test_accuracy"].is_number());
  EXPECT_GT(j["samples_per_second"].get<double>(), 0);
  EXPECT_EQ(j["spec"]["training"]["workers"], 2);
  EXPECT_EQ(j["consistency"], "sync");
  EXPECT_EQ(j["staleness_histogram"], nlohmann::json::array({54}));  // 2 x 27, none stale
  EXPECT_EQ(j["late_gradients"], 0);
  EXPECT_EQ(j["bad_gradients"], 0);

  CliRun table = RunPsgrid({"status", id, "--server", address_});
  EXPECT_THAT(table.out, HasSubstr("completed"));
  EXPECT_THAT(table.out, HasSubstr("consistency:   sync"));
  EXPECT_THAT(table.out, HasSubstr("staleness:     0:54"));
  for (auto& w : workers_) {
    ASSERT_TRUE(w->WaitFor(absl::Seconds(20)));
    EXPECT_TRUE(w->succeeded()) << w->DescribeExit();
  }
}

TEST_F(ClientE2eTest, TwoJobsRunAtOnce) {
  const std::string first = Submit(CsvSpec("first", 2));
  const std::string second = Submit(CsvSpec("second", 2));
  ASSERT_NE(first, second);
  StartWorkers(first, 2);
  StartWorkers(second, 2);

  CliRun watch = RunPsgrid({"watch", first, "--server", address_, "-o", "json"});
  EXPECT_EQ(watch.code, 0) << watch.err;
  const nlohmann::json last = nlohmann::json::parse(LastLine(watch.out), nullptr, false);
  ASSERT_TRUE(last.is_object()) << watch.out;
  EXPECT_EQ(last["state"], "completed");
  EXPECT_EQ(RunPsgrid({"watch", second, "--server", address_}).code, 0);

  CliRun list = RunPsgrid({"list", "-o", "json", "--server", address_});
  EXPECT_EQ(list.code, 0) << list.err;
  const nlohmann::json jobs = nlohmann::json::parse(list.out, nullptr, false);
  ASSERT_TRUE(jobs.is_array()) << list.out;
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[0]["id"], first);
  EXPECT_EQ(jobs[1]["id"], second);
  EXPECT_EQ(jobs[1]["state"], "completed");
  CliRun table = RunPsgrid({"list", "--server", address_});
  EXPECT_THAT(table.out, HasSubstr("STATE"));
  EXPECT_THAT(table.out, HasSubstr(first));
  EXPECT_THAT(table.out, HasSubstr(second));
}

TEST_F(ClientE2eTest, StopEndsTheWatchWithAFailureAndTheWorkersLeave) {
  const std::string id = Submit(CsvSpec("long", /*epochs=*/100000, /*batch_size=*/1));
  StartWorkers(id, 2);
  int watch_code = -1;
  std::thread watcher([&] { watch_code = RunPsgridUncaptured({"watch", id, "--server", address_}); });
  ASSERT_TRUE(Running(WaitForJob(id, Running)));

  CliRun stop = RunPsgrid({"stop", id, "--server", address_});
  watcher.join();
  EXPECT_EQ(stop.code, 0) << stop.err;
  EXPECT_THAT(stop.out, HasSubstr("stopped"));
  EXPECT_EQ(watch_code, 1);
  EXPECT_EQ(RunPsgrid({"watch", id, "--server", address_}).code, 1);  // an ended job: at once
  for (auto& w : workers_) {
    ASSERT_TRUE(w->WaitFor(absl::Seconds(20)));
    EXPECT_TRUE(w->succeeded()) << w->DescribeExit();  // a stopped job is a normal end
  }
}

TEST_F(ClientE2eTest, AKilledWorkerFailsTheJobNamingIt) {
  const std::string id = Submit(CsvSpec("victim", /*epochs=*/100000, /*batch_size=*/1));
  const std::vector<size_t> started = StartWorkers(id, 2);
  ASSERT_EQ(started.size(), 2u);
  ASSERT_TRUE(Running(WaitForJob(id, Running)));
  ChildProcess& victim = *workers_[started[1]];
  const pid_t pid = victim.pid();
  victim.Signal(SIGKILL);
  ASSERT_TRUE(victim.WaitFor(absl::Seconds(5)));

  const absl::Time start = absl::Now();
  CliRun watch = RunPsgrid({"watch", id, "--server", address_});
  EXPECT_EQ(watch.code, 1);
  EXPECT_LT(absl::Now() - start, absl::Seconds(15));  // the 3 s liveness timeout, not forever
  CliRun status = RunPsgrid({"status", id, "-o", "json", "--server", address_});
  const nlohmann::json j = nlohmann::json::parse(status.out, nullptr, false);
  ASSERT_TRUE(j.is_object()) << status.out;
  EXPECT_EQ(j["state"], "failed");
  // The worker's name is host:pid.
  EXPECT_THAT(j["message"].get<std::string>(), HasSubstr(absl::StrCat(":", pid)));
  ChildProcess& survivor = *workers_[started[0]];
  EXPECT_TRUE(survivor.WaitFor(absl::Seconds(20)));  // it notices the failure and leaves
  // And the server still answers.
  EXPECT_EQ(RunPsgrid({"list", "--server", address_}).code, 0);
}

TEST_F(ClientE2eTest, SubmitOfABadSpecFailsNamingTheField) {
  const std::string bad_range = WriteTempFile("bad_range.yaml",
                                          "model: {layers: [{type: dense, units: 1}]}\n"
                                          "training: {workers: -1}\n");
  CliRun run = RunPsgrid({"submit", bad_range, "--server", address_});
  EXPECT_EQ(run.code, 1);
  EXPECT_THAT(run.err, HasSubstr("training.workers"));
  EXPECT_TRUE(run.out.empty()) << run.out;

  // Found by the server, which looks at the data: the message still names the file and field.
  const std::string data = WriteTempFile("bad_model.csv", "1,2\n2,4\n3,6\n");
  const std::string bad_model = WriteTempFile(
      "bad_model.yaml", "model: {layers: [{type: dense, units: 1}, {type: softplus}], loss: mse}\n"
                        "data: {dataset: csv, path: " + data + "}\n");
  run = RunPsgrid({"submit", bad_model, "--server", address_});
  EXPECT_EQ(run.code, 1);
  EXPECT_THAT(run.err, HasSubstr("bad_model.yaml: model.layers[1].type"));
  EXPECT_TRUE(manager_->List().empty());
}

TEST_F(ClientE2eTest, UnknownJobIsNotFound) {
  CliRun run = RunPsgrid({"status", "no-such-job", "--server", address_});
  EXPECT_EQ(run.code, 1);
  EXPECT_THAT(run.err, HasSubstr("no-such-job"));
  EXPECT_EQ(RunPsgrid({"watch", "no-such-job", "--server", address_}).code, 1);
  EXPECT_EQ(RunPsgrid({"stop", "no-such-job", "--server", address_}).code, 1);
}

TEST_F(ClientE2eTest, ServerAddressComesFromTheEnvironment) {
  setenv("PSGRID_SERVER", address_.c_str(), 1);
  CliRun run = RunPsgrid({"list"});
  unsetenv("PSGRID_SERVER");
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("no jobs"));
}

TEST(ClientE2e, UnreachableServerFailsQuicklyNamingTheAddress) {
  unsetenv("PSGRID_SERVER");
  const std::string address = absl::StrCat("127.0.0.1:", ::psgrid::testing::ClosedLoopbackPort());
  const absl::Time start = absl::Now();
  CliRun run = RunPsgrid({"list", "--server", address});
  EXPECT_EQ(run.code, 1);
  EXPECT_THAT(run.err, HasSubstr("cannot reach the psgrid server at " + address));
  EXPECT_THAT(run.err, HasSubstr("PSGRID_SERVER"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(8));  // the default 5 s connect timeout

  setenv("PSGRID_SERVER", address.c_str(), 1);
  run = RunPsgrid({"status", "x", "--connect-timeout", "0.5"});
  unsetenv("PSGRID_SERVER");
  EXPECT_EQ(run.code, 1);
  EXPECT_THAT(run.err, HasSubstr(address));
}

TEST_F(ClientE2eTest, AQuietWatchOutlivesTheInactivityBound) {
  // A pending job (no workers) sends nothing after its first status; the watch asks GetJob,
  // finds the server there, and goes on until the job ends.
  const std::string id = Submit(CsvSpec("quiet", 1));
  ControlClientOptions options;
  options.watch_inactivity = absl::Milliseconds(200);
  absl::StatusOr<std::unique_ptr<ControlClient>> client =
      ControlClient::Connect(address_, absl::Seconds(5), options);
  ASSERT_OK(client);
  std::thread stopper([&] {
    absl::SleepFor(absl::Seconds(1));  // five inactivity periods
    (*manager_->Get(id))->Stop("enough");
  });
  int statuses = 0;
  absl::StatusOr<v1::JobStatus> last = (*client)->Watch(id, [&](const v1::JobStatus&) {
    ++statuses;
    return true;
  });
  stopper.join();
  ASSERT_OK(last);
  EXPECT_EQ(last->state(), v1::JOB_STATE_STOPPED);
  EXPECT_EQ(last->message(), "enough");
  EXPECT_GE(statuses, 2);
}

TEST_F(ClientE2eTest, AWatchEndsWithAnErrorWhenTheServerShutsDown) {
  const std::string id = Submit(CsvSpec("orphan", 1));
  absl::StatusOr<std::unique_ptr<ControlClient>> client =
      ControlClient::Connect(address_, absl::Seconds(5));
  ASSERT_OK(client);
  absl::StatusOr<v1::JobStatus> last = (*client)->Watch(id, [&](const v1::JobStatus&) {
    server_->Shutdown(absl::Seconds(1));  // after the first status
    return true;
  });
  EXPECT_FALSE(last.ok());
  EXPECT_THAT(std::string(last.status().message()), HasSubstr(address_));
}

}  // namespace
}  // namespace psgrid
