// `wrench exec [OPTIONS] -- COMMAND [ARGS...]`: runs COMMAND in a fresh network
// namespace whose default route is a TUN device served by wrench, which stays in the
// caller's namespace and re-opens every connection from there (transparent). The
// child creates the device inside the new namespace and hands its descriptor to the
// parent over a socketpair; the namespace and the device vanish when COMMAND ends.
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "proxy/app/service.h"
#include "proxy/app/summary.h"
#include "proxy/cli/cli.h"
#include "proxy/cli/commands.h"
#include "proxy/cli/common_flags.h"
#include "proxy/cli/verdict.h"
#include "proxy/os/address.h"
#include "proxy/fault/scenarios.h"
#include "proxy/os/netlink.h"

ABSL_FLAG(std::string, scenario, "", "a scenario of the library (wrench scenario list)");
ABSL_FLAG(int32_t, serve, 0,
          "wrap a server: relay connections to COMMAND's PORT (proxy/relay/serve_proxy.h)");
ABSL_FLAG(std::string, serve_listen, "", "where --serve listens (default 127.0.0.1:PORT)");
ABSL_FLAG(absl::Duration, linger, absl::ZeroDuration(),
          "after COMMAND exits, keep relaying until its connections' teardown is done, at most "
          "this long");

namespace wrench::proxy {

namespace {

constexpr FlagHelp kExecFlags[] = {
    {"scenario", "--scenario=NAME     apply a scenario's rules (wrench scenario list)"},
    {"rule", "--rule=TEXT         a fault rule (repeatable)"},
    {"rules", "--rules=FILE        fault rules, one a line (repeatable)"},
    {"seed", "--seed=N            seed of the random generator (default 1)"},
    {"pcap", "--pcap=FILE         capture both legs (LINKTYPE_RAW)"},
    {"log", "--log=FILE          one JSON object a line per segment"},
    {"api", "--api=ADDR:PORT     HTTP control API"},
    {"tun", "--tun=NAME          TUN device name inside the command's namespace (default wrench0)"},
    {"net",
     "--net=CIDR          the namespace's subnet: wrench is the gateway, its first address\n"
     "                      (default 10.89.0.0/24: the gateway 10.89.0.1 reaches the caller's\n"
     "                      127.0.0.1; the command's address is 10.89.0.2)"},
    {"net6",
     "--net6=CIDR         the namespace's IPv6 prefix and default route: the gateway, its\n"
     "                      first address, reaches the caller's ::1 (default\n"
     "                      fd89:2e6c:4f1a:XXYY::/64, XX.YY the second and third bytes of --net:\n"
     "                      fd89:2e6c:4f1a:5900::1 for 10.89.0.0/24; none: IPv4 only)"},
    {"mtu", "--mtu=N             TUN MTU (default 1500)"},
    {"msl", "--msl=DURATION      maximum segment lifetime of wrench's endpoints (default 30s)"},
    kTcpProfileHelp,
    kTcpCongestionHelp,
    kOffloadHelp,
    {"verbose", "--verbose           a line on stderr for every connection event"},
    kAllowIdleRulesHelp,
    {"serve",
     "--serve=PORT        wrap a server instead: COMMAND listens on PORT (at 10.89.0.2);\n"
     "                      wrench accepts on 127.0.0.1:PORT and opens its own TCP endpoint\n"
     "                      over the TUN to it, so to-server/from-server rules (and state=)\n"
     "                      act on the server's real segments. The client side is a kernel\n"
     "                      socket: from-client/to-client rules never fire. COMMAND's own\n"
     "                      outbound connections are refused (RST) (default: off)"},
    {"serve_listen", "--serve-listen=ADDR:PORT  where --serve listens (default 127.0.0.1:PORT)"},
    {"linger",
     "--linger=DURATION   after COMMAND exits, keep relaying until every connection's teardown\n"
     "                      is done on the wire (both of wrench's legs CLOSED or TIME-WAIT), at\n"
     "                      most DURATION (e.g. 5s), so a delayed FIN or a RST still goes out\n"
     "                      (default 0: stop at once, resetting what is still open)"},
    kVerdictFlags[0],
    kVerdictFlags[1],
    kVerdictFlags[2],
};

// Whether nothing of the connections' teardown is left to go on the wire: every leg
// of ours CLOSED or in TIME-WAIT (which only re-acknowledges), or never opened.
bool TeardownDone(Service& s) {
  if (s.options().serve_port != 0) return true;  // --serve: the clients are the caller's own
  for (const ConnectionInfo& c : s.proxy().Connections()) {
    auto done = [](const std::string& st) {
      return st == "CLOSED" || st == "TIME-WAIT" || st == "SYN-SEEN" || st == "none" ||
             st == "socket closed" || st == "socket closed both ways";
    };
    if (!done(c.client_leg_state) || !done(c.server_leg_state)) return false;
  }
  return true;
}

// Why a run saw no connection, in the words of the usual causes.
std::string NoConnectionWarning(const ServiceOptions& o, stack::IpAddress gateway,
                                std::optional<stack::IpAddress> gateway6) {
  if (o.serve_port != 0) {
    return absl::StrCat(
        "no connection reached ", o.serve_listen.address().to_string(), ":", o.serve_listen.port(),
        " while COMMAND ran, so no rule was tried: the clients must connect there (in the "
        "caller's namespace) while COMMAND serves");
  }
  return absl::StrCat(
      "COMMAND opened no TCP connection through wrench, so no rule was tried. Usually: it dialled "
      "localhost, "
      "127.0.0.1 or ::1, which inside `wrench exec` is the namespace's own loopback (the caller's "
      "127.0.0.1 is ",
      gateway.ToString(),
      gateway6 ? absl::StrCat(", its ::1 is ", gateway6->ToString())
               : std::string("; IPv6 has no route in the namespace (--net6 none)"),
      "); or it resolved a name (DNS is UDP, which is not relayed)");
}
// As shells and sudo report a command that cannot be run.
constexpr int kExitNotExecutable = 126;
constexpr int kExitNotFound = 127;

// Messages from the child: "ok" with the TUN descriptor attached, or an error text.
// One buffer and room for one descriptor (SCM_RIGHTS), as sendmsg and recvmsg take them.
struct FdMessage {
  FdMessage(void* data, size_t len) : iov{data, len} {
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
  }
  FdMessage(const FdMessage&) = delete;
  FdMessage& operator=(const FdMessage&) = delete;
  iovec iov;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
};

bool SendFd(int sock, int fd) {
  char ok[] = "ok";
  FdMessage m(ok, 2);
  cmsghdr* c = CMSG_FIRSTHDR(&m.msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  return ::sendmsg(sock, &m.msg, 0) == 2;
}

// Returns the descriptor, or -1 with the child's error text in *error.
int ReceiveFd(int sock, std::string* error) {
  char buf[1024];
  FdMessage m(buf, sizeof buf);
  ssize_t n = ::recvmsg(sock, &m.msg, MSG_CMSG_CLOEXEC);
  if (n <= 0) {
    *error = "the child process ended before setting up its namespace";
    return -1;
  }
  cmsghdr* c = CMSG_FIRSTHDR(&m.msg);
  if (n == 2 && std::memcmp(buf, "ok", 2) == 0 && c && c->cmsg_type == SCM_RIGHTS) {
    int fd;
    std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
    return fd;
  }
  *error = std::string(buf, static_cast<size_t>(n));
  return -1;
}

void WriteFile(const char* path, const std::string& text) {
  std::ofstream f(path);
  f << text;
}

// Init of COMMAND's PID namespace, once COMMAND is started as its only child: hands
// the signals wrench forwards to COMMAND, reaps whatever is reparented to it, and
// ends with COMMAND's status as soon as COMMAND ends. The kernel then kills every
// process left in the namespace (pid_namespaces(7)), so nothing COMMAND started
// outlives the run. A PID 1 ignores signals it has no handler for, which is why the
// forwarding is done here and not left to COMMAND being PID 1.
[[noreturn]] void RunInit(pid_t command, const sigset_t& watched) {
  for (;;) {
    siginfo_t info;
    int sig = ::sigwaitinfo(&watched, &info);
    if (sig == SIGCHLD) {
      int status = 0;
      for (pid_t p; (p = ::waitpid(-1, &status, WNOHANG)) > 0;) {
        if (p == command) _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
      }
    } else if (sig > 0) {
      ::kill(command, sig);
    }
  }
}

// The child, PID 1 of a new PID namespace (and, rootless, the first process of a new
// user namespace): enter a new network namespace, build the TUN, hand it over, wait,
// then start COMMAND and act as its init.
// `uid` and `gid` are wrench's: in a new user namespace, ours are unmapped until
// the maps below are written.
[[noreturn]] void Child(int sock, const ServiceOptions& o, const std::vector<std::string>& command,
                        const sigset_t& old_mask, uid_t uid, gid_t gid) {
  auto fail = [&](const std::string& why) {
    (void)!::send(sock, why.data(), why.size(), 0);
    _exit(1);
  };
  // Never outlive wrench: if it dies, so does this init, and with it every process of
  // the namespace. (Had wrench already died, the socket's EOF below ends us.)
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (uid != 0) {
    // Rootless: the user namespace made with the PID namespace gives us CAP_NET_ADMIN
    // over a network namespace of our own, as rootless container networking does.
    WriteFile("/proc/self/setgroups", "deny");
    WriteFile("/proc/self/uid_map", absl::StrCat("0 ", uid, " 1"));
    WriteFile("/proc/self/gid_map", absl::StrCat("0 ", gid, " 1"));
  }
  if (::unshare(CLONE_NEWNET) != 0)
    fail(absl::StrCat("unshare(CLONE_NEWNET): ", std::strerror(errno)));
  if (auto st = BringUpLoopback(); !st.ok()) fail(std::string(st.message()));
  auto tun = TunDevice::Create(o.tun_name, o.mtu, o.offload);
  if (!tun.ok()) {
    std::string why(tun.status().message());
    if (uid != 0 && ::access("/dev/net/tun", R_OK | W_OK) != 0) {
      why = absl::StrCat(
          "cannot open /dev/net/tun as user ", uid,
          ": rootless `wrench exec` needs the device to be usable by everyone (mode 0666, "
          "as most distributions ship it; here it is not) — or run as root");
    }
    fail(why);
  }
  stack::IpAddress gateway = KernelAddress(o.net_addr, o.prefix_len);
  stack::IpAddress self = stack::IpAddress::V4(gateway.v4_host_order() + 1);
  if (auto st = ConfigureTun(*tun, self, o.prefix_len, o.mtu); !st.ok())
    fail(std::string(st.message()));
  if (auto st = AddDefaultRoute(o.tun_name, false, gateway); !st.ok())
    fail(std::string(st.message()));
  if (o.prefix6_len != 0 && o.mtu >= 1280) {
    // The same for IPv6: the command's address is the prefix's second, its default
    // route goes to the first, wrench's gateway to the caller's ::1. A fresh namespace
    // has IPv6 on unless the host's defaults turn it off; then the command is IPv4 only.
    const stack::IpAddress gateway6 = KernelAddress(o.net6_addr, o.prefix6_len);
    auto b = gateway6.bytes();
    std::array<uint8_t, 16> self6{};
    std::copy(b.begin(), b.end(), self6.begin());
    self6[15] += 1;  // the first address ends in 1: no carry
    WriteFile("/proc/sys/net/ipv6/conf/all/disable_ipv6", "0");
    WriteFile(absl::StrCat("/proc/sys/net/ipv6/conf/", tun->name(), "/disable_ipv6").c_str(), "0");
    if (auto st = ConfigureTun(*tun, stack::IpAddress::V6(self6), o.prefix6_len, o.mtu); !st.ok()) {
      fail(std::string(st.message()));
    }
    if (auto st = AddDefaultRoute(o.tun_name, true, gateway6); !st.ok())
      fail(std::string(st.message()));
  }
  if (!SendFd(sock, tun->fd())) fail("cannot pass the TUN device to wrench");
  char go = 0;
  if (::recv(sock, &go, 1, 0) != 1) _exit(1);  // wrench could not start, or is gone
  ::close(sock);
  // The signals wrench forwards, and SIGCHLD, wait for RunInit (blocked from now on,
  // so none is lost between the fork and the loop).
  sigset_t watched;
  sigemptyset(&watched);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR2, SIGCHLD}) sigaddset(&watched, sig);
  sigprocmask(SIG_BLOCK, &watched, nullptr);
  pid_t pid = ::fork();
  if (pid < 0) _exit(1);
  if (pid == 0) {
    sigprocmask(SIG_SETMASK, &old_mask, nullptr);
    // The device's descriptor is close-on-exec: the command does not hold it.
    std::vector<char*> argv;
    for (const std::string& a : command) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    const int err = errno;
    std::fprintf(stderr, "wrench exec: cannot run %s: %s\n", argv[0], std::strerror(err));
    _exit(err == ENOENT ? kExitNotFound : kExitNotExecutable);
  }
  RunInit(pid, watched);
}

// Finds `name` as execvp would (a name with a slash as it is, else along $PATH), so
// that a command that cannot run is reported before any namespace is made. OK, or
// NotFound (exit 127), or PermissionDenied for a file that is not executable or a
// directory (exit 126).
absl::Status CheckRunnable(const std::string& name) {
  auto check = [](const std::string& path) -> absl::Status {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0)
      return absl::NotFoundError(absl::StrCat(path, ": command not found"));
    if (S_ISDIR(st.st_mode))
      return absl::PermissionDeniedError(absl::StrCat(path, ": is a directory"));
    if (::access(path.c_str(), X_OK) != 0) {
      return absl::PermissionDeniedError(absl::StrCat(path, ": ", std::strerror(errno)));
    }
    return absl::OkStatus();
  };
  if (name.empty()) return absl::NotFoundError("\"\": command not found");
  if (name.find('/') != std::string::npos) return check(name);
  const char* env = std::getenv("PATH");
  const std::string path = env ? env : "/usr/local/bin:/usr/bin:/bin";
  absl::Status first_problem = absl::NotFoundError(absl::StrCat(name, ": command not found"));
  for (absl::string_view dir : absl::StrSplit(path, ':')) {
    absl::Status st = check(absl::StrCat(dir.empty() ? "." : dir, "/", name));
    if (st.ok()) return st;
    // As execvp: a file found but not runnable is the answer if nothing later runs.
    if (absl::IsPermissionDenied(st) && absl::IsNotFound(first_problem)) first_problem = st;
  }
  return first_problem;
}

