#include "replication/replicator.h"

#include <algorithm>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "replication/base/limits.h"
#include "replication/change_log.h"
#include "replication/frame_codec.h"
#include "replication/hlc.h"
#include "replication/ids.h"
#include "replication/repair.h"

namespace interco::replication {
namespace {

using interco::replication::v1::Ack;
using interco::replication::v1::Batch;
using interco::replication::v1::BatchFrame;
using interco::replication::v1::BatchHeader;
using interco::replication::v1::Hello;
using interco::replication::v1::PeerMessage;

// Whether `vv` holds everything `target` states.
bool Dominates(const VersionVector& vv, const VersionVector& target) {
  for (const auto& [key, pos] : target) {
    auto it = vv.find(key);
    if (it == vv.end() || it->second.seq < pos.seq) return false;
  }
  return true;
}

}  // namespace

Replicator::Replicator(const ReplicatorOptions& options, Clock& clock, Transport& transport,
                       ReplicaStore& store, Hasher& hasher, Verifier& verifier, Signer& signer)
    : options_(options),
      clock_(clock),
      transport_(transport),
      store_(store),
      hasher_(hasher),
      verifier_(verifier),
      signer_(signer),
      announced_streams_(store_.Streams()),
      stability_(options.self) {
  for (uint32_t origin : store_.FrozenOrigins()) frozen_.insert(origin);
  UpdateTree();  // a root of every stream, until peers say otherwise
}

bool Replicator::Replicates(const std::string& stream) {
  const std::vector<std::string> streams = store_.Streams();
  return std::binary_search(streams.begin(), streams.end(), stream);
}

void Replicator::SendHello(Peer& peer, bool reply_requested) {
  peer.last_hello_ms = clock_.MonotonicMillis();
  peer.out.hello = true;
  peer.out.hello_reply |= reply_requested;
}

void Replicator::QueueAck(Peer& peer, const std::string& stream, OriginKey key, uint64_t seq,
                          uint64_t max_hlc, uint64_t changes) {
  OriginPos& pos = peer.out.acks[stream][key];
  if (seq > pos.seq) {
    pos.seq = seq;
    pos.max_hlc = max_hlc;
  }
  if (peer.out.acked_changes == 0) peer.out.ack_since_ms = clock_.MonotonicMillis();
  peer.out.acked_changes += std::max<uint64_t>(changes, 1);
}

void Replicator::OnConnected(uint32_t peer_id) {
  Peer& peer = peers_[peer_id];
  const PeerStats stats = peer.stats;
  peer = Peer();
  peer.stats = stats;
  peer.connected = true;
  peer.stats.connected = true;
  peer.stats.hello_received = false;
  peer.last_progress_ms = clock_.MonotonicMillis();
  SendHello(peer, /*reply_requested=*/false);
  Flush(peer_id, peer);
}

void Replicator::OnDisconnected(uint32_t peer_id) {
  Peer& peer = peers_[peer_id];
  peer.connected = false;
  peer.hello_received = false;
  peer.stats.connected = false;
  peer.stats.hello_received = false;
  peer.out = Outbox();
  UpdateTree();
  FlushDue(/*tick=*/false);
}

void Replicator::OnMessage(uint32_t peer_id, const PeerMessage& message) {
  Peer& peer = peers_[peer_id];
  if (!peer.connected) return;  // a message of a session that is already gone
  peer.stats.last_contact_ms = clock_.MonotonicMillis();
  if (!message.has_hello() && !message.has_ack() && message.frames().empty()) {
    peer.stats.rejected++;
    return;
  }
  if (message.has_hello() && !HandleHello(peer_id, peer, message.hello())) return;
  // Every certificate first: the status's reports may be signed by one a frame brings.
  for (const BatchFrame& frame : message.frames()) HandleCertificates(peer, frame.certificates());
  if (message.has_ack()) HandleAck(peer_id, peer, message.ack());
  bool applied = false;
  for (const BatchFrame& frame : message.frames()) applied |= HandleBatch(peer_id, peer, frame);
  if (applied) {
    PumpAll();
  } else {
    Pump(peer_id, peer);
  }
  FlushDue(/*tick=*/false);
}

bool Replicator::HandleHello(uint32_t peer_id, Peer& peer, const Hello& hello) {
  if (hello.protocol_version() != kProtocolVersion || hello.node() != peer_id) {
    peer.stats.rejected++;
    return false;
  }
  peer.hello_received = true;
  peer.stats.hello_received = true;
  peer.streams.clear();
  peer.known.clear();
  peer.wants = std::set<std::string>(hello.push_streams().begin(), hello.push_streams().end());
  ReadTrees(hello.trees(), peer);
  for (const auto& sp : hello.streams()) {
    peer.streams.insert(sp.stream());
    peer.known[sp.stream()] = FromProto(sp);
    // Its epoch in the stream: at least the Hello's, later where it was left out of a
    // collection and went on in a new one (which its own changes there then show).
    uint32_t epoch = hello.epoch();
    for (const auto& o : sp.origins()) {
      if (o.origin() == peer_id) epoch = std::max(epoch, o.epoch());
    }
    NoteReport(peer_id, sp, epoch);
  }
  // The peer's statement is the truth: resend from there.
  Rewind(peer);
  if (hello.reply_requested()) SendHello(peer, /*reply_requested=*/false);
  // Its place in the trees, and our sessions, changed: so may our place.
  UpdateTree();
  NoteLags(peer_id, peer);
  return true;
}

void Replicator::HandleAck(uint32_t peer_id, Peer& peer, const Ack& ack) {
  const bool status = ack.has_sessions();
  if (status) {
    peer.wants = std::set<std::string>(ack.push_streams().begin(), ack.push_streams().end());
    ReadTrees(ack.trees(), peer);
    HandleCertificates(peer, ack.certificates());  // of the reports' signers
    std::set<std::string> read;  // one StreamReports per stream and status
    for (const auto& reports : ack.reports()) {
      if (!Replicates(reports.stream())) continue;
      if (!read.insert(reports.stream()).second) {
        peer.stats.rejected++;
        continue;
      }
      absl::StatusOr<VersionVector> ours = store_.Position(reports.stream());
      if (!ours.ok()) continue;
      const std::optional<VersionVector> base = StatedPosition(ack, reports.stream());
      const Stability::Read got =
          stability_.Report(reports, *ours, base.has_value() ? &*base : nullptr, verifier_);
      peer.stats.rejected += got.refused;
      peer.stats.unverified += got.unverified;
      // A certificate lost on the way: restating our position (now, whenever we last did:
      // the report will not come again by itself) makes the sender send every report
      // again, with the certificates. A signature that does not verify: reports travel
      // unchanged, so the relay altered it.
      if (got.unknown_signer > 0) SendHello(peer, /*reply_requested=*/false);
      if (got.altered > 0) MarkSuspect(peer_id);
    }
  }
  bool progress = false;
  for (const auto& sp : ack.streams()) {
    VersionVector& known = peer.known[sp.stream()];
    for (const auto& [key, pos] : FromProto(sp)) {
      OriginPos& k = known[key];
      if (pos.seq > k.seq) {
        k.seq = pos.seq;
        k.max_hlc = pos.max_hlc;
        progress = true;
      }
    }
  }
  if (progress) peer.last_progress_ms = clock_.MonotonicMillis();
  if (status) {
    UpdateTree();
    NoteLags(peer_id, peer);
    for (const auto& digest : ack.digests()) CheckDigest(peer_id, peer, digest);
  }
}

void Replicator::AddDigest(uint32_t peer_id, Peer& peer, const std::string& stream, int64_t now,
                           Ack& ack) {
  if (options_.digest_interval_ms <= 0 || !store_.MayRead(stream, peer_id)) return;
  auto sent = peer.digest_sent.find(stream);
  if (sent != peer.digest_sent.end() && now - sent->second < options_.digest_interval_ms) return;
  // Only when the peer is known to hold exactly what we hold: otherwise the states differ
  // by what one of us has yet to receive, and the digest tells nothing.
  auto known = peer.known.find(stream);
  if (known == peer.known.end()) return;
  absl::StatusOr<StateDigest> digest = store_.Digest(stream);
  if (!digest.ok()) return;
  auto held = [](const VersionVector& vv) {
    std::map<OriginKey, uint64_t> out;
    for (const auto& [key, pos] : vv) {
      if (pos.seq > 0) out[key] = pos.seq;
    }
    return out;
  };
  if (held(digest->position) != held(known->second)) return;
  interco::replication::v1::StreamDigest& out = *ack.add_digests();
  out.set_stream(stream);
  out.set_position(PositionDigest(digest->position, hasher_));
  out.set_live_sum(digest->live_sum);
  out.set_live_records(digest->live_records);
}

void Replicator::CheckDigest(uint32_t peer_id, Peer& peer,
                             const interco::replication::v1::StreamDigest& theirs) {
  if (!Replicates(theirs.stream())) return;
  absl::StatusOr<StateDigest> ours = store_.Digest(theirs.stream());
  // At another position the states may differ by what one side has yet to receive.
  if (!ours.ok() || PositionDigest(ours->position, hasher_) != theirs.position()) return;
  if (ours->live_sum == theirs.live_sum() && ours->live_records == theirs.live_records()) {
    peer.stats.digests_matched++;
    peer.stats.diverged.erase(theirs.stream());
    return;
  }
  peer.stats.divergences++;
  peer.stats.diverged.insert(theirs.stream());
  store_.OnDiverged(peer_id, theirs.stream());
}

void Replicator::HandleCertificates(Peer& peer, const interco::replication::v1::Certificates& certs) {
  for (const std::string& der : certs.der()) {
    if (!verifier_.AddCertificate(der).ok()) peer.stats.rejected++;
  }
}

bool Replicator::HandleBatch(uint32_t peer_id, Peer& peer, const BatchFrame& received) {
  peer.stats.batches_received += static_cast<uint64_t>(received.batches_size());
  const std::string& stream = received.stream();
  if (!Replicates(stream)) {
    peer.stats.rejected++;
    return false;
  }
  // Changes by column (the node's session reader restores them ahead; the simulator
  // leaves it to here).
  std::optional<BatchFrame> restored;
  absl::Status shape = absl::OkStatus();
  if (received.has_columns()) {
    restored = received;
    shape = DecodeColumns(*restored, hasher_);
  }
  const BatchFrame& frame = restored ? *restored : received;
  std::vector<DecodedBatch> run;
  for (const Batch& b : frame.batches()) {
    if (!shape.ok()) break;
    absl::StatusOr<DecodedBatch> decoded = DecodeBatch(b, hasher_);
    if (!decoded.ok()) {
      shape = decoded.status();
      break;
    }
    if (decoded->header.stream() != stream) {
      shape = absl::DataLossError("batch of another stream than its frame");
      break;
    }
    run.push_back(*std::move(decoded));
  }
  if (shape.ok()) shape = CheckRun(run);
  if (!shape.ok()) {
    // Malformed, or not a run that its last signature covers: nothing of it is applied.
    peer.stats.rejected++;
    BatchHeader parsed;
    const bool has_header =
        frame.batches_size() > 0 && parsed.ParseFromString(frame.batches(0).header());
    store_.OnRefused(peer_id, stream, has_header ? &parsed : nullptr, shape);
    return false;
  }
  const BatchHeader& first = run.front().header;
  const OriginKey key{first.origin(), first.epoch()};
  if (frozen_.contains(first.origin())) {
    peer.stats.frozen++;
    store_.OnRefused(peer_id, stream, &first,
                     absl::FailedPreconditionError("origin frozen after a fork of its chain"));
    return false;
  }
  absl::StatusOr<VersionVector> vv = store_.Position(stream);
  if (!vv.ok()) {
    peer.stats.rejected++;
    return false;
  }
  const OriginPos held = (*vv)[key];
  // The batches of the run this node holds already: the same ones (relays and rewinds
  // resend them), or proof of a fork once the run is believed.
  size_t fresh = 0;
  std::optional<HeldCheck> conflict;
  while (fresh < run.size() && run[fresh].header.first_seq() <= held.seq) {
    HeldCheck check = CheckHeld(stream, run[fresh], held.seq);
    if (!check.same) {
      conflict = std::move(check);
      break;
    }
    fresh++;
  }
  if (!conflict && fresh == run.size()) {
    // All held: no signature to check. The sender holds them: never send them back.
    peer.stats.duplicates += run.size();
    NoteSenderHolds(peer, stream, run.back().header);
    QueueAck(peer, stream, key, held.seq, held.max_hlc, 0);
    // A graft that only brings duplicates once we caught up is no longer needed.
    auto up = uplink_.find(stream);
    if (peer.grafted.contains(stream) && (up == uplink_.end() || up->second != peer_id) &&
        Dominates(*vv, peer.known[stream])) {
      peer.grafted.erase(stream);
      peer.stats.prunes++;
      UpdateTree();
    }
    return false;
  }
  // Something new (or different): believe the run only if its one signature verifies.
  if (absl::Status s = VerifyBatch(run.back(), verifier_); !s.ok()) {
    // Forged, altered, or signed by a certificate that does not speak for the origin:
    // nothing of it is believed, stored or forwarded.
    peer.stats.unverified++;
    store_.OnRefused(peer_id, stream, &run.back().header, s);
    if (absl::IsNotFound(s)) {
      // Its certificate was lost on the way: restating our position makes the sender
      // rewind, which resends certificates with the batches.
      Nack(peer);
    } else if (absl::IsUnauthenticated(s)) {
      MarkSuspect(peer_id);  // batches travel unchanged: the relay altered it
    }
    return false;
  }
  // Each unsigned batch is proven by the batches after it, up to the signed end.
  auto headers = std::make_shared<std::vector<Batch>>(run.size());
  for (size_t i = 0; i < run.size(); ++i) {
    (*headers)[i].set_header(run[i].raw.header());
    (*headers)[i].set_signature(run[i].raw.signature());
    (*headers)[i].set_signer(run[i].raw.signer());
    (*headers)[i].set_signed_at_ms(run[i].raw.signed_at_ms());
    run[i].run = headers;
    run[i].run_position = i;
  }
  if (conflict) {
    Freeze(peer_id, peer, stream, std::move(conflict->mine), run[fresh]);
    return false;
  }
  peer.stats.duplicates += fresh;
  bool applied = false;
  for (size_t i = fresh; i < run.size(); ++i) {
    const Step step = HandleVerified(peer_id, peer, stream, std::move(run[i]));
    applied |= step == Step::kApplied;
    if (step == Step::kRefused) break;
  }
  if (applied) RetryHeld(stream);
  return applied;
}

void Replicator::NoteSenderHolds(Peer& peer, const std::string& stream, const BatchHeader& h) {
  const OriginKey key{h.origin(), h.epoch()};
  const uint64_t last = h.first_seq() + h.count() - 1;
  OriginPos& known = peer.known[stream][key];
  if (last > known.seq) {
    known.seq = last;
    known.max_hlc = h.max_hlc();
  }
  uint64_t& sent = peer.sent[stream][key];
  sent = std::max(sent, last);
}

Replicator::Step Replicator::NotAuthorized(uint32_t peer_id, Peer& peer,
                                           const std::string& stream, DecodedBatch batch,
                                           const absl::Status& why) {
  const BatchHeader& h = batch.header;
  if (absl::IsUnavailable(why)) {
    // Written under a policy version whose owner's change has not reached us: held (if
    // it is the origin's next batch) and applied when the owner's change is.
    peer.stats.policy_waits++;
    const OriginKey key{h.origin(), h.epoch()};
    absl::StatusOr<VersionVector> vv = store_.Position(stream);
    const auto slot = std::make_pair(stream, key);
    if (vv.ok() && Follows(batch, (*vv)[key].seq) &&
        (held_.size() < options_.reorder_buffer_batches_max || held_.contains(slot))) {
      held_.insert_or_assign(slot, Held{peer_id, std::move(batch)});
    } else {
      dropped_waiting_.try_emplace({stream, peer_id}, std::move(batch));
    }
    return Step::kWaiting;
  }
  // Authentic, but its origin may not write this registry (or was left out of a
  // collection): refused, not forwarded.
  CountRefusal(peer.stats, stream, h);
  store_.OnRefused(peer_id, stream, &h, why);
  return Step::kRefused;
}

Replicator::Step Replicator::HandleVerified(uint32_t peer_id, Peer& peer, const std::string& stream,
                                            DecodedBatch batch) {
  const BatchHeader& h = batch.header;
  const OriginKey key{h.origin(), h.epoch()};
  if (absl::Status why = store_.Authorize(stream, batch); !why.ok()) {
    return NotAuthorized(peer_id, peer, stream, std::move(batch), why);
  }
  // Whatever happens next, the sender holds this batch: never send it back.
  NoteSenderHolds(peer, stream, h);
  absl::StatusOr<VersionVector> vv = store_.Position(stream);
  if (!vv.ok()) return Step::kRefused;
  const OriginPos held = (*vv)[key];
  const uint64_t last = batch.last_seq();
  if (last <= held.seq) {
    QueueAck(peer, stream, key, held.seq, held.max_hlc, 0);
    return Step::kWaiting;
  }
  if (!Follows(batch, held.seq)) {
    // Something before it was lost or is late. Keep it for when the gap fills, and
    // restate our position (at most once per status interval) so that the sender
    // rewinds if it was lost.
    peer.stats.gaps++;
    auto& buffered = reorder_[{stream, key}];
    if (reorder_size_ < options_.reorder_buffer_batches_max &&
        !buffered.contains(batch.first_seq())) {
      buffered.emplace(batch.first_seq(), std::move(batch));
      reorder_size_++;
    }
    Nack(peer);
    return Step::kWaiting;
  }
  return ApplyInOrder(peer_id, peer, stream, std::move(batch)) ? Step::kApplied : Step::kRefused;
}

void Replicator::CountRefusal(PeerStats& stats, const std::string& stream, const BatchHeader& h) {
  if (store_.ExclusionsOf(stream).Judge(h).ok()) {
    stats.unauthorized++;
  } else {
    stats.excluded++;
  }
}

void Replicator::RetryHeld(const std::string& stream) {
  for (bool progress = true; progress;) {
    progress = false;
    for (auto it = held_.begin(); it != held_.end();) {
      if (it->first.first != stream) {
        ++it;
        continue;
      }
      const absl::Status why = store_.Authorize(stream, it->second.batch);
      if (absl::IsUnavailable(why)) {
        ++it;
        continue;
      }
      Held h = std::move(it->second);
      it = held_.erase(it);
      Peer& from = peers_[h.from];
      if (!why.ok()) {
        CountRefusal(from.stats, stream, h.batch.header);
        store_.OnRefused(h.from, stream, &h.batch.header, why);
        continue;
      }
      progress |= ApplyInOrder(h.from, from, stream, std::move(h.batch));
    }
  }
  // Batches that waited for a policy version and were dropped (the rest of a held
  // batch's run, later batches of its origin): once that version is here, their senders
  // are asked for them, rather than at their ack timeout.
  for (auto it = dropped_waiting_.lower_bound({stream, 0});
       it != dropped_waiting_.end() && it->first.first == stream;) {
    if (absl::IsUnavailable(store_.Authorize(stream, it->second))) {
      ++it;
      continue;
    }
    auto peer = peers_.find(it->first.second);
    if (peer != peers_.end() && peer->second.connected) {
      peer->second.last_nack_ms = -1;  // once, whatever the last restatement
      Nack(peer->second);
    }
    it = dropped_waiting_.erase(it);
  }
}

void Replicator::Nack(Peer& peer) {
  const int64_t now = clock_.MonotonicMillis();
  if (peer.last_nack_ms < 0 || now - peer.last_nack_ms >= options_.restate_interval_ms) {
    peer.last_nack_ms = now;
    SendHello(peer, /*reply_requested=*/false);
  }
}

Replicator::HeldCheck Replicator::CheckHeld(const std::string& stream, const DecodedBatch& batch,
                                            uint64_t held_seq) {
  HeldCheck out;
  const BatchHeader& h = batch.header;
  const OriginKey key{h.origin(), h.epoch()};
  // Batches travel unchanged, so the same position means the same first sequence number
  // and the same header bytes. The log is dense up to held_seq: if no batch of it starts
  // at first_seq, the origin cut its history differently.
  absl::StatusOr<std::vector<Batch>> read = store_.ReadBatches(stream, key, h.first_seq() - 1, 1);
  if (read.ok() && !read->empty()) {
    BatchHeader mh;
    if (mh.ParseFromString(read->front().header()) && mh.first_seq() == h.first_seq()) {
      if (read->front().header() == batch.raw.header()) {
        out.same = true;
        return out;
      }
      out.mine = std::move(read->front());
    } else if (read->front().skip_from() > 0 && read->front().skip_from() <= h.first_seq() &&
               batch.last_seq() < mh.first_seq()) {
      // Held as part of a skip: its header is not here to compare, nor is anything that
      // would prove a fork. (Batches within a skip are under a collection's frontier, so
      // every member held the same ones.)
      out.same = true;
      return out;
    }
  }
  if (!out.mine) {
    out.mine = BatchEndingAt(stream, key, std::min(held_seq, h.first_seq() + h.count() - 1));
  }
  return out;
}

std::optional<interco::replication::v1::Batch> Replicator::BatchEndingAt(
    const std::string& stream, OriginKey key, uint64_t seq) {
  // Batch boundaries are not indexed by their end: look back in growing steps.
  for (uint64_t back = 1;; back *= 4) {
    const uint64_t after = seq > back ? seq - back : 0;
    absl::StatusOr<std::vector<interco::replication::v1::Batch>> read =
        store_.ReadBatches(stream, key, after, options_.read_batches_max);
    if (!read.ok()) return std::nullopt;
    for (auto& b : *read) {
      BatchHeader bh;
      if (!bh.ParseFromString(b.header())) return std::nullopt;
      if (bh.first_seq() + bh.count() - 1 == seq) return std::move(b);
      if (bh.first_seq() > seq) break;
    }
    if (after == 0) return std::nullopt;
  }
}

std::optional<Replicator::UnsignedTail> Replicator::UnsignedTailOf(const std::string& stream,
                                                                    OriginKey key,
                                                                    uint64_t held_seq) {
  UnsignedTail tail{held_seq + 1, false};
  for (size_t i = 0; i < limits::kRunBatchesMax && tail.start > 1; ++i) {
    const std::optional<Batch> b = BatchEndingAt(stream, key, tail.start - 1);
    if (!b) {
      if (i == 0) return std::nullopt;  // the log cannot say
      break;
    }
    if (!b->signature().empty()) break;
    const std::optional<uint64_t> first = EntryFirstSeq(*b);
    if (!first) return std::nullopt;
    tail.start = *first;
    tail.kept |= !b->hollow();
  }
  return tail;
}

interco::replication::v1::ChainProof Replicator::ProofInLog(const std::string& stream,
                                                             const Batch& batch) {
  interco::replication::v1::ChainProof proof;
  BatchHeader h;
  if (!batch.signature().empty() || !h.ParseFromString(batch.header())) return proof;
  absl::StatusOr<std::vector<Batch>> read =
      store_.ReadBatches(stream, OriginKey{h.origin(), h.epoch()}, h.first_seq() + h.count() - 1,
                         limits::kRunBatchesMax);
  if (!read.ok()) return proof;
  for (Batch& b : *read) {
    b.clear_changes();
    const bool end = !b.signature().empty();
    *proof.add_following() = std::move(b);
    if (end) return proof;
  }
  return interco::replication::v1::ChainProof();  // its signed end is not held here
}

void Replicator::Freeze(uint32_t peer_id, Peer& peer, const std::string& stream,
                        std::optional<Batch> held, const DecodedBatch& received) {
  const BatchHeader& h = received.header;
  interco::replication::v1::ForkEvidence evidence;
  evidence.set_origin(h.origin());
  evidence.set_stream(stream);
  if (held) {
    *evidence.mutable_held_proof() = ProofInLog(stream, *held);
    *evidence.mutable_held() = *std::move(held);
  }
  *evidence.mutable_received() = received.raw;
  *evidence.mutable_received_proof() = ProofOf(received);
  evidence.set_received_from(peer_id);
  evidence.set_detected_ms(clock_.NowMillis());
  peer.stats.forks++;
  store_.OnRefused(peer_id, stream, &h,
                   absl::FailedPreconditionError("fork: the origin signed two histories; "
                                                 "origin frozen"));
  // Freeze even if the proof cannot be stored: applying a forked chain is worse.
  (void)store_.RecordFork(evidence);
  frozen_.insert(h.origin());
  std::erase_if(held_, [&](const auto& e) { return e.first.second.origin == h.origin(); });
  for (auto it = reorder_.begin(); it != reorder_.end();) {
    if (it->first.second.origin == h.origin()) {
      reorder_size_ -= it->second.size();
      it = reorder_.erase(it);
    } else {
      ++it;
    }
  }
}

bool Replicator::ApplyInOrder(uint32_t peer_id, Peer& peer, const std::string& stream,
                              DecodedBatch batch) {
  bool applied_any = false;
  for (bool buffered_batch = false;; buffered_batch = true) {
    // A buffered batch was authorized when it came; the policy may have moved since (a
    // collection that left its origin out, applied meanwhile).
    if (buffered_batch) {
      if (absl::Status why = store_.Authorize(stream, batch); !why.ok()) {
        NotAuthorized(peer_id, peer, stream, std::move(batch), why);
        break;
      }
    }
    const BatchHeader& h = batch.header;
    const OriginKey key{h.origin(), h.epoch()};
    absl::StatusOr<VersionVector> vv = store_.Position(stream);
    if (!vv.ok()) break;
    const OriginPos held = (*vv)[key];
    if (!Follows(batch, held.seq)) break;
    // (A skip's header may come after hollow batches it stands for: then its chain is
    // taken on the sender's word, like the hollow flag.)
    if (ChainsFrom(batch, held.seq) && h.prev_hash() != held.last_hash) {
      // Signed by the origin, yet it continues another history than the one we hold:
      // the origin forked its chain.
      Freeze(peer_id, peer, stream, BatchEndingAt(stream, key, held.seq), batch);
      break;
    }
    if (!ChainsFrom(batch, held.seq) && held.seq > 0) {
      // A skip whose stretch this node entered: it may not follow batches held here
      // unsigned (a run broken off by a crash) one of which is kept, whose proof is in the
      // stretch's headers, unless it reaches back over them all (hollow where it comes
      // from): the store then logs it in their place.
      const std::optional<UnsignedTail> tail = UnsignedTailOf(stream, key, held.seq);
      if (!tail || (tail->kept && batch.first_seq() > tail->start)) {
        peer.stats.rejected++;
        store_.OnRefused(peer_id, stream, &h,
                         absl::FailedPreconditionError(
                             "a skip after a batch kept unsigned here: its proof would go"));
        break;
      }
    }
    const int64_t ahead_ms =
        static_cast<int64_t>(HybridLogicalClock::Millis(h.max_hlc())) - clock_.NowMillis();
    if (ahead_ms > options_.clock_offset_max_ms) {
      peer.stats.quarantined++;
      break;
    }
    if (absl::Status s = store_.ApplyBatch(stream, batch); !s.ok()) {
      peer.stats.rejected++;
      break;
    }
    peer.stats.batches_applied++;
    if (batch.raw.skip_from() > 0) peer.stats.skips_applied++;
    applied_any = true;
    const uint64_t last = batch.last_seq();
    QueueAck(peer, stream, key, last, std::max(held.max_hlc, h.max_hlc()), last - held.seq);
    // A buffered batch that continues it?
    auto rit = reorder_.find({stream, key});
    if (rit == reorder_.end()) break;
    // Drop what is now stale, then take the next one if it is there.
    auto& buffered = rit->second;
    while (!buffered.empty() && buffered.begin()->second.last_seq() <= last) {
      buffered.erase(buffered.begin());
      reorder_size_--;
    }
    if (buffered.empty() || !Follows(buffered.begin()->second, last)) {
      if (buffered.empty()) reorder_.erase(rit);
      break;
    }
    batch = std::move(buffered.begin()->second);
    buffered.erase(buffered.begin());
    reorder_size_--;
    if (buffered.empty()) reorder_.erase(rit);
  }
  return applied_any;
}

uint64_t Replicator::InFlight(const Peer& peer) const {
  uint64_t n = 0;
  for (const auto& [stream, by_key] : peer.sent) {
    auto kit = peer.known.find(stream);
    for (const auto& [key, seq] : by_key) {
      uint64_t have = 0;
      if (kit != peer.known.end()) {
        auto it = kit->second.find(key);
        if (it != kit->second.end()) have = it->second.seq;
      }
      if (seq > have) n += seq - have;
    }
  }
  return n;
}

void Replicator::Rewind(Peer& peer) {
  peer.sent.clear();
  peer.certs_sent.clear();  // a certificate may have been lost with the batches or reports
  peer.reports_sent.clear();  // and every report goes again with them
  // Runs gathered and not sent yet are gathered again from the new position.
  peer.out.DropRuns();
  peer.last_progress_ms = clock_.MonotonicMillis();
}

void Replicator::Pump(uint32_t peer_id, Peer& peer) {
  if (!peer.connected || !peer.hello_received) return;
  uint64_t in_flight = InFlight(peer);
  for (const std::string& stream : store_.Streams()) {
    if (!peer.streams.contains(stream) || !PushesTo(peer_id, peer, stream)) continue;
    // A peer that may not read the stream now may still be owed batches written while
    // it could (the change that removed it, for one): judged batch by batch.
    const bool reads_now = store_.MayRead(stream, peer_id);
    absl::StatusOr<VersionVector> vv = store_.Position(stream);
    if (!vv.ok()) continue;
    VersionVector& known = peer.known[stream];
    auto& sent_by_key = peer.sent[stream];
    // The owner's chain first: it carries the policy versions other batches wait for.
    std::vector<std::pair<OriginKey, OriginPos>> origins(vv->begin(), vv->end());
    const uint32_t owner = store_.OwnerOf(stream);
    std::stable_partition(origins.begin(), origins.end(),
                          [owner](const auto& o) { return o.first.origin == owner; });
    for (const auto& [key, pos] : origins) {
      if (frozen_.contains(key.origin)) continue;  // a forked chain is not spread
      uint64_t& sent = sent_by_key[key];
      sent = std::max(sent, known[key].seq);
      while (pos.seq > sent && in_flight < options_.in_flight_changes_max) {
        // Whole runs only: an unsigned batch goes with the signed one that ends its run.
        absl::StatusOr<std::vector<Batch>> batches = store_.ReadBatches(
            stream, key, sent, std::max(options_.read_batches_max, 2 * limits::kRunBatchesMax));
        if (!batches.ok() || batches->empty()) break;  // the log cannot serve: repair
        bool progressed = false;
        BatchFrame frame;
        uint64_t run_changes = 0;
        for (size_t i = 0; i < batches->size(); ++i) {
          Batch& batch = (*batches)[i];
          BatchHeader h;
          if (!h.ParseFromString(batch.header())) break;
          const uint64_t next = sent + run_changes + 1;
          if (batch.skip_from() > 0
                  // A skip stored here may stand for batches the peer holds already.
                  ? run_changes > 0 || batch.skip_from() > next ||
                        h.first_seq() + h.count() - 1 < next
                  : h.first_seq() != next) {
            break;
          }
          if (!reads_now && !store_.MayReadBatch(stream, peer_id, h.policy_version())) break;
          if (run_changes == 0 && batch.hollow()) {
            // Hollow batches up to the end of a run go as one skip (Batch.skip_from), from
            // the peer's next sequence number; a skip stored here goes from its own start,
            // which is a run's (a peer that kept a run broken off in its stretch unsigned
            // takes it in that run's place).
            if (const std::optional<size_t> last = HollowStretchEnd(
                    *batches, i, [&](const BatchHeader& bh) {
                      return reads_now ||
                             store_.MayReadBatch(stream, peer_id, bh.policy_version());
                    })) {
              Batch skip = Skip((*batches)[*last],
                                batch.skip_from() > 0 ? batch.skip_from() : next);
              BatchHeader lh;
              lh.ParseFromString(skip.header());
              const uint64_t end = lh.first_seq() + lh.count() - 1;
              const bool is_skip = skip.skip_from() > 0;
              const std::string signer = skip.signer();
              frame.set_stream(stream);
              *frame.add_batches() = std::move(skip);
              if (!Gather(peer_id, peer, std::move(frame), stream, key, sent, signer)) return;
              if (is_skip) peer.stats.skips_sent++;
              in_flight += end - sent;
              sent = end;
              frame.Clear();
              progressed = true;
              i = *last;
              if (in_flight >= options_.in_flight_changes_max) break;
              continue;
            }
          }
          frame.set_stream(stream);
          const bool end = !batch.signature().empty();
          const std::string signer = batch.signer();
          *frame.add_batches() = std::move(batch);
          run_changes += h.count();
          if (!end) {
            // The rest of its run follows; the signed end may not be written yet (an
            // origin signs its tail once idle): then the run waits for it.
            if (static_cast<size_t>(frame.batches_size()) >= limits::kRunBatchesMax) break;
            continue;
          }
          if (!Gather(peer_id, peer, std::move(frame), stream, key, sent, signer)) return;
          sent += run_changes;
          in_flight += run_changes;
          run_changes = 0;
          frame.Clear();
          progressed = true;
          if (in_flight >= options_.in_flight_changes_max) break;
        }
        if (!progressed) break;
      }
    }
  }
}

void Replicator::AttachCertificate(Peer& peer, const std::string& key_id,
                                   interco::replication::v1::Certificates& to) {
  if (key_id.empty() || peer.certs_sent.contains(key_id)) return;
  if (std::optional<std::string> der = verifier_.Certificate(key_id)) {
    to.add_der(*std::move(der));
    peer.certs_sent.insert(key_id);
    peer.out.certs.push_back(key_id);  // not sent after all if the message is not
  }
}

bool Replicator::Gather(uint32_t peer_id, Peer& peer, BatchFrame frame, const std::string& stream,
                        OriginKey key, uint64_t sent_before, const std::string& signer) {
  const size_t bytes = frame.ByteSizeLong();
  if (!peer.out.frames.empty() && peer.out.frame_bytes + bytes > limits::kPeerMessageGatherBytes &&
      !Flush(peer_id, peer)) {
    return false;
  }
  // (Without its certificate the peer will refuse the run; there is nothing better to
  // send.)
  AttachCertificate(peer, signer, *frame.mutable_certificates());
  peer.out.sent_before.try_emplace({stream, key}, sent_before);
  peer.out.frame_bytes += frame.ByteSizeLong();
  peer.out.frame_batches += static_cast<size_t>(frame.batches_size());
  peer.out.frames.push_back(std::move(frame));
  return true;
}

bool Replicator::Flush(uint32_t peer_id, Peer& peer) {
  Outbox& out = peer.out;
  if (!peer.connected || out.Empty()) return true;
  const int64_t now = clock_.MonotonicMillis();
  const uint64_t reports_version = stability_.version();
  PeerMessage m;
  if (out.hello) {
    Hello* hello = m.mutable_hello();
    hello->set_protocol_version(kProtocolVersion);
    hello->set_reply_requested(out.hello_reply);
    FillSessions(*hello->mutable_sessions());
    hello->set_node(options_.self);
    hello->set_epoch(options_.epoch);
    for (const std::string& stream : store_.Streams()) {
      absl::StatusOr<VersionVector> vv = store_.Position(stream);
      if (!vv.ok()) continue;  // the peer will hear of this stream in the next Hello
      ToProto(stream, *vv, *hello->add_streams());
    }
    for (const std::string& stream : peer.declared) hello->add_push_streams(stream);
    WriteTrees(nullptr, *hello->mutable_trees());
  }
  if (out.status && peer.hello_received) {
    // Everything we hold of the streams we share, which acks whatever is pending; and per
    // stream, the members' reports that grew since the last status, with ours, whole (an
    // ack names only what moved, not what we wrote meanwhile).
    Ack* ack = m.mutable_ack();
    for (const std::string& stream : store_.Streams()) {
      if (!peer.streams.contains(stream)) continue;
      absl::StatusOr<VersionVector> vv = store_.Position(stream);
      if (!vv.ok()) continue;
      ToProto(stream, *vv, *ack->add_streams());
      AddDigest(peer_id, peer, stream, now, *ack);
      if (!MayBeReportBase(*vv)) continue;  // no report of it could be taken
      // The position just stated is the base of the reports: each is then only where it
      // differs (ours, nowhere). Each goes with its member's signature, and the signers'
      // certificates the peer was not sent yet with it.
      interco::replication::v1::StreamReports& reports = *ack->add_reports();
      auto sent = peer.reports_sent.find(stream);
      stability_.Write(stream, sent == peer.reports_sent.end() ? 0 : sent->second, peer_id,
                       &*vv, reports);
      reports.set_stream(stream);
      if (const ReportSignature* own = SignOwnReport(stream, *vv); own != nullptr) {
        WriteReport(options_.self, Epoch(stream), *vv, &*vv, *reports.add_members(), own);
      }
      for (const auto& report : reports.members()) {
        AttachCertificate(peer, report.signer(), *ack->mutable_certificates());
      }
    }
    // Acks of a stream the status leaves out (not in the peer's last Hello) still go.
    for (const auto& [stream, vv] : out.acks) {
      if (!peer.streams.contains(stream)) ToProto(stream, vv, *ack->add_streams());
    }
    FillSessions(*ack->mutable_sessions());
    for (const std::string& stream : peer.declared) ack->add_push_streams(stream);
    WriteTrees(&peer.streams, *ack->mutable_trees());
  } else {
    for (const auto& [stream, vv] : out.acks) ToProto(stream, vv, *m.mutable_ack()->add_streams());
  }
  for (BatchFrame& frame : out.frames) *m.add_frames() = std::move(frame);
  if (m.ByteSizeLong() == 0) {
    out = Outbox();  // a status before the peer's Hello: it comes with the next one
    return true;
  }
  peer.last_flush_ms = now;
  peer.flushed = true;
  if (!transport_.Send(peer_id, m)) {
    // Queue full or session gone: the runs are read again later (their certificates
    // with them); the rest stays due.
    for (const auto& [slot, before] : out.sent_before) {
      uint64_t& sent = peer.sent[slot.first][slot.second];
      sent = std::min(sent, before);
    }
    for (const std::string& key_id : out.certs) peer.certs_sent.erase(key_id);
    out.DropRuns();
    return false;
  }
  peer.stats.messages_sent++;
  peer.stats.batches_sent += out.frame_batches;
  if (out.status && peer.hello_received) {
    peer.last_status_ms = now;
    for (const auto& reports : m.ack().reports()) peer.reports_sent[reports.stream()] = reports_version;
    for (const auto& digest : m.ack().digests()) peer.digest_sent[digest.stream()] = now;
    peer.stats.digests_sent += static_cast<uint64_t>(m.ack().digests_size());
  }
  out = Outbox();
  return true;
}

void Replicator::FlushDue(bool tick) {
  const int64_t now = clock_.MonotonicMillis();
  for (auto& [id, peer] : peers_) {
    if (!peer.connected || peer.out.Empty()) continue;
    const Outbox& out = peer.out;
    const bool gathered = out.hello || out.status || !out.frames.empty();
    const bool idle = !peer.flushed || now - peer.last_flush_ms >= options_.flush_interval_ms;
    const bool ack_due = out.acked_changes >= options_.in_flight_changes_max / 4 ||
                         now - out.ack_since_ms >= options_.ack_delay_ms;
    if ((gathered && (tick || idle)) || (!out.acks.empty() && ack_due)) Flush(id, peer);
  }
}

void Replicator::UpdateTree() {
  const std::vector<std::string> streams = store_.Streams();
  std::map<std::string, TreePlace> position;
  uplink_.clear();
  for (const std::string& stream : streams) {
    // As the spanning tree protocol of Ethernet bridges: the smallest root heard of, then
    // the shortest path to it, then the smallest SIREN.
    TreePlace best{options_.self, 0, 0};
    uint32_t up = 0;
    for (const auto& [id, peer] : peers_) {
      if (!peer.connected || !peer.hello_received || suspects_.contains(id) ||
          !peer.streams.contains(stream) || !store_.MayRead(stream, id)) {
        continue;
      }
      auto it = peer.trees.find(stream);
      // A peer that takes the stream from us only repeats our own place.
      if (it == peer.trees.end() || it->second.uplink == options_.self ||
          it->second.distance + 1 >= limits::kTreeDistanceMax) {
        continue;
      }
      const TreePlace via{it->second.root, it->second.distance + 1, id};
      if (via.root < best.root || (via.root == best.root && via.distance < best.distance) ||
          (via.root == best.root && via.distance == best.distance && up != 0 && id < up)) {
        best = via;
        up = id;
      }
    }
    position[stream] = best;
    if (up != 0) uplink_[stream] = up;
  }
  if (position != position_) {
    // Our place changed: every peer hears of it with its next message.
    position_ = std::move(position);
    for (auto& [id, peer] : peers_) peer.out.status |= peer.connected;
  }
  for (auto& [id, peer] : peers_) {
    if (!peer.connected) continue;
    std::set<std::string> asked;
    for (const std::string& stream : peer.grafted) {
      if (std::binary_search(streams.begin(), streams.end(), stream)) asked.insert(stream);
    }
    for (const auto& [stream, up] : uplink_) {
      if (up == id) asked.insert(stream);
    }
    if (asked != peer.declared) {
      peer.declared = std::move(asked);
      peer.out.status = true;
    }
  }
}

void Replicator::ReadTrees(
    const google::protobuf::RepeatedPtrField<interco::replication::v1::TreePosition>& in,
    Peer& peer) {
  peer.trees.clear();
  for (const auto& t : in) peer.trees[t.stream()] = TreePlace{t.root(), t.distance(), t.uplink()};
}

void Replicator::WriteTrees(
    const std::set<std::string>* only,
    google::protobuf::RepeatedPtrField<interco::replication::v1::TreePosition>& out) const {
  for (const auto& [stream, place] : position_) {
    if (only != nullptr && !only->contains(stream)) continue;
    auto* t = out.Add();
    t->set_stream(stream);
    t->set_root(place.root);
    t->set_distance(place.distance);
    t->set_uplink(place.uplink);
  }
}

bool Replicator::PushesTo(uint32_t peer_id, const Peer& peer, const std::string& stream) const {
  if (peer.wants.contains(stream)) return true;
  auto it = uplink_.find(stream);
  return it != uplink_.end() && it->second == peer_id;
}

void Replicator::MarkSuspect(uint32_t peer_id) {
  if (!suspects_.insert(peer_id).second) return;
  peers_[peer_id].stats.suspect = true;
  UpdateTree();
}

void Replicator::NoteLags(uint32_t peer_id, Peer& peer) {
  const int64_t now = clock_.MonotonicMillis();
  for (const auto& [stream, theirs] : peer.known) {
    if (peer.lags.contains(stream) || peer.grafted.contains(stream) || !Replicates(stream)) continue;
    auto up = uplink_.find(stream);
    if (up != uplink_.end() && up->second == peer_id) continue;  // it pushes to us anyway
    absl::StatusOr<VersionVector> ours = store_.Position(stream);
    if (!ours.ok()) continue;
    Lag lag;
    for (const auto& [key, pos] : theirs) {
      if (frozen_.contains(key.origin)) continue;
      auto it = ours->find(key);
      if (it == ours->end() || it->second.seq < pos.seq) lag.target[key] = pos;
    }
    if (lag.target.empty()) continue;
    lag.since_ms = now;
    lag.held = HeldOf(stream, lag.target);
    peer.lags.emplace(stream, std::move(lag));
  }
}

uint64_t Replicator::HeldOf(const std::string& stream, const VersionVector& target) {
  absl::StatusOr<VersionVector> ours = store_.Position(stream);
  if (!ours.ok()) return 0;
  uint64_t held = 0;
  for (const auto& [key, pos] : target) {
    auto it = ours->find(key);
    if (it != ours->end()) held += it->second.seq;
  }
  return held;
}

void Replicator::CheckLags(Peer& peer) {
  const int64_t now = clock_.MonotonicMillis();
  bool grafted = false;
  for (auto it = peer.lags.begin(); it != peer.lags.end();) {
    absl::StatusOr<VersionVector> ours = store_.Position(it->first);
    if (!ours.ok() || Dominates(*ours, it->second.target)) {
      it = peer.lags.erase(it);
      continue;
    }
    // Still coming in (from the uplink, say): wait on.
    if (const uint64_t held = HeldOf(it->first, it->second.target); held > it->second.held) {
      it->second.held = held;
      it->second.since_ms = now;
    }
    if (now - it->second.since_ms < options_.graft_delay_ms) {
      ++it;
      continue;
    }
    // The tree did not bring it: this peer pushes the stream to us too.
    peer.grafted.insert(it->first);
    peer.stats.grafts++;
    grafted = true;
    it = peer.lags.erase(it);
  }
  if (grafted) UpdateTree();
}

void Replicator::FillSessions(interco::replication::v1::Sessions& out) {
  for (const auto& [id, peer] : peers_) {
    if (peer.connected && peer.hello_received) out.add_nodes(id);
  }
}

void Replicator::PumpAll() {
  for (auto& [id, peer] : peers_) Pump(id, peer);
}

void Replicator::AnnounceStreamsIfChanged() {
  std::vector<std::string> streams = store_.Streams();
  if (streams == announced_streams_) return;
  announced_streams_ = std::move(streams);
  for (auto& [id, peer] : peers_) {
    if (peer.connected) SendHello(peer, /*reply_requested=*/false);
  }
  UpdateTree();
}

void Replicator::OnLocalCommit() {
  AnnounceStreamsIfChanged();
  PumpAll();
  FlushDue(/*tick=*/false);
}

void Replicator::Tick() {
  AnnounceStreamsIfChanged();
  const int64_t now = clock_.MonotonicMillis();
  for (auto& [id, peer] : peers_) {
    if (!peer.connected) continue;
    if (!peer.hello_received) {
      // Our Hello or theirs may have been lost: restate ours and ask for theirs.
      if (now - peer.last_hello_ms >= options_.restate_interval_ms) {
        SendHello(peer, /*reply_requested=*/true);
      }
      continue;
    }
    if (now - peer.last_status_ms >= options_.status_interval_ms) peer.out.status = true;
    // The ack timeout runs from the last progress while something is in flight: with
    // nothing in flight, the clock stays at now.
    const uint64_t in_flight = InFlight(peer);
    if (in_flight == 0) peer.last_progress_ms = now;
    if (in_flight > 0 && now - peer.last_progress_ms >= options_.ack_timeout_ms) {
      peer.stats.rewinds++;
      Rewind(peer);
    }
    CheckLags(peer);
  }
  CollectOwned();
  PumpAll();
  FlushDue(/*tick=*/true);
}

void Replicator::CollectOwned() {
  const int64_t now = clock_.MonotonicMillis();
  // Journal entries stamped before the retention go; the cut moves with the wall clock.
  uint64_t journal_before = 0;
  if (options_.journal_retention_ms > 0) {
    const int64_t cut_ms = clock_.NowMillis() - options_.journal_retention_ms;
    if (cut_ms > 0) journal_before = HybridLogicalClock::Pack(static_cast<uint64_t>(cut_ms), 0);
  }
  for (const std::string& stream : store_.Streams()) {
    if (store_.OwnerOf(stream) != options_.self) continue;
    auto tried = collect_tried_.find(stream);
    if (tried != collect_tried_.end() && now - tried->second.first < options_.collect_interval_ms) {
      continue;
    }
    CollectionPlan plan;
    // The members the frontier waits for, as the store says now: tombstones are collected
    // only if the policy still names no other writer when the collection is staged.
    plan.members = store_.Members(stream);
    absl::StatusOr<VersionVector> ours = store_.Position(stream);
    if (!ours.ok()) continue;
    const MemberWatch* watch = nullptr;
    if (options_.member_retention_ms > 0) {
      auto w = watches_.try_emplace(stream, options_.member_retention_ms).first;
      w->second.Mark(now, *ours);
      watch = &w->second;
    }
    const std::set<uint32_t> excluded = ExcludedOf(stream, plan.members, *ours, watch);
    plan.frontier = FrontierOf(stream, *ours, plan.members, excluded);
    plan.journal_before = journal_before;
    plan.compaction_changes = options_.compaction_changes;
    plan.excluded.assign(excluded.begin(), excluded.end());
    for (const auto& [key, pos] : *ours) {
      if (pos.seq > 0 && excluded.contains(key.origin)) plan.cuts[key].seq = pos.seq;
    }
    // Tombstones are looked for again once the frontier moved; journal entries each time
    // (the store knows the oldest stamp of its journals, and says at once if none is due).
    const bool moved = !plan.frontier.empty() &&
                       (tried == collect_tried_.end() ||
                        Missing(plan.frontier, tried->second.second) > 0);
    if (!moved && journal_before == 0) continue;
    VersionVector frontier = plan.frontier;
    if (!moved) plan.frontier.clear();
    plan.required = stability_.Requirement(stream, excluded);
    // An excluded member's changes that this node holds are no less concurrent with what
    // it collects: they must be everywhere first, as a member's taken report would be.
    for (const auto& [key, cut] : plan.cuts) {
      OriginPos& r = plan.required[key];
      r.seq = std::max(r.seq, cut.seq);
    }
    absl::StatusOr<bool> collected = store_.Collect(stream, plan);
    // A failure (the store busy, say) is tried again at the next interval, whatever the
    // frontier; an answer about tombstones holds until the frontier moves.
    collect_tried_[stream] = {now, collected.ok() ? std::move(frontier) : VersionVector()};
    if (collected.ok() && *collected) {
      collections_++;
      OnLocalCommit();
    }
  }
}

const ReportSignature* Replicator::SignOwnReport(const std::string& stream,
                                                const VersionVector& held) {
  OwnReport& own = own_reports_[stream];
  const uint32_t epoch = Epoch(stream);
  // Signed again when the position, the epoch or the key (a rotation) changed.
  if (own.signature.signature.empty() || own.epoch != epoch || Missing(held, own.held) > 0 ||
      Missing(own.held, held) > 0 || own.signature.signer != signer_.KeyId()) {
    absl::StatusOr<ReportSignature> signature =
        SignReport(signer_, clock_.NowMillis(), stream, options_.self, epoch, held);
    if (!signature.ok()) {
      own_reports_.erase(stream);
      return nullptr;
    }
    own.epoch = epoch;
    own.held = held;
    own.signature = *std::move(signature);
  }
  return &own.signature;
}

void Replicator::NoteReport(uint32_t peer_id, const interco::replication::v1::StreamPosition& sp,
                            uint32_t epoch) {
  if (!Replicates(sp.stream())) return;
  absl::StatusOr<VersionVector> ours = store_.Position(sp.stream());
  if (ours.ok()) stability_.Report(sp.stream(), peer_id, FromProto(sp), *ours, epoch);
}

VersionVector Replicator::StableFrontier(const std::string& stream) {
  absl::StatusOr<VersionVector> ours = store_.Position(stream);
  if (!ours.ok()) return {};
  const std::vector<uint32_t> members = store_.Members(stream);
  return FrontierOf(stream, *ours, members,
                    ExcludedOf(stream, members, *ours, WatchOf(stream)));
}

std::set<uint32_t> Replicator::Excluded(const std::string& stream) {
  absl::StatusOr<VersionVector> ours = store_.Position(stream);
  if (!ours.ok()) return {};
  return ExcludedOf(stream, store_.Members(stream), *ours, WatchOf(stream));
}

const MemberWatch* Replicator::WatchOf(const std::string& stream) const {
  auto watch = watches_.find(stream);
  return watch == watches_.end() ? nullptr : &watch->second;
}

VersionVector Replicator::FrontierOf(const std::string& stream, const VersionVector& position,
                                     const std::vector<uint32_t>& members,
                                     const std::set<uint32_t>& excluded) {
  stability_.Take(stream, position);
  return stability_.Frontier(stream, position, members, excluded);
}

std::set<uint32_t> Replicator::ExcludedOf(const std::string& stream,
                                          const std::vector<uint32_t>& members,
                                          const VersionVector& position,
                                          const MemberWatch* watch) {
  std::set<uint32_t> out;
  // Left out by a collection, and not back: what it says it holds lacks the latest one.
  // Once it holds it, it applied it (its writes from then on name that version or a later
  // one) and counts again, with what the reports taken of it say (until a newer one is
  // taken, possibly less than it holds: that only holds the frontier back). A member not
  // heard of since this engine started is not judged so: it counts, without a report,
  // which holds the frontier back until it reports or the retention leaves it out again.
  const Exclusions exclusions = store_.ExclusionsOf(stream);
  for (const auto& [member, e] : exclusions.members()) {
    if (member == options_.self) continue;
    const VersionVector* reported = stability_.Reported(stream, member);
    if (reported == nullptr) continue;
    const auto held = reported->find(OriginKey{e.at().origin(), e.at().epoch()});
    if (held == reported->end() || held->second.seq < e.at().seq()) out.insert(member);
  }
  if (watch == nullptr) return out;
  // Absent: it does not say it holds, member_retention_ms later, what this node held then.
  std::set<uint32_t> candidates(members.begin(), members.end());
  for (uint32_t m : stability_.Heard(stream)) candidates.insert(m);
  for (const auto& [key, pos] : position) candidates.insert(key.origin);
  const int64_t now = clock_.MonotonicMillis();
  static const VersionVector kNothing;
  for (uint32_t m : candidates) {
    if (m == options_.self || m == 0) continue;
    const VersionVector* reported = stability_.Reported(stream, m);
    if (watch->Absent(now, reported == nullptr ? kNothing : *reported)) out.insert(m);
  }
  return out;
}

uint32_t Replicator::Epoch(const std::string& stream) {
  const uint32_t epoch = store_.OriginEpoch(stream);
  return epoch != 0 ? epoch : options_.epoch;
}

std::map<std::string, StabilitySummary> Replicator::Stabilities() {
  std::map<std::string, StabilitySummary> out;
  for (const std::string& stream : store_.Streams()) {
    absl::StatusOr<VersionVector> ours = store_.Position(stream);
    if (!ours.ok()) continue;
    stability_.Take(stream, *ours);
    const std::vector<uint32_t> members = store_.Members(stream);
    const std::set<uint32_t> excluded = ExcludedOf(stream, members, *ours, WatchOf(stream));
    out[stream] = stability_.Summarize(stream, *ours, members, excluded);
  }
  return out;
}

std::map<uint32_t, PeerStats> Replicator::Stats() {
  std::map<uint32_t, PeerStats> out;
  for (auto& [id, peer] : peers_) {
    PeerStats s = peer.stats;
    s.missing_by_origin.clear();
    s.in_flight = InFlight(peer);
    s.uplink_streams.clear();
    s.push_streams.clear();
    for (const std::string& stream : store_.Streams()) {
      auto up = uplink_.find(stream);
      if (up != uplink_.end() && up->second == id) s.uplink_streams.push_back(stream);
      if (peer.connected && peer.streams.contains(stream) && PushesTo(id, peer, stream)) {
        s.push_streams.push_back(stream);
      }
    }
    for (const std::string& stream : store_.Streams()) {
      if (peer.hello_received && !peer.streams.contains(stream)) continue;
      if (!store_.MayRead(stream, id)) continue;
      absl::StatusOr<VersionVector> vv = store_.Position(stream);
      if (!vv.ok()) continue;
      const VersionVector& known = peer.known[stream];
      for (const auto& [key, pos] : *vv) {
        auto it = known.find(key);
        const uint64_t have = it == known.end() ? 0 : it->second.seq;
        if (pos.seq > have) s.missing_by_origin[key.origin] += pos.seq - have;
      }
    }
    out[id] = std::move(s);
  }
  return out;
}

}  // namespace interco::replication
