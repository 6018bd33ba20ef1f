#include "tests/sim/sim_store.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "replication/base/check.h"
#include "replication/base/strings.h"
#include "replication/change_log.h"
#include "replication/compaction.h"
#include "replication/conflict_journal.h"
#include "replication/ids.h"
#include "replication/repair.h"

namespace interco::sim {

using interco::replication::v1::Batch;
using interco::replication::v1::BatchHeader;
using interco::replication::v1::Change;
using replication::OriginKey;
using replication::RecordState;

std::string SimHasher::Sha256(std::string_view data) {
  // Four FNV-1a lanes with different offsets: 32 bytes, deterministic, fast.
  std::string out;
  for (uint64_t lane = 0; lane < 4; ++lane) {
    uint64_t h = 0xcbf29ce484222325ULL ^ (lane * 0x9e3779b97f4a7c15ULL);
    for (char c : data) {
      h ^= static_cast<uint8_t>(c);
      h *= 0x100000001b3ULL;
    }
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(h >> (8 * i)));
  }
  return out;
}

std::string SimTrust::CertificateOf(uint32_t origin) {
  return absl::StrCat("sim-cert:", origin);
}

std::string SimTrust::SignatureOf(uint32_t origin, std::string_view message) {
  return hasher_.Sha256(absl::StrCat("sim-key:", origin, "|", ToAbsl(message)));
}

