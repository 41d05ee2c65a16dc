// Tests for IP addresses and the IPv4 / IPv6 headers (stack/ip.h): text forms,
// round trips of randomized headers, extension-header skipping, and every kind of
// malformed header the parsers refuse, each by the cause its message names.
#include "stack/ip.h"

#include <cstring>
#include <random>
#include <vector>

#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "stack/checksum.h"

namespace wrench::stack {
namespace {

using ::testing::HasSubstr;

MATCHER_P(IsErrorWith, text, "") {
  if (arg.ok()) {
    *result_listener << "is OK";
    return false;
  }
  *result_listener << "status: " << arg.status();
  return arg.status().code() == absl::StatusCode::kInvalidArgument &&
         arg.status().message().find(text) != absl::string_view::npos;
}

// ---------------------------------------------------------------- addresses

TEST(IpAddress, V4FromHostOrder) {
  auto a = IpAddress::V4(0x0a000001);
  EXPECT_FALSE(a.is_v6());
  EXPECT_EQ(a.bytes().size(), 4u);
  EXPECT_EQ(a.bytes()[0], 10);
  EXPECT_EQ(a.bytes()[3], 1);
  EXPECT_EQ(a.v4_host_order(), 0x0a000001u);
  EXPECT_EQ(a.ToString(), "10.0.0.1");
  EXPECT_EQ(a, IpAddress::V4({10, 0, 0, 1}));
}

TEST(IpAddress, FromBytes) {
  const uint8_t v4[] = {192, 0, 2, 1};
  EXPECT_EQ(IpAddress::FromBytes(v4), IpAddress::V4({192, 0, 2, 1}));
  std::array<uint8_t, 16> v6{};
  v6[0] = 0xfd;
  v6[15] = 1;
  EXPECT_EQ(IpAddress::FromBytes(v6), IpAddress::V6(v6));
  const uint8_t odd[] = {1, 2, 3};
  EXPECT_EQ(IpAddress::FromBytes(odd), IpAddress());
}

TEST(IpAddress, V4AndV6AreDistinct) {
  std::array<uint8_t, 16> v6{};
  EXPECT_NE(IpAddress::V4(0u), IpAddress::V6(v6));
}

TEST(IpAddress, ParsesDottedQuad) {
  EXPECT_EQ(IpAddress::Parse("192.168.1.254"), IpAddress::V4({192, 168, 1, 254}));
  EXPECT_EQ(IpAddress::Parse("0.0.0.0"), IpAddress::V4(0u));
  EXPECT_EQ(IpAddress::Parse("255.255.255.255"), IpAddress::V4(0xffffffffu));
}

TEST(IpAddress, RejectsBadDottedQuads) {
  for (const char* s : {"", "1.2.3", "1.2.3.4.5", "256.0.0.1", "1.2.3.", ".1.2.3", "01.2.3.4",
                        "1..3.4", "a.b.c.d", "1.2.3.4 ", "1.2.3.-4", "1234.1.1.1"}) {
    EXPECT_EQ(IpAddress::Parse(s), std::nullopt) << s;
  }
}

TEST(IpAddress, ParsesIpv6Forms) {
  std::array<uint8_t, 16> b{};
  EXPECT_EQ(IpAddress::Parse("::"), IpAddress::V6(b));
  b[15] = 1;
  EXPECT_EQ(IpAddress::Parse("::1"), IpAddress::V6(b));
  EXPECT_EQ(IpAddress::Parse("0:0:0:0:0:0:0:1"), IpAddress::V6(b));
  b = {0xfd, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01};
  EXPECT_EQ(IpAddress::Parse("fd00::1"), IpAddress::V6(b));
  EXPECT_EQ(IpAddress::Parse("FD00:0::0:1"), IpAddress::V6(b));
  b = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 33};
  EXPECT_EQ(IpAddress::Parse("::ffff:192.0.2.33"), IpAddress::V6(b));
  b = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(IpAddress::Parse("2001:db8::"), IpAddress::V6(b));
}

TEST(IpAddress, RejectsBadIpv6) {
  for (const char* s : {":", ":::", "1::2::3", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "12345::",
                        "g::1", "1:2:3:4:5:6:7::8", "::1.2.3", "::1.2.3.4:5", "1:", ":1",
                        "fd00::1%eth0"}) {
    EXPECT_EQ(IpAddress::Parse(s), std::nullopt) << s;
  }
}

TEST(IpAddress, Ipv6ToStringIsRfc5952Canonical) {
  auto canon = [](const char* s) { return IpAddress::Parse(s).value().ToString(); };
  EXPECT_EQ(canon("::"), "::");
  EXPECT_EQ(canon("0:0:0:0:0:0:0:1"), "::1");
  EXPECT_EQ(canon("2001:0DB8:0000:0000:0000:0000:0000:0001"), "2001:db8::1");
  // §4.2.2: a single zero group is not shortened.
  EXPECT_EQ(canon("2001:db8:0:1:1:1:1:1"), "2001:db8:0:1:1:1:1:1");
  // §4.2.3: the longest run, the first one on a tie.
  EXPECT_EQ(canon("2001:0:0:1:0:0:0:1"), "2001:0:0:1::1");
  EXPECT_EQ(canon("2001:db8:0:0:1:0:0:1"), "2001:db8::1:0:0:1");
  EXPECT_EQ(canon("fd00:0:0:0:0:0:0:0"), "fd00::");
  // §5: IPv4-mapped addresses keep the dotted quad.
  EXPECT_EQ(canon("::ffff:c000:221"), "::ffff:192.0.2.33");
}

TEST(IpAddress, TextRoundTripsOnRandomAddresses) {
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    std::array<uint8_t, 16> b;
    for (auto& x : b) x = (rng() % 3 == 0) ? static_cast<uint8_t>(rng()) : 0;
    auto a = IpAddress::V6(b);
    EXPECT_EQ(IpAddress::Parse(a.ToString()), a) << a;
    auto v4 = IpAddress::V4(static_cast<uint32_t>(rng()));
    EXPECT_EQ(IpAddress::Parse(v4.ToString()), v4) << v4;
  }
}

