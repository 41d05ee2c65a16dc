// Integration tests of `wrench proxy`: a real TUN device and real kernel TCP clients
// and servers, inside a network namespace each test creates for itself (every test
// runs in its own process under ctest). The client dials a front address of the TUN
// subnet; the server listens on loopback (socket upstream) or on the kernel's TUN
// address (tun upstream).
#include "proxy/relay/proxy.h"

#include <netinet/tcp.h>
#include <sys/socket.h>

#include <sys/wait.h>

#include <pcap/pcap.h>
#include <poll.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <random>
#include <thread>

#include "absl/hash/hash.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proxy/app/service.h"
#include "tests/netns_testing.h"

namespace wrench::proxy {
namespace {

using stack::IpAddress;
using stack::TcpState;
using ::testing::HasSubstr;
using ::testing::Not;
namespace tu = ::wrench::proxy::testing;

const IpAddress kFront = IpAddress::V4(0x0a590002);    // 10.89.0.2
const IpAddress kKernel = IpAddress::V4(0x0a590001);   // 10.89.0.1
const IpAddress kLoopback = IpAddress::V4(0x7f000001);

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// Echo: reads everything until the client half-closes, then writes it back and closes.
void EchoHandler(int fd) {
  auto data = tu::ReadAll(fd, absl::Seconds(30));
  if (!data.ok()) return;
  (void)tu::WriteAll(fd, *data, absl::Seconds(30));
  ::shutdown(fd, SHUT_WR);
  (void)tu::ReadAll(fd, absl::Seconds(5));
}

class ProxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status st = tu::EnterFreshNetworkNamespace();
    if (!st.ok()) GTEST_SKIP() << "needs a network namespace of its own: " << st;
  }

  void TearDown() override {
    StopProxy();
    if (!temp_dir_.empty()) std::system(absl::StrCat("rm -rf ", temp_dir_).c_str());
  }

  // Starts wrench with the front 10.89.0.2:80 mapped to `upstream_port` on loopback
  // (socket) or on the kernel's TUN address (tun).
  void StartProxy(uint16_t upstream_port, std::vector<std::string> rules = {},
                  UpstreamVia via = UpstreamVia::kSocket, int mtu = 1500) {
    ServiceOptions o;
    IpAddress up = via == UpstreamVia::kTun ? kKernel : kLoopback;
    auto m = ParseMapping(absl::StrCat("10.89.0.2:80=", up.ToString(), ":", upstream_port));
    ASSERT_TRUE(m.ok()) << m.status();
    o.maps.push_back(*m);
    o.upstream_via = via;
    o.mtu = mtu;
    o.tcp.msl = absl::Seconds(1);
    o.seed = 7;
    o.allow_idle_rules = allow_idle_rules_;
    for (size_t i = 0; i < rules.size(); ++i) {
      auto r = ParseRule(rules[i], static_cast<int>(i + 1));
      ASSERT_TRUE(r.ok()) << r.status();
      o.rules.push_back(*r);
    }
    o.pcap_path = pcap_path_;
    o.log_path = log_path_;
    o.log_line = [](const std::string& l) { std::fprintf(stderr, "%s\n", l.c_str()); };
    o.verbose = std::getenv("WRENCH_TEST_VERBOSE") != nullptr;
    auto s = Service::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    service_ = std::move(*s);
    loop_ = std::thread([this] { service_->Run(); });
  }

  void StopProxy() {
    if (!service_) return;
    service_->Stop();
    loop_.join();
    service_.reset();
  }

  // The proxy's client-leg state of its only (or first) connection.
  std::string ClientLegState() {
    std::string state = "none";
    service_->RunOnLoop([&] {
      auto conns = service_->proxy().Connections();
      if (!conns.empty()) state = conns[0].client_leg_state;
    });
    return state;
  }

  absl::StatusOr<UniqueFd> Connect(absl::Duration timeout = absl::Seconds(10)) {
    return tu::ConnectTo(kFront, 80, timeout);
  }

  // Sends `data`, half-closes, reads the echo; true when it came back intact.
  void EchoRoundTrip(const std::string& data) {
    auto fd = Connect();
    ASSERT_TRUE(fd.ok()) << fd.status();
    std::string back;
    std::thread reader([&] {
      auto r = tu::ReadAll(fd->get(), absl::Seconds(60));
      if (r.ok()) back = *r;
    });
    ASSERT_TRUE(tu::WriteAll(fd->get(), data, absl::Seconds(60)).ok());
    ::shutdown(fd->get(), SHUT_WR);
    reader.join();
    ASSERT_EQ(back.size(), data.size());
    EXPECT_TRUE(back == data) << "echoed bytes differ";
  }

  // The server answers a request with a few bytes and closes; with `rule`, the client
  // reads ECONNRESET instead of EOF. (The server waits for the request so the reset
  // cannot race the client's connect.)
  void ExpectServerCloseResetsTheClient(const std::string& rule) {
    auto server = tu::TcpServer::Start(kLoopback, 0, [](int fd) {
      (void)tu::ReadAll(fd, absl::Seconds(5), 1);
      (void)tu::WriteAll(fd, "partial", absl::Seconds(5));
    });
    ASSERT_TRUE(server.ok());
    StartProxy((*server)->port(), {rule});
    auto fd = Connect();
    ASSERT_TRUE(fd.ok()) << fd.status();
    ASSERT_TRUE(tu::WriteAll(fd->get(), "?", absl::Seconds(5)).ok());
    auto r = tu::ReadAll(fd->get(), absl::Seconds(10));
    ASSERT_FALSE(r.ok()) << "read " << r->size() << " bytes and EOF";
    EXPECT_EQ(tu::ErrnoOf(r.status()), ECONNRESET) << r.status();
  }

