// The conflict journal: register writes that lost a last-writer-wins race.
//
// A register keeps one value; when two writes race, the greater stamp wins everywhere.
// The other is not dropped silently: each node keeps, beside each record, the writes of
// its current life that lost to a write that had not seen them (RecordConflicts).
//
// Whether a write had seen the one it replaced is told by the change itself: a local write
// names the register value it replaced on its origin (FieldState.seen_age/seen_origin).
// A replaced value is "lost" unless some write of the record names it. Applied to the
// same changes, in any order, every node keeps the same lost writes:
//   - a write that is overwritten by one that did not see it is journaled;
//   - a write that arrives and loses to the current value is journaled, unless a write
//     received earlier named it (kept in `seen_ahead` until it arrives);
//   - a write that names a journaled one takes it out of the journal;
//   - the end of a life (delete, re-create) empties the record's journal: edits of a
//     deleted life are not conflicts (a delete beats concurrent edits, by design).
//   - a retention, decided by the registry's owner (Collection.journal_before), removes
//     the entries stamped below a cut, and no write stamped below it is journaled or
//     remembered as seen ahead any more: removing them and not adding them commute, so
//     every node that applied the same collections keeps the same entries.
// Which write a loser lost to is what this node saw, and may differ between nodes.
//
// All functions are pure and thread-compatible.
#ifndef INTERCO_REPLICATION_CONFLICT_JOURNAL_H_
#define INTERCO_REPLICATION_CONFLICT_JOURNAL_H_

#include <functional>
#include <optional>

#include "interco/replication/v1/state.pb.h"
#include "replication/hlc.h"
#include "replication/registry_schema.h"
#include "replication/version_vector.h"

namespace interco::replication {

using RecordConflicts = interco::replication::v1::RecordConflicts;

// The register write a field change says it replaced, if any.
std::optional<Stamp> SeenBy(const interco::replication::v1::FieldState& change);

// Updates `journal`, the conflict journal of a record whose state is `current`, for the
// change `delta` about to be merged into it (call it for every change applied, even one
// that changes nothing: a write that loses changes no state). `received(stamp)` says
// whether a write of this record with that stamp has been applied here before (so that
// its absence from state and journal means it was superseded knowingly). Writes stamped
// below `journal_before` (the retention's cut, 0 for none) are neither journaled nor
// remembered as seen ahead. Returns whether the journal changed. Bounded by limits::kConflictsPerRecordMax entries (oldest dropped
// first, counted in `dropped`), limits::kSeenAheadPerRecordMax seen-ahead stamps and
// limits::kConflictBytesPerRecordMax bytes.
bool UpdateConflicts(const RegistrySchema& schema,
                     const interco::replication::v1::RecordState& current,
                     const interco::replication::v1::RecordState& delta,
                     const std::function<bool(Stamp)>& received, uint64_t journal_before,
                     RecordConflicts& journal);

// Removes the lost writes and seen-ahead entries stamped below `journal_before`, and says
// whether anything went (`dropped` goes too if nothing is left). Returns the number of
// lost writes removed.
size_t ExpireConflicts(uint64_t journal_before, RecordConflicts& journal, bool* changed);

// The oldest stamp (HLC) of the journal's entries, lost or seen ahead; 0 if it has none.
uint64_t OldestConflict(const RecordConflicts& journal);

// Whether UpdateConflicts would neither read nor change the record's journal for this
// change: the common case of a change that creates a record, adds fields, or replaces
// values its writer had seen. A store may then skip loading the journal.
bool JournalUntouched(const RegistrySchema& schema,
                      const interco::replication::v1::RecordState& current,
                      const interco::replication::v1::RecordState& delta);

// The `received` of UpdateConflicts for a change of the batch with header `batch` that a
// store applies holding `position` for the batch's stream (before the batch): a stamp of
// the batch's origin up to the batch's greatest HLC, or of an origin whose changes this
// store holds up to that stamp's HLC (an origin's changes arrive in order) — for an
// origin of which only the first epoch is known. For an origin restored from a backup
// (several epochs, or a later one only) the answer is "not received": a stamp does not
// say its epoch. A stamp wrongly taken as not received only leaves a useless seen-ahead
// entry; one wrongly taken as received would journal a write that was not lost.
bool ReceivedBefore(const VersionVector& position,
                    const interco::replication::v1::BatchHeader& batch, Stamp stamp);

}  // namespace interco::replication

#endif  // INTERCO_REPLICATION_CONFLICT_JOURNAL_H_
