// `wrench explore` (proxy/cli/explore.h, proxy/cli/cmd_explore.cc): the simplifications and the
// greedy shrinking against a scripted failure predicate, then the command itself run
// for real against deliberately fragile programs of tests/ (a client without a read
// timeout; Node's keep-alive agent) and a robust one, in a network namespace the test
// creates, with small budgets.
#include "proxy/cli/explore.h"

#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/http_servers_testing.h"
#include "tests/netns_testing.h"

namespace wrench::proxy {
namespace {

namespace tu = ::wrench::proxy::testing;
using Json = nlohmann::json;
using ::testing::ElementsAre;

std::vector<Rule> Rules(std::vector<std::string> lines) {
  std::vector<Rule> out;
  for (const std::string& l : lines) {
    absl::StatusOr<Rule> r = ParseRule(l);
    EXPECT_TRUE(r.ok()) << l << ": " << r.status();
    if (r.ok()) out.push_back(*r);
  }
  return out;
}

std::vector<std::string> Texts(const std::vector<Rule>& rules) {
  std::vector<std::string> out;
  for (const Rule& r : rules) out.push_back(ToString(r));
  return out;
}

// ---- the search, without running anything ----

TEST(ExploreSimplifications, RemoveRulesFirstThenNarrowEachRule) {
  std::vector<std::vector<std::string>> got;
  for (const auto& c : Simplifications(
           Rules({"drop on=to-client has=FIN p=0.5", "delay 1s~100ms on=from-server"}))) {
    got.push_back(Texts(c));
  }
  EXPECT_THAT(
      got,
      ElementsAre(
          ElementsAre("delay 1s~100ms on=from-server"),
          ElementsAre("drop on=to-client has=FIN p=0.5"),
          ElementsAre("drop on=to-client has=FIN", "delay 1s~100ms on=from-server"),
          ElementsAre("drop on=to-client conn=1 has=FIN p=0.5", "delay 1s~100ms on=from-server"),
          ElementsAre("drop on=to-client has=FIN p=0.5", "delay 1s~100ms on=from-server conn=1"),
          ElementsAre("drop on=to-client has=FIN count=1 p=0.5", "delay 1s~100ms on=from-server"),
          ElementsAre("drop on=to-client has=FIN p=0.5", "delay 1s~100ms on=from-server count=1"),
          ElementsAre("drop on=to-client has=FIN p=0.5", "delay 1s on=from-server"),
          ElementsAre("drop on=to-client has=FIN p=0.5", "delay 500ms~100ms on=from-server")));
}

TEST(ExploreSimplifications, NothingLeftToSimplify) {
  EXPECT_TRUE(Simplifications(Rules({"blackhole on=to-client conn=1 nth=2"})).empty());
  EXPECT_TRUE(Simplifications(Rules({"delay 10ms conn=1 count=1"})).empty());
}

TEST(ExploreShrink, KeepsTheOneRuleThatMattersAndTheSmallestDelayThatStillFails) {
  // The "test" fails while some rule delays the FIN toward the client by 300ms or more.
  int runs = 0;
  auto run = [&](const std::vector<Rule>& rules) {
    ++runs;
    TestRun r;
    for (const Rule& rule : rules) {
      const auto* d = std::get_if<DelayAction>(&rule.action);
      if (d && d->delay >= absl::Milliseconds(300) &&
          rule.flags_has == stack::TcpFlags(stack::kFin))
        r.failed = true;
    }
    return r;
  };
  int spent = 0;
  std::vector<Rule> minimal =
      Shrink(Rules({"dup on=from-client", "delay 2s~1s on=to-client has=FIN p=0.9",
                    "rst on=from-server nth=3"}),
             run, 100, &spent);
  EXPECT_THAT(Texts(minimal), ElementsAre("delay 500ms on=to-client conn=1 has=FIN count=1"));
  EXPECT_EQ(spent, runs);
}

TEST(ExploreShrink, StopsAtItsRunBudget) {
  int runs = 0;
  auto always = [&](const std::vector<Rule>&) {
    ++runs;
    return TestRun{.failed = true};
  };
  Shrink(Rules({"drop p=0.5", "dup", "rst", "delay 3s"}), always, 3);
  EXPECT_EQ(runs, 3);
}

TEST(ExploreSchedules, TheLibraryFirstThenSeededRandomRulesExecAccepts) {
  ScheduleSource a(7), b(7);
  bool random_seen = false;
  for (int i = 0; i < 200; ++i) {
    Schedule s = a.Next(), t = b.Next();
    EXPECT_EQ(s.origin, t.origin);
    EXPECT_EQ(Texts(s.rules), Texts(t.rules));
    if (i == 0) {
      EXPECT_TRUE(absl::StartsWith(s.origin, "scenario ")) << s.origin;
    }
    if (!absl::StartsWith(s.origin, "random ")) continue;
    random_seen = true;
    EXPECT_GE(s.rules.size(), 1u);
    EXPECT_LE(s.rules.size(), 3u);
    for (const Rule& r : s.rules) {
      EXPECT_TRUE(ValidateRule(r).ok()) << ToString(r);
      const bool server_leg = r.hooks.has(Hook::kFromServer) || r.hooks.has(Hook::kToServer);
      if (server_leg) {
        EXPECT_TRUE(KindOf(r.action) == ActionKind::kDelay || KindOf(r.action) == ActionKind::kRst)
            << ToString(r);
      }
    }
  }
  EXPECT_TRUE(random_seen);
}

TEST(ExploreReport, JsonAndHtmlNameEveryFinding) {
  ExploreSummary s;
  s.command = {"python3", "client.py", "a b"};
  s.budget = "5";
  Finding f;
  f.dir = "finding-1";
  f.origin = "scenario fin-wait-2-hang";
  f.original = f.minimal = Rules({"drop on=to-client has=FIN"});
  f.reruns = f.rerun_failures = 3;
  f.replay = "wrench exec --seed=5 --rules=out/finding-1/rules -- python3 client.py 'a b'";
  s.findings.push_back(f);
  Json j = Json::parse(ExploreJson(s));
  EXPECT_EQ(j["findings"][0]["verdict"], "deterministic");
  EXPECT_EQ(j["findings"][0]["rules"][0], "drop on=to-client has=FIN");
  const std::string html = ExploreReportHtml(s);
  EXPECT_TRUE(absl::StrContains(html, "drop on=to-client has=FIN")) << html;
  EXPECT_TRUE(absl::StrContains(html, "client.py &#39;a b&#39;") ||
              absl::StrContains(html, "client.py 'a b'"));
  EXPECT_TRUE(absl::StrContains(html, "finding-1/ladder.txt"));
}

// ---- the command, for real ----

struct Ran {
  int status = -1;
  std::string out;
};

// Runs `wrench explore ARGS` from the source tree; stdout only (progress goes to stderr).
Ran Explore(const std::string& args, const std::string& stderr_file) {
  Ran r;
  FILE* p = ::popen(absl::StrCat("cd ", WRENCH_SOURCE_DIR, " && ", WRENCH_BINARY, " explore ", args,
                                 " 2>", stderr_file)
                        .c_str(),
                    "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

class ExploreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status st = tu::EnterFreshNetworkNamespace();
    if (!st.ok()) GTEST_SKIP() << "needs a network namespace of its own: " << st;
    if (std::system("command -v python3 >/dev/null") != 0)
      GTEST_SKIP() << "python3 is not installed (scripts/install-deps.sh installs it)";
    char dir[] = "/tmp/wrench-explore-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    server_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  // HTTP/1.0 (one request, close) or HTTP/1.1 closing idle connections after 1 s.
  void Serve(bool keepalive) {
    auto s = tu::TcpServer::Start(
        stack::IpAddress::V4(0x7f000001), 8000,
        keepalive ? tu::KeepAliveServer(absl::Seconds(1)) : tu::OneShotServer());
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
  }
  std::string Stderr() {
    FILE* f = std::fopen((dir_ + "/stderr").c_str(), "r");
    std::string s;
    char buf[4096];
    size_t n;
    while (f && (n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
    if (f) std::fclose(f);
    return s;
  }

  std::unique_ptr<tu::TcpServer> server_;
  std::string dir_;
};

// The README's example.
TEST_F(ExploreTest, FindsTheLostFinThatHangsAClientWithoutReadTimeout) {
  Serve(/*keepalive=*/false);
  Ran r = Explore(absl::StrCat("--budget=5 --timeout=3s --out=", dir_,
                               "/out -- python3 tests/explore/fragile_client.py 10.89.0.1 8000"),
                  dir_ + "/stderr");
  EXPECT_EQ(r.status, 1) << Stderr();
  Json j = Json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out << Stderr();
  EXPECT_EQ(j["runs"], 5);
  ASSERT_GE(j["findings"].size(), 1u) << Stderr();
  const Json& f = j["findings"][0];
  EXPECT_EQ(f["origin"], "scenario fin-wait-2-hang");
  ASSERT_EQ(f["rules"].size(), 1u);
  EXPECT_TRUE(absl::StrContains(f["rules"][0].get<std::string>(), "drop on=to-client"))
      << f["rules"][0];
  EXPECT_TRUE(absl::StrContains(f["rules"][0].get<std::string>(), "has=FIN")) << f["rules"][0];
  EXPECT_EQ(f["verdict"], "deterministic");
  EXPECT_TRUE(f["timed_out"].get<bool>());
  const std::string finding = absl::StrCat(dir_, "/out/", f["dir"].get<std::string>());
  for (const char* file :
       {"rules", "seed", "replay.sh", "output.txt", "capture.pcap", "log.jsonl", "ladder.txt"}) {
    EXPECT_TRUE(std::filesystem::exists(finding + "/" + file)) << file;
  }
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/out/report.html"));
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/out/summary.json"));
  EXPECT_TRUE(absl::StrContains(Stderr(), "run 5/5")) << Stderr();
}

TEST_F(ExploreTest, FindsTheKeepaliveRaceOfNodesAgent) {
  if (std::system("command -v node >/dev/null") != 0)
    GTEST_SKIP() << "node is not installed (scripts/install-deps.sh installs Debian's nodejs)";
  Serve(/*keepalive=*/true);
  Ran r = Explore(
      absl::StrCat("--budget=3 --timeout=8s --reruns=2 --out=", dir_,
                   "/out -- node tests/scenario/keepalive_client.js http://10.89.0.1:8000/ 2000"),
      dir_ + "/stderr");
  EXPECT_EQ(r.status, 1) << Stderr();
  Json j = Json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out << Stderr();
  ASSERT_GE(j["findings"].size(), 1u) << Stderr();
  const Json& f = j["findings"][0];
  ASSERT_EQ(f["rules"].size(), 1u);
  EXPECT_TRUE(absl::StrContains(f["rules"][0].get<std::string>(), "has=FIN")) << f["rules"][0];
  std::ifstream out(absl::StrCat(dir_, "/out/", f["dir"].get<std::string>(), "/output.txt"));
  std::string text((std::istreambuf_iterator<char>(out)), std::istreambuf_iterator<char>());
  EXPECT_TRUE(absl::StrContains(text, "ECONNRESET")) << text;
}

TEST_F(ExploreTest, ReportsNothingForARobustClient) {
  Serve(/*keepalive=*/false);
  Ran r = Explore(absl::StrCat("--budget=5 --timeout=5s --out=", dir_,
                               "/out -- python3 tests/explore/robust_client.py 10.89.0.1 8000"),
                  dir_ + "/stderr");
  EXPECT_EQ(r.status, 0) << Stderr();
  Json j = Json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out << Stderr();
  EXPECT_EQ(j["runs"], 5);
  EXPECT_TRUE(j["findings"].empty()) << j.dump();
}

TEST_F(ExploreTest, ATimeBudgetStopsTheSearch) {
  Serve(/*keepalive=*/false);
  const absl::Time t0 = absl::Now();
  Ran r = Explore(absl::StrCat("--budget=2s --timeout=5s --out=", dir_,
                               "/out -- python3 tests/explore/robust_client.py 10.89.0.1 8000"),
                  dir_ + "/stderr");
  EXPECT_EQ(r.status, 0) << Stderr();
  EXPECT_LT(absl::Now() - t0, absl::Seconds(20));
  Json j = Json::parse(r.out, nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << r.out << Stderr();
  EXPECT_EQ(j["budget"], "2s");
  EXPECT_GE(j["runs"].get<int>(), 1);
}

TEST_F(ExploreTest, RefusesATestThatFailsWithoutFaults) {
  Ran r = Explore(absl::StrCat("--budget=2 --out=", dir_, "/out -- false"), dir_ + "/stderr");
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(absl::StrContains(Stderr(), "fails without any fault")) << Stderr();
}

TEST(ExploreCli, HelpAndBadOptions) {
  Ran help = Explore("--help", "/dev/null");
  EXPECT_EQ(help.status, 0);
  EXPECT_TRUE(absl::StrContains(help.out, "usage: wrench explore")) << help.out;
  EXPECT_EQ(Explore("--budget=lots -- true", "/dev/null").status, 2);
  EXPECT_EQ(Explore("--budget=5", "/dev/null").status, 2);
}

}  // namespace
}  // namespace wrench::proxy
