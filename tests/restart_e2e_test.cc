// A parameter server killed in the middle of a job (kill -9) and started again on the same
// data directory and address: the job comes back from its newest snapshot, its worker
// processes (shared memory, then new segments) reconnect by themselves, rewind, and finish it.
// Real processes: psgrid-server (PSGRID_SERVER_BINARY) and `psgrid worker` (PSGRID_BINARY).
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/child_process.h"
#include "client/cli.h"
#include "client/rpc/grpc_control_client.h"
#include "nlohmann/json.hpp"
#include "proto/job_spec_codec.h"
#include "tests/cli_runner.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

using ::psgrid::testing::CliRun;
using ::psgrid::testing::LastLine;
using ::psgrid::testing::RunPsgrid;
using ::psgrid::testing::TempPath;


std::unique_ptr<ChildProcess> StartServer(const std::string& address, const std::string& dir) {
  auto server = ChildProcess::Spawn({PSGRID_SERVER_BINARY, "--listen", address, "--data-dir", dir,
                                     "--shared-memory", "--worker-timeout", "60"});
  EXPECT_OK(server);
  return server.ok() ? std::move(*server) : nullptr;
}

// Polls the job (bounded) until `done` holds; returns the last status seen.
template <typename Pred>
v1::JobStatus PollJob(ControlClient& client, const std::string& id, Pred done,
                      absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  v1::JobStatus last;
  while (absl::Now() < deadline) {
    absl::StatusOr<v1::JobStatus> s = client.Get(id);
    if (s.ok()) {
      last = *s;
      if (done(last)) break;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return last;
}

// A regression job of 8000 small steps for 2 shared-memory workers.
v1::JobSpec RestartSpec(const std::string& name, const std::string& snapshot) {
  std::string csv = "a,b,y\n";
  for (int i = 0; i < 400; ++i) {
    const double a = (i % 20) / 10.0 - 1.0, b = (i / 20) / 10.0 - 1.0;
    absl::StrAppend(&csv, a, ",", b, ",", 2 * a - 3 * b + 1, "\n");
  }
  const std::string data = TempPath(name + ".csv");
  std::ofstream(data) << csv;
  auto spec = ParseJobSpec(
      "name: " + name + "\n"
      "model: {layers: [{type: dense, units: 16}, {type: tanh}, {type: dense, units: 1}], "
      "loss: mse}\n"
      "data: {dataset: csv, path: " + data + "}\n"
      "training: {workers: 2, batch_size: 8, epochs: 1000, max_steps: 8000}\n"
      "optimizer: {type: momentum, learning_rate: 0.02, momentum: 0.9}\n" + snapshot,
      "spec");
  EXPECT_OK(spec);
  return spec.ok() ? *spec : v1::JobSpec();
}

std::vector<std::unique_ptr<ChildProcess>> StartWorkers(const std::string& address,
                                                        const std::string& job_id) {
  std::vector<std::unique_ptr<ChildProcess>> workers;
  for (int i = 0; i < 2; ++i) {
    auto w = ChildProcess::Spawn({PSGRID_BINARY, "worker", "--server", address, "--job", job_id,
                                  "--shared-memory", "--quiet"});
    EXPECT_OK(w);
    if (w.ok()) workers.push_back(std::move(*w));
  }
  return workers;
}

// Waits (bounded) for the job to end, expects it completed and every worker to exit 0.
v1::JobStatus FinishJob(ControlClient& client, const std::string& id,
                        std::vector<std::unique_ptr<ChildProcess>>* workers) {
  const v1::JobStatus end = PollJob(
      client, id,
      [](const v1::JobStatus& s) {
        return s.state() == v1::JOB_STATE_COMPLETED || s.state() == v1::JOB_STATE_FAILED;
      },
      absl::Seconds(90));
  EXPECT_EQ(end.state(), v1::JOB_STATE_COMPLETED) << end.message();
  for (auto& w : *workers) {
    EXPECT_TRUE(w->WaitFor(absl::Seconds(30)));
    EXPECT_TRUE(w->succeeded()) << w->DescribeExit();
    if (!w->exited()) w->Terminate(absl::Seconds(2));
  }
  return end;
}

TEST(RestartE2e, AServerStoppedWithSigtermSnapshotsItsJobAndTheNextOneGoesOnFromThere) {
  const std::string address = absl::StrCat("127.0.0.1:", ::psgrid::testing::ClosedLoopbackPort());
  const std::string dir = TempPath("graceful_data");
  std::unique_ptr<ChildProcess> first = StartServer(address, dir);
  ASSERT_NE(first, nullptr);
  auto client = ControlClient::Connect(address, absl::Seconds(20));
  ASSERT_OK(client);
  auto id = (*client)->Submit(RestartSpec("graceful", ""));  // no periodic snapshots
  ASSERT_OK(id);
  std::vector<std::unique_ptr<ChildProcess>> workers = StartWorkers(address, *id);
  const v1::JobStatus before = PollJob(
      **client, *id, [](const v1::JobStatus& s) { return s.step() >= 1000; }, absl::Seconds(60));
  ASSERT_GE(before.step(), 1000) << before.message();
  first->Signal(SIGTERM);
  ASSERT_TRUE(first->WaitFor(absl::Seconds(30)));
  EXPECT_TRUE(first->succeeded()) << first->DescribeExit();

  std::unique_ptr<ChildProcess> second = StartServer(address, dir);
  ASSERT_NE(second, nullptr);
  auto again = ControlClient::Connect(address, absl::Seconds(20));
  ASSERT_OK(again);
  // Resumed from the snapshot taken at shutdown: no earlier than the step seen before it.
  const v1::JobStatus resumed = PollJob(
      **again, *id, [](const v1::JobStatus& s) { return !s.job_id().empty(); }, absl::Seconds(20));
  EXPECT_GE(resumed.step(), before.step());
  FinishJob(**again, *id, &workers);
  second->Terminate(absl::Seconds(10));
}

TEST(RestartE2e, AKilledServerComesBackAndItsWorkersFinishTheJob) {
  const std::string address = absl::StrCat("127.0.0.1:", ::psgrid::testing::ClosedLoopbackPort());
  const std::string dir = TempPath("restart_data");
  const v1::JobSpec spec = RestartSpec("restart", "snapshot: {every_seconds: 0.1, keep_last: 2}\n");
  std::unique_ptr<ChildProcess> first = StartServer(address, dir);
  ASSERT_NE(first, nullptr);
  auto client = ControlClient::Connect(address, absl::Seconds(20));
  ASSERT_OK(client);
  auto id = (*client)->Submit(spec);
  ASSERT_OK(id);
  std::vector<std::unique_ptr<ChildProcess>> workers = StartWorkers(address, *id);
  // Well into the job (an eighth of it, a few hundred ms), with a snapshot or two on disk.
  const v1::JobStatus before = PollJob(
      **client, *id, [](const v1::JobStatus& s) { return s.step() >= 1000; }, absl::Seconds(60));
  ASSERT_GE(before.step(), 1000) << before.message();
  first->Signal(SIGKILL);
  ASSERT_TRUE(first->WaitFor(absl::Seconds(10)));

  const std::string left_behind = absl::StrCat("/dev/shm/psgrid-", first->pid(), "-");
  std::unique_ptr<ChildProcess> second = StartServer(address, dir);
  ASSERT_NE(second, nullptr);
  auto again = ControlClient::Connect(address, absl::Seconds(20));
  ASSERT_OK(again);
  const v1::JobStatus resumed = PollJob(
      **again, *id, [](const v1::JobStatus& s) { return s.job_id().size() > 0; },
      absl::Seconds(20));
  EXPECT_EQ(resumed.job_id(), *id);
  // The new server removed the shared memory the killed one left behind.
  for (const auto& entry : std::filesystem::directory_iterator("/dev/shm")) {
    EXPECT_NE(entry.path().string().rfind(left_behind, 0), 0u) << entry.path();
  }
  EXPECT_EQ(FinishJob(**again, *id, &workers).step(), 8000);

  // The command line over the job's snapshots.
  CliRun list = RunPsgrid({"snapshot", "list", *id, "--server", address, "-o", "json"});
  ASSERT_EQ(list.code, 0) << list.err;
  const nlohmann::json snapshots = nlohmann::json::parse(list.out, nullptr, false);
  ASSERT_TRUE(snapshots.is_array() && !snapshots.empty()) << list.out;
  EXPECT_LE(snapshots.size(), 2u);  // keep_last
  for (const char* key : {"id", "step", "created", "bytes"}) {
    EXPECT_TRUE(snapshots[0].contains(key)) << key;
  }
  CliRun taken = RunPsgrid({"snapshot", "take", *id, "--server", address, "-o", "json"});
  ASSERT_EQ(taken.code, 0) << taken.err;
  const std::string snap = nlohmann::json::parse(taken.out)["id"];
  EXPECT_EQ(nlohmann::json::parse(taken.out)["step"], 8000);
  // The snapshot to roll back to below: one kept beside the new one (keep_last 2), as listed
  // now; the first listing may predate the snapshot the job wrote as it ended.
  CliRun relisted = RunPsgrid({"snapshot", "list", *id, "--server", address, "-o", "json"});
  ASSERT_EQ(relisted.code, 0) << relisted.err;
  const nlohmann::json kept = nlohmann::json::parse(relisted.out, nullptr, false);
  ASSERT_TRUE(kept.is_array()) << relisted.out;
  std::string older;
  for (const auto& s : kept) {
    if (s["id"] != snap) older = s["id"];
  }
  ASSERT_FALSE(older.empty()) << relisted.out;
  EXPECT_EQ(RunPsgrid({"snapshot", "verify", *id, snap, "--server", address}).code, 0);
  const std::string file = TempPath("restart.safetensors");
  CliRun exported = RunPsgrid({"export", *id, snap, "-o", file, "--server", address});
  EXPECT_EQ(exported.code, 0) << exported.err;
  EXPECT_TRUE(std::filesystem::exists(file));
  CliRun evaluated = RunPsgrid({"evaluate", *id, snap, "--server", address});
  EXPECT_EQ(evaluated.code, 0) << evaluated.err;
  EXPECT_THAT(evaluated.out, ::testing::HasSubstr("test loss"));
  // A flipped bit: verify fails with DATA_LOSS naming the tensor; restore refuses it.
  const std::string tensors = dir + "/jobs/" + *id + "/snapshots/" + snap + "/tensors.bin";
  {
    std::fstream f(tensors, std::ios::in | std::ios::out | std::ios::binary);
    char c = 0;
    f.seekg(100);
    f.read(&c, 1);
    c ^= 1;
    f.seekp(100);
    f.write(&c, 1);
  }
  CliRun bad = RunPsgrid({"snapshot", "verify", *id, snap, "--server", address});
  EXPECT_EQ(bad.code, 1);
  EXPECT_THAT(bad.err, ::testing::HasSubstr("DATA_LOSS"));
  EXPECT_THAT(bad.err, ::testing::HasSubstr("0.weight"));
  CliRun refused = RunPsgrid({"snapshot", "restore", *id, snap, "--server", address});
  EXPECT_EQ(refused.code, 1);
  // An intact one rolls the completed job back: it waits for workers again.
  CliRun restored = RunPsgrid({"snapshot", "restore", *id, older, "--server", address, "-o",
                               "json"});
  ASSERT_EQ(restored.code, 0) << restored.err;
  EXPECT_EQ(nlohmann::json::parse(LastLine(restored.out))["state"], "pending");
  second->Terminate(absl::Seconds(10));
}

}  // namespace
}  // namespace psgrid
