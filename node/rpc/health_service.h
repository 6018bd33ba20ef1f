// grpc.health.v1.Health for Kubernetes probes and load balancers.
//
// One status for the whole node (service "" and every interco service name): SERVING
// once the node is up, NOT_SERVING while it drains on shutdown. Served on the mTLS API
// port and alone on the plaintext health port. Thread-safe.
#ifndef INTERCO_NODE_RPC_HEALTH_SERVICE_H_
#define INTERCO_NODE_RPC_HEALTH_SERVICE_H_

#include <set>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace interco::node {

class HealthService final : public grpc::health::v1::Health::CallbackService {
 public:
  HealthService() = default;
  HealthService(const HealthService&) = delete;
  HealthService& operator=(const HealthService&) = delete;
  ~HealthService() override;

  void SetServing(bool serving);
  // Ends every Watch stream (on shutdown, before the server stops).
  void Shutdown();

  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* ctx,
                                  const grpc::health::v1::HealthCheckRequest* request,
                                  grpc::health::v1::HealthCheckResponse* response) override;
  grpc::ServerWriteReactor<grpc::health::v1::HealthCheckResponse>* Watch(
      grpc::CallbackServerContext* ctx,
      const grpc::health::v1::HealthCheckRequest* request) override;

  class Watcher;

 private:
  friend class Watcher;
  void Remove(Watcher* w);

  absl::Mutex mu_;
  bool serving_ ABSL_GUARDED_BY(mu_) = false;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  std::set<Watcher*> watchers_ ABSL_GUARDED_BY(mu_);
};

}  // namespace interco::node

#endif  // INTERCO_NODE_RPC_HEALTH_SERVICE_H_
