// Start-up, the TUN read loop, signals and shutdown of a running wrench (service.h).
#include "proxy/app/service.h"

#include <errno.h>
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <cstring>
#include <fstream>
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
// RFC 8200 §5: the kernel disables IPv6 on a link with a smaller MTU.
constexpr int kMinMtuV6 = 1280;
}  // namespace

absl::StatusOr<std::pair<stack::IpAddress, int>> ParseNet(absl::string_view text) {
  size_t slash = text.find('/');
  if (slash == absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--net \"", text, "\": expected ADDRESS/PREFIX, e.g. 10.89.0.0/24"));
  }
  auto addr = stack::IpAddress::Parse(text.substr(0, slash));
  int prefix = 0;
  if (!addr || addr->is_v6()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--net \"", text, "\": \"", text.substr(0, slash),
                     "\" is not an IPv4 address (the TUN subnet is IPv4)"));
  }
  if (!absl::SimpleAtoi(text.substr(slash + 1), &prefix) || prefix < 8 || prefix > 30) {
    return absl::InvalidArgumentError(
        absl::StrCat("--net \"", text, "\": the prefix length must be 8 to 30"));
  }
  const uint32_t mask = PrefixMask(prefix);
  if ((addr->v4_host_order() & ~mask) != 0) {
    // 10.89.0.0/8 would route all of 10.0.0.0/8 into the TUN: say so rather than guess.
    return absl::InvalidArgumentError(absl::StrCat(
        "--net ", text, " has host bits set; did you mean ",
        stack::IpAddress::V4(addr->v4_host_order() & mask).ToString(), "/", prefix, "?"));
  }
  return std::make_pair(*addr, prefix);
}

namespace {
// Whether the first `len` bits of a and b agree (both of one family).
bool SamePrefix(const stack::IpAddress& a, const stack::IpAddress& b, int len) {
  if (a.is_v6() != b.is_v6()) return false;
  auto x = a.bytes(), y = b.bytes();
  for (size_t i = 0; i < x.size() && len > 0; ++i, len -= 8) {
    const uint8_t mask = len >= 8 ? 0xff : static_cast<uint8_t>(0xff << (8 - len));
    if ((x[i] & mask) != (y[i] & mask)) return false;
  }
  return true;
}

// `net` with its bits past `len` all set (or, with set = false, cleared), plus `add`.
stack::IpAddress HostOf(const stack::IpAddress& net, int len, bool set, int add) {
  std::array<uint8_t, 16> b{};
  auto in = net.bytes();
  std::copy(in.begin(), in.end(), b.begin());
  for (size_t i = 0; i < in.size(); ++i) {
    const int keep = std::clamp(len - static_cast<int>(i) * 8, 0, 8);
    const uint8_t host = keep == 8 ? 0 : static_cast<uint8_t>(0xff >> keep);
    b[i] = set ? (b[i] | host) : (b[i] & ~host);
  }
  // add is small (-1 to 2): a carry or borrow through the low bytes.
  for (int i = static_cast<int>(in.size()) - 1, carry = add; i >= 0 && carry != 0; --i) {
    const int v = b[i] + carry;
    b[i] = static_cast<uint8_t>(v & 0xff);
    carry = v >> 8;  // -1 on a borrow, 1 on a carry, else 0
  }
  return net.is_v6() ? stack::IpAddress::V6(b) : stack::IpAddress::V4({b[0], b[1], b[2], b[3]});
}
}  // namespace

