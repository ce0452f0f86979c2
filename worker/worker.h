// Worker: joins a job, trains on its shard of the data and exchanges gradients and parameters
// with the parameter server until the job ends.
//
// Loop: register (rank r of W, the spec) → load data, build the model → pull version 0 →
// for each step t: gather its batch (BatchSampler, rank r) → forward/backward, each layer's
// gradient announced as backward produces it (ParameterClient::PushPart) → push the gradient
// for step t → gather the next batch while the server finishes the step → pull version t+1
// (sync; in ssp and async the pull names the worker's step t+1 and gets the newest version the
// consistency model allows). Rank 0 also evaluates the test set at every epoch's end and after
// the last step, and reports it. A heartbeat thread keeps the job aware of the
// worker. All maths goes through core/. Not thread-safe: one Run() per Worker.
//
// Devices. With a device backend (CUDA) the model lives on the device: each pulled version is
// copied host → device, and each layer's gradient device → host (into pinned memory) as soon as
// backward has produced it, then sent. Shared memory (options.shared_memory) is for CPU workers
// only: a device worker says so and goes over the transport's network path.
#ifndef PSGRID_WORKER_WORKER_H_
#define PSGRID_WORKER_WORKER_H_

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "core/backend/backend.h"
#include "worker/parameter_client.h"

namespace psgrid {

struct WorkerOptions {
  std::string job_id;                                   // "" = any job that needs workers
  std::string name;                                     // "" = host:pid
  absl::Duration rpc_timeout = absl::Seconds(60);       // per push/pull
  absl::Duration wait_for_job = absl::Hours(24 * 365);  // how long to wait for a job at all
  absl::Duration heartbeat_period = absl::Seconds(1);
  bool verbose = true;                                  // progress lines on stderr
  bool shared_memory = false;  // exchange tensors through shared memory (same machine as server)
  // >= 1: each step's computation and push are made this many times as long (by sleeping
  // before the push), to study a straggler (benchmarks of the consistency models).
  double slowdown = 1.0;
};

class Worker {
 public:
  // `client` and `backend` (any: "cpu", a GPU's, a test's) are borrowed and must outlive Run().
  Worker(ParameterClient* client, Backend* backend, WorkerOptions options);

  // Runs until the job ends. OK when the job completed or was stopped; an error when the job
  // failed, the server stayed unreachable, or the data or spec could not be used.
  absl::Status Run();

 private:
  ParameterClient* client_;
  Backend* backend_;
  WorkerOptions options_;
};

}  // namespace psgrid

#endif  // PSGRID_WORKER_WORKER_H_
