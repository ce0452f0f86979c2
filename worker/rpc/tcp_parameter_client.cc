#include "worker/rpc/tcp_parameter_client.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "proto/data_frame.h"
#include "proto/job_state.h"
#include "proto/socket_io.h"

namespace psgrid {
namespace {

// A call without a deadline still gets one.
constexpr absl::Duration kLongestCall = absl::Minutes(10);

absl::Time Bounded(absl::Time deadline) {
  return std::min(deadline, absl::Now() + kLongestCall);
}

// The data plane's address, with the control plane's host for a wildcard one (a server that
// listens on every interface advertises 0.0.0.0).
std::string DataAddress(const std::string& offered, const std::string& control_address) {
  std::string host, control_host;
  int port = 0, control_port = 0;
  if (!SplitHostPort(offered, &host, &port).ok()) return offered;
  if (host != "0.0.0.0" && host != "::" && !host.empty()) return offered;
  if (!SplitHostPort(control_address, &control_host, &control_port).ok()) return offered;
  if (control_host.find(':') != std::string::npos) control_host = absl::StrCat("[", control_host, "]");
  return absl::StrCat(control_host, ":", port);
}

}  // namespace

TcpParameterClient::TcpParameterClient(std::unique_ptr<GrpcParameterClient> control,
                                       TcpClientOptions options)
    : control_(std::move(control)), options_(options) {}

TcpParameterClient::~TcpParameterClient() {
  std::unique_ptr<PartPush> parts;
  {
    absl::MutexLock lock(&parts_mu_);
    parts = std::move(parts_);
  }
  uint64_t connection = 0;
  if (parts != nullptr) FinishParts(std::move(parts), &connection);
  absl::MutexLock lock(&mu_);
  CloseLocked();
}

int64_t TcpParameterClient::parts_sent() const {
  absl::MutexLock lock(&mu_);
  return parts_sent_;
}

bool TcpParameterClient::data_plane_active() const {
  absl::MutexLock lock(&mu_);
  return !data_address_.empty() && !shared_memory_;
}

void TcpParameterClient::CloseLocked() {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

absl::Status TcpParameterClient::ConnectLocked(absl::Time deadline) {
  CloseLocked();
  ASSIGN_OR_RETURN(fd_, ConnectTcp(data_address_,
                                   std::min(deadline, absl::Now() + options_.connect_timeout)));
  ++connection_;
  return absl::OkStatus();
}

absl::StatusOr<v1::RegisterWorkerResponse> TcpParameterClient::Register(
    const std::string& job_id, const std::string& worker_name, absl::Time deadline) {
  ASSIGN_OR_RETURN(v1::RegisterWorkerResponse response,
                   control_->Register(job_id, worker_name, deadline));
  absl::MutexLock lock(&mu_);
  CloseLocked();
  shared_memory_ = false;
  data_address_.clear();
  token_ = response.data_token();
  if (response.data_address().empty()) {
    if (options_.required) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the parameter server at ", control_->address(),
          " offers no data plane (--transport tcp; psgrid-server --data-listen)"));
    }
    return response;
  }
  data_address_ = DataAddress(response.data_address(), control_->address());
  if (absl::Status s = ConnectLocked(Bounded(deadline)); !s.ok()) {
    const std::string address = data_address_;
    data_address_.clear();
    if (options_.required) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot reach the data plane at ", address, ": ", s.message()));
    }
    if (!options_.quiet) {
      std::fprintf(stderr,
                   "psgrid-worker: warning: cannot reach the data plane at %s (%s); pushing "
                   "and pulling over gRPC\n",
                   address.c_str(), std::string(s.message()).c_str());
    }
  }
  return response;
}

