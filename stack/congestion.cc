// NewReno (RFC 5681), CUBIC (RFC 9438) and BBR window arithmetic.
#include "stack/congestion.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace wrench::stack {

absl::string_view CongestionAlgorithmName(CongestionAlgorithm a) {
  switch (a) {
    case CongestionAlgorithm::kNewReno: return "newreno";
    case CongestionAlgorithm::kCubic: return "cubic";
    case CongestionAlgorithm::kBbr: return "bbr";
  }
  return "?";
}

absl::StatusOr<CongestionAlgorithm> ParseCongestionAlgorithm(absl::string_view name) {
  for (CongestionAlgorithm a :
       {CongestionAlgorithm::kNewReno, CongestionAlgorithm::kCubic, CongestionAlgorithm::kBbr}) {
    if (name == CongestionAlgorithmName(a)) return a;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("\"", name, "\" is not a congestion control: expected newreno, cubic or bbr"));
}

std::unique_ptr<CongestionControl> MakeCongestionControl(CongestionAlgorithm a) {
  switch (a) {
    case CongestionAlgorithm::kCubic: return std::make_unique<CubicCongestionControl>();
    case CongestionAlgorithm::kBbr: return std::make_unique<BbrCongestionControl>();
    case CongestionAlgorithm::kNewReno: break;
  }
  return std::make_unique<NewRenoCongestionControl>();
}

void CongestionControl::Init(uint32_t mss) {
  w_.mss = std::max<uint32_t>(mss, 1);
  w_.cwnd = std::min<uint32_t>(10 * w_.mss, std::max<uint32_t>(2 * w_.mss, 14600));
  w_.ssthresh = 0x7fffffff;
}

void CongestionControl::Clamp() { w_.cwnd = std::clamp<uint32_t>(w_.cwnd, w_.mss, 0x3fffffff); }

// --- NewReno ---------------------------------------------------------------

void NewRenoCongestionControl::OnAck(Instant, uint32_t acked, Duration) {
  if (w_.cwnd < w_.ssthresh) {
    // RFC 5681 §3.1 eq. (2): cwnd += min(N, SMSS).
    w_.cwnd += std::min(acked, w_.mss);
  } else {
    // Byte counting (RFC 5681 §3.1, RFC 3465): one SMSS per cwnd of bytes acknowledged.
    bytes_acked_ += acked;
    if (bytes_acked_ >= w_.cwnd) {
      bytes_acked_ -= w_.cwnd;
      w_.cwnd += w_.mss;
    }
  }
  Clamp();
}

void NewRenoCongestionControl::OnCongestionEvent(Instant, uint32_t flight_size) {
  // RFC 5681 §3.1 eq. (4).
  w_.ssthresh = std::max<uint32_t>(flight_size / 2, 2 * w_.mss);
  bytes_acked_ = 0;
}

void NewRenoCongestionControl::OnRto(Instant, uint32_t flight_size, bool first_timeout) {
  // RFC 5681 §3.1: ssthresh from eq. (4) on the first timeout only; cwnd = LW = 1 SMSS.
  if (first_timeout) w_.ssthresh = std::max<uint32_t>(flight_size / 2, 2 * w_.mss);
  w_.cwnd = w_.mss;
  bytes_acked_ = 0;
}

// --- CUBIC -----------------------------------------------------------------

double CubicCongestionControl::WCubic(Duration t) const {
  double d = absl::ToDoubleSeconds(t) - k_;
  return kC * d * d * d + w_max_;  // RFC 9438 eq. (1)
}

void CubicCongestionControl::OnAck(Instant now, uint32_t acked, Duration rtt) {
  double mss = w_.mss;
  if (w_.cwnd < w_.ssthresh) {
    // Slow start as Linux runs it: cwnd grows by every byte acknowledged.
    w_.cwnd += acked;
    Clamp();
    return;
  }
  double cwnd = w_.cwnd / mss;
  if (epoch_start_ == absl::InfinitePast()) {
    // RFC 9438 §4.2: a congestion avoidance stage starts. Without an earlier
    // congestion event (W_max below cwnd), the curve starts at its plateau.
    epoch_start_ = now;
    if (w_max_ < cwnd) {  // mutate: equivalent < (W_max = cwnd gives K = 0 either way)
      w_max_ = cwnd;
      k_ = 0;
    } else {
      k_ = std::cbrt((w_max_ - cwnd) / kC);  // eq. (2), cwnd_epoch = cwnd
    }
    w_est_ = cwnd;
    cwnd_frac_ = 0;
  }
  double segs = acked / mss;
  // §4.3 Reno-friendly estimate: alpha_cubic = 3(1-beta)/(1+beta) until W_est
  // reaches W_max, then 1.
  double alpha = w_est_ >= w_max_ ? 1.0 : 3 * (1 - kBeta) / (1 + kBeta);
  w_est_ += alpha * segs / cwnd;
  Duration t = now - epoch_start_;
  double target;
  if (WCubic(t) < w_est_) {
    target = w_est_;  // Reno-friendly region: cwnd = W_est
    cwnd_frac_ = 0;
    w_.cwnd = static_cast<uint32_t>(std::min(target * mss, double{0x3fffffff}));
    Clamp();  // mutate: equivalent (W_est >= cwnd_epoch >= ssthresh >= 2 SMSS; capped above)
    return;
  }
  // §4.4/§4.5: target = W_cubic(t + RTT) within [cwnd, 1.5 cwnd]; cwnd grows by
  // (target - cwnd)/cwnd for each SMSS acknowledged.
  target = std::clamp(WCubic(t + rtt), cwnd, 1.5 * cwnd);
  cwnd_frac_ += (target - cwnd) / cwnd * segs;
  if (cwnd_frac_ >= 1.0 / mss) {
    uint32_t grow = static_cast<uint32_t>(cwnd_frac_ * mss);
    w_.cwnd += grow;
    cwnd_frac_ -= grow / mss;
  }
  Clamp();
}

