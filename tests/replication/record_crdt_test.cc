#include "replication/record_crdt.h"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/timestamp.pb.h"
#include "gtest/gtest.h"
#include "interco/replication/v1/state.pb.h"
#include "interco/v1/record.pb.h"
#include "interco/v1/registry.pb.h"
#include "interco/v1/value.pb.h"
#include "replication/base/limits.h"
#include "replication/change_log.h"
#include "replication/env.h"
#include "replication/hlc.h"
#include "replication/registry_schema.h"

namespace interco::replication {
namespace {

using interco::replication::v1::SetElement;
using interco::v1::FieldSpec;
using interco::v1::FieldType;
using interco::v1::Schema;
using interco::v1::Value;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Kind = LocalWrite::Kind;

// Three authorities, in increasing SIREN order.
constexpr uint32_t kA = 200046977;  // Métropole de Lyon
constexpr uint32_t kC = 210100012;
constexpr uint32_t kB = 217400423;

constexpr uint64_t kBaseMs = 1'700'000'000'000;

// The stamp of a write `ms` milliseconds after the base time.
Stamp At(uint64_t ms, uint32_t origin, uint64_t logical = 0) {
  return Stamp{HybridLogicalClock::Pack(kBaseMs + ms, logical), origin};
}

std::string Message(const absl::Status& s) { return std::string(s.message()); }

// Deterministic serialization, so that equal states give equal bytes.
std::string Bytes(const RecordState& state) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    if (!state.SerializeToCodedStream(&coded)) ADD_FAILURE() << "serialization failed";
  }
  return out;
}

FieldSpec Field(const std::string& name, FieldType type, bool required = false) {
  FieldSpec f;
  f.set_name(name);
  f.set_type(type);
  f.set_required(required);
  return f;
}

RegistrySchema CompileOrDie(const Schema& schema) {
  absl::StatusOr<RegistrySchema> compiled = RegistrySchema::Compile(schema);
  if (!compiled.ok()) {
    ADD_FAILURE() << compiled.status();
    std::abort();
  }
  return *std::move(compiled);
}

// code: required string; label: string; population: int64; tags: string set.
const RegistrySchema& TestSchema() {
  static const RegistrySchema* const schema = [] {
    Schema s;
    *s.add_fields() = Field("code", interco::v1::FIELD_TYPE_STRING, /*required=*/true);
    *s.add_fields() = Field("label", interco::v1::FIELD_TYPE_STRING);
    *s.add_fields() = Field("population", interco::v1::FIELD_TYPE_INT64);
    *s.add_fields() = Field("tags", interco::v1::FIELD_TYPE_STRING_SET);
    return new RegistrySchema(CompileOrDie(s));
  }();
  return *schema;
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
Value Set(const std::vector<std::string>& values) {
  Value v;
  auto* set = v.mutable_string_set_value();
  for (const std::string& e : values) set->add_values(e);
  return v;
}
Value Clear() { return Value(); }

FieldValues Values(std::initializer_list<std::pair<std::string, Value>> entries) {
  FieldValues out;
  for (const auto& entry : entries) out[entry.first] = entry.second;
  return out;
}

LocalWrite Create(FieldValues values) {
  LocalWrite w;
  w.kind = Kind::kCreate;
  w.fields = std::move(values);
  return w;
}
LocalWrite Update(FieldValues values, std::vector<std::string> mask = {}) {
  LocalWrite w;
  w.kind = Kind::kUpdate;
  w.fields = std::move(values);
  w.mask = std::move(mask);
  return w;
}
LocalWrite Delete() {
  LocalWrite w;
  w.kind = Kind::kDelete;
  return w;
}
LocalWrite WithEtag(LocalWrite w, const std::string& etag) {
  w.expected_etag = etag;
  return w;
}
LocalWrite AllowMissing(LocalWrite w) {
  w.allow_missing = true;
  return w;
}

absl::StatusOr<std::optional<PlannedWrite>> Plan(const RecordState& state, const LocalWrite& w,
                                                 Stamp stamp) {
  return PlanLocalWrite(TestSchema(), state, w, stamp);
}

absl::Status PlanStatus(const RecordState& state, const LocalWrite& w, Stamp stamp) {
  return Plan(state, w, stamp).status();
}

// Plans `w` against `state`, replaces `state` with the result and returns the delta.
RecordState MustWrite(RecordState& state, const LocalWrite& w, Stamp stamp,
                      const RegistrySchema& schema = TestSchema()) {
  absl::StatusOr<std::optional<PlannedWrite>> planned = PlanLocalWrite(schema, state, w, stamp);
  if (!planned.ok()) {
    ADD_FAILURE() << planned.status();
    return RecordState();
  }
  if (!planned->has_value()) {
    ADD_FAILURE() << "no-op where a write was expected";
    return RecordState();
  }
  state = (*planned)->merged;
  return (*planned)->delta;
}

RecordState MergedCopy(RecordState state, const std::vector<const RecordState*>& deltas) {
  for (const RecordState* d : deltas) MergeRecordState(state, *d);
  return state;
}

// The visible fields as name -> text, for comparisons.
std::map<std::string, std::string> View(const RecordState& state) {
  FieldValues fields;
  VisibleFields(state, fields);
  std::map<std::string, std::string> out;
  for (const auto& [name, value] : fields) out[name] = value.ShortDebugString();
  return out;
}

std::optional<Value> VisibleValue(const RecordState& state, const std::string& name) {
  FieldValues fields;
  VisibleFields(state, fields);
  auto it = fields.find(name);
  if (it == fields.end()) return std::nullopt;
  return it->second;
}

std::optional<std::string> StringOf(const RecordState& state, const std::string& name) {
  std::optional<Value> v = VisibleValue(state, name);
  if (!v.has_value()) return std::nullopt;
  EXPECT_TRUE(v->has_string_value()) << v->ShortDebugString();
  return v->string_value();
}

std::optional<int64_t> IntOf(const RecordState& state, const std::string& name) {
  std::optional<Value> v = VisibleValue(state, name);
  if (!v.has_value()) return std::nullopt;
  EXPECT_TRUE(v->has_int64_value()) << v->ShortDebugString();
  return v->int64_value();
}

// The visible elements of the "tags" set (empty when absent).
std::vector<std::string> Tags(const RecordState& state) {
  std::optional<Value> v = VisibleValue(state, "tags");
  if (!v.has_value()) return {};
  EXPECT_TRUE(v->has_string_set_value()) << v->ShortDebugString();
  return {v->string_set_value().values().begin(), v->string_set_value().values().end()};
}

const FieldState* FindFieldState(const RecordState& state, const std::string& name) {
  for (const FieldState& f : state.fields()) {
    if (f.name() == name) return &f;
  }
  return nullptr;
}

std::vector<std::string> FieldNames(const RecordState& state) {
  std::vector<std::string> names;
  for (const FieldState& f : state.fields()) names.push_back(f.name());
  return names;
}

// Applies `deltas` to `base` in every order; expects one final state and returns it.
RecordState MergeInEveryOrder(const RecordState& base, const std::vector<RecordState>& deltas) {
  std::vector<size_t> order(deltas.size());
  std::iota(order.begin(), order.end(), 0);
  std::optional<std::string> expected;
  RecordState first;
  do {
    RecordState state = base;
    for (size_t i : order) MergeRecordState(state, deltas[i]);
    const std::string bytes = Bytes(state);
    if (!expected.has_value()) {
      expected = bytes;
      first = state;
    } else {
      EXPECT_EQ(bytes, *expected) << "order-dependent result; order starts with " << order[0]
                                  << "\ngot:      " << state.ShortDebugString()
                                  << "\nexpected: " << first.ShortDebugString();
    }
  } while (std::next_permutation(order.begin(), order.end()));
  return first;
}

// A live record created by C with code "69123".
RecordState BaseRecord(std::vector<std::string> tags = {}) {
  RecordState state;
  FieldValues values = Values({{"code", Str("69123")}, {"label", Str("Lyon")}});
  if (!tags.empty()) values["tags"] = Set(tags);
  MustWrite(state, Create(values), At(1, kC));
  return state;
}

// --- PlanLocalWrite: creates -------------------------------------------------------------

TEST(PlanLocalWriteTest, CreateMakesLiveRecordWithSuppliedFields) {
  const RecordState empty;
  absl::StatusOr<std::optional<PlannedWrite>> planned = Plan(
      empty,
      Create(
          Values({{"code", Str("69123")}, {"label", Str("Lyon")}, {"tags", Set({"b", "a", "a"})}})),
      At(10, kA));
  ASSERT_TRUE(planned.ok()) << planned.status();
  ASSERT_TRUE(planned->has_value());
  const RecordState& delta = (*planned)->delta;
  const RecordState& merged = (*planned)->merged;
  EXPECT_EQ(delta.causal_length(), 1u);
  EXPECT_EQ(delta.cl_hlc(), At(10, kA).hlc);
  EXPECT_EQ(delta.cl_origin(), kA);
  EXPECT_THAT(FieldNames(delta), ElementsAre("code", "label", "tags"));
  for (const FieldState& f : delta.fields()) {
    EXPECT_EQ(LifeOfField(f), 1u) << f.name();
    EXPECT_EQ(f.hlc(), At(10, kA).hlc) << f.name();
    EXPECT_EQ(f.origin(), kA) << f.name();
  }
  EXPECT_TRUE(IsLive(merged));
  EXPECT_EQ(StringOf(merged, "code"), "69123");
  EXPECT_EQ(StringOf(merged, "label"), "Lyon");
  EXPECT_EQ(IntOf(merged, "population"), std::nullopt);
  EXPECT_THAT(Tags(merged), ElementsAre("a", "b"));
  // The planned state is the current state merged with the delta.
  RecordState replay = empty;
  MergeRecordState(replay, delta);
  EXPECT_EQ(Bytes(replay), Bytes(merged));
}

TEST(PlanLocalWriteTest, CreateOfLiveRecordIsAlreadyExists) {
  RecordState state = BaseRecord();
  const absl::Status s = PlanStatus(state, Create(Values({{"code", Str("x")}})), At(10, kA));
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  // Checked before anything else, even an invalid value.
  EXPECT_EQ(PlanStatus(state, Create(Values({{"nope", Str("x")}})), At(10, kA)).code(),
            absl::StatusCode::kAlreadyExists);
}

TEST(PlanLocalWriteTest, CreateAfterDeleteStartsNewLife) {
  RecordState state = BaseRecord({"x"});
  MustWrite(state, Delete(), At(5, kA));
  const RecordState delta = MustWrite(state, Create(Values({{"code", Str("new")}})), At(6, kA));
  EXPECT_EQ(delta.causal_length(), 3u);
  EXPECT_EQ(delta.cl_hlc(), At(6, kA).hlc);
  ASSERT_EQ(delta.fields_size(), 1);
  EXPECT_EQ(LifeOfField(delta.fields(0)), 2u);
  EXPECT_TRUE(IsLive(state));
  EXPECT_EQ(View(state), (std::map<std::string, std::string>{{"code", "string_value: \"new\""}}));
}

TEST(PlanLocalWriteTest, RequiredFieldMissingOnCreate) {
  const absl::Status s =
      PlanStatus(RecordState(), Create(Values({{"label", Str("Lyon")}})), At(10, kA));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("record.fields[code]"));
  EXPECT_THAT(Message(s), HasSubstr("required"));
}

