// Helpers for tests that use the real network (ctest label `netns`): a fresh network
// namespace per test so nothing touches the host's interfaces or routes, and small
// blocking kernel-TCP helpers whose every wait is bounded by a timeout.
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "gtest/gtest.h"
#include "proxy/os/netlink.h"
#include "proxy/os/os_status.h"
#include "proxy/os/tun_device.h"
#include "proxy/os/unique_fd.h"
#include "stack/ip.h"
#include "stack/segment.h"
#include "stack/tcp_state.h"

namespace wrench::proxy::testing {

// Statuses made here from a failed syscall carry its errno (proxy/os/os_status.h), so a
// test can tell ECONNREFUSED from ECONNRESET with ErrnoOf() instead of parsing text.
// errno is copied before the message is built: StrCat may allocate, and an
// allocation may change errno.
using ::wrench::proxy::ErrnoOf;
using ::wrench::proxy::ErrnoStatus;

// ---- the namespace ----

// Moves the calling thread into a new, empty network namespace (unshare(CLONE_NEWNET))
// and brings its loopback up. Threads started afterwards inherit it. ctest runs every
// test case in its own process (gtest_discover_tests), so each test gets its own
// namespace; a binary run by hand just moves to a fresh one per test. Returns
// PermissionDenied without CAP_SYS_ADMIN: use WRENCH_ENTER_NETNS_OR_SKIP() to turn that
// into a visible skip.
inline absl::Status EnterFreshNetworkNamespace() {
  if (::unshare(CLONE_NEWNET) != 0) {
    const int err = errno;
    if (err == EPERM) {
      return absl::PermissionDeniedError(
          "cannot create a network namespace (unshare(CLONE_NEWNET): Operation not "
          "permitted): netns tests need root or CAP_SYS_ADMIN");
    }
    return ErrnoStatus(err, "unshare(CLONE_NEWNET)");
  }
  return BringUpLoopback();
}

// In a TEST body: enter a fresh namespace, skip the test (with the reason) when that
// is not permitted, fail it on any other error.
#define WRENCH_ENTER_NETNS_OR_SKIP()                                              \
  do {                                                                            \
    const ::absl::Status wrench_netns_ =                                          \
        ::wrench::proxy::testing::EnterFreshNetworkNamespace();                   \
    if (::absl::IsPermissionDenied(wrench_netns_)) GTEST_SKIP() << wrench_netns_; \
    ASSERT_TRUE(wrench_netns_.ok()) << wrench_netns_;                             \
  } while (0)

// ---- addresses ----

inline socklen_t ToSockaddr(const stack::IpAddress& addr, uint16_t port, sockaddr_storage* ss) {
  std::memset(ss, 0, sizeof *ss);
  if (addr.is_v6()) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(ss);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    std::memcpy(&s6->sin6_addr, addr.bytes().data(), 16);
    return sizeof *s6;
  }
  auto* s4 = reinterpret_cast<sockaddr_in*>(ss);
  s4->sin_family = AF_INET;
  s4->sin_port = htons(port);
  std::memcpy(&s4->sin_addr, addr.bytes().data(), 4);
  return sizeof *s4;
}

// The local port a socket is bound to (0 on error).
inline uint16_t LocalPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  return ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                  : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

// ---- bounded waits ----

// Upper bound on the iterations of any wait loop below, on top of its deadline, so
// that a socket misbehaving in a way nobody foresaw fails the test instead of hanging.
inline constexpr int kMaxLoopIterations = 1 << 20;

// poll() one fd until `events` or the deadline. OK when ready; DeadlineExceeded.
inline absl::Status WaitFor(int fd, short events, absl::Time deadline, absl::string_view what) {
  for (int i = 0; i < kMaxLoopIterations; ++i) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) break;
    pollfd p{fd, events, 0};
    const int ms = static_cast<int>(std::max<int64_t>(1, absl::ToInt64Milliseconds(left)));
    const int r = ::poll(&p, 1, ms);
    if (r > 0) return absl::OkStatus();
    if (r < 0 && errno != EINTR) {
      const int err = errno;
      return ErrnoStatus(err, absl::StrCat(what, ": poll"));
    }
  }
  return absl::DeadlineExceededError(absl::StrCat(what, ": timed out"));
}

