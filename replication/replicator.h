// The replication engine of one node: a pure, single-threaded state machine.
//
// It keeps, per peer, what the peer holds of each stream (version vectors learned from
// Hello, acks and the batches it sent us) and what was sent to it this session. New
// batches follow a spanning tree: per stream, each node takes the stream from one peer
// (its uplink) and pushes what the peer lacks, in origin order and with a bound on
// unacknowledged changes, to its uplink and to the peers that take the stream from it;
// the other links carry a periodic status, and a node that stays behind a peer's status
// grafts that peer (asks it to push too) until its pushes turn into duplicates. It
// applies received batches that are the next of their origin, acks them, relays them
// onward (never back to a node that has them), and repairs losses: a gap makes the
// receiver restate its position (Hello), an ack timeout makes the sender rewind to the
// last acknowledged position. What is due to a peer is gathered and sent as one message
// at most every flush interval.
//
// Inputs are events (OnConnected, OnDisconnected, OnMessage, OnLocalCommit, Tick); the
// clock, the transport, the store and the hasher come in through replication/env.h, so
// the same code runs in the node and in the deterministic simulator.
//
// Not thread-safe: the owner serializes every call.
#ifndef INTERCO_REPLICATION_REPLICATOR_H_
#define INTERCO_REPLICATION_REPLICATOR_H_

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "interco/replication/v1/peer.pb.h"
#include "replication/base/limits.h"
#include "replication/env.h"
#include "replication/stability.h"
#include "replication/version_vector.h"

