#include "replication/version_vector.h"

namespace interco::replication {

void ToProto(const std::string& stream, const VersionVector& vv,
             interco::replication::v1::StreamPosition& out) {
  out.Clear();
  out.set_stream(stream);
  for (const auto& [key, pos] : vv) {
    auto* o = out.add_origins();
    o->set_origin(key.origin);
    o->set_epoch(key.epoch);
    o->set_seq(pos.seq);
    o->set_max_hlc(pos.max_hlc);
  }
}

VersionVector FromProto(const interco::replication::v1::StreamPosition& in) {
  VersionVector vv;
  for (const auto& o : in.origins()) {
    OriginPos& p = vv[OriginKey{o.origin(), o.epoch()}];
    if (o.seq() >= p.seq) {
      p.seq = o.seq();
      p.max_hlc = o.max_hlc();
    }
  }
  return vv;
}

uint64_t Missing(const VersionVector& a, const VersionVector& b) {
  uint64_t n = 0;
  for (const auto& [key, pos] : a) {
    auto it = b.find(key);
    const uint64_t have = it == b.end() ? 0 : it->second.seq;
    if (pos.seq > have) n += pos.seq - have;
  }
  return n;
}

}  // namespace interco::replication
