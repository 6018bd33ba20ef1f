#include "node/peer/peer_manager.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <algorithm>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/synchronization/notification.h"
#include "interco/replication/v1/peer_service.grpc.pb.h"
#include "node/log.h"
#include "node/peer/reconcile.h"
#include "node/rpc/caller.h"
#include "node/rpc/status.h"
#include "replication/base/limits.h"
#include "replication/base/strings.h"
#include "replication/change_log.h"
#include "replication/frame_codec.h"
#include "replication/hlc.h"
#include "replication/ids.h"

namespace interco::node {

using interco::replication::v1::PeerMessage;

// One live stream with a peer: a bounded outbound queue that a writer thread drains.
class PeerManager::Session {
 public:
  Session(uint32_t peer, uint64_t id) : peer_(peer), id_(id) {}

  uint32_t peer() const { return peer_; }
  uint64_t id() const { return id_; }

  // False if closed or full (the engine repairs drops through anti-entropy).
  bool Push(const PeerMessage& m) {
    absl::MutexLock l(&mu_);
    if (closed_ || queue_.size() >= limits::kPeerQueueMessagesMax) return false;
    queue_.push_back(m);
    return true;
  }
  // The next message to write, or nothing once closed.
  std::optional<PeerMessage> Pop() {
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(
        +[](Session* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
          return s->closed_ || !s->queue_.empty();
        },
        this));
    if (closed_) return std::nullopt;
    PeerMessage m = std::move(queue_.front());
    queue_.pop_front();
    return m;
  }
  void Close() {
    absl::MutexLock l(&mu_);
    closed_ = true;
    queue_.clear();
  }

