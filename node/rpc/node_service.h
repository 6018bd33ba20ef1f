// interco.v1.NodeService: what a node says about itself. Thread-safe.
#ifndef INTERCO_NODE_RPC_NODE_SERVICE_H_
#define INTERCO_NODE_RPC_NODE_SERVICE_H_

#include <string>

#include "absl/time/time.h"
#include "interco/config/v1/node_config.pb.h"
#include "interco/v1/node_service.grpc.pb.h"
#include "node/peer/peer_manager.h"
#include "node/storage/record_store.h"

namespace interco::node {

class NodeService final : public interco::v1::NodeService::CallbackService {
 public:
  // `store` must outlive the service.
  // `peers` may be null (replication off); both must outlive the service.
  NodeService(RecordStore& store, PeerManager* peers,
              const interco::config::v1::NodeConfig& config, absl::Time start_time);
  NodeService(const NodeService&) = delete;
  NodeService& operator=(const NodeService&) = delete;

  grpc::ServerUnaryReactor* GetNodeInfo(grpc::CallbackServerContext* ctx,
                                        const interco::v1::GetNodeInfoRequest* request,
                                        interco::v1::NodeInfo* response) override;

 private:
  RecordStore& store_;
  PeerManager* const peers_;
  const interco::config::v1::NodeConfig config_;
  const absl::Time start_time_;
};

}  // namespace interco::node

#endif  // INTERCO_NODE_RPC_NODE_SERVICE_H_
