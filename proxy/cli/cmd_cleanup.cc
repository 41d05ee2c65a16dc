// `wrench cleanup [--tun NAME]`: undoes what wrench runs that were killed (SIGKILL, a
// crash, a power cut of the container) left on the host in this network namespace,
// from their host records (proxy/os/dnat.h), and says what it did.
#include <cstdio>
#include <cstring>
#include <string>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "proxy/cli/cli.h"
#include "proxy/cli/commands.h"
#include "proxy/os/dnat.h"

// Defined in cmd_proxy.cc.
ABSL_DECLARE_FLAG(std::string, tun);

namespace wrench::proxy {

namespace {

constexpr FlagHelp kCleanupFlags[] = {
    {"tun",
     "--tun=NAME          only what the runs of this TUN device left (default: every run's)"},
};

}  // namespace

int RunCleanup(int argc, char** argv) {
  bool tun_given = false;
  for (int i = 1; i < argc && std::strcmp(argv[i], "--") != 0; ++i) {
    tun_given |= std::strncmp(argv[i], "--tun", 5) == 0 || std::strncmp(argv[i], "-tun", 4) == 0;
  }
  std::vector<std::string> positional = ParseFlags(
      argc, argv,
      "usage: wrench cleanup [--tun NAME]\n\n"
      "Undoes what wrench runs that are gone (killed with SIGKILL, crashed) left on this host,\n"
      "in the current network namespace: puts back the sysctls they changed (net.ipv4.ip_forward,\n"
      "and their TUN's rp_filter and forwarding while the device exists), deletes their nftables\n"
      "tables (ip wrench_NAME) and every such table whose TUN no longer exists, and removes their\n"
      "records (in $WRENCH_RUN_DIR, default /run/wrench). Runs that are still going are left\n"
      "alone. Prints one line for each thing removed or restored. Every wrench start does the\n"
      "same on its own. Needs CAP_NET_ADMIN (root).",
      kCleanupFlags);
  if (!NoArguments("cleanup", positional)) return kExitUsage;
  std::optional<std::string> tun;
  if (tun_given) tun = absl::GetFlag(FLAGS_tun);
  auto report = CleanUpAfterDeadRuns(tun);
  if (!report.ok()) {
    std::fprintf(stderr, "wrench cleanup: %s\n", std::string(report.status().message()).c_str());
    return 1;
  }
  for (const std::string& line : report->done) std::printf("%s\n", line.c_str());
  for (const std::string& line : report->skipped) std::printf("left alone: %s\n", line.c_str());
  if (report->done.empty()) std::printf("nothing to clean up\n");
  return 0;
}

}  // namespace wrench::proxy
