// `wrench scenario check` (scenario_check.h).
#include "proxy/cli/scenario_check.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "proxy/app/service.h"
#include "proxy/app/summary.h"
#include "proxy/os/netlink.h"
#include "proxy/os/unique_fd.h"

namespace wrench::proxy {

namespace {

constexpr const char* kFront = "10.89.0.2";
constexpr uint16_t kFrontPort = 80;

// ---- the header ----

absl::Status BadCheck(const Scenario& s, int line, const std::string& why) {
  return absl::InvalidArgumentError(absl::StrCat("scenario ", s.name, ", line ", line, ": ", why));
}

// ---- the built-in server and client: kernel sockets, every wait bounded ----

void SetTimeouts(int fd, double seconds) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(seconds);
  tv.tv_usec = static_cast<suseconds_t>((seconds - static_cast<double>(tv.tv_sec)) * 1e6);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

bool SendAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

class CheckServer {
 public:
  CheckServer(CheckServerMode mode, size_t response, double idle_s = 1)
      : mode_(mode), response_(response), idle_s_(idle_s) {}
  ~CheckServer() {
    stop_ = true;
    if (acceptor_.joinable()) acceptor_.join();
    std::lock_guard<std::mutex> lock(mu_);
    for (std::thread& t : workers_) t.join();
  }

  absl::StatusOr<uint16_t> Start() {
    fd_ = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (!fd_ || ::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(fd_.get(), 64) != 0 ||
        ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      return absl::InternalError(absl::StrCat("the check's server: ", std::strerror(errno)));
    }
    acceptor_ = std::thread([this] { Accept(); });
    return ntohs(a.sin_port);
  }
  int accepted() const { return accepted_; }

 private:
  void Accept() {
    while (!stop_) {
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      int c = ::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      ++accepted_;
      std::lock_guard<std::mutex> lock(mu_);
      workers_.emplace_back([this, c] { Handle(UniqueFd(c)); });
    }
  }

  void Handle(UniqueFd fd) {
    // An upload may stall for a while (zero-window-stall: probes back off to seconds).
    SetTimeouts(fd.get(), 60);
    char buf[65536];
    if (mode_ == CheckServerMode::kKeepAlive) {
      // Request after request until the connection has been idle for idle_s_ (the
      // receive timeout), then close: no hint of that timeout is given to the client.
      for (int request = 0; request < 1000; ++request) {
        bool got = false;
        for (int i = 0; i < (1 << 20); ++i) {
          ssize_t n = ::recv(fd.get(), buf, 1, 0);
          if (n <= 0) return;
          if (buf[0] == '\n') {
            got = true;
            break;
          }
        }
        if (!got || !SendAll(fd.get(), std::string(response_, 'r'))) return;
        SetTimeouts(fd.get(), idle_s_);
      }
      return;
    }
    // The request: up to its '\n', or to end-of-file.
    for (int i = 0; i < (1 << 24); ++i) {
      ssize_t n = ::recv(fd.get(), buf, mode_ == CheckServerMode::kReadEof ? sizeof buf : 1, 0);
      if (n <= 0 || (mode_ != CheckServerMode::kReadEof && buf[0] == '\n')) break;
    }
    SetTimeouts(fd.get(), 30);
    (void)SendAll(fd.get(), std::string(response_, 'r'));
    if (mode_ == CheckServerMode::kWaitEof) {
      SetTimeouts(fd.get(), 10);
      for (int i = 0; i < (1 << 20); ++i) {
        if (::recv(fd.get(), buf, sizeof buf, 0) <= 0) break;
      }
    }
  }

