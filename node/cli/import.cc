// interco import REGISTRY FILE.csv --key COLUMN [--map FIELD=COLUMN]...
//     [--geo FIELD=LATCOL,LONCOL]... [--set_separator SEP] [--concurrency N]
//     [--where_column COLUMN=VALUE]...
//
// Two passes over the file. The first converts every row and checks the keys (valid
// record IDs, no duplicates), so that a file with errors writes nothing: errors are
// local (exit status 2) and name the row and column. The second writes the records with
// UpdateRecord (allow_missing, an update mask of the imported fields), N calls in flight
// from N threads sharing one channel. Upserts with a fixed mask make the import
// idempotent: running it twice gives the same data, and an empty cell clears its field.
#include <atomic>
#include <deque>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "node/cli/commands.h"
#include "node/cli/csv.h"
#include "node/cli/values.h"
#include "replication/base/status_macros.h"
#include "replication/base/strings.h"

namespace interco::cli {
namespace {

using interco::v1::FieldSpec;
using interco::v1::Record;
using interco::v1::Registry;
using interco::v1::UpdateRecordRequest;

constexpr char kSynopsis[] =
    "import REGISTRY FILE.csv --key COLUMN [--map FIELD=COLUMN]... "
    "[--geo FIELD=LATCOL,LONCOL]... [--set_separator SEP] [--concurrency N] "
    "[--where_column COLUMN=VALUE]...";
constexpr int64_t kDefaultConcurrency = 32;
constexpr int64_t kMaxConcurrency = 1024;
// Row errors printed before the rest are only counted.
constexpr int kMaxErrorsShown = 20;
// Attempts of a write failing with UNAVAILABLE (also the node's "write queue full").
constexpr int kAttempts = 5;

absl::Status InvalidArgument(std::string_view message) {
  return absl::InvalidArgumentError(ToAbsl(message));
}

// Where a schema field's values come from.
struct Source {
  const FieldSpec* spec = nullptr;
  int column = -1;
  // The longitude column of a --geo field (`column` is the latitude).
  int lon_column = -1;
};

struct Plan {
  std::string registry_id;
  std::vector<std::string> header;
  int key_column = -1;
  std::vector<Source> sources;
  std::vector<std::pair<int, std::string>> where;
  std::string set_separator;
  // The imported fields, in schema order: the update mask of every write.
  std::vector<std::string> mask;
};

absl::StatusOr<int> Column(const std::vector<std::string>& header, std::string_view name,
                           std::string_view option) {
  for (size_t i = 0; i < header.size(); ++i) {
    if (header[i] == name) return static_cast<int>(i);
  }
  return InvalidArgument(
      absl::StrCat(ToAbsl(option), ": no column \"", ToAbsl(name), "\" in the CSV header"));
}

absl::StatusOr<Plan> MakePlan(const SchemaIndex& schema, const std::string& registry_id,
                              std::vector<std::string> header, const CommandOptions& options) {
  Plan plan;
  plan.registry_id = registry_id;
  plan.header = std::move(header);
  plan.set_separator = options.Get("set_separator", " ");
  INTERCO_ASSIGN_OR_RETURN(plan.key_column, Column(plan.header, options.Get("key"), "--key"));

  // Field -> columns given by --map and --geo.
  absl::flat_hash_map<std::string, Source> explicit_sources;
  for (const std::string& m : options.GetAll("map")) {
    INTERCO_ASSIGN_OR_RETURN(auto assignment, SplitAssignment("map", m));
    const auto& [field, column] = assignment;
    INTERCO_ASSIGN_OR_RETURN(const FieldSpec* spec, schema.Require(field));
    Source source;
    source.spec = spec;
    INTERCO_ASSIGN_OR_RETURN(source.column, Column(plan.header, column, absl::StrCat("--map ", m)));
    if (!explicit_sources.emplace(field, source).second) {
      return InvalidArgument(absl::StrCat("field \"", field, "\" is mapped twice"));
    }
  }
  for (const std::string& g : options.GetAll("geo")) {
    INTERCO_ASSIGN_OR_RETURN(auto assignment, SplitAssignment("geo", g));
    const auto& [field, columns] = assignment;
    INTERCO_ASSIGN_OR_RETURN(const FieldSpec* spec, schema.Require(field));
    if (spec->type() != interco::v1::FIELD_TYPE_GEO_POINT) {
      return InvalidArgument(absl::StrCat("--geo ", g, ": field \"", field, "\" is a ",
                                          ToAbsl(FieldTypeName(spec->type())),
                                          ", not a geo_point"));
    }
    std::vector<std::string> parts = absl::StrSplit(columns, ',');
    if (parts.size() != 2 || parts[0].empty() || parts[1].empty()) {
      return InvalidArgument(
          absl::StrCat("--geo ", g, ": expected FIELD=LATITUDE_COLUMN,LONGITUDE_COLUMN"));
    }
    Source source;
    source.spec = spec;
    INTERCO_ASSIGN_OR_RETURN(source.column,
                             Column(plan.header, parts[0], absl::StrCat("--geo ", g)));
    INTERCO_ASSIGN_OR_RETURN(source.lon_column,
                             Column(plan.header, parts[1], absl::StrCat("--geo ", g)));
    if (!explicit_sources.emplace(field, source).second) {
      return InvalidArgument(absl::StrCat("field \"", field, "\" is mapped twice"));
    }
  }

  std::vector<std::string> unmapped;
  for (const FieldSpec& f : schema.registry().schema().fields()) {
    auto it = explicit_sources.find(f.name());
    if (it != explicit_sources.end()) {
      plan.sources.push_back(it->second);
    } else if (absl::StatusOr<int> column = Column(plan.header, f.name(), ""); column.ok()) {
      plan.sources.push_back(Source{&f, *column, -1});
    } else {
      unmapped.push_back(f.name());
      continue;
    }
    plan.mask.push_back(f.name());
  }
  if (plan.sources.empty()) {
    return InvalidArgument(
        absl::StrCat("no CSV column matches a field of ", schema.registry().name(),
                     " (fields: ", absl::StrJoin(unmapped, ", "), "); use --map FIELD=COLUMN"));
  }
  if (!unmapped.empty()) {
    std::cerr << "interco: note: no column for " << absl::StrJoin(unmapped, ", ")
              << "; these fields are left as they are\n";
  }

  for (const std::string& w : options.GetAll("where_column")) {
    INTERCO_ASSIGN_OR_RETURN(auto assignment, SplitAssignment("where_column", w));
    INTERCO_ASSIGN_OR_RETURN(
        int column, Column(plan.header, assignment.first, absl::StrCat("--where_column ", w)));
    plan.where.emplace_back(column, std::move(assignment.second));
  }
  return plan;
}

enum class RowKind { kRecord, kFiltered, kEmptyKey };

struct BuiltRow {
  RowKind kind = RowKind::kRecord;
  std::string key;
  UpdateRecordRequest request;
};

// Converts one data row. Errors name the column.
absl::Status BuildRow(const Plan& plan, const std::vector<std::string>& row, BuiltRow& out) {
  if (row.size() > plan.header.size()) {
    return InvalidArgument(
        absl::StrCat(row.size(), " cells, but the header has ", plan.header.size()));
  }
  // Missing trailing cells are empty.
  auto cell = [&](int column) -> std::string_view {
    return static_cast<size_t>(column) < row.size() ? std::string_view(row[column])
                                                    : std::string_view();
  };
  for (const auto& [column, value] : plan.where) {
    if (cell(column) != value) {
      out.kind = RowKind::kFiltered;
      return absl::OkStatus();
    }
  }
  out.key = std::string(cell(plan.key_column));
  if (out.key.empty()) {
    out.kind = RowKind::kEmptyKey;
    return absl::OkStatus();
  }
  if (absl::Status s = CheckRecordId(out.key); !s.ok()) {
    return InvalidArgument(
        absl::StrCat("column ", plan.header[plan.key_column], " (key): ", s.message()));
  }
  out.kind = RowKind::kRecord;
  out.request.Clear();
  Record* record = out.request.mutable_record();
  record->set_name(RecordName(plan.registry_id, out.key));
  for (const Source& source : plan.sources) {
    const std::string_view text = cell(source.column);
    const std::string& column_name = plan.header[source.column];
    absl::StatusOr<interco::v1::Value> value;
    if (source.lon_column >= 0) {
      const std::string_view lon = cell(source.lon_column);
      if (text.empty() && lon.empty()) continue;
      if (text.empty() || lon.empty()) {
        return InvalidArgument(
            absl::StrCat("columns ", column_name, ",", plan.header[source.lon_column], " (",
                         source.spec->name(), "): latitude and longitude must both be set"));
      }
      value = GeoPointFromTexts(text, lon);
    } else {
      if (text.empty()) continue;
      if (!IsValidUtf8(text)) {
        return InvalidArgument(
            absl::StrCat("column ", column_name, ": not valid UTF-8 (the file must be UTF-8)"));
      }
      value = ValueFromText(*source.spec, text, plan.set_separator);
    }
    if (!value.ok()) {
      return InvalidArgument(absl::StrCat("column ", column_name, " (",
                                          ToAbsl(FieldTypeName(source.spec->type())),
                                          "): ", value.status().message()));
    }
    (*record->mutable_fields())[source.spec->name()] = *std::move(value);
  }
  for (const std::string& field : plan.mask) out.request.mutable_update_mask()->add_paths(field);
  out.request.set_allow_missing(true);
  return absl::OkStatus();
}

// Opens the CSV for each pass; stdin ("-") is read once and kept.
class Input {
 public:
  explicit Input(std::string path) : path_(std::move(path)) {}

