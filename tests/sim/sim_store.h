// The simulator's replica store: in memory, with the durability of the node's store
// (every write and every applied batch is durable once it returns) — a crash loses the
// engine's session state, never the store.
#ifndef INTERCO_TESTS_SIM_SIM_STORE_H_
#define INTERCO_TESTS_SIM_SIM_STORE_H_

#include <algorithm>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "replication/conflict_journal.h"
#include "replication/env.h"
#include "replication/hlc.h"
#include "replication/collection.h"
#include "replication/policy.h"
#include "replication/record_crdt.h"
#include "replication/registry_schema.h"

namespace interco::sim {

// A deterministic stand-in for SHA-256 (the simulator links no crypto library).
class SimHasher final : public replication::Hasher {
 public:
  std::string Sha256(std::string_view data) override;
};

// Deterministic stand-ins for the node's Ed25519 signer and certificate verifier (the
// simulator links no crypto library): origin o's "certificate" is "sim-cert:<o>", its
// signature of m is SimHasher("sim-key:<o>" || m). Each node has its own verifier, which
// learns certificates only from the peer protocol, as a node does.
class SimTrust final : public replication::Verifier {
 public:
  explicit SimTrust(replication::Hasher& hasher) : hasher_(hasher) {}
  absl::Status Verify(uint32_t origin, std::string_view key_id, int64_t at_millis,
                      std::string_view message, std::string_view signature) override;
  absl::StatusOr<std::string> AddCertificate(std::string_view der) override;
  std::optional<std::string> Certificate(std::string_view key_id) override;

  // The signer of `origin`; its certificate is added to this verifier.
  class OriginSigner final : public replication::Signer {
   public:
    OriginSigner(SimTrust& trust, uint32_t origin);
    std::string KeyId() override { return key_id_; }
    absl::StatusOr<std::string> Sign(std::string_view key_id, std::string_view message) override;

   private:
    SimTrust& trust_;
    const uint32_t origin_;
    std::string key_id_;
  };

  static std::string CertificateOf(uint32_t origin);
  std::string SignatureOf(uint32_t origin, std::string_view message);

 private:
  replication::Hasher& hasher_;
  // Key ID -> (certificate, origin).
  std::map<std::string, std::pair<std::string, uint32_t>> certs_;
};

class SimStore final : public replication::ReplicaStore {
 public:
  // `signer` signs the batches of local commits (nullptr: unsigned).
  SimStore(uint32_t origin, std::vector<std::string> streams, replication::Clock& clock,
           replication::Hasher& hasher, replication::Signer* signer,
           const replication::RegistrySchema& schema);

