// Transport: push + pull round trips between workers and the parameter server on loopback,
// against raw TCP and memcpy of the same sizes measured in the same run (issue: benchmarks).
//
//   build/bench/transport_bench [--quick] [--sizes-kb 4,1024,...] [--json FILE]
//
// For each parameter-set size S (4 KiB, 1, 16, 64 and 256 MiB; --quick drops 256 MiB and
// repeats less):
//   psgrid, 1 worker   the real server (a GrpcServer over a JobManager, in this process, on
//                      127.0.0.1:0) and a worker process (this program with --child) that
//                      registers and exchanges through GrpcParameterClient: per round it pushes
//                      a gradient of step t (the server assembles it, checks it for NaN/Inf
//                      and applies SGD) and pulls version t + 1. Median round; throughput
//                      = 2S / median round (S pushed, S pulled).
//   psgrid, 2 workers  a sync job of 2 worker processes: every step needs both gradients (the
//                      server sums them). Aggregate throughput = 2 x 2S / median round (the
//                      slower worker's).
//   TCP data plane     the same, 1 and 2 workers, with pushes and pulls over the server's
//                      raw-TCP data plane (TcpParameterClient; gRPC only registers): one
//                      frame each way per push and per pull on a persistent connection.
//   TCP stream         1 and 2 connections on 127.0.0.1, each writing S-byte messages back to
//                      back into an S-byte buffer on the other side: bytes/s (aggregate).
//   TCP ping-pong      TCP_NODELAY; S bytes there, S bytes back, the two ends on two different
//                      cores: the median round trip.
//   memcpy             S bytes between two buffers already mapped: bytes/s.
//   phases             the CPU work of a round, each piece timed alone in this process with
//                      psgrid's own code: encoding the slices into messages, serializing and
//                      parsing them, allocating the server's fresh gradient arena and
//                      assembling into it, and the server's step (Job::PushGradients, which
//                      checks and applies the update, and the copy a pull publishes).
// Prints markdown tables (ratios first) and, with --json, writes everything. Loopback only;
// every socket call, RPC and child process is bounded by a deadline.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "core/backend/cpu_backend.h"
#include "core/model.h"
#include "core/tensor_codec.h"
#include "bench/bench_json.h"
#include "nlohmann/json.hpp"
#include "proto/job_spec_codec.h"
#include "server/job_manager.h"
#include "server/rpc/grpc_server.h"
#include "worker/rpc/grpc_parameter_client.h"
#include "worker/rpc/tcp_parameter_client.h"

extern char** environ;

