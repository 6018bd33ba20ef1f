// The CRDT of a record: merge, local writes, and the public view.
//
// A record's state (interco.replication.v1.RecordState) is a join-semilattice:
//   - each scalar field is a last-writer-wins register ordered by
//     (life, hlc, origin);
//   - each string-set field is an add-wins observed-remove set whose adds are tagged
//     with their (hlc, origin) stamp;
//   - deletion is a causal length: odd alive, even deleted, merged by maximum; field
//     states of an earlier life of the record are discarded.
// MergeRecordState is commutative, associative and idempotent, so replicas that have
// merged the same set of deltas, in any order and any number of times, are equal.
// A local write is planned as a delta (PlanLocalWrite) that is merged locally and sent
// to peers as is. docs/REPLICATION.md gives the semantics per field type.
//
// All functions are pure and thread-compatible.
#ifndef INTERCO_REPLICATION_RECORD_CRDT_H_
#define INTERCO_REPLICATION_RECORD_CRDT_H_

#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/map.h"
#include "interco/replication/v1/state.pb.h"
#include "interco/v1/record.pb.h"
#include "interco/v1/value.pb.h"
#include "replication/base/check.h"
#include "replication/hlc.h"
#include "replication/registry_schema.h"

namespace interco::replication {

using RecordState = interco::replication::v1::RecordState;
using FieldState = interco::replication::v1::FieldState;
using FieldValues = google::protobuf::Map<std::string, interco::v1::Value>;

// Merges `delta` into `state`. Returns whether `state` changed.
bool MergeRecordState(RecordState& state, const RecordState& delta);

// Checks that a received change's delta is well formed for `schema`, so that merging it
// keeps the state's invariants on every node alike: fields sorted by name without
// duplicates, each a schema field, of a life no later than the delta's causal length
// gives, carrying only its type's payload (for a register: a value of its type within the
// schema's bounds, or none; for a string set: elements and removed adds sorted without
// duplicates, each a valid element; for a counter: one entry), and what it stamps stamped
// by `origin`, the batch's origin (each field's stamp, each added element's tag, the
// counter entry, with totals within int64). INVALID_ARGUMENT naming the field. Every
// delta PlanLocalWrite makes passes.
absl::Status ValidateDelta(const RegistrySchema& schema, const RecordState& delta,
                           uint32_t origin);

// Checks a whole record state received from a peer by repair, as ValidateDelta does a
// delta but with stamps of any origin (one counter entry per origin, sorted) and no seen
// register writes. INVALID_ARGUMENT naming the field ("state.fields[i] (name): ...").
absl::Status ValidateState(const RegistrySchema& schema, const RecordState& state);

// The greatest HLC anywhere in `state` (causal length, fields, set elements, counters).
uint64_t MaxStamp(const RecordState& state);
// Every origin that stamped something in `state` (the same parts).
std::set<uint32_t> StampOrigins(const RecordState& state);

// Whether the record exists (odd causal length).
bool IsLive(const RecordState& state);

// The state of field `name` (fields are sorted by name), or nullptr.
const FieldState* FindField(const RecordState& state, std::string_view name);

// The life that a causal length belongs to: 1 for 1 and 2, 2 for 3 and 4...
inline uint32_t LifeOf(uint32_t causal_length) { return (causal_length + 1) / 2; }

// The life a field state belongs to. It is stored as the number of re-creations before
// it (FieldState.recreations), so that fields of a record's first life carry no byte for
// it; 64 bits, so that no stored value wraps.
inline uint64_t LifeOfField(const FieldState& f) { return uint64_t{f.recreations()} + 1; }
// `life` >= 1 (causal lengths are bounded by limits::kCausalLengthMax, so lives never wrap).
inline void SetLifeOfField(FieldState& f, uint32_t life) {
  INTERCO_CHECK(life >= 1);
  f.set_recreations(life - 1);
}

// Opaque version string: changes whenever the state changes.
std::string ComputeEtag(const RecordState& state);

// The visible value of each field of a live record (none for a deleted one).
void VisibleFields(const RecordState& state, FieldValues& out);

// Fills the public view of a record. `name` is its resource name.
void ToRecord(std::string_view name, const RecordState& state, interco::v1::Record& out);

// HLC as a Timestamp: milliseconds, with the logical counter in the sub-millisecond
// nanoseconds, so the mapping is monotonic and loses nothing.
void HlcToTimestamp(uint64_t hlc, google::protobuf::Timestamp& out);

// A write asked for by a local client.
struct LocalWrite {
  enum class Kind { kCreate, kUpdate, kDelete };
  Kind kind = Kind::kUpdate;
  // New values (create, update). Keys must be schema fields.
  FieldValues fields;
  // Update only: the fields to change; empty means every schema field.
  std::vector<std::string> mask;
  // Update, delete: if not empty, the write happens only if the etag still matches.
  std::string expected_etag;
  // Update: create if absent. Delete: succeed if absent.
  bool allow_missing = false;
};

// The result of planning a local write.
struct PlannedWrite {
  // The delta to log, send and merge (already merged into `merged`).
  RecordState delta;
  // The record's state after the write.
  RecordState merged;
};

// Plans `write` against the current state of the record, with the fresh stamp of this
// write. Returns std::nullopt for a no-op: deleting an absent record with allow_missing,
// or an update that changes no visible value. Errors, with nothing to write:
//   ALREADY_EXISTS   create of a live record;
//   NOT_FOUND        update or delete of an absent record without allow_missing;
//   ABORTED          expected_etag does not match;
//   INVALID_ARGUMENT unknown field, wrong type, value out of bounds, required field
//                    missing or cleared ("record.fields[<name>]: ..." or
//                    "update_mask.paths[<i>]: ...");
//   RESOURCE_EXHAUSTED the record's state would exceed limits::kRecordStateBytesMax.
absl::StatusOr<std::optional<PlannedWrite>> PlanLocalWrite(const RegistrySchema& schema,
                                                           const RecordState& current,
                                                           const LocalWrite& write, Stamp stamp);

}  // namespace interco::replication

#endif  // INTERCO_REPLICATION_RECORD_CRDT_H_
