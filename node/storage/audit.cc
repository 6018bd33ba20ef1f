// The audit log of RecordStore: hash-chained events in the "audit" column family, one
// chain per registry ("registries/<id>") and one for the node ("node"). Events are
// staged by the committer into the same WriteBatch as what they describe, so an
// acknowledged write is never missing from the log, and nothing unwritten is in it.
#include <algorithm>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "node/crypto/sha256.h"
#include "node/storage/keys.h"
#include "node/storage/record_store.h"
#include "node/storage/record_store_internal.h"
#include "node/storage/rocksdb_store.h"
#include "replication/base/limits.h"
#include "replication/base/status_macros.h"
#include "replication/base/strings.h"
#include "replication/ids.h"

namespace interco::node {
namespace {

using interco::v1::AuditEvent;

constexpr std::string_view kNodeChain = "node";
constexpr std::string_view kRegistryChainPrefix = "registries/";


std::string ChainPrefix(std::string_view chain) {
  std::string p(chain);
  p.push_back('\0');
  return p;
}

AuditEvent::Action ActionOfWrite(replication::LocalWrite::Kind kind) {
  return kind == replication::LocalWrite::Kind::kDelete ? AuditEvent::DELETE_RECORD
                                                        : AuditEvent::WRITE_RECORD;
}

}  // namespace

std::string RecordStore::AuditChainOf(std::string_view registry) {
  if (registry.empty()) return std::string(kNodeChain);
  return absl::StrCat(ToAbsl(kRegistryChainPrefix), ToAbsl(registry));
}

absl::Status RecordStore::LoadAudit() {
  std::vector<std::string> chains = {std::string(kNodeChain)};
  for (const std::string& id : RegistryIds()) chains.push_back(AuditChainOf(id));
  absl::flat_hash_map<std::string, AuditChain> loaded;
  std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(Cf::kAudit);
  for (const std::string& chain : chains) {
    const std::string prefix = ChainPrefix(chain);
    it->SeekForPrev(ToSlice(keys::Audit(chain, UINT64_MAX)));
    if (!it->Valid() || !ToView(it->key()).starts_with(prefix)) continue;
    AuditChain& c = loaded[chain];
    c.next_seq = keys::GetBigEndian64(ToView(it->key()).substr(prefix.size())) + 1;
    c.last_hash = Sha256(ToView(it->value()));
  }
  INTERCO_RETURN_IF_ERROR(FromRocksStatus(it->status(), "loading the audit log"));
  absl::MutexLock l(&audit_mu_);
  audit_chains_ = std::move(loaded);
  return absl::OkStatus();
}

void RecordStore::Audit(std::vector<AuditEvent> events) {
  if (events.empty()) return;
  auto op = std::make_unique<Op>();
  op->type = Op::Type::kAudit;
  op->audit_events = std::move(events);
  op->done = [](Op&) {};
  Enqueue(std::move(op));
}

void RecordStore::AuditOutcome(const Op& op, GroupState& g) {
  AuditEvent e;
  switch (op.type) {
    case Op::Type::kAudit:
      for (const AuditEvent& given : op.audit_events) StageAudit(g, given);
      return;
    case Op::Type::kNewEpoch:
    case Op::Type::kSignTails:
    case Op::Type::kCollect:  // housekeeping: the collection is in the change log
    case Op::Type::kCompact:  // housekeeping: changes every node holds superseded
      return;
    case Op::Type::kCreateRegistry:
      e.set_action(AuditEvent::CREATE_REGISTRY);
      e.set_caller(op.caller.Author());
      // A refused creation may name no valid registry: it goes to the node's chain.
      e.set_chain(op.status.ok() ? AuditChainOf(op.registry) : std::string(kNodeChain));
      for (const auto& f : op.definition.schema().fields()) e.add_fields(f.name());
      break;
    case Op::Type::kUpdateRegistry:
      e.set_action(AuditEvent::UPDATE_REGISTRY);
      e.set_caller(op.caller.Author());
      for (const std::string& path : op.paths) e.add_fields(path);
      break;
    case Op::Type::kWrite:
      e.set_action(ActionOfWrite(op.write.kind));
      e.set_caller(op.caller.Author());
      e.set_record(op.key);
      if (op.write.kind != replication::LocalWrite::Kind::kDelete) {
        if (!op.write.mask.empty()) {
          for (const std::string& f : op.write.mask) e.add_fields(f);
        } else {
          for (const auto& [name, value] : op.write.fields) e.add_fields(name);
          std::sort(e.mutable_fields()->begin(), e.mutable_fields()->end());
        }
      }
      break;
    case Op::Type::kRepair:
      e.set_action(AuditEvent::REPAIR_RECORDS);
      e.set_caller(op.caller.Author());
      e.set_origin(replication::OriginToSiren(op.peer));
      if (op.status.ok()) e.set_count(static_cast<uint32_t>(op.repaired_changed));
      break;
    case Op::Type::kApplyRemote: {
      if (op.replayed) return;  // audited when first applied; the replay has its event
      if (op.continuing) return;  // merged in slices: audited once, with its last
      const auto& h = op.remote->header;
      e.set_action(AuditEvent::APPLY_BATCH);
      e.set_origin(replication::OriginToSiren(h.origin()));
      e.set_epoch(h.epoch());
      if (op.logged_at > 0) {
        // A skip: the batches it brought, from where it was logged.
        const uint64_t count = op.remote->last_seq() - op.logged_at + 1;
        e.set_first_seq(op.logged_at);
        e.set_count(static_cast<uint32_t>(
            std::min<uint64_t>(count, std::numeric_limits<uint32_t>::max())));
      } else {
        e.set_first_seq(h.first_seq());
        e.set_count(h.count());
      }
      break;
    }
  }
  e.set_registry(op.registry);
  e.set_accepted(op.status.ok());
  if (!op.status.ok()) e.set_reason(op.status.ToString());
  StageAudit(g, std::move(e));
}

void RecordStore::StageAudit(GroupState& g, AuditEvent event) {
  if (event.chain().empty()) {
    // The registry's chain if this node holds the registry (or creates it in this
    // group), the node's chain otherwise.
    const bool held = !event.registry().empty() && (g.registries.contains(event.registry()) ||
                                                     CheckRegistry(event.registry()).ok());
    event.set_chain(held ? AuditChainOf(event.registry()) : std::string(kNodeChain));
  }
  auto it = g.audit.find(event.chain());
  if (it == g.audit.end()) {
    AuditChain committed;
    {
      absl::MutexLock l(&audit_mu_);
      auto c = audit_chains_.find(event.chain());
      if (c != audit_chains_.end()) committed = c->second;
    }
    it = g.audit.emplace(event.chain(), std::move(committed)).first;
    TrimAudit(g, event.chain());
  }
  AuditChain& chain = it->second;
  const int64_t now = clock_.NowMillis();
  event.set_seq(chain.next_seq);
  event.set_prev_hash(chain.last_hash);
  event.mutable_time()->set_seconds(now / 1000);
  event.mutable_time()->set_nanos(static_cast<int32_t>(now % 1000) * 1000000);
  std::string stored = event.SerializeAsString();
  chain.last_hash = Sha256(stored);
  chain.next_seq++;
  g.bytes += stored.size();
  g.batch.Put(db_->handle(Cf::kAudit), ToSlice(keys::Audit(event.chain(), event.seq())), ToSlice(stored));
}

void RecordStore::TrimAudit(GroupState& g, const std::string& chain) {
  AuditChain& c = g.audit.at(chain);
  const int64_t now = clock_.NowMillis();
  if (now - c.last_trim_ms < limits::kAuditTrimIntervalMillis) return;
  c.last_trim_ms = now;
  int32_t days = node_audit_retention_days_;
  if (chain != kNodeChain) {
    absl::MutexLock l(&mu_);
    auto r = registries_.find(chain.substr(kRegistryChainPrefix.size()));
    if (r != registries_.end()) days = r->second.meta.registry().audit_retention_days();
    if (days <= 0) days = limits::kAuditRetentionDaysDefault;
  }
  const int64_t cutoff_s = (now / 1000) - int64_t{days} * 86400;
  const std::string prefix = ChainPrefix(chain);
  std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(Cf::kAudit);
  std::string last_old;
  int n = 0;
  for (it->Seek(ToSlice(prefix)); it->Valid() && ToView(it->key()).starts_with(prefix) && n < limits::kAuditTrimBatchMax;
       it->Next(), ++n) {
    AuditEvent e;
    if (!e.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) break;
    if (e.time().seconds() >= cutoff_s) break;
    last_old = it->key().ToString();
  }
  // Called just before an event is appended in the same batch: the chain never ends up
  // empty, and the first event kept names the hash of the last one deleted.
  if (!last_old.empty()) {
    std::string end = last_old;
    end.push_back('\0');  // just past it
    g.batch.DeleteRange(db_->handle(Cf::kAudit), ToSlice(prefix), ToSlice(end));
  }
}

absl::StatusOr<AuditPage> RecordStore::ListAudit(std::string_view chain, int32_t page_size,
                                                 std::string_view page_token) {
  if (chain != kNodeChain) {
    std::string_view id = chain;
    if (!id.starts_with(kRegistryChainPrefix) ||
        !CheckRegistry(id.substr(kRegistryChainPrefix.size())).ok()) {
      return absl::NotFoundError(absl::StrCat("chain: no audit chain \"", ToAbsl(chain),
                                              "\" (\"node\" or \"registries/<id>\")"));
    }
  }
  if (page_size < 0) return absl::InvalidArgumentError("page_size: must not be negative");
  if (page_size == 0) page_size = limits::kAuditPageSizeDefault;
  page_size = std::min(page_size, limits::kAuditPageSizeMax);
  uint64_t before = UINT64_MAX;
  if (!page_token.empty() && (!absl::SimpleAtoi(ToAbsl(page_token), &before) || before == 0)) {
    return absl::InvalidArgumentError("page_token: not a token of ListAuditEvents");
  }
  AuditPage page;
  AuditChain end;
  {
    absl::MutexLock l(&audit_mu_);
    auto it = audit_chains_.find(std::string(chain));
    if (it != audit_chains_.end()) end = it->second;
  }
  const std::string prefix = ChainPrefix(chain);
  std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(Cf::kAudit);
  // Events at or after the head read above are not listed, so the page and the head agree.
  const uint64_t start = std::min(before - 1, end.next_seq - 1);
  it->SeekForPrev(ToSlice(keys::Audit(chain, start)));
  uint64_t last_seq = 0;
  for (; it->Valid() && ToView(it->key()).starts_with(prefix) &&
         page.events.size() < static_cast<size_t>(page_size);
       it->Prev()) {
    interco::v1::AuditRecord r;
    if (!r.mutable_event()->ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return absl::DataLossError(absl::StrCat("audit event of ", ToAbsl(chain), " does not parse"));
    }
    r.set_stored(it->value().ToString());
    last_seq = r.event().seq();
    page.events.push_back(std::move(r));
  }
  INTERCO_RETURN_IF_ERROR(FromRocksStatus(it->status(), "reading the audit log"));
  if (it->Valid() && ToView(it->key()).starts_with(prefix) && last_seq > 1) {
    page.next_page_token = absl::StrCat(last_seq);
  }
  interco::v1::AuditHead& head = page.head;
  head.set_chain(std::string(chain));
  head.set_seq(end.next_seq - 1);
  head.set_hash(end.last_hash);
  if (signer_ != nullptr && head.seq() > 0) {
    std::string message("interco.v1.AuditHead");
    message.push_back('\0');
    message.append(chain);
    message.push_back('\0');
    keys::PutBigEndian64(message, head.seq());
    message.append(head.hash());
    head.set_signer(signer_.load()->KeyId());
    absl::StatusOr<std::string> signature = signer_.load()->Sign(head.signer(), message);
    if (signature.ok()) head.set_signature(*std::move(signature));
  }
  return page;
}

absl::Status RecordStore::CheckAudit() {
  std::unique_ptr<rocksdb::Iterator> it = db_->NewIterator(Cf::kAudit);
  std::string chain, prev_hash;
  uint64_t prev_seq = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    AuditEvent e;
    if (!e.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return absl::DataLossError("an audit event does not parse");
    }
    if (keys::Audit(e.chain(), e.seq()) != ToView(it->key())) {
      return absl::DataLossError(absl::StrCat("audit event ", e.chain(), "#", e.seq(), " is stored under another key"));
    }
    if (e.chain() == chain) {
      if (e.seq() != prev_seq + 1 || e.prev_hash() != prev_hash) {
        return absl::DataLossError(absl::StrCat("audit chain ", chain, " is broken at event ", e.seq()));
      }
    }
    chain = e.chain();
    prev_seq = e.seq();
    prev_hash = Sha256(ToView(it->value()));
  }
  return FromRocksStatus(it->status(), "checking the audit log");
}

}  // namespace interco::node
