#include "client/commands_snapshots.h"

#include <cstdio>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "client/rpc/grpc_control_client.h"
#include "server/job.h"
#include "core/io/safetensors.h"
#include "nlohmann/json.hpp"

namespace psgrid {
namespace {

nlohmann::json ToJson(const v1::SnapshotInfo& s) {
  return {{"id", s.snapshot_id()}, {"job", s.job_id()}, {"step", s.step()},
          {"created", s.created()}, {"bytes", s.bytes()}};
}

std::string CreatedText(int64_t unix_seconds) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixSeconds(unix_seconds),
                          absl::LocalTimeZone());
}

void PrintSnapshot(const v1::SnapshotInfo& s, OutputFormat format, const char* what) {
  if (format == OutputFormat::kJson) {
    std::printf("%s\n", ToJson(s).dump().c_str());
  } else {
    std::printf("%s %s of job %s: step %lld, %lld bytes, created %s\n", what,
                s.snapshot_id().c_str(), s.job_id().c_str(), static_cast<long long>(s.step()),
                static_cast<long long>(s.bytes()), CreatedText(s.created()).c_str());
  }
  std::fflush(stdout);
}

}  // namespace

int RunSnapshotTakeCommand(const ServerFlags& server, const std::string& job_id,
                           OutputFormat format) {
  absl::StatusOr<std::unique_ptr<ControlClient>> client = ConnectToServer(server);
  if (!client.ok()) return PrintError(client.status());
  absl::StatusOr<v1::SnapshotInfo> info = (*client)->TakeSnapshot(job_id);
  if (!info.ok()) return PrintError(info.status());
  PrintSnapshot(*info, format, "snapshot");
  return kExitOk;
}

int RunSnapshotListCommand(const ServerFlags& server, const std::string& job_id,
                           OutputFormat format) {
  absl::StatusOr<std::unique_ptr<ControlClient>> client = ConnectToServer(server);
  if (!client.ok()) return PrintError(client.status());
  absl::StatusOr<std::vector<v1::SnapshotInfo>> all = (*client)->ListSnapshots(job_id);
  if (!all.ok()) return PrintError(all.status());
  if (format == OutputFormat::kJson) {
    nlohmann::json list = nlohmann::json::array();
    for (const v1::SnapshotInfo& s : *all) list.push_back(ToJson(s));
    std::printf("%s\n", list.dump().c_str());
  } else if (all->empty()) {
    std::printf("job %s has no snapshots\n", job_id.c_str());
  } else {
    std::printf("%-36s %10s %14s  %s\n", "ID", "STEP", "BYTES", "CREATED");
    for (const v1::SnapshotInfo& s : *all) {
      std::printf("%-36s %10lld %14lld  %s\n", s.snapshot_id().c_str(),
                  static_cast<long long>(s.step()), static_cast<long long>(s.bytes()),
                  CreatedText(s.created()).c_str());
    }
  }
  std::fflush(stdout);
  return kExitOk;
}

int RunSnapshotVerifyCommand(const ServerFlags& server, const std::string& job_id,
                             const std::string& snapshot_id, OutputFormat format) {
  absl::StatusOr<std::unique_ptr<ControlClient>> client = ConnectToServer(server);
  if (!client.ok()) return PrintError(client.status());
  absl::StatusOr<v1::SnapshotInfo> info = (*client)->VerifySnapshot(job_id, snapshot_id);
  if (!info.ok()) return PrintError(info.status());
  PrintSnapshot(*info, format, "verified snapshot");
  return kExitOk;
}

int RunSnapshotRestoreCommand(const ServerFlags& server, const std::string& job_id,
                              const std::string& snapshot_id, OutputFormat format) {
  absl::StatusOr<std::unique_ptr<ControlClient>> client = ConnectToServer(server);
  if (!client.ok()) return PrintError(client.status());
  absl::StatusOr<v1::JobStatus> status = (*client)->RestoreSnapshot(job_id, snapshot_id);
  if (!status.ok()) return PrintError(status.status());
  if (format == OutputFormat::kJson) {
    std::printf("%s\n", JobStatusJson(*status, /*with_spec=*/false).c_str());
  } else {
    std::printf("job %s rolled back to snapshot %s: %s at step %lld%s%s\n", job_id.c_str(),
                snapshot_id.c_str(), JobStateName(status->state()).c_str(),
                static_cast<long long>(status->step()), status->message().empty() ? "" : "; ",
                status->message().c_str());
  }
  std::fflush(stdout);
  return kExitOk;
}

absl::Status WriteWeightsFile(const std::string& path, const std::string& job_id, int64_t step,
                              const std::vector<std::pair<std::string, Tensor>>& tensors) {
  std::vector<NamedTensorView> views;
  for (const auto& [name, tensor] : tensors) views.push_back({name, tensor.shape(), tensor.data()});
  return WriteSafetensors(path, views,
                          {{"format", "pt"}, {"psgrid.job", job_id},
                           {"psgrid.step", absl::StrCat(step)}});
}

int RunExportCommand(const ServerFlags& server, const std::string& job_id,
                     const std::string& snapshot_id, const std::string& path) {
  absl::StatusOr<std::unique_ptr<ControlClient>> client = ConnectToServer(server);
  if (!client.ok()) return PrintError(client.status());
  absl::StatusOr<ControlClient::Weights> weights = (*client)->ExportWeights(job_id, snapshot_id);
  if (!weights.ok()) return PrintError(weights.status());
  if (absl::Status s = WriteWeightsFile(path, job_id, weights->step, weights->tensors); !s.ok()) {
    return PrintError(s);
  }
  std::fprintf(stderr, "psgrid: weights of job %s at step %lld (%zu tensors) written to %s\n",
               job_id.c_str(), static_cast<long long>(weights->step), weights->tensors.size(),
               path.c_str());
  return kExitOk;
}

}  // namespace psgrid