// --serve and --serve-listen into the options (serve_port stays 0 without --serve).
absl::Status ServeFromFlags(ServiceOptions& o) {
  int32_t port = absl::GetFlag(FLAGS_serve);
  std::string listen = absl::GetFlag(FLAGS_serve_listen);
  if (port == 0 && listen.empty()) return absl::OkStatus();
  if (port <= 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--serve=", port, ": a port from 1 to 65535 is needed"));
  }
  o.serve_port = static_cast<uint16_t>(port);
  boost::asio::ip::address addr = boost::asio::ip::address_v4::loopback();
  uint16_t listen_port = o.serve_port;
  if (!listen.empty()) {
    auto hp = SplitHostPort(listen, "--serve-listen");
    boost::system::error_code ec;
    if (hp.ok()) addr = boost::asio::ip::make_address(hp->host, ec);
    if (!hp.ok() || ec) {
      return absl::InvalidArgumentError(
          absl::StrCat("--serve-listen=", listen, ": expected ADDR:PORT, e.g. 127.0.0.1:8000"));
    }
    listen_port = hp->port;
  }
  o.serve_listen = boost::asio::ip::tcp::endpoint(addr, listen_port);
  return absl::OkStatus();
}

}  // namespace

int RunExec(int argc, char** argv) {
  std::vector<std::string> command = ParseFlags(
      argc, argv,
      "usage: wrench exec [OPTIONS] [--] COMMAND [ARGS...]\n\n"
      "Runs COMMAND in a fresh network namespace whose default route is a TUN device served\n"
      "by wrench. Every TCP connection COMMAND opens is terminated by wrench and re-opened\n"
      "from the caller's namespace to the same destination, with the rules applied. The\n"
      "gateway (the first address of --net, 10.89.0.1 by default) reaches the caller's\n"
      "127.0.0.1. Works as root, and without root where user namespaces are allowed.\n"
      "COMMAND's exit status becomes wrench's. COMMAND runs in a PID namespace of its own:\n"
      "when it ends, or wrench ends in any way (even SIGKILL), every process it started ends\n"
      "too. SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGUSR2 are forwarded to COMMAND. Options end\n"
      "at COMMAND: `wrench exec curl -sS URL` passes -sS to curl (\"--\" works too).",
      kExecFlags,
      {.stop_at_first_argument = true,
       .exit_status =
           "exit status: COMMAND's own (128+N when signal N ended it); 126 COMMAND is not\n"
           "             executable; 127 COMMAND was not found; 1 wrench failed to start (a\n"
           "             privilege, the network); 2 a bad command line"});
  if (command.empty()) {
    std::fprintf(stderr,
                 "wrench exec: no command given (wrench exec [OPTIONS] -- COMMAND [ARGS...])\n");
    return kExitUsage;
  }
  ServiceOptions o;
  if (auto st = ServiceOptionsFromFlags(o); !st.ok()) return ReportError("exec", st);
  if (std::string name = absl::GetFlag(FLAGS_scenario); !name.empty()) {
    auto rules = ScenarioRules(name);
    if (!rules.ok())
      return ReportError("exec", absl::InvalidArgumentError(rules.status().message()));
    o.rules.insert(o.rules.begin(), rules->begin(), rules->end());
  }
  // --serve: not transparent; the Service relays accepted sockets to COMMAND instead.
  if (auto st = ServeFromFlags(o); !st.ok()) return ReportError("exec", st);
  if (auto st = CheckRunnable(command[0]); !st.ok()) {
    std::fprintf(stderr, "wrench exec: %s\n", std::string(st.message()).c_str());
    return absl::IsNotFound(st) ? kExitNotFound : kExitNotExecutable;
  }
  o.transparent = o.serve_port == 0;
  auto verdict = RunVerdict::FromFlags(o.rules.size(), !o.api_address.empty());
  if (!verdict.ok()) return ReportError("exec", verdict.status());
  auto log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  absl::Duration linger = absl::GetFlag(FLAGS_linger);
  if (linger < absl::ZeroDuration()) {
    std::fprintf(stderr, "wrench exec: --linger must not be negative\n");
    return 2;
  }

  int sp[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) != 0) {
    std::perror("wrench exec: socketpair");
    return 1;
  }
  // Signals that arrive before the loop runs are held, then forwarded by it.
  sigset_t forwarded, old;
  sigemptyset(&forwarded);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR2, SIGCHLD}) sigaddset(&forwarded, s);
  sigprocmask(SIG_BLOCK, &forwarded, &old);
  // The child is PID 1 of a new PID namespace (with a new user namespace when not
  // root, which the PID namespace then belongs to): COMMAND and everything it starts
  // end with it, and it ends with wrench, however wrench ends. clone() as fork():
  // wrench has no other thread yet.
  const uid_t uid = ::geteuid();
  const gid_t gid = ::getegid();
  const unsigned long flags = CLONE_NEWPID | (uid == 0 ? 0 : CLONE_NEWUSER);
  pid_t child =
      static_cast<pid_t>(::syscall(SYS_clone, flags | SIGCHLD, nullptr, nullptr, nullptr, nullptr));
  if (child < 0) {
    const int err = errno;
    std::fprintf(stderr, "wrench exec: cannot create a PID namespace for COMMAND (clone: %s): %s\n",
                 std::strerror(err),
                 uid == 0 ? "is wrench in a container without CAP_SYS_ADMIN?"
                                  : "run as root, or allow unprivileged user namespaces "
                                    "(sysctl kernel.unprivileged_userns_clone=1)");
    return 1;
  }
  if (child == 0) {
    ::close(sp[0]);
    Child(sp[1], o, command, old, uid, gid);
  }
  ::close(sp[1]);
  std::string error;
  int fd = ReceiveFd(sp[0], &error);
  auto reap = [&] {
    int status = 0;
    ::waitpid(child, &status, 0);
    return status;
  };
  if (fd < 0) {
    std::fprintf(stderr, "wrench exec: %s\n", error.c_str());
    ::close(sp[0]);
    reap();
    return verdict->Finish(nullptr, RunOutcome("exec", std::nullopt, error), log);
  }
  o.tun_fd = fd;
  auto service = Service::Start(o);
  if (!service.ok()) {
    ::close(sp[0]);  // the child sees EOF and exits
    reap();
    return verdict->NotStarted("exec", service.status(), log);
  }
  Service& s = **service;
  int exit_status = 0;
  // --linger: once COMMAND is gone, poll until the teardown is done or the time is up.
  boost::asio::steady_timer linger_timer(s.io());
  absl::Time linger_until;
  std::function<void()> linger_poll = [&] {
    if (TeardownDone(s) || absl::Now() >= linger_until) {
      if (linger > absl::ZeroDuration() && !TeardownDone(s)) {
        log(absl::StrCat("wrench: --linger=", absl::FormatDuration(linger),
                         ": time is up with a teardown still under way"));
      }
      s.Stop();
      return;
    }
    linger_timer.expires_after(std::chrono::milliseconds(20));
    linger_timer.async_wait([&](boost::system::error_code ec) {
      if (!ec) linger_poll();
    });
  };
  boost::asio::signal_set signals(s.io(), SIGINT, SIGTERM, SIGHUP);
  signals.add(SIGQUIT);
  signals.add(SIGUSR2);
  signals.add(SIGCHLD);
  std::function<void(boost::system::error_code, int)> on_signal = [&](boost::system::error_code ec,
                                                                      int sig) {
    if (ec) return;
    if (sig == SIGCHLD) {
      int status = 0;
      if (::waitpid(child, &status, WNOHANG) == child) {
        exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        linger_until = absl::Now() + linger;
        linger_poll();
        return;
      }
    } else {
      ::kill(child, sig);  // COMMAND decides what a signal means
    }
    signals.async_wait(on_signal);
  };
  signals.async_wait(on_signal);
  sigprocmask(SIG_SETMASK, &old, nullptr);
  for (const auto& r : s.engine().Rules())
    std::fprintf(stderr, "wrench: rule #%d %s\n", r.id, r.text.c_str());
  if (s.api_port()) std::fprintf(stderr, "wrench: API on port %u\n", s.api_port());
  if (o.serve_port) {
    std::fprintf(stderr, "wrench: serving %s:%u -> %s:%u\n",
                 o.serve_listen.address().to_string().c_str(), o.serve_listen.port(),
                 stack::IpAddress::V4(s.kernel_address().v4_host_order() + 1).ToString().c_str(),
                 o.serve_port);
  }
  std::fprintf(stderr, "wrench: ready\n");
  char go = 1;
  if (::send(sp[0], &go, 1, 0) != 1) {
    std::fprintf(stderr, "wrench exec: the child process is gone\n");
  }
  ::close(sp[0]);
  s.Run();
  // The command may have ended while the loop was stopping.
  int status = 0;
  if (::waitpid(child, &status, 0) == child) {
    exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  RunOutcome outcome("exec", exit_status);
  const RunReport* report = s.final_report();
  if (report && report->connections == 0) {
    outcome.warnings.push_back(NoConnectionWarning(o, s.kernel_address(), s.kernel_address6()));
    log(absl::StrCat("wrench: warning: ", outcome.warnings.back()));
  }
  return verdict->Finish(report, std::move(outcome), log);
}

}  // namespace wrench::proxy
