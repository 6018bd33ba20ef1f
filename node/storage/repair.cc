// RecordStore: what range-fingerprint repair reads and writes (replication/repair.h,
// docs/REPLICATION.md, "Repair"). The bucket sums themselves are kept by StageRecord.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "node/storage/keys.h"
#include "node/storage/record_store.h"
#include "node/storage/record_store_internal.h"
#include "node/storage/rocksdb_store.h"
#include "replication/base/limits.h"
#include "replication/base/status_macros.h"
#include "replication/base/strings.h"
#include "replication/repair.h"

namespace interco::node {

using interco::internal::v1::NodeMeta;
using interco::internal::v1::RegistryMeta;
using replication::RecordState;

absl::StatusOr<std::map<uint32_t, uint64_t>> RecordStore::ReadFingerprints(
    std::string_view registry, const rocksdb::Snapshot* snapshot) {
  std::map<uint32_t, uint64_t> out;
  const std::string prefix = keys::RegistryPrefix(registry);
  std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(Cf::kFingerprints, snapshot);
  for (it->Seek(ToSlice(prefix)); it->Valid() && ToView(it->key()).starts_with(prefix);
       it->Next()) {
    std::optional<uint32_t> bucket = keys::ParseFingerprint(ToView(it->key()), registry);
    if (!bucket || it->value().size() != 8) {
      return absl::DataLossError(absl::StrCat("malformed fingerprint entry in registry ", ToAbsl(registry)));
    }
    const uint64_t sum = keys::GetBigEndian64(ToView(it->value()));
    if (sum != 0) out[*bucket] = sum;
  }
  INTERCO_RETURN_IF_ERROR(FromRocksStatus(it->status(), "reading fingerprints"));
  return out;
}

absl::Status RecordStore::ScanBuckets(
    std::string_view registry, const rocksdb::Snapshot* snapshot,
    const std::function<bool(uint32_t)>& wanted,
    const std::function<void(uint32_t bucket, std::string_view id, std::string_view bytes,
                             RecordState& state)>& fn) {
  const std::string prefix = keys::RegistryPrefix(registry);
  std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(Cf::kRecords, snapshot);
  for (it->Seek(ToSlice(prefix)); it->Valid() && ToView(it->key()).starts_with(prefix);
       it->Next()) {
    const std::string_view id = ToView(it->key()).substr(prefix.size());
    const uint32_t bucket = replication::FingerprintBucket(hasher_, id);
    if (!wanted(bucket)) continue;
    RecordState state;
    INTERCO_RETURN_IF_ERROR(ParseStored(ToView(it->value()), state, "record"));
    if (replication::IsLive(state)) fn(bucket, id, ToView(it->value()), state);
  }
  return FromRocksStatus(it->status(), "reading records");
}

absl::StatusOr<std::map<uint32_t, uint64_t>> RecordStore::FingerprintBuckets(
    std::string_view registry) {
  INTERCO_RETURN_IF_ERROR(CheckReadable(registry));
  return ReadFingerprints(registry, nullptr);
}

absl::StatusOr<std::vector<std::vector<uint64_t>>> RecordStore::BucketDigests(
    std::string_view registry, const std::vector<uint32_t>& buckets, size_t max_bytes) {
  INTERCO_RETURN_IF_ERROR(CheckReadable(registry));
  std::vector<std::pair<uint32_t, uint64_t>> found;  // (bucket, digest)
  INTERCO_RETURN_IF_ERROR(ScanBuckets(
      registry, nullptr,
      [&](uint32_t b) { return std::binary_search(buckets.begin(), buckets.end(), b); },
      [&](uint32_t bucket, std::string_view id, std::string_view bytes, RecordState&) {
        found.emplace_back(bucket, replication::FingerprintDigest(hasher_, id, bytes));
      }));
  std::sort(found.begin(), found.end());
  std::vector<std::vector<uint64_t>> out;
  size_t bytes = 0;
  auto it = found.begin();
  for (uint32_t bucket : buckets) {
    std::vector<uint64_t> digests;
    for (; it != found.end() && it->first == bucket; ++it) digests.push_back(it->second);
    bytes += 8 * digests.size();
    if (!out.empty() && bytes > max_bytes) break;
    out.push_back(std::move(digests));
  }
  return out;
}

absl::StatusOr<std::vector<RecordStore::BucketRecord>> RecordStore::BucketRecords(
    std::string_view registry, const std::vector<uint32_t>& buckets,
    const std::vector<uint64_t>& digests, size_t max_state_bytes) {
  INTERCO_RETURN_IF_ERROR(CheckReadable(registry));
  size_t state_bytes = 0;
  std::vector<uint64_t> sorted_digests = digests;
  std::sort(sorted_digests.begin(), sorted_digests.end());
  std::vector<BucketRecord> out;
  INTERCO_RETURN_IF_ERROR(ScanBuckets(
      registry, nullptr,
      [&](uint32_t b) { return std::binary_search(buckets.begin(), buckets.end(), b); },
      [&](uint32_t bucket, std::string_view id, std::string_view bytes, RecordState& state) {
        const uint64_t digest = replication::FingerprintDigest(hasher_, id, bytes);
        if (!digests.empty() &&
            !std::binary_search(sorted_digests.begin(), sorted_digests.end(), digest)) {
          return;
        }
        BucketRecord r{bucket, digest, std::string(id), std::nullopt};
        if (!digests.empty() && state_bytes < max_state_bytes) {
          r.state = std::move(state);
          state_bytes += bytes.size();
        }
        out.push_back(std::move(r));
      }));
  return out;
}

absl::StatusOr<RecordStore::LiveScan> RecordStore::ScanLive(std::string_view registry,
                                                            std::string_view start_after,
                                                            size_t max_bytes) {
  INTERCO_RETURN_IF_ERROR(CheckReadable(registry));
  const std::string prefix = keys::RegistryPrefix(registry);
  LiveScan out;
  size_t bytes = 0;
  std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(Cf::kRecords);
  it->Seek(ToSlice(keys::Record(registry, start_after)));
  for (; it->Valid() && ToView(it->key()).starts_with(prefix); it->Next()) {
    const std::string_view id = ToView(it->key()).substr(prefix.size());
    if (!start_after.empty() && id == start_after) continue;
    if (!out.records.empty() && bytes >= max_bytes) {
      out.resume = out.records.back().first;
      break;
    }
    RecordState state;
    INTERCO_RETURN_IF_ERROR(ParseStored(ToView(it->value()), state, "record"));
    if (!replication::IsLive(state)) continue;
    bytes += id.size() + it->value().size();
    out.records.emplace_back(std::string(id), std::move(state));
  }
  INTERCO_RETURN_IF_ERROR(FromRocksStatus(it->status(), "reading records"));
  return out;
}

absl::StatusOr<std::shared_ptr<const replication::PolicyHistory>> RecordStore::Policies(
    std::string_view registry) {
  std::shared_ptr<const replication::PolicyHistory> policies = PolicyOf(registry);
  if (policies == nullptr) {
    return absl::NotFoundError(absl::StrCat("registry ", ToAbsl(registry), " not found"));
  }
  return policies;
}

absl::StatusOr<uint64_t> RecordStore::Repair(
    std::string_view registry, uint32_t peer, uint64_t peer_policy_version,
    std::vector<std::pair<std::string, RecordState>> states, const replication::Principal& caller) {
  auto op = std::make_unique<Op>();
  op->type = Op::Type::kRepair;
  op->registry = std::string(registry);
  op->peer = peer;
  op->peer_policy_version = peer_policy_version;
  op->caller = caller;
  op->repaired = std::move(states);
  uint64_t changed = 0;
  INTERCO_RETURN_IF_ERROR(
      EnqueueAndWait(std::move(op), [&](Op& done) { changed = done.repaired_changed; }));
  return changed;
}

absl::Status RecordStore::ApplyRepair(Op& op, GroupState& g) {
  INTERCO_ASSIGN_OR_RETURN(RegistryRuntime * staged, Staged(g, op.registry));
  RegistryRuntime& rt = *staged;
  // A peer behind this node's collections may hold records collected here: merging its
  // states could bring them back.
  if (rt.policies->current_version() > op.peer_policy_version) {
    return absl::FailedPreconditionError(absl::StrCat(
        "registry ", op.registry, ": the peer ", replication::OriginToSiren(op.peer),
        " has applied policy version ", op.peer_policy_version, ", this node ",
        rt.policies->current_version(),
        " (policy changes and collections it has not applied yet); repair from it once it has "
        "caught up"));
  }
  // Every state checked before any is merged: a malformed one refuses them all.
  for (size_t i = 0; i < op.repaired.size(); ++i) {
    const auto& [id, state] = op.repaired[i];
    absl::Status s = replication::ValidateRecordId(id);
    if (s.ok()) s = replication::ValidateState(*rt.schema, state);
    if (s.ok() && state.ByteSizeLong() > limits::kRecordStateBytesMax) {
      s = absl::InvalidArgumentError(absl::StrCat("state: ", state.ByteSizeLong(),
                                                  " bytes, over the maximum of ",
                                                  limits::kRecordStateBytesMax));
    }
    if (s.ok()) {
      for (uint32_t origin : replication::StampOrigins(state)) {
        if (!rt.policies->MayHaveWritten(origin)) {
          s = absl::InvalidArgumentError(
              absl::StrCat("state: stamped by ", replication::OriginToSiren(origin),
                           ", which no version of the registry's policy lets write"));
          break;
        }
      }
    }
    if (!s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("records[", i, "] (", id, ") from ",
                       replication::OriginToSiren(op.peer), ": ", s.message()));
    }
  }
  // From here on a failure (a record that cannot be read) breaks the group.
  const replication::VersionVector purged = replication::FromDots(rt.meta.purged());
  absl::Status merged_all = [&]() -> absl::Status {
    for (auto& [id, state] : op.repaired) {
      const std::string key = keys::Record(op.registry, id);
      INTERCO_ASSIGN_OR_RETURN(RecordState current, StagedState(g, key));
      RecordState merged = current;
      if (!replication::MergeRecordState(merged, state)) continue;
      // Removed elements a collection took out here stay out.
      if (replication::DropPurgedRemovals(current, state, merged, purged) > 0 &&
          merged.SerializeAsString() == current.SerializeAsString()) {
        continue;
      }
      // A journal belongs to one life of a live record.
      if (replication::IsLive(current) &&
          (!replication::IsLive(merged) ||
           replication::LifeOf(merged.causal_length()) !=
               replication::LifeOf(current.causal_length()))) {
        INTERCO_RETURN_IF_ERROR(DropConflicts(rt, g, op.registry, key));
      }
      // Later local writes are stamped after everything merged.
      hlc_.AdvanceTo(replication::MaxStamp(merged));
      StageRecord(rt, g, op.registry, id, current, std::move(merged), nullptr);
      op.repaired_changed++;
    }
    return absl::OkStatus();
  }();
  if (!merged_all.ok()) {
    g.broken = merged_all;
    op.repaired_changed = 0;  // nothing of it is committed
  } else if (op.repaired_changed > 0 && !rt.meta.repaired()) {
    rt.meta.set_repaired(true);
    g.dirty.insert(op.registry);
  }
  return merged_all;
}

