// GradientSender: one network push of a step's gradient, sent while backward still runs.
//
// Backward produces the gradient from the last layer to the first. The worker says how far it
// is complete (Ready(from)); a sender thread writes the complete tensors on a PushGradients
// stream, top layer first, while the worker computes the earlier layers; Finish sends the
// rest with the final header (the step's loss is known only then) and returns the server's
// answer. The stream carries the header first and again last; see service.proto.
//
// One object per push; Ready and Finish from the worker's thread. The stub, layout and
// gradient arena are borrowed until Finish returns (or the object is destroyed, which cancels
// an unfinished push).
#ifndef PSGRID_WORKER_RPC_GRADIENT_SENDER_H_
#define PSGRID_WORKER_RPC_GRADIENT_SENDER_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/parameters.h"
#include "psgrid/v1/service.grpc.pb.h"

namespace psgrid {

class GradientSender {
 public:
  GradientSender(v1::Parameters::Stub* stub, const v1::PushHeader& header,
                 const std::vector<ParamInfo>& layout, const float* gradients, absl::Time deadline);
  ~GradientSender();
  GradientSender(const GradientSender&) = delete;
  GradientSender& operator=(const GradientSender&) = delete;

  int64_t step() const { return step_; }
  // The gradient is complete from arena offset `ready_from` on.
  void Ready(int64_t ready_from);
  // Sends what is left, then `final_header` (sample_count, loss_sum, correct of the step), and
  // waits for the server's answer.
  absl::StatusOr<v1::PushGradientsResponse> Finish(const v1::PushHeader& final_header);

 private:
  void Send();  // the sender thread

  const int64_t step_;
  const std::vector<ParamInfo>& layout_;
  const float* const gradients_;
  grpc::ClientContext context_;
  v1::PushGradientsResponse response_;
  std::unique_ptr<grpc::ClientWriter<v1::PushGradientsRequest>> writer_;
  v1::PushHeader first_header_;

  absl::Mutex mu_;
  int64_t ready_from_ ABSL_GUARDED_BY(mu_);
  bool stream_broken_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // started by the constructor once the stream is open
};

}  // namespace psgrid

#endif  // PSGRID_WORKER_RPC_GRADIENT_SENDER_H_
