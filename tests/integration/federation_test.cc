// Three real node processes replicating over loopback mTLS, in a line
// (Lyon - Bourg - L'Abergement): concurrent writers on every node, kill -9 of the relay
// in the middle, restart, then convergence checked through the public API.
#include <atomic>
#include <fstream>
#include <limits>
#include <sstream>
#include <filesystem>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "interco/v1/node_service.grpc.pb.h"
#include "interco/replication/v1/state.pb.h"
#include "interco/v1/registry_service.grpc.pb.h"
#include "node/storage/record_store.h"
#include "node/system_clock.h"
#include "node/trust/provenance.h"
#include "tests/testing/test_env.h"

namespace interco {
namespace {

using ::interco::testing::ClientTlsDir;
using ::interco::testing::kAbergement;
using ::interco::testing::kBourg;
using ::interco::testing::kLyon;
using ::interco::testing::MtlsChannel;
using ::interco::testing::NodeProcess;

struct Member {
  std::string siren;
  int peer_port = 0;
  std::vector<std::string> peers;  // SIRENs
  std::unique_ptr<NodeProcess> node;
};

std::unique_ptr<v1::RegistryService::Stub> Stub(const Member& m) {
  return v1::RegistryService::NewStub(MtlsChannel(m.node->api_port(), ClientTlsDir(m.siren)));
}

// A registry `id` owned by Lyon, read by Bourg, with one string field "nom".
v1::CreateRegistryRequest LyonRegistryReadByBourg(const std::string& id) {
  v1::CreateRegistryRequest req;
  req.set_registry_id(id);
  req.mutable_registry()->set_owner(kLyon);
  req.mutable_registry()->mutable_policy()->mutable_readers()->add_authorities(kBourg);
  auto* f = req.mutable_registry()->mutable_schema()->add_fields();
  f->set_name("nom");
  f->set_type(v1::FIELD_TYPE_STRING);
  return req;
}

// The records of "services" on a node, by ID, as "field=value;..." strings.
std::map<std::string, std::string> Snapshot(const Member& m) {
  std::map<std::string, std::string> out;
  auto stub = Stub(m);
  v1::ListRecordsRequest req;
  req.set_parent("registries/services");
  req.set_page_size(1000);
  do {
    grpc::ClientContext ctx;
    v1::ListRecordsResponse resp;
    if (!stub->ListRecords(&ctx, req, &resp).ok()) return {};
    for (const auto& r : resp.records()) {
      std::vector<std::string> fields;
      std::map<std::string, v1::Value> sorted(r.fields().begin(), r.fields().end());
      for (const auto& [k, v] : sorted) fields.push_back(absl::StrCat(k, "=", v.ShortDebugString()));
      out[r.name()] = absl::StrJoin(fields, ";");
    }
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty());
  return out;
}

// The conflict journal of "services" on a node, as "record|field|value|origin|time" lines.
std::set<std::string> Conflicts(const Member& m, int64_t* registry_count = nullptr) {
  std::set<std::string> out;
  auto stub = Stub(m);
  v1::ListConflictsRequest req;
  req.set_parent("registries/services");
  req.set_page_size(7);  // several pages
  do {
    grpc::ClientContext ctx;
    v1::ListConflictsResponse resp;
    grpc::Status s = stub->ListConflicts(&ctx, req, &resp);
    if (!s.ok()) {
      ADD_FAILURE() << s.error_message();
      return {};
    }
    for (const auto& c : resp.conflicts()) {
      out.insert(absl::StrCat(c.record(), "|", c.field(), "|", c.losing_value().ShortDebugString(),
                              "|", c.losing_origin(), "|", c.losing_time().ShortDebugString()));
    }
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty());
  if (registry_count != nullptr) {
    grpc::ClientContext ctx;
    v1::GetRegistryRequest get;
    get.set_name("registries/services");
    v1::Registry r;
    EXPECT_TRUE(stub->GetRegistry(&ctx, get, &r).ok());
    *registry_count = r.conflict_count();
  }
  return out;
}

class FederationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = testing::MakeTempDir("federation");
    dir_ = dir;
    members_.resize(3);
    members_[0].siren = kLyon;
    members_[1].siren = kBourg;
    members_[2].siren = kAbergement;
    for (auto& m : members_) m.peer_port = testing::FreePort();
    members_[0].peers = {kBourg};
    members_[1].peers = {kLyon, kAbergement};
    members_[2].peers = {kBourg};
    for (auto& m : members_) {
      m.node = std::make_unique<NodeProcess>(OptionsOf(m));
      std::string error;
      ASSERT_TRUE(m.node->Start(&error)) << error;
    }
    // Every node declares the shared registry (owned by Lyon).
    for (auto& m : members_) Declare(m);
  }

