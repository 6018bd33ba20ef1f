#include "node/peer/reconcile.h"

#include <grpcpp/client_context.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "node/crypto/sha256.h"
#include "node/tls/credentials.h"
#include "replication/base/limits.h"
#include "replication/base/status_macros.h"
#include "replication/base/strings.h"
#include "replication/hlc.h"
#include "replication/record_crdt.h"
#include "replication/repair.h"

namespace interco::node {
namespace {

using interco::replication::v1::ReconcileRequest;
using interco::replication::v1::ReconcileResponse;
using interco::replication::v1::RepairRecord;
using replication::RecordState;

// gRPC's length prefix of every message.
constexpr uint64_t kGrpcPrefixBytes = 5;
// States merged in one commit: well within a commit group (limits::kCommitGroupBytesMax).
constexpr size_t kMergeRecordsMax = 1024;
constexpr size_t kMergeBytesMax = 1 << 20;
// Attempts of a commit that the full commit queue turned away.
constexpr int kMergeAttempts = 5;

std::vector<uint32_t> ToVector(const google::protobuf::RepeatedField<uint32_t>& r) {
  return std::vector<uint32_t>(r.begin(), r.end());
}

absl::Status ServeTree(RecordStore& store, const std::string& registry,
                       const interco::replication::v1::TreeQuery& q, ReconcileResponse& out) {
  INTERCO_ASSIGN_OR_RETURN(auto buckets, store.FingerprintBuckets(registry));
  const replication::FingerprintTree tree(buckets);
  absl::StatusOr<std::vector<uint64_t>> sums = tree.ChildSums(q.level(), ToVector(q.nodes()));
  if (!sums.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("tree.", sums.status().message()));
  }
  out.mutable_sums()->Assign(sums->begin(), sums->end());
  return absl::OkStatus();
}

absl::Status ServeBuckets(RecordStore& store, const std::string& registry,
                          const interco::replication::v1::BucketQuery& q, ReconcileResponse& out) {
  const std::vector<uint32_t> buckets = ToVector(q.buckets());
  INTERCO_RETURN_IF_ERROR(replication::ValidateTreeIndexes(replication::kFingerprintDepth, buckets,
                                                           replication::kFingerprintBuckets,
                                                           "buckets.buckets"));
  INTERCO_ASSIGN_OR_RETURN(
      std::vector<std::vector<uint64_t>> digests,
      store.BucketDigests(registry, buckets, limits::kReconcileResponseBytesMax));
  for (const std::vector<uint64_t>& list : digests) {
    out.add_buckets()->mutable_digests()->Assign(list.begin(), list.end());
  }
  return absl::OkStatus();
}

absl::Status ServeRecords(RecordStore& store, const std::string& registry,
                          const interco::replication::v1::RecordQuery& q, ReconcileResponse& out) {
  if (static_cast<size_t>(q.keys_size() + q.digests_size()) > limits::kReconcileRecordsMax) {
    return absl::InvalidArgumentError(absl::StrCat("records: ", q.keys_size() + q.digests_size(),
                                                   " records asked for, over the maximum of ",
                                                   limits::kReconcileRecordsMax));
  }
  for (int i = 0; i < q.keys_size(); ++i) {
    if (absl::Status s = replication::ValidateRecordId(q.keys(i)); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("records.keys[", i, "]: ", s.message()));
    }
  }
  const std::vector<uint32_t> buckets = ToVector(q.buckets());
  INTERCO_RETURN_IF_ERROR(replication::ValidateTreeIndexes(
      replication::kFingerprintDepth, buckets, limits::kReconcileBucketsMax, "records.buckets"));
  if (q.digests_size() > 0 && buckets.empty()) {
    return absl::InvalidArgumentError("records.buckets: digests asked for without their buckets");
  }
  size_t bytes = 0;
  std::set<std::string> sent;  // a record asked for by key and by digest goes once
  auto add = [&](std::string key, RecordState state) {
    sent.insert(key);
    RepairRecord* r = out.add_records();
    r->set_key(std::move(key));
    *r->mutable_state() = std::move(state);
    bytes += r->ByteSizeLong();
  };
  int next_key = 0;
  for (; next_key < q.keys_size() && bytes < limits::kReconcileResponseBytesMax; ++next_key) {
    INTERCO_ASSIGN_OR_RETURN(std::optional<RecordState> state,
                             store.StoredState(registry, q.keys(next_key)));
    if (state.has_value()) add(q.keys(next_key), *std::move(state));
  }
  for (; next_key < q.keys_size(); ++next_key) out.add_more_keys(q.keys(next_key));
  if (q.digests_size() == 0) return absl::OkStatus();
  // States are read only up to what the response may still carry (at least one).
  const size_t room = bytes < limits::kReconcileResponseBytesMax
                          ? limits::kReconcileResponseBytesMax - bytes
                          : 1;
  INTERCO_ASSIGN_OR_RETURN(
      std::vector<RecordStore::BucketRecord> found,
      store.BucketRecords(registry, buckets,
                          std::vector<uint64_t>(q.digests().begin(), q.digests().end()), room));
  for (RecordStore::BucketRecord& r : found) {
    if (!r.state.has_value()) {
      out.add_more_digests(r.digest);  // not sent for size: to be asked again
      continue;
    }
    if (!sent.contains(r.id)) add(std::move(r.id), *std::move(r.state));
  }
  // Digests gone meanwhile are simply not found.
  return absl::OkStatus();
}

