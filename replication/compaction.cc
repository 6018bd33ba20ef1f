#include "replication/compaction.h"

#include <algorithm>

#include "replication/change_log.h"
#include "replication/collection.h"
#include "replication/record_crdt.h"

namespace interco::replication {
namespace {

using interco::replication::v1::BatchHeader;
using interco::replication::v1::Change;
using interco::replication::v1::CounterEntry;
using interco::replication::v1::FieldState;
using interco::replication::v1::RecordState;
using interco::replication::v1::SetElement;

bool Stable(uint64_t hlc, uint32_t origin, const VersionVector& frontier) {
  return hlc != 0 && origin != 0 && StampedAtOrBelow(hlc, origin, frontier);
}

bool Holds(const google::protobuf::RepeatedPtrField<SetElement>& list, const SetElement& e) {
  return std::any_of(list.begin(), list.end(), [&e](const SetElement& x) {
    return x.hlc() == e.hlc() && x.origin() == e.origin() && x.value() == e.value();
  });
}

// Whether a field `f` the change wrote in the record's current, live life is superseded
// in the record's field `now` (nullptr: none; the record was collected and created
// again since, lives counting from 1 again: the change is of a collected life, whose
// delete is kept).
bool FieldSuperseded(const FieldState& f, const FieldState* now, const VersionVector& frontier) {
  if (now == nullptr) return true;
  // Its stamp is the field's: the register value (or the set's, the counter's latest
  // write) is this change's.
  if (now->hlc() == f.hlc() && now->origin() == f.origin()) return false;
  // A greater stamp replaced it; a collection may still refuse that write unless it is
  // under the frontier, and the change's value would then be the field's again.
  if (!Stable(now->hlc(), now->origin(), frontier)) return false;
  for (const CounterEntry& e : f.counter()) {
    // An origin with several epochs (restored from a backup) may have written a lower
    // total at a later stamp: merging keeps the greater of each, so no total of it is
    // known to hold another.
    size_t epochs = 0;
    for (auto k = frontier.lower_bound(OriginKey{e.origin(), 0});
         k != frontier.end() && k->first.origin == e.origin(); ++k) {
      epochs++;
    }
    if (epochs != 1) return false;
    const auto it = std::find_if(now->counter().begin(), now->counter().end(),
                                 [&e](const CounterEntry& x) { return x.origin() == e.origin(); });
    // Totals only grow: a later total of the origin, under the frontier, holds this one.
    if (it == now->counter().end() || it->hlc() <= e.hlc() ||
        !Stable(it->hlc(), e.origin(), frontier)) {
      return false;
    }
  }
  for (const SetElement& e : f.elements()) {
    // Present, or removed by a remove that may not be stable: still needed. Neither: the
    // remove and the add were collected.
    if (Holds(now->elements(), e) || Holds(now->removed(), e)) return false;
  }
  // A remove stays while the life goes on: an add it removed may be kept in a batch that
  // is not hollow (for another of its changes), and would come back without it.
  return f.removed().empty();
}

}  // namespace

uint64_t ChangesBeyond(const VersionVector& from, const VersionVector& frontier) {
  uint64_t n = 0;
  for (const auto& [key, pos] : frontier) {
    const auto it = from.find(key);
    const uint64_t base = it == from.end() ? 0 : it->second.seq;
    if (pos.seq > base) n += pos.seq - base;
  }
  return n;
}

bool MayHollow(const BatchHeader& header, bool hollow, const VersionVector& frontier,
               uint64_t journal_before) {
  if (hollow || header.carries_policy() || header.count() == 0 || journal_before == 0 ||
      header.max_hlc() >= journal_before) {
    return false;
  }
  const auto it = frontier.find(OriginKey{header.origin(), header.epoch()});
  return it != frontier.end() && header.first_seq() + header.count() - 1 <= it->second.seq;
}

bool Superseded(const Change& change, uint32_t origin, const RecordState* state,
                const VersionVector& frontier) {
  if (change.has_policy()) return false;
  const RecordState& d = change.delta();
  // The causal length is the change's own if it created or deleted the record; an update
  // carries a copy of the life it edits, held by the write that set it.
  const bool own_cl = d.causal_length() > 0 && d.cl_hlc() == ChangeStamp(change) &&
                      d.cl_origin() == origin;
  // A delete is kept: where an older create of its record arrives (kept for another
  // change of its batch), it takes the record out again, and the collection of its
  // tombstone needs it. A state cannot tell its lives from those of a record collected
  // and created again (lives count from 1 again).
  if (own_cl && d.causal_length() % 2 == 0) return false;
  if (state == nullptr) return true;  // collected; the delete that allowed it is kept
  const uint32_t cl = state->causal_length();
  if (cl == 0) return false;  // never created: nothing to judge against
  const bool cl_stable = Stable(state->cl_hlc(), state->cl_origin(), frontier);
  if (own_cl && d.causal_length() % 2 == 1) {
    // A create: superseded once another create or delete, under the frontier, set the
    // record's causal length.
    if ((cl == d.causal_length() && state->cl_hlc() == d.cl_hlc() &&
         state->cl_origin() == d.cl_origin()) ||
        !cl_stable) {
      return false;
    }
  }
  const uint32_t life = LifeOf(cl);
  for (const FieldState& f : d.fields()) {
    if (cl % 2 == 0 || LifeOfField(f) != life) {
      // The life it wrote ended (a delete, or a create of a later life, dropped its
      // fields), for good if what ended it is under the frontier.
      if (!cl_stable) return false;
      continue;
    }
    if (!FieldSuperseded(f, FindField(*state, f.name()), frontier)) return false;
  }
  return true;
}

absl::StatusOr<bool> AllSuperseded(const interco::replication::v1::Batch& batch, uint32_t origin,
                                   const VersionVector& frontier, const RecordStateOf& state_of) {
  for (const std::string& bytes : batch.changes()) {
    Change c;
    if (!c.ParseFromString(bytes)) return absl::DataLossError("a change of a log batch does not parse");
    ExpandChange(c, origin);
    if (c.has_policy()) return false;
    absl::StatusOr<const RecordState*> state = state_of(c.key());
    if (!state.ok()) return state.status();
    if (!Superseded(c, origin, *state, frontier)) return false;
  }
  return true;
}

}  // namespace interco::replication