// ---------------------------------------------------------------- IPv4

// A hand-written header: 10.0.0.1 > 10.0.0.2, TCP, DF, ttl 64, id 0x1c46, total 40.
std::vector<uint8_t> SampleIpv4(size_t payload = 20) {
  std::vector<uint8_t> d = {0x45, 0x00, 0x00, 0x00, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06,
                            0x00, 0x00, 10,   0,    0,    1,    10,   0,    0,    2};
  uint16_t total = static_cast<uint16_t>(20 + payload);
  d[2] = static_cast<uint8_t>(total >> 8);
  d[3] = static_cast<uint8_t>(total);
  uint16_t sum = InternetChecksum(d);
  d[10] = static_cast<uint8_t>(sum >> 8);
  d[11] = static_cast<uint8_t>(sum);
  for (size_t i = 0; i < payload; ++i) d.push_back(static_cast<uint8_t>(i));
  return d;
}

void FixIpv4Checksum(std::vector<uint8_t>& d) {
  size_t hl = (d[0] & 0x0f) * 4;
  d[10] = d[11] = 0;
  uint16_t sum = InternetChecksum(absl::MakeConstSpan(d).first(hl));
  d[10] = static_cast<uint8_t>(sum >> 8);
  d[11] = static_cast<uint8_t>(sum);
}

TEST(Ipv4, ParsesSampleHeader) {
  auto d = SampleIpv4();
  absl::Span<const uint8_t> payload;
  auto r = ParseIpv4(d, &payload);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->src, IpAddress::V4({10, 0, 0, 1}));
  EXPECT_EQ(r->dst, IpAddress::V4({10, 0, 0, 2}));
  EXPECT_EQ(r->ident, 0x1c46);
  EXPECT_TRUE(r->dont_fragment);
  EXPECT_FALSE(r->more_fragments);
  EXPECT_EQ(r->fragment_offset, 0);
  EXPECT_EQ(r->ttl, 64);
  EXPECT_EQ(r->protocol, kIpProtoTcp);
  EXPECT_TRUE(r->options.empty());
  EXPECT_EQ(r->payload_len, 20);
  EXPECT_EQ(payload.data(), d.data() + 20);  // a view, not a copy
  EXPECT_EQ(payload.size(), 20u);
}

TEST(Ipv4, EmitReproducesSampleBytes) {
  auto d = SampleIpv4();
  absl::Span<const uint8_t> payload;
  auto r = ParseIpv4(d, &payload);
  ASSERT_TRUE(r.ok());
  std::vector<uint8_t> out(20, 0xee);
  ASSERT_EQ(EmitIpv4(*r, absl::MakeSpan(out)), 20u);
  EXPECT_EQ(out, std::vector<uint8_t>(d.begin(), d.begin() + 20));
}

