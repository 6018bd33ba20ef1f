// Compaction of the change log (replication/compaction.h): after a collection, the log
// batches whose every change is superseded become hollow, and then each stretch of hollow
// batches up to a run's end is folded into one skip in place (docs/REPLICATION.md,
// "Skips"). The compactor thread looks through the log, reading committed state; the
// committer checks what it found again against the staged state and rewrites it, a few
// hundred batches per commit group, so that writes go on meanwhile.
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <rocksdb/iterator.h>

#include "absl/strings/str_cat.h"
#include "node/log.h"
#include "node/storage/keys.h"
#include "node/storage/record_store.h"
#include "node/storage/record_store_internal.h"
#include "node/storage/rocksdb_store.h"
#include "replication/base/limits.h"
#include "replication/base/status_macros.h"
#include "replication/change_log.h"
#include "replication/collection.h"
#include "replication/compaction.h"

namespace interco::node {
namespace {

// An op whose commit group failed is run again this many times at most.
constexpr int kCompactionRetriesMax = 3;
// The compactor looks whether to stop every this many batches.
constexpr size_t kStopCheckBatches = 16;

using interco::replication::v1::Batch;
using interco::replication::v1::BatchHeader;
using interco::replication::v1::RecordState;

// The state a compaction judges a record's changes by: none (nullptr) once the record was
// collected, which leaves no state at all.
const RecordState* UnlessCollected(const RecordState& state) {
  return state.causal_length() == 0 && state.fields_size() == 0 ? nullptr : &state;
}

// Whether the log batch `bytes` (parsed into `batch`) may become hollow now: its place
// (replication::MayHollow) and its changes (replication::AllSuperseded). DATA_LOSS if it
// does not parse; the error of `state_of`.
absl::StatusOr<bool> Hollowable(std::string_view bytes, const replication::VersionVector& frontier,
                                uint64_t journal_before,
                                const replication::RecordStateOf& state_of, Batch& batch) {
  BatchHeader h;
  if (!batch.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())) ||
      !h.ParseFromString(batch.header())) {
    return absl::DataLossError("a log batch does not parse");
  }
  if (!replication::MayHollow(h, batch.hollow(), frontier, journal_before)) return false;
  return replication::AllSuperseded(batch, h.origin(), frontier, state_of);
}

}  // namespace

void RecordStore::ScheduleCompaction(const std::string& registry) {
  absl::MutexLock l(&compact_mu_);
  if (!compact_stopping_) compact_requests_.insert(registry);
}

void RecordStore::CompactLoop() {
  while (true) {
    std::string registry;
    {
      absl::MutexLock l(&compact_mu_);
      compact_mu_.Await(absl::Condition(
          +[](RecordStore* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->compact_mu_) {
            return s->compact_stopping_ || !s->compact_requests_.empty();
          },
          this));
      // Stopping: what is asked is dropped; the next start's first collection asks again.
      if (compact_stopping_) return;
      registry = *compact_requests_.begin();
      compact_requests_.erase(compact_requests_.begin());
    }
    CompactRegistry(registry);
  }
}

void RecordStore::CompactRegistry(const std::string& registry) {
  replication::VersionVector frontier;
  uint64_t journal_before = 0;
  {
    absl::MutexLock l(&mu_);
    auto it = registries_.find(registry);
    if (it == registries_.end() || replaying_.contains(registry)) return;
    frontier = replication::FromDots(it->second.meta.purged());
    journal_before = it->second.meta.journal_before();
  }
  if (frontier.empty() || journal_before == 0) return;
  RecordState state;
  const replication::RecordStateOf state_of =
      [&](const std::string& id) -> absl::StatusOr<const RecordState*> {
    INTERCO_ASSIGN_OR_RETURN(std::optional<RecordState> stored, StoredState(registry, id));
    state = stored.has_value() ? *std::move(stored) : RecordState();
    return UnlessCollected(state);
  };
  const std::string end = keys::RegistryEnd(registry);
  std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(Cf::kLog);
  std::vector<std::string> found;
  size_t found_changes = 0;
  size_t looked = 0;
  for (it->Seek(ToSlice(keys::Log(registry, 0, 0, 0))); it->Valid() && ToView(it->key()) < end;
       it->Next()) {
    if (++looked % kStopCheckBatches == 0 && CompactorStopping()) return;
    Batch batch;
    absl::StatusOr<bool> hollowable =
        Hollowable(ToView(it->value()), frontier, journal_before, state_of, batch);
    if (!hollowable.ok()) {
      // A registry being rebuilt answers UNAVAILABLE: its next collection starts over.
      if (!Replaying(registry)) {
        log::Error(absl::StrCat("compacting the change log of registry ", registry, ": ",
                                hollowable.status().ToString()));
      }
      return;
    }
    if (!*hollowable) continue;
    found.emplace_back(ToView(it->key()));
    found_changes += static_cast<size_t>(batch.changes_size());
    if (found.size() == limits::kCompactionPassBatches ||
        found_changes >= limits::kCompactionPassChanges) {
      if (!SubmitCompaction(registry, std::move(found), {})) return;
      found.clear();
      found_changes = 0;
    }
  }
  if (absl::Status s = FromRocksStatus(it->status(), "reading the change log"); !s.ok()) {
    log::Error(absl::StrCat("compacting the change log of registry ", registry, ": ",
                            s.ToString()));
    return;
  }
  if (!found.empty() && !SubmitCompaction(registry, std::move(found), {})) return;
  FoldRegistry(registry);
}