  std::vector<std::string> Streams() override { return streams_; }
  // Starts replicating one more stream (a registry created while running).
  void AddStream(const std::string& stream);
  absl::StatusOr<replication::VersionVector> Position(const std::string& stream) override;
  absl::StatusOr<std::vector<interco::replication::v1::Batch>> ReadBatches(
      const std::string& stream, replication::OriginKey key, uint64_t after_seq,
      size_t max_batches) override;
  absl::Status ApplyBatch(const std::string& stream,
                          const replication::DecodedBatch& batch) override;
  absl::Status RecordFork(const interco::replication::v1::ForkEvidence& evidence) override;
  absl::Status Authorize(const std::string& stream,
                         const replication::DecodedBatch& batch) override;
  bool MayRead(const std::string& stream, uint32_t node) override;
  bool MayReadBatch(const std::string& stream, uint32_t node, uint64_t policy_version) override;
  uint32_t OwnerOf(const std::string& stream) override;
  std::vector<uint32_t> Members(const std::string& stream) override;
  // As the node does (replication/collection.h): the owner commits a collection of the
  // tombstones set at or below the frontier, and every node collects them when it applies
  // the collection.
  absl::StatusOr<bool> Collect(const std::string& stream,
                               const replication::CollectionPlan& plan) override;
  // Called for every record a collection removes here, with the tombstone it had.
  std::function<void(const std::string& stream, const std::string& key,
                     const replication::Tombstone& tombstone)>
      on_collect;
  // Called for every record a collection takes removed set elements out of, with its
  // state before and after.
  std::function<void(const std::string& stream, const std::string& key,
                     const replication::RecordState& before,
                     const replication::RecordState& after)>
      on_purge;
  // Called for every batch of this node's own, with what the node held just before it
  // and the batch's last sequence number.
  std::function<void(const std::string& stream, const replication::VersionVector& before,
                     uint64_t last_seq)>
      on_own_batch;
  // Called for every change applied from a remote batch, before it is merged.
  std::function<void(const std::string& stream, replication::OriginKey key, uint64_t seq,
                     const interco::replication::v1::Change& change)>
      on_change;
  // The nodes that replicate each stream, as the simulation built them (unset: the owner
  // and the writers of every policy version, as the node declares them).
  std::map<std::string, std::vector<uint32_t>> members;
  // A fixed access rule for every stream (unset: everyone may), or...
  std::function<bool(uint32_t)> writers;
  std::function<bool(uint32_t)> readers;
  // ...a versioned registry policy per stream, as the node keeps it: batches are judged
  // by replication::AuthorizeBatch, policy changes applied, local commits checked.
  void DeclarePolicy(const std::string& stream, uint32_t owner, const interco::v1::Policy& declared);
  const replication::PolicyHistory* Policies(const std::string& stream) const;
  // A local policy change (this node must own the stream). Returns its version.
  uint64_t SetPolicy(const std::string& stream, const interco::v1::Policy& policy);
  std::vector<uint32_t> FrozenOrigins() override;
  const std::vector<interco::replication::v1::ForkEvidence>& forks() const { return forks_; }
  // The position and the digests of the live records, as the node keeps them.
  absl::StatusOr<replication::StateDigest> Digest(const std::string& stream) override;
  // Divergences reported (peer, stream): none may be, since every copy changes only by
  // its change log.
  void OnDiverged(uint32_t peer, const std::string& stream) override {
    divergences.emplace_back(peer, stream);
  }
  std::vector<std::pair<uint32_t, std::string>> divergences;

  // A local commit of several writes as one batch. Returns (key, delta) of the writes
  // that were applied (each acknowledged), in order.
  struct Write {
    std::string key;
    replication::LocalWrite write;
  };
  std::vector<std::pair<std::string, replication::RecordState>> Commit(
      const std::string& stream, const std::vector<Write>& writes);

  // Called after each applied remote batch (for delivery measurements).
  std::function<void(const std::string& stream, replication::OriginKey key, uint64_t first_seq,
                     uint32_t count)>
      on_apply;

