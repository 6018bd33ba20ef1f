// Who is calling: the principal named by the client certificate's SPIFFE ID.
#ifndef INTERCO_NODE_RPC_CALLER_H_
#define INTERCO_NODE_RPC_CALLER_H_

#include <string_view>

#include <grpcpp/server_context.h>

#include "absl/status/statusor.h"
#include "replication/ids.h"

namespace interco::node {

// The caller of `ctx`. UNAUTHENTICATED if the connection carries no SPIFFE ID of the
// form spiffe://<federation>/collectivite/<SIREN>[/client/<name>] for `federation`.
absl::StatusOr<replication::Principal> CallerOf(const grpc::ServerContextBase& ctx,
                                                std::string_view federation);

}  // namespace interco::node

#endif  // INTERCO_NODE_RPC_CALLER_H_
