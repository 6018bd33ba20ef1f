// Replication benchmarks.
//
//   1. Apply throughput: remote batches (decoded and checked as the engine does) applied
//      to a real RecordStore (RocksDB, fsync'd commits) — field changes per second — while a
//      local writer measures how much remote applies delay local writes.
//   2. Catch-up: a node process with N records and an empty one connected over loopback
//      mTLS; time until the empty node holds them all, and the bytes sent to it (TCP).
//      Also: changes by column (the peer wire layout), encode/decode speed and size.
//   3. Simulated propagation: the real engine in the deterministic simulator, a full mesh of
//      N nodes with fixed link delay — delivery latency (median, max) and messages per write.
//   4. Collection: N records created and deleted by a remote origin, then the owner's
//      collection of their tombstones — records removed per second, bytes of the tombstone
//      index per deleted record, and the store's size before and after a compaction.
//   5. Repair: two stores holding the same N records, then d records changed on one only;
//      the other repairs by range fingerprints over real gRPC (loopback mTLS) — bytes of
//      the exchange per difference against the bound 3 KB + 1.5 KB x d, requests, time.
//
// Prints a table, then one JSON object per line. See docs/BENCHMARKS.md.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <grpcpp/server_builder.h>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "interco/replication/v1/peer_service.grpc.pb.h"
#include "node/crypto/ed25519.h"
#include "node/crypto/sha256.h"
#include "node/peer/reconcile.h"
#include "node/rpc/status.h"
#include "node/tls/credentials.h"
#include "node/storage/record_store.h"
#include "node/system_clock.h"
#include "node/trust/batch_signer.h"
#include "node/trust/certificate_store.h"
#include "replication/base/limits.h"
#include "replication/change_log.h"
#include "replication/frame_codec.h"
#include "replication/hlc.h"
#include "replication/ids.h"
#include "interco/v1/registry_service.grpc.pb.h"
#include "tests/sim/sim_cluster.h"
#include "tests/testing/deflate.h"
#include "tests/testing/test_env.h"

ABSL_FLAG(int64_t, changes, 200000, "remote record changes to apply (0 skips the apply benchmark)");
ABSL_FLAG(int, batch, 512, "changes per remote batch");
ABSL_FLAG(int, fields, 4, "fields per change");
ABSL_FLAG(int, keys, 100000, "record key space");
ABSL_FLAG(bool, races, false,
          "apply: later writes of a record do not name the value they replace, so each is a "
          "race and its loser goes to the conflict journal (worst case)");
ABSL_FLAG(std::string, dir, "/tmp", "where the temporary store goes");
ABSL_FLAG(int, sim_nodes, 25, "nodes of the simulated full mesh");
ABSL_FLAG(int64_t, sim_delay_ms, 100, "link delay of the simulated network");
ABSL_FLAG(double, sim_write_rate, 4,
          "writes per node per simulated second (4: 100 writes/s in all on 25 nodes, the "
          "Gossip Glomers broadcast workload)");
ABSL_FLAG(bool, skip_sim, false, "skip the simulated propagation benchmark");
ABSL_FLAG(int64_t, catchup_records, 100000, "records of the catch-up benchmark (0 skips it)");
ABSL_FLAG(int64_t, repair_records, 1000000,
          "records of the repair benchmark (0 skips it)");
ABSL_FLAG(int64_t, collect_records, 100000,
          "records deleted and collected in the collection benchmark (0 skips it)");
ABSL_FLAG(int64_t, compact_records, 100000,
          "records of the log compaction benchmark, each written 4 times (0 skips it)");
ABSL_FLAG(int64_t, replay_records, 100000,
          "records of the replay benchmark: a collection refuses a batch applied before it, "
          "and the store replays its log without it (0 skips it)");

namespace {

using interco::replication::v1::Change;
using interco::replication::v1::RecordState;

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return v[i];
}

// A local writer beside a phase: one write of field `field` of a record of its own, 2 ms
// after the previous one returned, through the store's write path; its latencies show
// whether the phase blocks local writes. Every write changes a value (a write that
// changes nothing commits without a sync).
class LocalWriter {
 public:
  LocalWriter(interco::node::RecordStore& store, interco::replication::Principal author,
              std::string field = "f0")
      : thread_([this, &store, author = std::move(author), field = std::move(field)] {
          static std::atomic<int> writers{0};
          const int writer = writers.fetch_add(1);
          for (int i = 0; !stop_; ++i) {
            interco::replication::LocalWrite w;
            w.kind = interco::replication::LocalWrite::Kind::kUpdate;
            w.allow_missing = true;
            w.fields[field].set_string_value(absl::StrCat("local ", writer, "/", i));
            w.mask = {field};
            const auto t0 = std::chrono::steady_clock::now();
            auto r = store.Write("bench", absl::StrCat("local", i % 1000), w, author);
            const auto t1 = std::chrono::steady_clock::now();
            if (r.ok()) ms_.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
          }
        }) {}
  ~LocalWriter() { Stop(); }
  // Stops the writer; the latency of each write it made, in ms.
  std::vector<double> Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    return ms_;
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<double> ms_;
  std::thread thread_;
};

// Changes by column (replication/frame_codec.h): encode and decode speed over frames of
// eight batches, and the frames' deflated size either way.
void CodecBench(const std::vector<interco::replication::v1::Batch>& batches) {
  std::vector<interco::replication::v1::BatchFrame> frames;
  for (size_t i = 0; i < batches.size(); i += 8) {
    auto& f = frames.emplace_back();
    f.set_stream("bench");
    for (size_t j = i; j < std::min(batches.size(), i + 8); ++j) *f.add_batches() = batches[j];
  }
  uint64_t changes = 0, raw_deflated = 0, columns_deflated = 0;
  for (const auto& b : batches) changes += static_cast<uint64_t>(b.changes_size());
  std::vector<interco::replication::v1::BatchFrame> encoded = frames;
  const auto t0 = std::chrono::steady_clock::now();
  interco::node::Sha256Hasher hasher;
  for (auto& f : encoded) interco::replication::EncodeColumns(f, hasher);
  const auto t1 = std::chrono::steady_clock::now();
  std::vector<interco::replication::v1::BatchFrame> decoded = encoded;
  const auto t2 = std::chrono::steady_clock::now();
  bool ok = true;
  for (auto& f : decoded) ok &= interco::replication::DecodeColumns(f, hasher).ok();
  const auto t3 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < frames.size(); ++i) {
    raw_deflated += interco::testing::Deflated(frames[i].SerializeAsString());
    columns_deflated += interco::testing::Deflated(encoded[i].SerializeAsString());
    ok &= decoded[i].SerializeAsString() == frames[i].SerializeAsString();
  }
  const double enc = std::chrono::duration<double>(t1 - t0).count();
  const double dec = std::chrono::duration<double>(t3 - t2).count();
  std::printf("columns: %llu changes in %zu frames: encode %.0f changes/s, decode %.0f changes/s; "
              "deflated %.2f MB as changes, %.2f MB by column (%.2f x)%s\n",
              static_cast<unsigned long long>(changes), frames.size(),
              static_cast<double>(changes) / enc, static_cast<double>(changes) / dec,
              static_cast<double>(raw_deflated) / 1e6, static_cast<double>(columns_deflated) / 1e6,
              static_cast<double>(columns_deflated) / static_cast<double>(raw_deflated),
              ok ? "" : "; ROUND TRIP FAILED");
  std::printf("{\"bench\":\"replication\",\"phase\":\"columns\",\"changes\":%llu,"
              "\"encode_changes_per_s\":%.0f,\"decode_changes_per_s\":%.0f,"
              "\"deflated_changes_mb\":%.2f,\"deflated_columns_mb\":%.2f,\"round_trip\":%s}\n",
              static_cast<unsigned long long>(changes), static_cast<double>(changes) / enc,
              static_cast<double>(changes) / dec, static_cast<double>(raw_deflated) / 1e6,
              static_cast<double>(columns_deflated) / 1e6, ok ? "true" : "false");
}

