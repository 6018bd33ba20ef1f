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
  AdminService(RecordStore& store, std::string federation)
      : store_(store), federation_(std::move(federation)) {}
  AdminService(const AdminService&) = delete;
  AdminService& operator=(const AdminService&) = delete;

  grpc::ServerUnaryReactor* ListAuditEvents(grpc::CallbackServerContext* ctx,
                                            const interco::v1::ListAuditEventsRequest* request,
                                            interco::v1::ListAuditEventsResponse* response) override;

 private:
  RecordStore& store_;
  const std::string federation_;
};

}  // namespace interco::node

#endif  // INTERCO_NODE_RPC_ADMIN_SERVICE_H_
