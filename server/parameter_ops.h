// What every transport of the parameter service does with a push and a pull, whatever carries
// the bytes (gRPC in server/rpc/grpc_parameter_service.cc, the raw-TCP data plane in
// server/rpc/data_plane_server.cc): the domain's view of a push, and the bounded wait for the
// version a pull asks for.
#ifndef PSGRID_SERVER_PARAMETER_OPS_H_
#define PSGRID_SERVER_PARAMETER_OPS_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/tensor.h"
#include "psgrid/v1/service.pb.h"
#include "server/job.h"

namespace psgrid {

// The header's fields and the gradient arena (borrowed) as Job::PushGradients takes them.
GradientPush PushOf(const v1::PushHeader& header, const Tensor* gradients);

// Waits (in slices, so that `should_stop` is asked about twice a second) until the job has
// min_version or has ended, by `deadline`. A version that cannot come (Job::CheckPull) is
// refused at once; a non-OK `should_stop` ends the wait with its status.
absl::StatusOr<ParameterSnapshot> AwaitPull(Job& job, const std::string& worker_id,
                                            int64_t min_version, absl::Time deadline,
                                            bool with_values,
                                            const std::function<absl::Status()>& should_stop);

}  // namespace psgrid

#endif  // PSGRID_SERVER_PARAMETER_OPS_H_
