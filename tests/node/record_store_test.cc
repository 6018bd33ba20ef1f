// RecordStore on a real RocksDB in a temporary directory.
#include "node/storage/record_store.h"

#include <optional>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "interco/internal/v1/storage.pb.h"
#include "node/storage/keys.h"
#include "node/storage/rocksdb_store.h"
#include "tests/testing/test_env.h"

namespace interco::node {
namespace {

using ::interco::testing::FakeClock;
using ::interco::testing::kBourg;
using ::interco::testing::kLyon;
using ::interco::testing::MakeTempDir;
using ::testing::HasSubstr;
using interco::v1::FieldSpec;
using interco::v1::Record;
using interco::v1::Registry;
using interco::v1::Value;
using replication::LocalWrite;
using replication::Principal;

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
Value Set(std::vector<std::string> xs) {
  Value v;
  for (auto& x : xs) v.mutable_string_set_value()->add_values(x);
  return v;
}

Registry CommunesDefinition() {
  Registry r;
  r.set_display_name("Communes");
  auto* f = r.mutable_schema()->add_fields();
  f->set_name("nom");
  f->set_type(interco::v1::FIELD_TYPE_STRING);
  f->set_required(true);
  f = r.mutable_schema()->add_fields();
  f->set_name("population");
  f->set_type(interco::v1::FIELD_TYPE_INT64);
  f = r.mutable_schema()->add_fields();
  f->set_name("epci");
  f->set_type(interco::v1::FIELD_TYPE_STRING);
  f->set_indexed(true);
  f = r.mutable_schema()->add_fields();
  f->set_name("codes_postaux");
  f->set_type(interco::v1::FIELD_TYPE_STRING_SET);
  f->set_indexed(true);
  return r;
}

LocalWrite Upsert(std::map<std::string, Value> fields) {
  LocalWrite w;
  w.kind = LocalWrite::Kind::kUpdate;
  w.allow_missing = true;
  for (auto& [k, v] : fields) {
    w.fields[k] = v;
    w.mask.push_back(k);
  }
  return w;
}

class RecordStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("store");
    Open();
  }

  void Open(uint64_t retention = 100000) {
    store_.reset();
    RecordStoreOptions o;
    o.path = dir_;
    o.authority = kLyon;
    o.clock = &clock_;
    o.feed_retention_entries = retention;
    auto s = RecordStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }

  void CreateCommunes() {
    auto r = store_->CreateRegistry("communes", CommunesDefinition(), caller_);
    ASSERT_TRUE(r.ok()) << r.status();
  }

  void ExpectConsistent() {
    auto report = store_->CheckConsistency();
    EXPECT_TRUE(report.ok()) << report.status();
  }

  FakeClock clock_;
  std::string dir_;
  Principal caller_{"interco.test", kLyon, "app"};
  std::unique_ptr<RecordStore> store_;
};

TEST_F(RecordStoreTest, CreatesAndGetsRegistry) {
  CreateCommunes();
  auto r = store_->GetRegistry("communes");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->name(), "registries/communes");
  EXPECT_EQ(r->owner(), kLyon);
  EXPECT_EQ(r->schema().fields_size(), 4);
  EXPECT_EQ(store_->GetRegistry("absent").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RecordStoreTest, RefusesDuplicateForeignOwnedOrInvalidRegistries) {
  CreateCommunes();
  EXPECT_EQ(store_->CreateRegistry("communes", CommunesDefinition(), caller_).status().code(),
            absl::StatusCode::kAlreadyExists);
  Registry foreign = CommunesDefinition();
  foreign.set_owner(::interco::testing::kAbergement);
  const Principal partner{"interco.test", kBourg, "app"};
  EXPECT_EQ(store_->CreateRegistry("other", foreign, partner).status().code(),
            absl::StatusCode::kPermissionDenied);
  // The node's own authority may declare a replica of a partner's registry.
  foreign.set_owner(kBourg);
  EXPECT_TRUE(store_->CreateRegistry("replica", foreign, caller_).ok());
  Registry bad = CommunesDefinition();
  bad.mutable_schema()->mutable_fields(1)->set_name("Population");
  auto s = store_->CreateRegistry("bad", bad, caller_).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("schema.fields[1].name"));
  EXPECT_EQ(store_->CreateRegistry("Bad_Id", CommunesDefinition(), caller_).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->Registries().size(), 2u);
}

