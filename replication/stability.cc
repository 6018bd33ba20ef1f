#include "replication/stability.h"

#include <algorithm>
#include <limits>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "replication/base/limits.h"
#include "replication/base/strings.h"

namespace interco::replication {
namespace {

// Raises `into` to `from`, pointwise. Returns whether it grew.
bool MergeMax(VersionVector& into, const VersionVector& from) {
  bool grew = false;
  for (const auto& [key, pos] : from) {
    if (pos.seq == 0) continue;
    OriginPos& p = into[key];
    if (pos.seq > p.seq) {
      p.seq = pos.seq;
      grew = true;
    }
  }
  return grew;
}

}  // namespace

std::string ReportSigningBytes(std::string_view signer, int64_t signed_at_ms,
                               const std::string& stream, uint32_t member, uint32_t epoch,
                               const VersionVector& held) {
  static constexpr std::string_view kLabel("interco.replication.v1.MemberReport\0", 36);
  std::string message;
  message.reserve(kLabel.size() + signer.size() + 8 + stream.size() + 9 + 16 * held.size());
  message.append(kLabel);
  message.append(signer);
  AppendBigEndian(message, static_cast<uint64_t>(signed_at_ms), 8);
  message.append(stream);
  message.push_back('\0');
  AppendBigEndian(message, member, 4);
  AppendBigEndian(message, std::max<uint32_t>(epoch, 1), 4);
  for (const auto& [key, pos] : held) {
    if (pos.seq == 0) continue;
    AppendBigEndian(message, key.origin, 4);
    AppendBigEndian(message, key.epoch, 4);
    AppendBigEndian(message, pos.seq, 8);
  }
  return message;
}

absl::StatusOr<ReportSignature> SignReport(Signer& signer, int64_t now_ms, const std::string& stream,
                                           uint32_t member, uint32_t epoch,
                                           const VersionVector& held) {
  ReportSignature out;
  out.signer = signer.KeyId();
  out.signed_at_ms = now_ms;
  absl::StatusOr<std::string> signature =
      signer.Sign(out.signer, ReportSigningBytes(out.signer, now_ms, stream, member, epoch, held));
  if (!signature.ok()) return signature.status();
  out.signature = *std::move(signature);
  return out;
}

absl::Status VerifyReport(Verifier& verifier, const std::string& stream,
                          const interco::replication::v1::MemberReport& report,
                          const VersionVector& held) {
  if (report.signature().empty() || report.signer().empty()) {
    return absl::UnauthenticatedError(
        absl::StrCat("report of member ", report.member(), " is not signed"));
  }
  if (!verifier.Certificate(report.signer()).has_value()) {  // before building the bytes
    return absl::NotFoundError("unknown signer certificate");
  }
  return verifier.Verify(report.member(), report.signer(), report.signed_at_ms(),
                         ReportSigningBytes(report.signer(), report.signed_at_ms(), stream,
                                            report.member(), report.epoch(), held),
                         report.signature());
}

void WriteReport(uint32_t member, uint32_t epoch, const VersionVector& held,
                 const VersionVector* base, interco::replication::v1::MemberReport& out,
                 const ReportSignature* signature) {
  const auto sign = [signature](interco::replication::v1::MemberReport& report) {
    if (signature == nullptr) return;
    report.set_signer(signature->signer);
    report.set_signature(signature->signature);
    report.set_signed_at_ms(signature->signed_at_ms);
  };
  out.Clear();
  out.set_member(member);
  out.set_epoch(epoch);
  auto add = [](interco::replication::v1::MemberReport& to, const OriginKey& key, uint64_t seq) {
    auto* o = to.add_origins();
    o->set_origin(key.origin);
    o->set_epoch(key.epoch);
    o->set_seq(seq);
  };
  for (const auto& [key, pos] : held) {
    if (pos.seq > 0) add(out, key, pos.seq);
  }
  sign(out);
  if (base == nullptr) return;
  interco::replication::v1::MemberReport relative;
  relative.set_member(member);
  relative.set_epoch(epoch);
  relative.set_relative(true);
  constexpr uint64_t kDeltaMax = std::numeric_limits<int64_t>::max();
  size_t zeros = 0;  // deltas of 0 not written yet: left off if nothing follows
  for (const auto& [key, pos] : *base) {
    if (pos.seq == 0) continue;
    auto h = held.find(key);
    const uint64_t seq = h == held.end() ? 0 : h->second.seq;
    if (seq > kDeltaMax || pos.seq > kDeltaMax) return;  // whole, then
    const int64_t delta = static_cast<int64_t>(seq) - static_cast<int64_t>(pos.seq);
    if (delta == 0) {
      zeros++;
      continue;
    }
    for (; zeros > 0; --zeros) relative.add_deltas(0);
    relative.add_deltas(delta);
  }
  for (const auto& [key, pos] : held) {
    if (pos.seq == 0) continue;
    auto b = base->find(key);
    if (b == base->end() || b->second.seq == 0) add(relative, key, pos.seq);
  }
  sign(relative);
  if (relative.ByteSizeLong() < out.ByteSizeLong()) out = std::move(relative);
}

bool MayBeReportBase(const VersionVector& position) {
  size_t origin_epochs = 0;
  for (const auto& [key, pos] : position) origin_epochs += pos.seq > 0 ? 1 : 0;
  return origin_epochs <= limits::kReportOriginsMax;
}

std::optional<VersionVector> StatedPosition(const interco::replication::v1::Ack& ack,
                                            const std::string& stream) {
  for (const auto& sp : ack.streams()) {
    if (sp.stream() == stream) return FromProto(sp);
  }
  return std::nullopt;
}

absl::StatusOr<VersionVector> ReadReport(const interco::replication::v1::MemberReport& report,
                                         const VersionVector* base) {
  VersionVector held;
  for (const auto& o : report.origins()) {
    OriginPos& p = held[OriginKey{o.origin(), o.epoch()}];
    p.seq = std::max(p.seq, o.seq());
  }
  if (!report.relative()) return held;
  if (base == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("relative report of member ", report.member(), " without a base"));
  }
  int i = 0;
  for (const auto& [key, pos] : *base) {
    if (pos.seq == 0) continue;
    const int64_t delta = i < report.deltas_size() ? report.deltas(i) : 0;
    ++i;
    // |delta| without overflow, then seq = base + delta within [0, 2^64).
    const uint64_t magnitude = delta < 0 ? static_cast<uint64_t>(-(delta + 1)) + 1
                                         : static_cast<uint64_t>(delta);
    if ((delta < 0 && magnitude > pos.seq) ||
        (delta > 0 && magnitude > std::numeric_limits<uint64_t>::max() - pos.seq)) {
      return absl::InvalidArgumentError(absl::StrCat("relative report of member ",
                                                     report.member(), ": delta ", delta,
                                                     " does not fit its base's ", pos.seq));
    }
    const uint64_t seq = delta < 0 ? pos.seq - magnitude : pos.seq + magnitude;
    if (seq > 0) held[key].seq = std::max(held[key].seq, seq);
  }
  if (i < report.deltas_size()) {
    return absl::InvalidArgumentError(absl::StrCat("relative report of member ", report.member(),
                                                   ": ", report.deltas_size(),
                                                   " deltas for a base of ", i));
  }
  return held;
}

