// `interco audit`, `interco conflicts`, `interco provenance`, `interco verify-provenance`
// `interco backup` and `interco repair`.
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <fstream>
#include <iostream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "interco/replication/v1/state.pb.h"
#include "node/cli/commands.h"
#include "node/cli/table.h"
#include "node/cli/values.h"
#include "node/trust/provenance.h"
#include "replication/base/limits.h"
#include "replication/base/status_macros.h"
#include "replication/base/strings.h"

namespace interco::cli {

absl::Status RunProvenance(Session& session, const Args& args, const CommandOptions& options) {
  if (args.size() != 2) return Usage("provenance REGISTRY ID [--out FILE.json]");
  INTERCO_RETURN_IF_ERROR(CheckRegistryId(args[0]));
  INTERCO_RETURN_IF_ERROR(CheckRecordId(args[1]));
  INTERCO_ASSIGN_OR_RETURN(Client * client, session.client());
  interco::v1::GetRecordProvenanceRequest request;
  request.set_name(RecordName(args[0], args[1]));
  interco::v1::RecordProvenance provenance;
  grpc::ClientContext context;
  client->SetDeadline(context);
  INTERCO_RETURN_IF_ERROR(
      RpcError(client->registries().GetRecordProvenance(&context, request, &provenance)));
  if (const std::string out = options.Get("out"); !out.empty()) {
    INTERCO_ASSIGN_OR_RETURN(std::string json, ToJson(provenance));
    std::ofstream file(out, std::ios::binary | std::ios::trunc);
    file << json << "\n";
    if (!file.flush()) return absl::UnavailableError(absl::StrCat("cannot write ", out));
  }
  if (session.json()) return PrintJson(provenance);
  Table table({"FIELD", "VALUE", "AUTHORITY", "AUTHOR", "WRITTEN", "BATCH", "SIGNER"});
  for (const auto& v : provenance.values()) {
    std::string value = v.element();
    if (value.empty()) {
      auto it = provenance.record().fields().find(v.field());
      if (it != provenance.record().fields().end()) value = FormatValue(it->second);
    }
    std::string batch = "-", signer = "-";
    if (v.batch() >= 0 && v.batch() < provenance.batches_size()) {
      interco::replication::v1::BatchHeader h;
      h.ParseFromString(provenance.batches(v.batch()).header());
      batch = absl::StrCat(h.epoch(), ":", h.first_seq());
      const auto& pb = provenance.batches(v.batch());
      signer = absl::BytesToHexString(pb.signature().empty() ? pb.following_signer() : pb.signer())
                   .substr(0, 16);
      if (pb.signature().empty()) {
        absl::StrAppend(&signer, " (+", pb.following_headers_size(), ")");
      }
    }
    table.AddRow({v.field(), value, v.authority(), v.author(),
                  google::protobuf::util::TimeUtil::ToString(v.write_time()), batch, signer});
  }
  table.Print(std::cout);
  return absl::OkStatus();
}

absl::Status RunVerifyProvenance(Session& session, const Args& args, const CommandOptions& options) {
  if (args.size() != 1) return Usage("verify-provenance FILE.json [--ca CA.crt] [--crl_dir DIR]");
  INTERCO_ASSIGN_OR_RETURN(std::string json, ReadInputFile(args[0]));
  interco::v1::RecordProvenance provenance;
  if (google::protobuf::util::Status s = google::protobuf::util::JsonStringToMessage(
          json, &provenance, google::protobuf::util::JsonParseOptions());
      !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(args[0], ": not a JSON interco.v1.RecordProvenance: ", ProtobufMessage(s)));
  }
  std::string ca = options.Get("ca");
  if (ca.empty() && !session.connect_options().tls_dir.empty()) {
    ca = session.connect_options().tls_dir + "/ca.crt";
  }
  if (ca.empty()) return absl::InvalidArgumentError("--ca: the federation CA bundle is needed");
  absl::StatusOr<std::string> summary = node::VerifyProvenance(provenance, ca, options.Get("crl_dir"));
  if (!summary.ok()) return summary.status();
  std::cout << *summary << "\n";
  return absl::OkStatus();
}