// ---- kernel TCP ----

// A non-blocking connect, bounded by `timeout`; the returned socket is blocking again.
// A refused connection is an error whose ErrnoOf() is ECONNREFUSED; no answer at all is
// DeadlineExceeded.
inline absl::StatusOr<UniqueFd> ConnectTo(const stack::IpAddress& addr, uint16_t port,
                                          absl::Duration timeout) {
  const std::string what = absl::StrCat("connect to ", addr.ToString(), " port ", port);
  UniqueFd fd(::socket(addr.is_v6() ? AF_INET6 : AF_INET,
                       SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    const int err = errno;
    return ErrnoStatus(err, absl::StrCat(what, ": socket"));
  }
  sockaddr_storage ss;
  const socklen_t len = ToSockaddr(addr, port, &ss);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    if (errno != EINPROGRESS) return ErrnoStatus(errno, what);
    if (absl::Status s = WaitFor(fd.get(), POLLOUT, absl::Now() + timeout, what); !s.ok()) {
      return s;
    }
    int err = 0;
    socklen_t elen = sizeof err;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &elen);
    if (err != 0) return ErrnoStatus(err, what);
  }
  ::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK);
  return fd;
}

// Reads until EOF or `max_bytes`, whichever comes first, within `timeout`. A reset is
// an error with ErrnoOf() == ECONNRESET; the deadline is DeadlineExceeded naming how
// many bytes had arrived.
inline absl::StatusOr<std::string> ReadAll(int fd, absl::Duration timeout,
                                           size_t max_bytes = SIZE_MAX) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string out;
  char buf[65536];
  for (int i = 0; i < kMaxLoopIterations && out.size() < max_bytes; ++i) {
    const size_t want = std::min(sizeof buf, max_bytes - out.size());
    const ssize_t n = ::recv(fd, buf, want, MSG_DONTWAIT);
    if (n > 0) {
      out.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) return out;  // EOF
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      const int err = errno;
      return ErrnoStatus(err, absl::StrCat("read after ", out.size(), " bytes"));
    }
    if (absl::Status s = WaitFor(fd, POLLIN, deadline,
                                 absl::StrCat("read after ", out.size(), " bytes"));
        !s.ok()) {
      return s;
    }
  }
  return out;
}

// Writes all of `data` within `timeout`; a reset or broken pipe is an error with its
// errno (MSG_NOSIGNAL: no SIGPIPE kills the test).
inline absl::Status WriteAll(int fd, absl::Span<const uint8_t> data, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  size_t done = 0;
  for (int i = 0; i < kMaxLoopIterations && done < data.size(); ++i) {
    const ssize_t n =
        ::send(fd, data.data() + done, data.size() - done, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      const int err = errno;
      return ErrnoStatus(err, absl::StrCat("write after ", done, " of ", data.size(), " bytes"));
    }
    if (absl::Status s = WaitFor(fd, POLLOUT, deadline,
                                 absl::StrCat("write after ", done, " of ", data.size(), " bytes"));
        !s.ok()) {
      return s;
    }
  }
  if (done < data.size()) return absl::InternalError("write: loop bound reached");
  return absl::OkStatus();
}
inline absl::Status WriteAll(int fd, absl::string_view data, absl::Duration timeout) {
  return WriteAll(fd, absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()),
                                                data.size()),
                  timeout);
}

