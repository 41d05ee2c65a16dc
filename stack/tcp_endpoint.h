// The sans-I/O TCP endpoint (docs/ARCHITECTURE.md "Sans-I/O endpoint"): one connection's
// state machine per RFC 9293, driven by segments, ticks and application calls,
// each with the current time. It owns no socket and no clock; what it wants to
// send is pulled with Poll(), and NextDeadline() says when it next needs a tick.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "stack/congestion.h"
#include "stack/ip.h"
#include "stack/ring_buffer.h"
#include "stack/sack_scoreboard.h"
#include "stack/seq.h"
#include "stack/tcp_state.h"
#include "stack/tcp_wire.h"
#include "stack/time.h"

namespace wrench::stack {

struct FourTuple {
  IpAddress local_addr;
  uint16_t local_port = 0;
  IpAddress remote_addr;
  uint16_t remote_port = 0;
  bool operator==(const FourTuple&) const = default;
  template <typename H>
  friend H AbslHashValue(H h, const FourTuple& t) {
    return H::combine(std::move(h), t.local_addr, t.local_port, t.remote_addr, t.remote_port);
  }
};

// RFC 6528: ISN = M + F(4-tuple, secret), M a 4-microsecond clock and F SipHash-2-4
// keyed with `secret`. Tests inject their own generator through TcpConfig::isn.
uint32_t Rfc6528Isn(const FourTuple& t, Instant now, const std::array<uint64_t, 2>& secret);

struct TcpConfig {
  // Maximum segment size we accept (advertised in our SYN).
  uint16_t mss = 1460;
  // Bounded buffers, allocated once per connection.
  size_t send_buffer = 256 * 1024;
  size_t recv_buffer = 256 * 1024;
  // Offered in our SYN; used only when the peer offers them too (RFC 7323, RFC 2018).
  bool window_scaling = true;
  bool sack = true;
  bool timestamps = true;
  // TIME-WAIT lasts 2·MSL (RFC 9293 §3.4.2 suggests MSL = 2 minutes; Linux
  // holds TIME-WAIT for 60 s). Default 30 s, so TIME-WAIT is 60 s as on Linux.
  Duration msl = absl::Seconds(30);
  // The defaults are the `linux` profile's (stack/tcp_profile.h sets either profile).
  // RFC 6298: initial RTO 1 s and upper bound at least 60 s; its lower bound of 1 s
  // ("SHOULD") is the `rfc` profile's, Linux's TCP_RTO_MIN of 200 ms the default.
  Duration initial_rto = absl::Seconds(1);
  Duration min_rto = absl::Milliseconds(200);
  Duration max_rto = absl::Seconds(60);
  // Linux's RTO is SRTT + max(4*RTTVAR, min_rto) (tcp_set_rto: the floor bounds the
  // variance term); RFC 6298 §2.4 clamps the sum, max(SRTT + 4*RTTVAR, min_rto).
  bool min_rto_bounds_variance = true;
  // Congestion control: CUBIC (RFC 9438), as Linux, or NewReno (RFC 5681).
  CongestionAlgorithm congestion = CongestionAlgorithm::kCubic;
  // RFC 8985 RACK: time-based loss detection with a reordering window of min_RTT/4.
  bool rack = true;
  // RFC 8985 TLP: a probe after PTO = 2*SRTT (plus this allowance for the peer's
  // delayed ACK when one segment is in flight) instead of waiting for the RTO.
  bool tlp = true;
  Duration tlp_one_segment_allowance = absl::Milliseconds(200);
  // RFC 6675 DupThresh, and RFC 5681 §3.2's count of duplicate ACKs without SACK.
  int dup_thresh = 3;
  // RFC 6191 / Linux: a SYN for a connection in TIME-WAIT whose ISN lies beyond
  // RCV.NXT or whose timestamp is newer than TS.Recent ends the TIME-WAIT (the
  // owner then opens the new connection). Off, such a SYN gets a challenge ACK.
  bool time_wait_accepts_syn = true;
  // Delayed ACKs (RFC 9293 §3.8.6.3, RFC 5681 §4.2) as Linux does them: the first
  // `quickacks` segments are acknowledged at once, then every second full segment,
  // a segment that fills a hole at once, and otherwise within the timeout (Linux's
  // TCP_ATO_MIN). Off, every segment is acknowledged at once.
  bool delayed_ack = true;
  Duration delayed_ack_timeout = absl::Milliseconds(40);
  int quickacks = 16;
  // Segments the sender tracks in flight (the SACK scoreboard); 0 sizes it from
  // send_buffer for a 536-byte MSS. When all are in flight, new data waits for ACKs.
  size_t max_segments_in_flight = 0;
  // Retransmissions of one segment before the connection is given up (RFC 9293
  // §3.8.3 R2). SYN and SYN-ACK have their own limit, as on Linux.
  int syn_retries = 6;
  int max_retries = 15;
  // Out-of-order ranges held for reassembly; a segment making more is dropped.
  size_t max_ooo_ranges = 16;
  // RFC 5961 §7: challenge ACKs sent per second at most.
  int challenge_ack_limit = 100;
  // The connection's addresses, for the ISN and for logs only; the ports go on the wire.
  FourTuple tuple;
  // When set, replaces RFC 6528 ISN generation (tests make ISNs predictable).
  std::function<uint32_t(const FourTuple&, Instant)> isn;
};

enum class CloseReason : uint8_t {
  kNone,
  kNormal,          // both FINs exchanged (and TIME-WAIT, where ours was first)
  kAborted,         // the application aborted: we sent RST
  kReset,           // the peer sent an acceptable RST
  kRefused,         // RST in answer to our SYN
  kTimeout,         // retransmission limit reached
};

absl::string_view CloseReasonName(CloseReason r);

struct StateChange {
  TcpState from;
  TcpState to;
  absl::string_view cause;  // a static string: "SYN received", "FIN acked", ...
  Instant at;
};

class TcpEndpoint {
 public:
  using StateObserver = std::function<void(const StateChange&)>;