TEST_F(RecordStoreTest, WritesReadsAndDeletes) {
  CreateCommunes();
  auto created = store_->Write("communes", "01001",
                               Upsert({{"nom", Str("L'Abergement-Clémenciat")},
                                       {"population", Int(860)}}),
                               caller_);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->name(), "registries/communes/records/01001");
  EXPECT_EQ(created->update_origin(), kLyon);
  auto got = store_->GetRecord("communes", "01001");
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->fields().at("population").int64_value(), 860);
  EXPECT_EQ(got->etag(), created->etag());
  EXPECT_EQ(store_->GetRegistry("communes")->record_count(), 1);

  LocalWrite del;
  del.kind = LocalWrite::Kind::kDelete;
  ASSERT_TRUE(store_->Write("communes", "01001", del, caller_).ok());
  EXPECT_EQ(store_->GetRecord("communes", "01001").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->GetRegistry("communes")->record_count(), 0);
  EXPECT_EQ(store_->Write("communes", "01001", del, caller_).status().code(),
            absl::StatusCode::kNotFound);
  ExpectConsistent();
}

TEST_F(RecordStoreTest, StaleEtagIsAbortedAndChangesNothing) {
  CreateCommunes();
  auto v1 = store_->Write("communes", "01001", Upsert({{"nom", Str("A")}}), caller_);
  ASSERT_TRUE(v1.ok());
  auto v2 = store_->Write("communes", "01001", Upsert({{"nom", Str("B")}}), caller_);
  ASSERT_TRUE(v2.ok());
  LocalWrite stale = Upsert({{"nom", Str("C")}});
  stale.expected_etag = v1->etag();
  EXPECT_EQ(store_->Write("communes", "01001", stale, caller_).status().code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(store_->GetRecord("communes", "01001")->fields().at("nom").string_value(), "B");
  stale.expected_etag = v2->etag();
  EXPECT_TRUE(store_->Write("communes", "01001", stale, caller_).ok());
}

TEST_F(RecordStoreTest, UpdateChangingNothingIsNotLoggedOrFed) {
  CreateCommunes();
  auto v1 = store_->Write("communes", "01053", Upsert({{"nom", Str("Bourg")}}), caller_);
  ASSERT_TRUE(v1.ok());
  auto cursor = store_->CurrentCursor("communes", false);
  ASSERT_TRUE(cursor.ok());
  const auto position = store_->Position("communes");
  auto again = store_->Write("communes", "01053", Upsert({{"nom", Str("Bourg")}}), caller_);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->etag(), v1->etag());
  EXPECT_EQ(again->fields().at("nom").string_value(), "Bourg");
  EXPECT_TRUE(store_->ReadFeed("communes", *cursor, 10)->changes.empty());
  const auto after = store_->Position("communes");
  ASSERT_TRUE(position.ok() && after.ok());
  EXPECT_EQ(after->begin()->second.seq, position->begin()->second.seq);
  ExpectConsistent();
}

TEST_F(RecordStoreTest, PersistsAcrossReopenAndClockNeverGoesBack) {
  CreateCommunes();
  auto before = store_->Write("communes", "01001", Upsert({{"nom", Str("A")}}), caller_);
  ASSERT_TRUE(before.ok());
  Open();
  clock_.Advance(-3600 * 1000);  // the wall clock jumps an hour back
  auto after = store_->Write("communes", "01002", Upsert({{"nom", Str("B")}}), caller_);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(store_->GetRecord("communes", "01001")->fields().at("nom").string_value(), "A");
  const auto& t0 = before->update_time();
  const auto& t1 = after->update_time();
  EXPECT_TRUE(t1.seconds() > t0.seconds() || (t1.seconds() == t0.seconds() && t1.nanos() > t0.nanos()));
  ExpectConsistent();
}

TEST_F(RecordStoreTest, RefusesStoreOfAnotherAuthority) {
  store_.reset();
  RecordStoreOptions o;
  o.path = dir_;
  o.authority = kBourg;
  o.clock = &clock_;
  EXPECT_EQ(RecordStore::Open(o).status().code(), absl::StatusCode::kFailedPrecondition);
}

// Rewrites the store's format version (the store must be closed); returns the one it had.
uint32_t SetFormatVersion(const std::string& dir, std::optional<uint32_t> version) {
  RocksDbOptions ro;
  ro.path = dir;
  auto db = RocksDbStore::Open(ro);
  EXPECT_TRUE(db.ok()) << db.status();
  interco::internal::v1::NodeMeta meta;
  EXPECT_TRUE(meta.ParseFromString(*(*db)->Get(Cf::kMeta, keys::kNodeMeta).value()));
  const uint32_t had = meta.format_version();
  if (version) {
    meta.set_format_version(*version);
    rocksdb::WriteBatch wb;
    wb.Put((*db)->handle(Cf::kMeta), rocksdb::Slice(keys::kNodeMeta.data(), keys::kNodeMeta.size()),
           meta.SerializeAsString());
    EXPECT_TRUE((*db)->Write(wb, true).ok());
  }
  return had;
}

