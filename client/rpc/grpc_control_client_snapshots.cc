// ControlClient's snapshot and export calls (the rest is in grpc_control_client.cc).
#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "client/rpc/grpc_control_client.h"
#include "core/status_macros.h"
#include "core/tensor_codec.h"

namespace psgrid {
absl::StatusOr<v1::SnapshotInfo> ControlClient::TakeSnapshot(const std::string& job_id) {
  v1::TakeSnapshotRequest request;
  request.set_job_id(job_id);
  return Call(&v1::Control::Stub::TakeSnapshot, request, options_.snapshot_timeout);
}

absl::StatusOr<std::vector<v1::SnapshotInfo>> ControlClient::ListSnapshots(
    const std::string& job_id) {
  v1::ListSnapshotsRequest request;
  request.set_job_id(job_id);
  ASSIGN_OR_RETURN(v1::ListSnapshotsResponse response,
                   Call(&v1::Control::Stub::ListSnapshots, request, options_.rpc_timeout));
  return std::vector<v1::SnapshotInfo>(response.snapshots().begin(), response.snapshots().end());
}

absl::StatusOr<v1::SnapshotInfo> ControlClient::VerifySnapshot(const std::string& job_id,
                                                               const std::string& snapshot_id) {
  v1::VerifySnapshotRequest request;
  request.set_job_id(job_id);
  request.set_snapshot_id(snapshot_id);
  ASSIGN_OR_RETURN(v1::VerifySnapshotResponse response,
                   Call(&v1::Control::Stub::VerifySnapshot, request, options_.snapshot_timeout));
  return response.snapshot();
}

absl::StatusOr<v1::JobStatus> ControlClient::RestoreSnapshot(const std::string& job_id,
                                                             const std::string& snapshot_id) {
  v1::RestoreSnapshotRequest request;
  request.set_job_id(job_id);
  request.set_snapshot_id(snapshot_id);
  return Call(&v1::Control::Stub::RestoreSnapshot, request, options_.snapshot_timeout);
}

absl::StatusOr<ControlClient::Weights> ControlClient::ExportWeights(
    const std::string& job_id, const std::string& snapshot_id) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + options_.snapshot_timeout));
  v1::ExportWeightsRequest request;
  request.set_job_id(job_id);
  request.set_snapshot_id(snapshot_id);
  std::unique_ptr<grpc::ClientReader<v1::PullParametersResponse>> reader =
      stub_->ExportWeights(&context, request);
  Weights weights;
  NamedSliceAssembler assembler;
  absl::Status bad;
  bool first = true;
  v1::PullParametersResponse message;
  while (reader->Read(&message)) {
    if (first) weights.step = message.version();
    first = false;
    if (!bad.ok()) continue;  // draining after a bad slice
    for (const v1::TensorSlice& slice : message.slices()) {
      bad = assembler.Add(slice);
      if (!bad.ok()) {
        context.TryCancel();
        break;
      }
    }
  }
  const grpc::Status status = reader->Finish();
  if (!bad.ok()) {
    return absl::Status(bad.code(), absl::StrCat("weights from ", address_, ": ", bad.message()));
  }
  if (!status.ok()) return FromGrpc(status);
  absl::StatusOr<std::vector<std::pair<std::string, Tensor>>> tensors =
      std::move(assembler).Finish();
  if (!tensors.ok()) {
    return absl::Status(tensors.status().code(),
                        absl::StrCat("weights from ", address_, ": ", tensors.status().message()));
  }
  weights.tensors = std::move(*tensors);
  return weights;
}

}  // namespace psgrid
