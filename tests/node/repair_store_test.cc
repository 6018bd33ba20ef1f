// Range-fingerprint repair between real stores (RocksDB in temporary directories) over
// real gRPC on loopback with mutual TLS: the bucket sums every commit keeps, the peer's
// answers (ServeReconcile) and the repairing side's merge (RepairFrom). The peer
// manager's wiring and the admin API are tested with node processes in
// tests/integration/federation_test.cc.
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <grpcpp/server_builder.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "interco/replication/v1/peer_service.grpc.pb.h"
#include "node/peer/reconcile.h"
#include "node/rpc/status.h"
#include "node/storage/keys.h"
#include "node/storage/record_store.h"
#include "node/storage/rocksdb_store.h"
#include "node/tls/credentials.h"
#include "replication/base/limits.h"
#include "replication/ids.h"
#include "tests/testing/test_env.h"

namespace interco::node {
namespace {

using ::interco::testing::FakeClock;
using ::interco::testing::kAbergement;
using ::interco::testing::kBourg;
using ::interco::testing::kFederation;
using ::interco::testing::kLyon;
using ::interco::testing::MakeTempDir;
using ::testing::HasSubstr;
using interco::replication::v1::ReconcileRequest;
using interco::replication::v1::ReconcileResponse;
using interco::v1::Registry;
using replication::LocalWrite;
using replication::Principal;
using replication::RecordState;

constexpr char kRegistry[] = "equipements";

uint32_t Origin(const char* siren) { return *replication::SirenToOrigin(siren); }

// Owned by Lyon, written and read by Lyon and Bourg only.
Registry Definition() {
  Registry r;
  r.set_owner(kLyon);
  auto* f = r.mutable_schema()->add_fields();
  f->set_name("nom");
  f->set_type(interco::v1::FIELD_TYPE_STRING);
  f->set_indexed(true);
  f = r.mutable_schema()->add_fields();
  f->set_name("activites");
  f->set_type(interco::v1::FIELD_TYPE_STRING_SET);
  r.mutable_policy()->mutable_writers()->add_authorities(kBourg);
  return r;
}

LocalWrite Upsert(const std::string& nom, std::vector<std::string> activites = {}) {
  LocalWrite w;
  w.kind = LocalWrite::Kind::kUpdate;
  w.allow_missing = true;
  w.fields["nom"].set_string_value(nom);
  w.mask.push_back("nom");
  if (!activites.empty()) {
    for (const std::string& a : activites) w.fields["activites"].mutable_string_set_value()->add_values(a);
    w.mask.push_back("activites");
  }
  return w;
}

LocalWrite Delete() {
  LocalWrite w;
  w.kind = LocalWrite::Kind::kDelete;
  return w;
}

// Answers Reconcile from one store, as the peer manager does for an authenticated peer;
// with `inject`, adds that record to every answer carrying records (a lying peer).
class ReconcileService final : public interco::replication::v1::PeerService::Service {
 public:
  ReconcileService(RecordStore& store, uint32_t peer) : store_(store), peer_(peer) {}
  grpc::Status Reconcile(grpc::ServerContext* /*ctx*/, const ReconcileRequest* request,
                         ReconcileResponse* response) override {
    calls++;
    grpc::Status s = ToGrpcStatus(ServeReconcile(store_, peer_, *request, *response));
    if (s.ok() && request->has_records() && inject.has_value()) *response->add_records() = *inject;
    if (s.ok() && tamper) tamper(*request, *response);
    return s;
  }
  std::atomic<int> calls{0};
  std::optional<interco::replication::v1::RepairRecord> inject;
  std::function<void(const ReconcileRequest&, ReconcileResponse&)> tamper;

 private:
  RecordStore& store_;
  const uint32_t peer_;
};

using Node = testing::StoreNode;

class RepairStoreTest : public ::testing::Test {
 protected:
  RepairStoreTest() {
    for (Node* n : {&lyon_, &bourg_}) {
      n->dir = MakeTempDir(absl::StrCat("repair-", n->siren));
      Open(*n);
      auto r = n->store->CreateRegistry(kRegistry, Definition(), Principal{kFederation, n->siren, ""});
      EXPECT_TRUE(r.ok()) << r.status();
    }
  }
  ~RepairStoreTest() override {
    for (auto& s : servers_) s->Shutdown();
  }

