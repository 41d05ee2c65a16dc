// Segmentation offload's byte work (stack/offload.h): a batch of wrench's segments
// becomes one super-segment that cuts back into exactly those segments, and a
// super-segment as the kernel hands it over cuts into what its own segmentation
// would have put on the wire.
#include "stack/offload.h"

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "stack/checksum.h"
#include "stack/segment.h"

namespace wrench::stack {
namespace {

using Bytes = std::vector<uint8_t>;

const IpAddress kV4A = IpAddress::V4(0x0a590002);  // 10.89.0.2
const IpAddress kV4B = IpAddress::V4(0x0a590001);
const IpAddress kV6A = *IpAddress::Parse("fd00:77:72::2");
const IpAddress kV6B = *IpAddress::Parse("fd00:77:72::1");

std::vector<uint8_t> Payload(size_t n, uint8_t salt) {
  std::vector<uint8_t> p(n);
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(i * 7 + salt);
  return p;
}

// One datagram of a bulk transfer: ACK (plus `extra` flags), timestamps, `len`
// payload bytes starting at seq 1000 + offset.
Bytes Datagram(bool v6, uint32_t offset, size_t len, uint8_t extra = 0, uint16_t ident = 0,
               const std::vector<uint8_t>* payload = nullptr) {
  static std::vector<uint8_t> storage;
  storage = payload ? *payload : Payload(len, static_cast<uint8_t>(offset));
  TcpRepr t;
  t.src_port = 8080;
  t.dst_port = 40000;
  t.seq = SeqNum(1000 + offset);
  t.ack = SeqNum(77);
  t.flags = TcpFlags(kAck | extra);
  t.window = 512;
  t.options.timestamps = Timestamps{123456, 654321};
  t.payload = absl::MakeConstSpan(storage);
  const Segment s = v6 ? MakeSegment(kV6A, kV6B, t) : MakeSegment(kV4A, kV4B, t, ident);
  Bytes out(s.BufferLen());
  const absl::StatusOr<size_t> n = EmitSegment(s, absl::MakeSpan(out));
  EXPECT_TRUE(n.ok()) << n.status();
  out.resize(n.ok() ? *n : 0);
  return out;
}

std::vector<Bytes> Split(absl::Span<const uint8_t> d, const VnetHdr& h) {
  std::vector<Bytes> out;
  const absl::StatusOr<size_t> n = SplitSuperSegment(
      d, h, [&](absl::Span<const uint8_t> s) { out.emplace_back(s.begin(), s.end()); });
  EXPECT_TRUE(n.ok()) << n.status();
  if (n.ok()) {
    EXPECT_EQ(*n, out.size());
  }
  return out;
}

class GsoRoundTrip : public ::testing::TestWithParam<bool> {};

// A run of full segments and a shorter last one with PSH becomes one super-segment
// with the kernel's GSO fields, and cutting it gives the run back byte for byte.
TEST_P(GsoRoundTrip, BatchCutsBackIntoTheSameDatagrams) {
  const bool v6 = GetParam();
  constexpr size_t kMss = 1448;
  std::vector<Bytes> run;
  for (uint16_t i = 0; i < 5; ++i) run.push_back(Datagram(v6, i * kMss, kMss, 0, 40 + i));
  run.push_back(Datagram(v6, 5 * kMss, 300, kPsh, 45));

  GsoBatch batch;
  for (const Bytes& d : run) ASSERT_TRUE(batch.Append(d));
  EXPECT_EQ(batch.count(), 6u);
  VnetHdr h;
  const absl::Span<const uint8_t> super = batch.Finish(&h);
  const size_t ip_len = v6 ? 40 : 20;
  EXPECT_EQ(h.flags, VnetHdr::kNeedsCsum);
  EXPECT_EQ(h.gso_type, v6 ? VnetHdr::kGsoTcpV6 : VnetHdr::kGsoTcpV4);
  EXPECT_EQ(h.gso_size, kMss);
  EXPECT_EQ(h.csum_start, ip_len);
  EXPECT_EQ(h.csum_offset, 16);
  EXPECT_EQ(h.hdr_len, ip_len + 32);  // 20 + timestamps (12)
  EXPECT_EQ(super.size(), ip_len + 32 + 5 * kMss + 300);

  const std::vector<Bytes> cut = Split(super, h);
  ASSERT_EQ(cut.size(), run.size());
  for (size_t i = 0; i < run.size(); ++i) {
    EXPECT_EQ(cut[i], run[i]) << "segment " << i;
    EXPECT_TRUE(ParseSegment(cut[i]).ok()) << "segment " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(V4AndV6, GsoRoundTrip, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "V6" : "V4"; });

// What cannot be cut back into itself stays out: a gap in seq, another ACK or
// window, other options, a longer payload, anything after a short or PSH segment,
// a SYN, FIN or RST, a bare ACK, and more than a 16-bit length holds.
TEST(GsoBatch, TakesOnlyWhatTheKernelWouldCutBackUnchanged) {
  constexpr size_t kMss = 1000;
  auto fresh = [&]() {
    auto b = std::make_unique<GsoBatch>();
    EXPECT_TRUE(b->Append(Datagram(false, 0, kMss)));
    return b;
  };
  EXPECT_FALSE(fresh()->Append(Datagram(false, kMss + 1, kMss)));     // a gap
  EXPECT_FALSE(fresh()->Append(Datagram(false, kMss, kMss + 1)));     // longer
  EXPECT_FALSE(fresh()->Append(Datagram(false, kMss, kMss, kFin)));   // FIN
  EXPECT_FALSE(fresh()->Append(Datagram(false, kMss, 0)));            // no payload
  EXPECT_FALSE(fresh()->Append(Datagram(true, kMss, kMss)));          // another version
  {
    Bytes other_window = Datagram(false, kMss, kMss);
    other_window[20 + 15] ^= 1;  // window, low byte (the checksum is not what is compared)
    EXPECT_FALSE(fresh()->Append(other_window));
    Bytes other_ack = Datagram(false, kMss, kMss);
    other_ack[20 + 11] ^= 1;
    EXPECT_FALSE(fresh()->Append(other_ack));
    Bytes other_ts = Datagram(false, kMss, kMss);
    other_ts[20 + 24] ^= 1;  // inside the timestamps option
    EXPECT_FALSE(fresh()->Append(other_ts));
    Bytes other_ttl = Datagram(false, kMss, kMss);
    other_ttl[8] ^= 1;
    EXPECT_FALSE(fresh()->Append(other_ttl));
  }
  {
    auto b = fresh();
    EXPECT_TRUE(b->Append(Datagram(false, kMss, 10)));         // a shorter one ends the run
    EXPECT_FALSE(b->Append(Datagram(false, kMss + 10, 10)));
  }
  {
    auto b = fresh();
    EXPECT_TRUE(b->Append(Datagram(false, kMss, kMss, kPsh)));  // so does PSH
    EXPECT_FALSE(b->Append(Datagram(false, 2 * kMss, kMss)));
  }
  {
    GsoBatch b;  // a FIN is a batch of its own
    EXPECT_TRUE(b.Append(Datagram(false, 0, kMss, kFin)));
    EXPECT_FALSE(b.Append(Datagram(false, kMss + 1, kMss)));
    VnetHdr h;
    EXPECT_EQ(b.Finish(&h).size(), Datagram(false, 0, kMss, kFin).size());
    EXPECT_EQ(h, VnetHdr{});
  }
  {
    GsoBatch b;  // 65535 bytes of IPv4 at most
    const size_t big = 60000;
    EXPECT_TRUE(b.Append(Datagram(false, 0, big)));
    EXPECT_FALSE(b.Append(Datagram(false, big, big)));
  }
}

// One datagram stays itself, with an all-zero header; Clear starts a new batch.
TEST(GsoBatch, OneDatagramIsWrittenAsItIs) {
  const Bytes d = Datagram(true, 0, 500);
  GsoBatch b;
  ASSERT_TRUE(b.Append(d));
  VnetHdr h;
  h.gso_size = 9;
  const absl::Span<const uint8_t> out = b.Finish(&h);
  EXPECT_EQ(Bytes(out.begin(), out.end()), d);
  EXPECT_EQ(h, VnetHdr{});
  b.Clear();
  EXPECT_TRUE(b.empty());
  EXPECT_TRUE(b.Append(Datagram(false, 0, 10, kFin)));
}

// The kernel's super-segment carries FIN, PSH and CWR on the whole; its segments
// carry FIN and PSH on the last only and CWR on the first only, idents counting up.
TEST(SplitSuperSegment, FlagsGoWhereTheKernelsSegmentationPutsThem) {
  constexpr size_t kMss = 500;
  const std::vector<uint8_t> payload = Payload(3 * kMss - 1, 3);
  Bytes super = Datagram(false, 0, payload.size(), kFin | kPsh | 0x80, 700, &payload);
  VnetHdr h;
  h.gso_type = VnetHdr::kGsoTcpV4 | VnetHdr::kGsoEcn;
  h.gso_size = kMss;
  const std::vector<Bytes> cut = Split(super, h);
  ASSERT_EQ(cut.size(), 3u);
  uint32_t expect_seq = 1000;
  for (size_t i = 0; i < cut.size(); ++i) {
    const absl::StatusOr<Segment> s = ParseSegment(cut[i]);
    ASSERT_TRUE(s.ok()) << s.status();
    EXPECT_EQ(s->tcp.seq, SeqNum(expect_seq));
    EXPECT_EQ(s->tcp.flags.has(kFin), i == 2);
    EXPECT_EQ(s->tcp.flags.has(kPsh), i == 2);
    EXPECT_EQ(s->tcp.flags.has(0x80), i == 0);
    EXPECT_EQ(std::get<Ipv4Repr>(s->ip).ident, 700 + i);
    EXPECT_EQ(s->tcp.payload.size(), i < 2 ? kMss : kMss - 1);
    EXPECT_TRUE(std::equal(s->tcp.payload.begin(), s->tcp.payload.end(),
                           payload.begin() + static_cast<ptrdiff_t>(i * kMss)));
    expect_seq += static_cast<uint32_t>(s->tcp.payload.size());
  }
}

// A datagram with NEEDS_CSUM and no segmentation carries the pseudo-header sum where
// the checksum goes; finishing it gives the checksum the wire carries.
TEST(FinishPartialChecksum, CompletesWhatTheKernelLeftPartial) {
  for (bool v6 : {false, true}) {
    const Bytes full = Datagram(v6, 0, 333);
    const size_t ip_len = v6 ? 40 : 20;
    Bytes partial = full;
    const absl::StatusOr<Segment> s = ParseSegment(full);
    ASSERT_TRUE(s.ok());
    const uint16_t pseudo = static_cast<uint16_t>(
        ~ChecksumFinish(PseudoHeaderSum(s->src(), s->dst(), kIpProtoTcp,
                                        static_cast<uint32_t>(full.size() - ip_len))));
    partial[ip_len + 16] = static_cast<uint8_t>(pseudo >> 8);
    partial[ip_len + 17] = static_cast<uint8_t>(pseudo);
    EXPECT_FALSE(ParseSegment(partial).ok());
    VnetHdr h;
    h.flags = VnetHdr::kNeedsCsum;
    h.csum_start = static_cast<uint16_t>(ip_len);
    h.csum_offset = 16;
    const std::vector<Bytes> cut = Split(partial, h);
    ASSERT_EQ(cut.size(), 1u);
    EXPECT_EQ(cut[0], full);
    ASSERT_TRUE(FinishPartialChecksum(absl::MakeSpan(partial), h).ok());
    EXPECT_EQ(partial, full);
    h.csum_offset = 4000;
    EXPECT_FALSE(FinishPartialChecksum(absl::MakeSpan(partial), h).ok());
  }
}

// Headers that do not describe a TCP super-segment are refused and nothing is cut.
TEST(SplitSuperSegment, RefusesWhatIsNotATcpSuperSegment) {
  const Bytes d = Datagram(false, 0, 3000);
  VnetHdr h;
  h.gso_type = VnetHdr::kGsoTcpV4;
  h.gso_size = 1000;
  int calls = 0;
  auto count = [&](absl::Span<const uint8_t>) { ++calls; };
  VnetHdr zero = h;
  zero.gso_size = 0;
  EXPECT_FALSE(SplitSuperSegment(d, zero, count).ok());
  VnetHdr v6 = h;
  v6.gso_type = VnetHdr::kGsoTcpV6;
  EXPECT_FALSE(SplitSuperSegment(d, v6, count).ok());
  EXPECT_FALSE(SplitSuperSegment(absl::MakeConstSpan(d).subspan(0, 30), h, count).ok());
  Bytes udp = d;
  udp[9] = 17;
  EXPECT_FALSE(SplitSuperSegment(udp, h, count).ok());
  Bytes bad_offset = d;
  bad_offset[20 + 12] = 0x20;  // a data offset of 8 bytes
  EXPECT_FALSE(SplitSuperSegment(bad_offset, h, count).ok());
  EXPECT_FALSE(SplitSuperSegment(Bytes{0x50}, h, count).ok());
  EXPECT_EQ(calls, 0);
}

// The header's bytes are the kernel's struct: host order, in field order.
TEST(VnetHdr, EncodesAndDecodesTheKernelsLayout) {
  VnetHdr h;
  h.flags = VnetHdr::kNeedsCsum;
  h.gso_type = VnetHdr::kGsoTcpV6;
  h.hdr_len = 72;
  h.gso_size = 1428;
  h.csum_start = 40;
  h.csum_offset = 16;
  std::array<uint8_t, VnetHdr::kLen> b{};
  EncodeVnetHdr(h, b);
  EXPECT_EQ(b[0], 1);
  EXPECT_EQ(b[1], 4);
  uint16_t gso_size;
  std::memcpy(&gso_size, &b[4], 2);
  EXPECT_EQ(gso_size, 1428);
  EXPECT_EQ(DecodeVnetHdr(b), h);
}

}  // namespace
}  // namespace wrench::stack
