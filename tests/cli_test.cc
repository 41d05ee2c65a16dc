// The command line without the network: wrench's option parser on flags of its own,
// and the real `wrench` binary for what fails before any device or namespace is
// made (usage errors, help, version, rule files, ladder input, exec's 126/127).
#include "proxy/cli/cli.h"

#include <sys/stat.h>

#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proxy/app/service.h"
#include "proxy/cli/rules_file.h"
#include "proxy/fault/rule.h"
#include "proxy/relay/capture.h"
#include "tests/cli_testing.h"

ABSL_FLAG(wrench::proxy::Repeated, test_rule, {}, "test: repeatable");
ABSL_FLAG(std::vector<std::string>, test_list, {}, "test: abseil's own list");
ABSL_FLAG(std::string, test_name, "dflt", "test: one value");
ABSL_FLAG(int, test_count, 3, "test: a number");
ABSL_FLAG(bool, test_loud, false, "test: a boolean");
ABSL_FLAG(std::string, test_upstream_via, "socket", "test: a name with an underscore");

namespace wrench::proxy {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
namespace tu = ::wrench::proxy::testing;

constexpr FlagHelp kFlags[] = {
    {"test_rule", "--test-rule=TEXT  a rule"},
    {"test_list", "--test-list=A,B  a list"},
    {"test_name", "--test-name=NAME  a name"},
    {"test_count", "--test-count=N  a count (default 3)"},
    {"test_loud", "--test-loud       louder"},
    {"test_upstream_via", "--test-upstream-via=X  via"},
};

absl::StatusOr<ParsedArgs> Parse(std::vector<std::string> args, ParseOptions options = {}) {
  args.insert(args.begin(), "cmd");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  return ParseArgs(static_cast<int>(argv.size()), argv.data(), kFlags, options);
}

// ---- the parser -------------------------------------------------------------------

TEST(ParseArgs, RepeatedFlagKeepsEveryValueInOrder) {
  auto p = Parse({"--test-rule", "drop nth=1", "--test-rule=delay 1s", "--test_rule", "rst"});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_THAT(absl::GetFlag(FLAGS_test_rule), ElementsAre("drop nth=1", "delay 1s", "rst"));
}

TEST(ParseArgs, RepeatedFlagNeverSplitsOnCommas) {
  auto p = Parse({"--test-rule=drop on=to-client,from-client has=FIN", "--test-rule", "a,b"});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_THAT(absl::GetFlag(FLAGS_test_rule),
              ElementsAre("drop on=to-client,from-client has=FIN", "a,b"));
}

TEST(ParseArgs, EmptyValueOfARepeatedFlagIsKept) {
  auto p = Parse({"--test-rule="});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_THAT(absl::GetFlag(FLAGS_test_rule), ElementsAre(""));
}

TEST(ParseArgs, AbseilListFlagAccumulatesToo) {
  auto p = Parse({"--test-list=a,b", "--test-list", "c"});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_THAT(absl::GetFlag(FLAGS_test_list), ElementsAre("a", "b", "c"));
}

TEST(ParseArgs, EveryFlagStartsFromItsDefault) {
  ASSERT_TRUE(Parse({"--test-rule=x", "--test-name=n", "--test-count=9"}).ok());
  ASSERT_TRUE(Parse({}).ok());
  EXPECT_TRUE(absl::GetFlag(FLAGS_test_rule).empty());
  EXPECT_EQ(absl::GetFlag(FLAGS_test_name), "dflt");
  EXPECT_EQ(absl::GetFlag(FLAGS_test_count), 3);
}

TEST(ParseArgs, ValueFormsAndBooleans) {
  auto p = Parse({"--test-name", "a", "-test-count=5", "--test-loud", "--test-upstream_via=tun"});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(absl::GetFlag(FLAGS_test_name), "a");
  EXPECT_EQ(absl::GetFlag(FLAGS_test_count), 5);
  EXPECT_TRUE(absl::GetFlag(FLAGS_test_loud));
  EXPECT_EQ(absl::GetFlag(FLAGS_test_upstream_via), "tun");
  ASSERT_TRUE(Parse({"--notest-loud"}).ok());
  EXPECT_FALSE(absl::GetFlag(FLAGS_test_loud));
  EXPECT_FALSE(Parse({"--test-loud", "--notest-loud"}).ok()) << "contradictory";
  ASSERT_TRUE(Parse({"--test-loud=false"}).ok());
  EXPECT_FALSE(absl::GetFlag(FLAGS_test_loud));
}

TEST(ParseArgs, PositionalArgumentsMixWithOptionsUnlessToldToStop) {
  auto p = Parse({"a", "--test-name=x", "-", "b"});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_THAT(p->arguments, ElementsAre("a", "-", "b"));
  EXPECT_EQ(absl::GetFlag(FLAGS_test_name), "x");
  p = Parse({"--test-name=y", "curl", "-sS", "--test-count=7", "http://x/"},
            {.stop_at_first_argument = true});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_THAT(p->arguments, ElementsAre("curl", "-sS", "--test-count=7", "http://x/"));
  EXPECT_EQ(absl::GetFlag(FLAGS_test_count), 3);
  p = Parse({"--test-name=y", "--", "--test-count=7"});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_THAT(p->arguments, ElementsAre("--test-count=7"));
}

TEST(ParseArgs, ErrorsSayWhatIsWrong) {
  auto p = Parse({"--test-nme=x"});
  ASSERT_FALSE(p.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(p.status()));
  EXPECT_THAT(p.status().message(),
              HasSubstr("unknown option \"--test-nme=x\"; did you mean --test-name?"));
  p = Parse({"--test-count=many"});
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("--test-count=many: not a valid value"));
  p = Parse({"--test-name"});
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("--test-name needs a value"));
  p = Parse({"--test-name=a", "--test-name=b"});
  ASSERT_FALSE(p.ok());
  EXPECT_THAT(p.status().message(), HasSubstr("given twice"));
  EXPECT_TRUE(Parse({"--test-name=a", "--test-name=a"}).ok());
  p = Parse({"--notest-loud=1"});
  EXPECT_FALSE(p.ok());
}

