#include "client/cli.h"

#include <cstdio>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "client/command_util.h"
#include "client/commands_evaluate.h"
#include "client/commands_jobs.h"
#include "client/commands_snapshots.h"
#include "client/job_format.h"
#include "client/local_runner.h"
#include "client/single_process.h"
#include "core/backend/blas_kernel.h"
#include "core/backend/registry.h"
#include "core/status_macros.h"
#include "worker/local_trainer.h"
#include "worker/worker_main.h"

namespace psgrid {
namespace {

absl::Status RunSummary(const std::string& spec_path) {
  ASSIGN_OR_RETURN(v1::JobSpec spec, LoadJobSpecWithOverrides(spec_path, {}));
  ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend, CreateBackend("cpu"));
  ASSIGN_OR_RETURN(std::unique_ptr<LocalTrainer> trainer,
                   WithSpecSource(spec_path, LocalTrainer::Create(spec, backend.get())));
  std::fputs(FormatSummary(trainer->model().Summary()).c_str(), stdout);
  return absl::OkStatus();
}

void AddOutputOption(CLI::App* cmd, std::string* format) {
  cmd->add_option("-o,--output", *format, "Output format: table or json")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
}

void AddServerOptions(CLI::App* cmd, ServerFlags* server) {
  cmd->add_option("--server", server->address,
                  "psgrid server address HOST:PORT (default: $PSGRID_SERVER, else " +
                      std::string(kDefaultServerAddress) + ")")
      ->envname("PSGRID_SERVER");
  cmd->add_option("--connect-timeout", server->connect_timeout_seconds,
                  "Seconds to wait for the server to answer")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
}

void AddOverrideOptions(CLI::App* cmd, SpecOverrides* overrides) {
  cmd->add_option("--workers", overrides->workers, "Override training.workers")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--epochs", overrides->epochs, "Override training.epochs")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-steps", overrides->max_steps,
                  "Override training.max_steps (0 = no limit)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--consistency", overrides->consistency,
                  "Override training.consistency (sync, ssp or async)");
  cmd->add_option("--staleness", overrides->staleness, "Override training.staleness (ssp)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--backup-workers", overrides->backup_workers,
                  "Override training.backup_workers (sync)")
      ->check(CLI::NonNegativeNumber);
}

OutputFormat ToFormat(const std::string& name) {
  return name == "json" ? OutputFormat::kJson : OutputFormat::kTable;
}

// "" when `list` is a comma-separated list of worker devices (cpu, auto, cuda, cuda:N), else
// what is wrong with it (CLI11's validator convention).
std::string CheckDeviceList(const std::string& list) {
  for (absl::string_view name : absl::StrSplit(list, ',')) {
    if (name == "cpu" || name == "auto" || name == "cuda") continue;
    absl::string_view ordinal = name;
    int n = 0;
    if (absl::ConsumePrefix(&ordinal, "cuda:") && !ordinal.empty() &&
        ordinal.find_first_not_of("0123456789") == absl::string_view::npos &&
        absl::SimpleAtoi(ordinal, &n)) {
      continue;
    }
    return absl::StrCat("unknown device '", name, "': want cpu, cuda, cuda:N or auto");
  }
  return "";
}

// `psgrid worker ARGS...`: RunWorkerMain with "psgrid worker" as the program name.
int RunWorkerCommand(const std::vector<std::string>& args) {
  std::vector<std::string> owned = {"psgrid worker"};
  owned.insert(owned.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : owned) argv.push_back(a.data());
  argv.push_back(nullptr);
  return RunWorkerMain(static_cast<int>(owned.size()), argv.data());
}

}  // namespace