// The kernel's idea of the socket's state (getsockopt TCP_INFO), in RFC 9293 names.
inline absl::StatusOr<stack::TcpState> GetTcpInfoState(int fd) {
  tcp_info info{};
  socklen_t len = sizeof info;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) {
    return ErrnoStatus(errno, "getsockopt(TCP_INFO)");
  }
  using stack::TcpState;
  // Linux's numbering, include/net/tcp_states.h.
  switch (info.tcpi_state) {
    case 1: return TcpState::kEstablished;
    case 2: return TcpState::kSynSent;
    case 3: return TcpState::kSynReceived;
    case 4: return TcpState::kFinWait1;
    case 5: return TcpState::kFinWait2;
    case 6: return TcpState::kTimeWait;
    case 7: return TcpState::kClosed;
    case 8: return TcpState::kCloseWait;
    case 9: return TcpState::kLastAck;
    case 10: return TcpState::kListen;
    case 11: return TcpState::kClosing;
    case 12: return TcpState::kSynReceived;  // TCP_NEW_SYN_RECV, a request socket
    default:
      return absl::InternalError(absl::StrCat("unknown tcpi_state ", int{info.tcpi_state}));
  }
}

// Polls GetTcpInfoState until it is `want` or `timeout` passes; returns the last state
// seen (a state change is asynchronous to the test, e.g. CLOSE-WAIT after a FIN).
inline absl::StatusOr<stack::TcpState> WaitForTcpState(int fd, stack::TcpState want,
                                                       absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::StatusOr<stack::TcpState> s = GetTcpInfoState(fd);
  for (int i = 0; i < kMaxLoopIterations && s.ok() && *s != want && absl::Now() < deadline;
       ++i) {
    absl::SleepFor(absl::Milliseconds(2));
    s = GetTcpInfoState(fd);
  }
  return s;
}

// A kernel TCP server on its own thread: listens on addr:port (port 0 picks one; see
// port()), accepts, and runs `handler` on a thread per connection; the socket is
// closed when the handler returns. The destructor stops accepting and joins every
// thread, so handlers must bound their own waits (use the helpers above).
class TcpServer {
 public:
  using Handler = std::function<void(int fd)>;

  static absl::StatusOr<std::unique_ptr<TcpServer>> Start(const stack::IpAddress& addr,
                                                          uint16_t port, Handler handler) {
    const std::string what = absl::StrCat("listen on ", addr.ToString(), " port ", port);
    UniqueFd fd(::socket(addr.is_v6() ? AF_INET6 : AF_INET,
                         SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
      const int err = errno;
      return ErrnoStatus(err, absl::StrCat(what, ": socket"));
    }
    const int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_storage ss;
    const socklen_t len = ToSockaddr(addr, port, &ss);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
      const int err = errno;
      return ErrnoStatus(err, absl::StrCat(what, ": bind"));
    }
    if (::listen(fd.get(), 1024) != 0) {
      const int err = errno;
      return ErrnoStatus(err, absl::StrCat(what, ": listen"));
    }
    return std::unique_ptr<TcpServer>(new TcpServer(std::move(fd), std::move(handler)));
  }

  ~TcpServer() {
    stop_ = true;
    if (acceptor_.joinable()) acceptor_.join();
    std::lock_guard<std::mutex> lock(mu_);
    for (std::thread& t : workers_) t.join();
  }

  uint16_t port() const { return port_; }
  int accepted() const { return accepted_; }

 private:
  // The accept loop wakes at least every kTick to see stop_.
  static constexpr int kTickMs = 20;

  TcpServer(UniqueFd fd, Handler handler)
      : listen_fd_(std::move(fd)),
        handler_(std::move(handler)),
        port_(LocalPort(listen_fd_.get())) {
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }

  void AcceptLoop() {
    while (!stop_) {
      pollfd p{listen_fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, kTickMs) <= 0) continue;
      const int c = ::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      ++accepted_;
      std::lock_guard<std::mutex> lock(mu_);
      workers_.emplace_back([this, c] {
        UniqueFd conn(c);
        handler_(conn.get());
      });
    }
  }

  UniqueFd listen_fd_;
  Handler handler_;
  uint16_t port_;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::mutex mu_;
  std::vector<std::thread> workers_;
  std::thread acceptor_;
};

