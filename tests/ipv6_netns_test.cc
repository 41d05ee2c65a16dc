// wrench dual-stack, end to end: `wrench proxy` with IPv6 fronts and upstreams,
// `wrench exec` whose namespace has an IPv6 default route, each with a kernel client
// and server over IPv6 and a rule that bites, and the capture's IPv6 packets. Every
// process runs in the test's own network namespace, where IPv6 is turned on.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proxy/os/netlink.h"
#include "tests/cli_testing.h"
#include "tests/netns_testing.h"

namespace wrench::proxy {
namespace {

using ::testing::HasSubstr;
namespace tu = ::wrench::proxy::testing;
using stack::IpAddress;

IpAddress V6(const char* text) { return *IpAddress::Parse(text); }

const IpAddress kLoopback6 = V6("::1");
// --net6's default for --net 10.89.0.0/24: the kernel is ::1 of it, fronts the rest.
const IpAddress kFront6 = V6("fd89:2e6c:4f1a:5900::2");
constexpr char kDropFirstSynAck[] = "drop on=to-client flags=SYN+ACK nth=1";

void WriteSysctl(const std::string& path, const std::string& value) {
  std::ofstream f(path);
  f << value;
}

void Hold(int fd) { (void)tu::ReadAll(fd, absl::Seconds(20)); }

// The version nibble of every packet of a LINKTYPE_RAW capture (24-byte file header,
// 16-byte record headers).
std::vector<int> PcapIpVersions(const std::string& path) {
  const std::string b = tu::ReadWholeFile(path);
  std::vector<int> out;
  size_t off = 24;
  for (int i = 0; i < 100000 && off + 16 <= b.size(); ++i) {
    uint32_t incl = 0;
    std::memcpy(&incl, b.data() + off + 8, 4);
    if (off + 16 + incl > b.size() || incl == 0) break;
    out.push_back(static_cast<uint8_t>(b[off + 16]) >> 4);
    off += 16 + incl;
  }
  return out;
}

class Ipv6Netns : public ::testing::Test {
 protected:
  void SetUp() override {
    WRENCH_ENTER_NETNS_OR_SKIP();
    // A fresh namespace takes the host's defaults, which may turn IPv6 off.
    WriteSysctl("/proc/sys/net/ipv6/conf/all/disable_ipv6", "0");
    WriteSysctl("/proc/sys/net/ipv6/conf/default/disable_ipv6", "0");
    WriteSysctl("/proc/sys/net/ipv6/conf/lo/disable_ipv6", "0");
  }

  std::unique_ptr<tu::WrenchProcess> Start(const std::vector<std::string>& args) {
    auto p = std::make_unique<tu::WrenchProcess>(dir_.path(), absl::StrCat("bg", ++started_), args,
                                                 "/dev/null");
    EXPECT_TRUE(p->WaitForStderr("wrench: ready")) << p->Stderr();
    return p;
  }
  tu::WrenchRun Run(const std::vector<std::string>& args) {
    return tu::RunWrench(dir_.path(), args);
  }

  // How long connect() to addr:port takes, and that it succeeds.
  absl::Duration ConnectTime(const IpAddress& addr, uint16_t port) {
    absl::Time start = absl::Now();
    auto fd = tu::ConnectTo(addr, port, absl::Seconds(5));
    EXPECT_TRUE(fd.ok()) << fd.status();
    return fd.ok() ? absl::Now() - start : absl::InfiniteDuration();
  }

