#include "client/local_runner.h"

#include <cstdlib>
#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "client/child_process.h"
#include "client/progress_printer.h"
#include "client/rpc/grpc_control_client.h"
#include "core/backend/cpu_backend.h"
#include "core/status_macros.h"
#include "nlohmann/json.hpp"
#include "server/job_manager.h"
#include "client/commands_snapshots.h"
#include "server/rpc/grpc_server.h"

namespace psgrid {
namespace {

// How often the monitor looks at the workers and for a signal.
constexpr absl::Duration kMonitorPeriod = absl::Milliseconds(50);
// After SIGTERM, how long a worker has before SIGKILL.
constexpr absl::Duration kTerminateGrace = absl::Seconds(3);
constexpr absl::Duration kServerShutdownGrace = absl::Seconds(2);
constexpr absl::Duration kConnectTimeout = absl::Seconds(10);

// The signal caught while a run is in progress (0: none). A signal handler can only set a flag;
// the run's monitor thread acts on it.
volatile std::sig_atomic_t g_caught_signal = 0;

void CatchSignal(int signal) { g_caught_signal = signal; }

// Catches SIGINT and SIGTERM while it lives; restores the previous handlers on destruction.
class ScopedSignalCatcher {
 public:
  ScopedSignalCatcher() {
    g_caught_signal = 0;
    struct sigaction action {};
    action.sa_handler = CatchSignal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGINT, &action, &previous_int_);
    sigaction(SIGTERM, &action, &previous_term_);
  }
  ~ScopedSignalCatcher() {
    sigaction(SIGINT, &previous_int_, nullptr);
    sigaction(SIGTERM, &previous_term_, nullptr);
  }
  ScopedSignalCatcher(const ScopedSignalCatcher&) = delete;
  ScopedSignalCatcher& operator=(const ScopedSignalCatcher&) = delete;

