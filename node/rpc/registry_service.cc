#include "node/rpc/registry_service.h"

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "node/log.h"
#include "node/rpc/caller.h"
#include "node/rpc/resource_names.h"
#include "node/rpc/status.h"
#include "replication/base/limits.h"
#include "replication/base/status_macros.h"
#include "replication/base/strings.h"

namespace interco::node {
namespace {

using interco::v1::Record;

grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
}

// Server-side faults deserve a log line; client mistakes do not.
void LogIfServerFault(std::string_view method, const absl::Status& s) {
  if (s.code() == absl::StatusCode::kInternal || s.code() == absl::StatusCode::kDataLoss ||
      s.code() == absl::StatusCode::kUnavailable) {
    log::Error(absl::StrCat(ToAbsl(method), ": ", s.ToString()));
  }
}

// Update-mask paths name record fields either as "fields.<name>" (the path of the map
// entry in interco.v1.Record) or as "<name>".
std::vector<std::string> MaskFields(const google::protobuf::FieldMask& mask) {
  std::vector<std::string> out;
  for (const std::string& p : mask.paths()) {
    out.push_back(p.starts_with("fields.") ? p.substr(7) : p);
  }
  return out;
}

// Streams a registry's change feed to one client.
class WatchReactor final : public grpc::ServerWriteReactor<interco::v1::WatchRecordsResponse> {
 public:
  WatchReactor(RecordStore& store, std::string registry, std::string cursor)
      : store_(store), registry_(std::move(registry)), cursor_(std::move(cursor)) {
    // The first message confirms the stream and carries the starting cursor. Mark the
    // write in flight before subscribing, so that a listener call in between does not
    // start a second one. (Subscribe is not called under mu_: listeners run under the
    // store's listener lock and take mu_, so the opposite order could deadlock.)
    {
      absl::MutexLock l(&mu_);
      writing_ = true;
      response_.set_cursor(cursor_);
    }
    subscription_ = store_.Subscribe(registry_, [this] { Pump(); });
    absl::MutexLock l(&mu_);
    StartWrite(&response_);
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock l(&mu_);
      writing_ = false;
      if (!ok) {
        FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "stream closed"));
        return;
      }
    }
    Pump();
  }

  void OnCancel() override {
    absl::MutexLock l(&mu_);
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }

  void OnDone() override {
    store_.Unsubscribe(subscription_);
    delete this;
  }

 private:
  // Sends the next feed changes if no write is in flight. Runs on gRPC threads and on
  // the store's committer thread (as a feed listener); reads at most one message worth
  // of changes.
  void Pump() {
    absl::MutexLock l(&mu_);
    if (writing_ || finished_) return;
    absl::StatusOr<FeedPage> page =
        store_.ReadFeed(registry_, cursor_, limits::kWatchChangesPerMessageMax);
    if (!page.ok()) {
      FinishLocked(ToGrpcStatus(page.status()));
      return;
    }
    if (page->changes.empty()) return;
    cursor_ = page->cursor;
    response_.Clear();
    for (auto& c : page->changes) *response_.add_changes() = std::move(c);
    response_.set_cursor(cursor_);
    writing_ = true;
    StartWrite(&response_);
  }

  void FinishLocked(const grpc::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(status);
  }

  RecordStore& store_;
  const std::string registry_;
  uint64_t subscription_ = 0;
  absl::Mutex mu_;
  std::string cursor_ ABSL_GUARDED_BY(mu_);
  interco::v1::WatchRecordsResponse response_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

RegistryService::RegistryService(RecordStore& store, std::string federation)
    : store_(store), federation_(std::move(federation)) {}

void RegistryService::AuditRefusal(interco::v1::AuditEvent::Action action,
                                   const replication::Principal& caller,
                                   const std::string& registry, const std::string& record,
                                   const absl::Status& why) {
  interco::v1::AuditEvent e;
  e.set_action(action);
  e.set_caller(caller.Author());
  e.set_registry(registry);
  e.set_record(record);
  e.set_accepted(false);
  e.set_reason(why.ToString());
  store_.Audit({std::move(e)});
}

