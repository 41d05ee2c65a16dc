// nftables DNAT into the TUN (proxy/os/dnat.h) end to end: two namespaces the test
// creates, joined by a veth; `wrench serve` (a Service with the API) in the first, a
// kernel client in the second dialling the veth address. Proxies listening on
// 0.0.0.0:PORT and on the veth address relay bytes and take segment toxics; loopback
// connections still reach the kernel socket; a loopback-only listen still gets the 400.
#include "proxy/os/dnat.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "proxy/app/service.h"
#include "tests/api_testing.h"
#include "tests/netns_testing.h"

namespace wrench::proxy {
namespace {

using ::testing::HasSubstr;
using stack::IpAddress;
using Json = nlohmann::json;
namespace tu = ::wrench::proxy::testing;

const IpAddress kLoopback = IpAddress::V4(0x7f000001);
const IpAddress kServerVeth = IpAddress::V4(0x0a4d0001);  // 10.77.0.1: wrench's namespace
const IpAddress kClientVeth = IpAddress::V4(0x0a4d0002);  // 10.77.0.2: the client's
const IpAddress kServerVeth6 = *IpAddress::Parse("fd77::1");
const IpAddress kClientVeth6 = *IpAddress::Parse("fd77::2");
constexpr uint16_t kAnyPort = 7000;                       // the proxy on 0.0.0.0
constexpr uint16_t kHostPort = 7001;                      // the proxy on 10.77.0.1
constexpr char kDropFirstSynAck[] =
    R"({"type":"segment","stream":"downstream","attributes":{"rule":"drop flags=SYN+ACK nth=1"}})";

using tu::Http;
using tu::HttpResult;
constexpr auto Echo = tu::ChunkEcho;

// `n` bytes that differ from one position to the next, so a reordered or shifted
// relay shows.
std::string Pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + i / 251) & 0xff);
  return s;
}

