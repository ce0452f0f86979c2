#include "server/job.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/data/sampler.h"
#include "core/io/weights_file.h"
#include "proto/job_spec_codec.h"
#include "core/status_macros.h"
#include "proto/job_state.h"

namespace psgrid {
namespace {

// Progress events for steps are throttled to this period; state and epoch changes are not.
constexpr absl::Duration kStepEventPeriod = absl::Milliseconds(200);

}  // namespace

std::string JobStateName(v1::JobState state) {
  switch (state) {
    case v1::JOB_STATE_PENDING:
      return "pending";
    case v1::JOB_STATE_RUNNING:
      return "running";
    case v1::JOB_STATE_COMPLETED:
      return "completed";
    case v1::JOB_STATE_FAILED:
      return "failed";
    case v1::JOB_STATE_STOPPED:
      return "stopped";
    default:
      return "unspecified";
  }
}

absl::StatusOr<std::unique_ptr<Job>> Job::Create(std::string id, const v1::JobSpec& spec,
                                                 const DataShape& data, Backend* backend) {
  if (data.regression != (spec.model().loss() == "mse")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model.loss: ", spec.model().loss(), " does not fit the ",
        data.regression ? "regression targets of " : "class labels of ", spec.data().dataset(),
        data.regression ? " (use mse)" : " (use softmax_cross_entropy)"));
  }
  if (data.train_samples < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.path: ", spec.data().path(), " has no training samples"));
  }
  std::unique_ptr<Job> job(new Job());
  job->id_ = std::move(id);
  job->spec_ = spec;
  job->backend_ = backend;
  const v1::TrainingSpec& t = spec.training();
  const int64_t steps_per_epoch =
      BatchSampler::StepsPerEpoch(data.train_samples, t.batch_size(), t.workers());
  job->worker_steps_ = BatchSampler::PlannedSteps(steps_per_epoch, t.epochs(), t.max_steps());
  if (t.consistency() == "async") job->consistency_ = Consistency::kAsync;
  if (t.consistency() == "ssp") job->consistency_ = Consistency::kSsp;
  // In async every worker's gradient is a version of its own.
  const int64_t per_step = job->consistency_ == Consistency::kAsync ? t.workers() : 1;
  job->steps_per_epoch_ = steps_per_epoch * per_step;
  job->total_steps_ = job->worker_steps_ * per_step;
  job->staleness_ = job->consistency_ == Consistency::kSsp ? t.staleness() : 0;
  job->backup_workers_ = t.backup_workers();
  job->skip_bad_gradients_ = t.on_bad_gradient() == "skip";
  job->whole_gradients_ = job->consistency_ != Consistency::kSync || job->backup_workers_ > 0 ||
                          job->skip_bad_gradients_;

  absl::MutexLock lock(&job->mu_);
  ASSIGN_OR_RETURN(job->model_,
                   Model::Create(spec.model(), data.sample_shape, data.output_width, backend));
  ParameterSet& params = job->model_->parameters();
  if (!spec.model().init_from().empty()) {
    RETURN_IF_ERROR(LoadWeightsFile(spec.model().init_from(), "model.init_from", &params));
  }
  ASSIGN_OR_RETURN(job->optimizer_,
                   CreateOptimizer(spec.optimizer(), params.total_size(), job->total_steps_));
  job->layout_ = params.infos();
  job->arena_size_ = params.total_size();
  job->gradient_sum_ = Tensor({params.total_size()});
  job->covered_from_ = job->applied_from_ = job->arena_size_;
  job->published_ = std::make_shared<Tensor>(params.values());
  job->published_version_ = 0;
  job->ahead_.resize(job->staleness_);  // their sums are allocated when first used
  return job;
}

