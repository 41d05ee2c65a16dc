// The differential harness: script parser, the two players and the comparison.
#include "tests/tcp_diff.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "proxy/os/netlink.h"
#include "proxy/os/tun_device.h"
#include "proxy/os/unique_fd.h"
#include "stack/segment.h"
#include "stack/tcp_state.h"

namespace wrench::tcpdiff {
namespace {

using stack::IpAddress;
using stack::SeqNum;
using stack::TcpFlags;
using stack::TcpRepr;

const IpAddress kSutAddr = *IpAddress::Parse("10.89.8.1");
const IpAddress kPeerAddr = *IpAddress::Parse("10.89.8.2");
constexpr char kTunName[] = "wrdiff0";
// The endpoint's ISN: fixed, so a run is reproducible. Linux draws its own.
constexpr uint32_t kWrenchIsn = 3'000'000'000u;
// Bound on anything that loops over time.
constexpr int kMaxSteps = 1 << 20;

// ---- parsing ----

absl::Status LineError(int line, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("line ", line, ": ", what));
}

std::optional<TcpFlags> ParseFlagLetters(absl::string_view s) {
  uint8_t bits = 0;
  for (char c : s) {
    switch (c) {
      case 'S': bits |= stack::kSyn; break;
      case 'F': bits |= stack::kFin; break;
      case 'R': bits |= stack::kRst; break;
      case 'P': bits |= stack::kPsh; break;
      case '.': bits |= stack::kAck; break;
      case 'E': bits |= stack::kEce; break;
      case 'W': bits |= stack::kCwr; break;
      case 'U': bits |= stack::kUrg; break;
      default: return std::nullopt;
    }
  }
  return TcpFlags(bits);
}

std::string FlagLetters(TcpFlags f) {
  std::string s;
  if (f.has(stack::kSyn)) s += 'S';
  if (f.has(stack::kFin)) s += 'F';
  if (f.has(stack::kRst)) s += 'R';
  if (f.has(stack::kPsh)) s += 'P';
  if (f.has(stack::kUrg)) s += 'U';
  if (f.has(stack::kEce)) s += 'E';
  if (f.has(stack::kCwr)) s += 'W';
  if (f.has(stack::kAck)) s += '.';
  return s.empty() ? "none" : s;
}

bool ParseU32(absl::string_view s, uint32_t* v) { return absl::SimpleAtoi(s, v); }

// "seq:end(len)"
bool ParseSeqField(absl::string_view s, SegmentSpec* spec) {
  const size_t colon = s.find(':');
  const size_t paren = s.find('(');
  if (colon == s.npos || paren == s.npos || s.back() != ')') return false;
  uint32_t start, end, len;
  if (!ParseU32(s.substr(0, colon), &start) ||
      !ParseU32(s.substr(colon + 1, paren - colon - 1), &end) ||
      !ParseU32(s.substr(paren + 1, s.size() - paren - 2), &len)) {
    return false;
  }
  if (end - start != len) return false;
  spec->seq = start;
  spec->len = len;
  return true;
}

absl::Status ParseOptions(int line, absl::string_view text, SegmentSpec* spec) {
  spec->options_given = true;
  for (absl::string_view opt : absl::StrSplit(text, ',')) {
    opt = absl::StripAsciiWhitespace(opt);
    std::vector<absl::string_view> w = absl::StrSplit(opt, ' ', absl::SkipEmpty());
    if (w.empty()) continue;
    uint32_t v = 0;
    if (w[0] == "nop" || w[0] == "eol") continue;
    if (w[0] == "sackOK") {
      spec->sack_ok = true;
    } else if (w[0] == "mss" && w.size() == 2 && ParseU32(w[1], &v)) {
      spec->mss = static_cast<uint16_t>(v);
    } else if (w[0] == "wscale" && w.size() == 2 && w[1] == "*") {
      spec->wscale_any = true;
    } else if (w[0] == "wscale" && w.size() == 2 && ParseU32(w[1], &v)) {
      spec->wscale = static_cast<uint8_t>(v);
    } else if (w[0] == "TS" && w.size() == 5 && w[1] == "val" && w[3] == "ecr") {
      spec->ts = true;
      if (w[2] == "*") {
        spec->ts_val_any = true;
      } else if (!ParseU32(w[2], &spec->ts_val)) {
        return LineError(line, absl::StrCat("bad TS val in \"", opt, "\""));
      }
      if (w[4] != "*") {
        if (!ParseU32(w[4], &v))
          return LineError(line, absl::StrCat("bad TS ecr in \"", opt, "\""));
        spec->ts_ecr = v;
      }
    } else if (w[0] == "sack" && w.size() >= 2) {
      for (size_t i = 1; i < w.size(); ++i) {
        std::pair<absl::string_view, absl::string_view> lr = absl::StrSplit(w[i], ':');
        uint32_t l, r;
        if (!ParseU32(lr.first, &l) || !ParseU32(lr.second, &r)) {
          return LineError(line, absl::StrCat("bad SACK block \"", w[i], "\""));
        }
        spec->sack.emplace_back(l, r);
      }
    } else {
      return LineError(line, absl::StrCat("unknown option \"", opt, "\""));
    }
  }
  return absl::OkStatus();
}

absl::Status ParseSegmentLine(int line, absl::string_view rest, SegmentSpec* spec) {
  std::string opts;
  if (size_t lt = rest.find('<'); lt != rest.npos) {
    const size_t gt = rest.rfind('>');
    if (gt == rest.npos || gt < lt) return LineError(line, "options: missing '>'");
    opts = std::string(rest.substr(lt + 1, gt - lt - 1));
    rest = rest.substr(0, lt);
  }
  std::vector<absl::string_view> w = absl::StrSplit(rest, ' ', absl::SkipEmpty());
  if (w.size() < 2) return LineError(line, "a segment needs flags and seq:end(len)");
  std::optional<TcpFlags> flags = ParseFlagLetters(w[0]);
  if (!flags) return LineError(line, absl::StrCat("bad flags \"", w[0], "\""));
  spec->flags = *flags;
  if (!ParseSeqField(w[1], spec))
    return LineError(line, absl::StrCat("bad seq field \"", w[1], "\""));
  for (size_t i = 2; i < w.size(); i += 2) {
    uint32_t v;
    if (i + 1 >= w.size() || !ParseU32(w[i + 1], &v)) {
      return LineError(line, absl::StrCat("\"", w[i], "\" needs a number"));
    }
    if (w[i] == "ack") {
      spec->ack = v;
    } else if (w[i] == "win") {
      spec->window = static_cast<uint16_t>(v);
    } else {
      return LineError(line, absl::StrCat("unknown field \"", w[i], "\""));
    }
  }
  if (!opts.empty()) return ParseOptions(line, opts, spec);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Script> ParseScript(absl::string_view name, absl::string_view text) {
  Script s;
  s.name = std::string(name);
  absl::Duration prev = absl::ZeroDuration();
  bool in_header = true;
  int line = 0;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    ++line;
    absl::string_view l = absl::StripAsciiWhitespace(raw);
    if (absl::ConsumePrefix(&l, "#")) {
      if (in_header) absl::StrAppend(&s.description, absl::StripAsciiWhitespace(l), "\n");
      continue;
    }
    in_header = false;
    if (size_t hash = l.find('#'); hash != l.npos)
      l = absl::StripAsciiWhitespace(l.substr(0, hash));
    if (l.empty()) continue;
    std::vector<absl::string_view> w = absl::StrSplit(l, ' ', absl::SkipEmpty());
    if (w[0] == "mode" && w.size() == 2 && (w[1] == "passive" || w[1] == "active")) {
      s.passive = w[1] == "passive";
      continue;
    }
    if (w[0] == "compare" && w.size() == 2 && w[1] == "window") {
      s.compare_window = true;
      continue;
    }
    if (w[0] == "tail" && w.size() == 2) {
      double sec;
      if (!absl::SimpleAtod(w[1], &sec) || sec < 0 || sec > 120) return LineError(line, "bad tail");
      s.tail = absl::Seconds(sec);
      continue;
    }
    Event e;
    e.line = line;
    e.text = std::string(l);
    absl::string_view t = w[0];
    const bool relative = absl::ConsumePrefix(&t, "+");
    double sec;
    if (!absl::SimpleAtod(t, &sec) || sec < 0 || sec > 600) {
      return LineError(line, absl::StrCat("bad time \"", w[0], "\""));
    }
    e.at = (relative ? prev : absl::ZeroDuration()) + absl::Seconds(sec);
    if (e.at < prev) return LineError(line, "time goes backwards");
    prev = e.at;
    if (w.size() < 2) return LineError(line, "nothing after the time");
    absl::string_view rest = l.substr(l.find(w[1], w[0].size()));
    if (w[1] == "<" || w[1] == ">") {
      e.kind = w[1] == "<" ? EventKind::kInbound : EventKind::kExpect;
      absl::Status st = ParseSegmentLine(line, rest.substr(1), &e.seg);
      if (!st.ok()) return st;
      if (e.kind == EventKind::kInbound && e.seg.len > 4 * 1460) {
        return LineError(line, "payload larger than the harness's pattern");
      }
    } else if (w[1] == "write" && w.size() == 3) {
      e.kind = EventKind::kWrite;
      if (!absl::SimpleAtoi(w[2], &e.bytes) || e.bytes > 1'000'000)
        return LineError(line, "bad write size");
    } else if (w[1] == "read" && w.size() == 2) {
      e.kind = EventKind::kRead;
    } else if (w[1] == "close" && w.size() == 2) {
      e.kind = EventKind::kClose;
    } else if (w[1] == "abort" && w.size() == 2) {
      e.kind = EventKind::kAbort;
    } else if (w[1] == "connect" && w.size() == 2) {
      e.kind = EventKind::kConnect;
    } else if (w[1] == "state" && w.size() == 2) {
      e.kind = EventKind::kState;
    } else {
      return LineError(line, absl::StrCat("unknown event \"", rest, "\""));
    }
    s.events.push_back(std::move(e));
  }
  return s;
}

namespace {

// ---- what both players share ----

// The bytes every payload and write is cut from.
const std::vector<uint8_t>& Pattern() {
  static const std::vector<uint8_t> p = [] {
    std::vector<uint8_t> v(1 << 20);
    for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<uint8_t>('a' + i % 26);
    return v;
  }();
  return p;
}

// What the peer knows about the system under test, to translate a script segment.
struct PeerView {
  std::optional<uint32_t> sut_isn;
  uint32_t last_tsval = 0;
};

TcpRepr BuildInbound(const SegmentSpec& spec, const PeerView& v) {
  TcpRepr r;
  r.src_port = kPeerPort;
  r.dst_port = kSutPort;
  r.seq = SeqNum(kPeerIsn + spec.seq);
  r.flags = spec.flags;
  const uint32_t base = v.sut_isn.value_or(0);
  if (spec.ack) r.ack = SeqNum(base + *spec.ack);
  r.window = spec.window.value_or(65535);
  r.options.mss = spec.mss;
  r.options.window_scale = spec.wscale;
  r.options.sack_permitted = spec.sack_ok;
  if (spec.ts) r.options.timestamps = stack::Timestamps{spec.ts_val, v.last_tsval};
  for (size_t i = 0; i < spec.sack.size() && i < stack::TcpOptions::kMaxSackBlocks; ++i) {
    r.options.sack[i] = {SeqNum(base + spec.sack[i].first), SeqNum(base + spec.sack[i].second)};
    r.options.sack_count = static_cast<uint8_t>(i + 1);
  }
  r.payload = absl::MakeConstSpan(Pattern().data() + spec.seq % 26, spec.len);
  return r;
}

// Records a segment the system under test sent, learning its ISN and TSval.
void RecordOut(absl::Duration at, const TcpRepr& r, PeerView* v, Trace* t) {
  if (r.flags.has(stack::kSyn)) v->sut_isn = r.seq.raw();
  if (r.options.timestamps) v->last_tsval = r.options.timestamps->value;
  OutSegment o;
  o.at = at;
  o.flags = r.flags;
  o.seq = r.seq.raw() - v->sut_isn.value_or(0);
  o.len = static_cast<uint32_t>(r.payload.size());
  o.ack = r.flags.has(stack::kAck) ? r.ack.raw() - kPeerIsn : 0;
  o.window = r.window;
  o.mss = r.options.mss;
  o.wscale = r.options.window_scale;
  o.sack_ok = r.options.sack_permitted;
  if (r.options.timestamps) {
    o.ts = true;
    o.ts_ecr = r.options.timestamps->echo;
  }
  for (size_t i = 0; i < r.options.sack_count && i < stack::TcpOptions::kMaxSackBlocks; ++i) {
    o.sack.emplace_back(r.options.sack[i].left.raw() - kPeerIsn,
                        r.options.sack[i].right.raw() - kPeerIsn);
  }
  t->segments.push_back(std::move(o));
}

std::string StateText(stack::TcpState s) { return std::string(stack::StateName(s)); }

}  // namespace

// ---- wrench ----

Trace RunWrench(const Script& s, const stack::TcpConfig& base_cfg) {
  Trace t;
  PeerView view;
  stack::TcpConfig cfg = base_cfg;
  cfg.tuple = {kSutAddr, kSutPort, kPeerAddr, kPeerPort};
  cfg.isn = [](const stack::FourTuple&, stack::Instant) { return kWrenchIsn; };
  stack::TcpEndpoint ep(cfg);
  const stack::Instant t0 = absl::FromUnixSeconds(1000);
  stack::Instant now = t0;
  auto poll = [&] {
    ep.Poll(now, [&](const TcpRepr& r) { RecordOut(now - t0, r, &view, &t); });
  };
  auto advance_to = [&](stack::Instant until) {
    for (int i = 0; i < kMaxSteps; ++i) {
      const stack::Instant d = ep.NextDeadline();
      if (d > until) break;
      now = std::max(now, d);
      ep.OnTick(now);
      poll();
    }
    now = until;
  };
  if (s.passive) {
    if (absl::Status st = ep.Listen(now); !st.ok()) {
      t.error = absl::StrCat("Listen: ", st.ToString());
      return t;
    }
  }
  absl::Duration last = absl::ZeroDuration();
  for (const Event& e : s.events) {
    advance_to(t0 + e.at);
    last = e.at;
    switch (e.kind) {
      case EventKind::kInbound: {
        ep.OnSegment(now, BuildInbound(e.seg, view));
        break;
      }
      case EventKind::kExpect:
        break;
      case EventKind::kConnect:
        if (absl::Status st = ep.Connect(now); !st.ok()) {
          t.app.push_back({e.line, absl::StrCat("connect error ", st.message())});
        }
        break;
      case EventKind::kWrite: {
        absl::StatusOr<size_t> n =
            ep.Send(absl::MakeConstSpan(Pattern().data(), std::min(e.bytes, Pattern().size())));
        t.app.push_back({e.line, n.ok() ? absl::StrCat("write ", *n) : "write error"});
        break;
      }
      case EventKind::kRead: {
        std::array<uint8_t, 65536> buf;
        size_t total = 0;
        for (int i = 0; i < 1000; ++i) {
          const size_t n = ep.Receive(absl::MakeSpan(buf));
          if (n == 0) break;
          total += n;
        }
        std::string r;
        if (total > 0) {
          r = absl::StrCat("read ", total);
        } else if (ep.eof()) {
          r = "read EOF";
        } else if (ep.close_reason() == stack::CloseReason::kReset ||
                   ep.close_reason() == stack::CloseReason::kRefused) {
          r = ep.close_reason() == stack::CloseReason::kReset ? "read error reset"
                                                              : "read error refused";
        } else if (ep.close_reason() == stack::CloseReason::kTimeout) {
          r = "read error timeout";
        } else {
          r = "read nothing";
        }
        t.app.push_back({e.line, r});
        break;
      }
      case EventKind::kClose:
        if (absl::Status st = ep.Close(now); !st.ok()) {
          t.app.push_back({e.line, "close error"});
        }
        break;
      case EventKind::kAbort:
        ep.Abort(now);
        break;
      case EventKind::kState:
        t.app.push_back({e.line, absl::StrCat("state ", StateText(ep.state()))});
        break;
    }
    poll();
  }
  advance_to(t0 + last + s.tail);
  return t;
}

// ---- Linux ----

namespace {

using proxy::UniqueFd;

socklen_t V4Sockaddr(const IpAddress& a, uint16_t port, sockaddr_in* sin) {
  std::memset(sin, 0, sizeof *sin);
  sin->sin_family = AF_INET;
  sin->sin_port = htons(port);
  std::memcpy(&sin->sin_addr, a.bytes().data(), 4);
  return sizeof *sin;
}

std::string ErrnoWord(int err) {
  switch (err) {
    case ECONNRESET: return "reset";
    case ECONNREFUSED: return "refused";
    case ETIMEDOUT: return "timeout";
    case EPIPE: return "broken pipe";
    case ENOTCONN: return "not connected";
    default: return absl::StrCat("errno ", err);
  }
}

class LinuxPlayer {
 public:
  explicit LinuxPlayer(const Script& s) : s_(s) {}

