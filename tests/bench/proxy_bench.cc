// The proxy's speed and size, measured in one run against the same kernel client
// and server (docs/benchmarks.md "Speed and size"): bulk throughput through wrench at MTU 1500
// and 65520 next to direct loopback and socat; connections per second with a full
// handshake and teardown; added round-trip latency p50/p99; memory per idle
// connection, holding 10,000 connections at once. Runs inside a network namespace
// of its own (needs root); prints figures, asserts nothing.
#include <fcntl.h>
#include <sched.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "proxy/app/service.h"
#include "tests/netns_testing.h"

namespace wrench::proxy {
namespace {

namespace tu = ::wrench::proxy::testing;
using stack::IpAddress;

const IpAddress kFront = IpAddress::V4(0x0a590002);
const IpAddress kLoopback = IpAddress::V4(0x7f000001);
constexpr uint16_t kSinkPort = 9000;   // reads and discards
constexpr uint16_t kEchoPort = 9001;   // echoes
constexpr uint16_t kSocatPort = 9100;  // socat in front of the sink / echo

// A server thread on loopback: `sink` reads and discards until EOF, then writes
// one byte so the client knows everything arrived; `echo` echoes.
class Server {
 public:
  // `source` > 0: instead, writes that many bytes to each connection and closes.
  Server(uint16_t port, bool echo, const IpAddress& bind = kLoopback, size_t source = 0)
      : echo_(echo), source_(source) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_storage ss;
    socklen_t len = tu::ToSockaddr(bind, port, &ss);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd_, 4096) != 0) {
      std::perror("server");
      std::exit(1);
    }
    thread_ = std::thread([this] { Loop(); });
  }
  ~Server() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    // Workers are detached (a connection-rate run starts tens of thousands, more
    // threads than the system holds unjoined); wait, boundedly, for the last ones.
    for (int i = 0; i < 1000 && active_ > 0; ++i) absl::SleepFor(absl::Milliseconds(10));
    ::close(fd_);
  }
  // Holds accepted connections open without a thread each (for the idle test).
  void set_hold(bool hold) { hold_ = hold; }
  void CloseHeld() {
    for (int fd : held_) ::close(fd);
    held_.clear();
  }

 private:
  void Loop() {
    while (!stop_) {
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      if (hold_) {
        held_.push_back(c);
        continue;
      }
      ++active_;
      std::thread([this, c] {
        std::vector<char> buf(1 << 18);
        for (size_t sent = 0; sent < source_;) {
          ssize_t n = ::write(c, buf.data(), std::min(buf.size(), source_ - sent));
          if (n <= 0) break;
          sent += static_cast<size_t>(n);
        }
        for (; source_ == 0;) {
          ssize_t n = ::read(c, buf.data(), buf.size());
          if (n <= 0) break;
          if (echo_ && ::write(c, buf.data(), static_cast<size_t>(n)) != n) break;
        }
        if (!echo_ && source_ == 0) (void)!::write(c, "k", 1);
        ::close(c);
        --active_;
      }).detach();
    }
  }
  int fd_;
  bool echo_;
  size_t source_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> hold_{false};
  std::vector<int> held_;
  std::thread thread_;
  std::atomic<int> active_{0};
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

// Bytes per second of one bulk transfer of `bytes` to the sink at addr:port.
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
  (void)!::read(fd, &k, 1);  // the sink's "everything arrived"
  double secs = absl::ToDoubleSeconds(absl::Now() - start);
  ::close(fd);
  return static_cast<double>(sent) / secs;
}

// Bytes per second of one download of everything a source server at addr:port sends.
double Download(const IpAddress& addr, uint16_t port) {
  int fd = Dial(addr, port);
  if (fd < 0) return 0;
  std::vector<char> buf(1 << 18);
  absl::Time start = absl::Now();
  size_t got = 0;
  for (ssize_t n; (n = ::read(fd, buf.data(), buf.size())) > 0;) got += static_cast<size_t>(n);
  double secs = absl::ToDoubleSeconds(absl::Now() - start);
  ::close(fd);
  return static_cast<double>(got) / secs;
}

