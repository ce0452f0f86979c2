#include "worker/rpc/grpc_parameter_client.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status_macros.h"
#include "core/tensor_codec.h"
#include "proto/grpc_status.h"
#include "proto/job_state.h"

namespace psgrid {
namespace {

constexpr int kMaxReceiveMessageBytes = 16 << 20;
// A step stream lives at most this long, and is renewed when less than kStepStreamRenewal of
// it is left: a step that waits on it (for the slowest worker) is bounded by that.
constexpr absl::Duration kStepStreamLifetime = absl::Minutes(5);
constexpr absl::Duration kStepStreamRenewal = absl::Minutes(2);
// A shared-memory step's answer is awaited in slices of this, checking the connection between.
constexpr absl::Duration kAnswerSlice = absl::Milliseconds(200);
// How long closing a step stream waits for the server to let go of the doorbell.
constexpr absl::Duration kCloseTimeout = absl::Seconds(5);
// Reconnection backoff of the channel: short, so that a worker started before its server (or
// across a server restart) connects soon after the server listens.
constexpr int kInitialReconnectBackoffMs = 100;
constexpr int kMaxReconnectBackoffMs = 2000;

void SetDeadline(grpc::ClientContext* context, absl::Time deadline) {
  if (deadline != absl::InfiniteFuture()) context->set_deadline(absl::ToChronoTime(deadline));
}

}  // namespace

absl::StatusOr<std::unique_ptr<GrpcParameterClient>> GrpcParameterClient::Connect(
    const std::string& address, absl::Duration connect_timeout) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kInitialReconnectBackoffMs);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, kInitialReconnectBackoffMs);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, kMaxReconnectBackoffMs);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  // WaitForConnected keeps asking the channel to connect (with the backoff above) until it is
  // ready or the deadline passes.
  const absl::Time deadline = absl::Now() + std::max(connect_timeout, absl::ZeroDuration());
  if (!channel->WaitForConnected(absl::ToChronoTime(deadline))) {
    return absl::UnavailableError(
        absl::StrFormat("cannot reach the parameter server at %s after %gs", address,
                        absl::ToDoubleSeconds(connect_timeout)));
  }
  return std::unique_ptr<GrpcParameterClient>(new GrpcParameterClient(address, std::move(channel)));
}

GrpcParameterClient::GrpcParameterClient(std::string address,
                                         std::shared_ptr<grpc::Channel> channel)
    : address_(std::move(address)),
      channel_(std::move(channel)),
      stub_(v1::Parameters::NewStub(channel_)) {}

absl::StatusOr<v1::RegisterWorkerResponse> GrpcParameterClient::Register(
    const std::string& job_id, const std::string& worker_name, absl::Time deadline) {
  grpc::ClientContext context;
  SetDeadline(&context, deadline);
  context.set_wait_for_ready(true);  // a server that restarts is waited for, within the deadline
  v1::RegisterWorkerRequest request;
  request.set_job_id(job_id);
  request.set_worker_name(worker_name);
  v1::RegisterWorkerResponse response;
  RETURN_IF_ERROR(FromGrpcStatus(stub_->RegisterWorker(&context, request, &response)));
  return response;
}