namespace interco::replication {

// The peer protocol's version, stated in each Hello (Hello.protocol_version says what
// each version added); a Hello of another version is refused.
inline constexpr uint32_t kProtocolVersion = 7;

struct ReplicatorOptions {
  // SIREN of this node (as an origin number). Required.
  uint32_t self = 0;
  // This node's origin epoch (1, plus one per restore from a backup): stated with its
  // reports of what it holds.
  uint32_t epoch = 1;
  // What becomes due to a peer within this long of the last message sent to it waits for
  // the next Tick (or for a full message), so that one message carries it all. Default:
  // 100 ms.
  int64_t flush_interval_ms = 100;
  // An ack with nothing to ride on waits this long for a message to the peer, unless it
  // frees a quarter of the peer's in-flight window. Default: 500 ms.
  int64_t ack_delay_ms = 500;
  // How often each peer is sent our full status: positions (a cumulative ack that also
  // says what we got from elsewhere), sessions and push requests. Default: 5000 ms.
  int64_t status_interval_ms = 5000;
  // An unanswered Hello, or a gap, restates our Hello at most this often. Default: 1000 ms.
  int64_t restate_interval_ms = 1000;
  // A stream in which we stay behind what a lazy peer's status showed for this long is
  // grafted: that peer is asked to push it to us too. Default: 2000 ms.
  int64_t graft_delay_ms = 2000;
  // Unacknowledged changes older than this are sent again. Default: 5000 ms.
  int64_t ack_timeout_ms = 5000;
  // Changes sent to one peer and not yet acknowledged. Default: 8192.
  uint64_t in_flight_changes_max = 8192;
  // Batches read from the log per origin and per step. Default: 64.
  size_t read_batches_max = 64;
  // Batches received ahead of a gap, kept until the gap fills. Default: 256.
  size_t reorder_buffer_batches_max = 256;
  // A batch whose greatest HLC is further ahead of the local wall clock than this is not
  // applied (quarantined) until the clock catches up. Default: 60 s.
  int64_t clock_offset_max_ms = limits::kClockOffsetMaxMillisDefault;
  // As the owner of a stream, how often to consider a garbage collection (when the
  // stable frontier moved). Default: 60 s.
  int64_t collect_interval_ms = 60000;
  // As the owner of a stream: how long, counted from its stamp, a lost write stays in
  // the conflict journals. Its collections then name the HLC below which journal entries
  // go (Collection.journal_before). 0: until the record's life ends.
  int64_t journal_retention_ms = 0;
  // As the owner of a stream: a member that has not caught up, this long later, with
  // what this node held is left out of its collections (replication/exclusion.h), so that
  // an absent member stops holding garbage collection back; what it writes meanwhile is
  // refused, and it catches up before it counts again. 0: never.
  int64_t member_retention_ms = 0;
  // As the owner of a stream: collect, to let every node compact its change log
  // (replication/compaction.h), once the stable frontier passed this many changes beyond
  // the last collection's and the journal retention moved the journals' cut (so only
  // with a journal retention). 0: never for that alone. Default: 1024.
  uint64_t compaction_changes = 1024;
  // How often, at most, a peer is sent a digest of a stream's state (with a status), when
  // it is known to hold exactly what this node holds of it; a peer whose own state
  // differs at that position reports a divergence (ReplicaStore::OnDiverged). 0: never.
  // Default: 60 s.
  int64_t digest_interval_ms = 60000;
};

// What the engine says about one peer.
struct PeerStats {
  bool connected = false;
  bool hello_received = false;
  // Monotonic clock of the last message from the peer (0: never).
  int64_t last_contact_ms = 0;
  uint64_t batches_sent = 0;
  uint64_t batches_received = 0;
  uint64_t batches_applied = 0;
  // Skips (Batch.skip_from: one batch standing for a stretch of hollow ones) sent to the
  // peer, and applied from it.
  uint64_t skips_sent = 0;
  uint64_t skips_applied = 0;
  uint64_t duplicates = 0;
  uint64_t gaps = 0;
  uint64_t rejected = 0;
  // Batches whose signature did not verify (forged, altered, unknown or wrong signer).
  uint64_t unverified = 0;
  // Batches from origins that may not write their stream (registry policy).
  uint64_t unauthorized = 0;
  // Batches held back until the policy version they were written under is applied here.
  uint64_t policy_waits = 0;
  // Batches of members a collection left out, beyond its cut (replication/exclusion.h):
  // refused, as everywhere.
  uint64_t excluded = 0;
  // Forks of an origin's chain detected in batches from this peer.
  uint64_t forks = 0;
  // Batches of frozen origins, dropped.
  uint64_t frozen = 0;
  uint64_t quarantined = 0;
  uint64_t rewinds = 0;
  // Changes sent and not yet acknowledged.
  uint64_t in_flight = 0;
  // Changes this node holds that the peer is not known to hold, per origin SIREN.
  std::map<uint32_t, uint64_t> missing_by_origin;
  // Messages sent to the peer.
  uint64_t messages_sent = 0;
  // The streams this node takes from the peer (it is our uplink for them), and the
  // streams it pushes to the peer (the peer's uplink, or asked for); sorted.
  std::vector<std::string> uplink_streams;
  std::vector<std::string> push_streams;
  // Streams grafted (we stayed behind the peer's status) and pruned (its pushes became
  // duplicates).
  uint64_t grafts = 0;
  uint64_t prunes = 0;
  // The peer relayed a batch whose signature does not verify (altered on the way): it is
  // never taken as uplink again while this engine runs.
  bool suspect = false;
  // Divergence checks: digests sent to the peer; digests from it at our own position,
  // that matched our state and that did not; the streams whose latest such digest did
  // not (until one matches).
  uint64_t digests_sent = 0;
  uint64_t digests_matched = 0;
  uint64_t divergences = 0;
  std::set<std::string> diverged;
};

// A node's place in one stream's broadcast tree (interco.replication.v1.TreePosition).
struct TreePlace {
  // The smallest SIREN the node hears of among the stream's nodes (itself if none is
  // smaller), its distance to it in links, and the peer it takes the stream from (0 for
  // the root).
  uint32_t root = 0;
  uint32_t distance = 0;
  uint32_t uplink = 0;
  bool operator==(const TreePlace&) const = default;
};

class Replicator {
 public:
  // Every reference must outlive the engine. `signer` signs this node's stability reports
  // (its batches are the store's to sign).
  Replicator(const ReplicatorOptions& options, Clock& clock, Transport& transport,
             ReplicaStore& store, Hasher& hasher, Verifier& verifier, Signer& signer);
  Replicator(const Replicator&) = delete;
  Replicator& operator=(const Replicator&) = delete;

