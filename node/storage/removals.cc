// Collection of the removed elements of string sets (replication/collection.h): each
// change that removes elements is indexed in the `removals` family by its dot (keys as in
// the `tombstones` family), and a collection takes out of the records the removed elements
// whose remove and add are both at or below its frontier.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "node/storage/keys.h"
#include "node/storage/record_store.h"
#include "node/storage/record_store_internal.h"
#include "node/storage/rocksdb_store.h"
#include "replication/base/status_macros.h"
#include "replication/change_log.h"
#include "replication/collection.h"

namespace interco::node {

using interco::replication::v1::Batch;
using interco::replication::v1::BatchHeader;
using interco::replication::v1::Change;
using replication::RecordState;

void RecordStore::StageRemovals(GroupState& g, const std::string& registry, const std::string& id,
                                const RecordState& delta, replication::OriginKey key,
                                uint64_t seq) {
  const RecordState removals = replication::RemovalsOf(delta);
  if (removals.fields_size() == 0) return;
  std::string rkey = keys::Tombstone(registry, key.origin, key.epoch, seq, id);
  std::string value = removals.SerializeAsString();
  g.batch.Put(db_->handle(Cf::kRemovals), ToSlice(rkey), value);
  g.bytes += rkey.size() + value.size();
  g.removals[std::move(rkey)] = std::move(value);
}

absl::StatusOr<std::map<std::string, std::pair<std::string, RecordState>>>
RecordStore::RemovalsUnder(GroupState& g, const std::string& registry,
                           const replication::VersionVector& frontier) {
  std::map<std::string, std::pair<std::string, RecordState>> out;
  auto take = [&](std::string_view rkey, std::string_view value) -> absl::Status {
    std::optional<keys::TombstoneKey> parsed = keys::ParseTombstone(rkey, registry);
    RecordState removals;
    if (!parsed || !removals.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
      return absl::DataLossError(absl::StrCat("malformed removals entry in registry ", registry));
    }
    out[std::string(rkey)] = {std::string(parsed->record), std::move(removals)};
    return absl::OkStatus();
  };
  INTERCO_RETURN_IF_ERROR(ScanUnder(Cf::kRemovals, g.removals, registry, frontier, take));
  return out;
}

absl::StatusOr<bool> RecordStore::StagePurge(GroupState& g, RegistryRuntime& rt,
                                             const std::string& registry,
                                             const replication::VersionVector& frontier,
                                             bool dry_run) {
  INTERCO_ASSIGN_OR_RETURN(auto under, RemovalsUnder(g, registry, frontier));
  bool resolved = false;
  uint64_t purged = 0;
  for (auto& [rkey, entry] : under) {
    const auto& [id, removals] = entry;
    const std::string key = keys::Record(registry, id);
    INTERCO_ASSIGN_OR_RETURN(RecordState state, StagedState(g, key));
    RecordState after = state;
    bool pending = false;
    const size_t n = replication::PurgeRemovals(after, removals, frontier, &pending);
    // With an add not at or below the frontier yet, the entry waits for a later
    // collection; the elements whose add is go now.
    if (pending && n == 0) continue;
    resolved = true;
    if (dry_run) return true;
    if (n > 0) {
      StageRecord(rt, g, registry, id, state, std::move(after), nullptr, /*quiet=*/true);
      purged += n;
    }
    if (pending) continue;
    g.batch.Delete(db_->handle(Cf::kRemovals), ToSlice(rkey));
    g.removals.erase(rkey);
  }
  if (dry_run) return resolved;
  // The greatest frontier applied, entry by entry, with the HLC of its last change (and
  // every epoch it named, so that an origin with several stays known as such).
  replication::VersionVector kept = replication::FromDots(rt.meta.purged());
  replication::MergeFrontier(frontier, kept);
  replication::ToDots(kept, *rt.meta.mutable_purged(), /*keep_empty=*/true);
  rt.meta.set_purged_removals(rt.meta.purged_removals() + purged);
  g.dirty.insert(registry);
  return resolved;
}

absl::StatusOr<replication::VersionVector> RecordStore::StampFrontier(
    const std::string& registry, replication::VersionVector frontier) {
  for (auto& [key, pos] : frontier) {
    if (pos.seq == 0) continue;
    const std::string prefix = keys::TombstonePrefix(registry, key.origin, key.epoch);
    std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(Cf::kLog);
    it->SeekForPrev(ToSlice(keys::Log(registry, key.origin, key.epoch, pos.seq)));
    INTERCO_RETURN_IF_ERROR(FromRocksStatus(it->status(), "reading the change log"));
    Batch batch;
    BatchHeader h;
    if (!it->Valid() || !ToView(it->key()).starts_with(prefix) ||
        !batch.ParseFromArray(it->value().data(), static_cast<int>(it->value().size())) ||
        !h.ParseFromString(batch.header()) ||
        (batch.skip_from() > 0 ? batch.skip_from() : h.first_seq()) > pos.seq ||
        pos.seq > h.first_seq() + h.count() - 1) {
      return absl::DataLossError(absl::StrCat("registry ", registry, ": change ", pos.seq,
                                              " of origin ", key.origin, " epoch ", key.epoch,
                                              " is not in the change log"));
    }
    if (h.first_seq() + h.count() - 1 == pos.seq) {
      pos.max_hlc = h.max_hlc();  // the batch's last change
      continue;
    }
    if (batch.hollow()) {
      // (Or a skip standing for the batch.)
      // The change's stamp went with it: the greatest stamp before its batch is below it
      // (fewer stamps then count as under the frontier, never more).
      it->Prev();
      BatchHeader before;
      pos.max_hlc = 0;
      if (it->Valid() && ToView(it->key()).starts_with(prefix) &&
          batch.ParseFromArray(it->value().data(), static_cast<int>(it->value().size())) &&
          before.ParseFromString(batch.header())) {
        pos.max_hlc = before.max_hlc();
      }
      continue;
    }
    Change c;
    if (!c.ParseFromString(batch.changes(static_cast<int>(pos.seq - h.first_seq())))) {
      return absl::DataLossError(absl::StrCat("registry ", registry, ": a change of origin ",
                                              key.origin, " does not parse"));
    }
    pos.max_hlc = c.has_policy() ? c.policy().version() : c.hlc();
  }
  return frontier;
}

absl::Status RecordStore::AddRemovals(interco::internal::v1::NodeMeta& meta) {
  rocksdb::WriteBatch wb;
  std::unique_ptr<rocksdb::Iterator> registries = db_->NewIterator(Cf::kRegistries);
  for (registries->SeekToFirst(); registries->Valid(); registries->Next()) {
    const std::string registry(ToView(registries->key()));
    const std::string prefix = keys::RegistryPrefix(registry);
    std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(Cf::kLog);
    for (it->Seek(ToSlice(prefix)); it->Valid() && ToView(it->key()).starts_with(prefix);
         it->Next()) {
      // <registry>\0<origin:be32><epoch:be32><first_seq:be64>
      const std::string_view at = ToView(it->key()).substr(prefix.size());
      Batch batch;
      if (at.size() != 16 ||
          !batch.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        return absl::DataLossError(
            absl::StrCat("registry ", registry, ": a log entry does not parse"));
      }
      const uint32_t origin = keys::GetBigEndian32(at.substr(0, 4));
      const uint32_t epoch = keys::GetBigEndian32(at.substr(4, 4));
      const uint64_t first_seq = keys::GetBigEndian64(at.substr(8, 8));
      for (int i = 0; i < batch.changes_size(); ++i) {
        Change c;
        if (!c.ParseFromString(batch.changes(i))) {
          return absl::DataLossError(
              absl::StrCat("registry ", registry, ": a change does not parse"));
        }
        if (c.has_policy()) continue;
        replication::ExpandChange(c, origin);
        const RecordState removals = replication::RemovalsOf(c.delta());
        if (removals.fields_size() == 0) continue;
        wb.Put(db_->handle(Cf::kRemovals),
               ToSlice(keys::Tombstone(registry, origin, epoch,
                                       first_seq + static_cast<uint64_t>(i), c.key())),
               removals.SerializeAsString());
      }
    }
    INTERCO_RETURN_IF_ERROR(FromRocksStatus(it->status(), "reading the change log"));
  }
  INTERCO_RETURN_IF_ERROR(FromRocksStatus(registries->status(), "reading registries"));
  meta.set_format_version(6);
  wb.Put(db_->handle(Cf::kMeta), ToSlice(keys::kNodeMeta), meta.SerializeAsString());
  return db_->Write(wb, /*sync=*/true);
}

}  // namespace interco::node
