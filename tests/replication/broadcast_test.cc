// How new batches travel: the broadcast tree (each stream taken from one uplink, pushed
// to the peers that take it from us), grafts of a lazy peer we stay behind and their
// pruning, and the gathering of what is due to a peer into one message.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "replication/base/limits.h"
#include "replication/frame_codec.h"
#include "replication/replicator.h"
#include "tests/replication/engine_fixture.h"

namespace interco::replication {
namespace {

class BroadcastTest : public EngineTest {
 protected:
  // A peer's view of itself: `sessions` sessions, `held` batches of A, and whether it
  // takes the stream from V.
  struct View {
    int sessions = 1;
    uint64_t held = 0;
    bool takes = false;
  };

  static void Fill(const View& view, google::protobuf::RepeatedPtrField<v1::StreamPosition>& streams,
                   v1::Sessions& sessions, google::protobuf::RepeatedPtrField<std::string>& push) {
    auto* sp = streams.Add();
    sp->set_stream(kStream);
    if (view.held > 0) {
      auto* o = sp->add_origins();
      o->set_origin(kA);
      o->set_epoch(1);
      o->set_seq(view.held);
    }
    sessions.add_nodes(kV);
    for (int i = 1; i < view.sessions; ++i) sessions.add_nodes(static_cast<uint32_t>(100 + i));
    if (view.takes) *push.Add() = kStream;
  }

  // A session with `peer`, which opens with a Hello stating `view`.
  void Open(uint32_t peer, const View& view) {
    engine_->OnConnected(peer);
    PeerMessage m;
    v1::Hello& h = *m.mutable_hello();
    h.set_protocol_version(3);
    h.set_node(peer);
    Fill(view, *h.mutable_streams(), *h.mutable_sessions(), *h.mutable_push_streams());
    engine_->OnMessage(peer, m);
  }

  // The periodic status of `peer`, stating `view`.
  void Status(uint32_t peer, const View& view) {
    PeerMessage m;
    v1::Ack& a = *m.mutable_ack();
    Fill(view, *a.mutable_streams(), *a.mutable_sessions(), *a.mutable_push_streams());
    engine_->OnMessage(peer, m);
  }

  std::vector<PeerMessage> SentTo(uint32_t peer) const {
    std::vector<PeerMessage> out;
    for (const auto& [to, m] : transport_.sent) {
      if (to == peer) out.push_back(m);
    }
    return out;
  }

  // Whether V's last Hello or status to `peer` asked it to push the stream.
  bool AsksForPushes(uint32_t peer) const {
    std::vector<std::string> asked;
    bool stated = false;
    for (const PeerMessage& m : SentTo(peer)) {
      if (m.has_hello()) {
        asked.assign(m.hello().push_streams().begin(), m.hello().push_streams().end());
        stated = true;
      }
      if (m.has_ack() && m.ack().has_sessions()) {
        asked.assign(m.ack().push_streams().begin(), m.ack().push_streams().end());
        stated = true;
      }
    }
    EXPECT_TRUE(stated) << "V told " << peer << " nothing";
    return std::find(asked.begin(), asked.end(), kStream) != asked.end();
  }

  // A's batch `i` (1-based) of `batches_`, written on first use.
  const Batch& A(size_t i) {
    while (batches_.size() < i) batches_.push_back(a_.Write("k" + std::to_string(batches_.size()), "v"));
    return batches_[i - 1];
  }

