// `wrench exec --serve=PORT -- SERVER`: a tiny Python server wrapped in wrench's child
// namespace, reached from the test's namespace through 127.0.0.1:PORT. Checks bytes
// round-trip, a CLOSE-WAIT leak seen from the server leg, and a rule on that leg.
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/netns_testing.h"

namespace wrench::proxy {
namespace {

namespace tu = ::wrench::proxy::testing;
using Json = nlohmann::json;

constexpr uint16_t kPort = 8000;

// Echoes each connection until the client's FIN, then closes — or, with
// `leak`, never closes (a CLOSE-WAIT leak) until killed. Touches READY once listening.
std::string ServerScript(const std::string& ready, bool leak) {
  return absl::StrCat(R"(
import socket, threading, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", )", kPort, R"())
s.listen()
open(")", ready, R"(", "w").close()
def serve(c):
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    if )", leak ? "True" : "False", R"(:
        time.sleep(60)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
)");
}

class ServeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status st = tu::EnterFreshNetworkNamespace();
    if (!st.ok()) GTEST_SKIP() << "needs a network namespace of its own: " << st;
    if (std::system("command -v python3 >/dev/null") != 0) GTEST_SKIP() << "python3 is needed";
    char dir[] = "/tmp/wrench-serve-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    Stop();
    if (!dir_.empty()) std::system(absl::StrCat("rm -rf ", dir_).c_str());
  }

  // Starts wrench exec --serve in its own process group; waits for the server.
  void Start(const std::vector<std::string>& rules, bool leak) {
    std::string ready = absl::StrCat(dir_, "/ready");
    std::vector<std::string> args = {
        WRENCH_BINARY, "exec",      absl::StrCat("--serve=", kPort),
        "--msl=1s",    "--verbose", absl::StrCat("--log=", dir_, "/log.jsonl")};
    for (const std::string& r : rules) args.push_back(absl::StrCat("--rule=", r));
    for (const char* a : {"--", "python3", "-c"}) args.push_back(a);
    args.push_back(ServerScript(ready, leak));
    std::string err = absl::StrCat(dir_, "/stderr");
    pid_ = ::fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      ::setpgid(0, 0);
      FILE* f = std::freopen(err.c_str(), "w", stderr);
      (void)f;
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      _exit(127);
    }
    struct stat sb;
    for (int i = 0; i < 200 && ::stat(ready.c_str(), &sb) != 0; ++i)
      absl::SleepFor(absl::Milliseconds(50));
    ASSERT_EQ(::stat(ready.c_str(), &sb), 0)
        << "the server never listened; wrench said: " << Stderr();
  }

  // SIGTERM to wrench (forwarded to the server, whose end stops wrench); bounded,
  // then SIGKILL to the group. Afterwards nothing of the group is left.
  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    int status = 0;
    bool exited = false;
    for (int i = 0; i < 200 && !exited; ++i) {
      exited = ::waitpid(pid_, &status, WNOHANG) == pid_;
      if (!exited) absl::SleepFor(absl::Milliseconds(50));
    }
    if (!exited) {
      ADD_FAILURE() << "wrench did not stop within 10 s of SIGTERM";
      ::kill(-pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
    bool gone = false;
    for (int i = 0; i < 100 && !gone; ++i) {
      gone = ::kill(-pid_, 0) != 0 && errno == ESRCH;
      if (!gone) absl::SleepFor(absl::Milliseconds(50));
    }
    EXPECT_TRUE(gone) << "processes of wrench's group are still running";
    if (!gone) ::kill(-pid_, SIGKILL);
    pid_ = -1;
    log_.clear();
    std::ifstream l(absl::StrCat(dir_, "/log.jsonl"));
    for (std::string line; std::getline(l, line);)
      log_.push_back(Json::parse(line, nullptr, false));
  }

  std::string Stderr() {
    std::ifstream err(absl::StrCat(dir_, "/stderr"));
    return std::string(std::istreambuf_iterator<char>(err), std::istreambuf_iterator<char>());
  }

  absl::StatusOr<UniqueFd> Connect() {
    return tu::ConnectTo(stack::IpAddress::V4(0x7f000001), kPort, absl::Seconds(5));
  }

  std::string dir_;
  pid_t pid_ = -1;
  std::vector<Json> log_;
};

TEST_F(ServeTest, BytesRoundTrip) {
  ASSERT_NO_FATAL_FAILURE(Start({}, /*leak=*/false));
  auto fd = Connect();
  ASSERT_TRUE(fd.ok()) << fd.status();
  std::string data(300 * 1024, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 + i / 251);
  // Written by another thread while this one reads: the echo needs both directions.
  absl::Status wrote;
  std::thread writer([&] {
    wrote = tu::WriteAll(fd->get(), data, absl::Seconds(20));
    ::shutdown(fd->get(), SHUT_WR);
  });
  auto got = tu::ReadAll(fd->get(), absl::Seconds(20));
  writer.join();
  ASSERT_TRUE(wrote.ok()) << wrote;
  ASSERT_TRUE(got.ok()) << got.status() << "\nwrench said: " << Stderr();
  EXPECT_EQ(got->size(), data.size());
  EXPECT_TRUE(*got == data) << "the echo differs";
  Stop();
  std::string err = Stderr();
  EXPECT_NE(err.find("server leg connected"), std::string::npos) << err;
  EXPECT_NE(err.find("bytes to server 307200, to client 307200"), std::string::npos) << err;
}

