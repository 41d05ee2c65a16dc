// The control API (proxy/api/control_api.h) against a running wrench in a network
// namespace each test creates: wrench's own rules, connections and counters, then
// Toxiproxy's contract path by path (status codes, JSON shapes, error bodies), then
// what the toxics do to real kernel connections on both kinds of proxy.
#include "proxy/api/control_api.h"

#include <netinet/tcp.h>
#include <sys/socket.h>

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
const IpAddress kFront = IpAddress::V4(0x0a590002);   // 10.89.0.2, inside --net
const IpAddress kFront2 = IpAddress::V4(0x0a590003);  // 10.89.0.3

using tu::ChunkEcho;
using tu::Http;
using tu::HttpResult;

class ControlApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status st = tu::EnterFreshNetworkNamespace();
    if (!st.ok()) GTEST_SKIP() << "needs a network namespace of its own: " << st;
    auto echo = tu::TcpServer::Start(kLoopback, 0, ChunkEcho);
    ASSERT_TRUE(echo.ok()) << echo.status();
    echo_ = std::move(*echo);
  }
  void TearDown() override {
    if (service_) {
      service_->Stop();
      loop_.join();
      service_.reset();
    }
  }

  // wrench with the API on a loopback port of its choosing; `map` adds a --map to
  // the echo server at 10.89.0.2:80.
  void StartWrench(bool map = false, UpstreamVia via = UpstreamVia::kSocket) {
    ServiceOptions o;
    o.upstream_via = via;
    o.api_address = ":0";
    o.tcp.msl = absl::Seconds(1);
    o.seed = 7;
    if (map) {
      auto m = ParseMapping(absl::StrCat("10.89.0.2:80=127.0.0.1:", echo_->port()));
      ASSERT_TRUE(m.ok()) << m.status();
      o.maps.push_back(*m);
    }
    o.log_line = [](const std::string& l) { std::fprintf(stderr, "%s\n", l.c_str()); };
    o.verbose = std::getenv("WRENCH_TEST_VERBOSE") != nullptr;
    auto s = Service::Start(o);
    ASSERT_TRUE(s.ok()) << s.status();
    service_ = std::move(*s);
    port_ = service_->api_port();
    ASSERT_NE(port_, 0);
    loop_ = std::thread([this] { service_->Run(); });
  }

  HttpResult Call(const std::string& method, const std::string& path,
                  const std::string& body = "") {
    return tu::HttpOrFail(port_, method, path, body);
  }

  // POST /proxies for the echo server; returns the created proxy's JSON.
  Json CreateProxy(const std::string& name, const std::string& listen) {
    HttpResult r = Call("POST", "/proxies",
                        Json{{"name", name},
                             {"listen", listen},
                             {"upstream", absl::StrCat("127.0.0.1:", echo_->port())}}
                            .dump());
    EXPECT_EQ(r.status, 201) << r.body;
    return r.json();
  }

  uint16_t ListenPort(const Json& proxy) {
    std::string listen = proxy.value("listen", "");
    uint32_t p = 0;
    EXPECT_TRUE(absl::SimpleAtoi(listen.substr(listen.rfind(':') + 1), &p)) << listen;
    return static_cast<uint16_t>(p);
  }

  std::unique_ptr<tu::TcpServer> echo_;
  std::unique_ptr<Service> service_;
  std::thread loop_;
  uint16_t port_ = 0;
};

// A request and its echo on an open connection; the time it took.
absl::StatusOr<absl::Duration> RoundTrip(int fd, const std::string& msg) {
  absl::Time start = absl::Now();
  if (auto s = tu::WriteAll(fd, msg, absl::Seconds(10)); !s.ok()) return s;
  auto back = tu::ReadAll(fd, absl::Seconds(10), msg.size());
  if (!back.ok()) return back.status();
  if (*back != msg)
    return absl::InternalError(absl::StrCat("echo differs: got ", back->size(), " bytes"));
  return absl::Now() - start;
}

// ---------------------------------------------------------------------------------
// wrench's own API: rules, connections, counters.

TEST_F(ControlApiTest, RulesAreListedAddedAndDeleted) {
  StartWrench();
  HttpResult r = Call("GET", "/rules");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.json(), Json::array());
  r = Call("POST", "/rules",
           "drop on=to-client flags=SYN+ACK nth=1\n# a comment\ndelay 10ms has=FIN\n");
  ASSERT_EQ(r.status, 201) << r.body;
  ASSERT_EQ(r.json()["rules"].size(), 2u);
  EXPECT_EQ(r.json()["rules"][0]["text"], "drop on=to-client flags=SYN+ACK nth=1");
  EXPECT_EQ(r.json()["rules"][1]["hits"], 0);
  int id = r.json()["rules"][0]["id"];
  EXPECT_EQ(Call("GET", "/rules").json().size(), 2u);
  EXPECT_EQ(Call("DELETE", absl::StrCat("/rules/", id)).status, 204);
  EXPECT_EQ(Call("GET", "/rules").json().size(), 1u);
  r = Call("DELETE", absl::StrCat("/rules/", id));
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.json()["status"], 404);
  EXPECT_EQ(Call("DELETE", "/rules/seven").status, 400);
}

TEST_F(ControlApiTest, ABadRuleIsRefusedWithTheParsersMessageAndNothingApplied) {
  StartWrench();
  HttpResult r = Call("POST", "/rules", "drop nth=1\ndrop flgs=SYN\n");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.json()["error"].get<std::string>(), HasSubstr("line 2, col 6"));
  EXPECT_THAT(r.json()["error"].get<std::string>(), HasSubstr("did you mean flags"));
  EXPECT_EQ(Call("GET", "/rules").json(), Json::array())
      << "the good first line must not be applied either";
  EXPECT_EQ(Call("POST", "/rules", "\n# only a comment\n").status, 400);
}

