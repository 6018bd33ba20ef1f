// Shared helpers for interco's tests: temporary directories, dev certificates made by the
// real PKI script, free loopback ports, node processes, and mTLS client stubs.
#ifndef INTERCO_TESTS_TESTING_TEST_ENV_H_
#define INTERCO_TESTS_TESTING_TEST_ENV_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include <grpcpp/channel.h>

#include "absl/status/status.h"
#include "replication/env.h"
#include "replication/ids.h"
#include "replication/record_crdt.h"

namespace interco::node {
class RecordStore;
}

namespace interco::testing {

// Applies to `to` the batches that `from` originated in `registry` (its current epoch)
// and `to` lacks, decoded as the engine does, in order; the first error.
absl::Status CarryBatches(node::RecordStore& from, node::RecordStore& to,
                          const std::string& registry);

// Applies to `to` every batch of `registry` that `from`'s log holds and `to` lacks, of
// every origin, as a peer sends them (hollow ones included, a stretch of them up to the
// end of a signed run as one skip): each origin as far as it goes, again while that moves
// something (a collection waits for what it requires).
// Returns the bytes of the batches applied; the first error.
absl::StatusOr<int64_t> CarryAllBatches(node::RecordStore& from, node::RecordStore& to,
                                        const std::string& registry);

// A fresh directory under the test temp dir, removed at process exit.
std::string MakeTempDir(const std::string& tag);

// The federation used by tests, and three authorities with certificates.
inline constexpr char kFederation[] = "interco.test";
inline constexpr char kLyon[] = "200046977";      // Métropole de Lyon
inline constexpr char kBourg[] = "200071751";     // CA du Bassin de Bourg-en-Bresse
inline constexpr char kAbergement[] = "210100012";  // L'Abergement-Clémenciat

// Directory of dev certificates made once per process by certs/dev-certs.sh:
//   <dir>/nodes/<SIREN>/{tls.crt,tls.key,ca.crt}
//   <dir>/clients/<SIREN>/{admin,app}/{tls.crt,tls.key,ca.crt}
const std::string& DevCertsDir();
// Certificates of another, unrelated federation CA ("other.test"), same layout.
const std::string& ForeignCertsDir();
std::string NodeTlsDir(const std::string& siren);
std::string ClientTlsDir(const std::string& siren, const std::string& client = "app");

// A loopback port, free when it is returned and reserved for this process until it exits:
// no other test process is given it, and no outgoing connection can take it (it lies
// below the kernel's ephemeral range), so a node can bind it again after a restart.
int FreePort();

// An mTLS channel to 127.0.0.1:port presenting the certificates in `tls_dir`.
std::shared_ptr<grpc::Channel> MtlsChannel(int port, const std::string& tls_dir);

// The path of a built binary (interco-node, interco), from the build tree.
std::string BinaryPath(const std::string& name);

// An update of string field "nom" of a record, creating the record if it is missing.
replication::LocalWrite Named(const std::string& nom);

// A node's store in a store-level test: its authority, its directory, and the store once
// opened.
struct StoreNode {
  std::string siren;
  std::string dir;
  std::unique_ptr<node::RecordStore> store;
  // RecordStoreOptions::fold_window_entries; 0: the store's default.
  size_t fold_window_entries = 0;
  replication::Principal admin() const { return replication::Principal{kFederation, siren, "admin"}; }
  // Closes the store if it is open, then opens the one in `dir` with `clock`.
  absl::Status Open(replication::Clock& clock);
};

// A wall clock the test moves by hand.
class FakeClock final : public replication::Clock {
 public:
  explicit FakeClock(int64_t now_ms = 1767225600000) : now_ms_(now_ms) {}
  int64_t NowMillis() override { return now_ms_; }
  int64_t MonotonicMillis() override { return now_ms_; }
  void Advance(int64_t ms) { now_ms_ += ms; }
  void Set(int64_t ms) { now_ms_ = ms; }

 private:
  int64_t now_ms_;
};

// An interco-node child process on loopback.
class NodeProcess {
 public:
  struct Options {
    std::string authority = kLyon;
    std::string data_dir;
    std::string durability = "sync";
    // Default: NodeTlsDir(authority).
    std::string tls_dir;
    std::vector<std::string> extra_args;
  };
  explicit NodeProcess(Options options);
  ~NodeProcess();  // SIGKILLs the process if still running
  NodeProcess(const NodeProcess&) = delete;
  NodeProcess& operator=(const NodeProcess&) = delete;

  // Starts the process and waits (up to 20 s) until its health port says SERVING.
  // Returns false (with the log in `error`) if it exits or does not come up.
  bool Start(std::string* error);
  // SIGKILL, and reap.
  void Kill();
  // SIGTERM, and wait for exit; returns the exit status (as from waitpid), or -1.
  int Terminate();

  int api_port() const { return api_port_; }
  int health_port() const { return health_port_; }
  pid_t pid() const { return pid_; }
  const std::string& log_path() const { return log_path_; }
  // What the process wrote to its log so far.
  std::string Log() const;

 private:
  Options options_;
  pid_t pid_ = -1;
  int api_port_ = 0;
  int health_port_ = 0;
  std::string log_path_;
};

// Runs a command line through /bin/sh; returns its exit status and stdout+stderr.
int RunCommand(const std::string& command, std::string* output);

}  // namespace interco::testing

#endif  // INTERCO_TESTS_TESTING_TEST_ENV_H_
