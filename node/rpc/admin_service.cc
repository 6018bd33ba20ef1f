#include "node/rpc/admin_service.h"

#include "absl/strings/str_cat.h"
#include "node/rpc/caller.h"
#include "node/rpc/status.h"
#include "replication/base/status_macros.h"

namespace interco::node {

grpc::ServerUnaryReactor* AdminService::ListAuditEvents(
    grpc::CallbackServerContext* ctx, const interco::v1::ListAuditEventsRequest* request,
    interco::v1::ListAuditEventsResponse* response) {
  absl::Status s = [&]() -> absl::Status {
    INTERCO_ASSIGN_OR_RETURN(replication::Principal caller, CallerOf(*ctx, federation_));
    INTERCO_RETURN_IF_ERROR(RequireRole(*ctx, caller, Role::kAdmin));
    if (caller.siren != store_.authority()) {
      return absl::PermissionDeniedError(absl::StrCat(
          caller.Author(), " is not an administrator of this node's authority ", store_.authority()));
    }
    INTERCO_ASSIGN_OR_RETURN(AuditPage page, store_.ListAudit(request->chain(), request->page_size(),
                                                              request->page_token()));
    for (auto& e : page.events) *response->add_events() = std::move(e);
    response->set_next_page_token(page.next_page_token);
    *response->mutable_head() = std::move(page.head);
    return absl::OkStatus();
  }();
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(s));
  return reactor;
}

}  // namespace interco::node
