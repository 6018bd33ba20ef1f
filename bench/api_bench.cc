// api_bench: load generator for the node's public API over mutual TLS, with reference
// figures measured in the same run on the same machine:
//   - etcd (single member, TLS with client certificates, fsync'd WAL) driven with the
//     same request shapes through its gRPC KV API;
//   - RocksDB's db_bench fillrandom with sync=1: the group-commit limit of the storage
//     engine the node is built on.
//
//   api_bench [--seconds 5] [--clients 32] [--value_bytes 1024] [--paced_rate 1000]
//             [--node_binary PATH] [--data_dir_base /tmp] [--skip_etcd] [--skip_db_bench]
//
// Everything runs on loopback, in a fresh temporary directory that is removed at the
// end. A human-readable table goes to stdout, followed by one JSON object per line with
// the final figures; progress goes to stderr. See docs/BENCHMARKS.md.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/support/channel_arguments.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "etcd_kv.grpc.pb.h"
#include "interco/v1/registry_service.grpc.pb.h"
#include "node/tls/credentials.h"

ABSL_FLAG(int, seconds, 5, "Duration of each load phase, in seconds");
ABSL_FLAG(int, clients, 32, "Concurrent clients (one channel each) for the full-load phases");
ABSL_FLAG(int, value_bytes, 1024, "Size of the string value written");
ABSL_FLAG(int, paced_rate, 1000, "Target rate of the paced-writes phase, in writes/s");
ABSL_FLAG(int, paced_threads, 32,
          "Client threads of the paced-writes phase (enough to keep up with writes of up to "
          "paced_threads / paced_rate seconds)");
ABSL_FLAG(int, key_space, 100000, "Number of distinct record keys (at most 1,000,000)");
ABSL_FLAG(int64_t, max_ops, 2000000, "Cap on the operations of one phase");
ABSL_FLAG(std::string, node_binary, INTERCO_NODE_BINARY, "The interco-node binary");
ABSL_FLAG(std::string, certs_script, INTERCO_SOURCE_DIR "/certs/dev-certs.sh",
          "The dev certificate script (certs/dev-certs.sh)");
ABSL_FLAG(std::string, data_dir_base, "/tmp",
          "Where the temporary directory (certificates, stores, logs) is made");
ABSL_FLAG(std::string, etcd_binary, "/usr/bin/etcd", "The etcd binary");
ABSL_FLAG(bool, skip_etcd, false, "Do not measure etcd");
ABSL_FLAG(std::string, db_bench_binary, "/usr/bin/db_bench", "RocksDB's db_bench binary");
ABSL_FLAG(bool, skip_db_bench, false, "Do not measure RocksDB's db_bench");
ABSL_FLAG(int, db_bench_num, 2000, "db_bench --num: writes per db_bench thread");
ABSL_FLAG(int, db_bench_threads, 32, "db_bench --threads of the group-commit run");
ABSL_FLAG(bool, keep_temp, false, "Keep the temporary directory (for its logs)");

namespace {

using Clock = std::chrono::steady_clock;
using interco::v1::RegistryService;

constexpr char kFederation[] = "interco.bench";
constexpr char kSiren[] = "200046977";
constexpr char kRegistry[] = "bench";
constexpr auto kCallTimeout = std::chrono::seconds(10);

std::atomic<bool> g_interrupted{false};

void OnSignal(int) { g_interrupted.store(true); }

void Progress(const std::string& line) { std::cerr << "api_bench: " << line << std::endl; }

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Tail(const std::string& text, size_t bytes) {
  return text.size() <= bytes ? text : text.substr(text.size() - bytes);
}

// Runs a command line through /bin/sh; returns its exit status and stdout+stderr.
int RunCommand(const std::string& command, std::string* output) {
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) output->append(buf, n);
  const int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

// A loopback port that was free a moment ago.
int FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
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

// VmRSS and VmHWM of a process, in MiB (negative if unreadable).
struct Memory {
  double rss_mib = -1;
  double hwm_mib = -1;
};

Memory ReadMemory(pid_t pid) {
  Memory m;
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    long kib = 0;
    if (std::sscanf(line.c_str(), "VmRSS: %ld kB", &kib) == 1) m.rss_mib = kib / 1024.0;
    if (std::sscanf(line.c_str(), "VmHWM: %ld kB", &kib) == 1) m.hwm_mib = kib / 1024.0;
  }
  return m;
}

// User + system CPU time of a process so far, in seconds (negative if unreadable).
double ProcessCpuSeconds(pid_t pid) {
  const std::string stat = ReadFile(absl::StrCat("/proc/", pid, "/stat"));
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream in(stat.substr(paren + 2));
  // Fields from the third ("state") on; utime and stime are the 14th and 15th.
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double SelfCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// Latency of fdatasync after appending 4 KiB to a file in `dir`: what one durable
// write costs on this disk, at this moment (it varies a lot on shared machines).
struct SyncProbe {
  int samples = 0;
  double p50_ms = 0, p99_ms = 0;
};

SyncProbe ProbeFdatasync(const std::string& dir) {
  SyncProbe p;
  const std::string path = absl::StrCat(dir, "/fdatasync-probe");
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return p;
  const std::string block(4096, 'x');
  std::vector<int64_t> ns;
  const auto stop = Clock::now() + std::chrono::seconds(5);
  for (int i = 0; i < 300 && Clock::now() < stop; ++i) {
    if (write(fd, block.data(), block.size()) != static_cast<ssize_t>(block.size())) break;
    const Clock::time_point t0 = Clock::now();
    if (fdatasync(fd) != 0) break;
    ns.push_back(std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count());
  }
  close(fd);
  unlink(path.c_str());
  std::sort(ns.begin(), ns.end());
  p.samples = static_cast<int>(ns.size());
  if (!ns.empty()) {
    p.p50_ms = static_cast<double>(ns[ns.size() / 2]) / 1e6;
    p.p99_ms = static_cast<double>(ns[std::min(ns.size() - 1, ns.size() * 99 / 100)]) / 1e6;
  }
  return p;
}

// A child process whose stdout and stderr go to a log file. It gets SIGTERM if this
// process dies first.
class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess() { Terminate(); }
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  bool Start(std::vector<std::string> args, const std::string& log_path) {
    log_path_ = log_path;
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const pid_t parent = getpid();
    pid_ = fork();
    if (pid_ < 0) return false;
    if (pid_ == 0) {
      // Only async-signal-safe calls between fork and exec.
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != parent) _exit(126);
      const int fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
      }
      const int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
      execv(argv[0], argv.data());
      _exit(127);
    }
    return true;
  }

  // Whether the process still runs (reaps it if not).
  bool Running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    return true;
  }

  // SIGTERM, then SIGKILL if it has not exited within `grace`. Returns the wait status,
  // or -1 if there was no process.
  int Terminate(std::chrono::seconds grace = std::chrono::seconds(20)) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGTERM);
    const auto deadline = Clock::now() + grace;
    int status = 0;
    while (Clock::now() < deadline) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return status;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ::kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return status;
  }

  pid_t pid() const { return pid_; }
  std::string Log() const { return ReadFile(log_path_); }

 private:
  pid_t pid_ = -1;
  std::string log_path_;
};

