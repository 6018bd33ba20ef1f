#include "tests/sim/sim_cluster.h"

#include <algorithm>
#include <deque>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "replication/base/check.h"
#include "replication/change_log.h"
#include "replication/frame_codec.h"
#include "replication/ids.h"
#include "replication/stability.h"

namespace interco::sim {
namespace {

using interco::replication::v1::BatchHeader;
using interco::replication::v1::PeerMessage;
using replication::LocalWrite;
using replication::OriginKey;
using replication::RecordState;

constexpr int64_t kTickMs = 100;
// Owners consider a collection this often (the node's default is a minute).
constexpr int64_t kCollectIntervalMs = 2000;
// After convergence, everything is stable within this long (reports cross one link per
// status interval of 5 s; a line of 7 nodes has 6).
constexpr int64_t kStabilitySettleMs = 120000;
constexpr int kKeysPerStream = 6;

interco::v1::Schema SimSchema() {
  interco::v1::Schema s;
  auto* f = s.add_fields();
  f->set_name("a");
  f->set_type(interco::v1::FIELD_TYPE_STRING);
  f->set_required(true);
  f = s.add_fields();
  f->set_name("b");
  f->set_type(interco::v1::FIELD_TYPE_INT64);
  f = s.add_fields();
  f->set_name("n");
  f->set_type(interco::v1::FIELD_TYPE_COUNTER);
  f = s.add_fields();
  f->set_name("tags");
  f->set_type(interco::v1::FIELD_TYPE_STRING_SET);
  return s;
}

std::string Deterministic(const RecordState& s) {
  std::string out;
  google::protobuf::io::StringOutputStream raw(&out);
  google::protobuf::io::CodedOutputStream coded(&raw);
  coded.SetSerializationDeterministic(true);
  s.SerializeToCodedStream(&coded);
  coded.Trim();
  return out;
}

class World;

class SimClock final : public replication::Clock {
 public:
  SimClock(const int64_t& now, int64_t skew) : now_(now), skew_(skew) {}
  int64_t NowMillis() override { return now_ + skew_; }
  int64_t MonotonicMillis() override { return now_; }
  void set_skew(int64_t skew) { skew_ = skew; }

 private:
  const int64_t& now_;
  int64_t skew_;
};

class SimTransport final : public replication::Transport {
 public:
  SimTransport(World& world, int self) : world_(world), self_(self) {}
  bool Send(uint32_t peer, const PeerMessage& message) override;

 private:
  World& world_;
  const int self_;
};

struct Node {
  uint32_t siren = 0;
  std::vector<std::string> streams;
  std::unique_ptr<SimClock> clock;
  SimHasher hasher;
  std::unique_ptr<SimTrust> trust;
  std::unique_ptr<SimTrust::OriginSigner> signer;
  std::unique_ptr<SimStore> store;
  std::unique_ptr<SimTransport> transport;
  std::unique_ptr<replication::Replicator> engine;
  bool up = true;
  int64_t restart_at = -1;
};

struct Link {
  int a = 0, b = 0;
  bool up = true;
  uint64_t session = 1;
};

struct Event {
  int64_t time;
  uint64_t seq;
  std::function<void()> fn;
  bool operator>(const Event& o) const { return std::tie(time, seq) > std::tie(o.time, o.seq); }
};

// One number for a change of an origin: its epoch above its sequence number (an origin
// starts a new epoch when a collection refuses some of its writes).
uint64_t EpochSeq(uint32_t epoch, uint64_t seq) { return (uint64_t{epoch} << 40) | seq; }

struct AckedWrite {
  std::string stream;
  std::string key;
  RecordState delta;
  // The change: its origin and EpochSeq.
  uint32_t origin = 0;
  uint64_t seq = 0;
};

class World {
 public:
  explicit World(const SimOptions& o) : options_(o), rng_(o.seed), schema_(*replication::RegistrySchema::Compile(SimSchema())) {}

  SimResult Run();
  bool Send(int from, uint32_t to_siren, const PeerMessage& m);

 private:
  double Uniform() { return std::uniform_real_distribution<double>(0, 1)(rng_); }
  int64_t UniformInt(int64_t lo, int64_t hi) {
    return std::uniform_int_distribution<int64_t>(lo, hi)(rng_);
  }
  void At(int64_t time, std::function<void()> fn) { queue_.push(Event{time, next_seq_++, std::move(fn)}); }
  void RunUntil(int64_t end);
  void BuildTopology();
  void StartEngine(int n);
  void Crash(int n);
  void Restart(int n);
  void SetLink(Link& l, bool up);
  void Connect(Link& l);
  void Disconnect(Link& l);
  Link* FindLink(int a, int b);
  void ScheduleTick(int n);
  void MaybeWrite(int n);
  // Tells the engine of local commits, and signs the unsigned tail 1 ms later.
  void LocalCommitted(int n);
  LocalWrite RandomWrite();
  bool Converged();
  std::string DumpPositions();
  std::string Check();
  std::string CheckConflicts();
  // Once settled, each stream's uplinks form one tree over its subscribers, rooted at the
  // smallest SIREN among them.
  std::string CheckTree();
  // Records the position each new change of node n's `stream` was written at: what n held
  // just before (`before`), for its sequence numbers after `first_seq - 1`.
  void NoteCommits(int n, const std::string& stream, const replication::VersionVector& before,
                   uint64_t after_seq);
  // At any time, on every node, the stable frontier of each stream is held by every
  // subscriber, and every change of a subscriber that the node lacks was written by a
  // subscriber that held the frontier: nothing concurrent with it can still arrive.
  std::string CheckStability();
  // Once settled, every node's frontier is everything (false while not yet).
  bool StabilitySettled(std::string* lagging);
  // Once everything is stable, no deleted record is left where the policy lets the owner
  // collect (false while one is).
  bool AllCollected(std::string* left);
  std::string CheckBoundedMetadata();
  // The traffic counted so far; putting it back leaves out what came after (the
  // exchanges after convergence that checks wait for are not the run's).
  struct Traffic {
    uint64_t messages, message_bytes, report_bytes, statuses, report_bytes_whole;
  };
  Traffic Counted() const {
    return {result_.messages, result_.message_bytes, result_.report_bytes, result_.statuses,
            result_.report_bytes_whole};
  }
  void RestoreTraffic(const Traffic& t) {
    result_.messages = t.messages;
    result_.message_bytes = t.message_bytes;
    result_.report_bytes = t.report_bytes;
    result_.statuses = t.statuses;
    result_.report_bytes_whole = t.report_bytes_whole;
  }
  // The removed elements of `f` but those whose add a collection refused (their tags stay
  // until a later epoch of their writer is stable: replication::StampedAtOrBelow).
  size_t RemovedKept(const replication::FieldState& f);

