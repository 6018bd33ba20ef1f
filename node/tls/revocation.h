// Certificate revocation from a directory of CRLs, reloaded when the directory changes.
//
// The directory holds PEM CRLs (certs/pki.sh writes <issuer hash>.r0); each must be
// signed by a CA of the federation bundle, or it is ignored (and logged). Lookups reload
// the directory at most once a second if a file changed, so a new CRL takes effect for new
// handshakes without a restart. Thread-safe.
#ifndef INTERCO_NODE_TLS_REVOCATION_H_
#define INTERCO_NODE_TLS_REVOCATION_H_

#include <openssl/x509.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace interco::node {

class RevocationList {
 public:
  // `crl_dir` and `ca_file` (the bundle whose CAs sign the CRLs).
  RevocationList(std::string crl_dir, std::string ca_file);
  RevocationList(const RevocationList&) = delete;
  RevocationList& operator=(const RevocationList&) = delete;

  // Whether the PEM certificate `cert_pem` is revoked by a CRL of its issuer. A
  // certificate that does not parse counts as revoked.
  bool IsRevoked(std::string_view cert_pem);
  // When `cert` was revoked (ms since the Unix epoch; 0 if the CRL gives no usable
  // date), or nullopt if it is not.
  std::optional<int64_t> RevokedAt(const X509* cert);

 private:
  void MaybeReload() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string crl_dir_;
  const std::string ca_file_;
  absl::Mutex mu_;
  int64_t last_check_ms_ ABSL_GUARDED_BY(mu_) = -1;
  std::string fingerprint_ ABSL_GUARDED_BY(mu_);
  // (DER of the issuer name, serial in hex) -> revocation time.
  std::map<std::pair<std::string, std::string>, int64_t> revoked_ ABSL_GUARDED_BY(mu_);
};

// An ASN.1 time as milliseconds since the Unix epoch.
std::optional<int64_t> Asn1TimeToUnixMillis(const ASN1_TIME* t);

}  // namespace interco::node

#endif  // INTERCO_NODE_TLS_REVOCATION_H_
