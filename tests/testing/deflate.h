// The size of bytes deflated by zlib at its default level, as gRPC's gzip does it: what
// tests and benchmarks hold wire bytes against. Header-only; link ZLIB::ZLIB.
#ifndef INTERCO_TESTS_TESTING_DEFLATE_H_
#define INTERCO_TESTS_TESTING_DEFLATE_H_

#include <zlib.h>

#include <cstddef>
#include <string>
#include <string_view>

namespace interco::testing {

// 0 if zlib fails.
inline size_t Deflated(std::string_view bytes) {
  uLongf n = compressBound(static_cast<uLong>(bytes.size()));
  std::string out(n, '\0');
  if (compress2(reinterpret_cast<Bytef*>(out.data()), &n,
                reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uLong>(bytes.size()),
                Z_DEFAULT_COMPRESSION) != Z_OK) {
    return 0;
  }
  return n;
}

}  // namespace interco::testing

#endif  // INTERCO_TESTS_TESTING_DEFLATE_H_
