// The byte ring under the endpoint's send and receive buffers: appends that fill it,
// reads and peeks across the wrap, out-of-order writes committed later.
#include "stack/ring_buffer.h"

#include <numeric>
#include <vector>

#include "gtest/gtest.h"

namespace wrench::stack {
namespace {

std::vector<uint8_t> Bytes(size_t n, uint8_t first) {
  std::vector<uint8_t> v(n);
  std::iota(v.begin(), v.end(), first);
  return v;
}

std::vector<uint8_t> ReadAll(RingBuffer& r) {
  std::vector<uint8_t> out(r.size());
  EXPECT_EQ(r.Read(absl::MakeSpan(out)), out.size());
  return out;
}

TEST(RingBuffer, AppendTakesWhatFitsAndCounts) {
  RingBuffer r(8);
  EXPECT_TRUE(r.empty());
  EXPECT_EQ(r.capacity(), 8u);
  EXPECT_EQ(r.Append(Bytes(5, 1)), 5u);
  EXPECT_EQ(r.size(), 5u);
  EXPECT_EQ(r.free(), 3u);
  EXPECT_FALSE(r.empty());
  EXPECT_EQ(r.Append(Bytes(5, 6)), 3u);  // only 3 fit
  EXPECT_EQ(r.size(), 8u);
  EXPECT_EQ(r.free(), 0u);
  EXPECT_EQ(r.Append(Bytes(1, 9)), 0u);
  EXPECT_EQ(ReadAll(r), Bytes(8, 1));
  EXPECT_TRUE(r.empty());
}

TEST(RingBuffer, DataSurvivesTheWrapExactly) {
  RingBuffer r(8);
  ASSERT_EQ(r.Append(Bytes(6, 1)), 6u);
  r.Consume(5);                          // head at 5, one byte held
  EXPECT_EQ(r.size(), 1u);
  ASSERT_EQ(r.Append(Bytes(7, 7)), 7u);  // 3 bytes to the end, 4 from the start
  EXPECT_EQ(r.size(), 8u);
  std::vector<uint8_t> want = {6, 7, 8, 9, 10, 11, 12, 13};
  std::vector<uint8_t> peek(8);
  EXPECT_EQ(r.Peek(0, absl::MakeSpan(peek)), 8u);
  EXPECT_EQ(peek, want);
  // Contiguous stops at the physical end of the storage.
  auto run = r.Contiguous(0, 100);
  EXPECT_EQ(run.size(), 3u);
  EXPECT_EQ(run[0], 6);
  auto second = r.Contiguous(3, 100);
  EXPECT_EQ(second.size(), 5u);
  EXPECT_EQ(second[0], 9);
  EXPECT_EQ(r.Contiguous(3, 2).size(), 2u);  // at most `max`
  EXPECT_TRUE(r.Contiguous(8, 1).empty());   // past what is held
  EXPECT_EQ(ReadAll(r), want);
}

TEST(RingBuffer, PeekFromAnOffsetDoesNotConsume) {
  RingBuffer r(4);
  ASSERT_EQ(r.Append(Bytes(4, 10)), 4u);
  r.Consume(2);
  ASSERT_EQ(r.Append(Bytes(2, 14)), 2u);  // wraps
  std::vector<uint8_t> out(3);
  EXPECT_EQ(r.Peek(1, absl::MakeSpan(out)), 3u);
  EXPECT_EQ(out, (std::vector<uint8_t>{13, 14, 15}));
  std::vector<uint8_t> big(10);
  EXPECT_EQ(r.Peek(2, absl::MakeSpan(big)), 2u);  // only what is held
  EXPECT_EQ(big[0], 14);
  EXPECT_EQ(big[1], 15);
  EXPECT_EQ(r.size(), 4u);
}

TEST(RingBuffer, ConsumeIsClampedToTheSize) {
  RingBuffer r(4);
  ASSERT_EQ(r.Append(Bytes(3, 1)), 3u);
  r.Consume(10);
  EXPECT_TRUE(r.empty());
  ASSERT_EQ(r.Append(Bytes(4, 20)), 4u);  // the head moved to 3; all four fit
  EXPECT_EQ(ReadAll(r), Bytes(4, 20));
}

TEST(RingBuffer, OutOfOrderWritesBecomeReadableOnCommit) {
  RingBuffer r(8);
  ASSERT_EQ(r.Append(Bytes(6, 1)), 6u);
  r.Consume(6);  // head at 6
  r.WriteAt(2, Bytes(3, 30));  // positions 0..2 of storage after the wrap
  EXPECT_TRUE(r.empty());
  r.WriteAt(0, Bytes(2, 28));  // the gap: 6 and 7
  r.Commit(5);
  EXPECT_EQ(r.size(), 5u);
  EXPECT_EQ(ReadAll(r), Bytes(5, 28));
  r.Commit(100);
  EXPECT_EQ(r.size(), 8u);  // clamped to the capacity
}

}  // namespace
}  // namespace wrench::stack
