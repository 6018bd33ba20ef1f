#include "replication/record_crdt.h"

#include <algorithm>
#include <limits>
#include <tuple>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "replication/base/limits.h"
#include "replication/ids.h"

namespace interco::replication {
namespace {

using interco::replication::v1::CounterEntry;
using interco::replication::v1::SetElement;
using interco::v1::FieldSpec;
using interco::v1::Value;

using Elements = google::protobuf::RepeatedPtrField<SetElement>;
// Counter arithmetic without overflow (GCC's 128-bit integer).
__extension__ typedef __int128 Wide;

auto ElementKey(const SetElement& e) {
  return std::make_tuple(std::string_view(e.value()), e.hlc(), e.origin());
}
bool ElementLess(const SetElement& a, const SetElement& b) { return ElementKey(a) < ElementKey(b); }
bool ElementEq(const SetElement& a, const SetElement& b) { return ElementKey(a) == ElementKey(b); }

// Sorted union of two sorted, duplicate-free element lists.
Elements UnionElements(const Elements& a, const Elements& b) {
  Elements out;
  out.Reserve(a.size() + b.size());
  int i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    if (j == b.size() || (i < a.size() && ElementLess(a[i], b[j]))) {
      *out.Add() = a[i++];
    } else if (i == a.size() || ElementLess(b[j], a[i])) {
      *out.Add() = b[j++];
    } else {
      *out.Add() = a[i++];
      ++j;
    }
  }
  return out;
}

// `adds` minus `removed` (both sorted).
Elements Subtract(const Elements& adds, const Elements& removed) {
  Elements out;
  int j = 0;
  for (const SetElement& e : adds) {
    while (j < removed.size() && ElementLess(removed[j], e)) ++j;
    if (j < removed.size() && ElementEq(removed[j], e)) continue;
    *out.Add() = e;
  }
  return out;
}

// Whether a field state of life `life` can still matter to a record with this
// causal length: it belongs to the current life and that life is not deleted.
bool FieldAlive(uint64_t life, uint32_t causal_length) {
  return 2 * life >= static_cast<uint64_t>(causal_length) + 1;
}

// Per-origin maximum of two counter entry lists sorted by origin.
bool MergeCounter(FieldState& a, const FieldState& b) {
  if (b.counter().empty()) return false;
  google::protobuf::RepeatedPtrField<CounterEntry> out;
  bool changed = false;
  int i = 0, j = 0;
  const auto& x = a.counter();
  const auto& y = b.counter();
  while (i < x.size() || j < y.size()) {
    if (j == y.size() || (i < x.size() && x[i].origin() < y[j].origin())) {
      *out.Add() = x[i++];
    } else if (i == x.size() || y[j].origin() < x[i].origin()) {
      *out.Add() = y[j++];
      changed = true;
    } else {
      CounterEntry e = x[i];
      if (y[j].increments() > e.increments() || y[j].decrements() > e.decrements() ||
          y[j].hlc() > e.hlc()) {
        e.set_increments(std::max(e.increments(), y[j].increments()));
        e.set_decrements(std::max(e.decrements(), y[j].decrements()));
        e.set_hlc(std::max(e.hlc(), y[j].hlc()));
        changed = true;
      }
      *out.Add() = std::move(e);
      ++i;
      ++j;
    }
  }
  a.mutable_counter()->Swap(&out);
  return changed;
}

// The value of a counter: increments minus decrements, clamped to int64 (origins'
// totals are each within int64, their sum across origins may not be).
int64_t CounterValue(const FieldState& f) {
  Wide v = 0;
  for (const CounterEntry& e : f.counter()) {
    v += static_cast<Wide>(e.increments());
    v -= static_cast<Wide>(e.decrements());
  }
  return static_cast<int64_t>(std::clamp<Wide>(v, std::numeric_limits<int64_t>::min(),
                                              std::numeric_limits<int64_t>::max()));
}

// What a change says its writer had seen belongs to the change, not to the state.
void ClearSeen(FieldState& f) {
  f.clear_seen_age();
  f.clear_seen_origin();
}

bool MergeField(FieldState& a, const FieldState& b) {
  if (LifeOfField(b) != LifeOfField(a)) {
    if (LifeOfField(b) < LifeOfField(a)) return false;
    a = b;
    ClearSeen(a);
    return true;
  }
  bool changed = false;
  if (Stamp{b.hlc(), b.origin()} > Stamp{a.hlc(), a.origin()}) {
    a.set_hlc(b.hlc());
    a.set_origin(b.origin());
    if (b.has_value()) {
      *a.mutable_value() = b.value();
    } else {
      a.clear_value();
    }
    changed = true;
  }
  changed |= MergeCounter(a, b);
  if (!b.elements().empty() || !b.removed().empty()) {
    Elements removed = UnionElements(a.removed(), b.removed());
    Elements elements = Subtract(UnionElements(a.elements(), b.elements()), removed);
    if (removed.size() != a.removed().size() || elements.size() != a.elements().size()) {
      changed = true;
    }
    a.mutable_removed()->Swap(&removed);
    a.mutable_elements()->Swap(&elements);
  }
  return changed;
}

// FNV-1a, 64 bits: stable across processes and versions (unlike absl::Hash).
class Fnv64 {
 public:
  void Add(std::string_view s) {
    AddInt(s.size());
    for (char c : s) Byte(static_cast<uint8_t>(c));
  }
  void AddInt(uint64_t v) {
    for (int i = 0; i < 8; ++i) Byte(static_cast<uint8_t>(v >> (8 * i)));
  }
  uint64_t value() const { return h_; }

