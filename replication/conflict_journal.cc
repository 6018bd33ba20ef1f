#include "replication/conflict_journal.h"

#include <algorithm>
#include <string_view>
#include <tuple>

#include "replication/base/limits.h"
#include "replication/record_crdt.h"

namespace interco::replication {
namespace {

using interco::replication::v1::FieldStamp;
using interco::replication::v1::LostWrite;
using Key = std::tuple<std::string_view, uint64_t, uint32_t>;
template <typename T>
using List = google::protobuf::RepeatedPtrField<T>;

Key KeyOf(const LostWrite& l) { return {l.loser().name(), l.loser().hlc(), l.loser().origin()}; }
Key KeyOf(const FieldStamp& s) { return {s.name(), s.hlc(), s.origin()}; }
Key KeyOf(const std::string& name, Stamp s) { return {name, s.hlc, s.origin}; }

template <typename T>
int LowerBound(const List<T>& list, const Key& k) {
  auto it = std::lower_bound(list.begin(), list.end(), k,
                             [](const T& e, const Key& key) { return KeyOf(e) < key; });
  return static_cast<int>(it - list.begin());
}

template <typename T>
bool Erase(List<T>& list, const Key& k) {
  const int i = LowerBound(list, k);
  if (i == list.size() || KeyOf(list.Get(i)) != k) return false;
  list.DeleteSubrange(i, 1);
  return true;
}

// Inserts a new element at its sorted place; nullptr if one with that key is there.
template <typename T>
T* Insert(List<T>& list, const Key& k) {
  const int i = LowerBound(list, k);
  if (i < list.size() && KeyOf(list.Get(i)) == k) return nullptr;
  list.Add();
  for (int j = list.size() - 1; j > i; --j) list.SwapElements(j, j - 1);
  return list.Mutable(i);
}

// Index of the element with the oldest stamp.
template <typename T, typename StampOf>
int Oldest(const List<T>& list, StampOf stamp_of) {
  int oldest = 0;
  for (int i = 1; i < list.size(); ++i) {
    if (stamp_of(list.Get(i)) < stamp_of(list.Get(oldest))) oldest = i;
  }
  return oldest;
}

bool AddLost(RecordConflicts& journal, const FieldState& loser, Stamp winner) {
  LostWrite* l = Insert(*journal.mutable_lost(), KeyOf(loser.name(), {loser.hlc(), loser.origin()}));
  if (l == nullptr) return false;
  FieldState& kept = *l->mutable_loser();
  kept.set_name(loser.name());
  kept.set_recreations(loser.recreations());
  kept.set_hlc(loser.hlc());
  kept.set_origin(loser.origin());
  if (loser.has_value()) *kept.mutable_value() = loser.value();
  l->set_winner_hlc(winner.hlc);
  l->set_winner_origin(winner.origin);
  auto stamp_of = [](const LostWrite& e) { return Stamp{e.loser().hlc(), e.loser().origin()}; };
  while (journal.lost_size() > limits::kConflictsPerRecordMax ||
         (journal.lost_size() > 1 && journal.ByteSizeLong() > limits::kConflictBytesPerRecordMax)) {
    journal.mutable_lost()->DeleteSubrange(Oldest(journal.lost(), stamp_of), 1);
    journal.set_dropped(journal.dropped() + 1);
  }
  return true;
}

bool AddSeenAhead(RecordConflicts& journal, const std::string& name, Stamp seen) {
  FieldStamp* s = Insert(*journal.mutable_seen_ahead(), KeyOf(name, seen));
  if (s == nullptr) return false;
  s->set_name(name);
  s->set_hlc(seen.hlc);
  s->set_origin(seen.origin);
  auto stamp_of = [](const FieldStamp& e) { return Stamp{e.hlc(), e.origin()}; };
  while (journal.seen_ahead_size() > limits::kSeenAheadPerRecordMax) {
    journal.mutable_seen_ahead()->DeleteSubrange(Oldest(journal.seen_ahead(), stamp_of), 1);
  }
  return true;
}

// Whether a delta's field state is a register write of `life` (only registers race: sets
// and counters merge every write).
bool RegisterOfLife(const RegistrySchema& schema, const FieldState& f, uint32_t life) {
  if (LifeOfField(f) != life) return false;
  const interco::v1::FieldSpec* spec = schema.Find(f.name());
  return spec != nullptr && spec->type() != interco::v1::FIELD_TYPE_STRING_SET &&
         spec->type() != interco::v1::FIELD_TYPE_COUNTER;
}

const FieldState* FindLiveField(const RecordState& state, const std::string& name, uint32_t life) {
  const FieldState* f = FindField(state, name);
  return f != nullptr && LifeOfField(*f) == life ? f : nullptr;
}

}  // namespace

std::optional<Stamp> SeenBy(const FieldState& change) {
  if (change.seen_age() == 0 || change.seen_age() > change.hlc()) return std::nullopt;
  return Stamp{change.hlc() - change.seen_age(),
               change.seen_origin() != 0 ? change.seen_origin() : change.origin()};
}

bool UpdateConflicts(const RegistrySchema& schema, const RecordState& current,
                     const RecordState& delta, const std::function<bool(Stamp)>& received,
                     uint64_t journal_before, RecordConflicts& journal) {
  bool changed = false;
  const uint32_t cl = std::max(current.causal_length(), delta.causal_length());
  if (cl != current.causal_length() && (journal.lost_size() > 0 || journal.seen_ahead_size() > 0)) {
    // A life ended: its races are over (edits lost to a delete are not conflicts).
    journal.Clear();
    changed = true;
  }
  if (cl % 2 == 0) return changed;
  const uint32_t life = LifeOf(cl);
  for (const FieldState& b : delta.fields()) {
    if (!RegisterOfLife(schema, b, life)) continue;
    const FieldState* a = FindLiveField(current, b.name(), life);
    const Stamp sb{b.hlc(), b.origin()};
    const std::optional<Stamp> seen = SeenBy(b);
    std::optional<Stamp> sa;
    if (a != nullptr) sa = Stamp{a->hlc(), a->origin()};
    if (sa == sb) continue;  // applied before
    if (sa.has_value() && sb > *sa) {
      // `b` replaces `a`: a conflict unless b's writer had seen a (or a is past retention).
      if (seen != sa && sa->hlc >= journal_before) changed |= AddLost(journal, *a, sb);
    } else if (Erase(*journal.mutable_seen_ahead(), KeyOf(b.name(), sb))) {
      changed = true;  // a write received earlier replaced it knowingly
    } else if (sa.has_value() && sb.hlc >= journal_before) {
      changed |= AddLost(journal, b, *sa);  // it arrives beaten by a write that missed it
    }
    if (seen.has_value() && seen != sa) {
      if (Erase(*journal.mutable_lost(), KeyOf(b.name(), *seen))) {
        changed = true;  // journaled here, but b's writer saw it and replaced it
      } else if (seen->hlc >= journal_before && !received(*seen)) {
        changed |= AddSeenAhead(journal, b.name(), *seen);
      }
    }
  }
  return changed;
}

size_t ExpireConflicts(uint64_t journal_before, RecordConflicts& journal, bool* changed) {
  const int lost = journal.lost_size();
  const int seen = journal.seen_ahead_size();
  auto& l = *journal.mutable_lost();
  l.erase(std::remove_if(l.begin(), l.end(),
                         [&](const LostWrite& e) { return e.loser().hlc() < journal_before; }),
          l.end());
  auto& s = *journal.mutable_seen_ahead();
  s.erase(std::remove_if(s.begin(), s.end(),
                         [&](const FieldStamp& e) { return e.hlc() < journal_before; }),
          s.end());
  *changed = journal.lost_size() != lost || journal.seen_ahead_size() != seen;
  // A journal left empty says nothing of what its bound dropped: the entries are past
  // retention anyway, and every node then holds the same (no) journal.
  if (*changed && journal.lost().empty() && journal.seen_ahead().empty()) journal.clear_dropped();
  return static_cast<size_t>(lost - journal.lost_size());
}

uint64_t OldestConflict(const RecordConflicts& journal) {
  uint64_t oldest = 0;
  auto take = [&](uint64_t hlc) {
    if (oldest == 0 || hlc < oldest) oldest = hlc;
  };
  for (const LostWrite& l : journal.lost()) take(l.loser().hlc());
  for (const FieldStamp& s : journal.seen_ahead()) take(s.hlc());
  return oldest;
}

bool JournalUntouched(const RegistrySchema& schema, const RecordState& current,
                      const RecordState& delta) {
  // Only a live record has a journal, and only the end of its life clears it.
  if (IsLive(current) && delta.causal_length() > current.causal_length()) return false;
  const uint32_t cl = std::max(current.causal_length(), delta.causal_length());
  if (cl % 2 == 0) return true;
  const uint32_t life = LifeOf(cl);
  for (const FieldState& b : delta.fields()) {
    if (!RegisterOfLife(schema, b, life)) continue;
    const FieldState* a = FindLiveField(current, b.name(), life);
    const std::optional<Stamp> seen = SeenBy(b);
    if (a == nullptr) {
      // A first value of the field in this life; no write replaced it knowingly yet
      // (such a write would be the field's value here).
      if (seen.has_value()) return false;
      continue;
    }
    const Stamp sa{a->hlc(), a->origin()};
    if (Stamp{b.hlc(), b.origin()} == sa) continue;
    if (!(Stamp{b.hlc(), b.origin()} > sa && seen == sa)) return false;
  }
  return true;
}

bool ReceivedBefore(const VersionVector& position,
                    const interco::replication::v1::BatchHeader& batch, Stamp stamp) {
  if (stamp.origin == batch.origin() && stamp.hlc <= batch.max_hlc() && batch.epoch() == 1) {
    return true;  // an earlier change of this batch, or of its chain
  }
  // A stamp does not say its epoch, and epochs of one origin arrive independently: only
  // an origin's first epoch, when no other is known, tells for sure (its changes arrive
  // in order). Otherwise "not received" is the safe answer: the stamp is remembered as
  // seen ahead, which is harmless if it had in fact arrived (it never arrives again).
  auto it = position.lower_bound(OriginKey{stamp.origin, 0});
  if (it == position.end() || it->first.origin != stamp.origin || it->first.epoch != 1) {
    return false;
  }
  auto next = std::next(it);
  if (next != position.end() && next->first.origin == stamp.origin) return false;
  return it->second.max_hlc >= stamp.hlc;
}

}  // namespace interco::replication
