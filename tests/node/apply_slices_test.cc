// Remote batches merged in slices (RecordStore::StageRemoteChanges): local writes commit
// between the slices of a large batch, and a batch that fails half-way keeps the slices it
// committed, marked, until it comes again and is merged whole.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "node/crypto/sha256.h"
#include "node/storage/keys.h"
#include "node/storage/record_store.h"
#include "node/storage/rocksdb_store.h"
#include "replication/base/limits.h"
#include "replication/change_log.h"
#include "replication/repair.h"
#include "tests/testing/test_env.h"

namespace interco::node {
namespace {

using ::interco::testing::FakeClock;
using ::interco::testing::MakeTempDir;
using ::interco::testing::Named;
using replication::LocalWrite;
using replication::OriginKey;
using replication::v1::Change;

constexpr char kRegistry[] = "equipements";
constexpr char kBourg[] = "210100533";   // the origin of the large batches
constexpr char kLyon[] = "200046977";    // the receiver, writing locally meanwhile
constexpr char kViriat[] = "210104519";  // a receiver left alone, for comparison
// Changes per large batch: several slices, the last one short.
constexpr size_t kBatchChanges = 4 * limits::kApplySliceChanges + 17;

using Node = testing::StoreNode;

class ApplySlicesTest : public ::testing::Test {
 protected:
  ApplySlicesTest() {
    for (Node* n : {&bourg_, &lyon_, &viriat_}) {
      n->siren = n == &bourg_ ? kBourg : n == &lyon_ ? kLyon : kViriat;
      n->dir = MakeTempDir(absl::StrCat("slices-", n->siren));
      Open(*n);
      interco::v1::Registry def;
      def.set_owner(kBourg);
      def.mutable_policy()->mutable_writers()->set_all_authorities(true);
      auto* f = def.mutable_schema()->add_fields();
      f->set_name("nom");
      f->set_type(interco::v1::FIELD_TYPE_STRING);
      EXPECT_TRUE(n->store->CreateRegistry(kRegistry, def, n->admin()).ok());
    }
  }

  void Open(Node& n) {
    absl::Status s = n.Open(clock_);
    ASSERT_TRUE(s.ok()) << s;
  }

  // `count` large batches of Bourg's: its single writes of records b0, b1, ..., read back
  // from its log and chained again `kBatchChanges` changes to a batch (as a busy origin's
  // commit groups make them).
  std::vector<replication::DecodedBatch> LargeBatches(size_t count) {
    for (size_t i = 0; i < count * kBatchChanges; ++i) {
      clock_.Advance(1);
      EXPECT_TRUE(bourg_.store
                      ->Write(kRegistry, absl::StrCat("b", i), Named(absl::StrCat("Bourg ", i)),
                              bourg_.admin())
                      .ok());
    }
    const OriginKey key{bourg_.store->origin(), bourg_.store->epoch()};
    std::vector<std::string> changes;
    uint64_t after = 0;
    while (true) {
      auto written = bourg_.store->ReadBatches(kRegistry, key, after, 256);
      EXPECT_TRUE(written.ok()) << written.status();
      if (!written.ok() || written->empty()) break;
      for (const auto& b : *written) {
        auto decoded = replication::DecodeBatch(b, hasher_);
        EXPECT_TRUE(decoded.ok()) << decoded.status();
        for (const auto& c : decoded->changes) changes.push_back(c.SerializeAsString());
        after = decoded->header.first_seq() + decoded->header.count() - 1;
      }
    }
    EXPECT_EQ(changes.size(), count * kBatchChanges);
    std::vector<replication::DecodedBatch> out;
    std::string prev;
    for (size_t b = 0; b < count; ++b) {
      replication::BatchParams p;
      p.origin = key.origin;
      p.epoch = key.epoch;
      p.stream = kRegistry;
      p.first_seq = b * kBatchChanges + 1;
      p.prev_hash = prev;
      std::vector<std::string> part(changes.begin() + b * kBatchChanges,
                                    changes.begin() + (b + 1) * kBatchChanges);
      Change last;
      last.ParseFromString(part.back());
      p.max_hlc = replication::ChangeStamp(last);
      auto built = replication::BuildBatch(p, std::move(part), hasher_, nullptr, &prev);
      EXPECT_TRUE(built.ok()) << built.status();
      out.push_back(*replication::DecodeBatch(*built, hasher_));
    }
    return out;
  }

