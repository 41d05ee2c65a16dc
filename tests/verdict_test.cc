// Verdicts of real runs: `wrench exec`, `proxy` and `serve` with --expect,
// --expect-all-rules-fire, --summary-json and --linger, and `wrench scenario check`
// over the whole library. Each test runs in a network namespace it creates; the
// server is a kernel socket on that namespace's loopback, reached from inside `wrench
// exec` at the gateway 10.89.0.1.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "proxy/cli/scenario_check.h"
#include "proxy/fault/scenarios.h"
#include "tests/netns_testing.h"

namespace wrench::proxy {
namespace {

namespace tu = ::wrench::proxy::testing;
using ::testing::HasSubstr;
using ::testing::Not;
using Json = nlohmann::json;

const stack::IpAddress kLoopback = stack::IpAddress::V4(0x7f000001);
constexpr uint16_t kPort = 8000;

// A client that sends "GET\n", reads `n` bytes and exits at once, closing without
// waiting for the server's FIN (as curl does once it has Content-Length bytes).
std::string QuickClient(size_t n) {
  return absl::StrCat("python3 -c 'import socket; s = socket.create_connection((\"10.89.0.1\", ",
                      kPort, ")); s.sendall(b\"GET\\n\"); got = 0\nwhile got < ", n,
                      ":\n  b = s.recv(65536)\n  if not b: break\n  got += len(b)\ns.close()'");
}

// The scripted client of the scenario tests: reads to end-of-file.
std::string ReadingClient(size_t n) {
  return absl::StrCat("python3 ", WRENCH_SOURCE_DIR, "/tests/scenario/client.py request 10.89.0.1 ",
                      kPort, " ", n);
}

class VerdictTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status st = tu::EnterFreshNetworkNamespace();
    if (!st.ok()) GTEST_SKIP() << "needs a network namespace of its own: " << st;
    if (std::system("command -v python3 >/dev/null") != 0) GTEST_SKIP() << "python3 is needed";
    char dir[] = "/tmp/wrench-verdict-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    server_.reset();
    if (!dir_.empty()) std::system(absl::StrCat("rm -rf ", dir_).c_str());
  }

  // The server reads a request line, answers `n` bytes and closes.
  void Serve(size_t n) {
    auto s = tu::TcpServer::Start(kLoopback, kPort, [n](int fd) {
      char c;
      for (int i = 0; i < 4096; ++i) {
        if (::recv(fd, &c, 1, 0) <= 0 || c == '\n') break;
      }
      (void)tu::WriteAll(fd, std::string(n, 'r'), absl::Seconds(30));
    });
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }

  // Runs a wrench command line; returns its exit status, with its stderr in err_.
  int Wrench(const std::string& args) {
    std::string cmd =
        absl::StrCat(WRENCH_BINARY, " ", args, " >", dir_, "/stdout 2>", dir_, "/stderr");
    int st = std::system(cmd.c_str());
    err_ = Slurp("stderr");
    out_ = Slurp("stdout");
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  }

  std::string Slurp(const std::string& name) {
    std::ifstream f(absl::StrCat(dir_, "/", name));
    return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  }

  Json Summary() {
    Json j = Json::parse(Slurp("summary.json"), nullptr, false);
    EXPECT_FALSE(j.is_discarded()) << "no summary; wrench said: " << err_;
    return j.is_discarded() ? Json::object() : j;
  }
  std::string SummaryFlag() { return absl::StrCat("--summary-json=", dir_, "/summary.json"); }

  std::unique_ptr<tu::TcpServer> server_;
  std::string dir_, err_, out_;
};

// --- each kind of expectation, passing and failing against a real run --------

TEST_F(VerdictTest, RuleHitsPassWhenTheRuleFired) {
  Serve(100);
  EXPECT_EQ(Wrench(absl::StrCat(
                "exec --rule='drop on=to-client flags=SYN+ACK nth=1' --expect='rule 1 hits>=1' -- ",
                ReadingClient(100))),
            0)
      << err_;
  EXPECT_THAT(err_, HasSubstr("expect rule 1 hits>=1: pass (1)"));
}

