// Tests for whole datagrams (stack/segment.h): the Linux SYN and an IPv6 SYN-ACK
// as captured, parse(emit(x)) == x for random IPv4 and IPv6 segments, and every
// reason ParseSegment and EmitSegment refuse, each checked by its message.
#include "stack/segment.h"

#include <sstream>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "stack/checksum.h"
#include "tests/wire_testing.h"

namespace wrench::stack {
namespace {

using ::testing::HasSubstr;
using testing::IsErrorWith;
using testing::LinuxSynAckV6;
using testing::LinuxSynV4;
using testing::RandomSegments;

std::vector<uint8_t> Emit(const Segment& s) {
  std::vector<uint8_t> out(s.BufferLen());
  auto n = EmitSegment(s, absl::MakeSpan(out));
  EXPECT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(n.value_or(0), out.size());
  return out;
}

void FixIpv4Checksum(std::vector<uint8_t>& d) {
  size_t hl = (d[0] & 0x0f) * 4u;
  d[10] = d[11] = 0;
  uint16_t sum = InternetChecksum(absl::MakeConstSpan(d).first(hl));
  d[10] = static_cast<uint8_t>(sum >> 8);
  d[11] = static_cast<uint8_t>(sum);
}

std::string Str(const Segment& s) {
  std::ostringstream os;
  os << s;
  return os.str();
}

TEST(Segment, ParsesLinuxSynOverIpv4) {
  auto s = ParseSegment(LinuxSynV4());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(s->is_v6());
  EXPECT_EQ(s->src(), IpAddress::V4({10, 0, 0, 1}));
  EXPECT_EQ(s->dst(), IpAddress::V4({10, 0, 0, 2}));
  EXPECT_EQ(s->ttl(), 64);
  const auto& ip = std::get<Ipv4Repr>(s->ip);
  EXPECT_EQ(ip.ident, 0x5c3a);
  EXPECT_TRUE(ip.dont_fragment);
  EXPECT_EQ(ip.payload_len, 40);
  EXPECT_EQ(s->tcp.flags, TcpFlags(kSyn));
  EXPECT_EQ(s->tcp.options.mss, 1460);
  EXPECT_EQ(s->tcp.options.window_scale, 7);
  EXPECT_EQ(s->BufferLen(), 60u);
}

TEST(Segment, EmitsLinuxSynByteForByte) {
  auto s = ParseSegment(LinuxSynV4());
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(Emit(*s), LinuxSynV4());
}

TEST(Segment, ParsesAndReemitsIpv6SynAck) {
  auto s = ParseSegment(LinuxSynAckV6());
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->is_v6());
  EXPECT_EQ(s->src(), IpAddress::Parse("fd00::2"));
  EXPECT_EQ(s->dst(), IpAddress::Parse("fd00::1"));
  EXPECT_EQ(s->ttl(), 64);
  EXPECT_EQ(std::get<Ipv6Repr>(s->ip).flow_label, 0x3a2b1u);
  EXPECT_EQ(s->tcp.flags, TcpFlags(kSyn | kAck));
  EXPECT_EQ(s->tcp.ack, SeqNum(0x6f1e2d3d));
  EXPECT_EQ(s->tcp.options.mss, 1420);
  EXPECT_EQ(s->tcp.options.timestamps, (Timestamps{0x11223344, 0x9a3b2c1d}));
  EXPECT_EQ(Emit(*s), LinuxSynAckV6());
}

TEST(Segment, PrintsEndpointsAndTcpLine) {
  auto v4 = ParseSegment(LinuxSynV4());
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(Str(*v4), "10.0.0.1:45678 > 10.0.0.2:80 S 1864248636:1864248636(0) win 64240 "
                      "<mss 1460,sackOK,TS val 2587569181 ecr 0,wscale 7>");
  auto v6 = ParseSegment(LinuxSynAckV6());
  ASSERT_TRUE(v6.ok());
  EXPECT_THAT(Str(*v6), HasSubstr("[fd00::2]:80 > [fd00::1]:45678 S. 16909060:16909060(0) ack "));
}

TEST(Segment, SetTtlWritesTtlOrHopLimit) {
  auto v4 = ParseSegment(LinuxSynV4()).value();
  v4.set_ttl(3);
  EXPECT_EQ(std::get<Ipv4Repr>(v4.ip).ttl, 3);
  EXPECT_EQ(Emit(v4)[8], 3);
  auto v6 = ParseSegment(LinuxSynAckV6()).value();
  v6.set_ttl(5);
  EXPECT_EQ(std::get<Ipv6Repr>(v6.ip).hop_limit, 5);
  EXPECT_EQ(Emit(v6)[7], 5);
}

TEST(Segment, RoundTripsRandomIpv4Segments) {
  RandomSegments gen(31);
  for (int i = 0; i < 4000; ++i) {
    Segment s = gen.V4();
    auto bytes = Emit(s);
    auto back = ParseSegment(bytes);
    ASSERT_TRUE(back.ok()) << back.status() << " for " << s;
    EXPECT_EQ(*back, s) << s;
  }
}

TEST(Segment, RoundTripsRandomIpv6Segments) {
  RandomSegments gen(32);
  for (int i = 0; i < 4000; ++i) {
    Segment s = gen.V6();
    auto bytes = Emit(s);
    auto back = ParseSegment(bytes);
    ASSERT_TRUE(back.ok()) << back.status() << " for " << s;
    EXPECT_EQ(*back, s) << s;
  }
}

TEST(Segment, EmitComputesPayloadLength) {
  auto s = ParseSegment(LinuxSynV4()).value();
  const uint8_t data[] = {1, 2, 3, 4, 5};
  s.tcp.payload = data;
  std::get<Ipv4Repr>(s.ip).payload_len = 9999;  // stale: Emit recomputes it
  auto bytes = Emit(s);
  ASSERT_EQ(bytes.size(), 65u);
  EXPECT_EQ((bytes[2] << 8) | bytes[3], 65);
  auto back = ParseSegment(bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(std::get<Ipv4Repr>(back->ip).payload_len, 45);
  EXPECT_EQ(back->tcp.payload.size(), 5u);
}

TEST(Segment, SkipsChecksumsWhenAsked) {
  auto d = LinuxSynV4();
  d[8] = 1;    // TTL: breaks the IPv4 header checksum
  d[30] ^= 1;  // breaks the TCP checksum
  EXPECT_THAT(ParseSegment(d), IsErrorWith("bad IPv4 header checksum"));
  FixIpv4Checksum(d);
  EXPECT_THAT(ParseSegment(d), IsErrorWith("bad TCP checksum"));
  d[8] = 2;
  auto s = ParseSegment(d, ParseOptions{.verify_checksums = false});
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->ttl(), 2);
}

// ---------------------------------------------------------------- refusals

TEST(Segment, RejectsEmptyDatagram) {
  EXPECT_THAT(ParseSegment({}), IsErrorWith("empty datagram"));
}

TEST(Segment, RejectsOtherIpVersions) {
  auto d = LinuxSynV4();
  d[0] = 0x55;
  EXPECT_THAT(ParseSegment(d), IsErrorWith("not an IP packet (version 5)"));
  d[0] = 0x05;
  EXPECT_THAT(ParseSegment(d), IsErrorWith("not an IP packet (version 0)"));
  d[0] = 0xf5;
  EXPECT_THAT(ParseSegment(d), IsErrorWith("not an IP packet (version 15)"));
}

TEST(Segment, RejectsFirstIpv4Fragment) {
  auto d = LinuxSynV4();
  d[6] = 0x20;  // MF, offset 0
  FixIpv4Checksum(d);
  EXPECT_THAT(ParseSegment(d),
              IsErrorWith("IPv4 fragment (offset 0, more fragments) not supported"));
}

TEST(Segment, RejectsLaterIpv4Fragment) {
  auto d = LinuxSynV4();
  d[6] = 0x00;
  d[7] = 185;  // offset 185 * 8 = 1480, last fragment
  FixIpv4Checksum(d);
  EXPECT_THAT(ParseSegment(d),
              IsErrorWith("IPv4 fragment (offset 1480, last fragment) not supported"));
}

TEST(Segment, RejectsNonTcpOverIpv4) {
  auto d = LinuxSynV4();
  d[9] = 17;
  FixIpv4Checksum(d);
  EXPECT_THAT(ParseSegment(d), IsErrorWith("protocol 17 is not TCP"));
}

TEST(Segment, RejectsNonTcpOverIpv6) {
  auto d = LinuxSynAckV6();
  d[6] = 58;  // ICMPv6
  EXPECT_THAT(ParseSegment(d), IsErrorWith("protocol 58 is not TCP"));
}

TEST(Segment, RejectsIpv6Fragment) {
  auto d = LinuxSynAckV6();
  d[6] = 44;
  EXPECT_THAT(ParseSegment(d), IsErrorWith("IPv6 fragment header not supported"));
}

TEST(Segment, RejectsIpv6Esp) {
  auto d = LinuxSynAckV6();
  d[6] = 50;
  EXPECT_THAT(ParseSegment(d), IsErrorWith("IPv6 extension header 50 (ESP) not supported"));
}

TEST(Segment, AcceptsIpv6DestinationOptionsBeforeTcp) {
  auto d = LinuxSynAckV6();
  // Insert an 8-byte destination options header (PadN) between IPv6 and TCP.
  const uint8_t ext[] = {kIpProtoTcp, 0, 1, 4, 0, 0, 0, 0};
  d.insert(d.begin() + 40, std::begin(ext), std::end(ext));
  d[6] = 60;
  d[5] = static_cast<uint8_t>(d[5] + 8);
  auto s = ParseSegment(d);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(std::get<Ipv6Repr>(s->ip).payload_len, 40);
  EXPECT_EQ(s->tcp.options.mss, 1420);
}

TEST(Segment, PropagatesIpErrors) {
  auto d = LinuxSynV4();
  EXPECT_THAT(ParseSegment(absl::MakeConstSpan(d).first(12)),
              IsErrorWith("truncated IPv4 header (12 bytes, need 20)"));
  d[0] = 0x44;
  EXPECT_THAT(ParseSegment(d), IsErrorWith("bad IPv4 header length 4"));
  auto d6 = LinuxSynAckV6();
  EXPECT_THAT(ParseSegment(absl::MakeConstSpan(d6).first(30)),
              IsErrorWith("truncated IPv6 header (30 bytes, need 40)"));
}

TEST(Segment, PropagatesTcpErrors) {
  auto d = LinuxSynV4();
  d[32] = 0x30;  // data offset 3
  EXPECT_THAT(ParseSegment(d, {.verify_checksums = false}), IsErrorWith("bad TCP data offset 3"));
  auto short_tcp = LinuxSynV4();
  short_tcp.resize(30);
  short_tcp[2] = 0;
  short_tcp[3] = 30;
  FixIpv4Checksum(short_tcp);
  EXPECT_THAT(ParseSegment(short_tcp), IsErrorWith("truncated TCP header (10 bytes, need 20)"));
  auto bad_opt = LinuxSynV4();
  bad_opt[41] = 3;  // MSS length 3
  EXPECT_THAT(ParseSegment(bad_opt, {.verify_checksums = false}),
              IsErrorWith("TCP option kind 2 has bad length 3"));
}

TEST(Segment, NeverReadsPastAnyPrefix) {
  for (const auto* full : {&LinuxSynV4(), &LinuxSynAckV6()}) {
    for (size_t n = 0; n <= full->size(); ++n) {
      std::vector<uint8_t> prefix(full->begin(), full->begin() + static_cast<ptrdiff_t>(n));
      EXPECT_EQ(ParseSegment(prefix).ok(), n == full->size()) << n;
    }
  }
}

TEST(Segment, SurvivesCorruptedDatagrams) {
  // Random byte flips of valid datagrams: parse must fail cleanly or succeed with
  // views inside the buffer (checksums off, so the flips reach the deeper checks).
  RandomSegments gen(33);
  for (int i = 0; i < 20000; ++i) {
    Segment s = i % 2 ? gen.V4() : gen.V6();
    auto d = Emit(s);
    for (int k = 0; k < 3; ++k) d[gen.Next() % d.size()] = static_cast<uint8_t>(gen.Next());
    d.resize(d.size() - gen.Next() % 8 % d.size());
    auto r = ParseSegment(d, {.verify_checksums = false});
    if (!r.ok()) continue;
    EXPECT_GE(r->tcp.payload.data(), d.data());
    EXPECT_LE(r->tcp.payload.data() + r->tcp.payload.size(), d.data() + d.size());
  }
}

// ---------------------------------------------------------------- emit refusals

TEST(Segment, EmitRefusesShortBuffer) {
  auto s = ParseSegment(LinuxSynV4()).value();
  std::vector<uint8_t> out(59);
  EXPECT_THAT(EmitSegment(s, absl::MakeSpan(out)),
              IsErrorWith("output buffer too small (59 bytes, need 60)"));
}

TEST(Segment, EmitRefusesMixedAddressFamilies) {
  auto s = ParseSegment(LinuxSynV4()).value();
  std::get<Ipv4Repr>(s.ip).dst = IpAddress::Parse("fd00::1").value();
  std::vector<uint8_t> out(100);
  EXPECT_THAT(EmitSegment(s, absl::MakeSpan(out)), IsErrorWith("IPv4 header with an IPv6 address"));
  auto s6 = ParseSegment(LinuxSynAckV6()).value();
  std::get<Ipv6Repr>(s6.ip).src = IpAddress::V4(1u);
  EXPECT_THAT(EmitSegment(s6, absl::MakeSpan(out)),
              IsErrorWith("IPv6 header with an IPv4 address"));
}

TEST(Segment, EmitRefusesBadIpv4Options) {
  auto s = ParseSegment(LinuxSynV4()).value();
  const uint8_t three[] = {1, 1, 1};
  std::get<Ipv4Repr>(s.ip).options = three;
  std::vector<uint8_t> out(100);
  EXPECT_THAT(EmitSegment(s, absl::MakeSpan(out)), IsErrorWith("IPv4 options of 3 bytes"));
}

TEST(Segment, EmitRefusesOversizedDatagrams) {
  std::vector<uint8_t> big(65536);
  auto s = ParseSegment(LinuxSynV4()).value();
  s.tcp.payload = absl::MakeConstSpan(big).first(65500);
  std::vector<uint8_t> out(70000);
  EXPECT_THAT(EmitSegment(s, absl::MakeSpan(out)), IsErrorWith("exceeds the IPv4 maximum 65535"));
  auto s6 = ParseSegment(LinuxSynAckV6()).value();
  s6.tcp.payload = absl::MakeConstSpan(big).first(65500);
  EXPECT_THAT(EmitSegment(s6, absl::MakeSpan(out)),
              IsErrorWith("exceeds the IPv6 payload maximum"));
}

TEST(Segment, EmitPropagatesTcpOptionErrors) {
  auto s = ParseSegment(LinuxSynV4()).value();
  s.tcp.options.sack_count = 4;
  std::vector<uint8_t> out(200);
  EXPECT_THAT(EmitSegment(s, absl::MakeSpan(out)), IsErrorWith("at most 40 fit"));
}

TEST(Segment, LargestIpv6PayloadFits) {
  std::vector<uint8_t> big(65535 - 20);
  auto s6 = ParseSegment(LinuxSynAckV6()).value();
  s6.tcp.options = {};
  s6.tcp.payload = big;
  std::vector<uint8_t> out(s6.BufferLen());
  ASSERT_TRUE(EmitSegment(s6, absl::MakeSpan(out)).ok());
  auto back = ParseSegment(out);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->tcp.payload.size(), big.size());
}