TEST(PlanLocalWriteTest, RequiredFieldClearedOnCreate) {
  const absl::Status s = PlanStatus(
      RecordState(), Create(Values({{"code", Clear()}, {"label", Str("Lyon")}})), At(10, kA));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("record.fields[code]"));
}

TEST(PlanLocalWriteTest, CreateWithOptionalClearStoresNoValue) {
  RecordState state;
  MustWrite(state, Create(Values({{"code", Str("c")}, {"label", Clear()}})), At(10, kA));
  EXPECT_EQ(StringOf(state, "label"), std::nullopt);
  EXPECT_EQ(View(state).size(), 1u);
}

TEST(PlanLocalWriteTest, WritingEmptySetLeavesFieldAbsent) {
  RecordState state;
  MustWrite(state, Create(Values({{"code", Str("c")}, {"tags", Set({})}})), At(10, kA));
  EXPECT_EQ(VisibleValue(state, "tags"), std::nullopt);
}

// --- PlanLocalWrite: existence and etags ----------------------------------------------------

TEST(PlanLocalWriteTest, UpdateOfMissingRecordIsNotFound) {
  const LocalWrite w = Update(Values({{"code", Str("x")}}));
  EXPECT_EQ(PlanStatus(RecordState(), w, At(10, kA)).code(), absl::StatusCode::kNotFound);
  RecordState deleted = BaseRecord();
  MustWrite(deleted, Delete(), At(5, kA));
  EXPECT_EQ(PlanStatus(deleted, w, At(10, kA)).code(), absl::StatusCode::kNotFound);
}

TEST(PlanLocalWriteTest, UpdateOfMissingRecordWithAllowMissingCreates) {
  RecordState state;
  const RecordState delta =
      MustWrite(state, AllowMissing(Update(Values({{"code", Str("x")}, {"population", Int(7)}}))),
                At(10, kA));
  EXPECT_EQ(delta.causal_length(), 1u);
  EXPECT_EQ(delta.cl_hlc(), At(10, kA).hlc);
  EXPECT_TRUE(IsLive(state));
  EXPECT_EQ(StringOf(state, "code"), "x");
  EXPECT_EQ(IntOf(state, "population"), 7);
  EXPECT_EQ(StringOf(state, "label"), std::nullopt);

  // Same from a deleted record: a new life.
  RecordState deleted = BaseRecord();
  MustWrite(deleted, Delete(), At(5, kA));
  const RecordState again =
      MustWrite(deleted, AllowMissing(Update(Values({{"code", Str("y")}}))), At(11, kA));
  EXPECT_EQ(again.causal_length(), 3u);
  EXPECT_EQ(View(deleted), (std::map<std::string, std::string>{{"code", "string_value: \"y\""}}));
}

TEST(PlanLocalWriteTest, UpdateWithAllowMissingStillRequiresRequiredFields) {
  const absl::Status s =
      PlanStatus(RecordState(), AllowMissing(Update(Values({{"label", Str("x")}}))), At(10, kA));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("record.fields[code]"));
}

TEST(PlanLocalWriteTest, DeleteOfMissingRecordIsNotFound) {
  EXPECT_EQ(PlanStatus(RecordState(), Delete(), At(10, kA)).code(), absl::StatusCode::kNotFound);
  RecordState deleted = BaseRecord();
  MustWrite(deleted, Delete(), At(5, kA));
  EXPECT_EQ(PlanStatus(deleted, Delete(), At(10, kA)).code(), absl::StatusCode::kNotFound);
}

TEST(PlanLocalWriteTest, DeleteOfMissingRecordWithAllowMissingIsNoOp) {
  absl::StatusOr<std::optional<PlannedWrite>> planned =
      Plan(RecordState(), AllowMissing(Delete()), At(10, kA));
  ASSERT_TRUE(planned.ok()) << planned.status();
  EXPECT_FALSE(planned->has_value());

  RecordState deleted = BaseRecord();
  MustWrite(deleted, Delete(), At(5, kA));
  planned = Plan(deleted, AllowMissing(Delete()), At(10, kA));
  ASSERT_TRUE(planned.ok()) << planned.status();
  EXPECT_FALSE(planned->has_value());
}

TEST(PlanLocalWriteTest, DeleteIncrementsCausalLengthAndDropsFields) {
  RecordState state = BaseRecord({"x", "y"});
  const RecordState delta = MustWrite(state, Delete(), At(10, kB));
  EXPECT_EQ(delta.causal_length(), 2u);
  EXPECT_EQ(delta.cl_hlc(), At(10, kB).hlc);
  EXPECT_EQ(delta.cl_origin(), kB);
  EXPECT_EQ(delta.fields_size(), 0);
  EXPECT_FALSE(IsLive(state));
  EXPECT_EQ(state.fields_size(), 0);
  EXPECT_TRUE(View(state).empty());
}

TEST(PlanLocalWriteTest, DeleteWithAllowMissingOfLiveRecordDeletes) {
  RecordState state = BaseRecord();
  MustWrite(state, AllowMissing(Delete()), At(10, kA));
  EXPECT_FALSE(IsLive(state));
}

TEST(PlanLocalWriteTest, EtagMismatchIsAborted) {
  RecordState state = BaseRecord();
  const std::string old_etag = ComputeEtag(state);
  MustWrite(state, Update(Values({{"label", Str("Lyon 1er")}}), {"label"}), At(5, kA));
  ASSERT_NE(ComputeEtag(state), old_etag);
  for (const LocalWrite& w :
       {WithEtag(Update(Values({{"label", Str("x")}}), {"label"}), old_etag),
        WithEtag(Delete(), old_etag),
        WithEtag(Update(Values({{"label", Str("x")}}), {"label"}), "0123456789abcdef")}) {
    const absl::Status s = PlanStatus(state, w, At(10, kA));
    EXPECT_EQ(s.code(), absl::StatusCode::kAborted);
    EXPECT_THAT(Message(s), HasSubstr("etag"));
  }
}

TEST(PlanLocalWriteTest, MatchingEtagSucceeds) {
  RecordState state = BaseRecord();
  MustWrite(state, WithEtag(Update(Values({{"label", Str("x")}}), {"label"}), ComputeEtag(state)),
            At(10, kA));
  EXPECT_EQ(StringOf(state, "label"), "x");
  MustWrite(state, WithEtag(Delete(), ComputeEtag(state)), At(11, kA));
  EXPECT_FALSE(IsLive(state));
}

TEST(PlanLocalWriteTest, EtagOnMissingRecordIsAborted) {
  RecordState deleted = BaseRecord();
  const std::string etag = ComputeEtag(deleted);
  MustWrite(deleted, Delete(), At(5, kA));
  const LocalWrite w = WithEtag(AllowMissing(Update(Values({{"code", Str("x")}}))), etag);
  EXPECT_EQ(PlanStatus(deleted, w, At(10, kA)).code(), absl::StatusCode::kAborted);
  // Deleting an absent record with allow_missing is a no-op: there is nothing to compare.
  EXPECT_TRUE(PlanStatus(deleted, WithEtag(AllowMissing(Delete()), etag), At(10, kA)).ok());
}

// --- PlanLocalWrite: validation ------------------------------------------------------------

TEST(PlanLocalWriteTest, UnknownFieldIsInvalidArgument) {
  absl::Status s =
      PlanStatus(RecordState(), Create(Values({{"code", Str("c")}, {"x", Str("?")}})), At(10, kA));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("record.fields[x]"));

  s = PlanStatus(BaseRecord(), Update(Values({{"superficie", Int(3)}}), {"label"}), At(10, kA));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("record.fields[superficie]"));
}

TEST(PlanLocalWriteTest, InvalidValueOutsideMaskIsStillRejected) {
  const absl::Status s = PlanStatus(
      BaseRecord(), Update(Values({{"label", Str("ok")}, {"population", Str("many")}}), {"label"}),
      At(10, kA));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("record.fields[population]"));
}

TEST(PlanLocalWriteTest, InvalidValueNamesField) {
  absl::Status s = PlanStatus(
      RecordState(), Create(Values({{"code", Str("c")}, {"label", Str("\xC3")}})), At(10, kA));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("record.fields[label]"));
  EXPECT_THAT(Message(s), HasSubstr("UTF-8"));

  s = PlanStatus(RecordState(), Create(Values({{"code", Int(69123)}})), At(10, kA));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("record.fields[code]"));
}

TEST(PlanLocalWriteTest, BadMaskPathNamesItsIndex) {
  const absl::Status s = PlanStatus(
      BaseRecord(), Update(Values({{"label", Str("x")}}), {"label", "nope"}), At(10, kA));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("update_mask.paths[1]"));
  EXPECT_THAT(Message(s), HasSubstr("nope"));
}

TEST(PlanLocalWriteTest, ClearingRequiredFieldIsRejected) {
  const RecordState state = BaseRecord();
  // In the mask without a value.
  absl::Status s = PlanStatus(state, Update(Values({}), {"code"}), At(10, kA));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("record.fields[code]"));
  // With an explicit clear.
  s = PlanStatus(state, Update(Values({{"code", Clear()}}), {"code"}), At(10, kA));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("record.fields[code]"));
  // By a full replace that leaves it out.
  s = PlanStatus(state, Update(Values({{"label", Str("x")}})), At(10, kA));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(s), HasSubstr("record.fields[code]"));
}

TEST(PlanLocalWriteTest, UpdateWithMaskChangesOnlyMaskedFields) {
  RecordState state = BaseRecord({"x"});
  MustWrite(state, Update(Values({{"population", Int(1)}}), {"population"}), At(5, kA));
  const RecordState delta = MustWrite(
      state,
      Update(Values({{"label", Str("Lyon 2e")}, {"population", Int(999)}, {"tags", Set({"z"})}}),
             {"label"}),
      At(10, kA));
  EXPECT_THAT(FieldNames(delta), ElementsAre("label"));
  EXPECT_EQ(StringOf(state, "code"), "69123");
  EXPECT_EQ(StringOf(state, "label"), "Lyon 2e");
  EXPECT_EQ(IntOf(state, "population"), 1);
  EXPECT_THAT(Tags(state), ElementsAre("x"));
}

TEST(PlanLocalWriteTest, UpdateDeltaCarriesTheLifeItEdits) {
  RecordState state = BaseRecord();
  const RecordState delta =
      MustWrite(state, Update(Values({{"population", Int(5)}}), {"population"}), At(10, kA));
  EXPECT_EQ(delta.causal_length(), state.causal_length());
  EXPECT_EQ(delta.cl_hlc(), At(1, kC).hlc);
  EXPECT_EQ(delta.cl_origin(), kC);
  // Self-contained: a replica that sees it first knows the record exists.
  RecordState replica;
  EXPECT_TRUE(MergeRecordState(replica, delta));
  EXPECT_TRUE(IsLive(replica));
  EXPECT_EQ(IntOf(replica, "population"), 5);
}

TEST(PlanLocalWriteTest, DuplicateMaskPathsAreHarmless) {
  RecordState state = BaseRecord();
  const RecordState delta =
      MustWrite(state, Update(Values({{"label", Str("x")}}), {"label", "label"}), At(10, kA));
  EXPECT_THAT(FieldNames(delta), ElementsAre("label"));
  EXPECT_EQ(StringOf(state, "label"), "x");
}

