// Replication benchmarks.
//
//   1. Apply throughput: remote batches (decoded and checked as the engine does) applied
//      to a real RecordStore (RocksDB, fsync'd commits) — field changes per second — while a
//      local writer measures how much remote applies delay local writes.
//   2. Simulated propagation: the real engine in the deterministic simulator, a full mesh of
//      N nodes with fixed link delay — delivery latency (median, max) and messages per write.
//
// Prints a table, then one JSON object per line. See docs/BENCHMARKS.md.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "node/crypto/sha256.h"
#include "node/storage/record_store.h"
#include "node/system_clock.h"
#include "replication/change_log.h"
#include "replication/hlc.h"
#include "replication/ids.h"
#include "tests/sim/sim_cluster.h"

ABSL_FLAG(int64_t, changes, 200000, "remote record changes to apply");
ABSL_FLAG(int, batch, 512, "changes per remote batch");
ABSL_FLAG(int, fields, 4, "fields per change");
ABSL_FLAG(int, keys, 100000, "record key space");
ABSL_FLAG(std::string, dir, "/tmp", "where the temporary store goes");
ABSL_FLAG(int, sim_nodes, 25, "nodes of the simulated full mesh");
ABSL_FLAG(int64_t, sim_delay_ms, 100, "link delay of the simulated network");
ABSL_FLAG(double, sim_write_rate, 0.2, "writes per node per simulated second");
ABSL_FLAG(bool, skip_sim, false, "skip the simulated propagation benchmark");

namespace {

using interco::replication::v1::Change;
using interco::replication::v1::RecordState;

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  return v[i];
}

void ApplyBench() {
  const int64_t total = absl::GetFlag(FLAGS_changes);
  const int batch_size = absl::GetFlag(FLAGS_batch);
  const int fields = absl::GetFlag(FLAGS_fields);
  const int keys = absl::GetFlag(FLAGS_keys);
  const std::string dir = absl::StrCat(absl::GetFlag(FLAGS_dir), "/interco-replication-bench-",
                                       ::getpid());
  std::filesystem::remove_all(dir);
  interco::node::SystemClock clock;
  interco::node::RecordStoreOptions o;
  o.path = dir;
  o.authority = "200046977";
  o.clock = &clock;
  auto store = interco::node::RecordStore::Open(o);
  if (!store.ok()) {
    std::fprintf(stderr, "open: %s\n", store.status().ToString().c_str());
    return;
  }
  interco::v1::Registry def;
  for (int f = 0; f < fields; ++f) {
    auto* spec = def.mutable_schema()->add_fields();
    spec->set_name(absl::StrCat("f", f));
    spec->set_type(interco::v1::FIELD_TYPE_STRING);
  }
  const interco::replication::Principal admin{"interco.bench", "200046977", "admin"};
  if (!(*store)->CreateRegistry("bench", def, admin).ok()) return;

  // Remote batches of another origin, prepared before timing.
  constexpr uint32_t kOrigin = 217400423;  // a valid SIREN
  interco::node::Sha256Hasher hasher;
  std::vector<interco::replication::v1::Batch> batches;
  std::string prev;
  uint64_t seq = 1;
  uint64_t hlc = interco::replication::HybridLogicalClock::Pack(
      static_cast<uint64_t>(clock.NowMillis()) - 60000, 0);
  uint64_t payload_bytes = 0;
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
        fs->set_incarnation(1);
        fs->set_hlc(hlc);
        fs->set_origin(kOrigin);
        fs->mutable_value()->set_string_value(absl::StrCat("value ", done, " of field ", f));
      }
      c.set_author("217400423/sync");
      changes.push_back(c.SerializeAsString());
      payload_bytes += changes.back().size();
    }
    interco::replication::BatchParams p;
    p.origin = kOrigin;
    p.epoch = 1;
    p.stream = "bench";
    p.first_seq = seq;
    p.prev_hash = prev;
    p.max_hlc = hlc;
    seq += changes.size();
    batches.push_back(interco::replication::BuildBatch(p, std::move(changes), hasher, &prev));
  }

  // A local writer meanwhile: its latency shows whether applies block local writes.
  std::atomic<bool> stop{false};
  std::vector<double> local_ms;
  std::thread local([&] {
    int i = 0;
    while (!stop) {
      interco::replication::LocalWrite w;
      w.kind = interco::replication::LocalWrite::Kind::kUpdate;
      w.allow_missing = true;
      w.fields["f0"].set_string_value("local");
      w.mask = {"f0"};
      const auto t0 = std::chrono::steady_clock::now();
      auto r = (*store)->Write("bench", absl::StrCat("local", i++ % 1000), w, admin);
      const auto t1 = std::chrono::steady_clock::now();
      if (r.ok()) local_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });

  const auto t0 = std::chrono::steady_clock::now();
  double decode_s = 0;
  int64_t applied = 0;
  for (const auto& b : batches) {
    const auto d0 = std::chrono::steady_clock::now();
    auto decoded = interco::replication::DecodeBatch(b, hasher);
    decode_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - d0).count();
    if (!decoded.ok()) {
      std::fprintf(stderr, "decode: %s\n", decoded.status().ToString().c_str());
      break;
    }
    if (absl::Status s = (*store)->ApplyRemoteBatch("bench", *decoded); !s.ok()) {
      std::fprintf(stderr, "apply: %s\n", s.ToString().c_str());
      break;
    }
    applied += decoded->header.count();
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  stop = true;
  local.join();
  auto check = (*store)->CheckConsistency();
  store->reset();
  std::filesystem::remove_all(dir);

  const double changes_per_s = static_cast<double>(applied) / secs;
  std::printf("apply: %lld changes (%d fields each) in %.2f s: %.0f changes/s, %.0f field "
              "changes/s; decode+verify %.1f%% of the time; %.1f MB payload\n",
              static_cast<long long>(applied), fields, secs, changes_per_s,
              changes_per_s * fields, 100.0 * decode_s / secs, static_cast<double>(payload_bytes) / 1e6);
  std::printf("local writes during apply: %zu, p50 %.2f ms, p99 %.2f ms; store %s\n",
              local_ms.size(), Percentile(local_ms, 0.5), Percentile(local_ms, 0.99),
              check.ok() ? "consistent" : check.status().ToString().c_str());
  std::printf("{\"bench\":\"replication\",\"phase\":\"apply\",\"changes\":%lld,\"fields_per_change\":%d,"
              "\"batch\":%d,\"seconds\":%.3f,\"changes_per_s\":%.0f,\"field_changes_per_s\":%.0f,"
              "\"decode_share\":%.3f,\"payload_mb\":%.2f}\n",
              static_cast<long long>(applied), fields, batch_size, secs, changes_per_s,
              changes_per_s * fields, decode_s / secs, static_cast<double>(payload_bytes) / 1e6);
  std::printf("{\"bench\":\"replication\",\"phase\":\"local_writes_during_apply\",\"count\":%zu,"
              "\"p50_ms\":%.3f,\"p99_ms\":%.3f}\n",
              local_ms.size(), Percentile(local_ms, 0.5), Percentile(local_ms, 0.99));
}