// ---- privilege ----

// Removes `cap` (e.g. CAP_NET_ADMIN) from the calling thread's effective set, so a
// test running as root can see the error an unprivileged user gets. Call it in a child
// (RunInChild): it is not undone.
inline absl::Status DropEffectiveCapability(int cap) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (::syscall(SYS_capget, &hdr, data) != 0) return ErrnoStatus(errno, "capget");
  data[cap / 32].effective &= ~(1u << (cap % 32));
  if (::syscall(SYS_capset, &hdr, data) != 0) return ErrnoStatus(errno, "capset");
  return absl::OkStatus();
}

// Runs `fn` in a forked child and returns the text it returned (at most 4 KiB), or an
// error when the child died without answering within `timeout`. For what must not
// outlive one check, such as a dropped capability. GoogleTest assertions inside `fn`
// are not seen by the parent: return what to check instead.
inline absl::StatusOr<std::string> RunInChild(const std::function<std::string()>& fn,
                                              absl::Duration timeout = absl::Seconds(10)) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return ErrnoStatus(errno, "pipe");
  UniqueFd rd(p[0]), wr(p[1]);
  const pid_t pid = ::fork();
  if (pid < 0) return ErrnoStatus(errno, "fork");
  if (pid == 0) {
    rd.reset();
    const std::string out = fn();
    const ssize_t ignored = ::write(wr.get(), out.data(), std::min<size_t>(out.size(), 4096));
    (void)ignored;
    ::_exit(0);
  }
  wr.reset();
  absl::StatusOr<std::string> out = std::string();
  const absl::Time deadline = absl::Now() + timeout;
  for (int i = 0; i < kMaxLoopIterations; ++i) {
    if (absl::Status s = WaitFor(rd.get(), POLLIN, deadline, "waiting for the child"); !s.ok()) {
      out = s;
      break;
    }
    char buf[4096];
    const ssize_t n = ::read(rd.get(), buf, sizeof buf);
    if (n == 0) break;
    if (n > 0) {
      out->append(buf, static_cast<size_t>(n));
      continue;
    }
    if (errno == EINTR) continue;
    out = ErrnoStatus(errno, "read from child");
    break;
  }
  int status = 0;
  if (!out.ok()) ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  if (out.ok() && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    return absl::InternalError(absl::StrCat("child ended abnormally, status ", status));
  }
  return out;
}

// ---- the TUN, seen from the test ----

// Reads datagrams from the TUN until one parses as a TCP segment for which `match`
// is true, within `timeout`; other traffic (IPv6 router solicitations, MLD reports,
// unrelated segments) is skipped. Returns the matching datagram's bytes.
inline absl::StatusOr<std::vector<uint8_t>> ReadTunSegment(
    const TunDevice& tun, absl::Duration timeout,
    const std::function<bool(const stack::Segment&)>& match) {
  const absl::Time deadline = absl::Now() + timeout;
  std::vector<uint8_t> buf(static_cast<size_t>(tun.mtu()));
  for (int i = 0; i < kMaxLoopIterations; ++i) {
    const ssize_t n = tun.Read(absl::MakeSpan(buf));
    if (n < 0) {
      const int err = errno;
      return ErrnoStatus(err, absl::StrCat("read from ", tun.name()));
    }
    if (n == 0) {
      if (absl::Status s = WaitFor(tun.fd(), POLLIN, deadline,
                                   absl::StrCat("waiting for a segment on ", tun.name()));
          !s.ok()) {
        return s;
      }
      continue;
    }
    absl::StatusOr<stack::Segment> seg =
        stack::ParseSegment(absl::MakeConstSpan(buf.data(), static_cast<size_t>(n)));
    if (seg.ok() && match(*seg)) return std::vector<uint8_t>(buf.begin(), buf.begin() + n);
  }
  return absl::InternalError("ReadTunSegment: loop bound reached");
}

}  // namespace wrench::proxy::testing