 private:
  const uint32_t peer_;
  const uint64_t id_;
  absl::Mutex mu_;
  std::deque<PeerMessage> queue_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

// The engine's view of storage.
class PeerManager::StoreAdapter final : public replication::ReplicaStore {
 public:
  StoreAdapter(RecordStore& store, std::function<void(uint32_t, const std::string&)> on_diverged)
      : store_(store), on_diverged_(std::move(on_diverged)) {}
  absl::StatusOr<replication::StateDigest> Digest(const std::string& stream) override {
    return store_.Digest(stream);
  }
  void OnDiverged(uint32_t peer, const std::string& stream) override { on_diverged_(peer, stream); }
  std::vector<std::string> Streams() override { return store_.RegistryIds(); }
  absl::StatusOr<replication::VersionVector> Position(const std::string& stream) override {
    return store_.Position(stream);
  }
  absl::StatusOr<std::vector<interco::replication::v1::Batch>> ReadBatches(
      const std::string& stream, replication::OriginKey key, uint64_t after_seq,
      size_t max_batches) override {
    return store_.ReadBatches(stream, key, after_seq, max_batches);
  }
  absl::Status ApplyBatch(const std::string& stream,
                          const replication::DecodedBatch& batch) override {
    return store_.ApplyRemoteBatch(stream, batch);
  }
  absl::Status RecordFork(const interco::replication::v1::ForkEvidence& evidence) override {
    interco::replication::v1::BatchHeader h;
    h.ParseFromString(evidence.received().header());
    log::Error(absl::StrCat("ALERT: origin ", replication::OriginToSiren(evidence.origin()),
                            " forked its chain of stream ", evidence.stream(), " at ", h.epoch(),
                            ":", h.first_seq(), " (conflicting batch from ",
                            replication::OriginToSiren(evidence.received_from()),
                            "); its changes are frozen until an administrator intervenes"));
    return store_.RecordFork(evidence);
  }
  absl::Status Authorize(const std::string& stream,
                         const replication::DecodedBatch& batch) override {
    return store_.Authorize(stream, batch);
  }
  bool MayRead(const std::string& stream, uint32_t node) override {
    return store_.MayRead(stream, node);
  }
  bool MayReadBatch(const std::string& stream, uint32_t node, uint64_t policy_version) override {
    return store_.MayReadBatch(stream, node, policy_version);
  }
  uint32_t OwnerOf(const std::string& stream) override { return store_.OwnerOf(stream); }
  replication::Exclusions ExclusionsOf(const std::string& stream) override {
    return store_.ExclusionsOf(stream);
  }
  uint32_t OriginEpoch(const std::string& stream) override { return store_.OriginEpoch(stream); }
  std::vector<uint32_t> Members(const std::string& stream) override {
    return store_.Members(stream);
  }
  absl::StatusOr<bool> Collect(const std::string& stream,
                               const replication::CollectionPlan& plan) override {
    absl::StatusOr<bool> collected = store_.Collect(stream, plan);
    if (!collected.ok()) {
      log::Error(absl::StrCat("collection of registry ", stream,
                              " failed (tried again later): ", collected.status().ToString()));
    }
    return collected;
  }
  void OnRefused(uint32_t peer, const std::string& stream,
                 const interco::replication::v1::BatchHeader* header,
                 const absl::Status& why) override {
    // Engine thread. A hostile peer can send refusals as fast as it likes: at most
    // limits::kAuditRefusalsPerSecondPerPeer audit events per peer, the rest counted in
    // the next one.
    Limiter& limit = limiters_[peer];
    const int64_t now = absl::ToUnixMillis(absl::Now());
    limit.tokens = std::min<double>(kRefusalBurst, limit.tokens + static_cast<double>(now - limit.last_ms) *
                                                                      kRefusalsPerSecond / 1000.0);
    limit.last_ms = now;
    if (limit.tokens < 1) {
      limit.suppressed++;
      return;
    }
    limit.tokens -= 1;
    interco::v1::AuditEvent e;
    const bool fork = absl::IsFailedPrecondition(why) && absl::StartsWith(why.message(), "fork");
    e.set_action(fork ? interco::v1::AuditEvent::FREEZE_ORIGIN : interco::v1::AuditEvent::APPLY_BATCH);
    e.set_accepted(false);
    e.set_reason(limit.suppressed == 0
                     ? why.ToString()
                     : absl::StrCat(why.ToString(), " (and ", limit.suppressed,
                                    " more refusals from this peer not audited)"));
    limit.suppressed = 0;
    e.set_peer(replication::OriginToSiren(peer));
    e.set_registry(stream);
    if (header != nullptr) {
      e.set_origin(replication::OriginToSiren(header->origin()));
      e.set_epoch(header->epoch());
      e.set_first_seq(header->first_seq());
      e.set_count(header->count());
    }
    store_.Audit({std::move(e)});
  }
  std::vector<uint32_t> FrozenOrigins() override {
    std::vector<uint32_t> out;
    for (const auto& f : store_.Forks()) out.push_back(f.origin());
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
  }

 private:
  static constexpr double kRefusalsPerSecond = limits::kAuditRefusalsPerSecondPerPeer;
  static constexpr double kRefusalBurst = limits::kAuditRefusalsBurstPerPeer;
  struct Limiter {
    double tokens = kRefusalBurst;
    int64_t last_ms = 0;
    uint64_t suppressed = 0;
  };
  RecordStore& store_;
  std::function<void(uint32_t, const std::string&)> on_diverged_;
  std::map<uint32_t, Limiter> limiters_;
};

// The engine's view of the network: the session queues.
class PeerManager::EngineTransport final : public replication::Transport {
 public:
  explicit EngineTransport(PeerManager& m) : m_(m) {}
  bool Send(uint32_t peer, const PeerMessage& message) override {
    std::shared_ptr<Session> s;
    {
      absl::MutexLock l(&m_.mu_);
      auto it = m_.sessions_.find(peer);
      if (it == m_.sessions_.end()) return false;
      s = it->second;
    }
    return s->Push(message);
  }

