#include "replication/conflict_journal.h"

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "interco/replication/v1/state.pb.h"
#include "interco/v1/registry.pb.h"
#include "interco/v1/value.pb.h"
#include "replication/base/limits.h"
#include "replication/hlc.h"
#include "replication/record_crdt.h"
#include "replication/registry_schema.h"

namespace interco::replication {
namespace {

using interco::v1::FieldSpec;
using interco::v1::Schema;
using interco::v1::Value;
using Kind = LocalWrite::Kind;
using interco::replication::v1::FieldStamp;
using interco::replication::v1::LostWrite;

constexpr uint32_t kA = 200046977;
constexpr uint32_t kB = 210100012;
constexpr uint32_t kC = 217400423;
constexpr uint64_t kBaseMs = 1'700'000'000'000;

// label, population: registers; tags: string set; visits: counter.
const RegistrySchema& Schema4() {
  static const RegistrySchema* const schema = [] {
    Schema s;
    auto add = [&](const char* name, interco::v1::FieldType type) {
      FieldSpec* f = s.add_fields();
      f->set_name(name);
      f->set_type(type);
    };
    add("label", interco::v1::FIELD_TYPE_STRING);
    add("population", interco::v1::FIELD_TYPE_INT64);
    add("tags", interco::v1::FIELD_TYPE_STRING_SET);
    add("visits", interco::v1::FIELD_TYPE_COUNTER);
    absl::StatusOr<RegistrySchema> compiled = RegistrySchema::Compile(s);
    EXPECT_TRUE(compiled.ok()) << compiled.status();
    return new RegistrySchema(*std::move(compiled));
  }();
  return *schema;
}

Value Str(const std::string& s) {
  Value v;
  v.set_string_value(s);
  return v;
}

// Changes for which JournalUntouched held (the fast path is exercised).
size_t untouched_count = 0;

// One node's copy of one record: its state, its journal, and the greatest HLC it applied
// per origin (what it has received: origins' changes arrive in order).
struct Replica {
  uint32_t origin = 0;
  uint64_t clock = 0;  // HLC of this node
  RecordState state;
  RecordConflicts journal;
  std::map<uint32_t, uint64_t> applied;
  // The journal retention's cut in force (Collection.journal_before).
  uint64_t cut = 0;

  // Applies a collection's retention cut.
  void Cut(uint64_t journal_before) {
    if (journal_before <= cut) return;
    cut = journal_before;
    bool changed = false;
    ExpireConflicts(journal_before, journal, &changed);
  }

  // Applies a change of `from`.
  void Apply(uint32_t from, const RecordState& delta, uint64_t max_hlc) {
    auto received = [&](Stamp s) {
      auto it = applied.find(s.origin);
      return it != applied.end() && it->second >= s.hlc;
    };
    const RecordConflicts before = journal;
    const bool untouched = JournalUntouched(Schema4(), state, delta);
    const bool changed = UpdateConflicts(Schema4(), state, delta, received, cut, journal);
    if (untouched) {
      // A store may skip the journal: it must not have mattered, whatever it held.
      EXPECT_FALSE(changed) << before.DebugString() << " -> " << journal.DebugString();
      RecordConflicts empty;
      EXPECT_FALSE(UpdateConflicts(Schema4(), state, delta, received, cut, empty));
      ++untouched_count;
    }
    MergeRecordState(state, delta);
    applied[from] = std::max(applied[from], max_hlc);
    clock = std::max(clock, max_hlc);
  }

