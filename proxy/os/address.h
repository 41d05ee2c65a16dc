// HOST:PORT, the one spelling of a socket address on wrench's command line, in its APIs
// and in its logs: "host:port", "[v6]:port", and ":port" (every address, or a default
// the caller picks) where a caller allows it.
#pragma once

#include <cstdint>
#include <string>

#include <boost/asio/ip/tcp.hpp>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "stack/ip.h"

namespace wrench::proxy {

struct HostPort {
  std::string host;  // without brackets; "" for ":port"
  uint16_t port = 0;
};

// Splits `text`. Errors are InvalidArgument, for the user: `what "text": expected
// HOST:PORT` (or [IPV6]:PORT), or the port is not a number from `min_port` to 65535.
absl::StatusOr<HostPort> SplitHostPort(absl::string_view text, absl::string_view what,
                                       uint16_t min_port = 1);

// "10.0.0.1:80", "[::1]:80".
std::string FormatHostPort(const stack::IpAddress& addr, uint16_t port);
std::string FormatHostPort(const boost::asio::ip::address& addr, uint16_t port);
std::string FormatHostPort(const boost::asio::ip::tcp::endpoint& e);

// Asio's address as the stack's, and back.
stack::IpAddress ToIpAddress(const boost::asio::ip::address& a);
boost::asio::ip::address ToAsioAddress(const stack::IpAddress& a);

}  // namespace wrench::proxy
