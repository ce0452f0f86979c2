// The parameter server's domain, without sockets: synchronous aggregation, the equivalence of
// distributed and single-process training, rejected inputs, and the job state machine.
#include <cmath>
#include <fstream>
#include <thread>

#include "core/backend/cpu_backend.h"
#include "core/data/loader.h"
#include "core/data/sampler.h"
#include "proto/job_spec_codec.h"
#include "server/job.h"
#include "server/job_manager.h"
#include "tests/test_util.h"
#include "worker/local_trainer.h"

namespace psgrid {
namespace {

// 103 rows of y = sin(a) + b·c: uneven against every batch size used here.
std::string WriteCsv() {
  const std::string path = ::psgrid::testing::TempPath("job_test.csv");
  std::ofstream out(path);
  for (int i = 0; i < 103; ++i) {
    const double a = i * 0.07 - 3, b = (i % 7) * 0.3 - 1, c = (i % 5) * 0.25;
    out << a << "," << b << "," << c << "," << std::sin(a) + b * c << "\n";
  }
  return path;
}

v1::JobSpec Spec(int workers, int batch, const std::string& optimizer) {
  auto spec = ParseJobSpec(
      "name: eq\n"
      "model: {layers: [{type: dense, units: 8}, {type: tanh}, {type: dense, units: 1}], "
      "loss: mse, init: {seed: 11}}\n"
      "data: {dataset: csv, path: " + WriteCsv() + ", test_path: " + WriteCsv() + ", shuffle: false}\n"
      "training: {workers: " + std::to_string(workers) + ", batch_size: " + std::to_string(batch) +
      ", epochs: 3}\n"
      "optimizer: " + optimizer + "\n",
      "spec");
  EXPECT_OK(spec);
  return *spec;
}

// Drives a job with W in-process workers that each compute gradients on their own model
// replica, exactly as remote workers would. Returns the final parameters.
Tensor TrainThroughJob(const v1::JobSpec& spec) {
  CpuBackend backend;
  auto data = LoadJobData(spec.data());
  EXPECT_OK(data);
  auto shape = DescribeJobData(spec.data());
  EXPECT_OK(shape);
  auto job_or = Job::Create("job", spec, *shape, &backend);
  EXPECT_OK(job_or);
  Job& job = **job_or;
  const int world = spec.training().workers();
  std::vector<std::unique_ptr<Model>> replicas;
  std::vector<WorkerAssignment> assignments;
  for (int r = 0; r < world; ++r) {
    auto a = job.AddWorker("test");
    EXPECT_OK(a);
    assignments.push_back(*a);
    auto m = Model::Create(spec.model(), data->train.sample_shape(), 1, &backend);
    EXPECT_OK(m);
    replicas.push_back(std::move(*m));
  }
  EXPECT_EQ(job.Status().state(), v1::JOB_STATE_RUNNING);
  BatchSampler sampler(data->train.size(), spec.training().batch_size(), world, false, 0);
  EXPECT_EQ(sampler.steps_per_epoch(), job.steps_per_epoch());
  Tensor x, values;
  std::vector<int32_t> labels;
  for (int64_t t = 0; t < job.total_steps(); ++t) {
    if (t % sampler.steps_per_epoch() == 0) sampler.StartEpoch(t / sampler.steps_per_epoch());
    for (int r = 0; r < world; ++r) {
      auto snap = job.WaitForVersion(t, absl::Now() + absl::Seconds(5));
      EXPECT_OK(snap);
      Model& model = *replicas[r];
      std::memcpy(model.parameters().values().data(), snap->values->data(),
                  snap->values->size() * sizeof(float));
      auto indices = sampler.Batch(t % sampler.steps_per_epoch(), r);
      GradientPush push;
      push.worker_id = assignments[r].worker_id;
      push.step = t;
      push.sample_count = static_cast<int64_t>(indices.size());
      model.parameters().grads().SetZero();
      if (!indices.empty()) {
        GatherBatch(data->train, indices, &x, &labels, &values);
        Targets targets;
        targets.values = &values;
        auto r_or = model.ComputeGradients(x, targets);
        EXPECT_OK(r_or);
        push.loss_sum = r_or->loss * indices.size();
      }
      push.gradients = &model.parameters().grads();
      auto dup = job.PushGradients(push);
      EXPECT_OK(dup);
      EXPECT_FALSE(*dup);
    }
  }
  auto final_snap = job.WaitForVersion(job.total_steps(), absl::Now() + absl::Seconds(5));
  EXPECT_OK(final_snap);
  return *final_snap->values;
}

double MaxRelativeError(const Tensor& a, const Tensor& b) {
  double worst = 0;
  for (int64_t i = 0; i < a.size(); ++i) {
    const double scale = std::max(1e-3, static_cast<double>(std::abs(b[i])));
    worst = std::max(worst, std::abs(static_cast<double>(a[i]) - b[i]) / scale);
  }
  return worst;
}

// Also for the stateful optimizers: the server's step count is its version (BeginStep).
TEST(JobEquivalence, TwoWorkersAtBatchBEndWhereOneWorkerAtBatch2BEnds) {
  for (const std::string opt : {"{type: sgd, learning_rate: 0.05}",
                                "{type: momentum, learning_rate: 0.02, momentum: 0.9}",
                                "{type: adam, learning_rate: 0.01, weight_decay: 0.001}",
                                "{type: rmsprop, learning_rate: 0.005, momentum: 0.5}",
                                "{type: momentum, learning_rate: 0.05, momentum: 0.9, "
                                "clip_norm: 0.05}"}) {
    SCOPED_TRACE(opt);
    const Tensor two = TrainThroughJob(Spec(2, 8, opt));
    // The reference is the single-process trainer, which shares no aggregation code with Job.
    CpuBackend local_backend;
    auto local = LocalTrainer::Create(Spec(1, 16, opt), &local_backend);
    ASSERT_OK(local);
    ASSERT_OK((*local)->Run(nullptr));
    const Tensor one = (*local)->model().parameters().values();
    ASSERT_EQ(two.size(), one.size());
    EXPECT_LE(MaxRelativeError(two, one), 1e-5);
    // And training moved the weights: the comparison is not between two initial states.
    CpuBackend backend;
    auto shape = DescribeJobData(Spec(1, 16, opt).data());
    ASSERT_OK(shape);
    auto fresh = Job::Create("fresh", Spec(1, 16, opt), *shape, &backend);
    ASSERT_OK(fresh);
    auto init = (*fresh)->WaitForVersion(0, absl::Now());
    ASSERT_OK(init);
    EXPECT_GT(MaxRelativeError(one, *init->values), 1e-2);
  }
}

class JobTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spec_ = Spec(2, 8, "{type: sgd, learning_rate: 0.5}");
    auto shape = DescribeJobData(spec_.data());
    ASSERT_OK(shape);
    auto job = Job::Create("j", spec_, *shape, &backend_);
    ASSERT_OK(job);
    job_ = std::move(*job);
    initial_ = *job_->WaitForVersion(0, absl::Now())->values;
    grads_ = Tensor(initial_.shape());
    for (int64_t i = 0; i < grads_.size(); ++i) grads_[i] = 0.01f * static_cast<float>(i % 13);
  }

