// interco: command-line client of an interco node.
//
//   interco [--addr HOST:PORT] [--tls_dir DIR] [--output table|json] [--timeout S]
//           COMMAND [ARGS] [OPTIONS]
//
// Run "interco help" for the commands. Exit status: 0 success, 1 RPC or server error
// ("interco: NOT_FOUND: ..." on stderr), 2 usage or local input error.
#include <cstdlib>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include <grpc/support/log.h>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "node/cli/args.h"
#include "node/cli/client.h"
#include "node/cli/commands.h"
#include "node/rpc/grpc_runtime.h"
#include "node/version.h"
#include "replication/base/strings.h"

ABSL_FLAG(std::string, addr, "127.0.0.1:7443", "host:port of the node's API");
ABSL_FLAG(std::string, tls_dir, "",
          "directory with tls.crt, tls.key and ca.crt (default: $INTERCO_TLS_DIR)");
ABSL_FLAG(std::string, output, "table", "table or json");
ABSL_FLAG(double, timeout, 30, "seconds allowed for each call (0: no limit)");

namespace interco::cli {
namespace {

using RunFn = absl::Status (*)(Session&, const Args&, const CommandOptions&);

struct Command {
  // "get", or "registry get" for the commands of a group.
  std::string_view name;
  std::string_view synopsis;
  std::string_view summary;
  std::vector<std::string_view> options;
  RunFn run;
};

const std::vector<Command>& Commands() {
  static const auto* commands = new std::vector<Command>{
      {"info", "info", "the node's identity, version, registries and store size", {}, RunInfo},
      {"registries",
       "registries",
       "list the registries: NAME, OWNER, RECORDS, FIELDS",
       {},
       RunRegistries},
      {"registry get", "registry get ID", "show a registry and its schema", {}, RunRegistryGet},
      {"registry create",
       "registry create ID FILE.json",
       "create a registry from a JSON interco.v1.Registry (display_name, owner,\n"
       "      schema); FILE - reads stdin; prints the created registry",
       {},
       RunRegistryCreate},
      {"registry set-policy",
       "registry set-policy ID FILE.json [--etag E]",
       "set who may write and read a registry (admins of its owner, on the owner's\n"
       "      node): a JSON interco.v1.Policy, e.g. {\"writers\": {\"membersOf\":\n"
       "      [\"200071751\"]}, \"readers\": {\"allAuthorities\": true}}; membersOf is\n"
       "      resolved from the registry \"epci\" of this node; the new policy version\n"
       "      replicates to every node holding the registry",
       {"etag"},
       RunRegistrySetPolicy},
      {"registry set-retention",
       "registry set-retention ID DAYS [--etag E]",
       "days this node keeps the registry's audit events (0: the default, 365)",
       {"etag"},
       RunRegistrySetRetention},
      {"get",
       "get REGISTRY ID",
       "show a record: its fields, etag, update time and origin",
       {},
       RunGet},
      {"list",
       "list REGISTRY [--prefix P] [--where FIELD=VALUE]... [--limit N]",
       "list records by ID; --where filters on a field (for a string set, VALUE is\n"
       "      one element; repeat to AND); --limit defaults to 100, 0 lists all.\n"
       "      Table: ID and the first 6 fields; json: one record per line",
       {"prefix", "where", "limit"},
       RunList},
      {"conflicts",
       "conflicts REGISTRY [ID] [--limit N]",
       "the conflict journal: writes that lost a race to a write that had not seen\n"
       "      them (record, field, losing value, its authority and time, the write it\n"
       "      lost to here); --limit defaults to 100, 0 lists all. json: one\n"
       "      interco.v1.Conflict per line",
       {"limit"},
       RunConflicts},
      {"put",
       "put REGISTRY ID JSON [--etag E]",
       "upsert the fields of the JSON object, e.g. '{\"nom\":\"Ars\",\"population\":860}';\n"
       "      other fields are kept, null clears a field. Values: number (int64,\n"
       "      double), string (string; RFC 3339 for timestamps), true/false,\n"
       "      [\"a\",\"b\"] (string set), {\"latitude\":45.1,\"longitude\":5.7}",
       {"etag"},
       RunPut},
      {"create",
       "create REGISTRY ID JSON",
       "create a record (ALREADY_EXISTS if it exists); JSON as for put",
       {},
       RunCreate},
      {"delete",
       "delete REGISTRY ID [--etag E] [--allow_missing]",
       "delete a record",
       {"etag", "allow_missing"},
       RunDelete},
      {"watch",
       "watch REGISTRY [--cursor C] [--from_oldest] [--count N]",
       "print each change as it happens (table: UPSERT|DELETE ID FIELD=VALUE,...;\n"
       "      json: one RecordChange per line); stops after N changes or on Ctrl-C,\n"
       "      then prints \"cursor: C\" on stderr to resume from with --cursor",
       {"cursor", "from_oldest", "count"},
       RunWatch},
      {"import",
       "import REGISTRY FILE.csv --key COLUMN [--map FIELD=COLUMN]...\n"
       "         [--geo FIELD=LATCOL,LONCOL]... [--set_separator SEP] [--concurrency N]\n"
       "         [--where_column COLUMN=VALUE]...",
       "upsert one record per CSV row (RFC 4180, UTF-8, header line), keyed by the\n"
       "      --key column. Each field is read from the column of the same name or\n"
       "      the --map column; empty cells clear the field, rows with an empty key\n"
       "      are skipped. Booleans: true/false/1/0/oui/non; timestamps: RFC 3339,\n"
       "      YYYY-MM-DD or YYYY-MM-DD HH:MM:SS (UTC); string sets split on\n"
       "      --set_separator (default a space). --where_column keeps matching rows\n"
       "      only (repeat to AND). A file with errors imports nothing; rows the\n"
       "      node refuses are reported and counted. --concurrency defaults to 32",
       {"key", "map", "geo", "set_separator", "concurrency", "where_column"},
       RunImport},
      {"audit",
       "audit [REGISTRY] [--limit N]",
       "the audit events of a registry (or of the node), newest first: who did or\n"
       "      was refused what, when, and why; --limit defaults to 20, 0 lists all.\n"
       "      Needs an admin certificate of the node's authority",
       {"limit"},
       RunAudit},
      {"backup",
       "backup NAME",
       "a consistent copy of the node's store, made while it runs, in its backup\n"
       "      directory (NodeConfig.backup_dir/NAME, on the node's host); a node\n"
       "      restored from it starts a new origin epoch by itself. Needs an admin\n"
       "      certificate of the node's authority",
       {},
       RunBackup},
      {"repair",
       "repair REGISTRY --peer SIREN [--dry_run]",
       "compare the registry with a configured peer's copy by range fingerprints\n"
       "      and merge the peer's states of the records that differ into this node's\n"
       "      (a join: no write is undone; audited). --dry_run only counts them. Run it\n"
       "      on both nodes to repair both ways. Needs an admin certificate of the\n"
       "      node's authority",
       {"peer", "dry_run"},
       RunRepair},
      {"provenance",
       "provenance REGISTRY ID [--out FILE.json]",
       "who authored each value of a record (authority, client, time) and the\n"
       "      signed batch and certificate behind it; --out saves the proof as JSON",
       {"out"},
       RunProvenance},
      {"verify-provenance",
       "verify-provenance FILE.json [--ca CA.crt] [--crl_dir DIR]",
       "check a saved proof offline: signatures, certificates chaining to the CA\n"
       "      bundle (default: ca.crt of --tls_dir), and that the signed changes write\n"
       "      exactly the record's values; needs no node",
       {"ca", "crl_dir"},
       RunVerifyProvenance},
  };
  return *commands;
}

std::string UsageText() {
  std::string out =
      "usage: interco [--addr HOST:PORT] [--tls_dir DIR] [--output table|json]\n"
      "               [--timeout SECONDS] COMMAND [ARGS] [OPTIONS]\n"
      "\n"
      "Command-line client of an interco node (gRPC over mutual TLS).\n"
      "\n"
      "Commands:\n";
  for (const Command& c : Commands()) {
    absl::StrAppend(&out, "  ", ToAbsl(c.synopsis), "\n      ", ToAbsl(c.summary), "\n");
  }
  absl::StrAppend(
      &out,
      "  help\n      this text\n"
      "\n"
      "Global flags (anywhere before \"--\"; arguments after \"--\" are positional):\n"
      "  --addr HOST:PORT     the node's API (default 127.0.0.1:7443)\n"
      "  --tls_dir DIR        client certificate: DIR/tls.crt, DIR/tls.key, DIR/ca.crt\n"
      "                       (default $INTERCO_TLS_DIR)\n"
      "  --output FORMAT      table (default) or json (protobuf JSON, one object a line)\n"
      "  --timeout SECONDS    limit of each call (default 30; 0 for none)\n"
      "\n"
      "Exit status: 0 success; 1 error from the node or the network, printed as\n"
      "\"interco: CODE: message\" (e.g. NOT_FOUND); 2 usage or local input error.\n");
  return out;
}

// The command named by the first one or two positional arguments.
const Command* FindCommand(const std::vector<std::string>& positional, size_t& consumed) {
  for (const Command& c : Commands()) {
    const size_t space = c.name.find(' ');
    if (space == std::string_view::npos) {
      if (positional[0] == c.name) {
        consumed = 1;
        return &c;
      }
    } else if (positional.size() >= 2 && positional[0] == c.name.substr(0, space) &&
               positional[1] == c.name.substr(space + 1)) {
      consumed = 2;
      return &c;
    }
  }
  return nullptr;
}

int Fail(const absl::Status& status) {
  std::cout.flush();
  std::cerr << ErrorLine(status) << '\n';
  return ExitCode(status);
}

int Main(int argc, char** argv) {
  // gRPC's own log lines (e.g. "Handshake failed") repeat what the failed call's status
  // says; keep them for GRPC_VERBOSITY=... debugging only.
  if (std::getenv("GRPC_VERBOSITY") == nullptr) gpr_set_log_function([](gpr_log_func_args*) {});
  absl::StatusOr<SplitCommandLine> split = SplitArgs(argc, argv);
  if (!split.ok()) return Fail(split.status());
  if (split->help) {
    std::cout << UsageText();
    return 0;
  }
  if (split->version) {
    std::cout << "interco " << node::kVersion << '\n';
    return 0;
  }
  absl::SetProgramUsageMessage(UsageText());
  std::vector<char*> positional_argv =
      absl::ParseCommandLine(static_cast<int>(split->absl_argv.size()), split->absl_argv.data());
  std::vector<std::string> positional(positional_argv.begin() + 1, positional_argv.end());

  if (positional.empty()) {
    std::cerr << UsageText();
    return 2;
  }
  if (positional[0] == "help") {
    std::cout << UsageText();
    return 0;
  }
  size_t consumed = 0;
  const Command* command = FindCommand(positional, consumed);
  if (command == nullptr) {
    if (positional[0] == "registry") {
      return Fail(absl::InvalidArgumentError(
          "usage: interco registry get ID | interco registry create ID FILE.json"));
    }
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("unknown command \"", positional[0], "\" (run \"interco help\")")));
  }
  if (absl::Status s = split->options.CheckAllowed(command->name, command->options); !s.ok()) {
    return Fail(s);
  }

