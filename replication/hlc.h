// Hybrid logical clock (Kulkarni et al., 2014) packed in 64 bits.
//
// An HLC value is 48 bits of physical milliseconds since the Unix epoch followed by a
// 16-bit logical counter, so values compare as plain integers and stay close to wall
// time. Ties between origins are broken by the origin SIREN, never by wall clock.
//
// Not thread-safe: the owner serializes calls.
#ifndef INTERCO_REPLICATION_HLC_H_
#define INTERCO_REPLICATION_HLC_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "replication/env.h"

namespace interco::replication {

// A unique, totally ordered point of an origin's history: (hlc, origin).
struct Stamp {
  uint64_t hlc = 0;
  uint32_t origin = 0;

  friend bool operator==(const Stamp&, const Stamp&) = default;
  friend auto operator<=>(const Stamp& a, const Stamp& b) = default;
};

class HybridLogicalClock {
 public:
  static constexpr int kLogicalBits = 16;
  static constexpr uint64_t kLogicalMask = (uint64_t{1} << kLogicalBits) - 1;

  // `clock` must outlive this object. The clock never returns a value at or below
  // `high_water` (the greatest value issued before a restart).
  HybridLogicalClock(Clock& clock, uint64_t high_water);
  HybridLogicalClock(const HybridLogicalClock&) = delete;
  HybridLogicalClock& operator=(const HybridLogicalClock&) = delete;

  // A new value for a local event, greater than every value issued or observed.
  uint64_t Now();

  // Takes a remote value into account so that later local values exceed it.
  // INVALID_ARGUMENT (nothing changes) if it is more than `max_offset_ms` ahead of the
  // local wall clock.
  absl::Status Observe(uint64_t remote, int64_t max_offset_ms);

  // Makes every later value greater than `high_water` (a value issued before a
  // restart, read back from storage). Trusted input: no offset check.
  void AdvanceTo(uint64_t high_water) {
    if (high_water > last_) last_ = high_water;
  }

  // The greatest value issued or observed so far.
  uint64_t last() const { return last_; }

  static uint64_t Pack(uint64_t millis, uint64_t logical) {
    return (millis << kLogicalBits) | (logical & kLogicalMask);
  }
  static uint64_t Millis(uint64_t hlc) { return hlc >> kLogicalBits; }
  static uint64_t Logical(uint64_t hlc) { return hlc & kLogicalMask; }

 private:
  Clock& clock_;
  uint64_t last_;
};

}  // namespace interco::replication

#endif  // INTERCO_REPLICATION_HLC_H_
