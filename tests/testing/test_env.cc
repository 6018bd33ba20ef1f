#include "tests/testing/test_env.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>
#include <utility>

#include <grpcpp/create_channel.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "node/crypto/sha256.h"
#include "node/storage/record_store.h"
#include "node/tls/credentials.h"
#include "replication/change_log.h"

namespace interco::testing {

replication::LocalWrite Named(const std::string& nom) {
  replication::LocalWrite w;
  w.kind = replication::LocalWrite::Kind::kUpdate;
  w.allow_missing = true;
  w.fields["nom"].set_string_value(nom);
  w.mask.push_back("nom");
  return w;
}

absl::Status StoreNode::Open(replication::Clock& clock) {
  store.reset();
  node::RecordStoreOptions o;
  if (fold_window_entries > 0) o.fold_window_entries = fold_window_entries;
  o.path = dir;
  o.authority = siren;
  o.clock = &clock;
  absl::StatusOr<std::unique_ptr<node::RecordStore>> opened = node::RecordStore::Open(o);
  if (!opened.ok()) return opened.status();
  store = *std::move(opened);
  return absl::OkStatus();
}

absl::Status CarryBatches(node::RecordStore& from, node::RecordStore& to,
                          const std::string& registry) {
  node::Sha256Hasher hasher;
  absl::StatusOr<replication::VersionVector> held = from.Position(registry);
  if (!held.ok()) return held.status();
  // Every epoch of its own (a restore, or a collection that left it out, starts one).
  for (const auto& [key, pos] : *held) {
    if (key.origin != from.origin()) continue;
    absl::StatusOr<replication::VersionVector> position = to.Position(registry);
    if (!position.ok()) return position.status();
    auto batches = from.ReadBatches(registry, key, (*position)[key].seq, 1000);
    if (!batches.ok()) return batches.status();
    for (const auto& b : *batches) {
      auto decoded = replication::DecodeBatch(b, hasher);
      if (!decoded.ok()) return decoded.status();
      if (absl::Status s = to.ApplyRemoteBatch(registry, *decoded); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}
absl::StatusOr<int64_t> CarryAllBatches(node::RecordStore& from, node::RecordStore& to,
                                        const std::string& registry) {
  node::Sha256Hasher hasher;
  int64_t bytes = 0;
  for (bool progress = true; progress;) {
    progress = false;
    absl::StatusOr<replication::VersionVector> held = from.Position(registry);
    if (!held.ok()) return held.status();
    for (const auto& [key, pos] : *held) {
      for (bool waiting = false; !waiting;) {
        absl::StatusOr<replication::VersionVector> position = to.Position(registry);
        if (!position.ok()) return position.status();
        if ((*position)[key].seq >= pos.seq) break;
        uint64_t at = (*position)[key].seq;
        auto batches = from.ReadBatches(registry, key, at, 256);
        if (!batches.ok()) return batches.status();
        if (batches->empty()) return absl::DataLossError("the log cannot serve what it holds");
        for (size_t i = 0; i < batches->size(); ++i) {
          interco::replication::v1::Batch b = (*batches)[i];
          // As the engine sends them: hollow batches up to the end of a run as one skip
          // (a skip stored there from its own start).
          if (b.hollow()) {
            if (std::optional<size_t> last = replication::HollowStretchEnd(
                    *batches, i, [](const interco::replication::v1::BatchHeader&) { return true; })) {
              b = replication::Skip((*batches)[*last], b.skip_from() > 0 ? b.skip_from() : at + 1);
              i = *last;
            }
          }
          auto decoded = replication::DecodeBatch(b, hasher);
          if (!decoded.ok()) return decoded.status();
          absl::Status s = to.ApplyRemoteBatch(registry, *decoded);
          if (absl::IsUnavailable(s)) {
            waiting = true;  // later, once what it waits for is there
            break;
          }
          if (!s.ok()) return s;
          at = decoded->last_seq();
          bytes += static_cast<int64_t>(b.ByteSizeLong());
          progress = true;
        }
      }
    }
  }
  return bytes;
}

namespace {

std::vector<std::string>& DirsToRemove() {
  static auto* dirs = new std::vector<std::string>();
  return *dirs;
}

void RemoveDirs() {
  for (const std::string& d : DirsToRemove()) {
    std::error_code ec;
    std::filesystem::remove_all(d, ec);
  }
}

// Certificates live in the build tree and are made once: dev-certs.sh is idempotent, and
// flock serializes test processes that run in parallel.
std::string MakeCerts(const std::string& federation, const std::string& tag) {
  const std::string dir = absl::StrCat(INTERCO_TEST_CERTS_DIR, "/", tag);
  std::string out;
  const std::string cmd = absl::StrCat(
      "mkdir -p ", INTERCO_TEST_CERTS_DIR, " && flock ", INTERCO_TEST_CERTS_DIR, "/.lock bash ",
      INTERCO_SOURCE_DIR, "/certs/dev-certs.sh ", dir, " ", federation, " ", kLyon, " ", kBourg,
      " ", kAbergement);
  if (RunCommand(cmd, &out) != 0) {
    ADD_FAILURE() << "dev-certs.sh failed: " << out;
  }
  return dir;
}

}  // namespace

std::string MakeTempDir(const std::string& tag) {
  static std::once_flag once;
  std::call_once(once, [] { std::atexit(RemoveDirs); });
  std::string base = ::testing::TempDir();
  if (base.empty() || base.back() != '/') base += '/';
  std::string templ = absl::StrCat(base, "interco-", tag, "-XXXXXX");
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  const char* made = mkdtemp(buf.data());
  if (made == nullptr) {
    ADD_FAILURE() << "mkdtemp failed for " << templ;
    return templ;
  }
  static std::mutex mu;
  std::lock_guard<std::mutex> l(mu);
  DirsToRemove().push_back(made);
  return made;
}

const std::string& DevCertsDir() {
  static const std::string* dir = new std::string(MakeCerts(kFederation, "certs"));
  return *dir;
}

const std::string& ForeignCertsDir() {
  static const std::string* dir = new std::string(MakeCerts("other.test", "foreign-certs"));
  return *dir;
}

std::string NodeTlsDir(const std::string& siren) {
  return absl::StrCat(DevCertsDir(), "/nodes/", siren);
}

std::string ClientTlsDir(const std::string& siren, const std::string& client) {
  return absl::StrCat(DevCertsDir(), "/clients/", siren, "/", client);
}

namespace {

// Ports outside the kernel's ephemeral range (those it gives outgoing connections and
// bind(0)): from 10000 up to below that range, or above it if too few are left below.
std::pair<int, int> ReservablePorts() {
  std::ifstream in("/proc/sys/net/ipv4/ip_local_port_range");
  int first = 32768, last = 60999;
  if (!(in >> first >> last) || first < 1 || last < first || last > 65535) {
    first = 32768;
    last = 60999;
  }
  constexpr int kLow = 10000, kEnough = 1024;
  if (first - kLow >= kEnough) return {kLow, first - 1};
  return {last + 1, 65535};
}

bool BindsNow(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  // As the node's gRPC listeners do: a port left in TIME_WAIT by a stopped node is free.
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

}  // namespace

int FreePort() {
  // Ports below the ephemeral range, so that no outgoing connection is ever given one, each
  // reserved for the life of this process by a lock on a file that every test process on
  // the machine shares: between the moment a test picks a port and the moment a node binds
  // it (or binds it again after a restart), no other test can take it.
  static std::mutex mu;
  std::lock_guard<std::mutex> l(mu);
  static const std::string dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string d = absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp",
                                 "/interco-test-ports");
    if (mkdir(d.c_str(), 01777) == 0) chmod(d.c_str(), 01777);
    return d;
  }();
  const auto [first, last] = ReservablePorts();
  const int count = last - first + 1;
  if (count >= 256) {
    static uint32_t next = static_cast<uint32_t>(getpid()) * 2654435761u;
    for (int tried = 0; tried < count; ++tried) {
      const int port = first + static_cast<int>(next++ % static_cast<uint32_t>(count));
      const std::string path = absl::StrCat(dir, "/", port);
      const int fd = open(path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0666);
      if (fd < 0) break;  // The directory cannot be used: fall back to the kernel's choice.
      if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        continue;
      }
      if (!BindsNow(port)) {
        close(fd);
        continue;
      }
      return port;  // `fd` stays open: the lock lasts as long as this process.
    }
  }
  ADD_FAILURE() << "no reservable port in " << first << ".." << last << " under " << dir
                << "; taking one of the kernel's, which another process may take first";
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

std::shared_ptr<grpc::Channel> MtlsChannel(int port, const std::string& tls_dir) {
  auto creds = node::MakeChannelCredentials(node::TlsFiles::InDirectory(tls_dir));
  EXPECT_TRUE(creds.ok()) << creds.status();
  grpc::ChannelArguments args;
  // A private subchannel pool: every test channel does its own handshake.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port), *creds, args);
}

std::string BinaryPath(const std::string& name) {
  if (name == "interco-node") return INTERCO_NODE_BINARY;
  if (name == "interco") return INTERCO_CLI_BINARY;
  return name;
}

int RunCommand(const std::string& command, std::string* output) {
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) {
    if (output != nullptr) output->append(buf, n);
  }
  const int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

NodeProcess::NodeProcess(Options options) : options_(std::move(options)) {}

NodeProcess::~NodeProcess() { Kill(); }

std::string NodeProcess::Log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool NodeProcess::Start(std::string* error) {
  api_port_ = FreePort();
  health_port_ = FreePort();
  log_path_ = absl::StrCat(options_.data_dir, ".log");
  std::vector<std::string> args = {
      BinaryPath("interco-node"),
      absl::StrCat("--authority=", options_.authority),
      absl::StrCat("--federation=", kFederation),
      absl::StrCat("--data_dir=", options_.data_dir),
      absl::StrCat("--tls_dir=",
                   options_.tls_dir.empty() ? NodeTlsDir(options_.authority) : options_.tls_dir),
      absl::StrCat("--listen=127.0.0.1:", api_port_),
      absl::StrCat("--health_listen=127.0.0.1:", health_port_),
      absl::StrCat("--durability=", options_.durability),
  };
  args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ == 0) {
    // A node outlives no test: killed with the test process however that ends (its
    // ports' reservations end with it, and another test could be given them).
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    FILE* log = std::fopen(log_path_.c_str(), "a");
    if (log != nullptr) {
      dup2(fileno(log), STDERR_FILENO);
      dup2(fileno(log), STDOUT_FILENO);
    }
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  // Wait until the node logs that it serves (it binds its ports before logging).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      std::ifstream in(log_path_);
      std::stringstream ss;
      ss << in.rdbuf();
      if (error != nullptr) *error = absl::StrCat("node exited early: ", ss.str());
      return false;
    }
    std::ifstream in(log_path_);
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    // Count only the lines of this start (the log file is appended across restarts).
    if (text.find(absl::StrCat("serving the API on port ", api_port_)) != std::string::npos) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (error != nullptr) *error = absl::StrCat("node did not come up within 20 s: ", Log());
  Kill();
  return false;
}

void NodeProcess::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

int NodeProcess::Terminate() {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return status;
}

}  // namespace interco::testing
