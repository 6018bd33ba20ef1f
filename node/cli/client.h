// The command-line client's connection to a node, and its error conventions.
//
// Errors travel as absl::Status. Their kind decides the exit status:
//   RpcError        the server or the transport failed a call          -> exit 1
//   PartialFailure  a command ran but some of its work failed (already
//                   reported item by item on stderr)                    -> exit 1
//   anything else   usage or local input error                         -> exit 2
#ifndef INTERCO_NODE_CLI_CLIENT_H_
#define INTERCO_NODE_CLI_CLIENT_H_

#include <memory>
#include <string>
#include <string_view>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "interco/v1/admin_service.grpc.pb.h"
#include "interco/v1/node_service.grpc.pb.h"
#include "interco/v1/registry_service.grpc.pb.h"

namespace interco::cli {

enum class OutputFormat { kTable, kJson };

struct ConnectOptions {
  // host:port of the node's API.
  std::string address;
  // Directory with tls.crt, tls.key and ca.crt.
  std::string tls_dir;
  // Deadline of each unary call; absl::InfiniteDuration() for none.
  absl::Duration timeout = absl::Seconds(30);
};

// The status of a failed call, marked as coming from the server or the transport.
absl::Status RpcError(const grpc::Status& status);
// A failure of part of a command's work that was already reported in detail.
absl::Status PartialFailure(std::string_view message);
// Whether `status` was made by RpcError.
bool IsRpcError(const absl::Status& status);
// 0, 1 (RPC error or partial failure) or 2 (usage or local input error).
int ExitCode(const absl::Status& status);
// The line to print on stderr for a failed command, without the newline:
// "interco: NOT_FOUND: <message>" for RPC errors, "interco: <message>" otherwise.
std::string ErrorLine(const absl::Status& status);

// Stubs on one mTLS channel. The stubs are thread-safe.
class Client {
 public:
  static absl::StatusOr<std::unique_ptr<Client>> Connect(const ConnectOptions& options);

  interco::v1::RegistryService::Stub& registries() { return *registries_; }
  interco::v1::NodeService::Stub& node() { return *node_; }
  interco::v1::AdminService::Stub& admin() { return *admin_; }

  // Sets the per-call deadline (--timeout) on `context`.
  void SetDeadline(grpc::ClientContext& context) const;

  // Convenience unary calls; errors are RpcError.
  absl::StatusOr<interco::v1::Registry> GetRegistry(std::string_view registry_id);

 private:
  Client(std::shared_ptr<grpc::Channel> channel, absl::Duration timeout);

  std::shared_ptr<grpc::Channel> channel_;
  absl::Duration timeout_;
  std::unique_ptr<interco::v1::RegistryService::Stub> registries_;
  std::unique_ptr<interco::v1::NodeService::Stub> node_;
  std::unique_ptr<interco::v1::AdminService::Stub> admin_;
};

// Resource names of the public API.
std::string RegistryName(std::string_view registry_id);
std::string RecordName(std::string_view registry_id, std::string_view record_id);
// The last segment of a resource name ("registries/r/records/x" -> "x").
std::string_view LastSegment(std::string_view name);

// Local checks of IDs given on the command line (INVALID_ARGUMENT, exit status 2).
absl::Status CheckRegistryId(std::string_view id);
absl::Status CheckRecordId(std::string_view id);

}  // namespace interco::cli

#endif  // INTERCO_NODE_CLI_CLIENT_H_