  explicit TcpEndpoint(TcpConfig config);
  TcpEndpoint(const TcpEndpoint&) = delete;
  TcpEndpoint& operator=(const TcpEndpoint&) = delete;

  void set_state_observer(StateObserver obs) { observer_ = std::move(obs); }

  // --- application calls (RFC 9293 §3.10.1 - §3.10.6) ---
  // Active open: CLOSED -> SYN-SENT.
  absl::Status Connect(Instant now);
  // Passive open: CLOSED -> LISTEN. The local port is config.tuple.local_port.
  absl::Status Listen(Instant now);
  // Queues bytes for sending; returns how many fit in the send buffer (0 when full).
  // An error when the connection can no longer send (after Close, or closed).
  absl::StatusOr<size_t> Send(absl::Span<const uint8_t> data);
  // The same, and in LISTEN an active open (RFC 9293 §3.10.2 SEND, LISTEN STATE):
  // with the foreign socket known (config.tuple.remote_port), the listener turns
  // active, chooses its ISS, queues the data and sends a SYN (LISTEN -> SYN-SENT).
  absl::StatusOr<size_t> Send(Instant now, absl::Span<const uint8_t> data);
  // Reads received, in-order bytes. Reading opens the receive window.
  size_t Receive(absl::Span<uint8_t> out);
  // Sends FIN after all queued data (half-close: receiving goes on).
  absl::Status Close(Instant now);
  // Sends RST where the state has a peer, and goes to CLOSED at once.
  void Abort(Instant now);

  // --- network and time ---
  void OnSegment(Instant now, const TcpRepr& seg);
  void OnTick(Instant now);
  // Hands every segment that is due now to `emit`. The repr's payload points into
  // the send buffer and is valid only during the call.
  void Poll(Instant now, absl::FunctionRef<void(const TcpRepr&)> emit);
  // When the endpoint next needs OnTick (kNever when it has no timer running).
  Instant NextDeadline() const;
  // Each timer's deadline (kNever when it is not running), for logs and the
  // fuzzers' invariant checks; NextDeadline() is the earliest of them.
  struct Timers {
    Instant rto, persist, time_wait, rack, tlp, delayed_ack;
  };
  const Timers& timers() const { return timers_; }
  // True when Poll would emit something now.
  bool HasPendingOutput() const;
  // SND.UNA + min(SND.WND, cwnd): where sending new data stops.
  SeqNum SendLimit() const;
  // RFC 6191: in TIME-WAIT, whether `syn` (a SYN without ACK) may start a new
  // incarnation of the connection: its ISN lies beyond RCV.NXT, or its timestamp
  // is newer than TS.Recent. False in every other state and when the config forbids it.
  bool TimeWaitAcceptsSyn(const TcpRepr& syn) const;

