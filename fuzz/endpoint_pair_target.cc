// endpoint_pair: two stack::TcpEndpoints in the deterministic simulator. The input
// configures them and then gives one link verdict (pass, drop, duplicate, delay)
// per segment; when the verdicts run out the link is clean, and from then on
// every byte sent each way must arrive intact and both ends must reach CLOSED.
#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "fuzz/check.h"
#include "fuzz/endpoint_pair.h"
#include "fuzz/targets.h"
#include "stack/simulator.h"

namespace wrench::fuzz {
namespace {

using stack::Side;
using stack::Simulator;
using stack::TcpEndpoint;
using stack::TcpState;

constexpr size_t kBuffers[] = {4096, 100, 16384, 70000};
constexpr uint16_t kMss[] = {1460, 536, 100, 9000, 1220, 65535, 64, 1400};
constexpr stack::Duration kLatency[] = {absl::Milliseconds(1),   absl::Milliseconds(5),
                                        absl::Milliseconds(10),  absl::Milliseconds(50),
                                        absl::Milliseconds(100), absl::Milliseconds(200),
                                        absl::Microseconds(10),  absl::Milliseconds(1)};
// WRENCH_FUZZ_TRACE=1 prints every segment with the sender's TCB (for reading a
// reproducer).
const bool g_trace = std::getenv("WRENCH_FUZZ_TRACE") != nullptr;

// After the last verdict, the pair has this long (virtual time) to finish.
constexpr stack::Duration kCleanLimit = absl::Minutes(10);

stack::TcpConfig Config(const PairConfig& c, Side s) {
  bool a = s == Side::kA;
  stack::TcpConfig cfg;
  cfg.tuple.local_addr = stack::IpAddress::V4(a ? 0x0a000001 : 0x0a000002);
  cfg.tuple.remote_addr = stack::IpAddress::V4(a ? 0x0a000002 : 0x0a000001);
  cfg.tuple.local_port = a ? 40000 : 80;
  cfg.tuple.remote_port = a ? 80 : 40000;
  uint8_t off = a ? c.a_options_off : c.b_options_off;
  cfg.window_scaling = !(off & 1);
  cfg.sack = !(off & 2);
  cfg.timestamps = !(off & 4);
  cfg.congestion = off & 8 ? stack::CongestionAlgorithm::kBbr : stack::CongestionAlgorithm::kCubic;
  uint8_t bufs = a ? c.a_buffers : c.b_buffers;
  cfg.send_buffer = kBuffers[bufs & 3];
  cfg.recv_buffer = kBuffers[(bufs >> 2) & 3];
  cfg.mss = kMss[(a ? c.a_mss : c.b_mss) % std::size(kMss)];

  uint32_t isn = a ? c.a_iss : c.b_iss;
  cfg.isn = [isn](const stack::FourTuple&, stack::Instant) { return isn; };
  cfg.msl = absl::Milliseconds(500 * (1 + (c.msl & 7)));
  // Faults are bounded by the input, not by retry limits: a long run of drops must
  // not end the connection, or "every byte arrives" could not be asked.
  cfg.syn_retries = 100000;
  cfg.max_retries = 100000;
  cfg.max_rto = absl::Seconds(10);
  return cfg;
}

class PairRun {
 public:
  PairRun(const PairConfig& c, absl::Span<const uint8_t> verdicts, bool trace)
      : c_(c),
        verdicts_(verdicts),
        sim_(Config(c, Side::kA), Config(c, Side::kB), Options(c, trace)) {}

  static Simulator::Options Options(const PairConfig& c, bool trace) {
    Simulator::Options o;
    o.latency = kLatency[c.latency % std::size(kLatency)];
    o.trace = trace;
    o.seed = 1;
    return o;
  }

