// The fault engine (proxy/fault/fault_engine.h): each action on hand-made datagrams, then
// every action and matcher on simulated connections between two TcpEndpoints, each
// test showing what the fault does to TCP itself; determinism and live rule edits.
#include "proxy/fault/fault_engine.h"

#include <limits>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proxy/fault/rule.h"
#include "proxy/fault/sim_interposer.h"
#include "stack/segment.h"
#include "stack/simulator.h"
#include "stack/tcp_profile.h"

namespace wrench::proxy {
namespace {

using stack::Instant;
using stack::IpAddress;
using stack::Segment;
using stack::Side;
using stack::TcpConfig;
using stack::TcpFlags;
using stack::TcpState;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr uint8_t kSyn = stack::kSyn;
constexpr uint8_t kAck = stack::kAck;
constexpr uint8_t kFin = stack::kFin;
constexpr uint8_t kRst = stack::kRst;
constexpr uint8_t kPsh = stack::kPsh;
constexpr uint16_t kPortA = 40000;
constexpr uint16_t kPortB = 80;
const IpAddress kClient = IpAddress::V4({10, 0, 0, 1});
const IpAddress kServer = IpAddress::V4({10, 0, 0, 2});
const Instant kT0 = absl::UnixEpoch();

// A decision as Offer returned it, with copies of what is valid only until the next Offer.
struct Logged {
  Instant at;
  SegmentMeta meta;
  int rule_id = 0;
  ActionKind action = ActionKind::kDrop;
  SegmentSummary seg;
  std::string detail;
  std::string line;  // ToString(decision)
};

std::function<void(const Decision&)> LogInto(std::vector<Logged>* log) {
  return [log](const Decision& d) {
    log->push_back(Logged{d.at, d.meta, d.rule_id, d.action, d.segment, d.detail, ToString(d)});
  };
}

Rule MustParse(absl::string_view text) {
  absl::StatusOr<Rule> r = ParseRule(text);
  EXPECT_TRUE(r.ok()) << text << ": " << r.status();
  return r.ok() ? *r : Rule{};
}

// =============================================================================
// Part 1: the engine alone, on hand-made datagrams.
// =============================================================================

// A datagram to build by hand: A -> B over IPv4 unless changed.
struct Build {
  uint8_t flags = kAck;
  uint32_t seq = 1000, ack = 5000;
  size_t len = 0;  // payload bytes (0, 1, 2, ... as content)
  uint16_t src_port = kPortA, dst_port = kPortB;
  bool v6 = false;
  std::optional<uint16_t> mss = std::nullopt;
  std::optional<uint8_t> wscale = std::nullopt;

