// Members left out of collections (replication/exclusion.h), in the store: the
// exclusions each registry keeps, this node's epoch per registry, and the replay of a
// change log without the batches a collection refused after they were applied here.
#include <deque>
#include <map>
#include <memory>

#include <rocksdb/iterator.h>

#include "node/storage/keys.h"
#include "node/storage/record_store.h"
#include "node/storage/record_store_internal.h"
#include "node/storage/rocksdb_store.h"
#include "replication/base/limits.h"
#include "replication/base/status_macros.h"
#include "replication/change_log.h"
#include "replication/collection.h"
#include "replication/ids.h"

namespace interco::node {

using interco::internal::v1::RegistryMeta;
using interco::replication::v1::Batch;
using interco::replication::v1::BatchHeader;
using interco::replication::v1::PolicyChange;
using interco::v1::AuditEvent;

namespace {

// At most this many batches are applied again per commit group of a replay.
constexpr size_t kReplayGroupBatches = 256;

}  // namespace

uint32_t RecordStore::OwnEpoch(const RegistryMeta& meta) const {
  return meta.epoch_switches() == 0 ? epoch_ : (epoch_ << 16) | meta.epoch_switches();
}

bool RecordStore::ShiftEpoch(RegistryMeta& meta) {
  if (meta.epoch_switches() > 0) return false;
  meta.set_epoch_switches(1);
  return true;
}

replication::Exclusions RecordStore::ExclusionsOf(std::string_view registry) {
  absl::MutexLock l(&mu_);
  auto it = registries_.find(ToAbsl(registry));
  if (it == registries_.end()) return {};
  return replication::Exclusions(it->second.meta.exclusions());
}

uint32_t RecordStore::OriginEpoch(std::string_view registry) {
  absl::MutexLock l(&mu_);
  auto it = registries_.find(ToAbsl(registry));
  const uint32_t switches = it == registries_.end() ? 0 : it->second.meta.epoch_switches();
  return switches == 0 ? committed_epoch_ : (committed_epoch_ << 16) | switches;
}

absl::StatusOr<RecordStore::Refused> RecordStore::RefusedOf(std::string_view registry) {
  INTERCO_ASSIGN_OR_RETURN(RegistryRuntime rt, Runtime(registry));
  return Refused{rt.meta.refused_batches(), rt.meta.refused_own_changes()};
}

absl::StatusOr<std::vector<Batch>> RecordStore::RefusedBatches(std::string_view registry) {
  INTERCO_RETURN_IF_ERROR(CheckRegistry(registry));
  std::vector<Batch> out;
  for (const auto& [key, value] : ScanMeta(keys::RefusedPrefix(registry))) {
    Batch b;
    INTERCO_RETURN_IF_ERROR(ParseStored(value, b, "refused batch"));
    out.push_back(std::move(b));
  }
  return out;
}

absl::Status RecordStore::StageExclusion(GroupState& g, RegistryRuntime& rt,
                                         const std::string& registry,
                                         const interco::replication::v1::Collection& collection,
                                         uint64_t change_version,
                                         const interco::replication::v1::Dot& at) {
  replication::Exclusions exclusions(rt.meta.exclusions());
  if (!exclusions.Apply(collection, change_version, at)) return absl::OkStatus();
  exclusions.Write(*rt.meta.mutable_exclusions());
  g.dirty.insert(registry);
  const bool left_out = std::binary_search(collection.excluded().begin(),
                                           collection.excluded().end(), origin_);
  // Own changes of the group not sealed yet were made holding all the collection needs
  // (it is applied here now): they name its version, or, left out, this node would seal
  // them under an earlier one beyond its cut, refused everywhere.
  if (left_out) {
    if (auto pending = g.changes.find(registry);
        pending != g.changes.end() && !pending->second.empty()) {
      g.policy_version[registry] = change_version;
    }
  }
  // Batches of the members left out applied here beyond their cuts came before the
  // collection: refused now, they go (the log is replayed without them once committed).
  const replication::VersionVector overrun = exclusions.Overrun(rt.position, collection);
  if (!overrun.empty()) {
    replication::VersionVector replay = replication::FromDots(rt.meta.replay());
    for (const auto& [key, cut] : overrun) {
      auto [it, added] = replay.try_emplace(key, cut);
      if (!added) it->second.seq = std::min(it->second.seq, cut.seq);
    }
    replication::ToDots(replay, *rt.meta.mutable_replay(), /*keep_empty=*/true);
  } else if (rt.meta.repaired() || rt.meta.partial_size() > 0) {
    // Repaired values, and the first slices of a batch whose last one did not commit
    // (a crash), are in no batch of the log yet: some may be of what the collection
    // refuses. The state is rebuilt from the log; the others come back with their batches.
    rt.meta.set_rebuild(true);
  }
  if (rt.meta.replay_size() > 0 || rt.meta.rebuild()) g.replays.insert(registry);
  // Left out where it wrote, this node's chain there ends at the cut (stamps after it are
  // then known not to be of it): it goes on in a new epoch.
  const replication::OriginKey own{origin_, OwnEpoch(rt.meta)};
  bool ends = overrun.contains(own);
  for (const auto& cut : collection.cuts()) {
    ends |= cut.origin() == own.origin && cut.epoch() == own.epoch;
  }
  if (!ends) return absl::OkStatus();
  if (rt.meta.epoch_switches() == 0xffff || epoch_ > 0xffff) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "registry ", registry, ": this node has no origin epoch left to go on in (left out of ",
        rt.meta.epoch_switches(), " collections)"));
  }
  if (signer_ != nullptr) INTERCO_RETURN_IF_ERROR(StageTailSignatures(g, &registry));
  rt.meta.set_epoch_switches(rt.meta.epoch_switches() + 1);
  return absl::OkStatus();
}

