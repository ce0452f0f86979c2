// Crash safety of snapshots: a server process killed (SIGKILL) at each failpoint of a snapshot
// write (core/io/failpoint.h) leaves every earlier snapshot intact and nothing partial listed;
// a restarted server resumes the job from the newest complete one.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "core/io/failpoint.h"
#include "proto/job_spec_codec.h"
#include "server/job_manager.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

using ::psgrid::testing::TempPath;
using ::psgrid::testing::WriteLinearCsv;

// In a child process: a job with keep_last 1 trains 3 steps, snapshots (A), trains 3 more and
// snapshots again (B) with `failpoint` armed. Exits 0 only if the failpoint did not fire.
void ChildRun(const std::string& dir, const std::string& csv, const char* failpoint) {
  JobManagerOptions options;
  options.data_dir = dir;
  JobManager manager(options);
  auto spec = ParseJobSpec("name: crash\n"
                           "model: {layers: [{type: dense, units: 3}, {type: dense, units: 1}], "
                           "loss: mse}\n"
                           "data: {dataset: csv, path: " + csv + "}\n"
                           "training: {batch_size: 10, epochs: 2}\n"
                           "optimizer: {type: momentum, learning_rate: 0.01, momentum: 0.9}\n"
                           "snapshot: {keep_last: 1}\n",
                           "spec");
  if (!spec.ok()) _exit(10);
  auto id = manager.Submit(*spec);
  if (!id.ok()) _exit(11);
  std::shared_ptr<Job> job = *manager.Get(*id);
  auto w = job->AddWorker("w");
  if (!w.ok()) _exit(12);
  Tensor gradient({job->arena_size()});
  for (int64_t i = 0; i < gradient.size(); ++i) gradient[i] = 0.01f * static_cast<float>(i % 5);
  auto train = [&](int64_t from, int64_t to) {
    for (int64_t t = from; t < to; ++t) {
      GradientPush push;
      push.worker_id = w->worker_id;
      push.step = t;
      push.sample_count = 10;
      push.gradients = &gradient;
      if (!job->PushGradients(push).ok()) _exit(13);
    }
  };
  train(0, 3);
  if (!job->TakeSnapshot(absl::Now() + absl::Seconds(30)).ok()) _exit(14);
  train(3, 6);
  setenv(kFailpointVariable, failpoint, 1);
  (void)job->TakeSnapshot(absl::Now() + absl::Seconds(30));
  _exit(0);
}

class CrashSafetyTest : public ::testing::TestWithParam<const char*> {};

TEST_P(CrashSafetyTest, AKillAtTheFailpointLeavesTheNewestCompleteSnapshotToResumeFrom) {
  const std::string failpoint = GetParam();
  const std::string dir = TempPath("crash_" + failpoint);
  const std::string csv = WriteLinearCsv("crash_" + failpoint + ".csv");
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) ChildRun(dir, csv, GetParam());  // never returns
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
      << "the child was not killed at " << failpoint << " (status " << status << ")";

  JobManagerOptions options;
  options.data_dir = dir;
  JobManager restarted(options);
  ASSERT_EQ(restarted.ResumeJobs(), 1);
  auto job = restarted.Get("crash-1");
  ASSERT_OK(job);
  // Killed while pruning, the new snapshot (step 6) was complete and the old one half gone;
  // anywhere before, the new one never became a snapshot and the old one (step 3) stands.
  const int64_t expected = failpoint == "snapshot.during_prune" ? 6 : 3;
  EXPECT_EQ((*job)->Status().step(), expected);
  auto listed = (*job)->ListSnapshots();
  ASSERT_OK(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].step, expected);
  EXPECT_OK((*job)->VerifySnapshot((*listed)[0].id));
}

INSTANTIATE_TEST_SUITE_P(Failpoints, CrashSafetyTest,
                         ::testing::Values("snapshot.after_data", "snapshot.after_manifest",
                                           "snapshot.before_rename", "snapshot.during_prune"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (c == '.') c = '_';
                           }
                           return name;
                         });

}  // namespace
}  // namespace psgrid
