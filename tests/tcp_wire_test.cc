// Tests for the TCP header and options (stack/tcp_wire.h): flags text, a real Linux
// SYN, parse(emit(x)) == x for every option combination and random segments, the
// canonical layout, the one-line form, and every malformed header the parser refuses.
#include "stack/tcp_wire.h"

#include <algorithm>
#include <cstring>
#include <sstream>
#include <vector>

#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "stack/checksum.h"
#include "stack/ip.h"
#include "tests/wire_testing.h"

namespace wrench::stack {
namespace {

using ::testing::HasSubstr;
using testing::IsErrorWith;
using testing::LinuxSynV4;
using testing::RandomSegments;

const IpAddress kSrc = IpAddress::V4({10, 0, 0, 1});
const IpAddress kDst = IpAddress::V4({10, 0, 0, 2});

// The TCP part of the Linux SYN (after its 20-byte IPv4 header).
std::vector<uint8_t> LinuxSynTcp() { return {LinuxSynV4().begin() + 20, LinuxSynV4().end()}; }

// Builds a segment from raw header fields and option bytes, with a correct checksum
// (so option tests fail on the option, not on the checksum).
std::vector<uint8_t> RawSegment(std::vector<uint8_t> options, uint8_t data_offset = 0,
                                size_t payload = 0) {
  while (options.size() % 4 != 0) options.push_back(0);
  const uint8_t header[20] = {0x30, 0x39, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0,
                              0x00, 0x10, 0xff, 0xff, 0, 0, 0, 0};
  std::vector<uint8_t> d(20 + options.size() + payload);
  std::copy(std::begin(header), std::end(header), d.begin());
  std::copy(options.begin(), options.end(), d.begin() + 20);
  for (size_t i = 0; i < payload; ++i)
    d[20 + options.size() + i] = static_cast<uint8_t>('a' + i % 26);
  d[12] = static_cast<uint8_t>((data_offset ? data_offset : 5 + options.size() / 4) << 4);
  uint16_t sum = ChecksumFinish(ChecksumAccumulate(
      d, PseudoHeaderSum(kSrc, kDst, kIpProtoTcp, static_cast<uint32_t>(d.size()))));
  d[16] = static_cast<uint8_t>(sum >> 8);
  d[17] = static_cast<uint8_t>(sum);
  return d;
}

absl::StatusOr<TcpRepr> Parse(const std::vector<uint8_t>& d) { return ParseTcp(d, kSrc, kDst); }

// Emits into a fresh buffer of exactly the announced size and parses it back.
TcpRepr RoundTrip(const TcpRepr& r, std::vector<uint8_t>& buf, const IpAddress& src = kSrc,
                  const IpAddress& dst = kDst) {
  buf.assign(r.header_len() + r.payload.size(), 0xcc);
  auto n = EmitTcp(r, src, dst, absl::MakeSpan(buf));
  EXPECT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(n.value_or(0), buf.size());
  auto back = ParseTcp(buf, src, dst);
  EXPECT_TRUE(back.ok()) << back.status();
  return back.value_or(TcpRepr{});
}

std::string Str(const TcpRepr& r) {
  std::ostringstream os;
  os << r;
  return os.str();
}

// ---------------------------------------------------------------- flags

TEST(TcpFlags, ToStringUsesFixedOrder) {
  EXPECT_EQ(TcpFlags(kSyn | kAck).ToString(), "SYN+ACK");
  EXPECT_EQ(TcpFlags(kAck | kPsh | kFin).ToString(), "FIN+PSH+ACK");
  EXPECT_EQ(TcpFlags(kAck).ToString(), "ACK");
  EXPECT_EQ(TcpFlags(0xff).ToString(), "SYN+FIN+RST+PSH+ACK+URG+ECE+CWR");
  EXPECT_EQ(TcpFlags().ToString(), "none");
}

TEST(TcpFlags, ParseIsCaseInsensitive) {
  EXPECT_EQ(TcpFlags::Parse("syn+ACK"), TcpFlags(kSyn | kAck));
  EXPECT_EQ(TcpFlags::Parse("Rst"), TcpFlags(kRst));
  EXPECT_EQ(TcpFlags::Parse("ack+fin"), TcpFlags(kFin | kAck));
  EXPECT_EQ(TcpFlags::Parse("none"), TcpFlags());
  EXPECT_EQ(TcpFlags::Parse("NONE"), TcpFlags());
  EXPECT_EQ(TcpFlags::Parse("ece+cwr+urg"), TcpFlags(kEce | kCwr | kUrg));
}

TEST(TcpFlags, ParseRejectsUnknownNamesAndEmptyParts) {
  for (const char* s : {"", "SYN+", "+SYN", "SYN++ACK", "FOO", "SYN ACK", "SYN,ACK", "S."}) {
    EXPECT_EQ(TcpFlags::Parse(s), std::nullopt) << s;
  }
}

TEST(TcpFlags, EveryValueRoundTripsThroughText) {
  for (int b = 0; b < 256; ++b) {
    TcpFlags f(static_cast<uint8_t>(b));
    EXPECT_EQ(TcpFlags::Parse(f.ToString()), f) << f;
  }
}

TEST(TcpFlags, SetOperations) {
  TcpFlags f = TcpFlags().with(kSyn).with(kAck);
  EXPECT_TRUE(f.has(kSyn | kAck));
  EXPECT_FALSE(f.has(kSyn | kFin));
  EXPECT_TRUE(f.any(kSyn | kFin));
  EXPECT_EQ(f.without(kSyn), TcpFlags(kAck));
}

// ---------------------------------------------------------------- a real SYN

TEST(TcpWire, ParsesLinuxSyn) {
  auto r = Parse(LinuxSynTcp());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->src_port, 45678);
  EXPECT_EQ(r->dst_port, 80);
  EXPECT_EQ(r->seq, SeqNum(0x6f1e2d3c));
  EXPECT_EQ(r->ack, SeqNum(0));
  EXPECT_EQ(r->flags, TcpFlags(kSyn));
  EXPECT_EQ(r->window, 64240);
  EXPECT_EQ(r->urgent, 0);
  EXPECT_EQ(r->options.mss, 1460);
  EXPECT_TRUE(r->options.sack_permitted);
  EXPECT_EQ(r->options.timestamps, (Timestamps{0x9a3b2c1d, 0}));
  EXPECT_EQ(r->options.window_scale, 7);
  EXPECT_EQ(r->options.sack_count, 0);
  EXPECT_EQ(r->options.raw_count, 0);
  EXPECT_TRUE(r->payload.empty());
  EXPECT_EQ(r->header_len(), 40u);
  EXPECT_EQ(r->seg_len(), 1u);
}

TEST(TcpWire, EmitsLinuxSynByteForByte) {
  // Our canonical layout is the one Linux uses, so the SYN comes back identical.
  auto syn = LinuxSynTcp();
  auto r = Parse(syn);
  ASSERT_TRUE(r.ok());
  std::vector<uint8_t> out(r->header_len());
  auto n = EmitTcp(*r, kSrc, kDst, absl::MakeSpan(out));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 40u);
  EXPECT_EQ(out, syn);
}

