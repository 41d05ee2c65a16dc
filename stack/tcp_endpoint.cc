// The TCP endpoint state machine. Segment processing follows RFC 9293 §3.10.7
// step by step (one function per step), with RFC 5961 for RST, SYN and ACK
// acceptance, RFC 6298 for the retransmission timer, RFC 7323 for window scaling
// and timestamps, RFC 5681 for fast retransmit, RFC 6675 for SACK-based loss
// recovery (NewReno, RFC 6582, without SACK), RFC 8985 RACK-TLP for time-based loss
// detection, RFC 6937 PRR for the window during recovery; stack/congestion.h
// holds the congestion control algorithms.
#include "stack/tcp_endpoint.h"

#include <algorithm>
#include <cstring>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"

namespace wrench::stack {
namespace {

// SipHash-2-4 (Aumasson & Bernstein), the keyed hash RFC 6528 asks for as F().
uint64_t Rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

uint64_t SipHash24(const std::array<uint64_t, 2>& key, absl::Span<const uint8_t> in) {
  uint64_t v0 = 0x736f6d6570736575ULL ^ key[0], v1 = 0x646f72616e646f6dULL ^ key[1];
  uint64_t v2 = 0x6c7967656e657261ULL ^ key[0], v3 = 0x7465646279746573ULL ^ key[1];
  auto round = [&] {
    v0 += v1; v1 = Rotl(v1, 13); v1 ^= v0; v0 = Rotl(v0, 32);
    v2 += v3; v3 = Rotl(v3, 16); v3 ^= v2;
    v0 += v3; v3 = Rotl(v3, 21); v3 ^= v0;
    v2 += v1; v1 = Rotl(v1, 17); v1 ^= v2; v2 = Rotl(v2, 32);
  };
  size_t full = in.size() / 8 * 8;
  for (size_t i = 0; i < full; i += 8) {
    uint64_t m;
    std::memcpy(&m, in.data() + i, 8);
    v3 ^= m; round(); round(); v0 ^= m;
  }
  uint64_t last = static_cast<uint64_t>(in.size()) << 56;
  for (size_t i = full; i < in.size(); ++i)
    last |= static_cast<uint64_t>(in[i]) << (8 * (i - full));
  v3 ^= last; round(); round(); v0 ^= last;
  v2 ^= 0xff;
  round(); round(); round(); round();
  return v0 ^ v1 ^ v2 ^ v3;
}

const std::array<uint64_t, 2>& ProcessSecret() {
  static const std::array<uint64_t, 2> secret = [] {
    absl::BitGen gen;
    return std::array<uint64_t, 2>{absl::Uniform<uint64_t>(gen), absl::Uniform<uint64_t>(gen)};
  }();
  return secret;
}

// States in which the peer may still send us data (RFC 9293 §3.10.7.4 step 7).
bool AcceptsText(TcpState s) {
  return s == TcpState::kEstablished || s == TcpState::kFinWait1 || s == TcpState::kFinWait2;
}

// States in which we may still send data or our FIN, or retransmit them: the
// connection is synchronized and our FIN, if sent, is not yet acknowledged.
bool SendsData(TcpState s) {
  switch (s) {
    case TcpState::kEstablished:
    case TcpState::kCloseWait:
    case TcpState::kFinWait1:
    case TcpState::kClosing:
    case TcpState::kLastAck:
      return true;
    default:
      return false;
  }
}

constexpr uint32_t kTimestampOptionLen = 12;  // with its two NOPs of padding

}  // namespace

uint32_t Rfc6528Isn(const FourTuple& t, Instant now, const std::array<uint64_t, 2>& secret) {
  uint8_t buf[36];  // mutate: equivalent 36 (a larger buffer holds the same bytes)
  size_t n = 0;
  auto put = [&](absl::Span<const uint8_t> b) {
    std::memcpy(buf + n, b.data(), b.size());
    n += b.size();
  };
  put(t.local_addr.bytes());
  put(t.remote_addr.bytes());
  uint8_t ports[4] = {uint8_t(t.local_port >> 8), uint8_t(t.local_port),
                      uint8_t(t.remote_port >> 8), uint8_t(t.remote_port)};
  put(ports);
  // M: a timer ticking every 4 microseconds (RFC 6528 §3).
  uint32_t m = static_cast<uint32_t>(absl::ToInt64Microseconds(now - absl::UnixEpoch()) / 4);
  return m + static_cast<uint32_t>(SipHash24(secret, {buf, n}));
}

absl::string_view CloseReasonName(CloseReason r) {
  switch (r) {
    case CloseReason::kNone: return "none";
    case CloseReason::kNormal: return "normal";
    case CloseReason::kAborted: return "aborted";
    case CloseReason::kReset: return "reset";
    case CloseReason::kRefused: return "refused";
    case CloseReason::kTimeout: return "timeout";
  }
  return "?";
}

namespace {
// The scoreboard's records: one per segment in flight, enough for the whole send
// buffer in 536-byte segments unless the config says otherwise.
size_t ScoreboardCapacity(const TcpConfig& c) {
  if (c.max_segments_in_flight > 0) return c.max_segments_in_flight;
  return std::clamp<size_t>(c.send_buffer / 536 + 8, 16, 8192);
}
}  // namespace

TcpEndpoint::TcpEndpoint(TcpConfig config)
    : cfg_(std::move(config)),
      snd_buf_(std::max<size_t>(cfg_.send_buffer, 1)),
      rcv_buf_(std::max<size_t>(cfg_.recv_buffer, 1)),
      sb_(0) {  // mutate: equivalent 0 (ResetConnection sizes the scoreboard)
  cfg_.dup_thresh = std::max(cfg_.dup_thresh, 1);
  cfg_.max_ooo_ranges = std::min(cfg_.max_ooo_ranges, rcv_.ooo.size());
  if (!cfg_.window_scaling) rcv_buf_ = RingBuffer(std::min<size_t>(rcv_buf_.capacity(), 0xffff));
  ResetConnection();
}

// Everything one connection learns or moves, as a new endpoint starts with it: the
// TCB, the sender's and receiver's variables, the timers, the RTT estimator, loss
// recovery, congestion control, the scoreboard, RACK, TLP and the challenge ACK
// count. The buffers are emptied; the config and how the endpoint was opened stay.
void TcpEndpoint::ResetConnection() {
  tcb_ = Tcb{};
  tcb_.rto = cfg_.initial_rto;
  // The smallest shift that lets the whole receive buffer be advertised (RFC 7323 §2.3).
  uint8_t ws = 0;
  while (ws < 14 && (rcv_buf_.capacity() >> ws) > 0xffff) ++ws;
  // mutate: equivalent 0 (AcceptSynOptions zeroes it unused)
  tcb_.rcv_wscale = cfg_.window_scaling ? ws : 0;
  const bool passive = snd_.passive;
  snd_ = Sender{};
  snd_.passive = passive;
  rcv_ = Receiver{};
  rcv_.quickacks_left = cfg_.quickacks;
  timers_ = Timers{kNever, kNever, kNever, kNever, kNever, kNever};
  rtt_ = RttSampler{};
  rec_ = LossRecovery{};
  cc_ = MakeCongestionControl(cfg_.congestion);
  sb_ = SackScoreboard(ScoreboardCapacity(cfg_));
  loss_stats_ = LossStats{};
  rack_ = Rack{};
  tlp_ = Tlp{};
  challenge_ = ChallengeAcks{};
  snd_buf_.Consume(snd_buf_.size());
  // mutate: equivalent del (SYN-RECEIVED takes no text: it is empty)
  rcv_buf_.Consume(rcv_buf_.size());
}

// ---------------------------------------------------------------------------
// Application calls.

absl::Status TcpEndpoint::Connect(Instant now) {
  if (state_ != TcpState::kClosed) {
    return absl::FailedPreconditionError(absl::StrCat("connect in ", StateName(state_)));
  }
  StartActiveOpen(now, "active open");
  return absl::OkStatus();
}

void TcpEndpoint::StartActiveOpen(Instant now, absl::string_view cause) {
  snd_.passive = false;
  ChooseIss(now);
  snd_.syn_due = true;
  SetState(now, TcpState::kSynSent, cause);
}

absl::Status TcpEndpoint::Listen(Instant now) {
  if (state_ != TcpState::kClosed) {
    return absl::FailedPreconditionError(absl::StrCat("listen in ", StateName(state_)));
  }
  snd_.passive = true;
  listen_remote_port_ = cfg_.tuple.remote_port;
  SetState(now, TcpState::kListen, "passive open");
  return absl::OkStatus();
}

absl::StatusOr<size_t> TcpEndpoint::Send(absl::Span<const uint8_t> data) {
  switch (state_) {
    case TcpState::kSynSent:
    case TcpState::kSynReceived:
    case TcpState::kEstablished:
    case TcpState::kCloseWait:
      if (snd_.fin_requested) break;
      return snd_buf_.Append(data);
    case TcpState::kListen:
      return absl::FailedPreconditionError(
          "cannot send in LISTEN without the time: Send(now, data) opens actively");
    default:
      break;
  }
  return absl::FailedPreconditionError(
      absl::StrCat("cannot send in ", StateName(state_), snd_.fin_requested ? " after close" : ""));
}

// §3.10.2 SEND, LISTEN STATE: "If the foreign socket is specified, then change the
// connection from passive to active, select an ISS. Send a SYN segment ... Enter
// SYN-SENT state. Data associated with SEND may be sent with SYN segment or queued
// for transmission after entering ESTABLISHED state." The data waits for the
// handshake, as after Connect. "If the foreign socket is not specified, then return
// 'error: foreign socket unspecified'."
absl::StatusOr<size_t> TcpEndpoint::Send(Instant now, absl::Span<const uint8_t> data) {
  if (state_ != TcpState::kListen) return Send(data);
  if (cfg_.tuple.remote_port == 0) {
    return absl::FailedPreconditionError("cannot send in LISTEN: foreign socket unspecified");
  }
  StartActiveOpen(now, "send on a listener (active open)");
  return snd_buf_.Append(data);
}

size_t TcpEndpoint::Receive(absl::Span<uint8_t> out) {
  size_t n = rcv_buf_.Read(out);
  bytes_received_ += n;
  if (n > 0) MaybeWindowUpdate();
  return n;
}

// RFC 9293 §3.8.6.2.2 (receiver SWS avoidance): announce a larger window only when
// it has grown by min(half the buffer, one segment) since we last advertised it.
void TcpEndpoint::MaybeWindowUpdate() {
  if (!AcceptsText(state_)) return;
  uint32_t wnd = ReceiveWindow();
  uint32_t adv = (wnd >> tcb_.rcv_wscale) << tcb_.rcv_wscale;
  SeqNum edge = tcb_.rcv_nxt + adv;
  uint32_t threshold = static_cast<uint32_t>(std::min<size_t>(rcv_buf_.capacity() / 2, cfg_.mss));
  if (edge - rcv_.last_adv_edge >= static_cast<int32_t>(threshold))
    rcv_.window_update_needed = true;
}

absl::Status TcpEndpoint::Close(Instant now) {
  switch (state_) {
    case TcpState::kClosed:
      return absl::FailedPreconditionError("connection does not exist");
    case TcpState::kListen:
    case TcpState::kSynSent:
      Terminate(now, CloseReason::kNormal, "close");
      return absl::OkStatus();
    case TcpState::kSynReceived:
    case TcpState::kEstablished:
    case TcpState::kCloseWait:
      snd_.fin_requested = true;
      snd_.fin_seq = DataStartSeq() + static_cast<uint32_t>(snd_buf_.size());
      SetState(now, state_ == TcpState::kCloseWait ? TcpState::kLastAck : TcpState::kFinWait1,
               "close");
      return absl::OkStatus();
    default:
      return absl::FailedPreconditionError("connection closing");
  }
}

void TcpEndpoint::Abort(Instant now) {
  switch (state_) {
    case TcpState::kSynReceived:
    case TcpState::kEstablished:
    case TcpState::kFinWait1:
    case TcpState::kFinWait2:
    case TcpState::kCloseWait: {
      // RFC 9293 §3.10.5: <SEQ=SND.NXT><CTL=RST>.
      TcpRepr fake;
      fake.src_port = cfg_.tuple.remote_port;
      fake.dst_port = cfg_.tuple.local_port;
      QueueRst(fake, tcb_.snd_nxt, std::nullopt);
      Terminate(now, CloseReason::kAborted, "abort");
      return;
    }
    case TcpState::kClosed:
      return;
    default:
      Terminate(now, CloseReason::kAborted, "abort");
      return;
  }
}

// ---------------------------------------------------------------------------
// SEGMENT ARRIVES (RFC 9293 §3.10.7).

void TcpEndpoint::OnSegment(Instant now, const TcpRepr& seg) {
  switch (state_) {
    case TcpState::kClosed:
      SegmentArrivesClosed(seg);
      return;
    case TcpState::kListen:
      SegmentArrivesListen(now, seg);
      return;
    case TcpState::kSynSent:
      SegmentArrivesSynSent(now, seg);
      return;
    default:
      break;
  }
  if (TimeWaitAcceptsSyn(seg)) {
    // RFC 6191 / RFC 9293 §3.10.7.4 note: a new incarnation of the connection.
    // This one ends without an answer; the owner starts the new one with the SYN.
    Terminate(now, CloseReason::kNormal, "SYN in TIME-WAIT");
    return;
  }
  if (state_ == TcpState::kSynReceived && seg.flags.has(kSyn | kAck) &&
      !seg.flags.any(kRst | kFin) && seg.payload.empty() && seg.seq == tcb_.irs &&
      seg.ack == tcb_.snd_nxt) {
    // Simultaneous open (RFC 9293 Figure 8, line 6): the peer's SYN-ACK repeats
    // its SYN and acknowledges ours. Take it as the ACK of our SYN, with no reply.
    TcpRepr ack = seg;
    ack.flags = seg.flags.without(kSyn);
    // mutate: equivalent 1,+,del (only SND.WL1 reads it, and every later SEG.SEQ lies above both)
    ack.seq = seg.seq + 1;
    ack.payload = {};
    if (CheckAckField(now, ack)) CheckFinBit(now, ack);
    return;
  }
  if (!CheckSequenceNumber(now, seg)) return;
  if (ReceiveWindow() == 0 && seg.seg_len() > 0 && !seg.flags.has(kRst)) {
    // Accepted only for its ACK (see CheckSequenceNumber): drop text and FIN.
    TcpRepr stripped = seg;
    stripped.payload = {};
    stripped.flags = seg.flags.without(kFin | kSyn);
    rcv_.ack_needed = true;
    CheckAckField(now, stripped);
    return;
  }
  if (!CheckRstBit(now, seg)) return;
  // Third, security and precedence: not used (RFC 9293 §3.10.7.4 "third").
  if (!CheckSynBit(now, seg)) return;
  if (!CheckAckField(now, seg)) return;
  // Sixth, URG: the urgent pointer is carried on the wire but not acted upon.
  ProcessSegmentText(now, seg);
  CheckFinBit(now, seg);
  // Our FIN was acknowledged by a segment whose own FIN is not in yet (data before
  // it is missing, or the window cut it off): FIN-WAIT-2 now.
  if (state_ == TcpState::kFinWait1 && FinAcked()) SetState(now, TcpState::kFinWait2, "FIN acked");
}

// §3.10.7.1: all data in the segment is discarded; an incoming RST is discarded; any
// other segment gets a RST in answer.
void TcpEndpoint::SegmentArrivesClosed(const TcpRepr& seg) {
  if (seg.flags.has(kRst)) return;
  if (seg.flags.has(kAck)) {
    QueueRst(seg, seg.ack, std::nullopt);
  } else {
    QueueRst(seg, SeqNum(0), seg.seq + seg.seg_len());
  }
}

// §3.10.7.2.
void TcpEndpoint::SegmentArrivesListen(Instant now, const TcpRepr& seg) {
  if (seg.flags.has(kRst)) return;
  if (seg.flags.has(kAck)) {
    QueueRst(seg, seg.ack, std::nullopt);
    return;
  }
  if (!seg.flags.has(kSyn)) return;
  cfg_.tuple.remote_port = seg.src_port;
  tcb_.irs = seg.seq;
  tcb_.rcv_nxt = seg.seq + 1;
  ChooseIss(now);
  AcceptSynOptions(seg);
  // RFC 7323 §2.2: the window of a SYN segment is never scaled.
  tcb_.snd_wnd = seg.window;
  tcb_.snd_wl1 = seg.seq;  // mutate: equivalent del (the ACK ending SYN-RECEIVED sets it again)
  tcb_.snd_wl2 = seg.ack;
  tcb_.max_snd_wnd = tcb_.snd_wnd;
  snd_.syn_due = true;
  // Data on a SYN is not kept: it is not acknowledged, so the peer sends it again.
  SetState(now, TcpState::kSynReceived, "SYN received");
}

// §3.10.7.3.
void TcpEndpoint::SegmentArrivesSynSent(Instant now, const TcpRepr& seg) {
  bool ack_ok = false;
  if (seg.flags.has(kAck)) {
    // First: SEG.ACK =< ISS or SEG.ACK > SND.NXT is unacceptable.
    if (seg.ack <= tcb_.iss || seg.ack > tcb_.snd_nxt) {
      if (!seg.flags.has(kRst)) QueueRst(seg, seg.ack, std::nullopt);
      return;
    }
    // mutate: equivalent <,&& (the test above leaves ISS < SEG.ACK, and SND.UNA is ISS in SYN-SENT)
    ack_ok = tcb_.snd_una < seg.ack && seg.ack <= tcb_.snd_nxt;
  }
  // Second: a RST is acceptable only if it acknowledges our SYN (RFC 5961 §3.2).
  if (seg.flags.has(kRst)) {
    if (ack_ok) {
      Terminate(now, CloseReason::kRefused, "RST received", "connection refused");
    }
    return;
  }
  // Fourth: the SYN bit.
  if (!seg.flags.has(kSyn)) return;
  tcb_.irs = seg.seq;
  tcb_.rcv_nxt = seg.seq + 1;
  AcceptSynOptions(seg);
  // mutate: equivalent del (AcceptSynOptions took TS.Recent from this segment)
  UpdateTimestamps(seg);
  tcb_.snd_wnd = seg.window;  // a SYN's window is never scaled
  tcb_.snd_wl1 = seg.seq;
  tcb_.snd_wl2 = seg.ack;
  tcb_.max_snd_wnd = tcb_.snd_wnd;
  if (ack_ok) {
    AdvanceUna(now, seg.ack, seg);
    rcv_.ack_needed = true;
    snd_.syn_due = false;  // a SYN retransmission that was due is moot now
    SetState(now, TcpState::kEstablished, "SYN-ACK received");
    return;
  }
  // Simultaneous open: answer with SYN-ACK, <SEQ=ISS><ACK=RCV.NXT>.
  snd_.syn_due = true;
  SetState(now, TcpState::kSynReceived, "SYN received (simultaneous open)");
}

// First: is the segment inside the receive window (§3.10.7.4, the four cases)?
bool TcpEndpoint::CheckSequenceNumber(Instant now, const TcpRepr& seg) {
  // A retransmitted SYN while we are in SYN-RECEIVED: our SYN-ACK was lost, so
  // send it again now rather than wait for our own timer (as Linux does).
  if (state_ == TcpState::kSynReceived && seg.flags.has(kSyn) && !seg.flags.has(kAck) &&
      seg.seq == tcb_.irs) {
    snd_.syn_due = true;
    return false;
  }
  uint32_t wnd = ReceiveWindow();
  uint32_t len = seg.seg_len();
  SeqNum nxt = tcb_.rcv_nxt;
  bool ok;
  if (len == 0) {
    // The right edge itself is accepted too, as BSD and Linux do: a sender that filled
    // our window sends its ACKs at SEQ = RCV.NXT + RCV.WND while a hole keeps RCV.NXT
    // back. The strict test answers each such ACK with an ACK, and two endpoints that
    // both filled the other's window answer each other's forever (an ACK war).
    ok = wnd == 0 ? seg.seq == nxt : InWindow(seg.seq, nxt, nxt + wnd) || seg.seq == nxt + wnd;
  } else {
    ok = wnd != 0 &&
         (InWindow(seg.seq, nxt, nxt + wnd) || InWindow(seg.seq + (len - 1), nxt, nxt + wnd));
  }
  // "If the RCV.WND is zero, no segments will be acceptable, but special allowance
  // should be made to accept valid ACKs, URGs, and RSTs": a zero-window segment at
  // RCV.NXT still goes through, its text and FIN are dropped in steps seven and eight.
  if (!ok && wnd == 0 && seg.seq == nxt) ok = true;
  if (ok) {
    UpdateTimestamps(seg);
    return true;
  }
  if (seg.flags.has(kRst)) return false;
  rcv_.ack_needed = true;
  // TIME-WAIT: "The only thing that can arrive in this state is a retransmission of
  // the remote FIN. Acknowledge it, and restart the 2 MSL timeout."
  if (state_ == TcpState::kTimeWait && seg.flags.has(kFin)) {
    timers_.time_wait = now + 2 * cfg_.msl;
  }
  return false;
}

// Second: RST (RFC 5961 §3.2): reset only on an exact match with RCV.NXT, answer a
// RST elsewhere in the window with a challenge ACK.
bool TcpEndpoint::CheckRstBit(Instant now, const TcpRepr& seg) {
  if (!seg.flags.has(kRst)) return true;
  if (seg.seq != tcb_.rcv_nxt) {
    if (ChallengeAckAllowed(now)) rcv_.ack_needed = true;
    return false;
  }
  switch (state_) {
    case TcpState::kSynReceived:
      if (snd_.passive) {
        // "If this connection was initiated with a passive OPEN, then return this
        // connection to the LISTEN state."
        ReturnToListen(now, "RST received");
      } else {
        Terminate(now, CloseReason::kRefused, "RST received", "connection refused");
      }
      return false;
    case TcpState::kEstablished:
    case TcpState::kFinWait1:
    case TcpState::kFinWait2:
    case TcpState::kCloseWait:
      Terminate(now, CloseReason::kReset, "RST received", "connection reset by peer");
      return false;
    default:  // CLOSING, LAST-ACK, TIME-WAIT
      Terminate(now, CloseReason::kReset, "RST received");
      return false;
  }
}

// Fourth: a SYN in a synchronized state gets a challenge ACK (RFC 5961 §4.2); in
// SYN-RECEIVED after a passive open the connection goes back to LISTEN.
bool TcpEndpoint::CheckSynBit(Instant now, const TcpRepr& seg) {
  if (!seg.flags.has(kSyn)) return true;
  if (state_ == TcpState::kSynReceived && snd_.passive) {
    ReturnToListen(now, "SYN in window");
    return false;
  }
  if (ChallengeAckAllowed(now)) rcv_.ack_needed = true;
  return false;
}

// Fifth: the ACK field.
bool TcpEndpoint::CheckAckField(Instant now, const TcpRepr& seg) {
  if (!seg.flags.has(kAck)) return false;
  if (state_ == TcpState::kSynReceived) {
    if (!(tcb_.snd_una < seg.ack && seg.ack <= tcb_.snd_nxt)) {
      QueueRst(seg, seg.ack, std::nullopt);
      return false;
    }
    tcb_.snd_wnd = static_cast<uint32_t>(seg.window) << tcb_.snd_wscale;
    // mutate: equivalent del (UpdateSendWindow below takes both from this segment: SEG.SEQ > IRS =
    // SND.WL1)
    tcb_.snd_wl1 = seg.seq;
    tcb_.snd_wl2 = seg.ack;  // mutate: equivalent del (as SND.WL1 above)
    tcb_.max_snd_wnd = std::max(tcb_.max_snd_wnd, tcb_.snd_wnd);
    // mutate: equivalent del (the ACK processing below advances it the same)
    AdvanceUna(now, seg.ack, seg);
    snd_.syn_due = false;  // a SYN-ACK retransmission that was due is moot now
    SetState(now, TcpState::kEstablished, "ACK of SYN");
  }
  // RFC 5961 §5.2: acceptable is SND.UNA - MAX.SND.WND =< SEG.ACK =< SND.NXT.
  if (seg.ack > tcb_.snd_nxt) {
    rcv_.ack_needed = true;
    return false;
  }
  if (seg.ack < tcb_.snd_una - tcb_.max_snd_wnd) {
    if (ChallengeAckAllowed(now)) rcv_.ack_needed = true;
    return false;
  }
  snd_.unanswered_probes = 0;
  AckInfo info;
  info.prior_una = tcb_.snd_una;
  info.prior_sacked = sb_.sacked_bytes();
  info.advanced = seg.ack > tcb_.snd_una;
  if (info.advanced) {
    rec_.dup_acks = 0;
    AdvanceUna(now, seg.ack, seg);
  } else if (seg.ack == tcb_.snd_una && seg.payload.empty() && !seg.flags.any(kSyn | kFin) &&
             tcb_.snd_una != tcb_.snd_nxt &&
             (static_cast<uint32_t>(seg.window) << tcb_.snd_wscale) <= tcb_.snd_wnd) {
    // A duplicate ACK as Linux counts one (tcp_ack, FLAG_NOT_DUP): it does not
    // advance SND.UNA, carries no data and does not open the window; a smaller
    // window still counts. RFC 5681 §2's stricter definition asks for an unchanged
    // window. With SACK the blocks themselves mark losses (the scoreboard), which is
    // what recovers a hole while the peer's reads keep opening its window.
    info.dupack = true;
    if (!tcb_.sack_ok && rec_.dup_acks < 0x7fff) ++rec_.dup_acks;
  }
  if (SynAcked()) {
    ProcessSack(now, seg, info);
    TlpOnAck(now, seg, info);
    DetectLoss(now, info);
    ReportDelivery(now, info);
    ScheduleLossProbe(now);
  }
  UpdateSendWindow(seg, info.advanced);

  switch (state_) {
    case TcpState::kFinWait1:
      // "If the FIN segment is now acknowledged, then enter FIN-WAIT-2 and continue
      // processing in that state." A segment that also carries the peer's FIN leaves
      // the choice to the eighth step, which reads in FIN-WAIT-1 "If our FIN has been
      // ACKed (perhaps in this segment), then enter TIME-WAIT": one change, FIN-WAIT-1
      // -> TIME-WAIT, as Figure 5's neighbours draw it. OnSegment enters FIN-WAIT-2
      // after the eighth step when that FIN did not take effect.
      if (FinAcked() && !seg.flags.has(kFin)) SetState(now, TcpState::kFinWait2, "FIN acked");
      break;
    case TcpState::kClosing:
      if (FinAcked()) EnterTimeWait(now, "FIN acked");
      return false;
    case TcpState::kLastAck:
      if (FinAcked()) {
        Terminate(now, CloseReason::kNormal, "FIN acked");
        return false;
      }
      break;
    default:
      break;
  }
  return true;
}

// Seventh: segment text, in ESTABLISHED, FIN-WAIT-1 and FIN-WAIT-2 only.
void TcpEndpoint::ProcessSegmentText(Instant now, const TcpRepr& seg) {
  (void)now;
  if (seg.payload.empty() || !AcceptsText(state_)) return;
  SeqNum seq = seg.seq;
  absl::Span<const uint8_t> data = seg.payload;
  // Trim what we already have, then what lies beyond the window.
  // mutate: equivalent < (at RCV.NXT nothing is old: the trim removes nothing)
  if (seq < tcb_.rcv_nxt) {
    uint32_t old = static_cast<uint32_t>(tcb_.rcv_nxt - seq);
    // mutate: equivalent >= (text ending at RCV.NXT is acceptable only with a FIN, which is acked
    // anyway)
    if (old >= data.size()) {
      rcv_.ack_needed = true;
      return;
    }
    data.remove_prefix(old);
    seq = tcb_.rcv_nxt;
  }
  uint32_t wnd = ReceiveWindow();
  uint32_t offset = static_cast<uint32_t>(seq - tcb_.rcv_nxt);
  // mutate: equivalent >= (text starting at the window's edge failed the first check)
  if (offset >= wnd) {
    rcv_.ack_needed = true;
    return;
  }
  // mutate: equivalent > (first(size) is all)
  if (data.size() > wnd - offset) data = data.first(wnd - offset);
  if (offset == 0) {
    bool filled_hole = rcv_.ooo_count > 0;
    rcv_buf_.WriteAt(rcv_buf_.size(), data);
    rcv_buf_.Commit(data.size());
    tcb_.rcv_nxt += static_cast<uint32_t>(data.size());
    DeliverInOrder();
    ScheduleAck(now, static_cast<uint32_t>(data.size()), filled_hole);
  } else {
    rcv_.ack_needed = true;
    HoldOutOfOrder(seq, data);
    // RFC 5681 §4.2: an out-of-order segment gets an immediate duplicate ACK of
    // its own, even when several arrive before the next Poll.
    if (rcv_.dup_acks_owed < 8) ++rcv_.dup_acks_owed;
  }
}

// RFC 9293 §3.8.6.3 / RFC 5681 §4.2 delayed ACKs, as Linux runs them
// (__tcp_ack_snd_check): at once in quick-ack mode (the first segments of a
// connection), when more than one full segment is unacknowledged, and when the
// segment fills a hole; otherwise within the delayed-ACK timeout.
void TcpEndpoint::ScheduleAck(Instant now, uint32_t len, bool filled_hole) {
  if (!cfg_.delayed_ack) {
    rcv_.ack_needed = true;
    return;
  }
  rcv_.mss = std::max<uint32_t>(rcv_.mss, std::min<uint32_t>(len, cfg_.mss));
  rcv_.unacked += len;
  if (rcv_.quickacks_left > 0 || rcv_.unacked > rcv_.mss || filled_hole || rcv_.ooo_count > 0) {
    if (rcv_.quickacks_left > 0) --rcv_.quickacks_left;
    rcv_.ack_needed = true;
    return;
  }
  if (timers_.delayed_ack == kNever) timers_.delayed_ack = now + cfg_.delayed_ack_timeout;
}

// Moves held out-of-order ranges that RCV.NXT has reached into the readable bytes.
void TcpEndpoint::DeliverInOrder() {
  size_t drop = 0;
  while (drop < rcv_.ooo_count && rcv_.ooo[drop].left <= tcb_.rcv_nxt) {
    if (rcv_.ooo[drop].right > tcb_.rcv_nxt) {  // mutate: equivalent > (equal commits 0 bytes)
      uint32_t n = static_cast<uint32_t>(rcv_.ooo[drop].right - tcb_.rcv_nxt);
      rcv_buf_.Commit(n);
      tcb_.rcv_nxt += n;
    }
    ++drop;
  }
  if (drop > 0) {
    std::move(rcv_.ooo.begin() + drop, rcv_.ooo.begin() + rcv_.ooo_count, rcv_.ooo.begin());
    rcv_.ooo_count -= drop;
  }
}

bool TcpEndpoint::HoldOutOfOrder(SeqNum seq, absl::Span<const uint8_t> data) {
  SeqNum left = seq, right = seq + static_cast<uint32_t>(data.size());
  // Find the insertion point and merge with every range it touches.
  size_t i = 0;
  while (i < rcv_.ooo_count && rcv_.ooo[i].right < left) ++i;
  size_t j = i;
  while (j < rcv_.ooo_count && rcv_.ooo[j].left <= right) {
    left = Min(left, rcv_.ooo[j].left);
    right = Max(right, rcv_.ooo[j].right);
    ++j;
  }
  size_t merged = j - i;
  if (merged == 0 && rcv_.ooo_count >= cfg_.max_ooo_ranges) return false;  // bounded: drop it
  rcv_buf_.WriteAt(rcv_buf_.size() + static_cast<uint32_t>(seq - tcb_.rcv_nxt), data);
  if (merged == 0) {
    std::move_backward(rcv_.ooo.begin() + i, rcv_.ooo.begin() + rcv_.ooo_count,
                       rcv_.ooo.begin() + rcv_.ooo_count + 1);
    ++rcv_.ooo_count;
  } else if (merged > 1) {  // mutate: equivalent 1 (one range merged moves none, removes none)
    std::move(rcv_.ooo.begin() + j, rcv_.ooo.begin() + rcv_.ooo_count, rcv_.ooo.begin() + i + 1);
    rcv_.ooo_count -= merged - 1;
  }
  rcv_.ooo[i] = {left, right, ++rcv_.ooo_arrivals};
  return true;  // mutate: equivalent true (the caller does not read it)
}

// Eighth: the FIN bit.
void TcpEndpoint::CheckFinBit(Instant now, const TcpRepr& seg) {
  if (!seg.flags.has(kFin)) {
    if (rcv_.ooo_fin && *rcv_.ooo_fin == tcb_.rcv_nxt) {
      // The data a FIN overtook has arrived: the FIN takes effect now.
    } else {
      return;
    }
  } else {
    SeqNum fin = seg.seq + static_cast<uint32_t>(seg.payload.size());
    if (fin > tcb_.rcv_nxt) {
      // Data before the FIN is missing: remember the FIN until it is in, and send
      // the immediate duplicate ACK an out-of-order segment gets (RFC 5681 §4.2),
      // whose SACK block names the FIN.
      if (fin - tcb_.rcv_nxt <= static_cast<int32_t>(ReceiveWindow())) rcv_.ooo_fin = fin;
      rcv_.ack_needed = true;
      return;
    }
    if (fin < tcb_.rcv_nxt) return;  // a FIN we have already taken (it was acked above)
  }
  rcv_.ooo_fin.reset();
  switch (state_) {
    case TcpState::kCloseWait:
    case TcpState::kClosing:
    case TcpState::kLastAck:
      return;  // "Remain in the ... state": our RCV.NXT is already past the peer's FIN
    case TcpState::kTimeWait:
      // The peer's FIN was taken already: RCV.NXT stays; acknowledge and restart
      // the 2 MSL timeout.
      rcv_.ack_needed = true;
      timers_.time_wait = now + 2 * cfg_.msl;
      return;
    default:
      break;
  }
  tcb_.rcv_nxt += 1;
  rcv_.fin_received = true;
  rcv_.ack_needed = true;
  switch (state_) {
    case TcpState::kSynReceived:
    case TcpState::kEstablished:
      SetState(now, TcpState::kCloseWait, "FIN received");
      break;
    case TcpState::kFinWait1:
      if (FinAcked()) {
        EnterTimeWait(now, "FIN received");
      } else {
        SetState(now, TcpState::kClosing, "FIN received (simultaneous close)");
      }
      break;
    case TcpState::kFinWait2:
      EnterTimeWait(now, "FIN received");
      break;
    case TcpState::kTimeWait:
      timers_.time_wait = now + 2 * cfg_.msl;
      break;
    default:
      break;
  }
}

// ---------------------------------------------------------------------------
// Helpers of segment processing.

void TcpEndpoint::AcceptSynOptions(const TcpRepr& seg) {
  const TcpOptions& o = seg.options;
  // RFC 9293 §3.7.1: without the option, assume 536 (IPv4) / 1220 (IPv6).
  uint16_t peer_mss = o.mss.value_or(cfg_.tuple.remote_addr.is_v6() ? 1220 : 536);
  tcb_.wscale_ok = cfg_.window_scaling && o.window_scale.has_value();
  if (tcb_.wscale_ok) {
    tcb_.snd_wscale = std::min<uint8_t>(*o.window_scale, 14);  // RFC 7323 §2.3
  } else {
    tcb_.snd_wscale = 0;
    tcb_.rcv_wscale = 0;
  }
  tcb_.sack_ok = cfg_.sack && o.sack_permitted;
  tcb_.ts_ok = cfg_.timestamps && o.timestamps.has_value();
  if (tcb_.ts_ok) tcb_.ts_recent = o.timestamps->value;
  // The peer's MSS is a limit on data plus options (RFC 6691); an MSS too small
  // for the timestamps still lets one byte through rather than wrapping around.
  uint32_t mss = std::min<uint32_t>(peer_mss, cfg_.mss);
  if (tcb_.ts_ok) mss = mss > kTimestampOptionLen ? mss - kTimestampOptionLen : 1;
  tcb_.snd_mss = static_cast<uint16_t>(std::max<uint32_t>(mss, 1));
  // RFC 5681 §3.1 / RFC 6928: initial window min(10*MSS, max(2*MSS, 14600)).
  cc_->Init(tcb_.snd_mss);
  SyncCongestion();
}

// RFC 7323 §4.3: TS.Recent follows the newest TSval of a segment at the left edge.
void TcpEndpoint::UpdateTimestamps(const TcpRepr& seg) {
  if (!tcb_.ts_ok || !seg.options.timestamps) return;
  uint32_t val = seg.options.timestamps->value;
  // mutate: equivalent >= (an equal TSval stores the same value)
  if (static_cast<int32_t>(val - tcb_.ts_recent) >= 0 && seg.seq <= tcb_.last_ack_sent)
    tcb_.ts_recent = val;
}

void TcpEndpoint::AdvanceUna(Instant now, SeqNum ack, const TcpRepr& seg) {
  SeqNum data_start = DataStartSeq();
  uint32_t newly = static_cast<uint32_t>(ack - tcb_.snd_una);
  // mutate: equivalent > (an ACK at the data's start consumes 0 bytes)
  if (ack > data_start) {
    size_t n = std::min<size_t>(static_cast<uint32_t>(ack - data_start), snd_buf_.size());
    snd_buf_.Consume(n);
    bytes_acked_ += n;
  }
  tcb_.snd_una = ack;
  bool synack_only = !snd_.syn_acked;
  snd_.syn_acked = true;  // every advance of SND.UNA covers the SYN first
  if (snd_.cursor < ack) snd_.cursor = ack;
  if (!synack_only) sb_.OnCumulativeAck(ack, [&](const SentSegment& s) { RackUpdate(now, s); });
  // An ACK ending a timeout or a recovery may echo the timestamp of a segment sent
  // long before (the peer's TS.Recent did not move while our retransmissions were
  // old news to it): such a sample would measure the outage, not the path, and send
  // the RTO to its ceiling. Karn's rule, applied to timestamps too.
  bool after_loss = rec_.retries > 0 || rec_.state != Recovery::kOpen;
  rec_.retries = 0;

  // RTT sample: from the echoed timestamp, else from the timed segment (Karn's
  // algorithm: never from a retransmitted one).
  if (after_loss) {
    rtt_.timing = false;
  } else if (tcb_.ts_ok && seg.options.timestamps && seg.options.timestamps->echo != 0) {
    int32_t ms = static_cast<int32_t>(TsNow(now) - seg.options.timestamps->echo);
    if (ms >= 0) UpdateRtt(now, absl::Milliseconds(ms));
  } else if (rtt_.timing && ack >= rtt_.seq) {
    rtt_.timing = false;
    UpdateRtt(now, now - rtt_.start);
  }

  // The congestion window grows outside fast recovery (PRR governs it there) and
  // in slow start after a timeout; an ACK of the SYN alone moved no data.
  if (ack > data_start && rec_.state != Recovery::kRecovery) {
    cc_->OnAck(now, newly, tcb_.srtt);
    SyncCongestion();
  }

  // RFC 6298 §5.2 / §5.3.
  if (tcb_.snd_una == tcb_.snd_nxt) {
    timers_.rto = timers_.rack = timers_.tlp = kNever;
  } else {
    RestartRetransmitTimer(now);
  }
}

// §3.10.7.4 fifth: update the send window from segments that are not older than
// the one it was last taken from — and, as Linux does, from every segment whose ACK
// advanced SND.UNA. The window counts from the ACK that carried it: were SND.UNA to
// move on while SND.WND stayed (a retransmitted, older SEG.SEQ skips the WL1 test),
// SND.UNA + SND.WND would lie past the edge the peer offered, and we would send
// beyond its window.
void TcpEndpoint::UpdateSendWindow(const TcpRepr& seg, bool advanced_una) {
  if (!(tcb_.snd_una <= seg.ack && seg.ack <= tcb_.snd_nxt)) return;
  if (advanced_una || tcb_.snd_wl1 < seg.seq ||
      (tcb_.snd_wl1 == seg.seq && tcb_.snd_wl2 <= seg.ack)) {
    tcb_.snd_wnd = static_cast<uint32_t>(seg.window) << tcb_.snd_wscale;
    tcb_.snd_wl1 = seg.seq;
    tcb_.snd_wl2 = seg.ack;  // mutate: equivalent del (SND.WL2 never passes SND.UNA, which bounds
                             // SEG.ACK here)
    tcb_.max_snd_wnd = std::max(tcb_.max_snd_wnd, tcb_.snd_wnd);
    if (tcb_.snd_wnd > 0) {
      timers_.persist = kNever;
      snd_.persist_backoff = absl::ZeroDuration();
    }
  }
}

bool TcpEndpoint::ChallengeAckAllowed(Instant now) {
  if (now - challenge_.window_start >= absl::Seconds(1)) {
    challenge_.window_start = now;
    challenge_.sent = 0;
  }
  if (challenge_.sent >= cfg_.challenge_ack_limit) return false;
  ++challenge_.sent;
  return true;
}

void TcpEndpoint::QueueRst(const TcpRepr& answering, SeqNum seq, std::optional<SeqNum> ack) {
  if (rst_.count == rst_.queue.size()) return;  // bounded: a flood gets some answers
  rst_.queue[rst_.count++] = {answering.dst_port, answering.src_port, seq, ack};
}

void TcpEndpoint::SetState(Instant now, TcpState to, absl::string_view cause) {
  TcpState from = state_;
  state_ = to;
  if (observer_) observer_({from, to, cause, now});
}

void TcpEndpoint::ChooseIss(Instant now) {
  tcb_.iss =
      SeqNum(cfg_.isn ? cfg_.isn(cfg_.tuple, now) : Rfc6528Isn(cfg_.tuple, now, ProcessSecret()));
  snd_.ts_offset = tcb_.iss.raw() * 2654435761u;
  tcb_.snd_una = tcb_.iss;
  tcb_.snd_nxt = tcb_.iss;
  snd_.cursor = tcb_.iss;
}

// "If this connection was initiated with a passive OPEN, then return this connection
// to the LISTEN state": the listener takes its next connection as a new one would.
// Nothing of the one it leaves carries over: not its queued data, its RTO backed off
// by unanswered SYN-ACKs (Linux starts each request at TCP_TIMEOUT_INIT), its RTT
// estimate or timed segment, its options (a SYN without window scaling must not
// take the scale from the next SYN-ACK), nor its foreign port.
void TcpEndpoint::ReturnToListen(Instant now, absl::string_view cause) {
  ResetConnection();
  cfg_.tuple.remote_port = listen_remote_port_;
  SetState(now, TcpState::kListen, cause);
}

// "Enter the TIME-WAIT state, start the time-wait timer, turn off the other timers":
// the retransmission timer stops; the others find nothing to do in TIME-WAIT.
void TcpEndpoint::EnterTimeWait(Instant now, absl::string_view cause) {
  timers_.time_wait = now + 2 * cfg_.msl;
  timers_.rto = kNever;  // mutate: equivalent del (the ACK of our FIN that leads here stopped it)
  SetState(now, TcpState::kTimeWait, cause);
}

void TcpEndpoint::Terminate(Instant now, CloseReason why, absl::string_view cause,
                            std::string error) {
  timers_.rto = timers_.persist = timers_.time_wait = timers_.rack = timers_.tlp = kNever;
  timers_.delayed_ack = kNever;
  snd_.syn_due = rcv_.ack_needed = rcv_.window_update_needed = snd_.window_probe_due =
      snd_.retransmit_one = false;
  tlp_.probe_due = false;
  close_reason_ = why;
  error_ = std::move(error);
  if (why == CloseReason::kReset || why == CloseReason::kRefused || why == CloseReason::kAborted ||
      why == CloseReason::kTimeout) {
    // RFC 9293: on reset or abort, queued sends and receives are flushed.
    snd_buf_.Consume(snd_buf_.size());
  }
  if (state_ != TcpState::kClosed) SetState(now, TcpState::kClosed, cause);
}

// ---------------------------------------------------------------------------
// Loss detection and recovery.

// RFC 6675 §4 pipe. Without SACK, each duplicate ACK stands for a segment that
// left the network (RFC 6937 §3, as Linux's tcp_add_reno_sack).
uint32_t TcpEndpoint::Pipe() const {
  uint32_t pipe = sb_.Pipe();
  // mutate: equivalent >,&& (none subtracts nothing; with SACK none are counted)
  if (!tcb_.sack_ok && rec_.dup_acks > 0) {
    uint64_t left = static_cast<uint64_t>(rec_.dup_acks) * tcb_.snd_mss;
    pipe = left >= pipe ? 0 : pipe - static_cast<uint32_t>(left);  // mutate: equivalent >= (both 0)
  }
  return pipe;
}

void TcpEndpoint::ProcessSack(Instant now, const TcpRepr& seg, AckInfo& info) {
  if (!tcb_.sack_ok || seg.options.sack_count == 0) return;
  size_t n = std::min<size_t>(seg.options.sack_count, seg.options.sack.size());
  auto r = sb_.OnSackBlocks(absl::MakeConstSpan(seg.options.sack.data(), n), tcb_.snd_una,
                            tcb_.snd_nxt, [&](const SentSegment& s) { RackUpdate(now, s); });
  if (r.dsack) {
    info.dsack = true;
    ++loss_stats_.dsacks;
    // RFC 8985 §6.2 step 4: a D-SACK shows a spurious retransmission, that is,
    // reordering the reordering window must allow for.
    rack_.reordering_seen = true;
  }
}

// RFC 8985 §6.2 steps 1-3, for each segment an ACK newly acknowledged or SACKed.
void TcpEndpoint::RackUpdate(Instant now, const SentSegment& s) {
  Duration rtt = now - s.sent;
  // Step 2: a retransmitted segment delivered sooner than min_RTT after its last
  // transmission was most likely delivered by an earlier one; ignore it.
  if (s.retransmitted && rtt < rack_.min_rtt) return;
  rack_.rtt = rtt;
  rack_.min_rtt = std::min(rack_.min_rtt, rtt);
  if (s.sent > rack_.xmit_ts || (s.sent == rack_.xmit_ts && s.end > rack_.end_seq)) {
    rack_.xmit_ts = s.sent;
    rack_.end_seq = s.end;
  }
  // Step 3: a segment delivered below the highest one delivered, never
  // retransmitted, arrived out of order.
  // mutate: equivalent > (no two deliveries end alike)
  if (!rack_.fack_set || s.end > rack_.fack) {
    rack_.fack = s.end;
    rack_.fack_set = true;
  } else if (!s.retransmitted) {
    rack_.reordering_seen = true;
  }
}

// RFC 8985 §6.2 step 4.
Duration TcpEndpoint::RackReorderWindow() const {
  if (!rack_.reordering_seen) {
    if (rec_.state != Recovery::kOpen) return absl::ZeroDuration();
    if (sb_.sacked_count() >= static_cast<size_t>(cfg_.dup_thresh)) return absl::ZeroDuration();
  }
  if (rack_.min_rtt == absl::InfiniteDuration()) return absl::ZeroDuration();
  Duration w = rack_.min_rtt / 4;
  if (rtt_.sampled) w = std::min(w, tcb_.srtt);
  return w;
}

// RFC 8985 §6.2 step 5: a segment sent before the most recently delivered one,
// and not delivered itself RACK.rtt + RACK.reo_wnd after it was sent, is lost.
void TcpEndpoint::RackDetectLoss(Instant now) {
  timers_.rack = kNever;
  if (rack_.xmit_ts == absl::InfinitePast()) return;
  Duration reo = RackReorderWindow();
  Duration wait = absl::ZeroDuration();
  for (size_t i = 0; i < sb_.size(); ++i) {
    const SentSegment& s = sb_[i];
    bool before = s.sent < rack_.xmit_ts || (s.sent == rack_.xmit_ts && s.end < rack_.end_seq);
    // Records are in sequence order, and every later one was first sent no earlier
    // than a record never retransmitted: past the first such record that is not
    // before RACK.xmit_ts, none is, and the scan ends (without loss, at the head).
    if (!before && !s.retransmitted) break;
    if (!before || s.sacked || (s.lost && !s.in_flight_retx)) continue;
    Duration remaining = s.sent + rack_.rtt + reo - now;
    if (remaining <= absl::ZeroDuration()) {
      if (sb_.MarkLost(i) > 0 || s.lost) ++loss_stats_.rack_marked;
    } else {
      wait = std::max(wait, remaining);
    }
  }
  if (wait > absl::ZeroDuration()) timers_.rack = now + wait;
}

void TcpEndpoint::DetectLoss(Instant now, const AckInfo& info) {
  // Recovery ends once the cumulative ACK reaches the RecoveryPoint (RFC 6675 §5,
  // RFC 6582 §3.2 step 3 "full acknowledgment").
  if (rec_.state != Recovery::kOpen && rec_.recover_set && tcb_.snd_una >= rec_.recover &&
      (info.advanced || sb_.empty())) {
    if (rec_.state == Recovery::kRecovery) {
      cc_->OnRecoveryEnd();  // RFC 6937 §3.1: cwnd = ssthresh
      SyncCongestion();
    }
    rec_.state = Recovery::kOpen;
    // mutate: equivalent del (an advancing ACK cleared it; without one the scoreboard is empty, so
    // none counted)
    rec_.dup_acks = 0;
  }
  if (sb_.empty()) return;
  if (tcb_.sack_ok) {
    // mutate: equivalent > (MarkLostByDupThresh does nothing without SACKed records)
    if (sb_.sacked_count() > 0) sb_.MarkLostByDupThresh(cfg_.dup_thresh, tcb_.snd_mss);
    if (cfg_.rack) RackDetectLoss(now);
  } else if (rec_.state == Recovery::kOpen) {
    // RFC 5681 §3.2 / RFC 6582: DupThresh duplicate ACKs mean SND.UNA's segment is lost.
    if (rec_.dup_acks >= cfg_.dup_thresh) sb_.MarkLost(0);
  } else if (rec_.state == Recovery::kRecovery && info.advanced) {
    // RFC 6582 §3.2 step 3, a partial acknowledgment: the segment now at SND.UNA
    // is lost too; retransmit it.
    sb_.MarkLost(0);
  }
  if (rec_.state == Recovery::kOpen && sb_.lost_bytes() > 0) EnterFastRecovery(now);
  if (rec_.state == Recovery::kRecovery && !cc_->SetsWindowInRecovery()) PrrOnAck(info);
}

// Bytes newly acknowledged or SACKed by the ACK `info` describes (none when SACK
// blocks were reneged).
uint32_t TcpEndpoint::NewlyDelivered(const AckInfo& info) const {
  int64_t n = static_cast<int64_t>(tcb_.snd_una - info.prior_una) +
              (static_cast<int64_t>(sb_.sacked_bytes()) - info.prior_sacked);
  return static_cast<uint32_t>(std::max<int64_t>(n, 0));
}

// What the ACK delivered, for an algorithm that models the path: bytes newly
// acknowledged or SACKed, and RACK's newest round-trip sample (microseconds, from
// the send times, where a timestamp echo counts whole milliseconds).
void TcpEndpoint::ReportDelivery(Instant now, const AckInfo& info) {
  const uint32_t acked = NewlyDelivered(info);
  rec_.delivered += acked;
  cc_->OnDelivery(now, {.delivered = rec_.delivered,
                        .acked = acked,
                        .inflight = Pipe(),
                        .rtt = rack_.rtt});
  SyncCongestion();
}

void TcpEndpoint::EnterFastRecovery(Instant now) {
  rec_.state = Recovery::kRecovery;
  ++loss_stats_.fast_recoveries;
  rec_.recover = tcb_.snd_nxt;  // RFC 6675 RecoveryPoint, RFC 6582 recover
  rec_.recover_set = true;
  cc_->OnCongestionEvent(now, FlightSize());
  SyncCongestion();  // mutate: equivalent del (PrrOnAck follows at once and syncs)
  // RFC 6937 §3.1 initialization.
  rec_.prr_delivered = 0;
  rec_.prr_out = 0;
  rec_.recover_fs = std::max<uint32_t>(FlightSize(), 1);
  // mutate: equivalent del,false (every ACK in recovery is after_loss: no sample)
  rtt_.timing = false;
  timers_.tlp = kNever;
  tlp_.in_flight = false;
}

// RFC 6937 §3.1, on every ACK during recovery: sndcnt from the data delivered,
// proportional while pipe exceeds ssthresh, slow-start reduction bound (PRR-SSRB)
// below it; cwnd = pipe + sndcnt.
void TcpEndpoint::PrrOnAck(const AckInfo& info) {
  int64_t delivered = NewlyDelivered(info);
  if (!tcb_.sack_ok && info.dupack) delivered += tcb_.snd_mss;
  rec_.prr_delivered += static_cast<uint32_t>(delivered);
  int64_t pipe = Pipe();
  int64_t ssthresh = cc_->ssthresh();
  int64_t sndcnt;
  if (pipe > ssthresh) {
    sndcnt = (static_cast<int64_t>(rec_.prr_delivered) * ssthresh + rec_.recover_fs - 1) /
                 rec_.recover_fs -
             rec_.prr_out;
  } else {
    int64_t limit =
        std::max<int64_t>(static_cast<int64_t>(rec_.prr_delivered) - rec_.prr_out, delivered) +
        tcb_.snd_mss;
    sndcnt = std::min(ssthresh - pipe, limit);
  }
  sndcnt = std::max<int64_t>(sndcnt, 0);
  // The fast retransmit itself goes out at once (RFC 6937 §3: PRR starts with it).
  if (rec_.prr_out == 0 && sndcnt == 0 && sb_.NextLost() < sb_.size()) sndcnt = tcb_.snd_mss;
  cc_->SetCwnd(static_cast<uint32_t>(std::min<int64_t>(pipe + sndcnt, 0x3fffffff)));
  SyncCongestion();
}

// RFC 8985 §7.2: arm the probe timeout PTO = 2*SRTT (plus the peer's delayed-ACK
// allowance when one segment is in flight), never later than the RTO.
void TcpEndpoint::ScheduleLossProbe(Instant now) {
  timers_.tlp = kNever;
  if (!cfg_.tlp || !tcb_.sack_ok || rec_.state != Recovery::kOpen || tlp_.in_flight || sb_.empty())
    return;
  Duration pto = rtt_.sampled ? 2 * tcb_.srtt : cfg_.initial_rto;
  if (sb_.size() == 1) pto += cfg_.tlp_one_segment_allowance;
  pto = std::max(pto, absl::Milliseconds(1));
  // PTO = min(PTO, RTO) (§7.2): a probe due with the RTO goes instead of it, as on Linux.
  timers_.tlp = std::min(now + pto, timers_.rto);
}

void TcpEndpoint::OnLossProbeTimeout(Instant now) {
  timers_.tlp = kNever;
  if (rec_.state != Recovery::kOpen || sb_.empty() || tlp_.in_flight || !SendsData(state_)) return;
  tlp_.probe_due = true;
  // §7.3: after the probe, the RTO is armed afresh.
  RestartRetransmitTimer(now);
}

// RFC 8985 §7.4: an ACK of a retransmitted probe without a D-SACK shows that the
// probe repaired a loss: the window is reduced once, as for a recovery.
void TcpEndpoint::TlpOnAck(Instant now, const TcpRepr& seg, const AckInfo& info) {
  if (!tlp_.in_flight || seg.ack < tlp_.end_seq) return;
  tlp_.in_flight = false;
  if (tlp_.retransmitted && !info.dsack && rec_.state == Recovery::kOpen) {
    cc_->OnCongestionEvent(now, FlightSize());
    cc_->OnRecoveryEnd();
    SyncCongestion();
  }
}

bool TcpEndpoint::TimeWaitAcceptsSyn(const TcpRepr& syn) const {
  if (state_ != TcpState::kTimeWait || !cfg_.time_wait_accepts_syn) return false;
  if (!syn.flags.has(kSyn) || syn.flags.any(kAck | kRst | kFin)) return false;
  // RFC 6191 §2 and RFC 1122 §4.2.2.13, combined as Linux does
  // (tcp_timewait_state_process): a SYN whose TSval is older than TS.Recent fails
  // PAWS (RFC 7323 §5) and is refused; otherwise a TSval newer than TS.Recent or an
  // ISN beyond RCV.NXT shows that it cannot be an old duplicate.
  bool ts = tcb_.ts_ok && syn.options.timestamps.has_value();
  int32_t ts_diff = ts ? static_cast<int32_t>(syn.options.timestamps->value - tcb_.ts_recent) : 0;
  if (ts && ts_diff < 0) return false;
  return syn.seq > tcb_.rcv_nxt || (ts && ts_diff > 0);
}

// ---------------------------------------------------------------------------
// Timers.

void TcpEndpoint::OnTick(Instant now) {
  if (now >= timers_.time_wait) {
    Terminate(now, CloseReason::kNormal, "2MSL timeout");
    return;
  }
  if (now >= timers_.delayed_ack) {
    timers_.delayed_ack = kNever;
    if (AcceptsText(state_) || state_ == TcpState::kCloseWait) rcv_.ack_needed = true;
  }
  if (now >= timers_.tlp) OnLossProbeTimeout(now);  // first: it re-arms the RTO
  if (now >= timers_.rto) OnRetransmitTimeout(now);
  if (now >= timers_.persist) OnPersistTimeout(now);
  if (now >= timers_.rack) {
    // RFC 8985 §6.3: the reordering timer expired; look for losses again.
    timers_.rack = kNever;
    AckInfo info;
    info.prior_una = tcb_.snd_una;
    info.prior_sacked = sb_.sacked_bytes();
    DetectLoss(now, info);
  }
}

void TcpEndpoint::OnRetransmitTimeout(Instant now) {
  bool handshake = state_ == TcpState::kSynSent || state_ == TcpState::kSynReceived;
  int limit = handshake ? cfg_.syn_retries : cfg_.max_retries;
  if (++rec_.retries > limit) {
    Terminate(now, CloseReason::kTimeout, "retransmission limit",
              absl::StrCat("connection timed out: no answer after ", limit,
                           handshake ? (state_ == TcpState::kSynSent ? " SYN" : " SYN-ACK")
                                     : " segment",
                           " retransmissions"));
    return;
  }
  rtt_.timing = false;  // mutate: equivalent del,false (the next ACK is after_loss: no sample)
  // RFC 6298 §5.5: back off the timer.
  tcb_.rto = std::min(tcb_.rto * 2, cfg_.max_rto);
  timers_.rto = now + tcb_.rto;
  if (handshake || !SynAcked()) {
    ++rec_.retransmissions;
    snd_.syn_due = true;
    return;
  }
  ++loss_stats_.timeouts;
  // RFC 5681 §3.1: ssthresh from the flight on the first timeout, cwnd one segment.
  cc_->OnRto(now, FlightSize(), rec_.retries == 1);
  SyncCongestion();
  // RFC 2018 §8: a receiver may discard what it SACKed; from the second timeout in
  // a row, or when SND.UNA itself was SACKed, the SACK marks are not trusted.
  if (!sb_.empty() && (rec_.retries > 1 || sb_[0].sacked)) sb_.ClearSacks();
  // RFC 6675 §5.1: every segment not SACKed is deemed lost and goes again, in
  // order, as slow start allows. The earliest goes out whatever the windows say
  // (RFC 6298 §5.4; RFC 9293 §3.8.6.1: keep retransmitting into a zero window).
  sb_.MarkAllLost();
  rec_.state = Recovery::kLoss;
  rec_.recover = tcb_.snd_nxt;
  rec_.recover_set = true;
  rec_.dup_acks = 0;
  // mutate: equivalent del,true (after MarkAllLost the pipe is 0 and cwnd one segment: NextSeg
  // sends it too)
  snd_.retransmit_one = true;
  // mutate: equivalent del (either timer would find the loss state: the probe stops, every record
  // is lost)
  timers_.tlp = timers_.rack = kNever;
  // mutate: equivalent del,false (the ACK ending the loss state covers the probe: TlpOnAck clears
  // it first)
  tlp_.in_flight = false;
  tlp_.probe_due = false;
}

// Zero-window probing (RFC 9293 §3.8.6.1) the way Linux does it: a segment one
// below SND.UNA, which the peer must answer with an ACK carrying its window, so no
// data waits beyond the window and the probes never count as lost data.
void TcpEndpoint::OnPersistTimeout(Instant now) {
  if (++snd_.unanswered_probes > cfg_.max_retries) {
    Terminate(now, CloseReason::kTimeout, "retransmission limit",
              absl::StrCat("connection timed out: ", cfg_.max_retries,
                           " zero-window probes unanswered"));
    return;
  }
  snd_.window_probe_due = true;
  snd_.persist_backoff = std::min(snd_.persist_backoff * 2, cfg_.max_rto);
  timers_.persist = now + snd_.persist_backoff;
}

void TcpEndpoint::UpdateRtt(Instant now, Duration r) {
  (void)now;
  // RFC 6298 §2.2 and §2.3, alpha = 1/8, beta = 1/4, G = 1 ms.
  if (!rtt_.sampled) {
    tcb_.srtt = r;
    tcb_.rttvar = r / 2;
    rtt_.sampled = true;
  } else {
    tcb_.rttvar = tcb_.rttvar * 3 / 4 + absl::AbsDuration(tcb_.srtt - r) / 4;
    tcb_.srtt = tcb_.srtt * 7 / 8 + r / 8;
  }
  if (cfg_.min_rto_bounds_variance) {
    tcb_.rto = std::min(tcb_.srtt + std::max(cfg_.min_rto, 4 * tcb_.rttvar), cfg_.max_rto);
  } else {
    tcb_.rto = std::clamp(tcb_.srtt + std::max(absl::Milliseconds(1), 4 * tcb_.rttvar),
                          cfg_.min_rto, cfg_.max_rto);
  }
}

void TcpEndpoint::RestartRetransmitTimer(Instant now) { timers_.rto = now + tcb_.rto; }

Instant TcpEndpoint::NextDeadline() const {
  return std::min({timers_.rto, timers_.persist, timers_.time_wait, timers_.rack, timers_.tlp,
                   timers_.delayed_ack});
}

// ---------------------------------------------------------------------------
// Output.

SeqNum TcpEndpoint::DataStartSeq() const {
  return snd_.syn_acked ? tcb_.snd_una : tcb_.iss + 1;
}

uint32_t TcpEndpoint::FlightSize() const {
  return static_cast<uint32_t>(tcb_.snd_nxt - tcb_.snd_una);
}

uint32_t TcpEndpoint::ReceiveWindow() const {
  return static_cast<uint32_t>(std::min<size_t>(rcv_buf_.free(), 0x3fffffff));
}

uint32_t TcpEndpoint::AdvertisedWindow() const {
  return std::min<uint32_t>(ReceiveWindow() >> tcb_.rcv_wscale, 0xffff);
}

uint32_t TcpEndpoint::TsNow(Instant now) const {
  return static_cast<uint32_t>(absl::ToInt64Milliseconds(now - absl::UnixEpoch())) + snd_.ts_offset;
}

void TcpEndpoint::FillHeader(Instant now, TcpRepr& r, SeqNum seq, TcpFlags flags) {
  r.src_port = cfg_.tuple.local_port;
  r.dst_port = cfg_.tuple.remote_port;
  r.seq = seq;
  r.flags = flags;
  if (flags.has(kAck)) {
    r.ack = tcb_.rcv_nxt;
    tcb_.last_ack_sent = tcb_.rcv_nxt;
    // Every segment with an ACK acknowledges what a delayed ACK would have.
    rcv_.unacked = 0;
    timers_.delayed_ack = kNever;
  }
  if (flags.has(kSyn)) {
    r.window = static_cast<uint16_t>(std::min<uint32_t>(ReceiveWindow(), 0xffff));
  } else {
    r.window = static_cast<uint16_t>(AdvertisedWindow());
  }
  rcv_.last_adv_edge =
      tcb_.rcv_nxt + (static_cast<uint32_t>(r.window) << (flags.has(kSyn) ? 0 : tcb_.rcv_wscale));
  tcb_.rcv_wnd = static_cast<uint32_t>(r.window) << (flags.has(kSyn) ? 0 : tcb_.rcv_wscale);
  bool syn = flags.has(kSyn);
  bool synack = syn && flags.has(kAck);
  if (syn) {
    r.options.mss = cfg_.mss;
    // In a SYN-ACK, offer only what the peer's SYN offered (RFC 7323 §1.3, RFC 2018 §2).
    if (cfg_.window_scaling && (!synack || tcb_.wscale_ok))
      r.options.window_scale = tcb_.rcv_wscale;
    if (cfg_.sack && (!synack || tcb_.sack_ok)) r.options.sack_permitted = true;
    if (cfg_.timestamps && (!synack || tcb_.ts_ok))
      r.options.timestamps = Timestamps{TsNow(now), synack ? tcb_.ts_recent : 0};
  } else if (tcb_.ts_ok) {
    r.options.timestamps = Timestamps{TsNow(now), tcb_.ts_recent};
  }
}

// RFC 2018 §4: the first block holds the most recently received segment, and the
// others follow from the most recently to the least recently changed, as Linux
// keeps them. The blocks cover an out-of-order FIN as well as data: the FIN
// occupies sequence space, and a sender's scoreboard marks its last segment SACKed
// only when a block covers all of it (Linux SACKs a segment's whole seq..end_seq).
void TcpEndpoint::FillSackBlocks(TcpRepr& r) const {
  if (!tcb_.sack_ok || (rcv_.ooo_count == 0 && !rcv_.ooo_fin)) return;
  size_t room = tcb_.ts_ok ? 3 : 4;  // RFC 2018 §3: what fits beside the timestamps
  std::array<const Receiver::Range*, std::tuple_size_v<decltype(rcv_.ooo)>> by_arrival;
  for (size_t i = 0; i < rcv_.ooo_count; ++i) by_arrival[i] = &rcv_.ooo[i];
  size_t take = std::min(room, rcv_.ooo_count);
  std::partial_sort(
      by_arrival.begin(), by_arrival.begin() + take, by_arrival.begin() + rcv_.ooo_count,
      [](const Receiver::Range* a, const Receiver::Range* b) { return a->arrival > b->arrival; });
  size_t n = 0;
  bool fin_covered = false;
  for (size_t i = 0; i < take; ++i) {
    SackBlock b{by_arrival[i]->left, by_arrival[i]->right};
    if (rcv_.ooo_fin && b.right == *rcv_.ooo_fin) {
      b.right += 1;
      fin_covered = true;
    }
    r.options.sack[n++] = b;
  }
  if (rcv_.ooo_fin && !fin_covered && n < room)
    r.options.sack[n++] = {*rcv_.ooo_fin, *rcv_.ooo_fin + 1};
  r.options.sack_count = static_cast<uint8_t>(n);
}

uint32_t TcpEndpoint::EmitAt(Instant now, SeqNum seq, uint32_t max_payload,
                             absl::FunctionRef<void(const TcpRepr&)> emit) {
  SeqNum data_start = DataStartSeq();
  SeqNum data_end = data_start + static_cast<uint32_t>(snd_buf_.size());
  TcpRepr r;
  // RFC 6691: the data shrinks by the options carried beside it (SND.MSS already
  // allows for timestamps; SACK blocks take 2 + 8n bytes, padded to 4). The blocks
  // are the ones this segment carries, a held FIN's included.
  FillSackBlocks(r);
  uint32_t sack_n = r.options.sack_count;
  // mutate: equivalent 2,3 (8n + 5 and 8n + 6 round down to the same multiple of 4)
  uint32_t sack_bytes = sack_n ? (2 + 8 * sack_n + 3) / 4 * 4 : 0;
  uint32_t seg_max = tcb_.snd_mss > sack_bytes ? tcb_.snd_mss - sack_bytes : 1;
  // mutate: equivalent <,&& (outside the data, Contiguous returns nothing too)
  if (seq < data_end && seq >= data_start) {
    r.payload = snd_buf_.Contiguous(static_cast<uint32_t>(seq - data_start),
                                    std::min<uint32_t>(max_payload, seg_max));
  }
  uint32_t len = static_cast<uint32_t>(r.payload.size());
  bool fin = snd_.fin_requested && seq + len == snd_.fin_seq;
  if (len == 0 && !fin) return 0;
  TcpFlags flags(kAck);
  if (len > 0 && seq + len == data_end) flags = flags.with(kPsh);
  if (fin) flags = flags.with(kFin);
  FillHeader(now, r, seq, flags);
  emit(r);
  uint32_t consumed = len + (fin ? 1 : 0);
  if (rec_.state == Recovery::kRecovery) rec_.prr_out += consumed;
  if (seq + consumed > tcb_.snd_nxt) {
    sb_.OnSend(Max(seq, tcb_.snd_nxt), seq + consumed, now);
    if (!rtt_.timing && !tcb_.ts_ok && seq >= tcb_.snd_nxt) {
      rtt_.timing = true;
      rtt_.seq = seq + consumed;
      rtt_.start = now;
    }
    tcb_.snd_nxt = seq + consumed;
  }
  if (timers_.rto == kNever) RestartRetransmitTimer(now);
  rcv_.ack_needed = rcv_.window_update_needed = false;
  return consumed;
}

bool TcpEndpoint::RetransmitSegment(Instant now, size_t i,
                                    absl::FunctionRef<void(const TcpRepr&)> emit) {
  SeqNum at = sb_[i].start, stop = sb_[i].end;
  // A record sent again may need more than one segment (SACK blocks beside the
  // data leave less room); each piece is cut from the send buffer again.
  // mutate: equivalent <,64,++,&& (a record is at most one SMSS: a few pieces; at its end EmitAt
  // sends 0)
  for (int guard = 0; at < stop && guard < 64; ++guard) {
    uint32_t c = EmitAt(now, at, static_cast<uint32_t>(stop - at), emit);
    if (c == 0) break;
    at += c;
  }
  // mutate: equivalent false (a record lies in the buffer: some is sent)
  if (at == sb_[i].start) return false;
  sb_.OnRetransmit(i, now);
  ++rec_.retransmissions;
  rtt_.timing = false;  // Karn
  return true;
}

void TcpEndpoint::EmitData(Instant now, absl::FunctionRef<void(const TcpRepr&)> emit) {
  SeqNum end = DataStartSeq() + static_cast<uint32_t>(snd_buf_.size());
  if (snd_.fin_requested) end = snd_.fin_seq + 1;
  if (snd_.retransmit_one) {
    snd_.retransmit_one = false;
    size_t i = sb_.NextLost();
    if (i < sb_.size()) RetransmitSegment(now, i, emit);
  }
  if (tlp_.probe_due) {
    // RFC 8985 §7.3: the loss probe is one segment of new data if the peer's window
    // takes it, else the last segment sent again; cwnd does not hold it back.
    tlp_.probe_due = false;
    bool sent = false;
    int32_t wnd_room = (tcb_.snd_una + tcb_.snd_wnd) - snd_.cursor;
    // mutate: equivalent <,> (at the end, or with no room, EmitAt sends nothing and the tail goes
    // instead)
    if (snd_.cursor < end && !sb_.full() &&
        (wnd_room > 0 || (snd_.fin_requested && snd_.cursor == snd_.fin_seq))) {
      // mutate: equivalent 0 (with no room only a FIN is left: there is no byte to send)
      uint32_t c =
          EmitAt(now, snd_.cursor, static_cast<uint32_t>(std::max<int32_t>(wnd_room, 0)), emit);
      snd_.cursor += c;
      sent = c > 0;  // mutate: equivalent > (with room and data EmitAt sends a byte at least)
      tlp_.retransmitted = false;
    }
    if (!sent) {
      for (size_t k = sb_.size(); k-- > 0;) {
        if (sb_[k].sacked) continue;
        sent = RetransmitSegment(now, k, emit);
        tlp_.retransmitted = true;
        break;
      }
    }
    if (sent) {
      ++loss_stats_.tlp_probes;
      tlp_.in_flight = true;
      tlp_.end_seq = tcb_.snd_nxt;
    }
  }
  // RFC 6675 §5 NextSeg rule 1: segments deemed lost go first, in order, while
  // pipe is below cwnd.
  // mutate: equivalent 0,4096,++,> (a bound other conditions reach first; without lost bytes
  // NextLost() is size())
  for (int guard = 0; guard < 4096 && sb_.lost_bytes() > 0 && Pipe() < cc_->cwnd(); ++guard) {
    size_t i = sb_.NextLost();
    if (i >= sb_.size() || !RetransmitSegment(now, i, emit)) break;
  }
  // Rule 2: new data, within the peer's window and cwnd - pipe.
  bool sent_new = false;
  // mutate: equivalent 0,4096,<,++ (a bound on turns that other conditions end first; at the end
  // EmitAt sends 0)
  for (int guard = 0; snd_.cursor < end && guard < 4096; ++guard) {
    if (sb_.full()) break;
    int64_t cwnd_room = static_cast<int64_t>(cc_->cwnd()) - Pipe();
    int64_t wnd_room = (tcb_.snd_una + tcb_.snd_wnd) - snd_.cursor;
    int32_t room =
        static_cast<int32_t>(std::clamp<int64_t>(std::min(cwnd_room, wnd_room), -1, 0x3fffffff));
    bool fin_only = snd_.fin_requested && snd_.cursor == snd_.fin_seq;
    // mutate: equivalent <= (a room of 0 takes no byte: EmitAt sends none)
    if (room <= 0 && !fin_only) break;
    // Sender SWS avoidance (RFC 9293 §3.8.6.2.1): while segments are in flight,
    // do not cut a small segment just because the window ends; wait for ACKs.
    uint32_t queued = static_cast<uint32_t>(end - snd_.cursor);
    if (!fin_only && static_cast<uint32_t>(room) < std::min<uint32_t>(queued, tcb_.snd_mss) &&
        tcb_.snd_una != tcb_.snd_nxt && snd_.cursor >= tcb_.snd_nxt) {
      break;
    }
    // mutate: equivalent >,0 (without room only a FIN is left, at the data's end: no byte to take)
    uint32_t c = EmitAt(now, snd_.cursor, room > 0 ? static_cast<uint32_t>(room) : 0, emit);
    if (c == 0) break;
    snd_.cursor += c;
    sent_new = true;
  }
  if (sent_new) ScheduleLossProbe(now);
  // Zero window with data waiting and nothing in flight: start probing.
  bool waiting = snd_.cursor < end && !(snd_.fin_requested && snd_.cursor == snd_.fin_seq);
  if (tcb_.snd_wnd == 0 && waiting && tcb_.snd_una == tcb_.snd_nxt && timers_.persist == kNever) {
    snd_.persist_backoff = tcb_.rto;
    timers_.persist = now + snd_.persist_backoff;
  }
}

// The end of what may be sent: SND.UNA + min(SND.WND, cwnd).
SeqNum TcpEndpoint::SendLimit() const { return tcb_.snd_una + std::min(tcb_.snd_wnd, cc_->cwnd()); }

bool TcpEndpoint::HasPendingOutput() const {
  if (rst_.count > 0) return true;
  if (state_ == TcpState::kClosed || state_ == TcpState::kListen) return false;
  if (snd_.syn_due || rcv_.ack_needed || rcv_.window_update_needed || snd_.window_probe_due)
    return true;
  if (!SynAcked()) return false;
  SeqNum end = DataStartSeq() + static_cast<uint32_t>(snd_buf_.size());
  if (snd_.fin_requested) end = snd_.fin_seq + 1;
  if (snd_.retransmit_one && sb_.NextLost() < sb_.size()) return true;
  if (tlp_.probe_due) {
    // The same choice as EmitData: new data the window takes, else the last
    // segment not SACKed.
    int32_t wnd_room = (tcb_.snd_una + tcb_.snd_wnd) - snd_.cursor;
    if (snd_.cursor < end && !sb_.full() &&
        (wnd_room > 0 || (snd_.fin_requested && snd_.cursor == snd_.fin_seq))) {
      return true;
    }
    for (size_t k = sb_.size(); k-- > 0;) {
      if (!sb_[k].sacked) return true;
    }
  }
  // mutate: equivalent > (without lost bytes NextLost() is size())
  if (sb_.lost_bytes() > 0 && Pipe() < cc_->cwnd() && sb_.NextLost() < sb_.size()) return true;
  if (snd_.cursor >= end || sb_.full()) return false;
  if (snd_.fin_requested && snd_.cursor == snd_.fin_seq) return true;
  int64_t cwnd_room = static_cast<int64_t>(cc_->cwnd()) - Pipe();
  int64_t wnd_room = (tcb_.snd_una + tcb_.snd_wnd) - snd_.cursor;
  int64_t room = std::min(cwnd_room, wnd_room);
  if (room <= 0) return false;
  // The same sender SWS avoidance as EmitData: a small segment waits for ACKs.
  uint32_t queued = static_cast<uint32_t>(end - snd_.cursor);
  return !(room < std::min<uint32_t>(queued, tcb_.snd_mss) && tcb_.snd_una != tcb_.snd_nxt &&
           snd_.cursor >= tcb_.snd_nxt);
}

void TcpEndpoint::Poll(Instant now, absl::FunctionRef<void(const TcpRepr&)> emit) {
  for (size_t i = 0; i < rst_.count; ++i) {
    TcpRepr r;
    r.src_port = rst_.queue[i].src_port;
    r.dst_port = rst_.queue[i].dst_port;
    r.seq = rst_.queue[i].seq;
    r.flags = TcpFlags(kRst);
    if (rst_.queue[i].ack) {
      r.flags = r.flags.with(kAck);
      r.ack = *rst_.queue[i].ack;
    }
    emit(r);
  }
  rst_.count = 0;
  if (state_ == TcpState::kClosed || state_ == TcpState::kListen) return;

  if (snd_.syn_due) {
    snd_.syn_due = false;
    TcpRepr r;
    bool synack = state_ != TcpState::kSynSent;
    FillHeader(now, r, tcb_.iss, synack ? TcpFlags(kSyn | kAck) : TcpFlags(kSyn));
    emit(r);
    if (tcb_.snd_nxt == tcb_.iss) {
      // Karn: time only the first transmission of the SYN.
      if (!tcb_.ts_ok && rec_.retries == 0) {
        rtt_.timing = true;
        // mutate: equivalent +,1 (the only acceptable ACK here is ISS + 1)
        rtt_.seq = tcb_.iss + 1;
        rtt_.start = now;
      }
      tcb_.snd_nxt = tcb_.iss + 1;
    }
    // mutate: equivalent ==,+,1 (the ACK of the SYN brings a cursor below SND.UNA up to it)
    if (snd_.cursor == tcb_.iss) snd_.cursor = tcb_.iss + 1;
    if (timers_.rto == kNever) RestartRetransmitTimer(now);
    rcv_.ack_needed = false;
  }
  if (state_ == TcpState::kSynSent) {
    rcv_.ack_needed = rcv_.window_update_needed = false;
    return;
  }
  if (snd_.window_probe_due) {
    snd_.window_probe_due = false;
    TcpRepr r;
    FillHeader(now, r, tcb_.snd_una - 1, TcpFlags(kAck));
    emit(r);
    rcv_.ack_needed = false;
  }
  if (SynAcked() && SendsData(state_)) EmitData(now, emit);
  for (; rcv_.dup_acks_owed > 1; --rcv_.dup_acks_owed) {
    TcpRepr r;
    FillHeader(now, r, tcb_.snd_nxt, TcpFlags(kAck));
    FillSackBlocks(r);
    emit(r);
  }
  rcv_.dup_acks_owed = 0;
  if (rcv_.ack_needed || rcv_.window_update_needed) {
    TcpRepr r;
    FillHeader(now, r, tcb_.snd_nxt, TcpFlags(kAck));
    FillSackBlocks(r);
    emit(r);
    rcv_.ack_needed = rcv_.window_update_needed = false;
  }
}

}  // namespace wrench::stack