// Formats 7 and 9 add nothing to a store but what a node of the format before must not
// read (hollow batches, then skips, in the change log): a format-6 or format-8 store
// moves to the current format at open, durably, so that a node of its old format would
// now refuse it.
TEST_F(RecordStoreTest, AFormatSixOrEightStoreMovesToTheCurrentFormatAtOpen) {
  CreateCommunes();
  RecordStoreOptions o;
  o.path = dir_;
  o.authority = kLyon;
  o.clock = &clock_;
  for (uint32_t version : {6u, 8u}) {
    store_.reset();
    EXPECT_EQ(SetFormatVersion(dir_, version), 9u);
    auto reopened = RecordStore::Open(o);
    ASSERT_TRUE(reopened.ok()) << version << ": " << reopened.status();
    EXPECT_THAT(*(*reopened)->CheckConsistency(), ::testing::StartsWith("ok: 1 registries"));
    reopened->reset();
    EXPECT_EQ(SetFormatVersion(dir_, std::nullopt), 9u) << version;
    store_ = *RecordStore::Open(o);
  }
}

// Format 8 keeps, per registry, the sum of its live records' digests (what a divergence
// check compares): a format-7 store gets it from its buckets at open.
TEST_F(RecordStoreTest, AFormatSevenStoreGetsItsLiveSumsAtOpen) {
  CreateCommunes();
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(store_->Write("communes", absl::StrCat("c", i), Upsert({{"nom", Str("x")}}), caller_)
                    .ok());
  }
  LocalWrite del;
  del.kind = LocalWrite::Kind::kDelete;
  ASSERT_TRUE(store_->Write("communes", "c3", del, caller_).ok());
  const replication::StateDigest before = *store_->Digest("communes");
  EXPECT_EQ(before.live_records, 19u);
  EXPECT_NE(before.live_sum, 0u);
  EXPECT_GE(before.position.at({*replication::SirenToOrigin(kLyon), 1}).seq, 21u);
  store_.reset();
  // A format-7 store: no sums in the registry metadata.
  {
    RocksDbOptions ro;
    ro.path = dir_;
    auto db = RocksDbStore::Open(ro);
    ASSERT_TRUE(db.ok()) << db.status();
    interco::internal::v1::RegistryMeta meta;
    ASSERT_TRUE(meta.ParseFromString(*(*db)->Get(Cf::kRegistries, "communes").value()));
    EXPECT_EQ(meta.live_sum(), before.live_sum);
    meta.clear_live_sum();
    rocksdb::WriteBatch wb;
    wb.Put((*db)->handle(Cf::kRegistries), "communes", meta.SerializeAsString());
    ASSERT_TRUE((*db)->Write(wb, true).ok());
  }
  EXPECT_EQ(SetFormatVersion(dir_, 7), 9u);
  RecordStoreOptions o;
  o.path = dir_;
  o.authority = kLyon;
  o.clock = &clock_;
  {
    // Without its sums the store fails its check: the check compares them.
    EXPECT_EQ(SetFormatVersion(dir_, 9), 7u);
    auto unmigrated = RecordStore::Open(o);
    ASSERT_TRUE(unmigrated.ok()) << unmigrated.status();
    auto report = (*unmigrated)->CheckConsistency();
    EXPECT_EQ(report.status().code(), absl::StatusCode::kDataLoss);
    EXPECT_THAT(std::string(report.status().message()),
                ::testing::HasSubstr("live records' digests sum to"));
    unmigrated->reset();
    SetFormatVersion(dir_, 7);
  }
  store_ = *RecordStore::Open(o);
  const replication::StateDigest after = *store_->Digest("communes");
  EXPECT_EQ(after.live_sum, before.live_sum);
  EXPECT_EQ(after.live_records, before.live_records);
  ExpectConsistent();
  EXPECT_EQ(store_->Digest("absent").status().code(), absl::StatusCode::kNotFound);
  store_.reset();
  EXPECT_EQ(SetFormatVersion(dir_, std::nullopt), 9u);  // written at open
  store_ = *RecordStore::Open(o);
}

