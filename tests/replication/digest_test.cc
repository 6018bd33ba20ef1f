// Divergence checks: a node sends a digest of its state of a stream to a peer known to
// hold exactly what it holds, and compares a peer's digest with its own when both are at
// one position (docs/REPLICATION.md, "Divergence checks").
#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "replication/repair.h"
#include "replication/replicator.h"
#include "tests/replication/engine_fixture.h"

namespace interco::replication {
namespace {

class DigestTest : public EngineTest {
 protected:
  static constexpr int64_t kIntervalMs = 1000;

  DigestTest() {
    ReplicatorOptions o = Options();
    o.digest_interval_ms = kIntervalMs;
    StartEngine(o);
  }

  // V gets A's first batch from A: both hold it, and V knows A does.
  void ShareABatch() {
    Connect(kA);
    SendCertificate(kA, kA);
    SendBatch(kA, a_.Write("piscine", "Piscine"));
    ASSERT_EQ(Held(kA), 1u);
  }

  // The digests V sent `peer` in its statuses.
  std::vector<v1::StreamDigest> DigestsSentTo(uint32_t peer) {
    std::vector<v1::StreamDigest> out;
    for (const auto& [to, m] : transport_.sent) {
      if (to == peer) out.insert(out.end(), m.ack().digests().begin(), m.ack().digests().end());
    }
    return out;
  }

  // `from`'s status carrying its digest `d` of the stream.
  void SendDigest(uint32_t from, const v1::StreamDigest& d) {
    PeerMessage m;
    m.mutable_ack()->mutable_sessions();  // a status
    *m.mutable_ack()->add_digests() = d;
    engine_->OnMessage(from, m);
  }

  // A's digest, as A's engine would send it.
  v1::StreamDigest DigestOfA() {
    const StateDigest d = *a_.store.Digest(kStream);
    v1::StreamDigest out;
    out.set_stream(kStream);
    out.set_position(PositionDigest(d.position, hasher_));
    out.set_live_sum(d.live_sum);
    out.set_live_records(d.live_records);
    return out;
  }

