// Collection of the removed elements of string sets (replication/collection.h): which
// removals a frontier covers, and that a remove arriving after the collection of a
// concurrent one leaves the record as it leaves a node where it arrived before.
#include "replication/collection.h"

#include <gtest/gtest.h>

#include <initializer_list>
#include <string>
#include <tuple>
#include <vector>

#include "replication/hlc.h"
#include "replication/record_crdt.h"

namespace interco::replication {
namespace {

using interco::replication::v1::SetElement;

constexpr uint32_t kA = 200046977;
constexpr uint32_t kB = 210100533;

SetElement Tag(const std::string& value, uint64_t hlc, uint32_t origin) {
  SetElement e;
  e.set_value(value);
  e.set_hlc(hlc);
  e.set_origin(origin);
  return e;
}

// A record whose "tags" field holds `live` and has removed `removed`.
RecordState WithSet(const std::vector<SetElement>& live, const std::vector<SetElement>& removed) {
  RecordState s;
  s.set_causal_length(1);
  s.set_cl_hlc(1);
  s.set_cl_origin(kA);
  FieldState* f = s.add_fields();
  f->set_name("tags");
  f->set_hlc(100);
  f->set_origin(kA);
  for (const auto& e : live) *f->add_elements() = e;
  for (const auto& e : removed) *f->add_removed() = e;
  return s;
}

// Entries (origin, epoch, seq, HLC of change seq).
VersionVector Frontier(
    std::initializer_list<std::tuple<uint32_t, uint32_t, uint64_t, uint64_t>> entries) {
  VersionVector vv;
  for (const auto& [origin, epoch, seq, hlc] : entries) {
    vv[OriginKey{origin, epoch}] = OriginPos{seq, hlc, ""};
  }
  return vv;
}

TEST(CollectionTest, AStampIsAtOrBelowTheFrontierOfItsOnlyEpoch) {
  const VersionVector f = Frontier({{kA, 1, 10, 500}, {kB, 1, 3, 0}, {kB, 2, 4, 900}});
  EXPECT_TRUE(StampedAtOrBelow(500, kA, f));
  EXPECT_TRUE(StampedAtOrBelow(1, kA, f));
  EXPECT_FALSE(StampedAtOrBelow(501, kA, f));
  EXPECT_FALSE(StampedAtOrBelow(100, kB, f));  // two epochs: a stamp does not say which
  EXPECT_FALSE(StampedAtOrBelow(100, 219000015, f));  // not in the frontier
  EXPECT_FALSE(StampedAtOrBelow(100, kA, Frontier({{kA, 1, 10, 0}})));  // no HLC known
}

TEST(CollectionTest, APurgeTakesOutRemovalsWhoseAddIsCoveredToo) {
  // "x" added by A at 50, "y" added by B at 700; both removed by one change of A.
  RecordState state = WithSet({Tag("z", 60, kA)}, {Tag("x", 50, kA), Tag("y", 700, kB)});
  const RecordState removals = RemovalsOf(WithSet({}, {Tag("x", 50, kA), Tag("y", 700, kB)}));
  ASSERT_EQ(removals.fields_size(), 1);
  EXPECT_EQ(removals.fields(0).removed_size(), 2);
  EXPECT_EQ(removals.fields(0).elements_size(), 0);
  bool pending = false;
  // B's add of "y" is not covered yet: it stays, and says so.
  EXPECT_EQ(PurgeRemovals(state, removals, Frontier({{kA, 1, 10, 500}, {kB, 1, 5, 600}}),
                          &pending),
            1u);
  EXPECT_TRUE(pending);
  ASSERT_EQ(state.fields(0).removed_size(), 1);
  EXPECT_EQ(state.fields(0).removed(0).value(), "y");
  EXPECT_EQ(state.fields(0).elements_size(), 1);  // live elements are untouched
  pending = false;
  EXPECT_EQ(PurgeRemovals(state, removals, Frontier({{kA, 1, 10, 500}, {kB, 1, 9, 700}}),
                          &pending),
            1u);
  EXPECT_FALSE(pending);
  EXPECT_EQ(state.fields(0).removed_size(), 0);
  // Gone already: nothing more, nothing pending.
  EXPECT_EQ(PurgeRemovals(state, removals, Frontier({{kA, 1, 10, 500}, {kB, 1, 9, 700}}),
                          &pending),
            0u);
  EXPECT_FALSE(pending);
  // A field of another life keeps what it has: its removals are not the change's.
  RecordState later = WithSet({}, {Tag("x", 50, kA)});
  SetLifeOfField(*later.mutable_fields(0), 2);
  later.set_causal_length(3);
  EXPECT_EQ(PurgeRemovals(later, removals, Frontier({{kA, 1, 10, 500}}), &pending), 0u);
  EXPECT_EQ(later.fields(0).removed_size(), 1);
}

// Two concurrent removes of "x"; the first is collected. The second arrives before the
// collection on one node and after it on another: both end alike.
TEST(CollectionTest, ALateConcurrentRemoveDoesNotBringACollectedRemovalBack) {
  const SetElement x = Tag("x", 50, kA);
  const RecordState base = WithSet({x}, {});
  RecordState first_remove = WithSet({}, {x});
  first_remove.mutable_fields(0)->set_hlc(200);
  RecordState second_remove = WithSet({}, {x});
  second_remove.mutable_fields(0)->set_hlc(300);
  second_remove.mutable_fields(0)->set_origin(kB);
  const VersionVector f = Frontier({{kA, 1, 10, 250}});  // covers the add and the first remove
  bool pending = false;

  RecordState early = base;  // the second remove before the collection
  MergeRecordState(early, first_remove);
  MergeRecordState(early, second_remove);
  EXPECT_EQ(PurgeRemovals(early, RemovalsOf(first_remove), f, &pending), 1u);

  RecordState late = base;  // the second remove after it
  MergeRecordState(late, first_remove);
  EXPECT_EQ(PurgeRemovals(late, RemovalsOf(first_remove), f, &pending), 1u);
  const RecordState before = late;
  MergeRecordState(late, second_remove);
  EXPECT_EQ(late.fields(0).removed_size(), 1);  // what merging alone would do
  EXPECT_EQ(DropPurgedRemovals(before, second_remove, late, f), 1u);
  EXPECT_EQ(late.SerializeAsString(), early.SerializeAsString());

  // A remove of an element still held is kept, even if its add is covered.
  RecordState held = base;
  const RecordState was = held;
  MergeRecordState(held, second_remove);
  EXPECT_EQ(DropPurgedRemovals(was, second_remove, held, f), 0u);
  EXPECT_EQ(held.fields(0).removed_size(), 1);
  EXPECT_EQ(held.fields(0).elements_size(), 0);
  // Nothing is dropped without a collection.
  RecordState none = base;
  MergeRecordState(none, first_remove);
  const RecordState none_before = none;
  MergeRecordState(none, second_remove);
  EXPECT_EQ(DropPurgedRemovals(none_before, second_remove, none, VersionVector()), 0u);
}

}  // namespace
}  // namespace interco::replication
