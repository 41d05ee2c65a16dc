// Loss recovery of the TCP endpoint against a peer the test plays by hand: every
// segment the peer sends is written out (ACK, window, SACK blocks) at an explicit
// virtual time, and every segment the endpoint answers with is checked, so the
// conversations read like packetdrill scripts. Sequence numbers are relative to
// the endpoint's ISN (1000); the peer's ISN is 5000. MSS 1000, no timestamps
// unless a test asks for them, so that segment boundaries are round numbers.
#include <iostream>
#include <memory>
#include <optional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "stack/simulator.h"
#include "stack/tcp_endpoint.h"
#include "stack/tcp_profile.h"

namespace wrench::stack {
namespace {

constexpr uint32_t kIss = 1000;
constexpr uint32_t kPeerIss = 5000;
constexpr uint16_t kPort = 40000;
constexpr uint16_t kPeerPort = 80;

TcpConfig EndpointConfig(TcpProfile profile = TcpProfile::kLinux) {
  TcpConfig c;
  ApplyProfile(profile, c);
  c.mss = 1000;
  c.tuple.local_addr = IpAddress::V4(0x0a000001);
  c.tuple.remote_addr = IpAddress::V4(0x0a000002);
  c.tuple.local_port = kPort;
  c.tuple.remote_port = kPeerPort;
  c.isn = [](const FourTuple&, Instant) { return kIss; };
  return c;
}

// What the endpoint sent: relative seq, length, flags as tcpdump writes them.
struct Out {
  Duration at;  // since the test's start
  uint32_t seq, len;
  std::string flags;
  bool operator==(const Out& o) const {
    return at == o.at && seq == o.seq && len == o.len && flags == o.flags;
  }
  friend std::ostream& operator<<(std::ostream& os, const Out& o) {
    return os << absl::FormatDuration(o.at) << " " << o.flags << " " << o.seq << ":"
              << o.seq + o.len << "(" << o.len << ")";
  }
};

Out O(Duration at, uint32_t seq, uint32_t len, std::string flags = ".") {
  return Out{at, seq, len, std::move(flags)};
}

absl::Duration Ms(double ms) { return absl::Microseconds(static_cast<int64_t>(ms * 1000)); }

class ScriptedPeer : public ::testing::Test {
 protected:
  struct PeerOptions {
    bool sack = true;
    bool timestamps = false;
    uint16_t window = 65535;
  };

  // The handshake, driven for real: SYN at 0, SYN-ACK at 10 ms (so SRTT = 10 ms),
  // the endpoint's ACK at once.
  void Open(TcpConfig cfg, PeerOptions peer) {
    peer_ = peer;
    ep_ = std::make_unique<TcpEndpoint>(std::move(cfg));
    ASSERT_TRUE(ep_->Connect(now_).ok());
    Pump();
    RunTo(Ms(10));
    TcpRepr synack = Header(1, peer.window);
    synack.flags = TcpFlags(kSyn | kAck);
    synack.seq = SeqNum(kPeerIss);
    synack.options.mss = 1000;
    synack.options.sack_permitted = peer.sack;
    if (peer.timestamps) synack.options.timestamps = Timestamps{1, ts_echo_};
    ep_->OnSegment(now_, synack);
    Pump();
    ASSERT_EQ(ep_->state(), TcpState::kEstablished);
    out_.clear();
  }

  TcpRepr Header(uint32_t rel_ack, uint16_t window) {
    TcpRepr r;
    r.src_port = kPeerPort;
    r.dst_port = kPort;
    r.seq = SeqNum(kPeerIss + 1);
    r.ack = SeqNum(kIss + rel_ack);
    r.flags = TcpFlags(kAck);
    r.window = window;
    return r;
  }

  // The peer's ACK of `rel_ack` with `window` and SACK blocks (relative [left, right)).
  void Ack(uint32_t rel_ack, std::vector<std::pair<uint32_t, uint32_t>> sacks = {},
           int window = -1) {
    TcpRepr r = Header(rel_ack, window < 0 ? peer_.window : static_cast<uint16_t>(window));
    for (size_t i = 0; i < sacks.size() && i < TcpOptions::kMaxSackBlocks; ++i) {
      r.options.sack[i] = {SeqNum(kIss + sacks[i].first), SeqNum(kIss + sacks[i].second)};
    }
    r.options.sack_count =
        static_cast<uint8_t>(std::min<size_t>(sacks.size(), TcpOptions::kMaxSackBlocks));
    ep_->OnSegment(now_, r);
    Pump();
  }

  void Send(size_t bytes) {
    std::vector<uint8_t> data(bytes, 'x');
    auto n = ep_->Send(data);
    ASSERT_TRUE(n.ok());
    ASSERT_EQ(*n, bytes);
    Pump();
  }

  // Advances the clock to `t` (since the start), firing every timer due on the way.
  void RunTo(Duration t) {
    Instant end = absl::UnixEpoch() + t;
    for (int guard = 0; guard < 10000 && ep_->NextDeadline() <= end; ++guard) {
      now_ = std::max(now_, ep_->NextDeadline());
      ep_->OnTick(now_);
      Pump();
    }
    now_ = std::max(now_, end);
  }

  // Polls, and checks HasPendingOutput() against it: true exactly when Poll emits.
  void Pump() {
    const bool pending = ep_->HasPendingOutput();
    const size_t before = out_.size();
    PollOnce();
    EXPECT_EQ(pending, out_.size() > before)
        << "HasPendingOutput() at " << absl::FormatDuration(Now());
  }

  void PollOnce() {
    ep_->Poll(now_, [&](const TcpRepr& r) {
      EXPECT_EQ(r.src_port, kPort);
      EXPECT_EQ(r.dst_port, kPeerPort);
      std::string f;
      if (r.flags.has(kSyn)) f += 'S';
      if (r.flags.has(kFin)) f += 'F';
      if (r.flags.has(kRst)) f += 'R';
      if (r.flags.has(kAck)) f += '.';
      if (!r.payload.empty()) {
        data_out_.push_back(Out{now_ - absl::UnixEpoch(), r.seq.raw() - kIss,
                                static_cast<uint32_t>(r.payload.size()), f});
      }
      out_.push_back(Out{now_ - absl::UnixEpoch(), r.seq.raw() - kIss,
                         static_cast<uint32_t>(r.payload.size()), f});
      tsecr_out_.push_back(r.options.timestamps
                               ? std::optional<uint32_t>(r.options.timestamps->echo)
                               : std::nullopt);
      tsval_out_.push_back(r.options.timestamps
                               ? std::optional<uint32_t>(r.options.timestamps->value)
                               : std::nullopt);
      sacks_out_.emplace_back();
      for (size_t i = 0; i < r.options.sack_count; ++i) {
        sacks_out_.back().emplace_back(r.options.sack[i].left.raw() - kPeerIss,
                                       r.options.sack[i].right.raw() - kPeerIss);
      }
    });
  }

  // The peer's data segment [rel_seq, rel_seq + len), relative to its ISS.
  void PeerData(uint32_t rel_seq, uint32_t len) {
    static const std::vector<uint8_t> kBytes(65536, 'y');
    TcpRepr r = Header(1, peer_.window);
    r.seq = SeqNum(kPeerIss + rel_seq);
    r.payload = absl::MakeConstSpan(kBytes.data(), len);
    ep_->OnSegment(now_, r);
    Pump();
  }

  // The peer's segment [rel_seq, rel_seq + len) with these flags and, if given, a TSval.
  void PeerSegment(uint32_t rel_seq, uint32_t len, uint8_t flags,
                   std::optional<uint32_t> tsval = std::nullopt) {
    static const std::vector<uint8_t> kBytes(65536, 'y');
    TcpRepr r = Header(1, peer_.window);
    r.seq = SeqNum(kPeerIss + rel_seq);
    r.flags = TcpFlags(flags);
    r.payload = absl::MakeConstSpan(kBytes.data(), len);
    if (tsval) r.options.timestamps = Timestamps{*tsval, 0};
    ep_->OnSegment(now_, r);
    Pump();
  }

  // The data segments sent since the last call.
  std::vector<Out> TakeData() {
    std::vector<Out> d;
    d.swap(data_out_);
    return d;
  }

  TcpEndpoint& ep() { return *ep_; }
  Duration Now() const { return now_ - absl::UnixEpoch(); }

  std::unique_ptr<TcpEndpoint> ep_;
  Instant now_ = absl::UnixEpoch();
  PeerOptions peer_;
  uint32_t ts_echo_ = 0;
  std::vector<Out> out_, data_out_;
  std::vector<std::vector<std::pair<uint32_t, uint32_t>>> sacks_out_;  // each segment's blocks
  std::vector<std::optional<uint32_t>> tsecr_out_;                       // each segment's TSecr
  std::vector<std::optional<uint32_t>> tsval_out_;                       // each segment's TSval
};

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// --- the receiver's SACK blocks --------------------------------------------------

// RFC 2018 §4: the first block holds the segment that triggered the ACK, the others
// repeat the latest blocks reported. With four holes and room for three blocks
// beside the timestamps, the newest arrivals must still be reported (a sender that
// learned only of the lowest ranges would not see the rest delivered).
TEST_F(ScriptedPeer, SackBlocksListTheMostRecentSegmentFirst) {
  Open(EndpointConfig(), {.sack = true, .timestamps = true});
  ASSERT_TRUE(ep().tcb().ts_ok);
  // The peer's segments of 100 bytes at 1, 101, ...: 101, 301, 501 and 701 arrive,
  // with holes before each.
  PeerData(101, 100);
  PeerData(301, 100);
  PeerData(501, 100);
  ASSERT_FALSE(sacks_out_.empty());
  EXPECT_THAT(sacks_out_.back(),
              ElementsAre(std::pair{501u, 601u}, std::pair{301u, 401u}, std::pair{101u, 201u}));
  PeerData(701, 100);
  EXPECT_THAT(sacks_out_.back(),
              ElementsAre(std::pair{701u, 801u}, std::pair{501u, 601u}, std::pair{301u, 401u}));
  // A segment that extends an older range moves that range to the front.
  PeerData(201, 50);
  EXPECT_THAT(sacks_out_.back(),
              ElementsAre(std::pair{101u, 251u}, std::pair{701u, 801u}, std::pair{501u, 601u}));
  // The first hole filled: RCV.NXT moves past 101..251, and the remaining ranges follow.
  PeerData(1, 100);
  EXPECT_EQ(ep().tcb().rcv_nxt, SeqNum(kPeerIss + 251));
  EXPECT_THAT(sacks_out_.back(),
              ElementsAre(std::pair{701u, 801u}, std::pair{501u, 601u}, std::pair{301u, 401u}));
}

TEST_F(ScriptedPeer, NoSackBlocksWithoutSackPermitted) {
  Open(EndpointConfig(), {.sack = false});
  PeerData(101, 100);  // a hole at 1..101
  ASSERT_FALSE(sacks_out_.empty());
  EXPECT_EQ(ep().tcb().rcv_nxt, SeqNum(kPeerIss + 1));
  EXPECT_THAT(sacks_out_.back(), IsEmpty());
}

// RFC 2018 §3 with a FIN: the block of data ending at an out-of-order FIN covers
// the FIN too, once, and a FIN alone past a hole gets a block of its own.
TEST_F(ScriptedPeer, AnOutOfOrderFinIsSackedWithItsData) {
  Open(EndpointConfig(), {.sack = true});
  PeerSegment(101, 100, kAck | kFin);
  ASSERT_FALSE(sacks_out_.empty());
  EXPECT_THAT(sacks_out_.back(), ElementsAre(std::pair{101u, 202u}));
}

TEST_F(ScriptedPeer, AnOutOfOrderFinAloneGetsABlockOfItsOwn) {
  Open(EndpointConfig(), {.sack = true});
  PeerSegment(101, 100, kAck);
  PeerSegment(301, 0, kAck | kFin);
  ASSERT_FALSE(sacks_out_.empty());
  EXPECT_THAT(sacks_out_.back(), ElementsAre(std::pair{101u, 201u}, std::pair{301u, 302u}));
}

// RFC 5681 §4.2: each out-of-order segment is owed a duplicate ACK, even when several
// arrive before the next Poll; at most eight are owed at once.
TEST_F(ScriptedPeer, OutOfOrderSegmentsBetweenPollsAreOwedAtMostEightDuplicateAcks) {
  Open(EndpointConfig(), {.sack = true});
  static const std::vector<uint8_t> kBytes(100, 'y');
  for (uint32_t k = 0; k < 10; ++k) {
    TcpRepr r = Header(1, peer_.window);
    r.seq = SeqNum(kPeerIss + 101 + 200 * k);
    r.payload = absl::MakeConstSpan(kBytes);
    ep_->OnSegment(now_, r);
  }
  PollOnce();
  EXPECT_EQ(out_.size(), 8u);
  for (const Out& o : out_) EXPECT_EQ(o.len, 0u);
  ASSERT_GE(sacks_out_.size(), 8u);
  for (size_t i = sacks_out_.size() - 8; i < sacks_out_.size(); ++i) {
    EXPECT_FALSE(sacks_out_[i].empty()) << "duplicate ACK " << i;  // each names the held data
  }
}

// RFC 7323 §4.3: TS.Recent takes the TSval of a segment that reaches the left edge
// of the window (SEG.SEQ <= Last.ACK.sent), never one from beyond a hole.
TEST_F(ScriptedPeer, TsRecentFollowsOnlySegmentsAtTheLeftEdge) {
  Open(EndpointConfig(), {.sack = true, .timestamps = true});
  ASSERT_TRUE(ep().tcb().ts_ok);
  PeerSegment(1, 100, kAck, 10);
  ASSERT_FALSE(tsecr_out_.empty());
  EXPECT_EQ(tsecr_out_.back(), 10u);
  PeerSegment(201, 100, kAck, 20);  // beyond the hole at 101
  EXPECT_EQ(tsecr_out_.back(), 10u);
  PeerSegment(101, 100, kAck, 30);  // fills it
  EXPECT_EQ(tsecr_out_.back(), 30u);
  EXPECT_EQ(ep().tcb().rcv_nxt, SeqNum(kPeerIss + 301));
}

// RFC 7323 §5.4: each connection's timestamp clock starts at an offset of its own,
// so that TSvals do not tell the host's uptime or link two connections.
TEST_F(ScriptedPeer, EachConnectionsTimestampClockHasAnOffsetOfItsOwn) {
  std::vector<uint32_t> syn_tsvals;
  for (uint32_t iss : {1000u, 777777u}) {
    TcpConfig cfg = EndpointConfig();
    cfg.isn = [iss](const FourTuple&, Instant) { return iss; };
    TcpEndpoint ep(std::move(cfg));
    ASSERT_TRUE(ep.Connect(now_).ok());
    ep.Poll(now_, [&](const TcpRepr& r) {
      ASSERT_TRUE(r.options.timestamps.has_value());
      syn_tsvals.push_back(r.options.timestamps->value);
    });
  }
  ASSERT_EQ(syn_tsvals.size(), 2u);
  EXPECT_NE(syn_tsvals[0], syn_tsvals[1]);
  EXPECT_NE(syn_tsvals[0], 0u);
}

// An echo of a TSval sent in the same millisecond is an RTT sample of 0 ms
// (RFC 7323 §4.1), folded into SRTT like any other (RFC 6298 §2.3).
TEST_F(ScriptedPeer, AnEchoFromTheSameMillisecondIsAZeroRttSample) {
  Open(EndpointConfig(), {.sack = true, .timestamps = true});
  ASSERT_EQ(ep().tcb().srtt, Ms(10));
  Send(1000);
  ASSERT_FALSE(tsval_out_.empty());
  ASSERT_TRUE(tsval_out_.back().has_value());
  TcpRepr ack = Header(1001, peer_.window);
  ack.options.timestamps = Timestamps{2, *tsval_out_.back()};
  ep_->OnSegment(now_, ack);
  Pump();
  EXPECT_EQ(ep().tcb().srtt, Ms(8.75));  // 7/8 * 10 ms + 1/8 * 0
}

// RFC 9293 §3.7.1: a peer whose SYN carries no MSS option is sent at most 536 bytes
// a segment over IPv4.
TEST_F(ScriptedPeer, APeerWithoutAnMssOptionGets536BytesASegment) {
  peer_ = {};
  ep_ = std::make_unique<TcpEndpoint>(EndpointConfig());
  ASSERT_TRUE(ep_->Connect(now_).ok());
  Pump();
  RunTo(Ms(10));
  TcpRepr synack = Header(1, 65535);
  synack.flags = TcpFlags(kSyn | kAck);
  synack.seq = SeqNum(kPeerIss);
  ep_->OnSegment(now_, synack);
  Pump();
  ASSERT_EQ(ep_->state(), TcpState::kEstablished);
  EXPECT_EQ(ep().tcb().snd_mss, 536);
  Send(1500);
  std::vector<Out> data = TakeData();
  ASSERT_EQ(data.size(), 3u);
  EXPECT_EQ(data[0].len, 536u);
  EXPECT_EQ(data[1].len, 536u);
  EXPECT_EQ(data[2].len, 428u);
}

// RFC 6691: SACK blocks riding on a data segment take their room from the data.
// One block is 2 + 8 bytes, padded to 12: 988 bytes of data beside it.
TEST_F(ScriptedPeer, DataBesideASackBlockShrinksByTheBlocksRoom) {
  Open(EndpointConfig(), {.sack = true});
  PeerData(101, 100);  // held out of order: every segment now carries its block
  Send(3000);
  std::vector<Out> data = TakeData();
  ASSERT_EQ(data.size(), 4u);
  EXPECT_EQ(data[0], O(Ms(10), 1, 988));
  EXPECT_EQ(data[1], O(Ms(10), 989, 988));
  EXPECT_EQ(data[2], O(Ms(10), 1977, 988));
  EXPECT_EQ(data[3].len, 36u);
  EXPECT_THAT(sacks_out_.back(), ElementsAre(std::pair{101u, 201u}));
}

// RFC 5961 §5.2: an ACK of data never sent is answered with an ACK and otherwise
// ignored; its window is not taken either.
TEST_F(ScriptedPeer, AnAckOfUnsentDataChangesNothingButGetsAnAck) {
  Open(EndpointConfig(), {.sack = true});
  Send(1000);
  ASSERT_EQ(TakeData().size(), 1u);
  RunTo(Ms(20));
  out_.clear();
  Ack(5001, {}, 100);
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0], O(Ms(20), 1001, 0));
  EXPECT_EQ(ep().tcb().snd_una, SeqNum(kIss + 1));
  EXPECT_EQ(ep().tcb().snd_wnd, 65535u);
  Ack(1001);
  Send(3000);
  EXPECT_EQ(TakeData().size(), 3u);  // the window is the real ACK's
}

