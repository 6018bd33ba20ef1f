#include "node/storage/record_store.h"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <set>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/synchronization/notification.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "interco/replication/v1/state.pb.h"
#include "node/crypto/sha256.h"
#include "replication/change_log.h"
#include "replication/compaction.h"
#include "replication/conflict_journal.h"
#include "replication/repair.h"
#include "node/log.h"
#include "node/storage/keys.h"
#include "node/storage/record_store_internal.h"
#include "node/storage/rocksdb_store.h"
#include "replication/base/check.h"
#include "replication/base/limits.h"
#include "replication/base/status_macros.h"
#include "replication/base/strings.h"
#include "rocksdb/utilities/checkpoint.h"

namespace interco::node {
namespace {

using interco::internal::v1::FeedEntry;
using interco::internal::v1::NodeMeta;
using interco::internal::v1::PageToken;
using interco::internal::v1::RegistryMeta;
using interco::internal::v1::StreamState;
using interco::internal::v1::WatchCursor;
using interco::replication::v1::Batch;
using interco::replication::v1::BatchHeader;
using interco::replication::v1::Change;
using interco::replication::v1::PolicyChange;
using interco::v1::AuditEvent;
using interco::v1::Policy;
using interco::v1::FieldFilter;
using interco::v1::Record;
using interco::v1::Registry;
using interco::v1::Value;
using replication::FieldValues;
using replication::RecordState;

// 2: signatures per run (Batch.signer, BatchHeader.run_index); batches of version 1
// (signer in the header) no longer verify, and there is no migration.
// 4: the tombstones family (a store of version 3 lacks the index of its deletes, which a
// collection would then miss here and not elsewhere).
// 5: the fingerprints family (added to a version-4 store at open).
// 6: the removals family (a version-5 store gets it from its change log at open).
// 7: hollow batches in the change log (a version-6 store is marked 7 at open).
constexpr uint32_t kFormatVersion = 9;
// Feed trimming is amortized: it runs once the feed holds this many extra entries.
constexpr uint64_t kFeedTrimSlack = 1024;

uint64_t Fnv64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : s) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::string EncodeToken(const google::protobuf::MessageLite& m) {
  return absl::WebSafeBase64Escape(m.SerializeAsString());
}

template <typename Message>
absl::Status DecodeToken(std::string_view token, std::string_view field, Message& out) {
  std::string raw;
  if (token.size() > limits::kPageTokenBytesMax ||
      !absl::WebSafeBase64Unescape(absl::string_view(token.data(), token.size()), &raw) ||
      !out.ParseFromString(raw)) {
    return absl::InvalidArgumentError(absl::StrCat(ToAbsl(field), ": malformed"));
  }
  return absl::OkStatus();
}

// The page size a list request asks for (0: the default). INVALID_ARGUMENT out of range.
absl::StatusOr<size_t> PageSizeOf(int32_t page_size) {
  if (page_size < 0) return absl::InvalidArgumentError("page_size: must not be negative");
  if (page_size > limits::kPageSizeMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size: must be at most ", limits::kPageSizeMax));
  }
  return static_cast<size_t>(page_size == 0 ? limits::kPageSizeDefault : page_size);
}

// The token of the page after `key`, for a request with this fingerprint.
std::string NextPageToken(std::string key, uint64_t fingerprint) {
  PageToken next;
  next.set_after_key(std::move(key));
  next.set_request_fingerprint(fingerprint);
  return EncodeToken(next);
}

absl::Status RegistryNotFound(std::string_view registry) {
  return absl::NotFoundError(absl::StrCat("registry \"", ToAbsl(registry), "\" not found"));
}

absl::Status Rebuilding(std::string_view registry) {
  return absl::UnavailableError(absl::StrCat(
      "registry \"", ToAbsl(registry), "\" is being rebuilt from its change log (a collection "
      "refused changes this node held); retry"));
}

// Whether a visible value satisfies an equality filter (set fields: membership).
bool Matches(const FieldValues& fields, const FieldFilter& filter) {
  auto it = fields.find(filter.field());
  if (it == fields.end()) return false;
  const Value& v = it->second;
  const Value& want = filter.value();
  switch (v.kind_case()) {
    case Value::kStringSetValue: {
      const auto& vs = v.string_set_value().values();
      return std::binary_search(vs.begin(), vs.end(), want.string_value());
    }
    case Value::kStringValue: return want.has_string_value() && v.string_value() == want.string_value();
    case Value::kInt64Value: return want.has_int64_value() && v.int64_value() == want.int64_value();
    case Value::kDoubleValue:
      return want.has_double_value() && v.double_value() == want.double_value();
    case Value::kBoolValue: return want.has_bool_value() && v.bool_value() == want.bool_value();
    case Value::kTimestampValue:
      return want.has_timestamp_value() &&
             v.timestamp_value().seconds() == want.timestamp_value().seconds() &&
             v.timestamp_value().nanos() == want.timestamp_value().nanos();
    case Value::kGeoPointValue:
      return want.has_geo_point_value() &&
             v.geo_point_value().latitude() == want.geo_point_value().latitude() &&
             v.geo_point_value().longitude() == want.geo_point_value().longitude();
    default: return false;
  }
}

// Encoded index values of one visible field (one per set element).
std::set<std::string> IndexValues(const FieldValues& fields, const std::string& field) {
  std::set<std::string> out;
  auto it = fields.find(field);
  if (it == fields.end()) return out;
  if (it->second.has_string_set_value()) {
    for (const auto& e : it->second.string_set_value().values()) {
      out.insert(keys::EncodeIndexString(e));
    }
  } else if (auto enc = keys::EncodeIndexValue(it->second)) {
    out.insert(*std::move(enc));
  }
  return out;
}

}  // namespace

std::string RecordName(std::string_view registry, std::string_view record) {
  return absl::StrCat("registries/", ToAbsl(registry), "/records/", ToAbsl(record));
}

// One queued operation of the group-commit queue.
namespace {

StreamState ToStreamState(const replication::VersionVector& vv) {
  StreamState out;
  for (const auto& [key, pos] : vv) {
    auto* o = out.add_origins();
    o->set_origin(key.origin);
    o->set_epoch(key.epoch);
    o->set_seq(pos.seq);
    o->set_max_hlc(pos.max_hlc);
    o->set_last_hash(pos.last_hash);
  }
  return out;
}

replication::VersionVector FromStreamState(const StreamState& state) {
  replication::VersionVector vv;
  for (const auto& o : state.origins()) {
    replication::OriginPos& p = vv[replication::OriginKey{o.origin(), o.epoch()}];
    p.seq = o.seq();
    p.max_hlc = o.max_hlc();
    p.last_hash = o.last_hash();
  }
  return vv;
}

}  // namespace

RecordStore::RecordStore(const RecordStoreOptions& options, std::unique_ptr<RocksDbStore> db)
    : authority_(options.authority),
      origin_(replication::SirenToOrigin(options.authority).value()),
      sync_(options.sync),
      feed_retention_(std::max<uint64_t>(options.feed_retention_entries, 1)),
      db_(std::move(db)),
      clock_(*options.clock),
      node_audit_retention_days_(options.audit_retention_days),
      fold_window_entries_(std::clamp<size_t>(options.fold_window_entries, 2, 4096)),
      hlc_(*options.clock, 0),
      random_state_(options.random_seed ^ 0x9e3779b97f4a7c15ULL) {}

RecordStore::~RecordStore() {
  {
    // The compactor first: it may be waiting for an op of its own, which the committer
    // still takes.
    absl::MutexLock l(&compact_mu_);
    compact_stopping_ = true;
  }
  if (compactor_.joinable()) compactor_.join();
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  // The committer drains the queue before it exits: nothing queued is dropped.
  if (committer_.joinable()) committer_.join();
  {
    absl::MutexLock l(&done_mu_);
    done_stopping_ = true;
  }
  // The completer runs every pending callback before it exits.
  if (completer_.joinable()) completer_.join();
}

absl::StatusOr<std::unique_ptr<RecordStore>> RecordStore::Open(const RecordStoreOptions& options) {
  if (options.clock == nullptr) return absl::InvalidArgumentError("RecordStore needs a clock");
  if (absl::Status s = replication::ValidateSiren(options.authority); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("authority: ", s.message()));
  }
  RocksDbOptions ro;
  ro.path = options.path;
  ro.block_cache_bytes = options.block_cache_bytes;
  INTERCO_ASSIGN_OR_RETURN(std::unique_ptr<RocksDbStore> db, RocksDbStore::Open(ro));
  auto store = std::unique_ptr<RecordStore>(new RecordStore(options, std::move(db)));
  INTERCO_RETURN_IF_ERROR(store->Load());
  store->completer_ = std::thread([s = store.get()] { s->CompleteLoop(); });
  store->committer_ = std::thread([s = store.get()] { s->CommitLoop(); });
  store->compactor_ = std::thread([s = store.get()] { s->CompactLoop(); });
  return store;
}

absl::StatusOr<RecordStore::BackupInfo> RecordStore::CreateBackup(const std::string& directory) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(directory, ec)) {
    return absl::AlreadyExistsError(absl::StrCat("backup ", directory, " already exists"));
  }
  const fs::path parent = fs::path(directory).parent_path();
  if (!parent.empty()) fs::create_directories(parent, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create the backup directory ", parent.string(), ": ", ec.message()));
  }
  BackupInfo info;
  info.directory = directory;
  info.created_ms = clock_.NowMillis();
  {
    rocksdb::Checkpoint* raw = nullptr;
    INTERCO_RETURN_IF_ERROR(FromRocksStatus(rocksdb::Checkpoint::Create(&db_->db(), &raw),
                                            "preparing the backup"));
    std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
    INTERCO_RETURN_IF_ERROR(
        FromRocksStatus(checkpoint->CreateCheckpoint(directory), "writing the backup"));
  }
  // Mark the copy: a node that opens it takes a new epoch.
  {
    RocksDbOptions ro;
    ro.path = directory;
    INTERCO_ASSIGN_OR_RETURN(std::unique_ptr<RocksDbStore> copy, RocksDbStore::Open(ro));
    INTERCO_ASSIGN_OR_RETURN(auto raw, copy->Get(Cf::kMeta, keys::kNodeMeta));
    NodeMeta meta;
    if (!raw.has_value()) return absl::DataLossError("the backup has no node metadata");
    INTERCO_RETURN_IF_ERROR(ParseStored(*raw, meta, "node metadata of the backup"));
    info.epoch = meta.epoch();
    meta.set_backup(true);
    rocksdb::WriteBatch wb;
    wb.Put(copy->handle(Cf::kMeta), ToSlice(keys::kNodeMeta), meta.SerializeAsString());
    INTERCO_RETURN_IF_ERROR(copy->Write(wb, /*sync=*/true));
  }
  for (const auto& entry : fs::recursive_directory_iterator(directory, ec)) {
    if (entry.is_regular_file(ec)) info.size_bytes += static_cast<int64_t>(entry.file_size(ec));
  }
  return info;
}

absl::Status RecordStore::LoadUnsignedTail(const std::string& registry, const RegistryRuntime& rt) {
  // Every chain of this node's (older epochs too: a new epoch taken without a key leaves
  // the old chain's tail to sign).
  for (const auto& [key, pos] : rt.position) {
    if (key.origin != origin_ || pos.seq == 0) continue;
    std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(Cf::kLog);
    it->SeekForPrev(ToSlice(keys::Log(registry, origin_, key.epoch, pos.seq)));
    if (!it->Valid()) return FromRocksStatus(it->status(), "reading the change log");
    Batch tail;
    BatchHeader h;
    if (!tail.ParseFromArray(it->value().data(), static_cast<int>(it->value().size())) ||
        !h.ParseFromString(tail.header())) {
      return absl::DataLossError(absl::StrCat("the last batch of ", registry, " does not parse"));
    }
    if (!tail.signature().empty() || h.origin() != origin_ || h.epoch() != key.epoch) continue;
    // Left unsigned by a crash: its run is closed (signed) as soon as the key is loaded.
    UnsignedRun run;
    run.tail = std::move(tail);
    run.epoch = key.epoch;
    run.first_seq = h.first_seq();
    run.batches = limits::kRunBatchesMax;
    run.policy_version = h.policy_version();
    if (key.epoch == OwnEpoch(rt.meta)) {
      unsigned_runs_[registry] = std::move(run);
    } else {
      old_tails_.emplace_back(registry, std::move(run));
    }
  }
  return absl::OkStatus();
}

