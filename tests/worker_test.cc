// The distributed worker against an in-process fake parameter server: the protocol (steps,
// sample counts, versions, evaluations) and the maths (the same weights as LocalTrainer).
#include <cmath>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "core/backend/cpu_backend.h"
#include "core/check.h"
#include "core/data/loader.h"
#include "core/data/sampler.h"
#include "core/model.h"
#include "core/optimizer.h"
#include "core/status_macros.h"
#include "core/tensor_codec.h"
#include "proto/job_spec_codec.h"
#include "psgrid/v1/service.grpc.pb.h"
#include "tests/test_util.h"
#include "worker/local_trainer.h"
#include "worker/rpc/grpc_parameter_client.h"
#include "worker/worker.h"
#include "worker/worker_main.h"

namespace psgrid {
namespace {

// y = 2a − 3b + 1 on a grid of 200 points: 180 for training, 20 held out. One file per test.
std::string WriteLinearCsv() {
  return ::psgrid::testing::WriteLinearCsv(
      absl::StrCat(::testing::UnitTest::GetInstance()->current_test_info()->name(), ".csv"));
}

// 180 samples in batches of 16 per step: 12 steps per epoch, the last one of 4 samples.
v1::JobSpec LinearSpec(int workers, int batch_per_worker, int epochs) {
  auto spec = ParseJobSpec(
      absl::StrCat("name: linear\n"
                   "model: {layers: [{type: dense, units: 1}], loss: mse, init: {seed: 3}}\n"
                   "data: {dataset: csv, path: ", WriteLinearCsv(), ", seed: 5}\n",
                   "training: {workers: ", workers, ", batch_size: ", batch_per_worker,
                   ", epochs: ", epochs, "}\n",
                   "optimizer: {type: momentum, learning_rate: 0.05, momentum: 0.5}\n"),
      "linear.yaml");
  EXPECT_OK(spec);
  return *spec;
}

// A synchronous parameter server in a few lines, with the semantics of server/job.h: step t
// waits for one push from every worker, averages the gradients weighted by sample count,
// applies the optimizer and publishes version t + 1; rank 0's report of the last version
// completes the job. Records every call. Thread-safe.
class FakeParameterServer : public ParameterClient {
 public:
  struct PushRecord {
    std::string worker_id;
    int64_t step;
    int64_t sample_count;
    double loss_sum;
    bool zero_gradient;
  };
  struct PullRecord {
    std::string worker_id;
    int64_t min_version;
    int64_t version;
  };

  explicit FakeParameterServer(const v1::JobSpec& spec) : spec_(spec) {
    auto data = LoadJobData(spec.data());
    PSGRID_CHECK(data.ok(), "test data");
    auto model = Model::Create(spec.model(), data->train.sample_shape(),
                               OutputWidth(data->train), &backend_);
    PSGRID_CHECK(model.ok(), "test model");
    layout_ = (*model)->parameters().infos();
    values_ = (*model)->parameters().values();  // a copy: the initial weights
    sum_ = Tensor({values_.size()});
    average_ = Tensor({values_.size()});
    optimizer_ = *CreateOptimizer(spec.optimizer(), values_.size());
    BatchSampler sampler(data->train.size(), spec.training().batch_size(),
                         spec.training().workers(), true, 0);
    steps_per_epoch_ = sampler.steps_per_epoch();
    total_steps_ = steps_per_epoch_ * spec.training().epochs();
    if (spec.training().max_steps() > 0) {
      total_steps_ = std::min(total_steps_, spec.training().max_steps());
    }
  }

  // Registration answers NOT_FOUND this many times before it assigns a rank.
  void SetRegistrationMisses(int n) {
    absl::MutexLock lock(&mu_);
    registration_misses_ = n;
  }
  // The spec that registration hands out, when it should differ from the server's own.
  void SetSpecForWorkers(const v1::JobSpec& spec) {
    absl::MutexLock lock(&mu_);
    spec_for_workers_ = spec;
  }
  // The job ends in `state` once `version` is published.
  void EndAtVersion(int64_t version, v1::JobState state) {
    absl::MutexLock lock(&mu_);
    end_at_version_ = version;
    end_state_ = state;
  }

