// Every scenario of the library (proxy/fault/scenarios/*.rules) run for real: `wrench exec
// --scenario NAME` wraps a scripted kernel TCP client (tests/scenario/client.py) in a
// namespace of its own, the server is a kernel socket on this test's loopback, and
// each test checks what the scenario's header promises. Each test runs in a network
// namespace it creates; wrench exec nests the client's namespace inside it.
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "proxy/fault/scenarios.h"
#include "tests/netns_testing.h"

namespace wrench::proxy {
namespace {

namespace tu = ::wrench::proxy::testing;
using stack::IpAddress;
using Json = nlohmann::json;

const IpAddress kLoopback = IpAddress::V4(0x7f000001);
constexpr uint16_t kPort = 8000;

enum class After { kClose, kWaitForEof };

// Reads the request (up to and including '\n', or EOF when `until_eof`), answers
// with `response` bytes, then closes or waits for the client's FIN first.
tu::TcpServer::Handler Respond(size_t response, After after, bool until_eof = false) {
  return [=](int fd) {
    char c;
    for (int i = 0; i < (1 << 24); ++i) {
      ssize_t n = ::recv(fd, &c, 1, 0);
      if (n <= 0 || (!until_eof && c == '\n')) break;
    }
    std::string body(response, 'r');
    (void)tu::WriteAll(fd, body, absl::Seconds(30));
    if (after == After::kWaitForEof) (void)tu::ReadAll(fd, absl::Seconds(10));
  };
}

class ScenarioTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status st = tu::EnterFreshNetworkNamespace();
    if (!st.ok()) GTEST_SKIP() << "needs a network namespace of its own: " << st;
    if (std::system("command -v python3 >/dev/null") != 0) GTEST_SKIP() << "python3 is needed";
    char dir[] = "/tmp/wrench-scenario-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    server_.reset();
    if (!dir_.empty()) std::system(absl::StrCat("rm -rf ", dir_).c_str());
  }

  void Serve(tu::TcpServer::Handler h) {
    auto s = tu::TcpServer::Start(kLoopback, kPort, std::move(h));
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }

