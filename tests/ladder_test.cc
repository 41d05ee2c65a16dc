// Tests of the ladder diagrams (proxy/ladder/ladder.h) on a small handwritten --log: a
// dropped SYN-ACK, a duplicated data segment, a delayed FIN and the four-way
// teardown, drawn as text and as SVG; and every way a log can be unreadable.
#include "proxy/ladder/ladder.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace wrench::proxy {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A log written by hand: client 10.89.0.3:40000 -> front 10.89.0.2:80; proxy
// 10.89.0.2:40001 -> server 10.89.0.1:8080. ISNs: client 1000, proxy client leg 5000,
// proxy server leg 7000, server 9000. The first SYN-ACK to the client is dropped
// (rule 1), the client's request duplicated (rule 2), the FIN relayed upstream
// delayed 2 s (rule 3); the client closes first. (ladder_render_test draws it too.)
constexpr const char* kLog = WRENCH_SOURCE_DIR "/tests/ladder/handwritten.jsonl";

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "wrench_ladder_test_" + std::to_string(::getpid()) + "_" + name;
}

std::string WriteFile(const std::string& name, const std::string& text) {
  const std::string path = TempPath(name);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
  return path;
}

std::vector<std::string> Lines(const std::string& text) { return absl::StrSplit(text, '\n'); }

// Columns on a terminal: code points, the box-drawing characters being one each.
size_t Columns(const std::string& line) {
  size_t n = 0;
  for (char c : line) n += (static_cast<unsigned char>(c) & 0xc0) != 0x80;
  return n;
}

// The index of the first line containing all of `parts`, or -1.
int FindLine(const std::vector<std::string>& lines, std::initializer_list<const char*> parts,
             int from = 0) {
  for (size_t i = static_cast<size_t>(from); i < lines.size(); ++i) {
    bool all = true;
    for (const char* p : parts) all = all && absl::StrContains(lines[i], p);
    if (all) return static_cast<int>(i);
  }
  return -1;
}

// Well-formed XML, checked by hand (the project has no XML library): every tag
// closed in order, attributes quoted, '&' only in entities, nothing after the root.
::testing::AssertionResult WellFormedXml(const std::string& xml) {
  std::vector<std::string> open;
  size_t i = 0, roots = 0;
  while (i < xml.size()) {
    if (xml[i] == '&') {
      const size_t semi = xml.find(';', i);
      const std::string ent = xml.substr(i, semi == std::string::npos ? 8 : semi - i + 1);
      if (ent != "&amp;" && ent != "&lt;" && ent != "&gt;" && ent != "&quot;" && ent != "&apos;") {
        return ::testing::AssertionFailure() << "bad entity at " << i << ": " << ent;
      }
      i = semi + 1;
      continue;
    }
    if (xml[i] != '<') {
      if (open.empty() && !absl::ascii_isspace(static_cast<unsigned char>(xml[i]))) {
        return ::testing::AssertionFailure() << "text outside the root at " << i;
      }
      ++i;
      continue;
    }
    const size_t close = xml.find('>', i);
    if (close == std::string::npos) return ::testing::AssertionFailure() << "unclosed tag at " << i;
    const std::string tag = xml.substr(i + 1, close - i - 1);
    i = close + 1;
    if (tag.empty()) return ::testing::AssertionFailure() << "empty tag";
    if (tag[0] == '?') continue;  // the XML declaration
    if (tag[0] == '/') {
      if (open.empty() || open.back() != tag.substr(1)) {
        return ::testing::AssertionFailure() << "</" << tag.substr(1) << "> closes "
                                             << (open.empty() ? "nothing" : open.back());
      }
      open.pop_back();
      continue;
    }
    const bool self_closing = tag.back() == '/';
    const std::string name = tag.substr(0, tag.find_first_of(" /"));
    // Attribute values: an even number of quotes, and no '<' inside the tag.
    if (std::count(tag.begin(), tag.end(), '"') % 2 != 0 || tag.find('<') != std::string::npos) {
      return ::testing::AssertionFailure() << "bad attributes in <" << tag << ">";
    }
    if (open.empty()) ++roots;
    if (!self_closing) open.push_back(name);
  }
  if (!open.empty()) return ::testing::AssertionFailure() << "<" << open.back() << "> never closed";
  if (roots != 1) return ::testing::AssertionFailure() << roots << " root elements";
  return ::testing::AssertionSuccess();
}

