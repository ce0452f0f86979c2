// GrpcParameterClient: the ParameterClient that talks to a psgrid parameter server over gRPC
// (service psgrid.v1.Parameters).
//
//   ASSIGN_OR_RETURN(auto client, GrpcParameterClient::Connect("127.0.0.1:7070",
//   absl::Seconds(30))); Worker worker(client.get(), backend.get(), options);
//
// Gradients and parameters travel as typed tensor slices (core/tensor_codec.h), about 1 MiB of
// tensor data per stream message. gRPC errors come back as absl::Status with the same code and
// message. Thread-safe: every method may be called from any thread (the gRPC stub is).
#ifndef PSGRID_WORKER_RPC_GRPC_PARAMETER_CLIENT_H_
#define PSGRID_WORKER_RPC_GRPC_PARAMETER_CLIENT_H_

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/shared_region.h"
#include "core/step_doorbell.h"
#include "psgrid/v1/service.grpc.pb.h"
#include "worker/parameter_client.h"
#include "worker/rpc/gradient_sender.h"

namespace psgrid {

class GrpcParameterClient : public ParameterClient {
 public:
  // Opens an insecure channel to `address` (host:port) and waits until it is ready, retrying
  // with backoff for up to `connect_timeout`. UNAVAILABLE naming the address when the server
  // cannot be reached by then.
  static absl::StatusOr<std::unique_ptr<GrpcParameterClient>> Connect(
      const std::string& address, absl::Duration connect_timeout);

  ~GrpcParameterClient() override { CloseStepStream(); }

  const std::string& address() const { return address_; }

  // Waits for the server (wait-for-ready) and for a job until `deadline`.
  absl::StatusOr<v1::RegisterWorkerResponse> Register(const std::string& job_id,
                                                      const std::string& worker_name,
                                                      absl::Time deadline) override;
  // Sends the header in the first stream message, then the gradient arena as slice groups.
  // INVALID_ARGUMENT when `gradients` does not hold every tensor of `layout`.
  absl::StatusOr<v1::PushGradientsResponse> Push(const v1::PushHeader& header,
                                                 const std::vector<ParamInfo>& layout,
                                                 const Tensor& gradients,
                                                 absl::Time deadline) override;
  // Assembles the streamed slices into *values, which must hold every tensor of `layout`. On an
  // error *values may hold a mix of old and new parameters (a retry overwrites them all).
  // When the job has ended the server may send no slices: *values is then left as it was.
  absl::StatusOr<PullResult> Pull(const std::string& job_id, const std::string& worker_id,
                                  int64_t min_version, const std::vector<ParamInfo>& layout,
                                  Tensor* values, absl::Time deadline) override;
  absl::Status ReportMetrics(const v1::ReportMetricsRequest& request, absl::Time deadline) override;
  absl::StatusOr<v1::JobState> Heartbeat(const std::string& job_id, const std::string& worker_id,
                                         absl::Time deadline) override;
  absl::StatusOr<v1::HeartbeatResponse> CheckIn(const std::string& job_id,
                                                const std::string& worker_id,
                                                absl::Time deadline) override;
  // Maps the segments the server created for this worker; pushes and pulls then carry only
  // their headers over gRPC. Not to be called concurrently with Push or Pull. Called again
  // (after the server restarted), it drops the old segments and step stream first.
  absl::StatusOr<SharedArenas> UseSharedMemory(const std::string& job_id,
                                               const std::string& worker_id,
                                               absl::Time deadline) override;
  // Through shared memory, a part rings the doorbell; over the network, the first part opens
  // the push and a GradientSender writes the complete tensors while backward goes on.
  bool TakesGradientParts() const override { return true; }
  void PushPart(const v1::PushHeader& header, const std::vector<ParamInfo>& layout,
                const Tensor& gradients, int64_t ready_from, absl::Time deadline) override;

 private:
  GrpcParameterClient(std::string address, std::shared_ptr<grpc::Channel> channel);

  const std::string address_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Parameters::Stub> stub_;
  // Set by UseSharedMemory; used by Push (gradient) and Pull (parameters).
  std::unique_ptr<SharedRegion> gradient_region_;
  std::unique_ptr<SharedRegion> parameter_region_;

  // Shared-memory steps go through the doorbell, while one SharedMemorySteps stream attaches
  // it on the server; the stream is renewed before its deadline (kStepStreamLifetime) runs
  // out, so that every wait stays bounded. A Push rings; the Pull that follows awaits the
  // answer.
  absl::Status OpenStepStream(const std::string& job_id, const std::string& worker_id);
  void CloseStepStream();
  // Ends the stream without the close handshake (cancelling the call when asked).
  void DropStepStream(bool cancel);
  // The answer to the pending ring, waiting in slices while the connection is up.
  absl::StatusOr<DoorbellAnswer> AwaitStepAnswer(absl::Time deadline);
  // The parameter segment into *values (nothing to copy when *values is the segment).
  absl::Status CopySharedParameters(Tensor* values) const;
  std::unique_ptr<StepDoorbell> doorbell_;
  // The network push under way while backward runs (PushPart), finished by Push.
  std::unique_ptr<GradientSender> sender_;
  std::unique_ptr<grpc::ClientContext> step_context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::PushHeader, v1::PullParametersResponse>>
      step_stream_;
  absl::Time step_stream_deadline_;
  std::optional<uint32_t> pending_ring_;  // a push was rung and its answer not read yet
  std::shared_ptr<std::atomic<bool>> step_stream_ended_;  // set by step_reader_
  std::thread step_reader_;                                // waits for the stream's end
};

}  // namespace psgrid

#endif  // PSGRID_WORKER_RPC_GRPC_PARAMETER_CLIENT_H_
