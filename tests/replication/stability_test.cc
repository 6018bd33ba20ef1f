// Causal stability: members' reports, when a report is taken, and the stable frontier;
// then the engine learning reports from its peers and relaying them in its status.
#include <gtest/gtest.h>

#include <algorithm>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "replication/base/limits.h"
#include "replication/stability.h"
#include "tests/replication/engine_fixture.h"

namespace interco::replication {
namespace {

const uint32_t kX = *SirenToOrigin("200066231");  // a member no session reaches

// A version vector of epoch-1 origins: {{origin, seq}, ...}.
VersionVector Vv(std::initializer_list<std::pair<uint32_t, uint64_t>> entries) {
  VersionVector vv;
  for (const auto& [origin, seq] : entries) vv[OriginKey{origin, 1}].seq = seq;
  return vv;
}

// The frontier as {{origin, seq}, ...}, for comparisons.
std::vector<std::pair<uint32_t, uint64_t>> Flat(const VersionVector& vv) {
  std::vector<std::pair<uint32_t, uint64_t>> out;
  for (const auto& [key, pos] : vv) out.emplace_back(key.origin, pos.seq);
  return out;
}
using Flattened = std::vector<std::pair<uint32_t, uint64_t>>;

// Members' signatures of their reports, and a verifier that knows their certificates.
class Signatures {
 public:
  ReportSignature Of(uint32_t member, uint32_t epoch, const VersionVector& held,
                     int64_t at_ms = 1'790'000'000'000) {
    SimTrust::OriginSigner signer(trust_, member);
    absl::StatusOr<ReportSignature> s = SignReport(signer, at_ms, kStream, member, epoch, held);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : ReportSignature();
  }
  Verifier& verifier() { return trust_; }

