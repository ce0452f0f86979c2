// Job files: YAML or JSON text decoded into psgrid.v1.JobSpec, with defaults and field checks.
//
//   absl::StatusOr<v1::JobSpec> spec = LoadJobSpecFile("examples/fmnist_mlp.yaml");
//
// One schema (job.proto), two encodings: YAML is turned into JSON and read by protobuf's JSON
// parser, so an unknown field or a value of the wrong type is rejected with the field named.
// Checks that need the model or the data (layer types, layer sizes) live in core/model.h.
#ifndef PSGRID_PROTO_JOB_SPEC_CODEC_H_
#define PSGRID_PROTO_JOB_SPEC_CODEC_H_

#include <string>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "psgrid/v1/job.pb.h"

namespace psgrid {

// Parses YAML or JSON text; `source` names it in error messages. Fills defaults, then
// validates. INVALID_ARGUMENT names the offending field, e.g. "training.workers".
absl::StatusOr<v1::JobSpec> ParseJobSpec(absl::string_view text, absl::string_view source);

// Reads and parses a job file. NOT_FOUND if it cannot be read.
absl::StatusOr<v1::JobSpec> LoadJobSpecFile(const std::string& path);

// Fills unset fields with their documented defaults (idempotent).
void ApplyJobSpecDefaults(v1::JobSpec* spec);

// Checks value ranges and names that need neither the model nor the data.
absl::Status ValidateJobSpec(const v1::JobSpec& spec);

// The spec as compact JSON (for logs and for echoing back to the user).
std::string JobSpecToJson(const v1::JobSpec& spec);

}  // namespace psgrid

#endif  // PSGRID_PROTO_JOB_SPEC_CODEC_H_