  void JoinAll() {
    for (int r = 0; r < 2; ++r) {
      auto a = job_->AddWorker("w" + std::to_string(r));
      ASSERT_OK(a);
      ids_.push_back(a->worker_id);
    }
  }

  GradientPush Push(int rank, int64_t step, int64_t samples = 8) {
    GradientPush p;
    p.worker_id = ids_[rank];
    p.step = step;
    p.sample_count = samples;
    p.loss_sum = 1.0;
    p.gradients = &grads_;
    return p;
  }

  void ExpectUnchanged() {
    auto snap = job_->WaitForVersion(0, absl::Now());
    ASSERT_OK(snap);
    EXPECT_EQ(snap->version, 0);
    EXPECT_EQ(0, std::memcmp(snap->values->data(), initial_.data(), initial_.size() * 4));
  }

  CpuBackend backend_;
  v1::JobSpec spec_;
  std::unique_ptr<Job> job_;
  Tensor initial_, grads_;
  std::vector<std::string> ids_;
};

TEST_F(JobTest, StaysPendingUntilEveryWorkerJoinsAndTakesNoMore) {
  EXPECT_TRUE(job_->NeedsWorkers());
  ASSERT_OK(job_->AddWorker("a"));
  EXPECT_EQ(job_->Status().state(), v1::JOB_STATE_PENDING);
  EXPECT_THAT(job_->Status().message(), ::testing::HasSubstr("1 of 2"));
  ASSERT_OK(job_->AddWorker("b"));
  EXPECT_EQ(job_->Status().state(), v1::JOB_STATE_RUNNING);
  EXPECT_FALSE(job_->NeedsWorkers());
  EXPECT_STATUS(job_->AddWorker("c"), absl::StatusCode::kFailedPrecondition, "no more workers");
}

