// End-to-end tests of the gRPC services: a GrpcServer on 127.0.0.1:0 in this process over a
// JobManager, called through the raw generated stubs, every call with a deadline.
#include "server/rpc/grpc_server.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "core/tensor.h"
#include "core/tensor_codec.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "psgrid/v1/service.grpc.pb.h"
#include "server/job_manager.h"
#include "tests/test_util.h"

namespace psgrid {
namespace {

using ::testing::HasSubstr;

constexpr size_t kMaxStreamMessageBytes = 4 << 20;

// Writes `text` to a file under the test's temporary directory and returns its path. The name
// carries the process id, so that test processes run in parallel do not share files.
std::string WriteTempFile(const std::string& name, const std::string& text) {
  const std::string path = ::psgrid::testing::TempPath(name);
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

// A regression CSV "f1,f2,target" with `rows` rows (10% of them are held out for testing).
std::string SmallCsv(int rows) {
  std::string text = "f1,f2,target\n";
  for (int i = 0; i < rows; ++i) {
    absl::StrAppend(&text, 0.1 * i, ",", 1.0 - 0.05 * i, ",", 0.3 * i - 1, "\n");
  }
  return WriteTempFile("grpc_server_small.csv", text);
}

// A linear regression job on SmallCsv: one dense unit, mse, plain SGD.
v1::JobSpec SmallSpec(int workers, int batch_size = 2, double learning_rate = 0.1) {
  v1::JobSpec spec;
  spec.set_name("small");
  *spec.mutable_model() = testing::MakeModelSpec({{"dense", 1}}, "mse");
  spec.mutable_data()->set_dataset("csv");
  spec.mutable_data()->set_path(SmallCsv(40));
  spec.mutable_data()->set_shuffle(false);
  spec.mutable_training()->set_workers(workers);
  spec.mutable_training()->set_batch_size(batch_size);
  spec.mutable_training()->set_epochs(1);
  spec.mutable_optimizer()->set_type("sgd");
  spec.mutable_optimizer()->set_learning_rate(learning_rate);
  return spec;
}

std::unique_ptr<grpc::ClientContext> ContextWithTimeout(absl::Duration timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return context;
}

// A job's parameter layout and the size of its arena (which has alignment padding after each
// tensor, so it is not the sum of the layout's sizes).
struct Arena {
  std::vector<ParamInfo> layout;
  int64_t size = 0;
};

// Calls `fn(i)` for every arena element that belongs to a tensor (not padding).
template <typename Fn>
void ForEachParameterElement(const Arena& arena, Fn fn) {
  for (const ParamInfo& info : arena.layout) {
    for (int64_t i = info.offset; i < info.offset + info.size; ++i) fn(i);
  }
}

// A push stream: the header, then the slices of `arena` in groups of at most 1 MiB.
std::vector<v1::PushGradientsRequest> PushMessages(const v1::PushHeader& header,
                                                   const std::vector<ParamInfo>& layout,
                                                   const Tensor& arena) {
  std::vector<v1::PushGradientsRequest> messages(1);
  *messages[0].mutable_header() = header;
  EncodeSlices(layout, arena.data(), kDefaultChunkBytes,
               [&](std::vector<v1::TensorSlice>&& slices) {
                 v1::PushGradientsRequest& m = messages.emplace_back();
                 for (v1::TensorSlice& s : slices) *m.add_slices() = std::move(s);
                 return true;
               });
  return messages;
}

struct PushOutcome {
  grpc::Status status;
  bool duplicate = false;
};

struct PullOutcome {
  grpc::Status status;
  int64_t version = -1;
  v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
  Tensor values;
  int messages = 0;
  size_t largest_message_bytes = 0;
  absl::Duration elapsed;
};

class GrpcServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    JobManagerOptions options;
    options.worker_timeout = absl::Seconds(60);
    manager_ = std::make_unique<JobManager>(options);
    absl::StatusOr<std::unique_ptr<GrpcServer>> server =
        GrpcServer::Start("127.0.0.1:0", manager_.get());
    ASSERT_OK(server);
    server_ = *std::move(server);
    ASSERT_GT(server_->port(), 0);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    control_ = v1::Control::NewStub(channel_);
    parameters_ = v1::Parameters::NewStub(channel_);
  }

  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(absl::Seconds(2));
  }

