// ChildProcess: a program this process started (posix_spawn), known by its PID, which it
// waits for, signals and reaps — never any other process.
//
//   ASSIGN_OR_RETURN(auto child, ChildProcess::Spawn({"/usr/bin/psgrid", "worker", ...}));
//   if (!child->WaitFor(absl::Seconds(10))) child->Terminate(absl::Seconds(2));
//   std::string how = child->DescribeExit();   // "exited with status 1"
//
// The child gets /dev/null as stdin, its own process group (a terminal's Ctrl-C reaches only
// its parent, which then shuts it down in order), default signal handling and an empty signal
// mask; stdout and stderr are inherited. The destructor kills (SIGKILL) and reaps a child that
// is still running, so none is left behind. Not thread-safe: one thread at a time.
#ifndef PSGRID_CLIENT_CHILD_PROCESS_H_
#define PSGRID_CLIENT_CHILD_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace psgrid {

// Set in the environment of every child this process starts.
inline constexpr char kSpawnedChildVariable[] = "PSGRID_SPAWNED_CHILD";

class ChildProcess {
 public:
  // Starts argv[0] (a path) with the arguments. INTERNAL naming the program when it cannot be
  // started (e.g. not found or not executable).
  static absl::StatusOr<std::unique_ptr<ChildProcess>> Spawn(const std::vector<std::string>& argv);

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess();

  pid_t pid() const { return pid_; }

  // Reaps the child if it has exited, without blocking; true once it has.
  bool Poll();
  bool exited() const { return exited_; }
  // The raw wait status (valid once exited()).
  int wait_status() const { return wait_status_; }
  // True when it exited with status 0.
  bool succeeded() const;
  // "exited with status 1", "was killed by signal 9 (Killed)", or "is running".
  std::string DescribeExit() const;

  // Waits up to `timeout` for the child to exit; true once it has.
  bool WaitFor(absl::Duration timeout);
  // Sends `signal` unless the child has been reaped.
  void Signal(int signal);
  // SIGTERM, up to `grace` to exit, then SIGKILL; returns once the child is reaped (or, in
  // the rare case of a process the kernel takes long to end, after a bounded wait).
  void Terminate(absl::Duration grace);

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}

  const pid_t pid_;
  bool exited_ = false;
  int wait_status_ = 0;
};

}  // namespace psgrid

#endif  // PSGRID_CLIENT_CHILD_PROCESS_H_