// An empty store of Lyon's node in `dir` (removed first); says why on stderr if it cannot
// be opened.
absl::StatusOr<std::unique_ptr<interco::node::RecordStore>> OpenBenchStore(
    const std::string& dir, interco::node::SystemClock& clock,
    const std::string& authority = "200046977") {
  std::filesystem::remove_all(dir);
  interco::node::RecordStoreOptions o;
  o.path = dir;
  o.authority = authority;
  o.clock = &clock;
  auto store = interco::node::RecordStore::Open(o);
  if (!store.ok()) std::fprintf(stderr, "open: %s\n", store.status().ToString().c_str());
  return store;
}

// An origin's key for batches that the stores here do not verify: an Ed25519 key of its
// own, named by the SHA-256 of its public key (where a node names its certificate's).
class BenchSigner final : public interco::replication::Signer {
 public:
  BenchSigner() : key_(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519")) {
    unsigned char pub[32];
    size_t len = sizeof(pub);
    EVP_PKEY_get_raw_public_key(key_.get(), pub, &len);
    id_ = interco::node::Sha256(std::string_view(reinterpret_cast<char*>(pub), len));
  }
  std::string KeyId() override { return id_; }
  absl::StatusOr<std::string> Sign(std::string_view, std::string_view message) override {
    return interco::node::Ed25519Sign(key_.get(), message);
  }

 private:
  interco::node::EvpPkeyPtr key_;
  std::string id_;
};

// The next batch of `origin` (epoch 1) in stream "bench": it starts at `seq` and chains
// to `prev`, both moved past it. Unsigned (covered by a later batch of its run, the
// `run_index`-th unsigned one in a row), unless `signer` signs it.
interco::replication::v1::Batch NextBatch(uint32_t origin, std::vector<std::string> changes,
                                          uint64_t max_hlc, interco::replication::Hasher& hasher,
                                          uint64_t& seq, std::string& prev,
                                          interco::replication::Signer* signer = nullptr,
                                          uint32_t run_index = 0) {
  interco::replication::BatchParams p;
  p.origin = origin;
  p.epoch = 1;
  p.stream = "bench";
  p.first_seq = seq;
  p.prev_hash = prev;
  p.max_hlc = max_hlc;
  p.run_index = run_index;
  p.now_ms = static_cast<int64_t>(interco::replication::HybridLogicalClock::Millis(max_hlc));
  seq += changes.size();
  return *interco::replication::BuildBatch(p, std::move(changes), hasher, signer, &prev);
}

void ApplyBench() {
  const int64_t total = absl::GetFlag(FLAGS_changes);
  if (total <= 0) return;
  const int batch_size = absl::GetFlag(FLAGS_batch);
  const int fields = absl::GetFlag(FLAGS_fields);
  const int keys = absl::GetFlag(FLAGS_keys);
  const std::string dir = absl::StrCat(absl::GetFlag(FLAGS_dir), "/interco-replication-bench-",
                                       ::getpid());
  interco::node::SystemClock clock;
  interco::v1::Registry def;
  for (int f = 0; f < fields; ++f) {
    auto* spec = def.mutable_schema()->add_fields();
    spec->set_name(absl::StrCat("f", f));
    spec->set_type(interco::v1::FIELD_TYPE_STRING);
  }
  // The remote origin writes it too.
  def.mutable_policy()->mutable_writers()->set_all_authorities(true);
  const interco::replication::Principal admin{"interco.bench", "200046977", "admin"};

  // Remote batches of another origin, prepared before timing.
  constexpr uint32_t kOrigin = 217400423;  // a valid SIREN
  interco::node::Sha256Hasher hasher;
  std::vector<interco::replication::v1::Batch> batches;
  std::string prev;
  uint64_t seq = 1;
  uint64_t hlc = interco::replication::HybridLogicalClock::Pack(
      static_cast<uint64_t>(clock.NowMillis()) - 60000, 0);
  uint64_t payload_bytes = 0;
  // Metadata of the stored state, measured on the serialized RecordState of each change
  // (what the records family stores for a record written once): everything but the
  // values, and separately everything but values and field names.
  uint64_t meta_record = 0, meta_fields = 0, meta_fields_later_life = 0, meta_record_level = 0,
           field_count = 0, state_count = 0;
  std::unordered_map<std::string, uint64_t> last_write;  // key -> HLC of its latest change
  for (int64_t done = 0; done < total;) {
    std::vector<std::string> changes;
    for (int i = 0; i < batch_size && done < total; ++i, ++done) {
      Change c;
      c.set_key(absl::StrCat("k", (done * 7919) % keys));
      RecordState* d = c.mutable_delta();
      ++hlc;
      d->set_causal_length(1);
      d->set_cl_hlc(hlc);
      d->set_cl_origin(kOrigin);
      for (int f = 0; f < fields; ++f) {
        auto* fs = d->add_fields();
        fs->set_name(absl::StrCat("f", f));
        interco::replication::SetLifeOfField(*fs, 1);
        fs->set_hlc(hlc);
        fs->set_origin(kOrigin);
        fs->mutable_value()->set_string_value(absl::StrCat("value ", done, " of field ", f));
      }
      {
        const uint64_t total_size = d->ByteSizeLong();
        uint64_t values = 0, names = 0;
        for (const auto& fs : d->fields()) {
          values += fs.value().ByteSizeLong() + 2;  // + tag and length
          names += fs.name().size() + 2;
        }
        uint64_t field_states = 0;
        for (const auto& fs : d->fields()) field_states += fs.ByteSizeLong() + 2;  // + framing
        const uint64_t record_level = total_size - field_states;  // causal length and its stamp
        meta_record += total_size - values;
        meta_record_level += record_level;
        meta_fields += field_states - values - names;
        // The same fields in a later life of the record (after a re-creation).
        uint64_t later_states = 0;
        for (auto fs : d->fields()) {
          interco::replication::SetLifeOfField(fs, 2);
          later_states += fs.ByteSizeLong() + 2;
        }
        meta_fields_later_life += later_states - values - names;
        field_count += static_cast<uint64_t>(d->fields_size());
        ++state_count;
      }
      // As a real origin writes them: a later write of a record names the value it
      // replaced (FieldState.seen_age), so it is no conflict. Not part of the stored state.
      if (auto [it, fresh] = last_write.try_emplace(c.key(), hlc);
          !fresh && !absl::GetFlag(FLAGS_races)) {
        for (auto& fs : *d->mutable_fields()) fs.set_seen_age(hlc - it->second);
        it->second = hlc;
      }
      c.set_author("217400423/sync");
      interco::replication::CompactChange(c, kOrigin, hlc);  // as an origin logs it
      changes.push_back(c.SerializeAsString());
      payload_bytes += changes.back().size();
    }
    batches.push_back(NextBatch(kOrigin, std::move(changes), hlc, hasher, seq, prev));
  }

  CodecBench(batches);

  // Each run applies every batch to a new store, with or without a local writer beside:
  // the first measures the apply alone, the second whether applies hold local writes.
  struct ApplyRun {
    double secs = 0, decode_s = 0;
    int64_t applied = 0, conflicts = -1;
    std::vector<double> local_ms, idle_ms;
    std::string check = "not run";
  };
  const auto run = [&](bool with_writer) {
    ApplyRun out;
    auto store = OpenBenchStore(dir, clock);
    if (!store.ok() || !(*store)->CreateRegistry("bench", def, admin).ok()) return out;
    std::optional<LocalWriter> local;
    if (with_writer) {
      // The same writer with nothing else going on first: what its writes cost alone.
      local.emplace(**store, admin);
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      out.idle_ms = local->Stop();
      local.emplace(**store, admin);
    }
    const auto t0 = std::chrono::steady_clock::now();
    for (const auto& b : batches) {
      const auto d0 = std::chrono::steady_clock::now();
      auto decoded = interco::replication::DecodeBatch(b, hasher);
      out.decode_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - d0).count();
      if (!decoded.ok()) {
        std::fprintf(stderr, "decode: %s\n", decoded.status().ToString().c_str());
        break;
      }
      if (absl::Status s = (*store)->ApplyRemoteBatch("bench", *decoded); !s.ok()) {
        std::fprintf(stderr, "apply: %s\n", s.ToString().c_str());
        break;
      }
      out.applied += decoded->header.count();
    }
    out.secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (local) out.local_ms = local->Stop();
    auto check = (*store)->CheckConsistency();
    out.check = check.ok() ? "consistent" : check.status().ToString();
    const auto registry = (*store)->GetRegistry("bench");
    out.conflicts = registry.ok() ? registry->conflict_count() : -1;
    store->reset();
    std::filesystem::remove_all(dir);
    return out;
  };
  const ApplyRun alone = run(false);
  const ApplyRun beside = run(true);
  const double secs = alone.secs;
  const int64_t applied = alone.applied;
  const double decode_s = alone.decode_s;
  const int64_t conflicts = alone.conflicts;
  const std::vector<double>& local_ms = beside.local_ms;

  const double changes_per_s = static_cast<double>(applied) / secs;
  std::printf("apply: %lld changes (%d fields each) in %.2f s: %.0f changes/s, %.0f field "
              "changes/s; decode+verify %.1f%% of the time; %.1f MB payload\n",
              static_cast<long long>(applied), fields, secs, changes_per_s,
              changes_per_s * fields, 100.0 * decode_s / secs, static_cast<double>(payload_bytes) / 1e6);
  std::printf("store after the apply: %s\n", alone.check.c_str());
  const double beside_per_s = static_cast<double>(beside.applied) / beside.secs;
  std::printf("apply again with a local writer beside: %.0f field changes/s; %zu local writes, "
              "p50 %.2f ms, p99 %.2f ms (alone before: p50 %.2f ms, p99 %.2f ms); store %s\n",
              beside_per_s * fields, local_ms.size(), Percentile(local_ms, 0.5),
              Percentile(local_ms, 0.99), Percentile(beside.idle_ms, 0.5),
              Percentile(beside.idle_ms, 0.99), beside.check.c_str());
  std::printf("{\"bench\":\"replication\",\"phase\":\"apply\",\"changes\":%lld,\"fields_per_change\":%d,"
              "\"batch\":%d,\"seconds\":%.3f,\"changes_per_s\":%.0f,\"field_changes_per_s\":%.0f,"
              "\"decode_share\":%.3f,\"payload_mb\":%.2f,\"races\":%s,\"conflicts_journaled\":%lld}\n",
              static_cast<long long>(applied), fields, batch_size, secs, changes_per_s,
              changes_per_s * fields, decode_s / secs, static_cast<double>(payload_bytes) / 1e6,
              absl::GetFlag(FLAGS_races) ? "true" : "false", static_cast<long long>(conflicts));
  const double per_field = static_cast<double>(meta_fields) / static_cast<double>(field_count);
  const double per_record = static_cast<double>(meta_record_level) / static_cast<double>(state_count);
  const double all = static_cast<double>(meta_record) / static_cast<double>(state_count);
  const double per_field_later =
      static_cast<double>(meta_fields_later_life) / static_cast<double>(field_count);
  std::printf("metadata on disk (serialized state): %.1f bytes per field (HLC, origin, framing, "
              "and the life after a re-creation: %.1f; field name excluded), %.1f bytes per "
              "record (causal length and its stamp); a %d-field record carries %.1f bytes "
              "besides its values, names included\n",
              per_field, per_field_later, per_record, fields, all);
  std::printf("{\"bench\":\"replication\",\"metric\":\"metadata_bytes_per_field\",\"value\":%.1f,"
              "\"after_recreation\":%.1f,\"goal_max\":16}\n{\"bench\":\"replication\",\"metric\":"
              "\"metadata_bytes_per_record\",\"value\":%.1f,\"goal_max\":48}\n{\"bench\":"
              "\"replication\",\"metric\":\"non_value_bytes_per_record\",\"value\":%.1f,"
              "\"fields\":%d}\n",
              per_field, per_field_later, per_record, all, fields);
  std::printf("{\"bench\":\"replication\",\"phase\":\"local_writes_during_apply\",\"count\":%zu,"
              "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"idle_p50_ms\":%.3f,\"idle_p99_ms\":%.3f,"
              "\"apply_field_changes_per_s\":%.0f,\"slice_changes\":%zu}\n",
              local_ms.size(), Percentile(local_ms, 0.5), Percentile(local_ms, 0.99),
              Percentile(beside.idle_ms, 0.5), Percentile(beside.idle_ms, 0.99),
              beside_per_s * fields, interco::limits::kApplySliceChanges);
}