  // A local write; returns its delta (nullopt: refused or no-op).
  std::optional<RecordState> Write(const LocalWrite& w) {
    const Stamp stamp{++clock, origin};
    auto planned = PlanLocalWrite(Schema4(), state, w, stamp);
    if (!planned.ok() || !planned->has_value()) return std::nullopt;
    RecordState delta = (*planned)->delta;
    const bool changed =
        UpdateConflicts(Schema4(), state, delta, [](Stamp) { return true; }, 0, journal);
    // A local write replaces what it saw: it never journals anything, it may only end a life.
    EXPECT_TRUE(!changed || journal.lost().empty()) << journal.DebugString();
    state = (*planned)->merged;
    applied[origin] = stamp.hlc;
    return delta;
  }
};

LocalWrite SetLabel(const std::string& label) {
  LocalWrite w;
  w.kind = Kind::kUpdate;
  w.allow_missing = true;
  w.fields["label"] = Str(label);
  w.mask = {"label"};
  return w;
}

std::set<std::tuple<std::string, uint64_t, uint32_t, std::string>> Lost(const RecordConflicts& j) {
  std::set<std::tuple<std::string, uint64_t, uint32_t, std::string>> out;
  for (const auto& l : j.lost()) {
    out.emplace(l.loser().name(), l.loser().hlc(), l.loser().origin(),
                l.loser().value().SerializeAsString());
  }
  return out;
}

Replica Node(uint32_t origin, uint64_t ms) {
  Replica r;
  r.origin = origin;
  r.clock = HybridLogicalClock::Pack(kBaseMs + ms, 0);
  return r;
}

uint64_t HlcOf(const RecordState& delta) {
  uint64_t h = delta.cl_hlc();
  for (const FieldState& f : delta.fields()) h = std::max(h, f.hlc());
  return h;
}

TEST(ConflictJournalTest, AConcurrentLoserIsJournaledWhateverTheOrder) {
  Replica a = Node(kA, 0), b = Node(kB, 10), c = Node(kC, 20);
  const RecordState created = *a.Write(SetLabel("Mairie"));
  b.Apply(kA, created, HlcOf(created));
  c.Apply(kA, created, HlcOf(created));
  const RecordState from_b = *b.Write(SetLabel("Mairie annexe"));
  const RecordState from_c = *c.Write(SetLabel("Hôtel de ville"));  // greater stamp: wins
  Replica x = Node(kA, 0), y = Node(kA, 0);
  for (Replica* r : {&x, &y}) r->Apply(kA, created, HlcOf(created));
  x.Apply(kB, from_b, HlcOf(from_b));
  x.Apply(kC, from_c, HlcOf(from_c));
  y.Apply(kC, from_c, HlcOf(from_c));
  y.Apply(kB, from_b, HlcOf(from_b));
  for (const Replica* r : {&x, &y}) {
    ASSERT_EQ(r->journal.lost_size(), 1) << r->journal.DebugString();
    const auto& lost = r->journal.lost(0);
    EXPECT_EQ(lost.loser().name(), "label");
    EXPECT_EQ(lost.loser().value().string_value(), "Mairie annexe");
    EXPECT_EQ(lost.loser().origin(), kB);
    EXPECT_EQ(lost.winner_origin(), kC);
    EXPECT_EQ(lost.winner_hlc(), HlcOf(from_c));
    EXPECT_EQ(lost.loser().seen_age(), 0u);  // the journal keeps no change metadata
  }
  // The created value was replaced knowingly by both: no conflict.
  EXPECT_EQ(Lost(x.journal), Lost(y.journal));
}

TEST(ConflictJournalTest, AWriteThatSawTheValueItReplacedIsNoConflict) {
  Replica a = Node(kA, 0), b = Node(kB, 10);
  const RecordState first = *a.Write(SetLabel("Mairie"));
  b.Apply(kA, first, HlcOf(first));
  const RecordState second = *b.Write(SetLabel("Mairie de Bourg"));
  ASSERT_EQ(second.fields_size(), 1);
  ASSERT_EQ(SeenBy(second.fields(0)), (Stamp{HlcOf(first), kA}));
  EXPECT_EQ(second.fields(0).seen_origin(), kA);

  // In order, and with the later write first (the earlier one is then seen ahead).
  Replica x = Node(kC, 0), y = Node(kC, 0);
  x.Apply(kA, first, HlcOf(first));
  x.Apply(kB, second, HlcOf(second));
  y.Apply(kB, second, HlcOf(second));
  EXPECT_EQ(y.journal.seen_ahead_size(), 1);
  y.Apply(kA, first, HlcOf(first));
  for (const Replica* r : {&x, &y}) {
    EXPECT_EQ(r->journal.lost_size(), 0) << r->journal.DebugString();
    EXPECT_EQ(r->journal.seen_ahead_size(), 0);
  }
  // Nothing of `seen` is kept in the merged state.
  for (const FieldState& f : y.state.fields()) {
    EXPECT_EQ(f.seen_age(), 0u);
    EXPECT_EQ(f.seen_origin(), 0u);
  }
}

TEST(ConflictJournalTest, AWriteThatSawAJournaledLoserTakesItOut) {
  // L (from A) is replaced here by a concurrent X (from C); then W arrives: B had seen L
  // and replaced it. L was not lost: B's write carries its intent on.
  Replica a = Node(kA, 0), b = Node(kB, 5), c = Node(kC, 50);
  const RecordState l = *a.Write(SetLabel("L"));
  const RecordState x = *c.Write(SetLabel("X"));
  b.Apply(kA, l, HlcOf(l));
  const RecordState w = *b.Write(SetLabel("W"));
  Replica n = Node(kC, 0);
  n.Apply(kA, l, HlcOf(l));
  n.Apply(kC, x, HlcOf(x));
  ASSERT_EQ(n.journal.lost_size(), 1);
  EXPECT_EQ(n.journal.lost(0).loser().value().string_value(), "L");
  n.Apply(kB, w, HlcOf(w));
  // W lost to X (it had not seen X); L is out.
  ASSERT_EQ(n.journal.lost_size(), 1) << n.journal.DebugString();
  EXPECT_EQ(n.journal.lost(0).loser().value().string_value(), "W");
}

TEST(ConflictJournalTest, TheEndOfALifeEmptiesTheJournal) {
  Replica a = Node(kA, 0), b = Node(kB, 10);
  const RecordState created = *a.Write(SetLabel("Mairie"));
  b.Apply(kA, created, HlcOf(created));
  const RecordState from_a = *a.Write(SetLabel("A"));
  const RecordState from_b = *b.Write(SetLabel("B"));
  b.Apply(kA, from_a, HlcOf(from_a));
  ASSERT_EQ(b.journal.lost_size(), 1);
  LocalWrite del;
  del.kind = Kind::kDelete;
  const std::optional<RecordState> deleted = b.Write(del);
  ASSERT_TRUE(deleted.has_value());
  EXPECT_EQ(b.journal.lost_size(), 0);
  // At A the race is journaled, then the delete arrives and ends it.
  a.Apply(kB, from_b, HlcOf(from_b));
  ASSERT_EQ(a.journal.lost_size(), 1);
  a.Apply(kB, *deleted, HlcOf(*deleted));
  EXPECT_EQ(a.journal.lost_size(), 0);
  EXPECT_FALSE(IsLive(a.state));
  // An edit of the dead life arriving late (here, replayed) is no conflict.
  Replica late = a;
  late.Apply(kA, from_a, HlcOf(from_a));
  EXPECT_EQ(late.journal.lost_size(), 0);
  // A re-create starts a new life whose races are journaled afresh.
  LocalWrite recreate = SetLabel("Nouvelle mairie");
  recreate.kind = Kind::kCreate;
  recreate.mask.clear();
  const RecordState re = *a.Write(recreate);
  b.Apply(kA, re, HlcOf(re));
  const RecordState b2 = *b.Write(SetLabel("B2"));
  const RecordState a2 = *a.Write(SetLabel("A2"));
  a.Apply(kB, b2, HlcOf(b2));
  b.Apply(kA, a2, HlcOf(a2));
  EXPECT_EQ(Lost(a.journal), Lost(b.journal));
  EXPECT_EQ(a.journal.lost_size(), 1);
}

TEST(ConflictJournalTest, SetsAndCountersNeverConflict) {
  Replica a = Node(kA, 0), b = Node(kB, 10);
  LocalWrite w;
  w.kind = Kind::kUpdate;
  w.allow_missing = true;
  w.fields["tags"].mutable_string_set_value()->add_values("sport");
  w.fields["visits"].set_int64_value(3);
  w.mask = {"tags", "visits"};
  const RecordState from_a = *a.Write(w);
  w.fields["tags"].mutable_string_set_value()->set_values(0, "culture");
  w.fields["visits"].set_int64_value(5);
  const RecordState from_b = *b.Write(w);
  a.Apply(kB, from_b, HlcOf(from_b));
  b.Apply(kA, from_a, HlcOf(from_a));
  EXPECT_EQ(a.journal.lost_size(), 0);
  EXPECT_EQ(b.journal.lost_size(), 0);
}

TEST(ConflictJournalTest, TheJournalIsBoundedAndCountsWhatItDrops) {
  const int writers = limits::kConflictsPerRecordMax + 6;
  Replica n = Node(kA, 0);
  const RecordState created = *Node(kA, 0).Write(SetLabel("base"));
  n.Apply(kA, created, HlcOf(created));
  std::vector<RecordState> deltas;
  for (int i = 0; i < writers; ++i) {
    // Each writer saw only the creation: all race.
    Replica w = Node(kB, 1);
    w.origin = 100000000 + static_cast<uint32_t>(i);
    w.Apply(kA, created, HlcOf(created));
    w.clock += static_cast<uint64_t>(i) << 16;
    deltas.push_back(*w.Write(SetLabel("v" + std::to_string(i))));
  }
  for (int i = 0; i < writers; ++i) n.Apply(100000000 + static_cast<uint32_t>(i), deltas[i], HlcOf(deltas[i]));
  // All saw the base value; of their writes one wins, the others lost, the oldest dropped
  // beyond the bound.
  EXPECT_EQ(n.journal.lost_size(), limits::kConflictsPerRecordMax);
  EXPECT_EQ(n.journal.dropped(),
            static_cast<uint64_t>(writers - 1 - limits::kConflictsPerRecordMax));
  EXPECT_EQ(n.journal.lost(0).loser().value().string_value(), "v5");
  for (const auto& l : n.journal.lost()) EXPECT_NE(l.loser().value().string_value(), "base");
}

TEST(ConflictJournalTest, SeenIsValidatedAndOnlyOnRegisters) {
  RecordState delta;
  delta.set_causal_length(1);
  delta.set_cl_hlc(HybridLogicalClock::Pack(kBaseMs, 0));
  delta.set_cl_origin(kA);
  FieldState* f = delta.add_fields();
  f->set_name("label");
  SetLifeOfField(*f, 1);
  f->set_hlc(HybridLogicalClock::Pack(kBaseMs, 0));
  f->set_origin(kA);
  f->set_seen_origin(kB);
  EXPECT_FALSE(ValidateDelta(Schema4(), delta, kA).ok());
  f->set_seen_age(f->hlc());
  EXPECT_FALSE(ValidateDelta(Schema4(), delta, kA).ok());
  f->set_seen_age(1);
  EXPECT_TRUE(ValidateDelta(Schema4(), delta, kA).ok());
  f->set_name("tags");
  EXPECT_FALSE(ValidateDelta(Schema4(), delta, kA).ok());
}

// Property: random causal histories among four origins that exchange changes in arbitrary
// cross-origin orders. Every replica, whatever order it applies the changes in, ends with
// the same losers: exactly the register writes of the final life that are neither the
// final value nor named as seen by another write.
// Random histories of one record on four writers, applied in many orders: every replica
// ends with the same losers. With `retention`, a collection's cut (the stamp of a random
// write) reaches each replica at a random point: it then holds the same losers less
// those stamped below the cut, whenever the cut came.
void CheckEveryOrder(bool retention, size_t* losers, size_t* knowing, size_t* expired) {
  const std::vector<uint32_t> origins = {kA, kB, kC, 219000015};
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    std::mt19937_64 rng(seed);
    auto uniform = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };
    std::vector<Replica> nodes;
    for (uint32_t o : origins) nodes.push_back(Node(o, 0));
    // Per origin, its changes in order (delta, max hlc).
    std::vector<std::vector<std::pair<RecordState, uint64_t>>> logs(origins.size());
    std::vector<std::vector<size_t>> pulled(origins.size(), std::vector<size_t>(origins.size()));
    for (int step = 0; step < 40; ++step) {
      const int n = uniform(static_cast<int>(origins.size()));
      if (uniform(3) > 0) {
        LocalWrite w = SetLabel("s" + std::to_string(seed) + "-" + std::to_string(step));
        const int r = uniform(20);
        if (r == 0) {
          w = LocalWrite{};
          w.kind = Kind::kDelete;
          w.allow_missing = true;
        } else if (r < 6) {
          w.fields["population"].set_int64_value(step);
          w.mask.push_back("population");
        }
        nodes[n].clock += static_cast<uint64_t>(uniform(3)) << 16;
        if (auto delta = nodes[n].Write(w)) logs[n].push_back({*delta, HlcOf(*delta)});
      } else {
        // n pulls part of what one origin wrote (in that origin's order).
        const int from = uniform(static_cast<int>(origins.size()));
        if (from == n) continue;
        size_t& next = pulled[n][from];
        const size_t upto = next + static_cast<size_t>(uniform(3));
        for (; next < std::min(upto, logs[from].size()); ++next) {
          nodes[n].Apply(origins[from], logs[from][next].first, logs[from][next].second);
        }
      }
    }
    // Everyone pulls the rest, origin by origin in a random order.
    for (size_t n = 0; n < origins.size(); ++n) {
      std::vector<size_t> order(origins.size());
      for (size_t i = 0; i < order.size(); ++i) order[i] = i;
      std::shuffle(order.begin(), order.end(), rng);
      for (size_t from : order) {
        if (from == n) continue;
        for (size_t& next = pulled[n][from]; next < logs[from].size(); ++next) {
          nodes[n].Apply(origins[from], logs[from][next].first, logs[from][next].second);
        }
      }
    }
    uint64_t cut = 0;
    size_t total = 0;
    for (const auto& log : logs) total += log.size();
    if (retention && total > 0) {
      size_t pick = static_cast<size_t>(uniform(static_cast<int>(total)));
      for (const auto& log : logs) {
        if (pick < log.size()) {
          cut = log[pick].second;
          break;
        }
        pick -= log.size();
      }
      for (Replica& n : nodes) n.Cut(cut);  // after everything
    }
    // Fresh replicas applying every change, interleaving origins at random (and the cut,
    // if any, at a random point).
    for (int fresh = 0; fresh < 3; ++fresh) {
      Replica r = Node(900000007, 0);
      std::vector<size_t> next(origins.size());
      const size_t cut_at = static_cast<size_t>(uniform(static_cast<int>(total) + 1));
      for (size_t applied = 0;; ++applied) {
        if (applied == cut_at) r.Cut(cut);
        std::vector<size_t> ready;
        for (size_t o = 0; o < origins.size(); ++o) {
          if (next[o] < logs[o].size()) ready.push_back(o);
        }
        if (ready.empty()) break;
        const size_t o = ready[static_cast<size_t>(uniform(static_cast<int>(ready.size())))];
        r.Apply(origins[o], logs[o][next[o]].first, logs[o][next[o]].second);
        ++next[o];
      }
      nodes.push_back(std::move(r));
    }
    // The expected losers.
    const RecordState& final_state = nodes[0].state;
    std::set<std::tuple<std::string, uint64_t, uint32_t, std::string>> expected;
    if (IsLive(final_state)) {
      const uint32_t life = LifeOf(final_state.causal_length());
      std::set<std::tuple<std::string, uint64_t, uint32_t>> seen, finals;
      for (const FieldState& f : final_state.fields()) finals.emplace(f.name(), f.hlc(), f.origin());
      for (const auto& log : logs) {
        for (const auto& [delta, hlc] : log) {
          for (const FieldState& f : delta.fields()) {
            if (auto s = SeenBy(f); s && LifeOfField(f) == life) seen.emplace(f.name(), s->hlc, s->origin);
          }
        }
      }
      for (const auto& log : logs) {
        for (const auto& [delta, hlc] : log) {
          for (const FieldState& f : delta.fields()) {
            const auto id = std::make_tuple(f.name(), f.hlc(), f.origin());
            if (LifeOfField(f) != life || seen.contains(id) || finals.contains(id)) continue;
            if (f.hlc() < cut) {
              ++*expired;
              continue;
            }
            expected.emplace(f.name(), f.hlc(), f.origin(), f.value().SerializeAsString());
          }
        }
      }
    }
    for (size_t i = 0; i < nodes.size(); ++i) {
      ASSERT_EQ(nodes[i].state.SerializeAsString(), final_state.SerializeAsString())
          << "seed " << seed << " node " << i;
      ASSERT_EQ(Lost(nodes[i].journal), expected) << "seed " << seed << " node " << i << "\n"
                                                  << nodes[i].journal.DebugString();
      ASSERT_EQ(nodes[i].journal.seen_ahead_size(), 0) << "seed " << seed << " node " << i;
    }
    *losers += expected.size();
    for (const auto& log : logs) {
      for (const auto& [delta, hlc] : log) {
        for (const FieldState& f : delta.fields()) *knowing += SeenBy(f).has_value() ? 1 : 0;
      }
    }
  }
}

