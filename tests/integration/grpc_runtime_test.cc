// GrpcRuntime: once a process's gRPC objects are gone, its shutdown leaves no gRPC thread
// running, so nothing of gRPC races the process's exit. A node process over real mTLS.
#include "node/rpc/grpc_runtime.h"

#include <grpc/grpc.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "interco/v1/node_service.grpc.pb.h"
#include "tests/testing/test_env.h"

namespace interco {
namespace {

using ::interco::testing::ClientTlsDir;
using ::interco::testing::kLyon;

// Names of this process's threads, but RocksDB's: its default environment keeps its
// thread pool for the life of the process.
std::vector<std::string> ThreadsButRocksDb() {
  std::vector<std::string> names;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    std::getline(comm, name);
    if (!absl::StartsWith(name, "rocksdb")) names.push_back(name);
  }
  return names;
}

// As in the CLI: the process is a client only, and its last gRPC object is a channel.
// Its subchannel may be released by gRPC's threads after the channel object is gone (a
// failed connection waits out a backoff timer). Three kinds of call: one that succeeds,
// one refused at the TLS handshake, one to a port where nothing listens.
TEST(GrpcRuntimeTest, NoGrpcThreadOutlivesTheRuntime) {
  const std::vector<std::string> before = ThreadsButRocksDb();
  testing::NodeProcess::Options options;
  options.data_dir = testing::MakeTempDir("runtime");
  testing::NodeProcess node(options);
  const int closed_port = testing::FreePort();
  struct Round {
    std::string name;
    bool node_port;
    std::string tls_dir;
    grpc::StatusCode expected;
  };
  const std::vector<Round> rounds = {
      {"served", true, ClientTlsDir(kLyon), grpc::StatusCode::OK},
      {"refused at the handshake", true,
       absl::StrCat(testing::ForeignCertsDir(), "/clients/", kLyon, "/app"),
       grpc::StatusCode::UNAVAILABLE},
      {"nothing listening", false, ClientTlsDir(kLyon), grpc::StatusCode::UNAVAILABLE},
  };
  for (const Round& round : rounds) {
    SCOPED_TRACE(round.name);
    node::GrpcRuntime runtime;
    if (node.pid() <= 0) {
      std::string error;
      ASSERT_TRUE(node.Start(&error)) << error;
    }
    {
      auto stub = v1::NodeService::NewStub(testing::MtlsChannel(
          round.node_port ? node.api_port() : closed_port, round.tls_dir));
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      v1::NodeInfo info;
      EXPECT_EQ(stub->GetNodeInfo(&ctx, v1::GetNodeInfoRequest(), &info).error_code(),
                round.expected);
      EXPECT_GT(ThreadsButRocksDb().size(), before.size()) << "gRPC started no thread";
    }
    EXPECT_TRUE(runtime.Shutdown(absl::Seconds(10)));
    EXPECT_EQ(grpc_is_initialized(), 0);
    EXPECT_EQ(ThreadsButRocksDb(), before);
  }
}

}  // namespace
}  // namespace interco
