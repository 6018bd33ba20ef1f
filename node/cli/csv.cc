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

bool IsValidUtf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    size_t n = 0;
    uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= text.size()) return false;
    for (size_t k = 1; k <= n; ++k) {
      const unsigned char d = static_cast<unsigned char>(text[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    // Overlong forms, surrogates and code points past U+10FFFF.
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
      return false;
    }
    i += n + 1;
  }
  return true;
}

}  // namespace interco::cli
