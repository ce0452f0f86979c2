// The psgrid-worker command line (also `psgrid worker ...`):
//
//   psgrid-worker --server ADDR [--job ID] [--threads N] [--connect-timeout SECONDS] [--quiet]
//
// Connects to the parameter server (default: $PSGRID_SERVER, else 127.0.0.1:7070), joins the
// given job or any job that needs workers, and trains until the job ends.
#ifndef PSGRID_WORKER_WORKER_MAIN_H_
#define PSGRID_WORKER_WORKER_MAIN_H_

namespace psgrid {

// Parses the arguments (argv[0] is the program's name, whatever it is) and runs a worker.
// Returns the exit code: 0 when the job completed or was stopped, 1 with
// "psgrid-worker: error: <message>" on stderr when it failed, 2 for bad usage.
int RunWorkerMain(int argc, char** argv);

}  // namespace psgrid

#endif  // PSGRID_WORKER_WORKER_MAIN_H_
