// The change-log batch format: building an origin's batch, and decoding and checking a
// received one. See docs/ARCHITECTURE.md, "Change log". Pure functions; thread-safe if
// the Hasher is.
#ifndef INTERCO_REPLICATION_CHANGE_LOG_H_
#define INTERCO_REPLICATION_CHANGE_LOG_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "interco/replication/v1/state.pb.h"
#include "replication/env.h"

namespace interco::replication {

struct BatchParams {
  uint32_t origin = 0;
  uint32_t epoch = 0;
  std::string stream;
  // Sequence number of the first change.
  uint64_t first_seq = 1;
  // Hash of the origin's previous header in this stream and epoch ("" for the first).
  std::string prev_hash;
  // Greatest HLC of the changes.
  uint64_t max_hlc = 0;
  // Version of the registry policy the origin had applied (BatchHeader.policy_version).
  uint64_t policy_version = 0;
  // Unsigned batches right before this one (BatchHeader.run_index).
  uint32_t run_index = 0;
  // Some change of the batch is a policy change (BatchHeader.carries_policy).
  bool carries_policy = false;
  // Wall clock when a signer signs it (see SignBatch).
  int64_t now_ms = 0;
};

// The form in which an origin logs and sends a record change made at `hlc`: the stamp
// once (Change.hlc) and, in the delta, no origin that is `origin` nor HLC that is `hlc`
// (see interco.replication.v1.Change.hlc). ExpandChange restores the full delta.
void CompactChange(interco::replication::v1::Change& change, uint32_t origin, uint64_t hlc);
// Fills in what CompactChange left out, for a change of a batch of `origin`.
void ExpandChange(interco::replication::v1::Change& change, uint32_t origin);

// A change's stamp: its HLC (or, if unset, its delta's greatest stamp), or its version for
// a policy change. DecodeBatch checks that they grow along the batch, up to the header's
// max_hlc.
uint64_t ChangeStamp(const interco::replication::v1::Change& change);

// BatchHeader.body_hash of a batch holding `changes`: SHA-256 over the concatenated
// SHA-256 of each change's bytes.
std::string BodyHash(const google::protobuf::RepeatedPtrField<std::string>& changes,
                     Hasher& hasher);

// Builds a batch of serialized Change messages (at least one), signed by `signer`, or
// unsigned if `signer` is null: an unsigned batch is covered by the next signed batch of
// its chain (see SignBatch) and is only sent together with it. Also returns the hash of
// its header, which the next batch chains to. The signer's error if it cannot sign.
absl::StatusOr<interco::replication::v1::Batch> BuildBatch(const BatchParams& params,
                                                           std::vector<std::string> changes,
                                                           Hasher& hasher, Signer* signer,
                                                           std::string* header_hash);

// Signs `batch` (header unchanged) with the signer's current key at wall-clock time
// `now_ms`: sets its signer, signing time (never before the wall-clock part of the
// header's max_hlc) and signature. The signer's error if it cannot sign.
absl::Status SignBatch(interco::replication::v1::Batch& batch, Signer& signer, int64_t now_ms);

// The bytes an origin signs for a batch header: a domain label, a zero byte, the key ID
// of the signing certificate, the signing time (8 bytes, big endian), the header.
std::string SignedMessage(std::string_view key_id, int64_t signed_at_ms, std::string_view header);

// Checks a decoded batch's signature (see Verifier::Verify) at its signing time, which
// must not precede the wall-clock part of its greatest HLC. UNAUTHENTICATED for an
// unsigned batch, or one signed before it was sealed.
absl::Status VerifyBatch(const DecodedBatch& batch, Verifier& verifier);

// Checks the shape of a run of decoded batches as a BatchFrame carries it: at most
// limits::kRunBatchesMax batches of one origin epoch and stream, consecutive, each
// chained to the one before (prev_hash), all unsigned but the last, which is signed, and
// each counting one more unsigned predecessor (run_index) than the one before it — so a
// batch that its origin signed cannot arrive stripped of its signature.
// DATA_LOSS with what is wrong. The caller then verifies the last one's signature, which
// covers them all.
absl::Status CheckRun(const std::vector<DecodedBatch>& run);

// The proof of a batch that arrived unsigned: the rest of the run it arrived in (empty if
// it was signed).
interco::replication::v1::ChainProof ProofOf(const DecodedBatch& batch);

// Proves the batch whose header bytes are `header` through its chain: `following` are
// the headers of the batches after it, up to the signed one (empty if the batch itself
// is signed); `signer`, `signature` and `signed_at_ms` are that signed batch's. OK if
// every header continues the one before (same origin, stream and epoch; next sequence
// numbers; prev_hash = SHA-256 of the previous header) and the signature verifies
// (VerifyBatch). DATA_LOSS for a broken chain; the verifier's error for the signature.
absl::Status VerifyCovered(std::string_view header, const std::vector<std::string>& following,
                           std::string_view signer, std::string_view signature,
                           int64_t signed_at_ms, Hasher& hasher, Verifier& verifier);

// Parses and checks a batch: the header parses, names a valid origin and stream, has a
// count matching the changes, every change parses (a record change names a valid
// record ID; a policy change has no key and no delta), and the body hash matches. A
// hollow batch (Batch.hollow) has no changes, and nothing to match its body hash; one
// whose header says it carries a policy change is corrupt, and so is a skip
// (Batch.skip_from) that is not a hollow signed batch or stands for none before it.
// DATA_LOSS for a corrupt or forged batch (with what is wrong).
absl::StatusOr<DecodedBatch> DecodeBatch(const interco::replication::v1::Batch& batch,
                                         Hasher& hasher);

// The hollow form of `batch` (replication/compaction.h): its header, signature, signer
// and signing time, no changes, Batch.hollow set.
interco::replication::v1::Batch Hollow(const interco::replication::v1::Batch& batch);

// Whether `batch` is the next of its origin epoch for a node holding that chain up to
// `held_seq`: it starts right after, or it is a skip (Batch.skip_from) that stands for the
// batch right after and goes beyond it (the receiver moves over the rest of the stretch).
bool Follows(const DecodedBatch& batch, uint64_t held_seq);

// Where a skip may end that stands for the hollow batches of `batches` (one origin
// epoch's, read from a log in order) from index `from` on: the index of the last signed
// batch (a run ends there) of the stretch of consecutive hollow batches that starts at
// `from`, if there is one. The stretch must start where a run starts (run_index 0, or a
// skip read from the log), so that no batch kept before it needs one of its headers as
// proof. A batch `may_send` refuses ends the stretch (the batch at `from` is the
// caller's to judge).
std::optional<size_t> HollowStretchEnd(
    const std::vector<interco::replication::v1::Batch>& batches, size_t from,
    const std::function<bool(const interco::replication::v1::BatchHeader&)>& may_send);

// Where compaction may rewrite a stored log in place (docs/REPLICATION.md, "Skips"): the
// stretches of `batches` (one origin epoch's log entries, consecutive, in order) that each
// become one skip, as [first, last] index pairs: every HollowStretchEnd of more than one
// entry, taken from the first entry on, each stretch starting after the one before ends.
// A skip among them (read from the log, or made by an earlier rewrite) starts or extends a
// stretch like any hollow batch.
std::vector<std::pair<size_t, size_t>> FoldableStretches(
    const std::vector<interco::replication::v1::Batch>& batches);

// The first sequence number a log entry stands for: its skip_from for a skip, else its
// header's first_seq (nullopt if the header does not parse).
std::optional<uint64_t> EntryFirstSeq(const interco::replication::v1::Batch& batch);

// Whether `batch`'s header is the next one of its chain for a node holding it up to
// `held_seq`, so that its prev_hash must be the hash of the node's last header: always
// but for a skip whose header comes after batches it stands for.
bool ChainsFrom(const DecodedBatch& batch, uint64_t held_seq);

// The skip (Batch.skip_from) that stands for the hollow batches of an origin epoch from
// sequence number `skip_from` through `last`, a hollow signed batch that ends a run: the
// hollow form of `last` with skip_from set (not set if skip_from is `last`'s own
// first_seq or after it: then it stands for itself only).
interco::replication::v1::Batch Skip(const interco::replication::v1::Batch& last,
                                     uint64_t skip_from);

}  // namespace interco::replication

#endif  // INTERCO_REPLICATION_CHANGE_LOG_H_
