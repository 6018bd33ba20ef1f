// interco.v1.RegistryService: thin handlers over RecordStore.
//
// Each handler authenticates the caller from its certificate, validates the request,
// calls the store and maps the status. Writes never block a gRPC thread: they finish
// from the store's committer thread once durable. Watch streams are reactors fed by the
// store's change feed. Thread-safe.
#ifndef INTERCO_NODE_RPC_REGISTRY_SERVICE_H_
#define INTERCO_NODE_RPC_REGISTRY_SERVICE_H_

#include <string>

#include "interco/v1/registry_service.grpc.pb.h"
#include "node/storage/record_store.h"

namespace interco::node {

class RegistryService final : public interco::v1::RegistryService::CallbackService {
 public:
  // `store` must outlive the service and every call.
  RegistryService(RecordStore& store, std::string federation);
  RegistryService(const RegistryService&) = delete;
  RegistryService& operator=(const RegistryService&) = delete;

  grpc::ServerUnaryReactor* CreateRegistry(grpc::CallbackServerContext* ctx,
                                           const interco::v1::CreateRegistryRequest* request,
                                           interco::v1::Registry* response) override;
  grpc::ServerUnaryReactor* UpdateRegistry(grpc::CallbackServerContext* ctx,
                                           const interco::v1::UpdateRegistryRequest* request,
                                           interco::v1::Registry* response) override;
  grpc::ServerUnaryReactor* GetRegistry(grpc::CallbackServerContext* ctx,
                                        const interco::v1::GetRegistryRequest* request,
                                        interco::v1::Registry* response) override;
  grpc::ServerUnaryReactor* ListRegistries(grpc::CallbackServerContext* ctx,
                                           const interco::v1::ListRegistriesRequest* request,
                                           interco::v1::ListRegistriesResponse* response) override;
  grpc::ServerUnaryReactor* CreateRecord(grpc::CallbackServerContext* ctx,
                                         const interco::v1::CreateRecordRequest* request,
                                         interco::v1::Record* response) override;
  grpc::ServerUnaryReactor* GetRecord(grpc::CallbackServerContext* ctx,
                                      const interco::v1::GetRecordRequest* request,
                                      interco::v1::Record* response) override;
  grpc::ServerUnaryReactor* BatchGetRecords(grpc::CallbackServerContext* ctx,
                                            const interco::v1::BatchGetRecordsRequest* request,
                                            interco::v1::BatchGetRecordsResponse* response) override;
  grpc::ServerUnaryReactor* ListConflicts(grpc::CallbackServerContext* ctx,
                                          const interco::v1::ListConflictsRequest* request,
                                          interco::v1::ListConflictsResponse* response) override;
  grpc::ServerUnaryReactor* ListRecords(grpc::CallbackServerContext* ctx,
                                        const interco::v1::ListRecordsRequest* request,
                                        interco::v1::ListRecordsResponse* response) override;
  grpc::ServerUnaryReactor* UpdateRecord(grpc::CallbackServerContext* ctx,
                                         const interco::v1::UpdateRecordRequest* request,
                                         interco::v1::Record* response) override;
  grpc::ServerUnaryReactor* DeleteRecord(grpc::CallbackServerContext* ctx,
                                         const interco::v1::DeleteRecordRequest* request,
                                         google::protobuf::Empty* response) override;
  grpc::ServerUnaryReactor* GetRecordProvenance(grpc::CallbackServerContext* ctx,
                                                const interco::v1::GetRecordProvenanceRequest* request,
                                                interco::v1::RecordProvenance* response) override;
  grpc::ServerWriteReactor<interco::v1::WatchRecordsResponse>* WatchRecords(
      grpc::CallbackServerContext* ctx, const interco::v1::WatchRecordsRequest* request) override;

 private:
  // Submits a write; the reactor finishes when it is durable or refused.
  grpc::ServerUnaryReactor* SubmitWrite(grpc::CallbackServerContext* ctx,
                                        const std::string& name, const char* name_field,
                                        replication::LocalWrite write,
                                        interco::v1::Record* response);

  // Audits a request refused before it reached the store (e.g. for its caller's role).
  void AuditRefusal(interco::v1::AuditEvent::Action action, const replication::Principal& caller,
                    const std::string& registry, const std::string& record, const absl::Status& why);

  RecordStore& store_;
  const std::string federation_;
};

}  // namespace interco::node

#endif  // INTERCO_NODE_RPC_REGISTRY_SERVICE_H_
