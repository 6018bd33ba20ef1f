#include "node/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "node/log.h"
#include "node/system_clock.h"
#include "node/trust/batch_signer.h"
#include "node/trust/certificate_store.h"
#include "replication/base/limits.h"

namespace interco::node {
namespace {

// Removes builder plugins (here: server reflection) from one server only. gRPC registers
// plugins process-wide; the health port must serve grpc.health.v1 and nothing else, and
// reflection on the API port is optional.
class DropPluginsOption final : public grpc::ServerBuilderOption {
 public:
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    plugins->clear();
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Start(NodeConfig config) {
  ApplyDefaults(config);
  if (absl::Status s = ValidateConfig(config); !s.ok()) return s;

  auto server = std::unique_ptr<Server>(new Server());
  server->config_ = config;
  server->clock_ = std::make_unique<interco::node::SystemClock>();

  RecordStoreOptions so;
  so.path = config.data_dir();
  so.authority = config.authority();
  so.sync = config.durability() == "sync";
  so.feed_retention_entries = config.feed_retention_entries();
  so.block_cache_bytes = size_t{config.block_cache_mib()} << 20;
  so.clock = server->clock_.get();
  so.random_seed = static_cast<uint64_t>(absl::ToUnixNanos(absl::Now()));
  absl::StatusOr<std::unique_ptr<RecordStore>> store = RecordStore::Open(so);
  if (!store.ok()) return store.status();
  server->store_ = *std::move(store);
  if (server->store_->opened_from_backup()) {
    log::Warning(absl::StrCat("the store is a backup: this node starts origin epoch ",
                           server->store_->epoch(), ", and gets its changes made after the "
                           "backup back from its partners"));
  }

  // Signed provenance: the node signs its batches with its certificate's key and checks
  // every origin's signature against certificates of the federation CA.
  const TlsFiles tls = TlsFilesOf(config);
  CertificateStoreOptions co;
  co.federation = config.federation();
  co.ca_file = tls.ca_file;
  if (!tls.crl_dir.empty()) co.revocation = std::make_shared<RevocationList>(tls.crl_dir, tls.ca_file);
  co.store = server->store_.get();
  absl::StatusOr<std::unique_ptr<CertificateStore>> certificates = CertificateStore::Open(co);
  if (!certificates.ok()) return certificates.status();
  server->certificates_ = *std::move(certificates);
  absl::StatusOr<std::unique_ptr<BatchSigner>> signer =
      BatchSigner::Open(tls, *server->certificates_);
  if (!signer.ok()) return signer.status();
  server->signer_ = *std::move(signer);
  server->store_->SetSigner(server->signer_.get());

  if (!config.peer_listen_address().empty()) {
    PeerManagerOptions po;
    po.federation = config.federation();
    po.authority = config.authority();
    po.listen_address = config.peer_listen_address();
    po.peers.assign(config.peers().begin(), config.peers().end());
    po.tls = TlsFilesOf(config);
    po.clock_offset_max_ms = config.clock_offset_max_ms();
    po.collect_interval_ms = int64_t{config.collect_interval_seconds()} * 1000;
    po.journal_retention_ms = int64_t{config.journal_retention_seconds()} * 1000;
    po.member_retention_ms = int64_t{config.member_retention_seconds()} * 1000;
    po.compaction_changes = config.compaction_changes();
    po.compress = config.peer_compression() == "gzip";
    po.digest_interval_ms = int64_t{config.digest_interval_seconds()} * 1000;
    po.auto_repair = config.auto_repair();
    absl::StatusOr<std::unique_ptr<PeerManager>> peers =
        PeerManager::Start(po, *server->store_, *server->clock_, *server->certificates_,
                           *server->signer_);
    if (!peers.ok()) return peers.status();
    server->peers_ = *std::move(peers);
  }

  server->registry_service_ =
      std::make_unique<RegistryService>(*server->store_, config.federation());
  server->admin_service_ =
      std::make_unique<AdminService>(*server->store_, server->peers_.get(), config.federation(),
                                     config.backup_dir());
  server->node_service_ =
      std::make_unique<NodeService>(*server->store_, server->peers_.get(), config, absl::Now());

  server->health_service_ = std::make_unique<HealthService>();
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  // Each port is this node's alone: without this, gRPC binds with SO_REUSEPORT, and a
  // second server on the same address would share its connections instead of failing.
  grpc::ServerBuilder api;
  api.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  api.AddListeningPort(config.listen_address(),
                       MakeServerCredentials(TlsFilesOf(config), config.federation()),
                       &server->api_port_);
  api.RegisterService(server->registry_service_.get());
  api.RegisterService(server->node_service_.get());
  api.RegisterService(server->admin_service_.get());
  api.RegisterService(server->health_service_.get());
  api.SetMaxReceiveMessageSize(limits::kGrpcMessageBytesMax);
  api.SetMaxSendMessageSize(limits::kGrpcMessageBytesMax);
  if (!config.reflection()) api.SetOption(std::make_unique<DropPluginsOption>());
  server->api_server_ = api.BuildAndStart();
  if (server->api_server_ == nullptr || server->api_port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", config.listen_address(), " (address in use?)"));
  }

  if (!config.health_address().empty()) {
    grpc::ServerBuilder health;
    health.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    health.AddListeningPort(config.health_address(), grpc::InsecureServerCredentials(),
                            &server->health_port_);
    health.RegisterService(server->health_service_.get());
    health.SetOption(std::make_unique<DropPluginsOption>());
    server->health_server_ = health.BuildAndStart();
    if (server->health_server_ == nullptr || server->health_port_ == 0) {
      server->api_server_->Shutdown();
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", config.health_address(), " (address in use?)"));
    }
  }
  server->health_service_->SetServing(true);
  log::Info(absl::StrCat("interco node ", config.authority(), " (", config.display_name(),
                         ") serving the API on port ", server->api_port_, ", health on port ",
                         server->health_port_, ", peers on port ", server->peer_port(),
                         ", durability ", config.durability()));
  return server;
}

void Server::Shutdown(absl::Duration grace) {
  {
    absl::MutexLock l(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
  }
  log::Info("shutting down: draining in-flight calls");
  // (A server that failed to start has only some of its parts.)
  if (health_service_ != nullptr) health_service_->Shutdown();  // NOT_SERVING, watches end
  // Repairs finish their API calls: queued ones fail now, a running one at its next request.
  if (peers_ != nullptr) peers_->CancelRepairs();
  if (api_server_ != nullptr) {
    api_server_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoSeconds(grace));
  }
  if (health_server_ != nullptr) health_server_->Shutdown();
  if (api_server_ != nullptr) api_server_->Wait();
  // Services and replication go before the store: nothing can reach it any more.
  api_server_.reset();
  health_server_.reset();
  if (peers_ != nullptr) peers_->Shutdown();
  peers_.reset();
  // Closing the store drains its commit queue and closes RocksDB.
  store_.reset();
  log::Info("shutdown complete");
  absl::MutexLock l(&mu_);
  stopped_ = true;
}

void Server::Wait() {
  absl::MutexLock l(&mu_);
  mu_.Await(absl::Condition(&stopped_));
}

Server::~Server() { Shutdown(absl::Seconds(config_.shutdown_grace_seconds())); }

}  // namespace interco::node
