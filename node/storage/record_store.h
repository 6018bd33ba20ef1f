// The local database of a node: registries, records with their CRDT state, secondary
// indexes, the per-registry change feed that watch streams read, and the per-origin
// change log that replication ships.
//
// Writes go through a group-commit queue served by one committer thread: while it
// commits a group, new writes queue up; it then takes every queued write (up to a
// bound), plans each against the latest state, and commits them all in ONE RocksDB
// WriteBatch (records, indexes, counters, feed entries and one change-log batch per
// registry), with one WAL fsync in "sync" durability. A write is acknowledged (its
// callback runs) only after that commit; a write that fails validation is left out of
// the batch and changes nothing. Callers never block a thread on a write unless they
// use the synchronous wrappers. Completion callbacks run on a completer thread, so that
// the committer starts the next group while responses go out.
//
// Thread-safe. Reads never wait for writes.
#ifndef INTERCO_NODE_STORAGE_RECORD_STORE_H_
#define INTERCO_NODE_STORAGE_RECORD_STORE_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "interco/internal/v1/storage.pb.h"
#include "interco/v1/audit.pb.h"
#include "interco/v1/provenance.pb.h"
#include "interco/v1/record.pb.h"
#include "interco/v1/registry.pb.h"
#include "interco/v1/registry_service.pb.h"
#include "interco/replication/v1/state.pb.h"
#include "node/crypto/sha256.h"
#include "replication/base/limits.h"
#include "replication/env.h"
#include "replication/hlc.h"
#include "replication/version_vector.h"
#include "replication/ids.h"
#include "replication/collection.h"
#include "replication/conflict_journal.h"
#include "replication/policy.h"
#include "replication/record_crdt.h"
#include "replication/registry_schema.h"

namespace interco::node {

class RocksDbStore;
enum class Cf : int;
}  // namespace interco::node
namespace rocksdb {
class Snapshot;
}  // namespace rocksdb
namespace interco::node {

struct RecordStoreOptions {
  // Directory of the RocksDB store. Required.
  std::string path;
  // SIREN of the authority that owns the node. Required; a store is never reopened
  // for another authority.
  std::string authority;
  // Acknowledge writes only after the WAL is fsync'd. Default: true.
  bool sync = true;
  // Change-feed entries kept per registry. Default: limits::kFeedRetentionEntriesDefault.
  uint64_t feed_retention_entries = 100000;
  // RocksDB block cache. Default: 32 MiB.
  size_t block_cache_bytes = 32 << 20;
  // Wall clock for the hybrid logical clock. Required; not owned; must outlive the store.
  replication::Clock* clock = nullptr;
  // Seeds the random feed IDs of new registries.
  uint64_t random_seed = 0;
  // Days the node's own audit chain ("node") is kept. Registries set their own.
  int32_t audit_retention_days = limits::kAuditRetentionDaysDefault;
  // Folding hollow stretches of the change log into skips: the hollow entries of an
  // origin epoch read before stretches are looked for (cut at a run's end: a longer
  // stretch becomes several skips, which the next compaction folds together), and the
  // entries one commit group takes out at most (but for a single stretch). From 2 to
  // 4,096 (the default): a smaller window serves tests.
  size_t fold_window_entries = 4096;
};

// A page of audit events, newest first.
struct AuditPage {
  std::vector<interco::v1::AuditRecord> events;
  std::string next_page_token;
  interco::v1::AuditHead head;
};

// A ListRecords query.
struct ListQuery {
  std::string registry;
  int32_t page_size = 0;
  std::string page_token;
  std::string id_prefix;
  std::vector<interco::v1::FieldFilter> filters;
};

struct RecordPage {
  std::vector<interco::v1::Record> records;
  std::string next_page_token;
};

// A page of a registry's conflict journal.
struct ConflictPage {
  std::vector<interco::v1::Conflict> conflicts;
  std::string next_page_token;
  // Lost writes the listed records' journals dropped to stay bounded.
  uint64_t dropped = 0;
};

struct RegistryPage {
  std::vector<interco::v1::Registry> registries;
  std::string next_page_token;
};

struct FeedPage {
  std::vector<interco::v1::RecordChange> changes;
  // Cursor after the last change (or the given cursor when there is none).
  std::string cursor;
};

// The resource name "registries/{registry}/records/{record}".
std::string RecordName(std::string_view registry, std::string_view record);

class RecordStore {
 public:
  // Opens the store. FAILED_PRECONDITION if it belongs to another authority; the
  // RocksDB error otherwise.
  static absl::StatusOr<std::unique_ptr<RecordStore>> Open(const RecordStoreOptions& options);
  ~RecordStore();
  RecordStore(const RecordStore&) = delete;
  RecordStore& operator=(const RecordStore&) = delete;

