// The TCP header and options on the wire (RFC 9293 §3.1, RFC 7323, RFC 2018):
// checked parse into a TcpRepr, emit in one canonical option layout, and the
// packetdrill-style one-line form used in logs and test failures.
#include "stack/tcp_wire.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "stack/checksum.h"
#include "stack/ip.h"

namespace wrench::stack {
namespace {

inline uint16_t Get16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint32_t Get32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
inline void Put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void Put32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

struct FlagName {
  uint8_t bit;
  const char* name;
};
// ToString order (SYN first, as people say "SYN+ACK", "FIN+ACK").
constexpr FlagName kFlagNames[] = {
    {kSyn, "SYN"}, {kFin, "FIN"}, {kRst, "RST"}, {kPsh, "PSH"},
    {kAck, "ACK"}, {kUrg, "URG"}, {kEce, "ECE"}, {kCwr, "CWR"},
};

// packetdrill's letters in its order, so SYN+ACK reads "S." and FIN+ACK "F.".
constexpr struct {
  uint8_t bit;
  char letter;
} kFlagLetters[] = {
    {kFin, 'F'}, {kSyn, 'S'}, {kRst, 'R'}, {kPsh, 'P'},
    {kAck, '.'}, {kUrg, 'U'}, {kEce, 'E'}, {kCwr, 'W'},
};

// Exact option lengths, kind + length bytes included (RFC 9293 §3.2 for MSS,
// RFC 7323 §2.2 and §3.2, RFC 2018 §2 and §3).
constexpr uint8_t kMssLen = 4;
constexpr uint8_t kWindowScaleLen = 3;
constexpr uint8_t kSackPermittedLen = 2;
constexpr uint8_t kTimestampsLen = 10;

absl::Status BadOptionLength(uint8_t kind, uint8_t len) {
  return absl::InvalidArgumentError(
      absl::StrFormat("TCP option kind %d has bad length %d", kind, len));
}

// RFC 9293 §3.1 "Options": an option is either a single kind octet (EOL, NOP) or
// kind, length (counting both), value. Parsing stops at EOL; what follows it is
// padding. A known option seen twice replaces the first (the last one wins), as
// Linux's tcp_parse_options does: refusing would drop segments real stacks accept.
absl::Status ParseOptions(absl::Span<const uint8_t> b, TcpOptions* o, TcpOptionOffsets* at) {
  size_t i = 0;
  while (i < b.size()) {
    uint8_t kind = b[i];
    if (kind == kOptEol) break;
    if (kind == kOptNop) {
      ++i;
      continue;
    }
    if (b.size() - i < 2) {
      return absl::InvalidArgumentError(
          absl::StrFormat("TCP option kind %d truncated (no length byte)", kind));
    }
    uint8_t len = b[i + 1];
    if (len < 2) return BadOptionLength(kind, len);
    if (len > b.size() - i) {
      return absl::InvalidArgumentError(
          absl::StrFormat("TCP option kind %d length %d runs past the options (%d bytes left)",
                          kind, len, b.size() - i));
    }
    const uint8_t* v = b.data() + i + 2;
    switch (kind) {
      case kOptMss:
        if (len != kMssLen) return BadOptionLength(kind, len);
        o->mss = Get16(v);
        if (at != nullptr) at->mss = static_cast<uint8_t>(i);
        break;
      case kOptWindowScale:
        if (len != kWindowScaleLen) return BadOptionLength(kind, len);
        o->window_scale = v[0];
        if (at != nullptr) at->window_scale = static_cast<uint8_t>(i);
        break;
      case kOptSackPermitted:
        if (len != kSackPermittedLen) return BadOptionLength(kind, len);
        o->sack_permitted = true;
        break;
      case kOptTimestamps:
        if (len != kTimestampsLen) return BadOptionLength(kind, len);
        o->timestamps = Timestamps{Get32(v), Get32(v + 4)};
        if (at != nullptr) at->timestamps = static_cast<uint8_t>(i);
        break;
      case kOptSack: {
        // RFC 2018 §3: length 2 + 8n; n is at most 4 in 40 option bytes.
        size_t n = (len - 2) / 8;  // mutate: equivalent - (2 + 8n and 8n + 4 divide alike)
        if ((len - 2) % 8 != 0 || n < 1 || n > TcpOptions::kMaxSackBlocks) {
          return BadOptionLength(kind, len);
        }
        o->sack_count = static_cast<uint8_t>(n);
        for (size_t k = 0; k < n; ++k) {
          o->sack[k] = SackBlock{SeqNum(Get32(v + 8 * k)), SeqNum(Get32(v + 8 * k + 4))};
        }
        for (size_t k = n; k < TcpOptions::kMaxSackBlocks; ++k) o->sack[k] = SackBlock{};
        if (at != nullptr) at->sack = static_cast<uint8_t>(i);
        break;
      }
      default:
        if (o->raw_count == TcpOptions::kMaxRawOptions) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "too many unknown TCP options (more than %d; kind %d is one too many)",
              TcpOptions::kMaxRawOptions, kind));
        }
        o->raw[o->raw_count++] = RawOption{kind, b.subspan(i + 2, len - 2u)};
        break;
    }
    i += len;
  }
  return absl::OkStatus();
}