void Stability::TakeIfHeld(uint32_t member, Member& m, const VersionVector& report,
                           const VersionVector& position) {
  // The member's own changes up to its report must be here: then whatever of it we lack
  // was written after it held all of the report.
  for (const auto& [key, pos] : report) {
    if (key.origin != member || pos.seq == 0) continue;
    auto it = position.find(key);
    if (it == position.end() || it->second.seq < pos.seq) return;
  }
  MergeMax(m.taken, report);
}

void Stability::Relay(Member& m, const VersionVector& held, const ReportSignature& signature) {
  // Nothing new if a kept report covers it; what it covers goes.
  for (const Member::Signed& kept : m.relayed) {
    if (Missing(held, kept.held) == 0) return;
  }
  std::erase_if(m.relayed, [&](const Member::Signed& kept) { return Missing(kept.held, held) == 0; });
  Member::Signed& added = m.relayed.emplace_back();
  for (const auto& [key, pos] : held) {
    if (pos.seq > 0) added.held[key].seq = pos.seq;
  }
  added.signature = signature;
  added.version = ++version_;
  if (m.relayed.size() > limits::kRelayedReportsPerMember) {
    m.relayed.erase(std::min_element(
        m.relayed.begin(), m.relayed.end(), [](const Member::Signed& a, const Member::Signed& b) {
          return a.signature.signed_at_ms < b.signature.signed_at_ms;
        }));
  }
}

