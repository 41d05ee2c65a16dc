// The checked datagram view (stack/datagram_view.h): it accepts and refuses what
// ParseSegment does, reads the same fields, and every patch leaves the bytes a full
// emission of the changed segment would write, checksums included (RFC 1624).
#include "stack/datagram_view.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "stack/checksum.h"
#include "stack/segment.h"
#include "tests/wire_testing.h"

namespace wrench::stack {
namespace {

using ::testing::ElementsAreArray;
using testing::IsErrorWith;
using testing::LinuxSynAckV6;
using testing::LinuxSynV4;
using testing::RandomSegments;

std::vector<uint8_t> Emit(const Segment& s) {
  std::vector<uint8_t> out(s.BufferLen());
  auto n = EmitSegment(s, absl::MakeSpan(out));
  EXPECT_TRUE(n.ok()) << n.status();
  out.resize(n.ok() ? *n : 0);
  return out;
}

// The view reads every field ParseSegment reads.
void ExpectSameFields(ConstDatagramView v, const Segment& s) {
  EXPECT_EQ(v.is_v6(), s.is_v6());
  EXPECT_EQ(v.src(), s.src());
  EXPECT_EQ(v.dst(), s.dst());
  EXPECT_EQ(v.ttl(), s.ttl());
  EXPECT_EQ(v.src_port(), s.tcp.src_port);
  EXPECT_EQ(v.dst_port(), s.tcp.dst_port);
  EXPECT_EQ(v.seq(), s.tcp.seq);
  EXPECT_EQ(v.ack(), s.tcp.ack);
  EXPECT_EQ(v.flags(), s.tcp.flags);
  EXPECT_EQ(v.window(), s.tcp.window);
  EXPECT_EQ(v.urgent(), s.tcp.urgent);
  EXPECT_EQ(v.mss(), s.tcp.options.mss);
  EXPECT_EQ(v.window_scale(), s.tcp.options.window_scale);
  EXPECT_EQ(v.timestamps(), s.tcp.options.timestamps);
  ASSERT_EQ(v.sack_count(), s.tcp.options.sack_count);
  for (size_t i = 0; i < v.sack_count(); ++i) EXPECT_EQ(v.sack(i), s.tcp.options.sack[i]);
  EXPECT_EQ(v.payload().data(), s.tcp.payload.data());
  EXPECT_EQ(v.payload().size(), s.tcp.payload.size());
  EXPECT_EQ(v.seg_len(), s.tcp.seg_len());
}

TEST(DatagramView, ReadsTheFieldsOfALinuxSynV4AndSynAckV6) {
  for (const auto* d : {&LinuxSynV4(), &LinuxSynAckV6()}) {
    auto v = ConstDatagramView::Check(absl::MakeConstSpan(*d));
    ASSERT_TRUE(v.ok()) << v.status();
    auto s = ParseSegment(*d);
    ASSERT_TRUE(s.ok());
    ExpectSameFields(*v, *s);
    EXPECT_EQ(v->tcp_header_len(), 40u);
  }
}

TEST(DatagramView, LeavesLinkPaddingOutOfTheDatagram) {
  std::vector<uint8_t> d = LinuxSynV4();
  d.insert(d.end(), {0, 0, 0, 0, 0, 0});
  auto v = ConstDatagramView::Check(absl::MakeConstSpan(d));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->bytes().size(), LinuxSynV4().size());
  EXPECT_TRUE(v->payload().empty());
}

TEST(DatagramView, RefusesWhatParseSegmentRefusesWithTheSameReason) {
  std::vector<uint8_t> d = LinuxSynV4();
  d[d.size() - 1] ^= 1;
  EXPECT_THAT(CheckDatagram(d), IsErrorWith("bad TCP checksum"));
  EXPECT_TRUE(CheckDatagram(d, {.verify_checksums = false}).ok());
  EXPECT_THAT(CheckDatagram(absl::MakeConstSpan(LinuxSynV4()).first(30)),
              IsErrorWith(std::string(ParseSegment(absl::MakeConstSpan(LinuxSynV4()).first(30))
                                          .status()
                                          .message())));
  std::vector<uint8_t> bad_opt = LinuxSynV4();
  bad_opt[41] = 3;  // MSS with length 3
  EXPECT_THAT(CheckDatagram(bad_opt, {.verify_checksums = false}),
              IsErrorWith("TCP option kind 2 has bad length 3"));
  std::vector<uint8_t> udp = LinuxSynV4();
  udp[9] = 17;
  EXPECT_THAT(CheckDatagram(udp, {.verify_checksums = false}),
              IsErrorWith("protocol 17 is not TCP"));
  for (size_t n = 0; n < LinuxSynAckV6().size(); ++n) {
    auto prefix = absl::MakeConstSpan(LinuxSynAckV6()).first(n);
    EXPECT_EQ(CheckDatagram(prefix).ok(), ParseSegment(prefix).ok()) << n;
  }
}

TEST(DatagramView, EachPatchKeepsBothChecksumsRight) {
  std::vector<uint8_t> d = LinuxSynV4();
  auto v = DatagramView::Check(absl::MakeSpan(d));
  ASSERT_TRUE(v.ok());
  v->set_ttl(1);
  v->set_src_port(1);
  v->set_dst_port(65535);
  v->set_seq(SeqNum(0xffffffff));
  v->set_ack(SeqNum(7));
  v->set_flags(TcpFlags(kSyn | kAck | kEce));
  v->set_window(0);
  v->set_urgent(0x8000);
  EXPECT_TRUE(v->set_mss(536));
  EXPECT_TRUE(v->set_window_scale(14));
  EXPECT_TRUE(v->set_timestamps({1, 2}));
  EXPECT_FALSE(v->set_sack(0, {SeqNum(1), SeqNum(2)}));  // the SYN carries no SACK blocks
  auto s = ParseSegment(d);  // verifies both checksums
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->ttl(), 1);
  EXPECT_EQ(s->tcp.src_port, 1);
  EXPECT_EQ(s->tcp.dst_port, 65535);
  EXPECT_EQ(s->tcp.seq, SeqNum(0xffffffff));
  EXPECT_EQ(s->tcp.ack, SeqNum(7));
  EXPECT_EQ(s->tcp.flags, TcpFlags(kSyn | kAck | kEce));
  EXPECT_EQ(s->tcp.window, 0);
  EXPECT_EQ(s->tcp.urgent, 0x8000);
  EXPECT_EQ(s->tcp.options.mss, 536);
  EXPECT_EQ(s->tcp.options.window_scale, 14);
  EXPECT_EQ(s->tcp.options.timestamps, (Timestamps{1, 2}));
  EXPECT_TRUE(s->tcp.options.sack_permitted);
}

