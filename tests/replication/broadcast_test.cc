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
  // A peer's view of itself: its place in the stream's tree (`root` 0: itself), `held`
  // batches of A, and whether it takes the stream from V.
  struct View {
    uint32_t root = 0;
    uint32_t distance = 0;
    uint32_t uplink = 0;
    uint64_t held = 0;
    bool takes = false;
  };

  static void Fill(uint32_t peer, const View& view,
                   google::protobuf::RepeatedPtrField<v1::StreamPosition>& streams,
                   v1::Sessions& sessions, google::protobuf::RepeatedPtrField<std::string>& push,
                   google::protobuf::RepeatedPtrField<v1::TreePosition>& trees) {
    auto* sp = streams.Add();
    sp->set_stream(kStream);
    if (view.held > 0) {
      auto* o = sp->add_origins();
      o->set_origin(kA);
      o->set_epoch(1);
      o->set_seq(view.held);
    }
    sessions.add_nodes(kV);
    if (view.takes) *push.Add() = kStream;
    auto* t = trees.Add();
    t->set_stream(kStream);
    t->set_root(view.root == 0 ? peer : view.root);
    t->set_distance(view.distance);
    t->set_uplink(view.uplink);
  }

  // A session with `peer`, which opens with a Hello stating `view`.
  void Open(uint32_t peer, const View& view) {
    engine_->OnConnected(peer);
    PeerMessage m;
    v1::Hello& h = *m.mutable_hello();
    h.set_protocol_version(replication::kProtocolVersion);
    h.set_node(peer);
    Fill(peer, view, *h.mutable_streams(), *h.mutable_sessions(), *h.mutable_push_streams(),
         *h.mutable_trees());
    engine_->OnMessage(peer, m);
  }

  // The periodic status of `peer`, stating `view`.
  void Status(uint32_t peer, const View& view) {
    PeerMessage m;
    v1::Ack& a = *m.mutable_ack();
    Fill(peer, view, *a.mutable_streams(), *a.mutable_sessions(), *a.mutable_push_streams(),
         *a.mutable_trees());
    engine_->OnMessage(peer, m);
  }

  // V's place in the stream's tree, as its last Hello or status to `peer` said.
  std::pair<uint32_t, uint32_t> PlaceToldTo(uint32_t peer) const {
    std::pair<uint32_t, uint32_t> place;
    for (const PeerMessage& m : SentTo(peer)) {
      const auto& trees = m.has_hello() ? m.hello().trees()
                          : m.has_ack()  ? m.ack().trees()
                                         : google::protobuf::RepeatedPtrField<v1::TreePosition>();
      for (const auto& t : trees) {
        if (t.stream() == kStream) place = {t.root(), t.distance()};
      }
    }
    return place;
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

TEST_F(BroadcastTest, TakesTheStreamFromThePeerClosestToTheSmallestSirenAndPushesAlongTheTree) {
  // C's SIREN is greater than V's: V is the root of what it knows.
  Open(kC, {});
  EXPECT_TRUE(Stats(kC).uplink_streams.empty());
  EXPECT_EQ(PlaceToldTo(kC), std::make_pair(kV, 0u));
  // R's is smaller: V takes the stream from R, one link from the root.
  Open(kR, {});
  EXPECT_EQ(Stats(kR).uplink_streams, std::vector<std::string>{kStream});
  EXPECT_TRUE(AsksForPushes(kR));
  EXPECT_FALSE(AsksForPushes(kC));
  EXPECT_EQ(PlaceToldTo(kC), std::make_pair(kR, 1u)) << "C did not hear of V's new place";

  // A local write goes up the tree only: C neither takes the stream from V nor is its
  // uplink, so it gets V's status and nothing more.
  v_.Write("piscine", "Piscine municipale");
  engine_->OnLocalCommit();
  EXPECT_EQ(BatchesSentTo(kR, kV), 1);
  EXPECT_EQ(BatchesSentTo(kC, kV), 0);
  EXPECT_EQ(Stats(kC).push_streams, std::vector<std::string>{});

  // Once C takes the stream from V, V pushes it what it lacks, and what comes next.
  Status(kC, {.root = kR, .distance = 2, .uplink = kV, .takes = true});
  EXPECT_EQ(BatchesSentTo(kC, kV), 1);
  v_.Write("gymnase", "Gymnase");
  engine_->OnLocalCommit();
  EXPECT_EQ(BatchesSentTo(kC, kV), 2);
  EXPECT_EQ(BatchesSentTo(kR, kV), 2);
  EXPECT_EQ(Stats(kC).push_streams, std::vector<std::string>{kStream});

  // C now hears of an even smaller root, A, three links away; it stops taking the stream
  // from V, and V takes it from C.
  Status(kC, {.root = kA, .distance = 3});
  EXPECT_EQ(Stats(kC).uplink_streams, std::vector<std::string>{kStream});
  EXPECT_TRUE(Stats(kR).uplink_streams.empty());
  EXPECT_EQ(PlaceToldTo(kR), std::make_pair(kA, 4u));
}

TEST_F(BroadcastTest, AmongEqualPathsTheSmallerSirenAndNeverAPeerThatTakesFromUs) {
  // Both offer the root A two links away: the smaller SIREN wins.
  Open(kC, {.root = kA, .distance = 2});
  Open(kR, {.root = kA, .distance = 2});
  EXPECT_EQ(Stats(kR).uplink_streams, std::vector<std::string>{kStream});
  // R asks V to push the stream (a graft: it still takes it from elsewhere): R stays the
  // uplink.
  Status(kR, {.root = kA, .distance = 2, .uplink = kA, .takes = true});
  EXPECT_EQ(Stats(kR).uplink_streams, std::vector<std::string>{kStream});
  // R now takes the stream from V: its place is V's own, repeated; C becomes the uplink.
  Status(kR, {.root = kA, .distance = 4, .uplink = kV, .takes = true});
  EXPECT_EQ(Stats(kC).uplink_streams, std::vector<std::string>{kStream});
  // A root heard of at the end of too long a path is forgotten (a root that went away
  // counts up to there).
  Status(kC, {.root = kA, .distance = limits::kTreeDistanceMax - 1});
  EXPECT_TRUE(Stats(kC).uplink_streams.empty());
  EXPECT_EQ(PlaceToldTo(kC), std::make_pair(kV, 0u));
}

TEST_F(BroadcastTest, ARelayOfAnAlteredBatchIsNeverTakenAsUplink) {
  Open(kR, {});
  Open(kC, {});
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
  Open(kR, {});
  EXPECT_TRUE(Stats(kR).uplink_streams.empty());
}

TEST_F(BroadcastTest, GraftsALazyPeerItStaysBehindAndPrunesItOnceCaughtUp) {
  ReplicatorOptions o = Options();
  o.graft_delay_ms = 2000;
  StartEngine(o);
  Open(kR, {});  // the uplink (the smallest SIREN)
  Open(kC, {});  // lazy
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

  // Nor one the tree keeps filling, however long it takes (a long catch-up): the wait
  // starts again with each step, and a graft comes only once the steps stop.
  Status(kC, {.held = 6});
  for (size_t i = 4; i <= 5; ++i) {
    clock_.Advance(1500);
    SendRun(kR, {A(i)});
    engine_->Tick();
  }
  clock_.Advance(1500);
  engine_->Tick();
  EXPECT_EQ(Stats(kC).grafts, 1u) << "grafted while the uplink was still bringing the stream";
  clock_.Advance(500);
  engine_->Tick();
  EXPECT_EQ(Stats(kC).grafts, 2u);
  EXPECT_TRUE(AsksForPushes(kC));
}

TEST_F(BroadcastTest, APushAfterAnIdleSpellIsNotTakenForALostOne) {
  Open(kC, {.takes = true});
  for (int i = 0; i < 100; ++i) {  // ten idle seconds
    clock_.Advance(100);
    engine_->Tick();
  }
  v_.Write("piscine", "Piscine municipale");
  engine_->OnLocalCommit();
  clock_.Advance(100);
  engine_->Tick();  // the ack is on its way: nothing is resent
  EXPECT_EQ(BatchesSentTo(kC, kV), 1);
  EXPECT_EQ(Stats(kC).rewinds, 0u);
}

TEST_F(BroadcastTest, WhatIsDueWithinTheFlushIntervalGoesAsOneMessage) {
  ReplicatorOptions o = Options();
  o.flush_interval_ms = 100;
  o.ack_delay_ms = 500;
  StartEngine(o);
  Open(kR, {});                 // the uplink
  Open(kC, {.takes = true});    // takes the stream from V
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
  Open(kC, {.takes = true});
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
  Open(kC, {.takes = true});
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
  Open(kR, {});
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
  // Columns that do not decode: refused whole (a later encoder's frame, say; the relay is
  // not suspected for it).
  PeerMessage broken = by_column(A(2));
  broken.mutable_frames(0)->mutable_columns()->mutable_keys()->Clear();
  engine_->OnMessage(kR, broken);
  EXPECT_EQ(Held(kA), 1u);
  EXPECT_EQ(Stats(kR).rejected, 1u);
  EXPECT_FALSE(Stats(kR).suspect);
  // Columns that decode to other bytes than the origin's: its signature refuses them.
  PeerMessage altered = by_column(A(2));
  altered.mutable_frames(0)->mutable_columns()->set_keys(0, "autre");
  engine_->OnMessage(kR, altered);
  EXPECT_EQ(Held(kA), 1u);
  EXPECT_EQ(Stats(kR).unverified, 1u);
  EXPECT_TRUE(Stats(kR).suspect);
  engine_->OnMessage(kR, by_column(A(2)));
  EXPECT_EQ(Held(kA), 2u);
}

}  // namespace
}  // namespace interco::replication
