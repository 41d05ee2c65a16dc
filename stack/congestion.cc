// NewReno (RFC 5681) and CUBIC (RFC 9438) window arithmetic.
#include "stack/congestion.h"

#include <algorithm>
#include <cmath>

namespace wrench::stack {

absl::string_view CongestionAlgorithmName(CongestionAlgorithm a) {
  switch (a) {
    case CongestionAlgorithm::kNewReno: return "newreno";
    case CongestionAlgorithm::kCubic: return "cubic";
  }
  return "?";
}

std::unique_ptr<CongestionControl> MakeCongestionControl(CongestionAlgorithm a) {
  if (a == CongestionAlgorithm::kCubic) return std::make_unique<CubicCongestionControl>();
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

}  // namespace wrench::stack
