#include "node/rpc/admin_service.h"

#include <algorithm>

#include <google/protobuf/util/time_util.h>

#include "absl/strings/str_cat.h"
#include "node/rpc/caller.h"
#include "node/rpc/resource_names.h"
#include "node/rpc/status.h"
#include "replication/base/status_macros.h"

namespace interco::node {

absl::StatusOr<replication::Principal> AdminService::RequireNodeAdmin(
    grpc::CallbackServerContext& ctx) {
  INTERCO_ASSIGN_OR_RETURN(replication::Principal caller, CallerOf(ctx, federation_));
  INTERCO_RETURN_IF_ERROR(RequireRole(ctx, caller, Role::kAdmin));
  if (caller.siren != store_.authority()) {
    return absl::PermissionDeniedError(absl::StrCat(
        caller.Author(), " is not an administrator of this node's authority ", store_.authority()));
  }
  return caller;
}

grpc::ServerUnaryReactor* AdminService::ListAuditEvents(
    grpc::CallbackServerContext* ctx, const interco::v1::ListAuditEventsRequest* request,
    interco::v1::ListAuditEventsResponse* response) {
  absl::Status s = [&]() -> absl::Status {
    INTERCO_RETURN_IF_ERROR(RequireNodeAdmin(*ctx).status());
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

grpc::ServerUnaryReactor* AdminService::CreateBackup(grpc::CallbackServerContext* ctx,
                                                     const interco::v1::CreateBackupRequest* request,
                                                     interco::v1::Backup* response) {
  absl::Status s = [&]() -> absl::Status {
    INTERCO_RETURN_IF_ERROR(RequireNodeAdmin(*ctx).status());
    const std::string& id = request->backup_id();
    const bool valid = !id.empty() && id.size() <= 64 && id.front() != '.' &&
                       std::all_of(id.begin(), id.end(), [](char c) {
                         return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                                c == '_' || c == '-';
                       });
    if (!valid) {
      return absl::InvalidArgumentError(absl::StrCat(
          "backup_id: \"", id, "\" is not 1 to 64 characters of [a-z0-9._-] not starting with a dot"));
    }
    INTERCO_ASSIGN_OR_RETURN(RecordStore::BackupInfo info,
                             store_.CreateBackup(absl::StrCat(backup_dir_, "/", id)));
    response->set_backup_id(id);
    response->set_directory(info.directory);
    response->set_epoch(info.epoch);
    response->set_size_bytes(info.size_bytes);
    *response->mutable_create_time() = google::protobuf::util::TimeUtil::MillisecondsToTimestamp(info.created_ms);
    return absl::OkStatus();
  }();
  auto* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(s));
  return reactor;
}

grpc::ServerUnaryReactor* AdminService::RepairRegistry(
    grpc::CallbackServerContext* ctx, const interco::v1::RepairRegistryRequest* request,
    interco::v1::RepairReport* response) {
  auto* reactor = ctx->DefaultReactor();
  absl::StatusOr<std::pair<replication::Principal, std::string>> checked =
      [&]() -> absl::StatusOr<std::pair<replication::Principal, std::string>> {
    INTERCO_ASSIGN_OR_RETURN(replication::Principal caller, RequireNodeAdmin(*ctx));
    INTERCO_ASSIGN_OR_RETURN(std::string registry, ParseRegistryName(request->name(), "name"));
    INTERCO_RETURN_IF_ERROR(store_.GetRegistry(registry).status());
    if (peers_ == nullptr) {
      return absl::FailedPreconditionError("this node has no peer port (peer_listen_address)");
    }
    return std::make_pair(std::move(caller), std::move(registry));
  }();
  if (!checked.ok()) {
    reactor->Finish(ToGrpcStatus(checked.status()));
    return reactor;
  }
  // The repair runs on the peer manager's repair thread, which finishes the call.
  peers_->RepairAsync(checked->second, request->peer(), checked->first, request->dry_run(),
                      [reactor, response](absl::StatusOr<interco::v1::RepairReport> report) {
                        if (report.ok()) *response = *std::move(report);
                        reactor->Finish(ToGrpcStatus(report.status()));
                      });
  return reactor;
}

}  // namespace interco::node
