// Members absent longer than the retention stop blocking garbage collection.
//
// Nothing is stable until every member of a stream holds it (replication/stability.h),
// so one node switched off for good would keep every tombstone of the registry forever.
// The registry's owner therefore leaves out of its collections the members that have
// not caught up, `member_retention` later, with what it held then (MemberWatch): each
// collection names them (Collection.excluded) and, for each of their origin epochs, how
// far the owner holds it (Collection.cuts). Collections then go on without them.
//
// What an excluded member wrote meanwhile may be concurrent with what was collected
// without it, so it cannot be taken any more: every node refuses a batch of an excluded
// member that goes beyond the cut of its epoch and names a policy version before the
// collection (its writer had not applied it). Which batches those are is the same on
// every node, whatever order things arrive in: a node that applied one before the
// collection reached it takes it out again (its store replays its log without it:
// Overrun). A member that finds its own writes refused keeps them for its
// administrators and goes on in a new origin epoch, so that its chain never reuses a
// sequence number. Once its report holds the collection that last left it out (it
// applied it), it counts again: from then on it has what those collections required, and
// its writes name a version at or after them.
//
// Pure and single-threaded, like the engine.
#ifndef INTERCO_REPLICATION_EXCLUSION_H_
#define INTERCO_REPLICATION_EXCLUSION_H_

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "interco/replication/v1/state.pb.h"
#include "replication/version_vector.h"

namespace interco::replication {

// What a node keeps of the collections that left members out, per stream: for each
// member, the latest one (a later collection's cuts account for the earlier ones: the
// owner's position grows only by batches they let in).
class Exclusions {
 public:
  using Stored = google::protobuf::RepeatedPtrField<interco::replication::v1::Exclusion>;

  Exclusions() = default;
  explicit Exclusions(const Stored& stored);
  void Write(Stored& out) const;

  // Applies collection `collection` of version `version`, found at `at` of the owner's
  // chain. Returns whether it left anyone out.
  bool Apply(const interco::replication::v1::Collection& collection, uint64_t version,
             const interco::replication::v1::Dot& at);

  // OK, or PERMISSION_DENIED saying why: the batch's origin was left out by a collection
  // after the version the batch names, and the batch goes beyond that collection's cut.
  absl::Status Judge(const interco::replication::v1::BatchHeader& header) const;

  // Right after `collection` was applied (holding `position`): the origin epochs of the
  // members it leaves out held beyond its cuts, each with its cut. Every batch there came
  // before the collection, so names an earlier version: refused, they go (the store
  // replays its log without them). Batches beyond a cut that come later may name the
  // collection's version or a later one, and stay: ask only then.
  VersionVector Overrun(const VersionVector& position,
                        const interco::replication::v1::Collection& collection) const;

  // The members some collection left out, with the latest one.
  const std::map<uint32_t, interco::replication::v1::Exclusion>& members() const {
    return members_;
  }
  bool empty() const { return members_.empty(); }

 private:
  std::map<uint32_t, interco::replication::v1::Exclusion> members_;
};

// Marks closed (OriginPos::closed) the entries of a collection's `frontier` whose epoch
// a cut of `exclusions` (the collection's own applied) ends right there: what goes beyond
// is refused, and a member left out goes on in a later epoch, so no stamp after that
// point is of it (replication::StampedAtOrBelow).
void MarkClosed(const Exclusions& exclusions, VersionVector& frontier);

// The checks of a collection's `excluded` and `cuts` made by `owner` (AuthorizeBatch):
// sorted, unique, within limits::kStreamMembersMax and kReportOriginsMax, never the
// owner, every cut of an excluded member and above 0. PERMISSION_DENIED naming the entry.
absl::Status CheckExclusion(const interco::replication::v1::Collection& collection,
                            uint32_t owner);

// On the owner: which members have not caught up with what it held `retention_ms` ago.
// Fed the owner's position now and then (Mark) — it keeps a few snapshots, one per
// retention / kMarksPerRetention at most, so memory stays bounded whatever the retention
// — and asked about a member's taken report (Absent). An engine restart starts afresh:
// it only delays an exclusion.
class MemberWatch {
 public:
  static constexpr int64_t kMarksPerRetention = 8;
  explicit MemberWatch(int64_t retention_ms) : retention_ms_(retention_ms) {}

  // Notes `position` at monotonic time `now_ms`.
  void Mark(int64_t now_ms, const VersionVector& position);
  // Whether a member holding `taken` misses something the owner held `retention_ms`
  // before `now_ms` or earlier. False until a snapshot that old exists.
  bool Absent(int64_t now_ms, const VersionVector& taken) const;

 private:
  const int64_t retention_ms_;
  std::deque<std::pair<int64_t, VersionVector>> marks_;
};

}  // namespace interco::replication

#endif  // INTERCO_REPLICATION_EXCLUSION_H_
