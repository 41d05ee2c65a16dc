// `wrench simulate`: one connection between two simulated endpoints (client and
// server) on a virtual clock, printed as a ladder: every segment with relative
// seq/ack and every state change. Needs no privileges and no network.
#include <cstdio>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "proxy/cli/cli.h"
#include "proxy/cli/commands.h"
#include "proxy/cli/common_flags.h"
#include "stack/simulator.h"
#include "stack/tcp_profile.h"

ABSL_FLAG(uint64_t, request, 100, "bytes the client sends");
ABSL_FLAG(uint64_t, response, 1000, "bytes the server sends back");
ABSL_FLAG(absl::Duration, latency, absl::Milliseconds(10), "one-way link latency");
ABSL_FLAG(std::string, closer, "client", "who closes first: client, server or both");
ABSL_FLAG(double, loss, 0, "probability that the link drops a segment");

namespace wrench::proxy {

namespace {
constexpr FlagHelp kFlags[] = {
    {"request", "--request=N      bytes the client sends (default 100)"},
    {"response", "--response=N     bytes the server sends back (default 1000)"},
    {"latency", "--latency=D      one-way link latency (default 10ms)"},
    {"closer", "--closer=WHO     who closes first: client, server or both (default client)"},
    {"seed", "--seed=N         seed of the link's random faults (default 1)"},
    {"loss", "--loss=P         probability that the link drops a segment (default 0)"},
    {"tcp_profile",
     "--tcp-profile=linux|rfc   timers and loss recovery of both endpoints (default linux)"},
    {"tcp_congestion",
     "--tcp-congestion=newreno|cubic|bbr   both endpoints' congestion control (default: the "
     "profile's)"},
};
}  // namespace

int RunSimulate(int argc, char** argv) {
  ParseFlags(argc, argv,
             "usage: wrench simulate [OPTIONS]\n\n"
             "Runs a connection between a simulated client (A) and server (B): handshake,\n"
             "request, response, four-way teardown and TIME-WAIT, on a virtual clock.\n"
             "Prints every segment (seq/ack relative to each side's ISN) and state change.",
             kFlags);
  using stack::Side;
  std::string closer = absl::GetFlag(FLAGS_closer);
  if (closer != "client" && closer != "server" && closer != "both") {
    std::fprintf(stderr, "wrench simulate: --closer must be client, server or both, not \"%s\"\n",
                 closer.c_str());
    return 2;
  }
  double loss = absl::GetFlag(FLAGS_loss);
  if (!(loss >= 0 && loss < 1)) {
    std::fprintf(stderr, "wrench simulate: --loss must be in [0, 1)\n");
    return 2;
  }
  stack::TcpConfig client;
  if (auto st = TcpConfigFromFlags(client); !st.ok()) {
    std::fprintf(stderr, "wrench simulate: %s\n", std::string(st.message()).c_str());
    return 2;
  }
  stack::TcpConfig server = client;
  client.tuple = {stack::IpAddress::V4(0x0a590002), 40000, stack::IpAddress::V4(0x0a590001), 80};
  server.tuple = {stack::IpAddress::V4(0x0a590001), 80, stack::IpAddress::V4(0x0a590002), 40000};
  stack::Simulator::Options opts;
  opts.latency = absl::GetFlag(FLAGS_latency);
  opts.seed = absl::GetFlag(FLAGS_seed);
  stack::Simulator sim(client, server, opts);
  if (loss > 0) sim.set_random_faults({.loss = loss});

  stack::TcpEndpoint& a = sim.a();
  stack::TcpEndpoint& b = sim.b();
  using stack::TcpState;
  const uint64_t request = absl::GetFlag(FLAGS_request), response = absl::GetFlag(FLAGS_response);
  auto run = [&](auto pred) { return sim.RunUntil(pred, absl::Minutes(30)); };
  auto closed = [&] { return a.state() == TcpState::kClosed && b.state() == TcpState::kClosed; };
  // Handshake; request; response; teardown by the chosen side; the other side
  // closes when it has seen the FIN (CLOSE-WAIT), as an application would.
  (void)b.Listen(sim.now());
  (void)a.Connect(sim.now());
  bool ok = run([&] { return b.state() == TcpState::kEstablished || closed(); });
  sim.StartTransfer(Side::kA, request, false);
  ok = ok && run([&] { return sim.received_ok(Side::kB) == request || closed(); });
  sim.StartTransfer(Side::kB, response, false);
  ok = ok && run([&] { return sim.received_ok(Side::kA) == response || closed(); });
  if (closer != "server") (void)a.Close(sim.now());
  if (closer != "client") (void)b.Close(sim.now());
  ok = ok && run([&] {
    for (stack::TcpEndpoint* ep : {&a, &b}) {
      if (ep->state() == TcpState::kCloseWait) (void)ep->Close(sim.now());
    }
    return closed();
  });
  std::cout << "wrench simulate: client A " << client.tuple.local_addr << ":"
            << client.tuple.local_port << ", server B " << server.tuple.local_addr << ":"
            << server.tuple.local_port << ", one-way latency " << absl::FormatDuration(opts.latency)
            << "\n\n";
  std::cout << sim.Ladder() << "\n";
  std::cout << "client received " << sim.received_ok(Side::kA) << " bytes, server received "
            << sim.received_ok(Side::kB) << " bytes; both CLOSED after "
            << absl::FormatDuration(sim.elapsed()) << " (virtual)\n";
  if (!ok) {
    std::cout << "connection did not finish: client " << StateName(a.state()) << " " << a.error()
              << ", server " << StateName(b.state()) << " " << b.error() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace wrench::proxy