void Stability::Report(const std::string& stream, uint32_t member, const VersionVector& held,
                       const VersionVector& position, uint32_t epoch,
                       const ReportSignature* signature) {
  if (member == 0 || member == self_ || held.size() > limits::kReportOriginsMax) return;
  epoch = std::max<uint32_t>(epoch, 1);
  // Changes of a later epoch of the member are here: the report is from before it was
  // restored (relayed late, or heard again after this node restarted).
  for (auto it = position.lower_bound(OriginKey{member, epoch + 1});
       it != position.end() && it->first.origin == member; ++it) {
    if (it->second.seq > 0) return;
  }
  std::map<uint32_t, Member>& members = streams_[stream];
  auto it = members.find(member);
  if (it == members.end()) {
    if (members.size() >= limits::kStreamMembersMax) return;
    it = members.emplace(member, Member()).first;
    it->second.epoch = epoch;
  }
  Member& m = it->second;
  if (epoch < m.epoch) return;  // from before the member was restored
  if (epoch > m.epoch) {
    // Restored from a backup: what it said before no longer holds.
    m = Member();
    m.epoch = epoch;
  }
  MergeMax(m.reported, held);
  if (signature != nullptr) Relay(m, held, *signature);
  TakeIfHeld(member, m, held, position);
}

Stability::Read Stability::Report(const interco::replication::v1::StreamReports& in,
                                  const VersionVector& position, const VersionVector* base,
                                  Verifier& verifier) {
  if (base != nullptr && !MayBeReportBase(*base)) base = nullptr;
  Read out;
  size_t read = 0;
  std::map<uint32_t, size_t> per_member;
  for (const auto& r : in.members()) {
    if (out.unverified > 0) {
      out.unverified++;  // not read: see Read
      continue;
    }
    // An honest sender relays at most the reports it keeps, and its own.
    if (++read > limits::kStreamMembersMax * limits::kRelayedReportsPerMember + 1 ||
        ++per_member[r.member()] > limits::kRelayedReportsPerMember ||
        static_cast<size_t>(r.origins_size()) > limits::kReportOriginsMax) {
      out.refused++;
      continue;
    }
    absl::StatusOr<VersionVector> held = ReadReport(r, base);
    if (!held.ok() || held->size() > limits::kReportOriginsMax) {
      out.refused++;
      continue;
    }
    // Signed by its member, or it is the relay's word alone: refused.
    if (r.member() == 0 || r.member() == self_) continue;  // ignored, whoever signed
    if (absl::Status s = VerifyReport(verifier, in.stream(), r, *held); !s.ok()) {
      out.unverified++;
      out.unknown_signer += absl::IsNotFound(s) ? 1 : 0;
      out.altered += absl::IsUnauthenticated(s) ? 1 : 0;
      continue;
    }
    const ReportSignature signature = SignatureOf(r);
    Report(in.stream(), r.member(), *held, position, r.epoch(), &signature);
  }
  return out;
}

void Stability::Take(const std::string& stream, const VersionVector& position) {
  auto s = streams_.find(stream);
  if (s == streams_.end()) return;
  for (auto& [member, m] : s->second) {
    if (Missing(m.reported, m.taken) > 0) TakeIfHeld(member, m, m.reported, position);
  }
}

