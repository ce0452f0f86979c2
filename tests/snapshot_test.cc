// Snapshots of a running job through the server's domain objects: on demand and periodic, with
// the optimizer's state, pruned to keep_last, verified, corrupted, and read back as weights.
#include <algorithm>
#include <filesystem>
#include <fstream>

#include "core/backend/cpu_backend.h"
#include "core/data/loader.h"
#include "core/data/sampler.h"
#include "core/model.h"
#include "proto/job_spec_codec.h"
#include "server/job_manager.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

using ::psgrid::testing::TempPath;
using ::psgrid::testing::WriteLinearCsv;

class SnapshotTest : public ::testing::Test {
 protected:
  void Start(const std::string& snapshot_spec, bool with_data_dir = true) {
    JobManagerOptions options;
    if (with_data_dir) {
      data_dir_ = TempPath("snapshot_data");
      options.data_dir = data_dir_;
    }
    manager_ = std::make_unique<JobManager>(options);
    auto spec = ParseJobSpec(
        "name: snap\n"
        "model: {layers: [{type: dense, units: 4}, {type: tanh}, {type: dense, units: 1}], "
        "loss: mse}\n"
        "data: {dataset: csv, path: " + WriteLinearCsv("snapshot.csv") + ", shuffle: false}\n"
        "training: {batch_size: 10, epochs: 2}\n"
        "optimizer: {type: momentum, learning_rate: 0.05, momentum: 0.9}\n" + snapshot_spec,
        "spec");
    ASSERT_OK(spec);
    auto id = manager_->Submit(*spec);
    ASSERT_OK(id);
    job_ = *manager_->Get(*id);
    auto w = job_->AddWorker("w");
    ASSERT_OK(w);
    worker_ = w->worker_id;
    gradient_ = Tensor({job_->arena_size()});
  }

  // Steps [from, to) with a gradient that changes every step.
  void Train(int64_t from, int64_t to) {
    for (int64_t t = from; t < to; ++t) {
      for (int64_t i = 0; i < gradient_.size(); ++i) {
        gradient_[i] = 0.01f * static_cast<float>((i * 7 + t * 3) % 11) - 0.05f;
      }
      GradientPush push;
      push.worker_id = worker_;
      push.step = t;
      push.sample_count = 10;
      push.loss_sum = 1.0;
      push.gradients = &gradient_;
      ASSERT_OK(job_->PushGradients(push));
    }
  }

  std::string SnapshotDir() const {
    return data_dir_ + "/jobs/" + job_->id() + "/snapshots";
  }

  std::string data_dir_;
  std::unique_ptr<JobManager> manager_;
  std::shared_ptr<Job> job_;
  std::string worker_;
  Tensor gradient_;
};

TEST_F(SnapshotTest, OnDemandSnapshotHoldsWeightsAndOptimizerStateOfItsStep) {
  Start("");
  Train(0, 5);
  auto info = job_->TakeSnapshot(absl::Now() + absl::Seconds(30));
  ASSERT_OK(info);
  EXPECT_EQ(info->step, 5);
  EXPECT_GT(info->bytes, 0);
  auto now = job_->Weights("");
  ASSERT_OK(now);
  Train(5, 8);  // the job moves on; the snapshot does not
  auto saved = job_->Weights(info->id);
  ASSERT_OK(saved);
  EXPECT_EQ(saved->step, 5);
  ASSERT_EQ(saved->tensors.size(), now->tensors.size());
  for (size_t i = 0; i < now->tensors.size(); ++i) {
    EXPECT_EQ(saved->tensors[i].first, now->tensors[i].first);
    EXPECT_EQ(saved->tensors[i].second.shape(), now->tensors[i].second.shape());
    EXPECT_EQ(0, std::memcmp(saved->tensors[i].second.data(), now->tensors[i].second.data(),
                             now->tensors[i].second.size() * sizeof(float)));
  }
  EXPECT_EQ(now->tensors[0].first, "0.weight");
  // The momentum buffers travel with it, cut per parameter.
  SnapshotStore store(SnapshotDir());
  auto contents = store.Read(info->id);
  ASSERT_OK(contents);
  bool momentum = false;
  for (const auto& [name, tensor] : contents->tensors) {
    momentum |= name == "state.momentum_buffer.0.weight";
  }
  EXPECT_TRUE(momentum);
  EXPECT_EQ(contents->metadata.at("job_id"), job_->id());
  EXPECT_EQ(contents->metadata.at("step"), "5");
  EXPECT_OK(job_->VerifySnapshot(info->id));
}

