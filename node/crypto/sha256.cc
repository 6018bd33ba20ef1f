#include "node/crypto/sha256.h"

#include <openssl/evp.h>

#include "replication/base/check.h"

namespace interco::node {

std::string Sha256(std::string_view data) {
  std::string out(32, '\0');
  unsigned int len = 0;
  // EVP_Digest fails only on allocation failure or a missing algorithm: both are
  // programmer or environment errors that no caller could handle.
  INTERCO_CHECK(EVP_Digest(data.data(), data.size(), reinterpret_cast<unsigned char*>(out.data()),
                           &len, EVP_sha256(), nullptr) == 1);
  INTERCO_CHECK(len == 32);
  return out;
}

}  // namespace interco::node