  absl::StatusOr<std::unique_ptr<std::istream>> Open() {
    if (path_ == "-") {
      if (!stdin_.has_value()) {
        INTERCO_ASSIGN_OR_RETURN(stdin_, ReadInputFile("-"));
      }
      return std::unique_ptr<std::istream>(std::make_unique<std::istringstream>(*stdin_));
    }
    auto in = std::make_unique<std::ifstream>(path_, std::ios::binary);
    if (!in->is_open()) return InvalidArgument(absl::StrCat("cannot open ", path_));
    return std::unique_ptr<std::istream>(std::move(in));
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::optional<std::string> stdin_;
};

// "row N" (the header is row 1, as in a spreadsheet), plus the line when they differ.
std::string RowLabel(int64_t row, int64_t line) {
  return row == line ? absl::StrCat("row ", row) : absl::StrCat("row ", row, " (line ", line, ")");
}

// Calls `fn(row, label)` for each data row of the CSV.
template <typename Fn>
absl::Status ForEachRow(std::istream& in, const std::string& path, Fn fn) {
  CsvReader reader(in);
  std::vector<std::string> row;
  int64_t row_number = 1;
  INTERCO_ASSIGN_OR_RETURN(bool any, reader.Next(row));  // the header
  if (!any) return absl::OkStatus();
  for (;;) {
    absl::StatusOr<bool> next = reader.Next(row);
    if (!next.ok()) return InvalidArgument(absl::StrCat(path, ": ", next.status().message()));
    if (!*next) break;
    ++row_number;
    INTERCO_RETURN_IF_ERROR(fn(row, RowLabel(row_number, reader.record_line())));
  }
  if (in.bad()) return InvalidArgument(absl::StrCat("cannot read ", path));
  return absl::OkStatus();
}

struct Counts {
  int64_t records = 0;
  int64_t empty_keys = 0;
};

// Pass 1: converts every row, checks the keys, reports errors. Writes nothing.
absl::StatusOr<Counts> Validate(std::istream& in, const std::string& path, const Plan& plan) {
  Counts counts;
  int64_t errors = 0;
  absl::flat_hash_map<std::string, std::string> first_row_of_key;
  BuiltRow built;
  auto report = [&](const std::string& message) {
    if (++errors <= kMaxErrorsShown) std::cerr << "interco: " << message << '\n';
  };
  INTERCO_RETURN_IF_ERROR(
      ForEachRow(in, path, [&](const std::vector<std::string>& row, const std::string& label) {
        if (absl::Status s = BuildRow(plan, row, built); !s.ok()) {
          report(absl::StrCat(label, ": ", s.message()));
          return absl::OkStatus();
        }
        if (built.kind == RowKind::kEmptyKey) ++counts.empty_keys;
        if (built.kind != RowKind::kRecord) return absl::OkStatus();
        auto [it, inserted] = first_row_of_key.emplace(built.key, label);
        if (!inserted) {
          report(absl::StrCat(label, ": key \"", built.key, "\" already on ", it->second,
                              " (filter rows with --where_column)"));
          return absl::OkStatus();
        }
        ++counts.records;
        return absl::OkStatus();
      }));
  if (errors > kMaxErrorsShown) {
    std::cerr << "interco: ... and " << errors - kMaxErrorsShown << " more\n";
  }
  if (errors > 0) {
    return InvalidArgument(absl::StrCat(errors, errors == 1 ? " row" : " rows", " with errors in ",
                                        path, "; nothing was imported"));
  }
  return counts;
}

// Calls that fail this way would fail for every row: the import stops.
bool StopsImport(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::NOT_FOUND:  // the registry (records are upserted)
    case grpc::StatusCode::UNIMPLEMENTED:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::CANCELLED: return true;
    default: return false;
  }
}

// Pass 2: N writer threads fed through a bounded queue.
class Writer {
 public:
  Writer(Client& client, int threads) : client_(client), capacity_(2 * threads) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { Work(); });
  }
  ~Writer() { Close(); }

