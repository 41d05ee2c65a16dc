// Start-up, the TUN read loop, signals and shutdown of a running wrench (service.h).
#include "proxy/app/service.h"

#include <errno.h>
#include <signal.h>
#include <sys/resource.h>

#include <cstring>
#include <future>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "proxy/api/control_api.h"
#include "proxy/os/dnat.h"
#include "proxy/os/netlink.h"
#include "proxy/os/os_status.h"
#include "proxy/relay/serve_proxy.h"

namespace wrench::proxy {

namespace asio = boost::asio;

namespace {
// The IPv4 netmask of a prefix length, 0 to 32.
uint32_t PrefixMask(int len) { return len == 0 ? 0 : ~uint32_t{0} << (32 - len); }
}  // namespace

absl::StatusOr<std::pair<stack::IpAddress, int>> ParseNet(absl::string_view text) {
  size_t slash = text.find('/');
  if (slash == absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat("--net \"", text, "\": expected ADDRESS/PREFIX, e.g. 10.89.0.0/24"));
  }
  auto addr = stack::IpAddress::Parse(text.substr(0, slash));
  int prefix = 0;
  if (!addr || addr->is_v6()) {
    return absl::InvalidArgumentError(absl::StrCat("--net \"", text, "\": \"", text.substr(0, slash),
                                                   "\" is not an IPv4 address (the TUN subnet is IPv4)"));
  }
  if (!absl::SimpleAtoi(text.substr(slash + 1), &prefix) || prefix < 8 || prefix > 30) {
    return absl::InvalidArgumentError(
        absl::StrCat("--net \"", text, "\": the prefix length must be 8 to 30"));
  }
  const uint32_t mask = PrefixMask(prefix);
  if ((addr->v4_host_order() & ~mask) != 0) {
    // 10.89.0.0/8 would route all of 10.0.0.0/8 into the TUN: say so rather than guess.
    return absl::InvalidArgumentError(absl::StrCat("--net ", text, " has host bits set; did you mean ",
                                                   stack::IpAddress::V4(addr->v4_host_order() & mask).ToString(),
                                                   "/", prefix, "?"));
  }
  return std::make_pair(*addr, prefix);
}

namespace {
bool Overlaps(uint32_t a, int a_len, uint32_t b, int b_len) {
  const uint32_t mask = PrefixMask(std::min(a_len, b_len));
  return (a & mask) == (b & mask);
}
}  // namespace

absl::Status CheckNetIsFree(const stack::IpAddress& net, int prefix_len) {
  const std::string text = absl::StrCat(net.ToString(), "/", prefix_len);
  auto routes = ListIpv4Routes();
  if (!routes.ok()) return routes.status();
  for (const Ipv4Prefix& r : *routes) {
    // The default route covers everything; a more specific one is what --net adds.
    if (r.prefix_len == 0) continue;
    if (Overlaps(r.addr.v4_host_order(), r.prefix_len, net.v4_host_order(), prefix_len)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--net ", text, " overlaps the route ", r.addr.ToString(), "/", r.prefix_len,
          r.ifname.empty() ? "" : absl::StrCat(" dev ", r.ifname),
          " (another wrench, or a network of this host); choose another --net, e.g. --net 10.90.0.0/24"));
    }
  }
  auto addresses = ListIpv4Addresses();
  if (!addresses.ok()) return addresses.status();
  for (const Ipv4Prefix& a : *addresses) {
    if (Overlaps(a.addr.v4_host_order(), a.prefix_len, net.v4_host_order(), prefix_len)) {
      return absl::FailedPreconditionError(absl::StrCat("--net ", text, " overlaps the address ", a.addr.ToString(),
                                                        "/", a.prefix_len, " of ", a.ifname,
                                                        "; choose another --net, e.g. --net 10.90.0.0/24"));
    }
  }
  return absl::OkStatus();
}

