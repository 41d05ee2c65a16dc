// `wrench ladder` on a real capture: a kernel client and server talk through wrench
// (upstream over the TUN, so both legs are logged) inside a network namespace the
// test creates, and the ladder of that --log must show the textbook four-way teardown.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proxy/app/service.h"
#include "proxy/ladder/ladder.h"
#include "tests/netns_testing.h"

namespace wrench::proxy {
namespace {

using stack::IpAddress;
using ::testing::HasSubstr;
namespace tu = ::wrench::proxy::testing;

const IpAddress kKernel = IpAddress::V4(0x0a590001);  // 10.89.0.1, the server
const IpAddress kFront = IpAddress::V4(0x0a590002);   // 10.89.0.2:80, what the client dials
constexpr uint16_t kServerPort = 8080;

// A request of 100 bytes, a response of 1000, then the client closes first and the
// server closes when it reads the end: the four-way teardown on both legs.
std::string RunExchangeThroughWrench(const std::string& log_path, std::vector<std::string> rules) {
  ServiceOptions o;
  auto m = ParseMapping(absl::StrCat("10.89.0.2:80=", kKernel.ToString(), ":", kServerPort));
  EXPECT_TRUE(m.ok()) << m.status();
  o.maps.push_back(*m);
  o.upstream_via = UpstreamVia::kTun;
  o.tcp.msl = absl::Milliseconds(200);  // so TIME-WAIT ends within the test
  o.log_path = log_path;
  for (size_t i = 0; i < rules.size(); ++i) {
    auto r = ParseRule(rules[i], static_cast<int>(i + 1));
    EXPECT_TRUE(r.ok()) << r.status();
    if (r.ok()) o.rules.push_back(*r);
  }
  auto service = Service::Start(o);
  if (!service.ok()) return absl::StrCat("start: ", service.status().ToString());
  std::thread loop([&] { (*service)->Run(); });
  std::string problem;
  {
    auto server = tu::TcpServer::Start(kKernel, kServerPort, [](int fd) {
      auto req = tu::ReadAll(fd, absl::Seconds(10), 100);
      if (!req.ok()) return;
      (void)tu::WriteAll(fd, std::string(1000, 'r'), absl::Seconds(10));
      (void)tu::ReadAll(fd, absl::Seconds(10));  // until the client's FIN
    });
    if (!server.ok()) problem = server.status().ToString();
    auto fd = tu::ConnectTo(kFront, 80, absl::Seconds(10));
    if (problem.empty() && !fd.ok()) problem = fd.status().ToString();
    if (problem.empty()) {
      (void)tu::WriteAll(fd->get(), std::string(100, 'q'), absl::Seconds(10));
      auto resp = tu::ReadAll(fd->get(), absl::Seconds(10), 1000);
      if (!resp.ok() || resp->size() != 1000) problem = "the response did not arrive whole";
      fd->reset();  // close: the client's FIN
      absl::SleepFor(absl::Seconds(1));  // the teardown, and TIME-WAIT on the server leg
    }
  }
  (*service)->Stop();
  loop.join();
  service->reset();
  return problem;
}

class LadderProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status st = tu::EnterFreshNetworkNamespace();
    if (!st.ok()) GTEST_SKIP() << "needs a network namespace of its own: " << st;
    char dir[] = "/tmp/wrench-ladder-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    log_ = dir_ + "/log.jsonl";
  }
  void TearDown() override {
    // WRENCH_LADDER_KEEP=DIR keeps the capture (docs/four-way-teardown.* come from one).
    if (const char* keep = std::getenv("WRENCH_LADDER_KEEP"); keep != nullptr && !dir_.empty()) {
      std::filesystem::copy_file(
          log_,
          std::filesystem::path(keep) /
              (std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()) +
               ".jsonl"),
          std::filesystem::copy_options::overwrite_existing);
    }
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  std::string dir_, log_;
};