  std::vector<uint8_t> Bytes() const {
    std::vector<uint8_t> payload(len);
    for (size_t i = 0; i < len; ++i) payload[i] = static_cast<uint8_t>(i + 1);
    Segment s;
    if (v6) {
      stack::Ipv6Repr ip;
      ip.src = IpAddress::V6({0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
      ip.dst = IpAddress::V6({0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2});
      s.ip = ip;
    } else {
      stack::Ipv4Repr ip;
      ip.src = kClient;
      ip.dst = kServer;
      s.ip = ip;
    }
    s.tcp.src_port = src_port;
    s.tcp.dst_port = dst_port;
    s.tcp.seq = stack::SeqNum(seq);
    s.tcp.ack = stack::SeqNum(ack);
    s.tcp.flags = TcpFlags(flags);
    s.tcp.window = 1000;
    s.tcp.options.mss = mss;
    s.tcp.options.window_scale = wscale;
    s.tcp.options.timestamps = stack::Timestamps{7, 9};
    s.tcp.payload = payload;
    std::vector<uint8_t> out(s.BufferLen());
    absl::StatusOr<size_t> n = stack::EmitSegment(s, absl::MakeSpan(out));
    EXPECT_TRUE(n.ok()) << n.status();
    out.resize(n.ok() ? *n : 0);
    return out;
  }
};

// The engine reads datagrams through a checked view.
stack::ConstDatagramView View(absl::Span<const uint8_t> bytes) {
  absl::StatusOr<stack::ConstDatagramView> v = stack::ConstDatagramView::Check(bytes);
  EXPECT_TRUE(v.ok()) << v.status();
  return *v;
}

// What left the engine, in order: passes (the caller's own bytes) and Poll output.
struct Out {
  Instant at;
  SegmentMeta meta;
  std::vector<uint8_t> bytes;
  bool passed = false;  // Offer said kPass (bytes: what it said to send)
  // Parsed with checksums checked; the spans point into `bytes`.
  absl::StatusOr<Segment> Parse(bool verify = true) const {
    return stack::ParseSegment(bytes, stack::ParseOptions{.verify_checksums = verify});
  }
  Segment Seg() const {
    absl::StatusOr<Segment> s = Parse();
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : Segment{};
  }
};

class Engine : public ::testing::Test {
 protected:
  Engine() { Reset(42); }

  void Reset(uint64_t seed) {
    engine_ = std::make_unique<FaultEngine>(seed);
    out_.clear();
    log_.clear();
  }

  int Add(absl::string_view text) {
    absl::StatusOr<int> id = engine_->AddRule(MustParse(text));
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? *id : 0;
  }

  // Offers at now_ and polls, as the proxy does after each datagram.
  Verdict Offer(const std::vector<uint8_t>& bytes, Hook hook = Hook::kToServer, uint64_t conn = 1,
                TcpState state = TcpState::kEstablished) {
    SegmentMeta meta{conn, hook, state};
    const Offered o = Record(engine_->Offer(now_, meta, View(bytes)));
    if (o.verdict == Verdict::kPass) {
      out_.push_back(
          Out{now_, meta, std::vector<uint8_t>(o.datagram.begin(), o.datagram.end()), true});
    }
    PollNow();
    return o.verdict;
  }
  Verdict Offer(const Build& b, Hook hook = Hook::kToServer, uint64_t conn = 1,
                TcpState state = TcpState::kEstablished) {
    return Offer(b.Bytes(), hook, conn, state);
  }

  // Keeps every decision the engine returned in log_.
  Offered Record(const Offered& o) {
    for (const Decision& d : o.decisions) LogInto(&log_)(d);
    return o;
  }

  void PollNow() {
    engine_->Poll(now_, [&](const SegmentMeta& meta, absl::Span<const uint8_t> d) {
      out_.push_back(Out{now_, meta, std::vector<uint8_t>(d.begin(), d.end()), false});
    });
  }
  void AdvanceTo(Instant t) {
    now_ = t;
    PollNow();
  }
  // Polls at every deadline up to `t`, so each output carries its own release time.
  void RunUntil(Instant t) {
    while (engine_->NextDeadline() <= t) AdvanceTo(std::max(now_, engine_->NextDeadline()));
    now_ = t;
  }

  std::vector<uint32_t> OutSeqs() const {
    std::vector<uint32_t> seqs;
    for (const Out& o : out_) seqs.push_back(o.Seg().tcp.seq.raw());
    return seqs;
  }
  uint64_t Hits(int id) const {
    for (const auto& r : engine_->Rules()) {
      if (r.id == id) return r.hits;
    }
    return 0;
  }

  std::unique_ptr<FaultEngine> engine_;
  Instant now_ = kT0;
  std::vector<Out> out_;
  std::vector<Logged> log_;
};

// The candidate sets are bitsets of 64 rules a word: rules past the first word, and
// rules on either side of its edge, fire on exactly their own connection and port,
// and removing a rule renumbers the rest without losing one.
TEST_F(Engine, SeventyRulesEachFireOnlyOnTheirOwnConnectionAndPort) {
  std::vector<int> ids;
  for (int k = 1; k <= 70; ++k)
    ids.push_back(Add(absl::StrCat("drop conn=", k, " port=", 1000 + k)));
  const int any_conn = Add("drop port=5555");
  const int any_port = Add("drop conn=300");
  auto fired = [&](uint64_t conn, uint16_t port) {
    log_.clear();
    Verdict v = Offer(Build{.dst_port = port}, Hook::kToServer, conn);
    if (v == Verdict::kPass) return 0;
    EXPECT_EQ(log_.size(), 1u);
    return log_.empty() ? -1 : log_[0].rule_id;
  };
  for (int k : {1, 2, 63, 64, 65, 66, 70}) {
    SCOPED_TRACE(k);
    EXPECT_EQ(fired(k, 1000 + k), ids[k - 1]);
    EXPECT_EQ(fired(k + 1, 1000 + k), 0);  // another connection, the same port
    EXPECT_EQ(fired(k, 999), 0);           // the same connection, another port
  }
  EXPECT_EQ(fired(200, 5555), any_conn);
  EXPECT_EQ(fired(300, 80), any_port);
  EXPECT_EQ(fired(71, 1071), 0);
  EXPECT_EQ(Hits(ids[64]), 1u);
  ASSERT_TRUE(engine_->RemoveRule(ids[0]));
  ASSERT_TRUE(engine_->RemoveRule(ids[64]));
  EXPECT_EQ(engine_->Rules().size(), 70u);
  EXPECT_EQ(fired(1, 1001), 0);
  EXPECT_EQ(fired(65, 1065), 0);
  for (int k : {2, 64, 66, 70}) {
    SCOPED_TRACE(k);
    EXPECT_EQ(fired(k, 1000 + k), ids[k - 1]);
  }
  EXPECT_EQ(fired(200, 5555), any_conn);
  EXPECT_EQ(fired(300, 80), any_port);
}

TEST_F(Engine, PassesWhatNoRuleMatchesWithoutCopyingOrReporting) {
  Add("drop on=from-client flags=SYN");
  Add("delay 1s on=to-server has=FIN");
  EXPECT_EQ(Offer(Build{.flags = kAck | kPsh, .len = 10}), Verdict::kPass);
  EXPECT_EQ(Offer(Build{.flags = kSyn}, Hook::kToServer), Verdict::kPass);  // SYN, other hook
  EXPECT_TRUE(log_.empty());
  EXPECT_EQ(engine_->NextDeadline(), stack::kNever);
  EXPECT_EQ(engine_->held(), 0u);
  ASSERT_EQ(out_.size(), 2u);
  EXPECT_TRUE(out_[0].passed && out_[1].passed);
}

TEST_F(Engine, SocketLegEventsMeetOnlyDelayAndRstRules) {
  EXPECT_FALSE(engine_->WatchesSocketLeg(Hook::kToServer));
  int drop = Add("drop on=to-server has=FIN");
  int blackhole = Add("blackhole on=to-server,from-client flags=SYN");
  EXPECT_FALSE(engine_->WatchesSocketLeg(Hook::kToServer))
      << "drop and blackhole cannot act on a socket";
  int delay = Add("delay 1s on=to-server has=FIN");
  int rst = Add("rst on=from-server len>0");
  EXPECT_TRUE(engine_->WatchesSocketLeg(Hook::kToServer));
  EXPECT_TRUE(engine_->WatchesSocketLeg(Hook::kFromServer));
  EXPECT_FALSE(engine_->WatchesSocketLeg(Hook::kToClient));
  auto offer_socket = [&](const Build& b, Hook hook) {
    std::vector<uint8_t> bytes = b.Bytes();
    SegmentMeta meta{1, hook, TcpState::kEstablished, 0, /*socket=*/true};
    Verdict v = Record(engine_->Offer(now_, meta, View(bytes))).verdict;
    PollNow();
    return v;
  };
  // A real SYN on the client leg starts a blackhole at to-server too...
  EXPECT_EQ(Offer(Build{.flags = kSyn}, Hook::kFromClient), Verdict::kTaken);
  // ...which the socket's events do not fall into; the FIN skips the drop and is delayed.
  EXPECT_EQ(offer_socket(Build{.flags = kFin | kAck}, Hook::kToServer), Verdict::kTaken);
  EXPECT_TRUE(out_.empty());
  RunUntil(kT0 + absl::Seconds(1));
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_TRUE(out_[0].meta.socket);
  EXPECT_EQ(out_[0].Seg().tcp.flags, TcpFlags(kFin | kAck));
  // rst replaces a from-server read with a RST at its sequence number.
  EXPECT_EQ(offer_socket(Build{.flags = kPsh | kAck, .seq = 77, .len = 5}, Hook::kFromServer),
            Verdict::kTaken);
  ASSERT_EQ(out_.size(), 2u);
  EXPECT_TRUE(out_[1].Seg().tcp.flags.has(kRst));
  EXPECT_EQ(out_[1].Seg().tcp.seq.raw(), 77u);
  EXPECT_EQ(Hits(drop), 0u);
  EXPECT_EQ(Hits(blackhole), 1u);
  EXPECT_EQ(Hits(delay), 1u);
  EXPECT_EQ(Hits(rst), 1u);
}

// Whether a super-segment read from the TUN must be split before the engine: only
// when some rule at that hook could match one of its data segments.
TEST_F(Engine, OnlyRulesThatCanMatchDataSegmentsAskForWireSegments) {
  for (int h = 0; h < kHookCount; ++h) EXPECT_FALSE(engine_->MatchesDataOn(static_cast<Hook>(h)));
  // Segments a super-segment never holds: SYN, RST, URG, or no payload.
  Add("drop on=from-client flags=SYN");
  Add("delay 1s on=from-client has=RST");
  Add("drop on=from-client has=URG");
  Add("drop on=from-client len=0");
  Add("drop on=from-client len<1");
  Add("dup on=from-client flags=ACK len=0 nth=3");
  Add("drop on=from-client flags=FIN");  // FIN alone: a data segment carries ACK too
  EXPECT_FALSE(engine_->MatchesDataOn(Hook::kFromClient));
  // Data rules at the other hooks leave this one whole.
  Add("drop on=to-client len>0");
  Add("delay 10ms on=from-server p=0.5");
  EXPECT_FALSE(engine_->MatchesDataOn(Hook::kFromClient));
  EXPECT_TRUE(engine_->MatchesDataOn(Hook::kToClient));
  EXPECT_TRUE(engine_->MatchesDataOn(Hook::kFromServer));
  EXPECT_FALSE(engine_->MatchesDataOn(Hook::kToServer));
  // Segments with ACK and without SYN or RST, whatever their length.
  EXPECT_TRUE(engine_->MatchesAckOn(Hook::kToClient));
  EXPECT_TRUE(engine_->MatchesAckOn(Hook::kFromClient)) << "dup on=from-client flags=ACK len=0";
  EXPECT_FALSE(engine_->MatchesAckOn(Hook::kToServer));
  Add("delay 1s on=to-server flags=SYN+ACK");
  Add("rst on=to-server has=RST");
  EXPECT_FALSE(engine_->MatchesAckOn(Hook::kToServer)) << "a SYN-ACK is the handshake";
  Add("drop on=to-server flags=ACK len=0 nth=2");
  EXPECT_TRUE(engine_->MatchesAckOn(Hook::kToServer));
  EXPECT_FALSE(engine_->MatchesDataOn(Hook::kToServer));
  // Each of these could match a data segment from the client.
  for (const char* rule :
       {"drop on=from-client nth=50", "drop on=from-client len>0 p=0.01",
        "set win=0 on=from-client", "drop on=from-client len<2",
        "drop on=from-client flags=FIN+ACK", "delay 1ms on=from-client has=PSH",
        "drop on=from-client len=1448", "corrupt on=from-client conn=2 idle>1s"}) {
    SCOPED_TRACE(rule);
    const int id = Add(rule);
    EXPECT_TRUE(engine_->MatchesDataOn(Hook::kFromClient));
    EXPECT_TRUE(engine_->RemoveRule(id));
    EXPECT_FALSE(engine_->MatchesDataOn(Hook::kFromClient));
  }
}

TEST_F(Engine, DropIsReportedWithRuleIdTextAndSegment) {
  Add("drop on=from-client flags=SYN");
  int id = Add("drop on=to-client flags=SYN+ACK nth=1");
  Build synack{
      .flags = kSyn | kAck, .seq = 5000, .ack = 1001, .src_port = kPortB, .dst_port = kPortA};
  now_ = kT0 + absl::Milliseconds(10);
  EXPECT_EQ(Offer(synack, Hook::kToClient, 3, TcpState::kSynReceived), Verdict::kTaken);
  EXPECT_TRUE(out_.empty());
  ASSERT_EQ(log_.size(), 1u);
  const Logged& d = log_[0];
  EXPECT_EQ(d.rule_id, id);
  EXPECT_EQ(d.action, ActionKind::kDrop);
  EXPECT_EQ(d.meta.conn, 3u);
  EXPECT_EQ(d.meta.hook, Hook::kToClient);
  EXPECT_EQ(d.seg.flags, TcpFlags(kSyn | kAck));
  EXPECT_EQ(d.seg.seq.raw(), 5000u);
  EXPECT_EQ(d.line,
            "00:00:00.010000 conn 3 to-client SYN-RECEIVED rule 2 (drop on=to-client flags=SYN+ACK "
            "nth=1): SYN+ACK 80>40000 seq 5000 ack 1001 len 0: dropped");
  // nth=1 fires once.
  EXPECT_EQ(Offer(synack, Hook::kToClient, 3, TcpState::kSynReceived), Verdict::kPass);
  EXPECT_EQ(Hits(id), 1u);
}

TEST_F(Engine, DelayReleasesAtTheDueTimeAndKeepsOrderForEqualDueTimes) {
  Add("delay 2s on=to-server");
  for (uint32_t seq : {100, 200, 300}) EXPECT_EQ(Offer(Build{.seq = seq}), Verdict::kTaken);
  EXPECT_EQ(engine_->held(), 3u);
  EXPECT_EQ(engine_->NextDeadline(), kT0 + absl::Seconds(2));
  AdvanceTo(kT0 + absl::Seconds(2) - absl::Nanoseconds(1));
  EXPECT_TRUE(out_.empty());
  AdvanceTo(kT0 + absl::Seconds(2));
  EXPECT_THAT(OutSeqs(), ElementsAre(100, 200, 300));
  EXPECT_EQ(out_[0].bytes, Build{.seq = 100}.Bytes());  // byte for byte what came in
  EXPECT_EQ(engine_->NextDeadline(), stack::kNever);
  EXPECT_EQ(engine_->held(), 0u);
  EXPECT_EQ(log_[0].detail, "delayed 2s");
}

TEST_F(Engine, DelayJitterStaysWithinBoundsAndVaries) {
  Add("delay 100ms~50ms");
  for (uint32_t i = 0; i < 200; ++i) Offer(Build{.seq = i});
  RunUntil(kT0 + absl::Seconds(1));
  ASSERT_EQ(out_.size(), 200u);
  Instant lo = stack::kNever, hi = absl::InfinitePast();
  for (const Out& o : out_) {
    lo = std::min(lo, o.at);
    hi = std::max(hi, o.at);
  }
  EXPECT_GE(lo, kT0 + absl::Milliseconds(50));
  EXPECT_LE(hi, kT0 + absl::Milliseconds(150));
  EXPECT_GT(hi - lo, absl::Milliseconds(80));  // it really spreads
}

TEST_F(Engine, DupPassesTheSegmentAndQueuesItsCopies) {
  Add("dup 2 on=to-server has=SYN");
  std::vector<uint8_t> syn = Build{.flags = kSyn}.Bytes();
  EXPECT_EQ(Offer(syn), Verdict::kPass);
  ASSERT_EQ(out_.size(), 3u);
  EXPECT_TRUE(out_[0].passed);
  EXPECT_EQ(out_[1].bytes, syn);
  EXPECT_EQ(out_[2].bytes, syn);
  EXPECT_EQ(log_[0].detail, "original + 2 copies");
}

TEST_F(Engine, ReorderReleasesTheHeldSegmentRightAfterTheNextOne) {
  Add("reorder on=to-server len>0 conn=1 nth=1");
  EXPECT_EQ(Offer(Build{.seq = 1, .len = 10}), Verdict::kTaken);
  // Another connection and another hook do not release it.
  EXPECT_EQ(Offer(Build{.seq = 900, .len = 10}, Hook::kToServer, 2), Verdict::kPass);
  EXPECT_EQ(Offer(Build{.seq = 800, .len = 10}, Hook::kFromClient, 1), Verdict::kPass);
  EXPECT_EQ(engine_->held(), 1u);
  EXPECT_EQ(Offer(Build{.seq = 11, .len = 10}), Verdict::kPass);
  EXPECT_THAT(OutSeqs(), ElementsAre(900, 800, 11, 1));
  EXPECT_EQ(engine_->NextDeadline(), stack::kNever);  // its timeout is cancelled
}

TEST_F(Engine, ReorderReleasesALoneSegmentAfterTheTimeout) {
  Add("reorder on=to-server");
  EXPECT_EQ(Offer(Build{.seq = 1, .len = 10}), Verdict::kTaken);
  EXPECT_EQ(engine_->NextDeadline(), kT0 + absl::Milliseconds(500));
  EXPECT_EQ(log_[0].detail, "held until the next segment (at most 500ms)");
  RunUntil(kT0 + absl::Seconds(1));
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].at, kT0 + absl::Milliseconds(500));
}

TEST_F(Engine, ReorderOfConsecutiveSegmentsSwapsThemInPairs) {
  Add("reorder on=to-server");
  for (uint32_t seq : {1, 2, 3, 4, 5}) Offer(Build{.seq = seq});
  RunUntil(kT0 + absl::Seconds(1));
  EXPECT_THAT(OutSeqs(), ElementsAre(2, 1, 4, 3, 5));
}

TEST_F(Engine, RstReplacesTheSegmentWithAValidRstInItsSequenceSpace) {
  Add("rst on=to-client has=FIN");
  Build fin{.flags = kFin | kAck | kPsh,
            .seq = 7000,
            .ack = 1234,
            .len = 20,
            .src_port = kPortB,
            .dst_port = kPortA};
  EXPECT_EQ(Offer(fin, Hook::kToClient), Verdict::kTaken);
  ASSERT_EQ(out_.size(), 1u);
  Segment rst = out_[0].Seg();  // checksums verified
  EXPECT_EQ(rst.tcp.flags, TcpFlags(kRst | kAck));
  EXPECT_EQ(rst.tcp.seq.raw(), 7000u);
  EXPECT_EQ(rst.tcp.ack.raw(), 1234u);
  EXPECT_EQ(rst.tcp.src_port, kPortB);
  EXPECT_EQ(rst.tcp.dst_port, kPortA);
  EXPECT_EQ(rst.tcp.window, 0);
  EXPECT_TRUE(rst.tcp.payload.empty());
  EXPECT_EQ(rst.tcp.options, stack::TcpOptions{});
  EXPECT_EQ(rst.src(), kClient);  // the addresses of the segment it replaced
  EXPECT_EQ(log_[0].detail, "replaced by RST seq 7000 ack 1234");
  // Without ACK, none in the RST either.
  Add("rst flags=FIN");
  Offer(Build{.flags = kFin, .seq = 42}, Hook::kToServer);
  ASSERT_EQ(out_.size(), 2u);
  EXPECT_EQ(out_[1].Seg().tcp.flags, TcpFlags(kRst));
  EXPECT_EQ(out_[1].Seg().tcp.seq.raw(), 42u);
}

struct FieldCase {
  const char* rule;
  Build in;
  const char* detail;
  std::function<void(const Segment&)> check;
};

TEST_F(Engine, SetAndAddChangeEachFieldInPlaceAndKeepTheChecksumsRight) {
  const std::vector<FieldCase> cases = {
      {"set seq=77",
       {},
       "seq 1000 -> 77",
       [](const Segment& s) { EXPECT_EQ(s.tcp.seq.raw(), 77u); }},
      {"add seq=-1001",
       {},
       "seq 1000 -> 4294967295",
       [](const Segment& s) { EXPECT_EQ(s.tcp.seq.raw(), 0xffffffffu); }},
      {"add ack=1",
       {},
       "ack 5000 -> 5001",
       [](const Segment& s) { EXPECT_EQ(s.tcp.ack.raw(), 5001u); }},
      {"set win=0", {}, "win 1000 -> 0", [](const Segment& s) { EXPECT_EQ(s.tcp.window, 0); }},
      {"add win=65000",
       {},
       "win 1000 -> 464",
       [](const Segment& s) { EXPECT_EQ(s.tcp.window, 464); }},
      {"set urg=9", {}, "urg 0 -> 9", [](const Segment& s) { EXPECT_EQ(s.tcp.urgent, 9); }},
      {"set flags=FIN+ACK",
       {},
       "flags ACK -> FIN+ACK",
       [](const Segment& s) { EXPECT_EQ(s.tcp.flags, TcpFlags(kFin | kAck)); }},
      {"set ttl=1", {}, "ttl 64 -> 1", [](const Segment& s) { EXPECT_EQ(s.ttl(), 1); }},
      {"add ttl=200", {}, "ttl 64 -> 8", [](const Segment& s) { EXPECT_EQ(s.ttl(), 8); }},
      {"set mss=536",
       {.flags = kSyn, .mss = 1460},
       "mss 1460 -> 536",
       [](const Segment& s) { EXPECT_EQ(s.tcp.options.mss, 536); }},
      {"add wscale=2",
       {.flags = kSyn, .wscale = 7},
       "wscale 7 -> 9",
       [](const Segment& s) { EXPECT_EQ(s.tcp.options.window_scale, 9); }},
      {"add urg=-1",
       {},
       "urg 0 -> 65535",
       [](const Segment& s) { EXPECT_EQ(s.tcp.urgent, 65535); }},
      {"add ttl=-1",
       {.v6 = true},
       "ttl 64 -> 63",
       [](const Segment& s) { EXPECT_EQ(s.ttl(), 63); }},
  };
  for (const FieldCase& c : cases) {
    SCOPED_TRACE(c.rule);
    Reset(1);
    Add(c.rule);
    Build in = c.in;
    in.len = 5;
    EXPECT_EQ(Offer(in), Verdict::kPass);  // changed, and on at once
    ASSERT_EQ(out_.size(), 1u);
    Segment s = out_[0].Seg();  // checksums kept right: parses with verification
    c.check(s);
    EXPECT_EQ(s.tcp.payload.size(), 5u);
    EXPECT_EQ(s.tcp.options.timestamps, (stack::Timestamps{7, 9}));
    ASSERT_EQ(log_.size(), 1u);
    EXPECT_EQ(log_[0].detail, c.detail);
  }
}

TEST_F(Engine, MssAndWscaleWithoutTheOptionChangeNothing) {
  Add("set mss=100");
  Add("add wscale=2");
  EXPECT_EQ(Offer(Build{}), Verdict::kPass);
  ASSERT_EQ(log_.size(), 2u);
  EXPECT_EQ(log_[0].detail, "no MSS option: unchanged");
  EXPECT_EQ(log_[1].detail, "no window scale option: unchanged");
}

TEST_F(Engine, CorruptPayloadInvertsOneByteAndKeepsTheOldChecksum) {
  Add("corrupt payload len>0");
  std::vector<uint8_t> in = Build{.len = 100}.Bytes();
  EXPECT_EQ(Offer(in), Verdict::kPass);  // changed, and on at once
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_THAT(out_[0].Parse().status().message(), HasSubstr("checksum"));
  ASSERT_EQ(out_[0].bytes.size(), in.size());
  int differing = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != out_[0].bytes[i]) {
      ++differing;
      EXPECT_EQ(in[i] ^ 0xff, out_[0].bytes[i]);
      EXPECT_GE(i, in.size() - 100);  // in the payload
    }
  }
  EXPECT_EQ(differing, 1);
  EXPECT_THAT(log_[0].detail, HasSubstr("inverted, checksum kept"));
  // No payload, nothing to corrupt.
  EXPECT_EQ(Offer(Build{}), Verdict::kPass);
}