  // Every record of Bourg's is in `n` as Bourg has it.
  void ExpectBourgsRecords(Node& n, size_t count) {
    for (size_t i = 0; i < count; ++i) {
      auto r = n.store->GetRecord(kRegistry, absl::StrCat("b", i));
      ASSERT_TRUE(r.ok()) << "b" << i << ": " << r.status();
      EXPECT_EQ(r->fields().at("nom").string_value(), absl::StrCat("Bourg ", i));
    }
  }

  void ExpectConsistent(Node& n) {
    auto report = n.store->CheckConsistency();
    EXPECT_TRUE(report.ok()) << n.siren << ": " << report.status();
  }

  // With `n`'s store closed, `fn` on its RocksDB store, as a crash or a damaged disk
  // would have left it.
  static void WithRawStore(Node& n, const std::function<void(RocksDbStore&)>& fn) {
    n.store.reset();
    RocksDbOptions o;
    o.path = n.dir;
    auto db = RocksDbStore::Open(o);
    ASSERT_TRUE(db.ok()) << db.status();
    fn(**db);
  }

  // With `n`'s store closed, what a crash between two slices of `batch` leaves: a mark
  // (RegistryMeta.partial) of its first slice merged, under `header_hash`, and the record
  // `key` (a records-family key) at `state` if `key` is set. Then opens the store again.
  void MarkFirstSliceMerged(Node& n, const replication::DecodedBatch& batch,
                            const std::string& header_hash, const std::string& key = "",
                            const std::string& state = "") {
    WithRawStore(n, [&](RocksDbStore& db) {
      interco::internal::v1::RegistryMeta meta;
      ASSERT_TRUE(meta.ParseFromString(**db.Get(Cf::kRegistries, kRegistry)));
      interco::internal::v1::PartialBatch& m = *meta.add_partial();
      m.set_origin(batch.header.origin());
      m.set_epoch(batch.header.epoch());
      m.set_first_seq(batch.header.first_seq());
      m.set_header_hash(header_hash);
      m.set_merged(limits::kApplySliceChanges);
      rocksdb::WriteBatch wb;
      wb.Put(db.handle(Cf::kRegistries), kRegistry, meta.SerializeAsString());
      if (!key.empty()) wb.Put(db.handle(Cf::kRecords), rocksdb::Slice(key.data(), key.size()), state);
      ASSERT_TRUE(db.Write(wb, /*sync=*/true).ok());
    });
    Open(n);
  }

  // The entries of `n`'s change feed that readers see.
  static size_t FeedSize(Node& n) {
    auto cursor = n.store->CurrentCursor(kRegistry, /*oldest=*/true);
    EXPECT_TRUE(cursor.ok()) << cursor.status();
    if (!cursor.ok()) return 0;
    auto page = n.store->ReadFeed(kRegistry, *cursor, 1000);
    EXPECT_TRUE(page.ok()) << page.status();
    return page.ok() ? page->changes.size() : 0;
  }

