// A real node process facing a hostile partner on its peer port (real mTLS, real gRPC):
// the partner, a configured peer with a valid certificate, relays forged, altered,
// replayed and oversized batches, and stability reports of another member that member
// did not sign. Each is refused and counted, nothing of it is stored or served, and the
// node keeps serving: a genuine signed batch sent afterwards on a new session is applied.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "interco/replication/v1/peer_service.grpc.pb.h"
#include "interco/v1/admin_service.grpc.pb.h"
#include "interco/v1/node_service.grpc.pb.h"
#include "interco/v1/registry_service.grpc.pb.h"
#include "node/crypto/sha256.h"
#include "node/trust/batch_signer.h"
#include "node/trust/certificate_store.h"
#include "replication/change_log.h"
#include "replication/hlc.h"
#include "replication/ids.h"
#include "replication/replicator.h"
#include "replication/stability.h"
#include "tests/testing/test_env.h"

namespace interco {
namespace {

using interco::replication::v1::Batch;
using interco::replication::v1::PeerMessage;
using ::interco::testing::ClientTlsDir;
using ::interco::testing::kAbergement;
using ::interco::testing::kBourg;
using ::interco::testing::kLyon;
using ::interco::testing::MtlsChannel;
using ::interco::testing::NodeProcess;
using ::interco::testing::NodeTlsDir;

constexpr char kStream[] = "equipements";

uint32_t Origin(const std::string& siren) { return *replication::SirenToOrigin(siren); }

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The node under test is L'Abergement; the hostile partner is Lyon (lower SIREN: it dials).
class PeerAttackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = testing::MakeTempDir("attack");
    peer_port_ = testing::FreePort();
    NodeProcess::Options o;
    o.authority = kAbergement;
    o.data_dir = dir + "/store";
    o.extra_args = {absl::StrCat("--peer_listen=127.0.0.1:", peer_port_),
                    absl::StrCat("--peers=", kLyon, "@127.0.0.1:1")};
    node_ = std::make_unique<NodeProcess>(o);
    std::string error;
    ASSERT_TRUE(node_->Start(&error)) << error;
    v1::CreateRegistryRequest req;
    req.set_registry_id(kStream);
    req.mutable_registry()->set_owner(kLyon);
    // Lyon writes; L'Abergement reads (and so holds a replica). Bourg may do neither.
    req.mutable_registry()->mutable_policy()->mutable_readers()->add_authorities(kAbergement);
    auto* f = req.mutable_registry()->mutable_schema()->add_fields();
    f->set_name("nom");
    f->set_type(v1::FIELD_TYPE_STRING);
    grpc::ClientContext ctx;
    v1::Registry out;
    ASSERT_TRUE(v1::RegistryService::NewStub(
                    MtlsChannel(node_->api_port(), ClientTlsDir(kAbergement, "admin")))
                    ->CreateRegistry(&ctx, req, &out)
                    .ok());

    // Lyon's real signing key, as its node would use it.
    node::CertificateStoreOptions co;
    co.federation = testing::kFederation;
    co.ca_file = NodeTlsDir(kLyon) + "/ca.crt";
    certs_ = *node::CertificateStore::Open(co);
    signer_ = *node::BatchSigner::Open(node::TlsFiles::InDirectory(NodeTlsDir(kLyon)), *certs_);
    bourg_signer_ =
        *node::BatchSigner::Open(node::TlsFiles::InDirectory(NodeTlsDir(kBourg)), *certs_);
  }

  std::unique_ptr<v1::RegistryService::Stub> Api() {
    return v1::RegistryService::NewStub(MtlsChannel(node_->api_port(), ClientTlsDir(kAbergement)));
  }

  v1::PeerStatus LyonStatus() {
    auto stub = v1::NodeService::NewStub(MtlsChannel(node_->api_port(), ClientTlsDir(kAbergement)));
    grpc::ClientContext ctx;
    v1::GetNodeInfoRequest req;
    v1::NodeInfo info;
    EXPECT_TRUE(stub->GetNodeInfo(&ctx, req, &info).ok());
    for (const auto& p : info.peers()) {
      if (p.authority() == kLyon) return p;
    }
    return {};
  }

  bool HasRecord(const std::string& id) {
    grpc::ClientContext ctx;
    v1::GetRecordRequest req;
    req.set_name(absl::StrCat("registries/", kStream, "/records/", id));
    v1::Record r;
    return Api()->GetRecord(&ctx, req, &r).ok();
  }