  CheckServerMode mode_;
  size_t response_;
  double idle_s_;
  UniqueFd fd_;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::mutex mu_;
  std::vector<std::thread> workers_;
  std::thread acceptor_;
};

std::string TcpStateOf(int fd) {
  tcp_info info{};
  socklen_t len = sizeof info;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return "?";
  static constexpr const char* kNames[] = {"?",          "ESTABLISHED", "SYN-SENT",  "SYN-RECEIVED",
                                           "FIN-WAIT-1", "FIN-WAIT-2",  "TIME-WAIT", "CLOSED",
                                           "CLOSE-WAIT", "LAST-ACK",    "LISTEN",    "CLOSING"};
  return info.tcpi_state < 12 ? kNames[info.tcpi_state] : "?";
}

struct ClientReport {
  bool connected = false;
  double connect_s = 0, upload_s = 0;
  size_t bytes = 0;
  bool eof = false;
  std::optional<double> eof_after_data_s;
  std::string error = "none";
  std::string state_at_data, state, state_later;
  UniqueFd kept;  // close-wait: the leaked socket, closed after the run
};

std::string ErrnoName(int e) {
  switch (e) {
    case ECONNRESET: return "ECONNRESET";
    case ECONNREFUSED: return "ECONNREFUSED";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EPIPE: return "EPIPE";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ENETUNREACH: return "ENETUNREACH";
    case EAGAIN: return "timeout";  // SO_RCVTIMEO / SO_SNDTIMEO
    default: return absl::StrCat("errno ", e);
  }
}

ClientReport RunClient(const ScenarioCheck& c) {
  using Clock = std::chrono::steady_clock;
  auto since = [](Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  };
  ClientReport r;
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(kFrontPort);
  ::inet_pton(AF_INET, kFront, &a.sin_addr);
  auto t0 = Clock::now();
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS) {
    r.error = ErrnoName(errno);
    return r;
  }
  pollfd p{fd.get(), POLLOUT, 0};
  if (::poll(&p, 1, 10'000) <= 0) {
    r.error = "timeout";
    return r;
  }
  int err = 0;
  socklen_t elen = sizeof err;
  ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &elen);
  if (err != 0) {
    r.error = ErrnoName(err);
    return r;
  }
  r.connected = true;
  r.connect_s = since(t0);
  ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK);
  SetTimeouts(fd.get(), c.read_timeout_s);
  auto t_up = Clock::now();
  if (!SendAll(fd.get(), std::string(c.upload, 'x') + "GET\n")) {
    r.error = ErrnoName(errno);
  }
  r.upload_s = since(t_up);
  bool closes_first =
      c.client == CheckClientMode::kCloseFirst || c.client == CheckClientMode::kSimClose;
  if (c.client == CheckClientMode::kHalfClose || c.client == CheckClientMode::kFinWait2) {
    ::shutdown(fd.get(), SHUT_WR);
  }
  std::optional<Clock::time_point> t_data;
  char buf[65536];
  const bool keepalive = c.client == CheckClientMode::kKeepAlive;
  bool reused = false;
  for (int i = 0; i < (1 << 24) && r.error == "none"; ++i) {
    if (r.bytes == c.response && closes_first) break;
    if (keepalive && r.bytes == c.response && !reused) {
      // The connection goes back to the pool and is taken again for a second request.
      absl::SleepFor(absl::Seconds(c.reuse_after_s));
      reused = true;
      if (!SendAll(fd.get(), "GET\n")) {
        r.error = ErrnoName(errno);
        break;
      }
      continue;
    }
    if (keepalive && r.bytes == 2 * c.response) break;
    if (r.bytes == c.response && !t_data) {
      r.state_at_data = TcpStateOf(fd.get());
      t_data = Clock::now();
    }
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n > 0) {
      r.bytes += static_cast<size_t>(n);
    } else if (n == 0) {
      r.eof = true;
      break;
    } else if (errno != EINTR) {
      r.error = ErrnoName(errno);
    }
  }
  if (t_data && r.eof) r.eof_after_data_s = since(*t_data);
  r.state = TcpStateOf(fd.get());
  if (c.client == CheckClientMode::kCloseWait) {
    absl::SleepFor(absl::Milliseconds(500));
    r.state_later = TcpStateOf(fd.get());
    r.kept = std::move(fd);
    return r;
  }
  if (c.client == CheckClientMode::kFinWait2) r.state_later = TcpStateOf(fd.get());
  fd.reset();
  if (closes_first) absl::SleepFor(absl::Milliseconds(2500));  // TIME-WAIT re-ACKs, crossing FINs
  return r;
}

ExpectFacts CheckFacts(const ClientReport& client, const CheckServer& server,
                       const RunReport& run) {
  ExpectFacts wrench = FactsOf(run);
  return [&client, &server, wrench](const Expectation& e) -> absl::StatusOr<ExpectActual> {
    auto number = [](double d, std::string shown = "") {
      ExpectActual a;
      a.number = d;
      a.shown = std::move(shown);
      return a;
    };
    auto word = [](std::string w) {
      ExpectActual a;
      a.words = {std::move(w)};
      return a;
    };
    if (e.subject[0] == "server") return number(server.accepted());
    if (e.subject[0] != "client") return wrench(e);
    const std::string& f = e.subject[1];
    if (!client.connected && f != "error") {
      return absl::FailedPreconditionError(
          absl::StrCat("the client never connected (", client.error, ")"));
    }
    if (f == "connect-s")
      return number(client.connect_s, absl::StrFormat("%.3f s", client.connect_s));
    if (f == "upload-s") return number(client.upload_s, absl::StrFormat("%.3f s", client.upload_s));
    if (f == "bytes") return number(static_cast<double>(client.bytes));
    if (f == "eof") return word(client.eof ? "yes" : "no");
    if (f == "error") return word(client.error);
    if (f == "state") return word(client.state);
    if (f == "state-later") return word(client.state_later.empty() ? "?" : client.state_later);
    if (f == "state-at-data") {
      return word(client.state_at_data.empty() ? "never had the whole response"
                                               : client.state_at_data);
    }
    if (f == "eof-after-data-s") {
      if (!client.eof_after_data_s)
        return absl::NotFoundError("no end-of-file after the whole response");
      return number(*client.eof_after_data_s, absl::StrFormat("%.3f s", *client.eof_after_data_s));
    }
    return absl::UnimplementedError(absl::StrCat("\"", e.text, "\" cannot be checked"));
  };
}

