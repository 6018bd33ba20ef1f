// The two binaries as an operator uses them: interco-node's configuration errors, its
// durability modes, and the interco CLI against a real node.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "interco/v1/node_service.grpc.pb.h"
#include "interco/v1/registry_service.grpc.pb.h"
#include "tests/testing/deflate.h"
#include "tests/testing/test_env.h"

namespace interco {
namespace {

using ::interco::testing::BinaryPath;
using ::interco::testing::ClientTlsDir;
using ::interco::testing::kBourg;
using ::interco::testing::kLyon;
using ::interco::testing::NodeProcess;
using ::interco::testing::NodeTlsDir;
using ::interco::testing::RunCommand;
using ::testing::HasSubstr;
using ::testing::Not;

std::string WriteFile(const std::string& dir, const std::string& name, const std::string& text) {
  const std::string path = absl::StrCat(dir, "/", name);
  std::ofstream(path) << text;
  return path;
}

TEST(ProcessTest, RefusesBadConfigurationBeforeListening) {
  const std::string dir = testing::MakeTempDir("config");
  const std::string node = BinaryPath("interco-node");
  const std::string base = absl::StrCat(node, " --federation=", testing::kFederation,
                                        " --data_dir=", dir, "/store --listen=127.0.0.1:0",
                                        " --health_listen=off");
  struct Case {
    std::string args;
    std::string mentions;
  };
  const std::string unknown_field =
      WriteFile(dir, "bad.json", R"({"authority": "200046977", "dataDirectory": "/x"})");
  const std::vector<Case> cases = {
      {absl::StrCat(" --authority=200046978 --tls_dir=", NodeTlsDir(kLyon)), "authority"},
      {absl::StrCat(" --authority=", kLyon, " --tls_dir=", dir, "/nowhere"), "cannot read"},
      {absl::StrCat(" --authority=", kLyon, " --tls_dir=", NodeTlsDir(kBourg)),
       "the node certificate is for"},
      {absl::StrCat(" --authority=", kLyon, " --tls_dir=", NodeTlsDir(kLyon),
                    " --durability=sometimes"),
       "durability"},
      {absl::StrCat(" --authority=", kLyon, " --tls_dir=", NodeTlsDir(kLyon), " --listen=nowhere"),
       "listen_address"},
      {absl::StrCat(" --authority=", kLyon, " --tls_dir=", NodeTlsDir(kLyon),
                    " --peer_listen=127.0.0.1:0 --peers=", kLyon, "@127.0.0.1:1"),
       "peers[0].authority"},
      {absl::StrCat(" --authority=", kLyon, " --tls_dir=", NodeTlsDir(kLyon),
                    " --peer_compression=zstd"),
       "peer_compression"},
      {absl::StrCat(" --config=", unknown_field), "config file"},
      {absl::StrCat(" --authority=", kLyon, " --tls_dir=", NodeTlsDir(kLyon),
                    " --member_retention_seconds=5"),
       "member_retention_seconds: at least 15"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.args);
    std::string out;
    EXPECT_EQ(RunCommand(base + c.args, &out), 2) << out;
    EXPECT_THAT(out, HasSubstr(c.mentions));
    EXPECT_THAT(out, Not(HasSubstr("serving the API")));
  }
}

// A node's ports are its own: a second node given an address a running node listens on
// (API, health or peer port) refuses to start, rather than sharing its connections.
TEST(ProcessTest, ANodeRefusesToStartOnAPortInUse) {
  const std::string dir = testing::MakeTempDir("ports");
  const int peer_port = testing::FreePort();
  NodeProcess::Options o;
  o.data_dir = dir + "/first";
  o.extra_args = {absl::StrCat("--peer_listen=127.0.0.1:", peer_port)};
  NodeProcess first(o);
  std::string error;
  ASSERT_TRUE(first.Start(&error)) << error;
  const std::string base =
      absl::StrCat(BinaryPath("interco-node"), " --authority=", kLyon, " --federation=",
                   testing::kFederation, " --tls_dir=", NodeTlsDir(kLyon), " --data_dir=", dir,
                   "/second");
  for (const std::string& ports :
       {absl::StrCat(" --listen=127.0.0.1:", first.api_port(), " --health_listen=off"),
        absl::StrCat(" --listen=127.0.0.1:0 --health_listen=127.0.0.1:", first.health_port()),
        absl::StrCat(" --listen=127.0.0.1:0 --health_listen=off --peer_listen=127.0.0.1:",
                     peer_port)}) {
    std::string out;
    EXPECT_EQ(RunCommand(base + ports, &out), 2) << ports << ": " << out;
    EXPECT_THAT(out, HasSubstr("address in use")) << ports;
  }
  // The first one still answers.
  std::string info;
  EXPECT_EQ(RunCommand(absl::StrCat("INTERCO_TLS_DIR=", testing::ClientTlsDir(kLyon, "admin"), " ",
                                    BinaryPath("interco"), " --addr=127.0.0.1:", first.api_port(),
                                    " info"),
                       &info),
            0)
      << info;
}

TEST(ProcessTest, AsyncDurabilityIsReportedAndStillPersistsAcrossRestart) {
  NodeProcess::Options o;
  o.data_dir = testing::MakeTempDir("async") + "/store";
  o.durability = "async";
  NodeProcess node(o);
  std::string error;
  ASSERT_TRUE(node.Start(&error)) << error;
  const std::string cli = absl::StrCat("INTERCO_TLS_DIR=", ClientTlsDir(kLyon, "admin"), " ",
                                       BinaryPath("interco"), " --addr=127.0.0.1:");
  const std::string def = WriteFile(testing::MakeTempDir("async-def"), "r.json",
                                    R"({"schema": {"fields": [{"name": "nom", "type": "FIELD_TYPE_STRING"}]}})");
  std::string out;
  ASSERT_EQ(RunCommand(absl::StrCat(cli, node.api_port(), " registry create rec ", def), &out), 0) << out;
  ASSERT_EQ(RunCommand(absl::StrCat(cli, node.api_port(), " put rec a '{\"nom\": \"x\"}'"), &out), 0) << out;
  out.clear();
  ASSERT_EQ(RunCommand(absl::StrCat(cli, node.api_port(), " info"), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("async"));
  ASSERT_EQ(node.Terminate() & 0x7f, 0);
  ASSERT_TRUE(node.Start(&error)) << error;
  out.clear();
  ASSERT_EQ(RunCommand(absl::StrCat(cli, node.api_port(), " get rec a"), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("x"));
}

// A private PKI of the test federation (so that tests may revoke or add certificates
// without touching the shared one), with a node for Lyon and `clients` made by `pki.sh
// client` arguments (e.g. "--name victim --role reader"); and a node using it.
class PrivatePki {
 public:
  PrivatePki(const std::string& tag, const std::vector<std::string>& clients)
      : dir_(testing::MakeTempDir(tag)) {
    std::string out;
    EXPECT_EQ(RunCommand(absl::StrCat("bash ", INTERCO_TEST_SOURCE_DIR, "/certs/dev-certs.sh ",
                                      dir_, "/pki ", testing::kFederation, " ", kLyon),
                         &out),
              0)
        << out;
    for (const std::string& c : clients) EXPECT_EQ(Pki(absl::StrCat("client --siren ", kLyon, " ", c)), 0);
  }

  // Runs certs/pki.sh on this PKI; returns its exit code.
  int Pki(const std::string& args) {
    std::string out;
    const int rc = RunCommand(absl::StrCat("bash ", INTERCO_TEST_SOURCE_DIR, "/certs/pki.sh --dir ",
                                           dir_, "/pki ", args),
                              &out);
    EXPECT_EQ(rc, 0) << out;
    return rc;
  }

  NodeProcess::Options NodeOptions() const {
    NodeProcess::Options o;
    o.data_dir = dir_ + "/store";
    o.tls_dir = absl::StrCat(dir_, "/pki/nodes/", kLyon);
    return o;
  }

  // `interco info` as one of Lyon's clients; returns the CLI's exit code. Its output is
  // then last_output().
  int Info(const NodeProcess& node, const std::string& client) {
    last_output_.clear();
    return RunCommand(absl::StrCat("INTERCO_TLS_DIR=", dir_, "/pki/clients/", kLyon, "/", client,
                                   " ", BinaryPath("interco"), " --timeout=5 --addr=127.0.0.1:",
                                   node.api_port(), " info"),
                      &last_output_);
  }
  const std::string& last_output() const { return last_output_; }

  const std::string& dir() const { return dir_; }

 private:
  const std::string dir_;
  std::string last_output_;
};

// A certificate revoked while the node runs is refused from the next handshake, without a
// restart; other clients are unaffected. Uses a private PKI, not the shared test one.
TEST(ProcessTest, RevokedClientIsRefusedAfterCrlUpdateWithoutRestart) {
  PrivatePki pki("crl", {"--name victim --role reader"});
  NodeProcess::Options o = pki.NodeOptions();
  o.extra_args = {absl::StrCat("--crl_dir=", pki.dir(), "/pki/crl")};
  NodeProcess node(o);
  std::string error;
  ASSERT_TRUE(node.Start(&error)) << error;
  auto cli = [&](const std::string& client) { return pki.Info(node, client); };
  ASSERT_EQ(cli("victim"), 0) << pki.last_output();
  ASSERT_EQ(pki.Pki(absl::StrCat("revoke clients/", kLyon, "/victim")), 0);
  // The node rereads the CRL directory at most once a second.
  int rc = 0;
  for (int i = 0; i < 300 && rc == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    rc = cli("victim");
  }
  EXPECT_EQ(rc, 1) << "the revoked client still got in: " << pki.last_output();
  EXPECT_EQ(cli("admin"), 0) << "another client was refused: " << pki.last_output()
                              << "\nthe node's log:\n" << node.Log();
  std::ifstream log(node.log_path());
  std::stringstream ss;
  ss << log.rdbuf();
  EXPECT_THAT(ss.str(), HasSubstr("certificate revoked"));
}

// Certificates outside their validity are refused at the handshake; a valid one of the
// same authority is not. Uses a private PKI.
TEST(ProcessTest, ExpiredAndNotYetValidClientsAreRefused) {
  PrivatePki pki("validity",
                 {"--name expired --role reader --not-before 20200101000000Z "
                  "--not-after 20210101000000Z",
                  "--name early --role reader --not-before 20300101000000Z "
                  "--not-after 20310101000000Z"});
  NodeProcess node(pki.NodeOptions());
  std::string error;
  ASSERT_TRUE(node.Start(&error)) << error;
  auto cli = [&](const std::string& client) { return pki.Info(node, client); };
  EXPECT_EQ(cli("expired"), 1) << pki.last_output();
  EXPECT_EQ(cli("early"), 1) << pki.last_output();
  EXPECT_EQ(cli("admin"), 0) << pki.last_output() << "\nthe node's log:\n" << node.Log();
}

// Certificates of the federation's own CA whose SPIFFE ID is missing, of another trust
// domain, of another path shape, or names no valid SIREN: refused at the handshake, with
// the reason in the node's log. Made with the OpenSSL CLI from the private PKI's issuing CA.
TEST(ProcessTest, WrongOrMissingSanIsRefused) {
  PrivatePki pki("san", {});
  NodeProcess node(pki.NodeOptions());
  std::string error;
  ASSERT_TRUE(node.Start(&error)) << error;
  const std::string issuing = pki.dir() + "/pki/issuing";
  auto make = [&](const std::string& name, const std::string& san) {
    const std::string d = absl::StrCat(pki.dir(), "/pki/clients/", kLyon, "/", name);
    std::string ext = "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                      "extendedKeyUsage=clientAuth\n";
    if (!san.empty()) ext += "subjectAltName=" + san + "\n";
    std::string out;
    const int rc = RunCommand(
        absl::StrCat("set -e; mkdir -p ", d, "; cd ", d,
                     "; openssl genpkey -algorithm ed25519 -out tls.key 2>/dev/null",
                     "; openssl req -new -key tls.key -subj /O=", kLyon, "/OU=writer/CN=", name,
                     " -out tls.csr; printf '", ext, "' > ext.cnf",
                     "; openssl x509 -req -in tls.csr -CA ", issuing, "/ca.crt -CAkey ", issuing,
                     "/ca.key -set_serial 0x$(openssl rand -hex 8) -days 30 -extfile ext.cnf",
                     " -out leaf.crt 2>/dev/null; cat leaf.crt ", issuing, "/ca.crt > tls.crt; cp ",
                     pki.dir(), "/pki/ca.crt ca.crt"),
        &out);
    EXPECT_EQ(rc, 0) << out;
  };
  make("nosan", "");
  make("otherdomain", absl::StrCat("URI:spiffe://other.test/collectivite/", kLyon, "/client/x"));
  make("othershape", absl::StrCat("URI:spiffe://interco.test/mairie/", kLyon));
  make("badsiren", "URI:spiffe://interco.test/collectivite/123456789/client/x");
  for (const char* client : {"nosan", "otherdomain", "othershape", "badsiren"}) {
    EXPECT_EQ(pki.Info(node, client), 1) << client << " got in: " << pki.last_output();
  }
  EXPECT_EQ(pki.Info(node, "admin"), 0) << "a proper client was refused: " << pki.last_output()
                                         << "\nthe node's log:\n" << node.Log();
  std::ifstream log(node.log_path());
  std::stringstream ss;
  ss << log.rdbuf();
  EXPECT_THAT(ss.str(), HasSubstr("certificate has no SPIFFE ID"));
  EXPECT_THAT(ss.str(), HasSubstr("SPIFFE ID of federation \"other.test\""));
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("cli");
    NodeProcess::Options o;
    o.data_dir = dir_ + "/store";
    node_ = std::make_unique<NodeProcess>(o);
    std::string error;
    ASSERT_TRUE(node_->Start(&error)) << error;
  }

  // Runs the CLI; returns its exit code, output in *out.
  int Cli(const std::string& args, std::string* out) {
    out->clear();
    return RunCommand(absl::StrCat("INTERCO_TLS_DIR=", ClientTlsDir(kLyon, "admin"), " ",
                                   BinaryPath("interco"), " --addr=127.0.0.1:", node_->api_port(),
                                   " ", args),
                      out);
  }

  std::string dir_;
  std::unique_ptr<NodeProcess> node_;
};

TEST_F(CliTest, ManagesRegistriesAndRecordsEndToEnd) {
  const std::string def = WriteFile(dir_, "services.json", R"({
    "displayName": "Services",
    "schema": {"fields": [
      {"name": "nom", "type": "FIELD_TYPE_STRING", "required": true},
      {"name": "commune", "type": "FIELD_TYPE_STRING", "indexed": true, "format": "STRING_FORMAT_INSEE_COMMUNE"},
      {"name": "canaux", "type": "FIELD_TYPE_STRING_SET"},
      {"name": "ouvert", "type": "FIELD_TYPE_BOOL"}
    ]}})");
  const std::string csv = WriteFile(dir_, "services.csv",
                                    "id,nom,commune,canaux\n"
                                    "mairie-01053-01,\"Mairie, Bourg-en-Bresse\",01053,guichet telephone\n"
                                    "mairie-01451-01,Mairie de Viriat,01451,guichet\n"
                                    "cio-01053-01,\"Centre \"\"CIO\"\"\",01053,\n");
  std::string out;
  ASSERT_EQ(Cli(absl::StrCat("registry create services ", def), &out), 0) << out;
  ASSERT_EQ(Cli(absl::StrCat("import services ", csv, " --key id"), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("imported 3 records"));
  // Importing again changes nothing and succeeds.
  ASSERT_EQ(Cli(absl::StrCat("import services ", csv, " --key id"), &out), 0) << out;

  ASSERT_EQ(Cli("get services mairie-01053-01", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("Mairie, Bourg-en-Bresse"));
  EXPECT_THAT(out, HasSubstr("[guichet, telephone]"));
  ASSERT_EQ(Cli("--output=json get services cio-01053-01", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("\"string_value\":\"Centre \\\"CIO\\\"\""));

  ASSERT_EQ(Cli("list services --where commune=01053", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("mairie-01053-01"));
  EXPECT_THAT(out, HasSubstr("cio-01053-01"));
  EXPECT_THAT(out, Not(HasSubstr("mairie-01451-01")));

  ASSERT_EQ(Cli("put services mairie-01451-01 '{\"ouvert\": true, \"canaux\": [\"web\"]}'", &out), 0)
      << out;
  ASSERT_EQ(Cli("get services mairie-01451-01", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("true"));
  EXPECT_THAT(out, HasSubstr("[web]"));

  // Errors: the server's (exit 1, with the status code) and local ones (exit 2).
  EXPECT_EQ(Cli("put services mairie-01451-01 '{\"commune\": \"2C001\"}'", &out), 1) << out;
  EXPECT_THAT(out, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_EQ(Cli("put services x '{not json'", &out), 2) << out;
  EXPECT_EQ(Cli("put services x '{\"zzz\": 1}'", &out), 2) << out;
  EXPECT_EQ(Cli("get nowhere x", &out), 1) << out;
  EXPECT_THAT(out, HasSubstr("NOT_FOUND"));

  ASSERT_EQ(Cli("delete services cio-01053-01", &out), 0) << out;
  EXPECT_EQ(Cli("get services cio-01053-01", &out), 1) << out;
  EXPECT_THAT(out, HasSubstr("NOT_FOUND"));

  // The change stream from the oldest retained change: 3 imports, 1 update, 1 delete.
  ASSERT_EQ(Cli("--output=json watch services --from_oldest --count 5", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("CHANGE_KIND_DELETE"));

  ASSERT_EQ(Cli("info", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr(kLyon));
  EXPECT_THAT(out, HasSubstr("services (2)"));
  ASSERT_EQ(Cli("registries", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("services"));

  // The audit chain of the registry, newest first, with the refused write in it.
  ASSERT_EQ(Cli("audit services --limit 0", &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("DELETE_RECORD"));
  EXPECT_THAT(out, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(out, HasSubstr(absl::StrCat(kLyon, "/admin")));
  EXPECT_THAT(out, HasSubstr("(signed by the node)"));

  // Provenance of a record, saved and verified offline (no node needed for the check).
  const std::string proof = dir_ + "/proof.json";
  ASSERT_EQ(Cli(absl::StrCat("provenance services mairie-01451-01 --out ", proof), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("ouvert"));
  ASSERT_EQ(RunCommand(absl::StrCat(BinaryPath("interco"), " verify-provenance ", proof, " --ca ",
                                    ClientTlsDir(kLyon), "/ca.crt"),
                       &out),
            0)
      << out;
  EXPECT_THAT(out, HasSubstr("verified: registries/services/records/mairie-01451-01"));
  // A doctored proof is refused.
  ASSERT_EQ(RunCommand(absl::StrCat("sed -i 's/Mairie de Viriat/Mairie de Lyon/' ", proof), &out), 0);
  EXPECT_EQ(RunCommand(absl::StrCat(BinaryPath("interco"), " verify-provenance ", proof, " --ca ",
                                    ClientTlsDir(kLyon), "/ca.crt"),
                       &out),
            2)
      << out;
}

// Roles as the CLI meets them: a writer cannot read the audit log, a reader cannot write.
TEST_F(CliTest, RolesAreEnforcedForCliUsers) {
  std::string out;
  const std::string def = WriteFile(dir_, "r.json",
                                    R"({"schema": {"fields": [{"name": "nom", "type": "FIELD_TYPE_STRING"}]}})");
  ASSERT_EQ(Cli(absl::StrCat("registry create rec ", def), &out), 0) << out;
  auto as = [&](const std::string& client, const std::string& args) {
    return RunCommand(absl::StrCat("INTERCO_TLS_DIR=", ClientTlsDir(kLyon, client), " ",
                                   BinaryPath("interco"), " --addr=127.0.0.1:", node_->api_port(),
                                   " ", args),
                      &out);
  };
  EXPECT_EQ(as("app", "audit rec"), 1) << out;
  EXPECT_THAT(out, HasSubstr("PERMISSION_DENIED"));
  EXPECT_EQ(as("viewer", "put rec a '{\"nom\": \"x\"}'"), 1) << out;
  EXPECT_THAT(out, HasSubstr("PERMISSION_DENIED"));
  EXPECT_EQ(as("app", "put rec a '{\"nom\": \"x\"}'"), 0) << out;
  EXPECT_EQ(as("viewer", "get rec a"), 0) << out;
}

// Bytes that the sockets between two local ports have sent, both ways (`ss`, TCP
// bytes_sent: TLS and HTTP/2 framing included).
uint64_t BytesBetween(int port_a, int port_b) {
  std::string out;
  RunCommand(absl::StrCat("ss -tinH '( sport = :", port_a, " or dport = :", port_a,
                          " or sport = :", port_b, " or dport = :", port_b, " )'"),
             &out);
  uint64_t total = 0;
  for (size_t pos = out.find("bytes_sent:"); pos != std::string::npos;
       pos = out.find("bytes_sent:", pos + 1)) {
    total += std::strtoull(out.c_str() + pos + 11, nullptr, 10);
  }
  return total;
}

// A registry of `records` records as a directory holds them (names, addresses, numbers),
// written on `node` by 8 clients at once; returns the bytes of their names and values.
uint64_t FillDirectory(const NodeProcess& node, const v1::CreateRegistryRequest& create,
                       int records, std::string* text = nullptr) {
  auto admin = v1::RegistryService::NewStub(
      testing::MtlsChannel(node.api_port(), ClientTlsDir(kLyon, "admin")));
  grpc::ClientContext ctx;
  v1::Registry r;
  EXPECT_TRUE(admin->CreateRegistry(&ctx, create, &r).ok());
  std::atomic<uint64_t> payload{0};
  std::vector<std::string> texts(static_cast<size_t>(records));  // names and values, per record
  std::vector<std::thread> clients;
  for (int c = 0; c < 8; ++c) {
    clients.emplace_back([&, c] {
      auto app = v1::RegistryService::NewStub(
          testing::MtlsChannel(node.api_port(), ClientTlsDir(kLyon, "admin")));
      for (int i = c; i < records; i += 8) {
        v1::CreateRecordRequest req;
        req.set_parent("registries/annuaire");
        req.set_record_id(absl::StrCat("r", i));
        auto& f = *req.mutable_record()->mutable_fields();
        f["nom"].set_string_value(absl::StrCat("Mairie annexe numéro ", i));
        f["commune"].set_string_value(absl::StrCat("0", 1000 + i % 500));
        f["adresse"].set_string_value(absl::StrCat(i % 300, " rue de la République"));
        f["telephone"].set_string_value(absl::StrCat("04 74 ", 10 + i % 89, " 00 00"));
        // Opening hours, as such directories write them: text that repeats itself, so
        // that even a frame of one record compresses (how many records share a frame
        // depends on timing).
        std::string hours;
        for (const char* day : {"lundi", "mardi", "mercredi", "jeudi", "vendredi"}) {
          absl::StrAppend(&hours, day, " : 8h30-12h00 et 13h30-", 17 + i % 2, "h00 ; ");
        }
        f["horaires"].set_string_value(hours + "samedi et dimanche : fermé");
        for (const auto& [k, v] : f) {
          payload += k.size() + v.string_value().size();
          absl::StrAppend(&texts[static_cast<size_t>(i)], k, v.string_value());
        }
        grpc::ClientContext call;
        // Eight clients connect at once to a node that may be slow (a sanitizer build on
        // a busy machine): a connection that fails is tried again, within a minute.
        call.set_wait_for_ready(true);
        call.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
        v1::Record out;
        const grpc::Status created = app->CreateRecord(&call, req, &out);
        EXPECT_TRUE(created.ok()) << "record " << i << ": " << created.error_code() << " "
                                  << created.error_message();
      }
    });
  }
  for (auto& t : clients) t.join();
  if (text != nullptr) *text = absl::StrJoin(texts, "");
  return payload;
}

// Bytes that a new node `target` receives and sends while catching up the registry from
// `source` (which holds `records` records), with `compression` on both.
uint64_t CatchUpBytes(const std::string& dir, const std::string& compression,
                      const v1::CreateRegistryRequest& create, int records, bool fill,
                      uint64_t* payload, std::string* text = nullptr) {
  const int source_peer = testing::FreePort(), target_peer = testing::FreePort();
  NodeProcess::Options so;
  so.authority = kLyon;
  so.data_dir = dir + "/source";
  so.durability = "async";
  so.extra_args = {absl::StrCat("--peer_listen=127.0.0.1:", source_peer),
                   absl::StrCat("--peers=", kBourg, "@127.0.0.1:", target_peer),
                   absl::StrCat("--peer_compression=", compression)};
  NodeProcess source(so);
  std::string error;
  EXPECT_TRUE(source.Start(&error)) << error;
  if (fill) *payload = FillDirectory(source, create, records, text);
  NodeProcess::Options to = so;
  to.authority = kBourg;
  to.data_dir = absl::StrCat(dir, "/target-", compression);
  to.extra_args = {absl::StrCat("--peer_listen=127.0.0.1:", target_peer),
                   absl::StrCat("--peers=", kLyon, "@127.0.0.1:", source_peer),
                   absl::StrCat("--peer_compression=", compression)};
  NodeProcess target(to);
  EXPECT_TRUE(target.Start(&error)) << error;
  auto bourg = v1::RegistryService::NewStub(
      testing::MtlsChannel(target.api_port(), ClientTlsDir(kBourg, "admin")));
  {
    grpc::ClientContext ctx;
    v1::Registry r;
    EXPECT_TRUE(bourg->CreateRegistry(&ctx, create, &r).ok());
  }
  int64_t have = 0;
  for (int i = 0; i < 600 && have < records; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    grpc::ClientContext ctx;
    v1::GetRegistryRequest get;
    get.set_name("registries/annuaire");
    v1::Registry r;
    if (bourg->GetRegistry(&ctx, get, &r).ok()) have = r.record_count();
  }
  EXPECT_EQ(have, records);
  return BytesBetween(source_peer, target_peer);
}

TEST(ProcessTest, PeerTrafficIsCompressed) {
  const std::string dir = testing::MakeTempDir("wire");
  v1::CreateRegistryRequest create;
  create.set_registry_id("annuaire");
  create.mutable_registry()->set_owner(kLyon);
  create.mutable_registry()->mutable_policy()->mutable_readers()->add_authorities(kBourg);
  for (const char* f : {"nom", "commune", "adresse", "telephone", "horaires"}) {
    auto* spec = create.mutable_registry()->mutable_schema()->add_fields();
    spec->set_name(f);
    spec->set_type(v1::FIELD_TYPE_STRING);
  }
  constexpr int kRecords = 2000;
  uint64_t payload = 0;
  std::string text;
  const uint64_t plain =
      CatchUpBytes(dir, "none", create, kRecords, /*fill=*/true, &payload, &text);
  const uint64_t gzip = CatchUpBytes(dir, "gzip", create, kRecords, /*fill=*/false, &payload);
  // The names and values compressed on their own, in record order, for comparison: the
  // changes travel by column, but records written one by one by concurrent clients make
  // small batches and short runs, each with its signature and header (64 + ~40 bytes that
  // no compression shrinks). Reported, not held to a bound: how records fall into batches
  // depends on timing (the codec's own bound is in frame_codec_test.cc).
  const size_t compressed = testing::Deflated(text);
  ASSERT_GT(compressed, 0u);

  // The same catch-up, same records, same source log: gzip must save a good part of it
  // (stamps, authors, field names and framing repeat from change to change).
  EXPECT_GT(plain, payload) << "uncompressed frames carry more than the names and values";
  EXPECT_LT(static_cast<double>(gzip), 0.75 * static_cast<double>(plain))
      << "gzip " << gzip << " bytes, none " << plain << " bytes, payload " << payload;
  std::printf("catch-up of %d records: %llu bytes compressed, %llu uncompressed, %llu bytes "
              "of names and values (%llu compressed alone)\n",
              kRecords, static_cast<unsigned long long>(gzip), static_cast<unsigned long long>(plain),
              static_cast<unsigned long long>(payload), static_cast<unsigned long long>(compressed));
}

}  // namespace
}  // namespace interco