TEST_F(ControlApiTest, ARuleAddedMidTransferFiresAndStopsWhenDeleted) {
  StartWrench(/*map=*/true);
  auto fd = tu::ConnectTo(kFront, 80, absl::Seconds(5));
  ASSERT_TRUE(fd.ok()) << fd.status();
  const std::string msg(1000, 'm');
  auto before = RoundTrip(fd->get(), msg);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_LT(*before, absl::Milliseconds(100));

  HttpResult r = Call("POST", "/rules", "delay 300ms on=to-client len>0");
  ASSERT_EQ(r.status, 201) << r.body;
  int id = r.json()["rules"][0]["id"];
  auto during = RoundTrip(fd->get(), msg);
  ASSERT_TRUE(during.ok()) << during.status();
  EXPECT_GE(*during, absl::Milliseconds(290))
      << "the new rule delays the echo on the open connection";
  uint64_t hits = Call("GET", "/rules").json()[0]["hits"];
  EXPECT_GE(hits, 1u);

  EXPECT_EQ(Call("DELETE", absl::StrCat("/rules/", id)).status, 204);
  auto after = RoundTrip(fd->get(), msg);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_LT(*after, absl::Milliseconds(100));
  // Gone from the engine: its count cannot grow.
  EXPECT_EQ(Call("GET", "/rules").json(), Json::array());
  HttpResult counters = Call("GET", "/counters");
  EXPECT_EQ(counters.json()["rules"], Json::array());
}

TEST_F(ControlApiTest, ConnectionsShowBothLegsAndCountersCount) {
  StartWrench(/*map=*/true);
  auto fd = tu::ConnectTo(kFront, 80, absl::Seconds(5));
  ASSERT_TRUE(fd.ok()) << fd.status();
  ASSERT_TRUE(RoundTrip(fd->get(), "hello").ok());
  HttpResult r = Call("GET", "/connections");
  ASSERT_EQ(r.status, 200);
  ASSERT_EQ(r.json().size(), 1u) << r.body;
  Json c = r.json()[0];
  EXPECT_EQ(c["kind"], "tun");
  EXPECT_EQ(c["front"], "10.89.0.2:80");
  EXPECT_EQ(c["client_leg"], "ESTABLISHED");
  EXPECT_EQ(c["server_leg"], "socket open");
  EXPECT_EQ(c["bytes_to_server"], 5);
  EXPECT_EQ(c["bytes_to_client"], 5);
  Json counters = Call("GET", "/counters").json();
  EXPECT_EQ(counters["connections"], 1);
  EXPECT_EQ(counters["active"], 1);
  EXPECT_EQ(counters["bytes_to_server"], 5);
}

// ---------------------------------------------------------------------------------
// The HTTP server itself.

TEST_F(ControlApiTest, ServesSeveralRequestsOnOneKeptAliveConnection) {
  StartWrench();
  auto fd = tu::ConnectTo(kLoopback, port_, absl::Seconds(5));
  ASSERT_TRUE(fd.ok());
  const std::string req = "GET /version HTTP/1.1\r\nHost: x\r\n\r\n";
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(tu::WriteAll(fd->get(), req, absl::Seconds(5)).ok());
    std::string got;
    while (got.find("}\n") == std::string::npos) {
      auto part = tu::ReadAll(fd->get(), absl::Seconds(5), 1);
      ASSERT_TRUE(part.ok()) << part.status();
      ASSERT_FALSE(part->empty()) << "the server closed a kept-alive connection";
      got += *part;
    }
    EXPECT_THAT(got, HasSubstr("HTTP/1.1 200"));
  }
}

TEST_F(ControlApiTest, RefusesOversizedBodiesUnknownPathsWrongMethodsAndBrowsers) {
  StartWrench();
  auto big = Http(port_, "POST", "/rules", std::string(2 << 20, 'x'));
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_EQ(big->status, 413);
  HttpResult r = Call("GET", "/nope");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.json()["status"], 404);
  r = Call("PUT", "/proxies");
  EXPECT_EQ(r.status, 405);
  EXPECT_THAT(r.headers, HasSubstr("Allow: GET, POST"));
  auto browser = Http(port_, "GET", "/proxies", "", "User-Agent: Mozilla/5.0\r\n");
  ASSERT_TRUE(browser.ok());
  EXPECT_EQ(browser->status, 403);
}

// ---------------------------------------------------------------------------------
// Toxiproxy's contract.

TEST_F(ControlApiTest, VersionIsToxiproxyJson) {
  StartWrench();
  HttpResult r = Call("GET", "/version");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.json()["version"], kToxiproxyApiVersion);
}

