// tcp_endpoint: one stack::TcpEndpoint driven by a script (fuzz/endpoint_script.h)
// that plays the peer and the application. After every step the harness checks its
// invariants: legal states and transitions, SND.UNA <= SND.NXT, bounded
// buffers, emitted segments that re-parse and never acknowledge unsent data, and a
// received stream that is exactly what the script sent, in order, once.
#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

#include "fuzz/check.h"
#include "fuzz/endpoint_script.h"
#include "fuzz/targets.h"
#include "stack/segment.h"
#include "stack/tcp_endpoint.h"

namespace wrench::fuzz {
namespace {

using stack::Instant;
using stack::kNever;
using stack::SeqNum;
using stack::TcpEndpoint;
using stack::TcpRepr;
using stack::TcpState;

StateReach g_reach;

// WRENCH_FUZZ_TRACE=1 prints every step, state change and emitted segment: for
// reading a reproducer, not for fuzzing.
const bool g_trace = std::getenv("WRENCH_FUZZ_TRACE") != nullptr;

// Byte patterns from a table whose length is a prime larger than any buffer, so a
// byte delivered twice or out of place shows, and filling or checking a run of
// them is a memcpy or a memcmp.
class Pattern {
 public:
  static constexpr size_t kPeriod = 1000003;
  explicit Pattern(uint64_t salt) : table_(kPeriod) {
    uint64_t x = salt;
    for (auto& b : table_) {
      x = x * 6364136223846793005ULL + 1442695040888963407ULL;
      b = static_cast<uint8_t>(x >> 56);
    }
  }
  uint8_t At(uint64_t i) const { return table_[i % kPeriod]; }
  void Fill(uint64_t start, absl::Span<uint8_t> out) const {
    size_t done = 0;
    while (done < out.size()) {
      size_t at = (start + done) % kPeriod;
      size_t n = std::min(out.size() - done, kPeriod - at);
      std::memcpy(out.data() + done, table_.data() + at, n);
      done += n;
    }
  }
  // Offset of the first byte of `b` that differs from the pattern at `start`, or -1.
  int64_t Mismatch(uint64_t start, absl::Span<const uint8_t> b) const {
    size_t done = 0;
    while (done < b.size()) {
      size_t at = (start + done) % kPeriod;
      size_t n = std::min(b.size() - done, kPeriod - at);
      if (std::memcmp(b.data() + done, table_.data() + at, n) != 0) {
        for (size_t i = 0; i < n; ++i) {
          if (b[done + i] != table_[at + i]) return static_cast<int64_t>(done + i);
        }
      }
      done += n;
    }
    return -1;
  }