std::shared_ptr<grpc::Channel> MtlsChannel(int port, const std::string& tls_dir) {
  auto creds = interco::node::MakeChannelCredentials(interco::node::TlsFiles::InDirectory(tls_dir));
  if (!creds.ok()) {
    Progress(absl::StrCat("client credentials: ", creds.status().ToString()));
    std::exit(1);
  }
  grpc::ChannelArguments args;
  // A private subchannel pool: every client has its own connection and handshake.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port), *creds, args);
}

bool Connect(const std::shared_ptr<grpc::Channel>& channel) {
  return channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(20));
}

void SetDeadline(grpc::ClientContext& ctx) {
  ctx.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
}

std::string KeyOf(int i) { return absl::StrFormat("k%06d", i); }

// A value of `bytes` ASCII letters and digits, distinct for each `serial`.
std::string MakeValue(std::mt19937_64& rng, int bytes, uint64_t serial) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string v(static_cast<size_t>(bytes), 'x');
  for (char& c : v) c = kAlphabet[rng() & 63];
  const std::string tag = absl::StrCat(serial, ":");
  v.replace(0, std::min(tag.size(), v.size()), tag.substr(0, v.size()));
  return v;
}

// ---------------------------------------------------------------------------------------
// Measurement.

struct PhaseResult {
  std::string phase;
  std::string target;
  int clients = 0;
  int64_t ops = 0;
  int64_t errors = 0;
  double seconds = 0;
  double ops_per_s = 0;
  double p50_ms = 0, p99_ms = 0, p999_ms = 0, max_ms = 0;
  std::string first_error;
  // Paced phases.
  double target_rate = 0;
  // Sends whose slot had passed by more than 1 ms when a client thread became free to
  // take them: the generator, not the server, was short of concurrency.
  int64_t backlogged = 0;
  // List phases.
  double records_per_page = 0;
  // CPU seconds used during the phase by the server process and by this process (the
  // clients): on a small machine they share the same cores.
  double server_cpu_s = -1;
  double client_cpu_s = -1;
  bool ran = false;
};

double Percentile(const std::vector<int64_t>& sorted_ns, double q) {
  if (sorted_ns.empty()) return 0;
  size_t i = static_cast<size_t>(std::floor(q * static_cast<double>(sorted_ns.size())));
  i = std::min(i, sorted_ns.size() - 1);
  return static_cast<double>(sorted_ns[i]) / 1e6;
}

// What one thread of a phase collects.
struct ThreadStats {
  std::vector<int64_t> latencies_ns;
  int64_t errors = 0;
  int64_t backlogged = 0;
  int64_t items = 0;  // records returned (list phases)
  std::string first_error;
  Clock::time_point last_done{};
};

void Summarize(std::vector<ThreadStats>& stats, double elapsed_s, PhaseResult& r) {
  std::vector<int64_t> all;
  int64_t items = 0;
  for (ThreadStats& s : stats) {
    all.insert(all.end(), s.latencies_ns.begin(), s.latencies_ns.end());
    r.errors += s.errors;
    r.backlogged += s.backlogged;
    items += s.items;
    if (r.first_error.empty()) r.first_error = s.first_error;
  }
  std::sort(all.begin(), all.end());
  r.ops = static_cast<int64_t>(all.size());
  r.seconds = elapsed_s;
  r.ops_per_s = elapsed_s > 0 ? static_cast<double>(r.ops) / elapsed_s : 0;
  r.p50_ms = Percentile(all, 0.50);
  r.p99_ms = Percentile(all, 0.99);
  r.p999_ms = Percentile(all, 0.999);
  r.max_ms = all.empty() ? 0 : static_cast<double>(all.back()) / 1e6;
  r.records_per_page = r.ops > 0 ? static_cast<double>(items) / static_cast<double>(r.ops) : 0;
  r.ran = true;
}

// One operation of a closed-loop phase, on thread `thread`: returns the call's status
// and may add to `items`.
using Operation = std::function<grpc::Status(int thread, std::mt19937_64& rng, int64_t* items)>;