  absl::StatusOr<v1::RegisterWorkerResponse> Register(const std::string& job_id,
                                                      const std::string& worker_name,
                                                      absl::Time deadline) override {
    absl::MutexLock lock(&mu_);
    if (registration_misses_ > 0) {
      --registration_misses_;
      return absl::NotFoundError("no job needs a worker");
    }
    if (next_rank_ >= spec_.training().workers()) {
      return absl::FailedPreconditionError("the job has all its workers");
    }
    v1::RegisterWorkerResponse r;
    r.set_job_id("job-1");
    r.set_rank(next_rank_);
    r.set_worker_id(absl::StrCat("w", next_rank_));
    r.set_world_size(spec_.training().workers());
    *r.mutable_spec() = spec_for_workers_.has_value() ? *spec_for_workers_ : spec_;
    r.set_total_steps(total_steps_);
    if (++next_rank_ == spec_.training().workers()) state_ = v1::JOB_STATE_RUNNING;
    return r;
  }

  absl::StatusOr<v1::PushGradientsResponse> Push(const v1::PushHeader& header,
                                                 const std::vector<ParamInfo>& layout,
                                                 const Tensor& gradients,
                                                 absl::Time deadline) override {
    absl::MutexLock lock(&mu_);
    if (state_ != v1::JOB_STATE_RUNNING) return absl::FailedPreconditionError("not running");
    if (header.step() != version_) return absl::FailedPreconditionError("wrong step");
    bool zero = true;
    for (float g : gradients.span()) zero = zero && g == 0.0f;
    pushes_.push_back({header.worker_id(), header.step(), header.sample_count(),
                       header.loss_sum(), zero});
    const float n = static_cast<float>(header.sample_count());
    for (int64_t i = 0; i < sum_.size(); ++i) sum_[i] += n * gradients[i];
    samples_ += header.sample_count();
    if (++pushes_this_step_ == spec_.training().workers()) {
      for (int64_t i = 0; i < sum_.size(); ++i) {
        average_[i] = sum_[i] / static_cast<float>(samples_);
      }
      optimizer_->Step(backend_, values_, average_);
      sum_.SetZero();
      samples_ = 0;
      pushes_this_step_ = 0;
      ++version_;
      if (version_ == end_at_version_) state_ = end_state_;
      cv_.SignalAll();
    }
    return v1::PushGradientsResponse();
  }

  absl::StatusOr<PullResult> Pull(const std::string& job_id, const std::string& worker_id,
                                  int64_t min_version, const std::vector<ParamInfo>& layout,
                                  Tensor* values, absl::Time deadline) override {
    absl::MutexLock lock(&mu_);
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return version_ >= min_version || state_ == v1::JOB_STATE_STOPPED ||
             state_ == v1::JOB_STATE_FAILED || state_ == v1::JOB_STATE_COMPLETED;
    };
    while (!ready()) {
      if (cv_.WaitWithDeadline(&mu_, deadline) && !ready()) {
        return absl::DeadlineExceededError("version not reached");
      }
    }
    // Through the wire codec, as the gRPC client does.
    SliceAssembler assembler(layout, values->data());
    absl::Status status;
    EncodeSlices(layout_, values_.data(), 16, [&](std::vector<v1::TensorSlice>&& group) {
      for (const auto& slice : group) {
        if (status.ok()) status = assembler.Add(slice);
      }
      return status.ok();
    });
    RETURN_IF_ERROR(status);
    RETURN_IF_ERROR(assembler.Finish());
    pulls_.push_back({worker_id, min_version, version_});
    return PullResult{version_, state_};
  }

  absl::Status ReportMetrics(const v1::ReportMetricsRequest& request,
                             absl::Time deadline) override {
    absl::MutexLock lock(&mu_);
    reports_.push_back(request);
    if (request.version() == total_steps_ && state_ == v1::JOB_STATE_RUNNING) {
      state_ = v1::JOB_STATE_COMPLETED;
    }
    cv_.SignalAll();
    return absl::OkStatus();
  }

  absl::StatusOr<v1::JobState> Heartbeat(const std::string& job_id, const std::string& worker_id,
                                         absl::Time deadline) override {
    absl::MutexLock lock(&mu_);
    ++heartbeats_;
    return state_;
  }

