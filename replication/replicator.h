// The replication engine of one node: a pure, single-threaded state machine.
//
// It keeps, per peer, what the peer holds of each stream (version vectors learned from
// Hello, acks and the batches it sent us) and what was sent to it this session. It sends
// each peer the log batches the peer lacks for the streams both replicate, in origin
// order, with a bound on unacknowledged changes; applies received batches that are the
// next of their origin; acks them; relays them onward (never back to a node that has
// them); and repairs losses: a gap makes the receiver restate its position (Hello), an
// ack timeout makes the sender rewind to the last acknowledged position.
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
#include "replication/version_vector.h"

namespace interco::replication {

struct ReplicatorOptions {
  // SIREN of this node (as an origin number). Required.
  uint32_t self = 0;
  // How often each peer is sent our positions (a cumulative ack that also tells it what
  // we got from elsewhere). Default: 1000 ms.
  int64_t status_interval_ms = 1000;
  // Unacknowledged changes older than this are sent again. Default: 5000 ms.
  int64_t ack_timeout_ms = 5000;
  // Changes sent to one peer and not yet acknowledged. Default: 8192.
  uint64_t in_flight_changes_max = 8192;
  // Batches read from the log per origin and per step. Default: 64.
  size_t read_batches_max = 64;
  // A batch of another origin is relayed at once to a peer without a session with that
  // origin, and after this delay to a peer that has one (if its status does not say it
  // got the batch meanwhile). Default: 2000 ms.
  int64_t relay_delay_ms = 2000;
  // Batches received ahead of a gap, kept until the gap fills. Default: 256.
  size_t reorder_buffer_batches_max = 256;
  // A batch whose greatest HLC is further ahead of the local wall clock than this is not
  // applied (quarantined) until the clock catches up. Default: 60 s.
  int64_t clock_offset_max_ms = limits::kClockOffsetMaxMillisDefault;
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
  uint64_t duplicates = 0;
  uint64_t gaps = 0;
  uint64_t rejected = 0;
  // Batches whose signature did not verify (forged, altered, unknown or wrong signer).
  uint64_t unverified = 0;
  // Batches from origins that may not write their stream (registry policy).
  uint64_t unauthorized = 0;
  // Batches held back until the policy version they were written under is applied here.
  uint64_t policy_waits = 0;
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
};

class Replicator {
 public:
  // Every reference must outlive the engine.
  Replicator(const ReplicatorOptions& options, Clock& clock, Transport& transport,
             ReplicaStore& store, Hasher& hasher, Verifier& verifier);
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
  // Origins frozen after a fork of their chain: their batches are neither applied nor
  // forwarded.
  const std::set<uint32_t>& FrozenOrigins() const { return frozen_; }

 private:
  struct Peer {
    bool connected = false;
    bool hello_received = false;
    std::set<std::string> streams;
    // The nodes the peer has a session with (from its Hello and status).
    std::set<uint32_t> sessions;
    // What the peer holds, as far as we know.
    std::map<std::string, VersionVector> known;
    // Highest sequence number sent this session, per stream and origin epoch.
    std::map<std::string, std::map<OriginKey, uint64_t>> sent;
    // Key IDs of the certificates sent this session.
    std::set<std::string> certs_sent;
    int64_t last_status_ms = 0;
    int64_t last_hello_ms = 0;
    int64_t last_progress_ms = 0;
    int64_t last_nack_ms = -1;
    PeerStats stats;
  };

  void SendHello(uint32_t peer, bool reply_requested);
  // A cumulative ack of one origin epoch of a stream.
  void SendAck(uint32_t peer, const std::string& stream, OriginKey key, uint64_t seq,
               uint64_t max_hlc);
  void HandleHello(uint32_t peer_id, Peer& peer, const interco::replication::v1::Hello& hello);
  void HandleAck(Peer& peer, const interco::replication::v1::Ack& ack);
  // A frame: one run of an origin's batches, believed once its last (signed) batch
  // verifies, then taken batch by batch.
  void HandleBatch(uint32_t peer_id, Peer& peer,
                   const interco::replication::v1::BatchFrame& frame);
  // What became of one verified batch.
  enum class Step { kApplied, kWaiting, kRefused };
  Step HandleVerified(uint32_t peer_id, Peer& peer, const std::string& stream, DecodedBatch batch);
  // The peer holds the batch with header `h`: it is not sent back.
  void NoteSenderHolds(Peer& peer, const std::string& stream,
                       const interco::replication::v1::BatchHeader& h);
  // Restates our position to the peer (at most once per status interval), so that it
  // rewinds to what we hold.
  void Nack(uint32_t peer_id, Peer& peer);
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
  // The proof of an unsigned batch of the log: the batches after it up to the signed
  // one, changes omitted (empty for a signed batch, or if the log lacks its end).
  interco::replication::v1::ChainProof ProofInLog(const std::string& stream,
                                                  const interco::replication::v1::Batch& batch);
  // The origin of `received` (authentic) forked its chain: records the proof and freezes
  // the origin.
  void Freeze(uint32_t peer_id, Peer& peer, const std::string& stream,
              std::optional<interco::replication::v1::Batch> held, const DecodedBatch& received);
  // Attaches the certificate of `key_id` to `frame` unless this session already carried it.
  void AttachCertificate(Peer& peer, const std::string& key_id,
                         interco::replication::v1::BatchFrame& frame);
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
  std::map<uint32_t, Peer> peers_;
  std::set<uint32_t> frozen_;
  // The streams every connected peer was last told of (a new session's Hello may already
  // say more: the next AnnounceStreamsIfChanged tells the others).
  std::vector<std::string> announced_streams_;
  // When recent batches of each (stream, origin epoch) were applied here: (last seq, time),
  // oldest first, for relay deferral; entries older than relay_delay_ms are dropped.
  std::map<std::pair<std::string, OriginKey>, std::deque<std::pair<uint64_t, int64_t>>> applied_at_;
  // Whether a batch starting at `seq` is recent enough to defer its relay.
  bool RecentlyApplied(const std::string& stream, OriginKey key, uint64_t seq);
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
  // Out-of-order batches per (stream, origin epoch), by first sequence number.
  std::map<std::pair<std::string, OriginKey>, std::map<uint64_t, DecodedBatch>> reorder_;
  size_t reorder_size_ = 0;
};

}  // namespace interco::replication

#endif  // INTERCO_REPLICATION_REPLICATOR_H_