  // Creates a registry owned by `definition.owner` (default: the caller's authority).
  // The node's own authority may create a registry owned by a partner (a replica of it);
  // other callers only registries they own. INVALID_ARGUMENT (bad ID or schema),
  // ALREADY_EXISTS, PERMISSION_DENIED.
  absl::StatusOr<interco::v1::Registry> CreateRegistry(std::string_view id,
                                                       interco::v1::Registry definition,
                                                       const replication::Principal& caller);
  // NOT_FOUND if unknown.
  absl::StatusOr<interco::v1::Registry> GetRegistry(std::string_view id);
  absl::StatusOr<RegistryPage> ListRegistries(int32_t page_size, std::string_view page_token);
  // Updates the fields of a registry that `paths` name (see interco.v1.UpdateRegistryRequest):
  // "policy" becomes a signed policy change of this node's chain (this node must be the
  // owner's, FAILED_PRECONDITION otherwise; the caller must be of the owner's authority),
  // with `members_of` resolved from the directory registry kDirectoryEpci;
  // "audit_retention_days" is this node's setting. INVALID_ARGUMENT (unknown path, bad
  // policy), FAILED_PRECONDITION (an EPCI missing from the directory), NOT_FOUND, ABORTED
  // (etag mismatch), PERMISSION_DENIED.
  absl::StatusOr<interco::v1::Registry> UpdateRegistry(std::string_view id,
                                                       interco::v1::Registry update,
                                                       std::vector<std::string> paths,
                                                       std::string etag,
                                                       const replication::Principal& caller);
  // The federation directory that resolves Policy.AccessList.members_of: EPCI records
  // keyed by SIREN, their member communes' SIRENs in the string set kDirectoryMembers
  // (tools/registries/epci.json, from the official EPCI list).
  static constexpr std::string_view kDirectoryEpci = "epci";
  static constexpr std::string_view kDirectoryMembers = "membres_siren";

  // OK if `caller`'s authority may read (or, with `write`, write) the registry's records
  // under its policy; NOT_FOUND for an unknown registry; PERMISSION_DENIED otherwise,
  // naming the caller and the registry.
  absl::Status CheckAccess(std::string_view registry, const replication::Principal& caller,
                           bool write);
  // For replication: whether a verified batch may enter the registry under the policy
  // version it was written under (replication::AuthorizeBatch; NOT_FOUND for an unknown
  // registry), and whether an authority may read the registry (current policy).
  absl::Status Authorize(std::string_view registry, const replication::DecodedBatch& batch);
  bool MayRead(std::string_view registry, uint32_t authority);
  // Whether a batch written under `policy_version` may be sent to `authority`
  // (replication::PolicyHistory::MayReadBatch); the owner's origin number (0: unknown).
  bool MayReadBatch(std::string_view registry, uint32_t authority, uint64_t policy_version);
  uint32_t OwnerOf(std::string_view registry);
  // The owner and the writers its policy lists (replication::ReplicaStore::Members).
  std::vector<uint32_t> Members(std::string_view registry);
  // As the registry's owner (replication::ReplicaStore::Collect), commits a collection (a
  // policy change of this node's chain) of what there is to collect, and collects it here
  // in the same write:
  //   - tombstones, if every version of the policy lists its writers, none of them beyond
  //     the plan's members (those the frontier waited for), and some tombstone set by a
  //     change at or below the plan's frontier remains (the collection names the frontier
  //     and what is required);
  //   - journal entries, if some is stamped below the plan's journal_before (the
  //     collection names it).
  // Returns whether it committed one.
  absl::StatusOr<bool> Collect(std::string_view registry, const replication::CollectionPlan& plan);
  // What the collections applied here left out of the registry (replication/exclusion.h);
  // empty for an unknown one.
  replication::Exclusions ExclusionsOf(std::string_view registry);
  // This node's origin epoch in the registry (RegistryMeta.epoch_switches); the node's
  // for an unknown one.
  uint32_t OriginEpoch(std::string_view registry);
  // What replays took out of the registry's log: batches, and changes of this node's own
  // (writes made while a collection left it out, kept for the administrators), with the
  // batches themselves (as received or made, signed). NOT_FOUND for an unknown registry.
  struct Refused {
    uint64_t batches = 0;
    uint64_t own_changes = 0;
  };
  absl::StatusOr<Refused> RefusedOf(std::string_view registry);
  absl::StatusOr<std::vector<interco::replication::v1::Batch>> RefusedBatches(
      std::string_view registry);

  // NOT_FOUND if the registry or a live record is missing.
  absl::StatusOr<interco::v1::Record> GetRecord(std::string_view registry, std::string_view id);
  // What collections removed here. NOT_FOUND for an unknown registry.
  struct Collected {
    // Deleted records whose tombstones went.
    uint64_t records = 0;
    // Removed set elements taken out of records.
    uint64_t removals = 0;
    // Lost writes that left the journals with the retention.
    uint64_t conflicts = 0;
    // Change-log batches made hollow, and the bytes of changes that dropped.
    uint64_t hollowed_batches = 0;
    uint64_t hollowed_bytes = 0;
    // Batches that arrived hollow.
    uint64_t hollow_received = 0;
    // Log entries folded into skips in place, and the bytes that freed.
    uint64_t folded_batches = 0;
    uint64_t folded_bytes = 0;
  };
  absl::StatusOr<Collected> CollectedOf(std::string_view registry);
  // The stored CRDT state of a record, a deleted one's tombstone included; std::nullopt if
  // there is none (never written here, or collected). NOT_FOUND for an unknown registry.
  absl::StatusOr<std::optional<replication::RecordState>> StoredState(std::string_view registry,
                                                                      std::string_view id);
  // All or nothing: NOT_FOUND names the first missing record.
  absl::StatusOr<std::vector<interco::v1::Record>> BatchGetRecords(
      std::string_view registry, const std::vector<std::string>& ids);
  // A page of records in ID order; see interco.v1.ListRecordsRequest.
  absl::StatusOr<RecordPage> ListRecords(const ListQuery& query);
  // Where each visible value of a live record comes from: the signed batches of the
  // change log that carry it and their signers' certificates (node/storage/provenance.cc).
  // NOT_FOUND if the registry or a live record is missing.
  absl::StatusOr<interco::v1::RecordProvenance> Provenance(std::string_view registry,
                                                           std::string_view id);

