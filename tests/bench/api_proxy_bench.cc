// The control API's speed check: with no toxic, a proxy created through the control API must
// add no more latency and take no less throughput than `wrench proxy`'s --map. One run
// against the same kernel client and server: direct loopback, socat, a --map front, a
// TUN proxy and a loopback (kernel socket) proxy made by POST /proxies, and the same
// two with a zero latency toxic (bytes through the stream-toxic pipeline). Runs in a
// network namespace of its own (needs root); prints figures, asserts nothing.
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "proxy/app/service.h"
#include "tests/netns_testing.h"

namespace wrench::proxy {
namespace {

namespace tu = ::wrench::proxy::testing;
using stack::IpAddress;

const IpAddress kLoopback = IpAddress::V4(0x7f000001);
const IpAddress kMapFront = IpAddress::V4(0x0a590002);  // --map 10.89.0.2:80
const IpAddress kApiFront = IpAddress::V4(0x0a590003);  // POST /proxies listen 10.89.0.3:80
constexpr uint16_t kSinkPort = 9000;
constexpr uint16_t kEchoPort = 9001;
constexpr uint16_t kSocatPort = 9100;

// `sink` reads until EOF, then writes one byte ("all arrived"); `echo` echoes.
class Server {
 public:
  Server(uint16_t port, bool echo) : echo_(echo) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_storage ss;
    socklen_t len = tu::ToSockaddr(kLoopback, port, &ss);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd_, 1024) != 0) {
      std::perror("server");
      std::exit(1);
    }
    thread_ = std::thread([this] {
      while (!stop_) {
        int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) continue;
        workers_.emplace_back([this, c] {
          int one = 1;
          ::setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          std::vector<char> buf(1 << 18);
          for (;;) {
            ssize_t n = ::read(c, buf.data(), buf.size());
            if (n <= 0) break;
            if (echo_ && ::write(c, buf.data(), static_cast<size_t>(n)) != n) break;
          }
          if (!echo_) (void)!::write(c, "k", 1);
          ::close(c);
        });
      }
    });
  }
  ~Server() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    for (auto& t : workers_) t.join();
    ::close(fd_);
  }

 private:
  int fd_;
  bool echo_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<std::thread> workers_;
};

int Dial(const IpAddress& addr, uint16_t port) {
  auto fd = tu::ConnectTo(addr, port, absl::Seconds(10));
  if (!fd.ok()) {
    std::fprintf(stderr, "connect: %s\n", std::string(fd.status().message()).c_str());
    return -1;
  }
  int one = 1;
  ::setsockopt(fd->get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd->release();
}

double Throughput(const IpAddress& addr, uint16_t port, size_t bytes) {
  int fd = Dial(addr, port);
  if (fd < 0) return 0;
  std::vector<char> buf(1 << 18, 'x');
  absl::Time start = absl::Now();
  size_t sent = 0;
  while (sent < bytes) {
    ssize_t n = ::write(fd, buf.data(), std::min(buf.size(), bytes - sent));
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  ::shutdown(fd, SHUT_WR);
  char k;
  (void)!::read(fd, &k, 1);
  double secs = absl::ToDoubleSeconds(absl::Now() - start);
  ::close(fd);
  return static_cast<double>(sent) / secs;
}

std::vector<double> RoundTrips(const IpAddress& addr, uint16_t port, int count) {
  std::vector<double> rtts;
  int fd = Dial(addr, port);
  if (fd < 0) return rtts;
  for (int i = 0; i < count; ++i) {
    char c = 'p';
    absl::Time t0 = absl::Now();
    if (::write(fd, &c, 1) != 1 || ::read(fd, &c, 1) != 1) break;
    rtts.push_back(absl::ToDoubleMicroseconds(absl::Now() - t0));
  }
  ::close(fd);
  std::sort(rtts.begin(), rtts.end());
  return rtts;
}

double Percentile(const std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// One request to the API, as any client sends it; the answer's body.
std::string Api(uint16_t port, const std::string& method, const std::string& path,
                const std::string& body) {
  auto fd = tu::ConnectTo(kLoopback, port, absl::Seconds(5));
  if (!fd.ok()) return "";
  std::string req =
      absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: x\r\nContent-Length: ", body.size(),
                   "\r\nConnection: close\r\n\r\n", body);
  if (!tu::WriteAll(fd->get(), req, absl::Seconds(5)).ok()) return "";
  auto r = tu::ReadAll(fd->get(), absl::Seconds(5));
  if (!r.ok()) return "";
  size_t at = r->find("\r\n\r\n");
  return at == std::string::npos ? "" : r->substr(at + 4);
}

// The port of "listen":"127.0.0.1:NNNN" in a proxy's JSON.
uint16_t ListenPort(const std::string& json) {
  size_t at = json.find("\"listen\":\"");
  if (at == std::string::npos) return 0;
  size_t end = json.find('"', at + 10);
  std::string listen = json.substr(at + 10, end - at - 10);
  uint32_t p = 0;
  (void)absl::SimpleAtoi(listen.substr(listen.rfind(':') + 1), &p);
  return static_cast<uint16_t>(p);
}

struct Running {
  std::unique_ptr<Service> service;
  std::thread loop;
  ~Running() {
    if (service) {
      service->Stop();
      loop.join();
    }
  }
};

// wrench with --map 10.89.0.2:80 -> target, and the API; through the API, a TUN proxy
// on 10.89.0.3:80 and a loopback proxy, both to the same target.
struct Wrench {
  std::unique_ptr<Running> run;
  uint16_t api = 0, lo_port = 0;
};

Wrench Start(int mtu, uint16_t target) {
  ServiceOptions o;
  o.tun_name = "wrapib0";
  o.mtu = mtu;
  o.api_address = ":0";
  o.maps.push_back(*ParseMapping(absl::StrCat("10.89.0.2:80=127.0.0.1:", target)));
  o.log_line = [](const std::string&) {};
  auto s = Service::Start(o);
  if (!s.ok()) {
    std::fprintf(stderr, "wrench: %s\n", std::string(s.status().message()).c_str());
    std::exit(1);
  }
  Wrench w;
  w.run = std::make_unique<Running>();
  w.run->service = std::move(*s);
  w.run->loop = std::thread([p = w.run.get()] { p->service->Run(); });
  w.api = w.run->service->api_port();
  std::string up = absl::StrCat("127.0.0.1:", target);
  Api(w.api, "POST", "/proxies",
      absl::StrCat(R"({"name":"tun","listen":"10.89.0.3:80","upstream":")", up, "\"}"));
  w.lo_port = ListenPort(
      Api(w.api, "POST", "/proxies",
          absl::StrCat(R"({"name":"lo","listen":"127.0.0.1:0","upstream":")", up, "\"}")));
  return w;
}