 private:
  PeerManager& m_;
};

// The accepting side of sessions.
class PeerManager::Service final : public interco::replication::v1::PeerService::Service {
 public:
  explicit Service(PeerManager& m) : m_(m) {}

  grpc::Status Sync(grpc::ServerContext* ctx,
                    grpc::ServerReaderWriter<PeerMessage, PeerMessage>* stream) override {
    uint32_t peer = 0;
    if (grpc::Status refused = Authenticate(*ctx, "peer session", peer); !refused.ok()) {
      return refused;
    }
    std::shared_ptr<Session> session = m_.OpenSession(peer);
    std::thread writer([&] {
      WriteLoop(*session, [&](const PeerMessage& msg) { return stream->Write(msg); });
      ctx->TryCancel();  // unblock Read if the write side failed
    });
    PeerMessage msg;
    while (stream->Read(&msg)) m_.Receive(session, std::move(msg));
    m_.CloseSession(session);
    writer.join();
    return grpc::Status::OK;
  }

  grpc::Status Reconcile(grpc::ServerContext* ctx,
                         const interco::replication::v1::ReconcileRequest* request,
                         interco::replication::v1::ReconcileResponse* response) override {
    uint32_t peer = 0;
    if (grpc::Status refused = Authenticate(*ctx, "reconciliation", peer); !refused.ok()) {
      return refused;
    }
    return ToGrpcStatus(ServeReconcile(m_.store_, peer, *request, *response));
  }

 private:
  // The calling node, if it is a configured peer (node certificate, not a client's).
  grpc::Status Authenticate(const grpc::ServerContext& ctx, std::string_view what,
                            uint32_t& peer) {
    absl::StatusOr<replication::Principal> caller = CallerOf(ctx, m_.options_.federation);
    if (!caller.ok()) {
      log::Warning(absl::StrCat("refused ", ToAbsl(what), ": ", caller.status().message()));
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(caller.status().message()));
    }
    peer = replication::SirenToOrigin(caller->siren).value();
    if (!caller->client.empty() || !m_.IsConfiguredPeer(peer)) {
      log::Warning(absl::StrCat("refused ", ToAbsl(what), " from ", caller->Author(),
                                ": not a configured peer node"));
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                          absl::StrCat(caller->Author(), " is not a configured peer of this node"));
    }
    return grpc::Status::OK;
  }

  PeerManager& m_;
};

PeerManager::PeerManager(const PeerManagerOptions& options, RecordStore& store,
                         replication::Clock& clock, CertificateStore& certificates)
    : options_(options),
      self_(replication::SirenToOrigin(options.authority).value()),
      store_(store),
      clock_(clock),
      certificates_(certificates) {}