class LadderTest : public ::testing::Test {
 protected:
  void SetUp() override { path_ = kLog; }

  std::vector<Ladder> Build() {
    auto records = ReadLadderLog(path_);
    EXPECT_TRUE(records.ok()) << records.status();
    return records.ok() ? BuildLadders(*records) : std::vector<Ladder>{};
  }
  std::string Text() {
    auto t = DrawLadder(path_, LadderFormat::kText);
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *t : "";
  }

  std::string path_;
};

// ---- text -------------------------------------------------------------------

TEST_F(LadderTest, TextDrawsTheHandshakeWithRelativeNumbers) {
  const std::vector<std::string> lines = Lines(Text());
  EXPECT_GE(FindLine(lines, {"0.000100", "│── SYN seq=0 ──", "▶│"}), 0) << Text();
  // The server leg's handshake, on the right.
  EXPECT_GE(FindLine(lines, {"0.000300", "│◀──", "SYN+ACK seq=0 ack=1 ──│"}), 0);
  EXPECT_GE(FindLine(lines, {"client", "proxy", "server"}), 0);
  EXPECT_GE(FindLine(lines, {"client leg", "server leg"}), 0);
  EXPECT_GE(FindLine(lines, {"client leg  10.89.0.3:40000 -> 10.89.0.2:80"}), 0);
  EXPECT_GE(FindLine(lines, {"server leg  10.89.0.2:40001 -> 10.89.0.1:8080"}), 0);
}

TEST_F(LadderTest, TextDrawsADroppedSynAckAsAnArrowEndingInACross) {
  const std::vector<std::string> lines = Lines(Text());
  const int drop = FindLine(lines, {"0.000350", "X─── SYN+ACK seq=0 ack=1 ──│"});
  ASSERT_GE(drop, 0) << Text();
  // It stops short of the client: nothing but blanks between the client's line and the cross.
  const std::string& l = lines[static_cast<size_t>(drop)];
  const size_t bar = l.find("│"), x = l.find('X');
  EXPECT_EQ(l.substr(bar + std::string("│").size(), x - bar - std::string("│").size())
                .find_first_not_of(' '),
            std::string::npos);
  EXPECT_GE(FindLine(lines, {"dropped  [rule 1: drop on=to-client"}, drop + 1), drop + 1);
  // The client's retransmitted SYN is answered.
  EXPECT_GE(FindLine(lines, {"1.000450", "│◀──", "SYN+ACK seq=0 ack=1 ──│"}), 0);
}

TEST_F(LadderTest, TextDrawsADuplicateAsAnExtraDashedArrow) {
  const std::vector<std::string> lines = Lines(Text());
  const int orig = FindLine(lines, {"1.000700", "│── PSH+ACK seq=1 ack=1 len=100 ─"});
  ASSERT_GE(orig, 0) << Text();
  EXPECT_GE(FindLine(lines, {"dup: original + 1 copy  [rule 2: dup"}, orig), orig);
  EXPECT_GE(FindLine(lines, {"1.000700", "│╌╌ PSH+ACK seq=1 ack=1 len=100 ╌", "╌▶│"}, orig + 1),
            orig + 1);
}

