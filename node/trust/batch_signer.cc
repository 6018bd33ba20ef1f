#include "node/trust/batch_signer.h"

#include <openssl/x509.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "node/crypto/x509.h"
#include "node/log.h"
#include "node/trust/certificate_store.h"

namespace interco::node {
namespace {

// Names, sizes and modification times of the files.
std::string Fingerprint(const TlsFiles& files) {
  std::string out;
  for (const std::string& path : {files.cert_file, files.key_file}) {
    std::error_code ec;
    const auto size = std::filesystem::file_size(path, ec);
    const auto mtime = std::filesystem::last_write_time(path, ec);
    absl::StrAppend(&out, path, ":", ec ? 0 : size, ":",
                    ec ? 0 : mtime.time_since_epoch().count(), ";");
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<BatchSigner>> BatchSigner::Open(const TlsFiles& files,
                                                               replication::Verifier& verifier) {
  std::unique_ptr<BatchSigner> signer(new BatchSigner(files, verifier));
  absl::MutexLock l(&signer->mu_);
  if (absl::Status s = signer->Load(); !s.ok()) return s;
  return signer;
}

absl::Status BatchSigner::Load() {
  std::string fingerprint = Fingerprint(files_);
  if (fingerprint == fingerprint_) return absl::OkStatus();
  absl::StatusOr<std::string> cert_pem = ReadFile(files_.cert_file);
  if (!cert_pem.ok()) return cert_pem.status();
  absl::StatusOr<std::string> key_pem = ReadFile(files_.key_file);
  if (!key_pem.ok()) return key_pem.status();
  absl::StatusOr<X509Ptr> cert = ParsePemCertificate(*cert_pem, files_.cert_file);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<EvpPkeyPtr> key = ParsePemPrivateKey(*key_pem, files_.key_file);
  if (!key.ok()) return key.status();
  if (X509_check_private_key(cert->get(), key->get()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(files_.key_file, " does not match ", files_.cert_file));
  }
  if (EVP_PKEY_get_id(key->get()) != EVP_PKEY_ED25519) {
    return absl::InvalidArgumentError(
        absl::StrCat(files_.key_file, ": batches are signed with Ed25519 keys only"));
  }
  absl::StatusOr<std::string> key_id = verifier_.AddCertificate(CertificateDer(cert->get()));
  if (!key_id.ok()) {
    return absl::Status(key_id.status().code(),
                        absl::StrCat(files_.cert_file, ": ", key_id.status().message()));
  }
  if (*key_id == key_id_) {  // the files were touched, the certificate is the same
    fingerprint_ = std::move(fingerprint);
    return absl::OkStatus();
  }
  if (!key_id_.empty()) {
    log::Info(absl::StrCat("batch signing key rotated: ", KeyIdHex(key_id_), " -> ",
                           KeyIdHex(*key_id)));
  }
  previous_key_ = std::move(key_);
  previous_key_id_ = std::move(key_id_);
  key_ = *std::move(key);
  key_id_ = *std::move(key_id);
  fingerprint_ = std::move(fingerprint);
  return absl::OkStatus();
}

std::string BatchSigner::KeyId() {
  absl::MutexLock l(&mu_);
  const int64_t now = absl::ToUnixMillis(absl::Now());
  if (last_check_ms_ < 0 || now - last_check_ms_ >= 1000) {
    last_check_ms_ = now;
    if (absl::Status s = Load(); !s.ok()) {
      log::Warning(absl::StrCat("rotated certificate not used for signing (keeping ",
                                KeyIdHex(key_id_), "): ", s.message()));
      fingerprint_ = Fingerprint(files_);  // do not retry until the files change again
    }
  }
  return key_id_;
}

absl::StatusOr<std::string> BatchSigner::Sign(std::string_view key_id,
                                              std::string_view message) {
  absl::MutexLock l(&mu_);
  if (key_id == key_id_) return Ed25519Sign(key_.get(), message);
  if (!previous_key_id_.empty() && key_id == previous_key_id_) {
    return Ed25519Sign(previous_key_.get(), message);
  }
  return absl::NotFoundError(absl::StrCat("no signing key of certificate ", KeyIdHex(key_id),
                                          " (current: ", KeyIdHex(key_id_), ")"));
}

}  // namespace interco::node