TEST_F(ServeTest, CloseWaitLeakShowsAsFinWait2) {
  ASSERT_NO_FATAL_FAILURE(Start({}, /*leak=*/true));
  auto fd = Connect();
  ASSERT_TRUE(fd.ok()) << fd.status();
  ASSERT_TRUE(tu::WriteAll(fd->get(), "hello", absl::Seconds(5)).ok());
  ::shutdown(fd->get(), SHUT_WR);
  // The echo arrives; the server's FIN never does.
  auto got = tu::ReadAll(fd->get(), absl::Seconds(1), 5);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "hello");
  auto more = tu::ReadAll(fd->get(), absl::Milliseconds(1500));
  EXPECT_FALSE(more.ok()) << "the server closed after all";
  Stop();
  // The server's FIN comes only when SIGTERM ends it: FIN-WAIT-2 lasted until then.
  double fin_wait_2_at = -1, server_fin_at = -1;
  for (const Json& j : log_) {
    if (j.value("hook", "") != "from-server") continue;
    if (fin_wait_2_at < 0 && j.value("after", "") == "FIN-WAIT-2")
      fin_wait_2_at = j.value("t", 0.0);
    if (server_fin_at < 0 && j.value("flags", "").find("FIN") != std::string::npos)
      server_fin_at = j.value("t", 0.0);
  }
  EXPECT_GE(fin_wait_2_at, 0) << "wrench's server leg never reached FIN-WAIT-2\n" << Stderr();
  if (server_fin_at >= 0) {
    EXPECT_GE(server_fin_at - fin_wait_2_at, 1.0) << "the server closed on its own";
  }
}

TEST_F(ServeTest, RuleOnTheServerLegFires) {
  ASSERT_NO_FATAL_FAILURE(Start({"drop on=from-server flags=SYN+ACK nth=1"}, /*leak=*/false));
  absl::Time t0 = absl::Now();
  auto fd = Connect();
  ASSERT_TRUE(fd.ok()) << fd.status();
  ASSERT_TRUE(tu::WriteAll(fd->get(), "ping", absl::Seconds(5)).ok());
  ::shutdown(fd->get(), SHUT_WR);
  auto got = tu::ReadAll(fd->get(), absl::Seconds(10));
  absl::Duration took = absl::Now() - t0;
  ASSERT_TRUE(got.ok()) << got.status() << "\nwrench said: " << Stderr();
  EXPECT_EQ(*got, "ping");
  // The lost SYN-ACK costs the server leg one SYN retransmission (1 s).
  EXPECT_GE(took, absl::Milliseconds(900));
  EXPECT_LT(took, absl::Seconds(5));
  Stop();
  int dropped = 0, syns = 0;
  for (const Json& j : log_) {
    if (j.value("hook", "") == "from-server" && j.value("rule", 0) == 1) ++dropped;
    if (j.value("hook", "") == "to-server" && j.value("flags", "") == "SYN") ++syns;
  }
  EXPECT_EQ(dropped, 1);
  EXPECT_EQ(syns, 2);
}

TEST_F(ServeTest, RstInPlaceOfWrenchsFinToTheServerIsTheOnlyOne) {
  // Every FIN toward the server is to be replaced: a leg left in FIN-WAIT-1 would send
  // its FIN again after an RTO, and the rule would fire a second time.
  ASSERT_NO_FATAL_FAILURE(Start({"rst on=to-server has=FIN"}, /*leak=*/false));
  auto fd = Connect();
  ASSERT_TRUE(fd.ok()) << fd.status();
  ASSERT_TRUE(tu::WriteAll(fd->get(), "ping", absl::Seconds(5)).ok());
  absl::SleepFor(absl::Milliseconds(200));  // the echo is back before the half-close
  ::shutdown(fd->get(), SHUT_WR);
  absl::Time start = absl::Now();
  auto got = tu::ReadAll(fd->get(), absl::Seconds(5));
  EXPECT_FALSE(got.ok()) << "the client is reset, not closed";
  EXPECT_LT(absl::Now() - start, absl::Seconds(1)) << "the client was reset late";
  absl::SleepFor(absl::Milliseconds(2500));  // past the 1 s initial RTO, twice
  Stop();
  int fired = 0, fins = 0;
  for (const Json& j : log_) {
    if (j.value("hook", "") != "to-server") continue;
    if (j.value("rule", 0) == 1) ++fired;
    if (j.value("flags", "").find("FIN") != std::string::npos) ++fins;
  }
  EXPECT_EQ(fired, 1) << "the FIN was sent again and replaced again";
  EXPECT_EQ(fins, 1);
}

}  // namespace
}  // namespace wrench::proxy
