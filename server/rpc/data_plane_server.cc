#include "server/rpc/data_plane_server.h"

#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/tensor.h"
#include "proto/data_frame.h"
#include "proto/socket_io.h"
#include "psgrid/v1/data_plane.pb.h"
#include "server/parameter_ops.h"

namespace psgrid {
namespace {

// A connection may sit idle between frames (the worker computes, evaluates) this long.
constexpr absl::Duration kIdleLimit = absl::Hours(1);
// Once a frame has begun, its prefix and header must arrive within this.
constexpr absl::Duration kHeaderTimeout = absl::Seconds(30);
// A request without a deadline gets this; none gets more than kMaxRequestTime.
constexpr absl::Duration kDefaultRequestTime = absl::Seconds(60);
constexpr absl::Duration kMaxRequestTime = absl::Minutes(10);
// Answers (error frames included) get at least this long to go out.
constexpr absl::Duration kMinAnswerTime = absl::Seconds(5);
// How often the acceptor checks for a shutdown.
constexpr int kAcceptPollMs = 200;

std::string TokenKey(const std::string& job_id, const std::string& worker_id) {
  return absl::StrCat(job_id, std::string(1, '\0'), worker_id);
}

std::string RandomToken() {
  unsigned char bytes[16] = {};
  size_t have = 0;
  while (have < sizeof(bytes)) {
    const ssize_t got = getrandom(bytes + have, sizeof(bytes) - have, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    have += static_cast<size_t>(got);
  }
  std::string hex;
  for (unsigned char b : bytes) absl::StrAppend(&hex, absl::Hex(b, absl::kZeroPad2));
  return hex;
}

absl::Time RequestDeadline(const v1::DataRequest& request) {
  absl::Duration budget = request.deadline_ms() > 0 ? absl::Milliseconds(request.deadline_ms())
                                                    : kDefaultRequestTime;
  return absl::Now() + std::min(budget, kMaxRequestTime);
}

// Sends an answer; a refusal (closing) tells the worker that the connection ends here.
absl::Status Answer(int fd, const absl::Status& status, bool closing, v1::DataResponse response,
                    const void* payload, uint64_t payload_bytes, absl::Time deadline) {
  response.set_code(static_cast<int32_t>(status.code()));
  if (!status.ok()) response.set_message(std::string(status.message()));
  response.set_closing(closing);
  return WriteDataFrame(fd, response, payload, payload_bytes,
                        std::max(deadline, absl::Now() + kMinAnswerTime));
}

// A connection's state: the gradient buffer it reads pushes into, and the step whose parts it
// is receiving (the bytes from parts_from to the arena's end have come, 0 when none; their
// first error).
struct Session {
  Tensor gradients;
  uint64_t parts_from = 0;  // a part's offset is positive
  std::string parts_worker;
  int64_t parts_clock = 0;
  absl::Status part_error;

  void EndParts() {
    parts_from = 0;
    parts_worker.clear();
    parts_clock = 0;
    part_error = absl::OkStatus();
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<DataPlaneServer>> DataPlaneServer::Start(
    const std::string& address, JobManager* manager) {
  int port = 0;
  absl::StatusOr<int> fd = ListenTcp(address, &port);
  if (!fd.ok()) {
    return absl::UnavailableError(
        absl::StrCat("data plane: cannot listen on ", address, ": ", fd.status().message()));
  }
  std::string host;
  int ignored = 0;
  (void)SplitHostPort(address, &host, &ignored);
  if (host.find(':') != std::string::npos) host = absl::StrCat("[", host, "]");
  std::unique_ptr<DataPlaneServer> server(
      new DataPlaneServer(manager, *fd, port, absl::StrCat(host, ":", port)));
  server->acceptor_ = std::thread([s = server.get()] { s->AcceptLoop(); });
  return server;
}

DataPlaneServer::DataPlaneServer(JobManager* manager, int listen_fd, int port,
                                 std::string address)
    : manager_(manager), listen_fd_(listen_fd), port_(port), address_(std::move(address)) {}

DataPlaneServer::~DataPlaneServer() { Shutdown(); }

std::string DataPlaneServer::IssueToken(const std::string& job_id, const std::string& worker_id) {
  std::string token = RandomToken();
  absl::MutexLock lock(&mu_);
  tokens_[TokenKey(job_id, worker_id)] = token;
  return token;
}

absl::Status DataPlaneServer::CheckToken(const std::string& job_id, const std::string& worker_id,
                                         const std::string& token) const {
  absl::MutexLock lock(&mu_);
  auto it = tokens_.find(TokenKey(job_id, worker_id));
  if (it == tokens_.end()) {
    return absl::NotFoundError(absl::StrCat("data plane: no worker ", worker_id, " of job ",
                                            job_id, " registered here"));
  }
  if (it->second != token) {
    return absl::PermissionDeniedError(
        absl::StrCat("data plane: wrong token for worker ", worker_id, " of job ", job_id));
  }
  return absl::OkStatus();
}

int DataPlaneServer::active_connections() const {
  absl::MutexLock lock(&mu_);
  int active = 0;
  for (const auto& c : connections_) active += c->done.load() ? 0 : 1;
  return active;
}

void DataPlaneServer::Shutdown() {
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  stopping_.store(true);
  if (acceptor_.joinable()) acceptor_.join();
  std::list<std::unique_ptr<Connection>> connections;
  {
    absl::MutexLock lock(&mu_);
    connections.swap(connections_);
  }
  // Wakes every read, write and poll of the connections; their threads then end.
  for (auto& c : connections) shutdown(c->fd, SHUT_RDWR);
  for (auto& c : connections) {
    if (c->thread.joinable()) c->thread.join();
    close(c->fd);
  }
  close(listen_fd_);
}

void DataPlaneServer::ReapLocked() {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if ((*it)->done.load()) {
      (*it)->thread.join();
      close((*it)->fd);
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

void DataPlaneServer::AcceptLoop() {
  while (!stopping_.load()) {
    pollfd p = {listen_fd_, POLLIN, 0};
    if (poll(&p, 1, kAcceptPollMs) <= 0) continue;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    if (!PrepareSocket(fd).ok()) {
      close(fd);
      continue;
    }
    absl::MutexLock lock(&mu_);
    ReapLocked();
    if (connections_.size() >= static_cast<size_t>(kMaxConnections)) {
      close(fd);  // over the limit: the worker falls back to gRPC
      continue;
    }
    auto connection = std::make_unique<Connection>();
    connection->fd = fd;
    Connection* c = connection.get();
    connections_.push_back(std::move(connection));
    c->thread = std::thread([this, c] {
      Serve(c);
      // The worker sees the end at once (the descriptor is closed when reaped); what it still
      // reads, a refusal included, is not lost to a reset.
      shutdown(c->fd, SHUT_WR);
      c->done.store(true);
    });
  }
}

void DataPlaneServer::Serve(Connection* connection) {
  const int fd = connection->fd;
  Session session;
  v1::DataRequest request;
  while (!stopping_.load()) {
    request.Clear();
    absl::StatusOr<uint64_t> payload =
        ReadDataFrameHeader(fd, &request, absl::Now() + kIdleLimit, kHeaderTimeout);
    if (!payload.ok()) {
      if (payload.status().code() == absl::StatusCode::kInvalidArgument) {
        (void)Answer(fd, payload.status(), /*closing=*/true, {}, nullptr, 0, absl::Now());
      }
      return;  // closed, idle too long, or garbage: the connection ends
    }
    const absl::Time deadline = RequestDeadline(request);
    auto refuse = [&](const absl::Status& status) {
      (void)Answer(fd, status, /*closing=*/true, {}, nullptr, 0, deadline);
    };
    const bool push = request.has_push();
    if (!push && !request.has_pull()) {
      refuse(absl::InvalidArgumentError("data plane: a request that is neither push nor pull"));
      return;
    }
    const std::string& job_id = push ? request.push().job_id() : request.pull().job_id();
    const std::string& worker_id = push ? request.push().worker_id() : request.pull().worker_id();
    if (absl::Status s = CheckToken(job_id, worker_id, request.token()); !s.ok()) {
      refuse(s);
      return;
    }
    absl::StatusOr<std::shared_ptr<Job>> found = manager_->Get(job_id);
    if (!found.ok()) {
      refuse(found.status());
      return;
    }
    Job& job = **found;
    const uint64_t arena_bytes = static_cast<uint64_t>(job.arena_size()) * sizeof(float);

    if (push) {
      // Parts of another step or worker than the ones under way: those were abandoned.
      if (session.parts_from > 0 &&
          (session.parts_worker != worker_id || session.parts_clock != request.push().clock())) {
        session.EndParts();
      }
      // The range this push must carry: it ends where the step's parts so far begin.
      const uint64_t end = session.parts_from > 0 ? session.parts_from : arena_bytes;
      const uint64_t offset = static_cast<uint64_t>(std::max<int64_t>(0, request.offset_bytes()));
      const bool part = request.part();
      const bool fits = request.offset_bytes() >= 0 && offset % sizeof(float) == 0 &&
                        *payload % sizeof(float) == 0 && *payload <= end &&
                        offset == end - *payload &&
                        (part ? offset > 0 && *payload > 0 : offset == 0);
      if (!fits || request.push().shared_memory()) {
        std::string wanted =
            part ? absl::StrCat("a part ending at byte ", end,
                                " (where the step's parts so far begin), at a positive offset")
            : session.parts_from > 0
                ? absl::StrCat("the rest of the step's gradient after its parts, bytes [0, ", end,
                               ")")
                : absl::StrCat("its whole arena of ", arena_bytes, " bytes at offset 0");
        refuse(absl::InvalidArgumentError(absl::StrCat(
            "data plane: a push", part ? " part" : "", " of ", *payload, " bytes at offset ",
            request.offset_bytes(), "; job ", job_id, " takes ", wanted)));
        return;
      }
      if (session.gradients.size() != job.arena_size()) {
        session.gradients = Tensor({job.arena_size()});
      }
      if (absl::Status s = RecvAll(fd, reinterpret_cast<char*>(session.gradients.data()) + offset,
                                   *payload, deadline);
          !s.ok()) {
        return;  // truncated or too slow: what the job counted of it, it counts once
      }
      GradientPush gradient = PushOf(request.push(), &session.gradients);
      if (part) {
        // Counted as the gradient complete from here up (the job applies what every worker
        // has delivered); its error waits for the final push.
        gradient.ready_from = static_cast<int64_t>(offset / sizeof(float));
        if (session.part_error.ok()) session.part_error = job.PushGradients(gradient).status();
        session.parts_from = offset;
        session.parts_worker = worker_id;
        session.parts_clock = request.push().clock();
        continue;
      }
      absl::StatusOr<bool> duplicate =
          session.part_error.ok() ? job.PushGradients(gradient) : session.part_error;
      session.EndParts();
      v1::DataResponse response;
      if (duplicate.ok()) response.set_duplicate(*duplicate);
      if (!Answer(fd, duplicate.status(), false, response, nullptr, 0, deadline).ok()) return;
      continue;
    }

    const v1::PullParametersRequest& pull = request.pull();
    const uint64_t size = request.size_bytes() == 0 ? arena_bytes : request.size_bytes();
    if (*payload != 0 || pull.shared_memory() || request.offset_bytes() != 0 ||
        size != arena_bytes) {
      refuse(absl::InvalidArgumentError(absl::StrCat(
          "data plane: a pull of ", size, " bytes at offset ", request.offset_bytes(),
          " with a payload of ", *payload, " bytes; job ", job_id,
          " serves its whole arena of ", arena_bytes, " bytes at offset 0, without a payload")));
      return;
    }
    absl::StatusOr<ParameterSnapshot> snapshot =
        AwaitPull(job, worker_id, pull.min_version(), deadline, /*with_values=*/true, [&] {
          return stopping_.load() ? absl::UnavailableError("the server is shutting down")
                                  : absl::OkStatus();
        });
    v1::DataResponse response;
    absl::Status sent;
    if (!snapshot.ok()) {
      sent = Answer(fd, snapshot.status(), false, response, nullptr, 0, deadline);
    } else {
      response.set_version(snapshot->version);
      response.set_state(snapshot->state);
      response.set_offset_bytes(0);
      const Tensor* values = snapshot->values.get();
      const bool whole = values != nullptr &&
                         static_cast<uint64_t>(values->size()) * sizeof(float) == arena_bytes;
      // Straight from the published version, which the snapshot keeps alive meanwhile.
      sent = Answer(fd, absl::OkStatus(), false, response, whole ? values->data() : nullptr,
                    whole ? arena_bytes : 0, deadline);
    }
    if (!sent.ok()) return;
  }
}

}  // namespace psgrid
