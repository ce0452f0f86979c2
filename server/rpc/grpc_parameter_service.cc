#include "server/rpc/grpc_parameter_service.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/step_doorbell.h"
#include "core/tensor.h"
#include "core/tensor_codec.h"
#include "proto/grpc_status.h"
#include "server/parameter_ops.h"
#include "server/rpc/call_deadline.h"
#include "server/rpc/data_plane_server.h"

namespace psgrid {
namespace {

// Waits are cut into pieces this long, so that a cancelled call or a shutdown is noticed soon.
constexpr absl::Duration kWaitSlice = absl::Milliseconds(500);
// How often a step stream that waits for its worker's next request checks its call.
constexpr absl::Duration kDoorbellSlice = absl::Milliseconds(200);
// How long a step stream polls for the next part of a gradient before it sleeps.
constexpr absl::Duration kPartSpin = absl::Milliseconds(1);

// Counts the step streams serving a doorbell while it lives.
class ActiveDoorbell {
 public:
  explicit ActiveDoorbell(std::atomic<int>* count) : count_(count) { count_->fetch_add(1); }
  ~ActiveDoorbell() { count_->fetch_sub(1); }
  ActiveDoorbell(const ActiveDoorbell&) = delete;
  ActiveDoorbell& operator=(const ActiveDoorbell&) = delete;

 private:
  std::atomic<int>* count_;
};
constexpr absl::Duration kRegisterWaitLimit = absl::Seconds(30);
constexpr absl::Duration kDefaultPullWait = absl::Seconds(60);

}  // namespace

GrpcParameterService::GrpcParameterService(JobManager* manager, DataPlaneServer* data_plane)
    : manager_(manager), data_plane_(data_plane) {}

void GrpcParameterService::BeginShutdown() { shutting_down_.store(true); }

grpc::Status GrpcParameterService::ShouldStopWaiting(grpc::ServerContext* context) const {
  if (context->IsCancelled()) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "the call was cancelled");
  }
  if (shutting_down_.load()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down");
  }
  return grpc::Status::OK;
}

grpc::Status GrpcParameterService::RegisterWorker(grpc::ServerContext* context,
                                                  const v1::RegisterWorkerRequest* request,
                                                  v1::RegisterWorkerResponse* response) {
  const absl::Time deadline =
      std::min(CallDeadline(context, kRegisterWaitLimit), absl::Now() + kRegisterWaitLimit);
  if (!request->job_id().empty()) {
    // An unknown id, or a job that will never need a worker again (it has them all or has
    // ended), fails at once rather than after the whole wait.
    absl::StatusOr<std::shared_ptr<Job>> job = manager_->Get(request->job_id());
    if (!job.ok()) return ToGrpcStatus(job.status());
    if (!(*job)->NeedsWorkers()) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          absl::StrCat("job ", request->job_id(), " needs no more workers (",
                                       JobStateName((*job)->Status().state()), ")"));
    }
  }
  absl::Status last;
  while (true) {
    if (grpc::Status stop = ShouldStopWaiting(context); !stop.ok()) return stop;
    absl::StatusOr<std::shared_ptr<Job>> job = manager_->WaitForJobNeedingWorkers(
        request->job_id(), std::min(deadline, absl::Now() + kWaitSlice));
    if (job.ok()) {
      absl::StatusOr<WorkerAssignment> assignment = (*job)->AddWorker(request->worker_name());
      if (assignment.ok()) {
        response->set_job_id((*job)->id());
        response->set_worker_id(assignment->worker_id);
        response->set_rank(assignment->rank);
        response->set_world_size(assignment->world_size);
        *response->mutable_spec() = (*job)->spec();
        response->set_total_steps(assignment->total_steps);
        if (data_plane_ != nullptr) {
          response->set_data_address(data_plane_->address());
          response->set_data_token(
              data_plane_->IssueToken((*job)->id(), assignment->worker_id));
        }
        return grpc::Status::OK;
      }
      // FAILED_PRECONDITION: another worker took the last place (or the job ended) between
      // the wait and AddWorker; look again.
      if (assignment.status().code() != absl::StatusCode::kFailedPrecondition) {
        return ToGrpcStatus(assignment.status());
      }
      last = assignment.status();
    } else if (job.status().code() != absl::StatusCode::kNotFound) {
      return ToGrpcStatus(job.status());
    } else {
      last = job.status();
    }
    if (absl::Now() >= deadline) {
      if (last.code() == absl::StatusCode::kNotFound) return ToGrpcStatus(last);
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("no job needed a worker in time (", last.message(), ")"));
    }
  }
}

