// The outside world, as the pure replication core sees it.
//
// replication/ never reads a clock, touches storage or the network, or computes a
// digest by itself: node/ passes real implementations in (system clock, RocksDB, gRPC,
// OpenSSL), and the simulator (tests/sim/) passes deterministic ones. Implementations
// say their own thread-safety; the engine calls them from one thread.
#ifndef INTERCO_REPLICATION_ENV_H_
#define INTERCO_REPLICATION_ENV_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "interco/replication/v1/peer.pb.h"
#include "interco/replication/v1/state.pb.h"
#include "replication/exclusion.h"
#include "replication/version_vector.h"

namespace interco::replication {

// Time. The wall clock may jump (the hybrid logical clock copes); timers use the
// monotonic clock, which never goes back.
class Clock {
 public:
  virtual ~Clock() = default;
  // Wall clock: milliseconds since the Unix epoch.
  virtual int64_t NowMillis() = 0;
  // Monotonic clock: milliseconds since an arbitrary origin; never decreases.
  virtual int64_t MonotonicMillis() = 0;
};

// SHA-256, for the change log's hash chain.
class Hasher {
 public:
  virtual ~Hasher() = default;
  // The 32-byte digest of `data`.
  virtual std::string Sha256(std::string_view data) = 0;
};

// Signs this node's change-log batches. node/ uses the Ed25519 key of the node's
// certificate; the signature and the key ID go into every batch it originates.
class Signer {
 public:
  virtual ~Signer() = default;
  // SHA-256 of the DER certificate whose key signs now (Batch.signer).
  virtual std::string KeyId() = 0;
  // The signature of `message` by the key of certificate `key_id` (the one KeyId() named
  // for the header): the current key, or the one it replaced if a rotation happened
  // since (KeyId() may be called from another thread meanwhile). NOT_FOUND for another
  // key ID.
  virtual absl::StatusOr<std::string> Sign(std::string_view key_id, std::string_view message) = 0;
};

// Checks origins' signatures against certificates that the federation CA bound to their
// SIRENs. Certificates travel with the batches (PeerMessage.certificates) and are kept
// once their chain is checked.
class Verifier {
 public:
  virtual ~Verifier() = default;
  // OK if `signature` over `message` verifies with the certificate `key_id`, that
  // certificate names `origin`, and it was valid (and not yet revoked) at `at_millis`,
  // the batch's signing time. NOT_FOUND for an unknown certificate; PERMISSION_DENIED
  // for a certificate of another authority, outside its validity or revoked;
  // UNAUTHENTICATED for a signature that does not verify.
  virtual absl::Status Verify(uint32_t origin, std::string_view key_id, int64_t at_millis,
                              std::string_view message, std::string_view signature) = 0;
  // Keeps a DER certificate after checking that it chains to the federation CA and names
  // an authority of the federation. Returns its key ID.
  virtual absl::StatusOr<std::string> AddCertificate(std::string_view der) = 0;
  // The DER certificate of `key_id`, if known.
  virtual std::optional<std::string> Certificate(std::string_view key_id) = 0;
};

// Sends messages to peers over ordered, reliable-while-connected sessions.
class Transport {
 public:
  virtual ~Transport() = default;
  // Queues `message` for `peer`. False if the peer is not connected or its queue is full:
  // the message is dropped, and anti-entropy repairs that later.
  virtual bool Send(uint32_t peer, const interco::replication::v1::PeerMessage& message) = 0;
};

// A batch whose header and changes were parsed and whose body hash was checked.
struct DecodedBatch {
  interco::replication::v1::BatchHeader header;
  std::vector<interco::replication::v1::Change> changes;
  // The batch as received, stored and forwarded unchanged.
  interco::replication::v1::Batch raw;
  // SHA-256 of raw.header: the prev_hash of the origin's next batch.
  std::string header_hash;
  // The run it arrived in, each batch reduced to header, signature and signer (set by
  // the engine once the run's signature verified; shared by the run's batches), and its
  // place in it: the batches after it prove it (ProofOf).
  std::shared_ptr<const std::vector<interco::replication::v1::Batch>> run;
  size_t run_position = 0;

