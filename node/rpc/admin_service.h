// interco.v1.AdminService: operations reserved to the administrators of the node's own
// authority (role admin, or the node certificate). Thread-safe.
#ifndef INTERCO_NODE_RPC_ADMIN_SERVICE_H_
#define INTERCO_NODE_RPC_ADMIN_SERVICE_H_

#include <string>

#include "interco/v1/admin_service.grpc.pb.h"
#include "node/peer/peer_manager.h"
#include "node/storage/record_store.h"

namespace interco::node {

class AdminService final : public interco::v1::AdminService::CallbackService {
 public:
  // `store` and `peers` (null when the node has no peer port) must outlive the service.
  AdminService(RecordStore& store, PeerManager* peers, std::string federation,
               std::string backup_dir)
      : store_(store),
        peers_(peers),
        federation_(std::move(federation)),
        backup_dir_(std::move(backup_dir)) {}
  AdminService(const AdminService&) = delete;
  AdminService& operator=(const AdminService&) = delete;

  grpc::ServerUnaryReactor* ListAuditEvents(grpc::CallbackServerContext* ctx,
                                            const interco::v1::ListAuditEventsRequest* request,
                                            interco::v1::ListAuditEventsResponse* response) override;
  grpc::ServerUnaryReactor* CreateBackup(grpc::CallbackServerContext* ctx,
                                         const interco::v1::CreateBackupRequest* request,
                                         interco::v1::Backup* response) override;
  grpc::ServerUnaryReactor* RepairRegistry(grpc::CallbackServerContext* ctx,
                                           const interco::v1::RepairRegistryRequest* request,
                                           interco::v1::RepairReport* response) override;

 private:
  // The caller, if an admin client (or the node) of this node's own authority.
  absl::StatusOr<replication::Principal> RequireNodeAdmin(grpc::CallbackServerContext& ctx);

  RecordStore& store_;
  PeerManager* const peers_;
  const std::string federation_;
  const std::string backup_dir_;
};

}  // namespace interco::node

#endif  // INTERCO_NODE_RPC_ADMIN_SERVICE_H_