// RFC 5961 §5.2: a segment whose ACK lies below SND.UNA - MAX.SND.WND is discarded,
// text and window with it, and answered with a (challenge) ACK.
TEST_F(ScriptedPeer, ASegmentWithAnAckOlderThanAWindowIsDiscarded) {
  Open(EndpointConfig(), {.sack = true});
  static const std::vector<uint8_t> kBytes(100, 'y');
  TcpRepr r = Header(1, 100);
  r.ack = SeqNum(kIss + 1 - 100'000);  // 100 000 bytes before SND.UNA
  r.payload = absl::MakeConstSpan(kBytes);
  out_.clear();
  ep_->OnSegment(now_, r);
  Pump();
  EXPECT_EQ(ep().tcb().rcv_nxt, SeqNum(kPeerIss + 1));
  EXPECT_EQ(ep().tcb().snd_wnd, 65535u);
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].len, 0u);
}

// RFC 9293 §3.10.7.4: with our receive window at zero, a segment at RCV.NXT is still
// taken for its ACK (its text is dropped), as a peer's window probe is.
TEST_F(ScriptedPeer, AZeroWindowProbeAtRcvNxtIsTakenForItsAck) {
  TcpConfig cfg = EndpointConfig();
  cfg.recv_buffer = 1000;
  Open(std::move(cfg), {.sack = true});
  PeerData(1, 1000);  // fills the receive buffer: the window is 0
  ASSERT_EQ(ep().tcb().rcv_nxt, SeqNum(kPeerIss + 1001));
  Send(500);
  ASSERT_EQ(TakeData().size(), 1u);
  RunTo(Ms(20));
  TcpRepr probe = Header(501, peer_.window);  // acknowledges our 500 bytes
  static const uint8_t kByte = 'z';
  probe.seq = SeqNum(kPeerIss + 1001);
  probe.payload = absl::MakeConstSpan(&kByte, 1);
  ep_->OnSegment(now_, probe);
  Pump();
  EXPECT_EQ(ep().tcb().snd_una, SeqNum(kIss + 501));
  EXPECT_EQ(ep().tcb().rcv_nxt, SeqNum(kPeerIss + 1001));  // the byte is not taken
}

// RFC 9293 §3.8.6.1: the probe of a zero window is one segment, not followed by an ACK.
TEST_F(ScriptedPeer, AZeroWindowIsProbedWithOneSegmentAtATime) {
  Open(EndpointConfig(), {.sack = true, .window = 0});
  Send(1000);
  EXPECT_THAT(TakeData(), IsEmpty());
  for (int ms = 11; ms < 5000 && out_.empty(); ++ms) RunTo(Ms(ms));
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].seq, 0u);  // SND.UNA - 1: the peer must answer with its window
  EXPECT_EQ(out_[0].len, 0u);
}

// --- duplicate ACKs ----------------------------------------------------------

TEST_F(ScriptedPeer, ThirdDuplicateAckRetransmitsEvenWhenEveryWindowDiffers) {
  // A peer without SACK whose window changes while it reports the hole: each
  // duplicate ACK carries a smaller window. They still count, as on Linux; an ACK
  // that opens the window is a window update and does not (the differential script
  // data_dupacks_growing_window compares that with the kernel).
  Open(EndpointConfig(), {.sack = false});
  Send(10'000);
  EXPECT_EQ(TakeData().size(), 10u);  // RFC 6928 initial window: 10 segments
  RunTo(Ms(20));
  Ack(1001, {}, 63000);  // segment 1 arrived, segment 2 (1001:2001) did not
  Ack(1001, {}, 62000);
  Ack(1001, {}, 61000);
  EXPECT_THAT(TakeData(), IsEmpty());
  Ack(1001, {}, 60000);
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(20), 1001, 1000)));
  EXPECT_EQ(ep().recovery(), TcpEndpoint::Recovery::kRecovery);
  EXPECT_EQ(ep().loss_stats().fast_recoveries, 1);
  RunTo(Ms(30));
  Ack(10001, {}, 63000);
  EXPECT_EQ(ep().recovery(), TcpEndpoint::Recovery::kOpen);
  EXPECT_EQ(ep().loss_stats().timeouts, 0);
}

TEST_F(ScriptedPeer, WindowUpdatesWithNothingOutstandingAreNotDuplicateAcks) {
  Open(EndpointConfig(), {.sack = false});
  Send(1000);
  RunTo(Ms(20));
  Ack(1001);
  for (int w = 1; w <= 5; ++w) Ack(1001, {}, 60000 + w);
  EXPECT_EQ(ep().recovery(), TcpEndpoint::Recovery::kOpen);
  EXPECT_EQ(ep().retransmissions(), 0);
}

// --- SACK (RFC 6675) ---------------------------------------------------------

TEST_F(ScriptedPeer, SackRetransmitsThreeHolesWithinOneRoundTrip) {
  Open(EndpointConfig(), {.sack = true});
  Send(10'000);
  ASSERT_EQ(TakeData().size(), 10u);
  // Segments 1, 3 and 5 (0:1000 is 1:1001, then 2001:3001, 4001:5001) are lost;
  // the peer's ACKs report the others as they arrive, all 10 ms later.
  RunTo(Ms(20));
  Ack(1, {{1001, 2001}});
  Ack(1, {{3001, 4001}, {1001, 2001}});
  EXPECT_THAT(TakeData(), IsEmpty());
  Ack(1, {{5001, 6001}, {3001, 4001}, {1001, 2001}});
  Ack(1, {{5001, 7001}, {3001, 4001}, {1001, 2001}});
  // Three SACKed segments above the holes: all three are lost (RFC 6675 IsLost and
  // RACK agree), and PRR's slow-start bound lets them out on these two ACKs.
  EXPECT_THAT(TakeData(),
              ElementsAre(O(Ms(20), 1, 1000), O(Ms(20), 2001, 1000), O(Ms(20), 4001, 1000)));
  Ack(1, {{5001, 8001}, {3001, 4001}, {1001, 2001}});
  Ack(1, {{5001, 9001}, {3001, 4001}, {1001, 2001}});
  Ack(1, {{5001, 10001}, {3001, 4001}, {1001, 2001}});
  TakeData();
  RunTo(Ms(30));
  Ack(2001, {{3001, 4001}, {5001, 10001}});
  Ack(4001, {{5001, 10001}});
  Ack(10001);
  EXPECT_EQ(ep().recovery(), TcpEndpoint::Recovery::kOpen);
  EXPECT_EQ(ep().retransmissions(), 3);
  EXPECT_EQ(ep().loss_stats().fast_recoveries, 1);
  EXPECT_EQ(ep().loss_stats().timeouts, 0);
  // Recovery ended with cwnd = ssthresh = 0.7 * 10 segments (CUBIC's beta).
  EXPECT_EQ(ep().tcb().ssthresh, 7000u);
  EXPECT_EQ(ep().tcb().cwnd, 7000u);
}

TEST_F(ScriptedPeer, SackBlocksOutsideTheWindowAreIgnored) {
  Open(EndpointConfig(), {.sack = true});
  Send(5000);
  TakeData();
  RunTo(Ms(20));
  // Beyond SND.NXT, reversed, and below SND.UNA without being a D-SACK's range:
  // none of them marks anything.
  Ack(1, {{6001, 7001}});
  Ack(1, {{3001, 2001}});
  Ack(1, {{2001, 9001}});
  EXPECT_THAT(TakeData(), IsEmpty());
  EXPECT_EQ(ep().recovery(), TcpEndpoint::Recovery::kOpen);
}

TEST_F(ScriptedPeer, DuplicateSackDoesNotCountAsNewlySacked) {
  Open(EndpointConfig(), {.sack = true});
  Send(5000);
  RunTo(Ms(20));
  Ack(2001);
  // A D-SACK (RFC 2883): the first block lies below the cumulative ACK.
  for (int i = 0; i < 4; ++i) Ack(2001, {{1, 1001}});
  EXPECT_EQ(ep().loss_stats().dsacks, 4);
  EXPECT_EQ(ep().recovery(), TcpEndpoint::Recovery::kOpen);
  EXPECT_EQ(ep().retransmissions(), 0);
}

// --- RACK-TLP (RFC 8985) -----------------------------------------------------

TEST_F(ScriptedPeer, TailLossIsProbedAfterTwoSrttNotAtTheRto) {
  Open(EndpointConfig(), {.sack = true});
  Send(10'000);
  ASSERT_EQ(TakeData().size(), 10u);
  // The last two segments (8001:10001) are lost: no duplicate ACK ever comes.
  RunTo(Ms(20));
  Ack(8001);
  EXPECT_EQ(ep().tcb().srtt, Ms(10));
  // PTO = 2 * SRTT = 20 ms after the ACK: the last segment goes again as the probe.
  RunTo(Ms(39));
  EXPECT_THAT(TakeData(), IsEmpty());
  RunTo(Ms(40));
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(40), 9001, 1000)));
  EXPECT_EQ(ep().loss_stats().tlp_probes, 1);
  // The probe's SACK shows 8001:9001 missing: RACK marks it lost at once.
  RunTo(Ms(50));
  Ack(8001, {{9001, 10001}});
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(50), 8001, 1000)));
  RunTo(Ms(60));
  Ack(10001);
  EXPECT_EQ(ep().loss_stats().timeouts, 0);
  EXPECT_EQ(ep().recovery(), TcpEndpoint::Recovery::kOpen);
}

// RFC 8985 §7.4: the ACK of a probe that retransmitted the tail, without a D-SACK,
// shows that the probe repaired a loss: the window is reduced once.
TEST_F(ScriptedPeer, AProbeThatRepairedATailLossReducesTheWindowOnce) {
  Open(EndpointConfig(), {.sack = true});
  Send(10'000);
  ASSERT_EQ(TakeData().size(), 10u);
  RunTo(Ms(20));
  Ack(8001);  // the last two segments are late
  ASSERT_EQ(ep().tcb().ssthresh, 0x7fffffffu);
  RunTo(Ms(40));
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(40), 9001, 1000)));  // the probe: the last segment
  RunTo(Ms(50));
  Ack(10001);  // everything, no D-SACK: the probe's copy was needed
  EXPECT_EQ(ep().loss_stats().tlp_probes, 1);
  EXPECT_LT(ep().tcb().ssthresh, 0x7fffffffu);
  EXPECT_EQ(ep().tcb().cwnd, ep().tcb().ssthresh);
  EXPECT_EQ(ep().recovery(), TcpEndpoint::Recovery::kOpen);
}