absl::Status CheckNetIsFree(const stack::IpAddress& net, int prefix_len) {
  const std::string text = absl::StrCat(net.ToString(), "/", prefix_len);
  const char* flag = net.is_v6() ? "--net6" : "--net";
  const char* other = net.is_v6() ? "--net6 fd89:2e6c:4f1a:5a00::/64" : "--net 10.90.0.0/24";
  auto routes = ListRoutes(net.is_v6());
  if (!routes.ok()) return routes.status();
  for (const IpPrefix& r : *routes) {
    // The default route covers everything; a more specific one is what --net adds.
    if (r.prefix_len == 0) continue;
    if (SamePrefix(r.addr, net, std::min(r.prefix_len, prefix_len))) {
      return absl::FailedPreconditionError(absl::StrCat(
          flag, " ", text, " overlaps the route ", r.addr.ToString(), "/", r.prefix_len,
          r.ifname.empty() ? "" : absl::StrCat(" dev ", r.ifname),
          " (another wrench, or a network of this host); choose another ", flag, ", e.g. ", other));
    }
  }
  auto addresses = ListAddresses(net.is_v6());
  if (!addresses.ok()) return addresses.status();
  for (const IpPrefix& a : *addresses) {
    if (SamePrefix(a.addr, net, std::min(a.prefix_len, prefix_len))) {
      return absl::FailedPreconditionError(absl::StrCat(
          flag, " ", text, " overlaps the address ", a.addr.ToString(), "/", a.prefix_len, " of ",
          a.ifname, "; choose another ", flag, ", e.g. ", other));
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
  return HostOf(net, prefix_len, /*set=*/false, 1);
}

absl::StatusOr<std::pair<stack::IpAddress, int>> ParseNet6(absl::string_view text) {
  size_t slash = text.find('/');
  auto addr = slash == absl::string_view::npos ? std::nullopt
                                               : stack::IpAddress::Parse(text.substr(0, slash));
  if (!addr || !addr->is_v6()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--net6 \"", text,
                     "\": expected IPV6ADDRESS/PREFIX, e.g. fd89:2e6c:4f1a:5900::/64, "
                     "or none"));
  }
  int prefix = 0;
  if (!absl::SimpleAtoi(text.substr(slash + 1), &prefix) || prefix < 16 || prefix > 120) {
    return absl::InvalidArgumentError(
        absl::StrCat("--net6 \"", text, "\": the prefix length must be 16 to 120"));
  }
  if (HostOf(*addr, prefix, /*set=*/false, 0) != *addr) {
    return absl::InvalidArgumentError(
        absl::StrCat("--net6 ", text, " has host bits set; did you mean ",
                     HostOf(*addr, prefix, false, 0).ToString(), "/", prefix, "?"));
  }
  return std::make_pair(*addr, prefix);
}