TEST_F(LadderTest, TextSlantsADelayedFinDownToItsArrival) {
  const std::vector<std::string> lines = Lines(Text());
  const int leave = FindLine(lines, {"1.002100", "│── FIN+ACK seq=101 ack=1001 ──", "╮"});
  ASSERT_GE(leave, 0) << Text();
  EXPECT_GE(FindLine(lines, {"delayed 2s  [rule 3: delay 2s"}, leave), leave);
  const int arrive = FindLine(lines, {"3.002100", "╰───", "▶│"}, leave + 1);
  ASSERT_GT(arrive, leave);
  // The turn and the arrival are in the same column.
  const size_t col = Columns(
      lines[static_cast<size_t>(leave)].substr(0, lines[static_cast<size_t>(leave)].find("╮")));
  const size_t col2 = Columns(
      lines[static_cast<size_t>(arrive)].substr(0, lines[static_cast<size_t>(arrive)].find("╰")));
  EXPECT_EQ(col, col2);
  // The server sees the FIN only when it arrives: CLOSE-WAIT after 3.002100.
  EXPECT_GT(FindLine(lines, {"~CLOSE-WAIT"}), arrive);
}

TEST_F(LadderTest, TextWritesEveryStateOfTheFourWayTeardown) {
  const std::vector<std::string> lines = Lines(Text());
  // The proxy's endpoints, as the log has them, in the order they happen.
  int at = 0;
  for (const char* s : {"[SYN-RECEIVED]", "[ESTABLISHED]", "[CLOSE-WAIT]", "[FIN-WAIT-1]",
                        "[FIN-WAIT-2]", "[TIME-WAIT]", "[LAST-ACK]", "[CLOSED]"}) {
    const int next = FindLine(lines, {s}, at);
    EXPECT_GE(next, at) << s << "\n" << Text();
    if (next >= 0) at = next;
  }
  // The client, inferred: active closer.
  at = 0;
  for (const char* s : {"~SYN-SENT", "~ESTABLISHED", "~FIN-WAIT-1", "~FIN-WAIT-2", "~TIME-WAIT"}) {
    const int next = FindLine(lines, {s}, at);
    EXPECT_GE(next, at) << s << "\n" << Text();
    if (next >= 0) at = next;
  }
  // The server, inferred: passive closer.
  at = 0;
  for (const char* s :
       {"~LISTEN", "~SYN-RECEIVED", "~ESTABLISHED", "~CLOSE-WAIT", "~LAST-ACK", "~CLOSED"}) {
    const int next = FindLine(lines, {s}, at);
    EXPECT_GE(next, at) << s << "\n" << Text();
    if (next >= 0) at = next;
  }
  // The teardown's four segments on the client leg, textbook numbers.
  EXPECT_GE(FindLine(lines, {"│── FIN+ACK seq=101 ack=1001 ──"}), 0);
  EXPECT_GE(FindLine(lines, {"ACK seq=1001 ack=102 ──│"}), 0);
  EXPECT_GE(FindLine(lines, {"FIN+ACK seq=1001 ack=102 ──│"}), 0);
  EXPECT_GE(FindLine(lines, {"│── ACK seq=102 ack=1002 ──"}), 0);
}

TEST_F(LadderTest, TextFitsInOneHundredColumns) {
  const std::string text = Text();
  for (const std::string& line : Lines(text)) EXPECT_LE(Columns(line), 100u) << line;
  EXPECT_THAT(text, HasSubstr("~STATE a kernel peer"));  // the legend
}

// ---- the layout -------------------------------------------------------------

TEST_F(LadderTest, LayoutHasOneArrowPerSegmentAndCopy) {
  std::vector<Ladder> l = Build();
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0].conn, 1u);
  EXPECT_TRUE(l[0].server_leg);
  EXPECT_EQ(l[0].arrows.size(), 25u);  // 24 lines, one with a copy
  int dropped = 0, held = 0, copies = 0;
  for (const LadderArrow& a : l[0].arrows) {
    dropped += a.fate == LadderArrow::Fate::kDropped;
    copies += a.fate == LadderArrow::Fate::kCopy;
    if (a.fate == LadderArrow::Fate::kHeld) {
      ++held;
      EXPECT_EQ(a.from, LadderLine::kServerLeg);
      EXPECT_EQ(a.to, LadderLine::kServer);
      EXPECT_DOUBLE_EQ(l[0].rows[a.end_row].t, 3.0021);
    }
  }
  EXPECT_EQ(dropped, 1);
  EXPECT_EQ(held, 1);
  EXPECT_EQ(copies, 1);
}