absl::Status RecordStore::Load() {
  NodeMeta meta;
  INTERCO_ASSIGN_OR_RETURN(auto raw, db_->Get(Cf::kMeta, keys::kNodeMeta));
  if (raw.has_value()) {
    INTERCO_RETURN_IF_ERROR(ParseStored(*raw, meta, "node metadata"));
    if (meta.authority() != authority_) {
      return absl::FailedPreconditionError(
          absl::StrCat("the store belongs to authority ", meta.authority(), ", not ", authority_));
    }
    if (meta.format_version() == 4) {
      // Version 4 lacks the fingerprints, which the records give...
      INTERCO_RETURN_IF_ERROR(AddFingerprints(meta));
    }
    if (meta.format_version() == 5) {
      // ...and version 5 the index of removes, which the change log gives...
      INTERCO_RETURN_IF_ERROR(AddRemovals(meta));
    }
    if (meta.format_version() == 6) {
      // ...and version 6 knows no hollow batches: nothing to add, but a node of that
      // version must not open the store once its log holds some...
      meta.set_format_version(7);
      rocksdb::WriteBatch wb;
      wb.Put(db_->handle(Cf::kMeta), ToSlice(keys::kNodeMeta), meta.SerializeAsString());
      INTERCO_RETURN_IF_ERROR(db_->Write(wb, /*sync=*/true));
    }
    if (meta.format_version() == 7) {
      // ...and version 7 the sum of each registry's live digests, which its buckets give...
      INTERCO_RETURN_IF_ERROR(AddLiveSums(meta));
    }
    if (meta.format_version() == 8) {
      // ...and version 8 knows no skips (Batch.skip_from, logged under their first
      // sequence number): nothing to add, but a node of that version must not open the
      // store once its log holds some.
      meta.set_format_version(9);
      rocksdb::WriteBatch wb;
      wb.Put(db_->handle(Cf::kMeta), ToSlice(keys::kNodeMeta), meta.SerializeAsString());
      INTERCO_RETURN_IF_ERROR(db_->Write(wb, /*sync=*/true));
    }
    if (meta.format_version() != kFormatVersion) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the store has format version ", meta.format_version(), "; this node reads versions 4 "
          "to 8 (upgraded in place) and ", kFormatVersion, " only (version 3 has no index of "
          "tombstones, version 2 predates signing times in signatures, version 1 signatures "
          "per run; there is no migration from those: start from an empty store and let the "
          "partners send it everything)"));
    }
  } else {
    meta.set_authority(authority_);
    meta.set_epoch(1);
    meta.set_format_version(kFormatVersion);
    rocksdb::WriteBatch wb;
    wb.Put(db_->handle(Cf::kMeta), ToSlice(keys::kNodeMeta), meta.SerializeAsString());
    INTERCO_RETURN_IF_ERROR(db_->Write(wb, /*sync=*/true));
  }
  epoch_ = meta.epoch();
  {
    absl::MutexLock l(&mu_);
    committed_epoch_ = epoch_;
  }
  // The HLC never issues a value at or below what was persisted before a restart.
  hlc_.AdvanceTo(meta.hlc_high_water());

  absl::flat_hash_map<std::string, RegistryRuntime> loaded;
  std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(Cf::kRegistries);
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    RegistryRuntime rt;
    INTERCO_RETURN_IF_ERROR(ParseStored(ToView(it->value()), rt.meta, "registry"));
    auto schema = replication::RegistrySchema::Compile(rt.meta.registry().schema());
    if (!schema.ok()) {
      return absl::DataLossError(absl::StrCat("stored schema of registry ", it->key().ToString(),
                                              " is invalid: ", schema.status().message()));
    }
    rt.schema = std::make_shared<const replication::RegistrySchema>(*std::move(schema));
    // Policy versions; a store written before versions existed has only the declared one,
    // in the definition.
    std::vector<std::pair<std::string, std::string>> versions =
        ScanMeta(keys::PolicyPrefix(ToView(it->key())));
    if (versions.empty()) {
      // Kept as version 0 from now on: the definition's policy is the current one.
      PolicyChange declared;
      *declared.mutable_policy() = rt.meta.registry().policy();
      rocksdb::WriteBatch wb;
      wb.Put(db_->handle(Cf::kMeta), ToSlice(keys::Policy(ToView(it->key()), 0)),
             declared.SerializeAsString());
      INTERCO_RETURN_IF_ERROR(db_->Write(wb, /*sync=*/true));
      versions.emplace_back("", declared.SerializeAsString());
    }
    std::optional<replication::PolicyHistory> history;
    for (const auto& [key, value] : versions) {
      PolicyChange change;
      INTERCO_RETURN_IF_ERROR(ParseStored(value, change, "policy version"));
      auto policy = replication::RegistryPolicy::Compile(rt.meta.registry().owner(), change.policy());
      if (!policy.ok()) {
        return absl::DataLossError(absl::StrCat("stored policy version ", change.version(),
                                                " of registry ", it->key().ToString(),
                                                " is invalid: ", policy.status().message()));
      }
      if (!history) {
        if (change.version() != 0) {
          return absl::DataLossError(absl::StrCat("registry ", it->key().ToString(),
                                                  " has no declared policy (version 0)"));
        }
        history.emplace(*std::move(policy));
      } else {
        history->Add(change.version(), *std::move(policy));
      }
    }
    rt.policies = std::make_shared<const replication::PolicyHistory>(*std::move(history));
    INTERCO_ASSIGN_OR_RETURN(auto stream, db_->Get(Cf::kMeta, keys::StreamState(ToView(it->key()))));
    if (stream.has_value()) {
      StreamState state;
      INTERCO_RETURN_IF_ERROR(ParseStored(*stream, state, "stream state"));
      rt.position = FromStreamState(state);
    }
    INTERCO_RETURN_IF_ERROR(LoadUnsignedTail(std::string(ToView(it->key())), rt));
    loaded.emplace(std::string(ToView(it->key())), std::move(rt));
  }
  INTERCO_RETURN_IF_ERROR(FromRocksStatus(it->status(), "loading registries"));
  {
    absl::MutexLock l(&mu_);
    registries_ = std::move(loaded);
  }
  if (meta.backup()) {
    // A backup put in place of the store: its original may have gone on writing after the
    // copy, so the next sequence numbers of this epoch may be taken. A new epoch starts a
    // new chain (unsigned tails of the old one are still signed, with their old epoch).
    epoch_ = meta.epoch() + 1;
    if (epoch_ > 0xffff) {
      return absl::FailedPreconditionError("the store has no origin epoch left to start");
    }
    meta.set_epoch(epoch_);
    meta.clear_backup();
    rocksdb::WriteBatch wb;
    wb.Put(db_->handle(Cf::kMeta), ToSlice(keys::kNodeMeta), meta.SerializeAsString());
    {
      absl::MutexLock l(&mu_);
      for (auto& [id, rt] : registries_) {
        if (ShiftEpoch(rt.meta)) {
          wb.Put(db_->handle(Cf::kRegistries), ToSlice(id), rt.meta.SerializeAsString());
        }
      }
    }
    INTERCO_RETURN_IF_ERROR(db_->Write(wb, /*sync=*/true));
    {
      absl::MutexLock l(&mu_);
      committed_epoch_ = epoch_;
    }
    opened_from_backup_ = true;
  }
  INTERCO_RETURN_IF_ERROR(LoadAudit());
  // A replay the last run did not finish (or could not do) is done now, before anything
  // else reads the registry.
  std::vector<std::string> unfinished;
  {
    absl::MutexLock l(&mu_);
    for (const auto& [id, rt] : registries_) {
      if (rt.meta.replay_size() > 0 || rt.meta.rebuild()) unfinished.push_back(id);
    }
  }
  for (const std::string& id : unfinished) {
    if (absl::Status s = Replay(id); !s.ok()) {
      // The node starts; the registry stays fenced and the committer tries again.
      log::Error(absl::StrCat("replaying the change log of registry ", id, ": ", s.ToString()));
      replays_due_.insert(id);
      replay_failed_ms_[id] = clock_.MonotonicMillis();
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------------------
// Group commit.

void RecordStore::Enqueue(std::unique_ptr<Op> op) {
  absl::MutexLock l(&mu_);
  queue_.push_back(std::move(op));
}

void RecordStore::CommitLoop() {
  std::vector<std::unique_ptr<Op>> group;
  while (true) {
    bool idle = false;
    bool stop = false;
    {
      absl::MutexLock l(&mu_);
      const absl::Condition ready(
          +[](RecordStore* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
            return s->stopping_ || !s->queue_.empty();
          },
          this);
      if (signer_ != nullptr && (!unsigned_runs_.empty() || !old_tails_.empty())) {
        // A run of own batches waits for its signature: sign its tail once nothing more
        // comes for a moment.
        idle = !mu_.AwaitWithTimeout(ready, absl::Milliseconds(limits::kSignIdleMillis));
      } else if (!replays_due_.empty()) {
        // A replay that failed is tried again now and then.
        idle = !mu_.AwaitWithTimeout(ready, absl::Milliseconds(kReplayRetryMillis));
      } else {
        mu_.Await(ready);
      }
      if (!idle) {
        if (queue_.empty()) {
          stop = true;  // stopping, and drained
        } else {
          // Everything that queued up while the previous group committed, bounded; a
          // remote batch between two slices lets the others commit alone first, once.
          const bool others = std::any_of(queue_.begin(), queue_.end(),
                                          [](const auto& op) { return op->next_change == 0; });
          std::vector<std::unique_ptr<Op>> held;
          while (!queue_.empty() && group.size() < limits::kCommitGroupMutationsMax) {
            std::unique_ptr<Op> op = std::move(queue_.front());
            queue_.pop_front();
            if (others && op->next_change > 0 && !op->yielded) {
              op->yielded = true;
              held.push_back(std::move(op));
              continue;
            }
            op->yielded = false;
            group.push_back(std::move(op));
          }
          for (auto it = held.rbegin(); it != held.rend(); ++it) queue_.push_front(std::move(*it));
        }
      }
    }
    if (stop) return;  // an unsigned tail left is signed at the next start
    if (idle) {
      if (signer_ != nullptr) SignIdleTails();
      RunDueReplays();
      continue;
    }
    ApplyGroup(group);
    // A collection of the group refused batches applied here: the registry's state is
    // rebuilt before anything else happens (the group's callers then see it done).
    RunDueReplays();
    // A remote batch merged in slices goes on first in the next group, with whatever
    // queued meanwhile.
    std::vector<std::unique_ptr<Op>> ended;
    std::vector<std::unique_ptr<Op>> continuing;
    for (auto& op : group) (op->continuing ? continuing : ended).push_back(std::move(op));
    group.clear();
    if (!continuing.empty()) {
      absl::MutexLock l(&mu_);
      for (auto it = continuing.rbegin(); it != continuing.rend(); ++it) {
        queue_.push_front(std::move(*it));
      }
    }
    // No batch goes on in slices from this group (it ended, or failed half-way): feed
    // entries of its slices still waiting for a sync get it now.
    if (continuing.empty()) ReleaseHeldFeeds(/*sync=*/true);
    if (ended.empty()) continue;
    absl::MutexLock l(&done_mu_);
    done_queue_.push_back(std::move(ended));
  }
}

void RecordStore::ReleaseHeldFeeds(bool sync, std::vector<std::string> changed) {
  bool held;
  {
    absl::MutexLock l(&mu_);
    held = !feed_unsynced_.empty();
  }
  if (held && sync) {
    if (absl::Status s = db_->SyncWal(); !s.ok()) {
      log::Error(absl::StrCat("syncing the store (the next commit tries again): ", s.ToString()));
      held = false;
    }
  }
  if (held) {
    absl::MutexLock l(&mu_);
    for (const auto& [registry, end] : feed_unsynced_) {
      if (std::find(changed.begin(), changed.end(), registry) == changed.end()) {
        changed.push_back(registry);
      }
    }
    feed_unsynced_.clear();
  }
  if (!changed.empty()) Notify(changed);
}

void RecordStore::RunDueReplays() {
  const int64_t now = clock_.MonotonicMillis();
  for (auto it = replays_due_.begin(); it != replays_due_.end();) {
    auto failed = replay_failed_ms_.find(*it);
    if (failed != replay_failed_ms_.end() && now - failed->second < kReplayRetryMillis) {
      ++it;
      continue;
    }
    if (absl::Status s = Replay(*it); !s.ok()) {
      // The registry stays fenced (its reads and writes UNAVAILABLE) until a retry works.
      log::Error(absl::StrCat("replaying the change log of registry ", *it, ": ", s.ToString(),
                              " (tried again in ", kReplayRetryMillis / 1000, " s)"));
      replay_failed_ms_[*it] = now;
      ++it;
      continue;
    }
    replay_failed_ms_.erase(*it);
    // The compaction the collection asked for could not run on the registry while it was
    // fenced: it runs on the rebuilt log.
    ScheduleCompaction(*it);
    it = replays_due_.erase(it);
  }
}

void RecordStore::SignIdleTails() {
  if (unsigned_runs_.empty() && old_tails_.empty()) return;
  GroupState g;
  if (!StageTailSignatures(g).ok()) return;  // retried at the next idle moment
  if (!db_->Write(g.batch, /*sync=*/false).ok()) return;
  for (auto& [registry, run] : g.runs) unsigned_runs_.erase(registry);
  if (g.old_tails_signed) old_tails_.clear();
  NotifyLocalCommit();
}

std::optional<RecordStore::UnsignedRun> RecordStore::RunOf(const GroupState& g,
                                                           const std::string& registry) const {
  if (auto it = g.runs.find(registry); it != g.runs.end()) return it->second;
  if (auto it = unsigned_runs_.find(registry); it != unsigned_runs_.end()) return it->second;
  return std::nullopt;
}

absl::Status RecordStore::StageTailSignatures(GroupState& g, const std::string* registry) {
  std::vector<std::string> registries;
  if (registry != nullptr) {
    registries.push_back(*registry);
  } else {
    for (const auto& [r, run] : unsigned_runs_) registries.push_back(r);
    for (const auto& [r, run] : g.runs) registries.push_back(r);
  }
  for (const std::string& r : registries) {
    std::optional<UnsignedRun> run = RunOf(g, r);
    if (!run) continue;
    INTERCO_RETURN_IF_ERROR(StageTailSignature(g, r, *std::move(run)));
    g.runs[r] = std::nullopt;
  }
  if (registry == nullptr && !old_tails_.empty()) {
    for (const auto& [r, run] : old_tails_) INTERCO_RETURN_IF_ERROR(StageTailSignature(g, r, run));
    g.old_tails_signed = true;
  }
  return absl::OkStatus();
}

absl::Status RecordStore::StageTailSignature(GroupState& g, const std::string& registry,
                                             UnsignedRun run) {
  replication::Signer* signer = signer_.load();
  if (signer == nullptr) return absl::FailedPreconditionError("no key to sign the change log with");
  INTERCO_RETURN_IF_ERROR(replication::SignBatch(run.tail, *signer, clock_.NowMillis()));
  g.batch.Put(db_->handle(Cf::kLog), ToSlice(keys::Log(registry, origin_, run.epoch, run.first_seq)),
              run.tail.SerializeAsString());
  return absl::OkStatus();
}

void RecordStore::CompleteLoop() {
  while (true) {
    std::vector<std::unique_ptr<Op>> group;
    {
      absl::MutexLock l(&done_mu_);
      done_mu_.Await(absl::Condition(
          +[](RecordStore* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->done_mu_) {
            return s->done_stopping_ || !s->done_queue_.empty();
          },
          this));
      if (done_queue_.empty()) return;  // stopping, and drained
      group = std::move(done_queue_.front());
      done_queue_.pop_front();
    }
    for (auto& op : group) op->done(*op);
  }
}

absl::StatusOr<RecordStore::RegistryRuntime> RecordStore::Runtime(std::string_view registry) {
  absl::MutexLock l(&mu_);
  auto it = registries_.find(absl::string_view(registry.data(), registry.size()));
  if (it == registries_.end()) return RegistryNotFound(registry);
  return it->second;
}

absl::Status RecordStore::CheckRegistry(std::string_view registry) {
  absl::MutexLock l(&mu_);
  if (!registries_.contains(ToAbsl(registry))) return RegistryNotFound(registry);
  return absl::OkStatus();
}

bool RecordStore::Replaying(std::string_view registry) {
  absl::MutexLock l(&mu_);
  return replaying_.contains(std::string(registry));
}

absl::Status RecordStore::CheckReadable(std::string_view registry) {
  absl::MutexLock l(&mu_);
  if (!registries_.contains(ToAbsl(registry))) return RegistryNotFound(registry);
  if (replaying_.contains(std::string(registry))) return Rebuilding(registry);
  return absl::OkStatus();
}

std::shared_ptr<const replication::PolicyHistory> RecordStore::PolicyOf(std::string_view registry) {
  absl::MutexLock l(&mu_);
  auto it = registries_.find(ToAbsl(registry));
  return it == registries_.end() ? nullptr : it->second.policies;
}

absl::Status RecordStore::CheckAccess(std::string_view registry,
                                      const replication::Principal& caller, bool write) {
  const std::shared_ptr<const replication::PolicyHistory> policies = PolicyOf(registry);
  if (policies == nullptr) return RegistryNotFound(registry);
  const replication::RegistryPolicy& policy = policies->Current();
  const uint32_t who = replication::SirenToOrigin(caller.siren).value_or(0);
  if (write ? policy.MayWrite(who) : policy.MayRead(who)) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(caller.Author(), " may not ",
                                                  write ? "write" : "read", " registry ",
                                                  ToAbsl(registry), " (its policy)"));
}

absl::Status RecordStore::Authorize(std::string_view registry,
                                    const replication::DecodedBatch& batch) {
  const auto policies = PolicyOf(registry);
  if (policies == nullptr) return RegistryNotFound(registry);
  const replication::Exclusions exclusions = ExclusionsOf(registry);
  INTERCO_RETURN_IF_ERROR(replication::AuthorizeBatch(batch, *policies, &exclusions));
  INTERCO_ASSIGN_OR_RETURN(replication::VersionVector position, Position(registry));
  return replication::CollectionReady(batch, position);
}

std::vector<uint32_t> RecordStore::Members(std::string_view registry) {
  const auto policies = PolicyOf(registry);
  if (policies == nullptr) return {};
  // Writers of every version: a batch is judged by the version it names.
  const std::set<uint32_t> writers = policies->AllWriters();
  std::vector<uint32_t> out{policies->owner()};
  for (uint32_t w : writers) {
    if (w != policies->owner()) out.push_back(w);
  }
  return out;
}

absl::StatusOr<bool> RecordStore::Collect(std::string_view registry,
                                          const replication::CollectionPlan& plan) {
  auto op = std::make_unique<Op>();
  op->type = Op::Type::kCollect;
  op->registry = std::string(registry);
  op->frontier = plan.frontier;
  op->required = plan.required;
  op->members = plan.members;
  op->journal_before = plan.journal_before;
  op->excluded = plan.excluded;
  op->compaction_changes = plan.compaction_changes;
  bool collected = false;
  INTERCO_RETURN_IF_ERROR(
      EnqueueAndWait(std::move(op), [&](Op& done) { collected = done.collected; }));
  return collected;
}

bool RecordStore::MayReadBatch(std::string_view registry, uint32_t authority,
                               uint64_t policy_version) {
  const auto policies = PolicyOf(registry);
  return policies != nullptr && policies->MayReadBatch(policy_version, authority);
}

uint32_t RecordStore::OwnerOf(std::string_view registry) {
  const auto policies = PolicyOf(registry);
  return policies == nullptr ? 0 : policies->owner();
}

bool RecordStore::MayRead(std::string_view registry, uint32_t authority) {
  const auto policies = PolicyOf(registry);
  return policies != nullptr && policies->Current().MayRead(authority);
}

absl::StatusOr<std::shared_ptr<const replication::RegistrySchema>> RecordStore::SchemaOf(
    std::string_view registry) {
  absl::MutexLock l(&mu_);
  auto it = registries_.find(ToAbsl(registry));
  if (it == registries_.end()) return RegistryNotFound(registry);
  if (replaying_.contains(std::string(registry))) return Rebuilding(registry);
  return it->second.schema;
}

absl::StatusOr<RecordStore::FeedBounds> RecordStore::FeedOf(std::string_view registry) {
  absl::MutexLock l(&mu_);
  auto it = registries_.find(ToAbsl(registry));
  if (it == registries_.end()) return RegistryNotFound(registry);
  if (replaying_.contains(std::string(registry))) return Rebuilding(registry);
  const RegistryMeta& m = it->second.meta;
  auto unsynced = feed_unsynced_.find(it->first);
  return FeedBounds{m.feed_id(), m.feed_first_seq(),
                    unsynced == feed_unsynced_.end() ? m.feed_next_seq() : unsynced->second};
}

void RecordStore::ApplyGroup(const std::vector<std::unique_ptr<Op>>& group) {
  GroupState g;
  for (const auto& op : group) {
    op->continuing = false;
    if (g.bytes > limits::kCommitGroupBytesMax) {
      // Too much for one commit: this op fails retryably rather than making the group
      // unbounded. It is rare (each op is at most ~1 MiB and groups are 512 ops).
      op->status = absl::UnavailableError("write queue full; retry");
      continue;
    }
    // A registry whose replay is due (or failed) takes no change until it is rebuilt.
    if (!op->replayed && !op->registry.empty() && op->type != Op::Type::kCreateRegistry &&
        op->type != Op::Type::kAudit && Replaying(op->registry)) {
      op->status = Rebuilding(op->registry);
      AuditOutcome(*op, g);
      continue;
    }
    switch (op->type) {
      case Op::Type::kCreateRegistry: op->status = ApplyCreateRegistry(*op, g); break;
      case Op::Type::kUpdateRegistry: op->status = ApplyUpdateRegistry(*op, g); break;
      case Op::Type::kWrite: op->status = ApplyWrite(*op, g); break;
      case Op::Type::kApplyRemote: op->status = ApplyRemote(*op, g); break;
      case Op::Type::kAudit: break;
      case Op::Type::kSignTails: op->status = StageTailSignatures(g); break;
      case Op::Type::kCollect: op->status = ApplyCollect(*op, g); break;
      case Op::Type::kRepair: op->status = ApplyRepair(*op, g); break;
      case Op::Type::kCompact: op->status = ApplyCompact(*op, g); break;
      case Op::Type::kNewEpoch:
        // The old epoch's chains end signed (without a key, as with `interco-node
        // --new_epoch`, they are signed at the next start that has one); the HLC moves to
        // now as well: the copy's high water may be far behind.
        if (signer_ != nullptr) {
          if (absl::Status s = StageTailSignatures(g); !s.ok()) {
            op->status = s;
            break;
          }
        }
        epoch_++;
        hlc_.AdvanceTo(hlc_.Now());
        g.new_epoch = true;
        for (const std::string& id : RegistryIds()) {
          absl::StatusOr<RegistryRuntime*> rt = Staged(g, id);
          if (rt.ok() && ShiftEpoch((*rt)->meta)) g.dirty.insert(id);
        }
        break;
    }
    AuditOutcome(*op, g);
    if (!g.broken.ok()) break;
  }
  // An op that does not go on in the next group ends with this one (its outcome reported
  // after it), except on failure below.
  const auto fail_group = [&group] {
    for (const auto& op : group) op->continuing = false;
  };
  if (!g.broken.ok()) {
    // An op failed half-way through staging: commit none of the group (each op may be
    // retried; a remote batch comes again).
    fail_group();
    for (const auto& op : group) {
      if (op->status.ok()) {
        op->status = absl::UnavailableError(
            absl::StrCat("not committed (another change of its commit group failed: ",
                         g.broken.message(), "); retry"));
      }
    }
    if (g.new_epoch) epoch_--;
    // The group's audit events still go in: refusals decided before the store, fork
    // records, and each op's outcome (this failure included).
    GroupState audit_only;
    for (const auto& op : group) AuditOutcome(*op, audit_only);
    if (!audit_only.audit.empty() && db_->Write(audit_only.batch, /*sync=*/false).ok()) {
      absl::MutexLock l(&audit_mu_);
      for (auto& [chain, end] : audit_only.audit) audit_chains_[chain] = std::move(end);
    }
    return;
  }

  // One change-log batch per registry: this node's changes of the group, chained to its
  // previous batch of the stream.
  for (auto& [registry, changes] : g.changes) {
    if (absl::Status sealed = StageOwnBatch(g, registry); !sealed.ok()) {
      // Unsigned, a batch would be refused by every peer: commit none of the group.
      fail_group();
      for (const auto& op : group) {
        if (op->status.ok()) {
          op->status = absl::UnavailableError(
              absl::StrCat("cannot sign the change log: ", sealed.message()));
        }
      }
      return;
    }
  }
  // A run that no later batch of its registry closes, while other work keeps the queue
  // from going idle, is signed once it is old enough.
  if (signer_ != nullptr) {
    const int64_t now = clock_.MonotonicMillis();
    for (const auto& [registry, run] : unsigned_runs_) {
      if (g.runs.contains(registry) || now - run.since_ms < limits::kSignIntervalMillis) continue;
      (void)StageTailSignatures(g, &registry);  // on failure, the idle moment retries
    }
  }
  for (const auto& [key, delta] : g.fingerprints) {
    if (delta != 0) g.batch.Merge(db_->handle(Cf::kFingerprints), ToSlice(key), keys::EncodeSum(delta));
  }
  std::vector<std::string> touched;
  for (auto& [registry, rt] : g.registries) {
    if (!g.dirty.contains(registry)) continue;
    RegistryMeta& m = rt.meta;
    if (m.feed_next_seq() - m.feed_first_seq() > feed_retention_ + kFeedTrimSlack) {
      uint64_t new_first = m.feed_next_seq() - feed_retention_;
      {
        // Never past the end readers see (entries waiting for a sync).
        absl::MutexLock l(&mu_);
        auto held = feed_unsynced_.find(registry);
        if (held != feed_unsynced_.end()) new_first = std::min(new_first, held->second);
      }
      g.batch.DeleteRange(db_->handle(Cf::kFeed), ToSlice(keys::Feed(registry, m.feed_first_seq())),
                          ToSlice(keys::Feed(registry, new_first)));
      m.set_feed_first_seq(new_first);
    }
    g.batch.Put(db_->handle(Cf::kRegistries), ToSlice(registry), m.SerializeAsString());
    g.batch.Put(db_->handle(Cf::kMeta), ToSlice(keys::StreamState(registry)),
                ToStreamState(rt.position).SerializeAsString());
    touched.push_back(registry);
  }
  // Every op failed or was a no-op: only audit events (if any) to write, without waiting
  // for the disk (no write is acknowledged by them).
  if (touched.empty() && g.audit.empty() && !g.new_epoch && g.runs.empty() && !g.old_tails_signed) {
    return;
  }

  NodeMeta node_meta;
  node_meta.set_authority(authority_);
  node_meta.set_epoch(epoch_);
  node_meta.set_hlc_high_water(hlc_.last());
  node_meta.set_format_version(kFormatVersion);
  g.batch.Put(db_->handle(Cf::kMeta), ToSlice(keys::kNodeMeta), node_meta.SerializeAsString());

  // A group of slices only acknowledges nothing: it goes to the disk with the next group
  // that does (a slice lost in a crash is merged again when its batch comes again).
  // A group that acknowledges something while feed entries wait for a sync syncs them.
  const bool acknowledges =
      std::any_of(group.begin(), group.end(), [](const auto& op) { return !op->continuing; });
  bool held = false;
  if (sync_ && acknowledges && touched.empty() && !g.new_epoch) {
    absl::MutexLock l(&mu_);
    held = !feed_unsynced_.empty();
  }
  const bool synced = sync_ && acknowledges && (!touched.empty() || g.new_epoch || held);
  // What the node's durability asks for is not done: the feeds this group grows wait.
  const bool unsynced = sync_ && !synced;
  absl::Status s = db_->Write(g.batch, synced);
  if (!s.ok()) {
    // Nothing of the group is durable: every op of it fails, none is acknowledged.
    fail_group();
    for (const auto& op : group) {
      if (op->status.ok()) op->status = s;
    }
    return;
  }
  {
    absl::MutexLock l(&mu_);
    for (const std::string& registry : touched) {
      RegistryRuntime& committed = registries_[registry];
      if (unsynced) feed_unsynced_.try_emplace(registry, committed.meta.feed_next_seq());
      committed = std::move(g.registries.at(registry));
    }
  }
  if (g.new_epoch) {
    absl::MutexLock l(&mu_);
    committed_epoch_ = epoch_;
  }
  for (const std::string& registry : g.compactions) ScheduleCompaction(registry);
  if (!g.replays.empty()) {
    // Fenced from now on, until the replay is done.
    replays_due_.insert(g.replays.begin(), g.replays.end());
    absl::MutexLock l(&mu_);
    replaying_.insert(g.replays.begin(), g.replays.end());
  }
  bool signed_tail = g.old_tails_signed;
  if (g.old_tails_signed) old_tails_.clear();
  for (auto& [registry, run] : g.runs) {
    if (run) {
      unsigned_runs_[registry] = *std::move(run);
    } else {
      unsigned_runs_.erase(registry);
      signed_tail = true;
    }
  }
  if (!g.audit.empty()) {
    absl::MutexLock l(&audit_mu_);
    for (auto& [chain, end] : g.audit) audit_chains_[chain] = std::move(end);
  }
  // Synced (or the node syncs nothing): so is every commit before it.
  if (!unsynced) ReleaseHeldFeeds(/*sync=*/false, std::move(touched));
  if (!g.changes.empty() || signed_tail) NotifyLocalCommit();
}

absl::StatusOr<RecordStore::RegistryRuntime*> RecordStore::Staged(GroupState& g,
                                                                 const std::string& registry) {
  auto it = g.registries.find(registry);
  if (it == g.registries.end()) {
    INTERCO_ASSIGN_OR_RETURN(RegistryRuntime rt, Runtime(registry));
    it = g.registries.emplace(registry, std::move(rt)).first;
  }
  return &it->second;
}

void RecordStore::StageOwnChange(GroupState& g, const RegistryRuntime& rt,
                                 const std::string& registry, std::string change, uint64_t hlc,
                                 bool policy) {
  std::vector<std::string>& pending = g.changes[registry];
  if (policy) g.policy_batches.insert(registry);
  if (pending.empty()) g.policy_version[registry] = rt.policies->current_version();
  g.bytes += change.size();
  pending.push_back(std::move(change));
  uint64_t& max_hlc = g.max_hlc[registry];
  max_hlc = std::max(max_hlc, hlc);
}

absl::Status RecordStore::StageOwnBatch(GroupState& g, const std::string& registry) {
  std::vector<std::string>& changes = g.changes[registry];
  if (changes.empty()) return absl::OkStatus();
  RegistryRuntime& rt = g.registries.at(registry);
  const uint32_t epoch = OwnEpoch(rt.meta);
  replication::OriginPos& pos = rt.position[replication::OriginKey{origin_, epoch}];
  replication::BatchParams params;
  params.origin = origin_;
  params.epoch = epoch;
  params.stream = registry;
  params.first_seq = pos.seq + 1;
  params.prev_hash = pos.last_hash;
  params.max_hlc = g.max_hlc[registry];
  params.policy_version = g.policy_version[registry];
  params.carries_policy = g.policy_batches.contains(registry);
  const size_t count = changes.size();
  g.max_hlc.erase(registry);
  g.policy_version.erase(registry);
  // A run holds batches of one policy version (a peer may read one version and not the
  // next, and a run is sent whole): a new version first closes the run before it.
  std::optional<UnsignedRun> run = RunOf(g, registry);
  if (run && (run->policy_version != params.policy_version || run->epoch != epoch)) {
    INTERCO_RETURN_IF_ERROR(StageTailSignatures(g, &registry));
    run.reset();
  }
  params.run_index = run ? static_cast<uint32_t>(run->batches) : 0;
  std::string header_hash;
  absl::StatusOr<Batch> built = replication::BuildBatch(params, std::exchange(changes, {}), hasher_,
                                                        /*signer=*/nullptr, &header_hash);
  if (!built.ok()) return built.status();
  if (signer_ != nullptr) {
    // One signature per run: under load, batches stay unsigned until the run is long,
    // large or old enough; the next signed batch (or the idle tail, signed by the
    // committer) covers them.
    const int64_t now = clock_.MonotonicMillis();
    UnsignedRun next = run ? *std::move(run) : UnsignedRun{};
    if (next.batches == 0) {
      next.since_ms = now;
      next.policy_version = params.policy_version;
      next.epoch = epoch;
    }
    next.batches++;
    next.changes += count;
    next.bytes += built->ByteSizeLong();
    if (next.batches < limits::kRunBatchesMax && next.changes < limits::kRunChangesUnsignedMax &&
        next.bytes < limits::kRunBytesUnsignedMax &&
        now - next.since_ms < limits::kSignIntervalMillis && now >= next.since_ms) {
      next.tail = *built;
      next.first_seq = params.first_seq;
      g.runs[registry] = std::move(next);
    } else {
      INTERCO_RETURN_IF_ERROR(replication::SignBatch(*built, *signer_.load(), clock_.NowMillis()));
      g.runs[registry] = std::nullopt;
    }
  }
  g.batch.Put(db_->handle(Cf::kLog), ToSlice(keys::Log(registry, origin_, epoch, params.first_seq)),
              built->SerializeAsString());
  if (auto own = g.own_tombstones.find(registry); own != g.own_tombstones.end()) {
    for (const GroupState::OwnTombstone& t : own->second) {
      const uint64_t seq = params.first_seq + t.index;
      PutTombstone(g, keys::Tombstone(registry, origin_, epoch, seq, t.id),
                   replication::Tombstone{t.causal_length, t.hlc, {origin_, epoch}, seq});
    }
    g.own_tombstones.erase(own);
  }
  if (auto own = g.own_removals.find(registry); own != g.own_removals.end()) {
    for (const GroupState::OwnRemovals& r : own->second) {
      const std::string key =
          keys::Tombstone(registry, origin_, epoch, params.first_seq + r.index, r.id);
      std::string value = r.removals.SerializeAsString();
      g.batch.Put(db_->handle(Cf::kRemovals), ToSlice(key), value);
      g.bytes += key.size() + value.size();
      g.removals[key] = std::move(value);
    }
    g.own_removals.erase(own);
  }
  pos.seq += count;
  pos.max_hlc = std::max(pos.max_hlc, params.max_hlc);
  pos.last_hash = std::move(header_hash);
  g.dirty.insert(registry);
  return absl::OkStatus();
}

void RecordStore::StagePolicy(GroupState& g, RegistryRuntime& rt, const std::string& registry,
                              const PolicyChange& change, replication::RegistryPolicy compiled) {
  auto history = std::make_shared<replication::PolicyHistory>(*rt.policies);
  history->Add(change.version(), std::move(compiled));
  // A collection repeats the policy in force: the registry's definition is unchanged.
  if (history->current_version() == change.version() && !change.has_collection()) {
    *rt.meta.mutable_registry()->mutable_policy() = change.policy();
    // The etag must change even if this version is older than the last local change of
    // the definition (a retention setting made here meanwhile).
    rt.meta.set_definition_hlc(std::max(rt.meta.definition_hlc() + 1, change.version()));
  }
  rt.policies = std::move(history);
  const std::string bytes = change.SerializeAsString();
  g.bytes += bytes.size();
  g.batch.Put(db_->handle(Cf::kMeta), ToSlice(keys::Policy(registry, change.version())), bytes);
  g.dirty.insert(registry);
}

absl::StatusOr<RecordStore::ResolvedPolicy> RecordStore::ResolveMembers(std::string_view owner,
                                                                         Policy policy) {
  for (auto [list, name] : {std::pair{policy.mutable_writers(), "writers"},
                            std::pair{policy.mutable_readers(), "readers"}}) {
    std::set<std::string> members;
    for (int i = 0; i < list->members_of_size(); ++i) {
      const std::string& epci = list->members_of(i);
      absl::StatusOr<Record> record = GetRecord(kDirectoryEpci, epci);
      if (!record.ok()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "registry.policy.", name, ".members_of[", i, "]: EPCI ", epci,
            " is not in this node's directory (registry \"", ToAbsl(kDirectoryEpci), "\"): ",
            record.status().message()));
      }
      members.insert(epci);
      auto field = record->fields().find(std::string(kDirectoryMembers));
      if (field != record->fields().end()) {
        for (const std::string& m : field->second.string_set_value().values()) members.insert(m);
      }
    }
    list->clear_members();
    for (const std::string& m : members) list->add_members(m);
  }
  // The directory is data: a member that is not a SIREN is refused like a listed one.
  absl::StatusOr<replication::RegistryPolicy> compiled =
      replication::RegistryPolicy::Compile(owner, policy);
  if (!compiled.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("registry.", compiled.status().message(), " (from the directory)"));
  }
  return ResolvedPolicy{std::move(policy), *std::move(compiled)};
}

