// The datagram view's check (ParseSegment's checks, keeping offsets instead of
// fields) and its patches with incremental checksum updates (RFC 1624).
#include "stack/datagram_view.h"

#include <variant>

#include "stack/checksum.h"

namespace wrench::stack {

absl::StatusOr<DatagramLayout> CheckDatagram(absl::Span<const uint8_t> datagram,
                                             ParseOptions opts) {
  std::variant<Ipv4Repr, Ipv6Repr> ip;
  absl::Span<const uint8_t> tcp;
  if (absl::Status s = ParseIpLayer(datagram, opts.verify_checksums, &ip, &tcp); !s.ok()) {
    return s;
  }
  const bool v6 = ip.index() == 1;
  const IpAddress& src = v6 ? std::get<Ipv6Repr>(ip).src : std::get<Ipv4Repr>(ip).src;
  const IpAddress& dst = v6 ? std::get<Ipv6Repr>(ip).dst : std::get<Ipv4Repr>(ip).dst;
  size_t header_len = 0;
  if (absl::Status s = CheckTcpHeader(tcp, src, dst, opts.verify_checksums, &header_len);
      !s.ok()) {
    return s;
  }
  DatagramLayout layout;
  layout.v6 = v6;
  layout.tcp = static_cast<uint16_t>(tcp.data() - datagram.data());
  layout.payload = static_cast<uint16_t>(layout.tcp + header_len);
  layout.len = static_cast<uint32_t>(layout.tcp + tcp.size());
  if (header_len > 20) {
    TcpOptions options;
    absl::Status s = ParseTcpOptions(tcp.subspan(20, header_len - 20), &options, &layout.options);
    if (!s.ok()) return s;
  }
  return layout;
}

template <>
void BasicDatagramView<uint8_t>::PatchTcp(size_t at, const uint8_t* data, size_t n) {
  if (n == 0) return;
  // The 16-bit words the bytes fall in, counted from the TCP header (the pseudo-header
  // and the IP header before it are whole words, so the alignment is the segment's).
  const size_t tcp = layout_.tcp;
  const size_t first = tcp + ((at - tcp) & ~size_t{1});
  const size_t end = std::min<size_t>(tcp + ((at + n - tcp + 1) & ~size_t{1}), layout_.len);
  const absl::Span<const uint8_t> words(b_ + first, end - first);
  const uint64_t old_sum = ChecksumAccumulate(words);
  std::memcpy(b_ + at, data, n);
  const uint64_t new_sum = ChecksumAccumulate(words);
  const uint16_t updated = ChecksumUpdate(checksum(), old_sum, new_sum);
  b_[tcp + 16] = static_cast<uint8_t>(updated >> 8);
  b_[tcp + 17] = static_cast<uint8_t>(updated);
}

template <>
void BasicDatagramView<uint8_t>::set_ttl(uint8_t ttl) {
  if (is_v6()) {
    b_[7] = ttl;  // the hop limit is in no checksum (RFC 8200 §8.1)
    return;
  }
  // RFC 791: TTL and protocol share the header's fifth 16-bit word.
  const uint64_t old_sum = ChecksumAccumulate({b_ + 8, 2});
  b_[8] = ttl;
  const uint64_t new_sum = ChecksumAccumulate({b_ + 8, 2});
  const uint16_t updated =
      ChecksumUpdate(static_cast<uint16_t>((b_[10] << 8) | b_[11]), old_sum, new_sum);
  b_[10] = static_cast<uint8_t>(updated >> 8);
  b_[11] = static_cast<uint8_t>(updated);
}

template <>
bool BasicDatagramView<uint8_t>::set_mss(uint16_t mss) {
  if (!Has(layout_.options.mss)) return false;
  Patch16(OptionAt(layout_.options.mss) + 2, mss);
  return true;
}

template <>
bool BasicDatagramView<uint8_t>::set_window_scale(uint8_t shift) {
  if (!Has(layout_.options.window_scale)) return false;
  PatchTcp(OptionAt(layout_.options.window_scale) + 2, &shift, 1);
  return true;
}

template <>
bool BasicDatagramView<uint8_t>::set_timestamps(Timestamps ts) {
  if (!Has(layout_.options.timestamps)) return false;
  const size_t at = OptionAt(layout_.options.timestamps) + 2;
  Patch32(at, ts.value);
  Patch32(at + 4, ts.echo);
  return true;
}

template <>
bool BasicDatagramView<uint8_t>::set_sack(size_t i, SackBlock block) {
  if (i >= sack_count()) return false;
  const size_t at = OptionAt(layout_.options.sack) + 2 + 8 * i;
  Patch32(at, block.left.raw());
  Patch32(at + 4, block.right.raw());
  return true;
}

}  // namespace wrench::stack