// The canonical layout, the one Linux sends on a SYN, so each option sits on its
// natural alignment (RFC 7323 Appendix A suggests the NOP padding for timestamps):
//   MSS(4) | SACK-permitted+TS (12) or NOP NOP TS (12) or NOP NOP SACK-permitted (4)
//   | NOP WS (4) | NOP NOP SACK (4+8n) | raw options, unaligned | EOL padding to 4.
// When that needs more than the 40 bytes a header holds, the dense layout: the same
// order without any NOP (MSS 4, SACK-permitted 2, TS 10, WS 3, SACK 2+8n, raw), so
// whatever a peer packed densely into 40 bytes is emitted again.
// Returns the canonical layout's unpadded length.
size_t CanonicalLen(const TcpOptions& o) {
  size_t n = 0;
  if (o.mss) n += 4;
  if (o.timestamps) {
    n += 12;
  } else if (o.sack_permitted) {
    n += 4;
  }
  if (o.window_scale) n += 4;
  size_t sacks = std::min<size_t>(o.sack_count, TcpOptions::kMaxSackBlocks);
  if (sacks > 0) n += 4 + 8 * sacks;
  size_t raws = std::min<size_t>(o.raw_count, TcpOptions::kMaxRawOptions);
  for (size_t k = 0; k < raws; ++k) n += 2 + o.raw[k].data.size();
  return n;
}

// The NOPs the canonical layout adds for alignment: the dense one is that much shorter.
size_t CanonicalNops(const TcpOptions& o) {
  size_t n =
      o.timestamps.has_value() != o.sack_permitted ? 2 : 0;  // NOP NOP before TS or SACK-permitted
  if (o.window_scale) n += 1;
  if (o.sack_count > 0) n += 2;
  return n;
}

// The unpadded length of the layout EmitTcp uses.
size_t UnpaddedLen(const TcpOptions& o) {
  const size_t canonical = CanonicalLen(o);
  return canonical > 40 ? canonical - CanonicalNops(o) : canonical;
}

// Writes the known options in the one order both layouts share (MSS, SACK-permitted,
// TS, WS, SACK); `aligned` adds the canonical layout's NOPs (see CanonicalLen), without
// it the layout is the dense one. Returns the end of what it wrote.
uint8_t* WriteKnown(const TcpOptions& o, uint8_t* p, bool aligned) {
  auto nops = [&](size_t n) {
    if (!aligned) return;
    std::memset(p, kOptNop, n);
    p += n;
  };
  if (o.mss) {
    p[0] = kOptMss;
    p[1] = kMssLen;
    Put16(p + 2, *o.mss);
    p += 4;
  }
  // SACK-permitted and TS share one aligned word of 12 bytes; either alone takes NOP NOP.
  if (o.sack_permitted) {
    if (!o.timestamps) nops(2);
    p[0] = kOptSackPermitted;
    p[1] = kSackPermittedLen;
    p += 2;
  }
  if (o.timestamps) {
    if (!o.sack_permitted) nops(2);
    p[0] = kOptTimestamps;
    p[1] = kTimestampsLen;
    Put32(p + 2, o.timestamps->value);
    Put32(p + 6, o.timestamps->echo);
    p += 10;
  }
  if (o.window_scale) {
    nops(1);
    p[0] = kOptWindowScale;
    p[1] = kWindowScaleLen;
    p[2] = *o.window_scale;
    p += 3;
  }
  if (o.sack_count > 0) {
    nops(2);
    p[0] = kOptSack;
    p[1] = static_cast<uint8_t>(2 + 8 * o.sack_count);
    p += 2;
    for (size_t k = 0; k < o.sack_count; ++k) {
      Put32(p, o.sack[k].left.raw());
      Put32(p + 4, o.sack[k].right.raw());
      p += 8;
    }
  }
  return p;
}