absl::Status RecordStore::ApplyCreateRegistry(Op& op, GroupState& g) {
  INTERCO_RETURN_IF_ERROR(replication::ValidateRegistryId(op.registry));
  Registry& def = op.definition;
  if (def.owner().empty()) def.set_owner(op.caller.siren);
  if (absl::Status s = replication::ValidateSiren(def.owner()); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("registry.owner: ", s.message()));
  }
  // A partner's client may create only registries it owns; the node's own authority may
  // also declare a replica of a partner's registry (to replicate it).
  if (def.owner() != op.caller.siren && op.caller.siren != authority_) {
    return absl::PermissionDeniedError(absl::StrCat(
        "registry.owner: ", op.caller.siren, " may only create registries it owns"));
  }
  if (def.display_name().size() > limits::kDisplayNameBytesMax) {
    return absl::InvalidArgumentError("registry.display_name: longer than 256 bytes");
  }
  if (def.audit_retention_days() < 0 || def.audit_retention_days() > limits::kAuditRetentionDaysMax) {
    return absl::InvalidArgumentError(absl::StrCat(
        "registry.audit_retention_days: must be between 0 (default, ",
        limits::kAuditRetentionDaysDefault, ") and ", limits::kAuditRetentionDaysMax));
  }
  auto schema = replication::RegistrySchema::Compile(def.schema());
  if (!schema.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("registry.", schema.status().message()));
  }
  // A definition read from a node (`registry get`) carries the policy in force there, not
  // the one declared at creation that every replica must declare.
  if (def.policy_version() != 0) {
    return absl::InvalidArgumentError(
        "registry.policy_version: output only; a replica declares the policy the registry "
        "was created with (its later versions come from the owner)");
  }
  // `members` is output only: the declared policy (version 0) has none, and every node
  // compiles it alike. On the owner's node, `members_of` is resolved from the directory
  // into a first policy change, which replicates.
  def.mutable_policy()->mutable_writers()->clear_members();
  def.mutable_policy()->mutable_readers()->clear_members();
  auto policy = replication::RegistryPolicy::Compile(def.owner(), def.policy());
  if (!policy.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("registry.", policy.status().message()));
  }
  std::optional<ResolvedPolicy> resolved;
  if (def.owner() == authority_ && (def.policy().writers().members_of_size() > 0 ||
                                    def.policy().readers().members_of_size() > 0)) {
    INTERCO_ASSIGN_OR_RETURN(resolved, ResolveMembers(def.owner(), def.policy()));
  }
  if (g.registries.contains(op.registry) || CheckRegistry(op.registry).ok()) {
    return absl::AlreadyExistsError(absl::StrCat("registry \"", op.registry, "\" already exists"));
  }
  RegistryRuntime rt;
  Registry* stored = rt.meta.mutable_registry();
  stored->set_name(absl::StrCat("registries/", op.registry));
  stored->set_display_name(def.display_name());
  stored->set_owner(def.owner());
  *stored->mutable_schema() = def.schema();
  stored->set_audit_retention_days(def.audit_retention_days());
  *stored->mutable_policy() = def.policy();
  rt.meta.set_create_hlc(hlc_.Now());
  rt.meta.set_feed_next_seq(1);
  rt.meta.set_feed_first_seq(1);
  rt.meta.set_feed_id(NewFeedId(rt.meta.create_hlc()));
  rt.schema = std::make_shared<const replication::RegistrySchema>(*std::move(schema));
  rt.meta.set_definition_hlc(rt.meta.create_hlc());
  rt.policies = std::make_shared<const replication::PolicyHistory>(*std::move(policy));
  PolicyChange declared;
  *declared.mutable_policy() = def.policy();
  g.batch.Put(db_->handle(Cf::kMeta), ToSlice(keys::Policy(op.registry, 0)),
              declared.SerializeAsString());
  g.bytes += rt.meta.ByteSizeLong();
  g.dirty.insert(op.registry);
  RegistryRuntime& staged = g.registries.emplace(op.registry, std::move(rt)).first->second;
  if (resolved) StageOwnPolicyChange(g, staged, op.registry, *std::move(resolved), op.caller);
  op.registry_out = PublicRegistry(staged);
  return absl::OkStatus();
}

