// `wrench serve` as in a container. Started without --cap-add NET_ADMIN --device
// /dev/net/tun, the TUN cannot be made: the service starts anyway, says once that it
// fell back to stream toxics, and serves Toxiproxy's API with kernel sockets
// (CAP_NET_ADMIN is dropped from the thread that starts and runs the service). With
// them, /proc/sys is still read-only: DNAT works where forwarding is already on, and
// says which sysctl it could not write where it is off (a mount namespace of the
// test's own holds the read-only /proc/sys).
#include <linux/capability.h>
#include <sched.h>
#include <sys/mount.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <future>
#include <mutex>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proxy/app/service.h"
#include "tests/api_testing.h"
#include "tests/cli_testing.h"
#include "tests/netns_testing.h"

namespace wrench::proxy {
namespace {

namespace tu = ::wrench::proxy::testing;
using ::testing::HasSubstr;
using tu::HttpResult;

const stack::IpAddress kLoopback = stack::IpAddress::V4(0x7f000001);
constexpr char kFallback[] = "falling back to stream toxics only";
constexpr char kDropFirstSynAck[] =
    R"({"type":"segment","stream":"downstream","attributes":{"rule":"drop flags=SYN+ACK nth=1"}})";

int Count(const std::string& text, const std::string& what) {
  int n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// What both fixtures share: a host-record directory of the test's own (never the
// host's), an echo server upstream, the service on a loop thread and its log.
class ServeFixture : public ::testing::Test {
 protected:
  void PrepareRunDirAndEcho() {
    char dir[] = "/tmp/wrench-run-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    run_dir_ = dir;
    ::setenv("WRENCH_RUN_DIR", dir, 1);
    auto echo = tu::TcpServer::Start(kLoopback, 0, tu::ChunkEcho);
    ASSERT_TRUE(echo.ok()) << echo.status();
    echo_ = std::move(*echo);
  }

  // Options with the API on a free port and every log line kept for Log().
  ServiceOptions Options() {
    ServiceOptions o;
    o.api_address = ":0";
    o.log_line = [this](const std::string& l) {
      std::fprintf(stderr, "%s\n", l.c_str());
      std::lock_guard<std::mutex> lock(mu_);
      log_ += l + "\n";
    };
    return o;
  }

  void TearDown() override {
    if (service_) service_->Stop();
    if (loop_.joinable()) loop_.join();
    service_.reset();
    if (!run_dir_.empty()) std::system(absl::StrCat("rm -rf ", run_dir_).c_str());
  }

  std::string Log() {
    std::lock_guard<std::mutex> lock(mu_);
    return log_;
  }

  std::string run_dir_;
  std::unique_ptr<tu::TcpServer> echo_;
  std::unique_ptr<Service> service_;
  std::thread loop_;
  uint16_t api_ = 0;
  std::mutex mu_;
  std::string log_;
};

class ServeWithoutTun : public ServeFixture {
 protected:
  void SetUp() override {
    WRENCH_ENTER_NETNS_OR_SKIP();
    PrepareRunDirAndEcho();
    if (HasFatalFailure()) return;

    std::promise<absl::Status> started;
    loop_ = std::thread([&] {
      if (absl::Status st = tu::DropEffectiveCapability(CAP_NET_ADMIN); !st.ok()) {
        started.set_value(st);
        return;
      }
      ServiceOptions o = Options();
      o.tun_optional = true;
      auto s = Service::Start(o);
      if (!s.ok()) {
        started.set_value(s.status());
        return;
      }
      service_ = std::move(*s);
      started.set_value(absl::OkStatus());
      service_->Run();
    });
    auto done = started.get_future();
    ASSERT_EQ(done.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    absl::Status st = done.get();
    ASSERT_TRUE(st.ok()) << st;
    api_ = service_->api_port();
  }

  HttpResult Call(const std::string& method, const std::string& path,
                  const std::string& body = "") {
    return tu::HttpOrFail(api_, method, path, body);
  }

  std::string Upstream() const { return absl::StrCat("127.0.0.1:", echo_->port()); }
};

TEST_F(ServeWithoutTun, StartsAndSaysOnceThatItFellBackToStreamToxics) {
  EXPECT_FALSE(service_->has_tun());
  EXPECT_EQ(Count(Log(), kFallback), 1) << Log();
  EXPECT_THAT(Log(), HasSubstr("CAP_NET_ADMIN"));
  EXPECT_THAT(Log(), HasSubstr("--cap-add NET_ADMIN --device /dev/net/tun"));
  EXPECT_EQ(Call("GET", "/version").status, 200);
}

TEST_F(ServeWithoutTun, WildcardProxyRelaysWithItsLatencyAndRefusesSegmentToxics) {
  HttpResult r =
      Call("POST", "/proxies",
           absl::StrCat(R"({"name":"any","listen":"0.0.0.0:0","upstream":")", Upstream(), R"("})"));
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string listen = r.json().value("listen", "");
  uint32_t port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(listen.substr(listen.rfind(':') + 1), &port)) << listen;

  r = Call("POST", "/proxies/any/toxics", kDropFirstSynAck);
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_THAT(r.json().value("error", ""), HasSubstr("wrench runs without its TUN device"));

  r = Call("POST", "/proxies/any/toxics",
           R"({"type":"latency","stream":"downstream","attributes":{"latency":200}})");
  ASSERT_EQ(r.status, 200) << r.body;
  auto fd = tu::ConnectTo(kLoopback, static_cast<uint16_t>(port), absl::Seconds(5));
  ASSERT_TRUE(fd.ok()) << fd.status();
  const absl::Time sent = absl::Now();
  ASSERT_TRUE(tu::WriteAll(fd->get(), "ping", absl::Seconds(5)).ok());
  ::shutdown(fd->get(), SHUT_WR);
  auto back = tu::ReadAll(fd->get(), absl::Seconds(10));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, "ping");
  EXPECT_GE(absl::Now() - sent, absl::Milliseconds(195));
  // Every proxy and toxic after the start adds nothing to the log's one line.
  EXPECT_EQ(Count(Log(), kFallback), 1) << Log();
}

TEST_F(ServeWithoutTun, ProxyInsideTheTunSubnetIsRefusedNamingWhatIsMissing) {
  HttpResult r = Call(
      "POST", "/proxies",
      absl::StrCat(R"({"name":"tun","listen":"10.89.0.2:6000","upstream":")", Upstream(), R"("})"));
  EXPECT_GE(r.status, 400) << r.body;
  EXPECT_THAT(r.json().value("error", ""), HasSubstr("without its TUN device"));
  EXPECT_THAT(r.json().value("error", ""), HasSubstr("0.0.0.0:PORT"));
}

// A read-only /proc/sys, as a container has, in a mount namespace of the test's own
// and a fresh network namespace whose net.ipv4.ip_forward is set first.
class ServeUnderReadOnlyProcSys : public ServeFixture {
 protected:
  void Start(bool forwarding) {
    if (::unshare(CLONE_NEWNS) != 0)
      GTEST_SKIP() << "needs a mount namespace of its own: " << std::strerror(errno);
    // /proc's mounts, the bind below among them, stay in this mount namespace. /proc
    // is a mount point on every machine; "/" is not in a chroot.
    ASSERT_EQ(::mount(nullptr, "/proc", nullptr, MS_REC | MS_PRIVATE, nullptr), 0)
        << std::strerror(errno);
    WRENCH_ENTER_NETNS_OR_SKIP();
    tu::WriteWholeFile("/proc/sys/net/ipv4/ip_forward", forwarding ? "1\n" : "0\n");
    ASSERT_EQ(::mount("/proc/sys", "/proc/sys", nullptr, MS_BIND, nullptr), 0)
        << std::strerror(errno);
    ASSERT_EQ(::mount(nullptr, "/proc/sys", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr), 0)
        << std::strerror(errno);
    PrepareRunDirAndEcho();
    if (HasFatalFailure()) return;
    auto s = Service::Start(Options());
    ASSERT_TRUE(s.ok()) << s.status();
    service_ = std::move(*s);
    api_ = service_->api_port();
    loop_ = std::thread([this] { service_->Run(); });
  }