  // Queues a write; false if the import stopped.
  bool Push(std::string label, std::string key, UpdateRecordRequest request) {
    absl::MutexLock l(&mu_);
    mu_.Await(absl::Condition(
        +[](Writer* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
          return w->queue_.size() < w->capacity_ || !w->fatal_.ok();
        },
        this));
    if (!fatal_.ok()) return false;
    queue_.push_back(Item{std::move(label), std::move(key), std::move(request)});
    return true;
  }

  // Waits for the queued writes and the threads.
  void Close() {
    {
      absl::MutexLock l(&mu_);
      closed_ = true;
    }
    for (std::thread& t : threads_) t.join();
    threads_.clear();
  }

  int64_t imported() const { return imported_; }
  int64_t failed() const { return failed_; }
  absl::Status fatal() {
    absl::MutexLock l(&mu_);
    return fatal_;
  }

 private:
  struct Item {
    std::string label;
    std::string key;
    UpdateRecordRequest request;
  };

  void Work() {
    for (;;) {
      Item item;
      {
        absl::MutexLock l(&mu_);
        mu_.Await(absl::Condition(
            +[](Writer* w) ABSL_EXCLUSIVE_LOCKS_REQUIRED(w->mu_) {
              return !w->queue_.empty() || w->closed_ || !w->fatal_.ok();
            },
            this));
        if (!fatal_.ok() || queue_.empty()) return;
        item = std::move(queue_.front());
        queue_.pop_front();
      }
      const grpc::Status status = Write(item.request);
      if (status.ok()) {
        ++imported_;
        continue;
      }
      if (StopsImport(status.error_code())) {
        absl::MutexLock l(&mu_);
        if (fatal_.ok()) fatal_ = RpcError(status);
        return;
      }
      ++failed_;
      absl::MutexLock l(&output_mu_);
      std::cerr << "interco: " << item.label << ", key " << item.key << ": "
                << absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()))
                << ": " << status.error_message() << '\n';
    }
  }

  grpc::Status Write(const UpdateRecordRequest& request) {
    absl::Duration backoff = absl::Milliseconds(100);
    for (int attempt = 1;; ++attempt) {
      grpc::ClientContext context;
      client_.SetDeadline(context);
      Record response;
      grpc::Status status = client_.registries().UpdateRecord(&context, request, &response);
      if (status.error_code() != grpc::StatusCode::UNAVAILABLE || attempt == kAttempts) {
        return status;
      }
      absl::SleepFor(backoff);
      backoff *= 2;
    }
  }

  Client& client_;
  const size_t capacity_;
  absl::Mutex mu_;
  std::deque<Item> queue_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status fatal_ ABSL_GUARDED_BY(mu_);
  absl::Mutex output_mu_;
  std::atomic<int64_t> imported_{0};
  std::atomic<int64_t> failed_{0};
  std::vector<std::thread> threads_;
};