  const std::map<std::string, replication::RecordState>& Records(const std::string& stream) {
    return records_[stream];
  }
  // The conflict journal of each record that has one.
  const std::map<std::string, replication::RecordConflicts>& Conflicts(const std::string& stream) {
    return conflicts_[stream];
  }
  // Entries of the tombstone and removals indexes that a collection has yet to act on (a
  // tombstone entry of a record that moved on, created again, is dead: it goes with the
  // next collection that covers it, which may never come where nothing else is deleted).
  // With `refused`: a remove is not counted once the only elements it keeps in the record
  // are adds some collection refused (their writer was left out), listed there as
  // (value, hlc, origin): the tags stay until a later epoch of their writer is stable.
  size_t IndexedHistory(
      const std::string& stream,
      const std::set<std::tuple<std::string, uint64_t, uint32_t>>* refused = nullptr) {
    const auto& records = records_[stream];
    size_t live = 0;
    // Whether the elements a remove still keeps in `record` are refused adds only.
    auto refused_only = [&](const replication::RecordState& removals,
                            const replication::RecordState& record) {
      bool some = false;
      for (const auto& f : removals.fields()) {
        const replication::FieldState* now = replication::FindField(record, f.name());
        if (now == nullptr) continue;
        for (const auto& k : now->removed()) {
          const bool listed = std::any_of(f.removed().begin(), f.removed().end(), [&](const auto& l) {
            return l.value() == k.value() && l.hlc() == k.hlc() && l.origin() == k.origin();
          });
          if (!listed) continue;
          if (!refused->contains({k.value(), k.hlc(), k.origin()})) return false;
          some = true;
        }
      }
      return some;
    };
    for (const auto& [change, removals] : removals_[stream]) {
      auto r = records.find(std::get<2>(change));
      live += refused == nullptr || r == records.end() || !refused_only(removals, r->second);
    }
    for (const auto& [id, t] : tombstones_[stream]) {
      auto r = records.find(id);
      live += r != records.end() && r->second.causal_length() == t.causal_length &&
              r->second.cl_hlc() == t.hlc;
    }
    return live;
  }
  // The journal retention's cut in force (Collection.journal_before; 0: none).
  uint64_t JournalBefore(const std::string& stream) { return journal_before_[stream]; }
  // Every change of the stream's log, origin by origin in order (those of batches made
  // hollow here included; a batch that arrived hollow has none).
  struct LoggedChange {
    replication::OriginKey key;
    uint64_t seq = 0;
    interco::replication::v1::Change change;
  };
  std::vector<LoggedChange> LoggedChanges(const std::string& stream);
  // Checks that every origin's log is dense from 1 and chained. Empty if fine.
  std::string CheckLog();
  // Checks that a new store fed this one's log (hollow batches and all) ends with the same
  // records. Empty if fine.
  std::string CheckRebuild(const std::string& stream);
  // Batches of the log made hollow here (replication/compaction.h), and hollow batches
  // received and applied.
  uint64_t hollowed_batches() const { return hollowed_batches_; }
  uint64_t hollow_applied() const { return hollow_applied_; }
  // Log entries that folding hollow stretches into skips here took out.
  uint64_t folded_batches() const { return folded_batches_; }
  uint64_t hlc_last() const { return hlc_.last(); }
  // What the collections applied here left out (replication/exclusion.h).
  replication::Exclusions ExclusionsOf(const std::string& stream) override {
    return exclusions_[stream];
  }
  // This node's origin epoch in `stream`: 1, plus one each time a collection left it
  // out while it held writes of its own the collection names or refuses.
  uint32_t OriginEpoch(const std::string& stream) override {
    auto it = epochs_.find(stream);
    return it == epochs_.end() ? 1 : it->second;
  }
  // Batches a collection refused after this node had applied them, taken out of its log
  // when it replayed it (its own among them: writes lost, kept for its administrators).
  struct Refused {
    std::string stream;
    replication::OriginKey key;
    interco::replication::v1::Batch batch;
  };
  const std::vector<Refused>& refused() const { return refused_; }
  // Times this node replayed a stream's log without batches a collection refused.
  uint64_t replays() const { return replays_; }
  // Collections this node committed (as an owner) that left members out.
  uint64_t exclusion_collections() const { return exclusion_collections_; }
  // One signature per run, as a node does it: own batches stay unsigned until the run
  // reaches `run_batches_max` (or its policy version changes); SignTails signs the
  // tails (the node's idle moment). False if there was nothing to sign.
  size_t run_batches_max = 4;
  bool SignTails();
  // Own batches sealed unsigned so far.
  uint64_t unsigned_batches() const { return unsigned_batches_; }