absl::StatusOr<std::unique_ptr<PeerManager>> PeerManager::Start(const PeerManagerOptions& options,
                                                                RecordStore& store,
                                                                replication::Clock& clock,
                                                                CertificateStore& certificates,
                                                                replication::Signer& signer) {
  if (absl::Status s = replication::ValidateSiren(options.authority); !s.ok()) return s;
  auto m = std::unique_ptr<PeerManager>(new PeerManager(options, store, clock, certificates));
  PeerManager* self = m.get();
  m->store_adapter_ = std::make_unique<StoreAdapter>(
      store, [self](uint32_t peer, const std::string& registry) { self->OnDiverged(peer, registry); });
  m->transport_ = std::make_unique<EngineTransport>(*m);
  replication::ReplicatorOptions ro;
  ro.self = m->self_;
  ro.epoch = store.epoch();  // settled when the store opened (a restored copy starts a new one)
  ro.clock_offset_max_ms = options.clock_offset_max_ms;
  ro.collect_interval_ms = options.collect_interval_ms;
  ro.journal_retention_ms = options.journal_retention_ms;
  ro.member_retention_ms = options.member_retention_ms;
  ro.compaction_changes = options.compaction_changes;
  ro.digest_interval_ms = options.digest_interval_ms;
  m->engine_ = std::make_unique<replication::Replicator>(ro, clock, *m->transport_,
                                                         *m->store_adapter_, m->hasher_, certificates,
                                                         signer);
  m->service_ = std::make_unique<Service>(*m);

  grpc::ServerBuilder builder;
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);  // the port is ours alone
  builder.AddListeningPort(options.listen_address,
                           MakeServerCredentials(options.tls, options.federation), &m->port_);
  builder.RegisterService(m->service_.get());
  builder.SetMaxReceiveMessageSize(limits::kPeerMessageBytesMax);
  builder.SetMaxSendMessageSize(limits::kPeerMessageBytesMax);
  // Frames repeat field names, stamps and authors: compressed on the wire both ways (the
  // dialing side asks for it in its channel arguments).
  builder.SetDefaultCompressionAlgorithm(options.compress ? GRPC_COMPRESS_GZIP : GRPC_COMPRESS_NONE);
  m->server_ = builder.BuildAndStart();
  if (m->server_ == nullptr || m->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen_address, " (address in use?)"));
  }
  PeerManager* raw = m.get();
  store.SetLocalCommitListener([raw] {
    // Coalesced: one pending pump is enough however many commits happen meanwhile.
    if (!raw->local_commit_pending_.exchange(true)) {
      raw->Post([raw] {
        raw->local_commit_pending_ = false;
        raw->engine_->OnLocalCommit();
      });
    }
  });
  m->engine_thread_ = std::thread([raw] { raw->EngineLoop(); });
  m->repair_thread_ = std::thread([raw] { raw->RepairLoop(); });
  for (const auto& peer : options.peers) {
    const uint32_t siren = replication::SirenToOrigin(peer.authority()).value();
    if (siren > m->self_) m->dialers_.emplace_back([raw, peer] { raw->DialLoop(peer); });
  }
  return m;
}

PeerManager::~PeerManager() { Shutdown(); }

void PeerManager::Shutdown() {
  std::map<uint32_t, std::shared_ptr<Session>> sessions;
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;
    stopping_ = true;
    repairs_cancelled_ = true;
    sessions = sessions_;
    for (auto& ctx : dialing_) ctx->TryCancel();
  }
  store_.SetLocalCommitListener(nullptr);
  for (auto& [peer, s] : sessions) s->Close();
  // (A manager that failed to start has no server, and no thread yet.)
  if (server_ != nullptr) {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  }
  for (std::thread& t : dialers_) t.join();
  if (server_ != nullptr) server_->Wait();
  if (engine_thread_.joinable()) engine_thread_.join();
  if (repair_thread_.joinable()) repair_thread_.join();
  std::deque<RepairJob> cancelled;
  {
    absl::MutexLock l(&mu_);
    cancelled.swap(repairs_);
  }
  for (RepairJob& job : cancelled) job.done(absl::UnavailableError("the node is shutting down"));
}

void PeerManager::CancelRepairs() {
  repairs_cancelled_ = true;
  std::deque<RepairJob> cancelled;
  {
    absl::MutexLock l(&mu_);
    cancelled.swap(repairs_);
  }
  for (RepairJob& job : cancelled) job.done(absl::UnavailableError("the node is shutting down"));
}

void PeerManager::RepairAsync(std::string registry, std::string peer,
                              replication::Principal caller, bool dry_run, RepairCallback done) {
  if (absl::Status s = replication::ValidateSiren(peer); !s.ok()) {
    done(absl::InvalidArgumentError(absl::StrCat("peer: ", s.message())));
    return;
  }
  if (!IsConfiguredPeer(replication::SirenToOrigin(peer).value())) {
    done(absl::FailedPreconditionError(
        absl::StrCat("peer: ", peer, " is not a configured peer of this node")));
    return;
  }
  {
    absl::MutexLock l(&mu_);
    if (!stopping_ && !repairs_cancelled_) {
      repairs_.push_back(RepairJob{std::move(registry), std::move(peer), std::move(caller),
                                   dry_run, std::move(done)});
      return;
    }
  }
  done(absl::UnavailableError("the node is shutting down"));
}