  // Echoes `bytes` through the proxy started with offloads and checks that the
  // proxy was offered the client's data as wire segments, not super-segments.
  // Skips the test where the TUN has no offloads.
  void ExpectWireSegmentsOffered(size_t bytes);
  // A capture for the next StartProxy, in a directory TearDown removes.
  void CaptureToTemp();
  // The ACKs without data wrench's endpoint sent the client, in the capture, once
  // the proxy has stopped.
  size_t PureAcksToClient();

  std::unique_ptr<Service> service_;
  std::thread loop_;
  std::string pcap_path_, log_path_;
  std::string temp_dir_;  // removed by TearDown
  bool allow_idle_rules_ = false;
};

// --- plain relay --------------------------------------------------------------

TEST_F(ProxyTest, RelaysBytesBothWaysWithHalfClose) {
  auto server = tu::TcpServer::Start(kLoopback, 0, EchoHandler);
  ASSERT_TRUE(server.ok()) << server.status();
  StartProxy((*server)->port());
  EchoRoundTrip(RandomBytes(3 << 20, 1));
}

TEST_F(ProxyTest, RelaysManyConcurrentConnections) {
  auto server = tu::TcpServer::Start(kLoopback, 0, EchoHandler);
  ASSERT_TRUE(server.ok());
  StartProxy((*server)->port());
  std::vector<std::thread> clients;
  for (int i = 0; i < 24; ++i) {
    clients.emplace_back([this, i] { EchoRoundTrip(RandomBytes(100'000 + 7919 * i, i)); });
  }
  for (auto& t : clients) t.join();
  absl::SleepFor(absl::Milliseconds(200));
  ProxyStats stats;
  service_->RunOnLoop([&] { stats = service_->proxy().stats(); });
  EXPECT_EQ(stats.connections, 24u);
}

TEST_F(ProxyTest, ServerHalfCloseIsRelayedWhileClientKeepsSending) {
  // The server says hello and closes its side at once; the client sends afterwards and
  // the server reads it all: data keeps flowing after the first FIN.
  std::string got;
  auto server = tu::TcpServer::Start(kLoopback, 0, [&](int fd) {
    (void)tu::WriteAll(fd, "hello", absl::Seconds(5));
    ::shutdown(fd, SHUT_WR);
    auto r = tu::ReadAll(fd, absl::Seconds(30));
    if (r.ok()) got = *r;
  });
  ASSERT_TRUE(server.ok());
  StartProxy((*server)->port());
  auto fd = Connect();
  ASSERT_TRUE(fd.ok());
  auto hello = tu::ReadAll(fd->get(), absl::Seconds(10));  // ends at the FIN
  ASSERT_TRUE(hello.ok()) << hello.status();
  EXPECT_EQ(*hello, "hello");
  std::string late = RandomBytes(500'000, 3);
  ASSERT_TRUE(tu::WriteAll(fd->get(), late, absl::Seconds(30)).ok());
  ::shutdown(fd->get(), SHUT_WR);
  fd->reset();
  server->reset();  // joins the handler
  EXPECT_EQ(got.size(), late.size());
  EXPECT_TRUE(got == late);
}

TEST_F(ProxyTest, ServerResetAfterItsFinResetsTheClient) {
  // The server closes its side, then resets the connection (SO_LINGER 0) while the
  // client sends nothing: the client, in CLOSE-WAIT once the FIN arrived, is reset too.
  auto server = tu::TcpServer::Start(kLoopback, 0, [](int fd) {
    ::shutdown(fd, SHUT_WR);
    absl::SleepFor(absl::Milliseconds(300));
    linger lg{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  });
  ASSERT_TRUE(server.ok());
  StartProxy((*server)->port());
  auto fd = Connect();
  ASSERT_TRUE(fd.ok());
  auto wait = tu::WaitForTcpState(fd->get(), TcpState::kCloseWait, absl::Seconds(5));
  ASSERT_TRUE(wait.ok()) << wait.status();
  auto st = tu::WaitForTcpState(fd->get(), TcpState::kClosed, absl::Seconds(5));
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(*st, TcpState::kClosed) << "the client stayed in " << StateName(*st);
}

// With --upstream-via tun the server listens on the kernel's TUN address, which
// exists once the proxy has configured the device: start the proxy first.
constexpr uint16_t kTunServerPort = 8080;

TEST_F(ProxyTest, TunUpstreamRelaysBytes) {
  StartProxy(kTunServerPort, {}, UpstreamVia::kTun);
  auto server = tu::TcpServer::Start(kKernel, kTunServerPort, EchoHandler);
  ASSERT_TRUE(server.ok()) << server.status();
  EchoRoundTrip(RandomBytes(2 << 20, 2));
}

TEST_F(ProxyTest, LargeMtuRelaysBytes) {
  StartProxy(kTunServerPort, {}, UpstreamVia::kTun, 65520);
  auto server = tu::TcpServer::Start(kKernel, kTunServerPort, EchoHandler);
  ASSERT_TRUE(server.ok()) << server.status();
  EchoRoundTrip(RandomBytes(8 << 20, 4));
}

// --- data faults: the transfer still arrives intact ------------------------------

TEST_F(ProxyTest, DataFaultsAtEveryHookStillDeliverIntact) {
  StartProxy(kTunServerPort,
             {"drop on=from-client len>0 p=0.05", "dup on=to-server len>0 p=0.05",
              "reorder on=from-server len>0 p=0.05", "delay 5ms~2ms on=to-client len>0 p=0.05",
              "drop on=to-client len>0 p=0.03", "reorder on=to-server len>0 p=0.05",
              "dup 2 on=from-server len>0 p=0.03", "delay 3ms on=from-client len>0 p=0.05"},
             UpstreamVia::kTun);
  auto server = tu::TcpServer::Start(kKernel, kTunServerPort, EchoHandler);
  ASSERT_TRUE(server.ok()) << server.status();
  EchoRoundTrip(RandomBytes(300'000, 5));
  int hits = 0;
  service_->RunOnLoop([&] {
    for (const auto& r : service_->engine().Rules()) hits += r.hits > 0;
  });
  EXPECT_EQ(hits, 8) << "every rule should have fired";
}

TEST_F(ProxyTest, DataFaultsOnTheClientLegWithSocketUpstream) {
  auto server = tu::TcpServer::Start(kLoopback, 0, EchoHandler);
  ASSERT_TRUE(server.ok());
  StartProxy((*server)->port(),
             {"drop on=from-client len>0 p=0.05", "dup on=to-client len>0 p=0.05",
              "reorder on=to-client len>0 p=0.05", "delay 2ms on=from-client p=0.1"});
  EchoRoundTrip(RandomBytes(1 << 20, 6));
}

// --- the server leg on a kernel socket: delays, FIN as shutdown, RST as abort -------

std::vector<uint64_t> RuleHits(Service& service) {
  std::vector<uint64_t> hits;
  service.RunOnLoop([&] {
    for (const auto& r : service.engine().Rules()) hits.push_back(r.hits);
  });
  return hits;
}

TEST_F(ProxyTest, SocketLegDelaysWritesAndReadsInOrderAndIgnoresWhatASocketCannotDo) {
  auto server = tu::TcpServer::Start(kLoopback, 0, EchoHandler);
  ASSERT_TRUE(server.ok());
  // drop, dup and reorder have no meaning on a kernel socket: they never fire there
  // (refused at start unless --allow-idle-rules keeps them).
  allow_idle_rules_ = true;
  StartProxy((*server)->port(), {"drop on=to-server len>0", "dup on=from-server",
                                 "reorder on=to-server", "delay 20ms~15ms on=to-server len>0 p=0.3",
                                 "delay 20ms~15ms on=from-server len>0 p=0.3"});
  // Jitter releases later writes before earlier ones: the gate keeps stream order.
  EchoRoundTrip(RandomBytes(1 << 20, 11));
  auto hits = RuleHits(*service_);
  ASSERT_EQ(hits.size(), 5u);
  EXPECT_EQ(hits[0] + hits[1] + hits[2], 0u);
  EXPECT_GT(hits[3], 0u);
  EXPECT_GT(hits[4], 0u);
}

TEST_F(ProxyTest, SocketLegDelayedConnectDelaysTheHandshake) {
  auto server = tu::TcpServer::Start(kLoopback, 0, EchoHandler);
  ASSERT_TRUE(server.ok());
  StartProxy((*server)->port(), {"delay 400ms on=to-server flags=SYN"});
  absl::Time start = absl::Now();
  EchoRoundTrip("ping");
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(380));
  EXPECT_EQ(RuleHits(*service_)[0], 1u);
}

TEST_F(ProxyTest, SocketLegDelayedFinDelaysTheServersEof) {
  auto server = tu::TcpServer::Start(kLoopback, 0, EchoHandler);  // echoes after EOF
  ASSERT_TRUE(server.ok());
  char dir[] = "/tmp/wrench-test-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  log_path_ = absl::StrCat(dir, "/log.jsonl");
  StartProxy((*server)->port(), {"delay 500ms on=to-server has=FIN"});
  auto fd = Connect();
  ASSERT_TRUE(fd.ok()) << fd.status();
  ASSERT_TRUE(tu::WriteAll(fd->get(), "hello", absl::Seconds(5)).ok());
  absl::Time start = absl::Now();
  ::shutdown(fd->get(), SHUT_WR);
  auto r = tu::ReadAll(fd->get(), absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "hello");
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(480));
  StopProxy();
  // The log shows the shutdown as a socket event: after the 5 bytes (seq 1-5) comes
  // the FIN at seq 6, acknowledging nothing read yet (ack 1).
  std::ifstream log(log_path_);
  std::string line, fin;
  while (std::getline(log, line)) {
    if (line.find("\"rule\":1") != std::string::npos) fin = line;
  }
  EXPECT_NE(fin.find("\"note\":\"socket\""), std::string::npos) << fin;
  EXPECT_NE(fin.find("\"flags\":\"FIN+ACK\""), std::string::npos) << fin;
  EXPECT_NE(fin.find("\"seq\":6,"), std::string::npos) << fin;
  EXPECT_NE(fin.find("\"ack\":1,"), std::string::npos) << fin;
  std::system(absl::StrCat("rm -rf ", dir).c_str());
}

TEST_F(ProxyTest, SocketLegRstInsteadOfShutdownAbortsTowardTheServer) {
  std::atomic<int> server_errno{0};
  std::atomic<size_t> server_read{0};
  auto server = tu::TcpServer::Start(kLoopback, 0, [&](int fd) {
    std::string got;
    char buf[4096];
    absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (absl::Now() < deadline) {
      if (!tu::WaitFor(fd, POLLIN, deadline, "read").ok()) break;
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n > 0) {
        got.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      server_errno = n == 0 ? -1 : errno;  // -1: a plain EOF
      break;
    }
    server_read = got.size();
  });
  ASSERT_TRUE(server.ok());
  StartProxy((*server)->port(), {"rst on=to-server has=FIN"});
  auto fd = Connect();
  ASSERT_TRUE(fd.ok()) << fd.status();
  ASSERT_TRUE(tu::WriteAll(fd->get(), "data", absl::Seconds(5)).ok());
  ::shutdown(fd->get(), SHUT_WR);
  auto r = tu::ReadAll(fd->get(), absl::Seconds(10));
  ASSERT_FALSE(r.ok()) << "the client read EOF";
  EXPECT_EQ(tu::ErrnoOf(r.status()), ECONNRESET) << r.status();
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (server_errno == 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(server_errno, ECONNRESET) << "the server's read should fail with a reset, not EOF";
}

TEST_F(ProxyTest, SocketLegRstInsteadOfTheServersFinResetsTheClient) {
  ExpectServerCloseResetsTheClient("rst on=from-server has=FIN");
}

TEST_F(ProxyTest, SocketLegDelayedRefusalDelaysTheClientsRst) {
  StartProxy(1, {"delay 300ms on=from-server has=RST"});  // nothing listens on port 1
  absl::Time start = absl::Now();
  auto fd = Connect();
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(tu::ErrnoOf(fd.status()), ECONNREFUSED) << fd.status();
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(280));
}

// --- handshake and teardown faults, as the kernel peer sees them -------------------

TEST_F(ProxyTest, DroppedSynAckMakesTheClientRetransmitItsSyn) {
  auto server = tu::TcpServer::Start(kLoopback, 0, EchoHandler);
  ASSERT_TRUE(server.ok());
  StartProxy((*server)->port(), {"drop on=to-client flags=SYN+ACK nth=1"});
  absl::Time start = absl::Now();
  auto fd = Connect();
  absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(fd.ok()) << fd.status();
  // Linux retransmits the SYN after its 1 s initial RTO; the proxy answers it.
  EXPECT_GE(took, absl::Milliseconds(900));
  EXPECT_LT(took, absl::Seconds(3));
}

TEST_F(ProxyTest, DroppedFinToTheClientIsRetransmittedByTheProxy) {
  auto server = tu::TcpServer::Start(kLoopback, 0, [](int fd) {
    (void)tu::WriteAll(fd, "bye", absl::Seconds(5));
  });
  ASSERT_TRUE(server.ok());
  StartProxy((*server)->port(), {"drop on=to-client has=FIN nth=1"});
  auto fd = Connect();
  ASSERT_TRUE(fd.ok());
  absl::Time start = absl::Now();
  auto r = tu::ReadAll(fd->get(), absl::Seconds(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "bye");
  // The EOF arrives with the retransmitted FIN (a loss probe or the RTO), at least
  // the `linux` profile's 200 ms minimum RTO later.
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(180));
}

// Connects from a fixed local port (the client reuses it, as a load generator or a
// client with SO_REUSEADDR does).
absl::StatusOr<UniqueFd> ConnectFromPort(uint16_t local_port, absl::Duration timeout) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return absl::InternalError("socket");
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_storage local;
  socklen_t llen = tu::ToSockaddr(kKernel, local_port, &local);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&local), llen) != 0) {
    return absl::InternalError(absl::StrCat("bind to port ", local_port, ": ", strerror(errno)));
  }
  sockaddr_storage ss;
  socklen_t len = tu::ToSockaddr(kFront, 80, &ss);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    if (errno != EINPROGRESS)
      return absl::InternalError(absl::StrCat("connect: ", strerror(errno)));
    if (auto st = tu::WaitFor(fd.get(), POLLOUT, absl::Now() + timeout, "connect"); !st.ok())
      return st;
    int err = 0;
    socklen_t elen = sizeof err;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &elen);
    if (err != 0) return absl::InternalError(absl::StrCat("connect: ", strerror(err)));
  }
  ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK);
  return fd;
}