  FakeClock clock_;
  Sha256Hasher hasher_;
  Node bourg_, lyon_, viriat_;
};

TEST_F(ApplySlicesTest, LocalWritesCommitBetweenTheSlicesOfALargeRemoteBatch) {
  // Rounds of three batches, until a local write landed inside one (a round whose
  // writer thread the machine did not run while the batches merged shows nothing).
  constexpr size_t kBatchesPerRound = 3;
  constexpr size_t kRoundsMax = 4;
  const std::vector<replication::DecodedBatch> batches =
      LargeBatches(kBatchesPerRound * kRoundsMax);

  // The changes of Lyon's feed, in commit order, by record ID.
  auto feed_order = [&] {
    std::vector<std::string> order;
    auto cursor = lyon_.store->CurrentCursor(kRegistry, /*oldest=*/true);
    EXPECT_TRUE(cursor.ok()) << cursor.status();
    while (cursor.ok()) {
      auto page = lyon_.store->ReadFeed(kRegistry, *cursor, 1000);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok() || page->changes.empty()) break;
      for (const auto& c : page->changes) {
        order.push_back(c.record().name().substr(c.record().name().rfind('/') + 1));
      }
      *cursor = page->cursor;
    }
    return order;
  };

  size_t merged = 0;  // batches merged so far
  size_t local = 0;
  size_t between = 0;
  for (size_t round = 0; round < kRoundsMax && between == 0; ++round) {
    // Lyon merges the batches while one of its users writes records of its own, one
    // after the other, as fast as they are acknowledged (bounded in count).
    std::atomic<bool> applied{false};
    absl::Status apply_status;
    std::thread applier([&] {
      for (size_t b = 0; b < kBatchesPerRound; ++b) {
        apply_status = lyon_.store->ApplyRemoteBatch(kRegistry, batches[merged + b]);
        if (!apply_status.ok()) break;
      }
      applied = true;
    });
    for (size_t n = 0; !applied && n < 20000; ++n, ++local) {
      auto w = lyon_.store->Write(kRegistry, absl::StrCat("l", local), Named("Lyon"),
                                  lyon_.admin());
      ASSERT_TRUE(w.ok()) << w.status();
    }
    applier.join();
    ASSERT_TRUE(apply_status.ok()) << apply_status;
    merged += kBatchesPerRound;

    // The feed lists changes in commit order: a local write committed between two
    // slices of a batch sits between two of that batch's records.
    const std::vector<std::string> order = feed_order();
    ASSERT_EQ(order.size(), merged * kBatchChanges + local);
    between = 0;
    for (size_t b = 0; b < merged; ++b) {
      const std::string first = absl::StrCat("b", b * kBatchChanges);
      const std::string last = absl::StrCat("b", (b + 1) * kBatchChanges - 1);
      const auto from = std::find(order.begin(), order.end(), first);
      const auto to = std::find(order.begin(), order.end(), last);
      ASSERT_TRUE(from < to) << "batch " << b;
      between += static_cast<size_t>(std::count_if(
          from, to, [](const std::string& id) { return id.starts_with("l"); }));
    }
  }
  EXPECT_GT(between, 0u) << local << " local writes in " << merged
                         << " batches, none committed inside a batch";

  // Each batch is audited once, as applied whole.
  size_t audited = 0;
  std::string token;
  do {
    auto audit = lyon_.store->ListAudit(RecordStore::AuditChainOf(kRegistry), 1000, token);
    ASSERT_TRUE(audit.ok()) << audit.status();
    for (const auto& e : audit->events) {
      if (e.event().action() != interco::v1::AuditEvent::APPLY_BATCH) continue;
      EXPECT_TRUE(e.event().accepted());
      EXPECT_EQ(e.event().count(), kBatchChanges);
      ++audited;
    }
    token = audit->next_page_token;
  } while (!token.empty());
  EXPECT_EQ(audited, merged);

