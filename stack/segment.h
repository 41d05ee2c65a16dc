// A whole TCP/IP datagram as the TUN device carries it: an IPv4 or IPv6 header and
// a TCP segment. The edge between bytes and the plain structs everything else uses.
#pragma once

#include <cstdint>
#include <ostream>
#include <variant>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "stack/ip.h"
#include "stack/tcp_wire.h"

namespace wrench::stack {

struct Segment {
  std::variant<Ipv4Repr, Ipv6Repr> ip;
  TcpRepr tcp;

  const IpAddress& src() const;
  const IpAddress& dst() const;
  bool is_v6() const { return ip.index() == 1; }
  uint8_t ttl() const;  // TTL or hop limit
  void set_ttl(uint8_t ttl);
  // IP header + TCP header + payload.
  size_t BufferLen() const;
  bool operator==(const Segment&) const = default;
};

struct ParseOptions {
  bool verify_checksums = true;
};

// Parses an IPv4 or IPv6 datagram carrying TCP. Refuses, with a reason: truncated
// headers, bad lengths, bad checksums, fragments, other protocols, unsupported
// IPv6 extension headers.
absl::StatusOr<Segment> ParseSegment(absl::Span<const uint8_t> datagram,
                                     ParseOptions opts = {});

// ParseSegment's IP layer: the IPv4 or IPv6 header, with the same refusals; on
// success *tcp is the IP payload (the TCP segment) and *ip the header.
absl::Status ParseIpLayer(absl::Span<const uint8_t> datagram, bool verify_checksum,
                          std::variant<Ipv4Repr, Ipv6Repr>* ip, absl::Span<const uint8_t>* tcp);

// A datagram from src to dst carrying `tcp`: an IPv4 header (with `ipv4_ident`) or
// an IPv6 one, as the addresses are.
Segment MakeSegment(const IpAddress& src, const IpAddress& dst, const TcpRepr& tcp,
                    uint16_t ipv4_ident = 0);

// What a CLOSED port answers to `seg` (RFC 9293 §3.10.7.1), addressed back to its
// sender: <SEQ=SEG.ACK><CTL=RST> if it had ACK, else
// <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>. (A RST gets no answer: callers check.)
Segment ClosedPortReset(const Segment& seg, uint16_t ipv4_ident = 0);

// Emits the datagram into `out` (at least seg.BufferLen() bytes), computing the IP
// payload length, the IPv4 header checksum and the TCP checksum. Returns bytes written.
absl::StatusOr<size_t> EmitSegment(const Segment& seg, absl::Span<uint8_t> out);

// "10.0.0.1:40000 > 10.0.0.2:80 S. 0:0(0) win 65535 <mss 1460>" (IPv6 addresses in
// brackets): the TCP one-liner of tcp_wire.h with the endpoints in front.
std::ostream& operator<<(std::ostream& os, const Segment& s);

}  // namespace wrench::stack