 private:
  std::vector<uint8_t> table_;
};

// The script's bytes are a function of their absolute sequence number, so
// overlapping and retransmitted segments always agree on the content. (A run
// that wraps past 2^32 restarts the table at 0: still a function of seq.)
const Pattern& PeerPattern() {
  static const Pattern* p = new Pattern(0x9E3779B97F4A7C15ULL);
  return *p;
}
void FillPeerBytes(SeqNum seq, absl::Span<uint8_t> out) {
  size_t first = std::min<uint64_t>(out.size(), (uint64_t{1} << 32) - seq.raw());
  PeerPattern().Fill(seq.raw(), out.first(first));
  if (first < out.size()) PeerPattern().Fill(0, out.subspan(first));
}
int64_t PeerMismatch(SeqNum seq, absl::Span<const uint8_t> b) {
  size_t first = std::min<uint64_t>(b.size(), (uint64_t{1} << 32) - seq.raw());
  int64_t m = PeerPattern().Mismatch(seq.raw(), b.first(first));
  if (m >= 0 || first == b.size()) return m;
  m = PeerPattern().Mismatch(0, b.subspan(first));
  return m < 0 ? m : m + static_cast<int64_t>(first);
}
// The application's bytes, by offset in the endpoint's send stream.
const Pattern& AppPattern() {
  static const Pattern* p = new Pattern(0xBF58476D1CE4E5B9ULL);
  return *p;
}

bool Synchronized(TcpState s) {
  switch (s) {
    case TcpState::kClosed:
    case TcpState::kListen:
    case TcpState::kSynSent:
      return false;
    default:
      return true;
  }
}

class Harness {
 public:
  explicit Harness(const Script& script) : script_(script) {
    const ScriptHeader& h = script.header;
    stack::TcpConfig cfg;
    cfg.tuple.local_addr = stack::IpAddress::V4(0x0a000002);
    cfg.tuple.remote_addr = stack::IpAddress::V4(0x0a000001);
    cfg.tuple.local_port = 80;
    cfg.tuple.remote_port = 40000;
    cfg.window_scaling = !(h.bits & kNoWindowScaling);
    cfg.sack = !(h.bits & kNoSack);
    cfg.timestamps = !(h.bits & kNoTimestamps);
    cfg.congestion = kCongestionChoices[(h.bits & kCongestionBits) >> kCongestionShift];
    cfg.send_buffer = kBufferSizes[h.send_buffer % std::size(kBufferSizes)];
    cfg.recv_buffer = kBufferSizes[h.recv_buffer % std::size(kBufferSizes)];
    cfg.mss = kMssValues[h.mss % std::size(kMssValues)];
    uint32_t iss = h.own_iss;
    cfg.isn = [iss](const stack::FourTuple&, Instant) { return iss; };
    ep_ = std::make_unique<TcpEndpoint>(std::move(cfg));
    ep_->set_state_observer([this](const stack::StateChange& c) { OnStateChange(c); });
    send_capacity_ = std::max<size_t>(ep_->config().send_buffer, 1);
    recv_capacity_ = std::max<size_t>(ep_->config().recv_buffer, 1);
    if (!ep_->config().window_scaling) recv_capacity_ = std::min<size_t>(recv_capacity_, 0xffff);
    ++g_reach.state[0];
  }

  void Run() {
    FailureContext context([this](std::ostream& os) { PrintContext(os); });
    if (script_.header.bits & kPassiveOpen) {
      WRENCH_CHECK(ep_->Listen(now_).ok());
    } else {
      WRENCH_CHECK(ep_->Connect(now_).ok());
    }
    PollAndCheck();
    for (step_ = 0; step_ < script_.events.size(); ++step_) {
      const Event& e = script_.events[step_];
      if (g_trace) std::cerr << step_ << ": " << ToString(e) << "\n";
      int retransmissions = ep_->retransmissions();
      TcpState before = ep_->state();
      Apply(e);
      // A timer fired and retransmitted (fast retransmits come with segments).
      bool timed_out = (e.kind == EventKind::kAdvance || e.kind == EventKind::kToDeadline) &&
                       ep_->retransmissions() > retransmissions && ep_->state() == before;
      if (!e.hold) PollAndCheck(timed_out);
      CheckInvariants();
    }
    PollAndCheck();
  }

 private:
  // ---- Events ----

  void Apply(const Event& e) {
    switch (e.kind) {
      case EventKind::kSegment:
        Inject(e.seg);
        break;
      case EventKind::kSend:
        AppSendBytes(e.arg);
        break;
      case EventKind::kReceive:
        AppReceiveBytes(e.arg == 0 ? 65535 : e.arg);
        break;
      case EventKind::kClose: {
        TcpState before = ep_->state();
        bool had_fin = app_fin_.has_value();
        if (ep_->Close(now_).ok() && !had_fin &&
            (before == TcpState::kSynReceived || before == TcpState::kEstablished ||
             before == TcpState::kCloseWait)) {
          app_fin_ = app_sent_;
        }
        break;
      }
      case EventKind::kAbort:
        ep_->Abort(now_);
        WRENCH_CHECK(ep_->state() == TcpState::kClosed) << "abort left " << ep_->state();
        break;
      case EventKind::kAdvance:
        now_ += absl::Milliseconds(e.arg);
        if (ep_->NextDeadline() <= now_) ep_->OnTick(now_);
        break;
      case EventKind::kToDeadline: {
        Instant d = ep_->NextDeadline();
        if (d == kNever) break;
        WRENCH_CHECK(d >= now_ - absl::Hours(24 * 365)) << "deadline far in the past";
        now_ = std::max(now_, d);
        ep_->OnTick(now_);
        break;
      }
      case EventKind::kPoll:
        break;
    }
  }