void SimBench() {
  interco::sim::SimOptions o;
  o.seed = 7;
  o.nodes_max = absl::GetFlag(FLAGS_sim_nodes);
  o.fixed_delay_ms = absl::GetFlag(FLAGS_sim_delay_ms);
  o.write_rate = absl::GetFlag(FLAGS_sim_write_rate);
  o.fault_phase_ms = 20000;
  const interco::sim::SimResult r = interco::sim::RunSimulation(o);
  std::vector<double> d(r.delivery_ms.begin(), r.delivery_ms.end());
  const double msgs_per_op =
      r.writes == 0 ? 0 : static_cast<double>(r.messages) / static_cast<double>(r.writes);
  std::printf("simulated propagation: %d nodes, full mesh, %lld ms links: %llu writes, delivery "
              "median %.0f ms, max %.0f ms, %.1f messages per write%s%s\n",
              o.nodes_max, static_cast<long long>(o.fixed_delay_ms),
              static_cast<unsigned long long>(r.writes), Percentile(d, 0.5),
              d.empty() ? 0 : *std::max_element(d.begin(), d.end()), msgs_per_op,
              r.failure.empty() ? "" : "; FAILED: ", r.failure.c_str());
  std::printf("{\"bench\":\"replication\",\"phase\":\"sim_propagation\",\"nodes\":%d,\"link_ms\":%lld,"
              "\"writes\":%llu,\"delivered\":%zu,\"median_ms\":%.0f,\"max_ms\":%.0f,\"msgs_per_op\":%.1f}\n",
              o.nodes_max, static_cast<long long>(o.fixed_delay_ms),
              static_cast<unsigned long long>(r.writes), d.size(), Percentile(d, 0.5),
              d.empty() ? 0 : *std::max_element(d.begin(), d.end()), msgs_per_op);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  ApplyBench();
  if (!absl::GetFlag(FLAGS_skip_sim)) SimBench();
  return 0;
}
