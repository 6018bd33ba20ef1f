// RecordStore's commit-path types, shared by its translation units (record_store.cc,
// audit.cc). Not part of the store's interface.
#ifndef INTERCO_NODE_STORAGE_RECORD_STORE_INTERNAL_H_
#define INTERCO_NODE_STORAGE_RECORD_STORE_INTERNAL_H_

#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <rocksdb/write_batch.h>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "node/storage/record_store.h"
#include "replication/base/strings.h"
#include "replication/conflict_journal.h"

namespace interco::node {

inline rocksdb::Slice ToSlice(std::string_view s) { return rocksdb::Slice(s.data(), s.size()); }
inline std::string_view ToView(const rocksdb::Slice& s) {
  return std::string_view(s.data(), s.size());
}

// Parses a stored message; DATA_LOSS naming `what` if it does not parse.
template <typename Message>
absl::Status ParseStored(std::string_view bytes, Message& out, std::string_view what) {
  if (!out.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::DataLossError(absl::StrCat("stored ", ToAbsl(what), " does not parse"));
  }
  return absl::OkStatus();
}

struct RecordStore::Op {
  enum class Type {
    kCreateRegistry,
    kUpdateRegistry,
    kWrite,
    kApplyRemote,
    kAudit,
    kNewEpoch,
    // Signs this node's unsigned batches at the end of its streams.
    kSignTails,
    // As the registry's owner: a collection of stable tombstones (RecordStore::Collect).
    kCollect,
    // Record states a peer sent by repair, merged into ours (RecordStore::Repair).
    kRepair,
    // Log batches the compactor found superseded, made hollow once checked again
    // (RecordStore::ApplyCompact).
    kCompact,
  };
  Type type = Type::kWrite;
  std::string registry;
  std::string key;
  replication::LocalWrite write;
  replication::Principal caller;
  interco::v1::Registry definition;
  // kUpdateRegistry: the fields to update, and the etag the registry must have (if set).
  std::vector<std::string> paths;
  std::string etag;
  // kApplyRemote: the batch (owned by the caller, who waits for the outcome); `replayed`
  // when it comes from this node's own log, applied again by a replay (not audited again).
  const replication::DecodedBatch* remote = nullptr;
  bool replayed = false;
  // kApplyRemote of a skip, once staged: the sequence number its log entry went under
  // (it brought every batch from there to its last).
  uint64_t logged_at = 0;
  // kApplyRemote of a batch merged in slices: the first change the next slice merges,
  // and whether the op goes on in a next commit group (set by the slice just staged).
  size_t next_change = 0;
  bool continuing = false;
  // Whether it let the ops queued behind it commit without it once since its last slice.
  bool yielded = false;
  // kAudit: events to append.
  std::vector<interco::v1::AuditEvent> audit_events;
  // kCollect: the owner's stable frontier and what a node must hold to act on it, the
  // members it waited for, the journals' cut, the members it left out (cut where this
  // node holds them when the collection is staged); and whether a collection was
  // committed.
  replication::VersionVector frontier;
  replication::VersionVector required;
  std::vector<uint32_t> members;
  uint64_t journal_before = 0;
  std::vector<uint32_t> excluded;
  // kCollect: collect for the compaction of the change log too (CollectionPlan).
  uint64_t compaction_changes = 0;
  bool collected = false;
  // kRepair: the peer the states come from (audited as their origin), the states, and how
  // many of them changed a record here.
  uint32_t peer = 0;
  uint64_t peer_policy_version = 0;
  std::vector<std::pair<std::string, replication::RecordState>> repaired;
  uint64_t repaired_changed = 0;
  // kCompact: the log keys of batches found superseded (checked again when staged)...
  std::vector<std::string> compact_keys;
  // ...or of stretches of log entries to fold into one skip each, in order (checked again
  // when staged: replication::FoldableStretches must take each whole).
  std::vector<std::vector<std::string>> fold_stretches;

  absl::Status status;
  interco::v1::Record record;
  interco::v1::Registry registry_out;
  // Called once by the committer thread with the outcome.
  std::function<void(Op&)> done;
};

// What a commit group has staged so far, on top of the committed state.
struct RecordStore::GroupState {
  rocksdb::WriteBatch batch;
  // Registries touched by the group, with their staged metadata.
  std::map<std::string, RegistryRuntime> registries;
  // Record states written earlier in the group, by records-family key.
  absl::flat_hash_map<std::string, replication::RecordState> records;
  // Set when an op failed after staging part of its effect (a remote batch whose record
  // or journal could not be read half-way): the group is then not committed at all, so
  // that nothing is half-applied.
  absl::Status broken;
  // Conflict journals read or written earlier in the group, by records-family key.
  absl::flat_hash_map<std::string, replication::RecordConflicts> conflicts;
  // Serialized changes per registry, for this group's change-log batches.
  std::map<std::string, std::vector<std::string>> changes;
  std::map<std::string, uint64_t> max_hlc;
  // The policy version in force at the group's first own change of a registry (its
  // batch's policy_version: the origin was a writer under it).
  std::map<std::string, uint64_t> policy_version;
  // Registries whose batch of this group carries a policy change of this node's.
  std::set<std::string> policy_batches;
  // Registries this group really changes (a no-op write stages nothing).
  std::set<std::string> dirty;
  size_t bytes = 0;
  // Audit chains this group appends to, with their staged ends.
  std::map<std::string, AuditChain> audit;
  // The group starts a new origin epoch (NodeMeta must be written).
  bool new_epoch = false;
  // Unsigned runs of own batches as the group leaves them, per registry (nullopt: its
  // tail is now signed); unsigned_runs_ takes them once the group is durable.
  std::map<std::string, std::optional<UnsignedRun>> runs;
  // RecordStore::old_tails_ are signed in this group.
  bool old_tails_signed = false;
  // Change-log entries a skip replaced in this group (a run broken off here; the skip
  // goes under the first of them, any other entry the group logs is new): compaction,
  // which reads the committed log, leaves them alone.
  std::set<std::string> log_rewritten;
  // Tombstones-family entries put earlier in the group (by key), with their values.
  std::map<std::string, std::string> tombstones;
  // Tombstones this node's own changes set, per registry, indexed once the group's batch
  // of the registry is sealed (its epoch and first sequence number known): the position
  // of the change in the batch, the record, its causal length and the delete's HLC.
  struct OwnTombstone {
    size_t index = 0;
    std::string id;
    uint32_t causal_length = 0;
    uint64_t hlc = 0;
  };
  std::map<std::string, std::vector<OwnTombstone>> own_tombstones;
  // Removals-family entries put earlier in the group (by key), with their values.
  std::map<std::string, std::string> removals;
  // Set elements this node's own changes removed, per registry, indexed once the group's
  // batch of the registry is sealed: the position of the change in the batch, the record,
  // and what it removed (replication::RemovalsOf).
  struct OwnRemovals {
    size_t index = 0;
    std::string id;
    replication::RecordState removals;
  };
  std::map<std::string, std::vector<OwnRemovals>> own_removals;
  // What the group adds to bucket sums of live records' digests (mod 2^64), by
  // fingerprints-family key; written as merge operands.
  std::map<std::string, uint64_t> fingerprints;
  // Registries a collection of the group marked for a replay (RegistryMeta.replay), run
  // once the group is durable.
  std::set<std::string> replays;
  // Registries a collection of the group gave a new frontier or journal cut: their change
  // log is compacted once the group is durable.
  std::set<std::string> compactions;
};

}  // namespace interco::node

#endif  // INTERCO_NODE_STORAGE_RECORD_STORE_INTERNAL_H_
