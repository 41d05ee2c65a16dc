// rtnetlink requests: one socket per call, one message, wait for the kernel's ACK and
// turn an NLMSG_ERROR (with its extended-ACK text) into a Status naming the operation.
// Messages are built by hand in a small aligned buffer; see rtnetlink(7).
#include "proxy/os/netlink.h"

#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "proxy/os/os_status.h"
#include "proxy/os/unique_fd.h"
#include "stack/status_macros.h"

namespace wrench::proxy {
namespace {

// rtnetlink answers in microseconds; the bound only keeps a wedged kernel (or a
// filtered socket) from hanging the proxy at start-up.
constexpr int kAckTimeoutSeconds = 5;
// Bounds the receive loop: unrelated messages (none expected on a fresh unicast
// socket) are skipped at most this many times.
// A dump of a large routing table spans many datagrams: its bound is higher.
constexpr int kMaxReceives = 64;
constexpr int kMaxDumpReceives = 1 << 16;

// The operation's Status for an errno from the kernel or a syscall. The errno's own
// mapping gives the code (PermissionDenied, NotFound, AlreadyExists, ...).
absl::Status OsError(int err, absl::string_view what, absl::string_view kernel_says = {}) {
  std::string hint;
  if (err == EPERM || err == EACCES) {
    hint = "changing network configuration needs CAP_NET_ADMIN: run as root";
  } else if (err == EEXIST) {
    hint = "already configured";
  }
  if (!kernel_says.empty()) {
    absl::StrAppend(&hint, hint.empty() ? "" : "; ", "kernel: ", kernel_says);
  }
  return ErrnoStatus(err, what, hint);
}

absl::Status CheckIfName(absl::string_view name) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bad interface name \"", name, "\": it must have 1 to ", IFNAMSIZ - 1, " characters"));
  }
  return absl::OkStatus();
}

// One request: the nlmsghdr, a fixed family header, then attributes, each aligned to
// NLMSG_ALIGNTO. Written with memcpy so no packed struct is ever accessed misaligned.
class Request {
 public:
  Request(uint16_t type, uint16_t flags) {
    nlmsghdr h{};
    h.nlmsg_type = type;
    h.nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | NLM_F_ACK | flags);
    Append(&h, sizeof h);
  }

  template <typename T>
  void PutHeader(const T& family_header) {
    Append(&family_header, sizeof family_header);
  }

  void PutAttr(uint16_t type, const void* data, size_t len) {
    rtattr a{};
    a.rta_type = type;
    a.rta_len = static_cast<unsigned short>(RTA_LENGTH(len));
    Append(&a, sizeof a);
    Append(data, len);
  }
  void PutAttrU32(uint16_t type, uint32_t v) { PutAttr(type, &v, sizeof v); }
  void PutAttrAddr(uint16_t type, const stack::IpAddress& a) {
    PutAttr(type, a.bytes().data(), a.bytes().size());
  }

  // Finalizes length and sequence number; returns the bytes to send.
  absl::Span<const uint8_t> Finish(uint32_t seq) {
    nlmsghdr h;
    std::memcpy(&h, buf_.data(), sizeof h);
    h.nlmsg_len = static_cast<uint32_t>(len_);
    h.nlmsg_seq = seq;
    std::memcpy(buf_.data(), &h, sizeof h);
    return {buf_.data(), len_};
  }

  bool overflowed() const { return overflowed_; }

 private:
  void Append(const void* data, size_t len) {
    const size_t padded = NLMSG_ALIGN(len);
    if (len_ + padded > buf_.size()) {
      overflowed_ = true;
      return;
    }
    std::memcpy(buf_.data() + len_, data, len);
    std::memset(buf_.data() + len_ + len, 0, padded - len);
    len_ += padded;
  }

  alignas(NLMSG_ALIGNTO) std::array<uint8_t, 256> buf_{};
  size_t len_ = 0;
  bool overflowed_ = false;
};

