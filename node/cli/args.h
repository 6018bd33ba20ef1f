// Splitting of the command line between Abseil's global flags (--addr, --tls_dir,
// --output, --timeout) and the options of the subcommands (--where, --map, ...).
//
// Subcommand options may be repeated (--where a=1 --where b=2), which Abseil flags
// cannot express, so they are taken out of argv before absl::ParseCommandLine sees it.
// Both kinds may appear anywhere before a "--", after which every argument is
// positional. An unknown flag is a usage error (exit status 2), detected here rather
// than by Abseil, which would exit with status 1.
#ifndef INTERCO_NODE_CLI_ARGS_H_
#define INTERCO_NODE_CLI_ARGS_H_

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace interco::cli {

// The subcommand options found on the command line, in order.
class CommandOptions {
 public:
  void Add(std::string name, std::string value);

  bool Has(std::string_view name) const;
  // The value of a single-valued option, or `fallback` when absent.
  std::string Get(std::string_view name, std::string_view fallback = "") const;
  // Every value of a repeatable option, in command-line order.
  std::vector<std::string> GetAll(std::string_view name) const;
  // Whether a switch (--allow_missing, --from_oldest) is on.
  bool GetSwitch(std::string_view name) const { return Get(name) == "true"; }
  // A whole number in [min, max], or `fallback` when absent. Usage error otherwise.
  absl::StatusOr<int64_t> GetInt(std::string_view name, int64_t fallback, int64_t min,
                                 int64_t max) const;

  // Usage error naming the first option that `command` does not take.
  absl::Status CheckAllowed(std::string_view command,
                            const std::vector<std::string_view>& allowed) const;

 private:
  std::vector<std::pair<std::string, std::string>> values_;
};

struct SplitCommandLine {
  // argv for absl::ParseCommandLine: the program name, global flags and positionals.
  std::vector<char*> absl_argv;
  CommandOptions options;
  // --help, -h or --helpshort was given.
  bool help = false;
  // --version was given.
  bool version = false;
};

// Takes the subcommand options out of argv. Usage errors: unknown flag, missing value,
// non-repeatable option given twice, malformed --timeout.
absl::StatusOr<SplitCommandLine> SplitArgs(int argc, char** argv);

// Splits "name=value" at the first '='; usage error naming `option` if there is none
// or the name is empty.
absl::StatusOr<std::pair<std::string, std::string>> SplitAssignment(std::string_view option,
                                                                    std::string_view text);

}  // namespace interco::cli

#endif  // INTERCO_NODE_CLI_ARGS_H_
