#include "node/rpc/caller.h"

#include <memory>
#include <string>

#include <grpcpp/security/auth_context.h>

#include "absl/strings/str_cat.h"
#include "replication/base/strings.h"

namespace interco::node {

absl::StatusOr<replication::Principal> CallerOf(const grpc::ServerContextBase& ctx,
                                                std::string_view federation) {
  std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) {
    return absl::UnauthenticatedError("no client certificate");
  }
  std::string uri;
  for (const grpc::string_ref& v : auth->FindPropertyValues("peer_spiffe_id")) {
    uri.assign(v.data(), v.size());
  }
  if (uri.empty()) {
    for (const grpc::string_ref& v : auth->FindPropertyValues("x509_subject_alternative_name")) {
      std::string_view san(v.data(), v.size());
      if (san.starts_with("spiffe://")) uri.assign(san);
    }
  }
  if (uri.empty()) return absl::UnauthenticatedError("client certificate has no SPIFFE ID");
  absl::StatusOr<replication::Principal> p = replication::ParseSpiffeId(uri);
  if (!p.ok()) return absl::UnauthenticatedError(p.status().message());
  if (p->federation != federation) {
    return absl::UnauthenticatedError(absl::StrCat("client certificate is for federation \"",
                                                   p->federation, "\", not \"",
                                                   ToAbsl(federation), "\""));
  }
  return p;
}

}  // namespace interco::node