  // Runs the client under `wrench exec --scenario`; returns its JSON report.
  Json Run(const std::string& scenario, const std::string& mode, size_t expect, size_t upload = 0,
           int read_timeout_s = 10) {
    std::string log = absl::StrCat(dir_, "/log.jsonl");
    std::string cmd = absl::StrCat(
        WRENCH_BINARY, " exec --msl=1s --scenario=", scenario, " --log=", log, " -- python3 ",
        WRENCH_SOURCE_DIR, "/tests/scenario/client.py ", mode, " 10.89.0.1 ", kPort, " ", expect,
        " ", upload, " ", read_timeout_s, " 2>", dir_, "/stderr");
    FILE* p = ::popen(cmd.c_str(), "r");
    std::string out;
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    exit_status_ = ::pclose(p);
    std::ifstream err(absl::StrCat(dir_, "/stderr"));
    stderr_.assign(std::istreambuf_iterator<char>(err), std::istreambuf_iterator<char>());
    log_.clear();
    std::ifstream l(log);
    for (std::string line; std::getline(l, line);)
      log_.push_back(Json::parse(line, nullptr, false));
    Json j = Json::parse(out, nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "client printed: " << out << "\nwrench said: " << stderr_;
    return j.is_discarded() ? Json::object() : j;
  }

  // Log records at `hook` whose flags string contains `flag`.
  std::vector<Json> Records(const std::string& hook, const std::string& flag) {
    std::vector<Json> r;
    for (const Json& j : log_) {
      if (j.value("hook", "") == hook && j.value("flags", "").find(flag) != std::string::npos)
        r.push_back(j);
    }
    return r;
  }
  bool LogHasState(const std::string& state) {
    for (const Json& j : log_) {
      if (j.value("before", "") == state || j.value("after", "") == state) return true;
    }
    return false;
  }

  std::unique_ptr<tu::TcpServer> server_;
  std::string dir_, stderr_;
  std::vector<Json> log_;
  int exit_status_ = 0;
};

TEST_F(ScenarioTest, EveryScenarioParses) {
  EXPECT_GE(Scenarios().size(), 16u);
  for (const Scenario& s : Scenarios()) {
    EXPECT_TRUE(ScenarioRules(s.name).ok()) << s.name;
    EXPECT_FALSE(ScenarioSummary(s).empty()) << s.name;
    EXPECT_NE(std::string(s.text).find("Run:"), std::string::npos) << s.name << " has no Run: line";
  }
}

TEST_F(ScenarioTest, SynLost) {
  Serve(Respond(100, After::kClose));
  Json r = Run("syn-lost", "request", 100);
  EXPECT_GE(r.value("connect_s", 0.0), 0.9);
  EXPECT_EQ(r.value("bytes", 0), 100);
  EXPECT_EQ(Records("from-client", "SYN").size(), 2u);
}

TEST_F(ScenarioTest, SynAckLost) {
  Serve(Respond(100, After::kClose));
  Json r = Run("syn-ack-lost", "request", 100);
  EXPECT_GE(r.value("connect_s", 0.0), 0.9);
  EXPECT_LT(r.value("connect_s", 9.0), 3.0);
  EXPECT_EQ(r.value("bytes", 0), 100);
}

TEST_F(ScenarioTest, LastAckLost) {
  // The client closes first; the server closes when it sees that.
  Serve(Respond(100, After::kWaitForEof));
  Json r = Run("last-ack-lost", "close-first", 100);
  EXPECT_EQ(r.value("bytes", 0), 100);
  // wrench's leg retransmits its FIN from LAST-ACK; the client's TIME-WAIT re-ACKs it.
  auto fins = Records("to-client", "FIN");
  ASSERT_EQ(fins.size(), 2u) << stderr_;
  // After the `linux` profile's 200 ms: its minimum RTO, when the loss probe goes too.
  EXPECT_GE(fins[1]["t"].get<double>() - fins[0]["t"].get<double>(), 0.18);
  EXPECT_EQ(fins[1].value("before", ""), "LAST-ACK");
  bool reacked = false;
  for (const Json& j : log_) {
    if (j.value("hook", "") == "from-client" && j["t"].get<double>() > fins[1]["t"].get<double>() &&
        j.value("flags", "") == "ACK" && j.value("after", "") == "CLOSED") {
      reacked = true;
    }
  }
  EXPECT_TRUE(reacked) << "TIME-WAIT's second ACK should close wrench's leg";
}

TEST_F(ScenarioTest, FinLost) {
  Serve(Respond(1000, After::kClose));
  Json r = Run("fin-lost", "request", 1000);
  EXPECT_EQ(r.value("bytes", 0), 1000);
  EXPECT_TRUE(r.value("eof", false));
  // The FIN comes again after the `linux` profile's 200 ms minimum RTO.
  EXPECT_GE(r.value("eof_after_data_s", 0.0), 0.18);
}

TEST_F(ScenarioTest, FinDelayed) {
  Serve(Respond(1000, After::kClose));
  Json r = Run("fin-delayed", "request", 1000);
  EXPECT_EQ(r.value("state_at_data", ""), "ESTABLISHED");
  EXPECT_GE(r.value("eof_after_data_s", 0.0), 1.8);
  EXPECT_TRUE(r.value("eof", false));
}

TEST_F(ScenarioTest, CloseWaitLeak) {
  Serve(Respond(1000, After::kClose));
  Json r = Run("close-wait-leak", "close-wait", 1000);
  EXPECT_TRUE(r.value("eof", false));
  EXPECT_EQ(r.value("state_later", ""), "CLOSE-WAIT");
  EXPECT_TRUE(LogHasState("FIN-WAIT-2"));
}

TEST_F(ScenarioTest, FinWait2Hang) {
  Serve(Respond(1000, After::kClose, /*until_eof=*/true));
  Json r = Run("fin-wait-2-hang", "fin-wait-2", 1000, 0, /*read_timeout_s=*/2);
  EXPECT_EQ(r.value("bytes", 0), 1000);
  EXPECT_EQ(r.value("error", ""), "timeout");  // the FIN never comes
  EXPECT_EQ(r.value("state_later", ""), "FIN-WAIT-2");
}

TEST_F(ScenarioTest, HalfOpen) {
  Serve(Respond(200'000, After::kClose));
  Json r = Run("half-open", "request", 200'000, 0, /*read_timeout_s=*/2);
  EXPECT_EQ(r.value("error", ""), "timeout");
  EXPECT_LT(r.value("bytes", 0), 200'000);
}

TEST_F(ScenarioTest, RstInsteadOfFin) {
  Serve(Respond(100, After::kClose));
  Json r = Run("rst-instead-of-fin", "request", 1000);
  EXPECT_EQ(r.value("error", ""), "ECONNRESET") << r.dump();
}

TEST_F(ScenarioTest, RstMidTransfer) {
  Serve(Respond(300'000, After::kClose));
  Json r = Run("rst-mid-transfer", "request", 300'000);
  EXPECT_EQ(r.value("error", ""), "ECONNRESET");
  EXPECT_GT(r.value("bytes", 0), 0);
  EXPECT_LT(r.value("bytes", 0), 300'000);
}

TEST_F(ScenarioTest, SimultaneousClose) {
  Serve(Respond(100, After::kClose));
  Json r = Run("simultaneous-close", "sim-close", 100);
  EXPECT_EQ(r.value("bytes", 0), 100);
  EXPECT_TRUE(LogHasState("CLOSING")) << "wrench's leg should pass through CLOSING";
}

TEST_F(ScenarioTest, HalfClose) {
  Serve(Respond(50'000, After::kClose, /*until_eof=*/true));
  Json r = Run("half-close", "half-close", 50'000);
  EXPECT_EQ(r.value("bytes", 0), 50'000);
  EXPECT_TRUE(r.value("eof", false));
}

TEST_F(ScenarioTest, ZeroWindowStall) {
  Serve(Respond(10, After::kClose));
  Json r = Run("zero-window-stall", "request", 10, /*upload=*/2'000'000,
             /*read_timeout_s=*/60);  // as its Check line: the probes back off past 10 s
  EXPECT_EQ(r.value("bytes", 0), 10);
  EXPECT_GE(r.value("upload_s", 0.0), 0.4) << "the upload should stall while the window is 0";
  int zero = 0;
  for (const Json& j : Records("to-client", "ACK")) zero += j.value("win", -1) == 0;
  EXPECT_GT(zero, 0);
}

TEST_F(ScenarioTest, DuplicateSyn) {
  Serve(Respond(100, After::kClose));
  Json r = Run("duplicate-syn", "request", 100);
  EXPECT_EQ(r.value("bytes", 0), 100);
  EXPECT_EQ(server_->accepted(), 1);
  EXPECT_EQ(Records("from-client", "SYN").size(), 1u) << "the duplicates are made after the hook";
}

TEST_F(ScenarioTest, ReorderedFin) {
  Serve(Respond(20'000, After::kClose));
  Json r = Run("reordered-fin", "request", 20'000);
  EXPECT_EQ(r.value("bytes", 0), 20'000);
  EXPECT_TRUE(r.value("eof", false));
}

TEST_F(ScenarioTest, SlowHandshake) {
  Serve(Respond(100, After::kClose));
  Json r = Run("slow-handshake", "request", 100);
  EXPECT_GE(r.value("connect_s", 0.0), 0.45);
  EXPECT_EQ(r.value("bytes", 0), 100);
}

TEST_F(ScenarioTest, ExitStatusAndUnknownScenario) {
  std::string cmd = absl::StrCat(WRENCH_BINARY, " exec -- sh -c 'exit 7' 2>/dev/null");
  int st = std::system(cmd.c_str());
  EXPECT_EQ(WEXITSTATUS(st), 7);
  cmd = absl::StrCat(WRENCH_BINARY, " exec --scenario=nope -- true 2>&1");
  FILE* p = ::popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n = std::fread(buf, 1, sizeof buf, p);
  st = ::pclose(p);
  EXPECT_NE(WEXITSTATUS(st), 0);
  EXPECT_NE(std::string(buf, n).find("no scenario \"nope\""), std::string::npos);
}

}  // namespace
}  // namespace wrench::proxy
