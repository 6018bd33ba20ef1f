#include "node/trust/certificate_store.h"

#include <openssl/x509_vfy.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "node/crypto/ed25519.h"
#include "node/crypto/sha256.h"
#include "replication/base/limits.h"
#include "replication/base/strings.h"
#include "replication/ids.h"

namespace interco::node {
namespace {

struct StoreFree {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* c) const { X509_STORE_CTX_free(c); }
};

}  // namespace

std::string KeyIdHex(std::string_view key_id) { return absl::BytesToHexString(ToAbsl(key_id)); }

absl::StatusOr<std::unique_ptr<CertificateStore>> CertificateStore::Open(
    CertificateStoreOptions options) {
  std::unique_ptr<CertificateStore> certs(new CertificateStore(std::move(options)));
  if (certs->options_.store != nullptr) {
    absl::StatusOr<std::vector<std::string>> stored = certs->options_.store->Certificates();
    if (!stored.ok()) return stored.status();
    for (const std::string& der : *stored) {
      // A certificate stored once was checked then; one that no longer chains (the CA
      // bundle changed) is not trusted any more.
      absl::StatusOr<std::shared_ptr<const Entry>> entry = certs->Check(der);
      if (!entry.ok()) continue;
      absl::MutexLock l(&certs->mu_);
      certs->by_key_id_[Sha256(der)] = *std::move(entry);
    }
  }
  return certs;
}

absl::StatusOr<std::shared_ptr<const CertificateStore::Entry>> CertificateStore::Check(
    std::string_view der) {
  absl::StatusOr<X509Ptr> cert = ParseDerCertificate(der);
  if (!cert.ok()) return cert.status();
  auto entry = std::make_shared<Entry>();
  entry->der = std::string(der);
  EVP_PKEY* key = X509_get0_pubkey(cert->get());
  if (key == nullptr || EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) {
    return absl::InvalidArgumentError("certificate key is not Ed25519");
  }
  absl::StatusOr<std::string> uri = SpiffeIdOf(cert->get());
  if (!uri.ok()) return uri.status();
  absl::StatusOr<replication::Principal> principal = replication::ParseSpiffeId(*uri);
  if (!principal.ok()) return principal.status();
  if (principal->federation != options_.federation) {
    return absl::PermissionDeniedError(
        absl::StrCat("certificate of federation \"", principal->federation, "\""));
  }
  if (!principal->client.empty()) {
    return absl::PermissionDeniedError(
        absl::StrCat("client certificate ", *uri, " cannot sign batches"));
  }
  entry->origin = *replication::SirenToOrigin(principal->siren);
  const std::optional<int64_t> nb = Asn1TimeToUnixMillis(X509_get0_notBefore(cert->get()));
  const std::optional<int64_t> na = Asn1TimeToUnixMillis(X509_get0_notAfter(cert->get()));
  if (!nb || !na) return absl::InvalidArgumentError("certificate validity does not parse");
  entry->not_before_ms = *nb;
  entry->not_after_ms = *na + 999;  // notAfter is inclusive, to the second

  // The chain, against the current CA bundle. Time is checked per batch, not here.
  absl::StatusOr<std::string> bundle = ReadFile(options_.ca_file);
  if (!bundle.ok()) return bundle.status();
  std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
  for (const X509Ptr& ca : ParsePemCertificates(*bundle)) X509_STORE_add_cert(store.get(), ca.get());
  std::unique_ptr<X509_STORE_CTX, StoreCtxFree> ctx(X509_STORE_CTX_new());
  if (store == nullptr || ctx == nullptr ||
      X509_STORE_CTX_init(ctx.get(), store.get(), cert->get(), nullptr) != 1) {
    return absl::InternalError("cannot set up certificate verification");
  }
  X509_STORE_CTX_set_flags(ctx.get(), X509_V_FLAG_NO_CHECK_TIME);
  if (X509_verify_cert(ctx.get()) != 1) {
    return absl::PermissionDeniedError(
        absl::StrCat("certificate ", *uri, " does not chain to the federation CA: ",
                     X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()))));
  }
  entry->cert = *std::move(cert);
  return entry;
}

