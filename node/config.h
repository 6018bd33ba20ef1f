// Node configuration: the config file (interco.config.v1.NodeConfig in protobuf JSON),
// defaults, and validation before anything listens.
#ifndef INTERCO_NODE_CONFIG_H_
#define INTERCO_NODE_CONFIG_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "interco/config/v1/node_config.pb.h"
#include "node/tls/credentials.h"

namespace interco::node {

using NodeConfig = interco::config::v1::NodeConfig;

// Parses a JSON config file. Unknown fields are errors (a typo must not be ignored).
// INVALID_ARGUMENT naming the file and the problem; FAILED_PRECONDITION if unreadable.
absl::StatusOr<NodeConfig> LoadConfigFile(const std::string& path);

// Fills unset fields with their documented defaults.
void ApplyDefaults(NodeConfig& config);

// Checks a config (after ApplyDefaults): INVALID_ARGUMENT naming the first bad field.
// Does not touch the network; does read the TLS files.
// The shortest member retention accepted (NodeConfig.member_retention_seconds).
inline constexpr uint32_t kMemberRetentionSecondsMin = 15;

absl::Status ValidateConfig(const NodeConfig& config);

// The TLS files the config designates.
TlsFiles TlsFilesOf(const NodeConfig& config);

}  // namespace interco::node

#endif  // INTERCO_NODE_CONFIG_H_
