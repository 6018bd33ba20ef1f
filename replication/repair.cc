#include "replication/repair.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "replication/base/check.h"
#include "replication/base/limits.h"
#include "replication/base/status_macros.h"
#include "replication/base/strings.h"

namespace interco::replication {
namespace {

uint64_t BigEndian64(std::string_view bytes) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(bytes[i]);
  return v;
}

// Nodes at `level`: kFingerprintFanout^level.
uint32_t LevelWidth(uint32_t level) { return 1u << (4 * level); }

// Calls `fn` on consecutive slices of `items` of at most `max` elements, appending what it
// returns to `out`.
template <typename T, typename Fn>
absl::Status InSlices(const std::vector<uint32_t>& items, size_t max, std::vector<T>& out,
                      int& calls, Fn fn) {
  for (size_t i = 0; i < items.size(); i += max) {
    std::vector<uint32_t> slice(items.begin() + i,
                                items.begin() + std::min(items.size(), i + max));
    INTERCO_ASSIGN_OR_RETURN(std::vector<T> part, fn(slice));
    calls++;
    out.insert(out.end(), std::make_move_iterator(part.begin()),
               std::make_move_iterator(part.end()));
  }
  return absl::OkStatus();
}

}  // namespace

uint32_t FingerprintBucket(Hasher& hasher, std::string_view id) {
  const std::string h = hasher.Sha256(id);
  return (static_cast<uint32_t>(static_cast<unsigned char>(h[0])) << 8) |
         static_cast<unsigned char>(h[1]);
}

uint64_t FingerprintDigest(Hasher& hasher, std::string_view id, std::string_view state) {
  std::string input;
  input.reserve(4 + id.size() + state.size());
  AppendBigEndian(input, static_cast<uint32_t>(id.size()), 4);
  input.append(id);
  input.append(state);
  return BigEndian64(hasher.Sha256(input));
}

std::string PositionDigest(const VersionVector& position, Hasher& hasher) {
  std::string input;
  input.reserve(position.size() * 16);
  for (const auto& [key, pos] : position) {
    if (pos.seq == 0) continue;
    AppendBigEndian(input, key.origin, 4);
    AppendBigEndian(input, key.epoch, 4);
    AppendBigEndian(input, pos.seq, 8);
    input.append(pos.last_hash);
  }
  return hasher.Sha256(input);
}

FingerprintTree::FingerprintTree(const std::map<uint32_t, uint64_t>& buckets) {
  levels_[kFingerprintDepth].assign(kFingerprintBuckets, 0);
  for (const auto& [bucket, sum] : buckets) {
    INTERCO_CHECK(bucket < kFingerprintBuckets);
    levels_[kFingerprintDepth][bucket] = sum;
  }
  for (uint32_t level = kFingerprintDepth; level-- > 0;) {
    levels_[level].assign(LevelWidth(level), 0);
    for (uint32_t i = 0; i < LevelWidth(level + 1); ++i) {
      levels_[level][i / kFingerprintFanout] += levels_[level + 1][i];  // mod 2^64
    }
  }
}

absl::Status ValidateTreeIndexes(uint32_t level, const std::vector<uint32_t>& items, size_t max,
                                 const char* field) {
  if (level > kFingerprintDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": level ", level, " is beyond ", kFingerprintDepth));
  }
  if (items.size() > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", items.size(), " entries, over the maximum of ", max));
  }
  for (size_t i = 0; i < items.size(); ++i) {
    if (items[i] >= LevelWidth(level)) {
      return absl::InvalidArgumentError(absl::StrCat(field, "[", i, "]: ", items[i],
                                                     " is out of range (", LevelWidth(level),
                                                     " at level ", level, ")"));
    }
    if (i > 0 && items[i] <= items[i - 1]) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, "[", i, "]: not increasing"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<uint64_t>> FingerprintTree::ChildSums(
    uint32_t level, const std::vector<uint32_t>& nodes) const {
  if (level >= kFingerprintDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat("level: ", level, " has no children (the buckets are level ",
                     kFingerprintDepth, ")"));
  }
  INTERCO_RETURN_IF_ERROR(ValidateTreeIndexes(level, nodes, limits::kReconcileNodesMax, "nodes"));
  std::vector<uint64_t> out;
  out.reserve(nodes.size() * kFingerprintFanout);
  for (uint32_t node : nodes) {
    for (uint32_t c = 0; c < kFingerprintFanout; ++c) {
      out.push_back(levels_[level + 1][node * kFingerprintFanout + c]);
    }
  }
  return out;
}

