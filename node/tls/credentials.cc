#include "node/tls/credentials.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <fstream>
#include <sstream>

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include "absl/strings/str_cat.h"
#include "node/crypto/x509.h"
#include "node/log.h"
#include "node/tls/revocation.h"
#include "replication/base/strings.h"
#include "replication/ids.h"

namespace interco::node {
namespace {

// Accepts a peer whose certificate names a principal of the federation.
class SpiffeVerifier final : public grpc::experimental::ExternalCertificateVerifier {
 public:
  SpiffeVerifier(std::string federation, std::shared_ptr<RevocationList> revocation)
      : federation_(std::move(federation)), revocation_(std::move(revocation)) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)> /*callback*/, grpc::Status* sync_status) override {
    if (revocation_ != nullptr &&
        revocation_->IsRevoked(std::string_view(request->peer_cert().data(),
                                                request->peer_cert().size()))) {
      const std::string uri = request->uri_names().empty()
                                  ? std::string("?")
                                  : std::string(request->uri_names()[0].data(),
                                                request->uri_names()[0].size());
      log::Warning(absl::StrCat("refused TLS peer ", uri, ": certificate revoked"));
      *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "certificate revoked");
      return true;
    }
    std::string reason = "certificate has no SPIFFE ID";
    for (const grpc::string_ref& uri : request->uri_names()) {
      absl::StatusOr<replication::Principal> p =
          replication::ParseSpiffeId(std::string_view(uri.data(), uri.size()));
      if (!p.ok()) {
        reason = std::string(p.status().message());
        continue;
      }
      if (p->federation != federation_) {
        reason = absl::StrCat("SPIFFE ID of federation \"", p->federation, "\", expected \"",
                              federation_, "\"");
        continue;
      }
      *sync_status = grpc::Status::OK;
      return true;
    }
    log::Warning(absl::StrCat("refused TLS peer: ", reason));
    *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED, reason);
    return true;  // verdict given synchronously
  }

  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  const std::string federation_;
  const std::shared_ptr<RevocationList> revocation_;  // null: no revocation check
};

}  // namespace

TlsFiles TlsFiles::InDirectory(const std::string& dir) {
  TlsFiles f;
  f.cert_file = dir + "/tls.crt";
  f.key_file = dir + "/tls.key";
  f.ca_file = dir + "/ca.crt";
  return f;
}

absl::Status CheckTlsFiles(const TlsFiles& files) {
  absl::StatusOr<std::string> cert_pem = ReadFile(files.cert_file);
  if (!cert_pem.ok()) return cert_pem.status();
  absl::StatusOr<std::string> key_pem = ReadFile(files.key_file);
  if (!key_pem.ok()) return key_pem.status();
  absl::StatusOr<std::string> ca_pem = ReadFile(files.ca_file);
  if (!ca_pem.ok()) return ca_pem.status();
  absl::StatusOr<X509Ptr> cert = ParsePemCertificate(*cert_pem, files.cert_file);
  if (!cert.ok()) return cert.status();
  if (absl::StatusOr<X509Ptr> ca = ParsePemCertificate(*ca_pem, files.ca_file); !ca.ok()) {
    return ca.status();
  }
  absl::StatusOr<EvpPkeyPtr> key = ParsePemPrivateKey(*key_pem, files.key_file);
  if (!key.ok()) {
    return key.status();
  }
  if (X509_check_private_key(cert->get(), key->get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(files.key_file, " does not match ",
                                                   files.cert_file));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> SpiffeIdOfCertificateFile(const std::string& cert_file) {
  absl::StatusOr<std::string> pem = ReadFile(cert_file);
  if (!pem.ok()) return pem.status();
  absl::StatusOr<X509Ptr> cert = ParsePemCertificate(*pem, cert_file);
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> id = SpiffeIdOf(cert->get());
  if (!id.ok()) return absl::InvalidArgumentError(absl::StrCat(cert_file, ": ", id.status().message()));
  return id;
}

std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(const TlsFiles& files,
                                                               const std::string& federation) {
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      files.key_file, files.cert_file, files.ca_file, files.refresh_seconds);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_root_certs();
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.set_certificate_verifier(
      grpc::experimental::ExternalCertificateVerifier::Create<SpiffeVerifier>(
          federation, files.crl_dir.empty()
                          ? nullptr
                          : std::make_shared<RevocationList>(files.crl_dir, files.ca_file)));

  return grpc::experimental::TlsServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const TlsFiles& files) {
  grpc::SslCredentialsOptions options;
  absl::StatusOr<std::string> ca = ReadFile(files.ca_file);
  if (!ca.ok()) return ca.status();
  absl::StatusOr<std::string> key = ReadFile(files.key_file);
  if (!key.ok()) return key.status();
  absl::StatusOr<std::string> cert = ReadFile(files.cert_file);
  if (!cert.ok()) return cert.status();
  options.pem_root_certs = *ca;
  options.pem_private_key = *key;
  options.pem_cert_chain = *cert;
  return grpc::SslCredentials(options);
}

std::string NodeSpiffeId(std::string_view federation, std::string_view siren) {
  return absl::StrCat("spiffe://", ToAbsl(federation), "/collectivite/", ToAbsl(siren));
}

bool ServerIs(const grpc::ClientContext& ctx, std::string_view spiffe_id) {
  std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  if (auth == nullptr) return false;
  for (const grpc::string_ref& v : auth->FindPropertyValues("peer_spiffe_id")) {
    if (std::string_view(v.data(), v.size()) == spiffe_id) return true;
  }
  return false;
}

}  // namespace interco::node