  int64_t total_steps() const { return total_steps_; }
  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  Tensor values() {
    absl::MutexLock lock(&mu_);
    return values_;
  }
  std::vector<PushRecord> pushes() {
    absl::MutexLock lock(&mu_);
    return pushes_;
  }
  std::vector<PullRecord> pulls() {
    absl::MutexLock lock(&mu_);
    return pulls_;
  }
  std::vector<v1::ReportMetricsRequest> reports() {
    absl::MutexLock lock(&mu_);
    return reports_;
  }
  int heartbeats() {
    absl::MutexLock lock(&mu_);
    return heartbeats_;
  }
  v1::JobState state() {
    absl::MutexLock lock(&mu_);
    return state_;
  }

 private:
  const v1::JobSpec spec_;
  CpuBackend backend_;
  std::vector<ParamInfo> layout_;
  std::unique_ptr<Optimizer> optimizer_;
  int64_t steps_per_epoch_ = 0;
  int64_t total_steps_ = 0;

  absl::Mutex mu_;
  absl::CondVar cv_;
  v1::JobState state_ ABSL_GUARDED_BY(mu_) = v1::JOB_STATE_PENDING;
  int next_rank_ ABSL_GUARDED_BY(mu_) = 0;
  int registration_misses_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<v1::JobSpec> spec_for_workers_ ABSL_GUARDED_BY(mu_);
  int64_t end_at_version_ ABSL_GUARDED_BY(mu_) = -1;
  v1::JobState end_state_ ABSL_GUARDED_BY(mu_) = v1::JOB_STATE_UNSPECIFIED;
  Tensor values_ ABSL_GUARDED_BY(mu_);
  Tensor sum_ ABSL_GUARDED_BY(mu_);
  Tensor average_ ABSL_GUARDED_BY(mu_);
  int64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  int pushes_this_step_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t samples_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<PushRecord> pushes_ ABSL_GUARDED_BY(mu_);
  std::vector<PullRecord> pulls_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::ReportMetricsRequest> reports_ ABSL_GUARDED_BY(mu_);
  int heartbeats_ ABSL_GUARDED_BY(mu_) = 0;
};

WorkerOptions QuietOptions() {
  WorkerOptions options;
  options.verbose = false;
  options.rpc_timeout = absl::Seconds(30);
  options.wait_for_job = absl::Seconds(30);
  options.heartbeat_period = absl::Milliseconds(50);
  return options;
}

// Runs `workers` Worker threads against `server`; returns each one's status.
std::vector<absl::Status> RunWorkers(FakeParameterServer* server, int workers,
                                     WorkerOptions options = QuietOptions()) {
  std::vector<absl::Status> results(workers);
  std::vector<std::thread> threads;
  for (int i = 0; i < workers; ++i) {
    threads.emplace_back([&, i] {
      CpuBackend backend;
      results[i] = Worker(server, &backend, options).Run();
    });
  }
  for (std::thread& t : threads) t.join();
  return results;
}

Tensor TrainLocally(const v1::JobSpec& spec) {
  CpuBackend backend;
  auto trainer = LocalTrainer::Create(spec, &backend);
  EXPECT_OK(trainer);
  EXPECT_OK((*trainer)->Run(nullptr));
  return (*trainer)->model().parameters().values();
}

TEST(Worker, OneWorkerPushesEveryStepAndPullsEveryVersion) {
  const v1::JobSpec spec = LinearSpec(/*workers=*/1, /*batch_per_worker=*/16, /*epochs=*/3);
  FakeParameterServer server(spec);
  ASSERT_EQ(server.steps_per_epoch(), 12);
  ASSERT_EQ(server.total_steps(), 36);
  for (const absl::Status& s : RunWorkers(&server, 1)) EXPECT_OK(s);

  const auto pushes = server.pushes();
  ASSERT_EQ(pushes.size(), 36u);
  int64_t epoch_samples[3] = {0, 0, 0};
  for (int64_t t = 0; t < 36; ++t) {
    EXPECT_EQ(pushes[t].step, t);
    EXPECT_EQ(pushes[t].worker_id, "w0");
    EXPECT_EQ(pushes[t].sample_count, t % 12 == 11 ? 4 : 16) << "step " << t;
    EXPECT_TRUE(std::isfinite(pushes[t].loss_sum));
    epoch_samples[t / 12] += pushes[t].sample_count;
  }
  for (int64_t n : epoch_samples) EXPECT_EQ(n, 180);

  const auto pulls = server.pulls();
  ASSERT_EQ(pulls.size(), 37u);
  for (int64_t v = 0; v <= 36; ++v) {
    EXPECT_EQ(pulls[v].min_version, v);
    EXPECT_EQ(pulls[v].version, v);
  }

  const auto reports = server.reports();
  ASSERT_EQ(reports.size(), 3u);
  for (int e = 0; e < 3; ++e) {
    EXPECT_EQ(reports[e].epoch(), e + 1);
    EXPECT_EQ(reports[e].version(), 12 * (e + 1));
    EXPECT_EQ(reports[e].worker_id(), "w0");
  }
  EXPECT_LT(reports[2].test_loss(), reports[0].test_loss());
  EXPECT_EQ(server.state(), v1::JOB_STATE_COMPLETED);
  EXPECT_GE(server.heartbeats(), 1);
}

TEST(Worker, OneWorkerTrainsTheSameWeightsAsLocalTrainer) {
  const v1::JobSpec spec = LinearSpec(1, 16, 5);
  FakeParameterServer server(spec);
  for (const absl::Status& s : RunWorkers(&server, 1)) EXPECT_OK(s);
  const Tensor local = TrainLocally(spec);
  const Tensor remote = server.values();
  ASSERT_EQ(local.size(), remote.size());
  for (int64_t i = 0; i < local.size(); ++i) EXPECT_NEAR(remote[i], local[i], 1e-6) << i;
}

TEST(Worker, TwoWorkersShareEachStepAndMatchLocalTrainerWithTheCombinedBatch) {
  // 2 workers of batch 8 = one process of batch 16: 12 steps per epoch; at the last step
  // rank 0 gets the 4 remaining samples and rank 1 none.
  const v1::JobSpec spec = LinearSpec(2, 8, 3);
  FakeParameterServer server(spec);
  ASSERT_EQ(server.total_steps(), 36);
  for (const absl::Status& s : RunWorkers(&server, 2)) EXPECT_OK(s);

  const auto pushes = server.pushes();
  ASSERT_EQ(pushes.size(), 72u);
  int64_t samples = 0;
  for (const std::string id : {"w0", "w1"}) {
    int64_t step = 0;
    for (const auto& p : pushes) {
      if (p.worker_id != id) continue;
      EXPECT_EQ(p.step, step);
      const bool tail = step % 12 == 11;
      EXPECT_EQ(p.sample_count, tail ? (id == "w0" ? 4 : 0) : 8) << id << " step " << step;
      if (p.sample_count == 0) {
        EXPECT_TRUE(p.zero_gradient);
        EXPECT_EQ(p.loss_sum, 0);
      }
      samples += p.sample_count;
      ++step;
    }
    EXPECT_EQ(step, 36);
  }
  EXPECT_EQ(samples, 3 * 180);
  const auto reports = server.reports();
  ASSERT_EQ(reports.size(), 3u);
  for (const auto& r : reports) EXPECT_EQ(r.worker_id(), "w0");

  const Tensor local = TrainLocally(spec);  // W workers of batch B as one batch of W·B
  const Tensor remote = server.values();
  for (int64_t i = 0; i < local.size(); ++i) EXPECT_NEAR(remote[i], local[i], 1e-5) << i;
}

TEST(Worker, MaxStepsEndsMidEpochWithAFinalEvaluation) {
  v1::JobSpec spec = LinearSpec(1, 16, 3);
  spec.mutable_training()->set_max_steps(5);
  FakeParameterServer server(spec);
  ASSERT_EQ(server.total_steps(), 5);
  for (const absl::Status& s : RunWorkers(&server, 1)) EXPECT_OK(s);
  EXPECT_EQ(server.pushes().size(), 5u);
  const auto reports = server.reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].version(), 5);
  EXPECT_EQ(reports[0].epoch(), 1);
  EXPECT_EQ(server.state(), v1::JOB_STATE_COMPLETED);

  const Tensor local = TrainLocally(spec);
  const Tensor remote = server.values();
  for (int64_t i = 0; i < local.size(); ++i) EXPECT_NEAR(remote[i], local[i], 1e-6) << i;
}

