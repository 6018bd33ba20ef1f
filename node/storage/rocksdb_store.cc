#include "node/storage/rocksdb_store.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "replication/base/status_macros.h"
#include "replication/base/strings.h"
#include "rocksdb/cache.h"
#include "rocksdb/filter_policy.h"
#include "rocksdb/merge_operator.h"
#include "rocksdb/table.h"

namespace interco::node {
namespace {

constexpr std::array<const char*, static_cast<int>(Cf::kCount)> kCfNames = {
    "meta", "registries", "records", "index", "feed", "log", "audit", "conflicts",
    "tombstones", "fingerprints", "removals"};

// The fingerprints family's values are 64-bit big-endian sums; a merge operand adds its
// value to them (mod 2^64), so that a commit moves a bucket's sum without reading it.
class Add64Operator final : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice& /*key*/, const rocksdb::Slice* existing,
             const rocksdb::Slice& value, std::string* new_value,
             rocksdb::Logger* /*logger*/) const override {
    if (value.size() != 8 || (existing != nullptr && existing->size() != 8)) return false;
    uint64_t sum = Decode(value);
    if (existing != nullptr) sum += Decode(*existing);
    new_value->resize(8);
    for (int i = 7; i >= 0; --i, sum >>= 8) (*new_value)[i] = static_cast<char>(sum & 0xff);
    return true;
  }
  const char* Name() const override { return "interco.Add64"; }

 private:
  static uint64_t Decode(const rocksdb::Slice& s) {
    uint64_t v = 0;
    for (size_t i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(s[i]);
    return v;
  }
};

}  // namespace

absl::Status FromRocksStatus(const rocksdb::Status& s, std::string_view context) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = absl::StrCat(ToAbsl(context), ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(msg);
  if (s.IsNotSupported()) return absl::UnimplementedError(msg);
  if (s.IsIOError() || s.IsBusy() || s.IsTimedOut() || s.IsTryAgain()) {
    return absl::UnavailableError(msg);
  }
  if (s.IsIncomplete() || s.IsShutdownInProgress()) return absl::UnavailableError(msg);
  if (s.IsAborted()) return absl::AbortedError(msg);
  return absl::InternalError(msg);
}

absl::StatusOr<std::unique_ptr<RocksDbStore>> RocksDbStore::Open(const RocksDbOptions& options) {
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = 2;
  db_options.bytes_per_sync = 1 << 20;
  // A node is one process per store; refuse a second opener instead of corrupting.
  db_options.paranoid_checks = true;
  db_options.max_total_wal_size = 256 << 20;
  db_options.keep_log_file_num = 4;

  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  table.format_version = 5;

  rocksdb::ColumnFamilyOptions cf_options;
  cf_options.write_buffer_size = options.write_buffer_bytes;
  cf_options.compression = rocksdb::kLZ4Compression;
  cf_options.bottommost_compression = rocksdb::kZSTD;
  cf_options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));

  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  descriptors.emplace_back(rocksdb::kDefaultColumnFamilyName, cf_options);
  for (const char* name : kCfNames) descriptors.emplace_back(name, cf_options);
  descriptors[1 + static_cast<int>(Cf::kFingerprints)].options.merge_operator =
      std::make_shared<Add64Operator>();

  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, options.path, descriptors, &handles, &raw);
  if (!s.ok()) return FromRocksStatus(s, absl::StrCat("opening store ", options.path));
  auto store = std::unique_ptr<RocksDbStore>(new RocksDbStore());
  store->db_.reset(raw);
  store->default_handle_ = handles[0];
  for (size_t i = 1; i < handles.size(); ++i) store->handles_[i - 1] = handles[i];
  return store;
}

RocksDbStore::~RocksDbStore() {
  if (db_ == nullptr) return;
  for (auto* h : handles_) {
    if (h != nullptr) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  }
  db_->DestroyColumnFamilyHandle(default_handle_).PermitUncheckedError();
  // Close flushes nothing that the WAL does not already hold; its status only matters
  // to callers that could act on it, and a destructor cannot.
  db_->Close().PermitUncheckedError();
}

absl::StatusOr<std::optional<std::string>> RocksDbStore::Get(Cf cf, std::string_view key,
                                                            const rocksdb::Snapshot* snapshot) {
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  std::string value;
  rocksdb::Status s = db_->Get(ro, handle(cf), rocksdb::Slice(key.data(), key.size()), &value);
  if (s.IsNotFound()) return std::nullopt;
  if (!s.ok()) return FromRocksStatus(s, "reading the store");
  return value;
}

absl::Status RocksDbStore::Write(rocksdb::WriteBatch& batch, bool sync) {
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  return FromRocksStatus(db_->Write(wo, &batch), "writing the store");
}

absl::Status RocksDbStore::SyncWal() {
  return FromRocksStatus(db_->SyncWAL(), "syncing the write-ahead log");
}

std::unique_ptr<rocksdb::Iterator> RocksDbStore::NewIterator(Cf cf,
                                                             const rocksdb::Snapshot* snapshot) {
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  return std::unique_ptr<rocksdb::Iterator>(db_->NewIterator(ro, handle(cf)));
}

int64_t RocksDbStore::SizeOnDisk() {
  uint64_t total = 0;
  for (auto* h : handles_) {
    uint64_t v = 0;
    if (db_->GetIntProperty(h, rocksdb::DB::Properties::kTotalSstFilesSize, &v)) total += v;
  }
  rocksdb::VectorLogPtr wal_files;
  if (db_->GetSortedWalFiles(wal_files).ok()) {
    for (const auto& f : wal_files) total += f->SizeFileBytes();
  }
  return static_cast<int64_t>(total);
}

std::string_view CfName(Cf cf) { return kCfNames[static_cast<size_t>(cf)]; }

int64_t RocksDbStore::FamilySizeOnDisk(Cf cf) {
  uint64_t v = 0;
  db_->GetIntProperty(handle(cf), rocksdb::DB::Properties::kTotalSstFilesSize, &v);
  return static_cast<int64_t>(v);
}

absl::Status RocksDbStore::CompactAll() {
  for (auto* h : handles_) {
    INTERCO_RETURN_IF_ERROR(FromRocksStatus(db_->Flush(rocksdb::FlushOptions(), h), "flushing"));
    rocksdb::CompactRangeOptions options;
    options.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    INTERCO_RETURN_IF_ERROR(
        FromRocksStatus(db_->CompactRange(options, h, nullptr, nullptr), "compacting"));
  }
  return absl::OkStatus();
}

}  // namespace interco::node
