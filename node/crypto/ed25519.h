// Ed25519 signatures through OpenSSL 3 (EVP one-shot sign and verify).
// Thread-safe: keys are only read.
#ifndef INTERCO_NODE_CRYPTO_ED25519_H_
#define INTERCO_NODE_CRYPTO_ED25519_H_

#include <openssl/evp.h>

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace interco::node {

struct EvpPkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyFree>;

// The 64-byte signature of `message` by the Ed25519 private key `key`.
// INVALID_ARGUMENT if `key` is not an Ed25519 private key.
absl::StatusOr<std::string> Ed25519Sign(EVP_PKEY* key, std::string_view message);

// OK if `signature` is `key`'s Ed25519 signature of `message`; UNAUTHENTICATED if not;
// INVALID_ARGUMENT if `key` is not an Ed25519 key.
absl::Status Ed25519Verify(EVP_PKEY* key, std::string_view message, std::string_view signature);

}  // namespace interco::node

#endif  // INTERCO_NODE_CRYPTO_ED25519_H_
