// Congestion control behind one small interface: the endpoint reports what the
// network did (bytes newly acknowledged, a congestion event, a retransmission
// timeout) and reads back cwnd and ssthresh. Loss detection and recovery (SACK,
// RACK, PRR) stay in the endpoint; the algorithm only decides the window.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "stack/time.h"

namespace wrench::stack {

enum class CongestionAlgorithm : uint8_t {
  kNewReno,  // RFC 5681 + RFC 6582
  kCubic,    // RFC 9438
  kBbr,      // BBR's model of the path (draft-cardwell-iccrg-bbr-congestion-control), window only
};

absl::string_view CongestionAlgorithmName(CongestionAlgorithm a);
// "newreno", "cubic" or "bbr"; anything else is an error that names them.
absl::StatusOr<CongestionAlgorithm> ParseCongestionAlgorithm(absl::string_view name);

// What one ACK delivered, for an algorithm that models the path (BBR).
struct DeliverySample {
  uint64_t delivered = 0;  // bytes delivered since the connection opened: acknowledged or SACKed
  uint32_t acked = 0;      // of them, newly by this ACK
  uint32_t inflight = 0;   // bytes in flight after it (RFC 6675 pipe)
  Duration rtt = absl::ZeroDuration();  // the newest round-trip sample (zero: none yet)
};

// The window state the algorithm owns, in bytes.
struct CongestionWindow {
  uint32_t cwnd = 0;
  uint32_t ssthresh = 0x7fffffff;
  uint32_t mss = 536;  // SMSS
};

class CongestionControl {
 public:
  virtual ~CongestionControl() = default;
  CongestionAlgorithm algorithm() const { return algorithm_; }

  // The connection is synchronized: SMSS is known, the initial window set.
  // RFC 6928: IW = min(10*MSS, max(2*MSS, 14600)).
  void Init(uint32_t mss);
  // `acked` bytes newly acknowledged outside loss recovery; `rtt` the smoothed
  // round-trip time (zero before the first sample).
  virtual void OnAck(Instant now, uint32_t acked, Duration rtt) = 0;
  // Loss detected by duplicate ACKs, SACK or RACK (entering fast recovery):
  // ssthresh is set for the reduction; the endpoint's PRR brings cwnd down to it.
  virtual void OnCongestionEvent(Instant now, uint32_t flight_size) = 0;
  // The retransmission timer expired: ssthresh as for a congestion event (unless
  // the timer had already fired for this loss), cwnd one segment (RFC 5681 §3.1).
  virtual void OnRto(Instant now, uint32_t flight_size, bool first_timeout) = 0;
  // Every acceptable ACK once the connection is synchronized, in recovery too.
  virtual void OnDelivery(Instant /*now*/, const DeliverySample& /*s*/) {}
  // True when the algorithm sets cwnd during recovery itself (BBR): the endpoint's
  // PRR then leaves it alone.
  virtual bool SetsWindowInRecovery() const { return false; }
  // Recovery ended (RFC 6937 §3.1: cwnd = ssthresh).
  virtual void OnRecoveryEnd() { w_.cwnd = w_.ssthresh; }
  // PRR (RFC 6937) sets the window during recovery.
  void SetCwnd(uint32_t cwnd) { w_.cwnd = cwnd; }

  uint32_t cwnd() const { return w_.cwnd; }
  uint32_t ssthresh() const { return w_.ssthresh; }
  uint32_t mss() const { return w_.mss; }

 protected:
  explicit CongestionControl(CongestionAlgorithm a) : algorithm_(a) {}
  void Clamp();
  CongestionAlgorithm algorithm_;
  CongestionWindow w_;
};

std::unique_ptr<CongestionControl> MakeCongestionControl(CongestionAlgorithm a);

// RFC 5681 §3.1 slow start and congestion avoidance; ssthresh = max(FlightSize/2,
// 2*SMSS) on loss (eq. 4).
class NewRenoCongestionControl final : public CongestionControl {
 public:
  NewRenoCongestionControl() : CongestionControl(CongestionAlgorithm::kNewReno) {}
  void OnAck(Instant now, uint32_t acked, Duration rtt) override;
  void OnCongestionEvent(Instant now, uint32_t flight_size) override;
  void OnRto(Instant now, uint32_t flight_size, bool first_timeout) override;

