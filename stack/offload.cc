// The byte work of TUN segmentation offload (offload.h): the virtio_net_hdr, cutting a
// super-segment the way the kernel's tcp_gso_segment does, and merging wrench's
// segments into one that the kernel cuts back into them.
#include "stack/offload.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "stack/checksum.h"
#include "stack/ip.h"
#include "stack/tcp_wire.h"

namespace wrench::stack {
namespace {

// The TCP header's flag byte and checksum (RFC 9293 §3.1); the flag bits are
// tcp_wire.h's.
constexpr size_t kTcpFlagsAt = 13;
constexpr size_t kTcpChecksumAt = 16;

uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t Get32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}
void Put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void Put32(uint8_t* p, uint32_t v) {
  Put16(p, static_cast<uint16_t>(v >> 16));
  Put16(p + 2, static_cast<uint16_t>(v));
}

// Where the headers of a TCP datagram end. The IP header's length fields, not the
// buffer, say where the datagram ends.
struct Layout {
  bool v6 = false;
  size_t ip_len = 0;   // IP header bytes
  size_t hdr_len = 0;  // IP + TCP header bytes
  size_t end = 0;      // the datagram's length
};

absl::StatusOr<Layout> TcpLayout(absl::Span<const uint8_t> d) {
  Layout l;
  if (d.empty()) return absl::InvalidArgumentError("empty datagram");
  const int version = d[0] >> 4;
  if (version == 4) {
    if (d.size() < 20) return absl::InvalidArgumentError("truncated IPv4 header");
    l.ip_len = static_cast<size_t>(d[0] & 0x0f) * 4;
    l.end = Get16(&d[2]);
    if (l.ip_len < 20 || l.end < l.ip_len || l.end > d.size()) {
      return absl::InvalidArgumentError("bad IPv4 header or total length");
    }
    if (d[9] != kIpProtoTcp) return absl::InvalidArgumentError("not TCP");
    if ((Get16(&d[6]) & 0x3fff) != 0) return absl::InvalidArgumentError("an IPv4 fragment");
  } else if (version == 6) {
    l.v6 = true;
    l.ip_len = Ipv6Repr::header_len();
    if (d.size() < l.ip_len) return absl::InvalidArgumentError("truncated IPv6 header");
    if (d[6] != kIpProtoTcp) {
      return absl::InvalidArgumentError("not TCP right after the IPv6 header");
    }
    l.end = l.ip_len + Get16(&d[4]);
    if (l.end > d.size()) return absl::InvalidArgumentError("bad IPv6 payload length");
  } else {
    return absl::InvalidArgumentError(absl::StrCat("IP version ", version));
  }
  if (l.end < l.ip_len + 20) return absl::InvalidArgumentError("truncated TCP header");
  const size_t tcp_len = static_cast<size_t>(d[l.ip_len + 12] >> 4) * 4;
  l.hdr_len = l.ip_len + tcp_len;
  if (tcp_len < 20 || l.hdr_len > l.end) {
    return absl::InvalidArgumentError("bad TCP data offset");
  }
  return l;
}

// The pseudo-header sum of `d`'s addresses for `tcp_len` bytes of TCP.
uint64_t PseudoSum(const uint8_t* d, const Layout& l, size_t tcp_len) {
  const size_t addr_len = l.v6 ? 16 : 4;
  const uint8_t* src = d + (l.v6 ? 8 : 12);
  return PseudoHeaderSum(IpAddress::FromBytes({src, addr_len}),
                         IpAddress::FromBytes({src + addr_len, addr_len}), kIpProtoTcp,
                         static_cast<uint32_t>(tcp_len));
}

// Fills in the lengths and checksums of one complete datagram in `d`.
void FinishDatagram(uint8_t* d, size_t len, const Layout& l) {
  if (l.v6) {
    Put16(d + 4, static_cast<uint16_t>(len - l.ip_len));
  } else {
    Put16(d + 2, static_cast<uint16_t>(len));
    Put16(d + 10, 0);
    Put16(d + 10, InternetChecksum({d, l.ip_len}));
  }
  uint8_t* tcp = d + l.ip_len;
  const size_t tcp_len = len - l.ip_len;
  Put16(tcp + kTcpChecksumAt, 0);
  Put16(tcp + kTcpChecksumAt, ChecksumFinish(ChecksumAccumulate({tcp, tcp_len},
                                                                PseudoSum(d, l, tcp_len))));
}

bool SameBytes(absl::Span<const uint8_t> a, absl::Span<const uint8_t> b, size_t from,
               size_t to) {
  return std::memcmp(a.data() + from, b.data() + from, to - from) == 0;
}

}  // namespace