// `threads` threads each run `op` back to back until `seconds` pass or the phase has
// started `max_ops` operations. Only successful calls count as operations; failed ones
// are counted as errors.
PhaseResult ClosedLoop(const std::string& phase, const std::string& target, pid_t server,
                       int threads, const Operation& op) {
  PhaseResult r;
  r.phase = phase;
  r.target = target;
  r.clients = threads;
  const auto duration = std::chrono::seconds(absl::GetFlag(FLAGS_seconds));
  const int64_t max_ops = absl::GetFlag(FLAGS_max_ops);
  std::atomic<int64_t> started{0};
  std::vector<ThreadStats> stats(static_cast<size_t>(threads));
  const double server_cpu0 = ProcessCpuSeconds(server);
  const double client_cpu0 = SelfCpuSeconds();
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline = start + duration;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      ThreadStats& s = stats[static_cast<size_t>(t)];
      std::mt19937_64 rng(0x5eed0000ULL + static_cast<uint64_t>(t) * 7919 +
                          std::hash<std::string>{}(phase + target));
      s.latencies_ns.reserve(4096);
      while (!g_interrupted.load(std::memory_order_relaxed)) {
        if (started.fetch_add(1, std::memory_order_relaxed) >= max_ops) break;
        const Clock::time_point t0 = Clock::now();
        if (t0 >= deadline) break;
        const grpc::Status status = op(t, rng, &s.items);
        const Clock::time_point t1 = Clock::now();
        if (status.ok()) {
          s.latencies_ns.push_back(
              std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count());
        } else {
          ++s.errors;
          if (s.first_error.empty()) {
            s.first_error = absl::StrCat(status.error_code(), ": ", status.error_message());
          }
          // A failing target must not turn the loop into a busy spin.
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        s.last_done = t1;
      }
    });
  }
  for (std::thread& w : workers) w.join();
  Summarize(stats, Seconds(Clock::now() - start), r);
  const double server_cpu1 = ProcessCpuSeconds(server);
  if (server_cpu0 >= 0 && server_cpu1 >= 0) r.server_cpu_s = server_cpu1 - server_cpu0;
  r.client_cpu_s = SelfCpuSeconds() - client_cpu0;
  return r;
}

// Open loop: operation i is due at start + i / rate, whatever happened to the previous
// ones; `threads` threads take the next due operation, sleep until its time and send it.
// Latency counts from the due time, so that a stall shows as latency of every write
// queued behind it instead of silently lowering the rate.
PhaseResult OpenLoop(const std::string& phase, const std::string& target, pid_t server, int threads,
                     double rate, const Operation& op) {
  PhaseResult r;
  r.phase = phase;
  r.target = target;
  r.clients = threads;
  r.target_rate = rate;
  const int seconds = absl::GetFlag(FLAGS_seconds);
  const int64_t planned =
      std::min<int64_t>(absl::GetFlag(FLAGS_max_ops), static_cast<int64_t>(rate * seconds));
  const auto period = std::chrono::duration<double>(1.0 / rate);
  std::atomic<int64_t> next{0};
  std::vector<ThreadStats> stats(static_cast<size_t>(threads));
  const double server_cpu0 = ProcessCpuSeconds(server);
  const double client_cpu0 = SelfCpuSeconds();
  const Clock::time_point start = Clock::now() + std::chrono::milliseconds(20);
  // Bounded even if the target stalls: sends due after this are abandoned.
  const Clock::time_point hard_stop = start + std::chrono::seconds(2 * seconds + 10);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      ThreadStats& s = stats[static_cast<size_t>(t)];
      std::mt19937_64 rng(0xbacedULL + static_cast<uint64_t>(t) * 104729);
      while (!g_interrupted.load(std::memory_order_relaxed)) {
        const int64_t i = next.fetch_add(1, std::memory_order_relaxed);
        if (i >= planned) break;
        const Clock::time_point due =
            start + std::chrono::duration_cast<Clock::duration>(period * static_cast<double>(i));
        const Clock::time_point taken = Clock::now();
        if (due >= hard_stop || taken >= hard_stop) break;
        if (taken - due > std::chrono::milliseconds(1)) ++s.backlogged;
        std::this_thread::sleep_until(due);
        const grpc::Status status = op(t, rng, &s.items);
        const Clock::time_point done = Clock::now();
        if (status.ok()) {
          s.latencies_ns.push_back(
              std::chrono::duration_cast<std::chrono::nanoseconds>(done - due).count());
        } else {
          ++s.errors;
          if (s.first_error.empty()) {
            s.first_error = absl::StrCat(status.error_code(), ": ", status.error_message());
          }
        }
        s.last_done = done;
      }
    });
  }
  for (std::thread& w : workers) w.join();
  Clock::time_point end = start;
  for (const ThreadStats& s : stats) end = std::max(end, s.last_done);
  Summarize(stats, Seconds(end - start), r);
  const double server_cpu1 = ProcessCpuSeconds(server);
  if (server_cpu0 >= 0 && server_cpu1 >= 0) r.server_cpu_s = server_cpu1 - server_cpu0;
  r.client_cpu_s = SelfCpuSeconds() - client_cpu0;
  return r;
}

// ---------------------------------------------------------------------------------------
// Targets.

std::vector<int> Distinct(std::vector<std::vector<int>>& per_thread) {
  std::vector<int> all;
  for (auto& v : per_thread) all.insert(all.end(), v.begin(), v.end());
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  return all;
}

struct InterCoResults {
  PhaseResult durable, sequential, paced, reads, list;
  Memory idle, end;
  // Cores used by the idle node (after registry creation, before any load).
  double idle_cpu_cores = -1;
  bool ok = false;
};

interco::v1::UpdateRecordRequest UpsertRequest(int key, std::string value) {
  interco::v1::UpdateRecordRequest req;
  interco::v1::Record* rec = req.mutable_record();
  rec->set_name(absl::StrCat("registries/", kRegistry, "/records/", KeyOf(key)));
  (*rec->mutable_fields())["v"].set_string_value(std::move(value));
  (*rec->mutable_fields())["n"].set_int64_value(key);
  req.set_allow_missing(true);
  return req;
}

bool CreateRegistry(RegistryService::Stub& stub, std::string* error) {
  interco::v1::CreateRegistryRequest req;
  req.set_registry_id(kRegistry);
  interco::v1::Registry* reg = req.mutable_registry();
  reg->set_display_name("api_bench");
  interco::v1::FieldSpec* v = reg->mutable_schema()->add_fields();
  v->set_name("v");
  v->set_type(interco::v1::FIELD_TYPE_STRING);
  v->set_max_length(4096);
  interco::v1::FieldSpec* n = reg->mutable_schema()->add_fields();
  n->set_name("n");
  n->set_type(interco::v1::FIELD_TYPE_INT64);
  n->set_indexed(true);
  grpc::ClientContext ctx;
  SetDeadline(ctx);
  ctx.set_wait_for_ready(true);
  interco::v1::Registry out;
  grpc::Status s = stub.CreateRegistry(&ctx, req, &out);
  if (!s.ok()) *error = absl::StrCat(s.error_code(), ": ", s.error_message());
  return s.ok();
}

