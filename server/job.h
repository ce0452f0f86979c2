// Job: one training job on the parameter server — its state machine, parameters, optimizer
// state, workers and synchronous step aggregation. Knows nothing of gRPC.
//
// States: pending (waiting for its workers) → running → completed | failed | stopped.
// Step t (training.consistency sync): every worker pushes one gradient computed on version t
// (the mean over its batch and its sample count); when all have arrived the job averages them
// weighted by sample count, applies the optimizer once and publishes version t+1. With backup
// workers the first W − k complete the step. In ssp a worker's gradient of its clock c (computed
// on a version ≥ c − s) waits in a per-clock sum until step c is due; in async each gradient is
// one update. After the last step the job waits for rank 0's evaluation of the final weights
// (ReportMetrics) and then completes. Gradients with NaN or Inf are rejected (and the job fails
// or skips them); weights that become non-finite fail the job.
//
// Thread-safe: every method may be called from any RPC thread.
#ifndef PSGRID_SERVER_JOB_H_
#define PSGRID_SERVER_JOB_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/backend/backend.h"
#include "core/data/loader.h"
#include "core/model.h"
#include "core/optimizer.h"
#include "core/parameters.h"
#include "core/shared_region.h"
#include "core/step_doorbell.h"
#include "core/io/snapshot_store.h"
#include "server/snapshotter.h"
#include "psgrid/v1/service.pb.h"

namespace psgrid {

struct WorkerAssignment {
  std::string worker_id;
  int rank;
  int world_size;
  int64_t total_steps;
};

struct GradientPush {
  std::string worker_id;
  int64_t step = 0;          // the version the gradient was computed on
  int64_t clock = 0;         // the worker's step count (ssp, async; sync uses `step`)
  int64_t sample_count = 0;  // samples behind the gradient (may be 0 at an epoch's tail)
  double loss_sum = 0;
  int64_t correct = 0;
  const Tensor* gradients = nullptr;  // arena in layout() order; borrowed for the call
  // A step's gradient may come in parts, as backward produces it from the last layer to the
  // first: this part says that the gradient is complete in [ready_from, arena size). 0 (the
  // whole gradient) is the step's last part; only it counts loss_sum and correct, and every
  // part carries the same sample_count.
  int64_t ready_from = 0;
};

// Where a worker on the server's machine exchanges tensors through shared memory.
struct SharedMemoryNames {
  std::string gradient_segment;   // the worker's: it writes a gradient there before a push
  std::string parameter_segment;  // the job's: the newest version, rewritten at each step
  std::string doorbell_segment;   // the worker's step doorbell (core/step_doorbell.h)
  int64_t arena_floats = 0;
};

// A shared-memory worker's side of the exchange (see Job::OpenSharedMemory).
struct SharedWorkerMemory {
  Tensor gradient;        // a view of the worker's gradient segment
  StepDoorbell* doorbell;  // its step doorbell
};

// Weights by name, as a PyTorch state dict has them.
struct NamedWeights {
  int64_t step = 0;
  std::vector<std::pair<std::string, Tensor>> tensors;
};

// An immutable published version of the parameters.
struct ParameterSnapshot {
  int64_t version = 0;
  v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
  std::shared_ptr<const Tensor> values;  // arena in layout() order
};

class Job {
 public:
  // Builds the model (checking it against the data shape) and initialises the parameters.
  // INVALID_ARGUMENT naming the spec field when the model does not fit. `backend` is
  // borrowed and must outlive the job.
  static absl::StatusOr<std::unique_ptr<Job>> Create(std::string id, const v1::JobSpec& spec,
                                                     const DataShape& data, Backend* backend);

  enum class Consistency { kSync, kSsp, kAsync };

  const std::string& id() const { return id_; }
  const v1::JobSpec& spec() const { return spec_; }
  // Versions the job makes (workers × worker_steps() in async, else worker_steps()).
  int64_t total_steps() const { return total_steps_; }
  // Steps (gradients) each worker computes.
  int64_t worker_steps() const { return worker_steps_; }
  Consistency consistency() const { return consistency_; }
  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  // Parameter names, shapes and offsets in the arena (never changes).
  const std::vector<ParamInfo>& layout() const { return layout_; }
  // Floats in a parameter or gradient arena (the layout's tensors and their alignment padding).
  int64_t arena_size() const { return arena_size_; }

  // Gives a joining worker its rank; the job starts running when the last one joins.
  // FAILED_PRECONDITION when the job has all its workers or has ended.
  absl::StatusOr<WorkerAssignment> AddWorker(const std::string& worker_name);
  bool NeedsWorkers() const;

