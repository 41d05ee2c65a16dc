// Shared helpers for the wire-format tests (tcp_wire_test, segment_test): an error
// matcher, a generator of random representable segments, and a hand-checked Linux
// SYN datagram.
#pragma once

#include <cstdint>
#include <deque>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "stack/ip.h"
#include "stack/segment.h"
#include "stack/tcp_wire.h"

namespace wrench::stack::testing {

// An InvalidArgument status (or StatusOr) whose message contains `text`.
MATCHER_P(IsErrorWith, text, "") {
  absl::Status s;
  if constexpr (std::is_same_v<std::decay_t<arg_type>, absl::Status>) {
    s = arg;
  } else {
    s = arg.status();
  }
  if (s.ok()) {
    *result_listener << "is OK";
    return false;
  }
  *result_listener << "status: " << s;
  return s.code() == absl::StatusCode::kInvalidArgument &&
         s.message().find(text) != absl::string_view::npos;
}

// 10.0.0.1:45678 > 10.0.0.2:80, the SYN Linux 6.x sends for connect(): seq
// 0x6f1e2d3c, win 64240, <mss 1460,sackOK,TS val 0x9a3b2c1d ecr 0,nop,wscale 7>.
// Both checksums written by hand (and checked by the parser).
inline const std::vector<uint8_t>& LinuxSynV4() {
  static const std::vector<uint8_t> d = {
      0x45, 0x00, 0x00, 0x3c, 0x5c, 0x3a, 0x40, 0x00, 0x40, 0x06, 0xca, 0x7f,
      0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02, 0xb2, 0x6e, 0x00, 0x50,
      0x6f, 0x1e, 0x2d, 0x3c, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0,
      0x23, 0x9b, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a,
      0x9a, 0x3b, 0x2c, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
  };
  return d;
}

// The matching SYN-ACK over IPv6: [fd00::2]:80 > [fd00::1]:45678, seq 0x01020304,
// ack 0x6f1e2d3d, win 65160, flow label 0x3a2b1,
// <mss 1420,sackOK,TS val 0x11223344 ecr 0x9a3b2c1d,nop,wscale 7>.
inline const std::vector<uint8_t>& LinuxSynAckV6() {
  static const std::vector<uint8_t> d = {
      0x60, 0x03, 0xa2, 0xb1, 0x00, 0x28, 0x06, 0x40, 0xfd, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
      0xfd, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x00, 0x00, 0x00, 0x01, 0x00, 0x50, 0xb2, 0x6e, 0x01, 0x02, 0x03, 0x04,
      0x6f, 0x1e, 0x2d, 0x3d, 0xa0, 0x12, 0xfe, 0x88, 0xf1, 0xab, 0x00, 0x00,
      0x02, 0x04, 0x05, 0x8c, 0x04, 0x02, 0x08, 0x0a, 0x11, 0x22, 0x33, 0x44,
      0x9a, 0x3b, 0x2c, 0x1d, 0x01, 0x03, 0x03, 0x07,
  };
  return d;
}

// Makes random segments that EmitSegment can represent; owns the bytes their
// spans (payload, raw option data, IPv4 options) point into.
class RandomSegments {
 public:
  explicit RandomSegments(uint32_t seed) : rng_(seed) {}

  uint32_t Next() { return static_cast<uint32_t>(rng_()); }

  absl::Span<const uint8_t> Bytes(size_t n) {
    auto& v = store_.emplace_back(n);
    for (auto& b : v) b = static_cast<uint8_t>(rng_());
    return v;
  }

  // Option kinds the parser does not interpret (it keeps them as RawOption).
  uint8_t UnknownKind() {
    static constexpr uint8_t kKinds[] = {6, 7, 9, 19, 28, 29, 30, 34, 69, 200, 253, 254};
    return kKinds[Next() % std::size(kKinds)];
  }

  TcpOptions Options() {
    TcpOptions o;
    if (Next() % 2) o.mss = static_cast<uint16_t>(Next());
    if (Next() % 2) o.window_scale = static_cast<uint8_t>(Next() % 15);
    o.sack_permitted = Next() % 2;
    if (Next() % 2) o.timestamps = Timestamps{Next(), Next()};
    o.sack_count = static_cast<uint8_t>(Next() % 5);
    for (size_t k = 0; k < o.sack_count; ++k) o.sack[k] = {SeqNum(Next()), SeqNum(Next())};
    o.raw_count = static_cast<uint8_t>(Next() % 5);
    for (size_t k = 0; k < o.raw_count; ++k) o.raw[k] = {UnknownKind(), Bytes(Next() % 7)};
    // Shed what does not fit in 40 bytes, raw options first, then SACK blocks.
    while (o.EmittedLen() > 40 && o.raw_count > 0) o.raw[--o.raw_count] = {};
    while (o.EmittedLen() > 40 && o.sack_count > 0) o.sack[--o.sack_count] = {};
    return o;
  }

  TcpRepr Tcp(size_t max_payload = 1460) {
    TcpRepr r;
    r.src_port = static_cast<uint16_t>(Next());
    r.dst_port = static_cast<uint16_t>(Next());
    r.seq = SeqNum(Next());
    r.ack = SeqNum(Next());
    r.flags = TcpFlags(static_cast<uint8_t>(Next()));
    r.window = static_cast<uint16_t>(Next());
    r.urgent = static_cast<uint16_t>(Next());
    if (Next() % 4 != 0) r.options = Options();
    r.payload = Bytes(Next() % 3 == 0 ? 0 : Next() % (max_payload + 1));
    return r;
  }

  Segment V4() {
    Ipv4Repr ip;
    ip.src = IpAddress::V4(Next());
    ip.dst = IpAddress::V4(Next());
    ip.dscp_ecn = static_cast<uint8_t>(Next());
    ip.ident = static_cast<uint16_t>(Next());
    ip.dont_fragment = Next() % 2;
    ip.ttl = static_cast<uint8_t>(Next());
    if (Next() % 3 == 0) ip.options = Bytes(4 * (1 + Next() % 10));
    Segment s{ip, Tcp()};
    std::get<Ipv4Repr>(s.ip).payload_len =
        static_cast<uint16_t>(s.tcp.header_len() + s.tcp.payload.size());
    return s;
  }

  Segment V6() {
    Ipv6Repr ip;
    std::array<uint8_t, 16> a;
    for (auto& b : a) b = static_cast<uint8_t>(Next());
    ip.src = IpAddress::V6(a);
    for (auto& b : a) b = static_cast<uint8_t>(Next());
    ip.dst = IpAddress::V6(a);
    ip.traffic_class = static_cast<uint8_t>(Next());
    ip.flow_label = Next() & 0xfffff;
    ip.hop_limit = static_cast<uint8_t>(Next());
    Segment s{ip, Tcp()};
    std::get<Ipv6Repr>(s.ip).payload_len =
        static_cast<uint16_t>(s.tcp.header_len() + s.tcp.payload.size());
    return s;
  }

 private:
  std::mt19937 rng_;
  std::deque<std::vector<uint8_t>> store_;  // deque: growth never moves elements
};

}  // namespace wrench::stack::testing
