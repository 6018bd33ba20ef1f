// The public API end to end: an in-process node with real RocksDB, real gRPC over
// loopback and real mutual TLS with certificates from certs/dev-certs.sh.
#include <grpcpp/create_channel.h>
#include <grpcpp/completion_queue.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "interco/v1/admin_service.grpc.pb.h"
#include "interco/v1/node_service.grpc.pb.h"
#include "node/crypto/ed25519.h"
#include "node/crypto/sha256.h"
#include "node/crypto/x509.h"
#include "interco/v1/registry_service.grpc.pb.h"
#include "node/server.h"
#include "tests/testing/test_env.h"

namespace interco {
namespace {

using ::interco::testing::ClientTlsDir;
using ::interco::testing::kBourg;
using ::interco::testing::kLyon;
using ::interco::testing::MakeTempDir;
using ::interco::testing::MtlsChannel;
using ::testing::HasSubstr;
using interco::v1::Record;
using interco::v1::RegistryService;

v1::Value Str(const std::string& s) {
  v1::Value v;
  v.set_string_value(s);
  return v;
}

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_dir_ = MakeTempDir("api");
    StartServer();
    stub_ = RegistryService::NewStub(MtlsChannel(server_->api_port(), ClientTlsDir(kLyon)));
    admin_ = RegistryService::NewStub(MtlsChannel(server_->api_port(), ClientTlsDir(kLyon, "admin")));
    CreateServicesRegistry();
  }

