// Steering connections the kernel would accept into the TUN: nftables DNAT,
// in one table of wrench's own, rewrites TCP connections arriving for a listen address
// outside the TUN subnet (a host address, or every non-loopback local address for
// 0.0.0.0) to a front inside it, so wrench's own endpoint terminates their client leg
// and segment rules act on it. See README, "Coming from Toxiproxy".
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "stack/ip.h"

namespace wrench::proxy {

// The table `ip wrench_<TUN>`: two maps of listen addresses to fronts, read by rules
// in the prerouting hook (other hosts and namespaces) and the output hook (this
// host's own clients). Loopback destinations are never rewritten: the kernel drops a
// packet from 127.0.0.0/8 that leaves through another device. Every call is one
// libnftables netlink exchange (milliseconds): made when a proxy starts or stops.
class Dnat {
 public:
  // Creates the table (replacing one a wrench that died left behind) and makes the
  // kernel take wrench's replies out of the TUN: loose rp_filter on it, and forwarding
  // for connections of other hosts. When forwarding was off, wrench turns it on and
  // adds a filter that forwards nothing but DNATed connections to and from the TUN,
  // so the host routes nothing it did not before. The error says why DNAT cannot be
  // used (no CAP_NET_ADMIN, no nftables in the kernel, wrench built without it).
  static absl::StatusOr<std::unique_ptr<Dnat>> Open(const std::string& tun_name);
  ~Dnat();  // deletes the table; puts ip_forward back
  Dnat(const Dnat&) = delete;
  Dnat& operator=(const Dnat&) = delete;

  // Connections to listen:port (an IPv4 address of this host; 0.0.0.0 for every
  // local address but loopback's) go to front:front_port from now on.
  absl::Status Add(const stack::IpAddress& listen, uint16_t port, const stack::IpAddress& front, uint16_t front_port);
  // Stops steering listen:port; connections already steered keep their translation.
  absl::Status Remove(const stack::IpAddress& listen, uint16_t port);

  const std::string& table() const { return table_; }

 private:
  class Nft;
  Dnat(std::unique_ptr<Nft> nft, std::string table, std::string tun);
  std::unique_ptr<Nft> nft_;
  std::string table_;
  std::string tun_;
  bool restore_ip_forward_ = false;
};

}  // namespace wrench::proxy