TEST_F(ProxyTest, ClientReusingItsPortWhileTheProxyHoldsTimeWaitConnectsAtOnce) {
  auto server = tu::TcpServer::Start(kLoopback, 0, [](int fd) {
    (void)tu::WriteAll(fd, "bye", absl::Seconds(5));  // and closes first
  });
  ASSERT_TRUE(server.ok());
  StartProxy((*server)->port());
  constexpr uint16_t kClientPort = 45678;
  {
    auto fd = ConnectFromPort(kClientPort, absl::Seconds(5));
    ASSERT_TRUE(fd.ok()) << fd.status();
    auto r = tu::ReadAll(fd->get(), absl::Seconds(5));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(*r, "bye");
  }  // the client closes second: the proxy's client leg goes to TIME-WAIT
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  std::string leg;
  while (absl::Now() < deadline && (leg = ClientLegState()) != "TIME-WAIT")
    absl::SleepFor(absl::Milliseconds(5));
  ASSERT_EQ(leg, "TIME-WAIT");
  // A new SYN from the same port, with a newer timestamp (Linux keeps one timestamp
  // clock per address pair): the proxy ends its TIME-WAIT connection and accepts it
  // (RFC 6191), with no challenge ACK, no RST and no SYN retransmission. The kernel
  // client's own socket leaves LAST-ACK when it has taken the proxy's last ACK, which
  // its input path does a moment after the TUN write: until then the port is busy
  // (EADDRNOTAVAIL, no SYN sent).
  auto fd = ConnectFromPort(kClientPort, absl::Seconds(5));
  for (int i = 0;
       i < 100 && !fd.ok() && absl::StrContains(fd.status().message(), strerror(EADDRNOTAVAIL));
       ++i) {
    absl::SleepFor(absl::Milliseconds(5));
    fd = ConnectFromPort(kClientPort, absl::Seconds(5));
  }
  ASSERT_TRUE(fd.ok()) << fd.status();
  tcp_info info{};
  socklen_t ilen = sizeof info;
  ASSERT_EQ(::getsockopt(fd->get(), IPPROTO_TCP, TCP_INFO, &info, &ilen), 0);
  EXPECT_EQ(info.tcpi_total_retrans, 0u) << "the SYN had to be retransmitted";
  auto r = tu::ReadAll(fd->get(), absl::Seconds(5));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "bye");
}

