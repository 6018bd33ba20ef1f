#include "replication/frame_codec.h"

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "interco/replication/v1/state.pb.h"
#include "replication/base/limits.h"
#include "replication/change_log.h"

namespace interco::replication {
namespace {

using interco::replication::v1::BatchFrame;
using interco::replication::v1::BatchHeader;
using interco::replication::v1::Change;
using interco::replication::v1::ChangeColumns;
using interco::replication::v1::ValueColumn;

// The frame's headers without the hashes the receiver computes, if each serializes back
// to its bytes and holds exactly those hashes; nothing otherwise.
std::optional<std::vector<std::string>> ElidedHeaders(const BatchFrame& frame, Hasher& hasher) {
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(frame.batches_size()));
  const std::string* previous = nullptr;
  BatchHeader h;
  std::string check;
  for (const auto& batch : frame.batches()) {
    h.Clear();
    check.clear();
    // A hollow batch has nothing to compute its body hash from: it is sent.
    if (batch.hollow() || !h.ParseFromString(batch.header()) || !h.SerializeToString(&check) ||
        check != batch.header() || h.body_hash() != BodyHash(batch.changes(), hasher) ||
        (previous != nullptr && h.prev_hash() != hasher.Sha256(*previous))) {
      return std::nullopt;
    }
    h.clear_body_hash();
    if (previous != nullptr) h.clear_prev_hash();
    h.SerializeToString(&out.emplace_back());
    previous = &batch.header();
  }
  return out;
}

}  // namespace

bool EncodeColumns(BatchFrame& frame, Hasher& hasher) {
  if (frame.has_columns()) return false;
  size_t total = 0;
  for (const auto& batch : frame.batches()) total += static_cast<size_t>(batch.changes_size());
  if (total == 0) return false;
  ChangeColumns cols;
  cols.mutable_skeletons()->Reserve(static_cast<int>(total));
  cols.mutable_keys()->Reserve(static_cast<int>(total));
  cols.mutable_hlc_deltas()->Reserve(static_cast<int>(total));
  cols.mutable_authors()->Reserve(static_cast<int>(total));
  absl::flat_hash_map<std::string, ValueColumn*> column_of;
  uint64_t previous_hlc = 0;
  Change c;
  std::string check;
  for (const auto& batch : frame.batches()) {
    for (const std::string& bytes : batch.changes()) {
      c.Clear();
      if (!c.ParseFromString(bytes)) return false;
      // The receiver rebuilds the change and serializes it: only a change that serializes
      // back to its own bytes can travel this way.
      check.clear();
      if (!c.SerializeToString(&check) || check != bytes) return false;
      cols.add_keys(std::move(*c.mutable_key()));
      c.clear_key();
      cols.add_hlc_deltas(static_cast<int64_t>(c.hlc() - previous_hlc));
      previous_hlc = c.hlc();
      c.clear_hlc();
      cols.add_authors(std::move(*c.mutable_author()));
      c.clear_author();
      if (c.has_delta()) {
        for (auto& f : *c.mutable_delta()->mutable_fields()) {
          if (!f.has_value()) continue;
          ValueColumn*& column = column_of[f.name()];
          if (column == nullptr) {
            column = cols.add_values();
            column->set_name(f.name());
          }
          f.value().SerializeToString(column->add_values());
          f.mutable_value()->Clear();  // present and empty: its value is in the column
        }
      }
      c.SerializeToString(cols.add_skeletons());
    }
  }
  std::optional<std::vector<std::string>> headers = ElidedHeaders(frame, hasher);
  for (int b = 0; b < frame.batches_size(); ++b) {
    auto* batch = frame.mutable_batches(b);
    batch->clear_changes();
    if (headers) batch->set_header(std::move((*headers)[static_cast<size_t>(b)]));
  }
  cols.set_hashes_elided(headers.has_value());
  *frame.mutable_columns() = std::move(cols);
  return true;
}

