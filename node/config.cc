#include "node/config.h"

#include <fstream>
#include <sstream>

#include <google/protobuf/util/json_util.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "replication/base/limits.h"
#include "replication/ids.h"

namespace interco::node {
namespace {

absl::Status CheckAddress(const std::string& address, const char* field) {
  // host:port, with the host possibly in brackets for IPv6.
  const size_t colon = address.rfind(':');
  int port = -1;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(absl::string_view(address).substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": \"", address, "\" is not host:port (port 0 picks a free one)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<NodeConfig> LoadConfigFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::FailedPreconditionError(absl::StrCat("cannot read config file ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  NodeConfig config;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status = google::protobuf::util::JsonStringToMessage(ss.str(), &config, options);
  if (!status.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("config file ", path, ": ", std::string(status.message())));
  }
  return config;
}

void ApplyDefaults(NodeConfig& c) {
  if (c.federation().empty()) c.set_federation("interco.local");
  if (c.listen_address().empty()) c.set_listen_address("127.0.0.1:7443");
  if (!c.has_health_address()) {
    c.set_health_address("127.0.0.1:7080");
  }
  if (c.durability().empty()) c.set_durability("sync");
  if (c.peer_compression().empty()) c.set_peer_compression("gzip");
  if (c.backup_dir().empty() && !c.data_dir().empty()) {
    std::string dir = c.data_dir();
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    c.set_backup_dir(dir + ".backups");
  }
  if (c.feed_retention_entries() == 0) {
    c.set_feed_retention_entries(limits::kFeedRetentionEntriesDefault);
  }
  if (!c.has_reflection()) c.set_reflection(true);
  if (c.shutdown_grace_seconds() == 0) c.set_shutdown_grace_seconds(10);
  if (c.block_cache_mib() == 0) c.set_block_cache_mib(32);
  if (c.tls().refresh_interval_seconds() == 0) c.mutable_tls()->set_refresh_interval_seconds(10);
  if (c.clock_offset_max_ms() == 0) {
    c.set_clock_offset_max_ms(static_cast<uint32_t>(limits::kClockOffsetMaxMillisDefault));
  }
  if (c.collect_interval_seconds() == 0) c.set_collect_interval_seconds(60);
  if (c.journal_retention_seconds() == 0) c.set_journal_retention_seconds(30 * 24 * 3600);
  if (c.member_retention_seconds() == 0) c.set_member_retention_seconds(30 * 24 * 3600);
  if (c.compaction_changes() == 0) c.set_compaction_changes(1024);
  if (c.digest_interval_seconds() == 0) c.set_digest_interval_seconds(60);
}

TlsFiles TlsFilesOf(const NodeConfig& c) {
  TlsFiles f = TlsFiles::InDirectory(c.tls_dir());
  if (!c.tls().cert_file().empty()) f.cert_file = c.tls().cert_file();
  if (!c.tls().key_file().empty()) f.key_file = c.tls().key_file();
  if (!c.tls().ca_file().empty()) f.ca_file = c.tls().ca_file();
  f.refresh_seconds = c.tls().refresh_interval_seconds();
  f.crl_dir = c.tls().crl_dir();
  return f;
}

absl::Status ValidateConfig(const NodeConfig& c) {
  if (absl::Status s = replication::ValidateSiren(c.authority()); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("authority: ", s.message()));
  }
  if (c.display_name().size() > limits::kDisplayNameBytesMax) {
    return absl::InvalidArgumentError("display_name: longer than 256 bytes");
  }
  if (c.federation().empty() || c.federation().find('/') != std::string::npos) {
    return absl::InvalidArgumentError("federation: must be a non-empty trust domain name");
  }
  if (c.data_dir().empty()) return absl::InvalidArgumentError("data_dir: required");
  if (absl::Status s = CheckAddress(c.listen_address(), "listen_address"); !s.ok()) return s;
  if (!c.health_address().empty()) {
    if (absl::Status s = CheckAddress(c.health_address(), "health_address"); !s.ok()) return s;
  }
  if (!c.peer_listen_address().empty()) {
    if (absl::Status s = CheckAddress(c.peer_listen_address(), "peer_listen_address"); !s.ok()) {
      return s;
    }
  }
  for (int i = 0; i < c.peers_size(); ++i) {
    const auto& p = c.peers(i);
    const std::string field = absl::StrCat("peers[", i, "]");
    if (absl::Status s = replication::ValidateSiren(p.authority()); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".authority: ", s.message()));
    }
    if (p.authority() == c.authority()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".authority: a node is not its own peer"));
    }
    if (absl::Status s = CheckAddress(p.address(), "address"); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".", s.message()));
    }
    for (int j = 0; j < i; ++j) {
      if (c.peers(j).authority() == p.authority()) {
        return absl::InvalidArgumentError(absl::StrCat(field, ".authority: listed twice"));
      }
    }
  }
  // Members report what they hold with their statuses (every 5 s): a shorter retention
  // would leave out members that are only between two statuses.
  if (c.member_retention_seconds() < kMemberRetentionSecondsMin) {
    return absl::InvalidArgumentError(absl::StrCat("member_retention_seconds: at least ",
                                                   kMemberRetentionSecondsMin));
  }
  if (c.peers_size() > 0 && c.peer_listen_address().empty()) {
    return absl::InvalidArgumentError("peer_listen_address: required when peers are configured");
  }
  if (c.peer_compression() != "gzip" && c.peer_compression() != "none") {
    return absl::InvalidArgumentError(absl::StrCat(
        "peer_compression: \"", c.peer_compression(), "\" is neither \"gzip\" nor \"none\""));
  }
  if (c.durability() != "sync" && c.durability() != "async") {
    return absl::InvalidArgumentError(
        absl::StrCat("durability: \"", c.durability(), "\" is neither \"sync\" nor \"async\""));
  }
  if (c.tls_dir().empty() &&
      (c.tls().cert_file().empty() || c.tls().key_file().empty() || c.tls().ca_file().empty())) {
    return absl::InvalidArgumentError("tls_dir: required unless tls.cert_file, tls.key_file "
                                      "and tls.ca_file are all set");
  }
  const TlsFiles files = TlsFilesOf(c);
  if (absl::Status s = CheckTlsFiles(files); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("tls: ", s.message()));
  }
  // The node's own certificate must name the node's authority in the federation.
  absl::StatusOr<std::string> spiffe = SpiffeIdOfCertificateFile(files.cert_file);
  if (!spiffe.ok()) return absl::InvalidArgumentError(absl::StrCat("tls: ", spiffe.status().message()));
  const std::string expected = NodeSpiffeId(c.federation(), c.authority());
  if (*spiffe != expected) {
    return absl::InvalidArgumentError(absl::StrCat("tls: the node certificate is for ", *spiffe,
                                                   ", expected ", expected));
  }
  return absl::OkStatus();
}

}  // namespace interco::node
