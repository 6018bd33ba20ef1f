#include "node/tls/revocation.h"

#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <ctime>
#include <filesystem>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "node/crypto/x509.h"
#include "node/log.h"

namespace interco::node {
namespace {

struct CrlFree {
  void operator()(X509_CRL* c) const { X509_CRL_free(c); }
};
struct BnFree {
  void operator()(BIGNUM* b) const { BN_free(b); }
};

std::string NameDer(const X509_NAME* name) {
  unsigned char* der = nullptr;
  const int n = i2d_X509_NAME(name, &der);
  if (n <= 0) return "";
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(n));
  OPENSSL_free(der);
  return out;
}

std::string SerialHex(const ASN1_INTEGER* serial) {
  std::unique_ptr<BIGNUM, BnFree> bn(ASN1_INTEGER_to_BN(serial, nullptr));
  if (bn == nullptr) return "";
  char* hex = BN_bn2hex(bn.get());
  std::string out(hex == nullptr ? "" : hex);
  OPENSSL_free(hex);
  return out;
}

std::string ReadAll(const std::filesystem::path& p) {
  absl::StatusOr<std::string> data = ReadFile(p.string());
  return data.ok() ? *std::move(data) : std::string();
}

}  // namespace

RevocationList::RevocationList(std::string crl_dir, std::string ca_file)
    : crl_dir_(std::move(crl_dir)), ca_file_(std::move(ca_file)) {}

void RevocationList::MaybeReload() {
  const int64_t now = absl::ToUnixMillis(absl::Now());
  if (last_check_ms_ >= 0 && now - last_check_ms_ < 1000) return;
  last_check_ms_ = now;
  // The directory's state: names, sizes and modification times of its files.
  std::error_code ec;
  std::vector<std::filesystem::path> files;
  std::string fingerprint;
  for (const auto& e : std::filesystem::directory_iterator(crl_dir_, ec)) {
    if (!e.is_regular_file(ec)) continue;
    files.push_back(e.path());
    absl::StrAppend(&fingerprint, e.path().filename().string(), ":", e.file_size(ec), ":",
                    e.last_write_time(ec).time_since_epoch().count(), ";");
  }
  if (ec || fingerprint == fingerprint_) return;
  fingerprint_ = fingerprint;

  // The CAs that may sign CRLs.
  const std::vector<X509Ptr> cas = ParsePemCertificates(ReadAll(ca_file_));

  std::map<std::pair<std::string, std::string>, int64_t> revoked;
  for (const auto& path : files) {
    const std::string pem = ReadAll(path);
    auto bio = MemBio(pem);
    std::unique_ptr<X509_CRL, CrlFree> crl(PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr));
    if (crl == nullptr) continue;  // not a CRL (another kind of file)
    const X509_NAME* issuer = X509_CRL_get_issuer(crl.get());
    bool verified = false;
    for (const auto& ca : cas) {
      if (X509_NAME_cmp(issuer, X509_get_subject_name(ca.get())) != 0) continue;
      EVP_PKEY* key = X509_get0_pubkey(ca.get());
      verified = key != nullptr && X509_CRL_verify(crl.get(), key) == 1;
      if (verified) break;
    }
    if (!verified) {
      log::Warning(absl::StrCat("ignoring CRL ", path.string(),
                                ": not signed by a CA of the federation bundle"));
      continue;
    }
    const std::string issuer_der = NameDer(issuer);
    STACK_OF(X509_REVOKED)* entries = X509_CRL_get_REVOKED(crl.get());
    for (int i = 0; i < sk_X509_REVOKED_num(entries); ++i) {
      const X509_REVOKED* r = sk_X509_REVOKED_value(entries, i);
      int64_t at_ms = 0;  // unknown revocation time: revoked since always
      if (std::optional<int64_t> t = Asn1TimeToUnixMillis(X509_REVOKED_get0_revocationDate(r))) {
        at_ms = *t;
      }
      revoked.emplace(std::make_pair(issuer_der, SerialHex(X509_REVOKED_get0_serialNumber(r))),
                      at_ms);
    }
  }
  log::Info(absl::StrCat("revocation list loaded from ", crl_dir_, ": ", revoked.size(),
                         " revoked certificates"));
  revoked_ = std::move(revoked);
}

bool RevocationList::IsRevoked(std::string_view cert_pem) {
  absl::StatusOr<X509Ptr> cert = ParsePemCertificate(cert_pem, "peer certificate");
  if (!cert.ok()) return true;
  return RevokedAt(cert->get()).has_value();
}

std::optional<int64_t> RevocationList::RevokedAt(const X509* cert) {
  const std::pair<std::string, std::string> key(NameDer(X509_get_issuer_name(cert)),
                                                SerialHex(X509_get0_serialNumber(cert)));
  absl::MutexLock l(&mu_);
  MaybeReload();
  auto it = revoked_.find(key);
  if (it == revoked_.end()) return std::nullopt;
  return it->second;
}

std::optional<int64_t> Asn1TimeToUnixMillis(const ASN1_TIME* t) {
  struct tm tm {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return std::nullopt;
  return static_cast<int64_t>(timegm(&tm)) * 1000;
}

}  // namespace interco::node
