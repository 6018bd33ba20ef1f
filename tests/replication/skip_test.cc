// Skips (Batch.skip_from): one hollow signed batch standing for a stretch of hollow ones
// of its origin's chain. A sender folds such stretches of its log when it sends them; a
// receiver moves over the whole stretch, from wherever in it its position is, logs the
// skip for what it brought, and serves it on. Uses the simulator's store.
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <utility>
#include <string>
#include <vector>

#include "replication/change_log.h"
#include "replication/replicator.h"
#include "tests/replication/engine_fixture.h"

namespace interco::replication {
namespace {

class SkipTest : public EngineTest {
 protected:
  // A writes `n` batches, one change each, signed each (run_batches_max 1) unless a test
  // made runs.
  std::vector<Batch> WriteBatches(int n) {
    std::vector<Batch> out;
    for (int i = 0; i < n; ++i) {
      out.push_back(a_.Write(absl::StrCat("r", i), absl::StrCat("v", i)));
    }
    return out;
  }

  // A writes `n` batches in runs of three (batches 3, 6... sign them), and R connects.
  std::vector<Batch> RunsOfThree(int n) {
    a_.store.run_batches_max = 3;
    std::vector<Batch> b = WriteBatches(n);
    Connect(kR);
    SendCertificate(kR, kA);
    return b;
  }

  // V holds `batch` as a run broken off by a crash leaves it: applied alone, unsigned.
  void HoldAlone(const Batch& batch) {
    ASSERT_TRUE(v_.store.ApplyBatch(kStream, *DecodeBatch(batch, hasher_)).ok());
  }

  // V's log of A's chain.
  std::vector<Batch> LogOfV() { return *v_.store.ReadBatches(kStream, OriginKey{kA, 1}, 0, 1000); }

  // V's log of A's chain is one skip, from 1 through `last`.
  void ExpectOneSkipThrough(const Batch& last) {
    const std::vector<Batch> log = LogOfV();
    ASSERT_EQ(log.size(), 1u);
    EXPECT_EQ(log[0].skip_from(), 1u);
    EXPECT_EQ(log[0].header(), last.header());
    EXPECT_TRUE(log[0].hollow());
    EXPECT_TRUE(v_.store.CheckLog().empty()) << v_.store.CheckLog();
  }

  // The batches of A the engine sent to `peer`, in order.
  std::vector<Batch> SentTo(uint32_t peer) {
    std::vector<Batch> out;
    for (const auto& [to, m] : transport_.sent) {
      if (to != peer) continue;
      for (const auto& frame : m.frames()) {
        for (const Batch& b : frame.batches()) out.push_back(b);
      }
    }
    return out;
  }

  // A session with `peer`, which says it holds A's chain up to `seq` and takes the
  // stream from us.
  void ConnectHolding(uint32_t peer, uint64_t seq) {
    engine_->OnConnected(peer);
    PeerMessage m;
    m.mutable_hello()->set_protocol_version(replication::kProtocolVersion);
    m.mutable_hello()->set_node(peer);
    auto* stream = m.mutable_hello()->add_streams();
    stream->set_stream(kStream);
    auto* origin = stream->add_origins();
    origin->set_origin(kA);
    origin->set_epoch(1);
    origin->set_seq(seq);
    m.mutable_hello()->add_push_streams(kStream);
    engine_->OnMessage(peer, m);
  }

  // What the engine sends `peer` when it connects holding A's chain up to `seq`.
  std::vector<Batch> SentOnConnect(uint32_t peer, uint64_t seq = 0) {
    transport_.sent.clear();
    ConnectHolding(peer, seq);
    return SentTo(peer);
  }

