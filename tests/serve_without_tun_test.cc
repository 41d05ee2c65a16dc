// `wrench serve` where the TUN cannot be made, as in a container started without
// --cap-add NET_ADMIN --device /dev/net/tun: the service starts anyway, says once that
// it fell back to stream toxics, and serves Toxiproxy's API with kernel sockets.
// CAP_NET_ADMIN is dropped from the thread that starts and runs the service.
#include <linux/capability.h>

#include <cstdlib>
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
#include "proxy/service.h"
#include "tests/api_testing.h"
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

class ServeWithoutTun : public ::testing::Test {
 protected:
  void SetUp() override {
    WRENCH_ENTER_NETNS_OR_SKIP();
    // Host records of earlier runs: this test's own (empty) directory, not the host's.
    char dir[] = "/tmp/wrench-run-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    run_dir_ = dir;
    ::setenv("WRENCH_RUN_DIR", dir, 1);
    auto echo = tu::TcpServer::Start(kLoopback, 0, tu::ChunkEcho);
    ASSERT_TRUE(echo.ok()) << echo.status();
    echo_ = std::move(*echo);

    std::promise<absl::Status> started;
    loop_ = std::thread([&] {
      if (absl::Status st = tu::DropEffectiveCapability(CAP_NET_ADMIN); !st.ok()) {
        started.set_value(st);
        return;
      }
      ServiceOptions o;
      o.api_address = ":0";
      o.tun_optional = true;
      o.log_line = [this](const std::string& l) {
        std::fprintf(stderr, "%s\n", l.c_str());
        std::lock_guard<std::mutex> lock(mu_);
        log_ += l + "\n";
      };
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

  HttpResult Call(const std::string& method, const std::string& path, const std::string& body = "") {
    return tu::HttpOrFail(api_, method, path, body);
  }

  std::string Upstream() const { return absl::StrCat("127.0.0.1:", echo_->port()); }

  std::string run_dir_;
  std::unique_ptr<tu::TcpServer> echo_;
  std::unique_ptr<Service> service_;
  std::thread loop_;
  uint16_t api_ = 0;
  std::mutex mu_;
  std::string log_;
};

TEST_F(ServeWithoutTun, StartsAndSaysOnceThatItFellBackToStreamToxics) {
  EXPECT_FALSE(service_->has_tun());
  EXPECT_EQ(Count(Log(), kFallback), 1) << Log();
  EXPECT_THAT(Log(), HasSubstr("CAP_NET_ADMIN"));
  EXPECT_THAT(Log(), HasSubstr("--cap-add NET_ADMIN --device /dev/net/tun"));
  EXPECT_EQ(Call("GET", "/version").status, 200);
}

TEST_F(ServeWithoutTun, WildcardProxyRelaysWithItsLatencyAndRefusesSegmentToxics) {
  HttpResult r = Call("POST", "/proxies",
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
  HttpResult r = Call("POST", "/proxies",
                      absl::StrCat(R"({"name":"tun","listen":"10.89.0.2:6000","upstream":")", Upstream(), R"("})"));
  EXPECT_GE(r.status, 400) << r.body;
  EXPECT_THAT(r.json().value("error", ""), HasSubstr("without its TUN device"));
  EXPECT_THAT(r.json().value("error", ""), HasSubstr("0.0.0.0:PORT"));
}

}  // namespace
}  // namespace wrench::proxy
