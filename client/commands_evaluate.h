// `psgrid evaluate`: test loss and accuracy of weights on a job's test data, computed on this
// machine. The weights come from a safetensors file (with the job spec that describes the
// model and data) or from a job or snapshot on a server (whose spec comes with them).
#ifndef PSGRID_CLIENT_COMMANDS_EVALUATE_H_
#define PSGRID_CLIENT_COMMANDS_EVALUATE_H_

#include <string>

#include "client/commands_jobs.h"

namespace psgrid {

// `psgrid evaluate FILE.safetensors --spec SPEC`.
int RunEvaluateFileCommand(const std::string& weights_path, const std::string& spec_path,
                           OutputFormat format);
// `psgrid evaluate JOB [SNAP]`: the job's current weights, or the snapshot's.
int RunEvaluateJobCommand(const ServerFlags& server, const std::string& job_id,
                          const std::string& snapshot_id, OutputFormat format);

}  // namespace psgrid

#endif  // PSGRID_CLIENT_COMMANDS_EVALUATE_H_
