// StepDoorbell: the per-step handshake of a shared-memory worker and its parameter server, as
// a one-slot request/answer box in a small POSIX shared-memory segment, woken with futexes.
//
// A worker on the server's machine already trains in shared arenas (SharedRegion); what is
// left of a step's exchange is "my gradient for step t is in my segment" and "version t+1 is
// in the parameter segment". Through a gRPC stream that costs two socket hops and a dozen
// thread switches per step; through the doorbell, two futex wake-ups.
//
// Protocol: the worker writes its request (under a sequence lock, since it may post the next
// part while the server reads the last) and bumps request_seq, then wakes the server; the
// server answers request n by writing the answer and setting answer_seq = n.
// Sequence numbers are 32-bit and wrap. Either side waits with a deadline; no wait is
// unbounded. The block is plain data that the other process may scribble on: readers copy it
// out once and validate what they use (the server's validation is Job::PushGradients).
#ifndef PSGRID_CORE_STEP_DOORBELL_H_
#define PSGRID_CORE_STEP_DOORBELL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/shared_region.h"

namespace psgrid {

// kPush: the step's gradient is complete (answered with the next version). kPart: part of it
// is (from ready_from on; not answered: a later part or the push supersedes it). kClose: the
// worker lets go of the doorbell (answered).
enum class DoorbellRequestKind : uint32_t { kPush = 1, kClose = 2, kPart = 3 };

struct DoorbellRequest {
  uint32_t seq = 0;
  DoorbellRequestKind kind = DoorbellRequestKind::kPush;
  int64_t step = 0;
  int64_t sample_count = 0;
  double loss_sum = 0;
  int64_t correct = 0;
  int64_t ready_from = 0;  // kPart: the arena offset from which on the gradient is complete
};

struct DoorbellAnswer {
  absl::Status status;  // the push's result; OK with the version below
  int64_t version = 0;
  int32_t state = 0;  // a v1::JobState value
};

class StepDoorbell {
 public:
  // The server creates a worker's doorbell (the name must be new); the worker opens it.
  static absl::StatusOr<std::unique_ptr<StepDoorbell>> Create(const std::string& name);
  static absl::StatusOr<std::unique_ptr<StepDoorbell>> Open(const std::string& name);
  ~StepDoorbell();

  const std::string& name() const { return region_->name(); }

  // Worker side. Posts a request and returns its sequence number.
  uint32_t Ring(const DoorbellRequest& request);
  // The answer to request `seq`; DEADLINE_EXCEEDED when it has not come by `deadline`.
  absl::StatusOr<DoorbellAnswer> AwaitAnswer(uint32_t seq, absl::Time deadline);

  // Server side. The sequence number of the newest request posted so far.
  uint32_t LatestRequest() const;
  // The newest request after `seen` (a part may have been superseded by a newer request before
  // it was read), or nullopt when none is posted by `deadline`. Polls for up to `spin` before
  // it sleeps: worth it when the request is due within microseconds and a core is free.
  std::optional<DoorbellRequest> AwaitRequest(uint32_t seen, absl::Time deadline,
                                              absl::Duration spin = absl::ZeroDuration());
  void Answer(uint32_t seq, const DoorbellAnswer& answer);

 private:
  struct Block;
  explicit StepDoorbell(std::unique_ptr<SharedRegion> region);
  static int64_t BlockFloats();
  Block* block() const;  // the shared block (writable: it is the other process's too)

  std::unique_ptr<SharedRegion> region_;
};

}  // namespace psgrid

#endif  // PSGRID_CORE_STEP_DOORBELL_H_
