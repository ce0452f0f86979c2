#include "server/rpc/grpc_server.h"

#include <memory>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/status_macros.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "server/rpc/data_plane_server.h"
#include "server/rpc/grpc_control_service.h"
#include "server/rpc/grpc_parameter_service.h"

namespace psgrid {
namespace {

// Parameter streams carry at most a few MiB per message; this leaves room for the rest.
constexpr int kMaxReceiveMessageBytes = 16 << 20;

// Owns the data plane, the gRPC server and both services (declared first, so they outlive the
// server).
class GrpcServerImpl final : public GrpcServer {
 public:
  GrpcServerImpl(JobManager* manager, std::unique_ptr<DataPlaneServer> data_plane)
      : data_plane_(std::move(data_plane)),
        control_(manager),
        parameters_(manager, data_plane_.get()) {}
  ~GrpcServerImpl() override { Shutdown(absl::ZeroDuration()); }

  absl::Status Start(const std::string& address) {
    grpc::ServerBuilder builder;
    int selected_port = 0;
    builder.AddListeningPort(address, grpc::InsecureServerCredentials(), &selected_port);
    // gRPC sets SO_REUSEPORT by default, which would let a second server "bind" a busy port.
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    builder.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
    builder.RegisterService(&control_);
    builder.RegisterService(&parameters_);
    server_ = builder.BuildAndStart();
    if (server_ == nullptr || selected_port == 0) {
      if (server_ != nullptr) server_->Shutdown();
      server_.reset();
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", address, " (address in use or not valid)"));
    }
    port_ = selected_port;
    return absl::OkStatus();
  }

  int port() const override { return port_; }
  std::string data_address() const override {
    return data_plane_ == nullptr ? std::string() : data_plane_->address();
  }

  void Shutdown(absl::Duration grace) override {
    {
      absl::MutexLock lock(&mu_);
      if (shut_down_ || server_ == nullptr) return;
      shut_down_ = true;
    }
    control_.BeginShutdown();
    parameters_.BeginShutdown();
    server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
    if (data_plane_ != nullptr) data_plane_->Shutdown();
  }

  void Wait() override {
    if (server_ != nullptr) server_->Wait();
  }

 private:
  std::unique_ptr<DataPlaneServer> data_plane_;  // null without one
  GrpcControlService control_;
  GrpcParameterService parameters_;
  std::unique_ptr<grpc::Server> server_;  // set once by Start
  int port_ = 0;
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Start(const std::string& address,
                                                              JobManager* manager,
                                                              const GrpcServerOptions& options) {
  std::unique_ptr<DataPlaneServer> data_plane;
  if (!options.data_listen.empty()) {
    ASSIGN_OR_RETURN(data_plane, DataPlaneServer::Start(options.data_listen, manager));
  }
  auto server = std::make_unique<GrpcServerImpl>(manager, std::move(data_plane));
  RETURN_IF_ERROR(server->Start(address));
  return std::unique_ptr<GrpcServer>(std::move(server));
}

}  // namespace psgrid