  // True when the pair ended as it must.
  bool Run() {
    sim_.set_filter([this](Side from, const stack::TcpRepr& seg) {
      stack::LinkVerdict v = NextVerdict();
      if (g_trace) {
        const auto& t = sim_.endpoint(from).tcb();
        std::cerr << absl::FormatDuration(sim_.now() - absl::UnixEpoch()) << " " << SideName(from)
                  << " " << sim_.endpoint(from).state() << " sends " << seg
                  << (v.drop ? " [drop]" : "") << (v.extra_copies ? " [dup]" : "") << " | UNA "
                  << t.snd_una << " NXT " << t.snd_nxt << " WND " << t.snd_wnd << " cwnd " << t.cwnd
                  << "\n";
      }
      return v;
    });
    stall_until_[0] = sim_.now() + absl::Milliseconds(100) * c_.a_read_stall;
    stall_until_[1] = sim_.now() + absl::Milliseconds(100) * c_.b_read_stall;
    sim_.set_auto_read(Side::kA, c_.a_read_stall == 0);
    sim_.set_auto_read(Side::kB, c_.b_read_stall == 0);
    if (c_.simultaneous_open) {
      ok_ &= sim_.a().Connect(sim_.now()).ok();
      ok_ &= sim_.b().Connect(sim_.now()).ok();
    } else {
      ok_ &= sim_.b().Listen(sim_.now()).ok();
      ok_ &= sim_.a().Connect(sim_.now()).ok();
    }
    StartApps();
    // Faults last while verdicts remain; the clean phase is bounded.
    auto both_closed = [this] {
      Drive();
      return sim_.a().state() == TcpState::kClosed && sim_.b().state() == TcpState::kClosed;
    };
    bool done = false;
    // Stop when a stalled reader wakes up, so it reads then (the simulator would
    // jump over an idle stretch otherwise).
    stack::Instant wake[2] = {std::min(stall_until_[0], stall_until_[1]),
                              std::max(stall_until_[0], stall_until_[1])};
    for (stack::Instant t : wake) {
      if (!done && t > sim_.now()) done = sim_.RunUntil(both_closed, t - sim_.now());
    }
    // A minute without a segment on the link ends the faults: the verdicts left
    // would never be used.
    while (!done && cursor_ < verdicts_.size()) {
      size_t before = cursor_;
      done = sim_.RunUntil(both_closed, absl::Minutes(1));
      if (cursor_ == before) cursor_ = verdicts_.size();
    }
    clean_from_ = sim_.now();
    StallBound();
    finished_ = done || sim_.RunUntil(both_closed, kCleanLimit);
    // A stalled reader may still hold bytes that arrived: it reads them now.
    sim_.set_auto_read(Side::kA, true);
    sim_.set_auto_read(Side::kB, true);
    sim_.Flush();
    // Bytes that only the final reads took (both ends closed while a reader was
    // stalled) are delivered now: no step of the simulation follows to note it.
    if (delivered_at_ == stack::kNever && sim_.received_ok(Side::kB) == c_.a_bytes() &&
        sim_.received_ok(Side::kA) == c_.b_bytes() && sim_.a().fin_received() &&
        sim_.b().fin_received()) {
      delivered_at_ = sim_.now();
    }
    return finished_ && ok_ && delivered_at_ <= clean_from_ + stall_bound_ &&
           sim_.received_ok(Side::kB) == c_.a_bytes() &&
           sim_.received_ok(Side::kA) == c_.b_bytes() && sim_.received_bad(Side::kA) == 0 &&
           sim_.received_bad(Side::kB) == 0;
  }

