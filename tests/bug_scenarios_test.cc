// The scenarios that reproduce well-known teardown bugs (keepalive-race,
// idle-timeout-reset, silent-peer, half-close-before-response, fin-wait-2-pileup),
// each run through the exact `Run:` line of its header against the real client it
// names (Node's http.Agent, python3, ss), with a kernel server on this test's loopback.
// Each test runs in a network namespace it creates; wrench exec nests the client's.
#include <cstdio>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "proxy/fault/scenarios.h"
#include "tests/http_servers_testing.h"
#include "tests/netns_testing.h"

namespace wrench::proxy {
namespace {

namespace tu = ::wrench::proxy::testing;
using stack::IpAddress;

const IpAddress kLoopback = IpAddress::V4(0x7f000001);
constexpr uint16_t kPort = 8000;

struct Ran {
  int status = -1;  // the exit status, or -1
  std::string output;
};

// Runs a shell command from the source tree, stdout and stderr together.
Ran Sh(const std::string& command) {
  Ran r;
  FILE* p = ::popen(absl::StrCat("cd ", WRENCH_SOURCE_DIR, " && ", command, " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

// The scenario's `# Run:` command, with `wrench` spelled as the binary under test.
std::string RunLine(absl::string_view scenario) {
  for (const Scenario& s : Scenarios()) {
    if (s.name != scenario) continue;
    for (absl::string_view line : absl::StrSplit(s.text, '\n')) {
      if (!absl::ConsumePrefix(&line, "# Run:")) continue;
      std::string cmd(absl::StripAsciiWhitespace(line));
      return absl::StrReplaceAll(cmd, {{"wrench exec", absl::StrCat(WRENCH_BINARY, " exec")}});
    }
  }
  ADD_FAILURE() << "no Run: line in " << scenario;
  return "false";
}

class BugScenarioTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status st = tu::EnterFreshNetworkNamespace();
    if (!st.ok()) GTEST_SKIP() << "needs a network namespace of its own: " << st;
    if (std::system("command -v python3 >/dev/null") != 0)
      GTEST_SKIP() << "python3 is not installed (scripts/install-deps.sh installs it)";
  }
  void Serve(tu::TcpServer::Handler h) {
    auto s = tu::TcpServer::Start(kLoopback, kPort, std::move(h));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }
  std::unique_ptr<tu::TcpServer> server_;
};

TEST_F(BugScenarioTest, KeepaliveRaceFailsNodeAgentEveryTimeAndNeverWithout) {
  if (std::system("command -v node >/dev/null") != 0)
    GTEST_SKIP() << "node is not installed (scripts/install-deps.sh installs Debian's nodejs)";
  Serve(tu::KeepAliveServer(absl::Seconds(1)));
  const std::string with = RunLine("keepalive-race");
  const std::string without = absl::StrReplaceAll(with, {{" --scenario keepalive-race", ""}});
  ASSERT_NE(with, without);
  int failed_with = 0, failed_without = 0;
  for (int run = 0; run < 5; ++run) {
    Ran a = Sh(with);
    if (a.status != 0 && absl::StrContains(a.output, "ECONNRESET")) ++failed_with;
    EXPECT_TRUE(absl::StrContains(a.output, "ECONNRESET")) << a.output;
    Ran b = Sh(without);
    if (b.status != 0) ++failed_without;
    EXPECT_TRUE(absl::StrContains(b.output, "ok\n")) << b.output;
  }
  EXPECT_EQ(failed_with, 5);
  EXPECT_EQ(failed_without, 0);
}

TEST_F(BugScenarioTest, IdleTimeoutResetResetsTheRequestOnTheQuietConnection) {
  Serve(tu::KeepAliveServer(absl::Seconds(10)));
  Ran r = Sh(RunLine("idle-timeout-reset"));
  EXPECT_NE(r.status, 0);
  EXPECT_TRUE(absl::StrContains(r.output, "ConnectionResetError")) << r.output;
}

TEST_F(BugScenarioTest, SilentPeerHangsTheClientUntilItsOwnDeadlineOrTcpUserTimeout) {
  Serve(tu::KeepAliveServer(absl::Seconds(10)));
  const absl::Time t0 = absl::Now();
  Ran r = Sh(RunLine("silent-peer"));
  const absl::Duration took = absl::Now() - t0;
  EXPECT_NE(r.status, 0);
  EXPECT_TRUE(absl::StrContains(r.output, "timed out")) << r.output;
  EXPECT_GE(took, absl::Milliseconds(4400));  // 1.5 s of quiet, then the 3 s deadline
  // Without a deadline the client is still waiting when `timeout` ends it.
  Ran hang = Sh(absl::StrCat(
      "timeout 5 ", absl::StrReplaceAll(RunLine("silent-peer"), {{"s.settimeout(3); ", ""}})));
  EXPECT_EQ(hang.status, 124) << hang.output;
  // TCP_USER_TIMEOUT bounds how long sent data may stay unacknowledged: ETIMEDOUT.
  const absl::Time t1 = absl::Now();
  Ran user_timeout = Sh(absl::StrCat(
      "timeout 8 ", absl::StrReplaceAll(
                        RunLine("silent-peer"),
                        {{"s.settimeout(3); ",
                          "s.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 1000); "}})));
  EXPECT_NE(user_timeout.status, 0);
  EXPECT_NE(user_timeout.status, 124) << user_timeout.output;
  EXPECT_TRUE(absl::StrContains(user_timeout.output, "Connection timed out"))
      << user_timeout.output;
  EXPECT_LT(absl::Now() - t1, absl::Seconds(6));
}

TEST_F(BugScenarioTest, HalfCloseBeforeResponseStillGetsTheAnswer) {
  Serve(tu::OneShotServer());
  Ran r = Sh(RunLine("half-close-before-response"));
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "b'HTTP/1.0 200 OK")) << r.output;
}

TEST_F(BugScenarioTest, FinWait2PileupLeavesEveryClosedConnectionInFinWait2) {
  if (std::system("command -v ss >/dev/null") != 0)
    GTEST_SKIP() << "ss is not installed (scripts/install-deps.sh installs iproute2)";
  Serve(tu::OneShotServer());
  Ran r = Sh(RunLine("fin-wait-2-pileup"));
  EXPECT_EQ(r.status, 0) << r.output;
  int sockets = 0;
  for (absl::string_view line : absl::StrSplit(r.output, '\n')) {
    if (absl::StrContains(line, "10.89.0.1:8000")) ++sockets;
  }
  EXPECT_EQ(sockets, 5) << r.output;
}

}  // namespace
}  // namespace wrench::proxy