std::string RaiseFileLimit() {
  rlimit lim;
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) {
    return absl::StrCat("cannot read the file descriptor limit: ", std::strerror(errno));
  }
  if (lim.rlim_cur >= lim.rlim_max) return "";
  rlim_t want = lim.rlim_max;
  // An unlimited hard limit still stops at the kernel's fs.nr_open.
  if (want == RLIM_INFINITY) want = 1 << 20;
  const rlim_t before = lim.rlim_cur;
  lim.rlim_cur = want;
  if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) {
    return absl::StrCat("cannot raise the file descriptor limit from ", before, " to ", want, ": ",
                        std::strerror(errno), "; each connection needs one or two");
  }
  return "";
}

stack::IpAddress KernelAddress(const stack::IpAddress& net, int prefix_len) {
  uint32_t mask = PrefixMask(prefix_len);
  return stack::IpAddress::V4((net.v4_host_order() & mask) + 1);
}

class Service::TunSink : public DatagramSink {
 public:
  // `tun` null: the service runs without its device (tun_optional), where no mapping
  // exists to write anything.
  TunSink(const TunDevice* tun, asio::io_context& io) : tun_(tun), io_(io) {}
  void WriteDatagram(absl::Span<const uint8_t> datagram) override {
    if (tun_ == nullptr || !tun_->offloads().tso4) {
      Write(datagram, stack::VnetHdr{});
      return;
    }
    // With segmentation offload, the datagrams one handler writes in a row merge into
    // super-segments (a burst of one connection's data: one write instead of one per
    // segment); the kernel cuts them back into exactly these datagrams. What is
    // batched is written when the next datagram cannot join, or when the handler
    // that wrote it returns.
    if (!batch_.Append(datagram)) {
      Flush();
      batch_.Append(datagram);
    }
    if (!flush_posted_) {
      flush_posted_ = true;
      asio::post(io_, [this] {
        flush_posted_ = false;
        Flush();
      });
    }
  }
  void Flush() {
    if (batch_.empty()) return;
    stack::VnetHdr hdr;
    const absl::Span<const uint8_t> d = batch_.Finish(&hdr);
    if (hdr.is_gso() && !(d[0] >> 4 == 4 ? tun_->offloads().tso4 : tun_->offloads().tso6)) {
      // An IPv6 batch on a device without TSO6: cut here, written one by one.
      (void)stack::SplitSuperSegment(d, hdr, [&](absl::Span<const uint8_t> wire) {
        Write(wire, stack::VnetHdr{});
      });
    } else {
      Write(d, hdr);
    }
    batch_.Clear();
  }
  uint64_t write_errors_ = 0;

 private:
  // A TUN write hands the datagram to the kernel's input path: it does not block
  // for long and fails only when the kernel drops it (counted, as a lost segment).
  void Write(absl::Span<const uint8_t> d, const stack::VnetHdr& hdr) {
    if (tun_ == nullptr || tun_->Write(d, hdr) < 0) ++write_errors_;
  }

  const TunDevice* tun_;
  asio::io_context& io_;
  stack::GsoBatch batch_;
  bool flush_posted_ = false;
};

namespace {

// A TUN that failed for want of the device node or of CAP_NET_ADMIN, the two things a
// container started without --device /dev/net/tun --cap-add NET_ADMIN lacks.
bool LacksTunPrivilege(const absl::Status& st) {
  switch (ErrnoOf(st)) {
    case ENOENT:
    case ENODEV:
    case ENXIO:
    case EPERM:
    case EACCES:
      return true;
    default:
      return false;
  }
}

}  // namespace

Service::Service(ServiceOptions opts) : opts_(std::move(opts)), engine_(opts_.seed) {}

Service::~Service() {
  // The proxies' destructors detach from the engine; captures close after them.
  serve_.reset();
  proxy_.reset();
  dnat_.reset();
}