// Sends `data` and reads the echo back on one connection, writing and reading from
// two threads so neither side's window stalls the other.
absl::Status EchoesByteForByte(int fd, const std::string& data) {
  absl::Status written;
  std::thread writer([&] {
    written = tu::WriteAll(fd, data, absl::Seconds(20));
    ::shutdown(fd, SHUT_WR);
  });
  auto back = tu::ReadAll(fd, absl::Seconds(20));
  writer.join();
  if (!written.ok()) return written;
  if (!back.ok()) return back.status();
  if (*back != data) {
    return absl::InternalError(
        absl::StrCat("echo differs: sent ", data.size(), " bytes, got ", back->size()));
  }
  return absl::OkStatus();
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

// Host records in a directory of the test's own (removed when the process ends), so
// no test leaves a file in the host's /run.
void UseOwnRunDirectory() {
  static const std::string dir = [] {
    char d[] = "/tmp/wrench-run-XXXXXX";
    std::string made = ::mkdtemp(d) ? d : "";
    std::atexit(
        [] { std::system(absl::StrCat("rm -rf ", std::getenv("WRENCH_RUN_DIR")).c_str()); });
    return made;
  }();
  ::setenv("WRENCH_RUN_DIR", dir.c_str(), 1);
}

class DnatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // This thread's fresh namespace is wrench's; a second one is the client's, kept
    // open by its descriptor and entered by the threads that act as the client.
    absl::Status st = tu::EnterFreshNetworkNamespace();
    if (!st.ok()) GTEST_SKIP() << "needs network namespaces of its own: " << st;
    if (std::system("command -v ip >/dev/null") != 0)
      GTEST_SKIP()
          << "ip (iproute2, which scripts/install-deps.sh installs) is needed for the veth";
    UseOwnRunDirectory();
    server_ns_ = UniqueFd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(server_ns_);
    EnableIpv6();
    std::thread([&] {
      if (::unshare(CLONE_NEWNET) != 0) return;
      EnableIpv6();
      client_ns_ = UniqueFd(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
      // The veth is made from the client's side; its peer goes to this process's
      // main thread, which is in wrench's namespace.
      if (!BringUpLoopback().ok()) return;
      if (std::system(absl::StrCat("ip link add wrc0 type veth peer name wrs0 netns ", ::getpid())
                          .c_str()) != 0) {
        return;
      }
      if (!AddAddress("wrc0", kClientVeth, 24).ok() || !SetLinkUp("wrc0", true).ok()) return;
      client_ready_ = true;
    }).join();
    ASSERT_TRUE(client_ready_) << "could not make the client's namespace and the veth";
    ASSERT_TRUE(AddAddress("wrs0", kServerVeth, 24).ok());
    ASSERT_TRUE(SetLinkUp("wrs0", true).ok());

    auto echo = tu::TcpServer::Start(kLoopback, 0, Echo);
    ASSERT_TRUE(echo.ok()) << echo.status();
    echo_ = std::move(*echo);

    ServiceOptions o;
    o.api_address = ":0";
    o.tcp.msl = absl::Seconds(1);
    o.log_line = [this](const std::string& l) {
      std::fprintf(stderr, "%s\n", l.c_str());
      std::lock_guard<std::mutex> lock(mu_);
      log_ += l + "\n";
    };
    auto s = Service::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    service_ = std::move(*s);
    api_ = service_->api_port();
    loop_ = std::thread([this] { service_->Run(); });
  }

  void TearDown() override { StopWrench(); }

  // A fresh namespace takes the host's defaults, which may turn IPv6 off.
  static void EnableIpv6() {
    for (const char* dev : {"all", "default", "lo"}) {
      std::ofstream(absl::StrCat("/proc/sys/net/ipv6/conf/", dev, "/disable_ipv6")) << "0";
    }
  }

  // IPv6 on the veth: kServerVeth6 in wrench's namespace, kClientVeth6 in the client's.
  void AddIpv6ToTheVeth() {
    ASSERT_TRUE(AddAddress("wrs0", kServerVeth6, 64).ok());
    bool added = false;
    AsClient([&] { added = AddAddress("wrc0", kClientVeth6, 64).ok(); });
    ASSERT_TRUE(added);
    // NODAD addresses are usable once their local route is in (a work queue).
    for (int i = 0; i < 200 && !IsLocalAddress(kServerVeth6).value_or(false); ++i)
      absl::SleepFor(absl::Milliseconds(5));
    absl::SleepFor(absl::Milliseconds(50));
  }

  void StopWrench() {
    if (!service_) return;
    service_->Stop();
    loop_.join();
    service_.reset();
  }

  // Runs `fn` on a thread in the client's namespace and waits for it.
  void AsClient(const std::function<void()>& fn) {
    std::thread([&] {
      if (::setns(client_ns_.get(), CLONE_NEWNET) != 0) {
        ADD_FAILURE() << "setns into the client's namespace: " << std::strerror(errno);
        return;
      }
      fn();
    }).join();
  }

  HttpResult Call(const std::string& method, const std::string& path,
                  const std::string& body = "") {
    return tu::HttpOrFail(api_, method, path, body);
  }

  // POST /proxies to the echo server (DnatUnavailable() says whether DNAT took).
  void CreateProxy(const std::string& name, const std::string& listen) {
    HttpResult r = Call("POST", "/proxies",
                        Json{{"name", name},
                             {"listen", listen},
                             {"upstream", absl::StrCat("127.0.0.1:", echo_->port())}}
                            .dump());
    ASSERT_EQ(r.status, 201) << r.body;
  }

  bool DnatUnavailable() {
    std::lock_guard<std::mutex> lock(mu_);
    return absl::StrContains(log_, "no DNAT into the TUN");
  }

  // A connection from the client's namespace (a socket belongs to the namespace it
  // was made in; any thread may use it afterwards).
  absl::StatusOr<UniqueFd> ClientConnect(const IpAddress& addr, uint16_t port) {
    absl::StatusOr<UniqueFd> fd = absl::InternalError("not run");
    AsClient([&] { fd = tu::ConnectTo(addr, port, absl::Seconds(5)); });
    return fd;
  }

  // How long connect() to addr:port takes from the client's namespace.
  absl::Duration ClientConnectTime(const IpAddress& addr, uint16_t port) {
    absl::Time start = absl::Now();
    auto fd = ClientConnect(addr, port);
    EXPECT_TRUE(fd.ok()) << fd.status();
    return fd.ok() ? absl::Now() - start : absl::InfiniteDuration();
  }

  UniqueFd server_ns_, client_ns_;
  bool client_ready_ = false;
  std::unique_ptr<tu::TcpServer> echo_;
  std::unique_ptr<Service> service_;
  std::thread loop_;
  uint16_t api_ = 0;
  std::mutex mu_;
  std::string log_;
};

