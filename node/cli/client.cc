#include "node/cli/client.h"

#include <grpc/grpc.h>

#include <chrono>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "node/tls/credentials.h"
#include "replication/base/limits.h"
#include "replication/base/strings.h"
#include "replication/ids.h"

namespace interco::cli {
namespace {

// Payload that marks how a status should end the process.
constexpr char kKindUrl[] = "type.interco.local/cli.ErrorKind";
constexpr char kKindRpc[] = "rpc";
constexpr char kKindPartial[] = "partial";

std::string KindOf(const absl::Status& status) {
  const auto kind = status.GetPayload(kKindUrl);
  return kind.has_value() ? std::string(*kind) : std::string();
}

}  // namespace

absl::Status RpcError(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  absl::Status s(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  s.SetPayload(kKindUrl, absl::Cord(kKindRpc));
  return s;
}

absl::Status PartialFailure(std::string_view message) {
  absl::Status s = absl::AbortedError(ToAbsl(message));
  s.SetPayload(kKindUrl, absl::Cord(kKindPartial));
  return s;
}

bool IsRpcError(const absl::Status& status) { return KindOf(status) == kKindRpc; }

int ExitCode(const absl::Status& status) {
  if (status.ok()) return 0;
  const std::string kind = KindOf(status);
  return kind == kKindRpc || kind == kKindPartial ? 1 : 2;
}

std::string ErrorLine(const absl::Status& status) {
  if (IsRpcError(status)) {
    return absl::StrCat("interco: ", absl::StatusCodeToString(status.code()), ": ",
                        status.message());
  }
  return absl::StrCat("interco: ", status.message());
}

absl::StatusOr<std::unique_ptr<Client>> Client::Connect(const ConnectOptions& options) {
  if (options.tls_dir.empty()) {
    return absl::InvalidArgumentError(
        "no TLS directory: pass --tls_dir DIR or set INTERCO_TLS_DIR (DIR holds tls.crt, "
        "tls.key and ca.crt)");
  }
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      node::MakeChannelCredentials(node::TlsFiles::InDirectory(options.tls_dir));
  if (!credentials.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("TLS files: ", credentials.status().message()));
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(limits::kGrpcMessageBytesMax);
  // A call fails at once when the node cannot be reached (no wait for ready), but gRPC
  // holds the failed connection until its reconnection backoff ends (1 s by default),
  // and the process waits for that at exit (GrpcRuntime). (Not the minimum backoff: it
  // is also the time a connection gets for its TLS handshake.)
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(options.address, *credentials, args);
  return std::unique_ptr<Client>(new Client(std::move(channel), options.timeout));
}

Client::Client(std::shared_ptr<grpc::Channel> channel, absl::Duration timeout)
    : channel_(std::move(channel)),
      timeout_(timeout),
      registries_(interco::v1::RegistryService::NewStub(channel_)),
      node_(interco::v1::NodeService::NewStub(channel_)),
      admin_(interco::v1::AdminService::NewStub(channel_)) {}

void Client::SetDeadline(grpc::ClientContext& context) const {
  if (timeout_ == absl::InfiniteDuration()) return;
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::microseconds(absl::ToInt64Microseconds(timeout_)));
}

absl::StatusOr<interco::v1::Registry> Client::GetRegistry(std::string_view registry_id) {
  interco::v1::GetRegistryRequest request;
  request.set_name(RegistryName(registry_id));
  interco::v1::Registry registry;
  grpc::ClientContext context;
  SetDeadline(context);
  grpc::Status status = registries_->GetRegistry(&context, request, &registry);
  if (!status.ok()) return RpcError(status);
  return registry;
}

std::string RegistryName(std::string_view registry_id) {
  return absl::StrCat("registries/", ToAbsl(registry_id));
}

std::string RecordName(std::string_view registry_id, std::string_view record_id) {
  return absl::StrCat("registries/", ToAbsl(registry_id), "/records/", ToAbsl(record_id));
}

std::string_view LastSegment(std::string_view name) {
  const size_t slash = name.rfind('/');
  return slash == std::string_view::npos ? name : name.substr(slash + 1);
}

absl::Status CheckRegistryId(std::string_view id) { return replication::ValidateRegistryId(id); }

absl::Status CheckRecordId(std::string_view id) { return replication::ValidateRecordId(id); }

}  // namespace interco::cli
