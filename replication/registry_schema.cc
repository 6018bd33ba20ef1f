#include "replication/registry_schema.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "replication/base/limits.h"
#include "replication/base/strings.h"
#include "replication/base/utf8.h"
#include "replication/ids.h"

namespace interco::replication {
namespace {

using interco::v1::FieldSpec;
using interco::v1::FieldType;
using interco::v1::Value;

absl::Status CheckString(std::string_view s, uint32_t max, absl::string_view path,
                         interco::v1::StringFormat format = interco::v1::STRING_FORMAT_UNSPECIFIED) {
  if (s.size() > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", s.size(), " bytes exceeds the maximum length ", max));
  }
  if (!IsValidUtf8(s)) return absl::InvalidArgumentError(absl::StrCat(path, ": not valid UTF-8"));
  absl::Status f;
  if (format == interco::v1::STRING_FORMAT_SIREN) f = ValidateSiren(s);
  if (format == interco::v1::STRING_FORMAT_INSEE_COMMUNE) f = ValidateInseeCode(s);
  if (!f.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", f.message()));
  return absl::OkStatus();
}

const char* TypeName(FieldType t) {
  switch (t) {
    case interco::v1::FIELD_TYPE_STRING: return "string";
    case interco::v1::FIELD_TYPE_INT64: return "int64";
    case interco::v1::FIELD_TYPE_DOUBLE: return "double";
    case interco::v1::FIELD_TYPE_BOOL: return "bool";
    case interco::v1::FIELD_TYPE_TIMESTAMP: return "timestamp";
    case interco::v1::FIELD_TYPE_STRING_SET: return "string set";
    case interco::v1::FIELD_TYPE_GEO_POINT: return "geo point";
    case interco::v1::FIELD_TYPE_COUNTER: return "counter";
    default: return "unspecified";
  }
}

}  // namespace

bool ValueMatchesType(const Value& value, FieldType type) {
  switch (type) {
    case interco::v1::FIELD_TYPE_STRING: return value.has_string_value();
    case interco::v1::FIELD_TYPE_INT64: return value.has_int64_value();
    case interco::v1::FIELD_TYPE_DOUBLE: return value.has_double_value();
    case interco::v1::FIELD_TYPE_BOOL: return value.has_bool_value();
    case interco::v1::FIELD_TYPE_TIMESTAMP: return value.has_timestamp_value();
    case interco::v1::FIELD_TYPE_STRING_SET: return value.has_string_set_value();
    case interco::v1::FIELD_TYPE_GEO_POINT: return value.has_geo_point_value();
    case interco::v1::FIELD_TYPE_COUNTER: return value.has_int64_value();
    default: return false;
  }
}

uint32_t RegistrySchema::MaxLength(const FieldSpec& spec) {
  return spec.max_length() == 0 ? limits::kStringBytesDefault : spec.max_length();
}

uint32_t RegistrySchema::MaxElements(const FieldSpec& spec) {
  return spec.max_elements() == 0 ? limits::kSetElementsDefault : spec.max_elements();
}

absl::StatusOr<RegistrySchema> RegistrySchema::Compile(const interco::v1::Schema& schema) {
  if (schema.fields().empty()) {
    return absl::InvalidArgumentError("schema.fields: a schema needs at least one field");
  }
  if (static_cast<size_t>(schema.fields_size()) > limits::kSchemaFieldsMax) {
    return absl::InvalidArgumentError(absl::StrCat("schema.fields: ", schema.fields_size(),
                                                   " fields exceeds the maximum ",
                                                   limits::kSchemaFieldsMax));
  }
  RegistrySchema out;
  out.schema_ = schema;
  for (int i = 0; i < schema.fields_size(); ++i) {
    const FieldSpec& f = schema.fields(i);
    const std::string path = absl::StrCat("schema.fields[", i, "]");
    if (absl::Status s = ValidateFieldName(f.name()); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ".name: ", s.message()));
    }
    if (!interco::v1::FieldType_IsValid(f.type()) ||
        f.type() == interco::v1::FIELD_TYPE_UNSPECIFIED) {
      return absl::InvalidArgumentError(absl::StrCat(path, ".type: must be set"));
    }
    if (f.max_length() > limits::kStringBytesMax) {
      return absl::InvalidArgumentError(absl::StrCat(path, ".max_length: exceeds the maximum ",
                                                     limits::kStringBytesMax));
    }
    if (f.max_elements() > limits::kSetElementsMax) {
      return absl::InvalidArgumentError(absl::StrCat(
          path, ".max_elements: exceeds the maximum ", limits::kSetElementsMax));
    }
    if (f.max_elements() != 0 && f.type() != interco::v1::FIELD_TYPE_STRING_SET) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ".max_elements: only for string sets"));
    }
    if (f.indexed() && (f.type() == interco::v1::FIELD_TYPE_DOUBLE ||
                        f.type() == interco::v1::FIELD_TYPE_GEO_POINT)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ".indexed: ", TypeName(f.type()), " fields cannot be indexed"));
    }
    if (!interco::v1::StringFormat_IsValid(f.format()) ||
        (f.format() != interco::v1::STRING_FORMAT_UNSPECIFIED &&
         f.type() != interco::v1::FIELD_TYPE_STRING &&
         f.type() != interco::v1::FIELD_TYPE_STRING_SET)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ".format: only for string and string set fields"));
    }
    if (f.description().size() > limits::kDescriptionBytesMax) {
      return absl::InvalidArgumentError(absl::StrCat(path, ".description: too long"));
    }
    if (!out.index_.emplace(f.name(), i).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ".name: duplicate field \"", f.name(), "\""));
    }
  }
  return out;
}