 private:
  void Byte(uint8_t b) {
    h_ ^= b;
    h_ *= 0x100000001b3ULL;
  }
  uint64_t h_ = 0xcbf29ce484222325ULL;
};

bool VisibleValue(const FieldState& f, Value& out) {
  if (!f.counter().empty()) {
    out.set_int64_value(CounterValue(f));
    return true;
  }
  if (!f.elements().empty()) {
    auto* vs = out.mutable_string_set_value()->mutable_values();
    for (const SetElement& e : f.elements()) {
      if (vs->empty() || vs->Get(vs->size() - 1) != e.value()) vs->Add(std::string(e.value()));
    }
    return true;
  }
  if (f.has_value() && f.value().kind_case() != Value::KIND_NOT_SET) {
    out = f.value();
    return true;
  }
  return false;
}

// The delta of one field for a local write of `value` (absent: clear). INVALID_ARGUMENT
// for a counter value out of range.
absl::StatusOr<FieldState> PlanField(const FieldSpec& spec, const FieldState* current,
                                     uint32_t life, const Value* value, Stamp stamp) {
  FieldState f;
  f.set_name(spec.name());
  SetLifeOfField(f, life);
  f.set_hlc(stamp.hlc);
  f.set_origin(stamp.origin);
  const bool same_life = current != nullptr && LifeOfField(*current) == life;
  if (spec.type() == interco::v1::FIELD_TYPE_COUNTER) {
    // PN-counter: this origin's totals move by the difference between the value written
    // (0 when cleared) and the value seen; concurrent writers' differences add up.
    const Wide seen = same_life ? CounterValue(*current) : 0;
    const Wide wanted = value != nullptr ? value->int64_value() : 0;
    CounterEntry mine;
    mine.set_origin(stamp.origin);
    if (same_life) {
      for (const CounterEntry& e : current->counter()) {
        if (e.origin() == stamp.origin) mine = e;
      }
    }
    const Wide diff = wanted - seen;
    const Wide inc = static_cast<Wide>(mine.increments()) + (diff > 0 ? diff : 0);
    const Wide dec = static_cast<Wide>(mine.decrements()) + (diff < 0 ? -diff : 0);
    constexpr Wide kMax = std::numeric_limits<int64_t>::max();
    if (inc > kMax || dec > kMax) {
      return absl::InvalidArgumentError(absl::StrCat(
          "record.fields[", spec.name(), "]: this counter's totals would exceed 2^63 - 1"));
    }
    mine.set_increments(static_cast<uint64_t>(inc));
    mine.set_decrements(static_cast<uint64_t>(dec));
    mine.set_hlc(stamp.hlc);
    *f.add_counter() = std::move(mine);
    return f;
  }
  if (spec.type() != interco::v1::FIELD_TYPE_STRING_SET) {
    if (value != nullptr) *f.mutable_value() = *value;
    // The register value this write replaces, seen here: its loss is no conflict.
    if (same_life && stamp.hlc > current->hlc()) {
      f.set_seen_age(stamp.hlc - current->hlc());
      if (current->origin() != stamp.origin) f.set_seen_origin(current->origin());
    }
    return f;
  }
  // Observed-remove set: remove every observed add of an element that is not wanted,
  // add a tagged element for every wanted element that is not present.
  absl::flat_hash_set<std::string> wanted;
  if (value != nullptr) {
    for (const std::string& v : value->string_set_value().values()) wanted.insert(v);
  }
  absl::flat_hash_set<std::string> present;
  if (same_life) {
    for (const SetElement& e : current->elements()) {
      if (wanted.contains(e.value())) {
        present.insert(e.value());
      } else {
        *f.add_removed() = e;  // already sorted: current elements are sorted
      }
    }
  }
  std::vector<std::string> to_add;
  for (const std::string& v : wanted) {
    if (!present.contains(v)) to_add.push_back(v);
  }
  std::sort(to_add.begin(), to_add.end());
  for (std::string& v : to_add) {
    SetElement* e = f.add_elements();
    e->set_value(std::move(v));
    e->set_hlc(stamp.hlc);
    e->set_origin(stamp.origin);
  }
  return f;
}

}  // namespace