absl::StatusOr<WorkerAssignment> Job::AddWorker(const std::string& worker_name) {
  absl::MutexLock lock(&mu_);
  const int world = spec_.training().workers();
  // A restored or resumed job: a new worker takes the slot of one that has not come back.
  for (WorkerState& slot : workers_) {
    if (slot.present || EndedLocked()) continue;
    slot.name = worker_name;
    SeenLocked(&slot);
    const int rank = static_cast<int>(&slot - workers_.data());
    return WorkerAssignment{slot.id, rank, world, worker_steps_};
  }
  if (EndedLocked() || static_cast<int>(workers_.size()) >= world) {
    return absl::FailedPreconditionError(absl::StrCat("job ", id_, " needs no more workers (",
                                                      JobStateName(state_), ", ", workers_.size(),
                                                      " of ", world, " joined)"));
  }
  const int rank = static_cast<int>(workers_.size());
  WorkerState& w = workers_.emplace_back();
  w.id = absl::StrCat(id_, "/w", rank);
  w.name = worker_name;
  w.last_seen = absl::Now();
  w.ready_from = arena_size_;
  if (static_cast<int>(workers_.size()) == world) {
    SetStateLocked(v1::JOB_STATE_RUNNING, "");
  } else {
    message_ = absl::StrCat("waiting for workers: ", workers_.size(), " of ", world, " joined");
    ++revision_;
  }
  return WorkerAssignment{w.id, rank, world, worker_steps_};
}

bool Job::NeedsWorkers() const {
  absl::MutexLock lock(&mu_);
  if (state_ != v1::JOB_STATE_PENDING) return false;
  for (const WorkerState& w : workers_) {
    if (!w.present) return true;
  }
  return static_cast<int>(workers_.size()) < spec_.training().workers();
}

void Job::SeenLocked(WorkerState* w) {
  w->last_seen = absl::Now();
  if (w->present) return;
  w->present = true;
  int missing = 0;
  for (const WorkerState& peer : workers_) missing += peer.present ? 0 : 1;
  if (state_ != v1::JOB_STATE_PENDING) return;
  if (missing == 0) {
    SetStateLocked(v1::JOB_STATE_RUNNING, "");
  } else {
    message_ = absl::StrCat("restored at step ", version_, "; waiting for ", missing,
                            " worker(s) to rejoin");
    ++revision_;
  }
}

absl::StatusOr<Job::WorkerState*> Job::WorkerLocked(const std::string& worker_id) {
  for (WorkerState& w : workers_) {
    if (w.id == worker_id) return &w;
  }
  return absl::NotFoundError(absl::StrCat("job ", id_, " has no worker '", worker_id, "'"));
}

bool Job::EndedLocked() const { return IsEndedState(state_); }

void Job::FinishStepLocked() {
  if (samples_this_step_ > 0) {
    train_loss_ = loss_sum_this_step_ / static_cast<double>(samples_this_step_);
  }
  ++version_;

  const absl::Time now = absl::Now();
  window_samples_ += samples_this_step_;
  samples_ += samples_this_step_;
  // samples/s over windows of at least a second; the overall rate until the first one closes.
  const double window = absl::ToDoubleSeconds(now - window_start_);
  if (window >= 1.0) {
    samples_per_second_ = static_cast<double>(window_samples_) / window;
    window_samples_ = 0;
    window_start_ = now;
    have_window_rate_ = true;
  } else if (!have_window_rate_ && window > 0) {
    samples_per_second_ = static_cast<double>(window_samples_) / window;
  }
  bool event = false;
  if (now - last_step_event_ >= kStepEventPeriod || version_ % steps_per_epoch_ == 0 ||
      version_ == total_steps_) {
    event = true;
    last_step_event_ = now;
  }
  ResetStepLocked();
  if (version_ == total_steps_) message_ = "evaluating the final weights";
  MaybeSnapshotLocked(now);
  if (event) ++revision_;
}