TEST(Worker, AStoppedJobEndsRunWithOk) {
  const v1::JobSpec spec = LinearSpec(2, 8, 3);
  FakeParameterServer server(spec);
  server.EndAtVersion(4, v1::JOB_STATE_STOPPED);
  for (const absl::Status& s : RunWorkers(&server, 2)) EXPECT_OK(s);
  EXPECT_EQ(server.pushes().size(), 8u);  // steps 0..3 of both workers
  EXPECT_TRUE(server.reports().empty());
}

TEST(Worker, AFailedJobIsAnErrorNamingTheJob) {
  const v1::JobSpec spec = LinearSpec(1, 16, 3);
  FakeParameterServer server(spec);
  server.EndAtVersion(2, v1::JOB_STATE_FAILED);
  const auto results = RunWorkers(&server, 1);
  EXPECT_STATUS(results[0], absl::StatusCode::kAborted, "job job-1 failed");
  EXPECT_EQ(server.pushes().size(), 2u);
}

TEST(Worker, RegistrationIsRetriedUntilAJobNeedsTheWorker) {
  const v1::JobSpec spec = LinearSpec(1, 16, 1);
  FakeParameterServer server(spec);
  server.SetRegistrationMisses(2);
  for (const absl::Status& s : RunWorkers(&server, 1)) EXPECT_OK(s);
  EXPECT_EQ(server.pushes().size(), 12u);
}

