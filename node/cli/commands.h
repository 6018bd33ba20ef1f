// The subcommands of the `interco` command-line client. Each one takes its positional
// arguments (after the subcommand's name) and its options, prints its results on
// stdout, and returns an error status as described in client.h.
#ifndef INTERCO_NODE_CLI_COMMANDS_H_
#define INTERCO_NODE_CLI_COMMANDS_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <google/protobuf/message.h>
#include <google/protobuf/stubs/status.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "interco/v1/record.pb.h"
#include "interco/v1/registry.pb.h"
#include "node/cli/args.h"
#include "node/cli/client.h"

namespace interco::cli {

// What every command needs: the output format and a connection made on first use (so
// that usage errors need no TLS files, and `watch` can set up its signal handling
// before gRPC starts threads).
class Session {
 public:
  Session(ConnectOptions connect, OutputFormat output)
      : connect_(std::move(connect)), output_(output) {}

  bool json() const { return output_ == OutputFormat::kJson; }
  const ConnectOptions& connect_options() const { return connect_; }
  absl::StatusOr<Client*> client();

 private:
  ConnectOptions connect_;
  OutputFormat output_;
  std::unique_ptr<Client> client_;
};

using Args = std::vector<std::string>;

absl::Status RunInfo(Session& session, const Args& args, const CommandOptions& options);
absl::Status RunRegistries(Session& session, const Args& args, const CommandOptions& options);
absl::Status RunRegistryGet(Session& session, const Args& args, const CommandOptions& options);
absl::Status RunRegistryCreate(Session& session, const Args& args, const CommandOptions& options);
absl::Status RunRegistrySetPolicy(Session& session, const Args& args, const CommandOptions& options);
absl::Status RunRegistrySetRetention(Session& session, const Args& args,
                                     const CommandOptions& options);
absl::Status RunGet(Session& session, const Args& args, const CommandOptions& options);
absl::Status RunList(Session& session, const Args& args, const CommandOptions& options);
absl::Status RunPut(Session& session, const Args& args, const CommandOptions& options);
absl::Status RunCreate(Session& session, const Args& args, const CommandOptions& options);
absl::Status RunDelete(Session& session, const Args& args, const CommandOptions& options);
absl::Status RunWatch(Session& session, const Args& args, const CommandOptions& options);
absl::Status RunImport(Session& session, const Args& args, const CommandOptions& options);
absl::Status RunAudit(Session& session, const Args& args, const CommandOptions& options);
absl::Status RunConflicts(Session& session, const Args& args, const CommandOptions& options);
absl::Status RunBackup(Session& session, const Args& args, const CommandOptions& options);
absl::Status RunRepair(Session& session, const Args& args, const CommandOptions& options);
absl::Status RunProvenance(Session& session, const Args& args, const CommandOptions& options);
absl::Status RunVerifyProvenance(Session& session, const Args& args,
                                 const CommandOptions& options);

// Shared by the commands.

// INVALID_ARGUMENT "usage: interco <synopsis>".
absl::Status Usage(std::string_view synopsis);
// The first line of a protobuf error (JSON parse errors go on with the input and a caret).
std::string ProtobufMessage(const google::protobuf::util::Status& status);

// One line of protobuf JSON (field names as in the .proto files).
absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message);
// Prints ToJson(message) and a newline on stdout.
absl::Status PrintJson(const google::protobuf::Message& message);
// The contents of a file, or of stdin for "-". INVALID_ARGUMENT naming the file.
absl::StatusOr<std::string> ReadInputFile(const std::string& path);

}  // namespace interco::cli

#endif  // INTERCO_NODE_CLI_COMMANDS_H_