TEST(ConflictJournalTest, EveryOrderGivesTheSameLosers) {
  size_t losers = 0, knowing = 0, expired = 0;
  CheckEveryOrder(false, &losers, &knowing, &expired);
  // The histories hold both kinds of overwrite, and changes that skip the journal.
  EXPECT_GT(losers, 300u);
  EXPECT_GT(untouched_count, 1000u);
  EXPECT_GT(knowing, 1000u);
  EXPECT_EQ(expired, 0u);
}

TEST(ConflictJournalTest, ARetentionCutGivesTheSameLosersWheneverItArrives) {
  size_t losers = 0, knowing = 0, expired = 0;
  CheckEveryOrder(true, &losers, &knowing, &expired);
  // Some losers were kept, some went with the cut.
  EXPECT_GT(losers, 100u);
  EXPECT_GT(expired, 100u);
}

// Below the cut, nothing is added: neither a loser nor a seen value that has not arrived
// (one that will never arrive, when `received` cannot tell, would otherwise stay).
TEST(ConflictJournalTest, NothingStampedBelowTheCutIsAdded) {
  const uint64_t t = HybridLogicalClock::Pack(kBaseMs, 0);
  RecordState state;
  state.set_causal_length(1);
  FieldState* a = state.add_fields();
  a->set_name("label");
  a->set_hlc(t + 600);
  a->set_origin(kA);
  *a->mutable_value() = Str("a");
  RecordState delta;
  delta.set_causal_length(1);
  FieldState* b = delta.add_fields();
  b->set_name("label");
  b->set_hlc(t + 700);
  b->set_origin(kB);
  *b->mutable_value() = Str("b");
  b->set_seen_age(200);  // it had seen (t + 500, kC), not a
  b->set_seen_origin(kC);
  auto never = [](Stamp) { return false; };
  RecordConflicts kept;
  ASSERT_TRUE(UpdateConflicts(Schema4(), state, delta, never, 0, kept));
  EXPECT_EQ(kept.lost_size(), 1);
  EXPECT_EQ(kept.seen_ahead_size(), 1);
  RecordConflicts partly;  // a's stamp and the seen one are below the cut
  EXPECT_FALSE(UpdateConflicts(Schema4(), state, delta, never, t + 601, partly));
  EXPECT_EQ(partly.ByteSizeLong(), 0u) << partly.DebugString();
  RecordConflicts seen_only;  // only the seen one is
  ASSERT_TRUE(UpdateConflicts(Schema4(), state, delta, never, t + 501, seen_only));
  EXPECT_EQ(seen_only.lost_size(), 1);
  EXPECT_EQ(seen_only.seen_ahead_size(), 0);
  // A write arriving beaten by one that missed it, stamped below the cut: not journaled.
  RecordState winner = state;
  winner.mutable_fields(0)->set_hlc(t + 800);
  RecordConflicts late;
  EXPECT_FALSE(UpdateConflicts(Schema4(), winner, delta, never, t + 701, late));
  EXPECT_EQ(late.ByteSizeLong(), 0u);
  ASSERT_TRUE(UpdateConflicts(Schema4(), winner, delta, never, t + 700, late));
  EXPECT_EQ(late.lost_size(), 1);
  EXPECT_EQ(late.seen_ahead_size(), 0);
}

