// Causal stability: the changes of a stream that every member holds, and with which
// nothing concurrent can still reach this node.
//
// A member's report is what it holds of the stream (its version vector, its own changes
// included). Each node learns its peers' from their Hellos, statuses and acks, and relays
// the reports it knows in its status (replication.v1.MemberReport), so every report
// reaches every node of the stream. A member signs the report it sends in its status, and
// relays forward that signature: a report relayed without its member's signature is
// refused. Reports of a member within one of its origin epochs
// are merged by pointwise maximum: they only grow, and any order of arrival gives the
// same result. A report of a later epoch (the member was restored from a backup) replaces
// the earlier ones; one of an earlier epoch than known, or than changes of the member
// held here, is ignored.
//
// A report of member M is *taken* only once this node holds M's own changes up to what
// the report says: every write of M this node lacks was then made after M held the whole
// report. The stable frontier is the pointwise minimum over the members (this node
// included, with what it holds) of their taken reports. A change at or below it is held
// by every member, and every change concurrent with it (made by a member that did not
// have it yet) is already here: it can be collected without anything resurrecting it.
// The members are this node, the nodes the store declares (the registry's owner), and the
// nodes heard of as replicating the stream: every node with a report, every origin of a
// change held. See docs/REPLICATION.md, "Stability".
//
// Pure and single-threaded, like the engine that owns it.
#ifndef INTERCO_REPLICATION_STABILITY_H_
#define INTERCO_REPLICATION_STABILITY_H_

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "interco/replication/v1/peer.pb.h"
#include "replication/env.h"
#include "replication/version_vector.h"

namespace interco::replication {

// What a node knows of the stability of one stream.
struct StabilitySummary {
  // The members heard of, this node included.
  size_t members = 0;
  // Members whose newest report is not taken yet (this node lacks some of their own
  // changes that the report names), or who have none.
  size_t waiting = 0;
  // Changes held here above the stable frontier.
  uint64_t unstable = 0;
  // Members left out of it (absent longer than the retention), sorted.
  std::vector<uint32_t> excluded;
};

// A member's signature of one of its reports (MemberReport.signature, signer,
// signed_at_ms).
struct ReportSignature {
  std::string signer;  // key ID of the certificate
  std::string signature;
  int64_t signed_at_ms = 0;
};

// The signature `report` carries (as WriteReport writes it).
inline ReportSignature SignatureOf(const interco::replication::v1::MemberReport& report) {
  return ReportSignature{report.signer(), report.signature(), report.signed_at_ms()};
}

// What `member` signs of its report of `stream` made in its origin epoch `epoch` (0 read
// as 1), stating `held` (entries at seq 0 left out), signed at `signed_at_ms` by the key of
// certificate `signer`: the bytes MemberReport.signature is over.
std::string ReportSigningBytes(std::string_view signer, int64_t signed_at_ms,
                               const std::string& stream, uint32_t member, uint32_t epoch,
                               const VersionVector& held);

// This node's (`member`'s) signature of its report stating `held`, signed now.
absl::StatusOr<ReportSignature> SignReport(Signer& signer, int64_t now_ms, const std::string& stream,
                                           uint32_t member, uint32_t epoch,
                                           const VersionVector& held);

// OK if `report`, of `stream`, read as stating `held`, carries a signature of its member
// that `verifier` accepts; UNAUTHENTICATED if it carries none, else Verifier::Verify's
// error.
absl::Status VerifyReport(Verifier& verifier, const std::string& stream,
                          const interco::replication::v1::MemberReport& report,
                          const VersionVector& held);

// `member`'s report stating `held`, made in its origin epoch `epoch`: whole, or, given
// `base` (the sender's position that the same status states) and where that is shorter,
// against it (MemberReport.relative); with the member's `signature` of it, if given.
void WriteReport(uint32_t member, uint32_t epoch, const VersionVector& held,
                 const VersionVector* base, interco::replication::v1::MemberReport& out,
                 const ReportSignature* signature = nullptr);

// What `report` states (seq only; max_hlc not set), read against `base` if relative: a
// delta per entry of the base with seq > 0, in key order. INVALID_ARGUMENT for a
// relative report without a base, with more deltas than those entries, or with a delta
// that takes a seq below 0 or beyond 2^64 - 1. Costs O(base): see Stability::Report.
absl::StatusOr<VersionVector> ReadReport(const interco::replication::v1::MemberReport& report,
                                         const VersionVector* base);

// Whether `position` may be the base of relative reports: it names at most as many
// origin epochs (with a change) as a report may (limits::kReportOriginsMax). Reading a
// relative report walks its base; a larger one would make a few bytes cost all of it,
// and no report of that size is taken anyway. A node sends no reports of a stream whose
// position is not one.
bool MayBeReportBase(const VersionVector& position);

// The position of `stream` that the status `ack` states (Ack.streams, its first entry
// for the stream): the base of the status's relative reports of it.
std::optional<VersionVector> StatedPosition(const interco::replication::v1::Ack& ack,
                                            const std::string& stream);

class Stability {
 public:
  explicit Stability(uint32_t self) : self_(self) {}

