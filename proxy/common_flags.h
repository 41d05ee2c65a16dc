// Flags that several subcommands share (abseil flags are process-wide, so each is
// defined once, in cmd_proxy.cc, and declared here for the others).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "proxy/cli.h"

ABSL_DECLARE_FLAG(uint64_t, seed);
ABSL_DECLARE_FLAG(wrench::proxy::Repeated, rule);
ABSL_DECLARE_FLAG(wrench::proxy::Repeated, rules);
// linux or rfc (stack/tcp_profile.h), for every command that runs endpoints.
ABSL_DECLARE_FLAG(std::string, tcp_profile);
// `wrench ladder`'s (cmd_ladder.cc).
ABSL_DECLARE_FLAG(std::string, format);
ABSL_DECLARE_FLAG(uint64_t, conn);
ABSL_DECLARE_FLAG(std::string, out);

namespace wrench::proxy {
struct ServiceOptions;
// Fills what `proxy` and `exec` share from their flags (defined in cmd_proxy.cc).
absl::Status ServiceOptionsFromFlags(ServiceOptions& o);
}  // namespace wrench::proxy
