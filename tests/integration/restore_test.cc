// A node restored from an old copy of its store, with real processes over loopback mTLS.
// Its partners hold more of its change log than the copy does: the sequence numbers after
// the copy were already used. Restarted as is and writing before it hears from them, it
// reuses them: at first contact it receives its own original chain, sees the fork and
// freezes its own origin (loudly, with proof) instead of continuing silently.
// Restarted with `--new_epoch`, it writes on a new chain: nothing is frozen, and it gets
// its own lost changes back from its partners.
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "interco/v1/admin_service.grpc.pb.h"
#include "interco/v1/node_service.grpc.pb.h"
#include "interco/v1/registry_service.grpc.pb.h"
#include "tests/testing/test_env.h"

namespace interco {
namespace {

using ::interco::testing::ClientTlsDir;
using ::interco::testing::kBourg;
using ::interco::testing::kLyon;
using ::interco::testing::MtlsChannel;
using ::interco::testing::NodeProcess;

class RestoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("restore");
    lyon_port_ = testing::FreePort();
    bourg_port_ = testing::FreePort();
    bourg_ = Start(kBourg, bourg_port_, kLyon, lyon_port_);
    CreateRegistry(*bourg_, kBourg);
  }

  std::unique_ptr<NodeProcess> Start(const std::string& siren, int port, const std::string& peer,
                                     int peer_port, std::vector<std::string> extra = {}) {
    NodeProcess::Options o;
    o.authority = siren;
    o.data_dir = absl::StrCat(dir_, "/", siren);
    o.extra_args = {absl::StrCat("--peer_listen=127.0.0.1:", port),
                    absl::StrCat("--peers=", peer, "@127.0.0.1:", peer_port)};
    for (auto& e : extra) o.extra_args.push_back(std::move(e));
    auto node = std::make_unique<NodeProcess>(o);
    std::string error;
    EXPECT_TRUE(node->Start(&error)) << error;
    return node;
  }

  static void CreateRegistry(NodeProcess& node, const std::string& siren) {
    v1::CreateRegistryRequest req;
    req.set_registry_id("services");
    req.mutable_registry()->set_owner(kLyon);
    req.mutable_registry()->mutable_policy()->mutable_readers()->add_authorities(kBourg);
    auto* f = req.mutable_registry()->mutable_schema()->add_fields();
    f->set_name("nom");
    f->set_type(v1::FIELD_TYPE_STRING);
    grpc::ClientContext ctx;
    // The node has just started: wait for the channel rather than fail on a busy machine.
    ctx.set_wait_for_ready(true);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    v1::Registry out;
    auto stub = v1::RegistryService::NewStub(MtlsChannel(node.api_port(), ClientTlsDir(siren, "admin")));
    const grpc::Status s = stub->CreateRegistry(&ctx, req, &out);
    ASSERT_TRUE(s.ok()) << s.error_code() << ": " << s.error_message();
  }

  static void Write(NodeProcess& node, const std::string& id) {
    auto stub = v1::RegistryService::NewStub(MtlsChannel(node.api_port(), ClientTlsDir(kLyon)));
    grpc::ClientContext ctx;
    v1::CreateRecordRequest req;
    req.set_parent("registries/services");
    req.set_record_id(id);
    (*req.mutable_record()->mutable_fields())["nom"].set_string_value(id);
    v1::Record r;
    ASSERT_TRUE(stub->CreateRecord(&ctx, req, &r).ok()) << id;
  }

  static int64_t Count(NodeProcess& node, const std::string& siren) {
    auto stub = v1::RegistryService::NewStub(MtlsChannel(node.api_port(), ClientTlsDir(siren)));
    grpc::ClientContext ctx;
    v1::GetRegistryRequest req;
    req.set_name("registries/services");
    v1::Registry r;
    return stub->GetRegistry(&ctx, req, &r).ok() ? r.record_count() : -1;
  }