TEST(PlanLocalWriteTest, EmptyMaskReplacesEveryField) {
  RecordState state = BaseRecord({"x"});
  MustWrite(state, Update(Values({{"population", Int(1)}}), {"population"}), At(5, kA));
  const RecordState delta = MustWrite(
      state, Update(Values({{"code", Str("69123")}, {"population", Int(2)}})), At(10, kA));
  EXPECT_THAT(FieldNames(delta), ElementsAre("code", "label", "population", "tags"));
  EXPECT_EQ(StringOf(state, "code"), "69123");
  EXPECT_EQ(StringOf(state, "label"), std::nullopt);
  EXPECT_EQ(IntOf(state, "population"), 2);
  EXPECT_THAT(Tags(state), ElementsAre());
  EXPECT_EQ(View(state).size(), 2u);
}

TEST(PlanLocalWriteTest, MaskedFieldWithoutValueIsCleared) {
  RecordState state = BaseRecord({"x"});
  MustWrite(state, Update(Values({}), {"label", "tags"}), At(10, kA));
  EXPECT_EQ(StringOf(state, "label"), std::nullopt);
  EXPECT_THAT(Tags(state), ElementsAre());
  EXPECT_EQ(StringOf(state, "code"), "69123");
}

TEST(PlanLocalWriteTest, ExplicitClearOfOptionalFieldRemovesIt) {
  RecordState state = BaseRecord();
  const RecordState delta =
      MustWrite(state, Update(Values({{"label", Clear()}}), {"label"}), At(10, kA));
  ASSERT_EQ(delta.fields_size(), 1);
  EXPECT_FALSE(delta.fields(0).has_value());
  EXPECT_EQ(delta.fields(0).hlc(), At(10, kA).hlc);
  EXPECT_EQ(StringOf(state, "label"), std::nullopt);
}

TEST(PlanLocalWriteTest, StringSetUpdateAddsRemovesAndKeeps) {
  RecordState state = BaseRecord({"a", "b"});
  const Stamp created = At(1, kC);
  const RecordState delta =
      MustWrite(state, Update(Values({{"tags", Set({"c", "b"})}}), {"tags"}), At(10, kA));
  ASSERT_EQ(delta.fields_size(), 1);
  const FieldState& f = delta.fields(0);
  EXPECT_EQ(f.name(), "tags");
  // "a" is removed: the delta names the observed add (element and tag).
  ASSERT_EQ(f.removed_size(), 1);
  EXPECT_EQ(f.removed(0).value(), "a");
  EXPECT_EQ(f.removed(0).hlc(), created.hlc);
  EXPECT_EQ(f.removed(0).origin(), created.origin);
  // "c" is added with this write's tag; "b" is kept as is, so it is not in the delta.
  ASSERT_EQ(f.elements_size(), 1);
  EXPECT_EQ(f.elements(0).value(), "c");
  EXPECT_EQ(f.elements(0).hlc(), At(10, kA).hlc);
  EXPECT_EQ(f.elements(0).origin(), kA);

  EXPECT_THAT(Tags(state), ElementsAre("b", "c"));
  const FieldState* merged = FindFieldState(state, "tags");
  ASSERT_NE(merged, nullptr);
  ASSERT_EQ(merged->elements_size(), 2);
  EXPECT_EQ(merged->elements(0).value(), "b");
  EXPECT_EQ(merged->elements(0).hlc(), created.hlc);  // the original add of "b" survives
}

TEST(PlanLocalWriteTest, StringSetRewriteOfSameElementsIsANoOp) {
  RecordState state = BaseRecord({"a", "b"});
  auto planned = PlanLocalWrite(TestSchema(), state,
                                Update(Values({{"tags", Set({"b", "a", "b"})}}), {"tags"}), At(10, kA));
  ASSERT_TRUE(planned.ok()) << planned.status();
  EXPECT_FALSE(planned->has_value());
  EXPECT_THAT(Tags(state), ElementsAre("a", "b"));
}

TEST(PlanLocalWriteTest, UpdateChangingNothingVisibleIsANoOp) {
  RecordState state = BaseRecord({"x"});
  MustWrite(state, Update(Values({{"label", Str("l")}}), {"label"}), At(10, kA));
  auto planned =
      PlanLocalWrite(TestSchema(), state, Update(Values({{"label", Str("l")}}), {"label"}), At(11, kA));
  ASSERT_TRUE(planned.ok());
  EXPECT_FALSE(planned->has_value());
  // A real change is not.
  planned =
      PlanLocalWrite(TestSchema(), state, Update(Values({{"label", Str("m")}}), {"label"}), At(12, kA));
  ASSERT_TRUE(planned.ok());
  EXPECT_TRUE(planned->has_value());
}

TEST(PlanLocalWriteTest, StringSetClearRemovesEveryObservedAdd) {
  RecordState state = BaseRecord({"a"});
  // A concurrent add of "a" by B is merged here, so "a" has two adds.
  RecordState other = BaseRecord();
  const RecordState from_b =
      MustWrite(other, Update(Values({{"tags", Set({"a"})}}), {"tags"}), At(5, kB));
  MergeRecordState(state, from_b);
  const FieldState* tags = FindFieldState(state, "tags");
  ASSERT_NE(tags, nullptr);
  ASSERT_EQ(tags->elements_size(), 2);
  EXPECT_THAT(Tags(state), ElementsAre("a"));

  const RecordState delta = MustWrite(state, Update(Values({}), {"tags"}), At(10, kA));
  ASSERT_EQ(delta.fields_size(), 1);
  EXPECT_EQ(delta.fields(0).removed_size(), 2);
  EXPECT_THAT(Tags(state), ElementsAre());
}

TEST(PlanLocalWriteTest, RecordStateTooLargeIsResourceExhausted) {
  Schema s;
  for (int i = 0; i < 20; ++i) {
    FieldSpec f = Field("f" + std::to_string(i), interco::v1::FIELD_TYPE_STRING);
    f.set_max_length(65536);
    *s.add_fields() = f;
  }
  const RegistrySchema big = CompileOrDie(s);
  FieldValues values;
  for (int i = 0; i < 17; ++i) values["f" + std::to_string(i)] = Str(std::string(65536, 'x'));
  // 17 x 64 KiB > 1 MiB.
  const absl::Status st = PlanLocalWrite(big, RecordState(), Create(values), At(10, kA)).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kResourceExhausted);
  // 15 x 64 KiB fits.
  values.erase("f15");
  values.erase("f16");
  EXPECT_TRUE(PlanLocalWrite(big, RecordState(), Create(values), At(10, kA)).ok());
}

// --- Merge -----------------------------------------------------------------------------------

TEST(RecordMergeTest, MergeIntoEmptyStateCopiesDelta) {
  RecordState source;
  const RecordState delta =
      MustWrite(source, Create(Values({{"code", Str("c")}, {"tags", Set({"x"})}})), At(10, kA));
  RecordState replica;
  EXPECT_TRUE(MergeRecordState(replica, delta));
  EXPECT_EQ(Bytes(replica), Bytes(source));
}

TEST(RecordMergeTest, EmptyDeltaChangesNothing) {
  RecordState state = BaseRecord({"x"});
  const std::string before = Bytes(state);
  EXPECT_FALSE(MergeRecordState(state, RecordState()));
  EXPECT_EQ(Bytes(state), before);
  RecordState empty;
  EXPECT_FALSE(MergeRecordState(empty, RecordState()));
}

TEST(RecordMergeTest, SameDeltaTwiceReportsNoChange) {
  RecordState writer = BaseRecord({"x"});
  const RecordState delta = MustWrite(
      writer, Update(Values({{"label", Str("y")}, {"tags", Set({"z"})}}), {"label", "tags"}),
      At(10, kA));
  RecordState replica = BaseRecord({"x"});
  EXPECT_TRUE(MergeRecordState(replica, delta));
  const std::string once = Bytes(replica);
  EXPECT_FALSE(MergeRecordState(replica, delta));
  EXPECT_EQ(Bytes(replica), once);
}

TEST(RecordMergeTest, ConcurrentEditsOfDifferentFieldsBothSurvive) {
  const RecordState base = BaseRecord();
  RecordState at_a = base;
  RecordState at_b = base;
  const RecordState from_a =
      MustWrite(at_a, Update(Values({{"label", Str("Lyon (A)")}}), {"label"}), At(10, kA));
  const RecordState from_b =
      MustWrite(at_b, Update(Values({{"population", Int(522250)}}), {"population"}), At(9, kB));
  MergeRecordState(at_a, from_b);
  MergeRecordState(at_b, from_a);
  EXPECT_EQ(Bytes(at_a), Bytes(at_b));
  EXPECT_EQ(StringOf(at_a, "label"), "Lyon (A)");
  EXPECT_EQ(IntOf(at_a, "population"), 522250);
  EXPECT_EQ(StringOf(at_a, "code"), "69123");
}

TEST(RecordMergeTest, ConcurrentEditsOfSameFieldGreatestStampWinsOnEveryReplica) {
  const RecordState base = BaseRecord();
  std::vector<RecordState> deltas;
  RecordState scratch;
  deltas.push_back(
      MustWrite(scratch = base, Update(Values({{"label", Str("A")}}), {"label"}), At(10, kA)));
  deltas.push_back(
      MustWrite(scratch = base, Update(Values({{"label", Str("B")}}), {"label"}), At(20, kB)));
  deltas.push_back(
      MustWrite(scratch = base, Update(Values({{"label", Str("C")}}), {"label"}), At(15, kC)));
  const RecordState merged = MergeInEveryOrder(base, deltas);
  EXPECT_EQ(StringOf(merged, "label"), "B");
  const FieldState* f = FindFieldState(merged, "label");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->hlc(), At(20, kB).hlc);
  EXPECT_EQ(f->origin(), kB);
}

TEST(RecordMergeTest, ConcurrentEditsWithEqualHlcTieBreakOnOrigin) {
  const RecordState base = BaseRecord();
  std::vector<RecordState> deltas;
  RecordState scratch;
  // Same HLC on A and C: C's SIREN is greater, so C wins whatever the wall clock said.
  deltas.push_back(
      MustWrite(scratch = base, Update(Values({{"label", Str("C")}}), {"label"}), At(10, kC)));
  deltas.push_back(
      MustWrite(scratch = base, Update(Values({{"label", Str("A")}}), {"label"}), At(10, kA)));
  // An older B write loses even though B has the greatest SIREN.
  deltas.push_back(MustWrite(scratch = base, Update(Values({{"label", Str("B")}}), {"label"}),
                             At(9, kB, 65535)));
  const RecordState merged = MergeInEveryOrder(base, deltas);
  EXPECT_EQ(StringOf(merged, "label"), "C");
}

