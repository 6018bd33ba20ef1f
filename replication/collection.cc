#include "replication/collection.h"

#include "absl/strings/str_cat.h"
#include "replication/record_crdt.h"

namespace interco::replication {

VersionVector FromDots(const Dots& dots) {
  VersionVector vv;
  for (const auto& d : dots) vv[OriginKey{d.origin(), d.epoch()}].seq = d.seq();
  return vv;
}

void ToDots(const VersionVector& vv, Dots& out) {
  out.Clear();
  for (const auto& [key, pos] : vv) {
    if (pos.seq == 0) continue;
    auto* d = out.Add();
    d->set_origin(key.origin);
    d->set_epoch(key.epoch);
    d->set_seq(pos.seq);
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

}  // namespace interco::replication