absl::Status RunAudit(Session& session, const Args& args, const CommandOptions& options) {
  if (args.size() > 1) return Usage("audit [REGISTRY] [--limit N]");
  if (args.size() == 1) INTERCO_RETURN_IF_ERROR(CheckRegistryId(args[0]));
  INTERCO_ASSIGN_OR_RETURN(const int64_t limit, options.GetInt("limit", 20, 0, INT64_MAX));
  INTERCO_ASSIGN_OR_RETURN(Client * client, session.client());
  interco::v1::ListAuditEventsRequest request;
  request.set_chain(args.empty() ? "node" : RegistryName(args[0]));
  std::vector<interco::v1::AuditRecord> events;
  interco::v1::AuditHead head;
  constexpr int64_t kPageMax = limits::kAuditPageSizeMax;
  do {
    const int64_t wanted = limit == 0 ? kPageMax : limit - static_cast<int64_t>(events.size());
    request.set_page_size(static_cast<int32_t>(std::min(wanted, kPageMax)));
    interco::v1::ListAuditEventsResponse response;
    grpc::ClientContext context;
    client->SetDeadline(context);
    INTERCO_RETURN_IF_ERROR(RpcError(client->admin().ListAuditEvents(&context, request, &response)));
    if (events.empty()) head = response.head();
    for (auto& e : *response.mutable_events()) events.push_back(std::move(e));
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty() && (limit == 0 || static_cast<int64_t>(events.size()) < limit));
  if (session.json()) {
    for (const auto& e : events) INTERCO_RETURN_IF_ERROR(PrintJson(e.event()));
    return absl::OkStatus();
  }
  Table table({"SEQ", "TIME", "ACTION", "OK", "WHO", "RECORD / BATCH", "FIELDS", "REASON"});
  table.AlignRight(0);
  for (const auto& r : events) {
    const interco::v1::AuditEvent& e = r.event();
    std::string who = e.caller().empty() ? absl::StrCat("peer ", e.peer()) : e.caller();
    std::string what = e.record();
    if (!e.origin().empty()) what = absl::StrCat(e.origin(), " ", e.epoch(), ":", e.first_seq(), "+", e.count());
    std::string action = interco::v1::AuditEvent::Action_Name(e.action());
    table.AddRow({absl::StrCat(e.seq()), google::protobuf::util::TimeUtil::ToString(e.time()), action,
                  e.accepted() ? "yes" : "no", who, what, absl::StrJoin(e.fields(), ","), e.reason()});
  }
  table.Print(std::cout);
  std::cout << "head: " << head.chain() << " #" << head.seq() << " "
            << absl::BytesToHexString(head.hash()).substr(0, 16)
            << (head.signature().empty() ? " (unsigned)" : " (signed by the node)") << "\n";
  return absl::OkStatus();
}