absl::StatusOr<uint64_t> TcpParameterClient::ExchangeLocked(
    v1::DataRequest* request, const void* payload, uint64_t payload_bytes,
    uint64_t fresh_payload_bytes, absl::Time deadline, v1::DataResponse* response,
    bool* unusable) {
  request->set_token(token_);
  absl::Status last;
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (fd_ < 0) {
      last = ConnectLocked(deadline);
      if (!last.ok()) {
        *unusable = true;  // gone (a restarted server listens elsewhere)
        break;
      }
      payload_bytes = fresh_payload_bytes;
    }
    request->set_deadline_ms(
        std::max<int64_t>(1, absl::ToInt64Milliseconds(deadline - absl::Now())));
    last = WriteDataFrame(fd_, *request, payload, payload_bytes, deadline);
    absl::StatusOr<uint64_t> answer = absl::UnknownError("");
    if (last.ok()) {
      response->Clear();
      answer = ReadDataFrameHeader(fd_, response, deadline,
                                   std::max(deadline - absl::Now(), absl::ZeroDuration()));
      last = answer.status();
    }
    if (last.ok()) {
      if (response->closing()) CloseLocked();
      const auto code = static_cast<absl::StatusCode>(response->code());
      // A server that does not know this worker's token (one restarted since it registered).
      *unusable = response->closing() && (code == absl::StatusCode::kNotFound ||
                                          code == absl::StatusCode::kPermissionDenied);
      if (response->code() != 0) {
        return absl::Status(static_cast<absl::StatusCode>(response->code()),
                            absl::StrCat("data plane at ", data_address_, ": ",
                                         response->message()));
      }
      return *answer;
    }
    // The connection's state is unknown now: it goes. A broken one is reopened once (a push
    // sent twice is counted once: the server answers the second as a duplicate).
    CloseLocked();
    if (last.code() != absl::StatusCode::kUnavailable || absl::Now() >= deadline) break;
  }
  return absl::Status(last.code(), absl::StrCat("data plane at ", data_address_, ": ",
                                                last.message()));
}

void TcpParameterClient::FallBackLocked(const absl::Status& why) {
  if (!options_.quiet) {
    std::fprintf(stderr,
                 "psgrid-worker: warning: the data plane is unusable (%s); pushing and pulling "
                 "over gRPC from now on\n",
                 std::string(why.message()).c_str());
  }
  CloseLocked();
  data_address_.clear();
}

void TcpParameterClient::SendParts(PartPush* parts) {
  while (true) {
    int64_t from, to;
    {
      absl::MutexLock lock(&parts->mu);
      auto due = [parts]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(parts->mu) {
        return parts->finishing || (parts->ready > 0 && parts->ready < parts->sent);
      };
      parts->mu.Await(absl::Condition(&due));
      // What is complete when Push comes goes with its final frame.
      if (parts->finishing) return;
      from = parts->ready;
      to = parts->sent;
    }
    absl::Status sent = absl::UnavailableError("the connection the parts began on is gone");
    {
      absl::MutexLock lock(&mu_);
      if (fd_ >= 0 && connection_ == parts->connection) {
        sent = WritePartLocked(parts->header, parts->gradients, from, to, parts->deadline);
      }
    }
    absl::MutexLock lock(&parts->mu);
    if (!sent.ok()) {
      parts->failed = true;
      return;
    }
    parts->sent = from;
  }
}

absl::Status TcpParameterClient::WritePartLocked(const v1::PushHeader& header,
                                                const float* gradients, int64_t from,
                                                int64_t to, absl::Time deadline) {
  v1::DataRequest request;
  *request.mutable_push() = header;
  request.set_token(token_);
  request.set_part(true);
  request.set_offset_bytes(from * static_cast<int64_t>(sizeof(float)));
  request.set_deadline_ms(std::max<int64_t>(1, absl::ToInt64Milliseconds(deadline - absl::Now())));
  absl::Status sent = WriteDataFrame(fd_, request, gradients + from,
                                     static_cast<uint64_t>(to - from) * sizeof(float), deadline);
  if (sent.ok()) {
    ++parts_sent_;
  } else {
    CloseLocked();  // Push reconnects and sends the whole gradient
  }
  return sent;
}

int64_t TcpParameterClient::FinishParts(std::unique_ptr<PartPush> parts, uint64_t* connection) {
  {
    absl::MutexLock lock(&parts->mu);
    parts->finishing = true;
  }
  parts->thread.join();
  absl::MutexLock lock(&parts->mu);
  *connection = parts->connection;
  return parts->failed ? parts->arena : parts->sent;
}