  // How long after the link turned clean the transfer may take: the timer either
  // side has pending (a backed-off RTO or persist timer) fires once, segments the
  // link still holds arrive (up to 5 s late), and then every round trip moves at
  // least half the smaller buffer; 64 round trips more for slow start and the FINs.
  // A pair that waits for timers over and over (a stall) fails the check.
  void StallBound() {
    stack::Duration wait = absl::ZeroDuration();
    size_t min_buffer = SIZE_MAX;
    for (Side s : {Side::kA, Side::kB}) {
      const TcpEndpoint& ep = sim_.endpoint(s);
      wait = std::max(wait, ep.tcb().rto);
      if (ep.NextDeadline() != stack::kNever) {
        wait = std::max(wait, std::min(ep.NextDeadline() - sim_.now(), ep.config().max_rto));
      }
      min_buffer = std::min({min_buffer, ep.config().send_buffer, ep.config().recv_buffer});
    }
    uint64_t left = (c_.a_bytes() - std::min(c_.a_bytes(), sim_.received_ok(Side::kB))) +
                    (c_.b_bytes() - std::min(c_.b_bytes(), sim_.received_ok(Side::kA)));
    double rtts = 64 + 2.0 * static_cast<double>(left) /
                           static_cast<double>(std::max<size_t>(min_buffer / 2, 1));
    stack::Duration rtt = 2 * kLatency[c_.latency % std::size(kLatency)];
    // A round trip that carries less than two full segments (a small window or
    // buffer) ends in the receiver's delayed-ACK timer, as on Linux.
    stack::Duration delack = absl::ZeroDuration();
    for (Side s : {Side::kA, Side::kB}) {
      const stack::TcpConfig& cfg = sim_.endpoint(s).config();
      if (cfg.delayed_ack) delack = std::max(delack, cfg.delayed_ack_timeout);
    }
    rtt += delack;
    stall_bound_ = wait + absl::Seconds(5) + rtt * rtts + absl::Seconds(1);
  }

  void CheckTransitions() {
    for (Side s : {Side::kA, Side::kB}) {
      TcpState last = TcpState::kClosed;
      for (const stack::StateChange& ch : sim_.changes(s)) {
        WRENCH_CHECK(ch.from == last)
            << SideName(s) << ": change from " << ch.from << " after " << last;
        WRENCH_CHECK(stack::IsLegalTransition(ch.from, ch.to))
            << SideName(s) << ": " << ch.from << " -> " << ch.to << " is not an RFC 9293 edge";
        last = ch.to;
      }
    }
  }

  std::string Report() {
    std::ostringstream os;
    os << "    endpoint_pair: " << ToString(c_) << "\n";
    os << "    verdicts used " << cursor_ << "/" << verdicts_.size() << ", link clean from +"
       << absl::FormatDuration(clean_from_ - absl::UnixEpoch()) << "\n";
    for (Side s : {Side::kA, Side::kB}) {
      TcpEndpoint& ep = sim_.endpoint(s);
      os << "    " << SideName(s) << ": " << ep.state() << " ("
         << stack::CloseReasonName(ep.close_reason())
         << (ep.error().empty() ? "" : ": " + ep.error()) << "), received " << sim_.received_ok(s)
         << " of " << (s == Side::kA ? c_.b_bytes() : c_.a_bytes()) << " (" << sim_.received_bad(s)
         << " bad), send queue " << ep.send_queue() << ", readable " << ep.readable()
         << ", next deadline "
         << (ep.NextDeadline() == stack::kNever
                 ? std::string("none")
                 : absl::FormatDuration(ep.NextDeadline() - absl::UnixEpoch()))
         << "\n        SND.UNA=" << ep.tcb().snd_una << " SND.NXT=" << ep.tcb().snd_nxt
         << " SND.WND=" << ep.tcb().snd_wnd << " RCV.NXT=" << ep.tcb().rcv_nxt
         << " RCV.WND=" << ep.tcb().rcv_wnd << " cwnd=" << ep.tcb().cwnd
         << " retransmissions=" << ep.retransmissions() << "\n";
    }
    os << "    finished " << finished_ << " at +"
       << absl::FormatDuration(sim_.now() - absl::UnixEpoch()) << ", delivered at +"
       << (delivered_at_ == stack::kNever ? std::string("never")
                                          : absl::FormatDuration(delivered_at_ - absl::UnixEpoch()))
       << " (bound: clean + " << absl::FormatDuration(stall_bound_) << ")\n";
    return os.str();
  }

  Simulator& sim() { return sim_; }

 private:
  stack::LinkVerdict NextVerdict() {
    stack::LinkVerdict v;
    if (cursor_ >= verdicts_.size()) return v;
    uint8_t b = verdicts_[cursor_++];
    if (b < 0x80) return v;
    if (b < 0xa0) {
      v.drop = true;
    } else if (b < 0xc0) {
      v.extra_copies = 1 + (b & 1);
      v.extra_delay = absl::Milliseconds(5 * ((b >> 1) & 0x0f));
    } else if ((b & 0x3f) == 0x3f) {
      v.extra_delay = absl::Seconds(5);
    } else {
      v.extra_delay = absl::Milliseconds(10 * (1 + (b & 0x3f)));
    }
    return v;
  }

