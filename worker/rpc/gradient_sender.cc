#include "worker/rpc/gradient_sender.h"

#include "core/tensor_codec.h"
#include "proto/grpc_status.h"

namespace psgrid {

GradientSender::GradientSender(v1::Parameters::Stub* stub, const v1::PushHeader& header,
                               const std::vector<ParamInfo>& layout, const float* gradients,
                               absl::Time deadline)
    : step_(header.step()), layout_(layout), gradients_(gradients), first_header_(header) {
  if (deadline != absl::InfiniteFuture()) context_.set_deadline(absl::ToChronoTime(deadline));
  writer_ = stub->PushGradients(&context_, &response_);
  int64_t end = 0;
  for (const ParamInfo& info : layout_) end = std::max(end, info.offset + info.size);
  ready_from_ = end + 1;  // nothing is ready
  thread_ = std::thread([this] { Send(); });
}

GradientSender::~GradientSender() {
  if (thread_.joinable()) {
    context_.TryCancel();  // an unfinished push: the server drops it
    {
      absl::MutexLock lock(&mu_);
      stream_broken_ = true;
    }
    thread_.join();
  }
}

void GradientSender::Ready(int64_t ready_from) {
  absl::MutexLock lock(&mu_);
  ready_from_ = std::min(ready_from_, ready_from);
}

void GradientSender::Send() {
  int next = static_cast<int>(layout_.size()) - 1;  // tensors go from the top of the arena down
  bool header_sent = false;
  std::vector<ParamInfo> batch;
  while (next >= 0) {
    int64_t from;
    {
      absl::MutexLock lock(&mu_);
      const int64_t offset = layout_[next].offset;
      auto sendable = [this, offset]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stream_broken_ || ready_from_ <= offset;
      };
      mu_.Await(absl::Condition(&sendable));
      if (stream_broken_) return;
      from = ready_from_;
    }
    batch.clear();
    while (next >= 0 && layout_[next].offset >= from) batch.push_back(layout_[next--]);
    bool ok = true;
    EncodeSlices(batch, gradients_, kDefaultChunkBytes, [&](std::vector<v1::TensorSlice>&& group) {
      v1::PushGradientsRequest message;
      if (!header_sent) *message.mutable_header() = first_header_;
      header_sent = true;
      for (v1::TensorSlice& slice : group) *message.add_slices() = std::move(slice);
      ok = writer_->Write(message);
      return ok;
    });
    if (!ok) {
      absl::MutexLock lock(&mu_);
      stream_broken_ = true;  // Finish() learns why from the stream's status
      return;
    }
  }
}

absl::StatusOr<v1::PushGradientsResponse> GradientSender::Finish(
    const v1::PushHeader& final_header) {
  Ready(0);
  thread_.join();
  bool broken;
  {
    absl::MutexLock lock(&mu_);
    broken = stream_broken_;
  }
  if (!broken) {
    v1::PushGradientsRequest last;
    *last.mutable_header() = final_header;
    if (writer_->Write(last)) writer_->WritesDone();
  }
  const absl::Status status = FromGrpcStatus(writer_->Finish());
  if (!status.ok()) return status;
  return response_;
}

}  // namespace psgrid
