// Google Benchmark programs for the fault engine (proxy/fault/fault_engine.h): a segment
// no rule touches, one decided against 100 rules, and the held paths (delay, dup,
// mutation). Global operator new is counted: warmed-up paths must show 0 allocs.
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "proxy/fault/fault_engine.h"
#include "proxy/fault/rule.h"
#include "stack/segment.h"

#include "tests/bench/alloc_counter.h"

namespace wrench::proxy {
namespace {

using stack::Instant;
using stack::Segment;

using ::wrench::bench::AllocCounter;

// A bulk data segment toward the server: ACK+PSH, timestamps, 1448 payload bytes.
struct Datagram {
  std::vector<uint8_t> payload = std::vector<uint8_t>(1448, 0x5a);
  std::vector<uint8_t> bytes;
  stack::DatagramLayout layout;

  Datagram() {
    Segment s;
    stack::Ipv4Repr ip;
    ip.src = stack::IpAddress::V4({10, 0, 0, 1});
    ip.dst = stack::IpAddress::V4({10, 0, 0, 2});
    s.ip = ip;
    s.tcp.src_port = 45678;
    s.tcp.dst_port = 80;
    s.tcp.seq = stack::SeqNum(0x6f1e2d3d);
    s.tcp.ack = stack::SeqNum(0x01020305);
    s.tcp.flags = stack::TcpFlags(stack::kAck | stack::kPsh);
    s.tcp.window = 502;
    s.tcp.options.timestamps = stack::Timestamps{0x11223344, 0x55667788};
    s.tcp.payload = payload;
    bytes.resize(s.BufferLen());
    if (!stack::EmitSegment(s, absl::MakeSpan(bytes)).ok()) std::abort();
    layout = *stack::CheckDatagram(bytes);
  }
  stack::ConstDatagramView View() const { return {bytes, layout}; }
};

void AddOrDie(FaultEngine& e, const std::string& text) {
  absl::StatusOr<Rule> r = ParseRule(text);
  if (!r.ok() || !e.AddRule(*r).ok()) {
    std::fprintf(stderr, "bad rule: %s\n", text.c_str());
    std::abort();
  }
}

constexpr SegmentMeta kMeta{1, Hook::kToServer, stack::TcpState::kEstablished};

// Rules a real run might hold, none of which can touch an ACK+PSH at to-server:
// other hooks, handshake and teardown flags.
void AddUntouchingRules(FaultEngine& e, int n) {
  const char* shapes[] = {
      "drop on=to-client flags=SYN+ACK nth=1",
      "delay 2s on=from-server has=FIN",
      "rst on=to-client has=FIN",
      "dup 2 on=from-client flags=SYN",
      "add ack=1 on=to-client flags=ACK p=0.1",
      "blackhole on=from-server after=3",
      "drop on=to-server has=SYN",
      "delay 100ms~20ms on=to-server has=FIN",
      "corrupt checksum on=to-server has=RST",
      "set win=0 on=to-client flags=ACK",
  };
  for (int i = 0; i < n; ++i) AddOrDie(e, shapes[i % 10]);
}

// The fast path: the (hook, flags) candidate set is empty.
void BM_SegmentNoRuleTouches(benchmark::State& state) {
  FaultEngine engine(1);
  AddUntouchingRules(engine, static_cast<int>(state.range(0)));
  Datagram d;
  Instant now = absl::UnixEpoch();
  AllocCounter allocs(state);
  for (auto _ : state) {
    Verdict v = engine.Offer(now, kMeta, d.View()).verdict;
    benchmark::DoNotOptimize(v);
  }
  allocs.Report();
}
BENCHMARK(BM_SegmentNoRuleTouches)->Arg(0)->Arg(10)->Arg(100)->Arg(1000);

// 100 rules that all want ACK segments at to-server, each for another port: the
// port index leaves none to scan, and the segment passes.
void BM_Decide100CandidatesNoneFires(benchmark::State& state) {
  FaultEngine engine(1);
  for (int i = 0; i < 100; ++i)
    AddOrDie(engine, absl::StrCat("drop on=to-server has=ACK port=", 1000 + i));
  Datagram d;
  Instant now = absl::UnixEpoch();
  AllocCounter allocs(state);
  for (auto _ : state) {
    Verdict v = engine.Offer(now, kMeta, d.View()).verdict;
    benchmark::DoNotOptimize(v);
  }
  allocs.Report();
}
BENCHMARK(BM_Decide100CandidatesNoneFires);

// 100 candidate rules of mixed kinds (port, len, state, conn, counting, p), the
// last of which drops the segment: every matcher kind is evaluated on the way.
void BM_Decide100RulesLastFires(benchmark::State& state) {
  FaultEngine engine(1);
  const char* shapes[] = {
      "drop on=to-server has=ACK port=%d",
      "delay 10ms on=to-server has=ACK len<%d",
      "dup 1 on=to-server has=ACK state=FIN-WAIT-1 every=%d",
      "reorder on=to-server has=ACK conn=%d",
      "add seq=1 on=to-server has=ACK len>%d",
  };
  for (int i = 0; i < 99; ++i) {
    std::string text = shapes[i % 5];
    const int arg = i % 5 == 1 ? 10 : (i % 5 == 4 ? 60000 + i : 2 + i);
    text.replace(text.find("%d"), 2, std::to_string(arg));
    AddOrDie(engine, text);
  }
  AddOrDie(engine, "drop on=to-server has=ACK+PSH len>1000 every=1");
  Datagram d;
  Instant now = absl::UnixEpoch();
  AllocCounter allocs(state);
  for (auto _ : state) {
    Verdict v = engine.Offer(now, kMeta, d.View()).verdict;
    benchmark::DoNotOptimize(v);
  }
  allocs.Report();
  if (engine.Rules().back().hits == 0) state.SkipWithError("the last rule never fired");
}
BENCHMARK(BM_Decide100RulesLastFires);

// The linear worst case: 100 rules that all pass the (hook, flags) table and the
// conn/port index, each refused only by len or state, the last one firing.
void BM_Decide100UnindexedRulesLastFires(benchmark::State& state) {
  FaultEngine engine(1);
  for (int i = 0; i < 99; ++i) {
    AddOrDie(engine, i % 2 == 0 ? absl::StrCat("delay 10ms on=to-server has=ACK len<", 100 + i)
                                : std::string("dup 1 on=to-server has=ACK state=FIN-WAIT-1"));
  }
  AddOrDie(engine, "drop on=to-server has=ACK");
  Datagram d;
  Instant now = absl::UnixEpoch();
  AllocCounter allocs(state);
  for (auto _ : state) {
    Verdict v = engine.Offer(now, kMeta, d.View()).verdict;
    benchmark::DoNotOptimize(v);
  }
  allocs.Report();
}
BENCHMARK(BM_Decide100UnindexedRulesLastFires);

// The same, reading the decision Offer returns: reporting reuses its Decision.
void BM_Decide100RulesLastFiresReadingTheDecision(benchmark::State& state) {
  FaultEngine engine(1);
  for (int i = 0; i < 99; ++i)
    AddOrDie(engine, absl::StrCat("drop on=to-server has=ACK port=", 1000 + i));
  AddOrDie(engine, "drop on=to-server has=ACK");
  uint64_t seen = 0;
  Datagram d;
  Instant now = absl::UnixEpoch();
  for (int i = 0; i < 10; ++i) engine.Offer(now, kMeta, d.View());  // warm up
  AllocCounter allocs(state);
  for (auto _ : state) {
    const Offered o = engine.Offer(now, kMeta, d.View());
    seen += o.decisions.back().detail.size();
    benchmark::DoNotOptimize(o.verdict);
  }
  allocs.Report();
  benchmark::DoNotOptimize(seen);
}
BENCHMARK(BM_Decide100RulesLastFiresReadingTheDecision);

// Counting across many connections: one flat_hash_map lookup per segment.
void BM_CountingRuleManyConnections(benchmark::State& state) {
  FaultEngine engine(1);
  AddOrDie(engine, "drop on=to-server len>0 every=1000000");
  Datagram d;
  Instant now = absl::UnixEpoch();
  const uint64_t conns = static_cast<uint64_t>(state.range(0));
  for (uint64_t c = 1; c <= conns; ++c)
    engine.Offer(now, {c, Hook::kToServer, kMeta.state}, d.View());
  uint64_t c = 0;
  AllocCounter allocs(state);
  for (auto _ : state) {
    SegmentMeta meta{1 + (c++ % conns), Hook::kToServer, kMeta.state};
    Verdict v = engine.Offer(now, meta, d.View()).verdict;
    benchmark::DoNotOptimize(v);
  }
  allocs.Report();
}
BENCHMARK(BM_CountingRuleManyConnections)->Arg(1)->Arg(10000);

// Held paths: Offer then Poll at a clock moving 10 us a segment, so about `range`
// segments are in flight at any time once warm.
void RunHeld(benchmark::State& state, const std::string& rule) {
  FaultEngine engine(1);
  AddOrDie(engine, rule);
  Datagram d;
  Instant now = absl::UnixEpoch();
  uint64_t out_bytes = 0;
  auto sink = [&](const SegmentMeta&, absl::Span<const uint8_t> b) { out_bytes += b.size(); };
  for (int i = 0; i < 2000; ++i) {  // warm the pool and the heap
    engine.Offer(now, kMeta, d.View());
    now += absl::Microseconds(10);
    engine.Poll(now, sink);
  }
  AllocCounter allocs(state);
  for (auto _ : state) {
    engine.Offer(now, kMeta, d.View());
    now += absl::Microseconds(10);
    engine.Poll(now, sink);
  }
  allocs.Report();
  state.counters["held"] = static_cast<double>(engine.held());
  benchmark::DoNotOptimize(out_bytes);
}

void BM_HeldDelay1ms(benchmark::State& state) { RunHeld(state, "delay 1ms on=to-server"); }
BENCHMARK(BM_HeldDelay1ms);
void BM_HeldDelayJitter(benchmark::State& state) { RunHeld(state, "delay 1ms~500us on=to-server"); }
BENCHMARK(BM_HeldDelayJitter);
void BM_HeldDup1(benchmark::State& state) { RunHeld(state, "dup 1 on=to-server"); }
BENCHMARK(BM_HeldDup1);
void BM_HeldReorder(benchmark::State& state) { RunHeld(state, "reorder on=to-server"); }
BENCHMARK(BM_HeldReorder);
void BM_MutateAddSeq(benchmark::State& state) { RunHeld(state, "add seq=1 on=to-server"); }
BENCHMARK(BM_MutateAddSeq);
void BM_MutateCorruptPayload(benchmark::State& state) {
  RunHeld(state, "corrupt payload on=to-server");
}
BENCHMARK(BM_MutateCorruptPayload);
void BM_Rst(benchmark::State& state) { RunHeld(state, "rst on=to-server"); }
BENCHMARK(BM_Rst);

}  // namespace
}  // namespace wrench::proxy

BENCHMARK_MAIN();