absl::StatusOr<std::map<uint32_t, uint64_t>> RecordStore::ComputeFingerprints(
    std::string_view registry, const rocksdb::Snapshot* snapshot) {
  std::map<uint32_t, uint64_t> sums;
  INTERCO_RETURN_IF_ERROR(ScanBuckets(
      registry, snapshot, [](uint32_t) { return true; },
      [&](uint32_t bucket, std::string_view id, std::string_view bytes, RecordState&) {
        sums[bucket] += replication::FingerprintDigest(hasher_, id, bytes);
      }));
  std::erase_if(sums, [](const auto& entry) { return entry.second == 0; });
  return sums;
}

absl::Status RecordStore::AddFingerprints(NodeMeta& meta) {
  rocksdb::WriteBatch wb;
  std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(Cf::kRegistries);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const std::string registry(ToView(it->key()));
    INTERCO_ASSIGN_OR_RETURN(auto sums, ComputeFingerprints(registry, nullptr));
    for (const auto& [bucket, sum] : sums) {
      wb.Put(db_->handle(Cf::kFingerprints), ToSlice(keys::Fingerprint(registry, bucket)),
             keys::EncodeSum(sum));
    }
  }
  INTERCO_RETURN_IF_ERROR(FromRocksStatus(it->status(), "reading registries"));
  meta.set_format_version(5);
  wb.Put(db_->handle(Cf::kMeta), ToSlice(keys::kNodeMeta), meta.SerializeAsString());
  return db_->Write(wb, /*sync=*/true);
}

absl::Status RecordStore::AddLiveSums(NodeMeta& meta) {
  rocksdb::WriteBatch wb;
  std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(Cf::kRegistries);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    const std::string registry(ToView(it->key()));
    RegistryMeta rm;
    INTERCO_RETURN_IF_ERROR(ParseStored(ToView(it->value()), rm, "registry metadata"));
    INTERCO_ASSIGN_OR_RETURN(auto sums, ReadFingerprints(registry, nullptr));
    uint64_t total = 0;
    for (const auto& [bucket, sum] : sums) total += sum;
    rm.set_live_sum(total);
    wb.Put(db_->handle(Cf::kRegistries), ToSlice(registry), rm.SerializeAsString());
  }
  INTERCO_RETURN_IF_ERROR(FromRocksStatus(it->status(), "reading registries"));
  meta.set_format_version(8);
  wb.Put(db_->handle(Cf::kMeta), ToSlice(keys::kNodeMeta), meta.SerializeAsString());
  return db_->Write(wb, /*sync=*/true);
}

}  // namespace interco::node