VersionVector Stability::Frontier(const std::string& stream, const VersionVector& position,
                                  const std::vector<uint32_t>& declared,
                                  const std::set<uint32_t>& excluded) const {
  static const std::map<uint32_t, Member> kNone;
  auto s = streams_.find(stream);
  const std::map<uint32_t, Member>& members = s == streams_.end() ? kNone : s->second;
  VersionVector frontier;
  // A member without report (an origin of changes we hold, a declared one) holds nothing
  // we know of.
  for (const auto& [key, pos] : position) {
    if (key.origin != self_ && !members.contains(key.origin) && !excluded.contains(key.origin)) {
      return frontier;
    }
  }
  for (uint32_t member : declared) {
    if (member != self_ && !members.contains(member) && !excluded.contains(member)) {
      return frontier;
    }
  }
  for (const auto& [key, pos] : position) {
    uint64_t seq = pos.seq;
    for (const auto& [member, m] : members) {
      if (excluded.contains(member)) continue;
      auto it = m.taken.find(key);
      seq = std::min(seq, it == m.taken.end() ? 0 : it->second.seq);
      if (seq == 0) break;
    }
    if (seq > 0) frontier[key].seq = seq;
  }
  return frontier;
}

StabilitySummary Stability::Summarize(const std::string& stream, const VersionVector& position,
                                      const std::vector<uint32_t>& declared,
                                      const std::set<uint32_t>& excluded) const {
  StabilitySummary out;
  std::set<uint32_t> members{self_};
  members.insert(declared.begin(), declared.end());
  for (const auto& [key, pos] : position) members.insert(key.origin);
  auto s = streams_.find(stream);
  if (s != streams_.end()) {
    for (const auto& [member, m] : s->second) {
      members.insert(member);
      if (Missing(m.reported, m.taken) > 0 && !excluded.contains(member)) out.waiting++;
    }
  }
  for (uint32_t member : members) {
    if (excluded.contains(member)) {
      out.excluded.push_back(member);
    } else if (member != self_ && (s == streams_.end() || !s->second.contains(member))) {
      out.waiting++;
    }
  }
  out.members = members.size();
  out.unstable = Missing(position, Frontier(stream, position, declared, excluded));
  return out;
}

VersionVector Stability::Requirement(const std::string& stream,
                                     const std::set<uint32_t>& excluded) const {
  VersionVector out;
  auto s = streams_.find(stream);
  if (s == streams_.end()) return out;
  for (const auto& [member, m] : s->second) {
    if (excluded.contains(member)) continue;
    for (const auto& [key, pos] : m.taken) {
      if (key.origin != member) continue;
      OriginPos& p = out[key];
      p.seq = std::max(p.seq, pos.seq);
    }
  }
  return out;
}

std::vector<uint32_t> Stability::Heard(const std::string& stream) const {
  std::vector<uint32_t> out;
  auto s = streams_.find(stream);
  if (s == streams_.end()) return out;
  for (const auto& [member, m] : s->second) out.push_back(member);
  return out;
}

const VersionVector* Stability::Reported(const std::string& stream, uint32_t member) const {
  auto s = streams_.find(stream);
  if (s == streams_.end()) return nullptr;
  auto it = s->second.find(member);
  return it == s->second.end() ? nullptr : &it->second.reported;
}

void Stability::Write(const std::string& stream, uint64_t since, uint32_t skip,
                      const VersionVector* base,
                      interco::replication::v1::StreamReports& out) const {
  auto s = streams_.find(stream);
  if (s == streams_.end()) return;
  out.set_stream(stream);
  for (const auto& [member, m] : s->second) {
    if (member == skip) continue;
    for (const Member::Signed& kept : m.relayed) {
      if (kept.version <= since) continue;
      WriteReport(member, m.epoch, kept.held, base, *out.add_members(), &kept.signature);
    }
  }
}

}  // namespace interco::replication
