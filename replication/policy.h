// Who may write and read a registry: its owner, and the authorities its policy lists
// (interco.v1.Policy). Deny by default.
//
// A registry's policy has versions: version 0 is the policy declared at creation; each
// later one is a PolicyChange of the owner's chain, numbered by its HLC. Every batch
// header names the version its origin had applied when it wrote, and every node judges
// the batch against that version (AuthorizeBatch), so all nodes decide alike whatever
// order they learned of policy changes in. Semantics (docs/TRUST.md, "Policy changes"):
// an added writer's changes count from when it saw the addition; a removed writer's
// changes made before it saw the removal are kept (concurrent with it); revocation of
// its certificate is the immediate cut-off.
//
// Thread-safe (immutable once built).
#ifndef INTERCO_REPLICATION_POLICY_H_
#define INTERCO_REPLICATION_POLICY_H_

#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "interco/replication/v1/state.pb.h"
#include "interco/v1/registry.pb.h"
#include "replication/env.h"
#include "replication/exclusion.h"

namespace interco::replication {

class RegistryPolicy {
 public:
  // INVALID_ARGUMENT naming the field ("policy.writers.authorities[2]: ...") for a bad
  // SIREN; `owner` must be a valid SIREN. The access lists' `members` (resolved from
  // `members_of` on the owner's node) count as listed authorities.
  static absl::StatusOr<RegistryPolicy> Compile(std::string_view owner,
                                                const interco::v1::Policy& policy);

  // Origin numbers (SIRENs as integers).
  bool MayWrite(uint32_t authority) const;
  bool MayRead(uint32_t authority) const;
  uint32_t owner() const { return owner_; }
  // Whether the writers are listed (not every authority of the federation), and who they
  // are besides the owner.
  bool writers_listed() const { return !all_write_; }
  const std::set<uint32_t>& writers() const { return writers_; }

 private:
  uint32_t owner_ = 0;
  bool all_write_ = false;
  bool all_read_ = false;
  std::set<uint32_t> writers_;
  std::set<uint32_t> readers_;
};

// The versions of a registry's policy a node has applied, by version number.
class PolicyHistory {
 public:
  // Version 0: the policy declared at creation.
  explicit PolicyHistory(RegistryPolicy declared);
  // Adds (or replaces) a version.
  void Add(uint64_t version, RegistryPolicy policy);
  // The policy of `version`; nullptr if this node has not applied it.
  const RegistryPolicy* At(uint64_t version) const;
  // The greatest version applied, and its policy.
  uint64_t current_version() const { return versions_.rbegin()->first; }
  const RegistryPolicy& Current() const { return versions_.rbegin()->second; }
  uint32_t owner() const { return Current().owner(); }
  size_t size() const { return versions_.size(); }
  // Whether `authority` may be sent a batch written under `version`: it may read under
  // that version or a later one known here (so a reader removed by a change still gets
  // that change, and one added gets what was written before), or under the current one.
  bool MayReadBatch(uint64_t version, uint32_t authority) const;
  // Whether every version applied here lists its writers (none is open to every
  // authority), and the owner with every writer any of them lists: the authorities whose
  // batches may enter, whatever version they were written under.
  bool writers_always_listed() const;
  std::set<uint32_t> AllWriters() const;
  // Whether some version applied here lets `authority` write: it is the owner, a writer
  // one of them lists, or one of them is open to every authority.
  bool MayHaveWritten(uint32_t authority) const;

 private:
  std::map<uint64_t, RegistryPolicy> versions_;
};

// Whether a verified batch may enter its stream under `history`. OK; PERMISSION_DENIED
// (saying why) if its origin is not a writer in the policy version its header names, or
// it carries a policy change and its origin is not the owner, or a policy change is
// malformed (its version is not after the header's policy_version and every version
// applied before it, or beyond the batch's greatest HLC, or its policy does not
// compile, or its collection names more than limits::kReportOriginsMax origin epochs,
// unsorted or at 0); UNAVAILABLE if this node has not
// applied that policy version yet (the owner's change is still on its way: try again
// once it is applied). With `exclusions` (what the collections applied here left out),
// PERMISSION_DENIED too for a batch of an excluded member beyond its cut
// (Exclusions::Judge), or a collection whose exclusions are malformed (CheckExclusion).
absl::Status AuthorizeBatch(const DecodedBatch& batch, const PolicyHistory& history,
                            const Exclusions* exclusions = nullptr);

// The checks of one policy change of `owner`'s batch whose header names `policy_version`
// and `max_hlc` (see AuthorizeBatch); returns the compiled policy.
absl::StatusOr<RegistryPolicy> CompilePolicyChange(
    std::string_view owner, const interco::replication::v1::PolicyChange& change,
    uint64_t policy_version, uint64_t max_hlc);

}  // namespace interco::replication

#endif  // INTERCO_REPLICATION_POLICY_H_
