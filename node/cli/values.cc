#include "node/cli/values.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "replication/base/strings.h"

namespace interco::cli {
namespace {

using interco::v1::FieldSpec;
using interco::v1::FieldType;
using interco::v1::Value;

// The range of google.protobuf.Timestamp: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
constexpr int64_t kMinTimestampSeconds = -62135596800;
constexpr int64_t kMaxTimestampSeconds = 253402300799;
// Doubles hold every integer below 2^53 exactly.
constexpr double kMaxExactInteger = 9007199254740992.0;

absl::Status Invalid(std::string_view message) {
  return absl::InvalidArgumentError(ToAbsl(message));
}

std::string_view JsonKindName(const google::protobuf::Value& json) {
  switch (json.kind_case()) {
    case google::protobuf::Value::kNullValue: return "null";
    case google::protobuf::Value::kNumberValue: return "a number";
    case google::protobuf::Value::kStringValue: return "a string";
    case google::protobuf::Value::kBoolValue: return "a boolean";
    case google::protobuf::Value::kStructValue: return "an object";
    case google::protobuf::Value::kListValue: return "an array";
    default: return "nothing";
  }
}

absl::Status WrongJson(std::string_view expected, const google::protobuf::Value& json) {
  return Invalid(absl::StrCat("expected ", ToAbsl(expected), ", got ", ToAbsl(JsonKindName(json))));
}

std::string FormatDouble(double d) {
  char buffer[32];
  const std::to_chars_result r = std::to_chars(buffer, buffer + sizeof(buffer), d);
  return std::string(buffer, r.ptr);
}

absl::StatusOr<int64_t> ParseInt64(std::string_view text) {
  int64_t v = 0;
  if (!absl::SimpleAtoi(ToAbsl(text), &v)) {
    return Invalid(absl::StrCat("\"", ToAbsl(text), "\" is not a 64-bit integer"));
  }
  return v;
}

absl::StatusOr<double> ParseDouble(std::string_view text) {
  double v = 0;
  if (!absl::SimpleAtod(ToAbsl(text), &v) || !std::isfinite(v)) {
    return Invalid(absl::StrCat("\"", ToAbsl(text), "\" is not a finite number"));
  }
  return v;
}

}  // namespace

SchemaIndex::SchemaIndex(const interco::v1::Registry& registry) : registry_(registry) {
  for (const FieldSpec& f : registry_.schema().fields()) fields_.emplace(f.name(), &f);
}

const FieldSpec* SchemaIndex::Find(std::string_view field) const {
  auto it = fields_.find(ToAbsl(field));
  return it == fields_.end() ? nullptr : it->second;
}

absl::StatusOr<const FieldSpec*> SchemaIndex::Require(std::string_view field) const {
  const FieldSpec* spec = Find(field);
  if (spec == nullptr) {
    return Invalid(
        absl::StrCat("field \"", ToAbsl(field), "\" is not in the schema of ", registry_.name()));
  }
  return spec;
}

std::string_view FieldTypeName(FieldType type) {
  switch (type) {
    case interco::v1::FIELD_TYPE_STRING: return "string";
    case interco::v1::FIELD_TYPE_INT64: return "int64";
    case interco::v1::FIELD_TYPE_COUNTER: return "counter";
    case interco::v1::FIELD_TYPE_DOUBLE: return "double";
    case interco::v1::FIELD_TYPE_BOOL: return "bool";
    case interco::v1::FIELD_TYPE_TIMESTAMP: return "timestamp";
    case interco::v1::FIELD_TYPE_STRING_SET: return "string_set";
    case interco::v1::FIELD_TYPE_GEO_POINT: return "geo_point";
    default: return "unspecified";
  }
}

absl::StatusOr<google::protobuf::Timestamp> ParseTimestamp(std::string_view text, bool dates) {
  const std::string input(text);
  absl::Time t;
  std::string error;
  bool ok = absl::ParseTime(absl::RFC3339_full, input, &t, &error);
  if (!ok && dates) {
    ok = absl::ParseTime("%Y-%m-%d", input, absl::UTCTimeZone(), &t, &error) ||
         absl::ParseTime("%Y-%m-%d %H:%M:%S", input, absl::UTCTimeZone(), &t, &error);
  }
  if (!ok) {
    return Invalid(absl::StrCat(
        "\"", input, "\" is not an RFC 3339 timestamp",
        dates ? " (nor YYYY-MM-DD, nor YYYY-MM-DD HH:MM:SS)" : " (e.g. 2024-05-31T12:00:00Z)"));
  }
  const int64_t seconds = absl::ToUnixSeconds(t);  // rounds toward the past
  if (seconds < kMinTimestampSeconds || seconds > kMaxTimestampSeconds) {
    return Invalid(absl::StrCat("\"", input, "\" is outside years 1 to 9999"));
  }
  google::protobuf::Timestamp out;
  out.set_seconds(seconds);
  out.set_nanos(static_cast<int32_t>(absl::ToInt64Nanoseconds(t - absl::FromUnixSeconds(seconds))));
  return out;
}

std::string FormatTimestamp(const google::protobuf::Timestamp& timestamp) {
  const absl::Time t =
      absl::FromUnixSeconds(timestamp.seconds()) + absl::Nanoseconds(timestamp.nanos());
  // Fractions of 3, 6 or 9 digits, as in protobuf JSON.
  const int32_t nanos = timestamp.nanos();
  const char* format = nanos == 0             ? "%E4Y-%m-%d%ET%H:%M:%SZ"
                       : nanos % 1000000 == 0 ? "%E4Y-%m-%d%ET%H:%M:%E3SZ"
                       : nanos % 1000 == 0    ? "%E4Y-%m-%d%ET%H:%M:%E6SZ"
                                              : "%E4Y-%m-%d%ET%H:%M:%E9SZ";
  return absl::FormatTime(format, t, absl::UTCTimeZone());
}

absl::StatusOr<bool> ParseBool(std::string_view text) {
  const std::string lower = absl::AsciiStrToLower(absl::StripAsciiWhitespace(ToAbsl(text)));
  if (lower == "true" || lower == "1" || lower == "oui" || lower == "yes") return true;
  if (lower == "false" || lower == "0" || lower == "non" || lower == "no") return false;
  return Invalid(
      absl::StrCat("\"", ToAbsl(text), "\" is not a boolean (true/false, 1/0, oui/non)"));
}

absl::StatusOr<Value> ValueFromJson(const FieldSpec& spec, const google::protobuf::Value& json) {
  Value out;
  if (json.kind_case() == google::protobuf::Value::kNullValue) return out;
  switch (spec.type()) {
    case interco::v1::FIELD_TYPE_STRING:
      if (!json.has_string_value()) return WrongJson("a string", json);
      out.set_string_value(json.string_value());
      return out;
    case interco::v1::FIELD_TYPE_INT64:
    case interco::v1::FIELD_TYPE_COUNTER: {
      if (json.has_string_value()) {
        absl::StatusOr<int64_t> v = ParseInt64(json.string_value());
        if (!v.ok()) return v.status();
        out.set_int64_value(*v);
        return out;
      }
      if (!json.has_number_value()) return WrongJson("an integer", json);
      const double d = json.number_value();
      if (!std::isfinite(d) || std::trunc(d) != d) {
        return Invalid(absl::StrCat(FormatDouble(d), " is not an integer"));
      }
      // From 2^53 on, the number may already have lost digits in parsing.
      if (std::fabs(d) >= kMaxExactInteger) {
        return Invalid(
            "integers of 2^53 (9007199254740992) or more lose digits as JSON numbers; write "
            "it as a string, e.g. \"9007199254740993\"");
      }
      out.set_int64_value(static_cast<int64_t>(d));
      return out;
    }
    case interco::v1::FIELD_TYPE_DOUBLE:
      if (!json.has_number_value()) return WrongJson("a number", json);
      out.set_double_value(json.number_value());
      return out;
    case interco::v1::FIELD_TYPE_BOOL:
      if (!json.has_bool_value()) return WrongJson("true or false", json);
      out.set_bool_value(json.bool_value());
      return out;
    case interco::v1::FIELD_TYPE_TIMESTAMP: {
      if (!json.has_string_value()) return WrongJson("an RFC 3339 timestamp string", json);
      absl::StatusOr<google::protobuf::Timestamp> t = ParseTimestamp(json.string_value(), false);
      if (!t.ok()) return t.status();
      *out.mutable_timestamp_value() = *std::move(t);
      return out;
    }
    case interco::v1::FIELD_TYPE_STRING_SET: {
      if (!json.has_list_value()) return WrongJson("an array of strings", json);
      interco::v1::StringSet* set = out.mutable_string_set_value();
      for (const google::protobuf::Value& element : json.list_value().values()) {
        if (!element.has_string_value()) {
          return Invalid(absl::StrCat("expected an array of strings, got an array holding ",
                                      ToAbsl(JsonKindName(element))));
        }
        set->add_values(element.string_value());
      }
      return out;
    }
    case interco::v1::FIELD_TYPE_GEO_POINT: {
      if (!json.has_struct_value()) {
        return WrongJson("an object {\"latitude\": ..., \"longitude\": ...}", json);
      }
      const auto& members = json.struct_value().fields();
      for (const auto& [key, member] : members) {
        if (key != "latitude" && key != "longitude") {
          return Invalid(absl::StrCat("unexpected member \"", key,
                                      "\" (a geo point has latitude and longitude)"));
        }
        if (!member.has_number_value()) {
          return Invalid(
              absl::StrCat(key, ": expected a number, got ", ToAbsl(JsonKindName(member))));
        }
      }
      auto lat = members.find("latitude");
      auto lon = members.find("longitude");
      if (lat == members.end() || lon == members.end()) {
        return Invalid("a geo point needs both latitude and longitude");
      }
      out.mutable_geo_point_value()->set_latitude(lat->second.number_value());
      out.mutable_geo_point_value()->set_longitude(lon->second.number_value());
      return out;
    }
    default: return Invalid(absl::StrCat("the schema gives field \"", spec.name(), "\" no type"));
  }
}

absl::StatusOr<Value> ValueFromText(const FieldSpec& spec, std::string_view text,
                                    std::string_view set_separator) {
  Value out;
  switch (spec.type()) {
    case interco::v1::FIELD_TYPE_STRING: out.set_string_value(std::string(text)); return out;
    case interco::v1::FIELD_TYPE_INT64:
    case interco::v1::FIELD_TYPE_COUNTER: {
      absl::StatusOr<int64_t> v = ParseInt64(text);
      if (!v.ok()) return v.status();
      out.set_int64_value(*v);
      return out;
    }
    case interco::v1::FIELD_TYPE_DOUBLE: {
      absl::StatusOr<double> v = ParseDouble(text);
      if (!v.ok()) return v.status();
      out.set_double_value(*v);
      return out;
    }
    case interco::v1::FIELD_TYPE_BOOL: {
      absl::StatusOr<bool> v = ParseBool(text);
      if (!v.ok()) return v.status();
      out.set_bool_value(*v);
      return out;
    }
    case interco::v1::FIELD_TYPE_TIMESTAMP: {
      absl::StatusOr<google::protobuf::Timestamp> t = ParseTimestamp(text, true);
      if (!t.ok()) return t.status();
      *out.mutable_timestamp_value() = *std::move(t);
      return out;
    }
    case interco::v1::FIELD_TYPE_STRING_SET: {
      interco::v1::StringSet* set = out.mutable_string_set_value();
      if (set_separator.empty()) {
        set->add_values(std::string(text));
        return out;
      }
      for (absl::string_view part : absl::StrSplit(ToAbsl(text), ToAbsl(set_separator))) {
        part = absl::StripAsciiWhitespace(part);
        if (!part.empty()) set->add_values(std::string(part));
      }
      return out;
    }
    case interco::v1::FIELD_TYPE_GEO_POINT: {
      std::vector<absl::string_view> parts = absl::StrSplit(ToAbsl(text), ',');
      if (parts.size() != 2) {
        return Invalid(
            absl::StrCat("\"", ToAbsl(text), "\" is not a geo point LATITUDE,LONGITUDE"));
      }
      return GeoPointFromTexts(ToStd(parts[0]), ToStd(parts[1]));
    }
    default: return Invalid(absl::StrCat("the schema gives field \"", spec.name(), "\" no type"));
  }
}

absl::StatusOr<Value> FilterValueFromText(const FieldSpec& spec, std::string_view text) {
  if (spec.type() == interco::v1::FIELD_TYPE_STRING_SET) {
    Value out;
    out.set_string_value(std::string(text));
    return out;
  }
  return ValueFromText(spec, text, "");
}

absl::StatusOr<Value> GeoPointFromTexts(std::string_view latitude, std::string_view longitude) {
  absl::StatusOr<double> lat = ParseDouble(ToStd(absl::StripAsciiWhitespace(ToAbsl(latitude))));
  if (!lat.ok()) return Invalid(absl::StrCat("latitude: ", lat.status().message()));
  absl::StatusOr<double> lon = ParseDouble(ToStd(absl::StripAsciiWhitespace(ToAbsl(longitude))));
  if (!lon.ok()) return Invalid(absl::StrCat("longitude: ", lon.status().message()));
  Value out;
  out.mutable_geo_point_value()->set_latitude(*lat);
  out.mutable_geo_point_value()->set_longitude(*lon);
  return out;
}

std::string FormatValue(const Value& value) {
  switch (value.kind_case()) {
    case Value::kStringValue: return value.string_value();
    case Value::kInt64Value: return absl::StrCat(value.int64_value());
    case Value::kDoubleValue: return FormatDouble(value.double_value());
    case Value::kBoolValue: return value.bool_value() ? "true" : "false";
    case Value::kTimestampValue: return FormatTimestamp(value.timestamp_value());
    case Value::kStringSetValue:
      return absl::StrCat("[", absl::StrJoin(value.string_set_value().values(), ", "), "]");
    case Value::kGeoPointValue:
      return absl::StrCat("(", FormatDouble(value.geo_point_value().latitude()), ", ",
                          FormatDouble(value.geo_point_value().longitude()), ")");
    default: return "";
  }
}

}  // namespace interco::cli