// Bytes sent so far on the TCP connections to 127.0.0.1:port (ss's bytes_sent: TLS
// records, HTTP/2 framing and retransmissions included).
uint64_t SentTo(int port) {
  std::string out;
  interco::testing::RunCommand(absl::StrCat("ss -tinH dst 127.0.0.1:", port), &out);
  uint64_t total = 0;
  for (size_t pos = out.find("bytes_sent:"); pos != std::string::npos;
       pos = out.find("bytes_sent:", pos + 1)) {
    total += std::strtoull(out.c_str() + pos + 11, nullptr, 10);
  }
  return total;
}

void CatchUpBench() {
  using interco::testing::kBourg;
  using interco::testing::kLyon;
  const int64_t n = absl::GetFlag(FLAGS_catchup_records);
  if (n <= 0) return;
  const std::string dir = interco::testing::MakeTempDir("catchup");
  // 1. Fill the source's store directly (group commit, many writes in flight).
  uint64_t payload = 0;
  std::string payload_text;  // names and values, in write order: what compression starts from
  {
    interco::node::SystemClock clock;
    interco::node::RecordStoreOptions o;
    o.path = dir + "/source";
    o.authority = kLyon;
    o.clock = &clock;
    auto store = interco::node::RecordStore::Open(o);
    if (!store.ok()) return;
    // Signed as the source node would sign them: with its certificate's key.
    interco::node::CertificateStoreOptions co;
    co.federation = interco::testing::kFederation;
    co.ca_file = interco::testing::NodeTlsDir(kLyon) + "/ca.crt";
    co.store = store->get();
    auto certs = interco::node::CertificateStore::Open(co);
    if (!certs.ok()) return;
    auto signer = interco::node::BatchSigner::Open(
        interco::node::TlsFiles::InDirectory(interco::testing::NodeTlsDir(kLyon)), **certs);
    if (!signer.ok()) return;
    (*store)->SetSigner(signer->get());
    interco::v1::Registry def;
    for (const char* f : {"nom", "commune", "adresse", "telephone"}) {
      auto* spec = def.mutable_schema()->add_fields();
      spec->set_name(f);
      spec->set_type(interco::v1::FIELD_TYPE_STRING);
    }
    def.mutable_policy()->mutable_readers()->add_authorities(kBourg);  // the target reads it
    const interco::replication::Principal admin{interco::testing::kFederation, kLyon, "admin"};
    if (!(*store)->CreateRegistry("bench", def, admin).ok()) return;
    std::atomic<int64_t> in_flight{0}, failed{0};
    for (int64_t i = 0; i < n; ++i) {
      while (in_flight.load() > 4096) std::this_thread::sleep_for(std::chrono::microseconds(200));
      interco::replication::LocalWrite w;
      w.kind = interco::replication::LocalWrite::Kind::kCreate;
      w.fields["nom"].set_string_value(absl::StrCat("Mairie annexe numéro ", i));
      w.fields["commune"].set_string_value(absl::StrCat("0", 1000 + i % 500));
      w.fields["adresse"].set_string_value(absl::StrCat(i % 300, " rue de la République"));
      w.fields["telephone"].set_string_value(absl::StrCat("04 74 ", 10 + i % 89, " 00 00"));
      for (const auto& [k, v] : w.fields) {
        payload += k.size() + v.string_value().size();
        absl::StrAppend(&payload_text, k, v.string_value());
      }
      in_flight++;
      (*store)->WriteAsync("bench", absl::StrCat("r", i), std::move(w), admin,
                           [&](absl::StatusOr<interco::v1::Record> r) {
                             if (!r.ok()) failed++;
                             in_flight--;
                           });
    }
    while (in_flight.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    if (failed > 0) std::fprintf(stderr, "catch-up fill: %lld writes failed\n", static_cast<long long>(failed.load()));
    store->reset();  // closed before its signer goes
  }
  // 2. The two nodes.
  const int source_peer = interco::testing::FreePort(), target_peer = interco::testing::FreePort();
  interco::testing::NodeProcess::Options so;
  so.authority = kLyon;
  so.data_dir = dir + "/source";
  so.extra_args = {absl::StrCat("--peer_listen=127.0.0.1:", source_peer),
                   absl::StrCat("--peers=", kBourg, "@127.0.0.1:", target_peer)};
  interco::testing::NodeProcess::Options to = so;
  to.authority = kBourg;
  to.data_dir = dir + "/target";
  to.extra_args = {absl::StrCat("--peer_listen=127.0.0.1:", target_peer),
                   absl::StrCat("--peers=", kLyon, "@127.0.0.1:", source_peer)};
  interco::testing::NodeProcess source(so), target(to);
  std::string error;
  if (!source.Start(&error) || !target.Start(&error)) {
    std::fprintf(stderr, "catch-up: %s\n", error.c_str());
    return;
  }
  auto stub = interco::v1::RegistryService::NewStub(
      interco::testing::MtlsChannel(target.api_port(), interco::testing::ClientTlsDir(kBourg, "admin")));
  interco::v1::CreateRegistryRequest req;
  req.set_registry_id("bench");
  req.mutable_registry()->set_owner(kLyon);
  req.mutable_registry()->mutable_policy()->mutable_readers()->add_authorities(kBourg);
  for (const char* f : {"nom", "commune", "adresse", "telephone"}) {
    auto* spec = req.mutable_registry()->mutable_schema()->add_fields();
    spec->set_name(f);
    spec->set_type(interco::v1::FIELD_TYPE_STRING);
  }
  const uint64_t written_before = SentTo(target_peer);
  const auto t0 = std::chrono::steady_clock::now();
  {
    grpc::ClientContext ctx;
    interco::v1::Registry out;
    if (!stub->CreateRegistry(&ctx, req, &out).ok()) return;
  }
  int64_t have = 0;
  // Bounded: ten minutes in all, and 30 s without progress ends it (reported as is).
  const auto deadline = t0 + std::chrono::minutes(10);
  auto last_progress = t0;
  while (have < n && std::chrono::steady_clock::now() < deadline &&
         std::chrono::steady_clock::now() - last_progress < std::chrono::seconds(30)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    grpc::ClientContext ctx;
    interco::v1::GetRegistryRequest get;
    get.set_name("registries/bench");
    interco::v1::Registry r;
    if (stub->GetRegistry(&ctx, get, &r).ok() && r.record_count() > have) {
      have = r.record_count();
      last_progress = std::chrono::steady_clock::now();
    }
  }
  if (have < n) std::fprintf(stderr, "catch-up: stalled at %lld records\n", static_cast<long long>(have));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const uint64_t wire = SentTo(target_peer) - written_before;
  // The payload compressed on its own (zlib, default level): what the wire is held to.
  const size_t compressed = interco::testing::Deflated(payload_text);
  const double wire_to_compressed =
      compressed == 0 ? 0 : static_cast<double>(wire) / static_cast<double>(compressed);
  std::printf("catch-up: %lld of %lld records in %.2f s: %.0f records/s, %.1f MB/s on the wire "
              "(%.2f x the field payload of %.1f MB, %.2f x that payload compressed, %.2f MB)\n",
              static_cast<long long>(have), static_cast<long long>(n), secs,
              static_cast<double>(have) / secs, static_cast<double>(wire) / 1e6 / secs,
              static_cast<double>(wire) / static_cast<double>(payload),
              static_cast<double>(payload) / 1e6, wire_to_compressed,
              static_cast<double>(compressed) / 1e6);
  std::printf("{\"bench\":\"replication\",\"phase\":\"catch_up\",\"records\":%lld,\"caught_up\":%lld,"
              "\"seconds\":%.3f,\"records_per_s\":%.0f,\"wire_mb\":%.2f,\"mb_per_s\":%.2f,"
              "\"payload_mb\":%.2f,\"wire_to_payload\":%.2f,\"compressed_payload_mb\":%.2f,"
              "\"wire_to_compressed_payload\":%.2f}\n",
              static_cast<long long>(n), static_cast<long long>(have), secs,
              static_cast<double>(have) / secs, static_cast<double>(wire) / 1e6,
              static_cast<double>(wire) / 1e6 / secs, static_cast<double>(payload) / 1e6,
              static_cast<double>(wire) / static_cast<double>(payload),
              static_cast<double>(compressed) / 1e6, wire_to_compressed);
  source.Terminate();
  target.Terminate();
}

void SimBench() {
  interco::sim::SimOptions o;
  o.seed = 7;
  o.nodes_max = absl::GetFlag(FLAGS_sim_nodes);
  o.fixed_delay_ms = absl::GetFlag(FLAGS_sim_delay_ms);
  o.write_rate = absl::GetFlag(FLAGS_sim_write_rate);
  o.fault_phase_ms = 20000;
  o.measure_whole_reports = true;
  const interco::sim::SimResult r = interco::sim::RunSimulation(o);
  std::vector<double> d(r.delivery_ms.begin(), r.delivery_ms.end());
  const double msgs_per_op =
      r.writes == 0 ? 0 : static_cast<double>(r.messages) / static_cast<double>(r.writes);
  const double bytes_per_op = r.writes == 0 ? 0
                                            : static_cast<double>(r.message_bytes) /
                                                  static_cast<double>(r.writes);
  const double report_bytes_per_status =
      r.statuses == 0 ? 0
                      : static_cast<double>(r.report_bytes) / static_cast<double>(r.statuses);
  std::printf("simulated propagation: %d nodes, full mesh, %lld ms links: %llu writes, delivery "
              "median %.0f ms, max %.0f ms, %.1f messages per write, %.0f bytes per write "
              "(%.1f %% stability reports: %llu statuses, %.0f bytes of reports each, %.2f x "
              "their size written whole)%s%s\n",
              o.nodes_max, static_cast<long long>(o.fixed_delay_ms),
              static_cast<unsigned long long>(r.writes), Percentile(d, 0.5),
              d.empty() ? 0 : *std::max_element(d.begin(), d.end()), msgs_per_op, bytes_per_op,
              r.message_bytes == 0 ? 0
                                   : 100.0 * static_cast<double>(r.report_bytes) /
                                         static_cast<double>(r.message_bytes),
              static_cast<unsigned long long>(r.statuses), report_bytes_per_status,
              r.report_bytes_whole == 0 ? 0
                                        : static_cast<double>(r.report_bytes) /
                                              static_cast<double>(r.report_bytes_whole),
              r.failure.empty() ? "" : "; FAILED: ", r.failure.c_str());
  std::printf("{\"bench\":\"replication\",\"phase\":\"sim_propagation\",\"nodes\":%d,\"link_ms\":%lld,"
              "\"writes\":%llu,\"delivered\":%zu,\"median_ms\":%.0f,\"max_ms\":%.0f,\"msgs_per_op\":%.1f,"
              "\"bytes_per_op\":%.0f,\"message_bytes\":%llu,\"report_bytes\":%llu,\"statuses\":%llu,"
              "\"report_bytes_per_status\":%.0f,\"report_bytes_whole\":%llu}\n",
              o.nodes_max, static_cast<long long>(o.fixed_delay_ms),
              static_cast<unsigned long long>(r.writes), d.size(), Percentile(d, 0.5),
              d.empty() ? 0 : *std::max_element(d.begin(), d.end()), msgs_per_op, bytes_per_op,
              static_cast<unsigned long long>(r.message_bytes),
              static_cast<unsigned long long>(r.report_bytes),
              static_cast<unsigned long long>(r.statuses), report_bytes_per_status,
              static_cast<unsigned long long>(r.report_bytes_whole));
}

}  // namespace

