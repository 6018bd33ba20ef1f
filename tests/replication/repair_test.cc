// Range-fingerprint reconciliation (replication/repair.h): the tree of bucket sums, and
// the walk that finds exactly the records two sides hold differently.
#include "replication/repair.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "replication/base/limits.h"
#include "tests/sim/sim_store.h"

namespace interco::replication {
namespace {

// One side held in memory: live record ID -> serialized state.
class MapSide final : public FingerprintSide {
 public:
  explicit MapSide(std::map<std::string, std::string> records) : records_(std::move(records)) {}

  absl::StatusOr<std::vector<uint64_t>> ChildSums(uint32_t level,
                                                  const std::vector<uint32_t>& nodes) override {
    calls++;
    if (nodes.size() > limits::kReconcileNodesMax) return absl::InternalError("too many nodes");
    return Tree().ChildSums(level, nodes);
  }
  absl::StatusOr<std::vector<std::vector<uint64_t>>> BucketDigests(
      const std::vector<uint32_t>& buckets) override {
    calls++;
    std::vector<std::vector<uint64_t>> out(buckets.size());
    for (const auto& [id, state] : records_) {
      auto it = std::lower_bound(buckets.begin(), buckets.end(), FingerprintBucket(hasher_, id));
      if (it != buckets.end() && *it == FingerprintBucket(hasher_, id)) {
        out[it - buckets.begin()].push_back(FingerprintDigest(hasher_, id, state));
      }
    }
    // Like a node bounding its answer: at most `answer_max` buckets at once.
    if (out.size() > answer_max) out.resize(answer_max);
    return out;
  }
  size_t answer_max = SIZE_MAX;

  FingerprintTree Tree() {
    std::map<uint32_t, uint64_t> sums;
    for (const auto& [id, state] : records_) {
      sums[FingerprintBucket(hasher_, id)] += FingerprintDigest(hasher_, id, state);
    }
    return FingerprintTree(sums);
  }
  // The (bucket, digest) of each of `ids`.
  std::set<std::pair<uint32_t, uint64_t>> Fingerprints(const std::set<std::string>& ids) {
    std::set<std::pair<uint32_t, uint64_t>> out;
    for (const std::string& id : ids) {
      out.emplace(FingerprintBucket(hasher_, id), FingerprintDigest(hasher_, id, records_.at(id)));
    }
    return out;
  }

  int calls = 0;

