#include "worker/worker.h"

#include <unistd.h>

#include <algorithm>
#include <deque>
#include <functional>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "core/data/dataset.h"
#include "core/data/loader.h"
#include "core/data/sampler.h"
#include "core/model.h"
#include "core/pinned_buffer.h"
#include "core/status_macros.h"
#include "proto/job_spec_codec.h"
#include "proto/job_state.h"
#include "worker/evaluation.h"

namespace psgrid {
namespace {

constexpr absl::Duration kFirstBackoff = absl::Milliseconds(100);
constexpr absl::Duration kMaxBackoff = absl::Seconds(2);
constexpr absl::Duration kPendingPoll = absl::Milliseconds(100);
constexpr absl::Duration kProgressPeriod = absl::Seconds(5);
constexpr absl::Duration kMaxHeartbeatTimeout = absl::Seconds(10);
// Roll backs in a row without a step between them, after which the worker gives up.
constexpr int kMaxRewinds = 20;
// Gradients rejected in a row (training.on_bad_gradient: skip) after which the worker gives up.
constexpr int kMaxSkippedInARow = 50;

// Worth retrying: the server is away (UNAVAILABLE, or CANCELLED when it shut down with the call
// in flight) or slow (DEADLINE_EXCEEDED).
bool IsTransient(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kDeadlineExceeded ||
         code == absl::StatusCode::kCancelled;
}

const absl::Status& StatusOf(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& StatusOf(const absl::StatusOr<T>& s) {
  return s.status();
}

// The same code with `context` in front of the message.
absl::Status Annotate(const absl::Status& status, const std::string& context) {
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

std::string DefaultWorkerName() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  return absl::StrCat(host[0] != '\0' ? host : "localhost", ":", getpid());
}

// Calls client->Heartbeat every `period` on its own thread, from construction until
// destruction, which stops it promptly (at most one heartbeat call in flight) and joins.
// Errors are ignored: the training loop learns of a lost server or an ended job from its own
// calls. The client is borrowed and must outlive this object.
class HeartbeatThread {
 public:
  HeartbeatThread(ParameterClient* client, std::string job_id, std::string worker_id,
                  absl::Duration period, absl::Duration timeout)
      : client_(client),
        job_id_(std::move(job_id)),
        worker_id_(std::move(worker_id)),
        period_(period),
        timeout_(timeout),
        thread_([this] { Loop(); }) {}
  HeartbeatThread(const HeartbeatThread&) = delete;
  HeartbeatThread& operator=(const HeartbeatThread&) = delete;
  ~HeartbeatThread() {
    stop_.Notify();
    thread_.join();
  }

 private:
  void Loop() {
    do {
      (void)client_->Heartbeat(job_id_, worker_id_, absl::Now() + timeout_);
    } while (!stop_.WaitForNotificationWithTimeout(period_));
  }

  ParameterClient* const client_;
  const std::string job_id_;
  const std::string worker_id_;
  const absl::Duration period_;
  const absl::Duration timeout_;
  absl::Notification stop_;
  std::thread thread_;  // last: starts once the members above are initialised
};

// Joins a job: retries while the server is unreachable or has no job for this worker, until
// options.wait_for_job has passed.
absl::StatusOr<v1::RegisterWorkerResponse> RegisterWithRetry(ParameterClient* client,
                                                             const WorkerOptions& options,
                                                             const std::string& name) {
  const absl::Time give_up = absl::Now() + options.wait_for_job;
  const std::string what = options.job_id.empty() ? std::string("a job that needs workers")
                                                  : absl::StrCat("job ", options.job_id);
  absl::Duration backoff = kFirstBackoff;
  bool told = false;
  while (true) {
    const absl::Time deadline = std::min(absl::Now() + options.rpc_timeout, give_up);
    absl::StatusOr<v1::RegisterWorkerResponse> reg =
        client->Register(options.job_id, name, deadline);
    if (reg.ok()) return reg;
    const absl::StatusCode code = reg.status().code();
    if (code != absl::StatusCode::kNotFound && !IsTransient(code)) {
      return Annotate(reg.status(), absl::StrCat("cannot join ", what));
    }
    const absl::Time now = absl::Now();
    if (now >= give_up) {
      return Annotate(reg.status(), absl::StrCat("no place in ", what, " after waiting ",
                                                 absl::FormatDuration(options.wait_for_job)));
    }
    if (options.verbose && !told) {
      std::fprintf(stderr, "worker %s: waiting for %s (%s)\n", name.c_str(), what.c_str(),
                   std::string(reg.status().message()).c_str());
      told = true;
    }
    absl::SleepFor(std::min(backoff, give_up - now));
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

// INTERNAL when the server's assignment cannot drive the training loop.
absl::Status CheckAssignment(const v1::RegisterWorkerResponse& reg) {
  std::string problem;
  if (reg.worker_id().empty()) {
    problem = "no worker id";
  } else if (reg.world_size() < 1 || reg.rank() < 0 || reg.rank() >= reg.world_size()) {
    problem = absl::StrCat("rank ", reg.rank(), " of ", reg.world_size());
  } else if (reg.spec().training().batch_size() < 1) {
    problem = absl::StrCat("batch size ", reg.spec().training().batch_size());
  } else if (reg.total_steps() < 0) {
    problem = absl::StrCat("total steps ", reg.total_steps());
  }
  if (problem.empty()) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("the parameter server assigned this worker to job ",
                                          reg.job_id(), " with ", problem));
}

// One worker's part in one job, from its registration to the job's end. Not thread-safe; the
// client and backend are borrowed for the session's lifetime.
class WorkerSession {
 public:
  WorkerSession(ParameterClient* client, Backend* backend, const WorkerOptions& options,
                v1::RegisterWorkerResponse reg)
      : client_(client), backend_(backend), options_(options), reg_(std::move(reg)) {
    ApplyJobSpecDefaults(reg_.mutable_spec());
    prefix_ = absl::StrCat("worker rank ", reg_.rank(), "/", reg_.world_size(), " of job ",
                           reg_.job_id());
  }

  absl::Status Run();

 private:
  // Loads the data, builds the model and the sampler.
  absl::Status Prepare();
  // Polls the job's state while it waits for its other workers.
  absl::StatusOr<v1::JobState> WaitWhilePending(v1::JobState state);
  // Each returns the job's state afterwards (RUNNING, or the state that ended it).
  absl::StatusOr<v1::JobState> PushStep(int64_t step, std::span<const int64_t> indices);
  absl::StatusOr<PullResult> PullVersion(int64_t min_version);
  // Maps the server's shared-memory segments and trains in them (or says why not: a worker on
  // a device stays on gRPC).
  void AttachSharedMemory();
  // The gradient arena the transport sends, and the parameter arena a pull writes into: the
  // model's own on the host, their host copies on a device.
  Tensor& GradientsToPush() { return on_device_ ? host_grads_ : model_->parameters().grads(); }
  Tensor& ValuesToPull() { return on_device_ ? host_values_ : model_->parameters().values(); }
  // After `error` at `step`: the step to go on from when the job was rolled back to it (the
  // worker has then pulled that version), else the error. Bounded by kMaxRewinds in a row.
  absl::StatusOr<int64_t> Rewind(const absl::Status& error, int64_t step, int* rewinds);
  // Whether `error` of step's push (or of the pull after it) is the job skipping this worker's
  // bad gradient (training.on_bad_gradient: skip); the worker then goes on. Bounded in a row.
  bool SkippedBadGradient(const absl::Status& error, int64_t step);
  // Gathers step's batch into next_x_ (and its targets) for PushStep to take.
  void Prefetch(int64_t step, std::span<const int64_t> indices);
  // Rank 0 evaluates when its steps crossed an epoch's end (from `from` to `to`) or reached the
  // last one.
  absl::StatusOr<v1::JobState> ReportIfDue(int64_t from, int64_t to);
  // Runs `call` (given its deadline) until it succeeds or fails for good. UNAVAILABLE (and
  // DEADLINE_EXCEEDED of a push or report, which the server deduplicates) is retried with
  // backoff for up to rpc_timeout after the first failure. DEADLINE_EXCEEDED of a pull, which
  // waits for the slowest worker, is retried as long as the job is alive: the server's liveness
  // watch ends the job when a worker is gone.
  template <typename Call>
  auto WithRetry(Call call, bool waits_for_peers) -> decltype(call(absl::Time()));
  // After `error` of `what`: the job's state if it has ended (the error is then its symptom),
  // else the error itself.
  absl::StatusOr<v1::JobState> StateAfterError(const absl::Status& error, const std::string& what);
  // Run's result for a job that ended at `version`: OK unless it failed.
  absl::Status EndOfJob(v1::JobState state, int64_t version);
  void MaybeLogProgress(int64_t steps_done, bool force);

  ParameterClient* const client_;
  Backend* const backend_;
  const WorkerOptions& options_;
  v1::RegisterWorkerResponse reg_;
  std::string prefix_;  // "worker rank 0/2 of job X" for log lines

  // With a device backend (!backend_->is_host()) the model's arenas are device memory; the
  // transport reads and writes these host copies of them (pinned where the device has it):
  // each layer's gradient is copied into host_grads_ as soon as backward has produced it, and a
  // pulled version lands in host_values_, then goes to the device.
  const bool on_device_ = !backend_->is_host();
  PinnedBuffer grads_staging_, values_staging_;
  Tensor host_grads_, host_values_;  // views of the staging buffers

  TrainTestData data_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<BatchSampler> sampler_;
  int64_t steps_per_epoch_ = 0;
  Tensor x_, targets_;
  std::vector<int32_t> labels_;
  // The next step's batch, gathered while the server finishes the current one.
  Tensor next_x_, next_targets_;
  std::vector<int32_t> next_labels_;
  int64_t prefetched_step_ = -1;
  bool sync_ = true;      // training.consistency sync: the worker's step is the job's version
  int64_t version_ = 0;   // the version of the weights the worker holds
  int skipped_in_a_row_ = 0;
  absl::Duration last_push_time_;  // for options_.slowdown

  absl::Time start_;
  // Where the worker's time went: computing gradients, exchanging them with the server
  // (push, then the wait for and copy of the next version), evaluating.
  absl::Duration compute_time_, exchange_time_, evaluation_time_;
  absl::Time window_start_;
  int64_t window_samples_ = 0;
  double window_loss_sum_ = 0;
};

absl::Status WorkerSession::Run() {
  start_ = window_start_ = absl::Now();
  HeartbeatThread heartbeat(client_, reg_.job_id(), reg_.worker_id(), options_.heartbeat_period,
                            std::min(options_.rpc_timeout, kMaxHeartbeatTimeout));
  RETURN_IF_ERROR(Prepare());
  if (options_.shared_memory) AttachSharedMemory();
  ASSIGN_OR_RETURN(PullResult initial, PullVersion(0));
  if (IsEndedState(initial.state)) return EndOfJob(initial.state, initial.version);
  ASSIGN_OR_RETURN(v1::JobState state, WaitWhilePending(initial.state));
  if (IsEndedState(state)) return EndOfJob(state, initial.version);
  const int64_t total_steps = reg_.total_steps();
  if (total_steps == 0) {
    ASSIGN_OR_RETURN(state, ReportIfDue(0, 0));
    if (IsEndedState(state)) return EndOfJob(state, 0);
  }
  const int rank = reg_.rank();
  version_ = initial.version;
  // A job restored from a snapshot starts where the snapshot is (in ssp and async, where this
  // worker was then).
  int64_t t = initial.version;
  if (!sync_) {
    absl::StatusOr<v1::HeartbeatResponse> at =
        client_->CheckIn(reg_.job_id(), reg_.worker_id(), absl::Now() + options_.rpc_timeout);
    if (!at.ok()) return Annotate(at.status(), prefix_);
    t = at->clock();
  }
  int rewinds = 0;
  while (t < total_steps) {
    sampler_->StartEpoch(t / steps_per_epoch_);  // cheap unless the epoch changes
    absl::StatusOr<v1::JobState> pushed = PushStep(t, sampler_->Batch(t % steps_per_epoch_, rank));
    if (!pushed.ok() && !SkippedBadGradient(pushed.status(), t)) {
      ASSIGN_OR_RETURN(t, Rewind(pushed.status(), t, &rewinds));
      continue;
    }
    if (pushed.ok() && IsEndedState(*pushed)) return EndOfJob(*pushed, t);
    // While the server finishes the step: the next batch.
    if (t + 1 < total_steps) {
      sampler_->StartEpoch((t + 1) / steps_per_epoch_);
      Prefetch(t + 1, sampler_->Batch((t + 1) % steps_per_epoch_, rank));
    }
    absl::StatusOr<PullResult> pulled = PullVersion(t + 1);
    if (!pulled.ok() && SkippedBadGradient(pulled.status(), t)) pulled = PullVersion(t + 1);
    if (!pulled.ok()) {
      ASSIGN_OR_RETURN(t, Rewind(pulled.status(), t, &rewinds));
      continue;
    }
    if (IsEndedState(pulled->state)) return EndOfJob(pulled->state, t + 1);
    // In sync the version is the step: t + 1, or later when backup workers completed steps
    // without this one (it then goes on from the newest).
    if (sync_ && pulled->version < t + 1) {
      return absl::InternalError(absl::StrCat(prefix_, ": asked for version ", t + 1,
                                              ", the parameter server sent version ",
                                              pulled->version));
    }
    const int64_t next = sync_ ? std::min(pulled->version, total_steps) : t + 1;
    version_ = pulled->version;
    ASSIGN_OR_RETURN(state, ReportIfDue(t, next));
    if (IsEndedState(state)) return EndOfJob(state, next);
    MaybeLogProgress(next, /*force=*/false);
    t = next;
    rewinds = 0;
  }
  if (options_.verbose) {
    std::fprintf(stderr,
                 "%s: done, %lld steps in %.1fs (computing %.1fs, exchanging with the server "
                 "%.1fs, evaluating %.1fs)\n",
                 prefix_.c_str(), static_cast<long long>(total_steps),
                 absl::ToDoubleSeconds(absl::Now() - start_), absl::ToDoubleSeconds(compute_time_),
                 absl::ToDoubleSeconds(exchange_time_), absl::ToDoubleSeconds(evaluation_time_));
  }
  return absl::OkStatus();
}

void WorkerSession::AttachSharedMemory() {
  if (on_device_) {
    // The server's segment is host memory and the model's arenas are the device's.
    std::fprintf(stderr,
                 "%s: no shared memory on device %s (it is for CPU workers); tensors go over "
                 "the network\n",
                 prefix_.c_str(), std::string(backend_->name()).c_str());
    return;
  }
  const absl::StatusOr<SharedArenas> shm =
      client_->UseSharedMemory(reg_.job_id(), reg_.worker_id(), absl::Now() + options_.rpc_timeout);
  if (!shm.ok()) {
    std::fprintf(stderr, "%s: no shared memory (%s); tensors go over the network\n",
                 prefix_.c_str(), std::string(shm.status().message()).c_str());
  } else if (shm->floats == model_->parameters().total_size()) {
    // Train in the shared arenas themselves: no copy at a push or a pull.
    model_->AdoptParameterArenas(shm->parameters, shm->gradients);
  }
}

absl::StatusOr<int64_t> WorkerSession::Rewind(const absl::Status& error, int64_t step,
                                              int* rewinds) {
  // A job that was rolled back (restored from a snapshot, or resumed by a restarted server)
  // refuses this worker's step with FAILED_PRECONDITION; its version says where to go on.
  if (error.code() != absl::StatusCode::kFailedPrecondition || ++*rewinds > kMaxRewinds) {
    return error;
  }
  absl::StatusOr<v1::HeartbeatResponse> now =
      client_->CheckIn(reg_.job_id(), reg_.worker_id(), absl::Now() + options_.rpc_timeout);
  if (!now.ok() || now->clock() > step) return error;
  if (now->state() == v1::JOB_STATE_PENDING) {
    ASSIGN_OR_RETURN(v1::JobState state, WaitWhilePending(now->state()));
    if (IsEndedState(state)) return error;
  }
  const int64_t back = now->clock();
  std::fprintf(stderr, "%s: the job was rolled back to step %lld (this worker was at %lld); "
               "going on from there\n", prefix_.c_str(), static_cast<long long>(back),
               static_cast<long long>(step));
  // A restarted server has new shared-memory segments.
  if (options_.shared_memory) AttachSharedMemory();
  ASSIGN_OR_RETURN(PullResult pulled, PullVersion(back));
  if (sync_ && pulled.version != back && !IsEndedState(pulled.state)) {
    return absl::InternalError(absl::StrCat(prefix_, ": rewinding to version ", back,
                                            ", the parameter server sent version ",
                                            pulled.version));
  }
  prefetched_step_ = -1;
  version_ = pulled.version;
  return back;
}

bool WorkerSession::SkippedBadGradient(const absl::Status& error, int64_t step) {
  if (error.code() != absl::StatusCode::kInvalidArgument ||
      reg_.spec().training().on_bad_gradient() != "skip" ||
      ++skipped_in_a_row_ > kMaxSkippedInARow) {
    return false;
  }
  absl::StatusOr<v1::JobState> state =
      client_->Heartbeat(reg_.job_id(), reg_.worker_id(), absl::Now() + options_.rpc_timeout);
  if (!state.ok() || *state != v1::JOB_STATE_RUNNING) return false;
  std::fprintf(stderr, "%s: step %lld: the parameter server skipped this worker's gradient: %s\n",
               prefix_.c_str(), static_cast<long long>(step),
               std::string(error.message()).c_str());
  return true;
}

absl::Status WorkerSession::Prepare() {
  const v1::JobSpec& spec = reg_.spec();
  sync_ = spec.training().consistency() == "sync" || spec.training().consistency().empty();
  ASSIGN_OR_RETURN(data_, LoadJobData(spec.data()));
  if (data_.train.size() == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("data.path: ", spec.data().path(), " has no training samples"));
  }
  ASSIGN_OR_RETURN(model_, Model::Create(spec.model(), data_.train.sample_shape(),
                                         OutputWidth(data_.train), backend_));
  model_->SetRandomStream(static_cast<uint64_t>(reg_.rank()));  // dropout: own masks per worker
  if (on_device_) {
    const int64_t n = model_->parameters().total_size();
    grads_staging_ = PinnedBuffer(backend_, n);
    values_staging_ = PinnedBuffer(backend_, n);
    host_grads_ = grads_staging_.View({n});
    host_values_ = values_staging_.View({n});
    model_->parameters().values().Read(0, host_values_.span());
  }
  sampler_ =
      std::make_unique<BatchSampler>(data_.train.size(), spec.training().batch_size(),
                                     reg_.world_size(), spec.data().shuffle(), spec.data().seed());
  steps_per_epoch_ = sampler_->steps_per_epoch();
  // The server plans the steps from its own view of the data; say so when ours disagrees
  // (another file at the same path, say), since the shards would then not match.
  const int64_t planned = BatchSampler::PlannedSteps(steps_per_epoch_, spec.training().epochs(),
                                                     spec.training().max_steps());
  if (planned != reg_.total_steps()) {
    std::fprintf(stderr,
                 "%s: warning: this worker's %lld training samples make %lld steps, the "
                 "parameter server planned %lld\n",
                 prefix_.c_str(), static_cast<long long>(data_.train.size()),
                 static_cast<long long>(planned), static_cast<long long>(reg_.total_steps()));
  }
  if (options_.verbose) {
    std::fprintf(
        stderr,
        "%s (%s, backend %s): %lld training and %lld test samples, batch %d, %lld steps "
        "(%lld per epoch)\n",
        prefix_.c_str(), reg_.worker_id().c_str(), std::string(backend_->name()).c_str(),
        static_cast<long long>(data_.train.size()),
        static_cast<long long>(data_.test.size()), spec.training().batch_size(),
        static_cast<long long>(reg_.total_steps()), static_cast<long long>(steps_per_epoch_));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::JobState> WorkerSession::WaitWhilePending(v1::JobState state) {
  const absl::Time give_up = absl::Now() + options_.wait_for_job;
  bool told = false;
  while (state == v1::JOB_STATE_PENDING) {
    if (absl::Now() >= give_up) {
      return absl::DeadlineExceededError(
          absl::StrCat(prefix_, ": still waiting for the other workers after ",
                       absl::FormatDuration(options_.wait_for_job)));
    }
    if (options_.verbose && !told) {
      std::fprintf(stderr, "%s: waiting for the other workers to join\n", prefix_.c_str());
      told = true;
    }
    absl::SleepFor(kPendingPoll);
    absl::StatusOr<v1::JobState> now = WithRetry(
        [&](absl::Time deadline) {
          return client_->Heartbeat(reg_.job_id(), reg_.worker_id(), deadline);
        },
        /*waits_for_peers=*/false);
    if (!now.ok()) return Annotate(now.status(), prefix_);
    state = *now;
  }
  return state;
}

absl::StatusOr<v1::JobState> WorkerSession::PushStep(int64_t step,
                                                     std::span<const int64_t> indices) {
  ParameterSet& params = model_->parameters();
  v1::PushHeader header;
  header.set_job_id(reg_.job_id());
  header.set_worker_id(reg_.worker_id());
  header.set_step(sync_ ? step : version_);  // the version the gradient is computed on
  header.set_clock(step);
  const int64_t n = static_cast<int64_t>(indices.size());
  header.set_sample_count(n);
  const absl::Time compute_start = absl::Now();
  if (n > 0) {
    const Dataset& train = data_.train;
    if (prefetched_step_ == step) {
      std::swap(x_, next_x_);
      std::swap(labels_, next_labels_);
      std::swap(targets_, next_targets_);
    } else {
      GatherBatch(train, indices, &x_, &labels_, &targets_);
    }
    prefetched_step_ = -1;
    // Each layer's gradient goes out as soon as backward has it, when the transport can. On a
    // device it is first copied to the host: queued as backward announces it (the copy runs
    // beside the rest of backward; [queued, total) is queued so far), and each part is sent
    // once its copy has landed.
    const bool parts = client_->TakesGradientParts();
    const auto push_part = [&](int64_t ready_from) {
      if (parts && ready_from > 0) {
        client_->PushPart(header, params.infos(), GradientsToPush(), ready_from,
                          absl::Now() + options_.rpc_timeout);
      }
    };
    int64_t queued = params.total_size();
    std::deque<std::pair<int64_t, uint64_t>> copying;  // (from, ticket), in queuing order
    const auto queue_copy = [&](int64_t from) {
      if (from >= queued) return;
      copying.emplace_back(
          from, params.grads().ReadAsync(from, host_grads_.span().subspan(from, queued - from)));
      queued = from;
    };
    const auto send_landed = [&](bool wait) {
      while (!copying.empty()) {
        const auto [from, ticket] = copying.front();
        if (wait) {
          backend_->WaitCopy(ticket);
        } else if (!backend_->CopyDone(ticket)) {
          return;
        }
        copying.pop_front();
        push_part(from);
      }
    };
    std::function<void(int64_t)> on_ready;
    if (on_device_) {
      on_ready = [&](int64_t ready_from) {
        queue_copy(ready_from);
        send_landed(/*wait=*/false);
      };
    } else if (parts) {
      on_ready = push_part;
    }
    absl::StatusOr<LossResult> r =
        model_->ComputeGradients(x_, MakeTargets(train, labels_, targets_), on_ready);
    if (on_device_) {
      queue_copy(0);  // what no layer announced (the arena's start)
      send_landed(/*wait=*/true);
    }
    if (!r.ok()) return Annotate(r.status(), absl::StrCat(prefix_, ": step ", step));
    header.set_loss_sum(r->loss * static_cast<double>(n));
    header.set_correct(r->correct);

    window_samples_ += n;
    window_loss_sum_ += header.loss_sum();
  } else {
    GradientsToPush().SetZero();  // an empty tail batch: weight 0 in the server's average
  }
  if (options_.slowdown > 1.0) {
    // A slower node: its computing and its sending (the last push's time) take F times as long.
    absl::SleepFor((absl::Now() - compute_start + last_push_time_) * (options_.slowdown - 1.0));
  }
  const absl::Time exchange_start = absl::Now();
  compute_time_ += exchange_start - compute_start;
  absl::StatusOr<v1::PushGradientsResponse> pushed = WithRetry(
      [&](absl::Time deadline) {
        return client_->Push(header, params.infos(), GradientsToPush(), deadline);
      },
      /*waits_for_peers=*/false);
  last_push_time_ = absl::Now() - exchange_start;
  exchange_time_ += last_push_time_;
  if (!pushed.ok()) return StateAfterError(pushed.status(), absl::StrCat("push of step ", step));
  skipped_in_a_row_ = 0;
  return v1::JOB_STATE_RUNNING;
}

void WorkerSession::Prefetch(int64_t step, std::span<const int64_t> indices) {
  if (indices.empty()) return;
  GatherBatch(data_.train, indices, &next_x_, &next_labels_, &next_targets_);
  prefetched_step_ = step;
}

absl::StatusOr<PullResult> WorkerSession::PullVersion(int64_t min_version) {
  ParameterSet& params = model_->parameters();
  const absl::Time exchange_start = absl::Now();
  absl::StatusOr<PullResult> pulled = WithRetry(
      [&](absl::Time deadline) {
        return client_->Pull(reg_.job_id(), reg_.worker_id(), min_version, params.infos(),
                             &ValuesToPull(), deadline);
      },
      /*waits_for_peers=*/true);
  if (pulled.ok() && on_device_) params.values().CopyFrom(host_values_);  // host → device
  exchange_time_ += absl::Now() - exchange_start;
  if (pulled.ok()) return pulled;
  ASSIGN_OR_RETURN(v1::JobState state,
                   StateAfterError(pulled.status(), absl::StrCat("pull of version ", min_version)));
  PullResult ended;
  ended.version = min_version - 1;
  ended.state = state;
  return ended;
}

absl::StatusOr<v1::JobState> WorkerSession::ReportIfDue(int64_t from, int64_t version) {
  const int64_t total_steps = reg_.total_steps();
  const bool epoch_end =
      version > from && steps_per_epoch_ > 0 && version / steps_per_epoch_ != from / steps_per_epoch_;
  if (reg_.rank() != 0 || !(epoch_end || version == total_steps)) return v1::JOB_STATE_RUNNING;
  const absl::Time evaluation_start = absl::Now();
  absl::StatusOr<EvalResult> eval = EvaluateDataset(*model_, data_.test);
  evaluation_time_ += absl::Now() - evaluation_start;
  if (!eval.ok()) return Annotate(eval.status(), absl::StrCat(prefix_, ": evaluation"));
  v1::ReportMetricsRequest request;
  request.set_job_id(reg_.job_id());
  request.set_worker_id(reg_.worker_id());
  const int64_t epoch = (version + steps_per_epoch_ - 1) / steps_per_epoch_;
  request.set_epoch(static_cast<int32_t>(epoch));
  request.set_version(version);
  request.set_test_loss(eval->loss);
  request.set_test_accuracy(eval->accuracy);
  if (options_.verbose) {
    std::fprintf(stderr, "%s: epoch %lld/%d at step %lld: test loss %.4f%s\n", prefix_.c_str(),
                 static_cast<long long>(epoch), reg_.spec().training().epochs(),
                 static_cast<long long>(version), eval->loss,
                 data_.test.is_regression()
                     ? ""
                     : absl::StrFormat(", test accuracy %.4f", eval->accuracy).c_str());
  }
  absl::Status reported =
      WithRetry([&](absl::Time deadline) { return client_->ReportMetrics(request, deadline); },
                /*waits_for_peers=*/false);
  if (!reported.ok()) {
    return StateAfterError(reported, absl::StrCat("report of version ", version));
  }
  return v1::JOB_STATE_RUNNING;
}

template <typename Call>
auto WorkerSession::WithRetry(Call call, bool waits_for_peers) -> decltype(call(absl::Time())) {
  absl::Time give_up = absl::InfiniteFuture();
  absl::Duration backoff = kFirstBackoff;
  while (true) {
    auto result = call(absl::Now() + options_.rpc_timeout);
    const absl::Status& status = StatusOf(result);
    if (status.ok() || !IsTransient(status.code())) return result;
    if (waits_for_peers && status.code() == absl::StatusCode::kDeadlineExceeded) {
      absl::StatusOr<v1::JobState> state =
          client_->Heartbeat(reg_.job_id(), reg_.worker_id(), absl::Now() + options_.rpc_timeout);
      if (state.ok() && !IsEndedState(*state)) continue;
      return result;
    }
    const absl::Time now = absl::Now();
    if (give_up == absl::InfiniteFuture()) give_up = now + options_.rpc_timeout;
    if (now >= give_up) return result;
    absl::SleepFor(std::min(backoff, give_up - now));
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

absl::StatusOr<v1::JobState> WorkerSession::StateAfterError(const absl::Status& error,
                                                            const std::string& what) {
  absl::StatusOr<v1::JobState> state =
      client_->Heartbeat(reg_.job_id(), reg_.worker_id(), absl::Now() + options_.rpc_timeout);
  if (state.ok() && IsEndedState(*state)) return *state;
  return Annotate(error, absl::StrCat(prefix_, ": ", what));
}

absl::Status WorkerSession::EndOfJob(v1::JobState state, int64_t version) {
  MaybeLogProgress(version, /*force=*/true);
  if (state == v1::JOB_STATE_FAILED) {
    return absl::AbortedError(absl::StrCat("job ", reg_.job_id(),
                                           " failed on the parameter server at step ", version,
                                           " (its status says why)"));
  }
  if (options_.verbose) {
    std::fprintf(stderr, "%s: the job %s at step %lld\n", prefix_.c_str(),
                 state == v1::JOB_STATE_STOPPED ? "was stopped" : "completed",
                 static_cast<long long>(version));
  }
  return absl::OkStatus();
}

void WorkerSession::MaybeLogProgress(int64_t steps_done, bool force) {
  if (!options_.verbose) return;
  const absl::Time now = absl::Now();
  const absl::Duration window = now - window_start_;
  if (!force && window < kProgressPeriod) return;
  if (window_samples_ > 0) {
    // The epoch that the last step belonged to (1-based).
    const int64_t epoch = (steps_done + steps_per_epoch_ - 1) / steps_per_epoch_;
    std::fprintf(
        stderr, "%s: step %lld/%lld (epoch %lld/%d)  loss %.4f  %.0f samples/s\n", prefix_.c_str(),
        static_cast<long long>(steps_done), static_cast<long long>(reg_.total_steps()),
        static_cast<long long>(epoch), reg_.spec().training().epochs(),
        window_loss_sum_ / static_cast<double>(window_samples_),
        static_cast<double>(window_samples_) / std::max(absl::ToDoubleSeconds(window), 1e-9));
  }
  window_start_ = now;
  window_samples_ = 0;
  window_loss_sum_ = 0;
}

}  // namespace

Worker::Worker(ParameterClient* client, Backend* backend, WorkerOptions options)
    : client_(client), backend_(backend), options_(std::move(options)) {}

absl::Status Worker::Run() {
  const std::string name = options_.name.empty() ? DefaultWorkerName() : options_.name;
  ASSIGN_OR_RETURN(v1::RegisterWorkerResponse reg, RegisterWithRetry(client_, options_, name));
  RETURN_IF_ERROR(CheckAssignment(reg));
  WorkerSession session(client_, backend_, options_, std::move(reg));
  return session.Run();
}

}  // namespace psgrid
