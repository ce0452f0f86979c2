// The `psgrid` command line: parses arguments and runs a subcommand.
//
//   psgrid local SPEC [--epochs N] [--max-steps N] [--blas-threads N] [--json]
//   psgrid summary SPEC
//   psgrid version
#ifndef PSGRID_CLIENT_CLI_H_
#define PSGRID_CLIENT_CLI_H_

namespace psgrid {

// Returns the process exit code: 0 on success, 1 on a failed command, 2 on bad usage.
int RunCli(int argc, char** argv);

}  // namespace psgrid

#endif  // PSGRID_CLIENT_CLI_H_
