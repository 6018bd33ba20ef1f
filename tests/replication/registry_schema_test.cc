#include "replication/registry_schema.h"

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "interco/v1/registry.pb.h"
#include "interco/v1/value.pb.h"

namespace interco::replication {
namespace {

using interco::v1::FieldSpec;
using interco::v1::FieldType;
using interco::v1::Schema;
using interco::v1::Value;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string Message(const absl::Status& s) { return std::string(s.message()); }

FieldSpec Field(const std::string& name, FieldType type) {
  FieldSpec f;
  f.set_name(name);
  f.set_type(type);
  return f;
}

FieldSpec Required(FieldSpec f) {
  f.set_required(true);
  return f;
}

Schema MakeSchema(std::initializer_list<FieldSpec> fields) {
  Schema s;
  for (const FieldSpec& f : fields) *s.add_fields() = f;
  return s;
}

RegistrySchema MustCompile(const Schema& schema) {
  absl::StatusOr<RegistrySchema> compiled = RegistrySchema::Compile(schema);
  EXPECT_TRUE(compiled.ok()) << compiled.status();
  if (!compiled.ok()) {
    // A schema that always compiles, so that callers can go on and fail their own checks.
    return *RegistrySchema::Compile(MakeSchema({Field("x", interco::v1::FIELD_TYPE_STRING)}));
  }
  return *std::move(compiled);
}

absl::Status CompileStatus(const Schema& schema) {
  return RegistrySchema::Compile(schema).status();
}

Value Str(const std::string& s) {
  Value v;
  v.set_string_value(s);
  return v;
}
Value Int(int64_t i) {
  Value v;
  v.set_int64_value(i);
  return v;
}
Value Dbl(double d) {
  Value v;
  v.set_double_value(d);
  return v;
}
Value Bool(bool b) {
  Value v;
  v.set_bool_value(b);
  return v;
}
Value Time(int64_t seconds, int32_t nanos) {
  Value v;
  v.mutable_timestamp_value()->set_seconds(seconds);
  v.mutable_timestamp_value()->set_nanos(nanos);
  return v;
}
Value Set(const std::vector<std::string>& values) {
  Value v;
  auto* s = v.mutable_string_set_value();
  for (const std::string& e : values) s->add_values(e);
  return v;
}
Value Geo(double lat, double lng) {
  Value v;
  v.mutable_geo_point_value()->set_latitude(lat);
  v.mutable_geo_point_value()->set_longitude(lng);
  return v;
}

// One valid value of each type, in FieldType order.
std::vector<std::pair<FieldType, Value>> OneOfEachType() {
  return {
      {interco::v1::FIELD_TYPE_STRING, Str("Lyon")},
      {interco::v1::FIELD_TYPE_INT64, Int(522250)},
      {interco::v1::FIELD_TYPE_DOUBLE, Dbl(47.87)},
      {interco::v1::FIELD_TYPE_BOOL, Bool(true)},
      {interco::v1::FIELD_TYPE_TIMESTAMP, Time(1'700'000'000, 5)},
      {interco::v1::FIELD_TYPE_STRING_SET, Set({"a", "b"})},
      {interco::v1::FIELD_TYPE_GEO_POINT, Geo(45.76, 4.83)},
  };
}

// --- Compile -----------------------------------------------------------------------------

TEST(RegistrySchemaCompileTest, AcceptsValidSchema) {
  FieldSpec tags = Field("tags", interco::v1::FIELD_TYPE_STRING_SET);
  tags.set_max_elements(10);
  tags.set_max_length(32);
  tags.set_indexed(true);
  FieldSpec nom = Required(Field("nom", interco::v1::FIELD_TYPE_STRING));
  nom.set_indexed(true);
  nom.set_personal(true);
  nom.set_description(std::string(1024, 'd'));
  const Schema schema = MakeSchema({nom, Field("population", interco::v1::FIELD_TYPE_INT64),
                                    Field("surface", interco::v1::FIELD_TYPE_DOUBLE), tags,
                                    Field("centre", interco::v1::FIELD_TYPE_GEO_POINT)});
  absl::StatusOr<RegistrySchema> compiled = RegistrySchema::Compile(schema);
  ASSERT_TRUE(compiled.ok()) << compiled.status();
  EXPECT_EQ(compiled->proto().SerializeAsString(), schema.SerializeAsString());
}

TEST(RegistrySchemaCompileTest, AcceptsIndexOnEveryIndexableType) {
  for (FieldType t :
       {interco::v1::FIELD_TYPE_STRING, interco::v1::FIELD_TYPE_INT64, interco::v1::FIELD_TYPE_BOOL,
        interco::v1::FIELD_TYPE_TIMESTAMP, interco::v1::FIELD_TYPE_STRING_SET}) {
    FieldSpec f = Field("f", t);
    f.set_indexed(true);
    EXPECT_TRUE(CompileStatus(MakeSchema({f})).ok()) << interco::v1::FieldType_Name(t);
  }
}

TEST(RegistrySchemaCompileTest, RejectsEmptySchema) {
  const absl::Status s = CompileStatus(Schema());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("schema.fields"));
}

TEST(RegistrySchemaCompileTest, RejectsDuplicateNames) {
  const absl::Status s = CompileStatus(MakeSchema({Field("a", interco::v1::FIELD_TYPE_STRING),
                                                   Field("b", interco::v1::FIELD_TYPE_INT64),
                                                   Field("a", interco::v1::FIELD_TYPE_BOOL)}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("schema.fields[2].name"));
  EXPECT_THAT(Message(s), HasSubstr("duplicate"));
}

TEST(RegistrySchemaCompileTest, RejectsInvalidFieldName) {
  for (const char* name : {"", "Nom", "1a", "a-b", "a.b"}) {
    const absl::Status s = CompileStatus(MakeSchema({Field("ok", interco::v1::FIELD_TYPE_STRING),
                                                     Field(name, interco::v1::FIELD_TYPE_STRING)}));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_THAT(Message(s), HasSubstr("schema.fields[1].name")) << name;
  }
  EXPECT_FALSE(
      CompileStatus(MakeSchema({Field(std::string(64, 'a'), interco::v1::FIELD_TYPE_STRING)}))
          .ok());
  EXPECT_TRUE(
      CompileStatus(MakeSchema({Field(std::string(63, 'a'), interco::v1::FIELD_TYPE_STRING)}))
          .ok());
}

TEST(RegistrySchemaCompileTest, RejectsUnspecifiedType) {
  const absl::Status s =
      CompileStatus(MakeSchema({Field("a", interco::v1::FIELD_TYPE_STRING),
                                Field("b", interco::v1::FIELD_TYPE_UNSPECIFIED)}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("schema.fields[1].type"));
}

TEST(RegistrySchemaCompileTest, RejectsUnknownTypeNumber) {
  FieldSpec f = Field("a", interco::v1::FIELD_TYPE_STRING);
  f.set_type(static_cast<FieldType>(42));
  const absl::Status s = CompileStatus(MakeSchema({f}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("schema.fields[0].type"));
}

TEST(RegistrySchemaCompileTest, RejectsIndexOnDoubleAndGeoPoint) {
  FieldSpec d = Field("surface", interco::v1::FIELD_TYPE_DOUBLE);
  d.set_indexed(true);
  absl::Status s = CompileStatus(MakeSchema({Field("a", interco::v1::FIELD_TYPE_STRING), d}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("schema.fields[1].indexed"));

  FieldSpec g = Field("centre", interco::v1::FIELD_TYPE_GEO_POINT);
  g.set_indexed(true);
  s = CompileStatus(MakeSchema({g}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("schema.fields[0].indexed"));
}

TEST(RegistrySchemaCompileTest, RejectsMaxElementsOnNonSet) {
  for (FieldType t : {interco::v1::FIELD_TYPE_STRING, interco::v1::FIELD_TYPE_INT64,
                      interco::v1::FIELD_TYPE_DOUBLE, interco::v1::FIELD_TYPE_BOOL,
                      interco::v1::FIELD_TYPE_TIMESTAMP, interco::v1::FIELD_TYPE_GEO_POINT}) {
    FieldSpec f = Field("f", t);
    f.set_max_elements(3);
    const absl::Status s = CompileStatus(MakeSchema({f}));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << interco::v1::FieldType_Name(t);
    EXPECT_THAT(Message(s), HasSubstr("schema.fields[0].max_elements"));
  }
  FieldSpec set = Field("f", interco::v1::FIELD_TYPE_STRING_SET);
  set.set_max_elements(3);
  EXPECT_TRUE(CompileStatus(MakeSchema({set})).ok());
}

TEST(RegistrySchemaCompileTest, RejectsMaxElementsOverCap) {
  FieldSpec f = Field("f", interco::v1::FIELD_TYPE_STRING_SET);
  f.set_max_elements(10000);
  EXPECT_TRUE(CompileStatus(MakeSchema({f})).ok());
  f.set_max_elements(10001);
  const absl::Status s = CompileStatus(MakeSchema({f}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("schema.fields[0].max_elements"));
}

TEST(RegistrySchemaCompileTest, RejectsMaxLengthOverCap) {
  FieldSpec f = Field("f", interco::v1::FIELD_TYPE_STRING);
  f.set_max_length(65536);
  EXPECT_TRUE(CompileStatus(MakeSchema({f})).ok());
  f.set_max_length(65537);
  const absl::Status s = CompileStatus(MakeSchema({Field("a", interco::v1::FIELD_TYPE_INT64), f}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("schema.fields[1].max_length"));
}

TEST(RegistrySchemaCompileTest, RejectsLongDescription) {
  FieldSpec f = Field("f", interco::v1::FIELD_TYPE_STRING);
  f.set_description(std::string(1025, 'd'));
  const absl::Status s = CompileStatus(MakeSchema({f}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("schema.fields[0].description"));
}

TEST(RegistrySchemaCompileTest, FieldCountLimit) {
  Schema schema;
  for (int i = 0; i < 128; ++i) {
    *schema.add_fields() = Field("f" + std::to_string(i), interco::v1::FIELD_TYPE_STRING);
  }
  EXPECT_TRUE(CompileStatus(schema).ok());
  *schema.add_fields() = Field("f128", interco::v1::FIELD_TYPE_STRING);
  const absl::Status s = CompileStatus(schema);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("129"));
  EXPECT_THAT(Message(s), HasSubstr("schema.fields"));
}

TEST(RegistrySchemaCompileTest, ErrorNamesTheFirstBadFieldIndex) {
  Schema schema;
  for (int i = 0; i < 12; ++i) {
    *schema.add_fields() = Field("f" + std::to_string(i), interco::v1::FIELD_TYPE_STRING);
  }
  schema.mutable_fields(11)->set_type(interco::v1::FIELD_TYPE_UNSPECIFIED);
  const absl::Status s = CompileStatus(schema);
  EXPECT_THAT(Message(s), HasSubstr("schema.fields[11].type"));
}

TEST(RegistrySchemaTest, FindReturnsSpecOrNull) {
  const RegistrySchema schema =
      MustCompile(MakeSchema({Field("nom", interco::v1::FIELD_TYPE_STRING),
                              Field("population", interco::v1::FIELD_TYPE_INT64)}));
  const FieldSpec* nom = schema.Find("nom");
  ASSERT_NE(nom, nullptr);
  EXPECT_EQ(nom->name(), "nom");
  EXPECT_EQ(nom->type(), interco::v1::FIELD_TYPE_STRING);
  const FieldSpec* pop = schema.Find("population");
  ASSERT_NE(pop, nullptr);
  EXPECT_EQ(pop->type(), interco::v1::FIELD_TYPE_INT64);
  EXPECT_EQ(schema.Find("no"), nullptr);
  EXPECT_EQ(schema.Find("nomx"), nullptr);
  EXPECT_EQ(schema.Find("Nom"), nullptr);
  EXPECT_EQ(schema.Find(""), nullptr);
}

TEST(RegistrySchemaTest, FindSurvivesCopies) {
  const RegistrySchema original = MustCompile(MakeSchema(
      {Field("a", interco::v1::FIELD_TYPE_STRING), Field("b", interco::v1::FIELD_TYPE_INT64)}));
  const RegistrySchema copy = original;  // NOLINT(performance-unnecessary-copy-initialization)
  const FieldSpec* b = copy.Find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->type(), interco::v1::FIELD_TYPE_INT64);
  EXPECT_NE(b, original.Find("b"));
}

TEST(RegistrySchemaTest, EffectiveLimits) {
  FieldSpec f = Field("f", interco::v1::FIELD_TYPE_STRING_SET);
  EXPECT_EQ(RegistrySchema::MaxLength(f), 4096u);
  EXPECT_EQ(RegistrySchema::MaxElements(f), 1024u);
  f.set_max_length(7);
  f.set_max_elements(3);
  EXPECT_EQ(RegistrySchema::MaxLength(f), 7u);
  EXPECT_EQ(RegistrySchema::MaxElements(f), 3u);
}

// --- ValidateValue -----------------------------------------------------------------------

class ValidateValueTest : public ::testing::Test {
 protected:
  absl::Status Validate(const FieldSpec& spec, const Value& value) {
    const RegistrySchema schema = MustCompile(MakeSchema({spec}));
    return schema.ValidateValue(*schema.Find(spec.name()), value, "record.fields[f]");
  }
};

TEST_F(ValidateValueTest, AcceptsMatchingKindOfEveryType) {
  for (const auto& [type, value] : OneOfEachType()) {
    EXPECT_TRUE(Validate(Field("f", type), value).ok()) << interco::v1::FieldType_Name(type);
  }
}

TEST_F(ValidateValueTest, RejectsTypeMismatchForEveryType) {
  const auto values = OneOfEachType();
  for (const auto& [type, unused] : values) {
    for (const auto& [other_type, other_value] : values) {
      if (other_type == type) continue;
      const absl::Status s = Validate(Field("f", type), other_value);
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument)
          << interco::v1::FieldType_Name(type) << " given "
          << interco::v1::FieldType_Name(other_type);
      EXPECT_THAT(Message(s), HasSubstr("record.fields[f]"));
      EXPECT_THAT(Message(s), HasSubstr("\"f\""));
    }
  }
}

TEST_F(ValidateValueTest, TypeMismatchMessageNamesExpectedType) {
  EXPECT_THAT(Message(Validate(Field("f", interco::v1::FIELD_TYPE_INT64), Str("12"))),
              HasSubstr("int64"));
  EXPECT_THAT(Message(Validate(Field("f", interco::v1::FIELD_TYPE_STRING_SET), Str("a"))),
              HasSubstr("string set"));
}

TEST_F(ValidateValueTest, ClearIsValidForOptionalFieldsOnly) {
  for (const auto& [type, unused] : OneOfEachType()) {
    EXPECT_TRUE(Validate(Field("f", type), Value()).ok()) << interco::v1::FieldType_Name(type);
    const absl::Status s = Validate(Required(Field("f", type)), Value());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << interco::v1::FieldType_Name(type);
    EXPECT_THAT(Message(s), HasSubstr("record.fields[f]"));
    EXPECT_THAT(Message(s), HasSubstr("required"));
  }
}

TEST_F(ValidateValueTest, StringDefaultMaximumLength) {
  const FieldSpec f = Field("f", interco::v1::FIELD_TYPE_STRING);
  EXPECT_TRUE(Validate(f, Str("")).ok());
  EXPECT_TRUE(Validate(f, Str(std::string(4096, 'x'))).ok());
  const absl::Status s = Validate(f, Str(std::string(4097, 'x')));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("record.fields[f]"));
  EXPECT_THAT(Message(s), HasSubstr("4097"));
  EXPECT_THAT(Message(s), HasSubstr("4096"));
}

TEST_F(ValidateValueTest, StringCustomMaximumLength) {
  FieldSpec f = Field("f", interco::v1::FIELD_TYPE_STRING);
  f.set_max_length(5);
  EXPECT_TRUE(Validate(f, Str("12345")).ok());
  EXPECT_EQ(Validate(f, Str("123456")).code(), absl::StatusCode::kInvalidArgument);
  // The limit is in bytes: three two-byte characters exceed five bytes.
  EXPECT_EQ(Validate(f, Str("\xC3\xA9\xC3\xA9\xC3\xA9")).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(Validate(f, Str("\xC3\xA9\xC3\xA9x")).ok());
  // A large custom limit lifts the default.
  f.set_max_length(65536);
  EXPECT_TRUE(Validate(f, Str(std::string(65536, 'x'))).ok());
  EXPECT_FALSE(Validate(f, Str(std::string(65537, 'x'))).ok());
}

TEST_F(ValidateValueTest, AcceptsValidUtf8) {
  const FieldSpec f = Field("f", interco::v1::FIELD_TYPE_STRING);
  for (const std::string& s : {
           std::string("Saint-\xC3\x89tienne"),  // É
           std::string("\xE2\x82\xAC"),          // €
           std::string("\xF0\x9D\x84\x9E"),      // U+1D11E
           std::string("\xF4\x8F\xBF\xBF"),      // U+10FFFF, the last code point
           std::string("\xED\x9F\xBF"),          // U+D7FF, just below surrogates
           std::string("\xEE\x80\x80"),          // U+E000, just above surrogates
           std::string("\xEF\xBF\xBF"),          // U+FFFF
           std::string("\xC2\x80"),              // U+0080, smallest 2-byte
           std::string("\xE0\xA0\x80"),          // U+0800, smallest 3-byte
           std::string("\xF0\x90\x80\x80"),      // U+10000, smallest 4-byte
           std::string("a\0b", 3),               // NUL is valid UTF-8
       }) {
    EXPECT_TRUE(Validate(f, Str(s)).ok()) << testing::PrintToString(s);
  }
}

TEST_F(ValidateValueTest, RejectsInvalidUtf8) {
  const FieldSpec f = Field("f", interco::v1::FIELD_TYPE_STRING);
  for (const std::string& s : {
           std::string("\xC0\xAF"),              // overlong '/'
           std::string("\xC1\xBF"),              // overlong
           std::string("\xE0\x80\xAF"),          // overlong 3-byte
           std::string("\xE0\x9F\xBF"),          // overlong 3-byte (U+07FF)
           std::string("\xF0\x80\x80\xAF"),      // overlong 4-byte
           std::string("\xF0\x8F\xBF\xBF"),      // overlong 4-byte (U+FFFF)
           std::string("\xED\xA0\x80"),          // U+D800, high surrogate
           std::string("\xED\xBF\xBF"),          // U+DFFF, low surrogate
           std::string("\xF4\x90\x80\x80"),      // U+110000
           std::string("\xF5\x80\x80\x80"),      // beyond Unicode
           std::string("\xF8\x88\x80\x80\x80"),  // 5-byte form
           std::string("\xFF"),
           std::string("\x80"),  // lone continuation
           std::string("a\xBF"),
           std::string("\xC3"),          // truncated at end of string
           std::string("abc\xE2\x82"),   // truncated at end of string
           std::string("\xF0\x9D\x84"),  // truncated 4-byte
           std::string("\xC3x"),         // continuation missing
           std::string("\xE2\x28\xA1"),  // bad second byte
           std::string("\xE2\x82\x28"),  // bad third byte
       }) {
    const absl::Status st = Validate(f, Str(s));
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << testing::PrintToString(s);
    EXPECT_THAT(Message(st), HasSubstr("UTF-8")) << testing::PrintToString(s);
  }
}

TEST_F(ValidateValueTest, Int64AndBoolAcceptFullRange) {
  const FieldSpec i = Field("f", interco::v1::FIELD_TYPE_INT64);
  EXPECT_TRUE(Validate(i, Int(std::numeric_limits<int64_t>::min())).ok());
  EXPECT_TRUE(Validate(i, Int(std::numeric_limits<int64_t>::max())).ok());
  EXPECT_TRUE(Validate(i, Int(0)).ok());
  const FieldSpec b = Field("f", interco::v1::FIELD_TYPE_BOOL);
  EXPECT_TRUE(Validate(b, Bool(false)).ok());
  EXPECT_TRUE(Validate(b, Bool(true)).ok());
}

TEST_F(ValidateValueTest, DoubleMustBeFinite) {
  const FieldSpec f = Field("f", interco::v1::FIELD_TYPE_DOUBLE);
  for (double d : {0.0, -0.0, 1e308, -1e308, std::numeric_limits<double>::denorm_min(),
                   std::numeric_limits<double>::max(), std::numeric_limits<double>::lowest()}) {
    EXPECT_TRUE(Validate(f, Dbl(d)).ok()) << d;
  }
  for (double d :
       {std::numeric_limits<double>::quiet_NaN(), -std::numeric_limits<double>::quiet_NaN(),
        std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity()}) {
    const absl::Status s = Validate(f, Dbl(d));
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << d;
    EXPECT_THAT(Message(s), HasSubstr("finite"));
  }
}

TEST_F(ValidateValueTest, TimestampRange) {
  const FieldSpec f = Field("f", interco::v1::FIELD_TYPE_TIMESTAMP);
  EXPECT_TRUE(Validate(f, Time(-62135596800, 0)).ok());          // 0001-01-01T00:00:00Z
  EXPECT_TRUE(Validate(f, Time(253402300799, 999999999)).ok());  // 9999-12-31T23:59:59.999999999Z
  EXPECT_TRUE(Validate(f, Time(0, 0)).ok());
  EXPECT_TRUE(Validate(f, Time(-1, 500)).ok());
  for (const Value& v : {Time(-62135596801, 0), Time(253402300800, 0), Time(0, -1),
                         Time(0, 1'000'000'000), Time(std::numeric_limits<int64_t>::max(), 0)}) {
    const absl::Status s = Validate(f, v);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << v.DebugString();
    EXPECT_THAT(Message(s), HasSubstr("out of range"));
  }
}

TEST_F(ValidateValueTest, GeoPointRange) {
  const FieldSpec f = Field("f", interco::v1::FIELD_TYPE_GEO_POINT);
  for (const Value& v : {Geo(0, 0), Geo(90, 180), Geo(-90, -180), Geo(45.764, 4.8357)}) {
    EXPECT_TRUE(Validate(f, v).ok()) << v.DebugString();
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  for (const Value& v : {Geo(90.0001, 0), Geo(-90.0001, 0), Geo(0, 180.0001), Geo(0, -180.0001),
                         Geo(nan, 0), Geo(0, nan), Geo(nan, nan), Geo(inf, 0), Geo(0, -inf)}) {
    const absl::Status s = Validate(f, v);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << v.DebugString();
    EXPECT_THAT(Message(s), HasSubstr("latitude"));
  }
}

TEST_F(ValidateValueTest, SetElementCountLimit) {
  FieldSpec f = Field("f", interco::v1::FIELD_TYPE_STRING_SET);
  std::vector<std::string> many;
  for (int i = 0; i < 1025; ++i) many.push_back("e" + std::to_string(i));
  EXPECT_EQ(Validate(f, Set(many)).code(), absl::StatusCode::kInvalidArgument);
  many.pop_back();
  EXPECT_TRUE(Validate(f, Set(many)).ok());

  f.set_max_elements(2);
  EXPECT_TRUE(Validate(f, Set({"a", "b"})).ok());
  const absl::Status s = Validate(f, Set({"a", "b", "c"}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("3 elements"));
  EXPECT_THAT(Message(s), HasSubstr("record.fields[f]"));
}

TEST_F(ValidateValueTest, SetElementLengthAndEncoding) {
  FieldSpec f = Field("f", interco::v1::FIELD_TYPE_STRING_SET);
  EXPECT_TRUE(Validate(f, Set({std::string(4096, 'x')})).ok());
  absl::Status s = Validate(f, Set({"ok", std::string(4097, 'x')}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("record.fields[f][1]"));

  f.set_max_length(3);
  EXPECT_TRUE(Validate(f, Set({"abc", ""})).ok());
  s = Validate(f, Set({"abc", "d", "efgh"}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("record.fields[f][2]"));

  s = Validate(f, Set({"a", "\xED\xA0\x80"}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("record.fields[f][1]"));
  EXPECT_THAT(Message(s), HasSubstr("UTF-8"));
}

TEST_F(ValidateValueTest, RequiredSetCannotBeEmpty) {
  const FieldSpec optional = Field("f", interco::v1::FIELD_TYPE_STRING_SET);
  EXPECT_TRUE(Validate(optional, Set({})).ok());
  const FieldSpec required = Required(optional);
  const absl::Status s = Validate(required, Set({}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("required"));
  EXPECT_TRUE(Validate(required, Set({"x"})).ok());
}

TEST_F(ValidateValueTest, PathPrefixesMessages) {
  const RegistrySchema schema =
      MustCompile(MakeSchema({Field("population", interco::v1::FIELD_TYPE_INT64)}));
  const absl::Status s =
      schema.ValidateValue(*schema.Find("population"), Str("x"), "records[3].fields[population]");
  EXPECT_THAT(Message(s), ::testing::StartsWith("records[3].fields[population]: "));
}

// --- Helpers -----------------------------------------------------------------------------

TEST(NormalizeValueTest, SortsAndDeduplicatesStringSets) {
  Value v = Set({"c", "a", "b", "a", "c", "c"});
  NormalizeValue(v);
  EXPECT_THAT(v.string_set_value().values(), ElementsAre("a", "b", "c"));
}

TEST(NormalizeValueTest, SortsByteWise) {
  Value v = Set({"b", "\xC3\xA9", "B", "a", ""});
  NormalizeValue(v);
  EXPECT_THAT(v.string_set_value().values(), ElementsAre("", "B", "a", "b", "\xC3\xA9"));
}

TEST(NormalizeValueTest, EmptySetStaysEmptySet) {
  Value v = Set({});
  NormalizeValue(v);
  EXPECT_TRUE(v.has_string_set_value());
  EXPECT_EQ(v.string_set_value().values_size(), 0);
}

TEST(NormalizeValueTest, LeavesOtherKindsAlone) {
  for (const auto& [type, value] : OneOfEachType()) {
    if (type == interco::v1::FIELD_TYPE_STRING_SET) continue;
    Value copy = value;
    NormalizeValue(copy);
    EXPECT_EQ(copy.SerializeAsString(), value.SerializeAsString());
  }
  Value none;
  NormalizeValue(none);
  EXPECT_EQ(none.kind_case(), Value::KIND_NOT_SET);
}

TEST(ValueMatchesTypeTest, MatchesOnlyItsOwnType) {
  const auto values = OneOfEachType();
  for (const auto& [type, unused] : values) {
    for (const auto& [value_type, value] : values) {
      EXPECT_EQ(ValueMatchesType(value, type), type == value_type)
          << interco::v1::FieldType_Name(type) << " vs " << interco::v1::FieldType_Name(value_type);
    }
    EXPECT_FALSE(ValueMatchesType(Value(), type));
  }
  EXPECT_FALSE(ValueMatchesType(Str("x"), interco::v1::FIELD_TYPE_UNSPECIFIED));
}

}  // namespace
}  // namespace interco::replication

namespace interco::replication {
namespace {

TEST(StringFormatTest, SirenAndInseeFormatsAreChecked) {
  interco::v1::Schema schema;
  auto* f = schema.add_fields();
  f->set_name("siren");
  f->set_type(interco::v1::FIELD_TYPE_STRING);
  f->set_format(interco::v1::STRING_FORMAT_SIREN);
  f = schema.add_fields();
  f->set_name("membres");
  f->set_type(interco::v1::FIELD_TYPE_STRING_SET);
  f->set_format(interco::v1::STRING_FORMAT_INSEE_COMMUNE);
  absl::StatusOr<RegistrySchema> compiled = RegistrySchema::Compile(schema);
  ASSERT_TRUE(compiled.ok()) << compiled.status();
  interco::v1::Value v;
  v.set_string_value("200046977");
  EXPECT_TRUE(compiled->ValidateValue(*compiled->Find("siren"), v, "x").ok());
  v.set_string_value("200046978");
  absl::Status s = compiled->ValidateValue(*compiled->Find("siren"), v, "record.fields[siren]");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("record.fields[siren]"), std::string::npos);
  interco::v1::Value set;
  set.mutable_string_set_value()->add_values("01053");
  set.mutable_string_set_value()->add_values("2A004");
  EXPECT_TRUE(compiled->ValidateValue(*compiled->Find("membres"), set, "x").ok());
  set.mutable_string_set_value()->add_values("2C004");
  s = compiled->ValidateValue(*compiled->Find("membres"), set, "m");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.message()).find("m[2]"), std::string::npos);
}

TEST(StringFormatTest, FormatOnlyOnStrings) {
  interco::v1::Schema schema;
  auto* f = schema.add_fields();
  f->set_name("n");
  f->set_type(interco::v1::FIELD_TYPE_INT64);
  f->set_format(interco::v1::STRING_FORMAT_SIREN);
  absl::StatusOr<RegistrySchema> compiled = RegistrySchema::Compile(schema);
  EXPECT_EQ(compiled.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(compiled.status().message()).find("schema.fields[0].format"),
            std::string::npos);
}

}  // namespace
}  // namespace interco::replication