void ZeroLatencyToxics(const Wrench& w) {
  for (const char* p : {"tun", "lo"}) {
    for (const char* stream : {"upstream", "downstream"}) {
      Api(w.api, "POST", absl::StrCat("/proxies/", p, "/toxics"),
          absl::StrCat(R"({"type":"latency","stream":")", stream,
                       R"(","attributes":{"latency":0}})"));
    }
  }
}

pid_t StartSocat(uint16_t listen, uint16_t target) {
  pid_t pid = ::fork();
  if (pid == 0) {
    std::string l = absl::StrCat("TCP-LISTEN:", listen, ",bind=127.0.0.1,reuseaddr,fork");
    std::string t = absl::StrCat("TCP:127.0.0.1:", target);
    ::execlp("socat", "socat", l.c_str(), t.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 100; ++i) {
    if (tu::ConnectTo(kLoopback, listen, absl::Seconds(1)).ok()) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return pid;
}

int Main() {
  if (auto st = tu::EnterFreshNetworkNamespace(); !st.ok()) {
    std::fprintf(stderr, "api_proxy_bench needs root: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  ::signal(SIGPIPE, SIG_IGN);
  Server sink(kSinkPort, false), echo(kEchoPort, true);
  const size_t kBulk = 256u << 20;
  const bool have_socat = std::system("command -v socat >/dev/null 2>&1") == 0;

  std::printf("== bulk throughput, %zu MiB client -> server, one connection (MB/s)\n", kBulk >> 20);
  std::printf("  direct loopback                 %8.0f\n",
              Throughput(kLoopback, kSinkPort, kBulk) / 1e6);
  if (have_socat) {
    pid_t p = StartSocat(kSocatPort, kSinkPort);
    std::printf("  socat                           %8.0f\n",
                Throughput(kLoopback, kSocatPort, kBulk) / 1e6);
    ::kill(p, SIGTERM);
    ::waitpid(p, nullptr, 0);
  }
  for (int mtu : {1500, 65520}) {
    Wrench w = Start(mtu, kSinkPort);
    const size_t n = mtu == 1500 ? kBulk / 4 : kBulk;
    std::printf("  MTU %-5d --map (wrench proxy)   %8.0f\n", mtu,
                Throughput(kMapFront, 80, n) / 1e6);
    std::printf("  MTU %-5d API proxy on the TUN   %8.0f\n", mtu,
                Throughput(kApiFront, 80, n) / 1e6);
    if (mtu == 1500)
      std::printf("  API proxy on loopback           %8.0f\n",
                  Throughput(kLoopback, w.lo_port, kBulk) / 1e6);
    ZeroLatencyToxics(w);
    std::printf("  MTU %-5d API TUN, latency 0     %8.0f\n", mtu,
                Throughput(kApiFront, 80, n) / 1e6);
    if (mtu == 1500) {
      std::printf("  API loopback, latency 0         %8.0f\n",
                  Throughput(kLoopback, w.lo_port, kBulk) / 1e6);
    }
  }

  std::printf("== round trip of one byte, 20000 ping-pongs (us)\n");
  auto direct = RoundTrips(kLoopback, kEchoPort, 20000);
  const double d50 = Percentile(direct, 0.5), d99 = Percentile(direct, 0.99);
  std::printf("  direct loopback                 p50 %6.1f  p99 %6.1f\n", d50, d99);
  auto show = [&](const char* what, const std::vector<double>& v) {
    std::printf("  %-31s p50 %6.1f  p99 %6.1f   added p50 %5.1f  p99 %5.1f\n", what,
                Percentile(v, 0.5), Percentile(v, 0.99), Percentile(v, 0.5) - d50,
                Percentile(v, 0.99) - d99);
  };
  if (have_socat) {
    pid_t p = StartSocat(kSocatPort, kEchoPort);
    show("socat", RoundTrips(kLoopback, kSocatPort, 20000));
    ::kill(p, SIGTERM);
    ::waitpid(p, nullptr, 0);
  }
  Wrench w = Start(1500, kEchoPort);
  show("--map (wrench proxy)", RoundTrips(kMapFront, 80, 20000));
  show("API proxy on the TUN", RoundTrips(kApiFront, 80, 20000));
  show("API proxy on loopback", RoundTrips(kLoopback, w.lo_port, 20000));
  ZeroLatencyToxics(w);
  show("API TUN, latency 0", RoundTrips(kApiFront, 80, 20000));
  show("API loopback, latency 0", RoundTrips(kLoopback, w.lo_port, 20000));
  return 0;
}

}  // namespace
}  // namespace wrench::proxy

int main() { return wrench::proxy::Main(); }