absl::Status RecordStore::ApplyUpdateRegistry(Op& op, GroupState& g) {
  INTERCO_ASSIGN_OR_RETURN(RegistryRuntime * staged, Staged(g, op.registry));
  RegistryRuntime& rt = *staged;
  if (op.paths.empty()) {
    return absl::InvalidArgumentError(
        "update_mask: required; paths: \"policy\", \"audit_retention_days\"");
  }
  if (!op.etag.empty() && op.etag != EtagOf(rt.meta)) {
    return absl::AbortedError(absl::StrCat("etag: registry ", op.registry,
                                           " changed since \"", op.etag, "\""));
  }
  const std::string owner = rt.meta.registry().owner();
  std::optional<ResolvedPolicy> policy;
  std::optional<int32_t> retention;
  for (size_t i = 0; i < op.paths.size(); ++i) {
    const std::string& path = op.paths[i];
    if (path == "policy") {
      if (owner != authority_) {
        return absl::FailedPreconditionError(absl::StrCat(
            "registry ", op.registry, " is owned by ", owner,
            ": its policy is set on that authority's node, and replicates from there"));
      }
      if (op.caller.siren != owner) {
        return absl::PermissionDeniedError(absl::StrCat(
            op.caller.Author(), " may not set the policy of registry ", op.registry,
            " (only its owner ", owner, ")"));
      }
      Policy given = op.definition.policy();
      given.mutable_writers()->clear_members();
      given.mutable_readers()->clear_members();
      if (auto compiled = replication::RegistryPolicy::Compile(owner, given); !compiled.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("registry.", compiled.status().message()));
      }
      INTERCO_ASSIGN_OR_RETURN(policy, ResolveMembers(owner, std::move(given)));
    } else if (path == "audit_retention_days") {
      if (op.caller.siren != authority_) {
        return absl::PermissionDeniedError(absl::StrCat(
            op.caller.Author(), " may not set this node's audit retention (only ", authority_,
            ")"));
      }
      const int32_t days = op.definition.audit_retention_days();
      if (days < 0 || days > limits::kAuditRetentionDaysMax) {
        return absl::InvalidArgumentError(absl::StrCat(
            "registry.audit_retention_days: must be between 0 (default, ",
            limits::kAuditRetentionDaysDefault, ") and ", limits::kAuditRetentionDaysMax));
      }
      retention = days;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "update_mask.paths[", i, "]: \"", path,
          "\" cannot be updated (paths: \"policy\", \"audit_retention_days\")"));
    }
  }
  // Checked in full: now staged, all or nothing.
  if (retention) {
    rt.meta.mutable_registry()->set_audit_retention_days(*retention);
    rt.meta.set_definition_hlc(std::max(rt.meta.definition_hlc() + 1, hlc_.Now()));
    g.dirty.insert(op.registry);
  }
  if (policy) StageOwnPolicyChange(g, rt, op.registry, *std::move(policy), op.caller);
  op.registry_out = PublicRegistry(rt);
  return absl::OkStatus();
}

void RecordStore::StageOwnPolicyChange(GroupState& g, RegistryRuntime& rt,
                                       const std::string& registry, ResolvedPolicy policy,
                                       const replication::Principal& author) {
  PolicyChange change;
  *change.mutable_policy() = std::move(policy.first);
  change.set_version(hlc_.Now());
  Change c;
  *c.mutable_policy() = change;
  c.set_author(author.Author());
  // Staged before the new version is in force: the batch names the version it changes.
  StageOwnChange(g, rt, registry, c.SerializeAsString(), change.version(), /*policy=*/true);
  StagePolicy(g, rt, registry, change, std::move(policy.second));
}

absl::Status RecordStore::ApplyWrite(Op& op, GroupState& g) {
  INTERCO_ASSIGN_OR_RETURN(RegistryRuntime * staged, Staged(g, op.registry));
  RegistryRuntime& rt = *staged;
  const uint32_t caller = replication::SirenToOrigin(op.caller.siren).value_or(0);
  if (!rt.policies->Current().MayWrite(caller)) {
    return absl::PermissionDeniedError(
        absl::StrCat(op.caller.Author(), " may not write registry ", op.registry,
                     " (not among the writers of its policy)"));
  }
  INTERCO_ASSIGN_OR_RETURN(RecordState current,
                           StagedState(g, keys::Record(op.registry, op.key)));

  const replication::Stamp stamp{hlc_.Now(), origin_};
  INTERCO_ASSIGN_OR_RETURN(auto planned,
                           replication::PlanLocalWrite(*rt.schema, current, op.write, stamp));
  const std::string name = RecordName(op.registry, op.key);
  if (!planned.has_value()) {  // no-op: the record stays as it is
    replication::ToRecord(name, current, op.record);
    return absl::OkStatus();
  }
  // A local write replaces what it saw: it journals nothing, but a delete ends the races
  // of the record's life.
  INTERCO_RETURN_IF_ERROR(StageConflicts(rt, g, op.registry, op.key, current, planned->delta,
                                         [](replication::Stamp) { return true; }));
  // A tombstone of this change is indexed when the group's batch is sealed (StageOwnBatch).
  if (auto t = replication::TombstoneSet(planned->merged, planned->delta,
                                         replication::OriginKey{origin_, OwnEpoch(rt.meta)}, 0)) {
    g.own_tombstones[op.registry].push_back(
        GroupState::OwnTombstone{g.changes[op.registry].size(), op.key, t->causal_length, t->hlc});
  }
  if (replication::RecordState removals = replication::RemovalsOf(planned->delta);
      removals.fields_size() > 0) {
    g.own_removals[op.registry].push_back(
        GroupState::OwnRemovals{g.changes[op.registry].size(), op.key, std::move(removals)});
  }
  Change change;
  change.set_key(op.key);
  *change.mutable_delta() = std::move(planned->delta);
  change.set_author(op.caller.Author());
  replication::CompactChange(change, origin_, stamp.hlc);
  StageOwnChange(g, rt, op.registry, change.SerializeAsString(), stamp.hlc);
  StageRecord(rt, g, op.registry, op.key, current, std::move(planned->merged), &op.record);
  return absl::OkStatus();
}