TEST(Ladder, ConnOptionDrawsOneConnectionAndNamesThoseThereAre) {
  const std::string path = WriteFile("two.jsonl",
      R"log({"t":0.1,"conn":1,"hook":"from-client","flags":"SYN","seq":5,"len":0}
{"t":0.2,"conn":2,"hook":"from-client","flags":"SYN","seq":9,"len":0}
{"t":0.3,"conn":0,"hook":"from-client","flags":"RST","seq":1,"len":0}
)log");
  auto all = ReadLadderLog(path);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(BuildLadders(*all).size(), 2u);  // conn 0 (no connection) left out
  auto two = DrawLadder(path, LadderFormat::kText, 2);
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_THAT(*two, HasSubstr("connection 2"));
  EXPECT_THAT(*two, Not(HasSubstr("connection 1")));
  auto seven = DrawLadder(path, LadderFormat::kText, 7);
  EXPECT_FALSE(seven.ok());
  EXPECT_THAT(seven.status().message(), HasSubstr("has no connection 7; it has connections 1, 2"));
  std::remove(path.c_str());
}

TEST(Ladder, SocketUpstreamDrawsTheClientLegAlone) {
  const std::string path = WriteFile(
      "socket.jsonl",
      R"log({"t":0.1,"conn":1,"hook":"from-client","flags":"SYN","seq":5,"len":0,"before":"LISTEN"}
{"t":0.2,"conn":1,"hook":"to-client","flags":"SYN+ACK","seq":100,"ack":6,"len":0,"before":"SYN-RECEIVED"}
)log");
  auto text = DrawLadder(path, LadderFormat::kText);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_THAT(*text, HasSubstr("a kernel socket (not in the log)"));
  EXPECT_THAT(*text, Not(HasSubstr("│ server leg")));  // no server-leg line
  EXPECT_THAT(*text, HasSubstr("SYN+ACK seq=0 ack=1"));
  std::remove(path.c_str());
}

TEST(Ladder, ReorderedFinIsHeldUntilTheNextSegmentAndClosesOnlyWhenTheGapFills) {
  // The proxy sends 1000 bytes then its FIN; a reorder rule holds the data, so the
  // FIN overtakes it. The client (a kernel) goes to CLOSE-WAIT only once the data is in.
  const std::string path = WriteFile(
      "reorder.jsonl",
      R"log({"t":0.1,"conn":1,"hook":"from-client","flags":"SYN","seq":0,"len":0,"before":"LISTEN","after":"SYN-RECEIVED"}
{"t":0.2,"conn":1,"hook":"to-client","flags":"SYN+ACK","seq":500,"ack":1,"len":0,"before":"SYN-RECEIVED"}
{"t":0.3,"conn":1,"hook":"from-client","flags":"ACK","seq":1,"ack":501,"len":0,"before":"SYN-RECEIVED","after":"ESTABLISHED"}
{"t":0.4,"conn":1,"hook":"to-client","flags":"PSH+ACK","seq":501,"ack":1,"len":1000,"before":"ESTABLISHED","rule":1,"rule_text":"reorder on=to-client len>0","action":"reorder held until the next segment (at most 500ms)"}
{"t":0.5,"conn":1,"hook":"to-client","flags":"FIN+ACK","seq":1501,"ack":1,"len":0,"before":"FIN-WAIT-1"}
{"t":0.6,"conn":1,"hook":"from-client","flags":"ACK","seq":1,"ack":1502,"len":0,"before":"FIN-WAIT-1","after":"FIN-WAIT-2"}
)log");
  auto records = ReadLadderLog(path);
  ASSERT_TRUE(records.ok()) << records.status();
  std::vector<Ladder> l = BuildLadders(*records);
  ASSERT_EQ(l.size(), 1u);
  const LadderArrow* data = nullptr;
  const LadderArrow* fin = nullptr;
  for (const LadderArrow& a : l[0].arrows) {
    if (a.label == "PSH+ACK seq=1 ack=1 len=1000") data = &a;
    if (a.label == "FIN+ACK seq=1001 ack=1") fin = &a;
  }
  ASSERT_NE(data, nullptr);
  ASSERT_NE(fin, nullptr);
  EXPECT_EQ(data->fate, LadderArrow::Fate::kHeld);
  EXPECT_GT(data->end_row, fin->row);  // arrives after the FIN
  size_t close_wait = 0;
  for (const LadderState& s : l[0].states) {
    if (s.line == LadderLine::kClient && s.state == stack::TcpState::kCloseWait) close_wait = s.row;
  }
  EXPECT_GT(close_wait, data->end_row);
  std::remove(path.c_str());
}

