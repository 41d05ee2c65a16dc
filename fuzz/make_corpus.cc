// Writes the generated seed corpora: make_corpus <dir> fills <dir>/<target>/ with
// named seeds — segments captured from simulated connections and hand-built
// options and malformed headers, endpoint scripts for every state and teardown,
// pair configurations with link faults, and rules. scripts/make-corpus.sh
// minimises them with -merge=1 into corpus/. make_corpus --known-issues <dir>
// writes the scripted reproducers of the stack bugs the fuzzers found
// (corpus/tcp_endpoint-crashes/).
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "fuzz/endpoint_pair.h"
#include "fuzz/endpoint_script.h"
#include "fuzz/targets.h"
#include "stack/segment.h"
#include "stack/simulator.h"

namespace wrench::fuzz {
namespace {

namespace fs = std::filesystem;
using stack::IpAddress;
using stack::Ipv4Repr;
using stack::Ipv6Repr;
using stack::SeqNum;
using stack::Side;
using stack::TcpFlags;
using stack::TcpRepr;
using stack::kAck;
using stack::kCwr;
using stack::kEce;
using stack::kFin;
using stack::kPsh;
using stack::kRst;
using stack::kSyn;
using stack::kUrg;
using stack::TcpOptions;
using stack::TcpState;
using stack::Timestamps;
using Bytes = std::vector<uint8_t>;

fs::path g_out;

Bytes Cat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}
int g_written = 0;

void Write(const std::string& target, const std::string& name, const Bytes& b) {
  fs::path dir = g_out / target;
  fs::create_directories(dir);
  std::ofstream f(dir / name, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  ++g_written;
}
void Write(const std::string& target, const std::string& name, const std::string& s) {
  Write(target, name, Bytes(s.begin(), s.end()));
}

// ---------------------------------------------------------------------------
// segment_parser

const IpAddress kV4A = IpAddress::V4(0x0a000001), kV4B = IpAddress::V4(0x0a000002);
IpAddress V6(uint8_t last) {
  std::array<uint8_t, 16> b{};
  b[0] = 0xfd;
  b[15] = last;
  return IpAddress::V6(b);
}

Bytes Emit(const TcpRepr& tcp, bool v6, bool from_a = true,
           absl::Span<const uint8_t> ip_options = {}) {
  stack::Segment seg;
  if (v6) {
    Ipv6Repr h;
    h.src = from_a ? V6(1) : V6(2);
    h.dst = from_a ? V6(2) : V6(1);
    h.flow_label = 0x12345;
    seg.ip = h;
  } else {
    Ipv4Repr h;
    h.src = from_a ? kV4A : kV4B;
    h.dst = from_a ? kV4B : kV4A;
    h.ident = 0x1c46;
    h.options = ip_options;
    seg.ip = h;
  }
  seg.tcp = tcp;
  Bytes out(seg.BufferLen());
  auto n = stack::EmitSegment(seg, absl::MakeSpan(out));
  if (!n.ok()) {
    std::cerr << "make_corpus: cannot emit " << tcp << ": " << n.status() << "\n";
    std::exit(1);
  }
  out.resize(*n);
  return out;
}

TcpRepr Tcp(uint8_t flags, uint32_t seq = 1000, uint32_t ack = 0, uint16_t win = 65535) {
  TcpRepr r;
  r.src_port = 40000;
  r.dst_port = 80;
  r.seq = SeqNum(seq);
  r.ack = SeqNum(ack);
  r.flags = TcpFlags(flags);
  r.window = win;
  return r;
}

// Segments of simulated connections, captured on the link as the filter sees them.
void CaptureScenario(const std::string& name, const std::function<void(stack::Simulator&)>& drive,
                     stack::TcpConfig a, stack::TcpConfig b, bool simultaneous_open = false) {
  stack::Simulator sim(std::move(a), std::move(b));
  int n = 0;
  sim.set_filter([&](Side from, const TcpRepr& seg) {
    // Every third segment over IPv6, so both parsers see real traffic.
    bool v6 = n % 3 == 2;
    Write("segment_parser", absl::StrCat("sim-", name, "-", n, v6 ? "-v6" : ""),
          Emit(seg, v6, from == Side::kA));
    ++n;
    return stack::LinkVerdict{};
  });
  if (simultaneous_open) {
    (void)sim.a().Connect(sim.now());
    (void)sim.b().Connect(sim.now());
  } else {
    (void)sim.b().Listen(sim.now());
    (void)sim.a().Connect(sim.now());
  }
  drive(sim);
}

stack::TcpConfig SimConfig(Side s, bool options = true) {
  stack::TcpConfig c;
  bool a = s == Side::kA;
  c.tuple.local_addr = a ? kV4A : kV4B;
  c.tuple.remote_addr = a ? kV4B : kV4A;
  c.tuple.local_port = a ? 40000 : 80;
  c.tuple.remote_port = a ? 80 : 40000;
  uint32_t isn = a ? 1000 : 5000;
  c.isn = [isn](const stack::FourTuple&, stack::Instant) { return isn; };
  c.window_scaling = c.sack = c.timestamps = options;
  return c;
}

void SegmentParserFromSimulator() {
  auto closed = [](stack::Simulator& sim) {
    return [&sim] {
      return sim.a().state() == TcpState::kClosed && sim.b().state() == TcpState::kClosed;
    };
  };
  // Handshake, a request and a response, four-way teardown.
  CaptureScenario("teardown", [&](stack::Simulator& sim) {
    sim.StartTransfer(Side::kA, 100, true);
    sim.StartTransfer(Side::kB, 1000, true);
    sim.RunUntil(closed(sim), absl::Minutes(5));
  }, SimConfig(Side::kA), SimConfig(Side::kB));
  // The same without options (no wscale, SACK, timestamps).
  CaptureScenario("plain", [&](stack::Simulator& sim) {
    sim.StartTransfer(Side::kA, 10, true);
    sim.StartTransfer(Side::kB, 0, true);
    sim.RunUntil(closed(sim), absl::Minutes(5));
  }, SimConfig(Side::kA, false), SimConfig(Side::kB, false));
  // Simultaneous open and simultaneous close.
  CaptureScenario("simultaneous", [&](stack::Simulator& sim) {
    sim.StartTransfer(Side::kA, 0, true);
    sim.StartTransfer(Side::kB, 0, true);
    sim.RunUntil(closed(sim), absl::Minutes(5));
  }, SimConfig(Side::kA), SimConfig(Side::kB), /*simultaneous_open=*/true);
  // An abort: RST in ESTABLISHED.
  CaptureScenario("abort", [&](stack::Simulator& sim) {
    sim.RunFor(absl::Milliseconds(50));
    sim.a().Abort(sim.now());
    sim.RunFor(absl::Seconds(1));
  }, SimConfig(Side::kA), SimConfig(Side::kB));
  // Out-of-order data with SACK blocks, after one lost segment.
  {
    stack::Simulator sim(SimConfig(Side::kA), SimConfig(Side::kB));
    int n = 0, data = 0;
    sim.set_filter([&](Side from, const TcpRepr& seg) {
      stack::LinkVerdict v;
      if (from == Side::kA && !seg.payload.empty() && data++ == 1) v.drop = true;
      if (seg.options.sack_count > 0 && n < 40) {
        Write("segment_parser", absl::StrCat("sim-sack-", n++), Emit(seg, false, from == Side::kA));
      }
      return v;
    });
    (void)sim.b().Listen(sim.now());
    (void)sim.a().Connect(sim.now());
    sim.StartTransfer(Side::kA, 8000, true);
    sim.RunUntil([&] { return sim.b().eof(); }, absl::Minutes(1));
  }
}

void SegmentParserOptions() {
  const std::string t = "segment_parser";
  auto with = [](std::function<void(TcpOptions&)> f, uint8_t flags = kSyn) {
    TcpRepr r = Tcp(flags);
    f(r.options);
    return r;
  };
  Write(t, "opt-mss", Emit(with([](TcpOptions& o) { o.mss = 1460; }), false));
  Write(t, "opt-wscale", Emit(with([](TcpOptions& o) { o.window_scale = 7; }), false));
  Write(t, "opt-wscale-15", Emit(with([](TcpOptions& o) { o.window_scale = 15; }), false));
  Write(t, "opt-sackok", Emit(with([](TcpOptions& o) { o.sack_permitted = true; }), false));
  Write(t, "opt-ts",
        Emit(with([](TcpOptions& o) {
               o.timestamps = Timestamps{0x9a3b2c1d, 0};
             }),
             true));
  Write(t, "opt-all-syn", Emit(with([](TcpOptions& o) {
          o.mss = 1460;
          o.sack_permitted = true;
          o.timestamps = Timestamps{1, 0};
          o.window_scale = 7;
        }), false));
  for (uint8_t n = 1; n <= 4; ++n) {
    Write(t, absl::StrCat("opt-sack-", int{n}), Emit(with([n](TcpOptions& o) {
            o.sack_count = n;
            for (uint8_t k = 0; k < n; ++k)
              o.sack[k] = {SeqNum(2000 + 200 * k), SeqNum(2100 + 200 * k)};
          }, kAck), n % 2 == 0));
  }
  Write(t, "opt-sack-3-ts", Emit(with([](TcpOptions& o) {
          o.timestamps = Timestamps{77, 66};
          o.sack_count = 3;
          for (uint8_t k = 0; k < 3; ++k)
            o.sack[k] = {SeqNum(2000 + 200 * k), SeqNum(2100 + 200 * k)};
        }, kAck), false));
  static constexpr uint8_t kMptcp[] = {0x00, 0x81, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};
  static constexpr uint8_t kTfo[] = {0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04};
  static constexpr uint8_t kExp[] = {0xf9, 0x89};
  Write(t, "opt-unknown-mptcp-tfo-exp-md5", Emit(with([](TcpOptions& o) {
          o.raw[0] = {30, kMptcp};
          o.raw[1] = {34, kTfo};
          o.raw[2] = {254, kExp};
          o.raw[3] = {19, {}};
          o.raw_count = 4;
        }), false));
  // With data and IPv4 options.
  static constexpr uint8_t kPayload[] = "GET / HTTP/1.1\r\nHost: example\r\n\r\n";
  TcpRepr data = Tcp(kPsh | kAck, 1001, 5001);
  data.payload = absl::MakeConstSpan(kPayload, sizeof kPayload - 1);
  data.options.timestamps = Timestamps{100, 200};
  static constexpr uint8_t kIpOptions[] = {0x07, 0x07, 0x04, 0x00,
                                           0x00, 0x00, 0x00, 0x00};  // RR, NOP-padded
  Write(t, "data-ipv4-options", Emit(data, false, true, kIpOptions));
  Write(t, "data-v6", Emit(data, true));
  TcpRepr urg = Tcp(kUrg | kAck | kPsh, 1001, 5001);
  urg.urgent = 3;
  urg.payload = absl::MakeConstSpan(kPayload, 4);
  Write(t, "urgent", Emit(urg, false));
  Write(t, "ecn-syn", Emit(Tcp(kSyn | kEce | kCwr), false));

  // Layouts other than the canonical one (Windows-style, no NOPs, duplicates).
  auto with_raw_options = [&](const std::string& name, Bytes opts, bool fix = true) {
    Bytes d = Emit(Tcp(kSyn), false);
    while (opts.size() % 4) opts.push_back(0);
    d.insert(d.begin() + 40, opts.begin(), opts.end());
    d[32] = static_cast<uint8_t>(((20 + opts.size()) / 4) << 4);
    d[2] = static_cast<uint8_t>(d.size() >> 8);
    d[3] = static_cast<uint8_t>(d.size());
    if (fix) FixChecksums(d.data(), d.size());
    Write(t, name, d);
  };
  with_raw_options("layout-windows", {2, 4, 5, 0xb4, 1, 3, 3, 8, 1, 1, 4, 2});
  with_raw_options("layout-dense", {2, 4, 5, 0xb4, 3, 3, 7, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0});
  with_raw_options("layout-duplicate-mss", {2, 4, 5, 0xb4, 2, 4, 2, 0x18});
  with_raw_options("layout-eol-then-junk", {2, 4, 5, 0xb4, 0, 0xff, 0xff, 0xff});
  with_raw_options("layout-nops", {1, 1, 1, 1, 1, 1, 1, 1});
  // Malformed options.
  with_raw_options("bad-opt-len-0", {2, 0, 0, 0});
  with_raw_options("bad-opt-len-1", {30, 1, 0, 0});
  with_raw_options("bad-opt-overrun", {2, 4, 5, 0xb4, 30, 40, 0, 0});
  with_raw_options("bad-opt-no-len", {1, 1, 1, 30});
  with_raw_options("bad-mss-len", {2, 5, 5, 0xb4, 0});
  with_raw_options("bad-wscale-len", {3, 4, 7, 0});
  with_raw_options("bad-sackok-len", {4, 3, 0, 0});
  with_raw_options("bad-ts-len", {8, 8, 0, 0, 0, 1, 0, 0});
  with_raw_options("bad-sack-len", {5, 6, 0, 0, 0, 1});
  with_raw_options("bad-sack-overlong", Cat({5, 42}, Bytes(38, 0)));
  with_raw_options("bad-five-unknown", {30, 2, 31, 2, 32, 2, 33, 2, 34, 2});
  with_raw_options("bad-checksum-options", {2, 4, 5, 0xb4}, /*fix=*/false);
}


void SegmentParserMalformed() {
  const std::string t = "segment_parser";
  const Bytes syn = Emit(Tcp(kSyn), false);
  const Bytes syn6 = Emit(Tcp(kSyn), true);
  auto edit = [&](const std::string& name, Bytes d, const std::function<void(Bytes&)>& f,
                  bool fix) {
    f(d);
    if (fix) FixChecksums(d.data(), d.size());
    Write(t, name, d);
  };
  Write(t, "bad-empty", Bytes{});
  Write(t, "bad-one-byte", Bytes{0x45});
  edit("bad-version-5", syn, [](Bytes& d) { d[0] = 0x55; }, true);
  edit("bad-ihl-4", syn, [](Bytes& d) { d[0] = 0x44; }, false);
  edit("bad-ihl-beyond", syn, [](Bytes& d) { d[0] = 0x4f; d.resize(50); }, false);
  edit("bad-total-short", syn, [](Bytes& d) { d[2] = 0; d[3] = 12; }, true);
  edit("bad-total-long", syn, [](Bytes& d) { d[3] = static_cast<uint8_t>(d[3] + 8); }, true);
  edit("bad-ip-checksum", syn, [](Bytes& d) { d[10] ^= 0x55; }, false);
  edit("bad-fragment-mf", syn, [](Bytes& d) { d[6] = 0x20; }, true);
  edit("bad-fragment-offset", syn, [](Bytes& d) { d[6] = 0x00; d[7] = 0x10; }, true);
  edit("bad-protocol-udp", syn, [](Bytes& d) { d[9] = 17; }, true);
  edit("bad-tcp-truncated", syn, [](Bytes& d) { d.resize(30); d[3] = 30; }, true);
  edit("bad-doff-4", syn, [](Bytes& d) { d[32] = 0x40; }, true);
  edit("bad-doff-beyond", syn, [](Bytes& d) { d[32] = 0xf0; }, true);
  edit("bad-tcp-checksum", syn, [](Bytes& d) { d[36] ^= 0x01; }, false);
  edit("padding-after-datagram", syn, [](Bytes& d) { d.resize(d.size() + 6, 0); }, false);
  edit("bad-v6-plen-long", syn6, [](Bytes& d) { d[5] = static_cast<uint8_t>(d[5] + 4); }, false);
  edit("bad-v6-jumbogram", syn6, [](Bytes& d) { d[4] = d[5] = 0; d[6] = 0; }, false);
  edit("bad-v6-next-header-udp", syn6, [](Bytes& d) { d[6] = 17; }, false);
  edit("bad-v6-truncated", syn6, [](Bytes& d) { d.resize(39); }, false);
  // IPv6 extension headers: [40-byte header][chain][TCP]; the TCP checksum does
  // not cover them, so inserting them keeps it valid.
  auto ext = [&](const std::string& name, std::vector<std::pair<uint8_t, Bytes>> chain) {
    Bytes d = syn6;
    Bytes headers;
    uint8_t first = d[6];
    for (size_t i = 0; i < chain.size(); ++i) {
      Bytes h = chain[i].second;
      h[0] = i + 1 < chain.size() ? chain[i + 1].first : first;
      headers.insert(headers.end(), h.begin(), h.end());
    }
    d[6] = chain.front().first;
    d.insert(d.begin() + 40, headers.begin(), headers.end());
    size_t plen = d.size() - 40;
    d[4] = static_cast<uint8_t>(plen >> 8);
    d[5] = static_cast<uint8_t>(plen);
    Write(t, name, d);
  };
  const Bytes pad8 = {0, 0, 1, 4, 0, 0, 0, 0};      // next, len 0, PadN(4)
  const Bytes route0 = {0, 0, 0, 0, 0, 0, 0, 0};    // type 0, segments left 0
  const Bytes route2 = {0, 0, 4, 2, 0, 0, 0, 0};    // segments left 2
  const Bytes frag = {0, 0, 0, 1, 0, 0, 0, 1};
  Bytes long_dest = Bytes(16, 0);
  long_dest[1] = 1;  // 16 bytes
  ext("v6-hop-by-hop", {{0, pad8}});
  ext("v6-hbh-route-dest", {{0, pad8}, {43, route0}, {60, long_dest}});
  ext("bad-v6-routing-segments-left", {{43, route2}});
  ext("bad-v6-hbh-not-first", {{60, pad8}, {0, pad8}});
  ext("bad-v6-fragment", {{44, frag}});
  ext("bad-v6-esp", {{60, pad8}, {50, pad8}});
  ext("bad-v6-ext-overrun", {{60, Cat({0, 9}, Bytes(6, 0))}});
}

// ---------------------------------------------------------------------------
// tcp_endpoint

constexpr uint8_t kSynAck = kSyn | kAck;
constexpr uint8_t kFinAck = kFin | kAck;
constexpr uint8_t kData = kPsh | kAck;

struct ScriptBuilder {
  Script s;
  explicit ScriptBuilder(bool passive, uint8_t extra_bits = 0) {
    s.header.bits = static_cast<uint8_t>((passive ? kPassiveOpen : 0) | extra_bits);
  }
  ScriptBuilder& Add(Event e) {
    s.events.push_back(e);
    return *this;
  }
  // An inbound segment with options (for SYNs).
  ScriptBuilder& Syn(uint8_t flags, uint8_t options = kOptMss | kOptSackOk | kOptTs | kOptWscale,
                     uint16_t option_arg = 1460) {
    Event e = Segment(flags);
    e.seg.options = options;
    e.seg.option_arg = option_arg;
    return Add(e);
  }
  ScriptBuilder& Seg(uint8_t flags, uint16_t len = 0, SeqMode seq = SeqMode::kNext,
                     uint16_t seq_arg = 0, AckMode ack = AckMode::kSndNxt, uint16_t ack_arg = 0) {
    Event e = Segment(flags, seq, seq_arg, ack, ack_arg, len);
    if (ts) {
      e.seg.options = kOptTs;
      e.seg.option_arg = 7;
    }
    return Add(e);
  }
  // The handshake to ESTABLISHED from either side.
  ScriptBuilder& Open() {
    if (s.header.bits & kPassiveOpen) {
      Syn(kSyn);
      return Seg(kAck);
    }
    return Syn(kSynAck);
  }
  bool ts = true;
};

void WriteScript(const std::string& name, const ScriptBuilder& b) {
  Write("tcp_endpoint", name, SerializeScript(b.s));
}

void TcpEndpointScripts() {
  // Opening.
  WriteScript("passive-open", ScriptBuilder(true).Open());
  WriteScript("active-open", ScriptBuilder(false).Open());
  {
    ScriptBuilder b(false);
    b.Syn(kSyn).Seg(kAck);  // SYN-SENT -> SYN-RECEIVED -> ESTABLISHED
    WriteScript("simultaneous-open", b);
  }
  {
    // SEND on a listener opens actively (RFC 9293 §3.10.2): LISTEN -> SYN-SENT.
    ScriptBuilder b(true);
    b.Add(AppSend(100)).Syn(kSynAck).Seg(kAck, 0, SeqMode::kNext, 0, AckMode::kSndNxt);
    WriteScript("send-on-a-listener", b);
  }
  {
    ScriptBuilder b(false);
    b.Syn(kSyn);
    Event synack = Segment(kSynAck, SeqMode::kBehind, 1);  // the peer's SYN-ACK repeats its SYN
    synack.seg.options = kOptMss | kOptSackOk | kOptTs | kOptWscale;
    synack.seg.option_arg = 1460;
    b.Add(synack);
    WriteScript("simultaneous-open-synack", b);
  }
  {
    ScriptBuilder b(true, kNoTimestamps | kNoSack | kNoWindowScaling);
    b.ts = false;
    b.Syn(kSyn, 0, 0).Seg(kAck).Seg(kData, 10).Add(AppReceive());
    WriteScript("passive-open-no-options", b);
  }
  {
    ScriptBuilder b(false);
    b.Add(ToDeadline()).Add(ToDeadline()).Add(ToDeadline()).Open();
    WriteScript("syn-retransmitted", b);
  }
  {
    ScriptBuilder b(false);
    for (int i = 0; i < 8; ++i) b.Add(ToDeadline());
    WriteScript("syn-retries-exhausted", b);
  }
  {
    ScriptBuilder b(true);
    b.Syn(kSyn).Add(ToDeadline()).Syn(kSyn).Seg(kAck);
    WriteScript("synack-retransmitted-and-duplicate-syn", b);
  }
  {
    ScriptBuilder b(true);
    b.Syn(kSyn, kOptMss, 536);
    b.s.events.back().seg.len = 20;  // data on the SYN
    b.Seg(kAck).Seg(kFinAck | kSyn);
    WriteScript("data-on-syn-and-syn-fin", b);
  }
  // Data both ways, out of order, windows.
  {
    ScriptBuilder b(true);
    b.Open().Seg(kData, 100).Add(AppReceive()).Add(AppSend(300)).Seg(kAck).Seg(kData, 50);
    b.Add(AppReceive(10)).Add(AppReceive());
    WriteScript("data-both-ways", b);
  }
  {
    ScriptBuilder b(true);
    b.Open().Seg(kData, 100, SeqMode::kAhead, 200).Seg(kData, 100, SeqMode::kAhead, 100);
    b.Seg(kData, 100).Add(AppReceive()).Seg(kData, 100, SeqMode::kBehind, 50).Add(AppReceive());
    WriteScript("out-of-order-and-overlap", b);
  }
  {
    ScriptBuilder b(true);
    b.s.header.recv_buffer = 2;  // 16 bytes
    b.Open().Seg(kData, 40).Seg(kData, 10).Add(AppReceive(8)).Add(AppReceive()).Seg(kData, 16);
    b.Add(AppReceive());
    WriteScript("small-receive-window", b);
  }
  {
    ScriptBuilder b(false);
    b.s.header.mss = 2;  // 100
    b.Open().Add(AppSend(1000));
    for (int i = 0; i < 3; ++i) b.Seg(kAck, 0, SeqMode::kNext, 0, AckMode::kSndUna);
    b.Seg(kAck, 0, SeqMode::kNext, 0, AckMode::kUnaPlus, 100).Seg(kAck);
    WriteScript("fast-retransmit", b);
  }
  {
    ScriptBuilder b(false);
    b.Open().Add(AppSend(3000)).Add(ToDeadline()).Add(ToDeadline()).Seg(kAck);
    WriteScript("data-retransmitted-on-timeout", b);
  }
  {
    ScriptBuilder b(false);
    b.Open();
    b.s.events.back().seg.window = 0;
    b.Add(AppSend(500)).Add(ToDeadline()).Add(ToDeadline()).Seg(kAck).Add(ToDeadline());
    Event open = Segment(kAck);
    open.seg.window = 1000;
    b.Add(open);
    WriteScript("zero-window-probe", b);
  }
  {
    ScriptBuilder b(true);
    b.Open().Add(AppSend(100)).Seg(kAck, 0, SeqMode::kNext, 0, AckMode::kNxtPlus, 1000);
    b.Seg(kAck, 0, SeqMode::kNext, 0, AckMode::kUnaMinus, 40000).Seg(kSyn);
    b.Seg(kRst, 0, SeqMode::kAhead, 10).Seg(kData, 10, SeqMode::kRaw, 777);
    WriteScript("challenge-acks", b);
  }
  {
    ScriptBuilder b(true);
    b.s.header.own_iss = 0xffffff00;
    b.s.header.peer_iss = 0xfffffff0;
    b.Open().Seg(kData, 100).Add(AppSend(400)).Seg(kAck).Add(AppReceive());
    WriteScript("sequence-wraparound", b);
  }
  // Teardown.
  {
    ScriptBuilder b(false);
    b.Open().Add(AppSend(10)).Add(AppClose()).Seg(kAck).Seg(kFinAck).Add(ToDeadline());
    WriteScript("active-close-four-way", b);  // FIN-WAIT-1, FIN-WAIT-2, TIME-WAIT, CLOSED
  }
  {
    ScriptBuilder b(true);
    b.Open().Seg(kFinAck).Add(AppReceive()).Add(AppClose()).Seg(kAck);
    WriteScript("passive-close", b);  // CLOSE-WAIT, LAST-ACK, CLOSED
  }
  {
    ScriptBuilder b(false);
    b.Open().Add(AppClose()).Seg(kFinAck, 0, SeqMode::kNext, 0, AckMode::kSndUna).Seg(kAck);
    b.Add(ToDeadline());
    WriteScript("simultaneous-close", b);  // FIN-WAIT-1, CLOSING, TIME-WAIT
  }
  {
    ScriptBuilder b(false);
    b.Open().Add(AppClose()).Seg(kFinAck).Add(ToDeadline());
    WriteScript("fin-acking-our-fin", b);  // FIN-WAIT-1 -> TIME-WAIT
  }
  {
    ScriptBuilder b(true);
    b.Open().Add(AppClose()).Seg(kAck).Seg(kData, 200).Seg(kData, 200).Add(AppReceive());
    b.Seg(kFinAck).Seg(kFinAck, 0, SeqMode::kBehind, 1).Add(Advance(30000)).Add(ToDeadline());
    WriteScript("half-close-peer-sends-in-fin-wait-2", b);  // and a retransmitted FIN in TIME-WAIT
  }
  {
    ScriptBuilder b(true);
    b.Open().Seg(kData, 10).Seg(kFinAck).Add(AppSend(2000)).Seg(kAck).Add(AppReceive());
    b.Add(AppClose()).Add(ToDeadline()).Seg(kAck);
    WriteScript("half-close-we-send-in-close-wait", b);
  }
  {
    ScriptBuilder b(true);
    b.Syn(kSyn).Add(AppSend(50)).Add(AppClose()).Seg(kAck).Seg(kFinAck);
    WriteScript("close-in-syn-received", b);
  }
  {
    ScriptBuilder b(false);
    b.Open().Add(AppClose());
    for (int i = 0; i < 17; ++i) b.Add(ToDeadline());
    WriteScript("fin-retries-exhausted", b);
  }
  // RST in each state, and abort in each state.
  struct StatePath {
    const char* name;
    bool passive;
    std::function<void(ScriptBuilder&)> reach;
  };
  const StatePath kPaths[] = {
      {"listen", true, [](ScriptBuilder&) {}},
      {"syn-sent", false, [](ScriptBuilder&) {}},
      {"syn-received", true, [](ScriptBuilder& b) { b.Syn(kSyn); }},
      {"syn-received-active", false, [](ScriptBuilder& b) { b.Syn(kSyn); }},
      {"established", false, [](ScriptBuilder& b) { b.Open(); }},
      {"fin-wait-1", false, [](ScriptBuilder& b) { b.Open().Add(AppClose()); }},
      {"fin-wait-2", false, [](ScriptBuilder& b) { b.Open().Add(AppClose()).Seg(kAck); }},
      {"close-wait", true, [](ScriptBuilder& b) { b.Open().Seg(kFinAck); }},
      {"closing", false,
       [](ScriptBuilder& b) {
         b.Open().Add(AppClose()).Seg(kFinAck, 0, SeqMode::kNext, 0, AckMode::kSndUna);
       }},
      {"last-ack", true, [](ScriptBuilder& b) { b.Open().Seg(kFinAck).Add(AppClose()); }},
      {"time-wait", false, [](ScriptBuilder& b) { b.Open().Add(AppClose()).Seg(kFinAck); }},
  };
  for (const StatePath& p : kPaths) {
    {
      ScriptBuilder b(p.passive);
      p.reach(b);
      // An acceptable RST: at RCV.NXT (with the ACK of our SYN in SYN-SENT).
      b.Seg(std::string(p.name) == "syn-sent" ? kRst | kAck : kRst).Add(ToDeadline());
      WriteScript(absl::StrCat("rst-in-", p.name), b);
    }
    {
      ScriptBuilder b(p.passive);
      p.reach(b);
      b.Add(AppAbort()).Seg(kData, 5);
      WriteScript(absl::StrCat("abort-in-", p.name), b);
    }
  }
}

// ---------------------------------------------------------------------------
// endpoint_pair

void Pair(const std::string& name, const PairConfig& c, const Bytes& verdicts = {}) {
  Write("endpoint_pair", name, Cat(SerializePairConfig(c), verdicts));
}

void EndpointPairSeeds() {
  PairConfig c;
  Pair("clean", c);
  c.trace = true;
  Pair("clean-traced", c);
  c.trace = false;
  for (PairMode m :
       {PairMode::kHalfCloseRequest, PairMode::kRequestResponse, PairMode::kServerClosesFirst}) {
    PairConfig x = c;
    x.mode = m;
    Pair(absl::StrCat("mode-", static_cast<int>(m)), x);
  }
  {
    PairConfig x = c;
    x.simultaneous_open = true;
    x.a_size = x.b_size = 0;  // and, with nothing to send, a simultaneous close
    Pair("simultaneous-open-and-close", x);
  }
  Pair("lost-syn", c, {kDrop});
  Pair("lost-synack", c, {kPass, kDrop});
  Pair("lost-ack-of-syn", c, {kPass, kPass, kDrop});
  Pair("duplicates", c, Bytes(12, kDuplicate));
  Pair("reordered", c, {kPass, kPass, kPass, kDelay50ms, kPass, kDelay50ms, kPass, kDelay5s});
  {
    PairConfig x = c;
    x.a_size = 14;  // 64 KiB
    x.b_size = 9;
    Bytes v;
    for (int i = 0; i < 60; ++i) v.push_back(i % 7 == 3 ? kDrop : i % 11 == 5 ? kDelay50ms : kPass);
    Pair("bulk-with-loss", x, v);
  }
  {
    PairConfig x = c;
    x.a_size = 14;
    x.b_size = 9;
    x.a_options_off = x.b_options_off = 8;  // BBR on both sides
    Bytes v;
    for (int i = 0; i < 80; ++i) v.push_back(i % 5 == 2 ? kDrop : i % 13 == 6 ? kDuplicate : kPass);
    Pair("bbr-bulk-with-loss", x, v);
  }
  {
    PairConfig x = c;
    x.a_size = 10;  // 16 KiB into a 100-byte receive buffer that is not read for 2 s
    x.b_buffers = 1 << 2;
    x.b_read_stall = 20;
    Pair("zero-window", x);
  }
  {
    PairConfig x = c;
    x.a_options_off = 7;
    x.b_options_off = 2;
    x.a_mss = 2;
    x.b_mss = 6;
    x.latency = 3;
    x.a_iss = 0xfffffff0;
    x.b_iss = 0xffffff80;
    x.a_size = 7;
    x.b_size = 8;
    Pair("options-off-small-mss-wraparound", x,
         {kPass, kPass, kPass, kDrop, kDrop, kPass, kDuplicate});
  }
  {
    PairConfig x = c;
    x.mode = PairMode::kRequestResponse;
    Bytes v(40, kPass);
    v[v.size() - 1] = kDrop;  // late in the exchange: lose the last FIN or ACK
    v[v.size() - 3] = kDrop;
    Pair("lost-fin", x, v);
  }
}

// ---------------------------------------------------------------------------
// rule_parser

void RuleSeeds() {
  const char* kRules[] = {
      "drop on=to-client flags=SYN+ACK nth=1     # the first SYN-ACK toward the client is lost",
      "delay 2s on=from-server has=FIN",
      "delay 100ms~20ms p=0.5",
      "rst on=to-client has=FIN",
      "add ack=1 on=to-client flags=ACK p=0.1",
      "blackhole on=from-server after=3",
      "dup 2 on=from-client flags=SYN",
      "reorder on=to-server every=3 count=2",
      "set win=0 on=to-server state=ESTABLISHED len>0",
      "set flags=FIN+ACK conn=2 port=80",
      "set ttl=1 len<100",
      "add seq=-1000 on=from-client,to-server len=0",
      "set mss=536 has=SYN",
      "set wscale=14 flags=SYN",
      "corrupt checksum nth=2",
      "corrupt payload state=CLOSE-WAIT",
      "add urg=+1 state=time_wait",
      "drop flags=none",
      "DROP On=TO-CLIENT Flags=syn",
      "drop on=to-clinet",
      "delay 5 on=to-client",
      "dup 0",
      "drop nth=1 every=2",
      "drop p=1.5",
      "frobnicate",
      "",
      "drop on=from-client # comment\n  # another\nrst on=to-server has=RST",
      "set seq=4294967296",
      "delay 1.000001s~1us",
      "rst on=from-client idle>350s count=1",
      "blackhole on=from-client,to-client idle>500ms",
      "drop idle=1s idle>2",
  };
  int i = 0;
  for (const char* r : kRules) Write("rule_parser", absl::StrCat("rule-", i++), std::string(r));
  const char* kNames[] = {"SYN+ACK", "fin+psh+ack", "TIME-WAIT", "syn_received", "fd00::1",
                          "10.0.0.1", "::ffff:10.0.0.1", "2001:db8::8:800:200c:417a", "to-server"};
  for (const char* n : kNames) Write("rule_parser", absl::StrCat("name-", i++), std::string(n));
}

// ---------------------------------------------------------------------------
// Reproducers of the stack bugs the fuzzers found, one short script each (the
// comment says what the fixed endpoint does): the files of corpus/tcp_endpoint-crashes/.

void KnownIssueReproducers() {
  auto repro = [](const std::string& name, const ScriptBuilder& b) {
    Write("tcp_endpoint", name, SerializeScript(b.s));
  };
  {
    ScriptBuilder b(false);  // a second FIN in TIME-WAIT must not advance RCV.NXT
    b.Open().Add(AppClose()).Seg(kFinAck).Seg(kFinAck);
    repro("time-wait-takes-second-fin", b);
  }
  {
    ScriptBuilder b(true);  // back to LISTEN, queued data is flushed
    b.Syn(kSyn).Add(AppSend(10)).Seg(kSyn);
    repro("listen-keeps-queued-data", b);
  }
  {
    ScriptBuilder b(true);  // MSS 0 with timestamps must not wrap SND.MSS
    b.s.header.send_buffer = 5;
    b.Syn(kSyn, kOptMss | kOptTs, 0).Seg(kAck).Add(AppSend(2000));
    repro("mss-zero-with-timestamps", b);
  }
  {
    ScriptBuilder b(false);  // HasPendingOutput agrees with SWS avoidance
    b.ts = false;
    b.s.header.mss = 2;  // 100
    b.s.header.send_buffer = 0;
    Event synack = Segment(kSynAck);
    synack.seg.window = 954;
    b.Add(synack).Add(AppSend(3000)).Add(PollOnly());
    repro("pending-output-held-by-sws", b);
  }
  {
    ScriptBuilder b(false);  // no SYN after an RTO and the SYN-ACK before a Poll
    Event tick = ToDeadline();
    tick.hold = true;
    b.Add(tick).Syn(kSynAck);
    repro("stale-syn-retransmit-after-synack", b);
  }
  {
    ScriptBuilder b(false);  // no SYN-ACK after SYN and ACK before a Poll
    b.Syn(kSyn);
    b.s.events.back().hold = true;
    b.Seg(kAck);
    repro("stale-synack-after-syn-and-ack", b);
  }
  {
    ScriptBuilder b(true);  // simultaneous open takes no FIN, RST or data SYN-ACK
    b.Syn(kSyn);
    Event synack = Segment(kSynAck | kFin, SeqMode::kBehind, 1, AckMode::kSndNxt, 0, 10);
    b.Add(synack);
    repro("synack-shortcut-takes-fin-before-data", b);
  }
  {
    ScriptBuilder b(false);  // an RTO retransmits into a zero window
    b.s.header.mss = 2;
    b.Open().Add(AppSend(500));
    Event zero = Segment(kAck, SeqMode::kNext, 0, AckMode::kSndUna);
    zero.seg.window = 0;
    b.Add(zero).Add(ToDeadline());
    repro("timeout-sends-nothing-zero-window", b);
  }
  {
    ScriptBuilder b(false);  // an RTO retransmits into a window below the MSS
    b.ts = false;
    Event synack = Segment(kSynAck);
    synack.seg.window = 100;
    b.Add(synack).Add(AppSend(1000)).Add(ToDeadline());
    repro("timeout-sends-nothing-window-below-mss", b);
  }
  {
    ScriptBuilder b(false);  // no new data past the window when recovery ends
    b.ts = false;
    b.s.header.mss = 2;
    b.s.header.send_buffer = 0;  // 4096: data is still queued when recovery ends
    b.s.header.bits |= kNoTimestamps;
    b.Syn(kSynAck, kOptMss | kOptSackOk, 1460).Add(AppSend(2000));
    for (int i = 0; i < 3; ++i) b.Seg(kAck, 0, SeqMode::kNext, 0, AckMode::kSndUna);
    b.s.events.back().hold = true;  // the third duplicate ACK: recovery, retransmission due
    Event zero = Segment(kAck);     // the ACK that ends recovery, and a zero window
    zero.seg.window = 0;
    b.Add(zero);
    repro("fast-retransmit-sends-new-data-beyond-window", b);
  }
  {
    ScriptBuilder b(true);  // SACK blocks count against the MSS (RFC 6691)
    b.s.header.send_buffer = 0;
    b.Open().Seg(kData, 100, SeqMode::kAhead, 100).Add(AppSend(2000));
    repro("sack-blocks-push-segment-past-mss", b);
  }
}

}  // namespace
}  // namespace wrench::fuzz

int main(int argc, char** argv) {
  bool repro = argc == 3 && std::string(argv[1]) == "--known-issues";
  if (argc != 2 && !repro) {
    std::fprintf(stderr, "usage: %s [--known-issues] <output dir>\n", argv[0]);
    return 2;
  }
  using namespace wrench::fuzz;
  g_out = argv[argc - 1];
  if (repro) {
    KnownIssueReproducers();
    std::printf("make_corpus: wrote %d reproducers under %s\n", g_written, argv[2]);
    return 0;
  }
  SegmentParserFromSimulator();
  SegmentParserOptions();
  SegmentParserMalformed();
  TcpEndpointScripts();
  EndpointPairSeeds();
  RuleSeeds();
  std::printf("make_corpus: wrote %d seeds under %s\n", g_written, argv[1]);
  return 0;
}
