// The stream toxics' pipeline (proxy/fault/stream_toxics.h) on a virtual clock: each
// Toxiproxy toxic's timing and effect, their chaining, and changes while data is held.
#include "proxy/fault/stream_toxics.h"

#include <string>

#include "gtest/gtest.h"

namespace wrench::proxy {
namespace {

using End = ToxicStream::End;

const stack::Instant kT0 = absl::FromUnixSeconds(1000);

class StreamToxicsTest : public ::testing::Test {
 protected:
  StreamToxicsTest() : chain_(std::make_shared<ToxicChain>()), rng_(std::make_shared<std::mt19937_64>(7)) {}

  void Add(StreamToxic t) {
    chain_->entries.push_back({++next_id_, t});
    ++chain_->version;
  }
  void RemoveFirst() {
    chain_->entries.erase(chain_->entries.begin());
    ++chain_->version;
  }
  ToxicStream& Stream() {
    if (!stream_) stream_ = std::make_unique<ToxicStream>(chain_, rng_, kT0);
    return *stream_;
  }
  void Write(absl::Duration at, const std::string& s) {
    Stream().Write(kT0 + at, absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
  }
  // Everything readable at `at`.
  std::string ReadAt(absl::Duration at) {
    Stream().Advance(kT0 + at);
    std::string out(Stream().readable(), '\0');
    Stream().Read(absl::MakeSpan(reinterpret_cast<uint8_t*>(out.data()), out.size()));
    return out;
  }

  std::shared_ptr<ToxicChain> chain_;
  std::shared_ptr<std::mt19937_64> rng_;
  std::unique_ptr<ToxicStream> stream_;
  uint64_t next_id_ = 0;
};

StreamToxic Latency(int64_t ms, int64_t jitter = 0) {
  StreamToxic t;
  t.type = StreamToxicType::kLatency;
  t.latency = ms;
  t.jitter = jitter;
  return t;
}

TEST_F(StreamToxicsTest, NoToxicIsTransparentAndPassesAtOnce) {
  EXPECT_TRUE(Stream().Transparent(kT0));
  Write(absl::ZeroDuration(), "hello");
  EXPECT_EQ(ReadAt(absl::ZeroDuration()), "hello");
  Stream().WriteEof(kT0);
  EXPECT_EQ(Stream().end(), End::kEof);
}

TEST_F(StreamToxicsTest, LatencyDelaysEachChunkFromWhenItWasRead) {
  Add(Latency(100));
  Write(absl::ZeroDuration(), "a");
  Write(absl::Milliseconds(30), "b");
  EXPECT_EQ(ReadAt(absl::Milliseconds(99)), "");
  EXPECT_EQ(Stream().NextDeadline(), kT0 + absl::Milliseconds(100));
  EXPECT_EQ(ReadAt(absl::Milliseconds(100)), "a");
  EXPECT_EQ(ReadAt(absl::Milliseconds(129)), "");
  EXPECT_EQ(ReadAt(absl::Milliseconds(130)), "b");
}

TEST_F(StreamToxicsTest, LatencyJitterNeverReorders) {
  Add(Latency(50, 40));
  std::string sent;
  for (int i = 0; i < 50; ++i) {
    sent.push_back(static_cast<char>('a' + i % 26));
    Write(absl::Milliseconds(i), sent.substr(sent.size() - 1));
  }
  EXPECT_EQ(ReadAt(absl::Seconds(1)), sent);
}

TEST_F(StreamToxicsTest, EndOfStreamFollowsTheDelayedData) {
  Add(Latency(100));
  Write(absl::ZeroDuration(), "data");
  Stream().WriteEof(kT0 + absl::Milliseconds(1));
  EXPECT_EQ(ReadAt(absl::Milliseconds(50)), "");
  EXPECT_EQ(Stream().end(), End::kNone);
  EXPECT_EQ(ReadAt(absl::Milliseconds(100)), "data");
  EXPECT_EQ(Stream().end(), End::kEof);
}

TEST_F(StreamToxicsTest, BandwidthPacesBytes) {
  StreamToxic t;
  t.type = StreamToxicType::kBandwidth;
  t.rate = 10;  // KB/s: 1000 bytes take 100 ms
  Add(t);
  Write(absl::ZeroDuration(), std::string(3000, 'x'));
  // More than 100 ms worth: 1000-byte pieces every 100 ms.
  EXPECT_EQ(ReadAt(absl::Milliseconds(99)).size(), 0u);
  EXPECT_EQ(ReadAt(absl::Milliseconds(100)).size(), 1000u);
  EXPECT_EQ(ReadAt(absl::Milliseconds(200)).size(), 1000u);
  EXPECT_EQ(ReadAt(absl::Milliseconds(300)).size(), 1000u);
  // The next chunk waits for the link to be free.
  Write(absl::Milliseconds(300), std::string(500, 'y'));
  EXPECT_EQ(ReadAt(absl::Milliseconds(349)).size(), 0u);
  EXPECT_EQ(ReadAt(absl::Milliseconds(350)).size(), 500u);
}

TEST_F(StreamToxicsTest, SlicerCutsChunksAndSpacesThem) {
  StreamToxic t;
  t.type = StreamToxicType::kSlicer;
  t.average_size = 10;
  t.size_variation = 5;
  t.delay = 1000;  // us
  Add(t);
  std::string data(100, 'z');
  Write(absl::ZeroDuration(), data);
  std::string first = ReadAt(absl::ZeroDuration());
  EXPECT_GT(first.size(), 0u);
  EXPECT_LE(first.size(), 15u);
  EXPECT_EQ(first.size() + ReadAt(absl::Seconds(1)).size(), data.size());
}

TEST_F(StreamToxicsTest, LimitDataPassesThatManyBytesThenCloses) {
  StreamToxic t;
  t.type = StreamToxicType::kLimitData;
  t.bytes = 7;
  Add(t);
  Write(absl::ZeroDuration(), "hello");
  EXPECT_EQ(ReadAt(absl::ZeroDuration()), "hello");
  EXPECT_EQ(Stream().end(), End::kNone);
  Write(absl::ZeroDuration(), "world");
  EXPECT_EQ(ReadAt(absl::ZeroDuration()), "wo");
  EXPECT_EQ(Stream().end(), End::kClose);
  Write(absl::ZeroDuration(), "more");
  EXPECT_EQ(ReadAt(absl::ZeroDuration()), "");
}

TEST_F(StreamToxicsTest, SlowCloseHoldsOnlyTheEnd) {
  StreamToxic t;
  t.type = StreamToxicType::kSlowClose;
  t.delay = 500;
  Add(t);
  Write(absl::ZeroDuration(), "bye");
  Stream().WriteEof(kT0);
  EXPECT_EQ(ReadAt(absl::ZeroDuration()), "bye");
  EXPECT_EQ(Stream().end(), End::kNone);
  Stream().Advance(kT0 + absl::Milliseconds(499));
  EXPECT_EQ(Stream().end(), End::kNone);
  Stream().Advance(kT0 + absl::Milliseconds(500));
  EXPECT_EQ(Stream().end(), End::kEof);
}

TEST_F(StreamToxicsTest, TimeoutDropsDataAndClosesAfterItsTimeout) {
  StreamToxic t;
  t.type = StreamToxicType::kTimeout;
  t.timeout = 200;
  Add(t);
  Write(absl::Milliseconds(10), "lost");
  EXPECT_EQ(ReadAt(absl::Milliseconds(199)), "");
  EXPECT_EQ(Stream().end(), End::kNone);
  EXPECT_EQ(Stream().NextDeadline(), kT0 + absl::Milliseconds(200));
  Stream().Advance(kT0 + absl::Milliseconds(200));
  EXPECT_EQ(Stream().end(), End::kClose);
}

TEST_F(StreamToxicsTest, TimeoutZeroHoldsForeverAndClosesWhenRemoved) {
  StreamToxic t;
  t.type = StreamToxicType::kTimeout;
  Add(t);
  Write(absl::ZeroDuration(), "lost");
  Stream().Advance(kT0 + absl::Hours(1));
  EXPECT_EQ(Stream().end(), End::kNone);
  EXPECT_EQ(Stream().NextDeadline(), stack::kNever);
  RemoveFirst();  // Toxiproxy's Cleanup closes the link
  Stream().Advance(kT0 + absl::Hours(1));
  EXPECT_EQ(Stream().end(), End::kClose);
}

TEST_F(StreamToxicsTest, ResetPeerResetsAfterTheFirstData) {
  StreamToxic t;
  t.type = StreamToxicType::kResetPeer;
  t.timeout = 100;
  Add(t);
  Stream().Advance(kT0 + absl::Seconds(5));
  EXPECT_EQ(Stream().end(), End::kNone);  // nothing flowed yet
  Write(absl::Seconds(5), "x");
  EXPECT_EQ(ReadAt(absl::Seconds(5)), "");
  Stream().Advance(kT0 + absl::Seconds(5) + absl::Milliseconds(100));
  EXPECT_EQ(Stream().end(), End::kReset);
}

TEST_F(StreamToxicsTest, ACloseGoesThroughTheToxicsAfterIt) {
  StreamToxic limit;
  limit.type = StreamToxicType::kLimitData;
  limit.bytes = 2;
  Add(limit);
  Add(Latency(100));
  Write(absl::ZeroDuration(), "abc");
  EXPECT_EQ(ReadAt(absl::Milliseconds(50)), "");
  EXPECT_EQ(Stream().end(), End::kNone);
  EXPECT_EQ(ReadAt(absl::Milliseconds(100)), "ab");
  EXPECT_EQ(Stream().end(), End::kClose);
}

TEST_F(StreamToxicsTest, RemovingAToxicReleasesWhatItHeld) {
  Add(Latency(10'000));
  Write(absl::ZeroDuration(), "held");
  EXPECT_EQ(ReadAt(absl::Seconds(1)), "");
  RemoveFirst();
  EXPECT_EQ(ReadAt(absl::Seconds(1)), "held");
}

TEST_F(StreamToxicsTest, AToxicAddedLaterActsOnTheNextChunks) {
  Write(absl::ZeroDuration(), "fast");
  EXPECT_EQ(ReadAt(absl::ZeroDuration()), "fast");
  Add(Latency(100));
  Write(absl::Milliseconds(10), "slow");
  EXPECT_EQ(ReadAt(absl::Milliseconds(109)), "");
  EXPECT_EQ(ReadAt(absl::Milliseconds(110)), "slow");
}

TEST_F(StreamToxicsTest, ToxicityZeroNeverActs) {
  StreamToxic t = Latency(1000);
  t.toxicity = 0;
  Add(t);
  Write(absl::ZeroDuration(), "free");
  EXPECT_EQ(ReadAt(absl::ZeroDuration()), "free");
}

TEST_F(StreamToxicsTest, RoomShrinksWhileDataIsHeld) {
  Add(Latency(100));
  const size_t before = Stream().room();
  Write(absl::ZeroDuration(), std::string(1000, 'q'));
  EXPECT_EQ(Stream().room(), before - 1000);
  ReadAt(absl::Milliseconds(100));
  EXPECT_EQ(Stream().room(), before);
}

TEST(StreamToxicValidation, RejectsWhatCannotWork) {
  StreamToxic slicer;
  slicer.type = StreamToxicType::kSlicer;
  slicer.average_size = 0;
  EXPECT_FALSE(ValidateStreamToxic(slicer).ok());
  slicer.average_size = 10;
  slicer.size_variation = 11;
  EXPECT_FALSE(ValidateStreamToxic(slicer).ok());
  slicer.size_variation = 10;
  EXPECT_TRUE(ValidateStreamToxic(slicer).ok());
  StreamToxic latency = Latency(-1);
  EXPECT_FALSE(ValidateStreamToxic(latency).ok());
  latency = Latency(1);
  latency.toxicity = 1.5;
  EXPECT_FALSE(ValidateStreamToxic(latency).ok());
}

}  // namespace
}  // namespace wrench::proxy