TEST(Ladder, MutationIsMarkedWithWhatChangedAndTheRule) {
  const std::string path =
      WriteFile("mutate.jsonl",
                R"log({"t":0.1,"conn":1,"hook":"from-client","flags":"SYN","seq":0,"len":0}
{"t":0.2,"conn":1,"hook":"to-client","flags":"SYN+ACK","seq":500,"ack":1,"len":0,"rule":4,"rule_text":"add seq=1 on=to-client flags=SYN+ACK","action":"add seq 500 -> 501"}
)log");
  auto text = DrawLadder(path, LadderFormat::kText);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_THAT(*text, HasSubstr("◀═══"));
  EXPECT_THAT(*text, HasSubstr("add seq 500 -> 501  [rule 4: add seq=1"));
  std::remove(path.c_str());
}

// ---- SVG and HTML -------------------------------------------------------------

TEST_F(LadderTest, SvgIsWellFormedWithAnArrowPerSegmentAndTheStates) {
  auto svg = DrawLadder(path_, LadderFormat::kSvg);
  ASSERT_TRUE(svg.ok()) << svg.status();
  EXPECT_TRUE(WellFormedXml(*svg));
  EXPECT_THAT(*svg, HasSubstr("<svg xmlns=\"http://www.w3.org/2000/svg\""));
  // 24 arrows with heads (the dropped one has none) plus 5 in the legend.
  size_t heads = 0;
  for (size_t at = 0; (at = svg->find("marker-end=", at)) != std::string::npos; ++at) ++heads;
  EXPECT_EQ(heads, 24u + 5u);
  // The dropped SYN-ACK's cross, in red; the delayed FIN slanted, in orange.
  EXPECT_THAT(*svg, HasSubstr("stroke=\"#c62828\" stroke-width=\"2.5\""));
  EXPECT_THAT(*svg, HasSubstr("class=\"held\""));
  EXPECT_THAT(*svg, HasSubstr("stroke-dasharray=\"6,3\""));  // the copy
  for (const char* s :
       {">FIN-WAIT-1<", ">TIME-WAIT<", ">LAST-ACK<", ">~TIME-WAIT<", ">~CLOSE-WAIT<",
        ">FIN+ACK seq=101 ack=1001<", "delayed 2s  [rule 3: delay 2s on=to-server has=FIN]"}) {
    EXPECT_THAT(*svg, HasSubstr(s));
  }
}

TEST(Ladder, SvgEscapesWhatTheLogSays) {
  const std::string path = WriteFile(
      "escape.jsonl",
      R"log({"t":0.1,"conn":1,"hook":"from-client","src":"<a&b>","flags":"SYN","seq":0,"len":0,"note":"x < y & \"z\"\u0001"}
)log");
  auto svg = DrawLadder(path, LadderFormat::kSvg);
  ASSERT_TRUE(svg.ok()) << svg.status();
  EXPECT_TRUE(WellFormedXml(*svg));
  EXPECT_THAT(*svg, HasSubstr("&lt;a&amp;b&gt;"));
  auto html = DrawLadder(path, LadderFormat::kHtml);
  ASSERT_TRUE(html.ok()) << html.status();
  EXPECT_THAT(*html, HasSubstr("<!DOCTYPE html>"));
  EXPECT_THAT(*html, HasSubstr("<svg "));
  EXPECT_THAT(*html, Not(HasSubstr("<?xml")));
  std::remove(path.c_str());
}

