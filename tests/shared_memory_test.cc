// Tensors through shared memory for workers on the server's machine: offered only when the
// server says so, refused when misused, and the same step as over the network.
#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <thread>

#include "core/shared_region.h"
#include "proto/job_spec_codec.h"
#include "psgrid/v1/service.grpc.pb.h"
#include "server/job_manager.h"
#include "server/rpc/grpc_server.h"
#include "tests/test_util.h"
#include "worker/rpc/grpc_parameter_client.h"

namespace psgrid {
namespace {

using ::psgrid::testing::WriteLinearCsv;

class SharedMemoryTest : public ::testing::Test {
 protected:
  void Start(bool shared_memory, int workers = 1) {
    JobManagerOptions options;
    options.shared_memory = shared_memory;
    manager_ = std::make_unique<JobManager>(options);
    auto server = GrpcServer::Start("127.0.0.1:0", manager_.get());
    ASSERT_OK(server);
    server_ = std::move(*server);
    address_ = "127.0.0.1:" + std::to_string(server_->port());
    auto spec = ParseJobSpec(
        "model: {layers: [{type: dense, units: 1}], loss: mse}\n"
        "data: {dataset: csv, path: " +
            WriteLinearCsv("shm.csv") +
            "}\n"
            "optimizer: {type: sgd, learning_rate: 0.5}\n"
            "training: {workers: " +
            std::to_string(workers) + "}\n",
        "spec");
    ASSERT_OK(spec);
    auto id = manager_->Submit(*spec);
    ASSERT_OK(id);
    auto client = GrpcParameterClient::Connect(address_, absl::Seconds(10));
    ASSERT_OK(client);
    client_ = std::move(*client);
    auto reg = client_->Register(*id, "test", absl::Now() + absl::Seconds(10));
    ASSERT_OK(reg);
    reg_ = *reg;
    job_ = *manager_->Get(*id);
  }

  void TearDown() override {
    client_.reset();
    if (server_ != nullptr) server_->Shutdown(absl::Seconds(1));
  }

  grpc::Status RawPush(bool shared_memory, bool with_slice) {
    auto stub =
        v1::Parameters::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    v1::PushGradientsResponse response;
    auto writer = stub->PushGradients(&context, &response);
    v1::PushGradientsRequest message;
    message.mutable_header()->set_job_id(reg_.job_id());
    message.mutable_header()->set_worker_id(reg_.worker_id());
    message.mutable_header()->set_sample_count(1);
    message.mutable_header()->set_shared_memory(shared_memory);
    if (with_slice) message.add_slices()->set_name("0.weight");
    writer->Write(message);
    writer->WritesDone();
    return writer->Finish();
  }

