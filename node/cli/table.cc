#include "node/cli/table.h"

#include <algorithm>

#include "absl/strings/str_format.h"

namespace interco::cli {
namespace {

bool IsContinuationByte(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

void Pad(std::ostream& out, size_t n) {
  for (size_t i = 0; i < n; ++i) out.put(' ');
}

}  // namespace

Table::Table(std::vector<std::string> header)
    : header_(std::move(header)), right_(header_.size(), false) {}

void Table::AlignRight(size_t column) {
  if (column < right_.size()) right_[column] = true;
}

void Table::AddRow(std::vector<std::string> row) {
  if (!row.empty()) row.resize(header_.size());
  rows_.push_back(std::move(row));
}

void Table::Print(std::ostream& out) const {
  std::vector<size_t> widths(header_.size(), 0);
  for (size_t c = 0; c < header_.size(); ++c) widths[c] = DisplayWidth(header_[c]);
  for (const auto& row : rows_) {
    for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], DisplayWidth(row[c]));
  }
  auto print_row = [&](const std::vector<std::string>& row) {
    // The last column with content: nothing is padded after it.
    size_t last = row.size();
    while (last > 0 && row[last - 1].empty()) --last;
    for (size_t c = 0; c < last; ++c) {
      if (c > 0) Pad(out, 2);
      const size_t gap = widths[c] - DisplayWidth(row[c]);
      if (right_[c]) Pad(out, gap);
      out << row[c];
      if (!right_[c] && c + 1 < last) Pad(out, gap);
    }
    out << '\n';
  };
  print_row(header_);
  for (const auto& row : rows_) print_row(row);
}

void PrintKeyValues(std::ostream& out,
                    const std::vector<std::pair<std::string, std::string>>& lines) {
  size_t width = 0;
  for (const auto& [key, value] : lines) width = std::max(width, DisplayWidth(key) + 1);
  for (const auto& [key, value] : lines) {
    out << key << ':';
    if (!value.empty()) {
      Pad(out, width - DisplayWidth(key) - 1 + 2);
      out << value;
    }
    out << '\n';
  }
}

size_t DisplayWidth(std::string_view text) {
  size_t n = 0;
  for (char c : text) {
    if (!IsContinuationByte(c)) ++n;
  }
  return n;
}

std::string Truncate(std::string_view text, size_t max_width) {
  if (DisplayWidth(text) <= max_width) return std::string(text);
  if (max_width == 0) return "";
  // Keep max_width - 1 code points, then the ellipsis.
  size_t kept = 0;
  size_t end = 0;
  for (; end < text.size(); ++end) {
    if (!IsContinuationByte(text[end])) {
      if (kept == max_width - 1) break;
      ++kept;
    }
  }
  return std::string(text.substr(0, end)) + "\xE2\x80\xA6";
}

std::string OneLine(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7F) {
      out += absl::StrFormat("\\x%02x", u);
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace interco::cli