  Trace Run() {
    absl::StatusOr<proxy::TunDevice> tun = proxy::TunDevice::Create(kTunName, 1500);
    if (!tun.ok()) return Fail(absl::StrCat("TUN: ", tun.status().ToString()));
    tun_.emplace(std::move(tun).value());
    if (absl::Status st = proxy::ConfigureTun(*tun_, kSutAddr, 24); !st.ok()) {
      return Fail(absl::StrCat("TUN address: ", st.ToString()));
    }
    if (s_.passive) {
      listen_fd_ = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
      const int one = 1;
      ::setsockopt(listen_fd_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      sockaddr_in sin;
      const socklen_t len = V4Sockaddr(kSutAddr, kSutPort, &sin);
      if (::bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&sin), len) != 0 ||
          ::listen(listen_fd_.get(), 16) != 0) {
        return Fail(absl::StrCat("listen: ", std::strerror(errno)));
      }
    }
    start_ = absl::Now();
    absl::Duration last = absl::ZeroDuration();
    for (const Event& e : s_.events) {
      if (!Watch(e.at)) return std::move(t_);
      last = e.at;
      Play(e);
      if (!t_.error.empty()) return std::move(t_);
    }
    Watch(last + s_.tail);
    return std::move(t_);
  }

 private:
  Trace Fail(std::string why) {
    t_.error = std::move(why);
    return std::move(t_);
  }