  void Open(Node& n) {
    absl::Status s = n.Open(clock_);
    ASSERT_TRUE(s.ok()) << s;
  }

  void Write(Node& n, const std::string& id, LocalWrite w) {
    auto r = n.store->Write(kRegistry, id, std::move(w), n.admin());
    ASSERT_TRUE(r.ok()) << id << ": " << r.status();
  }

  // Serves `from`'s store to `to` (as if `to` were the authenticated peer) over mTLS on
  // loopback, with `from`'s node certificate; returns `to`'s stub.
  // `cert_of`: whose node certificate the server presents (default: `from`'s).
  std::unique_ptr<interco::replication::v1::PeerService::Stub> Serve(Node& from, Node& to,
                                                                     std::string cert_of = "") {
    services_.push_back(std::make_unique<ReconcileService>(*from.store, Origin(to.siren.c_str())));
    int port = 0;
    grpc::ServerBuilder builder;
    builder.AddListeningPort(
        "127.0.0.1:0",
        MakeServerCredentials(
            TlsFiles::InDirectory(testing::NodeTlsDir(cert_of.empty() ? from.siren : cert_of)),
            kFederation),
        &port);
    builder.RegisterService(services_.back().get());
    servers_.push_back(builder.BuildAndStart());
    return interco::replication::v1::PeerService::NewStub(
        testing::MtlsChannel(port, testing::NodeTlsDir(to.siren)));
  }

  RepairOptions Options(Node& to, Node& from) {
    RepairOptions o;
    o.registry = kRegistry;
    o.federation = kFederation;
    o.peer = Origin(from.siren.c_str());
    o.caller = to.admin();
    return o;
  }

  // `to` repairs its copy from `from`.
  interco::v1::RepairReport Repair(Node& to, Node& from, bool dry_run = false,
                                   size_t scan_above = limits::kReconcileRecordsMax) {
    auto stub = Serve(from, to);
    RepairOptions o = Options(to, from);
    o.scan_above = scan_above;
    o.dry_run = dry_run;
    absl::StatusOr<interco::v1::RepairReport> report = RepairFrom(*to.store, *stub, clock_, o);
    EXPECT_TRUE(report.ok()) << report.status();
    return report.ok() ? *report : interco::v1::RepairReport();
  }

  std::map<uint32_t, uint64_t> Buckets(Node& n) { return *n.store->FingerprintBuckets(kRegistry); }

  // Live records: resource name -> the public record, serialized deterministically.
  std::map<std::string, std::string> Live(Node& n) {
    std::map<std::string, std::string> out;
    ListQuery q;
    q.registry = kRegistry;
    q.page_size = 1000;
    while (true) {
      auto page = n.store->ListRecords(q);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok()) return out;
      for (const auto& r : page->records) {
        // Deterministic: map fields in key order, so equal records compare equal.
        std::string bytes;
        google::protobuf::io::StringOutputStream stream(&bytes);
        google::protobuf::io::CodedOutputStream coded(&stream);
        coded.SetSerializationDeterministic(true);
        r.SerializeToCodedStream(&coded);
        coded.Trim();
        out[r.name()] = std::move(bytes);
      }
      if (page->next_page_token.empty()) return out;
      q.page_token = page->next_page_token;
    }
  }

