#include "replication/policy.h"

#include "absl/strings/str_cat.h"
#include "replication/base/check.h"
#include "replication/base/limits.h"
#include "replication/base/status_macros.h"
#include "replication/ids.h"

namespace interco::replication {
namespace {

absl::Status AddSirens(const google::protobuf::RepeatedPtrField<std::string>& sirens,
                       const std::string& field, std::set<uint32_t>& out) {
  for (int i = 0; i < sirens.size(); ++i) {
    absl::StatusOr<uint32_t> origin = SirenToOrigin(sirens[i]);
    if (!ValidateSiren(sirens[i]).ok() || !origin.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("policy.", field, "[", i, "]: \"", sirens[i], "\" is not a SIREN"));
    }
    out.insert(*origin);
  }
  return absl::OkStatus();
}

absl::Status AddAll(const interco::v1::AccessList& list, const std::string& name,
                    std::set<uint32_t>& out) {
  std::set<uint32_t> epcis;
  if (absl::Status s = AddSirens(list.authorities(), absl::StrCat(name, ".authorities"), out);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = AddSirens(list.members_of(), absl::StrCat(name, ".members_of"), epcis);
      !s.ok()) {
    return s;
  }
  return AddSirens(list.members(), absl::StrCat(name, ".members"), out);
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

PolicyHistory::PolicyHistory(RegistryPolicy declared) {
  versions_.emplace(0, std::move(declared));
}

void PolicyHistory::Add(uint64_t version, RegistryPolicy policy) {
  INTERCO_CHECK(policy.owner() == owner());
  versions_.insert_or_assign(version, std::move(policy));
}

bool PolicyHistory::MayReadBatch(uint64_t version, uint32_t authority) const {
  for (auto it = versions_.lower_bound(version); it != versions_.end(); ++it) {
    if (it->second.MayRead(authority)) return true;
  }
  return Current().MayRead(authority);
}

bool PolicyHistory::writers_always_listed() const {
  for (const auto& [version, policy] : versions_) {
    if (!policy.writers_listed()) return false;
  }
  return true;
}

std::set<uint32_t> PolicyHistory::AllWriters() const {
  std::set<uint32_t> out{owner()};
  for (const auto& [version, policy] : versions_) {
    out.insert(policy.writers().begin(), policy.writers().end());
  }
  return out;
}

bool PolicyHistory::MayHaveWritten(uint32_t authority) const {
  if (authority == owner()) return true;
  for (const auto& [version, policy] : versions_) {
    if (!policy.writers_listed() || policy.writers().contains(authority)) return true;
  }
  return false;
}

const RegistryPolicy* PolicyHistory::At(uint64_t version) const {
  auto it = versions_.find(version);
  return it == versions_.end() ? nullptr : &it->second;
}

absl::StatusOr<RegistryPolicy> CompilePolicyChange(
    std::string_view owner, const interco::replication::v1::PolicyChange& change,
    uint64_t policy_version, uint64_t max_hlc) {
  if (change.version() <= policy_version || change.version() > max_hlc) {
    return absl::PermissionDeniedError(
        absl::StrCat("policy change version ", change.version(),
                     " is not after the batch's policy version ", policy_version,
                     " and within its clock ", max_hlc));
  }
  absl::StatusOr<RegistryPolicy> p = RegistryPolicy::Compile(owner, change.policy());
  if (!p.ok()) {
    return absl::PermissionDeniedError(
        absl::StrCat("policy change does not compile: ", p.status().message()));
  }
  return p;
}

absl::Status AuthorizeBatch(const DecodedBatch& batch, const PolicyHistory& history,
                            const Exclusions* exclusions) {
  const interco::replication::v1::BatchHeader& h = batch.header;
  const std::string origin = OriginToSiren(h.origin());
  bool records = false;
  // The owner's chain is applied in order, so every node judges its policy changes
  // against the same versions: each must come after all before it.
  uint64_t last_version = history.current_version();
  // Only the owner's batches carry policy changes, and say so (a writer's that claimed
  // to could never be compacted).
  if (h.carries_policy() && h.origin() != history.owner()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "origin ", origin, " sent a batch of registry ", h.stream(),
        " marked as carrying a policy change, which only its owner ",
        OriginToSiren(history.owner()), " makes"));
  }
  for (const interco::replication::v1::Change& c : batch.changes) {
    if (!c.has_policy()) {
      records = true;
      continue;
    }
    if (h.origin() != history.owner()) {
      return absl::PermissionDeniedError(absl::StrCat(
          "origin ", origin, " changed the policy of registry ", h.stream(),
          ", which only its owner ", OriginToSiren(history.owner()), " may do"));
    }
    absl::StatusOr<RegistryPolicy> p = CompilePolicyChange(
        OriginToSiren(history.owner()), c.policy(), h.policy_version(), h.max_hlc());
    if (!p.ok()) return p.status();
    if (c.policy().has_collection()) {
      for (const auto* dots : {&c.policy().collection().frontier(),
                               &c.policy().collection().required()}) {
        if (static_cast<size_t>(dots->size()) > limits::kReportOriginsMax) {
          return absl::PermissionDeniedError(
              absl::StrCat("collection of registry ", h.stream(), " names too many origins"));
        }
        // The frontier names every epoch of its origins known to the owner, at 0 if none
        // of it is under it (Collection.frontier); a requirement names changes only.
        const bool zeros = dots == &c.policy().collection().frontier();
        for (int i = 0; i < dots->size(); ++i) {
          const auto& d = (*dots)[i];
          if ((d.seq() == 0 && !zeros) ||
              (i > 0 && !(OriginKey{(*dots)[i - 1].origin(), (*dots)[i - 1].epoch()} <
                          OriginKey{d.origin(), d.epoch()}))) {
            return absl::PermissionDeniedError(absl::StrCat(
                "collection of registry ", h.stream(), " is malformed (entry ", i, ")"));
          }
        }
      }
      if (absl::Status s = CheckExclusion(c.policy().collection(), history.owner()); !s.ok()) {
        return absl::PermissionDeniedError(
            absl::StrCat("registry ", h.stream(), ": ", s.message()));
      }
    }
    if (c.policy().version() <= last_version) {
      return absl::PermissionDeniedError(absl::StrCat(
          "policy change version ", c.policy().version(), " of registry ", h.stream(),
          " does not come after version ", last_version));
    }
    last_version = c.policy().version();
  }
  if (exclusions != nullptr) INTERCO_RETURN_IF_ERROR(exclusions->Judge(h));
  if (!records || h.origin() == history.owner()) return absl::OkStatus();
  const RegistryPolicy* policy = history.At(h.policy_version());
  if (policy == nullptr) {
    return absl::UnavailableError(absl::StrCat(
        "batch of origin ", origin, " was written under policy version ", h.policy_version(),
        " of registry ", h.stream(), ", not yet applied here"));
  }
  if (!policy->MayWrite(h.origin())) {
    return absl::PermissionDeniedError(
        absl::StrCat("origin ", origin, " is not a writer of registry ", h.stream(),
                     " (policy version ", h.policy_version(), ")"));
  }
  return absl::OkStatus();
}

}  // namespace interco::replication
