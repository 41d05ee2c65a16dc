// A TCP connection's four-tuple as the relays key their tables on the TUN: remote is
// the peer, local is our side.
#pragma once

#include <cstdint>
#include <utility>

#include "stack/ip.h"

namespace wrench::proxy {

struct TupleKey {
  stack::IpAddress remote_addr, local_addr;
  uint16_t remote_port = 0, local_port = 0;
  bool operator==(const TupleKey&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const TupleKey& k) {
    return H::combine(std::move(h), k.remote_addr, k.local_addr, k.remote_port, k.local_port);
  }
};

}  // namespace wrench::proxy
