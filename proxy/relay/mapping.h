// A front address mapped to an upstream: --map, and the control API's proxies.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proxy/fault/stream_toxics.h"
#include "stack/ip.h"
#include "stack/time.h"

namespace wrench::proxy {

// FRONT_IP:PORT=UPSTREAM_HOST:PORT.
struct Mapping {
  stack::IpAddress front_addr;
  uint16_t front_port = 0;
  std::string upstream_host;
  stack::IpAddress upstream_addr;  // resolved at start-up
  uint16_t upstream_port = 0;
  // upstream_host is a name looked up at each connection (HostResolver), so one that
  // does not resolve yet is no error until a client connects; upstream_addr is unset.
  bool resolve_per_connection = false;
  std::string text;
  // A control-API proxy (proxy/api/control_api.h): its scope, which its connections' segments
  // carry to the fault engine (SegmentMeta::scope), and the stream toxics each of its
  // connections starts with. Both unset for --map.
  uint64_t scope = 0;
  std::function<std::unique_ptr<ConnectionToxics>(stack::Instant)> toxics;
};
// Parses "10.89.0.2:80=127.0.0.1:8080" (IPv6 in brackets: "[fd00::2]:80=..."). The
// upstream host may be a name; it is resolved here, once, before the loop starts.
absl::StatusOr<Mapping> ParseMapping(absl::string_view text);

}  // namespace wrench::proxy