absl::Status DecodeColumns(BatchFrame& frame, Hasher& hasher) {
  if (!frame.has_columns()) return absl::OkStatus();
  const ChangeColumns& cols = frame.columns();
  const int n = cols.skeletons_size();
  if (static_cast<size_t>(n) > limits::kFrameChangesMax ||
      static_cast<size_t>(frame.batches_size()) > limits::kRunBatchesMax) {
    return absl::DataLossError(absl::StrCat("a columnar frame of ", frame.batches_size(),
                                            " batches and ", n, " changes is beyond a run"));
  }
  if (cols.keys_size() != n || cols.hlc_deltas_size() != n || cols.authors_size() != n) {
    return absl::DataLossError(absl::StrCat("change columns of unequal lengths: ", n,
                                            " skeletons, ", cols.keys_size(), " keys, ",
                                            cols.hlc_deltas_size(), " stamps, ",
                                            cols.authors_size(), " authors"));
  }
  // The batch headers: how many changes each holds.
  std::vector<BatchHeader> parsed;
  int64_t sum = 0;
  for (const auto& batch : frame.batches()) {
    BatchHeader& h = parsed.emplace_back();
    if (!h.ParseFromString(batch.header())) {
      return absl::DataLossError("a batch header of a columnar frame does not parse");
    }
    if (batch.changes_size() > 0) {
      return absl::DataLossError("a batch of a columnar frame also carries changes");
    }
    if (batch.hollow()) {
      if (cols.hashes_elided()) {
        return absl::DataLossError("a hollow batch in a frame whose hashes were left out");
      }
      continue;  // no changes in the columns
    }
    sum += h.count();
    if (sum > n) break;
  }
  if (sum != n) {
    return absl::DataLossError(absl::StrCat("the frame's batch headers count ", sum,
                                            " changes, its columns hold ", n));
  }
  struct Cursor {
    const ValueColumn* column = nullptr;
    int next = 0;
  };
  absl::flat_hash_map<std::string, Cursor> cursors;
  for (const ValueColumn& column : cols.values()) {
    if (!cursors.emplace(column.name(), Cursor{&column, 0}).second) {
      return absl::DataLossError(absl::StrCat("two value columns for field ", column.name()));
    }
  }
  std::vector<google::protobuf::RepeatedPtrField<std::string>> changes(parsed.size());
  uint64_t hlc = 0;
  int i = 0;
  Change c;
  for (size_t b = 0; b < parsed.size(); ++b) {
    const int count =
        frame.batches(static_cast<int>(b)).hollow() ? 0 : static_cast<int>(parsed[b].count());
    changes[b].Reserve(count);
    for (int k = 0; k < count; ++k, ++i) {
      c.Clear();
      if (!c.ParseFromString(cols.skeletons(i))) {
        return absl::DataLossError(absl::StrCat("change skeleton ", i, " does not parse"));
      }
      c.set_key(cols.keys(i));
      hlc += static_cast<uint64_t>(cols.hlc_deltas(i));
      c.set_hlc(hlc);
      c.set_author(cols.authors(i));
      if (c.has_delta()) {
        for (auto& f : *c.mutable_delta()->mutable_fields()) {
          if (!f.has_value()) continue;
          auto it = cursors.find(f.name());
          if (it == cursors.end() || it->second.next >= it->second.column->values_size()) {
            return absl::DataLossError(
                absl::StrCat("change ", i, ": no value left in the column of field ", f.name()));
          }
          Cursor& cursor = it->second;
          if (!f.mutable_value()->ParseFromString(cursor.column->values(cursor.next++))) {
            return absl::DataLossError(
                absl::StrCat("change ", i, ": a value of field ", f.name(), " does not parse"));
          }
        }
      }
      c.SerializeToString(changes[b].Add());
    }
  }
  for (const auto& [name, cursor] : cursors) {
    if (cursor.next != cursor.column->values_size()) {
      return absl::DataLossError(absl::StrCat("the value column of field ", name, " holds ",
                                              cursor.column->values_size() - cursor.next,
                                              " values no change takes"));
    }
  }
  // The headers' hashes, computed again where they were left out.
  std::vector<std::string> headers;
  if (cols.hashes_elided()) {
    for (size_t b = 0; b < changes.size(); ++b) {
      BatchHeader& h = parsed[b];
      if (!h.body_hash().empty() || (b > 0 && !h.prev_hash().empty())) {
        return absl::DataLossError(
            absl::StrCat("batch ", b, " of the frame carries a hash its columns say was left out"));
      }
      h.set_body_hash(BodyHash(changes[b], hasher));
      if (b > 0) h.set_prev_hash(hasher.Sha256(headers.back()));
      h.SerializeToString(&headers.emplace_back());
    }
  }
  for (size_t b = 0; b < changes.size(); ++b) {
    auto* batch = frame.mutable_batches(static_cast<int>(b));
    if (batch->hollow()) continue;
    *batch->mutable_changes() = std::move(changes[b]);
    if (!headers.empty()) batch->set_header(std::move(headers[b]));
  }
  frame.clear_columns();
  return absl::OkStatus();
}

}  // namespace interco::replication
