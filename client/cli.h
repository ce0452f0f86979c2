// The `psgrid` command line: parses arguments and runs a subcommand.
//
//   psgrid local SPEC [--workers N] [--threads T] [--epochs N] [--max-steps N]
//                     [--data-dir DIR] [--worker-binary PATH] [--device D[,D...]]
//                     [-o table|json]
//   psgrid local SPEC --single-process [--blas-threads N] [--backend cpu] [-o json]
//   psgrid submit SPEC [--workers N] [--epochs N] [--max-steps N]
//   psgrid list [-o table|json]
//   psgrid status JOB [-o table|json]
//   psgrid watch JOB [-o table|json]
//   psgrid stop JOB [-o table|json]
//   psgrid worker --server ADDR [--job ID] [--threads N] ...   (what `local` starts)
//   psgrid summary SPEC
//   psgrid version
//
// The commands that talk to a server take --server HOST:PORT (default: $PSGRID_SERVER, else
// 127.0.0.1:7070) and --connect-timeout SECONDS.
#ifndef PSGRID_CLIENT_CLI_H_
#define PSGRID_CLIENT_CLI_H_

namespace psgrid {

// Returns the process exit code: 0 on success, 1 on a failed command (or a job that failed or
// was stopped), 2 on bad usage, 130 when `local` was interrupted.
int RunCli(int argc, char** argv);

}  // namespace psgrid

#endif  // PSGRID_CLIENT_CLI_H_
