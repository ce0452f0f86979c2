// JobManager: the jobs of one parameter server. Validates and admits submitted specs, finds
// jobs for joining workers, and watches worker liveness. Knows nothing of gRPC.
//
// Thread-safe. Jobs are kept for the manager's lifetime (ended ones too), so a shared_ptr<Job>
// it hands out stays valid.
#ifndef PSGRID_SERVER_JOB_MANAGER_H_
#define PSGRID_SERVER_JOB_MANAGER_H_

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/backend/backend.h"
#include "server/job.h"

namespace psgrid {

struct JobManagerOptions {
  std::string data_dir;                               // where job records go ("" = none)
  absl::Duration worker_timeout = absl::Seconds(30);  // silence after which a job fails
  absl::Duration liveness_period = absl::Seconds(1);
  // Offer workers on this machine shared-memory segments for their tensors.
  bool shared_memory = false;
};

class JobManager {
 public:
  explicit JobManager(JobManagerOptions options);
  // Stops the liveness thread; jobs still running are stopped for shutdown (not recorded as
  // ended: a server started later on the same data directory resumes them).
  ~JobManager();

  // Fills defaults, validates the spec and checks the model against the data's shape.
  // INVALID_ARGUMENT naming the field; NOT_FOUND when the data cannot be found.
  absl::StatusOr<std::string> Submit(v1::JobSpec spec);

  // NOT_FOUND naming the id.
  absl::StatusOr<std::shared_ptr<Job>> Get(const std::string& job_id) const;
  std::vector<std::shared_ptr<Job>> List() const;  // in submission order

  // A job that still needs workers: the given one, or with an empty id the oldest pending
  // one. Waits until `deadline` for one to appear; NOT_FOUND if none did.
  absl::StatusOr<std::shared_ptr<Job>> WaitForJobNeedingWorkers(const std::string& job_id,
                                                                absl::Time deadline);

  bool shared_memory() const { return options_.shared_memory; }

  // Snapshots every running job (graceful shutdown), each waiting until `deadline`; logs each
  // outcome and returns how many failed. Jobs without snapshots are skipped.
  int SnapshotAll(absl::Time deadline);
  // Graceful shutdown: stops every job that has not ended without recording it as ended, so
  // that the next server on this data directory resumes it.
  void StopAllForShutdown();
  // Rolls a job back to one of its snapshots (see Job::Restore). NOT_FOUND for an unknown job
  // or snapshot; DATA_LOSS for a damaged one.
  absl::Status RestoreSnapshot(const std::string& job_id, const std::string& snapshot_id);
  // At start-up: every job of the data directory that has not ended comes back, from its
  // newest snapshot that reads back whole (damaged ones are skipped, with the reason on
  // stderr), pending until its workers rejoin. Returns how many were resumed.
  int ResumeJobs();
  // Stops every job that has not ended (graceful shutdown).
  void StopAll(const std::string& reason);

 private:
  void LivenessLoop();
  absl::Status ResumeJob(const std::string& id, const std::string& dir);

  const JobManagerOptions options_;
  std::unique_ptr<Backend> backend_;  // the server's compute backend (optimizer updates)

  mutable absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<Job>> jobs_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> order_ ABSL_GUARDED_BY(mu_);
  int64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  std::thread liveness_thread_;
};

}  // namespace psgrid

#endif  // PSGRID_SERVER_JOB_MANAGER_H_