  ConnectOptions connect;
  connect.address = absl::GetFlag(FLAGS_addr);
  connect.tls_dir = absl::GetFlag(FLAGS_tls_dir);
  if (connect.tls_dir.empty()) {
    if (const char* env = std::getenv("INTERCO_TLS_DIR"); env != nullptr) connect.tls_dir = env;
  }
  const double timeout = absl::GetFlag(FLAGS_timeout);
  connect.timeout = timeout > 0 ? absl::Seconds(timeout) : absl::InfiniteDuration();
  const std::string output = absl::GetFlag(FLAGS_output);
  if (output != "table" && output != "json") {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--output: expected table or json, got \"", output, "\"")));
  }
  Session session(connect, output == "json" ? OutputFormat::kJson : OutputFormat::kTable);
  const Args args(positional.begin() + static_cast<std::ptrdiff_t>(consumed), positional.end());
  const absl::Status status = command->run(session, args, split->options);
  std::cout.flush();
  if (!status.ok()) return Fail(status);
  if (!std::cout) {
    std::cerr << "interco: cannot write the output\n";
    return 2;
  }
  return 0;
}

}  // namespace
}  // namespace interco::cli

int main(int argc, char** argv) {
  // Outlives every gRPC object of Main, and waits for gRPC's threads before the exit.
  interco::node::GrpcRuntime grpc_runtime;
  return interco::cli::Main(argc, argv);
}