  void AppSendBytes(uint16_t n) {
    static std::array<uint8_t, 65536> buf;
    size_t space = ep_->send_space();
    // Only what fits is read; the rest of the span is left as it is.
    AppPattern().Fill(app_sent_, absl::MakeSpan(buf.data(), std::min<size_t>(n, space)));
    auto taken = ep_->Send(now_, {buf.data(), n});
    if (!taken.ok()) return;
    WRENCH_CHECK(*taken <= n && *taken == std::min<size_t>(n, space))
        << "Send took " << *taken << " of " << n << " with " << space << " free";
    WRENCH_CHECK(!app_fin_) << "Send accepted bytes after Close";
    app_sent_ += *taken;
  }

  void AppReceiveBytes(size_t n) {
    static std::array<uint8_t, 65536> buf;
    size_t readable = ep_->readable();
    size_t got = ep_->Receive({buf.data(), n});
    WRENCH_CHECK(got == std::min(n, readable)) << "Receive returned " << got << " of " << readable;
    if (got == 0) return;
    WRENCH_CHECK(Synchronized(ep_->state()) || ever_synchronized_) << "data before the handshake";
    RefreshCoverage();
    WRENCH_CHECK(delivered_ + got <= prefix_)
        << "delivered " << delivered_ + got << " bytes but the script sent only " << prefix_
        << " contiguous bytes from RCV.NXT's start";
    SeqNum first = SeqNum(base_) + static_cast<uint32_t>(delivered_);
    int64_t bad = PeerMismatch(first, {buf.data(), got});
    WRENCH_CHECK(bad < 0) << "stream byte " << delivered_ + static_cast<uint64_t>(bad) << " (seq "
                          << first + static_cast<uint32_t>(bad)
                          << ") is not what the script sent there: delivered twice or out of order";
    delivered_ += got;
    reads_total_ += got;
  }

  SeqNum ExpectedSeq(bool syn) const {
    if (Synchronized(ep_->state())) return ep_->tcb().rcv_nxt;
    return SeqNum(script_.header.peer_iss + (syn ? 0 : 1));
  }

  void Inject(const SegmentEvent& g) {
    const TcpEndpoint::Tcb& t = ep_->tcb();
    TcpRepr r;
    r.src_port = 40000;
    r.dst_port = 80;
    r.flags = stack::TcpFlags(g.flags);
    const uint16_t len = g.len;
    bool syn = r.flags.has(stack::kSyn);
    SeqNum e = ExpectedSeq(syn);
    switch (g.seq_mode) {
      case SeqMode::kNext: r.seq = e; break;
      case SeqMode::kAhead: r.seq = e + g.seq_arg; break;
      case SeqMode::kBehind: r.seq = e - g.seq_arg; break;
      case SeqMode::kStream: r.seq = SeqNum(script_.header.peer_iss + 1 + g.seq_arg); break;
      case SeqMode::kRaw: r.seq = SeqNum(g.seq_arg * 65537u); break;
      default: r.seq = e + t.rcv_wnd - g.seq_arg; break;
    }
    switch (g.ack_mode) {
      case AckMode::kSndNxt: r.ack = t.snd_nxt; break;
      case AckMode::kSndUna: r.ack = t.snd_una; break;
      case AckMode::kUnaPlus: r.ack = t.snd_una + g.ack_arg; break;
      case AckMode::kNxtPlus: r.ack = t.snd_nxt + g.ack_arg; break;
      case AckMode::kUnaMinus: r.ack = t.snd_una - g.ack_arg; break;
      case AckMode::kIssPlus: r.ack = t.iss + 1 + g.ack_arg; break;
      default: r.ack = SeqNum(g.ack_arg * 65537u); break;
    }
    r.window = g.window;
    r.urgent = r.flags.has(stack::kUrg) ? g.option_arg : 0;
    FillOptions(g, r);
    // Payload: bytes of the script's stream at their sequence numbers.
    SeqNum data_seq = r.seq + (syn ? 1 : 0);
    static std::array<uint8_t, SegmentEvent::kMaxPayload + 1> payload;
    FillPeerBytes(data_seq, absl::MakeSpan(payload.data(), len));
    r.payload = absl::MakeConstSpan(payload.data(), len);
    if (len > 0) sent_data_.push_back({data_seq.raw(), len});
    if (r.flags.has(stack::kFin)) sent_fins_.push_back((data_seq + len).raw());
    ++segments_in_;
    if (g_trace) std::cerr << "     in  " << r << "\n";
    TcpState before = ep_->state();
    ep_->OnSegment(now_, r);
    // The MSS of the SYN that opened the connection bounds what we may send
    // (RFC 9293 §3.7.1: 536 when the option is absent).
    TcpState after = ep_->state();
    if (syn && (before == TcpState::kListen || before == TcpState::kSynSent) &&
        (after == TcpState::kSynReceived || after == TcpState::kEstablished)) {
      peer_mss_ = r.options.mss.value_or(536);
    }
  }

