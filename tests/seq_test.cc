// Sequence-number arithmetic modulo 2^32 (RFC 9293 §3.4): comparisons, distance,
// Min/Max and the window test, at the wrap and at the boundaries.
#include "stack/seq.h"

#include <sstream>

#include "gtest/gtest.h"

namespace wrench::stack {
namespace {

TEST(SeqNum, AdditionAndSubtractionWrapModulo2To32) {
  EXPECT_EQ((SeqNum(0xfffffffe) + 3).raw(), 1u);
  EXPECT_EQ((SeqNum(1) - 3).raw(), 0xfffffffeu);
  SeqNum s(0xffffffff);
  s += 2;
  EXPECT_EQ(s.raw(), 1u);
  EXPECT_EQ((SeqNum(10) + 0).raw(), 10u);
}

TEST(SeqNum, DistanceIsSignedAndAcrossTheWrap) {
  EXPECT_EQ(SeqNum(5) - SeqNum(2), 3);
  EXPECT_EQ(SeqNum(2) - SeqNum(5), -3);
  EXPECT_EQ(SeqNum(1) - SeqNum(0xffffffff), 2);
  EXPECT_EQ(SeqNum(7) - SeqNum(7), 0);
}

TEST(SeqNum, ComparisonsAtEqualityAndOneApart) {
  SeqNum a(100), b(101);
  EXPECT_TRUE(a < b);
  EXPECT_FALSE(b < a);
  EXPECT_FALSE(a < a);
  EXPECT_TRUE(a <= b);
  EXPECT_TRUE(a <= a);
  EXPECT_FALSE(b <= a);
  EXPECT_TRUE(b > a);
  EXPECT_FALSE(a > b);
  EXPECT_FALSE(a > a);
  EXPECT_TRUE(b >= a);
  EXPECT_TRUE(a >= a);
  EXPECT_FALSE(a >= b);
  EXPECT_TRUE(a == SeqNum(100));
  EXPECT_TRUE(a != b);
}

TEST(SeqNum, ComparisonsAcrossTheWrap) {
  SeqNum before(0xfffffff0), after(0x10);
  EXPECT_TRUE(before < after);
  EXPECT_TRUE(after > before);
  EXPECT_TRUE(before <= after);
  EXPECT_TRUE(after >= before);
  EXPECT_FALSE(after < before);
}

TEST(SeqNum, MinAndMaxPickByModularOrder) {
  SeqNum before(0xfffffff0), after(0x10);
  EXPECT_EQ(Max(before, after), after);
  EXPECT_EQ(Max(after, before), after);
  EXPECT_EQ(Min(before, after), before);
  EXPECT_EQ(Min(after, before), before);
  EXPECT_EQ(Max(after, after), after);
}

TEST(SeqNum, InWindowIncludesTheLeftEdgeOnly) {
  SeqNum a(0xfffffffe), b(2);  // a window of 4 across the wrap
  EXPECT_TRUE(InWindow(a, a, b));
  EXPECT_TRUE(InWindow(SeqNum(0xffffffff), a, b));
  EXPECT_TRUE(InWindow(SeqNum(1), a, b));
  EXPECT_FALSE(InWindow(b, a, b));
  EXPECT_FALSE(InWindow(a - 1, a, b));
  EXPECT_FALSE(InWindow(a, a, a));  // an empty window holds nothing
}

TEST(SeqNum, PrintsItsRawValue) {
  std::ostringstream os;
  os << SeqNum(4294967295u);
  EXPECT_EQ(os.str(), "4294967295");
  EXPECT_EQ(SeqNum().raw(), 0u);
}

}  // namespace
}  // namespace wrench::stack
