#include "node/rpc/grpc_runtime.h"

#include <grpc/grpc.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

#include "absl/time/clock.h"

namespace interco::node {
namespace {

// Whether a thread of this process bears `name` (Linux: /proc/self/task/*/comm).
bool HasThreadNamed(const std::string& name) {
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task", ec)) {
    std::ifstream comm(task.path() / "comm");
    std::string line;
    if (std::getline(comm, line) && line == name) return true;
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
  // false once the last hold is released and the clean-up is done. A clean-up started on
  // one of gRPC's threads runs on a detached thread named "grpc_shutdown", which returns
  // right after: wait for it to be gone too.
  while (grpc_is_initialized() != 0 || HasThreadNamed("grpc_shutdown")) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  shut_down_ = true;
  return true;
}

}  // namespace interco::node
