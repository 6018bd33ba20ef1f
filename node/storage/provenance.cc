// RecordStore::Provenance: the signed batches behind each value of a record.
//
// A value carries its stamp (HLC, origin). An origin's HLCs grow with its sequence
// numbers, so the batch holding a stamp is the first one of the origin's log whose
// greatest HLC reaches it: a binary search over sequence numbers, O(log n) reads.
#include <map>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "interco/replication/v1/state.pb.h"
#include "node/crypto/sha256.h"
#include "node/storage/keys.h"
#include "node/storage/record_store.h"
#include "node/storage/record_store_internal.h"
#include "node/storage/rocksdb_store.h"
#include "replication/base/limits.h"
#include "replication/base/status_macros.h"
#include "replication/base/strings.h"
#include "replication/change_log.h"

namespace interco::node {
namespace {

using interco::replication::v1::Batch;
using interco::replication::v1::BatchHeader;
using interco::replication::v1::Change;
using interco::replication::v1::FieldState;
using replication::RecordState;


// One visible value of a record and where it comes from.
struct Stamped {
  std::string field;
  std::string element;
  uint64_t hlc = 0;
  uint32_t origin = 0;
  // A counter: this origin's share (its latest totals, stamped `hlc`).
  bool counter = false;
  int64_t share = 0;
};

// Whether `change` writes the value `v` (same field, stamp and, for a set, element).
bool Writes(const Change& change, const Stamped& v) {
  for (const FieldState& f : change.delta().fields()) {
    if (f.name() != v.field) continue;
    if (v.counter) {
      for (const auto& e : f.counter()) {
        if (e.origin() == v.origin && e.hlc() == v.hlc) return true;
      }
      return false;
    }
    if (v.element.empty()) return f.hlc() == v.hlc && f.origin() == v.origin;
    for (const auto& e : f.elements()) {
      if (e.value() == v.element && e.hlc() == v.hlc && e.origin() == v.origin) return true;
    }
  }
  return false;
}

}  // namespace

absl::StatusOr<std::optional<Batch>> RecordStore::BatchHolding(std::string_view registry,
                                                                 replication::OriginKey key,
                                                                 uint64_t last_seq, uint64_t hlc) {
  const std::string prefix = keys::Log(registry, key.origin, key.epoch, 0).substr(0, registry.size() + 1 + 8);
  std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(Cf::kLog);
  std::optional<Batch> found;
  uint64_t lo = 1, hi = last_seq;
  while (lo <= hi) {
    const uint64_t mid = lo + (hi - lo) / 2;
    // The batch holding `mid` starts at or before it.
    it->SeekForPrev(ToSlice(keys::Log(registry, key.origin, key.epoch, mid)));
    if (!it->Valid() || !it->key().starts_with(ToSlice(prefix))) break;
    Batch batch;
    BatchHeader h;
    if (!batch.ParseFromArray(it->value().data(), static_cast<int>(it->value().size())) ||
        !h.ParseFromString(batch.header())) {
      return absl::DataLossError(absl::StrCat("log batch of ", ToAbsl(registry), " does not parse"));
    }
    if (h.max_hlc() >= hlc) {
      const uint64_t start = batch.skip_from() > 0 ? batch.skip_from() : h.first_seq();
      found = std::move(batch);
      if (start <= 1) break;
      hi = start - 1;
    } else {
      lo = h.first_seq() + h.count();
    }
  }
  INTERCO_RETURN_IF_ERROR(FromRocksStatus(it->status(), "reading the change log"));
  return found;
}

absl::StatusOr<std::vector<Batch>> RecordStore::FollowingUpToSigned(std::string_view registry,
                                                                    replication::OriginKey key,
                                                                    Batch& batch) {
  BatchHeader h;
  if (!h.ParseFromString(batch.header())) return absl::DataLossError("log batch header does not parse");
  const std::string prefix =
      keys::Log(registry, key.origin, key.epoch, 0).substr(0, registry.size() + 1 + 8);
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::vector<Batch> out;
    std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(Cf::kLog);
    // The batch itself first: it may have been signed since it was read (a tail).
    it->Seek(ToSlice(keys::Log(registry, key.origin, key.epoch, h.first_seq())));
    for (; it->Valid() && it->key().starts_with(ToSlice(prefix)) &&
           out.size() <= limits::kRunBatchesMax;
         it->Next()) {
      Batch b;
      if (!b.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        return absl::DataLossError(absl::StrCat("log batch of ", ToAbsl(registry), " does not parse"));
      }
      const bool end = !b.signature().empty();
      if (out.empty() && b.header() == batch.header()) {
        if (end) {
          batch = std::move(b);
          return out;  // signed itself
        }
        out.push_back(Batch());  // placeholder for the batch itself
        continue;
      }
      b.clear_changes();
      out.push_back(std::move(b));
      if (end) {
        out.erase(out.begin());
        return out;
      }
    }
    INTERCO_RETURN_IF_ERROR(FromRocksStatus(it->status(), "reading the change log"));
    if (key.origin != origin_ || attempt > 0) break;
    // Our own fresh tail, not signed yet: sign it now.
    auto op = std::make_unique<Op>();
    op->type = Op::Type::kSignTails;
    INTERCO_RETURN_IF_ERROR(EnqueueAndWait(std::move(op)));
  }
  return absl::UnavailableError(
      absl::StrCat("the signature covering a batch of ", ToAbsl(registry), " has not arrived yet"));
}