absl::StatusOr<ParameterSnapshot> Job::WaitForVersion(int64_t min_version, absl::Time deadline,
                                                      bool with_values) {
  absl::MutexLock lock(&mu_);
  // Values are copied between steps only: while a step's update is applied layer by layer
  // (gradients in parts) the arena mixes two versions, and a copy waits for the next one.
  const int64_t generation = generation_;
  // What version min_version asks for, under the job's consistency model.
  auto reached = [this, min_version]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const bool last = min_version >= worker_steps_;
    switch (consistency_) {
      case Consistency::kSync:
        return version_ >= min_version;
      case Consistency::kSsp:
        return version_ >= (last ? worker_steps_ : min_version - staleness_);
      case Consistency::kAsync:
        return !last || MinClockLocked() >= worker_steps_;
    }
    return true;
  };
  auto ready = [this, with_values, generation, &reached]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (EndedLocked() || generation_ != generation) return true;
    if (!reached()) return false;
    return !with_values || applied_from_ == arena_size_ || published_version_ == version_;
  };
  if (!mu_.AwaitWithDeadline(absl::Condition(&ready), deadline)) {
    return absl::DeadlineExceededError(absl::StrCat("job ", id_, " did not reach version ",
                                                    min_version, " in time (at ", version_, ")"));
  }
  if (generation_ != generation) {
    return absl::FailedPreconditionError(absl::StrCat("job ", id_, " was rolled back to step ",
                                                      version_, " while waiting for version ",
                                                      min_version));
  }
  // Snapshots are taken when a network pull first asks for a version: shared-memory workers
  // never need one, and every puller of a version shares the same copy.
  if (!with_values) return ParameterSnapshot{version_, state_, nullptr};
  if (published_version_ != version_) {
    const Tensor& values = model_->parameters().values();
    // Copies are handed out under mu_ only, so with a use count of 1 no puller holds the last
    // copy (each pull of a version ends before the next version exists in sync): rewrite it in
    // place, without a fresh allocation and its page faults. Otherwise a new one.
    if (published_ != nullptr && published_.use_count() == 1 &&
        published_->size() == values.size()) {
      published_->CopyFrom(values);
    } else {
      published_ = std::make_shared<Tensor>(values);
    }
    published_version_ = version_;
  }
  return ParameterSnapshot{version_, state_, published_};
}

absl::Status Job::ReportMetrics(const std::string& worker_id, int epoch, int64_t version,
                                double test_loss, double test_accuracy) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(WorkerState* w, WorkerLocked(worker_id));
  SeenLocked(w);
  if (epoch >= epochs_evaluated_) {
    epochs_evaluated_ = epoch;
    test_loss_ = test_loss;
    test_accuracy_ = test_accuracy;
    if (history_.empty() || epoch > history_.back().epoch()) {
      constexpr size_t kHistoryEpochs = 64;
      v1::EpochResult& r = history_.emplace_back();
      r.set_epoch(epoch);
      r.set_step(version);
      r.set_train_loss(train_loss_);
      r.set_samples_per_second(samples_per_second_);
      r.set_test_loss(test_loss);
      r.set_test_accuracy(test_accuracy);
      if (started_ != absl::Time()) r.set_wall_seconds(absl::ToDoubleSeconds(absl::Now() - started_));
      if (history_.size() > kHistoryEpochs) history_.pop_front();
    }
    ++revision_;
  }
  if (version == worker_steps_ && ProgressLocked() == worker_steps_ &&
      state_ == v1::JOB_STATE_RUNNING) {
    SetStateLocked(v1::JOB_STATE_COMPLETED, "");
  }
  return absl::OkStatus();
}