void TcpParameterClient::PushPart(const v1::PushHeader& header,
                                  const std::vector<ParamInfo>& layout, const Tensor& gradients,
                                  int64_t ready_from, absl::Time deadline) {
  if (ready_from <= 0) return;
  absl::MutexLock parts_lock(&parts_mu_);
  if (parts_ != nullptr) {
    if (parts_->header.clock() == header.clock() && parts_->header.step() == header.step() &&
        parts_->gradients == gradients.data()) {
      absl::MutexLock lock(&parts_->mu);
      parts_->ready = std::min(parts_->ready, ready_from);
      return;
    }
    uint64_t connection = 0;  // a step that never pushed: its parts are dropped
    FinishParts(std::move(parts_), &connection);
  }
  uint64_t connection = 0;
  {
    absl::MutexLock lock(&mu_);
    if (data_address_.empty() || shared_memory_) {
      // Shared memory or gRPC: their own parts.
      control_->PushPart(header, layout, gradients, ready_from, deadline);
      return;
    }
    // Push sends it whole (and says why, when the arena is short).
    if (fd_ < 0 || gradients.size() < LayoutSize(layout) || !WorthSendingEarly(layout)) return;
    connection = connection_;
  }
  auto parts = std::make_unique<PartPush>();
  parts->header = header;
  parts->gradients = gradients.data();
  parts->arena = gradients.size();
  parts->deadline = Bounded(deadline);
  parts->connection = connection;
  {
    absl::MutexLock lock(&parts->mu);
    parts->ready = std::min(ready_from, parts->arena);
    parts->sent = parts->arena;
  }
  PartPush* raw = parts.get();
  parts->thread = std::thread([this, raw] { SendParts(raw); });
  parts_ = std::move(parts);
}

absl::StatusOr<v1::PushGradientsResponse> TcpParameterClient::Push(
    const v1::PushHeader& header, const std::vector<ParamInfo>& layout, const Tensor& gradients,
    absl::Time deadline) {
  // Where this step's parts begin (on which connection): the final frame carries the rest.
  int64_t sent = gradients.size();
  uint64_t parts_connection = 0;
  {
    absl::MutexLock parts_lock(&parts_mu_);
    if (parts_ != nullptr) {
      const bool same = parts_->header.clock() == header.clock() &&
                        parts_->header.step() == header.step() &&
                        parts_->gradients == gradients.data() &&
                        parts_->arena == gradients.size();
      const int64_t from = FinishParts(std::move(parts_), &parts_connection);
      if (same) sent = from;
    }
  }
  {
    absl::MutexLock lock(&mu_);
    if (!data_address_.empty() && !shared_memory_) {
      if (gradients.size() < LayoutSize(layout)) {
        return absl::InvalidArgumentError(
            absl::StrCat("push of step ", header.step(), ": a gradient arena of ",
                         gradients.size(), " floats, the layout needs ", LayoutSize(layout)));
      }
      const uint64_t whole = static_cast<uint64_t>(gradients.size()) * sizeof(float);
      const absl::Time bounded = Bounded(deadline);
      // Parts went on this very connection: the rest; else (none, or another connection) all.
      const bool after_parts = sent < gradients.size() && fd_ >= 0 &&
                               connection_ == parts_connection;
      int64_t rest = after_parts ? sent : gradients.size();
      // A large rest streams in parts too, so that the server's check and update of each
      // range overlap the transfer of the next. A failed write closed the connection: the
      // exchange then opens a new one and sends everything.
      const int64_t part = std::max<int64_t>(1, options_.stream_part_floats);
      while (fd_ >= 0 && rest > 2 * part) {
        const int64_t from = rest - part;
        if (!WritePartLocked(header, gradients.data(), from, rest, bounded).ok()) break;
        rest = from;
      }
      v1::DataRequest request;
      *request.mutable_push() = header;
      request.set_offset_bytes(0);
      v1::DataResponse response;
      bool unusable = false;
      absl::StatusOr<uint64_t> payload =
          ExchangeLocked(&request, gradients.data(), static_cast<uint64_t>(rest) * sizeof(float),
                         whole, bounded, &response, &unusable);
      if (payload.ok() && *payload != 0) {
        CloseLocked();
        return absl::InternalError(absl::StrCat("data plane at ", data_address_,
                                                ": a push answered with a payload"));
      }
      if (payload.ok()) {
        v1::PushGradientsResponse result;
        result.set_duplicate(response.duplicate());
        return result;
      }
      if (!unusable) return payload.status();
      FallBackLocked(payload.status());
    }
  }
  return control_->Push(header, layout, gradients, deadline);
}