  // The conflict journal of a registry (or of one record if `record_id` is not empty):
  // see interco.v1.ListConflictsRequest. NOT_FOUND for an unknown registry,
  // INVALID_ARGUMENT for a bad page size or token.
  absl::StatusOr<ConflictPage> ListConflicts(std::string_view registry,
                                             std::string_view record_id, int32_t page_size,
                                             std::string_view page_token);

  using WriteCallback = std::function<void(absl::StatusOr<interco::v1::Record>)>;
  // Applies a local write (see replication::PlanLocalWrite for its errors) and calls
  // `done` with the record after it (only its name after a delete), once durable, or
  // with the error. `done` runs on the completer thread: it must not block.
  void WriteAsync(std::string_view registry, std::string_view id, replication::LocalWrite write,
                  const replication::Principal& author, WriteCallback done);
  // Synchronous WriteAsync.
  absl::StatusOr<interco::v1::Record> Write(std::string_view registry, std::string_view id,
                                            replication::LocalWrite write,
                                            const replication::Principal& author);

  // The cursor of the newest change (or, with `oldest`, just before the oldest retained
  // change) of a registry's feed.
  absl::StatusOr<std::string> CurrentCursor(std::string_view registry, bool oldest);
  // Up to `max_changes` feed changes after `cursor`. INVALID_ARGUMENT for a malformed
  // cursor or one of another registry or node; OUT_OF_RANGE when the feed no longer
  // holds the changes right after it.
  absl::StatusOr<FeedPage> ReadFeed(std::string_view registry, std::string_view cursor,
                                    size_t max_changes);

  // Calls `listener` after each commit that appends to the registry's feed. Listeners
  // run on the committing thread, under an internal lock: they must be quick, must not
  // block and must not call Subscribe or Unsubscribe. After Unsubscribe returns, the
  // listener is not running and will not be called.
  uint64_t Subscribe(std::string registry, std::function<void()> listener);
  void Unsubscribe(uint64_t subscription);

  // --- Replication (the node's replication::ReplicaStore delegates here).
  // Registry IDs, sorted.
  std::vector<std::string> RegistryIds();
  // The version vector of a registry's change log. NOT_FOUND for an unknown registry.
  absl::StatusOr<replication::VersionVector> Position(std::string_view registry);
  // The registry's position with the sum and count of its live records' digests, read
  // together (replication::ReplicaStore::Digest). UNAVAILABLE while it is being rebuilt
  // from its log; NOT_FOUND for an unknown registry.
  absl::StatusOr<replication::StateDigest> Digest(std::string_view registry);
  // Batches of one origin epoch with first_seq > after_seq, in order, at most `max`.
  absl::StatusOr<std::vector<interco::replication::v1::Batch>> ReadBatches(
      std::string_view registry, replication::OriginKey key, uint64_t after_seq, size_t max);
  // Applies a remote batch that is the next of its origin (FAILED_PRECONDITION if not),
  // in one commit with the records it changes, their indexes, counters and feed
  // entries. Blocks until durable.
  absl::Status ApplyRemoteBatch(std::string_view registry, const replication::DecodedBatch& batch);
  // Called on the committer thread after each commit that appended batches of this
  // node's own origin. Must not block. Set once, before writes start.
  void SetLocalCommitListener(std::function<void()> listener);
  uint32_t origin() const { return origin_; }
  // Starts a new origin epoch for this node's next changes (after the store was restored
  // from a copy) and returns it. Durable when OK. Call before writes start.
  absl::StatusOr<uint32_t> StartNewEpoch();
  // The current origin epoch.
  uint32_t epoch();
  // Signs the batches of this node's commits (nullptr: unsigned, which peers refuse;
  // for benchmarks of what signing costs). Set once, before writes start; the signer
  // must outlive the store (its committer signs idle tails until the store closes).
  void SetSigner(replication::Signer* signer);