TEST(Ipv4, DropsTrailingLinkPadding) {
  auto d = SampleIpv4(6);
  d.resize(d.size() + 12, 0);  // Ethernet minimum-frame padding
  absl::Span<const uint8_t> payload;
  auto r = ParseIpv4(d, &payload);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(payload.size(), 6u);
  EXPECT_EQ(r->payload_len, 6);
}

TEST(Ipv4, NullPayloadPointerIsAllowed) {
  auto d = SampleIpv4();
  EXPECT_TRUE(ParseIpv4(d, nullptr).ok());
}

TEST(Ipv4, KeepsOptionsAsView) {
  auto d = SampleIpv4(4);
  // Insert 8 option bytes: NOP, NOP, a 4-byte Router Alert (RFC 2113), EOL x2... padded.
  const uint8_t opts[] = {0x01, 0x01, 0x94, 0x04, 0x00, 0x00, 0x00, 0x00};
  d.insert(d.begin() + 20, std::begin(opts), std::end(opts));
  d[0] = 0x47;
  d[3] = static_cast<uint8_t>(d[3] + 8);
  FixIpv4Checksum(d);
  absl::Span<const uint8_t> payload;
  auto r = ParseIpv4(d, &payload);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->header_len(), 28u);
  ASSERT_EQ(r->options.size(), 8u);
  EXPECT_EQ(r->options.data(), d.data() + 20);
  EXPECT_EQ(payload.size(), 4u);
  std::vector<uint8_t> out(28);
  ASSERT_EQ(EmitIpv4(*r, absl::MakeSpan(out)), 28u);
  EXPECT_EQ(out, std::vector<uint8_t>(d.begin(), d.begin() + 28));
}

TEST(Ipv4, RoundTripsRandomHeaders) {
  std::mt19937 rng(11);
  for (int i = 0; i < 3000; ++i) {
    std::vector<uint8_t> opts(4 * (rng() % 11));
    for (auto& b : opts) b = static_cast<uint8_t>(rng());
    Ipv4Repr r;
    r.src = IpAddress::V4(static_cast<uint32_t>(rng()));
    r.dst = IpAddress::V4(static_cast<uint32_t>(rng()));
    r.dscp_ecn = static_cast<uint8_t>(rng());
    r.ident = static_cast<uint16_t>(rng());
    r.dont_fragment = rng() & 1;
    r.more_fragments = rng() & 1;
    r.fragment_offset = static_cast<uint16_t>(rng() & 0x1fff);
    r.ttl = static_cast<uint8_t>(rng());
    r.protocol = static_cast<uint8_t>(rng());
    r.options = opts;
    r.payload_len = static_cast<uint16_t>(rng() % 300);
    std::vector<uint8_t> buf(r.header_len() + r.payload_len);
    ASSERT_EQ(EmitIpv4(r, absl::MakeSpan(buf)), r.header_len());
    absl::Span<const uint8_t> payload;
    auto back = ParseIpv4(buf, &payload);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, r);
    EXPECT_EQ(payload.size(), r.payload_len);
  }
}

TEST(Ipv4, ReprEqualityComparesOptionBytesNotPointers) {
  const uint8_t a[] = {1, 1, 1, 0};
  const uint8_t b[] = {1, 1, 1, 0};
  const uint8_t c[] = {1, 1, 0, 0};
  Ipv4Repr x, y;
  x.options = a;
  y.options = b;
  EXPECT_EQ(x, y);
  y.options = c;
  EXPECT_NE(x, y);
}

TEST(Ipv4, EmitRefusesShortBufferAndBadOptions) {
  Ipv4Repr r;
  std::vector<uint8_t> small(19);
  EXPECT_EQ(EmitIpv4(r, absl::MakeSpan(small)), 0u);
  const uint8_t three[] = {1, 1, 1};
  r.options = three;
  std::vector<uint8_t> buf(60);
  EXPECT_EQ(EmitIpv4(r, absl::MakeSpan(buf)), 0u);
  std::vector<uint8_t> too_many(44, 1);
  r.options = too_many;
  EXPECT_EQ(EmitIpv4(r, absl::MakeSpan(buf)), 0u);
  r.options = {};
  r.payload_len = 65530;
  EXPECT_EQ(EmitIpv4(r, absl::MakeSpan(buf)), 0u);
}