TEST_F(DnatTest, AWildcardListenRelaysAnotherNamespacesConnectionThroughTheTun) {
  CreateProxy("any", absl::StrCat("0.0.0.0:", kAnyPort));
  if (DnatUnavailable()) GTEST_SKIP() << "no nftables DNAT here: " << log_;
  auto fd = ClientConnect(kServerVeth, kAnyPort);
  ASSERT_TRUE(fd.ok()) << fd.status();
  // While it is open, wrench lists it as a TUN connection of the proxy.
  Json conns = Call("GET", "/connections").json();
  ASSERT_EQ(conns.size(), 1u) << conns.dump();
  EXPECT_EQ(conns[0]["kind"], "tun");
  EXPECT_EQ(conns[0]["proxy"], "any");
  EXPECT_EQ(conns[0]["client"].get<std::string>().rfind(kClientVeth.ToString(), 0), 0u)
      << conns.dump();
  absl::Status echoed = EchoesByteForByte(fd->get(), Pattern(1 << 20));
  EXPECT_TRUE(echoed.ok()) << echoed;
}

TEST_F(DnatTest, ASegmentToxicOnAWildcardListenActsOnDnatedConnectionsOnly) {
  CreateProxy("any", absl::StrCat("0.0.0.0:", kAnyPort));
  if (DnatUnavailable()) GTEST_SKIP() << "no nftables DNAT here: " << log_;
  const absl::Duration clean = ClientConnectTime(kServerVeth, kAnyPort);
  EXPECT_LT(clean, absl::Milliseconds(300));
  HttpResult r = Call("POST", "/proxies/any/toxics", kDropFirstSynAck);
  ASSERT_EQ(r.status, 200) << r.body;
  // The first SYN-ACK is lost; the kernel client retransmits its SYN after its 1 s
  // initial RTO (RFC 6298), and the second SYN-ACK completes the handshake.
  const absl::Duration dropped = ClientConnectTime(kServerVeth, kAnyPort);
  std::fprintf(
      stderr,
      "connect from the other namespace: %.1f ms clean, %.1f ms with the first SYN-ACK dropped\n",
      absl::ToDoubleMilliseconds(clean), absl::ToDoubleMilliseconds(dropped));
  EXPECT_GE(dropped, absl::Milliseconds(900));
  EXPECT_LT(dropped, absl::Milliseconds(2500));
  EXPECT_EQ(Call("GET", "/rules").json()[0]["hits"], 1);

  // Loopback in wrench's namespace still reaches the kernel socket: no segment rule
  // sees it, and it relays.
  absl::Time start = absl::Now();
  auto lo = tu::ConnectTo(kLoopback, kAnyPort, absl::Seconds(5));
  ASSERT_TRUE(lo.ok()) << lo.status();
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(300));
  absl::Status echoed = EchoesByteForByte(lo->get(), Pattern(100'000));
  EXPECT_TRUE(echoed.ok()) << echoed;
  EXPECT_EQ(Call("GET", "/rules").json()[0]["hits"], 1);
}

TEST_F(DnatTest, AHostAddressListenTakesOtherNamespacesAndLocalClients) {
  CreateProxy("host", absl::StrCat(kServerVeth.ToString(), ":", kHostPort));
  if (DnatUnavailable()) GTEST_SKIP() << "no nftables DNAT here: " << log_;
  ASSERT_EQ(Call("POST", "/proxies/host/toxics", kDropFirstSynAck).status, 200);
  const absl::Duration dropped = ClientConnectTime(kServerVeth, kHostPort);
  std::fprintf(stderr, "connect to %s:%u with the first SYN-ACK dropped: %.1f ms\n",
               kServerVeth.ToString().c_str(), kHostPort, absl::ToDoubleMilliseconds(dropped));
  EXPECT_GE(dropped, absl::Milliseconds(900));
  EXPECT_LT(dropped, absl::Milliseconds(2500));
  auto fd = ClientConnect(kServerVeth, kHostPort);
  ASSERT_TRUE(fd.ok()) << fd.status();
  absl::Status echoed = EchoesByteForByte(fd->get(), Pattern(300'000));
  EXPECT_TRUE(echoed.ok()) << echoed;
  // A client in wrench's own namespace dialling the same address is steered by the
  // output hook: it relays through the TUN too.
  auto local = tu::ConnectTo(kServerVeth, kHostPort, absl::Seconds(5));
  ASSERT_TRUE(local.ok()) << local.status();
  Json conns = Call("GET", "/connections").json();
  ASSERT_FALSE(conns.empty());
  EXPECT_EQ(conns.back()["kind"], "tun") << conns.dump();
  echoed = EchoesByteForByte(local->get(), Pattern(300'000));
  EXPECT_TRUE(echoed.ok()) << echoed;
}

TEST_F(DnatTest, AnIpv6WildcardListenSteersIpv6ClientsIntoTheTunToo) {
  AddIpv6ToTheVeth();
  // Forwarding IPv6 is the host's choice (wrench leaves it as it is): this namespace
  // is a router for the client's.
  std::ofstream("/proc/sys/net/ipv6/conf/all/forwarding") << "1";
  CreateProxy("any6", absl::StrCat("[::]:", kAnyPort));
  if (DnatUnavailable()) GTEST_SKIP() << "no nftables DNAT here: " << log_;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ASSERT_THAT(log_, HasSubstr("ip6 wrench_wrench0 DNATs IPv6 listen addresses to "
                                "fd89:2e6c:4f1a:5900:ffff:ffff:ffff:fffe"));
  }
  const absl::Duration clean = ClientConnectTime(kServerVeth6, kAnyPort);
  ASSERT_EQ(Call("POST", "/proxies/any6/toxics", kDropFirstSynAck).status, 200);
  const absl::Duration dropped = ClientConnectTime(kServerVeth6, kAnyPort);
  std::fprintf(
      stderr,
      "connect to [%s]:%u from the other namespace: %.1f ms clean, %.1f ms with the first SYN-ACK "
      "dropped\n",
      kServerVeth6.ToString().c_str(), kAnyPort, absl::ToDoubleMilliseconds(clean),
      absl::ToDoubleMilliseconds(dropped));
  EXPECT_LT(clean, absl::Milliseconds(300));
  EXPECT_GE(dropped, absl::Milliseconds(900));
  EXPECT_LT(dropped, absl::Milliseconds(2500));
  auto fd = ClientConnect(kServerVeth6, kAnyPort);
  ASSERT_TRUE(fd.ok()) << fd.status();
  Json conns = Call("GET", "/connections").json();
  ASSERT_FALSE(conns.empty());
  EXPECT_EQ(conns.back()["kind"], "tun") << conns.dump();
  EXPECT_EQ(conns.back()["client"].get<std::string>().rfind("[fd77::2]:", 0), 0u) << conns.dump();
  absl::Status echoed = EchoesByteForByte(fd->get(), Pattern(300'000));
  EXPECT_TRUE(echoed.ok()) << echoed;
  // IPv4 clients of the same [::] proxy are steered as before, and a client of
  // wrench's own namespace dialling the IPv6 address goes through the output hook.
  auto v4 = ClientConnect(kServerVeth, kAnyPort);
  ASSERT_TRUE(v4.ok()) << v4.status();
  auto local = tu::ConnectTo(kServerVeth6, kAnyPort, absl::Seconds(5));
  ASSERT_TRUE(local.ok()) << local.status();
  echoed = EchoesByteForByte(local->get(), Pattern(100'000));
  EXPECT_TRUE(echoed.ok()) << echoed;
  // The rule saw the SYN-ACK of each of the four steered connections since the toxic.
  EXPECT_EQ(Call("GET", "/rules").json()[0]["hits"], 4);
  // ::1 is never steered: the kernel socket, no rule.
  auto lo = tu::ConnectTo(*IpAddress::Parse("::1"), kAnyPort, absl::Seconds(5));
  ASSERT_TRUE(lo.ok()) << lo.status();
  EXPECT_EQ(Call("GET", "/rules").json()[0]["hits"], 4);
  ASSERT_EQ(Call("DELETE", "/proxies/any6").status, 204);
  StopWrench();
  if (std::system("command -v nft >/dev/null") == 0) {
    FILE* f = ::popen("nft list tables", "r");
    ASSERT_NE(f, nullptr);
    char buf[4096];
    size_t n = std::fread(buf, 1, sizeof buf, f);
    ::pclose(f);
    EXPECT_THAT(std::string(buf, n), ::testing::Not(HasSubstr("wrench_")))
        << "a table outlived wrench";
  }
}

TEST_F(DnatTest, AnIpv6HostAddressListenTakesSegmentToxics) {
  AddIpv6ToTheVeth();
  std::ofstream("/proc/sys/net/ipv6/conf/all/forwarding") << "1";
  CreateProxy("host6", absl::StrCat("[", kServerVeth6.ToString(), "]:", kHostPort));
  if (DnatUnavailable()) GTEST_SKIP() << "no nftables DNAT here: " << log_;
  ASSERT_EQ(Call("POST", "/proxies/host6/toxics", kDropFirstSynAck).status, 200);
  const absl::Duration dropped = ClientConnectTime(kServerVeth6, kHostPort);
  EXPECT_GE(dropped, absl::Milliseconds(900));
  EXPECT_LT(dropped, absl::Milliseconds(2500));
}

TEST_F(DnatTest, ALoopbackListenStillRefusesSegmentToxicsNamingAnAddressThatWorks) {
  CreateProxy("lo", "127.0.0.1:7002");
  HttpResult r = Call("POST", "/proxies/lo/toxics", kDropFirstSynAck);
  EXPECT_EQ(r.status, 400);
  const std::string error = r.json().value("error", "");
  EXPECT_THAT(error, HasSubstr("10.89.0.2:PORT"));
  EXPECT_THAT(error, HasSubstr("0.0.0.0:PORT"));
  EXPECT_THAT(error, HasSubstr("loopback cannot be steered"));
}

TEST_F(DnatTest, DeletingTheProxyAndStoppingWrenchUndoTheDnat) {
  CreateProxy("any", absl::StrCat("0.0.0.0:", kAnyPort));
  if (DnatUnavailable()) GTEST_SKIP() << "no nftables DNAT here: " << log_;
  EXPECT_EQ(ReadFile("/proc/sys/net/ipv4/ip_forward"), "1");
  EXPECT_EQ(ReadFile("/proc/sys/net/ipv4/conf/wrench0/rp_filter"), "2");
  ASSERT_EQ(Call("DELETE", "/proxies/any").status, 204);
  auto fd = ClientConnect(kServerVeth, kAnyPort);
  ASSERT_FALSE(fd.ok()) << "no listener and no DNAT: the connection is refused";
  EXPECT_EQ(tu::ErrnoOf(fd.status()), ECONNREFUSED) << fd.status();
  StopWrench();
  // The namespace had forwarding off: wrench turned it on, and back off at exit.
  EXPECT_EQ(ReadFile("/proc/sys/net/ipv4/ip_forward"), "0");
  if (std::system("command -v nft >/dev/null") == 0) {
    FILE* f = ::popen("nft list tables", "r");
    ASSERT_NE(f, nullptr);
    char buf[4096];
    size_t n = std::fread(buf, 1, sizeof buf, f);
    ::pclose(f);
    EXPECT_THAT(std::string(buf, n), ::testing::Not(HasSubstr("wrench_")))
        << "the table outlived wrench";
  }
}

TEST_F(DnatTest, ATableNoRecordNamesIsReplacedAndForwardingLeftAsTheHostHasIt) {
  if (std::system("command -v nft >/dev/null") != 0)
    GTEST_SKIP() << "the nft program is needed to leave a table";
  // A table no host record names, with a catch-all drop in its forward chain, and
  // forwarding on, with no record of what it was before.
  ASSERT_EQ(std::system("nft 'add table ip wrench_wrench0; add chain ip wrench_wrench0 forward "
                        "{ type filter hook forward priority filter; policy accept; drop; }'"),
            0);
  std::ofstream("/proc/sys/net/ipv4/ip_forward") << "1\n";
  ASSERT_EQ(ReadFile("/proc/sys/net/ipv4/ip_forward"), "1");
  CreateProxy("any", absl::StrCat("0.0.0.0:", kAnyPort));
  if (DnatUnavailable()) GTEST_SKIP() << "no nftables DNAT here: " << log_;
  auto fd = ClientConnect(kServerVeth, kAnyPort);
  ASSERT_TRUE(fd.ok()) << fd.status();
  absl::Status echoed = EchoesByteForByte(fd->get(), Pattern(10'000));
  EXPECT_TRUE(echoed.ok()) << echoed;
  EXPECT_EQ(std::system("nft list table ip wrench_wrench0 | grep -qw drop"), 256)
      << "the catch-all drop is gone";
  StopWrench();
  // Nothing recorded forwarding as off: it was on when this wrench came, and stays.
  EXPECT_EQ(ReadFile("/proc/sys/net/ipv4/ip_forward"), "1");
  EXPECT_NE(std::system("nft list table ip wrench_wrench0 >/dev/null 2>&1"), 0)
      << "the table outlived wrench";
}

TEST_F(DnatTest, WithoutCapNetAdminAWildcardListenFallsBackToAKernelSocket) {
  // The loop's thread makes the nftables calls; without CAP_NET_ADMIN they fail as
  // they do for an unprivileged user. (The thread ends with the test.)
  absl::Status dropped;
  service_->RunOnLoop([&] { dropped = tu::DropEffectiveCapability(CAP_NET_ADMIN); });
  ASSERT_TRUE(dropped.ok()) << dropped;
  CreateProxy("any", absl::StrCat("0.0.0.0:", kAnyPort));
  ASSERT_TRUE(DnatUnavailable()) << log_;
  EXPECT_THAT(log_, HasSubstr("CAP_NET_ADMIN"));
  HttpResult r = Call("POST", "/proxies/any/toxics", kDropFirstSynAck);
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.json().value("error", ""), HasSubstr("DNAT into the TUN is unavailable"));
  EXPECT_THAT(r.json().value("error", ""), HasSubstr("CAP_NET_ADMIN"));
  auto fd = ClientConnect(kServerVeth, kAnyPort);
  ASSERT_TRUE(fd.ok()) << fd.status();
  Json conns = Call("GET", "/connections").json();
  ASSERT_EQ(conns.size(), 1u) << conns.dump();
  EXPECT_EQ(conns[0]["kind"], "socket");
  absl::Status echoed = EchoesByteForByte(fd->get(), Pattern(100'000));
  EXPECT_TRUE(echoed.ok()) << echoed;
}

// ---------------------------------------------------------------------------
// `wrench serve` killed with SIGKILL, in a namespace of the test's own: what it leaves
// (its table, ip_forward on) and how `wrench cleanup` or the next start undo it.

constexpr uint16_t kServeApiPort = 18474;

// The output of a shell command (bounded by the command itself).
std::string Shell(const std::string& cmd, int* status = nullptr) {
  FILE* f = ::popen(cmd.c_str(), "r");
  std::string out;
  if (!f) return out;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
  int st = ::pclose(f);
  if (status) *status = st;
  return out;
}

bool DirHasRecord(const std::string& dir) {
  return !Shell(absl::StrCat("ls ", dir, " | grep '\\.state$'")).empty();
}

class DnatHostRecordTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status st = tu::EnterFreshNetworkNamespace();
    if (!st.ok()) GTEST_SKIP() << "needs a network namespace of its own: " << st;
    if (std::system("command -v nft >/dev/null") != 0)
      GTEST_SKIP() << "the nft program is needed to list tables";
    UseOwnRunDirectory();
    run_dir_ = std::getenv("WRENCH_RUN_DIR");
    ASSERT_EQ(ReadFile("/proc/sys/net/ipv4/ip_forward"), "0")
        << "a fresh namespace forwards nothing";
    err_ = absl::StrCat(run_dir_, "/serve-", ::getpid(), ".err");
  }
  void TearDown() override {
    for (pid_t pid : serves_) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }

  // Starts `wrench serve` (its stderr in err_) and waits, bounded, for its API.
  // A second one takes another port, TUN and subnet (`second`).
  pid_t StartServe(bool second = false) {
    const uint16_t port = second ? kServeApiPort + 1 : kServeApiPort;
    pid_t pid = ::fork();
    if (pid == 0) {
      int fd = ::open(err_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (fd >= 0) ::dup2(fd, 2);
      const std::string api = absl::StrCat("--api=127.0.0.1:", port);
      ::execl(WRENCH_BINARY, WRENCH_BINARY, "serve", api.c_str(), "--msl=1s",
              second ? "--tun=wrench1" : "--tun=wrench0",
              second ? "--net=10.90.0.0/24" : "--net=10.89.0.0/24", static_cast<char*>(nullptr));
      _exit(127);
    }
    serves_.push_back(pid);
    absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (absl::Now() < deadline) {
      auto r = Http(port, "GET", "/version");
      if (r.ok() && r->status == 200) return pid;
      absl::SleepFor(absl::Milliseconds(20));
    }
    ADD_FAILURE() << "wrench serve did not answer: " << ReadAll();
    return pid;
  }

  void KillServe(pid_t pid, int sig) {
    ::kill(pid, sig);
    int status = 0;
    absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (::waitpid(pid, &status, WNOHANG) != pid && absl::Now() < deadline)
      absl::SleepFor(absl::Milliseconds(20));
    serves_.erase(std::remove(serves_.begin(), serves_.end(), pid), serves_.end());
  }

  // A serve with a DNAT proxy on 0.0.0.0, killed with SIGKILL; checks what it leaves.
  // False (with the test skipped) where DNAT cannot be used.
  bool LeaveWhatAKilledServeLeaves() {
    pid_t pid = StartServe();
    HttpResult r =
        tu::HttpOrFail(kServeApiPort, "POST", "/proxies",
                       R"({"name":"any","listen":"0.0.0.0:7000","upstream":"127.0.0.1:7999"})");
    EXPECT_EQ(r.status, 201) << r.body;
    if (absl::StrContains(ReadAll(), "no DNAT into the TUN")) {
      KillServe(pid, SIGKILL);
      return false;
    }
    EXPECT_EQ(ReadFile("/proc/sys/net/ipv4/ip_forward"), "1");
    EXPECT_EQ(ReadFile("/proc/sys/net/ipv4/conf/wrench0/rp_filter"), "2");
    EXPECT_EQ(std::system("nft list table ip6 wrench_wrench0 >/dev/null 2>&1"), 0)
        << "no IPv6 twin";
    const std::string table = Shell("nft list table ip wrench_wrench0");
    EXPECT_THAT(table, HasSubstr("chain forward"));
    EXPECT_THAT(table, ::testing::Not(HasSubstr("drop"))) << "a catch-all drop:\n" << table;
    EXPECT_TRUE(DirHasRecord(run_dir_)) << "no host record";
    KillServe(pid, SIGKILL);
    // SIGKILL runs no code: the table and ip_forward stay, the TUN (and its rp_filter)
    // went with the process.
    EXPECT_EQ(ReadFile("/proc/sys/net/ipv4/ip_forward"), "1");
    EXPECT_EQ(std::system("nft list table ip wrench_wrench0 >/dev/null 2>&1"), 0);
    EXPECT_NE(::access("/proc/sys/net/ipv4/conf/wrench0/rp_filter", F_OK), 0);
    EXPECT_TRUE(DirHasRecord(run_dir_));
    return true;
  }

  void ExpectHostAsFound() {
    EXPECT_EQ(ReadFile("/proc/sys/net/ipv4/ip_forward"), "0");
    EXPECT_THAT(Shell("nft list tables"), ::testing::Not(HasSubstr("wrench_")));
    EXPECT_FALSE(DirHasRecord(run_dir_));
  }

  std::string ReadAll() { return Shell(absl::StrCat("cat ", err_)); }

  std::string run_dir_, err_;
  std::vector<pid_t> serves_;
};

TEST_F(DnatHostRecordTest, WrenchCleanupUndoesWhatAKilledServeLeft) {
  if (!LeaveWhatAKilledServeLeaves()) GTEST_SKIP() << "no nftables DNAT here: " << ReadAll();
  int status = 0;
  const std::string out = Shell(absl::StrCat(WRENCH_BINARY, " cleanup 2>&1"), &status);
  EXPECT_EQ(WEXITSTATUS(status), 0) << out;
  EXPECT_THAT(out, HasSubstr("restored net.ipv4.ip_forward to 0 (was 1)"));
  EXPECT_THAT(out, HasSubstr("deleted nftables table ip wrench_wrench0"));
  EXPECT_THAT(out, HasSubstr("removed the record of wrench pid"));
  ExpectHostAsFound();
  EXPECT_THAT(Shell(absl::StrCat(WRENCH_BINARY, " cleanup 2>&1")),
              HasSubstr("nothing to clean up"));
}

TEST_F(DnatHostRecordTest, TheNextStartUndoesWhatAKilledServeLeft) {
  if (!LeaveWhatAKilledServeLeaves()) GTEST_SKIP() << "no nftables DNAT here: " << ReadAll();
  pid_t pid = StartServe();  // no DNAT proxy this time
  EXPECT_THAT(ReadAll(), HasSubstr("wrench: cleanup: restored net.ipv4.ip_forward to 0"));
  ExpectHostAsFound();
  KillServe(pid, SIGTERM);
  ExpectHostAsFound();
}

TEST_F(DnatHostRecordTest, CleanupLeavesARunningWrenchAloneAndItsCleanExitUndoesAll) {
  pid_t pid = StartServe();
  HttpResult r =
      tu::HttpOrFail(kServeApiPort, "POST", "/proxies",
                     R"({"name":"any","listen":"0.0.0.0:7000","upstream":"127.0.0.1:7999"})");
  ASSERT_EQ(r.status, 201) << r.body;
  if (absl::StrContains(ReadAll(), "no DNAT into the TUN"))
    GTEST_SKIP() << "no nftables DNAT here: " << ReadAll();
  const std::string out = Shell(absl::StrCat(WRENCH_BINARY, " cleanup 2>&1"));
  EXPECT_THAT(out, HasSubstr(absl::StrCat("left alone: TUN wrench0: in use by wrench pid ", pid)));
  EXPECT_THAT(out, HasSubstr("nothing to clean up"));
  EXPECT_EQ(ReadFile("/proc/sys/net/ipv4/ip_forward"), "1");
  EXPECT_EQ(std::system("nft list table ip wrench_wrench0 >/dev/null 2>&1"), 0);
  KillServe(pid, SIGTERM);
  ExpectHostAsFound();
}

TEST_F(DnatHostRecordTest, ForwardingStaysOnWhileAnotherRunNeedsItAndIsRestoredAfterTheLast) {
  pid_t first = StartServe();
  HttpResult r =
      tu::HttpOrFail(kServeApiPort, "POST", "/proxies",
                     R"({"name":"a","listen":"0.0.0.0:7000","upstream":"127.0.0.1:7999"})");
  ASSERT_EQ(r.status, 201) << r.body;
  if (absl::StrContains(ReadAll(), "no DNAT into the TUN"))
    GTEST_SKIP() << "no nftables DNAT here: " << ReadAll();
  pid_t second = StartServe(/*second=*/true);
  r = tu::HttpOrFail(kServeApiPort + 1, "POST", "/proxies",
                     R"({"name":"b","listen":"0.0.0.0:7001","upstream":"127.0.0.1:7999"})");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(ReadFile("/proc/sys/net/ipv4/ip_forward"), "1");
  // The first (which turned forwarding on) ends cleanly: the second still needs it.
  KillServe(first, SIGTERM);
  EXPECT_EQ(ReadFile("/proc/sys/net/ipv4/ip_forward"), "1");
  EXPECT_NE(std::system("nft list table ip wrench_wrench0 >/dev/null 2>&1"), 0);
  // The second is killed; its record, which took the setting over, restores it.
  KillServe(second, SIGKILL);
  const std::string out = Shell(absl::StrCat(WRENCH_BINARY, " cleanup 2>&1"));
  EXPECT_THAT(out, HasSubstr("restored net.ipv4.ip_forward to 0 (was 1)"));
  EXPECT_THAT(out, HasSubstr("deleted nftables table ip wrench_wrench1"));
  ExpectHostAsFound();
}

TEST_F(DnatHostRecordTest, CleanupOfOneTunDeletesItsOrphanTableOnly) {
  ASSERT_EQ(std::system("nft 'add table ip wrench_ghost0; add table ip wrench_ghost1'"), 0);
  int status = 0;
  std::string out = Shell(absl::StrCat(WRENCH_BINARY, " cleanup --tun ghost0 2>&1"), &status);
  EXPECT_EQ(WEXITSTATUS(status), 0) << out;
  EXPECT_THAT(out, HasSubstr("deleted nftables table ip wrench_ghost0: its TUN is gone"));
  const std::string tables = Shell("nft list tables");
  EXPECT_THAT(tables, ::testing::Not(HasSubstr("wrench_ghost0")));
  EXPECT_THAT(tables, HasSubstr("wrench_ghost1"));
  // A table whose device exists is left alone.
  ASSERT_EQ(std::system("ip link add ghost1 type veth peer name ghost1p"), 0);
  out = Shell(absl::StrCat(WRENCH_BINARY, " cleanup 2>&1"));
  EXPECT_THAT(out, HasSubstr("left alone: nftables table ip wrench_ghost1: its TUN exists"));
  EXPECT_THAT(Shell("nft list tables"), HasSubstr("wrench_ghost1"));
}

}  // namespace
}  // namespace wrench::proxy
