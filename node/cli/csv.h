// A streaming reader of RFC 4180 CSV: comma-separated fields, records ended by CRLF or
// LF, fields optionally quoted with '"' (a quoted field may hold commas, line breaks and
// doubled quotes ""). A UTF-8 byte order mark at the start is skipped, empty lines are
// skipped, and the last record may lack a line break. Leniencies: a quote inside an
// unquoted field is kept as a character. Not thread-safe.
#ifndef INTERCO_NODE_CLI_CSV_H_
#define INTERCO_NODE_CLI_CSV_H_

#include <cstdint>
#include <istream>
#include <string>
#include <string_view>

#include "replication/base/utf8.h"
#include <vector>

#include "absl/status/statusor.h"

namespace interco::cli {

class CsvReader {
 public:
  explicit CsvReader(std::istream& in);

  // Reads the next record into `row`. False at the end of the input. INVALID_ARGUMENT
  // naming the line for an unterminated quoted field or a character after a closing
  // quote.
  absl::StatusOr<bool> Next(std::vector<std::string>& row);

  // The line (1-based) on which the last record returned by Next starts.
  int64_t record_line() const { return record_line_; }

 private:
  int Peek();
  int Get();
  bool Fill();

  std::istream& in_;
  std::vector<char> buffer_;
  size_t pos_ = 0;
  size_t len_ = 0;
  bool started_ = false;
  int64_t line_ = 1;
  int64_t record_line_ = 0;
};


}  // namespace interco::cli

#endif  // INTERCO_NODE_CLI_CSV_H_