  const SimOptions options_;
  std::mt19937_64 rng_;
  replication::RegistrySchema schema_;
  int64_t now_ = 0;
  uint64_t next_seq_ = 0;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> queue_;
  std::vector<Node> nodes_;
  std::vector<Link> links_;
  std::map<uint32_t, int> index_of_;
  std::map<std::string, std::set<int>> subscribers_;
  double loss_ = 0, dup_ = 0;
  int64_t delay_max_ = 1;
  // The owners' journal retention in this run (0: none).
  int64_t journal_retention_ms_ = 0;
  // The owners' member retention in this run (0: none).
  int64_t member_retention_ms_ = 0;
  bool faults_ = true;
  bool writing_ = true;
  std::vector<AckedWrite> acked_;
  // Delivery tracking: (stream, origin, seq) -> (commit time, subscribers reached).
  std::map<std::tuple<std::string, uint32_t, uint64_t>, std::pair<int64_t, int>> pending_;
  // Per (stream, origin) and EpochSeq: what the origin held of the stream when it wrote
  // that change.
  std::map<std::pair<std::string, uint32_t>, std::map<uint64_t, replication::VersionVector>>
      written_at_;
  // Per (node, stream), the records collected there and the tombstone each had.
  std::map<std::pair<int, std::string>, std::map<std::string, replication::Tombstone>> collected_;
  // Per (node, stream, record), the removed set elements collections took out there:
  // (field, value, add hlc, add origin).
  using Tag = std::tuple<std::string, std::string, uint64_t, uint32_t>;
  std::map<std::tuple<int, std::string, std::string>, std::set<Tag>> purged_tags_;
  uint64_t purged_count_ = 0;
  // `delta` without the set elements (added or removed) that node n collected.
  RecordState WithoutPurged(int n, const std::string& stream, const std::string& key,
                            const RecordState& delta);
  // Whether change `seq` of `origin` to record `key` was written by a node that did not
  // hold the delete whose tombstone node n collected last for that record: it belongs to
  // a life that is gone (or was concurrent with its delete, which won).
  bool InCollectedLife(int n, const std::string& stream, const std::string& key,
                       uint32_t origin, uint64_t seq);
  // The changes collections refused: of every node, and each origin's own ones by
  // (stream, origin, EpochSeq); and the stamps of their register writes.
  void NoteRefused();
  std::set<std::tuple<std::string, uint32_t, uint64_t>> refused_own_;
  std::set<std::pair<uint64_t, uint32_t>> refused_stamps_;
  // The set elements their changes added: (value, hlc, origin).
  std::set<std::tuple<std::string, uint64_t, uint32_t>> refused_adds_;
  // The first change found to reach a node after it collected the record the change is
  // about while concurrent with the record's delete (a resurrection); empty if none.
  std::string hazard_;
  SimResult result_;
};

bool SimTransport::Send(uint32_t peer, const PeerMessage& message) {
  return world_.Send(self_, peer, message);
}

// What `reports` would weigh with each report written whole (signed as it is).
size_t WholeReportBytes(const interco::replication::v1::Ack& ack,
                        const interco::replication::v1::StreamReports& reports) {
  const std::optional<replication::VersionVector> base =
      replication::StatedPosition(ack, reports.stream());
  interco::replication::v1::StreamReports whole;
  whole.set_stream(reports.stream());
  for (const auto& r : reports.members()) {
    absl::StatusOr<replication::VersionVector> held =
        replication::ReadReport(r, base.has_value() ? &*base : nullptr);
    INTERCO_CHECK(held.ok());  // the engine wrote them
    const replication::ReportSignature signature = replication::SignatureOf(r);
    replication::WriteReport(r.member(), r.epoch(), *held, nullptr, *whole.add_members(),
                             &signature);
  }
  return whole.ByteSizeLong();
}

Link* World::FindLink(int a, int b) {
  for (Link& l : links_) {
    if ((l.a == a && l.b == b) || (l.a == b && l.b == a)) return &l;
  }
  return nullptr;
}

bool World::Send(int from, uint32_t to_siren, const PeerMessage& m) {
  auto it = index_of_.find(to_siren);
  if (it == index_of_.end()) return false;
  const int to = it->second;
  Link* l = FindLink(from, to);
  if (l == nullptr || !l->up || !nodes_[static_cast<size_t>(from)].up ||
      !nodes_[static_cast<size_t>(to)].up) {
    return false;
  }
  result_.messages++;
  result_.message_bytes += m.ByteSizeLong();
  if (m.ack().reports_size() > 0) {
    result_.statuses++;
    for (const auto& r : m.ack().reports()) {
      result_.report_bytes += r.ByteSizeLong();
      if (options_.measure_whole_reports) result_.report_bytes_whole += WholeReportBytes(m.ack(), r);
    }
  }
  const PeerMessage* sent = &m;
  PeerMessage altered;
  if (options_.byzantine_relay && from == 0 && !m.frames().empty()) {
    // One run of the message, chosen at random.
    const int f = static_cast<int>(UniformInt(0, m.frames_size() - 1));
    interco::replication::v1::BatchHeader h;
    const int n = m.frames(f).batches_size();
    const int i = static_cast<int>(UniformInt(0, std::max(n, 1) - 1));
    if (n > 0) h.ParseFromString(m.frames(f).batches(i).header());
    if (n > 0 && h.origin() != nodes_[0].siren && Uniform() < 0.5) {
      altered = m;
      auto* frame = altered.mutable_frames(f);
      auto* b = frame->mutable_batches(i);
      switch (UniformInt(0, 5)) {
        case 0:  // a change's bytes
          b->mutable_changes(0)->back() ^= 1;
          break;
        case 5:  // the run's signing time, moved back (to a time its key was still valid)
          frame->mutable_batches(n - 1)->set_signed_at_ms(
              frame->batches(n - 1).signed_at_ms() - 1000);
          break;
        case 1:  // the header: a later stamp, to win LWW races
          h.set_max_hlc(h.max_hlc() + 1);
          b->set_header(h.SerializeAsString());
          break;
        case 2:  // the run's signature
          frame->mutable_batches(n - 1)->mutable_signature()->front() ^= 1;
          break;
        case 3:  // the run without its signed end (when it has unsigned batches)
          if (n == 1) {
            b->mutable_signature()->back() ^= 1;
          } else {
            frame->mutable_batches()->RemoveLast();
          }
          break;
        default:  // two batches swapped (or the only one given a later stamp)
          if (n == 1) {
            h.set_max_hlc(h.max_hlc() + 1);
            b->set_header(h.SerializeAsString());
          } else {
            frame->mutable_batches()->SwapElements(0, n - 1);
          }
          break;
      }
      sent = &altered;
      result_.tampered++;
    }
  }
  if (options_.byzantine_relay && from == 0 && m.ack().reports_size() > 0 && Uniform() < 0.5) {
    // Another member's report, made to say it holds more than it does (which would let a
    // collection go before that member holds what it collects).
    if (sent != &altered) altered = m;
    auto* reports = altered.mutable_ack()->mutable_reports(
        static_cast<int>(UniformInt(0, altered.ack().reports_size() - 1)));
    for (auto& r : *reports->mutable_members()) {
      if (r.member() == nodes_[0].siren) continue;
      const uint64_t more = static_cast<uint64_t>(UniformInt(1, 4));
      if (r.origins_size() > 0) {
        auto* o = r.mutable_origins(static_cast<int>(UniformInt(0, r.origins_size() - 1)));
        o->set_seq(o->seq() + more);
      } else if (r.relative()) {
        if (r.deltas_size() == 0) r.add_deltas(0);
        r.set_deltas(0, r.deltas(0) + static_cast<int64_t>(more));
      } else {
        continue;  // holds nothing, and says so: nothing to inflate
      }
      sent = &altered;
      result_.reports_inflated++;
      break;
    }
  }
  // As the node's session writer does: changes travel by column (the engine restores them).
  PeerMessage wire = *sent;
  for (auto& frame : *wire.mutable_frames()) {
    replication::EncodeColumns(frame, nodes_[static_cast<size_t>(from)].hasher);
  }
  const int copies = (faults_ && Uniform() < dup_) ? 2 : 1;
  for (int c = 0; c < copies; ++c) {
    if (faults_ && Uniform() < loss_) {
      result_.messages_dropped++;
      continue;
    }
    const int64_t delay = options_.fixed_delay_ms > 0 ? options_.fixed_delay_ms
                                                      : UniformInt(1, delay_max_);
    const uint64_t session = l->session;
    const uint32_t from_siren = nodes_[static_cast<size_t>(from)].siren;
    At(now_ + delay, [this, l, session, to, from_siren, msg = wire] {
      Node& dst = nodes_[static_cast<size_t>(to)];
      if (!l->up || l->session != session || !dst.up) return;
      dst.engine->OnMessage(from_siren, msg);
    });
  }
  return true;
}

void World::StartEngine(int n) {
  Node& node = nodes_[static_cast<size_t>(n)];
  replication::ReplicatorOptions ro;
  ro.self = node.siren;
  // Skews reach an hour; the offset bound must exceed them for the run to converge
  // (quarantine has its own scenario).
  ro.clock_offset_max_ms = 2 * options_.clock_skew_max_ms + 60000;
  ro.collect_interval_ms = kCollectIntervalMs;
  ro.journal_retention_ms = journal_retention_ms_;
  ro.member_retention_ms = member_retention_ms_;
  // Runs are short: collect for compaction after a few changes already.
  ro.compaction_changes = 8;
  // Statuses go every 5 s: a digest with every other one where positions agree.
  ro.digest_interval_ms = 10000;
  node.engine = std::make_unique<replication::Replicator>(ro, *node.clock, *node.transport,
                                                          *node.store, node.hasher, *node.trust,
                                                          *node.signer);
}

void World::Connect(Link& l) {
  l.session++;
  Node& a = nodes_[static_cast<size_t>(l.a)];
  Node& b = nodes_[static_cast<size_t>(l.b)];
  if (!l.up || !a.up || !b.up) return;
  a.engine->OnConnected(b.siren);
  b.engine->OnConnected(a.siren);
}

void World::Disconnect(Link& l) {
  l.session++;
  Node& a = nodes_[static_cast<size_t>(l.a)];
  Node& b = nodes_[static_cast<size_t>(l.b)];
  if (a.up) a.engine->OnDisconnected(b.siren);
  if (b.up) b.engine->OnDisconnected(a.siren);
}

void World::SetLink(Link& l, bool up) {
  if (l.up == up) return;
  if (!up) {
    Disconnect(l);
    l.up = false;
  } else {
    l.up = true;
    Connect(l);
  }
}

void World::Crash(int n) {
  Node& node = nodes_[static_cast<size_t>(n)];
  if (!node.up) return;
  for (Link& l : links_) {
    if (l.a == n || l.b == n) Disconnect(l);
  }
  node.up = false;
  node.engine.reset();  // session state is lost; the store is durable
  result_.crashes++;
}

void World::Restart(int n) {
  Node& node = nodes_[static_cast<size_t>(n)];
  if (node.up) return;
  node.up = true;
  node.store->SignTails();  // a tail its crash left unsigned, as the node does at start
  StartEngine(n);
  for (Link& l : links_) {
    if (l.a == n || l.b == n) Connect(l);
  }
}

void World::BuildTopology() {
  const int n = options_.fixed_delay_ms > 0
                    ? options_.nodes_max
                    : static_cast<int>(UniformInt(3, std::max(3, options_.nodes_max)));
  const int kind = options_.fixed_delay_ms > 0 || options_.byzantine_relay
                       ? 0
                       : static_cast<int>(UniformInt(0, 3));
  static const char* kKinds[] = {"mesh", "line", "star", "random"};
  for (int i = 0; i < n; ++i) {
    Node node;
    // Distinct numbers with a valid SIREN checksum (batches from others are refused).
    node.siren = 200000000u + static_cast<uint32_t>(i) * 1013u;
    while (!replication::ValidateSiren(replication::OriginToSiren(node.siren)).ok()) ++node.siren;
    nodes_.push_back(std::move(node));
    index_of_[nodes_.back().siren] = i;
  }
  auto add = [&](int a, int b) {
    if (a != b && FindLink(a, b) == nullptr) links_.push_back(Link{a, b, true, 1});
  };
  switch (kind) {
    case 0:
      for (int a = 0; a < n; ++a)
        for (int b = a + 1; b < n; ++b) add(a, b);
      break;
    case 1:
      for (int a = 0; a + 1 < n; ++a) add(a, a + 1);
      break;
    case 2:
      for (int b = 1; b < n; ++b) add(0, b);
      break;
    default:
      for (int b = 1; b < n; ++b) add(static_cast<int>(UniformInt(0, b - 1)), b);
      for (int e = 0; e < n / 2; ++e) add(static_cast<int>(UniformInt(0, n - 1)), static_cast<int>(UniformInt(0, n - 1)));
      break;
  }
  // Streams: one everybody replicates, one on a connected subset (partial replication).
  std::vector<int> bfs{static_cast<int>(UniformInt(0, n - 1))};
  std::set<int> seen{bfs[0]};
  for (size_t i = 0; i < bfs.size(); ++i) {
    for (const Link& l : links_) {
      const int other = l.a == bfs[i] ? l.b : (l.b == bfs[i] ? l.a : -1);
      if (other >= 0 && seen.insert(other).second) bfs.push_back(other);
    }
  }
  const int group_size = static_cast<int>(UniformInt(2, n));
  for (int i = 0; i < n; ++i) subscribers_["commun"].insert(i);
  for (int i = 0; i < group_size; ++i) subscribers_["groupe"].insert(bfs[static_cast<size_t>(i)]);

  for (int i = 0; i < n; ++i) {
    Node& node = nodes_[static_cast<size_t>(i)];
    for (auto& [stream, subs] : subscribers_) {
      if (subs.contains(i)) node.streams.push_back(stream);
    }
    const int64_t skew = options_.fixed_delay_ms > 0
                             ? 0
                             : UniformInt(-options_.clock_skew_max_ms, options_.clock_skew_max_ms);
    node.clock = std::make_unique<SimClock>(now_, skew);
    node.trust = std::make_unique<SimTrust>(node.hasher);
    node.signer = std::make_unique<SimTrust::OriginSigner>(*node.trust, node.siren);
    node.store = std::make_unique<SimStore>(node.siren, node.streams, *node.clock, node.hasher,
                                            node.signer.get(), schema_);
    // Every node knows who replicates its streams (as a federation's configuration says).
    for (const std::string& stream : node.streams) {
      for (int m : subscribers_[stream]) {
        node.store->members[stream].push_back(nodes_[static_cast<size_t>(m)].siren);
      }
    }
    for (const std::string& stream : node.streams) {
      if (options_.policy_changes && stream == "commun") {
        // Every node listed as a writer (so that it is collected), then churned.
        interco::v1::Policy everyone;
        for (const Node& other : nodes_) {
          everyone.mutable_writers()->add_authorities(replication::OriginToSiren(other.siren));
        }
        node.store->DeclarePolicy(stream, nodes_[0].siren, everyone);
        continue;
      }
      // Owned by its first subscriber, which lists every subscriber as a writer (so that
      // its tombstones are collected).
      interco::v1::Policy listed;
      for (int m : subscribers_[stream]) {
        listed.mutable_writers()->add_authorities(
            replication::OriginToSiren(nodes_[static_cast<size_t>(m)].siren));
      }
      node.store->DeclarePolicy(
          stream, nodes_[static_cast<size_t>(*subscribers_[stream].begin())].siren, listed);
    }
    node.store->on_own_batch = [this, i](const std::string& stream,
                                         const replication::VersionVector& before,
                                         uint64_t last_seq) { NoteCommits(i, stream, before, last_seq); };
    node.store->on_collect = [this, i](const std::string& stream, const std::string& key,
                                       const replication::Tombstone& t) {
      // Told again by a replay: counted once.
      auto [it, added] = collected_[{i, stream}].try_emplace(key, t);
      if (added || it->second.key != t.key || it->second.seq != t.seq) result_.collected++;
      it->second = t;
    };
    node.store->on_purge = [this, i](const std::string& stream, const std::string& key,
                                     const RecordState& before, const RecordState& after) {
      auto& tags = purged_tags_[{i, stream, key}];
      for (const replication::FieldState& f : before.fields()) {
        const replication::FieldState* a = replication::FindField(after, f.name());
        for (const auto& e : f.removed()) {
          bool kept = false;
          for (const auto& k : a == nullptr ? f.removed() : a->removed()) {
            kept |= a != nullptr && k.value() == e.value() && k.hlc() == e.hlc() &&
                    k.origin() == e.origin();
          }
          if (!kept && tags.emplace(f.name(), e.value(), e.hlc(), e.origin()).second) {
            purged_count_++;
          }
        }
      }
    };
    node.store->on_change = [this, i](const std::string& stream, OriginKey key, uint64_t seq,
                                      const interco::replication::v1::Change& change) {
      // Once a removed element is collected here, its add never comes again.
      if (auto tags = purged_tags_.find({i, stream, change.key()});
          hazard_.empty() && tags != purged_tags_.end()) {
        for (const replication::FieldState& f : change.delta().fields()) {
          for (const auto& e : f.elements()) {
            if (tags->second.contains(Tag{f.name(), e.value(), e.hlc(), e.origin()})) {
              hazard_ = absl::StrCat(stream, "/", change.key(), ": node ", i,
                                     " collected the removed element ", e.value(), " of ",
                                     f.name(), ", then received change ", seq, " of ",
                                     key.origin, " adding it");
            }
          }
        }
      }
      // Once a record is collected here, nothing concurrent with its delete may come:
      // every change of it that arrives was written by a node that held the delete.
      if (hazard_.empty() &&
          InCollectedLife(i, stream, change.key(), key.origin, EpochSeq(key.epoch, seq))) {
        hazard_ = absl::StrCat(stream, "/", change.key(), ": node ", i,
                               " collected the record, then received change ", seq, " of ",
                               key.origin, ", written concurrently with its delete");
      }
    };
    node.transport = std::make_unique<SimTransport>(*this, i);
    node.store->on_apply = [this](const std::string& stream, OriginKey key, uint64_t first,
                                  uint32_t count) {
      for (uint64_t s = first; s < first + count; ++s) {
        auto it = pending_.find({stream, key.origin, EpochSeq(key.epoch, s)});
        if (it == pending_.end()) continue;
        if (++it->second.second == static_cast<int>(subscribers_[stream].size())) {
          result_.delivery_ms.push_back(now_ - it->second.first);
          pending_.erase(it);
        }
      }
    };
  }
  if (options_.fixed_delay_ms > 0) {
    loss_ = dup_ = 0;
  } else {
    loss_ = Uniform() * options_.loss_max;
    dup_ = Uniform() * options_.duplication_max;
    delay_max_ = UniformInt(1, std::max<int64_t>(1, options_.delay_max_ms));
  }
  // Drawn from the seed, not the PRNG: the other draws of a seed stay as they were.
  journal_retention_ms_ = options_.journal_retention_ms >= 0 ? options_.journal_retention_ms
                          : options_.seed % 2 == 1
                              ? 0
                              : 5000 + static_cast<int64_t>((options_.seed / 2) % 12) * 5000;
  member_retention_ms_ = options_.member_retention_ms >= 0 ? options_.member_retention_ms
                         : options_.seed % 3 != 2
                             ? 0
                             : 4000 + static_cast<int64_t>((options_.seed / 3) % 12) * 1000;
  result_.description = absl::StrCat(
      "seed=", options_.seed, " nodes=", n, " topology=", kKinds[kind], " links=", links_.size(),
      " groupe=", group_size, " loss=", loss_, " dup=", dup_, " delay_max_ms=", delay_max_,
      " journal_retention_ms=", journal_retention_ms_,
      " member_retention_ms=", member_retention_ms_);
}

LocalWrite World::RandomWrite() {
  LocalWrite w;
  const double r = Uniform();
  auto fill = [&](bool all) {
    if (all || Uniform() < 0.7) {
      w.fields["a"].set_string_value(absl::StrCat("v", UniformInt(0, 9)));
      w.mask.push_back("a");
    }
    if (all || Uniform() < 0.5) {
      w.fields["b"].set_int64_value(UniformInt(-5, 5));
      w.mask.push_back("b");
    }
    if (all || Uniform() < 0.3) {
      w.fields["n"].set_int64_value(UniformInt(-20, 20));
      w.mask.push_back("n");
    }
    if (all || Uniform() < 0.5) {
      auto* set = w.fields["tags"].mutable_string_set_value();
      for (const char* t : {"x", "y", "z", "w"}) {
        if (Uniform() < 0.5) set->add_values(t);
      }
      w.mask.push_back("tags");
    }
    if (w.mask.empty()) {
      w.fields["b"].set_int64_value(1);
      w.mask.push_back("b");
    }
  };
  if (r < 0.5) {
    w.kind = LocalWrite::Kind::kUpdate;
    w.allow_missing = true;
    fill(false);
    if (!w.fields.contains("a")) {
      w.fields["a"].set_string_value("init");
      w.mask.push_back("a");
    }
  } else if (r < 0.7) {
    w.kind = LocalWrite::Kind::kUpdate;
    fill(false);
  } else if (r < 0.85) {
    w.kind = LocalWrite::Kind::kDelete;
    w.allow_missing = true;
  } else {
    w.kind = LocalWrite::Kind::kCreate;
    fill(true);
    w.mask.clear();
  }
  return w;
}

void World::MaybeWrite(int n) {
  Node& node = nodes_[static_cast<size_t>(n)];
  if (!writing_ || !node.up) return;
  if (Uniform() >= options_.write_rate * kTickMs / 1000.0) return;
  const std::string& stream =
      node.streams[static_cast<size_t>(UniformInt(0, static_cast<int64_t>(node.streams.size()) - 1))];
  // Now and then a burst of commits, which the node's runs share one signature.
  const int64_t commits = faults_ && Uniform() < 0.3 ? UniformInt(2, 6) : 1;
  for (int64_t c = 0; c < commits; ++c) {
    std::vector<SimStore::Write> writes;
    const int64_t count = UniformInt(1, 3);
    for (int64_t i = 0; i < count; ++i) {
      writes.push_back({absl::StrCat("k", UniformInt(0, kKeysPerStream - 1)), RandomWrite()});
    }
    if (const replication::PolicyHistory* p = node.store->Policies(stream);
        p != nullptr && !p->Current().MayWrite(node.siren)) {
      result_.refused_writes++;  // refused by the policy in force here: not acknowledged
    }
    const uint32_t epoch = node.store->OriginEpoch(stream);
    replication::VersionVector vv = node.store->Position(stream).value();
    const uint64_t before = vv[OriginKey{node.siren, epoch}].seq;
    uint64_t seq = before;
    for (auto& [key, delta] : node.store->Commit(stream, writes)) {
      acked_.push_back(
          AckedWrite{stream, key, std::move(delta), node.siren, EpochSeq(epoch, ++seq)});
    }
    vv = node.store->Position(stream).value();
    const uint64_t after = vv[OriginKey{node.siren, epoch}].seq;
    for (uint64_t s = before + 1; s <= after; ++s) {
      pending_[{stream, node.siren, EpochSeq(epoch, s)}] = {now_, 1};
      result_.writes++;
    }
  }
  LocalCommitted(n);
}

void World::NoteCommits(int n, const std::string& stream, const replication::VersionVector& before,
                        uint64_t after_seq) {
  const uint32_t siren = nodes_[static_cast<size_t>(n)].siren;
  const uint32_t epoch = nodes_[static_cast<size_t>(n)].store->OriginEpoch(stream);
  auto it = before.find(OriginKey{siren, epoch});
  const uint64_t first = (it == before.end() ? 0 : it->second.seq) + 1;
  auto& at = written_at_[{stream, siren}];
  for (uint64_t seq = first; seq <= after_seq; ++seq) at[EpochSeq(epoch, seq)] = before;
}

void World::NoteRefused() {
  refused_own_.clear();
  refused_stamps_.clear();
  refused_adds_.clear();
  for (Node& node : nodes_) {
    for (const SimStore::Refused& r : node.store->refused()) {
      absl::StatusOr<replication::DecodedBatch> batch = replication::DecodeBatch(r.batch, node.hasher);
      INTERCO_CHECK(batch.ok());
      const BatchHeader& h = batch->header;
      for (size_t c = 0; c < batch->changes.size(); ++c) {
        if (r.key.origin == node.siren) {
          refused_own_.emplace(r.stream, r.key.origin, EpochSeq(r.key.epoch, h.first_seq() + c));
        }
        for (const replication::FieldState& f : batch->changes[c].delta().fields()) {
          refused_stamps_.emplace(f.hlc(), f.origin());
          for (const auto& e : f.elements()) refused_adds_.emplace(e.value(), e.hlc(), e.origin());
        }
      }
    }
  }
}

bool World::InCollectedLife(int n, const std::string& stream, const std::string& key,
                            uint32_t origin, uint64_t seq) {
  auto collected = collected_.find({n, stream});
  if (collected == collected_.end()) return false;
  auto t = collected->second.find(key);
  if (t == collected->second.end()) return false;
  const auto& at = written_at_[{stream, origin}];
  auto w = at.find(seq);
  if (w == at.end()) return true;
  auto d = w->second.find(t->second.key);
  return d == w->second.end() || d->second.seq < t->second.seq;
}

std::string World::CheckStability() {
  if (!hazard_.empty()) return hazard_;
  for (const auto& [stream, subs] : subscribers_) {
    for (int i : subs) {
      Node& node = nodes_[static_cast<size_t>(i)];
      if (!node.up) continue;
      const replication::VersionVector frontier = node.engine->StableFrontier(stream);
      if (frontier.empty()) continue;
      const replication::VersionVector ours = node.store->Position(stream).value();
      // A member left out is no judge of the frontier: whatever of it this node lacks is
      // beyond what it holds, where a collection at this frontier would cut the member
      // (refusing what it wrote before applying it).
      const std::set<uint32_t> excluded = node.engine->Excluded(stream);
      for (int m : subs) {
        Node& member = nodes_[static_cast<size_t>(m)];
        if (excluded.contains(member.siren)) continue;
        const replication::VersionVector theirs = member.store->Position(stream).value();
        if (replication::Missing(frontier, theirs) > 0) {
          return absl::StrCat(stream, ": node ", i, "'s stable frontier is beyond what node ",
                              m, " holds");
        }
        // What the node lacks of the member's own changes was written holding the frontier.
        for (auto own = theirs.lower_bound(OriginKey{member.siren, 0});
             own != theirs.end() && own->first.origin == member.siren; ++own) {
          auto have = ours.find(own->first);
          const uint64_t from = have == ours.end() ? 0 : have->second.seq;
          const auto& at = written_at_[{stream, member.siren}];
          for (uint64_t seq = from + 1; seq <= own->second.seq; ++seq) {
            auto w = at.find(EpochSeq(own->first.epoch, seq));
            if (w == at.end()) return absl::StrCat("no record of how ", m, " wrote ", seq);
            if (replication::Missing(frontier, w->second) == 0) continue;
            return absl::StrCat(stream, ": node ", i, "'s stable frontier is concurrent with ",
                                "change ", seq, " of node ", m, " (epoch ", own->first.epoch,
                                "), which it lacks");
          }
        }
      }
    }
  }
  return "";
}

RecordState World::WithoutPurged(int n, const std::string& stream, const std::string& key,
                                 const RecordState& delta) {
  auto tags = purged_tags_.find({n, stream, key});
  if (tags == purged_tags_.end()) return delta;
  RecordState out = delta;
  for (replication::FieldState& f : *out.mutable_fields()) {
    for (auto* list : {f.mutable_elements(), f.mutable_removed()}) {
      list->erase(std::remove_if(list->begin(), list->end(),
                                 [&](const interco::replication::v1::SetElement& e) {
                                   return tags->second.contains(
                                       Tag{f.name(), e.value(), e.hlc(), e.origin()});
                                 }),
                  list->end());
    }
  }
  return out;
}

// Once everything is stable and collected, nothing of the history is kept beside the log:
// no index entry waits for a collection, every record is of its current life alone, a
// set holds only its live elements, and a counter one entry per origin.
std::string World::CheckBoundedMetadata() {
  NoteRefused();
  for (const auto& [stream, subs] : subscribers_) {
    for (int i : subs) {
      SimStore& store = *nodes_[static_cast<size_t>(i)].store;
      const replication::PolicyHistory* p = store.Policies(stream);
      if (p == nullptr || !replication::CollectionAllowed(*p)) continue;
      if (const size_t left = store.IndexedHistory(stream, &refused_adds_); left > 0) {
        return absl::StrCat(stream, ": node ", i, " still indexes ", left,
                            " deletes or removes once everything is collected");
      }
      for (const auto& [key, state] : store.Records(stream)) {
        const uint32_t life = replication::LifeOf(state.causal_length());
        for (const replication::FieldState& f : state.fields()) {
          if (replication::LifeOfField(f) != life || RemovedKept(f) > 0 ||
              f.counter_size() > static_cast<int>(nodes_.size())) {
            return absl::StrCat(stream, "/", key, " on node ", i, ": field ", f.name(),
                                " keeps more than its current life's live value");
          }
        }
      }
    }
  }
  return "";
}

size_t World::RemovedKept(const replication::FieldState& f) {
  size_t kept = 0;
  for (const auto& e : f.removed()) kept += !refused_adds_.contains({e.value(), e.hlc(), e.origin()});
  return kept;
}

bool World::AllCollected(std::string* left) {
  NoteRefused();
  for (const auto& [stream, subs] : subscribers_) {
    for (int i : subs) {
      SimStore& store = *nodes_[static_cast<size_t>(i)].store;
      const replication::PolicyHistory* p = store.Policies(stream);
      if (p == nullptr || !replication::CollectionAllowed(*p)) continue;
      // The index too: a remove whose element went already is read once more by a
      // collection, which then forgets it.
      if (const size_t indexed = store.IndexedHistory(stream, &refused_adds_); indexed > 0) {
        *left = absl::StrCat(stream, ": ", indexed, " deletes or removes indexed on node ", i);
        return false;
      }
      for (const auto& [key, state] : store.Records(stream)) {
        if (!replication::IsLive(state)) {
          *left = absl::StrCat(stream, "/", key, " on node ", i);
          return false;
        }
        for (const replication::FieldState& f : state.fields()) {
          if (const size_t kept = RemovedKept(f); kept > 0) {
            *left = absl::StrCat(stream, "/", key, " field ", f.name(), " on node ", i, ": ",
                                 kept, " removed elements");
            return false;
          }
        }
      }
    }
  }
  return true;
}

bool World::StabilitySettled(std::string* lagging) {
  for (const auto& [stream, subs] : subscribers_) {
    for (int i : subs) {
      Node& node = nodes_[static_cast<size_t>(i)];
      const replication::VersionVector ours = node.store->Position(stream).value();
      const uint64_t unstable = replication::Missing(ours, node.engine->StableFrontier(stream));
      if (unstable > 0) {
        *lagging = absl::StrCat(stream, ": node ", i, " has ", unstable, " changes not stable");
        return false;
      }
    }
  }
  return true;
}

void World::LocalCommitted(int n) {
  nodes_[static_cast<size_t>(n)].engine->OnLocalCommit();
  // As the node's committer: the unsigned tail is signed once nothing more comes (1 ms).
  At(now_ + 1, [this, n] {
    Node& node = nodes_[static_cast<size_t>(n)];
    if (node.up && node.store->SignTails()) node.engine->OnLocalCommit();
  });
}

void World::ScheduleTick(int n) {
  At(now_ + kTickMs, [this, n] {
    Node& node = nodes_[static_cast<size_t>(n)];
    if (node.up) {
      MaybeWrite(n);
      node.engine->Tick();
    } else if (node.restart_at >= 0 && now_ >= node.restart_at) {
      node.restart_at = -1;
      Restart(n);
    }
    ScheduleTick(n);
  });
}

void World::RunUntil(int64_t end) {
  while (!queue_.empty() && queue_.top().time <= end) {
    Event e = queue_.top();
    queue_.pop();
    now_ = e.time;
    e.fn();
  }
  now_ = end;
}

bool World::Converged() {
  for (const auto& [stream, subs] : subscribers_) {
    const Node& first = nodes_[static_cast<size_t>(*subs.begin())];
    const replication::VersionVector pos0 = first.store->Position(stream).value();
    for (int i : subs) {
      const replication::VersionVector pos =
          nodes_[static_cast<size_t>(i)].store->Position(stream).value();
      if (pos.size() != pos0.size()) return false;
      for (const auto& [k, p] : pos0) {
        auto it = pos.find(k);
        if (it == pos.end() || it->second.seq != p.seq) return false;
      }
    }
  }
  return true;
}

std::string World::DumpPositions() {
  std::string out;
  for (const auto& [stream, subs] : subscribers_) {
    for (int i : subs) {
      Node& node = nodes_[static_cast<size_t>(i)];
      absl::StrAppend(&out, "\n    ", stream, " node ", i, (node.up ? "" : " (down)"), ":");
      const replication::VersionVector vv = node.store->Position(stream).value();
      for (const auto& [k, p] : vv) {
        absl::StrAppend(&out, " ", k.origin % 100000, "=", p.seq);
      }
      for (const auto& [peer, st] : node.engine->Stats()) {
        absl::StrAppend(&out, " | peer ", peer % 100000, (st.connected ? " up" : " down"),
                        (st.hello_received ? " hello" : ""), " sent=", st.batches_sent,
                        " recv=", st.batches_received, " applied=", st.batches_applied,
                        " dup=", st.duplicates, " gaps=", st.gaps, " rej=", st.rejected, " unv=", st.unverified, " forks=", st.forks,
                        " quar=", st.quarantined, " pw=", st.policy_waits, " unauth=", st.unauthorized, " rew=", st.rewinds, " inflight=", st.in_flight,
                        " missing=");
        for (const auto& [o, m] : st.missing_by_origin) absl::StrAppend(&out, o % 100000, ":", m, ",");
      }
    }
  }
  return out;
}

std::string World::Check() {
  for (const auto& [stream, subs] : subscribers_) {
    const auto& ref = nodes_[static_cast<size_t>(*subs.begin())].store->Records(stream);
    for (int i : subs) {
      const auto& recs = nodes_[static_cast<size_t>(i)].store->Records(stream);
      if (recs.size() != ref.size()) return absl::StrCat(stream, ": node ", i, " holds ", recs.size(), " records, node ", *subs.begin(), " ", ref.size());
      for (const auto& [key, state] : ref) {
        auto it = recs.find(key);
        if (it == recs.end() || Deterministic(it->second) != Deterministic(state)) {
          return absl::StrCat(stream, "/", key, ": states differ between nodes ", *subs.begin(), " and ", i);
        }
      }
    }
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (!subs.contains(static_cast<int>(i)) && !nodes_[i].store->Records(stream).empty()) {
        return absl::StrCat(stream, ": node ", i, " does not replicate it but holds records");
      }
    }
  }
  // No acknowledged write is lost: merging it into the final state changes nothing
  // (it is there, or superseded by a causally later or winning write) — unless a
  // collection refused it (its origin was left out), and its origin keeps it.
  NoteRefused();
  for (const AckedWrite& w : acked_) {
    if (refused_own_.contains({w.stream, w.origin, w.seq})) {
      result_.refused_acked++;
      continue;
    }
    for (int i : subscribers_[w.stream]) {
      // Superseded by a delete that was then collected there.
      if (InCollectedLife(i, w.stream, w.key, w.origin, w.seq)) continue;
      auto& recs = nodes_[static_cast<size_t>(i)].store->Records(w.stream);
      auto it = recs.find(w.key);
      RecordState copy = it == recs.end() ? RecordState() : it->second;
      // A set element removed and then collected is superseded by its remove.
      if (it == recs.end() ||
          replication::MergeRecordState(copy, WithoutPurged(i, w.stream, w.key, w.delta))) {
        return absl::StrCat(w.stream, "/", w.key, ": an acknowledged write of ", w.origin,
                            " (epoch ", w.seq >> 40, ", change ", w.seq & ((uint64_t{1} << 40) - 1),
                            ") is missing on node ", i);
      }
    }
  }
  if (std::string c = CheckConflicts(); !c.empty()) return c;
  if (options_.policy_changes) {
    // Every node ends with the owner's last policy version in force.
    const uint64_t owner_version = nodes_[0].store->Policies("commun")->current_version();
    for (int i : subscribers_["commun"]) {
      const uint64_t v = nodes_[static_cast<size_t>(i)].store->Policies("commun")->current_version();
      if (v != owner_version) {
        return absl::StrCat("node ", i, " has policy version ", v, ", the owner ", owner_version);
      }
    }
  }
  // What a log holds, hollow batches and all, rebuilds what its node holds: a node
  // catching up from it gets the same records. Checked on the subscriber of each stream
  // that made the most batches hollow (all of them: twice the time of a run).
  for (const auto& [stream, subs] : subscribers_) {
    int most = *subs.begin();
    for (int i : subs) {
      if (nodes_[static_cast<size_t>(i)].store->hollowed_batches() >
          nodes_[static_cast<size_t>(most)].store->hollowed_batches()) {
        most = i;
      }
    }
    if (std::string r = nodes_[static_cast<size_t>(most)].store->CheckRebuild(stream); !r.empty()) {
      return absl::StrCat("node ", most, ", ", stream, ": ", r);
    }
  }
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (std::string log = nodes_[i].store->CheckLog(); !log.empty()) {
      return absl::StrCat("node ", i, ": ", log);
    }

