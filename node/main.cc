// interco-node: runs one interco node.
//
//   interco-node --config node.json [--flag=value ...]
//   interco-node --check --authority SIREN --data_dir DIR    (offline consistency check)
//   interco-node --new_epoch --authority SIREN --data_dir DIR  (after restoring a copy)
//
// Flags override the config file. SIGTERM or SIGINT shuts down gracefully.
#include <signal.h>

#include <cstdio>
#include <iostream>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "node/config.h"
#include "node/log.h"
#include "node/rpc/grpc_runtime.h"
#include "node/system_clock.h"
#include "node/server.h"
#include "node/storage/record_store.h"
#include "node/version.h"

ABSL_FLAG(std::string, config, "", "JSON config file (interco.config.v1.NodeConfig)");
ABSL_FLAG(std::string, authority, "", "SIREN of the authority running the node");
ABSL_FLAG(std::string, display_name, "", "Name of the authority");
ABSL_FLAG(std::string, federation, "", "Federation trust domain (default interco.local)");
ABSL_FLAG(std::string, data_dir, "", "Directory of the store");
ABSL_FLAG(std::string, backup_dir, "", "Directory of backups (default: the data directory + .backups)");
ABSL_FLAG(std::string, listen, "", "mTLS API address host:port (default 127.0.0.1:7443)");
ABSL_FLAG(std::string, health_listen, "",
          "Plaintext health address host:port (default 127.0.0.1:7080; 'off' disables)");
ABSL_FLAG(std::string, tls_dir, "", "Directory with tls.crt, tls.key, ca.crt");
ABSL_FLAG(std::string, durability, "", "sync (default) or async");
ABSL_FLAG(std::string, peer_compression, "", "compression of peer messages: gzip (default) or none");
ABSL_FLAG(std::string, crl_dir, "", "Directory of CRLs (<issuer hash>.r0) to enforce");
ABSL_FLAG(std::string, peer_listen, "", "mTLS peer (replication) address host:port");
ABSL_FLAG(std::vector<std::string>, peers, {},
          "Peers to replicate with, as SIREN@host:port, comma-separated");
ABSL_FLAG(uint32_t, collect_interval_seconds, 0,
          "How often, at most, owned registries collect stable tombstones (default 60)");
ABSL_FLAG(uint32_t, journal_retention_seconds, 0,
          "How long lost writes stay in the conflict journals of owned registries, from "
          "their stamp (default 2592000: 30 days)");
ABSL_FLAG(uint32_t, member_retention_seconds, 0,
          "How long a member of an owned registry may stay behind before collections leave it "
          "out (default 2592000: 30 days)");
ABSL_FLAG(uint32_t, compaction_changes, 0,
          "Changes the stable frontier of an owned registry must pass before a collection "
          "for the compaction of the change log alone (default 1024)");
ABSL_FLAG(uint32_t, digest_interval_seconds, 0,
          "How often, at most, a peer holding the same changes of a registry is sent a digest "
          "of its state (default 60)");
ABSL_FLAG(bool, auto_repair, false,
          "Repair a registry from a peer whose digest shows another state at the same "
          "position (otherwise the divergence is only logged and counted)");
ABSL_FLAG(bool, check, false, "Check the store's consistency offline, then exit");
ABSL_FLAG(bool, new_epoch, false,
          "After restoring a copy of the store: start a new origin epoch offline, then exit");
ABSL_FLAG(bool, verbose, false, "Log debug lines");

