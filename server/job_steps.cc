// Job: how gradients become steps under each consistency model (sync with or without backup
// workers, ssp, async), and the guards against NaN and Inf. See server/job.h.
#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "server/job.h"

namespace psgrid {
namespace {

// Staleness histogram buckets: 0 .. kStalenessBuckets - 2, and "at least" the last.
constexpr int64_t kStalenessBuckets = 65;

// The first element of [lo, hi) that is NaN or Inf, or hi.
int64_t FirstNonFinite(const float* x, int64_t lo, int64_t hi) {
  for (int64_t i = lo; i < hi; ++i) {
    if (!std::isfinite(x[i])) return i;
  }
  return hi;
}

}  // namespace

absl::StatusOr<bool> Job::PushGradients(const GradientPush& push) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(WorkerState* w, WorkerLocked(push.worker_id));
  SeenLocked(w);
  if (consistency_ == Consistency::kAsync) return PushAsyncLocked(w, push);
  return PushStepLocked(w, push);
}

absl::Status Job::ValidatePushLocked(const WorkerState& w, const GradientPush& push) const {
  if (push.sample_count < 0) {
    return absl::InvalidArgumentError(absl::StrCat("sample_count ", push.sample_count, " < 0"));
  }
  if (push.gradients == nullptr || push.gradients->size() != arena_size_) {
    return absl::InvalidArgumentError(
        absl::StrCat("the gradient has ", push.gradients ? push.gradients->size() : 0,
                     " values; the model has ", arena_size_));
  }
  if (push.ready_from < 0 || push.ready_from > arena_size_) {
    return absl::InvalidArgumentError(absl::StrCat("ready_from ", push.ready_from,
                                                   " is outside the arena of ", arena_size_));
  }
  if (w.step_samples_counted && push.sample_count != w.step_samples) {
    return absl::InvalidArgumentError(
        absl::StrCat("sample_count ", push.sample_count, " differs from the ", w.step_samples,
                     " of an earlier part of step ", push.step));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> Job::PushStepLocked(WorkerState* w, const GradientPush& push) {
  const bool ssp = consistency_ == Consistency::kSsp;
  const int64_t clock = ssp ? push.clock : push.step;
  // Retries of what was counted already, and (backup workers) gradients of a completed step.
  if (ssp && clock < w->clock) return true;
  if (clock < version_ || (clock == version_ && w->pushed_step == clock)) {
    if (backup_workers_ > 0 && push.ready_from == 0 && clock < version_ &&
        clock > w->pushed_step && clock > w->last_late_step) {
      w->last_late_step = clock;
      ++late_gradients_;
      ++revision_;
    }
    return true;
  }
  if (state_ != v1::JOB_STATE_RUNNING) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", id_, " is ", JobStateName(state_), "; it takes no gradients"));
  }
  const int64_t newest = ssp ? version_ + staleness_ : version_;
  if (clock > newest || clock >= worker_steps_ || (ssp && clock > w->clock)) {
    return absl::FailedPreconditionError(absl::StrCat("a gradient for step ", clock, " but job ",
                                                      id_, " is at step ", version_, " of ",
                                                      total_steps_));
  }
  if (ssp && (push.step > clock || push.step > version_ || clock - push.step > staleness_)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "a gradient of step ", clock, " computed on version ", push.step, ": job ", id_,
        " is at version ", version_, " with staleness bound ", staleness_));
  }
  RETURN_IF_ERROR(ValidatePushLocked(*w, push));
  // Where a worker's gradient might not count, only whole ones do (a part says nothing yet).
  if (whole_gradients_ && push.ready_from > 0) return false;
  if (clock > version_) return PushAheadLocked(w, push, clock);
  if (push.ready_from >= w->ready_from) return true;  // a retried part: nothing new in it

  const int64_t lo = push.ready_from;
  const int64_t hi = w->ready_from;
  if (!FiniteLocked(push, lo, hi)) return RejectBadGradientLocked(w, push, clock, lo, hi);
  MarkStartedLocked();
  if (!w->step_samples_counted) {
    w->step_samples = push.sample_count;
    w->step_samples_counted = true;
    samples_this_step_ += push.sample_count;
  }
  // A job of one worker updates straight from its gradient (the mean is its own): no pass
  // through the sum.
  const bool sole = workers_.size() == 1;
  if (!sole && push.sample_count > 0) AccumulateLocked(*push.gradients, push.sample_count, lo, hi);
  w->ready_from = lo;
  if (lo == 0) {
    w->pushed_step = clock;
    w->clock = clock + 1;
    ++pushes_this_step_;
    loss_sum_this_step_ += push.loss_sum;
    RecordStalenessLocked(clock - push.step);
  }
  ApplyReadyLocked(sole ? push.gradients : nullptr);
  return false;
}