  // --- Repair (node/storage/repair.cc; replication/repair.h). Each registry keeps, in the
  // same commits as its records, the sum of its live records' digests per bucket.
  // The non-zero bucket sums. NOT_FOUND for an unknown registry.
  absl::StatusOr<std::map<uint32_t, uint64_t>> FingerprintBuckets(std::string_view registry);
  // The digests of the live records of each of `buckets` (increasing), increasing, one
  // list per bucket; for the first buckets only (at least one) once the lists reach
  // `max_bytes` at 8 bytes a digest. One scan of the registry's records. NOT_FOUND for an
  // unknown registry.
  absl::StatusOr<std::vector<std::vector<uint64_t>>> BucketDigests(
      std::string_view registry, const std::vector<uint32_t>& buckets, size_t max_bytes);
  // A live record of a bucket, with its digest (and its state when asked for).
  struct BucketRecord {
    uint32_t bucket = 0;
    uint64_t digest = 0;
    std::string id;
    std::optional<replication::RecordState> state;
  };
  // The live records of `buckets` (increasing) in ID order; with `digests` not empty,
  // only those whose digest is among them, states included until they reach
  // `max_state_bytes` (later ones come without). One scan of the registry's records.
  // NOT_FOUND for an unknown registry.
  absl::StatusOr<std::vector<BucketRecord>> BucketRecords(std::string_view registry,
                                                          const std::vector<uint32_t>& buckets,
                                                          const std::vector<uint64_t>& digests,
                                                          size_t max_state_bytes = SIZE_MAX);
  // The live records after `start_after` in ID order, until their states reach `max_bytes`
  // (at least one is returned); `resume` is the last ID returned when more remain.
  struct LiveScan {
    std::vector<std::pair<std::string, replication::RecordState>> records;
    std::string resume;
  };
  absl::StatusOr<LiveScan> ScanLive(std::string_view registry, std::string_view start_after,
                                    size_t max_bytes);
  // Every policy version of the registry applied here (collections included; the
  // greatest is in force). NOT_FOUND for an unknown registry.
  absl::StatusOr<std::shared_ptr<const replication::PolicyHistory>> Policies(
      std::string_view registry);
  // Merges record states that `peer` sent by repair (a join: nothing written here is
  // undone) in one commit, with their indexes, counts, feed entries and an audit event
  // (REPAIR_RECORDS, `caller` having asked). `peer_policy_version` is the policy version
  // the peer had applied before it read them: FAILED_PRECONDITION if this node has
  // applied a later one (the peer may hold records collected here). Every state is
  // checked first (INVALID_ARGUMENT naming it: malformed, over
  // limits::kRecordStateBytesMax, or stamped by an authority that no version of the
  // policy lets write): nothing merged. Returns how many records changed. Blocks until
  // durable.
  absl::StatusOr<uint64_t> Repair(std::string_view registry, uint32_t peer,
                                  uint64_t peer_policy_version,
                                  std::vector<std::pair<std::string, replication::RecordState>> states,
                                  const replication::Principal& caller);

  // --- Audit log (node/storage/audit.cc). Every API write and registry creation is
  // audited, accepted or refused, in the same commit as its effect; so is every
  // replicated batch applied. Chains: "registries/<id>" and "node".
  // Appends events decided elsewhere (refusals before the store: roles, peers' forged
  // batches), through the commit queue; does not wait. The seq, hash and time are filled
  // in, and the chain when empty (the registry's if held, the node's otherwise).
  void Audit(std::vector<interco::v1::AuditEvent> events);
  // A page of one chain, newest first. INVALID_ARGUMENT for a bad token, NOT_FOUND for an
  // unknown chain.
  // A consistent copy of the store in `directory` (which must not exist; its parent is
  // created), marked so that a node opening it starts a new origin epoch
  // (NodeMeta.backup). ALREADY_EXISTS if `directory` exists.
  struct BackupInfo {
    std::string directory;
    uint32_t epoch = 0;
    int64_t size_bytes = 0;
    int64_t created_ms = 0;
  };
  absl::StatusOr<BackupInfo> CreateBackup(const std::string& directory);
  // Whether this store was a backup when opened: it then took a new origin epoch.
  bool opened_from_backup() const { return opened_from_backup_; }

  absl::StatusOr<AuditPage> ListAudit(std::string_view chain, int32_t page_size,
                                      std::string_view page_token);
  // The chain of a registry's events ("registries/<id>"), or "node" for "".
  static std::string AuditChainOf(std::string_view registry);

  // --- Trust material kept in the meta family (durable when OK).
  // A signer certificate (DER) under its key ID.
  absl::Status PutCertificate(std::string_view key_id, std::string_view der);
  absl::StatusOr<std::vector<std::string>> Certificates();
  // Proof of an origin's fork; replaces an earlier one for the same origin and stream.
  absl::Status RecordFork(const interco::replication::v1::ForkEvidence& evidence);
  std::vector<interco::replication::v1::ForkEvidence> Forks();

  // Bytes on disk (SST + WAL).
  int64_t SizeOnDisk();
  // Bytes on disk of each column family's SST files, by family name.
  std::map<std::string, int64_t> SizeByFamily();
  // Flushes and compacts the whole store, so that the space of deleted and collected
  // records returns to the file system (RocksDB otherwise does it in its own time).
  absl::Status Compact();
  // Summaries of all registries, sorted by name.
  std::vector<interco::v1::Registry> Registries();

  // Full consistency check: record counts, indexes both ways, feed ranges, change-log
  // chains. OK with a summary, or DATA_LOSS describing the first inconsistency.
  absl::StatusOr<std::string> CheckConsistency();

  const std::string& authority() const { return authority_; }
  bool sync() const { return sync_; }

 private:
  struct RegistryRuntime {
    interco::internal::v1::RegistryMeta meta;
    std::shared_ptr<const replication::RegistrySchema> schema;
    // Every policy version applied here; the greatest is in force.
    std::shared_ptr<const replication::PolicyHistory> policies;
    // What the change log holds, per origin epoch (this node's own included).
    replication::VersionVector position;
  };
  struct Op;
  struct GroupState;
  // The committed end of an audit chain.
  struct AuditChain {
    uint64_t next_seq = 1;
    std::string last_hash;
    int64_t last_trim_ms = 0;
  };

  RecordStore(const RecordStoreOptions& options, std::unique_ptr<RocksDbStore> db);

