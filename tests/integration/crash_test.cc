// kill -9 of a real node process in the middle of a concurrent durable write load: every
// acknowledged write must be there after restart, and the store must be consistent.
// INTERCO_CRASH_ITERATIONS sets the number of kill/restart rounds (default 5).
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <random>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "interco/v1/registry_service.grpc.pb.h"
#include "tests/testing/test_env.h"

namespace interco {
namespace {

using ::interco::testing::ClientTlsDir;
using ::interco::testing::kLyon;
using ::interco::testing::MtlsChannel;
using ::interco::testing::NodeProcess;

constexpr int kWriters = 8;
constexpr int kKeysPerWriter = 50;

struct KeyState {
  int64_t acked = 0;      // highest value acknowledged
  int64_t attempted = 0;  // highest value sent
};

int Iterations() {
  int n = 5;
  if (const char* env = std::getenv("INTERCO_CRASH_ITERATIONS")) {
    if (!absl::SimpleAtoi(env, &n) || n < 1) n = 5;
  }
  return n;
}

void CreateRegistry(v1::RegistryService::Stub& stub) {
  v1::CreateRegistryRequest req;
  req.set_registry_id("crash");
  auto* f = req.mutable_registry()->mutable_schema()->add_fields();
  f->set_name("v");
  f->set_type(v1::FIELD_TYPE_INT64);
  f->set_required(true);
  f = req.mutable_registry()->mutable_schema()->add_fields();
  f->set_name("writer");
  f->set_type(v1::FIELD_TYPE_STRING);
  f->set_indexed(true);
  grpc::ClientContext ctx;
  v1::Registry out;
  grpc::Status s = stub.CreateRegistry(&ctx, req, &out);
  ASSERT_TRUE(s.ok()) << s.error_message();
}

TEST(CrashTest, KillNineUnderLoadLosesNoAcknowledgedWrite) {
  const std::string data_dir = testing::MakeTempDir("crash");
  NodeProcess::Options options;
  options.authority = kLyon;
  options.data_dir = data_dir + "/store";
  NodeProcess node(options);
  std::string error;
  ASSERT_TRUE(node.Start(&error)) << error;
  {
    auto stub = v1::RegistryService::NewStub(MtlsChannel(node.api_port(), ClientTlsDir(kLyon, "admin")));
    CreateRegistry(*stub);
  }
  std::vector<std::vector<KeyState>> keys(kWriters, std::vector<KeyState>(kKeysPerWriter));
  std::mt19937_64 rng(20261128);
  int64_t total_acked = 0;
  const int iterations = Iterations();
  for (int iter = 0; iter < iterations; ++iter) {
    SCOPED_TRACE(absl::StrCat("iteration ", iter));
    if (iter > 0) {
      ASSERT_TRUE(node.Start(&error)) << error;
    }
    std::atomic<int64_t> acked_now{0};
    std::vector<std::thread> writers;
    for (int w = 0; w < kWriters; ++w) {
      writers.emplace_back([&, w] {
        auto stub = v1::RegistryService::NewStub(MtlsChannel(node.api_port(), ClientTlsDir(kLyon)));
        // Each writer owns its keys, so "the latest value" of a key is well defined.
        for (int i = 0; i < 100000; ++i) {
          KeyState& k = keys[w][static_cast<size_t>(i % kKeysPerWriter)];
          const int64_t value = k.attempted + 1;
          k.attempted = value;
          v1::UpdateRecordRequest req;
          req.mutable_record()->set_name(
              absl::StrCat("registries/crash/records/w", w, "-", i % kKeysPerWriter));
          (*req.mutable_record()->mutable_fields())["v"].set_int64_value(value);
          (*req.mutable_record()->mutable_fields())["writer"].set_string_value(absl::StrCat("w", w));
          req.set_allow_missing(true);
          grpc::ClientContext ctx;
          ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
          v1::Record out;
          if (!stub->UpdateRecord(&ctx, req, &out).ok()) return;  // the node is gone
          k.acked = value;
          acked_now++;
        }
      });
    }
    // Let the load run (from its first acknowledged write: the writers' handshakes with a
    // node just restarted take their time on a slow build), then kill the node without
    // warning.
    const auto first_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (acked_now.load() == 0 && std::chrono::steady_clock::now() < first_deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    const auto wait_ms = std::uniform_int_distribution<int>(300, 1200)(rng);
    std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
    node.Kill();
    for (auto& t : writers) t.join();
    EXPECT_GT(acked_now.load(), 0) << "no write was acknowledged before the kill";
    total_acked += acked_now.load();

    // Offline consistency check of the store as the crash left it.
    std::string report;
    const int rc = testing::RunCommand(
        absl::StrCat(testing::BinaryPath("interco-node"), " --check --authority=", kLyon,
                     " --data_dir=", data_dir, "/store"),
        &report);
    ASSERT_EQ(rc, 0) << report;

    // Every acknowledged write is there (or a later, attempted one).
    ASSERT_TRUE(node.Start(&error)) << error;
    auto stub = v1::RegistryService::NewStub(MtlsChannel(node.api_port(), ClientTlsDir(kLyon)));
    for (int w = 0; w < kWriters; ++w) {
      v1::BatchGetRecordsRequest req;
      req.set_parent("registries/crash");
      std::vector<int> asked;
      for (int i = 0; i < kKeysPerWriter; ++i) {
        if (keys[w][static_cast<size_t>(i)].attempted == 0) continue;
        req.add_names(absl::StrCat("registries/crash/records/w", w, "-", i));
        asked.push_back(i);
      }
      if (asked.empty()) continue;
      grpc::ClientContext ctx;
      v1::BatchGetRecordsResponse resp;
      grpc::Status s = stub->BatchGetRecords(&ctx, req, &resp);
      // A key whose only write was in flight may legitimately be absent.
      if (s.error_code() == grpc::StatusCode::NOT_FOUND) {
        for (int i : asked) {
          KeyState& k = keys[w][static_cast<size_t>(i)];
          v1::GetRecordRequest get;
          get.set_name(absl::StrCat("registries/crash/records/w", w, "-", i));
          grpc::ClientContext gctx;
          v1::Record r;
          grpc::Status gs = stub->GetRecord(&gctx, get, &r);
          if (gs.error_code() == grpc::StatusCode::NOT_FOUND) {
            EXPECT_EQ(k.acked, 0) << "acknowledged write lost: w" << w << "-" << i;
            k.attempted = 0;
            continue;
          }
          ASSERT_TRUE(gs.ok()) << gs.error_message();
          const int64_t v = r.fields().at("v").int64_value();
          EXPECT_GE(v, k.acked);
          EXPECT_LE(v, k.attempted);
          k.acked = k.attempted = v;
        }
        continue;
      }
      ASSERT_TRUE(s.ok()) << s.error_message();
      ASSERT_EQ(resp.records_size(), static_cast<int>(asked.size()));
      for (size_t j = 0; j < asked.size(); ++j) {
        KeyState& k = keys[w][static_cast<size_t>(asked[j])];
        const int64_t v = resp.records(static_cast<int>(j)).fields().at("v").int64_value();
        EXPECT_GE(v, k.acked) << "acknowledged write lost: w" << w << "-" << asked[j];
        EXPECT_LE(v, k.attempted) << "value never written: w" << w << "-" << asked[j];
        // The stored value is the truth from now on (an in-flight write may have landed).
        k.acked = k.attempted = v;
      }
    }
    if (iter + 1 < iterations) node.Kill();
  }
  EXPECT_EQ(node.Terminate() & 0x7f, 0) << "the node did not exit cleanly on SIGTERM";
  std::string report;
  ASSERT_EQ(testing::RunCommand(absl::StrCat(testing::BinaryPath("interco-node"),
                                             " --check --authority=", kLyon,
                                             " --data_dir=", data_dir, "/store"),
                                &report),
            0)
      << report;
  RecordProperty("acknowledged_writes", std::to_string(total_acked));
  std::printf("crash test: %d kill -9 rounds, %lld acknowledged writes verified\n", iterations,
              static_cast<long long>(total_acked));
}

}  // namespace
}  // namespace interco
