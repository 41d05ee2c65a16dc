// The deterministic simulator as a test instrument: virtual time, link latency and
// verdicts (drop, copies, delay), random faults up to a deadline, the interposer
// hook and the ladder it prints. Two endpoints with fixed ISNs shake hands over it.
#include "stack/simulator.h"

#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace wrench::stack {
namespace {

using ::testing::HasSubstr;

TcpConfig Config(Side s) {
  TcpConfig c;
  bool a = s == Side::kA;
  c.tuple.local_addr = IpAddress::V4(a ? 0x0a000001 : 0x0a000002);
  c.tuple.remote_addr = IpAddress::V4(a ? 0x0a000002 : 0x0a000001);
  c.tuple.local_port = a ? 40000 : 80;
  c.tuple.remote_port = a ? 80 : 40000;
  uint32_t isn = a ? 1000 : 5000;
  c.isn = [isn](const FourTuple&, Instant) { return isn; };
  return c;
}

Simulator::Options Opts(Duration latency = absl::Milliseconds(10)) {
  Simulator::Options o;
  o.latency = latency;
  return o;
}

void Handshake(Simulator& sim) {
  ASSERT_TRUE(sim.b().Listen(sim.now()).ok());
  ASSERT_TRUE(sim.a().Connect(sim.now()).ok());
}

TEST(Simulator, RunUntilATimeEndsExactlyThere) {
  Simulator sim(Config(Side::kA), Config(Side::kB), Opts());
  ASSERT_TRUE(sim.RunFor(absl::Seconds(5)));
  EXPECT_EQ(sim.elapsed(), absl::Seconds(5));
  Handshake(sim);
  ASSERT_TRUE(sim.RunFor(absl::Milliseconds(15)));  // the SYN arrived at 10 ms
  EXPECT_EQ(sim.elapsed(), absl::Milliseconds(5015));
  EXPECT_EQ(sim.b().state(), TcpState::kSynReceived);
}

TEST(Simulator, RunUntilAPredicateStopsAtItsLimit) {
  Simulator sim(Config(Side::kA), Config(Side::kB), Opts());
  EXPECT_FALSE(sim.RunUntil([] { return false; }, absl::Seconds(3)));
  EXPECT_EQ(sim.elapsed(), absl::Seconds(3));
}

TEST(Simulator, EachSegmentArrivesOneLatencyLater) {
  Simulator sim(Config(Side::kA), Config(Side::kB), Opts(absl::Milliseconds(7)));
  Handshake(sim);
  ASSERT_TRUE(
      sim.RunUntil([&] { return sim.a().state() == TcpState::kEstablished; }, absl::Seconds(1)));
  EXPECT_EQ(sim.changes(Side::kB).back().at - sim.changes(Side::kB).front().at,
            absl::Milliseconds(7));
  EXPECT_EQ(sim.changes(Side::kA).back().at - absl::UnixEpoch(), absl::Milliseconds(14));
}

TEST(Simulator, AVerdictsExtraDelayAddsToTheLatency) {
  Simulator sim(Config(Side::kA), Config(Side::kB), Opts());
  sim.set_filter([](Side from, const TcpRepr&) {
    LinkVerdict v;
    if (from == Side::kA) v.extra_delay = absl::Milliseconds(25);
    return v;
  });
  Handshake(sim);
  ASSERT_TRUE(
      sim.RunUntil([&] { return sim.b().state() == TcpState::kSynReceived; }, absl::Seconds(1)));
  EXPECT_EQ(sim.elapsed(), absl::Milliseconds(35));
  EXPECT_EQ(sim.trace()[0].extra_delay, absl::Milliseconds(25));
}

TEST(Simulator, HeldBackSegmentsAreOvertaken) {
  Simulator sim(Config(Side::kA), Config(Side::kB), Opts());
  Handshake(sim);
  ASSERT_TRUE(
      sim.RunUntil([&] { return sim.b().state() == TcpState::kEstablished; }, absl::Seconds(1)));
  int data = 0;
  sim.set_filter([&](Side from, const TcpRepr& seg) {
    LinkVerdict v;
    if (from == Side::kA && !seg.payload.empty() && data++ == 0)
      v.extra_delay = absl::Milliseconds(30);
    return v;
  });
  sim.StartTransfer(Side::kA, 3000, false);
  ASSERT_TRUE(sim.RunFor(absl::Milliseconds(15)));
  // The first segment is still on its way: B holds the rest out of order.
  EXPECT_EQ(sim.received_ok(Side::kB), 0u);
  ASSERT_TRUE(sim.RunFor(absl::Milliseconds(40)));
  EXPECT_EQ(sim.received_ok(Side::kB), 3000u);
  EXPECT_EQ(sim.received_bad(Side::kB), 0u);
}

TEST(Simulator, RandomLossDropsEverythingUntilItsDeadline) {
  Simulator sim(Config(Side::kA), Config(Side::kB), Opts());
  RandomFaults f;
  f.loss = 1.0;
  f.until = absl::UnixEpoch() + absl::Milliseconds(1500);
  sim.set_random_faults(f);
  Handshake(sim);
  ASSERT_TRUE(
      sim.RunUntil([&] { return sim.a().state() == TcpState::kEstablished; }, absl::Seconds(10)));
  const auto& t = sim.trace();
  ASSERT_GE(t.size(), 4u);
  EXPECT_TRUE(t[0].dropped);   // the SYN at 0
  EXPECT_TRUE(t[1].dropped);   // its retransmission at 1 s
  EXPECT_FALSE(t[2].dropped);  // the one at 3 s
  EXPECT_EQ(t[2].at - absl::UnixEpoch(), absl::Seconds(3));
}

TEST(Simulator, RandomReorderHoldsSegmentsBack) {
  Simulator sim(Config(Side::kA), Config(Side::kB), Opts());
  RandomFaults f;
  f.reorder = 1.0;
  f.max_extra_delay = absl::Milliseconds(20);
  sim.set_random_faults(f);
  Handshake(sim);
  ASSERT_TRUE(
      sim.RunUntil([&] { return sim.a().state() == TcpState::kEstablished; }, absl::Seconds(1)));
  Duration held;
  for (const TraceEntry& e : sim.trace()) {
    EXPECT_LE(e.extra_delay, absl::Milliseconds(20));
    held += e.extra_delay;
  }
  EXPECT_GT(held, absl::ZeroDuration());
  EXPECT_GT(sim.elapsed(), absl::Milliseconds(20));
}

class CountingInterposer : public Interposer {
 public:
  void Submit(Instant, Side from, const TcpRepr& seg) override { held.push_back({from, seg}); }
  void Poll(Instant, absl::FunctionRef<void(Side, const TcpRepr&)> deliver) override {
    for (auto& [from, seg] : held) deliver(from, seg);
    delivered += held.size();
    held.clear();
  }
  Instant NextDeadline() const override { return kNever; }
  std::vector<std::pair<Side, TcpRepr>> held;
  size_t delivered = 0;
};

TEST(Simulator, AnInterposerSeesEverySegmentAndReleasesThem) {
  Simulator sim(Config(Side::kA), Config(Side::kB), Opts());
  CountingInterposer ip;
  sim.set_interposer(&ip);
  Handshake(sim);
  ASSERT_TRUE(
      sim.RunUntil([&] { return sim.a().state() == TcpState::kEstablished; }, absl::Seconds(1)));
  EXPECT_EQ(ip.delivered, 3u);  // SYN, SYN-ACK, ACK
  EXPECT_EQ(sim.trace().size(), 3u);
  EXPECT_EQ(sim.elapsed(), absl::Milliseconds(20));
}

TEST(Simulator, LadderInterleavesSegmentsAndStateChanges) {
  Simulator sim(Config(Side::kA), Config(Side::kB), Opts());
  sim.set_filter([](Side from, const TcpRepr& seg) {
    LinkVerdict v;
    if (from == Side::kB && seg.flags.has(kSyn)) v.drop = true;
    return v;
  });
  Handshake(sim);
  ASSERT_TRUE(sim.RunFor(absl::Milliseconds(30)));
  EXPECT_EQ(sim.Ladder(),
            "    0.000        B: CLOSED -> LISTEN (passive open)\n"
            "    0.000        A: CLOSED -> SYN-SENT (active open)\n"
            "    0.000  A > B  S   0:0(0) win 65535\n"
            "    0.010        B: LISTEN -> SYN-RECEIVED (SYN received)\n"
            "    0.010  A < B  S.  0:0(0) ack 1 win 65535   [dropped]\n");
}

TEST(Simulator, PatternBytesDifferBySide) {
  int same = 0;
  for (uint64_t i = 0; i < 256; ++i) {
    same += Simulator::PatternByte(Side::kA, i) == Simulator::PatternByte(Side::kB, i);
  }
  EXPECT_LT(same, 16);
}

// Fills `n` bytes of side s's pattern from stream offset `from`.
std::vector<uint8_t> Pattern(Side s, uint64_t from, size_t n) {
  std::vector<uint8_t> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = Simulator::PatternByte(s, from + i);
  return out;
}

TEST(Simulator, TheDefaultLinkTakesOneMillisecond) {
  Simulator sim(Config(Side::kA), Config(Side::kB));
  Handshake(sim);
  ASSERT_TRUE(
      sim.RunUntil([&] { return sim.b().state() == TcpState::kSynReceived; }, absl::Seconds(1)));
  EXPECT_EQ(sim.elapsed(), absl::Milliseconds(1));
}

TEST(Simulator, RandomFaultsStopExactlyAtTheirDeadline) {
  Simulator sim(Config(Side::kA), Config(Side::kB), Opts());
  RandomFaults f;
  f.loss = 1.0;
  f.until = absl::UnixEpoch() + absl::Seconds(3);  // the SYN's second retransmission
  sim.set_random_faults(f);
  Handshake(sim);
  ASSERT_TRUE(
      sim.RunUntil([&] { return sim.a().state() == TcpState::kEstablished; }, absl::Seconds(10)));
  const auto& t = sim.trace();
  ASSERT_GE(t.size(), 3u);
  EXPECT_EQ(t[1].at - absl::UnixEpoch(), absl::Seconds(1));
  EXPECT_TRUE(t[1].dropped);
  EXPECT_EQ(t[2].at - absl::UnixEpoch(), absl::Seconds(3));
  EXPECT_FALSE(t[2].dropped);
}

// The verdicts are the seeded generator's draws, in a fixed order per segment: loss,
// duplicate, reorder, and for a held-back segment how long (up to max_extra_delay,
// 20 ms unless set). From `until` on there are no draws.
TEST(Simulator, RandomFaultsAreTheSeedsDrawsSegmentBySegment) {
  for (uint64_t seed : {1, 7, 42}) {
    SCOPED_TRACE(seed);
    Simulator::Options o = Opts();
    o.seed = seed;
    Simulator sim(Config(Side::kA), Config(Side::kB), o);
    Handshake(sim);
    ASSERT_TRUE(
        sim.RunUntil([&] { return sim.b().state() == TcpState::kEstablished; }, absl::Seconds(1)));
    const Instant start = sim.now();
    RandomFaults f;
    f.loss = 0.2;
    f.duplicate = 0.3;
    f.reorder = 0.4;
    f.until = start + absl::Milliseconds(300);
    sim.set_random_faults(f);
    sim.StartTransfer(Side::kA, 200000, true);
    sim.StartTransfer(Side::kB, 100000, true);
    ASSERT_TRUE(sim.RunUntil(
        [&] { return sim.received_ok(Side::kB) == 200000 && sim.received_ok(Side::kA) == 100000; },
        absl::Seconds(60)));
    EXPECT_EQ(sim.received_bad(Side::kA) + sim.received_bad(Side::kB), 0u);

    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> u(0, 1);
    int faulted = 0, clean = 0, dropped = 0, copied = 0, held = 0;
    for (const TraceEntry& e : sim.trace()) {
      if (e.at < start) {
        // The handshake, before these faults: the default ones (all probabilities 0,
        // no deadline) draw too, and never reorder.
        for (int k = 0; k < 3; ++k) ASSERT_GE(u(rng), 0.0);
        continue;
      }
      bool drop = false;
      int copies = 0;
      Duration delay;
      if (e.at < f.until) {
        ++faulted;
        drop = u(rng) < f.loss;
        copies = u(rng) < f.duplicate ? 1 : 0;
        if (u(rng) < f.reorder) {
          delay = absl::Nanoseconds(static_cast<int64_t>(u(rng) * 20e6));
        }
      } else {
        ++clean;
      }
      ASSERT_EQ(e.dropped, drop) << e.order;
      ASSERT_EQ(e.extra_copies, copies) << e.order;
      ASSERT_EQ(e.extra_delay, delay) << e.order;
      dropped += drop;
      copied += copies;
      held += delay > absl::ZeroDuration();
    }
    // Every kind of fault happened, and the link was clean after its deadline.
    EXPECT_GT(dropped, 0);
    EXPECT_GT(copied, 0);
    EXPECT_GT(held, 0);
    EXPECT_GT(faulted, 10);
    EXPECT_GT(clean, 10);
  }
}

// Segments leave the link in the order of their due times, whatever the order they
// were sent in: three data segments held back by 30, 20 and 10 ms arrive last to
// first, and B's ACKs show each arrival at its own time.
TEST(Simulator, SegmentsArriveInTheOrderOfTheirDueTimes) {
  Simulator sim(Config(Side::kA), Config(Side::kB), Opts());
  Handshake(sim);
  ASSERT_TRUE(
      sim.RunUntil([&] { return sim.b().state() == TcpState::kEstablished; }, absl::Seconds(1)));
  int data = 0;
  sim.set_filter([&](Side from, const TcpRepr& seg) {
    LinkVerdict v;
    if (from == Side::kA && !seg.payload.empty() && data < 3)
      v.extra_delay = absl::Milliseconds(30 - 10 * data++);
    return v;
  });
  const Instant sent = sim.now();
  const SeqNum start = sim.a().tcb().snd_nxt;
  std::vector<uint8_t> bytes = Pattern(Side::kA, 0, 3000);
  ASSERT_EQ(*sim.a().Send(bytes), 3000u);
  size_t before = sim.trace().size();
  ASSERT_TRUE(sim.RunFor(absl::Milliseconds(100)));
  EXPECT_EQ(sim.received_ok(Side::kB), 3000u);
  // B's answers: when each came, what it acknowledged and SACKed.
  std::vector<std::string> answers;
  for (size_t k = before; k < sim.trace().size(); ++k) {
    const TraceEntry& e = sim.trace()[k];
    if (e.from != Side::kB || e.at > sent + absl::Milliseconds(40)) continue;
    std::string text =
        absl::StrCat(absl::ToInt64Milliseconds(e.at - sent), "ms ack ", e.seg.ack - start);
    for (uint8_t b = 0; b < e.seg.options.sack_count; ++b) {
      absl::StrAppend(&text, " sack ", e.seg.options.sack[b].left - start, ":",
                      e.seg.options.sack[b].right - start);
    }
    answers.push_back(text);
  }
  EXPECT_THAT(answers, ::testing::ElementsAre("20ms ack 0 sack 2896:3000",
                                              "30ms ack 0 sack 1448:3000", "40ms ack 3000"));
}

// A SYN nobody answers: A's only events are its retransmissions at 1, 3, 7, 15 s.
TEST(Simulator, RunUntilStopsAfterItsStepLimit) {
  Simulator sim(Config(Side::kA), Config(Side::kB), Opts());
  sim.set_filter([](Side, const TcpRepr&) { return LinkVerdict{.drop = true}; });
  Handshake(sim);
  EXPECT_FALSE(sim.RunUntil(absl::UnixEpoch() + absl::Hours(1), 2));
  EXPECT_EQ(sim.elapsed(), absl::Seconds(3));
  EXPECT_FALSE(sim.RunUntil([] { return false; }, absl::Hours(1), 1));
  EXPECT_EQ(sim.elapsed(), absl::Seconds(7));
  // The limit counts instants run, also the last one before `t`.
  EXPECT_FALSE(sim.RunUntil(absl::UnixEpoch() + absl::Seconds(15), 1));
  EXPECT_EQ(sim.elapsed(), absl::Seconds(15));
  EXPECT_TRUE(sim.RunUntil(absl::UnixEpoch() + absl::Seconds(30), 1));
  EXPECT_EQ(sim.elapsed(), absl::Seconds(30));
  EXPECT_EQ(sim.trace().size(), 5u);
}

TEST(Simulator, RunUntilAPredicateRunsAnEventAtItsLimit) {
  Simulator sim(Config(Side::kA), Config(Side::kB), Opts());
  Handshake(sim);
  // The SYN arrives at exactly 10 ms, the limit.
  EXPECT_TRUE(sim.RunUntil([&] { return sim.b().state() == TcpState::kSynReceived; },
                           absl::Milliseconds(10)));
  EXPECT_EQ(sim.elapsed(), absl::Milliseconds(10));
}

// What the predicate starts (a Send here) goes out in the same instant.
TEST(Simulator, WhatAPredicateSendsLeavesAtOnce) {
  Simulator sim(Config(Side::kA), Config(Side::kB), Opts());
  Handshake(sim);
  ASSERT_TRUE(
      sim.RunUntil([&] { return sim.b().state() == TcpState::kEstablished; }, absl::Seconds(1)));
  ASSERT_TRUE(sim.RunFor(absl::Seconds(1)));  // every timer of the handshake is done
  std::optional<Instant> sent;
  std::vector<uint8_t> bytes = Pattern(Side::kA, 0, 100);
  ASSERT_TRUE(sim.RunUntil(
      [&] {
        if (!sent) {
          sent = sim.now();
          EXPECT_EQ(*sim.a().Send(bytes), 100u);
        }
        return sim.received_ok(Side::kB) == 100;
      },
      absl::Seconds(5)));
  EXPECT_EQ(sim.now() - *sent, absl::Milliseconds(10));
}

// An interposer that keeps B's SYN-ACK until 1 s, when A's SYN timer fires too, and
// logs the calls it gets.
class LoggingInterposer : public Interposer {
 public:
  void Submit(Instant now, Side from, const TcpRepr& seg) override {
    log.push_back(absl::StrCat(absl::ToInt64Milliseconds(now - absl::UnixEpoch()), " submit ",
                               SideName(from), seg.flags.has(kAck) ? " SYN-ACK" : " SYN"));
    held.push_back({from, seg, from == Side::kB ? absl::UnixEpoch() + absl::Seconds(1) : now});
  }
  void Poll(Instant now, absl::FunctionRef<void(Side, const TcpRepr&)> deliver) override {
    std::string line = absl::StrCat(absl::ToInt64Milliseconds(now - absl::UnixEpoch()), " poll");
    for (size_t k = 0; k < held.size();) {
      if (held[k].due <= now) {
        absl::StrAppend(&line, " ", SideName(held[k].from));
        deliver(held[k].from, held[k].seg);
        held.erase(held.begin() + k);
      } else {
        ++k;
      }
    }
    log.push_back(line);
  }
  Instant NextDeadline() const override {
    Instant t = kNever;
    for (const Held& h : held) t = std::min(t, h.due);
    return t;
  }
  struct Held {
    Side from;
    TcpRepr seg;
    Instant due;
  };
  std::vector<Held> held;
  std::vector<std::string> log;
};

// At an instant the interposer has something due, it is polled before the endpoints'
// timers fire, and once more after their output went in.
TEST(Simulator, AnInterposerIsPolledAtItsDeadlineBeforeTheTimers) {
  Simulator sim(Config(Side::kA), Config(Side::kB), Opts());
  LoggingInterposer ip;
  sim.set_interposer(&ip);
  Handshake(sim);
  ASSERT_TRUE(sim.RunFor(absl::Seconds(1)));
  EXPECT_THAT(ip.log,
              ::testing::ElementsAre("0 submit A SYN", "0 poll A", "10 poll", "10 submit B SYN-ACK",
                                     "10 poll", "1000 poll B", "1000 submit A SYN", "1000 poll A"));
}

// An interposer that flips one payload byte of A's first data segment.
class CorruptingInterposer : public CountingInterposer {
 public:
  void Submit(Instant now, Side from, const TcpRepr& seg) override {
    if (from != Side::kA || seg.payload.empty() || done) {
      CountingInterposer::Submit(now, from, seg);
      return;
    }
    done = true;
    copy.assign(seg.payload.begin(), seg.payload.end());
    copy[5] ^= 0xff;
    TcpRepr changed = seg;
    changed.payload = copy;
    CountingInterposer::Submit(now, from, changed);
  }
  bool done = false;
  std::vector<uint8_t> copy;
};

TEST(Simulator, ACorruptedByteIsCountedApartAndTheRestStillChecks) {
  Simulator sim(Config(Side::kA), Config(Side::kB));
  CorruptingInterposer ip;
  sim.set_interposer(&ip);
  Handshake(sim);
  sim.StartTransfer(Side::kA, 5000, false);
  ASSERT_TRUE(sim.RunFor(absl::Seconds(1)));
  EXPECT_EQ(sim.received_bad(Side::kB), 1u);
  EXPECT_EQ(sim.received_ok(Side::kB), 4999u);
}

TEST(Simulator, WithoutCheckDataBytesAreCountedUnchecked) {
  Simulator::Options o = Opts();
  o.check_data = false;
  Simulator sim(Config(Side::kA), Config(Side::kB), o);
  CorruptingInterposer ip;
  sim.set_interposer(&ip);
  Handshake(sim);
  sim.StartTransfer(Side::kA, 5000, false);
  ASSERT_TRUE(sim.RunFor(absl::Seconds(1)));
  EXPECT_EQ(sim.received_bad(Side::kB), 0u);
  EXPECT_EQ(sim.received_ok(Side::kB), 5000u);
}

TEST(Simulator, AOneByteSendBufferStillSendsEverything) {
  TcpConfig a = Config(Side::kA);
  a.send_buffer = 1;
  Simulator sim(a, Config(Side::kB), Opts());
  Handshake(sim);
  sim.StartTransfer(Side::kA, 5, true);
  ASSERT_TRUE(sim.RunUntil([&] { return sim.b().fin_received(); }, absl::Seconds(10)));
  EXPECT_EQ(sim.received_ok(Side::kB), 5u);
}

// With no packets set aside, the link grows its pool as segments queue up.
TEST(Simulator, ALinkWithoutPreallocatedPacketsGrowsItsPool) {
  for (size_t prealloc : {0, 1, 3}) {
    Simulator::Options o = Opts();
    o.preallocate_packets = prealloc;
    Simulator sim(Config(Side::kA), Config(Side::kB), o);
    Handshake(sim);
    sim.StartTransfer(Side::kA, 200000, true);
    sim.StartTransfer(Side::kB, 100000, true);
    ASSERT_TRUE(sim.RunUntil([&] { return sim.a().fin_received() && sim.b().fin_received(); },
                             absl::Seconds(30)));
    EXPECT_EQ(sim.received_ok(Side::kB), 200000u);
    EXPECT_EQ(sim.received_ok(Side::kA), 100000u);
    EXPECT_EQ(sim.received_bad(Side::kA) + sim.received_bad(Side::kB), 0u);
  }
}

TEST(Simulator, FormatRelativePrintsTheSegmentRelativeToItsBases) {
  TcpRepr seg;
  seg.flags = TcpFlags(kPsh | kAck);
  seg.seq = SeqNum(1100);
  seg.ack = SeqNum(5007);
  seg.window = 512;
  EXPECT_EQ(FormatRelative(seg, 50, SeqNum(1000), SeqNum(5000)), "P.  100:150(50) ack 7 win 512");
  seg.options.sack_count = 3;
  seg.options.sack[0] = {SeqNum(5010), SeqNum(5020)};
  seg.options.sack[1] = {SeqNum(5030), SeqNum(5040)};
  seg.options.sack[2] = {SeqNum(4990), SeqNum(5001)};
  EXPECT_EQ(FormatRelative(seg, 0, SeqNum(1000), SeqNum(5000)),
            "P.  100:100(0) ack 7 win 512 sack 10:20,30:40,4294967286:1");
  TcpRepr bare;
  bare.seq = SeqNum(7);
  EXPECT_EQ(FormatRelative(bare, 1, SeqNum(10), SeqNum(0)), "none 4294967293:4294967294(1) win 0");
}

// Relative numbers count from the first SYN each side sent, also when it connects again
// with another ISN.
TEST(Simulator, LadderNumbersEachSideFromItsFirstSyn) {
  TcpConfig a = Config(Side::kA);
  int connects = 0;
  a.isn = [&connects](const FourTuple&, Instant) { return connects++ == 0 ? 1000u : 3000u; };
  Simulator sim(a, Config(Side::kB), Opts());
  ASSERT_TRUE(sim.a().Connect(sim.now()).ok());  // B is closed: refused
  ASSERT_TRUE(sim.RunFor(absl::Milliseconds(30)));
  ASSERT_EQ(sim.a().state(), TcpState::kClosed);
  Handshake(sim);
  ASSERT_TRUE(sim.RunFor(absl::Milliseconds(30)));
  EXPECT_EQ(sim.Ladder(),
            "    0.000        A: CLOSED -> SYN-SENT (active open)\n"
            "    0.000  A > B  S   0:0(0) win 65535\n"
            "    0.010  A < B  R.  4294962296:4294962296(0) ack 1 win 0\n"
            "    0.020        A: SYN-SENT -> CLOSED (RST received)\n"
            "    0.030        B: CLOSED -> LISTEN (passive open)\n"
            "    0.030        A: CLOSED -> SYN-SENT (active open)\n"
            "    0.030  A > B  S   2000:2000(0) win 65535\n"
            "    0.040        B: LISTEN -> SYN-RECEIVED (SYN received)\n"
            "    0.040  A < B  S.  0:0(0) ack 2001 win 65535\n"
            "    0.050        A: SYN-SENT -> ESTABLISHED (SYN-ACK received)\n"
            "    0.050  A > B  .   2001:2001(0) ack 1 win 32768\n"
            "    0.060        B: SYN-RECEIVED -> ESTABLISHED (ACK of SYN)\n");
}

}  // namespace
}  // namespace wrench::stack
