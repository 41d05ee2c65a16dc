// IP addresses and the IPv4 (RFC 791) / IPv6 (RFC 8200) headers: checked parse and
// emit. Every length is validated before it is used; success never allocates, and an
// error message names the field that is wrong and the numbers involved.
#include "stack/ip.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "stack/checksum.h"

namespace wrench::stack {
namespace {

inline uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline void Put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

// Parses a decimal octet 0..255 without leading zeros (which some parsers read as
// octal; refusing them keeps "010.0.0.1" from meaning two different things).
bool ParseOctet(absl::string_view s, uint8_t* out) {
  if (s.empty() || s.size() > 3 || (s.size() > 1 && s[0] == '0')) return false;
  int v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (v > 255) return false;
  *out = static_cast<uint8_t>(v);
  return true;
}

bool ParseDottedQuad(absl::string_view text, uint8_t* out4) {
  for (int i = 0; i < 4; ++i) {
    size_t dot = i < 3 ? text.find('.') : text.size();
    if (dot == absl::string_view::npos) return false;
    if (!ParseOctet(text.substr(0, dot), &out4[i])) return false;
    text.remove_prefix(i < 3 ? dot + 1 : dot);
  }
  return text.empty();
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Parses colon-separated hex groups (no "::" inside) into 16-bit words; a final
// dotted quad counts as two words (RFC 4291 §2.2 form 3). Returns the word count or
// -1 when malformed.
int ParseGroups(absl::string_view text, bool allow_quad, uint16_t* words, int max_words) {
  if (text.empty()) return 0;
  int n = 0;
  while (true) {
    size_t colon = text.find(':');
    absl::string_view group = text.substr(0, colon);
    if (colon == absl::string_view::npos && allow_quad &&
        group.find('.') != absl::string_view::npos) {
      uint8_t q[4];
      if (n + 2 > max_words || !ParseDottedQuad(group, q)) return -1;
      words[n++] = static_cast<uint16_t>((q[0] << 8) | q[1]);
      words[n++] = static_cast<uint16_t>((q[2] << 8) | q[3]);
      return n;
    }
    if (group.empty() || group.size() > 4 || n >= max_words) return -1;
    int v = 0;
    for (char c : group) {
      int d = HexDigit(c);
      if (d < 0) return -1;
      v = v * 16 + d;
    }
    words[n++] = static_cast<uint16_t>(v);
    if (colon == absl::string_view::npos) return n;
    text.remove_prefix(colon + 1);
  }
}

std::optional<IpAddress> ParseV6(absl::string_view text) {
  uint16_t head[8], tail[8];  // mutate: equivalent 8 (room to spare)
  int nh = 0, nt = 0;
  size_t gap = text.find("::");
  if (gap == absl::string_view::npos) {
    nh = ParseGroups(text, true, head, 8);
    if (nh != 8) return std::nullopt;
  } else {
    absl::string_view after = text.substr(gap + 2);
    if (after.find("::") != absl::string_view::npos) return std::nullopt;
    nh = ParseGroups(text.substr(0, gap), false, head, 7);
    nt = ParseGroups(after, true, tail, 7);
    // "::" stands for at least one zero group (RFC 4291 §2.2 form 2).
    if (nh < 0 || nt < 0 || nh + nt > 7) return std::nullopt;
  }
  std::array<uint8_t, 16> b{};
  for (int i = 0; i < nh; ++i) Put16(&b[2 * i], head[i]);
  for (int i = 0; i < nt; ++i) Put16(&b[2 * (8 - nt + i)], tail[i]);
  return IpAddress::V6(b);
}

// RFC 5952 §4: lower case, leading zeros dropped, the longest run of two or more
// zero groups (the first on a tie) shortened to "::"; §5: IPv4-mapped addresses
// end in a dotted quad.
std::string V6ToString(absl::Span<const uint8_t> b) {
  uint16_t w[8];
  for (int i = 0; i < 8; ++i) w[i] = Get16(&b[2 * i]);
  bool mapped = w[0] == 0 && w[1] == 0 && w[2] == 0 && w[3] == 0 && w[4] == 0 && w[5] == 0xffff;
  if (mapped) return absl::StrFormat("::ffff:%d.%d.%d.%d", b[12], b[13], b[14], b[15]);
  int best = -1, best_len = 1;
  for (int i = 0; i < 8;) {
    if (w[i] != 0) {
      ++i;
      continue;
    }
    int j = i;
    while (j < 8 && w[j] == 0) ++j;
    if (j - i > best_len) best = i, best_len = j - i;
    i = j;
  }
  std::string out;
  for (int i = 0; i < 8; ++i) {
    if (i == best) {
      out += "::";
      i += best_len - 1;
      continue;
    }
    if (!out.empty() && out.back() != ':') out += ':';
    absl::StrAppend(&out, absl::Hex(w[i]));
  }
  return out;
}

absl::Status Truncated(absl::string_view what, size_t have, size_t need) {
  return absl::InvalidArgumentError(
      absl::StrFormat("truncated %s (%d bytes, need %d)", what, have, need));
}

// IPv6 extension headers (RFC 8200 §4, IANA "IPv6 Extension Header Types").
constexpr uint8_t kHopByHop = 0;
constexpr uint8_t kRouting = 43;
constexpr uint8_t kFragment = 44;
constexpr uint8_t kDestOptions = 60;

// Extension headers the parser cannot skip; nullptr when `nh` is an upper-layer
// protocol (or one we skip), which the layer above accepts or refuses.
const char* UnsupportedExtensionName(uint8_t nh) {
  switch (nh) {
    case 50: return "ESP";
    case 51: return "AH";
    case 135: return "Mobility";
    case 139: return "HIP";
    case 140: return "Shim6";
    case 253:
    case 254: return "experimental";
    default: return nullptr;
  }
}

}  // namespace

IpAddress IpAddress::V4(uint32_t host_order) {
  return V4({static_cast<uint8_t>(host_order >> 24), static_cast<uint8_t>(host_order >> 16),
             static_cast<uint8_t>(host_order >> 8), static_cast<uint8_t>(host_order)});
}

IpAddress IpAddress::V4(std::array<uint8_t, 4> b) {
  IpAddress a;
  std::copy(b.begin(), b.end(), a.b_.begin());
  return a;
}

IpAddress IpAddress::V6(std::array<uint8_t, 16> b) {
  IpAddress a;
  a.b_ = b;
  a.v6_ = true;
  return a;
}

// Any length other than 4 or 16 yields the default address (0.0.0.0): callers pass
// fields they have already sized, so there is no error to report.
IpAddress IpAddress::FromBytes(absl::Span<const uint8_t> b) {
  IpAddress a;
  if (b.size() == 4 || b.size() == 16) {
    std::copy(b.begin(), b.end(), a.b_.begin());
    a.v6_ = b.size() == 16;
  }
  return a;
}

std::optional<IpAddress> IpAddress::Parse(absl::string_view text) {
  if (text.find(':') != absl::string_view::npos) return ParseV6(text);
  std::array<uint8_t, 4> q;
  if (!ParseDottedQuad(text, q.data())) return std::nullopt;
  return V4(q);
}

// 0 for an IPv6 address, which has no 32-bit form.
uint32_t IpAddress::v4_host_order() const {
  if (v6_) return 0;
  return (uint32_t{b_[0]} << 24) | (uint32_t{b_[1]} << 16) | (uint32_t{b_[2]} << 8) | b_[3];
}

std::string IpAddress::ToString() const {
  if (v6_) return V6ToString(bytes());
  return absl::StrFormat("%d.%d.%d.%d", b_[0], b_[1], b_[2], b_[3]);
}

bool Ipv4Repr::operator==(const Ipv4Repr& o) const {
  return src == o.src && dst == o.dst && dscp_ecn == o.dscp_ecn && ident == o.ident &&
         dont_fragment == o.dont_fragment && more_fragments == o.more_fragments &&
         fragment_offset == o.fragment_offset && ttl == o.ttl && protocol == o.protocol &&
         std::equal(options.begin(), options.end(), o.options.begin(), o.options.end()) &&
         payload_len == o.payload_len;
}

absl::StatusOr<Ipv4Repr> ParseIpv4(absl::Span<const uint8_t> bytes,
                                   absl::Span<const uint8_t>* payload, bool verify_checksum) {
  // Filled where it is returned (NRVO): no copy of the repr on the way out.
  absl::StatusOr<Ipv4Repr> result(absl::in_place);
  absl::Status s = ParseIpv4Into(bytes, &*result, payload, verify_checksum);
  if (!s.ok()) result = std::move(s);
  return result;
}

absl::Status ParseIpv4Into(absl::Span<const uint8_t> bytes, Ipv4Repr* repr,
                           absl::Span<const uint8_t>* payload, bool verify_checksum) {
  if (bytes.size() < 20) return Truncated("IPv4 header", bytes.size(), 20);
  const uint8_t* p = bytes.data();
  if ((p[0] >> 4) != 4) {
    return absl::InvalidArgumentError(absl::StrFormat("not IPv4 (version %d)", p[0] >> 4));
  }
  // RFC 791 §3.1: IHL counts 32-bit words; the minimum header is 5 of them.
  size_t ihl = p[0] & 0x0f;
  if (ihl < 5) {
    return absl::InvalidArgumentError(
        absl::StrFormat("bad IPv4 header length %d (32-bit words, minimum 5)", ihl));
  }
  size_t header_len = ihl * 4;
  if (bytes.size() < header_len)
    return Truncated("IPv4 header with options", bytes.size(), header_len);
  size_t total_len = Get16(p + 2);
  if (total_len < header_len) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "IPv4 total length %d is less than header length %d", total_len, header_len));
  }
  if (total_len > bytes.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "IPv4 total length %d exceeds datagram (%d bytes)", total_len, bytes.size()));
  }
  if (verify_checksum) {
    // RFC 791 §3.1: summed with its checksum field in place, a good header gives 0.
    uint64_t sum = ChecksumAccumulate(bytes.first(header_len));
    if (ChecksumFinish(sum) != 0) {
      uint16_t field = Get16(p + 10);
      // Adding the field's complement takes it back out: what it should have been.
      uint16_t expected = ChecksumFinish(sum + static_cast<uint16_t>(~field));
      return absl::InvalidArgumentError(absl::StrFormat(
          "bad IPv4 header checksum 0x%04x (expected 0x%04x)", field, expected));
    }
  }
  Ipv4Repr& r = *repr;
  r.dscp_ecn = p[1];
  r.ident = Get16(p + 4);
  // The reserved flag bit (RFC 791, "must be zero") is ignored, not refused.
  uint16_t frag = Get16(p + 6);
  r.dont_fragment = (frag & 0x4000) != 0;
  r.more_fragments = (frag & 0x2000) != 0;
  r.fragment_offset = frag & 0x1fff;
  r.ttl = p[8];
  r.protocol = p[9];
  r.src = IpAddress::V4({p[12], p[13], p[14], p[15]});
  r.dst = IpAddress::V4({p[16], p[17], p[18], p[19]});
  r.options = bytes.subspan(20, header_len - 20);
  r.payload_len = static_cast<uint16_t>(total_len - header_len);
  if (payload != nullptr) *payload = bytes.subspan(header_len, total_len - header_len);
  return absl::OkStatus();
}

