// Status propagation macros, defined once for the whole project.
//
// Abseil 20220623 (Debian 12) ships no status macros, so interco defines its own:
//   INTERCO_RETURN_IF_ERROR(expr);            // returns the status if not OK
//   INTERCO_ASSIGN_OR_RETURN(lhs, expr);      // unwraps a StatusOr or returns its status
#ifndef INTERCO_REPLICATION_BASE_STATUS_MACROS_H_
#define INTERCO_REPLICATION_BASE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define INTERCO_RETURN_IF_ERROR(expr)                    \
  do {                                                   \
    ::absl::Status interco_status_ = (expr);             \
    if (!interco_status_.ok()) return interco_status_;   \
  } while (false)

#define INTERCO_STATUS_CONCAT_INNER_(a, b) a##b
#define INTERCO_STATUS_CONCAT_(a, b) INTERCO_STATUS_CONCAT_INNER_(a, b)

#define INTERCO_ASSIGN_OR_RETURN(lhs, expr)                                        \
  INTERCO_ASSIGN_OR_RETURN_IMPL_(INTERCO_STATUS_CONCAT_(interco_statusor_, __LINE__), \
                                 lhs, expr)

#define INTERCO_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                   \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = std::move(statusor).value()

#endif  // INTERCO_REPLICATION_BASE_STATUS_MACROS_H_
