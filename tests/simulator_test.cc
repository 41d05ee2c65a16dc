// The deterministic simulator as a test instrument: virtual time, link latency and
// verdicts (drop, copies, delay), random faults up to a deadline, the interposer
// hook and the ladder it prints. Two endpoints with fixed ISNs shake hands over it.
#include "stack/simulator.h"

#include <string>
#include <vector>

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
  ASSERT_TRUE(sim.RunUntil([&] { return sim.a().state() == TcpState::kEstablished; }, absl::Seconds(1)));
  EXPECT_EQ(sim.changes(Side::kB).back().at - sim.changes(Side::kB).front().at, absl::Milliseconds(7));
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
  ASSERT_TRUE(sim.RunUntil([&] { return sim.b().state() == TcpState::kSynReceived; }, absl::Seconds(1)));
  EXPECT_EQ(sim.elapsed(), absl::Milliseconds(35));
  EXPECT_EQ(sim.trace()[0].extra_delay, absl::Milliseconds(25));
}

TEST(Simulator, HeldBackSegmentsAreOvertaken) {
  Simulator sim(Config(Side::kA), Config(Side::kB), Opts());
  Handshake(sim);
  ASSERT_TRUE(sim.RunUntil([&] { return sim.b().state() == TcpState::kEstablished; }, absl::Seconds(1)));
  int data = 0;
  sim.set_filter([&](Side from, const TcpRepr& seg) {
    LinkVerdict v;
    if (from == Side::kA && !seg.payload.empty() && data++ == 0) v.extra_delay = absl::Milliseconds(30);
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
  ASSERT_TRUE(sim.RunUntil([&] { return sim.a().state() == TcpState::kEstablished; }, absl::Seconds(10)));
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
  ASSERT_TRUE(sim.RunUntil([&] { return sim.a().state() == TcpState::kEstablished; }, absl::Seconds(1)));
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
  ASSERT_TRUE(sim.RunUntil([&] { return sim.a().state() == TcpState::kEstablished; }, absl::Seconds(1)));
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

}  // namespace
}  // namespace wrench::stack
