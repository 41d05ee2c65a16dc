// The --expect grammar (proxy/fault/expect.h) and its evaluation against a run's report
// (proxy/app/summary.h), without the network: reports are built by hand here. The same
// expectations against real runs are in tests/verdict_test.cc.
#include "proxy/fault/expect.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "proxy/app/summary.h"

namespace wrench::proxy {
namespace {

using ::testing::HasSubstr;

Expectation Parse(const std::string& text, ExpectContext ctx = ExpectContext::kRun) {
  auto e = ParseExpectation(text, ctx);
  EXPECT_TRUE(e.ok()) << text << ": " << e.status();
  return e.ok() ? *e : Expectation{};
}

std::string ErrorOf(const std::string& text, ExpectContext ctx = ExpectContext::kRun) {
  auto e = ParseExpectation(text, ctx);
  EXPECT_FALSE(e.ok()) << text << " parsed";
  return e.ok() ? "" : std::string(e.status().message());
}

TEST(ExpectGrammar, ParsesEveryKind) {
  Expectation e = Parse("rule 1 hits>=1");
  EXPECT_EQ(e.subject, (std::vector<std::string>{"rule", "1", "hits"}));
  EXPECT_EQ(e.op, ExpectOp::kGe);
  EXPECT_TRUE(e.numeric);
  EXPECT_EQ(e.number, 1);

  e = Parse("conn 2 client=time_wait");
  EXPECT_EQ(e.subject, (std::vector<std::string>{"conn", "2", "client"}));
  EXPECT_FALSE(e.numeric);
  EXPECT_EQ(e.word, "TIME-WAIT");

  e = Parse("  resets == 0 ");
  EXPECT_EQ(e.text, "resets == 0");
  EXPECT_EQ(e.op, ExpectOp::kEq);

  EXPECT_EQ(Parse("connections>3").op, ExpectOp::kGt);
  EXPECT_EQ(Parse("bytes<=100").op, ExpectOp::kLe);
  EXPECT_EQ(Parse("bytes-to-client<100").op, ExpectOp::kLt);
  EXPECT_EQ(Parse("conn 1 server!=socket-open").word, "SOCKET-OPEN");
  EXPECT_EQ(Parse("conn 1 server-visited=LAST-ACK").subject[2], "server-visited");
  EXPECT_EQ(Parse("conn 1 errors==0").subject[2], "errors");
  EXPECT_EQ(Parse("client connect-s>=0.9", ExpectContext::kScenario).number, 0.9);
  EXPECT_EQ(Parse("client error=ECONNRESET", ExpectContext::kScenario).word, "ECONNRESET");
  EXPECT_EQ(Parse("client eof=yes", ExpectContext::kScenario).word, "yes");
}

TEST(ExpectGrammar, ErrorsNameTheColumnAndTheLikelyWord) {
  std::string m = ErrorOf("rule 1 hist>=1");
  EXPECT_THAT(m, HasSubstr("column 8:"));
  EXPECT_THAT(m, HasSubstr("did you mean hits?"));
  EXPECT_THAT(m, HasSubstr("\n  rule 1 hist>=1\n         ^"));

  EXPECT_THAT(ErrorOf("rsets==0"),
              HasSubstr("column 1: unknown subject \"rsets\"; did you mean resets?"));
  EXPECT_THAT(ErrorOf("conn 1 state=TIME-WAIT"), HasSubstr("expected client, server,"));
  EXPECT_THAT(ErrorOf("conn 1 client=TIME_WIAT"), HasSubstr("did you mean TIME-WAIT?"));
  EXPECT_THAT(ErrorOf("conn 1 client>=CLOSED"), HasSubstr("compares with = or != only"));
  EXPECT_THAT(ErrorOf("conn x client=CLOSED"), HasSubstr("column 6: expected a connection number"));
  EXPECT_THAT(ErrorOf("rule 0 hits>=1"), HasSubstr("expected a rule number"));
  EXPECT_THAT(ErrorOf("rule 1 hits"), HasSubstr("column 12: expected a comparison"));
  EXPECT_THAT(ErrorOf("resets=="), HasSubstr("expected a value"));
  EXPECT_THAT(ErrorOf("resets==many"), HasSubstr("column 9: expected a number, got \"many\""));
  EXPECT_THAT(ErrorOf("resets==0 1"), HasSubstr("unexpected \"1\""));
  EXPECT_THAT(ErrorOf("resets !0"), HasSubstr("column 8: expected a comparison"));
  // Scenario-only subjects are unknown on the command line.
  EXPECT_THAT(ErrorOf("client bytes>=1"), HasSubstr("unknown subject \"client\""));
}

RunReport SampleReport() {
  RunReport r;
  r.connections = 2;
  r.resets = 1;
  r.bytes_to_server = 100;
  r.bytes_to_client = 1000;
  r.rules = {{1, "drop on=to-client flags=SYN+ACK nth=1", 1}, {2, "rst on=to-client has=FIN", 0}};
  ConnectionRecord a;
  a.info.id = 1;
  a.info.client_leg_state = "TIME-WAIT";
  a.info.server_leg_state = "socket closed both ways";
  a.info.bytes_to_client = 1000;
  a.client_visited =
      (1u << int(stack::TcpState::kEstablished)) | (1u << int(stack::TcpState::kTimeWait));
  ConnectionRecord b;
  b.info.id = 2;
  b.closed = true;
  b.info.client_leg_state = "CLOSED";
  b.info.server_leg_state = "socket closed";
  b.errors = {"client leg: reset by the peer (RST received)"};
  r.conns = {a, b};
  return r;
}

TEST(ExpectEvaluation, PassesAndFailsWithTheActualValue) {
  RunReport r = SampleReport();
  ExpectFacts facts = FactsOf(r);
  auto check = [&](const std::string& text) { return Evaluate(Parse(text), facts); };
  EXPECT_TRUE(check("rule 1 hits>=1").pass);
  ExpectResult miss = check("rule 2 hits>=1");
  EXPECT_FALSE(miss.pass);
  EXPECT_EQ(miss.actual, "0");
  EXPECT_EQ(ToString(miss), "expect rule 2 hits>=1: FAIL (0)");
  EXPECT_TRUE(check("connections==2").pass);
  EXPECT_TRUE(check("resets>0").pass);
  EXPECT_FALSE(check("resets==0").pass);
  EXPECT_TRUE(check("bytes==1100").pass);
  EXPECT_TRUE(check("bytes-to-server<101").pass);
  EXPECT_TRUE(check("conn 1 client=TIME-WAIT").pass);
  EXPECT_TRUE(check("conn 1 server=SOCKET-CLOSED-BOTH-WAYS").pass);
  ExpectResult closed = check("conn 2 client=TIME-WAIT");
  EXPECT_FALSE(closed.pass);
  EXPECT_EQ(closed.actual, "CLOSED");
  EXPECT_TRUE(check("conn 1 client-visited=ESTABLISHED").pass);
  EXPECT_TRUE(check("conn 1 client-visited!=CLOSING").pass);
  EXPECT_FALSE(check("conn 1 client-visited=CLOSING").pass);
  EXPECT_TRUE(check("conn 1 errors==0").pass);
  ExpectResult errors = check("conn 2 errors==0");
  EXPECT_FALSE(errors.pass);
  EXPECT_THAT(errors.actual, HasSubstr("reset by the peer"));
  EXPECT_TRUE(check("conn 1 bytes-to-client==1000").pass);
  ExpectResult missing = check("conn 3 client=CLOSED");
  EXPECT_FALSE(missing.pass);
  EXPECT_EQ(missing.actual, "no connection 3 (the run had 2)");
  EXPECT_EQ(check("rule 9 hits==0").actual, "no rule 9 (the run had 2)");
}

TEST(Summary, JsonHasConnectionsRulesTotalsAndExpectations) {
  RunReport r = SampleReport();
  RunOutcome o("exec", 0);
  o.exit_status = 3;
  o.results = EvaluateAll({Parse("rule 2 hits>=1")}, FactsOf(r));
  auto j = nlohmann::json::parse(SummaryJson(&r, o));
  EXPECT_EQ(j["command"], "exec");
  EXPECT_EQ(j["verdict"], "fail");
  EXPECT_EQ(j["exit_status"], 3);
  EXPECT_EQ(j["command_status"], 0);
  ASSERT_EQ(j["expectations"].size(), 1u);
  EXPECT_EQ(j["expectations"][0]["expect"], "rule 2 hits>=1");
  EXPECT_EQ(j["expectations"][0]["pass"], false);
  EXPECT_EQ(j["expectations"][0]["actual"], "0");
  EXPECT_EQ(j["rules"][0]["hits"], 1);
  EXPECT_EQ(j["totals"]["bytes_to_client"], 1000);
  ASSERT_EQ(j["connections"].size(), 2u);
  EXPECT_EQ(j["connections"][0]["client_leg"], "TIME-WAIT");
  EXPECT_EQ(j["connections"][0]["client_leg_visited"],
            nlohmann::json({"ESTABLISHED", "TIME-WAIT"}));
  EXPECT_EQ(j["connections"][1]["errors"][0], "client leg: reset by the peer (RST received)");
}

TEST(Summary, StateWordsAreCanonical) {
  EXPECT_EQ(StateWord("socket: server closed"), "SOCKET-SERVER-CLOSED");
  EXPECT_EQ(StateWord("time_wait"), "TIME-WAIT");
  EXPECT_EQ(StateWord("FIN-WAIT-2"), "FIN-WAIT-2");
}

}  // namespace
}  // namespace wrench::proxy