absl::Status SimTrust::Verify(uint32_t origin, std::string_view key_id, int64_t /*at_millis*/,
                              std::string_view message, std::string_view signature) {
  auto it = certs_.find(std::string(key_id));
  if (it == certs_.end()) return absl::NotFoundError("unknown signer certificate");
  if (it->second.second != origin) {
    return absl::PermissionDeniedError("certificate of another authority");
  }
  if (signature != SignatureOf(origin, message)) {
    return absl::UnauthenticatedError("signature does not verify");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> SimTrust::AddCertificate(std::string_view der) {
  uint32_t origin = 0;
  absl::string_view rest = ToAbsl(der);
  if (!absl::ConsumePrefix(&rest, "sim-cert:") || !absl::SimpleAtoi(rest, &origin)) {
    return absl::InvalidArgumentError("not a certificate of the simulated federation");
  }
  std::string cert = CertificateOf(origin);
  std::string key_id = hasher_.Sha256(cert);
  certs_[key_id] = {std::move(cert), origin};
  return key_id;
}

std::optional<std::string> SimTrust::Certificate(std::string_view key_id) {
  auto it = certs_.find(std::string(key_id));
  if (it == certs_.end()) return std::nullopt;
  return it->second.first;
}

SimTrust::OriginSigner::OriginSigner(SimTrust& trust, uint32_t origin)
    : trust_(trust), origin_(origin) {
  key_id_ = *trust_.AddCertificate(CertificateOf(origin));
}

absl::StatusOr<std::string> SimTrust::OriginSigner::Sign(std::string_view key_id,
                                                         std::string_view message) {
  if (key_id != key_id_) return absl::NotFoundError("not this origin's key");
  return trust_.SignatureOf(origin_, message);
}

namespace {
std::vector<std::string> Sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}
}  // namespace

SimStore::SimStore(uint32_t origin, std::vector<std::string> streams, replication::Clock& clock,
                   replication::Hasher& hasher, replication::Signer* signer,
                   const replication::RegistrySchema& schema)
    : origin_(origin),
      streams_(Sorted(std::move(streams))),
      hasher_(hasher),
      signer_(signer),
      schema_(schema),
      clock_(clock),
      hlc_(clock, 0) {}

void SimStore::AddStream(const std::string& stream) {
  auto it = std::lower_bound(streams_.begin(), streams_.end(), stream);
  if (it == streams_.end() || *it != stream) streams_.insert(it, stream);
}

absl::StatusOr<replication::VersionVector> SimStore::Position(const std::string& stream) {
  return position_[stream];
}

absl::StatusOr<replication::StateDigest> SimStore::Digest(const std::string& stream) {
  replication::StateDigest out;
  out.position = position_[stream];
  for (const auto& [id, state] : records_[stream]) {
    if (!replication::IsLive(state)) continue;
    out.live_sum += replication::FingerprintDigest(hasher_, id, state.SerializeAsString());
    out.live_records++;
  }
  return out;
}

absl::StatusOr<std::vector<Batch>> SimStore::ReadBatches(const std::string& stream, OriginKey key,
                                                         uint64_t after_seq, size_t max_batches) {
  std::vector<Batch> out;
  const auto& batches = log_[stream][key];
  // The batch holding after_seq + 1 starts at or before it.
  auto it = batches.upper_bound(after_seq + 1);
  if (it != batches.begin()) --it;
  for (; it != batches.end() && out.size() < max_batches; ++it) {
    BatchHeader h;
    h.ParseFromString(it->second.header());
    if (h.first_seq() + h.count() - 1 <= after_seq) continue;
    out.push_back(it->second);
  }
  return out;
}

absl::Status SimStore::ApplyBatch(const std::string& stream,
                                  const replication::DecodedBatch& batch) {
  const BatchHeader& h = batch.header;
  const OriginKey key{h.origin(), h.epoch()};
  replication::OriginPos& pos = position_[stream][key];
  if (!replication::Follows(batch, pos.seq) ||
      (replication::ChainsFrom(batch, pos.seq) && h.prev_hash() != pos.last_hash)) {
    return absl::FailedPreconditionError("not the next batch of its origin");
  }
  const uint64_t held_before = pos.seq;
  if (absl::Status s = Authorize(stream, batch); !s.ok()) return s;
  for (const Change& c : batch.changes) {
    if (c.has_policy()) continue;
    if (absl::Status s = replication::ValidateDelta(schema_, c.delta(), h.origin()); !s.ok()) {
      return s;
    }
  }
  ApplyChecked(stream, batch);
  hollow_applied_ += batch.raw.hollow() ? 1 : 0;
  // A collection that leaves members out may refuse batches applied here before it came
  // (all of theirs here beyond its cuts: they name an earlier version).
  for (const Change& c : batch.changes) {
    const interco::replication::v1::Collection& collection = c.policy().collection();
    if (!c.has_policy() || collection.excluded().empty()) continue;
    if (const replication::VersionVector overrun =
            exclusions_[stream].Overrun(position_[stream], collection);
        !overrun.empty()) {
      Replay(stream, overrun);  // goes on in a new epoch if some were ours
    }
    // Left out, this node's epoch there ends at its cut (so that stamps after it are known
    // not to be of it): if the owner held any of it, it goes on in a new one.
    for (const auto& cut : collection.cuts()) {
      if (cut.origin() == origin_ && cut.epoch() == OriginEpoch(stream)) {
        SignTail(stream);
        epochs_[stream] = OriginEpoch(stream) + 1;
        break;
      }
    }
    break;
  }
  // A collection applied: some batches may now be hollow.
  if (std::any_of(batch.changes.begin(), batch.changes.end(),
                  [](const Change& c) { return c.policy().has_collection(); })) {
    Compact(stream);
  }
  if (on_apply) {
    on_apply(stream, key, held_before + 1, static_cast<uint32_t>(batch.last_seq() - held_before));
  }
  return absl::OkStatus();
}

void SimStore::ApplyChecked(const std::string& stream, const replication::DecodedBatch& batch) {
  const BatchHeader& h = batch.header;
  const OriginKey key{h.origin(), h.epoch()};
  replication::OriginPos& pos = position_[stream][key];
  auto& records = records_[stream];
  auto policies = policies_.find(stream);
  const replication::VersionVector& before = position_[stream];
  for (size_t i = 0; i < batch.changes.size(); ++i) {
    const Change& c = batch.changes[i];
    const uint64_t seq = h.first_seq() + i;
    if (!c.has_policy()) {
      if (on_change) on_change(stream, key, seq, c);
      auto it = records.find(c.key());
      UpdateJournal(stream, c.key(), it == records.end() ? RecordState() : it->second, c.delta(),
                    [&](replication::Stamp s) { return replication::ReceivedBefore(before, h, s); });
      MergeChange(stream, c.key(), c.delta(), key, seq);
    } else if (policies != policies_.end()) {
      replication::PolicyHistory& history = policies->second;
      history.Add(c.policy().version(),
                  *replication::RegistryPolicy::Compile(
                      replication::OriginToSiren(history.owner()), c.policy().policy()));
      if (history.current_version() == c.policy().version()) {
        policy_in_force_[stream] = c.policy().policy();
      }
      if (c.policy().has_collection()) {
        CollectAt(stream, replication::FromDots(c.policy().collection().frontier()),
                  c.policy().collection().journal_before());
        interco::replication::v1::Dot at;
        at.set_origin(h.origin());
        at.set_epoch(h.epoch());
        at.set_seq(seq);
        exclusions_[stream].Apply(c.policy().collection(), c.policy().version(), at);
      }
    }
  }
  if (batch.raw.skip_from() > 0) {
    // Logged for what it brought (as the node does), or in the place of the log's
    // trailing unsigned batches (a run broken off here) if it reaches back over them.
    auto& batches = log_[stream][key];
    uint64_t at = pos.seq + 1;
    // (A replay applies the log again: entries after the position are still there.)
    const auto end = batches.upper_bound(pos.seq);
    auto tail = end;
    while (tail != batches.begin() && std::prev(tail)->second.signature().empty()) --tail;
    // (A skip whose header comes right after them proves them, and they stay.)
    if (tail != end && batch.first_seq() <= tail->first &&
        !replication::ChainsFrom(batch, pos.seq)) {
      at = tail->first;
      batches.erase(tail, end);
    }
    batches[at] = replication::Skip(batch.raw, at);
  } else {
    log_[stream][key][h.first_seq()] = batch.raw;
  }
  pos.seq = batch.last_seq();
  pos.max_hlc = std::max(pos.max_hlc, h.max_hlc());
  pos.last_hash = batch.header_hash;
  // Later local writes must be stamped after what was just received.
  hlc_.AdvanceTo(h.max_hlc());
}

void SimStore::Replay(const std::string& stream, const replication::VersionVector& overrun) {
  replays_++;
  SignTail(stream);  // the run's bookkeeping would outlive batches taken out
  auto& log = log_[stream];
  bool own = false;
  for (const auto& [key, cut] : overrun) {
    auto& batches = log[key];
    for (auto it = batches.upper_bound(cut.seq); it != batches.end();) {
      refused_.push_back(Refused{stream, key, std::move(it->second)});
      it = batches.erase(it);
    }
    if (batches.empty()) log.erase(key);
    own |= key.origin == origin_;
  }
  // Back to the registry as declared, then every batch of the log again. What it
  // collects is told again (without the refused changes, a record may now go with a
  // collection it outlived); changes and deliveries were told the first time.
  records_[stream].clear();
  conflicts_[stream].clear();
  journal_before_.erase(stream);
  removals_[stream].clear();
  purged_.erase(stream);
  tombstones_[stream].clear();
  position_[stream].clear();
  exclusions_.erase(stream);
  if (auto d = declared_.find(stream); d != declared_.end()) {
    const auto [owner, policy] = d->second;
    DeclarePolicy(stream, owner, policy);
  }
  auto saved = std::make_tuple(std::move(on_change), std::move(on_apply));
  on_change = nullptr;
  on_apply = nullptr;
  for (bool progress = true; progress;) {
    progress = false;
    for (const auto& [key, batches] : log) {
      for (;;) {
        const uint64_t next = position_[stream][key].seq + 1;
        auto it = batches.find(next);
        if (it == batches.end()) break;
        absl::StatusOr<replication::DecodedBatch> decoded =
            replication::DecodeBatch(it->second, hasher_);
        INTERCO_CHECK(decoded.ok());
        const absl::Status why = Authorize(stream, *decoded);
        if (absl::IsUnavailable(why)) break;  // its policy version or requirements later
        INTERCO_CHECK(why.ok());  // it entered before, and nothing it needs was taken out
        ApplyChecked(stream, *decoded);
        progress = true;
      }
    }
  }
  // Everything left in the log entered again.
  for (const auto& [key, batches] : log) {
    BatchHeader last;
    INTERCO_CHECK(!batches.empty() && last.ParseFromString(batches.rbegin()->second.header()));
    INTERCO_CHECK(position_[stream][key].seq == last.first_seq() + last.count() - 1);
  }
  std::tie(on_change, on_apply) = std::move(saved);
  // Its own chain goes on in a new epoch: the sequence numbers refused may have reached
  // other nodes, which must never see them again with other changes.
  if (own) epochs_[stream] = OriginEpoch(stream) + 1;
}

std::vector<std::pair<std::string, RecordState>> SimStore::Commit(
    const std::string& stream, const std::vector<Write>& writes) {
  std::vector<std::pair<std::string, RecordState>> deltas;
  std::vector<std::string> changes;
  uint64_t max_hlc = 0;
  auto& records = records_[stream];
  if (const replication::PolicyHistory* p = Policies(stream);
      p != nullptr && !p->Current().MayWrite(origin_)) {
    return deltas;  // refused: nothing acknowledged
  }
  // (No entry made for an epoch this commit may not write in: positions name epochs held.)
  const auto own = position_[stream].find(OriginKey{origin_, OriginEpoch(stream)});
  const uint64_t first_seq = (own == position_[stream].end() ? 0 : own->second.seq) + 1;
  for (const Write& w : writes) {
    const replication::Stamp stamp{hlc_.Now(), origin_};
    auto found = records.find(w.key);
    const RecordState current = found == records.end() ? RecordState() : found->second;
    auto plan = replication::PlanLocalWrite(schema_, current, w.write, stamp);
    if (!plan.ok() || !plan->has_value()) continue;
    // A local write replaces what it saw; it can only end a life, and its journal.
    UpdateJournal(stream, w.key, current, (*plan)->delta, [](replication::Stamp) { return true; });
    if (auto t = replication::TombstoneSet((*plan)->merged, (*plan)->delta, OriginKey{origin_, OriginEpoch(stream)},
                                           first_seq + changes.size())) {
      tombstones_[stream][w.key] = *t;
    }
    IndexRemovals(stream, w.key, (*plan)->delta, OriginKey{origin_, OriginEpoch(stream)}, first_seq + changes.size());
    records[w.key] = (*plan)->merged;
    Change c;
    c.set_key(w.key);
    *c.mutable_delta() = (*plan)->delta;
    c.set_author(absl::StrCat(origin_, "/sim"));
    replication::CompactChange(c, origin_, stamp.hlc);
    changes.push_back(c.SerializeAsString());
    deltas.emplace_back(w.key, std::move((*plan)->delta));
    max_hlc = stamp.hlc;
  }
  if (!changes.empty()) AppendOwn(stream, std::move(changes), max_hlc, /*carries_policy=*/false);
  return deltas;
}

void SimStore::AppendOwn(const std::string& stream, std::vector<std::string> changes,
                         uint64_t max_hlc, bool carries_policy) {
  const OriginKey key{origin_, OriginEpoch(stream)};
  const replication::VersionVector before = position_[stream];
  replication::OriginPos& pos = position_[stream][key];
  replication::BatchParams params;
  params.origin = origin_;
  params.epoch = OriginEpoch(stream);
  params.stream = stream;
  params.first_seq = pos.seq + 1;
  params.prev_hash = pos.last_hash;
  params.max_hlc = max_hlc;
  if (const replication::PolicyHistory* p = Policies(stream); p != nullptr) {
    params.policy_version = p->current_version();
  }
  const size_t count = changes.size();
  auto run = runs_.find(stream);
  if (run != runs_.end() && (run->second.policy_version != params.policy_version ||
                             run->second.epoch != OriginEpoch(stream))) {
    SignTail(stream);  // a run holds one policy version, of one chain
    run = runs_.end();
  }
  params.run_index = run == runs_.end() ? 0 : static_cast<uint32_t>(run->second.batches);
  params.carries_policy = carries_policy;
  std::string header_hash;
  Batch batch =
      *replication::BuildBatch(params, std::move(changes), hasher_, nullptr, &header_hash);
  const size_t length = (run == runs_.end() ? 0 : run->second.batches) + 1;
  if (signer_ != nullptr && length >= run_batches_max) {
    INTERCO_CHECK(replication::SignBatch(batch, *signer_, clock_.NowMillis()).ok());
    runs_.erase(stream);
  } else {
    runs_[stream] = Run{OriginEpoch(stream), length, params.policy_version, params.first_seq};
    unsigned_batches_++;
  }
  log_[stream][key][params.first_seq] = std::move(batch);
  pos.seq += count;
  pos.max_hlc = std::max(pos.max_hlc, max_hlc);
  pos.last_hash = header_hash;
  if (on_own_batch) on_own_batch(stream, before, pos.seq);
}

void SimStore::MergeChange(const std::string& stream, const std::string& id,
                           const RecordState& delta, OriginKey key, uint64_t seq) {
  auto& records = records_[stream];
  RecordState& state = records[id];
  const RecordState before = state;
  replication::MergeRecordState(state, delta);
  // As the node does: a remove concurrent with a collected one brings nothing back.
  replication::DropPurgedRemovals(before, delta, state, purged_[stream]);
  if (auto t = replication::TombstoneSet(state, delta, key, seq)) tombstones_[stream][id] = *t;
  IndexRemovals(stream, id, delta, key, seq);
  if (state.causal_length() == 0 && state.fields().empty()) records.erase(id);
}

void SimStore::IndexRemovals(const std::string& stream, const std::string& id,
                             const RecordState& delta, OriginKey key, uint64_t seq) {
  RecordState removals = replication::RemovalsOf(delta);
  if (removals.fields_size() > 0) removals_[stream][{key, seq, id}] = std::move(removals);
}

bool SimStore::Purge(const std::string& stream, const replication::VersionVector& frontier,
                     bool dry_run) {
  auto& records = records_[stream];
  auto& index = removals_[stream];
  bool resolved = false;
  for (auto it = index.begin(); it != index.end();) {
    const auto& [key, seq, id] = it->first;
    auto f = frontier.find(key);
    if (f == frontier.end() || f->second.seq < seq) {
      ++it;  // made by a change the collection does not cover
      continue;
    }
    auto record = records.find(id);
    RecordState after = record == records.end() ? RecordState() : record->second;
    bool pending = false;
    const size_t n = replication::PurgeRemovals(after, it->second, frontier, &pending);
    // As the node does: the elements whose add is covered go, and the entry waits for a
    // later collection if some add is not.
    if (pending && n == 0) {
      ++it;
      continue;
    }
    resolved = true;
    if (dry_run) return true;
    if (n > 0) {
      if (on_purge) on_purge(stream, id, record->second, after);
      record->second = std::move(after);
    }
    it = pending ? std::next(it) : index.erase(it);
  }
  if (!dry_run) replication::MergeFrontier(frontier, purged_[stream]);
  return resolved;
}

replication::VersionVector SimStore::StampFrontier(const std::string& stream,
                                                   replication::VersionVector frontier) {
  for (auto& [key, pos] : frontier) {
    const auto& batches = log_[stream][key];
    auto it = batches.upper_bound(pos.seq);
    INTERCO_CHECK(it != batches.begin());
    --it;
    BatchHeader h;
    h.ParseFromString(it->second.header());
    if (h.first_seq() + h.count() - 1 == pos.seq) {
      pos.max_hlc = h.max_hlc();
      continue;
    }
    // Frontiers end batches: this one ends inside a skip received here, whose batches'
    // stamps are gone. The greatest stamp before the skip is below them (as the node does).
    INTERCO_CHECK(it->second.skip_from() > 0);
    pos.max_hlc = 0;
    if (it != batches.begin()) {
      BatchHeader before;
      before.ParseFromString(std::prev(it)->second.header());
      pos.max_hlc = before.max_hlc();
    }
  }
  // As the node does: every epoch of the frontier's origins, at 0 if none of it is under
  // it (replication::StampedAtOrBelow then knows an origin has several).
  std::set<uint32_t> origins;
  for (const auto& [key, pos] : frontier) origins.insert(key.origin);
  for (const auto& [key, pos] : position_[stream]) {
    if (origins.contains(key.origin)) frontier.try_emplace(key);
  }
  return frontier;
}

void SimStore::CollectAt(const std::string& stream, const replication::VersionVector& frontier,
                         uint64_t journal_before) {
  Purge(stream, frontier, /*dry_run=*/false);
  if (journal_before > journal_before_[stream]) {
    journal_before_[stream] = journal_before;
    auto& journals = conflicts_[stream];
    for (auto it = journals.begin(); it != journals.end();) {
      bool changed = false;
      replication::ExpireConflicts(journal_before, it->second, &changed);
      it = it->second.ByteSizeLong() == 0 ? journals.erase(it) : std::next(it);
    }
  }
  auto& records = records_[stream];
  auto& tombstones = tombstones_[stream];
  for (auto it = tombstones.begin(); it != tombstones.end();) {
    auto f = frontier.find(it->second.key);
    if (f == frontier.end() || f->second.seq < it->second.seq) {
      ++it;  // set by a change the collection does not cover
      continue;
    }
    auto record = records.find(it->first);
    if (record != records.end() && replication::Collectable(record->second, it->second, frontier)) {
      const replication::Tombstone t = it->second;
      records.erase(record);
      conflicts_[stream].erase(it->first);
      if (on_collect) on_collect(stream, it->first, t);
    }
    it = tombstones.erase(it);  // collected, or no longer the record's tombstone
  }
}

absl::StatusOr<bool> SimStore::Collect(const std::string& stream,
                                       const replication::CollectionPlan& plan) {
  auto history = policies_.find(stream);
  if (history == policies_.end() || history->second.owner() != origin_) return false;
  // As the node does: tombstones where the members are settled, journal entries anywhere.
  bool tombstones = replication::CollectionAllowed(history->second) && !plan.frontier.empty();
  for (uint32_t w : history->second.AllWriters()) {
    tombstones = tombstones &&
                 std::find(plan.members.begin(), plan.members.end(), w) != plan.members.end();
  }
  bool removals = false;
  replication::VersionVector frontier;
  // As the node does: the exclusions this collection leaves in force close the epochs of
  // the members left out at their cuts.
  interco::replication::v1::Collection leaving;
  for (uint32_t m : plan.excluded) leaving.add_excluded(m);
  replication::ToDots(plan.cuts, *leaving.mutable_cuts());
  replication::Exclusions exclusions = exclusions_[stream];
  exclusions.Apply(leaving, 0, interco::replication::v1::Dot());
  // As the node does: also when the frontier moved far enough, and the journals' cut
  // with it, for the compaction of the change log.
  const bool compaction = tombstones && plan.compaction_changes > 0 &&
                          plan.journal_before > journal_before_[stream] &&
                          replication::ChangesBeyond(purged_[stream], plan.frontier) >=
                              plan.compaction_changes;
  if (tombstones) {
    frontier = StampFrontier(stream, plan.frontier);
    replication::MarkClosed(exclusions, frontier);
    bool any = false;
    for (const auto& [id, t] : tombstones_[stream]) {
      // A record to collect, or an entry of a record that moved on (as the node does).
      auto f = frontier.find(t.key);
      any |= f != frontier.end() && f->second.seq >= t.seq;
    }
    removals = Purge(stream, frontier, /*dry_run=*/true);
    tombstones = any;
  }
  bool journals = false;
  if (plan.journal_before > journal_before_[stream]) {
    for (const auto& [id, journal] : conflicts_[stream]) {
      const uint64_t oldest = replication::OldestConflict(journal);
      journals |= oldest != 0 && oldest < plan.journal_before;
    }
  }
  if (!tombstones && !removals && !journals && !compaction) return false;
  const uint64_t version = hlc_.Now();
  Change c;
  *c.mutable_policy()->mutable_policy() = policy_in_force_[stream];
  c.mutable_policy()->set_version(version);
  auto& collection = *c.mutable_policy()->mutable_collection();
  if (tombstones || removals || compaction) {
    replication::ToDots(frontier, *collection.mutable_frontier(), /*keep_empty=*/true);
    replication::ToDots(plan.required, *collection.mutable_required());
    *collection.mutable_excluded() = leaving.excluded();
    *collection.mutable_cuts() = leaving.cuts();
  }
  if (journals || compaction) collection.set_journal_before(plan.journal_before);
  c.set_author(absl::StrCat(origin_, "/sim-collector"));
  AppendOwn(stream, {c.SerializeAsString()}, version, /*carries_policy=*/true);
  SignTail(stream);  // nothing else comes with it: signed at once, as an idle tail is
  history->second.Add(version, history->second.Current());
  CollectAt(stream, replication::FromDots(collection.frontier()), collection.journal_before());
  interco::replication::v1::Dot at;
  at.set_origin(origin_);
  at.set_epoch(OriginEpoch(stream));
  at.set_seq(position_[stream][OriginKey{origin_, OriginEpoch(stream)}].seq);
  if (exclusions_[stream].Apply(collection, version, at)) exclusion_collections_++;
  Compact(stream);
  return true;
}

void SimStore::Compact(const std::string& stream) {
  const replication::VersionVector& frontier = purged_[stream];
  const uint64_t journal_before = journal_before_[stream];
  const auto& records = records_[stream];
  for (auto& [key, batches] : log_[stream]) {
    for (auto& [first, batch] : batches) {
      BatchHeader h;
      INTERCO_CHECK(h.ParseFromString(batch.header()));
      if (!replication::MayHollow(h, batch.hollow(), frontier, journal_before)) continue;
      const absl::StatusOr<bool> superseded = replication::AllSuperseded(
          batch, key.origin, frontier,
          [&](const std::string& id) -> absl::StatusOr<const RecordState*> {
            auto record = records.find(id);
            return record == records.end() ? nullptr : &record->second;
          });
      INTERCO_CHECK(superseded.ok());
      if (!*superseded) continue;
      hollowed_[stream][key][first] = batch;  // for the checker's view of the history
      batch = replication::Hollow(batch);
      hollowed_batches_++;
    }
    // As the node does: each hollow stretch up to a run's end becomes one skip.
    std::vector<Batch> entries;
    std::vector<uint64_t> firsts;
    for (const auto& [first, batch] : batches) {
      // (A kept batch only ends a stretch: its changes need no copy.)
      entries.push_back(batch.hollow() ? batch : Batch());
      firsts.push_back(first);
    }
    for (const auto& [from, last] : replication::FoldableStretches(entries)) {
      for (size_t i = from + 1; i <= last; ++i) batches.erase(firsts[i]);
      batches[firsts[from]] = replication::Skip(entries[last], firsts[from]);
      folded_batches_ += last - from;
    }
  }
}

std::string SimStore::CheckRebuild(const std::string& stream) {
  // A store that never saw anything but this one's log, taking its batches as a peer
  // would offer them: each origin's in order, each when what it waits for is there.
  SimStore fresh(origin_, streams_, clock_, hasher_, nullptr, schema_);
  fresh.members = members;
  fresh.writers = writers;
  fresh.readers = readers;
  if (auto d = declared_.find(stream); d != declared_.end()) {
    fresh.DeclarePolicy(stream, d->second.first, d->second.second);
  }
  const auto& log = log_[stream];
  for (bool progress = true; progress;) {
    progress = false;
    for (const auto& [key, batches] : log) {
      for (;;) {
        auto it = batches.find(fresh.position_[stream][key].seq + 1);
        if (it == batches.end()) break;
        absl::StatusOr<replication::DecodedBatch> decoded =
            replication::DecodeBatch(it->second, hasher_);
        if (!decoded.ok()) return decoded.status().ToString();
        if (absl::IsUnavailable(fresh.Authorize(stream, *decoded))) break;
        if (absl::Status s = fresh.ApplyBatch(stream, *decoded); !s.ok()) {
          return absl::StrCat("batch ", it->first, " of origin ", key.origin, ": ", s.ToString());
        }
        progress = true;
      }
    }
  }
  for (const auto& [key, pos] : position_[stream]) {
    if (fresh.position_[stream][key].seq != pos.seq) {
      return absl::StrCat("origin ", key.origin, " epoch ", key.epoch, ": rebuilt up to ",
                          fresh.position_[stream][key].seq, " of ", pos.seq);
    }
  }
  const auto& mine = records_[stream];
  const auto& theirs = fresh.records_[stream];
  for (const auto& [id, state] : mine) {
    auto it = theirs.find(id);
    if (it == theirs.end() || it->second.SerializeAsString() != state.SerializeAsString()) {
      return absl::StrCat(id, ": rebuilt from the log as ",
                          it == theirs.end() ? "nothing" : it->second.ShortDebugString(),
                          ", held as ", state.ShortDebugString());
    }
  }
  for (const auto& [id, state] : theirs) {
    if (!mine.contains(id)) return absl::StrCat(id, ": rebuilt from the log, not held");
  }
  return "";
}

void SimStore::SignTail(const std::string& stream) {
  auto run = runs_.find(stream);
  if (run == runs_.end() || signer_ == nullptr) return;
  Batch& tail = log_[stream][OriginKey{origin_, run->second.epoch}].at(run->second.tail_first_seq);
  INTERCO_CHECK(replication::SignBatch(tail, *signer_, clock_.NowMillis()).ok());
  runs_.erase(run);
}

bool SimStore::SignTails() {
  if (runs_.empty() || signer_ == nullptr) return false;
  while (!runs_.empty()) SignTail(runs_.begin()->first);
  return true;
}

absl::Status SimStore::Authorize(const std::string& stream,
                                 const replication::DecodedBatch& batch) {
  if (const replication::PolicyHistory* p = Policies(stream); p != nullptr) {
    if (absl::Status s = replication::AuthorizeBatch(batch, *p, &exclusions_[stream]); !s.ok()) {
      return s;
    }
    return replication::CollectionReady(batch, position_[stream]);
  }
  if (writers && !writers(batch.header.origin())) {
    return absl::PermissionDeniedError("not a writer");
  }
  return absl::OkStatus();
}

bool SimStore::MayRead(const std::string& stream, uint32_t node) {
  if (const replication::PolicyHistory* p = Policies(stream); p != nullptr) {
    return p->Current().MayRead(node);
  }
  return !readers || readers(node);
}

bool SimStore::MayReadBatch(const std::string& stream, uint32_t node, uint64_t policy_version) {
  if (const replication::PolicyHistory* p = Policies(stream); p != nullptr) {
    return p->MayReadBatch(policy_version, node);
  }
  return MayRead(stream, node);
}

uint32_t SimStore::OwnerOf(const std::string& stream) {
  const replication::PolicyHistory* p = Policies(stream);
  return p == nullptr ? 0 : p->owner();
}

std::vector<uint32_t> SimStore::Members(const std::string& stream) {
  if (auto it = members.find(stream); it != members.end()) return it->second;
  if (const replication::PolicyHistory* p = Policies(stream); p != nullptr) {
    const std::set<uint32_t> all = p->AllWriters();  // as the node does
    return std::vector<uint32_t>(all.begin(), all.end());
  }
  return replication::ReplicaStore::Members(stream);
}

void SimStore::DeclarePolicy(const std::string& stream, uint32_t owner,
                             const interco::v1::Policy& declared) {
  policies_.insert_or_assign(
      stream, replication::PolicyHistory(*replication::RegistryPolicy::Compile(
                  replication::OriginToSiren(owner), declared)));
  policy_in_force_[stream] = declared;
  declared_[stream] = {owner, declared};
}

const replication::PolicyHistory* SimStore::Policies(const std::string& stream) const {
  auto it = policies_.find(stream);
  return it == policies_.end() ? nullptr : &it->second;
}

uint64_t SimStore::SetPolicy(const std::string& stream, const interco::v1::Policy& policy) {
  replication::PolicyHistory& history = policies_.at(stream);
  INTERCO_CHECK(history.owner() == origin_);
  const uint64_t version = hlc_.Now();
  Change c;
  *c.mutable_policy()->mutable_policy() = policy;
  c.mutable_policy()->set_version(version);
  c.set_author(absl::StrCat(origin_, "/sim-admin"));
  // The batch is judged under the version before the change.
  AppendOwn(stream, {c.SerializeAsString()}, version, /*carries_policy=*/true);
  history.Add(version, *replication::RegistryPolicy::Compile(
                           replication::OriginToSiren(origin_), policy));
  policy_in_force_[stream] = policy;
  return version;
}

absl::Status SimStore::RecordFork(const interco::replication::v1::ForkEvidence& evidence) {
  forks_.push_back(evidence);
  return absl::OkStatus();
}

std::vector<uint32_t> SimStore::FrozenOrigins() {
  std::vector<uint32_t> out;
  for (const auto& f : forks_) out.push_back(f.origin());
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

void SimStore::UpdateJournal(const std::string& stream, const std::string& key,
                             const RecordState& current, const RecordState& delta,
                             const std::function<bool(replication::Stamp)>& received) {
  // As the node does: the journal is skipped when it cannot matter.
  if (replication::JournalUntouched(schema_, current, delta)) return;
  auto& journals = conflicts_[stream];
  replication::RecordConflicts& journal = journals[key];
  replication::UpdateConflicts(schema_, current, delta, received, journal_before_[stream],
                               journal);
  if (journal.ByteSizeLong() == 0) journals.erase(key);
}

std::vector<SimStore::LoggedChange> SimStore::LoggedChanges(const std::string& stream) {
  std::vector<LoggedChange> out;
  for (auto& [key, batches] : log_[stream]) {
    for (auto& [first, held] : batches) {
      if (!held.hollow()) {
        uint64_t seq = first;
        for (const std::string& bytes : held.changes()) {
          Change c;
          INTERCO_CHECK(c.ParseFromString(bytes));
          replication::ExpandChange(c, key.origin);
          out.push_back(LoggedChange{key, seq++, std::move(c)});
        }
        continue;
      }
      // The batches made hollow here that the entry stands for (one, or a skip's
      // stretch) show as their origin wrote them (the node the checker reads received
      // no hollow batch).
      BatchHeader h;
      INTERCO_CHECK(h.ParseFromString(held.header()));
      const auto& whole = hollowed_[stream][key];
      uint64_t next = first;
      for (auto it = whole.lower_bound(first);
           it != whole.end() && it->first < h.first_seq() + h.count(); ++it) {
        INTERCO_CHECK(it->first == next);
        BatchHeader bh;
        INTERCO_CHECK(bh.ParseFromString(it->second.header()));
        next = bh.first_seq() + bh.count();
        uint64_t seq = it->first;
        for (const std::string& bytes : it->second.changes()) {
          Change c;
          INTERCO_CHECK(c.ParseFromString(bytes));
          replication::ExpandChange(c, key.origin);
          out.push_back(LoggedChange{key, seq++, std::move(c)});
        }
      }
      INTERCO_CHECK(next == h.first_seq() + h.count());
    }
  }
  return out;
}

std::string SimStore::CheckLog() {
  for (auto& [stream, by_key] : log_) {
    for (auto& [key, batches] : by_key) {
      uint64_t next = 1;
      std::string prev;
      for (auto& [first, batch] : batches) {
        auto decoded = replication::DecodeBatch(batch, hasher_);
        if (!decoded.ok()) return absl::StrCat(stream, ": ", decoded.status().ToString());
        // (A skip's stretch, before its header, is not here to chain.)
        if (first != next || decoded->first_seq() != first ||
            (batch.skip_from() == 0 && decoded->header.prev_hash() != prev)) {
          return absl::StrCat(stream, " origin ", key.origin, ": log not dense/chained at ", next);
        }
        next = decoded->last_seq() + 1;
        prev = decoded->header_hash;
      }
      if (position_[stream][key].seq != next - 1) {
        return absl::StrCat(stream, " origin ", key.origin, ": position ",
                            position_[stream][key].seq, " but log ends at ", next - 1);
      }
    }
  }
  return "";
}

}  // namespace interco::sim
