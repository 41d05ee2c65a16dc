// The congestion control algorithms on their own: window figures against the
// formulas of RFC 5681 and RFC 9438, with ACKs fed at explicit virtual times.
#include "stack/congestion.h"

#include <algorithm>
#include <cmath>

#include "gtest/gtest.h"

namespace wrench::stack {
namespace {

constexpr uint32_t kMss = 1000;
const Instant kT0 = absl::UnixEpoch();

TEST(NewReno, InitialWindowIsTenSegments) {
  NewRenoCongestionControl cc;
  cc.Init(kMss);
  EXPECT_EQ(cc.cwnd(), 10 * kMss);  // RFC 6928
  cc.Init(1460);
  EXPECT_EQ(cc.cwnd(), 14600u);
  cc.Init(4000);
  EXPECT_EQ(cc.cwnd(), 14600u);     // min(10*MSS, max(2*MSS, 14600))
}

TEST(NewReno, SlowStartThenOneSegmentPerWindow) {
  NewRenoCongestionControl cc;
  cc.Init(kMss);
  cc.OnAck(kT0, 2 * kMss, absl::ZeroDuration());
  EXPECT_EQ(cc.cwnd(), 11 * kMss);  // RFC 5681 eq. (2): min(N, SMSS)
  cc.OnCongestionEvent(kT0, 12 * kMss);
  EXPECT_EQ(cc.ssthresh(), 6 * kMss);  // eq. (4): FlightSize / 2
  cc.OnRecoveryEnd();
  EXPECT_EQ(cc.cwnd(), 6 * kMss);
  for (int i = 0; i < 6; ++i) cc.OnAck(kT0, kMss, absl::ZeroDuration());
  EXPECT_EQ(cc.cwnd(), 7 * kMss);  // a cwnd's worth acknowledged: one SMSS more
  cc.OnRto(kT0, 7 * kMss, true);
  EXPECT_EQ(cc.cwnd(), kMss);
  EXPECT_EQ(cc.ssthresh(), 3500u);
  cc.OnRto(kT0, kMss, false);  // a repeated timeout leaves ssthresh alone
  EXPECT_EQ(cc.ssthresh(), 3500u);
}

// Runs `seconds` of congestion avoidance: every RTT a cwnd of data is acknowledged
// in one-segment ACKs spread over the round trip. Returns cwnd in segments at each
// whole multiple of `sample_every`.
std::vector<std::pair<double, double>> RunCubic(CubicCongestionControl& cc, Instant start,
                                                Duration rtt, double seconds,
                                                Duration sample_every) {
  std::vector<std::pair<double, double>> samples;
  Instant t = start;
  Instant next_sample = start;
  while (t - start <= absl::Seconds(seconds)) {
    if (t >= next_sample) {
      samples.push_back({absl::ToDoubleSeconds(t - start), cc.cwnd() / double{kMss}});
      next_sample += sample_every;
    }
    uint32_t segs = cc.cwnd() / kMss;
    for (uint32_t i = 0; i < segs; ++i) cc.OnAck(t + rtt * i / segs, kMss, rtt);
    t += rtt;
  }
  return samples;
}

TEST(Cubic, WindowFollowsTheCubicCurveAfterALoss) {
  CubicCongestionControl cc;
  cc.Init(kMss);
  cc.OnAck(kT0, 90 * kMss, absl::Milliseconds(100));  // slow start to 100 segments
  ASSERT_EQ(cc.cwnd(), 100 * kMss);
  cc.OnCongestionEvent(kT0, 100 * kMss);
  EXPECT_EQ(cc.ssthresh(), 70 * kMss);  // beta_cubic = 0.7
  cc.OnRecoveryEnd();
  ASSERT_EQ(cc.cwnd(), 70 * kMss);
  // RFC 9438 eq. (2): K = cbrt((W_max - cwnd_epoch) / C) = cbrt(30 / 0.4) = 4.217 s.
  const double k = std::cbrt(30 / 0.4);
  auto samples = RunCubic(cc, kT0, absl::Milliseconds(100), 8, absl::Seconds(1));
  EXPECT_NEAR(cc.k(), k, 1e-9);
  EXPECT_DOUBLE_EQ(cc.w_max(), 100);
  // §4.3: the Reno-friendly estimate gains alpha = 3(1-beta)/(1+beta) segments per
  // RTT from 70 until it reaches W_max, then one per RTT; cwnd is the larger.
  const double alpha = 3 * (1 - 0.7) / (1 + 0.7);
  auto w_est = [&](double t) {
    double n = t / 0.1, n1 = 30 / alpha;
    return n <= n1 ? 70 + alpha * n : 100 + (n - n1);
  };
  for (auto [t, cwnd] : samples) {
    if (t == 0) continue;
    // eq. (1): W_cubic(t) = C (t - K)^3 + W_max; cwnd aims one RTT ahead of it.
    double w = 0.4 * std::pow(t - k, 3) + 100;
    double ahead = 0.4 * std::pow(t + 0.1 - k, 3) + 100;
    EXPECT_GE(cwnd, std::max(w, w_est(t)) * 0.98) << "t=" << t;
    EXPECT_LE(cwnd, std::max(ahead, w_est(t)) * 1.02) << "t=" << t;
  }
  // Around K the window sits on the plateau at W_max.
  EXPECT_NEAR(samples[4].second, 100, 2);
}

TEST(Cubic, FastConvergenceLowersWMaxWhenTheWindowShrinks) {
  CubicCongestionControl cc;
  cc.Init(kMss);
  cc.OnAck(kT0, 90 * kMss, absl::Milliseconds(10));
  cc.OnCongestionEvent(kT0, 0);  // W_max = 100
  cc.OnRecoveryEnd();            // cwnd 70
  cc.OnCongestionEvent(kT0, 0);  // 70 < W_last_max 100: W_max = 70 * (1 + 0.7) / 2
  EXPECT_DOUBLE_EQ(cc.w_max(), 70 * 1.7 / 2);
  EXPECT_EQ(cc.ssthresh(), 49 * kMss);
}

TEST(Cubic, ShortRoundTripsAreInTheRenoFriendlyRegion) {
  CubicCongestionControl cc;
  cc.Init(kMss);
  cc.OnAck(kT0, 90 * kMss, absl::Milliseconds(1));
  cc.OnCongestionEvent(kT0, 0);
  cc.OnRecoveryEnd();
  // 100 round trips of 1 ms: W_cubic(0.1 s) is about 72 segments, while Reno,
  // gaining 3(1-beta)/(1+beta) = 0.53 segment per RTT up to W_max and one after,
  // has 120 and more: RFC 9438 §4.3 takes the larger.
  RunCubic(cc, kT0, absl::Milliseconds(1), 0.1, absl::Seconds(1));
  double cwnd = cc.cwnd() / double{kMss};
  EXPECT_GT(cwnd, cc.WCubic(absl::Milliseconds(100)) + 30);
  EXPECT_GT(cwnd, 110);
  EXPECT_LT(cwnd, 150);
}

TEST(Cubic, TimeoutCollapsesToOneSegment) {
  CubicCongestionControl cc;
  cc.Init(kMss);
  cc.OnRto(kT0, 10 * kMss, true);
  EXPECT_EQ(cc.cwnd(), kMss);
  EXPECT_EQ(cc.ssthresh(), 7 * kMss);
}

TEST(CongestionControl, FactoryMakesTheNamedAlgorithm) {
  auto cubic = MakeCongestionControl(CongestionAlgorithm::kCubic);
  EXPECT_EQ(cubic->algorithm(), CongestionAlgorithm::kCubic);
  EXPECT_EQ(CongestionAlgorithmName(cubic->algorithm()), "cubic");
  auto reno = MakeCongestionControl(CongestionAlgorithm::kNewReno);
  EXPECT_EQ(reno->algorithm(), CongestionAlgorithm::kNewReno);
  EXPECT_EQ(CongestionAlgorithmName(reno->algorithm()), "newreno");
}

TEST(NewReno, InitialWindowIsTwoSegmentsOfAJumboMss) {
  NewRenoCongestionControl cc;
  cc.Init(8000);
  EXPECT_EQ(cc.cwnd(), 16000u);  // RFC 6928: max(2*MSS, 14600)
  cc.Init(0);
  EXPECT_EQ(cc.mss(), 1u);  // an SMSS of at least one byte
  EXPECT_EQ(cc.cwnd(), 10u);
}

TEST(NewReno, InitStartsInSlowStart) {
  NewRenoCongestionControl cc;
  cc.Init(kMss);
  cc.OnCongestionEvent(kT0, 8 * kMss);
  ASSERT_EQ(cc.ssthresh(), 4 * kMss);
  cc.Init(kMss);
  EXPECT_EQ(cc.ssthresh(), 0x7fffffffu);
  EXPECT_EQ(cc.cwnd(), 10 * kMss);
}

TEST(NewReno, SsthreshIsAtLeastTwoSegments) {
  NewRenoCongestionControl cc;
  cc.Init(kMss);
  cc.OnCongestionEvent(kT0, 3 * kMss);
  EXPECT_EQ(cc.ssthresh(), 2 * kMss);  // RFC 5681 eq. (4)
  cc.OnRto(kT0, 3 * kMss, true);
  EXPECT_EQ(cc.ssthresh(), 2 * kMss);
}

TEST(NewReno, CongestionAvoidanceCountsBytesFromTheLastReduction) {
  NewRenoCongestionControl cc;
  cc.Init(kMss);
  cc.OnCongestionEvent(kT0, 12 * kMss);
  cc.OnRecoveryEnd();
  ASSERT_EQ(cc.cwnd(), 6 * kMss);
  // One SMSS per cwnd of bytes, the rest carried into the next window.
  cc.OnAck(kT0, 6 * kMss - 1, absl::ZeroDuration());
  EXPECT_EQ(cc.cwnd(), 6 * kMss);
  cc.OnAck(kT0, 1, absl::ZeroDuration());
  EXPECT_EQ(cc.cwnd(), 7 * kMss);
  cc.OnAck(kT0, 7 * kMss - 1, absl::ZeroDuration());
  EXPECT_EQ(cc.cwnd(), 7 * kMss);
  cc.OnAck(kT0, 1, absl::ZeroDuration());
  EXPECT_EQ(cc.cwnd(), 8 * kMss);
  // Bytes counted before a congestion event do not count after it.
  cc.OnAck(kT0, 3 * kMss, absl::ZeroDuration());
  cc.OnCongestionEvent(kT0, 8 * kMss);
  cc.OnRecoveryEnd();
  ASSERT_EQ(cc.cwnd(), 4 * kMss);
  cc.OnAck(kT0, 4 * kMss - 1, absl::ZeroDuration());
  EXPECT_EQ(cc.cwnd(), 4 * kMss);
  cc.OnAck(kT0, 1, absl::ZeroDuration());
  EXPECT_EQ(cc.cwnd(), 5 * kMss);
  // Nor before a timeout.
  cc.OnAck(kT0, 2 * kMss, absl::ZeroDuration());
  cc.OnRto(kT0, 5 * kMss, true);
  ASSERT_EQ(cc.ssthresh(), 2500u);
  cc.OnAck(kT0, kMss, absl::ZeroDuration());
  cc.OnAck(kT0, kMss, absl::ZeroDuration());
  ASSERT_EQ(cc.cwnd(), 3 * kMss);  // slow start up to ssthresh and one step past
  cc.OnAck(kT0, 3 * kMss - 1, absl::ZeroDuration());
  EXPECT_EQ(cc.cwnd(), 3 * kMss);
  cc.OnAck(kT0, 1, absl::ZeroDuration());
  EXPECT_EQ(cc.cwnd(), 4 * kMss);
}

TEST(NewReno, WindowStaysBetweenOneSegmentAndAGibibyte) {
  NewRenoCongestionControl cc;
  cc.Init(1 << 20);
  for (int i = 0; i < 2000; ++i) cc.OnAck(kT0, 1 << 20, absl::ZeroDuration());
  EXPECT_EQ(cc.cwnd(), 0x3fffffffu);
  cc.Init(kMss);
  cc.SetCwnd(0);  // PRR may take the window to nothing
  EXPECT_EQ(cc.cwnd(), 0u);
  cc.OnAck(kT0, 0, absl::ZeroDuration());
  EXPECT_EQ(cc.cwnd(), kMss);
}

TEST(Cubic, WindowStaysBelowAGibibyte) {
  CubicCongestionControl cc;
  cc.Init(kMss);
  cc.OnAck(kT0, 0x7fffffff, absl::Milliseconds(100));  // slow start grows by every byte
  EXPECT_EQ(cc.cwnd(), 0x3fffffffu);
  cc.OnCongestionEvent(kT0, 0);
  cc.OnRecoveryEnd();
  EXPECT_EQ(cc.cwnd(), static_cast<uint32_t>(0x3fffffff * 0.7));
  cc.OnAck(kT0, kMss, absl::Milliseconds(100));
  // Far up the curve, one huge ACK: the target is 1.5 cwnd, and the window stops
  // at the limit.
  cc.OnAck(kT0 + absl::Seconds(1000), 0x7fffffff, absl::Milliseconds(100));
  EXPECT_EQ(cc.cwnd(), 0x3fffffffu);
}

TEST(Cubic, FirstAckAfterRecoveryFollowsTheRenoFriendlyEstimate) {
  CubicCongestionControl cc;
  cc.Init(kMss);
  cc.OnAck(kT0, 90 * kMss, absl::Milliseconds(100));
  cc.OnCongestionEvent(kT0, 100 * kMss);
  cc.OnRecoveryEnd();
  ASSERT_EQ(cc.cwnd(), 70 * kMss);
  // cwnd = ssthresh: congestion avoidance. W_cubic(0) = cwnd_epoch = 70, and
  // W_est = 70 + alpha * 1/70 with alpha = 3(1-beta)/(1+beta) (RFC 9438 §4.3).
  cc.OnAck(kT0, kMss, absl::Milliseconds(100));
  const double alpha = 3 * (1 - 0.7) / (1 + 0.7);
  EXPECT_EQ(cc.cwnd(), static_cast<uint32_t>((70 + alpha / 70) * kMss));
  EXPECT_EQ(cc.cwnd(), 70007u);
}

TEST(Cubic, OneSegmentAcknowledgedGrowsTheWindowByAtMostHalfASegment) {
  // RFC 9438 §4.4: the target is at most 1.5 cwnd, so cwnd grows by at most
  // (1.5 cwnd - cwnd) / cwnd = 0.5 SMSS per SMSS acknowledged.
  CubicCongestionControl cc;
  cc.Init(kMss);
  cc.OnAck(kT0, 90 * kMss, absl::Milliseconds(100));
  cc.OnCongestionEvent(kT0, 100 * kMss);
  cc.OnRecoveryEnd();
  const Duration rtt = absl::Milliseconds(100);
  Instant t = kT0;
  int acks = 0;
  while (t - kT0 < absl::Seconds(5)) {  // the cubic region throughout, after the first ACK
    uint32_t segs = cc.cwnd() / kMss;
    for (uint32_t i = 0; i < segs; ++i) {
      uint32_t before = cc.cwnd();
      cc.OnAck(t + rtt * i / segs, kMss, rtt);
      ASSERT_GE(cc.cwnd(), before) << "ack " << acks;
      ASSERT_LE(cc.cwnd() - before, kMss / 2) << "ack " << acks;
      ++acks;
    }
    t += rtt;
  }
  EXPECT_GT(cc.cwnd(), 95 * kMss);
}

TEST(Cubic, AnEpochStartingAboveWMaxStartsOnThePlateau) {
  CubicCongestionControl cc;
  cc.Init(kMss);
  // A first epoch below W_max = 10: K > 0.
  cc.OnCongestionEvent(kT0, 0);
  cc.OnRecoveryEnd();
  cc.OnAck(kT0, kMss, absl::Milliseconds(100));
  EXPECT_NEAR(cc.k(), std::cbrt(3 / 0.4), 1e-9);
  EXPECT_EQ(cc.cwnd(), 7075u);  // W_est = 7 + alpha / 7
  // A timeout, and slow start overshoots W_max with one stretch ACK.
  cc.OnRto(kT0, 0, true);
  ASSERT_EQ(cc.ssthresh(), 4952u);  // 0.7 * 7075
  cc.OnAck(kT0, 20 * kMss, absl::Milliseconds(100));
  ASSERT_EQ(cc.cwnd(), 21 * kMss);
  // RFC 9438 §4.2: W_max below cwnd at the epoch's start: W_max = cwnd, K = 0.
  // An ACK of nothing new changes nothing.
  cc.OnAck(kT0 + absl::Seconds(1), 0, absl::Milliseconds(100));
  EXPECT_DOUBLE_EQ(cc.w_max(), 21);
  EXPECT_EQ(cc.k(), 0);
  EXPECT_EQ(cc.cwnd(), 21 * kMss);
  // W_est has reached W_max: alpha = 1.
  cc.OnAck(kT0 + absl::Seconds(1), kMss, absl::Milliseconds(100));
  EXPECT_EQ(cc.cwnd(), static_cast<uint32_t>((21 + 1.0 / 21) * kMss));
  EXPECT_EQ(cc.cwnd(), 21047u);
}

TEST(Cubic, EachLossStartsANewEpoch) {
  CubicCongestionControl cc;
  cc.Init(kMss);
  cc.OnAck(kT0, 90 * kMss, absl::Milliseconds(100));
  cc.OnCongestionEvent(kT0, 100 * kMss);
  cc.OnRecoveryEnd();
  RunCubic(cc, kT0, absl::Milliseconds(100), 2, absl::Seconds(1));
  ASSERT_NEAR(cc.k(), std::cbrt(30 / 0.4), 1e-9);
  cc.OnCongestionEvent(kT0 + absl::Seconds(3), 0);
  cc.OnRecoveryEnd();
  const double cwnd = cc.cwnd() / double{kMss};
  cc.OnAck(kT0 + absl::Seconds(3), kMss, absl::Milliseconds(100));
  EXPECT_NEAR(cc.k(), std::cbrt((cc.w_max() - cwnd) / 0.4), 1e-9);
  EXPECT_LT(cc.w_max(), 100);  // fast convergence: the window had shrunk
  EXPECT_NEAR(cc.cwnd(), cwnd * kMss, 10);
}

TEST(Cubic, ARepeatedTimeoutStartsANewEpoch) {
  CubicCongestionControl cc;
  cc.Init(kMss);
  cc.OnRto(kT0, 0, true);  // W_max = 10, ssthresh = 7
  cc.OnAck(kT0, 6 * kMss, absl::Milliseconds(100));
  cc.OnAck(kT0, kMss, absl::Milliseconds(100));  // an epoch starts at kT0
  ASSERT_EQ(cc.cwnd(), 7075u);
  cc.OnRto(kT0 + absl::Seconds(1), 0, false);
  EXPECT_EQ(cc.cwnd(), kMss);
  EXPECT_EQ(cc.ssthresh(), 7 * kMss);
  cc.OnAck(kT0 + absl::Seconds(5), 6 * kMss, absl::Milliseconds(100));
  // The epoch restarts at 5 s: the window starts at the curve's origin again,
  // not 5 s up a curve that began at kT0.
  cc.OnAck(kT0 + absl::Seconds(5), kMss, absl::Milliseconds(100));
  EXPECT_EQ(cc.cwnd(), 7075u);
}

TEST(Cubic, NoFastConvergenceWhenTheWindowDidNotShrink) {
  CubicCongestionControl cc;
  cc.Init(kMss);
  cc.OnAck(kT0, 90 * kMss, absl::Milliseconds(10));
  cc.OnCongestionEvent(kT0, 0);
  EXPECT_DOUBLE_EQ(cc.w_max(), 100);
  cc.SetCwnd(100 * kMss);
  EXPECT_EQ(cc.cwnd(), 100 * kMss);
  cc.OnCongestionEvent(kT0, 0);
  EXPECT_DOUBLE_EQ(cc.w_max(), 100);  // RFC 9438 §4.7: only a shrinking W_max
}

TEST(Cubic, SsthreshIsAtLeastTwoSegments) {
  CubicCongestionControl cc;
  cc.Init(kMss);
  cc.SetCwnd(2 * kMss);
  cc.OnCongestionEvent(kT0, 0);
  EXPECT_EQ(cc.ssthresh(), 2 * kMss);
}

// --- BBR --------------------------------------------------------------------

// Feeds BBR a path of `bw` bytes per second and a round trip of `rtt`: each round
// trip the path delivers min(cwnd, bw * rtt), which is what is in flight, in ten
// ACKs spread over the round trip. Returns the time after `rounds`.
Instant FeedPath(BbrCongestionControl& cc, Instant t, uint64_t& delivered, double bw, Duration rtt,
                 int rounds) {
  for (int r = 0; r < rounds; ++r) {
    const uint64_t per_round =
        std::min<uint64_t>(cc.cwnd(), static_cast<uint64_t>(bw * absl::ToDoubleSeconds(rtt)));
    for (int i = 0; i < 10; ++i) {
      t += rtt / 10;
      const uint32_t acked = static_cast<uint32_t>(per_round / 10);
      delivered += acked;
      cc.OnDelivery(t, {.delivered = delivered, .acked = acked,
                        .inflight = static_cast<uint32_t>(per_round), .rtt = rtt});
    }
  }
  return t;
}

// BBR after 30 round trips of a 10 MB/s path with a 10 ms round trip: its model full.
struct OnAPath {
  BbrCongestionControl cc;
  uint64_t delivered = 0;
  Instant t;
  OnAPath() {
    cc.Init(kMss);
    t = FeedPath(cc, kT0, delivered, 10e6, absl::Milliseconds(10), 30);
  }
};

void Deliver(BbrCongestionControl& cc, Instant t, uint64_t delivered, uint32_t acked,
             uint32_t inflight, Duration rtt = absl::Milliseconds(10)) {
  cc.OnDelivery(t, {.delivered = delivered, .acked = acked, .inflight = inflight, .rtt = rtt});
}

TEST(Bbr, NamedAndParsedLikeTheOthers) {
  EXPECT_EQ(CongestionAlgorithmName(CongestionAlgorithm::kBbr), "bbr");
  for (auto a :
       {CongestionAlgorithm::kNewReno, CongestionAlgorithm::kCubic, CongestionAlgorithm::kBbr}) {
    auto parsed = ParseCongestionAlgorithm(CongestionAlgorithmName(a));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, a);
    EXPECT_EQ(MakeCongestionControl(a)->algorithm(), a);
  }
  auto bad = ParseCongestionAlgorithm("vegas");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(),
            "\"vegas\" is not a congestion control: expected newreno, cubic or bbr");
}

