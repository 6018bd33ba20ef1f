// The engine against a hostile relay: every batch must carry its origin's signature, a
// relay can neither forge, alter, replay nor reorder an origin's history, and an origin
// that signs two histories is frozen with proof. Uses the simulator's store and its
// deterministic signer (the node's Ed25519 path is tested in tests/node/trust_test.cc).
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "replication/change_log.h"
#include "replication/exclusion.h"
#include "replication/hlc.h"
#include "replication/policy.h"
#include "replication/ids.h"
#include "replication/replicator.h"
#include "tests/replication/engine_fixture.h"
#include "tests/sim/sim_store.h"

namespace interco::replication {
namespace {

class ReplicatorTrustTest : public EngineTest {};

TEST_F(ReplicatorTrustTest, AppliesABatchSignedByItsOriginAndRelayed) {
  const Batch b1 = a_.Write("piscine", "Piscine municipale");
  Connect(kR);
  SendCertificate(kR, kA);
  SendBatch(kR, b1);
  EXPECT_EQ(Held(kA), 1u);
  EXPECT_EQ(Stats(kR).batches_applied, 1u);
  EXPECT_EQ(Stats(kR).unverified, 0u);
}

TEST_F(ReplicatorTrustTest, SendsTheCertificateBeforeTheFirstBatchItSigns) {
  const Batch b1 = a_.Write("piscine", "Piscine municipale");
  Connect(kR);
  SendCertificate(kR, kA);
  SendBatch(kR, b1);
  Connect(kC);
  const Batch b2 = a_.Write("gymnase", "Gymnase");
  SendBatch(kR, b2);
  // The first frame to C carries A's certificate; the next one does not repeat it.
  std::vector<int> certs;
  for (const auto& [to, m] : transport_.sent) {
    if (to != kC) continue;
    for (const auto& frame : m.frames()) certs.push_back(frame.certificates().der_size());
  }
  ASSERT_EQ(certs.size(), 2u);
  EXPECT_EQ(certs[0], 1);
  EXPECT_EQ(certs[1], 0);
}

TEST_F(ReplicatorTrustTest, BatchOfAnUnknownCertificateIsRefusedAndTheSenderAskedToRewind) {
  const Batch b1 = a_.Write("piscine", "Piscine municipale");
  Connect(kR);
  transport_.sent.clear();
  SendBatch(kR, b1);
  EXPECT_EQ(Held(kA), 0u);
  EXPECT_EQ(Stats(kR).unverified, 1u);
  ASSERT_FALSE(transport_.sent.empty());
  EXPECT_TRUE(transport_.sent.back().second.has_hello()) << "no restated position";
}

TEST_F(ReplicatorTrustTest, ForgedSignatureIsRefusedAndDoesNotHideTheGenuineBatch) {
  const Batch b1 = a_.Write("piscine", "Piscine municipale");
  Connect(kR);
  SendCertificate(kR, kA);
  Batch forged = b1;
  forged.set_signature(std::string(32, 'x'));
  SendBatch(kR, forged);
  EXPECT_EQ(Held(kA), 0u);
  EXPECT_EQ(Stats(kR).unverified, 1u);
  // The forgery did not make the node believe the relay holds the batch.
  Connect(kC);
  SendCertificate(kC, kA);
  SendBatch(kC, b1);
  EXPECT_EQ(Held(kA), 1u);
}

TEST_F(ReplicatorTrustTest, AlteredHeaderIsRefused) {
  const Batch b1 = a_.Write("piscine", "Piscine municipale");
  Connect(kR);
  SendCertificate(kR, kA);
  BatchHeader h;
  ASSERT_TRUE(h.ParseFromString(b1.header()));
  h.set_max_hlc(h.max_hlc() + 1);  // e.g. to win LWW races
  Batch altered = b1;
  altered.set_header(h.SerializeAsString());
  SendBatch(kR, altered);
  EXPECT_EQ(Held(kA), 0u);
  EXPECT_EQ(Stats(kR).unverified, 1u);
}

TEST_F(ReplicatorTrustTest, AlteredChangeIsRefused) {
  const Batch b1 = a_.Write("piscine", "Piscine municipale");
  Connect(kR);
  SendCertificate(kR, kA);
  interco::replication::v1::Change c;
  ASSERT_TRUE(c.ParseFromString(b1.changes(0)));
  c.mutable_delta()->mutable_fields(0)->mutable_value()->set_string_value("Piscine fermée");
  Batch altered = b1;
  altered.set_changes(0, c.SerializeAsString());
  SendBatch(kR, altered);
  EXPECT_EQ(Held(kA), 0u);
  EXPECT_EQ(Stats(kR).rejected, 1u);  // the signed body hash no longer matches
  EXPECT_TRUE(v_.store.Records(kStream).empty());
}

TEST_F(ReplicatorTrustTest, RelayCannotSignForAnotherOrigin) {
  Authority r(kR, clock_, hasher_, schema_);
  a_.Write("piscine", "Piscine municipale");
  // The relay writes a batch that claims to come from A, signed with its own key.
  BatchParams p;
  p.origin = kA;
  p.epoch = 1;
  p.stream = kStream;
  p.first_seq = 1;
  p.max_hlc = 1;
  interco::replication::v1::Change c;
  c.set_key("mairie");
  c.mutable_delta()->set_causal_length(1);
  const Batch fake = *BuildBatch(p, {c.SerializeAsString()}, hasher_, &r.signer, nullptr);
  Connect(kR);
  SendCertificate(kR, kR);
  SendBatch(kR, fake);
  EXPECT_EQ(Held(kA), 0u);
  EXPECT_EQ(Stats(kR).unverified, 1u);
}

TEST_F(ReplicatorTrustTest, UnsignedBatchWithoutItsSignedRunEndIsRefused) {
  a_.Write("piscine", "Piscine municipale");
  BatchParams p;
  p.origin = kA;
  p.epoch = 1;
  p.stream = kStream;
  p.first_seq = 1;
  p.max_hlc = 1;
  interco::replication::v1::Change c;
  c.set_key("mairie");
  c.mutable_delta()->set_causal_length(1);
  Connect(kR);
  SendBatch(kR, *BuildBatch(p, {c.SerializeAsString()}, hasher_, nullptr, nullptr));
  EXPECT_EQ(Held(kA), 0u);
  EXPECT_EQ(Stats(kR).rejected, 1u);  // a frame must end with a signed batch
}

TEST_F(ReplicatorTrustTest, ReplayedBatchIsNotAppliedTwice) {
  const Batch b1 = a_.Write("piscine", "Piscine municipale");
  int applies = 0;
  v_.store.on_apply = [&](const std::string&, OriginKey, uint64_t, uint32_t) { ++applies; };
  Connect(kR);
  SendCertificate(kR, kA);
  SendBatch(kR, b1);
  SendBatch(kR, b1);
  clock_.Advance(60'000);
  SendBatch(kR, b1);
  EXPECT_EQ(applies, 1);
  EXPECT_EQ(Stats(kR).duplicates, 2u);
  EXPECT_EQ(Stats(kR).forks, 0u);
  EXPECT_TRUE(engine_->FrozenOrigins().empty());
}

TEST_F(ReplicatorTrustTest, ReorderedBatchesApplyInChainOrder) {
  const Batch b1 = a_.Write("piscine", "Piscine municipale");
  const Batch b2 = a_.Write("piscine", "Piscine intercommunale");
  const Batch b3 = a_.Write("gymnase", "Gymnase");
  Connect(kR);
  SendCertificate(kR, kA);
  SendBatch(kR, b3);
  SendBatch(kR, b2);
  EXPECT_EQ(Held(kA), 0u);
  SendBatch(kR, b1);
  EXPECT_EQ(Held(kA), 3u);
  EXPECT_EQ(v_.store.Records(kStream).size(), 2u);
}

TEST_F(ReplicatorTrustTest, EquivocationFreezesTheOriginWithProofAndStopsItsSpread) {
  // Two histories signed with A's key: A, and a copy of A (same key) restored from an old
  // backup that wrote something else at the same position.
  const Batch b1 = a_.Write("piscine", "Piscine municipale");
  Authority a_restored(kA, clock_, hasher_, schema_);
  const Batch b1_other = a_restored.Write("piscine", "Piscine fermée");
  ASSERT_NE(b1.header(), b1_other.header());

  Connect(kR);
  SendCertificate(kR, kA);
  SendBatch(kR, b1);
  ASSERT_EQ(Held(kA), 1u);
  Connect(kC);
  const int sent_before = BatchesSentTo(kC, kA);
  SendBatch(kR, b1_other);

  EXPECT_EQ(Stats(kR).forks, 1u);
  EXPECT_TRUE(engine_->FrozenOrigins().contains(kA));
  ASSERT_EQ(v_.store.forks().size(), 1u);
  const auto& proof = v_.store.forks()[0];
  EXPECT_EQ(proof.origin(), kA);
  EXPECT_EQ(proof.received_from(), kR);
  EXPECT_EQ(proof.held().header(), b1.header());
  EXPECT_EQ(proof.received().header(), b1_other.header());
  // Both halves of the proof verify with A's certificate.
  EXPECT_TRUE(VerifyBatch(*DecodeBatch(proof.held(), hasher_), v_.trust).ok());
  EXPECT_TRUE(VerifyBatch(*DecodeBatch(proof.received(), hasher_), v_.trust).ok());

  // Later batches of A are dropped, and nothing more of A is forwarded.
  const Batch b2 = a_.Write("gymnase", "Gymnase");
  SendBatch(kR, b2);
  EXPECT_EQ(Held(kA), 1u);
  EXPECT_EQ(Stats(kR).frozen, 1u);
  engine_->Tick();
  EXPECT_EQ(BatchesSentTo(kC, kA), sent_before);

  // The freeze survives a restart of the engine (it is in the store).
  StartEngine();
  EXPECT_TRUE(engine_->FrozenOrigins().contains(kA));
}

TEST_F(ReplicatorTrustTest, ChainThatContinuesAnotherHistoryFreezesTheOrigin) {
  const Batch b1 = a_.Write("piscine", "Piscine municipale");
  Authority a_restored(kA, clock_, hasher_, schema_);
  a_restored.Write("piscine", "Piscine fermée");
  const Batch b2_other = a_restored.Write("gymnase", "Gymnase");
  Connect(kR);
  SendCertificate(kR, kA);
  SendBatch(kR, b1);
  SendBatch(kR, b2_other);  // position 2, chained to the other history's batch 1
  EXPECT_EQ(Held(kA), 1u);
  EXPECT_EQ(Stats(kR).forks, 1u);
  EXPECT_TRUE(engine_->FrozenOrigins().contains(kA));
  ASSERT_EQ(v_.store.forks().size(), 1u);
  EXPECT_EQ(v_.store.forks()[0].held().header(), b1.header());
}

TEST_F(ReplicatorTrustTest, ForgedConflictingBatchDoesNotFreezeAnHonestOrigin) {
  const Batch b1 = a_.Write("piscine", "Piscine municipale");
  Connect(kR);
  SendCertificate(kR, kA);
  SendBatch(kR, b1);
  // The relay fabricates a different batch 1 of A (it cannot sign it as A).
  Authority a_fake(kA, clock_, hasher_, schema_);
  Batch fake = a_fake.Write("piscine", "Piscine fermée");
  fake.set_signature(std::string(64, 'f'));
  SendBatch(kR, fake);
  EXPECT_EQ(Stats(kR).unverified, 1u);
  EXPECT_EQ(Stats(kR).forks, 0u);
  EXPECT_TRUE(engine_->FrozenOrigins().empty());
}

TEST_F(ReplicatorTrustTest, ChangesOfAnOriginThatMayNotWriteAreRefusedAndNotForwarded) {
  v_.store.writers = [](uint32_t origin) { return origin == kR; };  // A is not a writer
  const Batch b1 = a_.Write("piscine", "Piscine municipale");
  Connect(kR);
  Connect(kC);
  SendCertificate(kR, kA);
  SendBatch(kR, b1);
  EXPECT_EQ(Held(kA), 0u);
  EXPECT_EQ(Stats(kR).unauthorized, 1u);
  engine_->Tick();
  EXPECT_EQ(BatchesSentTo(kC, kA), 0);
}

TEST_F(ReplicatorTrustTest, AStreamGoesOnlyToPeersThatMayReadIt) {
  v_.store.readers = [](uint32_t node) { return node == kR; };  // C may not read
  const Batch b1 = a_.Write("piscine", "Piscine municipale");
  Connect(kR);
  SendCertificate(kR, kA);
  SendBatch(kR, b1);
  ASSERT_EQ(Held(kA), 1u);
  Connect(kC);
  engine_->Tick();
  EXPECT_EQ(BatchesSentTo(kC, kA), 0);
  EXPECT_TRUE(Stats(kC).missing_by_origin.empty()) << "a non-reader is not owed anything";
}

TEST(ReplicatorStreamsTest, ARegistryCreatedWhileConnectedIsAnnouncedToEveryPeer) {
  FixedClock clock;
  SimHasher hasher;
  const RegistrySchema schema = *RegistrySchema::Compile(TestSchema());
  SimTrust trust(hasher);
  SimTrust::OriginSigner signer(trust, kV);
  SimStore store(kV, {}, clock, hasher, &signer, schema);
  CaptureTransport transport;
  ReplicatorOptions o;
  o.self = kV;
  Replicator engine(o, clock, transport, store, hasher, trust, signer);
  // Hellos that named the stream, per peer.
  auto told = [&](uint32_t peer) {
    int n = 0;
    for (const auto& [to, m] : transport.sent) {
      if (to != peer || !m.has_hello()) continue;
      for (const auto& sp : m.hello().streams()) n += sp.stream() == kStream;
    }
    return n;
  };
  engine.OnConnected(kR);             // told of no stream
  store.AddStream(kStream);           // a registry is created
  engine.OnConnected(kC);             // a new session's Hello names it at once
  EXPECT_EQ(told(kC), 1);
  EXPECT_EQ(told(kR), 0);
  engine.Tick();                      // and the older session is told too
  EXPECT_EQ(told(kR), 1);
}

// Versioned policies: A owns the registry; C asks to write; V (under test) judges.
class PolicyVersionsTest : public ReplicatorTrustTest {
 protected:
  PolicyVersionsTest() : c_(kC, clock_, hasher_, schema_) {
    for (Authority* n : {&a_, &c_, &v_}) n->store.DeclarePolicy(kStream, kA, {});
    c_.trust.AddCertificate(SimTrust::CertificateOf(kA)).IgnoreError();
  }

  static interco::v1::Policy WritersC() {
    interco::v1::Policy p;
    p.mutable_writers()->add_authorities(OriginToSiren(kC));
    return p;
  }

  // The owner sets a policy; returns its batch.
  Batch SetPolicy(const interco::v1::Policy& p) {
    a_.store.SetPolicy(kStream, p);
    return LastBatch(a_);
  }
  // A batch of C's, signed by C, of one change.
  Batch SignedByC(const Change& c, uint64_t first_seq, std::string prev_hash, uint64_t max_hlc,
                  uint64_t policy_version) {
    BatchParams params;
    params.origin = kC;
    params.epoch = 1;
    params.stream = kStream;
    params.first_seq = first_seq;
    params.prev_hash = std::move(prev_hash);
    params.max_hlc = max_hlc;
    params.policy_version = policy_version;
    return *BuildBatch(params, {c.SerializeAsString()}, hasher_, &c_.signer, nullptr);
  }
  static Batch LastBatch(Authority& n) {
    const uint64_t seq = n.store.Position(kStream)->at(OriginKey{n.origin, 1}).seq;
    return (*n.store.ReadBatches(kStream, OriginKey{n.origin, 1}, seq - 1, 1)).front();
  }
  // `to` applies a batch directly (as its own engine would).
  void Deliver(Authority& to, const Batch& b) {
    ASSERT_TRUE(to.store.ApplyBatch(kStream, *DecodeBatch(b, hasher_)).ok());
  }

  Authority c_;
};

TEST_F(PolicyVersionsTest, AnAddedWritersBatchWaitsForThePolicyChangeThenApplies) {
  const Batch policy = SetPolicy(WritersC());
  Deliver(c_, policy);
  const Batch c1 = c_.Write("mairie", "Mairie annexe");
  BatchHeader h;
  ASSERT_TRUE(h.ParseFromString(c1.header()));
  ASSERT_NE(h.policy_version(), 0u) << "C wrote under the version that added it";

  // C's batch reaches V before the owner's change: held back, neither refused nor applied.
  Connect(kC);
  SendCertificate(kC, kC);
  SendBatch(kC, c1);
  EXPECT_EQ(Held(kC), 0u);
  EXPECT_EQ(Stats(kC).policy_waits, 1u);
  EXPECT_EQ(Stats(kC).unauthorized, 0u);

  // The owner's change arrives: C's held batch is taken at once, not waiting to be sent
  // again.
  Connect(kA);
  SendCertificate(kA, kA);
  SendBatch(kA, policy);
  ASSERT_EQ(Held(kA), 1u);
  EXPECT_EQ(v_.store.Policies(kStream)->current_version(), h.policy_version());
  EXPECT_EQ(Held(kC), 1u);
  EXPECT_EQ(v_.store.Records(kStream).count("mairie"), 1u);
}

// A run whose first batch waits for the policy version: the rest of the run is dropped
// meanwhile (only the origin's next batch is held), and asked for again as soon as the
// held one applies, not at the sender's ack timeout.
TEST_F(PolicyVersionsTest, TheRestOfARunWaitingForItsPolicyIsAskedForOnceItApplies) {
  const Batch policy = SetPolicy(WritersC());
  Deliver(c_, policy);
  c_.store.run_batches_max = 3;
  std::vector<Batch> run = {c_.Write("mairie", "Mairie"), c_.Write("ecole", "École"),
                            c_.Write("stade", "Stade")};
  ASSERT_TRUE(run[0].signature().empty());
  ASSERT_FALSE(run[2].signature().empty());
  Connect(kC);
  SendCertificate(kC, kC);
  SendRun(kC, run);
  EXPECT_EQ(Held(kC), 0u);
  transport_.sent.clear();

  Connect(kA);
  SendCertificate(kA, kA);
  SendBatch(kA, policy);
  EXPECT_EQ(Held(kC), 1u) << "the held batch applies with the policy";
  bool asked = false;
  for (const auto& [to, m] : transport_.sent) asked |= to == kC && m.has_hello();
  EXPECT_TRUE(asked) << "C is not told where V stands";
  // C resends from there: the rest of its run.
  SendRun(kC, {run[1], run[2]});
  EXPECT_EQ(Held(kC), 3u);
}

// The same with batches sent in frames of their own: the first is held, the next ones
// dropped, and asked for once it applies.
TEST_F(PolicyVersionsTest, LaterBatchesWaitingForTheirPolicyAreAskedForOnceTheFirstApplies) {
  const Batch policy = SetPolicy(WritersC());
  Deliver(c_, policy);
  const std::vector<Batch> batches = {c_.Write("mairie", "Mairie"), c_.Write("ecole", "École")};
  Connect(kC);
  SendCertificate(kC, kC);
  for (const Batch& b : batches) SendBatch(kC, b);
  EXPECT_EQ(Held(kC), 0u);
  engine_->Tick();  // a restatement of V's position now would not delay the ask below
  transport_.sent.clear();

  Connect(kA);
  SendCertificate(kA, kA);
  SendBatch(kA, policy);
  EXPECT_EQ(Held(kC), 1u);
  bool asked = false;
  for (const auto& [to, m] : transport_.sent) asked |= to == kC && m.has_hello();
  EXPECT_TRUE(asked) << "C is not told where V stands";
  SendBatch(kC, batches[1]);
  EXPECT_EQ(Held(kC), 2u);
}

TEST_F(PolicyVersionsTest, ARemovedWriterKeepsWhatItWroteBeforeSeeingTheRemovalAndNothingAfter) {
  const Batch added = SetPolicy(WritersC());
  Deliver(c_, added);
  Deliver(v_, added);
  const Batch removed = SetPolicy(interco::v1::Policy());  // owner only again
  Deliver(v_, removed);

  // Concurrent with the removal (C had not seen it): kept, though it arrives after.
  const Batch concurrent = c_.Write("mairie", "Mairie annexe");
  Connect(kC);
  SendCertificate(kC, kC);
  SendBatch(kC, concurrent);
  EXPECT_EQ(Held(kC), 1u);

  // Once C has seen the removal, its node writes nothing more...
  Deliver(c_, removed);
  c_.Write("ecole", "École");  // refused locally: nothing committed
  EXPECT_EQ(c_.store.Position(kStream)->at(OriginKey{kC, 1}).seq, 1u);
  // ...and a batch it signs claiming that version anyway is refused everywhere.
  Change c;
  c.set_key("ecole");
  *c.mutable_delta() = v_.store.Records(kStream).at("mairie");
  const Batch forged = SignedByC(c, 2, hasher_.Sha256(concurrent.header()),
                                 HybridLogicalClock::Pack(clock_.NowMillis() + 10, 0),
                                 v_.store.Policies(kStream)->current_version());
  SendBatch(kC, forged);
  EXPECT_EQ(Held(kC), 1u);
  EXPECT_EQ(Stats(kC).unauthorized, 1u);
}

TEST_F(PolicyVersionsTest, AReaderRemovedIsStillSentTheChangeThatRemovesItAndNothingAfter) {
  const Batch added = SetPolicy(WritersC());               // C writes, and so reads
  const Batch removed = SetPolicy(interco::v1::Policy());  // owner only: C neither
  const Batch later = a_.Write("mairie", "Mairie");
  for (const Batch* b : {&added, &removed, &later}) Deliver(v_, *b);
  ASSERT_FALSE(v_.store.Policies(kStream)->Current().MayRead(kC));
  Connect(kC);
  engine_->Tick();
  EXPECT_EQ(BatchesSentTo(kC, kA), 2) << "the grant and the removal, not what came after";
}

TEST_F(PolicyVersionsTest, APolicyChangeByAnyoneButTheOwnerIsRefusedAndNotForwarded) {
  Deliver(v_, SetPolicy(WritersC()));
  Deliver(c_, LastBatch(a_));
  // C, a writer, signs a policy change of its own.
  Change c;
  *c.mutable_policy()->mutable_policy() = WritersC();
  c.mutable_policy()->mutable_policy()->mutable_writers()->set_all_authorities(true);
  const uint64_t hlc = HybridLogicalClock::Pack(clock_.NowMillis() + 10, 0);
  c.mutable_policy()->set_version(hlc);
  const Batch grab = SignedByC(c, 1, "", hlc, c_.store.Policies(kStream)->current_version());
  Connect(kC);
  Connect(kR);
  SendCertificate(kC, kC);
  SendBatch(kC, grab);
  EXPECT_EQ(Held(kC), 0u);
  EXPECT_EQ(Stats(kC).unauthorized, 1u);
  EXPECT_FALSE(v_.store.Policies(kStream)->Current().MayWrite(kR));
  engine_->Tick();
  EXPECT_EQ(BatchesSentTo(kR, kC), 0);
}

// A batch kept for a gap was authorized when it came; a collection applied before the gap
// fills may have left its origin out since. It is judged again when it is taken: refused
// as left out (and counted so), not handed to the store as if it were still authorized.
TEST_F(PolicyVersionsTest, ABatchKeptForAGapIsJudgedAgainAfterACollectionLeftItsOriginOut) {
  const Batch added = SetPolicy(WritersC());
  Deliver(c_, added);
  const std::vector<Batch> c = {c_.Write("mairie", "Mairie"), c_.Write("ecole", "École"),
                                c_.Write("stade", "Stade")};
  // The owner holds C's first two batches, deletes a record of its own, and collects its
  // tombstone leaving C out at its second batch (absent since, say).
  Deliver(a_, c[0]);
  Deliver(a_, c[1]);
  const Batch created = a_.Write("piscine", "Piscine");
  LocalWrite del;
  del.kind = LocalWrite::Kind::kDelete;
  a_.store.Commit(kStream, {{"piscine", del}});
  const Batch deleted = LastBatch(a_);
  CollectionPlan plan;
  plan.frontier[OriginKey{kA, 1}] = a_.store.Position(kStream)->at(OriginKey{kA, 1});
  plan.members = {kA, kC, kV};
  std::sort(plan.members.begin(), plan.members.end());
  plan.excluded = {kC};
  plan.cuts[OriginKey{kC, 1}] = a_.store.Position(kStream)->at(OriginKey{kC, 1});
  ASSERT_TRUE(*a_.store.Collect(kStream, plan));
  const Batch collection = LastBatch(a_);
  ASSERT_EQ(Held(kC), 0u);

  // V takes the policy that lets C write, C's first batch, then its third (kept for the
  // gap: authorized then).
  Connect(kA);
  Connect(kC);
  SendCertificate(kA, kA);
  SendBatch(kA, added);
  SendCertificate(kC, kC);
  SendBatch(kC, c[0]);
  SendBatch(kC, c[2]);
  ASSERT_EQ(Held(kC), 1u);
  ASSERT_EQ(Stats(kC).gaps, 1u);
  // The owner's next changes, the collection last, reach V before the gap fills.
  for (const Batch* b : {&created, &deleted, &collection}) SendBatch(kA, *b);
  ASSERT_EQ(Held(kA), a_.store.Position(kStream)->at(OriginKey{kA, 1}).seq);
  BatchHeader third;
  ASSERT_TRUE(third.ParseFromString(c[2].header()));
  ASSERT_FALSE(v_.store.ExclusionsOf(kStream).Judge(third).ok()) << "C was not left out";

  // C's second batch is at the cut: taken. The third, beyond it, is refused as left out.
  SendBatch(kC, c[1]);
  EXPECT_EQ(Held(kC), 2u);
  EXPECT_EQ(Stats(kC).excluded, 1u);
  EXPECT_EQ(Stats(kC).rejected, 0u) << "the kept batch went to the store unjudged";
  EXPECT_EQ(v_.store.Records(kStream).count("stade"), 0u);
}

// One signature per run: an origin under load signs the last batch of a run, whose
// signature covers the batches before it through their hash chain.
class RunTest : public ReplicatorTrustTest {
 protected:
  // `n` writes of `who` left unsigned, then its tail signed: one run.
  std::vector<Batch> Run(Authority& who, int n, const std::string& prefix,
                         size_t run_batches_max = limits::kRunBatchesMax) {
    who.store.run_batches_max = run_batches_max;
    const uint64_t before = who.store.Position(kStream)->operator[](OriginKey{who.origin, 1}).seq;
    for (int i = 0; i < n; ++i) who.Write(absl::StrCat(prefix, i), absl::StrCat("valeur ", i));
    who.store.SignTails();
    return *who.store.ReadBatches(kStream, OriginKey{who.origin, 1}, before, 100);
  }
  void ExpectRefusedWhole(std::vector<Batch> run, const std::string& what) {
    const PeerStats before = Stats(kR);
    SendRun(kR, run);
    EXPECT_EQ(Held(kA), 0u) << what;
    EXPECT_EQ(Stats(kR).rejected + Stats(kR).unverified, before.rejected + before.unverified + 1)
        << what;
  }
};

TEST_F(RunTest, ARunIsAppliedWholeWithOneSignatureAndRelayedAsOneFrame) {
  const std::vector<Batch> run = Run(a_, 5, "r");
  ASSERT_EQ(run.size(), 5u);
  for (size_t i = 0; i < run.size(); ++i) EXPECT_EQ(run[i].signature().empty(), i + 1 < run.size());
  Connect(kR);
  Connect(kC);
  SendCertificate(kR, kA);
  SendRun(kR, run);
  EXPECT_EQ(Held(kA), 5u);
  EXPECT_EQ(v_.store.Records(kStream).size(), 5u);
  EXPECT_EQ(Stats(kR).batches_applied, 5u);
  // Relayed at once (C takes the stream from us) and unchanged, as one frame: the run and
  // its one signature.
  int frames = 0;
  for (const auto& [to, m] : transport_.sent) {
    if (to != kC) continue;
    for (const auto& frame : m.frames()) {
      ++frames;
      ASSERT_EQ(frame.batches_size(), 5);
      for (int i = 0; i < 5; ++i) {
        EXPECT_EQ(frame.batches(i).SerializeAsString(), run[static_cast<size_t>(i)].SerializeAsString());
      }
    }
  }
  EXPECT_EQ(frames, 1);
  // The same run again (a rewind, another relay): recognised, not verified nor applied twice.
  SendRun(kR, run);
  EXPECT_EQ(Stats(kR).duplicates, 5u);
  EXPECT_EQ(Stats(kR).batches_applied, 5u);
}

TEST_F(RunTest, ARelayCannotAlterTruncateReorderOrExtendARun) {
  const std::vector<Batch> run = Run(a_, 4, "r");
  Connect(kR);
  SendCertificate(kR, kA);
  {
    auto bad = run;  // an unsigned batch's change altered
    bad[1].mutable_changes(0)->back() ^= 1;
    ExpectRefusedWhole(bad, "change of an unsigned batch");
  }
  {
    auto bad = run;  // an unsigned batch's header altered (a later stamp, to win races)
    BatchHeader h;
    h.ParseFromString(bad[1].header());
    h.set_max_hlc(h.max_hlc() + 1);
    bad[1].set_header(h.SerializeAsString());
    ExpectRefusedWhole(bad, "header of an unsigned batch");
  }
  {
    auto bad = run;  // the signed end dropped
    bad.pop_back();
    ExpectRefusedWhole(bad, "run without its signed end");
  }
  {
    auto bad = run;  // reordered
    std::swap(bad[0], bad[1]);
    ExpectRefusedWhole(bad, "reordered run");
  }
  {
    auto bad = run;  // an unsigned batch of the relay's making spliced in
    Authority a_fake(kA, clock_, hasher_, schema_);
    a_fake.store.run_batches_max = limits::kRunBatchesMax;
    bad.insert(bad.begin() + 2, a_fake.Write("x", "forgé"));
    ExpectRefusedWhole(bad, "spliced batch");
  }
  {
    auto bad = run;  // the end's signature moved onto an unsigned batch
    bad[2].set_signature(bad.back().signature());
    bad[2].set_signer(bad.back().signer());
    ExpectRefusedWhole(bad, "signature inside the run");
  }
  {
    auto bad = run;  // the end's signature altered
    bad.back().mutable_signature()->front() ^= 1;
    ExpectRefusedWhole(bad, "signature");
  }
  {
    // Longer than any origin makes (its signed end would be the 33rd batch).
    Authority a_long(kA, clock_, hasher_, schema_);
    const std::vector<Batch> big =
        Run(a_long, static_cast<int>(limits::kRunBatchesMax) + 1, "big", 1000);
    ASSERT_EQ(big.size(), limits::kRunBatchesMax + 1);
    ExpectRefusedWhole(big, "run too long");
  }
  {
    // Two runs made one, the first one's signature stripped: a receiver would hold a
    // longer unsigned stretch than its origin made, and could not pass it on.
    Authority a_two(kA, clock_, hasher_, schema_);
    std::vector<Batch> both = Run(a_two, 3, "x");
    const std::vector<Batch> second = Run(a_two, 3, "y");
    both.back().clear_signature();
    both.back().clear_signer();
    both.insert(both.end(), second.begin(), second.end());
    ExpectRefusedWhole(both, "signature stripped");
  }
  {
    // Signed by the origin's key itself, but an unsigned batch is stamped after the signed
    // end (and so after its signing time): an origin's clock never goes back along its
    // chain, so a stolen key cannot slip late changes in before a backdated signature.
    auto bad = run;
    BatchHeader h;
    h.ParseFromString(bad[1].header());
    BatchHeader end;
    end.ParseFromString(bad.back().header());
    h.set_max_hlc(end.max_hlc() + (uint64_t{1000} << 16));
    bad[1].set_header(h.SerializeAsString());
    for (size_t i = 2; i < bad.size(); ++i) {
      BatchHeader next;
      next.ParseFromString(bad[i].header());
      next.set_prev_hash(hasher_.Sha256(bad[i - 1].header()));
      bad[i].set_header(next.SerializeAsString());
    }
    bad.back() = Resigned(bad.back(), a_.signer);
    ExpectRefusedWhole(bad, "clock going back along the chain");
  }
  // The genuine run still goes through, after all that.
  SendRun(kR, run);
  EXPECT_EQ(Held(kA), 4u);
}

TEST_F(RunTest, AForkInsideARunIsProvenThroughBothChains) {
  const std::vector<Batch> run = Run(a_, 3, "r");
  Authority a_restored(kA, clock_, hasher_, schema_);
  const std::vector<Batch> other = Run(a_restored, 2, "autre");
  ASSERT_NE(run[0].header(), other[0].header());
  Connect(kR);
  SendCertificate(kR, kA);
  SendRun(kR, run);
  ASSERT_EQ(Held(kA), 3u);
  SendRun(kR, other);
  EXPECT_EQ(Stats(kR).forks, 1u);
  EXPECT_TRUE(engine_->FrozenOrigins().contains(kA));
  ASSERT_EQ(v_.store.forks().size(), 1u);
  const auto& proof = v_.store.forks()[0];
  EXPECT_EQ(proof.held().header(), run[0].header());
  EXPECT_EQ(proof.received().header(), other[0].header());
  // Both unsigned batches are proven by their chains up to their signed ends.
  auto verify = [&](const Batch& b, const interco::replication::v1::ChainProof& chain) {
    std::vector<std::string> headers;
    for (const Batch& f : chain.following()) headers.push_back(f.header());
    const Batch& end = chain.following().empty() ? b : *chain.following().rbegin();
    return VerifyCovered(b.header(), headers, end.signer(), end.signature(), end.signed_at_ms(),
                         hasher_, v_.trust);
  };
  EXPECT_EQ(proof.held_proof().following_size(), 2);
  EXPECT_EQ(proof.received_proof().following_size(), 1);
  EXPECT_TRUE(verify(proof.held(), proof.held_proof()).ok());
  EXPECT_TRUE(verify(proof.received(), proof.received_proof()).ok());
}

TEST_F(RunTest, AnOwnUnsignedTailIsSentOnlyOnceSigned) {
  Connect(kC);
  v_.store.run_batches_max = limits::kRunBatchesMax;
  for (int i = 0; i < 3; ++i) {
    LocalWrite w;
    w.kind = LocalWrite::Kind::kUpdate;
    w.allow_missing = true;
    w.fields["nom"].set_string_value(absl::StrCat("valeur ", i));
    v_.store.Commit(kStream, {{absl::StrCat("k", i), w}});
    engine_->OnLocalCommit();
  }
  EXPECT_EQ(BatchesSentTo(kC, kV), 0) << "a run went out before its signature";
  ASSERT_TRUE(v_.store.SignTails());
  engine_->OnLocalCommit();
  EXPECT_EQ(BatchesSentTo(kC, kV), 3);
}

TEST_F(ReplicatorTrustTest, MalformedMessagesAreRefusedAndTheSessionGoesOn) {
  Connect(kR);
  engine_->OnMessage(kR, PeerMessage());  // empty
  PeerMessage garbage;
  garbage.add_frames()->set_stream(kStream);
  garbage.mutable_frames(0)->add_batches()->set_header("\xff\xff\xff");
  engine_->OnMessage(kR, garbage);
  garbage.mutable_frames(0)->mutable_certificates()->add_der("not a certificate");
  engine_->OnMessage(kR, garbage);
  EXPECT_EQ(Stats(kR).rejected, 4u);  // the empty message, two bad batches, the certificate
  // Refused, but not a reason to distrust the relay (a frame of a later encoder, say): only
  // a signature that does not verify is.
  EXPECT_FALSE(Stats(kR).suspect);
  const Batch b1 = a_.Write("piscine", "Piscine municipale");
  SendCertificate(kR, kA);
  SendBatch(kR, b1);
  EXPECT_EQ(Held(kA), 1u);
}

}  // namespace
}  // namespace interco::replication