// The NLMSGERR_ATTR_MSG string of an extended ACK, if the kernel sent one. With
// NETLINK_CAP_ACK the request is not echoed, so the TLVs follow the nlmsgerr at once.
std::string ExtAckMessage(const uint8_t* msg, size_t len) {
  nlmsghdr h;
  std::memcpy(&h, msg, sizeof h);
  if (!(h.nlmsg_flags & NLM_F_ACK_TLVS)) return {};
  size_t off = NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(nlmsgerr));
  if (!(h.nlmsg_flags & NLM_F_CAPPED)) {
    nlmsgerr e;
    std::memcpy(&e, msg + NLMSG_HDRLEN, sizeof e);
    off += NLMSG_ALIGN(e.msg.nlmsg_len - NLMSG_HDRLEN);
  }
  len = std::min<size_t>(len, h.nlmsg_len);
  for (int i = 0; i < 32 && off + sizeof(nlattr) <= len; ++i) {
    nlattr a;
    std::memcpy(&a, msg + off, sizeof a);
    if (a.nla_len < sizeof a || off + a.nla_len > len) break;
    if ((a.nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG) {
      const char* s = reinterpret_cast<const char*>(msg + off + NLA_HDRLEN);
      return std::string(s, strnlen(s, a.nla_len - NLA_HDRLEN));
    }
    off += NLA_ALIGN(a.nla_len);
  }
  return {};
}

// Called with each reply to the request that is not its ACK (a GET's answer).
using ReplyHandler = std::function<void(const nlmsghdr& h, absl::Span<const uint8_t> payload)>;

// Sends `req` on a fresh NETLINK_ROUTE socket and waits for its ACK, handing any
// other reply to `on_reply`.
// A dump (NLM_F_DUMP) ends with NLMSG_DONE instead of an ACK.
absl::Status Transact(Request& req, absl::string_view what, const ReplyHandler& on_reply = {},
                      bool dump = false) {
  if (req.overflowed())
    return absl::InternalError(absl::StrCat(what, ": netlink request too long"));
  UniqueFd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!fd) {
    const int err = errno;
    return OsError(err, absl::StrCat(what, ": opening a netlink socket"));
  }
  const int one = 1;
  // Both best effort: older kernels lack them and the bare errno still says enough.
  ::setsockopt(fd.get(), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  ::setsockopt(fd.get(), SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  timeval tv{kAckTimeoutSeconds, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  constexpr uint32_t kSeq = 1;  // one request per socket: any sequence number will do
  absl::Span<const uint8_t> bytes = req.Finish(kSeq);
  if (::sendto(fd.get(), bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&kernel),
               sizeof kernel) < 0) {
    return OsError(errno, what);
  }

  // Large enough for a dump datagram (the kernel fills at most about a page, or 32 KiB).
  alignas(NLMSG_ALIGNTO) std::array<uint8_t, 32768> buf;
  for (int i = 0; i < (dump ? kMaxDumpReceives : kMaxReceives); ++i) {
    const ssize_t n = ::recv(fd.get(), buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return absl::DeadlineExceededError(absl::StrCat(
            what, ": the kernel did not answer the netlink request within ",
            kAckTimeoutSeconds, " s"));
      }
      return OsError(errno, what);
    }
    size_t off = 0;
    while (off + NLMSG_HDRLEN <= static_cast<size_t>(n)) {
      nlmsghdr h;
      std::memcpy(&h, buf.data() + off, sizeof h);
      if (h.nlmsg_len < NLMSG_HDRLEN || off + h.nlmsg_len > static_cast<size_t>(n)) break;
      if (h.nlmsg_seq == kSeq && h.nlmsg_type == NLMSG_ERROR &&
          h.nlmsg_len >= NLMSG_HDRLEN + sizeof(nlmsgerr)) {
        nlmsgerr e;
        std::memcpy(&e, buf.data() + off + NLMSG_HDRLEN, sizeof e);
        if (e.error == 0) return absl::OkStatus();
        return OsError(-e.error, what, ExtAckMessage(buf.data() + off, n - off));
      }
      if (dump && h.nlmsg_seq == kSeq && h.nlmsg_type == NLMSG_DONE) {
        int err = 0;
        if (h.nlmsg_len >= NLMSG_HDRLEN + sizeof err)
          std::memcpy(&err, buf.data() + off + NLMSG_HDRLEN, sizeof err);
        if (err == 0) return absl::OkStatus();
        return OsError(-err, what);
      }
      if (h.nlmsg_seq == kSeq && on_reply && h.nlmsg_type != NLMSG_NOOP &&
          h.nlmsg_type != NLMSG_DONE) {
        on_reply(h, absl::MakeConstSpan(buf.data() + off + NLMSG_HDRLEN,
                                        h.nlmsg_len - NLMSG_HDRLEN));
      }
      off += NLMSG_ALIGN(h.nlmsg_len);
    }
  }
  return absl::InternalError(absl::StrCat(what, ": no acknowledgement among ", kMaxReceives,
                                          " netlink replies"));
}

