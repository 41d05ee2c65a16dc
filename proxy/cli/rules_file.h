// `--rules FILE`: a rule file read from disk and parsed (proxy/fault/rule.h parses; the
// reading, with its limits, is the command line's).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proxy/fault/rule.h"

namespace wrench::proxy {

// Reads and parses a rule file (ParseRules). Refuses what is not a regular file
// (a directory, a device, a pipe) and a file larger than kMaxRulesFileBytes. Errors
// name the file; one from a system call says its errno text and carries its errno.
inline constexpr size_t kMaxRulesFileBytes = size_t{1} << 20;
absl::StatusOr<std::vector<Rule>> LoadRulesFile(const std::string& path);

}  // namespace wrench::proxy