TEST_F(VerdictTest, RuleThatNeverFiredFailsWithExitThree) {
  Serve(100);
  // One connection has one SYN-ACK: nth=2 never comes.
  EXPECT_EQ(Wrench(absl::StrCat(
                "exec --rule='drop on=to-client flags=SYN+ACK nth=2' --expect='rule 1 hits>=1' ",
                SummaryFlag(), " -- ", ReadingClient(100))),
            3)
      << err_;
  EXPECT_THAT(err_, HasSubstr("expect rule 1 hits>=1: FAIL (0)"));
  Json j = Summary();
  EXPECT_EQ(j["verdict"], "fail");
  EXPECT_EQ(j["exit_status"], 3);
  EXPECT_EQ(j["command_status"], 0);
  EXPECT_EQ(j["expectations"][0]["pass"], false);
}

TEST_F(VerdictTest, ExpectAllRulesFireNamesTheRuleThatDidNot) {
  Serve(100);
  std::ofstream(absl::StrCat(dir_, "/two.rules"))
      << "drop on=to-client flags=SYN+ACK nth=1\n"
      << "rst on=to-client has=RST\n";  // never: wrench sends no RST
  EXPECT_EQ(Wrench(absl::StrCat("exec --rules=", dir_, "/two.rules --expect-all-rules-fire -- ",
                                ReadingClient(100))),
            3)
      << err_;
  EXPECT_THAT(err_, HasSubstr("expect rule 1 hits>=1: pass (1)"));
  EXPECT_THAT(err_, HasSubstr("expect rule 2 hits>=1: FAIL (0)"));
}

TEST_F(VerdictTest, CommandFailureTakesPrecedenceOverAFailedExpectation) {
  Serve(100);
  EXPECT_EQ(Wrench("exec --expect='connections>=1' -- sh -c 'exit 5'"), 5) << err_;
  EXPECT_THAT(err_, HasSubstr("expect connections>=1: FAIL (0)"));
}

TEST_F(VerdictTest, ConnectionLegStatesAreTheFinalOnes) {
  Serve(100);
  // The server closes first: wrench's client leg ends in TIME-WAIT (2*MSL = 60 s).
  EXPECT_EQ(Wrench(absl::StrCat("exec --expect='conn 1 client=TIME-WAIT' -- ", ReadingClient(100))),
            0)
      << err_;
  EXPECT_EQ(
      Wrench(absl::StrCat("exec --expect='conn 1 client=ESTABLISHED' -- ", ReadingClient(100))), 3)
      << err_;
  EXPECT_THAT(err_, HasSubstr("expect conn 1 client=ESTABLISHED: FAIL (TIME-WAIT)"));
  EXPECT_EQ(Wrench(absl::StrCat("exec --expect='conn 1 server=SOCKET-CLOSED-BOTH-WAYS' -- ",
                                ReadingClient(100))),
            0)
      << err_;
  // The client's FIN may carry the ACK of ours (FIN-WAIT-1 -> TIME-WAIT, docs/stack.md),
  // so the leg surely visits FIN-WAIT-1, not necessarily FIN-WAIT-2.
  EXPECT_EQ(Wrench(absl::StrCat("exec --expect='conn 1 client-visited=FIN-WAIT-1' -- ",
                                ReadingClient(100))),
            0)
      << err_;
  EXPECT_EQ(Wrench(absl::StrCat("exec --expect='conn 2 client=CLOSED' -- ", ReadingClient(100))), 3)
      << err_;
  EXPECT_THAT(err_, HasSubstr("FAIL (no connection 2 (the run had 1))"));
}