absl::StatusOr<int> IndexFor(absl::string_view name, absl::string_view what) {
  RETURN_IF_ERROR(CheckIfName(name));
  const std::string n(name);
  const unsigned idx = ::if_nametoindex(n.c_str());
  if (idx == 0) {
    const int err = errno;
    if (err == ENODEV || err == ENXIO) {
      return absl::NotFoundError(absl::StrCat(what, ": no network interface named ", name));
    }
    return OsError(err, absl::StrCat(what, ": looking up interface ", name));
  }
  return static_cast<int>(idx);
}

absl::Status CheckPrefix(const stack::IpAddress& a, int prefix_len, absl::string_view what) {
  const int max = a.is_v6() ? 128 : 32;
  if (prefix_len < 0 || prefix_len > max) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": prefix length ", prefix_len, " is outside 0..", max));
  }
  return absl::OkStatus();
}

// RTM_NEWLINK on an existing link: the flags in `change` set as in `flags`, and the
// one u32 attribute `attr` (IFLA_MTU, IFLA_TXQLEN) when given.
absl::Status SetLink(absl::string_view name, absl::string_view what, unsigned flags,
                     unsigned change, std::optional<std::pair<uint16_t, uint32_t>> attr) {
  ASSIGN_OR_RETURN(const int idx, IndexFor(name, what));
  Request req(RTM_NEWLINK, 0);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = idx;
  ifi.ifi_flags = flags;
  ifi.ifi_change = change;
  req.PutHeader(ifi);
  if (attr) req.PutAttrU32(attr->first, attr->second);
  return Transact(req, what);
}

}  // namespace

absl::StatusOr<int> InterfaceIndex(absl::string_view name) {
  return IndexFor(name, "looking up interface");
}

absl::Status SetLinkUp(absl::string_view name, bool up) {
  return SetLink(name, absl::StrCat("setting link ", name, up ? " up" : " down"),
                 up ? IFF_UP : 0, IFF_UP, std::nullopt);
}

absl::Status SetLinkMtu(absl::string_view name, int mtu) {
  const std::string what = absl::StrCat("setting the MTU of ", name, " to ", mtu);
  if (mtu < 68 || mtu > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": an MTU must be 68..65535"));
  }
  return SetLink(name, what, 0, 0,
                 std::pair<uint16_t, uint32_t>{IFLA_MTU, static_cast<uint32_t>(mtu)});
}

absl::Status SetLinkTxQueueLen(absl::string_view name, uint32_t packets) {
  return SetLink(name,
                 absl::StrCat("setting the transmit queue of ", name, " to ", packets, " packets"),
                 0, 0, std::pair<uint16_t, uint32_t>{IFLA_TXQLEN, packets});
}

