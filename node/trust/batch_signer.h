// Signs this node's change-log batches with the Ed25519 key of its TLS certificate: the
// node's replication::Signer.
//
// The key ID is the SHA-256 of the leaf certificate's DER. The files are checked for
// rotation at most once a second (from KeyId(), called once per batch before Sign()); a
// rotated pair that does not load or does not match is ignored (logged) and the previous
// key keeps signing. Each certificate loaded is added to the certificate store, so that
// peers are sent it before the batches it signs. Thread-safe.
#ifndef INTERCO_NODE_TRUST_BATCH_SIGNER_H_
#define INTERCO_NODE_TRUST_BATCH_SIGNER_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "node/crypto/ed25519.h"
#include "node/tls/credentials.h"
#include "replication/env.h"

namespace interco::node {

class BatchSigner final : public replication::Signer {
 public:
  // Loads the key and certificate; INVALID_ARGUMENT / FAILED_PRECONDITION if they do not
  // load or match, or the certificate is refused by `verifier` (another federation, not
  // chaining to the CA). `verifier` must outlive the signer.
  static absl::StatusOr<std::unique_ptr<BatchSigner>> Open(const TlsFiles& files,
                                                           replication::Verifier& verifier);

  // The key ID of the current certificate (reloading it first if its files changed).
  std::string KeyId() override;
  absl::StatusOr<std::string> Sign(std::string_view key_id, std::string_view message) override;

 private:
  BatchSigner(const TlsFiles& files, replication::Verifier& verifier)
      : files_(files), verifier_(verifier) {}
  // Loads the files if they changed since the last load.
  absl::Status Load() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const TlsFiles files_;
  replication::Verifier& verifier_;
  absl::Mutex mu_;
  std::string fingerprint_ ABSL_GUARDED_BY(mu_);
  int64_t last_check_ms_ ABSL_GUARDED_BY(mu_) = -1;
  EvpPkeyPtr key_ ABSL_GUARDED_BY(mu_);
  std::string key_id_ ABSL_GUARDED_BY(mu_);
  // The pair the last rotation replaced.
  EvpPkeyPtr previous_key_ ABSL_GUARDED_BY(mu_);
  std::string previous_key_id_ ABSL_GUARDED_BY(mu_);
};

}  // namespace interco::node

#endif  // INTERCO_NODE_TRUST_BATCH_SIGNER_H_
