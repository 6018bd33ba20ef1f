// Parsing of AIP resource names of the public API.
//   registries/{registry}
//   registries/{registry}/records/{record}
// Errors are INVALID_ARGUMENT naming the request field. Thread-safe (pure functions).
#ifndef INTERCO_NODE_RPC_RESOURCE_NAMES_H_
#define INTERCO_NODE_RPC_RESOURCE_NAMES_H_

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace interco::node {

struct RecordRef {
  std::string registry;
  std::string record;
};

// The registry ID of "registries/{registry}"; `field` names the request field.
absl::StatusOr<std::string> ParseRegistryName(std::string_view name, std::string_view field);
// The parts of "registries/{registry}/records/{record}".
absl::StatusOr<RecordRef> ParseRecordName(std::string_view name, std::string_view field);

}  // namespace interco::node

#endif  // INTERCO_NODE_RPC_RESOURCE_NAMES_H_