namespace psgrid {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

// The model: kFeatures inputs -> dense U -> dense 1, i.e. 1024 U + 1 floats (4096 U + 4 bytes).
constexpr int kFeatures = 1022;
constexpr int kIoTimeoutSeconds = 60;                         // any one socket read or write
constexpr absl::Duration kRpcTimeout = absl::Seconds(120);    // any one push or pull
constexpr absl::Duration kChildTimeout = absl::Seconds(600);  // a worker process, all rounds

double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

template <typename F>
double Time(F f) {
  const auto start = Clock::now();
  f();
  return Since(start);
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t k = v.size() / 2;
  return v.size() % 2 == 1 ? v[k] : (v[k - 1] + v[k]) / 2;
}

// Rounds of a round-trip measurement for S bytes: many for small sizes, at least 5.
int RoundsFor(int64_t bytes, bool quick) {
  const int64_t budget = quick ? (int64_t{256} << 20) : (int64_t{1} << 30);
  return static_cast<int>(std::clamp<int64_t>(budget / bytes, 5, quick ? 200 : 1000));
}

// ---- Raw TCP on 127.0.0.1 ----

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

void Bound(int fd, bool nodelay) {
  const timeval tv{kIoTimeoutSeconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  const int one = 1;
  if (nodelay) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

// A connected pair of sockets on 127.0.0.1 (connect completes in the backlog; accept is polled
// with a timeout). Aborts when loopback is unusable: nothing else here could run.
std::pair<Fd, Fd> LoopbackPair(bool nodelay) {
  Fd listener(socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  Fd client(socket(AF_INET, SOCK_STREAM, 0));
  pollfd p{listener.get(), POLLIN, 0};
  if (bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      listen(listener.get(), 1) != 0 ||
      getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
      connect(client.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      poll(&p, 1, 10'000) != 1) {
    std::perror("loopback socket");
    std::abort();
  }
  Fd server(accept(listener.get(), nullptr, nullptr));
  Bound(client.get(), nodelay);
  Bound(server.get(), nodelay);
  return {std::move(client), std::move(server)};
}

bool WriteAll(int fd, const char* p, int64_t n) {
  while (n > 0) {
    const ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    n -= k;
  }
  return true;
}

bool ReadAll(int fd, char* p, int64_t n) {
  while (n > 0) {
    const ssize_t k = recv(fd, p, n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    p += k;
    n -= k;
  }
  return true;
}

// A buffer of `bytes` with every page mapped.
std::vector<char> Mapped(int64_t bytes) { return std::vector<char>(bytes, 1); }

// `streams` connections at once, each sending `messages` messages of `size` bytes into an
// S-byte buffer and acknowledging the last: aggregate bytes/s.
double StreamBytesPerSecond(int64_t size, int streams, int64_t messages) {
  std::vector<std::pair<Fd, Fd>> pairs;
  std::vector<std::vector<char>> src, dst;
  for (int s = 0; s < streams; ++s) {
    pairs.push_back(LoopbackPair(false));
    src.push_back(Mapped(size));
    dst.push_back(Mapped(size));
  }
  std::atomic<bool> ok{true};
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  for (int s = 0; s < streams; ++s) {
    threads.emplace_back([&, s] {
      char ack = 0;
      for (int64_t m = 0; m < messages && ok; ++m) {
        if (!ReadAll(pairs[s].second.get(), dst[s].data(), size)) ok = false;
      }
      if (!WriteAll(pairs[s].second.get(), &ack, 1)) ok = false;
    });
    threads.emplace_back([&, s] {
      char ack;
      for (int64_t m = 0; m < messages && ok; ++m) {
        if (!WriteAll(pairs[s].first.get(), src[s].data(), size)) ok = false;
      }
      if (!ReadAll(pairs[s].first.get(), &ack, 1)) ok = false;
    });
  }
  for (std::thread& t : threads) t.join();
  const double seconds = Since(start);
  if (!ok) std::fprintf(stderr, "transport_bench: a TCP stream failed\n");
  return ok ? static_cast<double>(streams * messages * size) / seconds : 0;
}

// Pins the calling thread to `cpu`; returns false where it cannot (one core, or refused).
bool PinTo(int cpu) {
  if (std::thread::hardware_concurrency() < 2) return false;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
}

// S bytes there and back (TCP_NODELAY), `rounds` times after 2 unmeasured: each round trip.
// The two ends run on two different cores, as a worker and its server do (different processes,
// or machines): an echo on the client's own core answers without a cross-core wake-up, which
// on a VM is several times faster and would make the ceiling depend on the scheduler's mood.
std::vector<double> PingPong(int64_t size, int rounds) {
  auto [client, server] = LoopbackPair(true);
  std::vector<char> out = Mapped(size), in = Mapped(size), echo = Mapped(size);
  cpu_set_t before;
  const bool restore = pthread_getaffinity_np(pthread_self(), sizeof(before), &before) == 0;
  PinTo(0);
  std::thread echoer([&, fd = server.get()] {
    PinTo(1);
    for (int r = 0; r < rounds + 2; ++r) {
      if (!ReadAll(fd, echo.data(), size) || !WriteAll(fd, echo.data(), size)) return;
    }
  });
  std::vector<double> times;
  for (int r = 0; r < rounds + 2; ++r) {
    const auto start = Clock::now();
    if (!WriteAll(client.get(), out.data(), size) || !ReadAll(client.get(), in.data(), size)) {
      std::fprintf(stderr, "transport_bench: the ping-pong failed\n");
      break;
    }
    if (r >= 2) times.push_back(Since(start));
  }
  shutdown(client.get(), SHUT_RDWR);  // ends the echoer's wait if the loop broke off
  echoer.join();
  if (restore) pthread_setaffinity_np(pthread_self(), sizeof(before), &before);
  return times;
}

double MemcpyBytesPerSecond(int64_t size, int repeats) {
  std::vector<char> a = Mapped(size), b = Mapped(size);
  std::vector<double> times;
  for (int r = 0; r < repeats; ++r) {
    a[r % size] = static_cast<char>(r);
    times.push_back(Time([&] { std::memcpy(b.data(), a.data(), size); }));
  }
  return static_cast<double>(size) / Median(times);
}

// ---- psgrid ----

std::string SpecText(int64_t units, int workers, const std::string& csv) {
  return absl::StrCat(
      "name: transport-bench\n"
      "model: {layers: [{type: dense, units: ", units, "}, {type: dense, units: 1}], "
      "loss: mse, init: {seed: 1}}\n"
      "data: {dataset: csv, path: ", csv, ", shuffle: false}\n"
      "training: {workers: ", workers, ", batch_size: 1, epochs: 1000000}\n"
      "optimizer: {type: sgd, learning_rate: 0.000001}\n");
}

v1::JobSpec Spec(int64_t units, int workers, const std::string& csv) {
  absl::StatusOr<v1::JobSpec> spec = ParseJobSpec(SpecText(units, workers, csv), "bench");
  if (!spec.ok()) {
    std::fprintf(stderr, "%s\n", spec.status().ToString().c_str());
    std::abort();
  }
  return *spec;
}

// A worker process: registers, waits for the job to run, then pushes and pulls `rounds`
// (+ 2 unmeasured) rounds over gRPC or (`tcp`) the data plane; writes {"push_s": [...],
// "pull_s": [...]} to `out`.
int RunChild(const std::string& address, const std::string& job_id, int rounds,
             const std::string& name, const std::string& out, bool tcp) {
  auto fail = [](const absl::Status& s) {
    std::fprintf(stderr, "transport_bench worker: %s\n", s.ToString().c_str());
    return 1;
  };
  absl::StatusOr<std::unique_ptr<GrpcParameterClient>> grpc_client =
      GrpcParameterClient::Connect(address, absl::Seconds(10));
  if (!grpc_client.ok()) return fail(grpc_client.status());
  std::unique_ptr<ParameterClient> client;
  if (tcp) {
    TcpClientOptions options;
    options.required = true;  // a measurement of the data plane or none
    client = std::make_unique<TcpParameterClient>(std::move(*grpc_client), options);
  } else {
    client = std::move(*grpc_client);
  }
  absl::StatusOr<v1::RegisterWorkerResponse> reg =
      client->Register(job_id, name, absl::Now() + absl::Seconds(30));
  if (!reg.ok()) return fail(reg.status());
  CpuBackend backend;
  absl::StatusOr<std::unique_ptr<Model>> model =
      Model::Create(reg->spec().model(), Shape{kFeatures}, 1, &backend);
  if (!model.ok()) return fail(model.status());
  ParameterSet& params = (*model)->parameters();
  for (int64_t i = 0; i < params.grads().size(); ++i) params.grads()[i] = 1e-3f;
  const absl::Time running_by = absl::Now() + absl::Seconds(60);
  while (true) {
    absl::StatusOr<v1::JobState> state =
        client->Heartbeat(job_id, reg->worker_id(), absl::Now() + absl::Seconds(10));
    if (!state.ok()) return fail(state.status());
    if (*state == v1::JOB_STATE_RUNNING) break;
    if (absl::Now() > running_by) return fail(absl::DeadlineExceededError("job never ran"));
    absl::SleepFor(absl::Milliseconds(2));
  }
  json result = {{"push_s", json::array()}, {"pull_s", json::array()}};
  v1::PushHeader header;
  header.set_job_id(job_id);
  header.set_worker_id(reg->worker_id());
  header.set_sample_count(1);
  header.set_loss_sum(0.5);
  for (int t = 0; t < rounds + 2; ++t) {
    header.set_step(t);
    const auto start = Clock::now();
    absl::StatusOr<v1::PushGradientsResponse> pushed =
        client->Push(header, params.infos(), params.grads(), absl::Now() + kRpcTimeout);
    if (!pushed.ok()) return fail(pushed.status());
    const double push = Since(start);
    absl::StatusOr<PullResult> pulled = client->Pull(
        job_id, reg->worker_id(), t + 1, params.infos(), &params.values(), absl::Now() + kRpcTimeout);
    if (!pulled.ok()) return fail(pulled.status());
    if (pulled->version != t + 1) return fail(absl::InternalError("unexpected version"));
    if (t >= 2) {
      result["push_s"].push_back(push);
      result["pull_s"].push_back(Since(start) - push);
    }
  }
  std::ofstream(out) << result.dump() << "\n";
  return 0;
}

// Starts this program as a worker process; -1 when it could not be started.
pid_t SpawnWorker(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  return posix_spawn(&pid, "/proc/self/exe", nullptr, nullptr, argv.data(), environ) == 0 ? pid
                                                                                         : -1;
}

// Waits for our own worker process until `deadline`; kills it (by its pid) when late.
bool Reap(pid_t pid, absl::Time deadline) {
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (absl::Now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      std::fprintf(stderr, "transport_bench: worker %d timed out\n", static_cast<int>(pid));
      return false;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

struct PsgridRounds {
  std::vector<double> round, push, pull;  // per round: the slowest worker's
  double elapsed = 0;                     // the slowest worker's measured rounds
  bool ok = false;
};

// `workers` worker processes against a fresh server and job: per-round times.
PsgridRounds MeasurePsgrid(int64_t units, int workers, int rounds, const std::string& dir,
                           bool tcp) {
  PsgridRounds r;
  JobManagerOptions options;
  options.worker_timeout = absl::Minutes(10);
  JobManager manager(options);
  GrpcServerOptions server_options;
  if (tcp) server_options.data_listen = "127.0.0.1:0";
  absl::StatusOr<std::unique_ptr<GrpcServer>> server =
      GrpcServer::Start("127.0.0.1:0", &manager, server_options);
  if (!server.ok()) return r;
  absl::StatusOr<std::string> id = manager.Submit(Spec(units, workers, dir + "/data.csv"));
  if (!id.ok()) {
    std::fprintf(stderr, "%s\n", id.status().ToString().c_str());
    return r;
  }
  std::vector<pid_t> pids;
  for (int w = 0; w < workers; ++w) {
    pids.push_back(SpawnWorker({"transport_bench", "--child", absl::StrCat("127.0.0.1:", (*server)->port()),
                                *id, absl::StrCat(rounds), absl::StrCat("bench-", w),
                                absl::StrCat(dir, "/worker", w, ".json"), tcp ? "tcp" : "grpc"}));
  }
  const absl::Time deadline = absl::Now() + kChildTimeout;
  r.ok = true;
  for (pid_t pid : pids) r.ok = pid > 0 && Reap(pid, deadline) && r.ok;
  (*server)->Shutdown(absl::Seconds(2));
  (*server)->Wait();
  if (!r.ok) return r;
  r.round.assign(rounds, 0);
  r.push.assign(rounds, 0);
  r.pull.assign(rounds, 0);
  for (int w = 0; w < workers; ++w) {
    const json times = json::parse(std::ifstream(absl::StrCat(dir, "/worker", w, ".json")));
    double elapsed = 0;
    for (int i = 0; i < rounds; ++i) {
      const double push = times["push_s"][i], pull = times["pull_s"][i];
      r.round[i] = std::max(r.round[i], push + pull);
      r.push[i] = std::max(r.push[i], push);
      r.pull[i] = std::max(r.pull[i], pull);
      elapsed += push + pull;
    }
    r.elapsed = std::max(r.elapsed, elapsed);
  }
  return r;
}

// The CPU work of one round, each piece with psgrid's own code, alone in this process: median
// seconds of each phase, for one direction where it happens twice (push and pull).
json MeasurePhases(int64_t units, int repeats, const std::string& dir) {
  CpuBackend backend;
  DataShape shape{Shape{kFeatures}, 1, 8, true};
  auto job = Job::Create("phases", Spec(units, 1, dir + "/data.csv"), shape, &backend);
  if (!job.ok()) return json::object();
  auto worker = (*job)->AddWorker("bench");
  const std::vector<ParamInfo>& layout = (*job)->layout();
  Tensor gradient({(*job)->arena_size()});
  for (int64_t i = 0; i < gradient.size(); ++i) gradient[i] = 1e-3f;
  std::vector<double> encode, serialize, parse, fresh, assemble, step;
  for (int r = 0; r < repeats; ++r) {
    std::vector<v1::PushGradientsRequest> messages;
    encode.push_back(Time([&] {
      EncodeSlices(layout, gradient.data(), kDefaultChunkBytes,
                   [&](std::vector<v1::TensorSlice>&& group) {
                     v1::PushGradientsRequest& m = messages.emplace_back();
                     for (v1::TensorSlice& s : group) *m.add_slices() = std::move(s);
                     return true;
                   });
    }));
    std::vector<std::string> wire(messages.size());
    serialize.push_back(Time([&] {
      for (size_t i = 0; i < messages.size(); ++i) messages[i].SerializeToString(&wire[i]);
    }));
    std::vector<v1::PushGradientsRequest> parsed(wire.size());
    parse.push_back(Time([&] {
      for (size_t i = 0; i < wire.size(); ++i) parsed[i].ParseFromString(wire[i]);
    }));
    Tensor arena;
    fresh.push_back(Time([&] { arena = Tensor({(*job)->arena_size()}); }));
    assemble.push_back(Time([&] {
      SliceAssembler assembler(layout, arena.data());
      for (const auto& m : parsed) {
        for (const v1::TensorSlice& s : m.slices()) (void)assembler.Add(s);
      }
      (void)assembler.Finish();
    }));
    GradientPush push;
    push.worker_id = worker->worker_id;
    push.step = r;
    push.sample_count = 1;
    push.gradients = &gradient;
    step.push_back(Time([&] {
      (void)(*job)->PushGradients(push);
      (void)(*job)->WaitForVersion(r + 1, absl::Now() + kRpcTimeout);
    }));
  }
  return {{"encode_s", Median(encode)},       {"serialize_s", Median(serialize)},
          {"parse_s", Median(parse)},         {"fresh_arena_s", Median(fresh)},
          {"assemble_s", Median(assemble)},   {"server_step_s", Median(step)}};
}

std::string Size(int64_t bytes) {
  return bytes < (1 << 20) ? absl::StrCat(bytes >> 10, " KiB") : absl::StrCat(bytes >> 20, " MiB");
}

int Run(const std::vector<int64_t>& sizes_kb, bool quick, const std::string& json_path) {
  const std::string dir =
      (std::filesystem::temp_directory_path() / absl::StrCat("psgrid-transport-", getpid())).string();
  std::filesystem::create_directories(dir);
  {
    std::ofstream csv(dir + "/data.csv");
    for (int f = 0; f < kFeatures; ++f) csv << "f" << f << ",";
    csv << "y\n";
    for (int row = 0; row < 8; ++row) {
      for (int f = 0; f < kFeatures; ++f) csv << (row + f) % 5 * 0.25 << ",";
      csv << row << "\n";
    }
  }
  const int repeats = quick ? 3 : 5;
  json rows = json::array();
  for (int64_t kb : sizes_kb) {
    const int64_t units = std::max<int64_t>(1, kb / 4);  // 1024 U + 1 floats
    const int64_t bytes = (1024 * units + 1) * 4;
    const int rounds = RoundsFor(bytes, quick);
    std::fprintf(stderr, "transport %s: %d rounds\n", Size(bytes).c_str(), rounds);
    json row = {{"bytes", bytes}, {"label", Size(bytes)}, {"rounds", rounds}};
    for (int variant = 0; variant < 4; ++variant) {
      const bool tcp = variant >= 2;
      const int workers = 1 + variant % 2;
      const std::string key = absl::StrCat(tcp ? "tcp_plane_" : "psgrid_", workers, "w");
      const PsgridRounds p = MeasurePsgrid(units, workers, rounds, dir, tcp);
      if (!p.ok) {
        row[key] = nullptr;
        continue;
      }
      row[key] = {
          {"round_s", Median(p.round)}, {"push_s", Median(p.push)}, {"pull_s", Median(p.pull)},
          {"bytes_per_s", 2.0 * workers * bytes / Median(p.round)},
          {"mean_bytes_per_s", 2.0 * workers * bytes * rounds / p.elapsed}};
    }
    const int64_t messages = std::max<int64_t>(4, (int64_t{64} << 20) / bytes);
    for (int streams : {1, 2}) {
      std::vector<double> bw;
      for (int r = 0; r < repeats; ++r) bw.push_back(StreamBytesPerSecond(bytes, streams, messages));
      row[absl::StrCat("tcp_stream_", streams)] = {{"bytes_per_s", Median(bw)}};
    }
    row["tcp_ping_pong"] = {{"round_s", Median(PingPong(bytes, rounds))}};
    row["memcpy"] = {{"bytes_per_s", MemcpyBytesPerSecond(bytes, repeats)}};
    row["phases"] = MeasurePhases(units, std::min(rounds, repeats), dir);
    if (!row["psgrid_1w"].is_null()) {
      row["ratios"] = {
          {"throughput_vs_tcp_stream",
           row["psgrid_1w"]["bytes_per_s"].get<double>() / row["tcp_stream_1"]["bytes_per_s"].get<double>()},
          {"round_vs_ping_pong",
           row["psgrid_1w"]["round_s"].get<double>() / row["tcp_ping_pong"]["round_s"].get<double>()}};
      if (!row["psgrid_2w"].is_null()) {
        row["ratios"]["throughput_2w_vs_2_tcp_streams"] =
            row["psgrid_2w"]["bytes_per_s"].get<double>() /
            row["tcp_stream_2"]["bytes_per_s"].get<double>();
      }
    }
    if (!row["tcp_plane_1w"].is_null()) {
      json& ratios = row["tcp_plane_ratios"];
      ratios["throughput_vs_tcp_stream"] = row["tcp_plane_1w"]["bytes_per_s"].get<double>() /
                                           row["tcp_stream_1"]["bytes_per_s"].get<double>();
      ratios["round_vs_ping_pong"] = row["tcp_plane_1w"]["round_s"].get<double>() /
                                     row["tcp_ping_pong"]["round_s"].get<double>();
      if (!row["psgrid_1w"].is_null()) {
        ratios["speedup_vs_grpc"] = row["psgrid_1w"]["round_s"].get<double>() /
                                    row["tcp_plane_1w"]["round_s"].get<double>();
      }
      if (!row["tcp_plane_2w"].is_null()) {
        ratios["throughput_2w_vs_2_tcp_streams"] =
            row["tcp_plane_2w"]["bytes_per_s"].get<double>() /
            row["tcp_stream_2"]["bytes_per_s"].get<double>();
      }
    }
    rows.push_back(row);
  }
  std::filesystem::remove_all(dir);

  auto num = [](const json& j, const char* a, const char* b) {
    return j.contains(a) && j[a].is_object() && j[a].contains(b) ? j[a][b].get<double>() : 0.0;
  };
  std::printf(
      "| size | psgrid / TCP stream | psgrid round / ping-pong | 2 workers / 2 TCP streams | "
      "psgrid round | ping-pong | psgrid GB/s | 2 workers GB/s | TCP GB/s (1, 2 streams) | "
      "memcpy GB/s |\n|---|---|---|---|---|---|---|---|---|---|\n");
  for (const json& r : rows) {
    std::printf("| %s | **%.0f%%** | **%.2fx** | %.0f%% | %.3f ms | %.3f ms | %.2f | %.2f | %.2f, %.2f | %.1f |\n",
                r["label"].get<std::string>().c_str(), 100 * num(r, "ratios", "throughput_vs_tcp_stream"),
                num(r, "ratios", "round_vs_ping_pong"),
                100 * num(r, "ratios", "throughput_2w_vs_2_tcp_streams"),
                1e3 * num(r, "psgrid_1w", "round_s"), 1e3 * num(r, "tcp_ping_pong", "round_s"),
                num(r, "psgrid_1w", "bytes_per_s") / 1e9, num(r, "psgrid_2w", "bytes_per_s") / 1e9,
                num(r, "tcp_stream_1", "bytes_per_s") / 1e9, num(r, "tcp_stream_2", "bytes_per_s") / 1e9,
                num(r, "memcpy", "bytes_per_s") / 1e9);
  }
  std::printf(
      "\nThe raw-TCP data plane (TcpParameterClient), against the same ceilings and gRPC:\n\n"
      "| size | data plane / TCP stream | data plane round / ping-pong | 2 workers / 2 TCP "
      "streams | round (push + pull) | gRPC round | gRPC / data plane | GB/s (1, 2 workers) |\n"
      "|---|---|---|---|---|---|---|---|\n");
  for (const json& r : rows) {
    std::printf("| %s | **%.0f%%** | **%.2fx** | %.0f%% | %.3f ms (%.3f + %.3f) | %.3f ms | %.2fx | "
                "%.2f, %.2f |\n",
                r["label"].get<std::string>().c_str(),
                100 * num(r, "tcp_plane_ratios", "throughput_vs_tcp_stream"),
                num(r, "tcp_plane_ratios", "round_vs_ping_pong"),
                100 * num(r, "tcp_plane_ratios", "throughput_2w_vs_2_tcp_streams"),
                1e3 * num(r, "tcp_plane_1w", "round_s"), 1e3 * num(r, "tcp_plane_1w", "push_s"),
                1e3 * num(r, "tcp_plane_1w", "pull_s"), 1e3 * num(r, "psgrid_1w", "round_s"),
                num(r, "tcp_plane_ratios", "speedup_vs_grpc"),
                num(r, "tcp_plane_1w", "bytes_per_s") / 1e9,
                num(r, "tcp_plane_2w", "bytes_per_s") / 1e9);
  }
  std::printf(
      "\nWhere a 1-worker round goes (CPU work of each phase alone, ms; encode, serialize, parse\n"
      "and assemble happen once per direction):\n\n"
      "| size | round | encode | serialize | parse | fresh arena | assemble | server step | "
      "2 x (enc+ser+parse+asm) + arena + step | ping-pong |\n|---|---|---|---|---|---|---|---|---|---|\n");
  for (const json& r : rows) {
    const json& p = r["phases"];
    if (p.empty()) continue;
    const double codec = p["encode_s"].get<double>() + p["serialize_s"].get<double>() +
                         p["parse_s"].get<double>() + p["assemble_s"].get<double>();
    const double cpu = 2 * codec + p["fresh_arena_s"].get<double>() + p["server_step_s"].get<double>();
    std::printf("| %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f |\n",
                r["label"].get<std::string>().c_str(), 1e3 * num(r, "psgrid_1w", "round_s"),
                1e3 * p["encode_s"].get<double>(), 1e3 * p["serialize_s"].get<double>(),
                1e3 * p["parse_s"].get<double>(), 1e3 * p["fresh_arena_s"].get<double>(),
                1e3 * p["assemble_s"].get<double>(), 1e3 * p["server_step_s"].get<double>(),
                1e3 * cpu, 1e3 * num(r, "tcp_ping_pong", "round_s"));
  }
  if (!json_path.empty()) {
    const json out = {{"benchmark", "transport"},
                      {"quick", quick},
                      {"cores", std::thread::hardware_concurrency()},
                      {"model", "dense U on 1022 inputs, dense 1: 1024 U + 1 floats"},
                      {"statistic", "medians; throughputs count bytes pushed + pulled"},
                      {"rows", rows}};
    if (!WriteJsonResult(json_path, out)) return 1;
  }
  return 0;
}

}  // namespace
}  // namespace psgrid

int main(int argc, char** argv) {
  if (argc == 8 && std::string(argv[1]) == "--child") {
    int rounds = 0;
    if (!absl::SimpleAtoi(argv[4], &rounds)) return 2;
    return psgrid::RunChild(argv[2], argv[3], rounds, argv[5], argv[6],
                            std::string(argv[7]) == "tcp");
  }
  bool quick = false;
  std::vector<int64_t> sizes_kb;
  std::string json;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    bool ok = true;
    if (flag == "--quick") {
      quick = true;
    } else if (flag == "--sizes-kb" && i + 1 < argc) {
      for (absl::string_view s : absl::StrSplit(argv[++i], ',')) {
        int64_t kb = 0;
        ok = ok && absl::SimpleAtoi(s, &kb) && kb >= 4;
        sizes_kb.push_back(kb);
      }
    } else if (flag == "--json" && i + 1 < argc) {
      json = argv[++i];
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr, "usage: transport_bench [--quick] [--sizes-kb 4,1024,...] [--json FILE]\n");
      return 2;
    }
  }
  if (sizes_kb.empty()) {
    sizes_kb = {4, 1 << 10, 16 << 10, 64 << 10};
    if (!quick) sizes_kb.push_back(256 << 10);
  }
  return psgrid::Run(sizes_kb, quick, json);
}
