// A checked view over the bytes of one TCP/IP datagram, in the manner of smoltcp's
// `Packet` and gVisor's `header.TCP`: a check validates every length once (the
// refusals of ParseSegment), then fields are read from the bytes and, through a view
// over mutable bytes, patched in place. A patch updates the IPv4 header checksum and
// the TCP checksum incrementally (RFC 1624), so a changed datagram costs the bytes
// that changed, not a new emission.
//
// Segment (stack/segment.h) is the plain representation to build and emit; this view
// is for bytes that already exist, which the fault engine reads and changes without
// parsing them into a Segment and emitting them again.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <type_traits>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "stack/ip.h"
#include "stack/segment.h"
#include "stack/seq.h"
#include "stack/tcp_wire.h"

namespace wrench::stack {

// Where the parts of a checked datagram lie, in bytes from its start.
struct DatagramLayout {
  bool v6 = false;
  uint16_t tcp = 0;      // the TCP header, after the IP header and skipped extension headers
  uint16_t payload = 0;  // the TCP payload
  uint32_t len = 0;      // the datagram up to the IP length (link padding left out)
  TcpOptionOffsets options;  // from the start of the TCP options (tcp + 20)
};

// Checks a datagram as ParseSegment does (same refusals, same messages) and returns
// where its parts lie. Checksums are verified when opts.verify_checksums.
absl::StatusOr<DatagramLayout> CheckDatagram(absl::Span<const uint8_t> datagram,
                                             ParseOptions opts = {});

// Byte is uint8_t (a view that patches: DatagramView) or const uint8_t (a view that
// only reads: ConstDatagramView).
template <typename Byte>
class BasicDatagramView {
 public:
  static constexpr bool kMutable = !std::is_const_v<Byte>;

  // Checks `datagram` (CheckDatagram) and views it.
  static absl::StatusOr<BasicDatagramView> Check(absl::Span<Byte> datagram,
                                                 ParseOptions opts = {}) {
    absl::StatusOr<DatagramLayout> layout = CheckDatagram(datagram, opts);
    if (!layout.ok()) return layout.status();
    return BasicDatagramView(datagram, *layout);
  }
  // A view of bytes CheckDatagram accepted with this layout, or of a copy of them.
  BasicDatagramView(absl::Span<Byte> datagram, const DatagramLayout& layout)
      : b_(datagram.data()), layout_(layout) {}
  // A patching view also reads.
  template <typename Other>
    requires(!kMutable && std::is_same_v<Other, uint8_t>)
  BasicDatagramView(const BasicDatagramView<Other>& o)  // NOLINT: implicit on purpose
      : b_(o.bytes().data()), layout_(o.layout()) {}

  const DatagramLayout& layout() const { return layout_; }
  // The datagram up to its IP length.
  absl::Span<Byte> bytes() const { return {b_, layout_.len}; }

  // IP.
  bool is_v6() const { return layout_.v6; }
  IpAddress src() const { return IpAddress::FromBytes({b_ + (is_v6() ? 8 : 12), AddrLen()}); }
  IpAddress dst() const { return IpAddress::FromBytes({b_ + (is_v6() ? 24 : 16), AddrLen()}); }
  uint8_t ttl() const { return b_[is_v6() ? 7 : 8]; }  // TTL or hop limit

  // TCP header (RFC 9293 §3.1).
  uint16_t src_port() const { return Get16(layout_.tcp); }
  uint16_t dst_port() const { return Get16(layout_.tcp + 2); }
  SeqNum seq() const { return SeqNum(Get32(layout_.tcp + 4)); }
  SeqNum ack() const { return SeqNum(Get32(layout_.tcp + 8)); }
  TcpFlags flags() const { return TcpFlags(b_[layout_.tcp + 13]); }
  uint16_t window() const { return Get16(layout_.tcp + 14); }
  uint16_t checksum() const { return Get16(layout_.tcp + 16); }
  uint16_t urgent() const { return Get16(layout_.tcp + 18); }
  size_t tcp_header_len() const { return size_t{layout_.payload} - layout_.tcp; }

  // Options (RFC 9293 §3.2, RFC 7323, RFC 2018): nullopt or 0 when absent.
  std::optional<uint16_t> mss() const {
    if (!Has(layout_.options.mss)) return std::nullopt;
    return Get16(OptionAt(layout_.options.mss) + 2);
  }
  std::optional<uint8_t> window_scale() const {
    if (!Has(layout_.options.window_scale)) return std::nullopt;
    return b_[OptionAt(layout_.options.window_scale) + 2];
  }
  std::optional<Timestamps> timestamps() const {
    if (!Has(layout_.options.timestamps)) return std::nullopt;
    const size_t at = OptionAt(layout_.options.timestamps);
    return Timestamps{Get32(at + 2), Get32(at + 6)};
  }
  size_t sack_count() const {
    if (!Has(layout_.options.sack)) return 0;
    return (b_[OptionAt(layout_.options.sack) + 1] - 2u) / 8;
  }
  SackBlock sack(size_t i) const {  // i < sack_count()
    const size_t at = OptionAt(layout_.options.sack) + 2 + 8 * i;
    return SackBlock{SeqNum(Get32(at)), SeqNum(Get32(at + 4))};
  }