// Writes nothing and returns 0 when the preconditions do not hold (out too short,
// options not a multiple of 4 or longer than 40, total length over 65535);
// EmitSegment checks them first and reports why.
size_t EmitIpv4(const Ipv4Repr& repr, absl::Span<uint8_t> out) {
  size_t header_len = repr.header_len();
  // mutate: equivalent 40 (a multiple of 4 above 40 is above 41 too)
  if (repr.options.size() % 4 != 0 || repr.options.size() > 40 || out.size() < header_len ||
      header_len + repr.payload_len > 0xffff) {
    return 0;
  }
  uint8_t* p = out.data();
  p[0] = static_cast<uint8_t>(0x40 | (header_len / 4));
  p[1] = repr.dscp_ecn;
  Put16(p + 2, static_cast<uint16_t>(header_len + repr.payload_len));
  Put16(p + 4, repr.ident);
  Put16(p + 6, static_cast<uint16_t>((repr.dont_fragment ? 0x4000 : 0) |
                                     (repr.more_fragments ? 0x2000 : 0) |
                                     (repr.fragment_offset & 0x1fff)));
  p[8] = repr.ttl;
  p[9] = repr.protocol;
  Put16(p + 10, 0);
  std::memcpy(p + 12, repr.src.bytes().data(), 4);  // mutate: equivalent 4 (dst overwrites a 5th)
  std::memcpy(p + 16, repr.dst.bytes().data(), 4);
  if (!repr.options.empty()) std::memmove(p + 20, repr.options.data(), repr.options.size());
  uint16_t sum = InternetChecksum(out.first(header_len));
  Put16(p + 10, sum);
  return header_len;
}