  void StartApps() {
    switch (c_.mode) {
      case PairMode::kBothSendAndClose:
        sim_.StartTransfer(Side::kA, c_.a_bytes(), true);
        sim_.StartTransfer(Side::kB, c_.b_bytes(), true);
        break;
      case PairMode::kHalfCloseRequest:
        sim_.StartTransfer(Side::kA, c_.a_bytes(), true);
        break;
      case PairMode::kRequestResponse:
        sim_.StartTransfer(Side::kA, c_.a_bytes(), false);
        break;
      case PairMode::kServerClosesFirst:
        sim_.StartTransfer(Side::kB, c_.b_bytes(), true);
        sim_.StartTransfer(Side::kA, c_.a_bytes(), false);
        break;
    }
  }

  // The applications' next moves; called at every step of the simulation.
  void Drive() {
    for (Side s : {Side::kA, Side::kB}) {
      size_t i = s == Side::kA ? 0 : 1;
      if (!reading_[i] && sim_.now() >= stall_until_[i]) {
        reading_[i] = true;
        sim_.set_auto_read(s, true);
      }
    }
    TcpEndpoint& a = sim_.a();
    TcpEndpoint& b = sim_.b();
    if (delivered_at_ == stack::kNever && sim_.received_ok(Side::kB) == c_.a_bytes() &&
        sim_.received_ok(Side::kA) == c_.b_bytes() && a.fin_received() && b.fin_received()) {
      delivered_at_ = sim_.now();
    }
    switch (c_.mode) {
      case PairMode::kBothSendAndClose:
        break;
      case PairMode::kHalfCloseRequest:
        // The server answers once it has read the whole request and its FIN.
        StartOnce(b_started_, Side::kB, b.eof());
        break;
      case PairMode::kRequestResponse:
        StartOnce(b_started_, Side::kB,
                  sim_.received_ok(Side::kB) == c_.a_bytes() &&
                      (b.state() == TcpState::kEstablished ||
                       b.state() == TcpState::kSynReceived));
        // The client closes after the whole response and the server's FIN.
        if (!a_closed_ && a.eof() && a.state() == TcpState::kCloseWait) {
          a_closed_ = true;
          ok_ &= a.Close(sim_.now()).ok();
        }
        break;
      case PairMode::kServerClosesFirst:
        // The client sends (and then closes) once the server's FIN arrived.
        StartOnce(a_closed_, Side::kA, a.fin_received());
        break;
    }
  }

  // Starts `side`'s whole transfer, closing after it, the first time `when` holds.
  void StartOnce(bool& started, Side side, bool when) {
    if (started || !when) return;
    started = true;
    sim_.StartTransfer(side, side == Side::kA ? c_.a_bytes() : c_.b_bytes(), true);
  }

