// interco.v1.AdminService: operations reserved to the administrators of the node's own
// authority (role admin, or the node certificate). Thread-safe.
#ifndef INTERCO_NODE_RPC_ADMIN_SERVICE_H_
#define INTERCO_NODE_RPC_ADMIN_SERVICE_H_

#include <string>

#include "interco/v1/admin_service.grpc.pb.h"
#include "node/storage/record_store.h"

namespace interco::node {

class AdminService final : public interco::v1::AdminService::CallbackService {
 public:
  // `store` must outlive the service.
  AdminService(RecordStore& store, std::string federation, std::string backup_dir)
      : store_(store), federation_(std::move(federation)), backup_dir_(std::move(backup_dir)) {}
  AdminService(const AdminService&) = delete;
  AdminService& operator=(const AdminService&) = delete;

  grpc::ServerUnaryReactor* ListAuditEvents(grpc::CallbackServerContext* ctx,
                                            const interco::v1::ListAuditEventsRequest* request,
                                            interco::v1::ListAuditEventsResponse* response) override;
  grpc::ServerUnaryReactor* CreateBackup(grpc::CallbackServerContext* ctx,
                                         const interco::v1::CreateBackupRequest* request,
                                         interco::v1::Backup* response) override;

 private:
  // OK for an admin client (or the node) of this node's own authority.
  absl::Status RequireNodeAdmin(grpc::CallbackServerContext& ctx);

  RecordStore& store_;
  const std::string federation_;
  const std::string backup_dir_;
};

}  // namespace interco::node

#endif  // INTERCO_NODE_RPC_ADMIN_SERVICE_H_
