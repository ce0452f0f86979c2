// The raw-TCP tensor data plane (proto/data_frame.h, server/rpc/data_plane_server.h,
// worker/rpc/tcp_parameter_client.h): frames round-trip; the server refuses every malformed
// frame (bad magic, oversize header, wrong payload size, wrong token, unknown worker, truncated
// frames, garbage) with an error or by closing, and keeps serving other connections; a client
// facing a server that never answers gets DEADLINE_EXCEEDED in time; and a sync job trained by
// two workers over the data plane ends with weights bit-identical to the same job over gRPC.
// Loopback only; every wait is bounded.
#include <grpcpp/grpcpp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/backend/cpu_backend.h"
#include "proto/data_frame.h"
#include "proto/job_spec_codec.h"
#include "proto/socket_io.h"
#include "psgrid/v1/data_plane.pb.h"
#include "server/job_manager.h"
#include "server/rpc/grpc_server.h"
#include "tests/test_util.h"
#include "worker/rpc/grpc_parameter_client.h"
#include "worker/rpc/tcp_parameter_client.h"
#include "worker/worker.h"

namespace psgrid {
namespace {

using ::testing::HasSubstr;

constexpr absl::Duration kIo = absl::Seconds(10);

std::string WriteData() {
  const std::string path = ::psgrid::testing::TempPath("data_plane.csv");
  std::ofstream out(path);
  for (int i = 0; i < 157; ++i) {
    const double a = std::sin(i * 0.37), b = std::cos(i * 0.11), c = (i % 9) * 0.1 - 0.4;
    out << a << "," << b << "," << c << "," << a * b - 0.5 * c + 0.1 << "\n";
  }
  return path;
}

v1::JobSpec Spec(int workers, const std::string& optimizer) {
  const std::string data = WriteData();
  auto spec = ParseJobSpec(
      "name: data-plane\n"
      "model: {layers: [{type: dense, units: 3}, {type: tanh}, {type: dense, units: 6}, "
      "{type: tanh}, {type: dense, units: 1}], loss: mse, init: {scheme: xavier, seed: 5}}\n"
      "data: {dataset: csv, path: " + data + ", test_path: " + data + ", shuffle: false}\n"
      "training: {workers: " + std::to_string(workers) + ", batch_size: 10, epochs: 2}\n"
      "optimizer: " + optimizer + "\n",
      "spec");
  EXPECT_OK(spec);
  return *spec;
}

// --- Frames ---------------------------------------------------------------------------------

TEST(DataFrame, PrefixRoundTripsLittleEndian) {
  unsigned char raw[kDataFramePrefixBytes];
  EncodeDataFramePrefix({0x1234, 0x0102030405060708ull}, raw);
  EXPECT_EQ(std::string(reinterpret_cast<char*>(raw), 4), "PSGD");
  EXPECT_EQ(raw[4], 0x34);
  EXPECT_EQ(raw[8], 0x08);
  EXPECT_EQ(raw[15], 0x01);
  auto decoded = DecodeDataFramePrefix(raw);
  ASSERT_OK(decoded);
  EXPECT_EQ(decoded->header_bytes, 0x1234u);
  EXPECT_EQ(decoded->payload_bytes, 0x0102030405060708ull);
}

TEST(DataFrame, PrefixRefusesBadMagicAndOversizeHeader) {
  unsigned char raw[kDataFramePrefixBytes];
  EncodeDataFramePrefix({16, 0}, raw);
  raw[0] = 'X';
  EXPECT_STATUS(DecodeDataFramePrefix(raw).status(), absl::StatusCode::kInvalidArgument,
                "magic");
  EncodeDataFramePrefix({kMaxDataHeaderBytes + 1, 0}, raw);
  EXPECT_STATUS(DecodeDataFramePrefix(raw).status(), absl::StatusCode::kInvalidArgument,
                "header");
  EncodeDataFramePrefix({kMaxDataHeaderBytes, 0}, raw);
  EXPECT_OK(DecodeDataFramePrefix(raw).status());
}

TEST(DataFrame, FrameRoundTripsOverASocket) {
  int fds[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
  ASSERT_OK(PrepareSocket(fds[0]));
  ASSERT_OK(PrepareSocket(fds[1]));
  std::vector<float> payload(300000);  // more than a socket buffer: partial sends happen
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<float>(i) * 0.5f;
  v1::DataRequest request;
  request.mutable_push()->set_job_id("job-1");
  request.mutable_push()->set_step(7);
  request.set_token("abc");
  request.set_offset_bytes(0);
  absl::Status written;
  std::thread writer([&] {
    written = WriteDataFrame(fds[0], request, payload.data(), payload.size() * 4,
                             absl::Now() + kIo);
  });
  v1::DataRequest read;
  auto bytes = ReadDataFrameHeader(fds[1], &read, absl::Now() + kIo, kIo);
  ASSERT_OK(bytes);
  EXPECT_EQ(*bytes, payload.size() * 4);
  std::vector<float> got(payload.size());
  ASSERT_OK(RecvAll(fds[1], got.data(), *bytes, absl::Now() + kIo));
  writer.join();
  EXPECT_OK(written);
  EXPECT_EQ(read.push().job_id(), "job-1");
  EXPECT_EQ(read.push().step(), 7);
  EXPECT_EQ(read.token(), "abc");
  EXPECT_EQ(std::memcmp(got.data(), payload.data(), *bytes), 0);
  // A truncated frame: the peer closes mid-header.
  unsigned char raw[kDataFramePrefixBytes];
  EncodeDataFramePrefix({100, 0}, raw);
  ASSERT_EQ(write(fds[0], raw, sizeof(raw)), static_cast<ssize_t>(sizeof(raw)));
  ASSERT_EQ(write(fds[0], "xy", 2), 2);
  close(fds[0]);
  EXPECT_STATUS(ReadDataFrameHeader(fds[1], &read, absl::Now() + kIo, kIo).status(),
                absl::StatusCode::kUnavailable, "closed");
  close(fds[1]);
}

// --- The server's refusals ------------------------------------------------------------------

class DataPlaneServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    manager_ = std::make_unique<JobManager>(JobManagerOptions());
    GrpcServerOptions options;
    options.data_listen = "127.0.0.1:0";
    auto server = GrpcServer::Start("127.0.0.1:0", manager_.get(), options);
    ASSERT_OK(server);
    server_ = std::move(*server);
    ASSERT_FALSE(server_->data_address().empty());
    auto id = manager_->Submit(Spec(1, "{type: sgd, learning_rate: 0.1}"));
    ASSERT_OK(id);
    job_id_ = *id;
    auto client =
        GrpcParameterClient::Connect("127.0.0.1:" + std::to_string(server_->port()), kIo);
    ASSERT_OK(client);
    auto reg = (*client)->Register(job_id_, "w", absl::Now() + kIo);
    ASSERT_OK(reg);
    reg_ = *reg;
    EXPECT_EQ(reg_.data_address(), server_->data_address());
    EXPECT_EQ(reg_.data_token().size(), 32u);
    auto job = manager_->Get(job_id_);
    ASSERT_OK(job);
    arena_bytes_ = (*job)->arena_size() * 4;
  }
  void TearDown() override {
    if (server_ != nullptr) server_->Shutdown(absl::Seconds(1));
  }