TEST(TcpWire, PrintsLikePacketdrill) {
  auto r = Parse(LinuxSynTcp());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Str(*r), "S 1864248636:1864248636(0) win 64240 "
                     "<mss 1460,sackOK,TS val 2587569181 ecr 0,wscale 7>");
  TcpRepr sa;
  sa.flags = TcpFlags(kSyn | kAck);
  sa.ack = SeqNum(1);
  sa.window = 65535;
  sa.options.mss = 1460;
  sa.options.sack_permitted = true;
  sa.options.timestamps = Timestamps{1, 0};
  sa.options.window_scale = 7;
  EXPECT_EQ(Str(sa), "S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,TS val 1 ecr 0,wscale 7>");
}

TEST(TcpWire, PrintsDataSackUrgentAndRawOptions) {
  const uint8_t payload[100] = {};
  const uint8_t raw[] = {0xde, 0xad};
  TcpRepr r;
  r.flags = TcpFlags(kPsh | kAck | kUrg);
  r.seq = SeqNum(1);
  r.ack = SeqNum(501);
  r.window = 502;
  r.urgent = 3;
  r.payload = payload;
  r.options.sack_count = 2;
  r.options.sack[0] = {SeqNum(601), SeqNum(701)};
  r.options.sack[1] = {SeqNum(801), SeqNum(901)};
  r.options.raw_count = 2;
  r.options.raw[0] = {253, raw};
  r.options.raw[1] = {34, {}};
  EXPECT_EQ(Str(r), "P.U 1:101(100) ack 501 win 502 urg 3 <sack 601:701 801:901,opt 253 dead,"
                    "opt 34>");
  EXPECT_EQ(Str(TcpRepr{}), "none 0:0(0) win 0");
  TcpRepr fin;
  fin.flags = TcpFlags(kFin | kAck);
  fin.seq = SeqNum(4294967295u);
  EXPECT_EQ(Str(fin), "F. 4294967295:4294967295(0) ack 0 win 0");
}