// Connections per second: connect, one byte each way, close — for `duration`.
// Connections per second of `clients` threads, each dialling one connection after
// the other: with one client it measures the handshake's latency, with several how
// many connections the path takes at once.
double ConnectionRate(const IpAddress& addr, uint16_t port, absl::Duration duration,
                      int clients = 1) {
  absl::Time end = absl::Now() + duration;
  std::atomic<int> n{0};
  absl::Time start = absl::Now();
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&] {
      while (absl::Now() < end && n < 200000) {
        int fd = Dial(addr, port);
        if (fd < 0) break;
        (void)!::write(fd, "p", 1);
        char c;
        (void)!::read(fd, &c, 1);
        ::close(fd);
        ++n;
      }
    });
  }
  for (auto& t : threads) t.join();
  return n / absl::ToDoubleSeconds(absl::Now() - start);
}

// Round-trip times (µs) of `count` one-byte ping-pongs on one connection.
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

long ResidentKiB() {
  std::ifstream f("/proc/self/statm");
  long pages = 0, resident = 0;
  f >> pages >> resident;
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
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

// Rules every wrench of the run applies (proxy_bench --rule='drop p=0.01 len>0').
std::vector<Rule> bench_rules;

std::unique_ptr<Running> StartWrench(int mtu, uint16_t upstream_port, const std::string& tun,
                                     bool offload = true,
                                     const std::vector<Rule>& rules = bench_rules,
                                     std::vector<std::string> maps = {}) {
  ServiceOptions o;
  o.rules = rules;
  o.tun_name = tun;
  o.mtu = mtu;
  o.offload = offload;
  maps.push_back(absl::StrCat("10.89.0.2:80=127.0.0.1:", upstream_port));
  for (const std::string& text : maps) o.maps.push_back(*ParseMapping(text));
  o.log_line = [](const std::string&) {};
  auto s = Service::Start(o);
  if (!s.ok()) {
    std::fprintf(stderr, "wrench: %s\n", std::string(s.status().message()).c_str());
    std::exit(1);
  }
  auto r = std::make_unique<Running>();
  r->service = std::move(*s);
  r->loop = std::thread([p = r.get()] { p->service->Run(); });
  return r;
}

pid_t StartSocat(uint16_t listen, uint16_t target, const IpAddress& bind = kLoopback) {
  pid_t pid = ::fork();
  if (pid == 0) {
    std::string l =
        absl::StrCat("TCP-LISTEN:", listen, ",bind=", bind.ToString(), ",reuseaddr,fork");
    std::string t = absl::StrCat("TCP:127.0.0.1:", target);
    // socat reports a client that closed while it wrote (the download runs): not ours to show.
    if (int null = ::open("/dev/null", O_WRONLY); null >= 0) ::dup2(null, 2);
    ::execlp("socat", "socat", l.c_str(), t.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  for (int i = 0; i < 100; ++i) {
    if (tu::ConnectTo(bind, listen, absl::Seconds(1)).ok()) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return pid;
}

void StopChild(pid_t pid) {
  ::kill(pid, SIGTERM);
  ::waitpid(pid, nullptr, 0);
}

// A client in a network namespace of its own, joined to the benchmark's by a veth
// (10.77.0.2 there, 10.77.0.1 here) with both ends at one MTU, and routed to the TUN's
// subnet through this namespace, which forwards: a client on another host or
// container, as proxies are used. The namespace lives as long as the object.
class VethClient {
 public:
  static constexpr uint32_t kHere = 0x0a4d0001;  // 10.77.0.1

  explicit VethClient(int mtu) {
    if (FILE* f = std::fopen("/proc/sys/net/ipv4/ip_forward", "w")) {
      std::fputs("1", f);
      std::fclose(f);
    }
    std::thread([&] {
      if (::unshare(CLONE_NEWNET) != 0) return;
      ns_ = ::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
      ok_ = std::system(absl::StrCat("ip link set lo up && ip link add wvc0 mtu ", mtu,
                                     " type veth peer name wvs0 mtu ", mtu, " netns ", ::getpid(),
                                     " && ip addr add 10.77.0.2/24 dev wvc0 && ip link set wvc0 up")
                            .c_str()) == 0;
    }).join();
    ok_ = ok_ && std::system("ip addr add 10.77.0.1/24 dev wvs0 && ip link set wvs0 up") == 0;
    // The route to the TUN's subnet needs the veth up: added once the link is.
    ok_ = ok_ && Run([] { return std::system("ip route add 10.89.0.0/16 via 10.77.0.1") == 0; });
  }
  ~VethClient() {
    (void)!std::system("ip link del wvs0 2>/dev/null");
    if (ns_ >= 0) ::close(ns_);
  }
  bool ok() const { return ok_; }

  // Runs `fn` on a thread in the client's namespace and returns what it returned.
  template <typename F>
  std::invoke_result_t<F> Run(F fn) {
    std::invoke_result_t<F> out{};
    std::thread([&] {
      if (::setns(ns_, CLONE_NEWNET) == 0) out = fn();
    }).join();
    return out;
  }

 private:
  int ns_ = -1;
  bool ok_ = false;
};

// proxy_bench [--rule=RULE]... [bulk|veth|conn|rtt|idle]...: the named parts only
// (default: all), each wrench with the rules given (the veth part sets its own).
int Main(int argc, char** argv) {
  std::vector<std::string> parts;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--rule=", 0) != 0) {
      parts.push_back(arg);
      continue;
    }
    auto rule = ParseRule(arg.substr(7));
    if (!rule.ok()) {
      std::fprintf(stderr, "proxy_bench: %s\n", std::string(rule.status().message()).c_str());
      return 2;
    }
    bench_rules.push_back(*rule);
  }
  auto part = [&](const char* name) {
    return parts.empty() || std::find(parts.begin(), parts.end(), name) != parts.end();
  };
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // each figure as it is measured
  if (auto st = tu::EnterFreshNetworkNamespace(); !st.ok()) {
    std::fprintf(stderr, "proxy_bench needs root (a network namespace of its own): %s\n",
                 std::string(st.message()).c_str());
    return 1;
  }
  // The kernel client leaves a TIME-WAIT socket per connection. For loopback the
  // kernel reuses them (tcp_tw_reuse=2, its default, is loopback only); to the TUN's
  // front address it would not, and by the second run of the connection test connect()
  // spends its time searching the ephemeral range for a free port. Both paths get
  // the same reuse here, in this namespace only.
  if (FILE* f = std::fopen("/proc/sys/net/ipv4/tcp_tw_reuse", "w")) {
    std::fputs("1", f);
    std::fclose(f);
  }
  // Raise the soft limit on file descriptors to the hard one.
  rlimit nofile;
  ::getrlimit(RLIMIT_NOFILE, &nofile);
  nofile.rlim_cur = nofile.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &nofile);
  ::signal(SIGPIPE, SIG_IGN);
  const size_t kBulk = 512u << 20;

  Server sink(kSinkPort, false), echo(kEchoPort, true);
  bool have_socat = std::system("command -v socat >/dev/null 2>&1") == 0;

  if (part("bulk")) {
  std::printf("== bulk throughput, %zu MiB client -> server (one connection)\n", kBulk >> 20);
  double direct = Throughput(kLoopback, kSinkPort, kBulk);
  std::printf("  direct loopback         %8.0f MB/s\n", direct / 1e6);
  double socat = 0;
  if (have_socat) {
    pid_t p = StartSocat(kSocatPort, kSinkPort);
    socat = Throughput(kLoopback, kSocatPort, kBulk);
    ::kill(p, SIGTERM);
    ::waitpid(p, nullptr, 0);
    std::printf("  socat                   %8.0f MB/s\n", socat / 1e6);
  }
  // MTU 1500 with and without TUN offloads (segmentation offload: one read or write
  // per super-segment of up to 64 KiB instead of one per segment).
  for (auto [mtu, offload] : {std::pair{1500, false}, {1500, true}, {65520, true}}) {
    auto w = StartWrench(mtu, kSinkPort, "wrbench0", offload);
    double t = Throughput(kFront, 80, mtu == 1500 ? kBulk / 4 : kBulk);
    std::printf(
        "  wrench, MTU %-5d %-8s %6.0f MB/s  (%.2f of direct%s)\n", mtu,
        offload ? "offload" : "no offl.", t / 1e6, t / direct,
        have_socat ? absl::StrCat(", ", absl::SixDigits(t / socat), " of socat").c_str() : "");
  }

  }

  if (part("veth")) {
    // Toxiproxy's users run the proxy beside their services and connect across a
    // bridge or veth: the client here is in another namespace, its segments cross
    // the veth (GRO/TSO on, as veths have them) before the proxy sees them.
    const IpAddress here = IpAddress::V4(VethClient::kHere);
    const IpAddress front = kFront;
    const size_t kVethBulk = 256u << 20;
    Server sink_any(9003, false, IpAddress::V4(0)),
        source_any(9004, false, IpAddress::V4(0), kVethBulk);
    std::vector<Rule> drop_data = {*ParseRule("drop p=0.01 len>0")};
    for (int mtu : {1500, 9000}) {
      VethClient client(mtu);
      if (!client.ok()) {
        std::printf("== veth at MTU %d: could not make the client's namespace (needs ip)\n", mtu);
        break;
      }
      std::printf("== a client across a veth at MTU %d, %zu MiB each way (one connection)\n", mtu,
                  kVethBulk >> 20);
      auto row = [&](const char* name, const IpAddress& addr, uint16_t up, uint16_t down,
                     double ref_up, double ref_down) {
        const double u = client.Run([&] { return Throughput(addr, up, kVethBulk); });
        const double d = client.Run([&] { return Download(addr, down); });
        std::printf("  %-34s up %6.0f MB/s  down %6.0f MB/s", name, u / 1e6, d / 1e6);
        if (ref_up > 0) std::printf("   (%.2f, %.2f of socat)", u / ref_up, d / ref_down);
        std::printf("\n");
        return std::pair{u, d};
      };
      row("direct", here, 9003, 9004, 0, 0);
      double socat_up = 0, socat_down = 0;
      if (have_socat) {
        pid_t a = StartSocat(9101, 9003, here), b = StartSocat(9102, 9004, here);
        std::tie(socat_up, socat_down) = row("socat", here, 9101, 9102, 0, 0);
        StopChild(a);
        StopChild(b);
      }
      struct Variant {
        const char* name;
        bool offload;
        const std::vector<Rule>* rules;
      };
      const std::vector<Rule> none;
      for (const Variant& v : {Variant{"wrench proxy, no offload", false, &none},
                               Variant{"wrench proxy", true, &none},
                               Variant{"wrench, drop p=0.01 len>0, no offl.", false, &drop_data},
                               Variant{"wrench, drop p=0.01 len>0", true, &drop_data}}) {
        auto w = StartWrench(mtu, 9003, "wrbench0", v.offload, *v.rules,
                             {"10.89.0.2:81=127.0.0.1:9004"});
        row(v.name, front, 80, 81, socat_up, socat_down);
      }
    }
  }

  if (part("conn")) {
  std::printf("== connections per second (connect, 1 byte each way, close), 3 s each\n");
  for (int clients : {1, 4}) {
    double direct_rate = ConnectionRate(kLoopback, kEchoPort, absl::Seconds(3), clients);
    std::printf("  direct loopback, %d client%s  %8.0f /s\n", clients, clients > 1 ? "s" : " ",
                direct_rate);
    auto w = StartWrench(1500, kEchoPort, "wrbench0");
    double r = ConnectionRate(kFront, 80, absl::Seconds(3), clients);
    std::printf("  wrench, %d client%s          %8.0f /s  (%.2f of direct)\n", clients,
                clients > 1 ? "s" : " ", r, r / direct_rate);
    if (std::getenv("WRENCH_BENCH_VERBOSE")) {
      std::string summary;
      w->service->RunOnLoop([&] { summary = w->service->proxy().Summary(); });
      std::printf("    %s\n", summary.c_str());
    }
  }

  }

  if (part("rtt")) {
  std::printf("== round trip of one byte, 20000 ping-pongs\n");
  auto d = RoundTrips(kLoopback, kEchoPort, 20000);
  std::printf("  direct loopback         p50 %6.1f us   p99 %6.1f us\n", Percentile(d, 0.5),
              Percentile(d, 0.99));
  {
    auto w = StartWrench(1500, kEchoPort, "wrbench0");
    auto p = RoundTrips(kFront, 80, 20000);
    std::printf(
        "  wrench                  p50 %6.1f us   p99 %6.1f us   added p50 %.1f us, p99 %.1f us\n",
        Percentile(p, 0.5), Percentile(p, 0.99), Percentile(p, 0.5) - Percentile(d, 0.5),
        Percentile(p, 0.99) - Percentile(d, 0.99));
  }

  }

  if (part("idle")) {
  std::printf("== 10000 idle connections held through wrench\n");
    // File descriptors are capped at 20000 a process here, and every connection
    // costs one in the client, one in wrench (its upstream socket) and one in the
    // server: the server and the clients each run in a child process of their own.
    constexpr int kIdle = 10000;
    constexpr uint16_t kHoldPort = 9002;
    int stop[2], report[2];
    if (::pipe(stop) != 0 || ::pipe(report) != 0) return 1;
    pid_t server = ::fork();
    if (server == 0) {
      ::close(stop[1]);  // or the stop pipe never reads EOF
      int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      int one = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      sockaddr_storage ss;
      socklen_t len = tu::ToSockaddr(kLoopback, kHoldPort, &ss);
      if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || ::listen(fd, 4096) != 0)
        _exit(1);
      ::fcntl(fd, F_SETFL, O_NONBLOCK);
      std::vector<int> held;
      for (;;) {
        pollfd p[2] = {{fd, POLLIN, 0}, {stop[0], POLLIN, 0}};
        ::poll(p, 2, 1000);
        if (p[1].revents) _exit(0);
        for (int c; (c = ::accept(fd, nullptr, nullptr)) >= 0;) held.push_back(c);
      }
    }
    auto w = StartWrench(1500, kHoldPort, "wrbench0");
    absl::SleepFor(absl::Milliseconds(200));
    long before = ResidentKiB();
    pid_t clients = ::fork();
    if (clients == 0) {
      ::close(stop[1]);
      std::vector<int> fds;
      for (int i = 0; i < kIdle; ++i) {
        int fd = Dial(kFront, 80);
        if (fd < 0) break;
        fds.push_back(fd);
      }
      int n = static_cast<int>(fds.size());
      (void)!::write(report[1], &n, sizeof n);
      char c;
      (void)!::read(stop[0], &c, 1);
      _exit(0);
    }
    int held = 0;
    (void)!::read(report[0], &held, sizeof held);
    absl::SleepFor(absl::Milliseconds(500));
    long after = ResidentKiB();
    ProxyStats stats;
    w->service->RunOnLoop([&] { stats = w->service->proxy().stats(); });
    std::printf("  held %d of %d connections, wrench has %lu active\n", held, kIdle,
                static_cast<unsigned long>(stats.active));
    std::printf("  wrench's resident memory %ld KiB -> %ld KiB: %.1f KiB per idle connection\n",
                before, after, held ? static_cast<double>(after - before) / held : 0.0);
    ::close(stop[1]);  // both children see EOF and exit
    ::waitpid(clients, nullptr, 0);
    ::waitpid(server, nullptr, 0);
  }
  return 0;
}

}  // namespace
}  // namespace wrench::proxy

int main(int argc, char** argv) { return wrench::proxy::Main(argc, argv); }
