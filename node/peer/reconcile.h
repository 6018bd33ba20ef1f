// Range-fingerprint repair over the peer port (replication/repair.h): both ends of
// PeerService.Reconcile. docs/REPLICATION.md, "Repair".
//
// The answering node serves its store's fingerprints, bucket digests and record states
// (ServeReconcile). The repairing node walks both trees (replication::FindDifferences),
// fetches the peer's states of the records that differ and merges them into its store
// (RepairFrom). Nothing is written on the answering node.
#ifndef INTERCO_NODE_PEER_RECONCILE_H_
#define INTERCO_NODE_PEER_RECONCILE_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "interco/replication/v1/peer.pb.h"
#include "interco/replication/v1/peer_service.grpc.pb.h"
#include "interco/v1/admin_service.pb.h"
#include "node/storage/record_store.h"
#include "replication/base/limits.h"
#include "replication/env.h"
#include "replication/ids.h"

namespace interco::node {

// Answers one Reconcile request of `peer` from `store`. NOT_FOUND for a registry not held
// here, PERMISSION_DENIED if `peer` may not read it, INVALID_ARGUMENT naming the field.
absl::Status ServeReconcile(RecordStore& store, uint32_t peer,
                            const interco::replication::v1::ReconcileRequest& request,
                            interco::replication::v1::ReconcileResponse& response);

struct RepairOptions {
  std::string registry;
  // The federation: the peer must answer with the certificate of
  // spiffe://<federation>/collectivite/<peer's SIREN>.
  std::string federation;
  // The peer's SIREN as an origin number.
  uint32_t peer = 0;
  // Who asked (audited with the merge).
  replication::Principal caller;
  bool dry_run = false;
  // States stamped beyond now + this are refused (as remote batches are).
  int64_t clock_offset_max_ms = 60000;
  // The peer's differing records are read by a scan of its whole registry, rather than
  // asked for by digest, when there are more of them than this and at least as many as
  // this side holds.
  size_t scan_above = limits::kReconcileRecordsMax;
  // Set (by another thread) to stop the repair before its next request.
  const std::atomic<bool>* cancel = nullptr;
  // Deadline of each request to the peer, and of the whole repair (checked before each
  // request: DEADLINE_EXCEEDED, what was merged stays).
  int64_t call_timeout_ms = 30000;
  int64_t deadline_ms = 3600 * 1000;
};

// Repairs `store`'s copy of a registry from the peer behind `stub`.
absl::StatusOr<interco::v1::RepairReport> RepairFrom(
    RecordStore& store, interco::replication::v1::PeerService::StubInterface& stub,
    replication::Clock& clock, const RepairOptions& options);

}  // namespace interco::node

#endif  // INTERCO_NODE_PEER_RECONCILE_H_