absl::StatusOr<std::unique_ptr<Service>> Service::Start(ServiceOptions opts) {
  std::unique_ptr<Service> s(new Service(std::move(opts)));
  ServiceOptions& o = s->opts_;
  if (!o.log_line) o.log_line = [](const std::string&) {};
  // As servers do: the soft limit (often 1024) up to the hard one, since every
  // relayed connection holds a socket. Only wrench's process: exec's COMMAND was
  // forked before this and keeps the limit it was given.
  if (std::string why = RaiseFileLimit(); !why.empty()) o.log_line(absl::StrCat("wrench: ", why));
  for (size_t i = 0; i < o.rules.size(); ++i) {
    const Rule& r = o.rules[i];
    if (auto st = s->CheckRuleCanFire(r, absl::StrCat("rule #", i + 1)); !st.ok()) return st;
    auto id = s->engine_.AddRule(r);
    if (!id.ok()) return id.status();
  }
  stack::IpAddress kernel = KernelAddress(o.net_addr, o.prefix_len);
  uint32_t mask = PrefixMask(o.prefix_len);
  for (const Mapping& m : o.maps) {
    if (m.front_addr.is_v6() || (m.front_addr.v4_host_order() & mask) != o.net_addr.v4_host_order()) {
      return absl::InvalidArgumentError(absl::StrCat("--map ", m.text, ": the front address must be inside --net ",
                                                     o.net_addr.ToString(), "/", o.prefix_len));
    }
    if (m.front_addr == kernel) {
      return absl::InvalidArgumentError(absl::StrCat("--map ", m.text, ": ", kernel.ToString(),
                                                     " is the kernel's own address on the TUN; use another "
                                                     "address of the subnet as the front"));
    }
    if (o.upstream_via == UpstreamVia::kTun && m.upstream_addr != kernel) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--map ", m.text, ": with --upstream-via tun the server must listen on the kernel's TUN address ",
          kernel.ToString()));
    }
  }
  if (o.mtu < 576 || o.mtu > 65520) {
    return absl::InvalidArgumentError(absl::StrCat("--mtu ", o.mtu, ": must be 576 to 65520"));
  }
  // What runs that were killed left on the host (dnat.h): undone before this one
  // changes anything. Without the privilege there is nothing wrench could have left.
  if (auto cleaned = CleanUpAfterDeadRuns(); cleaned.ok()) {
    for (const std::string& line : cleaned->done) o.log_line(absl::StrCat("wrench: cleanup: ", line));
  } else if (!absl::IsPermissionDenied(cleaned.status())) {
    o.log_line(absl::StrCat("wrench: cleanup after earlier runs failed: ", cleaned.status().message()));
  }
  if (o.tun_fd >= 0) {
    // wrench exec: the device lives in the command's namespace, where no connection
    // arriving here can be steered.
    s->dnat_error_ = absl::FailedPreconditionError("the TUN is in the command's network namespace, not wrench's");
    s->tun_.emplace(TunDevice::Adopt(UniqueFd(o.tun_fd), o.tun_name, o.mtu));
    o.tun_fd = -1;  // owned by the device now
  } else {
    // The subnet must be wrench's alone: a route or address already there would be
    // shadowed (or shadow the TUN), and a second wrench on it would get nothing.
    if (auto st = CheckNetIsFree(o.net_addr, o.prefix_len); !st.ok()) return st;
    auto tun = TunDevice::Create(o.tun_name, o.mtu, o.offload);
    if (tun.ok()) {
      s->tun_.emplace(std::move(*tun));
      if (auto st = ConfigureTun(*s->tun_, kernel, o.prefix_len, o.mtu); !st.ok()) return st;
    } else if (o.tun_optional && LacksTunPrivilege(tun.status())) {
      s->dnat_error_ = absl::FailedPreconditionError(absl::StrCat("wrench runs without its TUN device: ",
                                                                  tun.status().message()));
      o.log_line(absl::StrCat("wrench: no TUN device (", tun.status().message(),
                              "): falling back to stream toxics only. Every proxy is a kernel socket and segment "
                              "toxics are refused; give wrench CAP_NET_ADMIN and /dev/net/tun (in a container: "
                              "--cap-add NET_ADMIN --device /dev/net/tun) for segment toxics"));
    } else {
      return tun.status();
    }
  }

  if (!o.pcap_path.empty()) {
    // The proxy runs on a monotonic clock; the capture carries wall-clock dates.
    auto p = PcapWriter::Open(o.pcap_path, absl::Now() - MonotonicNow());
    if (!p.ok()) return p.status();
    s->pcap_.emplace(std::move(*p));
  }
  if (!o.log_path.empty()) {
    auto l = JsonLog::Open(o.log_path, MonotonicNow(),
                           {.wall_time = true, .wall_offset = absl::Now() - MonotonicNow()});
    if (!l.ok()) return l.status();
    s->log_.emplace(std::move(*l));
  }

  ProxyOptions po;
  po.maps = o.maps;
  po.upstream_via = o.upstream_via;
  po.tcp = o.tcp;
  // The MSS the TUN's MTU allows (IPv4 and TCP headers without options).
  po.tcp.mss = static_cast<uint16_t>(std::min(o.mtu - 40, 65495));
  po.transparent = o.transparent;
  po.gateway_addr = kernel;
  if (s->tun_ && o.verbose) {
    o.log_line(absl::StrCat("wrench: TUN ", s->tun_->name(), " offloads: ", s->tun_->offloads().ToString(),
                            o.offload ? "" : " (--offload=false)"));
  }
  s->sink_ = std::make_unique<TunSink>(s->tun_ ? &*s->tun_ : nullptr, s->io_);
  s->proxy_ = std::make_unique<Proxy>(s->io_, *s->sink_, s->engine_, po);
  if (s->pcap_) s->proxy_->set_pcap(&*s->pcap_);
  if (s->log_) s->proxy_->set_log(&*s->log_);
  if (o.verbose) s->proxy_->set_event_log(o.log_line);
  s->proxy_->set_warning_log(o.log_line);
  if (o.serve_port != 0) {
    ServeOptions so;
    so.listen = o.serve_listen;
    so.gateway_addr = kernel;
    so.server_addr = stack::IpAddress::V4(kernel.v4_host_order() + 1);
    so.server_port = o.serve_port;
    so.tcp = po.tcp;
    s->serve_ = std::make_unique<ServeProxy>(s->io_, *s->sink_, s->engine_, so);
    if (s->pcap_) s->serve_->set_pcap(&*s->pcap_);
    if (s->log_) s->serve_->set_log(&*s->log_);
    if (o.verbose) s->serve_->set_event_log(o.log_line);
    if (auto st = s->serve_->Start(); !st.ok()) return st;
  }

  if (!o.api_address.empty()) {
    auto api = ControlApi::Start(s->io_, o.api_address, *s);
    if (!api.ok()) return api.status();
    s->api_ = std::move(*api);
  }

  if (s->tun_) {
    s->tun_stream_ = std::make_unique<asio::posix::stream_descriptor>(s->io_, ::dup(s->tun_->fd()));
    s->read_buf_.resize(65536 + 4);  // a super-segment is at most 64 KiB
    s->ReadTun();
  }
  return s;
}

