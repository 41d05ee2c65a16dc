// segment_parser: any bytes as an IPv4 or IPv6 datagram (stack/segment.h). What
// parses must emit again and re-parse equal. Its mutator is fuzz/segment_mutator.cc.
#include <algorithm>
#include <array>
#include <cstring>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "fuzz/check.h"
#include "fuzz/targets.h"
#include "stack/checksum.h"
#include "stack/datagram_view.h"
#include "stack/segment.h"

namespace wrench::fuzz {
namespace {

using stack::IpAddress;
using stack::ParseSegment;
using stack::Segment;

constexpr size_t kMaxDatagram = 65535 + 60;

std::string Describe(const Segment& s) {
  std::ostringstream os;
  os << s << " | ";
  std::visit([&os](const auto& h) { os << h; }, s.ip);
  return os.str();
}

std::string Hex(absl::Span<const uint8_t> b) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (uint8_t c : b.first(std::min<size_t>(b.size(), 128))) {
    out += kDigits[c >> 4];
    out += kDigits[c & 15];
  }
  if (b.size() > 128) out += "...";
  return out;
}

// Emit, re-parse, compare; emit again and compare bytes.
void CheckRoundTrip(const Segment& seg, bool thorough) {
  static std::array<uint8_t, kMaxDatagram> first_buf, second_buf;
  auto first = stack::EmitSegment(seg, absl::MakeSpan(first_buf));
  WRENCH_CHECK(first.ok()) << "a parsed segment does not emit: " << first.status()
                           << " (its options need " << seg.tcp.options.EmittedLen() << " bytes)"
                           << "\n    segment: " << Describe(seg);
  absl::Span<const uint8_t> bytes(first_buf.data(), *first);
  WRENCH_CHECK(*first == seg.BufferLen()) << "emitted " << *first << " bytes, BufferLen() says "
                                          << seg.BufferLen();
  auto again = ParseSegment(bytes);
  WRENCH_CHECK(again.ok()) << "emitted datagram does not parse: " << again.status()
                           << "\n    segment: " << Describe(seg) << "\n    bytes: " << Hex(bytes);
  // The IP payload length is derived: a denser option layout than the canonical
  // one parses with a different one. Everything else must be equal.
  Segment expected = seg;
  std::visit(
      [&](auto& h) {
        h.payload_len = static_cast<uint16_t>(seg.tcp.header_len() + seg.tcp.payload.size());
      },
      expected.ip);
  WRENCH_CHECK(*again == expected) << "re-parse differs\n    first:  " << Describe(seg)
                                   << "\n    second: " << Describe(*again);
  if (!thorough) return;
  auto second = stack::EmitSegment(*again, absl::MakeSpan(second_buf));
  WRENCH_CHECK(second.ok() && *second == *first &&
               std::memcmp(first_buf.data(), second_buf.data(), *first) == 0)
      << "emit(parse(emit(x))) != emit(x) for " << Describe(seg);
}

// The one-line forms must not crash, and the addresses they print parse back.
void CheckPrinting(const Segment& seg) {
  std::ostringstream os;
  os << seg;
  WRENCH_CHECK(!os.str().empty());
  for (const IpAddress* a : {&seg.src(), &seg.dst()}) {
    auto back = IpAddress::Parse(a->ToString());
    WRENCH_CHECK(back.has_value() && *back == *a)
        << "address " << a->ToString() << " does not parse back to itself";
  }
}

// What a closed port answers (RFC 9293 §3.10.7.1) goes back to the sender, is a
// RST in the right sequence space, and emits and parses like any segment.
void CheckClosedPortReset(const Segment& seg) {
  if (seg.tcp.flags.has(stack::kRst)) return;
  Segment rst = stack::ClosedPortReset(seg);
  WRENCH_CHECK(rst.src() == seg.dst() && rst.dst() == seg.src() && rst.is_v6() == seg.is_v6() &&
               rst.tcp.src_port == seg.tcp.dst_port && rst.tcp.dst_port == seg.tcp.src_port)
      << "reset not addressed back to the sender: " << Describe(rst);
  WRENCH_CHECK(rst.tcp.flags.has(stack::kRst) && rst.tcp.payload.empty() &&
               rst.tcp.options.EmittedLen() == 0);
  if (seg.tcp.flags.has(stack::kAck)) {
    WRENCH_CHECK(rst.tcp.seq == seg.tcp.ack && !rst.tcp.flags.has(stack::kAck)) << Describe(rst);
  } else {
    WRENCH_CHECK(rst.tcp.flags.has(stack::kAck) && rst.tcp.seq == stack::SeqNum(0) &&
                 rst.tcp.ack == seg.tcp.seq + seg.tcp.seg_len())
        << Describe(rst);
  }
  static std::array<uint8_t, 128> buf;
  auto n = stack::EmitSegment(rst, absl::MakeSpan(buf));
  WRENCH_CHECK(n.ok()) << "reset does not emit: " << n.status();
  auto back = ParseSegment({buf.data(), *n});
  WRENCH_CHECK(back.ok() && back->tcp == rst.tcp) << "reset does not parse back: " << Describe(rst);
}

// Picks the inputs that also get the costlier checks: a hash of every byte, so a
// reproducer always takes the same path and any mutation draws again. Hashing only
// the last byte was skewed by zero padding (38 % of inputs took the thorough path,
// not an eighth); hashing a few bytes let mutants inherit the printing path from the
// corpus inputs libFuzzer kept for its coverage (10 %, not a 32nd).
uint64_t Selector(const uint8_t* data, size_t size) {
  uint64_t h = size * 0x9e3779b97f4a7c15u;
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    uint64_t word;
    std::memcpy(&word, data + i, 8);
    h = (h ^ word) * 0xbf58476d1ce4e5b9u;
    h ^= h >> 31;
  }
  uint64_t tail = 0;
  if (i < size) std::memcpy(&tail, data + i, size - i);  // data may be null when size is 0
  h = (h ^ tail) * 0x94d049bb133111ebu;
  return h ^ (h >> 29);
}

}  // namespace