  // Counts a gradient (or a part of one, see GradientPush::ready_from) for the current step;
  // returns true for a duplicate (a retry of a push or part already counted, for this or an
  // earlier step), which changes nothing. Each range of the arena is updated as soon as every
  // worker's gradient of it is in; the version advances when the whole arena is.
  // NOT_FOUND for an unknown worker; FAILED_PRECONDITION for a step ahead of the current one
  // or a job that is not running; INVALID_ARGUMENT for a negative sample count (or one that
  // differs between the parts of a step), a non-finite loss, a gradient arena of the wrong
  // size or a ready_from outside it. A rejected push changes nothing.
  absl::StatusOr<bool> PushGradients(const GradientPush& push);

  // The newest parameters once version >= min_version, or at once when the job has ended. In
  // ssp and async min_version is the worker's clock (see PullParametersRequest.min_version).
  // DEADLINE_EXCEEDED when neither happens by `deadline`. Without `with_values` the snapshot
  // carries version and state only (for shared-memory workers, who read the segment).
  absl::StatusOr<ParameterSnapshot> WaitForVersion(int64_t min_version, absl::Time deadline,
                                                   bool with_values = true);

  // Creates (once) the job's parameter segment and this worker's gradient segment. In the
  // synchronous protocol a worker copies version t out of the parameter segment before it
  // pushes step t, and version t+1 is written only when every push of step t has arrived, so
  // nobody reads the segment while it is rewritten. NOT_FOUND for an unknown worker.
  absl::StatusOr<SharedMemoryNames> OpenSharedMemory(const std::string& worker_id);
  // The worker's gradient segment and doorbell, for shared-memory pushes (valid while the job
  // lives). FAILED_PRECONDITION when the worker opened none.
  absl::StatusOr<SharedWorkerMemory> SharedMemoryOf(const std::string& worker_id);

  // Rank 0's evaluation at the end of an epoch. NOT_FOUND for an unknown worker.
  absl::Status ReportMetrics(const std::string& worker_id, int epoch, int64_t version,
                             double test_loss, double test_accuracy);

  // Marks the worker alive; returns the job's state and version. NOT_FOUND for an unknown
  // worker.
  absl::StatusOr<v1::HeartbeatResponse> Heartbeat(const std::string& worker_id);

  // FAILED_PRECONDITION when the worker asks for a version it cannot get: one beyond the
  // current step while its own gradient of the current step is missing (after a roll back).
  absl::Status CheckPull(const std::string& worker_id, int64_t min_version) const;

  // Rolls the job back to `snapshot` (its weights, optimizer state, step and progress): every
  // tensor is checked against the model first, and nothing changes if one does not fit
  // (INVALID_ARGUMENT naming it). A running job goes on from the snapshot's step (its workers
  // learn it from their next call and rewind); an ended one waits for workers again (those
  // that rejoin with their old ids, or new ones). Waiters for versions see FAILED_PRECONDITION.
  absl::Status Restore(const SnapshotContents& snapshot);
  // For a job recreated by a restarted server: its W worker slots, empty until workers come
  // back (with their old ids) or new ones join.
  void ReserveWorkerSlots();
  // Records the job's directory: snapshots go to <dir>/snapshots, and an ended job writes
  // <dir>/ended (so that a restarted server does not resume it). Before the job is shared.
  void EnablePersistence(const std::string& dir);
  // Stops the job without recording it as ended: a restarted server resumes it.
  void StopForShutdown();

  // Fails a running or pending job whose worker has not been heard from for `timeout`.
  void CheckLiveness(absl::Time now, absl::Duration timeout);

  // Ends the job (stopped or failed) unless it has ended already; wakes every waiter.
  void Stop(const std::string& reason);
  void Fail(const std::string& reason);

  v1::JobStatus Status() const;

  // Snapshots (see server/snapshotter.h), once persistence is enabled: periodic ones per
  // spec.snapshot, taken between steps (the copy is all training waits for).
  // Copies the state at the next step boundary (waiting for a step's update in progress) and
  // writes it; answers when it is on disk. FAILED_PRECONDITION without snapshots enabled.
  absl::StatusOr<SnapshotInfo> TakeSnapshot(absl::Time deadline);
  absl::StatusOr<std::vector<SnapshotInfo>> ListSnapshots() const;
  // How long the files of the last snapshot took to write (zero before any).
  absl::Duration LastSnapshotWriteTime() const {
    return snapshotter_ == nullptr ? absl::ZeroDuration() : snapshotter_->last_write_time();
  }
  // DATA_LOSS naming the tensor or file; NOT_FOUND for an unknown snapshot.
  absl::Status VerifySnapshot(const std::string& snapshot_id) const;
  // A snapshot's contents, verified. NOT_FOUND / DATA_LOSS as VerifySnapshot.
  absl::StatusOr<SnapshotContents> ReadSnapshot(const std::string& snapshot_id) const;
  // The weights (PyTorch names and shapes) of the newest version, or of a snapshot (checked
  // first), and their step.
  absl::StatusOr<NamedWeights> Weights(const std::string& snapshot_id) const;
  // Waits until the status has changed since `*revision` (or the deadline passes); updates
  // *revision and returns the status then.
  v1::JobStatus WaitForChange(int64_t* revision, absl::Time deadline);

