#include "node/cli/csv.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace interco::cli {
namespace {

constexpr size_t kBufferBytes = 1 << 16;
constexpr int kEnd = -1;

}  // namespace

CsvReader::CsvReader(std::istream& in) : in_(in), buffer_(kBufferBytes) {}

bool CsvReader::Fill() {
  if (!in_) return false;
  in_.read(buffer_.data(), static_cast<std::streamsize>(buffer_.size()));
  len_ = static_cast<size_t>(in_.gcount());
  pos_ = 0;
  if (!started_) {
    started_ = true;
    if (len_ >= 3 && buffer_[0] == '\xEF' && buffer_[1] == '\xBB' && buffer_[2] == '\xBF') {
      pos_ = 3;
    }
  }
  return pos_ < len_;
}

int CsvReader::Peek() {
  if (pos_ == len_ && !Fill()) return kEnd;
  return static_cast<unsigned char>(buffer_[pos_]);
}

int CsvReader::Get() {
  if (pos_ == len_ && !Fill()) return kEnd;
  return static_cast<unsigned char>(buffer_[pos_++]);
}

absl::StatusOr<bool> CsvReader::Next(std::vector<std::string>& row) {
  row.clear();
  // Skip empty lines.
  for (;;) {
    const int c = Peek();
    if (c == kEnd) return false;
    if (c == '\n') {
      Get();
      ++line_;
    } else if (c == '\r') {
      Get();
      if (Peek() == '\n') Get();
      ++line_;
    } else {
      break;
    }
  }
  record_line_ = line_;
  std::string field;
  for (;;) {
    int c = Get();
    if (c == '"') {
      // Quoted field, up to the closing quote.
      const int64_t opened = line_;
      for (;;) {
        c = Get();
        if (c == kEnd) {
          return absl::InvalidArgumentError(absl::StrCat(
              "line ", opened, ": quoted field not closed before the end of the file"));
        }
        if (c == '"') {
          if (Peek() != '"') break;
          Get();
        } else if (c == '\n') {
          ++line_;
        }
        field.push_back(static_cast<char>(c));
      }
      c = Get();
      if (c != ',' && c != '\n' && c != '\r' && c != kEnd) {
        return absl::InvalidArgumentError(
            absl::StrCat("line ", line_, ": unexpected character after a closing quote"));
      }
    } else {
      while (c != ',' && c != '\n' && c != '\r' && c != kEnd) {
        field.push_back(static_cast<char>(c));
        c = Get();
      }
    }
    row.push_back(std::move(field));
    field.clear();
    if (c == ',') continue;
    if (c == '\r' && Peek() == '\n') Get();
    if (c != kEnd) ++line_;
    return true;
  }
}


}  // namespace interco::cli