TEST_F(RecordStoreTest, RefusesStoreOfAnotherFormatVersion) {
  store_.reset();
  // Version 2: signatures without their signing time; version 3: no index of tombstones,
  // so that a collection would miss its deletes.
  for (const auto& [version, why] : {std::pair<uint32_t, std::string>{2, "format version 2"},
                                     {3, "version 3 has no index of tombstones"}}) {
    SetFormatVersion(dir_, version);
    RecordStoreOptions o;
    o.path = dir_;
    o.authority = kLyon;
    o.clock = &clock_;
    const absl::Status s = RecordStore::Open(o).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << version;
    EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr(why));
  }
}

TEST_F(RecordStoreTest, ConcurrentWritersAllLandConsistently) {
  CreateCommunes();
  constexpr int kThreads = 8, kPerThread = 200;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        auto r = store_->Write("communes", absl::StrCat("t", t, "-", i),
                               Upsert({{"nom", Str("x")}, {"epci", Str(absl::StrCat("e", i % 7))}}),
                               caller_);
        if (!r.ok()) failures++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(store_->GetRegistry("communes")->record_count(), kThreads * kPerThread);
  ExpectConsistent();
}

TEST_F(RecordStoreTest, InvalidWriteInAGroupDoesNotAffectOthers) {
  CreateCommunes();
  std::vector<std::thread> threads;
  std::atomic<int> ok{0}, refused{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        // Odd writes miss the required "nom".
        auto fields = (i % 2 == 0) ? std::map<std::string, Value>{{"nom", Str("ok")}}
                                   : std::map<std::string, Value>{{"population", Int(1)}};
        auto r = store_->Write("communes", absl::StrCat(t, "-", i), Upsert(fields), caller_);
        (r.ok() ? ok : refused)++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 100);
  EXPECT_EQ(refused.load(), 100);
  EXPECT_EQ(store_->GetRegistry("communes")->record_count(), 100);
  ExpectConsistent();
}

TEST_F(RecordStoreTest, FiltersUseIndexesAndFollowUpdates) {
  CreateCommunes();
  for (int i = 0; i < 30; ++i) {
    ASSERT_TRUE(store_->Write("communes", absl::StrCat("c", 100 + i),
                              Upsert({{"nom", Str("x")},
                                      {"epci", Str(i % 3 == 0 ? "200071751" : "200069193")},
                                      {"codes_postaux", Set({"01000", absl::StrCat("0", 1100 + i)})}}),
                              caller_)
                    .ok());
  }
  ListQuery q;
  q.registry = "communes";
  q.filters.emplace_back();
  q.filters[0].set_field("epci");
  *q.filters[0].mutable_value() = Str("200071751");
  auto page = store_->ListRecords(q);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->records.size(), 10u);
  // Move one record to the other EPCI: the index follows.
  ASSERT_TRUE(store_->Write("communes", "c100", Upsert({{"epci", Str("200069193")}}), caller_).ok());
  EXPECT_EQ(store_->ListRecords(q)->records.size(), 9u);
  // Set membership.
  ListQuery sq;
  sq.registry = "communes";
  sq.filters.emplace_back();
  sq.filters[0].set_field("codes_postaux");
  *sq.filters[0].mutable_value() = Str("01105");
  auto members = store_->ListRecords(sq);
  ASSERT_TRUE(members.ok()) << members.status();
  ASSERT_EQ(members->records.size(), 1u);
  EXPECT_EQ(members->records[0].name(), "registries/communes/records/c105");
  // Non-indexed filter with a prefix.
  ListQuery pq;
  pq.registry = "communes";
  pq.id_prefix = "c11";
  EXPECT_EQ(store_->ListRecords(pq)->records.size(), 10u);
  ExpectConsistent();
}

TEST_F(RecordStoreTest, PaginatesWithoutGapsOrDuplicates) {
  CreateCommunes();
  for (int i = 0; i < 250; ++i) {
    ASSERT_TRUE(
        store_->Write("communes", absl::StrCat("r", 1000 + i), Upsert({{"nom", Str("x")}}), caller_)
            .ok());
  }
  ListQuery q;
  q.registry = "communes";
  q.page_size = 100;
  std::vector<std::string> seen;
  int pages = 0;
  do {
    auto page = store_->ListRecords(q);
    ASSERT_TRUE(page.ok()) << page.status();
    for (auto& r : page->records) seen.push_back(r.name());
    q.page_token = page->next_page_token;
    ++pages;
  } while (!q.page_token.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(seen.size(), 250u);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), 250u);
}