absl::Status ServeScan(RecordStore& store, const std::string& registry,
                       const interco::replication::v1::ScanQuery& q, ReconcileResponse& out) {
  if (!q.start_after().empty()) {
    if (absl::Status s = replication::ValidateRecordId(q.start_after()); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("scan.start_after: ", s.message()));
    }
  }
  INTERCO_ASSIGN_OR_RETURN(RecordStore::LiveScan scan,
                           store.ScanLive(registry, q.start_after(), limits::kReconcileResponseBytesMax));
  for (auto& [id, state] : scan.records) {
    RepairRecord* r = out.add_records();
    r->set_key(std::move(id));
    *r->mutable_state() = std::move(state);
  }
  out.set_scan_resume(std::move(scan.resume));
  return absl::OkStatus();
}

// The repairing node's own store, as one side of the walk. Remembers which record each of
// its digests is, for what it must ask the peer about.
class LocalSide final : public replication::FingerprintSide {
 public:
  LocalSide(RecordStore& store, std::string registry, replication::FingerprintTree tree)
      : store_(store), registry_(std::move(registry)), tree_(std::move(tree)) {}

  absl::StatusOr<std::vector<uint64_t>> ChildSums(uint32_t level,
                                                  const std::vector<uint32_t>& nodes) override {
    return tree_.ChildSums(level, nodes);
  }
  absl::StatusOr<std::vector<std::vector<uint64_t>>> BucketDigests(
      const std::vector<uint32_t>& buckets) override {
    INTERCO_ASSIGN_OR_RETURN(std::vector<RecordStore::BucketRecord> records,
                             store_.BucketRecords(registry_, buckets, {}));
    std::map<uint32_t, std::vector<uint64_t>> by_bucket;
    for (RecordStore::BucketRecord& r : records) {
      by_bucket[r.bucket].push_back(r.digest);
      ids_[{r.bucket, r.digest}] = std::move(r.id);
    }
    std::vector<std::vector<uint64_t>> out;
    for (uint32_t b : buckets) out.push_back(std::move(by_bucket[b]));
    return out;
  }
  // The record of a digest this side listed; empty if unknown.
  std::string IdOf(uint32_t bucket, uint64_t digest) const {
    auto it = ids_.find({bucket, digest});
    return it == ids_.end() ? std::string() : it->second;
  }

 private:
  RecordStore& store_;
  const std::string registry_;
  const replication::FingerprintTree tree_;
  std::map<std::pair<uint32_t, uint64_t>, std::string> ids_;
};

// The peer, over PeerService.Reconcile; counts requests and bytes, checks that the node
// answering is the peer, and keeps the policy version it first stated.
class RemoteSide final : public replication::FingerprintSide {
 public:
  RemoteSide(interco::replication::v1::PeerService::StubInterface& stub,
             const RepairOptions& options, replication::Clock& clock)
      : stub_(stub),
        options_(options),
        clock_(clock),
        deadline_ms_(clock.MonotonicMillis() + options.deadline_ms),
        expected_(NodeSpiffeId(options.federation, replication::OriginToSiren(options.peer))) {}