TEST(Ipv4, RejectsTruncatedHeader) {
  auto d = SampleIpv4();
  EXPECT_THAT(ParseIpv4(absl::MakeConstSpan(d).first(12), nullptr),
              IsErrorWith("truncated IPv4 header (12 bytes, need 20)"));
  EXPECT_THAT(ParseIpv4({}, nullptr), IsErrorWith("truncated IPv4 header (0 bytes"));
}

TEST(Ipv4, RejectsOtherVersion) {
  auto d = SampleIpv4();
  d[0] = 0x65;
  EXPECT_THAT(ParseIpv4(d, nullptr), IsErrorWith("version 6"));
}

TEST(Ipv4, RejectsHeaderLengthBelowFive) {
  auto d = SampleIpv4();
  d[0] = 0x44;
  EXPECT_THAT(ParseIpv4(d, nullptr), IsErrorWith("bad IPv4 header length 4"));
  d[0] = 0x40;
  EXPECT_THAT(ParseIpv4(d, nullptr), IsErrorWith("bad IPv4 header length 0"));
}

TEST(Ipv4, RejectsOptionsPastEndOfBuffer) {
  auto d = SampleIpv4(0);
  d[0] = 0x46;  // claims 24 bytes of header, buffer has 20
  EXPECT_THAT(ParseIpv4(d, nullptr), IsErrorWith("(20 bytes, need 24)"));
}

TEST(Ipv4, RejectsTotalLengthBelowHeaderLength) {
  auto d = SampleIpv4();
  d[2] = 0;
  d[3] = 16;
  FixIpv4Checksum(d);
  EXPECT_THAT(ParseIpv4(d, nullptr), IsErrorWith("total length 16 is less than header length 20"));
}

TEST(Ipv4, RejectsTotalLengthPastDatagram) {
  auto d = SampleIpv4(40);
  d[2] = 900 >> 8;
  d[3] = 900 & 0xff;
  FixIpv4Checksum(d);
  EXPECT_THAT(ParseIpv4(d, nullptr), IsErrorWith("total length 900 exceeds datagram (60 bytes)"));
}

TEST(Ipv4, RejectsBadHeaderChecksum) {
  auto d = SampleIpv4();
  d[8] = 63;  // ttl changed, checksum not updated
  EXPECT_THAT(ParseIpv4(d, nullptr), IsErrorWith("bad IPv4 header checksum"));
}

TEST(Ipv4, BadChecksumMessageNamesExpectedValue) {
  auto d = SampleIpv4();
  std::vector<uint8_t> good = d;
  d[8] = 1;
  FixIpv4Checksum(good);
  FixIpv4Checksum(d);
  uint16_t want = static_cast<uint16_t>((d[10] << 8) | d[11]);
  d[10] = good[10];
  d[11] = good[11];
  EXPECT_THAT(ParseIpv4(d, nullptr), IsErrorWith(absl::StrFormat(
                                         "bad IPv4 header checksum 0x%02x%02x (expected 0x%04x)",
                                         good[10], good[11], want)));
}

TEST(Ipv4, SkipsChecksumWhenAsked) {
  auto d = SampleIpv4();
  d[8] = 63;
  auto r = ParseIpv4(d, nullptr, /*verify_checksum=*/false);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->ttl, 63);
}

TEST(Ipv4, ParsesFragmentFieldsWithoutRefusing) {
  // Fragments are refused one layer up (segment.h); here the fields are just read.
  auto d = SampleIpv4();
  d[6] = 0x20 | 0x01;  // MF, offset 0x100 units
  d[7] = 0x00;
  FixIpv4Checksum(d);
  auto r = ParseIpv4(d, nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->more_fragments);
  EXPECT_FALSE(r->dont_fragment);
  EXPECT_EQ(r->fragment_offset, 0x100);
}

TEST(Ipv4, NeverReadsPastAnyPrefix) {
  // Every prefix of a valid datagram either parses or fails cleanly (ASan checks
  // the "cleanly"); the prefix is copied so the allocation ends exactly there.
  auto d = SampleIpv4(12);
  for (size_t n = 0; n <= d.size(); ++n) {
    std::vector<uint8_t> prefix(d.begin(), d.begin() + n);
    auto r = ParseIpv4(prefix, nullptr);
    EXPECT_EQ(r.ok(), n == d.size()) << n;
  }
}

TEST(Ipv4, PrintsOneLine) {
  auto r = ParseIpv4(SampleIpv4(), nullptr);
  ASSERT_TRUE(r.ok());
  std::ostringstream os;
  os << *r;
  EXPECT_THAT(os.str(), HasSubstr("10.0.0.1 > 10.0.0.2"));
}