  FakeClock clock_;
  Node lyon_{kLyon, "", nullptr};
  Node bourg_{kBourg, "", nullptr};
  std::vector<std::unique_ptr<ReconcileService>> services_;
  std::vector<std::unique_ptr<grpc::Server>> servers_;
};

TEST_F(RepairStoreTest, EveryCommitKeepsTheBucketSumsOfLiveRecords) {
  for (int i = 0; i < 200; ++i) Write(lyon_, absl::StrCat("eq-", i), Upsert(absl::StrCat("Gymnase ", i)));
  for (int i = 0; i < 50; ++i) Write(lyon_, absl::StrCat("eq-", i), Upsert("Stade", {"football"}));
  for (int i = 150; i < 180; ++i) Write(lyon_, absl::StrCat("eq-", i), Delete());
  // CheckConsistency recomputes every bucket from the records.
  auto check = lyon_.store->CheckConsistency();
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_THAT(*check, HasSubstr("fingerprint buckets"));
  const auto buckets = Buckets(lyon_);
  EXPECT_GT(buckets.size(), 150u);
  EXPECT_LE(buckets.size(), 170u);

  // The same records replicated: the same sums, whatever the batches.
  ASSERT_TRUE(testing::CarryBatches(*lyon_.store, *bourg_.store, kRegistry).ok());
  EXPECT_EQ(Buckets(bourg_), buckets);
  ASSERT_TRUE(bourg_.store->CheckConsistency().ok());
  // And across a restart.
  Open(lyon_);
  EXPECT_EQ(Buckets(lyon_), buckets);
  // Deleting everything empties them.
  for (int i = 0; i < 200; ++i) {
    if (i < 150 || i >= 180) Write(lyon_, absl::StrCat("eq-", i), Delete());
  }
  EXPECT_TRUE(Buckets(lyon_).empty());
}

TEST_F(RepairStoreTest, RepairBringsWhatTheLogsDidNotAndNothingTwice) {
  for (int i = 0; i < 300; ++i) Write(lyon_, absl::StrCat("eq-", i), Upsert(absl::StrCat("Piscine ", i)));
  for (int i = 0; i < 20; ++i) Write(bourg_, absl::StrCat("bourg-", i), Upsert("Halle"));
  // Both edited one record concurrently, on different fields: both edits survive.
  Write(lyon_, "eq-0", Upsert("Piscine olympique"));
  LocalWrite tags;
  tags.kind = LocalWrite::Kind::kUpdate;
  tags.allow_missing = true;
  tags.fields["activites"].mutable_string_set_value()->add_values("natation");
  tags.mask.push_back("activites");
  Write(bourg_, "eq-0", tags);

  const interco::v1::RepairReport dry = Repair(bourg_, lyon_, /*dry_run=*/true);
  EXPECT_EQ(dry.records_only_there(), 300u);
  EXPECT_EQ(dry.records_only_here(), 21u);
  EXPECT_EQ(dry.records_received(), 0u);
  EXPECT_EQ(Live(bourg_).size(), 21u);

  const interco::v1::RepairReport report = Repair(bourg_, lyon_);
  EXPECT_EQ(report.records_only_there(), 300u);
  EXPECT_EQ(report.records_only_here(), 21u);
  // Lyon's 300 (eq-0 asked by key and by digest comes once); the 20 records Lyon lacks
  // come back as nothing.
  EXPECT_EQ(report.records_received(), 300u);
  EXPECT_EQ(report.records_changed(), 300u);
  EXPECT_GT(report.bytes_received(), 0u);
  auto eq0 = bourg_.store->GetRecord(kRegistry, "eq-0");
  ASSERT_TRUE(eq0.ok());
  EXPECT_EQ(eq0->fields().at("nom").string_value(), "Piscine olympique");
  EXPECT_EQ(eq0->fields().at("activites").string_set_value().values(0), "natation");
  EXPECT_EQ(Live(bourg_).size(), 320u);

  // The other way round, then both agree, and a further repair costs one request.
  const interco::v1::RepairReport back = Repair(lyon_, bourg_);
  EXPECT_EQ(back.records_only_there(), 21u);
  EXPECT_EQ(back.records_changed(), 21u);
  EXPECT_EQ(Buckets(lyon_), Buckets(bourg_));
  EXPECT_EQ(Live(lyon_), Live(bourg_));
  const interco::v1::RepairReport again = Repair(bourg_, lyon_);
  EXPECT_EQ(again.buckets_differing(), 0u);
  EXPECT_EQ(again.rounds(), 1u);
  EXPECT_LT(again.bytes_sent() + again.bytes_received(), 200u);

  // The change logs arrive later: every change is already absorbed, nothing moves.
  const auto buckets = Buckets(bourg_);
  ASSERT_TRUE(testing::CarryBatches(*lyon_.store, *bourg_.store, kRegistry).ok());
  ASSERT_TRUE(testing::CarryBatches(*bourg_.store, *lyon_.store, kRegistry).ok());
  EXPECT_EQ(Buckets(bourg_), buckets);
  EXPECT_EQ(Buckets(lyon_), buckets);
  ASSERT_TRUE(lyon_.store->CheckConsistency().ok());
  ASSERT_TRUE(bourg_.store->CheckConsistency().ok());

  // Audited on the repaired node: who asked, from which peer, how many records changed.
  auto audit = bourg_.store->ListAudit(RecordStore::AuditChainOf(kRegistry), 1000, "");
  ASSERT_TRUE(audit.ok());
  int repairs = 0;
  for (const auto& e : audit->events) {
    if (e.event().action() != interco::v1::AuditEvent::REPAIR_RECORDS) continue;
    repairs++;
    EXPECT_EQ(e.event().origin(), kLyon);
    EXPECT_EQ(e.event().caller(), bourg_.admin().Author());
    EXPECT_TRUE(e.event().accepted());
  }
  EXPECT_EQ(repairs, 1);  // one commit of 300 states
}

TEST_F(RepairStoreTest, ANewCopyReadsThePeersRegistryInOnePass) {
  for (int i = 0; i < 120; ++i) Write(lyon_, absl::StrCat("eq-", i), Upsert(absl::StrCat("Court ", i)));
  for (int i = 100; i < 120; ++i) Write(lyon_, absl::StrCat("eq-", i), Delete());
  Write(bourg_, "bourg-0", Upsert("Halle"));
  // Above 10 differing records (Bourg holds 1), Lyon's registry is read in ID order.
  const interco::v1::RepairReport report = Repair(bourg_, lyon_, false, /*scan_above=*/10);
  EXPECT_EQ(report.records_only_there(), 100u);
  EXPECT_EQ(report.records_received(), 100u);  // live records only
  EXPECT_EQ(report.records_changed(), 100u);
  // Tree (4), digests (1), one scan request (all fits), Bourg's record by key (1).
  EXPECT_EQ(report.rounds(), 7u);
  EXPECT_EQ(Live(bourg_).size(), 101u);
  Repair(lyon_, bourg_);
  EXPECT_EQ(Buckets(lyon_), Buckets(bourg_));
  ASSERT_TRUE(bourg_.store->CheckConsistency().ok());
}

TEST_F(RepairStoreTest, ScansResumeWhereTheyStopped) {
  for (int i = 0; i < 30; ++i) Write(lyon_, absl::StrCat("eq-", i), Upsert(absl::StrCat("Court ", i)));
  std::string after;
  std::vector<std::string> seen;
  for (int pass = 0; pass < 40; ++pass) {
    auto scan = lyon_.store->ScanLive(kRegistry, after, /*max_bytes=*/100);
    ASSERT_TRUE(scan.ok()) << scan.status();
    for (const auto& [id, state] : scan->records) seen.push_back(id);
    if (scan->resume.empty()) break;
    EXPECT_GT(scan->resume, after);
    after = scan->resume;
  }
  EXPECT_EQ(seen.size(), 30u);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()).size(), 30u);
}

