#include "server/parameter_ops.h"

#include <algorithm>

namespace psgrid {
namespace {

// Waits are cut into pieces this long, so that a cancelled call or a shutdown is noticed soon.
constexpr absl::Duration kWaitSlice = absl::Milliseconds(500);

}  // namespace

GradientPush PushOf(const v1::PushHeader& header, const Tensor* gradients) {
  GradientPush push;
  push.worker_id = header.worker_id();
  push.step = header.step();
  push.clock = header.clock();
  push.sample_count = header.sample_count();
  push.loss_sum = header.loss_sum();
  push.correct = header.correct();
  push.gradients = gradients;
  return push;
}

absl::StatusOr<ParameterSnapshot> AwaitPull(Job& job, const std::string& worker_id,
                                            int64_t min_version, absl::Time deadline,
                                            bool with_values,
                                            const std::function<absl::Status()>& should_stop) {
  while (true) {
    if (absl::Status s = job.CheckPull(worker_id, min_version); !s.ok()) return s;
    absl::StatusOr<ParameterSnapshot> snapshot = job.WaitForVersion(
        min_version, std::min(deadline, absl::Now() + kWaitSlice), with_values);
    if (snapshot.ok()) return snapshot;
    if (snapshot.status().code() != absl::StatusCode::kDeadlineExceeded ||
        absl::Now() >= deadline) {
      return snapshot.status();
    }
    if (absl::Status stop = should_stop(); !stop.ok()) return stop;
  }
}

}  // namespace psgrid
