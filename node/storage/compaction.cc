// Compaction of the change log (replication/compaction.h): after a collection, the log
// batches whose every change is superseded become hollow, a bounded pass at a time on
// the committer thread, so that writes go on between passes.
#include <memory>
#include <string>

#include <rocksdb/iterator.h>

#include "absl/strings/str_cat.h"
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

using interco::replication::v1::Batch;
using interco::replication::v1::BatchHeader;
using interco::replication::v1::Change;
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
  if (!op.status.ok() || op.compact_next.empty()) {
    compacting_.erase(op.registry);
    if (compact_again_.erase(op.registry) > 0 && op.status.ok()) ScheduleCompaction(op.registry);
    return;
  }
  auto next = std::make_unique<Op>();
  next->type = Op::Type::kCompact;
  next->registry = op.registry;
  next->compact_from = op.compact_next;
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
  size_t examined = 0;
  for (; it->Valid() && ToView(it->key()) < end; it->Next()) {
    if (examined == limits::kCompactionPassBatches) {
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
    bool superseded = true;
    for (const std::string& bytes : batch.changes()) {
      Change c;
      if (!c.ParseFromString(bytes)) {
        return absl::DataLossError(
            absl::StrCat("a change of a log batch of ", op.registry, " does not parse"));
      }
      replication::ExpandChange(c, h.origin());
      RecordState state;
      if (!c.has_policy()) {
        INTERCO_ASSIGN_OR_RETURN(state, StagedState(g, keys::Record(op.registry, c.key())));
      }
      // No state at all: the record was collected.
      const bool collected = state.causal_length() == 0 && state.fields_size() == 0;
      if (!replication::Superseded(c, h.origin(), collected ? nullptr : &state, frontier)) {
        superseded = false;
        break;
      }
    }
    if (!superseded) continue;
    const Batch hollow = replication::Hollow(batch);
    const std::string bytes = hollow.SerializeAsString();
    rt.meta.set_hollowed_batches(rt.meta.hollowed_batches() + 1);
    rt.meta.set_hollowed_bytes(rt.meta.hollowed_bytes() + it->value().size() - bytes.size());
    g.batch.Put(db_->handle(Cf::kLog), it->key(), ToSlice(bytes));
    g.bytes += bytes.size();
    g.dirty.insert(op.registry);
  }
  INTERCO_RETURN_IF_ERROR(FromRocksStatus(it->status(), "reading the change log"));
  return absl::OkStatus();
}

}  // namespace interco::node