TEST_F(SnapshotTest, PeriodicSnapshotsArePrunedToKeepLast) {
  Start("snapshot: {every_steps: 2, keep_last: 2}\n");
  for (int64_t t = 0; t < 10; ++t) {
    Train(t, t + 1);
    if ((t + 1) % 2 != 0) continue;
    // Give each write time to land (not required: a due one is taken at a later step).
    for (int i = 0; i < 200; ++i) {
      auto all = job_->ListSnapshots();
      ASSERT_OK(all);
      if (!all->empty() && all->back().step == t + 1) break;
      absl::SleepFor(absl::Milliseconds(10));
    }
    EXPECT_LE(job_->ListSnapshots()->size(), 2u);
  }
  // An on-demand snapshot waits for the write in flight; then two are left: a periodic one (of
  // an even step; one due while another was written may come a step late) and the new one.
  ASSERT_OK(job_->TakeSnapshot(absl::Now() + absl::Seconds(30)));
  auto all = job_->ListSnapshots();
  ASSERT_OK(all);
  ASSERT_EQ(all->size(), 2u);
  EXPECT_GE((*all)[0].step, 6);
  EXPECT_EQ((*all)[1].step, 10);
  int on_disk = 0;
  for (const auto& entry : std::filesystem::directory_iterator(SnapshotDir())) {
    on_disk += entry.is_directory() ? 1 : 0;
  }
  EXPECT_EQ(on_disk, 2);
}