  void FillOptions(const SegmentEvent& g, TcpRepr& r) {
    stack::TcpOptions& o = r.options;
    if (g.options & kOptMss) o.mss = g.option_arg;
    if (g.options & kOptWscale) o.window_scale = static_cast<uint8_t>(g.option_arg & 15);
    o.sack_permitted = (g.options & kOptSackOk) != 0;
    if (g.options & kOptTs) {
      peer_ts_ += 1 + (g.option_arg & 0xff);
      o.timestamps = stack::Timestamps{peer_ts_, (g.options & kOptTsEcrZero) ? 0 : last_tsval_};
    }
    int blocks = (g.options & kOptSackMask) >> 4;
    const auto& t = ep_->tcb();
    for (int k = 0; k < blocks; ++k) {
      SeqNum left = t.snd_una + static_cast<uint32_t>((g.option_arg & 0xff) * (k + 1));
      o.sack[k] = {left, left + static_cast<uint32_t>(1 + (g.option_arg >> 8))};
    }
    o.sack_count = static_cast<uint8_t>(blocks);
    if (g.options & kOptUnknown) {
      static constexpr uint8_t kMptcp[] = {0x00, 0x81};
      o.raw[0] = {30, absl::MakeConstSpan(kMptcp)};
      o.raw_count = 1;
    }
    while (o.EmittedLen() > 40 && o.sack_count > 0) o.sack[--o.sack_count] = {};
  }

  // ---- The peer's view of what it sent ----

  // Keeps the contiguous prefix of the script's stream (from IRS+1) that the data
  // it sent covers, incrementally; from scratch when the IRS moves.
  void RefreshCoverage() {
    if (!Synchronized(ep_->state()) && !ever_synchronized_) return;
    uint32_t base = (ep_->tcb().irs + 1).raw();
    if (base != base_ || !base_known_) {
      WRENCH_CHECK(delivered_ == 0)
          << "IRS changed after " << delivered_ << " bytes were delivered";
      base_ = base;
      base_known_ = true;
      prefix_ = 0;
      pending_.clear();
      covered_ = 0;
    }
    // Data segments not yet counted, relative to base_ (signed: data just
    // before the start may overlap it).
    for (; covered_ < sent_data_.size(); ++covered_) {
      const auto& [seq, len] = sent_data_[covered_];
      int64_t start = static_cast<int32_t>(seq - base_);
      pending_.push_back({start, start + len});
    }
    bool grew = true;
    while (grew) {
      grew = false;
      for (size_t i = 0; i < pending_.size();) {
        auto [s, e] = pending_[i];
        if (s <= static_cast<int64_t>(prefix_)) {
          if (e > static_cast<int64_t>(prefix_)) {
            prefix_ = static_cast<uint64_t>(e);
            grew = true;
          }
          pending_[i] = pending_.back();
          pending_.pop_back();
        } else {
          ++i;
        }
      }
    }
    fin_at_prefix_ = false;
    for (uint32_t fin : sent_fins_) {
      int64_t at = static_cast<int32_t>(fin - base_);
      if (at >= 0 && at <= static_cast<int64_t>(prefix_)) fin_at_prefix_ = true;
    }
  }