TEST(ParseArgs, HelpWinsOverEverythingAfterIt) {
  auto p = Parse({"--help", "--bogus"});
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_TRUE(p->help);
}

TEST(HelpText, EveryFlagHasItsDefaultAndTheExitStatusesFollow) {
  const std::string help = HelpText("usage: wrench cmd", kFlags);
  EXPECT_THAT(help, HasSubstr("--test-name=NAME  a name (default dflt)"));
  EXPECT_THAT(help, HasSubstr("--test-count=N  a count (default 3)\n"));
  EXPECT_THAT(help, HasSubstr("--test-loud       louder (default: off)"));
  EXPECT_THAT(help, HasSubstr("--test-rule=TEXT  a rule (repeatable)"));
  EXPECT_THAT(help, HasSubstr("exit status: 0"));
  EXPECT_THAT(help, HasSubstr("2 a bad command line"));
}

// ---- rule files and --net, as functions --------------------------------------------

TEST(LoadRulesFile, RefusesWhatIsNotARegularFile) {
  auto r = LoadRulesFile("/dev/zero");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(r.status()));
  EXPECT_THAT(r.status().message(), HasSubstr("/dev/zero: not a regular file"));
  r = LoadRulesFile("/tmp");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("a directory"));
}

TEST(LoadRulesFile, SaysTheErrnoTextOfAFileThatCannotBeOpened) {
  auto r = LoadRulesFile("/nonexistent/rules");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsNotFound(r.status()));
  EXPECT_THAT(r.status().message(), HasSubstr("/nonexistent/rules: No such file or directory"));
}

TEST(LoadRulesFile, CapsTheSizeAndReadsAFileWithinIt) {
  tu::TempDir dir;
  tu::WriteWholeFile(dir.File("big.rules"), std::string(kMaxRulesFileBytes + 1, '#'));
  auto r = LoadRulesFile(dir.File("big.rules"));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("larger than 1024 KiB"));
  tu::WriteWholeFile(dir.File("ok.rules"),
                     "# two rules\ndrop on=to-client,from-client has=FIN\ndelay 1s\n");
  r = LoadRulesFile(dir.File("ok.rules"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->size(), 2u);
}

TEST(ParseNet, RefusesHostBitsAndSaysWhichSubnetWasMeant) {
  auto n = ParseNet("10.89.0.0/8");
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().message(), "--net 10.89.0.0/8 has host bits set; did you mean 10.0.0.0/8?");
  n = ParseNet("10.89.0.0/24");
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(n->first.ToString(), "10.89.0.0");
  EXPECT_EQ(n->second, 24);
}

