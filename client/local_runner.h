// `psgrid local SPEC`: a whole distributed job on this machine. Starts a parameter server in
// this process on a free loopback port, submits the job, starts its workers as child processes
// (`psgrid worker --server 127.0.0.1:PORT --job ID ...`), watches the job to its end and shuts
// everything down: workers get a bounded time to exit before SIGTERM and SIGKILL (by PID, only
// the processes it started). A worker that exits while the job runs fails the job at once,
// naming the worker; SIGINT or SIGTERM stops the job the same orderly way.
#ifndef PSGRID_CLIENT_LOCAL_RUNNER_H_
#define PSGRID_CLIENT_LOCAL_RUNNER_H_

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "client/command_util.h"
#include "client/job_format.h"

namespace psgrid {

struct LocalRunOptions {
  std::string spec_path;
  SpecOverrides overrides;
  int threads = 1;            // OpenBLAS threads per worker process
  double slow_worker = 1.0;   // > 1: the last worker's steps take this many times as long
  bool shared_memory = true;  // workers exchange tensors through shared memory where they can
  std::string data_dir;       // the server's directory; "" = a temporary one, removed at the end
  std::string worker_binary;  // the psgrid program the workers run; "" = this program
  // The workers' --device (cpu, cuda, cuda:N, auto), worker i taking devices[i mod size]: one
  // name for all, or several to mix them in one job. Empty: cpu.
  std::vector<std::string> devices;
  std::string export_path;    // "" = none; else the final weights as a safetensors file
  OutputFormat output = OutputFormat::kTable;
  absl::Duration worker_exit_grace = absl::Seconds(10);  // after the job ends
};

// Progress on stdout (on stderr with JSON output, whose result object is then the last line of
// stdout). Returns the exit code: 0 when the job completed, 1 when it failed or was stopped or
// could not be run, 130 when interrupted by SIGINT or SIGTERM. Installs SIGINT and SIGTERM
// handlers while it runs (the previous ones are restored); one run at a time per process.
int RunLocalJob(const LocalRunOptions& options);

}  // namespace psgrid

#endif  // PSGRID_CLIENT_LOCAL_RUNNER_H_