  // The largest RCV.NXT the endpoint may have: IRS + 1 + covered prefix (+1 for a FIN).
  SeqNum MaxRcvNxt() {
    RefreshCoverage();
    return SeqNum(base_) + static_cast<uint32_t>(prefix_) + (fin_at_prefix_ ? 1 : 0);
  }

  // ---- Output ----

  // `timed_out`: a retransmission timer fired since the last Poll.
  void PollAndCheck(bool timed_out = false) {
    bool pending = ep_->HasPendingOutput();
    int emitted = 0;
    ep_->Poll(now_, [&](const TcpRepr& seg) {
      ++emitted;
      CheckEmitted(seg);
    });
    // RFC 6298 §5.4: on a retransmission timeout, retransmit.
    WRENCH_CHECK(!timed_out || emitted > 0)
        << "a retransmission timeout in " << ep_->state() << " sent nothing";
    WRENCH_CHECK(pending || emitted == 0)
        << "Poll emitted " << emitted << " segments after HasPendingOutput() said none were due";
    WRENCH_CHECK(!pending || emitted > 0)
        << "HasPendingOutput() said output was due but Poll emitted nothing";
    CheckTimers();
  }

  void CheckEmitted(const TcpRepr& seg) {
    // Re-emit and re-parse inside an IPv4 datagram.
    stack::Segment whole =
        stack::MakeSegment(ep_->tuple().local_addr, ep_->tuple().remote_addr, seg);
    static std::array<uint8_t, 65536 + 120> buf;
    // RFC 6691: payload and TCP options together within the peer's MSS (one byte
    // of payload is always allowed, or a tiny MSS would stop the connection).
    size_t options = seg.header_len() - 20;
    bool over_mss =
        peer_mss_ && seg.payload.size() > 1 && seg.payload.size() + options > *peer_mss_;
    WRENCH_CHECK(!over_mss)
        << seg.payload.size() << " bytes of payload and " << options
        << " of options exceed the peer's MSS " << *peer_mss_ << ": " << seg;
    auto n = stack::EmitSegment(whole, absl::MakeSpan(buf));
    WRENCH_CHECK(n.ok()) << "emitted segment does not emit: " << n.status() << ": " << seg;
    auto back = stack::ParseSegment({buf.data(), *n});
    WRENCH_CHECK(back.ok()) << "emitted segment does not parse: " << back.status() << ": " << seg;
    WRENCH_CHECK(back->tcp == seg) << "re-parsed " << back->tcp << " != emitted " << seg;
    if (seg.options.timestamps) last_tsval_ = seg.options.timestamps->value;
    ++segments_out_;
    if (g_trace) std::cerr << "     out " << seg << "\n";

    if (seg.flags.has(stack::kRst)) return;
    TcpState st = ep_->state();
    WRENCH_CHECK(st != TcpState::kClosed && st != TcpState::kListen)
        << "a non-RST segment in " << st << ": " << seg;
    const TcpEndpoint::Tcb& t = ep_->tcb();
    if (seg.flags.has(stack::kSyn)) {
      WRENCH_CHECK(seg.seq == t.iss) << "SYN at " << seg.seq << ", ISS is " << t.iss;
    }
    WRENCH_CHECK(seg.payload.size() <= t.snd_mss)
        << seg.payload.size() << " bytes of payload, SND.MSS is " << t.snd_mss;
    if (peer_mss_) {
      WRENCH_CHECK(seg.payload.size() <= std::max<uint16_t>(*peer_mss_, 1))
          << seg.payload.size() << " bytes of payload, the peer's SYN said MSS " << *peer_mss_;
    }
    if (!seg.payload.empty()) {
      // New data goes only into the window the peer offered (RFC 9293 §3.8.6).
      SeqNum end = seg.seq + static_cast<uint32_t>(seg.payload.size());
      WRENCH_CHECK(end <= t.snd_nxt || end <= t.snd_una + t.snd_wnd)
          << "new data up to " << end << " beyond the window " << t.snd_una << "+" << t.snd_wnd;
    }
    if (!seg.payload.empty()) {
      SeqNum first = seg.seq + (seg.flags.has(stack::kSyn) ? 1 : 0);
      int64_t offset = static_cast<int32_t>(first - (t.iss + 1));
      WRENCH_CHECK(offset >= 0 && static_cast<uint64_t>(offset) + seg.payload.size() <= app_sent_)
          << "data at stream offset " << offset << " (" << seg.payload.size()
          << " bytes), the application sent " << app_sent_;
      int64_t bad = AppPattern().Mismatch(static_cast<uint64_t>(offset), seg.payload);
      WRENCH_CHECK(bad < 0) << "sent byte at stream offset " << offset + bad
                            << " differs from what the application queued";
    }
    if (seg.flags.has(stack::kFin)) {
      WRENCH_CHECK(app_fin_.has_value()) << "FIN without Close: " << seg;
      SeqNum fin = seg.seq + static_cast<uint32_t>(seg.payload.size());
      WRENCH_CHECK(fin == t.iss + 1 + static_cast<uint32_t>(*app_fin_))
          << "FIN at stream offset " << static_cast<int32_t>(fin - (t.iss + 1))
          << ", Close was called after " << *app_fin_ << " bytes";
    }
    if (seg.flags.has(stack::kAck) && Synchronized(st)) {
      SeqNum max = MaxRcvNxt();
      WRENCH_CHECK(seg.ack <= max) << "acknowledges " << static_cast<int32_t>(seg.ack - max)
                                   << " bytes never received: ack " << seg.ack
                                   << ", the script sent up to " << max << ": " << seg;
    }
  }

