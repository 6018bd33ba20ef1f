// Small OpenSSL helpers shared by the TLS and trust modules: reading files, parsing PEM
// and DER certificates and keys, and the SPIFFE ID of a certificate. Thread-safe.
#ifndef INTERCO_NODE_CRYPTO_X509_H_
#define INTERCO_NODE_CRYPTO_X509_H_

#include <openssl/bio.h>
#include <openssl/x509.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "node/crypto/ed25519.h"

namespace interco::node {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
// A read-only memory BIO over `data` (which must outlive it).
std::unique_ptr<BIO, BioFree> MemBio(std::string_view data);

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

// The whole file. FAILED_PRECONDITION naming the path if it cannot be read.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// The first certificate of a PEM text. INVALID_ARGUMENT naming `what` if there is none.
absl::StatusOr<X509Ptr> ParsePemCertificate(std::string_view pem, std::string_view what);
// Every certificate of a PEM bundle, in order (possibly none).
std::vector<X509Ptr> ParsePemCertificates(std::string_view pem);
// A DER certificate. INVALID_ARGUMENT if it does not parse (or has trailing bytes).
absl::StatusOr<X509Ptr> ParseDerCertificate(std::string_view der);
// The DER encoding of `cert`.
std::string CertificateDer(X509* cert);
// A PEM private key. INVALID_ARGUMENT naming `what` if there is none.
absl::StatusOr<EvpPkeyPtr> ParsePemPrivateKey(std::string_view pem, std::string_view what);

// The certificate's first URI SAN starting with spiffe://. INVALID_ARGUMENT if none.
absl::StatusOr<std::string> SpiffeIdOf(X509* cert);

}  // namespace interco::node

#endif  // INTERCO_NODE_CRYPTO_X509_H_
