#include "replication/hlc.h"

#include <algorithm>
#include <cstdint>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "replication/env.h"

namespace interco::replication {
namespace {

using ::testing::HasSubstr;

// A wall clock that only moves when told to.
class FakeClock : public Clock {
 public:
  explicit FakeClock(int64_t now_ms) : now_ms_(now_ms) {}
  int64_t NowMillis() override { return now_ms_; }
  int64_t MonotonicMillis() override { return now_ms_; }
  void Set(int64_t now_ms) { now_ms_ = now_ms; }
  void Advance(int64_t delta_ms) { now_ms_ += delta_ms; }

 private:
  int64_t now_ms_;
};

constexpr int64_t kWall = 1'700'000'000'000;  // 2023-11-14, in milliseconds.
constexpr int64_t kMaxOffsetMs = 60'000;

uint64_t Pack(uint64_t millis, uint64_t logical) {
  return HybridLogicalClock::Pack(millis, logical);
}

TEST(HybridLogicalClockTest, FirstValueFollowsWallClock) {
  FakeClock clock(kWall);
  HybridLogicalClock hlc(clock, 0);
  EXPECT_EQ(hlc.Now(), Pack(kWall, 0));
  EXPECT_EQ(hlc.last(), Pack(kWall, 0));
}

TEST(HybridLogicalClockTest, NewMillisecondResetsLogicalCounter) {
  FakeClock clock(kWall);
  HybridLogicalClock hlc(clock, 0);
  hlc.Now();
  hlc.Now();
  clock.Advance(5);
  EXPECT_EQ(hlc.Now(), Pack(kWall + 5, 0));
}

TEST(HybridLogicalClockTest, LogicalCounterIncrementsWithinOneMillisecond) {
  FakeClock clock(kWall);
  HybridLogicalClock hlc(clock, 0);
  for (uint64_t i = 0; i < 10; ++i) {
    const uint64_t v = hlc.Now();
    EXPECT_EQ(HybridLogicalClock::Millis(v), static_cast<uint64_t>(kWall));
    EXPECT_EQ(HybridLogicalClock::Logical(v), i);
  }
}

TEST(HybridLogicalClockTest, MonotonicWhenWallClockGoesBackwards) {
  FakeClock clock(kWall);
  HybridLogicalClock hlc(clock, 0);
  const uint64_t first = hlc.Now();
  clock.Set(kWall - 10'000);
  const uint64_t second = hlc.Now();
  EXPECT_GT(second, first);
  EXPECT_EQ(second, Pack(kWall, 1));
  clock.Set(kWall - 20'000);
  const uint64_t third = hlc.Now();
  EXPECT_GT(third, second);
  EXPECT_EQ(third, Pack(kWall, 2));
  // Once the wall clock catches up, it drives the value again.
  clock.Set(kWall + 1);
  EXPECT_EQ(hlc.Now(), Pack(kWall + 1, 0));
}

TEST(HybridLogicalClockTest, NegativeWallClockStillMonotonic) {
  FakeClock clock(-5);
  HybridLogicalClock hlc(clock, 0);
  const uint64_t a = hlc.Now();
  const uint64_t b = hlc.Now();
  EXPECT_GT(a, 0u);
  EXPECT_GT(b, a);
}

TEST(HybridLogicalClockTest, LogicalOverflowCarriesIntoMillisAndStaysUnique) {
  FakeClock clock(kWall);
  HybridLogicalClock hlc(clock, 0);
  std::set<uint64_t> seen;
  uint64_t prev = 0;
  constexpr uint64_t kCount = HybridLogicalClock::kLogicalMask + 1 + 10;  // 65546
  for (uint64_t i = 0; i < kCount; ++i) {
    const uint64_t v = hlc.Now();
    ASSERT_GT(v, prev) << "at i=" << i;
    prev = v;
    seen.insert(v);
  }
  EXPECT_EQ(seen.size(), kCount);
  // Value 65535 is the last of millisecond kWall; 65536 carries.
  EXPECT_TRUE(seen.count(Pack(kWall, 65535)));
  EXPECT_TRUE(seen.count(Pack(kWall + 1, 0)));
  EXPECT_EQ(prev, Pack(kWall + 1, 9));
  // The wall clock reaching the carried millisecond must not reissue a value.
  clock.Set(kWall + 1);
  const uint64_t next = hlc.Now();
  EXPECT_GT(next, prev);
  EXPECT_EQ(next, Pack(kWall + 1, 10));
}

TEST(HybridLogicalClockTest, ConstructorHighWaterIsNeverReissued) {
  FakeClock clock(kWall);
  const uint64_t high_water = Pack(kWall + 5'000, 42);  // issued before a restart
  HybridLogicalClock hlc(clock, high_water);
  EXPECT_EQ(hlc.last(), high_water);
  EXPECT_GT(hlc.Now(), high_water);
}

TEST(HybridLogicalClockTest, AdvanceToHighWaterAfterRestart) {
  FakeClock clock(kWall);
  uint64_t high_water = 0;
  {
    HybridLogicalClock before(clock, 0);
    clock.Set(kWall + 10'000);  // the old process saw a later wall time
    for (int i = 0; i < 5; ++i) high_water = before.Now();
  }
  clock.Set(kWall);  // after the restart the wall clock is behind
  HybridLogicalClock after(clock, 0);
  after.AdvanceTo(high_water);
  EXPECT_EQ(after.last(), high_water);
  const uint64_t v = after.Now();
  EXPECT_GT(v, high_water);
  EXPECT_EQ(v, high_water + 1);
}

TEST(HybridLogicalClockTest, AdvanceToNeverMovesBackwards) {
  FakeClock clock(kWall);
  HybridLogicalClock hlc(clock, 0);
  const uint64_t a = hlc.Now();
  hlc.AdvanceTo(a - 100);
  EXPECT_EQ(hlc.last(), a);
  EXPECT_GT(hlc.Now(), a);
}

TEST(HybridLogicalClockTest, ObserveWithinMaxOffsetIsAccepted) {
  FakeClock clock(kWall);
  HybridLogicalClock hlc(clock, 0);
  hlc.Now();
  const uint64_t remote = Pack(kWall + 30'000, 7);
  ASSERT_TRUE(hlc.Observe(remote, kMaxOffsetMs).ok());
  EXPECT_EQ(hlc.last(), remote);
  const uint64_t v = hlc.Now();
  EXPECT_GT(v, remote);
  EXPECT_EQ(v, Pack(kWall + 30'000, 8));
}

TEST(HybridLogicalClockTest, ObserveExactlyAtMaxOffsetIsAccepted) {
  FakeClock clock(kWall);
  HybridLogicalClock hlc(clock, 0);
  const uint64_t remote = Pack(kWall + kMaxOffsetMs, HybridLogicalClock::kLogicalMask);
  ASSERT_TRUE(hlc.Observe(remote, kMaxOffsetMs).ok());
  EXPECT_GT(hlc.Now(), remote);
}

TEST(HybridLogicalClockTest, ObserveRemoteBehindKeepsLocalValue) {
  FakeClock clock(kWall);
  HybridLogicalClock hlc(clock, 0);
  const uint64_t a = hlc.Now();
  ASSERT_TRUE(hlc.Observe(Pack(kWall - 1'000, 3), kMaxOffsetMs).ok());
  EXPECT_EQ(hlc.last(), a);
  EXPECT_EQ(hlc.Now(), a + 1);
}

TEST(HybridLogicalClockTest, ObserveTooFarAheadIsRejectedAndChangesNothing) {
  FakeClock clock(kWall);
  HybridLogicalClock hlc(clock, 0);
  const uint64_t a = hlc.Now();
  const uint64_t remote = Pack(kWall + kMaxOffsetMs + 1, 0);
  const absl::Status s = hlc.Observe(remote, kMaxOffsetMs);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("ahead"));
  EXPECT_EQ(hlc.last(), a);
  const uint64_t b = hlc.Now();
  EXPECT_LT(b, remote);
  EXPECT_EQ(b, a + 1);
}

TEST(HybridLogicalClockTest, ObserveOffsetIsMeasuredAgainstCurrentWallClock) {
  FakeClock clock(kWall);
  HybridLogicalClock hlc(clock, 0);
  const uint64_t remote = Pack(kWall + 90'000, 0);
  EXPECT_EQ(hlc.Observe(remote, kMaxOffsetMs).code(), absl::StatusCode::kInvalidArgument);
  clock.Advance(40'000);  // now only 50 s ahead
  EXPECT_TRUE(hlc.Observe(remote, kMaxOffsetMs).ok());
  EXPECT_EQ(hlc.last(), remote);
}

TEST(HybridLogicalClockTest, PackMillisLogicalRoundTrip) {
  const uint64_t millis_cases[] = {0, 1, static_cast<uint64_t>(kWall), (uint64_t{1} << 48) - 1};
  const uint64_t logical_cases[] = {0, 1, 12345, HybridLogicalClock::kLogicalMask};
  for (uint64_t ms : millis_cases) {
    for (uint64_t lc : logical_cases) {
      const uint64_t v = HybridLogicalClock::Pack(ms, lc);
      EXPECT_EQ(HybridLogicalClock::Millis(v), ms);
      EXPECT_EQ(HybridLogicalClock::Logical(v), lc);
    }
  }
  EXPECT_EQ(HybridLogicalClock::Pack(1, 0), uint64_t{1} << 16);
  // The logical part is masked: it never spills into the milliseconds.
  EXPECT_EQ(HybridLogicalClock::Pack(3, 0x1'0005), HybridLogicalClock::Pack(3, 5));
}

TEST(HybridLogicalClockTest, PackedValuesCompareLikeTuples) {
  EXPECT_LT(Pack(10, 65535), Pack(11, 0));
  EXPECT_LT(Pack(10, 1), Pack(10, 2));
  EXPECT_EQ(Pack(10, 65535) + 1, Pack(11, 0));
}

TEST(StampTest, OrdersByHlcFirst) {
  EXPECT_LT((Stamp{100, 999'999'999}), (Stamp{101, 1}));
  EXPECT_GT((Stamp{101, 1}), (Stamp{100, 999'999'999}));
}

TEST(StampTest, TieBreaksOnOrigin) {
  const Stamp a{500, 200046977};
  const Stamp b{500, 217400423};
  EXPECT_LT(a, b);
  EXPECT_GT(b, a);
  EXPECT_NE(a, b);
  EXPECT_EQ(a, (Stamp{500, 200046977}));
  EXPECT_EQ(std::max(a, b), b);
}

TEST(HybridLogicalClockTest, TwoNodesAtSameInstantTieBreakOnNodeId) {
  FakeClock clock(kWall);
  HybridLogicalClock one(clock, 0);
  HybridLogicalClock two(clock, 0);
  const Stamp a{one.Now(), 217400423};
  const Stamp b{two.Now(), 200046977};
  ASSERT_EQ(a.hlc, b.hlc);
  EXPECT_GT(a, b);
}

TEST(HybridLogicalClockTest, ObservedRemoteMakesLaterStampsWinOverIt) {
  FakeClock fast_clock(kWall + 20'000);
  FakeClock slow_clock(kWall);
  HybridLogicalClock fast(fast_clock, 0);
  HybridLogicalClock slow(slow_clock, 0);
  const Stamp remote{fast.Now(), 999'999'999};
  ASSERT_TRUE(slow.Observe(remote.hlc, kMaxOffsetMs).ok());
  const Stamp local{slow.Now(), 1};
  EXPECT_GT(local, remote);
}

}  // namespace
}  // namespace interco::replication
