// Timing profiles: where the RFCs leave a choice, which figures the endpoint takes.
// `linux` (the default) takes a current Linux kernel's, so that a leg of the proxy
// behaves like the kernel it stands in for; `rfc` takes the RFCs' conservative ones.
// docs/stack.md lists every figure of both.
#pragma once

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "stack/tcp_endpoint.h"

namespace wrench::stack {

enum class TcpProfile : uint8_t { kLinux, kRfc };

// "linux" or "rfc"; anything else is an error that names both.
absl::StatusOr<TcpProfile> ParseTcpProfile(absl::string_view name);
absl::string_view TcpProfileName(TcpProfile p);
// Sets the profile's timers, congestion control and recovery options in `cfg`,
// leaving buffers, options, addresses and the ISN generator as they are.
void ApplyProfile(TcpProfile p, TcpConfig& cfg);

}  // namespace wrench::stack