// RFC 8985 §7.4 with a D-SACK: the peer had the tail after all (it was late, not
// lost) and reports the probe's copy as a duplicate, so nothing was repaired and
// the window stays.
TEST_F(ScriptedPeer, AProbeAnsweredWithADsackReducesNothing) {
  Open(EndpointConfig(), {.sack = true});
  Send(10'000);
  ASSERT_EQ(TakeData().size(), 10u);
  RunTo(Ms(20));
  Ack(8001);
  RunTo(Ms(40));
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(40), 9001, 1000)));
  RunTo(Ms(50));
  Ack(10001, {{9001, 10001}});  // a D-SACK: below the cumulative ACK
  EXPECT_EQ(ep().loss_stats().dsacks, 1);
  EXPECT_EQ(ep().tcb().ssthresh, 0x7fffffffu);
  EXPECT_EQ(ep().recovery(), TcpEndpoint::Recovery::kOpen);
}

// RFC 8985 §7.3: with new data waiting (here held back by cwnd), the probe is one
// segment of it; its ACK repairs nothing, so the window is not reduced.
TEST_F(ScriptedPeer, AProbeOfNewDataIsOneSegmentAndNoReduction) {
  Open(EndpointConfig(), {.sack = true});
  Send(11'000);
  ASSERT_EQ(TakeData().size(), 10u);  // the initial window; 1000 bytes wait
  RunTo(Ms(29));
  EXPECT_THAT(TakeData(), IsEmpty());
  RunTo(Ms(30));  // PTO = 2 * SRTT after the last send
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(30), 10001, 1000)));
  EXPECT_EQ(ep().loss_stats().tlp_probes, 1);
  RunTo(Ms(40));
  Ack(10001);  // the initial window: the probe's segment is in flight, not sent again
  EXPECT_THAT(TakeData(), IsEmpty());
  Ack(11001);
  EXPECT_EQ(ep().tcb().ssthresh, 0x7fffffffu);
  EXPECT_EQ(ep().retransmissions(), 0);
}

// RFC 8985 §6.2 step 4: before any reordering, with fewer than DupThresh segments
// SACKed and no recovery under way, the reordering window is min_RTT / 4. A hole
// sent with the SACKed segment (the same send time, a lower sequence: the tie
// break of step 2) is lost RACK.rtt + reo_wnd after it was sent: 2.5 ms after the
// SACK here, when the reordering timer fires (§6.3).
TEST_F(ScriptedPeer, RackDeemsAHoleLostAQuarterMinRttAfterTheSack) {
  Open(EndpointConfig(), {.sack = true});
  Send(10'000);
  ASSERT_EQ(TakeData().size(), 10u);
  RunTo(Ms(20));
  Ack(1001);  // RACK.rtt = min_RTT = 10 ms
  Ack(1001, {{2001, 3001}});
  EXPECT_EQ(ep().recovery(), TcpEndpoint::Recovery::kOpen);
  EXPECT_EQ(ep().NextDeadline(), absl::UnixEpoch() + Ms(22.5));
  RunTo(Ms(22.4));
  EXPECT_THAT(TakeData(), IsEmpty());
  RunTo(Ms(22.5));
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(22.5), 1001, 1000)));
  EXPECT_EQ(ep().loss_stats().rack_marked, 1);
  EXPECT_EQ(ep().recovery(), TcpEndpoint::Recovery::kRecovery);
  // Recovery, entered from the timer, disarmed the loss probe the last ACK armed
  // (RFC 8985 §7.2: no probe during recovery): the RTO is the next timer.
  EXPECT_EQ(ep().NextDeadline(), absl::UnixEpoch() + Ms(20) + ep().tcb().rto);
}

// The SACK of a lower segment sent at the same time does not move RACK's most
// recently delivered segment back: the hole between them stays "before" it.
TEST_F(ScriptedPeer, RackKeepsTheHighestSegmentOfOneSendTime) {
  Open(EndpointConfig(), {.sack = true});
  Send(10'000);
  ASSERT_EQ(TakeData().size(), 10u);
  RunTo(Ms(20));
  Ack(1001);
  Ack(1001, {{4001, 5001}});
  Ack(1001, {{2001, 3001}, {4001, 5001}});
  // 2001:3001 arrived below 4001:5001 without a retransmission: reordering (step 3),
  // so the window stays min_RTT / 4 though the ACKs were not in order.
  RunTo(Ms(22.4));
  EXPECT_THAT(TakeData(), IsEmpty());
  RunTo(Ms(22.5));
  // Both holes are lost; PRR's slow-start bound lets one segment out at once.
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(22.5), 1001, 1000)));
  EXPECT_EQ(ep().loss_stats().rack_marked, 2);
}

// §6.2 step 4: the window is also at most SRTT. A first data round trip of 100 ms
// gives min_RTT = 100 ms but SRTT = 7/8 * 10 + 1/8 * 100 = 21.25 ms, below
// min_RTT / 4 = 25 ms: the hole is lost 21.25 ms after the SACK.
TEST_F(ScriptedPeer, RackReorderWindowIsAtMostSrtt) {
  TcpConfig c = EndpointConfig();
  c.tlp = false;
  Open(c, {.sack = true});
  Send(10'000);
  ASSERT_EQ(TakeData().size(), 10u);
  RunTo(Ms(110));
  Ack(1001);
  ASSERT_EQ(ep().tcb().srtt, Ms(21.25));
  Ack(1001, {{2001, 3001}});
  RunTo(Ms(131.249));
  EXPECT_THAT(TakeData(), IsEmpty());
  RunTo(Ms(131.25));
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(131.25), 1001, 1000)));
}

// §6.2 step 4: in recovery, or with DupThresh segments SACKed, the window is 0 —
// unless reordering was seen (a segment SACKed below the highest one SACKed, never
// retransmitted): then it stays min_RTT / 4 in recovery too.
TEST_F(ScriptedPeer, RackWindowInRecoveryIsZeroWithoutReordering) {
  Open(EndpointConfig(), {.sack = true});
  Send(10'000);
  ASSERT_EQ(TakeData().size(), 10u);
  RunTo(Ms(20));
  Ack(1001);
  // 1001:2001 and 6001:7001 are lost; the SACKs come in order.
  Ack(1001, {{2001, 6001}});  // four segments above the first hole: recovery
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(20), 1001, 1000)));
  Ack(1001, {{7001, 8001}, {2001, 6001}});
  // In recovery without reordering the window is 0: the second hole goes at once.
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(20), 6001, 1000)));
  EXPECT_EQ(ep().loss_stats().rack_marked, 1);  // the first hole was DupThresh's
  // Recovery disarmed the loss probe (RFC 8985 §7.2: no probe during recovery):
  // the next timer is the RTO, restarted by the last ACK that advanced SND.UNA.
  EXPECT_EQ(ep().NextDeadline(), absl::UnixEpoch() + Ms(20) + ep().tcb().rto);
}

TEST_F(ScriptedPeer, RackWindowInRecoveryStaysAfterReordering) {
  Open(EndpointConfig(), {.sack = true});
  Send(10'000);
  ASSERT_EQ(TakeData().size(), 10u);
  RunTo(Ms(20));
  Ack(1001);
  Ack(1001, {{3001, 4001}});
  Ack(1001, {{2001, 4001}});  // below the highest SACKed, never retransmitted: reordering
  Ack(1001, {{2001, 6001}});
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(20), 1001, 1000)));
  ASSERT_EQ(ep().recovery(), TcpEndpoint::Recovery::kRecovery);
  Ack(1001, {{7001, 8001}, {2001, 6001}});
  EXPECT_THAT(TakeData(), IsEmpty());
  RunTo(Ms(22.4));
  EXPECT_THAT(TakeData(), IsEmpty());
  RunTo(Ms(22.5));
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(22.5), 6001, 1000)));
}

// §6.2 step 4: a D-SACK shows a spurious retransmission, which is reordering too.
TEST_F(ScriptedPeer, RackWindowInRecoveryStaysAfterADsack) {
  Open(EndpointConfig(), {.sack = true});
  Send(10'000);
  ASSERT_EQ(TakeData().size(), 10u);
  RunTo(Ms(20));
  Ack(1001);
  Ack(1001, {{1, 1001}});  // a D-SACK of the first segment
  EXPECT_EQ(ep().loss_stats().dsacks, 1);
  Ack(1001, {{2001, 6001}});
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(20), 1001, 1000)));
  Ack(1001, {{7001, 8001}, {2001, 6001}});
  EXPECT_THAT(TakeData(), IsEmpty());
  RunTo(Ms(22.5));
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(22.5), 6001, 1000)));
}

// §7.4: once a probe's sequence is acknowledged, no probe is in flight: the next
// tail loss is probed again after 2 * SRTT.
TEST_F(ScriptedPeer, ATailLossAfterAnAcknowledgedProbeIsProbedAgain) {
  Open(EndpointConfig(), {.sack = true});
  Send(4000);
  ASSERT_EQ(TakeData().size(), 4u);
  RunTo(Ms(20));
  Ack(2001);  // two segments left in flight: PTO = 2 * SRTT
  RunTo(Ms(40));
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(40), 3001, 1000)));
  RunTo(Ms(50));
  Ack(4001);
  Send(4000);
  ASSERT_EQ(TakeData().size(), 4u);
  RunTo(Ms(60));
  Ack(6001);
  ASSERT_EQ(ep().tcb().srtt, Ms(10));
  RunTo(Ms(79.9));
  EXPECT_THAT(TakeData(), IsEmpty());
  RunTo(Ms(80));
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(80), 7001, 1000)));
  EXPECT_EQ(ep().loss_stats().tlp_probes, 2);
  EXPECT_EQ(ep().loss_stats().timeouts, 0);
}

// RFC 5681 §3.1 eq. (4) and RFC 9438 §4.8: ssthresh is taken from the flight on the
// first timeout only; a second timeout in a row leaves it where the first put it.
TEST_F(ScriptedPeer, ASecondTimeoutInARowKeepsTheFirstsSsthresh) {
  TcpConfig c = EndpointConfig(TcpProfile::kRfc);
  c.congestion = CongestionAlgorithm::kNewReno;
  Open(c, {.sack = false});
  Send(10'000);
  ASSERT_EQ(TakeData().size(), 10u);
  RunTo(Ms(1010));
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(1010), 1, 1000)));
  EXPECT_EQ(ep().tcb().ssthresh, 5000u);  // FlightSize / 2
  EXPECT_EQ(ep().tcb().cwnd, 1000u);
  RunTo(Ms(3010));
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(3010), 1, 1000)));
  EXPECT_EQ(ep().loss_stats().timeouts, 2);
  EXPECT_EQ(ep().tcb().ssthresh, 5000u);  // not FlightSize / 2 again, nor 2 * SMSS
  EXPECT_EQ(ep().tcb().cwnd, 1000u);
}

// RFC 9293 §3.8.6.1: once the peer opens its window, probing stops; the persist
// timer does not fire later with a probe below SND.UNA.
TEST_F(ScriptedPeer, AnOpenedWindowStopsTheZeroWindowProbes) {
  Open(EndpointConfig(), {.sack = true});
  Send(2000);
  ASSERT_EQ(TakeData().size(), 2u);
  RunTo(Ms(20));
  Ack(2001, {}, 0);
  Send(1000);
  EXPECT_THAT(TakeData(), IsEmpty());
  const Instant probe = ep().NextDeadline();
  ASSERT_LT(probe, absl::UnixEpoch() + absl::Seconds(1));
  RunTo(Ms(21));
  Ack(2001, {}, 65535);  // a window update, before the first probe
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(21), 2001, 1000)));
  RunTo(Ms(31));
  Ack(3001);
  out_.clear();
  RunTo(probe - absl::UnixEpoch() + Ms(1000));
  EXPECT_THAT(out_, IsEmpty());
}

// RFC 9293 §3.10.7.4 and §3.10.5: a reset, or a connection that times out, flushes
// what was queued to send; a normal close does not need to.
TEST_F(ScriptedPeer, AResetFlushesTheSendQueue) {
  Open(EndpointConfig(), {.sack = true});
  Send(5000);
  ASSERT_GT(ep().send_queue(), 0u);
  RunTo(Ms(20));
  TcpRepr rst = Header(1, 65535);
  rst.flags = TcpFlags(kRst);
  ep().OnSegment(now_, rst);
  EXPECT_EQ(ep().state(), TcpState::kClosed);
  EXPECT_EQ(ep().close_reason(), CloseReason::kReset);
  EXPECT_EQ(ep().send_queue(), 0u);
}

// RFC 9293 §3.10.5: ABORT in a synchronized state sends <SEQ=SND.NXT><CTL=RST>
// from the connection's own port to the peer's.
TEST_F(ScriptedPeer, AnAbortSendsARstAtSndNxtBetweenTheConnectionsPorts) {
  Open(EndpointConfig(), {.sack = true});
  Send(2000);
  ep().Abort(now_);
  std::vector<TcpRepr> sent;
  ep().Poll(now_, [&](const TcpRepr& r) { sent.push_back(r); });
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].flags.bits(), kRst);
  EXPECT_EQ(sent[0].seq, SeqNum(kIss + 2001));
  EXPECT_EQ(sent[0].src_port, kPort);
  EXPECT_EQ(sent[0].dst_port, kPeerPort);
  EXPECT_EQ(ep().state(), TcpState::kClosed);
}

TEST_F(ScriptedPeer, AnAbortFlushesTheSendQueue) {
  Open(EndpointConfig(), {.sack = true});
  Send(5000);
  ep().Abort(now_);
  EXPECT_EQ(ep().close_reason(), CloseReason::kAborted);
  EXPECT_EQ(ep().send_queue(), 0u);
}

TEST_F(ScriptedPeer, ATimeoutFlushesTheSendQueue) {
  TcpConfig c = EndpointConfig();
  c.max_retries = 1;
  Open(c, {.sack = true});
  Send(5000);
  RunTo(absl::Seconds(10));
  EXPECT_EQ(ep().state(), TcpState::kClosed);
  EXPECT_EQ(ep().close_reason(), CloseReason::kTimeout);
  EXPECT_EQ(ep().send_queue(), 0u);
}