void RecordStore::StageRecord(RegistryRuntime& rt, GroupState& g, const std::string& registry,
                              const std::string& id, const RecordState& before, RecordState after,
                              Record* public_record, bool quiet) {
  const bool was_live = replication::IsLive(before);
  const bool is_live = replication::IsLive(after);

  // Secondary indexes: remove entries of values that went away, add the new ones.
  bool has_index = false;
  for (const auto& spec : rt.schema->proto().fields()) has_index |= spec.indexed();
  if (has_index) {
    FieldValues old_fields, new_fields;
    replication::VisibleFields(before, old_fields);
    replication::VisibleFields(after, new_fields);
    for (const auto& spec : rt.schema->proto().fields()) {
      if (!spec.indexed()) continue;
      const std::set<std::string> old_values = IndexValues(old_fields, spec.name());
      const std::set<std::string> new_values = IndexValues(new_fields, spec.name());
      for (const std::string& v : old_values) {
        if (!new_values.contains(v)) {
          g.batch.Delete(db_->handle(Cf::kIndex),
                         ToSlice(keys::IndexEntry(registry, spec.name(), v, id)));
        }
      }
      for (const std::string& v : new_values) {
        if (!old_values.contains(v)) {
          g.batch.Put(db_->handle(Cf::kIndex),
                      ToSlice(keys::IndexEntry(registry, spec.name(), v, id)), "");
        }
      }
    }
  }

  const std::string key = keys::Record(registry, id);
  const std::string state_bytes = after.SerializeAsString();
  g.bytes += state_bytes.size();
  g.batch.Put(db_->handle(Cf::kRecords), ToSlice(key), state_bytes);

  // The bucket sum of live records' digests moves by the new digest minus the old one.
  if (was_live || is_live) {
    uint64_t& sum =
        g.fingerprints[keys::Fingerprint(registry, replication::FingerprintBucket(hasher_, id))];
    uint64_t delta = 0;
    if (was_live) delta -= replication::FingerprintDigest(hasher_, id, before.SerializeAsString());
    if (is_live) delta += replication::FingerprintDigest(hasher_, id, state_bytes);
    sum += delta;
    rt.meta.set_live_sum(rt.meta.live_sum() + delta);
  }

  if (!quiet) {
    FeedEntry entry;
    entry.set_kind(is_live ? interco::v1::CHANGE_KIND_UPSERT : interco::v1::CHANGE_KIND_DELETE);
    replication::ToRecord(RecordName(registry, id), after, *entry.mutable_record());
    const uint64_t seq = rt.meta.feed_next_seq();
    rt.meta.set_feed_next_seq(seq + 1);
    g.batch.Put(db_->handle(Cf::kFeed), ToSlice(keys::Feed(registry, seq)),
                entry.SerializeAsString());
    if (public_record != nullptr) *public_record = entry.record();
  }

  if (was_live != is_live) rt.meta.set_record_count(rt.meta.record_count() + (is_live ? 1 : -1));
  g.records[key] = std::move(after);
  g.dirty.insert(registry);
}

namespace {

// Whether mark `m` (RegistryMeta.partial) is of a batch at `h`'s place of its origin's
// chain.
bool AtPlaceOf(const interco::internal::v1::PartialBatch& m, const BatchHeader& h) {
  return m.origin() == h.origin() && m.epoch() == h.epoch() && m.first_seq() == h.first_seq();
}

// The mark of the batch at `h`'s place, merged in part here, if there is one.
interco::internal::v1::PartialBatch* PartialMark(RegistryMeta& meta, const BatchHeader& h) {
  for (auto& m : *meta.mutable_partial()) {
    if (AtPlaceOf(m, h)) return &m;
  }
  return nullptr;
}

}  // namespace

absl::Status RecordStore::ApplyRemote(Op& op, GroupState& g) {
  const replication::DecodedBatch& batch = *op.remote;
  const BatchHeader& h = batch.header;
  INTERCO_ASSIGN_OR_RETURN(RegistryRuntime * staged, Staged(g, op.registry));
  RegistryRuntime& rt = *staged;
  // Judged again against the staged policy versions and position (the engine judged the
  // committed ones); a later slice of a batch merged in slices, against what committed
  // since its first.
  const replication::Exclusions exclusions(rt.meta.exclusions());
  INTERCO_RETURN_IF_ERROR(replication::AuthorizeBatch(batch, *rt.policies, &exclusions));
  INTERCO_RETURN_IF_ERROR(replication::CollectionReady(batch, rt.position));
  const interco::internal::v1::PartialBatch* mark = PartialMark(rt.meta, h);
  if (op.next_change > 0 && (mark == nullptr || mark->merged() != op.next_change)) {
    op.next_change = 0;  // a rebuild from the log took its first slices out: all again
  }
  const bool later_slice = op.next_change > 0;
  if (!later_slice) {
    // Every change checked before any is staged: a malformed one refuses the whole batch.
    for (size_t i = 0; i < batch.changes.size(); ++i) {
      const Change& c = batch.changes[i];
      if (c.has_policy()) continue;
      if (absl::Status s = replication::ValidateDelta(*rt.schema, c.delta(), h.origin());
          !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("change ", i, " (record ", c.key(),
                                                       ") of origin ",
                                                       replication::OriginToSiren(h.origin()),
                                                       ": ", s.message()));
      }
    }
  }
  const replication::OriginKey key{h.origin(), h.epoch()};
  replication::OriginPos& pos = rt.position[key];
  // (A skip's chain, from before its header, is taken on the sender's word.)
  if (!replication::Follows(batch, pos.seq) ||
      (replication::ChainsFrom(batch, pos.seq) && h.prev_hash() != pos.last_hash)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "batch ", h.first_seq(), " of origin ", h.origin(), " does not follow ", pos.seq));
  }
  if (!later_slice) {
    // Stamps grow along the chain (DecodeBatch checks them within the batch; a hollow
    // batch has only its header's greatest stamp to show).
    const uint64_t first_stamp =
        batch.changes.empty() ? h.max_hlc() : replication::ChangeStamp(batch.changes.front());
    if (pos.seq > 0 && first_stamp <= pos.max_hlc) {
      return absl::InvalidArgumentError(absl::StrCat(
          "batch ", h.first_seq(), " of origin ", replication::OriginToSiren(h.origin()),
          " is stamped ", first_stamp, ", not after the batch before it (", pos.max_hlc, ")"));
    }
    if (mark != nullptr) {
      if (mark->header_hash() != batch.header_hash) {
        // The records hold the first changes of another batch at this place of the chain
        // (a branch of a fork): they go with a rebuild from the log, then this one comes
        // again.
        rt.meta.set_rebuild(true);
        g.replays.insert(op.registry);
        g.dirty.insert(op.registry);
        return absl::UnavailableError(absl::StrCat(
            "registry ", op.registry, " held part of another batch ", h.first_seq(),
            " of origin ", replication::OriginToSiren(h.origin()),
            ": it is rebuilt from its log; retry"));
      }
      // Merged in part before (a crash, a failure half-way): it goes on after the changes
      // already merged, which are not merged twice.
      op.next_change = mark->merged();
    }
  }
  // From here on the batch (or its slice) is staged change by change: a failure half-way
  // breaks the group (nothing of it is committed).
  absl::Status changes_staged = StageRemoteChanges(op, g, rt);
  if (!changes_staged.ok()) g.broken = changes_staged;
  return changes_staged;
}

absl::Status RecordStore::StageRemoteChanges(Op& op, GroupState& g, RegistryRuntime& rt) {
  const replication::DecodedBatch& batch = *op.remote;
  const BatchHeader& h = batch.header;
  replication::OriginPos& pos = rt.position[replication::OriginKey{h.origin(), h.epoch()}];
  std::vector<AuditEvent> policy_events;
  replication::VersionVector purged = replication::FromDots(rt.meta.purged());
  // A large batch of record changes only is merged in slices, one commit group each:
  // local writes commit between them instead of waiting for the whole batch. Each change
  // is one write of its origin, merged whole in one slice; the batch, the position and
  // anything the engine acknowledges come with the last slice. Each slice notes in the
  // batch's mark how far the merge went, so that a batch coming again after a crash or a
  // failure goes on from there.
  const size_t first = op.next_change;
  size_t end = batch.changes.size();
  if (!op.replayed && end > limits::kApplySliceChanges &&
      std::none_of(batch.changes.begin(), batch.changes.end(),
                   [](const Change& c) { return c.has_policy(); })) {
    end = std::min(end, first + limits::kApplySliceChanges);
  }
  for (size_t i = first; i < end; ++i) {
    const Change& c = batch.changes[i];
    const uint64_t seq = h.first_seq() + i;
    if (c.has_policy() && c.policy().has_collection()) {
      // The owner's collection, at its point of the owner's chain.
      INTERCO_ASSIGN_OR_RETURN(
          replication::RegistryPolicy compiled,
          replication::CompilePolicyChange(rt.meta.registry().owner(), c.policy(),
                                           h.policy_version(), h.max_hlc()));
      StagePolicy(g, rt, op.registry, c.policy(), std::move(compiled));
      INTERCO_ASSIGN_OR_RETURN(
          std::vector<CollectionCandidate> candidates,
          CollectionCandidates(g, op.registry,
                               replication::FromDots(c.policy().collection().frontier())));
      StageCollection(g, rt, op.registry, candidates);
      INTERCO_RETURN_IF_ERROR(StagePurge(g, rt, op.registry,
                                         replication::FromDots(c.policy().collection().frontier()),
                                         /*dry_run=*/false)
                                  .status());
      purged = replication::FromDots(rt.meta.purged());
      INTERCO_RETURN_IF_ERROR(
          ExpireJournals(g, rt, op.registry, c.policy().collection().journal_before()));
      interco::replication::v1::Dot at;
      at.set_origin(h.origin());
      at.set_epoch(h.epoch());
      at.set_seq(seq);
      INTERCO_RETURN_IF_ERROR(StageExclusion(g, rt, op.registry, c.policy().collection(),
                                             c.policy().version(), at));
      if (rt.meta.replay_size() > 0) g.replays.insert(op.registry);
      if (!op.replayed) g.compactions.insert(op.registry);
      continue;
    }
    if (c.has_policy()) {
      // This node's changes staged earlier in the group keep the version they were
      // allowed under (their batch names the version in force at its first change, and
      // later ones are only taken if allowed then too).
      INTERCO_ASSIGN_OR_RETURN(
          replication::RegistryPolicy compiled,
          replication::CompilePolicyChange(rt.meta.registry().owner(), c.policy(),
                                           h.policy_version(), h.max_hlc()));
      StagePolicy(g, rt, op.registry, c.policy(), std::move(compiled));
      AuditEvent e;
      e.set_action(AuditEvent::UPDATE_REGISTRY);
      e.set_registry(op.registry);
      e.set_origin(replication::OriginToSiren(h.origin()));
      e.set_caller(c.author());
      e.add_fields("policy");
      e.set_accepted(true);
      policy_events.push_back(std::move(e));  // audited once the whole batch is staged
      continue;
    }
    INTERCO_ASSIGN_OR_RETURN(RecordState current,
                             StagedState(g, keys::Record(op.registry, c.key())));
    // Even a change that loses everywhere (and changes no state) may be a conflict.
    INTERCO_RETURN_IF_ERROR(StageConflicts(
        rt, g, op.registry, c.key(), current, c.delta(),
        [&](replication::Stamp s) { return replication::ReceivedBefore(rt.position, h, s); }));
    RecordState merged = current;
    bool changed = replication::MergeRecordState(merged, c.delta());
    // A remove concurrent with a collected one does not bring its element back.
    if (changed && replication::DropPurgedRemovals(current, c.delta(), merged, purged) > 0) {
      changed = merged.SerializeAsString() != current.SerializeAsString();
    }
    // A delete already absorbed (a repair brought its state) is still indexed by its
    // change, so that the collection of it removes the record here too; so are removes.
    StageTombstone(g, op.registry, c.key(), merged, c.delta(),
                   replication::OriginKey{h.origin(), h.epoch()}, seq);
    StageRemovals(g, op.registry, c.key(), c.delta(), replication::OriginKey{h.origin(), h.epoch()},
                  seq);
    if (!changed) continue;
    StageRecord(rt, g, op.registry, c.key(), current, std::move(merged), nullptr);
  }
  // Later local writes are stamped after everything received (in slices, after every
  // change of the batch already: a local write between two slices may replace one).
  hlc_.AdvanceTo(h.max_hlc());
  if (end < batch.changes.size()) {
    interco::internal::v1::PartialBatch* mark = PartialMark(rt.meta, h);
    if (mark == nullptr) {
      mark = rt.meta.add_partial();
      mark->set_origin(h.origin());
      mark->set_epoch(h.epoch());
      mark->set_first_seq(h.first_seq());
      mark->set_header_hash(batch.header_hash);
    }
    mark->set_merged(end);
    op.next_change = end;
    op.continuing = true;
    g.dirty.insert(op.registry);
    return absl::OkStatus();
  }
  // Logged under the sequence number after the position: a batch's first; a skip's
  // start, or later if the first of its stretch were held already (it is logged for what
  // it brought here). A skip reaching back over the log's trailing unsigned batches (a
  // run broken off here, hollow where the skip comes from) takes their place instead:
  // their proof is in the headers it leaves out.
  const replication::OriginKey key{h.origin(), h.epoch()};
  // (A skip whose header comes right after them proves them, and they stay.)
  uint64_t log_at = pos.seq + 1;
  if (batch.raw.skip_from() > 0 && batch.first_seq() <= pos.seq &&
      !replication::ChainsFrom(batch, pos.seq)) {
    INTERCO_ASSIGN_OR_RETURN(const std::vector<std::string> tail,
                             UnsignedTail(op.registry, key, pos.seq));
    if (!tail.empty()) {
      const uint64_t tail_start = keys::ParseLog(tail.front(), op.registry)->seq;
      if (batch.first_seq() <= tail_start) {
        for (const std::string& k : tail) {
          g.batch.Delete(db_->handle(Cf::kLog), ToSlice(k));
          g.log_rewritten.insert(k);
        }
        log_at = tail_start;
      }
    }
  }
  // The batch is whole here now (a skip: every batch it stands for, hollow, whatever
  // part of one was merged here).
  auto& marks = *rt.meta.mutable_partial();
  const uint64_t from = log_at, to = batch.last_seq();
  marks.erase(std::remove_if(marks.begin(), marks.end(),
                             [&](const auto& m) {
                               return m.origin() == h.origin() && m.epoch() == h.epoch() &&
                                      m.first_seq() >= from && m.first_seq() <= to;
                             }),
              marks.end());
  std::optional<Batch> rebased;
  if (batch.raw.skip_from() > 0) {
    rebased = replication::Skip(batch.raw, log_at);
    op.logged_at = log_at;
  }
  const Batch& logged = rebased ? *rebased : batch.raw;
  g.batch.Put(db_->handle(Cf::kLog), ToSlice(keys::Log(op.registry, h.origin(), h.epoch(), log_at)),
              logged.SerializeAsString());
  g.bytes += logged.ByteSizeLong();
  if (batch.raw.hollow() && !op.replayed) rt.meta.set_hollow_received(rt.meta.hollow_received() + 1);
  pos.seq = batch.last_seq();
  pos.max_hlc = std::max(pos.max_hlc, h.max_hlc());
  pos.last_hash = batch.header_hash;
  g.dirty.insert(op.registry);
  // (Audited when first applied: a replay applies it again silently.)
  if (!op.replayed) {
    for (AuditEvent& e : policy_events) StageAudit(g, std::move(e));
  }
  return absl::OkStatus();
}

void RecordStore::StageTombstone(GroupState& g, const std::string& registry,
                                 const std::string& id, const RecordState& after,
                                 const RecordState& delta, replication::OriginKey key,
                                 uint64_t seq) {
  std::optional<replication::Tombstone> t = replication::TombstoneSet(after, delta, key, seq);
  if (!t) return;
  PutTombstone(g, keys::Tombstone(registry, key.origin, key.epoch, seq, id), *t);
}

