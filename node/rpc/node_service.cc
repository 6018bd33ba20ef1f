#include "node/rpc/node_service.h"

#include "absl/strings/str_cat.h"
#include "node/rpc/caller.h"
#include "node/rpc/resource_names.h"
#include "node/rpc/status.h"
#include "node/version.h"
#include "replication/ids.h"

namespace interco::node {

NodeService::NodeService(RecordStore& store, PeerManager* peers,
                         const interco::config::v1::NodeConfig& config, absl::Time start_time)
    : store_(store), peers_(peers), config_(config), start_time_(start_time) {}

grpc::ServerUnaryReactor* NodeService::GetNodeInfo(grpc::CallbackServerContext* ctx,
                                                   const interco::v1::GetNodeInfoRequest*,
                                                   interco::v1::NodeInfo* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::StatusOr<replication::Principal> caller = CallerOf(*ctx, config_.federation());
  if (!caller.ok()) {
    reactor->Finish(ToGrpcStatus(caller.status()));
    return reactor;
  }
  response->set_authority(config_.authority());
  response->set_display_name(config_.display_name());
  response->set_federation(config_.federation());
  response->set_version(kVersion);
  response->mutable_start_time()->set_seconds(absl::ToUnixSeconds(start_time_));
  for (const interco::v1::Registry& r : store_.Registries()) {
    interco::v1::RegistrySummary* s = response->add_registries();
    s->set_name(r.name());
    s->set_owner(r.owner());
    s->set_record_count(r.record_count());
    if (absl::StatusOr<std::string> id = ParseRegistryName(r.name(), "name"); id.ok()) {
      if (auto collected = store_.CollectedOf(*id); collected.ok()) {
        s->set_collected_records(collected->records);
        s->set_expired_conflicts(collected->conflicts);
        s->set_collected_removals(collected->removals);
        s->set_hollowed_batches(collected->hollowed_batches);
        s->set_hollowed_bytes(collected->hollowed_bytes);
        s->set_hollow_received(collected->hollow_received);
        s->set_folded_batches(collected->folded_batches);
        s->set_folded_bytes(collected->folded_bytes);
      }
      if (auto refused = store_.RefusedOf(*id); refused.ok()) {
        s->set_refused_batches(refused->batches);
        s->set_refused_own_changes(refused->own_changes);
      }
    }
  }
  response->set_store_size_bytes(store_.SizeOnDisk());
  response->set_durability(store_.sync() ? "sync" : "async");
  response->set_epoch(store_.epoch());
  response->set_caller(caller->Author());
  if (peers_ != nullptr) {
    for (auto& p : peers_->Status()) *response->add_peers() = std::move(p);
    for (auto& t : peers_->Trees()) *response->add_trees() = std::move(t);
  }
  for (const auto& fork : store_.Forks()) {
    interco::replication::v1::BatchHeader h;
    h.ParseFromString(fork.received().header());
    interco::v1::FrozenOrigin* f = response->add_frozen_origins();
    f->set_authority(replication::OriginToSiren(fork.origin()));
    f->set_stream(fork.stream());
    f->set_received_from(replication::OriginToSiren(fork.received_from()));
    f->mutable_detect_time()->set_seconds(fork.detected_ms() / 1000);
    f->mutable_detect_time()->set_nanos(static_cast<int32_t>(fork.detected_ms() % 1000) * 1000000);
    f->set_position(absl::StrCat(h.epoch(), ":", h.first_seq()));
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace interco::node