// RFC 9293 §3.10.7.4: a RST in SYN-RECEIVED returns a passive open to LISTEN, and
// the next connection it takes gets its own SYN-ACK retransmissions: the retries
// of the one before do not count against it.
TEST_F(ScriptedPeer, AListenerReturnedByARstRetriesItsNextSynAckInFull) {
  TcpConfig c = EndpointConfig();
  c.syn_retries = 2;
  ep_ = std::make_unique<TcpEndpoint>(std::move(c));
  ASSERT_TRUE(ep().Listen(now_).ok());
  auto syn_from_peer = [&](uint32_t isn) {
    TcpRepr syn = Header(0, 65535);
    syn.flags = TcpFlags(kSyn);
    syn.seq = SeqNum(isn);
    syn.options.mss = 1000;
    ep().OnSegment(now_, syn);
    Pump();
  };
  auto synacks = [&] {
    int n = 0;
    for (const Out& o : out_) n += o.flags == "S.";
    out_.clear();
    return n;
  };
  syn_from_peer(kPeerIss);
  RunTo(absl::Seconds(4));  // the SYN-ACK and two retransmissions, none answered
  ASSERT_EQ(synacks(), 3);
  ASSERT_EQ(ep().state(), TcpState::kSynReceived);
  TcpRepr rst = Header(0, 0);
  rst.flags = TcpFlags(kRst);
  rst.seq = SeqNum(kPeerIss + 1);
  ep().OnSegment(now_, rst);
  ASSERT_EQ(ep().state(), TcpState::kListen);
  syn_from_peer(kPeerIss + 100000);
  ASSERT_EQ(ep().state(), TcpState::kSynReceived);
  RunTo(absl::Seconds(600));
  EXPECT_EQ(synacks(), 3);  // the SYN-ACK and syn_retries retransmissions
  EXPECT_EQ(ep().state(), TcpState::kClosed);
  EXPECT_EQ(ep().close_reason(), CloseReason::kTimeout);
}

// A listener and the peer the test plays, writing down every segment the listener
// sends (time since `origin`, relative seq and ack, flags, window, SYN options) so
// that two listeners' conversations can be compared whole.
class ListenerTranscript {
 public:
  ListenerTranscript(TcpConfig cfg, Instant now) : ep_(std::move(cfg)), now_(now), origin_(now) {
    EXPECT_TRUE(ep_.Listen(now_).ok());
  }
  // The peer's segment at `t` (since the start of the test), then a Poll.
  void Deliver(Duration t, TcpRepr seg) {
    Arrive(t, std::move(seg));
    Pump();
  }
  // The same without the Poll: the next segment arrives before it.
  void Arrive(Duration t, TcpRepr seg) {
    RunTo(t);
    seg.src_port = kPeerPort;
    seg.dst_port = kPort;
    ep_.OnSegment(now_, seg);
  }
  void RunTo(Duration t) {
    Instant end = absl::UnixEpoch() + t;
    for (int guard = 0; guard < 1000 && ep_.NextDeadline() <= end; ++guard) {
      now_ = std::max(now_, ep_.NextDeadline());
      ep_.OnTick(now_);
      Pump();
    }
    now_ = std::max(now_, end);
  }
  // Forgets what was sent so far; later times count from now.
  void Restart() {
    sent_.clear();
    syn_acks_.clear();
    origin_ = now_;
  }
  TcpEndpoint& ep() { return ep_; }
  const std::vector<std::string>& sent() const { return sent_; }
  std::vector<Duration> SynAckTimes() const { return syn_acks_; }

 private:
  void Pump() {
    const bool pending = ep_.HasPendingOutput();
    const size_t before = sent_.size();
    Poll();
    EXPECT_EQ(pending, sent_.size() > before)
        << "HasPendingOutput() at " << absl::FormatDuration(now_ - origin_);
  }
  void Poll() {
    ep_.Poll(now_, [&](const TcpRepr& r) {
      std::string f;
      if (r.flags.has(kSyn)) f += 'S';
      if (r.flags.has(kFin)) f += 'F';
      if (r.flags.has(kRst)) f += 'R';
      if (r.flags.has(kAck)) f += '.';
      const TcpOptions& o = r.options;
      sent_.push_back(
          absl::StrCat(absl::FormatDuration(now_ - origin_), " ", f, " ", r.seq.raw() - kIss, ":",
                       r.seq.raw() - kIss + r.payload.size(), " ack ", r.ack.raw() - kPeerIss,
                       " win ", r.window, " mss ", o.mss.value_or(0), " wscale ",
                       o.window_scale ? static_cast<int>(*o.window_scale) : -1, " sackok ",
                       o.sack_permitted, " ts ", o.timestamps ? o.timestamps->value : 0, "/",
                       o.timestamps ? o.timestamps->echo : 0));
      if (f == "S.") syn_acks_.push_back(now_ - origin_);
    });
  }
  TcpEndpoint ep_;
  Instant now_, origin_;
  std::vector<std::string> sent_;
  std::vector<Duration> syn_acks_;
};

TcpRepr PeerSyn(uint32_t isn, bool options) {
  TcpRepr syn;
  syn.flags = TcpFlags(kSyn);
  syn.seq = SeqNum(isn);
  syn.window = 65535;
  syn.options.mss = 1000;
  if (options) {
    syn.options.window_scale = 7;
    syn.options.sack_permitted = true;
    syn.options.timestamps = Timestamps{777, 0};
  }
  return syn;
}

TcpRepr PeerAck(uint32_t seq, uint32_t rel_ack) {
  TcpRepr r;
  r.flags = TcpFlags(kAck);
  r.seq = SeqNum(seq);
  r.ack = SeqNum(kIss + rel_ack);
  r.window = 1000;
  return r;
}

// RFC 9293 §3.10.7.4 returns a passive open to LISTEN after a RST in SYN-RECEIVED;
// the listener then takes its next connection as a new listener would. Its
// SYN-ACK is retransmitted after the initial RTO of 1 s, doubling from there, as
// Linux's request sockets do (TCP_TIMEOUT_INIT), not after the RTO the first
// connection's unanswered SYN-ACKs backed off to; and it offers the window scale
// its receive buffer needs although the first SYN offered none.
TEST(ListenerReturnedToListen, RetransmitsItsNextSynAckAsAFreshListenerDoes) {
  TcpConfig c = EndpointConfig();
  c.syn_retries = 3;
  ListenerTranscript used(c, absl::UnixEpoch());
  used.Deliver(absl::ZeroDuration(), PeerSyn(kPeerIss, false));
  used.RunTo(Ms(3500));  // the SYN-ACK at 0, 1 s and 3 s: the RTO is 4 s now
  ASSERT_THAT(used.SynAckTimes(),
              ElementsAre(absl::ZeroDuration(), absl::Seconds(1), absl::Seconds(3)));
  ASSERT_EQ(used.ep().tcb().rto, absl::Seconds(4));
  TcpRepr rst;
  rst.flags = TcpFlags(kRst);
  rst.seq = SeqNum(kPeerIss + 1);
  used.Deliver(Ms(3500), rst);
  ASSERT_EQ(used.ep().state(), TcpState::kListen);
  EXPECT_EQ(used.ep().tcb().rto, absl::Seconds(1));
  EXPECT_EQ(used.ep().retransmissions(), 0);
  EXPECT_EQ(used.ep().NextDeadline(), kNever);
  used.Restart();

  ListenerTranscript fresh(c, absl::UnixEpoch() + Ms(3500));
  for (ListenerTranscript* l : {&used, &fresh}) {
    l->Deliver(Ms(3500), PeerSyn(kPeerIss + 100000, true));
    l->RunTo(absl::Seconds(100));
    EXPECT_EQ(l->ep().state(), TcpState::kClosed);
    EXPECT_EQ(l->ep().close_reason(), CloseReason::kTimeout);
    EXPECT_EQ(l->ep().retransmissions(), 3);
  }
  EXPECT_THAT(fresh.SynAckTimes(), ElementsAre(absl::ZeroDuration(), absl::Seconds(1),
                                               absl::Seconds(3), absl::Seconds(7)));
  EXPECT_EQ(used.sent(), fresh.sent());
  EXPECT_EQ(used.SynAckTimes(), fresh.SynAckTimes());
}

// The RTT estimator starts over too: a SYN-ACK the first connection timed (no
// timestamps) is not the one the next connection's ACK ends, so the next
// connection's SRTT, RTTVAR, RTO, window and first retransmission are a fresh
// listener's. The next connection negotiates timestamps; its peer's ACK of the
// SYN-ACK carries none, so neither listener takes a sample from it.
TEST(ListenerReturnedToListen, MeasuresItsNextConnectionAsAFreshListenerDoes) {
  TcpConfig c = EndpointConfig();
  ListenerTranscript used(c, absl::UnixEpoch());
  used.Deliver(absl::ZeroDuration(), PeerSyn(kPeerIss, false));
  TcpRepr rst;
  rst.flags = TcpFlags(kRst);
  rst.seq = SeqNum(kPeerIss + 1);
  used.Deliver(Ms(500), rst);  // before the SYN-ACK's first retransmission
  ASSERT_EQ(used.ep().state(), TcpState::kListen);
  used.Restart();

  ListenerTranscript fresh(c, absl::UnixEpoch() + Ms(500));
  const uint32_t isn = kPeerIss + 100000;
  for (ListenerTranscript* l : {&used, &fresh}) {
    l->Deliver(Ms(500), PeerSyn(isn, true));
    l->Deliver(Ms(600), PeerAck(isn + 1, 1));
    ASSERT_EQ(l->ep().state(), TcpState::kEstablished);
    std::vector<uint8_t> data(3000, 'x');
    ASSERT_TRUE(l->ep().Send(data).ok());
    l->RunTo(Ms(600));
    l->RunTo(absl::Seconds(5));  // nothing acknowledged: the RTO resends the first segment
  }
  EXPECT_EQ(used.ep().tcb().srtt, fresh.ep().tcb().srtt);
  EXPECT_EQ(used.ep().tcb().rttvar, fresh.ep().tcb().rttvar);
  EXPECT_EQ(used.ep().tcb().rto, fresh.ep().tcb().rto);
  EXPECT_EQ(used.ep().tcb().cwnd, fresh.ep().tcb().cwnd);
  EXPECT_EQ(used.ep().tcb().ssthresh, fresh.ep().tcb().ssthresh);
  EXPECT_EQ(used.ep().loss_stats().timeouts, fresh.ep().loss_stats().timeouts);
  EXPECT_EQ(used.sent(), fresh.sent());
}

// The listener stays a passive open after its return: the next connection's RST in
// SYN-RECEIVED returns it to LISTEN again, and a listener answers an ACK with a RST.
TEST(ListenerReturnedToListen, StaysAPassiveOpen) {
  ListenerTranscript l(EndpointConfig(), absl::UnixEpoch());
  TcpRepr rst;
  rst.flags = TcpFlags(kRst);
  for (uint32_t isn : {kPeerIss, kPeerIss + 100000}) {
    l.Deliver(absl::ZeroDuration(), PeerSyn(isn, false));
    ASSERT_EQ(l.ep().state(), TcpState::kSynReceived);
    rst.seq = SeqNum(isn + 1);
    l.Deliver(absl::ZeroDuration(), rst);
    ASSERT_EQ(l.ep().state(), TcpState::kListen);
  }
  l.Restart();
  l.Deliver(absl::ZeroDuration(), PeerAck(kPeerIss + 7, 77));
  EXPECT_THAT(l.sent(),
              ElementsAre("0 R 77:77 ack 4294962296 win 0 mss 0 wscale -1 sackok 0 ts 0/0"));
}

// A retransmitted SYN in SYN-RECEIVED makes the SYN-ACK due at once; an
// unacceptable segment arriving with it wants an ACK, which the SYN-ACK carries;
// and the ACK of our SYN arriving before the next Poll makes it moot.
TEST(ListenerReturnedToListen, ASynAckDueIsSentOnceAndNotAfterTheHandshake) {
  ListenerTranscript l(EndpointConfig(), absl::UnixEpoch());
  l.Deliver(absl::ZeroDuration(), PeerSyn(kPeerIss, false));
  l.Arrive(Ms(10), PeerSyn(kPeerIss, false));
  l.Deliver(Ms(10), PeerAck(kPeerIss + 10000000, 1));  // far outside the window
  EXPECT_THAT(l.SynAckTimes(), ElementsAre(absl::ZeroDuration(), Ms(10)));
  EXPECT_EQ(l.sent().size(), 2u);
  l.Arrive(Ms(20), PeerSyn(kPeerIss, false));
  l.Deliver(Ms(20), PeerAck(kPeerIss + 1, 1));
  EXPECT_EQ(l.ep().state(), TcpState::kEstablished);
  EXPECT_EQ(l.sent().size(), 2u);
}

// RFC 7323 §2.3: a shift count above 14 is used as 14.
TEST(ListenerReturnedToListen, APeersWindowScaleAbove14Is14) {
  ListenerTranscript l(EndpointConfig(), absl::UnixEpoch());
  TcpRepr syn = PeerSyn(kPeerIss, true);
  syn.options.window_scale = 15;
  l.Deliver(absl::ZeroDuration(), syn);
  EXPECT_EQ(l.ep().tcb().rcv_wnd, 65535u);  // a SYN-ACK's window is never scaled
  TcpRepr ack = PeerAck(kPeerIss + 1, 1);
  ack.window = 2;
  l.Deliver(Ms(10), ack);
  ASSERT_EQ(l.ep().state(), TcpState::kEstablished);
  EXPECT_EQ(l.ep().tcb().snd_wnd, 2u << 14);
}

// A SYN-ACK offers only what the config allows and the SYN offered (RFC 7323 §1.3,
// RFC 2018 §2): with window scaling, SACK and timestamps turned off, none of them,
// however the SYN asks.
TEST(ListenerReturnedToListen, OffersNoOptionTheConfigTurnsOff) {
  TcpConfig c = EndpointConfig();
  c.window_scaling = false;
  c.sack = false;
  c.timestamps = false;
  ListenerTranscript l(c, absl::UnixEpoch());
  l.Deliver(absl::ZeroDuration(), PeerSyn(kPeerIss, true));
  EXPECT_THAT(l.sent(), ElementsAre("0 S. 0:0 ack 1 win 65535 mss 1000 wscale -1 sackok 0 ts 0/0"));
}

// A SYN carries no option the config turns off.
TEST_F(ScriptedPeer, ASynWithTimestampsOffCarriesNone) {
  TcpConfig c = EndpointConfig();
  c.timestamps = false;
  ep_ = std::make_unique<TcpEndpoint>(std::move(c));
  ASSERT_TRUE(ep().Connect(now_).ok());
  Pump();
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(tsval_out_.back(), std::nullopt);
}

