#include "stack/tcp_profile.h"

#include "absl/strings/str_cat.h"

namespace wrench::stack {

absl::StatusOr<TcpProfile> ParseTcpProfile(absl::string_view name) {
  if (name == "linux") return TcpProfile::kLinux;
  if (name == "rfc") return TcpProfile::kRfc;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown TCP profile '", name, "': expected 'linux' or 'rfc'"));
}

absl::string_view TcpProfileName(TcpProfile p) { return p == TcpProfile::kLinux ? "linux" : "rfc"; }

void ApplyProfile(TcpProfile p, TcpConfig& cfg) {
  // Both: initial RTO 1 s (RFC 6298 §2.1; Linux TCP_TIMEOUT_INIT), maximum 60 s
  // (RFC 6298 §2.5) against Linux's 120 s, so the two differ only where stated.
  cfg.initial_rto = absl::Seconds(1);
  cfg.max_rto = absl::Seconds(60);
  cfg.dup_thresh = 3;
  if (p == TcpProfile::kLinux) {
    cfg.min_rto = absl::Milliseconds(200);  // TCP_RTO_MIN
    cfg.min_rto_bounds_variance = true;
    cfg.congestion = CongestionAlgorithm::kCubic;
    cfg.rack = true;
    cfg.tlp = true;
    cfg.tlp_one_segment_allowance =
        absl::Milliseconds(200);  // TCP_RTO_MIN, as tcp_schedule_loss_probe
    cfg.time_wait_accepts_syn = true;
    cfg.delayed_ack = true;
    cfg.delayed_ack_timeout = absl::Milliseconds(40);  // TCP_ATO_MIN
    cfg.quickacks = 16;                                 // TCP_MAX_QUICKACKS
  } else {
    cfg.min_rto = absl::Seconds(1);  // RFC 6298 §2.4
    cfg.min_rto_bounds_variance = false;
    cfg.congestion = CongestionAlgorithm::kNewReno;
    cfg.rack = false;
    cfg.tlp = false;
    cfg.tlp_one_segment_allowance = absl::Milliseconds(200);
    cfg.time_wait_accepts_syn =
        false;  // RFC 9293 §3.10.7.4: a SYN in TIME-WAIT gets a challenge ACK
    cfg.delayed_ack = false;            // every segment acknowledged at once
  }
}

}  // namespace wrench::stack