uint16_t Service::api_port() const { return api_ ? api_->port() : 0; }

bool Service::InTunSubnet(const stack::IpAddress& addr) const {
  uint32_t mask = PrefixMask(opts_.prefix_len);
  return !addr.is_v6() && (addr.v4_host_order() & mask) == opts_.net_addr.v4_host_order();
}

absl::Status Service::AddMapping(Mapping m, absl::string_view what) {
  stack::IpAddress kernel = kernel_address();
  if (!tun_) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, ": wrench runs without its TUN device (no CAP_NET_ADMIN or no /dev/net/tun), so nothing listens in ",
        opts_.net_addr.ToString(), "/", opts_.prefix_len, "; listen on 0.0.0.0:PORT or a host address instead"));
  }
  if (!InTunSubnet(m.front_addr)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": not inside the TUN subnet ", opts_.net_addr.ToString(),
                                                   "/", opts_.prefix_len));
  }
  if (m.front_addr == kernel) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", kernel.ToString(),
                                                   " is the kernel's own address on the TUN; use another "
                                                   "address of the subnet"));
  }
  if (opts_.upstream_via == UpstreamVia::kTun && m.upstream_addr != kernel) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": with --upstream-via tun the server must listen on the kernel's TUN address ", kernel.ToString()));
  }
  return proxy_->AddMapping(std::move(m));
}

