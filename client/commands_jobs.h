// The subcommands that talk to a running psgrid server: submit, list, status, watch, stop.
// Each returns the process exit code (command_util.h) and prints errors as
// "psgrid: error: ..." on stderr.
#ifndef PSGRID_CLIENT_COMMANDS_JOBS_H_
#define PSGRID_CLIENT_COMMANDS_JOBS_H_

#include <memory>
#include <string>

#include "client/command_util.h"
#include "client/job_format.h"
#include "client/rpc/grpc_control_client.h"

namespace psgrid {

inline constexpr char kDefaultServerAddress[] = "127.0.0.1:7070";

struct ServerFlags {
  std::string address = kDefaultServerAddress;  // --server or PSGRID_SERVER
  double connect_timeout_seconds = 5;
};

// A Control client for the server the flags name (waits up to their connect timeout).
absl::StatusOr<std::unique_ptr<ControlClient>> ConnectToServer(const ServerFlags& server);

// Prints the new job's id alone on stdout (a hint on starting workers on stderr).
int RunSubmitCommand(const ServerFlags& server, const std::string& spec_path,
                     const SpecOverrides& overrides);
int RunListCommand(const ServerFlags& server, OutputFormat format);
int RunStatusCommand(const ServerFlags& server, const std::string& job_id, OutputFormat format);
// Follows the job to its end: 0 when it completed, 1 when it failed or was stopped.
int RunWatchCommand(const ServerFlags& server, const std::string& job_id, OutputFormat format);
int RunStopCommand(const ServerFlags& server, const std::string& job_id, OutputFormat format);

}  // namespace psgrid

#endif  // PSGRID_CLIENT_COMMANDS_JOBS_H_