  // A connection with something outstanding must have a timer running, or it can
  // hang forever.
  std::string DescribeTimers() const {
    auto t = ep_->timers();
    std::string out;
    auto one = [&](const char* name, Instant at) {
      if (at != kNever) absl::StrAppend(&out, " ", name, "=+", absl::FormatDuration(at - now_));
    };
    one("rto", t.rto);
    one("persist", t.persist);
    one("time-wait", t.time_wait);
    one("rack", t.rack);
    one("tlp", t.tlp);
    one("delayed-ack", t.delayed_ack);
    return out.empty() ? std::string(" (no timer)") : absl::StrCat(" (timers:", out, ")");
  }

  // The earliest timer that can retransmit, probe or end the connection. The
  // delayed-ACK timer is left out: it only sends an ACK for data received, so it
  // may run on an idle connection and cannot keep a stalled one alive.
  Instant SendingDeadline() const {
    auto t = ep_->timers();
    return std::min({t.rto, t.persist, t.time_wait, t.rack, t.tlp});
  }

  void CheckTimers() {
    TcpState st = ep_->state();
    const auto& t = ep_->tcb();
    bool needs = false;
    switch (st) {
      case TcpState::kSynSent:
      case TcpState::kSynReceived:
      case TcpState::kFinWait1:
      case TcpState::kClosing:
      case TcpState::kLastAck:
      case TcpState::kTimeWait:
        needs = true;
        break;
      case TcpState::kEstablished:
      case TcpState::kCloseWait:
        needs = t.snd_una != t.snd_nxt || ep_->send_queue() > 0;
        // Nothing outstanding, nothing to send: a sending timer now could only
        // time the connection out for no reason.
        WRENCH_CHECK(needs || SendingDeadline() == kNever)
            << "a timer runs in " << st << " with nothing outstanding (SND.UNA == SND.NXT, "
            << "nothing queued): the idle connection would time out" << DescribeTimers();
        break;
      default:
        break;
    }
    WRENCH_CHECK(!needs || SendingDeadline() != kNever)
        << "no timer in " << st << " with SND.UNA=" << t.snd_una << " SND.NXT=" << t.snd_nxt
        << " send queue " << ep_->send_queue() << " SND.WND=" << t.snd_wnd << DescribeTimers();
  }

  // ---- After every step ----