absl::StatusOr<std::string> CertificateStore::AddCertificate(std::string_view der) {
  std::string key_id = Sha256(der);
  {
    absl::MutexLock l(&mu_);
    if (by_key_id_.contains(key_id)) return key_id;
  }
  absl::StatusOr<std::shared_ptr<const Entry>> entry = Check(der);
  if (!entry.ok()) return entry.status();
  if (options_.store != nullptr) {
    if (absl::Status s = options_.store->PutCertificate(key_id, der); !s.ok()) return s;
  }
  absl::MutexLock l(&mu_);
  by_key_id_.emplace(key_id, *std::move(entry));
  return key_id;
}

std::optional<std::string> CertificateStore::Certificate(std::string_view key_id) {
  absl::MutexLock l(&mu_);
  auto it = by_key_id_.find(key_id);
  if (it == by_key_id_.end()) return std::nullopt;
  return it->second->der;
}

size_t CertificateStore::size() {
  absl::MutexLock l(&mu_);
  return by_key_id_.size();
}

std::string CertificateStore::Digest(uint32_t origin, std::string_view key_id, int64_t at_millis,
                                     std::string_view message, std::string_view signature) {
  std::string data = absl::StrCat(origin, "/", at_millis, "/", message.size(), "/");
  data.append(key_id);
  data.append(message);
  data.append(signature);
  return Sha256(data);
}

void CertificateStore::VerifyAhead(uint32_t origin, std::string_view key_id, int64_t at_millis,
                                   std::string_view message, std::string_view signature) {
  if (!VerifyNow(origin, key_id, at_millis, message, signature).ok()) return;
  std::string digest = Digest(origin, key_id, at_millis, message, signature);
  absl::MutexLock l(&mu_);
  if (!verified_.insert(digest).second) return;
  verified_order_.push_back(std::move(digest));
  if (verified_order_.size() > limits::kVerifiedAheadMax) {
    verified_.erase(verified_order_.front());
    verified_order_.pop_front();
  }
}

absl::Status CertificateStore::Verify(uint32_t origin, std::string_view key_id, int64_t at_millis,
                                      std::string_view message, std::string_view signature) {
  {
    const std::string digest = Digest(origin, key_id, at_millis, message, signature);
    absl::MutexLock l(&mu_);
    if (verified_.erase(digest) > 0) return absl::OkStatus();
  }
  return VerifyNow(origin, key_id, at_millis, message, signature);
}

absl::Status CertificateStore::VerifyNow(uint32_t origin, std::string_view key_id,
                                         int64_t at_millis, std::string_view message,
                                         std::string_view signature) {
  std::shared_ptr<const Entry> entry;
  {
    absl::MutexLock l(&mu_);
    auto it = by_key_id_.find(key_id);
    if (it == by_key_id_.end()) {
      return absl::NotFoundError(absl::StrCat("unknown signer certificate ", KeyIdHex(key_id)));
    }
    entry = it->second;
  }
  if (entry->origin != origin) {
    return absl::PermissionDeniedError(
        absl::StrCat("batch of ", replication::OriginToSiren(origin), " signed by a certificate of ",
                     replication::OriginToSiren(entry->origin)));
  }
  if (at_millis < entry->not_before_ms || at_millis > entry->not_after_ms) {
    return absl::PermissionDeniedError(absl::StrCat(
        "batch of ", replication::OriginToSiren(origin), " signed outside its certificate's validity"));
  }
  if (options_.revocation != nullptr) {
    if (std::optional<int64_t> revoked = options_.revocation->RevokedAt(entry->cert.get());
        revoked && at_millis >= *revoked) {
      return absl::PermissionDeniedError(absl::StrCat(
          "batch of ", replication::OriginToSiren(origin), " signed after its certificate was revoked"));
    }
  }
  return Ed25519Verify(X509_get0_pubkey(entry->cert.get()), message, signature);
}

}  // namespace interco::node