TEST_F(ControlApiTest, ProxyCreateShowListAndErrors) {
  StartWrench();
  Json p = CreateProxy("echo", "127.0.0.1:0");
  EXPECT_EQ(p["name"], "echo");
  EXPECT_EQ(p["enabled"], true);
  EXPECT_EQ(p["toxics"], Json::array());
  EXPECT_NE(ListenPort(p), 0) << "port 0 is replaced by the bound port, as Toxiproxy does";
  EXPECT_EQ(std::vector<std::string>({"name", "listen", "upstream", "enabled", "toxics"}),
            [&] {
              std::vector<std::string> keys;
              auto ordered = nlohmann::ordered_json::parse(Call("GET", "/proxies/echo").body);
              for (auto& [k, v] : ordered.items()) keys.push_back(k);
              return keys;
            }());

  HttpResult r = Call("POST", "/proxies",
                      R"({"name":"echo","listen":"127.0.0.1:0","upstream":"127.0.0.1:1"})");
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(r.json(), Json({{"error", "proxy already exists"}, {"status", 409}}));
  r = Call("POST", "/proxies", R"({"listen":"127.0.0.1:0","upstream":"127.0.0.1:1"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.json()["error"], "missing required field: name");
  r = Call("POST", "/proxies", R"({"name":"x","listen":"127.0.0.1:0"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.json()["error"], "missing required field: upstream");
  r = Call("POST", "/proxies", R"({"name": "x", )");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.json()["error"].get<std::string>(), HasSubstr("bad request body"));
  r = Call("POST", "/proxies", "");
  EXPECT_EQ(r.json()["error"], "bad request body: EOF");
  // A busy listen address: Go's bind error, 500, as Toxiproxy.
  r = Call("POST", "/proxies",
           Json{{"name", "twin"}, {"listen", p["listen"]}, {"upstream", "127.0.0.1:1"}}.dump());
  EXPECT_EQ(r.status, 500);
  EXPECT_THAT(r.json()["error"].get<std::string>(), HasSubstr("address already in use"));

  r = Call("GET", "/proxies");
  EXPECT_EQ(r.status, 200);
  ASSERT_TRUE(r.json().contains("echo"));
  EXPECT_EQ(r.json().size(), 1u);
  r = Call("GET", "/proxies/missing");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.json(), Json({{"error", "proxy not found"}, {"status", 404}}));
}

TEST_F(ControlApiTest, ProxyDisableEnableAndDelete) {
  StartWrench();
  Json p = CreateProxy("echo", "127.0.0.1:0");
  uint16_t port = ListenPort(p);
  ASSERT_TRUE(tu::ConnectTo(kLoopback, port, absl::Seconds(5)).ok());
  HttpResult r = Call("POST", "/proxies/echo", R"({"enabled": false})");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.json()["enabled"], false);
  auto refused = tu::ConnectTo(kLoopback, port, absl::Seconds(5));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(tu::ErrnoOf(refused.status()), ECONNREFUSED);
  r = Call("PATCH", "/proxies/echo", R"({"enabled": true})");
  EXPECT_EQ(r.json()["enabled"], true);
  EXPECT_EQ(ListenPort(r.json()), port) << "re-enabled on the same port";
  auto fd = tu::ConnectTo(kLoopback, port, absl::Seconds(5));
  ASSERT_TRUE(fd.ok());
  EXPECT_TRUE(RoundTrip(fd->get(), "back").ok());
  EXPECT_EQ(Call("DELETE", "/proxies/echo").status, 204);
  EXPECT_EQ(Call("DELETE", "/proxies/echo").status, 404);
  EXPECT_EQ(Call("GET", "/proxies").json(), Json::object());
}

TEST_F(ControlApiTest, AProxyWithoutListenTakesIpv4AndIpv6OnEveryAddress) {
  StartWrench();
  HttpResult r =
      Call("POST", "/proxies",
           Json{{"name", "any"}, {"upstream", absl::StrCat("127.0.0.1:", echo_->port())}}.dump());
  ASSERT_EQ(r.status, 201) << r.body;
  const std::string listen = r.json()["listen"];
  EXPECT_TRUE(absl::StartsWith(listen, "[::]:")) << listen;
  const uint16_t port = ListenPort(r.json());
  for (const IpAddress& addr : {kLoopback, *IpAddress::Parse("::1")}) {
    auto fd = tu::ConnectTo(addr, port, absl::Seconds(5));
    ASSERT_TRUE(fd.ok()) << fd.status();
    EXPECT_TRUE(RoundTrip(fd->get(), "dual stack").ok()) << addr.ToString();
  }
}

TEST_F(ControlApiTest, AProxyWithoutListenTakesIpv4WhereIpv6IsDisabled) {
  // net.ipv6.conf.all.disable_ipv6 in this test's own namespace: no IPv6 address, not
  // even ::1, yet [::] still takes IPv4 clients.
  FILE* f = std::fopen("/proc/sys/net/ipv6/conf/all/disable_ipv6", "w");
  if (f == nullptr)
    GTEST_SKIP() << "this kernel has no IPv6 at all (the fallback to 0.0.0.0 is taken)";
  std::fputs("1", f);
  std::fclose(f);
  StartWrench();
  HttpResult r =
      Call("POST", "/proxies",
           Json{{"name", "any"}, {"upstream", absl::StrCat("127.0.0.1:", echo_->port())}}.dump());
  ASSERT_EQ(r.status, 201) << r.body;
  auto fd = tu::ConnectTo(kLoopback, ListenPort(r.json()), absl::Seconds(5));
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_TRUE(RoundTrip(fd->get(), "ipv4 only").ok());
}