int RunCli(int argc, char** argv) {
  CLI::App app{"psgrid: data-parallel neural-network training on a parameter server"};
  app.require_subcommand(1);

  // local
  LocalRunOptions local;
  bool single_process = false;
  bool local_json = false;
  int blas_threads = 0;
  std::string backend = "cpu";
  std::string local_format = "table";
  CLI::App* local_cmd = app.add_subcommand(
      "local", "Run a whole job on this machine: a server in this process and worker processes");
  local_cmd->add_option("spec", local.spec_path, "Job spec file (YAML or JSON)")->required();
  AddOverrideOptions(local_cmd, &local.overrides);
  local_cmd->add_option("--threads", local.threads, "OpenBLAS threads per worker process")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  local_cmd->add_option("--slow-worker", local.slow_worker,
                        "Make the last worker's steps this many times as long (a straggler)")
      ->check(CLI::Range(1.0, 100.0));
  bool no_shared_memory = false;
  local_cmd->add_flag("--no-shared-memory", no_shared_memory,
                      "Workers exchange tensors over the network path on loopback (the raw-TCP "
                      "data plane), as remote ones do");
  local_cmd->add_option("--data-dir", local.data_dir,
                        "The server's directory (default: a temporary one, removed at the end)");
  local_cmd->add_option("--worker-binary", local.worker_binary,
                        "The psgrid program the workers run (default: this one)");
  AddOutputOption(local_cmd, &local_format);
  local_cmd->add_flag("--json", local_json, "Same as -o json");
  local_cmd->add_option("--export", local.export_path,
                        "Write the final weights to this .safetensors file");
  CLI::Option* single_process_flag = local_cmd->add_flag(
      "--single-process", single_process,
      "Train in this process alone (no server, no workers): the reference");
  // Only for --single-process: worker processes take --threads; a silent no-op would make a
  // benchmark measure something else than it says.
  local_cmd->add_option("--blas-threads", blas_threads,
                        "--single-process: OpenBLAS threads (0 = OpenBLAS default)")
      ->check(CLI::NonNegativeNumber)
      ->needs(single_process_flag);
  local_cmd->add_option("--backend", backend, "--single-process: compute backend")
      ->capture_default_str()
      ->needs(single_process_flag);
  std::string devices;
  local_cmd
      ->add_option("--device", devices,
                   "The workers' compute device: cpu (default), cuda, cuda:N or auto; a "
                   "comma-separated list mixes them (worker i takes entry i mod the count)")
      ->check(CLI::Validator(CheckDeviceList, "DEVICE[,DEVICE...]"))
      ->excludes(single_process_flag);

  // submit, list, status, watch, stop
  ServerFlags server;
  std::string spec_path;
  SpecOverrides submit_overrides;
  CLI::App* submit_cmd = app.add_subcommand("submit", "Submit a job; prints its id");
  submit_cmd->add_option("spec", spec_path, "Job spec file (YAML or JSON)")->required();
  AddOverrideOptions(submit_cmd, &submit_overrides);
  AddServerOptions(submit_cmd, &server);

  std::string format = "table";
  std::string job_id;
  CLI::App* list_cmd = app.add_subcommand("list", "List the server's jobs");
  AddServerOptions(list_cmd, &server);
  AddOutputOption(list_cmd, &format);
  CLI::App* status_cmd = app.add_subcommand("status", "Show a job's status");
  CLI::App* watch_cmd = app.add_subcommand(
      "watch", "Follow a job to its end (exit 0 when it completes, 1 when it fails or stops)");
  CLI::App* stop_cmd = app.add_subcommand("stop", "Stop a job");
  for (CLI::App* cmd : {status_cmd, watch_cmd, stop_cmd}) {
    cmd->add_option("job", job_id, "Job id")->required();
    AddServerOptions(cmd, &server);
    AddOutputOption(cmd, &format);
  }

  // snapshot take|list|verify, export
  std::string snapshot_id;
  std::string export_path;
  CLI::App* snapshot_cmd = app.add_subcommand("snapshot", "Take, list and verify snapshots");
  snapshot_cmd->require_subcommand(1);
  CLI::App* snap_take_cmd = snapshot_cmd->add_subcommand(
      "take", "Snapshot a job now; answers when the snapshot is on the server's disk");
  CLI::App* snap_list_cmd = snapshot_cmd->add_subcommand("list", "List a job's snapshots");
  CLI::App* snap_verify_cmd = snapshot_cmd->add_subcommand(
      "verify", "Check every checksum of a snapshot (exit 1, DATA_LOSS, when it is corrupt)");
  CLI::App* snap_restore_cmd = snapshot_cmd->add_subcommand(
      "restore", "Roll a running or ended job back to a snapshot and continue it from there");
  for (CLI::App* cmd : {snap_take_cmd, snap_list_cmd, snap_verify_cmd, snap_restore_cmd}) {
    cmd->add_option("job", job_id, "Job id")->required();
    AddServerOptions(cmd, &server);
    AddOutputOption(cmd, &format);
  }
  for (CLI::App* cmd : {snap_verify_cmd, snap_restore_cmd}) {
    cmd->add_option("snapshot", snapshot_id, "Snapshot id")->required();
  }
  CLI::App* export_cmd = app.add_subcommand(
      "export", "Write a job's weights (or a snapshot's) as a safetensors file for PyTorch");
  export_cmd->add_option("job", job_id, "Job id")->required();
  export_cmd->add_option("snapshot", snapshot_id, "Snapshot id (default: the current weights)");
  export_cmd->add_option("-o,--output", export_path, "The .safetensors file to write")->required();
  AddServerOptions(export_cmd, &server);

  // evaluate FILE --spec SPEC | JOB [SNAP]
  std::string evaluate_target;
  std::string evaluate_spec;
  CLI::App* evaluate_cmd = app.add_subcommand(
      "evaluate",
      "Test loss and accuracy of FILE.safetensors (with --spec) or of a job's or snapshot's weights");
  evaluate_cmd->add_option("target", evaluate_target, "FILE.safetensors, or a job id")->required();
  evaluate_cmd->add_option("snapshot", snapshot_id, "With a job id: a snapshot id");
  evaluate_cmd->add_option("--spec", evaluate_spec, "With a file: the job spec of its model and data");
  AddServerOptions(evaluate_cmd, &server);
  AddOutputOption(evaluate_cmd, &format);

  // worker: everything after it goes to the worker's own parser.
  CLI::App* worker_cmd = app.add_subcommand(
      "worker", "Run a worker process: --server ADDR [--job ID] [--threads N] [--quiet]");
  worker_cmd->prefix_command();
  worker_cmd->allow_extras();
  worker_cmd->set_help_flag();

  // summary, version
  std::string summary_spec;
  CLI::App* summary_cmd = app.add_subcommand("summary", "Print the model summary of a job spec");
  summary_cmd->add_option("spec", summary_spec, "Job spec file (YAML or JSON)")->required();
  CLI::App* version_cmd = app.add_subcommand("version", "Print the version");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? kExitOk : kExitUsage;
  }

  if (*local_cmd) {
    local.output = local_json ? OutputFormat::kJson : ToFormat(local_format);
    local.shared_memory = !no_shared_memory;
    if (!devices.empty()) local.devices = absl::StrSplit(devices, ',');
    if (single_process) {
      SingleProcessOptions opts;
      opts.spec_path = local.spec_path;
      opts.overrides = local.overrides;
      opts.blas_threads = blas_threads;
      opts.backend = backend;
      opts.output = local.output;
      const absl::Status s = RunSingleProcess(opts);
      return s.ok() ? kExitOk : PrintError(s);
    }
    return RunLocalJob(local);
  }
  if (*submit_cmd) return RunSubmitCommand(server, spec_path, submit_overrides);
  if (*list_cmd) return RunListCommand(server, ToFormat(format));
  if (*status_cmd) return RunStatusCommand(server, job_id, ToFormat(format));
  if (*watch_cmd) return RunWatchCommand(server, job_id, ToFormat(format));
  if (*stop_cmd) return RunStopCommand(server, job_id, ToFormat(format));
  if (*snap_take_cmd) return RunSnapshotTakeCommand(server, job_id, ToFormat(format));
  if (*snap_list_cmd) return RunSnapshotListCommand(server, job_id, ToFormat(format));
  if (*snap_verify_cmd) {
    return RunSnapshotVerifyCommand(server, job_id, snapshot_id, ToFormat(format));
  }
  if (*snap_restore_cmd) {
    return RunSnapshotRestoreCommand(server, job_id, snapshot_id, ToFormat(format));
  }
  if (*evaluate_cmd) {
    if (!evaluate_spec.empty()) {
      return RunEvaluateFileCommand(evaluate_target, evaluate_spec, ToFormat(format));
    }
    return RunEvaluateJobCommand(server, evaluate_target, snapshot_id, ToFormat(format));
  }
  if (*export_cmd) return RunExportCommand(server, job_id, snapshot_id, export_path);
  if (*worker_cmd) return RunWorkerCommand(worker_cmd->remaining());
  if (*summary_cmd) {
    const absl::Status s = RunSummary(summary_spec);
    return s.ok() ? kExitOk : PrintError(s);
  }
  if (*version_cmd) {
    std::printf("psgrid %s (OpenBLAS %s kernel)\n", PSGRID_VERSION, BlasKernelName().c_str());
    return kExitOk;
  }
  return kExitUsage;
}

}  // namespace psgrid