TEST_F(RepairStoreTest, ADeleteReachesACopyThatStillHasTheRecord) {
  Write(lyon_, "gymnase", Upsert("Gymnase"));
  ASSERT_TRUE(testing::CarryBatches(*lyon_.store, *bourg_.store, kRegistry).ok());
  Write(lyon_, "gymnase", Delete());
  // Bourg's copy is live, Lyon's a tombstone that Lyon leaves out of its fingerprints: the
  // difference is Bourg's, which asks for the record by ID and gets the tombstone.
  const interco::v1::RepairReport report = Repair(bourg_, lyon_);
  EXPECT_EQ(report.records_only_here(), 1u);
  EXPECT_EQ(report.records_only_there(), 0u);
  EXPECT_EQ(report.records_changed(), 1u);
  EXPECT_EQ(bourg_.store->GetRecord(kRegistry, "gymnase").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(Buckets(bourg_).empty());
  auto registry = bourg_.store->GetRegistry(kRegistry);
  EXPECT_EQ(registry->record_count(), 0);
  ASSERT_TRUE(bourg_.store->CheckConsistency().ok());

  // The delete itself arrives later and changes nothing, but it still indexes the
  // tombstone: the owner's collection of it removes the record on Bourg as on Lyon.
  ASSERT_TRUE(testing::CarryBatches(*lyon_.store, *bourg_.store, kRegistry).ok());
  const replication::VersionVector held = *lyon_.store->Position(kRegistry);
  auto collected = lyon_.store->Collect(kRegistry,
      replication::CollectionPlan{held, held, lyon_.store->Members(kRegistry)});
  ASSERT_TRUE(collected.ok()) << collected.status();
  ASSERT_TRUE(*collected);
  ASSERT_TRUE(testing::CarryBatches(*lyon_.store, *bourg_.store, kRegistry).ok());
  EXPECT_FALSE(lyon_.store->StoredState(kRegistry, "gymnase")->has_value());
  EXPECT_FALSE(bourg_.store->StoredState(kRegistry, "gymnase")->has_value());
  EXPECT_EQ(bourg_.store->CollectedOf(kRegistry)->records, 1u);
}

// A peer that has not applied a collection may still hold the collected record live:
// nothing is merged from it until it has caught up.
TEST_F(RepairStoreTest, NothingIsMergedFromAPeerBehindTheCollections) {
  Write(bourg_, "gymnase", Upsert("Gymnase"));
  ASSERT_TRUE(testing::CarryBatches(*bourg_.store, *lyon_.store, kRegistry).ok());
  Write(lyon_, "gymnase", Delete());
  const replication::VersionVector held = *lyon_.store->Position(kRegistry);
  ASSERT_TRUE(*lyon_.store->Collect(kRegistry,
      replication::CollectionPlan{held, held, lyon_.store->Members(kRegistry)}));
  ASSERT_FALSE(lyon_.store->StoredState(kRegistry, "gymnase")->has_value());

  auto stub = Serve(bourg_, lyon_);
  auto refused = RepairFrom(*lyon_.store, *stub, clock_, Options(lyon_, bourg_));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("has applied policy version 0"));
  EXPECT_FALSE(lyon_.store->StoredState(kRegistry, "gymnase")->has_value()) << "resurrected";
  // The store refuses such a merge by itself too.
  auto merged = lyon_.store->Repair(kRegistry, Origin(kBourg), 0,
                                    {{"gymnase", **bourg_.store->StoredState(kRegistry, "gymnase")}},
                                    lyon_.admin());
  EXPECT_EQ(merged.status().code(), absl::StatusCode::kFailedPrecondition);

  // Once Bourg has the delete and the collection, they agree.
  ASSERT_TRUE(testing::CarryBatches(*lyon_.store, *bourg_.store, kRegistry).ok());
  const interco::v1::RepairReport report = Repair(lyon_, bourg_);
  EXPECT_EQ(report.buckets_differing(), 0u);
  EXPECT_FALSE(lyon_.store->StoredState(kRegistry, "gymnase")->has_value());
}