    // Honest origins never fork: a detected fork here is a false alarm.
    if (!nodes_[i].store->forks().empty()) {
      return absl::StrCat("node ", i, ": froze origin ", nodes_[i].store->forks()[0].origin(),
                          " without a fork");
    }
    // Copies change by their change logs only: two at one position hold one state.
    if (!nodes_[i].store->divergences.empty()) {
      const auto& [peer, stream] = nodes_[i].store->divergences[0];
      return absl::StrCat("node ", i, ": its state of ", stream, " differs from node ", peer,
                          "'s at the same position");
    }
    // HLC bound: no stamp ahead of the fastest clock there ever was.
    const uint64_t bound_ms = static_cast<uint64_t>(now_ + options_.clock_skew_max_ms + 1000);
    if (replication::HybridLogicalClock::Millis(nodes_[i].store->hlc_last()) > bound_ms) {
      return absl::StrCat("node ", i, ": HLC beyond any wall clock");
    }
  }
  return "";
}

std::string World::CheckTree() {
  for (const auto& [stream, subs] : subscribers_) {
    std::map<int, int> uplink;  // node index -> uplink's index
    int root = *subs.begin();
    for (int i : subs) {
      if (nodes_[static_cast<size_t>(i)].siren < nodes_[static_cast<size_t>(root)].siren) root = i;
      for (const auto& [peer, st] : nodes_[static_cast<size_t>(i)].engine->Stats()) {
        if (std::find(st.uplink_streams.begin(), st.uplink_streams.end(), stream) ==
            st.uplink_streams.end()) {
          continue;
        }
        if (uplink.contains(i)) return absl::StrCat(stream, ": node ", i, " has two uplinks");
        uplink[i] = index_of_.at(peer);
      }
    }
    if (uplink.contains(root)) {
      return absl::StrCat(stream, ": the root, node ", root, ", takes the stream from node ",
                          uplink[root]);
    }
    for (int i : subs) {
      int at = i;
      for (size_t steps = 0; at != root; ++steps) {
        auto it = uplink.find(at);
        if (it == uplink.end() || steps > subs.size()) {
          return absl::StrCat(stream, ": node ", i, "'s uplinks do not lead to the root, node ",
                              root, " (stuck at node ", at, ")");
        }
        at = it->second;
        if (!subs.contains(at)) {
          return absl::StrCat(stream, ": node ", i, " reaches node ", at,
                              " through uplinks, which does not replicate it");
        }
      }
    }
  }
  return "";
}

