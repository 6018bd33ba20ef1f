#ifndef INTERCO_NODE_RPC_GRPC_RUNTIME_H_
#define INTERCO_NODE_RPC_GRPC_RUNTIME_H_

#include "absl/time/time.h"

namespace interco::node {

// Holds the gRPC library initialized for the life of a process's main() and, at its end,
// waits until gRPC has shut down: its threads stopped and its memory freed.
//
// Without it, gRPC shuts down when its last object goes, and that is often not on the
// main thread: a channel's subchannel is released by gRPC's own threads after the channel
// object is gone (a failed connection, when its reconnection backoff ends), and a last
// release there starts a detached clean-up thread. gRPC's threads may then still run
// while the process exits, racing the exit handlers (the leak check of sanitizer builds
// among them).
//
// Declare it first in main(), before any gRPC object, so that it is destroyed last.
class GrpcRuntime {
 public:
  GrpcRuntime();
  ~GrpcRuntime();
  GrpcRuntime(const GrpcRuntime&) = delete;
  GrpcRuntime& operator=(const GrpcRuntime&) = delete;

  // Releases this hold and waits, at most `timeout`, for gRPC to finish shutting down
  // and for its threads (known by their names) to be gone.
  // Returns whether it did; false when a gRPC object is still alive (or leaked) or its
  // release is still under way after `timeout`. Called by the destructor (10 s) if not
  // before; later calls return the first one's result.
  bool Shutdown(absl::Duration timeout);

 private:
  bool released_ = false;
  bool shut_down_ = false;
};

}  // namespace interco::node

#endif  // INTERCO_NODE_RPC_GRPC_RUNTIME_H_