grpc::ServerUnaryReactor* RegistryService::CreateRegistry(
    grpc::CallbackServerContext* ctx, const interco::v1::CreateRegistryRequest* request,
    interco::v1::Registry* response) {
  absl::StatusOr<replication::Principal> caller = CallerOf(*ctx, federation_);
  if (!caller.ok()) return Done(ctx, caller.status());
  if (absl::Status s = RequireRole(*ctx, *caller, Role::kAdmin); !s.ok()) {
    AuditRefusal(interco::v1::AuditEvent::CREATE_REGISTRY, *caller, "", "", s);
    return Done(ctx, s);
  }
  if (absl::Status s = replication::ValidateRegistryId(request->registry_id()); !s.ok()) {
    return Done(ctx, absl::InvalidArgumentError(absl::StrCat("registry_id: ", s.message())));
  }
  absl::StatusOr<interco::v1::Registry> r =
      store_.CreateRegistry(request->registry_id(), request->registry(), *caller);
  if (r.ok()) {
    *response = *std::move(r);
    log::Info(absl::StrCat("registry ", request->registry_id(), " created by ", caller->Author()));
  }
  LogIfServerFault("CreateRegistry", r.status());
  return Done(ctx, r.status());
}

grpc::ServerUnaryReactor* RegistryService::UpdateRegistry(
    grpc::CallbackServerContext* ctx, const interco::v1::UpdateRegistryRequest* request,
    interco::v1::Registry* response) {
  absl::StatusOr<replication::Principal> caller = CallerOf(*ctx, federation_);
  if (!caller.ok()) return Done(ctx, caller.status());
  absl::StatusOr<std::string> id = ParseRegistryName(request->registry().name(), "registry.name");
  if (!id.ok()) return Done(ctx, id.status());
  if (absl::Status s = RequireRole(*ctx, *caller, Role::kAdmin); !s.ok()) {
    AuditRefusal(interco::v1::AuditEvent::UPDATE_REGISTRY, *caller, *id, "", s);
    return Done(ctx, s);
  }
  const auto& paths = request->update_mask().paths();
  absl::StatusOr<interco::v1::Registry> r =
      store_.UpdateRegistry(*id, request->registry(), {paths.begin(), paths.end()},
                            request->etag(), *caller);
  if (r.ok()) {
    *response = *std::move(r);
    log::Info(absl::StrCat("registry ", *id, " updated (", absl::StrJoin(paths, ", "), ") by ",
                           caller->Author(), "; policy version ", response->policy_version()));
  }
  LogIfServerFault("UpdateRegistry", r.status());
  return Done(ctx, r.status());
}

grpc::ServerUnaryReactor* RegistryService::GetRegistry(
    grpc::CallbackServerContext* ctx, const interco::v1::GetRegistryRequest* request,
    interco::v1::Registry* response) {
  absl::Status s = [&]() -> absl::Status {
    INTERCO_RETURN_IF_ERROR(CallerOf(*ctx, federation_).status());
    INTERCO_ASSIGN_OR_RETURN(std::string id, ParseRegistryName(request->name(), "name"));
    INTERCO_ASSIGN_OR_RETURN(*response, store_.GetRegistry(id));
    return absl::OkStatus();
  }();
  return Done(ctx, s);
}

grpc::ServerUnaryReactor* RegistryService::ListRegistries(
    grpc::CallbackServerContext* ctx, const interco::v1::ListRegistriesRequest* request,
    interco::v1::ListRegistriesResponse* response) {
  absl::Status s = [&]() -> absl::Status {
    INTERCO_RETURN_IF_ERROR(CallerOf(*ctx, federation_).status());
    INTERCO_ASSIGN_OR_RETURN(RegistryPage page,
                             store_.ListRegistries(request->page_size(), request->page_token()));
    for (auto& r : page.registries) *response->add_registries() = std::move(r);
    response->set_next_page_token(page.next_page_token);
    return absl::OkStatus();
  }();
  return Done(ctx, s);
}

grpc::ServerUnaryReactor* RegistryService::GetRecordProvenance(
    grpc::CallbackServerContext* ctx, const interco::v1::GetRecordProvenanceRequest* request,
    interco::v1::RecordProvenance* response) {
  absl::Status s = [&]() -> absl::Status {
    INTERCO_ASSIGN_OR_RETURN(replication::Principal caller, CallerOf(*ctx, federation_));
    INTERCO_ASSIGN_OR_RETURN(RecordRef ref, ParseRecordName(request->name(), "name"));
    INTERCO_RETURN_IF_ERROR(store_.CheckAccess(ref.registry, caller, /*write=*/false));
    INTERCO_ASSIGN_OR_RETURN(*response, store_.Provenance(ref.registry, ref.record));
    return absl::OkStatus();
  }();
  LogIfServerFault("GetRecordProvenance", s);
  return Done(ctx, s);
}