  int Connect() {
    auto fd = ConnectTcp(server_->data_address(), absl::Now() + kIo);
    EXPECT_OK(fd);
    return fd.ok() ? *fd : -1;
  }
  v1::DataRequest PullRequest() const {
    v1::DataRequest request;
    request.mutable_pull()->set_job_id(job_id_);
    request.mutable_pull()->set_worker_id(reg_.worker_id());
    request.mutable_pull()->set_min_version(0);
    request.set_token(reg_.data_token());
    request.set_deadline_ms(10000);
    return request;
  }
  // Reads the answer to a refused frame: an error of `code`, then the connection's end.
  void ExpectRefused(int fd, absl::StatusCode code, const std::string& substr) {
    v1::DataResponse response;
    auto payload = ReadDataFrameHeader(fd, &response, absl::Now() + kIo, kIo);
    ASSERT_OK(payload);
    EXPECT_EQ(*payload, 0u);
    EXPECT_EQ(response.code(), static_cast<int>(code)) << response.message();
    EXPECT_THAT(response.message(), HasSubstr(substr));
    EXPECT_TRUE(response.closing());
    char byte;
    ASSERT_TRUE(WaitReadable(fd, absl::Now() + kIo));
    EXPECT_EQ(recv(fd, &byte, 1, 0), 0);  // closed
    close(fd);
  }
  // A well-formed pull on a fresh connection still gets the whole arena.
  void ExpectStillServing() {
    const int fd = Connect();
    ASSERT_OK(WriteDataFrame(fd, PullRequest(), nullptr, 0, absl::Now() + kIo));
    v1::DataResponse response;
    auto payload = ReadDataFrameHeader(fd, &response, absl::Now() + kIo, kIo);
    ASSERT_OK(payload);
    EXPECT_EQ(response.code(), 0) << response.message();
    EXPECT_EQ(*payload, static_cast<uint64_t>(arena_bytes_));
    std::vector<char> values(*payload);
    EXPECT_OK(RecvAll(fd, values.data(), values.size(), absl::Now() + kIo));
    close(fd);
  }