TEST(TcpWire, SegLenCountsSynAndFin) {
  const uint8_t payload[10] = {};
  TcpRepr r;
  r.payload = payload;
  EXPECT_EQ(r.seg_len(), 10u);
  r.flags = TcpFlags(kSyn | kFin);
  EXPECT_EQ(r.seg_len(), 12u);
}

// ---------------------------------------------------------------- layout

TEST(TcpWire, EmittedLenFollowsCanonicalLayout) {
  TcpOptions o;
  EXPECT_EQ(o.EmittedLen(), 0u);
  o.mss = 536;
  EXPECT_EQ(o.EmittedLen(), 4u);
  o.sack_permitted = true;
  EXPECT_EQ(o.EmittedLen(), 8u);  // NOP NOP SACK-permitted
  o.timestamps = Timestamps{};
  EXPECT_EQ(o.EmittedLen(), 16u);  // SACK-permitted shares TS's alignment padding
  o.window_scale = 0;
  EXPECT_EQ(o.EmittedLen(), 20u);
  o.sack_count = 2;
  EXPECT_EQ(o.EmittedLen(), 40u);
  TcpOptions raw;
  raw.raw_count = 1;
  raw.raw[0] = {200, {}};
  EXPECT_EQ(raw.EmittedLen(), 4u);  // 2 bytes, EOL-padded
}

TEST(TcpWire, EmitsSackBlocksAfterNopNop) {
  TcpRepr r;
  r.flags = TcpFlags(kAck);
  r.options.sack_count = 1;
  r.options.sack[0] = {SeqNum(0x01020304), SeqNum(0x05060708)};
  std::vector<uint8_t> buf(32);
  ASSERT_TRUE(EmitTcp(r, kSrc, kDst, absl::MakeSpan(buf)).ok());
  EXPECT_EQ(buf[12] >> 4, 8);
  std::vector<uint8_t> opts(buf.begin() + 20, buf.end());
  EXPECT_EQ(opts, (std::vector<uint8_t>{1, 1, 5, 10, 1, 2, 3, 4, 5, 6, 7, 8}));
}

TEST(TcpWire, PadsRawOptionsWithEol) {
  const uint8_t data[] = {0xaa};
  TcpRepr r;
  r.options.raw_count = 1;
  r.options.raw[0] = {253, data};
  std::vector<uint8_t> buf(24);
  ASSERT_TRUE(EmitTcp(r, kSrc, kDst, absl::MakeSpan(buf)).ok());
  std::vector<uint8_t> opts(buf.begin() + 20, buf.end());
  EXPECT_EQ(opts, (std::vector<uint8_t>{253, 3, 0xaa, 0}));
}

