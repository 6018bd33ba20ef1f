// Plain-text output: aligned columns with a header line, and "key: value" lines.
// No colors, no borders; widths count Unicode code points, so accented names align.
#ifndef INTERCO_NODE_CLI_TABLE_H_
#define INTERCO_NODE_CLI_TABLE_H_

#include <cstddef>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace interco::cli {

class Table {
 public:
  explicit Table(std::vector<std::string> header);

  // Right-aligns column `column` (for numbers).
  void AlignRight(size_t column);
  // Adds a row; missing cells are empty, extra cells are dropped. An empty row prints
  // as an empty line.
  void AddRow(std::vector<std::string> row);
  size_t rows() const { return rows_.size(); }

  // Columns separated by two spaces; no trailing spaces.
  void Print(std::ostream& out) const;

 private:
  std::vector<std::string> header_;
  std::vector<bool> right_;
  std::vector<std::vector<std::string>> rows_;
};

// Prints "key:  value" lines with the values aligned.
void PrintKeyValues(std::ostream& out,
                    const std::vector<std::pair<std::string, std::string>>& lines);

// Number of code points of UTF-8 text (invalid bytes count one each).
size_t DisplayWidth(std::string_view text);
// At most `max_width` code points; text that is cut ends with "…".
std::string Truncate(std::string_view text, size_t max_width);
// Control characters (newlines, tabs, ...) escaped as \n, \t, \xHH, so that the text
// stays on one line.
std::string OneLine(std::string_view text);

}  // namespace interco::cli

#endif  // INTERCO_NODE_CLI_TABLE_H_