  absl::Status Load();
  // Notes the unsigned tail of this node's chain of `registry`, if a crash left one.
  absl::Status LoadUnsignedTail(const std::string& registry, const RegistryRuntime& rt);
  // Queues `op` for the committer thread, which calls op->done when it is committed or
  // failed.
  void Enqueue(std::unique_ptr<Op> op);
  // Enqueue, then wait for the op's outcome (not on the committer thread); `on_success`
  // reads the committed op's results.
  absl::Status EnqueueAndWait(std::unique_ptr<Op> op,
                              const std::function<void(Op&)>& on_success = nullptr);
  void CommitLoop();
  void ApplyGroup(const std::vector<std::unique_ptr<Op>>& group);
  absl::Status ApplyCreateRegistry(Op& op, GroupState& g);
  absl::Status ApplyWrite(Op& op, GroupState& g);
  absl::Status ApplyRemote(Op& op, GroupState& g);
  // The keys of the log's trailing unsigned batches of an origin epoch up to `seq` (a run
  // broken off here), oldest first; empty if the batch ending there is signed.
  absl::StatusOr<std::vector<std::string>> UnsignedTail(const std::string& registry,
                                                        replication::OriginKey key, uint64_t seq);
  // The part of ApplyRemote after its checks: stages the batch's changes, its log entry
  // and position. An error leaves part of it staged (the caller breaks the group).
  absl::Status StageRemoteChanges(Op& op, GroupState& g, RegistryRuntime& rt);
  absl::Status ApplyUpdateRegistry(Op& op, GroupState& g);
  absl::Status ApplyCollect(Op& op, GroupState& g);
  absl::Status ApplyRepair(Op& op, GroupState& g);
  // Compaction of a registry's change log (node/storage/compaction.cc): makes hollow the
  // batches of op.compact_keys whose every change is still superseded
  // (replication/compaction.h) against the staged state, or folds op.fold_stretches.
  absl::Status ApplyCompact(Op& op, GroupState& g);
  // Committer thread: asks the compactor to look through a registry's log (once more
  // after the look under way, if one is).
  void ScheduleCompaction(const std::string& registry);
  // The compactor thread: looks through the logs asked for, reading committed state, and
  // hands the batches it finds superseded to the committer a few hundred at a time, so
  // that the committer spends its time on writes, not on reading the log.
  void CompactLoop();
  void CompactRegistry(const std::string& registry);
  // After the batches went hollow: folds each stretch of hollow log entries up to a run's
  // end into one skip (replication::FoldableStretches), a few thousand entries per op.
  void FoldRegistry(const std::string& registry);
  // Queues a kCompact op of `keys` to make hollow, or of stretches to fold, and waits for
  // it (run again, a few times, if its commit group failed). False if the look through
  // the log should stop.
  bool SubmitCompaction(const std::string& registry, std::vector<std::string> keys,
                        std::vector<std::vector<std::string>> folds);
  // The kCompact op of stretches to fold: each that FoldableStretches still takes whole,
  // as the log is now, becomes one skip under its first key; its other entries go.
  absl::Status StageFolds(Op& op, GroupState& g, RegistryRuntime& rt);
  // Whether the store is closing: the compactor stops.
  bool CompactorStopping();
  absl::Mutex compact_mu_;
  std::set<std::string> compact_requests_ ABSL_GUARDED_BY(compact_mu_);
  bool compact_stopping_ ABSL_GUARDED_BY(compact_mu_) = false;
  std::thread compactor_;
  // Empties the conflict journal of a record whose life ended, staged in the group.
  absl::Status DropConflicts(RegistryRuntime& rt, GroupState& g, const std::string& registry,
                             const std::string& key);
  // Stages a record's journal (deleted when empty).
  void PutJournal(GroupState& g, const std::string& key,
                  const replication::RecordConflicts& journal);
  // Calls `fn` with each conflict journal of `registry` (records-family key, a copy of the
  // journal), as staged in the group or else committed.
  absl::Status ForEachJournal(
      GroupState& g, const std::string& registry,
      const std::function<absl::Status(const std::string& key, replication::RecordConflicts&)>&
          fn);
  // The oldest stamp of the registry's journal entries (all ones if none): the bound kept
  // in its meta, or, when unknown, read through the journals (and kept).
  absl::StatusOr<uint64_t> OldestJournalStamp(GroupState& g, RegistryRuntime& rt,
                                              const std::string& registry);
  // Applies the retention of a collection: if `journal_before` is beyond the cut in force,
  // removes the journal entries stamped below it, and keeps it (later writes stamped below
  // it are not journaled).
  absl::Status ExpireJournals(GroupState& g, RegistryRuntime& rt, const std::string& registry,
                              uint64_t journal_before);
  // The stored non-zero bucket sums of `registry`, and the same computed from its records.
  absl::StatusOr<std::map<uint32_t, uint64_t>> ReadFingerprints(std::string_view registry,
                                                                const rocksdb::Snapshot* snapshot);
  absl::StatusOr<std::map<uint32_t, uint64_t>> ComputeFingerprints(
      std::string_view registry, const rocksdb::Snapshot* snapshot);
  // Calls `fn` for each live record of `registry` whose bucket is `wanted`, in ID order,
  // with its stored bytes and its parsed state.
  absl::Status ScanBuckets(
      std::string_view registry, const rocksdb::Snapshot* snapshot,
      const std::function<bool(uint32_t)>& wanted,
      const std::function<void(uint32_t bucket, std::string_view id, std::string_view bytes,
                               replication::RecordState& state)>& fn);
  // Upgrades a format-4 store: its fingerprints computed from its records, in one write.
  absl::Status AddFingerprints(interco::internal::v1::NodeMeta& meta);
  // Format 7 -> 8: sets each registry's live_sum to the sum of its buckets.
  absl::Status AddLiveSums(interco::internal::v1::NodeMeta& meta);
  // Puts a tombstones-family entry in the group.
  void PutTombstone(GroupState& g, std::string tkey, const replication::Tombstone& t);
  // Notes the tombstone that change `seq` of `key` set on record `id`, if merging its
  // `delta` made `after` that tombstone (replication::TombstoneSet).
  void StageTombstone(GroupState& g, const std::string& registry, const std::string& id,
                      const replication::RecordState& after,
                      const replication::RecordState& delta, replication::OriginKey key,
                      uint64_t seq);
  // The tombstones of `registry` set by changes at or below `frontier` (committed or
  // staged in the group): tombstones-family key -> (record ID, tombstone).
  absl::StatusOr<std::map<std::string, std::pair<std::string, replication::Tombstone>>>
  TombstonesUnder(GroupState& g, const std::string& registry,
                  const replication::VersionVector& frontier);
  // The record's state as staged in the group, or committed.
  absl::StatusOr<replication::RecordState> StagedState(GroupState& g, const std::string& key);
  // What a collection at `frontier` goes through: each tombstone entry under it, its
  // record, and whether the record goes (it still holds that tombstone).
  struct CollectionCandidate {
    std::string tombstone_key;
    std::string record_key;
    bool collectable = false;
  };
  absl::StatusOr<std::vector<CollectionCandidate>> CollectionCandidates(
      GroupState& g, const std::string& registry, const replication::VersionVector& frontier);
  // Applies a collection: removes the collectable records and every candidate's entry.
  void StageCollection(GroupState& g, RegistryRuntime& rt, const std::string& registry,
                       const std::vector<CollectionCandidate>& candidates);
  // The registry's staged runtime in the group (loaded from the committed one at first use).
  absl::StatusOr<RegistryRuntime*> Staged(GroupState& g, const std::string& registry);
  // Adds a change of this node's own to the group's next batch of `registry`.
  // `policy`: it is a policy change (the batch then says so: BatchHeader.carries_policy).
  void StageOwnChange(GroupState& g, const RegistryRuntime& rt, const std::string& registry,
                      std::string change, uint64_t hlc, bool policy = false);
  // Seals the group's own changes of `registry` into one batch of the log: signed, or
  // left unsigned at the end of a run that a later signature covers (docs/TRUST.md, "One
  // signature per run").
  absl::Status StageOwnBatch(GroupState& g, const std::string& registry);
  // This node's own batches at the end of a stream's log that no signature covers yet:
  // the run the next batch may extend. Committer thread only.
  struct UnsignedRun {
    // The last batch of the run (unsigned) and where the log holds it.
    interco::replication::v1::Batch tail;
    uint32_t epoch = 0;
    uint64_t first_seq = 0;
    size_t batches = 0;
    uint64_t changes = 0;
    size_t bytes = 0;
    // Steady clock when the run began.
    int64_t since_ms = 0;
    // The policy version of its batches: a new version starts a new run.
    uint64_t policy_version = 0;
  };
  // The run `registry`'s next own batch would extend, as staged in the group.
  std::optional<UnsignedRun> RunOf(const GroupState& g, const std::string& registry) const;
  // Stages the signature of the unsigned tail of `registry` (every registry if null).
  absl::Status StageTailSignatures(GroupState& g, const std::string* registry = nullptr);
  // Stages `run`'s tail, signed, in place of its unsigned copy in the log.
  absl::Status StageTailSignature(GroupState& g, const std::string& registry, UnsignedRun run);
  // Signs every unsigned tail now (the commit queue was idle): one unsynced write.
  void SignIdleTails();
  // Makes a policy version known (and in force if it is the newest), staged in the group.
  void StagePolicy(GroupState& g, RegistryRuntime& rt, const std::string& registry,
                   const interco::replication::v1::PolicyChange& change,
                   replication::RegistryPolicy compiled);
  // A policy and its compiled form, `members` resolved.
  using ResolvedPolicy = std::pair<interco::v1::Policy, replication::RegistryPolicy>;
  // A policy change of this node's (the owner's): one change of its chain, in force at once.
  void StageOwnPolicyChange(GroupState& g, RegistryRuntime& rt, const std::string& registry,
                            ResolvedPolicy policy, const replication::Principal& author);
  // Fills the `members` of each access list from the directory registry (committed state)
  // and compiles the result.
  absl::StatusOr<ResolvedPolicy> ResolveMembers(std::string_view owner, interco::v1::Policy policy);
  // The registry's etag: the HLC of the latest change of its definition.
  static std::string EtagOf(const interco::internal::v1::RegistryMeta& meta);
  // Updates the conflict journal of record `id` (state `current`) for `delta`, about to
  // be merged into it (replication::UpdateConflicts), staged in the group.
  absl::Status StageConflicts(RegistryRuntime& rt, GroupState& g, const std::string& registry,
                              const std::string& id, const replication::RecordState& current,
                              const replication::RecordState& delta,
                              const std::function<bool(replication::Stamp)>& received);
  // Stages a record's new state with its index, counter and feed changes (no feed entry
  // if `quiet`: a collection changes no visible value).
  void StageRecord(RegistryRuntime& rt, GroupState& g, const std::string& registry,
                   const std::string& id, const replication::RecordState& before,
                   replication::RecordState after, interco::v1::Record* public_record,
                   bool quiet = false);
  // Indexes in the removals family what change `seq` of `key` removed from record `id`'s
  // sets, if anything (replication::RemovalsOf `delta`).
  void StageRemovals(GroupState& g, const std::string& registry, const std::string& id,
                     const replication::RecordState& delta, replication::OriginKey key,
                     uint64_t seq);
  // Calls `take` with each entry of family `cf` (keyed as the tombstones family) of
  // `registry` set by a change at or below `frontier`: committed ones, then those staged
  // in the group (`staged`).
  absl::Status ScanUnder(
      Cf cf, const std::map<std::string, std::string>& staged, const std::string& registry,
      const replication::VersionVector& frontier,
      const std::function<absl::Status(std::string_view key, std::string_view value)>& take);
  // The removals-family entries of `registry` for changes at or below `frontier`
  // (committed or staged): key -> (record ID, what the change removed).
  absl::StatusOr<std::map<std::string, std::pair<std::string, replication::RecordState>>>
  RemovalsUnder(GroupState& g, const std::string& registry,
                const replication::VersionVector& frontier);
  // Takes out of the records the removed set elements a collection at `frontier` covers
  // (replication::PurgeRemovals), drops the entries it resolved, and keeps the frontier
  // (RegistryMeta.purged). With `dry_run`, only says whether it would resolve any entry.
  absl::StatusOr<bool> StagePurge(GroupState& g, RegistryRuntime& rt, const std::string& registry,
                                  const replication::VersionVector& frontier, bool dry_run);
  // The owner's frontier with the HLC of each entry's last change, read from the log.
  absl::StatusOr<replication::VersionVector> StampFrontier(const std::string& registry,
                                                           replication::VersionVector frontier);
  // Upgrades a format-5 store: the removals its log holds indexed, in one write.
  absl::Status AddRemovals(interco::internal::v1::NodeMeta& meta);
  // --- Members left out (node/storage/exclusion.cc).
  // This node's origin epoch in a registry: NodeMeta.epoch, or above it once collections
  // left the node out there (RegistryMeta.epoch_switches).
  uint32_t OwnEpoch(const interco::internal::v1::RegistryMeta& meta) const;
  // At a new node epoch (a restore): the registry's epoch goes to the shifted form, so
  // that it is above any the registry had in the old one, switched or not (the original
  // may have switched after the copy was made). Returns whether the meta changed.
  static bool ShiftEpoch(interco::internal::v1::RegistryMeta& meta);
  // Applies collection `collection` of `change_version`, found at `at` of the owner's
  // chain, to the registry's exclusions; if it refuses batches applied here, marks the
  // registry for a replay (RegistryMeta.replay); if it leaves this node out where it
  // wrote, ends its chain there (a new epoch; pending own changes of the group then name
  // the collection's version, which they were made holding everything it needs).
  absl::Status StageExclusion(GroupState& g, RegistryRuntime& rt, const std::string& registry,
                              const interco::replication::v1::Collection& collection,
                              uint64_t change_version, const interco::replication::v1::Dot& at);
  // Replays the registry's change log without the batches RegistryMeta.replay cuts off:
  // they move under "refused/", the registry's state is emptied, and every batch left is
  // applied again, in groups, as it becomes ready. Committer thread (or Load) only.
  absl::Status Replay(const std::string& registry);
  // Registries whose state a replay is rebuilding: their reads are UNAVAILABLE meanwhile.
  std::set<std::string> replaying_ ABSL_GUARDED_BY(mu_);
  // Registries whose feed grew in commits written without the sync the node's durability
  // asks for (slices of a remote batch): the end of the feed readers see (its next
  // sequence number before the first of them). The next synced commit shows the rest (a
  // commit that acknowledges anything syncs while entries wait; so does the committer
  // once no batch goes on in slices), so that a power loss never takes back feed entries
  // a reader saw; the change feed is never trimmed past that end.
  std::map<std::string, uint64_t> feed_unsynced_ ABSL_GUARDED_BY(mu_);
  // Committer thread: shows the feed entries waiting for a sync, after syncing the store
  // first with `sync`, and tells the listeners of those feeds and of `changed` once each.
  void ReleaseHeldFeeds(bool sync, std::vector<std::string> changed = {});
  // Registries to replay once the current group is durable, and when a replay last failed
  // (tried again kReplayRetryMillis later). Committer thread only.
  static constexpr int64_t kReplayRetryMillis = 10000;
  std::set<std::string> replays_due_;
  std::map<std::string, int64_t> replay_failed_ms_;
  void RunDueReplays();
  bool Replaying(std::string_view registry);
  // OK if the registry exists and may be read now (UNAVAILABLE during a replay).
  absl::Status CheckReadable(std::string_view registry);
  // A copy of a registry's committed state (for the committer, which stages changes).
  absl::StatusOr<RegistryRuntime> Runtime(std::string_view registry);
  // Cheap lookups for the read paths (no copy of the metadata or version vector).
  absl::Status CheckRegistry(std::string_view registry);
  absl::StatusOr<std::shared_ptr<const replication::RegistrySchema>> SchemaOf(
      std::string_view registry);
  struct FeedBounds {
    uint64_t feed_id = 0;
    uint64_t first_seq = 1;  // oldest retained entry
    uint64_t next_seq = 1;   // next entry to be written
  };
  absl::StatusOr<FeedBounds> FeedOf(std::string_view registry);
  // The state of a live record. NOT_FOUND if the registry or a live record is missing.
  absl::StatusOr<replication::RecordState> LiveState(std::string_view registry,
                                                     std::string_view id);
  // The registry's policy versions; nullptr for an unknown registry.
  std::shared_ptr<const replication::PolicyHistory> PolicyOf(std::string_view registry);
  // The batch of one origin epoch (whose log ends at last_seq) holding the change
  // stamped `hlc`: the first whose greatest HLC reaches it. nullopt if none does.
  // The proof of an unsigned batch of the log: the batches after it in its origin's chain
  // up to the first signed one, changes omitted. Signs our own tail if it is not yet;
  // empty if `batch` is signed by now (then `batch` is replaced by its signed copy).
  // UNAVAILABLE if the log does not hold that signed batch yet.
  absl::StatusOr<std::vector<interco::replication::v1::Batch>> FollowingUpToSigned(
      std::string_view registry, replication::OriginKey key, interco::replication::v1::Batch& batch);
  absl::StatusOr<std::optional<interco::replication::v1::Batch>> BatchHolding(
      std::string_view registry, replication::OriginKey key, uint64_t last_seq, uint64_t hlc);
  // Audit: the event of an op's outcome, staged into the group.
  void AuditOutcome(const Op& op, GroupState& g);
  void StageAudit(GroupState& g, interco::v1::AuditEvent event);
  // Deletes events older than the chain's retention from its front (bounded work).
  void TrimAudit(GroupState& g, const std::string& chain);
  absl::Status LoadAudit();
  absl::Status CheckAudit();
  // (key, value) of the meta family entries whose key starts with `prefix`.
  std::vector<std::pair<std::string, std::string>> ScanMeta(std::string_view prefix);
  interco::v1::Registry PublicRegistry(const RegistryRuntime& rt) const;
  // A fresh feed ID (committer thread): a new registry's, or a replayed one's.
  uint64_t NewFeedId(uint64_t salt);
  void Notify(const std::vector<std::string>& registries);

