// Conversions between interco.v1.Value and the client's text forms: JSON values (put,
// create), CSV cells (import), filter values (list --where), and display text.
//
// Errors are INVALID_ARGUMENT with a message about the value only; callers say which
// field, row or column it came from.
#ifndef INTERCO_NODE_CLI_VALUES_H_
#define INTERCO_NODE_CLI_VALUES_H_

#include <string>
#include <string_view>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/timestamp.pb.h>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "interco/v1/record.pb.h"
#include "interco/v1/registry.pb.h"
#include "interco/v1/value.pb.h"

namespace interco::cli {

// A registry schema indexed by field name. Refers to the Registry it was built from,
// which must outlive it.
class SchemaIndex {
 public:
  explicit SchemaIndex(const interco::v1::Registry& registry);

  const interco::v1::Registry& registry() const { return registry_; }
  // The spec of `field`, or nullptr.
  const interco::v1::FieldSpec* Find(std::string_view field) const;
  // Find, or INVALID_ARGUMENT: field "x" is not in the schema of registry "r".
  absl::StatusOr<const interco::v1::FieldSpec*> Require(std::string_view field) const;

 private:
  const interco::v1::Registry& registry_;
  absl::flat_hash_map<std::string, const interco::v1::FieldSpec*> fields_;
};

// "string", "int64", "double", "bool", "timestamp", "string_set", "geo_point".
std::string_view FieldTypeName(interco::v1::FieldType type);

// A timestamp from RFC 3339 text (absl::RFC3339_full, any offset). With `dates`, also
// "YYYY-MM-DD" (midnight UTC) and "YYYY-MM-DD HH:MM:SS" (UTC).
absl::StatusOr<google::protobuf::Timestamp> ParseTimestamp(std::string_view text, bool dates);
// RFC 3339 in UTC with a "Z", fractional seconds only when present.
std::string FormatTimestamp(const google::protobuf::Timestamp& timestamp);

// true/false, 1/0, oui/non, yes/no (any case).
absl::StatusOr<bool> ParseBool(std::string_view text);

// A JSON value of `put`/`create` for a field of type spec.type():
//   number -> int64 (integral, below 2^53 in magnitude; a JSON string gives any int64)
//             or double,
//   string -> string, or timestamp (RFC 3339) for timestamp fields,
//   true/false -> bool, array of strings -> string set,
//   {"latitude": x, "longitude": y} -> geo point, null -> a Value with no kind (clear).
absl::StatusOr<interco::v1::Value> ValueFromJson(const interco::v1::FieldSpec& spec,
                                                 const google::protobuf::Value& json);

// Non-empty text (a CSV cell) for a field of type spec.type(): strings as they are,
// numbers, booleans (ParseBool), timestamps (ParseTimestamp with dates), string sets
// split on `set_separator` (empty parts dropped), geo points as "lat,lon".
absl::StatusOr<interco::v1::Value> ValueFromText(const interco::v1::FieldSpec& spec,
                                                 std::string_view text,
                                                 std::string_view set_separator);

// The value of an equality filter on the field: like ValueFromText, except that for a
// string set the text is one element (a string value).
absl::StatusOr<interco::v1::Value> FilterValueFromText(const interco::v1::FieldSpec& spec,
                                                       std::string_view text);

// A geo point from two texts (import --geo).
absl::StatusOr<interco::v1::Value> GeoPointFromTexts(std::string_view latitude,
                                                     std::string_view longitude);

// Display text: numbers in shortest round-trip form, timestamps as FormatTimestamp,
// sets as "[a, b]", geo points as "(lat, lon)", strings as they are.
std::string FormatValue(const interco::v1::Value& value);

}  // namespace interco::cli

#endif  // INTERCO_NODE_CLI_VALUES_H_