// Into a network namespace of our own (as `wrench exec`'s child does): as root a new
// network namespace, otherwise a user namespace holding one. Before any thread starts.
absl::Status EnterOwnNamespace() {
  uid_t uid = ::geteuid();
  gid_t gid = ::getegid();
  if (uid == 0) {
    if (::unshare(CLONE_NEWNET) != 0) {
      return absl::PermissionDeniedError(
          absl::StrCat("unshare(CLONE_NEWNET): ", std::strerror(errno)));
    }
  } else {
    if (::unshare(CLONE_NEWUSER | CLONE_NEWNET) != 0) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot create a user and network namespace (", std::strerror(errno),
                       "): run as root, or allow unprivileged user namespaces (sysctl "
                       "kernel.unprivileged_userns_clone=1)"));
    }
    std::ofstream("/proc/self/setgroups") << "deny";
    std::ofstream("/proc/self/uid_map") << "0 " << uid << " 1";
    std::ofstream("/proc/self/gid_map") << "0 " << gid << " 1";
  }
  return BringUpLoopback();
}

// One scenario: wrench between the client and the server, then the verdicts.
bool CheckOne(const Scenario& s, const ScenarioCheck& check, int index) {
  auto rules = ScenarioRules(s.name);
  auto fail = [&](const std::string& why) {
    std::printf("%s: FAIL (%s)\n", s.name, why.c_str());
    std::fflush(stdout);
    return false;
  };
  if (!rules.ok()) return fail(std::string(rules.status().message()));
  CheckServer server(check.server, check.response, check.server_idle_s);
  auto port = server.Start();
  if (!port.ok()) return fail(std::string(port.status().message()));
  ServiceOptions o;
  auto m = ParseMapping(absl::StrCat(kFront, ":", kFrontPort, "=127.0.0.1:", *port));
  if (!m.ok()) return fail(std::string(m.status().message()));
  o.maps.push_back(*m);
  o.rules = std::move(*rules);
  o.tun_name = absl::StrCat("wrchk", index);
  o.tcp.msl = absl::Seconds(1);
  if (std::getenv("WRENCH_CHECK_VERBOSE")) {
    o.verbose = true;
    o.log_line = [](const std::string& l) { std::fprintf(stderr, "%s\n", l.c_str()); };
  }
  auto service = Service::Start(o);
  if (!service.ok()) return fail(std::string(service.status().message()));
  Service& svc = **service;
  std::thread loop([&] { svc.Run(); });
  ClientReport client = RunClient(check);
  // The teardown finishes on the wire (TIME-WAIT excepted), at most 3 s.
  for (int i = 0; i < 150; ++i) {
    bool done = true;
    svc.RunOnLoop([&] {
      for (const ConnectionInfo& c : svc.proxy().Connections()) {
        for (const std::string& st : {c.client_leg_state, c.server_leg_state}) {
          if (st != "CLOSED" && st != "TIME-WAIT" && st != "socket closed" &&
              st != "socket closed both ways") {
            done = false;
          }
        }
      }
    });
    if (done || client.kept) break;  // a leak never finishes: that is the point
    absl::SleepFor(absl::Milliseconds(20));
  }
  svc.Stop();
  loop.join();
  const RunReport* report = svc.final_report();
  if (!report) return fail("wrench left no report");
  std::vector<ExpectResult> results =
      EvaluateAll(check.expectations, CheckFacts(client, server, *report));
  bool pass = true;
  for (const ExpectResult& r : results) pass = pass && r.pass;
  std::printf("%s: %s\n", s.name, pass ? "pass" : "FAIL");
  for (const ExpectResult& r : results) std::printf("  %s\n", ToString(r).c_str());
  std::fflush(stdout);
  return pass;
}

}  // namespace