std::pair<stack::IpAddress, int> DefaultNet6(const stack::IpAddress& net) {
  auto b = net.bytes();
  return {stack::IpAddress::V6(
              {0xfd, 0x89, 0x2e, 0x6c, 0x4f, 0x1a, b[1], b[2], 0, 0, 0, 0, 0, 0, 0, 0}),
          64};
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
  if (o.mtu < 576 || o.mtu > 65520) {
    return absl::InvalidArgumentError(absl::StrCat("--mtu ", o.mtu, ": must be 576 to 65520"));
  }
  if (o.prefix6_len != 0 && o.mtu < kMinMtuV6) {
    const bool v6_front = std::any_of(o.maps.begin(), o.maps.end(),
                                      [](const Mapping& m) { return m.front_addr.is_v6(); });
    if (v6_front) {
      return absl::InvalidArgumentError(
          absl::StrCat("--mtu ", o.mtu, ": IPv6 fronts need an MTU of at least ", kMinMtuV6));
    }
    o.log_line(absl::StrCat("wrench: --mtu ", o.mtu, " is below IPv6's minimum of ", kMinMtuV6,
                            ": the TUN is IPv4 only"));
    o.prefix6_len = 0;
  }
  stack::IpAddress kernel = KernelAddress(o.net_addr, o.prefix_len);
  for (const Mapping& m : o.maps) {
    const bool v6 = m.front_addr.is_v6();
    const stack::IpAddress& net = v6 ? o.net6_addr : o.net_addr;
    const int len = v6 ? o.prefix6_len : o.prefix_len;
    if (len == 0 || !SamePrefix(m.front_addr, net, len)) {
      return absl::InvalidArgumentError(
          len == 0 ? absl::StrCat("--map ", m.text, ": an IPv6 front needs --net6, and it is none")
                   : absl::StrCat("--map ", m.text, ": the front address must be inside ",
                                  v6 ? "--net6 " : "--net ", net.ToString(), "/", len));
    }
    const stack::IpAddress own = KernelAddress(net, len);
    if (m.front_addr == own) {
      return absl::InvalidArgumentError(
          absl::StrCat("--map ", m.text, ": ", own.ToString(),
                       " is the kernel's own address on the TUN; use another "
                       "address of the subnet as the front"));
    }
    if (o.upstream_via == UpstreamVia::kTun && m.upstream_addr != own) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--map ", m.text,
          ": with --upstream-via tun the server must listen on the kernel's TUN address ",
          own.ToString(), " (of the front's IP version)"));
    }
  }
  // What runs that were killed left on the host (dnat.h): undone before this one
  // changes anything. Without the privilege there is nothing wrench could have left.
  if (auto cleaned = CleanUpAfterDeadRuns(); cleaned.ok()) {
    for (const std::string& line : cleaned->done)
      o.log_line(absl::StrCat("wrench: cleanup: ", line));
  } else if (!absl::IsPermissionDenied(cleaned.status())) {
    o.log_line(
        absl::StrCat("wrench: cleanup after earlier runs failed: ", cleaned.status().message()));
  }
  if (o.tun_fd >= 0) {
    // wrench exec: the device lives in the command's namespace, where no connection
    // arriving here can be steered.
    s->dnat_error_ = absl::FailedPreconditionError(
        "the TUN is in the command's network namespace, not wrench's");
    s->tun_.emplace(TunDevice::Adopt(UniqueFd(o.tun_fd), o.tun_name, o.mtu));
    o.tun_fd = -1;  // owned by the device now
  } else {
    // The subnet must be wrench's alone: a route or address already there would be
    // shadowed (or shadow the TUN), and a second wrench on it would get nothing.
    if (auto st = CheckNetIsFree(o.net_addr, o.prefix_len); !st.ok()) return st;
    if (o.prefix6_len != 0) {
      if (auto st = CheckNetIsFree(o.net6_addr, o.prefix6_len); !st.ok()) return st;
    }
    auto tun = TunDevice::Create(o.tun_name, o.mtu, o.offload);
    if (tun.ok()) {
      s->tun_.emplace(std::move(*tun));
      if (auto st = ConfigureTun(*s->tun_, kernel, o.prefix_len, o.mtu); !st.ok()) return st;
      if (auto st = s->ConfigureTun6(); !st.ok()) return st;
    } else if (o.tun_optional && LacksTunPrivilege(tun.status())) {
      s->dnat_error_ = absl::FailedPreconditionError(
          absl::StrCat("wrench runs without its TUN device: ", tun.status().message()));
      o.log_line(absl::StrCat(
          "wrench: no TUN device (", tun.status().message(),
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
  if (o.prefix6_len != 0) po.gateway_addr6 = KernelAddress(o.net6_addr, o.prefix6_len);
  if (s->tun_ && o.verbose) {
    o.log_line(absl::StrCat("wrench: TUN ", s->tun_->name(), " offloads: ",
                            s->tun_->offloads().ToString(), o.offload ? "" : " (--offload=false)"));
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

absl::Status Service::ConfigureTun6() {
  ServiceOptions& o = opts_;
  if (o.prefix6_len == 0) return absl::OkStatus();
  const stack::IpAddress kernel6 = KernelAddress(o.net6_addr, o.prefix6_len);
  absl::Status st = ConfigureTun(*tun_, kernel6, o.prefix6_len, o.mtu);
  if (st.ok()) return st;
  // IPv6 turned off in this namespace (net.ipv6.conf.*.disable_ipv6=1): the kernel
  // refuses the address. Only IPv6 fronts need it.
  const int err = ErrnoOf(st);
  const bool v6_front = std::any_of(o.maps.begin(), o.maps.end(),
                                    [](const Mapping& m) { return m.front_addr.is_v6(); });
  if ((err == EACCES || err == EAFNOSUPPORT || err == EPERM) && !v6_front) {
    o.log_line(absl::StrCat("wrench: no IPv6 on the TUN (", st.message(), "): it is IPv4 only"));
    o.prefix6_len = 0;
    return absl::OkStatus();
  }
  return st;
}

std::optional<stack::IpAddress> Service::kernel_address6() const {
  if (opts_.prefix6_len == 0) return std::nullopt;
  return KernelAddress(opts_.net6_addr, opts_.prefix6_len);
}

bool Service::InTunSubnet(const stack::IpAddress& addr) const {
  if (addr.is_v6())
    return opts_.prefix6_len != 0 && SamePrefix(addr, opts_.net6_addr, opts_.prefix6_len);
  return SamePrefix(addr, opts_.net_addr, opts_.prefix_len);
}

absl::Status Service::AddMapping(Mapping m, absl::string_view what) {
  stack::IpAddress kernel =
      m.front_addr.is_v6() && opts_.prefix6_len != 0 ? *kernel_address6() : kernel_address();
  if (!tun_) {
    return absl::FailedPreconditionError(
        absl::StrCat(what,
                     ": wrench runs without its TUN device (no CAP_NET_ADMIN or no /dev/net/tun), "
                     "so nothing listens in ",
                     opts_.net_addr.ToString(), "/", opts_.prefix_len,
                     "; listen on 0.0.0.0:PORT or a host address instead"));
  }
  if (!InTunSubnet(m.front_addr)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": not inside the TUN subnet ", TunSubnet()));
  }
  if (m.front_addr == kernel) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", kernel.ToString(),
                     " is the kernel's own address on the TUN; use another "
                     "address of the subnet"));
  }
  if (opts_.upstream_via == UpstreamVia::kTun && m.upstream_addr != kernel) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": with --upstream-via tun the server must listen on the kernel's TUN address ",
        kernel.ToString()));
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
    opts_.log_line(
        absl::StrCat("wrench: no DNAT into the TUN (", d.status().message(),
                     "): proxies listening on a host address or 0.0.0.0 use kernel sockets, "
                     "with stream toxics only"));
    return dnat_error_;
  }
  dnat_ = std::move(*d);
  opts_.log_line(absl::StrCat("wrench: nftables table ", dnat_->table(),
                              " DNATs proxies' listen addresses to ", DnatFront().ToString()));
  if (!DnatFront6()) return dnat_.get();
  if (!dnat_->ipv6().ok()) {
    opts_.log_line(absl::StrCat("wrench: no IPv6 DNAT into the TUN (", dnat_->ipv6().message(),
                                "): IPv6 clients of host addresses get stream toxics only"));
    return dnat_.get();
  }
  opts_.log_line(absl::StrCat("wrench: nftables table ", dnat_->table6(),
                              " DNATs IPv6 listen addresses to ", DnatFront6()->ToString()));
  // IPv6 forwarding is the host's choice: turning it on makes every interface a
  // router's, which stops taking router advertisements (and so, in time, its default
  // route). Clients on this host need none; those of other hosts and namespaces do.
  std::ifstream forwarding("/proc/sys/net/ipv6/conf/all/forwarding");
  int on = 1;
  if (forwarding >> on && on == 0) {
    opts_.log_line(
        "wrench: net.ipv6.conf.all.forwarding is 0: IPv6 clients on this host are DNATed, those of "
        "other hosts and namespaces only once it is 1 (wrench leaves it to you)");
  }
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
constexpr uint8_t kToServerEvents[] = {stack::kSyn, stack::kPsh | stack::kAck,
                                       stack::kFin | stack::kAck};