// Stubs of `n` clients, each on its own connected channel.
template <typename Stub, typename Service>
std::vector<std::unique_ptr<Stub>> ConnectClients(int n, int port, const std::string& tls_dir,
                                                  std::string* error) {
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < n; ++i) channels.push_back(MtlsChannel(port, tls_dir));
  std::vector<std::unique_ptr<Stub>> stubs;
  for (auto& ch : channels) {
    if (!Connect(ch)) {
      *error = "a client channel did not connect within 20 s";
      return {};
    }
    stubs.push_back(Service::NewStub(ch));
  }
  return stubs;
}

InterCoResults RunInterco(const std::string& dir, const std::string& certs) {
  InterCoResults out;
  const int clients = absl::GetFlag(FLAGS_clients);
  const int value_bytes = absl::GetFlag(FLAGS_value_bytes);
  const int key_space = absl::GetFlag(FLAGS_key_space);
  const int api_port = FreePort();
  int health_port = FreePort();
  while (health_port == api_port) health_port = FreePort();
  const std::string data_dir = absl::StrCat(dir, "/node-data");
  const std::string log_path = absl::StrCat(dir, "/node.log");

  ChildProcess node;
  Progress(absl::StrCat("starting ", absl::GetFlag(FLAGS_node_binary), " on 127.0.0.1:", api_port));
  if (!node.Start(
          {absl::GetFlag(FLAGS_node_binary), absl::StrCat("--authority=", kSiren),
           absl::StrCat("--display_name=api_bench"), absl::StrCat("--federation=", kFederation),
           absl::StrCat("--data_dir=", data_dir),
           absl::StrCat("--tls_dir=", certs, "/nodes/", kSiren),
           absl::StrCat("--listen=127.0.0.1:", api_port),
           absl::StrCat("--health_listen=127.0.0.1:", health_port), "--durability=sync"},
          log_path)) {
    Progress("fork failed");
    return out;
  }
  // The node binds its ports before it logs this line.
  const std::string serving = absl::StrCat("serving the API on port ", api_port);
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  bool up = false;
  while (Clock::now() < deadline && !g_interrupted.load()) {
    if (!node.Running()) break;
    if (node.Log().find(serving) != std::string::npos) {
      up = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!up) {
    Progress(absl::StrCat("the node did not come up; its log:\n", Tail(node.Log(), 4000)));
    return out;
  }

  const std::string app_tls = absl::StrCat(certs, "/clients/", kSiren, "/app");
  const std::string admin_tls = absl::StrCat(certs, "/clients/", kSiren, "/admin");
  {
    auto admin = RegistryService::NewStub(MtlsChannel(api_port, admin_tls));
    std::string error;
    if (!CreateRegistry(*admin, &error)) {
      Progress(
          absl::StrCat("CreateRegistry failed: ", error, "\nnode log:\n", Tail(node.Log(), 4000)));
      return out;
    }
  }
  {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const double cpu0 = ProcessCpuSeconds(node.pid());
    const Clock::time_point t0 = Clock::now();
    std::this_thread::sleep_for(std::chrono::seconds(1));
    const double cpu1 = ProcessCpuSeconds(node.pid());
    if (cpu0 >= 0 && cpu1 >= 0) out.idle_cpu_cores = (cpu1 - cpu0) / Seconds(Clock::now() - t0);
  }
  out.idle = ReadMemory(node.pid());
  Progress(absl::StrFormat("node idle: VmRSS %.1f MiB, VmHWM %.1f MiB", out.idle.rss_mib,
                           out.idle.hwm_mib));

  std::string error;
  auto stubs = ConnectClients<RegistryService::Stub, RegistryService>(
      std::max({clients, absl::GetFlag(FLAGS_paced_threads), 1}), api_port, app_tls, &error);
  if (stubs.empty()) {
    Progress(error);
    return out;
  }
  std::atomic<uint64_t> serial{0};
  auto upsert = [&](int t, std::mt19937_64& rng, std::vector<int>* written) {
    const int key = static_cast<int>(rng() % static_cast<uint64_t>(key_space));
    interco::v1::UpdateRecordRequest req =
        UpsertRequest(key, MakeValue(rng, value_bytes, serial.fetch_add(1)));
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    interco::v1::Record resp;
    grpc::Status s = stubs[static_cast<size_t>(t)]->UpdateRecord(&ctx, req, &resp);
    if (s.ok() && written != nullptr) written->push_back(key);
    return s;
  };

  // (a) Durable writes at full load.
  Progress(absl::StrCat("interco: durable writes, ", clients, " clients"));
  std::vector<std::vector<int>> written(static_cast<size_t>(clients));
  out.durable = ClosedLoop("durable_writes", "interco", node.pid(), clients,
                           [&](int t, std::mt19937_64& rng, int64_t*) {
                             return upsert(t, rng, &written[static_cast<size_t>(t)]);
                           });
  const std::vector<int> keys = Distinct(written);

  // (b) Sequential writes.
  Progress("interco: sequential writes, 1 client");
  out.sequential =
      ClosedLoop("sequential_writes", "interco", node.pid(), 1,
                 [&](int t, std::mt19937_64& rng, int64_t*) { return upsert(t, rng, nullptr); });

  // (c) Paced writes.
  const int paced_threads = std::max(1, absl::GetFlag(FLAGS_paced_threads));
  const double rate = std::max(1, absl::GetFlag(FLAGS_paced_rate));
  Progress(absl::StrCat("interco: paced writes at ", rate, "/s, ", paced_threads, " threads"));
  out.paced =
      OpenLoop("paced_writes", "interco", node.pid(), paced_threads, rate,
               [&](int t, std::mt19937_64& rng, int64_t*) { return upsert(t, rng, nullptr); });

  // (d) Point reads of the keys written in (a).
  if (!keys.empty()) {
    Progress(absl::StrCat("interco: point reads, ", clients, " clients, ", keys.size(), " keys"));
    out.reads = ClosedLoop("point_reads", "interco", node.pid(), clients,
                           [&](int t, std::mt19937_64& rng, int64_t* items) {
                             interco::v1::GetRecordRequest req;
                             req.set_name(absl::StrCat("registries/", kRegistry, "/records/",
                                                       KeyOf(keys[rng() % keys.size()])));
                             grpc::ClientContext ctx;
                             SetDeadline(ctx);
                             interco::v1::Record resp;
                             grpc::Status s =
                                 stubs[static_cast<size_t>(t)]->GetRecord(&ctx, req, &resp);
                             if (s.ok()) ++*items;
                             return s;
                           });
  }

  // (e) List pages: the first page of 100 records under a random prefix. Keys are
  // "k" + 6 digits below the key space, so with the default 100k keys "k0" is common to
  // all; the two characters after it pick 1/100 of the key space.
  Progress(absl::StrCat("interco: list pages, ", clients, " clients"));
  out.list = ClosedLoop(
      "list_pages", "interco", node.pid(), clients,
      [&](int t, std::mt19937_64& rng, int64_t* items) {
        interco::v1::ListRecordsRequest req;
        req.set_parent(absl::StrCat("registries/", kRegistry));
        req.set_page_size(100);
        const std::string key = KeyOf(static_cast<int>(rng() % static_cast<uint64_t>(key_space)));
        req.set_id_prefix(key.substr(0, 4));
        grpc::ClientContext ctx;
        SetDeadline(ctx);
        interco::v1::ListRecordsResponse resp;
        grpc::Status s = stubs[static_cast<size_t>(t)]->ListRecords(&ctx, req, &resp);
        if (s.ok()) *items += resp.records_size();
        return s;
      });

  out.end = ReadMemory(node.pid());
  Progress(absl::StrFormat("node after load: VmRSS %.1f MiB, VmHWM %.1f MiB", out.end.rss_mib,
                           out.end.hwm_mib));
  stubs.clear();
  const int status = node.Terminate();
  if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    Progress(absl::StrCat("the node did not exit cleanly (wait status ", status, "); log tail:\n",
                          Tail(node.Log(), 2000)));
  }
  out.ok = true;
  return out;
}