TEST(TcpWire, EmitWritesChecksumThatVerifies) {
  const uint8_t payload[] = {'h', 'e', 'l', 'l', 'o'};
  TcpRepr r;
  r.flags = TcpFlags(kPsh | kAck);
  r.payload = payload;
  std::vector<uint8_t> buf(25);
  ASSERT_TRUE(EmitTcp(r, kSrc, kDst, absl::MakeSpan(buf)).ok());
  EXPECT_EQ(ChecksumFinish(ChecksumAccumulate(buf, PseudoHeaderSum(kSrc, kDst, 6, 25))), 0);
}

TEST(TcpWire, EmitHandlesPayloadAlreadyInPlace) {
  std::vector<uint8_t> buf(20 + 8 + 6);
  std::memcpy(buf.data() + 28, "abcdef", 6);
  TcpRepr r;
  r.options.mss = 1400;
  r.options.window_scale = 3;
  r.payload = absl::MakeConstSpan(buf).subspan(28);
  auto n = EmitTcp(r, kSrc, kDst, absl::MakeSpan(buf));
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(std::memcmp(buf.data() + 28, "abcdef", 6), 0);
  // And a payload that overlaps where the header goes (a shorter header re-emitted).
  std::vector<uint8_t> buf2(40);
  std::memcpy(buf2.data() + 4, "0123456789", 10);
  TcpRepr r2;
  r2.payload = absl::MakeConstSpan(buf2).subspan(4, 10);
  ASSERT_TRUE(EmitTcp(r2, kSrc, kDst, absl::MakeSpan(buf2)).ok());
  EXPECT_EQ(std::memcmp(buf2.data() + 20, "0123456789", 10), 0);
}

// ---------------------------------------------------------------- round trips

TEST(TcpWire, RoundTripsEveryOptionCombination) {
  // Every subset of {MSS, WS, SACK-permitted, TS} x 0..4 SACK blocks x 0..4 raw
  // options: representable ones come back equal, the rest are refused by Emit.
  RandomSegments gen(21);
  int representable = 0, refused = 0;
  for (int mask = 0; mask < 16; ++mask) {
    for (uint8_t sacks = 0; sacks <= 4; ++sacks) {
      for (uint8_t raws = 0; raws <= 4; ++raws) {
        TcpRepr r;
        r.flags = TcpFlags(kAck);
        r.seq = SeqNum(gen.Next());
        if (mask & 1) r.options.mss = static_cast<uint16_t>(gen.Next());
        if (mask & 2) r.options.window_scale = static_cast<uint8_t>(gen.Next() % 15);
        r.options.sack_permitted = (mask & 4) != 0;
        if (mask & 8) r.options.timestamps = Timestamps{gen.Next(), gen.Next()};
        r.options.sack_count = sacks;
        for (size_t k = 0; k < sacks; ++k) {
          r.options.sack[k] = {SeqNum(gen.Next()), SeqNum(gen.Next())};
        }
        r.options.raw_count = raws;
        for (size_t k = 0; k < raws; ++k) r.options.raw[k] = {gen.UnknownKind(), gen.Bytes(k)};
        r.payload = gen.Bytes(gen.Next() % 64);
        if (r.options.EmittedLen() > 40) {
          std::vector<uint8_t> buf(200);
          EXPECT_THAT(EmitTcp(r, kSrc, kDst, absl::MakeSpan(buf)),
                      IsErrorWith("at most 40 fit"));
          ++refused;
          continue;
        }
        std::vector<uint8_t> buf;
        EXPECT_EQ(RoundTrip(r, buf), r) << r;
        ++representable;
      }
    }
  }
  EXPECT_GT(representable, 150);
  EXPECT_GT(refused, 50);
}