TEST(RecordMergeTest, ClearIsAnOrdinaryLastWriterWinsWrite) {
  const RecordState base = BaseRecord();
  RecordState scratch;
  const RecordState clear = MustWrite(scratch = base, Update(Values({}), {"label"}), At(20, kA));
  const RecordState set =
      MustWrite(scratch = base, Update(Values({{"label", Str("x")}}), {"label"}), At(10, kB));
  EXPECT_EQ(StringOf(MergeInEveryOrder(base, {clear, set}), "label"), std::nullopt);
  const RecordState later_set =
      MustWrite(scratch = base, Update(Values({{"label", Str("y")}}), {"label"}), At(30, kB));
  EXPECT_EQ(StringOf(MergeInEveryOrder(base, {clear, later_set}), "label"), "y");
}

TEST(RecordMergeTest, ConcurrentAddAndRemoveOfSameElementAddWins) {
  const RecordState base = BaseRecord();
  RecordState at_a = base;
  RecordState at_b = base;
  // B adds x, then removes it (the remove only covers the add B observed)...
  const RecordState b_add =
      MustWrite(at_b, Update(Values({{"tags", Set({"x"})}}), {"tags"}), At(5, kB));
  const RecordState b_remove =
      MustWrite(at_b, Update(Values({{"tags", Set({})}}), {"tags"}), At(20, kB));
  // ... while A concurrently adds x, with an older stamp than B's remove.
  const RecordState a_add =
      MustWrite(at_a, Update(Values({{"tags", Set({"x"})}}), {"tags"}), At(10, kA));
  const RecordState merged = MergeInEveryOrder(base, {b_add, b_remove, a_add});
  EXPECT_THAT(Tags(merged), ElementsAre("x"));
  // The surviving add is A's.
  const FieldState* f = FindFieldState(merged, "tags");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(f->elements_size(), 1);
  EXPECT_EQ(f->elements(0).origin(), kA);
}

TEST(RecordMergeTest, ConcurrentClearAndAddKeepsOnlyTheUnobservedAdd) {
  const RecordState base = BaseRecord({"x", "y"});
  RecordState scratch;
  const RecordState clear = MustWrite(scratch = base, Update(Values({}), {"tags"}), At(20, kA));
  const RecordState add_z = MustWrite(
      scratch = base, Update(Values({{"tags", Set({"x", "y", "z"})}}), {"tags"}), At(10, kB));
  EXPECT_THAT(Tags(MergeInEveryOrder(base, {clear, add_z})), ElementsAre("z"));
}

TEST(RecordMergeTest, RemoveWinsOverConcurrentWriteThatMerelyKeepsTheElement) {
  const RecordState base = BaseRecord({"x"});
  RecordState scratch;
  // A keeps x (observed, so no new add) and adds y; B removes x.
  const RecordState keep =
      MustWrite(scratch = base, Update(Values({{"tags", Set({"x", "y"})}}), {"tags"}), At(20, kA));
  const RecordState remove =
      MustWrite(scratch = base, Update(Values({{"tags", Set({})}}), {"tags"}), At(10, kB));
  EXPECT_THAT(Tags(MergeInEveryOrder(base, {keep, remove})), ElementsAre("y"));
}

TEST(RecordMergeTest, RemoveArrivingBeforeAddStillRemoves) {
  RecordState writer = BaseRecord();
  const RecordState add =
      MustWrite(writer, Update(Values({{"tags", Set({"x", "y"})}}), {"tags"}), At(10, kA));
  const RecordState remove =
      MustWrite(writer, Update(Values({{"tags", Set({"y"})}}), {"tags"}), At(11, kA));
  RecordState replica = BaseRecord();
  EXPECT_TRUE(MergeRecordState(replica, remove));
  EXPECT_THAT(Tags(replica), ElementsAre());
  EXPECT_TRUE(MergeRecordState(replica, add));
  EXPECT_THAT(Tags(replica), ElementsAre("y"));
  EXPECT_EQ(Bytes(replica), Bytes(writer));
}

TEST(RecordMergeTest, ConcurrentAddsOfSameElementShowItOnce) {
  const RecordState base = BaseRecord();
  RecordState scratch;
  const RecordState from_a =
      MustWrite(scratch = base, Update(Values({{"tags", Set({"x"})}}), {"tags"}), At(10, kA));
  const RecordState from_b =
      MustWrite(scratch = base, Update(Values({{"tags", Set({"x"})}}), {"tags"}), At(10, kB));
  const RecordState merged = MergeInEveryOrder(base, {from_a, from_b});
  EXPECT_THAT(Tags(merged), ElementsAre("x"));
  const FieldState* tags = FindFieldState(merged, "tags");
  ASSERT_NE(tags, nullptr);
  EXPECT_EQ(tags->elements_size(), 2);
}

TEST(RecordMergeTest, DeleteBeatsConcurrentUpdate) {
  const RecordState base = BaseRecord({"x"});
  RecordState scratch;
  const RecordState del = MustWrite(scratch = base, Delete(), At(10, kA));
  // The update is later by wall clock, and still loses.
  const RecordState upd = MustWrite(
      scratch = base,
      Update(Values({{"label", Str("late")}, {"tags", Set({"x", "y"})}}), {"label", "tags"}),
      At(20, kB));
  const RecordState merged = MergeInEveryOrder(base, {del, upd});
  EXPECT_FALSE(IsLive(merged));
  EXPECT_EQ(merged.fields_size(), 0);
  EXPECT_TRUE(View(merged).empty());

  // Merging the update after the delete reports no change.
  RecordState replica = base;
  EXPECT_TRUE(MergeRecordState(replica, del));
  EXPECT_FALSE(MergeRecordState(replica, upd));
}

TEST(RecordMergeTest, ConcurrentDeletesConverge) {
  const RecordState base = BaseRecord();
  RecordState scratch;
  const RecordState del_a = MustWrite(scratch = base, Delete(), At(10, kA));
  const RecordState del_b = MustWrite(scratch = base, Delete(), At(11, kB));
  const RecordState merged = MergeInEveryOrder(base, {del_a, del_b});
  EXPECT_FALSE(IsLive(merged));
  EXPECT_EQ(merged.causal_length(), 2u);
  EXPECT_EQ(merged.cl_hlc(), At(11, kB).hlc);
  EXPECT_EQ(merged.cl_origin(), kB);
}

TEST(RecordMergeTest, ConcurrentCreatesMergeFieldByField) {
  RecordState scratch;
  const RecordState from_a =
      MustWrite(scratch = RecordState(),
                Create(Values({{"code", Str("a")}, {"label", Str("from A")}})), At(10, kA));
  const RecordState from_b =
      MustWrite(scratch = RecordState(),
                Create(Values({{"code", Str("b")}, {"population", Int(5)}})), At(10, kB));
  const RecordState merged = MergeInEveryOrder(RecordState(), {from_a, from_b});
  EXPECT_TRUE(IsLive(merged));
  EXPECT_EQ(merged.causal_length(), 1u);
  EXPECT_EQ(merged.cl_origin(), kB);
  EXPECT_EQ(StringOf(merged, "code"), "b");
  EXPECT_EQ(StringOf(merged, "label"), "from A");
  EXPECT_EQ(IntOf(merged, "population"), 5);
}

TEST(RecordMergeTest, RecreateAfterDeleteBeatsTheDeleteAndOldFieldsDoNotReappear) {
  RecordState at_a;
  RecordState at_b;
  std::vector<RecordState> deltas;
  deltas.push_back(MustWrite(
      at_a,
      Create(Values({{"code", Str("old")}, {"label", Str("old label")}, {"tags", Set({"t"})}})),
      At(1, kA)));
  at_b = at_a;
  deltas.push_back(MustWrite(at_a, Delete(), At(2, kA)));
  deltas.push_back(MustWrite(at_a, Create(Values({{"code", Str("new")}})), At(3, kA)));
  // B, still on the first life, edits with a later stamp than all of A's writes.
  deltas.push_back(MustWrite(
      at_b,
      Update(Values({{"population", Int(99)}, {"tags", Set({"t", "u"})}}), {"population", "tags"}),
      At(50, kB)));
  const RecordState merged = MergeInEveryOrder(RecordState(), deltas);
  EXPECT_TRUE(IsLive(merged));
  EXPECT_EQ(merged.causal_length(), 3u);
  EXPECT_EQ(View(merged), (std::map<std::string, std::string>{{"code", "string_value: \"new\""}}));
  for (const FieldState& f : merged.fields()) EXPECT_EQ(LifeOfField(f), 2u) << f.name();
  // What A sees after B's late edit arrives is the same.
  EXPECT_FALSE(MergeRecordState(at_a, deltas[3]));
  EXPECT_EQ(Bytes(at_a), Bytes(merged));
}

TEST(RecordMergeTest, RecreateBeatsConcurrentDelete) {
  RecordState at_a = BaseRecord({"x"});
  RecordState at_b = at_a;
  const RecordState a_del = MustWrite(at_a, Delete(), At(2, kA));
  const RecordState a_create =
      MustWrite(at_a, Create(Values({{"code", Str("again")}, {"tags", Set({"y"})}})), At(3, kA));
  const RecordState b_del = MustWrite(at_b, Delete(), At(40, kB));
  const RecordState merged = MergeInEveryOrder(BaseRecord({"x"}), {a_del, a_create, b_del});
  EXPECT_TRUE(IsLive(merged));
  EXPECT_EQ(StringOf(merged, "code"), "again");
  EXPECT_EQ(StringOf(merged, "label"), std::nullopt);
  EXPECT_THAT(Tags(merged), ElementsAre("y"));
}

TEST(RecordMergeTest, UpdateOfNewLifeArrivingFirstIsKeptWhenRecreateArrives) {
  RecordState at_a = BaseRecord();
  MustWrite(at_a, Delete(), At(2, kA));
  const RecordState create =
      MustWrite(at_a, Create(Values({{"code", Str("n")}, {"label", Str("l")}})), At(3, kA));
  const RecordState update =
      MustWrite(at_a, Update(Values({{"population", Int(3)}}), {"population"}), At(4, kA));
  RecordState replica = BaseRecord();
  EXPECT_TRUE(MergeRecordState(replica, update));
  EXPECT_TRUE(IsLive(replica));
  EXPECT_EQ(StringOf(replica, "code"), std::nullopt) << "fields of the old life must be dropped";
  EXPECT_EQ(IntOf(replica, "population"), 3);
  EXPECT_TRUE(MergeRecordState(replica, create));
  EXPECT_EQ(Bytes(replica), Bytes(at_a));
}

// --- Public view ---------------------------------------------------------------------------

TEST(RecordViewTest, ToRecordOfLiveRecord) {
  RecordState state;
  MustWrite(
      state,
      Create(Values({{"code", Str("69123")}, {"label", Str("Lyon")}, {"tags", Set({"b", "a"})}})),
      At(10, kA));
  RecordState other = state;
  const RecordState from_b = MustWrite(
      other, Update(Values({{"population", Int(522250)}}), {"population"}), At(20, kB, 3));
  MergeRecordState(state, from_b);

  interco::v1::Record record;
  ToRecord("registries/communes/records/69123", state, record);
  EXPECT_EQ(record.name(), "registries/communes/records/69123");
  EXPECT_EQ(record.fields().size(), 4u);
  EXPECT_EQ(record.fields().at("code").string_value(), "69123");
  EXPECT_EQ(record.fields().at("label").string_value(), "Lyon");
  EXPECT_EQ(record.fields().at("population").int64_value(), 522250);
  EXPECT_THAT(record.fields().at("tags").string_set_value().values(), ElementsAre("a", "b"));
  EXPECT_EQ(record.etag(), ComputeEtag(state));
  google::protobuf::Timestamp created;
  HlcToTimestamp(At(10, kA).hlc, created);
  EXPECT_EQ(record.create_time().SerializeAsString(), created.SerializeAsString());
  google::protobuf::Timestamp updated;
  HlcToTimestamp(At(20, kB, 3).hlc, updated);
  EXPECT_EQ(record.update_time().SerializeAsString(), updated.SerializeAsString());
  EXPECT_EQ(record.update_origin(), "217400423");
}