namespace {

using interco::node::NodeConfig;

absl::StatusOr<NodeConfig> BuildConfig() {
  NodeConfig config;
  if (const std::string path = absl::GetFlag(FLAGS_config); !path.empty()) {
    absl::StatusOr<NodeConfig> loaded = interco::node::LoadConfigFile(path);
    if (!loaded.ok()) return loaded.status();
    config = *std::move(loaded);
  }
  auto set = [](const std::string& v, auto setter) {
    if (!v.empty()) setter(v);
  };
  set(absl::GetFlag(FLAGS_authority), [&](auto v) { config.set_authority(v); });
  set(absl::GetFlag(FLAGS_display_name), [&](auto v) { config.set_display_name(v); });
  set(absl::GetFlag(FLAGS_federation), [&](auto v) { config.set_federation(v); });
  set(absl::GetFlag(FLAGS_data_dir), [&](auto v) { config.set_data_dir(v); });
  set(absl::GetFlag(FLAGS_listen), [&](auto v) { config.set_listen_address(v); });
  set(absl::GetFlag(FLAGS_health_listen),
      [&](auto v) { config.set_health_address(v == "off" ? "" : v); });
  set(absl::GetFlag(FLAGS_tls_dir), [&](auto v) { config.set_tls_dir(v); });
  set(absl::GetFlag(FLAGS_durability), [&](auto v) { config.set_durability(v); });
  set(absl::GetFlag(FLAGS_peer_compression), [&](auto v) { config.set_peer_compression(v); });
  set(absl::GetFlag(FLAGS_backup_dir), [&](auto v) { config.set_backup_dir(v); });
  set(absl::GetFlag(FLAGS_crl_dir), [&](auto v) { config.mutable_tls()->set_crl_dir(v); });
  set(absl::GetFlag(FLAGS_peer_listen), [&](auto v) { config.set_peer_listen_address(v); });
  if (const uint32_t s = absl::GetFlag(FLAGS_collect_interval_seconds); s > 0) {
    config.set_collect_interval_seconds(s);
  }
  if (const uint32_t s = absl::GetFlag(FLAGS_journal_retention_seconds); s > 0) {
    config.set_journal_retention_seconds(s);
  }
  if (const uint32_t n = absl::GetFlag(FLAGS_compaction_changes); n > 0) {
    config.set_compaction_changes(n);
  }
  if (const uint32_t s = absl::GetFlag(FLAGS_member_retention_seconds); s > 0) {
    config.set_member_retention_seconds(s);
  }
  if (const uint32_t s = absl::GetFlag(FLAGS_digest_interval_seconds); s > 0) {
    config.set_digest_interval_seconds(s);
  }
  if (absl::GetFlag(FLAGS_auto_repair)) config.set_auto_repair(true);
  for (const std::string& p : absl::GetFlag(FLAGS_peers)) {
    const size_t at = p.find('@');
    if (at == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat("--peers: \"", p, "\" is not SIREN@host:port"));
    }
    auto* peer = config.add_peers();
    peer->set_authority(p.substr(0, at));
    peer->set_address(p.substr(at + 1));
  }
  return config;
}

// The node's store, opened for an offline command; prints the error if it cannot be.
std::unique_ptr<interco::node::RecordStore> OpenOffline(const NodeConfig& config,
                                                       interco::replication::Clock& clock) {
  interco::node::RecordStoreOptions options;
  options.path = config.data_dir();
  options.authority = config.authority();
  options.clock = &clock;
  auto store = interco::node::RecordStore::Open(options);
  if (!store.ok()) {
    std::cerr << "interco-node: " << store.status() << "\n";
    return nullptr;
  }
  return *std::move(store);
}

int Check(const NodeConfig& config) {
  interco::node::SystemClock clock;
  auto store = OpenOffline(config, clock);
  if (store == nullptr) return 2;
  absl::StatusOr<std::string> report = store->CheckConsistency();
  if (!report.ok()) {
    std::cerr << "interco-node: INCONSISTENT: " << report.status() << "\n";
    return 1;
  }
  std::cout << *report << "\n";
  return 0;
}

// After a store was restored from a copy, the node's own change log may end before
// what its partners already hold: its next sequence numbers were already used. A new
// epoch starts a new chain, so none is issued twice (partners would see a fork, and
// freeze the node's changes, if it were).
int NewEpoch(const NodeConfig& config) {
  interco::node::SystemClock clock;
  auto store = OpenOffline(config, clock);
  if (store == nullptr) return 2;
  absl::StatusOr<uint32_t> epoch = store->StartNewEpoch();
  if (!epoch.ok()) {
    std::cerr << "interco-node: " << epoch.status() << "\n";
    return 1;
  }
  std::cout << "origin epoch " << *epoch << ": this node's next changes start a new chain\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "runs an interco node.\n  interco-node --config node.json [--flag=value ...]\n"
      "  interco-node --check --authority SIREN --data_dir DIR\n"
      "  interco-node --new_epoch --authority SIREN --data_dir DIR  (after a restore)");
  absl::SetFlag(&FLAGS_verbose, false);
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_verbose)) interco::node::log::SetMinLevel(interco::node::log::Level::kDebug);

  absl::StatusOr<NodeConfig> config = BuildConfig();
  if (!config.ok()) {
    std::cerr << "interco-node: " << config.status().message() << "\n";
    return 2;
  }
  if (absl::GetFlag(FLAGS_check)) return Check(*config);
  if (absl::GetFlag(FLAGS_new_epoch)) return NewEpoch(*config);

  // Block the shutdown signals in every thread (gRPC's and RocksDB's threads inherit
  // this mask) and wait for them here.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Outlives the server, and waits for gRPC's threads before the exit.
  interco::node::GrpcRuntime grpc_runtime;
  absl::StatusOr<std::unique_ptr<interco::node::Server>> server =
      interco::node::Server::Start(*config);
  if (!server.ok()) {
    std::cerr << "interco-node: " << server.status().message() << "\n";
    return 2;
  }
  int sig = 0;
  sigwait(&signals, &sig);
  interco::node::log::Info(absl::StrCat("received signal ", sig));
  (*server)->Shutdown(absl::Seconds(config->shutdown_grace_seconds() == 0
                                        ? 10
                                        : config->shutdown_grace_seconds()));
  return 0;
}