  // A session with `peer` is up: restart its state and send our Hello.
  void OnConnected(uint32_t peer);
  // The session with `peer` is down; messages in flight are lost.
  void OnDisconnected(uint32_t peer);
  // A message from `peer` on the current session.
  void OnMessage(uint32_t peer, const interco::replication::v1::PeerMessage& message);
  // The local log has new batches (local writes committed).
  void OnLocalCommit();
  // Periodic work: status to peers, retransmission after ack timeouts.
  void Tick();

  // Per configured or seen peer.
  std::map<uint32_t, PeerStats> Stats();
  // This node's place in each stream's broadcast tree.
  const std::map<std::string, TreePlace>& TreePlaces() const { return position_; }
  // Origins frozen after a fork of their chain: their batches are neither applied nor
  // forwarded.
  const std::set<uint32_t>& FrozenOrigins() const { return frozen_; }
  // The stable frontier of a stream (replication/stability.h): what every member of it
  // holds, with nothing concurrent still to come here.
  VersionVector StableFrontier(const std::string& stream);
  // The members of `stream` left out of its stable frontier here (replication/exclusion.h).
  std::set<uint32_t> Excluded(const std::string& stream);
  // Per stream replicated: its members and how much of it is not stable yet.
  std::map<std::string, StabilitySummary> Stabilities();
  // Collections this node committed as the owner of a stream.
  uint64_t collections() const { return collections_; }

 private:
  // What is due to a peer, gathered until it is flushed as one message.
  struct Outbox {
    bool hello = false;
    bool hello_reply = false;
    bool status = false;
    // Positions that moved (acks), merged; and the changes they acknowledge.
    std::map<std::string, VersionVector> acks;
    uint64_t acked_changes = 0;
    int64_t ack_since_ms = 0;
    std::vector<interco::replication::v1::BatchFrame> frames;
    size_t frame_bytes = 0;
    size_t frame_batches = 0;
    // Per (stream, origin epoch) gathered, the sent position before its first run:
    // restored if the message cannot be sent.
    std::map<std::pair<std::string, OriginKey>, uint64_t> sent_before;
    // Certificates attached to the gathered runs and the status.
    std::vector<std::string> certs;
    bool Empty() const { return !hello && !status && acks.empty() && frames.empty(); }
    // Forgets the gathered runs (their bookkeeping with them).
    void DropRuns() {
      frames.clear();
      frame_bytes = 0;
      frame_batches = 0;
      sent_before.clear();
      certs.clear();
    }
  };
  // A stream in which the peer's status showed more than we hold, since when, and how
  // much of it we held then (progress restarts the wait).
  struct Lag {
    VersionVector target;
    int64_t since_ms = 0;
    uint64_t held = 0;
  };
  struct Peer {
    bool connected = false;
    bool hello_received = false;
    std::set<std::string> streams;
    // The peer's place in each stream's tree (its last Hello or status).
    std::map<std::string, TreePlace> trees;
    // What the peer holds, as far as we know.
    std::map<std::string, VersionVector> known;
    // Highest sequence number sent this session, per stream and origin epoch.
    std::map<std::string, std::map<OriginKey, uint64_t>> sent;
    // Key IDs of the certificates sent this session.
    std::set<std::string> certs_sent;
    // Streams the peer asked us to push to it (its last Hello or status).
    std::set<std::string> wants;
    // Streams we asked the peer to push beyond the tree (we stayed behind it), and what
    // we last asked it in all (our uplink streams included).
    std::set<std::string> grafted;
    std::set<std::string> declared;
    std::map<std::string, Lag> lags;
    Outbox out;
    int64_t last_flush_ms = 0;
    bool flushed = false;
    int64_t last_status_ms = 0;
    int64_t last_hello_ms = 0;
    int64_t last_progress_ms = 0;
    int64_t last_nack_ms = -1;
    // Per stream, Stability::version() at the last status that carried its reports: the
    // reports that grew since go next (all of them for a stream not sent yet).
    std::map<std::string, uint64_t> reports_sent;
    // Per stream, when a digest of it was last sent this session.
    std::map<std::string, int64_t> digest_sent;
    PeerStats stats;
  };