void PrintSummary(Session& session, int64_t imported, int64_t skipped, int64_t failed,
                  absl::Duration elapsed) {
  const double seconds = absl::ToDoubleSeconds(elapsed);
  const double rate = seconds > 0 ? static_cast<double>(imported) / seconds : 0;
  if (session.json()) {
    std::cout << absl::StrFormat(
        "{\"imported\":%d,\"skipped\":%d,\"failed\":%d,\"seconds\":%.3f,\"records_per_second\":%."
        "1f}\n",
        imported, skipped, failed, seconds, rate);
  } else {
    std::cout << absl::StrFormat("imported %d records (%d skipped) in %.1f s (%.0f records/s)\n",
                                 imported, skipped, seconds, rate);
  }
  std::cout.flush();
}

}  // namespace

absl::Status RunImport(Session& session, const Args& args, const CommandOptions& options) {
  if (args.size() != 2)
    return absl::InvalidArgumentError(absl::StrCat("usage: interco ", kSynopsis));
  const std::string& registry_id = args[0];
  INTERCO_RETURN_IF_ERROR(CheckRegistryId(registry_id));
  if (!options.Has("key")) {
    return InvalidArgument("import needs --key COLUMN (the column holding the record IDs)");
  }
  INTERCO_ASSIGN_OR_RETURN(const int64_t concurrency,
                           options.GetInt("concurrency", kDefaultConcurrency, 1, kMaxConcurrency));
  Input input(args[1]);
  // Read the header before connecting, so that a bad file fails fast.
  std::vector<std::string> header;
  {
    INTERCO_ASSIGN_OR_RETURN(std::unique_ptr<std::istream> in, input.Open());
    CsvReader reader(*in);
    absl::StatusOr<bool> any = reader.Next(header);
    if (!any.ok()) return InvalidArgument(absl::StrCat(input.path(), ": ", any.status().message()));
    if (!*any) return InvalidArgument(absl::StrCat(input.path(), ": empty file (no header)"));
  }

  INTERCO_ASSIGN_OR_RETURN(Client * client, session.client());
  const absl::Time start = absl::Now();
  INTERCO_ASSIGN_OR_RETURN(const Registry registry, client->GetRegistry(registry_id));
  const SchemaIndex schema(registry);
  INTERCO_ASSIGN_OR_RETURN(const Plan plan, MakePlan(schema, registry_id, header, options));

  Counts counts;
  {
    INTERCO_ASSIGN_OR_RETURN(std::unique_ptr<std::istream> in, input.Open());
    INTERCO_ASSIGN_OR_RETURN(counts, Validate(*in, input.path(), plan));
  }

  Writer writer(*client,
                static_cast<int>(std::min(concurrency, std::max<int64_t>(counts.records, 1))));
  absl::Status local;
  {
    INTERCO_ASSIGN_OR_RETURN(std::unique_ptr<std::istream> in, input.Open());
    BuiltRow built;
    local = ForEachRow(
        *in, input.path(), [&](const std::vector<std::string>& row, const std::string& label) {
          if (absl::Status s = BuildRow(plan, row, built); !s.ok()) {
            return InvalidArgument(absl::StrCat(label, ": ", s.message(), " (the file changed?)"));
          }
          if (built.kind != RowKind::kRecord) return absl::OkStatus();
          if (!writer.Push(label, built.key, std::move(built.request))) {
            return absl::CancelledError("stopped");
          }
          return absl::OkStatus();
        });
  }
  writer.Close();
  PrintSummary(session, writer.imported(), counts.empty_keys, writer.failed(), absl::Now() - start);
  if (absl::Status fatal = writer.fatal(); !fatal.ok()) return fatal;
  if (!local.ok()) return local;
  if (writer.failed() > 0) {
    return PartialFailure(
        absl::StrCat(writer.failed(), " of ", counts.records, " records failed (see above)"));
  }
  return absl::OkStatus();
}

}  // namespace interco::cli
