// The congestion control algorithms on their own: window figures against the
// formulas of RFC 5681 and RFC 9438, with ACKs fed at explicit virtual times.
#include "stack/congestion.h"

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
std::vector<std::pair<double, double>> RunCubic(CubicCongestionControl& cc, Instant start, Duration rtt,
                                                double seconds, Duration sample_every) {
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

}  // namespace
}  // namespace wrench::stack