// RFC 9293 §3.8.6.1 lets probing go on while the peer answers; a peer that never
// answers is given up after max_retries probes, as Linux's tcp_probe_timer does,
// each after twice the wait of the one before.
TEST_F(ScriptedPeer, UnansweredZeroWindowProbesEndInATimeout) {
  TcpConfig c = EndpointConfig();
  c.max_retries = 3;
  Open(c, {.sack = true});
  Send(2000);
  RunTo(Ms(20));
  Ack(2001, {}, 0);
  Send(1000);
  out_.clear();
  const Duration rto = ep().tcb().rto;
  RunTo(absl::Seconds(100));
  EXPECT_THAT(out_, ElementsAre(O(Ms(20) + rto, 2000, 0), O(Ms(20) + 3 * rto, 2000, 0),
                                O(Ms(20) + 7 * rto, 2000, 0)));
  EXPECT_EQ(ep().state(), TcpState::kClosed);
  EXPECT_EQ(ep().close_reason(), CloseReason::kTimeout);
  EXPECT_EQ(ep().error(), "connection timed out: 3 zero-window probes unanswered");
}

// RFC 6298 §3 without timestamps: one segment is timed at a time, and only an ACK
// that covers it ends the measurement; an ACK of an earlier segment takes no sample.
TEST_F(ScriptedPeer, OnlyAnAckOfTheTimedSegmentTakesAnRttSample) {
  Open(EndpointConfig(), {.sack = true});
  Send(1000);  // 1:1001, timed from 10 ms
  RunTo(Ms(12));
  Send(1000);  // 1001:2001, not timed: a measurement is under way
  RunTo(Ms(20));
  Ack(1001);  // a 10 ms sample
  ASSERT_EQ(ep().tcb().srtt, Ms(10));
  Send(1000);  // 2001:3001, timed from 20 ms
  RunTo(Ms(22));
  Ack(2001);  // below the timed segment: no sample
  EXPECT_EQ(ep().tcb().srtt, Ms(10));
  RunTo(Ms(36));
  Ack(3001);  // a 16 ms sample: SRTT = 7/8 * 10 + 1/8 * 16
  EXPECT_EQ(ep().tcb().srtt, Ms(10.75));
}

TEST_F(ScriptedPeer, RfcProfileWaitsForTheOneSecondRto) {
  Open(EndpointConfig(TcpProfile::kRfc), {.sack = true});
  Send(10'000);
  TakeData();
  RunTo(Ms(20));
  Ack(8001);
  RunTo(Ms(1019));
  EXPECT_THAT(TakeData(), IsEmpty());
  RunTo(Ms(1020));
  // RFC 6298 §2.4: RTO = max(SRTT + 4 RTTVAR, 1 s), restarted by the last ACK.
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(1020), 8001, 1000)));
  EXPECT_EQ(ep().loss_stats().timeouts, 1);
  EXPECT_EQ(ep().loss_stats().tlp_probes, 0);
  EXPECT_EQ(ep().tcb().cwnd, 1000u);
}

TEST_F(ScriptedPeer, LinuxProfileRtoHasA200MillisecondFloor) {
  Open(EndpointConfig(), {.sack = false});  // no SACK: no TLP either
  Send(10'000);
  TakeData();
  RunTo(Ms(20));
  Ack(8001);
  // Linux's tcp_set_rto: SRTT + max(4*RTTVAR, TCP_RTO_MIN), the floor on the variance
  // term, where RFC 6298 §2.4 would clamp the sum.
  const Duration rto = ep().tcb().rto;
  EXPECT_EQ(rto, ep().tcb().srtt + Ms(200));
  RunTo(Ms(20) + rto - Ms(1));
  EXPECT_THAT(TakeData(), IsEmpty());
  RunTo(Ms(20) + rto);
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(20) + rto, 8001, 1000)));
  EXPECT_EQ(ep().tcb().rto, 2 * rto);  // backed off once
}

// RFC 6298 §2.2 and §2.3 with Linux's floor on the variance term, sample by sample:
// the handshake gives SRTT = 10 ms, RTTVAR = 5 ms; the next samples are 30 ms and
// 400 ms. Every figure is exact (alpha = 1/8, beta = 1/4).
TEST_F(ScriptedPeer, RttSamplesMoveSrttRttvarAndRtoAsRfc6298Says) {
  Open(EndpointConfig(), {.sack = false});
  EXPECT_EQ(ep().tcb().srtt, Ms(10));
  EXPECT_EQ(ep().tcb().rttvar, Ms(5));
  EXPECT_EQ(ep().tcb().rto, Ms(210));  // 10 + max(200, 4 * 5)
  Send(1000);
  RunTo(Ms(40));
  Ack(1001);  // a 30 ms sample
  EXPECT_EQ(ep().tcb().rttvar, Ms(8.75));   // 3/4 * 5 + 1/4 * |10 - 30|
  EXPECT_EQ(ep().tcb().srtt, Ms(12.5));     // 7/8 * 10 + 1/8 * 30
  EXPECT_EQ(ep().tcb().rto, Ms(212.5));     // 12.5 + max(200, 35)
  EXPECT_EQ(ep().timers().rto, kNever);     // nothing outstanding
  Send(1000);
  RunTo(Ms(240));
  Ack(2001);  // a 200 ms sample: the variance term passes the floor
  EXPECT_EQ(ep().tcb().rttvar, absl::Nanoseconds(53'437'500));  // 3/4 * 8.75 + 1/4 * 187.5
  EXPECT_EQ(ep().tcb().srtt, absl::Nanoseconds(35'937'500));    // 7/8 * 12.5 + 1/8 * 200
  EXPECT_EQ(ep().tcb().rto, absl::Nanoseconds(249'687'500));    // 35.9375 + 4 * 53.4375
}

// RFC 6298 §5: the timer runs while data is outstanding, restarts on an ACK of new
// data, backs off on each expiry (§5.5), and a retransmitted segment gives no RTT
// sample (Karn), so the backed-off RTO stays until a new one is measured (§5.7).
TEST_F(ScriptedPeer, RetransmissionTimerRestartsBacksOffAndKarnKeepsTheBackoff) {
  Open(EndpointConfig(), {.sack = false});
  Send(2000);
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(10), 1, 1000), O(Ms(10), 1001, 1000)));
  EXPECT_EQ(ep().timers().rto, absl::UnixEpoch() + Ms(220));
  RunTo(Ms(30));
  Ack(1001);  // 20 ms sample: RTTVAR 6.25, SRTT 11.25, RTO 211.25; restarted
  EXPECT_EQ(ep().tcb().rto, Ms(211.25));
  EXPECT_EQ(ep().timers().rto, absl::UnixEpoch() + Ms(241.25));
  RunTo(Ms(241));
  EXPECT_THAT(TakeData(), IsEmpty());
  RunTo(Ms(241.25));
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(241.25), 1001, 1000)));
  EXPECT_EQ(ep().tcb().rto, Ms(422.5));
  EXPECT_EQ(ep().recovery(), TcpEndpoint::Recovery::kLoss);
  EXPECT_EQ(ep().loss_stats().timeouts, 1);
  EXPECT_EQ(ep().retransmissions(), 1);
  EXPECT_EQ(ep().tcb().cwnd, 1000u);
  RunTo(Ms(663.75));
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(663.75), 1001, 1000)));
  EXPECT_EQ(ep().tcb().rto, Ms(845));
  EXPECT_EQ(ep().retransmissions(), 2);
  EXPECT_EQ(ep().bytes_acked(), 1000u);
  RunTo(Ms(700));
  Ack(2001);
  EXPECT_EQ(ep().bytes_acked(), 2000u);
  EXPECT_EQ(ep().tcb().srtt, Ms(11.25));  // no sample from a retransmission
  EXPECT_EQ(ep().tcb().rto, Ms(845));
  EXPECT_EQ(ep().recovery(), TcpEndpoint::Recovery::kOpen);
  EXPECT_EQ(ep().timers().rto, kNever);
  // The next segment is timed again, and its sample recomputes the RTO.
  Send(1000);
  RunTo(Ms(720));
  Ack(3001);
  EXPECT_EQ(ep().tcb().srtt, absl::Nanoseconds(12'343'750));  // 7/8 * 11.25 + 1/8 * 20
  EXPECT_EQ(ep().tcb().rto, absl::Nanoseconds(212'343'750));
}

// RFC 5961 §7: a RST inside the window but not at RCV.NXT gets a challenge ACK, at
// most challenge_ack_limit (100) a second; the count starts again a second after the
// first of the window.
TEST_F(ScriptedPeer, ChallengeAcksAreLimitedPerSecond) {
  Open(EndpointConfig(), {.sack = true});
  auto rst_in_window = [&] {
    TcpRepr r = Header(1, peer_.window);
    r.flags = TcpFlags(kRst);
    r.seq = SeqNum(kPeerIss + 1 + 500);
    ep_->OnSegment(now_, r);
    Pump();
  };
  for (int i = 0; i < 150; ++i) rst_in_window();
  EXPECT_EQ(out_.size(), 100u);
  for (const Out& o : out_) EXPECT_EQ(o, O(Ms(10), 1, 0));
  out_.clear();
  RunTo(Ms(1009));
  rst_in_window();
  EXPECT_THAT(out_, IsEmpty());
  RunTo(Ms(1010));
  for (int i = 0; i < 150; ++i) rst_in_window();
  EXPECT_EQ(out_.size(), 100u);
  EXPECT_EQ(ep().state(), TcpState::kEstablished);
}

// RFC 2018 §8 lets a receiver discard what it SACKed, so a sender must not rely on
// SACK marks forever; RFC 6675 §5.1 keeps them through the first timeout. Here the
// peer SACKed the third segment: the first RTO resends the first, and once that is
// acknowledged, only the second goes again, not the SACKed third. (RACK and TLP off,
// so the timer alone repairs the loss.)
TEST_F(ScriptedPeer, FirstTimeoutKeepsSackMarks) {
  TcpConfig c = EndpointConfig();
  c.rack = false;
  c.tlp = false;
  Open(c, {.sack = true});
  Send(3000);
  EXPECT_THAT(TakeData(),
              ElementsAre(O(Ms(10), 1, 1000), O(Ms(10), 1001, 1000), O(Ms(10), 2001, 1000)));
  RunTo(Ms(20));
  Ack(1, {{2001, 3001}});
  EXPECT_EQ(ep().recovery(), TcpEndpoint::Recovery::kOpen);
  RunTo(Ms(220));
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(220), 1, 1000)));
  EXPECT_EQ(ep().recovery(), TcpEndpoint::Recovery::kLoss);
  RunTo(Ms(230));
  Ack(1001);
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(230), 1001, 1000)));
  EXPECT_EQ(ep().tcb().cwnd, 2000u);  // slow start from one segment
  RunTo(Ms(240));
  Ack(3001);
  EXPECT_EQ(ep().recovery(), TcpEndpoint::Recovery::kOpen);
  EXPECT_EQ(ep().loss_stats().timeouts, 1);
  EXPECT_EQ(ep().retransmissions(), 2);
}

// --- PRR (RFC 6937) ----------------------------------------------------------

