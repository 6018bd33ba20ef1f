// A registry policy changed on its owner's node while the federation runs: three real
// node processes in a line over loopback mTLS (Lyon, the owner - Bourg - L'Abergement),
// the policy set with the CLI from the owner's directory of EPCIs (the official list,
// tools/data/fr/epci.csv), relayed through Bourg, and enforced on every node.
#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "interco/v1/node_service.grpc.pb.h"
#include "interco/v1/registry_service.grpc.pb.h"
#include "tests/testing/test_env.h"

namespace interco {
namespace {

using ::interco::testing::BinaryPath;
using ::interco::testing::ClientTlsDir;
using ::interco::testing::kAbergement;
using ::interco::testing::kBourg;
using ::interco::testing::kLyon;
using ::interco::testing::MtlsChannel;
using ::interco::testing::NodeProcess;
using ::interco::testing::RunCommand;
using ::testing::HasSubstr;

// CC de la Dombes, of which L'Abergement-Clémenciat (01001) is a member.
constexpr char kDombes[] = "200069193";

struct Member {
  std::string siren;
  int peer_port = 0;
  std::unique_ptr<NodeProcess> node;
};

class PolicyChangeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("policy-change");
    members_.resize(3);
    members_[0].siren = kLyon;
    members_[1].siren = kBourg;
    members_[2].siren = kAbergement;
    for (auto& m : members_) m.peer_port = testing::FreePort();
    const std::map<std::string, std::vector<int>> peers = {
        {kLyon, {1}}, {kBourg, {0, 2}}, {kAbergement, {1}}};
    for (auto& m : members_) {
      NodeProcess::Options o;
      o.authority = m.siren;
      o.data_dir = absl::StrCat(dir_, "/", m.siren);
      o.extra_args.push_back(absl::StrCat("--peer_listen=127.0.0.1:", m.peer_port));
      std::vector<std::string> list;
      for (int i : peers.at(m.siren)) {
        list.push_back(absl::StrCat(members_[i].siren, "@127.0.0.1:", members_[i].peer_port));
      }
      o.extra_args.push_back(absl::StrCat("--peers=", absl::StrJoin(list, ",")));
      m.node = std::make_unique<NodeProcess>(o);
      std::string error;
      ASSERT_TRUE(m.node->Start(&error)) << error;
    }
    // Every node declares "services", owned by Lyon, writable by Lyon alone, readable
    // by all.
    const std::string def = Write("services.json", R"({
      "owner": "200046977",
      "policy": {"readers": {"allAuthorities": true}},
      "schema": {"fields": [{"name": "nom", "type": "FIELD_TYPE_STRING"}]}})");
    for (auto& m : members_) {
      std::string out;
      ASSERT_EQ(Cli(m, "admin", absl::StrCat("registry create services ", def), &out), 0) << out;
    }
  }

  std::string Write(const std::string& name, const std::string& content) {
    const std::string path = absl::StrCat(dir_, "/", name);
    std::ofstream(path) << content;
    return path;
  }

  int Cli(const Member& m, const std::string& client, const std::string& args,
          std::string* out) {
    out->clear();
    return RunCommand(absl::StrCat("INTERCO_TLS_DIR=", ClientTlsDir(m.siren, client), " ",
                                   BinaryPath("interco"), " --addr=127.0.0.1:",
                                   m.node->api_port(), " ", args, " 2>&1"),
                      out);
  }

  v1::Registry Services(const Member& m) {
    auto stub =
        v1::RegistryService::NewStub(MtlsChannel(m.node->api_port(), ClientTlsDir(m.siren)));
    grpc::ClientContext ctx;
    v1::GetRegistryRequest req;
    req.set_name("registries/services");
    v1::Registry out;
    EXPECT_TRUE(stub->GetRegistry(&ctx, req, &out).ok());
    return out;
  }

  grpc::Status Put(const Member& m, const std::string& id, const std::string& nom) {
    auto stub =
        v1::RegistryService::NewStub(MtlsChannel(m.node->api_port(), ClientTlsDir(m.siren)));
    grpc::ClientContext ctx;
    v1::UpdateRecordRequest req;
    req.mutable_record()->set_name(absl::StrCat("registries/services/records/", id));
    (*req.mutable_record()->mutable_fields())["nom"].set_string_value(nom);
    req.set_allow_missing(true);
    v1::Record out;
    return stub->UpdateRecord(&ctx, req, &out);
  }

  bool HasRecord(const Member& m, const std::string& id) {
    auto stub =
        v1::RegistryService::NewStub(MtlsChannel(m.node->api_port(), ClientTlsDir(m.siren)));
    grpc::ClientContext ctx;
    v1::GetRecordRequest req;
    req.set_name(absl::StrCat("registries/services/records/", id));
    v1::Record out;
    return stub->GetRecord(&ctx, req, &out).ok();
  }

  // Waits (bounded) until `m` has applied policy version `version`.
  bool WaitForPolicy(const Member& m, uint64_t version) {
    for (int i = 0; i < 300; ++i) {
      if (Services(m).policy_version() == version) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  bool WaitForRecord(const Member& m, const std::string& id) {
    for (int i = 0; i < 300; ++i) {
      if (HasRecord(m, id)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }

  // The last lines of every node's log, for failure messages.
  std::string Logs() {
    std::string out;
    for (const auto& m : members_) {
      std::ifstream in(m.node->log_path());
      std::vector<std::string> lines;
      for (std::string line; std::getline(in, line);) lines.push_back(line);
      out += absl::StrCat("--- ", m.siren, "\n");
      auto node =
          v1::NodeService::NewStub(MtlsChannel(m.node->api_port(), ClientTlsDir(m.siren)));
      grpc::ClientContext ctx;
      v1::NodeInfo info;
      if (node->GetNodeInfo(&ctx, v1::GetNodeInfoRequest(), &info).ok()) {
        for (const auto& p : info.peers()) out += p.ShortDebugString() + "\n";
      }
      for (size_t i = lines.size() > 15 ? lines.size() - 15 : 0; i < lines.size(); ++i) {
        out += lines[i] + "\n";
      }
    }
    return out;
  }

  std::string dir_;
  std::vector<Member> members_;
};

TEST_F(PolicyChangeTest, MembersOfAnEpciGainAndLoseWriteAccessOnEveryNode) {
  Member& lyon = members_[0];
  Member& bourg = members_[1];
  Member& abergement = members_[2];
  EXPECT_EQ(Put(abergement, "mairie", "Mairie").error_code(), grpc::StatusCode::PERMISSION_DENIED);

  // The owner's directory of EPCIs, from the official list.
  std::string out;
  ASSERT_EQ(Cli(lyon, "admin",
                absl::StrCat("registry create epci ", INTERCO_TEST_SOURCE_DIR,
                             "/tools/registries/epci.json"),
                &out),
            0)
      << out;
  ASSERT_EQ(Cli(lyon, "admin",
                absl::StrCat("import epci ", INTERCO_TEST_SOURCE_DIR,
                             "/tools/data/fr/epci.csv --key code --map population=populationTotale "
                             "--map membres_siren=membresSiren"),
                &out),
            0)
      << out;

  // Only the owner's node sets the policy; a partner's admin cannot.
  const std::string dombes = Write("dombes.json", absl::StrCat(R"({"writers": {"membersOf": [")",
                                                               kDombes, R"("]}, "readers": {"allAuthorities": true}})"));
  EXPECT_NE(Cli(bourg, "admin", absl::StrCat("registry set-policy services ", dombes), &out), 0);
  EXPECT_THAT(out, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_NE(Cli(lyon, "app", absl::StrCat("registry set-policy services ", dombes), &out), 0)
      << "a writer client is not an admin";
  EXPECT_THAT(out, HasSubstr("PERMISSION_DENIED"));

  ASSERT_EQ(Cli(lyon, "admin", absl::StrCat("registry set-policy services ", dombes), &out), 0)
      << out;
  EXPECT_THAT(out, HasSubstr("members of 200069193 (37 members)")) << "36 communes and the EPCI";
  const v1::Registry granted = Services(lyon);
  ASSERT_GT(granted.policy_version(), 0u);

  // The change travels through Bourg to L'Abergement, which may then write; its write
  // travels back to the owner.
  ASSERT_TRUE(WaitForPolicy(abergement, granted.policy_version())) << Logs();
  EXPECT_EQ(Services(bourg).policy_version(), granted.policy_version());
  grpc::Status put = Put(abergement, "mairie", "Mairie de L'Abergement-Clémenciat");
  ASSERT_TRUE(put.ok()) << put.error_message();
  EXPECT_TRUE(WaitForRecord(lyon, "mairie"));

  // The owner withdraws the grant: once L'Abergement has seen it, its writes are refused
  // there; what it wrote before stays everywhere.
  const std::string owner_only = Write("owner.json", R"({"readers": {"allAuthorities": true}})");
  ASSERT_EQ(Cli(lyon, "admin", absl::StrCat("registry set-policy services ", owner_only), &out), 0)
      << out;
  const v1::Registry withdrawn = Services(lyon);
  ASSERT_GT(withdrawn.policy_version(), granted.policy_version());
  ASSERT_TRUE(WaitForPolicy(abergement, withdrawn.policy_version())) << Logs();
  EXPECT_EQ(Put(abergement, "ecole", "École").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(HasRecord(bourg, "mairie"));
  EXPECT_TRUE(HasRecord(lyon, "mairie"));

  // Audit retention is each node's own setting, for its admins.
  ASSERT_EQ(Cli(bourg, "admin", "registry set-retention services 30", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("audit_retention_days:  30"));
  EXPECT_EQ(Services(bourg).audit_retention_days(), 30);
  EXPECT_EQ(Services(lyon).audit_retention_days(), 0) << "not replicated";
  EXPECT_NE(Cli(bourg, "app", "registry set-retention services 7", &out), 0);
  EXPECT_THAT(out, HasSubstr("PERMISSION_DENIED"));
  EXPECT_NE(Cli(bourg, "admin", "registry set-retention services 99999", &out), 0);
  EXPECT_THAT(out, HasSubstr("audit_retention_days"));

  // Nobody refused anything on the way: every batch was judged by the version it was
  // written under.
  auto node = v1::NodeService::NewStub(MtlsChannel(lyon.node->api_port(), ClientTlsDir(kLyon)));
  grpc::ClientContext ctx;
  v1::NodeInfo info;
  ASSERT_TRUE(node->GetNodeInfo(&ctx, v1::GetNodeInfoRequest(), &info).ok());
  for (const auto& p : info.peers()) EXPECT_EQ(p.unauthorized(), 0u) << p.authority();
}

}  // namespace
}  // namespace interco
