// A running interco node: store, services, the mTLS API port and the plaintext health
// port. Owns every lifetime; main() only parses flags and handles signals.
//
// Thread-safe: Shutdown may be called from any thread, once.
#ifndef INTERCO_NODE_SERVER_H_
#define INTERCO_NODE_SERVER_H_

#include <memory>

#include <grpcpp/server.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "node/config.h"
#include "node/peer/peer_manager.h"
#include "node/rpc/admin_service.h"
#include "node/rpc/health_service.h"
#include "node/rpc/node_service.h"
#include "node/rpc/registry_service.h"
#include "node/storage/record_store.h"
#include "node/trust/batch_signer.h"
#include "node/trust/certificate_store.h"
#include "replication/env.h"

namespace interco::node {

class Server {
 public:
  // Validates `config`, opens the store and starts listening. Errors come before any
  // port is open; the config is taken with defaults applied.
  static absl::StatusOr<std::unique_ptr<Server>> Start(NodeConfig config);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Ports actually bound (useful with port 0).
  int api_port() const { return api_port_; }
  int health_port() const { return health_port_; }
  // 0 when replication is off.
  int peer_port() const { return peers_ == nullptr ? 0 : peers_->port(); }
  RecordStore& store() { return *store_; }

  // Graceful stop: health turns NOT_SERVING, no new calls are accepted, in-flight calls
  // get up to `grace` to finish (then are cancelled), pending writes are committed, and
  // the store is flushed and closed. Idempotent.
  void Shutdown(absl::Duration grace);
  // Blocks until Shutdown has completed.
  void Wait();

 private:
  Server() = default;

  NodeConfig config_;
  std::unique_ptr<replication::Clock> clock_;
  // Declared before the store, whose committer signs with them: destroyed after it.
  std::unique_ptr<CertificateStore> certificates_;
  std::unique_ptr<BatchSigner> signer_;
  std::unique_ptr<RecordStore> store_;
  std::unique_ptr<PeerManager> peers_;
  std::unique_ptr<RegistryService> registry_service_;
  std::unique_ptr<NodeService> node_service_;
  std::unique_ptr<AdminService> admin_service_;
  std::unique_ptr<HealthService> health_service_;
  std::unique_ptr<grpc::Server> api_server_;
  std::unique_ptr<grpc::Server> health_server_;
  int api_port_ = 0;
  int health_port_ = 0;
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace interco::node

#endif  // INTERCO_NODE_SERVER_H_
