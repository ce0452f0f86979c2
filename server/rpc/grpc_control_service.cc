#include "server/rpc/grpc_control_service.h"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/tensor_codec.h"
#include "proto/grpc_status.h"
#include "server/rpc/call_deadline.h"
#include "proto/job_state.h"

namespace psgrid {
namespace {

// How long WatchJob waits for a change before it looks at cancellation and shutdown again.
constexpr absl::Duration kWatchPoll = absl::Seconds(1);
// How long TakeSnapshot waits when the call itself has no deadline.
constexpr absl::Duration kDefaultSnapshotWait = absl::Minutes(10);

v1::SnapshotInfo ToProto(const std::string& job_id, const SnapshotInfo& info) {
  v1::SnapshotInfo out;
  out.set_job_id(job_id);
  out.set_snapshot_id(info.id);
  out.set_step(info.step);
  out.set_created(info.created);
  out.set_bytes(info.bytes);
  return out;
}

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

grpc::Status GrpcControlService::TakeSnapshot(grpc::ServerContext* context,
                                              const v1::TakeSnapshotRequest* request,
                                              v1::SnapshotInfo* response) {
  absl::StatusOr<std::shared_ptr<Job>> job = manager_->Get(request->job_id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  absl::StatusOr<SnapshotInfo> info =
      (*job)->TakeSnapshot(CallDeadline(context, kDefaultSnapshotWait));
  if (!info.ok()) return ToGrpcStatus(info.status());
  *response = ToProto(request->job_id(), *info);
  return grpc::Status::OK;
}

grpc::Status GrpcControlService::ListSnapshots(grpc::ServerContext* context,
                                               const v1::ListSnapshotsRequest* request,
                                               v1::ListSnapshotsResponse* response) {
  absl::StatusOr<std::shared_ptr<Job>> job = manager_->Get(request->job_id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  absl::StatusOr<std::vector<SnapshotInfo>> all = (*job)->ListSnapshots();
  if (!all.ok()) return ToGrpcStatus(all.status());
  for (const SnapshotInfo& info : *all) *response->add_snapshots() = ToProto(request->job_id(), info);
  return grpc::Status::OK;
}

grpc::Status GrpcControlService::VerifySnapshot(grpc::ServerContext* context,
                                                const v1::VerifySnapshotRequest* request,
                                                v1::VerifySnapshotResponse* response) {
  absl::StatusOr<std::shared_ptr<Job>> job = manager_->Get(request->job_id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  if (absl::Status s = (*job)->VerifySnapshot(request->snapshot_id()); !s.ok()) {
    return ToGrpcStatus(s);
  }
  absl::StatusOr<std::vector<SnapshotInfo>> all = (*job)->ListSnapshots();
  if (!all.ok()) return ToGrpcStatus(all.status());
  for (const SnapshotInfo& info : *all) {
    if (info.id == request->snapshot_id()) *response->mutable_snapshot() = ToProto(request->job_id(), info);
  }
  return grpc::Status::OK;
}

grpc::Status GrpcControlService::RestoreSnapshot(grpc::ServerContext* context,
                                                 const v1::RestoreSnapshotRequest* request,
                                                 v1::JobStatus* response) {
  if (absl::Status s = manager_->RestoreSnapshot(request->job_id(), request->snapshot_id());
      !s.ok()) {
    return ToGrpcStatus(s);
  }
  absl::StatusOr<std::shared_ptr<Job>> job = manager_->Get(request->job_id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  *response = (*job)->Status();
  return grpc::Status::OK;
}

grpc::Status GrpcControlService::ExportWeights(
    grpc::ServerContext* context, const v1::ExportWeightsRequest* request,
    grpc::ServerWriter<v1::PullParametersResponse>* writer) {
  absl::StatusOr<std::shared_ptr<Job>> job = manager_->Get(request->job_id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  absl::StatusOr<NamedWeights> weights = (*job)->Weights(request->snapshot_id());
  if (!weights.ok()) return ToGrpcStatus(weights.status());
  v1::PullParametersResponse message;
  message.set_version(weights->step);
  message.set_state((*job)->Status().state());
  bool ok = true;
  for (const auto& [name, tensor] : weights->tensors) {
    ParamInfo info;
    info.name = name;
    info.shape = tensor.shape();
    info.offset = 0;
    info.size = tensor.size();
    EncodeSlices({info}, tensor.data(), kDefaultChunkBytes,
                 [&](std::vector<v1::TensorSlice>&& group) {
                   for (v1::TensorSlice& slice : group) *message.add_slices() = std::move(slice);
                   ok = writer->Write(message);
                   message.Clear();
                   return ok;
                 });
    if (!ok) return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
  }
  if (weights->tensors.empty() && !writer->Write(message)) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
  }
  return grpc::Status::OK;
}

}  // namespace psgrid