TEST_F(ScriptedPeer, PrrSpreadsTheReductionOverTheAcksOfOneRoundTrip) {
  Open(EndpointConfig(), {.sack = true});
  Send(60'000);
  ASSERT_EQ(TakeData().size(), 10u);
  RunTo(Ms(20));
  Ack(10001);  // slow start: cwnd 10 -> 20 segments, all sent at once
  ASSERT_EQ(TakeData().size(), 20u);
  ASSERT_EQ(ep().tcb().cwnd, 20'000u);
  // 10001:11001 is lost; the other 19 are SACKed one ACK at a time.
  RunTo(Ms(30));
  std::vector<uint32_t> cwnd;
  std::vector<size_t> sent;
  for (uint32_t k = 1; k <= 19; ++k) {
    Ack(10001, {{11001, 11001 + 1000 * k}});
    cwnd.push_back(ep().tcb().cwnd);
    sent.push_back(TakeData().size());
  }
  // The first two SACKs each let a new segment out (pipe fell below cwnd, RFC 6675
  // §5 rule 2: 22 segments are in flight when recovery starts at the third SACKed
  // segment). RecoverFS = 22000, ssthresh = 0.7 * 20000 = 14000. While pipe >
  // ssthresh, RFC 6937: sndcnt = ceil(prr_delivered * 14000 / 22000) - prr_out,
  // cwnd = pipe + sndcnt:
  //   ACK 3: ceil(1000 * 14/22) = 637 - 0 = 637,     pipe 18000 -> cwnd 18637, retransmit
  //   ACK 4: 1273 - 1000 = 273,  pipe 18000 -> 18273
  //   ACK 5: 1910 - 1000 = 910,  pipe 17000 -> 17910 (less than a segment: nothing)
  //   ACK 6: 2546 - 1000 = 1546, pipe 16000 -> 17546, one new segment
  //   ACK 7: 3182 - 2000 = 1182, pipe 16000 -> 17182, one new segment
  //   ACK 8: 3819 - 3000 = 819,  pipe 16000 -> 16819
  EXPECT_EQ(ep().tcb().ssthresh, 14'000u);
  EXPECT_THAT(std::vector<uint32_t>(cwnd.begin() + 2, cwnd.begin() + 8),
              ElementsAre(18'637u, 18'273u, 17'910u, 17'546u, 17'182u, 16'819u));
  EXPECT_THAT(std::vector<size_t>(sent.begin(), sent.begin() + 8),
              ElementsAre(1u, 1u, 1u, 0u, 0u, 1u, 1u, 0u));
  // Once pipe is down to ssthresh (ACK 12 on), PRR-SSRB holds cwnd at ssthresh and
  // each SACKed segment lets one out.
  EXPECT_THAT(std::vector<uint32_t>(cwnd.begin() + 8, cwnd.end()),
              ElementsAre(16'455u, 16'091u, 15'728u, 14'000u, 14'000u, 14'000u, 14'000u, 14'000u,
                          14'000u, 14'000u, 14'000u));
  EXPECT_THAT(std::vector<size_t>(sent.begin() + 8, sent.end()),
              ElementsAre(1u, 1u, 0u, 0u, 1u, 1u, 1u, 1u, 1u, 1u, 1u));
  // Over the round trip PRR sends ssthresh / RecoverFS of what was delivered: pipe
  // ends at ssthresh, not at half of it nor above it.
  size_t total = 0;
  for (size_t i = 2; i < sent.size(); ++i) total += sent[i];
  EXPECT_EQ(total,
            12u);  // 19 delivered of 22: ceil(19000 * 14/22) = 12091 bytes, 12 whole segments
  RunTo(Ms(40));
  Ack(ep().tcb().snd_nxt.raw() - kIss);
  EXPECT_EQ(ep().recovery(), TcpEndpoint::Recovery::kOpen);
  EXPECT_EQ(ep().tcb().cwnd, 14'000u);  // RFC 6937: cwnd = ssthresh when recovery ends
}

// --- NewReno without SACK (RFC 6582) -----------------------------------------

TEST_F(ScriptedPeer, NewRenoPartialAckRetransmitsTheNextHole) {
  Open(EndpointConfig(TcpProfile::kRfc), {.sack = false});
  Send(10'000);
  TakeData();
  // 1001:2001 and 4001:5001 are lost.
  RunTo(Ms(20));
  Ack(1001);
  Ack(1001);
  Ack(1001);
  Ack(1001);
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(20), 1001, 1000)));
  RunTo(Ms(30));
  Ack(4001);  // partial: RFC 6582 retransmits the segment at the new SND.UNA
  EXPECT_THAT(TakeData(), ::testing::Contains(O(Ms(30), 4001, 1000)));
  EXPECT_EQ(ep().recovery(), TcpEndpoint::Recovery::kRecovery);
  RunTo(Ms(40));
  Ack(10001);
  EXPECT_EQ(ep().recovery(), TcpEndpoint::Recovery::kOpen);
  EXPECT_EQ(ep().loss_stats().timeouts, 0);
  EXPECT_EQ(ep().congestion().algorithm(), CongestionAlgorithm::kNewReno);
}

// --- TIME-WAIT and a new SYN (RFC 6191) ---------------------------------------

class TimeWait : public ScriptedPeer {
 protected:
  // The endpoint closes first and ends in TIME-WAIT; the peer used timestamps.
  void EnterTimeWait(TcpConfig cfg) {
    Open(std::move(cfg), {.sack = true, .timestamps = true});
    ASSERT_TRUE(ep().Close(now_).ok());
    Pump();
    RunTo(Ms(20));
    TcpRepr fin = Header(2, 65535);
    fin.flags = TcpFlags(kFin | kAck);
    fin.options.timestamps = Timestamps{100, 0};
    ep().OnSegment(now_, fin);
    Pump();
    ASSERT_EQ(ep().state(), TcpState::kTimeWait);
    out_.clear();
  }
  TcpRepr NewSyn(uint32_t seq, uint32_t tsval) {
    TcpRepr syn;
    syn.src_port = kPeerPort;
    syn.dst_port = kPort;
    syn.seq = SeqNum(seq);
    syn.flags = TcpFlags(kSyn);
    syn.window = 65535;
    syn.options.mss = 1000;
    syn.options.timestamps = Timestamps{tsval, 0};
    return syn;
  }
};

// RFC 9293 §3.10.7.4, TIME-WAIT: "The only thing that can arrive in this state is
// a retransmission of the remote FIN. Acknowledge it, and restart the 2 MSL
// timeout." The retransmission lies below RCV.NXT (unacceptable, answered by the
// first check); a FIN at RCV.NXT itself gets the same answer in the eighth step,
// and RCV.NXT does not move.
TEST_F(TimeWait, ARetransmittedFinIsAcknowledgedAndRestartsTwoMsl) {
  EnterTimeWait(EndpointConfig());
  ASSERT_EQ(ep().NextDeadline(), absl::UnixEpoch() + Ms(20) + absl::Seconds(60));
  RunTo(absl::Seconds(30));
  TcpRepr fin = Header(2, 65535);
  fin.flags = TcpFlags(kFin | kAck);
  fin.options.timestamps = Timestamps{200, 0};
  ep().OnSegment(now_, fin);
  Pump();
  EXPECT_THAT(out_, ElementsAre(O(absl::Seconds(30), 2, 0)));
  EXPECT_EQ(ep().NextDeadline(), absl::UnixEpoch() + absl::Seconds(90));
  EXPECT_EQ(ep().tcb().rcv_nxt, SeqNum(kPeerIss + 2));
  EXPECT_EQ(ep().state(), TcpState::kTimeWait);
}

TEST_F(TimeWait, AFinAtRcvNxtIsAcknowledgedAndRestartsTwoMsl) {
  EnterTimeWait(EndpointConfig());
  RunTo(absl::Seconds(30));
  TcpRepr fin = Header(2, 65535);
  fin.seq = SeqNum(kPeerIss + 2);
  fin.flags = TcpFlags(kFin | kAck);
  fin.options.timestamps = Timestamps{200, 0};
  ep().OnSegment(now_, fin);
  Pump();
  EXPECT_THAT(out_, ElementsAre(O(absl::Seconds(30), 2, 0)));
  EXPECT_EQ(ep().NextDeadline(), absl::UnixEpoch() + absl::Seconds(90));
  EXPECT_EQ(ep().tcb().rcv_nxt, SeqNum(kPeerIss + 2));
  RunTo(absl::Seconds(89));
  EXPECT_EQ(ep().state(), TcpState::kTimeWait);
  RunTo(absl::Seconds(90));
  EXPECT_EQ(ep().state(), TcpState::kClosed);
  EXPECT_EQ(ep().close_reason(), CloseReason::kNormal);
}

TEST_F(TimeWait, SynWithNewerTimestampEndsTimeWaitSilently) {
  EnterTimeWait(EndpointConfig());
  TcpRepr syn = NewSyn(kPeerIss - 100000, 200);  // an older ISN, but a newer TSval
  EXPECT_TRUE(ep().TimeWaitAcceptsSyn(syn));
  ep().OnSegment(now_, syn);
  Pump();
  EXPECT_EQ(ep().state(), TcpState::kClosed);
  EXPECT_EQ(ep().close_reason(), CloseReason::kNormal);
  EXPECT_THAT(out_, IsEmpty());
}

TEST_F(TimeWait, SynWithOlderTimestampGetsAChallengeAck) {
  EnterTimeWait(EndpointConfig());
  TcpRepr syn = NewSyn(kPeerIss + 100000, 50);
  EXPECT_FALSE(ep().TimeWaitAcceptsSyn(syn));
  ep().OnSegment(now_, syn);
  Pump();
  EXPECT_EQ(ep().state(), TcpState::kTimeWait);
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].flags, ".");
}

TEST_F(TimeWait, SynWithoutTimestampsNeedsAnIsnBeyondRcvNxt) {
  EnterTimeWait(EndpointConfig());
  TcpRepr old_isn = NewSyn(kPeerIss, 0);
  old_isn.options.timestamps.reset();
  EXPECT_FALSE(ep().TimeWaitAcceptsSyn(old_isn));
  TcpRepr new_isn = NewSyn(kPeerIss + 100000, 0);
  new_isn.options.timestamps.reset();
  EXPECT_TRUE(ep().TimeWaitAcceptsSyn(new_isn));
}

// Linux (tcp_timewait_state_process) refuses only a TSval older than TS.Recent: an
// equal one passes PAWS, and an ISN beyond RCV.NXT then starts the new connection.
TEST_F(TimeWait, SynWithAnEqualTimestampAndAnIsnBeyondRcvNxtEndsTimeWait) {
  EnterTimeWait(EndpointConfig());
  TcpRepr syn = NewSyn(kPeerIss + 100000, 100);
  EXPECT_TRUE(ep().TimeWaitAcceptsSyn(syn));
}

TEST_F(TimeWait, RfcProfileAnswersEverySynWithAChallengeAck) {
  EnterTimeWait(EndpointConfig(TcpProfile::kRfc));
  TcpRepr syn = NewSyn(kPeerIss + 100000, 200);
  EXPECT_FALSE(ep().TimeWaitAcceptsSyn(syn));
  ep().OnSegment(now_, syn);
  Pump();
  EXPECT_EQ(ep().state(), TcpState::kTimeWait);
  ASSERT_EQ(out_.size(), 1u);
}

TEST_F(TimeWait, SynWithoutTimestampsAtRcvNxtGetsAChallengeAck) {
  EnterTimeWait(EndpointConfig());
  TcpRepr syn = NewSyn(kPeerIss + 2, 0);  // the ISN is RCV.NXT itself: not beyond it
  syn.options.timestamps.reset();
  EXPECT_FALSE(ep().TimeWaitAcceptsSyn(syn));
  ep().OnSegment(now_, syn);
  Pump();
  EXPECT_EQ(ep().state(), TcpState::kTimeWait);
  EXPECT_THAT(out_, ElementsAre(O(Ms(20), 2, 0)));
}

// --- delayed ACKs (RFC 9293 §3.8.6.3, RFC 5681 §4.2) --------------------------

// After the quick ACKs, a full segment waits: the next full segment is
// acknowledged at once (more than one segment unacknowledged), a smaller one
// within the delayed-ACK timeout, as Linux's __tcp_ack_snd_check.
TEST_F(ScriptedPeer, AfterTheQuickAcksEverySecondFullSegmentIsAcknowledged) {
  TcpConfig c = EndpointConfig();
  c.quickacks = 1;
  Open(c, {.sack = true});
  PeerData(1, 1000);  // the quick ACK
  EXPECT_THAT(out_, ElementsAre(O(Ms(10), 1, 0)));
  out_.clear();
  RunTo(Ms(20));
  PeerData(1001, 1000);  // one full segment unacknowledged: it waits
  RunTo(Ms(30));
  EXPECT_THAT(out_, IsEmpty());
  PeerData(2001, 1000);  // two: at once
  EXPECT_THAT(out_, ElementsAre(O(Ms(30), 1, 0)));
  out_.clear();
  RunTo(Ms(40));
  PeerData(3001, 999);
  RunTo(Ms(79));
  EXPECT_THAT(out_, IsEmpty());
  PeerData(3000 + 1000, 1);  // a second segment, but no more than a full segment unacknowledged
  RunTo(Ms(200));
  EXPECT_THAT(out_, ElementsAre(O(Ms(80), 1, 0)));  // the timer started by the 999 bytes
  EXPECT_EQ(ep().tcb().rcv_nxt, SeqNum(kPeerIss + 4001));
}

// --- the send window (RFC 9293 §3.10.7.4, fifth, ESTABLISHED) ------------------

// "If SND.WL1 < SEG.SEQ or (SND.WL1 = SEG.SEQ and SND.WL2 =< SEG.ACK)": a segment
// the network reordered behind a newer one carries an older window, which must
// not replace the newer. Here the peer's data came out of order, the second
// segment (window 65535) before the first (window 1000): the window stays open.
TEST_F(ScriptedPeer, AnOlderSegmentDoesNotShrinkTheSendWindow) {
  Open(EndpointConfig(), {.sack = true});
  Send(1000);
  RunTo(Ms(20));
  static const std::vector<uint8_t> kBytes(100, 'y');
  TcpRepr second = Header(1001, 65535);
  second.seq = SeqNum(kPeerIss + 101);
  second.payload = absl::MakeConstSpan(kBytes);
  ep().OnSegment(now_, second);
  Pump();
  TcpRepr first = Header(1001, 1000);
  first.payload = absl::MakeConstSpan(kBytes);
  ep().OnSegment(now_, first);
  Pump();
  EXPECT_EQ(ep().tcb().snd_wnd, 65535u);
  EXPECT_EQ(ep().tcb().snd_wl1, SeqNum(kPeerIss + 101));
  TakeData();
  Send(5000);
  EXPECT_EQ(TakeData().size(), 5u);
}

// "If SND.UNA =< SEG.ACK =< SND.NXT, the send window should be updated": a segment
// whose ACK lies below SND.UNA (old, but inside MAX.SND.WND, so it is processed)
// leaves the window alone, however new its sequence number.
TEST_F(ScriptedPeer, ASegmentWithAnAckBelowSndUnaLeavesTheWindowAlone) {
  Open(EndpointConfig(), {.sack = true});
  Send(1000);
  RunTo(Ms(20));
  Ack(1001);
  // Two segments of new data, each with an ACK of our SYN only and a zero window:
  // the second's sequence number lies above SND.WL1.
  static const std::vector<uint8_t> kBytes(100, 'y');
  for (uint32_t k = 0; k < 2; ++k) {
    TcpRepr stale = Header(1, 0);
    stale.seq = SeqNum(kPeerIss + 1 + 100 * k);
    stale.payload = absl::MakeConstSpan(kBytes);
    ep().OnSegment(now_, stale);
    Pump();
  }
  EXPECT_EQ(ep().tcb().rcv_nxt, SeqNum(kPeerIss + 201));  // the data is taken
  EXPECT_EQ(ep().tcb().snd_wnd, 65535u);
  EXPECT_EQ(ep().tcb().snd_wl1, SeqNum(kPeerIss + 1));
  TakeData();
  Send(3000);
  EXPECT_EQ(TakeData().size(), 3u);
}

// --- a zero receive window -----------------------------------------------------

// RFC 9293 §3.10.7.4: with our window at zero, a segment at RCV.NXT is taken for its
// ACK only; its text and its FIN are dropped. The ACK still moves our FIN-WAIT-1 on
// to FIN-WAIT-2, as an ACK without a FIN does; the FIN counts when it comes again.
TEST_F(ScriptedPeer, AFinIntoAZeroWindowIsDroppedButItsAckOfOurFinCounts) {
  TcpConfig c = EndpointConfig();
  c.recv_buffer = 1000;
  Open(std::move(c), {.sack = true});
  PeerData(1, 1000);  // fills the receive buffer
  ASSERT_TRUE(ep().Close(now_).ok());
  Pump();
  out_.clear();
  RunTo(Ms(20));
  TcpRepr fin = Header(2, peer_.window);  // acknowledges our FIN
  fin.seq = SeqNum(kPeerIss + 1001);
  fin.flags = TcpFlags(kFin | kAck);
  ep().OnSegment(now_, fin);
  Pump();
  EXPECT_EQ(ep().state(), TcpState::kFinWait2);
  EXPECT_FALSE(ep().fin_received());
  EXPECT_EQ(ep().tcb().rcv_nxt, SeqNum(kPeerIss + 1001));
  EXPECT_THAT(out_, ElementsAre(O(Ms(20), 2, 0)));  // the ACK a dropped segment gets
}

// --- a reset between two polls -------------------------------------------------

// Duplicate ACKs owed for out-of-order segments are not sent once a RST closed the
// connection before the next Poll: a closed connection sends nothing.
TEST_F(ScriptedPeer, AResetBeforeThePollCancelsTheDuplicateAcksOwed) {
  Open(EndpointConfig(), {.sack = true});
  static const std::vector<uint8_t> kBytes(100, 'y');
  for (uint32_t k = 0; k < 3; ++k) {
    TcpRepr r = Header(1, peer_.window);
    r.seq = SeqNum(kPeerIss + 101 + 200 * k);
    r.payload = absl::MakeConstSpan(kBytes);
    ep().OnSegment(now_, r);
  }
  TcpRepr rst = Header(1, 0);
  rst.flags = TcpFlags(kRst);
  ep().OnSegment(now_, rst);
  ASSERT_EQ(ep().state(), TcpState::kClosed);
  EXPECT_FALSE(ep().HasPendingOutput());
  PollOnce();
  EXPECT_THAT(out_, IsEmpty());
}

// --- the loss probe's timer (RFC 8985 §7.2) -------------------------------------

// The PTO counts from the last transmission of new data: a Poll that sends nothing
// (the application queued more than cwnd takes) does not push the probe back.
TEST_F(ScriptedPeer, APollThatSendsNothingLeavesTheProbeTimerAlone) {
  Open(EndpointConfig(), {.sack = true});
  Send(10'000);  // the initial window, at 10 ms
  ASSERT_EQ(TakeData().size(), 10u);
  ASSERT_EQ(ep().timers().tlp, absl::UnixEpoch() + Ms(30));  // 2 * SRTT after it
  RunTo(Ms(15));
  Send(1000);  // cwnd is full: nothing goes
  EXPECT_THAT(TakeData(), IsEmpty());
  EXPECT_EQ(ep().timers().tlp, absl::UnixEpoch() + Ms(30));
  RunTo(Ms(30));
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(30), 10001, 1000)));  // the probe: new data
  EXPECT_EQ(ep().loss_stats().tlp_probes, 1);
}