TEST_F(ControlApiTest, ToxicCreateDefaultsShowUpdateDeleteAndErrors) {
  StartWrench();
  CreateProxy("echo", "127.0.0.1:0");
  HttpResult r =
      Call("POST", "/proxies/echo/toxics", R"({"type":"latency","attributes":{"latency":50}})");
  ASSERT_EQ(r.status, 200) << r.body;  // Toxiproxy answers 200, not 201, here
  EXPECT_EQ(r.json(),
            Json::parse(R"({"attributes":{"latency":50,"jitter":0},"name":"latency_downstream",
                                      "type":"latency","stream":"downstream","toxicity":1})"));
  r = Call("POST", "/proxies/echo/toxics", R"({"type":"latency","attributes":{"latency":50}})");
  EXPECT_EQ(r.status, 409);
  EXPECT_EQ(r.json(), Json({{"error", "toxic already exists"}, {"status", 409}}));
  r = Call("POST", "/proxies/echo/toxics", R"({"type":"teleport"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.json()["error"], "invalid toxic type");
  r = Call("POST", "/proxies/echo/toxics", R"({"type":"latency","stream":"sideways"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.json()["error"], "stream was invalid, can be either upstream or downstream");
  r = Call("POST", "/proxies/echo/toxics",
           R"({"type":"latency","name":"l2","attributes":{"latency":"slow"}})");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.json()["error"].get<std::string>(), HasSubstr("bad request body"));
  r = Call("POST", "/proxies/echo/toxics", R"({"type":"slicer","attributes":{"average_size":0}})");
  EXPECT_EQ(r.status, 400);
  r = Call("POST", "/proxies/missing/toxics", R"({"type":"latency"})");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.json()["error"], "proxy not found");
  r = Call(
      "POST", "/proxies/echo/toxics",
      R"({"name":"slow_up","type":"bandwidth","stream":"upstream","toxicity":0.5,"attributes":{"rate":100}})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["toxicity"], 0.5);

  r = Call("GET", "/proxies/echo/toxics");
  ASSERT_EQ(r.json().size(), 2u);
  EXPECT_EQ(r.json()[0]["name"], "slow_up") << "upstream toxics are listed first, as Toxiproxy";
  EXPECT_EQ(Call("GET", "/proxies/echo").json()["toxics"].size(), 2u);
  r = Call("GET", "/proxies/echo/toxics/latency_downstream");
  EXPECT_EQ(r.json()["attributes"]["latency"], 50);
  r = Call("GET", "/proxies/echo/toxics/missing");
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.json(), Json({{"error", "toxic not found"}, {"status", 404}}));

  r = Call("POST", "/proxies/echo/toxics/latency_downstream", R"({"attributes":{"jitter":5}})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["attributes"], Json({{"latency", 50}, {"jitter", 5}}))
      << "unset attributes are kept";
  EXPECT_EQ(Call("DELETE", "/proxies/echo/toxics/latency_downstream").status, 204);
  EXPECT_EQ(Call("DELETE", "/proxies/echo/toxics/latency_downstream").status, 404);
  EXPECT_EQ(Call("GET", "/proxies/echo/toxics").json().size(), 1u);
}

TEST_F(ControlApiTest, SegmentToxicOnASocketProxyNamesAListenAddressThatWorks) {
  StartWrench();
  CreateProxy("echo", "127.0.0.1:0");
  HttpResult r = Call("POST", "/proxies/echo/toxics",
                      R"({"type":"segment","attributes":{"rule":"drop flags=SYN+ACK nth=1"}})");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.json()["error"].get<std::string>(), HasSubstr("10.89.0.0/24"));
  EXPECT_THAT(r.json()["error"].get<std::string>(), HasSubstr("10.89.0.2:PORT"));
}

TEST_F(ControlApiTest, SegmentToxicsBecomeScopedRulesAndBadOnesAreRefused) {
  StartWrench();
  CreateProxy("tun", "10.89.0.2:6379");
  HttpResult r = Call(
      "POST", "/proxies/tun/toxics",
      R"({"type":"segment","stream":"downstream","attributes":{"rule":"drop flags=SYN+ACK nth=1"}})");
  ASSERT_EQ(r.status, 200) << r.body;
  r = Call(
      "POST", "/proxies/tun/toxics",
      R"({"type":"segment_delay","stream":"upstream","toxicity":0.25,"attributes":{"delay":20,"has":"FIN"}})");
  ASSERT_EQ(r.status, 200) << r.body;
  Json rules = Call("GET", "/rules").json();
  ASSERT_EQ(rules.size(), 2u);
  EXPECT_EQ(rules[0]["text"], "drop on=to-client flags=SYN+ACK nth=1");
  EXPECT_EQ(rules[0]["proxy"], "tun");
  EXPECT_EQ(rules[0]["toxic"], "segment_downstream");
  EXPECT_EQ(rules[1]["text"], "delay 20ms on=from-client has=FIN p=0.25");
  r = Call("POST", "/proxies/tun/toxics",
           R"({"name":"bad","type":"segment","attributes":{"rule":"drop flgs=SYN"}})");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.json()["error"].get<std::string>(), HasSubstr("did you mean flags"));
  r = Call(
      "POST", "/proxies/tun/toxics",
      R"({"name":"wrong","type":"segment","stream":"upstream","attributes":{"rule":"drop on=to-client"}})");
  EXPECT_EQ(r.status, 400);
  EXPECT_THAT(r.json()["error"].get<std::string>(), HasSubstr("use stream downstream"));
  EXPECT_EQ(Call("GET", "/rules").json().size(), 2u);
  EXPECT_EQ(Call("DELETE", "/proxies/tun/toxics/segment_downstream").status, 204);
  EXPECT_EQ(Call("GET", "/rules").json().size(), 1u);
  EXPECT_EQ(Call("DELETE", "/proxies/tun").status, 204);
  EXPECT_EQ(Call("GET", "/rules").json(), Json::array()) << "a deleted proxy's rules go with it";
}