struct EtcdResults {
  PhaseResult durable, sequential, reads;
  std::string note;
  bool ok = false;
};

EtcdResults RunEtcd(const std::string& dir, const std::string& certs) {
  EtcdResults out;
  const std::string binary = absl::GetFlag(FLAGS_etcd_binary);
  if (access(binary.c_str(), X_OK) != 0) {
    out.note = absl::StrCat("etcd not found at ", binary, ": no etcd figures, no ratios");
    return out;
  }
  const int clients = absl::GetFlag(FLAGS_clients);
  const int value_bytes = absl::GetFlag(FLAGS_value_bytes);
  const int key_space = absl::GetFlag(FLAGS_key_space);
  const int client_port = FreePort();
  int peer_port = FreePort();
  while (peer_port == client_port) peer_port = FreePort();
  const std::string node_tls = absl::StrCat(certs, "/nodes/", kSiren);
  const std::string client_url = absl::StrCat("https://127.0.0.1:", client_port);
  const std::string peer_url = absl::StrCat("http://127.0.0.1:", peer_port);
  ChildProcess etcd;
  Progress(absl::StrCat("starting ", binary, " on ", client_url));
  if (!etcd.Start(
          {binary, "--name=bench", absl::StrCat("--data-dir=", dir, "/etcd-data"),
           absl::StrCat("--listen-client-urls=", client_url),
           absl::StrCat("--advertise-client-urls=", client_url),
           absl::StrCat("--listen-peer-urls=", peer_url),
           absl::StrCat("--initial-advertise-peer-urls=", peer_url),
           absl::StrCat("--initial-cluster=bench=", peer_url), "--initial-cluster-state=new",
           absl::StrCat("--cert-file=", node_tls, "/tls.crt"),
           absl::StrCat("--key-file=", node_tls, "/tls.key"),
           absl::StrCat("--trusted-ca-file=", node_tls, "/ca.crt"), "--client-cert-auth",
           "--logger=zap", "--log-level=warn"},
          absl::StrCat(dir, "/etcd.log"))) {
    out.note = "fork failed for etcd";
    return out;
  }
  const std::string app_tls = absl::StrCat(certs, "/clients/", kSiren, "/app");
  {
    // Ready once a Range call succeeds.
    auto probe = etcdserverpb::KV::NewStub(MtlsChannel(client_port, app_tls));
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    bool up = false;
    while (Clock::now() < deadline && !g_interrupted.load()) {
      if (!etcd.Running()) break;
      etcdserverpb::RangeRequest req;
      req.set_key("probe");
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(1));
      etcdserverpb::RangeResponse resp;
      if (probe->Range(&ctx, req, &resp).ok()) {
        up = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (!up) {
      out.note = absl::StrCat("etcd did not come up; its log:\n", Tail(etcd.Log(), 4000));
      return out;
    }
  }
  std::string error;
  auto stubs = ConnectClients<etcdserverpb::KV::Stub, etcdserverpb::KV>(
      std::max(clients, 1), client_port, app_tls, &error);
  if (stubs.empty()) {
    out.note = error;
    return out;
  }
  std::atomic<uint64_t> serial{0};
  auto put = [&](int t, std::mt19937_64& rng, std::vector<int>* written) {
    const int key = static_cast<int>(rng() % static_cast<uint64_t>(key_space));
    etcdserverpb::PutRequest req;
    req.set_key(KeyOf(key));
    req.set_value(MakeValue(rng, value_bytes, serial.fetch_add(1)));
    grpc::ClientContext ctx;
    SetDeadline(ctx);
    etcdserverpb::PutResponse resp;
    grpc::Status s = stubs[static_cast<size_t>(t)]->Put(&ctx, req, &resp);
    if (s.ok() && written != nullptr) written->push_back(key);
    return s;
  };

  Progress(absl::StrCat("etcd: durable puts, ", clients, " clients"));
  std::vector<std::vector<int>> written(static_cast<size_t>(clients));
  out.durable = ClosedLoop("durable_writes", "etcd", etcd.pid(), clients,
                           [&](int t, std::mt19937_64& rng, int64_t*) {
                             return put(t, rng, &written[static_cast<size_t>(t)]);
                           });
  const std::vector<int> keys = Distinct(written);

  Progress("etcd: sequential puts, 1 client");
  out.sequential =
      ClosedLoop("sequential_writes", "etcd", etcd.pid(), 1,
                 [&](int t, std::mt19937_64& rng, int64_t*) { return put(t, rng, nullptr); });

  if (!keys.empty()) {
    Progress(absl::StrCat("etcd: serializable point reads, ", clients, " clients"));
    out.reads = ClosedLoop("point_reads", "etcd", etcd.pid(), clients,
                           [&](int t, std::mt19937_64& rng, int64_t* items) {
                             etcdserverpb::RangeRequest req;
                             req.set_key(KeyOf(keys[rng() % keys.size()]));
                             req.set_serializable(true);
                             grpc::ClientContext ctx;
                             SetDeadline(ctx);
                             etcdserverpb::RangeResponse resp;
                             grpc::Status s =
                                 stubs[static_cast<size_t>(t)]->Range(&ctx, req, &resp);
                             if (s.ok() && resp.kvs_size() != 1) {
                               return grpc::Status(grpc::StatusCode::NOT_FOUND, "key not found");
                             }
                             if (s.ok()) ++*items;
                             return s;
                           });
  }
  stubs.clear();
  etcd.Terminate();
  out.ok = true;
  return out;
}

struct DbBenchResult {
  int threads = 0;
  int64_t num = 0;
  double ops_per_s = 0;
  double micros_per_op = 0;
  bool ok = false;
};

DbBenchResult RunDbBench(const std::string& dir, int threads, std::string* note) {
  DbBenchResult r;
  r.threads = threads;
  r.num = absl::GetFlag(FLAGS_db_bench_num);
  const std::string binary = absl::GetFlag(FLAGS_db_bench_binary);
  if (access(binary.c_str(), X_OK) != 0) {
    *note = absl::StrCat("db_bench not found at ", binary);
    return r;
  }
  const std::string db = absl::StrCat(dir, "/db_bench-", threads);
  // `timeout` bounds the run even on a pathologically slow disk.
  const int limit_s = std::max(120, 20 * absl::GetFlag(FLAGS_seconds));
  const std::string cmd =
      absl::StrCat("timeout -s KILL ", limit_s, " ", ShellQuote(binary),
                   " --benchmarks=fillrandom --sync=1 --threads=", threads,
                   " --value_size=", absl::GetFlag(FLAGS_value_bytes), " --num=", r.num,
                   " --db=", ShellQuote(db), " --use_existing_db=0");
  Progress(absl::StrCat("db_bench: fillrandom sync=1 threads=", threads, " num=", r.num));
  std::string output;
  const int rc = RunCommand(cmd, &output);
  // "fillrandom   :    1234.567 micros/op 810 ops/sec 2.468 seconds 2000 operations; ..."
  static const std::regex kLine(R"(fillrandom\s*:\s*([0-9.]+) micros/op\s+([0-9.]+) ops/sec)");
  std::smatch m;
  if (rc != 0 || !std::regex_search(output, m, kLine)) {
    *note =
        absl::StrCat("db_bench threads=", threads, " failed (exit ", rc, "): ", Tail(output, 1500));
    return r;
  }
  r.micros_per_op = std::stod(m[1].str());
  r.ops_per_s = std::stod(m[2].str());
  r.ok = true;
  std::error_code ec;
  std::filesystem::remove_all(db, ec);
  return r;
}

// ---------------------------------------------------------------------------------------
// Report.

std::string Num(double v, int decimals) {
  if (!std::isfinite(v)) return "null";
  return absl::StrFormat("%.*f", decimals, v);
}

void PrintRow(const PhaseResult& r) {
  if (!r.ran) return;
  std::string extra;
  if (r.target_rate > 0) {
    extra = absl::StrFormat("target %.0f/s, %d backlogged sends", r.target_rate, r.backlogged);
  }
  if (r.phase == "list_pages") extra = absl::StrFormat("%.1f records/page", r.records_per_page);
  if (r.errors > 0) {
    extra += absl::StrCat(extra.empty() ? "" : "; ", r.errors, " errors (", r.first_error, ")");
  }
  if (r.target_rate > 0 && r.backlogged * 100 > r.ops) {
    extra += "; generator short of threads: raise --paced_threads";
  }
  std::string cpu;
  if (r.server_cpu_s >= 0 && r.seconds > 0 && r.ops > 0) {
    cpu = absl::StrFormat("%8.0f %6.2f %6.2f", 1e6 * r.server_cpu_s / static_cast<double>(r.ops),
                          r.server_cpu_s / r.seconds, r.client_cpu_s / r.seconds);
  }
  std::cout << absl::StrFormat("%-9s %-18s %7d %9d %11.0f %9.3f %9.3f %9.3f %9.3f %-22s  %s\n",
                               r.target, r.phase, r.clients, r.ops, r.ops_per_s, r.p50_ms, r.p99_ms,
                               r.p999_ms, r.max_ms, cpu, extra);
}

void PrintJson(const PhaseResult& r) {
  if (!r.ran) return;
  std::string line =
      absl::StrCat(R"({"bench":"api","phase":")", r.phase, R"(","target":")", r.target,
                   R"(","clients":)", r.clients, R"(,"ops":)", r.ops, R"(,"errors":)", r.errors,
                   R"(,"seconds":)", Num(r.seconds, 3), R"(,"ops_per_s":)", Num(r.ops_per_s, 1));
  if (r.target_rate > 0) {
    absl::StrAppend(&line, R"(,"target_rate":)", Num(r.target_rate, 0), R"(,"backlogged_sends":)",
                    r.backlogged);
  }
  if (r.phase == "list_pages") {
    absl::StrAppend(&line, R"(,"records_per_page":)", Num(r.records_per_page, 1));
  }
  absl::StrAppend(&line, R"(,"p50_ms":)", Num(r.p50_ms, 3), R"(,"p99_ms":)", Num(r.p99_ms, 3),
                  R"(,"p999_ms":)", Num(r.p999_ms, 3), R"(,"max_ms":)", Num(r.max_ms, 3));
  if (r.server_cpu_s >= 0) {
    absl::StrAppend(&line, R"(,"server_cpu_s":)", Num(r.server_cpu_s, 2), R"(,"client_cpu_s":)",
                    Num(r.client_cpu_s, 2));
    if (r.ops > 0) {
      absl::StrAppend(&line, R"(,"server_cpu_us_per_op":)",
                      Num(1e6 * r.server_cpu_s / static_cast<double>(r.ops), 1));
    }
  }
  line += "}";
  std::cout << line << "\n";
}