TEST_F(Engine, CorruptChecksumFailsVerificationOnly) {
  Add("corrupt checksum flags=SYN");
  std::vector<uint8_t> in = Build{.flags = kSyn, .mss = 1460}.Bytes();
  EXPECT_EQ(Offer(in), Verdict::kPass);  // changed, and on at once
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_FALSE(out_[0].Parse().ok());
  absl::StatusOr<Segment> unchecked = out_[0].Parse(/*verify=*/false);
  ASSERT_TRUE(unchecked.ok());
  EXPECT_EQ(unchecked->tcp, stack::ParseSegment(in)->tcp);
}

TEST_F(Engine, MutationsStackWithTheDecidingRuleAfterThem) {
  int add = Add("add seq=1 on=to-server");
  int delay = Add("delay 1s on=to-server");
  int never = Add("drop on=to-server");  // after a deciding rule: never reached
  EXPECT_EQ(Offer(Build{.seq = 1000}), Verdict::kTaken);
  RunUntil(kT0 + absl::Seconds(2));
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].at, kT0 + absl::Seconds(1));
  EXPECT_EQ(out_[0].Seg().tcp.seq.raw(), 1001u);
  ASSERT_EQ(log_.size(), 2u);
  EXPECT_EQ(log_[0].rule_id, add);
  EXPECT_EQ(log_[1].rule_id, delay);
  EXPECT_EQ(log_[1].seg.seq.raw(), 1001u);  // the delay saw the changed segment
  EXPECT_EQ(Hits(never), 0u);
}

TEST_F(Engine, LaterRulesMatchTheChangedFlags) {
  Add("set flags=FIN+ACK flags=ACK len=0");
  int drop = Add("drop flags=FIN+ACK");
  EXPECT_EQ(Offer(Build{.flags = kAck}), Verdict::kTaken);
  EXPECT_TRUE(out_.empty());
  EXPECT_EQ(Hits(drop), 1u);
}

TEST_F(Engine, IdleMatchesTheFirstSegmentAfterTheLegWasSilentLongEnough) {
  const int rst = Add("rst on=from-client idle>1s");
  EXPECT_EQ(Offer(Build{.seq = 1}, Hook::kFromClient), Verdict::kPass);  // the leg's first
  AdvanceTo(kT0 + absl::Milliseconds(1000));
  EXPECT_EQ(Offer(Build{.seq = 2}, Hook::kFromClient), Verdict::kPass);  // exactly 1s: not more
  AdvanceTo(kT0 + absl::Milliseconds(2001));
  EXPECT_EQ(Offer(Build{.seq = 3}, Hook::kFromClient), Verdict::kTaken);  // 1.001s of silence
  EXPECT_EQ(Offer(Build{.seq = 4}, Hook::kFromClient), Verdict::kPass);   // right after it
  EXPECT_EQ(Hits(rst), 1u);
  ASSERT_EQ(log_.size(), 1u);
  EXPECT_EQ(log_[0].at, kT0 + absl::Milliseconds(2001));
}

TEST_F(Engine, IdleCountsSegmentsOfBothDirectionsOfTheSameLegOnly) {
  const int drop = Add("drop on=from-client idle>1s");
  Offer(Build{.seq = 1}, Hook::kFromClient);
  // The client's leg carries a segment toward the client: the leg is not idle.
  AdvanceTo(kT0 + absl::Milliseconds(900));
  Offer(Build{.seq = 100}, Hook::kToClient);
  AdvanceTo(kT0 + absl::Milliseconds(1800));
  EXPECT_EQ(Offer(Build{.seq = 2}, Hook::kFromClient), Verdict::kPass);
  // The server's leg is busy, but the client's leg has been silent for 1.5s.
  for (int ms = 2000; ms <= 3200; ms += 400) {
    AdvanceTo(kT0 + absl::Milliseconds(ms));
    Offer(Build{.seq = 200}, Hook::kFromServer);
    Offer(Build{.seq = 200}, Hook::kToServer);
  }
  AdvanceTo(kT0 + absl::Milliseconds(3300));
  EXPECT_EQ(Offer(Build{.seq = 3}, Hook::kFromClient), Verdict::kTaken);
  // Another connection's legs are its own.
  EXPECT_EQ(Offer(Build{.seq = 9}, Hook::kFromClient, 2), Verdict::kPass);
  EXPECT_EQ(Hits(drop), 1u);
}

TEST_F(Engine, IdleSeesSegmentsOtherRulesDropOrBlackhole) {
  Add("drop on=to-client len>0");
  const int rst = Add("rst on=from-client idle>500ms");
  Offer(Build{.seq = 1}, Hook::kFromClient);
  for (int ms = 400; ms <= 1600; ms += 400) {  // dropped, but carried to wrench
    AdvanceTo(kT0 + absl::Milliseconds(ms));
    EXPECT_EQ(Offer(Build{.seq = 100, .len = 10}, Hook::kToClient), Verdict::kTaken);
  }
  AdvanceTo(kT0 + absl::Milliseconds(1700));
  EXPECT_EQ(Offer(Build{.seq = 2}, Hook::kFromClient), Verdict::kPass);
  EXPECT_EQ(Hits(rst), 0u);
}

TEST_F(Engine, IdleWorksWithCountersAndBlackhole) {
  const int bh = Add("blackhole on=from-client,to-client idle>2s count=1");
  Offer(Build{.seq = 1}, Hook::kFromClient);
  AdvanceTo(kT0 + absl::Seconds(3));
  EXPECT_EQ(Offer(Build{.seq = 2}, Hook::kToClient), Verdict::kTaken);
  // Blackholed from then on, idle or not.
  EXPECT_EQ(Offer(Build{.seq = 3}, Hook::kFromClient), Verdict::kTaken);
  EXPECT_EQ(Offer(Build{.seq = 4}, Hook::kToClient), Verdict::kTaken);
  EXPECT_EQ(Offer(Build{.seq = 5}, Hook::kToServer), Verdict::kPass);
  EXPECT_EQ(Hits(bh), 3u);
}

TEST_F(Engine, AnIdleRuleOnASocketLegWatchesBothDirectionsOfThatLeg) {
  Add("rst on=from-server idle>1s");
  EXPECT_TRUE(engine_->WatchesSocketLeg(Hook::kFromServer));
  EXPECT_TRUE(engine_->WatchesSocketLeg(Hook::kToServer));  // its events stamp the leg too
  EXPECT_FALSE(engine_->WatchesSocketLeg(Hook::kToClient));
  Add("delay 1s on=to-client idle>1s");
  EXPECT_TRUE(engine_->WatchesSocketLeg(Hook::kFromClient));
}

TEST_F(Engine, ForgettingAConnectionForgetsItsIdleTime) {
  Add("drop idle>1s");
  Offer(Build{.seq = 1}, Hook::kFromClient);
  engine_->ForgetConnection(1);
  AdvanceTo(kT0 + absl::Seconds(5));
  EXPECT_EQ(Offer(Build{.seq = 2}, Hook::kFromClient), Verdict::kPass);  // a first segment again
}

TEST_F(Engine, ADecidingRuleHidesTheSegmentFromLaterRulesCounters) {
  Add("drop nth=1");
  int dup = Add("dup 1 nth=1");
  Offer(Build{.seq = 1});  // dropped by rule 1; rule 2 never sees it
  Offer(Build{.seq = 2});  // rule 2's first
  EXPECT_EQ(Hits(dup), 1u);
  EXPECT_THAT(OutSeqs(), ElementsAre(2, 2));
}

// Which of ten segments a rule fires on, at one connection and hook.
std::vector<int> FiringsOf(absl::string_view rule) {
  FaultEngine engine(1);
  EXPECT_TRUE(engine.AddRule(MustParse(rule)).ok());
  std::vector<int> fired;
  for (int k = 1; k <= 10; ++k) {
    std::vector<uint8_t> bytes = Build{.seq = uint32_t(k)}.Bytes();
    if (engine.Offer(kT0, {1, Hook::kToServer, TcpState::kEstablished}, View(bytes)).verdict ==
        Verdict::kTaken) {
      fired.push_back(k);
    }
  }
  return fired;
}

TEST(EngineCounting, NthEveryAfterCountAsTheRuleHeaderSays) {
  EXPECT_THAT(FiringsOf("drop nth=4"), ElementsAre(4));
  EXPECT_THAT(FiringsOf("drop every=3"), ElementsAre(3, 6, 9));
  EXPECT_THAT(FiringsOf("drop after=7"), ElementsAre(8, 9, 10));
  EXPECT_THAT(FiringsOf("drop after=2 every=3"), ElementsAre(5, 8));
  EXPECT_THAT(FiringsOf("drop every=2 count=2"), ElementsAre(2, 4));
  EXPECT_THAT(FiringsOf("drop after=5 count=1"), ElementsAre(6));
  EXPECT_THAT(FiringsOf("drop count=3"), ElementsAre(1, 2, 3));
}

TEST_F(Engine, AScopedRuleSeesOnlySegmentsOfItsScope) {
  absl::StatusOr<int> scoped = engine_->AddRule(MustParse("drop len>0"), /*scope=*/7);
  ASSERT_TRUE(scoped.ok());
  std::vector<uint8_t> bytes = Build{.len = 5}.Bytes();
  auto offer = [&](uint64_t scope) {
    return Record(engine_->Offer(now_, {1, Hook::kToServer, TcpState::kEstablished, scope},
                                 View(bytes)))
        .verdict;
  };
  EXPECT_EQ(offer(0), Verdict::kPass);
  EXPECT_EQ(offer(8), Verdict::kPass);
  EXPECT_EQ(offer(7), Verdict::kTaken);
  EXPECT_EQ(engine_->Rules()[0].scope, 7u);
}

TEST_F(Engine, LenComparesThePayloadLength) {
  int eq = Add("dup 1 len=10");
  int lt = Add("dup 2 len<10");
  int gt = Add("dup 3 len>10");
  for (size_t len : {0, 9, 10, 11, 1448}) Offer(Build{.len = len});
  EXPECT_EQ(Hits(eq), 1u);
  EXPECT_EQ(Hits(lt), 2u);
  EXPECT_EQ(Hits(gt), 2u);
}

TEST_F(Engine, CountingIsPerConnectionAndHook) {
  Add("drop nth=2");
  std::vector<std::pair<uint64_t, Hook>> order = {
      {1, Hook::kToServer}, {2, Hook::kToServer},   {1, Hook::kFromClient}, {1, Hook::kToServer},
      {2, Hook::kToServer}, {1, Hook::kFromClient}, {1, Hook::kToServer}};
  std::vector<Verdict> verdicts;
  for (auto [conn, hook] : order) verdicts.push_back(Offer(Build{}, hook, conn));
  EXPECT_THAT(verdicts, ElementsAre(Verdict::kPass, Verdict::kPass, Verdict::kPass, Verdict::kTaken,
                                    Verdict::kTaken, Verdict::kTaken, Verdict::kPass));
}

TEST_F(Engine, CountersMoveOnlyForSegmentsTheOtherMatchersAccept) {
  int id = Add("drop len>0 nth=2");
  Offer(Build{.len = 1});
  Offer(Build{});  // len 0: not counted
  Offer(Build{});
  EXPECT_EQ(Hits(id), 0u);
  EXPECT_EQ(Offer(Build{.len = 1}), Verdict::kTaken);
}

