// Scenario tests of the TCP endpoint: two endpoints in the deterministic simulator,
// every step at an explicit virtual time, seq/ack relative to each side's ISN
// (A's ISN is 1000, B's 5000), as packetdrill scripts and textbooks write them.
#include "stack/tcp_endpoint.h"

#include <iostream>
#include <set>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "stack/simulator.h"
#include "stack/tcp_profile.h"

namespace wrench::stack {
namespace {

using ::testing::ElementsAre;

constexpr uint32_t kIsnA = 1000;
constexpr uint32_t kIsnB = 5000;
constexpr uint16_t kPortA = 40000;
constexpr uint16_t kPortB = 80;

TcpConfig Config(Side s) {
  TcpConfig c;
  bool a = s == Side::kA;
  c.tuple.local_addr = IpAddress::V4(a ? 0x0a000001 : 0x0a000002);
  c.tuple.remote_addr = IpAddress::V4(a ? 0x0a000002 : 0x0a000001);
  c.tuple.local_port = a ? kPortA : kPortB;
  c.tuple.remote_port = a ? kPortB : kPortA;
  uint32_t isn = a ? kIsnA : kIsnB;
  c.isn = [isn](const FourTuple&, Instant) { return isn; };
  c.msl = absl::Seconds(30);
  return c;
}

// The same under the `rfc` profile: RFC 6298's 1 s minimum RTO, NewReno, no TLP.
TcpConfig RfcConfig(Side s) {
  TcpConfig c = Config(s);
  ApplyProfile(TcpProfile::kRfc, c);
  return c;
}

// A segment as a test reads it: who sent it, flags, relative seq, ack and length.
struct Seg {
  Side from;
  std::string flags;
  uint32_t seq, ack, len;
  bool dropped = false;
  Instant at;
  bool operator==(const Seg& o) const {
    return from == o.from && flags == o.flags && seq == o.seq && ack == o.ack && len == o.len;
  }
  friend std::ostream& operator<<(std::ostream& os, const Seg& s) {
    return os << SideName(s.from) << " " << s.flags << " seq=" << s.seq << " ack=" << s.ack
              << " len=" << s.len << (s.dropped ? " (dropped)" : "");
  }
};

Seg S(Side from, std::string flags, uint32_t seq, uint32_t ack, uint32_t len = 0) {
  return Seg{from, std::move(flags), seq, ack, len, false, Instant()};
}

class Conversation : public ::testing::Test {
 protected:
  Conversation() { Reset(Config(Side::kA), Config(Side::kB)); }

  void Reset(TcpConfig a, TcpConfig b, uint64_t seed = 1) {
    Simulator::Options o;
    o.seed = seed;
    o.latency = absl::Milliseconds(10);
    sim_ = std::make_unique<Simulator>(std::move(a), std::move(b), o);
  }

  TcpEndpoint& a() { return sim_->a(); }
  TcpEndpoint& b() { return sim_->b(); }
  Simulator& sim() { return *sim_; }
  Instant now() { return sim_->now(); }

  // Every segment on the link so far, relative. Flags as tcpdump: S F R P . (ACK).
  std::vector<Seg> Segments() {
    std::vector<Seg> out;
    for (const TraceEntry& e : sim_->trace()) {
      bool a = e.from == Side::kA;
      uint32_t own = a ? kIsnA : kIsnB, peer = a ? kIsnB : kIsnA;
      std::string f;
      if (e.seg.flags.has(kSyn)) f += 'S';
      if (e.seg.flags.has(kFin)) f += 'F';
      if (e.seg.flags.has(kRst)) f += 'R';
      if (e.seg.flags.has(kAck)) f += '.';
      Seg s{e.from, f, e.seg.seq.raw() - own, e.seg.flags.has(kAck) ? e.seg.ack.raw() - peer : 0,
            e.payload_len, e.dropped, e.at};
      out.push_back(s);
    }
    return out;
  }

  std::vector<TcpState> States(Side s) {
    std::vector<TcpState> out;
    for (const StateChange& c : sim_->changes(s)) out.push_back(c.to);
    return out;
  }

  // Drops the n-th (1-based) segment A or B sends whose flags are exactly `flags`.
  void DropNth(Side from, uint8_t flags, int n) {
    auto count = std::make_shared<int>(0);
    sim_->set_filter([=](Side f, const TcpRepr& seg) {
      LinkVerdict v;
      if (f == from && seg.flags.bits() == flags && ++*count == n) v.drop = true;
      return v;
    });
  }

  void Open() {
    ASSERT_TRUE(b().Listen(now()).ok());
    ASSERT_TRUE(a().Connect(now()).ok());
    ASSERT_TRUE(sim_->RunUntil(
        [&] {
          return a().state() == TcpState::kEstablished && b().state() == TcpState::kEstablished;
        },
        absl::Seconds(120)));
  }

  bool RunUntilBothClosed(Duration limit = absl::Minutes(10)) {
    return sim_->RunUntil(
        [&] { return a().state() == TcpState::kClosed && b().state() == TcpState::kClosed; },
        limit);
  }