  absl::StatusOr<ReconcileResponse> Call(ReconcileRequest request) {
    if (options_.cancel != nullptr && options_.cancel->load()) {
      return absl::UnavailableError("the repair was cancelled: the node is shutting down");
    }
    if (clock_.MonotonicMillis() > deadline_ms_) {
      return absl::DeadlineExceededError(absl::StrCat(
          "the repair took longer than ", options_.deadline_ms, " ms; run it again to go on"));
    }
    request.set_stream(options_.registry);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::milliseconds(options_.call_timeout_ms));
    ReconcileResponse response;
    grpc::Status s = stub_.Reconcile(&ctx, request, &response);
    rounds++;
    bytes_sent += request.ByteSizeLong() + kGrpcPrefixBytes;
    if (!s.ok()) {
      const auto code = static_cast<absl::StatusCode>(s.error_code());
      return absl::Status(code, absl::StrCat("the peer refused reconciliation: ", s.error_message()));
    }
    // The channel accepts any node of the federation: the answer counts only from the peer.
    if (!ServerIs(ctx, expected_)) {
      return absl::PermissionDeniedError(
          absl::StrCat("the node that answered is not ", expected_));
    }
    bytes_received += response.ByteSizeLong() + kGrpcPrefixBytes;
    if (!policy_version) policy_version = response.policy_version();
    return response;
  }

  absl::StatusOr<std::vector<uint64_t>> ChildSums(uint32_t level,
                                                  const std::vector<uint32_t>& nodes) override {
    ReconcileRequest request;
    request.mutable_tree()->set_level(level);
    request.mutable_tree()->mutable_nodes()->Assign(nodes.begin(), nodes.end());
    INTERCO_ASSIGN_OR_RETURN(ReconcileResponse response, Call(std::move(request)));
    return std::vector<uint64_t>(response.sums().begin(), response.sums().end());
  }
  absl::StatusOr<std::vector<std::vector<uint64_t>>> BucketDigests(
      const std::vector<uint32_t>& buckets) override {
    ReconcileRequest request;
    request.mutable_buckets()->mutable_buckets()->Assign(buckets.begin(), buckets.end());
    INTERCO_ASSIGN_OR_RETURN(ReconcileResponse response, Call(std::move(request)));
    std::vector<std::vector<uint64_t>> out;
    for (const auto& b : response.buckets()) out.emplace_back(b.digests().begin(), b.digests().end());
    return out;
  }

  int rounds = 0;
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  // The peer's policy version in its first answer: what it had applied before it read
  // anything it sent.
  std::optional<uint64_t> policy_version;

 private:
  interco::replication::v1::PeerService::StubInterface& stub_;
  const RepairOptions& options_;
  replication::Clock& clock_;
  const int64_t deadline_ms_;
  const std::string expected_;
};

}  // namespace

absl::Status ServeReconcile(RecordStore& store, uint32_t peer, const ReconcileRequest& request,
                            ReconcileResponse& response) {
  const std::string& registry = request.stream();
  // NOT_FOUND if unknown; read before anything the response carries.
  INTERCO_ASSIGN_OR_RETURN(auto policies, store.Policies(registry));
  response.set_policy_version(policies->current_version());
  if (!store.MayRead(registry, peer)) {
    return absl::PermissionDeniedError(absl::StrCat(
        "authority ", replication::OriginToSiren(peer), " may not read registry ", registry));
  }
  switch (request.query_case()) {
    case ReconcileRequest::kTree: return ServeTree(store, registry, request.tree(), response);
    case ReconcileRequest::kBuckets: return ServeBuckets(store, registry, request.buckets(), response);
    case ReconcileRequest::kRecords: return ServeRecords(store, registry, request.records(), response);
    case ReconcileRequest::kScan: return ServeScan(store, registry, request.scan(), response);
    case ReconcileRequest::QUERY_NOT_SET: break;
  }
  return absl::InvalidArgumentError("query: none given (tree, buckets, records or scan)");
}

