#include "client/commands_jobs.h"

#include <cstdio>
#include <memory>
#include <vector>

#include "absl/time/time.h"
#include "client/progress_printer.h"
#include "client/rpc/grpc_control_client.h"

namespace psgrid {
absl::StatusOr<std::unique_ptr<ControlClient>> ConnectToServer(const ServerFlags& server) {
  return ControlClient::Connect(server.address, absl::Seconds(server.connect_timeout_seconds));
}

int RunSubmitCommand(const ServerFlags& server, const std::string& spec_path,
                     const SpecOverrides& overrides) {
  absl::StatusOr<v1::JobSpec> spec = LoadJobSpecWithOverrides(spec_path, overrides);
  if (!spec.ok()) return PrintError(spec.status());
  absl::StatusOr<std::unique_ptr<ControlClient>> client = ConnectToServer(server);
  if (!client.ok()) return PrintError(client.status());
  absl::StatusOr<std::string> id = WithSpecSource(spec_path, (*client)->Submit(*spec));
  if (!id.ok()) return PrintError(id.status());
  std::fprintf(stderr,
               "psgrid: job %s submitted to %s; it starts when %d worker(s) have joined "
               "(psgrid worker --server %s --job %s)\n",
               id->c_str(), server.address.c_str(), spec->training().workers(),
               server.address.c_str(), id->c_str());
  std::fflush(stderr);
  std::printf("%s\n", id->c_str());
  std::fflush(stdout);
  return kExitOk;
}

int RunListCommand(const ServerFlags& server, OutputFormat format) {
  absl::StatusOr<std::unique_ptr<ControlClient>> client = ConnectToServer(server);
  if (!client.ok()) return PrintError(client.status());
  absl::StatusOr<std::vector<v1::JobStatus>> jobs = (*client)->List();
  if (!jobs.ok()) return PrintError(jobs.status());
  if (format == OutputFormat::kJson) {
    std::printf("%s\n", JobListJson(*jobs).c_str());
  } else {
    std::fputs(JobTable(*jobs).c_str(), stdout);
  }
  std::fflush(stdout);
  return kExitOk;
}

int RunStatusCommand(const ServerFlags& server, const std::string& job_id, OutputFormat format) {
  absl::StatusOr<std::unique_ptr<ControlClient>> client = ConnectToServer(server);
  if (!client.ok()) return PrintError(client.status());
  absl::StatusOr<v1::JobStatus> status = (*client)->Get(job_id);
  if (!status.ok()) return PrintError(status.status());
  if (format == OutputFormat::kJson) {
    std::printf("%s\n", JobStatusJson(*status).c_str());
  } else {
    std::fputs(JobDetails(*status).c_str(), stdout);
  }
  std::fflush(stdout);
  return kExitOk;
}

int RunWatchCommand(const ServerFlags& server, const std::string& job_id, OutputFormat format) {
  absl::StatusOr<std::unique_ptr<ControlClient>> client = ConnectToServer(server);
  if (!client.ok()) return PrintError(client.status());
  ProgressPrinter printer(stdout, ProgressPrinter::ModeFor(stdout, format));
  absl::StatusOr<v1::JobStatus> last = (*client)->Watch(job_id, [&](const v1::JobStatus& s) {
    printer.Update(s);
    return true;
  });
  printer.BreakLine();
  if (!last.ok()) return PrintError(last.status());
  return last->state() == v1::JOB_STATE_COMPLETED ? kExitOk : kExitFailed;
}

int RunStopCommand(const ServerFlags& server, const std::string& job_id, OutputFormat format) {
  absl::StatusOr<std::unique_ptr<ControlClient>> client = ConnectToServer(server);
  if (!client.ok()) return PrintError(client.status());
  absl::StatusOr<v1::JobStatus> status = (*client)->Stop(job_id);
  if (!status.ok()) return PrintError(status.status());
  if (format == OutputFormat::kJson) {
    std::printf("%s\n", JobStatusJson(*status, /*with_spec=*/false).c_str());
  } else {
    std::printf("%s\n", FinalLine(*status).c_str());
  }
  std::fflush(stdout);
  return kExitOk;
}

}  // namespace psgrid
