// The internet checksum (RFC 1071): a one's-complement sum of 16-bit words. The
// hot loop sums 64-bit native-order words with end-around carries, four chains wide,
// and byte-swaps the folded result once (RFC 1071 §2(B): the sum is byte-order
// independent up to a final swap).
#include "stack/checksum.h"

#include <bit>
#include <cstring>

#include "stack/ip.h"

namespace wrench::stack {
namespace {

inline uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline uint32_t Load32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline uint16_t Load16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// a + b with the carry out of bit 63 added back in: one's-complement addition on
// 64 bits, which is congruent to the 16-bit sum since 2^64 = 1 (mod 2^16 - 1).
inline uint64_t AddCarry(uint64_t a, uint64_t b) {
  uint64_t s = a + b;
  return s + (s < b ? 1 : 0);
}

inline uint16_t Fold(uint64_t sum) {
  // 64 -> 33 -> 17 -> 16 bits; each step keeps the value congruent mod 0xffff.
  sum = (sum & 0xffffffff) + (sum >> 32);
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

// One's-complement sum of `data` as native-order 16-bit words, folded to 16 bits.
// An odd trailing byte is the first (most significant on the wire) byte of a word
// padded with zero (RFC 1071 §4.1).
uint16_t NativeSum(const uint8_t* p, size_t n) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  uint64_t c0 = 0, c1 = 0, c2 = 0, c3 = 0;
  // Four independent chains so the adds do not wait on each other; the carries are
  // counted apart and added at the end (they cannot overflow: one per 8 bytes).
  // mutate: equivalent >=,32 (a 32-byte rest takes the 8-byte loop to the same sum)
  while (n >= 32) {
    uint64_t w0 = Load64(p), w1 = Load64(p + 8), w2 = Load64(p + 16), w3 = Load64(p + 24);
    s0 += w0;
    c0 += s0 < w0;
    s1 += w1;
    c1 += s1 < w1;
    s2 += w2;
    c2 += s2 < w2;
    s3 += w3;
    c3 += s3 < w3;
    p += 32;
    n -= 32;
  }
  uint64_t sum = AddCarry(s0, s1);
  sum = AddCarry(sum, s2);
  sum = AddCarry(sum, s3);
  sum = AddCarry(sum, c0 + c1 + c2 + c3);
  while (n >= 8) {
    sum = AddCarry(sum, Load64(p));
    p += 8;
    n -= 8;
  }
  if (n >= 4) {
    sum = AddCarry(sum, Load32(p));
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    sum = AddCarry(sum, Load16(p));
    p += 2;
    n -= 2;
  }
  if (n == 1) {
    // The byte at the lower address, in native order: low byte on little-endian.
    uint16_t last = 0;
    std::memcpy(&last, p, 1);
    sum = AddCarry(sum, last);
  }
  return Fold(sum);
}

inline uint16_t ToWireOrder(uint16_t native) {
  if constexpr (std::endian::native == std::endian::little) {
    return static_cast<uint16_t>((native << 8) | (native >> 8));
  } else {
    return native;
  }
}

}  // namespace

uint64_t ChecksumAccumulate(absl::Span<const uint8_t> data, uint64_t initial) {
  return AddCarry(initial, ToWireOrder(NativeSum(data.data(), data.size())));
}

uint16_t ChecksumFinish(uint64_t sum) { return static_cast<uint16_t>(~Fold(sum)); }

uint16_t ChecksumUpdate(uint16_t checksum, uint64_t old_sum, uint64_t new_sum) {
  // One's-complement arithmetic throughout: adding ~m subtracts m, and the sum of
  // nonzero terms never folds to the +0 that RFC 1624 §3 warns about.
  const uint64_t old_folded = Fold(old_sum);
  uint64_t sum = uint64_t{static_cast<uint16_t>(~checksum)};
  sum += static_cast<uint16_t>(~old_folded);
  sum += Fold(new_sum);
  return static_cast<uint16_t>(~Fold(sum));
}

uint16_t InternetChecksum(absl::Span<const uint8_t> data) {
  return ChecksumFinish(ChecksumAccumulate(data));
}

uint64_t PseudoHeaderSum(const IpAddress& src, const IpAddress& dst, uint8_t protocol,
                         uint32_t upper_layer_length) {
  // RFC 9293 §3.1: src, dst, zero, PTCL, TCP length (16 bits).
  // RFC 8200 §8.1: src, dst, upper-layer packet length (32 bits), zero, next header.
  // Both add up to the same words when the length is split into 16-bit halves.
  // Addresses are 4 or 16 bytes, so 32-bit native loads cover them exactly; this
  // runs once per segment, hence no call into the general loop.
  absl::Span<const uint8_t> s = src.bytes(), d = dst.bytes();
  uint64_t native = 0;
  for (size_t i = 0; i < s.size(); i += 4) native += Load32(s.data() + i);
  for (size_t i = 0; i < d.size(); i += 4) native += Load32(d.data() + i);
  uint64_t sum = ToWireOrder(Fold(native));
  sum += protocol;
  sum += upper_layer_length >> 16;
  sum += upper_layer_length & 0xffff;
  return sum;
}

}  // namespace wrench::stack