absl::StatusOr<SharedMemoryNames> Job::OpenSharedMemory(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(WorkerState* w, WorkerLocked(worker_id));
  // Workers train in the parameter segment itself, which only plain sync leaves untouched
  // while they compute.
  if (consistency_ != Consistency::kSync || backup_workers_ > 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", id_, " is ", spec_.training().consistency(),
                     backup_workers_ > 0 ? " with backup workers" : "",
                     ": shared memory serves plain sync jobs only"));
  }
  // Names unique to this server process and job; '/' is not allowed inside them.
  std::string base = absl::StrCat("/psgrid-", getpid(), "-", id_);
  for (size_t i = 1; i < base.size(); ++i) {
    if (!std::isalnum(static_cast<unsigned char>(base[i])) && base[i] != '-') base[i] = '_';
  }
  if (parameter_region_ == nullptr) {
    ASSIGN_OR_RETURN(parameter_region_, SharedRegion::Create(base + "-params", arena_size_));
    // From now on the job's parameters live in the segment: each update lands where the
    // shared-memory workers read it.
    std::memcpy(parameter_region_->data(), model_->parameters().values().data(),
                arena_size_ * sizeof(float));
    model_->AdoptParameterArenas(parameter_region_->data(), /*grads=*/nullptr);
  }
  const int rank = static_cast<int>(w - workers_.data());
  if (w->gradient_region == nullptr) {
    ASSIGN_OR_RETURN(w->gradient_region,
                     SharedRegion::Create(absl::StrCat(base, "-w", rank, "-grads"), arena_size_));
  }
  if (w->doorbell == nullptr) {
    ASSIGN_OR_RETURN(w->doorbell, StepDoorbell::Create(absl::StrCat(base, "-w", rank, "-bell")));
  }
  return SharedMemoryNames{w->gradient_region->name(), parameter_region_->name(),
                           w->doorbell->name(), arena_size_};
}

absl::StatusOr<SharedWorkerMemory> Job::SharedMemoryOf(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(WorkerState* w, WorkerLocked(worker_id));
  if (w->gradient_region == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("worker ", worker_id, " pushed through shared memory without opening it"));
  }
  return SharedWorkerMemory{Tensor::View(w->gradient_region->data(), {arena_size_}),
                            w->doorbell.get()};
}

absl::StatusOr<v1::HeartbeatResponse> Job::Heartbeat(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(WorkerState* w, WorkerLocked(worker_id));
  SeenLocked(w);
  v1::HeartbeatResponse r;
  r.set_state(state_);
  r.set_version(version_);
  r.set_clock(consistency_ == Consistency::kSync ? version_ : w->clock);
  return r;
}

absl::Status Job::CheckPull(const std::string& worker_id, int64_t min_version) const {
  absl::MutexLock lock(&mu_);
  if (EndedLocked()) return absl::OkStatus();
  if (consistency_ != Consistency::kSync) {
    for (const WorkerState& w : workers_) {
      if (w.id == worker_id && w.clock < min_version) {
        return absl::FailedPreconditionError(
            absl::StrCat("job ", id_, " has ", worker_id, " at step ", w.clock,
                         ": its step ", min_version, " cannot come (was the job rolled back?)"));
      }
    }
    return absl::OkStatus();
  }
  if (min_version <= version_) return absl::OkStatus();
  for (const WorkerState& w : workers_) {
    if (w.id == worker_id && w.pushed_step < version_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "job ", id_, " is at step ", version_, " and has no gradient of that step from ",
          worker_id, ": version ", min_version, " cannot come (was the job rolled back?)"));
    }
  }
  return absl::OkStatus();
}

void Job::CheckLiveness(absl::Time now, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  if (EndedLocked()) return;
  for (size_t rank = 0; rank < workers_.size(); ++rank) {
    const WorkerState& w = workers_[rank];
    if (!w.present) continue;  // a restored job waits for it without a time limit
    if (now - w.last_seen > timeout) {
      SetStateLocked(v1::JOB_STATE_FAILED, absl::StrCat("worker rank ", rank, " (", w.name,
                                                        ") has not been heard from for ",
                                                        absl::FormatDuration(now - w.last_seen)));
      return;
    }
  }
}