  void OnStateChange(const stack::StateChange& c) {
    WRENCH_CHECK(c.from == observed_) << "change reported from " << c.from << ", last state was "
                                      << observed_;
    WRENCH_CHECK(stack::IsLegalTransition(c.from, c.to))
        << c.from << " -> " << c.to << " (" << c.cause << ") is not an edge of RFC 9293";
    WRENCH_CHECK(c.at == now_) << "change stamped at another time";
    if (g_trace) std::cerr << "     " << c.from << " -> " << c.to << " (" << c.cause << ")\n";
    auto f = static_cast<size_t>(c.from), to = static_cast<size_t>(c.to);
    ++g_reach.state[to];
    ++g_reach.edge[f][to];
    observed_ = c.to;
    if (Synchronized(c.to)) ever_synchronized_ = true;
    if (c.to == TcpState::kListen && c.from == TcpState::kSynReceived) {
      // Back to LISTEN: a new connection may follow with new ISS/IRS; what the
      // application queued was flushed.
      WRENCH_CHECK(ep_->send_queue() == 0)
          << "back in LISTEN (" << c.cause << ") with " << ep_->send_queue()
          << " bytes queued for the abandoned connection";
      ever_synchronized_ = false;
      base_known_ = false;
      if (ep_->send_queue() == 0) {
        app_sent_before_ += app_sent_;
        app_sent_ = 0;
        app_fin_.reset();
      }
    }
    if (c.to == TcpState::kSynSent || c.to == TcpState::kSynReceived) had_iss_ = true;
  }

  void CheckInvariants() {
    TcpState st = ep_->state();
    WRENCH_CHECK(static_cast<int>(st) < stack::kTcpStateCount) << "state out of range";
    WRENCH_CHECK(st == observed_) << "state " << st << " changed without a report (last "
                                  << observed_ << ")";
    const auto& t = ep_->tcb();
    WRENCH_CHECK(ep_->send_queue() + ep_->send_space() == send_capacity_)
        << "send ring " << ep_->send_queue() << " + " << ep_->send_space()
        << " != " << send_capacity_;
    WRENCH_CHECK(ep_->readable() <= recv_capacity_)
        << ep_->readable() << " readable bytes in a " << recv_capacity_ << "-byte ring";
    WRENCH_CHECK(ep_->bytes_received() == reads_total_)
        << "bytes_received() " << ep_->bytes_received() << " != bytes read " << reads_total_;
    if (had_iss_) {
      WRENCH_CHECK(t.snd_una <= t.snd_nxt) << "SND.UNA " << t.snd_una << " > SND.NXT " << t.snd_nxt;
      uint32_t flight = static_cast<uint32_t>(t.snd_nxt - t.snd_una);
      WRENCH_CHECK(flight <= send_capacity_ + 2)
          << flight << " bytes in flight, ring " << send_capacity_;
      if (st != TcpState::kClosed) {
        uint64_t max_nxt = 1 + app_sent_ + (app_fin_ ? 1 : 0);
        int64_t nxt = static_cast<int32_t>(t.snd_nxt - t.iss);
        WRENCH_CHECK(nxt >= 0 && static_cast<uint64_t>(nxt) <= max_nxt)
            << "SND.NXT is ISS+" << nxt << ", the application sent " << app_sent_
            << (app_fin_ ? " and closed" : "");
      }
    }
    if (Synchronized(st)) {
      SeqNum max = MaxRcvNxt();
      WRENCH_CHECK(t.rcv_nxt <= max)
          << "RCV.NXT " << t.rcv_nxt << " is beyond what the script sent (" << max << ")";
      WRENCH_CHECK(delivered_ + ep_->readable() <= prefix_)
          << delivered_ << " bytes read + " << ep_->readable() << " readable > " << prefix_
          << " sent";
    }
    if (ep_->fin_received() && Synchronized(st)) {
      RefreshCoverage();
      uint32_t fin = (t.rcv_nxt - 1).raw();
      bool sent = std::find(sent_fins_.begin(), sent_fins_.end(), fin) != sent_fins_.end();
      WRENCH_CHECK(sent) << "FIN taken at " << fin << " where the script sent none";
    }
    WRENCH_CHECK(ep_->bytes_acked() <= app_sent_total())
        << "bytes_acked " << ep_->bytes_acked() << " > sent " << app_sent_total();
  }

