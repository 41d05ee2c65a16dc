// Flags that several subcommands share (abseil flags are process-wide, so each is
// defined once, in cmd_proxy.cc, and declared here for the others), and the steps of
// a run the subcommands that run a Service share.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "proxy/cli/cli.h"
#include "stack/tcp_endpoint.h"

ABSL_DECLARE_FLAG(uint64_t, seed);
ABSL_DECLARE_FLAG(wrench::proxy::Repeated, rule);
ABSL_DECLARE_FLAG(wrench::proxy::Repeated, rules);
// linux or rfc (stack/tcp_profile.h), for every command that runs endpoints.
ABSL_DECLARE_FLAG(std::string, tcp_profile);
// newreno, cubic or bbr (stack/congestion.h); empty: the profile's.
ABSL_DECLARE_FLAG(std::string, tcp_congestion);
// Segmentation offload on the TUN, for every command that makes one.
ABSL_DECLARE_FLAG(bool, offload);
// `wrench ladder`'s (cmd_ladder.cc).
ABSL_DECLARE_FLAG(std::string, format);
ABSL_DECLARE_FLAG(uint64_t, conn);
ABSL_DECLARE_FLAG(std::string, out);

namespace wrench::proxy {
struct ServiceOptions;
class Service;
class RunVerdict;

// The --help lines of the flags that proxy, exec and serve share word for word.
inline constexpr FlagHelp kTcpProfileHelp = {
    "tcp_profile",
    "--tcp-profile=linux|rfc   timers and loss recovery of wrench's endpoints: Linux's\n"
    "                      figures (default) or the RFCs' (1 s minimum RTO, NewReno, no TLP)"};
inline constexpr FlagHelp kTcpCongestionHelp = {
    "tcp_congestion",
    "--tcp-congestion=newreno|cubic|bbr   congestion control of wrench's endpoints (default:\n"
    "                      the profile's, cubic for linux and newreno for rfc); bbr to stand\n"
    "                      in for a kernel with net.ipv4.tcp_congestion_control=bbr"};
inline constexpr FlagHelp kNet6Help = {
    "net6",
    "--net6=CIDR         IPv6 prefix routed into the TUN beside --net; the kernel gets its\n"
    "                      first address (default fd89:2e6c:4f1a:XXYY::/64, XX.YY the second\n"
    "                      and third bytes of --net: fd89:2e6c:4f1a:5900::1 for 10.89.0.0/24;\n"
    "                      none: IPv4 only)"};
inline constexpr FlagHelp kOffloadHelp = {
    "offload",
    "--offload=false     no checksum or TCP segmentation offload on the TUN: every segment\n"
    "                      is its own read and write (default on, as far as the kernel allows;\n"
    "                      --verbose says which); rules and captures see the same segments"};
inline constexpr FlagHelp kAllowIdleRulesHelp = {
    "allow_idle_rules",
    "--allow-idle-rules  keep a rule that can never fire on this run's legs (e.g.\n"
    "                      blackhole on=from-server with a socket upstream) with a warning;\n"
    "                      by default it is refused, saying which actions act on which leg"};

// The endpoints' configuration from --tcp-profile and --tcp-congestion.
absl::Status TcpConfigFromFlags(stack::TcpConfig& cfg);
// Fills what `proxy` and `exec` share from their flags (defined in cmd_proxy.cc).
absl::Status ServiceOptionsFromFlags(ServiceOptions& o);
// The run of `proxy` and `serve` once their flags are read (defined in cmd_proxy.cc):
// starts the service (or returns `verdict`'s status for a run that could not start),
// lets `announce` print what it serves, says ready, runs until Ctrl-C or SIGTERM, and
// returns the exit status the run's expectations decide.
int RunService(const std::string& command, const ServiceOptions& o, const RunVerdict& verdict,
               absl::FunctionRef<void(Service&)> announce);
// One line on stderr for each of the service's rules.
void PrintRules(Service& service);
}  // namespace wrench::proxy
