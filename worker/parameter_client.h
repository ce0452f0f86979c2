// ParameterClient: what a worker needs from the parameter server, whatever the transport
// (gRPC in worker/rpc/, fakes in tests). Each call has a deadline; none waits forever.
#ifndef PSGRID_WORKER_PARAMETER_CLIENT_H_
#define PSGRID_WORKER_PARAMETER_CLIENT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/parameters.h"
#include "core/tensor.h"
#include "psgrid/v1/service.pb.h"

namespace psgrid {

// Shared-memory arenas a worker may train in directly (see UseSharedMemory).
struct SharedArenas {
  float* parameters = nullptr;  // the job's newest version
  float* gradients = nullptr;   // this worker's gradient, read by the server at each push
  int64_t floats = 0;           // of each
};

struct PullResult {
  int64_t version = 0;
  v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
};

// Implementations are thread-safe (the heartbeat runs on its own thread).
class ParameterClient {
 public:
  virtual ~ParameterClient() = default;

  // Joins `job_id` (or, when empty, any job that needs a worker); waits up to `deadline`.
  virtual absl::StatusOr<v1::RegisterWorkerResponse> Register(const std::string& job_id,
                                                              const std::string& worker_name,
                                                              absl::Time deadline) = 0;
  // Sends the gradient arena (in `layout` order) for header.step.
  virtual absl::StatusOr<v1::PushGradientsResponse> Push(const v1::PushHeader& header,
                                                         const std::vector<ParamInfo>& layout,
                                                         const Tensor& gradients,
                                                         absl::Time deadline) = 0;
  // Waits for version >= min_version (or the job's end) and writes the parameters into
  // `values` (an arena in `layout` order).
  virtual absl::StatusOr<PullResult> Pull(const std::string& job_id, const std::string& worker_id,
                                          int64_t min_version, const std::vector<ParamInfo>& layout,
                                          Tensor* values, absl::Time deadline) = 0;
  virtual absl::Status ReportMetrics(const v1::ReportMetricsRequest& request,
                                     absl::Time deadline) = 0;
  virtual absl::StatusOr<v1::JobState> Heartbeat(const std::string& job_id,
                                                 const std::string& worker_id,
                                                 absl::Time deadline) = 0;
  // From now on, exchange tensors with the server through shared memory (a worker on the
  // server's machine). Returns the arenas; a worker whose model adopts them (pushes from the
  // gradient arena, pulls into the parameter arena) skips every copy. In the synchronous
  // protocol the server rewrites the parameters only after this worker's next push, and reads
  // the gradient only during it. FAILED_PRECONDITION when the transport or the server offers
  // none; the client then goes on as before. The arenas live as long as the client.
  virtual absl::StatusOr<SharedArenas> UseSharedMemory(const std::string& job_id,
                                                       const std::string& worker_id,
                                                       absl::Time deadline) {
    return absl::FailedPreconditionError("this transport has no shared memory");
  }
  // Heartbeat with the job's current version too (to learn of a roll back). UNIMPLEMENTED
  // where the transport cannot say.
  virtual absl::StatusOr<v1::HeartbeatResponse> CheckIn(const std::string& job_id,
                                                        const std::string& worker_id,
                                                        absl::Time deadline) {
    return absl::UnimplementedError("this transport does not report the job's version");
  }
  // Whether PushPart does anything: then the worker announces each layer's gradient as
  // backward produces it, and it travels (or, through shared memory, is applied by the
  // server) while the worker computes the earlier layers.
  virtual bool TakesGradientParts() const { return false; }
  // Announces that `gradients` (the arena Push will send, in `layout` order; both borrowed
  // until that Push) is complete for header.step from offset `ready_from` (> 0) on. The Push
  // of the step still follows and carries the loss. Not answered: errors come with the Push.
  virtual void PushPart(const v1::PushHeader& header, const std::vector<ParamInfo>& layout,
                        const Tensor& gradients, int64_t ready_from, absl::Time deadline) {}
};

// What the transports share (parameter_client.cc).
// Floats an arena needs to hold every tensor of `layout` (arenas may pad beyond the last one).
int64_t LayoutSize(const std::vector<ParamInfo>& layout);
// Whether a network push should start while backward runs. It pays when much of the gradient
// is ready before backward ends, i.e. lies above the first layer (a CNN's dense layers over
// its convolutions); an MLP whose first layer holds most of the weights gains little, and the
// sender thread then only competes with backward for the cores (measured: 8% slower over gRPC
// and about 10% over the TCP data plane, on 2 cores). Layers are told apart by the "<layer>."
// prefix of the tensor names.
bool WorthSendingEarly(const std::vector<ParamInfo>& layout);

}  // namespace psgrid

#endif  // PSGRID_WORKER_PARAMETER_CLIENT_H_
