// `wrench serve`: wrench with no mappings, driven through the control API — its own
// rules API and Toxiproxy's (control_api.h), on Toxiproxy's port by default, so
// Toxiproxy clients and test suites switch by changing nothing but the binary.
#include <cstdio>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "proxy/app/service.h"
#include "proxy/cli/cli.h"
#include "proxy/cli/commands.h"
#include "proxy/cli/common_flags.h"
#include "proxy/cli/verdict.h"

// Defined in cmd_proxy.cc; serve reads it with its own default.
ABSL_DECLARE_FLAG(std::string, api);

namespace wrench::proxy {

namespace {

constexpr const char* kDefaultApi = "127.0.0.1:8474";  // Toxiproxy's

constexpr FlagHelp kServeFlags[] = {
    {"api",
     "--api=HOST:PORT     where the API listens (default 127.0.0.1:8474, Toxiproxy's port;\n"
     "                      \":PORT\" binds loopback)"},
    {"tun", "--tun=NAME          TUN device to create (default wrench0)"},
    {"net",
     "--net=CIDR          subnet routed into the TUN (default 10.89.0.0/24): a proxy whose\n"
     "                      listen address is inside it gets segment toxics too"},
    kNet6Help,
    {"mtu", "--mtu=N             TUN MTU (default 1500; up to 65520)"},
    {"upstream_via",
     "--upstream-via=socket|tun   the upstream leg of TUN proxies (default socket)"},
    {"rule", "--rule=TEXT         a fault rule for every connection on the TUN (repeatable)"},
    {"rules", "--rules=FILE        fault rules, one a line (repeatable)"},
    {"seed",
     "--seed=N            seed of the random generators (p=, toxicity, jitter) (default 1)"},
    {"pcap", "--pcap=FILE         capture both legs of TUN connections"},
    {"log", "--log=FILE          one JSON object a line per segment"},
    {"msl", "--msl=DURATION      maximum segment lifetime; TIME-WAIT lasts 2*MSL (default 30s)"},
    kTcpProfileHelp,
    kTcpCongestionHelp,
    kOffloadHelp,
    {"verbose", "--verbose           a line on stderr for every connection event"},
    kAllowIdleRulesHelp,
    kVerdictFlags[0],
    kVerdictFlags[1],
    kVerdictFlags[2],
};

}  // namespace

int RunServe(int argc, char** argv) {
  std::vector<std::string> positional = ParseFlags(
      argc, argv,
      "usage: wrench serve [--api HOST:PORT] [OPTIONS]\n\n"
      "Starts wrench with no mappings and serves the control API: wrench's own (GET/POST\n"
      "/rules, DELETE /rules/ID, GET /connections, GET /counters) and Toxiproxy 2.x's\n"
      "(/proxies, /populate, toxics, /reset, /version, /metrics), so Toxiproxy clients drive\n"
      "it unchanged. A proxy listening inside --net (e.g. 10.89.0.2:6379) runs through the\n"
      "TUN and takes segment toxics ({\"type\": \"segment\", \"attributes\": {\"rule\": \"drop\n"
      "flags=SYN+ACK nth=1\"}}). A host address or 0.0.0.0 gets them too: nftables DNATs its\n"
      "arriving connections into the TUN (loopback connections stay on a kernel socket).\n"
      "Loopback listen addresses are kernel sockets with the stream toxics only. The TUN\n"
      "needs CAP_NET_ADMIN (root) and /dev/net/tun; without them (a container started\n"
      "without --cap-add NET_ADMIN --device /dev/net/tun) every proxy is a kernel socket\n"
      "with the stream toxics only, as one line at the start says. Ctrl-C stops it cleanly.",
      kServeFlags);
  if (!NoArguments("serve", positional)) return kExitUsage;
  ServiceOptions o;
  if (auto st = ServiceOptionsFromFlags(o); !st.ok()) return ReportError("serve", st);
  if (o.api_address.empty()) o.api_address = kDefaultApi;
  // A container started without --cap-add NET_ADMIN --device /dev/net/tun still
  // serves Toxiproxy's API, with the stream toxics (one log line says so).
  o.tun_optional = true;
  // Rules come and go through the API: rule numbers are checked at the end.
  auto verdict = RunVerdict::FromFlags(o.rules.size(), /*rules_may_change=*/true);
  if (!verdict.ok()) return ReportError("serve", verdict.status());
  return RunService("serve", o, *verdict, [&](Service& service) {
    PrintRules(service);
    if (service.has_tun()) {
      std::fprintf(stderr, "wrench: API on %s (port %u), TUN %s %s/%d\n", o.api_address.c_str(),
                   service.api_port(), o.tun_name.c_str(), o.net_addr.ToString().c_str(),
                   o.prefix_len);
    } else {
      std::fprintf(stderr, "wrench: API on %s (port %u), no TUN: stream toxics only\n",
                   o.api_address.c_str(), service.api_port());
    }
  });
}

}  // namespace wrench::proxy
