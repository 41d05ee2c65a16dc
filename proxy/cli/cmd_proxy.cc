// `wrench proxy`: the TUN man in the middle for real connections (service.h),
// configured from the command line.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <tuple>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "proxy/app/service.h"
#include "proxy/app/summary.h"
#include "proxy/cli/cli.h"
#include "proxy/cli/commands.h"
#include "proxy/cli/rules_file.h"
#include "proxy/cli/common_flags.h"
#include "proxy/cli/verdict.h"
#include "stack/tcp_profile.h"

ABSL_FLAG(wrench::proxy::Repeated, map, {}, "FRONT_IP:PORT=UPSTREAM_HOST:PORT (repeatable)");
ABSL_FLAG(std::string, tun, "wrench0", "TUN device name");
ABSL_FLAG(std::string, net, "10.89.0.0/24", "TUN subnet");
ABSL_FLAG(std::string, net6, "", "TUN IPv6 prefix (default: derived from --net; none: IPv4 only)");
ABSL_FLAG(int, mtu, 1500, "TUN MTU");
ABSL_FLAG(std::string, upstream_via, "socket", "socket or tun");
ABSL_FLAG(wrench::proxy::Repeated, rule, {}, "a fault rule (repeatable)");
ABSL_FLAG(wrench::proxy::Repeated, rules, {}, "a file of fault rules, one a line (repeatable)");
ABSL_FLAG(uint64_t, seed, 1, "seed of the one random generator");
ABSL_FLAG(std::string, pcap, "", "write every segment of both legs to this pcap file");
ABSL_FLAG(std::string, log, "", "write one JSON object a line per segment to this file");
ABSL_FLAG(std::string, api, "", "serve the HTTP control API on ADDR:PORT");
ABSL_FLAG(absl::Duration, msl, absl::Seconds(30),
          "maximum segment lifetime; TIME-WAIT lasts 2*MSL");
ABSL_FLAG(bool, verbose, false, "a line on stderr for every connection event");
ABSL_FLAG(std::string, tcp_profile, "linux",
          "timing profile of wrench's TCP endpoints: linux or rfc");
ABSL_FLAG(
    std::string, tcp_congestion, "",
    "congestion control of wrench's TCP endpoints: newreno, cubic or bbr (default: the profile's)");
ABSL_FLAG(bool, offload, true, "checksum and TCP segmentation offload on the TUN");
ABSL_FLAG(bool, allow_idle_rules, false,
          "keep rules that can never fire on this run's legs, with a warning");

namespace wrench::proxy {

namespace {

constexpr FlagHelp kProxyFlags[] = {
    {"map",
     "--map=FRONT_IP:PORT=UPSTREAM_HOST:PORT   relay connections to FRONT to UPSTREAM "
     "(repeatable;\n"
     "                      FRONT is an address of --net or --net6 other than the first;\n"
     "                      IPv6 in brackets: --map '[fd89:2e6c:4f1a:5900::2]:80=[::1]:8080')"},
    {"tun", "--tun=NAME          TUN device to create (default wrench0)"},
    {"net",
     "--net=CIDR          subnet routed into the TUN; the kernel gets its first address\n"
     "                      (default 10.89.0.0/24: the kernel is 10.89.0.1)"},
    kNet6Help,
    {"mtu", "--mtu=N             TUN MTU (default 1500; up to 65520)"},
    {"upstream_via",
     "--upstream-via=socket|tun   the upstream leg: a kernel socket (default; to-server and\n"
     "                      from-server rules delay or reset its connect, writes, reads and\n"
     "                      shutdown), or wrench's own endpoint over the TUN to a server on\n"
     "                      the kernel's TUN address (every rule acts on its segments)"},
    {"rule",
     "--rule=TEXT         a fault rule, e.g. --rule='drop on=to-client flags=SYN+ACK nth=1' "
     "(repeatable)"},
    {"rules", "--rules=FILE        fault rules, one a line; # starts a comment (repeatable)"},
    {"seed",
     "--seed=N            seed of the random generator (p=...), for exact replay (default 1)"},
    {"pcap",
     "--pcap=FILE         capture both legs (LINKTYPE_RAW), as the segments crossed the wire"},
    {"log",
     "--log=FILE          one JSON object a line per segment: hook, flags, seq/ack, states, rule"},
    {"api", "--api=ADDR:PORT     HTTP control API (loopback unless an address is given)"},
    {"msl", "--msl=DURATION      maximum segment lifetime; TIME-WAIT lasts 2*MSL (default 30s)"},
    {"verbose", "--verbose           a line on stderr for every connection event"},
    kTcpProfileHelp,
    kTcpCongestionHelp,
    kOffloadHelp,
    kAllowIdleRulesHelp,
    kVerdictFlags[0],
    kVerdictFlags[1],
    kVerdictFlags[2],
};

}  // namespace

// Reads the rule flags shared by `proxy` and `exec`.
absl::StatusOr<std::vector<Rule>> RulesFromFlags() {
  std::vector<Rule> rules;
  int n = 0;
  for (const std::string& text : absl::GetFlag(FLAGS_rule)) {
    auto r = ParseRule(text, ++n);
    if (!r.ok()) return absl::InvalidArgumentError(absl::StrCat("--rule: ", r.status().message()));
    rules.push_back(*r);
  }
  for (const std::string& path : absl::GetFlag(FLAGS_rules)) {
    auto rs = LoadRulesFile(path);
    if (!rs.ok()) return rs.status();
    rules.insert(rules.end(), rs->begin(), rs->end());
  }
  return rules;
}

// Fills the options `proxy` and `exec` share from their flags.
absl::Status TcpConfigFromFlags(stack::TcpConfig& cfg) {
  auto profile = stack::ParseTcpProfile(absl::GetFlag(FLAGS_tcp_profile));
  if (!profile.ok())
    return absl::InvalidArgumentError(absl::StrCat("--tcp-profile: ", profile.status().message()));
  stack::ApplyProfile(*profile, cfg);
  const std::string cc = absl::GetFlag(FLAGS_tcp_congestion);
  if (!cc.empty()) {
    auto a = stack::ParseCongestionAlgorithm(cc);
    if (!a.ok())
      return absl::InvalidArgumentError(absl::StrCat("--tcp-congestion: ", a.status().message()));
    cfg.congestion = *a;
  }
  return absl::OkStatus();
}

absl::Status ServiceOptionsFromFlags(ServiceOptions& o) {
  auto net = ParseNet(absl::GetFlag(FLAGS_net));
  if (!net.ok()) return net.status();
  o.net_addr = net->first;
  o.prefix_len = net->second;
  const std::string net6 = absl::GetFlag(FLAGS_net6);
  if (net6 == "none") {
    o.prefix6_len = 0;
  } else if (net6.empty()) {
    std::tie(o.net6_addr, o.prefix6_len) = DefaultNet6(o.net_addr);
  } else {
    auto n6 = ParseNet6(net6);
    if (!n6.ok()) return n6.status();
    std::tie(o.net6_addr, o.prefix6_len) = *n6;
  }
  o.tun_name = absl::GetFlag(FLAGS_tun);
  if (o.tun_name.empty() || o.tun_name.size() > 15) {
    return absl::InvalidArgumentError("--tun: a device name has 1 to 15 characters");
  }
  o.mtu = absl::GetFlag(FLAGS_mtu);
  o.offload = absl::GetFlag(FLAGS_offload);
  std::string via = absl::GetFlag(FLAGS_upstream_via);
  if (via == "socket") {
    o.upstream_via = UpstreamVia::kSocket;
  } else if (via == "tun") {
    o.upstream_via = UpstreamVia::kTun;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--upstream-via \"", via, "\": expected socket or tun"));
  }
  auto rules = RulesFromFlags();
  if (!rules.ok()) return rules.status();
  o.rules = std::move(*rules);
  o.seed = absl::GetFlag(FLAGS_seed);
  o.pcap_path = absl::GetFlag(FLAGS_pcap);
  o.log_path = absl::GetFlag(FLAGS_log);
  o.api_address = absl::GetFlag(FLAGS_api);
  if (auto st = TcpConfigFromFlags(o.tcp); !st.ok()) return st;
  o.tcp.msl = absl::GetFlag(FLAGS_msl);
  if (o.tcp.msl < absl::ZeroDuration())
    return absl::InvalidArgumentError("--msl must not be negative");
  o.verbose = absl::GetFlag(FLAGS_verbose);
  o.allow_idle_rules = absl::GetFlag(FLAGS_allow_idle_rules);
  o.log_line = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  return absl::OkStatus();
}

