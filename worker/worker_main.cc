#include "worker/worker_main.h"

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "core/backend/cpu_backend.h"
#include "core/backend/registry.h"
#include "core/status_macros.h"
#include "worker/rpc/grpc_parameter_client.h"
#include "worker/rpc/tcp_parameter_client.h"
#include "worker/worker.h"

namespace psgrid {
namespace {

constexpr char kDefaultServer[] = "127.0.0.1:7070";

struct WorkerMainOptions {
  std::string server;
  std::string job_id;
  int threads = 1;
  double connect_timeout_seconds = 30;
  bool quiet = false;
  bool shared_memory = false;
  double slowdown = 1.0;
  std::string device = "cpu";
  std::string transport = "auto";  // of pushes and pulls: grpc | tcp | auto
};

std::string DefaultServer() {
  const char* env = std::getenv("PSGRID_SERVER");
  return env != nullptr && env[0] != '\0' ? env : kDefaultServer;
}

absl::Status RunWorker(const WorkerMainOptions& opts) {
  const int threads = SetBlasThreads(opts.threads);
  std::string fallback;
  ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, CreateBackend(opts.device, &fallback));
  if (!fallback.empty()) {
    std::fprintf(stderr,
                 "psgrid-worker: warning: --device auto: no usable GPU (%s); computing on the "
                 "CPU\n",
                 fallback.c_str());
  }
  ASSIGN_OR_RETURN(
      std::unique_ptr<GrpcParameterClient> client,
      GrpcParameterClient::Connect(opts.server, absl::Seconds(opts.connect_timeout_seconds)));
  if (!opts.quiet) {
    std::fprintf(stderr, "psgrid-worker: connected to %s (device %s, %d BLAS thread(s))\n",
                 opts.server.c_str(), std::string(backend->name()).c_str(), threads);
  }
  WorkerOptions options;
  options.job_id = opts.job_id;
  options.verbose = !opts.quiet;
  options.shared_memory = opts.shared_memory;
  options.slowdown = opts.slowdown;
  // A worker on a device stays off shared memory even with --shared-memory (the worker says
  // so): the server's segment is host memory.
  // Pushes and pulls over the server's raw-TCP data plane when it offers one (auto), or
  // always (tcp); gRPC carries the rest.
  std::unique_ptr<ParameterClient> transport;
  if (opts.transport == "grpc") {
    transport = std::move(client);
  } else {
    TcpClientOptions tcp;
    tcp.required = opts.transport == "tcp";
    tcp.quiet = opts.quiet;
    transport = std::make_unique<TcpParameterClient>(std::move(client), tcp);
  }
  Worker worker(transport.get(), backend.get(), options);
  return worker.Run();
}

}  // namespace

int RunWorkerMain(int argc, char** argv) {
  CLI::App app{"Joins a job on a psgrid parameter server and trains its share of the data",
               "psgrid-worker"};
  WorkerMainOptions opts;
  opts.server = DefaultServer();
  app.add_option("--server", opts.server,
                 "Parameter server address host:port (default: $PSGRID_SERVER, else " +
                     std::string(kDefaultServer) + ")")
      ->capture_default_str();
  app.add_option("--job", opts.job_id, "Job id to join (default: any job that needs workers)");
  app.add_option("--threads", opts.threads, "OpenBLAS threads")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--connect-timeout", opts.connect_timeout_seconds,
                 "Seconds to wait for the server to answer")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--device", opts.device,
                 "Compute device: cpu, cuda (GPU 0), cuda:N, or auto (GPU 0 when usable, else "
                 "the CPU with a warning)")
      ->capture_default_str();
  app.add_option("--transport", opts.transport,
                 "How gradients and parameters travel without shared memory: tcp (the "
                 "server's raw-TCP data plane), grpc, or auto (tcp when the server offers it)")
      ->check(CLI::IsMember({"grpc", "tcp", "auto"}))
      ->capture_default_str();
  app.add_flag("--quiet", opts.quiet, "No progress lines on stderr");
  app.add_flag("--shared-memory", opts.shared_memory,
               "Exchange tensors through shared memory (a worker on the server's machine)");
  app.add_option("--slowdown", opts.slowdown,
                 "Make each step's computation and push this many times as long (a "
                 "straggler, for benchmarks)")
      ->check(CLI::Range(1.0, 100.0))
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  const absl::Status status = RunWorker(opts);
  if (!status.ok()) {
    std::fprintf(stderr, "psgrid-worker: error: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace psgrid
