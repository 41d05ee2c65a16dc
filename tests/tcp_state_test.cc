// Tests for the TCP state names and the RFC 9293 Figure 5 transition table
// (stack/tcp_state.h): every diagram edge is legal, a sample of non-edges is not.
#include "stack/tcp_state.h"

#include <set>
#include <sstream>
#include <utility>

#include "gtest/gtest.h"

namespace wrench::stack {
namespace {

using S = TcpState;

TEST(TcpState, NamesFollowRfc9293) {
  EXPECT_EQ(StateName(S::kClosed), "CLOSED");
  EXPECT_EQ(StateName(S::kListen), "LISTEN");
  EXPECT_EQ(StateName(S::kSynSent), "SYN-SENT");
  EXPECT_EQ(StateName(S::kSynReceived), "SYN-RECEIVED");
  EXPECT_EQ(StateName(S::kEstablished), "ESTABLISHED");
  EXPECT_EQ(StateName(S::kFinWait1), "FIN-WAIT-1");
  EXPECT_EQ(StateName(S::kFinWait2), "FIN-WAIT-2");
  EXPECT_EQ(StateName(S::kCloseWait), "CLOSE-WAIT");
  EXPECT_EQ(StateName(S::kClosing), "CLOSING");
  EXPECT_EQ(StateName(S::kLastAck), "LAST-ACK");
  EXPECT_EQ(StateName(S::kTimeWait), "TIME-WAIT");
  std::ostringstream os;
  os << S::kFinWait2;
  EXPECT_EQ(os.str(), "FIN-WAIT-2");
}

TEST(TcpState, ParseIsInverseOfName) {
  for (int i = 0; i < kTcpStateCount; ++i) {
    auto s = static_cast<TcpState>(i);
    EXPECT_EQ(ParseStateName(StateName(s)), s);
  }
}

TEST(TcpState, ParseAcceptsLowerCaseAndUnderscores) {
  EXPECT_EQ(ParseStateName("time_wait"), S::kTimeWait);
  EXPECT_EQ(ParseStateName("Fin-Wait-1"), S::kFinWait1);
  EXPECT_EQ(ParseStateName("SYN_RECEIVED"), S::kSynReceived);
}

TEST(TcpState, ParseRejectsUnknownNames) {
  for (const char* s : {"", "TIMEWAIT", "FIN-WAIT-3", "SYN-RCVD", "established ", "CLOSED-"}) {
    EXPECT_EQ(ParseStateName(s), std::nullopt) << s;
  }
}

const std::set<std::pair<S, S>>& DiagramEdges() {
  static const std::set<std::pair<S, S>> edges = {
      {S::kClosed, S::kListen},          {S::kClosed, S::kSynSent},
      {S::kListen, S::kSynReceived},     {S::kListen, S::kSynSent},
      {S::kListen, S::kClosed},          {S::kSynSent, S::kSynReceived},
      {S::kSynSent, S::kEstablished},    {S::kSynSent, S::kClosed},
      {S::kSynReceived, S::kEstablished}, {S::kSynReceived, S::kFinWait1},
      {S::kSynReceived, S::kListen},     {S::kEstablished, S::kFinWait1},
      {S::kEstablished, S::kCloseWait},  {S::kFinWait1, S::kFinWait2},
      {S::kFinWait1, S::kClosing},       {S::kFinWait1, S::kTimeWait},
      {S::kFinWait2, S::kTimeWait},      {S::kCloseWait, S::kLastAck},
      {S::kClosing, S::kTimeWait},       {S::kLastAck, S::kClosed},
      {S::kTimeWait, S::kClosed},
  };
  return edges;
}

TEST(TcpState, EveryDiagramEdgeIsLegal) {
  for (const auto& [from, to] : DiagramEdges()) {
    EXPECT_TRUE(IsLegalTransition(from, to)) << from << " -> " << to;
  }
}

TEST(TcpState, EveryStateReachesClosedByResetOrAbort) {
  for (int i = 1; i < kTcpStateCount; ++i) {
    EXPECT_TRUE(IsLegalTransition(static_cast<TcpState>(i), S::kClosed))
        << static_cast<TcpState>(i);
  }
}

TEST(TcpState, NothingElseIsLegal) {
  for (int i = 0; i < kTcpStateCount; ++i) {
    for (int j = 0; j < kTcpStateCount; ++j) {
      auto from = static_cast<TcpState>(i), to = static_cast<TcpState>(j);
      bool expected = DiagramEdges().count({from, to}) > 0 || (to == S::kClosed && from != to);
      EXPECT_EQ(IsLegalTransition(from, to), expected) << from << " -> " << to;
    }
  }
}

TEST(TcpState, SampleOfIllegalEdges) {
  EXPECT_FALSE(IsLegalTransition(S::kClosed, S::kEstablished));
  EXPECT_FALSE(IsLegalTransition(S::kEstablished, S::kTimeWait));
  EXPECT_FALSE(IsLegalTransition(S::kFinWait2, S::kClosing));
  EXPECT_FALSE(IsLegalTransition(S::kCloseWait, S::kFinWait1));
  EXPECT_FALSE(IsLegalTransition(S::kTimeWait, S::kEstablished));
  EXPECT_FALSE(IsLegalTransition(S::kEstablished, S::kEstablished));
  EXPECT_FALSE(IsLegalTransition(S::kClosed, S::kClosed));
}

TEST(TcpState, AValueOutsideTheEnumIsUnknownAndHasNoEdges) {
  auto bad = static_cast<TcpState>(kTcpStateCount);
  EXPECT_EQ(StateName(bad), "UNKNOWN");
  EXPECT_FALSE(IsLegalTransition(bad, S::kClosed));
  EXPECT_FALSE(IsLegalTransition(bad, S::kListen));
  EXPECT_FALSE(IsLegalTransition(S::kClosed, bad));
}

TEST(TcpState, ParseComparesEveryCharacter) {
  EXPECT_EQ(ParseStateName("XLOSED"), std::nullopt);      // the first one too
  EXPECT_EQ(ParseStateName("FIN.WAIT-1"), std::nullopt);  // only '_' stands for '-'
  EXPECT_EQ(ParseStateName("_LOSED"), std::nullopt);      // and only where '-' is
  EXPECT_EQ(ParseStateName("fin_wait_2"), S::kFinWait2);
}

}  // namespace
}  // namespace wrench::stack