  void StartServer() {
    node::NodeConfig config;
    config.set_authority(kLyon);
    config.set_display_name("Métropole de Lyon");
    config.set_federation(testing::kFederation);
    config.set_data_dir(data_dir_);
    config.set_listen_address("127.0.0.1:0");
    config.set_health_address("127.0.0.1:0");
    config.set_tls_dir(testing::NodeTlsDir(kLyon));
    auto server = node::Server::Start(config);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  void CreateServicesRegistry() {
    v1::CreateRegistryRequest req;
    req.set_registry_id("services");
    auto* schema = req.mutable_registry()->mutable_schema();
    auto* f = schema->add_fields();
    f->set_name("nom");
    f->set_type(v1::FIELD_TYPE_STRING);
    f->set_required(true);
    f->set_max_length(200);
    f = schema->add_fields();
    f->set_name("commune");
    f->set_type(v1::FIELD_TYPE_STRING);
    f->set_indexed(true);
    f = schema->add_fields();
    f->set_name("canaux");
    f->set_type(v1::FIELD_TYPE_STRING_SET);
    f = schema->add_fields();
    f->set_name("ouvert");
    f->set_type(v1::FIELD_TYPE_BOOL);
    grpc::ClientContext ctx;
    v1::Registry out;
    ASSERT_TRUE(admin_->CreateRegistry(&ctx, req, &out).ok());
  }

  grpc::Status Put(const std::string& id, std::map<std::string, v1::Value> fields,
                   Record* out = nullptr, const std::string& etag = "") {
    v1::UpdateRecordRequest req;
    req.mutable_record()->set_name(absl::StrCat("registries/services/records/", id));
    for (auto& [k, v] : fields) {
      (*req.mutable_record()->mutable_fields())[k] = v;
      req.mutable_update_mask()->add_paths(k);
    }
    req.set_allow_missing(true);
    req.set_etag(etag);
    grpc::ClientContext ctx;
    Record ignored;
    return stub_->UpdateRecord(&ctx, req, out != nullptr ? out : &ignored);
  }

  int64_t RecordCount() {
    v1::GetRegistryRequest req;
    req.set_name("registries/services");
    grpc::ClientContext ctx;
    v1::Registry r;
    EXPECT_TRUE(stub_->GetRegistry(&ctx, req, &r).ok());
    return r.record_count();
  }

  std::string data_dir_;
  std::unique_ptr<node::Server> server_;
  std::unique_ptr<RegistryService::Stub> stub_;   // "app", role writer
  std::unique_ptr<RegistryService::Stub> admin_;  // "admin", role admin
};

TEST_F(ApiTest, CrudOverMutualTls) {
  Record created;
  ASSERT_TRUE(Put("mairie-69123-01", {{"nom", Str("Mairie de Lyon")}, {"commune", Str("69123")}},
                  &created)
                  .ok());
  EXPECT_EQ(created.update_origin(), kLyon);
  EXPECT_FALSE(created.etag().empty());

  v1::GetRecordRequest get;
  get.set_name("registries/services/records/mairie-69123-01");
  Record got;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->GetRecord(&ctx, get, &got).ok());
  }
  EXPECT_EQ(got.fields().at("nom").string_value(), "Mairie de Lyon");

  // Update one field with the current etag; the other field stays.
  Record updated;
  ASSERT_TRUE(Put("mairie-69123-01", {{"ouvert", [] { v1::Value v; v.set_bool_value(true); return v; }()}},
                  &updated, got.etag())
                  .ok());
  EXPECT_EQ(updated.fields().at("nom").string_value(), "Mairie de Lyon");
  EXPECT_TRUE(updated.fields().at("ouvert").bool_value());
  EXPECT_NE(updated.etag(), got.etag());

  v1::BatchGetRecordsRequest batch;
  batch.set_parent("registries/services");
  batch.add_names("registries/services/records/mairie-69123-01");
  v1::BatchGetRecordsResponse batch_out;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->BatchGetRecords(&ctx, batch, &batch_out).ok());
  }
  ASSERT_EQ(batch_out.records_size(), 1);

  v1::ListRecordsRequest list;
  list.set_parent("registries/services");
  auto* filter = list.add_filters();
  filter->set_field("commune");
  *filter->mutable_value() = Str("69123");
  v1::ListRecordsResponse list_out;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->ListRecords(&ctx, list, &list_out).ok());
  }
  ASSERT_EQ(list_out.records_size(), 1);

  v1::DeleteRecordRequest del;
  del.set_name("registries/services/records/mairie-69123-01");
  google::protobuf::Empty empty;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->DeleteRecord(&ctx, del, &empty).ok());
  }
  {
    grpc::ClientContext ctx;
    EXPECT_EQ(stub_->GetRecord(&ctx, get, &got).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  EXPECT_EQ(RecordCount(), 0);
}

// The role in a client certificate bounds what it may do: a reader cannot write, a
// writer cannot create registries; refusals name the caller and leave nothing behind.
TEST_F(ApiTest, ClientRolesAreEnforced) {
  ASSERT_TRUE(Put("piscine", {{"nom", Str("Piscine")}}).ok());
  auto viewer = RegistryService::NewStub(
      MtlsChannel(server_->api_port(), ClientTlsDir(kLyon, "viewer")));
  {
    grpc::ClientContext ctx;
    v1::GetRecordRequest req;
    req.set_name("registries/services/records/piscine");
    Record r;
    EXPECT_TRUE(viewer->GetRecord(&ctx, req, &r).ok()) << "a reader may read";
  }
  {
    grpc::ClientContext ctx;
    v1::UpdateRecordRequest req;
    req.mutable_record()->set_name("registries/services/records/piscine");
    (*req.mutable_record()->mutable_fields())["nom"] = Str("Piscine fermée");
    req.mutable_update_mask()->add_paths("nom");
    Record r;
    grpc::Status s = viewer->UpdateRecord(&ctx, req, &r);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_THAT(s.error_message(), HasSubstr(absl::StrCat(kLyon, "/viewer has role reader")));
  }
  {
    grpc::ClientContext ctx;
    v1::DeleteRecordRequest req;
    req.set_name("registries/services/records/piscine");
    google::protobuf::Empty e;
    EXPECT_EQ(viewer->DeleteRecord(&ctx, req, &e).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  {
    grpc::ClientContext ctx;
    v1::CreateRegistryRequest req;
    req.set_registry_id("by-a-writer");
    auto* f = req.mutable_registry()->mutable_schema()->add_fields();
    f->set_name("x");
    f->set_type(v1::FIELD_TYPE_STRING);
    v1::Registry out;
    grpc::Status s = stub_->CreateRegistry(&ctx, req, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_THAT(s.error_message(), HasSubstr("needs role admin"));
  }
  grpc::ClientContext ctx;
  v1::GetRecordRequest req;
  req.set_name("registries/services/records/piscine");
  Record r;
  ASSERT_TRUE(stub_->GetRecord(&ctx, req, &r).ok());
  EXPECT_EQ(r.fields().at("nom").string_value(), "Piscine");
  EXPECT_EQ(RecordCount(), 1);
  grpc::ClientContext get_ctx;
  v1::GetRegistryRequest get;
  get.set_name("registries/by-a-writer");
  v1::Registry reg;
  EXPECT_EQ(stub_->GetRegistry(&get_ctx, get, &reg).error_code(), grpc::StatusCode::NOT_FOUND);
}

// Every write is audited, accepted or refused, without field values; the chain is
// linked by hashes and its head is signed by the node; only the node's admins read it.
TEST_F(ApiTest, AuditLogRecordsWritesAndRefusalsInAHashChain) {
  ASSERT_TRUE(Put("piscine", {{"nom", Str("Piscine Garibaldi")}}).ok());
  ASSERT_EQ(Put("sans-nom", {{"commune", Str("69123")}}).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // "nom" is required
  auto viewer = RegistryService::NewStub(MtlsChannel(server_->api_port(), ClientTlsDir(kLyon, "viewer")));
  {
    grpc::ClientContext ctx;
    v1::UpdateRecordRequest req;
    req.mutable_record()->set_name("registries/services/records/piscine");
    (*req.mutable_record()->mutable_fields())["nom"] = Str("Piscine fermée");
    Record r;
    ASSERT_EQ(viewer->UpdateRecord(&ctx, req, &r).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  auto admin = v1::AdminService::NewStub(MtlsChannel(server_->api_port(), ClientTlsDir(kLyon, "admin")));
  auto list = [&](v1::AdminService::Stub& stub, const std::string& token, int size,
                  v1::ListAuditEventsResponse* out) {
    grpc::ClientContext ctx;
    v1::ListAuditEventsRequest req;
    req.set_chain("registries/services");
    req.set_page_size(size);
    req.set_page_token(token);
    return stub.ListAuditEvents(&ctx, req, out);
  };
  // The refusal before the store is appended asynchronously: wait for it.
  v1::ListAuditEventsResponse page;
  for (int i = 0; i < 500; ++i) {
    page.Clear();
    ASSERT_TRUE(list(*admin, "", 100, &page).ok());
    if (page.events_size() >= 4) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // Newest first: the viewer's refusal, the invalid write, the accepted write, the creation.
  ASSERT_EQ(page.events_size(), 4);
  const auto& refused = page.events(0).event();
  EXPECT_EQ(refused.action(), v1::AuditEvent::WRITE_RECORD);
  EXPECT_FALSE(refused.accepted());
  EXPECT_EQ(refused.caller(), absl::StrCat(kLyon, "/viewer"));
  EXPECT_EQ(refused.record(), "piscine");
  EXPECT_THAT(refused.reason(), HasSubstr("PERMISSION_DENIED"));
  const auto& invalid = page.events(1).event();
  EXPECT_FALSE(invalid.accepted());
  EXPECT_EQ(invalid.record(), "sans-nom");
  EXPECT_THAT(invalid.reason(), HasSubstr("INVALID_ARGUMENT"));
  const auto& accepted = page.events(2).event();
  EXPECT_TRUE(accepted.accepted());
  EXPECT_EQ(accepted.caller(), absl::StrCat(kLyon, "/app"));
  EXPECT_EQ(accepted.fields().size(), 1);
  EXPECT_EQ(accepted.fields(0), "nom");
  EXPECT_EQ(page.events(3).event().action(), v1::AuditEvent::CREATE_REGISTRY);
  for (const auto& r : page.events()) {
    EXPECT_EQ(r.stored().find("Garibaldi"), std::string::npos) << "a field value was audited";
    EXPECT_EQ(r.stored().find("fermée"), std::string::npos) << "a field value was audited";
  }
  // The hash chain links them, and the signed head names the newest.
  for (int i = 0; i + 1 < page.events_size(); ++i) {
    EXPECT_EQ(page.events(i).event().prev_hash(), node::Sha256(page.events(i + 1).stored()));
    EXPECT_EQ(page.events(i).event().seq(), page.events(i + 1).event().seq() + 1);
  }
  EXPECT_EQ(page.head().seq(), page.events(0).event().seq());
  EXPECT_EQ(page.head().hash(), node::Sha256(page.events(0).stored()));
  {
    auto cert = node::ParsePemCertificate(
        *node::ReadFile(testing::NodeTlsDir(kLyon) + "/tls.crt"), "tls.crt");
    std::string message("interco.v1.AuditHead");
    message.push_back('\0');
    message += "registries/services";
    message.push_back('\0');
    for (int b = 7; b >= 0; --b) message.push_back(static_cast<char>(page.head().seq() >> (8 * b)));
    message += page.head().hash();
    EXPECT_TRUE(node::Ed25519Verify(X509_get0_pubkey(cert->get()), message, page.head().signature()).ok());
  }
  // Paging goes on with older events.
  v1::ListAuditEventsResponse first, second;
  ASSERT_TRUE(list(*admin, "", 3, &first).ok());
  ASSERT_EQ(first.events_size(), 3);
  ASSERT_FALSE(first.next_page_token().empty());
  ASSERT_TRUE(list(*admin, first.next_page_token(), 3, &second).ok());
  ASSERT_EQ(second.events_size(), 1);
  EXPECT_EQ(second.events(0).event().action(), v1::AuditEvent::CREATE_REGISTRY);
  EXPECT_TRUE(second.next_page_token().empty());
  // Writers, and admins of another authority, may not read it.
  auto writer = v1::AdminService::NewStub(MtlsChannel(server_->api_port(), ClientTlsDir(kLyon)));
  v1::ListAuditEventsResponse denied;
  EXPECT_EQ(list(*writer, "", 10, &denied).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  auto other = v1::AdminService::NewStub(MtlsChannel(server_->api_port(), ClientTlsDir(kBourg, "admin")));
  EXPECT_EQ(list(*other, "", 10, &denied).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(list(*admin, "bogus", 10, &denied).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  grpc::ClientContext ctx;
  v1::ListAuditEventsRequest req;
  req.set_chain("registries/absent");
  EXPECT_EQ(admin->ListAuditEvents(&ctx, req, &denied).error_code(), grpc::StatusCode::NOT_FOUND);
}

// A registry's policy bounds who writes and who reads, on every call; deny by default.
TEST_F(ApiTest, RegistryPolicyIsEnforcedOnEveryCall) {
  v1::CreateRegistryRequest create;
  create.set_registry_id("prive");
  auto* f = create.mutable_registry()->mutable_schema()->add_fields();
  f->set_name("nom");
  f->set_type(v1::FIELD_TYPE_STRING);
  create.mutable_registry()->mutable_policy()->mutable_readers()->add_authorities(kBourg);
  {
    grpc::ClientContext ctx;
    v1::Registry out;
    ASSERT_TRUE(admin_->CreateRegistry(&ctx, create, &out).ok());
    EXPECT_EQ(out.policy().readers().authorities(0), kBourg);
  }
  auto put = [&](RegistryService::Stub& stub, const std::string& id) {
    grpc::ClientContext ctx;
    v1::UpdateRecordRequest req;
    req.mutable_record()->set_name(absl::StrCat("registries/prive/records/", id));
    (*req.mutable_record()->mutable_fields())["nom"] = Str(id);
    req.set_allow_missing(true);
    Record r;
    return stub.UpdateRecord(&ctx, req, &r);
  };
  auto get = [&](RegistryService::Stub& stub, const std::string& id) {
    grpc::ClientContext ctx;
    v1::GetRecordRequest req;
    req.set_name(absl::StrCat("registries/prive/records/", id));
    Record r;
    return stub.GetRecord(&ctx, req, &r);
  };
  auto list = [&](RegistryService::Stub& stub) {
    grpc::ClientContext ctx;
    v1::ListRecordsRequest req;
    req.set_parent("registries/prive");
    v1::ListRecordsResponse r;
    return stub.ListRecords(&ctx, req, &r);
  };
  ASSERT_TRUE(put(*stub_, "a").ok()) << "the owner writes";
  auto bourg = RegistryService::NewStub(MtlsChannel(server_->api_port(), ClientTlsDir(kBourg)));
  auto other = RegistryService::NewStub(
      MtlsChannel(server_->api_port(), ClientTlsDir(testing::kAbergement)));
  grpc::Status s = put(*bourg, "b");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr(absl::StrCat(kBourg, "/app may not write registry prive")));
  EXPECT_TRUE(get(*bourg, "a").ok()) << "a reader reads";
  EXPECT_TRUE(list(*bourg).ok());
  EXPECT_EQ(get(*other, "a").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(list(*other).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(put(*other, "c").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  {
    grpc::ClientContext ctx;
    v1::GetRecordProvenanceRequest req;
    req.set_name("registries/prive/records/a");
    v1::RecordProvenance p;
    EXPECT_EQ(other->GetRecordProvenance(&ctx, req, &p).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  for (auto* stub : {bourg.get(), other.get()}) {
    grpc::ClientContext ctx;
    v1::ListConflictsRequest req;
    req.set_parent("registries/prive");
    v1::ListConflictsResponse r;
    EXPECT_EQ(stub->ListConflicts(&ctx, req, &r).error_code(),
              stub == bourg.get() ? grpc::StatusCode::OK : grpc::StatusCode::PERMISSION_DENIED)
        << "the conflict journal is for the registry's readers";
  }
  {
    grpc::ClientContext ctx;
    v1::WatchRecordsRequest req;
    req.set_parent("registries/prive");
    auto reader = other->WatchRecords(&ctx, req);
    v1::WatchRecordsResponse r;
    while (reader->Read(&r)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
  }
  EXPECT_EQ(get(*bourg, "b").error_code(), grpc::StatusCode::NOT_FOUND) << "the refused write left nothing";
  // A policy naming something that is not a SIREN is refused, naming the field.
  create.set_registry_id("mal-formee");
  create.mutable_registry()->mutable_policy()->mutable_writers()->add_authorities("123");
  grpc::ClientContext ctx;
  v1::Registry out;
  s = admin_->CreateRegistry(&ctx, create, &out);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("registry.policy.writers.authorities[0]"));
}

TEST_F(ApiTest, NodeInfoNamesTheNodeAndTheCaller) {
  auto node = v1::NodeService::NewStub(MtlsChannel(server_->api_port(), ClientTlsDir(kBourg)));
  grpc::ClientContext ctx;
  v1::NodeInfo info;
  ASSERT_TRUE(node->GetNodeInfo(&ctx, v1::GetNodeInfoRequest(), &info).ok());
  EXPECT_EQ(info.authority(), kLyon);
  EXPECT_EQ(info.caller(), absl::StrCat(kBourg, "/app"));
  EXPECT_EQ(info.durability(), "sync");
  ASSERT_EQ(info.registries_size(), 1);
  EXPECT_EQ(info.registries(0).name(), "registries/services");
  EXPECT_GT(info.store_size_bytes(), 0);
}

TEST_F(ApiTest, RefusesClientWithoutCertificate) {
  grpc::SslCredentialsOptions options;
  std::string out;
  ASSERT_EQ(testing::RunCommand(absl::StrCat("cat ", ClientTlsDir(kLyon), "/ca.crt"), &out), 0);
  options.pem_root_certs = out;
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->api_port()),
                                     grpc::SslCredentials(options));
  auto stub = RegistryService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::Registry r;
  v1::GetRegistryRequest req;
  req.set_name("registries/services");
  EXPECT_FALSE(stub->GetRegistry(&ctx, req, &r).ok());
}

TEST_F(ApiTest, RefusesClientOfAnotherFederationCa) {
  std::string ca, key, cert;
  ASSERT_EQ(testing::RunCommand(absl::StrCat("cat ", ClientTlsDir(kLyon), "/ca.crt"), &ca), 0);
  const std::string foreign = absl::StrCat(testing::ForeignCertsDir(), "/clients/", kLyon, "/app");
  ASSERT_EQ(testing::RunCommand(absl::StrCat("cat ", foreign, "/tls.key"), &key), 0);
  ASSERT_EQ(testing::RunCommand(absl::StrCat("cat ", foreign, "/tls.crt"), &cert), 0);
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ca;  // trusts our server...
  options.pem_private_key = key;  // ...but presents a certificate of another CA
  options.pem_cert_chain = cert;
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto stub = RegistryService::NewStub(grpc::CreateCustomChannel(
      absl::StrCat("127.0.0.1:", server_->api_port()), grpc::SslCredentials(options), args));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::Registry r;
  v1::GetRegistryRequest req;
  req.set_name("registries/services");
  EXPECT_FALSE(stub->GetRegistry(&ctx, req, &r).ok());
}

// grpc.health.v1.Health/Check over the plaintext port, with hand-encoded messages
// (HealthCheckRequest{service=""} is empty; HealthCheckResponse{status=SERVING} is 08 01).
TEST_F(ApiTest, HealthPortServesOnlyHealthInPlaintext) {
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->health_port()),
                                     grpc::InsecureChannelCredentials());
  grpc::GenericStub generic(channel);
  auto call = [&](const std::string& method, std::string* response) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::Slice empty("");
    grpc::ByteBuffer request(&empty, 1), reply;
    grpc::Status status;
    absl::Notification done;
    generic.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &reply,
                      [&](grpc::Status s) {
                        status = s;
                        done.Notify();
                      });
    done.WaitForNotification();
    std::vector<grpc::Slice> slices;
    if (status.ok() && reply.Dump(&slices).ok()) {
      for (auto& s : slices) response->append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
    return status;
  };
  std::string response;
  ASSERT_TRUE(call("/grpc.health.v1.Health/Check", &response).ok());
  EXPECT_EQ(response, std::string("\x08\x01", 2));
  std::string ignored;
  EXPECT_EQ(call("/interco.v1.RegistryService/ListRegistries", &ignored).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
}

// grpc.reflection.v1alpha ServerReflectionInfo with a hand-encoded list_services request
// (field 7, empty string): returns the raw response bytes, or an error status.
grpc::Status ReflectionListServices(std::shared_ptr<grpc::Channel> channel, std::string* out) {
  grpc::CompletionQueue cq;
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  auto call = stub.PrepareCall(
      &ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  auto step = [&](int want) {
    void* tag = nullptr;
    bool ok = false;
    return cq.Next(&tag, &ok) && tag == reinterpret_cast<void*>(static_cast<intptr_t>(want)) && ok;
  };
  auto tag = [](int t) { return reinterpret_cast<void*>(static_cast<intptr_t>(t)); };
  call->StartCall(tag(1));
  bool ok = step(1);
  grpc::Slice request(std::string("\x3a\x00", 2));
  grpc::ByteBuffer request_buffer(&request, 1), response;
  if (ok) {
    call->Write(request_buffer, tag(2));
    ok = step(2);
  }
  if (ok) {
    call->WritesDone(tag(3));
    ok = step(3);
  }
  if (ok) {
    call->Read(&response, tag(4));
    if (step(4)) {
      std::vector<grpc::Slice> slices;
      if (response.Dump(&slices).ok()) {
        for (auto& s : slices) out->append(reinterpret_cast<const char*>(s.begin()), s.size());
      }
    }
  }
  grpc::Status status;
  call->Finish(&status, tag(5));
  step(5);
  cq.Shutdown();
  void* ignored_tag;
  bool ignored_ok;
  while (cq.Next(&ignored_tag, &ignored_ok)) {
  }
  return status;
}

TEST_F(ApiTest, ReflectionListsTheApiOnTheApiPortOnly) {
  std::string listed;
  grpc::Status s = ReflectionListServices(MtlsChannel(server_->api_port(), ClientTlsDir(kLyon)), &listed);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_THAT(listed, HasSubstr("interco.v1.RegistryService"));
  EXPECT_THAT(listed, HasSubstr("interco.v1.NodeService"));
  EXPECT_THAT(listed, HasSubstr("grpc.health.v1.Health"));
  std::string none;
  s = ReflectionListServices(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->health_port()),
                          grpc::InsecureChannelCredentials()),
      &none);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED) << s.error_message();
}

TEST_F(ApiTest, BadInputGetsTheRightStatusAndChangesNothing) {
  Record base;
  ASSERT_TRUE(Put("r1", {{"nom", Str("Base")}}, &base).ok());
  struct Case {
    std::string what;
    std::function<grpc::Status()> call;
    grpc::StatusCode code;
    std::string mentions;
  };
  auto update = [&](std::function<void(v1::UpdateRecordRequest&)> edit) {
    return [this, edit] {
      v1::UpdateRecordRequest req;
      req.mutable_record()->set_name("registries/services/records/r1");
      (*req.mutable_record()->mutable_fields())["nom"] = Str("Changed");
      req.mutable_update_mask()->add_paths("nom");
      edit(req);
      grpc::ClientContext ctx;
      Record out;
      return stub_->UpdateRecord(&ctx, req, &out);
    };
  };
  std::vector<Case> cases = {
      {"malformed record name", update([](auto& r) { r.mutable_record()->set_name("services/r1"); }),
       grpc::StatusCode::INVALID_ARGUMENT, "record.name"},
      {"bad record id", update([](auto& r) { r.mutable_record()->set_name("registries/services/records/a b"); }),
       grpc::StatusCode::INVALID_ARGUMENT, "record ID"},
      {"unknown registry", update([](auto& r) { r.mutable_record()->set_name("registries/nope/records/r1"); }),
       grpc::StatusCode::NOT_FOUND, "nope"},
      {"unknown field", update([](auto& r) { (*r.mutable_record()->mutable_fields())["zzz"] = Str("x"); }),
       grpc::StatusCode::INVALID_ARGUMENT, "record.fields[zzz]"},
      {"wrong type", update([](auto& r) { (*r.mutable_record()->mutable_fields())["ouvert"] = Str("x"); }),
       grpc::StatusCode::INVALID_ARGUMENT, "record.fields[ouvert]"},
      {"oversized value", update([](auto& r) { (*r.mutable_record()->mutable_fields())["nom"] = Str(std::string(201, 'x')); }),
       grpc::StatusCode::INVALID_ARGUMENT, "maximum length"},
      {"clearing a required field", update([](auto& r) { r.mutable_record()->mutable_fields()->erase("nom"); }),
       grpc::StatusCode::INVALID_ARGUMENT, "required"},
      {"unknown mask path", update([](auto& r) { r.mutable_update_mask()->add_paths("fields.zzz"); }),
       grpc::StatusCode::INVALID_ARGUMENT, "update_mask.paths[1]"},
      {"stale etag", update([](auto& r) { r.set_etag("0000000000000000"); }),
       grpc::StatusCode::ABORTED, "etag"},
      {"missing record without allow_missing",
       update([](auto& r) { r.mutable_record()->set_name("registries/services/records/r2"); }),
       grpc::StatusCode::NOT_FOUND, "not found"},
      {"message over the size limit",
       update([](auto& r) { (*r.mutable_record()->mutable_fields())["nom"] = Str(std::string(9 << 20, 'x')); }),
       grpc::StatusCode::RESOURCE_EXHAUSTED, ""},
      {"page size over the limit",
       [this] {
         v1::ListRecordsRequest req;
         req.set_parent("registries/services");
         req.set_page_size(5000);
         grpc::ClientContext ctx;
         v1::ListRecordsResponse out;
         return stub_->ListRecords(&ctx, req, &out);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "page_size"},
      {"bad page token",
       [this] {
         v1::ListRecordsRequest req;
         req.set_parent("registries/services");
         req.set_page_token("%%%");
         grpc::ClientContext ctx;
         v1::ListRecordsResponse out;
         return stub_->ListRecords(&ctx, req, &out);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "page_token"},
      {"bad parent",
       [this] {
         v1::ListRecordsRequest req;
         req.set_parent("registries/");
         grpc::ClientContext ctx;
         v1::ListRecordsResponse out;
         return stub_->ListRecords(&ctx, req, &out);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "parent"},
      {"conflicts: bad record id",
       [this] {
         v1::ListConflictsRequest req;
         req.set_parent("registries/services");
         req.set_record_id("a b");
         grpc::ClientContext ctx;
         v1::ListConflictsResponse out;
         return stub_->ListConflicts(&ctx, req, &out);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "record_id"},
      {"conflicts: page size over the limit",
       [this] {
         v1::ListConflictsRequest req;
         req.set_parent("registries/services");
         req.set_page_size(5000);
         grpc::ClientContext ctx;
         v1::ListConflictsResponse out;
         return stub_->ListConflicts(&ctx, req, &out);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "page_size"},
      {"conflicts: bad page token",
       [this] {
         v1::ListConflictsRequest req;
         req.set_parent("registries/services");
         req.set_page_token("%%%");
         grpc::ClientContext ctx;
         v1::ListConflictsResponse out;
         return stub_->ListConflicts(&ctx, req, &out);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "page_token"},
      {"conflicts: unknown registry",
       [this] {
         v1::ListConflictsRequest req;
         req.set_parent("registries/nope");
         grpc::ClientContext ctx;
         v1::ListConflictsResponse out;
         return stub_->ListConflicts(&ctx, req, &out);
       },
       grpc::StatusCode::NOT_FOUND, "nope"},
      {"create of an existing record",
       [this] {
         v1::CreateRecordRequest req;
         req.set_parent("registries/services");
         req.set_record_id("r1");
         (*req.mutable_record()->mutable_fields())["nom"] = Str("Dup");
         grpc::ClientContext ctx;
         Record out;
         return stub_->CreateRecord(&ctx, req, &out);
       },
       grpc::StatusCode::ALREADY_EXISTS, "exists"},
      {"batch get with a foreign name",
       [this] {
         v1::BatchGetRecordsRequest req;
         req.set_parent("registries/services");
         req.add_names("registries/other/records/r1");
         grpc::ClientContext ctx;
         v1::BatchGetRecordsResponse out;
         return stub_->BatchGetRecords(&ctx, req, &out);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "names[0]"},
      {"bad schema",
       [this] {
         v1::CreateRegistryRequest req;
         req.set_registry_id("bad-schema");
         auto* f = req.mutable_registry()->mutable_schema()->add_fields();
         f->set_name("x");
         grpc::ClientContext ctx;
         v1::Registry out;
         return admin_->CreateRegistry(&ctx, req, &out);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "schema.fields[0].type"},
      {"bad watch cursor",
       [this] {
         v1::WatchRecordsRequest req;
         req.set_parent("registries/services");
         req.set_cursor("bogus");
         grpc::ClientContext ctx;
         auto reader = stub_->WatchRecords(&ctx, req);
         v1::WatchRecordsResponse resp;
         while (reader->Read(&resp)) {
         }
         return reader->Finish();
       },
       grpc::StatusCode::INVALID_ARGUMENT, "cursor"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    grpc::Status s = c.call();
    EXPECT_EQ(s.error_code(), c.code) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr(c.mentions));
  }
  // Invalid UTF-8 in a proto3 string never reaches the service: protobuf refuses to
  // parse the request. (The schema check also rejects it, for other entry points.)
  EXPECT_FALSE(
      update([](auto& r) { (*r.mutable_record()->mutable_fields())["nom"] = Str("\xC3\x28"); })()
          .ok());
  // Nothing changed.
  v1::GetRecordRequest get;
  get.set_name("registries/services/records/r1");
  grpc::ClientContext ctx;
  Record now;
  ASSERT_TRUE(stub_->GetRecord(&ctx, get, &now).ok());
  EXPECT_EQ(now.etag(), base.etag());
  EXPECT_EQ(now.fields().at("nom").string_value(), "Base");
  EXPECT_EQ(RecordCount(), 1);
  auto consistency = server_->store().CheckConsistency();
  EXPECT_TRUE(consistency.ok()) << consistency.status();
}

TEST_F(ApiTest, WatchResumesFromCursorWithoutLossOrDuplicates) {
  v1::WatchRecordsRequest req;
  req.set_parent("registries/services");
  std::string cursor;
  std::vector<std::string> seen;
  {
    grpc::ClientContext ctx;
    auto reader = stub_->WatchRecords(&ctx, req);
    v1::WatchRecordsResponse resp;
    ASSERT_TRUE(reader->Read(&resp));  // the stream is established
    EXPECT_TRUE(resp.changes().empty());
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(Put(absl::StrCat("w", i), {{"nom", Str("x")}}).ok());
    while (seen.size() < 3 && reader->Read(&resp)) {
      for (const auto& c : resp.changes()) {
        seen.push_back(c.record().name());
        cursor = c.cursor();
      }
    }
    ctx.TryCancel();
    reader->Finish().IgnoreError();
  }
  ASSERT_EQ(seen.size(), 3u);
  // While disconnected: two more changes, one of them a delete.
  ASSERT_TRUE(Put("w3", {{"nom", Str("x")}}).ok());
  {
    v1::DeleteRecordRequest del;
    del.set_name("registries/services/records/w0");
    grpc::ClientContext ctx;
    google::protobuf::Empty e;
    ASSERT_TRUE(stub_->DeleteRecord(&ctx, del, &e).ok());
  }
  req.set_cursor(cursor);
  grpc::ClientContext ctx;
  auto reader = stub_->WatchRecords(&ctx, req);
  v1::WatchRecordsResponse resp;
  std::vector<v1::RecordChange> resumed;
  while (resumed.size() < 2 && reader->Read(&resp)) {
    for (const auto& c : resp.changes()) resumed.push_back(c);
  }
  ctx.TryCancel();
  reader->Finish().IgnoreError();
  ASSERT_EQ(resumed.size(), 2u);
  EXPECT_EQ(resumed[0].record().name(), "registries/services/records/w3");
  EXPECT_EQ(resumed[1].kind(), v1::CHANGE_KIND_DELETE);
  EXPECT_EQ(resumed[1].record().name(), "registries/services/records/w0");
}

TEST_F(ApiTest, GracefulShutdownKeepsEveryAcknowledgedWrite) {
  std::atomic<bool> stop{false};
  std::vector<std::vector<std::string>> acked(4);
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; !stop && i < 10000; ++i) {
        const std::string id = absl::StrCat("s", t, "-", i);
        if (Put(id, {{"nom", Str(id)}}).ok()) {
          acked[t].push_back(id);
        } else {
          break;
        }
      }
    });
  }
  while (acked[0].size() < 20) std::this_thread::yield();
  server_->Shutdown(absl::Seconds(5));
  stop = true;
  for (auto& w : writers) w.join();
  server_.reset();
  StartServer();
  stub_ = RegistryService::NewStub(MtlsChannel(server_->api_port(), ClientTlsDir(kLyon)));
  size_t total = 0;
  for (const auto& ids : acked) {
    for (const std::string& id : ids) {
      v1::GetRecordRequest get;
      get.set_name(absl::StrCat("registries/services/records/", id));
      grpc::ClientContext ctx;
      Record r;
      ASSERT_TRUE(stub_->GetRecord(&ctx, get, &r).ok()) << id;
      ++total;
    }
  }
  EXPECT_GE(total, 20u);
  auto consistency = server_->store().CheckConsistency();
  EXPECT_TRUE(consistency.ok()) << consistency.status();
}

}  // namespace
}  // namespace interco