// What a checksum check sums over the segment: 0 (after inversion) when it is right.
uint16_t Residual(ConstDatagramView v) {
  const absl::Span<const uint8_t> tcp = v.bytes().subspan(v.layout().tcp);
  return ChecksumFinish(ChecksumAccumulate(
      tcp, PseudoHeaderSum(v.src(), v.dst(), kIpProtoTcp, static_cast<uint32_t>(tcp.size()))));
}

TEST(DatagramView, APatchKeepsAWrongChecksumWrongByTheSameAmount) {
  std::vector<uint8_t> d = LinuxSynAckV6();
  d[57] ^= 0xff;  // the TCP checksum's low byte
  auto v = DatagramView::Check(absl::MakeSpan(d), {.verify_checksums = false});
  ASSERT_TRUE(v.ok());
  const uint16_t wrong = Residual(*v);
  ASSERT_NE(wrong, 0);
  v->set_window(1);
  v->set_seq(SeqNum(0x12345678));
  EXPECT_EQ(Residual(*v), wrong);
  EXPECT_THAT(ParseSegment(d), IsErrorWith("bad TCP checksum"));
}

TEST(DatagramView, OptionSettersChangeNothingWithoutTheOption) {
  Segment s = MakeSegment(IpAddress::V4(0x0a000001), IpAddress::V4(0x0a000002),
                          [] {
                            TcpRepr r;
                            r.src_port = 1;
                            r.dst_port = 2;
                            r.flags = TcpFlags(kAck);
                            return r;
                          }());
  std::vector<uint8_t> d = Emit(s);
  const std::vector<uint8_t> before = d;
  auto v = DatagramView::Check(absl::MakeSpan(d));
  ASSERT_TRUE(v.ok());
  EXPECT_FALSE(v->set_mss(1));
  EXPECT_FALSE(v->set_window_scale(1));
  EXPECT_FALSE(v->set_timestamps({1, 1}));
  EXPECT_FALSE(v->set_sack(0, {}));
  EXPECT_EQ(d, before);
}