  // Declares the shared registry on `m` (owned by Lyon, written by every member).
  void Declare(const Member& m) {
    v1::CreateRegistryRequest req;
    req.set_registry_id("services");
    req.mutable_registry()->set_owner(kLyon);
    // Every member writes it (listed: a registry open to all is never collected).
    for (const auto& w : members_) {
      req.mutable_registry()->mutable_policy()->mutable_writers()->add_authorities(w.siren);
    }
    auto* f = req.mutable_registry()->mutable_schema()->add_fields();
    f->set_name("nom");
    f->set_type(v1::FIELD_TYPE_STRING);
    f = req.mutable_registry()->mutable_schema()->add_fields();
    f->set_name("n");
    f->set_type(v1::FIELD_TYPE_INT64);
    f = req.mutable_registry()->mutable_schema()->add_fields();
    f->set_name("canaux");
    f->set_type(v1::FIELD_TYPE_STRING_SET);
    f = req.mutable_registry()->mutable_schema()->add_fields();
    f->set_name("visites");
    f->set_type(v1::FIELD_TYPE_COUNTER);
    grpc::ClientContext ctx;
    v1::Registry out;
    grpc::Status s = v1::RegistryService::NewStub(
                         MtlsChannel(m.node->api_port(), ClientTlsDir(m.siren, "admin")))
                         ->CreateRegistry(&ctx, req, &out);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  // Flags every node gets beyond the fixture's.
  virtual std::vector<std::string> ExtraArgs() const { return {}; }

  // What `interco info` prints for `m` (as its own viewer).
  static std::string Info(const Member& m) {
    std::string out;
    EXPECT_EQ(testing::RunCommand(absl::StrCat("INTERCO_TLS_DIR=", ClientTlsDir(m.siren), " ",
                                               testing::BinaryPath("interco"),
                                               " --addr=127.0.0.1:", m.node->api_port(), " info"),
                                  &out),
              0)
        << out;
    return out;
  }

  // Stops every node, then checks each store offline (`interco-node --check`).
  void StopAndCheckStores() {
    for (auto& m : members_) {
      ASSERT_EQ(m.node->Terminate() & 0x7f, 0);
      std::string report;
      EXPECT_EQ(testing::RunCommand(absl::StrCat(testing::BinaryPath("interco-node"),
                                                 " --check --authority=", m.siren, " --data_dir=",
                                                 dir_, "/", m.siren),
                                    &report),
                0)
          << report;
    }
  }

  // Sets the name of record `id` of the shared registry through `m`'s API (created if
  // missing).
  static void Put(const Member& m, const std::string& id, const char* nom) {
    v1::UpdateRecordRequest req;
    req.mutable_record()->set_name(absl::StrCat("registries/services/records/", id));
    (*req.mutable_record()->mutable_fields())["nom"].set_string_value(nom);
    req.mutable_update_mask()->add_paths("nom");
    req.set_allow_missing(true);
    grpc::ClientContext ctx;
    v1::Record out;
    grpc::Status s = Stub(m)->UpdateRecord(&ctx, req, &out);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  // Deletes record `id` of the shared registry through `m`'s API.
  static void DeleteRecord(const Member& m, const std::string& id) {
    v1::DeleteRecordRequest req;
    req.set_name(absl::StrCat("registries/services/records/", id));
    grpc::ClientContext ctx;
    google::protobuf::Empty e;
    grpc::Status s = Stub(m)->DeleteRecord(&ctx, req, &e);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }

  // How member `m`'s process runs: on its peer port with its peers, or (`isolated`) on
  // another port that nobody dials, with no peer.
  NodeProcess::Options OptionsOf(const Member& m, bool isolated = false) const {
    NodeProcess::Options o;
    o.authority = m.siren;
    o.data_dir = absl::StrCat(dir_, "/", m.siren);
    o.extra_args.push_back(absl::StrCat("--peer_listen=127.0.0.1:",
                                        isolated ? testing::FreePort() : m.peer_port));
    // Lyon, the owner, collects stable tombstones every second.
    o.extra_args.push_back("--collect_interval_seconds=1");
    for (std::string& arg : ExtraArgs()) o.extra_args.push_back(std::move(arg));
    std::vector<std::string> peers;
    for (const std::string& p : isolated ? std::vector<std::string>{} : m.peers) {
      for (const auto& other : members_) {
        if (other.siren == p) peers.push_back(absl::StrCat(p, "@127.0.0.1:", other.peer_port));
      }
    }
    o.extra_args.push_back(absl::StrCat("--peers=", absl::StrJoin(peers, ",")));
    return o;
  }

  // What `m` says of itself (NodeInfo, as its own viewer).
  static v1::NodeInfo NodeInfoOf(const Member& m) {
    grpc::ClientContext ctx;
    v1::NodeInfo info;
    EXPECT_TRUE(v1::NodeService::NewStub(MtlsChannel(m.node->api_port(), ClientTlsDir(m.siren)))
                    ->GetNodeInfo(&ctx, v1::GetNodeInfoRequest(), &info)
                    .ok());
    return info;
  }

  // What `m` says of the shared registry (NodeInfo).
  static v1::RegistrySummary Summary(const Member& m) {
    const v1::NodeInfo info = NodeInfoOf(m);
    for (const auto& r : info.registries()) {
      if (r.name() == "registries/services") return r;
    }
    return v1::RegistrySummary();
  }

  bool WaitForConvergence(int seconds, std::map<std::string, std::string>* state) {
    for (int i = 0; i < seconds * 10; ++i) {
      auto a = Snapshot(members_[0]);
      auto b = Snapshot(members_[1]);
      auto c = Snapshot(members_[2]);
      if (!a.empty() && a == b && b == c) {
        *state = a;
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  std::vector<Member> members_;
  std::string dir_;
};

TEST_F(FederationTest, ConvergesThroughARelayKilledMidStream) {
  std::atomic<bool> stop{false};
  std::mutex mu;
  std::map<std::string, int> acked;  // key -> writes acknowledged
  std::atomic<int> acked_total{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < 6; ++w) {
    writers.emplace_back([&, w] {
      const Member& m = members_[static_cast<size_t>(w % 3)];
      for (int i = 0; i < 60 && !stop; ++i) {
        // Keys shared between writers of different nodes: concurrent edits.
        const std::string key = absl::StrCat("k", (w * 7 + i) % 40);
        v1::UpdateRecordRequest req;
        req.mutable_record()->set_name(absl::StrCat("registries/services/records/", key));
        auto& fields = *req.mutable_record()->mutable_fields();
        if (w % 2 == 0) {
          fields["nom"].set_string_value(absl::StrCat("w", w, "-", i));
          req.mutable_update_mask()->add_paths("nom");
        } else {
          fields["n"].set_int64_value(i);
          fields["canaux"].mutable_string_set_value()->add_values(absl::StrCat("c", w));
          req.mutable_update_mask()->add_paths("n");
          req.mutable_update_mask()->add_paths("canaux");
        }
        req.set_allow_missing(true);
        grpc::ClientContext ctx;
        ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
        v1::Record out;
        if (Stub(m)->UpdateRecord(&ctx, req, &out).ok()) {
          std::lock_guard<std::mutex> l(mu);
          acked[key]++;
          acked_total++;
        }
      }
    });
  }
  // Kill the relay in the middle of the load (a sixth of the 360 writes acknowledged),
  // then bring it back.
  const auto load_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (acked_total.load() < 60 && std::chrono::steady_clock::now() < load_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  members_[1].node->Kill();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::string error;
  ASSERT_TRUE(members_[1].node->Start(&error)) << error;
  for (auto& t : writers) t.join();

  std::map<std::string, std::string> state;
  ASSERT_TRUE(WaitForConvergence(60, &state)) << "nodes did not converge within 60 s";
  // Every key that had an acknowledged write exists everywhere, with both kinds of field
  // merged where both writers touched it.
  for (const auto& [key, n] : acked) {
    EXPECT_TRUE(state.contains(absl::StrCat("registries/services/records/", key))) << key;
  }
  // Writes of a field that raced are in every node's conflict journal alike (a write that
  // lost its race changes no record: the records may match before it reached every node).
  std::set<std::string> conflicts;
  for (int i = 0; i < 300; ++i) {
    conflicts = Conflicts(members_[0]);
    if (Conflicts(members_[1]) == conflicts && Conflicts(members_[2]) == conflicts) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(Conflicts(members_[1]), conflicts);
  EXPECT_EQ(Conflicts(members_[2]), conflicts);
  // The relay reports its peers connected and nothing missing (what a peer holds is
  // learned from its acks and its status, every 5 s).
  auto info_stub = v1::NodeService::NewStub(
      MtlsChannel(members_[1].node->api_port(), ClientTlsDir(kBourg)));
  v1::NodeInfo info;
  for (int i = 0; i < 300; ++i) {
    grpc::ClientContext ctx;
    ASSERT_TRUE(info_stub->GetNodeInfo(&ctx, v1::GetNodeInfoRequest(), &info).ok());
    bool settled = info.peers_size() == 2;
    for (const auto& p : info.peers()) {
      settled = settled && p.connected();
      for (const auto& [origin, missing] : p.missing_changes()) settled = settled && missing == 0;
    }
    if (settled) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(info.peers_size(), 2);
  for (const auto& p : info.peers()) {
    EXPECT_TRUE(p.connected()) << p.authority();
    EXPECT_GT(p.batches_applied() + p.batches_sent(), 0u) << p.authority();
    for (const auto& [origin, missing] : p.missing_changes()) EXPECT_EQ(missing, 0u) << origin;
    EXPECT_EQ(p.unverified(), 0u) << p.authority();
    EXPECT_EQ(p.forks(), 0u) << p.authority();
    // The broadcast tree of the line is rooted at the smallest SIREN, Lyon's: the relay
    // takes the registry from Lyon and pushes it to L'Abergement, which takes it from the
    // relay (and pushes its own writes up to it).
    const std::vector<std::string> services{"services"};
    EXPECT_EQ(std::vector<std::string>(p.push_registries().begin(), p.push_registries().end()),
              services)
        << p.authority();
    EXPECT_EQ(std::vector<std::string>(p.uplink_registries().begin(), p.uplink_registries().end()),
              p.authority() == kLyon ? services : std::vector<std::string>{})
        << p.authority();
    EXPECT_FALSE(p.suspect()) << p.authority();
    EXPECT_GT(p.messages_sent(), 0u) << p.authority();
  }
  {
    auto end_stub = v1::NodeService::NewStub(
        MtlsChannel(members_[2].node->api_port(), ClientTlsDir(kAbergement)));
    // (A node busy for over 2 s answers without its trees: asked again then.)
    v1::NodeInfo end_info;
    const auto info_now = [&] {
      for (int i = 0; i < 100; ++i) {
        grpc::ClientContext ctx;
        if (!end_stub->GetNodeInfo(&ctx, v1::GetNodeInfoRequest(), &end_info).ok()) return false;
        if (end_info.trees_size() > 0) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      return true;
    };
    ASSERT_TRUE(info_now());
    ASSERT_EQ(end_info.peers_size(), 1);
    EXPECT_EQ(end_info.peers(0).authority(), kBourg);
    EXPECT_EQ(std::vector<std::string>(end_info.peers(0).uplink_registries().begin(),
                                       end_info.peers(0).uplink_registries().end()),
              std::vector<std::string>{"services"});
    // Its own place: two links from Lyon, the root, through the relay.
    ASSERT_EQ(end_info.trees_size(), 1);
    EXPECT_EQ(end_info.trees(0).registry(), "services");
    EXPECT_EQ(end_info.trees(0).root(), kLyon);
    EXPECT_EQ(end_info.trees(0).distance(), 2u);
    EXPECT_EQ(end_info.trees(0).uplink(), kBourg);
    // Causal stability: Lyon's report reaches the end of the line through the relay's
    // status (one status interval per link), and then every change is held everywhere.
    // A member's newest report may name one of its own changes still on its way here
    // (waiting, while nothing held here is unstable): wait for both to settle.
    for (int i = 0; i < 300 && (end_info.trees(0).unstable_changes() > 0 ||
                                end_info.trees(0).members_waiting() > 0);
         ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      ASSERT_TRUE(info_now());
      ASSERT_EQ(end_info.trees_size(), 1);
    }
    EXPECT_EQ(end_info.trees(0).members(), 3u);
    EXPECT_EQ(end_info.trees(0).members_waiting(), 0u);
    EXPECT_EQ(end_info.trees(0).unstable_changes(), 0u) << "not stable within 30 s";
  }
  // Provenance at the end of the line: values written on all three nodes, relayed by
  // Bourg, are proven by their origins' signatures, checked offline with the CA alone.
  int verified = 0;
  std::set<std::string> origins_seen;
  const std::string proof_dir = testing::MakeTempDir("provenance");
  for (const auto& [name, fields] : state) {
    if (verified >= 5) break;
    const std::string id = name.substr(name.rfind('/') + 1);
    const std::string proof = absl::StrCat(proof_dir, "/", id, ".json");
    std::string out;
    ASSERT_EQ(testing::RunCommand(
                  absl::StrCat("INTERCO_TLS_DIR=", ClientTlsDir(kAbergement, "viewer"), " ",
                               testing::BinaryPath("interco"), " --addr=127.0.0.1:",
                               members_[2].node->api_port(), " provenance services ", id,
                               " --out ", proof),
                  &out),
              0)
        << out;
    for (const char* siren : {kLyon, kBourg, kAbergement}) {
      if (out.find(siren) != std::string::npos) origins_seen.insert(siren);
    }
    ASSERT_EQ(testing::RunCommand(absl::StrCat(testing::BinaryPath("interco"),
                                               " verify-provenance ", proof, " --ca ",
                                               ClientTlsDir(kAbergement), "/ca.crt"),
                                  &out),
              0)
        << out;
    EXPECT_NE(out.find("verified: "), std::string::npos) << out;
    ++verified;
  }
  EXPECT_EQ(verified, 5);
  EXPECT_GE(origins_seen.size(), 2u) << "values of several origins were expected";
  // Each store is consistent.
  for (auto& m : members_) {
    ASSERT_EQ(m.node->Terminate() & 0x7f, 0);
  }
}

// A counter incremented concurrently on the three nodes (each increment a read, then a
// write guarded by the etag read, retried on ABORTED): every increment counts once on
// every node, although no two nodes ever saw the same value when they wrote.
// Lyon and L'Abergement each rename the same record while the relay between them is down.
// Once it is back, the later write wins everywhere and the other is in every node's
// conflict journal; a write made knowing the winner adds nothing; a delete ends it all.
TEST_F(FederationTest, ARaceLostWhileCutOffIsJournaledOnEveryNode) {
  auto update = [&](const Member& m, const char* field, v1::Value value) {
    v1::UpdateRecordRequest req;
    req.mutable_record()->set_name("registries/services/records/mairie");
    (*req.mutable_record()->mutable_fields())[field] = value;
    req.mutable_update_mask()->add_paths(field);
    req.set_allow_missing(true);
    grpc::ClientContext ctx;
    v1::Record out;
    grpc::Status s = Stub(m)->UpdateRecord(&ctx, req, &out);
    ASSERT_TRUE(s.ok()) << s.error_message();
  };
  auto text = [](const char* s) {
    v1::Value v;
    v.set_string_value(s);
    return v;
  };
  std::map<std::string, std::string> state;
  update(members_[0], "nom", text("Mairie"));
  ASSERT_TRUE(WaitForConvergence(30, &state));

  members_[1].node->Kill();
  update(members_[0], "nom", text("Mairie de Lyon"));
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  update(members_[2], "nom", text("Mairie de L'Abergement"));
  v1::Value n;
  n.set_int64_value(5);
  update(members_[2], "n", n);  // another field: no race
  std::string error;
  ASSERT_TRUE(members_[1].node->Start(&error)) << error;
  ASSERT_TRUE(WaitForConvergence(60, &state));
  EXPECT_NE(state.at("registries/services/records/mairie").find("Abergement"), std::string::npos)
      << state.at("registries/services/records/mairie");

  auto journaled_everywhere = [&](size_t expected) {
    for (int i = 0; i < 300; ++i) {
      bool all = true;
      for (const auto& m : members_) all = all && Conflicts(m).size() == expected;
      if (all) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  };
  ASSERT_TRUE(journaled_everywhere(1));
  for (const auto& m : members_) {
    int64_t count = -1;
    const std::set<std::string> c = Conflicts(m, &count);
    ASSERT_EQ(c.size(), 1u) << m.siren;
    EXPECT_EQ(count, 1) << m.siren;
    const std::string& line = *c.begin();
    EXPECT_TRUE(line.starts_with("registries/services/records/mairie|nom|string_value: \"Mairie de Lyon\"|"))
        << line;
    EXPECT_NE(line.find(absl::StrCat("|", kLyon, "|")), std::string::npos) << line;
    EXPECT_EQ(Conflicts(m), Conflicts(members_[0])) << m.siren;
  }
  // The CLI, for one record.
  std::string out;
  ASSERT_EQ(testing::RunCommand(absl::StrCat("INTERCO_TLS_DIR=", ClientTlsDir(kAbergement, "viewer"),
                                             " ", testing::BinaryPath("interco"),
                                             " --addr=127.0.0.1:", members_[2].node->api_port(),
                                             " conflicts services mairie"),
                                &out),
            0)
      << out;
  EXPECT_NE(out.find("Mairie de Lyon"), std::string::npos) << out;
  EXPECT_NE(out.find(kLyon), std::string::npos) << out;
  EXPECT_NE(out.find(kAbergement), std::string::npos) << out;

  // Bourg renames it knowing the current name: no new conflict anywhere.
  update(members_[1], "nom", text("Mairie de Bourg"));
  ASSERT_TRUE(WaitForConvergence(30, &state));
  EXPECT_NE(state.at("registries/services/records/mairie").find("Bourg"), std::string::npos);
  ASSERT_TRUE(journaled_everywhere(1));

  // A delete ends the record's races.
  DeleteRecord(members_[0], "mairie");
  ASSERT_TRUE(journaled_everywhere(0));
  for (const auto& m : members_) {
    int64_t count = -1;
    Conflicts(m, &count);
    EXPECT_EQ(count, 0) << m.siren;
  }
  // Each store is consistent: journals of live records only, adding up to the counts.
  StopAndCheckStores();
}

// Lyon, the owner, keeps lost writes in the journals for 6 seconds.
class JournalRetentionTest : public FederationTest {
 protected:
  std::vector<std::string> ExtraArgs() const override {
    return {"--journal_retention_seconds=6"};
  }
};

// A race lost while cut off leaves every journal once older than the owner's retention,
// whichever node got the loser before or after the owner's collection said so.
TEST_F(JournalRetentionTest, ALostWriteLeavesEveryJournalAfterTheOwnersRetention) {
  auto rename = [&](const Member& m, const char* nom) { Put(m, "mairie", nom); };
  std::map<std::string, std::string> state;
  rename(members_[0], "Mairie");
  ASSERT_TRUE(WaitForConvergence(30, &state));
  members_[1].node->Kill();
  rename(members_[0], "Mairie de Lyon");
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  rename(members_[2], "Mairie de L'Abergement");
  std::string error;
  ASSERT_TRUE(members_[1].node->Start(&error)) << error;
  ASSERT_TRUE(WaitForConvergence(60, &state));

  // Lyon journaled its own write when L'Abergement's arrived (no cut was in force then:
  // there was nothing to cut), then cut it with the retention; so does every node.
  bool gone = false;
  for (int i = 0; i < 300 && !gone; ++i) {
    gone = Summary(members_[0]).expired_conflicts() == 1;
    for (const auto& m : members_) gone = gone && Conflicts(m).empty();
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(gone) << "the lost write is still journaled 30 s after the race";
  for (const auto& m : members_) {
    int64_t count = -1;
    EXPECT_TRUE(Conflicts(m, &count).empty()) << m.siren;
    EXPECT_EQ(count, 0) << m.siren;
    EXPECT_LE(Summary(m).expired_conflicts(), 1u) << m.siren;
  }
  const std::string out = Info(members_[0]);
  EXPECT_THAT(out, ::testing::HasSubstr("1 lost writes past retention")) << out;
  // The value itself is untouched, and each store is consistent.
  EXPECT_THAT(state.at("registries/services/records/mairie"), ::testing::HasSubstr("Abergement"));
  StopAndCheckStores();
}

// Lyon, the owner, leaves out of its collections a member that has not caught up with
// what it held 15 seconds before (the shortest retention accepted: members report every
// 5 s).
class MemberRetentionTest : public FederationTest {
 protected:
  std::vector<std::string> ExtraArgs() const override {
    return {"--member_retention_seconds=15"};
  }
  // The members `m`'s view of the registry's tree leaves out.
  static std::vector<std::string> LeftOut(const Member& m) {
    grpc::ClientContext ctx;
    v1::NodeInfo info;
    EXPECT_TRUE(v1::NodeService::NewStub(MtlsChannel(m.node->api_port(), ClientTlsDir(m.siren)))
                    ->GetNodeInfo(&ctx, v1::GetNodeInfoRequest(), &info)
                    .ok());
    for (const auto& t : info.trees()) {
      if (t.registry() == "services") return {t.left_out().begin(), t.left_out().end()};
    }
    return {};
  }
};

// L'Abergement is cut off for good, as far as anyone knows, and writes meanwhile; Lyon
// leaves it out and collects without it. When it comes back, what it wrote while left out
// is refused everywhere (kept aside on L'Abergement), it converges with the others, and
// what it writes from then on is taken by all.
TEST_F(MemberRetentionTest, AMemberAbsentLongerThanTheRetentionIsLeftOutThenComesBack) {
  std::map<std::string, std::string> state;
  Put(members_[0], "piscine", "Piscine");
  ASSERT_TRUE(WaitForConvergence(30, &state));

  // L'Abergement goes on alone (a port nobody dials, no peer), and writes.
  members_[2].node->Kill();
  members_[2].node = std::make_unique<NodeProcess>(OptionsOf(members_[2], /*isolated=*/true));
  std::string error;
  ASSERT_TRUE(members_[2].node->Start(&error)) << error;
  Put(members_[2], "gymnase", "Gymnase (écrit hors ligne)");

  // Meanwhile Lyon creates and deletes a record: its tombstone waits for every member...
  Put(members_[0], "stade", "Stade");
  DeleteRecord(members_[0], "stade");
  // ...until L'Abergement has been behind for the retention: Lyon leaves it out, and its
  // collection goes to Bourg.
  bool collected = false;
  for (int i = 0; i < 300 && !collected; ++i) {
    collected = Summary(members_[0]).collected_records() >= 1 &&
                Summary(members_[1]).collected_records() >= 1;
    if (!collected) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(collected) << "no collection without the absent member within 30 s";
  EXPECT_THAT(LeftOut(members_[0]), ::testing::ElementsAre(kAbergement));

  // L'Abergement comes back.
  members_[2].node->Kill();
  members_[2].node = std::make_unique<NodeProcess>(OptionsOf(members_[2]));
  ASSERT_TRUE(members_[2].node->Start(&error)) << error;
  ASSERT_TRUE(WaitForConvergence(60, &state));
  EXPECT_FALSE(state.contains("registries/services/records/gymnase"))
      << "a write made while left out was taken";
  EXPECT_TRUE(state.contains("registries/services/records/piscine"));
  EXPECT_EQ(Summary(members_[2]).refused_own_changes(), 1u);
  const std::string out = Info(members_[2]);
  EXPECT_THAT(out, ::testing::HasSubstr("1 own writes refused")) << out;

  // What it writes now, in its new epoch, everyone takes; and it counts again.
  Put(members_[2], "mediatheque", "Médiathèque");
  ASSERT_TRUE(WaitForConvergence(60, &state));
  EXPECT_TRUE(state.contains("registries/services/records/mediatheque"));
  bool back = false;
  for (int i = 0; i < 300 && !back; ++i) {
    back = LeftOut(members_[0]).empty();
    if (!back) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(back) << "L'Abergement is still left out 30 s after it came back";
  StopAndCheckStores();
}

class CompactionTest : public FederationTest {
 protected:
  // History older than a second is compacted, after every 8 changes the frontier passes.
  std::vector<std::string> ExtraArgs() const override {
    return {"--journal_retention_seconds=1", "--compaction_changes=8"};
  }
};

// Lyon and Bourg rename their records again and again; every node makes the superseded
// batches of its log hollow, and folds each stretch of them into one skip in place.
// L'Abergement, which never wrote, then loses its disk and starts empty, like a
// brand-new node: it catches up from the compacted logs to the same records, each
// stretch of hollow batches as one skip.
TEST_F(CompactionTest, ANewNodeCatchesUpFromCompactedLogs) {
  for (int i = 0; i < 20; ++i) {
    Put(members_[0], "piscine", absl::StrCat("Piscine ", i).c_str());
    Put(members_[1], "stade", absl::StrCat("Stade ", i).c_str());
  }
  // Writes go on (the frontier must pass 8 more changes for the next collection) until
  // every node compacted: the 18 renames between the create and the last of each record
  // (the renames of the mairie count too).
  bool compacted = false;
  for (int i = 0; i < 60 && !compacted; ++i) {
    Put(members_[0], "mairie", absl::StrCat("Mairie ", i).c_str());
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    compacted = true;
    for (const auto& m : members_) {
      const v1::RegistrySummary summary = Summary(m);
      compacted = compacted && summary.hollowed_batches() >= 36 && summary.folded_batches() > 0;
    }
  }
  ASSERT_TRUE(compacted) << "the logs were not compacted and folded within 30 s";
  std::map<std::string, std::string> state;
  ASSERT_TRUE(WaitForConvergence(30, &state));
  EXPECT_THAT(Info(members_[1]), ::testing::HasSubstr("log batches hollow"));
  EXPECT_THAT(Info(members_[1]), ::testing::HasSubstr("folded into skips"));

  members_[2].node->Kill();
  std::filesystem::remove_all(absl::StrCat(dir_, "/", kAbergement));
  members_[2].node = std::make_unique<NodeProcess>(OptionsOf(members_[2]));
  std::string error;
  ASSERT_TRUE(members_[2].node->Start(&error)) << error;
  Declare(members_[2]);
  ASSERT_TRUE(WaitForConvergence(60, &state));
  EXPECT_THAT(state.at("registries/services/records/piscine"), ::testing::HasSubstr("Piscine 19"));
  EXPECT_THAT(state.at("registries/services/records/stade"), ::testing::HasSubstr("Stade 19"));
  // The 36 hollow batches (and the mairie's) arrive as skips, a few per origin: one per
  // stretch of hollow runs.
  const uint64_t hollow = Summary(members_[2]).hollow_received();
  EXPECT_GE(hollow, 2u) << "the new node did not catch up from hollow batches";
  EXPECT_LT(hollow, 36u) << "stretches of hollow batches did not arrive as skips";
  uint64_t skips = 0;
  const v1::NodeInfo info = NodeInfoOf(members_[2]);
  for (const auto& p : info.peers()) skips += p.skips_applied();
  EXPECT_GE(skips, 2u);
  EXPECT_THAT(Info(members_[2]), ::testing::HasSubstr("received hollow"));
  StopAndCheckStores();
}

class DivergenceTest : public FederationTest {
 protected:
  // Digests at every status (every 5 s), and repairs started by the nodes themselves.
  std::vector<std::string> ExtraArgs() const override {
    return {"--digest_interval_seconds=1", "--auto_repair"};
  }

  // What `m` says of its peer `peer` (NodeInfo).
  static v1::PeerStatus PeerOf(const Member& m, const std::string& peer) {
    const v1::NodeInfo info = NodeInfoOf(m);
    for (const auto& p : info.peers()) {
      if (p.authority() == peer) return p;
    }
    return v1::PeerStatus();
  }
};

// Bourg's copy goes wrong outside the change logs while it is down: a record that no
// batch carries appears in its store, at the same position as its peers. Each peer's
// digest check notices; Lyon and L'Abergement repair from Bourg by themselves, Bourg
// (started without --auto_repair) only warns, and once the copies agree the digests
// match again.
TEST_F(DivergenceTest, NodesNoticeACopyThatWentWrongOutsideTheLogsAndRepairIt) {
  Put(members_[0], "piscine", "Piscine");
  std::map<std::string, std::string> state;
  ASSERT_TRUE(WaitForConvergence(30, &state));
  // Converged copies: digests go and match.
  bool matched = false;
  for (int i = 0; i < 150 && !matched; ++i) {
    matched = PeerOf(members_[0], kBourg).digests_matched() > 0 &&
              PeerOf(members_[1], kLyon).digests_matched() > 0;
    if (!matched) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(matched) << "no digest compared within 15 s";
  EXPECT_EQ(PeerOf(members_[0], kBourg).divergences(), 0u);

  ASSERT_EQ(members_[1].node->Terminate() & 0x7f, 0);
  {
    node::SystemClock clock;
    testing::StoreNode bourg{kBourg, absl::StrCat(dir_, "/", kBourg), nullptr};
    ASSERT_TRUE(bourg.Open(clock).ok());
    replication::RecordState ghost;
    ghost.set_causal_length(1);
    ghost.set_cl_hlc(uint64_t{1} << 40);
    ghost.set_cl_origin(*replication::SirenToOrigin(kBourg));
    auto* f = ghost.add_fields();
    f->set_name("nom");
    f->set_hlc(uint64_t{1} << 40);
    f->set_origin(*replication::SirenToOrigin(kBourg));
    f->mutable_value()->set_string_value("Fantome");
    auto merged = bourg.store->Repair("services", *replication::SirenToOrigin(kLyon),
                                      std::numeric_limits<uint64_t>::max(), {{"fantome", ghost}},
                                      bourg.admin());
    ASSERT_TRUE(merged.ok()) << merged.status();
    ASSERT_EQ(*merged, 1u);
  }
  NodeProcess::Options o = OptionsOf(members_[1]);
  std::erase(o.extra_args, std::string("--auto_repair"));
  members_[1].node = std::make_unique<NodeProcess>(o);
  std::string error;
  ASSERT_TRUE(members_[1].node->Start(&error)) << error;

  // Nothing travels by the logs: the peers repair from Bourg.
  ASSERT_TRUE(WaitForConvergence(60, &state));
  EXPECT_THAT(state.at("registries/services/records/fantome"), ::testing::HasSubstr("Fantome"));
  const v1::PeerStatus lyon_of_bourg = PeerOf(members_[0], kBourg);
  EXPECT_GE(lyon_of_bourg.divergences(), 1u);
  EXPECT_GE(lyon_of_bourg.auto_repairs(), 1u);
  EXPECT_GE(PeerOf(members_[2], kBourg).auto_repairs(), 1u);
  // Then every digest matches again, and nobody reports a divergence any more.
  bool clear = false;
  for (int i = 0; i < 300 && !clear; ++i) {
    clear = true;
    for (const auto& [m, peer] :
         std::vector<std::pair<const Member*, std::string>>{{&members_[0], kBourg},
                                                            {&members_[1], kLyon},
                                                            {&members_[1], kAbergement},
                                                            {&members_[2], kBourg}}) {
      const v1::PeerStatus p = PeerOf(*m, peer);
      clear = clear && p.diverged_registries_size() == 0 && p.digests_matched() > 0;
    }
    if (!clear) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(clear) << Info(members_[1]);
  // Bourg saw its peers' copies differ from its own and repaired nothing itself.
  const v1::PeerStatus bourg_of_lyon = PeerOf(members_[1], kLyon);
  EXPECT_EQ(bourg_of_lyon.auto_repairs(), 0u);
  EXPECT_GE(bourg_of_lyon.divergences() + PeerOf(members_[1], kAbergement).divergences(), 1u);
  StopAndCheckStores();
}

TEST_F(FederationTest, ConcurrentIncrementsOfACounterAllCount) {
  constexpr int kIncrementsPerNode = 15;
  {
    v1::UpdateRecordRequest req;
    req.mutable_record()->set_name("registries/services/records/compteur");
    (*req.mutable_record()->mutable_fields())["visites"].set_int64_value(0);
    req.mutable_update_mask()->add_paths("visites");
    req.set_allow_missing(true);
    grpc::ClientContext ctx;
    v1::Record out;
    ASSERT_TRUE(Stub(members_[0])->UpdateRecord(&ctx, req, &out).ok());
  }
  // The record reaches every node before they start.
  for (auto& m : members_) {
    bool there = false;
    for (int i = 0; i < 300 && !there; ++i) {
      grpc::ClientContext ctx;
      v1::GetRecordRequest get;
      get.set_name("registries/services/records/compteur");
      v1::Record r;
      there = Stub(m)->GetRecord(&ctx, get, &r).ok();
      if (!there) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ASSERT_TRUE(there) << m.siren;
  }
  std::atomic<int> aborted{0};
  std::vector<std::thread> clients;
  for (auto& m : members_) {
    clients.emplace_back([&, member = &m] {
      auto stub = Stub(*member);
      for (int done = 0; done < kIncrementsPerNode;) {
        grpc::ClientContext get_ctx;
        v1::GetRecordRequest get;
        get.set_name("registries/services/records/compteur");
        v1::Record current;
        if (!stub->GetRecord(&get_ctx, get, &current).ok()) continue;
        v1::UpdateRecordRequest req;
        req.mutable_record()->set_name(current.name());
        (*req.mutable_record()->mutable_fields())["visites"].set_int64_value(
            current.fields().at("visites").int64_value() + 1);
        req.mutable_update_mask()->add_paths("visites");
        req.set_etag(current.etag());
        grpc::ClientContext ctx;
        v1::Record out;
        grpc::Status s = stub->UpdateRecord(&ctx, req, &out);
        if (s.ok()) {
          ++done;
        } else if (s.error_code() == grpc::StatusCode::ABORTED) {
          ++aborted;  // a remote increment arrived between the read and the write
        } else {
          ADD_FAILURE() << s.error_message();
          return;
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  std::map<std::string, std::string> state;
  ASSERT_TRUE(WaitForConvergence(60, &state));
  const std::string& fields = state.at("registries/services/records/compteur");
  EXPECT_NE(fields.find(absl::StrCat("visites=int64_value: ", 3 * kIncrementsPerNode)),
            std::string::npos)
      << fields << " (" << aborted << " increments retried)";
}

// A node certificate rotated (certs/pki.sh renew) while a sync stream carries a write
// load: the running session is not cut, nothing is lost, batches signed before and after
// the rotation carry different signer certificates, and both verify offline.
TEST(RotationTest, NodeCertificateRotatedDuringSyncLosesNothing) {
  const std::string dir = testing::MakeTempDir("rotation");
  const std::string pki = dir + "/pki";
  std::string out;
  ASSERT_EQ(testing::RunCommand(absl::StrCat("bash ", INTERCO_TEST_SOURCE_DIR, "/certs/dev-certs.sh ",
                                             pki, " ", testing::kFederation, " ", kLyon, " ", kBourg),
                                &out),
            0)
      << out;
  const int lyon_port = testing::FreePort(), bourg_port = testing::FreePort();
  auto start = [&](const std::string& siren, int port, const std::string& peer, int peer_port) {
    NodeProcess::Options o;
    o.authority = siren;
    o.data_dir = absl::StrCat(dir, "/", siren);
    o.tls_dir = absl::StrCat(pki, "/nodes/", siren);
    o.extra_args = {absl::StrCat("--peer_listen=127.0.0.1:", port),
                    absl::StrCat("--peers=", peer, "@127.0.0.1:", peer_port)};
    auto node = std::make_unique<NodeProcess>(o);
    std::string error;
    EXPECT_TRUE(node->Start(&error)) << error;
    return node;
  };
  auto lyon = start(kLyon, lyon_port, kBourg, bourg_port);
  auto bourg = start(kBourg, bourg_port, kLyon, lyon_port);
  auto stub = [&](NodeProcess& node, const std::string& siren, const std::string& client) {
    return v1::RegistryService::NewStub(
        MtlsChannel(node.api_port(), absl::StrCat(pki, "/clients/", siren, "/", client)));
  };
  for (auto [node, siren] : {std::pair{lyon.get(), kLyon}, std::pair{bourg.get(), kBourg}}) {
    const v1::CreateRegistryRequest req = LyonRegistryReadByBourg("services");
    grpc::ClientContext ctx;
    v1::Registry reg;
    ASSERT_TRUE(stub(*node, siren, "admin")->CreateRegistry(&ctx, req, &reg).ok());
  }

  // At least kWrites, and 20 more once Lyon signs with its renewed certificate (it reads
  // its certificate again once a second, when it signs).
  constexpr int kWrites = 300;
  std::atomic<int> acked{0}, written{0};
  std::atomic<bool> rotated{false}, done{false};
  std::thread writer([&] {
    auto app = stub(*lyon, kLyon, "app");
    for (int i = 0, after = 0; i < 3 * kWrites && (i < kWrites || after < 20); ++i) {
      if (rotated) after++;
      written++;
      v1::CreateRecordRequest req;
      req.set_parent("registries/services");
      req.set_record_id(absl::StrCat("r", 1000 + i));
      (*req.mutable_record()->mutable_fields())["nom"].set_string_value(absl::StrCat("service ", i));
      grpc::ClientContext ctx;
      v1::Record r;
      if (app->CreateRecord(&ctx, req, &r).ok()) acked++;
      std::this_thread::sleep_for(std::chrono::milliseconds(8));
    }
    done = true;
  });
  while (acked < kWrites / 3 && !done) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const int renew_rc = testing::RunCommand(
      absl::StrCat("bash ", INTERCO_TEST_SOURCE_DIR, "/certs/pki.sh --dir ", pki, " renew nodes/",
                   kLyon),
      &out);
  for (int i = 0; i < 600 && renew_rc == 0 && !done &&
                  lyon->Log().find("batch signing key rotated") == std::string::npos;
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  rotated = true;
  writer.join();
  ASSERT_EQ(renew_rc, 0) << out;
  const int total_written = written.load();
  ASSERT_EQ(acked.load(), total_written);

  // Everything reaches Bourg.
  auto reader = stub(*bourg, kBourg, "viewer");
  int count = 0;
  for (int i = 0; i < 300 && count < total_written; ++i) {
    v1::ListRecordsRequest req;
    req.set_parent("registries/services");
    req.set_page_size(1000);
    grpc::ClientContext ctx;
    v1::ListRecordsResponse resp;
    if (reader->ListRecords(&ctx, req, &resp).ok()) count = resp.records_size();
    if (count < total_written) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(count, total_written);

  // The first and last records were signed by different certificates of Lyon; both proofs
  // verify against the federation CA.
  auto signer_of = [&](const std::string& id) {
    grpc::ClientContext ctx;
    v1::GetRecordProvenanceRequest req;
    req.set_name(absl::StrCat("registries/services/records/", id));
    v1::RecordProvenance p;
    EXPECT_TRUE(reader->GetRecordProvenance(&ctx, req, &p).ok());
    auto verified = node::VerifyProvenance(p, pki + "/ca.crt");
    EXPECT_TRUE(verified.ok()) << id << ": " << verified.status();
    if (p.batches_size() == 0) return std::string();
    const v1::ProvenanceBatch& b = p.batches(0);
    return b.signature().empty() ? b.following_signer() : b.signer();
  };
  const std::string before = signer_of("r1000");
  const std::string after = signer_of(absl::StrCat("r", 1000 + total_written - 1));
  EXPECT_FALSE(before.empty());
  EXPECT_NE(before, after) << "the rotated certificate did not sign the later batches";

  // One session all along: the rotation did not cut it.
  std::ifstream log(bourg->log_path());
  std::stringstream ss;
  ss << log.rdbuf();
  const std::string text = ss.str();
  size_t ups = 0;
  for (size_t at = 0; (at = text.find(absl::StrCat("peer session with ", kLyon, " up"), at)) != std::string::npos; ++at) ups++;
  EXPECT_EQ(ups, 1u) << text;
  EXPECT_EQ(lyon->Terminate() & 0x7f, 0);
  EXPECT_EQ(bourg->Terminate() & 0x7f, 0);
}

// A deleted record's tombstone goes once the delete is causally stable: Lyon, the owner,
// collects it, and each node applies the collection at the same point of Lyon's chain.
// Created again afterwards, the record starts a new life everywhere. A removed element of
// another record's set goes the same way.
TEST_F(FederationTest, AStableDeleteIsCollectedOnEveryNode) {
  auto put = [&](const Member& m, const std::string& nom) {
    v1::UpdateRecordRequest req;
    req.mutable_record()->set_name("registries/services/records/marche");
    (*req.mutable_record()->mutable_fields())["nom"].set_string_value(nom);
    req.mutable_update_mask()->add_paths("nom");
    req.set_allow_missing(true);
    grpc::ClientContext ctx;
    v1::Record out;
    ASSERT_TRUE(Stub(m)->UpdateRecord(&ctx, req, &out).ok()) << m.siren;
  };
  auto collected = [&](const Member& m) { return Summary(m).collected_records(); };
  auto channels = [&](const Member& m, std::vector<std::string> values) {
    v1::UpdateRecordRequest req;
    req.mutable_record()->set_name("registries/services/records/halle");
    auto* set = (*req.mutable_record()->mutable_fields())["canaux"].mutable_string_set_value();
    for (const std::string& v : values) set->add_values(v);
    req.mutable_update_mask()->add_paths("canaux");
    req.set_allow_missing(true);
    grpc::ClientContext ctx;
    v1::Record out;
    ASSERT_TRUE(Stub(m)->UpdateRecord(&ctx, req, &out).ok()) << m.siren;
  };
  std::map<std::string, std::string> state;
  channels(members_[0], {"guichet", "telephone"});
  ASSERT_TRUE(WaitForConvergence(30, &state));
  channels(members_[2], {"guichet"});  // removes Lyon's "telephone"
  put(members_[2], "Marché du samedi");
  ASSERT_TRUE(WaitForConvergence(30, &state));
  DeleteRecord(members_[1], "marche");
  // Reports of what each node holds cross one link per 5 s status: within a minute,
  // every node has applied Lyon's collection.
  bool everywhere = false;
  for (int i = 0; i < 600 && !everywhere; ++i) {
    everywhere = true;
    for (const auto& m : members_) everywhere = everywhere && collected(m) == 1;
    if (!everywhere) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (const auto& m : members_) EXPECT_EQ(collected(m), 1u) << m.siren;
  // The removed channel too (in the same collection or a later one), everywhere.
  everywhere = false;
  for (int i = 0; i < 600 && !everywhere; ++i) {
    everywhere = true;
    for (const auto& m : members_) everywhere = everywhere && Summary(m).collected_removals() == 1;
    if (!everywhere) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (const auto& m : members_) EXPECT_EQ(Summary(m).collected_removals(), 1u) << m.siren;
  put(members_[2], "Marche du dimanche");
  ASSERT_TRUE(WaitForConvergence(30, &state));
  EXPECT_THAT(state.at("registries/services/records/marche"),
              ::testing::HasSubstr("Marche du dimanche"));
}

// Repair through the admin API and the CLI: converged copies compare in one request; a
// registry filled on Lyon before Bourg held it is brought over by repair as well as by the
// change log (whichever comes first, the other changes nothing); refusals name why.
TEST_F(FederationTest, RepairComparesCopiesThroughTheAdminApi) {
  auto repair = [&](const Member& m, const std::string& registry, const std::string& peer,
                    const char* client, std::string* out) {
    return testing::RunCommand(
        absl::StrCat("INTERCO_TLS_DIR=", ClientTlsDir(m.siren, client), " ",
                     testing::BinaryPath("interco"), " --addr=127.0.0.1:", m.node->api_port(),
                     " repair ", registry, " --peer ", peer, " 2>&1"),
        out);
  };
  for (int i = 0; i < 20; ++i) {
    v1::UpdateRecordRequest req;
    req.mutable_record()->set_name(absl::StrCat("registries/services/records/r", i));
    (*req.mutable_record()->mutable_fields())["nom"].set_string_value(absl::StrCat("Salle ", i));
    req.mutable_update_mask()->add_paths("nom");
    req.set_allow_missing(true);
    grpc::ClientContext ctx;
    v1::Record out;
    ASSERT_TRUE(Stub(members_[i % 3])->UpdateRecord(&ctx, req, &out).ok());
  }
  std::map<std::string, std::string> state;
  ASSERT_TRUE(WaitForConvergence(30, &state));
  std::string out;
  ASSERT_EQ(repair(members_[1], "services", kLyon, "admin", &out), 0) << out;
  EXPECT_THAT(out, ::testing::HasSubstr("registries/services against 200046977: 0 buckets differ"));
  EXPECT_THAT(out, ::testing::HasSubstr("1 requests"));

  // A registry of 200 records on Lyon, then declared on Bourg: repair right away.
  auto create = [&](const Member& m) {
    const v1::CreateRegistryRequest req = LyonRegistryReadByBourg("salles");
    grpc::ClientContext ctx;
    v1::Registry created;
    grpc::Status s = v1::RegistryService::NewStub(
                         MtlsChannel(m.node->api_port(), ClientTlsDir(m.siren, "admin")))
                         ->CreateRegistry(&ctx, req, &created);
    ASSERT_TRUE(s.ok()) << s.error_message();
  };
  create(members_[0]);
  for (int i = 0; i < 200; ++i) {
    v1::CreateRecordRequest req;
    req.set_parent("registries/salles");
    req.set_record_id(absl::StrCat("s", i));
    (*req.mutable_record()->mutable_fields())["nom"].set_string_value(absl::StrCat("Salle ", i));
    grpc::ClientContext ctx;
    v1::Record created;
    ASSERT_TRUE(Stub(members_[0])->CreateRecord(&ctx, req, &created).ok());
  }
  create(members_[1]);
  ASSERT_EQ(repair(members_[1], "salles", kLyon, "admin", &out), 0) << out;
  // Then both agree, whatever came first.
  bool agree = false;
  for (int i = 0; i < 300 && !agree; ++i) {
    ASSERT_EQ(repair(members_[1], "salles", kLyon, "admin", &out), 0) << out;
    agree = out.find(": 0 buckets differ") != std::string::npos;
    if (!agree) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(agree) << out;
  {
    grpc::ClientContext ctx;
    v1::GetRegistryRequest get;
    get.set_name("registries/salles");
    v1::Registry r;
    ASSERT_TRUE(Stub(members_[1])->GetRegistry(&ctx, get, &r).ok());
    EXPECT_EQ(r.record_count(), 200);
  }

  // Refusals: a peer that is not configured, a caller that is not an admin, a registry
  // the peer may not let this node read.
  EXPECT_EQ(repair(members_[2], "services", kLyon, "admin", &out), 1);
  EXPECT_THAT(out, ::testing::HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(out, ::testing::HasSubstr("200046977 is not a configured peer of this node"));
  EXPECT_EQ(repair(members_[1], "services", kLyon, "app", &out), 1);
  EXPECT_THAT(out, ::testing::HasSubstr("PERMISSION_DENIED"));
  EXPECT_EQ(repair(members_[1], "inconnu", kLyon, "admin", &out), 1);
  EXPECT_THAT(out, ::testing::HasSubstr("NOT_FOUND"));
  create(members_[2]);  // L'Abergement declares it, but Lyon's policy does not let it read
  EXPECT_EQ(repair(members_[2], "salles", kBourg, "admin", &out), 1);
  EXPECT_THAT(out, ::testing::HasSubstr("PERMISSION_DENIED"));
  EXPECT_THAT(out, ::testing::HasSubstr("may not read registry salles"));
}

}  // namespace
}  // namespace interco
