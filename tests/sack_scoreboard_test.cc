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

SackScoreboard::SackResult Sack(SackScoreboard& sb, std::vector<std::pair<uint32_t, uint32_t>> blocks,
                                uint32_t una = 0, uint32_t nxt = 1000) {
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
  uint32_t freed = sb.OnCumulativeAck(At(350), [&](const SentSegment& s) { delivered.push_back(s.end - At(0)); });
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

}  // namespace
}  // namespace wrench::stack