TEST(ParseNet6, RefusesHostBitsAndNonIpv6AndDefaultFollowsNet) {
  auto n = ParseNet6("fd89:2e6c:4f1a:5900::1/64");
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(
      n.status().message(),
      "--net6 fd89:2e6c:4f1a:5900::1/64 has host bits set; did you mean fd89:2e6c:4f1a:5900::/64?");
  EXPECT_FALSE(ParseNet6("10.89.0.0/24").ok());
  EXPECT_FALSE(ParseNet6("fd00::/8").ok()) << "shorter than /16";
  n = ParseNet6("fd00:1:2:3::/64");
  ASSERT_TRUE(n.ok()) << n.status();
  EXPECT_EQ(n->first.ToString(), "fd00:1:2:3::");
  EXPECT_EQ(KernelAddress(n->first, n->second).ToString(), "fd00:1:2:3::1");
  auto d = DefaultNet6(stack::IpAddress::V4(0x0a590000));  // 10.89.0.0
  EXPECT_EQ(d.first.ToString(), "fd89:2e6c:4f1a:5900::");
  EXPECT_EQ(d.second, 64);
  EXPECT_EQ(DefaultNet6(stack::IpAddress::V4(0x0a5a0100)).first.ToString(),
            "fd89:2e6c:4f1a:5a01::");
  // The IPv4 kernel address is unchanged by the shared helper.
  EXPECT_EQ(KernelAddress(stack::IpAddress::V4(0x0a590000), 24).ToString(), "10.89.0.1");
}

TEST(ReadJsonLog, APcapIsToldApart) {
  tu::TempDir dir;
  tu::WriteWholeFile(dir.File("x.pcap"), std::string("\xd4\xc3\xb2\xa1\x02\x00\x04\x00", 8));
  auto r = ReadJsonLog(dir.File("x.pcap"));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("is a pcap; give the --log file"));
}

// ---- the binary ----------------------------------------------------------------------

class WrenchCli : public ::testing::Test {
 protected:
  tu::WrenchRun Run(const std::vector<std::string>& args,
                    const std::string& stdin_path = "/dev/null") {
    return tu::RunWrench(dir_.path(), args, stdin_path);
  }
  tu::TempDir dir_;
};

TEST_F(WrenchCli, HelpCommandIsTheCommandsHelp) {
  for (const char* cmd : {"proxy", "exec", "serve", "ladder", "scenario", "simulate", "explore"}) {
    tu::WrenchRun a = Run({"help", cmd});
    tu::WrenchRun b = Run({cmd, "--help"});
    EXPECT_EQ(a.status, 0) << cmd << a.err;
    EXPECT_EQ(a.out, b.out) << cmd;
    EXPECT_THAT(a.out, HasSubstr("exit status:")) << cmd;
  }
  EXPECT_EQ(Run({"help", "nope"}).status, 2);
}

TEST_F(WrenchCli, VersionBothWays) {
  tu::WrenchRun a = Run({"version"});
  tu::WrenchRun b = Run({"--version"});
  EXPECT_EQ(a.status, 0);
  EXPECT_THAT(a.out, HasSubstr("wrench 0."));
  EXPECT_EQ(a.out, b.out);
}

TEST_F(WrenchCli, ProxyHelpListsEveryFlagWithItsDefault) {
  tu::WrenchRun r = Run({"proxy", "--help"});
  ASSERT_EQ(r.status, 0);
  for (const char* line : {"--tun=NAME", "--net=CIDR", "--mtu=N", "--upstream-via", "--rule=TEXT",
                           "--rules=FILE", "--seed=N", "--pcap=FILE", "--log=FILE",
                           "--api=ADDR:PORT", "--msl=DURATION", "--verbose"}) {
    size_t at = r.out.find(line);
    ASSERT_NE(at, std::string::npos) << line << "\n" << r.out;
    // The flag's entry runs to the next flag's ("\n  --").
    std::string entry = r.out.substr(at, r.out.find("\n  --", at) - at);
    EXPECT_TRUE(absl::StrContains(entry, "default") || absl::StrContains(entry, "repeatable"))
        << entry;
  }
  EXPECT_THAT(Run({"--help"}).out, HasSubstr("help       describe a command's options"));
}

