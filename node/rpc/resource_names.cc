#include "node/rpc/resource_names.h"

#include "absl/strings/str_cat.h"
#include "replication/base/strings.h"
#include "replication/ids.h"

namespace interco::node {
namespace {

constexpr std::string_view kRegistries = "registries/";
constexpr std::string_view kRecords = "/records/";

absl::Status Prefixed(std::string_view field, const absl::Status& s) {
  return absl::InvalidArgumentError(absl::StrCat(ToAbsl(field), ": ", s.message()));
}

}  // namespace

absl::StatusOr<std::string> ParseRegistryName(std::string_view name, std::string_view field) {
  if (!name.starts_with(kRegistries)) {
    return absl::InvalidArgumentError(
        absl::StrCat(ToAbsl(field), ": expected \"registries/{registry}\""));
  }
  std::string_view id = name.substr(kRegistries.size());
  if (absl::Status s = replication::ValidateRegistryId(id); !s.ok()) return Prefixed(field, s);
  return std::string(id);
}

absl::StatusOr<RecordRef> ParseRecordName(std::string_view name, std::string_view field) {
  const size_t sep = name.find(kRecords);
  if (!name.starts_with(kRegistries) || sep == std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(ToAbsl(field), ": expected \"registries/{registry}/records/{record}\""));
  }
  RecordRef ref;
  ref.registry = std::string(name.substr(kRegistries.size(), sep - kRegistries.size()));
  ref.record = std::string(name.substr(sep + kRecords.size()));
  if (absl::Status s = replication::ValidateRegistryId(ref.registry); !s.ok()) {
    return Prefixed(field, s);
  }
  if (absl::Status s = replication::ValidateRecordId(ref.record); !s.ok()) {
    return Prefixed(field, s);
  }
  return ref;
}

}  // namespace interco::node