TEST_F(RepairStoreTest, OnlyThePeerIsHeardAndOnlyAboutWhatWasAsked) {
  Write(lyon_, "stade", Upsert("Stade"));
  // Another node of the federation answering at the peer's address.
  auto impostor = Serve(lyon_, bourg_, kAbergement);
  auto refused = RepairFrom(*bourg_.store, *impostor, clock_, Options(bourg_, lyon_));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(refused.status().message(),
              HasSubstr("is not spiffe://interco.test/collectivite/200046977"));

  // The peer adds a record nobody asked for: the repair stops, nothing merged.
  auto stub = Serve(lyon_, bourg_);
  interco::replication::v1::RepairRecord extra;
  extra.set_key("piscine");
  *extra.mutable_state() = **lyon_.store->StoredState(kRegistry, "stade");
  services_.back()->inject = extra;
  auto lied = RepairFrom(*bourg_.store, *stub, clock_, Options(bourg_, lyon_));
  EXPECT_EQ(lied.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(lied.status().message(), HasSubstr("record piscine, which was not asked for"));
  EXPECT_FALSE(bourg_.store->StoredState(kRegistry, "piscine")->has_value());
}

// Scans paged by the peer are followed to the end; a scan out of order, or put-offs of
// what was not asked, end the repair.
TEST_F(RepairStoreTest, APeerThatPagesOrLiesIsFollowedOrStopped) {
  for (int i = 0; i < 45; ++i) Write(lyon_, absl::StrCat("eq-", i), Upsert(absl::StrCat("Court ", i)));
  auto page = [](const ReconcileRequest& request, ReconcileResponse& response) {
    if (!request.has_scan() || response.records_size() <= 10) return;
    response.mutable_records()->DeleteSubrange(10, response.records_size() - 10);
    response.set_scan_resume(response.records(9).key());
  };
  {
    auto stub = Serve(lyon_, bourg_);
    services_.back()->tamper = page;
    RepairOptions o = Options(bourg_, lyon_);
    o.scan_above = 10;
    auto report = RepairFrom(*bourg_.store, *stub, clock_, o);
    ASSERT_TRUE(report.ok()) << report.status();
    EXPECT_EQ(report->records_changed(), 45u);
    EXPECT_EQ(report->rounds(), 5u + 5u);  // tree and digests, then 5 pages of the scan
  }
  Write(lyon_, "eq-100", Upsert("Court 100"));
  struct Case {
    const char* what;
    std::function<void(const ReconcileRequest&, ReconcileResponse&)> tamper;
    bool scan;
  };
  const std::vector<Case> cases = {
      {"the peer's scan is out of order",
       [](const ReconcileRequest& request, ReconcileResponse& response) {
         if (request.has_scan() && response.records_size() >= 2) {
           response.mutable_records()->SwapElements(0, 1);
         }
       },
       true},
      {"does not resume after what it sent",
       [](const ReconcileRequest& request, ReconcileResponse& response) {
         if (request.has_scan()) response.set_scan_resume("zzz");
       },
       true},
      {"put off a key not asked for",
       [](const ReconcileRequest& request, ReconcileResponse& response) {
         if (request.has_records()) response.add_more_keys("inconnu");
       },
       false},
      {"put off a digest not asked for",
       [](const ReconcileRequest& request, ReconcileResponse& response) {
         if (request.has_records()) response.add_more_digests(12345);
       },
       false},
  };
  // A new, empty copy of Bourg's for the scans (it lacks everything).
  Node fresh{kBourg, MakeTempDir("repair-fresh"), nullptr};
  Open(fresh);
  ASSERT_TRUE(fresh.store->CreateRegistry(kRegistry, Definition(), Principal{kFederation, kBourg, ""}).ok());
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    Node& to = c.scan ? fresh : bourg_;
    auto stub = Serve(lyon_, to);
    services_.back()->tamper = c.tamper;
    RepairOptions o = Options(to, lyon_);
    o.scan_above = 10;
    auto report = RepairFrom(*to.store, *stub, clock_, o);
    EXPECT_EQ(report.status().code(), absl::StatusCode::kDataLoss) << report.status();
    EXPECT_THAT(report.status().message(), HasSubstr(c.what));
  }
  EXPECT_FALSE(bourg_.store->StoredState(kRegistry, "eq-100")->has_value());
  EXPECT_TRUE(Buckets(fresh).empty());
}