  // --- observation ---
  TcpState state() const { return state_; }
  CloseReason close_reason() const { return close_reason_; }
  // Human-readable reason the connection ended abnormally ("retransmission limit
  // (6 SYN retries) reached"), empty otherwise.
  const std::string& error() const { return error_; }
  size_t readable() const { return rcv_buf_.size(); }
  size_t send_queue() const { return snd_buf_.size(); }   // unacked + unsent bytes
  size_t send_space() const { return snd_buf_.free(); }
  // The peer's FIN arrived and every byte before it was read.
  bool eof() const { return rcv_.fin_received && rcv_buf_.empty(); }
  bool fin_received() const { return rcv_.fin_received; }
  // Our FIN was acknowledged: every byte we sent arrived.
  bool fin_acked() const { return FinAcked(); }
  const TcpConfig& config() const { return cfg_; }
  const FourTuple& tuple() const { return cfg_.tuple; }

  // The transmission control block, with RFC 9293 §3.3.1 names, for tests, logs
  // and the fuzzers' invariant checks.
  struct Tcb {
    SeqNum snd_una, snd_nxt, iss;
    uint32_t snd_wnd = 0;   // scaled
    SeqNum snd_wl1, snd_wl2;
    uint32_t max_snd_wnd = 0;  // MAX.SND.WND, RFC 5961 §5.2
    SeqNum rcv_nxt, irs;
    uint32_t rcv_wnd = 0;   // what we advertise, scaled
    uint8_t snd_wscale = 0, rcv_wscale = 0;
    uint16_t snd_mss = 536;  // largest payload we send
    bool wscale_ok = false, sack_ok = false, ts_ok = false;
    Duration srtt = absl::ZeroDuration(), rttvar = absl::ZeroDuration(), rto;
    uint32_t cwnd = 0, ssthresh = 0;
    // RFC 7323 §4.3: the TSval to echo, and the ACK field we last sent.
    uint32_t ts_recent = 0;
    SeqNum last_ack_sent;
  };
  const Tcb& tcb() const { return tcb_; }
  // Bytes delivered to the application so far, and sent by it.
  uint64_t bytes_received() const { return bytes_received_; }
  uint64_t bytes_acked() const { return bytes_acked_; }
  int retransmissions() const { return rec_.retransmissions; }
  // Loss recovery as Linux names its states (tcp_ca_state): open, fast recovery
  // (RFC 6675 / RFC 6582 with PRR) or loss (after a retransmission timeout).
  enum class Recovery : uint8_t { kOpen, kRecovery, kLoss };
  Recovery recovery() const { return rec_.state; }
  // Counters of how losses were repaired, for tests and logs.
  struct LossStats {
    int fast_recoveries = 0;   // recovery episodes entered on duplicate ACKs, SACK or RACK
    int timeouts = 0;          // retransmission timer expirations with data outstanding
    int tlp_probes = 0;        // tail loss probes sent
    int rack_marked = 0;       // segments RACK deemed lost
    int dsacks = 0;            // D-SACK blocks received
  };
  const LossStats& loss_stats() const { return loss_stats_; }
  const CongestionControl& congestion() const { return *cc_; }

 private:
  // RFC 9293 §3.10.7 SEGMENT ARRIVES, one function per state group and step.
  void SegmentArrivesClosed(const TcpRepr& seg);
  void SegmentArrivesListen(Instant now, const TcpRepr& seg);
  void SegmentArrivesSynSent(Instant now, const TcpRepr& seg);
  bool CheckSequenceNumber(Instant now, const TcpRepr& seg);      // first
  bool CheckRstBit(Instant now, const TcpRepr& seg);              // second
  bool CheckSynBit(Instant now, const TcpRepr& seg);              // fourth
  bool CheckAckField(Instant now, const TcpRepr& seg);            // fifth
  void ProcessSegmentText(Instant now, const TcpRepr& seg);       // seventh
  void CheckFinBit(Instant now, const TcpRepr& seg);              // eighth

