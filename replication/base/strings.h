// Bridges between std::string_view (used in interco's APIs) and absl::string_view
// (which Debian's Abseil keeps distinct from the std type, so StrCat and friends do not
// take a std::string_view directly); and the big-endian integers of the byte strings
// that interco signs and hashes.
#ifndef INTERCO_REPLICATION_BASE_STRINGS_H_
#define INTERCO_REPLICATION_BASE_STRINGS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/string_view.h"

namespace interco {

inline absl::string_view ToAbsl(std::string_view s) { return absl::string_view(s.data(), s.size()); }
inline std::string_view ToStd(absl::string_view s) { return std::string_view(s.data(), s.size()); }

// Appends the low `bytes` bytes of `value` to `out`, most significant first.
inline void AppendBigEndian(std::string& out, uint64_t value, int bytes) {
  for (int shift = 8 * (bytes - 1); shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>(value >> shift));
  }
}

}  // namespace interco

#endif  // INTERCO_REPLICATION_BASE_STRINGS_H_
