// How the psgrid command line shows jobs: JSON objects, tables and progress lines made from
// JobStatus messages. Pure functions of their arguments (thread-safe).
#ifndef PSGRID_CLIENT_JOB_FORMAT_H_
#define PSGRID_CLIENT_JOB_FORMAT_H_

#include <string>
#include <vector>

#include "nlohmann/json_fwd.hpp"
#include "proto/job_state.h"
#include "psgrid/v1/service.pb.h"

namespace psgrid {

// `-o table|json` of the reading commands.
enum class OutputFormat { kTable, kJson };

// samples / wall_seconds over the whole training so far (the status's samples_per_second is
// the rate of the last second or so); that rate itself before any sample.
double AverageSamplesPerSecond(const v1::JobStatus& status);

// Why a pending job waits, e.g. "waiting for workers: 1 of 2 joined".
std::string PendingReason(const v1::JobStatus& status);

// One line of compact JSON: id, name, state (lower case), message, step, total_steps, epoch,
// epochs, train_loss, test_loss, test_accuracy, samples, samples_per_second, workers,
// workers_joined, wall_seconds and, when `with_spec`, the spec as an object.
std::string JobStatusJson(const v1::JobStatus& status, bool with_spec = true);
// A JSON array of JobStatusJson objects (without specs), on one line.
std::string JobListJson(const std::vector<v1::JobStatus>& jobs);

// One row per job under a header (ID, NAME, STATE, STEP, EPOCH, LOSS, TEST-ACC, SAMPLES/S,
// WORKERS), columns aligned; a line saying there are none when `jobs` is empty.
std::string JobTable(const std::vector<v1::JobStatus>& jobs);
// "key: value" lines describing one job.
std::string JobDetails(const v1::JobStatus& status);
// The consistency model's fields of a status (consistency, staleness_histogram,
// late_gradients, bad_gradients), for the JSON of `status` and `local`.
void AddConsistencyFields(const v1::JobStatus& status, nlohmann::ordered_json* j);

// "epoch 2/15  step 1876/14070  loss 0.4123  samples/s 23110  test-loss 0.4020  test-acc
// 0.8532  elapsed 8.1s" (test-acc only for classification jobs).
std::string EpochLine(const v1::JobStatus& status);
// A progress bar and the latest numbers (the epoch in progress, test accuracy, samples/s),
// at most `width` characters, for a terminal line.
std::string ProgressBarLine(const v1::JobStatus& status, int width);
// "job fmnist-mlp-1 completed: 14070 steps, 15 epochs, ..." (with the average samples/s) or
// "job X failed at step 12/100: <message>".
std::string FinalLine(const v1::JobStatus& status);

}  // namespace psgrid

#endif  // PSGRID_CLIENT_JOB_FORMAT_H_