 private:
  uint32_t bytes_acked_ = 0;  // RFC 5681 §3.1 byte counting in congestion avoidance
};

// RFC 9438 CUBIC: W_cubic(t) = C*(t-K)^3 + W_max with C = 0.4 and beta_cubic = 0.7,
// fast convergence (§4.7) and the Reno-friendly region (§4.3).
class CubicCongestionControl final : public CongestionControl {
 public:
  static constexpr double kC = 0.4;
  static constexpr double kBeta = 0.7;

  CubicCongestionControl() : CongestionControl(CongestionAlgorithm::kCubic) {}
  void OnAck(Instant now, uint32_t acked, Duration rtt) override;
  void OnCongestionEvent(Instant now, uint32_t flight_size) override;
  void OnRto(Instant now, uint32_t flight_size, bool first_timeout) override;

  // For tests: the curve's parameters since the last congestion event, in segments.
  double w_max() const { return w_max_; }
  double k() const { return k_; }
  // W_cubic(t) in segments, t measured from the start of the congestion avoidance epoch.
  double WCubic(Duration t) const;

 private:
  void Reduce(Instant now);
  double w_max_ = 0;        // segments
  double w_last_max_ = 0;   // segments, for fast convergence
  double k_ = 0;            // seconds
  double w_est_ = 0;        // segments, the Reno-friendly estimate
  double cwnd_frac_ = 0;    // fractional segments gathered in congestion avoidance
  Instant epoch_start_ = absl::InfinitePast();  // InfinitePast: no epoch yet
};

// BBR's model (draft-cardwell-iccrg-bbr-congestion-control-02, Linux's tcp_bbr.c),
// for the window alone, since the endpoint does not pace: the bottleneck bandwidth
// is the largest delivery rate of the last 10 round trips, measured over each round
// trip; the path's round trip the smallest sample of the last 10 s. cwnd grows as in
// slow start up to 2.885 * BDP until the bandwidth stops growing by a quarter for
// three round trips, then stays at 2 * BDP. Loss does not shrink the model: entering
// recovery holds cwnd at what is in flight for one round trip (packet conservation),
// and its end restores the window from before; a timeout sets cwnd to one segment,
// which then grows back by what is delivered.
class BbrCongestionControl final : public CongestionControl {
 public:
  static constexpr double kStartupGain = 2.885;  // 2 / ln 2
  static constexpr double kCwndGain = 2.0;
  static constexpr int kBandwidthRounds = 10;
  static constexpr int kFullBandwidthRounds = 3;
  static constexpr double kFullBandwidthGrowth = 1.25;

  BbrCongestionControl() : CongestionControl(CongestionAlgorithm::kBbr) {}
  void OnAck(Instant, uint32_t, Duration) override {}
  void OnCongestionEvent(Instant now, uint32_t flight_size) override;
  void OnRto(Instant now, uint32_t flight_size, bool first_timeout) override;
  void OnDelivery(Instant now, const DeliverySample& s) override;
  bool SetsWindowInRecovery() const override { return true; }
  void OnRecoveryEnd() override;

  // The model, for tests and logs.
  double bandwidth() const;  // bytes per second; 0 before the first round trip ends
  Duration min_rtt() const { return min_rtt_; }
  bool full_bandwidth_reached() const { return full_bw_reached_; }
  uint64_t round_count() const { return rounds_; }
  // cwnd's goal: gain * bandwidth * min_rtt, at least 4 segments; without a model
  // yet, no limit.
  uint32_t TargetCwnd() const;

 private:
  void EndRound(Instant now, const DeliverySample& s);

  // Round trips: one ends when what was delivered at its start plus what was then in
  // flight has been delivered.
  uint64_t rounds_ = 0;
  uint64_t round_end_delivered_ = 0;
  Instant round_start_ = absl::InfinitePast();
  uint64_t round_start_delivered_ = 0;
  // Delivery rate per round trip (bytes per second), the last kBandwidthRounds.
  double bw_[kBandwidthRounds] = {};
  Duration min_rtt_ = absl::InfiniteDuration();
  Instant min_rtt_at_ = absl::InfinitePast();
  double full_bw_ = 0;
  int full_bw_count_ = 0;
  bool full_bw_reached_ = false;
  uint32_t prior_cwnd_ = 0;          // before recovery
  uint64_t conservation_until_ = 0;  // delivered: packet conservation until then
  bool conserving_ = false;
};

}  // namespace wrench::stack
