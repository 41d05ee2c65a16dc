// Tests for the internet checksum (stack/checksum.h): RFC 1071's worked example,
// odd lengths, chaining, pseudo-headers, and the fast 64-bit loop against a naive
// 16-bit reference on random buffers of every length and alignment.
#include "stack/checksum.h"

#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "stack/ip.h"

namespace wrench::stack {
namespace {

// The textbook definition: big-endian 16-bit words, odd byte padded with zero.
uint16_t NaiveChecksum(absl::Span<const uint8_t> d, uint32_t initial = 0) {
  uint64_t sum = initial;
  for (size_t i = 0; i + 1 < d.size(); i += 2) sum += (d[i] << 8) | d[i + 1];
  if (d.size() % 2 == 1) sum += d.back() << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

std::vector<uint8_t> RandomBytes(std::mt19937& rng, size_t n) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

TEST(Checksum, Rfc1071WorkedExample) {
  // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to 2ddf0, folded ddf2.
  const uint8_t d[] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  EXPECT_EQ(ChecksumFinish(ChecksumAccumulate(d)), static_cast<uint16_t>(~0xddf2));
  EXPECT_EQ(InternetChecksum(d), 0x220d);
}

TEST(Checksum, KnownIpv4Header) {
  // A classic example header (checksum field zeroed): the checksum is 0xb861.
  const uint8_t h[] = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                       0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
  EXPECT_EQ(InternetChecksum(h), 0xb861);
}

TEST(Checksum, InsertedChecksumVerifiesToZero) {
  std::vector<uint8_t> h = {0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
                            0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7};
  EXPECT_EQ(InternetChecksum(h), 0);
}

TEST(Checksum, EmptyInputIsAllOnes) {
  EXPECT_EQ(InternetChecksum({}), 0xffff);
  EXPECT_EQ(ChecksumAccumulate({}, 1234), 1234u);
}

TEST(Checksum, OddLengthPadsLastByteOnTheRight) {
  const uint8_t one[] = {0xab};
  EXPECT_EQ(InternetChecksum(one), static_cast<uint16_t>(~0xab00));
  const uint8_t three[] = {0x12, 0x34, 0x56};
  EXPECT_EQ(InternetChecksum(three), static_cast<uint16_t>(~(0x1234 + 0x5600)));
}

TEST(Checksum, OddLengthsMatchNaive) {
  std::mt19937 rng(1);
  for (size_t n = 1; n < 200; n += 2) {
    auto v = RandomBytes(rng, n);
    EXPECT_EQ(InternetChecksum(v), NaiveChecksum(v)) << "length " << n;
  }
}

TEST(Checksum, ChainedEvenPiecesEqualWhole) {
  std::mt19937 rng(2);
  auto v = RandomBytes(rng, 1501);
  absl::Span<const uint8_t> s(v);
  for (size_t cut1 = 0; cut1 <= 64; cut1 += 2) {
    for (size_t cut2 = cut1; cut2 <= 1400; cut2 += 46) {
      uint64_t acc = ChecksumAccumulate(s.subspan(0, cut1));
      acc = ChecksumAccumulate(s.subspan(cut1, cut2 - cut1), acc);
      acc = ChecksumAccumulate(s.subspan(cut2), acc);
      ASSERT_EQ(ChecksumFinish(acc), InternetChecksum(v)) << cut1 << " " << cut2;
    }
  }
}

TEST(Checksum, InitialValueIsAdded) {
  std::mt19937 rng(3);
  auto v = RandomBytes(rng, 77);
  for (uint32_t init : {0u, 1u, 0xffffu, 0x12345u, 0xfffffu}) {
    EXPECT_EQ(ChecksumFinish(ChecksumAccumulate(v, init)), NaiveChecksum(v, init)) << init;
  }
  // A huge initial value must carry around, not wrap away.
  uint64_t big = ~uint64_t{0} - 3;  // == 0xfffc (mod 0xffff) in one's complement
  EXPECT_EQ(ChecksumFinish(ChecksumAccumulate(v, big)),
            NaiveChecksum(v, static_cast<uint32_t>(big % 0xffff)));
}

TEST(Checksum, FastMatchesNaiveOnRandomLengthsAndAlignments) {
  std::mt19937 rng(4);
  auto v = RandomBytes(rng, 4096 + 64);
  for (size_t align = 0; align < 8; ++align) {
    for (size_t n = 0; n <= 600; ++n) {
      absl::Span<const uint8_t> s(v.data() + align, n);
      ASSERT_EQ(InternetChecksum(s), NaiveChecksum(s)) << "align " << align << " len " << n;
    }
    for (size_t n : {1023u, 1460u, 1480u, 1500u, 2047u, 4096u}) {
      absl::Span<const uint8_t> s(v.data() + align, n);
      ASSERT_EQ(InternetChecksum(s), NaiveChecksum(s)) << "align " << align << " len " << n;
    }
  }
}

TEST(Checksum, AllOnesCarryStress) {
  // 0xff everywhere makes every 64-bit add carry; 64 KiB + 1 exercises long runs.
  for (size_t n : {8u, 31u, 32u, 33u, 65536u, 65537u}) {
    std::vector<uint8_t> v(n, 0xff);
    EXPECT_EQ(InternetChecksum(v), NaiveChecksum(v)) << n;
  }
}

TEST(Checksum, PseudoHeaderIpv4) {
  // RFC 9293 §3.1: src, dst, 0, protocol, TCP length.
  auto src = IpAddress::V4(0xc0a80001);  // 192.168.0.1
  auto dst = IpAddress::V4(0x0a000002);  // 10.0.0.2
  uint64_t expect = 0xc0a8 + 0x0001 + 0x0a00 + 0x0002 + 6 + 40;
  EXPECT_EQ(ChecksumFinish(PseudoHeaderSum(src, dst, 6, 40)),
            ChecksumFinish(expect));
}

TEST(Checksum, PseudoHeaderIpv6) {
  // RFC 8200 §8.1: src, dst, 32-bit length, 3 zero bytes, next header.
  auto src = IpAddress::Parse("fd00::1").value();
  auto dst = IpAddress::Parse("fd00::2:3").value();
  std::vector<uint8_t> ph;
  for (auto b : src.bytes()) ph.push_back(b);
  for (auto b : dst.bytes()) ph.push_back(b);
  for (uint8_t b : {0x00, 0x01, 0x02, 0x03, 0x00, 0x00, 0x00, 0x06}) ph.push_back(b);
  EXPECT_EQ(ChecksumFinish(PseudoHeaderSum(src, dst, 6, 0x00010203)), InternetChecksum(ph));
}

// Folding any 64-bit sum to 16 bits: end-around carries until nothing is left above
// bit 15, the textbook loop.
TEST(Checksum, FinishFoldsEveryCarryOfA64BitSum) {
  auto reference = [](uint64_t s) {
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return static_cast<uint16_t>(~s);
  };
  std::vector<uint64_t> sums = {0, 1, 0xffff, 0x10000, 0x1fffe, 0x2fffd, 0xffffffff,
                                0x1fffefffe, 0x1fffeffff, 0x1ffffffff, 0xfffeffff,
                                0xffff0001ffff, 0xffffffffffffffff, 0xfffffffffffeffff,
                                0xffffffff00010000};  // 0x1_0000_ffff after the first fold
  std::mt19937_64 rng(5);
  for (int i = 0; i < 10000; ++i) sums.push_back(rng() >> (rng() % 64));
  for (uint64_t s : sums) ASSERT_EQ(ChecksumFinish(s), reference(s)) << std::hex << s;
}

}  // namespace
}  // namespace wrench::stack
