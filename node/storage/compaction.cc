// Compaction of the change log (replication/compaction.h): after a collection, the log
// batches whose every change is superseded become hollow, a bounded pass at a time on
// the committer thread, so that writes go on between passes.
#include <memory>
#include <string>
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

// A pass whose commit group failed is run again this many times at most.
constexpr int kCompactionRetriesMax = 3;

}  // namespace

using interco::replication::v1::Batch;
using interco::replication::v1::BatchHeader;
using interco::replication::v1::RecordState;

void RecordStore::ScheduleCompaction(const std::string& registry) {
  // One pass at a time per registry; a collection arriving meanwhile starts it over once
  // it ends (what the new frontier allows may lie behind its cursor).
  if (!compacting_.insert(registry).second) {
    compact_again_.insert(registry);
    return;
  }
  auto op = std::make_unique<Op>();
  op->type = Op::Type::kCompact;
  op->registry = registry;
  op->done = [](Op&) {};
  Enqueue(std::move(op));
}

void RecordStore::ContinueCompaction(const Op& op) {
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;  // the next start's first collection starts it again
  }
  std::string from = op.compact_next;
  int retries = 0;
  if (!op.status.ok()) {
    // The pass went through but its group could not commit (full, or broken by another
    // op): the same pass again, a few times. Otherwise (a registry being rebuilt, a log
    // that does not parse or cannot be read, a disk that keeps failing) it waits for the
    // next collection.
    retries = op.compact_retries + 1;
    if (!op.compact_staged || !absl::IsUnavailable(op.status) || Replaying(op.registry) ||
        retries > kCompactionRetriesMax) {
      log::Error(absl::StrCat("compacting the change log of registry ", op.registry, ": ",
                              op.status.ToString()));
      compacting_.erase(op.registry);
      compact_again_.erase(op.registry);
      return;
    }
    from = op.compact_from;
    if (from.empty()) from = keys::Log(op.registry, 0, 0, 0);
  }
  if (from.empty()) {
    compacting_.erase(op.registry);
    if (compact_again_.erase(op.registry) > 0) ScheduleCompaction(op.registry);
    return;
  }
  auto next = std::make_unique<Op>();
  next->type = Op::Type::kCompact;
  next->registry = op.registry;
  next->compact_from = std::move(from);
  next->compact_retries = retries;
  next->done = [](Op&) {};
  Enqueue(std::move(next));
}

absl::Status RecordStore::ApplyCompact(Op& op, GroupState& g) {
  INTERCO_ASSIGN_OR_RETURN(RegistryRuntime * staged, Staged(g, op.registry));
  RegistryRuntime& rt = *staged;
  const replication::VersionVector frontier = replication::FromDots(rt.meta.purged());
  const uint64_t journal_before = rt.meta.journal_before();
  op.compact_next.clear();
  if (frontier.empty() || journal_before == 0) return absl::OkStatus();
  const std::string start = keys::Log(op.registry, 0, 0, 0);
  const std::string end = keys::RegistryEnd(op.registry);
  std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(Cf::kLog);
  it->Seek(ToSlice(op.compact_from.empty() ? start : op.compact_from));
  // Staged only once the whole pass went through: a batch that does not parse fails the
  // pass, not its commit group.
  std::vector<std::pair<std::string, std::string>> hollowed;
  RecordState state;
  const replication::RecordStateOf state_of =
      [&](const std::string& id) -> absl::StatusOr<const RecordState*> {
    INTERCO_ASSIGN_OR_RETURN(state, StagedState(g, keys::Record(op.registry, id)));
    // No state at all: the record was collected.
    return state.causal_length() == 0 && state.fields_size() == 0 ? nullptr : &state;
  };
  uint64_t dropped_bytes = 0;
  size_t examined = 0;
  size_t changes = 0;
  for (; it->Valid() && ToView(it->key()) < end; it->Next()) {
    if (examined == limits::kCompactionPassBatches || changes >= limits::kCompactionPassChanges) {
      op.compact_next = std::string(ToView(it->key()));
      break;
    }
    examined++;
    Batch batch;
    BatchHeader h;
    if (!batch.ParseFromArray(it->value().data(), static_cast<int>(it->value().size())) ||
        !h.ParseFromString(batch.header())) {
      return absl::DataLossError(
          absl::StrCat("log batch of ", op.registry, " does not parse"));
    }
    if (!replication::MayHollow(h, batch.hollow(), frontier, journal_before)) continue;
    changes += static_cast<size_t>(batch.changes_size());
    absl::StatusOr<bool> superseded = replication::AllSuperseded(batch, h.origin(), frontier, state_of);
    if (!superseded.ok()) {
      return absl::Status(superseded.status().code(),
                          absl::StrCat("registry ", op.registry, ": ", superseded.status().message()));
    }
    if (!*superseded) continue;
    std::string bytes = replication::Hollow(batch).SerializeAsString();
    dropped_bytes += it->value().size() - bytes.size();
    hollowed.emplace_back(std::string(ToView(it->key())), std::move(bytes));
  }
  INTERCO_RETURN_IF_ERROR(FromRocksStatus(it->status(), "reading the change log"));
  op.compact_staged = true;
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

}  // namespace interco::node