grpc::Status GrpcParameterService::PushGradients(
    grpc::ServerContext* context, grpc::ServerReader<v1::PushGradientsRequest>* reader,
    v1::PushGradientsResponse* response) {
  v1::PushGradientsRequest message;
  if (!reader->Read(&message) || !message.has_header()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "the first message of a push must carry a header");
  }
  v1::PushHeader header = message.header();
  absl::StatusOr<std::shared_ptr<Job>> found = manager_->Get(header.job_id());
  if (!found.ok()) return ToGrpcStatus(found.status());
  Job& job = **found;

  // The gradients are assembled into a private arena; the job sees them only when whole. A
  // shared-memory push carries the header alone: the gradient is in the worker's segment.
  Tensor gradients;
  if (header.shared_memory()) {
    do {
      if (message.slices_size() != 0) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "a shared-memory push carries no tensor slices");
      }
    } while (reader->Read(&message));
    absl::StatusOr<SharedWorkerMemory> shared = job.SharedMemoryOf(header.worker_id());
    if (!shared.ok()) return ToGrpcStatus(shared.status());
    gradients = std::move(shared->gradient);
  } else {
    gradients = Tensor({job.arena_size()});
    SliceAssembler assembler(job.layout(), gradients.data());
    bool first = true;
    do {
      if (!first && message.has_header()) {
        // The closing header of a push sent while backward ran: the same step, its loss now.
        const v1::PushHeader& last = message.header();
        if (last.job_id() != header.job_id() || last.worker_id() != header.worker_id() ||
            last.step() != header.step() || last.shared_memory()) {
          return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                              absl::StrCat("a push of step ", header.step(), " by ",
                                           header.worker_id(), " ends with a header of step ",
                                           last.step(), " by ", last.worker_id()));
        }
        header = last;
      }
      first = false;
      for (const v1::TensorSlice& slice : message.slices()) {
        if (absl::Status s = assembler.Add(slice); !s.ok()) return ToGrpcStatus(s);
      }
    } while (reader->Read(&message));
    if (absl::Status s = assembler.Finish(); !s.ok()) return ToGrpcStatus(s);
  }
  if (context->IsCancelled()) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "the push was cancelled");
  }

  const GradientPush push = PushOf(header, &gradients);
  absl::StatusOr<bool> duplicate = job.PushGradients(push);
  if (!duplicate.ok()) return ToGrpcStatus(duplicate.status());
  response->set_duplicate(*duplicate);
  return grpc::Status::OK;
}

grpc::Status GrpcParameterService::PullParameters(
    grpc::ServerContext* context, const v1::PullParametersRequest* request,
    grpc::ServerWriter<v1::PullParametersResponse>* writer) {
  absl::StatusOr<std::shared_ptr<Job>> found = manager_->Get(request->job_id());
  if (!found.ok()) return ToGrpcStatus(found.status());
  Job& job = **found;

  const absl::Time deadline = CallDeadline(context, kDefaultPullWait);
  absl::StatusOr<ParameterSnapshot> snapshot =
      AwaitPull(job, request->worker_id(), request->min_version(), deadline,
                /*with_values=*/!request->shared_memory(),
                [&] { return FromGrpcStatus(ShouldStopWaiting(context)); });
  if (!snapshot.ok()) return ToGrpcStatus(snapshot.status());

  v1::PullParametersResponse head;
  head.set_version(snapshot->version);
  head.set_state(snapshot->state);
  if (request->shared_memory()) {
    // The parameters are in the job's segment already; only the version travels.
    absl::StatusOr<SharedWorkerMemory> opened = job.SharedMemoryOf(request->worker_id());
    if (!opened.ok()) return ToGrpcStatus(opened.status());
    if (!writer->Write(head)) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "the puller went away");
    }
    return grpc::Status::OK;
  }
  bool written = writer->Write(head);
  if (written) {
    EncodeSlices(job.layout(), snapshot->values->data(), kDefaultChunkBytes,
                 [&](std::vector<v1::TensorSlice>&& slices) {
                   v1::PullParametersResponse message;
                   message.set_version(snapshot->version);
                   message.set_state(snapshot->state);
                   message.mutable_slices()->Reserve(static_cast<int>(slices.size()));
                   for (v1::TensorSlice& slice : slices) {
                     *message.add_slices() = std::move(slice);
                   }
                   written = writer->Write(message);
                   return written;
                 });
  }
  if (!written) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "the puller went away mid-stream");
  }
  return grpc::Status::OK;
}