grpc::ServerUnaryReactor* RegistryService::ListConflicts(
    grpc::CallbackServerContext* ctx, const interco::v1::ListConflictsRequest* request,
    interco::v1::ListConflictsResponse* response) {
  absl::Status s = [&]() -> absl::Status {
    INTERCO_ASSIGN_OR_RETURN(replication::Principal caller, CallerOf(*ctx, federation_));
    INTERCO_ASSIGN_OR_RETURN(std::string registry, ParseRegistryName(request->parent(), "parent"));
    if (!request->record_id().empty()) {
      if (absl::Status v = replication::ValidateRecordId(request->record_id()); !v.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("record_id: ", v.message()));
      }
    }
    INTERCO_RETURN_IF_ERROR(store_.CheckAccess(registry, caller, /*write=*/false));
    INTERCO_ASSIGN_OR_RETURN(ConflictPage page,
                             store_.ListConflicts(registry, request->record_id(),
                                                  request->page_size(), request->page_token()));
    for (auto& c : page.conflicts) *response->add_conflicts() = std::move(c);
    response->set_next_page_token(page.next_page_token);
    response->set_dropped(page.dropped);
    return absl::OkStatus();
  }();
  LogIfServerFault("ListConflicts", s);
  return Done(ctx, s);
}

grpc::ServerUnaryReactor* RegistryService::GetRecord(grpc::CallbackServerContext* ctx,
                                                     const interco::v1::GetRecordRequest* request,
                                                     Record* response) {
  absl::Status s = [&]() -> absl::Status {
    INTERCO_ASSIGN_OR_RETURN(replication::Principal caller, CallerOf(*ctx, federation_));
    INTERCO_ASSIGN_OR_RETURN(RecordRef ref, ParseRecordName(request->name(), "name"));
    INTERCO_RETURN_IF_ERROR(store_.CheckAccess(ref.registry, caller, /*write=*/false));
    INTERCO_ASSIGN_OR_RETURN(*response, store_.GetRecord(ref.registry, ref.record));
    return absl::OkStatus();
  }();
  LogIfServerFault("GetRecord", s);
  return Done(ctx, s);
}

grpc::ServerUnaryReactor* RegistryService::BatchGetRecords(
    grpc::CallbackServerContext* ctx, const interco::v1::BatchGetRecordsRequest* request,
    interco::v1::BatchGetRecordsResponse* response) {
  absl::Status s = [&]() -> absl::Status {
    INTERCO_ASSIGN_OR_RETURN(replication::Principal caller, CallerOf(*ctx, federation_));
    INTERCO_ASSIGN_OR_RETURN(std::string registry, ParseRegistryName(request->parent(), "parent"));
    INTERCO_RETURN_IF_ERROR(store_.CheckAccess(registry, caller, /*write=*/false));
    if (static_cast<size_t>(request->names_size()) > limits::kBatchGetMax) {
      return absl::InvalidArgumentError(
          absl::StrCat("names: at most ", limits::kBatchGetMax, " records per call"));
    }
    std::vector<std::string> ids;
    for (int i = 0; i < request->names_size(); ++i) {
      INTERCO_ASSIGN_OR_RETURN(RecordRef ref,
                               ParseRecordName(request->names(i), absl::StrCat("names[", i, "]")));
      if (ref.registry != registry) {
        return absl::InvalidArgumentError(
            absl::StrCat("names[", i, "]: not a record of ", request->parent()));
      }
      ids.push_back(std::move(ref.record));
    }
    INTERCO_ASSIGN_OR_RETURN(std::vector<Record> records, store_.BatchGetRecords(registry, ids));
    for (auto& r : records) *response->add_records() = std::move(r);
    return absl::OkStatus();
  }();
  LogIfServerFault("BatchGetRecords", s);
  return Done(ctx, s);
}

grpc::ServerUnaryReactor* RegistryService::ListRecords(
    grpc::CallbackServerContext* ctx, const interco::v1::ListRecordsRequest* request,
    interco::v1::ListRecordsResponse* response) {
  absl::Status s = [&]() -> absl::Status {
    INTERCO_ASSIGN_OR_RETURN(replication::Principal caller, CallerOf(*ctx, federation_));
    ListQuery q;
    INTERCO_ASSIGN_OR_RETURN(q.registry, ParseRegistryName(request->parent(), "parent"));
    INTERCO_RETURN_IF_ERROR(store_.CheckAccess(q.registry, caller, /*write=*/false));
    q.page_size = request->page_size();
    q.page_token = request->page_token();
    q.id_prefix = request->id_prefix();
    if (q.id_prefix.size() > limits::kRecordIdBytesMax) {
      return absl::InvalidArgumentError("id_prefix: longer than a record ID can be");
    }
    q.filters.assign(request->filters().begin(), request->filters().end());
    INTERCO_ASSIGN_OR_RETURN(RecordPage page, store_.ListRecords(q));
    for (auto& r : page.records) *response->add_records() = std::move(r);
    response->set_next_page_token(page.next_page_token);
    return absl::OkStatus();
  }();
  LogIfServerFault("ListRecords", s);
  return Done(ctx, s);
}