// RFC 8985 §6.2 step 4: without reordering seen, the reordering window is 0 once
// DupThresh segments are SACKed. Segments 2, 4 and 5 SACKed: segment 1 has three
// SACKed above it (RFC 6675 IsLost), segment 3 only two, and RACK deems it lost on
// the same ACK, so both go at once rather than the second a quarter min_RTT later.
TEST_F(ScriptedPeer, RackWindowIsZeroOnceDupThreshSegmentsAreSacked) {
  Open(EndpointConfig(), {.sack = true});
  Send(5000);
  ASSERT_EQ(TakeData().size(), 5u);
  RunTo(Ms(20));
  Ack(1, {{1001, 2001}});
  EXPECT_THAT(TakeData(), IsEmpty());
  Ack(1, {{3001, 5001}, {1001, 2001}});
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(20), 1, 1000), O(Ms(20), 2001, 1000)));
  EXPECT_EQ(ep().loss_stats().rack_marked, 1);
}

// RFC 6937 §3 without SACK: each duplicate ACK stands for one segment delivered
// (RFC 6675's DeliveredData is otherwise 0). Before recovery that lets a new
// segment out on each of the first two (pipe falls below cwnd, as RFC 3042's
// limited transmit); in recovery, PRR sends ssthresh / RecoverFS = 1/2 of what
// the duplicate ACKs deliver while pipe is above ssthresh, then a segment for each.
TEST_F(ScriptedPeer, NewRenoDuplicateAcksInRecoveryDeliverASegmentEach) {
  Open(EndpointConfig(TcpProfile::kRfc), {.sack = false});
  Send(20'000);
  ASSERT_EQ(TakeData().size(), 10u);  // the initial window; 10 more wait
  RunTo(Ms(20));
  for (int k = 0; k < 3; ++k) Ack(1);
  EXPECT_THAT(TakeData(),
              ElementsAre(O(Ms(20), 10001, 1000), O(Ms(20), 11001, 1000), O(Ms(20), 1, 1000)));
  EXPECT_EQ(ep().tcb().ssthresh, 6000u);  // NewReno: FlightSize / 2, with 12 segments out
  // RecoverFS 12000, pipe 9000 after the fast retransmit. The 4th and 5th bring
  // prr_delivered to 2000 and 3000: 1000 and 1500 allowed, 1000 already out; the
  // 6th leaves pipe at ssthresh, and from the 7th each lets one segment out.
  // cwnd = pipe + sndcnt, exact to the byte: 1000 * 6000 / 12000 divides evenly,
  // so the rounding up adds nothing.
  std::vector<size_t> sent;
  std::vector<uint32_t> cwnd;
  for (int k = 0; k < 6; ++k) {
    Ack(1);
    sent.push_back(TakeData().size());
    cwnd.push_back(ep().tcb().cwnd);
  }
  EXPECT_THAT(sent, ElementsAre(0u, 0u, 0u, 1u, 1u, 1u));
  EXPECT_THAT(cwnd, ElementsAre(8000u, 7500u, 6000u, 6000u, 6000u, 6000u));
}

// A FIN ahead of missing data is held while it lies inside the window, up to its
// right edge: here the 2000-byte window ends exactly at the FIN, which takes
// effect (CLOSE-WAIT) when the missing data arrives.
TEST_F(ScriptedPeer, AFinAtTheWindowsRightEdgeWaitsForTheDataBeforeIt) {
  TcpConfig c = EndpointConfig();
  c.recv_buffer = 2000;
  Open(std::move(c), {.sack = true});
  PeerSegment(1001, 1000, kFin | kAck);
  ASSERT_FALSE(sacks_out_.empty());
  EXPECT_THAT(sacks_out_.back(), ElementsAre(std::pair<uint32_t, uint32_t>(1001, 2002)));
  EXPECT_EQ(ep().state(), TcpState::kEstablished);
  PeerData(1, 1000);
  EXPECT_EQ(ep().state(), TcpState::kCloseWait);
  EXPECT_EQ(ep().tcb().rcv_nxt, SeqNum(kPeerIss + 2002));
  EXPECT_THAT(sacks_out_.back(), IsEmpty());  // nothing is held any more
}

// --- more of the first checks (RFC 9293 §3.10.7.4) ------------------------------

// A segment that begins below RCV.NXT and ends inside the window is acceptable (the
// fourth case of the test, by its last byte); its new bytes are taken.
TEST_F(ScriptedPeer, ASegmentOverlappingRcvNxtIsTakenForItsNewBytes) {
  Open(EndpointConfig(), {.sack = true});
  PeerData(1, 1000);
  PeerData(501, 1000);
  EXPECT_EQ(ep().tcb().rcv_nxt, SeqNum(kPeerIss + 1501));
  EXPECT_EQ(ep().readable(), 1500u);
}

// "If the ACK acks something not yet sent (SEG.ACK > SND.NXT), then send an ACK, drop
// the segment, and return": its text is not taken either.
TEST_F(ScriptedPeer, TextWithAnAckOfUnsentDataIsDropped) {
  Open(EndpointConfig(), {.sack = true});
  static const std::vector<uint8_t> kBytes(100, 'y');
  TcpRepr r = Header(5001, peer_.window);
  r.payload = absl::MakeConstSpan(kBytes);
  ep().OnSegment(now_, r);
  Pump();
  EXPECT_EQ(ep().tcb().rcv_nxt, SeqNum(kPeerIss + 1));
  EXPECT_EQ(ep().readable(), 0u);
  EXPECT_THAT(out_, ElementsAre(O(Ms(10), 1, 0)));
}

// With our window at zero, a pure ACK is an ordinary ACK: taken, and not answered
// (only a segment with text or a FIN is answered, its content being dropped).
TEST_F(ScriptedPeer, APureAckIntoAZeroWindowIsNotAnswered) {
  TcpConfig c = EndpointConfig();
  c.recv_buffer = 1000;
  Open(std::move(c), {.sack = true});
  PeerData(1, 1000);
  Send(1000);
  out_.clear();
  RunTo(Ms(20));
  TcpRepr ack = Header(1001, peer_.window);
  ack.seq = SeqNum(kPeerIss + 1001);
  ep().OnSegment(now_, ack);
  Pump();
  EXPECT_EQ(ep().tcb().snd_una, SeqNum(kIss + 1001));
  EXPECT_THAT(out_, IsEmpty());
}

// --- out-of-order data ---------------------------------------------------------

// Adjacent out-of-order segments make one range, reported as one SACK block.
TEST_F(ScriptedPeer, AdjacentOutOfOrderSegmentsMakeOneSackBlock) {
  Open(EndpointConfig(), {.sack = true});
  PeerData(1001, 500);
  PeerData(1501, 500);  // after the range
  ASSERT_FALSE(sacks_out_.empty());
  EXPECT_THAT(sacks_out_.back(), ElementsAre(std::pair<uint32_t, uint32_t>(1001, 2001)));
  PeerData(3001, 500);
  PeerData(2501, 500);  // before the range
  EXPECT_THAT(sacks_out_.back(), ElementsAre(std::pair<uint32_t, uint32_t>(2501, 3501),
                                             std::pair<uint32_t, uint32_t>(1001, 2001)));
}

// At max_ooo_ranges ranges, a segment that would make one more is dropped; one
// that extends a range is still taken.
TEST_F(ScriptedPeer, AtTheRangeLimitOnlySegmentsExtendingARangeAreHeld) {
  TcpConfig c = EndpointConfig();
  c.max_ooo_ranges = 1;
  Open(std::move(c), {.sack = true});
  PeerData(1001, 100);
  PeerData(1101, 100);
  EXPECT_THAT(sacks_out_.back(), ElementsAre(std::pair<uint32_t, uint32_t>(1001, 1201)));
  PeerData(2001, 100);
  EXPECT_THAT(sacks_out_.back(), ElementsAre(std::pair<uint32_t, uint32_t>(1001, 1201)));
}

// RFC 9293 §3.10.7.4, fourth (RFC 5961 §4.2): a SYN in a synchronized state gets a
// challenge ACK and nothing else of it is processed, neither its ACK nor its text.
TEST_F(ScriptedPeer, ASynInEstablishedIsOnlyChallenged) {
  Open(EndpointConfig(), {.sack = true});
  Send(1000);
  RunTo(Ms(20));
  out_.clear();
  static const std::vector<uint8_t> kBytes(100, 'y');
  TcpRepr syn = Header(1001, peer_.window);
  syn.flags = TcpFlags(kSyn | kAck);
  syn.payload = absl::MakeConstSpan(kBytes);
  ep().OnSegment(now_, syn);
  Pump();
  EXPECT_THAT(out_, ElementsAre(O(Ms(20), 1001, 0)));
  EXPECT_EQ(ep().tcb().snd_una, SeqNum(kIss + 1));
  EXPECT_EQ(ep().tcb().rcv_nxt, SeqNum(kPeerIss + 1));
}

// RFC 5961 §5.2: right after the handshake MAX.SND.WND is the SYN-ACK's window, so an
// ACK of the ISS itself (one below SND.UNA) is acceptable, not challenged.
TEST_F(ScriptedPeer, AnAckOfTheIssRightAfterTheHandshakeIsNotChallenged) {
  Open(EndpointConfig(), {.sack = true});
  TcpRepr r = Header(0, peer_.window);
  ep().OnSegment(now_, r);
  Pump();
  EXPECT_THAT(out_, IsEmpty());
}

// Each out-of-order segment polled on its own gets one duplicate ACK, no more.
TEST_F(ScriptedPeer, EachOutOfOrderSegmentPolledAloneGetsOneDuplicateAck) {
  Open(EndpointConfig(), {.sack = true});
  for (uint32_t k = 0; k < 3; ++k) PeerData(1001 + 200 * k, 100);
  EXPECT_EQ(out_.size(), 3u);
}

// RFC 5681 §4.2: a segment that fills a hole is acknowledged at once, also after
// the quick ACKs, when the delayed-ACK timer would otherwise wait.
TEST_F(ScriptedPeer, ASegmentThatFillsAHoleIsAcknowledgedAtOnce) {
  TcpConfig c = EndpointConfig();
  c.quickacks = 0;
  Open(c, {.sack = true});
  PeerData(101, 100);  // out of order: a duplicate ACK at once
  out_.clear();
  RunTo(Ms(20));
  PeerData(1, 100);    // fills the hole
  EXPECT_THAT(out_, ElementsAre(O(Ms(20), 1, 0)));
  EXPECT_EQ(ep().tcb().rcv_nxt, SeqNum(kPeerIss + 201));
}

// A connection reset while a delayed ACK waits has no timer left running.
TEST_F(ScriptedPeer, AResetStopsTheDelayedAckTimer) {
  TcpConfig c = EndpointConfig();
  c.quickacks = 0;
  Open(c, {.sack = true});
  PeerData(1, 100);
  ASSERT_EQ(ep().timers().delayed_ack, absl::UnixEpoch() + Ms(50));
  TcpRepr rst = Header(1, 0);
  rst.flags = TcpFlags(kRst);
  rst.seq = SeqNum(kPeerIss + 101);
  ep().OnSegment(now_, rst);
  ASSERT_EQ(ep().state(), TcpState::kClosed);
  EXPECT_EQ(ep().NextDeadline(), kNever);
}

// --- the sender ----------------------------------------------------------------

// SendLimit() is SND.UNA + min(SND.WND, cwnd).
TEST_F(ScriptedPeer, SendLimitIsSndUnaPlusTheSmallerWindow) {
  Open(EndpointConfig(), {.sack = true, .window = 5000});
  EXPECT_EQ(ep().SendLimit(), SeqNum(kIss + 1 + 5000));
  Ack(1, {}, 60000);
  EXPECT_EQ(ep().SendLimit(), SeqNum(kIss + 1 + 10000));  // cwnd: the initial window
}

// RFC 9293 §3.8.6.2.1 after Close too: while data is in flight, the rest waits for
// a full segment's room rather than going out as a small segment.
TEST_F(ScriptedPeer, AfterCloseTheSenderStillAvoidsSmallSegments) {
  Open(EndpointConfig(), {.sack = true, .window = 1500});
  Send(2000);
  ASSERT_TRUE(ep().Close(now_).ok());
  Pump();
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(10), 1, 1000)));
  RunTo(Ms(20));
  Ack(1001, {}, 1500);
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(20), 1001, 1000, "F.")));
}

// A zero window with nothing left to send needs no probe.
TEST_F(ScriptedPeer, AZeroWindowWithNothingQueuedIsNotProbed) {
  Open(EndpointConfig(), {.sack = true});
  Send(1000);
  RunTo(Ms(20));
  Ack(1001, {}, 0);
  EXPECT_EQ(ep().timers().persist, kNever);
  EXPECT_EQ(ep().NextDeadline(), kNever);
}

// RFC 9293 §3.8.6.1: probes answered with a zero window go on, each wait twice the
// one before (as Linux's tcp_probe_timer), and the answers keep the connection alive.
TEST_F(ScriptedPeer, AnsweredZeroWindowProbesBackOff) {
  TcpConfig c = EndpointConfig();
  c.max_retries = 3;
  Open(c, {.sack = true});
  Send(1000);
  RunTo(Ms(20));
  Ack(1001, {}, 0);
  Send(1000);
  out_.clear();
  const Duration rto = ep().tcb().rto;
  Duration at = Ms(20);
  for (int k = 0; k < 5; ++k) {
    at += rto * (1 << k);
    RunTo(at);
    ASSERT_THAT(out_, ElementsAre(O(at, 1000, 0))) << "probe " << k;
    out_.clear();
    Ack(1001, {}, 0);
  }
  EXPECT_EQ(ep().state(), TcpState::kEstablished);
}

