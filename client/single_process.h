// `psgrid local SPEC --single-process`: trains the whole job in this process (LocalTrainer),
// the one-process reference the benchmarks compare with.
#ifndef PSGRID_CLIENT_SINGLE_PROCESS_H_
#define PSGRID_CLIENT_SINGLE_PROCESS_H_

#include <string>

#include "absl/status/status.h"
#include "client/command_util.h"
#include "client/job_format.h"

namespace psgrid {

struct SingleProcessOptions {
  std::string spec_path;
  SpecOverrides overrides;
  int blas_threads = 0;  // 0 = OpenBLAS's default
  std::string backend = "cpu";
  OutputFormat output = OutputFormat::kTable;
};

// Progress per epoch on stdout (stderr with JSON output, whose result object is then the last
// line of stdout). Errors name the spec file and field.
absl::Status RunSingleProcess(const SingleProcessOptions& options);

}  // namespace psgrid

#endif  // PSGRID_CLIENT_SINGLE_PROCESS_H_