  static uint64_t FirstSeq(const Batch& b) {
    BatchHeader h;
    h.ParseFromString(b.header());
    return h.first_seq();
  }
};

TEST_F(SkipTest, AReceiverMovesOverTheStretchAndItsChainGoesOnFromTheSkip) {
  const std::vector<Batch> b = WriteBatches(6);
  Connect(kR);
  SendCertificate(kR, kA);
  SendBatch(kR, Skip(Hollow(b[4]), 1));  // stands for batches 1 to 5
  EXPECT_EQ(Held(kA), 5u);
  EXPECT_EQ(Stats(kR).skips_applied, 1u);
  EXPECT_EQ(Stats(kR).forks, 0u);
  ExpectOneSkipThrough(b[4]);  // logged as one entry, from 1
  // Batch 6 chains to batch 5's header, the skip's.
  SendBatch(kR, b[5]);
  EXPECT_EQ(Held(kA), 6u);
  EXPECT_EQ(v_.store.Records(kStream).size(), 1u) << "only batch 6's record is here";
}

TEST_F(SkipTest, ASkipReachingBackBeforeThePositionBringsTheRestOfItsStretch) {
  const std::vector<Batch> b = WriteBatches(5);
  Connect(kR);
  SendCertificate(kR, kA);
  SendBatch(kR, b[0]);
  SendBatch(kR, b[1]);
  ASSERT_EQ(Held(kA), 2u);
  SendBatch(kR, Skip(Hollow(b[4]), 1));
  EXPECT_EQ(Held(kA), 5u);
  EXPECT_EQ(Stats(kR).skips_applied, 1u);
  // Logged for what it brought: from 3.
  std::vector<Batch> log = LogOfV();
  ASSERT_EQ(log.size(), 3u);
  EXPECT_EQ(log[2].skip_from(), 3u);
  EXPECT_EQ(v_.store.Records(kStream).size(), 2u);
}

TEST_F(SkipTest, ASkipOfBatchesHeldIsADuplicateNotAFork) {
  const std::vector<Batch> b = WriteBatches(4);
  Connect(kR);
  SendCertificate(kR, kA);
  for (const Batch& x : b) SendBatch(kR, x);
  ASSERT_EQ(Held(kA), 4u);
  SendBatch(kR, Skip(Hollow(b[3]), 1));
  SendBatch(kR, Skip(Hollow(b[2]), 2));
  EXPECT_EQ(Held(kA), 4u);
  EXPECT_EQ(Stats(kR).forks, 0u);
  EXPECT_EQ(Stats(kR).duplicates, 2u);
  // And batches held as part of a skip are not a fork either.
  Authority w(kC, clock_, hasher_, schema_);
  ReplicatorOptions o = Options();
  o.self = kC;
  CaptureTransport t;
  Replicator other(o, clock_, t, w.store, hasher_, w.trust, w.signer);
  other.OnConnected(kR);
  PeerMessage hello;
  hello.mutable_hello()->set_protocol_version(replication::kProtocolVersion);
  hello.mutable_hello()->set_node(kR);
  hello.mutable_hello()->add_streams()->set_stream(kStream);
  other.OnMessage(kR, hello);
  PeerMessage m;
  auto* frame = m.add_frames();
  frame->set_stream(kStream);
  *frame->add_batches() = Skip(Hollow(b[3]), 1);
  frame->mutable_certificates()->add_der(SimTrust::CertificateOf(kA));
  other.OnMessage(kR, m);
  ASSERT_EQ(w.store.Position(kStream)->at(OriginKey{kA, 1}).seq, 4u);
  for (const Batch& x : {b[1], b[2], b[3]}) {
    PeerMessage again;
    auto* f = again.add_frames();
    f->set_stream(kStream);
    *f->add_batches() = x;
    other.OnMessage(kR, again);
  }
  EXPECT_EQ(other.Stats()[kR].forks, 0u);
  EXPECT_EQ(other.Stats()[kR].duplicates, 3u);
  EXPECT_TRUE(w.store.forks().empty());
}

TEST_F(SkipTest, ASkipAheadOfAGapWaitsForIt) {
  const std::vector<Batch> b = WriteBatches(5);
  Connect(kR);
  SendCertificate(kR, kA);
  SendBatch(kR, Skip(Hollow(b[4]), 3));
  EXPECT_EQ(Held(kA), 0u);
  EXPECT_EQ(Stats(kR).gaps, 1u);
  SendBatch(kR, b[0]);
  EXPECT_EQ(Held(kA), 1u);
  SendBatch(kR, b[1]);
  EXPECT_EQ(Held(kA), 5u) << "the buffered skip follows batch 2";
  EXPECT_EQ(Stats(kR).skips_applied, 1u);
}

TEST_F(SkipTest, ASenderFoldsHollowRunsIntoOneSkipFromWhereThePeerIs) {
  const std::vector<Batch> b = WriteBatches(6);
  Connect(kR);
  SendCertificate(kR, kA);
  for (int i = 0; i < 4; ++i) SendBatch(kR, Hollow(b[static_cast<size_t>(i)]));
  SendBatch(kR, b[4]);
  SendBatch(kR, b[5]);
  ASSERT_EQ(Held(kA), 6u);
  ASSERT_EQ(LogOfV().size(), 6u);
  // A peer holding nothing: one skip for batches 1 to 4, then 5 and 6 whole.
  std::vector<Batch> sent = SentOnConnect(kC);
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(sent[0].skip_from(), 1u);
  EXPECT_EQ(sent[0].header(), b[3].header());
  EXPECT_EQ(sent[1].header(), b[4].header());
  EXPECT_FALSE(sent[1].hollow());
  EXPECT_EQ(sent[2].header(), b[5].header());
  EXPECT_EQ(Stats(kC).skips_sent, 1u);
  // A peer holding batch 1: the skip goes from 2.
  sent = SentOnConnect(*SirenToOrigin("200066793"), 1);
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(sent[0].skip_from(), 2u);
  // A peer holding batch 3: batch 4 alone is hollow, no skip.
  sent = SentOnConnect(*SirenToOrigin("200066801"), 3);
  ASSERT_EQ(sent.size(), 3u);
  EXPECT_EQ(sent[0].skip_from(), 0u);
  EXPECT_TRUE(sent[0].hollow());
  EXPECT_EQ(FirstSeq(sent[0]), 4u);
}

TEST_F(SkipTest, AStretchEndsWhereARunEnds) {
  const std::vector<Batch> b = RunsOfThree(6);
  ASSERT_TRUE(b[0].signature().empty());
  ASSERT_FALSE(b[2].signature().empty());
  // Batches 1 to 4 hollow, 5 and 6 whole: batch 4's header is part of the proof of 5.
  std::vector<Batch> run1 = {Hollow(b[0]), Hollow(b[1]), Hollow(b[2])};
  SendRun(kR, run1);
  ASSERT_EQ(Held(kA), 3u);
  std::vector<Batch> run2 = {Hollow(b[3]), b[4], b[5]};
  SendRun(kR, run2);
  ASSERT_EQ(Held(kA), 6u);
  std::vector<Batch> sent = SentOnConnect(kC);
  ASSERT_EQ(sent.size(), 4u);
  EXPECT_EQ(sent[0].skip_from(), 1u);
  EXPECT_EQ(sent[0].header(), b[2].header());
  EXPECT_EQ(sent[1].skip_from(), 0u);
  EXPECT_TRUE(sent[1].hollow());
  EXPECT_EQ(FirstSeq(sent[1]), 4u);
}

// A run broken off here (a crash between two of its batches) left a batch kept
// unsigned: a skip over the rest of its run would take its proof, and is refused; the
// rest of the run, sent as it is, is taken.
TEST_F(SkipTest, ASkipAfterABatchKeptUnsignedIsRefused) {
  const std::vector<Batch> b = RunsOfThree(3);
  ASSERT_TRUE(b[0].signature().empty());
  HoldAlone(b[0]);
  ASSERT_EQ(Held(kA), 1u);
  SendBatch(kR, Skip(Hollow(b[2]), 2));
  EXPECT_EQ(Held(kA), 1u);
  EXPECT_EQ(Stats(kR).rejected, 1u);
  EXPECT_EQ(Stats(kR).skips_applied, 0u);
  std::vector<Batch> rest = {b[0], Hollow(b[1]), Hollow(b[2])};
  SendRun(kR, rest);
  EXPECT_EQ(Held(kA), 3u);
}

// The same broken run, and a skip that reaches back over it (its senders folded the run
// into a longer stretch, so nobody has its headers any more): taken, and logged in the
// broken run's place.
TEST_F(SkipTest, ASkipReachingBackOverABrokenRunTakesItsPlace) {
  const std::vector<Batch> b = RunsOfThree(6);
  HoldAlone(b[0]);
  HoldAlone(b[1]);
  ASSERT_EQ(Held(kA), 2u);
  SendBatch(kR, Skip(Hollow(b[5]), 1));
  EXPECT_EQ(Held(kA), 6u);
  EXPECT_EQ(Stats(kR).rejected, 0u);
  EXPECT_EQ(Stats(kR).skips_applied, 1u);
  ExpectOneSkipThrough(b[5]);
}

// A broken run whose last batch held here is hollow but an earlier one is kept: a skip
// reaching into the run is refused all the same; one reaching back over it is taken.
TEST_F(SkipTest, ABrokenRunWithAKeptBatchBeforeAHollowOneNeedsTheWholeRun) {
  const std::vector<Batch> b = RunsOfThree(6);
  HoldAlone(b[0]);
  HoldAlone(Hollow(b[1]));
  SendBatch(kR, Skip(Hollow(b[5]), 2));
  EXPECT_EQ(Held(kA), 2u);
  EXPECT_EQ(Stats(kR).rejected, 1u);
  SendBatch(kR, Skip(Hollow(b[5]), 1));
  EXPECT_EQ(Held(kA), 6u);
  ExpectOneSkipThrough(b[5]);
}

// A skip whose header comes right after a broken run proves it: the run stays, and the
// skip is logged as that batch alone.
TEST_F(SkipTest, ASkipWhoseHeaderEndsABrokenRunLeavesTheRun) {
  const std::vector<Batch> b = RunsOfThree(3);
  HoldAlone(b[0]);
  HoldAlone(b[1]);
  SendBatch(kR, Skip(Hollow(b[2]), 1));
  EXPECT_EQ(Held(kA), 3u);
  const std::vector<Batch> log = LogOfV();
  ASSERT_EQ(log.size(), 3u);
  EXPECT_EQ(log[0].header(), b[0].header());
  EXPECT_FALSE(log[0].hollow());
  EXPECT_EQ(log[2].skip_from(), 0u);
  EXPECT_EQ(log[2].header(), b[2].header());
}

// A skip whose header comes right after what the node holds chains from it: a header
// that does not is a fork, as for any batch.
TEST_F(SkipTest, ASkipWhoseHeaderFollowsIsCheckedForItsChain) {
  const std::vector<Batch> b = WriteBatches(4);
  Connect(kR);
  SendCertificate(kR, kA);
  for (int i = 0; i < 3; ++i) SendBatch(kR, b[static_cast<size_t>(i)]);
  ASSERT_EQ(Held(kA), 3u);
  Batch other = b[3];
  BatchHeader h;
  h.ParseFromString(other.header());
  h.set_prev_hash(std::string(32, 'x'));
  other.set_header(h.SerializeAsString());
  other = Resigned(other, a_.signer);
  SendBatch(kR, Skip(Hollow(other), 2));
  EXPECT_EQ(Held(kA), 3u);
  EXPECT_EQ(Stats(kR).forks, 1u);
}

// Runs of three: batch 1 kept (unsigned), 2 and 3 hollow; 4 to 6 hollow. The first run
// goes as it is (batch 1 needs the headers of 2 and 3), the second as a skip.
TEST_F(SkipTest, AStretchStartsWhereARunStarts) {
  const std::vector<Batch> b = RunsOfThree(6);
  std::vector<Batch> run1 = {b[0], Hollow(b[1]), Hollow(b[2])};
  SendRun(kR, run1);
  std::vector<Batch> run2 = {Hollow(b[3]), Hollow(b[4]), Hollow(b[5])};
  SendRun(kR, run2);
  ASSERT_EQ(Held(kA), 6u);
  std::vector<Batch> sent = SentOnConnect(kC);
  ASSERT_EQ(sent.size(), 4u);
  EXPECT_FALSE(sent[0].hollow());
  EXPECT_EQ(sent[1].skip_from(), 0u);
  EXPECT_EQ(sent[2].skip_from(), 0u);
  EXPECT_EQ(sent[3].skip_from(), 4u);
  EXPECT_EQ(sent[3].header(), b[5].header());
  // A peer holding batch 2 (its run broken off): 3 goes as it is, then the skip.
  sent = SentOnConnect(*SirenToOrigin("200066793"), 2);
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].skip_from(), 0u);
  EXPECT_EQ(FirstSeq(sent[0]), 3u);
  EXPECT_EQ(sent[1].skip_from(), 4u);
}

