// The deadline a server handler works to: the client's, or now + a fallback when it set none.
#ifndef PSGRID_SERVER_RPC_CALL_DEADLINE_H_
#define PSGRID_SERVER_RPC_CALL_DEADLINE_H_

#include <grpcpp/grpcpp.h>

#include <chrono>

#include "absl/time/time.h"

namespace psgrid {

inline absl::Time CallDeadline(const grpc::ServerContext* context, absl::Duration fallback) {
  const std::chrono::system_clock::time_point deadline = context->deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return absl::Now() + fallback;
  return absl::FromChrono(deadline);
}

}  // namespace psgrid

#endif  // PSGRID_SERVER_RPC_CALL_DEADLINE_H_
