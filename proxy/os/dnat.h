// Steering connections the kernel would accept into the TUN: nftables DNAT,
// in one table of wrench's own, rewrites TCP connections arriving for a listen address
// outside the TUN subnet (a host address, or every non-loopback local address for
// 0.0.0.0) to a front inside it, so wrench's own endpoint terminates their client leg
// and segment rules act on it. See README, "Coming from Toxiproxy".
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "stack/ip.h"

namespace wrench::proxy {

// The table `ip wrench_<TUN>` (and its twin `ip6 wrench_<TUN>` for IPv6): two maps of
// listen addresses to fronts, read by rules
// in the prerouting hook (other hosts and namespaces) and the output hook (this
// host's own clients). Loopback destinations are never rewritten: the kernel drops a
// packet from 127.0.0.0/8 that leaves through another device. Every call is one
// libnftables netlink exchange (milliseconds): made when a proxy starts or stops.
class Dnat {
 public:
  // Creates the table (replacing one a wrench that died left behind) and makes the
  // kernel take wrench's replies out of the TUN: loose rp_filter on it, and forwarding
  // for connections of other hosts (ip_forward, turned on when it was off). The table's
  // forward chain accepts the DNATed connections to and from the TUN and drops
  // nothing: every other forwarded packet is left to the host's own policy. Each
  // sysctl's value is written to the host record (below) before it is changed, so a
  // wrench that dies without its destructor is undone by the next start or `wrench
  // cleanup`. The error says why DNAT cannot be used (no CAP_NET_ADMIN, no nftables in
  // the kernel, wrench built without it).
  static absl::StatusOr<std::unique_ptr<Dnat>> Open(const std::string& tun_name);
  ~Dnat();  // deletes the table, puts the sysctls back, removes the record
  Dnat(const Dnat&) = delete;
  Dnat& operator=(const Dnat&) = delete;

  // Connections to listen:port (an address of this host; 0.0.0.0 for every local
  // IPv4 address but loopback's, :: for every IPv6 one but ::1 and link-local ones)
  // go to front:front_port, of the same IP version, from now on. IPv6 listen
  // addresses go into the table's IPv6 twin (table6()).
  absl::Status Add(const stack::IpAddress& listen, uint16_t port, const stack::IpAddress& front,
                   uint16_t front_port);
  // Stops steering listen:port; connections already steered keep their translation.
  absl::Status Remove(const stack::IpAddress& listen, uint16_t port);

  const std::string& table() const { return table_; }
  // "ip6 wrench_<TUN>": the same maps and chains for IPv6, created and deleted with
  // the IPv4 table (a clean-up after a dead run deletes both).
  std::string table6() const;
  // OK when the IPv6 table exists; else why not (no IPv6 NAT in the kernel).
  const absl::Status& ipv6() const { return ipv6_; }

 private:
  class Nft;
  Dnat(std::unique_ptr<Nft> nft, std::string table, std::string tun);
  std::unique_ptr<Nft> nft_;
  std::string table_;
  std::string tun_;
  std::string record_path_;  // the host record, once written
  absl::Status ipv6_ = absl::FailedPreconditionError("no IPv6 table");
};

// The host record: what a running wrench changed on the host, one file per TUN and
// network namespace in RunDirectory(), written atomically (a new file renamed over
// the old) before each change. It names the process (PID and start time), the network
// namespace, the TUN, the nftables table, and each sysctl with the value it had.
// Every operation on records holds an flock on RunDirectory()/lock.

// $WRENCH_RUN_DIR, or /run/wrench.
std::string RunDirectory();

// What a clean-up did, one line each ("restored net.ipv4.ip_forward to 0 (wrench0,
// pid 123 is gone)"); also what it left alone and why.
struct CleanupReport {
  std::vector<std::string> done;     // removed or restored
  std::vector<std::string> skipped;  // left alone, with the reason
};

// Undoes what wrench runs that are gone left behind in the calling thread's network
// namespace: for each record whose process is gone, restores its sysctls (a
// device's only while the device exists; a host-wide one is handed to a live run's
// record when another wrench still needs it) and deletes its table; then deletes
// every table `ip wrench_*` whose TUN no longer exists and that no live run
// records. With `only_tun`, records and tables of that TUN alone. Records of other
// network namespaces are never touched. A TUN device vanishes with the process that
// created it (wrench never makes one persistent), and its routes and addresses with
// it, so there is none to remove. Errors are for the user (no privilege, a record
// that cannot be read).
absl::StatusOr<CleanupReport> CleanUpAfterDeadRuns(
    std::optional<std::string> only_tun = std::nullopt);

}  // namespace wrench::proxy