  PairConfig c_;
  absl::Span<const uint8_t> verdicts_;
  size_t cursor_ = 0;
  Simulator sim_;
  stack::Instant stall_until_[2];
  bool reading_[2] = {false, false};
  bool b_started_ = false, a_closed_ = false;
  bool ok_ = true;
  bool finished_ = false;
  stack::Instant clean_from_;
  stack::Instant delivered_at_ = stack::kNever;
  stack::Duration stall_bound_ = absl::InfiniteDuration();
};

}  // namespace

PairConfig ParsePairConfig(absl::Span<const uint8_t> bytes) {
  auto at = [&](size_t i) -> uint8_t { return i < bytes.size() ? bytes[i] : 0; };
  auto u32 = [&](size_t i) {
    return (uint32_t{at(i)} << 24) | (uint32_t{at(i + 1)} << 16) | (uint32_t{at(i + 2)} << 8) |
           at(i + 3);
  };
  PairConfig c;
  c.simultaneous_open = at(0) & 1;
  c.mode = static_cast<PairMode>((at(0) >> 1) & 3);
  c.trace = (at(0) >> 3) & 1;
  c.msl = (at(0) >> 4) & 7;
  c.a_options_off = at(1) & 15;
  c.b_options_off = (at(1) >> 4) & 15;
  c.a_size = at(2) & 15;
  c.b_size = at(2) >> 4;
  c.a_buffers = at(3) & 15;
  c.b_buffers = at(3) >> 4;
  c.a_mss = at(4) & 15;
  c.b_mss = at(4) >> 4;
  c.a_read_stall = at(5);
  c.b_read_stall = at(6);
  c.latency = at(7);
  c.a_iss = u32(8);
  c.b_iss = u32(12);
  return c;
}

std::vector<uint8_t> SerializePairConfig(const PairConfig& c) {
  std::vector<uint8_t> b(PairConfig::kSize);
  b[0] = static_cast<uint8_t>((c.simultaneous_open ? 1 : 0) | (static_cast<int>(c.mode) << 1) |
                              (c.trace ? 8 : 0) | ((c.msl & 7) << 4));
  b[1] = static_cast<uint8_t>((c.a_options_off & 15) | ((c.b_options_off & 15) << 4));
  b[2] = static_cast<uint8_t>((c.a_size & 15) | (c.b_size << 4));
  b[3] = static_cast<uint8_t>((c.a_buffers & 15) | (c.b_buffers << 4));
  b[4] = static_cast<uint8_t>((c.a_mss & 15) | (c.b_mss << 4));
  b[5] = c.a_read_stall;
  b[6] = c.b_read_stall;
  b[7] = c.latency;
  for (int i = 0; i < 4; ++i) {
    b[8 + i] = static_cast<uint8_t>(c.a_iss >> (24 - 8 * i));
    b[12 + i] = static_cast<uint8_t>(c.b_iss >> (24 - 8 * i));
  }
  return b;
}

std::string ToString(const PairConfig& c) {
  static constexpr const char* kModes[] = {"both-send-and-close", "half-close-request",
                                           "request-response", "server-closes-first"};
  std::ostringstream os;
  os << kModes[static_cast<int>(c.mode)] << (c.simultaneous_open ? " simultaneous-open" : "")
     << " A->B " << c.a_bytes() << "B, B->A " << c.b_bytes()
     << "B, A{opts-off=" << int{c.a_options_off} << " bufs=" << int{c.a_buffers}
     << " mss=" << kMss[c.a_mss % std::size(kMss)] << " stall=" << int{c.a_read_stall}
     << " iss=" << c.a_iss << "} B{opts-off=" << int{c.b_options_off}
     << " bufs=" << int{c.b_buffers} << " mss=" << kMss[c.b_mss % std::size(kMss)]
     << " stall=" << int{c.b_read_stall} << " iss=" << c.b_iss
     << "} latency=" << absl::FormatDuration(kLatency[c.latency % std::size(kLatency)])
     << " msl=" << absl::FormatDuration(absl::Milliseconds(500 * (1 + (c.msl & 7))));
  return os.str();
}

int FuzzEndpointPair(const uint8_t* data, size_t size) {
  PairConfig c = ParsePairConfig({data, size});
  absl::Span<const uint8_t> verdicts(data, size);
  verdicts.remove_prefix(std::min(size, PairConfig::kSize));
  bool ok;
  {
    PairRun run(c, verdicts, c.trace);
    ok = run.Run();
    run.CheckTransitions();
    if (c.trace) WRENCH_CHECK(!run.sim().Ladder().empty());
  }
  if (!ok) {
    // Run again with the trace on, to show the ladder of what happened.
    PairRun again(c, verdicts, true);
    again.Run();
    std::string ladder = again.sim().Ladder();
    if (ladder.size() > 20000) ladder = "..." + ladder.substr(ladder.size() - 20000);
    FailureContext context([&](std::ostream& os) { os << again.Report() << ladder; });
    WRENCH_CHECK(ok)
        << "after the link turned clean, the pair did not deliver every byte and close "
           "within the bound";
  }
  return 0;
}

}  // namespace wrench::fuzz