  HttpResult CreateWildcardProxyAndAddASegmentToxic() {
    HttpResult r = tu::HttpOrFail(
        api_, "POST", "/proxies",
        absl::StrCat(R"({"name":"any","listen":"0.0.0.0:7000","upstream":"127.0.0.1:)",
                     echo_->port(), R"("})"));
    EXPECT_EQ(r.status, 201) << r.body;
    return tu::HttpOrFail(api_, "POST", "/proxies/any/toxics", kDropFirstSynAck);
  }
};

TEST_F(ServeUnderReadOnlyProcSys, ForwardingAlreadyOnIsEnoughForDnat) {
  Start(/*forwarding=*/true);
  if (IsSkipped() || HasFatalFailure()) return;
  HttpResult r = CreateWildcardProxyAndAddASegmentToxic();
  if (absl::StrContains(Log(), "no DNAT into the TUN") && !absl::StrContains(Log(), "Read-only")) {
    GTEST_SKIP() << "no nftables DNAT here: " << Log();
  }
  EXPECT_THAT(Log(), HasSubstr("are DNATed to 10.89.0.254:7000"));
  EXPECT_EQ(r.status, 200) << r.body;
  // rp_filter was off (conf/all and the TUN's): loose is not needed, nothing written.
  EXPECT_EQ(tu::ReadWholeFile("/proc/sys/net/ipv4/conf/wrench0/rp_filter"), "0\n");
}

TEST_F(ServeUnderReadOnlyProcSys, ForwardingOffIsReportedAsTheSysctlItCouldNotWrite) {
  Start(/*forwarding=*/false);
  if (IsSkipped() || HasFatalFailure()) return;
  HttpResult r = CreateWildcardProxyAndAddASegmentToxic();
  EXPECT_THAT(
      Log(),
      HasSubstr(
          "no DNAT into the TUN (open /proc/sys/net/ipv4/ip_forward: Read-only file system)"));
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_THAT(r.json().value("error", ""), HasSubstr("Read-only file system"));
}

}  // namespace
}  // namespace wrench::proxy