 private:
  SimHasher hasher_;
  SimTrust trust_{hasher_};
};

TEST(StabilityTest, TheFrontierIsWhatEveryMemberHolds) {
  Stability s(kV);
  const VersionVector ours = Vv({{kA, 5}, {kV, 3}});
  s.Report(kStream, kA, Vv({{kA, 5}, {kV, 3}}), ours);
  s.Report(kStream, kC, Vv({{kA, 2}, {kV, 3}}), ours);
  EXPECT_EQ(Flat(s.Frontier(kStream, ours)), (Flattened{{kA, 2}, {kV, 3}}));
  // What we hold bounds it too.
  EXPECT_EQ(Flat(s.Frontier(kStream, Vv({{kA, 1}, {kV, 3}}))), (Flattened{{kA, 1}, {kV, 3}}));
  const StabilitySummary summary = s.Summarize(kStream, ours);
  EXPECT_EQ(summary.members, 3u);
  EXPECT_EQ(summary.waiting, 0u);
  EXPECT_EQ(summary.unstable, 3u);  // A's 3, 4 and 5
  // Another stream knows nothing of these members: alone, we hold what is stable; with
  // A's changes and no report of A, nothing is.
  EXPECT_EQ(Flat(s.Frontier("autre", Vv({{kV, 3}}))), (Flattened{{kV, 3}}));
  EXPECT_TRUE(s.Frontier("autre", ours).empty());
}

TEST(StabilityTest, AMemberWithoutReportHoldsBackEverything) {
  Stability s(kV);
  // C wrote (its changes are here) but no report of it came: it may lack anything.
  const VersionVector ours = Vv({{kA, 5}, {kC, 1}});
  s.Report(kStream, kA, Vv({{kA, 5}, {kC, 1}}), ours);
  EXPECT_TRUE(s.Frontier(kStream, ours).empty());
  EXPECT_EQ(s.Summarize(kStream, ours).waiting, 1u);
  s.Report(kStream, kC, Vv({{kA, 4}, {kC, 1}}), ours);
  EXPECT_EQ(Flat(s.Frontier(kStream, ours)), (Flattened{{kA, 4}, {kC, 1}}));
  // A member that holds nothing holds the frontier at nothing.
  s.Report(kStream, kX, {}, ours);
  EXPECT_TRUE(s.Frontier(kStream, ours).empty());
  EXPECT_EQ(s.Summarize(kStream, ours).members, 4u);
}

TEST(StabilityTest, AReportIsTakenOnlyOnceTheMembersOwnChangesUpToItAreHere) {
  Stability s(kV);
  VersionVector ours = Vv({{kA, 5}, {kC, 2}});
  s.Report(kStream, kA, Vv({{kA, 5}, {kC, 4}}), ours);
  s.Report(kStream, kC, Vv({{kA, 5}, {kC, 4}}), ours);
  // C wrote 3 and 4 after holding A's 5: not here yet, so they may be concurrent with
  // nothing we know... but A's report is A's, and it is taken; C's is not: C's 3 and 4
  // could have been written before C held A's 3..5.
  EXPECT_TRUE(s.Frontier(kStream, ours).empty());
  EXPECT_EQ(s.Summarize(kStream, ours).waiting, 1u);
  ours = Vv({{kA, 5}, {kC, 4}});
  s.Take(kStream, ours);
  EXPECT_EQ(Flat(s.Frontier(kStream, ours)), (Flattened{{kA, 5}, {kC, 4}}));
  EXPECT_EQ(s.Summarize(kStream, ours).waiting, 0u);
}

TEST(StabilityTest, AnOlderReportIsTakenEvenIfANewerOneWaits) {
  Stability s(kV);
  const VersionVector ours = Vv({{kA, 5}, {kC, 2}});
  s.Report(kStream, kA, Vv({{kA, 5}, {kC, 2}}), ours);
  s.Report(kStream, kC, Vv({{kA, 3}, {kC, 2}}), ours);  // taken on arrival
  s.Report(kStream, kC, Vv({{kA, 5}, {kC, 4}}), ours);  // waits for C's 3 and 4
  EXPECT_EQ(Flat(s.Frontier(kStream, ours)), (Flattened{{kA, 3}, {kC, 2}}));
}

TEST(StabilityTest, ReportsMergeByMaximumWhateverTheirOrder) {
  const VersionVector ours = Vv({{kA, 9}});
  const std::vector<VersionVector> reports = {Vv({{kA, 4}}), Vv({{kA, 7}}), Vv({{kA, 2}})};
  std::vector<size_t> order = {0, 1, 2};
  do {
    Stability s(kV);
    s.Report(kStream, kA, Vv({{kA, 9}}), ours);
    for (size_t i : order) s.Report(kStream, kC, reports[i], ours);
    EXPECT_EQ(Flat(s.Frontier(kStream, ours)), (Flattened{{kA, 7}}));
  } while (std::next_permutation(order.begin(), order.end()));
}

TEST(StabilityTest, WritesTheSignedReportsThatGrewExceptTheReceiversOwn) {
  Signatures signatures;
  Stability s(kV);
  const VersionVector ours = Vv({{kA, 5}});
  auto report = [&](uint32_t member, const VersionVector& held) {
    const ReportSignature signature = signatures.Of(member, 1, held);
    s.Report(kStream, member, held, ours, 1, &signature);
  };
  report(kA, Vv({{kA, 5}}));
  report(kC, Vv({{kA, 1}}));
  v1::StreamReports all;
  s.Write(kStream, 0, kC, nullptr, all);
  ASSERT_EQ(all.members_size(), 1);  // A's; C knows its own best
  EXPECT_EQ(all.members(0).member(), kA);
  ASSERT_EQ(all.members(0).origins_size(), 1);
  EXPECT_EQ(all.members(0).origins(0).seq(), 5u);

  const uint64_t sent = s.version();
  report(kA, Vv({{kA, 4}}));  // older: nothing new
  v1::StreamReports none;
  s.Write(kStream, sent, kX, nullptr, none);
  EXPECT_EQ(none.members_size(), 0);
  report(kC, Vv({{kA, 3}}));
  v1::StreamReports grown;
  s.Write(kStream, sent, kX, nullptr, grown);
  ASSERT_EQ(grown.members_size(), 1);
  EXPECT_EQ(grown.members(0).member(), kC);

  // What a receiver reads back is the same report, with its member's signature.
  Stability r(kX);
  for (const v1::StreamReports* in : {&all, &grown}) {
    const Stability::Read read = r.Report(*in, ours, nullptr, signatures.verifier());
    EXPECT_EQ(read.refused + read.unverified, 0u);
  }
  r.Report(kStream, kV, Vv({{kA, 5}}), ours);
  EXPECT_EQ(Flat(r.Frontier(kStream, ours)), (Flattened{{kA, 3}}));

  // A report this node has only from its member's own word (its Hello) counts here but
  // is not relayed: nothing would show that the member said it.
  Stability h(kV);
  h.Report(kStream, kA, Vv({{kA, 5}}), ours);
  EXPECT_EQ(Flat(h.Frontier(kStream, ours)), (Flattened{{kA, 5}}));
  v1::StreamReports unsigned_reports;
  h.Write(kStream, 0, kX, nullptr, unsigned_reports);
  EXPECT_EQ(unsigned_reports.members_size(), 0);
}

// A member's position shrinks where a collection refuses batches it held (an excluded
// member's beyond its cut), so its signed reports need not be ordered: a relay keeps
// those no other covers, and a receiver merging them gets all that was signed.
TEST(StabilityTest, SignedReportsThatNoneCoversAreAllRelayed) {
  Signatures signatures;
  const VersionVector ours = Vv({{kA, 9}, {kX, 9}});
  Stability s(kV);
  int64_t at = 1'790'000'000'000;
  auto report = [&](const VersionVector& held) {
    const ReportSignature signature = signatures.Of(kC, 1, held, ++at);
    s.Report(kStream, kC, held, ours, 1, &signature);
  };
  auto relayed = [&] {
    v1::StreamReports out;
    s.Write(kStream, 0, kV, nullptr, out);
    std::vector<Flattened> all;
    for (const auto& r : out.members()) all.push_back(Flat(*ReadReport(r, nullptr)));
    std::sort(all.begin(), all.end());
    return all;
  };
  report(Vv({{kA, 5}, {kX, 2}}));
  report(Vv({{kA, 3}, {kX, 4}}));  // X's 4 and 5 refused and replayed away meanwhile
  EXPECT_EQ(relayed(), (std::vector<Flattened>{{{kA, 3}, {kX, 4}}, {{kA, 5}, {kX, 2}}}));
  report(Vv({{kA, 3}, {kX, 6}}));  // covers the second
  report(Vv({{kA, 2}, {kX, 1}}));  // covered: nothing new
  EXPECT_EQ(relayed(), (std::vector<Flattened>{{{kA, 3}, {kX, 6}}, {{kA, 5}, {kX, 2}}}));
  // A receiver takes all of it, as if merged by maximum.
  v1::StreamReports out;
  s.Write(kStream, 0, kV, nullptr, out);
  Stability r(kV);
  EXPECT_EQ(r.Report(out, ours, nullptr, signatures.verifier()).unverified, 0u);
  EXPECT_EQ(Flat(*r.Reported(kStream, kC)), (Flattened{{kA, 5}, {kX, 6}}));
  // However many such reports come, a relay keeps the latest few.
  for (uint64_t i = 1; i <= 6; ++i) report(Vv({{kA, 10 - i}, {kX, 10 + i}}));
  const std::vector<Flattened> kept = relayed();
  ASSERT_EQ(kept.size(), limits::kRelayedReportsPerMember);
  EXPECT_EQ(kept.front(), (Flattened{{kA, 4}, {kX, 16}}));  // the last one signed
}

TEST(StabilityTest, AReportIsTakenOnlyWithItsMembersSignatureOfWhatItSays) {
  Signatures signatures;
  const VersionVector ours = Vv({{kA, 5}});
  const VersionVector base = Vv({{kA, 3}});  // what the relay states it holds
  const ReportSignature c_holds_two = signatures.Of(kC, 1, Vv({{kA, 2}}));
  auto relayed = [&](const v1::MemberReport& report) {
    v1::StreamReports in;
    in.set_stream(kStream);
    *in.add_members() = report;
    return in;
  };
  // C's report, relative to the relay's position: read and verified.
  v1::MemberReport genuine;
  WriteReport(kC, 1, Vv({{kA, 2}}), &base, genuine, &c_holds_two);
  ASSERT_TRUE(genuine.relative());
  {
    Stability s(kV);
    const Stability::Read read = s.Report(relayed(genuine), ours, &base, signatures.verifier());
    EXPECT_EQ(read.unverified, 0u);
    ASSERT_NE(s.Reported(kStream, kC), nullptr);
    EXPECT_EQ(Flat(*s.Reported(kStream, kC)), (Flattened{{kA, 2}}));
  }
  // Inflated by the relay (C would hold A's 3), or its signing time moved, or signed by
  // another member's key, or not signed at all: refused, and C stays unheard.
  v1::MemberReport inflated = genuine;
  inflated.set_deltas(0, genuine.deltas(0) + 1);
  v1::MemberReport retimed = genuine;
  retimed.set_signed_at_ms(genuine.signed_at_ms() + 1);
  const ReportSignature by_a = signatures.Of(kA, 1, Vv({{kA, 2}}));
  v1::MemberReport impostor;
  WriteReport(kC, 1, Vv({{kA, 2}}), &base, impostor, &by_a);
  v1::MemberReport bare;
  WriteReport(kC, 1, Vv({{kA, 2}}), &base, bare);
  for (const v1::MemberReport* bad : {&inflated, &retimed, &impostor, &bare}) {
    Stability s(kV);
    const Stability::Read read = s.Report(relayed(*bad), ours, &base, signatures.verifier());
    EXPECT_EQ(read.unverified, 1u) << bad->DebugString();
    EXPECT_EQ(read.unknown_signer, 0u);
    // Altered on the way, except the impostor's: a certificate of another authority may
    // also be one the relay's revocation list did not refuse yet.
    EXPECT_EQ(read.altered, bad == &impostor ? 0u : 1u) << bad->DebugString();
    EXPECT_TRUE(s.Heard(kStream).empty()) << bad->DebugString();
  }
  // After the first report refused, the rest of the set is not read (and counted); more
  // than a relay keeps of one member are refused.
  {
    v1::StreamReports in = relayed(inflated);
    *in.add_members() = genuine;
    Stability s(kV);
    const Stability::Read read = s.Report(in, ours, &base, signatures.verifier());
    EXPECT_EQ(read.unverified, 2u);
    EXPECT_TRUE(s.Heard(kStream).empty());
    v1::StreamReports many;
    many.set_stream(kStream);
    for (size_t i = 0; i <= limits::kRelayedReportsPerMember; ++i) *many.add_members() = genuine;
    const Stability::Read five = s.Report(many, ours, &base, signatures.verifier());
    EXPECT_EQ(five.refused, 1u);
    EXPECT_EQ(five.unverified, 0u);
    EXPECT_EQ(s.Heard(kStream), std::vector<uint32_t>{kC});
  }
  // Signed by a certificate the receiver does not know yet (X's): refused, and told apart
  // (the certificate may have been lost on the way).
  Signatures strangers;
  const ReportSignature unknown = strangers.Of(kX, 1, Vv({{kA, 2}}));
  v1::MemberReport unknown_signer;
  WriteReport(kX, 1, Vv({{kA, 2}}), &base, unknown_signer, &unknown);
  Stability s(kV);
  const Stability::Read read = s.Report(relayed(unknown_signer), ours, &base, signatures.verifier());
  EXPECT_EQ(read.unverified, 1u);
  EXPECT_EQ(read.unknown_signer, 1u);
}

TEST(StabilityTest, AReportOfALaterEpochReplacesWhatWasKnownOfTheMember) {
  Stability s(kV);
  const VersionVector ours = Vv({{kA, 5}});
  s.Report(kStream, kA, Vv({{kA, 5}}), ours);
  s.Report(kStream, kC, Vv({{kA, 5}}), ours, 1);
  EXPECT_EQ(Flat(s.Frontier(kStream, ours)), (Flattened{{kA, 5}}));
  // C was restored from a backup that held A's 2 only: it says so in its epoch 2.
  Signatures signatures;
  const ReportSignature c_restored = signatures.Of(kC, 2, Vv({{kA, 2}}));
  s.Report(kStream, kC, Vv({{kA, 2}}), ours, 2, &c_restored);
  EXPECT_EQ(Flat(s.Frontier(kStream, ours)), (Flattened{{kA, 2}}));
  // A relay still telling C's epoch-1 report changes nothing any more.
  const ReportSignature c_before = signatures.Of(kC, 1, Vv({{kA, 5}}));
  s.Report(kStream, kC, Vv({{kA, 5}}), ours, 1, &c_before);
  EXPECT_EQ(Flat(s.Frontier(kStream, ours)), (Flattened{{kA, 2}}));
  // What is relayed of C is its epoch-2 report.
  v1::StreamReports out;
  s.Write(kStream, 0, kX, nullptr, out);
  ASSERT_EQ(out.members_size(), 1);
  EXPECT_EQ(out.members(0).member(), kC);
  EXPECT_EQ(out.members(0).epoch(), 2u);
  EXPECT_TRUE(VerifyReport(signatures.verifier(), kStream, out.members(0), Vv({{kA, 2}})).ok());
  s.Report(kStream, kC, Vv({{kA, 4}}), ours, 2);
  EXPECT_EQ(Flat(s.Frontier(kStream, ours)), (Flattened{{kA, 4}}));

  // After a restart, this node knows nothing of C's epochs but holds a change of C's
  // epoch 2: an epoch-1 report relayed late is still refused.
  Stability restarted(kV);
  VersionVector with_c2 = ours;
  with_c2[OriginKey{kC, 2}].seq = 1;
  restarted.Report(kStream, kA, Vv({{kA, 5}}), with_c2);
  restarted.Report(kStream, kC, Vv({{kA, 5}}), with_c2, 1);
  EXPECT_EQ(restarted.Summarize(kStream, with_c2).waiting, 1u) << "C's stale report was taken";
  VersionVector c2 = Vv({{kA, 3}});
  c2[OriginKey{kC, 2}].seq = 1;
  restarted.Report(kStream, kC, c2, with_c2, 2);
  EXPECT_EQ(restarted.Summarize(kStream, with_c2).waiting, 0u);
}

TEST(StabilityTest, AReportWrittenAgainstABaseReadsBackWhole) {
  // Reports relayed by a node are mostly near what it holds itself: written against its
  // position, they are about a byte per origin epoch. Read back, each is the report.
  auto nonzero = [](const VersionVector& vv) {
    std::map<OriginKey, uint64_t> out;
    for (const auto& [key, pos] : vv) {
      if (pos.seq > 0) out[key] = pos.seq;
    }
    return out;
  };
  Signatures signatures;
  std::mt19937 rng(11);
  size_t relative = 0;
  for (int round = 0; round < 500; ++round) {
    VersionVector held, base;
    const uint64_t scale = round % 2 == 0 ? 6 : 1'000'000;
    for (uint32_t origin = 1; origin <= 12; ++origin) {
      for (uint32_t epoch = 1; epoch <= 2; ++epoch) {
        const uint64_t b = rng() % 4 == 0 ? 0 : rng() % scale;
        base[OriginKey{origin, epoch}].seq = b;  // zeros in a vector are no entry
        const uint64_t h = rng() % 3 == 0 ? rng() % scale : b;
        if (h > 0 || rng() % 2 == 0) held[OriginKey{origin, epoch}].seq = h;
      }
    }
    v1::MemberReport report;
    const ReportSignature signature = signatures.Of(kC, 2, held);
    WriteReport(kC, 2, held, &base, report, &signature);
    EXPECT_EQ(report.member(), kC);
    EXPECT_EQ(report.epoch(), 2u);
    // The receiver's base is the position as the status carries it.
    v1::StreamPosition stated;
    ToProto(kStream, base, stated);
    const VersionVector received = FromProto(stated);
    absl::StatusOr<VersionVector> back = ReadReport(report, &received);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(nonzero(*back), nonzero(held)) << report.DebugString();
    // The member's signature of the whole report checks against what is read back.
    EXPECT_TRUE(VerifyReport(signatures.verifier(), kStream, report, *back).ok());
    // Whole without a base; against one, never longer.
    v1::MemberReport whole;
    WriteReport(kC, 2, held, nullptr, whole);
    EXPECT_FALSE(whole.relative());
    EXPECT_EQ(static_cast<size_t>(whole.origins_size()), nonzero(held).size());
    EXPECT_LE(report.ByteSizeLong(), whole.ByteSizeLong());
    relative += report.relative() ? 1 : 0;
  }
  EXPECT_GT(relative, 400u);
  // Holding what the base holds: nothing but the member and its epoch.
  VersionVector same;
  for (uint32_t origin = 1; origin <= 300; ++origin) same[OriginKey{origin, 1}].seq = 1000 + origin;
  v1::MemberReport report;
  const ReportSignature same_signed = signatures.Of(kC, 1, same);
  WriteReport(kC, 1, same, &same, report, &same_signed);
  EXPECT_TRUE(report.relative());
  EXPECT_EQ(report.origins_size(), 0);
  EXPECT_EQ(report.deltas_size(), 0);
  // One origin behind by one, another unknown to the base: one delta after the zeros,
  // and one entry.
  VersionVector near = same;
  near[OriginKey{150, 1}].seq -= 1;
  near[OriginKey{301, 1}].seq = 7;
  v1::MemberReport one;
  WriteReport(kC, 1, near, &same, one);
  ASSERT_TRUE(one.relative());
  ASSERT_EQ(one.deltas_size(), 150);
  EXPECT_EQ(one.deltas(149), -1);
  ASSERT_EQ(one.origins_size(), 1);
  EXPECT_EQ(one.origins(0).origin(), 301u);
  EXPECT_LT(one.ByteSizeLong(), 200u);
  // Holding nothing: the whole report (empty) is the shorter.
  v1::MemberReport nothing;
  WriteReport(kC, 1, VersionVector(), &same, nothing);
  EXPECT_FALSE(nothing.relative());
  EXPECT_EQ(nothing.origins_size(), 0);

  // A relative report means nothing without its base, nor with deltas that do not fit it.
  EXPECT_EQ(ReadReport(report, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
  v1::MemberReport too_many = one;
  for (int i = 0; i < 200; ++i) too_many.add_deltas(0);
  EXPECT_EQ(ReadReport(too_many, &same).status().code(), absl::StatusCode::kInvalidArgument);
  v1::MemberReport below = one;
  below.set_deltas(0, -1002);  // origin 1 is at 1001
  EXPECT_EQ(ReadReport(below, &same).status().code(), absl::StatusCode::kInvalidArgument);
  below.set_deltas(0, -1001);  // holds none of it: fine
  EXPECT_TRUE(ReadReport(below, &same).ok());
  below.set_deltas(0, std::numeric_limits<int64_t>::min());
  EXPECT_EQ(ReadReport(below, &same).status().code(), absl::StatusCode::kInvalidArgument);
  VersionVector top;
  top[OriginKey{1, 1}].seq = std::numeric_limits<uint64_t>::max() - 1;
  v1::MemberReport over;
  over.set_member(kC);
  over.set_relative(true);
  over.add_deltas(2);
  EXPECT_EQ(ReadReport(over, &top).status().code(), absl::StatusCode::kInvalidArgument);

  v1::StreamReports in;
  in.set_stream(kStream);
  *in.add_members() = report;
  *in.add_members() = too_many;
  Stability s(kV);
  EXPECT_EQ(s.Report(in, same, nullptr, signatures.verifier()).refused, 2u);
  EXPECT_TRUE(s.Heard(kStream).empty());
  const Stability::Read read = s.Report(in, same, &same, signatures.verifier());
  EXPECT_EQ(read.refused, 1u);
  EXPECT_EQ(read.unverified, 0u);
  EXPECT_EQ(s.Heard(kStream), std::vector<uint32_t>{kC});
  EXPECT_EQ(Flat(*s.Reported(kStream, kC)), Flat(same));

  // A base of more origin epochs than a report may name is no base: a report of a few
  // bytes would cost the walk of all of it.
  VersionVector huge;
  for (uint32_t o = 1; o <= limits::kReportOriginsMax + 1; ++o) huge[OriginKey{o, 1}].seq = 1;
  v1::StreamReports against_huge;
  against_huge.set_stream(kStream);
  for (int i = 0; i < 3; ++i) {
    v1::MemberReport& r = *against_huge.add_members();
    r.set_member(kA);
    r.set_relative(true);
  }
  Stability t(kV);
  EXPECT_EQ(t.Report(against_huge, huge, &huge, signatures.verifier()).refused, 3u);
  EXPECT_TRUE(t.Heard(kStream).empty());
  // Nor are more reports read than a sender keeps to relay, plus its own.
  v1::StreamReports many;
  many.set_stream(kStream);
  const ReportSignature a_same = signatures.Of(kA, 1, same);
  for (size_t i = 0; i < limits::kStreamMembersMax * limits::kRelayedReportsPerMember + 5; ++i) {
    WriteReport(kA, 1, same, &same, *many.add_members(), &a_same);
  }
  // (All of A: beyond the few a relay keeps of one member, refused too.)
  EXPECT_EQ(t.Report(many, same, &same, signatures.verifier()).refused,
            limits::kStreamMembersMax * limits::kRelayedReportsPerMember + 5 -
                limits::kRelayedReportsPerMember);
  EXPECT_EQ(t.Heard(kStream), std::vector<uint32_t>{kA});
}

TEST(StabilityTest, IgnoresItselfNodeZeroAndMembersBeyondTheBound) {
  Stability s(kV);
  const VersionVector ours = Vv({{kA, 5}});
  s.Report(kStream, kA, Vv({{kA, 5}}), ours);
  s.Report(kStream, kV, Vv({{kA, 1}}), ours);  // what we hold is ours to say
  s.Report(kStream, 0, Vv({{kA, 1}}), ours);
  EXPECT_EQ(Flat(s.Frontier(kStream, ours)), (Flattened{{kA, 5}}));
  for (uint32_t m = 1; m <= limits::kStreamMembersMax + 10; ++m) {
    s.Report(kStream, 1'000'000 + m, Vv({{kA, 5}}), ours);
  }
  // Ourselves, and the bound's worth of others (A among them).
  EXPECT_EQ(s.Summarize(kStream, ours).members, limits::kStreamMembersMax + 1);
  // A report with more origins than the bound is ignored whole.
  VersionVector huge;
  for (uint32_t o = 1; o <= limits::kReportOriginsMax + 1; ++o) huge[OriginKey{o, 1}].seq = 1;
  Stability t(kV);
  t.Report(kStream, kA, huge, ours);
  EXPECT_EQ(t.Summarize(kStream, ours).members, 2u);
  EXPECT_EQ(t.Summarize(kStream, ours).waiting, 1u) << "A's report should have been ignored";
}

class StabilityEngineTest : public EngineTest {
 protected:
  // `report` with its member's signature of what it says read against `base` (left
  // unsigned if it does not read: it is refused before its signature is looked at).
  v1::MemberReport Signed(v1::MemberReport report, const VersionVector* base) {
    absl::StatusOr<VersionVector> held = ReadReport(report, base);
    if (!held.ok()) return report;
    SimTrust::OriginSigner signer(members_, report.member());
    absl::StatusOr<ReportSignature> s = SignReport(signer, clock_.NowMillis(), kStream,
                                                   report.member(), report.epoch(), *held);
    EXPECT_TRUE(s.ok()) << s.status();
    if (!s.ok()) return report;
    report.set_signer(s->signer);
    report.set_signature(s->signature);
    report.set_signed_at_ms(s->signed_at_ms);
    return report;
  }

  // A status from `peer` saying it holds `held` of A's batches and relaying `reports`,
  // each signed by its member unless it is already, with their certificates (unless
  // `certificates` is false).
  void Status(uint32_t peer, uint64_t held, const std::vector<v1::MemberReport>& reports = {},
              bool certificates = true) {
    PeerMessage m;
    v1::Ack& ack = *m.mutable_ack();
    auto* sp = ack.add_streams();
    sp->set_stream(kStream);
    if (held > 0) {
      auto* o = sp->add_origins();
      o->set_origin(kA);
      o->set_epoch(1);
      o->set_seq(held);
    }
    ack.mutable_sessions()->add_nodes(kV);
    v1::StreamReports& r = *ack.add_reports();
    r.set_stream(kStream);
    const std::optional<VersionVector> base = StatedPosition(ack, kStream);
    std::vector<v1::MemberReport> all = {ReportOf(peer, held)};
    all.insert(all.end(), reports.begin(), reports.end());
    for (const v1::MemberReport& report : all) {
      *r.add_members() =
          report.signature().empty() ? Signed(report, base ? &*base : nullptr) : report;
      if (certificates) {
        ack.mutable_certificates()->add_der(SimTrust::CertificateOf(report.member()));
      }
    }
    engine_->OnMessage(peer, m);
  }

  static v1::MemberReport ReportOf(uint32_t member, uint64_t held_of_a) {
    v1::MemberReport r;
    r.set_member(member);
    auto* o = r.add_origins();
    o->set_origin(kA);
    o->set_epoch(1);
    o->set_seq(held_of_a);
    return r;
  }

  Flattened Frontier() { return Flat(engine_->StableFrontier(kStream)); }

  // V owns the stream, written by A and C too, and starts with `o`, connected to both;
  // it created a record and deleted it.
  void OwnStreamWithADeletedRecord(const ReplicatorOptions& o) {
    interco::v1::Policy listed;
    for (uint32_t w : {kA, kC}) listed.mutable_writers()->add_authorities(OriginToSiren(w));
    v_.store.DeclarePolicy(kStream, kV, listed);
    StartEngine(o);
    Connect(kA);
    Connect(kC);
    v_.Write("marche", "Marché");
    LocalWrite del;
    del.kind = LocalWrite::Kind::kDelete;
    v_.store.Commit(kStream, {{"marche", del}});
  }

  // A status from `peer`, which still takes the stream from V, saying it holds V's own
  // changes up to `seq`.
  void StatusHoldingOurs(uint32_t peer, uint64_t seq) {
    PeerMessage m;
    v1::Ack& ack = *m.mutable_ack();
    ack.mutable_sessions()->add_nodes(kV);
    ack.add_push_streams(kStream);
    v1::StreamReports& r = *ack.add_reports();
    r.set_stream(kStream);
    v1::MemberReport report;
    report.set_member(peer);
    auto* pos = report.add_origins();
    pos->set_origin(kV);
    pos->set_epoch(1);
    pos->set_seq(seq);
    *r.add_members() = Signed(report, nullptr);
    ack.mutable_certificates()->add_der(SimTrust::CertificateOf(peer));
    engine_->OnMessage(peer, m);
  }

  // A's next write, as the batch A sends.
  Batch Write(int i) { return a_.Write("k" + std::to_string(i), "v"); }

  // The reports V's last status to `peer` relayed, by member.
  std::map<uint32_t, uint64_t> RelayedTo(uint32_t peer) {
    std::map<uint32_t, uint64_t> out;
    for (const auto& [to, m] : transport_.sent) {
      if (to != peer || !m.has_ack() || !m.ack().has_sessions()) continue;
      out.clear();
      for (const auto& r : m.ack().reports()) {
        // Reports are written against the position the status states.
        const std::optional<VersionVector> base = StatedPosition(m.ack(), r.stream());
        for (const auto& member : r.members()) {
          if (member.member() == kV) continue;  // V's own, in every status
          absl::StatusOr<VersionVector> held = ReadReport(member, base ? &*base : nullptr);
          EXPECT_TRUE(held.ok()) << held.status();
          out[member.member()] = held.ok() ? (*held)[OriginKey{kA, 1}].seq : 0;
        }
      }
    }
    return out;
  }

  void NextStatus() {
    clock_.Advance(Options().status_interval_ms);
    engine_->Tick();
  }

  // Sessions with A and C; A's first two batches applied here.
  void ConnectAndTakeTwoOfAs() {
    Connect(kA);
    Connect(kC);
    SendCertificate(kA, kA);
    SendBatch(kA, Write(1));
    SendBatch(kA, Write(2));
  }

  // The members' keys (the engine learns their certificates from the statuses).
  SimTrust members_{hasher_};
};

TEST_F(StabilityEngineTest, LearnsReportsFromPeersAndRelaysThem) {
  ConnectAndTakeTwoOfAs();
  ASSERT_EQ(Held(kA), 2u);
  // C's Hello said it holds nothing.
  EXPECT_TRUE(Frontier().empty());
  Status(kC, 2);
  // A's Hello said it held nothing; its status says what it holds now.
  Status(kA, 2);
  EXPECT_EQ(Frontier(), (Flattened{{kA, 2}}));

  // C relays X's report: X is a member too, and holds only A's first batch.
  Status(kC, 2, {ReportOf(kX, 1)});
  EXPECT_EQ(Frontier(), (Flattened{{kA, 1}}));
  EXPECT_EQ(engine_->Stabilities()[kStream].members, 4u);
  EXPECT_EQ(engine_->Stabilities()[kStream].unstable, 1u);

  // V relays to each peer the others' reports, then only those that grew.
  NextStatus();
  EXPECT_EQ(RelayedTo(kA), (std::map<uint32_t, uint64_t>{{kC, 2}, {kX, 1}}));
  EXPECT_EQ(RelayedTo(kC), (std::map<uint32_t, uint64_t>{{kA, 2}, {kX, 1}}));
  Status(kC, 2, {ReportOf(kX, 2)});
  EXPECT_EQ(Frontier(), (Flattened{{kA, 2}}));
  NextStatus();
  EXPECT_EQ(RelayedTo(kA), (std::map<uint32_t, uint64_t>{{kX, 2}}));
  // (C hears back what it relayed: V does not track who told it.)
  EXPECT_EQ(RelayedTo(kC), (std::map<uint32_t, uint64_t>{{kX, 2}}));
  NextStatus();
  EXPECT_EQ(RelayedTo(kA), (std::map<uint32_t, uint64_t>{}));

  // A new session hears every report again.
  engine_->OnDisconnected(kC);
  Connect(kC);
  NextStatus();
  EXPECT_EQ(RelayedTo(kC), (std::map<uint32_t, uint64_t>{{kA, 2}, {kX, 2}}));
}

TEST_F(StabilityEngineTest, ARelayedReportCountsOnlyWithItsMembersSignature) {
  ConnectAndTakeTwoOfAs();
  Status(kA, 2);
  Status(kC, 2);
  EXPECT_EQ(Frontier(), (Flattened{{kA, 2}}));
  // C relays X's report, signed by X, without X's certificate (lost on the way): refused,
  // and V restates its position, which makes C send every report again with it.
  transport_.sent.clear();
  Status(kC, 2, {ReportOf(kX, 1)}, /*certificates=*/false);
  EXPECT_EQ(Stats(kC).unverified, 1u);
  EXPECT_FALSE(Stats(kC).suspect);
  bool restated = false;
  for (const auto& [to, m] : transport_.sent) restated |= to == kC && m.has_hello();
  EXPECT_TRUE(restated);
  EXPECT_EQ(Frontier(), (Flattened{{kA, 2}})) << "X is not heard of yet";
  Status(kC, 2, {ReportOf(kX, 1)});
  EXPECT_EQ(Frontier(), (Flattened{{kA, 1}}));

  // C makes X seem to hold A's 2 under X's signature: refused, counted, C suspected, and
  // the frontier stays where X's own word puts it.
  v1::MemberReport inflated = Signed(ReportOf(kX, 1), nullptr);
  inflated.mutable_origins(0)->set_seq(2);
  Status(kC, 2, {inflated});
  EXPECT_EQ(Stats(kC).unverified, 2u);
  EXPECT_TRUE(Stats(kC).suspect);
  EXPECT_EQ(Frontier(), (Flattened{{kA, 1}}));

  // V relays X's report to A as X signed it, with X's certificate, once per session; its
  // own report, V signs.
  auto last_status_to_a = [&] {
    v1::Ack last;
    for (const auto& [to, m] : transport_.sent) {
      if (to == kA && m.has_ack() && m.ack().has_sessions()) last = m.ack();
    }
    return last;
  };
  NextStatus();
  v1::Ack status = last_status_to_a();
  ASSERT_EQ(status.reports_size(), 1);
  const std::optional<VersionVector> base = StatedPosition(status, kStream);
  std::set<uint32_t> verified;
  for (const v1::MemberReport& r : status.reports(0).members()) {
    absl::StatusOr<VersionVector> held = ReadReport(r, base ? &*base : nullptr);
    ASSERT_TRUE(held.ok()) << held.status();
    Verifier& keys = r.member() == kV ? static_cast<Verifier&>(v_.trust) : members_;
    if (VerifyReport(keys, kStream, r, *held).ok()) verified.insert(r.member());
  }
  EXPECT_EQ(verified, (std::set<uint32_t>{kC, kV, kX}));
  std::set<std::string> certificates(status.certificates().der().begin(),
                                     status.certificates().der().end());
  EXPECT_TRUE(certificates.contains(SimTrust::CertificateOf(kX)));
  EXPECT_TRUE(certificates.contains(SimTrust::CertificateOf(kV)));
  NextStatus();
  EXPECT_EQ(last_status_to_a().certificates().der_size(), 0) << "sent again in one session";
}

TEST_F(StabilityEngineTest, ARelativeReportIsReadAgainstThePositionItsStatusStates) {
  ConnectAndTakeTwoOfAs();
  Status(kA, 2);
  // C holds A's 2 and relays X's report as what C holds but one less of A's.
  v1::MemberReport behind;
  behind.set_member(kX);
  behind.set_relative(true);
  behind.add_deltas(-1);
  const VersionVector c_holds = Vv({{kA, 2}});
  behind = Signed(behind, &c_holds);
  Status(kC, 2, {behind});
  EXPECT_EQ(Frontier(), (Flattened{{kA, 1}}));
  // Then as exactly what C holds: no entry.
  v1::MemberReport same;
  same.set_member(kX);
  same.set_relative(true);
  Status(kC, 2, {same});
  EXPECT_EQ(Frontier(), (Flattened{{kA, 2}}));

  // A status that does not state C's position of the stream gives a relative report no
  // base: it is refused, and counted.
  uint64_t rejected = engine_->Stats()[kC].rejected;
  v1::MemberReport unanchored;
  unanchored.set_member(kX);
  unanchored.set_relative(true);
  unanchored.add_deltas(-2);  // read against anything, X would hold nothing
  {
    PeerMessage m;
    v1::Ack& ack = *m.mutable_ack();
    ack.mutable_sessions()->add_nodes(kV);
    v1::StreamReports& r = *ack.add_reports();
    r.set_stream(kStream);
    *r.add_members() = unanchored;
    engine_->OnMessage(kC, m);
  }
  EXPECT_EQ(engine_->Stats()[kC].rejected, rejected + 1);
  EXPECT_EQ(Frontier(), (Flattened{{kA, 2}}));
  // Deltas that do not fit the base: refused, counted.
  rejected = engine_->Stats()[kC].rejected;
  v1::MemberReport below;
  below.set_member(kX);
  below.set_relative(true);
  below.add_deltas(-3);  // C holds A's 2
  Status(kC, 2, {below});
  EXPECT_EQ(engine_->Stats()[kC].rejected, rejected + 1);
  EXPECT_EQ(Frontier(), (Flattened{{kA, 2}}));
  // A second set of reports of the stream in one status: refused, counted.
  rejected = engine_->Stats()[kC].rejected;
  {
    PeerMessage m;
    v1::Ack& ack = *m.mutable_ack();
    ack.mutable_sessions()->add_nodes(kV);
    auto* sp = ack.add_streams();
    sp->set_stream(kStream);
    auto* o = sp->add_origins();
    o->set_origin(kA);
    o->set_epoch(1);
    o->set_seq(2);
    for (int i = 0; i < 2; ++i) {
      v1::StreamReports& r = *ack.add_reports();
      r.set_stream(kStream);
      *r.add_members() = behind;
    }
    engine_->OnMessage(kC, m);
  }
  EXPECT_EQ(engine_->Stats()[kC].rejected, rejected + 1);
  EXPECT_EQ(Frontier(), (Flattened{{kA, 2}}));
}

TEST_F(StabilityEngineTest, AReportWaitsForItsMembersOwnChangesAndAnAckIsNone) {
  Connect(kA);
  Connect(kC);
  SendCertificate(kA, kA);
  SendBatch(kA, Write(1));
  Status(kA, 1);
  // A plain ack of C names A's 1 only: C may have written meanwhile, before it held A's 1.
  PeerMessage ack;
  auto* sp = ack.mutable_ack()->add_streams();
  sp->set_stream(kStream);
  auto* o = sp->add_origins();
  o->set_origin(kA);
  o->set_epoch(1);
  o->set_seq(1);
  engine_->OnMessage(kC, ack);
  EXPECT_TRUE(Frontier().empty());
  // C's status says it holds A's 1 and two batches of its own, which have not reached V:
  // they may have been written before C held A's 1, concurrent with it.
  v1::MemberReport c = ReportOf(kC, 1);
  auto* own = c.add_origins();
  own->set_origin(kC);
  own->set_epoch(1);
  own->set_seq(2);
  Status(kA, 1, {c});  // relayed by A
  EXPECT_TRUE(Frontier().empty());
  EXPECT_EQ(engine_->Stabilities()[kStream].waiting, 1u);
}

TEST_F(StabilityEngineTest, TheOwnerCollectsOnceTheDeleteIsStable) {
  ReplicatorOptions o = Options();
  o.collect_interval_ms = 1000;
  OwnStreamWithADeletedRecord(o);
  EXPECT_EQ(v_.store.Members(kStream).size(), 3u);  // the owner and the writers
  ASSERT_EQ(v_.store.Records(kStream).count("marche"), 1u);
  const uint64_t ours = v_.store.Position(kStream)->at(OriginKey{kV, 1}).seq;
  auto status = [&](uint32_t peer, uint64_t seq) { StatusHoldingOurs(peer, seq); };
  // A holds everything, C not the delete: nothing is collected.
  status(kA, ours);
  status(kC, ours - 1);
  clock_.Advance(1000);
  engine_->Tick();
  EXPECT_EQ(engine_->collections(), 0u);
  EXPECT_EQ(v_.store.Records(kStream).count("marche"), 1u);
  // Once C holds it too, the next consideration collects it, and the collection goes to
  // the peers as a change of V's chain.
  status(kC, ours);
  engine_->Tick();
  EXPECT_EQ(engine_->collections(), 0u) << "considered again before the interval";
  clock_.Advance(1000);
  engine_->Tick();
  EXPECT_EQ(engine_->collections(), 1u);
  EXPECT_EQ(v_.store.Records(kStream).count("marche"), 0u);
  EXPECT_EQ(v_.store.Position(kStream)->at(OriginKey{kV, 1}).seq, ours + 1);
  EXPECT_EQ(BatchesSentTo(kA, kV), 3);
  // Nothing more to collect: the frontier moving on does not make another.
  status(kA, ours + 1);
  status(kC, ours + 1);
  clock_.Advance(1000);
  engine_->Tick();
  EXPECT_EQ(engine_->collections(), 1u);
}


// A member that does not catch up within the owner's member retention is left out of its
// collections; it counts again once it says it holds the latest collection that left it
// out. An engine that restarts judges no member it has not heard from since.
TEST_F(StabilityEngineTest, AMemberBehindLongerThanTheRetentionIsLeftOutUntilItHoldsTheCollection) {
  ReplicatorOptions o = Options();
  o.collect_interval_ms = 1000;
  o.member_retention_ms = 10000;
  OwnStreamWithADeletedRecord(o);
  const uint64_t ours = v_.store.Position(kStream)->at(OriginKey{kV, 1}).seq;
  auto status = [&](uint32_t peer, uint64_t seq) { StatusHoldingOurs(peer, seq); };
  // C stays behind the delete; A holds everything. Within the retention, nothing goes.
  for (int second = 0; second < 9; ++second) {
    status(kA, ours);
    status(kC, ours - 1);
    clock_.Advance(1000);
    engine_->Tick();
  }
  EXPECT_EQ(engine_->collections(), 0u);
  EXPECT_TRUE(engine_->Excluded(kStream).empty());
  // Past it, C is left out and the delete is collected without it.
  for (int second = 0; second < 3 && engine_->collections() == 0; ++second) {
    status(kA, ours);
    clock_.Advance(1000);
    engine_->Tick();
  }
  ASSERT_EQ(engine_->collections(), 1u);
  EXPECT_EQ(v_.store.Records(kStream).count("marche"), 0u);
  EXPECT_EQ(engine_->Excluded(kStream), std::set<uint32_t>{kC});
  ASSERT_EQ(v_.store.ExclusionsOf(kStream).members().count(kC), 1u);
  const uint64_t collection = v_.store.ExclusionsOf(kStream).members().at(kC).at().seq();
  EXPECT_EQ(collection, ours + 1);
  const StabilitySummary summary = engine_->Stabilities().at(kStream);
  EXPECT_EQ(summary.excluded, std::vector<uint32_t>{kC});

  // Restarted, the engine has heard nothing of C: C counts (and, with no report, holds
  // the frontier back) rather than being left out again on the spot.
  StartEngine(o);
  Connect(kA);
  EXPECT_TRUE(engine_->Excluded(kStream).empty());
  Connect(kC);
  status(kC, ours);  // heard again, not holding the collection: not back
  EXPECT_EQ(engine_->Excluded(kStream), std::set<uint32_t>{kC});
  status(kC, collection);  // it applied it: it counts again
  EXPECT_TRUE(engine_->Excluded(kStream).empty());
}

}  // namespace
}  // namespace interco::replication