  const std::string authority_;
  const uint32_t origin_;
  const bool sync_;
  const uint64_t feed_retention_;
  std::unique_ptr<RocksDbStore> db_;
  Sha256Hasher hasher_;
  // Called with listener_mu_ held, so that replacing it waits for a call in progress.
  absl::Mutex listener_mu_;
  std::function<void()> local_commit_listener_ ABSL_GUARDED_BY(listener_mu_);
  void NotifyLocalCommit() {
    absl::MutexLock l(&listener_mu_);
    if (local_commit_listener_) local_commit_listener_();
  }
  // Set once the node's key is loaded, read by the committer thread.
  std::atomic<replication::Signer*> signer_{nullptr};
  // Committer thread only (and Load, before it starts).
  std::map<std::string, UnsignedRun> unsigned_runs_;
  // Unsigned tails of this node's chains of earlier epochs (a new epoch taken without a
  // key), per registry.
  std::vector<std::pair<std::string, UnsignedRun>> old_tails_;
  bool opened_from_backup_ = false;
  replication::Clock& clock_;
  const int32_t node_audit_retention_days_;
  const size_t fold_window_entries_;
  absl::Mutex audit_mu_;
  // Committed chain ends (written by the committer, read by ListAudit).
  absl::flat_hash_map<std::string, AuditChain> audit_chains_ ABSL_GUARDED_BY(audit_mu_);
  // Used only by the committer thread (and by Load, before it starts).
  replication::HybridLogicalClock hlc_;
  uint32_t epoch_ = 1;
  uint64_t random_state_;

  absl::Mutex mu_;
  uint32_t committed_epoch_ ABSL_GUARDED_BY(mu_) = 1;
  std::deque<std::unique_ptr<Op>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread committer_;
  // Committed groups whose callbacks are still to run. A separate thread runs them (they
  // serialize and send gRPC responses), so that the committer takes the next group at once.
  absl::Mutex done_mu_;
  std::deque<std::vector<std::unique_ptr<Op>>> done_queue_ ABSL_GUARDED_BY(done_mu_);
  bool done_stopping_ ABSL_GUARDED_BY(done_mu_) = false;
  std::thread completer_;
  void CompleteLoop();
  // Committed state of each registry; replaced after each successful commit.
  absl::flat_hash_map<std::string, RegistryRuntime> registries_ ABSL_GUARDED_BY(mu_);

  absl::Mutex listeners_mu_;
  uint64_t next_subscription_ ABSL_GUARDED_BY(listeners_mu_) = 1;
  std::map<uint64_t, std::pair<std::string, std::function<void()>>> listeners_
      ABSL_GUARDED_BY(listeners_mu_);
};

}  // namespace interco::node

#endif  // INTERCO_NODE_STORAGE_RECORD_STORE_H_
