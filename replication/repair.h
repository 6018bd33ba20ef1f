// Range-fingerprint reconciliation: finding, in few bytes, the records of a registry that
// two nodes hold differently, when their change logs cannot tell (docs/REPLICATION.md,
// "Repair").
//
// Each live record has a 64-bit digest of its ID and state, and falls in one of 65,536
// buckets by the hash of its ID. The buckets are the leaves of a 16-ary tree of depth 4;
// every tree node's sum is the sum (mod 2^64) of the digests under it, so a node's sums
// are maintained by adding and subtracting digests as records change, in any order.
// Comparing two trees from the root and opening only the nodes whose sums differ finds d
// differing buckets among n records in about 4 x 16 sums per difference, whatever n is;
// the differing buckets' digests then name the differing records.
//
// Deleted records are left out: a tombstone and a collected record look alike, and a
// record that is live on one side only differs. Merging what repair brings is a join of
// record states (MergeRecordState), so repair never undoes a write.
//
// Pure and deterministic; the two sides come in through FingerprintSide.
#ifndef INTERCO_REPLICATION_REPAIR_H_
#define INTERCO_REPLICATION_REPAIR_H_

#include <array>
#include <cstdint>
#include <map>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "replication/env.h"

namespace interco::replication {

inline constexpr uint32_t kFingerprintFanout = 16;
// Levels of tree nodes above the buckets: 0 (the root) to 3.
inline constexpr uint32_t kFingerprintDepth = 4;
inline constexpr uint32_t kFingerprintBuckets = 65536;  // kFingerprintFanout^kFingerprintDepth

// The bucket of record `id`: the first 16 bits of SHA-256(id).
uint32_t FingerprintBucket(Hasher& hasher, std::string_view id);

// The digest of a live record: the first 64 bits of SHA-256(len(id) as 4 bytes, id, state),
// `state` being the serialized RecordState (serialization is canonical: fields and elements
// are kept sorted).
uint64_t FingerprintDigest(Hasher& hasher, std::string_view id, std::string_view state);

// What a divergence check compares a position by (StreamDigest.position): SHA-256 over
// (origin:be32, epoch:be32, seq:be64, SHA-256 of the header of batch seq) of each origin
// epoch held (seq > 0), in (origin, epoch) order. Two nodes that hold the same changes of
// a stream have the same (the header hashes tell two branches of a forked chain apart);
// and then the same state, unless a copy went wrong outside the change logs.
std::string PositionDigest(const VersionVector& position, Hasher& hasher);

// The sums of every tree node, built from the buckets' sums.
class FingerprintTree {
 public:
  // `buckets`: bucket -> sum of its digests; absent buckets are empty.
  explicit FingerprintTree(const std::map<uint32_t, uint64_t>& buckets);

  // Sum of node `index` of `level` (0..kFingerprintDepth; level kFingerprintDepth is the
  // buckets).
  uint64_t Sum(uint32_t level, uint32_t index) const { return levels_[level][index]; }
  // The sums of the children of each of `nodes` of `level` (< kFingerprintDepth),
  // kFingerprintFanout per node, in order. INVALID_ARGUMENT for a level or index out of
  // range or nodes not increasing.
  absl::StatusOr<std::vector<uint64_t>> ChildSums(uint32_t level,
                                                  const std::vector<uint32_t>& nodes) const;

 private:
  std::array<std::vector<uint64_t>, kFingerprintDepth + 1> levels_;
};

// Checks that `items` (tree nodes of `level`, or buckets for level kFingerprintDepth) are
// increasing indexes of that level, at most `max` of them. INVALID_ARGUMENT naming `field`.
absl::Status ValidateTreeIndexes(uint32_t level, const std::vector<uint32_t>& items, size_t max,
                                 const char* field);

// One side of a reconciliation: this node's store, or a peer answering over the wire.
class FingerprintSide {
 public:
  virtual ~FingerprintSide() = default;
  // As FingerprintTree::ChildSums. At most limits::kReconcileNodesMax nodes per call.
  virtual absl::StatusOr<std::vector<uint64_t>> ChildSums(uint32_t level,
                                                          const std::vector<uint32_t>& nodes) = 0;
  // The digests of the live records of each bucket, one list per bucket in order; for
  // the first buckets only (at least one) when the answer would be too large, the walk
  // then asking again for the rest.
  virtual absl::StatusOr<std::vector<std::vector<uint64_t>>> BucketDigests(
      const std::vector<uint32_t>& buckets) = 0;
};

// The records that differ between two sides, by digest.
struct FingerprintDifferences {
  // Buckets whose sums differ.
  std::vector<uint32_t> buckets;
  // Digests held by one side only, with their bucket: records that are missing or
  // different on the other side.
  std::vector<std::pair<uint32_t, uint64_t>> mine_only;
  std::vector<std::pair<uint32_t, uint64_t>> theirs_only;
  // Calls made to each side.
  int rounds = 0;
};

// Walks both trees from the root down to the differing buckets, then compares their
// digests. Tree calls name at most limits::kReconcileNodesMax nodes (larger sets are asked
// in several calls). An error of either side ends it. The sides may change meanwhile (live writes):
// the result is then only what was seen, which a later run catches up.
absl::StatusOr<FingerprintDifferences> FindDifferences(FingerprintSide& mine,
                                                       FingerprintSide& theirs);

}  // namespace interco::replication

#endif  // INTERCO_REPLICATION_REPAIR_H_
