// ControlClient: the user's side of the psgrid.v1.Control service (submit, inspect, watch and
// stop jobs) over gRPC.
//
//   ASSIGN_OR_RETURN(auto client, ControlClient::Connect("127.0.0.1:7070", absl::Seconds(5)));
//   ASSIGN_OR_RETURN(std::string id, client->Submit(spec));
//   ASSIGN_OR_RETURN(v1::JobStatus last, client->Watch(id, [](const v1::JobStatus& s) {
//     ...;            // every status the server streams
//     return true;    // keep watching
//   }));
//
// Every call has a deadline; a watch, which may last as long as the job, is cancelled when the
// server has sent nothing for `watch_inactivity` and does not answer a GetJob either. gRPC errors
// come back as absl::Status with the same code; an unreachable server's message names its
// address. Thread-safe: every method may be called from any thread (the gRPC stub is).
#ifndef PSGRID_CLIENT_RPC_GRPC_CONTROL_CLIENT_H_
#define PSGRID_CLIENT_RPC_GRPC_CONTROL_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/tensor.h"
#include "psgrid/v1/service.grpc.pb.h"

namespace psgrid {

struct ControlClientOptions {
  absl::Duration rpc_timeout = absl::Seconds(10);     // Get, List, Stop
  absl::Duration submit_timeout = absl::Seconds(60);  // the server looks at the data
  // A watch with no message for this long asks GetJob whether the server is still there and
  // gives up (DEADLINE_EXCEEDED or UNAVAILABLE) when it is not.
  absl::Duration watch_inactivity = absl::Seconds(60);
  absl::Duration snapshot_timeout = absl::Minutes(10);  // TakeSnapshot, ExportWeights
};

class ControlClient {
 public:
  // Opens an insecure channel to `address` (host:port) and waits up to `connect_timeout` for it
  // to be ready. UNAVAILABLE naming the address when the server cannot be reached by then.
  static absl::StatusOr<std::unique_ptr<ControlClient>> Connect(
      const std::string& address, absl::Duration connect_timeout,
      ControlClientOptions options = {});

  const std::string& address() const { return address_; }

  // The new job's id. INVALID_ARGUMENT naming the field for a spec the server cannot run.
  absl::StatusOr<std::string> Submit(const v1::JobSpec& spec);
  // NOT_FOUND naming the id.
  absl::StatusOr<v1::JobStatus> Get(const std::string& job_id);
  // Every job of the server, in submission order.
  absl::StatusOr<std::vector<v1::JobStatus>> List();
  // Stops the job (no-op for one that has ended); its status afterwards.
  absl::StatusOr<v1::JobStatus> Stop(const std::string& job_id);

  // Called with each status the server streams; returns false to stop watching.
  using WatchCallback = std::function<bool(const v1::JobStatus&)>;
  // Streams the job's status, calling `on_status` for each, until the job ends or `on_status`
  // returns false. Returns the last status received. NOT_FOUND for an unknown job; UNAVAILABLE
  // or DEADLINE_EXCEEDED when the server goes away or stays silent (see watch_inactivity).
  absl::StatusOr<v1::JobStatus> Watch(const std::string& job_id, const WatchCallback& on_status);

  // Snapshots (grpc_control_client_snapshots.cc). TakeSnapshot answers when the snapshot is on
  // the server's disk (within options.snapshot_timeout).
  absl::StatusOr<v1::SnapshotInfo> TakeSnapshot(const std::string& job_id);
  absl::StatusOr<std::vector<v1::SnapshotInfo>> ListSnapshots(const std::string& job_id);
  // DATA_LOSS naming the tensor or file when the snapshot is corrupt.
  absl::StatusOr<v1::SnapshotInfo> VerifySnapshot(const std::string& job_id,
                                                  const std::string& snapshot_id);
  // The job's status after it was rolled back to the snapshot.
  absl::StatusOr<v1::JobStatus> RestoreSnapshot(const std::string& job_id,
                                                const std::string& snapshot_id);
  // The job's current weights (snapshot_id empty) or a snapshot's, by name, and their step.
  struct Weights {
    int64_t step = 0;
    std::vector<std::pair<std::string, Tensor>> tensors;
  };
  absl::StatusOr<Weights> ExportWeights(const std::string& job_id, const std::string& snapshot_id);

 private:
  ControlClient(std::string address, std::shared_ptr<grpc::Channel> channel,
                ControlClientOptions options);

  // grpc::Status → absl::Status; transport failures get the server's address in the message.
  absl::Status FromGrpc(const grpc::Status& status) const;

  // One unary call of the Control service with a deadline `timeout` from now.
  template <typename Request, typename Response>
  absl::StatusOr<Response> Call(grpc::Status (v1::Control::Stub::*method)(grpc::ClientContext*,
                                                                          const Request&,
                                                                          Response*),
                                const Request& request, absl::Duration timeout) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    Response response;
    const grpc::Status status = (stub_.get()->*method)(&context, request, &response);
    if (!status.ok()) return FromGrpc(status);
    return response;
  }

  const std::string address_;
  const ControlClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Control::Stub> stub_;
};

}  // namespace psgrid

#endif  // PSGRID_CLIENT_RPC_GRPC_CONTROL_CLIENT_H_