  // Merges what `member` is known to hold of `stream` (its own statement or a relayed
  // report), and takes it at once if `position` (what this node holds) allows. A report
  // states the member's whole position at some time, its own changes included (an ack,
  // which names only what moved, is not one). Reports of
  // this node itself, of member 0, beyond the member bound or with too many origins are
  // ignored.
  // `epoch` is the member's origin epoch when it reported: a report of an earlier epoch
  // than one already heard of, or than a change of the member in `position`, is ignored;
  // one of a later epoch replaces all that was known of the member (restored from a
  // backup, it may hold less than it said before).
  // `signature`, the member's of this very report, makes it one this node relays (only
  // signed reports are: a relay cannot make a member seem to hold more than it said); a
  // report of the member's own statement to this node (its Hello) has none and is not
  // relayed. The signed reports relayed are those no other one covers (at most
  // kRelayedReportsPerMember): together they state all that was signed, as the merge
  // by maximum does.
  void Report(const std::string& stream, uint32_t member, const VersionVector& held,
              const VersionVector& position, uint32_t epoch = 1,
              const ReportSignature* signature = nullptr);
  // What Report made of the reports of one status.
  struct Read {
    // Malformed: relative without a base (or against one of more than
    // kReportOriginsMax origin epochs), with deltas that do not fit it, of more origin
    // epochs than that, beyond kRelayedReportsPerMember of one member, or beyond
    // kStreamMembersMax × kRelayedReportsPerMember + 1 reports.
    size_t refused = 0;
    // Not signed by their member, or with a signature `verifier` refuses, and those not
    // read after the first of them (the rest of the set is not worth the work). Of the
    // refused: those signed by a certificate `verifier` does not know (it may have been
    // lost on the way), and those whose signature does not verify (altered on the way).
    size_t unverified = 0;
    size_t unknown_signer = 0;
    size_t altered = 0;
  };
  // The reports of a status, read with `base` (the sender's position of the stream that
  // the status states, nullptr if none), each checked against its member's signature;
  // at most kRelayedReportsPerMember of one member.
  Read Report(const interco::replication::v1::StreamReports& in, const VersionVector& position,
              const VersionVector* base, Verifier& verifier);

  // Takes the newest reports of `stream` that `position` now allows.
  void Take(const std::string& stream, const VersionVector& position);

  // The stable frontier of `stream` given `position`, this node's: per origin epoch of
  // `position`, the greatest sequence number at or below which every member's taken
  // report holds it (entries at 0 left out; max_hlc not set). `declared` names members
  // known beyond those heard of (ReplicaStore::Members): until a report of each is
  // taken, nothing is stable.
  // `excluded` names members left out (replication/exclusion.h): neither their reports
  // nor their lack of one hold the frontier back.
  VersionVector Frontier(const std::string& stream, const VersionVector& position,
                         const std::vector<uint32_t>& declared = {},
                         const std::set<uint32_t>& excluded = {}) const;

  StabilitySummary Summarize(const std::string& stream, const VersionVector& position,
                             const std::vector<uint32_t>& declared = {},
                             const std::set<uint32_t>& excluded = {}) const;

  // What a node must hold before it may act on this node's frontier as if it were its
  // own: each member's own changes up to its taken report (every change concurrent with
  // something stable is among them), members in `excluded` left out.
  VersionVector Requirement(const std::string& stream,
                            const std::set<uint32_t>& excluded = {}) const;

  // The members of `stream` heard of (with a report), and what one reported holding, of
  // its latest epoch (nullptr if nothing).
  std::vector<uint32_t> Heard(const std::string& stream) const;
  const VersionVector* Reported(const std::string& stream, uint32_t member) const;

  // A counter that grows whenever the reports kept to relay change.
  uint64_t version() const { return version_; }
  // Adds to `out` the signed reports of `stream` relayed here that changed after version
  // `since`, with their signatures, except the report of `skip` (the receiver knows its
  // own best), relative to `base` where that is shorter (WriteReport).
  void Write(const std::string& stream, uint64_t since, uint32_t skip, const VersionVector* base,
             interco::replication::v1::StreamReports& out) const;

 private:
  struct Member {
    // Every report merged.
    VersionVector reported;
    // The reports taken, merged.
    VersionVector taken;
    // The signed reports relayed (none: nothing to relay), each with version_ when it
    // came.
    struct Signed {
      VersionVector held;
      ReportSignature signature;
      uint64_t version = 0;
    };
    std::vector<Signed> relayed;
    // The member's origin epoch of the reports kept.
    uint32_t epoch = 1;
  };
  void TakeIfHeld(uint32_t member, Member& m, const VersionVector& report,
                  const VersionVector& position);
  // Keeps `held`, signed, among the reports of `m` relayed (Report).
  void Relay(Member& m, const VersionVector& held, const ReportSignature& signature);

  const uint32_t self_;
  std::map<std::string, std::map<uint32_t, Member>> streams_;
  uint64_t version_ = 0;
};

}  // namespace interco::replication

#endif  // INTERCO_REPLICATION_STABILITY_H_