  tu::TempDir dir_;
  int started_ = 0;
};

TEST_F(Ipv6Netns, ProxyRelaysAnIpv6FrontToAnIpv6UpstreamAndADropRuleBites) {
  auto server = tu::TcpServer::Start(
      kLoopback6, 0, [](int fd) { (void)tu::WriteAll(fd, "hello6", absl::Seconds(5)); });
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string pcap = dir_.File("v6.pcap");
  const std::string log = dir_.File("v6.jsonl");
  auto p = Start({"proxy", "--map",
                  absl::StrCat("[fd89:2e6c:4f1a:5900::2]:80=[::1]:", (*server)->port()), "--rule",
                  kDropFirstSynAck, "--pcap=" + pcap, "--log", log});
  const absl::Duration dropped = ConnectTime(kFront6, 80);
  std::fprintf(stderr, "connect to [%s]:80 with the first SYN-ACK dropped: %.1f ms\n",
               kFront6.ToString().c_str(), absl::ToDoubleMilliseconds(dropped));
  EXPECT_GT(dropped, absl::Milliseconds(700));
  EXPECT_LT(dropped, absl::Milliseconds(2500));
  // nth=1 is spent: the next connection is at once and reads the server's bytes.
  auto fd = tu::ConnectTo(kFront6, 80, absl::Seconds(5));
  ASSERT_TRUE(fd.ok()) << fd.status();
  auto got = tu::ReadAll(fd->get(), absl::Seconds(5));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, "hello6");
  EXPECT_EQ(p->Stop(), 0);
  const std::vector<int> versions = PcapIpVersions(pcap);
  EXPECT_FALSE(versions.empty());
  EXPECT_TRUE(std::all_of(versions.begin(), versions.end(), [](int v) { return v == 6; }));
  // The log and the ladder drawn from it name the IPv6 ends in brackets.
  const std::string text = tu::ReadWholeFile(log);
  EXPECT_THAT(text, HasSubstr("\"dst\":\"[fd89:2e6c:4f1a:5900::2]:80\"")) << text.substr(0, 400);
  tu::WrenchRun ladder = Run({"ladder", "--conn=2", log});
  EXPECT_EQ(ladder.status, 0) << ladder.err;
  EXPECT_THAT(ladder.out, HasSubstr("[fd89:2e6c:4f1a:5900::2]:80"));
  EXPECT_THAT(ladder.out, HasSubstr("SYN"));
}

TEST_F(Ipv6Netns, ProxyServesIpv4AndIpv6FrontsTogether) {
  auto a = tu::TcpServer::Start(IpAddress::V4(0x7f000001), 0, Hold);
  auto b = tu::TcpServer::Start(kLoopback6, 0, Hold);
  ASSERT_TRUE(a.ok() && b.ok());
  // A v4 front to a v6 upstream and a v6 front to a v4 one: --map in both spellings.
  auto p = Start({"proxy", "--map", absl::StrCat("10.89.0.2:80=[::1]:", (*b)->port()),
                  absl::StrCat("--map=[fd89:2e6c:4f1a:5900::3]:80=127.0.0.1:", (*a)->port())});
  EXPECT_TRUE(tu::ConnectTo(IpAddress::V4(0x0a590002), 80, absl::Seconds(5)).ok());
  EXPECT_TRUE(tu::ConnectTo(V6("fd89:2e6c:4f1a:5900::3"), 80, absl::Seconds(5)).ok());
  for (int i = 0; i < 250 && ((*a)->accepted() < 1 || (*b)->accepted() < 1); ++i)
    absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ((*a)->accepted(), 1);
  EXPECT_EQ((*b)->accepted(), 1);
  EXPECT_EQ(p->Stop(), 0);
}

TEST_F(Ipv6Netns, Net6TakesEveryFlagFormAndNoneTurnsIpv6Off) {
  auto server = tu::TcpServer::Start(kLoopback6, 0, Hold);
  ASSERT_TRUE(server.ok());
  const std::string up = absl::StrCat("=[::1]:", (*server)->port());
  for (const std::vector<std::string>& net6 : std::vector<std::vector<std::string>>{
           {"--net6", "fd00:1234:5678::/64"}, {"--net6=fd00:1234:5678::/64"}}) {
    std::vector<std::string> args = {"proxy", "--map=[fd00:1234:5678::9]:80" + up};
    args.insert(args.end(), net6.begin(), net6.end());
    auto p = Start(args);
    EXPECT_TRUE(tu::ConnectTo(V6("fd00:1234:5678::9"), 80, absl::Seconds(5)).ok()) << net6[0];
    EXPECT_EQ(p->Stop(), 0);
  }
  tu::WrenchRun r = Run({"proxy", "--net6=none", "--map=[fd89:2e6c:4f1a:5900::2]:80" + up});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("an IPv6 front needs --net6, and it is none"));
  r = Run({"proxy", "--net6=fd00:1234:5678::/64", "--map=[fd00:9999::2]:80" + up});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("the front address must be inside --net6 fd00:1234:5678::/64"));
  r = Run({"proxy", "--net6=fd00:1234:5678::1/64", "--map=10.89.0.2:80" + up});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("has host bits set; did you mean fd00:1234:5678::/64?"));
  r = Run({"proxy", "--map=[fd89:2e6c:4f1a:5900::1]:80" + up});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_THAT(r.err, HasSubstr("is the kernel's own address on the TUN"));
}