void RecordStore::FoldRegistry(const std::string& registry) {
  const std::string end = keys::RegistryEnd(registry);
  std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(Cf::kLog);
  // The hollow entries of one origin epoch read since the last kept batch (no stretch
  // goes over one), with their keys.
  std::optional<replication::OriginKey> origin;
  std::vector<Batch> window;
  std::vector<std::string> window_keys;
  std::vector<std::vector<std::string>> folds;
  size_t fold_entries = 0;
  // Takes the window's stretches, handing the committer those taken so far before one
  // would make the op go over fold_window_entries_ (RecordStoreOptions); false if the
  // look through the log should stop.
  auto take = [&]() -> bool {
    for (const auto& [first, last] : replication::FoldableStretches(window)) {
      if (!folds.empty() && fold_entries + (last - first) > fold_window_entries_) {
        if (!SubmitCompaction(registry, {}, std::exchange(folds, {}))) return false;
        fold_entries = 0;
      }
      folds.emplace_back(window_keys.begin() + static_cast<std::ptrdiff_t>(first),
                         window_keys.begin() + static_cast<std::ptrdiff_t>(last) + 1);
      fold_entries += last - first;
    }
    window.clear();
    window_keys.clear();
    return true;
  };
  size_t looked = 0;
  for (it->Seek(ToSlice(keys::Log(registry, 0, 0, 0))); it->Valid() && ToView(it->key()) < end;
       it->Next()) {
    if (++looked % kStopCheckBatches == 0 && CompactorStopping()) return;
    const std::optional<keys::TombstoneKey> parsed = keys::ParseLog(ToView(it->key()), registry);
    Batch batch;
    if (!parsed || !batch.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      log::Error(absl::StrCat("folding the change log of registry ", registry,
                              ": a log entry does not parse"));
      return;
    }
    const replication::OriginKey key{parsed->origin, parsed->epoch};
    if (origin != key || !batch.hollow()) {
      if (!take()) return;
      origin = key;
      if (!batch.hollow()) continue;
    }
    window.push_back(std::move(batch));
    window_keys.emplace_back(ToView(it->key()));
    // Cut at a run's end only: the entry after it may start a stretch.
    if (window.size() >= fold_window_entries_ && !window.back().signature().empty() && !take()) {
      return;
    }
  }
  if (absl::Status s = FromRocksStatus(it->status(), "reading the change log"); !s.ok()) {
    log::Error(absl::StrCat("folding the change log of registry ", registry, ": ", s.ToString()));
    return;
  }
  if (!take()) return;
  if (!folds.empty()) SubmitCompaction(registry, {}, std::move(folds));
}

bool RecordStore::SubmitCompaction(const std::string& registry, std::vector<std::string> keys,
                                   std::vector<std::vector<std::string>> folds) {
  for (int attempt = 0;; ++attempt) {
    if (CompactorStopping()) return false;
    auto op = std::make_unique<Op>();
    op->type = Op::Type::kCompact;
    op->registry = registry;
    op->compact_keys = keys;
    op->fold_stretches = folds;
    const absl::Status s = EnqueueAndWait(std::move(op));
    if (s.ok()) return true;
    // Its group could not commit (full, or broken by another op): the same again, a few
    // times. Otherwise (a registry being rebuilt, a log that cannot be read, a disk that
    // keeps failing) the next collection starts over.
    const bool stopping = CompactorStopping();
    if (!absl::IsUnavailable(s) || Replaying(registry) || stopping ||
        attempt == kCompactionRetriesMax) {
      if (!Replaying(registry) && !stopping) {
        log::Error(absl::StrCat("compacting the change log of registry ", registry, ": ",
                                s.ToString()));
      }
      return false;
    }
  }
}

bool RecordStore::CompactorStopping() {
  absl::MutexLock l(&compact_mu_);
  return compact_stopping_;
}