  std::vector<Batch> batches_;
};

TEST_F(BroadcastTest, TakesTheStreamFromThePeerWithMostSessionsAndPushesAlongTheTree) {
  Open(kC, {.sessions = 3});
  Open(kR, {.sessions = 1});  // V now has 2 sessions: C (3) outranks it, R (1) does not
  EXPECT_EQ(Stats(kC).uplink_streams, std::vector<std::string>{kStream});
  EXPECT_TRUE(Stats(kR).uplink_streams.empty());
  EXPECT_TRUE(AsksForPushes(kC));
  EXPECT_FALSE(AsksForPushes(kR));

  // A local write goes up the tree only: R neither takes the stream from V nor is its
  // uplink, so it gets V's status and nothing more.
  v_.Write("piscine", "Piscine municipale");
  engine_->OnLocalCommit();
  EXPECT_EQ(BatchesSentTo(kC, kV), 1);
  EXPECT_EQ(BatchesSentTo(kR, kV), 0);
  EXPECT_EQ(Stats(kR).push_streams, std::vector<std::string>{});

  // Once R takes the stream from V, V pushes it what it lacks, and what comes next.
  Status(kR, {.sessions = 1, .takes = true});
  EXPECT_EQ(BatchesSentTo(kR, kV), 1);
  v_.Write("gymnase", "Gymnase");
  engine_->OnLocalCommit();
  EXPECT_EQ(BatchesSentTo(kR, kV), 2);
  EXPECT_EQ(BatchesSentTo(kC, kV), 2);
  EXPECT_EQ(Stats(kR).push_streams, std::vector<std::string>{kStream});
}

TEST_F(BroadcastTest, EqualRanksGoToTheSmallerSiren) {
  // One session each: C's SIREN is greater than V's, so V stays a root.
  Open(kC, {.sessions = 1});
  EXPECT_TRUE(Stats(kC).uplink_streams.empty());
  // Two sessions each: R's SIREN is smaller than V's, so V takes the stream from R.
  Open(kR, {.sessions = 2});
  EXPECT_EQ(Stats(kR).uplink_streams, std::vector<std::string>{kStream});
  EXPECT_TRUE(Stats(kC).uplink_streams.empty());
}

TEST_F(BroadcastTest, ARelayOfAnAlteredBatchIsNeverTakenAsUplink) {
  Open(kR, {.sessions = 5});
  Open(kC, {.sessions = 1});
  ASSERT_EQ(Stats(kR).uplink_streams, std::vector<std::string>{kStream});
  Batch altered = A(1);
  altered.mutable_signature()->back() ^= 1;
  SendCertificate(kR, kA);
  SendBatch(kR, altered);
  EXPECT_EQ(Stats(kR).unverified, 1u);
  EXPECT_TRUE(Stats(kR).suspect);
  EXPECT_TRUE(Stats(kR).uplink_streams.empty());
  EXPECT_FALSE(AsksForPushes(kR));
  // A new session of the same relay does not clear it.
  engine_->OnDisconnected(kR);
  Open(kR, {.sessions = 5});
  EXPECT_TRUE(Stats(kR).uplink_streams.empty());
}

TEST_F(BroadcastTest, GraftsALazyPeerItStaysBehindAndPrunesItOnceCaughtUp) {
  ReplicatorOptions o = Options();
  o.graft_delay_ms = 2000;
  StartEngine(o);
  Open(kR, {.sessions = 5});  // the uplink
  Open(kC, {.sessions = 1});  // lazy
  ASSERT_FALSE(AsksForPushes(kC));

  // C's status shows two batches of A that V lacks; the tree does not bring them.
  Status(kC, {.held = 2});
  clock_.Advance(1999);
  engine_->Tick();
  EXPECT_EQ(Stats(kC).grafts, 0u);
  EXPECT_FALSE(AsksForPushes(kC));
  clock_.Advance(1);
  engine_->Tick();
  EXPECT_EQ(Stats(kC).grafts, 1u);
  EXPECT_TRUE(AsksForPushes(kC)) << "the graft is not asked for";

  // C pushes them; once V holds all C holds, a duplicate from C prunes the graft.
  SendCertificate(kC, kA);
  SendRun(kC, {A(1)});
  SendRun(kC, {A(2)});
  EXPECT_EQ(Held(kA), 2u);
  EXPECT_EQ(Stats(kC).prunes, 0u);
  SendRun(kC, {A(2)});
  EXPECT_EQ(Stats(kC).prunes, 1u);
  EXPECT_FALSE(AsksForPushes(kC));

  // A lag the tree fills within the delay is not grafted.
  Status(kC, {.held = 3});
  clock_.Advance(500);
  SendRun(kR, {A(3)});
  clock_.Advance(2000);
  engine_->Tick();
  EXPECT_EQ(Stats(kC).grafts, 1u);
  EXPECT_FALSE(AsksForPushes(kC));
}

TEST_F(BroadcastTest, WhatIsDueWithinTheFlushIntervalGoesAsOneMessage) {
  ReplicatorOptions o = Options();
  o.flush_interval_ms = 100;
  o.ack_delay_ms = 500;
  StartEngine(o);
  Open(kR, {.sessions = 5});               // the uplink
  Open(kC, {.sessions = 1, .takes = true});  // takes the stream from V
  engine_->Tick();                          // the statuses the tree asked for go
  const size_t to_c = SentTo(kC).size();
  const size_t to_r = SentTo(kR).size();

  // Within one interval: two runs of A from R, a local commit.
  SendCertificate(kR, kA);
  SendRun(kR, {A(1)});
  SendRun(kR, {A(2)});
  v_.Write("piscine", "Piscine municipale");
  engine_->OnLocalCommit();
  EXPECT_EQ(Held(kA), 2u);
  EXPECT_EQ(SentTo(kC).size(), to_c) << "sent before the interval ended";
  EXPECT_EQ(SentTo(kR).size(), to_r) << "an ack went alone";

  clock_.Advance(100);
  engine_->Tick();
  ASSERT_EQ(SentTo(kC).size(), to_c + 1);
  const PeerMessage to_c_msg = SentTo(kC).back();
  ASSERT_EQ(to_c_msg.frames_size(), 3) << "A's two runs and V's, in one message";
  // R gets V's run up the tree, with the ack of A's runs riding on it.
  ASSERT_EQ(SentTo(kR).size(), to_r + 1);
  const PeerMessage to_r_msg = SentTo(kR).back();
  EXPECT_EQ(to_r_msg.frames_size(), 1);
  ASSERT_EQ(to_r_msg.ack().streams_size(), 1);
  ASSERT_EQ(to_r_msg.ack().streams(0).origins_size(), 1);
  EXPECT_EQ(to_r_msg.ack().streams(0).origins(0).seq(), 2u);

  // An ack with nothing to ride on waits for the ack delay.
  SendRun(kR, {A(3)});
  clock_.Advance(100);
  engine_->Tick();
  ASSERT_EQ(SentTo(kR).size(), to_r + 1);
  clock_.Advance(400);
  engine_->Tick();
  ASSERT_EQ(SentTo(kR).size(), to_r + 2);
  EXPECT_TRUE(SentTo(kR).back().frames().empty());
  EXPECT_EQ(SentTo(kR).back().ack().streams(0).origins(0).seq(), 3u);
}

TEST_F(BroadcastTest, RunsOfAMessageTheTransportRefusedAreSentAgainWithTheirCertificate) {
  Open(kC, {.sessions = 1, .takes = true});
  transport_.full = true;
  v_.Write("piscine", "Piscine municipale");
  engine_->OnLocalCommit();
  transport_.full = false;
  EXPECT_EQ(BatchesSentTo(kC, kV), 0);
  clock_.Advance(100);
  engine_->Tick();
  EXPECT_EQ(BatchesSentTo(kC, kV), 1);
  const PeerMessage m = SentTo(kC).back();
  ASSERT_EQ(m.frames_size(), 1);
  EXPECT_EQ(m.frames(0).certificates().der_size(), 1) << "the certificate was lost with the run";
}

TEST_F(BroadcastTest, AMessageGathersRunsUpToItsBound) {
  Open(kC, {.sessions = 1, .takes = true});
  const std::string big(4000, 'x');
  constexpr int kRuns = 400;  // 1.6 MB in all, pushed at the next Tick
  for (int i = 0; i < kRuns; ++i) v_.Write("k" + std::to_string(i), big);
  clock_.Advance(100);
  engine_->Tick();
  int runs = 0;
  size_t messages = 0;
  for (const PeerMessage& m : SentTo(kC)) {
    if (m.frames().empty()) continue;
    ++messages;
    runs += m.frames_size();
    EXPECT_LE(m.ByteSizeLong(), limits::kPeerMessageGatherBytes + 8192);
  }
  EXPECT_EQ(runs, kRuns);
  EXPECT_GE(messages, 2u);
  EXPECT_LE(messages, 3u);
}

TEST_F(BroadcastTest, ARunSentByColumnIsRestoredAndApplied) {
  Open(kR, {.sessions = 5});
  auto by_column = [&](const Batch& batch) {
    PeerMessage m;
    auto* frame = m.add_frames();
    frame->set_stream(kStream);
    *frame->add_batches() = batch;
    EXPECT_TRUE(EncodeColumns(*frame, hasher_));
    frame->mutable_certificates()->add_der(SimTrust::CertificateOf(kA));
    return m;
  };
  engine_->OnMessage(kR, by_column(A(1)));
  EXPECT_EQ(Held(kA), 1u);
  EXPECT_EQ(Stats(kR).batches_applied, 1u);
  // Columns that do not decode: refused whole, and the relay is suspect.
  PeerMessage broken = by_column(A(2));
  broken.mutable_frames(0)->mutable_columns()->mutable_keys()->Clear();
  engine_->OnMessage(kR, broken);
  EXPECT_EQ(Held(kA), 1u);
  EXPECT_EQ(Stats(kR).rejected, 1u);
  EXPECT_TRUE(Stats(kR).suspect);
  // Columns that decode to other bytes than the origin's: its signature refuses them.
  PeerMessage altered = by_column(A(2));
  altered.mutable_frames(0)->mutable_columns()->set_keys(0, "autre");
  engine_->OnMessage(kR, altered);
  EXPECT_EQ(Held(kA), 1u);
  EXPECT_EQ(Stats(kR).unverified, 1u);
  engine_->OnMessage(kR, by_column(A(2)));
  EXPECT_EQ(Held(kA), 2u);
}

}  // namespace
}  // namespace interco::replication
