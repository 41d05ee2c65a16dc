// --map FRONT=UPSTREAM (mapping.h).
#include "proxy/relay/mapping.h"

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "proxy/os/address.h"
#include "proxy/os/host_lookup.h"

namespace wrench::proxy {

using stack::IpAddress;

absl::StatusOr<Mapping> ParseMapping(absl::string_view text) {
  std::vector<absl::string_view> sides = absl::StrSplit(text, absl::MaxSplits('=', 1));
  if (sides.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("--map \"", text, "\": expected FRONT_IP:PORT=UPSTREAM_HOST:PORT"));
  }
  auto front = SplitHostPort(sides[0], "--map front");
  if (!front.ok()) return front.status();
  auto up = SplitHostPort(sides[1], "--map upstream");
  if (!up.ok()) return up.status();
  for (auto [side, what] : {std::pair{sides[0], "front"}, std::pair{sides[1], "upstream"}}) {
    if (absl::StartsWith(side, ":")) {
      return absl::InvalidArgumentError(
          absl::StrCat("--map ", what, " \"", side, "\": expected HOST:PORT"));
    }
  }
  Mapping m;
  m.text = std::string(text);
  auto fa = IpAddress::Parse(front->host);
  if (!fa) {
    return absl::InvalidArgumentError(
        absl::StrCat("--map \"", text, "\": front \"", front->host, "\" is not an IP address"));
  }
  m.front_addr = *fa;
  m.front_port = front->port;
  m.upstream_host = up->host;
  m.upstream_port = up->port;
  if (auto ua = IpAddress::Parse(up->host)) {
    m.upstream_addr = *ua;
    return m;
  }
  // A host name: resolve it now, once (the event loop never blocks on DNS).
  auto looked_up = LookUpHost(up->host);
  if (!looked_up.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--map \"", text, "\": cannot resolve \"",
                                                   up->host, "\": ", looked_up.status().message()));
  }
  m.upstream_addr = ToIpAddress(*looked_up);
  return m;
}

}  // namespace wrench::proxy