// ---------------------------------------------------------------- IPv6

Ipv6Repr SampleIpv6Repr() {
  Ipv6Repr r;
  r.src = IpAddress::Parse("fd00::1").value();
  r.dst = IpAddress::Parse("fd00::2").value();
  r.traffic_class = 0xb8;
  r.flow_label = 0xabcde;
  r.hop_limit = 63;
  r.payload_len = 20;
  return r;
}

std::vector<uint8_t> SampleIpv6(size_t payload = 20) {
  auto r = SampleIpv6Repr();
  r.payload_len = static_cast<uint16_t>(payload);
  std::vector<uint8_t> d(40 + payload, 0x5a);
  EmitIpv6(r, absl::MakeSpan(d));
  return d;
}

// Inserts an extension header of `kind` (`len8` 8-octet units beyond the first)
// right after the fixed header, and updates the chain and the payload length.
void InsertExtension(std::vector<uint8_t>& d, uint8_t kind, uint8_t len8, size_t at = 40) {
  // Find the next-header byte that currently points at what follows `at`.
  size_t nh_pos = 6;
  for (size_t off = 40; off < at; off += (d[off + 1] + 1) * 8) nh_pos = off;
  std::vector<uint8_t> ext((len8 + 1) * 8, 0);
  ext[0] = d[nh_pos];
  ext[1] = len8;
  ext[2] = 1;  // a PadN option, or a routing type
  ext[3] = 0;  // for routing: segments left
  d[nh_pos] = kind;
  d.insert(d.begin() + static_cast<ptrdiff_t>(at), ext.begin(), ext.end());
  uint16_t plen = static_cast<uint16_t>(((d[4] << 8) | d[5]) + ext.size());
  d[4] = static_cast<uint8_t>(plen >> 8);
  d[5] = static_cast<uint8_t>(plen);
}

TEST(Ipv6, ParsesFixedHeader) {
  auto d = SampleIpv6();
  absl::Span<const uint8_t> payload;
  auto r = ParseIpv6(d, &payload);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, SampleIpv6Repr());
  EXPECT_EQ(payload.data(), d.data() + 40);
  EXPECT_EQ(payload.size(), 20u);
}

TEST(Ipv6, EmitsFieldsInPlace) {
  auto d = SampleIpv6();
  // version 6, traffic class 0xb8, flow label 0xabcde
  EXPECT_EQ(d[0], 0x6b);
  EXPECT_EQ(d[1], 0x8a);
  EXPECT_EQ(d[2], 0xbc);
  EXPECT_EQ(d[3], 0xde);
  EXPECT_EQ(d[4], 0);
  EXPECT_EQ(d[5], 20);
  EXPECT_EQ(d[6], kIpProtoTcp);
  EXPECT_EQ(d[7], 63);
  EXPECT_EQ(d[8], 0xfd);
  EXPECT_EQ(d[23], 1);
  EXPECT_EQ(d[39], 2);
}

TEST(Ipv6, RoundTripsRandomHeaders) {
  std::mt19937 rng(12);
  for (int i = 0; i < 2000; ++i) {
    Ipv6Repr r;
    std::array<uint8_t, 16> a;
    for (auto& b : a) b = static_cast<uint8_t>(rng());
    r.src = IpAddress::V6(a);
    for (auto& b : a) b = static_cast<uint8_t>(rng());
    r.dst = IpAddress::V6(a);
    r.traffic_class = static_cast<uint8_t>(rng());
    r.flow_label = rng() & 0xfffff;
    r.hop_limit = static_cast<uint8_t>(rng());
    r.next_header = kIpProtoTcp;
    r.payload_len = static_cast<uint16_t>(1 + rng() % 300);
    std::vector<uint8_t> buf(40 + r.payload_len);
    ASSERT_EQ(EmitIpv6(r, absl::MakeSpan(buf)), 40u);
    auto back = ParseIpv6(buf, nullptr);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_EQ(*back, r);
  }
}

TEST(Ipv6, EmitRefusesShortBuffer) {
  std::vector<uint8_t> small(39);
  EXPECT_EQ(EmitIpv6(SampleIpv6Repr(), absl::MakeSpan(small)), 0u);
}