TEST(TcpWire, RoundTripsRandomSegments) {
  RandomSegments gen(22);
  auto v6a = IpAddress::Parse("fd00::1").value();
  auto v6b = IpAddress::Parse("2001:db8::2").value();
  for (int i = 0; i < 5000; ++i) {
    TcpRepr r = gen.Tcp();
    std::vector<uint8_t> buf;
    if (i % 2) {
      EXPECT_EQ(RoundTrip(r, buf, v6a, v6b), r) << r;
    } else {
      EXPECT_EQ(RoundTrip(r, buf), r) << r;
    }
  }
}

TEST(TcpWire, ParsedViewsPointIntoCallerBuffer) {
  const uint8_t payload[] = {1, 2, 3};
  const uint8_t raw[] = {9, 9};
  TcpRepr r;
  r.payload = payload;
  r.options.raw_count = 1;
  r.options.raw[0] = {253, raw};
  std::vector<uint8_t> buf;
  TcpRepr back = RoundTrip(r, buf);
  EXPECT_EQ(back.payload.data(), buf.data() + 24);
  EXPECT_EQ(back.options.raw[0].data.data(), buf.data() + 22);
}

TEST(TcpWire, EqualityIgnoresUnusedArrayEntries) {
  TcpOptions a, b;
  a.sack[3] = {SeqNum(1), SeqNum(2)};
  b.raw[2].kind = 99;
  EXPECT_EQ(a, b);
  a.sack_count = b.sack_count = 1;
  b.sack[0].right = SeqNum(5);
  EXPECT_NE(a, b);
}

// ---------------------------------------------------------------- option parsing

TEST(TcpWire, AcceptsOptionsInAnyOrderWithPadding) {
  // Windows-like order: MSS, NOP, WS, NOP, NOP, SACK-permitted.
  auto r = Parse(RawSegment({2, 4, 0x05, 0xb4, 1, 3, 3, 8, 1, 1, 4, 2}));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->options.mss, 1460);
  EXPECT_EQ(r->options.window_scale, 8);
  EXPECT_TRUE(r->options.sack_permitted);
  EXPECT_FALSE(r->options.timestamps);
}

TEST(TcpWire, ReEmitsDenselyPackedOptionsThatTheCanonicalLayoutCannotHold) {
  // MSS, SACK-permitted, timestamps, window scale and two SACK blocks packed without a
  // NOP: 37 bytes. The canonical layout would need 4 + 12 + 4 + 20 = 40... plus the
  // third block 48; with two blocks it is 40, so add a raw option to push it past.
  std::vector<uint8_t> o = {2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 3, 3, 7,
                            5, 18, 0, 0, 0, 10, 0, 0, 0, 20, 0, 0, 0, 30, 0, 0, 0, 40, 254, 2};
  ASSERT_LE(o.size(), 40u);
  auto r = Parse(RawSegment(o));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->options.sack_count, 2);
  ASSERT_EQ(r->options.raw_count, 1);
  EXPECT_EQ(r->options.EmittedLen(), 40u);  // dense: 39 bytes, padded to 40
  std::vector<uint8_t> buf;
  TcpRepr back = RoundTrip(*r, buf);
  EXPECT_EQ(back, *r);
  EXPECT_EQ(std::vector<uint8_t>(buf.begin() + 20, buf.begin() + 59), o)
      << "same bytes as the peer's";
}

TEST(TcpWire, StopsAtEndOfOptionList) {
  // After EOL the rest is padding, even if it looks like an option.
  auto r = Parse(RawSegment({3, 3, 5, 0, 2, 4, 1, 0}));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->options.window_scale, 5);
  EXPECT_FALSE(r->options.mss);
}

TEST(TcpWire, DuplicateKnownOptionLastOneWins) {
  auto r = Parse(RawSegment({2, 4, 0x05, 0xb4, 2, 4, 0x02, 0x18, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2,
                             5, 10, 0, 0, 0, 3, 0, 0, 0, 4}));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->options.mss, 536);
  ASSERT_EQ(r->options.sack_count, 1);
  EXPECT_EQ(r->options.sack[0], (SackBlock{SeqNum(3), SeqNum(4)}));
}