  // Reads what the kernel sends until `until` (from the start).
  bool Watch(absl::Duration until) {
    std::vector<uint8_t> buf(2048);
    for (int i = 0; i < kMaxSteps; ++i) {
      for (int k = 0; k < 1000; ++k) {
        const ssize_t n = tun_->Read(absl::MakeSpan(buf));
        if (n < 0) {
          t_.error = absl::StrCat("TUN read: ", std::strerror(errno));
          return false;
        }
        if (n == 0) break;
        absl::StatusOr<stack::Segment> seg =
            stack::ParseSegment(absl::MakeConstSpan(buf.data(), static_cast<size_t>(n)));
        if (!seg.ok() || seg->is_v6() || seg->src() != kSutAddr || seg->dst() != kPeerAddr ||
            seg->tcp.src_port != kSutPort || seg->tcp.dst_port != kPeerPort) {
          continue;
        }
        RecordOut(absl::Now() - start_, seg->tcp, &view_, &t_);
      }
      const absl::Duration left = start_ + until - absl::Now();
      if (left <= absl::ZeroDuration()) return true;
      pollfd p{tun_->fd(), POLLIN, 0};
      // Sub-millisecond waits: poll() takes milliseconds, so spin on the last one.
      const int ms = static_cast<int>(absl::ToInt64Milliseconds(left));
      ::poll(&p, 1, std::max(0, ms > 1 ? ms - 1 : 0));
    }
    t_.error = "watch: loop bound reached";
    return false;
  }

