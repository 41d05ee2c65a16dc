// Whole TCP/IP datagrams: dispatch on the IP version nibble, refuse what the proxy
// does not handle (fragments, other protocols), then hand the IP payload to the TCP
// parser; emit writes both headers and both checksums.
#include "stack/segment.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace wrench::stack {
namespace {

absl::Status NotTcp(uint8_t protocol) {
  return absl::InvalidArgumentError(absl::StrFormat("protocol %d is not TCP", protocol));
}

}  // namespace

const IpAddress& Segment::src() const {
  if (const auto* v4 = std::get_if<Ipv4Repr>(&ip)) return v4->src;
  return std::get<Ipv6Repr>(ip).src;
}

const IpAddress& Segment::dst() const {
  if (const auto* v4 = std::get_if<Ipv4Repr>(&ip)) return v4->dst;
  return std::get<Ipv6Repr>(ip).dst;
}

uint8_t Segment::ttl() const {
  if (const auto* v4 = std::get_if<Ipv4Repr>(&ip)) return v4->ttl;
  return std::get<Ipv6Repr>(ip).hop_limit;
}

void Segment::set_ttl(uint8_t ttl) {
  if (auto* v4 = std::get_if<Ipv4Repr>(&ip)) {
    v4->ttl = ttl;
  } else {
    std::get<Ipv6Repr>(ip).hop_limit = ttl;
  }
}

size_t Segment::BufferLen() const {
  size_t ip_len = std::visit([](const auto& h) { return h.header_len(); }, ip);
  return ip_len + tcp.header_len() + tcp.payload.size();
}

absl::Status ParseIpLayer(absl::Span<const uint8_t> datagram, bool verify_checksum,
                          std::variant<Ipv4Repr, Ipv6Repr>* ip, absl::Span<const uint8_t>* tcp) {
  if (datagram.empty()) return absl::InvalidArgumentError("empty datagram");
  int version = datagram[0] >> 4;
  if (version == 4) {
    auto& v4 = ip->emplace<Ipv4Repr>();
    absl::Status s = ParseIpv4Into(datagram, &v4, tcp, verify_checksum);
    if (!s.ok()) return s;
    // The proxy terminates TCP and does not reassemble (RFC 791 §3.2): a fragment
    // would reach the TCP parser as a partial segment.
    if (v4.more_fragments || v4.fragment_offset != 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "IPv4 fragment (offset %d, %s) not supported", v4.fragment_offset * 8,
          v4.more_fragments ? "more fragments" : "last fragment"));
    }
    if (v4.protocol != kIpProtoTcp) return NotTcp(v4.protocol);
  } else if (version == 6) {
    auto& v6 = ip->emplace<Ipv6Repr>();
    absl::Status s = ParseIpv6Into(datagram, &v6, tcp);
    if (!s.ok()) return s;
    if (v6.next_header != kIpProtoTcp) return NotTcp(v6.next_header);
  } else {
    return absl::InvalidArgumentError(
        absl::StrFormat("not an IP packet (version %d)", version));
  }
  return absl::OkStatus();
}

namespace {

// Fills *seg in place; ParseSegment builds it where it is returned.
absl::Status ParseInto(absl::Span<const uint8_t> datagram, ParseOptions opts, Segment* seg) {
  absl::Span<const uint8_t> payload;
  absl::Status s = ParseIpLayer(datagram, opts.verify_checksums, &seg->ip, &payload);
  if (!s.ok()) return s;
  return ParseTcpInto(payload, seg->src(), seg->dst(), &seg->tcp, opts.verify_checksums);
}

}  // namespace

absl::StatusOr<Segment> ParseSegment(absl::Span<const uint8_t> datagram, ParseOptions opts) {
  absl::StatusOr<Segment> result(absl::in_place);
  absl::Status s = ParseInto(datagram, opts, &*result);
  if (!s.ok()) result = std::move(s);
  return result;
}

absl::StatusOr<size_t> EmitSegment(const Segment& seg, absl::Span<uint8_t> out) {
  size_t tcp_len = seg.tcp.header_len() + seg.tcp.payload.size();
  size_t need = std::visit([](const auto& h) { return h.header_len(); }, seg.ip) + tcp_len;
  if (out.size() < need) {
    return absl::InvalidArgumentError(
        absl::StrFormat("output buffer too small (%d bytes, need %d)", out.size(), need));
  }
  size_t ip_len = 0;
  if (const auto* v4 = std::get_if<Ipv4Repr>(&seg.ip)) {
    if (v4->src.is_v6() || v4->dst.is_v6()) {
      return absl::InvalidArgumentError("IPv4 header with an IPv6 address");
    }
    // mutate: equivalent 40 (a multiple of 4 above 40 is above 41 too)
    if (v4->options.size() % 4 != 0 || v4->options.size() > 40) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "IPv4 options of %d bytes (need a multiple of 4, at most 40)", v4->options.size()));
    }
    if (v4->header_len() + tcp_len > 0xffff) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "datagram of %d bytes exceeds the IPv4 maximum 65535", v4->header_len() + tcp_len));
    }
    Ipv4Repr h = *v4;
    h.payload_len = static_cast<uint16_t>(tcp_len);
    ip_len = EmitIpv4(h, out);
  } else {
    const auto& v6 = std::get<Ipv6Repr>(seg.ip);
    if (!v6.src.is_v6() || !v6.dst.is_v6()) {
      return absl::InvalidArgumentError("IPv6 header with an IPv4 address");
    }
    if (tcp_len > 0xffff) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "TCP segment of %d bytes exceeds the IPv6 payload maximum 65535 (no jumbograms)",
          tcp_len));
    }
    Ipv6Repr h = v6;
    h.payload_len = static_cast<uint16_t>(tcp_len);
    ip_len = EmitIpv6(h, out);
  }
  auto written = EmitTcp(seg.tcp, seg.src(), seg.dst(), out.subspan(ip_len));
  if (!written.ok()) return written.status();
  return ip_len + *written;
}

std::ostream& operator<<(std::ostream& os, const Segment& s) {
  auto endpoint = [&os](const IpAddress& a, uint16_t port) {
    if (a.is_v6()) {
      os << '[' << a << "]:" << port;
    } else {
      os << a << ':' << port;
    }
  };
  endpoint(s.src(), s.tcp.src_port);
  os << " > ";
  endpoint(s.dst(), s.tcp.dst_port);
  return os << ' ' << s.tcp;
}

Segment MakeSegment(const IpAddress& src, const IpAddress& dst, const TcpRepr& tcp,
                    uint16_t ipv4_ident) {
  Segment s;
  if (src.is_v6()) {
    Ipv6Repr ip;
    ip.src = src;
    ip.dst = dst;
    s.ip = ip;
  } else {
    Ipv4Repr ip;
    ip.src = src;
    ip.dst = dst;
    ip.ident = ipv4_ident;
    s.ip = ip;
  }
  s.tcp = tcp;
  return s;
}

Segment ClosedPortReset(const Segment& seg, uint16_t ipv4_ident) {
  TcpRepr r;
  r.src_port = seg.tcp.dst_port;
  r.dst_port = seg.tcp.src_port;
  if (seg.tcp.flags.has(kAck)) {
    r.seq = seg.tcp.ack;
    r.flags = TcpFlags(kRst);
  } else {
    r.ack = seg.tcp.seq + seg.tcp.seg_len();
    r.flags = TcpFlags(kRst | kAck);
  }
  return MakeSegment(seg.dst(), seg.src(), r, ipv4_ident);
}

}  // namespace wrench::stack