absl::Status RecordStore::ApplyCompact(Op& op, GroupState& g) {
  INTERCO_ASSIGN_OR_RETURN(RegistryRuntime * staged, Staged(g, op.registry));
  RegistryRuntime& rt = *staged;
  if (!op.fold_stretches.empty()) return StageFolds(op, g, rt);
  const replication::VersionVector frontier = replication::FromDots(rt.meta.purged());
  const uint64_t journal_before = rt.meta.journal_before();
  if (frontier.empty() || journal_before == 0) return absl::OkStatus();
  // Staged only once every batch was checked: a batch that does not parse fails the op,
  // not its commit group.
  std::vector<std::pair<std::string, std::string>> hollowed;
  RecordState state;
  const replication::RecordStateOf state_of =
      [&](const std::string& id) -> absl::StatusOr<const RecordState*> {
    INTERCO_ASSIGN_OR_RETURN(state, StagedState(g, keys::Record(op.registry, id)));
    return UnlessCollected(state);
  };
  uint64_t dropped_bytes = 0;
  for (const std::string& key : op.compact_keys) {
    // Checked again against the staged state: the compactor read committed state, and a
    // batch it found may have changed since (made hollow by an earlier op, moved out of
    // the log by a replay, or replaced by a skip earlier in this group).
    if (g.log_rewritten.contains(key)) continue;
    INTERCO_ASSIGN_OR_RETURN(std::optional<std::string> stored, db_->Get(Cf::kLog, key));
    if (!stored.has_value()) continue;
    Batch batch;
    absl::StatusOr<bool> hollowable = Hollowable(*stored, frontier, journal_before, state_of, batch);
    if (!hollowable.ok()) {
      return absl::Status(hollowable.status().code(),
                          absl::StrCat("registry ", op.registry, ": ", hollowable.status().message()));
    }
    if (!*hollowable) continue;
    std::string bytes = replication::Hollow(batch).SerializeAsString();
    dropped_bytes += stored->size() - bytes.size();
    hollowed.emplace_back(key, std::move(bytes));
  }
  if (hollowed.empty()) return absl::OkStatus();
  for (const auto& [key, bytes] : hollowed) {
    g.batch.Put(db_->handle(Cf::kLog), ToSlice(key), ToSlice(bytes));
    g.bytes += bytes.size();
  }
  rt.meta.set_hollowed_batches(rt.meta.hollowed_batches() + hollowed.size());
  rt.meta.set_hollowed_bytes(rt.meta.hollowed_bytes() + dropped_bytes);
  g.dirty.insert(op.registry);
  return absl::OkStatus();
}

absl::Status RecordStore::StageFolds(Op& op, GroupState& g, RegistryRuntime& rt) {
  // Checked again as the log is now: the compactor read it before, and an entry it found
  // may have changed since (taken out of the log by a replay, or replaced by a skip
  // earlier in this group).
  std::vector<std::pair<std::string, std::string>> puts;
  std::vector<std::string> deletes;
  uint64_t folded = 0, freed = 0;
  for (const std::vector<std::string>& stretch : op.fold_stretches) {
    std::vector<Batch> entries;
    uint64_t bytes = 0;
    std::optional<replication::OriginKey> origin;
    for (const std::string& key : stretch) {
      if (g.log_rewritten.contains(key)) break;  // replaced by a skip earlier in this group
      INTERCO_ASSIGN_OR_RETURN(std::optional<std::string> stored, db_->Get(Cf::kLog, key));
      const std::optional<keys::TombstoneKey> parsed = keys::ParseLog(key, op.registry);
      if (!stored.has_value() || !parsed) break;
      Batch& b = entries.emplace_back();
      const replication::OriginKey k{parsed->origin, parsed->epoch};
      if (!b.ParseFromString(*stored) || replication::EntryFirstSeq(b) != parsed->seq ||
          (origin.has_value() && *origin != k)) {
        return absl::DataLossError(absl::StrCat("registry ", op.registry,
                                                ": a log entry does not parse or is misplaced"));
      }
      origin = k;
      bytes += stored->size();
    }
    if (entries.size() != stretch.size() ||
        replication::FoldableStretches(entries) !=
            std::vector<std::pair<size_t, size_t>>{{0, entries.size() - 1}}) {
      continue;  // not the stretch it was
    }
    std::string skip = replication::Skip(entries.back(), *replication::EntryFirstSeq(entries[0]))
                           .SerializeAsString();
    folded += entries.size() - 1;
    freed += bytes - skip.size();
    puts.emplace_back(stretch.front(), std::move(skip));
    deletes.insert(deletes.end(), stretch.begin() + 1, stretch.end());
  }
  if (puts.empty()) return absl::OkStatus();
  for (const auto& [key, bytes] : puts) {
    g.batch.Put(db_->handle(Cf::kLog), ToSlice(key), ToSlice(bytes));
    g.bytes += bytes.size();
  }
  for (const std::string& key : deletes) {
    g.batch.Delete(db_->handle(Cf::kLog), ToSlice(key));
    g.bytes += key.size();
  }
  rt.meta.set_folded_batches(rt.meta.folded_batches() + folded);
  rt.meta.set_folded_bytes(rt.meta.folded_bytes() + freed);
  g.dirty.insert(op.registry);
  return absl::OkStatus();
}

}  // namespace interco::node