TEST_F(SnapshotTest, ACorruptSnapshotFailsVerificationNamingTheTensor) {
  Start("");
  Train(0, 3);
  auto info = job_->TakeSnapshot(absl::Now() + absl::Seconds(30));
  ASSERT_OK(info);
  const std::string tensors = SnapshotDir() + "/" + info->id + "/tensors.bin";
  {
    std::fstream f(tensors, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(5);
    char c = 0;
    f.read(&c, 1);
    f.seekp(5);
    c ^= 0x10;
    f.write(&c, 1);
  }
  EXPECT_STATUS(job_->VerifySnapshot(info->id), absl::StatusCode::kDataLoss, "0.weight");
  EXPECT_STATUS(job_->Weights(info->id), absl::StatusCode::kDataLoss, "0.weight");
  EXPECT_STATUS(job_->VerifySnapshot("no-such-snapshot"), absl::StatusCode::kNotFound,
                "no-such-snapshot");
}

TEST_F(SnapshotTest, WithoutADataDirectoryThereAreNoSnapshots) {
  Start("", /*with_data_dir=*/false);
  Train(0, 1);
  EXPECT_STATUS(job_->TakeSnapshot(absl::Now() + absl::Seconds(5)),
                absl::StatusCode::kFailedPrecondition, "--data-dir");
  auto all = job_->ListSnapshots();
  ASSERT_OK(all);
  EXPECT_TRUE(all->empty());
}

// A worker in the test's hands: real gradients of the job's current weights on its batches.
class Trainer {
 public:
  explicit Trainer(const v1::JobSpec& spec) : spec_(spec) {
    auto data = LoadJobData(spec.data());
    EXPECT_OK(data);
    data_ = std::move(*data);
    auto model = Model::Create(spec.model(), data_.train.sample_shape(), 1, &backend_);
    EXPECT_OK(model);
    model_ = std::move(*model);
  }

  void Steps(Job& job, const std::string& worker, int64_t from, int64_t to) {
    BatchSampler sampler(data_.train.size(), spec_.training().batch_size(), 1,
                         spec_.data().shuffle(), spec_.data().seed());
    for (int64_t t = from; t < to; ++t) {
      auto snap = job.WaitForVersion(t, absl::Now() + absl::Seconds(5));
      ASSERT_OK(snap);
      ASSERT_EQ(snap->version, t);
      std::memcpy(model_->parameters().values().data(), snap->values->data(),
                  snap->values->size() * sizeof(float));
      sampler.StartEpoch(t / sampler.steps_per_epoch());
      auto indices = sampler.Batch(t % sampler.steps_per_epoch(), 0);
      GatherBatch(data_.train, indices, &x_, &labels_, &values_);
      Targets targets;
      targets.values = &values_;
      auto r = model_->ComputeGradients(x_, targets);
      ASSERT_OK(r);
      GradientPush push;
      push.worker_id = worker;
      push.step = t;
      push.sample_count = static_cast<int64_t>(indices.size());
      push.loss_sum = r->loss * static_cast<double>(indices.size());
      push.gradients = &model_->parameters().grads();
      ASSERT_OK(job.PushGradients(push));
    }
  }

 private:
  v1::JobSpec spec_;
  CpuBackend backend_;
  TrainTestData data_;
  std::unique_ptr<Model> model_;
  Tensor x_, values_;
  std::vector<int32_t> labels_;
};

v1::JobSpec ResumeSpec(
    const std::string& optimizer = "{type: momentum, learning_rate: 0.05, momentum: 0.9}") {
  auto spec = ParseJobSpec(
      "name: resume\n"
      "model: {layers: [{type: dense, units: 5}, {type: tanh}, {type: dense, units: 1}], "
      "loss: mse, init: {seed: 3}}\n"
      "data: {dataset: csv, path: " + WriteLinearCsv("resume.csv") + ", seed: 9}\n"
      "training: {batch_size: 16, epochs: 3}\n"
      "optimizer: " + optimizer + "\n",
      "spec");
  EXPECT_OK(spec);
  return *spec;
}

Tensor CurrentWeights(Job& job) {
  auto snap = job.WaitForVersion(0, absl::Now() + absl::Seconds(5));
  EXPECT_OK(snap);
  return *snap->values;
}

class SnapshotResumeTest : public ::testing::TestWithParam<const char*> {};

TEST_P(SnapshotResumeTest, AJobResumedByARestartedServerEndsWithTheWeightsOfAnUninterruptedRun) {
  const v1::JobSpec spec = ResumeSpec(GetParam());
  const int64_t k = 17, n = 30;  // k inside the second epoch (13 steps per epoch)
  Tensor uninterrupted;
  {
    JobManager manager({});
    auto id = manager.Submit(spec);
    ASSERT_OK(id);
    std::shared_ptr<Job> job = *manager.Get(*id);
    auto w = job->AddWorker("w");
    ASSERT_OK(w);
    Trainer trainer(spec);
    trainer.Steps(*job, w->worker_id, 0, n);
    uninterrupted = CurrentWeights(*job);
  }
  JobManagerOptions options;
  std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  std::replace(name.begin(), name.end(), '/', '_');
  options.data_dir = TempPath(name);  // one per optimizer
  std::string id;
  {
    JobManager manager(options);
    auto submitted = manager.Submit(spec);
    ASSERT_OK(submitted);
    id = *submitted;
    std::shared_ptr<Job> job = *manager.Get(id);
    auto w = job->AddWorker("w");
    ASSERT_OK(w);
    Trainer trainer(spec);
    trainer.Steps(*job, w->worker_id, 0, k);
    ASSERT_OK(job->TakeSnapshot(absl::Now() + absl::Seconds(30)));
    trainer.Steps(*job, w->worker_id, k, k + 4);  // work the crash loses
  }  // the server goes away without recording the job as ended
  JobManager restarted(options);
  EXPECT_EQ(restarted.ResumeJobs(), 1);
  auto job = restarted.Get(id);
  ASSERT_OK(job);
  EXPECT_EQ((*job)->Status().state(), v1::JOB_STATE_PENDING);
  EXPECT_EQ((*job)->Status().step(), k);
  EXPECT_THAT((*job)->Status().message(), ::testing::HasSubstr("rejoin"));
  // The old worker id is known again; calling in with it takes its place.
  auto beat = (*job)->Heartbeat(id + "/w0");
  ASSERT_OK(beat);
  EXPECT_EQ(beat->version(), k);
  EXPECT_EQ((*job)->Status().state(), v1::JOB_STATE_RUNNING);
  Trainer trainer(spec);
  trainer.Steps(**job, id + "/w0", k, n);
  const Tensor resumed = CurrentWeights(**job);
  ASSERT_EQ(resumed.size(), uninterrupted.size());
  double worst = 0;
  for (int64_t i = 0; i < resumed.size(); ++i) {
    const double scale = std::max(1e-6, static_cast<double>(std::abs(uninterrupted[i])));
    worst = std::max(worst, std::abs(static_cast<double>(resumed[i]) - uninterrupted[i]) / scale);
  }
  EXPECT_LE(worst, 1e-6);
}

// Momentum keeps a buffer; Adam two moments and a step count (the job's version).
INSTANTIATE_TEST_SUITE_P(Optimizers, SnapshotResumeTest,
                         ::testing::Values("{type: momentum, learning_rate: 0.05, momentum: 0.9}",
                                           "{type: adam, learning_rate: 0.01}"));

TEST_F(SnapshotTest, RestoringARunningJobRollsItBackAndTellsItsWorker) {
  Start("");
  Train(0, 5);
  auto info = job_->TakeSnapshot(absl::Now() + absl::Seconds(30));
  ASSERT_OK(info);
  auto at5 = job_->Weights("");
  ASSERT_OK(at5);
  Train(5, 8);
  ASSERT_OK(manager_->RestoreSnapshot(job_->id(), info->id));
  EXPECT_EQ(job_->Status().step(), 5);
  EXPECT_EQ(job_->Status().state(), v1::JOB_STATE_RUNNING);
  auto now = job_->Weights("");
  ASSERT_OK(now);
  for (size_t i = 0; i < now->tensors.size(); ++i) {
    EXPECT_EQ(0, std::memcmp(now->tensors[i].second.data(), at5->tensors[i].second.data(),
                             at5->tensors[i].second.size() * sizeof(float)));
  }
  // The worker, at step 8, is refused and learns where the job is.
  GradientPush late;
  late.worker_id = worker_;
  late.step = 8;
  late.sample_count = 10;
  late.gradients = &gradient_;
  EXPECT_STATUS(job_->PushGradients(late), absl::StatusCode::kFailedPrecondition, "step 8");
  EXPECT_STATUS(job_->CheckPull(worker_, 9), absl::StatusCode::kFailedPrecondition, "rolled back");
  EXPECT_EQ(job_->Heartbeat(worker_)->version(), 5);
  Train(5, 6);  // and goes on from there
  EXPECT_EQ(job_->Status().step(), 6);
}

TEST_F(SnapshotTest, ASnapshotThatDoesNotFitTheModelIsRefusedAndChangesNothing) {
  Start("");
  Train(0, 3);
  auto good = job_->ReadSnapshot(job_->TakeSnapshot(absl::Now() + absl::Seconds(30))->id);
  ASSERT_OK(good);
  Train(3, 4);
  SnapshotContents missing = *good;
  missing.tensors.erase(missing.tensors.begin());
  EXPECT_STATUS(job_->Restore(missing), absl::StatusCode::kInvalidArgument, "0.weight");
  SnapshotContents wrong_shape = *good;
  wrong_shape.tensors[2].second = Tensor({3, 3});
  EXPECT_STATUS(job_->Restore(wrong_shape), absl::StatusCode::kInvalidArgument,
                wrong_shape.tensors[2].first);
  EXPECT_EQ(job_->Status().step(), 4);
  EXPECT_STATUS(manager_->RestoreSnapshot(job_->id(), "no-such"), absl::StatusCode::kNotFound,
                "no-such");
}

TEST_F(SnapshotTest, ARestoredStoppedJobWaitsForWorkersAndNewOnesTakeTheOldSlots) {
  Start("");
  Train(0, 4);
  auto info = job_->TakeSnapshot(absl::Now() + absl::Seconds(30));
  ASSERT_OK(info);
  Train(4, 6);
  job_->Stop("stopped by the user");
  ASSERT_OK(manager_->RestoreSnapshot(job_->id(), info->id));
  v1::JobStatus s = job_->Status();
  EXPECT_EQ(s.state(), v1::JOB_STATE_PENDING);
  EXPECT_EQ(s.step(), 4);
  EXPECT_THAT(s.message(), ::testing::HasSubstr("waiting for 1 worker(s) to rejoin"));
  EXPECT_TRUE(job_->NeedsWorkers());
  auto newcomer = job_->AddWorker("new");
  ASSERT_OK(newcomer);
  EXPECT_EQ(newcomer->rank, 0);
  EXPECT_EQ(newcomer->worker_id, worker_);  // the old slot, and its id
  EXPECT_EQ(job_->Status().state(), v1::JOB_STATE_RUNNING);
  EXPECT_FALSE(job_->NeedsWorkers());
  Train(4, 5);
  EXPECT_EQ(job_->Status().step(), 5);
}

TEST(SnapshotResume, ARestartedServerSkipsADamagedSnapshotForTheNextOlder) {
  const v1::JobSpec spec = ResumeSpec();
  JobManagerOptions options;
  options.data_dir = TempPath("resume_damaged");
  std::string id, newest;
  {
    JobManager manager(options);
    id = *manager.Submit(spec);
    std::shared_ptr<Job> job = *manager.Get(id);
    auto w = job->AddWorker("w");
    ASSERT_OK(w);
    Trainer trainer(spec);
    trainer.Steps(*job, w->worker_id, 0, 4);
    ASSERT_OK(job->TakeSnapshot(absl::Now() + absl::Seconds(30)));
    trainer.Steps(*job, w->worker_id, 4, 7);
    auto last = job->TakeSnapshot(absl::Now() + absl::Seconds(30));
    ASSERT_OK(last);
    newest = last->id;
  }
  std::filesystem::resize_file(options.data_dir + "/jobs/" + id + "/snapshots/" + newest +
                                   "/tensors.bin", 10);
  JobManager restarted(options);
  EXPECT_EQ(restarted.ResumeJobs(), 1);
  EXPECT_EQ((*restarted.Get(id))->Status().step(), 4);
}

TEST(SnapshotResume, AJobThatEndedIsNotResumed) {
  JobManagerOptions options;
  options.data_dir = TempPath("resume_ended");
  {
    JobManager manager(options);
    auto id = manager.Submit(ResumeSpec());
    ASSERT_OK(id);
    (*manager.Get(*id))->Stop("stopped by the user");
  }
  JobManager restarted(options);
  EXPECT_EQ(restarted.ResumeJobs(), 0);
  EXPECT_TRUE(restarted.List().empty());
}

}  // namespace
}  // namespace psgrid