void Job::Stop(const std::string& reason) {
  absl::MutexLock lock(&mu_);
  if (!EndedLocked()) SetStateLocked(v1::JOB_STATE_STOPPED, reason);
}

void Job::Fail(const std::string& reason) {
  absl::MutexLock lock(&mu_);
  if (!EndedLocked()) SetStateLocked(v1::JOB_STATE_FAILED, reason);
}

void Job::SetStateLocked(v1::JobState state, const std::string& message) {
  state_ = state;
  message_ = message;
  if (EndedLocked()) {
    ended_ = absl::Now();
    if (!dir_.empty() && !stopped_for_shutdown_) {
      // A restarted server does not resume a job that ended for good.
      std::ofstream(dir_ + "/ended") << JobStateName(state) << ": " << message << "\n";
    }
  }
  ++revision_;
}

void Job::StopForShutdown() {
  absl::MutexLock lock(&mu_);
  if (EndedLocked()) return;
  stopped_for_shutdown_ = true;
  SetStateLocked(v1::JOB_STATE_STOPPED, "server shutting down (resumed when it restarts)");
}

v1::JobStatus Job::StatusLocked() const {
  v1::JobStatus s;
  s.set_job_id(id_);
  s.set_name(spec_.name());
  s.set_state(state_);
  s.set_message(message_);
  s.set_step(version_);
  s.set_total_steps(total_steps_);
  const int64_t epochs_by_steps = (total_steps_ + steps_per_epoch_ - 1) / steps_per_epoch_;
  s.set_epoch(static_cast<int32_t>(version_ == total_steps_ ? epochs_by_steps
                                                            : version_ / steps_per_epoch_));
  s.set_epochs(static_cast<int32_t>(epochs_by_steps));
  s.set_train_loss(train_loss_);
  s.set_samples_per_second(samples_per_second_);
  s.set_test_loss(test_loss_);
  s.set_test_accuracy(test_accuracy_);
  s.set_workers(spec_.training().workers());
  s.set_workers_joined(static_cast<int32_t>(workers_.size()));
  s.set_samples(samples_);
  if (started_ != absl::Time()) {
    const absl::Time end = ended_ != absl::Time() ? ended_ : absl::Now();
    s.set_wall_seconds(absl::ToDoubleSeconds(end - started_));
  }
  *s.mutable_spec() = spec_;
  for (int64_t count : staleness_counts_) s.add_staleness_histogram(count);
  s.set_late_gradients(late_gradients_);
  s.set_bad_gradients(bad_gradients_);
  for (const v1::EpochResult& r : history_) *s.add_history() = r;
  return s;
}

v1::JobStatus Job::Status() const {
  absl::MutexLock lock(&mu_);
  return StatusLocked();
}

v1::JobStatus Job::WaitForChange(int64_t* revision, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  const int64_t seen = *revision;
  auto changed = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return revision_ != seen; };
  mu_.AwaitWithDeadline(absl::Condition(&changed), deadline);
  *revision = revision_;
  return StatusLocked();
}

}  // namespace psgrid

