// The conflict journal in a real store: remote batches of three origins racing on the same
// fields, applied in different orders on two nodes; ListConflicts paging; the owner's
// journal retention, applied alike whether a loser arrives before or after it; and a remote
// batch that fails half-way (a corrupt journal) leaving nothing of itself behind.
#include <atomic>
#include <thread>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "node/crypto/sha256.h"
#include "node/storage/keys.h"
#include "node/storage/record_store.h"
#include "node/storage/rocksdb_store.h"
#include "replication/change_log.h"
#include "tests/testing/test_env.h"

namespace interco::node {
namespace {

using ::interco::testing::FakeClock;
using ::interco::testing::MakeTempDir;
using ::interco::testing::Named;
using replication::LocalWrite;
using replication::OriginKey;
using replication::Principal;

constexpr char kRegistry[] = "services";
// CA du Bassin de Bourg-en-Bresse, two member communes, and Lyon (the receiver).
constexpr char kEpci[] = "200071751";
constexpr char kBourg[] = "210100533";
constexpr char kViriat[] = "210104519";
constexpr char kLyon[] = "200046977";

using Node = testing::StoreNode;

class ConflictStoreTest : public ::testing::Test {
 protected:
  ConflictStoreTest() {
    nodes_.resize(4);
    const char* sirens[] = {kEpci, kBourg, kViriat, kLyon};
    for (size_t i = 0; i < nodes_.size(); ++i) {
      nodes_[i].siren = sirens[i];
      nodes_[i].dir = MakeTempDir(absl::StrCat("conflicts-", sirens[i]));
      Open(nodes_[i]);
      interco::v1::Registry def;
      def.set_owner(kEpci);
      def.mutable_policy()->mutable_writers()->set_all_authorities(true);
      auto* f = def.mutable_schema()->add_fields();
      f->set_name("nom");
      f->set_type(interco::v1::FIELD_TYPE_STRING);
      EXPECT_TRUE(nodes_[i].store->CreateRegistry(kRegistry, def, Admin(nodes_[i])).ok());
    }
  }

  static Principal Admin(const Node& n) { return Principal{"interco.test", n.siren, "admin"}; }

  void Open(Node& n) {
    absl::Status s = n.Open(clock_);
    ASSERT_TRUE(s.ok()) << s;
  }

  void Write(Node& n, const std::string& id, const std::string& nom) {
    clock_.Advance(10);
    ASSERT_TRUE(n.store->Write(kRegistry, id, Named(nom), Admin(n)).ok());
  }

  // Applies what `from` originated and `to` lacks.
  absl::Status Carry(Node& from, Node& to) {
    return testing::CarryBatches(*from.store, *to.store, kRegistry);
  }

  // Every conflict a node lists, page by page: (record, field, losing origin, value).
  std::set<std::tuple<std::string, std::string, std::string, std::string>> Listed(
      Node& n, int32_t page_size, int* pages = nullptr) {
    std::set<std::tuple<std::string, std::string, std::string, std::string>> out;
    std::string token;
    int count = 0;
    do {
      auto page = n.store->ListConflicts(kRegistry, "", page_size, token);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok()) break;
      ++count;
      for (const auto& c : page->conflicts) {
        out.emplace(c.record(), c.field(), c.losing_origin(), c.losing_value().string_value());
      }
      token = page->next_page_token;
    } while (!token.empty());
    if (pages != nullptr) *pages = count;
    return out;
  }