TEST(EngineRandom, ProbabilityDrawsOnlyWhenTheOtherMatchersHold) {
  // Engine 2 has an extra p= rule that never matches; if it drew, the shared
  // generator would shift and the decisions of the other rule would change.
  auto run = [](bool with_idle_rule) {
    FaultEngine engine(99);
    if (with_idle_rule) {
      EXPECT_TRUE(engine.AddRule(MustParse("dup 1 port=9 p=0.5")).ok());
    }
    EXPECT_TRUE(engine.AddRule(MustParse("drop p=0.5")).ok());
    std::string fate;
    for (uint32_t k = 0; k < 64; ++k) {
      std::vector<uint8_t> bytes = Build{.seq = k}.Bytes();
      fate +=
          engine.Offer(kT0, {1, Hook::kToServer, TcpState::kEstablished}, View(bytes)).verdict ==
                  Verdict::kPass
              ? '.'
              : 'x';
    }
    return fate;
  };
  std::string plain = run(false);
  EXPECT_EQ(run(true), plain);
  EXPECT_NE(plain.find('x'), std::string::npos);
  EXPECT_NE(plain.find('.'), std::string::npos);
}

TEST_F(Engine, BlackholeDropsEveryLaterSegmentOfTheConnectionAtItsHooks) {
  int id = Add("blackhole on=from-server,to-client after=1");
  Build b{.src_port = kPortB, .dst_port = kPortA};
  EXPECT_EQ(Offer(b, Hook::kFromServer), Verdict::kPass);   // 1st: let through
  EXPECT_EQ(Offer(b, Hook::kFromServer), Verdict::kTaken);  // 2nd: the blackhole opens
  EXPECT_EQ(Offer(Build{.flags = kRst}, Hook::kToClient),
            Verdict::kTaken);                                 // any segment, other hook of the rule
  EXPECT_EQ(Offer(b, Hook::kToServer), Verdict::kPass);       // not one of its hooks
  EXPECT_EQ(Offer(b, Hook::kFromServer, 2), Verdict::kPass);  // another connection
  EXPECT_EQ(Hits(id), 2u);
  EXPECT_THAT(log_.back().detail, "dropped: connection blackholed");
  EXPECT_TRUE(engine_->RemoveRule(id));  // lifts it
  EXPECT_EQ(Offer(b, Hook::kFromServer), Verdict::kPass);
}

TEST_F(Engine, RulesHaveStableIdsAndCanBeRemovedWhileSegmentsAreHeld) {
  EXPECT_EQ(Add("drop flags=SYN"), 1);
  EXPECT_EQ(Add("delay 1s len>0"), 2);
  EXPECT_EQ(Add("dup 1 flags=FIN"), 3);
  Offer(Build{.len = 3});
  EXPECT_TRUE(engine_->RemoveRule(2));
  EXPECT_FALSE(engine_->RemoveRule(2));
  EXPECT_EQ(Add("drop len>0"), 4);
  auto rules = engine_->Rules();
  ASSERT_EQ(rules.size(), 3u);
  EXPECT_EQ(rules[0].id, 1);
  EXPECT_EQ(rules[1].id, 3);
  EXPECT_EQ(rules[2].id, 4);
  EXPECT_EQ(rules[2].text, "drop len>0");
  // What the removed rule held is on the wire: it still comes out.
  RunUntil(kT0 + absl::Seconds(1));
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].at, kT0 + absl::Seconds(1));
}

TEST_F(Engine, AddRuleRefusesAnInvalidRule) {
  Rule r;
  r.action = DupAction{0};
  absl::StatusOr<int> id = engine_->AddRule(r);
  EXPECT_FALSE(id.ok());
  EXPECT_TRUE(engine_->Rules().empty());
}

TEST_F(Engine, ForgetConnectionFreesItsHeldSegmentsAndCounters) {
  Add("delay 1s len>0");
  Add("drop len=0 nth=1");
  Offer(Build{.seq = 1, .len = 1}, Hook::kToServer, 1);
  Offer(Build{.seq = 2, .len = 1}, Hook::kToServer, 2);
  EXPECT_EQ(Offer(Build{}, Hook::kToServer, 1), Verdict::kTaken);
  engine_->ForgetConnection(1);
  EXPECT_EQ(engine_->held(), 1u);
  EXPECT_EQ(Offer(Build{}, Hook::kToServer, 1), Verdict::kTaken);  // counting starts afresh
  RunUntil(kT0 + absl::Seconds(2));
  EXPECT_THAT(OutSeqs(), ElementsAre(2));
}

TEST_F(Engine, PollOutputMayBeOfferedAtTheNextHookFromTheCallback) {
  Add("delay 10ms on=from-client");
  Add("dup 1 on=to-server");
  Offer(Build{.seq = 5}, Hook::kFromClient);
  now_ = kT0 + absl::Milliseconds(10);
  // As a proxy chains hooks: what leaves from-client is offered at to-server; what
  // that releases at once (the copy) comes out of the same Poll.
  std::vector<Hook> delivered;
  engine_->Poll(now_, [&](const SegmentMeta& meta, absl::Span<const uint8_t> d) {
    if (meta.hook == Hook::kToServer) {
      delivered.push_back(meta.hook);
      return;
    }
    std::vector<uint8_t> copy(d.begin(), d.end());
    if (Record(engine_->Offer(now_, {1, Hook::kToServer, TcpState::kEstablished}, View(copy)))
            .verdict == Verdict::kPass) {
      delivered.push_back(Hook::kFromClient);
    }
  });
  EXPECT_THAT(delivered, ElementsAre(Hook::kFromClient, Hook::kToServer));
  EXPECT_EQ(engine_->held(), 0u);
}

TEST(EngineRandom, ADelayWithoutJitterDrawsNothing) {
  // Engine 2 also delays the segments of another port by a fixed time; drawing for
  // them would shift the shared generator and change the other rule's decisions.
  auto run = [](bool with_delay_rule) {
    FaultEngine engine(7);
    if (with_delay_rule) {
      EXPECT_TRUE(engine.AddRule(MustParse("delay 10ms port=9")).ok());
    }
    EXPECT_TRUE(engine.AddRule(MustParse("drop port=80 p=0.5")).ok());
    std::string fate;
    for (uint32_t k = 0; k < 64; ++k) {
      std::vector<uint8_t> other = Build{.seq = k, .dst_port = 9}.Bytes();
      Verdict delayed =
          engine.Offer(kT0, {1, Hook::kToServer, TcpState::kEstablished}, View(other)).verdict;
      EXPECT_EQ(delayed, with_delay_rule ? Verdict::kTaken : Verdict::kPass);
      std::vector<uint8_t> bytes = Build{.seq = k}.Bytes();
      fate +=
          engine.Offer(kT0, {1, Hook::kToServer, TcpState::kEstablished}, View(bytes)).verdict ==
                  Verdict::kPass
              ? '.'
              : 'x';
    }
    return fate;
  };
  std::string plain = run(false);
  EXPECT_EQ(run(true), plain);
  EXPECT_NE(plain.find('x'), std::string::npos);
  EXPECT_NE(plain.find('.'), std::string::npos);
}

TEST_F(Engine, DupOfOneSaysCopyInTheSingular) {
  Add("dup 1 on=to-server");
  std::vector<uint8_t> in = Build{.len = 3}.Bytes();
  EXPECT_EQ(Offer(in), Verdict::kPass);
  ASSERT_EQ(out_.size(), 2u);
  EXPECT_EQ(out_[1].bytes, in);
  EXPECT_FALSE(out_[1].passed);
  EXPECT_EQ(log_[0].detail, "original + 1 copy");
  EXPECT_EQ(engine_->held(), 0u);
}

TEST_F(Engine, RstOfASegmentWithoutAckNamesOnlyItsSeq) {
  Add("rst flags=SYN");
  EXPECT_EQ(Offer(Build{.flags = kSyn, .seq = 42}), Verdict::kTaken);
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].Seg().tcp.flags, TcpFlags(kRst));
  EXPECT_EQ(out_[0].Seg().tcp.ack.raw(), 0u);
  EXPECT_EQ(log_[0].detail, "replaced by RST seq 42");
  EXPECT_EQ(
      log_[0].line,
      "00:00:00.000000 conn 1 to-server ESTABLISHED rule 1 (rst flags=SYN): SYN 40000>80 seq 42 "
      "len 0: replaced by RST seq 42");
}

TEST_F(Engine, CorruptPayloadNamesTheByteItInverted) {
  Add("corrupt payload");
  for (uint32_t k = 0; k < 20; ++k) {
    SCOPED_TRACE(k);
    out_.clear();
    log_.clear();
    std::vector<uint8_t> in = Build{.seq = k, .len = 30}.Bytes();
    EXPECT_EQ(Offer(in), Verdict::kPass);
    ASSERT_EQ(out_.size(), 1u);
    ASSERT_EQ(out_[0].bytes.size(), in.size());
    const size_t payload_at = in.size() - 30;
    std::vector<size_t> differing;
    for (size_t i = 0; i < in.size(); ++i) {
      if (in[i] != out_[0].bytes[i]) differing.push_back(i);
    }
    ASSERT_EQ(differing.size(), 1u);
    ASSERT_GE(differing[0], payload_at);
    EXPECT_EQ(log_[0].detail,
              absl::StrCat("payload byte ", differing[0] - payload_at, " inverted, checksum kept"));
  }
  // No payload: the offered bytes go on as they were, and the decision says why.
  out_.clear();
  log_.clear();
  std::vector<uint8_t> empty = Build{}.Bytes();
  EXPECT_EQ(Offer(empty), Verdict::kPass);
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].bytes, empty);
  EXPECT_EQ(log_[0].detail, "no payload: unchanged");
}

TEST_F(Engine, CorruptChecksumInvertsTheLowByteAfterEveryFieldChange) {
  Add("add seq=1");
  Add("corrupt checksum");
  Add("add ack=1");
  std::vector<uint8_t> in = Build{.seq = 1000, .ack = 5000}.Bytes();
  EXPECT_EQ(Offer(in), Verdict::kPass);
  ASSERT_EQ(out_.size(), 1u);
  ASSERT_EQ(log_.size(), 3u);
  EXPECT_EQ(log_[1].detail, "TCP checksum low byte inverted");
  // Inverting the low byte back gives a segment with both changes and a right checksum.
  std::vector<uint8_t> fixed = out_[0].bytes;
  const size_t tcp_at = 20;  // IPv4 without options
  fixed[tcp_at + 17] ^= 0xff;
  absl::StatusOr<Segment> s = stack::ParseSegment(fixed);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->tcp.seq.raw(), 1001u);
  EXPECT_EQ(s->tcp.ack.raw(), 5001u);
  EXPECT_FALSE(out_[0].Parse().ok());
}

TEST_F(Engine, RemovingOneBlackholeRuleLeavesAnothersBlackholeInPlace) {
  const int first = Add("blackhole on=to-server flags=SYN");
  const int second = Add("blackhole on=to-server,to-client has=FIN");
  EXPECT_EQ(Offer(Build{.flags = kSyn}), Verdict::kTaken);
  EXPECT_EQ(Offer(Build{.flags = kFin | kAck}, Hook::kToClient), Verdict::kTaken);
  EXPECT_EQ(Offer(Build{}), Verdict::kTaken);
  EXPECT_EQ(Hits(first), 2u);  // the first blackhole in place decides
  EXPECT_TRUE(engine_->RemoveRule(first));
  EXPECT_EQ(Offer(Build{}), Verdict::kTaken);
  EXPECT_EQ(Offer(Build{}, Hook::kToClient), Verdict::kTaken);
  EXPECT_EQ(Offer(Build{}, Hook::kFromClient), Verdict::kPass);
  EXPECT_EQ(Hits(second), 3u);
  // Forgetting the connection lifts the rest; its number starts afresh.
  engine_->ForgetConnection(1);
  EXPECT_EQ(Offer(Build{}), Verdict::kPass);
  EXPECT_EQ(Offer(Build{}, Hook::kToClient), Verdict::kPass);
  EXPECT_EQ(Hits(second), 3u);
}

TEST_F(Engine, ABlackholeHoldsOnlyAtItsOwnHooks) {
  const int id = Add("blackhole on=from-client,to-server flags=SYN");
  EXPECT_EQ(Offer(Build{.flags = kSyn}, Hook::kFromClient), Verdict::kTaken);
  EXPECT_EQ(Offer(Build{}, Hook::kFromClient), Verdict::kTaken);
  EXPECT_EQ(Offer(Build{}, Hook::kToServer), Verdict::kTaken);
  EXPECT_EQ(Offer(Build{}, Hook::kFromServer), Verdict::kPass);
  EXPECT_EQ(Offer(Build{}, Hook::kToClient), Verdict::kPass);
  EXPECT_EQ(Hits(id), 3u);
  EXPECT_EQ(log_.back().rule_id, id);
  EXPECT_EQ(log_.back().action, ActionKind::kBlackhole);
}

TEST_F(Engine, ForgettingAConnectionLeavesOtherConnectionsReorderHolds) {
  Add("reorder nth=1");
  // Connection 1 held one segment and released it: nothing of it is held now.
  EXPECT_EQ(Offer(Build{.seq = 1}, Hook::kToServer, 1), Verdict::kTaken);
  EXPECT_EQ(Offer(Build{.seq = 2}, Hook::kToServer, 1), Verdict::kPass);
  // Connection 2 holds one segment at each of the four hooks.
  const Hook hooks[] = {Hook::kFromClient, Hook::kToServer, Hook::kFromServer, Hook::kToClient};
  for (Hook h : hooks) EXPECT_EQ(Offer(Build{.seq = 100}, h, 2), Verdict::kTaken);
  EXPECT_EQ(engine_->held(), 4u);
  engine_->ForgetConnection(1);
  EXPECT_EQ(engine_->held(), 4u);
  // Each next segment of connection 2 still releases the one its hook holds.
  out_.clear();
  for (Hook h : hooks) EXPECT_EQ(Offer(Build{.seq = 200}, h, 2), Verdict::kPass);
  EXPECT_THAT(OutSeqs(), ElementsAre(200, 100, 200, 100, 200, 100, 200, 100));
  EXPECT_EQ(engine_->held(), 0u);
  EXPECT_EQ(engine_->NextDeadline(), stack::kNever);
}