  void AcceptSynOptions(const TcpRepr& seg);
  void UpdateTimestamps(const TcpRepr& seg);
  void AdvanceUna(Instant now, SeqNum ack, const TcpRepr& seg);
  void UpdateSendWindow(const TcpRepr& seg, bool advanced_una);
  void DeliverInOrder();
  bool HoldOutOfOrder(SeqNum seq, absl::Span<const uint8_t> data);
  void QueueRst(const TcpRepr& answering, SeqNum seq, std::optional<SeqNum> ack);
  void SetState(Instant now, TcpState to, absl::string_view cause);
  // RFC 9293 §3.3.2: choose the ISS (RFC 6528) and start the send sequence there.
  void ChooseIss(Instant now);
  // §3.10.7.4: back to LISTEN after a passive open, forgetting that connection.
  void ReturnToListen(Instant now, absl::string_view cause);
  // The per-connection state as a new endpoint has it (the constructor's, and LISTEN's again).
  void ResetConnection();
  // §3.10.7.4: enter TIME-WAIT and start the 2 MSL timer.
  void EnterTimeWait(Instant now, absl::string_view cause);
  void Terminate(Instant now, CloseReason why, absl::string_view cause, std::string error = {});

  void OnRetransmitTimeout(Instant now);
  void OnPersistTimeout(Instant now);
  void UpdateRtt(Instant now, Duration sample);
  void RestartRetransmitTimer(Instant now);

  // Loss detection and recovery (RFC 6675, RFC 6582, RFC 8985, RFC 6937).
  struct AckInfo {
    SeqNum prior_una;
    uint32_t prior_sacked = 0;
    bool advanced = false;
    bool dupack = false;
    bool dsack = false;
  };
  void ProcessSack(Instant now, const TcpRepr& seg, AckInfo& info);
  void RackUpdate(Instant now, const SentSegment& s);
  Duration RackReorderWindow() const;
  void RackDetectLoss(Instant now);
  void DetectLoss(Instant now, const AckInfo& info);
  void EnterFastRecovery(Instant now);
  void PrrOnAck(const AckInfo& info);
  void OnLossProbeTimeout(Instant now);
  void ScheduleLossProbe(Instant now);
  void TlpOnAck(Instant now, const TcpRepr& seg, const AckInfo& info);
  uint32_t NewlyDelivered(const AckInfo& info) const;
  void ReportDelivery(Instant now, const AckInfo& info);
  void SyncCongestion() { tcb_.cwnd = cc_->cwnd(); tcb_.ssthresh = cc_->ssthresh(); }
  uint32_t Pipe() const;
  bool RetransmitSegment(Instant now, size_t i, absl::FunctionRef<void(const TcpRepr&)> emit);
  void ScheduleAck(Instant now, uint32_t len, bool filled_hole);

  bool SynSentOrAcked() const;
  uint32_t FlightSize() const;
  uint32_t AdvertisedWindow() const;  // scaled value for the header
  uint32_t ReceiveWindow() const;     // bytes we can take beyond rcv_nxt
  SeqNum DataStartSeq() const;        // sequence number of the first byte in snd_buf_
  SeqNum SendLimitSeq() const;        // one past the last sequence number we may send
  void StartActiveOpen(Instant now, absl::string_view cause);
  bool FinAcked() const { return snd_.fin_requested && tcb_.snd_una > snd_.fin_seq; }
  // Not `snd_una > iss`: after 2^31 bytes that modular comparison turns false.
  bool SynAcked() const { return snd_.syn_acked; }
  uint32_t EmitAt(Instant now, SeqNum seq, uint32_t max_payload,
                  absl::FunctionRef<void(const TcpRepr&)> emit);
  uint32_t TsNow(Instant now) const;
  void FillHeader(Instant now, TcpRepr& r, SeqNum seq, TcpFlags flags);
  void FillSackBlocks(TcpRepr& r) const;
  void EmitData(Instant now, absl::FunctionRef<void(const TcpRepr&)> emit);
  void MaybeWindowUpdate();
  bool ChallengeAckAllowed(Instant now);

  TcpConfig cfg_;
  TcpState state_ = TcpState::kClosed;
  // The foreign port the passive OPEN named (0: any), restored on a return to LISTEN.
  uint16_t listen_remote_port_ = 0;
  Tcb tcb_;
  StateObserver observer_;
  CloseReason close_reason_ = CloseReason::kNone;
  std::string error_;