absl::StatusOr<FingerprintDifferences> FindDifferences(FingerprintSide& mine,
                                                       FingerprintSide& theirs) {
  FingerprintDifferences out;
  std::vector<uint32_t> nodes = {0};
  for (uint32_t level = 0; level < kFingerprintDepth && !nodes.empty(); ++level) {
    std::vector<uint64_t> a, b;
    auto sums = [level](FingerprintSide& side) {
      return [&side, level](const std::vector<uint32_t>& slice) {
        return side.ChildSums(level, slice);
      };
    };
    int my_calls = 0;
    INTERCO_RETURN_IF_ERROR(InSlices(nodes, limits::kReconcileNodesMax, a, my_calls, sums(mine)));
    INTERCO_RETURN_IF_ERROR(
        InSlices(nodes, limits::kReconcileNodesMax, b, out.rounds, sums(theirs)));
    const size_t expected = nodes.size() * kFingerprintFanout;
    if (a.size() != expected || b.size() != expected) {
      return absl::DataLossError(absl::StrCat("tree level ", level + 1, ": ", b.size(),
                                              " sums received for ", expected, " asked"));
    }
    std::vector<uint32_t> next;
    for (size_t i = 0; i < expected; ++i) {
      if (a[i] != b[i]) {
        next.push_back(nodes[i / kFingerprintFanout] * kFingerprintFanout +
                       static_cast<uint32_t>(i % kFingerprintFanout));
      }
    }
    nodes = std::move(next);
  }
  out.buckets = nodes;
  if (nodes.empty()) return out;
  // Each side answers for as many of the buckets as it can at once; asked again for the
  // rest until all are answered.
  auto digests = [&nodes](FingerprintSide& side,
                          int& calls) -> absl::StatusOr<std::vector<std::vector<uint64_t>>> {
    std::vector<std::vector<uint64_t>> all;
    while (all.size() < nodes.size()) {
      const std::vector<uint32_t> rest(nodes.begin() + static_cast<ptrdiff_t>(all.size()),
                                       nodes.end());
      INTERCO_ASSIGN_OR_RETURN(std::vector<std::vector<uint64_t>> part, side.BucketDigests(rest));
      calls++;
      if (part.empty() || part.size() > rest.size()) {
        return absl::DataLossError(absl::StrCat(part.size(), " bucket digest lists received for ",
                                                rest.size(), " asked"));
      }
      for (auto& list : part) all.push_back(std::move(list));
    }
    return all;
  };
  int my_calls = 0;
  INTERCO_ASSIGN_OR_RETURN(std::vector<std::vector<uint64_t>> a, digests(mine, my_calls));
  INTERCO_ASSIGN_OR_RETURN(std::vector<std::vector<uint64_t>> b, digests(theirs, out.rounds));
  for (size_t i = 0; i < nodes.size(); ++i) {
    std::sort(a[i].begin(), a[i].end());
    std::sort(b[i].begin(), b[i].end());
    std::vector<uint64_t> only;
    std::set_difference(a[i].begin(), a[i].end(), b[i].begin(), b[i].end(),
                        std::back_inserter(only));
    for (uint64_t d : only) out.mine_only.emplace_back(nodes[i], d);
    only.clear();
    std::set_difference(b[i].begin(), b[i].end(), a[i].begin(), a[i].end(),
                        std::back_inserter(only));
    for (uint64_t d : only) out.theirs_only.emplace_back(nodes[i], d);
  }
  return out;
}

}  // namespace interco::replication