  // The weights of version 1 of a fresh job of the fixture's spec after `gradient` (its whole
  // arena, 10 samples) was pushed in one frame.
  std::vector<float> WeightsAfterWholePush(const std::vector<float>& gradient) {
    auto id = manager_->Submit(Spec(1, "{type: sgd, learning_rate: 0.1}"));
    EXPECT_OK(id);
    auto client = GrpcParameterClient::Connect("127.0.0.1:" + std::to_string(server_->port()), kIo);
    EXPECT_OK(client);
    if (!id.ok() || !client.ok()) return {};
    auto reg = (*client)->Register(*id, "w", absl::Now() + kIo);
    EXPECT_OK(reg);
    if (!reg.ok()) return {};
    v1::DataRequest request;
    request.mutable_push()->set_job_id(*id);
    request.mutable_push()->set_worker_id(reg->worker_id());
    request.mutable_push()->set_sample_count(10);
    request.set_token(reg->data_token());
    request.set_deadline_ms(10000);
    const int fd = Connect();
    EXPECT_OK(WriteDataFrame(fd, request, gradient.data(), gradient.size() * sizeof(float),
                             absl::Now() + kIo));
    v1::DataResponse response;
    EXPECT_OK(ReadDataFrameHeader(fd, &response, absl::Now() + kIo, kIo).status());
    EXPECT_EQ(response.code(), 0) << response.message();
    close(fd);
    auto job = manager_->Get(*id);
    EXPECT_OK(job);
    if (!job.ok()) return {};
    auto version = (*job)->WaitForVersion(1, absl::Now() + kIo);
    EXPECT_OK(version);
    if (!version.ok()) return {};
    return std::vector<float>(version->values->data(),
                              version->values->data() + version->values->size());
  }

