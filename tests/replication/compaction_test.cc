// Compaction of the change log: which batches may become hollow (MayHollow), and which
// changes are superseded in the state they left (Superseded) — including what must never
// be, so that a node catching up from hollow batches brings nothing back.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "replication/change_log.h"
#include "replication/compaction.h"
#include "replication/ids.h"
#include "replication/record_crdt.h"

namespace interco::replication {
namespace {

using interco::replication::v1::BatchHeader;
using interco::replication::v1::Change;
using interco::replication::v1::FieldState;
using interco::replication::v1::RecordState;

const uint32_t kA = *SirenToOrigin("213105554");
const uint32_t kB = *SirenToOrigin("213102999");

// A frontier under which every change of A and B stamped at or below `hlc` is.
VersionVector FrontierAt(uint64_t hlc) {
  VersionVector f;
  f[OriginKey{kA, 1}] = OriginPos{100, hlc, "", false};
  f[OriginKey{kB, 1}] = OriginPos{100, hlc, "", false};
  return f;
}

// A record change of `origin` at `hlc`: a create (or delete) of causal length `cl` of
// its own, or an update of the life `cl` whose stamp (`cl_hlc`) is another write's.
Change Write(uint32_t origin, uint64_t hlc, uint32_t cl, uint64_t cl_hlc = 0) {
  Change c;
  c.set_key("rec-1");
  c.set_hlc(hlc);
  c.mutable_delta()->set_causal_length(cl);
  c.mutable_delta()->set_cl_hlc(cl_hlc == 0 ? hlc : cl_hlc);
  c.mutable_delta()->set_cl_origin(cl_hlc == 0 ? origin : kA);
  return c;
}

FieldState& AddField(Change& c, uint32_t origin, const std::string& name) {
  FieldState& f = *c.mutable_delta()->add_fields();
  f.set_name(name);
  f.set_hlc(c.hlc());
  f.set_origin(origin);
  SetLifeOfField(f, LifeOf(c.delta().causal_length()));
  return f;
}

Change Register(uint32_t origin, uint64_t hlc, uint32_t cl, uint64_t cl_hlc,
                const std::string& name, const std::string& value) {
  Change c = Write(origin, hlc, cl, cl_hlc);
  AddField(c, origin, name).mutable_value()->set_string_value(value);
  return c;
}

RecordState Merged(const std::vector<Change>& changes) {
  RecordState s;
  s.set_causal_length(0);
  for (const Change& c : changes) MergeRecordState(s, c.delta());
  return s;
}

TEST(MayHollowTest, OnlyBelowTheFrontierAndTheJournalCutAndOnce) {
  BatchHeader h;
  h.set_origin(kA);
  h.set_epoch(1);
  h.set_first_seq(10);
  h.set_count(3);
  h.set_max_hlc(500);
  const VersionVector f = FrontierAt(1000);
  EXPECT_TRUE(MayHollow(h, false, f, 501));
  EXPECT_FALSE(MayHollow(h, true, f, 501)) << "already hollow";
  EXPECT_FALSE(MayHollow(h, false, f, 500)) << "a stamp at the journal cut";
  EXPECT_FALSE(MayHollow(h, false, f, 0)) << "no journal cut: journals keep everything";
  h.set_count(92);  // ends at 101, past the frontier's 100
  EXPECT_FALSE(MayHollow(h, false, f, 501));
  h.set_count(3);
  h.set_epoch(2);  // an epoch the frontier does not name
  EXPECT_FALSE(MayHollow(h, false, f, 501));
}

TEST(SupersededTest, RegisterReplacedByAStableWriteOnly) {
  const Change create = Register(kA, 100, 1, 0, "nom", "Piscine");
  const Change rename = Register(kB, 200, 1, 100, "nom", "Piscine municipale");
  const RecordState s = Merged({create, rename});
  // The rename holds the field; the create holds the record's life.
  EXPECT_FALSE(Superseded(rename, kB, &s, FrontierAt(1000)));
  EXPECT_FALSE(Superseded(create, kA, &s, FrontierAt(1000)));
  // An update replaced by a stable update goes; not while the later one may be refused.
  const Change again = Register(kA, 300, 1, 100, "nom", "Centre aquatique");
  const RecordState s2 = Merged({create, rename, again});
  EXPECT_TRUE(Superseded(rename, kB, &s2, FrontierAt(300)));
  EXPECT_FALSE(Superseded(rename, kB, &s2, FrontierAt(299)));
  EXPECT_FALSE(Superseded(again, kA, &s2, FrontierAt(1000)));
}

TEST(SupersededTest, PolicyChangesAreNeverSuperseded) {
  Change c;
  c.mutable_policy()->set_version(5);
  const RecordState s = Merged({Register(kA, 100, 1, 0, "nom", "x")});
  EXPECT_FALSE(Superseded(c, kA, &s, FrontierAt(1000)));
}

TEST(SupersededTest, DeletesStay) {
  const Change create = Register(kA, 100, 1, 0, "nom", "Piscine");
  const Change del = Write(kB, 200, 2);
  const RecordState deleted = Merged({create, del});
  EXPECT_FALSE(Superseded(del, kB, &deleted, FrontierAt(1000))) << "the tombstone is its";
  EXPECT_TRUE(Superseded(create, kA, &deleted, FrontierAt(1000))) << "its life ended for good";
  EXPECT_FALSE(Superseded(create, kA, &deleted, FrontierAt(199))) << "the delete may be refused";
  // Collected: the create goes, the delete stays (where the create arrives, it takes
  // the record out again).
  EXPECT_TRUE(Superseded(create, kA, nullptr, FrontierAt(1000)));
  EXPECT_FALSE(Superseded(del, kB, nullptr, FrontierAt(1000)));
  // Created again in a later life: the delete stays all the same (a record collected and
  // created again counts its lives from 1 again: its state cannot tell them apart).
  const Change recreate = Register(kA, 300, 3, 0, "nom", "Centre aquatique");
  const RecordState again = Merged({create, del, recreate});
  EXPECT_FALSE(Superseded(del, kB, &again, FrontierAt(1000)));
  EXPECT_TRUE(Superseded(create, kA, &again, FrontierAt(1000)));
  EXPECT_FALSE(Superseded(recreate, kA, &again, FrontierAt(1000)));
}

TEST(SupersededTest, AnUpdateOfAnEndedLifeGoesWithIt) {
  const Change create = Register(kA, 100, 1, 0, "nom", "Piscine");
  const Change update = Register(kB, 150, 1, 100, "horaires", "9h-18h");
  const Change del = Write(kA, 200, 2);
  const RecordState s = Merged({create, update, del});
  EXPECT_TRUE(Superseded(update, kB, &s, FrontierAt(1000)));
  EXPECT_FALSE(Superseded(update, kB, &s, FrontierAt(150)));
}

TEST(SupersededTest, SetAddsGoOnceCollectedRemovesStayWhileTheLifeGoesOn) {
  const Change create = Register(kA, 100, 1, 0, "nom", "Piscine");
  Change add = Write(kA, 150, 1, 100);
  FieldState& f = AddField(add, kA, "activites");
  auto* e = f.add_elements();
  e->set_value("natation");
  e->set_hlc(150);
  e->set_origin(kA);
  Change remove = Write(kB, 200, 1, 100);
  FieldState& r = AddField(remove, kB, "activites");
  *r.add_removed() = *e;
  RecordState s = Merged({create, add, remove});
  // The removed add is still listed: it stays, and so does the remove.
  EXPECT_FALSE(Superseded(add, kA, &s, FrontierAt(1000)));
  EXPECT_FALSE(Superseded(remove, kB, &s, FrontierAt(1000)));
  // Collected (the tag left the removed list): the add goes, the remove stays.
  s.mutable_fields(0)->clear_removed();
  ASSERT_EQ(s.fields(0).name(), "activites");
  EXPECT_TRUE(Superseded(add, kA, &s, FrontierAt(1000)));
  EXPECT_FALSE(Superseded(remove, kB, &s, FrontierAt(1000)));
  // An element still present keeps its add.
  Change keep = Write(kB, 250, 1, 100);
  auto* k = AddField(keep, kB, "activites").add_elements();
  k->set_value("plongee");
  k->set_hlc(250);
  k->set_origin(kB);
  const RecordState s2 = Merged({create, add, remove, keep});
  EXPECT_FALSE(Superseded(keep, kB, &s2, FrontierAt(1000)));
}

TEST(SupersededTest, CounterTotalsGoOnceALaterTotalOfTheirOriginIsStable) {
  const Change create = Register(kA, 100, 1, 0, "nom", "Piscine");
  auto counted = [](uint64_t hlc, uint64_t total) {
    Change c = Write(kB, hlc, 1, 100);
    auto* e = AddField(c, kB, "entrees").add_counter();
    e->set_origin(kB);
    e->set_increments(total);
    e->set_hlc(hlc);
    return c;
  };
  const Change first = counted(200, 5);
  const Change second = counted(300, 8);
  const RecordState s = Merged({create, first, second});
  EXPECT_TRUE(Superseded(first, kB, &s, FrontierAt(1000)));
  EXPECT_FALSE(Superseded(first, kB, &s, FrontierAt(299)));
  EXPECT_FALSE(Superseded(second, kB, &s, FrontierAt(1000)));
  // An origin with two epochs (restored from a backup) may count lower at a later stamp.
  VersionVector two = FrontierAt(1000);
  two[OriginKey{kB, 2}] = OriginPos{3, 1000, "", false};
  EXPECT_FALSE(Superseded(first, kB, &s, two));
}

TEST(SupersededTest, AMissingFieldMeansTheRecordWasCollectedAndCreatedAgain) {
  // Lives count from 1 again once a record is collected: the old create's field is not
  // in the new life, and its delete (kept) takes it out where it arrives first.
  const Change old_create = Register(kA, 100, 1, 0, "horaires", "9h-18h");
  const Change new_create = Register(kB, 400, 1, 0, "nom", "Piscine");
  const RecordState s = Merged({new_create});
  EXPECT_TRUE(Superseded(old_create, kA, &s, FrontierAt(1000)));
  EXPECT_FALSE(Superseded(old_create, kA, &s, FrontierAt(399))) << "the new create may go";
}

TEST(HollowTest, KeepsTheHeaderAndSignatureAndDecodes) {
  class Sha final : public Hasher {
   public:
    std::string Sha256(std::string_view d) override {
      // Not SHA-256; the batch is checked against itself only.
      return std::string(32, static_cast<char>(d.size()));
    }
  } hasher;
  BatchParams p;
  p.origin = kA;
  p.epoch = 1;
  p.stream = "equipements";
  p.max_hlc = 100;
  std::string header_hash;
  absl::StatusOr<interco::replication::v1::Batch> b = BuildBatch(
      p, {Register(kA, 100, 1, 0, "nom", "x").SerializeAsString()}, hasher, nullptr, &header_hash);
  ASSERT_TRUE(b.ok()) << b.status();
  b->set_signature(std::string(64, 's'));
  b->set_signer(std::string(32, 'k'));
  const interco::replication::v1::Batch hollow = Hollow(*b);
  EXPECT_TRUE(hollow.hollow());
  EXPECT_EQ(hollow.changes_size(), 0);
  EXPECT_EQ(hollow.header(), b->header());
  EXPECT_EQ(hollow.signature(), b->signature());
  absl::StatusOr<DecodedBatch> decoded = DecodeBatch(hollow, hasher);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_TRUE(decoded->changes.empty());
  EXPECT_EQ(decoded->header_hash, header_hash);
  // A batch stripped of its changes without saying so is corrupt; a hollow one that
  // carries changes too.
  interco::replication::v1::Batch stripped = hollow;
  stripped.set_hollow(false);
  EXPECT_TRUE(absl::IsDataLoss(DecodeBatch(stripped, hasher).status()));
  interco::replication::v1::Batch both = *b;
  both.set_hollow(true);
  EXPECT_TRUE(absl::IsDataLoss(DecodeBatch(both, hasher).status()));

  // A batch whose signed header says it carries a policy change is never hollow.
  Change policy;
  policy.mutable_policy()->set_version(100);
  policy.set_author("213105554");
  p.carries_policy = true;
  absl::StatusOr<interco::replication::v1::Batch> owner =
      BuildBatch(p, {policy.SerializeAsString()}, hasher, nullptr, &header_hash);
  ASSERT_TRUE(owner.ok()) << owner.status();
  EXPECT_TRUE(DecodeBatch(*owner, hasher).ok());
  EXPECT_TRUE(absl::IsDataLoss(DecodeBatch(Hollow(*owner), hasher).status()));
  BatchHeader h;
  ASSERT_TRUE(h.ParseFromString(owner->header()));
  EXPECT_FALSE(MayHollow(h, false, FrontierAt(1000), 1000));
  // ...and a batch so marked carries one.
  absl::StatusOr<interco::replication::v1::Batch> lying = BuildBatch(
      p, {Register(kA, 100, 1, 0, "nom", "x").SerializeAsString()}, hasher, nullptr, &header_hash);
  ASSERT_TRUE(lying.ok());
  EXPECT_TRUE(absl::IsDataLoss(DecodeBatch(*lying, hasher).status()));
}

}  // namespace
}  // namespace interco::replication