 private:
  struct sigaction previous_int_ {};
  struct sigaction previous_term_ {};
};

// The server's data directory: the one asked for, or a temporary one removed on destruction.
class ScopedDataDir {
 public:
  ScopedDataDir() = default;
  ~ScopedDataDir() {
    if (!temporary_) return;
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScopedDataDir(const ScopedDataDir&) = delete;
  ScopedDataDir& operator=(const ScopedDataDir&) = delete;

  absl::Status Init(const std::string& requested) {
    if (!requested.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(requested, ec);
      if (ec) return absl::InternalError(absl::StrCat("cannot create ", requested, ": ", ec.message()));
      path_ = requested;
      return absl::OkStatus();
    }
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = absl::StrCat(tmp != nullptr && tmp[0] != '\0' ? tmp : "/tmp",
                                       "/psgrid-local-XXXXXX");
    if (mkdtemp(pattern.data()) == nullptr) {
      return absl::InternalError(
          absl::StrCat("cannot create a temporary directory ", pattern, ": ", std::strerror(errno)));
    }
    path_ = pattern;
    temporary_ = true;
    return absl::OkStatus();
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  bool temporary_ = false;
};

absl::StatusOr<std::string> ThisProgram() {
  std::error_code ec;
  const std::filesystem::path path = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot find this program: ", ec.message()));
  return path.string();
}

struct WorkerProcess {
  int index = 0;  // 1-based, in start order (the server's ranks follow the join order)
  std::unique_ptr<ChildProcess> process;
  bool reported = false;  // its exit has been looked at
};

// One `psgrid local` run. Run() is called once, from one thread; the monitor thread it starts
// owns `workers_` until it is joined.
class LocalRun {
 public:
  explicit LocalRun(const LocalRunOptions& options)
      : options_(options), log_(options.output == OutputFormat::kJson ? stderr : stdout) {}

  int Run();

 private:
  absl::Status Setup();
  absl::Status SpawnWorkers();
  void Monitor();
  void CheckWorkersLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReapWorkers();
  void ShutDownServer();
  void PrintResult(const v1::JobStatus& final_status, absl::Time start) const;
  // --export: the job's last weights as a safetensors file (said on the log, errors too).
  absl::Status ExportFinalWeights();
  std::string Describe(const WorkerProcess& worker) const {
    return absl::StrCat("worker process ", worker.index, " of ", workers_.size(), " (pid ",
                        worker.process->pid(), ")");
  }

  const LocalRunOptions& options_;
  std::FILE* const log_;
  v1::JobSpec spec_;
  // Declared in construction order; destroyed in reverse (workers first, data last).
  ScopedDataDir data_dir_;
  std::unique_ptr<JobManager> manager_;
  std::unique_ptr<GrpcServer> server_;
  std::string address_;
  std::unique_ptr<ControlClient> client_;
  std::string job_id_;
  std::shared_ptr<Job> job_;
  std::vector<WorkerProcess> workers_;

  absl::Mutex mu_;
  bool monitor_done_ ABSL_GUARDED_BY(mu_) = false;
  int interrupted_by_ ABSL_GUARDED_BY(mu_) = 0;
};

absl::Status LocalRun::Setup() {
  ASSIGN_OR_RETURN(spec_, LoadJobSpecWithOverrides(options_.spec_path, options_.overrides));
  RETURN_IF_ERROR(data_dir_.Init(options_.data_dir));
  // The server's optimizer updates are small next to the workers' work: one BLAS thread keeps
  // it off the workers' cores.
  SetBlasThreads(1);
  JobManagerOptions manager_options;
  // The workers run on this machine: their tensors go through shared memory, not sockets.
  manager_options.shared_memory = true;
  manager_options.data_dir = data_dir_.path();
  manager_ = std::make_unique<JobManager>(manager_options);
  // Workers without shared memory push and pull over the raw-TCP data plane.
  GrpcServerOptions server_options;
  server_options.data_listen = "127.0.0.1:0";
  ASSIGN_OR_RETURN(server_, GrpcServer::Start("127.0.0.1:0", manager_.get(), server_options));
  address_ = absl::StrCat("127.0.0.1:", server_->port());
  ASSIGN_OR_RETURN(client_, ControlClient::Connect(address_, kConnectTimeout));
  ASSIGN_OR_RETURN(job_id_, WithSpecSource(options_.spec_path, client_->Submit(spec_)));
  ASSIGN_OR_RETURN(job_, manager_->Get(job_id_));
  return absl::OkStatus();
}

absl::Status LocalRun::SpawnWorkers() {
  if (std::getenv(kSpawnedChildVariable) != nullptr) {
    return absl::FailedPreconditionError(
        "refusing to start workers from a process that psgrid itself started (is "
        "--worker-binary a psgrid binary?)");
  }
  std::string binary = options_.worker_binary;
  if (binary.empty()) {
    ASSIGN_OR_RETURN(binary, ThisProgram());
  }
  const int count = spec_.training().workers();
  // Workers train in the shared parameter segment, which only plain sync leaves alone.
  const v1::TrainingSpec& t = spec_.training();
  const bool shared_memory =
      options_.shared_memory && t.consistency() == "sync" && t.backup_workers() == 0;
  for (int i = 1; i <= count; ++i) {
    std::vector<std::string> args = {binary,    "worker",  "--server",
                                     address_,  "--job",   job_id_,
                                     "--threads", std::to_string(options_.threads), "--quiet"};
    if (shared_memory) args.push_back("--shared-memory");
    if (!options_.devices.empty()) {
      args.push_back("--device");
      args.push_back(options_.devices[(i - 1) % options_.devices.size()]);
    }
    if (i == count && options_.slow_worker > 1.0) {
      args.push_back("--slowdown");
      args.push_back(absl::StrCat(options_.slow_worker));
    }
    ASSIGN_OR_RETURN(std::unique_ptr<ChildProcess> process, ChildProcess::Spawn(args));
    workers_.push_back(WorkerProcess{i, std::move(process), false});
  }
  return absl::OkStatus();
}

void LocalRun::Monitor() {
  absl::MutexLock lock(&mu_);
  while (!mu_.AwaitWithTimeout(absl::Condition(&monitor_done_), kMonitorPeriod)) {
    const int signal = g_caught_signal;
    if (signal != 0 && interrupted_by_ == 0) {
      interrupted_by_ = signal;
      const char* name = strsignal(signal);
      std::fprintf(stderr, "\npsgrid: %s: stopping job %s\n", name != nullptr ? name : "signal",
                   job_id_.c_str());
      std::fflush(stderr);
      job_->Stop(absl::StrCat("interrupted (", name != nullptr ? name : "signal", ")"));
    }
    CheckWorkersLocked();
  }
}

void LocalRun::CheckWorkersLocked() {
  for (WorkerProcess& worker : workers_) {
    if (worker.reported || !worker.process->Poll()) continue;
    worker.reported = true;
    const v1::JobStatus status = job_->Status();
    // A worker leaves when the job has ended, or with status 0 once every step is done (while
    // rank 0 evaluates the final weights). Leaving earlier fails the job now: the server would
    // notice only after its liveness timeout, and could not say which process or how.
    const bool steps_done = status.step() >= status.total_steps();
    if (!IsEndedState(status.state()) && !(steps_done && worker.process->succeeded())) {
      const std::string what =
          absl::StrCat(Describe(worker), " ", worker.process->DescribeExit(), " while job ",
                       job_id_, " was ", JobStateName(status.state()), " (step ", status.step(),
                       " of ", status.total_steps(), ")");
      std::fprintf(stderr, "psgrid: %s\n", what.c_str());
      std::fflush(stderr);
      job_->Fail(what);
    } else if (!worker.process->succeeded()) {
      std::fprintf(stderr, "psgrid: %s %s\n", Describe(worker).c_str(),
                   worker.process->DescribeExit().c_str());
      std::fflush(stderr);
    }
  }
}

void LocalRun::ReapWorkers() {
  const absl::Time deadline = absl::Now() + options_.worker_exit_grace;
  for (WorkerProcess& worker : workers_) {
    if (!worker.process->WaitFor(std::max(deadline - absl::Now(), absl::ZeroDuration()))) {
      std::fprintf(stderr, "psgrid: %s is still running %gs after the job ended; terminating it\n",
                   Describe(worker).c_str(), absl::ToDoubleSeconds(options_.worker_exit_grace));
      worker.process->Terminate(kTerminateGrace);
    }
    if (!worker.reported) {
      worker.reported = true;
      if (!worker.process->succeeded()) {
        std::fprintf(stderr, "psgrid: %s %s\n", Describe(worker).c_str(),
                     worker.process->DescribeExit().c_str());
      }
    }
  }
  std::fflush(stderr);
}

void LocalRun::ShutDownServer() {
  if (server_ == nullptr) return;
  server_->Shutdown(kServerShutdownGrace);
  server_->Wait();
}

void LocalRun::PrintResult(const v1::JobStatus& s, absl::Time start) const {
  nlohmann::ordered_json j;
  j["job"] = s.job_id();
  j["name"] = s.name();
  j["state"] = JobStateName(s.state());
  j["message"] = s.message();
  j["steps"] = s.step();
  j["total_steps"] = s.total_steps();
  j["epochs"] = s.epoch();
  j["train_loss"] = s.train_loss();
  j["test_loss"] = s.test_loss();
  j["test_accuracy"] = s.test_accuracy();
  j["samples"] = s.samples();
  j["samples_per_second"] = AverageSamplesPerSecond(s);  // over the whole training
  AddConsistencyFields(s, &j);
  j["wall_seconds"] = s.wall_seconds();
  j["total_seconds"] = absl::ToDoubleSeconds(absl::Now() - start);
  j["workers"] = spec_.training().workers();
  j["threads_per_worker"] = options_.threads;
  std::printf("%s\n",
              j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace).c_str());
  std::fflush(stdout);
}

int LocalRun::Run() {
  const absl::Time start = absl::Now();
  ScopedSignalCatcher signals;  // from the start, so that Ctrl-C at any point ends in order
  if (absl::Status s = Setup(); !s.ok()) {
    ShutDownServer();
    return PrintError(s);
  }
  const v1::TrainingSpec& t = spec_.training();
  std::fprintf(log_,
               "job %s: %d worker process(es) x batch %d, %d epoch(s) (%lld steps), %s lr %g, "
               "%d BLAS thread(s) per worker%s; server %s\n",
               job_id_.c_str(), t.workers(), t.batch_size(), t.epochs(),
               static_cast<long long>(job_->total_steps()), spec_.optimizer().type().c_str(),
               spec_.optimizer().learning_rate(), options_.threads,
               options_.devices.empty()
                   ? ""
                   : absl::StrCat(", device ", absl::StrJoin(options_.devices, ",")).c_str(),
               address_.c_str());
  std::fflush(log_);
  if (absl::Status s = SpawnWorkers(); !s.ok()) {
    job_->Fail(std::string(s.message()));
    ReapWorkers();
    ShutDownServer();
    return PrintError(s);
  }

  std::thread monitor([this] { Monitor(); });
  ProgressPrinter printer(log_, ProgressPrinter::ModeFor(log_, OutputFormat::kTable));
  absl::StatusOr<v1::JobStatus> watched = client_->Watch(job_id_, [&](const v1::JobStatus& s) {
    printer.Update(s);
    return true;
  });
  printer.BreakLine();
  {
    absl::MutexLock lock(&mu_);
    monitor_done_ = true;
  }
  monitor.join();
  if (!watched.ok()) {
    PrintError(watched.status());
    job_->Stop(absl::StrCat("psgrid local lost the job's progress: ", watched.status().message()));
  }
  ReapWorkers();
  ShutDownServer();
  const v1::JobStatus final_status = job_->Status();
  if (!watched.ok()) std::fprintf(log_, "%s\n", FinalLine(final_status).c_str());
  bool export_failed = false;
  if (!options_.export_path.empty()) export_failed = !ExportFinalWeights().ok();
  std::fflush(log_);
  if (options_.output == OutputFormat::kJson) PrintResult(final_status, start);
  int interrupted_by = 0;
  {
    absl::MutexLock lock(&mu_);
    interrupted_by = interrupted_by_;
  }
  if (interrupted_by != 0) return kExitInterrupted;
  if (export_failed) return kExitFailed;
  return final_status.state() == v1::JOB_STATE_COMPLETED ? kExitOk : kExitFailed;
}

absl::Status LocalRun::ExportFinalWeights() {
  absl::StatusOr<NamedWeights> weights = job_->Weights(/*snapshot_id=*/"");
  absl::Status s = weights.status();
  if (s.ok()) s = WriteWeightsFile(options_.export_path, job_id_, weights->step, weights->tensors);
  if (!s.ok()) {
    PrintError(s);
    return s;
  }
  std::fprintf(log_, "weights of step %lld written to %s\n",
               static_cast<long long>(weights->step), options_.export_path.c_str());
  return absl::OkStatus();
}

}  // namespace

int RunLocalJob(const LocalRunOptions& options) {
  LocalRun run(options);
  return run.Run();
}

}  // namespace psgrid