absl::StatusOr<v1::PushGradientsResponse> GrpcParameterClient::Push(
    const v1::PushHeader& header, const std::vector<ParamInfo>& layout, const Tensor& gradients,
    absl::Time deadline) {
  if (gradients.size() < LayoutSize(layout)) {
    return absl::InvalidArgumentError(
        absl::StrCat("push of step ", header.step(), ": a gradient arena of ", gradients.size(),
                     " floats, the layout needs ", LayoutSize(layout)));
  }
  if (gradient_region_ != nullptr) {
    if (gradients.size() < gradient_region_->floats()) {
      return absl::InvalidArgumentError(
          absl::StrCat("push of step ", header.step(), ": a gradient arena of ", gradients.size(),
                       " floats, the shared segment holds ", gradient_region_->floats()));
    }
    // The gradient goes into our segment; the header alone travels, on the step stream.
    if (gradients.data() != gradient_region_->data()) {
      std::memcpy(gradient_region_->data(), gradients.data(),
                  gradient_region_->floats() * sizeof(float));
    }
    if (step_stream_ != nullptr && absl::Now() + kStepStreamRenewal > step_stream_deadline_) {
      CloseStepStream();
    }
    if (step_stream_ == nullptr) RETURN_IF_ERROR(OpenStepStream(header.job_id(), header.worker_id()));
    DoorbellRequest request;
    request.step = header.step();
    request.sample_count = header.sample_count();
    request.loss_sum = header.loss_sum();
    request.correct = header.correct();
    pending_ring_ = doorbell_->Ring(request);
    return v1::PushGradientsResponse();
  }
  if (sender_ != nullptr) {
    // The parts are on their way: send the rest and the closing header. A retry (after an
    // error) sends the whole push anew below.
    std::unique_ptr<GradientSender> sender = std::move(sender_);
    if (sender->step() == header.step()) return sender->Finish(header);
  }
  grpc::ClientContext context;
  SetDeadline(&context, deadline);
  v1::PushGradientsResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::PushGradientsRequest>> writer =
      stub_->PushGradients(&context, &response);
  v1::PushGradientsRequest message;
  *message.mutable_header() = header;  // travels with the first group of slices
  bool stream_ok = true;
  bool sent_any = false;
  EncodeSlices(layout, gradients.data(), kDefaultChunkBytes,
               [&](std::vector<v1::TensorSlice>&& group) {
                 for (v1::TensorSlice& slice : group) *message.add_slices() = std::move(slice);
                 stream_ok = writer->Write(message);
                 sent_any = true;
                 message.Clear();
                 return stream_ok;
               });
  if (!sent_any) stream_ok = writer->Write(message);  // no parameters: the header alone
  // A failed Write means the stream is broken; Finish() says why.
  if (stream_ok) writer->WritesDone();
  RETURN_IF_ERROR(FromGrpcStatus(writer->Finish()));
  return response;
}

void GrpcParameterClient::PushPart(const v1::PushHeader& header,
                                   const std::vector<ParamInfo>& layout, const Tensor& gradients,
                                   int64_t ready_from, absl::Time deadline) {
  if (ready_from <= 0) return;
  if (gradient_region_ == nullptr) {
    if (gradients.size() < LayoutSize(layout)) return;  // the push that follows says so
    if (!WorthSendingEarly(layout)) return;
    if (sender_ == nullptr || sender_->step() != header.step()) {
      sender_ = std::make_unique<GradientSender>(stub_.get(), header, layout, gradients.data(),
                                                 deadline);
    }
    sender_->Ready(ready_from);
    return;
  }
  if (doorbell_ == nullptr) return;
  if (step_stream_ != nullptr && absl::Now() + kStepStreamRenewal > step_stream_deadline_) {
    CloseStepStream();
  }
  if (step_stream_ == nullptr && !OpenStepStream(header.job_id(), header.worker_id()).ok()) {
    return;  // the push that follows reports the problem
  }
  DoorbellRequest request;
  request.kind = DoorbellRequestKind::kPart;
  request.step = header.step();
  request.sample_count = header.sample_count();
  request.ready_from = ready_from;
  doorbell_->Ring(request);
}

