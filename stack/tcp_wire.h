// The TCP header (RFC 9293 §3.1) and its options: flags, a TcpRepr of plain fields,
// and checked parse / emit. Payload and unknown option bytes are views into the
// caller's buffer; nothing here allocates.
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
#include "stack/seq.h"

namespace wrench::stack {

// Flag bits in wire order (byte 13 of the header).
enum TcpFlag : uint8_t {
  kFin = 0x01,
  kSyn = 0x02,
  kRst = 0x04,
  kPsh = 0x08,
  kAck = 0x10,
  kUrg = 0x20,
  kEce = 0x40,
  kCwr = 0x80,
};

// A set of TCP flags.
class TcpFlags {
 public:
  constexpr TcpFlags() = default;
  constexpr explicit TcpFlags(uint8_t bits) : bits_(bits) {}
  constexpr uint8_t bits() const { return bits_; }
  constexpr bool has(uint8_t f) const { return (bits_ & f) == f; }
  constexpr bool any(uint8_t f) const { return (bits_ & f) != 0; }
  constexpr TcpFlags with(uint8_t f) const { return TcpFlags(bits_ | f); }
  constexpr TcpFlags without(uint8_t f) const { return TcpFlags(bits_ & ~f); }
  constexpr bool operator==(const TcpFlags&) const = default;
  // "SYN+ACK", "ACK", "FIN+PSH+ACK"; "none" for no flag. Order: SYN FIN RST PSH ACK URG ECE CWR.
  std::string ToString() const;
  // Parses "SYN+ACK" (case-insensitive names joined by '+'); nullopt on an unknown name.
  static std::optional<TcpFlags> Parse(absl::string_view text);
  friend std::ostream& operator<<(std::ostream& os, TcpFlags f) { return os << f.ToString(); }

 private:
  uint8_t bits_ = 0;
};

// Option kinds the stack interprets (IANA's registry), with the RFC that defines each.
enum TcpOptionKind : uint8_t {
  kOptEol = 0, kOptNop = 1, kOptMss = 2,      // RFC 9293 §3.2
  kOptWindowScale = 3, kOptTimestamps = 8,    // RFC 7323
  kOptSackPermitted = 4, kOptSack = 5,        // RFC 2018
};

struct SackBlock {
  SeqNum left, right;  // [left, right)
  bool operator==(const SackBlock&) const = default;
};

struct Timestamps {
  uint32_t value = 0;  // TSval
  uint32_t echo = 0;   // TSecr
  bool operator==(const Timestamps&) const = default;
};

// An option of a kind this stack does not interpret, kept byte for byte.
struct RawOption {
  uint8_t kind = 0;
  absl::Span<const uint8_t> data;  // the value bytes (after kind and length)
  bool operator==(const RawOption& o) const;
};

// The options of one segment as plain fields. Layout details (NOP padding, order)
// are not kept: Emit writes a canonical layout, so parse(emit(x)) == x. The layout
// is Linux's: MSS, SACK-permitted + timestamps, NOP + window scale, NOP NOP + SACK
// blocks, then raw options, padded with EOL to a multiple of 4 — or, when that would
// need more than 40 bytes, the same order without NOPs (options a peer packed densely).
struct TcpOptions {
  static constexpr size_t kMaxSackBlocks = 4;
  static constexpr size_t kMaxRawOptions = 4;

  std::optional<uint16_t> mss;
  std::optional<uint8_t> window_scale;  // shift count as sent (RFC 7323 caps use at 14)
  bool sack_permitted = false;
  std::optional<Timestamps> timestamps;
  uint8_t sack_count = 0;
  std::array<SackBlock, kMaxSackBlocks> sack{};
  uint8_t raw_count = 0;
  std::array<RawOption, kMaxRawOptions> raw{};

  // Bytes Emit will write, padded to a multiple of 4. More than 40 is not representable.
  size_t EmittedLen() const;
  bool operator==(const TcpOptions& o) const;
};

struct TcpRepr {
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  SeqNum seq;
  SeqNum ack;  // meaningful when flags has ACK; emitted as is
  TcpFlags flags;
  uint16_t window = 0;  // as on the wire, unscaled
  uint16_t urgent = 0;
  TcpOptions options;
  absl::Span<const uint8_t> payload;

  size_t header_len() const { return 20 + options.EmittedLen(); }
  // Sequence space consumed: payload + SYN + FIN (RFC 9293 §3.4 SEG.LEN).
  uint32_t seg_len() const {
    return static_cast<uint32_t>(payload.size()) + (flags.has(kSyn) ? 1 : 0) +
           (flags.has(kFin) ? 1 : 0);
  }
  bool operator==(const TcpRepr& o) const;
};

class IpAddress;

// Checked parse of a TCP segment (header, options and payload; `bytes` is exactly
// the IP payload). The checksum is verified against the pseudo-header of src/dst
// when verify_checksum. Errors name what is wrong: truncated, bad data offset, bad
// option length, bad checksum, more than kMaxRawOptions unknown options. A known
// option that appears twice is not an error: the last one wins (as on Linux).
absl::StatusOr<TcpRepr> ParseTcp(absl::Span<const uint8_t> bytes, const IpAddress& src,
                                 const IpAddress& dst, bool verify_checksum = true);

// As ParseTcp, filling *repr in place (ParseSegment's hot path; see ParseIpv4Into).
// *repr must be default-initialized (options empty); on error it is unspecified.
absl::Status ParseTcpInto(absl::Span<const uint8_t> bytes, const IpAddress& src,
                          const IpAddress& dst, TcpRepr* repr, bool verify_checksum = true);

// Where the known options of one header start (the offset of their kind byte from
// the start of the options), for stack/datagram_view.h; 0xff: absent. When an option
// appears twice, the last one (the one ParseTcp keeps).
struct TcpOptionOffsets {
  static constexpr uint8_t kAbsent = 0xff;
  uint8_t mss = kAbsent;
  uint8_t window_scale = kAbsent;
  uint8_t sack = kAbsent;
  uint8_t timestamps = kAbsent;
};

// The checks ParseTcp makes on the fixed header: length, data offset, and the
// checksum when verify_checksum. On success *header_len is the header's length
// with options.
absl::Status CheckTcpHeader(absl::Span<const uint8_t> bytes, const IpAddress& src,
                            const IpAddress& dst, bool verify_checksum, size_t* header_len);
// ParseTcp's option parser, over the option bytes of one header (after the fixed 20);
// fills *options and, when `at` is not null, where each known option lies.
absl::Status ParseTcpOptions(absl::Span<const uint8_t> bytes, TcpOptions* options,
                             TcpOptionOffsets* at = nullptr);

// Writes header, options and payload into `out` (at least header_len() +
// payload.size() bytes) and fills in data offset and checksum. Returns bytes
// written, or an error when the options do not fit in 40 bytes or `out` is short.
absl::StatusOr<size_t> EmitTcp(const TcpRepr& repr, const IpAddress& src, const IpAddress& dst,
                               absl::Span<uint8_t> out);

std::ostream& operator<<(std::ostream& os, const TcpRepr& r);

}  // namespace wrench::stack