void RecordStore::PutTombstone(GroupState& g, std::string tkey, const replication::Tombstone& t) {
  std::string value = keys::EncodeTombstoneValue(t.causal_length, t.hlc);
  g.batch.Put(db_->handle(Cf::kTombstones), ToSlice(tkey), value);
  g.bytes += tkey.size() + value.size();
  g.tombstones[std::move(tkey)] = std::move(value);
}

absl::StatusOr<RecordState> RecordStore::StagedState(GroupState& g, const std::string& key) {
  if (auto it = g.records.find(key); it != g.records.end()) return it->second;
  RecordState state;
  INTERCO_ASSIGN_OR_RETURN(auto raw, db_->Get(Cf::kRecords, key));
  if (raw.has_value()) INTERCO_RETURN_IF_ERROR(ParseStored(*raw, state, "record"));
  return state;
}

absl::StatusOr<std::map<std::string, std::pair<std::string, replication::Tombstone>>>
RecordStore::TombstonesUnder(GroupState& g, const std::string& registry,
                             const replication::VersionVector& frontier) {
  std::map<std::string, std::pair<std::string, replication::Tombstone>> out;
  auto take = [&](std::string_view tkey, std::string_view value) -> absl::Status {
    std::optional<keys::TombstoneKey> parsed = keys::ParseTombstone(tkey, registry);
    std::optional<std::pair<uint32_t, uint64_t>> decoded = keys::DecodeTombstoneValue(value);
    if (!parsed || !decoded) {
      return absl::DataLossError(absl::StrCat("malformed tombstone entry in registry ", registry));
    }
    replication::Tombstone t{decoded->first, decoded->second,
                             replication::OriginKey{parsed->origin, parsed->epoch}, parsed->seq};
    out[std::string(tkey)] = {std::string(parsed->record), t};
    return absl::OkStatus();
  };
  INTERCO_RETURN_IF_ERROR(ScanUnder(Cf::kTombstones, g.tombstones, registry, frontier, take));
  return out;
}