  std::string Submit(const v1::JobSpec& spec) {
    v1::SubmitJobRequest request;
    *request.mutable_spec() = spec;
    v1::SubmitJobResponse response;
    grpc::Status status =
        control_->SubmitJob(ContextWithTimeout(absl::Seconds(30)).get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response.job_id();
  }

  v1::JobStatus GetJob(const std::string& job_id) {
    v1::GetJobRequest request;
    request.set_job_id(job_id);
    v1::JobStatus response;
    grpc::Status status =
        control_->GetJob(ContextWithTimeout(absl::Seconds(10)).get(), request, &response);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return response;
  }

  grpc::Status Register(const std::string& job_id, v1::RegisterWorkerResponse* response,
                        absl::Duration timeout = absl::Seconds(10)) {
    v1::RegisterWorkerRequest request;
    request.set_job_id(job_id);
    request.set_worker_name("test-worker");
    return parameters_->RegisterWorker(ContextWithTimeout(timeout).get(), request, response);
  }

  PushOutcome PushRaw(const std::vector<v1::PushGradientsRequest>& messages) {
    auto context = ContextWithTimeout(absl::Seconds(60));
    PushOutcome outcome;
    v1::PushGradientsResponse response;
    std::unique_ptr<grpc::ClientWriter<v1::PushGradientsRequest>> writer =
        parameters_->PushGradients(context.get(), &response);
    for (const v1::PushGradientsRequest& m : messages) {
      EXPECT_LE(m.ByteSizeLong(), kMaxStreamMessageBytes);
      if (!writer->Write(m)) break;  // the server has answered already
    }
    writer->WritesDone();
    outcome.status = writer->Finish();
    outcome.duplicate = response.duplicate();
    return outcome;
  }

  PushOutcome Push(const v1::RegisterWorkerResponse& worker, int64_t step, int64_t samples,
                   const Arena& arena, const Tensor& gradients) {
    return PushRaw(PushMessages(Header(worker, step, samples), arena.layout, gradients));
  }

  static v1::PushHeader Header(const v1::RegisterWorkerResponse& worker, int64_t step,
                               int64_t samples) {
    v1::PushHeader header;
    header.set_job_id(worker.job_id());
    header.set_worker_id(worker.worker_id());
    header.set_step(step);
    header.set_sample_count(samples);
    header.set_loss_sum(0.5 * static_cast<double>(samples));
    return header;
  }

  // Pulls into a fresh arena and checks each slice as a worker would.
  PullOutcome Pull(const std::string& job_id, int64_t min_version, const Arena& arena,
                   absl::Duration timeout = absl::Seconds(30)) {
    PullOutcome outcome;
    outcome.values = Tensor({arena.size});
    auto context = ContextWithTimeout(timeout);
    v1::PullParametersRequest request;
    request.set_job_id(job_id);
    request.set_min_version(min_version);
    const absl::Time start = absl::Now();
    std::unique_ptr<grpc::ClientReader<v1::PullParametersResponse>> reader =
        parameters_->PullParameters(context.get(), request);
    SliceAssembler assembler(arena.layout, outcome.values.data());
    v1::PullParametersResponse message;
    while (reader->Read(&message)) {
      if (outcome.messages++ == 0) {
        outcome.version = message.version();
        outcome.state = message.state();
      }
      outcome.largest_message_bytes =
          std::max(outcome.largest_message_bytes, message.ByteSizeLong());
      for (const v1::TensorSlice& slice : message.slices()) EXPECT_OK(assembler.Add(slice));
    }
    outcome.status = reader->Finish();
    outcome.elapsed = absl::Now() - start;
    if (outcome.status.ok()) {
      EXPECT_OK(assembler.Finish());
    }
    return outcome;
  }

  std::shared_ptr<Job> GetDomainJob(const std::string& job_id) {
    absl::StatusOr<std::shared_ptr<Job>> job = manager_->Get(job_id);
    EXPECT_OK(job);
    return job.ok() ? *job : nullptr;
  }

  // The job's values as the job holds them now.
  std::shared_ptr<const Tensor> HeldValues(const std::string& job_id) {
    absl::StatusOr<ParameterSnapshot> snapshot =
        GetDomainJob(job_id)->WaitForVersion(0, absl::InfinitePast());
    EXPECT_OK(snapshot);
    return snapshot.ok() ? snapshot->values : nullptr;
  }

  Arena ArenaOf(const std::string& job_id) {
    return Arena{GetDomainJob(job_id)->layout(), HeldValues(job_id)->size()};
  }

  // A gradient arena whose element i is `scale` * (i + 1).
  static Tensor Ramp(int64_t size, float scale) {
    Tensor t({size});
    for (int64_t i = 0; i < size; ++i) t[i] = scale * static_cast<float>(i + 1);
    return t;
  }

  std::unique_ptr<JobManager> manager_;
  std::unique_ptr<GrpcServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Control::Stub> control_;
  std::unique_ptr<v1::Parameters::Stub> parameters_;
};

void ExpectSameValues(const Tensor& actual, const Tensor& expected) {
  ASSERT_EQ(actual.size(), expected.size());
  int64_t mismatches = 0;
  for (int64_t i = 0; i < actual.size(); ++i) {
    if (actual[i] != expected[i] && ++mismatches <= 5) {
      ADD_FAILURE() << "element " << i << ": " << actual[i] << " != " << expected[i];
    }
  }
  EXPECT_EQ(mismatches, 0);
}

TEST_F(GrpcServerTest, SubmitWithBadSpecIsInvalidArgumentNamingTheField) {
  v1::JobSpec spec = SmallSpec(1);
  spec.mutable_training()->set_workers(-1);
  v1::SubmitJobRequest request;
  *request.mutable_spec() = spec;
  v1::SubmitJobResponse response;
  grpc::Status status =
      control_->SubmitJob(ContextWithTimeout(absl::Seconds(10)).get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("training.workers"));

  spec = SmallSpec(1);
  spec.mutable_model()->mutable_layers(0)->set_type("conv");
  *request.mutable_spec() = spec;
  status = control_->SubmitJob(ContextWithTimeout(absl::Seconds(10)).get(), request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("model.layers[0].type"));
  EXPECT_THAT(status.error_message(), HasSubstr("conv"));
}

TEST_F(GrpcServerTest, UnknownJobIsNotFound) {
  v1::GetJobRequest get;
  get.set_job_id("no-such-job");
  v1::JobStatus job;
  grpc::Status status = control_->GetJob(ContextWithTimeout(absl::Seconds(10)).get(), get, &job);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("no-such-job"));