absl::Status AddAddress(absl::string_view name, const stack::IpAddress& addr, int prefix_len) {
  const std::string what =
      absl::StrCat("adding address ", addr.ToString(), "/", prefix_len, " to ", name);
  RETURN_IF_ERROR(CheckPrefix(addr, prefix_len, what));
  ASSIGN_OR_RETURN(const int idx, IndexFor(name, what));
  Request req(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
  ifaddrmsg ifa{};
  ifa.ifa_family = addr.is_v6() ? AF_INET6 : AF_INET;
  ifa.ifa_prefixlen = static_cast<uint8_t>(prefix_len);
  ifa.ifa_flags = addr.is_v6() ? IFA_F_NODAD : 0;
  ifa.ifa_scope = RT_SCOPE_UNIVERSE;
  ifa.ifa_index = static_cast<uint32_t>(idx);
  req.PutHeader(ifa);
  // LOCAL == ADDRESS, as `ip addr add` sends it: on a point-to-point device (a TUN)
  // a different ADDRESS would mean "peer" and the kernel would route only that host.
  req.PutAttrAddr(IFA_LOCAL, addr);
  req.PutAttrAddr(IFA_ADDRESS, addr);
  return Transact(req, what);
}

absl::Status AddRoute(const stack::IpAddress& dst, int prefix_len, absl::string_view ifname,
                      std::optional<stack::IpAddress> gateway) {
  std::string what = absl::StrCat("adding route ", dst.ToString(), "/", prefix_len, " dev ",
                                  ifname);
  if (gateway) absl::StrAppend(&what, " via ", gateway->ToString());
  RETURN_IF_ERROR(CheckPrefix(dst, prefix_len, what));
  if (gateway && gateway->is_v6() != dst.is_v6()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": the gateway and the destination are of different IP versions"));
  }
  ASSIGN_OR_RETURN(const int idx, IndexFor(ifname, what));
  Request req(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
  rtmsg rt{};
  rt.rtm_family = dst.is_v6() ? AF_INET6 : AF_INET;
  rt.rtm_dst_len = static_cast<uint8_t>(prefix_len);
  rt.rtm_table = RT_TABLE_MAIN;
  rt.rtm_protocol = RTPROT_BOOT;  // what `ip route add` uses: "configured by an admin"
  rt.rtm_scope = gateway ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK;
  rt.rtm_type = RTN_UNICAST;
  req.PutHeader(rt);
  if (prefix_len > 0) req.PutAttrAddr(RTA_DST, dst);
  if (gateway) req.PutAttrAddr(RTA_GATEWAY, *gateway);
  req.PutAttrU32(RTA_OIF, static_cast<uint32_t>(idx));
  return Transact(req, what);
}

absl::Status AddDefaultRoute(absl::string_view ifname, bool ipv6,
                             std::optional<stack::IpAddress> gateway) {
  const stack::IpAddress any =
      ipv6 ? stack::IpAddress::V6({}) : stack::IpAddress::V4(uint32_t{0});
  return AddRoute(any, 0, ifname, gateway);
}

absl::StatusOr<bool> IsLocalAddress(const stack::IpAddress& addr) {
  const std::string what = absl::StrCat("looking up the route to ", addr.ToString());
  Request req(RTM_GETROUTE, 0);
  rtmsg rt{};
  rt.rtm_family = addr.is_v6() ? AF_INET6 : AF_INET;
  rt.rtm_dst_len = addr.is_v6() ? 128 : 32;
  req.PutHeader(rt);
  req.PutAttrAddr(RTA_DST, addr);
  std::optional<uint8_t> type;
  RETURN_IF_ERROR(Transact(req, what, [&](const nlmsghdr& h, absl::Span<const uint8_t> body) {
    if (h.nlmsg_type != RTM_NEWROUTE || body.size() < sizeof(rtmsg)) return;
    rtmsg answer;
    std::memcpy(&answer, body.data(), sizeof answer);
    type = answer.rtm_type;
  }));
  if (!type) return absl::InternalError(absl::StrCat(what, ": the kernel sent no route"));
  return *type == RTN_LOCAL;
}

namespace {

// The attributes of a route or address message: type -> payload.
void ForEachAttr(absl::Span<const uint8_t> attrs,
                 const std::function<void(uint16_t, absl::Span<const uint8_t>)>& f) {
  size_t off = 0;
  for (int i = 0; i < 256 && off + sizeof(rtattr) <= attrs.size(); ++i) {
    rtattr a;
    std::memcpy(&a, attrs.data() + off, sizeof a);
    if (a.rta_len < sizeof a || off + a.rta_len > attrs.size()) break;
    f(a.rta_type, attrs.subspan(off + RTA_LENGTH(0), a.rta_len - RTA_LENGTH(0)));
    off += RTA_ALIGN(a.rta_len);
  }
}

std::string IfName(uint32_t index) {
  char name[IF_NAMESIZE] = {};
  if (index == 0 || ::if_indextoname(index, name) == nullptr)
    return index == 0 ? "" : absl::StrCat("#", index);
  return name;
}

}  // namespace