void WriteOptions(const TcpOptions& o, uint8_t* p, size_t padded) {
  uint8_t* const start = p;
  // A padded length short of the canonical layout's means the dense one (see UnpaddedLen).
  p = WriteKnown(o, p, padded >= ((CanonicalLen(o) + 3) & ~size_t{3}));
  // Raw options go out byte for byte whatever their kind, so a fault rule can craft
  // a malformed or known-kind option on purpose; only kinds the parser does not
  // interpret round-trip through parse(emit(x)).
  for (size_t k = 0; k < o.raw_count; ++k) {
    const RawOption& r = o.raw[k];
    p[0] = r.kind;
    p[1] = static_cast<uint8_t>(2 + r.data.size());
    if (!r.data.empty()) std::memmove(p + 2, r.data.data(), r.data.size());
    p += 2 + r.data.size();
  }
  // RFC 9293 §3.1: "The TCP header padding is composed of zeros", i.e. EOL.
  std::memset(p, kOptEol, padded - static_cast<size_t>(p - start));
}

// Returns the options' emitted length, or why they cannot be emitted.
absl::StatusOr<size_t> CheckEmittable(const TcpOptions& o) {
  if (o.sack_count > TcpOptions::kMaxSackBlocks) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "sack_count %d exceeds %d", o.sack_count, TcpOptions::kMaxSackBlocks));
  }
  if (o.raw_count > TcpOptions::kMaxRawOptions) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "raw_count %d exceeds %d", o.raw_count, TcpOptions::kMaxRawOptions));
  }
  size_t len = o.EmittedLen();
  if (len > 40) {
    // RFC 9293 §3.1: the data offset is 4 bits, so header <= 60 bytes, options <= 40.
    return absl::InvalidArgumentError(
        absl::StrFormat("TCP options need %d bytes, at most 40 fit", len));
  }
  return len;
}

void PrintHex(std::ostream& os, absl::Span<const uint8_t> d) {
  for (uint8_t b : d) os << absl::StrFormat("%02x", b);
}

}  // namespace

std::string TcpFlags::ToString() const {
  if (bits_ == 0) return "none";
  std::string out;
  for (const FlagName& f : kFlagNames) {
    if ((bits_ & f.bit) == 0) continue;
    if (!out.empty()) out += '+';
    out += f.name;
  }
  return out;
}

std::optional<TcpFlags> TcpFlags::Parse(absl::string_view text) {
  if (absl::EqualsIgnoreCase(text, "none")) return TcpFlags();
  uint8_t bits = 0;
  while (true) {
    size_t plus = text.find('+');
    absl::string_view name = text.substr(0, plus);
    const FlagName* found = nullptr;
    for (const FlagName& f : kFlagNames) {
      if (absl::EqualsIgnoreCase(name, f.name)) found = &f;
    }
    if (found == nullptr) return std::nullopt;  // also catches "" from "SYN++ACK"
    bits |= found->bit;
    if (plus == absl::string_view::npos) break;
    text.remove_prefix(plus + 1);
  }
  return TcpFlags(bits);
}

bool RawOption::operator==(const RawOption& o) const {
  return kind == o.kind && std::equal(data.begin(), data.end(), o.data.begin(), o.data.end());
}

size_t TcpOptions::EmittedLen() const { return (UnpaddedLen(*this) + 3) & ~size_t{3}; }

