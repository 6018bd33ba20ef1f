// trust_bench: what signed provenance and mutual TLS cost.
//
//   trust_bench [--seconds 3] [--writers 4] [--batches 4000] [--handshakes 300]
//
// Phases, each printing a line for humans then one JSON object per line:
//   ed25519    sign and verify rates of batch-header-sized messages through the node's
//              code, and `openssl speed ed25519` measured in the same run as the peer;
//   write      local writes on a real store with batch signing on and off, alternated
//              (off, on, off, on) in the same run; async and sync durability;
//   apply      remote batches decoded, verified and applied on a real store, against
//              the same without verification; batches of 1 and of 64 changes;
//   handshake  new mutual-TLS connections per second on a node's API port (a node
//              process on loopback), each followed by one call, against calls on an
//              established connection.
// Certificates are the dev PKI made by certs/dev-certs.sh (build/test-certs).
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "interco/v1/registry_service.grpc.pb.h"
#include "node/crypto/ed25519.h"
#include "node/crypto/sha256.h"
#include "node/crypto/x509.h"
#include "node/storage/record_store.h"
#include "node/system_clock.h"
#include "node/tls/credentials.h"
#include "node/trust/batch_signer.h"
#include "node/trust/certificate_store.h"
#include "replication/base/limits.h"
#include "replication/change_log.h"
#include "replication/hlc.h"
#include "replication/ids.h"
#include "tests/testing/test_env.h"

ABSL_FLAG(int, seconds, 3, "Duration of each timed write phase");
ABSL_FLAG(int, writers, 4, "Concurrent local writers in the write phase");
ABSL_FLAG(int, batches, 4000, "Remote batches per apply phase");
ABSL_FLAG(int, handshakes, 300, "New connections in the handshake phase");
ABSL_FLAG(std::string, dir, "/tmp", "Where the temporary stores go");
ABSL_FLAG(std::string, phases, "ed25519,write,apply,handshake", "Phases to run, comma-separated");