TEST_F(LadderProxyTest, RealCaptureShowsTheFourWayTeardownOnBothLegs) {
  ASSERT_EQ(RunExchangeThroughWrench(log_, {}), "");
  auto text = DrawLadder(log_, LadderFormat::kText);
  ASSERT_TRUE(text.ok()) << text.status();
  // The handshake and the data, with relative numbers.
  EXPECT_THAT(*text, HasSubstr(" SYN seq=0 "));
  EXPECT_THAT(*text, HasSubstr(" SYN+ACK seq=0 ack=1 "));
  EXPECT_THAT(*text, HasSubstr("len=100 "));
  EXPECT_THAT(*text, HasSubstr("len=1000 "));
  // The client closed first: its FIN is seq 101 (1 + 100 bytes), acking 1001.
  EXPECT_THAT(*text, HasSubstr(" FIN+ACK seq=101 ack=1001 "));
  // The proxy's client leg is the passive closer, its server leg the active one
  // (FIN-WAIT-2 only if the server acks the FIN before sending its own).
  for (const char* s : {"[CLOSE-WAIT]", "[LAST-ACK]", "[FIN-WAIT-1]", "[TIME-WAIT]", "[CLOSED]"}) {
    EXPECT_THAT(*text, HasSubstr(s));
  }
  // And the kernel peers, inferred: the client went through FIN-WAIT-2 (the proxy
  // acks at once and sends its FIN only when the server's came) and TIME-WAIT, the
  // server through CLOSE-WAIT and LAST-ACK.
  for (const char* s :
       {"~SYN-SENT", "~FIN-WAIT-1", "~FIN-WAIT-2", "~TIME-WAIT", "~CLOSE-WAIT", "~LAST-ACK"}) {
    EXPECT_THAT(*text, HasSubstr(s));
  }
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    // Code points, not bytes: the box-drawing characters are one column each.
    size_t cols = 0;
    for (char c : line) cols += (static_cast<unsigned char>(c) & 0xc0) != 0x80;
    EXPECT_LE(cols, 100u) << line;
  }
  // Causal order, whatever order the proxy wrote the lines in: the client's FIN
  // comes before the proxy's ACK of it, and before the FIN relayed upstream.
  auto records = ReadLadderLog(log_);
  ASSERT_TRUE(records.ok()) << records.status();
  std::vector<Ladder> drawn = BuildLadders(*records);
  ASSERT_EQ(drawn.size(), 1u);
  auto row_of = [&](LadderLine from, LadderLine to, const std::string& label) -> size_t {
    for (const LadderArrow& a : drawn[0].arrows) {
      if (a.from == from && a.to == to && a.label == label) return a.row;
    }
    ADD_FAILURE() << "no arrow " << label;
    return 0;
  };
  const size_t fin =
      row_of(LadderLine::kClient, LadderLine::kClientLeg, "FIN+ACK seq=101 ack=1001");
  EXPECT_LT(fin, row_of(LadderLine::kClientLeg, LadderLine::kClient, "ACK seq=1001 ack=102"));
  EXPECT_LT(fin, row_of(LadderLine::kServerLeg, LadderLine::kServer, "FIN+ACK seq=101 ack=1001"));
  auto svg = DrawLadder(log_, LadderFormat::kSvg);
  ASSERT_TRUE(svg.ok()) << svg.status();
  EXPECT_THAT(*svg, HasSubstr("TIME-WAIT"));
}

TEST_F(LadderProxyTest, RealCaptureShowsADroppedSynAckAndADelayedFin) {
  // 150 ms: below the endpoint's 200 ms minimum RTO, so the held FIN is not sent
  // again (and held a second time) before it is released.
  ASSERT_EQ(RunExchangeThroughWrench(log_, {"drop on=to-client flags=SYN+ACK nth=1",
                                            "delay 150ms on=to-server has=FIN"}),
            "");
  auto ladders = ReadLadderLog(log_);
  ASSERT_TRUE(ladders.ok()) << ladders.status();
  std::vector<Ladder> drawn = BuildLadders(*ladders);
  ASSERT_EQ(drawn.size(), 1u);
  int dropped = 0, held = 0;
  for (const LadderArrow& a : drawn[0].arrows) {
    if (a.fate == LadderArrow::Fate::kDropped) {
      ++dropped;
      EXPECT_THAT(a.label, HasSubstr("SYN+ACK seq=0 ack=1"));
      EXPECT_EQ(a.to, LadderLine::kClient);
    }
    if (a.fate == LadderArrow::Fate::kHeld) {
      ++held;
      EXPECT_THAT(a.label, HasSubstr("FIN"));
      EXPECT_GT(a.end_row, a.row);
      EXPECT_GE(drawn[0].rows[a.end_row].t - drawn[0].rows[a.row].t, 0.149);
    }
  }
  EXPECT_EQ(dropped, 1);
  EXPECT_EQ(held, 1);
  auto text = DrawLadder(log_, LadderFormat::kText);
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_THAT(*text, HasSubstr("rule 1: drop on=to-client"));
  EXPECT_THAT(*text, HasSubstr("delayed 150ms"));
}

}  // namespace
}  // namespace wrench::proxy