TEST(Ipv6, DropsTrailingBytes) {
  auto d = SampleIpv6(8);
  d.resize(d.size() + 10);
  absl::Span<const uint8_t> payload;
  auto r = ParseIpv6(d, &payload);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(payload.size(), 8u);
}

TEST(Ipv6, SkipsHopByHopRoutingAndDestinationOptions) {
  auto d = SampleIpv6(20);
  InsertExtension(d, 0, 0);         // hop-by-hop, 8 bytes
  InsertExtension(d, 60, 1, 48);    // destination options, 16 bytes
  InsertExtension(d, 43, 0, 64);    // routing, segments left 0
  absl::Span<const uint8_t> payload;
  auto r = ParseIpv6(d, &payload);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->next_header, kIpProtoTcp);
  EXPECT_EQ(r->payload_len, 20);
  EXPECT_EQ(payload.data(), d.data() + 72);
  EXPECT_EQ(payload.size(), 20u);
}

TEST(Ipv6, PassesUnknownUpperLayerProtocolUp) {
  auto d = SampleIpv6();
  d[6] = 17;  // UDP: not this layer's business
  auto r = ParseIpv6(d, nullptr);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->next_header, 17);
}

TEST(Ipv6, RejectsTruncatedHeader) {
  auto d = SampleIpv6();
  EXPECT_THAT(ParseIpv6(absl::MakeConstSpan(d).first(39), nullptr),
              IsErrorWith("truncated IPv6 header (39 bytes, need 40)"));
}

TEST(Ipv6, RejectsOtherVersion) {
  auto d = SampleIpv6();
  d[0] = 0x4b;
  EXPECT_THAT(ParseIpv6(d, nullptr), IsErrorWith("version 4"));
}

TEST(Ipv6, RejectsPayloadLengthPastDatagram) {
  auto d = SampleIpv6(20);
  d[5] = 21;
  EXPECT_THAT(ParseIpv6(d, nullptr),
              IsErrorWith("IPv6 payload length 21 exceeds datagram (20 bytes"));
}

TEST(Ipv6, RejectsJumbogram) {
  auto d = SampleIpv6(20);
  InsertExtension(d, 0, 0);
  d[4] = d[5] = 0;
  EXPECT_THAT(ParseIpv6(d, nullptr), IsErrorWith("jumbogram"));
}

TEST(Ipv6, RejectsFragmentHeader) {
  auto d = SampleIpv6();
  InsertExtension(d, 44, 0);
  EXPECT_THAT(ParseIpv6(d, nullptr), IsErrorWith("IPv6 fragment header not supported"));
}

TEST(Ipv6, RejectsFragmentHeaderAfterSkippedOnes) {
  auto d = SampleIpv6();
  InsertExtension(d, 0, 0);
  InsertExtension(d, 44, 0, 48);
  EXPECT_THAT(ParseIpv6(d, nullptr), IsErrorWith("IPv6 fragment header not supported"));
}

TEST(Ipv6, RejectsEspAndAh) {
  auto d = SampleIpv6();
  d[6] = 50;
  EXPECT_THAT(ParseIpv6(d, nullptr), IsErrorWith("IPv6 extension header 50 (ESP) not supported"));
  d[6] = 51;
  EXPECT_THAT(ParseIpv6(d, nullptr), IsErrorWith("IPv6 extension header 51 (AH) not supported"));
  for (uint8_t nh : {135, 139, 140, 253, 254}) {
    d[6] = nh;
    EXPECT_THAT(ParseIpv6(d, nullptr), IsErrorWith("not supported")) << int{nh};
  }
}

TEST(Ipv6, RejectsHopByHopNotFirst) {
  auto d = SampleIpv6();
  InsertExtension(d, 60, 0);
  InsertExtension(d, 0, 0, 48);
  EXPECT_THAT(ParseIpv6(d, nullptr), IsErrorWith("hop-by-hop options header not first"));
}

TEST(Ipv6, RejectsTruncatedExtensionHeader) {
  auto d = SampleIpv6(4);
  d[6] = 60;  // destination options, but only 4 bytes follow
  EXPECT_THAT(ParseIpv6(d, nullptr),
              IsErrorWith("truncated IPv6 extension header 60 (4 bytes left, need 8)"));
}

TEST(Ipv6, RejectsExtensionHeaderLongerThanPayload) {
  auto d = SampleIpv6(20);
  InsertExtension(d, 60, 0);
  d[41] = 5;  // claims 48 bytes, 28 are left
  EXPECT_THAT(ParseIpv6(d, nullptr),
              IsErrorWith("IPv6 extension header 60 length 48 exceeds payload (28 bytes left)"));
}