TEST(Worker, NoJobWithinWaitForJobIsNotFound) {
  const v1::JobSpec spec = LinearSpec(1, 16, 1);
  FakeParameterServer server(spec);
  server.SetRegistrationMisses(1000);
  WorkerOptions options = QuietOptions();
  options.job_id = "job-7";
  options.wait_for_job = absl::Milliseconds(300);
  const absl::Time start = absl::Now();
  const auto results = RunWorkers(&server, 1, options);
  EXPECT_STATUS(results[0], absl::StatusCode::kNotFound, "job job-7");
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_TRUE(server.pushes().empty());
}

TEST(Worker, MissingDataIsAnErrorNamingThePath) {
  const v1::JobSpec spec = LinearSpec(1, 16, 1);
  FakeParameterServer server(spec);
  v1::JobSpec elsewhere = spec;  // as if this worker's machine lacked the file
  elsewhere.mutable_data()->set_path("/nonexistent/worker.csv");
  server.SetSpecForWorkers(elsewhere);
  const auto results = RunWorkers(&server, 1);
  EXPECT_STATUS(results[0], absl::StatusCode::kNotFound, "/nonexistent/worker.csv");
  EXPECT_TRUE(server.pushes().empty());
}

// A Parameters service over one arena, for the gRPC client's wire handling: a push stores
// the gradient, a pull streams the stored arena back in 64 KiB groups, RegisterWorker has no
// job and Heartbeat says the job was stopped. Thread-safe.
class EchoParametersService final : public v1::Parameters::Service {
 public:
  EchoParametersService(std::vector<ParamInfo> layout, int64_t arena_size)
      : layout_(std::move(layout)), arena_({arena_size}) {}

  grpc::Status RegisterWorker(grpc::ServerContext*, const v1::RegisterWorkerRequest* request,
                              v1::RegisterWorkerResponse*) override {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "no job " + request->job_id());
  }
  grpc::Status PushGradients(grpc::ServerContext*,
                             grpc::ServerReader<v1::PushGradientsRequest>* reader,
                             v1::PushGradientsResponse*) override {
    absl::MutexLock lock(&mu_);
    SliceAssembler assembler(layout_, arena_.data());
    v1::PushGradientsRequest message;
    while (reader->Read(&message)) {
      if (push_messages_++ == 0) first_header_ = message.header();
      for (const v1::TensorSlice& slice : message.slices()) {
        const absl::Status s = assembler.Add(slice);
        if (!s.ok()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string(s.message()));
      }
    }
    const absl::Status whole = assembler.Finish();
    if (!whole.ok()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string(whole.message()));
    }
    return grpc::Status::OK;
  }
  grpc::Status PullParameters(grpc::ServerContext*, const v1::PullParametersRequest* request,
                              grpc::ServerWriter<v1::PullParametersResponse>* writer) override {
    absl::MutexLock lock(&mu_);
    bool first = true;
    EncodeSlices(layout_, arena_.data(), 64 << 10, [&](std::vector<v1::TensorSlice>&& group) {
      v1::PullParametersResponse message;
      if (first) {
        message.set_version(request->min_version());
        message.set_state(v1::JOB_STATE_RUNNING);
        first = false;
      }
      for (v1::TensorSlice& slice : group) *message.add_slices() = std::move(slice);
      return writer->Write(message);
    });
    return grpc::Status::OK;
  }
  grpc::Status Heartbeat(grpc::ServerContext*, const v1::HeartbeatRequest*,
                         v1::HeartbeatResponse* response) override {
    response->set_state(v1::JOB_STATE_STOPPED);
    return grpc::Status::OK;
  }

  int push_messages() {
    absl::MutexLock lock(&mu_);
    return push_messages_;
  }
  v1::PushHeader first_header() {
    absl::MutexLock lock(&mu_);
    return first_header_;
  }

 private:
  const std::vector<ParamInfo> layout_;
  absl::Mutex mu_;
  Tensor arena_ ABSL_GUARDED_BY(mu_);
  int push_messages_ ABSL_GUARDED_BY(mu_) = 0;
  v1::PushHeader first_header_ ABSL_GUARDED_BY(mu_);
};