// Lists a kernel table of one family's prefixes (routes, addresses): a dump request
// with a `Header` whose `family` field names the family, and `each` for every reply of
// type `type` in that family (its header, the attributes after it, the length of an
// address), which gives the prefix it describes, if any.
template <typename Header>
absl::StatusOr<std::vector<IpPrefix>> DumpPrefixes(
    uint16_t get, uint8_t Header::*family, uint16_t type, bool ipv6, absl::string_view table,
    absl::FunctionRef<std::optional<IpPrefix>(const Header&, absl::Span<const uint8_t>, size_t)>
        each) {
  Header header{};
  header.*family = ipv6 ? AF_INET6 : AF_INET;
  Request req(get, NLM_F_DUMP);
  req.PutHeader(header);
  std::vector<IpPrefix> out;
  RETURN_IF_ERROR(Transact(
      req, absl::StrCat("listing the ", ipv6 ? "IPv6 " : "IPv4 ", table),
      [&](const nlmsghdr& h, absl::Span<const uint8_t> body) {
        if (h.nlmsg_type != type || body.size() < sizeof(Header)) return;
        Header m;
        std::memcpy(&m, body.data(), sizeof m);
        if (m.*family != header.*family) return;
        auto p = each(m, body.subspan(NLMSG_ALIGN(sizeof m)), ipv6 ? 16 : 4);
        if (p) out.push_back(std::move(*p));
      },
      /*dump=*/true));
  return out;
}

absl::StatusOr<std::vector<IpPrefix>> ListRoutes(bool ipv6) {
  return DumpPrefixes<rtmsg>(
      RTM_GETROUTE, &rtmsg::rtm_family, RTM_NEWROUTE, ipv6, "routes",
      [&](const rtmsg& m, absl::Span<const uint8_t> attrs, size_t len) -> std::optional<IpPrefix> {
        uint32_t table = m.rtm_table;
        IpPrefix p{ipv6 ? stack::IpAddress::V6({}) : stack::IpAddress::V4(uint32_t{0}),
                   m.rtm_dst_len, ""};
        ForEachAttr(attrs, [&](uint16_t type, absl::Span<const uint8_t> v) {
          if (type == RTA_TABLE && v.size() >= 4) std::memcpy(&table, v.data(), 4);
          if (type == RTA_DST && v.size() == len) p.addr = stack::IpAddress::FromBytes(v);
          if (type == RTA_OIF && v.size() >= 4) {
            uint32_t index;
            std::memcpy(&index, v.data(), 4);
            p.ifname = IfName(index);
          }
        });
        if (table != RT_TABLE_MAIN) return std::nullopt;
        return p;
      });
}

absl::StatusOr<std::vector<IpPrefix>> ListAddresses(bool ipv6) {
  return DumpPrefixes<ifaddrmsg>(
      RTM_GETADDR, &ifaddrmsg::ifa_family, RTM_NEWADDR, ipv6, "addresses",
      [](const ifaddrmsg& m, absl::Span<const uint8_t> attrs,
         size_t len) -> std::optional<IpPrefix> {
        std::optional<stack::IpAddress> local, address;
        ForEachAttr(attrs, [&](uint16_t type, absl::Span<const uint8_t> v) {
          if (type == IFA_LOCAL && v.size() == len) local = stack::IpAddress::FromBytes(v);
          if (type == IFA_ADDRESS && v.size() == len) address = stack::IpAddress::FromBytes(v);
        });
        if (!local) local = address;
        if (!local) return std::nullopt;
        return IpPrefix{*local, m.ifa_prefixlen, IfName(m.ifa_index)};
      });
}

absl::StatusOr<std::vector<IpPrefix>> ListIpv4Routes() { return ListRoutes(false); }

absl::StatusOr<std::vector<IpPrefix>> ListIpv4Addresses() { return ListAddresses(false); }

absl::Status BringUpLoopback() { return SetLinkUp("lo", true); }

}  // namespace wrench::proxy
