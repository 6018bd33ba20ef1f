#include "node/cli/args.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "replication/base/strings.h"

namespace interco::cli {
namespace {

struct OptionSpec {
  std::string_view name;
  bool takes_value;
  bool repeatable;
};

// Options of the subcommands (see the usage text in main.cc).
constexpr OptionSpec kCommandOptions[] = {
    {"prefix", true, false},
    {"where", true, true},
    {"limit", true, false},
    {"etag", true, false},
    {"allow_missing", false, false},
    {"cursor", true, false},
    {"from_oldest", false, false},
    {"count", true, false},
    {"key", true, false},
    {"map", true, true},
    {"geo", true, true},
    {"set_separator", true, false},
    {"concurrency", true, false},
    {"where_column", true, true},
    {"out", true, false},
    {"ca", true, false},
    {"crl_dir", true, false},
    {"peer", true, false},
    {"dry_run", false, false},
};

// Abseil flags passed through to absl::ParseCommandLine; all take a value.
constexpr std::string_view kGlobalValueFlags[] = {
    "addr", "tls_dir", "output", "timeout", "flagfile", "fromenv", "tryfromenv", "undefok",
};

const OptionSpec* FindCommandOption(std::string_view name) {
  for (const OptionSpec& spec : kCommandOptions) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

bool IsGlobalValueFlag(std::string_view name) {
  return std::find(std::begin(kGlobalValueFlags), std::end(kGlobalValueFlags), name) !=
         std::end(kGlobalValueFlags);
}

absl::Status CheckTimeout(std::string_view text) {
  double seconds = 0;
  if (!absl::SimpleAtod(ToAbsl(text), &seconds) || !std::isfinite(seconds)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--timeout: \"", ToAbsl(text), "\" is not a number of seconds"));
  }
  return absl::OkStatus();
}

}  // namespace

void CommandOptions::Add(std::string name, std::string value) {
  values_.emplace_back(std::move(name), std::move(value));
}

bool CommandOptions::Has(std::string_view name) const {
  return std::any_of(values_.begin(), values_.end(),
                     [&](const auto& v) { return v.first == name; });
}

std::string CommandOptions::Get(std::string_view name, std::string_view fallback) const {
  for (const auto& [n, v] : values_) {
    if (n == name) return v;
  }
  return std::string(fallback);
}

std::vector<std::string> CommandOptions::GetAll(std::string_view name) const {
  std::vector<std::string> out;
  for (const auto& [n, v] : values_) {
    if (n == name) out.push_back(v);
  }
  return out;
}

absl::StatusOr<int64_t> CommandOptions::GetInt(std::string_view name, int64_t fallback, int64_t min,
                                               int64_t max) const {
  if (!Has(name)) return fallback;
  const std::string text = Get(name);
  int64_t value = 0;
  if (!absl::SimpleAtoi(text, &value) || value < min || value > max) {
    return absl::InvalidArgumentError(
        max == INT64_MAX
            ? absl::StrCat("--", ToAbsl(name), ": expected a whole number of at least ", min,
                           ", got \"", text, "\"")
            : absl::StrCat("--", ToAbsl(name), ": expected a whole number from ", min, " to ", max,
                           ", got \"", text, "\""));
  }
  return value;
}

absl::Status CommandOptions::CheckAllowed(std::string_view command,
                                          const std::vector<std::string_view>& allowed) const {
  for (const auto& [name, value] : values_) {
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", ToAbsl(command), "\" does not take --", name));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<SplitCommandLine> SplitArgs(int argc, char** argv) {
  SplitCommandLine out;
  if (argc > 0) out.absl_argv.push_back(argv[0]);
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--") {
      for (; i < argc; ++i) out.absl_argv.push_back(argv[i]);
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      out.absl_argv.push_back(argv[i]);
      continue;
    }
    std::string_view body = arg.substr(arg[1] == '-' ? 2 : 1);
    const size_t eq = body.find('=');
    const std::string_view name = body.substr(0, eq);
    const bool has_value = eq != std::string_view::npos;
    const std::string_view inline_value = has_value ? body.substr(eq + 1) : std::string_view();

    if (name == "help" || name == "h" || name == "helpshort") {
      out.help = true;
      continue;
    }
    if (name == "version") {
      out.version = true;
      continue;
    }
    if (name == "helpfull") {
      out.absl_argv.push_back(argv[i]);
      continue;
    }
    if (IsGlobalValueFlag(name)) {
      std::string_view value = inline_value;
      out.absl_argv.push_back(argv[i]);
      if (!has_value) {
        if (i + 1 >= argc) {
          return absl::InvalidArgumentError(absl::StrCat("--", ToAbsl(name), " needs a value"));
        }
        value = argv[++i];
        out.absl_argv.push_back(argv[i]);
      }
      if (name == "timeout") {
        if (absl::Status s = CheckTimeout(value); !s.ok()) return s;
      }
      continue;
    }
    const OptionSpec* spec = FindCommandOption(name);
    if (spec == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag ", ToAbsl(arg.substr(0, arg.size() - body.size())),
                       ToAbsl(name), " (run \"interco help\")"));
    }
    if (!spec->repeatable && out.options.Has(name)) {
      return absl::InvalidArgumentError(absl::StrCat("--", ToAbsl(name), " given twice"));
    }
    std::string value;
    if (spec->takes_value) {
      if (has_value) {
        value = std::string(inline_value);
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat("--", ToAbsl(name), " needs a value"));
      }
    } else {
      // A switch: --name, or --name=true|false.
      if (!has_value || inline_value == "true" || inline_value == "1") {
        value = "true";
      } else if (inline_value == "false" || inline_value == "0") {
        value = "false";
      } else {
        return absl::InvalidArgumentError(absl::StrCat(
            "--", ToAbsl(name), ": expected true or false, got \"", ToAbsl(inline_value), "\""));
      }
    }
    out.options.Add(std::string(name), std::move(value));
  }
  return out;
}

absl::StatusOr<std::pair<std::string, std::string>> SplitAssignment(std::string_view option,
                                                                    std::string_view text) {
  const size_t eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", ToAbsl(option), ": expected NAME=VALUE, got \"", ToAbsl(text), "\""));
  }
  return std::make_pair(std::string(text.substr(0, eq)), std::string(text.substr(eq + 1)));
}

}  // namespace interco::cli