  // Gathers our Hello for the peer (sent with the next flush, at once for a new session).
  void SendHello(Peer& peer, bool reply_requested);
  // Gathers a cumulative ack of `changes` changes, up to `seq`, of one origin epoch.
  void QueueAck(Peer& peer, const std::string& stream, OriginKey key, uint64_t seq,
                uint64_t max_hlc, uint64_t changes);
  // Adds to `to` the certificate `key_id` names if it is known and this session has not
  // carried it (Outbox.certs: forgotten again if the message cannot be sent).
  void AttachCertificate(Peer& peer, const std::string& key_id,
                         interco::replication::v1::Certificates& to);
  // Adds a run to the peer's message (with the certificate of `signer` unless this
  // session already carried it), sending what is gathered first if the run would
  // overflow it. False if that send failed (nothing more should be gathered now).
  bool Gather(uint32_t peer_id, Peer& peer, interco::replication::v1::BatchFrame frame,
              const std::string& stream, OriginKey key, uint64_t sent_before,
              const std::string& signer);
  // Sends what is gathered for the peer as one message. On failure the runs are given
  // back (sent again later) and the rest stays due.
  bool Flush(uint32_t peer_id, Peer& peer);
  // Flushes each peer whose message is due: anything, at a Tick or once flush_interval_ms
  // passed since its last message; acks alone, after ack_delay_ms or when they free a
  // quarter of the in-flight window.
  void FlushDue(bool tick);
  // Chooses each stream's root (the smallest SIREN we hear of, ourselves included) and
  // uplink (the connected peer with the shortest path to it, then the smallest SIREN;
  // never a suspect peer, nor one that takes the stream from us), and marks a status due
  // to every peer if our place changed, and to peers whose push request changed.
  void UpdateTree();
  // The peer's places in the trees, from its Hello or status; and ours, for one (of the
  // streams in `only`, if set).
  static void ReadTrees(
      const google::protobuf::RepeatedPtrField<interco::replication::v1::TreePosition>& in,
      Peer& peer);
  void WriteTrees(
      const std::set<std::string>* only,
      google::protobuf::RepeatedPtrField<interco::replication::v1::TreePosition>& out) const;
  // Whether new batches of `stream` are pushed to the peer (it takes the stream from us,
  // asked for it, or is our uplink); otherwise it gets our status only.
  bool PushesTo(uint32_t peer_id, const Peer& peer, const std::string& stream) const;
  // After a status or Hello of a peer we do not take a stream from: notes the streams in
  // which it is ahead of us.
  void NoteLags(uint32_t peer_id, Peer& peer);
  // Grafts the streams we stayed behind in for graft_delay_ms; forgets caught-up lags.
  void CheckLags(Peer& peer);
  // False if the Hello is refused (another protocol version or node).
  bool HandleHello(uint32_t peer_id, Peer& peer, const interco::replication::v1::Hello& hello);
  void HandleAck(uint32_t peer_id, Peer& peer, const interco::replication::v1::Ack& ack);
  // Divergence checks. Adds to a status our digest of `stream` if one is due to the peer
  // and the peer is known to hold exactly what we hold of it.
  void AddDigest(uint32_t peer_id, Peer& peer, const std::string& stream, int64_t now,
                 interco::replication::v1::Ack& ack);
  // A peer's digest: compared with ours if we are at the same position.
  void CheckDigest(uint32_t peer_id, Peer& peer,
                   const interco::replication::v1::StreamDigest& theirs);
  // A frame: one run of an origin's batches, believed once its last (signed) batch
  // verifies, then taken batch by batch. True if something of it was applied.
  bool HandleBatch(uint32_t peer_id, Peer& peer,
                   const interco::replication::v1::BatchFrame& frame);
  // What became of one verified batch.
  enum class Step { kApplied, kWaiting, kRefused };
  Step HandleVerified(uint32_t peer_id, Peer& peer, const std::string& stream, DecodedBatch batch);
  // A verified batch the store does not authorize (`why`): held for its policy version
  // (UNAVAILABLE) or refused and counted. Returns kWaiting or kRefused.
  Step NotAuthorized(uint32_t peer_id, Peer& peer, const std::string& stream, DecodedBatch batch,
                     const absl::Status& why);
  // The peer holds the batch with header `h`: it is not sent back.
  void NoteSenderHolds(Peer& peer, const std::string& stream,
                       const interco::replication::v1::BatchHeader& h);
  // Restates our position to the peer (at most once per status interval), so that it
  // rewinds to what we hold.
  void Nack(Peer& peer);
  void HandleCertificates(Peer& peer, const interco::replication::v1::Certificates& certs);
  // Whether a received batch whose range this node already holds is the same batch; if
  // not, the batch of ours it conflicts with (if the log still has it).
  struct HeldCheck {
    bool same = false;
    std::optional<interco::replication::v1::Batch> mine;
  };
  HeldCheck CheckHeld(const std::string& stream, const DecodedBatch& batch, uint64_t held_seq);
  // The batch of the log ending at `seq`, if the log holds it.
  std::optional<interco::replication::v1::Batch> BatchEndingAt(const std::string& stream,
                                                               OriginKey key, uint64_t seq);
  // The log's trailing unsigned batches of an origin epoch up to held_seq (a run broken
  // off here): where they start (held_seq + 1 if the batch ending there is signed), and
  // whether one of them is kept (not hollow). nullopt if the log lacks the batch ending
  // at held_seq.
  struct UnsignedTail {
    uint64_t start = 0;
    bool kept = false;
  };
  std::optional<UnsignedTail> UnsignedTailOf(const std::string& stream, OriginKey key,
                                             uint64_t held_seq);
  // The proof of an unsigned batch of the log: the batches after it up to the signed
  // one, changes omitted (empty for a signed batch, or if the log lacks its end).
  interco::replication::v1::ChainProof ProofInLog(const std::string& stream,
                                                  const interco::replication::v1::Batch& batch);
  // The origin of `received` (authentic) forked its chain: records the proof and freezes
  // the origin.
  void Freeze(uint32_t peer_id, Peer& peer, const std::string& stream,
              std::optional<interco::replication::v1::Batch> held, const DecodedBatch& received);
  // The peer relayed a batch whose signature does not verify: it is never our uplink
  // again.
  void MarkSuspect(uint32_t peer_id);
  // Sends `peer` what it lacks, within its in-flight bound.
  void Pump(uint32_t peer_id, Peer& peer);
  void PumpAll();
  // If the set of local streams changed (a registry was added), restates our Hello to
  // every peer so that they start sending us the new streams.
  void AnnounceStreamsIfChanged();
  uint64_t InFlight(const Peer& peer) const;
  // Checks and applies a batch that is the next of its origin, then any buffered batches
  // that follow it. Returns false if it was refused.
  bool ApplyInOrder(uint32_t peer_id, Peer& peer, const std::string& stream, DecodedBatch batch);
  void Rewind(Peer& peer);
  bool Replicates(const std::string& stream);