absl::StatusOr<Ipv6Repr> ParseIpv6(absl::Span<const uint8_t> bytes,
                                   absl::Span<const uint8_t>* payload) {
  absl::StatusOr<Ipv6Repr> result(absl::in_place);
  absl::Status s = ParseIpv6Into(bytes, &*result, payload);
  if (!s.ok()) result = std::move(s);
  return result;
}

absl::Status ParseIpv6Into(absl::Span<const uint8_t> bytes, Ipv6Repr* repr,
                           absl::Span<const uint8_t>* payload) {
  if (bytes.size() < 40) return Truncated("IPv6 header", bytes.size(), 40);
  const uint8_t* p = bytes.data();
  if ((p[0] >> 4) != 6) {
    return absl::InvalidArgumentError(absl::StrFormat("not IPv6 (version %d)", p[0] >> 4));
  }
  size_t plen = Get16(p + 4);
  if (plen == 0 && p[6] == kHopByHop) {
    // RFC 2675 jumbograms carry a zero here and the length in hop-by-hop options.
    return absl::InvalidArgumentError("IPv6 payload length 0 (jumbogram) not supported");
  }
  if (40 + plen > bytes.size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "IPv6 payload length %d exceeds datagram (%d bytes after the 40-byte header)", plen,
        bytes.size() - 40));
  }
  Ipv6Repr& r = *repr;
  r.traffic_class = static_cast<uint8_t>(((p[0] & 0x0f) << 4) | (p[1] >> 4));
  r.flow_label = (uint32_t{p[1] & 0x0fu} << 16) | (uint32_t{p[2]} << 8) | p[3];
  r.hop_limit = p[7];
  std::array<uint8_t, 16> a;
  std::memcpy(a.data(), p + 8, 16);
  r.src = IpAddress::V6(a);
  std::memcpy(a.data(), p + 24, 16);
  r.dst = IpAddress::V6(a);

  // Walk the extension headers (RFC 8200 §4.1) within the payload length.
  size_t end = 40 + plen;
  size_t off = 40;
  uint8_t nh = p[6];
  while (nh == kHopByHop || nh == kRouting || nh == kDestOptions) {
    // §4.3: "The Hop-by-Hop Options header ... must immediately follow the IPv6 header."
    if (nh == kHopByHop && off != 40) {
      return absl::InvalidArgumentError("IPv6 hop-by-hop options header not first");
    }
    if (end - off < 8) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "truncated IPv6 extension header %d (%d bytes left, need 8)", nh, end - off));
    }
    // §4.3-4.6: Hdr Ext Len counts 8-octet units beyond the first 8 octets.
    size_t len = (size_t{p[off + 1]} + 1) * 8;
    if (len > end - off) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "IPv6 extension header %d length %d exceeds payload (%d bytes left)", nh, len,
          end - off));
    }
    // §8.1: with a Routing header, the pseudo-header uses the final destination, which
    // we would have to dig out of type-specific data; while Segments Left is nonzero
    // this node is not that destination anyway.
    if (nh == kRouting && p[off + 3] != 0) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "IPv6 routing header with %d segments left not supported", p[off + 3]));
    }
    nh = p[off];
    off += len;
  }
  if (nh == kFragment) return absl::InvalidArgumentError("IPv6 fragment header not supported");
  if (const char* name = UnsupportedExtensionName(nh)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("IPv6 extension header %d (%s) not supported", nh, name));
  }
  r.next_header = nh;
  r.payload_len = static_cast<uint16_t>(end - off);
  if (payload != nullptr) *payload = bytes.subspan(off, end - off);
  return absl::OkStatus();
}