// A ratio line; `goal_min` <= 0 means the ratio has no goal.
void PrintRatio(const std::string& name, double num, double den, double goal_min) {
  if (!(num > 0 && den > 0)) return;
  std::string line =
      absl::StrCat(R"({"bench":"api","ratio":")", name, R"(","value":)", Num(num / den, 3));
  if (goal_min > 0) absl::StrAppend(&line, R"(,"goal_min":)", Num(goal_min, 2));
  std::cout << line << "}\n";
}

std::string Verdict(bool met) { return met ? "met" : "NOT MET"; }

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "load generator for the interco node API, with etcd and db_bench as references.\n"
      "  api_bench [--seconds 5] [--clients 32] [--skip_etcd] [--skip_db_bench]");
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_seconds) < 1 || absl::GetFlag(FLAGS_clients) < 1 ||
      absl::GetFlag(FLAGS_value_bytes) < 1 || absl::GetFlag(FLAGS_value_bytes) > 4096 ||
      absl::GetFlag(FLAGS_key_space) < 1 || absl::GetFlag(FLAGS_key_space) > 1000000 ||
      absl::GetFlag(FLAGS_paced_rate) < 1 || absl::GetFlag(FLAGS_max_ops) < 1) {
    std::cerr << "api_bench: --seconds, --clients, --paced_rate and --max_ops must be positive, "
                 "--value_bytes in [1, 4096], --key_space in [1, 1000000]\n";
    return 2;
  }
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::string base = absl::GetFlag(FLAGS_data_dir_base);
  if (base.empty()) base = "/tmp";
  std::string templ = absl::StrCat(base, "/interco-api-bench-XXXXXX");
  const char* made = mkdtemp(templ.data());
  if (made == nullptr) {
    std::cerr << "api_bench: cannot make a temporary directory under " << base << "\n";
    return 1;
  }
  const std::string dir = made;
  const auto remove_dir = [&] {
    if (absl::GetFlag(FLAGS_keep_temp)) {
      Progress(absl::StrCat("kept ", dir));
      return;
    }
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  };

  const std::string certs = absl::StrCat(dir, "/certs");
  {
    std::string output;
    const std::string cmd = absl::StrCat("bash ", ShellQuote(absl::GetFlag(FLAGS_certs_script)),
                                         " ", ShellQuote(certs), " ", kFederation, " ", kSiren);
    if (RunCommand(cmd, &output) != 0) {
      std::cerr << "api_bench: dev-certs.sh failed:\n" << output;
      remove_dir();
      return 1;
    }
  }

  const SyncProbe disk_start = ProbeFdatasync(dir);
  Progress(absl::StrFormat("disk: fdatasync of a 4 KiB append: p50 %.3f ms, p99 %.3f ms",
                           disk_start.p50_ms, disk_start.p99_ms));
  InterCoResults node = RunInterco(dir, certs);
  if (!node.ok) {
    remove_dir();
    return 1;
  }

  EtcdResults etcd;
  if (absl::GetFlag(FLAGS_skip_etcd)) {
    etcd.note = "etcd skipped (--skip_etcd)";
  } else if (!g_interrupted.load()) {
    etcd = RunEtcd(dir, certs);
  }
  if (!etcd.note.empty()) Progress(etcd.note);

  DbBenchResult group, single;
  std::string db_note;
  if (absl::GetFlag(FLAGS_skip_db_bench)) {
    db_note = "db_bench skipped (--skip_db_bench)";
  } else if (!g_interrupted.load()) {
    group = RunDbBench(dir, absl::GetFlag(FLAGS_db_bench_threads), &db_note);
    if (group.ok && !g_interrupted.load()) single = RunDbBench(dir, 1, &db_note);
  }
  if (!db_note.empty()) Progress(db_note);
  const SyncProbe disk_end = ProbeFdatasync(dir);
  remove_dir();

  // Human-readable table.
  std::cout << absl::StrFormat("\n%-9s %-18s %7s %9s %11s %9s %9s %9s %9s %8s %6s %6s\n", "target",
                               "phase", "clients", "ops", "ops/s", "p50 ms", "p99 ms", "p99.9 ms",
                               "max ms", "srv us/op", "srv cpu", "cli cpu");
  for (const PhaseResult* r : {&node.durable, &node.sequential, &node.paced, &node.reads,
                               &node.list, &etcd.durable, &etcd.sequential, &etcd.reads}) {
    PrintRow(*r);
  }
  for (const DbBenchResult* d : {&group, &single}) {
    if (!d->ok) continue;
    std::cout << absl::StrFormat(
        "%-9s %-18s %7d %9d %11.0f %9s  (fillrandom sync=1, %.0f us/op)\n", "db_bench",
        d->threads == 1 ? "sequential_writes" : "durable_writes", d->threads, d->threads * d->num,
        d->ops_per_s, "", d->micros_per_op);
  }
  std::cout << "(srv us/op: server CPU time per operation; srv cpu, cli cpu: cores used on "
               "average by the server and by api_bench's clients)\n";
  std::cout << absl::StrFormat(
      "\ndisk: fdatasync of a 4 KiB append: p50 %.3f / p99 %.3f ms at "
      "the start, p50 %.3f / p99 %.3f ms at the end\n",
      disk_start.p50_ms, disk_start.p99_ms, disk_end.p50_ms, disk_end.p99_ms);
  std::cout << absl::StrFormat(
      "node memory: idle VmRSS %.1f MiB (VmHWM %.1f); after load VmRSS "
      "%.1f MiB, peak VmHWM %.1f MiB\n",
      node.idle.rss_mib, node.idle.hwm_mib, node.end.rss_mib, node.end.hwm_mib);
  std::cout << absl::StrFormat("node CPU when idle: %.3f cores\n", node.idle_cpu_cores);

  // Goals.
  std::cout << "\ngoals:\n";
  if (etcd.ok && etcd.durable.ops_per_s > 0) {
    const double x = node.durable.ops_per_s / etcd.durable.ops_per_s;
    std::cout << absl::StrFormat("  durable writes >= 5x etcd:                 %6.2fx  %s\n", x,
                                 Verdict(x >= 5));
  } else {
    std::cout << "  durable writes >= 5x etcd:                 (no etcd figures)\n";
  }
  if (group.ok) {
    const double x = node.durable.ops_per_s / group.ops_per_s;
    std::cout << absl::StrFormat("  durable writes >= 50%% of RocksDB limit:    %5.1f%%  %s\n",
                                 100 * x, Verdict(x >= 0.5));
  } else {
    std::cout << "  durable writes >= 50% of RocksDB limit:    (no db_bench figures)\n";
  }
  if (etcd.ok && etcd.reads.ops_per_s > 0) {
    const double x = node.reads.ops_per_s / etcd.reads.ops_per_s;
    std::cout << absl::StrFormat("  point reads >= 3x etcd serializable gets:  %6.2fx  %s\n", x,
                                 Verdict(x >= 3));
  } else {
    std::cout << "  point reads >= 3x etcd serializable gets:  (no etcd figures)\n";
  }
  std::cout << absl::StrFormat(
      "  p99 write latency <= 2 ms at %d/s:       %6.3f ms  %s\n", absl::GetFlag(FLAGS_paced_rate),
      node.paced.p99_ms,
      Verdict(node.paced.ran && node.paced.errors == 0 && node.paced.p99_ms <= 2.0));
  std::cout << absl::StrFormat("  idle RSS <= 64 MiB:                        %6.1f MiB %s\n",
                               node.idle.rss_mib, Verdict(node.idle.rss_mib <= 64));
  std::cout << "\n";

  // Final figures, one JSON object per line.
  for (const PhaseResult* r : {&node.durable, &node.sequential, &node.paced, &node.reads,
                               &node.list, &etcd.durable, &etcd.sequential, &etcd.reads}) {
    PrintJson(*r);
  }
  for (const DbBenchResult* d : {&group, &single}) {
    if (!d->ok) continue;
    std::cout << absl::StrCat(
        R"({"bench":"api","phase":")", d->threads == 1 ? "sequential_writes" : "durable_writes",
        R"(","target":"rocksdb_db_bench","benchmark":"fillrandom_sync","threads":)", d->threads,
        R"(,"ops":)", d->threads * d->num, R"(,"ops_per_s":)", Num(d->ops_per_s, 1),
        R"(,"micros_per_op":)", Num(d->micros_per_op, 3), "}\n");
  }
  if (etcd.ok) {
    PrintRatio("durable_writes_vs_etcd", node.durable.ops_per_s, etcd.durable.ops_per_s, 5);
    PrintRatio("sequential_writes_vs_etcd", node.sequential.ops_per_s, etcd.sequential.ops_per_s,
               0);
    PrintRatio("point_reads_vs_etcd_serializable", node.reads.ops_per_s, etcd.reads.ops_per_s, 3);
  }
  if (group.ok) {
    PrintRatio("durable_writes_vs_rocksdb_group_commit", node.durable.ops_per_s, group.ops_per_s,
               0.5);
  }
  if (single.ok) {
    PrintRatio("sequential_writes_vs_rocksdb_sync", node.sequential.ops_per_s, single.ops_per_s, 0);
  }
  std::cout << absl::StrCat(R"({"bench":"api","metric":"idle_rss_mib","value":)",
                            Num(node.idle.rss_mib, 1), R"(,"goal_max":64})", "\n");
  std::cout << absl::StrCat(R"({"bench":"api","metric":"peak_rss_mib","value":)",
                            Num(node.end.hwm_mib, 1), "}\n");
  std::cout << absl::StrCat(R"({"bench":"api","metric":"end_rss_mib","value":)",
                            Num(node.end.rss_mib, 1), "}\n");
  std::cout << absl::StrCat(R"({"bench":"api","metric":"idle_cpu_cores","value":)",
                            Num(node.idle_cpu_cores, 3), "}\n");
  for (const auto& [when, probe] : {std::pair{"start", &disk_start}, std::pair{"end", &disk_end}}) {
    if (probe->samples == 0) continue;
    std::cout << absl::StrCat(R"({"bench":"api","metric":"fdatasync_4k_ms","when":")", when,
                              R"(","p50_ms":)", Num(probe->p50_ms, 3), R"(,"p99_ms":)",
                              Num(probe->p99_ms, 3), "}\n");
  }
  std::cout.flush();
  return g_interrupted.load() ? 130 : 0;
}
