// Segmentation offload at the TUN edge. A TUN device opened with IFF_VNET_HDR puts a
// virtio_net_hdr in front of every datagram; with TSO enabled (TUNSETOFFLOAD) the
// kernel hands over TCP super-segments of up to 64 KiB that its own segmentation
// (tcp_gso_segment) would have cut into MSS-sized ones, and takes such super-segments
// to cut itself. This file holds the byte work of both directions, without I/O:
//   - SplitSuperSegment cuts a super-segment into the wire segments the kernel would
//     have sent (the same seq numbers, flags, IPv4 idents and full checksums);
//   - GsoBatch merges a run of complete datagrams of one flow into one super-segment
//     and the header that has the kernel cut it back into exactly those datagrams.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace wrench::stack {

// struct virtio_net_hdr (include/uapi/linux/virtio_net.h), the 10 bytes in front of
// each datagram. The TUN device uses the host's byte order for the 16-bit fields
// unless told otherwise (TUNSETVNETLE / TUNSETVNETBE, which wrench never sets).
struct VnetHdr {
  static constexpr size_t kLen = 10;
  static constexpr uint8_t kNeedsCsum = 1;  // VIRTIO_NET_HDR_F_NEEDS_CSUM
  static constexpr uint8_t kDataValid = 2;  // VIRTIO_NET_HDR_F_DATA_VALID
  static constexpr uint8_t kGsoNone = 0;
  static constexpr uint8_t kGsoTcpV4 = 1;
  static constexpr uint8_t kGsoTcpV6 = 4;
  static constexpr uint8_t kGsoEcn = 0x80;  // the segments carry CWR on the first only

  uint8_t flags = 0;
  uint8_t gso_type = kGsoNone;
  uint16_t hdr_len = 0;      // IP + TCP header bytes
  uint16_t gso_size = 0;     // payload bytes per wire segment
  uint16_t csum_start = 0;   // where the checksummed part starts (the TCP header)
  uint16_t csum_offset = 0;  // the checksum field's offset from csum_start

  bool is_gso() const { return (gso_type & ~kGsoEcn) != kGsoNone; }
  bool operator==(const VnetHdr&) const = default;
};

VnetHdr DecodeVnetHdr(std::span<const uint8_t, VnetHdr::kLen> bytes);
void EncodeVnetHdr(const VnetHdr& hdr, std::span<uint8_t, VnetHdr::kLen> out);

// A datagram read with NEEDS_CSUM and no segmentation carries only the pseudo-header
// sum in its checksum field (CHECKSUM_PARTIAL): completes the checksum in place so
// the datagram is what the wire would carry. Refuses offsets outside the datagram.
absl::Status FinishPartialChecksum(absl::Span<uint8_t> datagram, const VnetHdr& hdr);

// Cuts `datagram` (an IPv4 or IPv6 TCP super-segment as the TUN device returned it with
// `hdr`) into wire segments of at most hdr.gso_size payload bytes and calls `each`
// with every one, in order: the TCP header repeated with seq advanced, FIN and PSH
// on the last segment only, CWR on the first only, IPv4 idents counting up from the
// super-segment's, lengths and both checksums computed in full. `each`'s span lives
// only for the call. A datagram without segmentation is passed through once, its
// checksum finished when NEEDS_CSUM is set. Returns the number of segments; refuses
// (InvalidArgument, calling `each` never) a datagram whose headers or hdr do not
// describe a TCP super-segment: the IP version against gso_type, IPv4 options or IPv6
// extension headers, lengths, a gso_size of 0.
absl::StatusOr<size_t> SplitSuperSegment(absl::Span<const uint8_t> datagram,
                                         const VnetHdr& hdr,
                                         absl::FunctionRef<void(absl::Span<const uint8_t>)> each);

// Builds one super-segment out of consecutive complete datagrams of one TCP flow, as
// wrench's endpoint emits them, for one write with segmentation left to the kernel.
// A datagram joins the batch when the kernel's cutting of the batch would give it
// back byte for byte apart from its IPv4 ident: the same IP header (but lengths and
// ident), the same TCP header (options included) but for seq and PSH, seq continuing
// the batch, a payload of at most the first one's length, and nothing after a shorter
// segment or one with PSH. Only ACK and PSH flags join; a datagram with SYN, FIN, RST,
// URG, ECE or CWR, no payload, IPv4 options or IPv6 extension headers is a batch of
// its own.
class GsoBatch {
 public:
  // The largest super-segment: an IPv4 total length, an IPv6 payload length.
  static constexpr size_t kMaxLen = 65535;

  // Adds `datagram` (checksums complete) to the batch. False, adding nothing, when it
  // cannot join: Finish the batch and Append again to an empty one, which always
  // takes it.
  bool Append(absl::Span<const uint8_t> datagram);

  bool empty() const { return count_ == 0; }
  size_t count() const { return count_; }

  // The datagram to write and its header. One datagram is returned as it came, with
  // an all-zero header; several as a super-segment with NEEDS_CSUM (the TCP checksum
  // field holding the pseudo-header sum, as CHECKSUM_PARTIAL expects) and the GSO
  // fields. Valid until the next Append or Clear.
  absl::Span<const uint8_t> Finish(VnetHdr* hdr);
  void Clear();

 private:
  std::vector<uint8_t> buf_;
  size_t count_ = 0;
  size_t ip_len_ = 0;   // IP header bytes
  size_t hdr_len_ = 0;  // IP + TCP header bytes
  size_t gso_size_ = 0;
  uint32_t next_seq_ = 0;
  bool v6_ = false;
  bool closed_ = false;  // a shorter segment or PSH ended the run
};

}  // namespace wrench::stack
