#include "replication/change_log.h"

#include "absl/strings/str_cat.h"
#include "replication/base/check.h"
#include "replication/hlc.h"
#include "replication/ids.h"

namespace interco::replication {
namespace {

using interco::replication::v1::Batch;
using interco::replication::v1::BatchHeader;

std::string BodyHash(const google::protobuf::RepeatedPtrField<std::string>& changes,
                     Hasher& hasher) {
  std::string digests;
  digests.reserve(32 * static_cast<size_t>(changes.size()));
  for (const std::string& c : changes) digests += hasher.Sha256(c);
  return hasher.Sha256(digests);
}

}  // namespace

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
  if (signer != nullptr) header.set_signer(signer->KeyId());
  batch.set_header(header.SerializeAsString());
  if (signer != nullptr) {
    absl::StatusOr<std::string> signature =
        signer->Sign(header.signer(), SignedMessage(batch.header()));
    if (!signature.ok()) return signature.status();
    batch.set_signature(*std::move(signature));
  }
  if (header_hash != nullptr) *header_hash = hasher.Sha256(batch.header());
  return batch;
}

std::string SignedMessage(std::string_view header) {
  static constexpr std::string_view kLabel("interco.replication.v1.Batch\0", 29);
  std::string message;
  message.reserve(kLabel.size() + header.size());
  message.append(kLabel);
  message.append(header);
  return message;
}

absl::Status VerifyBatch(const DecodedBatch& batch, Verifier& verifier) {
  if (batch.raw.signature().empty() || batch.header.signer().empty()) {
    return absl::UnauthenticatedError("batch is not signed");
  }
  const int64_t at = static_cast<int64_t>(HybridLogicalClock::Millis(batch.header.max_hlc()));
  return verifier.Verify(batch.header.origin(), batch.header.signer(), at,
                         SignedMessage(batch.raw.header()), batch.raw.signature());
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
      h.count() != static_cast<uint32_t>(batch.changes_size())) {
    return absl::DataLossError(absl::StrCat("batch header says ", h.count(), " changes from ",
                                            h.first_seq(), ", body has ", batch.changes_size()));
  }
  if (h.prev_hash().size() != 0 && h.prev_hash().size() != 32) {
    return absl::DataLossError("batch prev_hash is not a SHA-256 digest");
  }
  if (h.signer().size() != 0 && h.signer().size() != 32) {
    return absl::DataLossError("batch signer is not a certificate digest");
  }
  if (BodyHash(batch.changes(), hasher) != h.body_hash()) {
    return absl::DataLossError("batch body does not match its header's body hash");
  }
  out.changes.resize(static_cast<size_t>(batch.changes_size()));
  for (int i = 0; i < batch.changes_size(); ++i) {
    auto& c = out.changes[static_cast<size_t>(i)];
    if (!c.ParseFromString(batch.changes(i))) {
      return absl::DataLossError(absl::StrCat("batch change ", i, " does not parse"));
    }
    if (c.has_policy() ? !c.key().empty() || c.has_delta() : !ValidateRecordId(c.key()).ok()) {
      return absl::DataLossError(absl::StrCat("batch change ", i, " is neither a record change ",
                                              "nor a policy change"));
    }
  }
  out.raw = batch;
  out.header_hash = hasher.Sha256(batch.header());
  return out;
}

}  // namespace interco::replication