  FakeClock clock_;
  Sha256Hasher hasher_;
  std::vector<Node> nodes_;
};

TEST_F(ConflictStoreTest, RacesAreJournaledAlikeInAnyOrderAndListedByRecord) {
  Node& epci = nodes_[0];
  Node& bourg = nodes_[1];
  Node& viriat = nodes_[2];
  Node& lyon = nodes_[3];
  // Three origins rename r1 without seeing each other; two rename r2; r3 is written once.
  Write(epci, "r1", "Mairie (EPCI)");
  Write(bourg, "r1", "Mairie (Bourg)");
  Write(viriat, "r1", "Mairie (Viriat)");  // the latest: wins
  Write(bourg, "r2", "École (Bourg)");
  Write(viriat, "r2", "École (Viriat)");
  Write(epci, "r3", "Stade");
  // Lyon gets them origin by origin; the EPCI in the other order.
  for (Node* from : {&viriat, &epci, &bourg}) ASSERT_TRUE(Carry(*from, lyon).ok());
  for (Node* from : {&bourg, &viriat}) ASSERT_TRUE(Carry(*from, epci).ok());

  const std::set<std::tuple<std::string, std::string, std::string, std::string>> expected = {
      {"registries/services/records/r1", "nom", kEpci, "Mairie (EPCI)"},
      {"registries/services/records/r1", "nom", kBourg, "Mairie (Bourg)"},
      {"registries/services/records/r2", "nom", kBourg, "École (Bourg)"},
  };
  int pages = 0;
  EXPECT_EQ(Listed(lyon, 100), expected);
  EXPECT_EQ(Listed(epci, 100), expected);
  // A page holds whole records: r1's two entries, then r2's one.
  EXPECT_EQ(Listed(lyon, 1, &pages), expected);
  EXPECT_EQ(pages, 2);
  EXPECT_EQ(lyon.store->GetRegistry(kRegistry)->conflict_count(), 3);
  auto one = lyon.store->ListConflicts(kRegistry, "r2", 0, "");
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->conflicts.size(), 1u);
  EXPECT_EQ(one->conflicts[0].winning_origin(), kViriat);
  EXPECT_TRUE(lyon.store->ListConflicts(kRegistry, "r3", 0, "")->conflicts.empty());
  // Bad pages, and a token of another query.
  auto first = lyon.store->ListConflicts(kRegistry, "", 1, "");
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(lyon.store->ListConflicts(kRegistry, "r2", 1, first->next_page_token).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(lyon.store->ListConflicts(kRegistry, "", -1, "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(lyon.store->ListConflicts(kRegistry, "", 1, "garbage").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(lyon.store->ListConflicts("nope", "", 1, "").status().code(),
            absl::StatusCode::kNotFound);
  auto check = lyon.store->CheckConsistency();
  EXPECT_TRUE(check.ok()) << check.status();

  // A knowing rename on Lyon, once carried, adds nothing; a delete empties the record's
  // journal.
  Write(lyon, "r1", "Mairie");
  ASSERT_TRUE(Carry(lyon, epci).ok());
  EXPECT_EQ(Listed(epci, 100), expected);
  clock_.Advance(10);
  LocalWrite del;
  del.kind = LocalWrite::Kind::kDelete;
  ASSERT_TRUE(lyon.store->Write(kRegistry, "r1", del, Admin(lyon)).ok());
  ASSERT_TRUE(Carry(lyon, epci).ok());
  for (Node* n : {&lyon, &epci}) {
    EXPECT_EQ(Listed(*n, 100).size(), 1u);
    EXPECT_EQ(n->store->GetRegistry(kRegistry)->conflict_count(), 1);
    auto c = n->store->CheckConsistency();
    EXPECT_TRUE(c.ok()) << c.status();
  }
}

// The EPCI owns the registry: its collection names the journals' cut, and every node
// ends with the same losers, the older ones gone, whether a loser arrived before the cut
// (removed) or after it (never journaled), and across a restart.
TEST_F(ConflictStoreTest, TheOwnersRetentionCutsEveryJournalAlike) {
  Node& epci = nodes_[0];
  Node& bourg = nodes_[1];
  Node& viriat = nodes_[2];
  Node& lyon = nodes_[3];
  Write(epci, "r1", "Mairie (EPCI)");
  Write(bourg, "r1", "Mairie (Bourg)");
  Write(viriat, "r1", "Mairie (Viriat)");
  const uint64_t cut = replication::HybridLogicalClock::Pack(clock_.NowMillis() + 1, 0);
  Write(bourg, "r2", "École (Bourg)");
  Write(viriat, "r2", "École (Viriat)");
  for (Node* from : {&bourg, &viriat}) ASSERT_TRUE(Carry(*from, epci).ok());
  // Lyon has not heard from Bourg yet.
  for (Node* from : {&viriat, &epci}) ASSERT_TRUE(Carry(*from, lyon).ok());
  ASSERT_EQ(Listed(lyon, 100).size(), 1u);  // r1 of the EPCI
  ASSERT_EQ(Listed(epci, 100).size(), 3u);

  // Only the owner collects; nothing is due below a cut older than every entry.
  const replication::CollectionPlan too_early{{}, {}, epci.store->Members(kRegistry), 1};
  EXPECT_FALSE(*lyon.store->Collect(kRegistry, {{}, {}, {}, cut}));
  EXPECT_FALSE(*epci.store->Collect(kRegistry, too_early));
  const replication::VersionVector before = *epci.store->Position(kRegistry);
  auto collected = epci.store->Collect(kRegistry, {{}, {}, epci.store->Members(kRegistry), cut});
  ASSERT_TRUE(collected.ok()) << collected.status();
  ASSERT_TRUE(*collected);
  // A change of the owner's chain (the registry is open to all: its tombstones are never
  // collected, its journals are).
  EXPECT_EQ(replication::Missing(*epci.store->Position(kRegistry), before), 1u);
  const std::set<std::tuple<std::string, std::string, std::string, std::string>> kept = {
      {"registries/services/records/r2", "nom", kBourg, "École (Bourg)"}};
  EXPECT_EQ(Listed(epci, 100), kept);
  EXPECT_EQ(epci.store->GetRegistry(kRegistry)->conflict_count(), 1);
  EXPECT_EQ(epci.store->CollectedOf(kRegistry)->conflicts, 2u);
  EXPECT_FALSE(*epci.store->Collect(kRegistry, {{}, {}, epci.store->Members(kRegistry), cut}));

  // Lyon applies the collection (removing r1 of the EPCI), restarts, then gets Bourg's
  // writes: r1 of Bourg, below the cut, is not journaled; r2 of Bourg is.
  ASSERT_TRUE(Carry(epci, lyon).ok());
  EXPECT_TRUE(Listed(lyon, 100).empty());
  EXPECT_EQ(lyon.store->CollectedOf(kRegistry)->conflicts, 1u);
  Open(lyon);
  ASSERT_TRUE(Carry(bourg, lyon).ok());
  EXPECT_EQ(Listed(lyon, 100), kept);
  EXPECT_EQ(lyon.store->GetRegistry(kRegistry)->conflict_count(), 1);
  // Viriat applies it last, holding everything: the same again.
  for (Node* from : {&bourg, &epci}) ASSERT_TRUE(Carry(*from, viriat).ok());
  EXPECT_EQ(Listed(viriat, 100), kept);
  EXPECT_EQ(viriat.store->CollectedOf(kRegistry)->conflicts, 2u);
  for (Node* n : {&epci, &lyon, &viriat}) {
    absl::StatusOr<std::string> check = n->store->CheckConsistency();
    EXPECT_TRUE(check.ok()) << n->siren << ": " << check.status();
  }
}

// A delete and the collection that removes its record, committed in one group where the
// record's journal was committed before: the journal goes with the record, whatever the
// collection's retention cut says.
TEST_F(ConflictStoreTest, ACollectionInTheGroupOfTheDeleteLeavesNoJournalBehind) {
  constexpr char kListed[] = "listed";
  Node& epci = nodes_[0];
  Node& bourg = nodes_[1];
  Node& viriat = nodes_[2];
  Node& lyon = nodes_[3];
  for (Node& n : nodes_) {
    interco::v1::Registry def;
    def.set_owner(kEpci);
    for (const char* w : {kEpci, kBourg, kViriat}) {
      def.mutable_policy()->mutable_writers()->add_authorities(w);
    }
    auto* f = def.mutable_schema()->add_fields();
    f->set_name("nom");
    f->set_type(interco::v1::FIELD_TYPE_STRING);
    ASSERT_TRUE(n.store->CreateRegistry(kListed, def, Admin(n)).ok());
  }
  auto write = [&](Node& n, const char* id, LocalWrite w) {
    clock_.Advance(10);
    ASSERT_TRUE(n.store->Write(kListed, id, std::move(w), Admin(n)).ok());
  };
  // Two races, Bourg's writes lost; r1 is then deleted, r2 keeps its journal (so that
  // the EPCI's collection carries a cut).
  write(bourg, "r1", Named("Mairie (Bourg)"));
  write(bourg, "r2", Named("École (Bourg)"));
  write(viriat, "r1", Named("Mairie (Viriat)"));
  write(viriat, "r2", Named("École (Viriat)"));
  const uint64_t cut = replication::HybridLogicalClock::Pack(clock_.NowMillis() + 1, 0);
  LocalWrite del;
  del.kind = LocalWrite::Kind::kDelete;
  write(viriat, "r1", del);
  // Everything `from` originated, decoded.
  auto originated = [&](Node& from) {
    const OriginKey key{from.store->origin(), from.store->epoch()};
    std::vector<replication::DecodedBatch> out;
    auto batches = from.store->ReadBatches(kListed, key, 0, 10);
    EXPECT_TRUE(batches.ok()) << batches.status();
    if (!batches.ok()) return out;
    for (const auto& b : *batches) out.push_back(*replication::DecodeBatch(b, hasher_));
    return out;
  };
  // The EPCI holds everything and collects the deleted record, with a retention cut.
  for (Node* from : {&bourg, &viriat}) {
    for (const auto& b : originated(*from)) {
      ASSERT_TRUE(epci.store->ApplyRemoteBatch(kListed, b).ok());
    }
  }
  const replication::VersionVector all = *epci.store->Position(kListed);
  ASSERT_TRUE(*epci.store->Collect(kListed, {all, all, epci.store->Members(kListed), cut}));
  ASSERT_EQ(epci.store->CollectedOf(kListed)->records, 1u);
  ASSERT_EQ(epci.store->CollectedOf(kListed)->conflicts, 1u);
  // Lyon journals Bourg's loss, then gets Viriat's delete and the EPCI's collection, queued
  // behind local writes so that they commit in one group.
  for (const auto& b : originated(bourg)) {
    ASSERT_TRUE(lyon.store->ApplyRemoteBatch(kListed, b).ok());
  }
  std::vector<replication::DecodedBatch> from_viriat = originated(viriat);
  ASSERT_EQ(from_viriat.size(), 3u);
  ASSERT_TRUE(lyon.store->ApplyRemoteBatch(kListed, from_viriat[0]).ok());
  ASSERT_TRUE(lyon.store->ApplyRemoteBatch(kListed, from_viriat[1]).ok());
  ASSERT_EQ(lyon.store->GetRegistry(kListed)->conflict_count(), 2);
  std::vector<replication::DecodedBatch> from_epci = originated(epci);
  ASSERT_EQ(from_epci.size(), 1u);
  // Several groups of local writes: the two batches queue up behind them, one after the
  // other, and the committer takes both at once.
  std::atomic<int> pending{2000};
  for (int i = 0; i < 2000; ++i) {
    lyon.store->WriteAsync(kRegistry, absl::StrCat("w", i), Named("x"), Admin(lyon),
                           [&](absl::StatusOr<interco::v1::Record>) { pending--; });
  }
  absl::Status deleted, collected;
  std::thread d([&] { deleted = lyon.store->ApplyRemoteBatch(kListed, from_viriat[2]); });
  std::this_thread::sleep_for(std::chrono::microseconds(500));
  std::thread c([&] {
    // Queued before the delete on a busy machine, it waits for it (as the engine would).
    for (int i = 0; i < 1000; ++i) {
      collected = lyon.store->ApplyRemoteBatch(kListed, from_epci[0]);
      if (collected.code() != absl::StatusCode::kUnavailable) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  d.join();
  c.join();
  while (pending > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_TRUE(deleted.ok()) << deleted;
  ASSERT_TRUE(collected.ok()) << collected;
  EXPECT_EQ(lyon.store->CollectedOf(kListed)->records, 1u);
  EXPECT_EQ(lyon.store->CollectedOf(kListed)->conflicts, 1u);  // r2's
  EXPECT_EQ(lyon.store->GetRegistry(kListed)->conflict_count(), 0);
  EXPECT_TRUE(lyon.store->ListConflicts(kListed, "", 100, "")->conflicts.empty());
  absl::StatusOr<std::string> check = lyon.store->CheckConsistency();
  EXPECT_TRUE(check.ok()) << check.status();
}

TEST_F(ConflictStoreTest, ABatchFailingHalfWayLeavesNothingOfItself) {
  Node& bourg = nodes_[1];
  Node& viriat = nodes_[2];
  Node& lyon = nodes_[3];
  Write(bourg, "r1", "Mairie (Bourg)");
  Write(bourg, "r2", "École (Bourg)");
  Write(viriat, "r2", "École (Viriat)");
  ASSERT_TRUE(Carry(viriat, lyon).ok());
  ASSERT_TRUE(Carry(bourg, lyon).ok());
  ASSERT_EQ(lyon.store->GetRegistry(kRegistry)->conflict_count(), 1);
  // Bourg renames both in one batch, built from two of its writes.
  Write(bourg, "r1", "Mairie de Bourg");
  Write(bourg, "r2", "École de Bourg");
  const OriginKey key{bourg.store->origin(), bourg.store->epoch()};
  auto written = *bourg.store->ReadBatches(kRegistry, key, 0, 10);
  ASSERT_EQ(written.size(), 4u);
  auto third = *replication::DecodeBatch(written[2], hasher_);
  auto fourth = *replication::DecodeBatch(written[3], hasher_);
  replication::BatchParams params;
  params.origin = key.origin;
  params.epoch = key.epoch;
  params.stream = kRegistry;
  params.first_seq = 3;
  params.prev_hash = hasher_.Sha256(written[1].header());
  params.max_hlc = fourth.header.max_hlc();
  auto both = replication::BuildBatch(
      params, {third.changes[0].SerializeAsString(), fourth.changes[0].SerializeAsString()},
      hasher_, nullptr, nullptr);
  ASSERT_TRUE(both.ok());
  // Lyon's journal of r2 is unreadable (a damaged disk).
  lyon.store.reset();
  {
    RocksDbOptions o;
    o.path = lyon.dir;
    auto db = RocksDbStore::Open(o);
    ASSERT_TRUE(db.ok()) << db.status();
    rocksdb::WriteBatch wb;
    const std::string k = keys::Record(kRegistry, "r2");
    wb.Put((*db)->handle(Cf::kConflicts), rocksdb::Slice(k.data(), k.size()), "\xff\xff\xff");
    ASSERT_TRUE((*db)->Write(wb, /*sync=*/true).ok());
  }
  Open(lyon);
  const absl::Status s =
      lyon.store->ApplyRemoteBatch(kRegistry, *replication::DecodeBatch(*both, hasher_));
  EXPECT_FALSE(s.ok());
  // Its first change (r1) was staged before the second failed: nothing of it committed.
  EXPECT_EQ(lyon.store->GetRecord(kRegistry, "r1")->fields().at("nom").string_value(),
            "Mairie (Bourg)");
  EXPECT_EQ((*lyon.store->Position(kRegistry))[key].seq, 2u);
  // The failure is audited (nothing of the group is lost silently).
  auto audit = lyon.store->ListAudit(RecordStore::AuditChainOf(kRegistry), 1, "");
  ASSERT_TRUE(audit.ok()) << audit.status();
  ASSERT_EQ(audit->events.size(), 1u);
  EXPECT_FALSE(audit->events[0].event().accepted());
  EXPECT_NE(audit->events[0].event().reason().find("conflict journal"), std::string::npos)
      << audit->events[0].event().ShortDebugString();
  // The node goes on: a local write commits.
  clock_.Advance(10);
  EXPECT_TRUE(lyon.store->Write(kRegistry, "r3", Named("Stade"), Admin(lyon)).ok());
}

}  // namespace
}  // namespace interco::node