// The policy version a peer states goes with what it sends: an answer stating an older one
// (a peer put back from a backup meanwhile) is not merged.
TEST_F(RepairStoreTest, StatesGoWithThePolicyVersionTheirAnswerStated) {
  Write(bourg_, "gymnase", Upsert("Gymnase"));
  Write(bourg_, "stade", Upsert("Stade"));
  ASSERT_TRUE(testing::CarryBatches(*bourg_.store, *lyon_.store, kRegistry).ok());
  Write(lyon_, "gymnase", Delete());
  const replication::VersionVector held = *lyon_.store->Position(kRegistry);
  ASSERT_TRUE(*lyon_.store->Collect(kRegistry,
      replication::CollectionPlan{held, held, lyon_.store->Members(kRegistry)}));
  ASSERT_TRUE(testing::CarryBatches(*lyon_.store, *bourg_.store, kRegistry).ok());
  Write(bourg_, "piscine", Upsert("Piscine"));  // what Lyon lacks
  auto stub = Serve(bourg_, lyon_);
  services_.back()->tamper = [](const ReconcileRequest& request, ReconcileResponse& response) {
    if (request.has_records()) response.set_policy_version(0);
  };
  auto report = RepairFrom(*lyon_.store, *stub, clock_, Options(lyon_, bourg_));
  EXPECT_EQ(report.status().code(), absl::StatusCode::kFailedPrecondition) << report.status();
  EXPECT_FALSE(lyon_.store->StoredState(kRegistry, "piscine")->has_value());
  services_.back()->tamper = nullptr;
  EXPECT_EQ(Repair(lyon_, bourg_).records_changed(), 1u);
}