absl::StatusOr<interco::v1::RecordProvenance> RecordStore::Provenance(std::string_view registry,
                                                                      std::string_view id) {
  INTERCO_ASSIGN_OR_RETURN(RecordState state, LiveState(registry, id));
  interco::v1::Record record;
  replication::ToRecord(RecordName(registry, id), state, record);
  INTERCO_ASSIGN_OR_RETURN(replication::VersionVector position, Position(registry));

  std::vector<Stamped> values;
  const uint32_t life = replication::LifeOf(state.causal_length());
  for (const FieldState& f : state.fields()) {
    if (replication::LifeOfField(f) != life || !record.fields().contains(f.name())) continue;
    if (!f.counter().empty()) {
      for (const auto& e : f.counter()) {
        values.push_back({f.name(), "", e.hlc(), e.origin(), true,
                          static_cast<int64_t>(e.increments()) -
                              static_cast<int64_t>(e.decrements())});
      }
    } else if (f.elements().empty()) {
      values.push_back({f.name(), "", f.hlc(), f.origin()});
    } else {
      for (const auto& e : f.elements()) values.push_back({f.name(), e.value(), e.hlc(), e.origin()});
    }
  }

  interco::v1::RecordProvenance out;
  *out.mutable_record() = record;
  // Batches already in `out`, by (origin, epoch, first_seq).
  std::map<std::tuple<uint32_t, uint32_t, uint64_t>, int> batch_index;
  std::set<std::string> signers;
  for (const Stamped& v : values) {
    interco::v1::ValueProvenance* p = out.add_values();
    p->set_field(v.field);
    p->set_element(v.element);
    p->set_authority(replication::OriginToSiren(v.origin));
    p->set_hlc(v.hlc);
    p->set_counter(v.counter);
    p->set_share(v.share);
    replication::HlcToTimestamp(v.hlc, *p->mutable_write_time());
    p->set_batch(-1);
    for (const auto& [key, pos] : position) {
      if (key.origin != v.origin || pos.seq == 0) continue;
      INTERCO_ASSIGN_OR_RETURN(std::optional<Batch> batch, BatchHolding(registry, key, pos.seq, v.hlc));
      if (!batch) continue;
      BatchHeader h;
      h.ParseFromString(batch->header());
      int change_index = -1;
      Change change;
      for (int i = 0; i < batch->changes_size(); ++i) {
        Change c;
        if (!c.ParseFromString(batch->changes(i))) continue;
        replication::ExpandChange(c, h.origin());
        if (c.key() == id && Writes(c, v)) {
          change_index = i;
          change = std::move(c);
          break;
        }
      }
      if (change_index < 0) continue;
      p->set_author(change.author());
      const auto where = std::make_tuple(h.origin(), h.epoch(), h.first_seq());
      auto it = batch_index.find(where);
      if (it == batch_index.end() ||
          out.batches(it->second).change_index() != static_cast<uint32_t>(change_index)) {
        interco::v1::ProvenanceBatch* pb = out.add_batches();
        pb->set_header(batch->header());
        std::vector<Batch> following;
        if (batch->signature().empty()) {
          INTERCO_ASSIGN_OR_RETURN(following, FollowingUpToSigned(registry, key, *batch));
        }
        pb->set_signature(batch->signature());
        pb->set_signer(batch->signer());
        pb->set_signed_at_ms(batch->signed_at_ms());
        for (const Batch& f : following) pb->add_following_headers(f.header());
        if (!following.empty()) {
          pb->set_following_signature(following.back().signature());
          pb->set_following_signer(following.back().signer());
          pb->set_signed_at_ms(following.back().signed_at_ms());
        }
        for (const std::string& c : batch->changes()) pb->add_change_digests(Sha256(c));
        pb->set_change(batch->changes(change_index));
        pb->set_change_index(static_cast<uint32_t>(change_index));
        it = batch_index.insert_or_assign(where, out.batches_size() - 1).first;
      }
      p->set_batch(it->second);
      const interco::v1::ProvenanceBatch& proven = out.batches(it->second);
      signers.insert(proven.signature().empty() ? proven.following_signer() : proven.signer());
      break;
    }
  }
  for (const std::string& key_id : signers) {
    INTERCO_ASSIGN_OR_RETURN(auto der, db_->Get(Cf::kMeta, keys::Certificate(key_id)));
    if (der.has_value()) out.add_certificates(*std::move(der));
  }
  return out;
}

}  // namespace interco::node