TEST_F(Engine, PortMatchesTheSourcePortToo) {
  const int id = Add("drop port=40000");
  EXPECT_EQ(Offer(Build{.src_port = 40000, .dst_port = 80}), Verdict::kTaken);
  EXPECT_EQ(Offer(Build{.src_port = 80, .dst_port = 40000}, Hook::kToClient), Verdict::kTaken);
  EXPECT_EQ(Offer(Build{.src_port = 40001, .dst_port = 80}), Verdict::kPass);
  EXPECT_EQ(Hits(id), 2u);
}

TEST_F(Engine, AddThatWrapsToExactlyZeroGivesZero) {
  Add("add win=64536");
  EXPECT_EQ(Offer(Build{}), Verdict::kPass);
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].Seg().tcp.window, 0);
  EXPECT_EQ(log_[0].detail, "win 1000 -> 0");
}

TEST_F(Engine, ARulePastTheFirstSixtyFourFiresWhereNoEarlierRuleWatches) {
  // 64 rules at another hook fill the first word of the candidate sets.
  for (int k = 0; k < 64; ++k) Add(absl::StrCat("delay 1s port=", 1000 + k, " on=from-client"));
  const int drop = Add("drop on=to-server");  // the 65th: bit 0 of the second word
  EXPECT_EQ(Offer(Build{}, Hook::kToServer), Verdict::kTaken);
  EXPECT_EQ(Offer(Build{}, Hook::kFromClient), Verdict::kPass);
  EXPECT_EQ(Hits(drop), 1u);
}

TEST_F(Engine, ASocketRulePastTheFirstSixtyFourDelaysSocketEvents) {
  for (int k = 0; k < 64; ++k) Add(absl::StrCat("delay 1s port=", 1000 + k));
  const int delay = Add("delay 1s port=9");
  EXPECT_TRUE(engine_->WatchesSocketLeg(Hook::kToServer));
  std::vector<uint8_t> bytes = Build{.dst_port = 9}.Bytes();
  SegmentMeta socket_event{1, Hook::kToServer, TcpState::kEstablished, 0, /*socket=*/true};
  EXPECT_EQ(engine_->Offer(now_, socket_event, View(bytes)).verdict, Verdict::kTaken);
  std::vector<uint8_t> other = Build{.dst_port = 1000}.Bytes();
  EXPECT_EQ(engine_->Offer(now_, socket_event, View(other)).verdict, Verdict::kTaken);  // a filler
  std::vector<uint8_t> none = Build{.dst_port = 8}.Bytes();
  EXPECT_EQ(engine_->Offer(now_, socket_event, View(none)).verdict, Verdict::kPass);
  EXPECT_EQ(Hits(delay), 1u);
}

TEST_F(Engine, FlagsChangingRulesAroundAWordsEdgeFireOnce) {
  const int urg = Add("add urg=1");  // bit 0
  for (int k = 1; k < 63; ++k) Add(absl::StrCat("drop port=", 1000 + k));
  // Each change keeps ACK, so each rule still matches what it made; none is tried again.
  const int fin = Add("set flags=FIN+ACK has=ACK");  // bit 63
  const int seq = Add("add seq=1 has=ACK");          // bit 0 of the second word
  const int psh = Add("set flags=PSH+ACK has=ACK");  // bit 1 of the second word
  EXPECT_EQ(Offer(Build{.flags = kAck, .seq = 100}), Verdict::kPass);
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_EQ(out_[0].Seg().tcp.flags, TcpFlags(kPsh | kAck));
  EXPECT_EQ(out_[0].Seg().tcp.seq.raw(), 101u);
  EXPECT_EQ(out_[0].Seg().tcp.urgent, 1);
  EXPECT_EQ(Hits(urg), 1u);
  EXPECT_EQ(Hits(fin), 1u);
  EXPECT_EQ(Hits(seq), 1u);
  EXPECT_EQ(Hits(psh), 1u);
  ASSERT_EQ(log_.size(), 4u);
  EXPECT_EQ(log_[3].detail, "flags FIN+ACK -> PSH+ACK");
}

TEST_F(Engine, ASegmentNoRuleWatchesStillReleasesTheHeldOne) {
  Add("reorder flags=PSH+ACK");
  EXPECT_EQ(Offer(Build{.flags = kPsh | kAck, .seq = 1, .len = 5}), Verdict::kTaken);
  EXPECT_EQ(Offer(Build{.flags = kAck, .seq = 6}), Verdict::kPass);  // no rule's flags
  EXPECT_THAT(OutSeqs(), ElementsAre(6, 1));
  EXPECT_EQ(engine_->held(), 0u);
}

TEST_F(Engine, IdleOfZeroMatchesAnySilenceButNotTheFirstSegment) {
  const int id = Add("drop on=to-server idle>0s");
  EXPECT_EQ(Offer(Build{.seq = 1}), Verdict::kPass);  // the leg's first: no silence before it
  EXPECT_EQ(Offer(Build{.seq = 2}), Verdict::kPass);  // the same instant
  AdvanceTo(kT0 + absl::Microseconds(1));
  EXPECT_EQ(Offer(Build{.seq = 3}), Verdict::kTaken);
  EXPECT_EQ(Hits(id), 1u);
}

TEST_F(Engine, CorruptingAOneBytePayloadInvertsThatByte) {
  Add("corrupt payload");
  std::vector<uint8_t> in = Build{.len = 1}.Bytes();
  EXPECT_EQ(Offer(in), Verdict::kPass);
  ASSERT_EQ(out_.size(), 1u);
  ASSERT_EQ(out_[0].bytes.size(), in.size());
  EXPECT_EQ(out_[0].bytes.back(), in.back() ^ 0xff);
  EXPECT_EQ(log_[0].detail, "payload byte 0 inverted, checksum kept");
}

TEST_F(Engine, ACorruptedSegmentStaysCorruptedWhenDelayed) {
  Add("corrupt checksum");
  Add("delay 1s");
  std::vector<uint8_t> in = Build{.len = 4}.Bytes();
  EXPECT_EQ(Offer(in), Verdict::kTaken);
  RunUntil(kT0 + absl::Seconds(1));
  ASSERT_EQ(out_.size(), 1u);
  EXPECT_FALSE(out_[0].Parse().ok());
  EXPECT_TRUE(out_[0].Parse(/*verify=*/false).ok());
}

TEST_F(Engine, AReleasedReorderHoldLeavesNothingBehind) {
  Add("delay 200ms flags=SYN");
  Add("reorder len>0");
  EXPECT_EQ(Offer(Build{.seq = 1, .len = 5}), Verdict::kTaken);  // held until 500 ms at most
  EXPECT_EQ(Offer(Build{.flags = kSyn, .seq = 9}),
            Verdict::kTaken);  // delayed; releases the held one
  EXPECT_THAT(OutSeqs(), ElementsAre(1));
  AdvanceTo(kT0 + absl::Seconds(1));  // one Poll past both due times
  EXPECT_THAT(OutSeqs(), ElementsAre(1, 9));
  EXPECT_EQ(engine_->held(), 0u);
  EXPECT_EQ(engine_->NextDeadline(), stack::kNever);
}

TEST_F(Engine, AReorderTimeoutFreesItsHookForTheNextSegment) {
  Add("reorder on=to-server nth=1");
  EXPECT_EQ(Offer(Build{.seq = 1}, Hook::kToServer, 1), Verdict::kTaken);
  AdvanceTo(kT0 + absl::Milliseconds(400));
  EXPECT_EQ(Offer(Build{.seq = 100}, Hook::kToServer, 2), Verdict::kTaken);  // held until 900 ms
  RunUntil(kT0 + absl::Milliseconds(600));
  EXPECT_THAT(OutSeqs(), ElementsAre(1));
  EXPECT_EQ(out_[0].at, kT0 + absl::Milliseconds(500));
  // Connection 1's next segment has nothing to release; connection 2's still does.
  EXPECT_EQ(Offer(Build{.seq = 2}, Hook::kToServer, 1), Verdict::kPass);
  EXPECT_THAT(OutSeqs(), ElementsAre(1, 2));
  EXPECT_EQ(Offer(Build{.seq = 101}, Hook::kToServer, 2), Verdict::kPass);
  EXPECT_THAT(OutSeqs(), ElementsAre(1, 2, 101, 100));
  EXPECT_EQ(engine_->held(), 0u);
}

TEST_F(Engine, AFinWithoutOtherFlagsIsNamedFin) {
  Add("set flags=FIN on=to-server");
  Add("drop flags=FIN on=to-client");
  EXPECT_EQ(Offer(Build{.flags = kAck}), Verdict::kPass);
  EXPECT_EQ(log_[0].detail, "flags ACK -> FIN");
  EXPECT_EQ(Offer(Build{.flags = kFin, .seq = 7}, Hook::kToClient), Verdict::kTaken);
  EXPECT_EQ(
      log_[1].line,
      "00:00:00.000000 conn 1 to-client ESTABLISHED rule 2 (drop on=to-client flags=FIN): FIN "
      "40000>80 seq 7 len 0: dropped");
}

TEST_F(Engine, LenLessThanExcludesItsValue) {
  const int id = Add("drop len<10");
  EXPECT_EQ(Offer(Build{.len = 10}), Verdict::kPass);
  EXPECT_EQ(Offer(Build{.len = 9}), Verdict::kTaken);
  EXPECT_EQ(Hits(id), 1u);
}

TEST_F(Engine, RemovingARuleLeavesTheOtherRulesCounters) {
  Add("drop on=to-server nth=3");
  const int removed = Add("dup 1 on=from-client nth=5");
  const int next = Add("drop on=from-client nth=2");
  EXPECT_EQ(Offer(Build{.seq = 1}, Hook::kFromClient), Verdict::kPass);  // counted by both
  EXPECT_TRUE(engine_->RemoveRule(removed));
  EXPECT_EQ(Offer(Build{.seq = 2}, Hook::kFromClient), Verdict::kTaken);  // the next rule's 2nd
  EXPECT_EQ(Hits(next), 1u);
}

TEST_F(Engine, IdleTimeIsKeptOnlyWhileAnIdleRuleExists) {
  const int gone = Add("drop on=to-client idle>1s");
  EXPECT_TRUE(engine_->RemoveRule(gone));
  EXPECT_EQ(Offer(Build{.seq = 1}), Verdict::kPass);  // no idle rule: the leg is not stamped
  AdvanceTo(kT0 + absl::Seconds(5));
  const int idle = Add("drop on=to-server idle>1s");
  EXPECT_EQ(Offer(Build{.seq = 2}), Verdict::kPass);  // the leg's first stamp
  AdvanceTo(kT0 + absl::Seconds(7));
  EXPECT_EQ(Offer(Build{.seq = 3}), Verdict::kTaken);
  EXPECT_EQ(Hits(idle), 1u);
}

TEST_F(Engine, ASegmentWithoutFlagsMeetsTheRulesOfItsOwnHookOnly) {
  const int id = Add("drop on=from-client");
  EXPECT_EQ(Offer(Build{.flags = 0}, Hook::kToClient), Verdict::kPass);
  EXPECT_EQ(Offer(Build{.flags = 0}, Hook::kFromClient), Verdict::kTaken);
  EXPECT_EQ(Hits(id), 1u);
}

TEST_F(Engine, ARuleForAnyConnectionPastTheFirstSixtyFourMeetsEveryConnection) {
  for (int k = 1; k <= 64; ++k) Add(absl::StrCat("drop conn=", k, " len=7"));
  const int any = Add("drop port=5555");  // the 65th
  EXPECT_EQ(Offer(Build{.dst_port = 5555}, Hook::kToServer, 200), Verdict::kTaken);
  EXPECT_EQ(Offer(Build{.dst_port = 5555}, Hook::kToServer, 3), Verdict::kTaken);
  EXPECT_EQ(Hits(any), 2u);
}

TEST_F(Engine, OfferReturnsOnlyThisDatagramsDecisions) {
  Add("add seq=1");
  Add("add ack=1");
  std::vector<uint8_t> bytes = Build{}.Bytes();
  for (int k = 0; k < 3; ++k) {
    const Offered o =
        engine_->Offer(now_, {1, Hook::kToServer, TcpState::kEstablished}, View(bytes));
    ASSERT_EQ(o.decisions.size(), 2u);
    EXPECT_EQ(o.decisions[0].detail, "seq 1000 -> 1001");
    EXPECT_EQ(o.last()->detail, "ack 5000 -> 5001");
  }
}

