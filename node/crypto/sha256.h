// SHA-256 through OpenSSL, for the hash chain of the change log.
// Thread-safe.
#ifndef INTERCO_NODE_CRYPTO_SHA256_H_
#define INTERCO_NODE_CRYPTO_SHA256_H_

#include <string>
#include <string_view>

#include "replication/env.h"

namespace interco::node {

// The 32-byte digest of `data`.
std::string Sha256(std::string_view data);

// Sha256 as the replication core's Hasher.
class Sha256Hasher final : public replication::Hasher {
 public:
  std::string Sha256(std::string_view data) override { return node::Sha256(data); }
};

}  // namespace interco::node

#endif  // INTERCO_NODE_CRYPTO_SHA256_H_