  const ReplicatorOptions options_;
  Clock& clock_;
  Transport& transport_;
  ReplicaStore& store_;
  Hasher& hasher_;
  Verifier& verifier_;
  Signer& signer_;
  std::map<uint32_t, Peer> peers_;
  std::set<uint32_t> frozen_;
  // The streams every connected peer was last told of (a new session's Hello may already
  // say more: the next AnnounceStreamsIfChanged tells the others).
  std::vector<std::string> announced_streams_;
  // Per stream, the peer we take it from (absent: none, we are the root of the tree).
  std::map<std::string, uint32_t> uplink_;
  // Our place in each stream's tree.
  std::map<std::string, TreePlace> position_;
  // The sum of our positions over `target`'s origin epochs.
  uint64_t HeldOf(const std::string& stream, const VersionVector& target);
  // Peers found relaying batches whose signature does not verify (kept across their
  // sessions).
  std::set<uint32_t> suspects_;
  void FillSessions(interco::replication::v1::Sessions& out);
  // Batches held back until the policy version they were written under is applied here:
  // per (stream, origin epoch), the origin's next batch and the peer that sent it.
  struct Held {
    uint32_t from = 0;
    DecodedBatch batch;
  };
  std::map<std::pair<std::string, OriginKey>, Held> held_;
  // Per (stream, peer), a batch it sent that waited for a policy version and was not
  // held (not the origin's next, or no room): the peer is asked for its batches again once
  // that version is here.
  std::map<std::pair<std::string, uint32_t>, DecodedBatch> dropped_waiting_;
  // Applies the held batches of `stream` whose policy version has arrived (and refuses
  // those it now says may not enter).
  void RetryHeld(const std::string& stream);
  // Counts a refused batch as unauthorized, or as of a member left out.
  void CountRefusal(PeerStats& stats, const std::string& stream,
                    const interco::replication::v1::BatchHeader& h);
  // Out-of-order batches per (stream, origin epoch), by first sequence number.
  std::map<std::pair<std::string, OriginKey>, std::map<uint64_t, DecodedBatch>> reorder_;
  size_t reorder_size_ = 0;
  // Members' reports and the stable frontier of each stream.
  Stability stability_;
  // Per stream, this node's last signed report (signed again once its position moves).
  struct OwnReport {
    uint32_t epoch = 0;
    VersionVector held;
    ReportSignature signature;
  };
  std::map<std::string, OwnReport> own_reports_;
  // Our signature of a report of `stream` stating `held` (nullptr if the signer fails:
  // no report goes then, and our reports are not taken until it signs again).
  const ReportSignature* SignOwnReport(const std::string& stream, const VersionVector& held);
  // Per owned stream, when a collection was last considered, and the frontier it was
  // considered at (a collection is tried again only once the frontier moved).
  std::map<std::string, std::pair<int64_t, VersionVector>> collect_tried_;
  uint64_t collections_ = 0;
  // As the owner of streams: commits a collection where the frontier moved and there is
  // something to collect (ReplicaStore::Collect), at most every collect_interval_ms.
  void CollectOwned();
  // The stable frontier of `stream` waiting for `members` (ReplicaStore::Members) but for
  // `excluded`, once the reports `position` (ours) allows are taken.
  VersionVector FrontierOf(const std::string& stream, const VersionVector& position,
                           const std::vector<uint32_t>& members,
                           const std::set<uint32_t>& excluded);
  // The members of `stream` left out of its stable frontier: those a collection left out
  // that have not applied the latest such collection (their taken report does not hold
  // it), and, as its owner (with `watch`), those absent longer than the member retention.
  std::set<uint32_t> ExcludedOf(const std::string& stream, const std::vector<uint32_t>& members,
                                const VersionVector& position, const MemberWatch* watch);
  // Per owned stream, the snapshots that tell absent members (member_retention_ms > 0),
  // and the one of `stream` (nullptr if none).
  std::map<std::string, MemberWatch> watches_;
  const MemberWatch* WatchOf(const std::string& stream) const;
  // This node's origin epoch in `stream` now (the store's, or options_.epoch).
  uint32_t Epoch(const std::string& stream);
  // Merges the peer's statement of what it holds of `stream` (its Hello, made in its
  // origin epoch `epoch`) into its report.
  void NoteReport(uint32_t peer_id, const interco::replication::v1::StreamPosition& sp,
                  uint32_t epoch);
};

}  // namespace interco::replication

#endif  // INTERCO_REPLICATION_REPLICATOR_H_