int RunService(const std::string& command, const ServiceOptions& o, const RunVerdict& verdict,
               absl::FunctionRef<void(Service&)> announce) {
  auto log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  auto service = Service::Start(o);
  if (!service.ok()) return verdict.NotStarted(command, service.status(), log);
  (*service)->HandleSignals();
  announce(**service);
  std::fprintf(stderr, "wrench: ready\n");
  (*service)->Run();
  // Ctrl-C or SIGTERM: the run is over; its expectations decide the status.
  return verdict.Finish((*service)->final_report(), RunOutcome(command), log);
}

void PrintRules(Service& service) {
  for (const auto& r : service.engine().Rules()) {
    std::fprintf(stderr, "wrench: rule #%d %s\n", r.id, r.text.c_str());
  }
}

int RunProxy(int argc, char** argv) {
  std::vector<std::string> positional = ParseFlags(
      argc, argv,
      "usage: wrench proxy --map FRONT_IP:PORT=UPSTREAM_HOST:PORT [--map ...] [OPTIONS]\n\n"
      "Creates a TUN device, routes --net into it, and terminates every TCP connection to a\n"
      "FRONT address in wrench's own TCP endpoints, relaying it to UPSTREAM with the fault\n"
      "rules applied. Needs CAP_NET_ADMIN (root). Ctrl-C stops it cleanly; SIGUSR1 prints a\n"
      "summary.",
      kProxyFlags);
  if (!NoArguments("proxy", positional)) return kExitUsage;
  ServiceOptions o;
  if (auto st = ServiceOptionsFromFlags(o); !st.ok()) return ReportError("proxy", st);
  for (const std::string& m : absl::GetFlag(FLAGS_map)) {
    auto mapping = ParseMapping(m);
    if (!mapping.ok()) return ReportError("proxy", mapping.status());
    o.maps.push_back(*mapping);
  }
  if (o.maps.empty()) {
    std::fprintf(stderr,
                 "wrench proxy: at least one --map FRONT_IP:PORT=UPSTREAM_HOST:PORT is needed\n");
    return kExitUsage;
  }
  auto verdict = RunVerdict::FromFlags(o.rules.size(), !o.api_address.empty());
  if (!verdict.ok()) return ReportError("proxy", verdict.status());
  return RunService("proxy", o, *verdict, [&](Service& service) {
    for (const Mapping& m : o.maps) {
      std::fprintf(stderr, "wrench: %s\n", m.text.c_str());
    }
    PrintRules(service);
    if (service.api_port()) std::fprintf(stderr, "wrench: API on port %u\n", service.api_port());
  });
}

}  // namespace wrench::proxy