TEST_F(RepairStoreTest, AStateStampedByAnAuthorityThatMayNotWriteIsRefused) {
  RecordState state;
  state.set_causal_length(1);
  state.set_cl_hlc(uint64_t{1} << 40);
  state.set_cl_origin(Origin(kAbergement));  // not a writer of the registry
  auto merged = bourg_.store->Repair(kRegistry, Origin(kLyon), 0, {{"a", state}}, bourg_.admin());
  EXPECT_EQ(merged.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(merged.status().message(),
              HasSubstr("stamped by 210100012, which no version of the registry's policy lets write"));
}

TEST_F(RepairStoreTest, AMalformedStateRefusesTheWholeMerge) {
  RecordState good;
  good.set_causal_length(1);
  good.set_cl_hlc(uint64_t{1} << 40);
  good.set_cl_origin(Origin(kLyon));
  auto* f = good.add_fields();
  f->set_name("nom");
  f->set_hlc(uint64_t{1} << 40);
  f->set_origin(Origin(kLyon));
  f->mutable_value()->set_string_value("Patinoire");
  RecordState bad = good;
  bad.mutable_fields(0)->set_name("inconnu");
  auto merged = bourg_.store->Repair(kRegistry, Origin(kLyon), 0, {{"a", good}, {"b", bad}}, bourg_.admin());
  EXPECT_EQ(merged.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(merged.status().message(), HasSubstr("records[1] (b) from 200046977"));
  EXPECT_THAT(merged.status().message(), HasSubstr("no such field"));
  EXPECT_FALSE(bourg_.store->StoredState(kRegistry, "a")->has_value());
  auto bad_id = bourg_.store->Repair(kRegistry, Origin(kLyon), 0, {{"", good}}, bourg_.admin());
  EXPECT_EQ(bad_id.status().code(), absl::StatusCode::kInvalidArgument);
  // The good one alone is merged.
  auto ok = bourg_.store->Repair(kRegistry, Origin(kLyon), 0, {{"a", good}}, bourg_.admin());
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(*ok, 1u);
  EXPECT_EQ(bourg_.store->GetRecord(kRegistry, "a")->fields().at("nom").string_value(), "Patinoire");
  // Merging it again changes nothing.
  EXPECT_EQ(*bourg_.store->Repair(kRegistry, Origin(kLyon), 0, {{"a", good}}, bourg_.admin()), 0u);
}

TEST_F(RepairStoreTest, AStateFromTheFutureIsRefused) {
  Write(lyon_, "patinoire", Upsert("Patinoire"));
  clock_.Advance(10 * 60 * 1000);  // Lyon's clock ran ten minutes ahead of Bourg's
  Write(lyon_, "piscine", Upsert("Piscine"));
  clock_.Advance(-10 * 60 * 1000);
  const interco::v1::RepairReport report = Repair(bourg_, lyon_);
  EXPECT_EQ(report.records_received(), 2u);
  EXPECT_EQ(report.records_refused(), 1u);
  EXPECT_EQ(report.records_changed(), 1u);
  EXPECT_TRUE(bourg_.store->GetRecord(kRegistry, "patinoire").ok());
  EXPECT_FALSE(bourg_.store->GetRecord(kRegistry, "piscine").ok());
}

TEST_F(RepairStoreTest, ThePeerAnswersOnlyWhatItMayAndSaysWhatIsWrong) {
  Write(lyon_, "stade", Upsert("Stade"));
  ReconcileRequest request;
  ReconcileResponse response;
  request.set_stream(kRegistry);
  request.mutable_tree()->set_level(0);
  request.mutable_tree()->add_nodes(0);
  EXPECT_TRUE(ServeReconcile(*lyon_.store, Origin(kBourg), request, response).ok());
  EXPECT_EQ(response.sums_size(), 16);
  // A node outside the readers.
  absl::Status denied = ServeReconcile(*lyon_.store, Origin(kAbergement), request, response);
  EXPECT_EQ(denied.code(), absl::StatusCode::kPermissionDenied);
  request.set_stream("inconnu");
  EXPECT_EQ(ServeReconcile(*lyon_.store, Origin(kBourg), request, response).code(),
            absl::StatusCode::kNotFound);
  request.set_stream(kRegistry);
  request.mutable_tree()->set_level(4);
  absl::Status level = ServeReconcile(*lyon_.store, Origin(kBourg), request, response);
  EXPECT_EQ(level.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(level.message(), HasSubstr("tree.level"));
  request.mutable_buckets()->add_buckets(7);
  request.mutable_buckets()->add_buckets(7);
  absl::Status buckets = ServeReconcile(*lyon_.store, Origin(kBourg), request, response);
  EXPECT_THAT(buckets.message(), HasSubstr("buckets.buckets[1]: not increasing"));
  request.mutable_records()->add_digests(1);
  absl::Status digests = ServeReconcile(*lyon_.store, Origin(kBourg), request, response);
  EXPECT_THAT(digests.message(), HasSubstr("records.buckets"));
  request.clear_query();
  EXPECT_EQ(ServeReconcile(*lyon_.store, Origin(kBourg), request, response).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(RepairStoreTest, AFormatFourStoreGetsItsFingerprintsAtOpen) {
  for (int i = 0; i < 100; ++i) Write(lyon_, absl::StrCat("eq-", i), Upsert(absl::StrCat("Salle ", i)));
  const auto buckets = Buckets(lyon_);
  lyon_.store.reset();
  {
    // The store as format 4 left it: no fingerprints family content.
    RocksDbOptions o;
    o.path = lyon_.dir;
    auto db = RocksDbStore::Open(o);
    ASSERT_TRUE(db.ok());
    rocksdb::WriteBatch wb;
    auto it = (*db)->NewIterator(Cf::kFingerprints);
    for (it->SeekToFirst(); it->Valid(); it->Next()) wb.Delete((*db)->handle(Cf::kFingerprints), it->key());
    interco::internal::v1::NodeMeta meta;
    ASSERT_TRUE(meta.ParseFromString(**(*db)->Get(Cf::kMeta, keys::kNodeMeta)));
    meta.set_format_version(4);
    wb.Put((*db)->handle(Cf::kMeta), std::string(keys::kNodeMeta), meta.SerializeAsString());
    ASSERT_TRUE((*db)->Write(wb, true).ok());
  }
  Open(lyon_);
  EXPECT_EQ(Buckets(lyon_), buckets);
  ASSERT_TRUE(lyon_.store->CheckConsistency().ok());
}

}  // namespace
}  // namespace interco::node