  // The connection's socket; in passive mode accepted on first use. The handshake's
  // last ACK was written into the TUN just before, and on a busy machine the kernel
  // may take a moment to process it: wait up to 50 ms for the accept queue.
  int Conn() {
    if (conn_.valid() || !s_.passive || aborted_) return conn_.get();
    pollfd p{listen_fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, 50) > 0) {
      conn_ = UniqueFd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    }
    return conn_.get();
  }

  void Play(const Event& e) {
    switch (e.kind) {
      case EventKind::kInbound: {
        stack::Segment seg = stack::MakeSegment(kPeerAddr, kSutAddr, BuildInbound(e.seg, view_),
                                                static_cast<uint16_t>(e.line));
        std::vector<uint8_t> out(seg.BufferLen());
        absl::StatusOr<size_t> n = stack::EmitSegment(seg, absl::MakeSpan(out));
        if (!n.ok() || tun_->Write(absl::MakeConstSpan(out.data(), *n)) <= 0) {
          t_.error = absl::StrCat("line ", e.line, ": could not write the segment into the TUN");
        }
        break;
      }
      case EventKind::kExpect:
        break;
      case EventKind::kConnect: {
        conn_ = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
        const int one = 1;
        ::setsockopt(conn_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in local, remote;
        V4Sockaddr(kSutAddr, kSutPort, &local);
        const socklen_t len = V4Sockaddr(kPeerAddr, kPeerPort, &remote);
        if (::bind(conn_.get(), reinterpret_cast<sockaddr*>(&local), len) != 0) {
          t_.error = absl::StrCat("bind: ", std::strerror(errno));
          break;
        }
        if (::connect(conn_.get(), reinterpret_cast<sockaddr*>(&remote), len) != 0 &&
            errno != EINPROGRESS) {
          t_.app.push_back({e.line, absl::StrCat("connect error ", ErrnoWord(errno))});
        }
        break;
      }
      case EventKind::kWrite: {
        const int fd = Conn();
        const ssize_t n = fd < 0 ? -1
                                 : ::send(fd, Pattern().data(), std::min(e.bytes, Pattern().size()),
                                          MSG_DONTWAIT | MSG_NOSIGNAL);
        t_.app.push_back({e.line, n >= 0 ? absl::StrCat("write ", n) : "write error"});
        break;
      }
      case EventKind::kRead: {
        const int fd = Conn();
        if (fd < 0) {
          t_.app.push_back({e.line, "read nothing"});
          break;
        }
        std::array<uint8_t, 65536> buf;
        size_t total = 0;
        std::string end;
        for (int i = 0; i < 1000; ++i) {
          const ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
          if (n > 0) {
            total += static_cast<size_t>(n);
            continue;
          }
          if (n == 0) end = "EOF";
          else if (errno != EAGAIN && errno != EWOULDBLOCK)
            end = absl::StrCat("error ", ErrnoWord(errno));
          break;
        }
        t_.app.push_back({e.line, total > 0
                                      ? absl::StrCat("read ", total)
                                      : absl::StrCat("read ", end.empty() ? "nothing" : end)});
        break;
      }
      case EventKind::kClose:
        if (Conn() < 0 || ::shutdown(Conn(), SHUT_WR) != 0)
          t_.app.push_back({e.line, "close error"});
        break;
      case EventKind::kAbort: {
        if (Conn() < 0) break;
        linger l{1, 0};
        ::setsockopt(Conn(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
        conn_.reset();
        aborted_ = true;
        break;
      }
      case EventKind::kState: {
        stack::TcpState st = stack::TcpState::kClosed;
        if (Conn() >= 0) {
          tcp_info info{};
          socklen_t len = sizeof info;
          if (::getsockopt(Conn(), IPPROTO_TCP, TCP_INFO, &info, &len) == 0) {
            static constexpr std::array<stack::TcpState, 13> kLinux = {
                stack::TcpState::kClosed,      stack::TcpState::kEstablished,
                stack::TcpState::kSynSent,     stack::TcpState::kSynReceived,
                stack::TcpState::kFinWait1,    stack::TcpState::kFinWait2,
                stack::TcpState::kTimeWait,    stack::TcpState::kClosed,
                stack::TcpState::kCloseWait,   stack::TcpState::kLastAck,
                stack::TcpState::kListen,      stack::TcpState::kClosing,
                stack::TcpState::kSynReceived};
            if (info.tcpi_state < kLinux.size()) st = kLinux[info.tcpi_state];
          }
        } else if (s_.passive && !aborted_) {
          st = stack::TcpState::kListen;  // nothing accepted yet
        }
        t_.app.push_back({e.line, absl::StrCat("state ", StateText(st))});
        break;
      }
    }
  }

  const Script& s_;
  Trace t_;
  PeerView view_;
  std::optional<proxy::TunDevice> tun_;
  UniqueFd listen_fd_, conn_;
  bool aborted_ = false;
  absl::Time start_;
};

}  // namespace

Trace RunLinux(const Script& s) { return LinuxPlayer(s).Run(); }

// ---- comparison ----

std::string FormatSegment(const OutSegment& s) {
  std::string out =
      absl::StrCat(FlagLetters(s.flags), " ", s.seq, ":", s.seq + s.len, "(", s.len, ")");
  if (s.flags.has(stack::kAck)) absl::StrAppend(&out, " ack ", s.ack);
  absl::StrAppend(&out, " win ", s.window);
  std::vector<std::string> o;
  if (s.mss) o.push_back(absl::StrCat("mss ", *s.mss));
  if (s.sack_ok) o.push_back("sackOK");
  if (s.ts) o.push_back(absl::StrCat("TS ecr ", s.ts_ecr));
  if (s.wscale) o.push_back(absl::StrCat("wscale ", *s.wscale));
  if (!s.sack.empty()) {
    std::string b = "sack";
    for (const auto& [l, r] : s.sack) absl::StrAppend(&b, " ", l, ":", r);
    o.push_back(b);
  }
  if (!o.empty()) absl::StrAppend(&out, " <", absl::StrJoin(o, ","), ">");
  return out;
}

namespace {

std::string Secs(absl::Duration d) { return absl::StrFormat("%.3f", absl::ToDoubleSeconds(d)); }

bool SameKey(const OutSegment& a, const OutSegment& b) {
  return a.flags.without(stack::kPsh) == b.flags.without(stack::kPsh) && a.seq == b.seq &&
         a.len == b.len && (!a.flags.has(stack::kAck) || a.ack == b.ack);
}

std::string SackText(const std::vector<std::pair<uint32_t, uint32_t>>& v) {
  if (v.empty()) return "none";
  std::string s;
  for (const auto& [l, r] : v) absl::StrAppend(&s, s.empty() ? "" : " ", l, ":", r);
  return s;
}

// Time of the script event or segment before `at` in `segs` (or the script's events),
// whichever is later: what a timer was started from.
absl::Duration Anchor(const Script& s, const std::vector<OutSegment>& segs, size_t index) {
  const absl::Duration at = segs[index].at;
  absl::Duration a = absl::ZeroDuration();
  for (const Event& e : s.events) {
    if (e.kind != EventKind::kExpect && e.at <= at) a = std::max(a, e.at);
  }
  if (index > 0) a = std::max(a, segs[index - 1].at);
  return a;
}

// max(20 % of the time since what started the timer, 20 ms). Linux's timers tick in
// jiffies (4 ms at HZ=250), and on a busy machine the kernel handles a segment written
// into the TUN up to ~13 ms late (its softirq waits for ksoftirqd), so every answer it
// sends is late by as much. $WRENCH_DIFF_MIN_TOLERANCE_MS changes the 20 ms.
absl::Duration Tolerance(absl::Duration gap) {
  static const absl::Duration floor = [] {
    const char* env = std::getenv("WRENCH_DIFF_MIN_TOLERANCE_MS");
    int ms = 20;
    if (env != nullptr && absl::SimpleAtoi(env, &ms) && ms > 0) return absl::Milliseconds(ms);
    return absl::Milliseconds(20);
  }();
  return std::max(floor, gap / 5);
}

void CompareFields(const Script& s, const OutSegment& l, const OutSegment& w, absl::Duration gap,
                   std::vector<Difference>* out) {
  const std::string seg = absl::StrCat(FlagLetters(l.flags.without(stack::kPsh)), " ", l.seq,
                                       ":", l.seq + l.len, "(", l.len, ")");
  const absl::Duration tol = Tolerance(gap);
  if (absl::AbsDuration(l.at - w.at) > tol) {
    out->push_back(
        {"time", absl::StrCat(seg, ": linux at ", Secs(l.at), " s, wrench at ", Secs(w.at),
                              " s (tolerance ",
                              absl::StrFormat("%.0f", absl::ToDoubleMilliseconds(tol)), " ms)")});
  }
  if (l.flags.has(stack::kPsh) != w.flags.has(stack::kPsh)) {
    out->push_back({"psh", absl::StrCat(seg, ": PSH ", l.flags.has(stack::kPsh) ? "set" : "clear",
                                        " on linux, ", w.flags.has(stack::kPsh) ? "set" : "clear",
                                        " on wrench")});
  }
  if (s.compare_window && l.window != w.window) {
    out->push_back(
        {"window", absl::StrCat(seg, ": window linux ", l.window, ", wrench ", w.window)});
  }
  auto opt = [](const auto& o) { return o ? absl::StrCat(*o) : std::string("none"); };
  if (l.mss != w.mss) {
    out->push_back({"mss", absl::StrCat(seg, ": mss linux ", opt(l.mss), ", wrench ", opt(w.mss))});
  }
  if (l.wscale != w.wscale) {
    out->push_back({"wscale", absl::StrCat(seg, ": wscale linux ", opt(l.wscale), ", wrench ",
                                           opt(w.wscale))});
  }
  if (l.sack_ok != w.sack_ok) {
    out->push_back(
        {"sackOK", absl::StrCat(seg, ": sackOK linux ", l.sack_ok, ", wrench ", w.sack_ok)});
  }
  if (l.ts != w.ts) {
    out->push_back({"ts", absl::StrCat(seg, ": timestamps linux ", l.ts ? "present" : "absent",
                                       ", wrench ", w.ts ? "present" : "absent")});
  } else if (l.ts && l.ts_ecr != w.ts_ecr && absl::AbsDuration(l.at - w.at) <= tol) {
    // At the same time but echoing different peer segments: the two were sent in
    // answer to different segments (or TS.Recent was updated differently).
    out->push_back({"ecr", absl::StrCat(seg, ": TS ecr linux ", l.ts_ecr, ", wrench ", w.ts_ecr)});
  }
  if (l.sack != w.sack) {
    out->push_back({"sack", absl::StrCat(seg, ": SACK blocks linux ", SackText(l.sack), ", wrench ",
                                         SackText(w.sack))});
  }
}

// Checks the script's `>` lines against the kernel's segments, in order.
void CheckAssertions(const Script& s, const Trace& linux_trace, std::vector<Difference>* out) {
  size_t next = 0;
  absl::Duration anchor = absl::ZeroDuration();
  for (const Event& e : s.events) {
    if (e.kind != EventKind::kExpect) {
      anchor = e.at;
      continue;
    }
    const SegmentSpec& x = e.seg;
    bool found = false;
    for (size_t i = next; i < linux_trace.segments.size() && !found; ++i) {
      const OutSegment& o = linux_trace.segments[i];
      const bool psh_given = x.flags.has(stack::kPsh);
      const bool flags_ok = psh_given ? o.flags == x.flags
                                      : o.flags.without(stack::kPsh) == x.flags;
      bool ok = flags_ok && o.seq == x.seq && o.len == x.len && (!x.ack || o.ack == *x.ack) &&
                (!x.window || o.window == *x.window);
      if (ok && x.options_given) {
        ok = o.mss == x.mss && (x.wscale_any ? o.wscale.has_value() : o.wscale == x.wscale) &&
             o.sack_ok == x.sack_ok && o.ts == x.ts && (!x.ts_ecr || o.ts_ecr == *x.ts_ecr) &&
             (x.sack.empty() || o.sack == x.sack);
      }
      if (!ok) continue;
      if (absl::AbsDuration(o.at - e.at) > Tolerance(e.at - anchor)) continue;
      found = true;
      next = i + 1;
    }
    if (!found) {
      out->push_back({"assert", absl::StrCat("line ", e.line, ": linux sent nothing matching \"",
                                             e.text, "\"")});
    }
  }
}

}  // namespace

Comparison Compare(const Script& s, const Trace& lt, const Trace& wt) {
  Comparison c;
  std::vector<Difference>& d = c.differences;
  if (!lt.error.empty()) d.push_back({"harness", absl::StrCat("linux side: ", lt.error)});
  if (!wt.error.empty()) d.push_back({"harness", absl::StrCat("wrench side: ", wt.error)});

  // Longest common subsequence of the two segment lists by (flags without PSH, seq,
  // len, ack): the pairs are the "same" segment; the rest was sent by one side only.
  const auto& L = lt.segments;
  const auto& W = wt.segments;
  const size_t n = L.size(), m = W.size();
  std::vector<std::vector<uint16_t>> dp(n + 1, std::vector<uint16_t>(m + 1, 0));
  for (size_t i = n; i-- > 0;) {
    for (size_t j = m; j-- > 0;) {
      dp[i][j] = SameKey(L[i], W[j]) ? dp[i + 1][j + 1] + 1 : std::max(dp[i + 1][j], dp[i][j + 1]);
    }
  }
  struct Row {
    absl::Duration at;
    int order;  // script events before segments at the same time
    std::string text;
  };
  std::vector<Row> rows;
  constexpr int kCol = 58;
  auto pad = [](std::string s, size_t w) {
    if (s.size() < w) s.append(w - s.size(), ' ');
    return s;
  };
  size_t i = 0, j = 0;
  int seq_no = 0;
  while (i < n || j < m) {
    if (i < n && j < m && SameKey(L[i], W[j])) {
      std::vector<Difference> fields;
      CompareFields(s, L[i], W[j], L[i].at - Anchor(s, L, i), &fields);
      std::string mark = fields.empty() ? " " : "~";
      rows.push_back(
          {std::min(L[i].at, W[j].at), 1 + seq_no++,
           absl::StrCat(mark, " ",
                        pad(absl::StrCat(Secs(L[i].at), " > ", FormatSegment(L[i])), kCol), "| ",
                        Secs(W[j].at), " > ", FormatSegment(W[j]))});
      d.insert(d.end(), fields.begin(), fields.end());
      ++i;
      ++j;
    } else if (j >= m || (i < n && dp[i + 1][j] >= dp[i][j + 1])) {
      rows.push_back(
          {L[i].at, 1 + seq_no++,
           absl::StrCat("- ", pad(absl::StrCat(Secs(L[i].at), " > ", FormatSegment(L[i])), kCol),
                        "|")});
      d.push_back({"only-linux",
                   absl::StrCat("linux sent at ", Secs(L[i].at), " s: ", FormatSegment(L[i]))});
      ++i;
    } else {
      rows.push_back(
          {W[j].at, 1 + seq_no++,
           absl::StrCat("+ ", pad("", kCol), "| ", Secs(W[j].at), " > ", FormatSegment(W[j]))});
      d.push_back({"only-wrench",
                   absl::StrCat("wrench sent at ", Secs(W[j].at), " s: ", FormatSegment(W[j]))});
      ++j;
    }
  }
  // Application results, event by event.
  auto app_of = [](const Trace& t, int line) {
    std::vector<std::string> v;
    for (const AppResult& a : t.app) {
      if (a.line == line) v.push_back(a.text);
    }
    return absl::StrJoin(v, "; ");
  };
  for (const Event& e : s.events) {
    if (e.kind == EventKind::kExpect) continue;
    // The line without the time it was written with (the absolute time is in front).
    const absl::string_view what = absl::StripLeadingAsciiWhitespace(
        absl::string_view(e.text).substr(std::min(e.text.size(), e.text.find(' '))));
    std::string text = absl::StrCat(Secs(e.at), " ", what);
    const std::string la = app_of(lt, e.line), wa = app_of(wt, e.line);
    if (!la.empty() || !wa.empty()) {
      absl::StrAppend(&text, "    => linux: ", la.empty() ? "-" : la,
                      ", wrench: ", wa.empty() ? "-" : wa);
      if (la != wa) {
        d.push_back(
            {"app", absl::StrCat("line ", e.line, " (", e.text, "): linux ", la, ", wrench ", wa)});
      }
    }
    rows.push_back({e.at, 0, absl::StrCat(la != wa ? "~ " : "  ", text)});
  }
  std::stable_sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return a.at != b.at ? a.at < b.at : a.order < b.order;
  });
  CheckAssertions(s, lt, &d);

  std::ostringstream r;
  r << "== " << s.name << " (" << (s.passive ? "passive" : "active") << ")\n";
  for (absl::string_view l : absl::StrSplit(s.description, '\n', absl::SkipEmpty()))
    r << "   " << l << "\n";
  r << "  " << pad("  linux (seq rel. to its ISN, ack to the peer's)", kCol + 2) << "| wrench\n";
  for (const Row& row : rows) r << row.text << "\n";
  c.report = r.str();
  return c;
}

const KnownDifference* FindKnown(absl::Span<const KnownDifference> known, absl::string_view script,
                                 const Difference& d) {
  for (const KnownDifference& k : known) {
    if ((absl::string_view(k.script) == "*" || k.script == script) && k.kind == d.kind &&
        absl::StrContains(d.text, k.contains)) {
      return &k;
    }
  }
  return nullptr;
}

}  // namespace wrench::tcpdiff