// ---- bad input ---------------------------------------------------------------

struct BadLog {
  const char* name;
  const char* text;
  const char* message;
};

class LadderBadLogTest : public ::testing::TestWithParam<BadLog> {};

TEST_P(LadderBadLogTest, IsAnErrorNamingTheLine) {
  const std::string path = WriteFile("bad.jsonl", GetParam().text);
  auto r = DrawLadder(path, LadderFormat::kText);
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr(GetParam().message));
  EXPECT_THAT(r.status().message(), HasSubstr(path));
  std::remove(path.c_str());
}

INSTANTIATE_TEST_SUITE_P(
    Ladder, LadderBadLogTest,
    ::testing::Values(
        BadLog{"NotJson",
               "{\"t\":0.1,\"conn\":1,\"hook\":\"from-client\",\"flags\":\"SYN\",\"seq\":0,\"len\":"
               "0}\nhello\n",
               ":2: not JSON"},
        BadLog{"NotAnObject", "[1,2]\n", ":1: not a JSON object"},
        BadLog{"NoHook", "\n\n{\"t\":0.1,\"conn\":1,\"flags\":\"SYN\",\"seq\":0,\"len\":0}\n",
               ":3: no \"hook\" field (every record has t, conn and hook)"},
        BadLog{"NoTime",
               "{\"conn\":1,\"hook\":\"to-client\",\"flags\":\"SYN\",\"seq\":0,\"len\":0}\n",
               ":1: no \"t\" field"},
        BadLog{
            "BadHook",
            "{\"t\":0.1,\"conn\":1,\"hook\":\"sideways\",\"flags\":\"SYN\",\"seq\":0,\"len\":0}\n",
            ":1: \"hook\" must be from-client, to-client, from-server or to-server, not "
            "\"sideways\""},
        BadLog{"BadFlags",
               "{\"t\":0.1,\"conn\":1,\"hook\":\"to-client\",\"flags\":\"SYN+WAT\",\"seq\":0,"
               "\"len\":0}\n",
               ":1: \"flags\" is not a set of TCP flags: \"SYN+WAT\""},
        BadLog{"NoSeq",
               "{\"t\":0.1,\"conn\":1,\"hook\":\"to-client\",\"flags\":\"SYN\",\"len\":0}\n",
               ":1: no \"rseq\" field (a segment needs its seq or rseq)"},
        BadLog{
            "NoAck",
            "{\"t\":0.1,\"conn\":1,\"hook\":\"to-client\",\"flags\":\"ACK\",\"seq\":0,\"len\":0}\n",
            ":1: no \"rack\" field (a segment with ACK needs its ack or rack)"},
        BadLog{"NoLen",
               "{\"t\":0.1,\"conn\":1,\"hook\":\"to-client\",\"flags\":\"SYN\",\"seq\":0}\n",
               ":1: no \"len\" field"},
        BadLog{"NeitherSegmentNorNote", "{\"t\":0.1,\"conn\":1,\"hook\":\"to-client\"}\n",
               ":1: no \"flags\" field"},
        BadLog{"ConnIsText",
               "{\"t\":0.1,\"conn\":\"one\",\"hook\":\"to-client\",\"flags\":\"SYN\",\"seq\":0,"
               "\"len\":0}\n",
               ":1: \"conn\" must be a whole number from 0 to 18446744073709551615, not \"one\""},
        BadLog{"NegativeSeq",
               "{\"t\":0.1,\"conn\":1,\"hook\":\"to-client\",\"flags\":\"SYN\",\"seq\":-1,\"len\":"
               "0}\n",
               ":1: \"seq\" must be a whole number from 0 to 4294967295, not -1"},
        BadLog{"TimeIsText",
               "{\"t\":\"soon\",\"conn\":1,\"hook\":\"to-client\",\"flags\":\"SYN\",\"seq\":0,"
               "\"len\":0}\n",
               ":1: \"t\" must be a number, not \"soon\""},
        BadLog{"BadState",
               "{\"t\":0.1,\"conn\":1,\"hook\":\"to-client\",\"flags\":\"SYN\",\"seq\":0,\"len\":0,"
               "\"before\":\"NAPPING\"}\n",
               ":1: \"before\" is not a TCP state: \"NAPPING\""},
        BadLog{"Empty", "", "is empty: no segments to draw"},
        BadLog{"OnlyBlankLines", "\n  \n\n", "is empty: no segments to draw"},
        BadLog{"OnlyOutsideConnections",
               "{\"t\":0.1,\"conn\":0,\"hook\":\"from-client\",\"flags\":\"RST\",\"seq\":0,\"len\":"
               "0}\n",
               "has 1 records but none belongs to a connection"}),
    [](const ::testing::TestParamInfo<BadLog>& info) { return info.param.name; });