TEST(TcpWire, KeepsUnknownOptionsRaw) {
  // TCP Fast Open cookie (kind 34) and an experimental option (kind 254).
  auto d = RawSegment({34, 6, 0xc0, 0x0c, 0x1e, 0x01, 254, 4, 0xf9, 0x89});
  auto r = Parse(d);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->options.raw_count, 2);
  EXPECT_EQ(r->options.raw[0].kind, 34);
  EXPECT_EQ(r->options.raw[0].data.size(), 4u);
  EXPECT_EQ(r->options.raw[0].data.data(), d.data() + 22);
  EXPECT_EQ(r->options.raw[1].kind, 254);
  EXPECT_EQ(r->options.raw[1].data[1], 0x89);
}

TEST(TcpWire, AcceptsFourSackBlocks) {
  std::vector<uint8_t> o = {5, 34};
  for (uint8_t i = 0; i < 32; ++i) o.push_back(i);
  auto r = Parse(RawSegment(o));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->options.sack_count, 4);
  EXPECT_EQ(r->options.sack[3].right, SeqNum(0x1c1d1e1f));
}

TEST(TcpWire, KeepsPayloadAfterOptions) {
  auto d = RawSegment({2, 4, 1, 0}, 0, 7);
  auto r = Parse(d);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->payload.size(), 7u);
  EXPECT_EQ(r->payload.data(), d.data() + 24);
  EXPECT_EQ(r->payload[0], 'a');
}

// ---------------------------------------------------------------- malformed input

TEST(TcpWire, RejectsTruncatedHeader) {
  auto d = RawSegment({});
  d.resize(19);
  EXPECT_THAT(Parse(d), IsErrorWith("truncated TCP header (19 bytes, need 20)"));
  EXPECT_THAT(ParseTcp({}, kSrc, kDst), IsErrorWith("truncated TCP header (0 bytes"));
}

TEST(TcpWire, RejectsDataOffsetBelowFive) {
  EXPECT_THAT(Parse(RawSegment({}, 3)), IsErrorWith("bad TCP data offset 3"));
  EXPECT_THAT(Parse(RawSegment({}, 4)), IsErrorWith("bad TCP data offset 4"));
}

TEST(TcpWire, RejectsDataOffsetZero) {
  auto d = RawSegment({});
  d[12] = 0x00;
  EXPECT_THAT(ParseTcp(d, kSrc, kDst, false), IsErrorWith("bad TCP data offset 0"));
}

TEST(TcpWire, RejectsDataOffsetPastSegment) {
  EXPECT_THAT(Parse(RawSegment({}, 15)),
              IsErrorWith("TCP data offset 15 (60 bytes) exceeds segment (20 bytes)"));
}

TEST(TcpWire, RejectsBadChecksum) {
  auto d = RawSegment({}, 0, 10);
  d[25] ^= 0x01;
  EXPECT_THAT(Parse(d), IsErrorWith("bad TCP checksum"));
  EXPECT_TRUE(ParseTcp(d, kSrc, kDst, /*verify_checksum=*/false).ok());
}

TEST(TcpWire, BadChecksumMessageNamesExpectedValue) {
  auto d = RawSegment({});
  uint16_t good = static_cast<uint16_t>((d[16] << 8) | d[17]);
  d[16] ^= 0x12;
  EXPECT_THAT(Parse(d), IsErrorWith(absl::StrFormat("expected 0x%04x", good)));
}

TEST(TcpWire, RejectsChecksumAgainstWrongPseudoHeader) {
  auto d = RawSegment({});
  EXPECT_THAT(ParseTcp(d, kSrc, IpAddress::V4({10, 0, 0, 3})), IsErrorWith("bad TCP checksum"));
}

TEST(TcpWire, RejectsOptionWithoutLengthByte) {
  // A single option byte that is neither EOL nor NOP, at the end of the header.
  EXPECT_THAT(Parse(RawSegment({1, 1, 1, 2})),
              IsErrorWith("TCP option kind 2 truncated (no length byte)"));
}

