#include "client/child_process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

extern char** environ;

namespace psgrid {
namespace {

// How often WaitFor looks at the child: short next to the waits it serves (seconds).
constexpr absl::Duration kPollPeriod = absl::Milliseconds(20);
// How long Terminate waits for the kernel to end a process after SIGKILL.
constexpr absl::Duration kKillWait = absl::Seconds(10);

}  // namespace

absl::StatusOr<std::unique_ptr<ChildProcess>> ChildProcess::Spawn(
    const std::vector<std::string>& argv) {
  if (argv.empty()) return absl::InvalidArgumentError("no program to start");
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGINT);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                      POSIX_SPAWN_SETPGROUP);
  // Children are marked, so that a child that is (by mistake) not a worker but another
  // `psgrid local` refuses to start workers of its own instead of multiplying.
  std::vector<char*> env;
  for (char** e = environ; *e != nullptr; ++e) env.push_back(*e);
  std::string mark = std::string(kSpawnedChildVariable) + "=1";
  env.push_back(mark.data());
  env.push_back(nullptr);
  pid_t pid = 0;
  const int error = posix_spawn(&pid, args[0], &actions, &attr, args.data(), env.data());
  posix_spawnattr_destroy(&attr);
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) {
    return absl::InternalError(
        absl::StrCat("cannot start ", absl::StrJoin(argv, " "), ": ", std::strerror(error)));
  }
  return std::unique_ptr<ChildProcess>(new ChildProcess(pid));
}

ChildProcess::~ChildProcess() {
  if (!exited_) {
    Signal(SIGKILL);
    while (!exited_) {
      int status = 0;
      const pid_t r = waitpid(pid_, &status, 0);
      if (r == pid_) {
        exited_ = true;
        wait_status_ = status;
      } else if (r < 0 && errno != EINTR) {
        break;  // not our child any more (reaped elsewhere): nothing left to do
      }
    }
  }
}

bool ChildProcess::Poll() {
  if (exited_) return true;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exited_ = true;
    wait_status_ = status;
  } else if (r < 0 && errno == ECHILD) {
    exited_ = true;  // reaped by someone else; its status is lost
    wait_status_ = 0xff00;  // reads as "exited with status 255"
  }
  return exited_;
}

bool ChildProcess::succeeded() const {
  return exited_ && WIFEXITED(wait_status_) && WEXITSTATUS(wait_status_) == 0;
}

std::string ChildProcess::DescribeExit() const {
  if (!exited_) return "is running";
  if (WIFEXITED(wait_status_)) return absl::StrCat("exited with status ", WEXITSTATUS(wait_status_));
  if (WIFSIGNALED(wait_status_)) {
    const int sig = WTERMSIG(wait_status_);
    const char* name = strsignal(sig);
    return absl::StrCat("was killed by signal ", sig, name != nullptr ? absl::StrCat(" (", name, ")") : "");
  }
  return absl::StrCat("ended with wait status ", wait_status_);
}

bool ChildProcess::WaitFor(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!Poll()) {
    const absl::Time now = absl::Now();
    if (now >= deadline) return false;
    absl::SleepFor(std::min(kPollPeriod, deadline - now));
  }
  return true;
}

void ChildProcess::Signal(int signal) {
  if (!exited_) kill(pid_, signal);
}

void ChildProcess::Terminate(absl::Duration grace) {
  Signal(SIGTERM);
  if (WaitFor(grace)) return;
  Signal(SIGKILL);
  WaitFor(kKillWait);  // SIGKILL cannot be caught; the destructor reaps it if this was not enough
}

}  // namespace psgrid