TEST_F(JobTest, AStepWaitsForEveryWorkerThenAppliesTheWeightedMean) {
  JoinAll();
  Tensor other(grads_.shape());
  for (int64_t i = 0; i < other.size(); ++i) other[i] = -0.02f * static_cast<float>(i % 5);
  ASSERT_OK(job_->PushGradients(Push(0, 0, 8)));
  EXPECT_STATUS(job_->WaitForVersion(1, absl::Now() + absl::Milliseconds(50)),
                absl::StatusCode::kDeadlineExceeded, "version 1");
  GradientPush p = Push(1, 0, 3);  // a short tail batch weighs less
  p.gradients = &other;
  ASSERT_OK(job_->PushGradients(p));
  auto snap = job_->WaitForVersion(1, absl::Now() + absl::Seconds(1));
  ASSERT_OK(snap);
  EXPECT_EQ(snap->version, 1);
  for (int64_t i = 0; i < initial_.size(); ++i) {
    const double mean = (8.0 * grads_[i] + 3.0 * other[i]) / 11.0;
    EXPECT_NEAR((*snap->values)[i], initial_[i] - 0.5 * mean, 1e-6) << i;
  }
}

TEST_F(JobTest, AStepMayArriveInPartsInAnyOrderWithTheSameResult) {
  JoinAll();
  Tensor other(grads_.shape());
  for (int64_t i = 0; i < other.size(); ++i) other[i] = -0.02f * static_cast<float>(i % 5);
  // Layer 2's tensors lie above layer 0's in the arena; parts come from the top down.
  const int64_t layer2 = job_->layout()[2].offset;
  const int64_t layer2_bias = job_->layout()[3].offset;
  GradientPush a = Push(0, 0, 8);
  GradientPush b = Push(1, 0, 3);
  b.gradients = &other;
  a.ready_from = layer2_bias;
  ASSERT_OK(job_->PushGradients(a));
  b.ready_from = layer2;
  ASSERT_OK(job_->PushGradients(b));
  a.ready_from = layer2;
  ASSERT_OK(job_->PushGradients(a));
  auto retried = job_->PushGradients(a);  // a part again: nothing new
  ASSERT_OK(retried);
  EXPECT_TRUE(*retried);
  GradientPush changed = b;
  changed.sample_count = 4;
  changed.ready_from = 0;
  EXPECT_STATUS(job_->PushGradients(changed), absl::StatusCode::kInvalidArgument, "differs");
  GradientPush outside = a;
  outside.ready_from = job_->arena_size() + 1;
  EXPECT_STATUS(job_->PushGradients(outside), absl::StatusCode::kInvalidArgument, "ready_from");
  EXPECT_EQ(job_->Status().step(), 0);
  a.ready_from = 0;
  ASSERT_OK(job_->PushGradients(a));
  EXPECT_EQ(job_->Status().step(), 0);  // rank 1's layer 0 is still out
  b.ready_from = 0;
  ASSERT_OK(job_->PushGradients(b));
  auto snap = job_->WaitForVersion(1, absl::Now() + absl::Seconds(1));
  ASSERT_OK(snap);
  EXPECT_EQ(snap->version, 1);
  EXPECT_DOUBLE_EQ(job_->Status().train_loss(), 2.0 / 11.0);
  for (int64_t i = 0; i < initial_.size(); ++i) {
    const double mean = (8.0 * grads_[i] + 3.0 * other[i]) / 11.0;
    EXPECT_NEAR((*snap->values)[i], initial_[i] - 0.5 * mean, 1e-6) << i;
  }
  // The next step starts whole again.
  ASSERT_OK(job_->PushGradients(Push(0, 1)));
  ASSERT_OK(job_->PushGradients(Push(1, 1)));
  EXPECT_EQ(job_->Status().step(), 2);
}