bool IsLive(const RecordState& state) { return state.causal_length() % 2 == 1; }

const FieldState* FindField(const RecordState& state, std::string_view name) {
  auto it = std::lower_bound(
      state.fields().begin(), state.fields().end(), name,
      [](const FieldState& f, std::string_view n) { return std::string_view(f.name()) < n; });
  if (it != state.fields().end() && it->name() == name) return &*it;
  return nullptr;
}

namespace {

// ValidateDelta (`origin` set) and ValidateState (`origin` empty: stamps of any origin, as
// many counter entries as origins, no seen register writes). `what` names the message.
absl::Status ValidateStateOrDelta(const RegistrySchema& schema, const RecordState& delta,
                                  std::optional<uint32_t> origin, const char* what) {
  if (delta.causal_length() > limits::kCausalLengthMax) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ".causal_length: ", delta.causal_length(), " is over the maximum ",
        limits::kCausalLengthMax));
  }
  if (delta.causal_length() > 0 && (delta.cl_hlc() == 0 || delta.cl_origin() == 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": a causal length without the stamp that set it"));
  }
  const uint32_t life = LifeOf(delta.causal_length());
  // Stamped by the batch's origin (a delta), or by some origin (a state).
  auto stamped_ok = [&](uint32_t o) { return origin ? o == *origin : o != 0; };
  for (int i = 0; i < delta.fields_size(); ++i) {
    const FieldState& f = delta.fields(i);
    const std::string path = absl::StrCat(what, ".fields[", i, "] (", f.name(), ")");
    auto invalid = [&](const char* why) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", why));
    };
    if (i > 0 && !(delta.fields(i - 1).name() < f.name())) {
      return invalid("fields are not sorted by name without duplicates");
    }
    const FieldSpec* spec = schema.Find(f.name());
    if (spec == nullptr) return invalid("no such field in the schema");
    if (LifeOfField(f) > life) return invalid("of a later life than the record's");
    if (!stamped_ok(f.origin())) return invalid("stamped by another origin than the batch's");
    if (f.hlc() == 0) return invalid("without a stamp");
    const bool set = spec->type() == interco::v1::FIELD_TYPE_STRING_SET;
    const bool counter = spec->type() == interco::v1::FIELD_TYPE_COUNTER;
    if (!set && (!f.elements().empty() || !f.removed().empty())) {
      return invalid("set elements on a field that is not a string set");
    }
    if (!counter && !f.counter().empty()) return invalid("counter entries on a non-counter field");
    if ((set || counter) && (f.seen_age() != 0 || f.seen_origin() != 0)) {
      return invalid("a seen register write on a set or counter field");
    }
    if (!origin && (f.seen_age() != 0 || f.seen_origin() != 0)) {
      return invalid("a seen register write in a state");
    }
    if (f.seen_age() == 0 && f.seen_origin() != 0) return invalid("seen_origin without seen_age");
    if (f.seen_age() != 0 && f.seen_age() >= f.hlc()) return invalid("seen_age reaches back before the clock's origin");
    if ((set || counter) && f.has_value() && f.value().kind_case() != Value::KIND_NOT_SET) {
      return invalid("a register value on a set or counter field");
    }
    if (!set && !counter && f.has_value() && f.value().kind_case() != Value::KIND_NOT_SET) {
      if (absl::Status s = schema.ValidateValue(*spec, f.value(), path); !s.ok()) return s;
    }
    for (const Elements* list : {&f.elements(), &f.removed()}) {
      for (int j = 0; j < list->size(); ++j) {
        if (j > 0 && !ElementLess((*list)[j - 1], (*list)[j])) {
          return invalid("set elements are not sorted without duplicates");
        }
        if (list == &f.elements() && !stamped_ok((*list)[j].origin())) {
          return invalid("an element added by another origin than the batch's");
        }
        if ((*list)[j].hlc() == 0 || (*list)[j].origin() == 0) {
          return invalid("a set element without its add's stamp");
        }
        Value one;
        one.mutable_string_set_value()->add_values((*list)[j].value());
        if (absl::Status s = schema.ValidateValue(*spec, one, path); !s.ok()) return s;
      }
    }
    // A writer moves its own totals only; a state has one entry per origin, sorted.
    if (origin && f.counter_size() > 1) return invalid("more than one counter entry");
    for (int j = 0; j < f.counter_size(); ++j) {
      const CounterEntry& e = f.counter(j);
      constexpr uint64_t kMax = std::numeric_limits<int64_t>::max();
      if (!stamped_ok(e.origin()) || e.hlc() == 0 || e.increments() > kMax ||
          e.decrements() > kMax) {
        return invalid("a counter entry of another origin, or totals beyond 2^63 - 1");
      }
      if (j > 0 && !(f.counter(j - 1).origin() < e.origin())) {
        return invalid("counter entries are not sorted by origin without duplicates");
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateDelta(const RegistrySchema& schema, const RecordState& delta,
                           uint32_t origin) {
  return ValidateStateOrDelta(schema, delta, origin, "delta");
}

absl::Status ValidateState(const RegistrySchema& schema, const RecordState& state) {
  return ValidateStateOrDelta(schema, state, std::nullopt, "state");
}

std::set<uint32_t> StampOrigins(const RecordState& state) {
  std::set<uint32_t> out;
  if (state.causal_length() > 0) out.insert(state.cl_origin());
  for (const FieldState& f : state.fields()) {
    out.insert(f.origin());
    for (const auto& e : f.elements()) out.insert(e.origin());
    for (const auto& e : f.removed()) out.insert(e.origin());
    for (const CounterEntry& e : f.counter()) out.insert(e.origin());
  }
  return out;
}

uint64_t MaxStamp(const RecordState& state) {
  uint64_t max = state.cl_hlc();
  for (const FieldState& f : state.fields()) {
    max = std::max(max, f.hlc());
    for (const auto& e : f.elements()) max = std::max(max, e.hlc());
    for (const auto& e : f.removed()) max = std::max(max, e.hlc());
    for (const CounterEntry& e : f.counter()) max = std::max(max, e.hlc());
  }
  return max;
}

bool MergeRecordState(RecordState& state, const RecordState& delta) {
  bool changed = false;
  if (delta.causal_length() > state.causal_length() ||
      (delta.causal_length() == state.causal_length() &&
       Stamp{delta.cl_hlc(), delta.cl_origin()} > Stamp{state.cl_hlc(), state.cl_origin()})) {
    state.set_causal_length(delta.causal_length());
    state.set_cl_hlc(delta.cl_hlc());
    state.set_cl_origin(delta.cl_origin());
    changed = true;
  }
  const uint32_t cl = state.causal_length();
  google::protobuf::RepeatedPtrField<FieldState> merged;
  merged.Reserve(state.fields_size() + delta.fields_size());
  auto* a = state.mutable_fields();
  const auto& b = delta.fields();
  int i = 0, j = 0;
  while (i < a->size() || j < b.size()) {
    if (j == b.size() || (i < a->size() && a->Get(i).name() < b[j].name())) {
      if (FieldAlive(LifeOfField(a->Get(i)), cl)) {
        merged.Add()->Swap(a->Mutable(i));
      } else {
        changed = true;
      }
      ++i;
    } else if (i == a->size() || b[j].name() < a->Get(i).name()) {
      if (FieldAlive(LifeOfField(b[j]), cl)) {
        FieldState* f = merged.Add();
        *f = b[j];
        ClearSeen(*f);
        changed = true;
      }
      ++j;
    } else {
      FieldState* f = a->Mutable(i);
      changed |= MergeField(*f, b[j]);
      if (FieldAlive(LifeOfField(*f), cl)) {
        merged.Add()->Swap(f);
      } else {
        changed = true;
      }
      ++i;
      ++j;
    }
  }
  a->Swap(&merged);
  return changed;
}

std::string ComputeEtag(const RecordState& state) {
  Fnv64 h;
  h.AddInt(state.causal_length());
  h.AddInt(state.cl_hlc());
  h.AddInt(state.cl_origin());
  for (const FieldState& f : state.fields()) {
    h.Add(f.name());
    h.AddInt(LifeOfField(f));
    h.AddInt(f.hlc());
    h.AddInt(f.origin());
    // The live elements, each by its add; not the removed ones, which a collection takes
    // out without changing what a reader sees.
    h.AddInt(static_cast<uint64_t>(f.elements_size()));
    for (const SetElement& e : f.elements()) {
      h.Add(e.value());
      h.AddInt(e.hlc());
      h.AddInt(e.origin());
    }
    for (const CounterEntry& e : f.counter()) {
      h.AddInt(e.origin());
      h.AddInt(e.increments());
      h.AddInt(e.decrements());
    }
  }
  return absl::StrFormat("%016x", h.value());
}

void VisibleFields(const RecordState& state, FieldValues& out) {
  out.clear();
  if (!IsLive(state)) return;
  const uint32_t life = LifeOf(state.causal_length());
  for (const FieldState& f : state.fields()) {
    if (LifeOfField(f) != life) continue;
    Value v;
    if (VisibleValue(f, v)) out[f.name()] = std::move(v);
  }
}

void HlcToTimestamp(uint64_t hlc, google::protobuf::Timestamp& out) {
  const uint64_t ms = HybridLogicalClock::Millis(hlc);
  out.set_seconds(static_cast<int64_t>(ms / 1000));
  out.set_nanos(static_cast<int32_t>((ms % 1000) * 1000000 + HybridLogicalClock::Logical(hlc)));
}

void ToRecord(std::string_view name, const RecordState& state, interco::v1::Record& out) {
  out.Clear();
  out.set_name(std::string(name));
  if (!IsLive(state)) return;
  VisibleFields(state, *out.mutable_fields());
  out.set_etag(ComputeEtag(state));
  HlcToTimestamp(state.cl_hlc(), *out.mutable_create_time());
  Stamp latest{state.cl_hlc(), state.cl_origin()};
  const uint32_t life = LifeOf(state.causal_length());
  for (const FieldState& f : state.fields()) {
    if (LifeOfField(f) == life) latest = std::max(latest, Stamp{f.hlc(), f.origin()});
  }
  HlcToTimestamp(latest.hlc, *out.mutable_update_time());
  out.set_update_origin(OriginToSiren(latest.origin));
}

absl::StatusOr<std::optional<PlannedWrite>> PlanLocalWrite(const RegistrySchema& schema,
                                                           const RecordState& current,
                                                           const LocalWrite& write, Stamp stamp) {
  using Kind = LocalWrite::Kind;
  const bool live = IsLive(current);
  switch (write.kind) {
    case Kind::kCreate:
      if (live) return absl::AlreadyExistsError("record already exists");
      break;
    case Kind::kUpdate:
      if (!live && !write.allow_missing) return absl::NotFoundError("record not found");
      break;
    case Kind::kDelete:
      if (!live) {
        if (write.allow_missing) return std::nullopt;
        return absl::NotFoundError("record not found");
      }
      break;
  }
  if (!write.expected_etag.empty() && (!live || ComputeEtag(current) != write.expected_etag)) {
    return absl::AbortedError(
        "etag mismatch: the record changed since it was read; read it again and retry");
  }

  PlannedWrite plan;
  RecordState& delta = plan.delta;
  const bool creating = !live && write.kind != Kind::kDelete;
  if ((creating || write.kind == Kind::kDelete) &&
      current.causal_length() >= limits::kCausalLengthMax) {
    return absl::ResourceExhaustedError(
        "the record was deleted and re-created too many times (causal length at its maximum)");
  }
  if (creating || write.kind == Kind::kDelete) {
    delta.set_causal_length(current.causal_length() + 1);
    delta.set_cl_hlc(stamp.hlc);
    delta.set_cl_origin(stamp.origin);
  } else {
    // An update carries the life it edits, so that it is self-contained: a replica
    // that sees it first knows the record exists.
    delta.set_causal_length(current.causal_length());
    delta.set_cl_hlc(current.cl_hlc());
    delta.set_cl_origin(current.cl_origin());
  }

  if (write.kind != Kind::kDelete) {
    // Every supplied value must name a schema field and fit it, even if not in the mask.
    for (const auto& [name, value] : write.fields) {
      const FieldSpec* spec = schema.Find(name);
      const std::string path = absl::StrCat("record.fields[", name, "]");
      if (spec == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": no such field in the schema"));
      }
      if (absl::Status s = schema.ValidateValue(*spec, value, path); !s.ok()) return s;
    }
    // The fields this write sets or clears.
    std::vector<const FieldSpec*> targets;
    if (write.kind == Kind::kCreate) {
      for (const auto& [name, value] : write.fields) targets.push_back(schema.Find(name));
    } else if (write.mask.empty()) {
      for (const FieldSpec& spec : schema.proto().fields()) targets.push_back(&spec);
    } else {
      absl::flat_hash_set<std::string_view> seen;
      for (size_t i = 0; i < write.mask.size(); ++i) {
        const FieldSpec* spec = schema.Find(write.mask[i]);
        if (spec == nullptr) {
          return absl::InvalidArgumentError(absl::StrCat(
              "update_mask.paths[", i, "]: no such field \"", write.mask[i], "\" in the schema"));
        }
        if (seen.insert(spec->name()).second) targets.push_back(spec);
      }
    }
    std::sort(targets.begin(), targets.end(),
              [](const FieldSpec* x, const FieldSpec* y) { return x->name() < y->name(); });
    const uint32_t life = LifeOf(delta.causal_length());
    for (const FieldSpec* spec : targets) {
      auto it = write.fields.find(spec->name());
      const Value* value =
          (it == write.fields.end() || it->second.kind_case() == Value::KIND_NOT_SET)
              ? nullptr
              : &it->second;
      if (value == nullptr && spec->required()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "record.fields[", spec->name(), "]: required field cannot be cleared"));
      }
      absl::StatusOr<FieldState> field =
          PlanField(*spec, FindField(current, spec->name()), life, value, stamp);
      if (!field.ok()) return field.status();
      *delta.add_fields() = *std::move(field);
    }
  }

  plan.merged = current;
  MergeRecordState(plan.merged, delta);
  if (live && write.kind == Kind::kUpdate) {
    // An update that changes no visible value is a no-op: nothing to log or replicate
    // (re-importing the same data costs nothing).
    FieldValues before, after;
    VisibleFields(current, before);
    VisibleFields(plan.merged, after);
    bool same = before.size() == after.size();
    for (auto it = before.begin(); same && it != before.end(); ++it) {
      auto jt = after.find(it->first);
      same = jt != after.end() &&
             jt->second.SerializeAsString() == it->second.SerializeAsString();
    }
    if (same) return std::nullopt;
  }
  if (IsLive(plan.merged)) {
    FieldValues visible;
    VisibleFields(plan.merged, visible);
    for (const FieldSpec& spec : schema.proto().fields()) {
      if (spec.required() && !visible.contains(spec.name())) {
        return absl::InvalidArgumentError(
            absl::StrCat("record.fields[", spec.name(), "]: required field is missing"));
      }
    }
  }
  if (plan.merged.ByteSizeLong() > limits::kRecordStateBytesMax) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "record would take ", plan.merged.ByteSizeLong(), " bytes, over the maximum ",
        limits::kRecordStateBytesMax));
  }
  return plan;
}

}  // namespace interco::replication
