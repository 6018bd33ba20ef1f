#include "node/storage/keys.h"

#include "absl/strings/str_cat.h"
#include "replication/base/strings.h"

namespace interco::node::keys {

void PutBigEndian64(std::string& out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void PutBigEndian32(std::string& out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint64_t GetBigEndian64(std::string_view in) {
  uint64_t v = 0;
  for (size_t i = 0; i < 8 && i < in.size(); ++i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return v;
}

uint32_t GetBigEndian32(std::string_view in) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4 && i < in.size(); ++i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return v;
}

std::string RegistryPrefix(std::string_view registry) {
  std::string k(registry);
  k.push_back('\0');
  return k;
}

std::string Record(std::string_view registry, std::string_view record) {
  std::string k = RegistryPrefix(registry);
  k.append(record);
  return k;
}

std::string_view RecordIdOf(std::string_view key, std::string_view registry) {
  return key.substr(registry.size() + 1);
}

std::string EncodeIndexString(std::string_view s) {
  std::string out = "s";
  PutBigEndian32(out, static_cast<uint32_t>(s.size()));
  out.append(s);
  return out;
}

std::optional<std::string> EncodeIndexValue(const interco::v1::Value& value) {
  std::string out;
  switch (value.kind_case()) {
    case interco::v1::Value::kStringValue:
      return EncodeIndexString(value.string_value());
    case interco::v1::Value::kInt64Value:
      out = "i";
      PutBigEndian64(out, static_cast<uint64_t>(value.int64_value()) ^ (uint64_t{1} << 63));
      return out;
    case interco::v1::Value::kBoolValue:
      return std::string(value.bool_value() ? "b1" : "b0");
    case interco::v1::Value::kTimestampValue:
      out = "t";
      PutBigEndian64(out, static_cast<uint64_t>(value.timestamp_value().seconds()) ^
                              (uint64_t{1} << 63));
      PutBigEndian32(out, static_cast<uint32_t>(value.timestamp_value().nanos()));
      return out;
    default:
      return std::nullopt;
  }
}

std::string IndexValuePrefix(std::string_view registry, std::string_view field,
                             std::string_view encoded_value) {
  std::string k = RegistryPrefix(registry);
  k.append(field);
  k.push_back('\0');
  k.append(encoded_value);
  k.push_back('\0');
  return k;
}

std::string IndexEntry(std::string_view registry, std::string_view field,
                       std::string_view encoded_value, std::string_view record) {
  std::string k = IndexValuePrefix(registry, field, encoded_value);
  k.append(record);
  return k;
}

std::string Feed(std::string_view registry, uint64_t seq) {
  std::string k = RegistryPrefix(registry);
  PutBigEndian64(k, seq);
  return k;
}

uint64_t FeedSeqOf(std::string_view key) {
  return key.size() < 8 ? 0 : GetBigEndian64(key.substr(key.size() - 8));
}

std::string Log(std::string_view registry, uint32_t origin, uint32_t epoch, uint64_t first_seq) {
  std::string k = RegistryPrefix(registry);
  PutBigEndian32(k, origin);
  PutBigEndian32(k, epoch);
  PutBigEndian64(k, first_seq);
  return k;
}

std::string TombstonePrefix(std::string_view registry, uint32_t origin, uint32_t epoch) {
  std::string k = RegistryPrefix(registry);
  PutBigEndian32(k, origin);
  PutBigEndian32(k, epoch);
  return k;
}

std::string Fingerprint(std::string_view registry, uint32_t bucket) {
  std::string k = RegistryPrefix(registry);
  k.push_back(static_cast<char>((bucket >> 8) & 0xff));
  k.push_back(static_cast<char>(bucket & 0xff));
  return k;
}

std::optional<uint32_t> ParseFingerprint(std::string_view key, std::string_view registry) {
  const std::string prefix = RegistryPrefix(registry);
  if (key.size() != prefix.size() + 2 || !key.starts_with(prefix)) return std::nullopt;
  return (static_cast<uint32_t>(static_cast<unsigned char>(key[prefix.size()])) << 8) |
         static_cast<unsigned char>(key[prefix.size() + 1]);
}

std::string EncodeSum(uint64_t sum) {
  std::string out;
  PutBigEndian64(out, sum);
  return out;
}

std::string Tombstone(std::string_view registry, uint32_t origin, uint32_t epoch, uint64_t seq,
                      std::string_view record) {
  std::string k = TombstonePrefix(registry, origin, epoch);
  PutBigEndian64(k, seq);
  k.append(record);
  return k;
}

namespace {

// <registry>\0<origin:be32><epoch:be32><seq:be64>, then a record ID if `with_record`
// (at least one byte) or nothing.
std::optional<TombstoneKey> ParseChangeKey(std::string_view key, std::string_view registry,
                                           bool with_record) {
  const size_t prefix = registry.size() + 1;
  if ((with_record ? key.size() <= prefix + 16 : key.size() != prefix + 16) ||
      key.substr(0, registry.size()) != registry || key[registry.size()] != '\0') {
    return std::nullopt;
  }
  TombstoneKey out;
  out.origin = GetBigEndian32(key.substr(prefix, 4));
  out.epoch = GetBigEndian32(key.substr(prefix + 4, 4));
  out.seq = GetBigEndian64(key.substr(prefix + 8, 8));
  out.record = key.substr(prefix + 16);
  return out;
}

}  // namespace

std::optional<TombstoneKey> ParseTombstone(std::string_view key, std::string_view registry) {
  return ParseChangeKey(key, registry, /*with_record=*/true);
}

std::optional<TombstoneKey> ParseLog(std::string_view key, std::string_view registry) {
  return ParseChangeKey(key, registry, /*with_record=*/false);
}

std::string EncodeTombstoneValue(uint32_t causal_length, uint64_t hlc) {
  std::string v;
  PutBigEndian32(v, causal_length);
  PutBigEndian64(v, hlc);
  return v;
}

std::optional<std::pair<uint32_t, uint64_t>> DecodeTombstoneValue(std::string_view value) {
  if (value.size() != 12) return std::nullopt;
  return std::make_pair(GetBigEndian32(value.substr(0, 4)), GetBigEndian64(value.substr(4, 8)));
}

std::string StreamState(std::string_view registry) { return absl::StrCat("stream/", ToAbsl(registry)); }

std::string Audit(std::string_view chain, uint64_t seq) {
  std::string out(chain);
  out.push_back('\0');
  PutBigEndian64(out, seq);
  return out;
}

std::string PolicyPrefix(std::string_view registry) {
  std::string out = absl::StrCat("policy/", ToAbsl(registry));
  out.push_back('\0');
  return out;
}

std::string Policy(std::string_view registry, uint64_t version) {
  std::string out = PolicyPrefix(registry);
  PutBigEndian64(out, version);
  return out;
}

std::string RefusedPrefix(std::string_view registry) {
  return absl::StrCat("refused/", ToAbsl(RegistryPrefix(registry)));
}

std::string Refused(std::string_view registry, uint32_t origin, uint32_t epoch, uint64_t first_seq) {
  return absl::StrCat("refused/", ToAbsl(Log(registry, origin, epoch, first_seq)));
}

std::string RegistryEnd(std::string_view registry) {
  std::string k(registry);
  k.push_back('\x01');
  return k;
}

std::string Certificate(std::string_view key_id) {
  return absl::StrCat(ToAbsl(kCertificatePrefix), ToAbsl(key_id));
}

std::string Fork(uint32_t origin, std::string_view stream) {
  std::string out(kForkPrefix);
  PutBigEndian32(out, origin);
  out.append(stream);
  return out;
}

}  // namespace interco::node::keys