namespace psgrid {

void Job::MaybeSnapshotLocked(absl::Time now) {
  if (snapshotter_ == nullptr) return;
  const v1::SnapshotSpec& every = spec_.snapshot();
  if (last_snapshot_ == absl::Time()) last_snapshot_ = started_;
  const bool by_steps = every.every_steps() > 0 && version_ % every.every_steps() == 0;
  const bool by_time = every.every_seconds() > 0 &&
                       now - last_snapshot_ >= absl::Seconds(every.every_seconds());
  if (!by_steps && !by_time && !snapshot_due_) return;
  // At most one write at a time: a periodic snapshot due while one is written is taken at the
  // first step boundary after that write (the copy is not made while it would wait).
  if (snapshotter_->Busy()) {
    snapshot_due_ = true;
    return;
  }
  snapshot_due_ = false;
  last_snapshot_ = now;
  snapshotter_->TryStart(CaptureLocked());
}

void Job::EnablePersistence(const std::string& dir) {
  dir_ = dir;
  snapshotter_ = std::make_unique<Snapshotter>(dir + "/snapshots", spec_.snapshot().keep_last());
}

void Job::ReserveWorkerSlots() {
  absl::MutexLock lock(&mu_);
  const int world = spec_.training().workers();
  while (static_cast<int>(workers_.size()) < world) {
    WorkerState& w = workers_.emplace_back();
    w.id = absl::StrCat(id_, "/w", workers_.size() - 1);
    w.name = "(not rejoined)";
    w.present = false;
    w.ready_from = arena_size_;
  }
  message_ = absl::StrCat("resumed at step ", version_, "; waiting for ", world,
                          " worker(s) to rejoin");
  ++revision_;
}

absl::Status Job::Restore(const SnapshotContents& snapshot) {
  absl::MutexLock lock(&mu_);
  // Everything is checked before anything changes.
  std::map<std::string, const Tensor*> by_name;
  for (const auto& [name, tensor] : snapshot.tensors) by_name[name] = &tensor;
  std::vector<std::pair<float*, const Tensor*>> copies;
  auto want = [&](const std::string& name, const ParamInfo& info,
                  float* dst) -> absl::Status {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("snapshot ", snapshot.id, " has no tensor ", name, " (job ", id_, ")"));
    }
    if (it->second->shape() != info.shape) {
      return absl::InvalidArgumentError(absl::StrCat(
          "snapshot ", snapshot.id, ": tensor ", name, " has shape ",
          ShapeToString(it->second->shape()), ", the model needs ", ShapeToString(info.shape)));
    }
    copies.emplace_back(dst, it->second);
    return absl::OkStatus();
  };
  if (snapshot.step < 0 || snapshot.step > total_steps_) {
    return absl::InvalidArgumentError(absl::StrCat("snapshot ", snapshot.id, " is of step ",
                                                   snapshot.step, "; job ", id_, " has ",
                                                   total_steps_, " steps"));
  }
  for (const ParamInfo& info : layout_) {
    RETURN_IF_ERROR(want(info.name, info, model_->parameters().values().data() + info.offset));
  }
  for (const auto& [buffer, arena] : optimizer_->State()) {
    for (const ParamInfo& info : layout_) {
      RETURN_IF_ERROR(
          want(absl::StrCat("state.", buffer, ".", info.name), info, arena->data() + info.offset));
    }
  }
  for (const auto& [dst, src] : copies) std::memcpy(dst, src->data(), src->size() * sizeof(float));
  version_ = snapshot.step;
  published_version_ = -1;
  auto number = [&](const char* key, double fallback) {
    auto it = snapshot.metadata.find(key);
    double value = fallback;
    if (it != snapshot.metadata.end() && absl::SimpleAtod(it->second, &value)) return value;
    return fallback;
  };
  samples_ = static_cast<int64_t>(number("samples", 0));
  train_loss_ = number("train_loss", 0);
  epochs_evaluated_ = static_cast<int>(number("epochs_evaluated", 0));
  // Results of epochs after the snapshot's step belong to the history that was rolled back.
  while (!history_.empty() && history_.back().step() > version_) history_.pop_back();
  test_loss_ = number("test_loss", 0);
  test_accuracy_ = number("test_accuracy", 0);
  ++generation_;
  ResetStepLocked();
  // Every worker goes on from the snapshot's step (its own clock, in async).
  std::vector<int64_t> clocks;
  if (auto it = snapshot.metadata.find("clocks"); it != snapshot.metadata.end()) {
    for (absl::string_view part : absl::StrSplit(it->second, ',')) {
      int64_t c = 0;
      if (absl::SimpleAtoi(part, &c)) clocks.push_back(c);
    }
  }
  for (size_t rank = 0; rank < workers_.size(); ++rank) {
    WorkerState& w = workers_[rank];
    w.pushed_step = version_ - 1;
    w.clock = version_;
    if (consistency_ == Consistency::kAsync) {
      const int world = spec_.training().workers();
      w.clock = clocks.size() == static_cast<size_t>(world)
                    ? std::clamp<int64_t>(clocks[rank], 0, worker_steps_)
                    : version_ / world;
    }
  }
  for (AheadStep& slot : ahead_) {
    slot.samples = 0;
    slot.loss_sum = 0;
    slot.pushed.clear();
  }
  const bool was_ended = EndedLocked();
  if (was_ended) {
    for (WorkerState& w : workers_) w.present = false;  // ended workers have left
    ended_ = absl::Time();
    stopped_for_shutdown_ = false;
    if (!dir_.empty()) std::remove((dir_ + "/ended").c_str());
  }
  int missing = 0;
  for (const WorkerState& w : workers_) missing += w.present ? 0 : 1;
  missing += spec_.training().workers() - static_cast<int>(workers_.size());
  if (missing == 0) {
    SetStateLocked(v1::JOB_STATE_RUNNING,
                   absl::StrCat("restored from snapshot ", snapshot.id));
  } else {
    SetStateLocked(v1::JOB_STATE_PENDING,
                   absl::StrCat("restored from snapshot ", snapshot.id, " at step ", version_,
                                "; waiting for ", missing, " worker(s) to rejoin"));
  }
  return absl::OkStatus();
}