absl::StatusOr<bool> Job::PushAheadLocked(WorkerState* w, const GradientPush& push,
                                          int64_t clock) {
  if (!FiniteLocked(push, 0, arena_size_)) {
    return RejectBadGradientLocked(w, push, clock, 0, arena_size_);
  }
  MarkStartedLocked();
  AheadStep& slot = ahead_[clock - version_ - 1];
  if (push.sample_count > 0) {
    if (slot.sum.size() != arena_size_) slot.sum = Tensor({arena_size_});
    backend_->Axpby(arena_size_, static_cast<float>(push.sample_count), push.gradients->data(),
                    slot.samples > 0 ? 1.0f : 0.0f, slot.sum.data());
    slot.samples += push.sample_count;
  }
  slot.loss_sum += push.loss_sum;
  slot.pushed.push_back(static_cast<int>(w - workers_.data()));
  w->clock = clock + 1;
  RecordStalenessLocked(clock - push.step);
  return false;
}

absl::StatusOr<bool> Job::PushAsyncLocked(WorkerState* w, const GradientPush& push) {
  const int64_t clock = push.clock;
  if (clock < w->clock) return true;  // a retry
  if (state_ != v1::JOB_STATE_RUNNING) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", id_, " is ", JobStateName(state_), "; it takes no gradients"));
  }
  if (clock > w->clock || clock >= worker_steps_) {
    return absl::FailedPreconditionError(absl::StrCat("a gradient for step ", clock, " from ",
                                                      w->id, ", which is at step ", w->clock,
                                                      " of ", worker_steps_));
  }
  if (push.step < 0 || push.step > version_) {
    return absl::InvalidArgumentError(absl::StrCat("a gradient computed on version ", push.step,
                                                   "; job ", id_, " is at version ", version_));
  }
  RETURN_IF_ERROR(ValidatePushLocked(*w, push));
  if (push.ready_from > 0) return false;  // each update takes a whole gradient
  if (!FiniteLocked(push, 0, arena_size_)) {
    return RejectBadGradientLocked(w, push, clock, 0, arena_size_);
  }
  MarkStartedLocked();
  RecordStalenessLocked(version_ - push.step);
  w->clock = clock + 1;
  samples_this_step_ = push.sample_count;
  loss_sum_this_step_ = push.loss_sum;
  if (push.sample_count > 0) {
    // The worker's gradient is the mean over its batch: one optimizer step of its own.
    const float scale =
        ClippedGradScale(*backend_, *push.gradients, 1.0f, spec_.optimizer().clip_norm());
    if (!UpdateLocked(*push.gradients, scale, 0, arena_size_)) return false;
  }
  FinishStepLocked();
  return false;
}

void Job::ApplyReadyLocked(const Tensor* sole) {
  const int workers = spec_.training().workers();
  const bool complete = pushes_this_step_ >= workers - backup_workers_;
  const double clip_norm = spec_.optimizer().clip_norm();
  // Apply the update where every worker's gradient is in (each has then counted its samples);
  // with clipping (the norm decides the scale) or whole gradients, only once the step is.
  int64_t all_from = 0;
  if (!complete) {
    if (whole_gradients_ || clip_norm > 0) {
      all_from = applied_from_;
    } else {
      for (const WorkerState& peer : workers_) all_from = std::max(all_from, peer.ready_from);
    }
  }
  if (all_from < applied_from_) {
    if (samples_this_step_ > 0) {
      // The mean of the workers' gradients, weighted by their samples, in the update's pass (a
      // sole gradient is a mean already). The update makes version_ + 1.
      const Tensor& gradient = sole != nullptr ? *sole : gradient_sum_;
      float scale = sole != nullptr ? 1.0f : 1.0f / static_cast<float>(samples_this_step_);
      scale = ClippedGradScale(*backend_, gradient, scale, clip_norm);
      if (!UpdateLocked(gradient, scale, all_from, applied_from_)) return;
    }
    applied_from_ = all_from;
  }
  if (!complete) return;
  FinishStepLocked();
  if (ahead_.empty() || EndedLocked() || version_ >= worker_steps_) return;
  // ssp: the gradients that wait for the next step make it the current one.
  std::rotate(ahead_.begin(), ahead_.begin() + 1, ahead_.end());
  AheadStep& next = ahead_.back();
  if (next.sum.size() != arena_size_) next.sum = Tensor({arena_size_});
  std::swap(gradient_sum_, next.sum);
  samples_this_step_ = next.samples;
  loss_sum_this_step_ = next.loss_sum;
  covered_from_ = next.samples > 0 ? 0 : arena_size_;
  pushes_this_step_ = static_cast<int>(next.pushed.size());
  for (int rank : next.pushed) {
    WorkerState& w = workers_[rank];
    w.ready_from = 0;
    w.pushed_step = version_;
  }
  next.samples = 0;
  next.loss_sum = 0;
  next.pushed.clear();
  if (pushes_this_step_ > 0) ApplyReadyLocked(nullptr);  // at most staleness_ deep
}