  std::unique_ptr<JobManager> manager_;
  std::unique_ptr<GrpcServer> server_;
  std::string job_id_;
  v1::RegisterWorkerResponse reg_;
  int64_t arena_bytes_ = 0;
};

TEST_F(DataPlaneServerTest, PullsTheWholeArena) { ExpectStillServing(); }

TEST_F(DataPlaneServerTest, RefusesBadMagic) {
  const int fd = Connect();
  unsigned char raw[kDataFramePrefixBytes];
  EncodeDataFramePrefix({0, 0}, raw);
  std::memcpy(raw, "HTTP", 4);
  ASSERT_EQ(send(fd, raw, sizeof(raw), MSG_NOSIGNAL), static_cast<ssize_t>(sizeof(raw)));
  ExpectRefused(fd, absl::StatusCode::kInvalidArgument, "magic");
  ExpectStillServing();
}

TEST_F(DataPlaneServerTest, RefusesOversizeHeader) {
  const int fd = Connect();
  unsigned char raw[kDataFramePrefixBytes];
  EncodeDataFramePrefix({1u << 30, 0}, raw);  // never allocated
  ASSERT_EQ(send(fd, raw, sizeof(raw), MSG_NOSIGNAL), static_cast<ssize_t>(sizeof(raw)));
  ExpectRefused(fd, absl::StatusCode::kInvalidArgument, "header");
  ExpectStillServing();
}

TEST_F(DataPlaneServerTest, RefusesWrongPayloadSizes) {
  for (const uint64_t bytes : {uint64_t{0}, static_cast<uint64_t>(arena_bytes_ - 4),
                               static_cast<uint64_t>(arena_bytes_ + 2), uint64_t{1} << 62}) {
    SCOPED_TRACE(bytes);
    const int fd = Connect();
    v1::DataRequest request;
    request.mutable_push()->set_job_id(job_id_);
    request.mutable_push()->set_worker_id(reg_.worker_id());
    request.set_token(reg_.data_token());
    // The prefix announces `bytes`; none follow (the server must refuse before reading them).
    std::string header;
    ASSERT_TRUE(request.SerializeToString(&header));
    unsigned char raw[kDataFramePrefixBytes];
    EncodeDataFramePrefix({static_cast<uint32_t>(header.size()), bytes}, raw);
    std::string frame(reinterpret_cast<char*>(raw), sizeof(raw));
    frame += header;
    ASSERT_EQ(send(fd, frame.data(), frame.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(frame.size()));
    ExpectRefused(fd, absl::StatusCode::kInvalidArgument, "whole arena");
  }
  // A pull with a payload, or a range the server does not serve.
  v1::DataRequest pull = PullRequest();
  int fd = Connect();
  std::vector<char> junk(8);
  ASSERT_OK(WriteDataFrame(fd, pull, junk.data(), junk.size(), absl::Now() + kIo));
  ExpectRefused(fd, absl::StatusCode::kInvalidArgument, "without a payload");
  pull.set_offset_bytes(arena_bytes_);
  fd = Connect();
  ASSERT_OK(WriteDataFrame(fd, pull, nullptr, 0, absl::Now() + kIo));
  ExpectRefused(fd, absl::StatusCode::kInvalidArgument, "offset");
  ExpectStillServing();
}

// A push request of the fixture's worker (a part when `part`), at byte `offset`.
v1::DataRequest PushRequest(const std::string& job_id, const v1::RegisterWorkerResponse& reg,
                            int64_t offset, bool part) {
  v1::DataRequest request;
  request.mutable_push()->set_job_id(job_id);
  request.mutable_push()->set_worker_id(reg.worker_id());
  request.mutable_push()->set_sample_count(10);
  request.set_token(reg.data_token());
  request.set_offset_bytes(offset);
  request.set_part(part);
  request.set_deadline_ms(10000);
  return request;
}

// A gradient pushed in two parts and a final frame ends in the same weights, bit for bit, as
// the same gradient pushed whole (to a second job of the same spec).
TEST_F(DataPlaneServerTest, TakesAGradientInParts) {
  const int64_t floats = arena_bytes_ / 4;
  std::vector<float> gradient(floats);
  for (int64_t i = 0; i < floats; ++i) gradient[i] = 0.01f * static_cast<float>((i * 37) % 23 - 11);
  const int64_t a = floats / 3 * 4, b = floats * 2 / 3 * 4;  // byte offsets of the parts
  const int fd = Connect();
  const char* bytes = reinterpret_cast<const char*>(gradient.data());
  ASSERT_OK(WriteDataFrame(fd, PushRequest(job_id_, reg_, b, true), bytes + b, arena_bytes_ - b,
                           absl::Now() + kIo));
  ASSERT_OK(
      WriteDataFrame(fd, PushRequest(job_id_, reg_, a, true), bytes + a, b - a, absl::Now() + kIo));
  ASSERT_OK(WriteDataFrame(fd, PushRequest(job_id_, reg_, 0, false), bytes, a, absl::Now() + kIo));
  v1::DataResponse response;  // the final frame's answer is the first and only one
  auto payload = ReadDataFrameHeader(fd, &response, absl::Now() + kIo, kIo);
  ASSERT_OK(payload);
  EXPECT_EQ(response.code(), 0) << response.message();
  EXPECT_FALSE(response.duplicate());
  close(fd);
  auto job = manager_->Get(job_id_);
  ASSERT_OK(job);
  auto in_parts = (*job)->WaitForVersion(1, absl::Now() + kIo);
  ASSERT_OK(in_parts);

  const std::vector<float> whole = WeightsAfterWholePush(gradient);
  ASSERT_EQ(in_parts->values->size(), static_cast<int64_t>(whole.size()));
  EXPECT_EQ(std::memcmp(in_parts->values->data(), whole.data(), arena_bytes_), 0);
}

// The client's side: PushPart hands the complete top of the gradient to a sender thread that
// writes it while the caller goes on, and Push sends the rest; the job ends where the same
// gradient pushed whole takes it.
TEST_F(DataPlaneServerTest, ClientSendsPartsWhileTheCallerGoesOn) {
  auto id = manager_->Submit(Spec(1, "{type: sgd, learning_rate: 0.1}"));
  ASSERT_OK(id);
  auto grpc_client =
      GrpcParameterClient::Connect("127.0.0.1:" + std::to_string(server_->port()), kIo);
  ASSERT_OK(grpc_client);
  TcpClientOptions required;
  required.required = true;
  TcpParameterClient client(std::move(*grpc_client), required);
  auto reg = client.Register(*id, "w", absl::Now() + kIo);
  ASSERT_OK(reg);
  auto job = manager_->Get(*id);
  ASSERT_OK(job);
  const int64_t floats = (*job)->arena_size();
  Tensor gradients({floats});
  for (int64_t i = 0; i < floats; ++i) gradients[i] = 0.02f * static_cast<float>((i * 11) % 7 - 3);
  v1::PushHeader header;
  header.set_job_id(*id);
  header.set_worker_id(reg->worker_id());
  header.set_sample_count(10);
  const auto sent_parts = [&](int64_t want) {
    for (int i = 0; i < 5000 && client.parts_sent() < want; ++i)
      absl::SleepFor(absl::Milliseconds(1));
    return client.parts_sent();
  };
  client.PushPart(header, (*job)->layout(), gradients, floats / 2, absl::Now() + kIo);
  EXPECT_EQ(sent_parts(1), 1);
  client.PushPart(header, (*job)->layout(), gradients, floats / 4, absl::Now() + kIo);
  EXPECT_EQ(sent_parts(2), 2);
  header.set_loss_sum(1.5);
  auto pushed = client.Push(header, (*job)->layout(), gradients, absl::Now() + kIo);
  ASSERT_OK(pushed);
  EXPECT_FALSE(pushed->duplicate());
  EXPECT_EQ(client.parts_sent(), 2);
  auto in_parts = (*job)->WaitForVersion(1, absl::Now() + kIo);
  ASSERT_OK(in_parts);
  const std::vector<float> whole =
      WeightsAfterWholePush(std::vector<float>(gradients.data(), gradients.data() + floats));
  ASSERT_EQ(in_parts->values->size(), static_cast<int64_t>(whole.size()));
  EXPECT_EQ(std::memcmp(in_parts->values->data(), whole.data(), floats * sizeof(float)), 0);
}

TEST_F(DataPlaneServerTest, RefusesPartsThatDoNotFit) {
  std::vector<char> zeros(arena_bytes_);
  // A part that does not end at the arena's end, one at offset 0, and a final frame that
  // resends what a part carried.
  int fd = Connect();
  ASSERT_OK(WriteDataFrame(fd, PushRequest(job_id_, reg_, 8, true), zeros.data(), arena_bytes_ - 16,
                           absl::Now() + kIo));
  ExpectRefused(fd, absl::StatusCode::kInvalidArgument, "a part ending at byte");
  fd = Connect();
  ASSERT_OK(WriteDataFrame(fd, PushRequest(job_id_, reg_, 0, true), zeros.data(), arena_bytes_,
                           absl::Now() + kIo));
  ExpectRefused(fd, absl::StatusCode::kInvalidArgument, "positive offset");
  fd = Connect();
  ASSERT_OK(WriteDataFrame(fd, PushRequest(job_id_, reg_, arena_bytes_ / 2, true), zeros.data(),
                           arena_bytes_ / 2, absl::Now() + kIo));
  ASSERT_OK(WriteDataFrame(fd, PushRequest(job_id_, reg_, 0, false), zeros.data(), arena_bytes_,
                           absl::Now() + kIo));
  ExpectRefused(fd, absl::StatusCode::kInvalidArgument, "the rest of the step's gradient");
  ExpectStillServing();
}

TEST_F(DataPlaneServerTest, RefusesWrongTokenAndUnknownWorker) {
  v1::DataRequest request = PullRequest();
  request.set_token("0123456789abcdef0123456789abcdef");
  int fd = Connect();
  ASSERT_OK(WriteDataFrame(fd, request, nullptr, 0, absl::Now() + kIo));
  ExpectRefused(fd, absl::StatusCode::kPermissionDenied, "wrong token");
  request = PullRequest();
  request.mutable_pull()->set_worker_id("w99");
  fd = Connect();
  ASSERT_OK(WriteDataFrame(fd, request, nullptr, 0, absl::Now() + kIo));
  ExpectRefused(fd, absl::StatusCode::kNotFound, "no worker w99");
  ExpectStillServing();
}

TEST_F(DataPlaneServerTest, SurvivesTruncatedFramesAndGarbage) {
  // A prefix, half a header, then the peer goes.
  int fd = Connect();
  std::string header;
  ASSERT_TRUE(PullRequest().SerializeToString(&header));
  unsigned char raw[kDataFramePrefixBytes];
  EncodeDataFramePrefix({static_cast<uint32_t>(header.size()), 0}, raw);
  ASSERT_EQ(send(fd, raw, sizeof(raw), MSG_NOSIGNAL), static_cast<ssize_t>(sizeof(raw)));
  ASSERT_EQ(send(fd, header.data(), header.size() / 2, MSG_NOSIGNAL),
            static_cast<ssize_t>(header.size() / 2));
  close(fd);
  // A push whose gradient stops half way.
  fd = Connect();
  v1::DataRequest push;
  push.mutable_push()->set_job_id(job_id_);
  push.mutable_push()->set_worker_id(reg_.worker_id());
  push.set_token(reg_.data_token());
  ASSERT_TRUE(push.SerializeToString(&header));
  EncodeDataFramePrefix({static_cast<uint32_t>(header.size()),
                         static_cast<uint64_t>(arena_bytes_)}, raw);
  std::string frame(reinterpret_cast<char*>(raw), sizeof(raw));
  frame += header;
  frame += std::string(arena_bytes_ / 2, '\0');
  ASSERT_EQ(send(fd, frame.data(), frame.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(frame.size()));
  close(fd);
  // A header that does not parse, and plain garbage.
  fd = Connect();
  const std::string bad(40, '\xff');
  EncodeDataFramePrefix({static_cast<uint32_t>(bad.size()), 0}, raw);
  frame = std::string(reinterpret_cast<char*>(raw), sizeof(raw)) + bad;
  ASSERT_EQ(send(fd, frame.data(), frame.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(frame.size()));
  ExpectRefused(fd, absl::StatusCode::kInvalidArgument, "parse");
  fd = Connect();
  std::string garbage;
  for (int i = 0; i < 64; ++i) garbage += static_cast<char>((i * 73 + 11) & 0xff);
  ASSERT_EQ(send(fd, garbage.data(), garbage.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(garbage.size()));
  ExpectRefused(fd, absl::StatusCode::kInvalidArgument, "magic");
  ExpectStillServing();
  // Nothing was counted: the job is still at version 0 and its worker has not pushed.
  auto job = manager_->Get(job_id_);
  ASSERT_OK(job);
  EXPECT_EQ((*job)->Status().step(), 0);
}

// --- Deadlines ------------------------------------------------------------------------------

// Registers workers and offers them a data plane at `data_address`; nothing else.
class FakeRegistrar final : public v1::Parameters::Service {
 public:
  explicit FakeRegistrar(std::string data_address) : data_address_(std::move(data_address)) {}
  grpc::Status RegisterWorker(grpc::ServerContext*, const v1::RegisterWorkerRequest*,
                              v1::RegisterWorkerResponse* response) override {
    response->set_job_id("job-1");
    response->set_worker_id("w1");
    response->set_data_address(data_address_);
    response->set_data_token("t");
    return grpc::Status::OK;
  }
  // The gRPC pull a client falls back to: the job has ended at version 5.
  grpc::Status PullParameters(grpc::ServerContext*, const v1::PullParametersRequest*,
                              grpc::ServerWriter<v1::PullParametersResponse>* writer) override {
    v1::PullParametersResponse head;
    head.set_version(5);
    head.set_state(v1::JOB_STATE_COMPLETED);
    writer->Write(head);
    return grpc::Status::OK;
  }

 private:
  std::string data_address_;
};

// A FakeRegistrar offering the data plane at 127.0.0.1:`data_port`, served over gRPC on a
// loopback port, and the layout of a job with one parameter "w" of 4 floats.
class RegistrarServer {
 public:
  explicit RegistrarServer(int data_port)
      : registrar_("127.0.0.1:" + std::to_string(data_port)) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&registrar_);
    server_ = builder.BuildAndStart();
  }
  ~RegistrarServer() {
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    }
  }
  bool started() const { return server_ != nullptr; }
  // A TcpParameterClient over a gRPC client connected to this server.
  std::unique_ptr<TcpParameterClient> Client(const TcpClientOptions& options) const {
    auto grpc_client = GrpcParameterClient::Connect("127.0.0.1:" + std::to_string(port_), kIo);
    EXPECT_OK(grpc_client);
    if (!grpc_client.ok()) return nullptr;
    return std::make_unique<TcpParameterClient>(std::move(*grpc_client), options);
  }
  static std::vector<ParamInfo> Layout() {
    ParamInfo info;
    info.name = "w";
    info.shape = {4};
    info.offset = 0;
    info.size = 4;
    return {info};
  }

 private:
  FakeRegistrar registrar_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

TcpClientOptions Required() {
  TcpClientOptions options;
  options.required = true;
  return options;
}

TcpClientOptions Quiet() {
  TcpClientOptions options;
  options.quiet = true;
  return options;
}

TEST(DataPlaneClient, SilentServerGivesDeadlineExceededInTime) {
  int port = 0;
  auto listener = ListenTcp("127.0.0.1:0", &port);  // accepts (in the backlog), never answers
  ASSERT_OK(listener);
  RegistrarServer registrar(port);
  ASSERT_TRUE(registrar.started());
  std::unique_ptr<TcpParameterClient> client_ptr = registrar.Client(Required());
  ASSERT_NE(client_ptr, nullptr);
  TcpParameterClient& client = *client_ptr;
  ASSERT_OK(client.Register("", "w", absl::Now() + kIo));
  EXPECT_TRUE(client.data_plane_active());

  const std::vector<ParamInfo> layout = RegistrarServer::Layout();
  Tensor values({4});
  absl::Time start = absl::Now();
  EXPECT_STATUS(client.Pull("job-1", "w1", 1, layout, &values, start + absl::Milliseconds(300))
                    .status(),
                absl::StatusCode::kDeadlineExceeded, "deadline");
  absl::Duration took = absl::Now() - start;
  EXPECT_GE(took, absl::Milliseconds(250));
  EXPECT_LT(took, absl::Seconds(2));
  // A push big enough to fill the socket buffers blocks in the send, and ends in time too.
  Tensor gradients({16 << 20});
  v1::PushHeader header;
  header.set_job_id("job-1");
  header.set_worker_id("w1");
  start = absl::Now();
  EXPECT_EQ(client.Push(header, layout, gradients, start + absl::Milliseconds(300))
                .status()
                .code(),
            absl::StatusCode::kDeadlineExceeded);
  took = absl::Now() - start;
  EXPECT_LT(took, absl::Seconds(2));
  close(*listener);
}

TEST(DataPlaneClient, FallsBackToGrpcWhenThePlaneIsUnreachable) {
  int port = 0;
  auto listener = ListenTcp("127.0.0.1:0", &port);
  ASSERT_OK(listener);
  close(*listener);  // nobody listens there now
  RegistrarServer registrar(port);
  ASSERT_TRUE(registrar.started());
  {
    std::unique_ptr<TcpParameterClient> client = registrar.Client(Quiet());
    ASSERT_NE(client, nullptr);
    ASSERT_OK(client->Register("", "w", absl::Now() + kIo));
    EXPECT_FALSE(client->data_plane_active());
  }
  std::unique_ptr<TcpParameterClient> client = registrar.Client(Required());
  ASSERT_NE(client, nullptr);
  EXPECT_STATUS(client->Register("", "w", absl::Now() + kIo).status(),
                absl::StatusCode::kFailedPrecondition, "cannot reach the data plane");
}

TEST(DataPlaneClient, FallsBackToGrpcWhenTheServerNoLongerKnowsTheWorker) {
  // A data plane that answers every frame as a restarted server would: no such worker.
  int port = 0;
  auto listener = ListenTcp("127.0.0.1:0", &port);
  ASSERT_OK(listener);
  std::thread plane([fd = *listener] {
    if (!WaitReadable(fd, absl::Now() + kIo)) return;
    const int conn = accept(fd, nullptr, nullptr);
    if (conn < 0) return;
    (void)PrepareSocket(conn);
    v1::DataRequest request;
    if (ReadDataFrameHeader(conn, &request, absl::Now() + kIo, kIo).ok()) {
      v1::DataResponse response;
      response.set_code(static_cast<int>(absl::StatusCode::kNotFound));
      response.set_message("no worker w1 of job job-1 registered here");
      response.set_closing(true);
      (void)WriteDataFrame(conn, response, nullptr, 0, absl::Now() + kIo);
    }
    close(conn);
  });
  RegistrarServer registrar(port);
  ASSERT_TRUE(registrar.started());
  std::unique_ptr<TcpParameterClient> client = registrar.Client(Quiet());
  ASSERT_NE(client, nullptr);
  ASSERT_OK(client->Register("", "w", absl::Now() + kIo));
  EXPECT_TRUE(client->data_plane_active());
  Tensor values({4});
  auto pulled =
      client->Pull("job-1", "w1", 1, RegistrarServer::Layout(), &values, absl::Now() + kIo);
  ASSERT_OK(pulled);
  EXPECT_EQ(pulled->version, 5);  // from the gRPC pull
  EXPECT_FALSE(client->data_plane_active());
  plane.join();
  close(*listener);
}

// --- Equivalence ----------------------------------------------------------------------------

Tensor Train(const v1::JobSpec& spec, bool tcp) {
  JobManager manager{JobManagerOptions()};
  GrpcServerOptions server_options;
  if (tcp) server_options.data_listen = "127.0.0.1:0";
  auto server = GrpcServer::Start("127.0.0.1:0", &manager, server_options);
  EXPECT_OK(server);
  auto id = manager.Submit(spec);
  EXPECT_OK(id);
  const std::string address = "127.0.0.1:" + std::to_string((*server)->port());
  std::vector<std::thread> workers;
  for (int r = 0; r < spec.training().workers(); ++r) {
    workers.emplace_back([&] {
      auto grpc_client = GrpcParameterClient::Connect(address, absl::Seconds(10));
      ASSERT_OK(grpc_client);
      std::unique_ptr<ParameterClient> client;
      TcpParameterClient* tcp_client = nullptr;
      if (tcp) {
        TcpClientOptions options = Required();
        options.stream_part_floats = 8;  // every push streams in parts of 8 floats
        auto c = std::make_unique<TcpParameterClient>(std::move(*grpc_client), options);
        tcp_client = c.get();
        client = std::move(c);
      } else {
        client = std::move(*grpc_client);
      }
      CpuBackend backend;
      WorkerOptions options;
      options.job_id = *id;
      options.verbose = false;
      options.wait_for_job = absl::Seconds(30);
      EXPECT_OK(Worker(client.get(), &backend, options).Run());
      if (tcp_client != nullptr) {
        EXPECT_TRUE(tcp_client->data_plane_active());
        EXPECT_GT(tcp_client->parts_sent(), 0);
      }
    });
  }
  for (std::thread& t : workers) t.join();
  auto job = manager.Get(*id);
  EXPECT_OK(job);
  EXPECT_EQ((*job)->Status().state(), v1::JOB_STATE_COMPLETED) << (*job)->Status().message();
  auto snapshot = (*job)->WaitForVersion((*job)->total_steps(), absl::Now() + absl::Seconds(5));
  EXPECT_OK(snapshot);
  (*server)->Shutdown(absl::Seconds(1));
  return *snapshot->values;
}

TEST(DataPlaneEquivalence, TwoTcpWorkersEndBitIdenticalToTwoGrpcWorkers) {
  for (const std::string optimizer : {"{type: sgd, learning_rate: 0.1}",
                                      "{type: momentum, learning_rate: 0.05, momentum: 0.9}"}) {
    SCOPED_TRACE(optimizer);
    const Tensor over_grpc = Train(Spec(2, optimizer), /*tcp=*/false);
    const Tensor over_tcp = Train(Spec(2, optimizer), /*tcp=*/true);
    ASSERT_EQ(over_grpc.size(), over_tcp.size());
    ASSERT_GT(over_tcp.size(), 0);
    EXPECT_EQ(std::memcmp(over_grpc.data(), over_tcp.data(), over_tcp.size() * sizeof(float)), 0);
  }
}

}  // namespace
}  // namespace psgrid
