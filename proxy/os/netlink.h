// Network configuration through rtnetlink (a NETLINK_ROUTE socket), never by running
// `ip`: link state and MTU, addresses and routes for the TUN device the proxy creates
// (docs/ARCHITECTURE.md "Proxy data flow"), and loopback in a fresh network namespace.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "stack/ip.h"

namespace wrench::proxy {

// Each call opens its own netlink socket, sends one request and waits (at most a few
// seconds) for the kernel's acknowledgement, so it acts in the network namespace the
// calling thread is in at that moment. Errors name the operation and, when the kernel
// gives one (extended ACK), its reason:
//   PermissionDenied  without CAP_NET_ADMIN ("... run as root")
//   NotFound          no interface of that name
//   AlreadyExists     the address or route is already there
//   InvalidArgument   a bad prefix length / MTU / name, before asking the kernel
//   other codes       the kernel's errno, mapped by absl::ErrnoToStatusCode
// and, when an errno is behind the error, ErrnoOf(status) (proxy/os/os_status.h) gives it.

// The interface's index (if_nametoindex); NotFound when there is none.
absl::StatusOr<int> InterfaceIndex(absl::string_view name);

// Sets or clears IFF_UP.
absl::Status SetLinkUp(absl::string_view name, bool up);

// Sets the link MTU (a TUN accepts 68..65535).
absl::Status SetLinkMtu(absl::string_view name, int mtu);

// Sets the link's transmit queue length (txqueuelen): for a TUN, how many datagrams
// the kernel queues for the reader before it drops.
absl::Status SetLinkTxQueueLen(absl::string_view name, uint32_t packets);

// Adds addr/prefix_len to the interface (IPv4 or IPv6). The kernel then routes the
// subnet into the interface once it is up. IPv6 addresses are added with NODAD so they
// are usable at once instead of tentative for a second.
absl::Status AddAddress(absl::string_view name, const stack::IpAddress& addr, int prefix_len);

// Adds a route to dst/prefix_len out of `ifname` in the main table: directly
// connected (scope link) without a gateway, via `gateway` with one. dst must have no
// bits set past prefix_len (the kernel refuses it otherwise).
absl::Status AddRoute(const stack::IpAddress& dst, int prefix_len, absl::string_view ifname,
                      std::optional<stack::IpAddress> gateway = std::nullopt);

// 0.0.0.0/0 (or ::/0 when ipv6) out of `ifname`, optionally via a gateway of the same
// family: what a program in a namespace needs to reach everything through the TUN.
absl::Status AddDefaultRoute(absl::string_view ifname, bool ipv6 = false,
                             std::optional<stack::IpAddress> gateway = std::nullopt);

// Whether the kernel's route lookup for `addr` ends in its own local table (the
// address is configured and accepted as a destination). An unreachable address is
// an error (ENETUNREACH), not false.
absl::StatusOr<bool> IsLocalAddress(const stack::IpAddress& addr);

// A route of the main table, or an address with its prefix, as the host has it
// configured.
struct IpPrefix {
  stack::IpAddress addr;  // the route's destination, or the address
  int prefix_len = 0;
  std::string ifname;  // the interface it is on ("" for a route without one)
};

using Ipv4Prefix = IpPrefix;

// Every IPv4 (or IPv6) route of the main routing table (a dump, RTM_GETROUTE), the
// default route included (prefix_len 0).
absl::StatusOr<std::vector<IpPrefix>> ListRoutes(bool ipv6);
absl::StatusOr<std::vector<IpPrefix>> ListIpv4Routes();
// Every IPv4 (or IPv6) address configured on any interface (a dump, RTM_GETADDR).
absl::StatusOr<std::vector<IpPrefix>> ListAddresses(bool ipv6);
absl::StatusOr<std::vector<IpPrefix>> ListIpv4Addresses();

// Sets "lo" up. A fresh network namespace has it down (its 127.0.0.1 and ::1 are
// configured but unreachable until then).
absl::Status BringUpLoopback();

}  // namespace wrench::proxy
