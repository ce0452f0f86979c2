// Consistency models (sync with backup workers, ssp, async) and the guards against NaN and Inf,
// on the parameter server's domain without sockets.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <numeric>
#include <thread>

#include "absl/strings/str_cat.h"
#include "core/backend/cpu_backend.h"
#include "core/data/loader.h"
#include "core/rng.h"
#include "proto/job_spec_codec.h"
#include "server/job.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

using ::testing::HasSubstr;

// 200 rows of a linear function; a model dense(2→1): 3 parameters (+ padding).
absl::StatusOr<v1::JobSpec> SpecFor(const std::string& training, const std::string& optimizer) {
  return ParseJobSpec(
      "model: {layers: [{type: dense, units: 1}], loss: mse, init: {seed: 3}}\n"
      "data: {dataset: csv, path: " + ::psgrid::testing::WriteLinearCsv("consistency.csv") +
          ", shuffle: false}\n"
          "training: " + training + "\n"
          "optimizer: " + optimizer + "\n",
      "spec");
}

class ConsistencyTest : public ::testing::Test {
 protected:
  // A job whose workers have all joined.
  void Start(const std::string& training,
             const std::string& optimizer = "{type: sgd, learning_rate: 0.1}") {
    auto spec = SpecFor(training, optimizer);
    ASSERT_OK(spec);
    auto shape = DescribeJobData(spec->data());
    ASSERT_OK(shape);
    auto job = Job::Create("j", *spec, *shape, &backend_);
    ASSERT_OK(job);
    job_ = std::move(*job);
    for (int r = 0; r < spec->training().workers(); ++r) {
      auto a = job_->AddWorker(absl::StrCat("w", r));
      ASSERT_OK(a);
      ids_.push_back(a->worker_id);
      EXPECT_EQ(a->total_steps, job_->worker_steps());
    }
    initial_ = Weights();
  }

  Tensor Weights() {
    auto snap = job_->WaitForVersion(0, absl::Now() + absl::Seconds(5));
    EXPECT_OK(snap);
    return *snap->values;
  }

  // A gradient of the arena's size: value(i) at every element.
  Tensor Gradient(float scale) {
    Tensor g({job_->arena_size()});
    for (int64_t i = 0; i < g.size(); ++i) g[i] = scale * static_cast<float>(i + 1);
    return g;
  }

  GradientPush Push(int rank, int64_t step, const Tensor& g, int64_t clock = -1) {
    GradientPush p;
    p.worker_id = ids_[rank];
    p.step = step;
    p.clock = clock < 0 ? step : clock;
    p.sample_count = 4;
    p.loss_sum = 1.0;
    p.gradients = &g;
    return p;
  }

  CpuBackend backend_;
  std::unique_ptr<Job> job_;
  std::vector<std::string> ids_;
  Tensor initial_;
};

TEST(ConsistencySpecTest, ImpossibleCombinationsNameTheField) {
  const std::string opt = "{type: sgd}";
  EXPECT_STATUS(SpecFor("{consistency: eventual}", opt), absl::StatusCode::kInvalidArgument,
                "training.consistency");
  EXPECT_STATUS(SpecFor("{consistency: sync, staleness: 2}", opt),
                absl::StatusCode::kInvalidArgument, "training.staleness");
  EXPECT_STATUS(SpecFor("{consistency: ssp, staleness: -1}", opt),
                absl::StatusCode::kInvalidArgument, "training.staleness");
  EXPECT_STATUS(SpecFor("{workers: 2, backup_workers: 2}", opt),
                absl::StatusCode::kInvalidArgument, "training.backup_workers");
  EXPECT_STATUS(SpecFor("{workers: 3, consistency: async, backup_workers: 1}", opt),
                absl::StatusCode::kInvalidArgument, "training.backup_workers");
  EXPECT_STATUS(SpecFor("{on_bad_gradient: ignore}", opt), absl::StatusCode::kInvalidArgument,
                "training.on_bad_gradient");
  auto fine = SpecFor("{workers: 2, consistency: ssp, staleness: 3}", opt);
  ASSERT_OK(fine);
  EXPECT_EQ(fine->training().on_bad_gradient(), "fail");
}