TEST(Ipv6, RejectsRoutingHeaderWithSegmentsLeft) {
  auto d = SampleIpv6();
  InsertExtension(d, 43, 0);
  d[43] = 2;
  EXPECT_THAT(ParseIpv6(d, nullptr),
              IsErrorWith("IPv6 routing header with 2 segments left not supported"));
}

TEST(Ipv6, NeverReadsPastAnyPrefix) {
  auto d = SampleIpv6(20);
  InsertExtension(d, 0, 0);
  InsertExtension(d, 60, 1, 48);
  for (size_t n = 0; n <= d.size(); ++n) {
    std::vector<uint8_t> prefix(d.begin(), d.begin() + static_cast<ptrdiff_t>(n));
    EXPECT_EQ(ParseIpv6(prefix, nullptr).ok(), n == d.size()) << n;
  }
}

TEST(Ipv6, ParsesAnyRandomBytesWithoutCrashing) {
  std::mt19937 rng(13);
  for (int i = 0; i < 20000; ++i) {
    std::vector<uint8_t> d(rng() % 120);
    for (auto& b : d) b = static_cast<uint8_t>(rng());
    if (!d.empty()) d[0] = static_cast<uint8_t>(0x60 | (d[0] & 0x0f));
    if (d.size() > 6 && rng() % 2)
      d[6] = static_cast<uint8_t>(std::array{0, 43, 60, 44}[rng() % 4]);
    absl::Span<const uint8_t> payload;
    auto r = ParseIpv6(d, &payload);
    if (r.ok()) {
      EXPECT_GE(payload.data(), d.data() + 40);
      EXPECT_LE(payload.data() + payload.size(), d.data() + d.size());
    }
  }
}

// ---------------------------------------------------------------- boundaries

TEST(IpAddress, Ipv6DottedQuadEndsAFullOrShortenedAddress) {
  std::array<uint8_t, 16> b = {0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 1, 2, 3, 4};
  EXPECT_EQ(IpAddress::Parse("1:2:3:4:5:6:1.2.3.4"), IpAddress::V6(b));  // exactly 8 words
  EXPECT_EQ(IpAddress::Parse("1:2:3:4:5:6:7:1.2.3.4"), std::nullopt);    // 9
  EXPECT_EQ(IpAddress::Parse("1.2.3.4::"), std::nullopt);  // only the last group may be a quad
  EXPECT_EQ(IpAddress::Parse("1.2.3.4::1"), std::nullopt);
  // "::" with seven explicit groups around it still stands for one zero group.
  b = {0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 0, 0, 7};
  EXPECT_EQ(IpAddress::Parse("1:2:3:4:5:6::7"), IpAddress::V6(b));
  b = {0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8};
  EXPECT_EQ(IpAddress::Parse("1:2:3:4:5:6:7:8"), IpAddress::V6(b));
}

TEST(IpAddress, OnlyTheMappedPrefixPrintsAsADottedQuad) {
  auto text = [](const char* s) { return IpAddress::Parse(s).value().ToString(); };
  EXPECT_EQ(text("0:1::ffff:c000:221"), "0:1::ffff:c000:221");
  EXPECT_EQ(text("0:0:1::ffff:c000:221"), "::1:0:0:ffff:c000:221");  // first run on a tie
  EXPECT_EQ(text("1::ffff:c000:221"), "1::ffff:c000:221");
  EXPECT_EQ(text("::1:ffff:c000:221"), "::1:ffff:c000:221");
  EXPECT_EQ(text("::fffe:c000:221"), "::fffe:c000:221");
}

TEST(IpAddress, AnIpv6AddressHasNoIpv4Form) {
  EXPECT_EQ(IpAddress::Parse("::1").value().v4_host_order(), 0u);
  EXPECT_EQ(IpAddress::Parse("10.1.2.3").value().v4_host_order(), 0x0a010203u);
}

TEST(Ipv4, ReprsDifferingInOneFieldAreUnequal) {
  Ipv4Repr a;
  a.src = IpAddress::V4(0x0a000001);
  a.dst = IpAddress::V4(0x0a000002);
  EXPECT_EQ(a, a);
  std::vector<Ipv4Repr> others(9, a);
  others[0].src = IpAddress::V4(0x0a000003);
  others[1].dst = IpAddress::V4(0x0a000003);
  others[2].dscp_ecn = 4;
  others[3].ident = 9;
  others[4].dont_fragment = false;
  others[5].more_fragments = true;
  others[6].fragment_offset = 1;
  others[7].ttl = 1;
  others[8].protocol = 17;
  for (size_t i = 0; i < others.size(); ++i) EXPECT_FALSE(a == others[i]) << i;
  Ipv4Repr c = a;
  c.payload_len = 1;
  EXPECT_FALSE(a == c);
}

