#include "replication/policy.h"

#include "absl/strings/str_cat.h"
#include "replication/ids.h"

namespace interco::replication {
namespace {

absl::Status AddAll(const interco::v1::AccessList& list, const char* field, std::set<uint32_t>& out) {
  for (int i = 0; i < list.authorities_size(); ++i) {
    absl::StatusOr<uint32_t> origin = SirenToOrigin(list.authorities(i));
    if (!ValidateSiren(list.authorities(i)).ok() || !origin.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("policy.", field, ".authorities[", i, "]: \"",
                                                     list.authorities(i), "\" is not a SIREN"));
    }
    out.insert(*origin);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<RegistryPolicy> RegistryPolicy::Compile(std::string_view owner,
                                                       const interco::v1::Policy& policy) {
  RegistryPolicy p;
  absl::StatusOr<uint32_t> o = SirenToOrigin(owner);
  if (!o.ok()) return o.status();
  p.owner_ = *o;
  p.all_write_ = policy.writers().all_authorities();
  p.all_read_ = policy.readers().all_authorities() || p.all_write_;
  if (absl::Status s = AddAll(policy.writers(), "writers", p.writers_); !s.ok()) return s;
  if (absl::Status s = AddAll(policy.readers(), "readers", p.readers_); !s.ok()) return s;
  return p;
}

bool RegistryPolicy::MayWrite(uint32_t authority) const {
  return authority == owner_ || all_write_ || writers_.contains(authority);
}

bool RegistryPolicy::MayRead(uint32_t authority) const {
  return MayWrite(authority) || all_read_ || readers_.contains(authority);
}

}  // namespace interco::replication
