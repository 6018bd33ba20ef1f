// The replication engine under the deterministic simulator.
//
//   INTERCO_SIM_SEEDS=N   number of seeds of SimTest.SeedSweep (default 1000)
//   INTERCO_SIM_FIRST=S   first seed (default 1)
//   INTERCO_SIM_SEED=S    run only seed S (replay a failure), with its description
// A failing seed prints itself and a command that replays it exactly.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "gtest/gtest.h"
#include "tests/sim/sim_cluster.h"

namespace interco::sim {
namespace {

uint64_t EnvInt(const char* name, uint64_t fallback) {
  uint64_t v = fallback;
  if (const char* s = std::getenv(name)) {
    if (!absl::SimpleAtoi(s, &v)) v = fallback;
  }
  return v;
}

TEST(SimTest, SeedSweep) {
  uint64_t first = EnvInt("INTERCO_SIM_FIRST", 1);
  uint64_t count = EnvInt("INTERCO_SIM_SEEDS", 1000);
  if (const char* only = std::getenv("INTERCO_SIM_SEED")) {
    ASSERT_TRUE(absl::SimpleAtoi(only, &first));
    count = 1;
  }
  int64_t worst_convergence_ms = 0, worst_stability_ms = 0;
  uint64_t writes = 0, messages = 0, crashes = 0, unsigned_batches = 0, conflicts = 0,
           conflicts_bounded = 0, conflicts_expired = 0, collections = 0, collected = 0,
           purged = 0, exclusions = 0, excluded_batches = 0, replays = 0, refused_acked = 0,
           hollowed = 0, hollow_applied = 0, skips_applied = 0, folded = 0,
           digests_matched = 0;
  for (uint64_t seed = first; seed < first + count; ++seed) {
    SimOptions o;
    o.seed = seed;
    const SimResult r = RunSimulation(o);
    if (count == 1) std::printf("%s\n", r.description.c_str());
    ASSERT_TRUE(r.failure.empty())
        << "seed " << seed << " failed: " << r.failure << "\n  " << r.description
        << "\n  replay: INTERCO_SIM_SEED=" << seed << " " << ::testing::internal::GetArgvs()[0]
        << " --gtest_filter=SimTest.SeedSweep";
    worst_convergence_ms = std::max(worst_convergence_ms, r.converged_after_ms);
    worst_stability_ms = std::max(worst_stability_ms, r.stable_after_ms);
    writes += r.writes;
    messages += r.messages;
    crashes += r.crashes;
    unsigned_batches += r.unsigned_batches;
    conflicts += r.conflicts;
    conflicts_bounded += r.conflicts_bounded;
    conflicts_expired += r.conflicts_expired;
    collections += r.collections;
    collected += r.collected;
    purged += r.purged;
    exclusions += r.exclusions;
    excluded_batches += r.excluded_batches;
    replays += r.replays;
    refused_acked += r.refused_acked;
    hollowed += r.hollowed;
    hollow_applied += r.hollow_applied;
    skips_applied += r.skips_applied;
    folded += r.folded;
    digests_matched += r.digests_matched;
  }
  std::printf("sim: %llu seeds from %llu, %llu writes, %llu messages, %llu crashes, %llu batches "
              "covered by a later signature, %llu lost races journaled (%llu bounded record "
              "journals, %llu past the journal retention on some node); slowest convergence after healing %lld ms, then everything stable within "
              "%lld ms; %llu collections removed %llu tombstones and %llu removed set elements "
              "(counted on every node)\n",
              static_cast<unsigned long long>(count), static_cast<unsigned long long>(first),
              static_cast<unsigned long long>(writes), static_cast<unsigned long long>(messages),
              static_cast<unsigned long long>(crashes),
              static_cast<unsigned long long>(unsigned_batches),
              static_cast<unsigned long long>(conflicts),
              static_cast<unsigned long long>(conflicts_bounded),
              static_cast<unsigned long long>(conflicts_expired),
              static_cast<long long>(worst_convergence_ms),
              static_cast<long long>(worst_stability_ms),
              static_cast<unsigned long long>(collections),
              static_cast<unsigned long long>(collected),
              static_cast<unsigned long long>(purged));
  std::printf("sim: %llu collections left absent members out; %llu of their batches refused on "
              "receipt, %llu logs replayed without batches refused after they were applied, "
              "%llu acknowledged writes refused (kept by their origin)\n",
              static_cast<unsigned long long>(exclusions),
              static_cast<unsigned long long>(excluded_batches),
              static_cast<unsigned long long>(replays),
              static_cast<unsigned long long>(refused_acked));
  std::printf("sim: %llu log batches made hollow (every change superseded), %llu hollow batches "
              "received and applied (%llu of them skips standing for a stretch of them), %llu log "
              "entries folded into skips in place\n",
              static_cast<unsigned long long>(hollowed),
              static_cast<unsigned long long>(hollow_applied),
              static_cast<unsigned long long>(skips_applied),
              static_cast<unsigned long long>(folded));
  std::printf("sim: %llu state digests matched at a peer's position, none differed\n",
              static_cast<unsigned long long>(digests_matched));
  // What the sweep exercised: a sweep of a few dozen seeds (SimTest.ShortSweep, run under
  // the sanitizers) checks every run but need not meet each rare case; the default
  // sweep must.
  if (count >= 200) {
    EXPECT_GT(unsigned_batches, 0u) << "no run of batches: runs are not tested";
    EXPECT_GT(conflicts, 0u) << "no race lost: the conflict journal is not tested";
    EXPECT_GT(collected, 0u) << "nothing collected: garbage collection is not tested";
    EXPECT_GT(purged, 0u) << "no removed set element collected: it is not tested";
    EXPECT_GT(conflicts_expired, 0u) << "no lost write past retention: it is not tested";
    EXPECT_GT(exclusions, 0u) << "no member left out: member retention is not tested";
    EXPECT_GT(replays, 0u) << "no log replayed: refusing applied batches is not tested";
    EXPECT_GT(refused_acked, 0u) << "no write of a member left out refused: it is not tested";
    EXPECT_GT(hollowed, 0u) << "no batch made hollow: compaction of the log is not tested";
    EXPECT_GT(hollow_applied, 0u) << "no hollow batch received: catching up from one is not tested";
    EXPECT_GT(skips_applied, 0u) << "no skip received: folding hollow stretches is not tested";
    EXPECT_GT(folded, 0u) << "no hollow stretch folded in place: the rewrite is not tested";
    EXPECT_GT(digests_matched, 0u) << "no digest compared: divergence checks are not tested";
  }
}

// A relay that alters what it forwards: nothing it altered is applied anywhere (states
// stay identical and every acknowledged write intact), and the federation still converges
// through the honest paths. INTERCO_SIM_BYZANTINE_SEEDS sets the count (default 200).
TEST(SimTest, ByzantineRelaySweep) {
  const uint64_t count = EnvInt("INTERCO_SIM_BYZANTINE_SEEDS", 200);
  uint64_t tampered = 0, inflated = 0, refused = 0;
  for (uint64_t seed = 1; seed <= count; ++seed) {
    SimOptions o;
    o.seed = seed;
    o.byzantine_relay = true;
    const SimResult r = RunSimulation(o);
    ASSERT_TRUE(r.failure.empty()) << "seed " << seed << " failed: " << r.failure << "\n  "
                                   << r.description;
    tampered += r.tampered;
    inflated += r.reports_inflated;
    refused += r.refused;
  }
  std::printf(
      "byzantine sim: %llu seeds, %llu batches altered and %llu reports inflated by the relay, "
      "%llu refused\n",
      static_cast<unsigned long long>(count), static_cast<unsigned long long>(tampered),
      static_cast<unsigned long long>(inflated), static_cast<unsigned long long>(refused));
  EXPECT_GT(tampered, 0u) << "the relay altered nothing: the scenario tests nothing";
  EXPECT_GT(inflated, 0u) << "the relay inflated no report: the scenario tests nothing";
  EXPECT_GT(refused, 0u);
}

TEST(SimTest, PolicyChangeSweep) {
  const uint64_t count = EnvInt("INTERCO_SIM_POLICY_SEEDS", 200);
  uint64_t changes = 0, refused_writes = 0, waits = 0, writes = 0, collected = 0;
  for (uint64_t seed = 1; seed <= count; ++seed) {
    SimOptions o;
    o.seed = seed;
    o.policy_changes = true;
    const SimResult r = RunSimulation(o);
    ASSERT_TRUE(r.failure.empty()) << "seed " << seed << " failed: " << r.failure << "\n  "
                                   << r.description;
    changes += r.policy_changes;
    refused_writes += r.refused_writes;
    waits += r.policy_waits;
    writes += r.writes;
    collected += r.collected;
  }
  std::printf("policy sim: %llu seeds, %llu policy versions, %llu writes committed, %llu "
              "refused by the policy in force, %llu batches held for their policy version "
              "(collections among them), %llu tombstones collected\n",
              static_cast<unsigned long long>(count), static_cast<unsigned long long>(changes),
              static_cast<unsigned long long>(writes),
              static_cast<unsigned long long>(refused_writes),
              static_cast<unsigned long long>(waits), static_cast<unsigned long long>(collected));
  EXPECT_GT(changes, 0u);
  EXPECT_GT(collected, 0u) << "nothing collected under policy churn";
  EXPECT_GT(refused_writes, 0u) << "no write was refused: the churn tests nothing";
}

// The reference broadcast workload (Gossip Glomers' efficiency bar: 25 nodes in a full
// mesh, 100 ms links, 100 writes/s in all, no faults): every write reaches every node in
// under 400 ms at the median and 600 ms at worst, for fewer than 10 messages per write,
// because new batches follow a tree and each message carries all that is due to a peer.
TEST(SimTest, FullMeshBroadcastIsFastAndCheap) {
  SimOptions o;
  o.seed = 7;
  o.nodes_max = 25;
  o.fixed_delay_ms = 100;
  o.write_rate = 4;
  o.fault_phase_ms = 20000;
  const SimResult r = RunSimulation(o);
  ASSERT_TRUE(r.failure.empty()) << r.failure;
  ASSERT_GT(r.writes, 1000u);
  ASSERT_EQ(r.delivery_ms.size(), r.writes) << "writes not delivered to every node";
  std::vector<int64_t> d = r.delivery_ms;
  std::sort(d.begin(), d.end());
  const double msgs_per_write = static_cast<double>(r.messages) / static_cast<double>(r.writes);
  std::printf("broadcast: %llu writes, median %lld ms, max %lld ms, %.2f messages per write\n",
              static_cast<unsigned long long>(r.writes), static_cast<long long>(d[d.size() / 2]),
              static_cast<long long>(d.back()), msgs_per_write);
  EXPECT_LT(d[d.size() / 2], 400);
  EXPECT_LT(d.back(), 600);
  EXPECT_LT(msgs_per_write, 10.0);
}

TEST(SimTest, SameSeedReplaysExactly) {
  SimOptions o;
  o.seed = 42;
  const SimResult a = RunSimulation(o);
  const SimResult b = RunSimulation(o);
  EXPECT_EQ(a.description, b.description);
  EXPECT_EQ(a.messages, b.messages);
  EXPECT_EQ(a.writes, b.writes);
  EXPECT_EQ(a.converged_after_ms, b.converged_after_ms);
}

}  // namespace
}  // namespace interco::sim
