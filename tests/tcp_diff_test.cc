// wrench's TcpEndpoint against the Linux kernel (tests/tcp_diff.h): every script in
// tests/diff/ is played into both, and the test fails on any difference that is not
// in kKnownDifferences below (docs/stack.md, "Compared
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
// Both sides recover with SACK, RACK-TLP and an RTO of SRTT + max(4 RTTVAR, 200 ms);
// their timers still part by tens of milliseconds.
#define RTO_REARM                                                                            \
  "Linux restarts the retransmission timer when it retransmits the first unacknowledged " \
  "segment, and its timers run in jiffies, rounded up; wrench keeps the timer started by " \
  "the segment's first transmission (RFC 6298 §5.1), so its RTO and the backed-off ones " \
  "after it come 40-60 ms earlier here"
#define WINDOW_UPDATE_AFTER_READ                                                         \
  "wrench sends a window update when a read opens the window by an MSS; Linux only "   \
  "when the window at least doubles (tcp_cleanup_rbuf)"

constexpr KnownDifference kKnownDifferences[] = {
    // ---- everywhere ----
    {"*", "wscale", ", wrench 3",
     "the shift follows the receive buffer: Linux's tcp_rmem maximum (32 MiB on 6.x "
     "kernels) needs 10, wrench's 256 KiB ring needs 3"},
    {"*", "psh", "",
     "Linux sets PSH on the last segment of each socket buffer it built (TSO autosizing "
     "makes them two MSS here) and at the end of a write; wrench only on the segment "
     "that empties its send queue. Receivers do not act on PSH"},
    {"*", "app", "linux state CLOSED, wrench state TIME-WAIT",
     "the harness's view, not the wire: Linux moves a connection into a TIME-WAIT "
     "mini-socket and the application's socket then reports CLOSE"},
    // ---- timer granularity ----
    {"data_rto_backoff", "only-wrench", "wrench sent at 4.050 s",
     "Linux's timers run in jiffies (4 ms at HZ=250) and each backed-off RTO comes a few ms "
     "later than wrench's (2.109 s against 2.050 s for the fourth), so Linux's fifth "
     "retransmission falls after the script's end and wrench's just before it"},
    {"zero_window_probe", "time", "1:1449", RTO_REARM},
    {"data_multiple_loss_sack", "ecr", "TS ecr linux",
     "the four ACKs arrive 1 ms apart; wrench retransmits within the millisecond of the ACK "
     "that calls for it, Linux a tick or more later (several on a loaded machine), after "
     "later ACKs arrived, so its retransmissions echo their later TSval"},
    // ---- handshake ----
    {"handshake_passive_no_options", "window", "window linux 64240, wrench 65535",
     "Linux's first window is a multiple of the MSS below 64 KiB (tcp_select_initial_window); "
     "wrench offers as much of its buffer as 16 bits hold"},
    {"handshake_active_syn_retransmit", "time", "S 0:0(0)",
     "Linux 6.x retransmits the SYN linearly, 1 s apart, for its first "
     "net.ipv4.tcp_syn_linear_timeouts (4) retries, then backs off; wrench doubles from the start"},
    {"handshake_active_syn_retransmit", "only-linux", "S 0:0(0)", "as above: more SYNs in 7 s"},
    {"handshake_synsent_bad_ack", "time", "S 0:0(0)",
     "after answering a SYN-ACK with a bad ACK with RST, Linux retransmits its SYN at "
     "once; wrench waits for its retransmission timer"},
    {"handshake_synsent_bad_ack", "only-linux", "S 0:0(0)", "as above"},
    {"handshake_simultaneous_open", "only-linux", "sack 0:1",
     "Linux acknowledges the peer's SYN-ACK in SYN-RECEIVED with an ACK carrying a D-SACK "
     "of the repeated SYN; wrench completes the open silently (RFC 9293 Figure 8)"},
    {"handshake_no_sack", "only-wrench", "ack 2897", WINDOW_UPDATE_AFTER_READ},
    // ---- sender: loss recovery ----
    {"data_initial_window", "time", "",
     "Linux spreads the segments an ACK releases over a few milliseconds (two-MSS socket "
     "buffers, one every few ms here); wrench sends them all in answer to the ACK"},
    {"data_initial_window", "ecr", "", "as above: sent after a different ACK"},
    {"data_retransmission_lost", "time", "1:1449", RTO_REARM},
    {"data_tail_loss", "time", "13033:14481", RTO_REARM},
    // ---- receiver ----
    {"fin_with_data", "only-wrench", "ack 102",
     "wrench acknowledges a FIN at once; Linux holds the ACK of data+FIN (a FIN puts it in "
     "ping-pong mode) and it rides on the application's FIN 10 ms later"},
    {"recv_delayed_ack_interactive", "only-wrench", "",
     "no ping-pong mode in wrench: its first 16 segments are acknowledged at once (quick-ack), "
     "and the answer follows; Linux lets the ACK ride on the application's answer"},
    {"recv_delayed_ack_interactive", "time", ". 301:301(0)",
     "no ping-pong mode in wrench: Linux holds the ACK of an unanswered request for its "
     "delayed-ACK timeout (about 40 ms)"},
    {"recv_out_of_order_sack", "only-wrench", "ack 5793", WINDOW_UPDATE_AFTER_READ},
    {"recv_delayed_ack", "only-wrench", "ack 8789", WINDOW_UPDATE_AFTER_READ},
    {"recv_sack_many_holes", "only-wrench", "ack 11585", WINDOW_UPDATE_AFTER_READ},
    {"recv_duplicate_segment", "sack", "linux 1:1449, wrench none",
     "Linux reports a duplicate segment with a D-SACK block (RFC 2883); wrench does not"},
    {"recv_duplicate_segment", "ecr", "linux 300, wrench 250",
     "Linux takes a segment ending at RCV.NXT as acceptable and updates TS.Recent from it; "
     "RFC 9293's test finds it unacceptable, and wrench acknowledges it without taking its "
     "timestamp (RFC 7323 §5.3 R2 before R3)"},
    // ---- resets and bad ACKs ----
    {"abort_sends_rst", "only-linux", "R. 1449:1449(0)",
     "Linux's abort sends RST+ACK with timestamps (tcp_send_active_reset); wrench sends "
     "<SEQ=SND.NXT><CTL=RST> as RFC 9293 §3.10.4 ABORT writes it"},
    {"abort_sends_rst", "only-wrench", "R 1449:1449(0)", "as above"},
    {"ack_of_unsent_data", "ecr", "linux 150, wrench 250",
     "wrench takes TS.Recent from the segment before finding its ACK unacceptable (RFC "
     "7323 §4.3); Linux updates it only after the ACK was accepted"},
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

  // wrench runs in virtual time and gives the same trace every run; Linux runs in
  // real time, and on a loaded machine its timers can fire tens of milliseconds late.
  // When the only unexplained differences are in timing (a time, or the TS ecr a late
  // segment carries), Linux's side runs again
  // (at most three runs in all); any other difference fails at once.
  const Trace wrench = RunWrench(*script, DiffConfig());
  constexpr int kLinuxRuns = 3;
  Comparison c;
  std::string report;
  int unexplained = 0;
  for (int run = 1; run <= kLinuxRuns; ++run) {
    // A run's socket outlives it (FIN-WAIT, TIME-WAIT, retransmissions) and would
    // answer the next run's segments on the same 4-tuple: each run gets its own
    // namespace.
    if (run > 1) {
      const absl::Status fresh = proxy::testing::EnterFreshNetworkNamespace();
      ASSERT_TRUE(fresh.ok()) << fresh;
    }
    const Trace linux = RunLinux(*script);
    c = Compare(*script, linux, wrench);
    report = c.report;
    unexplained = 0;
    bool only_timing = true;
    absl::StrAppend(&report, "differences: ", c.differences.size(), "\n");
    for (const Difference& d : c.differences) {
      const KnownDifference* k = FindKnown(kKnownDifferences, name, d);
      if (k == nullptr) {
        ++unexplained;
        // A late Linux segment also echoes a later timestamp.
        only_timing = only_timing && (d.kind == "time" || d.kind == "ecr");
      }
      absl::StrAppend(&report, k ? "  [known] " : "  [NEW]   ", d.kind, ": ", d.text, "\n");
      if (k) absl::StrAppend(&report, "            because ", k->reason, "\n");
    }
    if (unexplained == 0 || !only_timing || run == kLinuxRuns) break;
    std::cout << report << "Linux's run " << run << " of " << kLinuxRuns
              << " differs only in timing: running Linux's side again\n"
              << std::flush;
  }
  // Entries for this script that matched nothing: fixed, or the script changed.
  for (const KnownDifference& k : kKnownDifferences) {
    if (k.script != name) continue;
    const bool used =
        std::any_of(c.differences.begin(), c.differences.end(), [&](const Difference& d) {
          return FindKnown(absl::MakeConstSpan(&k, 1), name, d) != nullptr;
        });
    if (!used)
      absl::StrAppend(&report, "  [stale] known ", k.kind, " \"", k.contains,
                      "\" no longer seen\n");
  }
  std::cout << report << std::flush;
  WriteReport(name, report);
  EXPECT_EQ(unexplained, 0) << unexplained
                            << " difference(s) not in the known list; see the report above";
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
  absl::StatusOr<Script> s =
      ParseScript("t",
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

OutSegment Seg(double at, uint8_t flags, uint32_t seq, uint32_t len, uint32_t ack) {
  OutSegment o;
  o.at = absl::Seconds(at);
  o.flags = stack::TcpFlags(flags);
  o.seq = seq;
  o.len = len;
  o.ack = ack;
  return o;
}

// The comparison pairs equal segments even when one side sent an extra one, and
// reports the extra one, a late one and differing SACK blocks, each once.
TEST(TcpDiffCompare, PairsSegmentsAndReportsWhatDiffers) {
  absl::StatusOr<Script> s = ParseScript("t", "# t\n0 < S 0:0(0)\n+1 < . 1:1(0) ack 1\n");
  ASSERT_TRUE(s.ok()) << s.status();
  Trace linux, wrench;
  linux.segments = {Seg(0, stack::kSyn | stack::kAck, 0, 0, 1), Seg(1.2, stack::kAck, 1, 100, 1),
                    Seg(1.4, stack::kAck, 101, 100, 1)};
  linux.segments[2].sack = {{5, 9}};
  wrench.segments = {Seg(0, stack::kSyn | stack::kAck, 0, 0, 1), Seg(1.001, stack::kAck, 1, 0, 1),
                     Seg(1.2, stack::kAck, 1, 100, 1), Seg(2.0, stack::kAck, 101, 100, 1)};
  const Comparison c = Compare(*s, linux, wrench);
  std::vector<std::string> kinds;
  for (const Difference& d : c.differences) kinds.push_back(d.kind);
  EXPECT_EQ(kinds, (std::vector<std::string>{"only-wrench", "time", "sack"})) << c.report;
  EXPECT_TRUE(absl::StrContains(c.differences[1].text, "linux at 1.400 s, wrench at 2.000 s"))
      << c.differences[1].text;
  EXPECT_TRUE(absl::StrContains(c.differences[2].text, "linux 5:9, wrench none"))
      << c.differences[2].text;
}

// A known entry matches its script (or every script for "*"), kind and text.
TEST(TcpDiffCompare, KnownDifferencesMatchScriptKindAndText) {
  const KnownDifference known[] = {{"a", "time", "F. 1:1(0)", "r1"}, {"*", "psh", "", "r2"}};
  EXPECT_NE(FindKnown(known, "a", {"time", "F. 1:1(0): linux at 1 s"}), nullptr);
  EXPECT_EQ(FindKnown(known, "b", {"time", "F. 1:1(0): linux at 1 s"}), nullptr);
  EXPECT_EQ(FindKnown(known, "a", {"time", ". 1:2(1): linux at 1 s"}), nullptr);
  EXPECT_NE(FindKnown(known, "z", {"psh", "anything"}), nullptr);
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