TEST(TcpWire, RejectsOptionLengthBelowTwo) {
  EXPECT_THAT(Parse(RawSegment({200, 1, 0, 0})),
              IsErrorWith("TCP option kind 200 has bad length 1"));
  EXPECT_THAT(Parse(RawSegment({200, 0, 0, 0})),
              IsErrorWith("TCP option kind 200 has bad length 0"));
}

TEST(TcpWire, RejectsOptionRunningPastHeader) {
  EXPECT_THAT(Parse(RawSegment({1, 1, 200, 6})),
              IsErrorWith("TCP option kind 200 length 6 runs past the options (2 bytes left)"));
}

TEST(TcpWire, RejectsMssWithBadLength) {
  EXPECT_THAT(Parse(RawSegment({2, 3, 5, 1})), IsErrorWith("TCP option kind 2 has bad length 3"));
}

TEST(TcpWire, RejectsWindowScaleWithBadLength) {
  EXPECT_THAT(Parse(RawSegment({3, 4, 7, 0})), IsErrorWith("TCP option kind 3 has bad length 4"));
}

TEST(TcpWire, RejectsSackPermittedWithBadLength) {
  EXPECT_THAT(Parse(RawSegment({4, 3, 0, 1})), IsErrorWith("TCP option kind 4 has bad length 3"));
}

TEST(TcpWire, RejectsTimestampsWithBadLength) {
  EXPECT_THAT(Parse(RawSegment({8, 6, 0, 0, 0, 1, 0, 0})),
              IsErrorWith("TCP option kind 8 has bad length 6"));
}

TEST(TcpWire, RejectsSackWithBadLength) {
  EXPECT_THAT(Parse(RawSegment({5, 2, 1, 1})), IsErrorWith("TCP option kind 5 has bad length 2"));
  std::vector<uint8_t> nine = {5, 9, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0};
  EXPECT_THAT(Parse(RawSegment(nine)), IsErrorWith("TCP option kind 5 has bad length 9"));
  std::vector<uint8_t> eleven = {5, 11, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0};
  EXPECT_THAT(Parse(RawSegment(eleven)), IsErrorWith("TCP option kind 5 has bad length 11"));
}

TEST(TcpWire, RejectsTooManyUnknownOptions) {
  EXPECT_THAT(Parse(RawSegment({200, 2, 201, 2, 202, 2, 203, 2, 204, 2})),
              IsErrorWith("too many unknown TCP options"));
  EXPECT_TRUE(Parse(RawSegment({200, 2, 201, 2, 202, 2, 203, 2})).ok());
}

TEST(TcpWire, NeverReadsPastAnyPrefix) {
  // Each prefix is copied so that ASan sees the allocation end exactly there.
  auto d = RawSegment({2, 4, 5, 0xb4, 1, 3, 3, 7, 200, 4, 1, 2, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2},
                      0, 9);
  for (size_t n = 0; n <= d.size(); ++n) {
    std::vector<uint8_t> prefix(d.begin(), d.begin() + static_cast<ptrdiff_t>(n));
    auto r = ParseTcp(prefix, kSrc, kDst, /*verify_checksum=*/false);
    EXPECT_EQ(r.ok(), n >= 44) << n;
  }
}

TEST(TcpWire, SurvivesRandomGarbage) {
  RandomSegments gen(23);
  for (int i = 0; i < 50000; ++i) {
    auto bytes = gen.Bytes(gen.Next() % 80);
    std::vector<uint8_t> d(bytes.begin(), bytes.end());
    if (d.size() > 12 && gen.Next() % 2) d[12] = static_cast<uint8_t>((5 + gen.Next() % 11) << 4);
    auto r = ParseTcp(d, kSrc, kDst, /*verify_checksum=*/false);
    if (!r.ok()) continue;
    EXPECT_GE(r->payload.data(), d.data() + 20);
    EXPECT_EQ(r->payload.data() + r->payload.size(), d.data() + d.size());
    for (size_t k = 0; k < r->options.raw_count; ++k) {
      EXPECT_GE(r->options.raw[k].data.data(), d.data() + 22);
      EXPECT_LE(r->options.raw[k].data.data() + r->options.raw[k].data.size(),
                r->payload.data());
    }
  }
}

