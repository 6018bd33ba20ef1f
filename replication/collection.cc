#include "replication/collection.h"

#include <algorithm>
#include <iterator>
#include <string_view>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "replication/record_crdt.h"

namespace interco::replication {

using interco::replication::v1::SetElement;

VersionVector FromDots(const Dots& dots) {
  VersionVector vv;
  for (const auto& d : dots) {
    OriginPos& pos = vv[OriginKey{d.origin(), d.epoch()}];
    pos.seq = d.seq();
    pos.max_hlc = d.hlc();
    pos.closed = d.closed();
  }
  return vv;
}

void ToDots(const VersionVector& vv, Dots& out, bool keep_empty) {
  out.Clear();
  for (const auto& [key, pos] : vv) {
    if (pos.seq == 0 && !keep_empty) continue;
    auto* d = out.Add();
    d->set_origin(key.origin);
    d->set_epoch(key.epoch);
    d->set_seq(pos.seq);
    d->set_hlc(pos.max_hlc);
    if (pos.closed) d->set_closed(true);
  }
}

absl::Status CollectionReady(const DecodedBatch& batch, const VersionVector& position) {
  for (const auto& c : batch.changes) {
    if (!c.has_policy() || !c.policy().has_collection()) continue;
    const auto& collection = c.policy().collection();
    if (Missing(FromDots(collection.frontier()), position) > 0 ||
        Missing(FromDots(collection.required()), position) > 0) {
      return absl::UnavailableError(absl::StrCat(
          "collection ", c.policy().version(), " of registry ", batch.header.stream(),
          " waits for changes it requires that have not arrived here yet"));
    }
  }
  return absl::OkStatus();
}

bool CollectionAllowed(const PolicyHistory& history) { return history.writers_always_listed(); }

std::optional<Tombstone> TombstoneSet(const RecordState& after, const RecordState& delta,
                                      OriginKey key, uint64_t seq) {
  if (IsLive(after) || after.causal_length() == 0) return std::nullopt;
  if (delta.causal_length() != after.causal_length() || delta.cl_hlc() != after.cl_hlc() ||
      after.cl_origin() != key.origin) {
    return std::nullopt;
  }
  return Tombstone{after.causal_length(), after.cl_hlc(), key, seq};
}

bool Collectable(const RecordState& state, const Tombstone& tombstone,
                 const VersionVector& frontier) {
  if (IsLive(state) || state.causal_length() != tombstone.causal_length ||
      state.cl_hlc() != tombstone.hlc || state.cl_origin() != tombstone.key.origin) {
    return false;
  }
  auto it = frontier.find(tombstone.key);
  return it != frontier.end() && it->second.seq >= tombstone.seq;
}

RecordState RemovalsOf(const RecordState& delta) {
  RecordState out;
  for (const FieldState& f : delta.fields()) {
    if (f.removed().empty()) continue;
    FieldState* r = out.add_fields();
    r->set_name(f.name());
    r->set_recreations(f.recreations());
    *r->mutable_removed() = f.removed();
  }
  return out;
}

bool StampedAtOrBelow(uint64_t hlc, uint32_t origin, const VersionVector& frontier) {
  bool some = false;
  for (auto it = frontier.lower_bound(OriginKey{origin, 0});
       it != frontier.end() && it->first.origin == origin; ++it) {
    const OriginPos& epoch = it->second;
    // A closed epoch ends before the stamp: the change is of another.
    if (epoch.closed && hlc > epoch.max_hlc) continue;
    // It may be of this epoch, beyond the frontier (or no HLC is known there).
    if (epoch.max_hlc == 0 || hlc > epoch.max_hlc) return false;
    some = true;
  }
  return some;
}

void MergeFrontier(const VersionVector& frontier, VersionVector& into) {
  for (const auto& [key, pos] : frontier) {
    OriginPos& k = into[key];
    if (pos.seq > k.seq) {
      k.seq = pos.seq;
      k.max_hlc = pos.max_hlc;
      k.closed = pos.closed;
    } else if (pos.closed && pos.seq == k.seq) {
      k.closed = true;  // an epoch ends where a frontier said it did, whichever said it
    }
  }
}

size_t PurgeRemovals(RecordState& state, const RecordState& removals,
                     const VersionVector& frontier, bool* pending) {
  size_t purged = 0;
  for (const FieldState& r : removals.fields()) {
    auto it = std::lower_bound(
        state.mutable_fields()->begin(), state.mutable_fields()->end(), r.name(),
        [](const FieldState& f, const std::string& n) { return f.name() < n; });
    if (it == state.mutable_fields()->end() || it->name() != r.name() ||
        LifeOfField(*it) != LifeOfField(r)) {
      continue;  // the field's life ended: its removals went with it
    }
    auto& removed = *it->mutable_removed();
    for (const SetElement& tag : r.removed()) {
      auto at = std::lower_bound(removed.begin(), removed.end(), tag,
                                 [](const SetElement& a, const SetElement& b) {
                                   return std::make_tuple(std::string_view(a.value()), a.hlc(),
                                                          a.origin()) <
                                          std::make_tuple(std::string_view(b.value()), b.hlc(),
                                                          b.origin());
                                 });
      if (at == removed.end() || at->value() != tag.value() || at->hlc() != tag.hlc() ||
          at->origin() != tag.origin()) {
        continue;  // gone already
      }
      if (!StampedAtOrBelow(tag.hlc(), tag.origin(), frontier)) {
        *pending = true;
        continue;
      }
      removed.erase(at);
      ++purged;
    }
  }
  return purged;
}

namespace {

bool TagLess(const SetElement& a, const SetElement& b) {
  return std::make_tuple(std::string_view(a.value()), a.hlc(), a.origin()) <
         std::make_tuple(std::string_view(b.value()), b.hlc(), b.origin());
}

// Whether sorted `list` holds `tag`.
bool Holds(const google::protobuf::RepeatedPtrField<SetElement>& list, const SetElement& tag) {
  auto it = std::lower_bound(list.begin(), list.end(), tag, TagLess);
  return it != list.end() && !TagLess(tag, *it);
}

}  // namespace

size_t DropPurgedRemovals(const RecordState& before, const RecordState& delta,
                          RecordState& after, const VersionVector& purged) {
  if (purged.empty()) return 0;
  size_t dropped = 0;
  for (const FieldState& d : delta.fields()) {
    if (d.removed().empty()) continue;
    const FieldState* was = FindField(before, d.name());
    auto it = std::lower_bound(
        after.mutable_fields()->begin(), after.mutable_fields()->end(), d.name(),
        [](const FieldState& f, const std::string& n) { return f.name() < n; });
    if (it == after.mutable_fields()->end() || it->name() != d.name()) continue;
    if (was != nullptr && LifeOfField(*was) != LifeOfField(*it)) was = nullptr;
    auto& removed = *it->mutable_removed();
    for (const SetElement& tag : d.removed()) {
      if (!StampedAtOrBelow(tag.hlc(), tag.origin(), purged)) continue;
      if (was != nullptr && (Holds(was->elements(), tag) || Holds(was->removed(), tag))) continue;
      auto at = std::lower_bound(removed.begin(), removed.end(), tag, TagLess);
      if (at == removed.end() || TagLess(tag, *at)) continue;
      removed.erase(at);
      ++dropped;
    }
  }
  return dropped;
}

}  // namespace interco::replication