grpc::ServerUnaryReactor* RegistryService::SubmitWrite(grpc::CallbackServerContext* ctx,
                                                       const std::string& name,
                                                       const char* name_field,
                                                       replication::LocalWrite write,
                                                       Record* response) {
  absl::StatusOr<replication::Principal> caller = CallerOf(*ctx, federation_);
  if (!caller.ok()) return Done(ctx, caller.status());
  absl::StatusOr<RecordRef> ref = ParseRecordName(name, name_field);
  if (absl::Status s = RequireRole(*ctx, *caller, Role::kWriter); !s.ok()) {
    AuditRefusal(write.kind == replication::LocalWrite::Kind::kDelete
                     ? interco::v1::AuditEvent::DELETE_RECORD
                     : interco::v1::AuditEvent::WRITE_RECORD,
                 *caller, ref.ok() ? ref->registry : "", ref.ok() ? ref->record : "", s);
    return Done(ctx, s);
  }
  if (!ref.ok()) return Done(ctx, ref.status());
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  store_.WriteAsync(ref->registry, ref->record, std::move(write), *caller,
                    [reactor, response](absl::StatusOr<Record> r) {
                      if (r.ok() && response != nullptr) *response = *std::move(r);
                      LogIfServerFault("write", r.status());
                      reactor->Finish(ToGrpcStatus(r.status()));
                    });
  return reactor;
}

grpc::ServerUnaryReactor* RegistryService::CreateRecord(
    grpc::CallbackServerContext* ctx, const interco::v1::CreateRecordRequest* request,
    Record* response) {
  absl::StatusOr<std::string> registry = ParseRegistryName(request->parent(), "parent");
  if (!registry.ok()) return Done(ctx, registry.status());
  if (absl::Status s = replication::ValidateRecordId(request->record_id()); !s.ok()) {
    return Done(ctx, absl::InvalidArgumentError(absl::StrCat("record_id: ", s.message())));
  }
  replication::LocalWrite write;
  write.kind = replication::LocalWrite::Kind::kCreate;
  write.fields = request->record().fields();
  return SubmitWrite(ctx, RecordName(*registry, request->record_id()), "record_id",
                     std::move(write), response);
}

grpc::ServerUnaryReactor* RegistryService::UpdateRecord(
    grpc::CallbackServerContext* ctx, const interco::v1::UpdateRecordRequest* request,
    Record* response) {
  replication::LocalWrite write;
  write.kind = replication::LocalWrite::Kind::kUpdate;
  write.fields = request->record().fields();
  write.mask = MaskFields(request->update_mask());
  write.expected_etag = request->etag();
  write.allow_missing = request->allow_missing();
  return SubmitWrite(ctx, request->record().name(), "record.name", std::move(write), response);
}

grpc::ServerUnaryReactor* RegistryService::DeleteRecord(
    grpc::CallbackServerContext* ctx, const interco::v1::DeleteRecordRequest* request,
    google::protobuf::Empty* /*response*/) {
  replication::LocalWrite write;
  write.kind = replication::LocalWrite::Kind::kDelete;
  write.expected_etag = request->etag();
  write.allow_missing = request->allow_missing();
  return SubmitWrite(ctx, request->name(), "name", std::move(write), nullptr);
}

grpc::ServerWriteReactor<interco::v1::WatchRecordsResponse>* RegistryService::WatchRecords(
    grpc::CallbackServerContext* ctx, const interco::v1::WatchRecordsRequest* request) {
  absl::StatusOr<std::string> cursor = [&]() -> absl::StatusOr<std::string> {
    INTERCO_ASSIGN_OR_RETURN(replication::Principal caller, CallerOf(*ctx, federation_));
    INTERCO_ASSIGN_OR_RETURN(std::string registry, ParseRegistryName(request->parent(), "parent"));
    INTERCO_RETURN_IF_ERROR(store_.CheckAccess(registry, caller, /*write=*/false));
    if (request->cursor().empty()) return store_.CurrentCursor(registry, request->from_oldest());
    // Validate the cursor now, so that a bad one fails the call instead of the stream.
    INTERCO_RETURN_IF_ERROR(store_.ReadFeed(registry, request->cursor(), 0).status());
    return request->cursor();
  }();
  if (!cursor.ok()) {
    class Failed final : public grpc::ServerWriteReactor<interco::v1::WatchRecordsResponse> {
     public:
      explicit Failed(const absl::Status& s) { Finish(ToGrpcStatus(s)); }
      void OnDone() override { delete this; }
    };
    return new Failed(cursor.status());
  }
  return new WatchReactor(store_, request->parent().substr(std::string_view("registries/").size()),
                          *std::move(cursor));
}

}  // namespace interco::node