TEST(Bbr, StartupGrowsByWhatIsDeliveredUntilTheModelIsKnown) {
  BbrCongestionControl cc;
  cc.Init(kMss);
  EXPECT_EQ(cc.cwnd(), 10 * kMss);
  EXPECT_EQ(cc.TargetCwnd(), 0x3fffffffu);  // no round trip measured yet
  cc.OnDelivery(kT0, {.delivered = 2 * kMss, .acked = 2 * kMss, .inflight = 8 * kMss,
                      .rtt = absl::Milliseconds(10)});
  EXPECT_EQ(cc.cwnd(), 12 * kMss);  // as slow start: every byte delivered
  EXPECT_EQ(cc.min_rtt(), absl::Milliseconds(10));
  EXPECT_EQ(cc.round_count(), 0u);
}

TEST(Bbr, TheWindowSettlesAtTwiceTheBandwidthDelayProduct) {
  BbrCongestionControl cc;
  cc.Init(kMss);
  uint64_t delivered = 0;
  const double bw = 10e6;  // 10 MB/s
  const Duration rtt = absl::Milliseconds(10);  // BDP 100 kB
  FeedPath(cc, kT0, delivered, bw, rtt, 30);
  EXPECT_TRUE(cc.full_bandwidth_reached());
  EXPECT_NEAR(cc.bandwidth(), bw, bw * 0.02);
  EXPECT_EQ(cc.min_rtt(), rtt);
  EXPECT_NEAR(cc.cwnd(), 2 * 100'000.0, 2 * 100'000.0 * 0.02);
  EXPECT_EQ(cc.cwnd(), cc.TargetCwnd());
}