TEST_F(ControlApiTest, PopulateCreatesKeepsAndReportsErrorsAsToxiproxy) {
  StartWrench();
  std::string up = absl::StrCat("127.0.0.1:", echo_->port());
  HttpResult r = Call(
      "POST", "/populate",
      Json::array(
          {Json{{"name", "a"}, {"listen", "127.0.0.1:0"}, {"upstream", up}},
           Json{{"name", "b"}, {"listen", "10.89.0.2:7000"}, {"upstream", up}, {"enabled", false}}})
          .dump());
  ASSERT_EQ(r.status, 201) << r.body;
  ASSERT_EQ(r.json()["proxies"].size(), 2u);
  EXPECT_EQ(r.json()["proxies"][1]["enabled"], false);
  r = Call("POST", "/populate", R"([{"name":"c","listen":"127.0.0.1:0"}])");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.json()["error"], "missing required field: upstream at proxy 1");
  EXPECT_TRUE(r.json()["proxies"].is_null());
  EXPECT_EQ(Call("GET", "/proxies").json().size(), 2u) << "nothing of a bad request is applied";
  r = Call("POST", "/populate", "{}");
  EXPECT_EQ(r.status, 400);
  // The same proxy again, its address spelled with a name: kept, toxics and all.
  Json a = Call("GET", "/proxies/a").json();
  ASSERT_EQ(Call("POST", "/proxies/a/toxics", R"({"type":"latency"})").status, 200);
  r = Call("POST", "/populate",
           Json::array({Json{{"name", "a"},
                             {"listen", absl::StrCat("localhost:", ListenPort(a))},
                             {"upstream", up}}})
               .dump());
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(r.json()["proxies"][0]["listen"], a["listen"]);
  EXPECT_EQ(r.json()["proxies"][0]["toxics"].size(), 1u);
}

TEST_F(ControlApiTest, ResetRemovesToxicsAndEnablesProxies) {
  StartWrench();
  CreateProxy("a", "127.0.0.1:0");
  CreateProxy("b", "10.89.0.2:7001");
  ASSERT_EQ(
      Call("POST", "/proxies/a/toxics", R"({"type":"latency","attributes":{"latency":10}})").status,
      200);
  ASSERT_EQ(
      Call("POST", "/proxies/b/toxics", R"({"type":"segment_drop","attributes":{"nth":1}})").status,
      200);
  ASSERT_EQ(Call("POST", "/proxies/b", R"({"enabled":false})").status, 200);
  HttpResult r = Call("POST", "/reset");
  EXPECT_EQ(r.status, 204);
  EXPECT_TRUE(r.body.empty());
  Json all = Call("GET", "/proxies").json();
  EXPECT_EQ(all["a"]["toxics"], Json::array());
  EXPECT_EQ(all["b"]["toxics"], Json::array());
  EXPECT_EQ(all["b"]["enabled"], true);
  EXPECT_EQ(Call("GET", "/rules").json(), Json::array());
}

TEST_F(ControlApiTest, MetricsArePrometheusText) {
  StartWrench();
  Json p = CreateProxy("echo", "127.0.0.1:0");
  auto fd = tu::ConnectTo(kLoopback, ListenPort(p), absl::Seconds(5));
  ASSERT_TRUE(fd.ok());
  ASSERT_TRUE(RoundTrip(fd->get(), "12345").ok());
  HttpResult r = Call("GET", "/metrics");
  EXPECT_EQ(r.status, 200);
  EXPECT_THAT(r.headers, HasSubstr("text/plain"));
  EXPECT_THAT(r.body, HasSubstr("# TYPE toxiproxy_proxy_sent_bytes_total counter"));
  EXPECT_THAT(r.body, HasSubstr(absl::StrCat(
                          "toxiproxy_proxy_sent_bytes_total{direction=\"upstream\",listener=\"",
                          p["listen"].get<std::string>(), "\",proxy=\"echo\"")));
  EXPECT_THAT(r.body, HasSubstr("wrench_connections_total"));
}

// ---------------------------------------------------------------------------------
// What the toxics do to real connections.

// A proxy of each kind: a kernel socket on loopback, and a TUN front.
struct Kind {
  const char* name;
  const char* listen;
  IpAddress addr;
};
const Kind kSocketKind = {"socket", "127.0.0.1:0", kLoopback};
const Kind kTunKind = {"tun", "10.89.0.2:5000", kFront};

class ToxicEffectTest : public ControlApiTest, public ::testing::WithParamInterface<Kind> {
 protected:
  // Creates the proxy and returns a connection through it.
  absl::StatusOr<UniqueFd> ProxyAndConnect() {
    Json p = CreateProxy("p", GetParam().listen);
    port_p_ = ListenPort(p);
    return tu::ConnectTo(GetParam().addr, port_p_, absl::Seconds(5));
  }
  // Creates proxy "p" (on this kind's listen address) toward `upstream`.
  void ProxyTo(const std::string& upstream) {
    HttpResult r =
        Call("POST", "/proxies",
             Json{{"name", "p"}, {"listen", GetParam().listen}, {"upstream", upstream}}.dump());
    ASSERT_EQ(r.status, 201) << r.body;
    EXPECT_EQ(r.json()["upstream"], upstream);
    port_p_ = ListenPort(r.json());
  }
  HttpResult AddToxic(const std::string& json) {
    HttpResult r = Call("POST", "/proxies/p/toxics", json);
    EXPECT_EQ(r.status, 200) << r.body;
    return r;
  }
  uint16_t port_p_ = 0;
};