TEST(RecordViewTest, UpdateTimeIncludesClearedFields) {
  RecordState state = BaseRecord();
  MustWrite(state, Update(Values({}), {"label"}), At(30, kA));
  interco::v1::Record record;
  ToRecord("r", state, record);
  google::protobuf::Timestamp expected;
  HlcToTimestamp(At(30, kA).hlc, expected);
  EXPECT_EQ(record.update_time().SerializeAsString(), expected.SerializeAsString());
  EXPECT_EQ(record.update_origin(), "200046977");
  EXPECT_EQ(record.fields().count("label"), 0u);
}

TEST(RecordViewTest, ToRecordOfDeletedRecordHasOnlyItsName) {
  RecordState state = BaseRecord({"x"});
  interco::v1::Record record;
  ToRecord("previous", state, record);
  ASSERT_FALSE(record.fields().empty());
  MustWrite(state, Delete(), At(10, kA));
  ToRecord("registries/communes/records/69123", state, record);
  interco::v1::Record expected;
  expected.set_name("registries/communes/records/69123");
  EXPECT_EQ(record.SerializeAsString(), expected.SerializeAsString());

  FieldValues fields;
  fields["junk"] = Str("x");
  VisibleFields(state, fields);
  EXPECT_TRUE(fields.empty());
}

TEST(RecordViewTest, ToRecordOfNeverCreatedRecordHasOnlyItsName) {
  interco::v1::Record record;
  ToRecord("n", RecordState(), record);
  EXPECT_EQ(record.name(), "n");
  EXPECT_TRUE(record.fields().empty());
  EXPECT_TRUE(record.etag().empty());
  EXPECT_FALSE(record.has_create_time());
}

TEST(RecordViewTest, VisibleFieldsReplacesOutput) {
  const RecordState state = BaseRecord();
  FieldValues fields;
  fields["junk"] = Str("x");
  VisibleFields(state, fields);
  EXPECT_EQ(fields.count("junk"), 0u);
  EXPECT_EQ(fields.size(), 2u);
}

TEST(RecordViewTest, VisibleFieldsShowsOnlyTheCurrentLife) {
  // Built by hand: merge never keeps a field of an older life, but the view must not
  // rely on it.
  RecordState state;
  state.set_causal_length(3);
  FieldState* code = state.add_fields();
  code->set_name("code");
  SetLifeOfField(*code, 2);
  *code->mutable_value() = Str("new");
  FieldState* label = state.add_fields();
  label->set_name("label");
  SetLifeOfField(*label, 1);
  *label->mutable_value() = Str("old");
  EXPECT_EQ(View(state), (std::map<std::string, std::string>{{"code", "string_value: \"new\""}}));
}

TEST(RecordViewTest, IsLiveAndLifeOf) {
  EXPECT_FALSE(IsLive(RecordState()));
  RecordState s;
  for (uint32_t cl = 1; cl <= 6; ++cl) {
    s.set_causal_length(cl);
    EXPECT_EQ(IsLive(s), cl % 2 == 1) << cl;
  }
  EXPECT_EQ(LifeOf(1), 1u);
  EXPECT_EQ(LifeOf(2), 1u);
  EXPECT_EQ(LifeOf(3), 2u);
  EXPECT_EQ(LifeOf(4), 2u);
  EXPECT_EQ(LifeOf(5), 3u);
}

// --- Etags ---------------------------------------------------------------------------------

TEST(ComputeEtagTest, IsSixteenHexDigits) {
  EXPECT_THAT(ComputeEtag(RecordState()), ::testing::MatchesRegex("[0-9a-f]{16}"));
  EXPECT_THAT(ComputeEtag(BaseRecord({"x"})), ::testing::MatchesRegex("[0-9a-f]{16}"));
}

TEST(ComputeEtagTest, ChangesOnEveryStateChange) {
  RecordState state;
  std::set<std::string> seen = {ComputeEtag(state)};
  std::string current = ComputeEtag(state);
  auto expect_new_etag = [&](const std::string& step) {
    const std::string etag = ComputeEtag(state);
    EXPECT_NE(etag, current) << step;
    EXPECT_TRUE(seen.insert(etag).second) << step << ": etag seen before";
    current = etag;
  };

  MustWrite(state, Create(Values({{"code", Str("c")}, {"tags", Set({"x"})}})), At(10, kA));
  expect_new_etag("create");
  RecordState at_b = state;
  RecordState at_c = state;
  MustWrite(state, Update(Values({{"label", Str("l")}}), {"label"}), At(11, kA));
  expect_new_etag("update label");
  MustWrite(state, Update(Values({{"label", Str("m")}}), {"label"}), At(12, kA));
  expect_new_etag("update label again");

  // A concurrent add with an older stamp than the field's: only the elements change.
  const RecordState add_y =
      MustWrite(at_b, Update(Values({{"tags", Set({"x", "y"})}}), {"tags"}), At(5, kB));
  MustWrite(state, Update(Values({{"tags", Set({"x", "z"})}}), {"tags"}), At(13, kA));
  expect_new_etag("add z");
  EXPECT_TRUE(MergeRecordState(state, add_y));
  expect_new_etag("merge add y");
  // A concurrent remove of x, older than the field's stamp: only the removes change.
  const RecordState remove_x =
      MustWrite(at_c, Update(Values({{"tags", Set({})}}), {"tags"}), At(6, kC));
  EXPECT_TRUE(MergeRecordState(state, remove_x));
  expect_new_etag("merge remove x");
  EXPECT_FALSE(MergeRecordState(state, remove_x));
  EXPECT_EQ(ComputeEtag(state), current) << "no change, same etag";

  MustWrite(state, Delete(), At(20, kA));
  expect_new_etag("delete");
  MustWrite(state, Create(Values({{"code", Str("c")}})), At(21, kA));
  expect_new_etag("re-create");
  // Rewriting the same value is a no-op: no delta, the etag stays.
  auto rewrite = PlanLocalWrite(TestSchema(), state, Update(Values({{"code", Str("c")}}), {"code"}),
                                At(22, kA));
  ASSERT_TRUE(rewrite.ok());
  EXPECT_FALSE(rewrite->has_value());
  EXPECT_EQ(ComputeEtag(state), current);
}

TEST(ComputeEtagTest, EqualForEqualStates) {
  const RecordState base = BaseRecord({"x"});
  RecordState scratch;
  const RecordState d1 =
      MustWrite(scratch = base, Update(Values({{"label", Str("a")}}), {"label"}), At(10, kA));
  const RecordState d2 =
      MustWrite(scratch = base, Update(Values({{"tags", Set({"y"})}}), {"tags"}), At(11, kB));
  const RecordState one = MergedCopy(base, {&d1, &d2});
  const RecordState two = MergedCopy(base, {&d2, &d1, &d2});
  ASSERT_EQ(Bytes(one), Bytes(two));
  EXPECT_EQ(ComputeEtag(one), ComputeEtag(two));
  EXPECT_NE(ComputeEtag(one), ComputeEtag(base));
}

// --- HLC timestamps -----------------------------------------------------------------------