TEST(Bbr, LossHoldsTheWindowForARoundTripAndItsEndRestoresIt) {
  OnAPath path;
  auto& [cc, delivered, t] = path;
  const uint32_t before = cc.cwnd();
  // Recovery: the window is what is in flight, and grows with no more than what the
  // ACKs deliver (packet conservation), whatever the bandwidth says.
  cc.OnCongestionEvent(t, 50 * kMss);
  EXPECT_EQ(cc.cwnd(), 50 * kMss);
  t += absl::Milliseconds(1);
  delivered += kMss;
  Deliver(cc, t, delivered, kMss, 49 * kMss);
  EXPECT_EQ(cc.cwnd(), 50 * kMss);
  cc.OnRecoveryEnd();
  EXPECT_EQ(cc.cwnd(), before);  // the model did not shrink: no reduction
  EXPECT_NEAR(cc.bandwidth(), 10e6, 10e6 * 0.02);
}

TEST(Bbr, RandomLossDoesNotShrinkTheWindow) {
  // What sets BBR apart from a loss-based algorithm: ten per cent of the segments
  // lost (each loss a recovery) leaves the window at 2 BDP of what is delivered.
  OnAPath path;
  auto& [cc, delivered, t] = path;
  for (int i = 0; i < 20; ++i) {
    cc.OnCongestionEvent(t, cc.cwnd());
    t = FeedPath(cc, t, delivered, 9e6, absl::Milliseconds(10), 1);
    cc.OnRecoveryEnd();
  }
  EXPECT_GT(cc.cwnd(), 180'000u);
}

TEST(Bbr, ATimeoutStartsFromOneSegmentAndGrowsBackToTheModel) {
  OnAPath path;
  auto& [cc, delivered, t] = path;
  cc.OnRto(t, cc.cwnd(), true);
  EXPECT_EQ(cc.cwnd(), kMss);
  // The floor of four segments applies from the next ACK; then the window grows by
  // what is delivered, up to the target.
  t = FeedPath(cc, t, delivered, 10e6, absl::Milliseconds(10), 12);
  EXPECT_EQ(cc.cwnd(), cc.TargetCwnd());
}

TEST(Bbr, TheRoundTripIsTheSmallestSampleOfTenSeconds) {
  BbrCongestionControl cc;
  cc.Init(kMss);
  const Duration ms = absl::Milliseconds(1);
  cc.OnDelivery(kT0, {.delivered = kMss, .acked = kMss, .inflight = kMss, .rtt = 5 * ms});
  cc.OnDelivery(kT0 + ms, {.delivered = 2 * kMss, .acked = kMss, .inflight = kMss, .rtt = 8 * ms});
  EXPECT_EQ(cc.min_rtt(), 5 * ms);
  cc.OnDelivery(kT0 + 2 * ms,
                {.delivered = 3 * kMss, .acked = kMss, .inflight = kMss, .rtt = 0 * ms});
  EXPECT_EQ(cc.min_rtt(), 5 * ms);  // zero: no sample
  cc.OnDelivery(kT0 + absl::Seconds(11),
                {.delivered = 4 * kMss, .acked = kMss, .inflight = kMss, .rtt = 8 * ms});
  EXPECT_EQ(cc.min_rtt(), 8 * ms);  // the 5 ms sample expired
}

// One ACK, as the endpoint reports it.
TEST(Bbr, ARoundTripEndsWhenWhatWasInFlightAtItsStartIsDeliveredAndMeasuresTheRate) {
  BbrCongestionControl cc;
  cc.Init(kMss);
  const Duration ms = absl::Milliseconds(1);
  Deliver(cc, kT0, 1000, 1000, 10'000);  // the first round starts: it ends at 11,000
  EXPECT_EQ(cc.round_count(), 0u);
  Deliver(cc, kT0 + 5 * ms, 10'999, 9'999, 10'000);
  EXPECT_EQ(cc.round_count(), 0u);
  EXPECT_EQ(cc.bandwidth(), 0);
  Deliver(cc, kT0 + 10 * ms, 11'000, 1, 20'000);  // exactly 11,000: the round ends
  EXPECT_EQ(cc.round_count(), 1u);
  EXPECT_DOUBLE_EQ(cc.bandwidth(), 10'000 / 0.010);  // 10,000 bytes in 10 ms
  // The next round started there: it ends at 11,000 + 20,000 and measures from 10 ms.
  Deliver(cc, kT0 + 20 * ms, 30'999, 19'999, 20'000);
  EXPECT_EQ(cc.round_count(), 1u);
  Deliver(cc, kT0 + 30 * ms, 31'000, 1, 20'000);
  EXPECT_EQ(cc.round_count(), 2u);
  EXPECT_DOUBLE_EQ(cc.bandwidth(), 20'000 / 0.020);
  // A round that ends in the instant it started measures nothing.
  Deliver(cc, kT0 + 30 * ms, 60'000, 29'000, 0);
  EXPECT_EQ(cc.round_count(), 3u);
  EXPECT_DOUBLE_EQ(cc.bandwidth(), 20'000 / 0.020);  // the largest of the window
}

// Rounds of 10 ms from kT0, each delivering `bytes` with `next` bytes in flight at its
// end (where the round after it ends).
struct TenMsRounds {
  BbrCongestionControl cc;
  Instant t = kT0;
  uint64_t delivered = 0;
  explicit TenMsRounds(uint32_t first_inflight) {
    cc.Init(kMss);
    Deliver(cc, t, delivered, 0, first_inflight);
  }
  void Round(uint64_t bytes, uint64_t next) {
    t += absl::Milliseconds(10);
    delivered += bytes;
    Deliver(cc, t, delivered, static_cast<uint32_t>(bytes), static_cast<uint32_t>(next));
  }
};

TEST(Bbr, FullBandwidthIsThreeRoundsInARowWithoutAQuarterMore) {
  TenMsRounds r(1'000'000);
  r.Round(1'000'000, 100'000);  // 100 MB/s
  r.Round(100'000, 125'000);    // 10 MB/s: the filter keeps 100 MB/s
  EXPECT_FALSE(r.cc.full_bandwidth_reached());
  r.Round(125'000, 100'000);
  EXPECT_FALSE(r.cc.full_bandwidth_reached());  // second round without growth
  r.Round(100'000, 100'000);
  EXPECT_TRUE(r.cc.full_bandwidth_reached());   // third
}

TEST(Bbr, GrowthOfExactlyAQuarterCountsAsGrowth) {
  TenMsRounds r(100'000);
  // 10, 12.5, 12.5, 12.5, 12.5 MB/s: the second is exactly 1.25 times the first.
  for (uint64_t bytes : {100'000u, 125'000u, 125'000u, 125'000u}) {
    r.Round(bytes, 125'000);
    EXPECT_FALSE(r.cc.full_bandwidth_reached()) << bytes;
  }
  r.Round(125'000, 125'000);
  EXPECT_TRUE(r.cc.full_bandwidth_reached());
}

TEST(Bbr, TheWindowNeverFallsBelowFourSegments) {
  BbrCongestionControl cc;
  cc.Init(kMss);
  cc.OnCongestionEvent(kT0, kMss);
  EXPECT_EQ(cc.cwnd(), 4 * kMss);
  cc.OnRto(kT0, kMss, true);
  EXPECT_EQ(cc.cwnd(), kMss);  // a timeout sends one segment
  Deliver(cc, kT0, 0, 0, 0);
  EXPECT_EQ(cc.cwnd(), 4 * kMss);  // the next ACK applies the floor
  // A model of a tiny path (100 bytes a round trip of 10 ms): its target is the
  // floor too, and once the bandwidth is full, so is the window.
  BbrCongestionControl slow;
  slow.Init(kMss);
  Deliver(slow, kT0, 0, 0, 100);
  for (int r = 1; r <= 5; ++r) Deliver(slow, kT0 + r * absl::Milliseconds(10), 100 * r, 100, 100);
  EXPECT_TRUE(slow.full_bandwidth_reached());
  EXPECT_EQ(slow.TargetCwnd(), 4 * kMss);
  EXPECT_EQ(slow.cwnd(), 4 * kMss);
}

TEST(Bbr, ConservationHoldsTheWindowAtWhatIsInFlightUntilTheRoundEnds) {
  OnAPath path;
  auto& [cc, delivered, t] = path;
  const uint32_t target = cc.TargetCwnd();
  // The last round ends once 100 kB more are delivered (what FeedPath had in flight).
  cc.OnCongestionEvent(t, 20 * kMss);
  EXPECT_EQ(cc.cwnd(), 20 * kMss);
  // In flight plus what this ACK delivered, when that is more.
  Deliver(cc, t, delivered + kMss, kMss, 25 * kMss);
  EXPECT_EQ(cc.cwnd(), 26 * kMss);
  Deliver(cc, t, delivered + 2 * kMss, kMss, 10 * kMss);
  EXPECT_EQ(cc.cwnd(), 26 * kMss);  // never lowered while conserving
  // Past the round: the window grows by what is delivered, toward the target.
  Deliver(cc, t, delivered + 400'000, 3 * kMss, 10 * kMss);
  EXPECT_EQ(cc.cwnd(), 29 * kMss);
  EXPECT_LT(cc.cwnd(), target);
}

TEST(Bbr, RecoveryEndsWithTheWindowFromBeforeItAndNoLongerConserves) {
  OnAPath path;
  auto& [cc, delivered, t] = path;
  const uint32_t before = cc.cwnd();
  cc.OnCongestionEvent(t, 20 * kMss);
  cc.OnRecoveryEnd();
  EXPECT_EQ(cc.cwnd(), before);
  // Lower the model (a slower path), so the window falls to the new target.
  t = FeedPath(cc, t, delivered, 2e6, absl::Milliseconds(10), 12);
  const uint32_t lower = cc.cwnd();
  ASSERT_LT(lower, before);
  // A second recovery restores the window from before it, not the first's.
  cc.OnCongestionEvent(t, 10 * kMss);
  cc.OnRecoveryEnd();
  EXPECT_EQ(cc.cwnd(), lower);
  // After the end, an ACK with much in flight does not raise the window as
  // conservation would.
  Deliver(cc, t, delivered + kMss, kMss, 500 * kMss);
  EXPECT_EQ(cc.cwnd(), lower);
}

TEST(Bbr, ATimeoutEndsConservation) {
  OnAPath path;
  auto& [cc, delivered, t] = path;
  cc.OnCongestionEvent(t, 20 * kMss);
  cc.OnRto(t, 20 * kMss, true);
  Deliver(cc, t, delivered + kMss, kMss, 100 * kMss);
  EXPECT_EQ(cc.cwnd(), 4 * kMss);  // grown by 1,000 from one segment, then the floor
}

TEST(Bbr, TheEndpointLeavesTheWindowInRecoveryToIt) {
  EXPECT_TRUE(BbrCongestionControl().SetsWindowInRecovery());
  EXPECT_FALSE(CubicCongestionControl().SetsWindowInRecovery());
  EXPECT_FALSE(NewRenoCongestionControl().SetsWindowInRecovery());
}

}  // namespace
}  // namespace wrench::stack