TEST_P(ToxicEffectTest, LatencyDelaysTheOpenConnectionAndStopsWhenRemoved) {
  StartWrench();
  auto fd = ProxyAndConnect();
  ASSERT_TRUE(fd.ok()) << fd.status();
  ASSERT_LT(*RoundTrip(fd->get(), "a"), absl::Milliseconds(100));
  AddToxic(R"({"type":"latency","stream":"downstream","attributes":{"latency":200}})");
  AddToxic(R"({"type":"latency","stream":"upstream","attributes":{"latency":100}})");
  auto slow = RoundTrip(fd->get(), "b");
  ASSERT_TRUE(slow.ok()) << slow.status();
  EXPECT_GE(*slow, absl::Milliseconds(295));
  EXPECT_LT(*slow, absl::Milliseconds(700));
  ASSERT_EQ(Call("DELETE", "/proxies/p/toxics/latency_downstream").status, 204);
  ASSERT_EQ(Call("DELETE", "/proxies/p/toxics/latency_upstream").status, 204);
  auto fast = RoundTrip(fd->get(), "c");
  ASSERT_TRUE(fast.ok()) << fast.status();
  EXPECT_LT(*fast, absl::Milliseconds(100));
}

TEST_P(ToxicEffectTest, BandwidthLimitsTheRate) {
  StartWrench();
  auto fd = ProxyAndConnect();
  ASSERT_TRUE(fd.ok()) << fd.status();
  AddToxic(R"({"type":"bandwidth","attributes":{"rate":200}})");  // 200 KB/s downstream
  auto took = RoundTrip(fd->get(), std::string(100'000, 'b'));
  ASSERT_TRUE(took.ok()) << took.status();
  EXPECT_GE(*took, absl::Milliseconds(450));
  EXPECT_LT(*took, absl::Milliseconds(1500));
}

TEST_P(ToxicEffectTest, ResetPeerResetsTheClient) {
  StartWrench();
  auto fd = ProxyAndConnect();
  ASSERT_TRUE(fd.ok()) << fd.status();
  AddToxic(R"({"type":"reset_peer","attributes":{"timeout":0}})");
  ASSERT_TRUE(tu::WriteAll(fd->get(), "hi", absl::Seconds(5)).ok());
  auto r = tu::ReadAll(fd->get(), absl::Seconds(5));
  ASSERT_FALSE(r.ok()) << "read " << r->size() << " bytes and EOF";
  EXPECT_EQ(tu::ErrnoOf(r.status()), ECONNRESET) << r.status();
}

TEST_P(ToxicEffectTest, LimitDataClosesAfterThatManyBytes) {
  StartWrench();
  auto fd = ProxyAndConnect();
  ASSERT_TRUE(fd.ok()) << fd.status();
  AddToxic(R"({"type":"limit_data","attributes":{"bytes":10}})");
  ASSERT_TRUE(tu::WriteAll(fd->get(), std::string(100, 'l'), absl::Seconds(5)).ok());
  auto r = tu::ReadAll(fd->get(), absl::Seconds(5));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, std::string(10, 'l'));
}

TEST_P(ToxicEffectTest, TimeoutSwallowsDataThenCloses) {
  StartWrench();
  auto fd = ProxyAndConnect();
  ASSERT_TRUE(fd.ok()) << fd.status();
  AddToxic(R"({"type":"timeout","attributes":{"timeout":300}})");
  absl::Time start = absl::Now();
  ASSERT_TRUE(tu::WriteAll(fd->get(), "anyone?", absl::Seconds(5)).ok());
  auto r = tu::ReadAll(fd->get(), absl::Seconds(5));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "");
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(250));
}

TEST_P(ToxicEffectTest, HalfCloseIsRelayedNotTurnedIntoAClose) {
  // The client half-closes, then reads the echo: Toxiproxy would close the whole
  // connection at the client's FIN; wrench passes the FIN on and keeps the other way open.
  StartWrench();
  auto fd = ProxyAndConnect();
  ASSERT_TRUE(fd.ok()) << fd.status();
  AddToxic(R"({"type":"latency","attributes":{"latency":50}})");
  ASSERT_TRUE(tu::WriteAll(fd->get(), "last words", absl::Seconds(5)).ok());
  ::shutdown(fd->get(), SHUT_WR);
  auto r = tu::ReadAll(fd->get(), absl::Seconds(5));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "last words");
}

TEST_P(ToxicEffectTest, DisablingTheProxyEndsItsConnections) {
  StartWrench();
  auto fd = ProxyAndConnect();
  ASSERT_TRUE(fd.ok()) << fd.status();
  ASSERT_TRUE(RoundTrip(fd->get(), "x").ok());
  ASSERT_EQ(Call("POST", "/proxies/p", R"({"enabled":false})").status, 200);
  auto r = tu::ReadAll(fd->get(), absl::Seconds(5));
  // A FIN (socket proxies, as Toxiproxy) or a reset (TUN proxies): either ends it.
  EXPECT_TRUE(r.ok() ? r->empty() : tu::ErrnoOf(r.status()) == ECONNRESET) << r.status();
  auto again = tu::ConnectTo(GetParam().addr, port_p_, absl::Seconds(5));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(tu::ErrnoOf(again.status()), ECONNREFUSED);
}

// Toxics on one stream compose in creation order, as Toxiproxy's chain.

TEST_P(ToxicEffectTest, TwoLatencyToxicsOnOneStreamAddUp) {
  StartWrench();
  auto fd = ProxyAndConnect();
  ASSERT_TRUE(fd.ok()) << fd.status();
  AddToxic(R"({"name":"first","type":"latency","attributes":{"latency":300}})");
  AddToxic(R"({"name":"second","type":"latency","attributes":{"latency":300}})");
  auto slow = RoundTrip(fd->get(), "b");
  ASSERT_TRUE(slow.ok()) << slow.status();
  EXPECT_GE(*slow, absl::Milliseconds(595));
  EXPECT_LT(*slow, absl::Milliseconds(1000));
}

