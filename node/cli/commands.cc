#include "node/cli/commands.h"

#include <signal.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>
#include <utility>

#include <google/protobuf/empty.pb.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "node/cli/table.h"
#include "node/cli/values.h"
#include "replication/base/limits.h"
#include "replication/base/status_macros.h"
#include "replication/base/strings.h"

namespace interco::cli {
namespace {

using interco::v1::FieldSpec;
using interco::v1::Record;
using interco::v1::Registry;

// Columns of `list` besides the ID, and the width of their cells.
constexpr size_t kListFieldColumns = 6;
constexpr size_t kListCellWidth = 30;

std::string FormatBytes(int64_t bytes) {
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  const char* units[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int unit = -1;
  while (v >= 1024 && unit < 3) {
    v /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f %s (%d bytes)", v, units[unit], bytes);
}

std::vector<std::pair<std::string, const interco::v1::Value*>> SortedFields(const Record& r) {
  std::vector<std::pair<std::string, const interco::v1::Value*>> out;
  for (const auto& [name, value] : r.fields()) out.emplace_back(name, &value);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

absl::Status PrintRecord(Session& session, const Record& record) {
  if (session.json()) return PrintJson(record);
  Table table({"FIELD", "VALUE"});
  for (const auto& [name, value] : SortedFields(record)) {
    table.AddRow({name, OneLine(FormatValue(*value))});
  }
  table.AddRow({});
  table.AddRow({"etag", record.etag()});
  table.AddRow(
      {"update_time", record.has_update_time() ? FormatTimestamp(record.update_time()) : ""});
  table.AddRow({"update_origin", record.update_origin()});
  table.Print(std::cout);
  return absl::OkStatus();
}

// "all", or the authorities listed and the EPCIs whose members are.
std::string DescribeAccess(const interco::v1::AccessList& list) {
  if (list.all_authorities()) return "all authorities";
  std::vector<std::string> parts;
  if (list.authorities_size() > 0) parts.push_back(absl::StrJoin(list.authorities(), " "));
  for (const std::string& epci : list.members_of()) {
    parts.push_back(absl::StrCat("members of ", epci));
  }
  std::string out = parts.empty() ? "-" : absl::StrJoin(parts, ", ");
  if (list.members_of_size() > 0) {
    absl::StrAppend(&out, list.members_size() == 0
                              ? " (members not yet received from the owner)"
                              : absl::StrCat(" (", list.members_size(), " members)"));
  }
  return out;
}

absl::Status PrintRegistry(Session& session, const Registry& registry) {
  if (session.json()) return PrintJson(registry);
  PrintKeyValues(
      std::cout,
      {{"name", registry.name()},
       {"display_name", OneLine(registry.display_name())},
       {"owner", registry.owner()},
       {"records", absl::StrCat(registry.record_count())},
       {"create_time", registry.has_create_time() ? FormatTimestamp(registry.create_time()) : ""},
       {"writers", absl::StrCat("owner, ", DescribeAccess(registry.policy().writers()))},
       {"readers", absl::StrCat("writers, ", DescribeAccess(registry.policy().readers()))},
       {"policy_version", absl::StrCat(registry.policy_version())},
       {"audit_retention_days", registry.audit_retention_days() == 0
                                    ? absl::StrCat("default (", limits::kAuditRetentionDaysDefault, ")")
                                    : absl::StrCat(registry.audit_retention_days())},
       {"etag", registry.etag()}});
  std::cout << '\n';
  Table table({"FIELD", "TYPE", "REQUIRED", "INDEXED", "PERSONAL", "MAX_LENGTH", "MAX_ELEMENTS",
               "DESCRIPTION"});
  for (const FieldSpec& f : registry.schema().fields()) {
    table.AddRow({f.name(), std::string(FieldTypeName(f.type())), f.required() ? "yes" : "no",
                  f.indexed() ? "yes" : "no", f.personal() ? "yes" : "no",
                  f.max_length() == 0 ? "-" : absl::StrCat(f.max_length()),
                  f.max_elements() == 0 ? "-" : absl::StrCat(f.max_elements()),
                  OneLine(f.description())});
  }
  table.Print(std::cout);
  return absl::OkStatus();
}

// The fields of a record given as a JSON object, converted with the schema. `names`
// receives every member name, including those set to null (which clear the field and
// are absent from the record).
absl::StatusOr<Record> RecordFromJson(const SchemaIndex& schema, const std::string& json,
                                      std::vector<std::string>& names) {
  google::protobuf::Struct object;
  google::protobuf::util::JsonParseOptions options;
  if (google::protobuf::util::Status s =
          google::protobuf::util::JsonStringToMessage(json, &object, options);
      !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the record is not a JSON object: ", ProtobufMessage(s)));
  }
  for (const auto& [name, value] : object.fields()) names.push_back(name);
  std::sort(names.begin(), names.end());
  Record record;
  for (const std::string& name : names) {
    INTERCO_ASSIGN_OR_RETURN(const FieldSpec* spec, schema.Require(name));
    absl::StatusOr<interco::v1::Value> value = ValueFromJson(*spec, object.fields().at(name));
    if (!value.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("field \"", name, "\" (",
                                                     ToAbsl(FieldTypeName(spec->type())),
                                                     "): ", value.status().message()));
    }
    if (value->kind_case() != interco::v1::Value::KIND_NOT_SET) {
      (*record.mutable_fields())[name] = *std::move(value);
    }
  }
  return record;
}

// Blocks SIGINT and SIGTERM in this thread and in every thread started after (gRPC's),
// and cancels `context` when one arrives. Call before creating the channel.
class StopOnSignal {
 public:
  StopOnSignal() {
    sigemptyset(&signals_);
    sigaddset(&signals_, SIGINT);
    sigaddset(&signals_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
  }
  ~StopOnSignal() { Stop(); }

  // Ends the watching thread; the context given to Watch may then go.
  void Stop() {
    done_ = true;
    if (thread_.joinable()) thread_.join();
  }

  void Watch(grpc::ClientContext* context) {
    thread_ = std::thread([this, context] {
      const timespec tick = {0, 100 * 1000 * 1000};
      while (!done_) {
        if (sigtimedwait(&signals_, nullptr, &tick) > 0) {
          signaled_ = true;
          context->TryCancel();
          return;
        }
      }
    });
  }
  bool signaled() const { return signaled_; }

 private:
  sigset_t signals_;
  std::atomic<bool> done_{false};
  std::atomic<bool> signaled_{false};
  std::thread thread_;
};

}  // namespace

absl::StatusOr<Client*> Session::client() {
  if (client_ == nullptr) {
    INTERCO_ASSIGN_OR_RETURN(client_, Client::Connect(connect_));
  }
  return client_.get();
}

absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string out;
  if (google::protobuf::util::Status s =
          google::protobuf::util::MessageToJsonString(message, &out, options);
      !s.ok()) {
    return absl::InternalError(absl::StrCat("JSON output: ", ProtobufMessage(s)));
  }
  return out;
}

absl::Status PrintJson(const google::protobuf::Message& message) {
  INTERCO_ASSIGN_OR_RETURN(std::string json, ToJson(message));
  std::cout << json << '\n';
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadInputFile(const std::string& path) {
  std::ostringstream contents;
  if (path == "-") {
    contents << std::cin.rdbuf();
    if (std::cin.bad()) return absl::InvalidArgumentError("cannot read stdin");
    return contents.str();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot open ", path));
  contents << in.rdbuf();
  if (in.bad()) return absl::InvalidArgumentError(absl::StrCat("cannot read ", path));
  return contents.str();
}

absl::Status RunInfo(Session& session, const Args& args, const CommandOptions&) {
  if (!args.empty()) return Usage("info");
  INTERCO_ASSIGN_OR_RETURN(Client * client, session.client());
  interco::v1::NodeInfo info;
  grpc::ClientContext context;
  client->SetDeadline(context);
  INTERCO_RETURN_IF_ERROR(
      RpcError(client->node().GetNodeInfo(&context, interco::v1::GetNodeInfoRequest(), &info)));
  if (session.json()) return PrintJson(info);
  std::vector<std::string> registries;
  for (const auto& r : info.registries()) {
    registries.push_back(absl::StrCat(
        ToAbsl(LastSegment(r.name())), " (", r.record_count(),
        r.collected_records() > 0 ? absl::StrCat(", ", r.collected_records(), " collected") : "",
        r.collected_removals() > 0
            ? absl::StrCat(", ", r.collected_removals(), " removed set elements collected")
            : "",
        r.expired_conflicts() > 0
            ? absl::StrCat(", ", r.expired_conflicts(), " lost writes past retention")
            : "",
        r.refused_batches() > 0
            ? absl::StrCat(", ", r.refused_batches(), " batches taken out of the log")
            : "",
        r.hollowed_batches() > 0
            ? absl::StrCat(", ", r.hollowed_batches(), " log batches hollow (",
                           FormatBytes(r.hollowed_bytes()), " of superseded changes dropped)")
            : "",
        r.hollow_received() > 0 ? absl::StrCat(", ", r.hollow_received(), " received hollow")
                                : "",
        r.folded_batches() > 0
            ? absl::StrCat(", ", r.folded_batches(), " hollow batches folded into skips (",
                           FormatBytes(r.folded_bytes()), " of headers dropped)")
            : "",
        r.refused_own_changes() > 0
            ? absl::StrCat(", ", r.refused_own_changes(),
                           " own writes refused (made while left out; kept)")
            : "",
        ")"));
  }
  PrintKeyValues(
      std::cout,
      {{"authority", info.authority()},
       {"display_name", OneLine(info.display_name())},
       {"federation", info.federation()},
       {"version", info.version()},
       {"start_time", info.has_start_time() ? FormatTimestamp(info.start_time()) : ""},
       {"durability", info.durability()},
       {"epoch", absl::StrCat(info.epoch())},
       {"store_size", FormatBytes(info.store_size_bytes())},
       {"caller", info.caller()},
       {"registries", absl::StrCat(info.registries_size(), registries.empty() ? "" : ": ",
                                   absl::StrJoin(registries, ", "))}});
  if (info.peers_size() > 0) {
    std::cout << "\n";
    // REFUSED: malformed, unverified (signature), unauthorized (policy) or of a frozen origin.
    // HELD: times a received batch was held back: quarantined (clock ahead) or waiting for
    // the policy version it was written under.
    // TREE: "uplink" (registries are taken from the peer), "pushed" (the peer takes some
    // from us, or grafted them), "lazy" (status only), "suspect" (it relayed an altered
    // batch: never our uplink).
    Table peers({"PEER", "ADDRESS", "STATE", "LAST CONTACT", "TREE", "MISSING", "SENT", "APPLIED",
                 "REFUSED", "UNVERIFIED", "HELD"});
    for (int c = 5; c <= 10; ++c) peers.AlignRight(c);
    for (const auto& p : info.peers()) {
      uint64_t missing = 0;
      for (const auto& [origin, n] : p.missing_changes()) missing += n;
      peers.AddRow({p.authority(), p.address().empty() ? "(dials us)" : p.address(),
                    p.connected() ? "connected" : "down",
                    p.has_last_contact_time() ? FormatTimestamp(p.last_contact_time()) : "never",
                    p.suspect()                        ? "suspect"
                    : p.uplink_registries_size() > 0 ? "uplink"
                    : p.push_registries_size() > 0   ? "pushed"
                                                       : "lazy",
                    absl::StrCat(missing), absl::StrCat(p.batches_sent()),
                    absl::StrCat(p.batches_applied()),
                    absl::StrCat(p.rejected() + p.unverified() + p.unauthorized() + p.frozen()),
                    absl::StrCat(p.unverified()),
                    absl::StrCat(p.quarantined() + p.policy_waits())});
    }
    peers.Print(std::cout);
    for (const auto& p : info.peers()) {
      if (p.diverged_registries_size() == 0) continue;
      std::cout << "\nWARNING: peer " << p.authority()
                << " holds the same changes and another state of "
                << absl::StrJoin(p.diverged_registries(), ", ")
                << (p.auto_repairs() > 0
                        ? absl::StrCat(" (", p.auto_repairs(), " repairs from it started here)")
                        : std::string(" (run `interco repair REGISTRY --peer ") +
                              p.authority() + "` on both nodes)")
                << "\n";
    }
  }
  if (info.trees_size() > 0) {
    std::cout << "\n";
    // This node's place in each registry's broadcast tree: new changes come from UPLINK.
    // MEMBERS: nodes replicating it (WAITING: of which no usable report yet); UNSTABLE:
    // changes held here that not every member is known to hold; LEFT OUT: members the
    // collections go on without (absent longer than the owner's member retention).
    Table trees({"REGISTRY", "ROOT", "DISTANCE", "UPLINK", "MEMBERS", "WAITING", "UNSTABLE",
                 "LEFT OUT"});
    trees.AlignRight(2);
    trees.AlignRight(4);
    trees.AlignRight(5);
    trees.AlignRight(6);
    for (const auto& t : info.trees()) {
      trees.AddRow({t.registry(), t.root(), absl::StrCat(t.distance()),
                    t.uplink().empty() ? "(root)" : t.uplink(), absl::StrCat(t.members()),
                    absl::StrCat(t.members_waiting()), absl::StrCat(t.unstable_changes()),
                    t.left_out().empty() ? "-" : absl::StrJoin(t.left_out(), ",")});
    }
    trees.Print(std::cout);
  }
  for (const auto& f : info.frozen_origins()) {
    std::cout << "\nALERT: origin " << f.authority() << " is frozen: it signed two histories of "
              << f.stream() << " at " << f.position() << " (seen from " << f.received_from()
              << ", " << FormatTimestamp(f.detect_time())
              << "); its changes are neither applied nor forwarded\n";
  }
  return absl::OkStatus();
}

absl::Status RunRegistries(Session& session, const Args& args, const CommandOptions&) {
  if (!args.empty()) return Usage("registries");
  INTERCO_ASSIGN_OR_RETURN(Client * client, session.client());
  Table table({"NAME", "OWNER", "RECORDS", "FIELDS"});
  table.AlignRight(2);
  table.AlignRight(3);
  interco::v1::ListRegistriesRequest request;
  request.set_page_size(limits::kPageSizeMax);
  do {
    interco::v1::ListRegistriesResponse response;
    grpc::ClientContext context;
    client->SetDeadline(context);
    INTERCO_RETURN_IF_ERROR(
        RpcError(client->registries().ListRegistries(&context, request, &response)));
    for (const Registry& r : response.registries()) {
      if (session.json()) {
        INTERCO_RETURN_IF_ERROR(PrintJson(r));
      } else {
        table.AddRow({std::string(LastSegment(r.name())), r.owner(), absl::StrCat(r.record_count()),
                      absl::StrCat(r.schema().fields_size())});
      }
    }
    request.set_page_token(response.next_page_token());
  } while (!request.page_token().empty());
  if (!session.json()) table.Print(std::cout);
  return absl::OkStatus();
}

absl::Status RunRegistryGet(Session& session, const Args& args, const CommandOptions&) {
  if (args.size() != 1) return Usage("registry get ID");
  INTERCO_RETURN_IF_ERROR(CheckRegistryId(args[0]));
  INTERCO_ASSIGN_OR_RETURN(Client * client, session.client());
  INTERCO_ASSIGN_OR_RETURN(Registry registry, client->GetRegistry(args[0]));
  return PrintRegistry(session, registry);
}

absl::Status RunRegistryCreate(Session& session, const Args& args, const CommandOptions&) {
  if (args.size() != 2) return Usage("registry create ID FILE.json");
  INTERCO_RETURN_IF_ERROR(CheckRegistryId(args[0]));
  INTERCO_ASSIGN_OR_RETURN(std::string json, ReadInputFile(args[1]));
  interco::v1::CreateRegistryRequest request;
  request.set_registry_id(args[0]);
  if (google::protobuf::util::Status s = google::protobuf::util::JsonStringToMessage(
          json, request.mutable_registry(), google::protobuf::util::JsonParseOptions());
      !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(args[1] == "-" ? "stdin" : args[1],
                     ": not a JSON interco.v1.Registry: ", ProtobufMessage(s)));
  }
  INTERCO_ASSIGN_OR_RETURN(Client * client, session.client());
  Registry created;
  grpc::ClientContext context;
  client->SetDeadline(context);
  INTERCO_RETURN_IF_ERROR(
      RpcError(client->registries().CreateRegistry(&context, request, &created)));
  return PrintRegistry(session, created);
}

namespace {

// UpdateRegistry of the fields `paths` names, from `update`.
absl::Status UpdateRegistry(Session& session, const std::string& id, Registry update,
                            std::vector<std::string> paths, const CommandOptions& options) {
  interco::v1::UpdateRegistryRequest request;
  *request.mutable_registry() = std::move(update);
  request.mutable_registry()->set_name(absl::StrCat("registries/", id));
  for (std::string& p : paths) request.mutable_update_mask()->add_paths(std::move(p));
  request.set_etag(options.Get("etag"));
  INTERCO_ASSIGN_OR_RETURN(Client * client, session.client());
  Registry updated;
  grpc::ClientContext context;
  client->SetDeadline(context);
  INTERCO_RETURN_IF_ERROR(
      RpcError(client->registries().UpdateRegistry(&context, request, &updated)));
  return PrintRegistry(session, updated);
}

}  // namespace

absl::Status RunRegistrySetPolicy(Session& session, const Args& args,
                                  const CommandOptions& options) {
  if (args.size() != 2) return Usage("registry set-policy ID FILE.json [--etag E]");
  INTERCO_RETURN_IF_ERROR(CheckRegistryId(args[0]));
  INTERCO_ASSIGN_OR_RETURN(std::string json, ReadInputFile(args[1]));
  Registry update;
  if (google::protobuf::util::Status s = google::protobuf::util::JsonStringToMessage(
          json, update.mutable_policy(), google::protobuf::util::JsonParseOptions());
      !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(args[1] == "-" ? "stdin" : args[1],
                     ": not a JSON interco.v1.Policy: ", ProtobufMessage(s)));
  }
  return UpdateRegistry(session, args[0], std::move(update), {"policy"}, options);
}

absl::Status RunRegistrySetRetention(Session& session, const Args& args,
                                     const CommandOptions& options) {
  int32_t days = 0;
  if (args.size() != 2 || !absl::SimpleAtoi(args[1], &days)) {
    return Usage("registry set-retention ID DAYS [--etag E]");
  }
  INTERCO_RETURN_IF_ERROR(CheckRegistryId(args[0]));
  Registry update;
  update.set_audit_retention_days(days);
  return UpdateRegistry(session, args[0], std::move(update), {"audit_retention_days"}, options);
}

absl::Status Usage(std::string_view synopsis) {
  return absl::InvalidArgumentError(absl::StrCat("usage: interco ", ToAbsl(synopsis)));
}

std::string ProtobufMessage(const google::protobuf::util::Status& status) {
  std::string message(status.message().data(), status.message().size());
  message.resize(std::min(message.size(), message.find('\n')));
  const size_t start = message.find_first_not_of(": ");
  return start == std::string::npos ? message : message.substr(start);
}

absl::Status RunGet(Session& session, const Args& args, const CommandOptions&) {
  if (args.size() != 2) return Usage("get REGISTRY ID");
  INTERCO_RETURN_IF_ERROR(CheckRegistryId(args[0]));
  INTERCO_RETURN_IF_ERROR(CheckRecordId(args[1]));
  INTERCO_ASSIGN_OR_RETURN(Client * client, session.client());
  interco::v1::GetRecordRequest request;
  request.set_name(RecordName(args[0], args[1]));
  Record record;
  grpc::ClientContext context;
  client->SetDeadline(context);
  INTERCO_RETURN_IF_ERROR(RpcError(client->registries().GetRecord(&context, request, &record)));
  return PrintRecord(session, record);
}

absl::Status RunList(Session& session, const Args& args, const CommandOptions& options) {
  if (args.size() != 1) {
    return Usage("list REGISTRY [--prefix P] [--where FIELD=VALUE]... [--limit N]");
  }
  INTERCO_RETURN_IF_ERROR(CheckRegistryId(args[0]));
  INTERCO_ASSIGN_OR_RETURN(const int64_t limit,
                           options.GetInt("limit", limits::kPageSizeDefault, 0, INT64_MAX));
  std::vector<std::pair<std::string, std::string>> wheres;
  for (const std::string& w : options.GetAll("where")) {
    INTERCO_ASSIGN_OR_RETURN(auto assignment, SplitAssignment("where", w));
    wheres.push_back(std::move(assignment));
  }
  INTERCO_ASSIGN_OR_RETURN(Client * client, session.client());
  INTERCO_ASSIGN_OR_RETURN(const Registry registry, client->GetRegistry(args[0]));
  const SchemaIndex schema(registry);

  interco::v1::ListRecordsRequest request;
  request.set_parent(RegistryName(args[0]));
  request.set_id_prefix(options.Get("prefix"));
  for (const auto& [field, text] : wheres) {
    INTERCO_ASSIGN_OR_RETURN(const FieldSpec* spec, schema.Require(field));
    absl::StatusOr<interco::v1::Value> value = FilterValueFromText(*spec, text);
    if (!value.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--where ", field, " (",
                                                     ToAbsl(FieldTypeName(spec->type())),
                                                     "): ", value.status().message()));
    }
    interco::v1::FieldFilter* filter = request.add_filters();
    filter->set_field(field);
    *filter->mutable_value() = *std::move(value);
  }

  std::vector<std::string> header = {"ID"};
  for (const FieldSpec& f : registry.schema().fields()) {
    if (header.size() > kListFieldColumns) break;
    header.push_back(f.name());
  }
  Table table(header);
  int64_t printed = 0;
  bool more = false;
  for (;;) {
    const int64_t wanted = limit == 0 ? limits::kPageSizeMax : limit - printed;
    request.set_page_size(static_cast<int32_t>(std::min<int64_t>(wanted, limits::kPageSizeMax)));
    interco::v1::ListRecordsResponse response;
    grpc::ClientContext context;
    client->SetDeadline(context);
    INTERCO_RETURN_IF_ERROR(
        RpcError(client->registries().ListRecords(&context, request, &response)));
    for (const Record& r : response.records()) {
      if (limit != 0 && printed == limit) {
        more = true;
        break;
      }
      ++printed;
      if (session.json()) {
        INTERCO_RETURN_IF_ERROR(PrintJson(r));
        continue;
      }
      std::vector<std::string> row = {std::string(LastSegment(r.name()))};
      for (size_t c = 1; c < header.size(); ++c) {
        auto it = r.fields().find(header[c]);
        row.push_back(it == r.fields().end()
                          ? ""
                          : Truncate(OneLine(FormatValue(it->second)), kListCellWidth));
      }
      table.AddRow(std::move(row));
    }
    if (session.json()) std::cout.flush();
    if (response.next_page_token().empty()) break;
    if (limit != 0 && printed == limit) {
      more = true;
      break;
    }
    request.set_page_token(response.next_page_token());
  }
  if (!session.json()) {
    table.Print(std::cout);
    if (more) {
      std::cout.flush();
      std::cerr << "(stopped at --limit " << limit << "; --limit 0 lists every record)\n";
    }
  }
  return absl::OkStatus();
}

absl::Status RunPut(Session& session, const Args& args, const CommandOptions& options) {
  if (args.size() != 3) return Usage("put REGISTRY ID JSON [--etag E]");
  INTERCO_RETURN_IF_ERROR(CheckRegistryId(args[0]));
  INTERCO_RETURN_IF_ERROR(CheckRecordId(args[1]));
  INTERCO_ASSIGN_OR_RETURN(Client * client, session.client());
  INTERCO_ASSIGN_OR_RETURN(const Registry registry, client->GetRegistry(args[0]));
  const SchemaIndex schema(registry);
  std::vector<std::string> names;
  INTERCO_ASSIGN_OR_RETURN(Record record, RecordFromJson(schema, args[2], names));
  if (names.empty()) {
    // An empty update mask would mean "replace every field".
    return absl::InvalidArgumentError("nothing to update: the JSON object names no field");
  }
  interco::v1::UpdateRecordRequest request;
  *request.mutable_record() = std::move(record);
  request.mutable_record()->set_name(RecordName(args[0], args[1]));
  for (const std::string& name : names) request.mutable_update_mask()->add_paths(name);
  request.set_etag(options.Get("etag"));
  request.set_allow_missing(true);
  Record updated;
  grpc::ClientContext context;
  client->SetDeadline(context);
  INTERCO_RETURN_IF_ERROR(RpcError(client->registries().UpdateRecord(&context, request, &updated)));
  return PrintRecord(session, updated);
}

absl::Status RunCreate(Session& session, const Args& args, const CommandOptions&) {
  if (args.size() != 3) return Usage("create REGISTRY ID JSON");
  INTERCO_RETURN_IF_ERROR(CheckRegistryId(args[0]));
  INTERCO_RETURN_IF_ERROR(CheckRecordId(args[1]));
  INTERCO_ASSIGN_OR_RETURN(Client * client, session.client());
  INTERCO_ASSIGN_OR_RETURN(const Registry registry, client->GetRegistry(args[0]));
  const SchemaIndex schema(registry);
  std::vector<std::string> names;
  interco::v1::CreateRecordRequest request;
  INTERCO_ASSIGN_OR_RETURN(*request.mutable_record(), RecordFromJson(schema, args[2], names));
  request.set_parent(RegistryName(args[0]));
  request.set_record_id(args[1]);
  Record created;
  grpc::ClientContext context;
  client->SetDeadline(context);
  INTERCO_RETURN_IF_ERROR(RpcError(client->registries().CreateRecord(&context, request, &created)));
  return PrintRecord(session, created);
}

absl::Status RunDelete(Session& session, const Args& args, const CommandOptions& options) {
  if (args.size() != 2) return Usage("delete REGISTRY ID [--etag E] [--allow_missing]");
  INTERCO_RETURN_IF_ERROR(CheckRegistryId(args[0]));
  INTERCO_RETURN_IF_ERROR(CheckRecordId(args[1]));
  INTERCO_ASSIGN_OR_RETURN(Client * client, session.client());
  interco::v1::DeleteRecordRequest request;
  request.set_name(RecordName(args[0], args[1]));
  request.set_etag(options.Get("etag"));
  request.set_allow_missing(options.GetSwitch("allow_missing"));
  google::protobuf::Empty empty;
  grpc::ClientContext context;
  client->SetDeadline(context);
  INTERCO_RETURN_IF_ERROR(RpcError(client->registries().DeleteRecord(&context, request, &empty)));
  if (!session.json()) std::cout << "deleted " << args[1] << '\n';
  return absl::OkStatus();
}

absl::Status RunWatch(Session& session, const Args& args, const CommandOptions& options) {
  if (args.size() != 1) {
    return Usage("watch REGISTRY [--cursor C] [--from_oldest] [--count N]");
  }
  INTERCO_RETURN_IF_ERROR(CheckRegistryId(args[0]));
  INTERCO_ASSIGN_OR_RETURN(const int64_t count, options.GetInt("count", 0, 1, INT64_MAX));
  const bool from_oldest = options.GetSwitch("from_oldest");
  if (from_oldest && !options.Get("cursor").empty()) {
    return absl::InvalidArgumentError("--from_oldest applies only without --cursor");
  }
  StopOnSignal stop;  // before the channel exists, so that gRPC's threads inherit the mask
  INTERCO_ASSIGN_OR_RETURN(Client * client, session.client());

  interco::v1::WatchRecordsRequest request;
  request.set_parent(RegistryName(args[0]));
  request.set_cursor(options.Get("cursor"));
  request.set_from_oldest(from_oldest);
  grpc::ClientContext context;  // no deadline: the stream lasts until stopped
  stop.Watch(&context);
  struct Unwatch {
    StopOnSignal& stop;
    ~Unwatch() { stop.Stop(); }
  } unwatch{stop};  // destroyed before `context`
  std::unique_ptr<grpc::ClientReader<interco::v1::WatchRecordsResponse>> reader =
      client->registries().WatchRecords(&context, request);

  std::string cursor;  // resume point after the last change printed
  bool established = false;
  int64_t seen = 0;
  bool reached = false;
  interco::v1::WatchRecordsResponse response;
  while (!reached && reader->Read(&response)) {
    established = true;
    for (const interco::v1::RecordChange& change : response.changes()) {
      if (session.json()) {
        INTERCO_ASSIGN_OR_RETURN(std::string json, ToJson(change));
        std::cout << json << '\n';
      } else {
        const bool deleted = change.kind() == interco::v1::CHANGE_KIND_DELETE;
        std::vector<std::string> parts;
        if (!deleted) {
          for (const auto& [name, value] : SortedFields(change.record())) {
            parts.push_back(absl::StrCat(name, "=", OneLine(FormatValue(*value))));
          }
        }
        std::cout << (deleted ? "DELETE " : "UPSERT ") << LastSegment(change.record().name());
        if (!parts.empty()) std::cout << ' ' << absl::StrJoin(parts, ",");
        std::cout << '\n';
      }
      std::cout.flush();
      cursor = change.cursor();
      if (count != 0 && ++seen == count) {
        reached = true;
        break;
      }
    }
    if (!reached) cursor = response.cursor();
  }
  if (reached) context.TryCancel();
  const grpc::Status status = reader->Finish();
  if (!reached && !stop.signaled() && !status.ok()) return RpcError(status);
  if (established) std::cerr << "cursor: " << cursor << '\n';
  return absl::OkStatus();
}

}  // namespace interco::cli