namespace {
// After an automatic repair that changed nothing, the next from the same peer waits this
// long.
constexpr int64_t kAutoRepairHoldMillis = 10 * 60 * 1000;
}  // namespace

void PeerManager::OnDiverged(uint32_t peer, const std::string& registry) {
  const std::string siren = replication::OriginToSiren(peer);
  if (!options_.auto_repair || !IsConfiguredPeer(peer)) {
    log::Warning(absl::StrCat("registry ", registry, ": peer ", siren,
                              " holds the same changes and another state (a copy went wrong "
                              "outside the change logs); run `interco repair ", registry,
                              " --peer ", siren, "` on both nodes"));
    return;
  }
  const std::pair<std::string, uint32_t> key{registry, peer};
  {
    absl::MutexLock l(&mu_);
    auto held = auto_repairs_held_.find(key);
    if (held != auto_repairs_held_.end() && clock_.MonotonicMillis() < held->second) return;
    if (!auto_repairs_pending_.insert(key).second) return;  // one at a time
    auto_repairs_[peer]++;
  }
  log::Warning(absl::StrCat("registry ", registry, ": peer ", siren,
                            " holds the same changes and another state; repairing from it"));
  replication::Principal caller;
  caller.federation = options_.federation;
  caller.siren = options_.authority;
  RepairAsync(registry, siren, std::move(caller), /*dry_run=*/false,
              [this, key, siren](const absl::StatusOr<interco::v1::RepairReport>& report) {
                // Logged by the repair loop; the next digest tells whether it worked.
                absl::MutexLock l(&mu_);
                auto_repairs_pending_.erase(key);
                if (report.ok() && report->records_changed() > 0) {
                  auto_repairs_held_.erase(key);
                  return;
                }
                // Nothing to take from the peer (it lacks what this node holds, and
                // repairs from it if it may), or it failed: not again for a while.
                auto_repairs_held_[key] = clock_.MonotonicMillis() + kAutoRepairHoldMillis;
                log::Warning(absl::StrCat(
                    "registry ", key.first, ": the repair from ", siren,
                    " changed nothing here; the copies may still differ (next automatic "
                    "repair from it in ", kAutoRepairHoldMillis / 60000, " min at the earliest)"));
              });
}

void PeerManager::RepairLoop() {
  while (true) {
    RepairJob job;
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(
          +[](PeerManager* m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(m->mu_) {
            return m->stopping_ || !m->repairs_.empty();
          },
          this));
      if (stopping_) return;
      job = std::move(repairs_.front());
      repairs_.pop_front();
    }
    const auto peer = std::find_if(options_.peers.begin(), options_.peers.end(),
                                   [&](const auto& p) { return p.authority() == job.peer; });
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
        MakeChannelCredentials(options_.tls);
    if (!creds.ok()) {
      job.done(creds.status());
      continue;
    }
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(limits::kPeerMessageBytesMax);
    args.SetMaxSendMessageSize(limits::kPeerMessageBytesMax);
    auto stub = interco::replication::v1::PeerService::NewStub(
        grpc::CreateCustomChannel(peer->address(), *creds, args));
    RepairOptions ro;
    ro.registry = job.registry;
    ro.peer = replication::SirenToOrigin(job.peer).value();
    ro.caller = job.caller;
    ro.dry_run = job.dry_run;
    ro.clock_offset_max_ms = options_.clock_offset_max_ms;
    ro.federation = options_.federation;
    ro.cancel = &repairs_cancelled_;
    absl::StatusOr<interco::v1::RepairReport> report = RepairFrom(store_, *stub, clock_, ro);
    if (report.ok()) {
      log::Info(absl::StrCat("repair of ", job.registry, " from ", job.peer, ": ",
                             report->records_only_here() + report->records_only_there(),
                             " records differed, ", report->records_changed(), " changed here"));
    } else {
      log::Warning(absl::StrCat("repair of ", job.registry, " from ", job.peer, " failed: ",
                                report.status().message()));
    }
    job.done(std::move(report));
  }
}