TEST_P(ToxicEffectTest, BandwidthAfterLatencyAddsItsTimeToTheLatency) {
  StartWrench();
  auto fd = ProxyAndConnect();
  ASSERT_TRUE(fd.ok()) << fd.status();
  AddToxic(R"({"name":"l","type":"latency","attributes":{"latency":300}})");
  AddToxic(R"({"name":"b","type":"bandwidth","attributes":{"rate":100}})");  // 40 KB: 400 ms
  auto took = RoundTrip(fd->get(), std::string(40'000, 'b'));
  ASSERT_TRUE(took.ok()) << took.status();
  EXPECT_GE(*took, absl::Milliseconds(680));
  EXPECT_LT(*took, absl::Milliseconds(1500));
}

TEST_P(ToxicEffectTest, LimitDataAfterSlicerCountsTheSlicesAndCloses) {
  StartWrench();
  auto fd = ProxyAndConnect();
  ASSERT_TRUE(fd.ok()) << fd.status();
  AddToxic(
      R"({"name":"s","type":"slicer","attributes":{"average_size":3,"size_variation":0,"delay":1000}})");
  AddToxic(R"({"name":"l","type":"limit_data","attributes":{"bytes":10}})");
  AddToxic(R"({"name":"c","type":"slow_close","attributes":{"delay":200}})");
  absl::Time start = absl::Now();
  ASSERT_TRUE(tu::WriteAll(fd->get(), "0123456789abcdef", absl::Seconds(5)).ok());
  auto r = tu::ReadAll(fd->get(), absl::Seconds(5));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r, "0123456789");
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(190)) << "the close waited for slow_close";
}

// Upstream names are looked up at each connection.

TEST_P(ToxicEffectTest, AnUpstreamNameThatDoesNotResolveIsAcceptedAndRefusesConnections) {
  StartWrench();
  ProxyTo("db.not-yet-up.invalid:5432");  // RFC 6761 §6.4: never resolves
  for (int i = 0; i < 2; ++i) {  // the second answer comes from the cache
    auto fd = tu::ConnectTo(GetParam().addr, port_p_, absl::Seconds(5));
    if (!fd.ok()) {
      // The TUN proxy answers the SYN only once the upstream is up: a refusal. The
      // socket proxy accepts, and its reset can come before connect() returns.
      const int err = tu::ErrnoOf(fd.status());
      EXPECT_TRUE(err == ECONNREFUSED || err == ECONNRESET) << fd.status();
      continue;
    }
    auto r = tu::ReadAll(fd->get(), absl::Seconds(10));
    ASSERT_FALSE(r.ok()) << "read " << r->size() << " bytes and EOF";
    EXPECT_EQ(tu::ErrnoOf(r.status()), ECONNRESET) << r.status();
  }
  EXPECT_EQ(Call("GET", "/proxies/p").json()["upstream"], "db.not-yet-up.invalid:5432");
}

TEST_P(ToxicEffectTest, AnUpstreamNameIsResolvedForTheConnection) {
  StartWrench();
  ProxyTo(absl::StrCat("localhost:", echo_->port()));
  auto fd = tu::ConnectTo(GetParam().addr, port_p_, absl::Seconds(5));
  ASSERT_TRUE(fd.ok()) << fd.status();
  EXPECT_TRUE(RoundTrip(fd->get(), "by name").ok());
}

TEST_P(ToxicEffectTest, UpdatingTheUpstreamToANameNotYetUpIsAccepted) {
  // toxiproxy-node-client's own "Proxy Should update a proxy".
  StartWrench();
  CreateProxy("p", GetParam().listen);
  HttpResult r = Call("POST", "/proxies/p", R"({"upstream":"somehost:12345"})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.json()["upstream"], "somehost:12345");
  EXPECT_EQ(r.json()["enabled"], true);
}

INSTANTIATE_TEST_SUITE_P(BothKinds, ToxicEffectTest, ::testing::Values(kSocketKind, kTunKind),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_F(ControlApiTest, SegmentToxicDropsTheFirstSynAckOfItsProxyOnly) {
  StartWrench();
  CreateProxy("slow", "10.89.0.2:5000");
  CreateProxy("fast", "10.89.0.3:5000");
  HttpResult r = Call(
      "POST", "/proxies/slow/toxics",
      R"({"type":"segment","stream":"downstream","attributes":{"rule":"drop flags=SYN+ACK nth=1"}})");
  ASSERT_EQ(r.status, 200) << r.body;
  absl::Time start = absl::Now();
  auto fast = tu::ConnectTo(kFront2, 5000, absl::Seconds(5));
  ASSERT_TRUE(fast.ok()) << fast.status();
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500))
      << "the other proxy's connections are not touched";
  start = absl::Now();
  auto slow = tu::ConnectTo(kFront, 5000, absl::Seconds(5));
  ASSERT_TRUE(slow.ok()) << slow.status();
  absl::Duration took = absl::Now() - start;
  EXPECT_GE(took, absl::Milliseconds(900)) << "the kernel retransmits its SYN after 1 s";
  EXPECT_LT(took, absl::Seconds(3));
  Json rules = Call("GET", "/rules").json();
  ASSERT_EQ(rules.size(), 1u);
  EXPECT_EQ(rules[0]["hits"], 1);
  ASSERT_TRUE(RoundTrip(slow->get(), "through").ok());
}