  // The text.
  absl::Span<Byte> payload() const { return {b_ + layout_.payload, layout_.len - layout_.payload}; }
  // Sequence space consumed: payload + SYN + FIN (RFC 9293 §3.4 SEG.LEN).
  uint32_t seg_len() const {
    const TcpFlags f = flags();
    return static_cast<uint32_t>(payload().size()) + (f.has(kSyn) ? 1 : 0) + (f.has(kFin) ? 1 : 0);
  }

  // Patches, each keeping both checksums as they were: right if they were right, wrong
  // by the same amount if they were wrong. The option setters change an option the
  // segment carries and return false, changing nothing, when it carries none.
  void set_ttl(uint8_t ttl);
  void set_src_port(uint16_t port) requires kMutable { Patch16(layout_.tcp, port); }
  void set_dst_port(uint16_t port) requires kMutable { Patch16(layout_.tcp + 2, port); }
  void set_seq(SeqNum seq) requires kMutable { Patch32(layout_.tcp + 4, seq.raw()); }
  void set_ack(SeqNum ack) requires kMutable { Patch32(layout_.tcp + 8, ack.raw()); }
  void set_flags(TcpFlags flags) requires kMutable {
    const uint8_t v = flags.bits();
    PatchTcp(layout_.tcp + 13, &v, 1);
  }
  void set_window(uint16_t window) requires kMutable { Patch16(layout_.tcp + 14, window); }
  void set_urgent(uint16_t urgent) requires kMutable { Patch16(layout_.tcp + 18, urgent); }
  bool set_mss(uint16_t mss);
  bool set_window_scale(uint8_t shift);
  bool set_timestamps(Timestamps ts);
  bool set_sack(size_t i, SackBlock block);  // false when i >= sack_count()
  // Replaces payload bytes [offset, offset + data.size()), which must lie in the payload.
  void PatchPayload(size_t offset, absl::Span<const uint8_t> data) requires kMutable {
    PatchTcp(layout_.payload + offset, data.data(), data.size());
  }

 private:
  size_t AddrLen() const { return is_v6() ? 16 : 4; }
  static bool Has(uint8_t at) { return at != TcpOptionOffsets::kAbsent; }
  size_t OptionAt(uint8_t at) const { return size_t{layout_.tcp} + 20 + at; }
  uint16_t Get16(size_t at) const { return static_cast<uint16_t>((b_[at] << 8) | b_[at + 1]); }
  uint32_t Get32(size_t at) const { return uint32_t{Get16(at)} << 16 | Get16(at + 2); }
  void Patch16(size_t at, uint16_t v) requires kMutable {
    const uint8_t w[2] = {static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)};
    PatchTcp(at, w, 2);
  }
  void Patch32(size_t at, uint32_t v) requires kMutable {
    const uint8_t w[4] = {static_cast<uint8_t>(v >> 24), static_cast<uint8_t>(v >> 16),
                          static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)};
    PatchTcp(at, w, 4);
  }
  // Writes n bytes at `at` (in the TCP segment, not over its checksum) and updates
  // the TCP checksum by the 16-bit words they touch.
  void PatchTcp(size_t at, const uint8_t* data, size_t n);

  Byte* b_;
  DatagramLayout layout_;
};

using DatagramView = BasicDatagramView<uint8_t>;
using ConstDatagramView = BasicDatagramView<const uint8_t>;

// The patching members defined in datagram_view.cc exist for the patching view only
// (a read-only view that called one would not link).
template <>
void BasicDatagramView<uint8_t>::set_ttl(uint8_t ttl);
template <>
bool BasicDatagramView<uint8_t>::set_mss(uint16_t mss);
template <>
bool BasicDatagramView<uint8_t>::set_window_scale(uint8_t shift);
template <>
bool BasicDatagramView<uint8_t>::set_timestamps(Timestamps ts);
template <>
bool BasicDatagramView<uint8_t>::set_sack(size_t i, SackBlock block);
template <>
void BasicDatagramView<uint8_t>::PatchTcp(size_t at, const uint8_t* data, size_t n);

}  // namespace wrench::stack
