// wrench's TcpEndpoint against the Linux kernel (tests/tcp_diff.h): every script in
// tests/diff/ is played into both, and the test fails on any difference that is not
// in kKnownDifferences below (README "stack/: what the TCP endpoint does", "Compared
// with Linux", lists the same entries). Each script's side-by-side report is printed
// and written to tcp_diff_reports/<script>.txt in the working directory (ctest: the
// build's tests/ directory), or to $WRENCH_DIFF_REPORT_DIR when that is set.
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "tests/netns_testing.h"
#include "tests/tcp_diff.h"

namespace wrench::tcpdiff {
namespace {

// Differences seen and accepted, each with its reason. A script name or "*"; the
// difference's kind; a substring of its text. An entry no script matches any more
// is printed as stale (not a failure), so the list can be pruned after a change.
constexpr KnownDifference kKnownDifferences[] = {
    {"*", "wscale", ", wrench 3",
     "the shift follows the receive buffer: Linux's tcp_rmem maximum (32 MiB on 6.x "
     "kernels) needs 10, wrench's 256 KiB ring needs 3"},
    {"*", "psh", "",
     "Linux sets PSH on the last segment of each socket buffer it built (TSO autosizing "
     "makes them two MSS here) and at the end of a write; wrench only on the segment "
     "that empties its send queue. Receivers do not act on PSH"},
};

std::string ScriptDir() { return absl::StrCat(WRENCH_SOURCE_DIR, "/tests/diff"); }

std::vector<std::string> ScriptNames() {
  std::vector<std::string> names;
  DIR* dir = ::opendir(ScriptDir().c_str());
  if (dir == nullptr) return names;
  for (int i = 0; i < 10000; ++i) {
    dirent* ent = ::readdir(dir);
    if (ent == nullptr) break;
    absl::string_view n = ent->d_name;
    if (absl::ConsumeSuffix(&n, ".pkt")) names.emplace_back(n);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteReport(const std::string& name, const std::string& text) {
  const char* env = std::getenv("WRENCH_DIFF_REPORT_DIR");
  const std::string dir = env != nullptr && *env != '\0' ? env : "tcp_diff_reports";
  ::mkdir(dir.c_str(), 0755);
  std::ofstream(absl::StrCat(dir, "/", name, ".txt")) << text;
}

class TcpDiff : public ::testing::TestWithParam<std::string> {};

TEST_P(TcpDiff, SameAsLinux) {
  const std::string name = GetParam();
  absl::StatusOr<Script> script =
      ParseScript(name, ReadFile(absl::StrCat(ScriptDir(), "/", name, ".pkt")));
  ASSERT_TRUE(script.ok()) << name << ".pkt: " << script.status();
  WRENCH_ENTER_NETNS_OR_SKIP();

  const Trace wrench = RunWrench(*script, DiffConfig());
  const Trace linux = RunLinux(*script);
  const Comparison c = Compare(*script, linux, wrench);

  std::string report = c.report;
  int unexplained = 0;
  absl::StrAppend(&report, "differences: ", c.differences.size(), "\n");
  for (const Difference& d : c.differences) {
    const KnownDifference* k = FindKnown(kKnownDifferences, name, d);
    if (k == nullptr) ++unexplained;
    absl::StrAppend(&report, k ? "  [known] " : "  [NEW]   ", d.kind, ": ", d.text, "\n");
    if (k) absl::StrAppend(&report, "            because ", k->reason, "\n");
  }
  std::cout << report << std::flush;
  WriteReport(name, report);
  EXPECT_EQ(unexplained, 0) << unexplained << " difference(s) not in the known list; see the report above";
}

INSTANTIATE_TEST_SUITE_P(Scripts, TcpDiff, ::testing::ValuesIn(ScriptNames()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string n = info.param;
                           for (char& ch : n) {
                             if (!absl::ascii_isalnum(static_cast<unsigned char>(ch))) ch = '_';
                           }
                           return n;
                         });

// The parser refuses what it does not understand, with the line.
TEST(TcpDiffScript, ParsesAndRefusesWithTheLine) {
  absl::StatusOr<Script> s = ParseScript("t",
                                         "# what it checks\n"
                                         "mode active\n"
                                         "tail 2\n"
                                         "0 connect\n"
                                         "+0.1 < S. 0:0(0) ack 1 win 1000 <mss 536,sackOK,TS val 5 ecr 0,nop,wscale 2>\n"
                                         "+0 > . 1:1(0) ack 1 <TS val * ecr 5>\n"
                                         "+0.2 < P. 1:101(100) ack 1 win 1000 <sack 1:5 10:20>\n");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_FALSE(s->passive);
  EXPECT_EQ(s->description, "what it checks\n");
  ASSERT_EQ(s->events.size(), 4u);
  EXPECT_EQ(s->events[1].at, absl::Milliseconds(100));
  EXPECT_EQ(s->events[1].seg.mss, 536);
  EXPECT_EQ(s->events[1].seg.wscale, 2);
  EXPECT_EQ(s->events[2].kind, EventKind::kExpect);
  EXPECT_TRUE(s->events[2].seg.ts_val_any);
  EXPECT_EQ(s->events[3].at, absl::Milliseconds(300));
  EXPECT_EQ(s->events[3].seg.len, 100u);
  EXPECT_EQ(s->events[3].seg.sack.size(), 2u);

  absl::StatusOr<Script> bad = ParseScript("t", "0 < S 0:0(0)\n+0.1 < X 0:0(0)\n");
  ASSERT_FALSE(bad.ok());
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "line 2")) << bad.status();
  EXPECT_FALSE(ParseScript("t", "0 < S 0:5(4)\n").ok());        // end - start != len
  EXPECT_FALSE(ParseScript("t", "0.5 read\n0.1 read\n").ok());  // backwards
}

// Every script in tests/diff parses and says what it checks (no network needed).
TEST(TcpDiffScript, EveryScriptParses) {
  const std::vector<std::string> names = ScriptNames();
  EXPECT_GE(names.size(), 25u);
  for (const std::string& n : names) {
    absl::StatusOr<Script> s = ParseScript(n, ReadFile(absl::StrCat(ScriptDir(), "/", n, ".pkt")));
    EXPECT_TRUE(s.ok()) << n << ".pkt: " << s.status();
    if (s.ok()) {
      EXPECT_FALSE(s->description.empty()) << n << ".pkt says nothing about what it checks";
    }
  }
}

}  // namespace
}  // namespace wrench::tcpdiff