  v1::StopJobRequest stop;
  stop.set_job_id("no-such-job");
  status = control_->StopJob(ContextWithTimeout(absl::Seconds(10)).get(), stop, &job);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);

  v1::RegisterWorkerResponse worker;
  EXPECT_EQ(Register("no-such-job", &worker).error_code(), grpc::StatusCode::NOT_FOUND);

  PullOutcome pull = Pull("no-such-job", 0, Arena{}, absl::Seconds(10));
  EXPECT_EQ(pull.status.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(GrpcServerTest, ListJobsInSubmissionOrder) {
  const std::string a = Submit(SmallSpec(1));
  const std::string b = Submit(SmallSpec(2));
  v1::ListJobsResponse response;
  ASSERT_TRUE(
      control_
          ->ListJobs(ContextWithTimeout(absl::Seconds(10)).get(), v1::ListJobsRequest(), &response)
          .ok());
  ASSERT_EQ(response.jobs_size(), 2);
  EXPECT_EQ(response.jobs(0).job_id(), a);
  EXPECT_EQ(response.jobs(1).job_id(), b);
  EXPECT_EQ(response.jobs(1).workers(), 2);
}

TEST_F(GrpcServerTest, JobWithTwoWorkersRunsOnlyOnceBothHaveJoined) {
  const std::string id = Submit(SmallSpec(2));
  EXPECT_EQ(GetJob(id).state(), v1::JOB_STATE_PENDING);

  v1::RegisterWorkerResponse first;
  ASSERT_TRUE(Register(id, &first).ok());
  EXPECT_EQ(first.job_id(), id);
  EXPECT_EQ(first.rank(), 0);
  EXPECT_EQ(first.world_size(), 2);
  EXPECT_EQ(first.spec().training().workers(), 2);
  EXPECT_GT(first.total_steps(), 0);
  v1::JobStatus status = GetJob(id);
  EXPECT_EQ(status.state(), v1::JOB_STATE_PENDING);
  EXPECT_EQ(status.workers_joined(), 1);

  v1::RegisterWorkerResponse second;
  ASSERT_TRUE(Register("", &second).ok());  // any job needing a worker: this one
  EXPECT_EQ(second.job_id(), id);
  EXPECT_EQ(second.rank(), 1);
  EXPECT_NE(second.worker_id(), first.worker_id());
  EXPECT_EQ(GetJob(id).state(), v1::JOB_STATE_RUNNING);

  // A full job takes nobody else.
  v1::RegisterWorkerResponse third;
  const absl::Time start = absl::Now();
  grpc::Status full = Register(id, &third);
  EXPECT_EQ(full.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << full.error_message();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST_F(GrpcServerTest, RejectedPushesChangeNothing) {
  const std::string id = Submit(SmallSpec(1));
  v1::RegisterWorkerResponse worker;
  ASSERT_TRUE(Register(id, &worker).ok());
  std::shared_ptr<Job> job = GetDomainJob(id);
  ASSERT_NE(job, nullptr);
  const Arena arena = ArenaOf(id);
  const std::vector<ParamInfo>& layout = arena.layout;
  const PullOutcome original = Pull(id, 0, arena);
  ASSERT_TRUE(original.status.ok()) << original.status.error_message();
  EXPECT_EQ(original.version, 0);
  const Tensor gradients = Ramp(arena.size, 0.25f);
  const std::vector<v1::PushGradientsRequest> good =
      PushMessages(Header(worker, 0, 2), layout, gradients);
  ASSERT_GE(good.size(), 2u);

  struct Case {
    std::string what;
    std::vector<v1::PushGradientsRequest> messages;
    grpc::StatusCode code;
    std::string substr;
  };
  std::vector<Case> cases;
  {
    Case c{"no header", good, grpc::StatusCode::INVALID_ARGUMENT, "header"};
    c.messages[0].clear_header();
    cases.push_back(c);
  }
  cases.push_back({"empty stream", {}, grpc::StatusCode::INVALID_ARGUMENT, "header"});
  {
    Case c{"unknown tensor", good, grpc::StatusCode::INVALID_ARGUMENT, "no.such.tensor"};
    c.messages[1].mutable_slices(0)->set_name("no.such.tensor");
    cases.push_back(c);
  }
  {
    Case c{"wrong shape", good, grpc::StatusCode::INVALID_ARGUMENT, "shape"};
    c.messages[1].mutable_slices(0)->set_shape(0, 7);
    cases.push_back(c);
  }
  {
    Case c{"wrong dtype", good, grpc::StatusCode::INVALID_ARGUMENT, "dtype"};
    c.messages[1].mutable_slices(0)->set_dtype(v1::DTYPE_UNSPECIFIED);
    cases.push_back(c);
  }
  {
    Case c{"missing tensor", good, grpc::StatusCode::INVALID_ARGUMENT, layout.back().name};
    c.messages[1].mutable_slices()->RemoveLast();
    cases.push_back(c);
  }
  {
    Case c{"step ahead", good, grpc::StatusCode::FAILED_PRECONDITION, "step 1"};
    c.messages[0].mutable_header()->set_step(1);
    cases.push_back(c);
  }
  {
    Case c{"unknown worker", good, grpc::StatusCode::NOT_FOUND, "nobody"};
    c.messages[0].mutable_header()->set_worker_id("nobody");
    cases.push_back(c);
  }
  {
    Case c{"unknown job", good, grpc::StatusCode::NOT_FOUND, "no-such-job"};
    c.messages[0].mutable_header()->set_job_id("no-such-job");
    cases.push_back(c);
  }
  {
    Case c{"closing header of another step", good, grpc::StatusCode::INVALID_ARGUMENT,
           "ends with a header of step 5"};
    *c.messages.back().mutable_header() = c.messages[0].header();
    c.messages.back().mutable_header()->set_step(5);
    cases.push_back(c);
  }
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    PushOutcome outcome = PushRaw(c.messages);
    EXPECT_EQ(outcome.status.error_code(), c.code) << outcome.status.error_message();
    EXPECT_THAT(outcome.status.error_message(), HasSubstr(c.substr));
    PullOutcome after = Pull(id, 0, arena);
    ASSERT_TRUE(after.status.ok()) << after.status.error_message();
    EXPECT_EQ(after.version, 0);
    ExpectSameValues(after.values, original.values);
  }
  EXPECT_EQ(GetJob(id).step(), 0);

  // The job still takes a correct push.
  PushOutcome ok = PushRaw(good);
  ASSERT_TRUE(ok.status.ok()) << ok.status.error_message();
  EXPECT_FALSE(ok.duplicate);
  PullOutcome next = Pull(id, 1, arena);
  ASSERT_TRUE(next.status.ok()) << next.status.error_message();
  EXPECT_EQ(next.version, 1);
  EXPECT_EQ(GetJob(id).step(), 1);
}

TEST_F(GrpcServerTest, SynchronousStepAveragesWeightedGradientsAndCountsDuplicatesOnce) {
  const double lr = 0.1;
  const std::string id = Submit(SmallSpec(2, 2, lr));
  v1::RegisterWorkerResponse w0, w1;
  ASSERT_TRUE(Register(id, &w0).ok());
  ASSERT_TRUE(Register(id, &w1).ok());
  const Arena arena = ArenaOf(id);
  const PullOutcome before = Pull(id, 0, arena);
  ASSERT_TRUE(before.status.ok());
  ASSERT_EQ(before.state, v1::JOB_STATE_RUNNING);

  const Tensor g0 = Ramp(arena.size, 1.0f);
  const Tensor g1 = Ramp(arena.size, -0.5f);
  PushOutcome first = Push(w0, 0, 2, arena, g0);
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();
  EXPECT_FALSE(first.duplicate);
  // A retry of the same push is a duplicate and must not count twice.
  PushOutcome retry = Push(w0, 0, 2, arena, g0);
  ASSERT_TRUE(retry.status.ok()) << retry.status.error_message();
  EXPECT_TRUE(retry.duplicate);
  EXPECT_EQ(GetJob(id).step(), 0);

  PushOutcome second = Push(w1, 0, 1, arena, g1);
  ASSERT_TRUE(second.status.ok()) << second.status.error_message();
  EXPECT_FALSE(second.duplicate);

  const PullOutcome after = Pull(id, 1, arena);
  ASSERT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_EQ(after.version, 1);
  ForEachParameterElement(arena, [&](int64_t i) {
    const double mean = (2.0 * g0[i] + 1.0 * g1[i]) / 3.0;
    EXPECT_NEAR(after.values[i], before.values[i] - lr * mean, 1e-5) << "element " << i;
  });
  // A late retry of step 0 is still a duplicate and changes nothing.
  PushOutcome late = Push(w1, 0, 1, arena, g1);
  ASSERT_TRUE(late.status.ok());
  EXPECT_TRUE(late.duplicate);
  const PullOutcome again = Pull(id, 1, arena);
  EXPECT_EQ(again.version, 1);
  ExpectSameValues(again.values, after.values);
}

TEST_F(GrpcServerTest, PullOfAFutureVersionEndsAtTheDeadline) {
  const std::string id = Submit(SmallSpec(1));
  v1::RegisterWorkerResponse worker;
  ASSERT_TRUE(Register(id, &worker).ok());
  PullOutcome pull = Pull(id, 3, ArenaOf(id), absl::Milliseconds(300));
  EXPECT_EQ(pull.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_LT(pull.elapsed, absl::Seconds(2));
  EXPECT_EQ(pull.messages, 0);
}

TEST_F(GrpcServerTest, StopJobEndsWaitingPullsAtOnce) {
  const std::string id = Submit(SmallSpec(1));
  v1::RegisterWorkerResponse worker;
  ASSERT_TRUE(Register(id, &worker).ok());
  const Arena arena = ArenaOf(id);

  PullOutcome waiting;
  std::thread puller([&] { waiting = Pull(id, 5, arena, absl::Seconds(30)); });
  v1::StopJobRequest stop;
  stop.set_job_id(id);
  v1::JobStatus stopped;
  ASSERT_TRUE(control_->StopJob(ContextWithTimeout(absl::Seconds(10)).get(), stop, &stopped).ok());
  EXPECT_EQ(stopped.state(), v1::JOB_STATE_STOPPED);
  EXPECT_THAT(stopped.message(), HasSubstr("stopped by the user"));
  puller.join();
  ASSERT_TRUE(waiting.status.ok()) << waiting.status.error_message();
  EXPECT_EQ(waiting.state, v1::JOB_STATE_STOPPED);
  EXPECT_EQ(waiting.version, 0);
  EXPECT_LT(waiting.elapsed, absl::Seconds(10));

  PullOutcome later = Pull(id, 5, arena, absl::Seconds(30));
  ASSERT_TRUE(later.status.ok());
  EXPECT_EQ(later.state, v1::JOB_STATE_STOPPED);
  EXPECT_LT(later.elapsed, absl::Seconds(2));

  v1::HeartbeatRequest beat;
  beat.set_job_id(id);
  beat.set_worker_id(worker.worker_id());
  v1::HeartbeatResponse beat_response;
  ASSERT_TRUE(
      parameters_->Heartbeat(ContextWithTimeout(absl::Seconds(10)).get(), beat, &beat_response)
          .ok());
  EXPECT_EQ(beat_response.state(), v1::JOB_STATE_STOPPED);
}

TEST_F(GrpcServerTest, WatchJobStreamsEventsUntilTheJobIsStopped) {
  const std::string id = Submit(SmallSpec(1));
  auto context = ContextWithTimeout(absl::Seconds(30));
  v1::WatchJobRequest request;
  request.set_job_id(id);
  std::unique_ptr<grpc::ClientReader<v1::JobStatus>> reader =
      control_->WatchJob(context.get(), request);
  v1::JobStatus event;
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_EQ(event.job_id(), id);
  EXPECT_EQ(event.state(), v1::JOB_STATE_PENDING);

  v1::RegisterWorkerResponse worker;
  ASSERT_TRUE(Register(id, &worker).ok());
  ASSERT_TRUE(reader->Read(&event));
  EXPECT_EQ(event.state(), v1::JOB_STATE_RUNNING);
  EXPECT_EQ(event.workers_joined(), 1);

  v1::StopJobRequest stop;
  stop.set_job_id(id);
  v1::JobStatus stopped;
  ASSERT_TRUE(control_->StopJob(ContextWithTimeout(absl::Seconds(10)).get(), stop, &stopped).ok());
  v1::JobState last = event.state();
  while (reader->Read(&event)) last = event.state();
  EXPECT_EQ(last, v1::JOB_STATE_STOPPED);
  grpc::Status status = reader->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_F(GrpcServerTest, HeartbeatAndMetricsCompleteAJob) {
  v1::JobSpec spec = SmallSpec(1);
  spec.mutable_training()->set_max_steps(1);
  const std::string id = Submit(spec);
  v1::RegisterWorkerResponse worker;
  ASSERT_TRUE(Register(id, &worker).ok());
  EXPECT_EQ(worker.total_steps(), 1);

  v1::HeartbeatRequest beat;
  beat.set_job_id(id);
  beat.set_worker_id("nobody");
  v1::HeartbeatResponse beat_response;
  EXPECT_EQ(
      parameters_->Heartbeat(ContextWithTimeout(absl::Seconds(10)).get(), beat, &beat_response)
          .error_code(),
      grpc::StatusCode::NOT_FOUND);
  beat.set_worker_id(worker.worker_id());
  ASSERT_TRUE(
      parameters_->Heartbeat(ContextWithTimeout(absl::Seconds(10)).get(), beat, &beat_response)
          .ok());
  EXPECT_EQ(beat_response.state(), v1::JOB_STATE_RUNNING);

  const Arena arena = ArenaOf(id);
  ASSERT_TRUE(Push(worker, 0, 2, arena, Ramp(arena.size, 0.1f)).status.ok());
  v1::ReportMetricsRequest metrics;
  metrics.set_job_id(id);
  metrics.set_worker_id(worker.worker_id());
  metrics.set_epoch(1);
  metrics.set_version(1);
  metrics.set_test_loss(0.25);
  v1::ReportMetricsResponse metrics_response;
  ASSERT_TRUE(
      parameters_
          ->ReportMetrics(ContextWithTimeout(absl::Seconds(10)).get(), metrics, &metrics_response)
          .ok());
  const v1::JobStatus done = GetJob(id);
  EXPECT_EQ(done.state(), v1::JOB_STATE_COMPLETED);
  EXPECT_EQ(done.step(), 1);
  EXPECT_DOUBLE_EQ(done.test_loss(), 0.25);
}

TEST_F(GrpcServerTest, PushAndPullOf64MegabytesStreamInSmallMessages) {
  // 4095 features → dense 4096 → dense 1: 4096·4095 + 4096 + 4096 + 1 ≈ 16.8M floats (64 MiB).
  constexpr int kFeatures = 4095;
  std::string text;
  for (int row = 0; row < 3; ++row) {
    for (int f = 0; f < kFeatures; ++f) absl::StrAppend(&text, (row + f) % 7 * 0.125, ",");
    absl::StrAppend(&text, row, "\n");
  }
  v1::JobSpec spec;
  spec.set_name("wide");
  *spec.mutable_model() = testing::MakeModelSpec({{"dense", 4096}, {"dense", 1}}, "mse");
  spec.mutable_data()->set_dataset("csv");
  spec.mutable_data()->set_path(WriteTempFile("grpc_server_wide.csv", text));
  spec.mutable_training()->set_workers(1);
  spec.mutable_training()->set_batch_size(1);
  spec.mutable_optimizer()->set_learning_rate(0.5);
  const std::string id = Submit(spec);
  v1::RegisterWorkerResponse worker;
  ASSERT_TRUE(Register(id, &worker).ok());
  std::shared_ptr<Job> job = GetDomainJob(id);
  const Arena arena = ArenaOf(id);
  const int64_t size = arena.size;
  ASSERT_GE(size * static_cast<int64_t>(sizeof(float)), 64 << 20);

  const PullOutcome before = Pull(id, 0, arena, absl::Seconds(60));
  ASSERT_TRUE(before.status.ok()) << before.status.error_message();
  EXPECT_GE(before.messages, 64);
  EXPECT_LE(before.largest_message_bytes, kMaxStreamMessageBytes);
  absl::StatusOr<ParameterSnapshot> held = job->WaitForVersion(0, absl::Now());
  ASSERT_OK(held);
  ExpectSameValues(before.values, *held->values);

  Tensor gradients({size});
  for (int64_t i = 0; i < size; ++i) gradients[i] = static_cast<float>(i % 1000) * 1e-3f;
  PushOutcome pushed = Push(worker, 0, 1, arena, gradients);
  ASSERT_TRUE(pushed.status.ok()) << pushed.status.error_message();
  EXPECT_FALSE(pushed.duplicate);

  const PullOutcome after = Pull(id, 1, arena, absl::Seconds(60));
  ASSERT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_EQ(after.version, 1);
  EXPECT_LE(after.largest_message_bytes, kMaxStreamMessageBytes);
  held = job->WaitForVersion(1, absl::Now());
  ASSERT_OK(held);
  ExpectSameValues(after.values, *held->values);
  int64_t wrong = 0;
  ForEachParameterElement(arena, [&](int64_t i) {
    const float expected = before.values[i] - 0.5f * gradients[i];
    if (std::abs(after.values[i] - expected) > 1e-6f + 1e-6f * std::abs(expected)) ++wrong;
  });
  EXPECT_EQ(wrong, 0);
}

TEST_F(GrpcServerTest, ShutdownDoesNotWaitForWaitingCalls) {
  const std::string id = Submit(SmallSpec(2));
  v1::RegisterWorkerResponse worker;
  ASSERT_TRUE(Register(id, &worker).ok());
  const Arena arena = ArenaOf(id);

  // A pull of a version that will not come, and a watch of a job that does not change.
  PullOutcome pull;
  std::thread puller([&] { pull = Pull(id, 5, arena, absl::Seconds(60)); });
  auto watch_context = ContextWithTimeout(absl::Seconds(60));
  v1::WatchJobRequest watch_request;
  watch_request.set_job_id(id);
  std::unique_ptr<grpc::ClientReader<v1::JobStatus>> watch =
      control_->WatchJob(watch_context.get(), watch_request);
  v1::JobStatus event;
  ASSERT_TRUE(watch->Read(&event));  // the watch is in its loop now

  const absl::Time start = absl::Now();
  server_->Shutdown(absl::Seconds(30));
  server_->Wait();
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  puller.join();
  EXPECT_FALSE(pull.status.ok());
  while (watch->Read(&event)) {
  }
  EXPECT_FALSE(watch->Finish().ok());
}

TEST(GrpcServerStartTest, BusyAddressIsUnavailableNamingIt) {
  JobManager manager(JobManagerOptions{});
  absl::StatusOr<std::unique_ptr<GrpcServer>> first = GrpcServer::Start("127.0.0.1:0", &manager);
  ASSERT_OK(first);
  const std::string address = absl::StrCat("127.0.0.1:", (*first)->port());
  absl::StatusOr<std::unique_ptr<GrpcServer>> second = GrpcServer::Start(address, &manager);
  EXPECT_STATUS(second, absl::StatusCode::kUnavailable, address);
  EXPECT_STATUS(GrpcServer::Start("not an address", &manager), absl::StatusCode::kUnavailable,
                "not an address");
  (*first)->Shutdown(absl::Seconds(1));
}

}  // namespace
}  // namespace psgrid