TEST(Segment, ClosedPortResetFollowsRfc9293) {
  TcpRepr syn;
  syn.src_port = 40000;
  syn.dst_port = 80;
  syn.seq = SeqNum(1000);
  syn.flags = TcpFlags(kSyn);
  Segment in = MakeSegment(IpAddress::V4(0x0a000001), IpAddress::V4(0x0a000002), syn, 7);
  // No ACK in the SYN: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>, back to the sender.
  Segment out = ClosedPortReset(in);
  EXPECT_EQ(out.src(), in.dst());
  EXPECT_EQ(out.dst(), in.src());
  EXPECT_EQ(out.tcp.src_port, 80);
  EXPECT_EQ(out.tcp.dst_port, 40000);
  EXPECT_EQ(out.tcp.flags, TcpFlags(kRst | kAck));
  EXPECT_EQ(out.tcp.seq, SeqNum(0));
  EXPECT_EQ(out.tcp.ack, SeqNum(1001));
  // With ACK: <SEQ=SEG.ACK><CTL=RST>.
  in.tcp.flags = TcpFlags(kAck);
  in.tcp.ack = SeqNum(5555);
  out = ClosedPortReset(in);
  EXPECT_EQ(out.tcp.flags, TcpFlags(kRst));
  EXPECT_EQ(out.tcp.seq, SeqNum(5555));
}

