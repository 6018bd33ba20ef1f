#include "node/rpc/caller.h"

#include <memory>
#include <string>

#include <grpcpp/security/auth_context.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
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

namespace {

const char* RoleName(Role r) {
  switch (r) {
    case Role::kReader: return "reader";
    case Role::kWriter: return "writer";
    case Role::kAdmin: return "admin";
    case Role::kNode: return "node";
  }
  return "?";
}

}  // namespace

absl::StatusOr<Role> RoleOf(const grpc::ServerContextBase& ctx,
                            const replication::Principal& caller) {
  if (caller.client.empty()) return Role::kNode;
  std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  if (auth != nullptr) {
    // RFC 2253 subject, e.g. "CN=app,OU=writer,O=200046977"; names and roles need no
    // escaping (certs/pki.sh restricts them to [a-z0-9._-]).
    for (const grpc::string_ref& v : auth->FindPropertyValues("x509_subject")) {
      for (absl::string_view rdn : absl::StrSplit(absl::string_view(v.data(), v.size()), ',')) {
        if (!absl::ConsumePrefix(&rdn, "OU=")) continue;
        if (rdn == "reader") return Role::kReader;
        if (rdn == "writer") return Role::kWriter;
        if (rdn == "admin") return Role::kAdmin;
      }
    }
  }
  return absl::PermissionDeniedError(
      absl::StrCat("client certificate of ", caller.Author(), " names no role (reader, writer, admin)"));
}

absl::Status RequireRole(const grpc::ServerContextBase& ctx, const replication::Principal& caller,
                         Role needed) {
  absl::StatusOr<Role> role = RoleOf(ctx, caller);
  if (!role.ok()) return role.status();
  if (static_cast<int>(*role) >= static_cast<int>(needed)) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(caller.Author(), " has role ", RoleName(*role),
                                                  "; this needs role ", RoleName(needed)));
}

}  // namespace interco::node
