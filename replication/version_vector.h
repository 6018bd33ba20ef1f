// Version vectors of the change log: per stream, what is held of each origin epoch.
//
// Sequence numbers of an (origin, epoch) are dense from 1, so "holds up to seq" says
// exactly which changes are held. Thread-compatible value types.
#ifndef INTERCO_REPLICATION_VERSION_VECTOR_H_
#define INTERCO_REPLICATION_VERSION_VECTOR_H_

#include <compare>
#include <cstdint>
#include <map>
#include <string>

#include "interco/replication/v1/peer.pb.h"

namespace interco::replication {

// An origin epoch: the writer of a dense sequence of changes.
struct OriginKey {
  uint32_t origin = 0;
  uint32_t epoch = 0;
  friend bool operator==(const OriginKey&, const OriginKey&) = default;
  friend auto operator<=>(const OriginKey&, const OriginKey&) = default;
};

// What is held of one origin epoch.
struct OriginPos {
  // Highest sequence number held; all before it are held.
  uint64_t seq = 0;
  // Greatest HLC among them.
  uint64_t max_hlc = 0;
  // SHA-256 of the header of batch `seq` ends (the next batch's prev_hash); local only.
  std::string last_hash;
  // In a collection's frontier only: the epoch ends at `seq` (interco.replication.v1.Dot
  // closed).
  bool closed = false;
};

using VersionVector = std::map<OriginKey, OriginPos>;

// Conversions to and from the wire form (last_hash is not sent).
void ToProto(const std::string& stream, const VersionVector& vv,
             interco::replication::v1::StreamPosition& out);
VersionVector FromProto(const interco::replication::v1::StreamPosition& in);

// Changes held by `a` and not by `b`.
uint64_t Missing(const VersionVector& a, const VersionVector& b);

}  // namespace interco::replication

#endif  // INTERCO_REPLICATION_VERSION_VECTOR_H_