TEST(Ipv4, DefaultsAreDontFragmentAndVerifiedChecksums) {
  Ipv4Repr r;
  EXPECT_TRUE(r.dont_fragment);
  EXPECT_FALSE(r.more_fragments);
  auto d = SampleIpv4();
  d[10] ^= 0xff;  // break the header checksum
  Ipv4Repr parsed;
  absl::Span<const uint8_t> payload;
  EXPECT_FALSE(ParseIpv4Into(d, &parsed, &payload).ok());
}

TEST(Ipv4, EmitsTheLargestTotalLength) {
  Ipv4Repr r;
  r.src = IpAddress::V4(0x0a000001);
  r.dst = IpAddress::V4(0x0a000002);
  r.payload_len = 0xffff - 20;
  std::vector<uint8_t> out(20);
  EXPECT_EQ(EmitIpv4(r, absl::MakeSpan(out)), 20u);
  EXPECT_EQ(out[2], 0xff);
  EXPECT_EQ(out[3], 0xff);
  r.payload_len += 1;
  EXPECT_EQ(EmitIpv4(r, absl::MakeSpan(out)), 0u);
}

TEST(Ipv4, PrintsNonZeroFragmentAndTos) {
  Ipv4Repr r;
  r.src = IpAddress::V4(0x0a000001);
  r.dst = IpAddress::V4(0x0a000002);
  std::ostringstream plain;
  plain << r;
  EXPECT_THAT(plain.str(), ::testing::Not(HasSubstr("frag")));
  EXPECT_THAT(plain.str(), ::testing::Not(HasSubstr("tos")));
  r.fragment_offset = 1;
  r.dscp_ecn = 1;
  std::ostringstream os;
  os << r;
  EXPECT_THAT(os.str(), HasSubstr(" frag 8"));
  EXPECT_THAT(os.str(), HasSubstr(" tos 0x01"));
}

TEST(Ipv6, PrintsNonZeroTrafficClassAndFlowLabel) {
  Ipv6Repr r = SampleIpv6Repr();
  r.traffic_class = 0;
  r.flow_label = 0;
  std::ostringstream plain;
  plain << r;
  EXPECT_THAT(plain.str(), ::testing::Not(HasSubstr(" tc ")));
  EXPECT_THAT(plain.str(), ::testing::Not(HasSubstr(" flow ")));
  r.traffic_class = 1;
  r.flow_label = 1;
  std::ostringstream os;
  os << r;
  EXPECT_THAT(os.str(), HasSubstr(" tc 0x01"));
  EXPECT_THAT(os.str(), HasSubstr(" flow 0x00001"));
}

TEST(Ipv6, AHeaderWithNoPayloadParsesAndEmitsInFortyBytes) {
  auto d = SampleIpv6(0);
  ASSERT_EQ(d.size(), 40u);
  absl::Span<const uint8_t> payload;
  auto r = ParseIpv6(d, &payload);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(payload.size(), 0u);
  EXPECT_EQ(r->src, IpAddress::Parse("fd00::1").value());
  EXPECT_EQ(r->dst, IpAddress::Parse("fd00::2").value());
  std::vector<uint8_t> out(40, 0xee);
  Ipv6Repr e = SampleIpv6Repr();
  e.payload_len = 0;
  EXPECT_EQ(EmitIpv6(e, absl::MakeSpan(out)), 40u);
  EXPECT_EQ(out, d);
}

TEST(Ipv6, NamesEveryExtensionItCannotSkip) {
  for (auto [nh, name] : std::vector<std::pair<uint8_t, const char*>>{
           {50, "ESP"}, {51, "AH"}, {135, "Mobility"}, {139, "HIP"}, {140, "Shim6"},
           {253, "experimental"}, {254, "experimental"}}) {
    auto d = SampleIpv6();
    d[6] = nh;
    EXPECT_THAT(ParseIpv6(d, nullptr), IsErrorWith(name)) << int{nh};
  }
}

}  // namespace
}  // namespace wrench::stack