  // Nothing of either is lost, and the store is whole.
  ExpectBourgsRecords(lyon_, merged * kBatchChanges);
  for (size_t i = 0; i < local; ++i) {
    ASSERT_TRUE(lyon_.store->GetRecord(kRegistry, absl::StrCat("l", i)).ok()) << i;
  }
  const OriginKey bourg{bourg_.store->origin(), bourg_.store->epoch()};
  EXPECT_EQ((*lyon_.store->Position(kRegistry))[bourg].seq, merged * kBatchChanges);
  ASSERT_TRUE(lyon_.store->Digest(kRegistry).ok());
  ExpectConsistent(lyon_);
}

TEST_F(ApplySlicesTest, ABatchThatFailsHalfWayKeepsItsSlicesMarkedUntilItComesAgain) {
  const std::vector<replication::DecodedBatch> batches = LargeBatches(1);
  const OriginKey bourg{bourg_.store->origin(), bourg_.store->epoch()};
  // Viriat merges the batch whole; Lyon's copy of a record of its third slice is
  // unreadable (a damaged disk).
  ASSERT_TRUE(viriat_.store->ApplyRemoteBatch(kRegistry, batches[0]).ok());
  const size_t damaged = 2 * limits::kApplySliceChanges + 5;
  const std::string damaged_key = keys::Record(kRegistry, absl::StrCat("b", damaged));
  WithRawStore(lyon_, [&](RocksDbStore& db) {
    rocksdb::WriteBatch wb;
    wb.Put(db.handle(Cf::kRecords), rocksdb::Slice(damaged_key.data(), damaged_key.size()),
           "\xff\xff\xff");
    ASSERT_TRUE(db.Write(wb, /*sync=*/true).ok());
  });
  Open(lyon_);

  const absl::Status failed = lyon_.store->ApplyRemoteBatch(kRegistry, batches[0]);
  EXPECT_EQ(failed.code(), absl::StatusCode::kDataLoss) << failed;
  // The two slices before it are committed; the batch and the position are not.
  for (size_t i = 0; i < kBatchChanges; ++i) {
    const bool merged = i < 2 * limits::kApplySliceChanges;
    if (i == damaged) continue;
    EXPECT_EQ(lyon_.store->GetRecord(kRegistry, absl::StrCat("b", i)).ok(), merged) << i;
  }
  EXPECT_EQ((*lyon_.store->Position(kRegistry))[bourg].seq, 0u);
  EXPECT_TRUE((*lyon_.store->ReadBatches(kRegistry, bourg, 0, 10)).empty());
  // Those slices went to the disk without a sync (they acknowledged nothing); with no
  // batch going on, the store synced them, and the change feed shows them.
  EXPECT_EQ(FeedSize(lyon_), 2 * limits::kApplySliceChanges);
  ASSERT_TRUE(lyon_.store->Write(kRegistry, "l0", Named("Lyon"), lyon_.admin()).ok());
  // Its records hold what its position does not: no divergence check compares them, even
  // after a restart.
  for (int restart = 0; restart < 2; ++restart) {
    const auto digest = lyon_.store->Digest(kRegistry);
    EXPECT_EQ(digest.status().code(), absl::StatusCode::kUnavailable) << digest.status();
    EXPECT_NE(digest.status().message().find("in slices"), std::string::npos);
    if (restart == 0) Open(lyon_);
  }

  // Meanwhile a user of Lyon's renames a record of the first slice: a write that saw
  // Bourg's value and replaced it, so no conflict.
  clock_.Advance(1000);
  ASSERT_TRUE(lyon_.store->Write(kRegistry, "b3", Named("Lyon"), lyon_.admin()).ok());

  // The disk is mended; the batch comes again and the merge goes on where it stopped.
  WithRawStore(lyon_, [&](RocksDbStore& db) {
    rocksdb::WriteBatch wb;
    wb.Delete(db.handle(Cf::kRecords), rocksdb::Slice(damaged_key.data(), damaged_key.size()));
    ASSERT_TRUE(db.Write(wb, /*sync=*/true).ok());
  });
  Open(lyon_);
  const absl::Status again = lyon_.store->ApplyRemoteBatch(kRegistry, batches[0]);
  ASSERT_TRUE(again.ok()) << again;
  EXPECT_EQ((*lyon_.store->Position(kRegistry))[bourg].seq, kBatchChanges);
  EXPECT_EQ(lyon_.store->GetRecord(kRegistry, "b3")->fields().at("nom").string_value(), "Lyon");
  // Merged again, Bourg's change of b3 would now count as lost to the rename.
  EXPECT_EQ(lyon_.store->GetRegistry(kRegistry)->conflict_count(), 0);
  // Once Viriat has the rename too, both hold the same.
  const OriginKey lyons{lyon_.store->origin(), lyon_.store->epoch()};
  auto renamed = lyon_.store->ReadBatches(kRegistry, lyons, 0, 10);
  ASSERT_TRUE(renamed.ok()) << renamed.status();
  ASSERT_EQ(renamed->size(), 2u);  // l0, then the rename
  for (const auto& b : *renamed) {
    ASSERT_TRUE(
        viriat_.store->ApplyRemoteBatch(kRegistry, *replication::DecodeBatch(b, hasher_)).ok());
  }
  ExpectBourgsRecords(viriat_, 3);
  const auto lyon = lyon_.store->Digest(kRegistry);
  const auto viriat = viriat_.store->Digest(kRegistry);
  ASSERT_TRUE(lyon.ok()) << lyon.status();
  ASSERT_TRUE(viriat.ok()) << viriat.status();
  EXPECT_EQ(lyon->live_sum, viriat->live_sum);
  EXPECT_EQ(lyon->live_records, kBatchChanges + 1);
  EXPECT_EQ(replication::PositionDigest(lyon->position, hasher_),
            replication::PositionDigest(viriat->position, hasher_));
  EXPECT_EQ(viriat_.store->GetRegistry(kRegistry)->conflict_count(), 0);
  ExpectConsistent(lyon_);
  ExpectConsistent(viriat_);
}

// Slices that acknowledge nothing are written without a sync: readers of the change feed
// see none of their entries until the last slice, synced, covers them all, and the feed's
// listeners are told once.
TEST_F(ApplySlicesTest, TheFeedShowsASlicedBatchOnlyOnceItIsSynced) {
  const std::vector<replication::DecodedBatch> batches = LargeBatches(1);
  std::atomic<int> told{0};
  const uint64_t subscription =
      lyon_.store->Subscribe(kRegistry, [&told] { told.fetch_add(1); });
  std::atomic<bool> applied{false};
  std::thread applier([&] {
    EXPECT_TRUE(lyon_.store->ApplyRemoteBatch(kRegistry, batches[0]).ok());
    applied = true;
  });
  std::set<size_t> seen;
  for (int reads = 0; !applied && reads < 1000000; ++reads) seen.insert(FeedSize(lyon_));
  applier.join();
  seen.insert(FeedSize(lyon_));
  lyon_.store->Unsubscribe(subscription);
  EXPECT_EQ(seen, (std::set<size_t>{0, kBatchChanges})) << "a part of the batch was shown";
  EXPECT_EQ(told.load(), 1);
}

// A feed that keeps few entries is trimmed as it grows, but never past the entries readers
// see: a reader starting from the oldest entry is never ahead of the feed.
TEST_F(ApplySlicesTest, TheFeedIsNeverTrimmedPastWhatReadersSee) {
  const std::vector<replication::DecodedBatch> batches = LargeBatches(5);
  lyon_.store.reset();
  RecordStoreOptions o;
  o.path = lyon_.dir;
  o.authority = kLyon;
  o.clock = &clock_;
  o.feed_retention_entries = 1;
  auto opened = RecordStore::Open(o);
  ASSERT_TRUE(opened.ok()) << opened.status();
  lyon_.store = *std::move(opened);
  std::atomic<bool> applied{false};
  std::thread applier([&] {
    for (const auto& b : batches) EXPECT_TRUE(lyon_.store->ApplyRemoteBatch(kRegistry, b).ok());
    applied = true;
  });
  size_t reads = 0, refused = 0;
  for (; !applied && reads < 1000000; ++reads) {
    auto cursor = lyon_.store->CurrentCursor(kRegistry, /*oldest=*/true);
    if (!cursor.ok() || !lyon_.store->ReadFeed(kRegistry, *cursor, 10).ok()) ++refused;
  }
  applier.join();
  EXPECT_EQ(refused, 0u) << "of " << reads << " reads from the oldest entry";
  EXPECT_LT(FeedSize(lyon_), 5 * kBatchChanges);  // trimmed
  ExpectBourgsRecords(lyon_, 5 * kBatchChanges);
}

// The records hold the first changes of another batch at the same place of the origin's
// chain (a branch of a fork, merged in part before a crash): the batch that comes does not
// go on from them; the registry is rebuilt from its log without them first.
// A batch merged in part here that a skip then stands for (it was hollow where the skip
// came from): the skip takes the position past it, and its mark goes with it, so that
// divergence checks answer again.
TEST_F(ApplySlicesTest, AMarkOfABatchThatASkipStandsForGoes) {
  const std::vector<replication::DecodedBatch> batches = LargeBatches(2);
  MarkFirstSliceMerged(lyon_, batches[0], batches[0].header_hash);
  ASSERT_EQ(lyon_.store->Digest(kRegistry).status().code(), absl::StatusCode::kUnavailable);
  // These stores check no signature (the engine does): a skip is a signed batch.
  interco::replication::v1::Batch skip = replication::Skip(batches[1].raw, 1);
  skip.set_signature(std::string(64, 's'));
  skip.set_signer(std::string(32, 'k'));
  const absl::StatusOr<replication::DecodedBatch> decoded = replication::DecodeBatch(skip, hasher_);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  ASSERT_TRUE(lyon_.store->ApplyRemoteBatch(kRegistry, *decoded).ok());
  const OriginKey bourg{bourg_.store->origin(), bourg_.store->epoch()};
  EXPECT_EQ((*lyon_.store->Position(kRegistry))[bourg].seq, 2 * kBatchChanges);
  EXPECT_TRUE(lyon_.store->Digest(kRegistry).ok()) << lyon_.store->Digest(kRegistry).status();
  ExpectConsistent(lyon_);
}

TEST_F(ApplySlicesTest, APartMergedOfAnotherBatchAtTheSamePlaceIsRebuiltAway) {
  const std::vector<replication::DecodedBatch> batches = LargeBatches(1);
  ASSERT_TRUE(viriat_.store->ApplyRemoteBatch(kRegistry, batches[0]).ok());
  // The other branch's first slice renamed b0, as this store's disk shows after a crash.
  auto other = *bourg_.store->StoredState(kRegistry, "b0");
  ASSERT_TRUE(other.has_value());
  other->mutable_fields(0)->mutable_value()->set_string_value("Autre branche");
  const std::string b0 = keys::Record(kRegistry, "b0");
  MarkFirstSliceMerged(lyon_, batches[0], std::string(32, 'x'), b0, other->SerializeAsString());
  const absl::Status first = lyon_.store->ApplyRemoteBatch(kRegistry, batches[0]);
  EXPECT_EQ(first.code(), absl::StatusCode::kUnavailable) << first;
  EXPECT_NE(first.message().find("rebuilt from its log"), std::string::npos) << first;
  const absl::Status again = lyon_.store->ApplyRemoteBatch(kRegistry, batches[0]);
  ASSERT_TRUE(again.ok()) << again;
  ExpectBourgsRecords(lyon_, kBatchChanges);
  const auto lyon = lyon_.store->Digest(kRegistry);
  const auto viriat = viriat_.store->Digest(kRegistry);
  ASSERT_TRUE(lyon.ok()) << lyon.status();
  ASSERT_TRUE(viriat.ok()) << viriat.status();
  EXPECT_EQ(lyon->live_sum, viriat->live_sum);
  EXPECT_EQ(replication::PositionDigest(lyon->position, hasher_),
            replication::PositionDigest(viriat->position, hasher_));
  ExpectConsistent(lyon_);
}

}  // namespace
}  // namespace interco::node
