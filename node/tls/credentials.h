// Mutual-TLS credentials for the API port (and, later, the peer port), and for clients.
//
// Servers watch their files (cert-manager layout: tls.crt, tls.key, ca.crt) and pick up
// rotated certificates for new handshakes without a restart. A client is accepted only
// if its certificate chains to the federation CA and carries a SPIFFE ID of the
// federation, spiffe://<federation>/collectivite/<SIREN>[/client/<name>]; refusals are
// logged with their reason. Thread-safe.
#ifndef INTERCO_NODE_TLS_CREDENTIALS_H_
#define INTERCO_NODE_TLS_CREDENTIALS_H_

#include <memory>
#include <string>
#include <string_view>

#include <grpcpp/client_context.h>

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include "absl/status/statusor.h"

namespace interco::node {

struct TlsFiles {
  // PEM certificate chain (leaf first).
  std::string cert_file;
  // PEM private key of the leaf.
  std::string key_file;
  // PEM federation CA bundle.
  std::string ca_file;
  // Seconds between checks of the files for rotation. Default: 10.
  unsigned refresh_seconds = 10;
  // CRL directory (OpenSSL hashed form); empty: no revocation check.
  std::string crl_dir;

  // The cert-manager layout of `dir`: dir/tls.crt, dir/tls.key, dir/ca.crt.
  static TlsFiles InDirectory(const std::string& dir);
};

// Checks that the files exist, parse as PEM, and that the key matches the certificate,
// so that a misconfigured node fails before listening. INVALID_ARGUMENT /
// FAILED_PRECONDITION naming the file.
absl::Status CheckTlsFiles(const TlsFiles& files);

// The leaf certificate's SPIFFE ID (URI SAN starting with spiffe://).
absl::StatusOr<std::string> SpiffeIdOfCertificateFile(const std::string& cert_file);

// Server credentials requiring and verifying client certificates of `federation`.
std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(const TlsFiles& files,
                                                               const std::string& federation);

// Client credentials presenting `files` and verifying the server against the CA bundle
// (and the target host name against the server certificate's SANs).
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TlsFiles& files);

// The SPIFFE ID of an authority's node: spiffe://<federation>/collectivite/<SIREN>.
std::string NodeSpiffeId(std::string_view federation, std::string_view siren);

// Whether the server that answered on `ctx` presented the certificate of `spiffe_id`. The
// channel credentials accept any certificate of the federation's CA: a caller that dials
// a given node checks this before it trusts the answer.
bool ServerIs(const grpc::ClientContext& ctx, std::string_view spiffe_id);

}  // namespace interco::node

#endif  // INTERCO_NODE_TLS_CREDENTIALS_H_