absl::Status RecordStore::Replay(const std::string& registry) {
  INTERCO_ASSIGN_OR_RETURN(RegistryRuntime rt, Runtime(registry));
  const replication::VersionVector cuts = replication::FromDots(rt.meta.replay());
  if (cuts.empty() && !rt.meta.rebuild()) return absl::OkStatus();
  // Reads of the registry, and its writes, wait for the end (UNAVAILABLE); if it fails,
  // they go on waiting until a retry succeeds (a partial state is never served or
  // written on).
  {
    absl::MutexLock l(&mu_);
    replaying_.insert(registry);
  }

  // 1. The refused batches leave the log (kept under "refused/"), and the registry's
  // state goes, in one write: back to the registry as declared.
  rocksdb::WriteBatch wb;
  uint64_t refused_batches = 0;
  uint64_t refused_own = 0;
  for (const auto& [key, cut] : cuts) {
    const std::string prefix = keys::TombstonePrefix(registry, key.origin, key.epoch);
    std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(Cf::kLog);
    for (it->Seek(ToSlice(keys::Log(registry, key.origin, key.epoch, cut.seq + 1)));
         it->Valid() && ToView(it->key()).starts_with(prefix); it->Next()) {
      Batch b;
      BatchHeader h;
      if (!b.ParseFromArray(it->value().data(), static_cast<int>(it->value().size())) ||
          !h.ParseFromString(b.header())) {
        return absl::DataLossError(absl::StrCat("registry ", registry,
                                                     ": a batch of the change log does not parse"));
      }
      const uint64_t start = b.skip_from() > 0 ? b.skip_from() : h.first_seq();
      wb.Put(db_->handle(Cf::kMeta), ToSlice(keys::Refused(registry, key.origin, key.epoch, start)),
             it->value());
      wb.Delete(db_->handle(Cf::kLog), it->key());
      refused_batches++;
      if (key.origin == origin_) refused_own += h.first_seq() + h.count() - start;
    }
    INTERCO_RETURN_IF_ERROR(FromRocksStatus(it->status(), "reading the change log"));
  }
  for (Cf cf : {Cf::kRecords, Cf::kIndex, Cf::kFeed, Cf::kConflicts, Cf::kTombstones,
                Cf::kFingerprints, Cf::kRemovals}) {
    wb.DeleteRange(db_->handle(cf), ToSlice(keys::RegistryPrefix(registry)),
                   ToSlice(keys::RegistryEnd(registry)));
  }
  wb.Delete(db_->handle(Cf::kMeta), ToSlice(keys::StreamState(registry)));
  std::optional<PolicyChange> declared;
  for (const auto& [key, value] : ScanMeta(keys::PolicyPrefix(registry))) {
    if (key == keys::Policy(registry, 0)) {
      declared.emplace();
      INTERCO_RETURN_IF_ERROR(ParseStored(value, *declared, "policy version"));
    } else {
      wb.Delete(db_->handle(Cf::kMeta), ToSlice(key));
    }
  }
  if (!declared) {
    return absl::DataLossError(absl::StrCat("registry ", registry,
                                                 " has no declared policy (version 0)"));
  }
  absl::StatusOr<replication::RegistryPolicy> compiled =
      replication::RegistryPolicy::Compile(rt.meta.registry().owner(), declared->policy());
  if (!compiled.ok()) return compiled.status();
  RegistryMeta m;
  *m.mutable_registry() = rt.meta.registry();
  *m.mutable_registry()->mutable_policy() = declared->policy();
  m.set_create_hlc(rt.meta.create_hlc());
  m.set_definition_hlc(rt.meta.definition_hlc());
  // A new feed: readers following the old one start again from a listing.
  m.set_feed_id(NewFeedId(rt.meta.create_hlc() ^ rt.meta.feed_next_seq()));
  m.set_feed_first_seq(rt.meta.feed_next_seq());
  m.set_feed_next_seq(rt.meta.feed_next_seq());
  m.set_epoch_switches(rt.meta.epoch_switches());
  *m.mutable_replay() = rt.meta.replay();
  m.set_rebuild(rt.meta.rebuild());
  m.set_refused_batches(rt.meta.refused_batches() + refused_batches);
  m.set_refused_own_changes(rt.meta.refused_own_changes() + refused_own);
  // Hollow batches stay hollow in the log: what the compaction did is still done.
  m.set_hollowed_batches(rt.meta.hollowed_batches());
  m.set_hollowed_bytes(rt.meta.hollowed_bytes());
  m.set_hollow_received(rt.meta.hollow_received());
  m.set_folded_batches(rt.meta.folded_batches());
  m.set_folded_bytes(rt.meta.folded_bytes());
  wb.Put(db_->handle(Cf::kRegistries), ToSlice(registry), m.SerializeAsString());
  INTERCO_RETURN_IF_ERROR(db_->Write(wb, /*sync=*/true));
  RegistryRuntime fresh;
  fresh.meta = m;
  fresh.schema = rt.schema;
  fresh.policies = std::make_shared<const replication::PolicyHistory>(*std::move(compiled));
  {
    absl::MutexLock l(&mu_);
    registries_[registry] = fresh;
  }
  // A new feed, from a synced commit, which every feed's entries waiting for a sync had.
  ReleaseHeldFeeds(/*sync=*/false);
  // Runs of own batches are taken again from the log once it is replayed (a tail cut off
  // with the refused batches is gone).
  unsigned_runs_.erase(registry);
  old_tails_.erase(std::remove_if(old_tails_.begin(), old_tails_.end(),
                                  [&](const auto& t) { return t.first == registry; }),
                   old_tails_.end());

  // 2. Every batch left in the log, again, origin by origin as each becomes ready (its
  // policy version and what its collections require applied before it).
  std::map<replication::OriginKey, std::deque<uint64_t>> pending;
  {
    const std::string prefix = keys::RegistryPrefix(registry);
    std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(Cf::kLog);
    for (it->Seek(ToSlice(prefix)); it->Valid() && ToView(it->key()).starts_with(prefix);
         it->Next()) {
      std::optional<keys::TombstoneKey> parsed = keys::ParseLog(ToView(it->key()), registry);
      if (!parsed) {
        return absl::DataLossError(absl::StrCat("registry ", registry,
                                                     ": malformed change-log key"));
      }
      pending[replication::OriginKey{parsed->origin, parsed->epoch}].push_back(parsed->seq);
    }
    INTERCO_RETURN_IF_ERROR(FromRocksStatus(it->status(), "reading the change log"));
  }
  for (bool progress = true; progress;) {
    progress = false;
    std::deque<replication::DecodedBatch> decoded;
    std::vector<std::unique_ptr<Op>> group;
    std::vector<std::pair<replication::OriginKey, size_t>> taken;  // per origin: ops in group
    for (auto& [key, seqs] : pending) {
      size_t n = 0;
      for (uint64_t first_seq : seqs) {
        if (group.size() >= kReplayGroupBatches) break;
        INTERCO_ASSIGN_OR_RETURN(
            auto raw, db_->Get(Cf::kLog, keys::Log(registry, key.origin, key.epoch, first_seq)));
        Batch b;
        if (!raw.has_value() || !b.ParseFromString(*raw)) {
          return absl::DataLossError(absl::StrCat("registry ", registry,
                                                       ": a batch of the change log is missing"));
        }
        absl::StatusOr<replication::DecodedBatch> d = replication::DecodeBatch(b, hasher_);
        if (!d.ok()) return d.status();
        decoded.push_back(*std::move(d));
        auto op = std::make_unique<Op>();
        op->type = Op::Type::kApplyRemote;
        op->registry = registry;
        op->remote = &decoded.back();
        op->replayed = true;
        group.push_back(std::move(op));
        n++;
      }
      if (n > 0) taken.emplace_back(key, n);
    }
    if (group.empty()) break;
    ApplyGroup(group);
    // Per origin, the batches applied in order; the first that was not (not ready yet, or
    // the group was full) and those after it are tried again in the next round.
    size_t i = 0;
    absl::Status stuck;
    for (const auto& [key, n] : taken) {
      size_t applied = 0;
      while (applied < n && group[i + applied]->status.ok()) applied++;
      if (applied < n && stuck.ok()) stuck = group[i + applied]->status;
      auto& seqs = pending[key];
      seqs.erase(seqs.begin(), seqs.begin() + static_cast<std::ptrdiff_t>(applied));
      progress |= applied > 0;
      i += n;
    }
    for (auto it = pending.begin(); it != pending.end();) {
      it = it->second.empty() ? pending.erase(it) : std::next(it);
    }
    if (!progress && !pending.empty()) {
      return absl::DataLossError(absl::StrCat(
          "registry ", registry, ": replaying the change log, ", pending.size(),
          " origins' batches never became ready (", stuck.message(), ")"));
    }
  }

  // 3. Done: the mark goes, and the audit says what was taken out.
  INTERCO_ASSIGN_OR_RETURN(RegistryRuntime now, Runtime(registry));
  now.meta.clear_replay();
  now.meta.clear_rebuild();
  now.meta.clear_repaired();
  now.meta.clear_partial();
  GroupState g;
  g.batch.Put(db_->handle(Cf::kRegistries), ToSlice(registry), now.meta.SerializeAsString());
  AuditEvent e;
  e.set_action(AuditEvent::REPLAY_LOG);
  e.set_chain(AuditChainOf(registry));
  e.set_count(static_cast<uint32_t>(std::min<uint64_t>(refused_batches, UINT32_MAX)));
  e.set_accepted(true);
  StageAudit(g, std::move(e));
  INTERCO_RETURN_IF_ERROR(db_->Write(g.batch, /*sync=*/true));
  {
    absl::MutexLock l(&mu_);
    registries_[registry] = std::move(now);
  }
  {
    absl::MutexLock l(&audit_mu_);
    for (auto& [chain, end] : g.audit) audit_chains_[chain] = std::move(end);
  }
  // Unsigned tails of this node's chains in the rebuilt log, to sign.
  INTERCO_RETURN_IF_ERROR(LoadUnsignedTail(registry, now));
  {
    absl::MutexLock l(&mu_);
    replaying_.erase(registry);
  }
  Notify({registry});
  return absl::OkStatus();
}

}  // namespace interco::node