TEST_F(WrenchCli, UsageErrorsExit2InWrenchsOwnWords) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"proxy", "--mtu=abc", "--map=10.89.0.2:80=127.0.0.1:80"},
           {"proxy", "--mtu=100", "--map=10.89.0.2:80=127.0.0.1:80"},
           {"proxy", "--mtu=1500"},
           {"proxy", "--bogus"},
           {"proxy", "--map"},
           {"serve", "--verbose=maybe"},
           {"exec", "--seed=-x", "--", "no-such-command-here"},
           {"ladder", "--conn=x", "f"},
           {"simulate", "--loss=lots"},
           {"nocommand"}}) {
    tu::WrenchRun r = Run(args);
    EXPECT_EQ(r.status, 2) << args[0] << " " << args[1] << ": " << r.err;
    EXPECT_THAT(r.err, HasSubstr("wrench")) << r.err;
    EXPECT_THAT(r.err, Not(HasSubstr("ERROR:"))) << "abseil's own words: " << r.err;
  }
  tu::WrenchRun r = Run({"proxy", "--upstream-vai=tun"});
  EXPECT_THAT(r.err, HasSubstr("did you mean --upstream-via?"));
}

// What each command is given after the options under test, so that a command line
// that passed them anyway stops before making a device: an MTU Service::Start
// refuses before it touches the network, or a COMMAND that does not exist.
std::vector<std::string> Guard(const std::string& cmd) {
  if (cmd == "exec") return {"--", "no-such-command-here"};
  if (cmd == "proxy") return {"--mtu=100", "--map=10.89.0.2:80=127.0.0.1:80"};
  return {"--mtu=100"};
}

// --tcp-congestion in both value forms on every command that runs endpoints; an
// unknown name is refused with the names it takes, before anything is set up.
TEST_F(WrenchCli, TcpCongestionIsTakenInBothFormsAndAnUnknownOneIsRefused) {
  for (const char* cmd : {"proxy", "exec", "serve"}) {
    EXPECT_THAT(Run({cmd, "--help"}).out, HasSubstr("--tcp-congestion=newreno|cubic|bbr")) << cmd;
    std::vector<std::string> args = {cmd, "--tcp-congestion=vegas"};
    for (const std::string& a : Guard(cmd)) args.push_back(a);
    tu::WrenchRun r = Run(args);
    EXPECT_EQ(r.status, 2) << cmd << ": " << r.err;
    EXPECT_THAT(r.err,
                HasSubstr("--tcp-congestion: \"vegas\" is not a congestion control: expected "
                          "newreno, cubic or bbr"))
        << cmd;
  }
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"simulate", "--tcp-congestion=bbr"}, {"simulate", "--tcp-congestion", "newreno"},
           {"simulate", "--tcp-profile=rfc", "--tcp-congestion=cubic", "--loss=0.1"}}) {
    tu::WrenchRun r = Run(args);
    EXPECT_EQ(r.status, 0) << args[1] << ": " << r.err;
    EXPECT_THAT(r.out, HasSubstr("TIME-WAIT")) << args[1];
  }
  tu::WrenchRun r = Run({"simulate", "--tcp-congestion=vegas"});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(
      r.err, HasSubstr("wrench simulate: --tcp-congestion: \"vegas\" is not a congestion control"));
}

TEST_F(WrenchCli, RuleFilesThatAreNotFilesOrTooBigAreRefused) {
  tu::WriteWholeFile(dir_.File("big.rules"), std::string(kMaxRulesFileBytes + 10, '\n'));
  for (const char* cmd : {"proxy", "serve", "exec"}) {
    const std::vector<std::string> tail = Guard(cmd);
    auto run = [&](std::vector<std::string> args) {
      args.insert(args.begin(), cmd);
      args.insert(args.end(), tail.begin(), tail.end());
      return Run(args);
    };
    absl::Time start = absl::Now();
    tu::WrenchRun r = run({"--rules", "/dev/zero"});
    EXPECT_EQ(r.status, 2) << cmd << r.err;
    EXPECT_THAT(r.err, HasSubstr("not a regular file")) << cmd;
    EXPECT_LT(absl::Now() - start, absl::Seconds(5));
    r = run({"--rules", dir_.path()});
    EXPECT_EQ(r.status, 2) << cmd << r.err;
    EXPECT_THAT(r.err, HasSubstr("a directory")) << cmd;
    r = run({"--rules=" + dir_.File("big.rules")});
    EXPECT_EQ(r.status, 2) << cmd << r.err;
    EXPECT_THAT(r.err, HasSubstr("larger than 1024 KiB")) << cmd;
    r = run({"--rules", dir_.File("missing.rules")});
    EXPECT_EQ(r.status, 1) << cmd << r.err;
    EXPECT_THAT(r.err, HasSubstr("missing.rules: No such file or directory")) << cmd;
    r = run({"--rule", ""});
    EXPECT_EQ(r.status, 2) << cmd << r.err;
    EXPECT_THAT(r.err, HasSubstr("rule 1, col 1: empty rule")) << cmd;
    r = run({"--rule=drop", "--rule=", "--rule=rst"});
    EXPECT_EQ(r.status, 2) << cmd << r.err;
    EXPECT_THAT(r.err, HasSubstr("rule 2, col 1: empty rule")) << cmd;
  }
}