TEST_F(JobTest, ADuplicatePushIsCountedOnce) {
  JoinAll();
  auto first = job_->PushGradients(Push(0, 0));
  ASSERT_OK(first);
  EXPECT_FALSE(*first);
  auto again = job_->PushGradients(Push(0, 0));
  ASSERT_OK(again);
  EXPECT_TRUE(*again);
  EXPECT_EQ(job_->Status().step(), 0);  // still waiting for rank 1
  ASSERT_OK(job_->PushGradients(Push(1, 0)));
  EXPECT_EQ(job_->Status().step(), 1);
  auto late = job_->PushGradients(Push(1, 0));  // a retry after the step was applied
  ASSERT_OK(late);
  EXPECT_TRUE(*late);
  EXPECT_EQ(job_->Status().step(), 1);
}

TEST_F(JobTest, RejectedPushesChangeNothing) {
  JoinAll();
  GradientPush unknown = Push(0, 0);
  unknown.worker_id = "nobody";
  EXPECT_STATUS(job_->PushGradients(unknown), absl::StatusCode::kNotFound, "nobody");
  EXPECT_STATUS(job_->PushGradients(Push(0, 1)), absl::StatusCode::kFailedPrecondition, "step 1");
  EXPECT_STATUS(job_->PushGradients(Push(0, 0, -1)), absl::StatusCode::kInvalidArgument, "sample_count");
  // (A non-finite loss or gradient is a bad gradient: tests/consistency_test.cc.)
  Tensor short_grads({3});
  GradientPush wrong_size = Push(0, 0);
  wrong_size.gradients = &short_grads;
  EXPECT_STATUS(job_->PushGradients(wrong_size), absl::StatusCode::kInvalidArgument, "values");
  // None of those counted: one push from each worker completes step 0 exactly once.
  ExpectUnchanged();
  ASSERT_OK(job_->PushGradients(Push(0, 0)));
  ExpectUnchanged();
  ASSERT_OK(job_->PushGradients(Push(1, 0)));
  EXPECT_EQ(job_->Status().step(), 1);
}

TEST_F(JobTest, PushBeforeTheJobRunsIsRefused) {
  auto a = job_->AddWorker("a");
  ASSERT_OK(a);
  ids_.push_back(a->worker_id);
  EXPECT_STATUS(job_->PushGradients(Push(0, 0)), absl::StatusCode::kFailedPrecondition, "pending");
}

TEST_F(JobTest, CompletesWhenRankZeroReportsTheFinalEvaluation) {
  JoinAll();
  const int64_t per_epoch = job_->total_steps() / 3;
  for (int64_t t = 0; t < job_->total_steps(); ++t) {
    ASSERT_OK(job_->PushGradients(Push(0, t)));
    ASSERT_OK(job_->PushGradients(Push(1, t)));
    if (t + 1 == per_epoch) {
      ASSERT_OK(job_->ReportMetrics(ids_[0], 1, per_epoch, 0.9, 0.4));
      ASSERT_OK(job_->ReportMetrics(ids_[0], 1, per_epoch, 0.9, 0.4));  // a repeat: one entry
    }
  }
  EXPECT_EQ(job_->Status().state(), v1::JOB_STATE_RUNNING);
  EXPECT_THAT(job_->Status().message(), ::testing::HasSubstr("evaluating"));
  EXPECT_STATUS(job_->PushGradients(Push(0, job_->total_steps())),
                absl::StatusCode::kFailedPrecondition, "step");
  ASSERT_OK(job_->ReportMetrics(ids_[0], 3, job_->total_steps(), 0.5, 0.75));
  v1::JobStatus s = job_->Status();
  EXPECT_EQ(s.state(), v1::JOB_STATE_COMPLETED);
  EXPECT_EQ(s.epoch(), 3);
  EXPECT_DOUBLE_EQ(s.test_accuracy(), 0.75);
  EXPECT_EQ(JobStateName(s.state()), "completed");
  // Each reported epoch once in the history, oldest first, with the version it was taken at.
  ASSERT_EQ(s.history_size(), 2);
  EXPECT_EQ(s.history(0).epoch(), 1);
  EXPECT_EQ(s.history(0).step(), per_epoch);
  EXPECT_DOUBLE_EQ(s.history(0).test_accuracy(), 0.4);
  EXPECT_EQ(s.history(1).epoch(), 3);
  EXPECT_EQ(s.history(1).step(), job_->total_steps());
  EXPECT_DOUBLE_EQ(s.history(1).test_loss(), 0.5);
}