TEST(WorkerGrpcClient, PushAndPullCarryAPaddedMultiMegabyteArenaWhole) {
  // 1.45 MB of parameters in an arena padded after each tensor: several stream messages.
  ParameterSet params;
  params.Declare("0.weight", {600, 601}, ParamKind::kWeight, 601, 600);
  params.Declare("0.bias", {600}, ParamKind::kBias, 601, 600);
  params.Declare("1.weight", {3, 600}, ParamKind::kWeight, 600, 3);
  params.Declare("1.bias", {3}, ParamKind::kBias, 600, 3);
  params.Allocate();
  for (const ParamInfo& info : params.infos()) {
    for (int64_t i = 0; i < info.size; ++i) params.grads()[info.offset + i] = 0.25f * (i % 97) + 1;
  }
  EchoParametersService service(params.infos(), params.total_size());
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  const std::string address = absl::StrCat("127.0.0.1:", port);
  auto client = GrpcParameterClient::Connect(address, absl::Seconds(5));
  ASSERT_OK(client);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);

  v1::PushHeader header;
  header.set_job_id("job-1");
  header.set_worker_id("w0");
  header.set_step(7);
  header.set_sample_count(64);
  ASSERT_OK((*client)->Push(header, params.infos(), params.grads(), deadline));
  EXPECT_GE(service.push_messages(), 2);
  EXPECT_EQ(service.first_header().step(), 7);
  EXPECT_EQ(service.first_header().sample_count(), 64);

  auto pulled = (*client)->Pull("job-1", "w0", 8, params.infos(), &params.values(), deadline);
  ASSERT_OK(pulled);
  EXPECT_EQ(pulled->version, 8);
  EXPECT_EQ(pulled->state, v1::JOB_STATE_RUNNING);
  for (const ParamInfo& info : params.infos()) {
    for (int64_t i = 0; i < info.size; ++i) {
      ASSERT_EQ(params.values()[info.offset + i], params.grads()[info.offset + i]) << info.name;
    }
  }

  EXPECT_STATUS((*client)->Register("job-9", "me", deadline), absl::StatusCode::kNotFound,
                "no job job-9");
  auto state = (*client)->Heartbeat("job-1", "w0", deadline);
  ASSERT_OK(state);
  EXPECT_EQ(*state, v1::JOB_STATE_STOPPED);
  Tensor too_small({10});
  EXPECT_STATUS((*client)->Pull("job-1", "w0", 8, params.infos(), &too_small, deadline),
                absl::StatusCode::kInvalidArgument, "arena");
  server->Shutdown();
}

TEST(WorkerGrpcClient, AnUnreachableServerIsUnavailableNamingTheAddress) {
  const absl::Time start = absl::Now();
  EXPECT_STATUS(GrpcParameterClient::Connect("127.0.0.1:1", absl::Seconds(1)),
                absl::StatusCode::kUnavailable, "127.0.0.1:1");
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST(WorkerMain, AnUnreachableServerExitsWithOne) {
  std::vector<std::string> args = {"psgrid worker", "--server", "127.0.0.1:1",
                                   "--connect-timeout", "0.2", "--quiet"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  EXPECT_EQ(RunWorkerMain(static_cast<int>(argv.size()), argv.data()), 1);
}

TEST(WorkerMain, BadUsageExitsWithTwo) {
  std::vector<std::string> args = {"psgrid-worker", "--threads", "zero"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  EXPECT_EQ(RunWorkerMain(static_cast<int>(argv.size()), argv.data()), 2);
}

}  // namespace
}  // namespace psgrid
