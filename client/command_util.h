// Pieces the psgrid subcommands share: error reporting and job files with command-line
// overrides. Thread-compatible free functions.
#ifndef PSGRID_CLIENT_COMMAND_UTIL_H_
#define PSGRID_CLIENT_COMMAND_UTIL_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "psgrid/v1/job.pb.h"

namespace psgrid {

// Exit codes of the command line.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;  // a command that failed, or a job that did not complete
inline constexpr int kExitUsage = 2;
inline constexpr int kExitInterrupted = 130;  // SIGINT/SIGTERM (128 + SIGINT, as shells do)

// Prints "psgrid: error: <message> (<CODE>)" on stderr; returns kExitFailed.
int PrintError(const absl::Status& status);

// Prefixes a spec error (INVALID_ARGUMENT, which names the field) with the job file's path.
absl::Status WithSpecSource(const std::string& spec_path, absl::Status status);
template <typename T>
absl::StatusOr<T> WithSpecSource(const std::string& spec_path, absl::StatusOr<T> result) {
  if (result.ok()) return result;
  return WithSpecSource(spec_path, result.status());
}

// Values given on the command line that replace the job file's (0 / -1: keep the file's).
struct SpecOverrides {
  int workers = 0;
  int epochs = 0;
  int64_t max_steps = -1;
  std::string consistency;  // "" = the spec's
  int staleness = -1;
  int backup_workers = -1;
};

// Reads, decodes and validates a job file, then applies the overrides. Errors name the file
// and field.
absl::StatusOr<v1::JobSpec> LoadJobSpecWithOverrides(const std::string& spec_path,
                                                     const SpecOverrides& overrides);

}  // namespace psgrid

#endif  // PSGRID_CLIENT_COMMAND_UTIL_H_
