// The certificates that sign change-log batches, bound to SIRENs by the federation CA:
// the node's replication::Verifier.
//
// A certificate is kept only if it chains to the federation CA bundle and carries the
// SPIFFE ID of an authority's node (spiffe://<federation>/collectivite/<SIREN>, no client
// part) and an Ed25519 key. Its validity period is not checked when it is added but for
// each batch, at the batch's signing time, as is revocation: a batch signed before its
// certificate expired or was revoked stays valid, so that a node catching up after a long
// absence still accepts history signed with keys since rotated. Certificates persist in
// the node's store (meta "cert/<key id>") and are sent to peers before the batches they
// sign. Thread-safe.
#ifndef INTERCO_NODE_TRUST_CERTIFICATE_STORE_H_
#define INTERCO_NODE_TRUST_CERTIFICATE_STORE_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "node/crypto/x509.h"
#include "node/storage/record_store.h"
#include "node/tls/revocation.h"
#include "replication/env.h"

namespace interco::node {

struct CertificateStoreOptions {
  // Trust domain of the federation's SPIFFE IDs. Required.
  std::string federation;
  // PEM bundle of the federation CAs (read again for each new certificate, so a rotated
  // bundle applies without restart). Required.
  std::string ca_file;
  // Revocation, checked at each batch's signing time. May be null.
  std::shared_ptr<RevocationList> revocation;
  // Where certificates persist. May be null (kept in memory only: tests, benchmarks).
  RecordStore* store = nullptr;
};

class CertificateStore final : public replication::Verifier {
 public:
  // Loads the certificates already in the store.
  static absl::StatusOr<std::unique_ptr<CertificateStore>> Open(CertificateStoreOptions options);

  absl::Status Verify(uint32_t origin, std::string_view key_id, int64_t at_millis,
                      std::string_view message, std::string_view signature) override;
  absl::StatusOr<std::string> AddCertificate(std::string_view der) override;
  std::optional<std::string> Certificate(std::string_view key_id) override;

  // Verify() ahead of the engine, on another thread (a peer session's reader): a success
  // is remembered, and the engine's own Verify() of the same signed message is then a
  // lookup. Lets verification of batch N+1 overlap the apply of batch N. Remembered
  // successes are bounded (the oldest are forgotten) and used once.
  void VerifyAhead(uint32_t origin, std::string_view key_id, int64_t at_millis,
                   std::string_view message, std::string_view signature);

  // Number of certificates known.
  size_t size();

 private:
  struct Entry {
    std::string der;
    X509Ptr cert;
    uint32_t origin = 0;
    int64_t not_before_ms = 0;
    int64_t not_after_ms = 0;
  };

  explicit CertificateStore(CertificateStoreOptions options) : options_(std::move(options)) {}
  // Parses and checks a certificate; does not store it.
  absl::StatusOr<std::shared_ptr<const Entry>> Check(std::string_view der);

  absl::Status VerifyNow(uint32_t origin, std::string_view key_id, int64_t at_millis,
                         std::string_view message, std::string_view signature);
  // Identifies one Verify() question and its answer.
  static std::string Digest(uint32_t origin, std::string_view key_id, int64_t at_millis,
                            std::string_view message, std::string_view signature);

  const CertificateStoreOptions options_;
  absl::Mutex mu_;
  // Digests of (message, signature) verified ahead, oldest first.
  std::deque<std::string> verified_order_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> verified_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<const Entry>, std::less<>> by_key_id_ ABSL_GUARDED_BY(mu_);
};

// Hex of a key ID (for logs and messages).
std::string KeyIdHex(std::string_view key_id);

}  // namespace interco::node

#endif  // INTERCO_NODE_TRUST_CERTIFICATE_STORE_H_
