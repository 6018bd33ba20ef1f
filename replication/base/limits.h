// Every bound of interco, in one place. Units come last in names.
//
// Persisted and wire-visible limits are part of the format: raising one is compatible,
// lowering one is not (stored data may exceed the new bound).
#ifndef INTERCO_REPLICATION_BASE_LIMITS_H_
#define INTERCO_REPLICATION_BASE_LIMITS_H_

#include <cstddef>
#include <cstdint>

namespace interco::limits {

// Identifiers.
inline constexpr size_t kRegistryIdBytesMin = 3;
inline constexpr size_t kRegistryIdBytesMax = 63;
inline constexpr size_t kRecordIdBytesMax = 128;
inline constexpr size_t kFieldNameBytesMax = 63;
inline constexpr size_t kClientNameBytesMax = 64;

// Registry definitions.
inline constexpr size_t kSchemaFieldsMax = 128;
inline constexpr size_t kDisplayNameBytesMax = 256;
inline constexpr size_t kDescriptionBytesMax = 1024;

// Values.
inline constexpr uint32_t kStringBytesDefault = 4096;
inline constexpr uint32_t kStringBytesMax = 65536;
inline constexpr uint32_t kSetElementsDefault = 1024;
inline constexpr uint32_t kSetElementsMax = 10000;
// Serialized CRDT state of one record, metadata and tombstones included.
inline constexpr size_t kRecordStateBytesMax = 1 << 20;
// A record's causal length (creates and deletes), so that its life never wraps: a
// record can be deleted and re-created about a billion times. Even: a record at the
// bound is deleted (it can always be deleted, never re-created past it).
inline constexpr uint32_t kCausalLengthMax = uint32_t{1} << 31;
// Conflict journal of one record: lost writes kept (the oldest dropped beyond, counted),
// writes seen ahead of their arrival, and the journal's serialized size.
inline constexpr int kConflictsPerRecordMax = 64;
inline constexpr int kSeenAheadPerRecordMax = 256;
inline constexpr size_t kConflictBytesPerRecordMax = 1 << 20;

// Reads.
inline constexpr int32_t kPageSizeDefault = 100;
inline constexpr int32_t kPageSizeMax = 1000;
inline constexpr size_t kBatchGetMax = 1000;
inline constexpr size_t kFiltersMax = 8;
// Records examined (not returned) by one ListRecords page before it returns early.
inline constexpr size_t kListScanRecordsMax = 10000;
inline constexpr size_t kPageTokenBytesMax = 1024;

// Writes.
// Mutations committed together in one group commit (one WAL write, one fsync).
inline constexpr size_t kCommitGroupMutationsMax = 512;
// Payload bytes of one group commit (so that one change-log batch fits a peer message).
inline constexpr size_t kCommitGroupBytesMax = 4 << 20;
// A remote batch of more changes than this is merged in slices of this many, one commit
// group each, so that local writes commit between them (RecordStore::StageRemoteChanges).
inline constexpr size_t kApplySliceChanges = 64;
// Compaction of a registry's change log (replication/compaction.h): batches found
// superseded, away from the committer, that one commit group checks again and makes
// hollow, before the committer takes other work...
inline constexpr size_t kCompactionPassBatches = 256;
// ...and at most this many of their changes (one point read of a record each).
inline constexpr size_t kCompactionPassChanges = 2048;

// Watch streams.
inline constexpr size_t kWatchChangesPerMessageMax = 256;
inline constexpr uint64_t kFeedRetentionEntriesDefault = 100000;

// gRPC.
inline constexpr int kGrpcMessageBytesMax = 8 << 20;
// Peer messages carry whole batches: a commit group plus one record at most.
inline constexpr int kPeerMessageBytesMax = 16 << 20;
// A peer message gathers runs up to this size before it is sent (a single run may be
// larger, up to kPeerMessageBytesMax).
inline constexpr size_t kPeerMessageGatherBytes = 1 << 20;
// Broadcast tree: positions this many links or more from their root are ignored, so that
// a root that went away is forgotten (distances count up to here) and the next smallest
// SIREN takes over.
inline constexpr uint32_t kTreeDistanceMax = 32;
// Causal stability (replication/stability.h): members of one stream whose reports a node
// keeps, and origin epochs in one report; reports beyond these are ignored.
inline constexpr size_t kStreamMembersMax = 1024;
inline constexpr size_t kReportOriginsMax = 4096;
// Signed reports of one member a node keeps to relay: those no other kept one covers
// (a member's position shrinks where a collection refuses batches it held, so its reports
// need not be ordered); beyond this, the one signed earliest goes.
inline constexpr size_t kRelayedReportsPerMember = 4;
// Repair (replication/repair.h): tree nodes named in one reconciliation query, buckets
// named with the records asked for by digest in one, records asked for in one, and the
// size at which a response stops adding records or bucket digests (at least one of them
// is always sent).
inline constexpr size_t kReconcileNodesMax = 1024;
inline constexpr size_t kReconcileBucketsMax = 1024;
inline constexpr size_t kReconcileRecordsMax = 16384;
inline constexpr size_t kReconcileResponseBytesMax = 4 << 20;
// Messages queued for one peer session before Send reports it full.
inline constexpr size_t kPeerQueueMessagesMax = 4096;
// Reconnection backoff.
inline constexpr int64_t kPeerBackoffMinMillis = 100;
inline constexpr int64_t kPeerBackoffMaxMillis = 5000;

// Trust and audit.
// One signature per run of batches (docs/TRUST.md, "One signature per run"): an origin
// leaves a batch unsigned while its unsigned run stays under these bounds and younger
// than kSignIntervalMillis, and signs the tail once its commit queue has been idle for
// kSignIdleMillis. A frame carries one run; receivers refuse longer ones.
inline constexpr size_t kRunBatchesMax = 32;
// Changes one frame may hold on the wire: a run's batches, each at most one commit group.
inline constexpr size_t kFrameChangesMax = kRunBatchesMax * kCommitGroupMutationsMax;
inline constexpr uint64_t kRunChangesUnsignedMax = 1024;
inline constexpr size_t kRunBytesUnsignedMax = 4 << 20;
inline constexpr int64_t kSignIntervalMillis = 2;
inline constexpr int64_t kSignIdleMillis = 1;
// Signatures verified ahead of the engine (on session reader threads) and remembered.
inline constexpr size_t kVerifiedAheadMax = 8192;
// Audit events of refused batches per peer and second (burst: twice as many); the rest
// are counted in the next event.
inline constexpr double kAuditRefusalsPerSecondPerPeer = 20;
inline constexpr double kAuditRefusalsBurstPerPeer = 40;
inline constexpr int32_t kAuditRetentionDaysDefault = 365;
inline constexpr int32_t kAuditRetentionDaysMax = 36500;
inline constexpr int32_t kAuditPageSizeDefault = 100;
inline constexpr int32_t kAuditPageSizeMax = 1000;
// Retention trims an audit chain at most this often, this many events at a time.
inline constexpr int64_t kAuditTrimIntervalMillis = 60 * 1000;
inline constexpr int kAuditTrimBatchMax = 256;

// Clocks: a remote HLC further ahead of the local wall clock than this is refused.
inline constexpr int64_t kClockOffsetMaxMillisDefault = 60 * 1000;

}  // namespace interco::limits

#endif  // INTERCO_REPLICATION_BASE_LIMITS_H_