// RFC 8985 §7.2: with one segment in flight the PTO allows for the peer's delayed
// ACK (2 * SRTT + 200 ms), but never exceeds the RTO: the probe, the segment
// itself, goes at the RTO's time instead of a timeout.
TEST_F(ScriptedPeer, ASingleSegmentIsProbedNoLaterThanTheRto) {
  Open(EndpointConfig(), {.sack = true});
  Send(1000);
  EXPECT_EQ(ep().timers().tlp, absl::UnixEpoch() + Ms(220));  // min(10 + 20 + 200, 10 + 210)
  RunTo(Ms(220));
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(10), 1, 1000), O(Ms(220), 1, 1000)));
  EXPECT_EQ(ep().loss_stats().tlp_probes, 1);
  EXPECT_EQ(ep().loss_stats().timeouts, 0);
}

// RFC 8985 §6.2 step 5: only segments sent before the most recently delivered one
// can be deemed lost. Of three segments sent together, the second SACKed: the
// first (below it) is lost a quarter min_RTT later, the third (above it) is not.
TEST_F(ScriptedPeer, RackLeavesASegmentAboveTheNewestDeliveredOfItsSendTime) {
  Open(EndpointConfig(), {.sack = true});
  Send(3000);
  ASSERT_EQ(TakeData().size(), 3u);
  RunTo(Ms(20));
  Ack(1, {{1001, 2001}});
  RunTo(Ms(30));
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(22.5), 1, 1000)));
}

// With DupThresh 0 in the config, 1 is used: an ACK that advances SND.UNA is not a
// duplicate, and one duplicate ACK is enough.
TEST_F(ScriptedPeer, ADupThreshOfZeroCountsAsOne) {
  TcpConfig c = EndpointConfig(TcpProfile::kRfc);
  c.dup_thresh = 0;
  Open(c, {.sack = false});
  Send(3000);
  TakeData();
  RunTo(Ms(20));
  Ack(1001);
  EXPECT_THAT(TakeData(), IsEmpty());
  Ack(1001);
  EXPECT_THAT(TakeData(), ElementsAre(O(Ms(20), 1001, 1000)));
}

// The loss state a timeout starts lasts until everything sent before it is
// acknowledged (RFC 6582's recover, RFC 6675's RecoveryPoint), not until the
// first ACK.
TEST_F(ScriptedPeer, TheLossStateLastsUntilTheRecoveryPoint) {
  TcpConfig c = EndpointConfig();
  c.rack = false;
  c.tlp = false;
  Open(c, {.sack = true});
  Send(3000);
  RunTo(Ms(220));
  ASSERT_EQ(ep().recovery(), TcpEndpoint::Recovery::kLoss);
  RunTo(Ms(230));
  Ack(1001);
  EXPECT_EQ(ep().recovery(), TcpEndpoint::Recovery::kLoss);
  Ack(3001);
  EXPECT_EQ(ep().recovery(), TcpEndpoint::Recovery::kOpen);
}

// A SYN-ACK that answers a retransmitted SYN gives no RTT sample (Karn's rule, and
// for the timestamps too: see AdvanceUna), so the backed-off RTO stays.
TEST_F(ScriptedPeer, AHandshakeAfterASynTimeoutTakesNoRttSample) {
  ep_ = std::make_unique<TcpEndpoint>(EndpointConfig());
  ASSERT_TRUE(ep().Connect(now_).ok());
  Pump();
  RunTo(Ms(1000));  // the SYN again
  ASSERT_EQ(out_.size(), 2u);
  RunTo(Ms(1010));
  TcpRepr synack = Header(1, 65535);
  synack.flags = TcpFlags(kSyn | kAck);
  synack.seq = SeqNum(kPeerIss);
  synack.options.mss = 1000;
  synack.options.timestamps = Timestamps{1, *tsval_out_.back()};
  ep().OnSegment(now_, synack);
  Pump();
  ASSERT_EQ(ep().state(), TcpState::kEstablished);
  EXPECT_EQ(ep().tcb().srtt, absl::ZeroDuration());
  EXPECT_EQ(ep().tcb().rto, absl::Seconds(2));
}

// RFC 9293 §3.10.7.4, seventh: text beyond the window is trimmed at its right
// edge, also in a segment that arrives out of order. A 2000-byte buffer, and a
// segment 1000 bytes ahead of RCV.NXT carrying 1500: only 1000 are kept.
TEST_F(ScriptedPeer, OutOfOrderTextIsTrimmedAtTheWindowsRightEdge) {
  TcpConfig c = EndpointConfig();
  c.recv_buffer = 2000;
  Open(std::move(c), {.sack = true});
  PeerData(1001, 1500);
  ASSERT_FALSE(sacks_out_.empty());
  EXPECT_THAT(sacks_out_.back(), ElementsAre(std::pair<uint32_t, uint32_t>(1001, 2001)));
  PeerData(1, 1000);
  EXPECT_EQ(ep().tcb().rcv_nxt, SeqNum(kPeerIss + 2001));
  EXPECT_EQ(ep().readable(), 2000u);
}

// Segments that carry data, and ACKs older than SND.UNA, are not duplicate ACKs
// (Linux's FLAG_NOT_DUP): three of either start no fast retransmit.
TEST_F(ScriptedPeer, DataSegmentsAndOldAcksAreNotDuplicateAcks) {
  Open(EndpointConfig(TcpProfile::kRfc), {.sack = false});
  Send(1000);
  RunTo(Ms(20));
  Ack(1001);
  Send(3000);
  TakeData();
  RunTo(Ms(30));
  static const std::vector<uint8_t> kBytes(100, 'y');
  for (uint32_t k = 0; k < 3; ++k) {
    TcpRepr d = Header(1001, peer_.window);  // SEG.ACK = SND.UNA, with data
    d.seq = SeqNum(kPeerIss + 1 + 100 * k);
    d.payload = absl::MakeConstSpan(kBytes);
    ep().OnSegment(now_, d);
    Pump();
  }
  for (int k = 0; k < 3; ++k) {
    TcpRepr old = Header(1, peer_.window);  // below SND.UNA
    old.seq = SeqNum(kPeerIss + 301);
    ep().OnSegment(now_, old);
    Pump();
  }
  EXPECT_THAT(TakeData(), IsEmpty());
  EXPECT_EQ(ep().recovery(), TcpEndpoint::Recovery::kOpen);
}

// --- window updates (RFC 9293 §3.8.6.2.2) --------------------------------------

// Receiver SWS avoidance: a read announces the larger window only once it has grown
// by min(half the buffer, one segment) since the last advertisement. With a
// 4000-byte buffer that is one segment (1000 bytes), with 1000 bytes half of it.
TEST_F(ScriptedPeer, AWindowUpdateWaitsUntilTheWindowGrewByASegment) {
  TcpConfig c = EndpointConfig();
  c.recv_buffer = 4000;
  Open(std::move(c), {.sack = true});
  for (uint32_t k = 0; k < 4; ++k) PeerData(1 + 1000 * k, 1000);
  ASSERT_EQ(ep().tcb().rcv_wnd, 0u);
  out_.clear();
  RunTo(Ms(20));
  std::vector<uint8_t> buf(999);
  ASSERT_EQ(ep().Receive(absl::MakeSpan(buf)), 999u);
  Pump();
  EXPECT_THAT(out_, IsEmpty());
  buf.resize(1);
  ASSERT_EQ(ep().Receive(absl::MakeSpan(buf)), 1u);
  Pump();
  EXPECT_THAT(out_, ElementsAre(O(Ms(20), 1, 0)));
  EXPECT_EQ(ep().tcb().rcv_wnd, 1000u);
}

TEST_F(ScriptedPeer, AWindowUpdateOfASmallBufferWaitsForHalfOfIt) {
  TcpConfig c = EndpointConfig();
  c.recv_buffer = 1000;
  Open(std::move(c), {.sack = true});
  PeerData(1, 1000);
  ASSERT_EQ(ep().tcb().rcv_wnd, 0u);
  out_.clear();
  RunTo(Ms(20));
  std::vector<uint8_t> buf(499);
  ASSERT_EQ(ep().Receive(absl::MakeSpan(buf)), 499u);
  Pump();
  EXPECT_THAT(out_, IsEmpty());
  buf.resize(1);
  ASSERT_EQ(ep().Receive(absl::MakeSpan(buf)), 1u);
  Pump();
  EXPECT_THAT(out_, ElementsAre(O(Ms(20), 1, 0)));
  EXPECT_EQ(ep().tcb().rcv_wnd, 500u);
}

// RFC 9293 §3.10.7.3: a RST that acknowledges our SYN refuses the connection, and
// what the application queued meanwhile is flushed, as on any reset.
TEST_F(ScriptedPeer, ARefusedConnectionFlushesTheSendQueue) {
  ep_ = std::make_unique<TcpEndpoint>(EndpointConfig());
  ASSERT_TRUE(ep().Connect(now_).ok());
  Pump();
  Send(3000);
  ASSERT_EQ(ep().send_queue(), 3000u);
  TcpRepr rst = Header(1, 0);
  rst.flags = TcpFlags(kRst | kAck);
  rst.seq = SeqNum(0);
  ep().OnSegment(now_, rst);
  EXPECT_EQ(ep().state(), TcpState::kClosed);
  EXPECT_EQ(ep().close_reason(), CloseReason::kRefused);
  EXPECT_EQ(ep().send_queue(), 0u);
}

// --- the whole transfer --------------------------------------------------------

// 5 MB at 3% random loss of data segments on a 1 ms round trip. Linux repairs each
// loss within a few round trips; so must the endpoint (a 1 s RTO per loss would
// take a minute and more).
TEST(TcpLossRecovery, FiveMegabytesAtThreePercentLossFinishInAFewRoundTripsPerLoss) {
  for (TcpProfile profile : {TcpProfile::kLinux, TcpProfile::kRfc}) {
    TcpConfig a = EndpointConfig(profile), b = EndpointConfig(profile);
    a.mss = b.mss = 1460;
    b.tuple.local_port = kPeerPort;
    b.tuple.remote_port = kPort;
    b.isn = [](const FourTuple&, Instant) { return kPeerIss; };
    Simulator::Options o;
    o.latency = absl::Microseconds(500);
    o.trace = false;
    Simulator sim(a, b, o);
    std::mt19937_64 rng(7);
    int dropped = 0;
    sim.set_filter([&](Side from, const TcpRepr& seg) {
      LinkVerdict v;
      if (from == Side::kA && !seg.payload.empty() &&
          std::uniform_real_distribution<double>(0, 1)(rng) < 0.03) {
        v.drop = true;
        ++dropped;
      }
      return v;
    });
    ASSERT_TRUE(sim.b().Listen(sim.now()).ok());
    ASSERT_TRUE(sim.a().Connect(sim.now()).ok());
    constexpr uint64_t kBytes = 5'000'000;
    sim.StartTransfer(Side::kA, kBytes, true);
    ASSERT_TRUE(sim.RunUntil([&] { return sim.received_ok(Side::kB) == kBytes && sim.b().eof(); },
                             absl::Minutes(10)));
    const auto& st = sim.a().loss_stats();
    std::cout << TcpProfileName(profile) << ": " << absl::FormatDuration(sim.elapsed())
              << " for 5 MB, " << dropped << " segments dropped, " << st.fast_recoveries
              << " recoveries, " << st.timeouts << " timeouts, " << st.tlp_probes
              << " loss probes\n";
    if (profile == TcpProfile::kLinux) {
      // About 150 losses: a handful of 1 ms round trips each, and the rare tail
      // loss a 200 ms RTO or a probe.
      EXPECT_LT(sim.elapsed(), absl::Seconds(2));
    } else {
      // No probes and a 1 s RTO floor: tail losses cost a second each.
      EXPECT_LT(sim.elapsed(), absl::Seconds(30));
    }
  }
}

// The same transfer at 10 % loss, with each congestion control: a loss-based window
// (CUBIC, NewReno) settles at a few segments there and meets the odd timeout, while
// BBR keeps two round trips' worth of what the path delivers in flight, as a Linux
// sender with BBR does.
TEST(TcpLossRecovery, AtTenPercentLossBbrKeepsItsWindowWhereCubicShrinks) {
  std::map<CongestionAlgorithm, Duration> took;
  for (CongestionAlgorithm cc : {CongestionAlgorithm::kCubic, CongestionAlgorithm::kBbr}) {
    TcpConfig a = EndpointConfig(TcpProfile::kLinux), b = EndpointConfig(TcpProfile::kLinux);
    a.mss = b.mss = 1460;
    a.congestion = cc;
    b.tuple.local_port = kPeerPort;
    b.tuple.remote_port = kPort;
    b.isn = [](const FourTuple&, Instant) { return kPeerIss; };
    Simulator::Options o;
    o.latency = absl::Microseconds(500);
    o.trace = false;
    Simulator sim(a, b, o);
    std::mt19937_64 rng(11);
    sim.set_filter([&](Side from, const TcpRepr& seg) {
      LinkVerdict v;
      v.drop = from == Side::kA && !seg.payload.empty() &&
               std::uniform_real_distribution<double>(0, 1)(rng) < 0.10;
      return v;
    });
    ASSERT_TRUE(sim.b().Listen(sim.now()).ok());
    ASSERT_TRUE(sim.a().Connect(sim.now()).ok());
    constexpr uint64_t kBytes = 5'000'000;
    sim.StartTransfer(Side::kA, kBytes, true);
    ASSERT_TRUE(sim.RunUntil([&] { return sim.received_ok(Side::kB) == kBytes && sim.b().eof(); },
                             absl::Minutes(10)));
    EXPECT_EQ(sim.a().congestion().algorithm(), cc);
    took[cc] = sim.elapsed();
    const auto& st = sim.a().loss_stats();
    std::cout << CongestionAlgorithmName(cc) << ": " << absl::FormatDuration(sim.elapsed())
              << " for 5 MB, " << st.fast_recoveries << " recoveries, " << st.timeouts
              << " timeouts\n";
  }
  EXPECT_LT(took[CongestionAlgorithm::kBbr] * 4, took[CongestionAlgorithm::kCubic]);
}

}  // namespace
}  // namespace wrench::stack