 private:
  Job() = default;
  struct WorkerState {
    std::string id;
    std::string name;
    absl::Time last_seen;
    int64_t pushed_step = -1;  // the last step this worker's whole gradient was counted for
    int64_t clock = 0;          // ssp, async: the gradients it has delivered (or had skipped)
    int64_t last_late_step = -1;  // backup workers: the last late gradient counted
    // Of the current step: its gradient is in from ready_from on (arena_size_ = nothing yet),
    // with step_samples samples (counted once step_samples_counted).
    int64_t ready_from = 0;
    int64_t step_samples = 0;
    bool step_samples_counted = false;
    std::unique_ptr<SharedRegion> gradient_region;  // shared-memory pushes, when opened
    std::unique_ptr<StepDoorbell> doorbell;         // with the gradient region
    // False for a slot whose worker has not (re)joined since the job was restored or resumed.
    bool present = true;
  };
  // Marks the worker heard from; a slot that comes back may let the job run again.
  void SeenLocked(WorkerState* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Clears the step in progress (after a restore).
  void ResetStepLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void SetStateLocked(v1::JobState state, const std::string& message)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds [lo, hi) of a worker's gradient, weighted by `samples`, to gradient_sum_.
  void AccumulateLocked(const Tensor& gradient, int64_t samples, int64_t lo, int64_t hi)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The job's state between two steps (applied_from_ == arena_size_), as a snapshot.
  SnapshotContents CaptureLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Waits until no step's update is half applied (or the job has ended); DEADLINE_EXCEEDED
  // when that does not happen by `deadline`.
  absl::Status AwaitStepBoundaryLocked(absl::Time deadline) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A periodic snapshot, when spec.snapshot says one is due at this step boundary.
  void MaybeSnapshotLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Publishes the next version once the whole update of the step is applied.
  void FinishStepLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The sync and ssp paths of PushGradients, and async's.
  absl::StatusOr<bool> PushStepLocked(WorkerState* w, const GradientPush& push)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<bool> PushAsyncLocked(WorkerState* w, const GradientPush& push)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // ssp: a gradient of a clock beyond the current step, into that clock's sum.
  absl::StatusOr<bool> PushAheadLocked(WorkerState* w, const GradientPush& push, int64_t clock)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Checks common to every push: INVALID_ARGUMENT for a malformed one.
  absl::Status ValidatePushLocked(const WorkerState& w, const GradientPush& push) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Applies the current step's update where it can; finishes the step (and, in ssp, the steps
  // whose gradients were waiting) when it is complete. `sole` is the gradient of a job of one
  // worker (no sum), else null.
  void ApplyReadyLocked(const Tensor* sole) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Runs the optimizer over [lo, hi) on `gradient`·scale as update `version_ + 1`; fails the
  // job (returning false) when a weight becomes NaN or Inf.
  bool UpdateLocked(const Tensor& gradient, float scale, int64_t lo, int64_t hi)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A gradient with NaN or Inf in [lo, hi) (or a non-finite loss): counts it and fails the job
  // or, with on_bad_gradient skip, counts the worker's step as delivered without it. Returns
  // the INVALID_ARGUMENT for the push.
  absl::Status RejectBadGradientLocked(WorkerState* w, const GradientPush& push, int64_t clock,
                                       int64_t lo, int64_t hi) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Whether [lo, hi) of the pushed gradient, and its loss when lo is 0, hold no NaN or Inf.
  bool FiniteLocked(const GradientPush& push, int64_t lo, int64_t hi) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Training time counts from the first gradient (workers load their data after joining).
  void MarkStartedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecordStalenessLocked(int64_t staleness) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The smallest clock of the workers (async, ssp).
  int64_t MinClockLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Where the job is in the workers' steps: min clock in async, version_ otherwise.
  int64_t ProgressLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The parameter whose range holds arena offset i (for messages).
  std::string ParameterAt(int64_t i) const;
  // NOT_FOUND naming the worker when the job has none of that id.
  absl::StatusOr<WorkerState*> WorkerLocked(const std::string& worker_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool EndedLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::JobStatus StatusLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::string id_;
  v1::JobSpec spec_;
  Backend* backend_ = nullptr;
  int64_t total_steps_ = 0;
  int64_t worker_steps_ = 0;
  int64_t steps_per_epoch_ = 0;
  Consistency consistency_ = Consistency::kSync;
  int staleness_ = 0;       // ssp
  int backup_workers_ = 0;  // sync
  bool skip_bad_gradients_ = false;
  // Steps are applied whole, from gradients that arrived whole (parts are ignored): with
  // backup workers and skipped bad gradients, where a worker's gradient may not count.
  bool whole_gradients_ = false;
  std::vector<ParamInfo> layout_;
  int64_t arena_size_ = 0;

  mutable absl::Mutex mu_;
  v1::JobState state_ ABSL_GUARDED_BY(mu_) = v1::JOB_STATE_PENDING;
  std::string message_ ABSL_GUARDED_BY(mu_);
  int64_t revision_ ABSL_GUARDED_BY(mu_) = 0;  // bumps on every visible change
  std::vector<WorkerState> workers_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Model> model_ ABSL_GUARDED_BY(mu_);  // owns the working parameters
  std::unique_ptr<Optimizer> optimizer_ ABSL_GUARDED_BY(mu_);
  // Set once by EnableSnapshots; the snapshotter is thread-safe itself.
  std::unique_ptr<Snapshotter> snapshotter_;
  std::string dir_;  // "" = nothing on disk
  bool stopped_for_shutdown_ ABSL_GUARDED_BY(mu_) = false;
  // Incremented by each Restore: a wait that sees it change ends.
  int64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time last_snapshot_ ABSL_GUARDED_BY(mu_);
  bool snapshot_due_ ABSL_GUARDED_BY(mu_) = false;  // a periodic one waits for the writer
  // The buffer snapshots are copied into (CaptureLocked); a write in flight shares it.
  std::shared_ptr<float[]> capture_buffer_ ABSL_GUARDED_BY(mu_);
  int64_t capture_floats_ ABSL_GUARDED_BY(mu_) = 0;
  // Σ sample_count · gradient of the current step; valid only once samples_this_step_ > 0.
  Tensor gradient_sum_ ABSL_GUARDED_BY(mu_);
  int64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  int pushes_this_step_ ABSL_GUARDED_BY(mu_) = 0;  // last parts in
  // Of the current step: gradient_sum_ holds some worker's gradient from covered_from_ on, and
  // the update is applied from applied_from_ on (both arena offsets, arena_size_ = nothing).
  int64_t covered_from_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t applied_from_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t samples_this_step_ ABSL_GUARDED_BY(mu_) = 0;
  double loss_sum_this_step_ ABSL_GUARDED_BY(mu_) = 0;
  std::shared_ptr<Tensor> published_ ABSL_GUARDED_BY(mu_);         // a copy of version...
  int64_t published_version_ ABSL_GUARDED_BY(mu_) = -1;                  // ...this one
  // The job's parameters themselves once a worker opened shared memory (the model adopts it).
  std::unique_ptr<SharedRegion> parameter_region_ ABSL_GUARDED_BY(mu_);
  // Progress. Training starts with the first gradient (workers load data after joining).
  absl::Time started_ ABSL_GUARDED_BY(mu_);
  absl::Time ended_ ABSL_GUARDED_BY(mu_);
  double train_loss_ ABSL_GUARDED_BY(mu_) = 0;
  double samples_per_second_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t window_samples_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t samples_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time window_start_ ABSL_GUARDED_BY(mu_);
  absl::Time last_step_event_ ABSL_GUARDED_BY(mu_);
  bool have_window_rate_ ABSL_GUARDED_BY(mu_) = false;
  int epochs_evaluated_ ABSL_GUARDED_BY(mu_) = 0;
  // JobStatus.history: the latest epochs' results, oldest first (at most kHistoryEpochs).
  std::deque<v1::EpochResult> history_ ABSL_GUARDED_BY(mu_);
  double test_loss_ ABSL_GUARDED_BY(mu_) = 0;
  double test_accuracy_ ABSL_GUARDED_BY(mu_) = 0;
  // ssp: the sums of the clocks after the current step (front: version_ + 1), staleness_ many.
  struct AheadStep {
    Tensor sum;  // Σ sample_count · gradient; valid once samples > 0
    int64_t samples = 0;
    double loss_sum = 0;
    std::vector<int> pushed;  // ranks whose gradient (or skipped one) is in
  };
  std::vector<AheadStep> ahead_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> staleness_counts_ ABSL_GUARDED_BY(mu_);
  int64_t late_gradients_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t bad_gradients_ ABSL_GUARDED_BY(mu_) = 0;
};

// "running", "completed", ... (lower case, for users and JSON).
std::string JobStateName(v1::JobState state);

}  // namespace psgrid

#endif  // PSGRID_SERVER_JOB_H_