absl::StatusOr<PullResult> GrpcParameterClient::Pull(const std::string& job_id,
                                                     const std::string& worker_id,
                                                     int64_t min_version,
                                                     const std::vector<ParamInfo>& layout,
                                                     Tensor* values, absl::Time deadline) {
  if (values->size() < LayoutSize(layout)) {
    return absl::InvalidArgumentError(absl::StrCat("pull: a parameter arena of ", values->size(),
                                                   " floats, the layout needs ",
                                                   LayoutSize(layout)));
  }
  if (pending_ring_.has_value()) {
    ASSIGN_OR_RETURN(DoorbellAnswer answer, AwaitStepAnswer(deadline));
    RETURN_IF_ERROR(answer.status);
    if (answer.version >= min_version || IsEndedState(static_cast<v1::JobState>(answer.state))) {
      RETURN_IF_ERROR(CopySharedParameters(values));
      return PullResult{answer.version, static_cast<v1::JobState>(answer.state)};
    }
    // An answer to an earlier step than asked for: ask for the version itself below.
  }
  grpc::ClientContext context;
  SetDeadline(&context, deadline);
  v1::PullParametersRequest request;
  request.set_job_id(job_id);
  request.set_worker_id(worker_id);
  request.set_min_version(min_version);
  request.set_shared_memory(parameter_region_ != nullptr);
  std::unique_ptr<grpc::ClientReader<v1::PullParametersResponse>> reader =
      stub_->PullParameters(&context, request);

  PullResult result;
  SliceAssembler assembler(layout, values->data());
  absl::Status slices_status;
  bool got_header = false;
  int64_t slices = 0;
  v1::PullParametersResponse message;
  while (reader->Read(&message)) {
    if (!got_header) {
      result.version = message.version();
      result.state = message.state();
      got_header = true;
    }
    if (!slices_status.ok()) continue;  // draining after a bad slice
    for (const v1::TensorSlice& slice : message.slices()) {
      slices_status = assembler.Add(slice);
      if (!slices_status.ok()) {
        context.TryCancel();
        break;
      }
      ++slices;
    }
  }
  const absl::Status rpc_status = FromGrpcStatus(reader->Finish());
  if (!slices_status.ok()) {
    return absl::Status(slices_status.code(),
                        absl::StrCat("parameters from ", address_, ": ", slices_status.message()));
  }
  RETURN_IF_ERROR(rpc_status);
  if (!got_header) {
    return absl::InternalError(
        absl::StrCat("the parameter server at ", address_, " ended a pull without a version"));
  }
  if (parameter_region_ != nullptr) {
    // Version `result.version` is in the segment: the server rewrites it only after every
    // worker, this one included, has pushed the next step.
    RETURN_IF_ERROR(CopySharedParameters(values));
    return result;
  }
  if (slices == 0 && IsEndedState(result.state)) return result;
  absl::Status whole = assembler.Finish();
  if (!whole.ok()) {
    return absl::Status(whole.code(),
                        absl::StrCat("parameters from ", address_, ": ", whole.message()));
  }
  return result;
}

absl::Status GrpcParameterClient::CopySharedParameters(Tensor* values) const {
  if (values->size() < parameter_region_->floats()) {
    return absl::InvalidArgumentError(absl::StrCat("pull: a parameter arena of ", values->size(),
                                                   " floats, the shared segment holds ",
                                                   parameter_region_->floats()));
  }
  if (values->data() != parameter_region_->data()) {  // not when training in the segment
    std::memcpy(values->data(), parameter_region_->data(),
                parameter_region_->floats() * sizeof(float));
  }
  return absl::OkStatus();
}

absl::Status GrpcParameterClient::OpenStepStream(const std::string& job_id,
                                                 const std::string& worker_id) {
  if (doorbell_ == nullptr) {
    return absl::FailedPreconditionError("a step stream needs shared memory (UseSharedMemory)");
  }
  step_context_ = std::make_unique<grpc::ClientContext>();
  step_stream_deadline_ = absl::Now() + kStepStreamLifetime;
  SetDeadline(step_context_.get(), step_stream_deadline_);
  step_stream_ = stub_->SharedMemorySteps(step_context_.get());
  v1::PushHeader attach;
  attach.set_job_id(job_id);
  attach.set_worker_id(worker_id);
  attach.set_shared_memory(true);
  v1::PullParametersResponse attached;
  if (step_stream_ == nullptr || !step_stream_->Write(attach) || !step_stream_->Read(&attached)) {
    absl::Status status = absl::UnavailableError(absl::StrCat("cannot open a step stream to ", address_));
    if (step_stream_ != nullptr) {
      const absl::Status finished = FromGrpcStatus(step_stream_->Finish());
      if (!finished.ok()) status = finished;
    }
    step_stream_.reset();
    step_context_.reset();
    return status;
  }
  pending_ring_.reset();
  // The server sends nothing more until the stream ends: a reader waiting for that end tells
  // AwaitStepAnswer when the server went away (gRPC streams cannot be polled).
  step_stream_ended_ = std::make_shared<std::atomic<bool>>(false);
  step_reader_ = std::thread([stream = step_stream_.get(), ended = step_stream_ended_] {
    v1::PullParametersResponse ignored;
    while (stream->Read(&ignored)) {
    }
    ended->store(true);
  });
  return absl::OkStatus();
}

void GrpcParameterClient::CloseStepStream() {
  if (step_stream_ == nullptr) return;
  if (pending_ring_.has_value()) (void)AwaitStepAnswer(absl::Now() + kCloseTimeout);
  if (step_stream_ == nullptr) return;  // the wait found it broken
  DoorbellRequest close;
  close.kind = DoorbellRequestKind::kClose;
  pending_ring_ = doorbell_->Ring(close);
  const bool answered = AwaitStepAnswer(absl::Now() + kCloseTimeout).ok();
  DropStepStream(/*cancel=*/!answered);
}