TEST_F(WrenchCli, NetWithHostBitsIsRefused) {
  for (const char* cmd : {"proxy", "serve", "exec"}) {
    std::vector<std::string> args = {cmd, "--net", "10.89.0.0/8"};
    for (const std::string& a : Guard(cmd)) args.push_back(a);
    tu::WrenchRun r = Run(args);
    EXPECT_EQ(r.status, 2) << cmd;
    EXPECT_THAT(r.err, HasSubstr("10.89.0.0/8 has host bits set; did you mean 10.0.0.0/8?")) << cmd;
  }
}

TEST_F(WrenchCli, ExecSays127ForACommandNotFoundAnd126ForOneNotExecutable) {
  tu::WrenchRun r = Run({"exec", "no-such-command-here", "-x"});
  EXPECT_EQ(r.status, 127) << r.err;
  EXPECT_THAT(r.err, HasSubstr("no-such-command-here: command not found"));
  tu::WriteWholeFile(dir_.File("script"), "#!/bin/sh\nexit 0\n");
  ::chmod(dir_.File("script").c_str(), 0644);
  r = Run({"exec", "--", dir_.File("script")});
  EXPECT_EQ(r.status, 126) << r.err;
  EXPECT_THAT(r.err, HasSubstr("Permission denied"));
  r = Run({"exec", dir_.path()});
  EXPECT_EQ(r.status, 126) << r.err;
  EXPECT_THAT(r.err, HasSubstr("is a directory"));
}

TEST_F(WrenchCli, LadderReadsStandardInput) {
  const std::string log = absl::StrCat(WRENCH_SOURCE_DIR, "/tests/ladder/handwritten.jsonl");
  tu::WrenchRun from_file = Run({"ladder", log});
  tu::WrenchRun from_stdin = Run({"ladder", "-"}, log);
  ASSERT_EQ(from_stdin.status, 0) << from_stdin.err;
  EXPECT_EQ(from_stdin.out, from_file.out);
  EXPECT_THAT(from_stdin.out, HasSubstr("SYN+ACK"));
}

TEST_F(WrenchCli, LadderTellsAPcapFromALog) {
  tu::WriteWholeFile(dir_.File("run.pcap"), std::string("\xd4\xc3\xb2\xa1\x02\x00\x04\x00", 8));
  tu::WrenchRun r = Run({"ladder", dir_.File("run.pcap")});
  EXPECT_EQ(r.status, 1);
  EXPECT_THAT(r.err, HasSubstr("run.pcap is a pcap; give the --log file"));
}

TEST_F(WrenchCli, LadderRefusesAnOutExtensionItDoesNotKnow) {
  const std::string log = absl::StrCat(WRENCH_SOURCE_DIR, "/tests/ladder/handwritten.jsonl");
  tu::WrenchRun r = Run({"ladder", "--out=" + dir_.File("x.pdf"), log});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr(".txt, .svg or .html"));
  struct stat st;
  EXPECT_NE(::stat(dir_.File("x.pdf").c_str(), &st), 0) << "nothing is written";
  EXPECT_EQ(Run({"ladder", "--format=text", "--out=" + dir_.File("x.pdf"), log}).status, 0);
  EXPECT_EQ(Run({"ladder", "--out=" + dir_.File("x.txt"), log}).status, 0);
}

TEST_F(WrenchCli, ScenarioNamesAreCaseInsensitiveWithASuggestion) {
  tu::WrenchRun upper = Run({"scenario", "show", "SYN-Lost"});
  tu::WrenchRun lower = Run({"scenario", "show", "syn-lost"});
  EXPECT_EQ(upper.status, 0) << upper.err;
  EXPECT_EQ(upper.out, lower.out);
  tu::WrenchRun r = Run({"scenario", "show", "syn-lsot"});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("did you mean syn-lost?"));
  r = Run({"exec", "--scenario=fin-lots", "--", "no-such-command-here"});
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("did you mean fin-lost?"));
}

}  // namespace
}  // namespace wrench::proxy