TEST_F(ProxyTest, ServerCloseLeavesClientInCloseWaitAndProxyInFinWait2) {
  auto server = tu::TcpServer::Start(kLoopback, 0, [](int) {});  // closes at once
  ASSERT_TRUE(server.ok());
  StartProxy((*server)->port());
  auto fd = Connect();
  ASSERT_TRUE(fd.ok());
  auto st = tu::WaitForTcpState(fd->get(), TcpState::kCloseWait, absl::Seconds(5));
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(*st, TcpState::kCloseWait);
  // The client never closes: the proxy's client leg waits in FIN-WAIT-2.
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  std::string leg;
  while (absl::Now() < deadline && (leg = ClientLegState()) != "FIN-WAIT-2")
    absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(leg, "FIN-WAIT-2");
}

TEST_F(ProxyTest, RstInsteadOfFinResetsTheClient) {
  ExpectServerCloseResetsTheClient("rst on=to-client has=FIN");
}

// The segments of a pcap that wrench wrote (LINKTYPE_RAW), parsed.
std::vector<SegmentSummary> ReadPcap(const std::string& path) {
  std::vector<SegmentSummary> out;
  char err[PCAP_ERRBUF_SIZE];
  pcap_t* p = ::pcap_open_offline(path.c_str(), err);
  if (!p) {
    ADD_FAILURE() << "pcap_open_offline " << path << ": " << err;
    return out;
  }
  pcap_pkthdr* h;
  const u_char* data;
  while (::pcap_next_ex(p, &h, &data) == 1) {
    auto seg =
        stack::ParseSegment(absl::MakeConstSpan(data, h->caplen), {.verify_checksums = false});
    if (seg.ok()) out.push_back(Summarize(seg->tcp));
  }
  ::pcap_close(p);
  return out;
}

