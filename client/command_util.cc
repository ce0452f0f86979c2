#include "client/command_util.h"

#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "proto/job_spec_codec.h"

namespace psgrid {

int PrintError(const absl::Status& status) {
  std::fflush(stdout);
  // The status code too, for scripts (and for DATA_LOSS, which users must not miss).
  std::fprintf(stderr, "psgrid: error: %s (%s)\n", std::string(status.message()).c_str(),
               absl::StatusCodeToString(status.code()).c_str());
  std::fflush(stderr);
  return kExitFailed;
}

absl::Status WithSpecSource(const std::string& spec_path, absl::Status status) {
  if (status.code() != absl::StatusCode::kInvalidArgument ||
      absl::StrContains(status.message(), spec_path)) {
    return status;
  }
  return absl::InvalidArgumentError(absl::StrCat(spec_path, ": ", status.message()));
}

absl::StatusOr<v1::JobSpec> LoadJobSpecWithOverrides(const std::string& spec_path,
                                                     const SpecOverrides& overrides) {
  ASSIGN_OR_RETURN(v1::JobSpec spec, WithSpecSource(spec_path, LoadJobSpecFile(spec_path)));
  v1::TrainingSpec* training = spec.mutable_training();
  if (overrides.workers > 0) training->set_workers(overrides.workers);
  if (overrides.epochs > 0) training->set_epochs(overrides.epochs);
  if (overrides.max_steps >= 0) training->set_max_steps(overrides.max_steps);
  if (!overrides.consistency.empty()) training->set_consistency(overrides.consistency);
  if (overrides.staleness >= 0) training->set_staleness(overrides.staleness);
  if (overrides.backup_workers >= 0) training->set_backup_workers(overrides.backup_workers);
  RETURN_IF_ERROR(WithSpecSource(spec_path, ValidateJobSpec(spec)));
  return spec;
}

}  // namespace psgrid