 private:
  sim::SimHasher hasher_;
  std::map<std::string, std::string> records_;
};

std::map<std::string, std::string> Records(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::map<std::string, std::string> out;
  for (int i = 0; i < n; ++i) out[absl::StrCat("rec-", i)] = absl::StrCat("state-", rng());
  return out;
}

std::set<std::pair<uint32_t, uint64_t>> AsSet(const std::vector<std::pair<uint32_t, uint64_t>>& v) {
  return {v.begin(), v.end()};
}

TEST(RepairTest, EqualSidesAgreeInOneRound) {
  MapSide mine(Records(5000, 1)), theirs(Records(5000, 1));
  auto diff = FindDifferences(mine, theirs);
  ASSERT_TRUE(diff.ok()) << diff.status();
  EXPECT_TRUE(diff->buckets.empty());
  EXPECT_TRUE(diff->mine_only.empty());
  EXPECT_TRUE(diff->theirs_only.empty());
  EXPECT_EQ(diff->rounds, 1);  // the root's 16 children
  EXPECT_EQ(theirs.calls, 1);
}

TEST(RepairTest, FindsExactlyTheRecordsThatDiffer) {
  for (int d : {1, 7, 100}) {
    SCOPED_TRACE(absl::StrCat(d, " differences"));
    std::map<std::string, std::string> a = Records(20000, 2), b = a;
    std::set<std::string> changed_a, changed_b;
    // A third changed on one side, a third deleted there, a third added there.
    for (int i = 0; i < d; ++i) {
      const std::string id = absl::StrCat("rec-", i * 97);
      switch (i % 3) {
        case 0:
          b[id] += "+";
          changed_a.insert(id);
          changed_b.insert(id);
          break;
        case 1:
          b.erase(id);
          changed_a.insert(id);
          break;
        case 2:
          b[absl::StrCat("new-", i)] = "created";
          changed_b.insert(absl::StrCat("new-", i));
          break;
      }
    }
    MapSide mine(a), theirs(b);
    auto diff = FindDifferences(mine, theirs);
    ASSERT_TRUE(diff.ok()) << diff.status();
    EXPECT_EQ(AsSet(diff->mine_only), mine.Fingerprints(changed_a));
    EXPECT_EQ(AsSet(diff->theirs_only), theirs.Fingerprints(changed_b));
    // Four tree levels and the buckets' digests, one call each at this size.
    EXPECT_EQ(diff->rounds, 5);
  }
}

TEST(RepairTest, AnEmptySideLearnsEverythingInBoundedCalls) {
  std::map<std::string, std::string> all = Records(30000, 3);
  MapSide mine({}), theirs(all);
  theirs.answer_max = 5000;  // answers for 5,000 buckets at most: asked again for the rest
  auto diff = FindDifferences(mine, theirs);
  ASSERT_TRUE(diff.ok()) << diff.status();  // MapSide fails a call over the bounds
  EXPECT_TRUE(diff->mine_only.empty());
  EXPECT_EQ(diff->theirs_only.size(), all.size());
  // Level 3 in slices of 1,024 nodes (4), the buckets in answers of 5,000.
  EXPECT_EQ(diff->rounds, 3 + 4 + static_cast<int>((diff->buckets.size() + 4999) / 5000));
}

TEST(RepairTest, TreeSumsAddUpWhateverTheOrder) {
  const std::map<uint32_t, uint64_t> buckets = {{0, 5}, {17, ~uint64_t{0}}, {65535, 9}};
  FingerprintTree tree(buckets);
  EXPECT_EQ(tree.Sum(0, 0), 5 + 9 - 1);  // mod 2^64
  EXPECT_EQ(tree.Sum(kFingerprintDepth, 17), ~uint64_t{0});
  EXPECT_EQ(tree.Sum(3, 1), ~uint64_t{0});  // bucket 17 is under node 1 of level 3
  EXPECT_EQ(tree.Sum(1, 15), 9u);
  auto children = tree.ChildSums(0, {0});
  ASSERT_TRUE(children.ok());
  ASSERT_EQ(children->size(), kFingerprintFanout);
  EXPECT_EQ((*children)[0], 5 - 1);
  EXPECT_EQ((*children)[15], 9u);
}

TEST(RepairTest, MalformedQueriesNameTheirField) {
  FingerprintTree tree({});
  EXPECT_EQ(tree.ChildSums(4, {0}).status().code(), absl::StatusCode::kInvalidArgument);
  auto out_of_range = tree.ChildSums(1, {16});
  EXPECT_EQ(out_of_range.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(out_of_range.status().message().find("nodes[0]"), std::string::npos);
  auto unsorted = tree.ChildSums(2, {3, 3});
  EXPECT_NE(unsorted.status().message().find("nodes[1]: not increasing"), std::string::npos);
  std::vector<uint32_t> many(limits::kReconcileNodesMax + 1);
  for (size_t i = 0; i < many.size(); ++i) many[i] = static_cast<uint32_t>(i);
  EXPECT_EQ(tree.ChildSums(3, many).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ValidateTreeIndexes(kFingerprintDepth, {0, 65535}, 2, "buckets").ok());
  EXPECT_FALSE(ValidateTreeIndexes(kFingerprintDepth, {65536}, 2, "buckets").ok());
}

TEST(RepairTest, DigestsDependOnIdAndStateAndBucketsOnIdOnly) {
  sim::SimHasher h;
  EXPECT_NE(FingerprintDigest(h, "a", "xy"), FingerprintDigest(h, "ax", "y"));
  EXPECT_NE(FingerprintDigest(h, "a", "x"), FingerprintDigest(h, "a", "y"));
  EXPECT_EQ(FingerprintBucket(h, "a"), FingerprintBucket(h, "a"));
  EXPECT_LT(FingerprintBucket(h, "anything"), kFingerprintBuckets);
}

}  // namespace
}  // namespace interco::replication