constexpr uint8_t kFromServerEvents[] = {stack::kSyn | stack::kAck, stack::kRst | stack::kAck,
                                         stack::kPsh | stack::kAck, stack::kFin | stack::kAck};

bool SocketEventMatches(const Rule& r, Hook h) {
  const ActionKind k = KindOf(r.action);
  if (k != ActionKind::kDelay && k != ActionKind::kRst) return false;
  absl::Span<const uint8_t> events = h == Hook::kToServer ? absl::MakeConstSpan(kToServerEvents)
                                                          : absl::MakeConstSpan(kFromServerEvents);
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
      serve ? "the client side is a kernel socket no rule sees, and to-server and from-server take "
              "every action"
            : absl::StrCat(
                  "the server leg is a kernel socket, where only delay and rst act, on its events "
                  "(SYN, "
                  "SYN+ACK, RST+ACK, PSH+ACK, FIN+ACK; never a pure ACK), while from-client and "
                  "to-client "
                  "take every action",
                  opts_.transparent ? ""
                                    : "; --upstream-via tun makes the server leg wrench's own too");
  const std::string text = ToString(rule);
  std::string msg = absl::StrCat(what, " \"", text, "\" can never fire: ", run, " ", legs,
                                 " (README, \"Which rules act on which leg\")");
  if (opts_.allow_idle_rules) {
    opts_.log_line(absl::StrCat("wrench: warning: ", msg, "; kept (--allow-idle-rules)"));
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      msg,
      ". Name a hook where it acts with on=, or start wrench with --allow-idle-rules to keep it"));
}