grpc::Status GrpcParameterService::ReportMetrics(grpc::ServerContext* context,
                                                 const v1::ReportMetricsRequest* request,
                                                 v1::ReportMetricsResponse* response) {
  absl::StatusOr<std::shared_ptr<Job>> job = manager_->Get(request->job_id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  return ToGrpcStatus((*job)->ReportMetrics(request->worker_id(), request->epoch(),
                                            request->version(), request->test_loss(),
                                            request->test_accuracy()));
}

grpc::Status GrpcParameterService::OpenSharedMemory(grpc::ServerContext* context,
                                                    const v1::OpenSharedMemoryRequest* request,
                                                    v1::OpenSharedMemoryResponse* response) {
  if (!manager_->shared_memory()) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "this server offers no shared memory (psgrid-server --shared-memory)");
  }
  absl::StatusOr<std::shared_ptr<Job>> job = manager_->Get(request->job_id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  absl::StatusOr<SharedMemoryNames> names = (*job)->OpenSharedMemory(request->worker_id());
  if (!names.ok()) return ToGrpcStatus(names.status());
  response->set_gradient_segment(names->gradient_segment);
  response->set_parameter_segment(names->parameter_segment);
  response->set_doorbell_segment(names->doorbell_segment);
  response->set_arena_floats(names->arena_floats);
  return grpc::Status::OK;
}

grpc::Status GrpcParameterService::SharedMemorySteps(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::PullParametersResponse, v1::PushHeader>* stream) {
  v1::PushHeader attach;
  if (!stream->Read(&attach)) return grpc::Status::OK;  // the worker left before attaching
  if (!attach.shared_memory()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "a step stream starts with a shared-memory attach (shared_memory set)");
  }
  absl::StatusOr<std::shared_ptr<Job>> found = manager_->Get(attach.job_id());
  if (!found.ok()) return ToGrpcStatus(found.status());
  Job& job = **found;
  absl::StatusOr<SharedWorkerMemory> shared = job.SharedMemoryOf(attach.worker_id());
  if (!shared.ok()) return ToGrpcStatus(shared.status());
  const Tensor* gradients = &shared->gradient;
  StepDoorbell& doorbell = *shared->doorbell;
  uint32_t seen = doorbell.LatestRequest();
  {
    const v1::JobStatus status = job.Status();
    v1::PullParametersResponse attached;
    attached.set_version(status.step());
    attached.set_state(status.state());
    if (!stream->Write(attached)) return grpc::Status::OK;
  }
  ActiveDoorbell active(&active_doorbells_);
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  v1::PushHeader header;
  header.set_job_id(attach.job_id());
  header.set_worker_id(attach.worker_id());
  absl::Status part_error;  // of the current step's parts; answered at its push
  absl::Duration spin;
  while (true) {
    const std::optional<DoorbellRequest> request =
        doorbell.AwaitRequest(seen, absl::Now() + kDoorbellSlice, spin);
    spin = absl::ZeroDuration();
    if (!request.has_value()) {
      if (grpc::Status stop = ShouldStopWaiting(context); !stop.ok()) return stop;
      continue;
    }
    seen = request->seq;
    if (request->kind == DoorbellRequestKind::kClose) {
      doorbell.Answer(seen, DoorbellAnswer());
      return grpc::Status::OK;
    }
    header.set_step(request->step);
    header.set_sample_count(request->sample_count);
    header.set_loss_sum(request->loss_sum);
    header.set_correct(request->correct);
    GradientPush push = PushOf(header, gradients);
    if (request->kind == DoorbellRequestKind::kPart) {
      // Apply what every worker has delivered; the next part is due within one layer's
      // backward: poll for it when there is a core to spare for that.
      push.ready_from = std::max<int64_t>(request->ready_from, 1);
      if (part_error.ok()) part_error = job.PushGradients(push).status();
      if (2 * active_doorbells_.load() <= cores) spin = kPartSpin;
      continue;
    }
    DoorbellAnswer answer;
    answer.status = part_error.ok() ? job.PushGradients(push).status() : part_error;
    part_error = absl::OkStatus();
    // The next version; the job's liveness check ends the wait if a peer has gone.
    while (answer.status.ok()) {
      absl::StatusOr<ParameterSnapshot> next =
          job.WaitForVersion(request->step + 1, absl::Now() + kWaitSlice, /*with_values=*/false);
      if (next.ok()) {
        answer.version = next->version;
        answer.state = next->state;
        break;
      }
      if (next.status().code() != absl::StatusCode::kDeadlineExceeded) {
        answer.status = next.status();
      } else if (grpc::Status stop = ShouldStopWaiting(context); !stop.ok()) {
        answer.status = FromGrpcStatus(stop);
        doorbell.Answer(seen, answer);
        return stop;
      }
    }
    doorbell.Answer(seen, answer);
  }
}

grpc::Status GrpcParameterService::Heartbeat(grpc::ServerContext* context,
                                             const v1::HeartbeatRequest* request,
                                             v1::HeartbeatResponse* response) {
  absl::StatusOr<std::shared_ptr<Job>> job = manager_->Get(request->job_id());
  if (!job.ok()) return ToGrpcStatus(job.status());
  absl::StatusOr<v1::HeartbeatResponse> beat = (*job)->Heartbeat(request->worker_id());
  if (!beat.ok()) return ToGrpcStatus(beat.status());
  *response = *beat;
  return grpc::Status::OK;
}

}  // namespace psgrid
