// Host names in wrench's addresses (--map, --api, Toxiproxy's listen and upstream),
// looked up once when they are given, never on the event loop.
#pragma once

#include <string>

#include <boost/asio/ip/address.hpp>

#include "absl/status/statusor.h"

namespace wrench::proxy {

// An IP literal as it is; "localhost" and any name under ".localhost" as 127.0.0.1
// without asking the resolver (RFC 6761 §6.3), so they work where /etc/hosts is
// missing, as in a bare container; any other name through the system resolver,
// IPv4 first when it has both (all the TUN speaks, and what most clients mean).
// The error carries the resolver's message.
absl::StatusOr<boost::asio::ip::address> LookUpHost(const std::string& host);

}  // namespace wrench::proxy