TEST_F(Ipv6Netns, Net6FollowsNetSoTwoWrenchesWithDifferentNetsBothStart) {
  auto first = Start({"proxy", "--map=10.89.0.2:80=127.0.0.1:80"});
  auto second = Start({"proxy", "--tun=wrench1", "--net=10.90.0.0/24",
                       "--map=[fd89:2e6c:4f1a:5a00::2]:80=[::1]:80"});
  // The same --net6 twice is refused as --net is.
  tu::WrenchRun third =
      Run({"proxy", "--tun=wrench2", "--net=10.91.0.0/24", "--net6=fd89:2e6c:4f1a:5900::/64",
           "--map=10.91.0.2:80=127.0.0.1:80"});
  EXPECT_EQ(third.status, 1);
  EXPECT_THAT(
      third.err,
      HasSubstr("--net6 fd89:2e6c:4f1a:5900::/64 overlaps the route fd89:2e6c:4f1a:5900::/64"));
  EXPECT_EQ(second->Stop(), 0);
  EXPECT_EQ(first->Stop(), 0);
}

// A python3 client in COMMAND: connects to [host]:port and prints what it reads.
std::vector<std::string> PythonReads(const std::string& host, uint16_t port) {
  return {"python3", "-c",
          absl::StrCat("import socket; s = socket.create_connection(('", host, "', ", port,
                       "), timeout=5); print(s.recv(100).decode())")};
}

TEST_F(Ipv6Netns, ExecReachesTheCallersIpv6LoopbackThroughTheGatewayAndRulesBite) {
  if (std::system("command -v python3 >/dev/null") != 0)
    GTEST_SKIP() << "python3 is needed as COMMAND";
  auto server = tu::TcpServer::Start(
      kLoopback6, 0, [](int fd) { (void)tu::WriteAll(fd, "from ::1", absl::Seconds(5)); });
  ASSERT_TRUE(server.ok());
  const std::string log = dir_.File("exec.jsonl");
  std::vector<std::string> args = {"exec", "--rule", "delay 300ms on=from-server flags=SYN+ACK",
                                   "--log=" + log};
  auto cmd = PythonReads("fd89:2e6c:4f1a:5900::1", (*server)->port());
  args.insert(args.end(), cmd.begin(), cmd.end());
  absl::Time start = absl::Now();
  tu::WrenchRun r = Run(args);
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "from ::1\n") << r.err;
  EXPECT_GT(took, absl::Milliseconds(300));
  EXPECT_THAT(tu::ReadWholeFile(log), HasSubstr("\"action\":\"delay\"")) << r.err;
}

TEST_F(Ipv6Netns, ExecDialsAnIpv6AddressByItsDefaultRouteAndCurlWorksToo) {
  // An address of the caller's namespace, outside every prefix of wrench's.
  ASSERT_TRUE(AddAddress("lo", V6("fd00:abcd::7"), 128).ok());
  absl::SleepFor(absl::Milliseconds(50));
  auto server = tu::TcpServer::Start(V6("fd00:abcd::7"), 0, [](int fd) {
    (void)tu::ReadAll(fd, absl::Milliseconds(200));
    (void)tu::WriteAll(fd, "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nv6\n", absl::Seconds(5));
  });
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string pcap = dir_.File("exec.pcap");
  if (std::system("command -v curl >/dev/null") == 0) {
    tu::WrenchRun r = Run({"exec", "--pcap", pcap, "--rule=rst on=from-server flags=SYN+ACK nth=1",
                           "curl", "-6", "-sS", "--retry", "0",
                           absl::StrCat("http://[fd00:abcd::7]:", (*server)->port(), "/")});
    EXPECT_NE(r.status, 0) << "the rst rule resets the first connection: " << r.out << r.err;
    r = Run({"exec", "--pcap", pcap, "curl", "-6", "-sS",
             absl::StrCat("http://[fd00:abcd::7]:", (*server)->port(), "/")});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, "v6\n");
    const std::vector<int> versions = PcapIpVersions(pcap);
    EXPECT_FALSE(versions.empty());
    EXPECT_TRUE(std::count(versions.begin(), versions.end(), 6) > 0);
  } else if (std::system("command -v python3 >/dev/null") == 0) {
    tu::WrenchRun r = Run(
        {"exec", "python3", "-c",
         absl::StrCat("import socket; s = socket.create_connection(('fd00:abcd::7', ",
                      (*server)->port(), "), timeout=5); s.sendall(b'x'); print(s.recv(100))")});
    EXPECT_EQ(r.status, 0) << r.err;
  } else {
    GTEST_SKIP() << "curl or python3 is needed as COMMAND";
  }
}

}  // namespace
}  // namespace wrench::proxy
