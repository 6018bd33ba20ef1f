// A deterministic simulation of a federation: N nodes running the real replication
// engine over a simulated network, driven by one seeded PRNG.
//
// Time is simulated (milliseconds); the network delays, loses, duplicates and reorders
// messages, partitions links, and crashes and restarts nodes; each node's wall clock is
// skewed. A run has a fault phase with local writes everywhere, then a heal phase
// (network repaired, clocks corrected, every node up) that must converge. One seed
// reproduces a run exactly.
#ifndef INTERCO_TESTS_SIM_SIM_CLUSTER_H_
#define INTERCO_TESTS_SIM_SIM_CLUSTER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "replication/registry_schema.h"
#include "replication/replicator.h"
#include "tests/sim/sim_store.h"

namespace interco::sim {

struct SimOptions {
  uint64_t seed = 1;
  // Fault phase, then at most this long to converge after healing.
  int64_t fault_phase_ms = 20000;
  int64_t converge_within_ms = 120000;
  // Upper bounds; each run draws its own values below them from the seed.
  int nodes_max = 7;
  double loss_max = 0.10;
  double duplication_max = 0.05;
  int64_t delay_max_ms = 200;
  int64_t clock_skew_max_ms = 3600 * 1000;
  bool crashes = true;
  bool partitions = true;
  // Writes per node per simulated second during the fault phase (mean).
  double write_rate = 5;
  // Fixed network for latency experiments (no faults): when > 0, every link has this
  // delay and the run uses `nodes_max` nodes in a full mesh.
  int64_t fixed_delay_ms = 0;
  // Also count what the stability reports would weigh written whole, each report read
  // back against its status's position and written again without it
  // (SimResult::report_bytes_whole).
  bool measure_whole_reports = false;
  // A Byzantine relay: node 0 alters about half of the batches of other origins it
  // forwards (a change's bytes, the header, or the signature), for the whole run. The
  // topology is then a full mesh, so that honest copies have a path.
  bool byzantine_relay = false;
  // Policy churn: node 0 owns stream "commun" and, during the fault phase, changes who may
  // write it (random subsets of the other nodes). Writes of non-writers are refused
  // locally (never acknowledged); every batch is judged by the policy version it was
  // written under, held back where that version has not arrived yet.
  bool policy_changes = false;
  // Journal retention of the owners (ReplicatorOptions::journal_retention_ms); -1: drawn
  // from the seed (none for odd seeds, 5 to 60 s for even ones).
  int64_t journal_retention_ms = -1;
  // Member retention of the owners (ReplicatorOptions::member_retention_ms): members that
  // do not catch up within it are left out of collections, and what they wrote meanwhile
  // is refused. -1: drawn from the seed (4 to 15 s for seeds that are 2 modulo 3, none
  // otherwise).
  int64_t member_retention_ms = -1;
};

// What a run found. `failure` is empty on success.
struct SimResult {
  std::string failure;
  std::string description;  // topology, fault profile
  int64_t converged_after_ms = -1;
  // From convergence until every node's stable frontier held everything.
  int64_t stable_after_ms = -1;
  // Collections committed by owners, and records they removed (counted on every node).
  uint64_t collections = 0;
  uint64_t collected = 0;
  // Removed set elements collections took out of records (counted on every node).
  uint64_t purged = 0;
  uint64_t writes = 0;
  uint64_t messages = 0;
  uint64_t messages_dropped = 0;
  // Serialized bytes of the messages counted in `messages`; of them, the stability
  // reports statuses carry (Ack.reports), and the statuses that carry some.
  uint64_t message_bytes = 0;
  uint64_t report_bytes = 0;
  uint64_t statuses = 0;
  // With SimOptions::measure_whole_reports: report_bytes had every report been whole.
  uint64_t report_bytes_whole = 0;
  uint64_t crashes = 0;
  // Byzantine runs: batches the relay altered, stability reports of other members it
  // inflated, and batches and reports refused by the receivers (unverified or malformed)
  // over the run.
  uint64_t tampered = 0;
  uint64_t reports_inflated = 0;
  uint64_t refused = 0;
  // Policy churn runs: policy versions set by the owner, local writes refused by the
  // policy in force, and batches held back for a policy version not yet applied.
  uint64_t policy_changes = 0;
  uint64_t refused_writes = 0;
  uint64_t policy_waits = 0;
  // Register writes that lost a race (each in every node's conflict journal), and records
  // whose journal reached its bound on some node (not compared there).
  uint64_t conflicts = 0;
  uint64_t conflicts_bounded = 0;
  // Of those, losers stamped below the journal retention's cut in force on a node (not
  // expected in its journal; counted once per node).
  uint64_t conflicts_expired = 0;
  // Batches their origin left to the signature of a later batch of the run.
  uint64_t unsigned_batches = 0;
  // Members left out: collections that left some out; batches refused for it (on every
  // node, counted once per receipt); replays of a stream's log without batches a
  // collection refused after they were applied; acknowledged writes so refused (each
  // kept by its origin).
  uint64_t exclusions = 0;
  uint64_t excluded_batches = 0;
  uint64_t replays = 0;
  uint64_t refused_acked = 0;
  // Compaction of the change log: batches made hollow (on every node), and hollow batches
  // a node received and applied.
  uint64_t hollowed = 0;
  uint64_t hollow_applied = 0;
  // Of them, skips (Batch.skip_from: one standing for a stretch of hollow batches).
  uint64_t skips_applied = 0;
  // Log entries that folding hollow stretches into skips in place took out (every node).
  uint64_t folded = 0;
  // Divergence checks: digests received at the receiver's own position, all matching
  // (a divergence fails the run).
  uint64_t digests_matched = 0;
  // Delivery latency of writes (from commit at the origin to applied at the last
  // subscriber), milliseconds, one entry per write; filled when measured.
  std::vector<int64_t> delivery_ms;
};

SimResult RunSimulation(const SimOptions& options);

}  // namespace interco::sim

#endif  // INTERCO_TESTS_SIM_SIM_CLUSTER_H_