TEST(HlcToTimestampTest, KnownValues) {
  google::protobuf::Timestamp t;
  HlcToTimestamp(HybridLogicalClock::Pack(1'700'000'000'123, 7), t);
  EXPECT_EQ(t.seconds(), 1'700'000'000);
  EXPECT_EQ(t.nanos(), 123'000'007);
  HlcToTimestamp(0, t);
  EXPECT_EQ(t.seconds(), 0);
  EXPECT_EQ(t.nanos(), 0);
  HlcToTimestamp(HybridLogicalClock::Pack(999, 65535), t);
  EXPECT_EQ(t.seconds(), 0);
  EXPECT_EQ(t.nanos(), 999'065'535);
}

TEST(HlcToTimestampTest, IsStrictlyMonotonic) {
  std::vector<uint64_t> hlcs;
  for (uint64_t ms : {uint64_t{0}, uint64_t{1}, uint64_t{998}, uint64_t{999}, uint64_t{1000},
                      uint64_t{1001}, kBaseMs - 1, kBaseMs, kBaseMs + 999, kBaseMs + 1000}) {
    for (uint64_t logical : {uint64_t{0}, uint64_t{1}, uint64_t{999}, uint64_t{1000},
                             uint64_t{65534}, uint64_t{65535}}) {
      hlcs.push_back(HybridLogicalClock::Pack(ms, logical));
    }
  }
  std::sort(hlcs.begin(), hlcs.end());
  std::tuple<int64_t, int32_t> previous{-1, 0};
  for (uint64_t hlc : hlcs) {
    google::protobuf::Timestamp t;
    HlcToTimestamp(hlc, t);
    EXPECT_GE(t.nanos(), 0);
    EXPECT_LT(t.nanos(), 1'000'000'000);
    const std::tuple<int64_t, int32_t> current{t.seconds(), t.nanos()};
    EXPECT_LT(previous, current) << "hlc " << hlc;
    previous = current;
  }
}

// --- Counters (PN-counter) ---------------------------------------------------------------

const RegistrySchema& CounterSchema() {
  static const RegistrySchema* const schema = [] {
    Schema s;
    *s.add_fields() = Field("code", interco::v1::FIELD_TYPE_STRING, /*required=*/true);
    *s.add_fields() = Field("places", interco::v1::FIELD_TYPE_COUNTER);
    return new RegistrySchema(CompileOrDie(s));
  }();
  return *schema;
}

// Writes `places` = `value` on `replica` (a live record) and returns the delta.
RecordState SetPlaces(RecordState& replica, std::optional<int64_t> value, Stamp stamp) {
  FieldValues v;
  v["places"] = value ? Int(*value) : Clear();
  return MustWrite(replica, Update(v, {"places"}), stamp, CounterSchema());
}

RecordState CounterBase(int64_t places) {
  RecordState state;
  MustWrite(state, Create(Values({{"code", Str("01053")}, {"places", Int(places)}})), At(1, kC),
            CounterSchema());
  return state;
}

TEST(CounterTest, ConcurrentChangesAddUpInEveryOrder) {
  const RecordState base = CounterBase(50);
  RecordState a = base, b = base, c = base;
  // Each saw 50: A books 3 places (47), B frees 2 (52), C books 1 (49).
  const RecordState da = SetPlaces(a, 47, At(10, kA));
  const RecordState db = SetPlaces(b, 52, At(11, kB));
  const RecordState dc = SetPlaces(c, 49, At(12, kC));
  const RecordState merged = MergeInEveryOrder(base, {da, db, dc});
  EXPECT_EQ(IntOf(merged, "places"), 50 - 3 + 2 - 1);
  // Merging again, or an older delta, changes nothing.
  RecordState again = merged;
  EXPECT_FALSE(MergeRecordState(again, db));
  EXPECT_EQ(Bytes(again), Bytes(merged));
}

TEST(CounterTest, ClearingSetsZeroAndANewLifeStartsFromZero) {
  RecordState r = CounterBase(5);
  SetPlaces(r, std::nullopt, At(10, kA));
  EXPECT_EQ(IntOf(r, "places"), 0);
  MustWrite(r, Delete(), At(20, kA), CounterSchema());
  MustWrite(r, Create(Values({{"code", Str("01053")}, {"places", Int(3)}})), At(30, kB),
            CounterSchema());
  EXPECT_EQ(IntOf(r, "places"), 3) << "the old life's totals are gone";
}

TEST(CounterTest, EtagChangesWhenAnotherOriginsShareArrives) {
  const RecordState base = CounterBase(10);
  RecordState a = base, b = base;
  SetPlaces(a, 12, At(20, kA));
  // B's change is older than A's: the field's stamp stays A's, the value moves.
  const RecordState db = SetPlaces(b, 9, At(15, kB));
  const std::string etag = ComputeEtag(a);
  ASSERT_TRUE(MergeRecordState(a, db));
  EXPECT_EQ(IntOf(a, "places"), 11);
  EXPECT_NE(ComputeEtag(a), etag);
}

TEST(CounterTest, TotalsBeyondInt64AreRefusedNamingTheField) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  RecordState r = CounterBase(0);
  SetPlaces(r, kMax, At(10, kA));     // A's increments: 2^63 - 1
  SetPlaces(r, kMax - 1, At(11, kA));  // its decrements: 1
  absl::StatusOr<std::optional<PlannedWrite>> planned = PlanLocalWrite(
      CounterSchema(), r, Update(Values({{"places", Int(kMax)}}), {"places"}), At(12, kA));
  ASSERT_FALSE(planned.ok()) << "A's increments would pass 2^63 - 1";
  EXPECT_EQ(planned.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(planned.status()), HasSubstr("record.fields[places]"));
  EXPECT_EQ(IntOf(r, "places"), kMax - 1);
  // A value of the wrong type is refused like any other.
  EXPECT_EQ(PlanLocalWrite(CounterSchema(), r, Update(Values({{"places", Str("12")}}), {"places"}),
                           At(14, kA))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

// Random histories: three origins set the counter against their own replica and exchange
// deltas at random. Every replica ends equal, at the start value plus every writer's
// difference (value written minus value seen): no change is lost, none counted twice.
TEST(CounterTest, RandomHistoriesConvergeToTheSumOfEveryChange) {
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    std::mt19937_64 rng(seed);
    const RecordState base = CounterBase(100);
    std::vector<RecordState> replicas(3, base);
    std::vector<RecordState> deltas;
    std::vector<std::vector<bool>> seen(3);
    int64_t expected = 100;
    for (int step = 0; step < 40; ++step) {
      const size_t o = rng() % 3;
      if (rng() % 2 == 0) {
        const int64_t before = *IntOf(replicas[o], "places");
        const int64_t value = static_cast<int64_t>(rng() % 41) - 20;
        if (value == before) continue;  // a no-op: nothing to write
        constexpr uint32_t kWriters[] = {kA, kB, kC};
        deltas.push_back(
            SetPlaces(replicas[o], value, At(100 + static_cast<uint64_t>(step), kWriters[o])));
        for (auto& s : seen) s.push_back(false);
        seen[o].back() = true;
        expected += value - before;
      } else if (!deltas.empty()) {
        const size_t d = rng() % deltas.size();
        MergeRecordState(replicas[o], deltas[d]);
        seen[o][d] = true;
      }
    }
    for (size_t o = 0; o < 3; ++o) {
      for (const RecordState& d : deltas) MergeRecordState(replicas[o], d);
    }
    for (size_t o = 1; o < 3; ++o) {
      ASSERT_EQ(Bytes(replicas[o]), Bytes(replicas[0])) << "seed " << seed;
    }
    ASSERT_EQ(IntOf(replicas[0], "places"), expected) << "seed " << seed;
  }
}

// --- Property tests -------------------------------------------------------------------------
//
// Random histories of three origins writing the same record with PlanLocalWrite against
// their own replica, exchanging deltas at random, with HLC stamps from fake wall clocks.

constexpr uint32_t kOrigins[] = {kA, kB, kC};
constexpr int kOriginCount = 3;
constexpr int64_t kMaxOffsetMs = 60'000;

// count: int64; name: string; tags: string set. No required field.
const RegistrySchema& PropertySchema() {
  static const RegistrySchema* const schema = [] {
    Schema s;
    *s.add_fields() = Field("count", interco::v1::FIELD_TYPE_INT64);
    *s.add_fields() = Field("name", interco::v1::FIELD_TYPE_STRING);
    *s.add_fields() = Field("tags", interco::v1::FIELD_TYPE_STRING_SET);
    return new RegistrySchema(CompileOrDie(s));
  }();
  return *schema;
}

std::vector<uint64_t> Seeds() {
  std::vector<uint64_t> seeds;
  for (uint64_t i = 1; i <= 200; ++i) seeds.push_back(i * 0x9E3779B97F4A7C15ULL);
  return seeds;
}

class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  // Uniform-enough in [0, n); n > 0. Portable, unlike std::uniform_int_distribution.
  uint64_t Below(uint64_t n) { return gen_() % n; }
  bool Percent(uint64_t p) { return Below(100) < p; }
  std::vector<size_t> Permutation(size_t n) {
    std::vector<size_t> p(n);
    std::iota(p.begin(), p.end(), 0);
    for (size_t i = n; i > 1; --i) std::swap(p[i - 1], p[Below(i)]);
    return p;
  }

 private:
  std::mt19937_64 gen_;
};

class FakeClock : public Clock {
 public:
  explicit FakeClock(int64_t now_ms) : now_ms_(now_ms) {}
  int64_t NowMillis() override { return now_ms_; }
  int64_t MonotonicMillis() override { return now_ms_; }
  void Advance(int64_t delta_ms) { now_ms_ += delta_ms; }

 private:
  int64_t now_ms_;
};

uint64_t MaxHlc(const RecordState& delta) {
  uint64_t m = delta.cl_hlc();
  for (const FieldState& f : delta.fields()) {
    m = std::max<uint64_t>(m, f.hlc());
    for (const SetElement& e : f.elements()) m = std::max<uint64_t>(m, e.hlc());
    for (const SetElement& e : f.removed()) m = std::max<uint64_t>(m, e.hlc());
  }
  return m;
}

struct WriteRecord {
  RecordState before;
  LocalWrite write;
  RecordState delta;
  RecordState after;
};

struct Stats {
  int creates = 0;
  int recreates = 0;
  int updates = 0;
  int deletes = 0;
  int noops = 0;
  int rejected = 0;
  int concurrent_writes = 0;  // writes made before seeing every earlier delta
  int deliveries = 0;
  int stale_deliveries = 0;  // deliveries that changed nothing
};

struct History {
  std::vector<RecordState> deltas;
  std::vector<std::vector<bool>> seen;  // [origin][delta]
  std::vector<RecordState> replicas;    // [origin]
  std::vector<WriteRecord> writes;
  Stats stats;
};

FieldValues RandomFields(Rng& rng) {
  static const char* const kNames[] = {"", "Lyon", "Villeurbanne", "Saint-\xC3\x89tienne"};
  FieldValues values;
  if (rng.Percent(60)) values["name"] = rng.Percent(15) ? Clear() : Str(kNames[rng.Below(4)]);
  if (rng.Percent(60)) {
    values["count"] = rng.Percent(15) ? Clear() : Int(static_cast<int64_t>(rng.Below(7)) - 3);
  }
  if (rng.Percent(60)) {
    if (rng.Percent(15)) {
      values["tags"] = Clear();
    } else {
      std::vector<std::string> tags;
      for (const char* t : {"a", "b", "c", "d"}) {
        if (rng.Percent(40)) tags.push_back(t);
      }
      if (!tags.empty() && rng.Percent(20)) tags.push_back(tags.front());
      values["tags"] = Set(tags);
    }
  }
  if (rng.Percent(3)) values["bogus"] = Int(1);
  return values;
}

std::vector<std::string> RandomMask(Rng& rng) {
  std::vector<std::string> mask;
  if (rng.Percent(50)) return mask;
  for (const char* f : {"count", "name", "tags"}) {
    if (rng.Percent(50)) mask.push_back(f);
  }
  if (mask.empty()) mask.push_back("name");
  if (rng.Percent(10)) mask.push_back(mask.front());
  return mask;
}

LocalWrite RandomWrite(Rng& rng, const RecordState& current) {
  LocalWrite w;
  const uint64_t r = rng.Below(100);
  if (IsLive(current)) {
    w.kind = r < 5 ? Kind::kCreate : r < 17 ? Kind::kDelete : Kind::kUpdate;
  } else {
    w.kind = r < 55 ? Kind::kCreate : r < 80 ? Kind::kUpdate : Kind::kDelete;
  }
  if (w.kind != Kind::kDelete) w.fields = RandomFields(rng);
  if (w.kind == Kind::kUpdate) w.mask = RandomMask(rng);
  if (w.kind != Kind::kCreate) {
    w.allow_missing = rng.Percent(IsLive(current) ? 30 : 70);
    if (rng.Percent(15)) w.expected_etag = ComputeEtag(current);
    if (rng.Percent(5)) w.expected_etag = "not-an-etag";
  }
  return w;
}

// The status PlanLocalWrite must return; `noop` is set for a successful no-op.
absl::StatusCode ExpectedCode(const RecordState& current, const LocalWrite& w, bool& noop) {
  const bool live = IsLive(current);
  noop = false;
  switch (w.kind) {
    case Kind::kCreate:
      if (live) return absl::StatusCode::kAlreadyExists;
      break;
    case Kind::kUpdate:
      if (!live && !w.allow_missing) return absl::StatusCode::kNotFound;
      break;
    case Kind::kDelete:
      if (!live) {
        if (!w.allow_missing) return absl::StatusCode::kNotFound;
        noop = true;
        return absl::StatusCode::kOk;
      }
      break;
  }
  if (!w.expected_etag.empty() && (!live || w.expected_etag != ComputeEtag(current))) {
    return absl::StatusCode::kAborted;
  }
  if (w.kind != Kind::kDelete && w.fields.count("bogus") != 0) {
    return absl::StatusCode::kInvalidArgument;
  }
  return absl::StatusCode::kOk;
}

// What a replica must show right after applying its own write `w` to `before`.
std::map<std::string, std::string> ExpectedView(const RecordState& before, const LocalWrite& w) {
  if (w.kind == Kind::kDelete) return {};
  std::map<std::string, std::string> out;
  if (IsLive(before)) out = View(before);
  std::vector<std::string> targets;
  if (w.kind == Kind::kCreate) {
    for (const auto& [name, value] : w.fields) targets.push_back(name);
  } else if (w.mask.empty()) {
    for (const FieldSpec& f : PropertySchema().proto().fields()) targets.push_back(f.name());
  } else {
    targets = w.mask;
  }
  for (const std::string& t : targets) {
    out.erase(t);
    auto it = w.fields.find(t);
    if (it == w.fields.end() || it->second.kind_case() == Value::KIND_NOT_SET) continue;
    Value v = it->second;
    NormalizeValue(v);
    if (v.has_string_set_value() && v.string_set_value().values().empty()) continue;
    out[t] = v.ShortDebugString();
  }
  return out;
}

History Generate(uint64_t seed) {
  Rng rng(seed);
  History h;
  h.replicas.resize(kOriginCount);
  h.seen.resize(kOriginCount);
  std::vector<std::unique_ptr<FakeClock>> clocks;
  std::vector<std::unique_ptr<HybridLogicalClock>> hlcs;
  std::vector<uint64_t> last_hlc(kOriginCount, 0);
  for (int o = 0; o < kOriginCount; ++o) {
    // Same start on every origin, so HLCs collide and ties fall to the origin.
    clocks.push_back(std::make_unique<FakeClock>(static_cast<int64_t>(kBaseMs)));
    hlcs.push_back(std::make_unique<HybridLogicalClock>(*clocks.back(), 0));
  }
  const int steps = 20 + static_cast<int>(rng.Below(40));
  for (int step = 0; step < steps; ++step) {
    const int o = static_cast<int>(rng.Below(kOriginCount));
    const uint64_t tick = rng.Below(10);
    clocks[o]->Advance(tick == 0 ? -3 : static_cast<int64_t>(tick % 3));  // sometimes backwards
    RecordState& replica = h.replicas[o];

    std::vector<size_t> unseen;
    for (size_t i = 0; i < h.deltas.size(); ++i) {
      if (!h.seen[o][i]) unseen.push_back(i);
    }
    if (!unseen.empty() && rng.Percent(40)) {
      const size_t i = unseen[rng.Below(unseen.size())];
      EXPECT_TRUE(hlcs[o]->Observe(MaxHlc(h.deltas[i]), kMaxOffsetMs).ok());
      if (!MergeRecordState(replica, h.deltas[i])) ++h.stats.stale_deliveries;
      h.seen[o][i] = true;
      ++h.stats.deliveries;
      continue;
    }

    const LocalWrite w = RandomWrite(rng, replica);
    const Stamp stamp{hlcs[o]->Now(), kOrigins[o]};
    EXPECT_GT(stamp.hlc, last_hlc[o]) << "stamps of one origin must increase";
    last_hlc[o] = stamp.hlc;
    bool noop = false;
    const absl::StatusCode expected = ExpectedCode(replica, w, noop);
    absl::StatusOr<std::optional<PlannedWrite>> planned =
        PlanLocalWrite(PropertySchema(), replica, w, stamp);
    EXPECT_EQ(planned.status().code(), expected) << planned.status();
    if (!planned.ok()) {
      ++h.stats.rejected;
      continue;
    }
    if (!planned->has_value()) {
      // A no-op: deleting an absent record, or an update that changes nothing visible.
      EXPECT_TRUE(noop || (w.kind == Kind::kUpdate && IsLive(replica)));
      ++h.stats.noops;
      continue;
    }
    EXPECT_FALSE(noop);
    if (w.kind == Kind::kUpdate && IsLive(replica)) {
      FieldValues before, after;
      VisibleFields(replica, before);
      VisibleFields((*planned)->merged, after);
      bool same = before.size() == after.size();
      for (const auto& [name, value] : before) {
        same = same && after.contains(name) &&
               after.at(name).SerializeAsString() == value.SerializeAsString();
      }
      EXPECT_FALSE(same) << "an update that changes nothing visible must be a no-op";
    }
    if (w.kind == Kind::kDelete) {
      ++h.stats.deletes;
    } else if (!IsLive(replica)) {
      ++(replica.causal_length() == 0 ? h.stats.creates : h.stats.recreates);
    } else {
      ++h.stats.updates;
    }
    if (!unseen.empty()) ++h.stats.concurrent_writes;
    h.writes.push_back({replica, w, (*planned)->delta, (*planned)->merged});
    replica = (*planned)->merged;
    h.deltas.push_back((*planned)->delta);
    for (int p = 0; p < kOriginCount; ++p) h.seen[p].push_back(p == o);
  }
  return h;
}

RecordState MergeInOrder(const std::vector<RecordState>& deltas, const std::vector<size_t>& order) {
  RecordState state;
  for (size_t i : order) MergeRecordState(state, deltas[i]);
  return state;
}

std::vector<size_t> Identity(size_t n) {
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  return order;
}

TEST(RecordCrdtPropertyTest, GeneratorCoversEveryKindOfWrite) {
  Stats total;
  int histories_with_deltas = 0;
  for (uint64_t seed : Seeds()) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    const History h = Generate(seed);
    if (!h.deltas.empty()) ++histories_with_deltas;
    total.creates += h.stats.creates;
    total.recreates += h.stats.recreates;
    total.updates += h.stats.updates;
    total.deletes += h.stats.deletes;
    total.noops += h.stats.noops;
    total.rejected += h.stats.rejected;
    total.concurrent_writes += h.stats.concurrent_writes;
    total.deliveries += h.stats.deliveries;
    total.stale_deliveries += h.stats.stale_deliveries;
    if (HasFailure()) break;
  }
  EXPECT_GT(histories_with_deltas, 190);
  EXPECT_GT(total.creates, 150);
  EXPECT_GT(total.recreates, 200);
  EXPECT_GT(total.updates, 1400);
  EXPECT_GT(total.deletes, 200);
  EXPECT_GT(total.noops, 50);
  EXPECT_GT(total.rejected, 300);
  EXPECT_GT(total.concurrent_writes, 1000);
  EXPECT_GT(total.deliveries, 1400);
  EXPECT_GT(total.stale_deliveries, 500);
}