void CollectBench() {
  const int64_t total = absl::GetFlag(FLAGS_collect_records);
  if (total <= 0) return;
  const std::string dir = absl::StrCat(absl::GetFlag(FLAGS_dir), "/interco-collect-bench-",
                                       ::getpid());
  interco::node::SystemClock clock;
  auto store = OpenBenchStore(dir, clock);
  if (!store.ok()) return;
  constexpr uint32_t kOrigin = 217400423;
  interco::v1::Registry def;
  auto* spec = def.mutable_schema()->add_fields();
  spec->set_name("nom");
  spec->set_type(interco::v1::FIELD_TYPE_STRING);
  spec = def.mutable_schema()->add_fields();
  spec->set_name("tags");
  spec->set_type(interco::v1::FIELD_TYPE_STRING_SET);
  // Listed writers: a registry open to all is never collected.
  def.mutable_policy()->mutable_writers()->add_authorities(
      interco::replication::OriginToSiren(kOrigin));
  const interco::replication::Principal admin{"interco.bench", "200046977", "admin"};
  if (!(*store)->CreateRegistry("bench", def, admin).ok()) return;

  // Each record created, then deleted, by the remote origin; and as many others given a
  // tag, then losing it (a removed set element): batches of 512 changes.
  interco::node::Sha256Hasher hasher;
  std::string prev;
  uint64_t seq = 1;
  uint64_t hlc = interco::replication::HybridLogicalClock::Pack(
      static_cast<uint64_t>(clock.NowMillis()) - 60000, 0);
  std::vector<Change> all;
  for (int pass = 0; pass < 2; ++pass) {
    for (int64_t k = 0; k < total; ++k) {
      Change c;
      c.set_key(absl::StrCat("equipement-", k));
      ++hlc;
      RecordState* d = c.mutable_delta();
      d->set_causal_length(pass == 0 ? 1 : 2);
      d->set_cl_hlc(hlc);
      d->set_cl_origin(kOrigin);
      if (pass == 0) {
        auto* fs = d->add_fields();
        fs->set_name("nom");
        fs->set_hlc(hlc);
        fs->set_origin(kOrigin);
        fs->mutable_value()->set_string_value(absl::StrCat("Équipement sportif ", k));
      }
      c.set_author("217400423/sync");
      interco::replication::CompactChange(c, kOrigin, hlc);
      all.push_back(std::move(c));
    }
  }
  const uint64_t first_tag_hlc = hlc + 1;
  for (int pass = 0; pass < 2; ++pass) {
    for (int64_t k = 0; k < total; ++k) {
      Change c;
      c.set_key(absl::StrCat("salle-", k));
      ++hlc;
      RecordState* d = c.mutable_delta();
      d->set_causal_length(1);
      d->set_cl_hlc(first_tag_hlc + static_cast<uint64_t>(k));
      d->set_cl_origin(kOrigin);
      auto* fs = d->add_fields();
      fs->set_name("tags");
      fs->set_hlc(hlc);
      fs->set_origin(kOrigin);
      auto* e = pass == 0 ? fs->add_elements() : fs->add_removed();
      e->set_value("accessible PMR");
      e->set_hlc(first_tag_hlc + static_cast<uint64_t>(k));
      e->set_origin(kOrigin);
      c.set_author("217400423/sync");
      interco::replication::CompactChange(c, kOrigin, hlc);
      all.push_back(std::move(c));
    }
  }
  for (size_t i = 0; i < all.size(); i += 512) {
    std::vector<std::string> changes;
    for (size_t j = i; j < std::min(all.size(), i + 512); ++j) {
      changes.push_back(all[j].SerializeAsString());
    }
    const interco::replication::v1::Batch batch =
        NextBatch(kOrigin, std::move(changes), hlc, hasher, seq, prev);
    auto decoded = interco::replication::DecodeBatch(batch, hasher);
    if (absl::Status s = (*store)->ApplyRemoteBatch("bench", *decoded); !s.ok()) {
      std::fprintf(stderr, "apply: %s\n", s.ToString().c_str());
      return;
    }
  }
  auto size_after_compaction = [&] {
    if (absl::Status s = (*store)->Compact(); !s.ok()) {
      std::fprintf(stderr, "compact: %s\n", s.ToString().c_str());
    }
    return (*store)->SizeOnDisk();
  };
  const int64_t before = size_after_compaction();
  const int64_t index_bytes = (*store)->SizeByFamily()["tombstones"];
  const int64_t removals_bytes = (*store)->SizeByFamily()["removals"];
  const interco::replication::VersionVector position = *(*store)->Position("bench");
  const auto t0 = std::chrono::steady_clock::now();
  absl::StatusOr<bool> collected =
      (*store)->Collect("bench",
          interco::replication::CollectionPlan{position, position, (*store)->Members("bench")});
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const int64_t after = size_after_compaction();
  const uint64_t removed = (*store)->CollectedOf("bench")->records;
  const uint64_t purged = (*store)->CollectedOf("bench")->removals;
  auto check = (*store)->CheckConsistency();
  store->reset();
  std::filesystem::remove_all(dir);
  if (!collected.ok() || !*collected) {
    std::fprintf(stderr, "collect: nothing collected\n");
    return;
  }
  const double items = static_cast<double>(removed + purged);
  std::printf("collection: %llu tombstones and %llu removed set elements in %.2f s (%.0f "
              "records/s, one commit); index %.1f bytes per deleted record, %.1f per removed "
              "element on disk; store %.2f MB before, %.2f MB after (compacted); %s\n",
              static_cast<unsigned long long>(removed), static_cast<unsigned long long>(purged),
              secs, items / secs, static_cast<double>(index_bytes) / static_cast<double>(total),
              static_cast<double>(removals_bytes) / static_cast<double>(total),
              static_cast<double>(before) / 1e6, static_cast<double>(after) / 1e6,
              check.ok() ? "consistent" : check.status().ToString().c_str());
  std::printf("{\"bench\":\"replication\",\"phase\":\"collect\",\"tombstones\":%llu,"
              "\"removed_elements\":%llu,\"seconds\":%.3f,\"records_per_s\":%.0f,"
              "\"index_bytes_per_tombstone\":%.1f,\"index_bytes_per_removed_element\":%.1f,"
              "\"store_bytes_before\":%lld,\"store_bytes_after\":%lld}\n",
              static_cast<unsigned long long>(removed), static_cast<unsigned long long>(purged),
              secs, items / secs, static_cast<double>(index_bytes) / static_cast<double>(total),
              static_cast<double>(removals_bytes) / static_cast<double>(total),
              static_cast<long long>(before), static_cast<long long>(after));
}

