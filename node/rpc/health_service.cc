#include "node/rpc/health_service.h"

#include <string_view>

namespace interco::node {
namespace {

using grpc::health::v1::HealthCheckResponse;

bool KnownService(std::string_view name) {
  return name.empty() || name == "interco.v1.RegistryService" || name == "interco.v1.NodeService";
}

HealthCheckResponse::ServingStatus StatusOf(bool serving) {
  return serving ? HealthCheckResponse::SERVING : HealthCheckResponse::NOT_SERVING;
}

}  // namespace

// One Watch stream: sends the status now and after each change.
class HealthService::Watcher final : public grpc::ServerWriteReactor<HealthCheckResponse> {
 public:
  Watcher(HealthService& service, bool known) : service_(service), known_(known) {}

  // Called with service.mu_ held.
  void Update(HealthCheckResponse::ServingStatus status) {
    absl::MutexLock l(&mu_);
    pending_ = known_ ? status : HealthCheckResponse::SERVICE_UNKNOWN;
    MaybeWriteLocked();
  }
  void End() {
    absl::MutexLock l(&mu_);
    FinishLocked(grpc::Status(grpc::StatusCode::UNAVAILABLE, "node shutting down"));
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&mu_);
    writing_ = false;
    if (!ok) {
      FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "stream closed"));
      return;
    }
    MaybeWriteLocked();
  }
  void OnCancel() override {
    absl::MutexLock l(&mu_);
    FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }
  void OnDone() override {
    service_.Remove(this);
    delete this;
  }

 private:
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finished_ || pending_ == sent_) return;
    sent_ = pending_;
    response_.set_status(static_cast<HealthCheckResponse::ServingStatus>(sent_));
    writing_ = true;
    StartWrite(&response_);
  }
  void FinishLocked(const grpc::Status& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    finished_ = true;
    Finish(s);
  }

  HealthService& service_;
  const bool known_;
  absl::Mutex mu_;
  HealthCheckResponse response_ ABSL_GUARDED_BY(mu_);
  // -1: nothing sent yet.
  int pending_ ABSL_GUARDED_BY(mu_) = -1;
  int sent_ ABSL_GUARDED_BY(mu_) = -1;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;

};

HealthService::~HealthService() {
  absl::MutexLock l(&mu_);
  mu_.Await(absl::Condition(
      +[](std::set<Watcher*>* w) { return w->empty(); }, &watchers_));
}

void HealthService::SetServing(bool serving) {
  absl::MutexLock l(&mu_);
  serving_ = serving;
  for (Watcher* w : watchers_) w->Update(StatusOf(serving_));
}

void HealthService::Shutdown() {
  absl::MutexLock l(&mu_);
  serving_ = false;
  shut_down_ = true;
  for (Watcher* w : watchers_) w->End();
}

void HealthService::Remove(Watcher* w) {
  absl::MutexLock l(&mu_);
  watchers_.erase(w);
}

grpc::ServerUnaryReactor* HealthService::Check(grpc::CallbackServerContext* ctx,
                                               const grpc::health::v1::HealthCheckRequest* request,
                                               HealthCheckResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  if (!KnownService(request->service())) {
    reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service"));
    return reactor;
  }
  absl::MutexLock l(&mu_);
  response->set_status(StatusOf(serving_));
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerWriteReactor<HealthCheckResponse>* HealthService::Watch(
    grpc::CallbackServerContext*, const grpc::health::v1::HealthCheckRequest* request) {
  auto* w = new Watcher(*this, KnownService(request->service()));
  absl::MutexLock l(&mu_);
  if (shut_down_) {
    w->End();
    return w;
  }
  watchers_.insert(w);
  w->Update(StatusOf(serving_));
  return w;
}

}  // namespace interco::node