void CubicCongestionControl::Reduce(Instant) {
  double cwnd = w_.cwnd / static_cast<double>(w_.mss);
  // §4.7 fast convergence: a flow whose W_max keeps shrinking gives up bandwidth.
  if (cwnd < w_last_max_) {
    w_max_ = cwnd * (1 + kBeta) / 2;
  } else {
    w_max_ = cwnd;
  }
  w_last_max_ = cwnd;
  epoch_start_ = absl::InfinitePast();
  // §4.6: ssthresh = cwnd * beta_cubic, at least 2 segments.
  w_.ssthresh = std::max<uint32_t>(static_cast<uint32_t>(w_.cwnd * kBeta), 2 * w_.mss);
}

void CubicCongestionControl::OnCongestionEvent(Instant now, uint32_t) { Reduce(now); }

void CubicCongestionControl::OnRto(Instant now, uint32_t, bool first_timeout) {
  // §4.8: as on a congestion event, then cwnd = 1 segment and slow start.
  if (first_timeout) Reduce(now);
  epoch_start_ = absl::InfinitePast();
  w_.cwnd = w_.mss;
}

// --- BBR -------------------------------------------------------------------

double BbrCongestionControl::bandwidth() const {
  return *std::max_element(bw_, bw_ + kBandwidthRounds);
}

uint32_t BbrCongestionControl::TargetCwnd() const {
  const double floor = 4.0 * w_.mss;
  // No model yet (no round trip measured): no limit.
  if (min_rtt_ == absl::InfiniteDuration() || bandwidth() == 0) return 0x3fffffff;
  const double gain = full_bw_reached_ ? kCwndGain : kStartupGain;
  const double bdp = bandwidth() * absl::ToDoubleSeconds(min_rtt_);
  return static_cast<uint32_t>(std::clamp(gain * bdp, floor, double{0x3fffffff}));
}

void BbrCongestionControl::OnDelivery(Instant now, const DeliverySample& s) {
  // The path's round trip: the smallest sample of the last 10 s (a newer sample
  // replaces one that old; there is no PROBE_RTT phase that drains the queue).
  if (s.rtt > absl::ZeroDuration() &&
      (s.rtt <= min_rtt_ || now - min_rtt_at_ > absl::Seconds(10))) {
    min_rtt_ = s.rtt;
    min_rtt_at_ = now;
  }
  if (round_start_ == absl::InfinitePast()) {
    round_start_ = now;
    round_start_delivered_ = s.delivered;
    round_end_delivered_ = s.delivered + s.inflight;
  } else if (s.delivered >= round_end_delivered_) {
    EndRound(now, s);
  }
  // The window (tcp_bbr.c's bbr_set_cwnd): held at what is in flight while
  // conserving, else grown by what was delivered, up to the target once the
  // bandwidth is known, without a limit before.
  if (conserving_ && s.delivered >= conservation_until_) conserving_ = false;
  uint64_t cwnd = w_.cwnd;
  if (conserving_) {
    cwnd = std::max<uint64_t>(cwnd, uint64_t{s.inflight} + s.acked);
  } else if (full_bw_reached_) {
    cwnd = std::min<uint64_t>(cwnd + s.acked, TargetCwnd());
  } else if (cwnd < TargetCwnd()) {
    cwnd += s.acked;
  }
  w_.cwnd = static_cast<uint32_t>(std::clamp<uint64_t>(cwnd, 4 * w_.mss, 0x3fffffff));
}

void BbrCongestionControl::EndRound(Instant now, const DeliverySample& s) {
  ++rounds_;
  const Duration interval = now - round_start_;
  // The slot of the round trip 10 ago is overwritten: its sample leaves the window.
  bw_[rounds_ % kBandwidthRounds] =
      interval > absl::ZeroDuration() ? static_cast<double>(s.delivered - round_start_delivered_) /
                                            absl::ToDoubleSeconds(interval)
                                      : 0;
  round_start_ = now;
  round_start_delivered_ = s.delivered;
  round_end_delivered_ = s.delivered + s.inflight;
  // Full bandwidth: three round trips in a row without a quarter more.
  if (full_bw_reached_) return;
  if (bandwidth() >= full_bw_ * kFullBandwidthGrowth) {
    full_bw_ = bandwidth();
    full_bw_count_ = 0;
  } else if (++full_bw_count_ >= kFullBandwidthRounds) {
    full_bw_reached_ = true;
  }
}

void BbrCongestionControl::OnCongestionEvent(Instant, uint32_t flight_size) {
  // Recovery starts: the window is what is in flight, for one round trip.
  prior_cwnd_ = std::max(prior_cwnd_, w_.cwnd);
  conserving_ = true;
  conservation_until_ = round_end_delivered_;
  w_.cwnd = std::max<uint32_t>(flight_size, 4 * w_.mss);
}

void BbrCongestionControl::OnRecoveryEnd() {
  w_.cwnd = std::max(w_.cwnd, prior_cwnd_);
  prior_cwnd_ = 0;
  conserving_ = false;
}

void BbrCongestionControl::OnRto(Instant, uint32_t, bool) {
  // The window grows back by what is delivered (the endpoint's loss state has no end
  // that would restore an earlier one).
  conserving_ = false;
  w_.cwnd = w_.mss;
}

}  // namespace wrench::stack
