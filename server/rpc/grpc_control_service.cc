#include "server/rpc/grpc_control_service.h"

#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "proto/grpc_status.h"
#include "proto/job_state.h"

namespace psgrid {
namespace {

// How long WatchJob waits for a change before it looks at cancellation and shutdown again.
constexpr absl::Duration kWatchPoll = absl::Seconds(1);

}  // namespace

GrpcControlService::GrpcControlService(JobManager* manager) : manager_(manager) {}

void GrpcControlService::BeginShutdown() { shutting_down_.store(true); }

grpc::Status GrpcControlService::SubmitJob(grpc::ServerContext* context,
                                           const v1::SubmitJobRequest* request,
                                           v1::SubmitJobResponse* response) {
  absl::StatusOr<std::string> id = manager_->Submit(request->spec());
  if (!id.ok()) return ToGrpcStatus(id.status());
  response->set_job_id(*std::move(id));
  return grpc::Status::OK;
}

grpc::Status GrpcControlService::GetJob(grpc::ServerContext* context,
                                        const v1::GetJobRequest* request, v1::JobStatus* response) {
  absl::StatusOr<std::shared_ptr<Job>> job = manager_->Get(request->job_id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response = (*job)->Status();
  return grpc::Status::OK;
}

grpc::Status GrpcControlService::ListJobs(grpc::ServerContext* context,
                                          const v1::ListJobsRequest* request,
                                          v1::ListJobsResponse* response) {
  for (const std::shared_ptr<Job>& job : manager_->List()) {
    *response->add_jobs() = job->Status();
  }
  return grpc::Status::OK;
}

grpc::Status GrpcControlService::WatchJob(grpc::ServerContext* context,
                                          const v1::WatchJobRequest* request,
                                          grpc::ServerWriter<v1::JobStatus>* writer) {
  absl::StatusOr<std::shared_ptr<Job>> found = manager_->Get(request->job_id());
  if (!found.ok()) return ToGrpcStatus(found.status());
  Job& job = **found;
  // Revision -1 never matches, so the first wait returns the current status and revision.
  int64_t revision = -1;
  v1::JobStatus status = job.WaitForChange(&revision, absl::Now());
  while (true) {
    if (!writer->Write(status)) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "the watcher went away");
    }
    if (IsEndedState(status.state())) return grpc::Status::OK;
    const int64_t seen = revision;
    while (revision == seen) {
      if (context->IsCancelled()) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "the watch was cancelled");
      }
      if (shutting_down_.load()) {
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down");
      }
      status = job.WaitForChange(&revision, absl::Now() + kWatchPoll);
    }
  }
}

grpc::Status GrpcControlService::StopJob(grpc::ServerContext* context,
                                         const v1::StopJobRequest* request,
                                         v1::JobStatus* response) {
  absl::StatusOr<std::shared_ptr<Job>> job = manager_->Get(request->job_id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  (*job)->Stop("stopped by the user");
  *response = (*job)->Status();
  return grpc::Status::OK;
}

}  // namespace psgrid