// ---------------------------------------------------------------- emit errors

TEST(TcpWire, EmitRefusesOptionsOver40Bytes) {
  TcpRepr r;
  r.options.timestamps = Timestamps{};
  r.options.sack_count = 4;  // canonical 12 + 36 = 48; dense 10 + 34 = 44
  std::vector<uint8_t> buf(100);
  EXPECT_THAT(EmitTcp(r, kSrc, kDst, absl::MakeSpan(buf)),
              IsErrorWith("TCP options need 44 bytes, at most 40 fit"));
}

TEST(TcpWire, EmitRefusesOutOfRangeCounts) {
  std::vector<uint8_t> buf(100);
  TcpRepr r;
  r.options.sack_count = 5;
  EXPECT_THAT(EmitTcp(r, kSrc, kDst, absl::MakeSpan(buf)), IsErrorWith("sack_count 5 exceeds 4"));
  r.options.sack_count = 0;
  r.options.raw_count = 9;
  EXPECT_THAT(EmitTcp(r, kSrc, kDst, absl::MakeSpan(buf)), IsErrorWith("raw_count 9 exceeds 4"));
}

TEST(TcpWire, EmitRefusesShortBuffer) {
  const uint8_t payload[10] = {};
  TcpRepr r;
  r.options.mss = 1;
  r.payload = payload;
  std::vector<uint8_t> buf(33);
  EXPECT_THAT(EmitTcp(r, kSrc, kDst, absl::MakeSpan(buf)),
              IsErrorWith("output buffer too small for TCP segment (33 bytes, need 34)"));
}

TEST(TcpRepr, SegmentsDifferingInOneFieldAreUnequal) {
  const uint8_t data[] = {1, 2, 3};
  const uint8_t other_data[] = {1, 2, 4};
  TcpRepr a;
  a.src_port = 1;
  a.dst_port = 2;
  a.seq = SeqNum(3);
  a.ack = SeqNum(4);
  a.flags = TcpFlags(kAck);
  a.window = 5;
  a.urgent = 6;
  a.options.mss = 1460;
  a.payload = data;
  EXPECT_EQ(a, a);
  std::vector<TcpRepr> others(9, a);
  others[0].src_port = 9;
  others[1].dst_port = 9;
  others[2].seq = SeqNum(9);
  others[3].ack = SeqNum(9);
  others[4].flags = TcpFlags(kAck | kPsh);
  others[5].window = 9;
  others[6].urgent = 9;
  others[7].options.mss = 536;
  others[8].payload = other_data;
  for (size_t i = 0; i < others.size(); ++i) EXPECT_FALSE(a == others[i]) << i;
}

TEST(TcpOptions, OptionsDifferingInOneFieldAreUnequal) {
  const uint8_t v[] = {7};
  TcpOptions a;
  a.mss = 1460;
  a.window_scale = 7;
  a.timestamps = Timestamps{1, 2};
  a.raw_count = 1;
  a.raw[0] = RawOption{30, v};
  EXPECT_EQ(a, a);
  std::vector<TcpOptions> others(6, a);
  others[0].mss = 536;
  others[1].window_scale = 6;
  others[2].sack_permitted = true;
  others[3].timestamps = Timestamps{1, 3};
  others[4].sack_count = 1;
  others[5].raw[0].kind = 31;  // same value bytes, another kind
  for (size_t i = 0; i < others.size(); ++i) EXPECT_FALSE(a == others[i]) << i;
}

}  // namespace
}  // namespace wrench::stack
