// The outside world, as the pure replication core sees it.
//
// replication/ never reads a clock, draws random numbers, touches storage or the network
// by itself: node/ passes real implementations in, and the simulator (tests/sim/) passes
// deterministic ones. Implementations say their own thread-safety.
#ifndef INTERCO_REPLICATION_ENV_H_
#define INTERCO_REPLICATION_ENV_H_

#include <cstdint>

namespace interco::replication {

// Wall-clock time. May jump; the hybrid logical clock copes.
class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch.
  virtual int64_t NowMillis() = 0;
};

}  // namespace interco::replication

#endif  // INTERCO_REPLICATION_ENV_H_
