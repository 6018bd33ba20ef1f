// The real clocks, for the replication core's Clock interface. Thread-safe.
#ifndef INTERCO_NODE_SYSTEM_CLOCK_H_
#define INTERCO_NODE_SYSTEM_CLOCK_H_

#include <chrono>

#include "absl/time/clock.h"
#include "replication/env.h"

namespace interco::node {

class SystemClock final : public replication::Clock {
 public:
  int64_t NowMillis() override { return absl::ToUnixMillis(absl::Now()); }
  int64_t MonotonicMillis() override {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
};

}  // namespace interco::node

#endif  // INTERCO_NODE_SYSTEM_CLOCK_H_