VnetHdr DecodeVnetHdr(std::span<const uint8_t, VnetHdr::kLen> b) {
  VnetHdr h;
  h.flags = b[0];
  h.gso_type = b[1];
  std::memcpy(&h.hdr_len, &b[2], 2);
  std::memcpy(&h.gso_size, &b[4], 2);
  std::memcpy(&h.csum_start, &b[6], 2);
  std::memcpy(&h.csum_offset, &b[8], 2);
  return h;
}

void EncodeVnetHdr(const VnetHdr& h, std::span<uint8_t, VnetHdr::kLen> out) {
  out[0] = h.flags;
  out[1] = h.gso_type;
  std::memcpy(&out[2], &h.hdr_len, 2);
  std::memcpy(&out[4], &h.gso_size, 2);
  std::memcpy(&out[6], &h.csum_start, 2);
  std::memcpy(&out[8], &h.csum_offset, 2);
}

absl::Status FinishPartialChecksum(absl::Span<uint8_t> d, const VnetHdr& hdr) {
  if ((hdr.flags & VnetHdr::kNeedsCsum) == 0) return absl::OkStatus();
  const size_t at = size_t{hdr.csum_start} + hdr.csum_offset;
  if (hdr.csum_start >= d.size() || at + 2 > d.size()) {
    return absl::InvalidArgumentError(absl::StrCat("checksum at ", hdr.csum_start, "+",
                                                   hdr.csum_offset, " outside a datagram of ",
                                                   d.size(), " bytes"));
  }
  // The field holds the folded pseudo-header sum; the checksum covers it, zeroed.
  const uint16_t partial = Get16(&d[at]);
  Put16(&d[at], 0);
  Put16(&d[at], ChecksumFinish(ChecksumAccumulate(d.subspan(hdr.csum_start), partial)));
  return absl::OkStatus();
}

absl::StatusOr<size_t> SplitSuperSegment(absl::Span<const uint8_t> d, const VnetHdr& hdr,
                                         absl::FunctionRef<void(absl::Span<const uint8_t>)> each) {
  absl::StatusOr<Layout> layout = TcpLayout(d);
  if (!layout.ok()) return layout.status();
  const Layout& l = *layout;
  const size_t payload = l.end - l.hdr_len;
  std::vector<uint8_t> out;
  if (!hdr.is_gso() || payload == 0) {
    out.assign(d.begin(), d.begin() + static_cast<ptrdiff_t>(l.end));
    if (absl::Status s = FinishPartialChecksum(absl::MakeSpan(out), hdr); !s.ok()) return s;
    each(out);
    return 1;
  }
  const uint8_t type = hdr.gso_type & ~VnetHdr::kGsoEcn;
  if (type != (l.v6 ? VnetHdr::kGsoTcpV6 : VnetHdr::kGsoTcpV4)) {
    return absl::InvalidArgumentError(absl::StrCat("GSO type ", int{hdr.gso_type}, " on an IPv",
                                                   l.v6 ? 6 : 4, " datagram"));
  }
  if (hdr.gso_size == 0) return absl::InvalidArgumentError("GSO size 0");
  const size_t n = (payload + hdr.gso_size - 1) / hdr.gso_size;
  const uint32_t seq = Get32(&d[l.ip_len + 4]);
  const uint16_t ident = l.v6 ? 0 : Get16(&d[4]);
  const uint8_t flags = d[l.ip_len + kTcpFlagsAt];
  for (size_t i = 0; i < n; ++i) {
    const size_t from = l.hdr_len + i * hdr.gso_size;
    const size_t chunk = std::min<size_t>(hdr.gso_size, l.end - from);
    out.assign(d.begin(), d.begin() + static_cast<ptrdiff_t>(l.hdr_len));
    out.insert(out.end(), d.begin() + static_cast<ptrdiff_t>(from),
               d.begin() + static_cast<ptrdiff_t>(from + chunk));
    if (!l.v6) Put16(&out[4], static_cast<uint16_t>(ident + i));
    Put32(&out[l.ip_len + 4], seq + static_cast<uint32_t>(i * hdr.gso_size));
    // tcp_gso_segment: FIN and PSH stay on the last segment, CWR on the first.
    uint8_t f = flags;
    if (i + 1 < n) f &= static_cast<uint8_t>(~(kFin | kPsh));
    if (i > 0) f &= static_cast<uint8_t>(~kCwr);
    out[l.ip_len + kTcpFlagsAt] = f;
    FinishDatagram(out.data(), out.size(), l);
    each(out);
  }
  return n;
}

