#include "client/rpc/grpc_control_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "core/status_macros.h"
#include "proto/grpc_status.h"
#include "proto/job_state.h"

namespace psgrid {
namespace {

// Reconnection backoff of the channel: short, so that a client started just before its server
// (psgrid local, scripts) connects soon after the server listens.
constexpr int kReconnectBackoffMs = 100;
constexpr int kMaxReconnectBackoffMs = 1000;
// The deadline of a watch: far ahead (a job may train for days); silence is bounded separately.
constexpr absl::Duration kWatchDeadline = absl::Hours(24 * 30);

void SetTimeout(grpc::ClientContext* context, absl::Duration timeout) {
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ControlClient>> ControlClient::Connect(
    const std::string& address, absl::Duration connect_timeout, ControlClientOptions options) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kReconnectBackoffMs);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, kReconnectBackoffMs);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kMaxReconnectBackoffMs);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  const absl::Time deadline = absl::Now() + std::max(connect_timeout, absl::ZeroDuration());
  if (!channel->WaitForConnected(absl::ToChronoTime(deadline))) {
    return absl::UnavailableError(absl::StrFormat(
        "cannot reach the psgrid server at %s (no answer within %gs); is it running? "
        "(set the address with --server or PSGRID_SERVER)",
        address, absl::ToDoubleSeconds(connect_timeout)));
  }
  return std::unique_ptr<ControlClient>(
      new ControlClient(address, std::move(channel), std::move(options)));
}

ControlClient::ControlClient(std::string address, std::shared_ptr<grpc::Channel> channel,
                             ControlClientOptions options)
    : address_(std::move(address)),
      options_(std::move(options)),
      channel_(std::move(channel)),
      stub_(v1::Control::NewStub(channel_)) {}

absl::Status ControlClient::FromGrpc(const grpc::Status& status) const {
  if (status.ok()) return absl::OkStatus();
  const absl::Status plain = FromGrpcStatus(status);
  switch (plain.code()) {
    case absl::StatusCode::kUnavailable:
      return absl::UnavailableError(absl::StrCat("the psgrid server at ", address_,
                                                 " is unavailable: ", status.error_message()));
    case absl::StatusCode::kDeadlineExceeded:
      return absl::DeadlineExceededError(absl::StrCat(
          "the psgrid server at ", address_, " did not answer in time: ", status.error_message()));
    default:
      return plain;
  }
}

absl::StatusOr<std::string> ControlClient::Submit(const v1::JobSpec& spec) {
  v1::SubmitJobRequest request;
  *request.mutable_spec() = spec;
  ASSIGN_OR_RETURN(v1::SubmitJobResponse response,
                   Call(&v1::Control::Stub::SubmitJob, request, options_.submit_timeout));
  return response.job_id();
}

absl::StatusOr<v1::JobStatus> ControlClient::Get(const std::string& job_id) {
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  return Call(&v1::Control::Stub::GetJob, request, options_.rpc_timeout);
}

absl::StatusOr<std::vector<v1::JobStatus>> ControlClient::List() {
  ASSIGN_OR_RETURN(v1::ListJobsResponse response,
                   Call(&v1::Control::Stub::ListJobs, v1::ListJobsRequest(), options_.rpc_timeout));
  return std::vector<v1::JobStatus>(response.jobs().begin(), response.jobs().end());
}

absl::StatusOr<v1::JobStatus> ControlClient::Stop(const std::string& job_id) {
  v1::StopJobRequest request;
  request.set_job_id(job_id);
  return Call(&v1::Control::Stub::StopJob, request, options_.rpc_timeout);
}

absl::StatusOr<v1::JobStatus> ControlClient::Watch(const std::string& job_id,
                                                   const WatchCallback& on_status) {
  grpc::ClientContext context;
  SetTimeout(&context, kWatchDeadline);
  v1::WatchJobRequest request;
  request.set_job_id(job_id);
  std::unique_ptr<grpc::ClientReader<v1::JobStatus>> reader = stub_->WatchJob(&context, request);

  // The watchdog: when the stream has been silent for watch_inactivity, asks GetJob whether the
  // server still answers; cancels the stream when it does not.
  absl::Mutex mu;
  absl::Time last_message = absl::Now();  // guarded by mu
  bool done = false;                      // guarded by mu
  std::string give_up_reason;             // guarded by mu
  std::thread watchdog([&] {
    while (true) {
      {
        absl::MutexLock lock(&mu);
        if (mu.AwaitWithDeadline(absl::Condition(&done),
                                 last_message + options_.watch_inactivity)) {
          return;
        }
        if (absl::Now() - last_message < options_.watch_inactivity) continue;
      }
      absl::StatusOr<v1::JobStatus> probe = Get(job_id);
      absl::MutexLock lock(&mu);
      if (done) return;
      if (probe.ok()) {
        last_message = absl::Now();  // quiet, not gone: a pending job sends nothing for a while
        continue;
      }
      give_up_reason = absl::StrFormat(
          "no news of job %s from the psgrid server at %s for %gs (%s)", job_id, address_,
          absl::ToDoubleSeconds(options_.watch_inactivity), probe.status().message());
      context.TryCancel();
      return;
    }
  });

  v1::JobStatus status;
  v1::JobStatus last;
  bool ended = false;
  bool stopped_by_caller = false;
  while (reader->Read(&status)) {
    {
      absl::MutexLock lock(&mu);
      last_message = absl::Now();
    }
    last = status;
    if (!on_status(status)) {
      stopped_by_caller = true;
      break;
    }
    if (IsEndedState(status.state())) {
      ended = true;
      break;
    }
  }
  // The server closes the stream after the final status; cancelling makes sure Finish returns
  // at once whatever the reason we left the loop.
  if (ended || stopped_by_caller) context.TryCancel();
  {
    absl::MutexLock lock(&mu);
    done = true;
  }
  watchdog.join();
  const grpc::Status finish = reader->Finish();
  if (ended || stopped_by_caller) return last;
  if (!give_up_reason.empty()) return absl::DeadlineExceededError(give_up_reason);
  if (!finish.ok()) return FromGrpc(finish);
  return absl::UnavailableError(absl::StrCat("the psgrid server at ", address_,
                                             " ended the watch before job ", job_id, " ended"));
}

}  // namespace psgrid