absl::StatusOr<Dnat*> Service::dnat() {
  if (dnat_) return dnat_.get();
  if (!dnat_error_.ok()) return dnat_error_;
  if (stopped_) return absl::FailedPreconditionError("wrench is shutting down");
  auto d = Dnat::Open(opts_.tun_name);
  if (!d.ok()) {
    dnat_error_ = d.status();
    opts_.log_line(absl::StrCat("wrench: no DNAT into the TUN (", d.status().message(),
                                "): proxies listening on a host address or 0.0.0.0 use kernel sockets, "
                                "with stream toxics only"));
    return dnat_error_;
  }
  dnat_ = std::move(*d);
  opts_.log_line(absl::StrCat("wrench: nftables table ", dnat_->table(), " DNATs proxies' listen addresses to ",
                              DnatFront().ToString()));
  return dnat_.get();
}

namespace {

// What a leg of a run is to the rules.
enum class LegKind {
  kSegments,  // wrench's own TCP endpoint: every action, on real segments
  kSocket,    // a kernel socket: delay and rst, on its events
  kNone,      // no rule sees it
};

// The flags of the socket events offered at a socket leg's hooks (README, "Which
// rules act on which leg").
constexpr uint8_t kToServerEvents[] = {stack::kSyn, stack::kPsh | stack::kAck, stack::kFin | stack::kAck};
constexpr uint8_t kFromServerEvents[] = {stack::kSyn | stack::kAck, stack::kRst | stack::kAck,
                                         stack::kPsh | stack::kAck, stack::kFin | stack::kAck};

bool SocketEventMatches(const Rule& r, Hook h) {
  const ActionKind k = KindOf(r.action);
  if (k != ActionKind::kDelay && k != ActionKind::kRst) return false;
  absl::Span<const uint8_t> events =
      h == Hook::kToServer ? absl::MakeConstSpan(kToServerEvents) : absl::MakeConstSpan(kFromServerEvents);
  for (uint8_t f : events) {
    if (r.flags_exact && r.flags_exact->bits() != f) continue;
    if (r.flags_has && (r.flags_has->bits() & f) != r.flags_has->bits()) continue;
    return true;
  }
  return false;
}

}  // namespace

absl::Status Service::CheckRuleCanFire(const Rule& rule, absl::string_view what) const {
  // exec --serve: the client side is an accepted kernel socket no rule sees; the
  // server leg is wrench's endpoint over the TUN.
  const bool serve = opts_.serve_port != 0;
  const LegKind client = serve ? LegKind::kNone : LegKind::kSegments;
  const LegKind server = serve || (opts_.upstream_via == UpstreamVia::kTun && !opts_.transparent)
                             ? LegKind::kSegments
                             : LegKind::kSocket;
  for (int i = 0; i < kHookCount; ++i) {
    const Hook h = static_cast<Hook>(i);
    if (!rule.hooks.has(h)) continue;
    const LegKind leg = (h == Hook::kFromClient || h == Hook::kToClient) ? client : server;
    if (leg == LegKind::kSegments || (leg == LegKind::kSocket && SocketEventMatches(rule, h))) {
      return absl::OkStatus();
    }
  }
  const std::string run = serve               ? "under wrench exec --serve"
                          : opts_.transparent ? "under wrench exec"
                                              : "with --upstream-via socket";
  const std::string legs =
      serve ? "the client side is a kernel socket no rule sees, and to-server and from-server take every action"
            : absl::StrCat("the server leg is a kernel socket, where only delay and rst act, on its events (SYN, "
                           "SYN+ACK, RST+ACK, PSH+ACK, FIN+ACK; never a pure ACK), while from-client and to-client "
                           "take every action",
                           opts_.transparent ? "" : "; --upstream-via tun makes the server leg wrench's own too");
  const std::string text = ToString(rule);
  std::string msg = absl::StrCat(what, " \"", text, "\" can never fire: ", run, " ", legs,
                                 " (README, \"Which rules act on which leg\")");
  if (opts_.allow_idle_rules) {
    opts_.log_line(absl::StrCat("wrench: warning: ", msg, "; kept (--allow-idle-rules)"));
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat(msg, ". Name a hook where it acts with on=, or start wrench with --allow-idle-rules to keep it"));
}