  // Within 60 s (a reconnection after a restart waits for the dialer's backoff, up to 5 s).
  static bool WaitForCount(NodeProcess& node, const std::string& siren, int64_t n) {
    for (int i = 0; i < 1200; ++i) {
      if (Count(node, siren) == n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  static v1::NodeInfo Info(NodeProcess& node, const std::string& siren) {
    auto stub = v1::NodeService::NewStub(MtlsChannel(node.api_port(), ClientTlsDir(siren)));
    grpc::ClientContext ctx;
    v1::NodeInfo info;
    EXPECT_TRUE(stub->GetNodeInfo(&ctx, v1::GetNodeInfoRequest(), &info).ok());
    return info;
  }

  // Lyon writes r1..r5, its store is copied, it writes r6..r10 (replicated to Bourg), then
  // the copy replaces its store. Returns with Lyon stopped.
  void WriteThenRestoreAnOldCopy() {
    auto lyon = Start(kLyon, lyon_port_, kBourg, bourg_port_);
    CreateRegistry(*lyon, kLyon);
    for (int i = 1; i <= 5; ++i) Write(*lyon, absl::StrCat("r", i));
    ASSERT_TRUE(WaitForCount(*bourg_, kBourg, 5));
    ASSERT_EQ(lyon->Terminate() & 0x7f, 0);
    std::string out;
    ASSERT_EQ(testing::RunCommand(absl::StrCat("cp -a ", dir_, "/", kLyon, " ", dir_, "/copy"), &out), 0) << out;
    lyon = Start(kLyon, lyon_port_, kBourg, bourg_port_);
    for (int i = 6; i <= 10; ++i) Write(*lyon, absl::StrCat("r", i));
    ASSERT_TRUE(WaitForCount(*bourg_, kBourg, 10));
    ASSERT_EQ(lyon->Terminate() & 0x7f, 0);
    ASSERT_EQ(testing::RunCommand(absl::StrCat("rm -rf ", dir_, "/", kLyon, " && mv ", dir_, "/copy ",
                                               dir_, "/", kLyon),
                                  &out),
              0)
        << out;
  }

  std::string dir_;
  int lyon_port_ = 0, bourg_port_ = 0;
  std::unique_ptr<NodeProcess> bourg_;
};

TEST_F(RestoreTest, WithANewEpochTheRestoredNodeForksNothingAndGetsItsChangesBack) {
  WriteThenRestoreAnOldCopy();
  std::string out;
  ASSERT_EQ(testing::RunCommand(absl::StrCat(testing::BinaryPath("interco-node"),
                                             " --new_epoch --authority=", kLyon, " --data_dir=", dir_,
                                             "/", kLyon, " --tls_dir=", testing::NodeTlsDir(kLyon)),
                                &out),
            0)
      << out;
  EXPECT_NE(out.find("origin epoch 2"), std::string::npos) << out;
  // Offline first: it writes before its partner is reachable (Bourg is stopped).
  ASSERT_EQ(bourg_->Terminate() & 0x7f, 0);
  auto lyon = Start(kLyon, lyon_port_, kBourg, bourg_port_);
  EXPECT_EQ(Info(*lyon, kLyon).epoch(), 2u);
  Write(*lyon, "r11");
  ASSERT_TRUE(bourg_->Start(&out)) << out;
  // Bourg applies r11 (a new chain) and sends back r6..r10 of the old one.
  EXPECT_TRUE(WaitForCount(*bourg_, kBourg, 11));
  EXPECT_TRUE(WaitForCount(*lyon, kLyon, 11)) << Count(*lyon, kLyon);
  const v1::NodeInfo info = Info(*bourg_, kBourg);
  EXPECT_EQ(info.frozen_origins_size(), 0);
  for (const auto& p : info.peers()) EXPECT_EQ(p.forks(), 0u);
}

TEST_F(RestoreTest, WithoutANewEpochTheReusedCountersAreAForkThatFreezesTheOrigin) {
  WriteThenRestoreAnOldCopy();
  std::string out;
  ASSERT_EQ(bourg_->Terminate() & 0x7f, 0);
  auto lyon = Start(kLyon, lyon_port_, kBourg, bourg_port_);
  EXPECT_EQ(Info(*lyon, kLyon).epoch(), 1u);
  Write(*lyon, "r6-bis");  // reuses sequence number 6
  ASSERT_TRUE(bourg_->Start(&out)) << out;
  // At first contact Lyon receives its own batch 7, chained to the original batch 6, not
  // to the one it just wrote: the node finds out that its store was an old copy and
  // freezes its own origin (it is not silently continued).
  v1::NodeInfo info;
  for (int i = 0; i < 1200 && info.frozen_origins_size() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    info = Info(*lyon, kLyon);
  }
  ASSERT_EQ(info.frozen_origins_size(), 1);
  EXPECT_EQ(info.frozen_origins(0).authority(), kLyon);
  EXPECT_EQ(info.frozen_origins(0).received_from(), kBourg);
  // Nothing of the second history reached Bourg, which keeps the first.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_EQ(Count(*bourg_, kBourg), 10);
  EXPECT_EQ(Info(*bourg_, kBourg).frozen_origins_size(), 0);
}

TEST_F(RestoreTest, ABackupPutBackInPlaceStartsANewEpochByItself) {
  auto lyon = Start(kLyon, lyon_port_, kBourg, bourg_port_);
  CreateRegistry(*lyon, kLyon);
  for (int i = 1; i <= 5; ++i) Write(*lyon, absl::StrCat("r", i));
  ASSERT_TRUE(WaitForCount(*bourg_, kBourg, 5));

  // Online, through the admin API: only an admin of the node's own authority, a good
  // name, once.
  auto backup = [&](const std::string& siren, const std::string& role, const std::string& id,
                    v1::Backup* out) {
    auto stub = v1::AdminService::NewStub(MtlsChannel(lyon->api_port(), ClientTlsDir(siren, role)));
    grpc::ClientContext ctx;
    v1::CreateBackupRequest req;
    req.set_backup_id(id);
    return stub->CreateBackup(&ctx, req, out);
  };
  v1::Backup made;
  EXPECT_EQ(backup(kLyon, "app", "b1", &made).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(backup(kBourg, "admin", "b1", &made).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  for (const char* bad : {"", "../escape", ".hidden", "Majuscule", "a/b"}) {
    const grpc::Status s = backup(kLyon, "admin", bad, &made);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << bad;
    EXPECT_NE(s.error_message().find("backup_id"), std::string::npos) << s.error_message();
  }
  // The CLI, as an operator runs it.
  std::string out;
  ASSERT_EQ(testing::RunCommand(absl::StrCat(testing::BinaryPath("interco"), " --addr=127.0.0.1:",
                                             lyon->api_port(), " --tls_dir=",
                                             ClientTlsDir(kLyon, "admin"), " backup avant-r6"),
                                &out),
            0)
      << out;
  const std::string copy = absl::StrCat(dir_, "/", kLyon, ".backups/avant-r6");
  EXPECT_NE(out.find(copy), std::string::npos) << out;
  EXPECT_NE(out.find("origin epoch 1"), std::string::npos) << out;
  EXPECT_EQ(backup(kLyon, "admin", "avant-r6", &made).error_code(), grpc::StatusCode::ALREADY_EXISTS);

  // Lyon goes on writing after the backup, and its partner gets it.
  for (int i = 6; i <= 10; ++i) Write(*lyon, absl::StrCat("r", i));
  ASSERT_TRUE(WaitForCount(*bourg_, kBourg, 10));
  ASSERT_EQ(lyon->Terminate() & 0x7f, 0);
  ASSERT_EQ(testing::RunCommand(absl::StrCat("rm -rf ", dir_, "/", kLyon, " && cp -a ", copy, " ",
                                             dir_, "/", kLyon),
                                &out),
            0)
      << out;

  // Restored as is, no flag: a new epoch, so writing offline reuses nothing.
  ASSERT_EQ(bourg_->Terminate() & 0x7f, 0);
  lyon = Start(kLyon, lyon_port_, kBourg, bourg_port_);
  EXPECT_EQ(Info(*lyon, kLyon).epoch(), 2u);
  EXPECT_EQ(Count(*lyon, kLyon), 5);
  Write(*lyon, "r11");
  ASSERT_TRUE(bourg_->Start(&out)) << out;
  EXPECT_TRUE(WaitForCount(*bourg_, kBourg, 11));
  EXPECT_TRUE(WaitForCount(*lyon, kLyon, 11)) << Count(*lyon, kLyon);
  for (NodeProcess* node : {lyon.get(), bourg_.get()}) {
    const v1::NodeInfo info = Info(*node, node == lyon.get() ? kLyon : kBourg);
    EXPECT_EQ(info.frozen_origins_size(), 0);
    for (const auto& p : info.peers()) EXPECT_EQ(p.forks(), 0u);
  }
  // Restarted again, it stays on that epoch (the mark is gone).
  ASSERT_EQ(lyon->Terminate() & 0x7f, 0);
  lyon = Start(kLyon, lyon_port_, kBourg, bourg_port_);
  EXPECT_EQ(Info(*lyon, kLyon).epoch(), 2u);
}

}  // namespace
}  // namespace interco