bool PeerManager::IsConfiguredPeer(uint32_t siren) const {
  return std::any_of(options_.peers.begin(), options_.peers.end(), [&](const auto& p) {
    return replication::SirenToOrigin(p.authority()).value_or(0) == siren;
  });
}

void PeerManager::Post(std::function<void()> fn) {
  absl::MutexLock l(&mu_);
  if (stopping_) return;
  events_.push_back(std::move(fn));
}

void PeerManager::EngineLoop() {
  constexpr int64_t kTickMs = 100;
  int64_t next_tick = clock_.MonotonicMillis() + kTickMs;
  while (true) {
    std::deque<std::function<void()>> batch;
    {
      absl::MutexLock l(&mu_);
      const int64_t wait = std::max<int64_t>(0, next_tick - clock_.MonotonicMillis());
      mu_.AwaitWithTimeout(absl::Condition(
                               +[](PeerManager* m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(m->mu_) {
                                 return m->stopping_ || !m->events_.empty();
                               },
                               this),
                           absl::Milliseconds(wait));
      if (stopping_) return;
      batch.swap(events_);
    }
    for (auto& fn : batch) fn();
    if (clock_.MonotonicMillis() >= next_tick) {
      engine_->Tick();
      next_tick = clock_.MonotonicMillis() + kTickMs;
    }
  }
}

std::shared_ptr<PeerManager::Session> PeerManager::OpenSession(uint32_t peer) {
  std::shared_ptr<Session> old;
  std::shared_ptr<Session> s;
  {
    absl::MutexLock l(&mu_);
    s = std::make_shared<Session>(peer, next_session_id_++);
    auto it = sessions_.find(peer);
    if (it != sessions_.end()) old = it->second;
    sessions_[peer] = s;
  }
  if (old != nullptr) old->Close();
  log::Info(absl::StrCat("peer session with ", replication::OriginToSiren(peer), " up"));
  Post([this, peer, id = s->id()] {
    engine_sessions_[peer] = id;
    engine_->OnConnected(peer);
  });
  return s;
}

void PeerManager::Receive(const std::shared_ptr<Session>& session, PeerMessage message) {
  // Restore changes sent by column and check signatures here, on the session's reader
  // thread, so that the engine thread finds them ready and spends its time applying. A
  // frame whose columns do not decode is left as it came: the engine refuses it, saying why.
  for (auto& frame : *message.mutable_frames()) {
    (void)replication::DecodeColumns(frame, hasher_);
    for (const std::string& der : frame.certificates().der()) {
      (void)certificates_.AddCertificate(der);  // the engine adds it again and counts refusals
    }
    // One signature per run: the frame's last batch.
    const auto& batches = frame.batches();
    interco::replication::v1::BatchHeader h;
    if (!batches.empty() && h.ParseFromString(batches.rbegin()->header())) {
      const auto& end = *batches.rbegin();
      certificates_.VerifyAhead(h.origin(), end.signer(), end.signed_at_ms(),
                                replication::SignedMessage(end.signer(), end.signed_at_ms(),
                                                           end.header()),
                                end.signature());
    }
  }
  Post([this, peer = session->peer(), id = session->id(), m = std::move(message)] {
    auto it = engine_sessions_.find(peer);
    if (it == engine_sessions_.end() || it->second != id) return;  // an older session
    engine_->OnMessage(peer, m);
  });
}

void PeerManager::CloseSession(const std::shared_ptr<Session>& session) {
  session->Close();
  {
    absl::MutexLock l(&mu_);
    auto it = sessions_.find(session->peer());
    if (it != sessions_.end() && it->second == session) sessions_.erase(it);
  }
  log::Info(absl::StrCat("peer session with ", replication::OriginToSiren(session->peer()),
                         " down"));
  Post([this, peer = session->peer(), id = session->id()] {
    auto it = engine_sessions_.find(peer);
    if (it == engine_sessions_.end() || it->second != id) return;
    engine_sessions_.erase(it);
    engine_->OnDisconnected(peer);
  });
}

void PeerManager::WriteLoop(Session& session,
                            const std::function<bool(const PeerMessage&)>& write) {
  Sha256Hasher hasher;
  while (std::optional<PeerMessage> m = session.Pop()) {
    // Changes by column compress to about their payload (replication/frame_codec.h); done
    // on the session's writer thread, off the engine's.
    for (auto& frame : *m->mutable_frames()) replication::EncodeColumns(frame, hasher);
    if (!write(*m)) break;
  }
  session.Close();
}

bool PeerManager::SleepUnlessStopping(int64_t ms) {
  absl::MutexLock l(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Milliseconds(ms));
  return !stopping_;
}

void PeerManager::DialLoop(interco::config::v1::PeerConfig peer) {
  const uint32_t siren = replication::SirenToOrigin(peer.authority()).value();
  const std::string expected = NodeSpiffeId(options_.federation, peer.authority());
  int64_t backoff = limits::kPeerBackoffMinMillis;
  while (true) {
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
        MakeChannelCredentials(options_.tls);
    if (creds.ok()) {
      grpc::ChannelArguments args;
      args.SetMaxReceiveMessageSize(limits::kPeerMessageBytesMax);
      args.SetMaxSendMessageSize(limits::kPeerMessageBytesMax);
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      args.SetCompressionAlgorithm(options_.compress ? GRPC_COMPRESS_GZIP : GRPC_COMPRESS_NONE);
      auto stub = interco::replication::v1::PeerService::NewStub(
          grpc::CreateCustomChannel(peer.address(), *creds, args));
      auto ctx = std::make_shared<grpc::ClientContext>();
      {
        absl::MutexLock l(&mu_);
        if (stopping_) return;
        dialing_.push_back(ctx);
      }
      auto stream = stub->Sync(ctx.get());
      PeerMessage first;
      // The session starts once the peer speaks: its Hello proves the stream is up.
      if (stream->Read(&first)) {
        if (!ServerIs(*ctx, expected)) {
          log::Warning(absl::StrCat("peer at ", peer.address(), " is not ", expected,
                                    "; closing"));
          ctx->TryCancel();
        } else {
          backoff = limits::kPeerBackoffMinMillis;
          std::shared_ptr<Session> session = OpenSession(siren);
          Receive(session, std::move(first));
          std::thread writer([&] {
            WriteLoop(*session, [&](const PeerMessage& m) { return stream->Write(m); });
            ctx->TryCancel();
          });
          PeerMessage msg;
          while (stream->Read(&msg)) Receive(session, std::move(msg));
          CloseSession(session);
          writer.join();
        }
      }
      stream->Finish().IgnoreError();  // the reason is in the peer's log; we retry anyway
      absl::MutexLock l(&mu_);
      dialing_.erase(std::remove(dialing_.begin(), dialing_.end(), ctx), dialing_.end());
    }
    if (!SleepUnlessStopping(backoff)) return;
    backoff = std::min(backoff * 2, limits::kPeerBackoffMaxMillis);
  }
}

std::vector<interco::v1::RegistryTree> PeerManager::Trees() {
  struct Shared {
    std::map<std::string, replication::TreePlace> places;
    std::map<std::string, replication::StabilitySummary> stability;
    absl::Notification done;
  };
  auto shared = std::make_shared<Shared>();
  Post([this, shared] {
    shared->places = engine_->TreePlaces();
    shared->stability = engine_->Stabilities();
    shared->done.Notify();
  });
  std::vector<interco::v1::RegistryTree> out;
  if (!shared->done.WaitForNotificationWithTimeout(absl::Seconds(2))) return out;
  for (const auto& [registry, place] : shared->places) {
    interco::v1::RegistryTree& t = out.emplace_back();
    t.set_registry(registry);
    t.set_root(replication::OriginToSiren(place.root));
    t.set_distance(place.distance);
    if (place.uplink != 0) t.set_uplink(replication::OriginToSiren(place.uplink));
    if (auto s = shared->stability.find(registry); s != shared->stability.end()) {
      t.set_members(static_cast<uint32_t>(s->second.members));
      t.set_members_waiting(static_cast<uint32_t>(s->second.waiting));
      t.set_unstable_changes(s->second.unstable);
      for (uint32_t m : s->second.excluded) t.add_left_out(replication::OriginToSiren(m));
    }
  }
  return out;
}

std::vector<interco::v1::PeerStatus> PeerManager::Status() {
  std::map<uint32_t, replication::PeerStats> stats;
  auto shared = std::make_shared<std::pair<std::map<uint32_t, replication::PeerStats>, absl::Notification>>();
  Post([this, shared] {
    shared->first = engine_->Stats();
    shared->second.Notify();
  });
  if (shared->second.WaitForNotificationWithTimeout(absl::Seconds(2))) stats = shared->first;
  const int64_t wall = clock_.NowMillis();
  const int64_t mono = clock_.MonotonicMillis();
  std::map<uint32_t, uint64_t> auto_repairs;
  {
    absl::MutexLock l(&mu_);
    auto_repairs = auto_repairs_;
  }
  std::vector<interco::v1::PeerStatus> out;
  for (const auto& p : options_.peers) {
    interco::v1::PeerStatus s;
    s.set_authority(p.authority());
    s.set_address(p.address());
    auto it = stats.find(replication::SirenToOrigin(p.authority()).value_or(0));
    if (it != stats.end()) {
      const replication::PeerStats& st = it->second;
      s.set_connected(st.connected);
      if (st.last_contact_ms > 0) {
        const int64_t when = wall - (mono - st.last_contact_ms);
        s.mutable_last_contact_time()->set_seconds(when / 1000);
        s.mutable_last_contact_time()->set_nanos(static_cast<int32_t>(when % 1000) * 1000000);
      }
      for (const auto& [origin, n] : st.missing_by_origin) {
        (*s.mutable_missing_changes())[replication::OriginToSiren(origin)] = n;
      }
      s.set_batches_sent(st.batches_sent);
      s.set_batches_received(st.batches_received);
      s.set_batches_applied(st.batches_applied);
      s.set_skips_sent(st.skips_sent);
      s.set_skips_applied(st.skips_applied);
      s.set_duplicates(st.duplicates);
      s.set_gaps(st.gaps);
      s.set_rejected(st.rejected);
      s.set_quarantined(st.quarantined);
      s.set_unverified(st.unverified);
      s.set_forks(st.forks);
      s.set_unauthorized(st.unauthorized);
      s.set_policy_waits(st.policy_waits);
      s.set_excluded(st.excluded);
      s.set_frozen(st.frozen);
      s.set_messages_sent(st.messages_sent);
      for (const std::string& r : st.uplink_streams) s.add_uplink_registries(r);
      for (const std::string& r : st.push_streams) s.add_push_registries(r);
      s.set_grafts(st.grafts);
      s.set_prunes(st.prunes);
      s.set_suspect(st.suspect);
      s.set_digests_sent(st.digests_sent);
      s.set_digests_matched(st.digests_matched);
      s.set_divergences(st.divergences);
      for (const std::string& r : st.diverged) s.add_diverged_registries(r);
    }
    auto n = auto_repairs.find(replication::SirenToOrigin(p.authority()).value_or(0));
    if (n != auto_repairs.end()) s.set_auto_repairs(n->second);
    out.push_back(std::move(s));
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.authority() < b.authority(); });
  return out;
}

}  // namespace interco::node