absl::Status RunConflicts(Session& session, const Args& args, const CommandOptions& options) {
  if (args.empty() || args.size() > 2) return Usage("conflicts REGISTRY [ID] [--limit N]");
  INTERCO_RETURN_IF_ERROR(CheckRegistryId(args[0]));
  if (args.size() == 2) INTERCO_RETURN_IF_ERROR(CheckRecordId(args[1]));
  INTERCO_ASSIGN_OR_RETURN(const int64_t limit, options.GetInt("limit", 100, 0, INT64_MAX));
  INTERCO_ASSIGN_OR_RETURN(Client * client, session.client());
  interco::v1::ListConflictsRequest request;
  request.set_parent(RegistryName(args[0]));
  if (args.size() == 2) request.set_record_id(args[1]);
  std::vector<interco::v1::Conflict> conflicts;
  uint64_t dropped = 0;
  constexpr int64_t kPageMax = limits::kPageSizeMax;
  do {
    const int64_t wanted = limit == 0 ? kPageMax : limit - static_cast<int64_t>(conflicts.size());
    request.set_page_size(static_cast<int32_t>(std::min(wanted, kPageMax)));
    interco::v1::ListConflictsResponse response;
    grpc::ClientContext context;
    client->SetDeadline(context);
    INTERCO_RETURN_IF_ERROR(
        RpcError(client->registries().ListConflicts(&context, request, &response)));
    dropped += response.dropped();
    for (auto& c : *response.mutable_conflicts()) conflicts.push_back(std::move(c));
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty() &&
           (limit == 0 || static_cast<int64_t>(conflicts.size()) < limit));
  if (limit != 0 && static_cast<int64_t>(conflicts.size()) > limit) conflicts.resize(limit);
  if (session.json()) {
    for (const auto& c : conflicts) INTERCO_RETURN_IF_ERROR(PrintJson(c));
    return absl::OkStatus();
  }
  const std::string prefix = absl::StrCat(RegistryName(args[0]), "/records/");
  Table table({"RECORD", "FIELD", "LOST VALUE", "BY", "AT", "LOST TO", "AT"});
  for (const auto& c : conflicts) {
    std::string record = c.record();
    if (record.starts_with(prefix)) record = record.substr(prefix.size());
    table.AddRow({record, c.field(), c.has_losing_value() ? FormatValue(c.losing_value()) : "(cleared)",
                  c.losing_origin(), google::protobuf::util::TimeUtil::ToString(c.losing_time()),
                  c.winning_origin(), google::protobuf::util::TimeUtil::ToString(c.winning_time())});
  }
  table.Print(std::cout);
  if (dropped > 0) {
    std::cout << dropped << " older lost writes of these records were dropped (journal bound "
              << limits::kConflictsPerRecordMax << " per record)\n";
  }
  return absl::OkStatus();
}

absl::Status RunBackup(Session& session, const Args& args, const CommandOptions& /*options*/) {
  if (args.size() != 1) return Usage("backup NAME");
  INTERCO_ASSIGN_OR_RETURN(Client * client, session.client());
  interco::v1::CreateBackupRequest request;
  request.set_backup_id(args[0]);
  interco::v1::Backup backup;
  grpc::ClientContext context;
  client->SetDeadline(context);
  INTERCO_RETURN_IF_ERROR(RpcError(client->admin().CreateBackup(&context, request, &backup)));
  if (session.json()) return PrintJson(backup);
  std::cout << "backup " << backup.backup_id() << " in " << backup.directory() << " ("
            << backup.size_bytes() << " bytes, origin epoch " << backup.epoch() << ")\n"
            << "to restore: stop the node, put this directory in place of its data directory,\n"
            << "and start it: it begins origin epoch " << backup.epoch() + 1
            << " and gets its later changes back from its partners\n";
  return absl::OkStatus();
}

absl::Status RunRepair(Session& session, const Args& args, const CommandOptions& options) {
  if (args.size() != 1 || !options.Has("peer")) {
    return Usage("repair REGISTRY --peer SIREN [--dry_run]");
  }
  INTERCO_ASSIGN_OR_RETURN(Client * client, session.client());
  interco::v1::RepairRegistryRequest request;
  request.set_name(absl::StrCat("registries/", args[0]));
  request.set_peer(options.Get("peer"));
  request.set_dry_run(options.GetSwitch("dry_run"));
  interco::v1::RepairReport report;
  grpc::ClientContext context;
  client->SetDeadline(context);
  INTERCO_RETURN_IF_ERROR(RpcError(client->admin().RepairRegistry(&context, request, &report)));
  if (session.json()) return PrintJson(report);
  std::cout << report.name() << " against " << report.peer() << ": "
            << report.buckets_differing() << " buckets differ, " << report.records_only_here()
            << " records differ here, " << report.records_only_there() << " there\n";
  if (!report.dry_run()) {
    std::cout << report.records_received() << " states received, " << report.records_changed()
              << " records changed here";
    if (report.records_refused() > 0) {
      std::cout << ", " << report.records_refused()
                << " refused (stamped in the future, or by a writer not known here yet)";
    }
    std::cout << "\n";
  }
  std::cout << report.rounds() << " requests, " << report.bytes_sent() << " bytes sent, "
            << report.bytes_received() << " received, " << report.duration_ms() << " ms\n";
  return absl::OkStatus();
}

}  // namespace interco::cli
