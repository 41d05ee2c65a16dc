// The fuzzers' structure-aware mutators (fuzz/targets.h): what they write mostly
// parses, scripts keep their encoding, and a short mutate-and-run loop over the
// target bodies stays clean — a smoke fuzz that runs in the ordinary build.
#include <random>
#include <vector>

#include "fuzz/endpoint_script.h"
#include "fuzz/targets.h"
#include "gtest/gtest.h"
#include "stack/segment.h"

namespace wrench::fuzz {
namespace {

// A stand-in for LLVMFuzzerMutate: flips a byte or changes the length.
size_t FlipByte(uint8_t* data, size_t size, size_t max_size) {
  static std::minstd_rand rng(7);
  if (size > 0 && rng() % 4 != 0) {
    data[rng() % size] ^= static_cast<uint8_t>(1 + rng() % 255);
    return size;
  }
  return std::min(max_size, size + 1 + rng() % 8);
}

std::vector<uint8_t> LinuxSyn() {
  return {0x45, 0x00, 0x00, 0x3c, 0x5c, 0x3a, 0x40, 0x00, 0x40, 0x06, 0xca, 0x7f, 0x0a, 0x00, 0x00,
          0x01, 0x0a, 0x00, 0x00, 0x02, 0xb2, 0x6e, 0x00, 0x50, 0x6f, 0x1e, 0x2d, 0x3c, 0x00, 0x00,
          0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, 0x23, 0x9b, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04,
          0x02, 0x08, 0x0a, 0x9a, 0x3b, 0x2c, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07};
}

TEST(SegmentMutator, MostOutputsParseWithValidChecksums) {
  std::vector<uint8_t> buf = LinuxSyn();
  ASSERT_TRUE(stack::ParseSegment(buf).ok());
  const size_t kMax = 4096;
  int parsed = 0, runs = 4000;
  std::vector<uint8_t> cur = buf;
  for (int i = 0; i < runs; ++i) {
    std::vector<uint8_t> d = cur;
    d.resize(kMax);
    size_t n = MutateSegment(d.data(), cur.size(), kMax, static_cast<unsigned>(i), &FlipByte);
    ASSERT_LE(n, kMax);
    d.resize(n);
    if (stack::ParseSegment(d).ok()) {
      ++parsed;
      cur = d;  // walk on from valid inputs, as a fuzzer's corpus would
    }
    FuzzSegmentParser(d.empty() ? buf.data() : d.data(), d.size());
  }
  EXPECT_GT(parsed, runs / 2) << parsed << " of " << runs << " mutated datagrams parsed";
}

TEST(ScriptMutator, KeepsTheEncodingCanonical) {
  Script s;
  s.header.bits = kPassiveOpen;
  s.events = {Segment(0x02), Segment(0x10),
              AppSend(100),  Segment(0x18, SeqMode::kNext, 0, AckMode::kSndNxt, 0, 10),
              AppReceive(),  AppClose(),
              ToDeadline()};
  std::vector<uint8_t> cur = SerializeScript(s);
  EXPECT_EQ(SerializeScript(ParseScript(cur)), cur);
  const size_t kMax = 2048;
  for (int i = 0; i < 3000; ++i) {
    std::vector<uint8_t> d = cur;
    d.resize(kMax);
    size_t n = MutateEndpointScript(d.data(), cur.size(), kMax, static_cast<unsigned>(i), nullptr);
    ASSERT_LE(n, kMax);
    d.resize(n);
    ASSERT_EQ(SerializeScript(ParseScript(d)), d)
        << "mutation " << i << " left a non-canonical script";
    FuzzTcpEndpoint(d.data(), d.size());
    if (i % 3 == 0) cur = d;
  }
}

}  // namespace
}  // namespace wrench::fuzz