  // Lets the status interval pass, then ticks.
  void NextStatus() {
    clock_.Advance(Options().status_interval_ms);
    engine_->Tick();
  }
};

TEST_F(DigestTest, APeerHoldingWhatWeHoldIsSentOurDigestAtMostOncePerInterval) {
  // Statuses go every 5 s; digests at most every 12 s.
  ReplicatorOptions o = Options();
  o.digest_interval_ms = 12000;
  StartEngine(o);
  ShareABatch();
  NextStatus();
  std::vector<v1::StreamDigest> sent = DigestsSentTo(kA);
  ASSERT_EQ(sent.size(), 1u);
  // The same state on both sides: the same digest.
  EXPECT_EQ(sent[0].SerializeAsString(), DigestOfA().SerializeAsString());
  EXPECT_EQ(sent[0].live_records(), 1u);
  EXPECT_NE(sent[0].live_sum(), 0u);
  EXPECT_EQ(Stats(kA).digests_sent, 1u);

  // The next two statuses (5 and 10 s later) go without it, the one after with it.
  for (int status = 0; status < 2; ++status) {
    transport_.sent.clear();
    NextStatus();
    bool status_sent = false;
    for (const auto& [to, m] : transport_.sent) status_sent |= to == kA && m.ack().has_sessions();
    ASSERT_TRUE(status_sent);
    EXPECT_TRUE(DigestsSentTo(kA).empty()) << status;
  }
  transport_.sent.clear();
  NextStatus();
  EXPECT_EQ(DigestsSentTo(kA).size(), 1u);
  EXPECT_EQ(Stats(kA).digests_sent, 2u);
}

TEST_F(DigestTest, APeerThatHoldsLessOrOtherwiseIsSentNoDigest) {
  ShareABatch();
  Connect(kC);  // holds nothing of the stream
  // V writes on its own: A is not known to hold that.
  v_.Write("stade", "Stade");
  NextStatus();
  EXPECT_TRUE(DigestsSentTo(kC).empty());
  EXPECT_TRUE(DigestsSentTo(kA).empty());
}

TEST_F(DigestTest, APeerThatMayNotReadTheStreamIsSentNoDigest) {
  ShareABatch();
  v_.store.readers = [](uint32_t node) { return node != kA; };
  NextStatus();
  EXPECT_TRUE(DigestsSentTo(kA).empty());
  v_.store.readers = nullptr;
  NextStatus();
  EXPECT_EQ(DigestsSentTo(kA).size(), 1u);
}

TEST_F(DigestTest, NoDigestsWhenTheIntervalIsZero) {
  ReplicatorOptions o = Options();
  o.digest_interval_ms = 0;
  StartEngine(o);
  ShareABatch();
  NextStatus();
  NextStatus();
  EXPECT_TRUE(DigestsSentTo(kA).empty());
}

TEST_F(DigestTest, AnotherStateAtTheSamePositionIsADivergenceUntilADigestMatches) {
  ShareABatch();
  SendDigest(kA, DigestOfA());
  EXPECT_EQ(Stats(kA).digests_matched, 1u);
  EXPECT_EQ(Stats(kA).divergences, 0u);
  EXPECT_TRUE(v_.store.divergences.empty());

  // A's copy went wrong outside the log: the same position, another sum.
  v1::StreamDigest wrong = DigestOfA();
  wrong.set_live_sum(wrong.live_sum() + 1);
  SendDigest(kA, wrong);
  EXPECT_EQ(Stats(kA).divergences, 1u);
  EXPECT_EQ(Stats(kA).diverged, std::set<std::string>{kStream});
  ASSERT_EQ(v_.store.divergences.size(), 1u);
  EXPECT_EQ(v_.store.divergences[0], std::make_pair(kA, std::string(kStream)));

  // Another count of live records alone is one too.
  wrong = DigestOfA();
  wrong.set_live_records(2);
  SendDigest(kA, wrong);
  EXPECT_EQ(Stats(kA).divergences, 2u);

  // Repaired: the next digest matches.
  SendDigest(kA, DigestOfA());
  EXPECT_EQ(Stats(kA).digests_matched, 2u);
  EXPECT_TRUE(Stats(kA).diverged.empty());
}

TEST_F(DigestTest, ADigestAtAnotherPositionOrOfAnotherStreamIsNotCompared) {
  ShareABatch();
  // A wrote again (its digest is of two batches; V holds one): the states differ by what
  // V has yet to receive.
  a_.Write("stade", "Stade");
  v1::StreamDigest ahead = DigestOfA();
  SendDigest(kA, ahead);
  v1::StreamDigest other = ahead;
  other.set_stream("autre");
  SendDigest(kA, other);
  EXPECT_EQ(Stats(kA).digests_matched, 0u);
  EXPECT_EQ(Stats(kA).divergences, 0u);
  EXPECT_TRUE(v_.store.divergences.empty());
}

TEST(PositionDigestTest, NamesTheHeldSequenceNumbersOfEveryOriginEpochInOrder) {
  SimHasher hasher;
  VersionVector a;
  a[OriginKey{1, 1}].seq = 5;
  a[OriginKey{2, 1}].seq = 3;
  VersionVector b = a;
  b[OriginKey{3, 2}].seq = 0;  // held nothing: the same position
  b[OriginKey{1, 1}].max_hlc = 99;  // stamps are not part of it
  EXPECT_EQ(PositionDigest(a, hasher), PositionDigest(b, hasher));
  b[OriginKey{2, 1}].seq = 4;
  EXPECT_NE(PositionDigest(a, hasher), PositionDigest(b, hasher));
  // Another branch of a forked chain at the same sequence number: another position.
  b = a;
  b[OriginKey{2, 1}].last_hash = std::string(32, 'x');
  EXPECT_NE(PositionDigest(a, hasher), PositionDigest(b, hasher));
  VersionVector c;
  c[OriginKey{1, 2}].seq = 5;  // another epoch
  c[OriginKey{2, 1}].seq = 3;
  EXPECT_NE(PositionDigest(a, hasher), PositionDigest(c, hasher));
  EXPECT_EQ(PositionDigest(a, hasher).size(), 32u);
}

}  // namespace
}  // namespace interco::replication
