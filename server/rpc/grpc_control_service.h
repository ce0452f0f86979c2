// GrpcControlService: psgrid.v1.Control (submit, inspect, watch and stop jobs) over a
// JobManager. Thin: it translates requests and answers; the jobs hold all the logic.
//
// Thread-safe: gRPC calls its methods from many threads at once. The manager is borrowed and
// must outlive the service.
#ifndef PSGRID_SERVER_RPC_GRPC_CONTROL_SERVICE_H_
#define PSGRID_SERVER_RPC_GRPC_CONTROL_SERVICE_H_

#include <atomic>

#include "absl/time/time.h"
#include "psgrid/v1/service.grpc.pb.h"
#include "server/job_manager.h"

namespace psgrid {

class GrpcControlService final : public v1::Control::Service {
 public:
  explicit GrpcControlService(JobManager* manager);

  // Makes running WatchJob calls return (UNAVAILABLE) within about a second, so that the
  // server's shutdown does not wait for them. Call before grpc::Server::Shutdown.
  void BeginShutdown();

  grpc::Status SubmitJob(grpc::ServerContext* context, const v1::SubmitJobRequest* request,
                         v1::SubmitJobResponse* response) override;
  grpc::Status GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request,
                      v1::JobStatus* response) override;
  grpc::Status ListJobs(grpc::ServerContext* context, const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override;
  // The status at once, then each new one, until the job ends (the last message carries the
  // final state), the client cancels or the server shuts down.
  grpc::Status WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest* request,
                        grpc::ServerWriter<v1::JobStatus>* writer) override;
  grpc::Status StopJob(grpc::ServerContext* context, const v1::StopJobRequest* request,
                       v1::JobStatus* response) override;
  grpc::Status TakeSnapshot(grpc::ServerContext* context, const v1::TakeSnapshotRequest* request,
                            v1::SnapshotInfo* response) override;
  grpc::Status ListSnapshots(grpc::ServerContext* context,
                             const v1::ListSnapshotsRequest* request,
                             v1::ListSnapshotsResponse* response) override;
  grpc::Status VerifySnapshot(grpc::ServerContext* context,
                              const v1::VerifySnapshotRequest* request,
                              v1::VerifySnapshotResponse* response) override;
  grpc::Status RestoreSnapshot(grpc::ServerContext* context,
                               const v1::RestoreSnapshotRequest* request,
                               v1::JobStatus* response) override;
  grpc::Status ExportWeights(grpc::ServerContext* context, const v1::ExportWeightsRequest* request,
                             grpc::ServerWriter<v1::PullParametersResponse>* writer) override;

 private:
  JobManager* const manager_;
  std::atomic<bool> shutting_down_{false};
};

}  // namespace psgrid

#endif  // PSGRID_SERVER_RPC_GRPC_CONTROL_SERVICE_H_