TEST_F(SkipTest, AStoredSkipIsServedWholeToAPeerInsideIt) {
  const std::vector<Batch> b = WriteBatches(5);
  Connect(kR);
  SendCertificate(kR, kA);
  SendBatch(kR, Skip(Hollow(b[4]), 1));
  ASSERT_EQ(LogOfV().size(), 1u);
  // Whole, from its own start (where a run starts): a peer that kept a run broken off in
  // it unsigned takes it in that run's place.
  std::vector<Batch> sent = SentOnConnect(kC, 2);
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].skip_from(), 1u);
  EXPECT_EQ(sent[0].header(), b[4].header());
}

// Where compaction folds a log in place: each stretch of hollow entries from a run's
// start (or a skip) to the last run end before a kept batch, when it is more than one
// entry; a skip already folded extends over hollow batches after it.
TEST_F(SkipTest, CompactionFoldsEachStretchFromARunStartToARunEnd) {
  a_.store.run_batches_max = 3;  // runs 1-3, 4-6, 7-9, 10-12
  const std::vector<Batch> b = WriteBatches(12);
  auto hollow = [&](std::initializer_list<int> kept) {
    std::vector<Batch> log;
    for (int i = 0; i < 12; ++i) {
      log.push_back(std::find(kept.begin(), kept.end(), i + 1) != kept.end() ? b[i] : Hollow(b[i]));
    }
    return log;
  };
  using Stretches = std::vector<std::pair<size_t, size_t>>;
  EXPECT_EQ(FoldableStretches(hollow({})), (Stretches{{0, 11}}));
  // Batch 8 kept: 1-6 fold; 7 (before it in its run) and 9 stay; 10-12 fold.
  EXPECT_EQ(FoldableStretches(hollow({8})), (Stretches{{0, 5}, {9, 11}}));
  // Batch 2 kept: 3 is mid-run, so the stretch starts at 4.
  EXPECT_EQ(FoldableStretches(hollow({2, 12})), (Stretches{{3, 8}}));
  // A single run end alone is no fold.
  EXPECT_EQ(FoldableStretches(hollow({1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12})), Stretches{});
  // A skip read from the log (batches 1-6 folded before) goes on over 7-9.
  std::vector<Batch> log = {Skip(Hollow(b[5]), 1), Hollow(b[6]), Hollow(b[7]), Hollow(b[8]), b[9]};
  EXPECT_EQ(FoldableStretches(log), (Stretches{{0, 3}}));
  EXPECT_EQ(*EntryFirstSeq(log[0]), 1u);
  EXPECT_EQ(*EntryFirstSeq(log[1]), 7u);
}