SnapshotContents Job::CaptureLocked() {
  SnapshotContents c;
  const absl::Time now = absl::Now();
  c.step = version_;
  c.created = absl::ToUnixSeconds(now);
  c.id = absl::StrFormat("step-%09d-%d", version_, absl::ToUnixMillis(now));
  const ParameterSet& params = model_->parameters();
  // One copy into one buffer, reused while no write holds it (its memory is then already
  // mapped): parameters under their PyTorch names, then each optimizer state buffer
  // (arena-shaped) cut the same way, as "state.<buffer>.<parameter>".
  const auto state = optimizer_->State();
  int64_t floats = 0;
  for (const ParamInfo& info : layout_) floats += info.size;
  floats *= static_cast<int64_t>(1 + state.size());
  if (capture_buffer_ == nullptr || capture_buffer_.use_count() > 1 ||
      capture_floats_ != floats) {
    capture_buffer_ = std::shared_ptr<float[]>(new float[std::max<int64_t>(floats, 1)]);
    capture_floats_ = floats;
  }
  float* out = capture_buffer_.get();
  auto copy = [&](std::string name, const ParamInfo& info, const float* arena) {
    std::memcpy(out, arena + info.offset, info.size * sizeof(float));
    c.tensors.emplace_back(std::move(name), Tensor::View(out, info.shape));
    out += info.size;
  };
  for (const ParamInfo& info : layout_) copy(info.name, info, params.values().data());
  for (const auto& [buffer, arena] : state) {
    for (const ParamInfo& info : layout_) {
      copy(absl::StrCat("state.", buffer, ".", info.name), info, arena->data());
    }
  }
  c.storage = capture_buffer_;
  c.metadata["format"] = "psgrid-snapshot";
  c.metadata["job_id"] = id_;
  c.metadata["spec"] = JobSpecToJson(spec_);
  c.metadata["step"] = absl::StrCat(version_);
  c.metadata["steps_per_epoch"] = absl::StrCat(steps_per_epoch_);
  c.metadata["epoch"] = absl::StrCat(version_ / steps_per_epoch_);
  // Where the workers are in their data: in synchronous training, step t of rank r is batch
  // t mod steps_per_epoch of epoch t / steps_per_epoch, shuffled with data.seed and the epoch.
  c.metadata["data_position"] = absl::StrCat("step ", version_, " (data.seed ", spec_.data().seed(),
                                             ", shuffle ", spec_.data().shuffle() ? "on" : "off",
                                             ")");
  c.metadata["samples"] = absl::StrCat(samples_);
  std::vector<int64_t> clocks;
  for (const WorkerState& w : workers_) clocks.push_back(w.clock);
  c.metadata["clocks"] = absl::StrJoin(clocks, ",");
  c.metadata["train_loss"] = absl::StrCat(train_loss_);
  c.metadata["epochs_evaluated"] = absl::StrCat(epochs_evaluated_);
  c.metadata["test_loss"] = absl::StrCat(test_loss_);
  c.metadata["test_accuracy"] = absl::StrCat(test_accuracy_);
  return c;
}