TEST_F(Engine, ARuleOfScopeOneSeesOnlyScopeOne) {
  ASSERT_TRUE(engine_->AddRule(MustParse("drop"), /*scope=*/1).ok());
  std::vector<uint8_t> bytes = Build{}.Bytes();
  auto offer = [&](uint64_t scope) {
    return engine_->Offer(now_, {1, Hook::kToServer, TcpState::kEstablished, scope}, View(bytes))
        .verdict;
  };
  EXPECT_EQ(offer(0), Verdict::kPass);
  EXPECT_EQ(offer(2), Verdict::kPass);
  EXPECT_EQ(offer(1), Verdict::kTaken);
}

TEST_F(Engine, AMutationThatChangesNothingPassesTheCallersOwnBytes) {
  Add("set seq=1000");
  std::vector<uint8_t> bytes = Build{.seq = 1000}.Bytes();
  const Offered o = engine_->Offer(now_, {1, Hook::kToServer, TcpState::kEstablished}, View(bytes));
  EXPECT_EQ(o.verdict, Verdict::kPass);
  EXPECT_FALSE(o.changed(bytes));
  EXPECT_EQ(o.datagram.data(), bytes.data());
  ASSERT_EQ(o.decisions.size(), 1u);
  EXPECT_EQ(o.decisions[0].detail, "seq 1000 -> 1000");
}

TEST_F(Engine, ACorruptedSegmentAndItsCopiesAreAllCorrupted) {
  Add("corrupt checksum");
  Add("dup 2");
  std::vector<uint8_t> in = Build{.len = 4}.Bytes();
  EXPECT_EQ(Offer(in), Verdict::kPass);
  ASSERT_EQ(out_.size(), 3u);
  for (const Out& o : out_) {
    EXPECT_FALSE(o.Parse().ok());
    EXPECT_EQ(o.bytes, out_[0].bytes);
  }
}

TEST_F(Engine, ReorderedPairsAreBothCorruptedAndTheSecondSaysItWentAhead) {
  Add("corrupt checksum");
  Add("reorder");
  EXPECT_EQ(Offer(Build{.seq = 1, .len = 4}), Verdict::kTaken);
  EXPECT_EQ(Offer(Build{.seq = 5, .len = 4}), Verdict::kPass);
  ASSERT_EQ(out_.size(), 2u);
  for (const Out& o : out_) EXPECT_FALSE(o.Parse().ok());
  EXPECT_EQ(out_[0].Parse(/*verify=*/false)->tcp.seq.raw(), 5u);
  EXPECT_EQ(out_[1].Parse(/*verify=*/false)->tcp.seq.raw(), 1u);
  ASSERT_EQ(log_.size(), 4u);
  EXPECT_EQ(log_[3].detail, "goes ahead of the segment already held");
  EXPECT_EQ(log_[3].seg.seq.raw(), 5u);
}

// UniformBelow as the engine header specifies it: one mt19937_64 seeded from the
// seed, exactly uniform by rejection.
uint64_t ReferenceUniformBelow(std::mt19937_64& rng, uint64_t n) {
  const uint64_t limit =
      std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % n;
  uint64_t x;
  do {
    x = rng();
  } while (x >= limit);
  return x % n;
}

TEST_F(Engine, JitterIsTheSeedsUniformDrawAroundTheDelay) {
  Reset(1234);
  Add("delay 100ms~50ms");
  for (uint32_t k = 0; k < 5; ++k) Offer(Build{.seq = k});
  std::mt19937_64 rng(1234);
  const int64_t j = 50'000'000;
  ASSERT_EQ(log_.size(), 5u);
  for (uint32_t k = 0; k < 5; ++k) {
    SCOPED_TRACE(k);
    const int64_t u = static_cast<int64_t>(ReferenceUniformBelow(rng, 2 * j + 1)) - j;
    EXPECT_EQ(log_[k].detail, absl::StrCat("delayed ", DurationToString(absl::Milliseconds(100) +
                                                                        absl::Nanoseconds(u))));
  }
}

TEST_F(Engine, EveryDelayedSegmentLeavesAtItsOwnDueTime) {
  Add("delay 100ms~99ms");
  std::map<uint32_t, Instant> due;
  for (uint32_t k = 0; k < 60; ++k) {
    RunUntil(kT0 + absl::Milliseconds(7 * k));  // each release at its own deadline
    Offer(Build{.seq = k});
    const std::string& d = log_.back().detail;
    stack::Duration delay;
    ASSERT_TRUE(absl::ParseDuration(d.substr(d.find(' ') + 1), &delay)) << d;
    due[k] = now_ + delay;
  }
  RunUntil(kT0 + absl::Seconds(2));
  ASSERT_EQ(out_.size(), 60u);
  for (const Out& o : out_) {
    const uint32_t k = o.Seg().tcp.seq.raw();
    EXPECT_EQ(o.at, due[k]) << k;
  }
  EXPECT_EQ(engine_->held(), 0u);
}

TEST_F(Engine, ABlackholeRuleAfterOthersCountsEveryDropItMakes) {
  Add("drop flags=SYN");
  Add("dup 1 flags=RST");
  const int bh = Add("blackhole has=FIN");
  EXPECT_EQ(Offer(Build{.flags = kFin | kAck}), Verdict::kTaken);
  EXPECT_EQ(Offer(Build{}), Verdict::kTaken);
  EXPECT_EQ(Hits(bh), 2u);
  ASSERT_EQ(log_.size(), 2u);
  EXPECT_EQ(log_[1].rule_id, bh);
  EXPECT_EQ(log_[1].detail, "dropped: connection blackholed");
}

TEST_F(Engine, ABlackholedSegmentReleasesTheSegmentHeldBeforeIt) {
  Add("reorder on=to-server nth=1");
  Add("blackhole on=from-client,to-server has=FIN");
  EXPECT_EQ(Offer(Build{.seq = 1}, Hook::kToServer), Verdict::kTaken);       // held
  EXPECT_EQ(Offer(Build{.flags = kFin | kAck}, Hook::kFromClient), Verdict::kTaken);
  EXPECT_TRUE(out_.empty());
  EXPECT_EQ(Offer(Build{.seq = 2}, Hook::kToServer), Verdict::kTaken);  // blackholed
  EXPECT_THAT(OutSeqs(), ElementsAre(1));  // released at once, not at the timeout
  EXPECT_EQ(out_[0].at, kT0);
}

TEST_F(Engine, AFreedSlotIsReusedOnce) {
  Add("delay 10ms");
  Offer(Build{.seq = 1});
  RunUntil(kT0 + absl::Milliseconds(20));  // its slot is free again
  Offer(Build{.seq = 2});
  Offer(Build{.seq = 3});
  Offer(Build{.seq = 4});
  EXPECT_EQ(engine_->held(), 3u);
  RunUntil(kT0 + absl::Milliseconds(40));
  EXPECT_THAT(OutSeqs(), ElementsAre(1, 2, 3, 4));
}

TEST_F(Engine, ForgettingTheConnectionBeingDeliveredDeliversItOnce) {
  Add("delay 10ms");
  Offer(Build{.seq = 1}, Hook::kToServer, 1);
  Offer(Build{.seq = 2}, Hook::kToServer, 1);
  Offer(Build{.seq = 3}, Hook::kToServer, 2);
  std::vector<uint32_t> seqs;
  now_ = kT0 + absl::Milliseconds(10);
  engine_->Poll(now_, [&](const SegmentMeta& meta, absl::Span<const uint8_t> d) {
    seqs.push_back(stack::ParseSegment(d)->tcp.seq.raw());
    if (meta.conn == 1) engine_->ForgetConnection(1);  // a RST went by: the proxy forgets it
  });
  EXPECT_THAT(seqs, ElementsAre(1, 3));  // the other held segment of connection 1 is gone
  EXPECT_EQ(engine_->held(), 0u);
  EXPECT_EQ(engine_->NextDeadline(), stack::kNever);
  // The freed slots serve again, one segment each.
  Offer(Build{.seq = 4});
  Offer(Build{.seq = 5});
  RunUntil(kT0 + absl::Milliseconds(30));
  EXPECT_THAT(OutSeqs(), ElementsAre(4, 5));
}

TEST_F(Engine, ForgettingAConnectionFreesItsSegmentsInAnySlot) {
  Add("delay 1s");
  Offer(Build{.seq = 20}, Hook::kToServer, 2);  // slot 0
  Offer(Build{.seq = 10}, Hook::kToServer, 1);  // slot 1
  engine_->ForgetConnection(1);
  EXPECT_EQ(engine_->held(), 1u);
  RunUntil(kT0 + absl::Seconds(2));
  EXPECT_THAT(OutSeqs(), ElementsAre(20));
  // Forgetting the only holder leaves nothing due.
  Offer(Build{.seq = 30}, Hook::kToServer, 3);
  engine_->ForgetConnection(3);
  EXPECT_EQ(engine_->NextDeadline(), stack::kNever);
  EXPECT_EQ(engine_->held(), 0u);
}

// =============================================================================
// Part 2: the engine between two simulated endpoints. A is the client
// (10.0.0.1:40000, ISN 1000), B the server (10.0.0.2:80, ISN 5000); the link takes
// 10 ms each way; seq and ack below are relative to each side's ISN.
// =============================================================================

constexpr uint32_t kIsnA = 1000;
constexpr uint32_t kIsnB = 5000;
const Side A = Side::kA;
const Side B = Side::kB;

// The `rfc` profile: these conversations time the endpoints' retransmissions
// against the rules' delays, with RFC 6298's 1 s minimum RTO and no loss probes.
TcpConfig Config(Side s, uint16_t port_b = kPortB) {
  TcpConfig c;
  stack::ApplyProfile(stack::TcpProfile::kRfc, c);
  bool a = s == A;
  c.tuple.local_addr = a ? kClient : kServer;
  c.tuple.remote_addr = a ? kServer : kClient;
  c.tuple.local_port = a ? kPortA : port_b;
  c.tuple.remote_port = a ? port_b : kPortA;
  uint32_t isn = a ? kIsnA : kIsnB;
  c.isn = [isn](const stack::FourTuple&, Instant) { return isn; };
  return c;
}

// A segment on the link as a test reads it: who sent it, tcpdump flags, relative
// seq/ack, payload length, when it was released.
struct Seg {
  Side from;
  std::string flags;
  uint32_t seq, ack, len;
  Instant at;
  bool operator==(const Seg& o) const {
    return from == o.from && flags == o.flags && seq == o.seq && ack == o.ack && len == o.len;
  }
  friend std::ostream& operator<<(std::ostream& os, const Seg& s) {
    return os << SideName(s.from) << " " << s.flags << " seq=" << s.seq << " ack=" << s.ack
              << " len=" << s.len << " at " << absl::FormatDuration(s.at - kT0);
  }
};
Seg S(Side from, std::string flags, uint32_t seq, uint32_t ack, uint32_t len = 0) {
  return Seg{from, std::move(flags), seq, ack, len, Instant()};
}

class Faults : public ::testing::Test {
 protected:
  Faults() { Reset(); }

  void Reset(uint64_t seed = 1, TcpConfig a = Config(A), TcpConfig b = Config(B)) {
    engine_ = std::make_unique<FaultEngine>(seed);
    log_.clear();
    sim_ = NewSim(std::move(a), std::move(b), kT0);
    link_ = std::make_unique<SimInterposer>(*engine_, *sim_, 1);
    link_->set_decision_log(LogInto(&log_));
    sim_->set_interposer(link_.get());
  }
  static std::unique_ptr<stack::Simulator> NewSim(TcpConfig a, TcpConfig b, Instant start) {
    stack::Simulator::Options o;
    o.latency = absl::Milliseconds(10);
    o.start = start;
    return std::make_unique<stack::Simulator>(std::move(a), std::move(b), o);
  }

  int Rule(absl::string_view text) {
    absl::StatusOr<int> id = engine_->AddRule(MustParse(text));
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? *id : 0;
  }
  uint64_t Hits(int id) const {
    for (const auto& r : engine_->Rules()) {
      if (r.id == id) return r.hits;
    }
    return 0;
  }

  stack::TcpEndpoint& a() { return sim_->a(); }
  stack::TcpEndpoint& b() { return sim_->b(); }
  stack::Simulator& sim() { return *sim_; }
  Instant now() { return sim_->now(); }

  void Listen() {
    ASSERT_TRUE(b().Listen(now()).ok());
    ASSERT_TRUE(a().Connect(now()).ok());
  }
  bool BothEstablished() {
    return a().state() == TcpState::kEstablished && b().state() == TcpState::kEstablished;
  }
  void Open() {
    Listen();
    ASSERT_TRUE(sim().RunUntil([&] { return BothEstablished(); }, absl::Seconds(120)));
  }
  bool RunUntilBothClosed(stack::Duration limit = absl::Hours(1)) {
    return sim().RunUntil(
        [&] { return a().state() == TcpState::kClosed && b().state() == TcpState::kClosed; },
        limit);
  }
  bool RunUntilState(Side s, TcpState st, stack::Duration limit = absl::Seconds(10)) {
    return sim().RunUntil([&] { return sim().endpoint(s).state() == st; }, limit);
  }
  // When side s last entered state st.
  Instant EnteredAt(Side s, TcpState st) {
    Instant t = stack::kNever;
    for (const stack::StateChange& c : sim().changes(s)) {
      if (c.to == st) t = c.at;
    }
    return t;
  }