  // A batch of one change creating record `id`, from `origin`, at position `seq`.
  Batch MakeBatch(const std::string& origin_siren, uint64_t seq, const std::string& prev_hash,
                  const std::string& id, replication::Signer* signer, std::string* hash,
                  uint32_t run_index = 0) {
    const uint32_t origin = Origin(origin_siren);
    const uint64_t hlc = static_cast<uint64_t>(NowMs()) << replication::HybridLogicalClock::kLogicalBits;
    interco::replication::v1::Change c;
    c.set_key(id);
    c.set_author(origin_siren);
    auto* d = c.mutable_delta();
    d->set_causal_length(1);
    d->set_cl_hlc(hlc);
    d->set_cl_origin(origin);
    auto* f = d->add_fields();
    f->set_name("nom");
    replication::SetLifeOfField(*f, 1);
    f->set_hlc(hlc);
    f->set_origin(origin);
    f->mutable_value()->set_string_value(id);
    replication::BatchParams p;
    p.origin = origin;
    p.epoch = 1;
    p.stream = kStream;
    p.first_seq = seq;
    p.prev_hash = prev_hash;
    p.max_hlc = hlc;
    p.run_index = run_index;
    return *replication::BuildBatch(p, {c.SerializeAsString()}, hasher_, signer, hash);
  }

  // A peer session as Lyon's node: mTLS with Lyon's node certificate, then Hello.
  struct Session {
    std::unique_ptr<replication::v1::PeerService::Stub> stub;
    std::unique_ptr<grpc::ClientContext> ctx;
    std::unique_ptr<grpc::ClientReaderWriter<PeerMessage, PeerMessage>> stream;
    std::vector<std::string> pending_certificates;
  };
  Session Open() {
    Session s;
    s.stub = replication::v1::PeerService::NewStub(MtlsChannel(peer_port_, NodeTlsDir(kLyon)));
    s.ctx = std::make_unique<grpc::ClientContext>();
    s.stream = s.stub->Sync(s.ctx.get());
    PeerMessage hello;
    hello.mutable_hello()->set_protocol_version(replication::kProtocolVersion);
    hello.mutable_hello()->set_node(Origin(kLyon));
    hello.mutable_hello()->add_streams()->set_stream(kStream);
    EXPECT_TRUE(s.stream->Write(hello));
    return s;
  }
  // Sends a batch frame, carrying the certificates queued by SendCertificate.
  static bool SendBatch(Session& s, const Batch& b) { return SendRun(s, {b}); }
  // Sends a frame holding a run of batches.
  static bool SendRun(Session& s, const std::vector<Batch>& run) {
    PeerMessage m;
    auto* frame = m.add_frames();
    frame->set_stream(kStream);
    for (const Batch& b : run) *frame->add_batches() = b;
    for (const std::string& der : s.pending_certificates) {
      frame->mutable_certificates()->add_der(der);
    }
    s.pending_certificates.clear();
    return s.stream->Write(m);
  }
  static bool SendCertificate(Session& s, const std::string& tls_dir) {
    auto pem = node::ReadFile(tls_dir + "/tls.crt");
    auto cert = node::ParsePemCertificate(*pem, "tls.crt");
    s.pending_certificates.push_back(node::CertificateDer(cert->get()));
    return true;
  }