absl::StatusOr<ScenarioCheck> ParseScenarioCheck(const Scenario& s) {
  ScenarioCheck c;
  bool have_check = false;
  int n = 0;
  for (absl::string_view line : absl::StrSplit(s.text, '\n')) {
    ++n;
    if (!absl::ConsumePrefix(&line, "#")) continue;
    line = absl::StripLeadingAsciiWhitespace(line);
    if (absl::ConsumePrefix(&line, "Expect:")) {
      auto e = ParseExpectation(absl::StripAsciiWhitespace(line), ExpectContext::kScenario);
      if (!e.ok()) return BadCheck(s, n, absl::StrCat("# Expect: ", e.status().message()));
      c.expectations.push_back(std::move(*e));
      continue;
    }
    if (!absl::ConsumePrefix(&line, "Check:")) continue;
    have_check = true;
    for (absl::string_view kv : absl::StrSplit(line, ' ', absl::SkipWhitespace())) {
      std::pair<absl::string_view, absl::string_view> p =
          absl::StrSplit(kv, absl::MaxSplits('=', 1));
      auto [key, value] = p;
      if (key == "client") {
        static const std::pair<const char*, CheckClientMode> kModes[] = {
            {"request", CheckClientMode::kRequest},
            {"close-first", CheckClientMode::kCloseFirst},
            {"sim-close", CheckClientMode::kSimClose},
            {"close-wait", CheckClientMode::kCloseWait},
            {"half-close", CheckClientMode::kHalfClose},
            {"fin-wait-2", CheckClientMode::kFinWait2},
            {"keepalive", CheckClientMode::kKeepAlive}};
        bool found = false;
        for (const auto& [name, mode] : kModes) {
          if (value == name) c.client = mode, found = true;
        }
        if (!found) return BadCheck(s, n, absl::StrCat("unknown client mode \"", value, "\""));
      } else if (key == "server") {
        if (value == "close") {
          c.server = CheckServerMode::kClose;
        } else if (value == "wait-eof") {
          c.server = CheckServerMode::kWaitEof;
        } else if (value == "read-eof") {
          c.server = CheckServerMode::kReadEof;
        } else if (value == "keepalive") {
          c.server = CheckServerMode::kKeepAlive;
        } else {
          return BadCheck(s, n, absl::StrCat("unknown server mode \"", value, "\""));
        }
      } else if (key == "response" || key == "upload") {
        if (!absl::SimpleAtoi(value, key == "response" ? &c.response : &c.upload)) {
          return BadCheck(s, n, absl::StrCat(key, "=", value, ": expected a number of bytes"));
        }
      } else if (key == "read-timeout") {
        if (!absl::SimpleAtod(value, &c.read_timeout_s) || c.read_timeout_s <= 0 ||
            c.read_timeout_s > 60) {
          return BadCheck(s, n,
                          absl::StrCat("read-timeout=", value, ": expected seconds, up to 60"));
        }
      } else if (key == "reuse-after" || key == "server-idle") {
        double* out = key == "reuse-after" ? &c.reuse_after_s : &c.server_idle_s;
        if (!absl::SimpleAtod(value, out) || *out <= 0 || *out > 30) {
          return BadCheck(s, n, absl::StrCat(key, "=", value, ": expected seconds, up to 30"));
        }
      } else {
        return BadCheck(
            s, n,
            absl::StrCat("unknown key \"", key, "\" (client, server, response, upload, ",
                         "read-timeout, reuse-after, server-idle)"));
      }
    }
  }
  if (!have_check) return BadCheck(s, n, "no \"# Check:\" line");
  if (c.expectations.empty()) return BadCheck(s, n, "no \"# Expect:\" line");
  return c;
}

int RunScenarioCheck(const std::vector<std::string>& names) {
  std::vector<const Scenario*> chosen;
  for (const Scenario& s : Scenarios()) {
    bool named = names.empty();
    for (const std::string& n : names) named = named || n == s.name;
    if (named) chosen.push_back(&s);
  }
  for (const std::string& n : names) {
    bool found = false;
    for (const Scenario* s : chosen) found = found || n == s->name;
    if (!found) {
      std::fprintf(stderr, "wrench scenario check: no scenario \"%s\" (wrench scenario list)\n",
                   n.c_str());
      return 2;
    }
  }
  std::vector<ScenarioCheck> checks;
  for (const Scenario* s : chosen) {
    auto c = ParseScenarioCheck(*s);
    if (!c.ok()) {
      std::fprintf(stderr, "wrench scenario check: %s\n",
                   std::string(c.status().message()).c_str());
      return 2;
    }
    checks.push_back(std::move(*c));
  }
  if (auto st = EnterOwnNamespace(); !st.ok()) {
    std::fprintf(stderr, "wrench scenario check: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  int failed = 0;
  for (size_t i = 0; i < chosen.size(); ++i) {
    if (!CheckOne(*chosen[i], checks[i], static_cast<int>(i))) ++failed;
  }
  std::printf("%zu scenarios: %zu pass, %d fail\n", chosen.size(), chosen.size() - failed, failed);
  return failed == 0 ? 0 : kExitExpectationFailed;
}

}  // namespace wrench::proxy
