// GrpcParameterService: psgrid.v1.Parameters (what workers call: join a job, push gradients,
// pull parameters, report metrics, heartbeat) over a JobManager. Parameter sets travel as
// streams of typed TensorSlice messages (core/tensor_codec.h) of at most about 1 MiB of data.
//
// Thread-safe: gRPC calls its methods from many threads at once. The manager is borrowed and
// must outlive the service.
#ifndef PSGRID_SERVER_RPC_GRPC_PARAMETER_SERVICE_H_
#define PSGRID_SERVER_RPC_GRPC_PARAMETER_SERVICE_H_

#include <atomic>

#include "absl/time/time.h"
#include "psgrid/v1/service.grpc.pb.h"
#include "server/job_manager.h"

namespace psgrid {

class DataPlaneServer;

class GrpcParameterService final : public v1::Parameters::Service {
 public:
  // `data_plane` (borrowed, may be null: none) is offered to registering workers.
  explicit GrpcParameterService(JobManager* manager, DataPlaneServer* data_plane = nullptr);

  // Makes waiting RegisterWorker and PullParameters calls return (UNAVAILABLE) within about a
  // second, so that the server's shutdown does not wait for them.
  void BeginShutdown();

  // Waits up to 30 s (or the call's deadline, if sooner) for a job that needs a worker.
  // NOT_FOUND for an unknown job id, or when no job needed a worker in that time.
  grpc::Status RegisterWorker(grpc::ServerContext* context,
                              const v1::RegisterWorkerRequest* request,
                              v1::RegisterWorkerResponse* response) override;
  // The first message must carry the header; the slices of all messages together must cover
  // every tensor of the job's layout exactly once. A rejected push changes nothing.
  grpc::Status PushGradients(grpc::ServerContext* context,
                             grpc::ServerReader<v1::PushGradientsRequest>* reader,
                             v1::PushGradientsResponse* response) override;
  // Waits (up to the call's deadline, or 60 s without one) for min_version, then streams
  // {version, state} followed by the slices of every parameter.
  grpc::Status OpenSharedMemory(grpc::ServerContext* context,
                                const v1::OpenSharedMemoryRequest* request,
                                v1::OpenSharedMemoryResponse* response) override;
  grpc::Status SharedMemorySteps(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::PullParametersResponse, v1::PushHeader>* stream) override;
  grpc::Status PullParameters(grpc::ServerContext* context,
                              const v1::PullParametersRequest* request,
                              grpc::ServerWriter<v1::PullParametersResponse>* writer) override;
  grpc::Status ReportMetrics(grpc::ServerContext* context, const v1::ReportMetricsRequest* request,
                             v1::ReportMetricsResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext* context, const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override;

 private:
  // CANCELLED or UNAVAILABLE when a waiting call should give up now; OK otherwise.
  grpc::Status ShouldStopWaiting(grpc::ServerContext* context) const;

  JobManager* const manager_;
  DataPlaneServer* const data_plane_;
  std::atomic<bool> shutting_down_{false};
  // Step streams serving a worker's doorbell now: they poll for gradient parts only while
  // there are cores for it (two busy threads per shared-memory worker: it and its stream).
  std::atomic<int> active_doorbells_{0};
};

}  // namespace psgrid

#endif  // PSGRID_SERVER_RPC_GRPC_PARAMETER_SERVICE_H_
