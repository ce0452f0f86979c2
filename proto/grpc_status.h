// The one place (server, worker and client alike) that converts between absl::Status (the domain's
// errors) and grpc::Status (the wire's). The two share their code numbers; the message is kept as
// it is.
#ifndef PSGRID_PROTO_GRPC_STATUS_H_
#define PSGRID_PROTO_GRPC_STATUS_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace psgrid {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace psgrid

#endif  // PSGRID_PROTO_GRPC_STATUS_H_
