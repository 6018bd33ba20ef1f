// Replication between nodes: the peer port, the sessions with configured peers, and the
// thread that runs the pure replication engine.
//
// Every engine call happens on one thread (the "engine thread"), fed by an event queue:
// session up/down, received messages, local commits, and a 100 ms tick. Each session is
// one PeerService.Sync stream (the node with the lower SIREN dials, with backoff; the
// other accepts) with a bounded outbound queue drained by a writer thread. The store is
// the node's RecordStore. Thread-safe.
#ifndef INTERCO_NODE_PEER_PEER_MANAGER_H_
#define INTERCO_NODE_PEER_PEER_MANAGER_H_

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/server.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "interco/config/v1/node_config.pb.h"
#include "interco/v1/admin_service.pb.h"
#include "interco/v1/node.pb.h"
#include "node/storage/record_store.h"
#include "node/tls/credentials.h"
#include "node/trust/certificate_store.h"
#include "replication/replicator.h"

namespace interco::node {

struct PeerManagerOptions {
  std::string federation;
  // SIREN of this node.
  std::string authority;
  // Address of the peer port.
  std::string listen_address;
  std::vector<interco::config::v1::PeerConfig> peers;
  // The node's certificate: server side of the peer port, client side when dialing.
  TlsFiles tls;
  int64_t clock_offset_max_ms = 60000;
  // How often, at most, the owner of a registry collects its stable tombstones.
  int64_t collect_interval_ms = 60000;
  // How long, from its stamp, a lost write stays in the journals of a registry it owns
  // (0: until the record's life ends).
  int64_t journal_retention_ms = 0;
  // How long a member of a registry it owns may stay behind before its collections leave
  // it out (0: never).
  int64_t member_retention_ms = 0;
  // ReplicatorOptions::compaction_changes.
  uint64_t compaction_changes = 1024;
  // Whether peer messages are gzip-compressed (sent so, and asked so of the peer).
  bool compress = true;
  // ReplicatorOptions::digest_interval_ms.
  int64_t digest_interval_ms = 60000;
  // Repair a registry from a peer whose digest shows another state at the same position
  // (docs/REPLICATION.md, "Divergence checks"); otherwise only log and count it.
  bool auto_repair = false;
};

class PeerManager {
 public:
  // Starts the peer port, the engine thread and the dialers. `store`, `clock`,
  // `certificates` (which check the origins' signatures) and `signer` (which signs this
  // node's stability reports) must outlive the manager.
  static absl::StatusOr<std::unique_ptr<PeerManager>> Start(const PeerManagerOptions& options,
                                                            RecordStore& store,
                                                            replication::Clock& clock,
                                                            CertificateStore& certificates,
                                                            replication::Signer& signer);
  ~PeerManager();
  PeerManager(const PeerManager&) = delete;
  PeerManager& operator=(const PeerManager&) = delete;

  // Closes sessions, stops the port and every thread. Idempotent.
  void Shutdown();
  int port() const { return port_; }
  // A snapshot of every configured peer's state.
  std::vector<interco::v1::PeerStatus> Status();
  // This node's place in each replicated registry's broadcast tree, by registry.
  std::vector<interco::v1::RegistryTree> Trees();

  // Repairs this node's copy of `registry` from configured peer `peer` (a SIREN) by range
  // fingerprints (node/peer/reconcile.h), on the manager's repair thread, one repair at a
  // time; `done` runs there with the report or the error (UNAVAILABLE if the manager
  // shuts down first). INVALID_ARGUMENT for a malformed SIREN, FAILED_PRECONDITION for a
  // peer that is not configured.
  using RepairCallback = std::function<void(absl::StatusOr<interco::v1::RepairReport>)>;
  void RepairAsync(std::string registry, std::string peer, replication::Principal caller,
                   bool dry_run, RepairCallback done);
  // Fails the queued repairs (UNAVAILABLE) and stops the running one before its next
  // request to the peer; later ones are refused. For a shutdown: the API server waits for
  // the calls that repairs finish.
  void CancelRepairs();

  class Session;

 private:
  class Service;
  class EngineTransport;
  class StoreAdapter;

  PeerManager(const PeerManagerOptions& options, RecordStore& store, replication::Clock& clock,
              CertificateStore& certificates);

  // Runs `fn` on the engine thread.
  void Post(std::function<void()> fn);
  void EngineLoop();
  // Registers a new session with `peer` (replacing any older one) and tells the engine.
  std::shared_ptr<Session> OpenSession(uint32_t peer);
  void Receive(const std::shared_ptr<Session>& session,
               interco::replication::v1::PeerMessage message);
  void CloseSession(const std::shared_ptr<Session>& session);
  // Pumps one session's queue into `write` until it closes; runs on its own thread.
  static void WriteLoop(Session& session,
                        const std::function<bool(const interco::replication::v1::PeerMessage&)>& write);
  void DialLoop(interco::config::v1::PeerConfig peer);
  bool SleepUnlessStopping(int64_t ms);
  bool IsConfiguredPeer(uint32_t siren) const;

  const PeerManagerOptions options_;
  const uint32_t self_;
  RecordStore& store_;
  replication::Clock& clock_;
  CertificateStore& certificates_;
  std::unique_ptr<StoreAdapter> store_adapter_;
  std::unique_ptr<EngineTransport> transport_;
  Sha256Hasher hasher_;
  std::unique_ptr<replication::Replicator> engine_;  // engine thread only
  std::unique_ptr<Service> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<std::function<void()>> events_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, std::shared_ptr<Session>> sessions_ ABSL_GUARDED_BY(mu_);
  uint64_t next_session_id_ ABSL_GUARDED_BY(mu_) = 1;
  std::vector<std::shared_ptr<grpc::ClientContext>> dialing_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> local_commit_pending_{false};
  // Engine thread only: the session each peer's engine state belongs to.
  std::map<uint32_t, uint64_t> engine_sessions_;

  void RepairLoop();
  struct RepairJob {
    std::string registry;
    std::string peer;
    replication::Principal caller;
    bool dry_run = false;
    RepairCallback done;
  };
  std::deque<RepairJob> repairs_ ABSL_GUARDED_BY(mu_);
  // Engine thread: a peer's digest showed another state of `registry` at our position.
  void OnDiverged(uint32_t peer, const std::string& registry);
  // Repairs started after a divergence: queued or running (registry, peer), one at a
  // time each; and how many were started per peer.
  std::set<std::pair<std::string, uint32_t>> auto_repairs_pending_ ABSL_GUARDED_BY(mu_);
  std::map<uint32_t, uint64_t> auto_repairs_ ABSL_GUARDED_BY(mu_);
  // After a repair that failed or changed nothing here (the difference is on the peer's
  // side, or the peer's answers do not help): no new one from that peer before this
  // (monotonic ms).
  std::map<std::pair<std::string, uint32_t>, int64_t> auto_repairs_held_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> repairs_cancelled_{false};
  std::thread repair_thread_;

  std::thread engine_thread_;
  std::vector<std::thread> dialers_;
};

}  // namespace interco::node

#endif  // INTERCO_NODE_PEER_PEER_MANAGER_H_
