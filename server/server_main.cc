// psgrid-server: the parameter server, a thin main over JobManager and GrpcServer.
//
//   psgrid-server --listen 127.0.0.1:7070 --data-dir /var/lib/psgrid [--worker-timeout 30]
//                 [--data-listen HOST:PORT | off]
//
// Prints "psgrid-server listening on HOST:PORT" once it accepts calls (and "psgrid-server data
// plane on HOST:PORT" with the raw-TCP tensor data plane, on by default on an ephemeral port of
// the --listen host). SIGTERM or SIGINT shut
// it down gracefully: running jobs are snapshotted (with --data-dir), calls in flight get 5 s,
// and it exits 0; the jobs are not ended, and the next server on the data directory resumes
// them while their workers retry.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <memory>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "core/backend/blas_kernel.h"
#include "core/shared_region.h"
#include "server/job_manager.h"
#include "server/rpc/grpc_server.h"

namespace {

// How long a graceful shutdown waits for the snapshots of the running jobs.
constexpr absl::Duration kShutdownSnapshotTimeout = absl::Seconds(60);

// The self-pipe: the signal handler only writes the signal's number here; main reads it.
int g_signal_pipe[2] = {-1, -1};

void OnShutdownSignal(int signal_number) {
  const int saved_errno = errno;
  const char byte = static_cast<char>(signal_number);
  [[maybe_unused]] const ssize_t written = write(g_signal_pipe[1], &byte, 1);
  errno = saved_errno;
}

// Routes SIGINT and SIGTERM to the self-pipe. (Blocking them for a sigwait would not do: the
// OpenBLAS thread pool exists before main and would still take them.)
bool InstallShutdownSignals() {
  if (pipe2(g_signal_pipe, O_CLOEXEC) != 0) return false;
  struct sigaction action = {};
  action.sa_handler = OnShutdownSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  return sigaction(SIGINT, &action, nullptr) == 0 && sigaction(SIGTERM, &action, nullptr) == 0;
}

// Blocks until SIGINT or SIGTERM arrives; returns its number.
int WaitForShutdownSignal() {
  char byte = 0;
  while (read(g_signal_pipe[0], &byte, 1) != 1) {
    if (errno != EINTR) return 0;
  }
  return byte;
}

// "HOST:PORT" with the port the server really listens on (for ":0").
std::string ListeningAddress(const std::string& requested, int port) {
  const size_t colon = requested.rfind(':');
  const std::string host = colon == std::string::npos ? requested : requested.substr(0, colon);
  return absl::StrCat(host, ":", port);
}

int Run(int argc, char** argv) {
  CLI::App app{"psgrid-server: the psgrid parameter server"};
  std::string listen = "127.0.0.1:7070";
  std::string data_dir;
  double worker_timeout_s = 30;
  bool shared_memory = false;
  std::string data_listen;
  app.add_option("--listen", listen, "Address to listen on, HOST:PORT (port 0 picks one)")
      ->capture_default_str();
  app.add_option("--data-listen", data_listen,
                 "Where workers push and pull tensors over raw TCP, HOST:PORT (default: the "
                 "--listen host, port 0 = a free one); 'off': gRPC only");
  app.add_option("--data-dir", data_dir, "Directory for job records (none when empty)");
  app.add_flag("--shared-memory", shared_memory,
               "Offer workers on this machine shared memory for their tensors "
               "(psgrid-worker --shared-memory)");
  app.add_option("--worker-timeout", worker_timeout_s,
                 "Seconds without a word from a worker after which its job fails")
      ->capture_default_str()
      ->check([](const std::string& text) -> std::string {
        double seconds = 0;
        if (absl::SimpleAtod(text, &seconds) && seconds > 0) return "";
        return absl::StrCat("must be a number of seconds > 0, got '", text, "'");
      });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  if (!InstallShutdownSignals()) {
    std::perror("psgrid-server: cannot install the signal handlers");
    return 1;
  }

  psgrid::JobManagerOptions options;
  options.data_dir = data_dir;
  options.worker_timeout = absl::Seconds(worker_timeout_s);
  options.shared_memory = shared_memory;
  if (shared_memory) {
    const int stale = psgrid::SharedRegion::RemoveStale();
    if (stale > 0) {
      std::fprintf(stderr, "psgrid-server: removed %d shared-memory segment(s) of servers that "
                   "are gone\n", stale);
    }
  }
  psgrid::JobManager manager(options);
  // Jobs a previous server left unfinished come back from their newest good snapshot.
  const int resumed = manager.ResumeJobs();
  if (resumed > 0) std::fprintf(stderr, "psgrid-server: resumed %d job(s)\n", resumed);

  psgrid::GrpcServerOptions server_options;
  if (data_listen.empty()) {
    const size_t colon = listen.rfind(':');
    server_options.data_listen =
        absl::StrCat(colon == std::string::npos ? listen : listen.substr(0, colon), ":0");
  } else if (data_listen != "off") {
    server_options.data_listen = data_listen;
  }
  absl::StatusOr<std::unique_ptr<psgrid::GrpcServer>> server =
      psgrid::GrpcServer::Start(listen, &manager, server_options);
  if (!server.ok()) {
    std::fprintf(stderr, "psgrid-server: %s\n", server.status().ToString().c_str());
    return 1;
  }
  std::printf("psgrid-server listening on %s\n",
              ListeningAddress(listen, (*server)->port()).c_str());
  if (!(*server)->data_address().empty()) {
    std::printf("psgrid-server data plane on %s\n", (*server)->data_address().c_str());
  }
  std::fflush(stdout);

  const int signal_number = WaitForShutdownSignal();
  std::fprintf(stderr, "psgrid-server: signal %d, shutting down\n", signal_number);
  // Every running job keeps its work: a snapshot (bounded), then the server goes. The jobs are
  // not ended: their workers retry, and a server started on this data directory resumes them.
  manager.SnapshotAll(absl::Now() + kShutdownSnapshotTimeout);
  (*server)->Shutdown(absl::Seconds(5));
  (*server)->Wait();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  psgrid::ReexecWithBestBlasKernel(argv);
  return Run(argc, argv);
}