  uint64_t app_sent_total() const { return app_sent_ + app_sent_before_; }

  void PrintContext(std::ostream& os) {
    os << "    tcp_endpoint script: " << ToString(script_.header) << "\n";
    size_t from = step_ > 40 ? step_ - 40 : 0;
    for (size_t i = from; i <= step_ && i < script_.events.size(); ++i) {
      os << (i == step_ ? "  > " : "    ") << i << ": " << ToString(script_.events[i]) << "\n";
    }
    const auto& t = ep_->tcb();
    os << "    state " << ep_->state() << " ISS " << t.iss << " SND.UNA " << t.snd_una
       << " SND.NXT " << t.snd_nxt << " SND.WND " << t.snd_wnd << " IRS " << t.irs << " RCV.NXT "
       << t.rcv_nxt << " RCV.WND " << t.rcv_wnd << " | app sent " << app_sent_ << " read "
       << delivered_ << " | now +" << absl::FormatDuration(now_ - absl::UnixEpoch()) << "\n";
  }

  const Script& script_;
  std::unique_ptr<TcpEndpoint> ep_;
  Instant now_ = absl::UnixEpoch() + absl::Seconds(1000);
  size_t step_ = 0;
  TcpState observed_ = TcpState::kClosed;
  size_t send_capacity_ = 0, recv_capacity_ = 0;
  bool had_iss_ = false;
  bool ever_synchronized_ = false;

  // The script as peer: data and FINs it sent, by absolute sequence number.
  std::vector<std::pair<uint32_t, uint32_t>> sent_data_;
  std::vector<uint32_t> sent_fins_;
  std::vector<std::pair<int64_t, int64_t>> pending_;  // not yet joined to the prefix
  size_t covered_ = 0;                                 // sent_data_ entries counted
  bool base_known_ = false;
  uint32_t base_ = 0;  // IRS + 1
  uint64_t prefix_ = 0;
  bool fin_at_prefix_ = false;
  uint64_t delivered_ = 0;
  uint64_t reads_total_ = 0;
  uint32_t peer_ts_ = 1;
  std::optional<uint16_t> peer_mss_;
  uint32_t last_tsval_ = 0;

  // The script as application.
  uint64_t app_sent_ = 0;
  uint64_t app_sent_before_ = 0;
  std::optional<uint64_t> app_fin_;

  uint64_t segments_in_ = 0, segments_out_ = 0;
};

}  // namespace

int FuzzTcpEndpoint(const uint8_t* data, size_t size) {
  Script script = ParseScript({data, size});
  Harness h(script);
  h.Run();
  return 0;
}

const StateReach& TcpEndpointStateReach() { return g_reach; }

std::string StateReachSummary(const StateReach& r) {
  std::ostringstream os;
  int states = 0, edges = 0, legal = 0;
  for (int i = 0; i < stack::kTcpStateCount; ++i) states += r.state[i] > 0;
  os << "states reached " << states << "/" << stack::kTcpStateCount << ":";
  for (int i = 0; i < stack::kTcpStateCount; ++i) {
    os << " " << stack::StateName(static_cast<TcpState>(i)) << "=" << r.state[i];
  }
  std::string missing;
  for (int f = 0; f < stack::kTcpStateCount; ++f) {
    for (int t = 0; t < stack::kTcpStateCount; ++t) {
      if (!stack::IsLegalTransition(static_cast<TcpState>(f), static_cast<TcpState>(t))) continue;
      ++legal;
      if (r.edge[f][t] > 0) {
        ++edges;
      } else {
        missing += std::string(" ") + std::string(stack::StateName(static_cast<TcpState>(f))) +
                   "->" + std::string(stack::StateName(static_cast<TcpState>(t)));
      }
    }
  }
  os << "\ntransitions taken " << edges << "/" << legal;
  if (!missing.empty()) os << "; never:" << missing;
  return os.str();
}

}  // namespace wrench::fuzz
