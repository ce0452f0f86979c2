// TcpParameterClient: a ParameterClient that pushes gradients and pulls parameters over the
// server's raw-TCP data plane (proto/psgrid/v1/data_plane.proto) and leaves everything else
// (register, heartbeat, metrics, shared memory) to the GrpcParameterClient it wraps.
//
//   ASSIGN_OR_RETURN(auto grpc, GrpcParameterClient::Connect(address, timeout));
//   TcpParameterClient client(std::move(grpc), {});
//   Worker worker(&client, backend.get(), options);
//
// Register opens one persistent TCP connection to the address the registration offers
// (RegisterWorkerResponse.data_address) and keeps the token that every frame carries. A push
// is sent with one gathering send straight from the gradient arena; a pull's parameters are
// read straight into the values arena. While backward runs, PushPart hands the complete top of
// the gradient to a sender thread that writes it as parts (data_plane.proto), so that Push has
// only the rest to send; a large rest it streams as parts too (stream_part_floats), from the
// top, so that the server checks and applies each range while the next arrives. A broken connection is reopened once per call. Without
// a data plane (none offered, or unreachable at Register: one warning line), once it becomes
// unusable (it cannot be reached, or no longer knows this worker: a restarted server; one
// warning line), or once shared memory is in use, pushes and pulls go over gRPC as before. Thread-safe (pushes and pulls are serialized on the
// connection).
#ifndef PSGRID_WORKER_RPC_TCP_PARAMETER_CLIENT_H_
#define PSGRID_WORKER_RPC_TCP_PARAMETER_CLIENT_H_

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "psgrid/v1/data_plane.pb.h"
#include "worker/parameter_client.h"
#include "worker/rpc/grpc_parameter_client.h"

namespace psgrid {

struct TcpClientOptions {
  // Fail Register (FAILED_PRECONDITION) when the server offers no data plane or it cannot be
  // reached, instead of going on over gRPC with a warning.
  bool required = false;
  // How long opening the connection may take (within the call's deadline).
  absl::Duration connect_timeout = absl::Seconds(5);
  bool quiet = false;  // no warning line on stderr
  // Push streams a gradient's rest of more than twice this many floats as parts of this size,
  // from the top: the server checks and applies each range while the next one arrives.
  int64_t stream_part_floats = int64_t{1} << 16;  // 256 KiB
};

class TcpParameterClient : public ParameterClient {
 public:
  TcpParameterClient(std::unique_ptr<GrpcParameterClient> control, TcpClientOptions options);
  ~TcpParameterClient() override;

  // Whether pushes and pulls go over the data plane now.
  bool data_plane_active() const;

  absl::StatusOr<v1::RegisterWorkerResponse> Register(const std::string& job_id,
                                                      const std::string& worker_name,
                                                      absl::Time deadline) override;
  // INVALID_ARGUMENT when `gradients` does not hold every tensor of `layout`; the server
  // refuses an arena of another size than the job's.
  absl::StatusOr<v1::PushGradientsResponse> Push(const v1::PushHeader& header,
                                                 const std::vector<ParamInfo>& layout,
                                                 const Tensor& gradients,
                                                 absl::Time deadline) override;
  // On an error *values may hold a mix of old and new parameters (a retry overwrites them all);
  // when the job has ended and the server sends no parameters *values is left as it was.
  absl::StatusOr<PullResult> Pull(const std::string& job_id, const std::string& worker_id,
                                  int64_t min_version, const std::vector<ParamInfo>& layout,
                                  Tensor* values, absl::Time deadline) override;
  absl::Status ReportMetrics(const v1::ReportMetricsRequest& request, absl::Time deadline) override;
  absl::StatusOr<v1::JobState> Heartbeat(const std::string& job_id, const std::string& worker_id,
                                         absl::Time deadline) override;
  absl::StatusOr<v1::HeartbeatResponse> CheckIn(const std::string& job_id,
                                                const std::string& worker_id,
                                                absl::Time deadline) override;
  absl::StatusOr<SharedArenas> UseSharedMemory(const std::string& job_id,
                                               const std::string& worker_id,
                                               absl::Time deadline) override;
  bool TakesGradientParts() const override { return true; }
  // Over the data plane: [ready_from, what is sent) goes as a part from a sender thread while
  // the caller goes on; Push then sends the rest. PushPart and Push of one step come from one
  // thread, and `gradients` must stay as it is until Push returns.
  void PushPart(const v1::PushHeader& header, const std::vector<ParamInfo>& layout,
                const Tensor& gradients, int64_t ready_from, absl::Time deadline) override;

