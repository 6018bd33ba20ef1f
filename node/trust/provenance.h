// Offline verification of a record's provenance (interco.v1.RecordProvenance), with the
// federation CA bundle as the only trust anchor: `interco verify-provenance`.
// Thread-safe (pure function over its inputs and the CA file).
#ifndef INTERCO_NODE_TRUST_PROVENANCE_H_
#define INTERCO_NODE_TRUST_PROVENANCE_H_

#include <string>

#include "absl/status/statusor.h"
#include "interco/v1/provenance.pb.h"

namespace interco::node {

// Checks that:
//   - every certificate chains to the CA bundle `ca_file` and names a node of one
//     federation (that of the first certificate);
//   - every batch is signed by its origin, with a certificate valid (and not revoked,
//     if `crl_dir` is given) when it signed; its header's body hash is the hash of the
//     change digests, and the change shown is the one at its index;
//   - every visible value of the record (each field, each set element) has an entry
//     whose change, for this record, writes exactly that value with that stamp, from
//     that origin and author.
// Returns a one-line summary, or INVALID_ARGUMENT / PERMISSION_DENIED /
// UNAUTHENTICATED saying what does not hold, naming the value or batch.
absl::StatusOr<std::string> VerifyProvenance(const interco::v1::RecordProvenance& provenance,
                                             const std::string& ca_file,
                                             const std::string& crl_dir = "");

}  // namespace interco::node

#endif  // INTERCO_NODE_TRUST_PROVENANCE_H_
