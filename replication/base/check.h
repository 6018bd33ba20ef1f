// Assertions for programmer errors. Never use them on anything derived from network or
// disk input: that is an operating error and gets an absl::Status.
//
// INTERCO_CHECK(cond) is always on; INTERCO_DCHECK(cond) only in builds without NDEBUG.
#ifndef INTERCO_REPLICATION_BASE_CHECK_H_
#define INTERCO_REPLICATION_BASE_CHECK_H_

#include <cstdio>
#include <cstdlib>

namespace interco::internal {
[[noreturn]] inline void CheckFailed(const char* file, int line, const char* cond) {
  std::fprintf(stderr, "%s:%d: check failed: %s\n", file, line, cond);
  std::abort();
}
}  // namespace interco::internal

#define INTERCO_CHECK(cond)                                            \
  do {                                                                 \
    if (!(cond)) ::interco::internal::CheckFailed(__FILE__, __LINE__, #cond); \
  } while (false)

#ifdef NDEBUG
#define INTERCO_DCHECK(cond) \
  do {                       \
  } while (false && (cond))
#else
#define INTERCO_DCHECK(cond) INTERCO_CHECK(cond)
#endif

#endif  // INTERCO_REPLICATION_BASE_CHECK_H_
