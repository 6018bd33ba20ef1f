// The RocksDB database of a node: opening it with its column families, and the one
// place where rocksdb::Status becomes absl::Status.
//
// Thread-safe, like rocksdb::DB.
#ifndef INTERCO_NODE_STORAGE_ROCKSDB_STORE_H_
#define INTERCO_NODE_STORAGE_ROCKSDB_STORE_H_

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"

namespace interco::node {

// Column families; see node/storage/keys.h for what each holds.
enum class Cf : int {
  kMeta = 0,
  kRegistries,
  kRecords,
  kIndex,
  kFeed,
  kLog,
  kAudit,
  kConflicts,
  kTombstones,
  kFingerprints,
  kRemovals,
  kCount
};

struct RocksDbOptions {
  // Directory of the database; created if missing.
  std::string path;
  // Shared block cache. Default: 32 MiB.
  size_t block_cache_bytes = 32 << 20;
  // Memtable size per column family. Default: 16 MiB.
  size_t write_buffer_bytes = 16 << 20;
};

// The family's name in the database ("records", "tombstones"...).
std::string_view CfName(Cf cf);

// rocksdb::Status -> absl::Status, keeping the message. Corruption becomes DATA_LOSS,
// I/O errors UNAVAILABLE... `context` says what was being done.
absl::Status FromRocksStatus(const rocksdb::Status& s, std::string_view context);

class RocksDbStore {
 public:
  // Opens (creating if needed) the database at options.path.
  static absl::StatusOr<std::unique_ptr<RocksDbStore>> Open(const RocksDbOptions& options);
  ~RocksDbStore();
  RocksDbStore(const RocksDbStore&) = delete;
  RocksDbStore& operator=(const RocksDbStore&) = delete;

  // The value of `key`, or std::nullopt. Reads at `snapshot` if given.
  absl::StatusOr<std::optional<std::string>> Get(Cf cf, std::string_view key,
                                                 const rocksdb::Snapshot* snapshot = nullptr);

  // Applies `batch` atomically. With `sync`, returns only after the WAL is fsync'd.
  absl::Status Write(rocksdb::WriteBatch& batch, bool sync);
  // Syncs the write-ahead log: every write before it is durable.
  absl::Status SyncWal();

  // An iterator over `cf`, at `snapshot` if given.
  std::unique_ptr<rocksdb::Iterator> NewIterator(Cf cf,
                                                 const rocksdb::Snapshot* snapshot = nullptr);

  // Bytes of SST files and live WAL files.
  int64_t SizeOnDisk();
  // Bytes of the SST files of one family (what is still in memtables not counted).
  int64_t FamilySizeOnDisk(Cf cf);
  // Flushes the memtables and compacts every family, so that deleted data leaves the
  // disk.
  absl::Status CompactAll();

  rocksdb::DB& db() { return *db_; }
  rocksdb::ColumnFamilyHandle* handle(Cf cf) { return handles_[static_cast<int>(cf)]; }

 private:
  RocksDbStore() = default;

  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyHandle* default_handle_ = nullptr;
  std::array<rocksdb::ColumnFamilyHandle*, static_cast<int>(Cf::kCount)> handles_{};
};

}  // namespace interco::node

#endif  // INTERCO_NODE_STORAGE_ROCKSDB_STORE_H_