TEST(RecordCrdtPropertyTest, LocalWritesAreVisibleOnTheirOwnReplica) {
  for (uint64_t seed : Seeds()) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    const History h = Generate(seed);
    for (const WriteRecord& wr : h.writes) {
      EXPECT_EQ(IsLive(wr.after), wr.write.kind != Kind::kDelete);
      EXPECT_EQ(View(wr.after), ExpectedView(wr.before, wr.write))
          << "before: " << wr.before.ShortDebugString()
          << "\ndelta: " << wr.delta.ShortDebugString();
      // The planned state is the current state merged with the delta.
      RecordState replay = wr.before;
      EXPECT_TRUE(MergeRecordState(replay, wr.delta));
      EXPECT_EQ(Bytes(replay), Bytes(wr.after));
    }
    if (HasFailure()) break;
  }
}

// The compact form an origin logs a change in (its own stamps left out) expands back to
// the very delta it planned, and is smaller.
TEST(RecordCrdtPropertyTest, CompactChangesExpandToTheirDelta) {
  size_t full = 0, compact = 0;
  for (uint64_t seed : Seeds()) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    const History h = Generate(seed);
    for (const WriteRecord& wr : h.writes) {
      const RecordState& d = wr.delta;
      const Stamp stamp = d.fields().empty() ? Stamp{d.cl_hlc(), d.cl_origin()}
                                             : Stamp{d.fields(0).hlc(), d.fields(0).origin()};
      interco::replication::v1::Change c;
      c.set_key("r");
      *c.mutable_delta() = d;
      full += c.ByteSizeLong();
      CompactChange(c, stamp.origin, stamp.hlc);
      compact += c.ByteSizeLong();
      ExpandChange(c, stamp.origin);
      EXPECT_EQ(Bytes(c.delta()), Bytes(d)) << d.ShortDebugString();
    }
    if (HasFailure()) break;
  }
  EXPECT_LT(compact * 10, full * 7) << compact << " bytes compact, " << full << " full";
}

TEST(RecordCrdtPropertyTest, MergeIsIdempotent) {
  for (uint64_t seed : Seeds()) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    const History h = Generate(seed);
    if (h.deltas.empty()) continue;
    Rng rng(seed + 1);
    const std::vector<size_t> order = rng.Permutation(h.deltas.size());
    RecordState state;
    for (size_t k = 0; k <= order.size(); ++k) {
      // `state` holds the first k deltas of `order`; merge a random delta twice.
      const RecordState& d = h.deltas[rng.Below(h.deltas.size())];
      RecordState once = state;
      MergeRecordState(once, d);
      RecordState twice = once;
      EXPECT_FALSE(MergeRecordState(twice, d));
      EXPECT_EQ(Bytes(twice), Bytes(once));
      // A state merged with itself is unchanged.
      RecordState self = once;
      EXPECT_FALSE(MergeRecordState(self, once));
      EXPECT_EQ(Bytes(self), Bytes(once));
      if (k < order.size()) MergeRecordState(state, h.deltas[order[k]]);
    }
    if (HasFailure()) break;
  }
}

TEST(RecordCrdtPropertyTest, MergeIsCommutative) {
  for (uint64_t seed : Seeds()) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    const History h = Generate(seed);
    Rng rng(seed + 2);
    const std::string in_order = Bytes(MergeInOrder(h.deltas, Identity(h.deltas.size())));
    for (int trial = 0; trial < 3; ++trial) {
      const std::vector<size_t> order = rng.Permutation(h.deltas.size());
      EXPECT_EQ(Bytes(MergeInOrder(h.deltas, order)), in_order) << "trial " << trial;
    }
    std::vector<size_t> reversed = Identity(h.deltas.size());
    std::reverse(reversed.begin(), reversed.end());
    EXPECT_EQ(Bytes(MergeInOrder(h.deltas, reversed)), in_order);

    // On states: merge(a, b) == merge(b, a) for states built from random halves.
    RecordState a;
    RecordState b;
    for (const RecordState& d : h.deltas) MergeRecordState(rng.Percent(50) ? a : b, d);
    RecordState ab = a;
    MergeRecordState(ab, b);
    RecordState ba = b;
    MergeRecordState(ba, a);
    EXPECT_EQ(Bytes(ab), Bytes(ba));
    EXPECT_EQ(Bytes(ab), in_order);
    if (HasFailure()) break;
  }
}

TEST(RecordCrdtPropertyTest, MergeIsAssociative) {
  for (uint64_t seed : Seeds()) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    const History h = Generate(seed);
    Rng rng(seed + 3);
    RecordState parts[3];
    for (const RecordState& d : h.deltas) MergeRecordState(parts[rng.Below(3)], d);
    const RecordState& a = parts[0];
    const RecordState& b = parts[1];
    const RecordState& c = parts[2];
    RecordState left = a;  // merge(merge(a, b), c)
    MergeRecordState(left, b);
    MergeRecordState(left, c);
    RecordState bc = b;  // merge(a, merge(b, c))
    MergeRecordState(bc, c);
    RecordState right = a;
    MergeRecordState(right, bc);
    EXPECT_EQ(Bytes(left), Bytes(right));
    EXPECT_EQ(Bytes(left), Bytes(MergeInOrder(h.deltas, Identity(h.deltas.size()))));
    if (HasFailure()) break;
  }
}