TEST_F(ProxyTest, RstInPlaceOfTheProxysFinIsTheOnlyRstAndClosesTheLeg) {
  char dir[] = "/tmp/wrench-test-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  pcap_path_ = absl::StrCat(dir, "/cap.pcap");
  // The server answers, waits until the client has acknowledged the answer (so no
  // ACK crosses the RST, which a CLOSED leg would answer with a RST of its own), and
  // closes. Every FIN toward the client is to be replaced: a leg left in FIN-WAIT-1
  // would retransmit its FIN after an RTO, and the rule would send a second RST.
  auto server = tu::TcpServer::Start(kLoopback, 0, [](int fd) {
    (void)tu::ReadAll(fd, absl::Seconds(5), 1);
    (void)tu::WriteAll(fd, "partial", absl::Seconds(5));
    absl::SleepFor(absl::Milliseconds(300));
  });
  ASSERT_TRUE(server.ok());
  StartProxy((*server)->port(), {"rst on=to-client has=FIN"});
  auto fd = Connect();
  ASSERT_TRUE(fd.ok()) << fd.status();
  ASSERT_TRUE(tu::WriteAll(fd->get(), "?", absl::Seconds(5)).ok());
  auto r = tu::ReadAll(fd->get(), absl::Seconds(10));
  ASSERT_FALSE(r.ok()) << "read " << r->size() << " bytes and EOF";
  EXPECT_EQ(tu::ErrnoOf(r.status()), ECONNRESET) << r.status();
  absl::SleepFor(absl::Milliseconds(2500));  // past the 1 s initial RTO, twice
  std::string leg = ClientLegState();
  EXPECT_TRUE(leg == "CLOSED" || leg == "none") << "the client leg is " << leg;
  uint64_t hits = 0;
  service_->RunOnLoop([&] { hits = service_->engine().Rules()[0].hits; });
  EXPECT_EQ(hits, 1u) << "the FIN was sent again and replaced again";
  StopProxy();
  int rsts = 0, fins = 0;
  for (const SegmentSummary& s : ReadPcap(pcap_path_)) {
    if (s.src_port != 80) continue;  // wrench's client leg, from the front 10.89.0.2:80
    rsts += s.flags.has(stack::kRst);
    fins += s.flags.has(stack::kFin);
  }
  EXPECT_EQ(rsts, 1) << "exactly one RST toward the client";
  EXPECT_EQ(fins, 0) << "the FIN the RST replaced never went out";
  std::system(absl::StrCat("rm -rf ", dir).c_str());
}