TEST_F(ConsistencyTest, ANanGradientIsRejectedAndFailsTheJobWithNoWeightChanged) {
  Start("{workers: 2, batch_size: 4}");
  const Tensor good = Gradient(0.01f);
  Tensor bad = Gradient(0.01f);
  bad[1] = std::numeric_limits<float>::quiet_NaN();
  ASSERT_OK(job_->PushGradients(Push(0, 0, good)));
  EXPECT_STATUS(job_->PushGradients(Push(1, 0, bad)), absl::StatusCode::kInvalidArgument,
                "NaN or Inf in parameter 0.weight [1]");
  const v1::JobStatus s = job_->Status();
  EXPECT_EQ(s.state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(s.message(), HasSubstr("on_bad_gradient: fail"));
  EXPECT_EQ(s.bad_gradients(), 1);
  EXPECT_EQ(s.step(), 0);
  const Tensor after = Weights();
  EXPECT_EQ(0, std::memcmp(after.data(), initial_.data(), initial_.size() * sizeof(float)));
  // A failed job's weights are not snapshotted over the last good ones.
  job_->EnablePersistence(::psgrid::testing::TempPath("consistency_failed"));
  EXPECT_STATUS(job_->TakeSnapshot(absl::Now() + absl::Seconds(5)),
                absl::StatusCode::kFailedPrecondition, "failed");
}

TEST_F(ConsistencyTest, AnInfiniteLossIsABadGradientToo) {
  Start("{workers: 1, batch_size: 4}");
  const Tensor g = Gradient(0.01f);
  GradientPush p = Push(0, 0, g);
  p.loss_sum = std::numeric_limits<double>::infinity();
  EXPECT_STATUS(job_->PushGradients(p), absl::StatusCode::kInvalidArgument, "in the loss");
  EXPECT_EQ(job_->Status().state(), v1::JOB_STATE_FAILED);
}

TEST_F(ConsistencyTest, SkippedBadGradientLeavesTheStepToTheOtherWorkers) {
  Start("{workers: 2, batch_size: 4, on_bad_gradient: skip}");
  const Tensor good = Gradient(0.01f);
  Tensor bad = Gradient(0.01f);
  bad[0] = -std::numeric_limits<float>::infinity();
  EXPECT_STATUS(job_->PushGradients(Push(1, 0, bad)), absl::StatusCode::kInvalidArgument,
                "skipped");
  EXPECT_EQ(job_->Status().step(), 0);
  ASSERT_OK(job_->PushGradients(Push(0, 0, good)));
  const v1::JobStatus s = job_->Status();
  EXPECT_EQ(s.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(s.step(), 1);
  EXPECT_EQ(s.bad_gradients(), 1);
  // The step is worker 0's gradient alone: w − 0.1·g0.
  const Tensor after = Weights();
  for (const ParamInfo& info : job_->layout()) {
    for (int64_t i = info.offset; i < info.offset + info.size; ++i) {
      EXPECT_FLOAT_EQ(after[i], initial_[i] - 0.1f * good[i]) << i;
    }
  }
  // The next step goes on as usual.
  ASSERT_OK(job_->PushGradients(Push(0, 1, good)));
  ASSERT_OK(job_->PushGradients(Push(1, 1, good)));
  EXPECT_EQ(job_->Status().step(), 2);
}

TEST_F(ConsistencyTest, WeightsThatOverflowFailTheJobNamingTheParameter) {
  Start("{workers: 1, batch_size: 4}", "{type: sgd, learning_rate: 1e30}");
  const Tensor huge = Gradient(1e20f);
  ASSERT_OK(job_->PushGradients(Push(0, 0, huge)));
  const v1::JobStatus s = job_->Status();
  EXPECT_EQ(s.state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(s.message(), HasSubstr("weights became NaN or Inf in step 1 (parameter 0."));
  EXPECT_EQ(s.step(), 0);
}

TEST_F(ConsistencyTest, BackupWorkersCompleteAStepWithTheFirstGradientsAndCountTheLate) {
  Start("{workers: 3, batch_size: 4, backup_workers: 1}");
  const Tensor g0 = Gradient(0.01f), g1 = Gradient(0.03f), g2 = Gradient(1.0f);
  ASSERT_OK(job_->PushGradients(Push(0, 0, g0)));
  EXPECT_EQ(job_->Status().step(), 0);
  ASSERT_OK(job_->PushGradients(Push(1, 0, g1)));
  EXPECT_EQ(job_->Status().step(), 1);
  // The late one changes nothing, is counted once, and its worker goes on from version 1.
  auto late = job_->PushGradients(Push(2, 0, g2));
  ASSERT_OK(late);
  EXPECT_TRUE(*late);
  ASSERT_OK(job_->PushGradients(Push(2, 0, g2)));
  EXPECT_EQ(job_->Status().late_gradients(), 1);
  ASSERT_OK(job_->CheckPull(ids_[2], 1));
  const Tensor after = Weights();
  for (int64_t i = 0; i < 3; ++i) {
    EXPECT_FLOAT_EQ(after[i], initial_[i] - 0.1f * 0.5f * (g0[i] + g1[i])) << i;
  }
  // Step 1: whichever two come first.
  ASSERT_OK(job_->PushGradients(Push(2, 1, g2)));
  ASSERT_OK(job_->PushGradients(Push(0, 1, g0)));
  EXPECT_EQ(job_->Status().step(), 2);
  ASSERT_OK(job_->PushGradients(Push(1, 1, g1)));
  EXPECT_EQ(job_->Status().late_gradients(), 2);
}

TEST_F(ConsistencyTest, AsyncAppliesEachGradientAsItArrives) {
  Start("{workers: 2, batch_size: 4, consistency: async}");
  EXPECT_EQ(job_->total_steps(), 2 * job_->worker_steps());
  const Tensor g0 = Gradient(0.01f), g1 = Gradient(0.02f);
  ASSERT_OK(job_->PushGradients(Push(0, /*step=*/0, g0, /*clock=*/0)));
  EXPECT_EQ(job_->Status().step(), 1);
  // Worker 1's gradient was computed on version 0: one update stale.
  ASSERT_OK(job_->PushGradients(Push(1, 0, g1, 0)));
  EXPECT_EQ(job_->Status().step(), 2);
  const Tensor after = Weights();
  for (int64_t i = 0; i < 3; ++i) {
    EXPECT_FLOAT_EQ(after[i], initial_[i] - 0.1f * g0[i] - 0.1f * g1[i]) << i;
  }
  const v1::JobStatus s = job_->Status();
  ASSERT_EQ(s.staleness_histogram_size(), 2);
  EXPECT_EQ(s.staleness_histogram(0), 1);
  EXPECT_EQ(s.staleness_histogram(1), 1);
  // A retry changes nothing; a gap is refused; a pull never waits for the others...
  auto retry = job_->PushGradients(Push(0, 0, g0, 0));
  ASSERT_OK(retry);
  EXPECT_TRUE(*retry);
  EXPECT_STATUS(job_->PushGradients(Push(0, 2, g0, 2)), absl::StatusCode::kFailedPrecondition,
                "step 1");
  for (int c = 1; c < 3; ++c) ASSERT_OK(job_->PushGradients(Push(0, job_->Status().step(), g0, c)));
  auto pull = job_->WaitForVersion(3, absl::Now());
  ASSERT_OK(pull);
  EXPECT_EQ(pull->version, 4);
  // ...except for the final weights, which wait for every worker's last step.
  const int64_t last = job_->worker_steps();
  for (int64_t c = 3; c < last; ++c) {
    ASSERT_OK(job_->PushGradients(Push(0, job_->Status().step(), g0, c)));
  }
  EXPECT_STATUS(job_->WaitForVersion(last, absl::Now() + absl::Milliseconds(50)),
                absl::StatusCode::kDeadlineExceeded, "");
  for (int64_t c = 1; c < last; ++c) {
    ASSERT_OK(job_->PushGradients(Push(1, job_->Status().step(), g1, c)));
  }
  auto final_pull = job_->WaitForVersion(last, absl::Now());
  ASSERT_OK(final_pull);
  EXPECT_EQ(final_pull->version, job_->total_steps());
  ASSERT_OK(job_->ReportMetrics(ids_[0], 1, last, 0.1, 0));
  EXPECT_EQ(job_->Status().state(), v1::JOB_STATE_COMPLETED);
}

// W threads drive the job as workers do (pull for their clock, compute a gradient of the
// weights they got, push), each at its own random speed. The gradient of worker r at clock c
// is w − target(r, c) (a quadratic loss), so it depends on which version the worker saw.
// Checks, independently of the server's own accounting, that no worker ever starts clock c
// before every worker has finished clock c − s (finished = began pushing it). Returns the
// final weights.
Tensor DriveWithRandomSpeeds(Job& job, const std::vector<std::string>& ids, int staleness,
                             uint64_t seed, std::atomic<int>* violations) {
  const int world = static_cast<int>(ids.size());
  const int64_t steps = job.worker_steps();
  std::vector<std::atomic<int64_t>> finished(world);
  for (auto& f : finished) f = 0;
  const bool sync = job.consistency() == Job::Consistency::kSync;
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      Rng rng(seed * 31 + r);
      const int pace_us = 150 * (1 << r);  // worker r is 2^r times as slow as worker 0
      Tensor g({job.arena_size()});
      for (int64_t c = 0; c < steps; ++c) {
        auto snap = job.WaitForVersion(c, absl::Now() + absl::Seconds(30));
        if (!snap.ok()) {
          ++*violations;
          return;
        }
        int64_t slowest = steps;
        for (int p = 0; p < world; ++p) slowest = std::min<int64_t>(slowest, finished[p].load());
        if (slowest < c - staleness) ++*violations;
        for (int64_t i = 0; i < g.size(); ++i) {
          const float target = 0.1f * static_cast<float>((r + 1) * ((c + i) % 5));
          g[i] = (*snap->values)[i] - target;
        }
        absl::SleepFor(absl::Microseconds(rng.Below(2 * pace_us)));
        GradientPush p;
        p.worker_id = ids[r];
        p.step = sync ? c : snap->version;
        p.clock = c;
        p.sample_count = 4;
        p.loss_sum = 1.0;
        p.gradients = &g;
        finished[r] = c + 1;
        if (!job.PushGradients(p).ok()) ++*violations;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  auto last = job.WaitForVersion(steps, absl::Now() + absl::Seconds(5));
  EXPECT_OK(last);
  return last.ok() ? *last->values : Tensor({1});
}

TEST_F(ConsistencyTest, SspNeverExceedsTheStalenessBoundWithWorkersOfRandomSpeeds) {
  for (int staleness : {1, 2, 3}) {
    SCOPED_TRACE(staleness);
    ids_.clear();
    Start("{workers: 3, batch_size: 4, epochs: 2, consistency: ssp, staleness: " +
          std::to_string(staleness) + "}");
    std::atomic<int> violations{0};
    DriveWithRandomSpeeds(*job_, ids_, staleness, 7 + staleness, &violations);
    EXPECT_EQ(violations.load(), 0);
    const v1::JobStatus s = job_->Status();
    EXPECT_EQ(s.step(), job_->worker_steps());
    // Every gradient counted once, none staler than the bound, and the slow workers did make
    // the fast one run ahead.
    ASSERT_LE(s.staleness_histogram_size(), staleness + 1);
    const int64_t counted =
        std::accumulate(s.staleness_histogram().begin(), s.staleness_histogram().end(), int64_t{0});
    EXPECT_EQ(counted, 3 * job_->worker_steps());
    EXPECT_GT(counted - s.staleness_histogram(0), 0);
  }
}

TEST_F(ConsistencyTest, SspWithStalenessZeroIsSyncExactly) {
  // Two workers, so that the sum of a step's gradients does not depend on their order.
  Start("{workers: 2, batch_size: 4, epochs: 2}");
  std::atomic<int> violations{0};
  const Tensor sync = DriveWithRandomSpeeds(*job_, ids_, 0, 1, &violations);
  ids_.clear();
  Start("{workers: 2, batch_size: 4, epochs: 2, consistency: ssp, staleness: 0}");
  const Tensor ssp = DriveWithRandomSpeeds(*job_, ids_, 0, 2, &violations);
  EXPECT_EQ(violations.load(), 0);
  ASSERT_EQ(sync.size(), ssp.size());
  EXPECT_EQ(0, std::memcmp(sync.data(), ssp.data(), sync.size() * sizeof(float)));
  EXPECT_NE(0, std::memcmp(sync.data(), initial_.data(), sync.size() * sizeof(float)));
  const v1::JobStatus s = job_->Status();
  ASSERT_EQ(s.staleness_histogram_size(), 1);
}

TEST_F(ConsistencyTest, SspGradientsStalerThanTheBoundAreRefused) {
  Start("{workers: 2, batch_size: 4, consistency: ssp, staleness: 1}");
  const Tensor g = Gradient(0.01f);
  ASSERT_OK(job_->PushGradients(Push(0, 0, g, 0)));
  // Clock 1 on version 0: allowed (one ahead); clock 2 would be two ahead of the slowest.
  ASSERT_OK(job_->PushGradients(Push(0, 0, g, 1)));
  EXPECT_STATUS(job_->PushGradients(Push(0, 0, g, 2)), absl::StatusCode::kFailedPrecondition,
                "step 2");
  EXPECT_STATUS(job_->WaitForVersion(2, absl::Now() + absl::Milliseconds(20)),
                absl::StatusCode::kDeadlineExceeded, "");
  // The slow worker's step 0 completes step 0 and, with worker 0's waiting gradient, not yet 1.
  ASSERT_OK(job_->PushGradients(Push(1, 0, g, 0)));
  EXPECT_EQ(job_->Status().step(), 1);
  ASSERT_OK(job_->PushGradients(Push(1, 1, g, 1)));
  EXPECT_EQ(job_->Status().step(), 2);
  EXPECT_STATUS(job_->PushGradients(Push(1, 0, g, 2)), absl::StatusCode::kInvalidArgument,
                "staleness bound 1");
}

// A snapshot of an async or ssp job records where each worker is; a restore sends each back
// there (a heartbeat's clock), so that the workers rewind to their own steps.
TEST_F(ConsistencyTest, RestoringAnAsyncJobSendsEachWorkerBackToItsOwnStep) {
  Start("{workers: 2, batch_size: 4, consistency: async}");
  job_->EnablePersistence(::psgrid::testing::TempPath("consistency_async_restore"));
  const Tensor g = Gradient(0.01f);
  for (int c = 0; c < 3; ++c) ASSERT_OK(job_->PushGradients(Push(0, job_->Status().step(), g, c)));
  ASSERT_OK(job_->PushGradients(Push(1, job_->Status().step(), g, 0)));
  auto snap = job_->TakeSnapshot(absl::Now() + absl::Seconds(10));
  ASSERT_OK(snap);
  EXPECT_EQ(snap->step, 4);
  const Tensor at_snapshot = Weights();
  for (int c = 1; c < 4; ++c) ASSERT_OK(job_->PushGradients(Push(1, job_->Status().step(), g, c)));
  auto contents = job_->ReadSnapshot(snap->id);
  ASSERT_OK(contents);
  ASSERT_OK(job_->Restore(*contents));
  EXPECT_EQ(job_->Status().step(), 4);
  auto w0 = job_->Heartbeat(ids_[0]);
  auto w1 = job_->Heartbeat(ids_[1]);
  ASSERT_OK(w0);
  ASSERT_OK(w1);
  EXPECT_EQ(w0->clock(), 3);
  EXPECT_EQ(w1->clock(), 1);
  const Tensor restored = Weights();
  for (const ParamInfo& info : job_->layout()) {  // (the arena's alignment padding aside)
    EXPECT_EQ(0, std::memcmp(restored.data() + info.offset, at_snapshot.data() + info.offset,
                             info.size * sizeof(float)));
  }
  // Worker 1's steps after the snapshot are gone: its pull for step 4 cannot come; step 1 can.
  EXPECT_STATUS(job_->CheckPull(ids_[1], 4), absl::StatusCode::kFailedPrecondition, "step 1");
  ASSERT_OK(job_->PushGradients(Push(1, 4, g, 1)));
  EXPECT_EQ(job_->Status().step(), 5);
}

TEST_F(ConsistencyTest, RestoringAnSspJobDropsTheGradientsThatWereAhead) {
  Start("{workers: 2, batch_size: 4, consistency: ssp, staleness: 2}");
  job_->EnablePersistence(::psgrid::testing::TempPath("consistency_ssp_restore"));
  const Tensor g = Gradient(0.01f);
  ASSERT_OK(job_->PushGradients(Push(0, 0, g, 0)));
  ASSERT_OK(job_->PushGradients(Push(1, 0, g, 0)));
  auto snap = job_->TakeSnapshot(absl::Now() + absl::Seconds(10));
  ASSERT_OK(snap);
  ASSERT_OK(job_->PushGradients(Push(0, 1, g, 1)));
  ASSERT_OK(job_->PushGradients(Push(0, 1, g, 2)));
  auto contents = job_->ReadSnapshot(snap->id);
  ASSERT_OK(contents);
  ASSERT_OK(job_->Restore(*contents));
  auto w0 = job_->Heartbeat(ids_[0]);
  ASSERT_OK(w0);
  EXPECT_EQ(w0->clock(), 1);
  // Step 1 needs both workers again: worker 0's earlier gradient of it no longer counts.
  ASSERT_OK(job_->PushGradients(Push(1, 1, g, 1)));
  EXPECT_EQ(job_->Status().step(), 1);
  ASSERT_OK(job_->PushGradients(Push(0, 1, g, 1)));
  EXPECT_EQ(job_->Status().step(), 2);
}

}  // namespace
}  // namespace psgrid
