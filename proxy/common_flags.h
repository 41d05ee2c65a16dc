// Flags that several subcommands share (abseil flags are process-wide, so each is
// defined once, in cmd_proxy.cc, and declared here for the others).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/time/time.h"

ABSL_DECLARE_FLAG(uint64_t, seed);
ABSL_DECLARE_FLAG(std::vector<std::string>, rule);
ABSL_DECLARE_FLAG(std::string, rules);