  // The segments the link delivered (what the engine let through, in release order).
  std::vector<Seg> Segments(std::optional<Side> only = std::nullopt) {
    std::vector<Seg> out;
    for (const stack::TraceEntry& e : sim().trace()) {
      if (only && e.from != *only) continue;
      bool from_a = e.from == A;
      uint32_t own = from_a ? kIsnA : kIsnB, peer = from_a ? kIsnB : kIsnA;
      std::string f;
      if (e.seg.flags.has(kSyn)) f += 'S';
      if (e.seg.flags.has(kFin)) f += 'F';
      if (e.seg.flags.has(kRst)) f += 'R';
      if (e.seg.flags.has(kAck)) f += '.';
      out.push_back(Seg{e.from, f, e.seg.seq.raw() - own,
                        e.seg.flags.has(kAck) ? e.seg.ack.raw() - peer : 0, e.payload_len, e.at});
    }
    return out;
  }
  std::vector<Seg> DataFrom(Side s) {
    std::vector<Seg> out;
    for (const Seg& g : Segments(s)) {
      if (g.len > 0) out.push_back(g);
    }
    return out;
  }
  std::vector<TcpState> States(Side s) {
    std::vector<TcpState> out;
    for (const stack::StateChange& c : sim().changes(s)) out.push_back(c.to);
    return out;
  }
  bool EverIn(Side s, TcpState st) {
    for (TcpState x : States(s)) {
      if (x == st) return true;
    }
    return false;
  }
  std::string Log() const {
    std::string out;
    for (const Logged& l : log_) absl::StrAppend(&out, l.line, "\n");
    return out;
  }

  std::unique_ptr<FaultEngine> engine_;
  std::unique_ptr<stack::Simulator> sim_;
  std::unique_ptr<SimInterposer> link_;
  std::vector<Logged> log_;
};

// --- the issue's examples ------------------------------------------------------

TEST_F(Faults, DroppedSynAckMakesTheClientRetransmitItsSynAfterTheRto) {
  int id = Rule("drop on=to-client flags=SYN+ACK nth=1");
  Open();
  EXPECT_THAT(Segments(),
              ElementsAre(S(A, "S", 0, 0), S(A, "S", 0, 0), S(B, "S.", 0, 1), S(A, ".", 1, 1)));
  auto segs = Segments();
  EXPECT_EQ(segs[1].at - segs[0].at, absl::Seconds(1));  // RFC 6298 initial RTO
  EXPECT_EQ(Hits(id), 1u);
  ASSERT_EQ(log_.size(), 1u);
  EXPECT_EQ(log_[0].meta.hook, Hook::kToClient);
  EXPECT_EQ(log_[0].meta.state, TcpState::kSynReceived);
  EXPECT_EQ(log_[0].at, kT0 + absl::Milliseconds(10));
  EXPECT_EQ(EnteredAt(A, TcpState::kEstablished), kT0 + absl::Milliseconds(1020));
}

TEST_F(Faults, DelayedFinKeepsTheClientEstablishedForTwoSeconds) {
  Rule("delay 2s on=from-server has=FIN");
  Open();
  Instant closed_at = now();
  ASSERT_TRUE(b().Close(now()).ok());
  ASSERT_TRUE(sim().RunUntil(closed_at + absl::Milliseconds(1990)));
  EXPECT_EQ(a().state(), TcpState::kEstablished);
  EXPECT_EQ(b().state(), TcpState::kFinWait1);
  ASSERT_TRUE(RunUntilState(A, TcpState::kCloseWait));
  EXPECT_EQ(EnteredAt(A, TcpState::kCloseWait) - closed_at,
            absl::Seconds(2) + absl::Milliseconds(10));
  // B's retransmitted FIN (at its 1 s RTO) was held as well.
  ASSERT_EQ(log_.size(), 2u);
  EXPECT_EQ(log_[1].at - log_[0].at, absl::Seconds(1));
  EXPECT_EQ(log_[0].detail, "delayed 2s");
  ASSERT_TRUE(RunUntilState(B, TcpState::kFinWait2));
}

TEST_F(Faults, RstInPlaceOfFinTakesBothSidesToClosedWithoutTimeWait) {
  Rule("rst on=to-client has=FIN");
  Open();
  ASSERT_TRUE(a().Close(now()).ok());
  ASSERT_TRUE(RunUntilState(A, TcpState::kFinWait2));
  ASSERT_TRUE(RunUntilState(B, TcpState::kCloseWait));
  ASSERT_TRUE(b().Close(now()).ok());  // B's FIN becomes a RST at RCV.NXT of A
  ASSERT_TRUE(RunUntilState(A, TcpState::kClosed, absl::Seconds(1)));
  EXPECT_EQ(a().close_reason(), stack::CloseReason::kReset);
  // B in LAST-ACK retransmits its FIN; each turns into a RST that A (CLOSED) ignores,
  // so B gives up at its retransmission limit.
  ASSERT_TRUE(RunUntilBothClosed());
  EXPECT_EQ(b().close_reason(), stack::CloseReason::kTimeout);
  EXPECT_FALSE(EverIn(A, TcpState::kTimeWait));
  EXPECT_FALSE(EverIn(B, TcpState::kTimeWait));
  for (const Seg& s : Segments(B)) EXPECT_EQ(s.flags.find('F'), std::string::npos) << s;
}

TEST_F(Faults, OneRstInPlaceOfFinIsAnsweredWithRstByTheClosedClient) {
  Rule("rst on=to-client has=FIN count=1");
  Open();
  ASSERT_TRUE(a().Close(now()).ok());
  ASSERT_TRUE(RunUntilState(B, TcpState::kCloseWait));
  ASSERT_TRUE(b().Close(now()).ok());
  ASSERT_TRUE(RunUntilBothClosed(absl::Seconds(5)));
  // A, reset, answers B's retransmitted FIN with <SEQ=SEG.ACK><CTL=RST> (RFC 9293 §3.10.7.1).
  EXPECT_EQ(a().close_reason(), stack::CloseReason::kReset);
  EXPECT_EQ(b().close_reason(), stack::CloseReason::kReset);
  EXPECT_FALSE(EverIn(A, TcpState::kTimeWait));
  EXPECT_EQ(Segments().back(), S(A, "R", 2, 0));
}

TEST_F(Faults, BlackholedServerLeavesTheClientRetransmittingUntilItGivesUp) {
  int id = Rule("blackhole on=from-server after=3");
  Open();
  sim().StartTransfer(A, 50'000, false);
  ASSERT_TRUE(sim().RunUntil([&] { return a().state() == TcpState::kClosed; }, absl::Hours(1)));
  EXPECT_EQ(a().close_reason(), stack::CloseReason::kTimeout);
  EXPECT_EQ(a().error(), "connection timed out: no answer after 15 segment retransmissions");
  EXPECT_EQ(b().state(), TcpState::kEstablished);  // B never knew
  // B got through 3 segments: the SYN-ACK and two ACKs; nothing of B's after.
  EXPECT_EQ(Segments(B).size(), 3u);
  EXPECT_EQ(log_[0].detail, "dropped; connection blackholed at from-server");
  EXPECT_EQ(Hits(id), log_.size());
  EXPECT_GT(log_.size(), 15u);  // B answered every retransmission into the void
}

TEST_F(Faults, AckBeyondSndNxtMakesTheClientSendACorrectiveAck) {
  int id = Rule("add ack=1 on=to-client flags=ACK p=0.3");
  Open();
  size_t handshake = Segments().size();
  const std::vector<uint8_t> msg(100, 'x');
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(a().Send(msg).ok());
    ASSERT_TRUE(
        sim().RunUntil([&] { return a().tcb().snd_una == a().tcb().snd_nxt; }, absl::Minutes(10)))
        << sim().Ladder() << Log();
  }
  EXPECT_EQ(b().bytes_received(), 2000u);
  ASSERT_GT(Hits(id), 0u);
  // RFC 9293 §3.10.7.4 fifth / RFC 5961 §5.2: an ACK of something not yet sent is
  // answered with an ACK and dropped, one for one, 10 ms after the engine changed it.
  std::vector<Seg> acks;
  auto segs = Segments();
  for (size_t i = handshake; i < segs.size(); ++i) {
    if (segs[i].from == A && segs[i].len == 0) acks.push_back(segs[i]);
  }
  ASSERT_EQ(acks.size(), log_.size()) << Log();
  for (size_t i = 0; i < acks.size(); ++i) {
    EXPECT_EQ(acks[i].at - log_[i].at, absl::Milliseconds(10));
    EXPECT_EQ(acks[i].flags, ".");
  }
  // The dropped ACK left A's data unacknowledged: A retransmitted it after the RTO.
  EXPECT_GT(a().retransmissions(), 0);
}