void GrpcParameterClient::DropStepStream(bool cancel) {
  pending_ring_.reset();
  if (step_stream_ == nullptr) return;
  if (cancel) step_context_->TryCancel();
  step_stream_->WritesDone();
  if (step_reader_.joinable()) step_reader_.join();  // its Read ends with the call
  (void)step_stream_->Finish();
  step_stream_.reset();
  step_context_.reset();
}

absl::StatusOr<DoorbellAnswer> GrpcParameterClient::AwaitStepAnswer(absl::Time deadline) {
  const uint32_t seq = *pending_ring_;
  while (true) {
    absl::StatusOr<DoorbellAnswer> answer =
        doorbell_->AwaitAnswer(seq, std::min(deadline, absl::Now() + kAnswerSlice));
    if (answer.ok()) {
      pending_ring_.reset();
      return answer;
    }
    if (absl::Now() >= deadline) return answer.status();
    // The server answers only while the stream lives: its end, or a lost connection, ends
    // the wait.
    const grpc_connectivity_state state = channel_->GetState(/*try_to_connect=*/false);
    if (step_stream_ == nullptr || step_stream_ended_->load() ||
        state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN ||
        state == GRPC_CHANNEL_IDLE) {
      DropStepStream(/*cancel=*/true);
      return absl::UnavailableError(
          absl::StrCat("lost the connection to the parameter server at ", address_));
    }
  }
}

absl::StatusOr<SharedArenas> GrpcParameterClient::UseSharedMemory(const std::string& job_id,
                                                                  const std::string& worker_id,
                                                                  absl::Time deadline) {
  grpc::ClientContext context;
  SetDeadline(&context, deadline);
  v1::OpenSharedMemoryRequest request;
  request.set_job_id(job_id);
  request.set_worker_id(worker_id);
  v1::OpenSharedMemoryResponse response;
  RETURN_IF_ERROR(FromGrpcStatus(stub_->OpenSharedMemory(&context, request, &response)));
  ASSIGN_OR_RETURN(std::unique_ptr<SharedRegion> gradient,
                   SharedRegion::Open(response.gradient_segment(), response.arena_floats()));
  ASSIGN_OR_RETURN(std::unique_ptr<SharedRegion> parameters,
                   SharedRegion::Open(response.parameter_segment(), response.arena_floats()));
  ASSIGN_OR_RETURN(std::unique_ptr<StepDoorbell> doorbell,
                   StepDoorbell::Open(response.doorbell_segment()));
  // Segments of an earlier server (one that restarted) go, with their stream, unanswered.
  DropStepStream(/*cancel=*/true);
  gradient_region_ = std::move(gradient);
  parameter_region_ = std::move(parameters);
  doorbell_ = std::move(doorbell);
  return SharedArenas{parameter_region_->data(), gradient_region_->data(), response.arena_floats()};
}

absl::Status GrpcParameterClient::ReportMetrics(const v1::ReportMetricsRequest& request,
                                                absl::Time deadline) {
  grpc::ClientContext context;
  SetDeadline(&context, deadline);
  v1::ReportMetricsResponse response;
  return FromGrpcStatus(stub_->ReportMetrics(&context, request, &response));
}

absl::StatusOr<v1::JobState> GrpcParameterClient::Heartbeat(const std::string& job_id,
                                                            const std::string& worker_id,
                                                            absl::Time deadline) {
  ASSIGN_OR_RETURN(v1::HeartbeatResponse response, CheckIn(job_id, worker_id, deadline));
  return response.state();
}

absl::StatusOr<v1::HeartbeatResponse> GrpcParameterClient::CheckIn(const std::string& job_id,
                                                                   const std::string& worker_id,
                                                                   absl::Time deadline) {
  grpc::ClientContext context;
  SetDeadline(&context, deadline);
  v1::HeartbeatRequest request;
  request.set_job_id(job_id);
  request.set_worker_id(worker_id);
  v1::HeartbeatResponse response;
  RETURN_IF_ERROR(FromGrpcStatus(stub_->Heartbeat(&context, request, &response)));
  return response;
}

}  // namespace psgrid
