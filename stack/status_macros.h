// Small helpers for absl::Status plumbing. Debian's abseil (20220623) ships no
// status macros, so the project keeps these two here rather than repeating the
// if-not-ok dance at every boundary.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define WRENCH_CONCAT_INNER(a, b) a##b
#define WRENCH_CONCAT(a, b) WRENCH_CONCAT_INNER(a, b)

#define RETURN_IF_ERROR(expr)                      \
  do {                                             \
    ::absl::Status wrench_status_ = (expr);        \
    if (!wrench_status_.ok()) return wrench_status_; \
  } while (0)

#define ASSIGN_OR_RETURN(lhs, expr) \
  ASSIGN_OR_RETURN_IMPL(WRENCH_CONCAT(wrench_statusor_, __LINE__), lhs, expr)

#define ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.ok()) return tmp.status();         \
  lhs = std::move(tmp).value()
