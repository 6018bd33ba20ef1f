#include "replication/exclusion.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "replication/base/limits.h"
#include "replication/ids.h"

namespace interco::replication {

using interco::replication::v1::Collection;
using interco::replication::v1::Dot;
using interco::replication::v1::Exclusion;

namespace {

// The cut of `epoch` that `e` names (nullopt: none, which counts as 0).
std::optional<uint64_t> CutOf(const Exclusion& e, uint32_t epoch) {
  for (const Dot& d : e.cuts()) {
    if (d.epoch() == epoch) return d.seq();
  }
  return std::nullopt;
}

}  // namespace

Exclusions::Exclusions(const Stored& stored) {
  for (const Exclusion& e : stored) members_[e.member()] = e;
}

void Exclusions::Write(Stored& out) const {
  out.Clear();
  for (const auto& [member, e] : members_) *out.Add() = e;
}

bool Exclusions::Apply(const Collection& collection, uint64_t version, const Dot& at) {
  for (uint32_t member : collection.excluded()) {
    Exclusion& e = members_[member];
    e.set_member(member);
    e.set_version(version);
    *e.mutable_at() = at;
    e.clear_cuts();
    for (const Dot& cut : collection.cuts()) {
      if (cut.origin() == member) *e.add_cuts() = cut;
    }
  }
  return !collection.excluded().empty();
}

absl::Status Exclusions::Judge(const interco::replication::v1::BatchHeader& header) const {
  auto it = members_.find(header.origin());
  if (it == members_.end() || header.policy_version() >= it->second.version()) {
    return absl::OkStatus();
  }
  const uint64_t cut = CutOf(it->second, header.epoch()).value_or(0);
  if (header.first_seq() <= cut) return absl::OkStatus();
  return absl::PermissionDeniedError(absl::StrCat(
      "origin ", OriginToSiren(header.origin()), " was left out of collection ",
      it->second.version(), " of registry ", header.stream(),
      " (absent longer than the retention): its batch ", header.first_seq(), " of epoch ",
      header.epoch(), " goes beyond the cut there (", cut, ") and was written under policy ",
      "version ", header.policy_version(), ", before the collection"));
}

VersionVector Exclusions::Overrun(const VersionVector& position,
                                  const Collection& collection) const {
  VersionVector out;
  for (uint32_t member : collection.excluded()) {
    auto m = members_.find(member);
    if (m == members_.end()) continue;
    const Exclusion& e = m->second;
    for (auto it = position.lower_bound(OriginKey{member, 0});
         it != position.end() && it->first.origin == member; ++it) {
      const uint64_t cut = CutOf(e, it->first.epoch).value_or(0);
      if (it->second.seq > cut) out[it->first].seq = cut;
    }
  }
  return out;
}

void MarkClosed(const Exclusions& exclusions, VersionVector& frontier) {
  for (auto& [key, pos] : frontier) {
    auto e = exclusions.members().find(key.origin);
    if (e == exclusions.members().end()) continue;
    if (CutOf(e->second, key.epoch) == pos.seq) pos.closed = true;
  }
}

absl::Status CheckExclusion(const Collection& collection, uint32_t owner) {
  if (static_cast<size_t>(collection.excluded_size()) > limits::kStreamMembersMax ||
      static_cast<size_t>(collection.cuts_size()) > limits::kReportOriginsMax) {
    return absl::PermissionDeniedError("collection leaves out too many members");
  }
  for (int i = 0; i < collection.excluded_size(); ++i) {
    const uint32_t m = collection.excluded(i);
    if (m == 0 || m == owner || (i > 0 && collection.excluded(i - 1) >= m)) {
      return absl::PermissionDeniedError(
          absl::StrCat("collection is malformed (excluded member ", i, ")"));
    }
  }
  for (int i = 0; i < collection.cuts_size(); ++i) {
    const Dot& d = collection.cuts(i);
    const bool of_excluded = std::binary_search(collection.excluded().begin(),
                                                collection.excluded().end(), d.origin());
    if (d.seq() == 0 || !of_excluded ||
        (i > 0 && !(OriginKey{collection.cuts(i - 1).origin(), collection.cuts(i - 1).epoch()} <
                    OriginKey{d.origin(), d.epoch()}))) {
      return absl::PermissionDeniedError(
          absl::StrCat("collection is malformed (cut ", i, ")"));
    }
  }
  return absl::OkStatus();
}

void MemberWatch::Mark(int64_t now_ms, const VersionVector& position) {
  const int64_t spacing = std::max<int64_t>(1, retention_ms_ / kMarksPerRetention);
  if (marks_.empty() || now_ms - marks_.back().first >= spacing) {
    marks_.emplace_back(now_ms, position);
  }
  // Of the snapshots old enough, only the newest is asked about.
  while (marks_.size() >= 2 && marks_[1].first <= now_ms - retention_ms_) marks_.pop_front();
}

bool MemberWatch::Absent(int64_t now_ms, const VersionVector& taken) const {
  if (marks_.empty() || marks_.front().first > now_ms - retention_ms_) return false;
  return Missing(marks_.front().second, taken) > 0;
}

}  // namespace interco::replication