bool Job::UpdateLocked(const Tensor& gradient, float scale, int64_t lo, int64_t hi) {
  optimizer_->BeginStep(version_ + 1);
  Tensor& values = model_->parameters().values();
  if (optimizer_->Update(*backend_, values, gradient, scale, lo, hi)) return true;
  const int64_t at = FirstNonFinite(values.data(), lo, hi);
  SetStateLocked(v1::JOB_STATE_FAILED,
                 absl::StrCat("the weights became NaN or Inf in step ", version_ + 1, " (",
                              ParameterAt(at), "): lower optimizer.learning_rate or set "
                              "optimizer.clip_norm, and restore the newest snapshot, which is "
                              "from before"));
  return false;
}

absl::Status Job::RejectBadGradientLocked(WorkerState* w, const GradientPush& push,
                                          int64_t clock, int64_t lo, int64_t hi) {
  ++bad_gradients_;
  ++revision_;
  std::string where = "the loss";
  if (std::isfinite(push.loss_sum) || lo > 0) {
    where = ParameterAt(FirstNonFinite(push.gradients->data(), lo, hi));
  }
  const std::string problem = absl::StrCat("worker ", w->id, " (", w->name,
                                           ") sent a gradient of step ", clock,
                                           " with NaN or Inf in ", where);
  if (!skip_bad_gradients_) {
    SetStateLocked(v1::JOB_STATE_FAILED,
                   absl::StrCat(problem, " (training.on_bad_gradient: fail)"));
    return absl::InvalidArgumentError(absl::StrCat(problem, "; the job failed"));
  }
  // Skip: the worker's step counts as delivered, without this gradient.
  w->clock = clock + 1;
  if (consistency_ == Consistency::kAsync) {
    samples_this_step_ = 0;
    loss_sum_this_step_ = 0;
    FinishStepLocked();  // an update that changes nothing: versions stay workers × steps
  } else if (clock > version_) {
    ahead_[clock - version_ - 1].pushed.push_back(static_cast<int>(w - workers_.data()));
  } else {
    w->ready_from = 0;  // whole gradients only: nothing of it is in the sum
    w->pushed_step = clock;
    ++pushes_this_step_;
    ApplyReadyLocked(nullptr);
  }
  return absl::InvalidArgumentError(
      absl::StrCat(problem, "; it was skipped (training.on_bad_gradient: skip)"));
}

void Job::AccumulateLocked(const Tensor& gradient, int64_t samples, int64_t lo, int64_t hi) {
  // Above covered_from_ another worker's gradient is in the sum already: add to it. Below, this
  // is the first: overwrite (no clearing pass).
  const int64_t split = std::clamp(covered_from_, lo, hi);
  const float weight = static_cast<float>(samples);
  if (split < hi) {
    backend_->Axpby(hi - split, weight, gradient.data() + split, 1.0f, gradient_sum_.data() + split);
  }
  if (lo < split) {
    backend_->Axpby(split - lo, weight, gradient.data() + lo, 0.0f, gradient_sum_.data() + lo);
  }
  covered_from_ = std::min(covered_from_, lo);
}

bool Job::FiniteLocked(const GradientPush& push, int64_t lo, int64_t hi) const {
  // The loss comes with the step's last part (lo == 0) only.
  return (lo > 0 || std::isfinite(push.loss_sum)) &&
         backend_->AllFinite(hi - lo, push.gradients->data() + lo);
}

void Job::MarkStartedLocked() {
  if (started_ == absl::Time()) started_ = window_start_ = absl::Now();
}

void Job::RecordStalenessLocked(int64_t staleness) {
  const int64_t bucket = std::clamp<int64_t>(staleness, 0, kStalenessBuckets - 1);
  if (static_cast<int64_t>(staleness_counts_.size()) <= bucket) {
    staleness_counts_.resize(bucket + 1, 0);
  }
  ++staleness_counts_[bucket];
}

int64_t Job::MinClockLocked() const {
  if (workers_.empty()) return 0;
  int64_t least = workers_.front().clock;
  for (const WorkerState& w : workers_) least = std::min(least, w.clock);
  return least;
}

int64_t Job::ProgressLocked() const {
  return consistency_ == Consistency::kAsync ? MinClockLocked() : version_;
}

std::string Job::ParameterAt(int64_t i) const {
  for (const ParamInfo& info : layout_) {
    if (i >= info.offset && i < info.offset + info.size) {
      return absl::StrCat("parameter ", info.name, " [", i - info.offset, "]");
    }
  }
  return absl::StrCat("arena offset ", i);
}

void Job::ResetStepLocked() {
  pushes_this_step_ = 0;
  samples_this_step_ = 0;
  loss_sum_this_step_ = 0;
  covered_from_ = applied_from_ = arena_size_;
  for (WorkerState& w : workers_) {
    w.ready_from = arena_size_;
    w.step_samples_counted = false;
  }
}

}  // namespace psgrid