// Every register write that lost a race is in every node's conflict journal, and nothing
// else is: the losers of a record are the register writes of its final life that are
// neither a final value nor named as seen by another write (computed from the log).
std::string World::CheckConflicts() {
  using Id = std::tuple<std::string, std::string, uint64_t, uint32_t>;  // key, field, stamp
  for (const auto& [stream, subs] : subscribers_) {
    // The history as written: the log of a subscriber that received no batch hollow (its
    // own hollow batches it shows whole), if there is one.
    int ref_index = *subs.begin();
    for (int i : subs) {
      if (nodes_[static_cast<size_t>(i)].store->hollow_applied() == 0) {
        ref_index = i;
        break;
      }
    }
    SimStore& ref = *nodes_[static_cast<size_t>(ref_index)].store;
    const auto& records = ref.Records(stream);
    std::set<Id> seen;
    std::map<Id, std::string> writes;
    for (const SimStore::LoggedChange& logged : ref.LoggedChanges(stream)) {
      const interco::replication::v1::Change& c = logged.change;
      auto it = records.find(c.key());
      if (c.has_policy() || it == records.end() || !replication::IsLive(it->second)) continue;
      // A write of a life that was collected is not of the final life, whatever its
      // number says (lives count again from 1 once a record is collected).
      if (InCollectedLife(ref_index, stream, c.key(), logged.key.origin,
                          EpochSeq(logged.key.epoch, logged.seq))) {
        continue;
      }
      const uint32_t life = replication::LifeOf(it->second.causal_length());
      for (const replication::FieldState& f : c.delta().fields()) {
        const interco::v1::FieldSpec* spec = schema_.Find(f.name());
        if (replication::LifeOfField(f) != life || spec->type() == interco::v1::FIELD_TYPE_STRING_SET ||
            spec->type() == interco::v1::FIELD_TYPE_COUNTER) {
          continue;
        }
        writes[Id{c.key(), f.name(), f.hlc(), f.origin()}] = f.value().SerializeAsString();
        if (auto s = replication::SeenBy(f)) seen.insert(Id{c.key(), f.name(), s->hlc, s->origin});
      }
    }
    std::map<Id, std::string> expected;
    for (const auto& [id, value] : writes) {
      const auto& [key, field, hlc, origin] = id;
      bool final_value = false;
      for (const replication::FieldState& f : records.at(key).fields()) {
        final_value |= f.name() == field && f.hlc() == hlc && f.origin() == origin;
      }
      if (!final_value && !seen.contains(id)) expected[id] = value;
    }
    result_.conflicts += expected.size();
    for (int i : subs) {
      // Losers stamped below the retention's cut in force there have left its journal.
      const uint64_t cut = nodes_[static_cast<size_t>(i)].store->JournalBefore(stream);
      std::map<Id, std::string> expected_here;
      for (const auto& [id, value] : expected) {
        if (std::get<2>(id) >= cut) {
          expected_here.emplace(id, value);
        } else {
          result_.conflicts_expired++;
        }
      }
      std::map<Id, std::string> held;
      std::set<std::string> bounded;  // records whose journal dropped entries: not compared
      for (const auto& [key, journal] : nodes_[static_cast<size_t>(i)].store->Conflicts(stream)) {
        if (journal.dropped() > 0) bounded.insert(key);
        // A write seen by another can only have been refused (its origin was left out),
        // or be of an origin restored from a backup, known here by several epochs or by a
        // later one only (its first wrote nothing to this registry): a stamp does not say
        // its epoch, so a store cannot tell it arrived (replication::ReceivedBefore), and
        // the entry stays until the journal retention takes it.
        const replication::VersionVector position =
            nodes_[static_cast<size_t>(i)].store->Position(stream).value();
        for (const auto& e : journal.seen_ahead()) {
          std::vector<uint32_t> epochs;
          for (auto p = position.lower_bound(OriginKey{e.origin(), 0});
               p != position.end() && p->first.origin == e.origin(); ++p) {
            epochs.push_back(p->first.epoch);
          }
          const bool restored = !epochs.empty() && (epochs.size() > 1 || epochs[0] != 1);
          if (!restored && !refused_stamps_.contains({e.hlc(), e.origin()})) {
            return absl::StrCat(stream, "/", key, ": node ", i, " still expects a write of ",
                                e.origin(), " it has seen named (", journal.seen_ahead_size(),
                                " in all)");
          }
        }
        for (const auto& l : journal.lost()) {
          held[Id{key, l.loser().name(), l.loser().hlc(), l.loser().origin()}] =
              l.loser().value().SerializeAsString();
        }
      }
      for (const auto& [id, value] : expected_here) {
        if (bounded.contains(std::get<0>(id))) continue;
        auto it = held.find(id);
        if (it == held.end() || it->second != value) {
          return absl::StrCat(stream, "/", std::get<0>(id), " field ", std::get<1>(id),
                              ": a write that lost a race (origin ", std::get<3>(id),
                              ") is missing from node ", i, "'s conflict journal");
        }
      }
      for (const auto& [id, value] : held) {
        if (!bounded.contains(std::get<0>(id)) && !expected_here.contains(id)) {
          return absl::StrCat(stream, "/", std::get<0>(id), " field ", std::get<1>(id),
                              ": node ", i, "'s conflict journal holds a write of origin ",
                              std::get<3>(id), " that did not lose a race");
        }
      }
      result_.conflicts_bounded += bounded.size();
    }
  }
  return "";
}

