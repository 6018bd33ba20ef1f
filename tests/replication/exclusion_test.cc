// Members absent longer than the retention: which members the owner leaves out
// (MemberWatch), the frontier without them, and how every node judges their batches
// afterwards (Exclusions).
#include <gtest/gtest.h>

#include <string>

#include "replication/exclusion.h"
#include "replication/ids.h"
#include "replication/policy.h"
#include "replication/stability.h"

namespace interco::replication {
namespace {

using interco::replication::v1::BatchHeader;
using interco::replication::v1::Collection;
using interco::replication::v1::Dot;

const uint32_t kOwner = *SirenToOrigin("200066231");
const uint32_t kA = *SirenToOrigin("213105554");
const uint32_t kB = *SirenToOrigin("213102999");
const std::string kStream = "equipements";

Dot MakeDot(uint32_t origin, uint32_t epoch, uint64_t seq) {
  Dot d;
  d.set_origin(origin);
  d.set_epoch(epoch);
  d.set_seq(seq);
  return d;
}

BatchHeader Header(uint32_t origin, uint32_t epoch, uint64_t first_seq, uint64_t policy_version) {
  BatchHeader h;
  h.set_origin(origin);
  h.set_stream(kStream);
  h.set_epoch(epoch);
  h.set_first_seq(first_seq);
  h.set_count(1);
  h.set_policy_version(policy_version);
  return h;
}

// A collection of version 100, at seq 40 of the owner's chain, leaving A out with its
// epoch 1 cut at 7 (the owner holds A's changes 1..7 of epoch 1).
Collection LeavingOutA() {
  Collection c;
  c.add_excluded(kA);
  *c.add_cuts() = MakeDot(kA, 1, 7);
  return c;
}
Exclusions LeftOutA() {
  Exclusions e;
  EXPECT_TRUE(e.Apply(LeavingOutA(), 100, MakeDot(kOwner, 1, 40)));
  return e;
}

TEST(ExclusionsTest, ABatchBeyondTheCutWrittenBeforeTheCollectionIsRefused) {
  const Exclusions e = LeftOutA();
  // Beyond the cut, written before the collection: A had not applied it.
  const absl::Status refused = e.Judge(Header(kA, 1, 8, 99));
  EXPECT_EQ(refused.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(refused.message().find("left out of collection 100"), std::string::npos)
      << refused.message();
  // At or below the cut: the owner holds it, every node takes it.
  EXPECT_TRUE(e.Judge(Header(kA, 1, 7, 99)).ok());
  // Written once A applied the collection: after everything it collected.
  EXPECT_TRUE(e.Judge(Header(kA, 1, 8, 100)).ok());
  // An epoch the owner did not hold has its cut at 0...
  EXPECT_EQ(e.Judge(Header(kA, 2, 1, 99)).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(e.Judge(Header(kA, 2, 1, 150)).ok());
  // ...and other origins are not concerned.
  EXPECT_TRUE(e.Judge(Header(kB, 1, 8, 1)).ok());
}

TEST(ExclusionsTest, TheLatestCollectionThatLeftAMemberOutJudgesIt) {
  Exclusions e = LeftOutA();
  // A later collection leaves A out again; the owner meanwhile took A's changes 8..9 of
  // epoch 1, written at or after version 100 (so every node took them).
  Collection later;
  later.add_excluded(kA);
  later.add_excluded(kB);
  *later.add_cuts() = MakeDot(kA, 1, 9);
  *later.add_cuts() = MakeDot(kB, 1, 3);
  EXPECT_TRUE(e.Apply(later, 200, MakeDot(kOwner, 1, 52)));
  EXPECT_TRUE(e.Judge(Header(kA, 1, 9, 150)).ok());
  EXPECT_EQ(e.Judge(Header(kA, 1, 10, 150)).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(e.Judge(Header(kB, 1, 4, 199)).code(), absl::StatusCode::kPermissionDenied);
  ASSERT_EQ(e.members().size(), 2u);
  EXPECT_EQ(e.members().at(kA).version(), 200u);
  EXPECT_EQ(e.members().at(kA).at().seq(), 52u);
  // A collection that leaves nobody out changes nothing: A stays judged by the last one.
  EXPECT_FALSE(e.Apply(Collection(), 300, MakeDot(kOwner, 1, 60)));
  EXPECT_EQ(e.Judge(Header(kA, 1, 10, 150)).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(e.Judge(Header(kA, 1, 10, 250)).ok());
}

TEST(ExclusionsTest, WhatIsHeldBeyondACutIsAnOverrun) {
  const Exclusions e = LeftOutA();
  VersionVector position;
  position[OriginKey{kA, 1}].seq = 9;   // 8 and 9 came before the collection did
  position[OriginKey{kA, 2}].seq = 2;   // an epoch the owner never held
  position[OriginKey{kB, 1}].seq = 50;  // not left out
  position[OriginKey{kOwner, 1}].seq = 40;
  const VersionVector overrun = e.Overrun(position, LeavingOutA());
  ASSERT_EQ(overrun.size(), 2u);
  EXPECT_EQ(overrun.at(OriginKey{kA, 1}).seq, 7u);
  EXPECT_EQ(overrun.at(OriginKey{kA, 2}).seq, 0u);
  // Only when the collection comes: later, A's batches beyond the cut named its version
  // or a later one (they entered), and a collection that does not leave A out is no
  // occasion to ask.
  EXPECT_TRUE(e.Overrun(position, Collection()).empty());
  position[OriginKey{kA, 1}].seq = 7;
  position.erase(OriginKey{kA, 2});
  EXPECT_TRUE(e.Overrun(position, LeavingOutA()).empty());
}

TEST(ExclusionsTest, StoredAndLoadedAlike) {
  const Exclusions e = LeftOutA();
  Exclusions::Stored stored;
  e.Write(stored);
  const Exclusions loaded(stored);
  ASSERT_EQ(loaded.members().size(), 1u);
  EXPECT_EQ(loaded.members().at(kA).SerializeAsString(), e.members().at(kA).SerializeAsString());
  EXPECT_EQ(loaded.Judge(Header(kA, 1, 8, 99)).code(), absl::StatusCode::kPermissionDenied);
}

TEST(ExclusionsTest, MalformedExclusionsAreRefused) {
  Collection c;
  c.add_excluded(kA);
  *c.add_cuts() = MakeDot(kA, 1, 7);
  EXPECT_TRUE(CheckExclusion(c, kOwner).ok());
  Collection owner = c;
  owner.add_excluded(kOwner);  // the owner never leaves itself out
  EXPECT_FALSE(CheckExclusion(owner, kOwner).ok());
  Collection unsorted;
  unsorted.add_excluded(kA);
  unsorted.add_excluded(kB);  // kB < kA
  EXPECT_NE(CheckExclusion(unsorted, kOwner).message().find("excluded member 1"),
            std::string::npos);
  Collection stray = c;
  *stray.add_cuts() = MakeDot(kB, 1, 3);  // a cut of a member not left out
  EXPECT_NE(CheckExclusion(stray, kOwner).message().find("cut 1"), std::string::npos);
  Collection zero;
  zero.add_excluded(kA);
  *zero.add_cuts() = MakeDot(kA, 1, 0);
  EXPECT_FALSE(CheckExclusion(zero, kOwner).ok());
  Collection twice;
  twice.add_excluded(kA);
  *twice.add_cuts() = MakeDot(kA, 1, 3);
  *twice.add_cuts() = MakeDot(kA, 1, 4);
  EXPECT_FALSE(CheckExclusion(twice, kOwner).ok());
}

TEST(MemberWatchTest, AMemberIsAbsentOnceItMissesWhatTheOwnerHeldARetentionAgo) {
  MemberWatch watch(/*retention_ms=*/8000);
  VersionVector at0;
  at0[OriginKey{kOwner, 1}].seq = 5;
  watch.Mark(0, at0);
  VersionVector behind;
  behind[OriginKey{kOwner, 1}].seq = 4;
  // Not before the retention has passed...
  EXPECT_FALSE(watch.Absent(7999, behind));
  VersionVector at8000;
  at8000[OriginKey{kOwner, 1}].seq = 90;
  watch.Mark(8000, at8000);
  // ...then, missing change 5 it is absent; holding it, it is not, however far behind
  // the owner's newest changes.
  EXPECT_TRUE(watch.Absent(8000, behind));
  VersionVector caught_up;
  caught_up[OriginKey{kOwner, 1}].seq = 5;
  EXPECT_FALSE(watch.Absent(8000, caught_up));
  // A member never heard of holds nothing.
  EXPECT_TRUE(watch.Absent(8000, VersionVector()));
  // Later the question is about a later snapshot (at 8000, held 90).
  watch.Mark(16000, at8000);
  EXPECT_TRUE(watch.Absent(16000, caught_up));
}

TEST(MemberWatchTest, SnapshotsStayFewWhateverTheRetention) {
  MemberWatch watch(/*retention_ms=*/80);
  VersionVector vv;
  for (int64_t t = 0; t < 100000; ++t) {
    vv[OriginKey{kOwner, 1}].seq = static_cast<uint64_t>(t) + 1;
    watch.Mark(t, vv);
  }
  // Asked about the newest snapshot at least 80 ms old (they are 10 ms apart): the one of
  // 99910, which held 99911.
  VersionVector held;
  held[OriginKey{kOwner, 1}].seq = 99911;
  EXPECT_FALSE(watch.Absent(99999, held));
  held[OriginKey{kOwner, 1}].seq = 99900;
  EXPECT_TRUE(watch.Absent(99999, held));
}

TEST(StabilityExclusionTest, AnExcludedMemberNeitherHoldsTheFrontierBackNorIsRequired) {
  Stability s(kOwner);
  VersionVector ours;
  ours[OriginKey{kOwner, 1}].seq = 10;
  ours[OriginKey{kA, 1}].seq = 7;
  ours[OriginKey{kB, 1}].seq = 3;
  VersionVector a_holds;  // A stopped at the owner's 2
  a_holds[OriginKey{kOwner, 1}].seq = 2;
  a_holds[OriginKey{kA, 1}].seq = 7;
  s.Report(kStream, kA, a_holds, ours);
  // B was never heard of: nothing is stable while it counts.
  const std::vector<uint32_t> declared{kOwner, kA, kB};
  EXPECT_TRUE(s.Frontier(kStream, ours, declared).empty());
  const VersionVector frontier = s.Frontier(kStream, ours, declared, {kA, kB});
  EXPECT_EQ(frontier.at(OriginKey{kOwner, 1}).seq, 10u);
  EXPECT_EQ(frontier.at(OriginKey{kA, 1}).seq, 7u);
  EXPECT_EQ(frontier.at(OriginKey{kB, 1}).seq, 3u);
  // Without B only: A holds the owner's changes back at 2.
  EXPECT_EQ(s.Frontier(kStream, ours, declared, {kB}).at(OriginKey{kOwner, 1}).seq, 2u);
  EXPECT_EQ(s.Requirement(kStream).at(OriginKey{kA, 1}).seq, 7u);
  EXPECT_TRUE(s.Requirement(kStream, {kA}).empty());
  const StabilitySummary summary = s.Summarize(kStream, ours, declared, {kA, kB});
  EXPECT_EQ(summary.excluded, (std::vector<uint32_t>{kB, kA}));
  EXPECT_EQ(summary.waiting, 0u);
  EXPECT_EQ(summary.unstable, 0u);
  ASSERT_NE(s.Reported(kStream, kA), nullptr);
  EXPECT_EQ(s.Reported(kStream, kA)->at(OriginKey{kOwner, 1}).seq, 2u);
  EXPECT_EQ(s.Reported(kStream, kB), nullptr);
  EXPECT_EQ(s.Heard(kStream), std::vector<uint32_t>{kA});
}

TEST(PolicyExclusionTest, AuthorizeBatchJudgesExcludedMembers) {
  interco::v1::Policy declared;
  declared.mutable_writers()->add_authorities("213105554");
  const PolicyHistory history(*RegistryPolicy::Compile("200066231", declared));
  const Exclusions e = LeftOutA();
  DecodedBatch batch;
  batch.header = Header(kA, 1, 8, 0);
  batch.changes.emplace_back().set_key("r1");
  EXPECT_TRUE(AuthorizeBatch(batch, history).ok());
  EXPECT_EQ(AuthorizeBatch(batch, history, &e).code(), absl::StatusCode::kPermissionDenied);
  batch.header.set_first_seq(7);
  EXPECT_TRUE(AuthorizeBatch(batch, history, &e).ok());
}

}  // namespace
}  // namespace interco::replication
