// DataPlaneServer: the raw-TCP tensor data plane beside the gRPC services (frame format in
// proto/psgrid/v1/data_plane.proto and proto/data_frame.h). Workers push gradients and pull
// parameters over one persistent connection each; gRPC stays the control plane (register,
// heartbeat, metrics, jobs), and RegisterWorker hands each worker the plane's address and a
// token (IssueToken) that its frames must carry.
//
//   ASSIGN_OR_RETURN(auto plane, DataPlaneServer::Start("127.0.0.1:0", &manager));
//   plane->address();   // "127.0.0.1:PORT", for RegisterWorkerResponse.data_address
//   ...
//   plane->Shutdown();  // closes every connection and joins its thread
//
// Each connection is served on its own thread (at most kMaxConnections at once; more are
// closed at once). A push is read straight into the connection's reused gradient buffer and
// handed to Job::PushGradients, as the gRPC service does; a pull waits for its version
// (bounded by the request's deadline) and is written with one gathering send straight from
// the published snapshot. Malformed frames are answered with an error and the connection is
// closed (see data_plane.proto); every read and write has a deadline. Thread-safe. The
// manager is borrowed and must outlive the server.
#ifndef PSGRID_SERVER_RPC_DATA_PLANE_SERVER_H_
#define PSGRID_SERVER_RPC_DATA_PLANE_SERVER_H_

#include <atomic>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/job_manager.h"

namespace psgrid {

class DataPlaneServer {
 public:
  static constexpr int kMaxConnections = 1024;

  // Listens on `address` (host:port; port 0 picks one). UNAVAILABLE when it cannot.
  static absl::StatusOr<std::unique_ptr<DataPlaneServer>> Start(const std::string& address,
                                                                JobManager* manager);
  ~DataPlaneServer();
  DataPlaneServer(const DataPlaneServer&) = delete;
  DataPlaneServer& operator=(const DataPlaneServer&) = delete;

  int port() const { return port_; }
  // "host:port" as listened on, with the port picked for 0.
  const std::string& address() const { return address_; }

  // A fresh random token (128 bits, hex) for this worker of this job, replacing any earlier
  // one; its frames must carry it.
  std::string IssueToken(const std::string& job_id, const std::string& worker_id);

  // Stops accepting, closes every connection (a pull waiting for its version ends) and joins
  // the threads. Idempotent.
  void Shutdown();

  // Connections being served now (for tests).
  int active_connections() const;

 private:
  struct Connection {
    int fd = -1;
    std::thread thread;
    std::atomic<bool> done{false};
  };

  DataPlaneServer(JobManager* manager, int listen_fd, int port, std::string address);
  void AcceptLoop();
  void Serve(Connection* connection);
  // Joins and forgets the connections whose threads have ended.
  void ReapLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // OK when `token` is the one issued to the worker; NOT_FOUND / PERMISSION_DENIED otherwise.
  absl::Status CheckToken(const std::string& job_id, const std::string& worker_id,
                          const std::string& token) const;

  JobManager* const manager_;
  const int listen_fd_;
  const int port_;
  const std::string address_;
  std::atomic<bool> stopping_{false};
  std::thread acceptor_;

  mutable absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  std::list<std::unique_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> tokens_ ABSL_GUARDED_BY(mu_);  // job \0 worker → token
};

}  // namespace psgrid

#endif  // PSGRID_SERVER_RPC_DATA_PLANE_SERVER_H_