absl::StatusOr<interco::v1::RepairReport> RepairFrom(
    RecordStore& store, interco::replication::v1::PeerService::StubInterface& stub,
    replication::Clock& clock, const RepairOptions& options) {
  const int64_t started = clock.MonotonicMillis();
  interco::v1::RepairReport report;
  report.set_name(absl::StrCat("registries/", options.registry));
  report.set_peer(replication::OriginToSiren(options.peer));
  report.set_dry_run(options.dry_run);
  INTERCO_ASSIGN_OR_RETURN(auto buckets, store.FingerprintBuckets(options.registry));
  LocalSide mine(store, options.registry, replication::FingerprintTree(buckets));
  RemoteSide theirs(stub, options, clock);
  auto finish = [&] {
    report.set_rounds(static_cast<uint32_t>(theirs.rounds));
    report.set_bytes_sent(theirs.bytes_sent);
    report.set_bytes_received(theirs.bytes_received);
    report.set_duration_ms(clock.MonotonicMillis() - started);
  };
  INTERCO_ASSIGN_OR_RETURN(replication::FingerprintDifferences diff,
                           replication::FindDifferences(mine, theirs));
  report.set_buckets_differing(static_cast<uint32_t>(diff.buckets.size()));
  INTERCO_ASSIGN_OR_RETURN(auto policies, store.Policies(options.registry));
  const uint64_t own_version = policies->current_version();
  const uint64_t peer_version = theirs.policy_version.value_or(0);
  report.set_records_only_here(diff.mine_only.size());
  report.set_records_only_there(diff.theirs_only.size());
  if (options.dry_run || (diff.mine_only.empty() && diff.theirs_only.empty())) {
    finish();
    return report;
  }
  if (peer_version < own_version) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the peer has applied policy version ", peer_version, " of registry ", options.registry,
        ", this node ", own_version,
        " (policy changes and collections it has not applied yet): repair from it once it has "
        "caught up"));
  }

  // What to ask for: this side's differing records by ID (the peer may hold another
  // state of them, a tombstone, or nothing), the peer's by digest.
  std::set<std::string> keys;
  for (const auto& [bucket, digest] : diff.mine_only) {
    std::string id = mine.IdOf(bucket, digest);
    if (!id.empty()) keys.insert(std::move(id));
  }
  std::set<std::pair<uint32_t, uint64_t>> wanted(diff.theirs_only.begin(), diff.theirs_only.end());
  // Each request for records by digest makes the peer read the whole registry: when the
  // peer holds many records this side lacks (at least as many as this side holds: a new
  // copy), it sends them all in ID order instead, in one read.
  INTERCO_ASSIGN_OR_RETURN(interco::v1::Registry held, store.GetRegistry(options.registry));
  const bool scan = wanted.size() > options.scan_above &&
                    wanted.size() >= static_cast<uint64_t>(held.record_count());
  if (scan) wanted.clear();

  // Received states go to the store in commits of bounded size, each with the lowest
  // policy version the peer stated for them (what it had applied before reading them).
  std::vector<std::pair<std::string, RecordState>> pending;
  size_t pending_bytes = 0;
  uint64_t pending_version = UINT64_MAX;
  auto merge_pending = [&]() -> absl::Status {
    if (pending.empty()) return absl::OkStatus();
    absl::StatusOr<uint64_t> changed;
    // A full commit queue asks to retry: a few times, then the repair stops.
    for (int attempt = 0; attempt < kMergeAttempts; ++attempt) {
      if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100 * attempt));
      changed = store.Repair(options.registry, options.peer, pending_version, pending,
                             options.caller);
      if (changed.status().code() != absl::StatusCode::kUnavailable) break;
    }
    if (!changed.ok()) return changed.status();
    report.set_records_changed(report.records_changed() + *changed);
    pending.clear();
    pending_bytes = 0;
    pending_version = UINT64_MAX;
    return absl::OkStatus();
  };
  Sha256Hasher hasher;
  // `asked`: whether the record was asked for (a scan's are checked by the scan).
  auto take = [&](RepairRecord& r, uint64_t version, bool asked) -> absl::Status {
    report.set_records_received(report.records_received() + 1);
    if (!asked) {
      return absl::DataLossError(
          absl::StrCat("the peer sent record ", r.key(), ", which was not asked for"));
    }
    // States stamped by an authority this node does not know as a writer (a policy
    // version it has not applied yet) are left to the change logs.
    const auto origins = replication::StampOrigins(r.state());
    const bool known = std::all_of(origins.begin(), origins.end(),
                                   [&](uint32_t o) { return policies->MayHaveWritten(o); });
    const int64_t horizon_ms = clock.NowMillis() + options.clock_offset_max_ms;
    if (!known || replication::HybridLogicalClock::Millis(replication::MaxStamp(r.state())) >
                      static_cast<uint64_t>(horizon_ms)) {
      report.set_records_refused(report.records_refused() + 1);
      return absl::OkStatus();
    }
    pending_bytes += r.ByteSizeLong();
    pending_version = std::min(pending_version, version);
    pending.emplace_back(std::move(*r.mutable_key()), std::move(*r.mutable_state()));
    if (pending.size() >= kMergeRecordsMax || pending_bytes >= kMergeBytesMax) {
      return merge_pending();
    }
    return absl::OkStatus();
  };

  if (scan) {
    std::string after;
    do {
      ReconcileRequest request;
      request.mutable_scan()->set_start_after(after);
      INTERCO_ASSIGN_OR_RETURN(ReconcileResponse response, theirs.Call(std::move(request)));
      // Live records, in increasing IDs after `after`, ending at the resume point.
      std::string last = after;
      for (const RepairRecord& r : response.records()) {
        if (r.key() <= last || !replication::IsLive(r.state())) {
          return absl::DataLossError("the peer's scan is out of order or not of live records");
        }
        last = r.key();
      }
      if (!response.scan_resume().empty() &&
          (response.records().empty() || response.scan_resume() != last)) {
        return absl::DataLossError("the peer's scan does not resume after what it sent");
      }
      after = response.scan_resume();
      for (RepairRecord& r : *response.mutable_records()) {
        INTERCO_RETURN_IF_ERROR(take(r, response.policy_version(), true));
      }
    } while (!after.empty());
  }

  // Each answer carries at least one record asked for: this many requests always suffice.
  size_t requests_left = keys.size() + wanted.size() + 1;
  while (!keys.empty() || !wanted.empty()) {
    if (requests_left-- == 0) return absl::DataLossError("the peer keeps putting records off");
    ReconcileRequest request;
    auto* q = request.mutable_records();
    size_t room = limits::kReconcileRecordsMax;
    std::set<std::string> asked_keys;
    while (!keys.empty() && room > 0) {
      asked_keys.insert(keys.extract(keys.begin()).value());
      room--;
    }
    for (const std::string& k : asked_keys) q->add_keys(k);
    // Digests of at most kReconcileBucketsMax buckets per request.
    std::set<uint32_t> in_buckets;
    std::set<std::pair<uint32_t, uint64_t>> asked_digests;
    for (auto it = wanted.begin(); it != wanted.end() && room > 0;) {
      const auto [bucket, digest] = *it;
      if (in_buckets.contains(bucket) || in_buckets.size() < limits::kReconcileBucketsMax) {
        in_buckets.insert(bucket);
        asked_digests.insert(*it);
        q->add_digests(digest);
        it = wanted.erase(it);
        room--;
      } else {
        ++it;
      }
    }
    q->mutable_buckets()->Assign(in_buckets.begin(), in_buckets.end());
    INTERCO_ASSIGN_OR_RETURN(ReconcileResponse response, theirs.Call(std::move(request)));
    if (response.records().empty() &&
        (!response.more_keys().empty() || !response.more_digests().empty())) {
      return absl::DataLossError("the peer put off every record asked for");
    }
    // What it put off, of what this request asked, is asked again.
    for (const std::string& k : response.more_keys()) {
      if (!asked_keys.contains(k)) return absl::DataLossError("the peer put off a key not asked for");
      keys.insert(k);
    }
    for (uint64_t d : response.more_digests()) {
      auto it = std::find_if(asked_digests.begin(), asked_digests.end(),
                             [d](const auto& a) { return a.second == d; });
      if (it == asked_digests.end()) {
        return absl::DataLossError("the peer put off a digest not asked for");
      }
      wanted.insert(*it);
    }
    for (RepairRecord& r : *response.mutable_records()) {
      bool asked = asked_keys.contains(r.key());
      if (!asked) {
        asked = asked_digests.contains(
            {replication::FingerprintBucket(hasher, r.key()),
             replication::FingerprintDigest(hasher, r.key(), r.state().SerializeAsString())});
      }
      INTERCO_RETURN_IF_ERROR(take(r, response.policy_version(), asked));
    }
  }
  INTERCO_RETURN_IF_ERROR(merge_pending());
  finish();
  return report;
}

}  // namespace interco::node