std::string Service::TunSubnet() const {
  return absl::StrCat(opts_.net_addr.ToString(), "/", opts_.prefix_len);
}

stack::IpAddress Service::DnatFront() const {
  uint32_t mask = PrefixMask(opts_.prefix_len);
  return stack::IpAddress::V4((opts_.net_addr.v4_host_order() | ~mask) - 1);
}

void Service::ReadTun() {
  tun_stream_->async_wait(asio::posix::stream_descriptor::wait_read, [this](boost::system::error_code ec) {
    if (ec) return;
    // Drain what is queued (bounded), then let the loop run timers and sockets.
    for (int i = 0; i < 256; ++i) {
      stack::VnetHdr hdr;
      ssize_t n = tun_->Read(absl::MakeSpan(read_buf_), &hdr);
      if (n <= 0) break;
      auto datagram = absl::MakeConstSpan(read_buf_.data(), static_cast<size_t>(n));
      auto deliver = [this](absl::Span<const uint8_t> d) {
        if (serve_) {
          serve_->OnDatagram(d);
        } else {
          proxy_->OnDatagram(d);
        }
      };
      if (hdr == stack::VnetHdr{}) {
        deliver(datagram);
      } else if (hdr.is_gso() && !serve_ && !engine_.has_rules() && !pcap_ && !log_) {
        // Nothing would look at the wire segments (no rule, log or capture): the
        // client-leg endpoint takes the super-segment whole and answers it with one ACK.
        proxy_->OnDatagram(datagram, /*checksum_done=*/true);
      } else if (!stack::SplitSuperSegment(datagram, hdr, deliver).ok()) {
        // A super-segment of what is not TCP, or with a partial checksum: as it came
        // (the proxy counts what it cannot parse).
        deliver(datagram);
      }
    }
    if (!stopped_) ReadTun();
  });
}

void Service::Run() { io_.run(); }

void Service::Shutdown() {
  if (stopped_.exchange(true)) return;
  final_report_ = CollectReport(*proxy_, serve_.get(), engine_);
  proxy_->Shutdown();
  if (serve_) serve_->Shutdown();
  sink_->Flush();
  if (tun_stream_) {
    boost::system::error_code ignored;
    tun_stream_->cancel(ignored);
    tun_stream_->close(ignored);
  }
  if (api_) api_->Stop();
  dnat_.reset();
  if (signals_) signals_->cancel();
  if (pcap_) (void)pcap_->Flush();
  if (log_) (void)log_->Flush();
  opts_.log_line(absl::StrCat("wrench: ", serve_ ? serve_->Summary() : proxy_->Summary()));
  io_.stop();
}

void Service::Stop() {
  asio::post(io_, [this] { Shutdown(); });
}

void Service::RunOnLoop(std::function<void()> f) {
  std::promise<void> done;
  asio::post(io_, [&] {
    f();
    done.set_value();
  });
  done.get_future().wait();
}

void Service::HandleSignals() {
  signals_ = std::make_unique<asio::signal_set>(io_, SIGINT, SIGTERM, SIGUSR1);
  signals_->async_wait([this](boost::system::error_code ec, int sig) { OnSignal(ec, sig); });
}

void Service::OnSignal(boost::system::error_code ec, int sig) {
  if (ec) return;
  if (sig == SIGUSR1) {
    opts_.log_line(absl::StrCat("wrench: ", proxy_->Summary()));
    signals_->async_wait([this](boost::system::error_code e, int s) { OnSignal(e, s); });
    return;
  }
  opts_.log_line(absl::StrCat("wrench: ", strsignal(sig), ", shutting down"));
  Shutdown();
}

}  // namespace wrench::proxy
