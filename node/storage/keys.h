// Key layout of the RocksDB column families. Every key of a registry starts with
// "<registry>\0", so a registry is one contiguous range in each family.
//
//   registries  <registry>                                  -> internal.v1.RegistryMeta
//   records     <registry>\0<record>                        -> replication.v1.RecordState
//   index       <registry>\0<field>\0<value>\0<record>      -> "" (value: EncodeIndexValue)
//   feed        <registry>\0<seq:be64>                      -> internal.v1.FeedEntry
//   log         <registry>\0<origin:be32><epoch:be32><first_seq:be64> -> replication.v1.Batch
//   audit       <chain>\0<seq:be64>                       -> v1.AuditEvent (hash-chained)
//   conflicts   <registry>\0<record>                        -> replication.v1.RecordConflicts
//   tombstones  <registry>\0<origin:be32><epoch:be32><seq:be64><record>
//                 -> <causal length:be32><hlc:be64>: the tombstone change <seq> of the origin
//                    epoch set on the record (replication/collection.h); gone once collected
//                    or covered by a collection
//   meta        "node" -> internal.v1.NodeMeta; "stream/<registry>" -> internal.v1.StreamState;
//               "cert/<key id: 32 bytes>" -> DER certificate of a batch signer;
//               "fork/<origin:be32><stream>" -> replication.v1.ForkEvidence;
//               "policy/<registry>\0<version:be64>" -> replication.v1.PolicyChange;
//               "refused/<registry>\0<origin:be32><epoch:be32><first_seq:be64>" ->
//                 replication.v1.Batch a collection refused after it was applied here
//
// Big-endian integers keep numeric order in byte order. Thread-safe (pure functions).
#ifndef INTERCO_NODE_STORAGE_KEYS_H_
#define INTERCO_NODE_STORAGE_KEYS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "interco/v1/value.pb.h"

namespace interco::node::keys {

std::string RegistryPrefix(std::string_view registry);
std::string Record(std::string_view registry, std::string_view record);
// The record ID of a records-family key of `registry`.
std::string_view RecordIdOf(std::string_view key, std::string_view registry);

// Prefix of all index entries of one field value.
std::string IndexValuePrefix(std::string_view registry, std::string_view field,
                             std::string_view encoded_value);
std::string IndexEntry(std::string_view registry, std::string_view field,
                       std::string_view encoded_value, std::string_view record);
// Encodes a scalar value (or one set element, as a string) for the index: a type tag and
// a self-delimiting payload, so that no encoded value is a prefix of another.
// std::nullopt for kinds that are not indexed (double, geo point, empty).
std::optional<std::string> EncodeIndexValue(const interco::v1::Value& value);
std::string EncodeIndexString(std::string_view s);

std::string Feed(std::string_view registry, uint64_t seq);
uint64_t FeedSeqOf(std::string_view key);

std::string Log(std::string_view registry, uint32_t origin, uint32_t epoch, uint64_t first_seq);

// A tombstone set by change `seq` of (origin, epoch) on `record`; and the prefix of those
// of one origin epoch.
std::string Tombstone(std::string_view registry, uint32_t origin, uint32_t epoch, uint64_t seq,
                      std::string_view record);
std::string TombstonePrefix(std::string_view registry, uint32_t origin, uint32_t epoch);
// The sequence number and record ID of a tombstones-family key of `registry`.
struct TombstoneKey {
  uint32_t origin = 0;
  uint32_t epoch = 0;
  uint64_t seq = 0;
  std::string_view record;
};
std::optional<TombstoneKey> ParseTombstone(std::string_view key, std::string_view registry);
// The origin, epoch and first sequence number of a log key of `registry` (seq is
// first_seq, record empty); nullopt if it is not one.
std::optional<TombstoneKey> ParseLog(std::string_view key, std::string_view registry);
std::string EncodeTombstoneValue(uint32_t causal_length, uint64_t hlc);
// std::nullopt if malformed; else (causal length, hlc).
std::optional<std::pair<uint32_t, uint64_t>> DecodeTombstoneValue(std::string_view value);

// The sum of the digests of a bucket of the registry's live records (replication/repair.h):
// value 8 bytes big-endian, moved by merge operands (RocksDbStore's Add64). A bucket key
// is RegistryPrefix followed by the bucket as 2 bytes big-endian.
std::string Fingerprint(std::string_view registry, uint32_t bucket);
// The bucket of a fingerprints-family key of `registry`; std::nullopt if malformed.
std::optional<uint32_t> ParseFingerprint(std::string_view key, std::string_view registry);
std::string EncodeSum(uint64_t sum);

// An audit event of `chain` ("registries/<registry>" or "node").
std::string Audit(std::string_view chain, uint64_t seq);

inline constexpr std::string_view kNodeMeta = "node";
std::string StreamState(std::string_view registry);
inline constexpr std::string_view kCertificatePrefix = "cert/";
std::string Certificate(std::string_view key_id);
inline constexpr std::string_view kForkPrefix = "fork/";
std::string Fork(uint32_t origin, std::string_view stream);
// Every version of a registry's policy (0: declared at creation).
std::string PolicyPrefix(std::string_view registry);
std::string Policy(std::string_view registry, uint64_t version);
// Batches a collection refused after they were applied here, taken out of the change log
// (RegistryMeta.replay), under "refused/" then their log key.
std::string RefusedPrefix(std::string_view registry);
std::string Refused(std::string_view registry, uint32_t origin, uint32_t epoch, uint64_t first_seq);
// Just past every key of a registry's families (RegistryPrefix), for range deletes.
std::string RegistryEnd(std::string_view registry);

void PutBigEndian64(std::string& out, uint64_t v);
void PutBigEndian32(std::string& out, uint32_t v);
uint64_t GetBigEndian64(std::string_view in);
uint32_t GetBigEndian32(std::string_view in);

}  // namespace interco::node::keys

#endif  // INTERCO_NODE_STORAGE_KEYS_H_
