// GrpcServer: the psgrid gRPC services (Control and Parameters) over a JobManager.
//
//   ASSIGN_OR_RETURN(auto server, GrpcServer::Start("127.0.0.1:0", &manager));
//   int port = server->port();   // the port picked for ":0"
//   ...
//   server->Shutdown(absl::Seconds(5));
//
// With GrpcServerOptions::data_listen it also runs the raw-TCP tensor data plane
// (server/rpc/data_plane_server.h) and offers it to every worker that registers.
//
// The services are thin: they translate requests, call the JobManager/Job, and translate the
// answers (absl::Status → grpc::Status in one place, grpc_status.h). Thread-safe. The manager
// is borrowed and must outlive the server.
#ifndef PSGRID_SERVER_RPC_GRPC_SERVER_H_
#define PSGRID_SERVER_RPC_GRPC_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "server/job_manager.h"

namespace psgrid {

struct GrpcServerOptions {
  // Where the data plane listens (host:port; port 0 picks one); empty = no data plane.
  std::string data_listen;
};

class GrpcServer {
 public:
  // Binds `address` (host:port; port 0 picks a free one), and the data plane's address when
  // asked for. UNAVAILABLE naming the address when one cannot be bound.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(const std::string& address,
                                                           JobManager* manager,
                                                           const GrpcServerOptions& options = {});
  virtual ~GrpcServer() = default;

  virtual int port() const = 0;
  // The data plane's "host:port"; empty without one.
  virtual std::string data_address() const = 0;
  // Stops accepting calls; calls still running get until `grace` to finish.
  virtual void Shutdown(absl::Duration grace) = 0;
  // Blocks until Shutdown() has completed.
  virtual void Wait() = 0;
};

}  // namespace psgrid

#endif  // PSGRID_SERVER_RPC_GRPC_SERVER_H_