TEST_F(ProxyTest, RstInPlaceOfDataToTheClientResetsTheServerAtOnce) {
  // The server writes, then waits for more from the client: the rule's RST ends the
  // client leg, and the relay resets the server's connection in the same turn.
  std::atomic<int> server_errno{0};
  std::atomic<int64_t> server_waited_ms{-1};
  auto server = tu::TcpServer::Start(kLoopback, 0, [&](int fd) {
    (void)tu::ReadAll(fd, absl::Seconds(5), 1);
    (void)tu::WriteAll(fd, "answer", absl::Seconds(5));
    absl::Time start = absl::Now();
    auto more = tu::ReadAll(fd, absl::Seconds(5));
    server_waited_ms = absl::ToInt64Milliseconds(absl::Now() - start);
    server_errno = more.ok() ? 0 : tu::ErrnoOf(more.status());
  });
  ASSERT_TRUE(server.ok());
  StartProxy((*server)->port(), {"rst on=to-client len>0"});
  auto fd = Connect();
  ASSERT_TRUE(fd.ok()) << fd.status();
  ASSERT_TRUE(tu::WriteAll(fd->get(), "?", absl::Seconds(5)).ok());
  auto r = tu::ReadAll(fd->get(), absl::Seconds(5));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(tu::ErrnoOf(r.status()), ECONNRESET) << r.status();
  absl::Time deadline = absl::Now() + absl::Seconds(6);
  while (server_waited_ms < 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ(server_errno, ECONNRESET);
  EXPECT_GE(server_waited_ms, 0);
  EXPECT_LT(server_waited_ms, 1000) << "the server learnt of the reset late";
}

TEST_F(ProxyTest, RulesThatCanNeverFireOnTheLegsAreRefusedUnlessAllowed) {
  auto start = [](std::vector<std::string> rules, UpstreamVia via, bool allow, std::string* log) {
    ServiceOptions o;
    auto m = ParseMapping("10.89.0.2:80=10.89.0.1:8080");
    o.maps.push_back(*m);
    o.upstream_via = via;
    o.allow_idle_rules = allow;
    for (size_t i = 0; i < rules.size(); ++i)
      o.rules.push_back(*ParseRule(rules[i], static_cast<int>(i + 1)));
    o.log_line = [log](const std::string& l) { *log += l + "\n"; };
    return Service::Start(o).status();
  };
  std::string log;
  // The server leg is a kernel socket: blackhole (or drop, dup, ...) never acts there.
  absl::Status st =
      start({"delay 1ms", "blackhole on=from-server after=50"}, UpstreamVia::kSocket, false, &log);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
  EXPECT_THAT(st.message(),
              HasSubstr("rule #2 \"blackhole on=from-server after=50\" can never fire"));
  EXPECT_THAT(st.message(),
              HasSubstr("with --upstream-via socket the server leg is a kernel socket"));
  EXPECT_THAT(st.message(), HasSubstr("Which rules act on which leg"));
  // A socket shows no pure ACK, and connect() has no FIN.
  EXPECT_FALSE(
      start({"delay 5ms on=from-server flags=ACK"}, UpstreamVia::kSocket, false, &log).ok());
  EXPECT_FALSE(start({"rst on=to-server flags=SYN+ACK"}, UpstreamVia::kSocket, false, &log).ok());
  // What the socket leg takes, a rule with a hook that works, and the server leg on the TUN.
  EXPECT_TRUE(start({"delay 5ms on=from-server has=FIN", "rst on=to-server flags=SYN",
                     "blackhole after=50"},
                    UpstreamVia::kSocket, false, &log)
                  .ok());
  EXPECT_TRUE(start({"blackhole on=from-server after=50"}, UpstreamVia::kTun, false, &log).ok());
  // --allow-idle-rules: kept, with a warning that gives the same reason.
  log.clear();
  EXPECT_TRUE(start({"blackhole on=from-server after=50"}, UpstreamVia::kSocket, true, &log).ok());
  EXPECT_THAT(log,
              HasSubstr("warning: rule #1 \"blackhole on=from-server after=50\" can never fire"));
  EXPECT_THAT(log, HasSubstr("kept (--allow-idle-rules)"));
}

TEST_F(ProxyTest, RefusedUpstreamRefusesTheClient) {
  // Nothing listens on the upstream port.
  StartProxy(1);
  auto fd = Connect();
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(tu::ErrnoOf(fd.status()), ECONNREFUSED) << fd.status();
}

TEST_F(ProxyTest, UnmappedAddressIsRefused) {
  auto server = tu::TcpServer::Start(kLoopback, 0, EchoHandler);
  ASSERT_TRUE(server.ok());
  StartProxy((*server)->port());
  auto fd = tu::ConnectTo(IpAddress::V4(0x0a590003), 80, absl::Seconds(5));
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(tu::ErrnoOf(fd.status()), ECONNREFUSED);
}

// --- a real program nobody here wrote ------------------------------------------

// Runs a shell command, returns its exit status and standard output.
std::pair<int, std::string> Shell(const std::string& cmd) {
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return {-1, ""};
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = ::pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

TEST_F(ProxyTest, CurlThroughTheProxyToPythonHttpServer) {
  if (Shell("command -v curl && command -v python3").first != 0) {
    GTEST_SKIP() << "curl and python3 are needed (scripts/install-deps.sh installs them)";
  }
  char dir[] = "/tmp/wrench-http-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  std::string body = RandomBytes(300'000, 11);
  {
    std::ofstream f(absl::StrCat(dir, "/file.bin"), std::ios::binary);
    f << body;
  }
  // python3's http.server on loopback, inside this test's namespace; bounded wait
  // for it to listen.
  constexpr uint16_t kHttpPort = 8000;
  ASSERT_EQ(Shell(absl::StrCat("cd ", dir, " && (timeout 120 python3 -m http.server ", kHttpPort,
                               " --bind 127.0.0.1 >/dev/null 2>&1 &)"))
                .first,
            0);
  bool up = false;
  for (int i = 0; i < 100 && !up; ++i) {
    up = tu::ConnectTo(kLoopback, kHttpPort, absl::Seconds(1)).ok();
    if (!up) absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_TRUE(up) << "python3 -m http.server did not start";
  std::string curl = absl::StrCat("curl -sS --max-time 60 -o ", dir,
                                  "/got.bin -w '%{http_code}' http://10.89.0.2/file.bin");
  auto fetch_ok = [&] {
    auto [rc, code] = Shell(curl);
    std::ifstream g(absl::StrCat(dir, "/got.bin"), std::ios::binary);
    std::string got((std::istreambuf_iterator<char>(g)), std::istreambuf_iterator<char>());
    return rc == 0 && code == "200" && got == body;
  };

  StartProxy(kHttpPort);  // no rules
  EXPECT_TRUE(fetch_ok());
  StopProxy();
  // With loss, duplication and reordering on the client leg, and a lost SYN-ACK.
  StartProxy(kHttpPort, {"drop on=to-client flags=SYN+ACK nth=1", "drop on=to-client len>0 p=0.05",
                         "dup on=from-client p=0.1", "reorder on=to-client len>0 p=0.05"});
  absl::Time start = absl::Now();
  EXPECT_TRUE(fetch_ok());
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(900))
      << "the lost SYN-ACK costs curl a SYN timeout";
  StopProxy();
  Shell(absl::StrCat("pkill -f 'http.server ", kHttpPort, "'; rm -rf ", dir));
}

// --- captures ---------------------------------------------------------------------------

TEST_F(ProxyTest, WritesAPcapThatTsharkReadsCleanlyAndAJsonLog) {
  char dir[] = "/tmp/wrench-test-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  pcap_path_ = absl::StrCat(dir, "/cap.pcap");
  log_path_ = absl::StrCat(dir, "/log.jsonl");
  StartProxy(kTunServerPort, {"drop on=to-client flags=SYN+ACK nth=1"}, UpstreamVia::kTun);
  auto server = tu::TcpServer::Start(kKernel, kTunServerPort, EchoHandler);
  ASSERT_TRUE(server.ok()) << server.status();
  EchoRoundTrip(RandomBytes(100'000, 9));
  absl::SleepFor(absl::Milliseconds(100));
  StopProxy();
  // The JSON log names the rule that dropped the SYN-ACK.
  std::ifstream log(log_path_);
  std::string line, all;
  int lines = 0;
  while (std::getline(log, line)) {
    ++lines;
    all += line + "\n";
  }
  EXPECT_GT(lines, 20);
  // (Not EXPECT_THAT: a failure would print the whole log.)
  EXPECT_NE(all.find("\"rule\":1"), std::string::npos) << "the dropped SYN-ACK names its rule";
  EXPECT_NE(all.find("drop on=to-client flags=SYN+ACK nth=1"), std::string::npos);
  EXPECT_NE(all.find("\"to-server\""), std::string::npos);
  if (std::system("command -v tshark >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "tshark is not installed (scripts/install-deps.sh installs it)";
  }
  std::string cmd = absl::StrCat("tshark -r ", pcap_path_,
                                 " -o tcp.check_checksum:TRUE -o ip.check_checksum:TRUE 2>&1");
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  EXPECT_EQ(::pclose(p), 0) << out;
  EXPECT_THAT(out, Not(HasSubstr("Malformed")));
  EXPECT_THAT(out, Not(HasSubstr("incorrect")));
  EXPECT_THAT(out, HasSubstr("[SYN, ACK]"));
  std::system(absl::StrCat("rm -rf ", dir).c_str());
}

// --- segmentation offload at the TUN ----------------------------------------------

// The TCP segments of a capture: the records' datagrams that parse, checksums checked.
std::vector<stack::Segment> CapturedSegments(const std::string& path,
                                             std::vector<std::vector<uint8_t>>* keep) {
  std::vector<stack::Segment> out;
  char err[PCAP_ERRBUF_SIZE];
  pcap_t* p = pcap_open_offline(path.c_str(), err);
  if (p == nullptr) {
    ADD_FAILURE() << err;
    return out;
  }
  pcap_pkthdr* hdr;
  const u_char* data;
  while (pcap_next_ex(p, &hdr, &data) == 1) keep->emplace_back(data, data + hdr->caplen);
  pcap_close(p);
  for (const auto& d : *keep) {
    auto s = stack::ParseSegment(d);
    EXPECT_TRUE(s.ok()) << s.status();
    if (s.ok()) out.push_back(*s);
  }
  return out;
}

// 4 MiB from the client, through a proxy whose rules act only on the handshake: the
// kernel's super-segments reach the endpoint whole (far fewer datagrams than wire
// segments), and the capture still shows wire segments of at most one MSS, with valid
// checksums, carrying every byte.
TEST_F(ProxyTest, WithoutADataRuleSuperSegmentsStayWholeAndTheCaptureShowsTheWire) {
  char dir[] = "/tmp/wrench-test-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  pcap_path_ = absl::StrCat(dir, "/cap.pcap");
  auto server = tu::TcpServer::Start(kLoopback, 0, EchoHandler);
  ASSERT_TRUE(server.ok());
  StartProxy((*server)->port(),
             {"delay 1ms on=to-client flags=SYN+ACK", "drop on=from-client flags=SYN nth=2"});
  if (!service_->tun_offloads().tso4)
    GTEST_SKIP() << "this kernel grants the TUN no TCP segmentation offload";
  bool splits = true;
  service_->RunOnLoop([&] { splits = service_->RuleSeesTunData(); });
  EXPECT_FALSE(splits);
  constexpr size_t kBytes = 4 << 20;
  EchoRoundTrip(RandomBytes(kBytes, 11));
  ProxyStats stats;
  service_->RunOnLoop([&] { stats = service_->proxy().stats(); });
  StopProxy();
  const size_t wire_segments = kBytes / 1460;
  EXPECT_LT(stats.datagrams_in, wire_segments / 2) << "the super-segments were split";
  std::vector<std::vector<uint8_t>> keep;
  size_t from_client = 0, pieces = 0;
  for (const auto& seg : CapturedSegments(pcap_path_, &keep)) {
    EXPECT_LE(seg.tcp.payload.size(), 1460u);
    if (seg.src() == kKernel && seg.tcp.dst_port == 80 && !seg.tcp.payload.empty()) {
      from_client += seg.tcp.payload.size();
      ++pieces;
    }
  }
  EXPECT_GE(from_client, kBytes);
  EXPECT_GE(pieces, wire_segments);
  std::system(absl::StrCat("rm -rf ", dir).c_str());
}

// A rule that may match the client's data segments sees each wire segment: the
// super-segments are split before the engine, so a rule matching every data segment
// from the client fires once per MSS-sized segment.
TEST_F(ProxyTest, ADataRuleSeesEveryWireSegmentWithOffloads) {
  auto server = tu::TcpServer::Start(kLoopback, 0, EchoHandler);
  ASSERT_TRUE(server.ok());
  StartProxy((*server)->port(), {"delay 1us on=from-client len>0"});
  ExpectWireSegmentsOffered(2 << 20);
  if (IsSkipped()) return;
  uint64_t hits = 0;
  service_->RunOnLoop([&] { hits = service_->engine().Rules()[0].hits; });
  EXPECT_GE(hits, (2u << 20) / 1460);
}

// A rule on the segments wrench's endpoint sends the client (ACKs, window updates)
// counts them as without offloads, about one ACK per two wire segments rather than
// one per super-segment: the client's super-segments are split for it too.
TEST_F(ProxyTest, ARuleOnTheAcksToTheClientSplitsTheClientsSuperSegments) {
  auto server = tu::TcpServer::Start(kLoopback, 0, EchoHandler);
  ASSERT_TRUE(server.ok());
  CaptureToTemp();
  StartProxy((*server)->port(), {"set win=0 on=to-client after=3 count=2"});
  ExpectWireSegmentsOffered(2 << 20);
  if (IsSkipped()) return;
  EXPECT_GE(PureAcksToClient(), (2u << 20) / 1460 / 4) << "the endpoint answered super-segments";
}

// Where only the data coming in needs wire segments (a rule on the client's data,
// none on what wrench sends it), the wire segments of one super-segment pass the
// rules one by one and wrench's endpoint answers them together, as a kernel answers
// what GRO merged: a few ACKs per super-segment instead of one per two segments.
TEST_F(ProxyTest, WireSegmentsOfOneSuperSegmentAreAnsweredTogether) {
  auto server = tu::TcpServer::Start(kLoopback, 0, EchoHandler);
  ASSERT_TRUE(server.ok());
  CaptureToTemp();
  StartProxy((*server)->port(), {"drop on=from-client len>0 nth=1000000"});
  ExpectWireSegmentsOffered(2 << 20);
  if (IsSkipped()) return;
  EXPECT_LT(PureAcksToClient(), (2u << 20) / 1460 / 8) << "the endpoint answered each wire segment";
}

void ProxyTest::CaptureToTemp() {
  char dir[] = "/tmp/wrench-test-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  temp_dir_ = dir;
  pcap_path_ = absl::StrCat(dir, "/cap.pcap");
}

size_t ProxyTest::PureAcksToClient() {
  StopProxy();  // the capture is complete
  std::vector<std::vector<uint8_t>> keep;
  size_t acks = 0;
  for (const auto& seg : CapturedSegments(pcap_path_, &keep)) {
    if (seg.src() == kFront && seg.tcp.payload.empty() &&
        !seg.tcp.flags.any(stack::kSyn | stack::kFin | stack::kRst)) {
      ++acks;
    }
  }
  return acks;
}

void ProxyTest::ExpectWireSegmentsOffered(size_t bytes) {
  if (!service_->tun_offloads().tso4)
    GTEST_SKIP() << "this kernel grants the TUN no TCP segmentation offload";
  bool splits = false;
  service_->RunOnLoop([&] { splits = service_->RuleSeesTunData(); });
  EXPECT_TRUE(splits);
  EchoRoundTrip(RandomBytes(bytes, 12));
  ProxyStats stats;
  service_->RunOnLoop([&] { stats = service_->proxy().stats(); });
  EXPECT_GE(stats.datagrams_in, bytes / 1460) << "the proxy was offered super-segments";
}

}  // namespace
}  // namespace wrench::proxy