 private:
  const uint32_t origin_;
  std::vector<std::string> streams_;  // sorted
  replication::Hasher& hasher_;
  replication::Signer* const signer_;
  const replication::RegistrySchema& schema_;
  replication::Clock& clock_;
  std::vector<interco::replication::v1::ForkEvidence> forks_;
  replication::HybridLogicalClock hlc_;
  std::map<std::string, std::map<std::string, replication::RecordState>> records_;
  std::map<std::string, std::map<std::string, replication::RecordConflicts>> conflicts_;
  std::map<std::string, uint64_t> journal_before_;
  // Per stream, the changes that removed set elements (origin epoch, seq, record) and what
  // they removed; and the greatest collection frontier applied (RegistryMeta.purged).
  std::map<std::string, std::map<std::tuple<replication::OriginKey, uint64_t, std::string>,
                                 replication::RecordState>>
      removals_;
  std::map<std::string, replication::VersionVector> purged_;
  std::map<std::string, std::map<replication::OriginKey, std::map<uint64_t,
                                  interco::replication::v1::Batch>>> log_;
  std::map<std::string, replication::VersionVector> position_;
  std::map<std::string, replication::PolicyHistory> policies_;
  // The policy in force per stream, as written (a collection repeats it).
  std::map<std::string, interco::v1::Policy> policy_in_force_;
  // Per stream and record, the tombstone the record got last (replication::TombstoneSet);
  // the node keeps them in an index by change, to the same effect.
  std::map<std::string, std::map<std::string, replication::Tombstone>> tombstones_;
  // Merges a change of (key, seq) into record `id`, noting the tombstone it sets; drops a
  // state that stays empty (a change that a collected record's tombstone would have
  // absorbed).
  void MergeChange(const std::string& stream, const std::string& id,
                   const replication::RecordState& delta, replication::OriginKey key,
                   uint64_t seq);
  // Indexes what change `seq` of `key` removed from record `id`'s sets.
  void IndexRemovals(const std::string& stream, const std::string& id,
                     const replication::RecordState& delta, replication::OriginKey key,
                     uint64_t seq);
  // Takes out of the records the removed elements a collection at `frontier` covers, as
  // the node does (RecordStore::StagePurge); with `dry_run`, only says whether it would
  // resolve an indexed remove.
  bool Purge(const std::string& stream, const replication::VersionVector& frontier,
             bool dry_run);
  // The frontier with the HLC of each entry's last change, from the log.
  replication::VersionVector StampFrontier(const std::string& stream,
                                           replication::VersionVector frontier);
  // Removes the records whose tombstone a collection at `frontier` covers, and the
  // journal entries stamped below `journal_before` if it is beyond the cut in force.
  void CollectAt(const std::string& stream, const replication::VersionVector& frontier,
                 uint64_t journal_before);
  // The conflict journal of record `key` for `delta`, about to be merged into `current`.
  void UpdateJournal(const std::string& stream, const std::string& key,
                     const replication::RecordState& current,
                     const replication::RecordState& delta,
                     const std::function<bool(replication::Stamp)>& received);
  // Appends a batch of this node's own changes to the stream's log.
  // `carries_policy`: the changes are policy changes (BatchHeader.carries_policy).
  void AppendOwn(const std::string& stream, std::vector<std::string> changes, uint64_t max_hlc,
                 bool carries_policy);
  // Per stream, the unsigned run at the end of our own chain: its length, its policy
  // version and the first sequence number of its tail.
  struct Run {
    uint32_t epoch = 1;
    size_t batches = 0;
    uint64_t policy_version = 0;
    uint64_t tail_first_seq = 0;
  };
  std::map<std::string, Run> runs_;
  uint64_t unsigned_batches_ = 0;
  void SignTail(const std::string& stream);
  std::map<std::string, uint32_t> epochs_;
  std::map<std::string, replication::Exclusions> exclusions_;
  // The policy each stream was declared with, and its owner (a replay starts from it).
  std::map<std::string, std::pair<uint32_t, interco::v1::Policy>> declared_;
  std::vector<Refused> refused_;
  uint64_t replays_ = 0;
  uint64_t exclusion_collections_ = 0;
  uint64_t hollowed_batches_ = 0;
  // The batches this store made hollow, as they were (LoggedChanges shows them whole).
  std::map<std::string, std::map<replication::OriginKey, std::map<uint64_t, interco::replication::v1::Batch>>>
      hollowed_;
  uint64_t hollow_applied_ = 0;
  uint64_t folded_batches_ = 0;
  // Applies a batch whose place in its chain and authorization were checked.
  void ApplyChecked(const std::string& stream, const replication::DecodedBatch& batch);
  // As the node does when a collection refuses batches it holds (Exclusions::Overrun):
  // takes them out of the log, then rebuilds the stream's state from the log, batch by
  // batch as they become ready. If some were its own, goes on in a new origin epoch.
  void Replay(const std::string& stream, const replication::VersionVector& overrun);
  // As the node does after a collection: makes hollow the log batches whose every change
  // is superseded (replication/compaction.h).
  void Compact(const std::string& stream);
};

}  // namespace interco::sim

#endif  // INTERCO_TESTS_SIM_SIM_STORE_H_