  // One push on a raw SharedMemorySteps stream: the stream's final status.
  grpc::Status RawStep(bool shared_memory) {
    auto stub =
        v1::Parameters::NewStub(grpc::CreateChannel(address_, grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    auto stream = stub->SharedMemorySteps(&context);
    v1::PushHeader header;
    header.set_job_id(reg_.job_id());
    header.set_worker_id(reg_.worker_id());
    header.set_sample_count(1);
    header.set_shared_memory(shared_memory);
    stream->Write(header);
    stream->WritesDone();
    v1::PullParametersResponse answer;
    while (stream->Read(&answer)) {
    }
    return stream->Finish();
  }

  std::unique_ptr<JobManager> manager_;
  std::unique_ptr<GrpcServer> server_;
  std::string address_;
  std::unique_ptr<GrpcParameterClient> client_;
  v1::RegisterWorkerResponse reg_;
  std::shared_ptr<Job> job_;
};

TEST_F(SharedMemoryTest, AServerWithoutItRefusesAndTheClientKeepsTheNetwork) {
  Start(/*shared_memory=*/false);
  EXPECT_STATUS(
      client_->UseSharedMemory(reg_.job_id(), reg_.worker_id(), absl::Now() + absl::Seconds(5)),
      absl::StatusCode::kFailedPrecondition, "--shared-memory");
  Tensor values({job_->arena_size()});
  auto pulled = client_->Pull(reg_.job_id(), reg_.worker_id(), 0, job_->layout(), &values,
                              absl::Now() + absl::Seconds(5));
  ASSERT_OK(pulled);
  EXPECT_EQ(pulled->version, 0);
}

TEST_F(SharedMemoryTest, APushFromSharedMemoryThatWasNeverOpenedIsRefused) {
  Start(/*shared_memory=*/true);
  const grpc::Status status = RawPush(/*shared_memory=*/true, /*with_slice=*/false);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(status.error_message(), ::testing::HasSubstr("without opening it"));
  EXPECT_EQ(job_->Status().step(), 0);
}

TEST_F(SharedMemoryTest, ASharedMemoryPushWithSlicesIsRefused) {
  Start(/*shared_memory=*/true);
  ASSERT_OK(
      client_->UseSharedMemory(reg_.job_id(), reg_.worker_id(), absl::Now() + absl::Seconds(5)));
  const grpc::Status status = RawPush(/*shared_memory=*/true, /*with_slice=*/true);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(job_->Status().step(), 0);
}

TEST_F(SharedMemoryTest, TheStepStreamRefusesPushesItCannotTake) {
  Start(/*shared_memory=*/true);
  grpc::Status status = RawStep(/*shared_memory=*/true);  // the segment was never opened
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  ASSERT_OK(
      client_->UseSharedMemory(reg_.job_id(), reg_.worker_id(), absl::Now() + absl::Seconds(5)));
  status = RawStep(/*shared_memory=*/false);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), ::testing::HasSubstr("starts with a shared-memory attach"));
  EXPECT_EQ(job_->Status().step(), 0);
}

TEST_F(SharedMemoryTest, AWrongStepOnTheDoorbellIsRefusedAndTheNextRightOneApplied) {
  Start(/*shared_memory=*/true);
  ASSERT_OK(
      client_->UseSharedMemory(reg_.job_id(), reg_.worker_id(), absl::Now() + absl::Seconds(5)));
  Tensor values({job_->arena_size()});
  Tensor gradient({job_->arena_size()});
  for (int64_t i = 0; i < gradient.size(); ++i) gradient[i] = 1.0f;
  v1::PushHeader header;
  header.set_job_id(reg_.job_id());
  header.set_worker_id(reg_.worker_id());
  header.set_step(3);  // the job is at step 0
  header.set_sample_count(4);
  ASSERT_OK(client_->Push(header, job_->layout(), gradient, absl::Now() + absl::Seconds(5)));
  auto refused = client_->Pull(reg_.job_id(), reg_.worker_id(), 4, job_->layout(), &values,
                               absl::Now() + absl::Seconds(5));
  EXPECT_STATUS(refused, absl::StatusCode::kFailedPrecondition, "a gradient for step 3");
  EXPECT_EQ(job_->Status().step(), 0);
  // The stream and the doorbell still serve the worker.
  header.set_step(0);
  ASSERT_OK(client_->Push(header, job_->layout(), gradient, absl::Now() + absl::Seconds(5)));
  auto pulled = client_->Pull(reg_.job_id(), reg_.worker_id(), 1, job_->layout(), &values,
                              absl::Now() + absl::Seconds(5));
  ASSERT_OK(pulled);
  EXPECT_EQ(pulled->version, 1);
  EXPECT_EQ(job_->Status().step(), 1);
}

TEST_F(SharedMemoryTest, AWorkerWaitingOnTheDoorbellLearnsThatTheServerWentAway) {
  Start(/*shared_memory=*/true, /*workers=*/2);  // the second worker never comes
  ASSERT_OK(
      client_->UseSharedMemory(reg_.job_id(), reg_.worker_id(), absl::Now() + absl::Seconds(5)));
  Tensor values({job_->arena_size()});
  v1::PushHeader header;
  header.set_job_id(reg_.job_id());
  header.set_worker_id(reg_.worker_id());
  header.set_sample_count(1);
  ASSERT_OK(client_->Register(reg_.job_id(), "peer", absl::Now() + absl::Seconds(5)));
  // The push waits for the peer, which never pushes; the server goes away meanwhile.
  ASSERT_OK(client_->Push(header, job_->layout(), values, absl::Now() + absl::Seconds(5)));
  std::thread stopper([this] {
    absl::SleepFor(absl::Milliseconds(300));
    server_->Shutdown(absl::Seconds(1));
  });
  const absl::Time start = absl::Now();
  auto pulled = client_->Pull(reg_.job_id(), reg_.worker_id(), 1, job_->layout(), &values,
                              absl::Now() + absl::Seconds(30));
  stopper.join();
  server_.reset();
  EXPECT_FALSE(pulled.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
}

TEST_F(SharedMemoryTest, AStepThroughSharedMemoryAppliesTheGradientAndCleansUp) {
  Start(/*shared_memory=*/true);
  ASSERT_OK(
      client_->UseSharedMemory(reg_.job_id(), reg_.worker_id(), absl::Now() + absl::Seconds(5)));
  Tensor initial({job_->arena_size()});
  ASSERT_OK(client_->Pull(reg_.job_id(), reg_.worker_id(), 0, job_->layout(), &initial,
                          absl::Now() + absl::Seconds(5)));
  Tensor gradient({job_->arena_size()});
  for (int64_t i = 0; i < gradient.size(); ++i) gradient[i] = 0.25f * static_cast<float>(i + 1);
  v1::PushHeader header;
  header.set_job_id(reg_.job_id());
  header.set_worker_id(reg_.worker_id());
  header.set_step(0);
  header.set_sample_count(16);
  ASSERT_OK(client_->Push(header, job_->layout(), gradient, absl::Now() + absl::Seconds(5)));
  Tensor after({job_->arena_size()});
  auto pulled = client_->Pull(reg_.job_id(), reg_.worker_id(), 1, job_->layout(), &after,
                              absl::Now() + absl::Seconds(5));
  ASSERT_OK(pulled);
  EXPECT_EQ(pulled->version, 1);
  for (const ParamInfo& info : job_->layout()) {
    for (int64_t i = info.offset; i < info.offset + info.size; ++i) {
      EXPECT_FLOAT_EQ(after[i], initial[i] - 0.5f * gradient[i]) << info.name;
    }
  }
  // The segments live in /dev/shm while the job does, and go with the server.
  const std::string segment = "/dev/shm/psgrid-" + std::to_string(getpid()) + "-" + reg_.job_id();
  EXPECT_TRUE(std::filesystem::exists(segment + "-params")) << segment;
  client_.reset();
  server_->Shutdown(absl::Seconds(1));
  server_.reset();
  job_.reset();
  manager_.reset();
  EXPECT_FALSE(std::filesystem::exists(segment + "-params"));
}

}  // namespace
}  // namespace psgrid