TEST_F(VerdictTest, ResetsCountAndConnectionErrors) {
  Serve(300'000);
  EXPECT_EQ(Wrench(absl::StrCat("exec --scenario=rst-mid-transfer --expect='resets>=1' ",
                                SummaryFlag(), " -- ", ReadingClient(300'000))),
            0)
      << err_;
  Json j = Summary();
  ASSERT_EQ(j["connections"].size(), 1u);
  EXPECT_FALSE(j["connections"][0]["errors"].empty()) << j.dump(2);
  EXPECT_EQ(Wrench(absl::StrCat("exec --scenario=rst-mid-transfer --expect='resets==0' -- ",
                                ReadingClient(300'000))),
            3)
      << err_;
  EXPECT_EQ(Wrench(absl::StrCat("exec --scenario=rst-mid-transfer --expect='conn 1 errors==0' -- ",
                                ReadingClient(300'000))),
            3)
      << err_;
}

TEST_F(VerdictTest, ConnectionsAndBytesCount) {
  Serve(100);
  EXPECT_EQ(Wrench(absl::StrCat("exec --expect='connections==1' -- ", ReadingClient(100))), 0)
      << err_;
  EXPECT_EQ(Wrench(absl::StrCat("exec --expect='connections>=3' -- ", ReadingClient(100))), 3)
      << err_;
  EXPECT_THAT(err_, HasSubstr("expect connections>=3: FAIL (1)"));
  EXPECT_EQ(Wrench(absl::StrCat("exec --expect='bytes-to-client==100' -- ", ReadingClient(100))), 0)
      << err_;
  EXPECT_EQ(Wrench(absl::StrCat("exec --expect='bytes>=1000' -- ", ReadingClient(100))), 3) << err_;
  EXPECT_THAT(err_, HasSubstr("expect bytes>=1000: FAIL (104)"));  // "GET\n" and the answer
}

TEST_F(VerdictTest, ABadExpectationIsRefusedAtStartWithColumnAndGuess) {
  EXPECT_EQ(Wrench("exec --rule='drop flags=SYN' --expect='rule 1 hist>=1' -- true"), 2);
  EXPECT_THAT(err_, HasSubstr("column 8"));
  EXPECT_THAT(err_, HasSubstr("did you mean hits?"));
  EXPECT_EQ(Wrench("exec --expect='rule 1 hits>=1' -- true"), 2);
  EXPECT_THAT(err_, HasSubstr("there is no rule 1"));
}

// --- the summary ---------------------------------------------------------------

TEST_F(VerdictTest, SummaryJsonOfExec) {
  Serve(100);
  ASSERT_EQ(Wrench(absl::StrCat(
                "exec --rule='drop on=to-client flags=SYN+ACK nth=1' --expect='rule 1 hits==1' ",
                SummaryFlag(), " -- ", ReadingClient(100))),
            0)
      << err_;
  Json j = Summary();
  EXPECT_EQ(j["command"], "exec");
  EXPECT_EQ(j["verdict"], "pass");
  EXPECT_EQ(j["exit_status"], 0);
  EXPECT_EQ(j["rules"][0]["text"], "drop on=to-client flags=SYN+ACK nth=1");
  EXPECT_EQ(j["rules"][0]["hits"], 1);
  EXPECT_EQ(j["totals"]["connections"], 1);
  EXPECT_EQ(j["totals"]["bytes_to_client"], 100);
  EXPECT_EQ(j["totals"]["bytes_to_server"], 4);
  ASSERT_EQ(j["connections"].size(), 1u);
  const Json& c = j["connections"][0];
  EXPECT_EQ(c["upstream"], absl::StrCat("127.0.0.1:", kPort));
  EXPECT_EQ(c["client_leg"], "TIME-WAIT");
  EXPECT_EQ(c["bytes_to_client"], 100);
  EXPECT_TRUE(c["errors"].empty());
  EXPECT_EQ(j["expectations"][0]["expect"], "rule 1 hits==1");
  EXPECT_EQ(j["expectations"][0]["actual"], "1");
}

// Starts `wrench ARGS` in the background, lets `during` run, then sends `sig`.
int RunUntilSignal(const std::string& args, const std::function<void()>& during, int sig,
                   std::string* err, const std::string& dir) {
  ::unlink(absl::StrCat(dir, "/stderr").c_str());  // "ready" must be this run's
  pid_t pid = ::fork();
  if (pid == 0) {
    std::string cmd = absl::StrCat("exec ", WRENCH_BINARY, " ", args, " 2>", dir, "/stderr");
    ::execl("/bin/sh", "sh", "-c", cmd.c_str(), nullptr);
    ::_exit(127);
  }
  // Ready when it says so (bounded).
  for (int i = 0; i < 500; ++i) {
    std::ifstream f(absl::StrCat(dir, "/stderr"));
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (s.find("wrench: ready") != std::string::npos) break;
    absl::SleepFor(absl::Milliseconds(10));
  }
  during();
  ::kill(pid, sig);
  int st = 0;
  ::waitpid(pid, &st, 0);
  std::ifstream f(absl::StrCat(dir, "/stderr"));
  err->assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

TEST_F(VerdictTest, ProxyWritesTheSummaryOnSigtermAndFailsAnExpectationWithThree) {
  Serve(100);
  auto one_connection = [] {
    auto fd = tu::ConnectTo(stack::IpAddress::V4(0x0a590002), 80, absl::Seconds(5));
    ASSERT_TRUE(fd.ok()) << fd.status();
    ASSERT_TRUE(tu::WriteAll(fd->get(), "GET\n", absl::Seconds(5)).ok());
    auto r = tu::ReadAll(fd->get(), absl::Seconds(5));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->size(), 100u);
  };
  std::string map = absl::StrCat("--map=10.89.0.2:80=127.0.0.1:", kPort);
  EXPECT_EQ(
      RunUntilSignal(absl::StrCat("proxy ", map, " --expect='connections==1' ", SummaryFlag()),
                     one_connection, SIGTERM, &err_, dir_),
      0)
      << err_;
  Json j = Summary();
  EXPECT_EQ(j["command"], "proxy");
  EXPECT_EQ(j["verdict"], "pass");
  EXPECT_EQ(j["connections"].size(), 1u);
  EXPECT_EQ(
      RunUntilSignal(absl::StrCat("proxy ", map, " --expect='connections==2' ", SummaryFlag()),
                     one_connection, SIGINT, &err_, dir_),
      3)
      << err_;
  EXPECT_THAT(err_, HasSubstr("expect connections==2: FAIL (1)"));
  EXPECT_EQ(Summary()["verdict"], "fail");
}

TEST_F(VerdictTest, ServeWritesTheSummaryOnSigint) {
  EXPECT_EQ(RunUntilSignal(
                absl::StrCat("serve --api=127.0.0.1:0 --expect='connections==0' ", SummaryFlag()),
                [] {}, SIGINT, &err_, dir_),
            0)
      << err_;
  Json j = Summary();
  EXPECT_EQ(j["command"], "serve");
  EXPECT_EQ(j["verdict"], "pass");
  EXPECT_EQ(j["totals"]["connections"], 0);
}

// --- --linger and the no-connection warning --------------------------------------

TEST_F(VerdictTest, LingerLetsADelayedFinReachTheWire) {
  Serve(100);
  // fin-delayed holds wrench's FIN 2 s; the client has exited long before. Whichever
  // side's FIN came first, wrench's client leg waits in CLOSING or LAST-ACK for the
  // ACK of its own FIN, which the client's kernel sends only once the FIN is on the
  // wire: then it goes on to TIME-WAIT or CLOSED.
  ASSERT_EQ(Wrench(absl::StrCat("exec --scenario=fin-delayed --linger=5s ", SummaryFlag(), " -- ",
                                QuickClient(100))),
            0)
      << err_;
  Json j = Summary();
  ASSERT_EQ(j["connections"].size(), 1u) << j.dump(2);
  std::string final_state = j["connections"][0]["client_leg"];
  EXPECT_TRUE(final_state == "TIME-WAIT" || final_state == "CLOSED") << j.dump(2);
  EXPECT_TRUE(j["connections"][0]["errors"].empty()) << j.dump(2);
  // Without --linger wrench stops with the FIN still held.
  ASSERT_EQ(
      Wrench(absl::StrCat("exec --scenario=fin-delayed ", SummaryFlag(), " -- ", QuickClient(100))),
      0)
      << err_;
  j = Summary();
  ASSERT_EQ(j["connections"].size(), 1u) << j.dump(2);
  final_state = j["connections"][0]["client_leg"];
  EXPECT_TRUE(final_state == "CLOSING" || final_state == "LAST-ACK") << j.dump(2);
}

TEST_F(VerdictTest, NoConnectionWarnsWhy) {
  Serve(100);
  EXPECT_EQ(Wrench(absl::StrCat("exec ", SummaryFlag(), " -- true")), 0) << err_;
  EXPECT_THAT(err_, HasSubstr("warning: COMMAND opened no TCP connection"));
  EXPECT_THAT(err_, HasSubstr("the caller's 127.0.0.1 is 10.89.0.1"));
  EXPECT_THAT(err_, HasSubstr("its ::1 is fd89:2e6c:4f1a:5900::1"));
  Json j = Summary();
  ASSERT_EQ(j["warnings"].size(), 1u);
  EXPECT_THAT(j["warnings"][0].get<std::string>(), HasSubstr("localhost"));
  // A connection: no warning.
  EXPECT_EQ(Wrench(absl::StrCat("exec -- ", ReadingClient(100))), 0) << err_;
  EXPECT_THAT(err_, Not(HasSubstr("warning")));
}

// README "Using wrench in CI": the job's two wrench commands as the README writes
// them, run in a work directory, with a stand-in for the program's tests: a client
// of the web server on the runner's 127.0.0.1, which exec reaches as 10.89.0.1.
TEST_F(VerdictTest, TheCiRecipeRunsAsTheReadmeWritesIt) {
  ASSERT_EQ(
      std::system(absl::StrCat("cd ", dir_, " && echo hello >index.html && ",
                               "(python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1 & ",
                               "echo $! >server.pid)")
                      .c_str()),
      0);
  std::ofstream(absl::StrCat(dir_, "/run-tests"))
      << "#!/bin/sh\n"
         "[ \"$1\" = --server ] || exit 2\n"
         "exec python3 -c 'import sys, urllib.request; "
         "sys.exit(urllib.request.urlopen(sys.argv[1] + \"/\", timeout=10).read() != "
         "b\"hello\\n\")' \"$2\"\n";
  ASSERT_EQ(::chmod(absl::StrCat(dir_, "/run-tests").c_str(), 0755), 0);
  // The server is up once it answers (bounded: 10 s).
  ASSERT_EQ(
      std::system("for i in $(seq 100); do python3 -c 'import socket; "
                  "socket.create_connection((\"127.0.0.1\", 8000), 1)' 2>/dev/null && exit 0; "
                  "sleep 0.1; done; exit 1"),
      0);
  const std::string wrench = WRENCH_BINARY;
  const std::string job =
      absl::StrCat("cd ", dir_, " && mkdir -p wrench-out && ", wrench, " exec --scenario fin-lost ",
                   "--expect-all-rules-fire --expect 'resets==0' --linger 5s ",
                   "--pcap wrench-out/run.pcap --log wrench-out/run.jsonl --summary-json "
                   "wrench-out/summary.json ",
                   "-- ./run-tests --server http://10.89.0.1:8000 2>stderr && ", wrench,
                   " ladder --out=wrench-out/ladder.html wrench-out/run.jsonl 2>>stderr");
  const int status = std::system(job.c_str());
  err_ = Slurp("stderr");
  std::system(absl::StrCat("kill $(cat ", dir_, "/server.pid)").c_str());
  ASSERT_EQ(status, 0) << err_;
  EXPECT_THAT(err_, HasSubstr("expect rule 1 hits>=1: pass"));
  EXPECT_THAT(err_, HasSubstr("expect resets==0: pass"));
  for (const char* f : {"run.pcap", "run.jsonl", "summary.json", "ladder.html"}) {
    EXPECT_FALSE(Slurp(absl::StrCat("wrench-out/", f)).empty()) << f;
  }
}

// --- wrench scenario check -------------------------------------------------------

TEST(ScenarioCheck, EveryScenarioDeclaresWhatItChecks) {
  for (const Scenario& s : Scenarios()) {
    auto c = ParseScenarioCheck(s);
    EXPECT_TRUE(c.ok()) << c.status();
  }
}

TEST_F(VerdictTest, ScenarioCheckPassesForTheWholeLibrary) {
  int status = Wrench("scenario check");
  EXPECT_EQ(status, 0) << out_ << err_;
  for (const Scenario& s : Scenarios())
    EXPECT_THAT(out_, HasSubstr(absl::StrCat(s.name, ": pass"))) << out_;
}

TEST_F(VerdictTest, ScenarioCheckOfAnUnknownName) {
  EXPECT_EQ(Wrench("scenario check syn-lots"), 2);
  EXPECT_THAT(err_, HasSubstr("no scenario \"syn-lots\""));
}

}  // namespace
}  // namespace wrench::proxy
