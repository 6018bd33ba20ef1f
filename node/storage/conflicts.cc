// The conflict journals of a registry's records (replication/conflict_journal.h): kept in
// the `conflicts` family beside each live record, changed in the commit of the change that
// alters them, emptied when a life ends, and cut by the owner's retention.
#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "node/storage/keys.h"
#include "node/storage/record_store.h"
#include "node/storage/record_store_internal.h"
#include "node/storage/rocksdb_store.h"
#include "replication/base/status_macros.h"
#include "replication/conflict_journal.h"

namespace interco::node {

using replication::RecordState;

absl::Status RecordStore::StageConflicts(RegistryRuntime& rt, GroupState& g,
                                         const std::string& registry, const std::string& id,
                                         const RecordState& current, const RecordState& delta,
                                         const std::function<bool(replication::Stamp)>& received) {
  if (replication::JournalUntouched(*rt.schema, current, delta)) return absl::OkStatus();
  const std::string key = keys::Record(registry, id);
  auto it = g.conflicts.find(key);
  if (it == g.conflicts.end()) {
    replication::RecordConflicts loaded;
    if (replication::IsLive(current)) {  // only a live record has a journal
      INTERCO_ASSIGN_OR_RETURN(auto raw, db_->Get(Cf::kConflicts, key));
      if (raw.has_value()) INTERCO_RETURN_IF_ERROR(ParseStored(*raw, loaded, "conflict journal"));
    }
    it = g.conflicts.emplace(key, std::move(loaded)).first;
  }
  replication::RecordConflicts& journal = it->second;
  const int before = journal.lost_size();
  if (!replication::UpdateConflicts(*rt.schema, current, delta, received,
                                    rt.meta.journal_before(), journal)) {
    return absl::OkStatus();
  }
  rt.meta.set_conflict_count(rt.meta.conflict_count() + journal.lost_size() - before);
  // The oldest stamp of the registry's journals stays a lower bound (unless unknown).
  const uint64_t oldest = replication::OldestConflict(journal);
  if (oldest != 0 && rt.meta.journal_oldest() != 0 && oldest < rt.meta.journal_oldest()) {
    rt.meta.set_journal_oldest(oldest);
  }
  PutJournal(g, key, journal);
  g.dirty.insert(registry);
  return absl::OkStatus();
}

void RecordStore::PutJournal(GroupState& g, const std::string& key,
                             const replication::RecordConflicts& journal) {
  if (journal.ByteSizeLong() == 0) {
    g.batch.Delete(db_->handle(Cf::kConflicts), ToSlice(key));
    return;
  }
  const std::string bytes = journal.SerializeAsString();
  g.bytes += bytes.size();
  g.batch.Put(db_->handle(Cf::kConflicts), ToSlice(key), bytes);
}

absl::Status RecordStore::DropConflicts(RegistryRuntime& rt, GroupState& g,
                                        const std::string& registry, const std::string& key) {
  auto it = g.conflicts.find(key);
  if (it == g.conflicts.end()) {
    replication::RecordConflicts loaded;
    INTERCO_ASSIGN_OR_RETURN(auto raw, db_->Get(Cf::kConflicts, key));
    if (raw.has_value()) INTERCO_RETURN_IF_ERROR(ParseStored(*raw, loaded, "conflict journal"));
    it = g.conflicts.emplace(key, std::move(loaded)).first;
  }
  rt.meta.set_conflict_count(rt.meta.conflict_count() - it->second.lost_size());
  it->second.Clear();
  g.batch.Delete(db_->handle(Cf::kConflicts), ToSlice(key));
  g.dirty.insert(registry);
  return absl::OkStatus();
}

absl::Status RecordStore::ForEachJournal(
    GroupState& g, const std::string& registry,
    const std::function<absl::Status(const std::string& key, replication::RecordConflicts&)>& fn) {
  const std::string prefix = keys::RegistryPrefix(registry);
  // Committed journals, unless the group holds a newer one of the same record...
  std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(Cf::kConflicts);
  for (it->Seek(ToSlice(prefix)); it->Valid() && ToView(it->key()).starts_with(prefix);
       it->Next()) {
    std::string key(ToView(it->key()));
    if (g.conflicts.contains(key)) continue;
    replication::RecordConflicts journal;
    INTERCO_RETURN_IF_ERROR(ParseStored(ToView(it->value()), journal, "conflict journal"));
    INTERCO_RETURN_IF_ERROR(fn(key, journal));
  }
  INTERCO_RETURN_IF_ERROR(FromRocksStatus(it->status(), "reading conflict journals"));
  // ...then those of the group (an empty one was deleted).
  for (auto& [key, journal] : g.conflicts) {
    if (!key.starts_with(prefix) || journal.ByteSizeLong() == 0) continue;
    replication::RecordConflicts copy = journal;
    INTERCO_RETURN_IF_ERROR(fn(key, copy));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> RecordStore::OldestJournalStamp(GroupState& g, RegistryRuntime& rt,
                                                         const std::string& registry) {
  if (rt.meta.journal_oldest() != 0) return rt.meta.journal_oldest();
  uint64_t oldest = std::numeric_limits<uint64_t>::max();
  INTERCO_RETURN_IF_ERROR(
      ForEachJournal(g, registry, [&](const std::string&, replication::RecordConflicts& journal) {
        if (const uint64_t o = replication::OldestConflict(journal); o != 0) {
          oldest = std::min(oldest, o);
        }
        return absl::OkStatus();
      }));
  rt.meta.set_journal_oldest(oldest);
  g.dirty.insert(registry);
  return oldest;
}

absl::Status RecordStore::ExpireJournals(GroupState& g, RegistryRuntime& rt,
                                         const std::string& registry, uint64_t journal_before) {
  if (journal_before <= rt.meta.journal_before()) return absl::OkStatus();
  rt.meta.set_journal_before(journal_before);
  g.dirty.insert(registry);
  INTERCO_ASSIGN_OR_RETURN(const uint64_t oldest, OldestJournalStamp(g, rt, registry));
  if (oldest >= journal_before) return absl::OkStatus();
  uint64_t remaining_oldest = std::numeric_limits<uint64_t>::max();
  uint64_t expired = 0;
  std::vector<std::pair<std::string, replication::RecordConflicts>> changed;
  INTERCO_RETURN_IF_ERROR(ForEachJournal(
      g, registry, [&](const std::string& key, replication::RecordConflicts& journal) {
        bool any = false;
        expired += replication::ExpireConflicts(journal_before, journal, &any);
        if (const uint64_t o = replication::OldestConflict(journal); o != 0) {
          remaining_oldest = std::min(remaining_oldest, o);
        }
        if (any) changed.emplace_back(key, std::move(journal));
        return absl::OkStatus();
      }));
  for (auto& [key, journal] : changed) {
    PutJournal(g, key, journal);
    g.conflicts[key] = std::move(journal);
  }
  rt.meta.set_conflict_count(rt.meta.conflict_count() - static_cast<int64_t>(expired));
  rt.meta.set_expired_conflicts(rt.meta.expired_conflicts() + expired);
  rt.meta.set_journal_oldest(remaining_oldest);
  return absl::OkStatus();
}

}  // namespace interco::node
