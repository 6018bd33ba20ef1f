// Identifiers of the federation and their validation: SIREN, INSEE codes, registry and
// record IDs, field names, and principals from SPIFFE IDs.
//
// Every function returns INVALID_ARGUMENT with a message that names the offending value;
// callers prefix the field name. Thread-safe (pure functions).
#ifndef INTERCO_REPLICATION_IDS_H_
#define INTERCO_REPLICATION_IDS_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace interco::replication {

// A SIREN: 9 digits with a valid Luhn checksum. (La Poste's digit-sum exception applies
// to its 14-digit SIRETs, not to its SIREN 356000000, which passes Luhn.)
absl::Status ValidateSiren(std::string_view siren);
// The SIREN as an integer (it fits 32 bits); the string must be valid.
absl::StatusOr<uint32_t> SirenToOrigin(std::string_view siren);
// "123456789" with leading zeros, from an origin number.
std::string OriginToSiren(uint32_t origin);

// An INSEE commune code: 5 characters, two digits or 2A/2B (Corsica), then 3 digits.
absl::Status ValidateInseeCode(std::string_view code);

// A registry ID: 3..63 characters, [a-z][a-z0-9-]*, not ending with '-'.
absl::Status ValidateRegistryId(std::string_view id);
// A record ID: 1..128 characters from [A-Za-z0-9._~:@-], not starting with '.'.
absl::Status ValidateRecordId(std::string_view id);
// A field name: 1..63 characters, [a-z][a-z0-9_]*.
absl::Status ValidateFieldName(std::string_view name);

// Who is calling: an authority, and optionally one of its client applications.
struct Principal {
  std::string federation;
  std::string siren;
  std::string client;  // empty for the authority's node itself

  // "<SIREN>" or "<SIREN>/<client>", as recorded in the change log.
  std::string Author() const;
  friend bool operator==(const Principal&, const Principal&) = default;
};

// Parses "spiffe://<federation>/collectivite/<SIREN>[/client/<name>]". The client name
// is 1..64 characters from [a-z0-9._-].
absl::StatusOr<Principal> ParseSpiffeId(std::string_view uri);

}  // namespace interco::replication

#endif  // INTERCO_REPLICATION_IDS_H_