TEST(Ladder, MissingFileOrDirectoryIsAnError) {
  auto missing = DrawLadder("/nonexistent/wrench.jsonl", LadderFormat::kText);
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(),
              HasSubstr("cannot open log file /nonexistent/wrench.jsonl"));
  auto dir = DrawLadder(::testing::TempDir(), LadderFormat::kText);
  ASSERT_FALSE(dir.ok());
  EXPECT_THAT(dir.status().message(), HasSubstr("is a directory"));
}

// ---- the command ---------------------------------------------------------------

// The `wrench` binary of this build: tests/ladder_test sits beside proxy/wrench.
std::string WrenchBinary() {
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  const std::filesystem::path bin = self.parent_path().parent_path() / "proxy" / "wrench";
  return std::filesystem::exists(bin, ec) ? bin.string() : "";
}

// Runs `wrench ARGS` (arguments single-quoted for the shell); its exit status, with
// stdout and stderr in `out`.
int RunWrench(const std::string& args, std::string* out) {
  const std::string cmd = absl::StrCat(WrenchBinary(), " ", args, " 2>&1");
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  out->clear();
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out->append(buf, n);
  const int status = ::pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_F(LadderTest, CommandPicksTheFormatFromOutAndReportsErrors) {
  if (WrenchBinary().empty()) GTEST_SKIP() << "no proxy/wrench next to this test binary";
  const std::string svg = TempPath("out.svg"), html = TempPath("out.html");
  std::string out;
  ASSERT_EQ(RunWrench(absl::StrCat("ladder --out='", svg, "' '", path_, "'"), &out), 0) << out;
  std::ifstream in(svg);
  std::string first;
  std::getline(in, first);
  EXPECT_EQ(first, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
  ASSERT_EQ(RunWrench(absl::StrCat("ladder --conn=1 --out='", html, "' '", path_, "'"), &out), 0)
      << out;
  std::ifstream in2(html);
  std::getline(in2, first);
  EXPECT_EQ(first, "<!DOCTYPE html>");
  // Text on stdout by default.
  ASSERT_EQ(RunWrench(absl::StrCat("ladder '", path_, "'"), &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("── SYN seq=0 ──"));
  // Errors: a message, and 1 for a bad log, 2 for a bad command line.
  EXPECT_EQ(RunWrench("ladder /nonexistent.jsonl", &out), 1);
  EXPECT_THAT(out, HasSubstr("wrench ladder: cannot open log file /nonexistent.jsonl"));
  EXPECT_EQ(RunWrench(absl::StrCat("ladder --conn=9 '", path_, "'"), &out), 1);
  EXPECT_THAT(out, HasSubstr("has no connection 9; it has connection 1"));
  EXPECT_EQ(RunWrench(absl::StrCat("ladder --format=png '", path_, "'"), &out), 2);
  EXPECT_THAT(out, HasSubstr("--format must be text, svg or html"));
  EXPECT_EQ(RunWrench("ladder", &out), 2);
  EXPECT_THAT(out, HasSubstr("which log?"));
  std::remove(svg.c_str());
  std::remove(html.c_str());
}

}  // namespace
}  // namespace wrench::proxy
