// SHA-256 through OpenSSL, for the hash chain of the change log.
// Thread-safe.
#ifndef INTERCO_NODE_CRYPTO_SHA256_H_
#define INTERCO_NODE_CRYPTO_SHA256_H_

#include <string>
#include <string_view>

namespace interco::node {

// The 32-byte digest of `data`.
std::string Sha256(std::string_view data);

}  // namespace interco::node

#endif  // INTERCO_NODE_CRYPTO_SHA256_H_