TEST_F(ControlApiTest, ASegmentDelayOnTheSynAckDelaysTheHandshakeOnce) {
  // A socket-upstream proxy: the upstream connect's success is a from-server SYN+ACK
  // socket event, the client's SYN-ACK a to-client segment. The toxic acts on the
  // client's leg only, so the handshake waits 250 ms, not 500.
  StartWrench();
  CreateProxy("slow", "10.89.0.2:5000");
  HttpResult r = Call(
      "POST", "/proxies/slow/toxics",
      R"({"type":"segment_delay","stream":"downstream","attributes":{"delay":250,"flags":"SYN+ACK"}})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Call("GET", "/rules").json()[0]["text"], "delay 250ms on=to-client flags=SYN+ACK");
  absl::Time start = absl::Now();
  auto fd = tu::ConnectTo(kFront, 5000, absl::Seconds(5));
  ASSERT_TRUE(fd.ok()) << fd.status();
  absl::Duration took = absl::Now() - start;
  std::fprintf(stderr, "connect with a 250 ms segment_delay on the SYN-ACK: %.1f ms\n",
               absl::ToDoubleMilliseconds(took));
  EXPECT_GE(took, absl::Milliseconds(250));
  EXPECT_LT(took, absl::Milliseconds(450)) << "the delay was applied twice";
  EXPECT_EQ(Call("GET", "/rules").json()[0]["hits"], 1);
  ASSERT_TRUE(RoundTrip(fd->get(), "through").ok());
}

TEST_F(ControlApiTest, ARuleThatCanNeverFireOnTheLegsIsA400WithTheReason) {
  StartWrench();  // --upstream-via socket: the server leg is a kernel socket
  HttpResult r = Call("POST", "/rules", "blackhole on=from-server after=50");
  EXPECT_EQ(r.status, 400) << r.body;
  const std::string error = r.json().value("error", "");
  EXPECT_THAT(error, HasSubstr("can never fire"));
  EXPECT_THAT(error, HasSubstr("only delay and rst act"));
  EXPECT_THAT(error, HasSubstr("from-client and to-client take every action"));
  EXPECT_THAT(error, HasSubstr("--allow-idle-rules"));
  // A pure ACK is no socket event either.
  EXPECT_EQ(Call("POST", "/rules", "delay 10ms on=to-server flags=ACK").status, 400);
  EXPECT_EQ(Call("GET", "/rules").json(), Json::array()) << "nothing was applied";
  // What the socket leg does take, and every action on the client's leg, are accepted.
  EXPECT_EQ(Call("POST", "/rules",
                 "delay 10ms on=from-server flags=SYN+ACK\nblackhole on=to-client after=50")
                .status,
            201);
  // A segment toxic naming the server leg of a socket-upstream proxy, too.
  CreateProxy("p", "10.89.0.2:5000");
  r = Call(
      "POST", "/proxies/p/toxics",
      R"({"type":"segment","stream":"downstream","attributes":{"rule":"drop on=from-server has=FIN"}})");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_THAT(r.json().value("error", ""), HasSubstr("can never fire"));
}

TEST_F(ControlApiTest, WithTheServerLegOnTheTunEveryRuleIsAccepted) {
  StartWrench(false, UpstreamVia::kTun);
  EXPECT_EQ(
      Call("POST", "/rules", "blackhole on=from-server after=50\ndelay 10ms on=to-server flags=ACK")
          .status,
      201);
}

TEST_F(ControlApiTest, StreamToxicsWorkWhenTheServerLegIsOursToo) {
  // --upstream-via tun: both legs are wrench's endpoints; the server listens on the
  // kernel's TUN address, which exists once wrench configured the device.
  StartWrench(/*map=*/false, UpstreamVia::kTun);
  const IpAddress kKernel = IpAddress::V4(0x0a590001);
  auto server = tu::TcpServer::Start(kKernel, 7777, ChunkEcho);
  ASSERT_TRUE(server.ok()) << server.status();
  HttpResult r = Call("POST", "/proxies",
                      R"({"name":"p","listen":"10.89.0.2:5000","upstream":"10.89.0.1:7777"})");
  ASSERT_EQ(r.status, 201) << r.body;
  auto fd = tu::ConnectTo(kFront, 5000, absl::Seconds(5));
  ASSERT_TRUE(fd.ok()) << fd.status();
  ASSERT_LT(*RoundTrip(fd->get(), "a"), absl::Milliseconds(100));
  ASSERT_EQ(Call("POST", "/proxies/p/toxics", R"({"type":"latency","attributes":{"latency":200}})")
                .status,
            200);
  auto slow = RoundTrip(fd->get(), std::string(100'000, 'b'));
  ASSERT_TRUE(slow.ok()) << slow.status();
  EXPECT_GE(*slow, absl::Milliseconds(195));
  ASSERT_EQ(Call("POST", "/proxies/p/toxics",
                 R"({"type":"limit_data","name":"cap","attributes":{"bytes":4}})")
                .status,
            200);
  ASSERT_TRUE(tu::WriteAll(fd->get(), "12345678", absl::Seconds(5)).ok());
  auto rest = tu::ReadAll(fd->get(), absl::Seconds(5));
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(*rest, "1234");
}

TEST_F(ControlApiTest, DeletingATunProxyResetsItsConnections) {
  StartWrench();
  CreateProxy("p", "10.89.0.2:5000");
  auto fd = tu::ConnectTo(kFront, 5000, absl::Seconds(5));
  ASSERT_TRUE(fd.ok()) << fd.status();
  ASSERT_TRUE(RoundTrip(fd->get(), "x").ok());
  ASSERT_EQ(Call("DELETE", "/proxies/p").status, 204);
  auto r = tu::ReadAll(fd->get(), absl::Seconds(5));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(tu::ErrnoOf(r.status()), ECONNRESET);
  EXPECT_EQ(Call("GET", "/connections").json().size(), 0u);
}

}  // namespace
}  // namespace wrench::proxy
