// Google Benchmark programs for stack/: wire-format parse and emit, the internet
// checksum, and a simulated bulk transfer between two endpoints. Global operator
// new is counted so each benchmark reports allocs_per_iter: the hot path must show 0.
#include <cstdint>
#include <vector>

#include "benchmark/benchmark.h"
#include "stack/checksum.h"
#include "stack/ip.h"
#include "stack/segment.h"
#include "stack/simulator.h"
#include "stack/tcp_wire.h"
#include "tests/bench/alloc_counter.h"

namespace wrench::stack {
namespace {

using ::wrench::bench::AllocCounter;

const IpAddress kClient = IpAddress::V4({10, 0, 0, 1});
const IpAddress kServer = IpAddress::V4({10, 0, 0, 2});

// A data segment as Linux sends in bulk: ACK+PSH with timestamps, `payload` bytes.
Segment DataSegment(absl::Span<const uint8_t> payload) {
  Ipv4Repr ip;
  ip.src = kClient;
  ip.dst = kServer;
  ip.ident = 0x1234;
  TcpRepr tcp;
  tcp.src_port = 45678;
  tcp.dst_port = 80;
  tcp.seq = SeqNum(0x6f1e2d3d);
  tcp.ack = SeqNum(0x01020305);
  tcp.flags = TcpFlags(kAck | kPsh);
  tcp.window = 502;
  tcp.options.timestamps = Timestamps{0x11223344, 0x55667788};
  tcp.payload = payload;
  return Segment{ip, tcp};
}

std::vector<uint8_t> EmitToVector(const Segment& s) {
  std::vector<uint8_t> out(s.BufferLen());
  if (!EmitSegment(s, absl::MakeSpan(out)).ok()) std::abort();
  return out;
}

std::vector<uint8_t> Filled(size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i * 131 + 7);
  return v;
}

// ---------------------------------------------------------------- wire format

void BM_ParseIpv4Header(benchmark::State& state) {
  const auto d = EmitToVector(DataSegment({}));
  AllocCounter allocs(state);
  for (auto _ : state) {
    absl::Span<const uint8_t> payload;
    auto r = ParseIpv4(d, &payload);  // with the header checksum
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(payload);
  }
  allocs.Report();
}
BENCHMARK(BM_ParseIpv4Header);

// IPv4 + TCP headers of a small segment (a pure ACK with timestamps), no checksums.
void BM_ParseIpv4TcpHeader(benchmark::State& state) {
  const auto d = EmitToVector(DataSegment({}));
  AllocCounter allocs(state);
  for (auto _ : state) {
    auto s = ParseSegment(d, {.verify_checksums = false});
    benchmark::DoNotOptimize(s);
  }
  allocs.Report();
}
BENCHMARK(BM_ParseIpv4TcpHeader);

// A full-sized segment (1460 payload bytes after the headers), both checksums verified.
void BM_ParseVerify1460(benchmark::State& state) {
  const auto payload = Filled(1460);
  const auto d = EmitToVector(DataSegment(payload));
  AllocCounter allocs(state);
  for (auto _ : state) {
    auto s = ParseSegment(d);
    benchmark::DoNotOptimize(s);
  }
  allocs.Report();
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * d.size()));
}
BENCHMARK(BM_ParseVerify1460);

void BM_EmitSegment1460(benchmark::State& state) {
  const auto payload = Filled(1460);
  const Segment s = DataSegment(payload);
  std::vector<uint8_t> out(s.BufferLen());
  AllocCounter allocs(state);
  for (auto _ : state) {
    auto n = EmitSegment(s, absl::MakeSpan(out));
    benchmark::DoNotOptimize(n);
    benchmark::ClobberMemory();
  }
  allocs.Report();
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * out.size()));
}
BENCHMARK(BM_EmitSegment1460);

void BM_InternetChecksum(benchmark::State& state) {
  const auto d = Filled(static_cast<size_t>(state.range(0)));
  AllocCounter allocs(state);
  for (auto _ : state) {
    benchmark::DoNotOptimize(d.data());
    uint16_t sum = InternetChecksum(d);
    benchmark::DoNotOptimize(sum);
  }
  allocs.Report();
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * d.size()));
}
BENCHMARK(BM_InternetChecksum)->Arg(1500)->Arg(64 * 1024);

// ================================================================================
// Simulated bulk transfer (stack/simulator.h): one long connection between two
// endpoints; each iteration moves 4 MiB of payload from A to B through the
// simulated link (payload copied onto the link and into B's receive ring, every
// segment acknowledged). Argument: the MSS (1460 as on Ethernet, 65483 as on
// Linux loopback).
void BM_SimulatedBulkTransfer(benchmark::State& state) {
  constexpr uint64_t kChunk = 4 << 20;
  TcpConfig a, b;
  a.tuple = {kClient, 40000, kServer, 80};
  b.tuple = {kServer, 80, kClient, 40000};
  a.mss = b.mss = static_cast<uint16_t>(state.range(0));
  a.send_buffer = b.recv_buffer = 4 << 20;
  Simulator::Options o;
  o.trace = false;
  o.check_data = false;
  o.latency = absl::Microseconds(50);
  // A full window of segments and their ACKs may be on the link at once.
  o.packet_room = a.mss;
  o.preallocate_packets = 2 * a.send_buffer / std::min<size_t>(a.mss, 1024) + 64;
  Simulator sim(a, b, o);
  (void)sim.b().Listen(sim.now());
  (void)sim.a().Connect(sim.now());
  sim.StartTransfer(Side::kA, uint64_t{1} << 60, false);
  uint64_t target = kChunk;
  // Warm up: the connection opens and the first window goes through.
  sim.RunUntil([&] { return sim.received_ok(Side::kB) >= target; }, absl::Hours(1));
  AllocCounter allocs(state);
  for (auto _ : state) {
    target += kChunk;
    sim.RunUntil([&] { return sim.received_ok(Side::kB) >= target; }, absl::Hours(1));
  }
  allocs.Report();
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kChunk));
  state.counters["segments_per_iter"] = benchmark::Counter(
      static_cast<double>(kChunk) / (sim.a().tcb().snd_mss), benchmark::Counter::kDefaults);
}
BENCHMARK(BM_SimulatedBulkTransfer)->Arg(1460)->Arg(65483)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace wrench::stack

BENCHMARK_MAIN();
