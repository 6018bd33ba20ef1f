#include "node/log.h"

#include <unistd.h>

#include <atomic>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "replication/base/strings.h"

namespace interco::node::log {
namespace {

std::atomic<int> min_level{static_cast<int>(Level::kInfo)};

}  // namespace

void SetMinLevel(Level level) { min_level.store(static_cast<int>(level)); }

void Write(Level level, std::string_view message) {
  if (static_cast<int>(level) < min_level.load(std::memory_order_relaxed)) return;
  static constexpr char kLetters[] = {'D', 'I', 'W', 'E'};
  std::string line = absl::StrCat(
      absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()), " ",
      absl::string_view(&kLetters[static_cast<int>(level)], 1), " ", ToAbsl(message), "\n");
  // One write per line so that concurrent lines do not interleave; a failed write to
  // stderr has nowhere to be reported.
  const ssize_t n = ::write(STDERR_FILENO, line.data(), line.size());
  (void)n;
}

}  // namespace interco::node::log
