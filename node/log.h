// Minimal structured logging to stderr: "2026-11-28T14:00:00.123Z I message".
// Thread-safe (one write(2) per line).
#ifndef INTERCO_NODE_LOG_H_
#define INTERCO_NODE_LOG_H_

#include <string_view>

namespace interco::node::log {

enum class Level { kDebug, kInfo, kWarning, kError };

// Lines below this level are dropped. Default: kInfo.
void SetMinLevel(Level level);
void Write(Level level, std::string_view message);

inline void Info(std::string_view m) { Write(Level::kInfo, m); }
inline void Warning(std::string_view m) { Write(Level::kWarning, m); }
inline void Error(std::string_view m) { Write(Level::kError, m); }

}  // namespace interco::node::log

#endif  // INTERCO_NODE_LOG_H_