// The bytes of the batches of "bench" `from`'s log holds and `to` lacks, applied to `to`
// as a peer sends them; -1 on an error.
int64_t CatchUpFromLog(interco::node::RecordStore& from, interco::node::RecordStore& to) {
  absl::StatusOr<int64_t> bytes = interco::testing::CarryAllBatches(from, to, "bench");
  if (!bytes.ok()) std::fprintf(stderr, "catch-up from the log: %s\n", bytes.status().ToString().c_str());
  return bytes.ok() ? *bytes : -1;
}

// A log of records each written 4 times (a create and three renames), then the owner's
// collection: how fast each node makes the superseded batches hollow, what the log
// weighs before and after, and what a new node's catch-up from the log costs before and
// after (bytes of batches, seconds), with the same records in the end.
void CompactBench() {
  const int64_t total = absl::GetFlag(FLAGS_compact_records);
  if (total <= 0) return;
  constexpr int kVersions = 4;
  constexpr char kOwner[] = "200046977";
  const std::string base = absl::StrCat(absl::GetFlag(FLAGS_dir), "/interco-compact-bench-",
                                        ::getpid());
  interco::node::SystemClock clock;
  auto owner = OpenBenchStore(base + "-owner", clock, kOwner);
  auto full = OpenBenchStore(base + "-full", clock, "210100012");
  auto compacted = OpenBenchStore(base + "-compacted", clock, "210104519");
  if (!owner.ok() || !full.ok() || !compacted.ok()) return;
  constexpr uint32_t kOrigin = 217400423;
  interco::v1::Registry def;
  def.set_owner(kOwner);
  auto* spec = def.mutable_schema()->add_fields();
  spec->set_name("nom");
  spec->set_type(interco::v1::FIELD_TYPE_STRING);
  def.mutable_policy()->mutable_writers()->add_authorities(
      interco::replication::OriginToSiren(kOrigin));
  for (auto* s : {&*owner, &*full, &*compacted}) {
    const interco::replication::Principal admin{"interco.bench", (*s)->authority(), "admin"};
    if (!(*s)->CreateRegistry("bench", def, admin).ok()) return;
  }
  interco::node::Sha256Hasher hasher;
  std::string prev;
  uint64_t seq = 1;
  uint64_t hlc = interco::replication::HybridLogicalClock::Pack(
      static_cast<uint64_t>(clock.NowMillis()) - 600000, 0);
  std::vector<uint64_t> created(static_cast<size_t>(total));
  int64_t batches = 0;
  // The origin signs runs of 32 batches, as a node under a steady load does
  // (limits::kRunBatchesMax), and its last batch.
  BenchSigner signer;
  const int64_t batches_total = kVersions * ((total + 511) / 512);
  for (int v = 0; v < kVersions; ++v) {
    for (int64_t k = 0; k < total; k += 512) {
      std::vector<std::string> changes;
      for (int64_t j = k; j < std::min(total, k + 512); ++j) {
        Change c;
        c.set_key(absl::StrCat("equipement-", j));
        ++hlc;
        if (v == 0) created[static_cast<size_t>(j)] = hlc;
        RecordState* d = c.mutable_delta();
        d->set_causal_length(1);
        d->set_cl_hlc(created[static_cast<size_t>(j)]);
        d->set_cl_origin(kOrigin);
        auto* fs = d->add_fields();
        fs->set_name("nom");
        fs->set_hlc(hlc);
        fs->set_origin(kOrigin);
        fs->mutable_value()->set_string_value(absl::StrCat("Équipement sportif ", j, " (", v, ")"));
        c.set_author("217400423/sync");
        interco::replication::CompactChange(c, kOrigin, hlc);
        changes.push_back(c.SerializeAsString());
      }
      const uint32_t run_index =
          static_cast<uint32_t>(batches % static_cast<int64_t>(interco::limits::kRunBatchesMax));
      const bool signs = run_index + 1 == interco::limits::kRunBatchesMax ||
                         batches + 1 == batches_total;
      const auto batch = NextBatch(kOrigin, std::move(changes), hlc, hasher, seq, prev,
                                   signs ? &signer : nullptr, run_index);
      auto decoded = interco::replication::DecodeBatch(batch, hasher);
      if (absl::Status s = (*owner)->ApplyRemoteBatch("bench", *decoded); !s.ok()) {
        std::fprintf(stderr, "compact bench: %s\n", s.ToString().c_str());
        return;
      }
      batches++;
    }
  }
  auto log_bytes = [&] {
    (void)(*owner)->Compact();
    return (*owner)->SizeByFamily()["log"];
  };
  const int64_t log_before = log_bytes();
  auto t0 = std::chrono::steady_clock::now();
  const int64_t full_bytes = CatchUpFromLog(**owner, **full);
  const double full_secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const interco::replication::VersionVector position = *(*owner)->Position("bench");
  interco::replication::CollectionPlan plan{position, position, (*owner)->Members("bench")};
  plan.journal_before =
      interco::replication::HybridLogicalClock::Pack(static_cast<uint64_t>(clock.NowMillis()), 0);
  plan.compaction_changes = 1;
  // The creates and the last renames stay; the two renames between go.
  const uint64_t expected = static_cast<uint64_t>(batches / kVersions * (kVersions - 2));
  t0 = std::chrono::steady_clock::now();
  absl::StatusOr<bool> collected = (*owner)->Collect("bench", plan);
  uint64_t hollowed = 0;
  // The owner's own writes go on meanwhile.
  LocalWriter local(**owner,
                    interco::replication::Principal{"interco.bench", (*owner)->authority(), "admin"},
                    "nom");
  for (int i = 0; i < 60000 && collected.ok() && *collected; ++i) {
    hollowed = (*owner)->CollectedOf("bench")->hollowed_batches;
    if (hollowed >= expected) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // Then the stretches of hollow batches from a run's start to a run's end fold into one
  // skip each, in one op here (fewer than a fold pass's entries).
  uint64_t folded = 0;
  for (int i = 0; i < 60000 && hollowed >= expected && folded == 0; ++i) {
    folded = (*owner)->CollectedOf("bench")->folded_batches;
    if (folded == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const double compact_secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::vector<double> local_ms = local.Stop();
  const int64_t log_after = log_bytes();
  t0 = std::chrono::steady_clock::now();
  const int64_t compacted_bytes = CatchUpFromLog(**owner, **compacted);
  const double compacted_secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  bool same = compacted_bytes > 0;
  for (int64_t k = 0; same && k < total; k += std::max<int64_t>(1, total / 1000)) {
    const std::string id = absl::StrCat("equipement-", k);
    same = (*compacted)->StoredState("bench", id)->value().SerializeAsString() ==
           (*owner)->StoredState("bench", id)->value().SerializeAsString();
  }
  auto check = (*compacted)->CheckConsistency();
  const uint64_t received_hollow = (*compacted)->CollectedOf("bench")->hollow_received;
  for (auto* s : {&*owner, &*full, &*compacted}) s->reset();
  for (const char* d : {"-owner", "-full", "-compacted"}) std::filesystem::remove_all(base + d);
  if (!collected.ok() || !*collected || hollowed < expected || full_bytes < 0 ||
      compacted_bytes < 0) {
    std::fprintf(stderr, "compact bench: %llu of %llu batches made hollow\n",
                 static_cast<unsigned long long>(hollowed),
                 static_cast<unsigned long long>(expected));
    return;
  }
  const double changes = static_cast<double>(batches) * 512;
  std::printf("compaction: %lld records written %d times (%lld batches of 512): %llu batches "
              "made hollow, then %llu log entries folded into skips, in %.2f s (%.0f batches/s, "
              "%.0f changes looked at per s); log %.2f MB -> %.2f MB; a new node's catch-up from "
              "the log: %.2f MB in %.2f s before, %.2f MB in %.2f s after (%llu hollow batches or "
              "skips received); same records: %s; %s\n",
              static_cast<long long>(total), kVersions, static_cast<long long>(batches),
              static_cast<unsigned long long>(hollowed), static_cast<unsigned long long>(folded),
              compact_secs, static_cast<double>(batches) / compact_secs, changes / compact_secs,
              static_cast<double>(log_before) / 1e6, static_cast<double>(log_after) / 1e6,
              static_cast<double>(full_bytes) / 1e6, full_secs,
              static_cast<double>(compacted_bytes) / 1e6, compacted_secs,
              static_cast<unsigned long long>(received_hollow), same ? "yes" : "NO",
              check.ok() ? "consistent" : check.status().ToString().c_str());
  std::printf("local writes during compaction: %zu, p50 %.2f ms, p99 %.2f ms\n", local_ms.size(),
              Percentile(local_ms, 0.5), Percentile(local_ms, 0.99));
  std::printf("{\"bench\":\"replication\",\"phase\":\"local_writes_during_compaction\","
              "\"count\":%zu,\"p50_ms\":%.3f,\"p99_ms\":%.3f}\n",
              local_ms.size(), Percentile(local_ms, 0.5), Percentile(local_ms, 0.99));
  std::printf("{\"bench\":\"replication\",\"phase\":\"compact\",\"records\":%lld,"
              "\"batches\":%lld,\"hollowed\":%llu,\"folded\":%llu,\"seconds\":%.3f,\"log_bytes_before\":%lld,"
              "\"log_bytes_after\":%lld,\"catchup_bytes_before\":%lld,\"catchup_seconds_before\":%.3f,"
              "\"catchup_bytes_after\":%lld,\"catchup_seconds_after\":%.3f}\n",
              static_cast<long long>(total), static_cast<long long>(batches),
              static_cast<unsigned long long>(hollowed), static_cast<unsigned long long>(folded),
              compact_secs, static_cast<long long>(log_before), static_cast<long long>(log_after),
              static_cast<long long>(full_bytes), full_secs,
              static_cast<long long>(compacted_bytes), compacted_secs);
}

// A collection that leaves a member out refuses a batch this node applied before it came:
// the store replays its whole log without it. Reports the time of that apply (the replay
// included) and its pace in batches and records per second.
void ReplayBench() {
  const int64_t total = absl::GetFlag(FLAGS_replay_records);
  if (total <= 0) return;
  const std::string dir = absl::StrCat(absl::GetFlag(FLAGS_dir), "/interco-replay-bench-",
                                       ::getpid());
  interco::node::SystemClock clock;
  auto store = OpenBenchStore(dir, clock);
  if (!store.ok()) return;
  constexpr uint32_t kOwner = 200071751;   // the registry's owner
  constexpr uint32_t kWriter = 217400423;  // writes the records
  constexpr uint32_t kAbsent = 210100012;  // left out
  interco::v1::Registry def;
  def.set_owner(interco::replication::OriginToSiren(kOwner));
  auto* spec = def.mutable_schema()->add_fields();
  spec->set_name("nom");
  spec->set_type(interco::v1::FIELD_TYPE_STRING);
  for (uint32_t w : {kWriter, kAbsent}) {
    def.mutable_policy()->mutable_writers()->add_authorities(interco::replication::OriginToSiren(w));
  }
  const interco::replication::Principal admin{"interco.bench", "200046977", "admin"};
  if (!(*store)->CreateRegistry("bench", def, admin).ok()) return;
  interco::node::Sha256Hasher hasher;
  auto apply = [&](const interco::replication::v1::Batch& batch) {
    auto decoded = interco::replication::DecodeBatch(batch, hasher);
    absl::Status s = decoded.ok() ? (*store)->ApplyRemoteBatch("bench", *decoded) : decoded.status();
    if (!s.ok()) std::fprintf(stderr, "replay bench: %s\n", s.ToString().c_str());
    return s.ok();
  };
  uint64_t hlc = interco::replication::HybridLogicalClock::Pack(
      static_cast<uint64_t>(clock.NowMillis()) - 60000, 0);
  auto change = [&](uint32_t origin, const std::string& key) {
    Change c;
    c.set_key(key);
    ++hlc;
    RecordState* d = c.mutable_delta();
    d->set_causal_length(1);
    d->set_cl_hlc(hlc);
    d->set_cl_origin(origin);
    auto* fs = d->add_fields();
    fs->set_name("nom");
    fs->set_hlc(hlc);
    fs->set_origin(origin);
    fs->mutable_value()->set_string_value(absl::StrCat("Équipement ", key));
    c.set_author(absl::StrCat(interco::replication::OriginToSiren(origin), "/sync"));
    interco::replication::CompactChange(c, origin, hlc);
    return c.SerializeAsString();
  };
  std::string prev;
  uint64_t seq = 1;
  int64_t batches = 0;
  for (int64_t k = 0; k < total; k += 512) {
    std::vector<std::string> changes;
    for (int64_t j = k; j < std::min(total, k + 512); ++j) {
      changes.push_back(change(kWriter, absl::StrCat("equipement-", j)));
    }
    if (!apply(NextBatch(kWriter, std::move(changes), hlc, hasher, seq, prev))) return;
    batches++;
  }
  // The absent member's one write, applied here; the owner never got it.
  std::string absent_prev;
  uint64_t absent_seq = 1;
  std::string offline = change(kAbsent, "hors-ligne");  // (stamped before the batch is)
  if (!apply(NextBatch(kAbsent, {std::move(offline)}, hlc, hasher, absent_seq, absent_prev))) {
    return;
  }
  // The owner's collection, leaving it out with nothing held of it (a cut of 0).
  interco::replication::v1::Change c;
  interco::replication::v1::PolicyChange& pc = *c.mutable_policy();
  *pc.mutable_policy() = def.policy();
  pc.set_version(++hlc);
  auto* collection = pc.mutable_collection();
  auto* dot = collection->add_frontier();
  dot->set_origin(kWriter);
  dot->set_epoch(1);
  dot->set_seq(static_cast<uint64_t>(total));
  dot->set_hlc(hlc - 2);
  collection->add_excluded(kAbsent);
  c.set_author(interco::replication::OriginToSiren(kOwner));
  std::string owner_prev;
  uint64_t owner_seq = 1;
  const auto collection_batch =
      NextBatch(kOwner, {c.SerializeAsString()}, hlc, hasher, owner_seq, owner_prev);
  const auto t0 = std::chrono::steady_clock::now();
  if (!apply(collection_batch)) return;
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto refused = (*store)->RefusedOf("bench");
  auto check = (*store)->CheckConsistency();
  store->reset();
  std::filesystem::remove_all(dir);
  if (!refused.ok() || refused->batches != 1) {
    std::fprintf(stderr, "replay bench: the absent member's batch was not taken out\n");
    return;
  }
  std::printf("replay: a collection refusing 1 batch applied before it; the log of %lld "
              "batches (%lld records) replayed in %.2f s (%.0f batches/s, %.0f records/s); %s\n",
              static_cast<long long>(batches + 1), static_cast<long long>(total), secs,
              static_cast<double>(batches + 1) / secs, static_cast<double>(total) / secs,
              check.ok() ? "consistent" : check.status().ToString().c_str());
  std::printf("{\"bench\":\"replication\",\"phase\":\"replay\",\"records\":%lld,"
              "\"batches\":%lld,\"seconds\":%.3f,\"records_per_s\":%.0f}\n",
              static_cast<long long>(total), static_cast<long long>(batches + 1), secs,
              static_cast<double>(total) / secs);
}

// Serves Reconcile from one store to one peer, as the peer manager does once it has
// authenticated the peer.
class ReconcileServer final : public interco::replication::v1::PeerService::Service {
 public:
  ReconcileServer(interco::node::RecordStore& store, uint32_t peer) : store_(store), peer_(peer) {}
  grpc::Status Reconcile(grpc::ServerContext* /*ctx*/,
                         const interco::replication::v1::ReconcileRequest* request,
                         interco::replication::v1::ReconcileResponse* response) override {
    return interco::node::ToGrpcStatus(interco::node::ServeReconcile(store_, peer_, *request, *response));
  }

 private:
  interco::node::RecordStore& store_;
  const uint32_t peer_;
};

void RepairBench() {
  using interco::testing::kBourg;
  using interco::testing::kLyon;
  const int64_t n = absl::GetFlag(FLAGS_repair_records);
  if (n <= 0) return;
  const std::string dir = absl::StrCat(absl::GetFlag(FLAGS_dir), "/interco-repair-bench-", ::getpid());
  interco::node::SystemClock clock;
  std::filesystem::create_directories(dir);
  auto source = OpenBenchStore(dir + "/source", clock, kLyon);
  auto target = OpenBenchStore(dir + "/target", clock, kBourg);
  if (!source.ok() || !target.ok()) return;
  interco::v1::Registry def;
  def.set_owner(kLyon);
  for (const char* f : {"nom", "commune"}) {
    auto* spec = def.mutable_schema()->add_fields();
    spec->set_name(f);
    spec->set_type(interco::v1::FIELD_TYPE_STRING);
  }
  def.mutable_policy()->mutable_writers()->add_authorities("217400423");
  def.mutable_policy()->mutable_readers()->add_authorities(kBourg);
  for (auto* store : {source->get(), target->get()}) {
    const interco::replication::Principal node{"interco.bench", store->authority(), ""};
    if (!store->CreateRegistry("bench", def, node).ok()) return;
  }
  // The same records on both: one origin's batches of 512 changes, applied to each.
  constexpr uint32_t kOrigin = 217400423;
  interco::node::Sha256Hasher hasher;
  std::string prev;
  uint64_t seq = 1;
  uint64_t hlc = interco::replication::HybridLogicalClock::Pack(
      static_cast<uint64_t>(clock.NowMillis()) - 60000, 0);
  auto change = [&](int64_t k, const std::string& nom) {
    Change c;
    c.set_key(absl::StrCat("equipement-", k));
    ++hlc;
    RecordState* d = c.mutable_delta();
    d->set_causal_length(1);
    d->set_cl_hlc(hlc);
    d->set_cl_origin(kOrigin);
    for (const auto& [name, value] :
         {std::pair<std::string, std::string>{"commune", absl::StrCat("0", 1000 + k % 400)},
          std::pair<std::string, std::string>{"nom", nom}}) {
      auto* fs = d->add_fields();
      fs->set_name(name);
      fs->set_hlc(hlc);
      fs->set_origin(kOrigin);
      fs->mutable_value()->set_string_value(value);
    }
    c.set_author("217400423/sync");
    interco::replication::CompactChange(c, kOrigin, hlc);
    return c.SerializeAsString();
  };
  auto apply = [&](std::vector<std::string> changes,
                   std::initializer_list<interco::node::RecordStore*> stores) -> bool {
    const interco::replication::v1::Batch batch =
        NextBatch(kOrigin, std::move(changes), hlc, hasher, seq, prev);
    auto decoded = interco::replication::DecodeBatch(batch, hasher);
    for (auto* store : stores) {
      if (absl::Status s = store->ApplyRemoteBatch("bench", *decoded); !s.ok()) {
        std::fprintf(stderr, "repair fill: %s\n", s.ToString().c_str());
        return false;
      }
    }
    return true;
  };
  const auto fill0 = std::chrono::steady_clock::now();
  for (int64_t k = 0; k < n; k += 512) {
    std::vector<std::string> changes;
    for (int64_t j = k; j < std::min(n, k + 512); ++j) {
      changes.push_back(change(j, absl::StrCat("Équipement sportif ", j)));
    }
    if (!apply(std::move(changes), {source->get(), target->get()})) return;
  }
  const double fill_secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - fill0).count();

  // The source answers over loopback mTLS with its node certificate; the target dials
  // with its own, as the peer manager does.
  ReconcileServer service(**source, *interco::replication::SirenToOrigin(kBourg));
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0",
                           interco::node::MakeServerCredentials(
                               interco::node::TlsFiles::InDirectory(interco::testing::NodeTlsDir(kLyon)),
                               interco::testing::kFederation),
                           &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  auto stub = interco::replication::v1::PeerService::NewStub(
      interco::testing::MtlsChannel(port, interco::testing::NodeTlsDir(kBourg)));
  std::printf("repair: %lld records on both stores (filled in %.1f s)\n", static_cast<long long>(n),
              fill_secs);
  // The target (Bourg's node) repairs from the source (Lyon's).
  interco::node::RepairOptions options;
  options.registry = "bench";
  options.federation = interco::testing::kFederation;
  options.peer = *interco::replication::SirenToOrigin(kLyon);
  options.caller = interco::replication::Principal{"interco.bench", kBourg, "admin"};
  options.call_timeout_ms = 600000;
  int64_t next = 0;  // the records changed so far: 0..next-1, spread over the key space
  for (int64_t d : {0, 1, 10, 100, 1000}) {
    std::vector<std::string> changes;
    for (int64_t i = 0; i < d; ++i, ++next) {
      const int64_t k = (next * 7919) % n;
      changes.push_back(change(k, absl::StrCat("Équipement sportif ", k, " (rénové)")));
    }
    if (!changes.empty() && !apply(std::move(changes), {source->get()})) return;
    auto report = interco::node::RepairFrom(**target, *stub, clock, options);
    if (!report.ok()) {
      std::fprintf(stderr, "repair: %s\n", report.status().ToString().c_str());
      return;
    }
    const uint64_t bytes = report->bytes_sent() + report->bytes_received();
    const uint64_t bound = 3072 + 1536 * static_cast<uint64_t>(d);
    std::printf("repair: d=%-5lld %6llu bytes (%s per difference), %u requests, %lld ms; "
                "%llu records changed; bound 3 KB + 1.5 KB x d = %llu bytes: %s\n",
                static_cast<long long>(d), static_cast<unsigned long long>(bytes),
                d == 0 ? "-" : absl::StrCat(bytes / static_cast<uint64_t>(d)).c_str(),
                report->rounds(), static_cast<long long>(report->duration_ms()),
                static_cast<unsigned long long>(report->records_changed()),
                static_cast<unsigned long long>(bound), bytes <= bound ? "within" : "OVER");
    std::printf("{\"bench\":\"replication\",\"phase\":\"repair\",\"records\":%lld,"
                "\"differences\":%lld,\"bytes\":%llu,\"bytes_sent\":%llu,"
                "\"bytes_received\":%llu,\"requests\":%u,\"ms\":%lld,\"records_changed\":%llu,"
                "\"bound_bytes\":%llu,\"within_bound\":%s}\n",
                static_cast<long long>(n), static_cast<long long>(d),
                static_cast<unsigned long long>(bytes),
                static_cast<unsigned long long>(report->bytes_sent()),
                static_cast<unsigned long long>(report->bytes_received()), report->rounds(),
                static_cast<long long>(report->duration_ms()),
                static_cast<unsigned long long>(report->records_changed()),
                static_cast<unsigned long long>(bound), bytes <= bound ? "true" : "false");
  }
  // A new, empty copy: the source's registry read in one pass (a scan), merged here.
  target->reset();
  auto fresh = OpenBenchStore(dir + "/fresh", clock, kBourg);
  if (!fresh.ok()) return;
  {
    const interco::replication::Principal node{"interco.bench", kBourg, ""};
    if (!(*fresh)->CreateRegistry("bench", def, node).ok()) return;
  }
  auto report = interco::node::RepairFrom(**fresh, *stub, clock, options);
  if (report.ok()) {
    const double secs = static_cast<double>(report->duration_ms()) / 1000.0;
    const uint64_t bytes = report->bytes_sent() + report->bytes_received();
    std::printf("repair of an empty copy: %llu records in %.1f s (%.0f records/s), %.1f MB "
                "(%.0f bytes per record), %u requests\n",
                static_cast<unsigned long long>(report->records_changed()), secs,
                static_cast<double>(report->records_changed()) / secs,
                static_cast<double>(bytes) / 1e6,
                static_cast<double>(bytes) / static_cast<double>(report->records_changed()),
                report->rounds());
    std::printf("{\"bench\":\"replication\",\"phase\":\"repair_empty\",\"records\":%llu,"
                "\"seconds\":%.3f,\"records_per_s\":%.0f,\"bytes\":%llu,\"requests\":%u}\n",
                static_cast<unsigned long long>(report->records_changed()), secs,
                static_cast<double>(report->records_changed()) / secs,
                static_cast<unsigned long long>(bytes), report->rounds());
  } else {
    std::fprintf(stderr, "repair of an empty copy: %s\n", report.status().ToString().c_str());
  }
  server->Shutdown();
  source->reset();
  fresh->reset();
  std::filesystem::remove_all(dir);
}

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  ApplyBench();
  CollectBench();
  CompactBench();
  ReplayBench();
  RepairBench();
  CatchUpBench();
  if (!absl::GetFlag(FLAGS_skip_sim)) SimBench();
  return 0;
}
