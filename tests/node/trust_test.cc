// Signed provenance on the node side, with real Ed25519 certificates made by certs/:
// the batch signer, the certificate store (chain, SAN, validity, revocation at signing
// time, persistence), rotation, and signed commits of the record store.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "node/crypto/sha256.h"
#include "node/crypto/x509.h"
#include "node/storage/keys.h"
#include "node/storage/record_store.h"
#include "node/storage/rocksdb_store.h"
#include "node/system_clock.h"
#include "node/trust/batch_signer.h"
#include "node/trust/certificate_store.h"
#include "node/trust/provenance.h"
#include "replication/base/limits.h"
#include "replication/change_log.h"
#include "replication/ids.h"
#include "tests/testing/test_env.h"

namespace interco::node {
namespace {

using ::interco::testing::kAbergement;
using ::interco::testing::kBourg;
using ::interco::testing::kFederation;
using ::interco::testing::kLyon;

uint32_t Origin(const std::string& siren) { return *replication::SirenToOrigin(siren); }

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::unique_ptr<CertificateStore> NewCertificateStore(const std::string& ca_file,
                                                      RecordStore* store = nullptr,
                                                      std::shared_ptr<RevocationList> crl = nullptr) {
  CertificateStoreOptions o;
  o.federation = kFederation;
  o.ca_file = ca_file;
  o.store = store;
  o.revocation = std::move(crl);
  return *CertificateStore::Open(o);
}

std::string LeafDer(const std::string& tls_dir) {
  auto cert = ParsePemCertificate(*ReadFile(tls_dir + "/tls.crt"), "tls.crt");
  return CertificateDer(cert->get());
}

TEST(TrustTest, SignsWithTheNodeKeyAndVerifiesAgainstItsCertificate) {
  const std::string dir = testing::NodeTlsDir(kLyon);
  auto certs = NewCertificateStore(dir + "/ca.crt");
  auto signer = BatchSigner::Open(TlsFiles::InDirectory(dir), *certs);
  ASSERT_TRUE(signer.ok()) << signer.status();
  EXPECT_EQ((*signer)->KeyId(), Sha256(LeafDer(dir)));
  EXPECT_EQ(certs->size(), 1u) << "the signer's own certificate is known";

  const std::string key_id = (*signer)->KeyId();
  const std::string message = replication::SignedMessage(key_id, NowMs(), "header bytes");
  auto signature = (*signer)->Sign(key_id, message);
  ASSERT_TRUE(signature.ok());
  EXPECT_EQ(signature->size(), 64u);
  EXPECT_EQ((*signer)->Sign(std::string(32, 'x'), message).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(certs->Verify(Origin(kLyon), key_id, NowMs(), message, *signature).ok());

  // Another origin, an altered message or signature, an unknown key, a time outside the
  // certificate's validity: each refused with its own code.
  EXPECT_EQ(certs->Verify(Origin(kBourg), key_id, NowMs(), message, *signature).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(certs->Verify(Origin(kLyon), key_id, NowMs(), message + "x", *signature).code(),
            absl::StatusCode::kUnauthenticated);
  std::string flipped = *signature;
  flipped[10] ^= 1;
  EXPECT_EQ(certs->Verify(Origin(kLyon), key_id, NowMs(), message, flipped).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(certs->Verify(Origin(kLyon), std::string(32, 'k'), NowMs(), message, *signature).code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(certs->Verify(Origin(kLyon), key_id, 0, message, *signature).code(),
            absl::StatusCode::kPermissionDenied);
  // Verified ahead (as a session's reader thread does), the answer is the same, and a
  // remembered success does not answer another question.
  certs->VerifyAhead(Origin(kLyon), key_id, NowMs(), message, *signature);
  certs->VerifyAhead(Origin(kLyon), key_id, NowMs(), message, flipped);
  EXPECT_EQ(certs->Verify(Origin(kLyon), key_id, NowMs(), message, flipped).code(),
            absl::StatusCode::kUnauthenticated);
  const int64_t at = NowMs();
  certs->VerifyAhead(Origin(kLyon), key_id, at, message, *signature);
  EXPECT_EQ(certs->Verify(Origin(kBourg), key_id, at, message, *signature).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(certs->Verify(Origin(kLyon), key_id, at, message, *signature).ok());
  const int64_t year_2200 = int64_t{7258118400} * 1000;
  EXPECT_EQ(certs->Verify(Origin(kLyon), key_id, year_2200, message, *signature).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST(TrustTest, KeepsOnlyNodeCertificatesOfTheFederationCa) {
  auto certs = NewCertificateStore(testing::NodeTlsDir(kLyon) + "/ca.crt");
  EXPECT_TRUE(certs->AddCertificate(LeafDer(testing::NodeTlsDir(kBourg))).ok());
  // Another federation's CA.
  const std::string foreign = testing::ForeignCertsDir() + "/nodes/" + kBourg;
  EXPECT_EQ(certs->AddCertificate(LeafDer(foreign)).status().code(),
            absl::StatusCode::kPermissionDenied);
  // A client application's certificate cannot speak for its authority's node.
  EXPECT_EQ(certs->AddCertificate(LeafDer(testing::ClientTlsDir(kLyon))).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(certs->AddCertificate("not DER").status().code(),
            absl::StatusCode::kInvalidArgument);
  std::string truncated = LeafDer(testing::NodeTlsDir(kAbergement));
  truncated.resize(truncated.size() - 1);
  EXPECT_FALSE(certs->AddCertificate(truncated).ok());
  EXPECT_EQ(certs->size(), 1u);
}

class TrustStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::MakeTempDir("trust"); }

  std::unique_ptr<RecordStore> OpenStore(const std::string& siren,
                                         replication::Clock* clock = nullptr) {
    RecordStoreOptions o;
    o.path = dir_ + "/store";
    o.authority = siren;
    o.clock = clock != nullptr ? clock : &clock_;
    auto s = RecordStore::Open(o);
    EXPECT_TRUE(s.ok()) << s.status();
    return *std::move(s);
  }

  // A store of Lyon's node signing with its certificate, and registry "equipements"
  // (a string "nom", plus `extra` fields).
  struct Signed {
    std::unique_ptr<RecordStore> store;
    std::unique_ptr<CertificateStore> certs;
    std::unique_ptr<BatchSigner> signer;
    Signed() = default;
    Signed(Signed&&) = default;
    // The store signs until it is closed: it goes first.
    ~Signed() { store.reset(); }
  };
  Signed OpenSignedWithRegistry(const std::vector<std::pair<std::string, interco::v1::FieldType>>& extra = {}) {
    Signed out = ReopenSigned();
    interco::v1::Registry def;
    auto* f = def.mutable_schema()->add_fields();
    f->set_name("nom");
    f->set_type(interco::v1::FIELD_TYPE_STRING);
    for (const auto& [name, type] : extra) {
      f = def.mutable_schema()->add_fields();
      f->set_name(name);
      f->set_type(type);
    }
    EXPECT_TRUE(out.store->CreateRegistry("equipements", def, {kFederation, kLyon, "admin"}).ok());
    return out;
  }

  // Lyon's store written without a key (as if the node stopped before signing its tail):
  // registry "equipements" and one record, in one unsigned batch. On `clock` if given.
  void WriteUnsignedTail(replication::Clock* clock = nullptr) {
    auto store = OpenStore(kLyon, clock);
    interco::v1::Registry def;
    auto* f = def.mutable_schema()->add_fields();
    f->set_name("nom");
    f->set_type(interco::v1::FIELD_TYPE_STRING);
    ASSERT_TRUE(store->CreateRegistry("equipements", def, {kFederation, kLyon, "admin"}).ok());
    replication::LocalWrite w;
    w.kind = replication::LocalWrite::Kind::kCreate;
    w.fields["nom"].set_string_value("piscine");
    ASSERT_TRUE(store->Write("equipements", "piscine", w, {kFederation, kLyon, ""}).ok());
    auto batches = store->ReadBatches("equipements", {Origin(kLyon), 1}, 0, 10);
    ASSERT_EQ(batches->size(), 1u);
    ASSERT_TRUE(batches->back().signature().empty());
  }

  // Lyon's store reopened with its key (which signs the tail).
  Signed ReopenSigned() {
    const std::string tls = testing::NodeTlsDir(kLyon);
    Signed out;
    out.store = OpenStore(kLyon);
    out.certs = NewCertificateStore(tls + "/ca.crt", out.store.get());
    out.signer = *BatchSigner::Open(TlsFiles::InDirectory(tls), *out.certs);
    out.store->SetSigner(out.signer.get());
    return out;
  }

  std::string dir_;
  SystemClock clock_;
};

TEST_F(TrustStoreTest, CertificatesPersistInTheStore) {
  const std::string ca = testing::NodeTlsDir(kLyon) + "/ca.crt";
  const std::string der = LeafDer(testing::NodeTlsDir(kBourg));
  {
    auto store = OpenStore(kLyon);
    auto certs = NewCertificateStore(ca, store.get());
    ASSERT_TRUE(certs->AddCertificate(der).ok());
  }
  auto store = OpenStore(kLyon);
  auto certs = NewCertificateStore(ca, store.get());
  EXPECT_EQ(certs->Certificate(Sha256(der)), der);
}

// Every batch of Lyon's chain of "equipements" once its tail is signed (the committer
// signs it after a moment without writes).
std::vector<interco::replication::v1::Batch> SignedChain(RecordStore& store) {
  for (int i = 0; i < 200; ++i) {
    auto batches = store.ReadBatches("equipements", {Origin(kLyon), 1}, 0, 1000);
    if (batches.ok() && !batches->empty() && !batches->back().signature().empty()) {
      return *std::move(batches);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ADD_FAILURE() << "the tail of the chain was never signed";
  return {};
}

// Checks that each batch of `chain` is signed or covered by the next signed one.
void ExpectEveryBatchCovered(const std::vector<interco::replication::v1::Batch>& chain,
                             CertificateStore& certs) {
  Sha256Hasher hasher;
  for (size_t i = 0; i < chain.size(); ++i) {
    std::vector<std::string> following;
    size_t end = i;
    while (chain[end].signature().empty() && end + 1 < chain.size()) {
      following.push_back(chain[++end].header());
    }
    EXPECT_TRUE(replication::VerifyCovered(chain[i].header(), following, chain[end].signer(),
                                           chain[end].signature(), chain[end].signed_at_ms(),
                                           hasher, certs)
                    .ok())
        << "batch " << i;
  }
}

TEST_F(TrustStoreTest, EveryCommitGroupIsOneBatchCoveredByASignature) {
  auto [store, certs, signer] = OpenSignedWithRegistry();
  const replication::Principal me{kFederation, kLyon, ""};
  for (const char* id : {"piscine", "gymnase"}) {
    replication::LocalWrite w;
    w.kind = replication::LocalWrite::Kind::kCreate;
    w.fields["nom"].set_string_value(id);
    ASSERT_TRUE(store->Write("equipements", id, w, me).ok());
  }
  const auto batches = SignedChain(*store);
  ASSERT_EQ(batches.size(), 2u);
  EXPECT_EQ(batches.back().signer(), signer->KeyId());
  ExpectEveryBatchCovered(batches, *certs);
  Sha256Hasher hasher;
  for (const auto& b : batches) {
    auto decoded = replication::DecodeBatch(b, hasher);
    ASSERT_TRUE(decoded.ok());
    if (b.signature().empty()) continue;
    EXPECT_TRUE(replication::VerifyBatch(*decoded, *certs).ok());
    // A bit flipped anywhere in the signed header breaks it.
    auto tampered = *decoded;
    tampered.raw.mutable_header()->back() ^= 1;
    EXPECT_FALSE(replication::VerifyBatch(tampered, *certs).ok());
  }
}

TEST_F(TrustStoreTest, BurstsOfWritesShareSignaturesAndEveryBatchIsCovered) {
  auto [store, certs, signer] = OpenSignedWithRegistry();
  const replication::Principal me{kFederation, kLyon, ""};
  // 4 writers at once: commit groups follow each other faster than the signing interval
  // (2 ms), so most batches are left to the signature of a later one.
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        replication::LocalWrite w;
        w.kind = replication::LocalWrite::Kind::kUpdate;
        w.allow_missing = true;
        w.fields["nom"].set_string_value(absl::StrCat("v", i));
        EXPECT_TRUE(store->Write("equipements", absl::StrCat("r", t, "-", i % 10), w, me).ok());
      }
    });
  }
  for (auto& w : writers) w.join();
  const auto chain = SignedChain(*store);
  ASSERT_FALSE(chain.empty());
  size_t signed_batches = 0, run = 0, longest_run = 0;
  for (const auto& b : chain) {
    run++;
    longest_run = std::max(longest_run, run);
    if (!b.signature().empty()) {
      signed_batches++;
      run = 0;
    }
  }
  EXPECT_LT(signed_batches, chain.size()) << "no batch was left to a later signature";
  EXPECT_LE(longest_run, limits::kRunBatchesMax);
  ExpectEveryBatchCovered(chain, *certs);
}

TEST_F(TrustStoreTest, ATailIsSignedEvenWhileOtherRegistriesKeepTheNodeBusy) {
  auto [store, certs, signer] = OpenSignedWithRegistry();
  interco::v1::Registry other;
  auto* f = other.mutable_schema()->add_fields();
  f->set_name("nom");
  f->set_type(interco::v1::FIELD_TYPE_STRING);
  ASSERT_TRUE(store->CreateRegistry("associations", other, {kFederation, kLyon, "admin"}).ok());
  const replication::Principal me{kFederation, kLyon, ""};
  // Writers on "associations" never let the commit queue go idle...
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; !stop; ++i) {
        replication::LocalWrite w;
        w.kind = replication::LocalWrite::Kind::kUpdate;
        w.allow_missing = true;
        w.fields["nom"].set_string_value(absl::StrCat("v", i));
        (void)store->Write("associations", absl::StrCat("a", t, "-", i % 10), w, me);
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  // ...while one write goes to "equipements": its batch must still get its signature.
  replication::LocalWrite w;
  w.kind = replication::LocalWrite::Kind::kCreate;
  w.fields["nom"].set_string_value("piscine");
  ASSERT_TRUE(store->Write("equipements", "piscine", w, me).ok());
  bool signed_in_time = false;
  for (int i = 0; i < 2000 && !signed_in_time; ++i) {
    auto batches = store->ReadBatches("equipements", {Origin(kLyon), 1}, 0, 10);
    signed_in_time = batches.ok() && batches->size() == 1 && !batches->back().signature().empty();
    if (!signed_in_time) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  stop = true;
  for (auto& t : writers) t.join();
  EXPECT_TRUE(signed_in_time) << "the tail waited for the node to go idle";
}

TEST_F(TrustStoreTest, ATailLeftUnsignedIsSignedWhenTheKeyIsBack) {
  WriteUnsignedTail();
  if (HasFatalFailure()) return;
  Signed s = ReopenSigned();
  const auto chain = SignedChain(*s.store);
  EXPECT_EQ(chain.size(), 1u);
  ExpectEveryBatchCovered(chain, *s.certs);
}

// The wall clock of `offset_ms` ago.
class PastClock final : public replication::Clock {
 public:
  explicit PastClock(int64_t offset_ms) : offset_ms_(offset_ms) {}
  int64_t NowMillis() override { return system_.NowMillis() - offset_ms_; }
  int64_t MonotonicMillis() override { return system_.MonotonicMillis(); }

 private:
  SystemClock system_;
  const int64_t offset_ms_;
};

// A tail left unsigned by a crash, from before the certificate the node holds when it
// restarts (renewed, or re-keyed, while the node was down). The signature is judged at
// its signing time, inside the signed bytes: the certificate was valid then.
TEST_F(TrustStoreTest, ATailOlderThanTheCertificateIsSignedAtRestartAndVerifies) {
  constexpr int64_t kTenYearsMs = 10LL * 365 * 86400 * 1000;
  PastClock past(kTenYearsMs);  // long before any dev certificate's notBefore
  WriteUnsignedTail(&past);
  if (HasFatalFailure()) return;
  Signed s = ReopenSigned();
  CertificateStore* certs = s.certs.get();
  const auto chain = SignedChain(*s.store);
  ASSERT_EQ(chain.size(), 1u);
  ExpectEveryBatchCovered(chain, *certs);
  const interco::replication::v1::Batch& b = chain[0];
  interco::replication::v1::BatchHeader h;
  ASSERT_TRUE(h.ParseFromString(b.header()));
  const int64_t written = static_cast<int64_t>(replication::HybridLogicalClock::Millis(h.max_hlc()));
  EXPECT_GT(b.signed_at_ms(), written + kTenYearsMs - 60'000);
  // Judged at the time of its changes, the certificate would not have been valid yet.
  EXPECT_EQ(certs->Verify(Origin(kLyon), b.signer(), written,
                          replication::SignedMessage(b.signer(), b.signed_at_ms(), b.header()),
                          b.signature())
                .code(),
            absl::StatusCode::kPermissionDenied);
  // The signing time is signed: moved back, or before the changes, it does not verify.
  Sha256Hasher hasher;
  for (const int64_t at : {written, written - 1, b.signed_at_ms() + 1}) {
    EXPECT_FALSE(
        replication::VerifyCovered(b.header(), {}, b.signer(), b.signature(), at, hasher, *certs).ok())
        << at;
  }
}

TEST_F(TrustStoreTest, ProvenanceOfEveryValueVerifiesOfflineAndTamperingIsCaught) {
  const std::string tls = testing::NodeTlsDir(kLyon);
  auto [store, certs, signer] = OpenSignedWithRegistry(
      {{"canaux", interco::v1::FIELD_TYPE_STRING_SET},
       {"places", interco::v1::FIELD_TYPE_INT64},
       {"entrees", interco::v1::FIELD_TYPE_COUNTER}});
  const replication::Principal app{kFederation, kLyon, "app"};
  const replication::Principal admin{kFederation, kLyon, "admin"};
  // Many writes, so that the values sit in different batches of a longer log.
  for (int i = 0; i < 40; ++i) {
    replication::LocalWrite w;
    w.kind = replication::LocalWrite::Kind::kUpdate;
    w.allow_missing = true;
    w.fields["nom"].set_string_value(absl::StrCat("Piscine ", i));
    w.mask = {"nom"};
    ASSERT_TRUE(store->Write("equipements", absl::StrCat("p", i % 7), w, app).ok());
  }
  replication::LocalWrite w;
  w.kind = replication::LocalWrite::Kind::kUpdate;
  w.fields["canaux"].mutable_string_set_value()->add_values("guichet");
  w.fields["canaux"].mutable_string_set_value()->add_values("telephone");
  w.fields["places"].set_int64_value(250);
  w.fields["entrees"].set_int64_value(12);
  w.mask = {"canaux", "places", "entrees"};
  ASSERT_TRUE(store->Write("equipements", "p3", w, admin).ok());
  // A counter's share is proven by the latest change of its authority's totals.
  replication::LocalWrite exits;
  exits.kind = replication::LocalWrite::Kind::kUpdate;
  exits.fields["entrees"].set_int64_value(10);
  exits.mask = {"entrees"};
  ASSERT_TRUE(store->Write("equipements", "p3", exits, app).ok());

  auto p = store->Provenance("equipements", "p3");
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->values_size(), 5);  // nom, places, two set elements, Lyon's share of entrees
  for (const auto& v : p->values()) {
    EXPECT_EQ(v.authority(), kLyon);
    const bool by_app = v.field() == "nom" || v.field() == "entrees";
    EXPECT_EQ(v.author(), absl::StrCat(kLyon, by_app ? "/app" : "/admin")) << v.field();
    EXPECT_GE(v.batch(), 0);
    EXPECT_EQ(v.counter(), v.field() == "entrees");
    if (v.counter()) {
      EXPECT_EQ(v.share(), 10);
    }
  }
  EXPECT_EQ(p->batches_size(), 3);
  EXPECT_EQ(p->certificates_size(), 1);
  auto ok = VerifyProvenance(*p, tls + "/ca.crt");
  EXPECT_TRUE(ok.ok()) << ok.status();

  // Each kind of tampering is caught.
  auto expect_refused = [&](const std::string& what, auto mutate) {
    interco::v1::RecordProvenance bad = *p;
    mutate(bad);
    EXPECT_FALSE(VerifyProvenance(bad, tls + "/ca.crt").ok()) << what;
  };
  expect_refused("value changed", [](auto& b) {
    (*b.mutable_record()->mutable_fields())["nom"].set_string_value("Piscine fermée");
  });
  expect_refused("author changed", [](auto& b) { b.mutable_values(0)->set_author("200071751/app"); });
  expect_refused("counter value changed", [](auto& b) {
    (*b.mutable_record()->mutable_fields())["entrees"].set_int64_value(11);
  });
  expect_refused("counter share changed", [](auto& b) {
    for (auto& v : *b.mutable_values()) {
      if (v.counter()) v.set_share(11);
    }
    (*b.mutable_record()->mutable_fields())["entrees"].set_int64_value(11);
  });
  expect_refused("counter share counted twice", [](auto& b) {
    for (const auto& v : b.values()) {
      if (v.counter()) {
        *b.add_values() = v;
        break;
      }
    }
    (*b.mutable_record()->mutable_fields())["entrees"].set_int64_value(20);
  });
  expect_refused("signature", [](auto& b) {
    auto* pb = b.mutable_batches(0);
    (pb->signature().empty() ? pb->mutable_following_signature() : pb->mutable_signature())
        ->front() ^= 1;
  });
  expect_refused("signing time", [](auto& b) {
    b.mutable_batches(0)->set_signed_at_ms(b.batches(0).signed_at_ms() - 1);
  });
  // A batch left unsigned is proven by the chain of headers up to the signed one.
  for (int i = 0; i < p->batches_size(); ++i) {
    if (!p->batches(i).signature().empty()) continue;
    expect_refused("chain header", [i](auto& b) {
      b.mutable_batches(i)->mutable_following_headers(0)->back() ^= 1;
    });
    expect_refused("chain cut short", [i](auto& b) {
      b.mutable_batches(i)->mutable_following_headers()->RemoveLast();
    });
    expect_refused("chain proof dropped", [i](auto& b) {
      b.mutable_batches(i)->clear_following_headers();
      b.mutable_batches(i)->clear_following_signature();
    });
    break;
  }
  expect_refused("change", [](auto& b) { b.mutable_batches(0)->mutable_change()->back() ^= 1; });
  expect_refused("digest", [](auto& b) { b.mutable_batches(0)->mutable_change_digests(0)->front() ^= 1; });
  expect_refused("missing value", [](auto& b) { b.mutable_values()->RemoveLast(); });
  expect_refused("foreign certificate", [](auto& b) {
    b.set_certificates(0, LeafDer(testing::ForeignCertsDir() + "/nodes/" + kLyon));
  });
  EXPECT_FALSE(VerifyProvenance(*p, testing::ForeignCertsDir() + "/ca.crt").ok())
      << "another federation's CA vouches for nothing here";
  EXPECT_EQ(store->Provenance("equipements", "absent").status().code(), absl::StatusCode::kNotFound);
}

class AuditStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::MakeTempDir("audit"); }
  std::unique_ptr<RecordStore> Open() {
    RecordStoreOptions o;
    o.path = dir_;
    o.authority = kLyon;
    o.clock = &clock_;
    o.audit_retention_days = 30;
    return *RecordStore::Open(o);
  }
  static void Write(RecordStore& store, const std::string& id) {
    replication::LocalWrite w;
    w.kind = replication::LocalWrite::Kind::kUpdate;
    w.allow_missing = true;
    w.fields["nom"].set_string_value(id);
    ASSERT_TRUE(store.Write("equipements", id, w, {kFederation, kLyon, "app"}).ok());
  }
  static void CreateRegistry(RecordStore& store, int retention_days) {
    interco::v1::Registry def;
    def.set_audit_retention_days(retention_days);
    auto* f = def.mutable_schema()->add_fields();
    f->set_name("nom");
    f->set_type(interco::v1::FIELD_TYPE_STRING);
    ASSERT_TRUE(store.CreateRegistry("equipements", def, {kFederation, kLyon, "admin"}).ok());
  }
  std::string dir_;
  testing::FakeClock clock_{NowMs()};
};

TEST_F(AuditStoreTest, RewritingAnEventBreaksTheChainAndTheCheckSaysWhere) {
  {
    auto store = Open();
    CreateRegistry(*store, 0);
    for (int i = 0; i < 5; ++i) Write(*store, absl::StrCat("r", i));
    auto ok = store->CheckConsistency();
    ASSERT_TRUE(ok.ok()) << ok.status();
  }
  {
    // Someone with disk access turns a refusal into an acceptance, say, of event 3.
    RocksDbOptions ro;
    ro.path = dir_;
    auto db = *RocksDbStore::Open(ro);
    const std::string key = keys::Audit("registries/equipements", 3);
    auto raw = *db->Get(Cf::kAudit, key);
    ASSERT_TRUE(raw.has_value());
    interco::v1::AuditEvent e;
    ASSERT_TRUE(e.ParseFromString(*raw));
    e.set_caller("200071751/intrus");
    rocksdb::WriteBatch wb;
    wb.Put(db->handle(Cf::kAudit), key, e.SerializeAsString());
    ASSERT_TRUE(db->Write(wb, true).ok());
  }
  auto store = Open();
  auto check = store->CheckConsistency();
  ASSERT_FALSE(check.ok());
  EXPECT_EQ(check.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(check.status().message()),
              ::testing::HasSubstr("audit chain registries/equipements is broken at event 4"));
}

TEST_F(AuditStoreTest, RetentionDeletesOldEventsFromTheFrontAndTheChainStillChecks) {
  auto store = Open();
  CreateRegistry(*store, 10);
  for (int i = 0; i < 20; ++i) Write(*store, absl::StrCat("old", i));
  clock_.Advance(int64_t{11} * 86400 * 1000);
  for (int i = 0; i < 3; ++i) Write(*store, absl::StrCat("new", i));
  auto page = store->ListAudit("registries/equipements", 100, "");
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->events.size(), 3u) << "events older than 10 days were kept";
  EXPECT_EQ(page->events.back().event().seq(), 22u);  // 1 creation + 20 old writes before it
  EXPECT_EQ(page->head.seq(), 24u);
  auto check = store->CheckConsistency();
  EXPECT_TRUE(check.ok()) << check.status();
  // The node's own chain has its own retention (30 days here): nothing trimmed yet.
  EXPECT_EQ(store->ListAudit("node", 10, "")->head.seq(), 0u);
}

// A private PKI (certs/dev-certs.sh in a temporary directory) for revocation and rotation.
class PrivatePkiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("trust-pki");
    std::string out;
    ASSERT_EQ(testing::RunCommand(absl::StrCat("bash ", INTERCO_TEST_SOURCE_DIR,
                                               "/certs/dev-certs.sh ", dir_, " ", kFederation, " ",
                                               kLyon, " ", kBourg),
                                  &out),
              0)
        << out;
  }
  int Pki(const std::string& args) {
    std::string out;
    const int rc = testing::RunCommand(
        absl::StrCat("bash ", INTERCO_TEST_SOURCE_DIR, "/certs/pki.sh --dir ", dir_, " ", args), &out);
    EXPECT_EQ(rc, 0) << out;
    return rc;
  }
  std::string NodeDir(const std::string& siren) { return absl::StrCat(dir_, "/nodes/", siren); }

  std::string dir_;
};

TEST_F(PrivatePkiTest, RevokedCertificateSignsNothingAfterItsRevocation) {
  const std::string bourg = NodeDir(kBourg);
  auto crl = std::make_shared<RevocationList>(dir_ + "/crl", dir_ + "/ca.crt");
  auto verifier = NewCertificateStore(dir_ + "/ca.crt", nullptr, crl);
  auto signer_certs = NewCertificateStore(dir_ + "/ca.crt");
  auto signer = *BatchSigner::Open(TlsFiles::InDirectory(bourg), *signer_certs);
  ASSERT_TRUE(verifier->AddCertificate(LeafDer(bourg)).ok());
  const std::string key_id = signer->KeyId();
  const std::string message = replication::SignedMessage(key_id, NowMs(), "h");
  const std::string signature = *signer->Sign(key_id, message);
  const int64_t before = NowMs() - 60'000;
  ASSERT_TRUE(verifier->Verify(Origin(kBourg), key_id, before, message, signature).ok());

  ASSERT_EQ(Pki(absl::StrCat("revoke nodes/", kBourg)), 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // CRLs reread at most 1/s
  // History signed before the revocation stays valid (a catching-up node still needs it);
  // anything signed after it is refused.
  EXPECT_TRUE(verifier->Verify(Origin(kBourg), key_id, before, message, signature).ok());
  EXPECT_EQ(verifier->Verify(Origin(kBourg), key_id, NowMs() + 60'000, message, signature).code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_F(PrivatePkiTest, RotatedCertificateSignsNewBatchesAndOldOnesStillVerify) {
  const std::string lyon = NodeDir(kLyon);
  auto certs = NewCertificateStore(dir_ + "/ca.crt");
  auto signer = *BatchSigner::Open(TlsFiles::InDirectory(lyon), *certs);
  const std::string old_key = signer->KeyId();
  const std::string m1 = replication::SignedMessage(old_key, NowMs(), "before rotation");
  const std::string s1 = *signer->Sign(old_key, m1);

  // certs/pki.sh renew reissues the certificate (a new serial: a new key ID).
  ASSERT_EQ(Pki(absl::StrCat("renew nodes/", kLyon)), 0);
  std::string new_key = old_key;
  for (int i = 0; i < 30 && new_key == old_key; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    new_key = signer->KeyId();
  }
  ASSERT_NE(new_key, old_key) << "the rotated certificate was not picked up";
  EXPECT_EQ(new_key, Sha256(LeafDer(lyon)));
  const std::string m2 = replication::SignedMessage(new_key, NowMs(), "after rotation");
  const std::string s2 = *signer->Sign(new_key, m2);
  EXPECT_TRUE(certs->Verify(Origin(kLyon), new_key, NowMs(), m2, s2).ok());
  // A batch committed just before the rotation, naming the old key, is still signed by it.
  const std::string m3 = replication::SignedMessage(old_key, NowMs(), "committed before, signed after");
  const std::string s3 = *signer->Sign(old_key, m3);
  EXPECT_TRUE(certs->Verify(Origin(kLyon), old_key, NowMs() - 1000, m3, s3).ok());
  EXPECT_TRUE(certs->Verify(Origin(kLyon), old_key, NowMs() - 1000, m1, s1).ok());
  EXPECT_EQ(certs->size(), 2u);
}

}  // namespace
}  // namespace interco::node