TEST_F(Faults, DuplicatedSynArrivesThreeTimesAndOpensOneConnection) {
  Rule("dup 2 on=from-client flags=SYN");
  Open();
  auto segs = Segments();
  ASSERT_GE(segs.size(), 3u);
  EXPECT_EQ(segs[0], S(A, "S", 0, 0));
  EXPECT_EQ(segs[1], S(A, "S", 0, 0));
  EXPECT_EQ(segs[2], S(A, "S", 0, 0));
  EXPECT_EQ(log_.size(), 1u);
  EXPECT_THAT(States(B),
              ElementsAre(TcpState::kListen, TcpState::kSynReceived, TcpState::kEstablished));
  // B took the copies as retransmissions of one SYN and answered once.
  EXPECT_EQ(Segments(B)[0], S(B, "S.", 0, 1));
  EXPECT_EQ(Segments(B).size(), 1u);
  sim().StartTransfer(A, 10'000, true);
  ASSERT_TRUE(sim().RunUntil([&] { return sim().received_ok(B) == 10'000; }, absl::Seconds(5)));
}

// --- the other actions ---------------------------------------------------------

TEST_F(Faults, ReorderedDataArrivesSecondFirstAndIsReassembled) {
  Rule("reorder on=from-client len>0 nth=1");
  Open();
  sim().StartTransfer(A, 10'000, false);
  ASSERT_TRUE(sim().RunUntil([&] { return sim().received_ok(B) == 10'000; }, absl::Seconds(5)));
  auto data = DataFrom(A);
  ASSERT_EQ(data.size(), 7u);
  EXPECT_EQ(data[0].seq, 1u + 1448);  // the second segment arrives first...
  EXPECT_EQ(data[1].seq, 1u);         // ...the first right after it
  EXPECT_EQ(data[2].seq, 1u + 2 * 1448);
  EXPECT_EQ(data[0].at, data[1].at);
  // B held the early one out of order and took both: one ACK covers the burst, and
  // A never retransmits. (The simulator hands B everything due at one instant before
  // B answers, so the gap is closed before B could send a duplicate ACK for it.)
  EXPECT_EQ(Segments(B).back(), S(B, ".", 1, 10'001));
  EXPECT_EQ(a().retransmissions(), 0);
  EXPECT_EQ(sim().received_bad(B), 0u);
}

TEST_F(Faults, ReorderWithNothingFollowingReleasesBeforeTheSenderRetransmits) {
  Rule("reorder on=from-client len>0");
  Open();
  Instant sent = now();
  ASSERT_TRUE(a().Send(std::vector<uint8_t>(100, 'x')).ok());
  ASSERT_TRUE(sim().RunUntil([&] { return b().bytes_received() == 100; }, absl::Seconds(5)));
  EXPECT_EQ(now() - sent, absl::Milliseconds(510));  // 500 ms hold + 10 ms link
  ASSERT_TRUE(sim().RunFor(absl::Seconds(2)));
  EXPECT_EQ(a().retransmissions(), 0);
}

TEST_F(Faults, CorruptedPayloadIsDroppedByTheReceiverAndArrivesIntactLater) {
  Rule("corrupt payload on=to-server len>0 nth=2");
  Open();
  sim().StartTransfer(A, 20'000, false);
  ASSERT_TRUE(sim().RunUntil([&] { return sim().received_ok(B) == 20'000; }, absl::Seconds(5)));
  EXPECT_EQ(link_->bad_datagrams(), 1u);  // the checksum caught it
  EXPECT_EQ(sim().received_bad(B), 0u);
  EXPECT_GE(a().retransmissions(), 1);
  // The second data segment was sent again.
  int copies = 0;
  for (const Seg& s : DataFrom(A)) copies += s.seq == 1 + 1448;
  EXPECT_EQ(copies, 1);  // the corrupted one never reached the trace; the retransmission did
}

TEST_F(Faults, CorruptedChecksumOnSynCostsOneRto) {
  Rule("corrupt checksum on=from-client flags=SYN nth=1");
  Open();
  EXPECT_EQ(link_->bad_datagrams(), 1u);
  EXPECT_EQ(EnteredAt(A, TcpState::kEstablished), kT0 + absl::Milliseconds(1020));
}

TEST_F(Faults, ZeroWindowStallsTheSenderUntilTheRuleIsRemoved) {
  Open();
  sim().StartTransfer(A, 300'000, false);
  ASSERT_TRUE(sim().RunFor(absl::Milliseconds(35)));
  int id = Rule("set win=0 on=to-client flags=ACK");  // added mid-transfer
  ASSERT_TRUE(sim().RunFor(absl::Seconds(5)));
  uint64_t stalled = sim().received_ok(B);
  EXPECT_LT(stalled, 300'000u);
  EXPECT_EQ(a().tcb().snd_wnd, 0u);
  ASSERT_TRUE(sim().RunFor(absl::Seconds(20)));
  EXPECT_EQ(sim().received_ok(B), stalled);  // only zero-window probes went out
  EXPECT_EQ(a().state(), TcpState::kEstablished);
  uint64_t hits = Hits(id);
  EXPECT_GT(hits, 3u);
  EXPECT_EQ(hits, log_.size());
  EXPECT_TRUE(engine_->RemoveRule(id));
  ASSERT_TRUE(sim().RunUntil([&] { return sim().received_ok(B) == 300'000; }, absl::Minutes(5)));
  EXPECT_EQ(log_.size(), hits);  // nothing fired after the removal
  EXPECT_TRUE(engine_->Rules().empty());
}

TEST_F(Faults, RstInPlaceOfDataResetsBothEnds) {
  Rule("rst on=from-client len>0 nth=3");
  Open();
  sim().StartTransfer(A, 50'000, false);
  ASSERT_TRUE(RunUntilBothClosed(absl::Seconds(5)));
  // The RST carried the third segment's seq, RCV.NXT at B once the first two were in.
  EXPECT_EQ(b().close_reason(), stack::CloseReason::kReset);
  EXPECT_EQ(b().bytes_received(), 2u * 1448);
  // A's next segment reached a closed B, which answered RST.
  EXPECT_EQ(a().close_reason(), stack::CloseReason::kReset);
}

// --- every matcher ---------------------------------------------------------------

TEST_F(Faults, NoOnMeansAllFourHooksEachCountingForItself) {
  Rule("drop flags=SYN nth=1");
  Open();
  // SYN #1 dies at from-client (its 1st there); SYN #2 passes from-client (2nd) and
  // dies at to-server (1st there); SYN #3 gets through. SYN+ACK is not flags=SYN.
  ASSERT_EQ(log_.size(), 2u);
  EXPECT_EQ(log_[0].meta.hook, Hook::kFromClient);
  EXPECT_EQ(log_[1].meta.hook, Hook::kToServer);
  EXPECT_EQ(log_[1].at - log_[0].at, absl::Seconds(1));
  EXPECT_EQ(EnteredAt(A, TcpState::kEstablished), kT0 + absl::Seconds(3) + absl::Milliseconds(20));
}

TEST_F(Faults, FlagsMatchesExactlyAndHasMatchesAtLeast) {
  int exact = Rule("drop on=from-client flags=FIN");  // A's FIN is FIN+ACK: never
  int has = Rule("delay 1s on=from-client has=FIN");
  Open();
  Instant t = now();
  ASSERT_TRUE(a().Close(now()).ok());
  ASSERT_TRUE(RunUntilState(B, TcpState::kCloseWait));
  EXPECT_EQ(EnteredAt(B, TcpState::kCloseWait) - t, absl::Seconds(1) + absl::Milliseconds(10));
  EXPECT_EQ(Hits(exact), 0u);
  EXPECT_GE(Hits(has), 1u);
}

TEST_F(Faults, CountCapsHowOftenTheRuleFires) {
  Rule("drop on=from-client flags=SYN count=2");
  Open();
  // Two SYNs lost (RTO 1 s, then 2 s); the third at 3 s opens the connection.
  EXPECT_EQ(log_.size(), 2u);
  EXPECT_EQ(EnteredAt(A, TcpState::kEstablished), kT0 + absl::Seconds(3) + absl::Milliseconds(20));
}

TEST_F(Faults, EveryDropsEachNthDataSegmentAndTcpRecovers) {
  int id = Rule("drop on=from-client len>0 every=4");
  Open();
  sim().StartTransfer(A, 100'000, true);
  ASSERT_TRUE(sim().RunUntil([&] { return sim().received_ok(B) == 100'000; }, absl::Minutes(5)));
  EXPECT_EQ(sim().received_bad(B), 0u);
  // Of all data segments A sent (delivered + dropped), every fourth was dropped.
  uint64_t dropped = Hits(id), delivered = DataFrom(A).size();
  EXPECT_EQ(dropped, (delivered + dropped) / 4);
  EXPECT_GT(a().retransmissions(), 0);
}

TEST_F(Faults, AfterSkipsTheFirstMatchesThenFires) {
  Rule("drop on=to-server len>0 after=3 count=2");
  Open();
  sim().StartTransfer(A, 30'000, false);
  ASSERT_TRUE(sim().RunUntil([&] { return sim().received_ok(B) == 30'000; }, absl::Seconds(5)));
  // The 4th and 5th data segments were lost, and repaired by SACK-driven recovery.
  ASSERT_EQ(log_.size(), 2u);
  EXPECT_EQ(log_[0].seg.seq.raw() - kIsnA, 1u + 3 * 1448);
  EXPECT_EQ(log_[1].seg.seq.raw() - kIsnA, 1u + 4 * 1448);
  EXPECT_LT(now() - kT0, absl::Seconds(1));  // no RTO needed: fast retransmit
}

TEST_F(Faults, LenMatchesThePayloadLength) {
  Rule("drop on=from-client len=104 nth=1");
  Open();
  Instant t = now();
  ASSERT_TRUE(a().Send(std::vector<uint8_t>(3000, 'x')).ok());  // 1448 + 1448 + 104
  ASSERT_TRUE(sim().RunFor(absl::Milliseconds(100)));
  EXPECT_EQ(b().bytes_received(), 2896u);
  ASSERT_TRUE(sim().RunUntil([&] { return b().bytes_received() == 3000; }, absl::Seconds(5)));
  EXPECT_EQ(log_.size(), 1u);
  EXPECT_EQ(log_[0].seg.payload_len, 104u);
  // The RTO restarted when the ACK of the first two arrived (RFC 6298 §5.3): 20 ms
  // after sending, plus 1 s, plus 10 ms on the link.
  EXPECT_EQ(now() - t, absl::Seconds(1) + absl::Milliseconds(30));
}

TEST_F(Faults, PortMatchesEitherPort) {
  int other = Rule("drop port=8080 flags=SYN");
  int dst = Rule("delay 300ms on=from-server port=40000 flags=SYN+ACK");  // B's dst port
  Open();
  EXPECT_EQ(Hits(other), 0u);
  EXPECT_EQ(Hits(dst), 1u);
  EXPECT_EQ(EnteredAt(A, TcpState::kEstablished), kT0 + absl::Milliseconds(320));
}

TEST_F(Faults, StateMatchesTheProxyEndpointsStateOnThatLeg) {
  // B's FIN is dropped only when B sends it from LAST-ACK (it closed second).
  Rule("drop on=to-client has=FIN state=LAST-ACK");
  Open();
  ASSERT_TRUE(b().Close(now()).ok());  // B closes first: FIN-WAIT-1, not matched
  ASSERT_TRUE(RunUntilState(A, TcpState::kCloseWait));
  ASSERT_TRUE(a().Close(now()).ok());
  ASSERT_TRUE(RunUntilBothClosed(absl::Minutes(2)));
  EXPECT_TRUE(log_.empty());

  // Now A closes first and B's FIN leaves from LAST-ACK: A hangs in FIN-WAIT-2 while
  // B retransmits into the rule until it gives up.
  Reset();
  Rule("drop on=to-client has=FIN state=LAST-ACK");
  Open();
  ASSERT_TRUE(a().Close(now()).ok());
  ASSERT_TRUE(RunUntilState(B, TcpState::kCloseWait));
  ASSERT_TRUE(b().Close(now()).ok());
  ASSERT_TRUE(sim().RunUntil([&] { return b().state() == TcpState::kClosed; }, absl::Hours(1)));
  EXPECT_EQ(b().close_reason(), stack::CloseReason::kTimeout);
  EXPECT_EQ(a().state(), TcpState::kFinWait2);
  EXPECT_EQ(log_.size(), 16u);  // the FIN and its 15 retransmissions
  for (const Logged& l : log_) EXPECT_EQ(l.meta.state, TcpState::kLastAck);
}

TEST_F(Faults, ConnMatchesOnlyItsConnection) {
  Rule("drop on=from-client flags=SYN conn=2 nth=1");
  Open();  // connection 1 opens at once
  EXPECT_EQ(EnteredAt(A, TcpState::kEstablished), kT0 + absl::Milliseconds(20));
  // Connection 2, through the same engine, loses its first SYN.
  Instant start = now();
  auto sim2 = NewSim(Config(A), Config(B), start);
  SimInterposer link2(*engine_, *sim2, 2);
  link2.set_decision_log(LogInto(&log_));
  sim2->set_interposer(&link2);
  ASSERT_TRUE(sim2->b().Listen(start).ok());
  ASSERT_TRUE(sim2->a().Connect(start).ok());
  ASSERT_TRUE(sim2->RunUntil([&] { return sim2->a().state() == TcpState::kEstablished; },
                             absl::Seconds(10)));
  EXPECT_EQ(sim2->now() - start, absl::Seconds(1) + absl::Milliseconds(20));
  ASSERT_EQ(log_.size(), 1u);
  EXPECT_EQ(log_[0].meta.conn, 2u);
}

TEST_F(Faults, ProbabilityDropsAShareAndTcpStillDeliversEverything) {
  int id = Rule("drop on=from-client len>0 p=0.2");
  Open();
  sim().StartTransfer(A, 200'000, true);
  ASSERT_TRUE(sim().RunUntil([&] { return sim().received_ok(B) == 200'000; }, absl::Minutes(10)));
  double dropped = static_cast<double>(Hits(id));
  double offered = dropped + static_cast<double>(DataFrom(A).size());
  EXPECT_NEAR(dropped / offered, 0.2, 0.08);
  EXPECT_EQ(sim().received_bad(B), 0u);
}

// --- determinism and live rule edits ---------------------------------------------

std::string RunScenario(uint64_t seed) {
  FaultEngine engine(seed);
  std::vector<Logged> log;
  for (const char* text :
       {"drop len>0 p=0.05", "delay 20ms~15ms on=to-client p=0.5", "dup 1 on=to-server p=0.05",
        "reorder on=from-server len>0 p=0.1", "corrupt payload on=to-server p=0.02",
        "add win=-100 on=from-client p=0.1"}) {
    EXPECT_TRUE(engine.AddRule(MustParse(text)).ok());
  }
  stack::Simulator::Options o;
  o.latency = absl::Milliseconds(10);
  stack::Simulator sim(Config(A), Config(B), o);
  SimInterposer link(engine, sim, 1);
  link.set_decision_log(LogInto(&log));
  sim.set_interposer(&link);
  EXPECT_TRUE(sim.b().Listen(sim.now()).ok());
  EXPECT_TRUE(sim.a().Connect(sim.now()).ok());
  sim.StartTransfer(A, 100'000, true);
  sim.StartTransfer(B, 60'000, true);
  EXPECT_TRUE(sim.RunUntil(
      [&] { return sim.a().state() == TcpState::kClosed && sim.b().state() == TcpState::kClosed; },
      absl::Hours(1)));
  EXPECT_EQ(sim.received_ok(B), 100'000u);
  EXPECT_EQ(sim.received_ok(A), 60'000u);
  std::string out;
  for (const Logged& l : log) absl::StrAppend(&out, l.line, "\n");
  return out;
}

TEST(FaultsDeterminism, SameSeedSameDecisionsHitForHit) {
  std::string first = RunScenario(7);
  EXPECT_GT(std::count(first.begin(), first.end(), '\n'), 20);
  EXPECT_EQ(RunScenario(7), first);
  EXPECT_NE(RunScenario(8), first);
}

TEST_F(Faults, RulesAddedAndRemovedMidTransferKeepHitCounters) {
  Open();
  sim().StartTransfer(A, 200'000, false);
  ASSERT_TRUE(sim().RunFor(absl::Milliseconds(50)));
  uint64_t before = sim().received_ok(B);
  int drop = Rule("drop on=from-client len>0 every=5");
  int dup = Rule("dup 1 on=to-server len>0 every=7");
  ASSERT_TRUE(sim().RunFor(absl::Milliseconds(200)));
  EXPECT_GT(Hits(drop), 0u);
  EXPECT_GT(Hits(dup), 0u);
  EXPECT_TRUE(engine_->RemoveRule(drop));
  uint64_t dup_hits = Hits(dup);
  ASSERT_TRUE(sim().RunUntil([&] { return sim().received_ok(B) == 200'000; }, absl::Minutes(2)));
  EXPECT_GT(before, 0u);
  EXPECT_GT(Hits(dup), dup_hits);  // still firing after its neighbour left
  auto rules = engine_->Rules();
  ASSERT_EQ(rules.size(), 1u);
  EXPECT_EQ(rules[0].id, dup);
  size_t by_dup = 0;
  for (const Logged& l : log_) by_dup += l.rule_id == dup;
  EXPECT_EQ(rules[0].hits, by_dup);
  EXPECT_EQ(sim().received_bad(B), 0u);
}

}  // namespace
}  // namespace wrench::proxy