TEST_F(JobTest, ASilentWorkerFailsTheJobAndWakesWaiters) {
  JoinAll();
  std::thread waiter([&] {
    auto snap = job_->WaitForVersion(1, absl::Now() + absl::Seconds(30));
    EXPECT_OK(snap);
    EXPECT_EQ(snap->state, v1::JOB_STATE_FAILED);
  });
  job_->CheckLiveness(absl::Now() + absl::Seconds(5), absl::Seconds(10));
  EXPECT_EQ(job_->Status().state(), v1::JOB_STATE_RUNNING);
  job_->CheckLiveness(absl::Now() + absl::Seconds(11), absl::Seconds(10));
  waiter.join();
  v1::JobStatus s = job_->Status();
  EXPECT_EQ(s.state(), v1::JOB_STATE_FAILED);
  EXPECT_THAT(s.message(), ::testing::HasSubstr("worker rank 0 (w0)"));
}

TEST_F(JobTest, StopEndsTheJobOnceAndWatchersSeeIt) {
  JoinAll();
  int64_t revision = 0;
  job_->WaitForChange(&revision, absl::Now());
  std::thread stopper([&] { job_->Stop("stopped by the user"); });
  v1::JobStatus s = job_->WaitForChange(&revision, absl::Now() + absl::Seconds(10));
  stopper.join();
  EXPECT_EQ(s.state(), v1::JOB_STATE_STOPPED);
  job_->Fail("too late");
  EXPECT_EQ(job_->Status().state(), v1::JOB_STATE_STOPPED);
  EXPECT_EQ(job_->Status().message(), "stopped by the user");
}

TEST(JobManager, SubmitRejectsSpecsThatCannotRunNamingTheField) {
  JobManager manager({});
  v1::JobSpec spec = Spec(1, 8, "{type: sgd, learning_rate: 0.1}");
  v1::JobSpec zero_workers = spec;
  zero_workers.mutable_training()->set_workers(-2);
  EXPECT_STATUS(manager.Submit(zero_workers), absl::StatusCode::kInvalidArgument, "training.workers");
  v1::JobSpec wide = spec;
  wide.mutable_model()->mutable_layers(2)->set_units(3);
  EXPECT_STATUS(manager.Submit(wide), absl::StatusCode::kInvalidArgument, "model.layers[2].units");
  v1::JobSpec bad_layer = spec;
  bad_layer.mutable_model()->mutable_layers(1)->set_type("conv");
  EXPECT_STATUS(manager.Submit(bad_layer), absl::StatusCode::kInvalidArgument, "model.layers[1].type");
  v1::JobSpec no_data = spec;
  no_data.mutable_data()->set_path("/nonexistent.csv");
  EXPECT_STATUS(manager.Submit(no_data), absl::StatusCode::kNotFound, "/nonexistent.csv");
  EXPECT_TRUE(manager.List().empty());
}

TEST(JobManager, WorkersFindTheOldestJobThatNeedsThem) {
  JobManager manager({});
  EXPECT_STATUS(manager.WaitForJobNeedingWorkers("", absl::Now() + absl::Milliseconds(20)),
                absl::StatusCode::kNotFound, "no job");
  std::shared_ptr<Job> found;
  std::thread waiter([&] {
    auto job = manager.WaitForJobNeedingWorkers("", absl::Now() + absl::Seconds(10));
    EXPECT_OK(job);
    if (job.ok()) found = *job;
  });
  auto id = manager.Submit(Spec(1, 8, "{type: sgd, learning_rate: 0.1}"));
  ASSERT_OK(id);
  waiter.join();
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->id(), *id);
  EXPECT_EQ(*id, "eq-1");
  ASSERT_OK(found->AddWorker("w"));
  EXPECT_STATUS(manager.WaitForJobNeedingWorkers(*id, absl::Now()),
                absl::StatusCode::kFailedPrecondition, "needs no more workers");
  EXPECT_STATUS(manager.Get("nope"), absl::StatusCode::kNotFound, "nope");
}

}  // namespace
}  // namespace psgrid
