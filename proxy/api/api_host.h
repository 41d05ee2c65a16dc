// What the HTTP APIs (control_api.h, toxiproxy.h) need of the run that serves them:
// its loop, its relay and fault engine, TUN mappings and DNAT, and the checks a rule
// must pass. proxy/app/service.h implements it; api/ knows nothing above this.
#pragma once

#include <cstdint>
#include <string>

#include <boost/asio/io_context.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proxy/fault/fault_engine.h"
#include "proxy/fault/rule.h"
#include "proxy/os/dnat.h"
#include "proxy/relay/proxy.h"
#include "stack/ip.h"

namespace wrench::proxy {

class ApiHost {
 public:
  virtual ~ApiHost() = default;

  // wrench's version, for GET /version.
  virtual const char* version() const = 0;
  virtual boost::asio::io_context& io() = 0;
  virtual Proxy& proxy() = 0;
  virtual FaultEngine& engine() = 0;
  // The run's --seed, from which the APIs draw their own generators.
  virtual uint64_t seed() const = 0;
  // One line to the run's log (stderr in the CLI).
  virtual void Log(const std::string& line) const = 0;
  // --net as "10.89.0.0/24", and the kernel's address in it.
  virtual std::string TunSubnet() const = 0;
  virtual stack::IpAddress kernel_address() const = 0;
  // --net6's kernel address; nullopt when the TUN is IPv4 only.
  virtual std::optional<stack::IpAddress> kernel_address6() const = 0;

  // A proxy on the TUN: the front is checked as --map's are (`what` names it in
  // errors), then mapped.
  virtual absl::Status AddMapping(Mapping m, absl::string_view what) = 0;
  virtual bool RemoveMapping(uint64_t scope) = 0;
  // Inside --net or --net6: reached through the TUN.
  virtual bool InTunSubnet(const stack::IpAddress& addr) const = 0;
  // nftables DNAT into the TUN, set up on first use; the error says why it is
  // unavailable.
  virtual absl::StatusOr<Dnat*> dnat() = 0;
  // The front that DNATed connections reach.
  virtual stack::IpAddress DnatFront() const = 0;
  // The front that DNATed IPv6 connections reach; nullopt when the TUN is IPv4 only.
  virtual std::optional<stack::IpAddress> DnatFront6() const = 0;
  // Whether `rule` can fire on the legs of this run (`what` names it in the error).
  virtual absl::Status CheckRuleCanFire(const Rule& rule, absl::string_view what) const = 0;
};

}  // namespace wrench::proxy