bool GsoBatch::Append(absl::Span<const uint8_t> d) {
  absl::StatusOr<Layout> layout = TcpLayout(d);
  const bool empty_batch = count_ == 0;
  if (!layout.ok()) {
    if (!empty_batch) return false;
    buf_.assign(d.begin(), d.end());
    count_ = 1;
    closed_ = true;
    return true;
  }
  const Layout& l = *layout;
  const size_t payload = l.end - l.hdr_len;
  const uint8_t flags = d[l.ip_len + kTcpFlagsAt];
  const bool joins = (flags & ~(kAck | kPsh)) == 0 && (flags & kAck) != 0 && payload > 0 &&
                     (l.v6 || l.ip_len == 20);
  const auto whole = d.subspan(0, l.end);
  if (empty_batch) {
    buf_.assign(whole.begin(), whole.end());
    count_ = 1;
    closed_ = !joins || (flags & kPsh) != 0;
    v6_ = l.v6;
    ip_len_ = l.ip_len;
    hdr_len_ = l.hdr_len;
    gso_size_ = payload;
    next_seq_ = Get32(&d[l.ip_len + 4]) + static_cast<uint32_t>(payload);
    return true;
  }
  if (closed_ || !joins || l.v6 != v6_ || l.hdr_len != hdr_len_ || payload > gso_size_ ||
      Get32(&d[l.ip_len + 4]) != next_seq_ ||
      buf_.size() - (v6_ ? ip_len_ : 0) + payload > kMaxLen) {
    return false;
  }
  const absl::Span<const uint8_t> first(buf_);
  // IP: everything but the lengths, the IPv4 ident and the header checksum.
  const bool same_ip = v6_ ? SameBytes(first, d, 0, 4) && SameBytes(first, d, 6, 40)
                           : SameBytes(first, d, 0, 2) && SameBytes(first, d, 6, 10) &&
                                 SameBytes(first, d, 12, 20);
  // TCP: everything but seq, the PSH bit and the checksum.
  const size_t t = ip_len_;
  const bool same_tcp = SameBytes(first, d, t, t + 4) && SameBytes(first, d, t + 8, t + 13) &&
                        (first[t + kTcpFlagsAt] & ~kPsh) == (flags & ~kPsh) &&
                        SameBytes(first, d, t + 14, t + kTcpChecksumAt) &&
                        SameBytes(first, d, t + kTcpChecksumAt + 2, hdr_len_);
  if (!same_ip || !same_tcp) return false;
  buf_.insert(buf_.end(), whole.begin() + static_cast<ptrdiff_t>(hdr_len_), whole.end());
  next_seq_ += static_cast<uint32_t>(payload);
  ++count_;
  if ((flags & kPsh) != 0) {
    buf_[t + kTcpFlagsAt] |= kPsh;
    closed_ = true;
  }
  if (payload < gso_size_) closed_ = true;
  return true;
}

absl::Span<const uint8_t> GsoBatch::Finish(VnetHdr* hdr) {
  *hdr = VnetHdr{};
  if (count_ <= 1) return buf_;
  Layout l;
  l.v6 = v6_;
  l.ip_len = ip_len_;
  uint8_t* d = buf_.data();
  if (v6_) {
    Put16(d + 4, static_cast<uint16_t>(buf_.size() - ip_len_));
  } else {
    Put16(d + 2, static_cast<uint16_t>(buf_.size()));
    Put16(d + 10, 0);
    Put16(d + 10, InternetChecksum({d, ip_len_}));
  }
  // CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum over the whole
  // TCP length; the kernel adjusts it per segment as it cuts.
  const size_t tcp_len = buf_.size() - ip_len_;
  Put16(d + ip_len_ + kTcpChecksumAt,
        static_cast<uint16_t>(~ChecksumFinish(PseudoSum(d, l, tcp_len))));
  hdr->flags = VnetHdr::kNeedsCsum;
  hdr->gso_type = v6_ ? VnetHdr::kGsoTcpV6 : VnetHdr::kGsoTcpV4;
  hdr->hdr_len = static_cast<uint16_t>(hdr_len_);
  hdr->gso_size = static_cast<uint16_t>(gso_size_);
  hdr->csum_start = static_cast<uint16_t>(ip_len_);
  hdr->csum_offset = kTcpChecksumAt;
  return buf_;
}

void GsoBatch::Clear() {
  buf_.clear();
  count_ = 0;
  closed_ = false;
}

}  // namespace wrench::stack