  // The sequence numbers the batch stands for: from its header's first_seq, or from
  // Batch.skip_from for a skip (a stretch of hollow batches ending in this one), to its
  // header's last.
  uint64_t first_seq() const {
    return raw.skip_from() > 0 ? raw.skip_from() : header.first_seq();
  }
  uint64_t last_seq() const { return header.first_seq() + header.count() - 1; }
};

// What the owner of a stream offers to collect (ReplicaStore::Collect): see
// replication/collection.h and interco.replication.v1.Collection.
struct CollectionPlan {
  // The stable frontier, and what a node must hold to act on it (Stability::Requirement).
  VersionVector frontier;
  VersionVector required;
  // The members (ReplicaStore::Members) the frontier waited for.
  std::vector<uint32_t> members;
  // Journal entries stamped below this HLC go (0: none).
  uint64_t journal_before = 0;
  // Members left out of the frontier (absent longer than the member retention, or not
  // back since a collection left them out; replication/exclusion.h), sorted, and how far
  // this node holds each of their origin epochs (Collection.excluded and cuts; a store
  // whose position moved since may cut them further, where it holds them when it stages
  // the collection, and require that much).
  std::vector<uint32_t> excluded = {};
  VersionVector cuts = {};
  // Collect also for compaction of the change log (replication/compaction.h) when the
  // frontier passed at least this many changes beyond the greatest frontier applied and
  // journal_before moves the journals' cut: then hollow batches may follow (0: never).
  uint64_t compaction_changes = 0;
};

// A stream's state at one committed position (ReplicaStore::Digest).
struct StateDigest {
  VersionVector position;
  // Sum mod 2^64 of the live records' digests (replication/repair.h), and their count.
  uint64_t live_sum = 0;
  uint64_t live_records = 0;
};

// The replicated state of a node, as the engine needs it.
class ReplicaStore {
 public:
  virtual ~ReplicaStore() = default;
  // The streams (registry IDs) this node replicates, sorted.
  virtual std::vector<std::string> Streams() = 0;
  // What the local log holds of a stream (its own changes included).
  virtual absl::StatusOr<VersionVector> Position(const std::string& stream) = 0;
  // Batches of one origin epoch of a stream with first_seq > after_seq, in order, up to
  // max_batches (at least one if any exists).
  virtual absl::StatusOr<std::vector<interco::replication::v1::Batch>> ReadBatches(
      const std::string& stream, OriginKey key, uint64_t after_seq, size_t max_batches) = 0;
  // Applies the next batch of its origin (first_seq = position + 1, prev_hash = last
  // hash, both checked by the caller): merges every change into the records, appends the
  // batch to the log, advances the position. All or nothing; durable when OK.
  virtual absl::Status ApplyBatch(const std::string& stream, const DecodedBatch& batch) = 0;
  // Durably records proof that an origin forked its chain. From then on the origin is
  // frozen: FrozenOrigins() names it, across restarts, until an administrator clears it.
  virtual absl::Status RecordFork(const interco::replication::v1::ForkEvidence& evidence) = 0;
  // Origins frozen by a recorded fork, sorted.
  virtual std::vector<uint32_t> FrozenOrigins() = 0;
  // Whether a verified batch may enter `stream` under its registry's policy (see
  // replication::AuthorizeBatch): OK; PERMISSION_DENIED, refused; UNAVAILABLE, the policy
  // version it was written under is not applied here yet (it is held back, and taken
  // when sent again). Default: OK.
  virtual absl::Status Authorize(const std::string& /*stream*/, const DecodedBatch& /*batch*/) {
    return absl::OkStatus();
  }
  // Whether `node`'s authority may read `stream` now. Default: yes.
  virtual bool MayRead(const std::string& /*stream*/, uint32_t /*node*/) { return true; }
  // Whether `node` may be sent a batch of `stream` written under `policy_version`
  // (replication::PolicyHistory::MayReadBatch). Default: MayRead.
  virtual bool MayReadBatch(const std::string& stream, uint32_t node, uint64_t /*policy_version*/) {
    return MayRead(stream, node);
  }
  // The SIREN of the stream's owner, whose batches carry policy changes: sent first. 0 if
  // none. Default: 0.
  virtual uint32_t OwnerOf(const std::string& /*stream*/) { return 0; }
  // On the stream's owner, asked now and then with a CollectionPlan
  // (replication/collection.h): if there is something to collect — the registry may be
  // collected, its policy names no writer beyond the plan's members (it may have changed
  // since) and some tombstone set by a change at or below the frontier remains; or some
  // journal entry is stamped below the plan's journal_before — commits a collection of
  // what there is (a change of this node's chain, collected here at once) and returns
  // true. Also for compaction of the change log (CollectionPlan::compaction_changes).
  // Default: false (nothing collected).
  virtual absl::StatusOr<bool> Collect(const std::string& /*stream*/,
                                       const CollectionPlan& /*plan*/) {
    return false;
  }
  // What the collections applied here left out of `stream` (replication/exclusion.h).
  // Default: nothing.
  virtual Exclusions ExclusionsOf(const std::string& /*stream*/) { return {}; }
  // This node's origin epoch in `stream` now, if the store keeps it (0:
  // ReplicatorOptions::epoch). It grows in every stream when the node was restored from
  // a backup, and in one when a collection left the node out of it (its chain there then
  // ends where the collection cut it: replication/exclusion.h). Default: 0.
  virtual uint32_t OriginEpoch(const std::string& /*stream*/) { return 0; }
  // Nodes known to replicate `stream` whether or not they have been heard of (their
  // reports are awaited before anything is stable; see replication/stability.h): the
  // owner, and the writers any version of its policy lists. Default: the owner, if any.
  virtual std::vector<uint32_t> Members(const std::string& stream) {
    const uint32_t owner = OwnerOf(stream);
    return owner == 0 ? std::vector<uint32_t>{} : std::vector<uint32_t>{owner};
  }
  // The stream's position and the digest sum and count of its live records, read from one
  // committed state, for divergence checks (docs/REPLICATION.md). UNAVAILABLE while the
  // state is not one that its position gives (a replay under way). Default: UNIMPLEMENTED
  // (no checks).
  virtual absl::StatusOr<StateDigest> Digest(const std::string& /*stream*/) {
    return absl::UnimplementedError("no digests");
  }
  // `peer`'s digest of `stream` showed the same position as this node's and another
  // state: one of the copies went wrong outside the change logs (a store damaged or put
  // back, values merged by a repair, changes hidden by a relay). Must not block.
  // Default: nothing.
  virtual void OnDiverged(uint32_t /*peer*/, const std::string& /*stream*/) {}
  // A batch of `stream` from `peer` was refused: malformed (`header` may then be null),
  // not verified, of a frozen origin, or proof of a fork. For the audit log; must not
  // block. Default: nothing.
  virtual void OnRefused(uint32_t /*peer*/, const std::string& /*stream*/,
                         const interco::replication::v1::BatchHeader* /*header*/,
                         const absl::Status& /*why*/) {}
};

}  // namespace interco::replication

#endif  // INTERCO_REPLICATION_ENV_H_