bool TcpOptions::operator==(const TcpOptions& o) const {
  if (mss != o.mss || window_scale != o.window_scale || sack_permitted != o.sack_permitted ||
      timestamps != o.timestamps || sack_count != o.sack_count || raw_count != o.raw_count) {
    return false;
  }
  // Only the used entries count; the rest of each array is scratch.
  size_t sacks = std::min<size_t>(sack_count, kMaxSackBlocks);
  size_t raws = std::min<size_t>(raw_count, kMaxRawOptions);
  return std::equal(sack.begin(), sack.begin() + sacks, o.sack.begin()) &&
         std::equal(raw.begin(), raw.begin() + raws, o.raw.begin());
}

bool TcpRepr::operator==(const TcpRepr& o) const {
  return src_port == o.src_port && dst_port == o.dst_port && seq == o.seq && ack == o.ack &&
         flags == o.flags && window == o.window && urgent == o.urgent && options == o.options &&
         std::equal(payload.begin(), payload.end(), o.payload.begin(), o.payload.end());
}

absl::StatusOr<TcpRepr> ParseTcp(absl::Span<const uint8_t> bytes, const IpAddress& src,
                                 const IpAddress& dst, bool verify_checksum) {
  // Filled where it is returned (NRVO): no copy of the repr on the way out.
  absl::StatusOr<TcpRepr> result(absl::in_place);
  absl::Status s = ParseTcpInto(bytes, src, dst, &*result, verify_checksum);
  if (!s.ok()) result = std::move(s);
  return result;
}

absl::Status CheckTcpHeader(absl::Span<const uint8_t> bytes, const IpAddress& src,
                            const IpAddress& dst, bool verify_checksum, size_t* header_len_out) {
  if (bytes.size() < 20) {
    return absl::InvalidArgumentError(
        absl::StrFormat("truncated TCP header (%d bytes, need 20)", bytes.size()));
  }
  const uint8_t* p = bytes.data();
  // RFC 9293 §3.1: Data Offset counts 32-bit words; the header is at least 5.
  size_t doff = p[12] >> 4;
  if (doff < 5) {
    return absl::InvalidArgumentError(
        absl::StrFormat("bad TCP data offset %d (32-bit words, minimum 5)", doff));
  }
  size_t header_len = doff * 4;
  if (header_len > bytes.size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("TCP data offset %d (%d bytes) exceeds segment (%d bytes)", doff,
                        header_len, bytes.size()));
  }
  if (verify_checksum) {
    // RFC 9293 §3.1: the checksum covers pseudo-header, header and text; summing
    // with the checksum field in place gives all ones (0 after inversion).
    uint64_t sum = ChecksumAccumulate(
        bytes, PseudoHeaderSum(src, dst, kIpProtoTcp, static_cast<uint32_t>(bytes.size())));
    if (ChecksumFinish(sum) != 0) {
      uint16_t field = Get16(p + 16);
      // Subtracting the field (adding its complement) gives what it should have been.
      uint16_t expected = ChecksumFinish(sum + static_cast<uint16_t>(~field));
      return absl::InvalidArgumentError(absl::StrFormat(
          "bad TCP checksum 0x%04x (expected 0x%04x)", field, expected));
    }
  }
  *header_len_out = header_len;
  return absl::OkStatus();
}

absl::Status ParseTcpOptions(absl::Span<const uint8_t> bytes, TcpOptions* options,
                             TcpOptionOffsets* at) {
  return ParseOptions(bytes, options, at);
}

absl::Status ParseTcpInto(absl::Span<const uint8_t> bytes, const IpAddress& src,
                          const IpAddress& dst, TcpRepr* repr, bool verify_checksum) {
  size_t header_len = 0;
  if (absl::Status s = CheckTcpHeader(bytes, src, dst, verify_checksum, &header_len); !s.ok()) {
    return s;
  }
  const uint8_t* p = bytes.data();
  TcpRepr& r = *repr;
  r.src_port = Get16(p);
  r.dst_port = Get16(p + 2);
  r.seq = SeqNum(Get32(p + 4));
  r.ack = SeqNum(Get32(p + 8));
  // The low nibble of byte 12 (reserved bits, AccECN's AE) is not kept.
  r.flags = TcpFlags(p[13]);
  r.window = Get16(p + 14);
  r.urgent = Get16(p + 18);
  if (header_len > 20) {  // mutate: equivalent > (no options parse to none)
    absl::Status s = ParseOptions(bytes.subspan(20, header_len - 20), &r.options, nullptr);
    if (!s.ok()) return s;
  }
  r.payload = bytes.subspan(header_len);
  return absl::OkStatus();
}