// Writes nothing and returns 0 when `out` is shorter than 40 bytes.
size_t EmitIpv6(const Ipv6Repr& repr, absl::Span<uint8_t> out) {
  if (out.size() < 40) return 0;
  uint8_t* p = out.data();
  uint32_t first = (6u << 28) | (uint32_t{repr.traffic_class} << 20) | (repr.flow_label & 0xfffff);
  p[0] = static_cast<uint8_t>(first >> 24);
  p[1] = static_cast<uint8_t>(first >> 16);
  p[2] = static_cast<uint8_t>(first >> 8);
  p[3] = static_cast<uint8_t>(first);
  Put16(p + 4, repr.payload_len);
  p[6] = repr.next_header;
  p[7] = repr.hop_limit;
  // An IPv4 address in an IPv6 repr is a caller bug; zero-fill rather than leak
  // whatever `out` held.
  std::memset(p + 8, 0, 32);
  std::memcpy(p + 8, repr.src.bytes().data(), repr.src.bytes().size());
  std::memcpy(p + 24, repr.dst.bytes().data(), repr.dst.bytes().size());
  return 40;
}

std::ostream& operator<<(std::ostream& os, const Ipv4Repr& r) {
  os << "IPv4 " << r.src << " > " << r.dst << " proto " << int{r.protocol} << " ttl "
     << int{r.ttl} << " id " << r.ident << (r.dont_fragment ? " DF" : "")
     << (r.more_fragments ? " MF" : "");
  if (r.fragment_offset != 0) os << " frag " << r.fragment_offset * 8;
  if (r.dscp_ecn != 0) os << absl::StrFormat(" tos 0x%02x", r.dscp_ecn);
  if (!r.options.empty()) os << " options " << r.options.size() << "B";
  return os << " len " << r.payload_len;
}

std::ostream& operator<<(std::ostream& os, const Ipv6Repr& r) {
  os << "IPv6 " << r.src << " > " << r.dst << " nh " << int{r.next_header} << " hlim "
     << int{r.hop_limit};
  if (r.traffic_class != 0) os << absl::StrFormat(" tc 0x%02x", r.traffic_class);
  if (r.flow_label != 0) os << absl::StrFormat(" flow 0x%05x", r.flow_label);
  return os << " len " << r.payload_len;
}

}  // namespace wrench::stack