const FieldSpec* RegistrySchema::Find(std::string_view name) const {
  auto it = index_.find(absl::string_view(name.data(), name.size()));
  return it == index_.end() ? nullptr : &schema_.fields(it->second);
}

absl::Status RegistrySchema::ValidateValue(const FieldSpec& spec, const Value& value,
                                           std::string_view path_view) const {
  const absl::string_view path = ToAbsl(path_view);
  if (value.kind_case() == Value::KIND_NOT_SET) {
    if (spec.required()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": required field cannot be empty"));
    }
    return absl::OkStatus();
  }
  if (!ValueMatchesType(value, spec.type())) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": field \"", spec.name(), "\" is a ", TypeName(spec.type())));
  }
  switch (spec.type()) {
    case interco::v1::FIELD_TYPE_STRING:
      return CheckString(value.string_value(), MaxLength(spec), path, spec.format());
    case interco::v1::FIELD_TYPE_DOUBLE:
      if (!std::isfinite(value.double_value())) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": must be a finite number"));
      }
      return absl::OkStatus();
    case interco::v1::FIELD_TYPE_TIMESTAMP: {
      const auto& t = value.timestamp_value();
      // The range of google.protobuf.Timestamp: 0001-01-01 to 9999-12-31.
      if (t.seconds() < -62135596800 || t.seconds() > 253402300799 || t.nanos() < 0 ||
          t.nanos() > 999999999) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": timestamp out of range"));
      }
      return absl::OkStatus();
    }
    case interco::v1::FIELD_TYPE_STRING_SET: {
      const auto& vs = value.string_set_value().values();
      if (static_cast<uint32_t>(vs.size()) > MaxElements(spec)) {
        return absl::InvalidArgumentError(absl::StrCat(
            path, ": ", vs.size(), " elements exceeds the maximum ", MaxElements(spec)));
      }
      for (int i = 0; i < vs.size(); ++i) {
        if (absl::Status s = CheckString(vs[i], MaxLength(spec), absl::StrCat(path, "[", i, "]"),
                                         spec.format());
            !s.ok()) {
          return s;
        }
      }
      if (spec.required() && vs.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": required set cannot be empty"));
      }
      return absl::OkStatus();
    }
    case interco::v1::FIELD_TYPE_GEO_POINT: {
      const auto& g = value.geo_point_value();
      if (!(g.latitude() >= -90 && g.latitude() <= 90) ||
          !(g.longitude() >= -180 && g.longitude() <= 180)) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": latitude must be in [-90, 90] and longitude in [-180, 180]"));
      }
      return absl::OkStatus();
    }
    default:
      return absl::OkStatus();
  }
}

void NormalizeValue(Value& value) {
  if (!value.has_string_set_value()) return;
  auto* vs = value.mutable_string_set_value()->mutable_values();
  std::sort(vs->begin(), vs->end());
  vs->erase(std::unique(vs->begin(), vs->end()), vs->end());
}

}  // namespace interco::replication
