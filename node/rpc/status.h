// The one place where absl::Status becomes grpc::Status (same google.rpc.Code numbers).
#ifndef INTERCO_NODE_RPC_STATUS_H_
#define INTERCO_NODE_RPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace interco::node {

grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace interco::node

#endif  // INTERCO_NODE_RPC_STATUS_H_