  RingBuffer snd_buf_;  // from DataStartSeq(): unacked, then unsent bytes
  RingBuffer rcv_buf_;  // in-order bytes not yet read; out-of-order ones are written past size()
  uint64_t bytes_received_ = 0, bytes_acked_ = 0;

  // The sender's state beside the TCB's send sequence variables (RFC 9293 §3.3.1).
  struct Sender {
    bool passive = false;        // opened by a passive OPEN (LISTEN)
    bool syn_acked = false;
    bool syn_due = false;        // SYN or SYN-ACK due now
    bool fin_requested = false;  // the application called Close
    SeqNum fin_seq;              // our FIN's sequence number, fixed by Close
    SeqNum cursor;               // next sequence number to transmit (<= SND.NXT after a timeout)
    bool retransmit_one = false;  // after a timeout: resend at SND.UNA whatever the windows say
    // Zero-window probing (RFC 9293 §3.8.6.1).
    bool window_probe_due = false;
    int unanswered_probes = 0;
    Duration persist_backoff;
    uint32_t ts_offset = 0;      // added to our clock in TSval (RFC 7323 §5.4)
  } snd_;

  // The receiver's state beside the TCB's receive sequence variables.
  struct Receiver {
    bool fin_received = false;
    bool ack_needed = false;
    bool window_update_needed = false;
    int dup_acks_owed = 0;
    SeqNum last_adv_edge;        // RCV.NXT + the window we last advertised
    // Out-of-order ranges held in rcv_buf_, sorted, relative to rcv_nxt at arrival.
    // `arrival` orders the ranges by their newest segment, for the SACK blocks.
    struct Range { SeqNum left, right; uint64_t arrival = 0; };
    std::array<Range, 32> ooo{};
    size_t ooo_count = 0;
    uint64_t ooo_arrivals = 0;
    std::optional<SeqNum> ooo_fin;  // a FIN that arrived ahead of data
    // Delayed ACKs.
    uint32_t unacked = 0;        // in-order bytes received since our last ACK
    uint32_t mss = 0;            // the largest segment received (Linux's rcv_mss)
    int quickacks_left = 0;
  } rcv_;

  // One deadline per timer, all reported through NextDeadline().
  Timers timers_{kNever, kNever, kNever, kNever, kNever, kNever};

  // RTT measurement (RFC 6298; SRTT, RTTVAR and RTO are in the TCB).
  struct RttSampler {
    bool sampled = false;
    bool timing = false;         // Karn: a segment is being timed
    SeqNum seq;
    Instant start;
  } rtt_;

  // Retransmission and loss recovery (RFC 6298, RFC 5681, RFC 6582, RFC 6675, RFC 6937).
  struct LossRecovery {
    Recovery state = Recovery::kOpen;
    int retries = 0;             // consecutive timeouts of the oldest segment
    int retransmissions = 0;
    int dup_acks = 0;
    SeqNum recover;              // RFC 6582 / RFC 6675 RecoveryPoint
    bool recover_set = false;
    // RFC 6937 PRR.
    uint32_t prr_delivered = 0, prr_out = 0, recover_fs = 0;
    uint64_t delivered = 0;  // bytes acknowledged or SACKed since the connection opened
  } rec_;
  std::unique_ptr<CongestionControl> cc_;
  SackScoreboard sb_;
  LossStats loss_stats_;
  // RFC 8985 RACK.
  struct Rack {
    Instant xmit_ts = absl::InfinitePast();
    SeqNum end_seq;
    Duration rtt = absl::ZeroDuration();
    Duration min_rtt = absl::InfiniteDuration();
    SeqNum fack;
    bool fack_set = false;
    bool reordering_seen = false;
  } rack_;
  // RFC 8985 TLP.
  struct Tlp {
    bool in_flight = false;
    bool retransmitted = false;
    SeqNum end_seq;
    bool probe_due = false;      // the PTO fired: one probe segment goes out
  } tlp_;

  // Challenge ACK rate limit (RFC 5961 §7).
  struct ChallengeAcks {
    Instant window_start = absl::InfinitePast();
    int sent = 0;
  } challenge_;

  // RSTs owed to the peer (answers to segments for a connection that is not there).
  struct RstOut { uint16_t src_port, dst_port; SeqNum seq; std::optional<SeqNum> ack; };
  struct RstQueue {
    std::array<RstOut, 4> queue{};
    size_t count = 0;
  } rst_;
};

}  // namespace wrench::stack