absl::StatusOr<size_t> EmitTcp(const TcpRepr& repr, const IpAddress& src, const IpAddress& dst,
                               absl::Span<uint8_t> out) {
  absl::StatusOr<size_t> options_len = CheckEmittable(repr.options);
  if (!options_len.ok()) return options_len.status();
  size_t header_len = 20 + *options_len;
  size_t total = header_len + repr.payload.size();
  if (out.size() < total) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "output buffer too small for TCP segment (%d bytes, need %d)", out.size(), total));
  }
  uint8_t* p = out.data();
  // The payload first: it may already live in `out` (in place, or where the header
  // goes), and memmove handles either. Raw option data must not alias `out`.
  // mutate: equivalent + (moving the payload onto itself changes nothing)
  if (!repr.payload.empty() && repr.payload.data() != p + header_len) {
    std::memmove(p + header_len, repr.payload.data(), repr.payload.size());
  }
  Put16(p, repr.src_port);
  Put16(p + 2, repr.dst_port);
  Put32(p + 4, repr.seq.raw());
  Put32(p + 8, repr.ack.raw());
  p[12] = static_cast<uint8_t>((header_len / 4) << 4);
  p[13] = repr.flags.bits();
  Put16(p + 14, repr.window);
  Put16(p + 16, 0);
  Put16(p + 18, repr.urgent);
  WriteOptions(repr.options, p + 20, header_len - 20);
  uint64_t sum = ChecksumAccumulate(
      out.first(total), PseudoHeaderSum(src, dst, kIpProtoTcp, static_cast<uint32_t>(total)));
  Put16(p + 16, ChecksumFinish(sum));
  return total;
}

// packetdrill's notation: flags as letters, seq:end(len), then ack, win and the
// options in emitted order without their NOP/EOL padding.
std::ostream& operator<<(std::ostream& os, const TcpRepr& r) {
  if (r.flags.bits() == 0) {
    os << "none";
  } else {
    for (const auto& f : kFlagLetters) {
      if (r.flags.has(f.bit)) os << f.letter;
    }
  }
  uint32_t len = static_cast<uint32_t>(r.payload.size());
  os << ' ' << r.seq << ':' << (r.seq + len) << '(' << len << ')';
  if (r.flags.has(kAck)) os << " ack " << r.ack;
  os << " win " << r.window;
  if (r.flags.has(kUrg) || r.urgent != 0) os << " urg " << r.urgent;
  const TcpOptions& o = r.options;
  bool any = false;
  auto next = [&]() -> std::ostream& {
    os << (any ? "," : " <");
    any = true;
    return os;
  };
  if (o.mss) next() << "mss " << *o.mss;
  if (o.sack_permitted) next() << "sackOK";
  if (o.timestamps) next() << "TS val " << o.timestamps->value << " ecr " << o.timestamps->echo;
  if (o.window_scale) next() << "wscale " << int{*o.window_scale};
  if (o.sack_count > 0) {
    next() << "sack";
    for (size_t k = 0; k < std::min<size_t>(o.sack_count, TcpOptions::kMaxSackBlocks); ++k) {
      os << ' ' << o.sack[k].left << ':' << o.sack[k].right;
    }
  }
  for (size_t k = 0; k < std::min<size_t>(o.raw_count, TcpOptions::kMaxRawOptions); ++k) {
    next() << "opt " << int{o.raw[k].kind};
    if (!o.raw[k].data.empty()) {
      os << ' ';
      PrintHex(os, o.raw[k].data);
    }
  }
  if (any) os << '>';
  return os;
}

}  // namespace wrench::stack