TEST(ConflictJournalTest, ExpiringRemovesEntriesBelowTheCutOnly) {
  RecordConflicts journal;
  auto lost = [&](uint64_t hlc, uint32_t origin) {
    LostWrite* l = journal.add_lost();
    l->mutable_loser()->set_name("label");
    l->mutable_loser()->set_hlc(hlc);
    l->mutable_loser()->set_origin(origin);
  };
  lost(100, kA);
  lost(200, kB);
  FieldStamp* s = journal.add_seen_ahead();
  s->set_name("label");
  s->set_hlc(150);
  s->set_origin(kC);
  journal.set_dropped(3);
  EXPECT_EQ(OldestConflict(journal), 100u);
  bool changed = true;
  EXPECT_EQ(ExpireConflicts(100, journal, &changed), 0u);  // strictly below
  EXPECT_FALSE(changed);
  EXPECT_EQ(ExpireConflicts(151, journal, &changed), 1u);
  EXPECT_TRUE(changed);
  ASSERT_EQ(journal.lost_size(), 1);
  EXPECT_EQ(journal.lost(0).loser().hlc(), 200u);
  EXPECT_EQ(journal.seen_ahead_size(), 0);
  EXPECT_EQ(journal.dropped(), 3u);  // what the bound dropped is still said
  EXPECT_EQ(OldestConflict(journal), 200u);
  EXPECT_EQ(ExpireConflicts(1000, journal, &changed), 1u);
  EXPECT_EQ(OldestConflict(journal), 0u);
}

}  // namespace
}  // namespace interco::replication