TEST(SkipDecodeTest, OnlyAHollowSignedBatchStandsForBatchesBeforeIt) {
  SimHasher hasher;
  SimTrust trust(hasher);
  SimTrust::OriginSigner signer(trust, kA);
  BatchParams p;
  p.origin = kA;
  p.epoch = 1;
  p.stream = kStream;
  p.first_seq = 5;
  p.max_hlc = 100;
  Change c;
  c.set_key("r");
  c.set_hlc(100);
  c.mutable_delta()->set_causal_length(1);
  std::string header_hash;
  const Batch whole =
      *BuildBatch(p, {c.SerializeAsString()}, hasher, &signer, &header_hash);
  EXPECT_TRUE(DecodeBatch(Skip(Hollow(whole), 2), hasher).ok());
  EXPECT_EQ(DecodeBatch(Skip(Hollow(whole), 2), hasher)->first_seq(), 2u);
  EXPECT_EQ(DecodeBatch(Skip(Hollow(whole), 2), hasher)->last_seq(), 5u);
  EXPECT_EQ(Skip(Hollow(whole), 5).skip_from(), 0u) << "standing for itself only";
  Batch not_hollow = whole;
  not_hollow.set_skip_from(2);
  EXPECT_EQ(DecodeBatch(not_hollow, hasher).status().code(), absl::StatusCode::kDataLoss);
  Batch unsigned_skip = Skip(Hollow(whole), 2);
  unsigned_skip.clear_signature();
  unsigned_skip.clear_signer();
  EXPECT_EQ(DecodeBatch(unsigned_skip, hasher).status().code(), absl::StatusCode::kDataLoss);
  Batch after = Hollow(whole);
  after.set_skip_from(6);
  EXPECT_EQ(DecodeBatch(after, hasher).status().code(), absl::StatusCode::kDataLoss);
  // A skip ends no run of several batches: the headers before it are not there.
  p.first_seq = 4;
  const Batch before = *BuildBatch(p, {c.SerializeAsString()}, hasher, nullptr, &header_hash);
  std::vector<DecodedBatch> run = {*DecodeBatch(before, hasher),
                                   *DecodeBatch(Skip(Hollow(whole), 2), hasher)};
  EXPECT_EQ(CheckRun(run).code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace interco::replication
