// A validated registry schema with O(1) field lookup, and value validation against it.
//
// Immutable after Compile; safe to share between threads.
#ifndef INTERCO_REPLICATION_REGISTRY_SCHEMA_H_
#define INTERCO_REPLICATION_REGISTRY_SCHEMA_H_

#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "interco/v1/registry.pb.h"
#include "interco/v1/value.pb.h"

namespace interco::replication {

class RegistrySchema {
 public:
  // Validates `schema`: at most 128 fields, valid and distinct names, a type for each,
  // lengths within the node-wide caps, no index on doubles. INVALID_ARGUMENT names the
  // offending field as "schema.fields[i]...".
  static absl::StatusOr<RegistrySchema> Compile(const interco::v1::Schema& schema);

  // The spec of field `name`, or nullptr. The pointer lives as long as this object.
  const interco::v1::FieldSpec* Find(std::string_view name) const;

  // Checks that `value` fits `spec` (kind matches the type, length and element limits,
  // finite numbers, valid coordinates, valid UTF-8). A value with no kind is a clear,
  // valid for optional fields only. `path` prefixes error messages.
  absl::Status ValidateValue(const interco::v1::FieldSpec& spec, const interco::v1::Value& value,
                             std::string_view path) const;

  const interco::v1::Schema& proto() const { return schema_; }

  // Effective limits of a field (node-wide default when the spec says 0).
  static uint32_t MaxLength(const interco::v1::FieldSpec& spec);
  static uint32_t MaxElements(const interco::v1::FieldSpec& spec);

 private:
  RegistrySchema() = default;

  interco::v1::Schema schema_;
  absl::flat_hash_map<std::string, int> index_;
};

// Sorts and deduplicates a string set in place; other kinds are left alone.
void NormalizeValue(interco::v1::Value& value);

// Whether the value has a kind of the given field type.
bool ValueMatchesType(const interco::v1::Value& value, interco::v1::FieldType type);

}  // namespace interco::replication

#endif  // INTERCO_REPLICATION_REGISTRY_SCHEMA_H_