SimResult World::Run() {
  BuildTopology();
  for (size_t i = 0; i < nodes_.size(); ++i) StartEngine(static_cast<int>(i));
  for (Link& l : links_) Connect(l);
  for (size_t i = 0; i < nodes_.size(); ++i) ScheduleTick(static_cast<int>(i));

  // Fault phase: writes everywhere, partitions, crashes.
  faults_ = options_.fixed_delay_ms == 0;
  for (int64_t t = 500; t <= options_.fault_phase_ms; t += 500) {
    RunUntil(t);
    if (std::string c = CheckStability(); !c.empty()) {
      result_.failure = absl::StrCat("at ", now_, " ms: ", c);
      return result_;
    }
    if (!faults_) continue;
    if (options_.partitions && !links_.empty() && Uniform() < 0.3) {
      Link& l = links_[static_cast<size_t>(UniformInt(0, static_cast<int64_t>(links_.size()) - 1))];
      SetLink(l, !l.up);
    }
    if (options_.policy_changes && nodes_[0].up && Uniform() < 0.25) {
      // The owner lets a random subset of the others write.
      interco::v1::Policy p;
      for (size_t i = 1; i < nodes_.size(); ++i) {
        if (Uniform() < 0.6) {
          p.mutable_writers()->add_authorities(replication::OriginToSiren(nodes_[i].siren));
        }
      }
      // Half the time, only writers read: the others stop receiving what is written next.
      if (Uniform() < 0.5) p.mutable_readers()->set_all_authorities(true);
      nodes_[0].store->SetPolicy("commun", p);
      LocalCommitted(0);
      result_.policy_changes++;
    }
    if (options_.crashes && Uniform() < 0.05) {
      const int n = static_cast<int>(UniformInt(0, static_cast<int64_t>(nodes_.size()) - 1));
      if (nodes_[static_cast<size_t>(n)].up) {
        Crash(n);
        nodes_[static_cast<size_t>(n)].restart_at = now_ + UniformInt(200, 5000);
      }
    }
  }

  // Heal: network repaired, clocks corrected, every node up; no more writes.
  writing_ = false;
  faults_ = false;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    nodes_[i].clock->set_skew(0);
    if (!nodes_[i].up) Restart(static_cast<int>(i));
    nodes_[i].restart_at = -1;
  }
  for (Link& l : links_) SetLink(l, true);
  if (options_.policy_changes) {
    // Everyone reads again, so that every node converges.
    interco::v1::Policy readers;
    readers.mutable_readers()->set_all_authorities(true);
    nodes_[0].store->SetPolicy("commun", readers);
    LocalCommitted(0);
    result_.policy_changes++;
  }
  const int64_t heal_start = now_;
  while (now_ - heal_start < options_.converge_within_ms) {
    RunUntil(now_ + 250);
    if (std::string c = CheckStability(); !c.empty()) {
      result_.failure = absl::StrCat("at ", now_, " ms: ", c);
      return result_;
    }
    if (Converged()) {
      result_.converged_after_ms = now_ - heal_start;
      break;
    }
  }
  if (result_.converged_after_ms < 0) {
    result_.failure = absl::StrCat("no convergence within ", options_.converge_within_ms,
                                   " ms after healing:", DumpPositions());
    return result_;
  }
  result_.failure = Check();
  if (result_.failure.empty() && !options_.byzantine_relay) {
    // A status interval and a few exchanges for the tree to settle after the heal (the
    // suspected relay of a Byzantine run is never an uplink, which can leave its
    // neighbours to grafts: not checked there). Its messages are not the run's.
    const Traffic counted = Counted();
    RunUntil(now_ + 6000);
    result_.failure = CheckTree();
    RestoreTraffic(counted);
  }
  if (result_.failure.empty()) {
    // Reports reach every node in a status interval per link: everything becomes stable.
    const Traffic counted = Counted();
    const int64_t settle_start = now_;
    std::string lagging;
    while (!StabilitySettled(&lagging)) {
      if (now_ - settle_start > kStabilitySettleMs) {
        result_.failure = absl::StrCat("not stable ", kStabilitySettleMs,
                                       " ms after convergence: ", lagging, DumpPositions());
        break;
      }
      RunUntil(now_ + 1000);
      if (std::string c = CheckStability(); !c.empty()) {
        result_.failure = c;
        break;
      }
    }
    if (result_.failure.empty()) result_.stable_after_ms = now_ - settle_start;
    // Then the owners collect every tombstone, and states are identical again.
    const int64_t collect_start = now_;
    std::string left;
    while (result_.failure.empty() && !AllCollected(&left)) {
      if (now_ - collect_start > kStabilitySettleMs) {
        result_.failure = absl::StrCat("tombstones left ", kStabilitySettleMs,
                                       " ms after everything was stable: ", left);
        break;
      }
      RunUntil(now_ + 1000);
      if (std::string c = CheckStability(); !c.empty()) result_.failure = c;
    }
    if (result_.failure.empty()) result_.failure = Check();
    if (result_.failure.empty()) result_.failure = CheckBoundedMetadata();
    RestoreTraffic(counted);
  }
  result_.purged = purged_count_;
  for (Node& node : nodes_) {
    result_.unsigned_batches += node.store->unsigned_batches();
    result_.collections += node.engine->collections();
    result_.replays += node.store->replays();
    result_.exclusions += node.store->exclusion_collections();
    result_.hollowed += node.store->hollowed_batches();
    result_.hollow_applied += node.store->hollow_applied();
    result_.folded += node.store->folded_batches();
    for (const auto& [peer, st] : node.engine->Stats()) {
      result_.refused += st.unverified + st.rejected;
      result_.policy_waits += st.policy_waits;
      result_.excluded_batches += st.excluded;
      result_.digests_matched += st.digests_matched;
      result_.skips_applied += st.skips_applied;
      // Honest nodes send nothing malformed (a report that does not read back, say).
      if (!options_.byzantine_relay && st.rejected > 0 && result_.failure.empty()) {
        result_.failure = absl::StrCat("node ", node.siren, " rejected ", st.rejected,
                                       " messages or reports of honest peers as malformed");
      }
      // Honest relays forward reports and batches unchanged: none is suspected.
      if (!options_.byzantine_relay && st.suspect && result_.failure.empty()) {
        result_.failure = absl::StrCat("node ", node.siren, " suspects its honest peer ", peer);
      }
      // Honest writers are judged alike everywhere: nothing they wrote is refused.
      if (st.unauthorized > 0 && result_.failure.empty()) {
        result_.failure = absl::StrCat("node ", node.siren, " refused ", st.unauthorized,
                                       " batches of honest writers as unauthorized");
      }
    }
  }
  return result_;
}

}  // namespace

SimResult RunSimulation(const SimOptions& options) {
  World world(options);
  return world.Run();
}

}  // namespace interco::sim