  std::unique_ptr<Simulator> sim_;
};

const Side A = Side::kA;
const Side B = Side::kB;

// --- handshake -------------------------------------------------------------

TEST_F(Conversation, ThreeWayHandshakeHasExactSeqAndAck) {
  Open();
  // A sends SYN seq=0; B answers SYN-ACK seq=0 ack=1; A completes with ACK seq=1 ack=1.
  EXPECT_THAT(Segments(), ElementsAre(S(A, "S", 0, 0), S(B, "S.", 0, 1), S(A, ".", 1, 1)));
  EXPECT_THAT(States(A), ElementsAre(TcpState::kSynSent, TcpState::kEstablished));
  EXPECT_THAT(States(B),
              ElementsAre(TcpState::kListen, TcpState::kSynReceived, TcpState::kEstablished));
}

TEST_F(Conversation, HandshakeNegotiatesOptions) {
  Open();
  const TcpRepr& syn = sim().trace()[0].seg;
  EXPECT_EQ(syn.options.mss, 1460);
  EXPECT_TRUE(syn.options.sack_permitted);
  EXPECT_TRUE(syn.options.timestamps.has_value());
  EXPECT_EQ(syn.options.window_scale, 3);  // 256 KiB does not fit 65535 << 2
  EXPECT_TRUE(a().tcb().sack_ok);
  EXPECT_TRUE(a().tcb().ts_ok);
  EXPECT_EQ(a().tcb().snd_wscale, 3);
  EXPECT_EQ(a().tcb().snd_mss, 1460 - 12);  // timestamps take 12 bytes of each segment
  // Every later segment carries timestamps, echoing the peer's.
  const TcpRepr& ack = sim().trace()[2].seg;
  ASSERT_TRUE(ack.options.timestamps.has_value());
  EXPECT_EQ(ack.options.timestamps->echo, sim().trace()[1].seg.options.timestamps->value);
}

TEST_F(Conversation, OptionsAreNotUsedWhenThePeerDoesNotOfferThem) {
  TcpConfig cb = Config(B);
  cb.window_scaling = cb.sack = cb.timestamps = false;
  cb.mss = 1000;
  Reset(Config(A), cb);
  Open();
  EXPECT_FALSE(a().tcb().sack_ok);
  EXPECT_FALSE(a().tcb().ts_ok);
  EXPECT_EQ(a().tcb().snd_wscale, 0);
  EXPECT_EQ(a().tcb().rcv_wscale, 0);
  EXPECT_EQ(a().tcb().snd_mss, 1000);
  const TcpRepr& synack = sim().trace()[1].seg;
  EXPECT_FALSE(synack.options.window_scale.has_value());
  EXPECT_FALSE(synack.options.timestamps.has_value());
}

TEST_F(Conversation, LostSynIsRetransmittedAfterRto) {
  DropNth(A, kSyn, 1);
  Open();
  auto segs = Segments();
  ASSERT_GE(segs.size(), 4u);
  EXPECT_EQ(segs[0], S(A, "S", 0, 0));
  EXPECT_TRUE(segs[0].dropped);
  EXPECT_EQ(segs[1], S(A, "S", 0, 0));
  EXPECT_EQ(segs[1].at - segs[0].at, absl::Seconds(1));  // RFC 6298 initial RTO
  EXPECT_EQ(segs[2], S(B, "S.", 0, 1));
  EXPECT_EQ(segs[3], S(A, ".", 1, 1));
}

TEST_F(Conversation, LostSynAckIsAnsweredByTheRetransmittedSyn) {
  DropNth(B, kSyn | kAck, 1);
  Open();
  auto segs = Segments();
  ASSERT_GE(segs.size(), 5u);
  EXPECT_TRUE(segs[1].dropped);
  EXPECT_EQ(segs[1], S(B, "S.", 0, 1));
  // A's SYN timer fires first (both are 1 s, A started 10 ms earlier); B resends
  // its SYN-ACK on the duplicate SYN at once.
  EXPECT_EQ(segs[2], S(A, "S", 0, 0));
  EXPECT_EQ(segs[3], S(B, "S.", 0, 1));
  EXPECT_EQ(segs[4], S(A, ".", 1, 1));
}

TEST_F(Conversation, DuplicateSynsOpenOneConnection) {
  sim().set_filter([](Side from, const TcpRepr& seg) {
    LinkVerdict v;
    if (from == A && seg.flags.has(kSyn)) v.extra_copies = 2;
    return v;
  });
  Open();
  ASSERT_TRUE(sim().RunFor(absl::Seconds(2)));
  EXPECT_EQ(a().state(), TcpState::kEstablished);
  EXPECT_EQ(b().state(), TcpState::kEstablished);
  EXPECT_THAT(States(B),
              ElementsAre(TcpState::kListen, TcpState::kSynReceived, TcpState::kEstablished));
}

TEST_F(Conversation, LostThirdAckIsRepairedBySynAckRetransmission) {
  DropNth(A, kAck, 1);
  Open();  // A is ESTABLISHED at once; B waits in SYN-RECEIVED
  auto segs = Segments();
  ASSERT_EQ(segs.size(), 5u);
  EXPECT_TRUE(segs[2].dropped);
  EXPECT_EQ(segs[3], S(B, "S.", 0, 1));  // B's SYN-ACK timer fires
  EXPECT_EQ(segs[4], S(A, ".", 1, 1));   // A (ESTABLISHED) answers the old SYN-ACK with an ACK
}

TEST_F(Conversation, SimultaneousOpen) {
  TcpConfig cb = Config(B);
  Reset(Config(A), cb);
  ASSERT_TRUE(a().Connect(now()).ok());
  ASSERT_TRUE(b().Connect(now()).ok());
  ASSERT_TRUE(sim().RunUntil(
      [&] {
        return a().state() == TcpState::kEstablished && b().state() == TcpState::kEstablished;
      },
      absl::Seconds(10)));
  EXPECT_THAT(States(A),
              ElementsAre(TcpState::kSynSent, TcpState::kSynReceived, TcpState::kEstablished));
  EXPECT_THAT(States(B),
              ElementsAre(TcpState::kSynSent, TcpState::kSynReceived, TcpState::kEstablished));
  // Each SYN crosses the other; each side answers with SYN-ACK <SEQ=ISS><ACK=RCV.NXT>,
  // and each SYN-ACK completes the other side's open (RFC 9293 Figure 8).
  EXPECT_THAT(Segments(),
              ElementsAre(S(A, "S", 0, 0), S(B, "S", 0, 0), S(A, "S.", 0, 1), S(B, "S.", 0, 1)));
}

TEST_F(Conversation, ConnectToClosedPortIsRefused) {
  ASSERT_TRUE(a().Connect(now()).ok());  // B never listens
  ASSERT_TRUE(sim().RunUntil([&] { return a().state() == TcpState::kClosed; }, absl::Seconds(5)));
  EXPECT_EQ(a().close_reason(), CloseReason::kRefused);
  EXPECT_EQ(a().error(), "connection refused");
  // B (CLOSED) answers the SYN with <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
  auto segs = Segments();
  ASSERT_EQ(segs.size(), 2u);
  EXPECT_EQ(segs[1].flags, "R.");
  EXPECT_EQ(segs[1].ack, 1u);
}

TEST_F(Conversation, SynRetriesExhaustedAbortsWithReason) {
  sim().set_filter([](Side, const TcpRepr&) { return LinkVerdict{.drop = true}; });
  ASSERT_TRUE(b().Listen(now()).ok());
  ASSERT_TRUE(a().Connect(now()).ok());
  ASSERT_TRUE(sim().RunUntil([&] { return a().state() == TcpState::kClosed; }, absl::Minutes(10)));
  EXPECT_EQ(a().close_reason(), CloseReason::kTimeout);
  EXPECT_EQ(a().error(), "connection timed out: no answer after 6 SYN retransmissions");
  // 1 + 6 SYNs, backing off 1, 2, 4, 8, 16, 32 s, then 64 s... capped at 60 s.
  auto segs = Segments();
  ASSERT_EQ(segs.size(), 7u);
  EXPECT_EQ(segs[1].at - segs[0].at, absl::Seconds(1));
  EXPECT_EQ(segs[2].at - segs[1].at, absl::Seconds(2));
  EXPECT_EQ(segs[6].at - segs[5].at, absl::Seconds(32));
  EXPECT_EQ(sim().elapsed(), absl::Seconds(1 + 2 + 4 + 8 + 16 + 32 + 60));
}

// --- teardown ----------------------------------------------------------------

TEST_F(Conversation, FourWayTeardownHasExactSeqAndAck) {
  Open();
  Instant t0 = now();
  ASSERT_TRUE(a().Close(now()).ok());
  ASSERT_TRUE(
      sim().RunUntil([&] { return b().state() == TcpState::kCloseWait; }, absl::Seconds(1)));
  ASSERT_TRUE(b().Close(now()).ok());
  ASSERT_TRUE(RunUntilBothClosed());
  auto segs = Segments();
  ASSERT_EQ(segs.size(), 7u);
  // FIN (seq=u) -> ACK (ack=u+1) -> FIN (seq=w, ack=u+1) -> ACK (seq=u+1, ack=w+1).
  EXPECT_EQ(segs[3], S(A, "F.", 1, 1));
  EXPECT_EQ(segs[4], S(B, ".", 1, 2));
  EXPECT_EQ(segs[5], S(B, "F.", 1, 2));
  EXPECT_EQ(segs[6], S(A, ".", 2, 2));
  EXPECT_THAT(States(A),
              ElementsAre(TcpState::kSynSent, TcpState::kEstablished, TcpState::kFinWait1,
                          TcpState::kFinWait2, TcpState::kTimeWait, TcpState::kClosed));
  EXPECT_THAT(States(B),
              ElementsAre(TcpState::kListen, TcpState::kSynReceived, TcpState::kEstablished,
                          TcpState::kCloseWait, TcpState::kLastAck, TcpState::kClosed));
  // TIME-WAIT lasts exactly 2·MSL from the FIN's arrival.
  const StateChange& tw = sim().changes(A)[4];
  const StateChange& closed = sim().changes(A)[5];
  EXPECT_EQ(closed.at - tw.at, absl::Seconds(60));
  EXPECT_LT(tw.at - t0, absl::Seconds(1));
  EXPECT_EQ(a().close_reason(), CloseReason::kNormal);
  EXPECT_EQ(b().close_reason(), CloseReason::kNormal);
}

TEST_F(Conversation, LostFirstFinIsRetransmitted) {
  Reset(RfcConfig(A), RfcConfig(B));
  DropNth(A, kFin | kAck, 1);
  Open();
  ASSERT_TRUE(a().Close(now()).ok());
  ASSERT_TRUE(
      sim().RunUntil([&] { return b().state() == TcpState::kCloseWait; }, absl::Seconds(5)));
  auto segs = Segments();
  EXPECT_TRUE(segs[3].dropped);
  EXPECT_EQ(segs[4], S(A, "F.", 1, 1));
  EXPECT_EQ(segs[4].at - segs[3].at, absl::Seconds(1));
  EXPECT_EQ(a().state(), TcpState::kFinWait1);
}

TEST_F(Conversation, LostFirstFinIsProbedAfterTheLinuxMinimumRto) {
  DropNth(A, kFin | kAck, 1);
  Open();
  ASSERT_TRUE(a().Close(now()).ok());
  ASSERT_TRUE(
      sim().RunUntil([&] { return b().state() == TcpState::kCloseWait; }, absl::Seconds(5)));
  auto segs = Segments();
  EXPECT_TRUE(segs[3].dropped);
  EXPECT_EQ(segs[4], S(A, "F.", 1, 1));
  // One segment in flight: PTO = 2*SRTT + 200 ms, no later than the RTO (SRTT +
  // max(4*RTTVAR, 200 ms) = 220 ms, as Linux's tcp_set_rto), so the loss probe goes
  // when the RTO would have.
  EXPECT_EQ(segs[4].at - segs[3].at, absl::Milliseconds(220));
  EXPECT_EQ(a().loss_stats().tlp_probes, 1);
  EXPECT_EQ(a().loss_stats().timeouts, 0);
}

TEST_F(Conversation, LostLastAckMakesLastAckRetransmitAndTimeWaitReAck) {
  Open();
  ASSERT_TRUE(a().Close(now()).ok());
  ASSERT_TRUE(
      sim().RunUntil([&] { return b().state() == TcpState::kCloseWait; }, absl::Seconds(1)));
  DropNth(A, kAck, 1);  // the next pure ACK from A: the last ACK of the teardown
  ASSERT_TRUE(b().Close(now()).ok());
  ASSERT_TRUE(sim().RunUntil([&] { return a().state() == TcpState::kTimeWait; }, absl::Seconds(1)));
  Instant time_wait_at = now();
  ASSERT_TRUE(sim().RunUntil([&] { return b().state() == TcpState::kClosed; }, absl::Seconds(5)));
  auto segs = Segments();
  ASSERT_EQ(segs.size(), 9u);
  EXPECT_EQ(segs[6], S(A, ".", 2, 2));
  EXPECT_TRUE(segs[6].dropped);
  EXPECT_EQ(segs[7], S(B, "F.", 1, 2));  // LAST-ACK retransmits its FIN after the RTO
  EXPECT_EQ(segs[8], S(A, ".", 2, 2));   // TIME-WAIT acknowledges it again
  // ...and restarts its 2·MSL timer from that FIN.
  ASSERT_TRUE(RunUntilBothClosed());
  Instant closed_at = sim().changes(A).back().at;
  EXPECT_EQ(closed_at - segs[7].at, absl::Seconds(60) + absl::Milliseconds(10));
  EXPECT_GT(closed_at - time_wait_at, absl::Seconds(60));
}

TEST_F(Conversation, SimultaneousCloseGoesThroughClosing) {
  Open();
  ASSERT_TRUE(a().Close(now()).ok());
  ASSERT_TRUE(b().Close(now()).ok());
  ASSERT_TRUE(RunUntilBothClosed());
  for (Side s : {A, B}) {
    EXPECT_THAT(States(s), testing::IsSupersetOf({TcpState::kFinWait1, TcpState::kClosing,
                                                  TcpState::kTimeWait, TcpState::kClosed}));
  }
  auto segs = Segments();
  EXPECT_EQ(segs[3], S(A, "F.", 1, 1));
  EXPECT_EQ(segs[4], S(B, "F.", 1, 1));
  EXPECT_EQ(segs[5], S(A, ".", 2, 2));
  EXPECT_EQ(segs[6], S(B, ".", 2, 2));
}

TEST_F(Conversation, HalfCloseLetsDataFlowAfterTheFirstFin) {
  Open();
  ASSERT_TRUE(a().Close(now()).ok());
  ASSERT_TRUE(sim().RunUntil([&] { return a().state() == TcpState::kFinWait2; }, absl::Seconds(1)));
  sim().StartTransfer(B, 300'000, /*close_after=*/true);  // more than one buffer's worth
  ASSERT_TRUE(RunUntilBothClosed());
  EXPECT_EQ(sim().received_ok(A), 300'000u);
  EXPECT_EQ(sim().received_bad(A), 0u);
  EXPECT_TRUE(a().eof());
}

// --- data, windows, loss ------------------------------------------------------

TEST_F(Conversation, BulkTransferBothWaysArrivesExactly) {
  Open();
  sim().StartTransfer(A, 1'000'000, true);
  sim().StartTransfer(B, 700'000, true);
  ASSERT_TRUE(RunUntilBothClosed());
  EXPECT_EQ(sim().received_ok(B), 1'000'000u);
  EXPECT_EQ(sim().received_ok(A), 700'000u);
  EXPECT_EQ(sim().received_bad(A) + sim().received_bad(B), 0u);
}

TEST(TcpEndpointLong, TransferPastTwoGigabytesKeepsFlowing) {
  // Past 2^31 bytes, SND.UNA and the ISN are more than half the sequence space
  // apart: no comparison may involve the ISN any more.
  TcpConfig a = Config(Side::kA), b = Config(Side::kB);
  a.mss = b.mss = 65483;
  a.send_buffer = b.recv_buffer = 4 << 20;
  Simulator::Options o;
  o.trace = false;
  o.check_data = false;
  o.latency = absl::Microseconds(50);
  Simulator sim(a, b, o);
  ASSERT_TRUE(sim.b().Listen(sim.now()).ok());
  ASSERT_TRUE(sim.a().Connect(sim.now()).ok());
  constexpr uint64_t kBytes = (1ull << 31) + (256ull << 20);
  sim.StartTransfer(Side::kA, kBytes, true);
  ASSERT_TRUE(sim.RunUntil([&] { return sim.received_ok(Side::kB) == kBytes && sim.b().eof(); },
                           absl::Seconds(60)));
}

TEST_F(Conversation, ZeroWindowIsProbedAndReopens) {
  TcpConfig cb = Config(B);
  cb.recv_buffer = 8192;
  Reset(Config(A), cb);
  Open();
  sim().set_auto_read(B, false);
  sim().StartTransfer(A, 50'000, false);
  ASSERT_TRUE(sim().RunFor(absl::Seconds(10)));
  EXPECT_EQ(b().readable(), 8192u);
  EXPECT_EQ(a().tcb().snd_wnd, 0u);
  // A probes the closed window: segments one below SND.UNA, with no data.
  int probes = 0;
  for (const TraceEntry& e : sim().trace()) {
    if (e.from == A && e.payload_len == 0 && e.seg.seq == a().tcb().snd_una - 1) ++probes;
  }
  EXPECT_GE(probes, 3);
  EXPECT_EQ(a().state(), TcpState::kEstablished);
  sim().set_auto_read(B, true);
  ASSERT_TRUE(sim().RunUntil([&] { return sim().received_ok(B) == 50'000; }, absl::Minutes(2)));
}

TEST_F(Conversation, ZeroWindowProbesKeepTheConnectionAliveForLong) {
  TcpConfig cb = Config(B);
  cb.recv_buffer = 4096;
  Reset(Config(A), cb);
  Open();
  sim().set_auto_read(B, false);
  sim().StartTransfer(A, 10'000, false);
  ASSERT_TRUE(sim().RunFor(absl::Hours(1)));
  EXPECT_EQ(a().state(), TcpState::kEstablished);  // answered probes never give up
}

TEST_F(Conversation, DataLossIsRepairedByFastRetransmit) {
  Open();
  int n = 0;
  sim().set_filter([&](Side from, const TcpRepr& seg) {
    LinkVerdict v;
    if (from == A && !seg.payload.empty() && ++n == 5) v.drop = true;
    return v;
  });
  sim().StartTransfer(A, 100'000, false);
  ASSERT_TRUE(sim().RunUntil([&] { return sim().received_ok(B) == 100'000; }, absl::Seconds(1)))
      << sim().Ladder();
  EXPECT_GE(a().retransmissions(), 1);
  // Recovered well within one RTO: only duplicate ACKs can have triggered it.
  EXPECT_LT(sim().elapsed(), absl::Seconds(1));
}

// A sends 20 full segments 3 ms apart, then one byte; returns B's ACKs of data and
// the time from the last data segment's departure to B's last ACK.
std::pair<int, Duration> SpacedSegmentsAndTheirAcks(Simulator& sim) {
  TcpEndpoint& a = sim.a();
  std::vector<uint8_t> full(a.tcb().snd_mss, 'x');
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(*a.Send(full), full.size());
    EXPECT_TRUE(sim.RunFor(absl::Milliseconds(3)));
  }
  std::vector<uint8_t> one(1, 'y');
  EXPECT_EQ(*a.Send(one), 1u);
  EXPECT_TRUE(sim.RunFor(absl::Milliseconds(200)));
  int acks = 0;
  Instant last_data, last_ack;
  for (const TraceEntry& e : sim.trace()) {
    if (e.from == Side::kA && e.payload_len > 0) last_data = e.at;
    if (e.from == Side::kB && e.payload_len == 0 && e.seg.ack.raw() - kIsnA > 1) {
      ++acks;
      last_ack = e.at;
    }
  }
  return {acks, last_ack - last_data};
}

TEST_F(Conversation, DelayedAcksQuickAckFirstThenEverySecondSegmentThenTheTimer) {
  Open();
  // B acknowledges the first 16 segments one by one (Linux's quick-ack mode), then
  // every second full segment (after the 18th and the 20th); the last byte waits
  // for the 40 ms delayed-ACK timer.
  auto [acks, wait] = SpacedSegmentsAndTheirAcks(sim());
  EXPECT_EQ(acks, 16 + 2 + 1);
  EXPECT_EQ(wait, absl::Milliseconds(10) + absl::Milliseconds(40));
}

TEST_F(Conversation, RfcProfileAcknowledgesEverySegmentAtOnce) {
  Reset(RfcConfig(A), RfcConfig(B));
  Open();
  auto [acks, wait] = SpacedSegmentsAndTheirAcks(sim());
  EXPECT_EQ(acks, 21);
  EXPECT_EQ(wait, absl::Milliseconds(10));
}

TEST_F(Conversation, ReceiverHoldsOutOfOrderDataAndSendsSack) {
  Open();
  int n = 0;
  sim().set_filter([&](Side from, const TcpRepr& seg) {
    LinkVerdict v;
    if (from == A && !seg.payload.empty() && ++n == 1) v.drop = true;
    return v;
  });
  sim().StartTransfer(A, 20'000, false);
  ASSERT_TRUE(sim().RunUntil([&] { return sim().received_ok(B) == 20'000; }, absl::Seconds(5)));
  bool saw_sack = false;
  for (const TraceEntry& e : sim().trace()) {
    if (e.from == B && e.seg.options.sack_count > 0) saw_sack = true;
  }
  EXPECT_TRUE(saw_sack);
}

TEST_F(Conversation, DataRetriesExhaustedAbortsWithReason) {
  Open();
  sim().set_filter([](Side from, const TcpRepr&) { return LinkVerdict{.drop = from == B}; });
  sim().StartTransfer(A, 1000, false);
  ASSERT_TRUE(sim().RunUntil([&] { return a().state() == TcpState::kClosed; }, absl::Hours(2)));
  EXPECT_EQ(a().close_reason(), CloseReason::kTimeout);
  EXPECT_EQ(a().error(), "connection timed out: no answer after 15 segment retransmissions");
}

TEST_F(Conversation, RtoFollowsMeasuredRtt) {
  Reset(RfcConfig(A), RfcConfig(B));
  Open();
  sim().StartTransfer(A, 100'000, false);
  ASSERT_TRUE(sim().RunUntil([&] { return sim().received_ok(B) == 100'000; }, absl::Seconds(5)));
  // 20 ms round trips: SRTT ~ 20 ms, and RTO clamps at the 1 s floor (RFC 6298 §2.4).
  EXPECT_NEAR(absl::ToDoubleMilliseconds(a().tcb().srtt), 20, 2);
  EXPECT_EQ(a().tcb().rto, absl::Seconds(1));
}

TEST_F(Conversation, RtoFollowsMeasuredRttAboveTheLinuxFloor) {
  Open();
  sim().StartTransfer(A, 100'000, false);
  ASSERT_TRUE(sim().RunUntil([&] { return sim().received_ok(B) == 100'000; }, absl::Seconds(5)));
  EXPECT_NEAR(absl::ToDoubleMilliseconds(a().tcb().srtt), 20, 2);
  // Linux's tcp_set_rto: SRTT + max(4*RTTVAR, TCP_RTO_MIN) = 20 ms + 200 ms.
  EXPECT_EQ(a().tcb().rto, absl::Milliseconds(220));
}

// --- RST in every state (RFC 9293 + RFC 5961) ------------------------------------

// Injects a segment into `to` as if `from` had sent it.
void Inject(Simulator& sim, Side to, TcpRepr seg) { sim.endpoint(to).OnSegment(sim.now(), seg); }

TcpRepr RstFrom(TcpEndpoint& peer_of_target, TcpEndpoint& target) {
  TcpRepr r;
  r.src_port = target.tuple().remote_port;
  r.dst_port = target.tuple().local_port;
  r.seq = target.tcb().rcv_nxt;
  r.flags = TcpFlags(kRst);
  (void)peer_of_target;
  return r;
}

TEST_F(Conversation, RstInSynSentWithAcceptableAckRefuses) {
  ASSERT_TRUE(a().Connect(now()).ok());
  sim().Flush();
  TcpRepr r;
  r.src_port = kPortB;
  r.dst_port = kPortA;
  r.flags = TcpFlags(kRst | kAck);
  r.ack = SeqNum(kIsnA + 1);
  Inject(sim(), A, r);
  EXPECT_EQ(a().state(), TcpState::kClosed);
  EXPECT_EQ(a().close_reason(), CloseReason::kRefused);
}

TEST_F(Conversation, RstInSynSentWithoutAckIsIgnored) {
  ASSERT_TRUE(a().Connect(now()).ok());
  sim().Flush();
  TcpRepr r;
  r.src_port = kPortB;
  r.dst_port = kPortA;
  r.flags = TcpFlags(kRst);
  Inject(sim(), A, r);
  EXPECT_EQ(a().state(), TcpState::kSynSent);
}

TEST_F(Conversation, RstInSynReceivedReturnsPassiveOpenToListen) {
  DropNth(B, kSyn | kAck, 1);
  ASSERT_TRUE(b().Listen(now()).ok());
  ASSERT_TRUE(a().Connect(now()).ok());
  ASSERT_TRUE(
      sim().RunUntil([&] { return b().state() == TcpState::kSynReceived; }, absl::Seconds(1)));
  Inject(sim(), B, RstFrom(a(), b()));
  EXPECT_EQ(b().state(), TcpState::kListen);
}

// A listener that turned active with a send came from SYN-SENT: a RST in
// SYN-RECEIVED refuses the connection (RFC 9293 §3.10.7.4 second, "initiated with
// an active OPEN") rather than returning it to LISTEN.
TEST_F(Conversation, RstInSynReceivedClosesAListenerThatOpenedActively) {
  ASSERT_TRUE(a().Listen(now()).ok());
  std::vector<uint8_t> data(100, 7);
  ASSERT_TRUE(a().Send(now(), data).ok());
  ASSERT_TRUE(b().Connect(now()).ok());
  ASSERT_TRUE(
      sim().RunUntil([&] { return a().state() == TcpState::kSynReceived; }, absl::Seconds(1)));
  Inject(sim(), A, RstFrom(b(), a()));
  EXPECT_EQ(a().state(), TcpState::kClosed);
  EXPECT_EQ(a().close_reason(), CloseReason::kRefused);
  EXPECT_EQ(a().send_queue(), 0u);
}

class RstInState : public Conversation, public ::testing::WithParamInterface<TcpState> {};

TEST_P(RstInState, ExactRstClosesAndInWindowRstIsChallenged) {
  TcpState target = GetParam();
  Open();
  // Drive B into the target state with the real teardown.
  auto reach = [&](TcpState s) {
    return sim().RunUntil([&] { return b().state() == s; }, absl::Seconds(5));
  };
  switch (target) {
    case TcpState::kEstablished:
      break;
    case TcpState::kFinWait1:
      sim().set_filter([](Side from, const TcpRepr&) { return LinkVerdict{.drop = from == A}; });
      ASSERT_TRUE(b().Close(now()).ok());
      ASSERT_TRUE(reach(target));
      break;
    case TcpState::kFinWait2:
      ASSERT_TRUE(b().Close(now()).ok());
      ASSERT_TRUE(reach(target));
      break;
    case TcpState::kCloseWait:
      ASSERT_TRUE(a().Close(now()).ok());
      ASSERT_TRUE(reach(target));
      break;
    case TcpState::kLastAck:
      ASSERT_TRUE(a().Close(now()).ok());
      ASSERT_TRUE(reach(TcpState::kCloseWait));
      sim().set_filter([](Side from, const TcpRepr&) { return LinkVerdict{.drop = from == A}; });
      ASSERT_TRUE(b().Close(now()).ok());
      ASSERT_TRUE(reach(target));
      break;
    case TcpState::kClosing:
      sim().set_filter([](Side from, const TcpRepr& s) {
        return LinkVerdict{.drop = from == A && !s.flags.has(kFin)};
      });
      ASSERT_TRUE(a().Close(now()).ok());
      ASSERT_TRUE(b().Close(now()).ok());
      ASSERT_TRUE(reach(target));
      break;
    case TcpState::kTimeWait:
      ASSERT_TRUE(b().Close(now()).ok());
      ASSERT_TRUE(reach(TcpState::kFinWait2));
      ASSERT_TRUE(a().Close(now()).ok());
      ASSERT_TRUE(reach(target));
      break;
    default:
      FAIL();
  }
  ASSERT_EQ(b().state(), target);
  sim().set_filter({});
  size_t before = sim().trace().size();

  // A RST inside the window but not at RCV.NXT: challenge ACK, state unchanged.
  TcpRepr off = RstFrom(a(), b());
  off.seq = off.seq + 100;
  Inject(sim(), B, off);
  sim().Flush();
  EXPECT_EQ(b().state(), target);
  ASSERT_GT(sim().trace().size(), before);
  const TraceEntry& challenge = sim().trace()[before];
  EXPECT_EQ(challenge.from, B);
  EXPECT_EQ(challenge.seg.flags, TcpFlags(kAck));
  EXPECT_EQ(challenge.seg.ack, b().tcb().rcv_nxt);

  // A RST outside the window is dropped silently.
  TcpRepr far = RstFrom(a(), b());
  far.seq = far.seq + 0x40000000;
  before = sim().trace().size();
  Inject(sim(), B, far);
  sim().Flush();
  EXPECT_EQ(b().state(), target);
  EXPECT_EQ(sim().trace().size(), before);

  // A RST at exactly RCV.NXT closes the connection.
  Inject(sim(), B, RstFrom(a(), b()));
  EXPECT_EQ(b().state(), TcpState::kClosed);
}

INSTANTIATE_TEST_SUITE_P(AllSynchronizedStates, RstInState,
                         ::testing::Values(TcpState::kEstablished, TcpState::kFinWait1,
                                           TcpState::kFinWait2, TcpState::kCloseWait,
                                           TcpState::kClosing, TcpState::kLastAck,
                                           TcpState::kTimeWait),
                         [](const auto& info) {
                           std::string n(StateName(info.param));
                           n.erase(std::remove(n.begin(), n.end(), '-'), n.end());
                           return n;
                         });

TEST_F(Conversation, RstInListenAndClosedIsIgnored) {
  ASSERT_TRUE(b().Listen(now()).ok());
  TcpRepr r;
  r.src_port = kPortA;
  r.dst_port = kPortB;
  r.flags = TcpFlags(kRst);
  Inject(sim(), B, r);
  sim().Flush();
  EXPECT_EQ(b().state(), TcpState::kListen);
  EXPECT_TRUE(sim().trace().empty());
  Inject(sim(), A, r);  // A is CLOSED
  sim().Flush();
  EXPECT_TRUE(sim().trace().empty());
}

TEST_F(Conversation, AbortSendsRstAndPeerSeesReset) {
  Open();
  a().Abort(now());
  EXPECT_EQ(a().state(), TcpState::kClosed);
  ASSERT_TRUE(sim().RunUntil([&] { return b().state() == TcpState::kClosed; }, absl::Seconds(1)));
  EXPECT_EQ(b().close_reason(), CloseReason::kReset);
  EXPECT_EQ(b().error(), "connection reset by peer");
  EXPECT_EQ(Segments().back(), S(A, "R", 1, 0));
}

TEST_F(Conversation, SynInEstablishedGetsChallengeAck) {
  Open();
  TcpRepr syn;
  syn.src_port = kPortA;
  syn.dst_port = kPortB;
  syn.seq = b().tcb().rcv_nxt + 10;
  syn.flags = TcpFlags(kSyn);
  size_t before = sim().trace().size();
  Inject(sim(), B, syn);
  sim().Flush();
  EXPECT_EQ(b().state(), TcpState::kEstablished);
  ASSERT_EQ(sim().trace().size(), before + 1);
  EXPECT_EQ(sim().trace()[before].seg.flags, TcpFlags(kAck));
}

TEST_F(Conversation, AckOfUnsentDataIsAnsweredWithAck) {
  Open();
  TcpRepr bad;
  bad.src_port = kPortA;
  bad.dst_port = kPortB;
  bad.seq = b().tcb().rcv_nxt;
  bad.ack = b().tcb().snd_nxt + 1;  // acknowledges a byte B never sent
  bad.flags = TcpFlags(kAck);
  bad.window = 1000;
  size_t before = sim().trace().size();
  Inject(sim(), B, bad);
  sim().Flush();
  ASSERT_EQ(sim().trace().size(), before + 1);
  EXPECT_EQ(sim().trace()[before].seg.ack, b().tcb().rcv_nxt);
  EXPECT_EQ(b().tcb().snd_una, b().tcb().snd_nxt);
}

TEST_F(Conversation, PureAckAtTheRightEdgeOfTheWindowIsAcceptedSilently) {
  Open();
  // A sender that filled our window sends its ACKs at SEQ = RCV.NXT + RCV.WND (a hole
  // keeps RCV.NXT back). Answering each with an ACK is how two endpoints start an ACK
  // war; B takes it as it takes any acceptable segment (its window is read from it).
  TcpRepr edge;
  edge.src_port = kPortA;
  edge.dst_port = kPortB;
  // B has read nothing: its window is its whole receive buffer.
  edge.seq = b().tcb().rcv_nxt + static_cast<uint32_t>(b().config().recv_buffer);
  edge.ack = b().tcb().snd_nxt;
  edge.flags = TcpFlags(kAck);
  edge.window = 777;
  size_t before = sim().trace().size();
  Inject(sim(), B, edge);
  sim().Flush();
  EXPECT_EQ(sim().trace().size(), before) << "B answered an acceptable pure ACK";
  EXPECT_EQ(b().tcb().snd_wnd, 777u << b().tcb().snd_wscale);
}

TEST_F(Conversation, AnAckThatAdvancesSndUnaUpdatesTheWindowEvenFromAnOlderSeq) {
  Open();
  ASSERT_TRUE(b().Send(std::vector<uint8_t>(100, 'x')).ok());
  TcpRepr newer;  // a later segment of A's, reordered ahead: it sets WL1
  newer.src_port = kPortA;
  newer.dst_port = kPortB;
  newer.seq = b().tcb().rcv_nxt + 10;
  newer.ack = b().tcb().snd_una;
  newer.flags = TcpFlags(kAck);
  newer.window = 4000;
  // B's data is out; A's segments to B are injected by hand from here on.
  sim().set_filter([](Side from, const TcpRepr&) {
    LinkVerdict v;
    v.drop = from == Side::kA;
    return v;
  });
  sim().Flush();
  ASSERT_EQ(b().tcb().snd_nxt - b().tcb().snd_una, 100u);
  Inject(sim(), B, newer);
  // An older SEG.SEQ that acknowledges the 100 bytes with a smaller window: the window
  // it carries counts from its ACK, so B must take it, not keep 4000 from SND.UNA.
  TcpRepr older = newer;
  older.seq = newer.seq - 10;
  older.ack = b().tcb().snd_nxt;
  older.window = 50;
  Inject(sim(), B, older);
  EXPECT_EQ(b().tcb().snd_una, b().tcb().snd_nxt);
  EXPECT_EQ(b().tcb().snd_wnd, 50u << b().tcb().snd_wscale);
}

// --- application calls in every state ---------------------------------------------

TEST_F(Conversation, CloseInListenAndSynSentGoesToClosed) {
  ASSERT_TRUE(b().Listen(now()).ok());
  ASSERT_TRUE(b().Close(now()).ok());
  EXPECT_EQ(b().state(), TcpState::kClosed);
  ASSERT_TRUE(a().Connect(now()).ok());
  ASSERT_TRUE(a().Close(now()).ok());
  EXPECT_EQ(a().state(), TcpState::kClosed);
}

TEST_F(Conversation, CloseInSynReceivedSendsFinOnceEstablished) {
  DropNth(A, kAck, 1);
  ASSERT_TRUE(b().Listen(now()).ok());
  ASSERT_TRUE(a().Connect(now()).ok());
  ASSERT_TRUE(
      sim().RunUntil([&] { return a().state() == TcpState::kEstablished; }, absl::Seconds(1)));
  ASSERT_EQ(b().state(), TcpState::kSynReceived);
  ASSERT_TRUE(b().Close(now()).ok());
  EXPECT_EQ(b().state(), TcpState::kFinWait1);
  ASSERT_TRUE(
      sim().RunUntil([&] { return a().state() == TcpState::kCloseWait; }, absl::Seconds(5)));
  ASSERT_TRUE(a().Close(now()).ok());
  ASSERT_TRUE(RunUntilBothClosed());
}

TEST_F(Conversation, SendAfterCloseIsAnError) {
  Open();
  ASSERT_TRUE(a().Close(now()).ok());
  uint8_t byte = 1;
  EXPECT_FALSE(a().Send({&byte, 1}).ok());
  EXPECT_FALSE(a().Close(now()).ok());
}

TEST_F(Conversation, EveryEdgeOfTheStateDiagramIsTakenSomewhere) {
  std::set<std::pair<TcpState, TcpState>> seen;
  auto collect = [&] {
    for (Side s : {A, B}) {
      for (const StateChange& c : sim().changes(s)) {
        EXPECT_TRUE(IsLegalTransition(c.from, c.to))
            << StateName(c.from) << " -> " << StateName(c.to);
        seen.insert({c.from, c.to});
      }
    }
  };
  // Classic open and close, both roles.
  Open();
  ASSERT_TRUE(a().Close(now()).ok());
  ASSERT_TRUE(
      sim().RunUntil([&] { return b().state() == TcpState::kCloseWait; }, absl::Seconds(1)));
  ASSERT_TRUE(b().Close(now()).ok());
  ASSERT_TRUE(RunUntilBothClosed());
  collect();
  // Simultaneous open and simultaneous close.
  Reset(Config(A), Config(B));
  ASSERT_TRUE(a().Connect(now()).ok());
  ASSERT_TRUE(b().Connect(now()).ok());
  ASSERT_TRUE(sim().RunUntil(
      [&] {
        return b().state() == TcpState::kEstablished && a().state() == TcpState::kEstablished;
      },
      absl::Seconds(5)));
  ASSERT_TRUE(a().Close(now()).ok());
  ASSERT_TRUE(b().Close(now()).ok());
  ASSERT_TRUE(RunUntilBothClosed());
  collect();
  // FIN and ACK of our FIN in one segment: FIN-WAIT-1 -> TIME-WAIT is not in
  // Figure 5 as a single edge; the endpoint passes through FIN-WAIT-2.
  // Close in LISTEN, SYN-SENT and SYN-RECEIVED; RST in SYN-RECEIVED.
  Reset(Config(A), Config(B));
  ASSERT_TRUE(b().Listen(now()).ok());
  ASSERT_TRUE(b().Close(now()).ok());
  ASSERT_TRUE(a().Connect(now()).ok());
  ASSERT_TRUE(a().Close(now()).ok());
  collect();
  Reset(Config(A), Config(B));
  DropNth(A, kAck, 1);
  ASSERT_TRUE(b().Listen(now()).ok());
  ASSERT_TRUE(a().Connect(now()).ok());
  ASSERT_TRUE(sim().RunUntil(
      [&] {
        return b().state() == TcpState::kSynReceived && a().state() == TcpState::kEstablished;
      },
      absl::Seconds(1)));
  ASSERT_TRUE(b().Close(now()).ok());
  a().Abort(now());
  ASSERT_TRUE(RunUntilBothClosed(absl::Seconds(30)));
  collect();
  Reset(Config(A), Config(B));
  DropNth(B, kSyn | kAck, 1);
  ASSERT_TRUE(b().Listen(now()).ok());
  ASSERT_TRUE(a().Connect(now()).ok());
  ASSERT_TRUE(
      sim().RunUntil([&] { return b().state() == TcpState::kSynReceived; }, absl::Seconds(1)));
  Inject(sim(), B, RstFrom(a(), b()));
  collect();
  for (auto [from, to] : std::vector<std::pair<TcpState, TcpState>>{
           {TcpState::kClosed, TcpState::kListen},
           {TcpState::kClosed, TcpState::kSynSent},
           {TcpState::kListen, TcpState::kSynReceived},
           {TcpState::kListen, TcpState::kClosed},
           {TcpState::kSynSent, TcpState::kEstablished},
           {TcpState::kSynSent, TcpState::kSynReceived},
           {TcpState::kSynSent, TcpState::kClosed},
           {TcpState::kSynReceived, TcpState::kEstablished},
           {TcpState::kSynReceived, TcpState::kFinWait1},
           {TcpState::kSynReceived, TcpState::kListen},
           {TcpState::kEstablished, TcpState::kFinWait1},
           {TcpState::kEstablished, TcpState::kCloseWait},
           {TcpState::kFinWait1, TcpState::kFinWait2},
           {TcpState::kFinWait1, TcpState::kClosing},
           {TcpState::kFinWait2, TcpState::kTimeWait},
           {TcpState::kCloseWait, TcpState::kLastAck},
           {TcpState::kClosing, TcpState::kTimeWait},
           {TcpState::kLastAck, TcpState::kClosed},
           {TcpState::kTimeWait, TcpState::kClosed},
       }) {
    EXPECT_TRUE(seen.count({from, to}))
        << StateName(from) << " -> " << StateName(to) << " never taken";
  }
}

// --- the property: whatever the link does, the bytes arrive and both ends close ----

TEST(TcpEndpointProperty, RandomFaultsStillDeliverEveryByteInBoundedTimeAndClose) {
  int failures = 0;
  uint64_t total_bytes = 0, total_retransmissions = 0;
  for (uint64_t seed = 1; seed <= 1000; ++seed) {
    std::mt19937_64 rng(seed);
    Simulator::Options o;
    o.seed = seed;
    o.latency = absl::Milliseconds(1 + rng() % 20);
    o.trace = false;
    TcpConfig ca = Config(Side::kA), cb = Config(Side::kB);
    ca.isn = [v = static_cast<uint32_t>(rng())](const FourTuple&, Instant) { return v; };
    cb.isn = [v = static_cast<uint32_t>(rng())](const FourTuple&, Instant) { return v; };
    ca.send_buffer = cb.recv_buffer = 4096 << (rng() % 6);
    cb.send_buffer = ca.recv_buffer = 4096 << (rng() % 6);
    ca.msl = cb.msl = absl::Seconds(5);
    // Both profiles, and peers without SACK or timestamps (NewReno recovery, RTT
    // from timed segments), from the seed's low bits.
    TcpProfile profile = seed % 2 ? TcpProfile::kLinux : TcpProfile::kRfc;
    ApplyProfile(profile, ca);
    ApplyProfile(profile, cb);
    if (seed % 3 == 0) ca.sack = false;
    if (seed % 5 == 0) cb.timestamps = false;
    Simulator sim(ca, cb, o);
    RandomFaults f;
    f.loss = (rng() % 20) / 100.0;
    f.duplicate = (rng() % 10) / 100.0;
    f.reorder = (rng() % 30) / 100.0;
    f.max_extra_delay = absl::Milliseconds(rng() % 50);
    f.until = sim.now() + absl::Seconds(30);
    sim.set_random_faults(f);
    uint64_t a_bytes = rng() % 60'000, b_bytes = rng() % 60'000;
    ASSERT_TRUE(sim.b().Listen(sim.now()).ok());
    ASSERT_TRUE(sim.a().Connect(sim.now()).ok());
    sim.StartTransfer(Side::kA, a_bytes, true);
    sim.StartTransfer(Side::kB, b_bytes, true);
    // Delivery (every byte and both FINs) must end within a bound once the faults
    // stop: the timer either side has pending fires once, a segment the link still
    // holds arrives, a delayed ACK waits once, and then a handful of round trips per
    // buffer of bytes left.
    auto delivered = [&] {
      return sim.received_ok(Side::kB) == a_bytes && sim.received_ok(Side::kA) == b_bytes &&
             sim.a().fin_received() && sim.b().fin_received();
    };
    bool early = sim.RunUntil(delivered, f.until - sim.now());
    Instant bound = kNever;
    if (!early) {
      Duration wait = std::max(sim.a().tcb().rto, sim.b().tcb().rto);
      uint64_t left = a_bytes - sim.received_ok(Side::kB) + b_bytes - sim.received_ok(Side::kA);
      size_t min_buffer =
          std::min({ca.send_buffer, ca.recv_buffer, cb.send_buffer, cb.recv_buffer});
      double rtts = 32 + 2.0 * static_cast<double>(left) / static_cast<double>(min_buffer / 2);
      bound = sim.now() + wait + f.max_extra_delay + ca.delayed_ack_timeout + 2 * o.latency * rtts;
      ASSERT_TRUE(sim.RunUntil(delivered, absl::Minutes(30)));
      if (sim.now() > bound && ++failures <= 5) {
        ADD_FAILURE() << "seed " << seed << ": delivered "
                      << absl::FormatDuration(sim.now() - f.until)
                      << " after the faults stopped, bound "
                      << absl::FormatDuration(bound - f.until) << " (a stall)";
      }
    }
    bool closed = sim.RunUntil(
        [&] {
          return sim.a().state() == TcpState::kClosed && sim.b().state() == TcpState::kClosed;
        },
        absl::Minutes(30));
    total_bytes += sim.received_ok(Side::kA) + sim.received_ok(Side::kB);
    total_retransmissions += sim.a().retransmissions() + sim.b().retransmissions();
    bool ok = closed && sim.received_ok(Side::kB) == a_bytes &&
              sim.received_ok(Side::kA) == b_bytes && sim.received_bad(Side::kA) == 0 &&
              sim.received_bad(Side::kB) == 0;
    if (!ok && ++failures <= 5) {
      ADD_FAILURE() << "seed " << seed << ": A " << StateName(sim.a().state()) << " ("
                    << sim.a().error() << "), B " << StateName(sim.b().state()) << " ("
                    << sim.b().error() << "), B got " << sim.received_ok(Side::kB) << "/" << a_bytes
                    << ", A got " << sim.received_ok(Side::kA) << "/" << b_bytes << ", loss "
                    << f.loss;
    }
  }
  EXPECT_EQ(failures, 0);
  // The faults were real: the endpoints had to repair plenty of loss.
  EXPECT_GT(total_retransmissions, 1000u);
  RecordProperty("bytes", std::to_string(total_bytes));
  RecordProperty("retransmissions", std::to_string(total_retransmissions));
  std::cout << "1000 seeds: " << total_bytes << " bytes delivered, " << total_retransmissions
            << " retransmissions\n";
}


// --- the two Figure 5 edges the endpoint does not take (tcp_state.cc) -------------

// RFC 6528: ISN = M + F(4-tuple, secret), F SipHash-2-4 over the local and remote
// addresses and ports, M a clock of 4 µs ticks. The key 00..0f and the tuple laid out
// as the bytes 00, 01, ... give the reference implementation's values
// (its 15-byte vector, a129ca6149be45e5, checks the same code).
TEST(TcpEndpoint, Rfc6528IsnIsSipHashOfTheTuplePlusAFourMicrosecondClock) {
  const std::array<uint64_t, 2> key = {0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};
  FourTuple v4{IpAddress::V4(0x00010203), 0x0809, IpAddress::V4(0x04050607), 0x0a0b};
  const Instant t0 = absl::UnixEpoch();
  EXPECT_EQ(Rfc6528Isn(v4, t0, key), 0x860ee5fbu);
  EXPECT_EQ(Rfc6528Isn(v4, t0 + absl::Microseconds(4), key), 0x860ee5fcu);
  EXPECT_EQ(Rfc6528Isn(v4, t0 + absl::Microseconds(7), key), 0x860ee5fcu);
  EXPECT_EQ(Rfc6528Isn(v4, t0 + absl::Seconds(4), key), 0x860ee5fbu + 1'000'000u);
  std::array<uint8_t, 16> l{}, r{};
  for (uint8_t i = 0; i < 16; ++i) {
    l[i] = i;
    r[i] = static_cast<uint8_t>(16 + i);
  }
  FourTuple v6{IpAddress::V6(l), 0x2021, IpAddress::V6(r), 0x2223};
  EXPECT_EQ(Rfc6528Isn(v6, t0, key), 0x0815a3b4u);
}

// RFC 9293 §3.10.2, SEND in LISTEN with the foreign socket specified: the listener
// turns active, sends a SYN, and its data follows the handshake.
TEST_F(Conversation, SendOnAListenerOpensActively) {
  ASSERT_TRUE(a().Listen(now()).ok());
  ASSERT_TRUE(b().Listen(now()).ok());
  std::vector<uint8_t> data(100, 7);
  auto sent = a().Send(now(), data);
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(*sent, 100u);
  EXPECT_EQ(a().state(), TcpState::kSynSent);
  ASSERT_TRUE(sim().RunUntil([&] { return b().bytes_received() == 100; }, absl::Seconds(1)));
  // The data goes with the ACK that completes the handshake.
  EXPECT_THAT(Segments(), ElementsAre(S(A, "S", 0, 0), S(B, "S.", 0, 1), S(A, ".", 1, 1, 100),
                                      S(B, ".", 1, 101)));
  EXPECT_THAT(States(A),
              ElementsAre(TcpState::kListen, TcpState::kSynSent, TcpState::kEstablished));
  EXPECT_EQ(sim().changes(A)[1].cause, "send on a listener (active open)");
}

// Without a foreign port the listener cannot turn active: "error: foreign socket
// unspecified", and it keeps listening with nothing queued.
TEST_F(Conversation, SendOnAListenerWithoutForeignSocketIsRefused) {
  TcpConfig cb = Config(B);
  cb.tuple.remote_port = 0;
  Reset(Config(A), cb);
  ASSERT_TRUE(b().Listen(now()).ok());
  uint8_t byte = 7;
  auto sent = b().Send(now(), {&byte, 1});
  EXPECT_FALSE(sent.ok());
  EXPECT_THAT(std::string(sent.status().message()),
              ::testing::HasSubstr("foreign socket unspecified"));
  EXPECT_FALSE(b().Send({&byte, 1}).ok());  // no time: no state change either
  ASSERT_FALSE(sim().RunUntil([] { return false; }, absl::Seconds(5)));
  EXPECT_EQ(b().state(), TcpState::kListen);
  EXPECT_EQ(b().send_queue(), 0u);
  EXPECT_THAT(Segments(), ElementsAre());
  ASSERT_TRUE(a().Connect(now()).ok());
  ASSERT_TRUE(
      sim().RunUntil([&] { return b().state() == TcpState::kEstablished; }, absl::Seconds(1)));
  EXPECT_THAT(Segments(), ElementsAre(S(A, "S", 0, 0), S(B, "S.", 0, 1), S(A, ".", 1, 1)));
}

// §3.10.7.4 eighth step, FIN-WAIT-1: "If our FIN has been ACKed (perhaps in this
// segment), then enter TIME-WAIT": one change, at the instant the FIN arrives.
TEST_F(Conversation, FinThatAcknowledgesOurFinEntersTimeWaitFromFinWait1) {
  Open();
  DropNth(B, kAck, 1);  // B's ACK of A's FIN, so that B's FIN carries it
  ASSERT_TRUE(a().Close(now()).ok());
  ASSERT_TRUE(
      sim().RunUntil([&] { return b().state() == TcpState::kCloseWait; }, absl::Seconds(1)));
  ASSERT_TRUE(b().Close(now()).ok());
  ASSERT_TRUE(sim().RunUntil([&] { return a().state() == TcpState::kTimeWait; }, absl::Seconds(1)));
  EXPECT_THAT(Segments(), ElementsAre(S(A, "S", 0, 0), S(B, "S.", 0, 1), S(A, ".", 1, 1),
                                      S(A, "F.", 1, 1), S(B, ".", 1, 2), S(B, "F.", 1, 2),
                                      S(A, ".", 2, 2)));
  const std::vector<StateChange>& c = sim().changes(A);
  ASSERT_EQ(c.size(), 4u);
  EXPECT_EQ(c[3].from, TcpState::kFinWait1);
  EXPECT_EQ(c[3].to, TcpState::kTimeWait);
  EXPECT_EQ(a().timers().time_wait, c[3].at + absl::Seconds(60));
  EXPECT_EQ(a().timers().rto, kNever);
  EXPECT_EQ(b().state(), TcpState::kLastAck);
}

// The same ACK of our FIN on a FIN that cannot take effect yet (the peer's data
// before it is missing): FIN-WAIT-2, and TIME-WAIT once the data arrives.
TEST_F(Conversation, FinAheadOfMissingDataAcksOurFinIntoFinWait2) {
  Open();
  // B's ACK of A's FIN and B's data are lost; B's FIN, which acknowledges A's, arrives.
  auto dropped = std::make_shared<int>(0);
  sim().set_filter([dropped](Side f, const TcpRepr& seg) {
    LinkVerdict v;
    if (f == B && !seg.flags.has(kFin) && *dropped < 2) v.drop = ++*dropped > 0;
    return v;
  });
  ASSERT_TRUE(a().Close(now()).ok());
  ASSERT_TRUE(
      sim().RunUntil([&] { return b().state() == TcpState::kCloseWait; }, absl::Seconds(1)));
  std::vector<uint8_t> data(100, 1);
  ASSERT_TRUE(b().Send(data).ok());
  ASSERT_FALSE(sim().RunUntil([] { return false; }, absl::Milliseconds(1)));
  ASSERT_EQ(*dropped, 2);
  ASSERT_TRUE(b().Close(now()).ok());
  ASSERT_TRUE(sim().RunUntil([&] { return a().state() == TcpState::kFinWait2; }, absl::Seconds(1)));
  EXPECT_TRUE(a().fin_acked());
  EXPECT_FALSE(a().fin_received());
  ASSERT_TRUE(sim().RunUntil([&] { return a().state() == TcpState::kTimeWait; }, absl::Seconds(5)));
  EXPECT_EQ(a().bytes_received(), 100u);
  EXPECT_THAT(States(A),
              ElementsAre(TcpState::kSynSent, TcpState::kEstablished, TcpState::kFinWait1,
                          TcpState::kFinWait2, TcpState::kTimeWait));
}

// --- answers to unexpected segments (RFC 9293 §3.10.7.1 to §3.10.7.3) -------------

// A segment from A's address and port to B's, as if A had sent it.
TcpRepr FromA(uint8_t flags, uint32_t seq, uint32_t ack) {
  TcpRepr r;
  r.src_port = kPortA;
  r.dst_port = kPortB;
  r.flags = TcpFlags(flags);
  r.seq = SeqNum(seq);
  r.ack = SeqNum(ack);
  r.window = 1000;
  return r;
}

// The segments `side` sends while the simulator runs for 1 ms, A's deliveries cut off.
std::vector<TcpRepr> Answers(Simulator& sim, Side side) {
  std::vector<TcpRepr> out;
  sim.set_filter([&out, side](Side from, const TcpRepr& seg) {
    LinkVerdict v;
    if (from == side) out.push_back(seg);
    v.drop = true;
    return v;
  });
  sim.RunFor(absl::Milliseconds(1));
  sim.set_filter(nullptr);
  return out;
}

TEST_F(Conversation, ClosedAnswersAnAckWithARstAtThatAck) {
  Inject(sim(), B, FromA(kAck, 77, 12345));
  std::vector<TcpRepr> out = Answers(sim(), B);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags.bits(), kRst);
  EXPECT_EQ(out[0].seq, SeqNum(12345));
}

TEST_F(Conversation, ClosedAnswersASynWithRstAckPastIt) {
  TcpRepr syn = FromA(kSyn, 77, 0);
  syn.payload = absl::MakeConstSpan(reinterpret_cast<const uint8_t*>("abc"), 3);
  Inject(sim(), B, syn);
  std::vector<TcpRepr> out = Answers(sim(), B);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags.bits(), kRst | kAck);
  EXPECT_EQ(out[0].seq, SeqNum(0));
  EXPECT_EQ(out[0].ack, SeqNum(77 + 1 + 3));
}

TEST_F(Conversation, ListenAnswersAnAckWithARstAndKeepsListening) {
  ASSERT_TRUE(b().Listen(now()).ok());
  Inject(sim(), B, FromA(kAck, 77, 4242));
  std::vector<TcpRepr> out = Answers(sim(), B);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags.bits(), kRst);
  EXPECT_EQ(out[0].seq, SeqNum(4242));
  EXPECT_EQ(b().state(), TcpState::kListen);
  // A RST, and a segment with neither SYN nor ACK, get no answer.
  Inject(sim(), B, FromA(kRst, 77, 0));
  Inject(sim(), B, FromA(0, 77, 0));
  EXPECT_TRUE(Answers(sim(), B).empty());
  EXPECT_EQ(b().state(), TcpState::kListen);
}

TEST_F(Conversation, ListenTakesTheSynsSequenceAndWindow) {
  ASSERT_TRUE(b().Listen(now()).ok());
  Inject(sim(), B, FromA(kSyn, 77, 0));
  std::vector<TcpRepr> out = Answers(sim(), B);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].flags.bits(), kSyn | kAck);
  EXPECT_EQ(out[0].seq, SeqNum(kIsnB));
  EXPECT_EQ(out[0].ack, SeqNum(78));
  EXPECT_EQ(b().state(), TcpState::kSynReceived);
  EXPECT_EQ(b().tcb().irs, SeqNum(77));
  EXPECT_EQ(b().tcb().snd_wnd, 1000u);  // never scaled on a SYN
}

TEST_F(Conversation, SynSentAnswersAnAckOfItsIssWithARst) {
  ASSERT_TRUE(a().Connect(now()).ok());
  sim().Flush();
  for (uint32_t ack : {kIsnA, kIsnA + 2}) {  // SEG.ACK =< ISS, SEG.ACK > SND.NXT
    TcpRepr synack;
    synack.src_port = kPortB;
    synack.dst_port = kPortA;
    synack.flags = TcpFlags(kSyn | kAck);
    synack.seq = SeqNum(kIsnB);
    synack.ack = SeqNum(ack);
    Inject(sim(), A, synack);
    std::vector<TcpRepr> out = Answers(sim(), A);
    ASSERT_EQ(out.size(), 1u) << ack;
    EXPECT_EQ(out[0].flags.bits(), kRst) << ack;
    EXPECT_EQ(out[0].seq, SeqNum(ack));
    EXPECT_EQ(a().state(), TcpState::kSynSent);
  }
}

TEST_F(Conversation, SynReceivedAnswersAWrongAckWithARstAndTakesTheRightOnesWindow) {
  DropNth(B, kSyn | kAck, 1);
  ASSERT_TRUE(b().Listen(now()).ok());
  ASSERT_TRUE(a().Connect(now()).ok());
  ASSERT_TRUE(
      sim().RunUntil([&] { return b().state() == TcpState::kSynReceived; }, absl::Seconds(1)));
  for (uint32_t ack : {kIsnB, kIsnB + 2}) {  // acceptable is SND.UNA < SEG.ACK =< SND.NXT
    Inject(sim(), B, FromA(kAck, kIsnA + 1, ack));
    std::vector<TcpRepr> out = Answers(sim(), B);
    ASSERT_EQ(out.size(), 1u) << ack;
    EXPECT_EQ(out[0].flags.bits(), kRst);
    EXPECT_EQ(out[0].seq, SeqNum(ack));
    EXPECT_EQ(b().state(), TcpState::kSynReceived);
  }
  TcpRepr ok = FromA(kAck, kIsnA + 1, kIsnB + 1);
  ok.window = 300;
  Inject(sim(), B, ok);
  EXPECT_EQ(b().state(), TcpState::kEstablished);
  EXPECT_EQ(b().tcb().snd_wnd, uint32_t{300} << b().tcb().snd_wscale);
  EXPECT_EQ(b().tcb().snd_una, SeqNum(kIsnB + 1));
}

TEST_F(Conversation, TimeWaitLastsTwoMslWithNoOtherTimer) {
  Open();
  ASSERT_TRUE(a().Close(now()).ok());
  ASSERT_TRUE(
      sim().RunUntil([&] { return b().state() == TcpState::kCloseWait; }, absl::Seconds(1)));
  ASSERT_TRUE(b().Close(now()).ok());
  ASSERT_TRUE(sim().RunUntil([&] { return a().state() == TcpState::kTimeWait; }, absl::Seconds(1)));
  Instant entered = now();
  EXPECT_EQ(a().NextDeadline(), entered + absl::Seconds(60));  // 2 MSL of 30 s
  size_t segments = sim().trace().size();
  ASSERT_TRUE(sim().RunUntil(entered + absl::Seconds(60) - absl::Milliseconds(1)));
  EXPECT_EQ(a().state(), TcpState::kTimeWait);
  ASSERT_TRUE(sim().RunUntil(entered + absl::Seconds(60)));
  EXPECT_EQ(a().state(), TcpState::kClosed);
  EXPECT_EQ(sim().trace().size(), segments);  // and nothing was sent meanwhile
}

TEST(TcpConfig, DefaultsAreTheDocumentedOnes) {
  TcpConfig c;
  EXPECT_EQ(c.mss, 1460);
  EXPECT_EQ(c.send_buffer, 256u * 1024);
  EXPECT_EQ(c.recv_buffer, 256u * 1024);
  EXPECT_TRUE(c.window_scaling);
  EXPECT_TRUE(c.sack);
  EXPECT_TRUE(c.timestamps);
  EXPECT_EQ(c.msl, absl::Seconds(30));
  EXPECT_EQ(c.initial_rto, absl::Seconds(1));
  // The linux profile's floor is the default (tcp_profile.h); the rfc profile's is 1 s.
  EXPECT_EQ(c.min_rto, absl::Milliseconds(200));
}

}  // namespace
}  // namespace wrench::stack
