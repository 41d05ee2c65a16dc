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
  StreamToxicsTest()
      : chain_(std::make_shared<ToxicChain>()), rng_(std::make_shared<std::mt19937_64>(7)) {}

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
    Stream().Write(kT0 + at,
                   absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
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

// A toxic of Toxiproxy's type name with those attributes, the others 0.
StreamToxic Toxic(absl::string_view type,
                  const std::vector<std::pair<absl::string_view, int64_t>>& attributes) {
  auto t = MakeStreamToxic(type, attributes);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *t : StreamToxic{};
}

StreamToxic Latency(int64_t ms, int64_t jitter = 0) {
  return Toxic("latency", {{"latency", ms}, {"jitter", jitter}});
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
  Add(Toxic("bandwidth", {{"rate", 10}}));  // KB/s: 1000 bytes take 100 ms
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
  Add(Toxic("slicer", {{"average_size", 10}, {"size_variation", 5}, {"delay", 1000}}));
  std::string data(100, 'z');
  Write(absl::ZeroDuration(), data);
  std::string first = ReadAt(absl::ZeroDuration());
  EXPECT_GT(first.size(), 0u);
  EXPECT_LE(first.size(), 15u);
  EXPECT_EQ(first.size() + ReadAt(absl::Seconds(1)).size(), data.size());
}

TEST_F(StreamToxicsTest, LimitDataPassesThatManyBytesThenCloses) {
  Add(Toxic("limit_data", {{"bytes", 7}}));
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
  Add(Toxic("slow_close", {{"delay", 500}}));
  Write(absl::ZeroDuration(), "bye");
  Stream().WriteEof(kT0);
  EXPECT_EQ(ReadAt(absl::ZeroDuration()), "bye");
  EXPECT_EQ(Stream().end(), End::kNone);
  Stream().Advance(kT0 + absl::Milliseconds(499));
  EXPECT_EQ(Stream().end(), End::kNone);
  Stream().Advance(kT0 + absl::Milliseconds(500));
  EXPECT_EQ(Stream().end(), End::kEof);
}

TEST_F(StreamToxicsTest, TimeoutDropsDataAndClosesOnceIdleForItsTimeout) {
  Add(Toxic("timeout", {{"timeout", 200}}));
  Stream().Advance(kT0 + absl::Milliseconds(199));
  EXPECT_EQ(Stream().NextDeadline(), kT0 + absl::Milliseconds(200));
  // Each chunk starts the wait again, as Toxiproxy's loop does.
  Write(absl::Milliseconds(150), "lost");
  EXPECT_EQ(ReadAt(absl::Milliseconds(349)), "");
  EXPECT_EQ(Stream().end(), End::kNone);
  EXPECT_EQ(Stream().NextDeadline(), kT0 + absl::Milliseconds(350));
  Stream().Advance(kT0 + absl::Milliseconds(350));
  EXPECT_EQ(Stream().end(), End::kClose);
}

TEST_F(StreamToxicsTest, TimeoutZeroHoldsForeverAndClosesWhenRemoved) {
  Add(Toxic("timeout", {}));
  Write(absl::ZeroDuration(), "lost");
  Stream().Advance(kT0 + absl::Hours(1));
  EXPECT_EQ(Stream().end(), End::kNone);
  EXPECT_EQ(Stream().NextDeadline(), stack::kNever);
  RemoveFirst();  // Toxiproxy's Cleanup closes the link
  Stream().Advance(kT0 + absl::Hours(1));
  EXPECT_EQ(Stream().end(), End::kClose);
}

TEST_F(StreamToxicsTest, ResetPeerResetsAfterTheFirstData) {
  Add(Toxic("reset_peer", {{"timeout", 100}}));
  Stream().Advance(kT0 + absl::Seconds(5));
  EXPECT_EQ(Stream().end(), End::kNone);  // nothing flowed yet
  Write(absl::Seconds(5), "x");
  EXPECT_EQ(ReadAt(absl::Seconds(5)), "");
  Stream().Advance(kT0 + absl::Seconds(5) + absl::Milliseconds(100));
  EXPECT_EQ(Stream().end(), End::kReset);
}

TEST_F(StreamToxicsTest, ACloseGoesThroughTheToxicsAfterIt) {
  Add(Toxic("limit_data", {{"bytes", 2}}));
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

// Toxics on one stream compose in the order they were added, each one's output the
// next one's input, as Toxiproxy's chain.

TEST_F(StreamToxicsTest, TwoLatenciesAddUp) {
  Add(Latency(300));
  Add(Latency(300));
  Write(absl::ZeroDuration(), "a");
  Write(absl::Milliseconds(10), "b");
  EXPECT_EQ(ReadAt(absl::Milliseconds(599)), "");
  EXPECT_EQ(ReadAt(absl::Milliseconds(600)), "a");
  EXPECT_EQ(ReadAt(absl::Milliseconds(610)), "b");
}

TEST_F(StreamToxicsTest, BandwidthAfterLatencyStartsWhenTheLatencyEnds) {
  Add(Latency(100));
  Add(Toxic("bandwidth", {{"rate", 10}}));  // 500 bytes take 50 ms
  Write(absl::ZeroDuration(), std::string(500, 'x'));
  EXPECT_EQ(ReadAt(absl::Milliseconds(149)), "");
  EXPECT_EQ(ReadAt(absl::Milliseconds(150)).size(), 500u);
}

TEST_F(StreamToxicsTest, LatencyAfterBandwidthCountsFromTheReadAsToxiproxys) {
  // Bandwidth keeps a chunk's timestamp, so the latency after it overlaps the 50 ms.
  Add(Toxic("bandwidth", {{"rate", 10}}));
  Add(Latency(100));
  Write(absl::ZeroDuration(), std::string(500, 'x'));
  EXPECT_EQ(ReadAt(absl::Milliseconds(99)), "");
  EXPECT_EQ(ReadAt(absl::Milliseconds(100)).size(), 500u);
  // One that takes longer than the latency leaves when the bandwidth lets it go.
  Write(absl::Seconds(1), std::string(2000, 'y'));  // 200 ms
  EXPECT_EQ(ReadAt(absl::Seconds(1) + absl::Milliseconds(199)).size(),
            1000u);  // the first 100 ms piece
  EXPECT_EQ(ReadAt(absl::Seconds(1) + absl::Milliseconds(200)).size(), 1000u);
}

TEST_F(StreamToxicsTest, TwoBandwidthsPassOneAfterTheOther) {
  Add(Toxic("bandwidth", {{"rate", 10}}));
  Add(Toxic("bandwidth", {{"rate", 10}}));
  Write(absl::ZeroDuration(), std::string(500, 'x'));
  EXPECT_EQ(ReadAt(absl::Milliseconds(99)), "");
  EXPECT_EQ(ReadAt(absl::Milliseconds(100)).size(), 500u);
}

TEST_F(StreamToxicsTest, SlicerBeforeLimitDataCountsTheSlices) {
  Add(Toxic("slicer", {{"average_size", 2}, {"delay", 10'000}}));  // 2 bytes each 10 ms
  Add(Toxic("limit_data", {{"bytes", 5}}));
  Write(absl::ZeroDuration(), "abcdefgh");
  EXPECT_EQ(ReadAt(absl::ZeroDuration()), "ab");
  EXPECT_EQ(ReadAt(absl::Milliseconds(10)), "cd");
  EXPECT_EQ(Stream().end(), End::kNone);
  EXPECT_EQ(ReadAt(absl::Milliseconds(20)), "e");
  EXPECT_EQ(Stream().end(), End::kClose);
}

TEST_F(StreamToxicsTest, LimitDataBeforeSlicerSlicesWhatItPasses) {
  Add(Toxic("limit_data", {{"bytes", 5}}));
  Add(Toxic("slicer", {{"average_size", 2}, {"delay", 10'000}}));
  Write(absl::ZeroDuration(), "abcdefgh");
  EXPECT_EQ(ReadAt(absl::ZeroDuration()), "ab");
  EXPECT_EQ(ReadAt(absl::Milliseconds(10)).size(), 1u);
  EXPECT_EQ(ReadAt(absl::Milliseconds(20)).size(), 2u);
  EXPECT_EQ(Stream().end(), End::kNone) << "the close waits behind the slices";
  ReadAt(absl::Milliseconds(30));
  EXPECT_EQ(Stream().end(), End::kClose);
}

TEST_F(StreamToxicsTest, SlowCloseAfterLimitDataDelaysItsClose) {
  Add(Toxic("limit_data", {{"bytes", 3}}));
  Add(Toxic("slow_close", {{"delay", 200}}));
  Write(absl::ZeroDuration(), "abcdef");
  EXPECT_EQ(ReadAt(absl::ZeroDuration()), "abc");
  EXPECT_EQ(ReadAt(absl::Milliseconds(199)), "");
  EXPECT_EQ(Stream().end(), End::kNone);
  Stream().Advance(kT0 + absl::Milliseconds(200));
  EXPECT_EQ(Stream().end(), End::kClose);
}

TEST_F(StreamToxicsTest, TwoSlowClosesAddUp) {
  Add(Toxic("slow_close", {{"delay", 100}}));
  Add(Toxic("slow_close", {{"delay", 100}}));
  Stream().WriteEof(kT0);
  Stream().Advance(kT0 + absl::Milliseconds(199));
  EXPECT_EQ(Stream().end(), End::kNone);
  Stream().Advance(kT0 + absl::Milliseconds(200));
  EXPECT_EQ(Stream().end(), End::kEof);
}

TEST_F(StreamToxicsTest, ResetPeerAfterLatencyStartsWhenTheDelayedChunkArrives) {
  Add(Latency(100));
  Add(Toxic("reset_peer", {{"timeout", 50}}));
  Write(absl::ZeroDuration(), "x");
  Stream().Advance(kT0 + absl::Milliseconds(149));
  EXPECT_EQ(Stream().end(), End::kNone);
  Stream().Advance(kT0 + absl::Milliseconds(150));
  EXPECT_EQ(Stream().end(), End::kReset);
}

TEST_F(StreamToxicsTest, TimeoutAfterLatencySwallowsTheDelayedDataAndCloses) {
  Add(Latency(100));
  Add(Toxic("timeout", {{"timeout", 300}}));
  Write(absl::ZeroDuration(), "gone");
  // The chunk reaches the timeout toxic at 100 ms, which starts its wait again.
  EXPECT_EQ(ReadAt(absl::Milliseconds(399)), "");
  EXPECT_EQ(Stream().end(), End::kNone);
  Stream().Advance(kT0 + absl::Milliseconds(400));
  EXPECT_EQ(Stream().end(), End::kClose);
}

TEST_F(StreamToxicsTest, LatencyAfterTimeoutPassesItsCloseAtOnce) {
  // Latency delays data; an end waits only for the chunks before it (Toxiproxy's
  // latency closes as soon as its input closes).
  Add(Toxic("timeout", {{"timeout", 100}}));
  Add(Latency(50));
  Stream().Advance(kT0 + absl::Milliseconds(99));
  EXPECT_EQ(Stream().end(), End::kNone);
  Stream().Advance(kT0 + absl::Milliseconds(100));
  EXPECT_EQ(Stream().end(), End::kClose);
}

TEST(StreamToxicValidation, RejectsWhatCannotWork) {
  EXPECT_FALSE(MakeStreamToxic("slicer", {{"average_size", 0}}).ok());
  EXPECT_FALSE(MakeStreamToxic("slicer", {{"average_size", 10}, {"size_variation", 11}}).ok());
  EXPECT_TRUE(MakeStreamToxic("slicer", {{"average_size", 10}, {"size_variation", 10}}).ok());
  EXPECT_FALSE(MakeStreamToxic("latency", {{"latency", -1}}).ok());
  EXPECT_FALSE(MakeStreamToxic("latency", {{"latency", 1}}, 1.5).ok());
  EXPECT_FALSE(MakeStreamToxic("latency", {{"rate", 1}}).ok());
  EXPECT_FALSE(MakeStreamToxic("jitter", {}).ok());
}

}  // namespace
}  // namespace wrench::proxy
