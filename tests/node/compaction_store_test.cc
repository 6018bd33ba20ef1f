// Compaction of the change log between real stores (RocksDB in temporary directories):
// after the owner's collection, each store makes hollow the log batches whose every
// change is superseded, and a new store fed such a log ends with the same records.
// Batches are carried by hand (the engine's part: tests/sim/; processes:
// tests/integration/federation_test.cc).
#include <chrono>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/crypto/sha256.h"
#include "node/storage/record_store.h"
#include "replication/base/limits.h"
#include "replication/change_log.h"
#include "replication/hlc.h"
#include "replication/repair.h"
#include "tests/testing/test_env.h"

namespace interco::node {
namespace {

using ::interco::testing::FakeClock;
using ::interco::testing::MakeTempDir;
using interco::replication::v1::Batch;
using interco::v1::Registry;
using interco::v1::Value;
using replication::LocalWrite;
using replication::OriginKey;

constexpr char kEpci[] = "200071751";
constexpr char kBourgEnBresse[] = "210100533";
constexpr char kViriat[] = "210104519";
constexpr char kLieux[] = "lieux";

using Node = testing::StoreNode;

// Signs with a fixed string: the store tests check no signature, but a store reopened
// over an unsigned tail must close it before a batch of another policy version follows.
class FixedSigner final : public replication::Signer {
 public:
  std::string KeyId() override { return std::string(32, 'k'); }
  absl::StatusOr<std::string> Sign(std::string_view, std::string_view) override {
    return std::string(64, 's');
  }
};

class CompactionStoreTest : public ::testing::Test {
 protected:
  CompactionStoreTest() {
    for (Node* n : {&epci_, &viriat_, &bourg_}) {
      n->dir = MakeTempDir(absl::StrCat("compaction-", n->siren));
      absl::Status s = n->Open(clock_);
      EXPECT_TRUE(s.ok()) << s;
      Registry def;
      def.set_owner(kEpci);
      for (const char* w : {kEpci, kViriat, kBourgEnBresse}) {
        def.mutable_policy()->mutable_writers()->add_authorities(w);
      }
      auto* f = def.mutable_schema()->add_fields();
      f->set_name("nom");
      f->set_type(interco::v1::FIELD_TYPE_STRING);
      f = def.mutable_schema()->add_fields();
      f->set_name("tags");
      f->set_type(interco::v1::FIELD_TYPE_STRING_SET);
      EXPECT_TRUE(n->store->CreateRegistry(kLieux, def, n->admin()).ok()) << n->siren;
    }
  }

  void Name(Node& n, const std::string& id, const std::string& nom) {
    LocalWrite w;
    w.kind = LocalWrite::Kind::kUpdate;
    w.allow_missing = true;
    w.fields["nom"].set_string_value(nom);
    w.mask.push_back("nom");
    ASSERT_TRUE(n.store->Write(kLieux, id, w, n.admin()).ok()) << id;
  }
  void Tags(Node& n, const std::string& id, const std::vector<std::string>& tags) {
    LocalWrite w;
    w.kind = LocalWrite::Kind::kUpdate;
    w.allow_missing = true;
    for (const std::string& t : tags) w.fields["tags"].mutable_string_set_value()->add_values(t);
    w.mask.push_back("tags");
    ASSERT_TRUE(n.store->Write(kLieux, id, w, n.admin()).ok()) << id;
  }
  void Delete(Node& n, const std::string& id) {
    LocalWrite w;
    w.kind = LocalWrite::Kind::kDelete;
    ASSERT_TRUE(n.store->Write(kLieux, id, w, n.admin()).ok()) << id;
  }

  absl::Status CarryAll(Node& from, Node& to) {
    return testing::CarryAllBatches(*from.store, *to.store, kLieux).status();
  }

  // Sequence numbers held per origin epoch.
  std::map<OriginKey, uint64_t> Held(Node& n) {
    std::map<OriginKey, uint64_t> out;
    absl::StatusOr<replication::VersionVector> held = n.store->Position(kLieux);
    EXPECT_TRUE(held.ok()) << held.status();
    if (!held.ok()) return out;
    for (const auto& [key, pos] : *held) out[key] = pos.seq;
    return out;
  }