std::string Service::TunSubnet() const {
  std::string text = absl::StrCat(opts_.net_addr.ToString(), "/", opts_.prefix_len);
  if (opts_.prefix6_len != 0)
    absl::StrAppend(&text, " or ", opts_.net6_addr.ToString(), "/", opts_.prefix6_len);
  return text;
}

stack::IpAddress Service::DnatFront() const {
  return HostOf(opts_.net_addr, opts_.prefix_len, /*set=*/true, -1);
}

std::optional<stack::IpAddress> Service::DnatFront6() const {
  if (opts_.prefix6_len == 0) return std::nullopt;
  return HostOf(opts_.net6_addr, opts_.prefix6_len, /*set=*/true, -1);
}

void Service::ReadTun() {
  tun_stream_->async_wait(
      asio::posix::stream_descriptor::wait_read, [this](boost::system::error_code ec) {
        if (ec) return;
        // Drain what is queued (bounded), then let the loop run timers and sockets.
        for (int i = 0; i < 256; ++i) {
          stack::VnetHdr hdr;
          ssize_t n = tun_->Read(absl::MakeSpan(read_buf_), &hdr);
          if (n <= 0) break;
          auto datagram = absl::MakeConstSpan(read_buf_.data(), static_cast<size_t>(n));
          auto deliver = [this](absl::Span<const uint8_t> d, bool whole = false) {
            if (serve_) {
              serve_->OnDatagram(d, whole);
            } else {
              proxy_->OnDatagram(d, whole);
            }
          };
          if (hdr == stack::VnetHdr{}) {
            deliver(datagram);
          } else if (hdr.is_gso() && !log_ && !RuleSeesTunData() &&
                     SplitIntoCapture(datagram, hdr)) {
            // No rule looks at the data segments one by one, and the log is not kept: the
            // endpoint takes the super-segment whole and answers it as a kernel answers
            // what GRO merged. The capture has its wire segments.
            deliver(datagram, /*whole=*/true);
          } else if (!SplitAndDeliver(datagram, hdr, deliver)) {
            // A super-segment of what is not TCP, or with a partial checksum: as it came
            // (the proxy counts what it cannot parse).
            deliver(datagram);
          }
        }
        if (!stopped_) ReadTun();
      });
}

bool Service::SplitAndDeliver(absl::Span<const uint8_t> datagram, const stack::VnetHdr& hdr,
                              absl::FunctionRef<void(absl::Span<const uint8_t>)> deliver) {
  // A rule sees each wire segment. Unless one may act on the segments the endpoint
  // answers with (whose number is what it tests), the endpoint answers the run once,
  // as a kernel answers what GRO merged.
  const bool burst = !RuleSeesTunAcks();
  if (burst) serve_ ? serve_->BeginBurst() : proxy_->BeginBurst();
  const bool ok = stack::SplitSuperSegment(datagram, hdr, deliver).ok();
  if (burst) serve_ ? serve_->EndBurst() : proxy_->EndBurst();
  return ok;
}

bool Service::RuleSeesTunAcks() const {
  if (serve_) return engine_.MatchesAckOn(Hook::kToServer);
  return engine_.MatchesAckOn(Hook::kToClient) ||
         (opts_.upstream_via == UpstreamVia::kTun && engine_.MatchesAckOn(Hook::kToServer));
}

bool Service::RuleSeesTunData() const {
  // The TUN carries the legs whose endpoint is wrench's: the client's, the server's
  // too with --upstream-via tun, and the served command's under `exec --serve`. On
  // each, a rule on the data coming in, or on the ACKs and data the endpoint answers
  // with (their number follows the input's segmentation), needs wire segments.
  if (RuleSeesTunAcks()) return true;
  if (serve_) return engine_.MatchesDataOn(Hook::kFromServer);
  return engine_.MatchesDataOn(Hook::kFromClient) ||
         (opts_.upstream_via == UpstreamVia::kTun && engine_.MatchesDataOn(Hook::kFromServer));
}

bool Service::SplitIntoCapture(absl::Span<const uint8_t> datagram, const stack::VnetHdr& hdr) {
  if (!pcap_) return true;
  const stack::Instant now = MonotonicNow();
  // The capture shows the wire, as it would without offloads.
  return stack::SplitSuperSegment(datagram, hdr,
                                  [&](absl::Span<const uint8_t> wire) { pcap_->Write(now, wire); })
      .ok();
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
