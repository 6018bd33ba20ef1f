#include "replication/hlc.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace interco::replication {

HybridLogicalClock::HybridLogicalClock(Clock& clock, uint64_t high_water)
    : clock_(clock), last_(high_water) {}

uint64_t HybridLogicalClock::Now() {
  const int64_t wall = clock_.NowMillis();
  const uint64_t wall_hlc = Pack(static_cast<uint64_t>(std::max<int64_t>(wall, 0)), 0);
  // Either the wall clock moved past everything seen (logical restarts at 0), or we
  // count up from the last value. Incrementing the packed value carries a logical
  // overflow into the milliseconds, which keeps values unique and ordered.
  last_ = std::max(wall_hlc, last_ + 1);
  return last_;
}

absl::Status HybridLogicalClock::Observe(uint64_t remote, int64_t max_offset_ms) {
  const int64_t wall = clock_.NowMillis();
  const int64_t remote_ms = static_cast<int64_t>(Millis(remote));
  if (remote_ms - wall > max_offset_ms) {
    return absl::InvalidArgumentError(absl::StrCat(
        "remote clock ", remote_ms, " ms is ", remote_ms - wall,
        " ms ahead of the local clock (max offset ", max_offset_ms, " ms)"));
  }
  last_ = std::max(last_, remote);
  return absl::OkStatus();
}

}  // namespace interco::replication