// The datagram view (stack/datagram_view.h) accepts what the parser accepts, reads
// the same fields, and its patches keep a right checksum right.
void CheckDatagramView(absl::Span<const uint8_t> in, const absl::StatusOr<Segment>& strict) {
  auto layout = stack::CheckDatagram(in);
  WRENCH_CHECK(layout.ok() == strict.ok()) << "the view's check and the parser disagree: "
                                           << layout.status() << " / " << strict.status();
  if (!layout.ok()) {
    WRENCH_CHECK(layout.status().message() == strict.status().message())
        << "the view refuses with " << layout.status() << ", the parser with " << strict.status();
    return;
  }
  const Segment& seg = *strict;
  std::vector<uint8_t> copy(in.begin(), in.begin() + layout->len);
  stack::DatagramView v(absl::MakeSpan(copy), *layout);
  WRENCH_CHECK(v.src() == seg.src() && v.dst() == seg.dst() && v.ttl() == seg.ttl() &&
               v.src_port() == seg.tcp.src_port && v.dst_port() == seg.tcp.dst_port &&
               v.seq() == seg.tcp.seq && v.ack() == seg.tcp.ack && v.flags() == seg.tcp.flags &&
               v.window() == seg.tcp.window && v.urgent() == seg.tcp.urgent &&
               v.mss() == seg.tcp.options.mss &&
               v.window_scale() == seg.tcp.options.window_scale &&
               v.timestamps() == seg.tcp.options.timestamps &&
               v.sack_count() == seg.tcp.options.sack_count &&
               v.payload().size() == seg.tcp.payload.size())
      << "the view reads other fields than the parser: " << Describe(seg);
  v.set_ttl(static_cast<uint8_t>(seg.ttl() + 1));
  v.set_seq(seg.tcp.seq + 1);
  v.set_window(static_cast<uint16_t>(~seg.tcp.window));
  v.set_mss(1);
  if (!v.payload().empty()) {
    const uint8_t b = static_cast<uint8_t>(~v.payload().back());
    v.PatchPayload(v.payload().size() - 1, absl::MakeConstSpan(&b, 1));
  }
  auto patched = ParseSegment(copy);
  WRENCH_CHECK(patched.ok()) << "patched through the view, the datagram fails: "
                             << patched.status() << " (" << Describe(seg) << ")";
  WRENCH_CHECK(patched->tcp.seq == seg.tcp.seq + 1 &&
               patched->tcp.window == static_cast<uint16_t>(~seg.tcp.window))
      << "the view's patches did not land: " << Describe(*patched);
}

int FuzzSegmentParser(const uint8_t* data, size_t size) {
  absl::Span<const uint8_t> in(data, size);
  uint64_t selector = Selector(data, size);
  bool thorough = (selector & 7) == 0;           // an eighth of the inputs
  bool printing = ((selector >> 3) & 31) == 0;   // a 32nd
  // One parse for most inputs: with checksums verified. Without verification only
  // where that one failed on a checksum, and (thorough) to check the two agree.
  auto strict = ParseSegment(in);
  if (thorough) CheckDatagramView(in, strict);
  absl::StatusOr<Segment> loose;
  const Segment* seg = nullptr;
  if (strict.ok()) {
    seg = &*strict;
    if (thorough) {
      auto unverified = ParseSegment(in, {.verify_checksums = false});
      WRENCH_CHECK(unverified.ok() && *unverified == *strict)
          << "parse with checksums verified differs from the one without";
    }
  } else {
    WRENCH_CHECK(!strict.status().message().empty()) << "refusal without a reason";
    if (!absl::StrContains(strict.status().message(), "checksum")) {
      if (thorough) {
        WRENCH_CHECK(!ParseSegment(in, {.verify_checksums = false}).ok())
            << "refused for " << strict.status() << ", but parses without checksum verification";
      }
      return 0;
    }
    loose = ParseSegment(in, {.verify_checksums = false});
    if (!loose.ok()) {
      WRENCH_CHECK(!loose.status().message().empty()) << "refusal without a reason";
      return 0;
    }
    seg = &*loose;
  }
  CheckRoundTrip(*seg, thorough);
  if (thorough) CheckClosedPortReset(*seg);
  if (printing) CheckPrinting(*seg);
  return 0;
}

}  // namespace wrench::fuzz
