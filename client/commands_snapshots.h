// The subcommands for snapshots and weights: `psgrid snapshot take|list|verify` and
// `psgrid export`. Each returns the process exit code (command_util.h) and prints errors as
// "psgrid: error: ..." on stderr (a corrupt snapshot: DATA_LOSS naming the tensor or file).
#ifndef PSGRID_CLIENT_COMMANDS_SNAPSHOTS_H_
#define PSGRID_CLIENT_COMMANDS_SNAPSHOTS_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "client/commands_jobs.h"
#include "core/tensor.h"

namespace psgrid {

int RunSnapshotTakeCommand(const ServerFlags& server, const std::string& job_id,
                           OutputFormat format);
// `-o json`: a list of objects with id, step, created (unix seconds) and bytes.
int RunSnapshotListCommand(const ServerFlags& server, const std::string& job_id,
                           OutputFormat format);
int RunSnapshotVerifyCommand(const ServerFlags& server, const std::string& job_id,
                             const std::string& snapshot_id, OutputFormat format);
// Rolls the job back to the snapshot; prints the job's status afterwards.
int RunSnapshotRestoreCommand(const ServerFlags& server, const std::string& job_id,
                              const std::string& snapshot_id, OutputFormat format);
// The job's current weights, or a snapshot's, as a safetensors file at `path`.
int RunExportCommand(const ServerFlags& server, const std::string& job_id,
                     const std::string& snapshot_id, const std::string& path);

// Writes `tensors` (PyTorch state-dict names and shapes) as a safetensors file that
// torch.nn.Sequential of the same layers loads with load_state_dict(strict=True); the metadata
// names the job and the step.
absl::Status WriteWeightsFile(const std::string& path, const std::string& job_id, int64_t step,
                              const std::vector<std::pair<std::string, Tensor>>& tensors);

}  // namespace psgrid

#endif  // PSGRID_CLIENT_COMMANDS_SNAPSHOTS_H_