absl::StatusOr<PullResult> TcpParameterClient::Pull(const std::string& job_id,
                                                    const std::string& worker_id,
                                                    int64_t min_version,
                                                    const std::vector<ParamInfo>& layout,
                                                    Tensor* values, absl::Time deadline) {
  {
    absl::MutexLock lock(&mu_);
    if (!data_address_.empty() && !shared_memory_) {
      const int64_t needed = LayoutSize(layout);
      if (values->size() < needed) {
        return absl::InvalidArgumentError(absl::StrCat("pull: a parameter arena of ",
                                                       values->size(),
                                                       " floats, the layout needs ", needed));
      }
      const absl::Time bounded = Bounded(deadline);
      v1::DataRequest request;
      v1::PullParametersRequest* pull = request.mutable_pull();
      pull->set_job_id(job_id);
      pull->set_worker_id(worker_id);
      pull->set_min_version(min_version);
      v1::DataResponse response;
      bool unusable = false;
      absl::StatusOr<uint64_t> payload =
          ExchangeLocked(&request, nullptr, 0, 0, bounded, &response, &unusable);
      if (payload.ok()) return ReadParametersLocked(response, *payload, needed, values, bounded);
      if (!unusable) return payload.status();
      FallBackLocked(payload.status());
    }
  }
  return control_->Pull(job_id, worker_id, min_version, layout, values, deadline);
}

absl::StatusOr<PullResult> TcpParameterClient::ReadParametersLocked(
    const v1::DataResponse& response, uint64_t payload, int64_t needed, Tensor* values,
    absl::Time deadline) {
  PullResult result{response.version(), response.state()};
  if (payload == 0 && IsEndedState(result.state)) return result;
  const uint64_t capacity = static_cast<uint64_t>(values->size()) * sizeof(float);
  const int64_t offset = response.offset_bytes();
  if (payload % sizeof(float) != 0 || offset != 0 ||
      payload < static_cast<uint64_t>(needed) * sizeof(float) || payload > capacity) {
    CloseLocked();  // the rest of the frame is not read
    return absl::InternalError(absl::StrCat(
        "data plane at ", data_address_, ": parameters of ", payload, " bytes at offset ",
        offset, " for an arena of ", capacity, " bytes whose tensors need ",
        needed * sizeof(float)));
  }
  if (absl::Status s = RecvAll(fd_, values->data(), payload, deadline); !s.ok()) {
    CloseLocked();
    return absl::Status(s.code(), absl::StrCat("data plane at ", data_address_,
                                                ": parameters: ", s.message()));
  }
  return result;
}

absl::StatusOr<SharedArenas> TcpParameterClient::UseSharedMemory(const std::string& job_id,
                                                                 const std::string& worker_id,
                                                                 absl::Time deadline) {
  ASSIGN_OR_RETURN(SharedArenas arenas, control_->UseSharedMemory(job_id, worker_id, deadline));
  absl::MutexLock lock(&mu_);
  shared_memory_ = true;  // better than any socket on one machine
  CloseLocked();
  return arenas;
}

absl::Status TcpParameterClient::ReportMetrics(const v1::ReportMetricsRequest& request,
                                               absl::Time deadline) {
  return control_->ReportMetrics(request, deadline);
}

absl::StatusOr<v1::JobState> TcpParameterClient::Heartbeat(const std::string& job_id,
                                                           const std::string& worker_id,
                                                           absl::Time deadline) {
  return control_->Heartbeat(job_id, worker_id, deadline);
}

absl::StatusOr<v1::HeartbeatResponse> TcpParameterClient::CheckIn(const std::string& job_id,
                                                                  const std::string& worker_id,
                                                                  absl::Time deadline) {
  return control_->CheckIn(job_id, worker_id, deadline);
}

}  // namespace psgrid