  // Parts written on the data plane so far (for tests and benchmarks).
  int64_t parts_sent() const;

 private:
  // One step's push in parts: the sender thread's work (see PushPart).
  struct PartPush {
    v1::PushHeader header;
    const float* gradients = nullptr;
    int64_t arena = 0;       // floats
    absl::Time deadline;
    uint64_t connection = 0;  // the connection the parts go on (connection_)
    std::thread thread;
    absl::Mutex mu;
    int64_t ready ABSL_GUARDED_BY(mu) = 0;  // complete from here up
    int64_t sent ABSL_GUARDED_BY(mu) = 0;   // sent from here up
    bool finishing ABSL_GUARDED_BY(mu) = false;
    bool failed ABSL_GUARDED_BY(mu) = false;
  };
  void SendParts(PartPush* parts);  // the sender thread
  // Writes [from, to) of `gradients` as a part frame (no answer). On failure the connection
  // is closed.
  absl::Status WritePartLocked(const v1::PushHeader& header, const float* gradients,
                               int64_t from, int64_t to, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stops the sender thread; returns where its parts begin (arena when none or they failed).
  int64_t FinishParts(std::unique_ptr<PartPush> parts, uint64_t* connection);

  // Sends `request` with `payload` and reads the answer's header, reopening a broken
  // connection once (on a new connection it sends `fresh_payload_bytes` instead: the parts of
  // a push went with the old one). Returns the answer's payload size, still to be read from
  // fd_.
  // *unusable tells that the plane cannot serve this worker (it cannot be reached, or does not
  // know the token: a restarted server): the call should go over gRPC instead.
  absl::StatusOr<uint64_t> ExchangeLocked(v1::DataRequest* request, const void* payload,
                                          uint64_t payload_bytes, uint64_t fresh_payload_bytes,
                                          absl::Time deadline, v1::DataResponse* response,
                                          bool* unusable)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads a pull's parameters (`payload` bytes) straight into *values.
  absl::StatusOr<PullResult> ReadParametersLocked(const v1::DataResponse& response,
                                                  uint64_t payload, int64_t needed,
                                                  Tensor* values, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Gives the data plane up (one warning line): pushes and pulls go over gRPC from now on.
  void FallBackLocked(const absl::Status& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status ConnectLocked(absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CloseLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::unique_ptr<GrpcParameterClient> control_;
  const TcpClientOptions options_;

  mutable absl::Mutex mu_;
  std::string data_address_ ABSL_GUARDED_BY(mu_);  // "" = no data plane
  std::string token_ ABSL_GUARDED_BY(mu_);
  bool shared_memory_ ABSL_GUARDED_BY(mu_) = false;
  int fd_ ABSL_GUARDED_BY(mu_) = -1;
  uint64_t connection_ ABSL_GUARDED_BY(mu_) = 0;  // counts the connections opened
  int64_t parts_sent_ ABSL_GUARDED_BY(mu_) = 0;

  // The step being pushed in parts (the pushing thread's; the mutex guards the handover).
  absl::Mutex parts_mu_;
  std::unique_ptr<PartPush> parts_ ABSL_GUARDED_BY(parts_mu_);
};

}  // namespace psgrid

#endif  // PSGRID_WORKER_RPC_TCP_PARAMETER_CLIENT_H_
