#include "replication/ids.h"

#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "replication/base/limits.h"
#include "replication/base/strings.h"

namespace interco::replication {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsLower(char c) { return c >= 'a' && c <= 'z'; }

absl::Status Invalid(std::string_view what, std::string_view value, std::string_view why) {
  // Quote at most 80 bytes of the value: it may be arbitrary client input.
  std::string shown(value.substr(0, 80));
  return absl::InvalidArgumentError(
      absl::StrCat("invalid ", ToAbsl(what), " \"", absl::CHexEscape(shown), "\": ", ToAbsl(why)));
}

}  // namespace

absl::Status ValidateSiren(std::string_view siren) {
  if (siren.size() != 9) return Invalid("SIREN", siren, "must be 9 digits");
  int sum = 0;
  for (size_t i = 0; i < 9; ++i) {
    if (!IsDigit(siren[i])) return Invalid("SIREN", siren, "must be 9 digits");
    int d = siren[i] - '0';
    // Luhn from the right: the digits at odd positions from the right are doubled.
    if ((8 - i) % 2 == 1) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  if (sum % 10 == 0) return absl::OkStatus();
  return Invalid("SIREN", siren, "checksum (Luhn) does not match");
}

absl::StatusOr<uint32_t> SirenToOrigin(std::string_view siren) {
  if (absl::Status s = ValidateSiren(siren); !s.ok()) return s;
  uint32_t v = 0;
  for (char c : siren) v = v * 10 + static_cast<uint32_t>(c - '0');
  return v;
}

std::string OriginToSiren(uint32_t origin) { return absl::StrFormat("%09u", origin); }

absl::Status ValidateInseeCode(std::string_view code) {
  if (code.size() != 5) return Invalid("INSEE code", code, "must be 5 characters");
  const bool corsica = code[0] == '2' && (code[1] == 'A' || code[1] == 'B');
  if (!corsica && !(IsDigit(code[0]) && IsDigit(code[1]))) {
    return Invalid("INSEE code", code, "must start with 2 digits, 2A or 2B");
  }
  for (size_t i = 2; i < 5; ++i) {
    if (!IsDigit(code[i])) return Invalid("INSEE code", code, "must end with 3 digits");
  }
  return absl::OkStatus();
}

absl::Status ValidateRegistryId(std::string_view id) {
  if (id.size() < limits::kRegistryIdBytesMin || id.size() > limits::kRegistryIdBytesMax) {
    return Invalid("registry ID", id, "must be 3 to 63 characters");
  }
  if (!IsLower(id[0])) return Invalid("registry ID", id, "must start with a lowercase letter");
  for (char c : id) {
    if (!IsLower(c) && !IsDigit(c) && c != '-') {
      return Invalid("registry ID", id, "only lowercase letters, digits and '-' are allowed");
    }
  }
  if (id.back() == '-') return Invalid("registry ID", id, "must not end with '-'");
  return absl::OkStatus();
}

absl::Status ValidateRecordId(std::string_view id) {
  if (id.empty() || id.size() > limits::kRecordIdBytesMax) {
    return Invalid("record ID", id, "must be 1 to 128 characters");
  }
  if (id[0] == '.') return Invalid("record ID", id, "must not start with '.'");
  for (char c : id) {
    const bool ok = IsLower(c) || (c >= 'A' && c <= 'Z') || IsDigit(c) || c == '.' ||
                    c == '_' || c == '~' || c == ':' || c == '@' || c == '-';
    if (!ok) return Invalid("record ID", id, "only [A-Za-z0-9._~:@-] are allowed");
  }
  return absl::OkStatus();
}

absl::Status ValidateFieldName(std::string_view name) {
  if (name.empty() || name.size() > limits::kFieldNameBytesMax) {
    return Invalid("field name", name, "must be 1 to 63 characters");
  }
  if (!IsLower(name[0])) return Invalid("field name", name, "must start with a lowercase letter");
  for (char c : name) {
    if (!IsLower(c) && !IsDigit(c) && c != '_') {
      return Invalid("field name", name, "only lowercase letters, digits and '_' are allowed");
    }
  }
  return absl::OkStatus();
}

std::string Principal::Author() const {
  return client.empty() ? siren : absl::StrCat(siren, "/", client);
}

absl::StatusOr<Principal> ParseSpiffeId(std::string_view uri) {
  constexpr std::string_view kScheme = "spiffe://";
  if (uri.substr(0, kScheme.size()) != kScheme) {
    return Invalid("SPIFFE ID", uri, "must start with spiffe://");
  }
  std::vector<std::string_view> parts;
  for (absl::string_view part : absl::StrSplit(
           absl::string_view(uri.data() + kScheme.size(), uri.size() - kScheme.size()), '/')) {
    parts.emplace_back(part.data(), part.size());
  }
  if ((parts.size() != 3 && parts.size() != 5) || parts[1] != "collectivite") {
    return Invalid("SPIFFE ID", uri,
                   "expected spiffe://<federation>/collectivite/<SIREN>[/client/<name>]");
  }
  Principal p;
  p.federation = std::string(parts[0]);
  if (p.federation.empty()) return Invalid("SPIFFE ID", uri, "empty federation");
  if (absl::Status s = ValidateSiren(parts[2]); !s.ok()) return s;
  p.siren = std::string(parts[2]);
  if (parts.size() == 5) {
    if (parts[3] != "client") {
      return Invalid("SPIFFE ID", uri,
                     "expected spiffe://<federation>/collectivite/<SIREN>[/client/<name>]");
    }
    std::string_view name = parts[4];
    if (name.empty() || name.size() > limits::kClientNameBytesMax) {
      return Invalid("SPIFFE ID", uri, "client name must be 1 to 64 characters");
    }
    for (char c : name) {
      if (!IsLower(c) && !IsDigit(c) && c != '.' && c != '_' && c != '-') {
        return Invalid("SPIFFE ID", uri, "client name allows only [a-z0-9._-]");
      }
    }
    p.client = std::string(name);
  }
  return p;
}

}  // namespace interco::replication
