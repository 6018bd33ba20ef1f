#include "node/rpc/grpc_runtime.h"

#include <grpc/grpc.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>

#include "absl/time/clock.h"

namespace interco::node {
namespace {

// The names gRPC gives its threads (as Linux keeps them: 15 characters at most): its
// executors, timers and event engine, and the detached thread of a shut-down started on
// one of them.
constexpr std::array<std::string_view, 6> kGrpcThreads = {
    "grpc_shutdown", "timer_manager", "event_engine",
    "grpc_global_tim", "default-executo", "resolver-execut"};

// Whether a thread of this process bears one of gRPC's names (/proc/self/task/*/comm).
bool HasGrpcThread() {
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream comm(task.path() / "comm");
    std::string line;
    if (std::getline(comm, line) &&
        std::find(kGrpcThreads.begin(), kGrpcThreads.end(), line) != kGrpcThreads.end()) {
      return true;
    }
  }
  return false;
}

}  // namespace

GrpcRuntime::GrpcRuntime() { grpc_init(); }

GrpcRuntime::~GrpcRuntime() { Shutdown(absl::Seconds(10)); }

bool GrpcRuntime::Shutdown(absl::Duration timeout) {
  if (released_) return shut_down_;
  released_ = true;
  grpc_shutdown();
  const absl::Time deadline = absl::Now() + timeout;
  // grpc_is_initialized() takes the lock that the clean-up holds while it runs: it turns
  // false once the last hold is released and the clean-up is done. Threads of gRPC's may
  // still be on their way out then (a clean-up started on one of them runs on a detached
  // thread, the timer manager's threads end after it): wait for them to be gone too.
  while (grpc_is_initialized() != 0 || HasGrpcThread()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  shut_down_ = true;
  return true;
}

}  // namespace interco::node
