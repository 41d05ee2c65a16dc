// IP addresses and the IPv4 / IPv6 headers: a Repr of plain fields per version,
// parsed from and emitted into caller-owned bytes. Parsing validates every length
// once and never allocates; option bytes are views into the caller's buffer.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace wrench::stack {

inline constexpr uint8_t kIpProtoTcp = 6;

class IpAddress {
 public:
  constexpr IpAddress() = default;
  static IpAddress V4(uint32_t host_order);
  static IpAddress V4(std::array<uint8_t, 4> b);
  static IpAddress V6(std::array<uint8_t, 16> b);
  static IpAddress FromBytes(absl::Span<const uint8_t> b);  // 4 or 16 bytes
  // "10.0.0.1" or "fd00::1"; nullopt when it is neither.
  static std::optional<IpAddress> Parse(absl::string_view text);

  bool is_v6() const { return v6_; }
  // 4 or 16 bytes, network order.
  absl::Span<const uint8_t> bytes() const { return {b_.data(), v6_ ? 16u : 4u}; }
  uint32_t v4_host_order() const;
  std::string ToString() const;

  bool operator==(const IpAddress&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const IpAddress& a) {
    return H::combine(std::move(h), a.v6_, a.b_);
  }
  friend std::ostream& operator<<(std::ostream& os, const IpAddress& a) {
    return os << a.ToString();
  }

 private:
  std::array<uint8_t, 16> b_{};
  bool v6_ = false;
};

// RFC 791 header. The fragment fields are parsed and emitted here; a fragment is
// refused one layer up (stack/segment.h), since the proxy does not reassemble.
struct Ipv4Repr {
  IpAddress src, dst;       // both V4
  uint8_t dscp_ecn = 0;     // the former TOS byte
  uint16_t ident = 0;
  bool dont_fragment = true;
  bool more_fragments = false;
  uint16_t fragment_offset = 0;  // in 8-byte units
  uint8_t ttl = 64;
  uint8_t protocol = kIpProtoTcp;
  absl::Span<const uint8_t> options;  // raw, a multiple of 4 bytes, at most 40
  uint16_t payload_len = 0;           // total length minus header length

  size_t header_len() const { return 20 + options.size(); }
  bool operator==(const Ipv4Repr& o) const;
};

// Checked parse of an IPv4 header: version, IHL, total length against the buffer,
// header checksum (when verify_checksum). On success, *payload is the bytes after
// the header up to total length (trailing link padding dropped).
absl::StatusOr<Ipv4Repr> ParseIpv4(absl::Span<const uint8_t> bytes,
                                   absl::Span<const uint8_t>* payload,
                                   bool verify_checksum = true);
// As ParseIpv4, filling *repr in place: ParseSegment's hot path uses it to build
// the Segment where it will be returned instead of copying reprs through StatusOr.
// On error *repr is unspecified.
absl::Status ParseIpv4Into(absl::Span<const uint8_t> bytes, Ipv4Repr* repr,
                           absl::Span<const uint8_t>* payload, bool verify_checksum = true);
// Writes the header (total length and checksum filled in) at the start of `out`,
// which must hold repr.header_len() bytes. Returns the header length (0, writing
// nothing, when out is too short, the options are not a multiple of 4 up to 40 bytes,
// or the total length would pass 65535).
size_t EmitIpv4(const Ipv4Repr& repr, absl::Span<uint8_t> out);

// One-line summaries for logs and test failure messages.
std::ostream& operator<<(std::ostream& os, const Ipv4Repr& r);

// RFC 8200 fixed header. Hop-by-hop, routing and destination options headers are
// skipped on parse (and not kept); fragment, AH, ESP and unknown ones are refused.
struct Ipv6Repr {
  IpAddress src, dst;  // both V6
  uint8_t traffic_class = 0;
  uint32_t flow_label = 0;  // 20 bits
  uint8_t next_header = kIpProtoTcp;  // the upper-layer protocol after skipped headers
  uint8_t hop_limit = 64;
  uint16_t payload_len = 0;  // of the upper-layer payload (after skipped headers)

  static constexpr size_t header_len() { return 40; }
  bool operator==(const Ipv6Repr&) const = default;
};

absl::StatusOr<Ipv6Repr> ParseIpv6(absl::Span<const uint8_t> bytes,
                                   absl::Span<const uint8_t>* payload);
// As ParseIpv6, filling *repr in place (see ParseIpv4Into).
absl::Status ParseIpv6Into(absl::Span<const uint8_t> bytes, Ipv6Repr* repr,
                           absl::Span<const uint8_t>* payload);
// Writes the 40-byte fixed header (no extension headers); returns 40, or 0 when `out`
// is shorter.
size_t EmitIpv6(const Ipv6Repr& repr, absl::Span<uint8_t> out);

std::ostream& operator<<(std::ostream& os, const Ipv6Repr& r);

}  // namespace wrench::stack