TEST_F(RecordStoreTest, RefusesBadPagesAndFilters) {
  CreateCommunes();
  ListQuery q;
  q.registry = "communes";
  q.page_size = 1001;
  EXPECT_EQ(store_->ListRecords(q).status().code(), absl::StatusCode::kInvalidArgument);
  q.page_size = -1;
  EXPECT_EQ(store_->ListRecords(q).status().code(), absl::StatusCode::kInvalidArgument);
  q.page_size = 0;
  q.page_token = "not a token!";
  auto s = store_->ListRecords(q).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("page_token"));
  // A valid token of another query.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(store_->Write("communes", absl::StrCat("r", i), Upsert({{"nom", Str("x")}}), caller_).ok());
  }
  ListQuery small;
  small.registry = "communes";
  small.page_size = 1;
  auto page = store_->ListRecords(small);
  ASSERT_TRUE(page.ok());
  ListQuery other = small;
  other.id_prefix = "r";
  other.page_token = page->next_page_token;
  EXPECT_EQ(store_->ListRecords(other).status().code(), absl::StatusCode::kInvalidArgument);
  ListQuery badfilter;
  badfilter.registry = "communes";
  badfilter.filters.emplace_back();
  badfilter.filters[0].set_field("population");
  *badfilter.filters[0].mutable_value() = Str("not a number");
  s = store_->ListRecords(badfilter).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("filters[0].value"));
  badfilter.filters[0].set_field("nope");
  s = store_->ListRecords(badfilter).status();
  EXPECT_THAT(std::string(s.message()), HasSubstr("filters[0].field"));
  ListQuery unknown;
  unknown.registry = "absent";
  EXPECT_EQ(store_->ListRecords(unknown).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RecordStoreTest, FeedResumesFromCursorWithoutGapsOrRepeats) {
  CreateCommunes();
  auto start = store_->CurrentCursor("communes", false);
  ASSERT_TRUE(start.ok());
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(store_->Write("communes", absl::StrCat("r", i), Upsert({{"nom", Str("x")}}), caller_).ok());
  }
  auto first = store_->ReadFeed("communes", *start, 3);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(first->changes.size(), 3u);
  EXPECT_EQ(first->changes[2].record().name(), "registries/communes/records/r2");
  LocalWrite del;
  del.kind = LocalWrite::Kind::kDelete;
  ASSERT_TRUE(store_->Write("communes", "r0", del, caller_).ok());
  auto rest = store_->ReadFeed("communes", first->cursor, 100);
  ASSERT_TRUE(rest.ok());
  ASSERT_EQ(rest->changes.size(), 3u);
  EXPECT_EQ(rest->changes[0].record().name(), "registries/communes/records/r3");
  EXPECT_EQ(rest->changes[2].kind(), interco::v1::CHANGE_KIND_DELETE);
  // The cursor of the last change resumes with nothing new.
  EXPECT_TRUE(store_->ReadFeed("communes", rest->changes[2].cursor(), 100)->changes.empty());
  // Survives a restart.
  Open();
  EXPECT_EQ(store_->ReadFeed("communes", first->cursor, 100)->changes.size(), 3u);
}

TEST_F(RecordStoreTest, FeedRefusesBadStaleAndForeignCursors) {
  Open(/*retention=*/10);
  CreateCommunes();
  ASSERT_TRUE(store_->CreateRegistry("autre", CommunesDefinition(), caller_).ok());
  auto oldest = store_->CurrentCursor("communes", true);
  ASSERT_TRUE(oldest.ok());
  EXPECT_EQ(store_->ReadFeed("communes", "garbage", 10).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto other = store_->CurrentCursor("autre", false);
  EXPECT_EQ(store_->ReadFeed("communes", *other, 10).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Enough writes to trim the feed (retention 10 plus the trimming slack).
  for (int i = 0; i < 1100; ++i) {
    ASSERT_TRUE(store_->Write("communes", absl::StrCat("r", i % 50), Upsert({{"nom", Str(absl::StrCat(i))}}), caller_).ok());
  }
  EXPECT_EQ(store_->ReadFeed("communes", *oldest, 10).status().code(),
            absl::StatusCode::kOutOfRange);
  auto fresh = store_->CurrentCursor("communes", true);
  EXPECT_TRUE(store_->ReadFeed("communes", *fresh, 100).ok());
  ExpectConsistent();
}

}  // namespace
}  // namespace interco::node