TEST(RecordCrdtPropertyTest, ReplicasConvergeAfterExchangingEverything) {
  for (uint64_t seed : Seeds()) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    History h = Generate(seed);
    Rng rng(seed + 4);
    for (int o = 0; o < kOriginCount; ++o) {
      for (size_t i : rng.Permutation(h.deltas.size())) {
        if (!h.seen[o][i]) MergeRecordState(h.replicas[o], h.deltas[i]);
      }
    }
    const std::string expected = Bytes(MergeInOrder(h.deltas, Identity(h.deltas.size())));
    for (int o = 0; o < kOriginCount; ++o) {
      EXPECT_EQ(Bytes(h.replicas[o]), expected) << "origin " << kOrigins[o];
      EXPECT_EQ(ComputeEtag(h.replicas[o]), ComputeEtag(h.replicas[0]));
    }
    if (HasFailure()) break;
  }
}

TEST(RecordCrdtPropertyTest, ChangedIsFalseExactlyWhenStateDidNotChange) {
  int changed_count = 0;
  int unchanged_count = 0;
  for (uint64_t seed : Seeds()) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    const History h = Generate(seed);
    Rng rng(seed + 5);
    // Every delta at least once, some several times, in random order.
    std::vector<size_t> sequence = Identity(h.deltas.size());
    for (size_t i = 0; i < h.deltas.size(); ++i) {
      if (rng.Percent(30)) sequence.push_back(i);
    }
    std::vector<size_t> shuffled;
    for (size_t i : rng.Permutation(sequence.size())) shuffled.push_back(sequence[i]);
    RecordState state;
    RecordState parts[2];
    for (size_t i : shuffled) {
      const std::string before = Bytes(state);
      const std::string etag_before = ComputeEtag(state);
      // Removed elements are kept for merging only: the etag (what a reader saw) leaves
      // them out, and merge only adds to them.
      auto removed = [](const RecordState& s) {
        int n = 0;
        for (const FieldState& f : s.fields()) n += f.removed_size();
        return n;
      };
      const int removed_before = removed(state);
      const bool changed = MergeRecordState(state, h.deltas[i]);
      const std::string after = Bytes(state);
      EXPECT_EQ(changed, before != after) << "delta " << i;
      EXPECT_EQ(changed,
                etag_before != ComputeEtag(state) || removed_before != removed(state))
          << "delta " << i;
      ++(changed ? changed_count : unchanged_count);
      MergeRecordState(parts[rng.Below(2)], h.deltas[i]);
    }
    // Also for state-to-state merges.
    for (int k = 0; k < 2; ++k) {
      RecordState merged = parts[k];
      const std::string before = Bytes(merged);
      const bool changed = MergeRecordState(merged, parts[1 - k]);
      EXPECT_EQ(changed, before != Bytes(merged)) << "state merge " << k;
      RecordState full = state;
      EXPECT_FALSE(MergeRecordState(full, parts[k])) << "a full state absorbs any part";
      EXPECT_EQ(Bytes(full), Bytes(state));
    }
    if (HasFailure()) break;
  }
  EXPECT_GT(changed_count, 500);
  EXPECT_GT(unchanged_count, 2000);
}

// --- ValidateDelta -------------------------------------------------------------------------

TEST(PlanLocalWriteTest, ARecordInItsLastLifeCanBeDeletedButNotRecreated) {
  RecordState last;
  last.set_causal_length(limits::kCausalLengthMax - 1);  // odd: alive, in its last life
  last.set_cl_hlc(At(0, kA).hlc);
  last.set_cl_origin(kA);
  // Its fields can still be written.
  auto update = PlanLocalWrite(TestSchema(), last,
                               Update(Values({{"code", Str("01053")}}), {"code"}), At(20, kB));
  ASSERT_TRUE(update.ok()) << update.status();
  ASSERT_TRUE(update->has_value());
  EXPECT_EQ(LifeOfField((*update)->delta.fields(0)), LifeOf(limits::kCausalLengthMax - 1));
  EXPECT_TRUE(ValidateDelta(TestSchema(), (*update)->delta, kB).ok());
  // It can be deleted (to the bound)...
  auto del = PlanLocalWrite(TestSchema(), last, Delete(), At(30, kB));
  ASSERT_TRUE(del.ok()) << del.status();
  ASSERT_TRUE(del->has_value());
  EXPECT_EQ((*del)->merged.causal_length(), limits::kCausalLengthMax);
  EXPECT_TRUE(ValidateDelta(TestSchema(), (*del)->delta, kB).ok());
  // ...and not re-created.
  auto create = PlanLocalWrite(TestSchema(), (*del)->merged,
                               Create(Values({{"code", Str("01053")}})), At(40, kB));
  EXPECT_EQ(create.status().code(), absl::StatusCode::kResourceExhausted) << create.status();
}

TEST(ValidateDeltaTest, EveryDeltaAWriterPlansPasses) {
  int checked = 0;
  for (uint64_t seed : Seeds()) {
    Rng rng(seed);
    RecordState state;
    for (int step = 0; step < 30; ++step) {
      const LocalWrite w = RandomWrite(rng, state);
      auto planned = PlanLocalWrite(PropertySchema(), state, w, At(10 + step, kOrigins[step % 3]));
      if (!planned.ok() || !planned->has_value()) continue;
      const absl::Status s =
          ValidateDelta(PropertySchema(), (*planned)->delta, kOrigins[step % 3]);
      ASSERT_TRUE(s.ok()) << s << "\n" << (*planned)->delta.ShortDebugString();
      state = (*planned)->merged;
      ++checked;
    }
  }
  EXPECT_GT(checked, 1000);
  RecordState r = CounterBase(3);
  const RecordState d = SetPlaces(r, 7, At(50, kA));
  EXPECT_TRUE(ValidateDelta(CounterSchema(), d, kA).ok());
}

TEST(ValidateDeltaTest, MalformedDeltasAreRefusedNamingTheField) {
  RecordState base = BaseRecord({"a", "b"});
  RecordState good = MustWrite(base, Update(Values({{"label", Str("Lyon 2e")}, {"tags", Set({"b", "c"})}}),
                                            {"label", "tags"}),
                               At(10, kA));
  ASSERT_TRUE(ValidateDelta(TestSchema(), good, kA).ok());
  auto refused = [&](const char* what, auto mutate, const std::string& names) {
    RecordState bad = good;
    mutate(bad);
    const absl::Status s = ValidateDelta(TestSchema(), bad, kA);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << what << ": " << s;
    EXPECT_THAT(Message(s), HasSubstr(names)) << what;
  };
  refused("unsorted fields", [](RecordState& d) { d.mutable_fields()->SwapElements(0, 1); },
          "not sorted");
  refused("duplicate field", [](RecordState& d) { *d.add_fields() = d.fields(1); }, "not sorted");
  refused("unknown field", [](RecordState& d) { d.mutable_fields(1)->set_name("zzz"); },
          "(zzz): no such field");
  refused("wrong type", [](RecordState& d) { d.mutable_fields(0)->mutable_value()->set_int64_value(3); },
          "(label)");
  refused("later life", [](RecordState& d) { SetLifeOfField(*d.mutable_fields(0), 9); },
          "later life");
  refused("causal length that would wrap a life", [](RecordState& d) {
    d.set_causal_length(0xFFFFFFFF);
    d.clear_fields();
  }, "delta.causal_length");
  refused("causal length without its stamp", [](RecordState& d) {
    d.clear_cl_hlc();
    d.clear_cl_origin();
  }, "without the stamp");
  refused("field without a stamp", [](RecordState& d) { d.mutable_fields(0)->clear_hlc(); },
          "without a stamp");
  refused("element without its stamp", [](RecordState& d) {
    d.mutable_fields(1)->mutable_elements(0)->clear_hlc();
  }, "without its add's stamp");
  refused("elements on a register", [](RecordState& d) {
    *d.mutable_fields(0)->add_elements() = d.fields(1).elements(0);
  }, "not a string set");
  refused("unsorted elements", [](RecordState& d) {
    auto* f = d.mutable_fields(1);
    *f->add_elements() = f->elements(0);
  }, "not sorted");
  refused("counter on a set", [](RecordState& d) {
    d.mutable_fields(1)->add_counter()->set_origin(kA);
  }, "non-counter");
  refused("another origin's stamp", [](RecordState& d) { d.mutable_fields(0)->set_origin(kB); },
          "another origin");
  refused("another origin's add", [](RecordState& d) {
    d.mutable_fields(1)->mutable_elements(0)->set_origin(kB);
  }, "another origin");
  refused("element too long", [](RecordState& d) {
    d.mutable_fields(1)->mutable_elements(0)->set_value(std::string(5000, 'x'));
  }, "(tags)");

  RecordState r = CounterBase(3);
  const RecordState counter = SetPlaces(r, 7, At(50, kA));
  RecordState two = counter;
  *two.mutable_fields(0)->add_counter() = counter.fields(0).counter(0);
  EXPECT_THAT(Message(ValidateDelta(CounterSchema(), two, kA)), HasSubstr("more than one"));
  RecordState inflated = counter;  // B's batch moving A's share
  inflated.mutable_fields(0)->set_origin(kB);
  EXPECT_THAT(Message(ValidateDelta(CounterSchema(), inflated, kB)),
              HasSubstr("(places): a counter entry of another origin"));
  RecordState huge = counter;
  huge.mutable_fields(0)->mutable_counter(0)->set_increments(uint64_t{1} << 63);
  EXPECT_THAT(Message(ValidateDelta(CounterSchema(), huge, kA)), HasSubstr("2^63"));
}

// A whole state received by repair: stamps of several origins are fine there, not in a
// delta; what no state holds (seen register writes, unsorted counters) is refused.
TEST(ValidateStateTest, AcceptsMergedStatesOfSeveralOrigins) {
  RecordState state;
  MustWrite(state, Create(Values({{"code", Str("01053")}, {"tags", Set({"eau"})}})), At(1, kA));
  MustWrite(state, Update(Values({{"label", Str("Bourg")}, {"tags", Set({"eau", "voirie"})}}),
                          {"label", "tags"}),
            At(2, kB));
  EXPECT_TRUE(ValidateState(TestSchema(), state).ok());
  EXPECT_FALSE(ValidateDelta(TestSchema(), state, kA).ok());
  EXPECT_EQ(MaxStamp(state), At(2, kB).hlc);
  // Deleted: still a valid state.
  MustWrite(state, Delete(), At(3, kC));
  EXPECT_TRUE(ValidateState(TestSchema(), state).ok());
  EXPECT_EQ(MaxStamp(state), At(3, kC).hlc);
}

TEST(ValidateStateTest, RefusesWhatNoStateHolds) {
  RecordState state;
  MustWrite(state, Create(Values({{"code", Str("01053")}})), At(1, kA));
  RecordState seen = state;
  seen.mutable_fields(0)->set_seen_age(5);
  EXPECT_THAT(Message(ValidateState(TestSchema(), seen)),
              HasSubstr("state.fields[0] (code): a seen register write in a state"));
  RecordState unknown = state;
  unknown.add_fields()->set_name("zzz");
  EXPECT_THAT(Message(ValidateState(TestSchema(), unknown)), HasSubstr("no such field"));
  RecordState unstamped = state;
  unstamped.mutable_fields(0)->set_origin(0);
  EXPECT_FALSE(ValidateState(TestSchema(), unstamped).ok());
  RecordState no_cl_stamp = state;
  no_cl_stamp.set_cl_hlc(0);
  EXPECT_THAT(Message(ValidateState(TestSchema(), no_cl_stamp)), HasSubstr("state: a causal length"));
}

}  // namespace
}  // namespace interco::replication
