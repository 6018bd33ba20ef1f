// The engine under test (node V) and the authorities around it, for tests of the
// replication engine driven message by message: the simulator's store and deterministic
// signer, a fixed clock, and a transport that records what the engine sends.
#ifndef INTERCO_TESTS_REPLICATION_ENGINE_FIXTURE_H_
#define INTERCO_TESTS_REPLICATION_ENGINE_FIXTURE_H_

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "replication/change_log.h"
#include "replication/ids.h"
#include "replication/replicator.h"
#include "tests/sim/sim_store.h"

namespace interco::replication {

using interco::replication::v1::Batch;
using interco::replication::v1::BatchHeader;
using interco::replication::v1::Change;
using interco::replication::v1::PeerMessage;
using sim::SimHasher;
using sim::SimStore;
using sim::SimTrust;

const uint32_t kA = *SirenToOrigin("200046977");  // the origin
const uint32_t kR = *SirenToOrigin("200071751");  // a relay (the suspect)
const uint32_t kV = *SirenToOrigin("210100012");  // the node under test
const uint32_t kC = *SirenToOrigin("217400423");  // another peer of the node
constexpr char kStream[] = "equipements";

class FixedClock final : public Clock {
 public:
  int64_t NowMillis() override { return 1'790'000'000'000 + now_; }
  int64_t MonotonicMillis() override { return now_; }
  void Advance(int64_t ms) { now_ += ms; }

 private:
  int64_t now_ = 1000;
};

class CaptureTransport final : public Transport {
 public:
  bool Send(uint32_t peer, const PeerMessage& message) override {
    if (full) return false;
    sent.emplace_back(peer, message);
    return true;
  }
  std::vector<std::pair<uint32_t, PeerMessage>> sent;
  // While set, every Send reports a full queue.
  bool full = false;
};

inline interco::v1::Schema TestSchema() {
  interco::v1::Schema s;
  auto* f = s.add_fields();
  f->set_name("nom");
  f->set_type(interco::v1::FIELD_TYPE_STRING);
  return s;
}

// One authority's node: its store, signer and (own) verifier.
struct Authority {
  Authority(uint32_t o, Clock& clock, SimHasher& hasher, const RegistrySchema& schema)
      : origin(o),
        trust(hasher),
        signer(trust, origin),
        store(origin, {kStream}, clock, hasher, &signer, schema) {
    store.run_batches_max = 1;  // every batch signed, unless a test makes runs
  }
  // Commits one write; returns the batch it made.
  Batch Write(const std::string& key, const std::string& value) {
    LocalWrite w;
    w.kind = LocalWrite::Kind::kUpdate;
    w.allow_missing = true;
    w.fields["nom"].set_string_value(value);
    store.Commit(kStream, {{key, w}});
    const VersionVector vv = *store.Position(kStream);
    const uint64_t seq = vv.at(OriginKey{origin, 1}).seq;
    return (*store.ReadBatches(kStream, OriginKey{origin, 1}, seq - 1, 1)).front();
  }
  const uint32_t origin;
  SimTrust trust;
  SimTrust::OriginSigner signer;
  SimStore store;
};

class EngineTest : public ::testing::Test {
 protected:
  EngineTest()
      : schema_(*RegistrySchema::Compile(TestSchema())),
        a_(kA, clock_, hasher_, schema_),
        v_(kV, clock_, hasher_, schema_) {
    StartEngine();
  }

  // Options of the engine under test: every event's messages go at once, unless a test
  // says otherwise.
  static ReplicatorOptions Options() {
    ReplicatorOptions o;
    o.self = kV;
    o.flush_interval_ms = 0;
    return o;
  }
  void StartEngine(const ReplicatorOptions& o = Options()) {
    engine_ = std::make_unique<Replicator>(o, clock_, transport_, v_.store, hasher_, v_.trust,
                                           v_.signer);
  }

  // A session with `peer`, which says it holds nothing and takes the stream from us.
  void Connect(uint32_t peer) {
    engine_->OnConnected(peer);
    PeerMessage m;
    m.mutable_hello()->set_protocol_version(kProtocolVersion);
    m.mutable_hello()->set_node(peer);
    m.mutable_hello()->add_streams()->set_stream(kStream);
    m.mutable_hello()->add_push_streams(kStream);
    engine_->OnMessage(peer, m);
  }

  // The next batch `from` sends carries the certificate of `origin`.
  void SendCertificate(uint32_t from, uint32_t origin) {
    pending_certs_[from].push_back(SimTrust::CertificateOf(origin));
  }

  void SendBatch(uint32_t from, const Batch& batch) { SendRun(from, {batch}); }

  // One frame: a run of batches (all unsigned but the last, for a well-formed one).
  void SendRun(uint32_t from, const std::vector<Batch>& run) {
    PeerMessage m;
    auto* frame = m.add_frames();
    frame->set_stream(kStream);
    for (const Batch& b : run) *frame->add_batches() = b;
    for (std::string& der : pending_certs_[from]) {
      frame->mutable_certificates()->add_der(std::move(der));
    }
    pending_certs_[from].clear();
    engine_->OnMessage(from, m);
  }

  uint64_t Held(uint32_t origin) {
    const VersionVector vv = *v_.store.Position(kStream);
    auto it = vv.find(OriginKey{origin, 1});
    return it == vv.end() ? 0 : it->second.seq;
  }

  PeerStats Stats(uint32_t peer) { return engine_->Stats()[peer]; }

  // Batches of `origin` the engine sent to `peer`.
  int BatchesSentTo(uint32_t peer, uint32_t origin) {
    int n = 0;
    for (const auto& [to, m] : transport_.sent) {
      if (to != peer) continue;
      for (const auto& frame : m.frames()) {
        for (const Batch& b : frame.batches()) {
          BatchHeader h;
          h.ParseFromString(b.header());
          if (h.origin() == origin) ++n;
        }
      }
    }
    return n;
  }

  // Re-signs a batch's (possibly altered) header with `signer`.
  static Batch Resigned(Batch b, Signer& signer) {
    EXPECT_TRUE(SignBatch(b, signer, b.signed_at_ms()).ok());
    return b;
  }

  FixedClock clock_;
  SimHasher hasher_;
  RegistrySchema schema_;
  Authority a_;
  Authority v_;
  CaptureTransport transport_;
  std::unique_ptr<Replicator> engine_;
  std::map<uint32_t, std::vector<std::string>> pending_certs_;
};

}  // namespace interco::replication

#endif  // INTERCO_TESTS_REPLICATION_ENGINE_FIXTURE_H_