  // The owner's collection of everything it holds, with the journals' cut at the clock's
  // now; then waits (bounded) for the compaction it starts to have gone through the log.
  void CollectAll(uint64_t compaction_changes = 1) {
    const replication::VersionVector all = *epci_.store->Position(kLieux);
    replication::CollectionPlan plan{all, all, epci_.store->Members(kLieux)};
    plan.journal_before = replication::HybridLogicalClock::Pack(
        static_cast<uint64_t>(clock_.NowMillis()), 0);
    plan.compaction_changes = compaction_changes;
    absl::StatusOr<bool> collected = epci_.store->Collect(kLieux, plan);
    ASSERT_TRUE(collected.ok()) << collected.status();
    ASSERT_TRUE(*collected);
  }

  // Hollow batches in n's log, per origin; waits (bounded) for at least `at_least`.
  size_t Hollow(Node& n, size_t at_least = 0) {
    for (int tries = 0;; ++tries) {
      size_t hollow = 0;
      for (const auto& [key, seq] : Held(n)) {
        absl::StatusOr<std::vector<Batch>> batches = n.store->ReadBatches(kLieux, key, 0, 10000);
        EXPECT_TRUE(batches.ok()) << batches.status();
        if (!batches.ok()) return 0;
        for (const Batch& b : *batches) hollow += b.hollow();
      }
      if (hollow >= at_least || tries == 1000) return hollow;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  // Where a log entry starts (a skip: its header's first batch).
  static uint64_t FirstSeq(const Batch& b) {
    interco::replication::v1::BatchHeader h;
    h.ParseFromString(b.header());
    return h.first_seq();
  }

  // Runs `write` on the EPCI (its store has a signer) and waits (bounded) until its log's
  // tail is signed: one signed run per write, as an idle origin signs them.
  void WrittenSigned(const std::function<void()>& write) {
    write();
    const OriginKey epci{epci_.store->origin(), 1};
    for (int tries = 0; tries < 5000; ++tries) {
      const std::vector<Batch> log = *epci_.store->ReadBatches(kLieux, epci, 0, 1000);
      if (!log.empty() && !log.back().signature().empty()) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ADD_FAILURE() << "the tail was not signed";
  }

  // On the EPCI (its store has a signer): `renames` names of the piscine, then the
  // stade's, each a signed run. Returns its log, and in `first_rename` the index of the
  // piscine's first rename (the batch after its create).
  std::vector<Batch> RenamesThenStade(size_t renames, size_t& first_rename) {
    for (size_t i = 0; i < renames; ++i) {
      WrittenSigned([&] { Name(epci_, "piscine", absl::StrCat("Piscine ", i)); });
    }
    WrittenSigned([&] { Name(epci_, "stade", "Stade"); });
    const OriginKey epci{epci_.store->origin(), 1};
    std::vector<Batch> whole = *epci_.store->ReadBatches(kLieux, epci, 0, 1000);
    first_rename = 0;
    while (first_rename < whole.size() && whole[first_rename].changes_size() == 0) {
      ++first_rename;  // the policy
    }
    ++first_rename;  // the create
    return whole;
  }

  // The EPCI's log entries folded into skips so far; waits (bounded) for `at_least`.
  uint64_t Folded(uint64_t at_least) {
    for (int tries = 0; tries < 1000; ++tries) {
      if (epci_.store->CollectedOf(kLieux)->folded_batches >= at_least) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return epci_.store->CollectedOf(kLieux)->folded_batches;
  }

  std::map<std::string, std::string> States(Node& n) {
    std::map<std::string, std::string> out;
    for (const char* id : {"piscine", "stade", "mairie"}) {
      auto s = n.store->StoredState(kLieux, id);
      EXPECT_TRUE(s.ok()) << s.status();
      out[id] = s.ok() && s->has_value() ? (*s)->SerializeAsString() : "(none)";
    }
    return out;
  }

  FakeClock clock_;
  Node epci_{kEpci, "", nullptr};
  Node viriat_{kViriat, "", nullptr};
  Node bourg_{kBourgEnBresse, "", nullptr};
};

TEST_F(CompactionStoreTest, SupersededBatchesBecomeHollowAndANewStoreCatchesUpFromThem) {
  // One batch per write: a rename replaced by a later one, a record deleted (and then
  // collected), a set element removed (the remove stays, as the add of its kept element).
  Name(epci_, "piscine", "Piscine");
  Name(epci_, "piscine", "Piscine municipale");     // superseded by the next rename
  Name(epci_, "stade", "Stade");                     // its record is collected
  Delete(epci_, "stade");                            // kept: its record is collected
  Tags(epci_, "piscine", {"bassin", "sauna"});       // kept: "bassin" stays
  Tags(epci_, "piscine", {"bassin"});                // kept: a remove
  Name(viriat_, "mairie", "Mairie de Viriat");       // kept: the record's create
  Name(viriat_, "mairie", "Mairie");                 // kept: the current name
  ASSERT_TRUE(CarryAll(viriat_, epci_).ok());
  Name(epci_, "piscine", "Centre aquatique");
  ASSERT_TRUE(CarryAll(epci_, viriat_).ok());
  clock_.Advance(1000);

  CollectAll();
  // Épci's second write (its first rename) and third (the create of the collected stade).
  EXPECT_EQ(Hollow(epci_, 2), 2u);
  EXPECT_EQ(epci_.store->CollectedOf(kLieux)->hollowed_batches, 2u);
  EXPECT_GT(epci_.store->CollectedOf(kLieux)->hollowed_bytes, 0u);
  EXPECT_EQ(States(epci_).at("stade"), "(none)") << "the deleted record was collected";
  absl::StatusOr<interco::v1::Record> piscine = epci_.store->GetRecord(kLieux, "piscine");
  ASSERT_TRUE(piscine.ok()) << piscine.status();
  EXPECT_EQ(piscine->fields().at("nom").string_value(), "Centre aquatique");
  EXPECT_THAT(piscine->fields().at("tags").string_set_value().values(),
              ::testing::ElementsAre("bassin"));
  // Viriat compacts its copy of the same log when the collection reaches it.
  ASSERT_TRUE(CarryAll(epci_, viriat_).ok());
  EXPECT_EQ(Hollow(viriat_, 2), 2u);
  EXPECT_EQ(States(viriat_), States(epci_));

  // Bourg, new, catches up from Épci's log: hollow batches move its position on, and it
  // ends with the same records.
  ASSERT_TRUE(CarryAll(epci_, bourg_).ok());
  EXPECT_EQ(Held(bourg_), Held(epci_));
  EXPECT_EQ(States(bourg_), States(epci_));
  EXPECT_EQ(Hollow(bourg_), 2u) << "hollow batches are kept hollow where they arrive";
  // The same changes, received in other orders or hollow: the same digest (what a
  // divergence check compares).
  node::Sha256Hasher hasher;
  const replication::StateDigest ours = *epci_.store->Digest(kLieux);
  for (Node* n : {&viriat_, &bourg_}) {
    const replication::StateDigest theirs = *n->store->Digest(kLieux);
    EXPECT_EQ(replication::PositionDigest(theirs.position, hasher),
              replication::PositionDigest(ours.position, hasher))
        << n->siren;
    EXPECT_EQ(theirs.live_sum, ours.live_sum) << n->siren;
    EXPECT_EQ(theirs.live_records, 2u) << n->siren;
  }
  for (Node* n : {&epci_, &viriat_, &bourg_}) {
    EXPECT_THAT(*n->store->CheckConsistency(), ::testing::StartsWith("ok: 1 registries, 2 records"))
        << n->siren;
  }
}

TEST_F(CompactionStoreTest, NothingWithinTheJournalRetentionOrSupersededBeyondTheFrontierGoes) {
  Name(epci_, "piscine", "Piscine");
  Name(epci_, "piscine", "Piscine municipale");
  Name(epci_, "piscine", "Centre aquatique");
  // The journals' cut at the clock's now, which has not moved past the writes' stamps.
  CollectAll();
  EXPECT_EQ(Hollow(epci_), 0u);
  // Superseded by a rename the frontier does not hold: it may still be refused, and the
  // renames before it would then count again.
  clock_.Advance(1000);
  Name(epci_, "piscine", "Piscine intercommunale");
  replication::VersionVector frontier = *epci_.store->Position(kLieux);
  frontier.begin()->second.seq -= 1;
  clock_.Advance(1000);
  replication::CollectionPlan plan{frontier, frontier, epci_.store->Members(kLieux)};
  plan.journal_before = replication::HybridLogicalClock::Pack(
      static_cast<uint64_t>(clock_.NowMillis()), 0);
  plan.compaction_changes = 1;
  ASSERT_TRUE(*epci_.store->Collect(kLieux, plan));
  Name(epci_, "mairie", "Mairie");  // a write after the pass: the pass is done
  EXPECT_EQ(Hollow(epci_), 0u);
  // Once it is under the frontier, the two renames before it go (not the create).
  clock_.Advance(1000);
  CollectAll();
  EXPECT_EQ(Hollow(epci_, 2), 2u);
  EXPECT_THAT(*epci_.store->CheckConsistency(), ::testing::StartsWith("ok: 1 registries, 2 records"));
}

TEST_F(CompactionStoreTest, TheOwnerDoesNotCollectForCompactionAloneBeforeEnoughChanges) {
  Name(epci_, "piscine", "Piscine");
  Name(epci_, "piscine", "Piscine municipale");
  Name(epci_, "piscine", "Centre aquatique");
  clock_.Advance(1000);
  const replication::VersionVector all = *epci_.store->Position(kLieux);
  replication::CollectionPlan plan{all, all, epci_.store->Members(kLieux)};
  plan.journal_before = replication::HybridLogicalClock::Pack(
      static_cast<uint64_t>(clock_.NowMillis()), 0);
  plan.compaction_changes = 100;
  EXPECT_FALSE(*epci_.store->Collect(kLieux, plan)) << "three changes are not worth a collection";
  plan.compaction_changes = 0;
  EXPECT_FALSE(*epci_.store->Collect(kLieux, plan)) << "compaction is off";
  plan.compaction_changes = 3;
  EXPECT_TRUE(*epci_.store->Collect(kLieux, plan));
  EXPECT_EQ(Hollow(epci_, 1), 1u);
}

// The frontier of a collection names the last batch of each origin: once a quiet member's
// last batch is hollow, the next collection still finds its place and stamp.
TEST_F(CompactionStoreTest, CollectionsGoOnOnceAQuietMembersLastBatchIsHollow) {
  Name(epci_, "piscine", "Piscine");
  ASSERT_TRUE(CarryAll(epci_, viriat_).ok());
  Name(viriat_, "piscine", "Piscine de Viriat");  // Viriat's last write, superseded next
  ASSERT_TRUE(CarryAll(viriat_, epci_).ok());
  Name(epci_, "piscine", "Piscine municipale");
  clock_.Advance(1000);
  CollectAll();
  ASSERT_EQ(Hollow(epci_, 1), 1u);
  const OriginKey viriat{viriat_.store->origin(), 1};
  ASSERT_TRUE((*epci_.store->ReadBatches(kLieux, viriat, 0, 10)).back().hollow());
  // More writes of the owner only; Viriat stays quiet.
  for (int i = 0; i < 3; ++i) Name(epci_, "piscine", absl::StrCat("Centre aquatique ", i));
  clock_.Advance(1000);
  CollectAll();
  EXPECT_EQ(Hollow(epci_, 4), 4u) << "and the renames before the last, under the new frontier";
  EXPECT_THAT(*epci_.store->CheckConsistency(), ::testing::StartsWith("ok: 1 registries, 1 records"));
}

TEST_F(CompactionStoreTest, ALogLongerThanAPassIsCompactedInSeveralPasses) {
  const size_t renames = limits::kCompactionPassBatches + 100;
  for (size_t i = 0; i < renames; ++i) Name(epci_, "piscine", absl::StrCat("Piscine ", i));
  clock_.Advance(1000);
  CollectAll();
  // All but the create and the last rename.
  EXPECT_EQ(Hollow(epci_, renames - 2), renames - 2);
  EXPECT_EQ(epci_.store->CollectedOf(kLieux)->hollowed_batches, renames - 2);
  ASSERT_TRUE(CarryAll(epci_, bourg_).ok());
  EXPECT_EQ(States(bourg_), States(epci_));
  EXPECT_EQ(bourg_.store->GetRecord(kLieux, "piscine")->fields().at("nom").string_value(),
            absl::StrCat("Piscine ", renames - 1));
}

// A new store takes a stretch of hollow batches as one skip (Batch.skip_from, what the
// engine sends for such a stretch): it moves over the stretch, logs one entry for what
// the skip brought, serves it from any point of it, stays consistent across a reopen, and
// ends with the records of the store it came from. A store holding part of the stretch
// logs the skip from its position on.
TEST_F(CompactionStoreTest, ANewStoreTakesAStretchOfHollowBatchesAsOneSkip) {
  const size_t renames = 12;
  for (size_t i = 0; i < renames; ++i) Name(epci_, "piscine", absl::StrCat("Piscine ", i));
  Name(epci_, "stade", "Stade");
  clock_.Advance(1000);
  CollectAll();
  ASSERT_EQ(Hollow(epci_, renames - 2), renames - 2);
  const OriginKey epci{epci_.store->origin(), 1};
  const std::vector<Batch> log = *epci_.store->ReadBatches(kLieux, epci, 0, 1000);
  size_t h0 = 0;
  while (h0 < log.size() && !log[h0].hollow()) ++h0;
  size_t h1 = h0;
  while (h1 + 1 < log.size() && log[h1 + 1].hollow()) ++h1;
  ASSERT_EQ(h1 - h0 + 1, renames - 2);
  const uint64_t stretch_end = FirstSeq(log[h1]);  // one change per batch
  // These stores check no signature (the engine does): a skip is a signed batch.
  auto skip_from = [&](uint64_t from) {
    Batch skip = replication::Skip(log[h1], from);
    skip.set_signature(std::string(64, 's'));
    skip.set_signer(std::string(32, 'k'));
    return skip;
  };
  Sha256Hasher hasher;
  auto apply = [&](Node& n, const Batch& b) {
    absl::StatusOr<replication::DecodedBatch> d = replication::DecodeBatch(b, hasher);
    ASSERT_TRUE(d.ok()) << d.status();
    absl::Status s = n.store->ApplyRemoteBatch(kLieux, *d);
    ASSERT_TRUE(s.ok()) << s;
  };
  // The owner's other batches first (the registry's policy), then Bourg takes the
  // stretch as one skip.
  for (size_t i = 0; i < h0; ++i) apply(bourg_, log[i]);
  apply(bourg_, skip_from(FirstSeq(log[h0])));
  EXPECT_EQ(Held(bourg_)[epci], stretch_end);
  for (size_t i = h1 + 1; i < log.size(); ++i) apply(bourg_, log[i]);
  ASSERT_TRUE(CarryAll(epci_, bourg_).ok());  // the other origins, if any
  EXPECT_EQ(States(bourg_), States(epci_));
  const std::vector<Batch> logged = *bourg_.store->ReadBatches(kLieux, epci, 0, 1000);
  ASSERT_EQ(logged.size(), log.size() - (h1 - h0));
  EXPECT_EQ(logged[h0].skip_from(), FirstSeq(log[h0]));
  EXPECT_EQ(logged[h0].header(), log[h1].header());
  // Served from any point of the stretch.
  const std::vector<Batch> within =
      *bourg_.store->ReadBatches(kLieux, epci, FirstSeq(log[h0]) + 2, 1);
  ASSERT_EQ(within.size(), 1u);
  EXPECT_EQ(within[0].header(), log[h1].header());
  EXPECT_THAT(*bourg_.store->CheckConsistency(), ::testing::StartsWith("ok: 1 registries"));
  ASSERT_TRUE(bourg_.Open(clock_).ok());
  EXPECT_THAT(*bourg_.store->CheckConsistency(), ::testing::StartsWith("ok: 1 registries"));
  EXPECT_EQ(bourg_.store->Digest(kLieux)->live_sum, epci_.store->Digest(kLieux)->live_sum);
  // Viriat holds the stretch's first two batches: the skip brings the rest.
  for (size_t i = 0; i < h0 + 2; ++i) apply(viriat_, log[i]);
  apply(viriat_, skip_from(FirstSeq(log[h0])));
  EXPECT_EQ(Held(viriat_)[epci], stretch_end);
  const std::vector<Batch> viriat_log = *viriat_.store->ReadBatches(kLieux, epci, 0, 1000);
  ASSERT_EQ(viriat_log.size(), h0 + 3);
  EXPECT_EQ(viriat_log.back().skip_from(), FirstSeq(log[h0]) + 2);
  EXPECT_THAT(*viriat_.store->CheckConsistency(), ::testing::StartsWith("ok: 1 registries"));
  // A skip of batches held is refused as not the next one (the engine drops it first).
  const absl::StatusOr<replication::DecodedBatch> again =
      replication::DecodeBatch(skip_from(FirstSeq(log[h0])), hasher);
  EXPECT_EQ(viriat_.store->ApplyRemoteBatch(kLieux, *again).code(),
            absl::StatusCode::kFailedPrecondition);
}

// The store closes while its compactor is looking through a long log: it stops between
// two ops, nothing half-made is left, and the next collection after the store opens again
// finishes the job.
// A store whose batches are signed folds, after making them hollow, each stretch of its
// log's hollow batches that starts and ends with a run into one skip, in place: the log
// keeps one entry for it, stays consistent across a reopen, serves the stretch from any
// point of it, and a store fed from it ends with the same records. The next compaction
// extends the skip over batches made hollow after it.
TEST_F(CompactionStoreTest, HollowStretchesAreFoldedIntoSkipsInPlace) {
  FixedSigner signer;
  epci_.store->SetSigner(&signer);
  const OriginKey epci{epci_.store->origin(), 1};
  const size_t renames = 12;
  // The record's create stays; the renames after it but the last go hollow.
  size_t create = 0;
  const std::vector<Batch> whole = RenamesThenStade(renames, create);
  // Bourg holds the first renames before the compaction; Viriat the first one only, as
  // the start of a run broken off by a crash (unsigned, its proof to come with the rest).
  Sha256Hasher hasher;
  auto apply = [&](Node& n, const Batch& b) {
    absl::StatusOr<replication::DecodedBatch> d = replication::DecodeBatch(b, hasher);
    ASSERT_TRUE(d.ok()) << d.status();
    ASSERT_TRUE(n.store->ApplyRemoteBatch(kLieux, *d).ok());
  };
  for (size_t i = 0; i < create + 3; ++i) apply(bourg_, whole[i]);
  for (size_t i = 0; i < create; ++i) apply(viriat_, whole[i]);
  Batch broken = whole[create];
  broken.clear_signature();
  broken.clear_signer();
  broken.clear_signed_at_ms();
  apply(viriat_, broken);
  clock_.Advance(1000);
  CollectAll();
  // Renames 1 to 10: ten hollow batches, one entry.
  EXPECT_EQ(Folded(renames - 3), renames - 3);
  EXPECT_EQ(epci_.store->CollectedOf(kLieux)->hollowed_batches, renames - 2);
  EXPECT_GT(epci_.store->CollectedOf(kLieux)->folded_bytes, 0u);
  std::vector<Batch> log = *epci_.store->ReadBatches(kLieux, epci, 0, 1000);
  ASSERT_EQ(log.size(), whole.size() + 1 - (renames - 3));  // the collection came in
  const Batch& skip = log[create];
  EXPECT_EQ(skip.skip_from(), FirstSeq(whole[create]));
  EXPECT_EQ(skip.header(), whole[create + renames - 3].header());
  EXPECT_EQ(skip.signature(), whole[create + renames - 3].signature());
  EXPECT_TRUE(skip.hollow());
  EXPECT_EQ(log[create + 1].header(), whole[create + renames - 2].header()) << "the last rename";
  // Served from any point of the stretch.
  const std::vector<Batch> within =
      *epci_.store->ReadBatches(kLieux, epci, FirstSeq(whole[create]) + 4, 1);
  ASSERT_EQ(within.size(), 1u);
  EXPECT_EQ(within[0].header(), skip.header());
  EXPECT_THAT(*epci_.store->CheckConsistency(), ::testing::StartsWith("ok: 1 registries, 2 records"));

  // Stores that held part of the stretch catch up from the folded log. Viriat's
  // unsigned rename has no proof left anywhere: the skip, from its own start, takes its
  // place.
  apply(viriat_, skip);
  const std::vector<Batch> viriat_log = *viriat_.store->ReadBatches(kLieux, epci, 0, 1000);
  ASSERT_EQ(viriat_log.size(), create + 1);
  EXPECT_EQ(viriat_log[create].skip_from(), FirstSeq(whole[create]));
  EXPECT_EQ(viriat_log[create].header(), skip.header());
  {
    // Audited as the batches it brought, from where it was logged.
    auto audit = viriat_.store->ListAudit(RecordStore::AuditChainOf(kLieux), 1, "");
    ASSERT_TRUE(audit.ok()) << audit.status();
    ASSERT_EQ(audit->events.size(), 1u);
    const interco::v1::AuditEvent& e = audit->events[0].event();
    EXPECT_EQ(e.action(), interco::v1::AuditEvent::APPLY_BATCH);
    EXPECT_TRUE(e.accepted());
    EXPECT_EQ(e.first_seq(), FirstSeq(whole[create]));
    EXPECT_EQ(e.count(), renames - 2);  // renames 1 to 10
  }
  EXPECT_THAT(*viriat_.store->CheckConsistency(), ::testing::StartsWith("ok: 1 registries"));
  ASSERT_TRUE(CarryAll(epci_, viriat_).ok());
  ASSERT_TRUE(CarryAll(epci_, bourg_).ok());
  for (Node* n : {&viriat_, &bourg_}) {
    EXPECT_EQ(Held(*n), Held(epci_)) << n->siren;
    EXPECT_EQ(States(*n), States(epci_)) << n->siren;
    EXPECT_THAT(*n->store->CheckConsistency(), ::testing::StartsWith("ok: 1 registries, 2 records"))
        << n->siren;
  }

  // More renames, another collection: the last rename of before goes hollow and the skip
  // now stands for it too; the new renames are a stretch of their own (the stade's
  // batch and the collection's stay between).
  for (size_t i = 0; i < 4; ++i) {
    WrittenSigned([&] { Name(epci_, "piscine", absl::StrCat("Piscine bis ", i)); });
  }
  clock_.Advance(1000);
  CollectAll();
  EXPECT_EQ(Folded(renames - 3 + 1 + 2), renames - 3 + 1 + 2);
  log = *epci_.store->ReadBatches(kLieux, epci, 0, 1000);
  EXPECT_EQ(log[create].skip_from(), FirstSeq(whole[create]));
  EXPECT_EQ(log[create].header(), whole[create + renames - 2].header());
  EXPECT_EQ(log[create + 1].header(), whole[create + renames - 1].header()) << "the stade";
  size_t skips = 0;
  for (const Batch& b : log) skips += b.skip_from() > 0;
  EXPECT_EQ(skips, 2u);
  ASSERT_TRUE(epci_.Open(clock_).ok());
  epci_.store->SetSigner(&signer);
  EXPECT_THAT(*epci_.store->CheckConsistency(), ::testing::StartsWith("ok: 1 registries, 2 records"));
  ASSERT_TRUE(CarryAll(epci_, viriat_).ok());
  EXPECT_EQ(States(viriat_), States(epci_));
  EXPECT_EQ(viriat_.store->Digest(kLieux)->live_sum, epci_.store->Digest(kLieux)->live_sum);
  epci_.store.reset();  // before the signer goes
}

TEST_F(CompactionStoreTest, AStretchLongerThanTheFoldWindowBecomesSkipsThatTheNextCompactionJoins) {
  // A window of 4 entries: the ten hollow renames are read in windows cut at 4, 8 and at
  // the kept rename, and handed over at most 4 entries per commit group.
  epci_.fold_window_entries = 4;
  ASSERT_TRUE(epci_.Open(clock_).ok());
  FixedSigner signer;
  epci_.store->SetSigner(&signer);
  const OriginKey epci{epci_.store->origin(), 1};
  const size_t renames = 12;
  // Renames 1 to 10 go hollow: whole[create] to whole[create + 9].
  size_t create = 0;
  const std::vector<Batch> whole = RenamesThenStade(renames, create);
  auto skips_of = [&](const std::vector<Batch>& log) {
    std::vector<std::pair<uint64_t, std::string>> out;  // (skip_from, header)
    for (const Batch& b : log) {
      if (b.skip_from() > 0) out.emplace_back(b.skip_from(), b.header());
    }
    return out;
  };
  clock_.Advance(1000);
  CollectAll();
  EXPECT_EQ(Folded(7), 7u);
  EXPECT_EQ(epci_.store->CollectedOf(kLieux)->hollowed_batches, renames - 2);
  std::vector<Batch> log = *epci_.store->ReadBatches(kLieux, epci, 0, 1000);
  const uint64_t from = FirstSeq(whole[create]);
  EXPECT_EQ(skips_of(log), (std::vector<std::pair<uint64_t, std::string>>{
                               {from, whole[create + 3].header()},
                               {from + 4, whole[create + 7].header()},
                               {from + 8, whole[create + 9].header()}}));
  ASSERT_EQ(log.size(), whole.size() + 1 - 7);  // the collection came in
  EXPECT_EQ(log[create + 3].header(), whole[create + 10].header()) << "the last rename";
  EXPECT_THAT(*epci_.store->CheckConsistency(), ::testing::StartsWith("ok: 1 registries, 2 records"));
  // A store catching up takes the three skips one after the other.
  ASSERT_TRUE(CarryAll(epci_, viriat_).ok());
  EXPECT_EQ(Held(viriat_), Held(epci_));
  EXPECT_EQ(States(viriat_), States(epci_));

  // The next compaction joins the skips, with the last rename of before now hollow, into
  // one (the stade's batch and the collection's stay after it; the new renames but the
  // last are a stretch of their own).
  for (size_t i = 0; i < 4; ++i) {
    WrittenSigned([&] { Name(epci_, "piscine", absl::StrCat("Piscine bis ", i)); });
  }
  clock_.Advance(1000);
  CollectAll();
  EXPECT_EQ(Folded(7 + 3 + 2), 7u + 3 + 2);
  log = *epci_.store->ReadBatches(kLieux, epci, 0, 1000);
  const auto skips = skips_of(log);
  ASSERT_EQ(skips.size(), 2u);
  EXPECT_EQ(skips[0], std::make_pair(from, whole[create + 10].header()));
  EXPECT_EQ(log[create + 1].header(), whole[create + 11].header()) << "the stade";
  EXPECT_THAT(*epci_.store->CheckConsistency(), ::testing::StartsWith("ok: 1 registries, 2 records"));
  ASSERT_TRUE(CarryAll(epci_, viriat_).ok());
  EXPECT_EQ(States(viriat_), States(epci_));
  EXPECT_EQ(viriat_.store->Digest(kLieux)->live_sum, epci_.store->Digest(kLieux)->live_sum);
  epci_.store.reset();  // before the signer goes
}

TEST_F(CompactionStoreTest, AStoreClosingDuringACompactionStopsItCleanly) {
  const size_t renames = 4 * limits::kCompactionPassBatches;
  for (size_t i = 0; i < renames; ++i) Name(epci_, "piscine", absl::StrCat("Piscine ", i));
  clock_.Advance(1000);
  CollectAll();
  epci_.store.reset();  // at once: the compactor is under way
  ASSERT_TRUE(epci_.Open(clock_).ok());
  FixedSigner signer;
  epci_.store->SetSigner(&signer);
  // However far it got (a whole number of ops: each commits whole or not at all).
  EXPECT_LE(epci_.store->CollectedOf(kLieux)->hollowed_batches, renames - 1);
  EXPECT_THAT(*epci_.store->CheckConsistency(), ::testing::StartsWith("ok: 1 registries, 1 records"));
  Name(epci_, "piscine", "Centre aquatique");
  clock_.Advance(1000);
  CollectAll();
  // Every batch but the first (the create) and the last rename.
  EXPECT_EQ(Hollow(epci_, renames - 1), renames - 1);
  EXPECT_EQ(epci_.store->CollectedOf(kLieux)->hollowed_batches, renames - 1);
  EXPECT_THAT(*epci_.store->CheckConsistency(), ::testing::StartsWith("ok: 1 registries, 1 records"));
  epci_.store.reset();  // before the signer goes
}

}  // namespace
}  // namespace interco::node
