// Compaction of the change log: batches whose every change is superseded become hollow.
//
// The log keeps every batch a node applied, as its origin signed it, so that it can
// serve any peer that lacks some. Most of that history stops mattering: a register
// written again, a counter whose origin counted on, an element removed and collected,
// a record deleted and collected. A batch all of whose changes are superseded that way
// is kept hollow (replication::Hollow): its header and signature stay, so the origin's
// hash chain and the signature of its run still hold, and a receiver's position moves
// over it; its changes go. Nothing of the state changes, on this node or on any node
// catching up from it, because a change is superseded only if the state would be the
// same without it, and stays so:
//
//  * the batch is at or below the greatest collection frontier applied here
//    (RegistryMeta.purged): every member holds it, none will need it again;
//  * its stamps are below the conflict journals' retention cut in force
//    (Collection.journal_before): no journal anywhere keeps one of its changes as a
//    lost write, or waits for it as a value seen ahead;
//  * each part of each change is gone from the record's state, replaced by a part of
//    another write that is itself at or below the frontier (which no later collection
//    can refuse: replication/exclusion.h), or collected.
//
// What is never superseded, so that a node catching up from hollow batches cannot bring
// anything back: a policy change; a delete (it takes the record out again where an older
// create arrives, a create being kept for another change of its batch, and the collection
// of its tombstone needs it); a remove of set elements, while the record's life goes on
// (likewise for a kept add); and a counter total no later total of its origin replaced,
// or of an origin with several epochs.
//
// Pure functions.
#ifndef INTERCO_REPLICATION_COMPACTION_H_
#define INTERCO_REPLICATION_COMPACTION_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "interco/replication/v1/state.pb.h"
#include "replication/version_vector.h"

namespace interco::replication {

// How many changes `frontier` holds beyond `from`, origin epoch by origin epoch (for
// CollectionPlan::compaction_changes).
uint64_t ChangesBeyond(const VersionVector& from, const VersionVector& frontier);

// Whether a batch with this header may become hollow as far as its place tells: it is
// not hollow yet (`hollow`), its last change is at or below `frontier` (the greatest
// collection frontier applied), and its greatest stamp is below `journal_before` (the
// journal retention cut in force; 0: none, nothing may).
bool MayHollow(const interco::replication::v1::BatchHeader& header, bool hollow,
               const VersionVector& frontier, uint64_t journal_before);

// Whether `change` (expanded: replication::ExpandChange) of a batch of `origin` is
// superseded in `state`, the record's current state (nullptr: the record was collected),
// given `frontier`, the greatest collection frontier applied. See above.
bool Superseded(const interco::replication::v1::Change& change, uint32_t origin,
                const interco::replication::v1::RecordState* state,
                const VersionVector& frontier);

// A store's current state of a record (nullptr: none, the record was collected), valid
// until the next call.
using RecordStateOf =
    std::function<absl::StatusOr<const interco::replication::v1::RecordState*>(const std::string& key)>;

// Whether every change of a log batch of `origin` is Superseded in the states `state_of`
// gives (read for record changes only, in order, until one is not). DATA_LOSS for a
// change that does not parse; `state_of`'s error.
absl::StatusOr<bool> AllSuperseded(const interco::replication::v1::Batch& batch, uint32_t origin,
                                   const VersionVector& frontier, const RecordStateOf& state_of);

}  // namespace interco::replication

#endif  // INTERCO_REPLICATION_COMPACTION_H_