// The property: for random segments of both versions and random patches, the
// patched bytes are exactly what EmitSegment writes for the changed segment, so the
// incremental checksums equal the recomputed ones.
TEST(DatagramView, IncrementalUpdateEqualsAFullRecomputeForV4AndV6) {
  RandomSegments gen(20240611);
  for (int round = 0; round < 4000; ++round) {
    Segment s = round % 2 == 0 ? gen.V4() : gen.V6();
    std::vector<uint8_t> d = Emit(s);
    auto v = DatagramView::Check(absl::MakeSpan(d));
    ASSERT_TRUE(v.ok()) << v.status() << " " << s;
    ExpectSameFields(*v, *ParseSegment(d));
    std::vector<uint8_t> payload(s.tcp.payload.begin(), s.tcp.payload.end());
    for (int k = 0; k < 3; ++k) {
      const uint32_t x = gen.Next();
      switch (gen.Next() % 12) {
        case 0: v->set_ttl(static_cast<uint8_t>(x)); s.set_ttl(static_cast<uint8_t>(x)); break;
        case 1:
          v->set_src_port(static_cast<uint16_t>(x));
          s.tcp.src_port = static_cast<uint16_t>(x);
          break;
        case 2:
          v->set_dst_port(static_cast<uint16_t>(x));
          s.tcp.dst_port = static_cast<uint16_t>(x);
          break;
        case 3: v->set_seq(SeqNum(x)); s.tcp.seq = SeqNum(x); break;
        case 4: v->set_ack(SeqNum(x)); s.tcp.ack = SeqNum(x); break;
        case 5:
          v->set_flags(TcpFlags(static_cast<uint8_t>(x)));
          s.tcp.flags = TcpFlags(static_cast<uint8_t>(x));
          break;
        case 6:
          v->set_window(static_cast<uint16_t>(x));
          s.tcp.window = static_cast<uint16_t>(x);
          break;
        case 7:
          v->set_urgent(static_cast<uint16_t>(x));
          s.tcp.urgent = static_cast<uint16_t>(x);
          break;
        case 8:
          if (v->set_mss(static_cast<uint16_t>(x))) s.tcp.options.mss = static_cast<uint16_t>(x);
          if (v->set_window_scale(static_cast<uint8_t>(x >> 16))) {
            s.tcp.options.window_scale = static_cast<uint8_t>(x >> 16);
          }
          break;
        case 9:
          if (v->set_timestamps({x, ~x})) s.tcp.options.timestamps = Timestamps{x, ~x};
          break;
        case 10:
          if (v->sack_count() > 0) {
            const size_t i = x % v->sack_count();
            const SackBlock b{SeqNum(x), SeqNum(x * 3)};
            ASSERT_TRUE(v->set_sack(i, b));
            s.tcp.options.sack[i] = b;
          }
          break;
        case 11:
          if (!payload.empty()) {
            // One to three bytes anywhere, so odd offsets and the odd last byte occur.
            const size_t at = x % payload.size();
            const size_t n = std::min<size_t>(1 + (x >> 8) % 3, payload.size() - at);
            std::vector<uint8_t> data(n);
            for (auto& b : data) b = static_cast<uint8_t>(gen.Next());
            v->PatchPayload(at, data);
            std::copy(data.begin(), data.end(), payload.begin() + static_cast<ptrdiff_t>(at));
          }
          break;
      }
    }
    s.tcp.payload = payload;
    ASSERT_THAT(d, ElementsAreArray(Emit(s))) << s;
  }
}

}  // namespace
}  // namespace wrench::stack
