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

// What a caller may do. A client certificate carries its role in the subject's OU
// (certs/pki.sh client --role); an authority's node certificate acts as the authority
// itself and may do everything.
enum class Role { kReader, kWriter, kAdmin, kNode };

// The role of `caller` on `ctx`. PERMISSION_DENIED if a client certificate names no
// known role.
absl::StatusOr<Role> RoleOf(const grpc::ServerContextBase& ctx,
                            const replication::Principal& caller);

// OK if the caller's role is at least `needed` (reader < writer < admin < node);
// PERMISSION_DENIED naming the caller, its role and the role needed otherwise.
absl::Status RequireRole(const grpc::ServerContextBase& ctx, const replication::Principal& caller,
                         Role needed);

}  // namespace interco::node

#endif  // INTERCO_NODE_RPC_CALLER_H_