absl::Status RecordStore::ScanUnder(
    Cf cf, const std::map<std::string, std::string>& staged, const std::string& registry,
    const replication::VersionVector& frontier,
    const std::function<absl::Status(std::string_view key, std::string_view value)>& take) {
  for (const auto& [key, pos] : frontier) {
    const std::string lo = keys::TombstonePrefix(registry, key.origin, key.epoch);
    std::string hi = lo;
    keys::PutBigEndian64(hi, pos.seq + 1);
    std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(cf);
    for (it->Seek(ToSlice(lo)); it->Valid() && it->key().ToStringView() < hi; it->Next()) {
      INTERCO_RETURN_IF_ERROR(take(it->key().ToStringView(), it->value().ToStringView()));
    }
    INTERCO_RETURN_IF_ERROR(
        FromRocksStatus(it->status(), absl::StrCat("reading ", ToAbsl(CfName(cf)))));
    for (auto s = staged.lower_bound(lo); s != staged.end() && s->first < hi; ++s) {
      INTERCO_RETURN_IF_ERROR(take(s->first, s->second));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<RecordStore::CollectionCandidate>> RecordStore::CollectionCandidates(
    GroupState& g, const std::string& registry, const replication::VersionVector& frontier) {
  INTERCO_ASSIGN_OR_RETURN(auto under, TombstonesUnder(g, registry, frontier));
  std::vector<CollectionCandidate> out;
  out.reserve(under.size());
  for (auto& [tkey, entry] : under) {
    const auto& [id, tombstone] = entry;
    std::string key = keys::Record(registry, id);
    INTERCO_ASSIGN_OR_RETURN(RecordState state, StagedState(g, key));
    out.push_back(CollectionCandidate{tkey, std::move(key),
                                      replication::Collectable(state, tombstone, frontier)});
  }
  return out;
}

void RecordStore::StageCollection(GroupState& g, RegistryRuntime& rt, const std::string& registry,
                                  const std::vector<CollectionCandidate>& candidates) {
  uint64_t collected = 0;
  for (const CollectionCandidate& c : candidates) {
    if (c.collectable) {
      // A deleted record has no index entries, no journal, and does not count.
      g.batch.Delete(db_->handle(Cf::kRecords), ToSlice(c.record_key));
      g.batch.Delete(db_->handle(Cf::kConflicts), ToSlice(c.record_key));
      g.records[c.record_key] = RecordState();
      // An empty journal, not none: the committed one must not show through.
      g.conflicts[c.record_key].Clear();
      collected++;
    }
    // Collected, or no longer the record's tombstone: the entry has served.
    g.batch.Delete(db_->handle(Cf::kTombstones), ToSlice(c.tombstone_key));
    g.tombstones.erase(c.tombstone_key);
  }
  rt.meta.set_collected_records(rt.meta.collected_records() + collected);
  g.dirty.insert(registry);
}

absl::Status RecordStore::ApplyCollect(Op& op, GroupState& g) {
  INTERCO_ASSIGN_OR_RETURN(RegistryRuntime * staged, Staged(g, op.registry));
  RegistryRuntime& rt = *staged;
  if (rt.policies->owner() != origin_) return absl::OkStatus();  // not ours: nothing done
  // Tombstones, where the members are settled (a writer added since the frontier was
  // computed was not waited for: not now).
  std::vector<CollectionCandidate> candidates;
  bool tombstones = replication::CollectionAllowed(*rt.policies) && !op.frontier.empty();
  const std::set<uint32_t> counted(op.members.begin(), op.members.end());
  for (uint32_t w : rt.policies->AllWriters()) tombstones = tombstones && counted.contains(w);
  // Removed set elements, where the same holds.
  bool removals = false;
  replication::VersionVector frontier;
  // The members the frontier left out, and where their epochs end (their cuts): with
  // them, the exclusions this collection leaves in force.
  // The cuts are what this node holds of them as it commits (more may have come since the
  // plan was made: cut there, it keeps them, and requires them of every node).
  interco::replication::v1::Collection leaving;
  replication::VersionVector cuts;
  for (uint32_t m : op.excluded) {
    leaving.add_excluded(m);
    for (auto it = rt.position.lower_bound(replication::OriginKey{m, 0});
         it != rt.position.end() && it->first.origin == m; ++it) {
      if (it->second.seq == 0) continue;
      cuts[it->first].seq = it->second.seq;
      replication::OriginPos& r = op.required[it->first];
      r.seq = std::max(r.seq, it->second.seq);
    }
  }
  replication::ToDots(cuts, *leaving.mutable_cuts());
  replication::Exclusions exclusions(rt.meta.exclusions());
  exclusions.Apply(leaving, 0, interco::replication::v1::Dot());
  // For the compaction of the change log (replication/compaction.h): a frontier far
  // enough beyond the last one, and the journals' cut with it.
  const bool compaction = tombstones && op.compaction_changes > 0 &&
                          op.journal_before > rt.meta.journal_before() &&
                          replication::ChangesBeyond(replication::FromDots(rt.meta.purged()),
                                                     op.frontier) >= op.compaction_changes;
  if (tombstones) {
    // Every epoch this node knows of the frontier's origins, at 0 if none is under it: an
    // add is known by its stamp only, which does not say its epoch.
    replication::VersionVector named = op.frontier;
    for (const auto& [key, pos] : rt.position) {
      auto same = named.lower_bound(replication::OriginKey{key.origin, 0});
      if (same != named.end() && same->first.origin == key.origin) named.try_emplace(key);
    }
    INTERCO_ASSIGN_OR_RETURN(frontier, StampFrontier(op.registry, std::move(named)));
    replication::MarkClosed(exclusions, frontier);
    INTERCO_ASSIGN_OR_RETURN(candidates, CollectionCandidates(g, op.registry, frontier));
    INTERCO_ASSIGN_OR_RETURN(removals,
                             StagePurge(g, rt, op.registry, frontier, /*dry_run=*/true));
    // Under the frontier, an entry whose record moved on (created again) is dead: it goes
    // too, on every node, so that no index entry outlives what it was for.
    tombstones = !candidates.empty();
  }
  // Journal entries past the retention, in any registry (it needs no stability).
  bool journals = false;
  if (op.journal_before > rt.meta.journal_before()) {
    INTERCO_ASSIGN_OR_RETURN(uint64_t oldest, OldestJournalStamp(g, rt, op.registry));
    if (oldest < op.journal_before) {
      // The bound may be stale (entries went with their record's life): read them through.
      rt.meta.set_journal_oldest(0);
      INTERCO_ASSIGN_OR_RETURN(oldest, OldestJournalStamp(g, rt, op.registry));
    }
    journals = oldest < op.journal_before;
  }
  if (!tombstones && !removals && !journals && !compaction) return absl::OkStatus();
  PolicyChange change;
  *change.mutable_policy() = rt.meta.registry().policy();
  change.set_version(hlc_.Now());
  interco::replication::v1::Collection& collection = *change.mutable_collection();
  if (tombstones || removals || compaction) {
    replication::ToDots(frontier, *collection.mutable_frontier(), /*keep_empty=*/true);
    replication::ToDots(op.required, *collection.mutable_required());
    *collection.mutable_excluded() = leaving.excluded();
    *collection.mutable_cuts() = leaving.cuts();
    // What every receiver checks (replication::AuthorizeBatch): a collection it would
    // refuse would stop this node's chain everywhere. Not made, rather.
    if (static_cast<size_t>(collection.frontier_size()) > limits::kReportOriginsMax ||
        static_cast<size_t>(collection.required_size()) > limits::kReportOriginsMax) {
      return absl::FailedPreconditionError("the collection would name too many origins");
    }
    INTERCO_RETURN_IF_ERROR(replication::CheckExclusion(collection, origin_));
  }
  if (journals || compaction) collection.set_journal_before(op.journal_before);
  Change c;
  *c.mutable_policy() = change;
  c.set_author(replication::OriginToSiren(origin_));
  // Where the change goes in this node's chain (the group's own changes are sealed in
  // order into one batch).
  interco::replication::v1::Dot at;
  at.set_origin(origin_);
  at.set_epoch(OwnEpoch(rt.meta));
  at.set_seq(rt.position[replication::OriginKey{origin_, at.epoch()}].seq +
             g.changes[op.registry].size() + 1);
  // Staged before the new version is in force: the batch names the version before it.
  StageOwnChange(g, rt, op.registry, c.SerializeAsString(), change.version(), /*policy=*/true);
  StagePolicy(g, rt, op.registry, change, rt.policies->Current());
  if (absl::Status s = StageExclusion(g, rt, op.registry, collection, change.version(), at);
      !s.ok()) {
    g.broken = s;
    return s;
  }
  if (tombstones || removals || compaction) {
    StageCollection(g, rt, op.registry, candidates);
    // As every node applying it: the removed set elements it covers, and its frontier
    // kept (RegistryMeta.purged) whether or not it took any out.
    if (absl::Status s = StagePurge(g, rt, op.registry, frontier, /*dry_run=*/false).status();
        !s.ok()) {
      g.broken = s;
      return s;
    }
  }
  if (journals || compaction) {
    // Reading the journals may fail once the change is staged: the group then breaks.
    if (absl::Status s = ExpireJournals(g, rt, op.registry, op.journal_before); !s.ok()) {
      g.broken = s;
      return s;
    }
  }
  g.compactions.insert(op.registry);
  op.collected = true;
  return absl::OkStatus();
}

uint64_t RecordStore::NewFeedId(uint64_t salt) {
  // splitmix64: feed IDs only need to differ between registries and store lives.
  random_state_ += 0x9e3779b97f4a7c15ULL;
  uint64_t z = random_state_ ^ salt;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void RecordStore::Notify(const std::vector<std::string>& registries) {
  absl::MutexLock l(&listeners_mu_);
  for (auto& [id, listener] : listeners_) {
    if (std::find(registries.begin(), registries.end(), listener.first) != registries.end()) {
      listener.second();
    }
  }
}

uint64_t RecordStore::Subscribe(std::string registry, std::function<void()> listener) {
  absl::MutexLock l(&listeners_mu_);
  const uint64_t id = next_subscription_++;
  listeners_.emplace(id, std::make_pair(std::move(registry), std::move(listener)));
  return id;
}

void RecordStore::Unsubscribe(uint64_t subscription) {
  absl::MutexLock l(&listeners_mu_);
  listeners_.erase(subscription);
}

// ---------------------------------------------------------------------------------------
// Public operations.

std::string RecordStore::EtagOf(const RegistryMeta& meta) {
  return absl::StrFormat("%016x",
                         meta.definition_hlc() != 0 ? meta.definition_hlc() : meta.create_hlc());
}

Registry RecordStore::PublicRegistry(const RegistryRuntime& rt) const {
  Registry out = rt.meta.registry();
  replication::HlcToTimestamp(rt.meta.create_hlc(), *out.mutable_create_time());
  out.set_record_count(rt.meta.record_count());
  out.set_etag(EtagOf(rt.meta));
  out.set_policy_version(rt.policies->current_version());
  out.set_conflict_count(rt.meta.conflict_count());
  return out;
}

absl::StatusOr<Registry> RecordStore::CreateRegistry(std::string_view id, Registry definition,
                                                     const replication::Principal& caller) {
  auto op = std::make_unique<Op>();
  op->type = Op::Type::kCreateRegistry;
  op->registry = std::string(id);
  op->definition = std::move(definition);
  op->caller = caller;
  Registry out;
  INTERCO_RETURN_IF_ERROR(
      EnqueueAndWait(std::move(op), [&](Op& o) { out = std::move(o.registry_out); }));
  return out;
}

absl::StatusOr<Registry> RecordStore::UpdateRegistry(std::string_view id, Registry update,
                                                     std::vector<std::string> paths,
                                                     std::string etag,
                                                     const replication::Principal& caller) {
  auto op = std::make_unique<Op>();
  op->type = Op::Type::kUpdateRegistry;
  op->registry = std::string(id);
  op->definition = std::move(update);
  op->paths = std::move(paths);
  op->etag = std::move(etag);
  op->caller = caller;
  Registry out;
  INTERCO_RETURN_IF_ERROR(
      EnqueueAndWait(std::move(op), [&](Op& o) { out = std::move(o.registry_out); }));
  return out;
}

absl::StatusOr<Registry> RecordStore::GetRegistry(std::string_view id) {
  INTERCO_ASSIGN_OR_RETURN(RegistryRuntime rt, Runtime(id));
  return PublicRegistry(rt);
}

std::vector<Registry> RecordStore::Registries() {
  std::vector<Registry> out;
  {
    absl::MutexLock l(&mu_);
    for (const auto& [id, rt] : registries_) out.push_back(PublicRegistry(rt));
  }
  std::sort(out.begin(), out.end(),
            [](const Registry& a, const Registry& b) { return a.name() < b.name(); });
  return out;
}

absl::StatusOr<RegistryPage> RecordStore::ListRegistries(int32_t page_size,
                                                         std::string_view page_token) {
  INTERCO_ASSIGN_OR_RETURN(const size_t max, PageSizeOf(page_size));
  PageToken token;
  if (!page_token.empty()) {
    INTERCO_RETURN_IF_ERROR(DecodeToken(page_token, "page_token", token));
    if (token.request_fingerprint() != Fnv64("registries")) {
      return absl::InvalidArgumentError("page_token: not a ListRegistries token");
    }
  }
  RegistryPage page;
  for (Registry& r : Registries()) {
    if (!token.after_key().empty() && r.name() <= token.after_key()) continue;
    if (page.registries.size() == max) {
      page.next_page_token = NextPageToken(page.registries.back().name(), Fnv64("registries"));
      break;
    }
    page.registries.push_back(std::move(r));
  }
  return page;
}

absl::StatusOr<RecordState> RecordStore::LiveState(std::string_view registry, std::string_view id) {
  INTERCO_ASSIGN_OR_RETURN(std::optional<RecordState> stored, StoredState(registry, id));
  RecordState state = stored.value_or(RecordState());
  if (!replication::IsLive(state)) {
    return absl::NotFoundError(absl::StrCat("record \"", ToAbsl(id), "\" not found in registry \"",
                                            ToAbsl(registry), "\""));
  }
  return state;
}

absl::StatusOr<RecordStore::Collected> RecordStore::CollectedOf(std::string_view registry) {
  INTERCO_ASSIGN_OR_RETURN(RegistryRuntime rt, Runtime(registry));
  return Collected{rt.meta.collected_records(), rt.meta.purged_removals(),
                   rt.meta.expired_conflicts(), rt.meta.hollowed_batches(),
                   rt.meta.hollowed_bytes(), rt.meta.hollow_received(),
                   rt.meta.folded_batches(), rt.meta.folded_bytes()};
}

absl::StatusOr<std::optional<RecordState>> RecordStore::StoredState(std::string_view registry,
                                                                   std::string_view id) {
  INTERCO_RETURN_IF_ERROR(CheckReadable(registry));
  INTERCO_ASSIGN_OR_RETURN(auto raw, db_->Get(Cf::kRecords, keys::Record(registry, id)));
  if (!raw.has_value()) return std::nullopt;
  RecordState state;
  INTERCO_RETURN_IF_ERROR(ParseStored(*raw, state, "record"));
  return state;
}

absl::StatusOr<Record> RecordStore::GetRecord(std::string_view registry, std::string_view id) {
  INTERCO_ASSIGN_OR_RETURN(RecordState state, LiveState(registry, id));
  Record out;
  replication::ToRecord(RecordName(registry, id), state, out);
  return out;
}

absl::StatusOr<std::vector<Record>> RecordStore::BatchGetRecords(
    std::string_view registry, const std::vector<std::string>& ids) {
  if (ids.size() > limits::kBatchGetMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("names: at most ", limits::kBatchGetMax, " records per call"));
  }
  INTERCO_RETURN_IF_ERROR(CheckReadable(registry));
  // One snapshot, so that the batch is a consistent view.
  const rocksdb::Snapshot* snap = db_->db().GetSnapshot();
  std::vector<Record> out;
  absl::Status status;
  for (const std::string& id : ids) {
    auto raw = db_->Get(Cf::kRecords, keys::Record(registry, id), snap);
    if (!raw.ok()) {
      status = raw.status();
      break;
    }
    RecordState state;
    if (raw->has_value()) {
      status = ParseStored(**raw, state, "record");
      if (!status.ok()) break;
    }
    if (!replication::IsLive(state)) {
      status = absl::NotFoundError(absl::StrCat("record \"", id, "\" not found"));
      break;
    }
    replication::ToRecord(RecordName(registry, id), state, out.emplace_back());
  }
  db_->db().ReleaseSnapshot(snap);
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<ConflictPage> RecordStore::ListConflicts(std::string_view registry,
                                                        std::string_view record_id,
                                                        int32_t page_size,
                                                        std::string_view page_token) {
  INTERCO_ASSIGN_OR_RETURN(const size_t max, PageSizeOf(page_size));
  INTERCO_RETURN_IF_ERROR(CheckReadable(registry));
  const uint64_t fingerprint = Fnv64(absl::StrCat("conflicts\n", ToAbsl(registry), "\n", ToAbsl(record_id)));
  PageToken token;
  if (!page_token.empty()) {
    INTERCO_RETURN_IF_ERROR(DecodeToken(page_token, "page_token", token));
    if (token.request_fingerprint() != fingerprint) {
      return absl::InvalidArgumentError("page_token: was issued for another registry or record");
    }
  }
  const std::string prefix = keys::RegistryPrefix(registry);
  std::string start = prefix + std::string(record_id);
  if (!token.after_key().empty()) {
    std::string after = prefix + token.after_key();
    after.push_back('\0');  // strictly after
    start = std::max(start, after);
  }
  ConflictPage page;
  std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(Cf::kConflicts);
  std::string last;
  bool more = false;
  for (it->Seek(ToSlice(start)); it->Valid(); it->Next()) {
    const std::string_view k = ToView(it->key());
    if (!k.starts_with(prefix)) break;
    const std::string_view id = k.substr(prefix.size());
    if (!record_id.empty() && id != record_id) break;
    replication::RecordConflicts journal;
    INTERCO_RETURN_IF_ERROR(ParseStored(ToView(it->value()), journal, "conflict journal"));
    // A page ends with a record, and holds at least one.
    if (!page.conflicts.empty() &&
        page.conflicts.size() + static_cast<size_t>(journal.lost_size()) > max) {
      more = true;
      break;
    }
    last = std::string(id);
    page.dropped += journal.dropped();
    const std::string name = RecordName(registry, id);
    for (const auto& lost : journal.lost()) {
      interco::v1::Conflict& c = page.conflicts.emplace_back();
      c.set_record(name);
      c.set_field(lost.loser().name());
      if (lost.loser().has_value()) *c.mutable_losing_value() = lost.loser().value();
      c.set_losing_origin(replication::OriginToSiren(lost.loser().origin()));
      replication::HlcToTimestamp(lost.loser().hlc(), *c.mutable_losing_time());
      c.set_winning_origin(replication::OriginToSiren(lost.winner_origin()));
      replication::HlcToTimestamp(lost.winner_hlc(), *c.mutable_winning_time());
    }
  }
  INTERCO_RETURN_IF_ERROR(FromRocksStatus(it->status(), "listing conflicts"));
  if (more) page.next_page_token = NextPageToken(std::move(last), fingerprint);
  return page;
}

absl::StatusOr<RecordPage> RecordStore::ListRecords(const ListQuery& q) {
  INTERCO_ASSIGN_OR_RETURN(const size_t page_size, PageSizeOf(q.page_size));
  if (q.filters.size() > limits::kFiltersMax) {
    return absl::InvalidArgumentError(
        absl::StrCat("filters: at most ", limits::kFiltersMax, " filters"));
  }
  INTERCO_ASSIGN_OR_RETURN(std::shared_ptr<const replication::RegistrySchema> schema,
                           SchemaOf(q.registry));
  // Validate the filters against the schema; pick an indexed one to drive the scan.
  const FieldFilter* driver = nullptr;
  std::string driver_value;
  std::string fingerprint_input = absl::StrCat(q.registry, "\n", q.id_prefix);
  for (size_t i = 0; i < q.filters.size(); ++i) {
    const FieldFilter& f = q.filters[i];
    const std::string path = absl::StrCat("filters[", i, "]");
    const interco::v1::FieldSpec* spec = schema->Find(f.field());
    if (spec == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ".field: no such field \"", f.field(), "\" in the schema"));
    }
    interco::v1::FieldSpec element_spec = *spec;
    if (spec->type() == interco::v1::FIELD_TYPE_STRING_SET) {
      element_spec.set_type(interco::v1::FIELD_TYPE_STRING);
    }
    element_spec.set_required(true);
    INTERCO_RETURN_IF_ERROR(schema->ValidateValue(element_spec, f.value(), path + ".value"));
    if (spec->indexed() && driver == nullptr) {
      driver = &f;
      driver_value = f.value().has_string_value() ? keys::EncodeIndexString(f.value().string_value())
                                                  : keys::EncodeIndexValue(f.value()).value_or("");
    }
    absl::StrAppend(&fingerprint_input, "\n", f.SerializeAsString());
  }
  const uint64_t fingerprint = Fnv64(fingerprint_input);
  PageToken token;
  if (!q.page_token.empty()) {
    INTERCO_RETURN_IF_ERROR(DecodeToken(q.page_token, "page_token", token));
    if (token.request_fingerprint() != fingerprint) {
      return absl::InvalidArgumentError(
          "page_token: was issued for another registry, prefix or filters");
    }
  }

  RecordPage page;
  const rocksdb::Snapshot* snap = db_->db().GetSnapshot();
  // Iterate candidate record IDs in order: from the index of the driving filter, or
  // from the records themselves.
  const std::string prefix = driver != nullptr
                                 ? keys::IndexValuePrefix(q.registry, driver->field(), driver_value)
                                 : keys::RegistryPrefix(q.registry);
  std::unique_ptr<rocksdb::Iterator> it =
      db_->NewIterator(driver != nullptr ? Cf::kIndex : Cf::kRecords, snap);
  std::string start = prefix + q.id_prefix;
  if (!token.after_key().empty()) {
    std::string after = prefix + token.after_key();
    after.push_back('\0');  // strictly after
    start = std::max(start, after);
  }
  size_t examined = 0;
  std::string last_examined;
  absl::Status status;
  bool more = false;
  for (it->Seek(ToSlice(start)); it->Valid(); it->Next()) {
    const std::string_view k = ToView(it->key());
    if (!absl::StartsWith(absl::string_view(k.data(), k.size()), prefix)) break;
    const std::string_view id = k.substr(prefix.size());
    if (!absl::StartsWith(absl::string_view(id.data(), id.size()), q.id_prefix)) break;
    if (page.records.size() == page_size || examined == limits::kListScanRecordsMax) {
      more = true;
      break;
    }
    ++examined;
    last_examined = std::string(id);
    RecordState state;
    if (driver != nullptr) {
      auto raw = db_->Get(Cf::kRecords, keys::Record(q.registry, id), snap);
      if (!raw.ok()) {
        status = raw.status();
        break;
      }
      if (!raw->has_value()) {
        status = absl::DataLossError(absl::StrCat("index entry without record: ", ToAbsl(id)));
        break;
      }
      status = ParseStored(**raw, state, "record");
    } else {
      status = ParseStored(ToView(it->value()), state, "record");
    }
    if (!status.ok()) break;
    if (!replication::IsLive(state)) continue;
    bool match = true;
    if (!q.filters.empty()) {
      FieldValues visible;
      replication::VisibleFields(state, visible);
      for (const FieldFilter& f : q.filters) match = match && Matches(visible, f);
    }
    if (match) replication::ToRecord(RecordName(q.registry, id), state, page.records.emplace_back());
  }
  if (status.ok()) status = FromRocksStatus(it->status(), "listing records");
  it.reset();
  db_->db().ReleaseSnapshot(snap);
  if (!status.ok()) return status;
  if (more) page.next_page_token = NextPageToken(std::move(last_examined), fingerprint);
  return page;
}

void RecordStore::WriteAsync(std::string_view registry, std::string_view id,
                             replication::LocalWrite write, const replication::Principal& author,
                             WriteCallback done) {
  if (absl::Status s = replication::ValidateRecordId(id); !s.ok()) {
    done(s);
    return;
  }
  auto op = std::make_unique<Op>();
  op->type = Op::Type::kWrite;
  op->registry = std::string(registry);
  op->key = std::string(id);
  op->write = std::move(write);
  op->caller = author;
  op->done = [done = std::move(done)](Op& o) {
    done(o.status.ok() ? absl::StatusOr<Record>(std::move(o.record)) : o.status);
  };
  Enqueue(std::move(op));
}

absl::StatusOr<Record> RecordStore::Write(std::string_view registry, std::string_view id,
                                          replication::LocalWrite write,
                                          const replication::Principal& author) {
  absl::StatusOr<Record> result;
  absl::Notification committed;
  WriteAsync(registry, id, std::move(write), author, [&](absl::StatusOr<Record> r) {
    result = std::move(r);
    committed.Notify();
  });
  committed.WaitForNotification();
  return result;
}

// ---------------------------------------------------------------------------------------
// Change feed.

absl::StatusOr<std::string> RecordStore::CurrentCursor(std::string_view registry, bool oldest) {
  INTERCO_ASSIGN_OR_RETURN(FeedBounds feed, FeedOf(registry));
  WatchCursor c;
  c.set_feed_id(feed.feed_id);
  c.set_seq(oldest ? feed.first_seq - 1 : feed.next_seq - 1);
  return EncodeToken(c);
}

absl::StatusOr<FeedPage> RecordStore::ReadFeed(std::string_view registry, std::string_view cursor,
                                               size_t max_changes) {
  INTERCO_ASSIGN_OR_RETURN(FeedBounds feed, FeedOf(registry));
  WatchCursor c;
  INTERCO_RETURN_IF_ERROR(DecodeToken(cursor, "cursor", c));
  if (c.feed_id() != feed.feed_id) {
    return absl::InvalidArgumentError(
        "cursor: belongs to another registry, node or life of this registry");
  }
  if (c.seq() >= feed.next_seq) {
    return absl::InvalidArgumentError("cursor: is ahead of this node's change feed");
  }
  if (c.seq() + 1 < feed.first_seq) {
    return absl::OutOfRangeError(absl::StrCat(
        "cursor: the change feed no longer holds the changes after it (", c.seq(),
        " < ", feed.first_seq - 1, "); list the registry again and watch from now"));
  }
  FeedPage page;
  const uint64_t end = feed.next_seq;  // committed end as of this read
  std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(Cf::kFeed);
  uint64_t last = c.seq();
  for (it->Seek(ToSlice(keys::Feed(registry, c.seq() + 1)));
       it->Valid() && page.changes.size() < max_changes; it->Next()) {
    const std::string_view k = ToView(it->key());
    const uint64_t seq = keys::FeedSeqOf(k);
    if (k.size() != registry.size() + 9 || k.substr(0, registry.size()) != registry ||
        seq >= end) {
      break;
    }
    if (seq != last + 1) {
      return absl::DataLossError(absl::StrCat("change feed gap at ", last + 1));
    }
    FeedEntry entry;
    INTERCO_RETURN_IF_ERROR(ParseStored(ToView(it->value()), entry, "feed entry"));
    interco::v1::RecordChange& ch = page.changes.emplace_back();
    ch.set_kind(entry.kind());
    *ch.mutable_record() = std::move(*entry.mutable_record());
    c.set_seq(seq);
    ch.set_cursor(EncodeToken(c));
    last = seq;
  }
  INTERCO_RETURN_IF_ERROR(FromRocksStatus(it->status(), "reading the change feed"));
  c.set_seq(last);
  page.cursor = EncodeToken(c);
  return page;
}

// ---------------------------------------------------------------------------------------
// Replication.

std::vector<std::string> RecordStore::RegistryIds() {
  std::vector<std::string> out;
  {
    absl::MutexLock l(&mu_);
    for (const auto& [id, rt] : registries_) out.push_back(id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<replication::VersionVector> RecordStore::Position(std::string_view registry) {
  absl::MutexLock l(&mu_);
  auto it = registries_.find(ToAbsl(registry));
  if (it == registries_.end()) return RegistryNotFound(registry);
  return it->second.position;
}

absl::StatusOr<replication::StateDigest> RecordStore::Digest(std::string_view registry) {
  absl::MutexLock l(&mu_);
  auto it = registries_.find(ToAbsl(registry));
  if (it == registries_.end()) return RegistryNotFound(registry);
  const RegistryRuntime& rt = it->second;
  if (replaying_.contains(std::string(registry)) || rt.meta.replay_size() > 0 ||
      rt.meta.rebuild()) {
    return Rebuilding(registry);
  }
  if (rt.meta.partial_size() > 0) {
    // Its records hold changes of a batch its position does not have yet.
    return absl::UnavailableError(absl::StrCat("registry ", ToAbsl(registry),
                                               " is merging a remote batch in slices"));
  }
  replication::StateDigest out;
  out.position = rt.position;
  out.live_sum = rt.meta.live_sum();
  out.live_records = static_cast<uint64_t>(rt.meta.record_count());
  return out;
}

absl::StatusOr<std::vector<std::string>> RecordStore::UnsignedTail(const std::string& registry,
                                                                   replication::OriginKey key,
                                                                   uint64_t seq) {
  std::vector<std::string> out;
  const std::string prefix = keys::Log(registry, key.origin, key.epoch, 0).substr(
      0, registry.size() + 1 + 8);
  std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(Cf::kLog);
  it->SeekForPrev(ToSlice(keys::Log(registry, key.origin, key.epoch, seq)));
  for (; it->Valid() && ToView(it->key()).starts_with(prefix) && out.size() < limits::kRunBatchesMax;
       it->Prev()) {
    Batch batch;
    if (!batch.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return absl::DataLossError(absl::StrCat("log batch of ", registry, " does not parse"));
    }
    if (!batch.signature().empty()) break;
    out.emplace_back(ToView(it->key()));
  }
  INTERCO_RETURN_IF_ERROR(FromRocksStatus(it->status(), "reading the change log"));
  std::reverse(out.begin(), out.end());
  return out;
}

absl::StatusOr<std::vector<Batch>> RecordStore::ReadBatches(std::string_view registry,
                                                            replication::OriginKey key,
                                                            uint64_t after_seq, size_t max) {
  std::vector<Batch> out;
  const std::string prefix = keys::Log(registry, key.origin, key.epoch, 0).substr(
      0, registry.size() + 1 + 8);
  std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(Cf::kLog);
  // The batch holding after_seq + 1 starts at or before it: seek just past it and step back.
  it->SeekForPrev(ToSlice(keys::Log(registry, key.origin, key.epoch, after_seq + 1)));
  if (!it->Valid() || !ToView(it->key()).starts_with(prefix)) it->Seek(ToSlice(prefix));
  for (; it->Valid() && ToView(it->key()).starts_with(prefix) && out.size() < max; it->Next()) {
    Batch batch;
    BatchHeader header;
    if (!batch.ParseFromArray(it->value().data(), static_cast<int>(it->value().size())) ||
        !header.ParseFromString(batch.header())) {
      return absl::DataLossError(absl::StrCat("log batch of ", ToAbsl(registry), " does not parse"));
    }
    if (header.first_seq() + header.count() - 1 <= after_seq) continue;
    out.push_back(std::move(batch));
  }
  INTERCO_RETURN_IF_ERROR(FromRocksStatus(it->status(), "reading the change log"));
  return out;
}

absl::Status RecordStore::ApplyRemoteBatch(std::string_view registry,
                                           const replication::DecodedBatch& batch) {
  auto op = std::make_unique<Op>();
  op->type = Op::Type::kApplyRemote;
  op->registry = std::string(registry);
  op->remote = &batch;
  return EnqueueAndWait(std::move(op));
}

absl::Status RecordStore::EnqueueAndWait(std::unique_ptr<Op> op,
                                          const std::function<void(Op&)>& on_success) {
  absl::Status result;
  absl::Notification committed;
  op->done = [&](Op& o) {
    result = o.status;
    if (result.ok() && on_success) on_success(o);
    committed.Notify();
  };
  Enqueue(std::move(op));
  committed.WaitForNotification();
  return result;
}

void RecordStore::SetLocalCommitListener(std::function<void()> listener) {
  absl::MutexLock l(&listener_mu_);
  local_commit_listener_ = std::move(listener);
}

void RecordStore::SetSigner(replication::Signer* signer) {
  signer_ = signer;
  if (signer == nullptr) return;
  // Tails left unsigned by a crash (or an earlier run without a key) are signed now.
  auto op = std::make_unique<Op>();
  op->type = Op::Type::kSignTails;
  op->done = [](Op&) {};
  Enqueue(std::move(op));
}

absl::StatusOr<uint32_t> RecordStore::StartNewEpoch() {
  // Through the commit queue, so that it is ordered with writes (the committer owns epoch_).
  auto op = std::make_unique<Op>();
  op->type = Op::Type::kNewEpoch;
  if (absl::Status s = EnqueueAndWait(std::move(op)); !s.ok()) return s;
  return epoch();
}

uint32_t RecordStore::epoch() {
  absl::MutexLock l(&mu_);
  return committed_epoch_;
}

absl::Status RecordStore::PutCertificate(std::string_view key_id, std::string_view der) {
  rocksdb::WriteBatch wb;
  wb.Put(db_->handle(Cf::kMeta), ToSlice(keys::Certificate(key_id)), ToSlice(der));
  return db_->Write(wb, /*sync=*/true);
}

absl::StatusOr<std::vector<std::string>> RecordStore::Certificates() {
  std::vector<std::string> out;
  for (auto& [key, value] : ScanMeta(keys::kCertificatePrefix)) out.push_back(std::move(value));
  return out;
}

absl::Status RecordStore::RecordFork(const interco::replication::v1::ForkEvidence& evidence) {
  rocksdb::WriteBatch wb;
  wb.Put(db_->handle(Cf::kMeta), ToSlice(keys::Fork(evidence.origin(), evidence.stream())),
         evidence.SerializeAsString());
  return db_->Write(wb, /*sync=*/true);
}

std::vector<interco::replication::v1::ForkEvidence> RecordStore::Forks() {
  std::vector<interco::replication::v1::ForkEvidence> out;
  for (auto& [key, value] : ScanMeta(keys::kForkPrefix)) {
    interco::replication::v1::ForkEvidence f;
    if (f.ParseFromString(value)) out.push_back(std::move(f));
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> RecordStore::ScanMeta(std::string_view prefix) {
  std::vector<std::pair<std::string, std::string>> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(Cf::kMeta));
  for (it->Seek(ToSlice(prefix)); it->Valid() && it->key().starts_with(ToSlice(prefix)); it->Next()) {
    out.emplace_back(it->key().ToString(), it->value().ToString());
  }
  return out;
}

int64_t RecordStore::SizeOnDisk() { return db_->SizeOnDisk(); }

std::map<std::string, int64_t> RecordStore::SizeByFamily() {
  std::map<std::string, int64_t> out;
  for (int i = 0; i < static_cast<int>(Cf::kCount); ++i) {
    out[std::string(CfName(static_cast<Cf>(i)))] = db_->FamilySizeOnDisk(static_cast<Cf>(i));
  }
  return out;
}

absl::Status RecordStore::Compact() { return db_->CompactAll(); }

// ---------------------------------------------------------------------------------------
// Consistency check.

absl::StatusOr<std::string> RecordStore::CheckConsistency() {
  absl::flat_hash_map<std::string, RegistryRuntime> registries;
  {
    absl::MutexLock l(&mu_);
    registries = registries_;
  }
  const rocksdb::Snapshot* snap = db_->db().GetSnapshot();
  auto release = [&] { db_->db().ReleaseSnapshot(snap); };
  uint64_t records = 0, index_entries = 0, feed_entries = 0, batches = 0, fingerprinted = 0;
  for (const auto& [registry, rt] : registries) {
    const std::string prefix = keys::RegistryPrefix(registry);
    // Records: count live ones, and collect the index entries they imply.
    std::set<std::string> expected_index;
    int64_t live = 0;
    auto it = db_->NewIterator(Cf::kRecords, snap);
    for (it->Seek(ToSlice(prefix)); it->Valid() && ToView(it->key()).starts_with(prefix);
         it->Next()) {
      RecordState state;
      if (!state.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        release();
        return absl::DataLossError(absl::StrCat("record ", it->key().ToString(), " does not parse"));
      }
      ++records;
      if (!replication::IsLive(state)) continue;
      ++live;
      FieldValues visible;
      replication::VisibleFields(state, visible);
      const std::string_view id = ToView(it->key()).substr(prefix.size());
      for (const auto& spec : rt.schema->proto().fields()) {
        if (!spec.indexed()) continue;
        for (const std::string& v : IndexValues(visible, spec.name())) {
          expected_index.insert(keys::IndexEntry(registry, spec.name(), v, id));
        }
      }
    }
    if (live != rt.meta.record_count()) {
      release();
      return absl::DataLossError(absl::StrCat("registry ", registry, ": ", live,
                                              " live records but a count of ",
                                              rt.meta.record_count()));
    }
    // Conflict journals: of live records only, parsed, adding up to the registry's count.
    int64_t lost = 0;
    it = db_->NewIterator(Cf::kConflicts, snap);
    for (it->Seek(ToSlice(prefix)); it->Valid() && ToView(it->key()).starts_with(prefix);
         it->Next()) {
      replication::RecordConflicts journal;
      absl::StatusOr<std::optional<std::string>> record =
          db_->Get(Cf::kRecords, ToView(it->key()), snap);
      RecordState state;
      if (!journal.ParseFromArray(it->value().data(), static_cast<int>(it->value().size())) ||
          !record.ok() || !record->has_value() || !state.ParseFromString(**record) ||
          !replication::IsLive(state)) {
        release();
        return absl::DataLossError(absl::StrCat("conflict journal ", it->key().ToString(),
                                                " does not parse or has no live record"));
      }
      lost += journal.lost_size();
      // Nothing below the retention's cut, nor below the oldest stamp the meta bounds.
      const uint64_t oldest = replication::OldestConflict(journal);
      if (oldest != 0 && (oldest < rt.meta.journal_before() ||
                          (rt.meta.journal_oldest() != 0 && oldest < rt.meta.journal_oldest()))) {
        release();
        return absl::DataLossError(absl::StrCat(
            "conflict journal ", it->key().ToString(), " holds an entry stamped ", oldest,
            ", below the retention's cut ", rt.meta.journal_before(),
            " or the oldest stamp on record ", rt.meta.journal_oldest()));
      }
    }
    if (lost != rt.meta.conflict_count()) {
      release();
      return absl::DataLossError(absl::StrCat("registry ", registry, ": ", lost,
                                              " lost writes in its journals but a count of ",
                                              rt.meta.conflict_count()));
    }
    std::set<std::string> actual_index;
    it = db_->NewIterator(Cf::kIndex, snap);
    for (it->Seek(ToSlice(prefix)); it->Valid() && ToView(it->key()).starts_with(prefix);
         it->Next()) {
      actual_index.emplace(ToView(it->key()));
    }
    if (actual_index != expected_index) {
      release();
      return absl::DataLossError(absl::StrCat("registry ", registry, ": index has ",
                                              actual_index.size(), " entries, records imply ",
                                              expected_index.size()));
    }
    index_entries += actual_index.size();
    // Feed: exactly the range [first, next).
    uint64_t expect = rt.meta.feed_first_seq();
    it = db_->NewIterator(Cf::kFeed, snap);
    for (it->Seek(ToSlice(prefix)); it->Valid() && ToView(it->key()).starts_with(prefix);
         it->Next()) {
      if (keys::FeedSeqOf(ToView(it->key())) != expect) {
        release();
        return absl::DataLossError(absl::StrCat("registry ", registry, ": feed entry ",
                                                keys::FeedSeqOf(ToView(it->key())),
                                                " where ", expect, " was expected"));
      }
      ++expect;
      ++feed_entries;
    }
    if (expect != rt.meta.feed_next_seq()) {
      release();
      return absl::DataLossError(absl::StrCat("registry ", registry, ": feed ends at ", expect,
                                              ", metadata says ", rt.meta.feed_next_seq()));
    }
    // Fingerprints: the stored bucket sums are those of the live records.
    {
      absl::StatusOr<std::map<uint32_t, uint64_t>> stored = ReadFingerprints(registry, snap);
      absl::StatusOr<std::map<uint32_t, uint64_t>> computed = ComputeFingerprints(registry, snap);
      if (!stored.ok() || !computed.ok() || *stored != *computed) {
        release();
        if (!stored.ok()) return stored.status();
        if (!computed.ok()) return computed.status();
        return absl::DataLossError(absl::StrCat(
            "registry ", registry, ": fingerprints of ", stored->size(),
            " buckets stored, its records make ", computed->size(), ", and they differ"));
      }
      uint64_t total = 0;
      for (const auto& [bucket, sum] : *computed) total += sum;
      if (total != rt.meta.live_sum()) {
        release();
        return absl::DataLossError(absl::StrCat("registry ", registry,
                                                ": the live records' digests sum to ", total,
                                                ", metadata says ", rt.meta.live_sum()));
      }
      fingerprinted += computed->size();
    }
    // Change log, per origin epoch: sequence numbers without gaps, hashes chained, and
    // ending where the stream's position says.
    replication::VersionVector seen;
    it = db_->NewIterator(Cf::kLog, snap);
    for (it->Seek(ToSlice(prefix)); it->Valid() && ToView(it->key()).starts_with(prefix);
         it->Next()) {
      Batch batch;
      BatchHeader header;
      if (!batch.ParseFromArray(it->value().data(), static_cast<int>(it->value().size())) ||
          !header.ParseFromString(batch.header())) {
        release();
        return absl::DataLossError(absl::StrCat("registry ", registry, ": log batch does not parse"));
      }
      auto decoded = replication::DecodeBatch(batch, hasher_);
      replication::OriginPos& p = seen[replication::OriginKey{header.origin(), header.epoch()}];
      // A skip (its stretch's headers are not here) starts where it is logged.
      if (!decoded.ok() ||
          (batch.skip_from() > 0
               ? decoded->first_seq() != p.seq + 1 ||
                     ToView(it->key()) != keys::Log(registry, header.origin(), header.epoch(),
                                                    batch.skip_from())
               : header.first_seq() != p.seq + 1 || header.prev_hash() != p.last_hash)) {
        release();
        return absl::DataLossError(absl::StrCat("registry ", registry, ": change log of origin ",
                                                header.origin(), " broken at seq ", p.seq + 1));
      }
      p.seq = decoded->last_seq();
      p.max_hlc = std::max(p.max_hlc, header.max_hlc());
      p.last_hash = decoded->header_hash;
      ++batches;
    }
    for (const auto& [key, pos] : rt.position) {
      const replication::OriginPos& p = seen[key];
      if (p.seq != pos.seq || p.last_hash != pos.last_hash) {
        release();
        return absl::DataLossError(absl::StrCat("registry ", registry, ": change log of origin ",
                                                key.origin, " ends at ", p.seq,
                                                ", the stream position says ", pos.seq));
      }
    }
  }
  release();
  INTERCO_RETURN_IF_ERROR(CheckAudit());
  return absl::StrCat("ok: ", registries.size(), " registries, ", records, " records, ",
                      index_entries, " index entries, ", feed_entries, " feed entries, ",
                      fingerprinted, " fingerprint buckets, ", batches,
                      " log batches, audit chains intact");
}

}  // namespace interco::node
