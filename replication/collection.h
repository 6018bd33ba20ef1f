// Garbage collection of causally stable tombstones (interco.replication.v1.Collection).
//
// A deleted record keeps a tombstone (its causal length and the delete's stamp) so that
// writes concurrent with the delete cannot bring it back. Once the delete is causally
// stable (replication/stability.h), nothing concurrent with it can arrive any more and the
// tombstone can go. Which tombstones go must be the same on every node, or states would
// differ: so the registry's owner decides, with a Collection change of its chain that
// names its frontier, and every node applies it at that point of the owner's chain, once
// it holds what the collection requires (CollectionReady). It then removes every record
// whose tombstone was set by a change at or below the frontier (Collectable). A batch
// written after the collection names its policy version and waits, wherever it arrives,
// until the collection is applied there.
//
// Removed elements of string sets go the same way. An observed-remove set keeps the adds
// it removed (their tags), so that an add arriving after its remove stays removed. Once
// both the add and the remove are at or below the frontier, every node holds both and
// neither can arrive again: the tag can go (PurgeRemovals). Each store indexes the
// removes by the change that made them, as it does tombstones; the frontier carries the
// HLC of each origin epoch's last change, which tells whether an add (known by its stamp
// only) is at or below it. A node that applied a collection keeps out of its records the
// removed elements it took out, should a concurrent remove of one arrive later
// (DropPurgedRemovals).
//
// Only registries whose policy has always named its writers are collected
// (CollectionAllowed): in a registry open to every authority, a node nobody has heard of
// could hold writes concurrent with a delete that all known members consider stable; and
// a batch is judged by the policy version it names, so a writer of any past version
// counts (PolicyHistory::AllWriters).
//
// Pure functions.
#ifndef INTERCO_REPLICATION_COLLECTION_H_
#define INTERCO_REPLICATION_COLLECTION_H_

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "interco/replication/v1/state.pb.h"
#include "replication/env.h"
#include "replication/policy.h"
#include "replication/record_crdt.h"
#include "replication/version_vector.h"

namespace interco::replication {

using Dots = google::protobuf::RepeatedPtrField<interco::replication::v1::Dot>;

VersionVector FromDots(const Dots& dots);
// Entries at sequence number 0 are left out, unless `keep_empty` (a frontier names every
// epoch of its origins, so that StampedAtOrBelow knows an origin has more than one).
void ToDots(const VersionVector& vv, Dots& out, bool keep_empty = false);

// OK if `position` holds what every collection of the batch requires (its frontier and
// its requirements); UNAVAILABLE (held back until then) otherwise.
absl::Status CollectionReady(const DecodedBatch& batch, const VersionVector& position);

// Whether the owner may collect in a registry with these policy versions: every one of
// them lists its writers.
bool CollectionAllowed(const PolicyHistory& history);

// A tombstone and the change that set it.
struct Tombstone {
  // The record's causal length (even) and the delete's stamp, as the change left them.
  uint32_t causal_length = 0;
  uint64_t hlc = 0;
  // The change: its origin epoch and sequence number.
  OriginKey key;
  uint64_t seq = 0;
};

// The tombstone that change `seq` of `key` (origin key.origin) set, if merging its
// `delta` left the record deleted with the delta's own causal length and stamp (`after`
// is the record's state once merged).
std::optional<Tombstone> TombstoneSet(const RecordState& after, const RecordState& delta,
                                      OriginKey key, uint64_t seq);

// Whether a record whose state is `state` goes with a collection at `frontier`, given a
// tombstone some change set on it: the record still holds that tombstone, and the change
// is at or below the frontier.
bool Collectable(const RecordState& state, const Tombstone& tombstone,
                 const VersionVector& frontier);

// The set elements `delta` removes (a state holding only the `removed` lists of its
// fields, with their names and lives); empty if it removes none.
RecordState RemovalsOf(const RecordState& delta);

// Whether the change that stamped (hlc, origin) is at or below `frontier` (whose entries
// carry the HLC of their last change, and which names every epoch of its origins known
// to the owner, at 0 if none is under it). A stamp does not say its epoch: it is at or
// below if it is not after the frontier's last change in any epoch of the origin it may
// belong to — every epoch the frontier names but those closed before it (Dot.closed: an
// epoch that ends below the stamp is not its). With a single epoch: the stamp is not
// after that epoch's last change there.
bool StampedAtOrBelow(uint64_t hlc, uint32_t origin, const VersionVector& frontier);

// Raises `into` (the greatest frontier applied, RegistryMeta.purged) to `frontier`,
// entry by entry, keeping the HLC of each entry's last change and whether it is closed.
void MergeFrontier(const VersionVector& frontier, VersionVector& into);

// Removes from `state` the removed elements listed in `removals` (RemovalsOf a change at
// or below `frontier`) whose add is at or below the frontier too. Returns how many went;
// `pending` is set if some listed removal is still in the state with its add not yet
// at or below the frontier (a later collection may take it).
size_t PurgeRemovals(RecordState& state, const RecordState& removals,
                     const VersionVector& frontier, bool* pending);

// After merging `delta` (a change, or a peer's state) into a record (`before` ->
// `after`), takes back out of `after` the removed elements of `delta` that a collection
// at `purged` (the pointwise greatest frontier applied here) took out before: those
// `before` did not hold (added or removed) whose add is at or below `purged`. A remove concurrent with a collected one may arrive after the
// collection; without this it would bring back the tag where the collection came first
// and not where it came last. Returns how many it took out.
size_t DropPurgedRemovals(const RecordState& before, const RecordState& delta,
                          RecordState& after, const VersionVector& purged);

}  // namespace interco::replication

#endif  // INTERCO_REPLICATION_COLLECTION_H_
