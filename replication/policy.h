// Who may write and read a registry: its owner, and the authorities its policy lists
// (interco.v1.Policy). Deny by default. Used by the engine (changes from non-writers are
// refused, streams go only to readers) and by the node (API calls). Thread-safe
// (immutable once compiled).
#ifndef INTERCO_REPLICATION_POLICY_H_
#define INTERCO_REPLICATION_POLICY_H_

#include <cstdint>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "interco/v1/registry.pb.h"

namespace interco::replication {

class RegistryPolicy {
 public:
  // INVALID_ARGUMENT naming the field ("policy.writers.authorities[2]: ...") for a bad
  // SIREN; `owner` must be a valid SIREN.
  static absl::StatusOr<RegistryPolicy> Compile(std::string_view owner,
                                                const interco::v1::Policy& policy);

  // Origin numbers (SIRENs as integers).
  bool MayWrite(uint32_t authority) const;
  bool MayRead(uint32_t authority) const;
  uint32_t owner() const { return owner_; }

 private:
  uint32_t owner_ = 0;
  bool all_write_ = false;
  bool all_read_ = false;
  std::set<uint32_t> writers_;
  std::set<uint32_t> readers_;
};

}  // namespace interco::replication

#endif  // INTERCO_REPLICATION_POLICY_H_
