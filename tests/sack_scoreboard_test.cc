// The sender's SACK scoreboard on its own: records, SACK block validation (RFC 2018,
// RFC 2883 D-SACK), RFC 6675 IsLost and pipe.
#include "stack/sack_scoreboard.h"

#include <vector>

#include "gtest/gtest.h"

namespace wrench::stack {
namespace {

const Instant kT0 = absl::UnixEpoch();
constexpr uint32_t kBase = 4'294'960'000u;  // close to wrapping: comparisons are modular

SeqNum At(uint32_t off) { return SeqNum(kBase + off); }

// Ten 100-byte segments [0, 1000) in flight.
SackScoreboard Ten() {
  SackScoreboard sb(16);
  for (uint32_t i = 0; i < 10; ++i) EXPECT_TRUE(sb.OnSend(At(i * 100), At(i * 100 + 100), kT0));
  return sb;
}

SackScoreboard::SackResult Sack(SackScoreboard& sb,
                                std::vector<std::pair<uint32_t, uint32_t>> blocks, uint32_t una = 0,
                                uint32_t nxt = 1000) {
  std::vector<SackBlock> b;
  for (auto [l, r] : blocks) b.push_back({At(l), At(r)});
  return sb.OnSackBlocks(b, At(una), At(nxt), [](const SentSegment&) {});
}

TEST(SackScoreboard, PipeCountsWhatIsNeitherSackedNorLost) {
  SackScoreboard sb = Ten();
  EXPECT_EQ(sb.Pipe(), 1000u);
  auto r = Sack(sb, {{300, 500}});
  EXPECT_EQ(r.newly_sacked, 200u);
  EXPECT_EQ(sb.sacked_bytes(), 200u);
  EXPECT_EQ(sb.Pipe(), 800u);
  EXPECT_EQ(sb.MarkLost(0), 100u);
  EXPECT_EQ(sb.Pipe(), 700u);
  sb.OnRetransmit(0, kT0);
  EXPECT_EQ(sb.Pipe(), 800u);  // RFC 6675 SetPipe: a retransmission in flight counts
  EXPECT_EQ(sb.NextLost(), 10u);
}

TEST(SackScoreboard, OnlyBlocksWithinTheWindowCount) {
  SackScoreboard sb = Ten();
  EXPECT_EQ(Sack(sb, {{900, 1100}}).newly_sacked, 0u);  // beyond SND.NXT
  EXPECT_EQ(Sack(sb, {{500, 400}}).newly_sacked, 0u);   // empty / reversed
  EXPECT_EQ(Sack(sb, {{250, 350}}).newly_sacked, 0u);   // covers no record in full
  EXPECT_EQ(Sack(sb, {{200, 300}}).newly_sacked, 100u);
  EXPECT_EQ(Sack(sb, {{200, 300}}).newly_sacked, 0u);   // old news
}

TEST(SackScoreboard, DuplicateSackIsReportedNotApplied) {
  SackScoreboard sb = Ten();
  sb.OnCumulativeAck(At(200), [](const SentSegment&) {});
  auto below = Sack(sb, {{0, 100}}, 200);
  EXPECT_TRUE(below.dsack);
  EXPECT_EQ(below.newly_sacked, 0u);
  // RFC 2883 §4 case 2: the first block inside the second.
  auto inside = Sack(sb, {{500, 600}, {400, 700}}, 200);
  EXPECT_TRUE(inside.dsack);
  EXPECT_EQ(inside.newly_sacked, 300u);
}

TEST(SackScoreboard, IsLostNeedsDupThreshSackedSegmentsAbove) {
  SackScoreboard sb = Ten();
  Sack(sb, {{100, 200}, {300, 400}});
  EXPECT_EQ(sb.MarkLostByDupThresh(3, 100), 0u);
  Sack(sb, {{500, 600}});
  // Three SACKed segments above [0, 100); two above [200, 300) but 200 bytes are
  // not more than (DupThresh - 1) * SMSS.
  EXPECT_EQ(sb.MarkLostByDupThresh(3, 100), 100u);
  EXPECT_TRUE(sb[0].lost);
  EXPECT_FALSE(sb[2].lost);
  Sack(sb, {{700, 800}});
  // Now three above [200, 300) as well; [400, 500) still has two.
  EXPECT_EQ(sb.MarkLostByDupThresh(3, 100), 100u);
  EXPECT_TRUE(sb[2].lost);
  EXPECT_FALSE(sb[4].lost);
  EXPECT_EQ(sb.NextLost(), 0u);
}

TEST(SackScoreboard, CumulativeAckTrimsAndFrees) {
  SackScoreboard sb = Ten();
  Sack(sb, {{200, 300}});
  std::vector<uint32_t> delivered;
  uint32_t freed = sb.OnCumulativeAck(
      At(350), [&](const SentSegment& s) { delivered.push_back(s.end - At(0)); });
  EXPECT_EQ(freed, 250u);  // 0:200 and 300:350; 200:300 was SACKed already
  EXPECT_EQ(delivered, (std::vector<uint32_t>{100, 200}));
  EXPECT_EQ(sb.size(), 7u);
  EXPECT_EQ(sb[0].start, At(350));
  EXPECT_EQ(sb.Pipe(), 650u);
  EXPECT_EQ(sb.sacked_bytes(), 0u);
}

TEST(SackScoreboard, AFullRingTakesNoMoreRecords) {
  SackScoreboard sb(2);
  EXPECT_TRUE(sb.OnSend(At(0), At(10), kT0));
  EXPECT_TRUE(sb.OnSend(At(10), At(20), kT0));
  EXPECT_TRUE(sb.full());
  EXPECT_FALSE(sb.OnSend(At(20), At(30), kT0));
  sb.OnCumulativeAck(At(10), [](const SentSegment&) {});
  EXPECT_TRUE(sb.OnSend(At(20), At(30), kT0));
  EXPECT_EQ(sb.back().end, At(30));
}

TEST(SackScoreboard, TimeoutMarksEverythingNotSackedLost) {
  SackScoreboard sb = Ten();
  Sack(sb, {{500, 700}});
  sb.MarkAllLost();
  EXPECT_EQ(sb.lost_bytes(), 800u);
  EXPECT_EQ(sb.Pipe(), 0u);
  sb.ClearSacks();
  EXPECT_EQ(sb.sacked_bytes(), 0u);
}

// The ring starts small and grows with the flight, wrapped or not, keeping every
// record in order with its state, until the capacity holds back new data.
TEST(SackScoreboard, GrowsWithTheFlightUpToItsCapacityKeepingTheRecordsInOrder) {
  SackScoreboard sb(100);
  EXPECT_EQ(sb.capacity(), 100u);
  uint32_t next = 0;
  auto send = [&](int n) {
    for (int i = 0; i < n; ++i, next += 10) ASSERT_TRUE(sb.OnSend(At(next), At(next + 10), kT0));
  };
  send(12);
  sb.OnCumulativeAck(At(50), [](const SentSegment&) {});  // the ring's head moves on
  send(20);  // wraps, then grows past its first records
  Sack(sb, {{200, 230}});
  send(70);
  EXPECT_EQ(sb.size(), 97u);
  send(3);
  EXPECT_TRUE(sb.full());
  EXPECT_FALSE(sb.OnSend(At(next), At(next + 10), kT0));
  for (size_t i = 0; i < sb.size(); ++i) {
    EXPECT_EQ(sb[i].start, At(50 + 10 * static_cast<uint32_t>(i)));
    EXPECT_EQ(sb[i].sacked, sb[i].start >= At(200) && sb[i].end <= At(230));
  }
  EXPECT_EQ(sb.sacked_bytes(), 30u);
  EXPECT_EQ(sb.Pipe(), 970u);
}

TEST(SackScoreboard, ACapacityOfZeroHoldsOneRecord) {
  SackScoreboard sb(0);
  EXPECT_EQ(sb.capacity(), 1u);
  EXPECT_TRUE(sb.empty());
  EXPECT_TRUE(sb.OnSend(At(0), At(10), kT0));
  EXPECT_TRUE(sb.full());
  EXPECT_FALSE(sb.empty());
  EXPECT_FALSE(sb.OnSend(At(10), At(20), kT0));
}

TEST(SackScoreboard, AnEmptyRangeIsNotRecorded) {
  SackScoreboard sb(4);
  EXPECT_FALSE(sb.OnSend(At(10), At(10), kT0));
  EXPECT_FALSE(sb.OnSend(At(10), At(5), kT0));
  EXPECT_TRUE(sb.empty());
  EXPECT_EQ(sb.Pipe(), 0u);
  // A FIN alone is one sequence number.
  EXPECT_TRUE(sb.OnSend(At(10), At(11), kT0));
  EXPECT_EQ(sb.Pipe(), 1u);
}

TEST(SackScoreboard, RecordsKeepTheirRangeAndSendTimeAcrossTheRing) {
  SackScoreboard sb(3);
  for (uint32_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(sb.OnSend(At(i * 10), At(i * 10 + 10), kT0 + absl::Milliseconds(i)));
  }
  sb.OnCumulativeAck(At(20), [](const SentSegment&) {});
  ASSERT_TRUE(sb.OnSend(At(30), At(40), kT0 + absl::Milliseconds(3)));
  ASSERT_TRUE(sb.OnSend(At(40), At(45), kT0 + absl::Milliseconds(4)));
  ASSERT_EQ(sb.size(), 3u);
  const SackScoreboard& view = sb;
  EXPECT_EQ(view[0].start, At(20));
  EXPECT_EQ(view[0].end, At(30));
  EXPECT_EQ(view[0].sent, kT0 + absl::Milliseconds(2));
  EXPECT_EQ(view[1].start, At(30));
  EXPECT_EQ(view[1].sent, kT0 + absl::Milliseconds(3));
  EXPECT_EQ(view[2].start, At(40));
  EXPECT_EQ(view[2].end, At(45));
  EXPECT_EQ(view[2].len(), 5u);
  EXPECT_EQ(sb.back().sent, kT0 + absl::Milliseconds(4));
  EXPECT_FALSE(view[2].sacked || view[2].lost || view[2].retransmitted || view[2].in_flight_retx);
  EXPECT_EQ(sb.Pipe(), 25u);
}

TEST(SackScoreboard, AcknowledgingEverythingEmptiesTheBoard) {
  SackScoreboard sb = Ten();
  Sack(sb, {{800, 900}});
  std::vector<uint32_t> delivered;
  EXPECT_EQ(sb.OnCumulativeAck(At(1000),
                               [&](const SentSegment& s) { delivered.push_back(s.end - At(0)); }),
            900u);
  // Every record the ACK covers that was not SACKed before, in order; [800, 900)
  // was delivered when it was SACKed.
  EXPECT_EQ(delivered, (std::vector<uint32_t>{100, 200, 300, 400, 500, 600, 700, 800, 1000}));
  EXPECT_TRUE(sb.empty());
  EXPECT_EQ(sb.sacked_count(), 0u);
  EXPECT_EQ(sb.sacked_bytes(), 0u);
  EXPECT_EQ(sb.Pipe(), 0u);
  // A second ACK of the same point frees nothing.
  EXPECT_EQ(sb.OnCumulativeAck(At(1000), [](const SentSegment&) {}), 0u);
  EXPECT_TRUE(sb.empty());
  EXPECT_EQ(sb.Pipe(), 0u);
  EXPECT_TRUE(sb.OnSend(At(1000), At(1100), kT0));
  EXPECT_EQ(sb[0].start, At(1000));
  EXPECT_EQ(sb.Pipe(), 100u);
}

TEST(SackScoreboard, AnAckAtARecordsEdgeRemovesItWhole) {
  SackScoreboard sb = Ten();
  EXPECT_EQ(sb.OnCumulativeAck(At(300), [](const SentSegment&) {}), 300u);
  EXPECT_EQ(sb.size(), 7u);
  EXPECT_EQ(sb[0].start, At(300));
  EXPECT_EQ(sb[0].end, At(400));
  // An ACK at the start of the first record changes nothing.
  EXPECT_EQ(sb.OnCumulativeAck(At(300), [](const SentSegment&) {}), 0u);
  EXPECT_EQ(sb.size(), 7u);
  EXPECT_EQ(sb.Pipe(), 700u);
}

TEST(SackScoreboard, CumulativeAckReleasesSackedLostAndRetransmittedBytes) {
  SackScoreboard sb = Ten();
  Sack(sb, {{300, 400}});
  EXPECT_EQ(sb.sacked_count(), 1u);
  sb.MarkLost(0);
  sb.MarkLost(1);
  sb.OnRetransmit(1, kT0);
  EXPECT_EQ(sb.lost_bytes(), 200u);
  EXPECT_EQ(sb.Pipe(), 1000u - 100 - 200 + 100);
  // The ACK covers [0, 150): record 0 whole and half of the retransmitted record 1.
  EXPECT_EQ(sb.OnCumulativeAck(At(150), [](const SentSegment&) {}), 150u);
  EXPECT_EQ(sb.lost_bytes(), 50u);
  EXPECT_EQ(sb.Pipe(), 850u - 100 - 50 + 50);
  EXPECT_EQ(sb[0].start, At(150));
  // Past the SACKed record: its bytes and its count go.
  EXPECT_EQ(sb.OnCumulativeAck(At(400), [](const SentSegment&) {}), 150u);
  EXPECT_EQ(sb.sacked_count(), 0u);
  EXPECT_EQ(sb.sacked_bytes(), 0u);
  EXPECT_EQ(sb.lost_bytes(), 0u);
  EXPECT_EQ(sb.Pipe(), 600u);
}

TEST(SackScoreboard, RetransmissionCountsInPipeOnceUntilSackedOrLost) {
  SackScoreboard sb = Ten();
  sb.OnRetransmit(2, kT0 + absl::Milliseconds(5));
  EXPECT_TRUE(sb[2].retransmitted);
  EXPECT_TRUE(sb[2].in_flight_retx);
  EXPECT_EQ(sb[2].sent, kT0 + absl::Milliseconds(5));
  EXPECT_EQ(sb.Pipe(), 1100u);
  sb.OnRetransmit(2, kT0 + absl::Milliseconds(6));
  EXPECT_EQ(sb.Pipe(), 1100u);  // one retransmission in flight at a time
  // The SACK covers the record: neither copy is in flight any more.
  Sack(sb, {{200, 300}});
  EXPECT_FALSE(sb[2].in_flight_retx);
  EXPECT_EQ(sb.Pipe(), 900u);
  // Sending a SACKed record again puts nothing in flight.
  sb.OnRetransmit(2, kT0);
  EXPECT_FALSE(sb[2].in_flight_retx);
  EXPECT_EQ(sb.Pipe(), 900u);
  // A lost retransmission: the record is lost again, nothing of it in flight.
  sb.OnRetransmit(4, kT0);
  EXPECT_EQ(sb.Pipe(), 1000u);
  EXPECT_EQ(sb.MarkLost(4), 100u);
  EXPECT_FALSE(sb[4].in_flight_retx);
  EXPECT_EQ(sb.Pipe(), 800u);
  EXPECT_EQ(sb.NextLost(), 4u);
}

TEST(SackScoreboard, MarkLostReportsOnlyNewlyLostBytes) {
  SackScoreboard sb = Ten();
  Sack(sb, {{100, 200}});
  EXPECT_EQ(sb.MarkLost(1), 0u);  // SACKed: not lost
  EXPECT_FALSE(sb[1].lost);
  EXPECT_EQ(sb.MarkLost(3), 100u);
  EXPECT_EQ(sb.MarkLost(3), 0u);
  EXPECT_EQ(sb.lost_bytes(), 100u);
  // Marked lost, retransmitted, lost again: the bytes were lost already.
  sb.OnRetransmit(3, kT0);
  EXPECT_EQ(sb.NextLost(), 10u);
  EXPECT_EQ(sb.MarkLost(3), 0u);
  EXPECT_EQ(sb.lost_bytes(), 100u);
  EXPECT_EQ(sb.NextLost(), 3u);
  EXPECT_EQ(sb.Pipe(), 1000u - 100 - 100);
}

TEST(SackScoreboard, SackingALostOrRetransmittedRecordTakesItOutOfBoth) {
  SackScoreboard sb = Ten();
  sb.MarkLost(0);
  sb.MarkLost(1);
  sb.OnRetransmit(1, kT0);
  EXPECT_EQ(sb.Pipe(), 900u);
  auto r = Sack(sb, {{0, 200}});
  EXPECT_EQ(r.newly_sacked, 200u);
  EXPECT_FALSE(sb[0].lost);
  EXPECT_FALSE(sb[1].lost);
  EXPECT_FALSE(sb[1].in_flight_retx);
  EXPECT_EQ(sb.lost_bytes(), 0u);
  EXPECT_EQ(sb.NextLost(), 10u);
  EXPECT_EQ(sb.Pipe(), 800u);
}

TEST(SackScoreboard, EveryNewlySackedRecordIsDeliveredOnce) {
  SackScoreboard sb = Ten();
  std::vector<uint32_t> delivered;
  auto note = [&](const SentSegment& s) { delivered.push_back(s.start - At(0)); };
  std::vector<SackBlock> blocks = {{At(700), At(1000)}, {At(0), At(100)}, {At(300), At(500)}};
  auto r = sb.OnSackBlocks(blocks, At(0), At(1000), note);
  EXPECT_FALSE(r.dsack);
  EXPECT_EQ(r.newly_sacked, 600u);
  EXPECT_EQ(delivered, (std::vector<uint32_t>{700, 800, 900, 0, 300, 400}));
  EXPECT_EQ(sb.sacked_count(), 6u);
  EXPECT_EQ(sb.sacked_bytes(), 600u);
  EXPECT_TRUE(sb[0].sacked);
  EXPECT_FALSE(sb[1].sacked);
  delivered.clear();
  r = sb.OnSackBlocks(blocks, At(0), At(1000), note);
  EXPECT_EQ(r.newly_sacked, 0u);
  EXPECT_TRUE(delivered.empty());
}

TEST(SackScoreboard, BlocksAtTheWindowsEdgesCount) {
  SackScoreboard sb = Ten();
  sb.OnCumulativeAck(At(200), [](const SentSegment&) {});
  // A block may start at SND.UNA and end at SND.NXT (RFC 6675 §5).
  auto r = Sack(sb, {{200, 300}, {900, 1000}}, 200);
  EXPECT_FALSE(r.dsack);
  EXPECT_EQ(r.newly_sacked, 200u);
  EXPECT_TRUE(sb[0].sacked);
  EXPECT_TRUE(sb[7].sacked);
  EXPECT_EQ(sb.high_sacked(), At(1000));
  // One byte past either edge and the block is ignored.
  SackScoreboard other = Ten();
  other.OnCumulativeAck(At(200), [](const SentSegment&) {});
  r = Sack(other, {{300, 400}, {199, 300}, {900, 1001}}, 200);
  EXPECT_EQ(r.newly_sacked, 100u);
  EXPECT_EQ(other.sacked_count(), 1u);
  EXPECT_EQ(other.high_sacked(), At(400));
}

TEST(SackScoreboard, HighSackedIsTheHighestBlockEdgeSeen) {
  SackScoreboard sb = Ten();
  Sack(sb, {{500, 600}});
  EXPECT_EQ(sb.high_sacked(), At(600));
  Sack(sb, {{200, 300}});
  EXPECT_EQ(sb.high_sacked(), At(600));
  Sack(sb, {{600, 800}});
  EXPECT_EQ(sb.high_sacked(), At(800));
  // An empty block says nothing.
  Sack(sb, {{850, 850}});
  EXPECT_EQ(sb.high_sacked(), At(800));
  EXPECT_EQ(sb.sacked_count(), 4u);
}

TEST(SackScoreboard, OnlyTheFirstBlockCanBeADuplicateSack) {
  SackScoreboard sb = Ten();
  sb.OnCumulativeAck(At(200), [](const SentSegment&) {});
  // RFC 2883 §4 case 1: the first block below the cumulative ACK, with its edges.
  auto r = Sack(sb, {{100, 200}, {400, 500}}, 200);
  EXPECT_TRUE(r.dsack);
  EXPECT_EQ(r.dsack_left, At(100));
  EXPECT_EQ(r.dsack_right, At(200));
  EXPECT_EQ(r.newly_sacked, 100u);
  // A later block below SND.UNA is invalid, not a D-SACK.
  r = Sack(sb, {{600, 700}, {100, 200}}, 200);
  EXPECT_FALSE(r.dsack);
  EXPECT_EQ(r.newly_sacked, 100u);
  // An empty first block is neither.
  r = Sack(sb, {{150, 150}}, 200);
  EXPECT_FALSE(r.dsack);
  EXPECT_EQ(r.newly_sacked, 0u);
}

TEST(SackScoreboard, AFirstBlockIsADuplicateOnlyWhenTheSecondContainsIt) {
  SackScoreboard sb = Ten();
  // Sharing the second block's left edge, or its right edge: inside.
  auto r = Sack(sb, {{400, 500}, {400, 700}});
  EXPECT_TRUE(r.dsack);
  EXPECT_EQ(r.dsack_left, At(400));
  EXPECT_EQ(r.dsack_right, At(500));
  r = Sack(sb, {{600, 700}, {300, 700}});
  EXPECT_TRUE(r.dsack);
  EXPECT_EQ(r.dsack_right, At(700));
  // Above the second block, or below it: two ordinary SACK blocks.
  SackScoreboard other = Ten();
  r = Sack(other, {{800, 900}, {300, 400}});
  EXPECT_FALSE(r.dsack);
  EXPECT_EQ(r.newly_sacked, 200u);
  r = Sack(other, {{100, 200}, {500, 600}});
  EXPECT_FALSE(r.dsack);
  EXPECT_EQ(r.newly_sacked, 200u);
  // Overlapping the second block's left edge only.
  r = Sack(other, {{600, 800}, {700, 900}});
  EXPECT_FALSE(r.dsack);
  EXPECT_EQ(r.newly_sacked, 200u);
  EXPECT_EQ(other.sacked_count(), 6u);
}

TEST(SackScoreboard, BlocksAcrossSequenceZeroSackEachRecordOnce) {
  // Records from 2^32 - 296 to 504: the sequence numbers wrap inside the second.
  SackScoreboard sb(8);
  for (uint32_t i = 0; i < 4; ++i)
    ASSERT_TRUE(sb.OnSend(At(7000 + i * 200), At(7200 + i * 200), kT0));
  int delivered = 0;
  std::vector<SackBlock> blocks = {{At(7000), At(7800)}};
  auto r = sb.OnSackBlocks(blocks, At(7000), At(7800), [&](const SentSegment&) { ++delivered; });
  EXPECT_EQ(r.newly_sacked, 800u);
  EXPECT_EQ(delivered, 4);
  EXPECT_EQ(sb.sacked_count(), 4u);
  EXPECT_EQ(sb.high_sacked(), At(7800));
}

TEST(SackScoreboard, BlocksFindTheirRecordsAmongMany) {
  SackScoreboard sb(64);
  for (uint32_t i = 0; i < 40; ++i) ASSERT_TRUE(sb.OnSend(At(i * 10), At(i * 10 + 10), kT0));
  for (uint32_t i : {0u, 1u, 17u, 38u, 39u}) {
    auto r = Sack(sb, {{i * 10, i * 10 + 10}}, 0, 400);
    EXPECT_EQ(r.newly_sacked, 10u) << i;
    EXPECT_TRUE(sb[i].sacked) << i;
  }
  EXPECT_EQ(sb.sacked_count(), 5u);
  auto r = Sack(sb, {{200, 300}}, 0, 400);
  EXPECT_EQ(r.newly_sacked, 100u);
  EXPECT_EQ(sb.sacked_count(), 15u);
}

TEST(SackScoreboard, IsLostCountsSackedSegmentsSmallerThanAnSmss) {
  // 100-byte segments under an SMSS of 1000: the bytes above never exceed
  // (DupThresh - 1) * SMSS, so the count of SACKed segments decides.
  SackScoreboard sb = Ten();
  Sack(sb, {{100, 200}, {300, 400}});
  EXPECT_EQ(sb.MarkLostByDupThresh(3, 1000), 0u);
  Sack(sb, {{500, 600}});
  EXPECT_EQ(sb.MarkLostByDupThresh(3, 1000), 100u);
  EXPECT_TRUE(sb[0].lost);
  EXPECT_FALSE(sb[2].lost);
}

TEST(SackScoreboard, IsLostAlsoCountsSackedBytesAbove) {
  // Two SACKed records of 150 bytes: 300 bytes above [0, 100) are more than
  // (DupThresh - 1) * SMSS = 200, though fewer than DupThresh records.
  SackScoreboard sb(8);
  ASSERT_TRUE(sb.OnSend(At(0), At(100), kT0));
  ASSERT_TRUE(sb.OnSend(At(100), At(250), kT0));
  ASSERT_TRUE(sb.OnSend(At(250), At(400), kT0));
  EXPECT_EQ(sb.MarkLostByDupThresh(3, 100), 0u);  // nothing SACKed
  Sack(sb, {{100, 250}}, 0, 400);
  EXPECT_EQ(sb.MarkLostByDupThresh(3, 100), 0u);  // 150 bytes, one record
  Sack(sb, {{250, 400}}, 0, 400);
  EXPECT_EQ(sb.MarkLostByDupThresh(3, 100), 100u);
  EXPECT_TRUE(sb[0].lost);
  // With a larger SMSS the same bytes are not enough.
  SackScoreboard big(8);
  ASSERT_TRUE(big.OnSend(At(0), At(100), kT0));
  ASSERT_TRUE(big.OnSend(At(100), At(250), kT0));
  ASSERT_TRUE(big.OnSend(At(250), At(400), kT0));
  Sack(big, {{100, 400}}, 0, 400);
  EXPECT_EQ(big.MarkLostByDupThresh(3, 150), 0u);
  EXPECT_EQ(big.MarkLostByDupThresh(3, 149), 100u);
}

TEST(SackScoreboard, ADupThreshOfOneMarksBelowASingleSackedRecord) {
  SackScoreboard sb = Ten();
  Sack(sb, {{300, 400}});
  EXPECT_EQ(sb.MarkLostByDupThresh(1, 100), 300u);
  EXPECT_TRUE(sb[0].lost && sb[1].lost && sb[2].lost);
  EXPECT_FALSE(sb[4].lost);
  EXPECT_EQ(sb.NextLost(), 0u);
}

TEST(SackScoreboard, IsLostLeavesRecordsWithARetransmissionInFlightAlone) {
  SackScoreboard sb = Ten();
  // Record 0 lost and sent again; record 1 sent again before any loss was
  // declared (a probe): both retransmissions are in flight.
  sb.MarkLost(0);
  sb.OnRetransmit(0, kT0);
  sb.OnRetransmit(1, kT0);
  EXPECT_EQ(sb.Pipe(), 1100u);
  Sack(sb, {{500, 800}});
  EXPECT_EQ(sb.MarkLostByDupThresh(3, 100), 300u);  // records 2, 3, 4
  EXPECT_TRUE(sb[0].in_flight_retx);
  EXPECT_TRUE(sb[1].in_flight_retx);
  EXPECT_FALSE(sb[1].lost);
  EXPECT_EQ(sb.lost_bytes(), 400u);
  EXPECT_EQ(sb.Pipe(), 1000u - 300 - 400 + 200);
  EXPECT_EQ(sb.NextLost(), 2u);
}

TEST(SackScoreboard, ALostFinIsTheNextToRetransmit) {
  SackScoreboard sb(4);
  ASSERT_TRUE(sb.OnSend(At(0), At(100), kT0));
  ASSERT_TRUE(sb.OnSend(At(100), At(101), kT0));  // the FIN
  EXPECT_EQ(sb.MarkLost(1), 1u);
  EXPECT_EQ(sb.lost_bytes(), 1u);
  EXPECT_EQ(sb.NextLost(), 1u);
}

// A ring that wrapped: its free slots still hold acknowledged records.
SackScoreboard WrappedRing(std::vector<std::pair<uint32_t, uint32_t>> sacks, uint32_t ack) {
  SackScoreboard sb(10);
  for (uint32_t i = 0; i < 10; ++i) EXPECT_TRUE(sb.OnSend(At(i * 100), At(i * 100 + 100), kT0));
  Sack(sb, sacks);
  sb.OnCumulativeAck(At(ack), [](const SentSegment&) {});
  return sb;
}

TEST(SackScoreboard, TimeoutMarksOnlyRecordsInFlight) {
  SackScoreboard sb = WrappedRing({{500, 600}}, 100);
  ASSERT_EQ(sb.size(), 9u);
  sb.MarkAllLost();
  EXPECT_EQ(sb.lost_bytes(), 800u);
  EXPECT_EQ(sb.Pipe(), 0u);
  EXPECT_EQ(sb.NextLost(), 0u);
  sb.ClearSacks();
  EXPECT_EQ(sb.Pipe(), 100u);  // the reneged record is in flight again
}

TEST(SackScoreboard, RenegingClearsOnlyRecordsInFlight) {
  SackScoreboard sb = WrappedRing({{0, 200}, {200, 300}, {500, 600}}, 200);
  ASSERT_EQ(sb.size(), 8u);
  EXPECT_EQ(sb.sacked_count(), 2u);
  EXPECT_EQ(sb.Pipe(), 600u);
  sb.ClearSacks();
  EXPECT_EQ(sb.sacked_bytes(), 0u);
  EXPECT_EQ(sb.sacked_count(), 0u);
  EXPECT_FALSE(sb[0].sacked);
  EXPECT_FALSE(sb[3].sacked);
  EXPECT_EQ(sb.Pipe(), 800u);
  // The receiver may SACK it again (RFC 2018 §8).
  EXPECT_EQ(Sack(sb, {{500, 600}}, 200).newly_sacked, 100u);
  EXPECT_EQ(sb.sacked_count(), 1u);
  EXPECT_EQ(sb.Pipe(), 700u);
}

}  // namespace
}  // namespace wrench::stack