absl::StatusOr<SnapshotInfo> Job::TakeSnapshot(absl::Time deadline) {
  if (snapshotter_ == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", id_, " has no snapshots: the server runs without --data-dir"));
  }
  SnapshotContents contents;
  {
    absl::MutexLock lock(&mu_);
    if (state_ == v1::JOB_STATE_FAILED) {
      // Its weights may be what failed it: the newest snapshot stays the one from before.
      return absl::FailedPreconditionError(
          absl::StrCat("job ", id_, " failed (", message_, "); it takes no more snapshots"));
    }
    RETURN_IF_ERROR(AwaitStepBoundaryLocked(deadline));
    contents = CaptureLocked();
    last_snapshot_ = absl::Now();
  }
  return snapshotter_->Write(std::move(contents), deadline);
}

absl::Status Job::AwaitStepBoundaryLocked(absl::Time deadline) const {
  auto between_steps = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return applied_from_ == arena_size_ || EndedLocked();
  };
  if (!mu_.AwaitWithDeadline(absl::Condition(&between_steps), deadline)) {
    return absl::DeadlineExceededError(
        absl::StrCat("job ", id_, " did not reach a step boundary in time"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SnapshotInfo>> Job::ListSnapshots() const {
  if (snapshotter_ == nullptr) return std::vector<SnapshotInfo>();
  return snapshotter_->List();
}

absl::Status Job::VerifySnapshot(const std::string& snapshot_id) const {
  if (snapshotter_ == nullptr) {
    return absl::NotFoundError(absl::StrCat("job ", id_, " has no snapshot ", snapshot_id));
  }
  return snapshotter_->store().Verify(snapshot_id);
}

absl::StatusOr<SnapshotContents> Job::ReadSnapshot(const std::string& snapshot_id) const {
  if (snapshotter_ == nullptr) {
    return absl::NotFoundError(absl::StrCat("job ", id_, " has no snapshot ", snapshot_id));
  }
  return snapshotter_->store().Read(snapshot_id);
}

absl::StatusOr<NamedWeights> Job::Weights(const std::string& snapshot_id) const {
  NamedWeights w;
  if (snapshot_id.empty()) {
    absl::MutexLock lock(&mu_);
    // Between steps, or the arena would mix two versions.
    RETURN_IF_ERROR(AwaitStepBoundaryLocked(absl::Now() + absl::Seconds(30)));
    w.step = version_;
    const Tensor& values = model_->parameters().values();
    for (const ParamInfo& info : layout_) {
      Tensor t(info.shape);
      std::memcpy(t.data(), values.data() + info.offset, info.size * sizeof(float));
      w.tensors.emplace_back(info.name, std::move(t));
    }
    return w;
  }
  if (snapshotter_ == nullptr) {
    return absl::NotFoundError(absl::StrCat("job ", id_, " has no snapshot ", snapshot_id));
  }
  ASSIGN_OR_RETURN(SnapshotContents contents, ReadSnapshot(snapshot_id));
  w.step = contents.step;
  for (auto& [name, tensor] : contents.tensors) {
    if (name.rfind("state.", 0) != 0) w.tensors.emplace_back(name, std::move(tensor));
  }
  return w;
}

}  // namespace psgrid