namespace {

using Clock = std::chrono::steady_clock;
using interco::testing::kFederation;
using interco::testing::kLyon;

double Seconds(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

struct Trust {
  std::unique_ptr<interco::node::CertificateStore> certs;
  std::unique_ptr<interco::node::BatchSigner> signer;
};

Trust MakeTrust(const std::string& siren, interco::node::RecordStore* store) {
  const std::string tls = interco::testing::NodeTlsDir(siren);
  interco::node::CertificateStoreOptions co;
  co.federation = kFederation;
  co.ca_file = tls + "/ca.crt";
  co.store = store;
  Trust t;
  t.certs = *interco::node::CertificateStore::Open(co);
  t.signer = *interco::node::BatchSigner::Open(interco::node::TlsFiles::InDirectory(tls), *t.certs);
  return t;
}

// `openssl speed ed25519`: (sign/s, verify/s), or zeros if it is not there.
std::pair<double, double> OpensslSpeed() {
  FILE* p = ::popen("openssl speed -seconds 2 ed25519 2>/dev/null", "r");
  if (p == nullptr) return {0, 0};
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
  ::pclose(p);
  std::smatch m;
  if (std::regex_search(out, m, std::regex(R"(Ed25519\)\s+\S+s\s+\S+s\s+([0-9.]+)\s+([0-9.]+))"))) {
    return {std::stod(m[1]), std::stod(m[2])};
  }
  return {0, 0};
}

void Ed25519Phase() {
  Trust t = MakeTrust(kLyon, nullptr);
  const std::string key_id = t.signer->KeyId();
  // A batch header is ~150 bytes; the signed message adds the domain label.
  const std::string message = interco::replication::SignedMessage(key_id, 0, std::string(150, 'h'));
  const uint32_t origin = *interco::replication::SirenToOrigin(kLyon);
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  constexpr int kOps = 20000;
  std::string sig;
  auto t0 = Clock::now();
  for (int i = 0; i < kOps; ++i) sig = *t.signer->Sign(key_id, message);
  const double sign_s = static_cast<double>(kOps) / Seconds(t0);
  t0 = Clock::now();
  int ok = 0;
  for (int i = 0; i < kOps; ++i) ok += t.certs->Verify(origin, key_id, now, message, sig).ok();
  const double verify_s = static_cast<double>(kOps) / Seconds(t0);
  const auto [peer_sign, peer_verify] = OpensslSpeed();
  std::printf("ed25519: sign %.0f/s, verify %.0f/s (%d ok); openssl speed: sign %.0f/s, "
              "verify %.0f/s; ratio %.2f / %.2f\n",
              sign_s, verify_s, ok, peer_sign, peer_verify, peer_sign > 0 ? sign_s / peer_sign : 0,
              peer_verify > 0 ? verify_s / peer_verify : 0);
  std::printf("{\"bench\":\"trust\",\"phase\":\"ed25519\",\"sign_per_s\":%.0f,\"verify_per_s\":%.0f,"
              "\"openssl_sign_per_s\":%.0f,\"openssl_verify_per_s\":%.0f,\"sign_ratio\":%.3f,"
              "\"verify_ratio\":%.3f}\n",
              sign_s, verify_s, peer_sign, peer_verify, peer_sign > 0 ? sign_s / peer_sign : 0,
              peer_verify > 0 ? verify_s / peer_verify : 0);
}

interco::v1::Registry BenchRegistry() {
  interco::v1::Registry def;
  auto* f = def.mutable_schema()->add_fields();
  f->set_name("nom");
  f->set_type(interco::v1::FIELD_TYPE_STRING);
  f = def.mutable_schema()->add_fields();
  f->set_name("commune");
  f->set_type(interco::v1::FIELD_TYPE_STRING);
  return def;
}

std::unique_ptr<interco::node::RecordStore> OpenStore(const std::string& dir, bool sync,
                                                      interco::replication::Clock& clock) {
  std::filesystem::remove_all(dir);
  interco::node::RecordStoreOptions o;
  o.path = dir;
  o.authority = kLyon;
  o.sync = sync;
  o.clock = &clock;
  return *interco::node::RecordStore::Open(o);
}

// Local writes/s with `writers` threads for `seconds`, and their p99 latency.
std::pair<double, double> WriteRun(bool sign, bool sync, int run) {
  interco::node::SystemClock clock;
  const std::string dir = absl::StrCat(absl::GetFlag(FLAGS_dir), "/interco-trust-bench-", ::getpid(), "-", run);
  auto store = OpenStore(dir, sync, clock);
  Trust t = MakeTrust(kLyon, store.get());
  if (sign) store->SetSigner(t.signer.get());
  const interco::replication::Principal me{kFederation, kLyon, ""};
  (void)store->CreateRegistry("equipements", BenchRegistry(), me);
  std::atomic<bool> stop{false};
  std::atomic<int64_t> done{0};
  std::vector<std::vector<double>> lat(static_cast<size_t>(absl::GetFlag(FLAGS_writers)));
  std::vector<std::thread> threads;
  const auto t0 = Clock::now();
  for (size_t w = 0; w < lat.size(); ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; !stop; ++i) {
        interco::replication::LocalWrite lw;
        lw.kind = interco::replication::LocalWrite::Kind::kUpdate;
        lw.allow_missing = true;
        lw.fields["nom"].set_string_value(absl::StrCat("Gymnase ", i));
        lw.fields["commune"].set_string_value("01053");
        const auto s0 = Clock::now();
        if (store->Write("equipements", absl::StrCat("w", w, "-", i % 5000), lw, me).ok()) {
          lat[w].push_back(Seconds(s0) * 1000);
          done++;
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(absl::GetFlag(FLAGS_seconds)));
  stop = true;
  for (auto& th : threads) th.join();
  const double rate = static_cast<double>(done.load()) / Seconds(t0);
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  store.reset();
  std::filesystem::remove_all(dir);
  return {rate, Percentile(all, 0.99)};
}

void WritePhase() {
  int run = 0;
  for (bool sync : {false, true}) {
    double off = 0, on = 0, off_p99 = 0, on_p99 = 0;
    for (int rep = 0; rep < 2; ++rep) {
      auto [r0, p0] = WriteRun(false, sync, run++);
      auto [r1, p1] = WriteRun(true, sync, run++);
      off += r0 / 2;
      on += r1 / 2;
      off_p99 = std::max(off_p99, p0);
      on_p99 = std::max(on_p99, p1);
    }
    std::printf("write (%s, %d writers): signing off %.0f/s (p99 %.2f ms), on %.0f/s (p99 %.2f ms): "
                "ratio %.3f\n",
                sync ? "sync" : "async", absl::GetFlag(FLAGS_writers), off, off_p99, on, on_p99,
                on / off);
    std::printf("{\"bench\":\"trust\",\"phase\":\"write\",\"durability\":\"%s\",\"writers\":%d,"
                "\"unsigned_per_s\":%.0f,\"signed_per_s\":%.0f,\"ratio\":%.3f,"
                "\"unsigned_p99_ms\":%.2f,\"signed_p99_ms\":%.2f}\n",
                sync ? "sync" : "async", absl::GetFlag(FLAGS_writers), off, on, on / off, off_p99,
                on_p99);
  }
}

// Remote batches of Bourg's node, `per_batch` changes each, in runs of `run` batches:
// the last of each run signed with Bourg's real key (run 1: every batch signed, as an
// origin writing slowly makes them; an origin under load signs once per run).
std::vector<interco::replication::v1::Batch> RemoteBatches(int count, int per_batch, int run,
                                                           interco::replication::Signer& signer) {
  interco::node::Sha256Hasher hasher;
  const uint32_t origin = *interco::replication::SirenToOrigin(interco::testing::kBourg);
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  uint64_t hlc = interco::replication::HybridLogicalClock::Pack(static_cast<uint64_t>(now_ms) - 60000, 0);
  std::vector<interco::replication::v1::Batch> out;
  std::string prev;
  uint64_t seq = 1;
  for (int b = 0; b < count; ++b) {
    std::vector<std::string> changes;
    for (int i = 0; i < per_batch; ++i) {
      ++hlc;
      interco::replication::v1::Change c;
      c.set_key(absl::StrCat("r", (seq + static_cast<uint64_t>(i)) % 20000));
      c.set_author(interco::testing::kBourg);
      auto* d = c.mutable_delta();
      d->set_causal_length(1);
      d->set_cl_hlc(hlc);
      d->set_cl_origin(origin);
      for (const char* name : {"commune", "nom"}) {
        auto* f = d->add_fields();
        f->set_name(name);
        interco::replication::SetLifeOfField(*f, 1);
        f->set_hlc(hlc);
        f->set_origin(origin);
        f->mutable_value()->set_string_value(absl::StrCat(name, " ", seq + static_cast<uint64_t>(i)));
      }
      changes.push_back(c.SerializeAsString());
    }
    interco::replication::BatchParams p;
    p.origin = origin;
    p.epoch = 1;
    p.stream = "equipements";
    p.first_seq = seq;
    p.prev_hash = prev;
    p.max_hlc = hlc;
    p.run_index = static_cast<uint32_t>(b % run);
    seq += static_cast<uint64_t>(per_batch);
    const bool end = (b + 1) % run == 0 || b + 1 == count;
    out.push_back(*interco::replication::BuildBatch(p, std::move(changes), hasher,
                                                    end ? &signer : nullptr, &prev));
  }
  return out;
}

double ApplyRun(const std::vector<interco::replication::v1::Batch>& batches, bool verify,
                int run) {
  interco::node::SystemClock clock;
  const std::string dir = absl::StrCat(absl::GetFlag(FLAGS_dir), "/interco-trust-apply-", ::getpid(), "-", run);
  auto store = OpenStore(dir, /*sync=*/false, clock);
  Trust t = MakeTrust(kLyon, store.get());
  (void)t.certs->AddCertificate(interco::node::CertificateDer(
      interco::node::ParsePemCertificate(
          *interco::node::ReadFile(interco::testing::NodeTlsDir(interco::testing::kBourg) + "/tls.crt"), "")
          ->get()));
  const interco::replication::Principal me{kFederation, kLyon, ""};
  interco::v1::Registry def = BenchRegistry();
  def.mutable_policy()->mutable_writers()->add_authorities(interco::testing::kBourg);
  if (absl::Status s = store->CreateRegistry("equipements", def, me).status(); !s.ok()) {
    std::fprintf(stderr, "apply: %s\n", s.ToString().c_str());
    return 0;
  }
  interco::node::Sha256Hasher hasher;
  int64_t changes = 0;
  const auto t0 = Clock::now();
  // As in the node: a session's reader thread verifies ahead (the signed end of each
  // run) while the engine checks the run and applies it.
  std::thread reader([&] {
    if (!verify) return;
    for (const auto& b : batches) {
      if (b.signature().empty()) continue;
      interco::replication::v1::BatchHeader h;
      h.ParseFromString(b.header());
      t.certs->VerifyAhead(h.origin(), b.signer(), b.signed_at_ms(),
                           interco::replication::SignedMessage(b.signer(), b.signed_at_ms(), b.header()),
                           b.signature());
    }
  });
  std::vector<interco::replication::DecodedBatch> run_batches;
  for (const auto& b : batches) {
    auto decoded = interco::replication::DecodeBatch(b, hasher);
    if (!decoded.ok()) break;
    const bool end = !b.signature().empty();
    run_batches.push_back(*std::move(decoded));
    if (!end) continue;
    if (!interco::replication::CheckRun(run_batches).ok()) {
      std::fprintf(stderr, "not a run\n");
      break;
    }
    if (verify && !interco::replication::VerifyBatch(run_batches.back(), *t.certs).ok()) {
      std::fprintf(stderr, "verification failed\n");
      break;
    }
    for (const auto& d : run_batches) {
      if (absl::Status s = store->ApplyRemoteBatch("equipements", d); !s.ok()) {
        std::fprintf(stderr, "apply: %s\n", s.ToString().c_str());
        break;
      }
      changes += d.header.count();
    }
    run_batches.clear();
  }
  const double rate = static_cast<double>(changes) / Seconds(t0);
  reader.join();
  store.reset();
  std::filesystem::remove_all(dir);
  return rate;
}

void ApplyPhase() {
  Trust bourg = MakeTrust(interco::testing::kBourg, nullptr);
  int run = 0;
  for (int per_batch : {1, 64}) {
    const int count = per_batch == 1 ? absl::GetFlag(FLAGS_batches) : absl::GetFlag(FLAGS_batches) / 8;
    for (int run_length : {1, static_cast<int>(interco::limits::kRunBatchesMax)}) {
      const auto batches = RemoteBatches(count, per_batch, run_length, *bourg.signer);
      double off = 0, on = 0;
      for (int rep = 0; rep < 2; ++rep) {
        off += ApplyRun(batches, false, run++) / 2;
        on += ApplyRun(batches, true, run++) / 2;
      }
      std::printf("apply (%d changes per batch, %d batches, runs of %d): unverified %.0f changes/s, "
                  "verified %.0f changes/s: ratio %.3f\n",
                  per_batch, count, run_length, off, on, on / off);
      std::printf("{\"bench\":\"trust\",\"phase\":\"apply\",\"changes_per_batch\":%d,\"batches\":%d,"
                  "\"run_batches\":%d,\"unverified_changes_per_s\":%.0f,"
                  "\"verified_changes_per_s\":%.0f,\"ratio\":%.3f}\n",
                  per_batch, count, run_length, off, on, on / off);
    }
  }
}

void HandshakePhase() {
  const std::string dir = interco::testing::MakeTempDir("trust-bench-node");
  interco::testing::NodeProcess::Options o;
  o.data_dir = dir + "/store";
  interco::testing::NodeProcess node(o);
  std::string error;
  if (!node.Start(&error)) {
    std::fprintf(stderr, "node: %s\n", error.c_str());
    return;
  }
  interco::node::TlsFiles files = interco::node::TlsFiles::InDirectory(interco::testing::ClientTlsDir(kLyon));
  auto creds = *interco::node::MakeChannelCredentials(files);
  const std::string target = absl::StrCat("127.0.0.1:", node.api_port());
  auto call = [&](const std::shared_ptr<grpc::Channel>& ch) {
    auto stub = interco::v1::RegistryService::NewStub(ch);
    grpc::ClientContext ctx;
    interco::v1::GetRegistryRequest req;
    req.set_name("registries/absent");
    interco::v1::Registry r;
    return stub->GetRegistry(&ctx, req, &r).error_code() == grpc::StatusCode::NOT_FOUND;
  };
  const int n = absl::GetFlag(FLAGS_handshakes);
  // Calls on one established connection: the part of each sample that is not the handshake.
  auto warm = grpc::CreateChannel(target, creds);
  call(warm);
  auto t0 = Clock::now();
  int ok_warm = 0;
  for (int i = 0; i < n; ++i) ok_warm += call(warm);
  const double warm_s = static_cast<double>(n) / Seconds(t0);
  // A new connection per call: a distinct channel argument defeats subchannel sharing.
  std::vector<double> lat;
  int ok_new = 0;
  t0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("interco.bench.connection", i);
    const auto s0 = Clock::now();
    ok_new += call(grpc::CreateCustomChannel(target, creds, args));
    lat.push_back(Seconds(s0) * 1000);
  }
  const double new_s = static_cast<double>(n) / Seconds(t0);
  std::printf("handshake: %.0f new mTLS connections/s (each with one call; p50 %.2f ms, p99 %.2f ms), "
              "%.0f calls/s on an established connection (%d/%d ok)\n",
              new_s, Percentile(lat, 0.5), Percentile(lat, 0.99), warm_s, ok_new + ok_warm, 2 * n);
  std::printf("{\"bench\":\"trust\",\"phase\":\"handshake\",\"connections_per_s\":%.0f,\"p50_ms\":%.2f,"
              "\"p99_ms\":%.2f,\"warm_calls_per_s\":%.0f}\n",
              new_s, Percentile(lat, 0.5), Percentile(lat, 0.99), warm_s);
  node.Terminate();
  std::filesystem::remove_all(dir);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string phases = absl::GetFlag(FLAGS_phases);
  auto wants = [&](const char* p) { return phases.find(p) != std::string::npos; };
  if (wants("ed25519")) Ed25519Phase();
  if (wants("write")) WritePhase();
  if (wants("apply")) ApplyPhase();
  if (wants("handshake")) HandshakePhase();
  return 0;
}
