#include "replication/change_log.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "replication/base/check.h"
#include "replication/base/limits.h"
#include "replication/base/status_macros.h"
#include "replication/base/strings.h"
#include "replication/hlc.h"
#include "replication/ids.h"
#include "replication/record_crdt.h"

namespace interco::replication {
namespace {

using interco::replication::v1::Batch;
using interco::replication::v1::BatchHeader;

}  // namespace

std::string BodyHash(const google::protobuf::RepeatedPtrField<std::string>& changes,
                     Hasher& hasher) {
  std::string digests;
  digests.reserve(32 * static_cast<size_t>(changes.size()));
  for (const std::string& c : changes) digests += hasher.Sha256(c);
  return hasher.Sha256(digests);
}

void CompactChange(interco::replication::v1::Change& change, uint32_t origin, uint64_t hlc) {
  if (!change.has_delta() || hlc == 0) return;
  change.set_hlc(hlc);
  auto* d = change.mutable_delta();
  if (d->cl_origin() == origin && d->cl_hlc() == hlc) {
    d->clear_cl_origin();
    d->clear_cl_hlc();
  }
  auto own = [&](auto& stamped) {
    if (stamped.origin() == origin) stamped.clear_origin();
    if (stamped.hlc() == hlc) stamped.clear_hlc();
  };
  for (auto& f : *d->mutable_fields()) {
    own(f);
    for (auto& e : *f.mutable_elements()) own(e);
    for (auto& c : *f.mutable_counter()) own(c);
  }
}

void ExpandChange(interco::replication::v1::Change& change, uint32_t origin) {
  if (!change.has_delta() || change.hlc() == 0) return;
  const uint64_t hlc = change.hlc();
  auto* d = change.mutable_delta();
  if (d->causal_length() > 0 && d->cl_origin() == 0 && d->cl_hlc() == 0) {
    d->set_cl_origin(origin);
    d->set_cl_hlc(hlc);
  }
  auto fill = [&](auto& stamped) {
    if (stamped.origin() == 0) stamped.set_origin(origin);
    if (stamped.hlc() == 0) stamped.set_hlc(hlc);
  };
  for (auto& f : *d->mutable_fields()) {
    fill(f);
    for (auto& e : *f.mutable_elements()) fill(e);
    for (auto& c : *f.mutable_counter()) fill(c);
  }
}

absl::StatusOr<Batch> BuildBatch(const BatchParams& params, std::vector<std::string> changes,
                                 Hasher& hasher, Signer* signer, std::string* header_hash) {
  INTERCO_CHECK(!changes.empty());
  Batch batch;
  for (std::string& c : changes) batch.add_changes(std::move(c));
  BatchHeader header;
  header.set_origin(params.origin);
  header.set_stream(params.stream);
  header.set_epoch(params.epoch);
  header.set_first_seq(params.first_seq);
  header.set_count(static_cast<uint32_t>(batch.changes_size()));
  header.set_max_hlc(params.max_hlc);
  header.set_prev_hash(params.prev_hash);
  header.set_body_hash(BodyHash(batch.changes(), hasher));
  header.set_policy_version(params.policy_version);
  header.set_run_index(params.run_index);
  header.set_carries_policy(params.carries_policy);
  batch.set_header(header.SerializeAsString());
  if (signer != nullptr) INTERCO_RETURN_IF_ERROR(SignBatch(batch, *signer, params.now_ms));
  if (header_hash != nullptr) *header_hash = hasher.Sha256(batch.header());
  return batch;
}

absl::Status SignBatch(Batch& batch, Signer& signer, int64_t now_ms) {
  BatchHeader h;
  if (!h.ParseFromString(batch.header())) return absl::DataLossError("batch header does not parse");
  const int64_t sealed_ms = static_cast<int64_t>(HybridLogicalClock::Millis(h.max_hlc()));
  const int64_t signed_at = std::max(now_ms, sealed_ms);
  std::string key_id = signer.KeyId();
  INTERCO_ASSIGN_OR_RETURN(std::string signature,
                           signer.Sign(key_id, SignedMessage(key_id, signed_at, batch.header())));
  batch.set_signer(std::move(key_id));
  batch.set_signed_at_ms(signed_at);
  batch.set_signature(std::move(signature));
  return absl::OkStatus();
}

std::string SignedMessage(std::string_view key_id, int64_t signed_at_ms, std::string_view header) {
  static constexpr std::string_view kLabel("interco.replication.v1.Batch\0", 29);
  std::string message;
  message.reserve(kLabel.size() + key_id.size() + 8 + header.size());
  message.append(kLabel);
  message.append(key_id);
  AppendBigEndian(message, static_cast<uint64_t>(signed_at_ms), 8);
  message.append(header);
  return message;
}

namespace {

absl::Status VerifySignature(const BatchHeader& h, std::string_view header, std::string_view signer,
                             std::string_view signature, int64_t signed_at_ms, Verifier& verifier) {
  if (signature.empty() || signer.empty()) return absl::UnauthenticatedError("batch is not signed");
  if (signed_at_ms < static_cast<int64_t>(HybridLogicalClock::Millis(h.max_hlc()))) {
    return absl::UnauthenticatedError("batch signed before the time of its changes");
  }
  return verifier.Verify(h.origin(), signer, signed_at_ms,
                         SignedMessage(signer, signed_at_ms, header), signature);
}

// Whether `next` continues `prev` in one origin's chain. DATA_LOSS saying why not.
absl::Status Continues(const BatchHeader& prev, std::string_view prev_hash, const BatchHeader& next) {
  if (next.origin() != prev.origin() || next.stream() != prev.stream() ||
      next.epoch() != prev.epoch()) {
    return absl::DataLossError("a run mixes origins, streams or epochs");
  }
  if (next.first_seq() != prev.first_seq() + prev.count()) {
    return absl::DataLossError(absl::StrCat("a run skips from sequence number ",
                                            prev.first_seq() + prev.count() - 1, " to ",
                                            next.first_seq()));
  }
  if (next.prev_hash() != prev_hash) {
    return absl::DataLossError(absl::StrCat("batch ", next.first_seq(),
                                            " does not chain to the batch before it"));
  }
  // An origin's clock never goes back: so the signed end's time bounds the whole run.
  if (next.max_hlc() < prev.max_hlc()) {
    return absl::DataLossError(absl::StrCat("batch ", next.first_seq(),
                                            " is stamped before the batch before it"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status VerifyBatch(const DecodedBatch& batch, Verifier& verifier) {
  return VerifySignature(batch.header, batch.raw.header(), batch.raw.signer(), batch.raw.signature(),
                         batch.raw.signed_at_ms(), verifier);
}

absl::Status CheckRun(const std::vector<DecodedBatch>& run) {
  if (run.empty()) return absl::DataLossError("an empty run of batches");
  if (run.size() > limits::kRunBatchesMax) {
    return absl::DataLossError(absl::StrCat("a run of ", run.size(), " batches (at most ",
                                            limits::kRunBatchesMax, ")"));
  }
  if (run.size() > 1 && run.back().raw.skip_from() > 0) {
    // A skip hides the headers before its own: none of the run could be proven.
    return absl::DataLossError("a skip ends a run of several batches");
  }
  for (size_t i = 0; i < run.size(); ++i) {
    const bool last = i + 1 == run.size();
    if (run[i].raw.signature().empty() == last) {
      return absl::DataLossError(last ? "a run does not end with a signed batch"
                                      : "a signed batch inside a run");
    }
    if (run[i].header.run_index() >= limits::kRunBatchesMax) {
      return absl::DataLossError(absl::StrCat("batch ", run[i].header.first_seq(), " claims ",
                                              run[i].header.run_index(),
                                              " unsigned batches before it"));
    }
    if (i > 0) {
      INTERCO_RETURN_IF_ERROR(Continues(run[i - 1].header, run[i - 1].header_hash, run[i].header));
      if (run[i].header.run_index() != run[i - 1].header.run_index() + 1) {
        // Its origin signed the batch before it: that signature was stripped.
        return absl::DataLossError(absl::StrCat("batch ", run[i - 1].header.first_seq(),
                                                " arrives unsigned, but its origin signed it"));
      }
    }
  }
  return absl::OkStatus();
}

interco::replication::v1::ChainProof ProofOf(const DecodedBatch& batch) {
  interco::replication::v1::ChainProof proof;
  if (batch.run == nullptr || !batch.raw.signature().empty()) return proof;
  for (size_t i = batch.run_position + 1; i < batch.run->size(); ++i) {
    *proof.add_following() = (*batch.run)[i];
  }
  return proof;
}

absl::Status VerifyCovered(std::string_view header, const std::vector<std::string>& following,
                           std::string_view signer, std::string_view signature,
                           int64_t signed_at_ms, Hasher& hasher, Verifier& verifier) {
  BatchHeader prev;
  if (!prev.ParseFromArray(header.data(), static_cast<int>(header.size()))) {
    return absl::DataLossError("batch header does not parse");
  }
  if (following.size() > limits::kRunBatchesMax) {
    return absl::DataLossError("a chain proof longer than a run");
  }
  std::string prev_hash = hasher.Sha256(header);
  std::string_view last = header;
  for (const std::string& next_bytes : following) {
    BatchHeader next;
    if (!next.ParseFromString(next_bytes)) return absl::DataLossError("a proof header does not parse");
    INTERCO_RETURN_IF_ERROR(Continues(prev, prev_hash, next));
    prev = std::move(next);
    prev_hash = hasher.Sha256(next_bytes);
    last = next_bytes;
  }
  return VerifySignature(prev, last, signer, signature, signed_at_ms, verifier);
}

uint64_t ChangeStamp(const interco::replication::v1::Change& change) {
  if (change.has_policy()) return change.policy().version();
  // A change in full form may leave its own stamp to its delta's.
  return change.hlc() != 0 ? change.hlc() : MaxStamp(change.delta());
}

absl::StatusOr<DecodedBatch> DecodeBatch(const Batch& batch, Hasher& hasher) {
  DecodedBatch out;
  if (!out.header.ParseFromString(batch.header())) {
    return absl::DataLossError("batch header does not parse");
  }
  const BatchHeader& h = out.header;
  if (!ValidateSiren(OriginToSiren(h.origin())).ok()) {
    return absl::DataLossError(absl::StrCat("batch origin ", h.origin(), " is not a SIREN"));
  }
  if (!ValidateRegistryId(h.stream()).ok()) {
    return absl::DataLossError("batch stream is not a registry ID");
  }
  if (h.first_seq() == 0 || h.count() == 0 ||
      (batch.hollow() ? batch.changes_size() != 0
                      : h.count() != static_cast<uint32_t>(batch.changes_size()))) {
    return absl::DataLossError(absl::StrCat("batch header says ", h.count(), " changes from ",
                                            h.first_seq(), ", body has ", batch.changes_size(),
                                            batch.hollow() ? " (hollow)" : ""));
  }
  if (h.prev_hash().size() != 0 && h.prev_hash().size() != 32) {
    return absl::DataLossError("batch prev_hash is not a SHA-256 digest");
  }
  if (batch.hollow() && h.carries_policy()) {
    return absl::DataLossError("a batch carrying a policy change arrives hollow");
  }
  if (batch.skip_from() > 0 &&
      (!batch.hollow() || batch.signature().empty() || batch.skip_from() >= h.first_seq())) {
    return absl::DataLossError(absl::StrCat(
        "batch ", h.first_seq(), " stands for batches from ", batch.skip_from(),
        ": only a hollow signed batch may, and only for batches before it"));
  }
  if (batch.signer().size() != (batch.signature().empty() ? 0 : 32)) {
    return absl::DataLossError("batch signer is not the digest of a certificate");
  }
  if (!batch.hollow() && BodyHash(batch.changes(), hasher) != h.body_hash()) {
    return absl::DataLossError("batch body does not match its header's body hash");
  }
  out.changes.resize(static_cast<size_t>(batch.changes_size()));
  for (int i = 0; i < batch.changes_size(); ++i) {
    auto& c = out.changes[static_cast<size_t>(i)];
    if (!c.ParseFromString(batch.changes(i))) {
      return absl::DataLossError(absl::StrCat("batch change ", i, " does not parse"));
    }
    ExpandChange(c, h.origin());
    if (c.has_policy() ? !c.key().empty() || c.has_delta() : !ValidateRecordId(c.key()).ok()) {
      return absl::DataLossError(absl::StrCat("batch change ", i, " is neither a record change ",
                                              "nor a policy change"));
    }
    // An origin's clock never goes back: its changes' stamps grow along its chain (what a
    // collection relies on to tell by its stamp whether an add is under its frontier).
    const uint64_t stamp = ChangeStamp(c);
    if (stamp > h.max_hlc() ||
        (i > 0 && stamp <= ChangeStamp(out.changes[static_cast<size_t>(i - 1)]))) {
      return absl::DataLossError(absl::StrCat("batch change ", i, " is stamped ", stamp,
                                              ": not after the change before it, or after the "
                                              "batch's greatest stamp ", h.max_hlc()));
    }
  }
  // A batch marked as carrying a policy change carries one (batches written before the
  // mark existed may carry one unmarked).
  if (h.carries_policy() && !batch.hollow() &&
      std::none_of(out.changes.begin(), out.changes.end(),
                   [](const interco::replication::v1::Change& c) { return c.has_policy(); })) {
    return absl::DataLossError("a batch marked as carrying a policy change carries none");
  }
  out.raw = batch;
  out.header_hash = hasher.Sha256(batch.header());
  return out;
}

interco::replication::v1::Batch Hollow(const interco::replication::v1::Batch& batch) {
  interco::replication::v1::Batch out;
  out.set_header(batch.header());
  out.set_signature(batch.signature());
  out.set_signer(batch.signer());
  out.set_signed_at_ms(batch.signed_at_ms());
  out.set_hollow(true);
  return out;
}

bool Follows(const DecodedBatch& batch, uint64_t held_seq) {
  if (batch.raw.skip_from() == 0) return batch.header.first_seq() == held_seq + 1;
  return batch.first_seq() <= held_seq + 1 && batch.last_seq() > held_seq;
}

bool ChainsFrom(const DecodedBatch& batch, uint64_t held_seq) {
  return batch.header.first_seq() == held_seq + 1;
}

std::optional<size_t> HollowStretchEnd(
    const std::vector<interco::replication::v1::Batch>& batches, size_t from,
    const std::function<bool(const BatchHeader&)>& may_send) {
  std::optional<size_t> last;
  uint64_t expect = 0;
  for (size_t j = from; j < batches.size(); ++j) {
    const interco::replication::v1::Batch& b = batches[j];
    BatchHeader h;
    if (!b.hollow() || !h.ParseFromString(b.header())) break;
    // A stretch starts where a run starts (or with a skip, which did): a batch kept
    // before it in its run needs its header as proof.
    if (j == from && b.skip_from() == 0 && h.run_index() != 0) break;
    if (j > from &&
        ((b.skip_from() > 0 ? b.skip_from() : h.first_seq()) != expect || !may_send(h))) {
      break;
    }
    expect = h.first_seq() + h.count();
    if (!b.signature().empty()) last = j;
  }
  return last;
}

std::vector<std::pair<size_t, size_t>> FoldableStretches(
    const std::vector<interco::replication::v1::Batch>& batches) {
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t i = 0; i < batches.size(); ++i) {
    if (!batches[i].hollow()) continue;
    const std::optional<size_t> last =
        HollowStretchEnd(batches, i, [](const BatchHeader&) { return true; });
    if (!last || *last == i) continue;
    out.emplace_back(i, *last);
    i = *last;
  }
  return out;
}

std::optional<uint64_t> EntryFirstSeq(const interco::replication::v1::Batch& batch) {
  if (batch.skip_from() > 0) return batch.skip_from();
  BatchHeader h;
  if (!h.ParseFromString(batch.header())) return std::nullopt;
  return h.first_seq();
}

interco::replication::v1::Batch Skip(const interco::replication::v1::Batch& last,
                                     uint64_t skip_from) {
  interco::replication::v1::Batch out = Hollow(last);
  BatchHeader h;
  if (h.ParseFromString(last.header()) && skip_from < h.first_seq()) out.set_skip_from(skip_from);
  return out;
}

}  // namespace interco::replication