TEST(Segment, LargestIpv4DatagramAndLongestOptionsFit) {
  std::vector<uint8_t> big(65535);
  auto s = ParseSegment(LinuxSynV4()).value();
  s.tcp.options = {};
  uint8_t opts[40] = {};
  std::fill(std::begin(opts), std::end(opts), 1);  // 40 NOPs: the IPv4 maximum
  std::get<Ipv4Repr>(s.ip).options = opts;
  s.tcp.payload = absl::MakeConstSpan(big).first(65535 - 60 - 20);
  std::vector<uint8_t> out(s.BufferLen());
  auto n = EmitSegment(s, absl::MakeSpan(out));
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(*n, 65535u);
  s.tcp.payload = absl::MakeConstSpan(big).first(65535 - 60 - 20 + 1);
  out.resize(s.BufferLen());
  EXPECT_THAT(EmitSegment(s, absl::MakeSpan(out)),
              IsErrorWith("datagram of 65536 bytes exceeds the IPv4 maximum 65535"));
}

TEST(Segment, MakeSegmentCarriesBothAddressesInEitherFamily) {
  TcpRepr t;
  t.src_port = 1;
  t.dst_port = 2;
  for (auto [src, dst] : {std::pair{"fd00::1", "fd00::2"}, std::pair{"10.0.0.1", "10.0.0.2"}}) {
    Segment s = MakeSegment(IpAddress::Parse(src).value(), IpAddress::Parse(dst).value(), t, 7);
    EXPECT_EQ(s.src(), IpAddress::Parse(src).value());
    EXPECT_EQ(s.dst(), IpAddress::Parse(dst).value());
    EXPECT_EQ(s.tcp.dst_port, 2);
    std::vector<uint8_t> out(s.BufferLen());
    ASSERT_TRUE(EmitSegment(s, absl::MakeSpan(out)).ok()) << src;
  }
  Segment v4 = MakeSegment(IpAddress::V4(1), IpAddress::V4(2), t, 7);
  EXPECT_EQ(std::get<Ipv4Repr>(v4.ip).ident, 7);
}

}  // namespace
}  // namespace wrench::stack