  template <typename Pred>
  bool WaitFor(Pred pred) {
    for (int i = 0; i < 600; ++i) {
      if (pred()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }

  int peer_port_ = 0;
  std::unique_ptr<NodeProcess> node_;
  node::Sha256Hasher hasher_;
  std::unique_ptr<node::CertificateStore> certs_;
  std::unique_ptr<node::BatchSigner> signer_;
  std::unique_ptr<node::BatchSigner> bourg_signer_;
};

TEST_F(PeerAttackTest, ForgedAlteredAndReplayedBatchesAreRefusedAndTheNodeKeepsServing) {
  Session s = Open();
  ASSERT_TRUE(SendCertificate(s, NodeTlsDir(kLyon)));

  // 1. A batch claiming to come from Bourg, signed with Lyon's key: a forgery.
  ASSERT_TRUE(SendBatch(s, MakeBatch(kBourg, 1, "", "forged", signer_.get(), nullptr)));
  // 2. Lyon's own batch with a signature that does not verify.
  Batch bad_sig = MakeBatch(kLyon, 1, "", "bad-signature", signer_.get(), nullptr);
  bad_sig.mutable_signature()->front() ^= 1;
  ASSERT_TRUE(SendBatch(s, bad_sig));
  ASSERT_TRUE(WaitFor([&] { return LyonStatus().unverified() >= 2; }))
      << LyonStatus().ShortDebugString();
  // 3. An unsigned batch without the signed batch that would end its run; then a run
  //    whose unsigned batch was altered after its origin chained it.
  ASSERT_TRUE(SendBatch(s, MakeBatch(kLyon, 1, "", "unsigned", nullptr, nullptr)));
  std::string first_hash;
  Batch run_first = MakeBatch(kLyon, 1, "", "run-first", nullptr, &first_hash);
  const Batch run_end = MakeBatch(kLyon, 2, first_hash, "run-end", signer_.get(), nullptr, 1);
  run_first.mutable_changes(0)->back() ^= 1;
  ASSERT_TRUE(SendRun(s, {run_first, run_end}));
  ASSERT_TRUE(WaitFor([&] { return LyonStatus().rejected() >= 2; }))
      << LyonStatus().ShortDebugString();

  // 4. A batch genuinely signed by Bourg, a partner of the federation, relayed by Lyon:
  //    authentic, but Bourg may not write this registry.
  ASSERT_TRUE(SendCertificate(s, NodeTlsDir(kBourg)));
  ASSERT_TRUE(SendBatch(s, MakeBatch(kBourg, 1, "", "bourg-write", bourg_signer_.get(), nullptr)));
  ASSERT_TRUE(WaitFor([&] { return LyonStatus().unauthorized() >= 1; }))
      << LyonStatus().ShortDebugString();

  // 5. A signed batch whose change was altered after signing.
  Batch altered = MakeBatch(kLyon, 1, "", "genuine", signer_.get(), nullptr);
  interco::replication::v1::Change c;
  ASSERT_TRUE(c.ParseFromString(altered.changes(0)));
  c.mutable_delta()->mutable_fields(0)->mutable_value()->set_string_value("altered");
  altered.set_changes(0, c.SerializeAsString());
  ASSERT_TRUE(SendBatch(s, altered));
  ASSERT_TRUE(WaitFor([&] { return LyonStatus().rejected() >= 3; }));

  // 6. The genuine batch is applied; sent again (a replay), it is only a duplicate.
  std::string hash;
  const Batch genuine = MakeBatch(kLyon, 1, "", "genuine", signer_.get(), &hash);
  ASSERT_TRUE(SendBatch(s, genuine));
  ASSERT_TRUE(WaitFor([&] { return HasRecord("genuine"); }));
  ASSERT_TRUE(SendBatch(s, genuine));
  ASSERT_TRUE(WaitFor([&] { return LyonStatus().duplicates() >= 1; }));
  const v1::PeerStatus st = LyonStatus();
  EXPECT_EQ(st.batches_applied(), 1u) << st.ShortDebugString();
  EXPECT_EQ(st.forks(), 0u);
  for (const char* id :
       {"forged", "bad-signature", "unsigned", "run-first", "run-end", "bourg-write", "altered"}) {
    EXPECT_FALSE(HasRecord(id)) << id << " was stored";
  }
  grpc::ClientContext get_ctx;
  v1::GetRecordRequest get;
  get.set_name(absl::StrCat("registries/", kStream, "/records/genuine"));
  v1::Record r;
  ASSERT_TRUE(Api()->GetRecord(&get_ctx, get, &r).ok());
  EXPECT_EQ(r.fields().at("nom").string_value(), "genuine");

  // 7. An oversized message: the transport refuses it and ends that session only.
  PeerMessage huge;
  huge.add_frames()->set_stream(kStream);
  huge.mutable_frames(0)->add_batches()->set_header(std::string(40 << 20, 'x'));
  s.stream->Write(huge);
  PeerMessage ignored;
  while (s.stream->Read(&ignored)) {
  }
  EXPECT_EQ(s.stream->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  // The node still serves its API and a new, honest session of the same partner.
  Session again = Open();
  ASSERT_TRUE(SendCertificate(again, NodeTlsDir(kLyon)));
  ASSERT_TRUE(SendBatch(again, MakeBatch(kLyon, 2, hash, "after", signer_.get(), nullptr)));
  EXPECT_TRUE(WaitFor([&] { return HasRecord("after"); }));
  again.ctx->TryCancel();

  // Each refusal is in the registry's audit chain, with the peer and the reason; the
  // applied batches too.
  auto admin = v1::AdminService::NewStub(MtlsChannel(node_->api_port(), ClientTlsDir(kAbergement, "admin")));
  grpc::ClientContext ctx;
  v1::ListAuditEventsRequest req;
  req.set_chain(absl::StrCat("registries/", kStream));
  v1::ListAuditEventsResponse audit;
  ASSERT_TRUE(admin->ListAuditEvents(&ctx, req, &audit).ok());
  int refused = 0, applied = 0;
  std::string reasons;
  for (const auto& entry : audit.events()) {
    const v1::AuditEvent& e = entry.event();
    if (e.action() != v1::AuditEvent::APPLY_BATCH) continue;
    if (e.accepted()) {
      applied++;
      EXPECT_EQ(e.origin(), kLyon);
    } else {
      refused++;
      EXPECT_EQ(e.peer(), kLyon);
      reasons += e.reason() + "\n";
    }
  }
  EXPECT_EQ(applied, 2);
  EXPECT_GE(refused, 6) << reasons;
  EXPECT_NE(reasons.find(absl::StrCat("origin ", kBourg, " is not a writer")), std::string::npos) << reasons;
  EXPECT_NE(reasons.find("signed by a certificate of"), std::string::npos) << reasons;
  EXPECT_NE(reasons.find("signature does not verify"), std::string::npos) << reasons;
  EXPECT_NE(reasons.find("does not end with a signed batch"), std::string::npos) << reasons;
  EXPECT_NE(reasons.find("body hash"), std::string::npos) << reasons;
}

// Lyon relays stability reports of Bourg, a member L'Abergement hears of only through
// it. Bourg's own signature makes one count; a report Lyon signed in Bourg's name, or
// Bourg's report made to say more than Bourg signed, is refused and counted, and Lyon is
// suspected.
TEST_F(PeerAttackTest, AStabilityReportCountsOnlyWithItsMembersSignature) {
  Session s = Open();
  auto members = [&] {
    auto stub = v1::NodeService::NewStub(MtlsChannel(node_->api_port(), ClientTlsDir(kAbergement)));
    grpc::ClientContext ctx;
    v1::NodeInfo info;
    EXPECT_TRUE(stub->GetNodeInfo(&ctx, v1::GetNodeInfoRequest(), &info).ok());
    for (const auto& t : info.trees()) {
      if (t.registry() == kStream) return t.members();
    }
    return 0u;
  };
  // A status of Lyon's relaying Bourg's report that it holds `held` of Lyon's changes,
  // signed by `signer` (as Bourg's), inflated by `inflate` after signing.
  auto relay = [&](node::BatchSigner& signer, const std::string& certificate_dir, uint64_t held,
                   uint64_t inflate) {
    replication::VersionVector vv;
    if (held > 0) vv[replication::OriginKey{Origin(kLyon), 1}].seq = held;
    absl::StatusOr<replication::ReportSignature> signature =
        replication::SignReport(signer, NowMs(), kStream, Origin(kBourg), 1, vv);
    ASSERT_TRUE(signature.ok()) << signature.status();
    vv[replication::OriginKey{Origin(kLyon), 1}].seq = held + inflate;
    PeerMessage m;
    replication::v1::Ack& ack = *m.mutable_ack();
    ack.mutable_sessions()->add_nodes(Origin(kAbergement));
    replication::v1::StreamReports& reports = *ack.add_reports();
    reports.set_stream(kStream);
    replication::WriteReport(Origin(kBourg), 1, vv, nullptr, *reports.add_members(),
                             &*signature);
    auto pem = node::ReadFile(certificate_dir + "/tls.crt");
    ASSERT_TRUE(pem.ok());
    auto cert = node::ParsePemCertificate(*pem, "tls.crt");
    ASSERT_TRUE(cert.ok());
    ack.mutable_certificates()->add_der(node::CertificateDer(cert->get()));
    ASSERT_TRUE(s.stream->Write(m));
  };
  const uint32_t before = members();  // L'Abergement and Lyon, the owner

  // Bourg's own report: Bourg counts as a member from then on.
  relay(*bourg_signer_, NodeTlsDir(kBourg), 0, 0);
  ASSERT_TRUE(WaitFor([&] { return members() == before + 1; })) << members();
  EXPECT_EQ(LyonStatus().unverified(), 0u);
  EXPECT_FALSE(LyonStatus().suspect());

  // Bourg's report signed with Lyon's key, then Bourg's own made to say more than it
  // signed: both refused.
  relay(*signer_, NodeTlsDir(kLyon), 3, 0);
  relay(*bourg_signer_, NodeTlsDir(kBourg), 0, 3);
  ASSERT_TRUE(WaitFor([&] { return LyonStatus().unverified() >= 2; }))
      << LyonStatus().ShortDebugString();
  EXPECT_TRUE(LyonStatus().suspect());
  EXPECT_EQ(members(), before + 1);
}

}  // namespace
}  // namespace interco
