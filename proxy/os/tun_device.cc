// TUN device creation (open /dev/net/tun, TUNSETIFF with IFF_TUN_EXCL), datagram
// read/write with the non-blocking conventions of tun_device.h, and the rtnetlink
// configuration that makes the kernel route the proxy's subnet into it.
#include "proxy/os/tun_device.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "proxy/os/netlink.h"
#include "proxy/os/os_status.h"
#include "stack/status_macros.h"

namespace wrench::proxy {
namespace {

constexpr int kMinMtu = 68;      // RFC 791's minimum, and the kernel's for a TUN
constexpr int kMaxMtu = 65535;   // a TUN's maximum (and the largest IPv4 datagram)
constexpr int kMinMtuV6 = 1280;  // RFC 8200 §5; the kernel disables IPv6 below it

absl::Status CreateError(absl::string_view name, int err, absl::string_view hint = {}) {
  const std::string what = absl::StrCat("cannot create TUN device ", name);
  switch (err) {
    case EPERM:
    case EACCES:
      return ErrnoStatus(err, what, "creating a TUN device needs CAP_NET_ADMIN: run as root");
    case EBUSY:  // IFF_TUN_EXCL: the name was taken between our check and the ioctl
      return WithCode(ErrnoStatus(err, what, "is another wrench running?"),
                      absl::StatusCode::kAlreadyExists);
    default:
      return ErrnoStatus(err, what, hint);
  }
}

// "At once" above still means from a kernel work queue: for IPv6 the address's
// local route appears shortly after AddAddress returns, and until then the kernel
// already sends from the address but drops what arrives for it (Ip6InAddrErrors).
// Waiting here means a caller never writes an answer the kernel would discard.
absl::Status WaitUntilLocal(const stack::IpAddress& addr, absl::string_view what) {
  constexpr absl::Duration kPoll = absl::Milliseconds(1);
  constexpr int kMaxPolls = 3000;  // a second for the work queue, with a wide margin
  for (int i = 0; i < kMaxPolls; ++i) {
    absl::StatusOr<bool> local = IsLocalAddress(addr);
    if (!local.ok()) return local.status();
    if (*local) return absl::OkStatus();
    absl::SleepFor(kPoll);
  }
  return absl::DeadlineExceededError(absl::StrCat(
      what, ": the kernel did not start accepting packets for ", addr.ToString()));
}

}  // namespace

std::string TunOffloads::ToString() const {
  std::string out;
  for (const auto& [on, word] : {std::pair{csum, "csum"}, {tso4, "tso4"}, {tso6, "tso6"}}) {
    if (on) absl::StrAppend(&out, out.empty() ? "" : " ", word);
  }
  return out.empty() ? "none" : out;
}

absl::StatusOr<TunDevice> TunDevice::Create(std::string name, int mtu, bool offload) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    return absl::InvalidArgumentError(absl::StrCat("bad TUN device name \"", name,
                                                   "\": it must have 1 to ", IFNAMSIZ - 1,
                                                   " characters"));
  }
  if (mtu < kMinMtu || mtu > kMaxMtu) {
    return absl::InvalidArgumentError(absl::StrCat("bad MTU ", mtu, " for TUN device ", name,
                                                   ": it must be ", kMinMtu, "..", kMaxMtu));
  }
  // Without IFF_TUN_EXCL, TUNSETIFF on an existing persistent TUN would attach to it
  // and silently share its traffic; the check first gives the clearer message, the
  // flag closes the race with whoever creates the name between check and ioctl.
  if (::if_nametoindex(name.c_str()) != 0) {
    return absl::AlreadyExistsError(absl::StrCat(
        "cannot create TUN device ", name, ": a network interface of that name already exists "
        "(is another wrench running? pick another name with --tun)"));
  }

  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fd) {
    const int err = errno;
    if (err == ENOENT || err == ENODEV || err == ENXIO) {
      return WithCode(ErrnoStatus(err, absl::StrCat("cannot create TUN device ", name,
                                                    ": cannot open /dev/net/tun"),
                                  "load the tun module: modprobe tun; in a container, pass "
                                  "--device /dev/net/tun"),
                      absl::StatusCode::kFailedPrecondition);
    }
    return CreateError(name, err, "opening /dev/net/tun");
  }

  ifreq ifr{};
  // IFF_TUN_EXCL is bit 15 of a short: the cast keeps the bit pattern.
  ifr.ifr_flags =
      static_cast<short>(IFF_TUN | IFF_NO_PI | IFF_TUN_EXCL | (offload ? IFF_VNET_HDR : 0));
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) < 0) {
    return CreateError(name, errno);
  }
  // The kernel may have rewritten the name (a "%d" template); keep what it chose.
  name.assign(ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ));

  TunDevice tun(std::move(fd), std::move(name), mtu);
  if (offload) tun.NegotiateOffloads();
  if (absl::Status s = SetLinkMtu(tun.name(), mtu); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("cannot create TUN device ", tun.name(), ": ",
                                               s.message()));
  }
  // A TUN's queue toward its reader holds 500 datagrams by default: a burst of
  // connections (or of a connection's segments) larger than that while wrench is busy
  // loses SYNs, each costing its client a 1 s retransmission. A deeper queue absorbs
  // such bursts; wrench drains it up to 256 datagrams per wake-up.
  if (absl::Status s = SetLinkTxQueueLen(tun.name(), kTxQueueLen); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("cannot create TUN device ", tun.name(), ": ",
                                               s.message()));
  }
  return tun;
}

TunDevice TunDevice::Adopt(UniqueFd fd, std::string name, int mtu) {
  TunDevice tun(std::move(fd), std::move(name), mtu);
  ifreq ifr{};
  if (::ioctl(tun.fd(), TUNGETIFF, &ifr) == 0 && (ifr.ifr_flags & IFF_VNET_HDR) != 0) {
    tun.NegotiateOffloads();
  }
  return tun;
}

void TunDevice::NegotiateOffloads() {
  offloads_.vnet_hdr = true;
  constexpr unsigned int kWanted[] = {TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6,
                                      TUN_F_CSUM | TUN_F_TSO4, TUN_F_CSUM};
  for (const unsigned int want : kWanted) {
    if (::ioctl(fd_.get(), TUNSETOFFLOAD, want) == 0) {
      offloads_.csum = true;
      offloads_.tso4 = (want & TUN_F_TSO4) != 0;
      offloads_.tso6 = (want & TUN_F_TSO6) != 0;
      return;
    }
  }
}

ssize_t TunDevice::Read(absl::Span<uint8_t> buf, stack::VnetHdr* hdr) const {
  if (!offloads_.vnet_hdr) {
    if (hdr != nullptr) *hdr = stack::VnetHdr{};
    const ssize_t n = ::read(fd_.get(), buf.data(), buf.size());
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
    return n;
  }
  std::array<uint8_t, stack::VnetHdr::kLen> head{};
  iovec iov[2] = {{head.data(), head.size()}, {buf.data(), buf.size()}};
  const ssize_t n = ::readv(fd_.get(), iov, 2);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
  if (n < 0) return n;
  if (static_cast<size_t>(n) < head.size()) {
    errno = EPROTO;  // the kernel always writes the whole header
    return -1;
  }
  const size_t len = static_cast<size_t>(n) - head.size();
  const stack::VnetHdr h = stack::DecodeVnetHdr(head);
  if (hdr != nullptr) {
    *hdr = h;
  } else if (!h.is_gso()) {
    // Offsets outside the datagram leave it as it came: its checksum then fails the
    // caller's parse, as a corrupt datagram would.
    (void)stack::FinishPartialChecksum(buf.subspan(0, len), h);
  }
  return static_cast<ssize_t>(len);
}

ssize_t TunDevice::Write(absl::Span<const uint8_t> datagram) const {
  return Write(datagram, stack::VnetHdr{});
}

ssize_t TunDevice::Write(absl::Span<const uint8_t> datagram, const stack::VnetHdr& hdr) const {
  ssize_t n;
  if (offloads_.vnet_hdr) {
    std::array<uint8_t, stack::VnetHdr::kLen> head{};
    stack::EncodeVnetHdr(hdr, head);
    iovec iov[2] = {{head.data(), head.size()},
                    {const_cast<uint8_t*>(datagram.data()), datagram.size()}};
    n = ::writev(fd_.get(), iov, 2);
    if (n > 0) n = std::max<ssize_t>(0, n - static_cast<ssize_t>(head.size()));
  } else if (hdr != stack::VnetHdr{}) {
    errno = EINVAL;  // the device has no header to carry it
    return -1;
  } else {
    n = ::write(fd_.get(), datagram.data(), datagram.size());
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS || errno == EINTR)) {
    return 0;
  }
  return n;
}

absl::Status ConfigureTun(const TunDevice& tun, const stack::IpAddress& kernel_addr,
                          int prefix_len, int mtu) {
  const std::string what = absl::StrCat("configuring TUN device ", tun.name(), " as ",
                                        kernel_addr.ToString(), "/", prefix_len);
  if (mtu != tun.mtu()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": MTU ", mtu,
                                                   " differs from the device's ", tun.mtu()));
  }
  if (kernel_addr.is_v6() && mtu < kMinMtuV6) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": IPv6 needs an MTU of at least ",
                                                   kMinMtuV6, ", not ", mtu));
  }
  RETURN_IF_ERROR(SetLinkMtu(tun.name(), mtu));
  // Up before the address: an IPv6 address added to a down link is only activated at
  // link-up after a random delay of up to a second (RFC 4862 §5.4.2's solicitation
  // delay, applied even with NODAD); on a link already up it is activated at once.
  RETURN_IF_ERROR(SetLinkUp(tun.name(), true));
  RETURN_IF_ERROR(AddAddress(tun.name(), kernel_addr, prefix_len));
  return WaitUntilLocal(kernel_addr, what);
}

absl::Status ConfigureTun(const TunDevice& tun, const stack::IpAddress& kernel_addr,
                          int prefix_len) {
  return ConfigureTun(tun, kernel_addr, prefix_len, tun.mtu());
}

}  // namespace wrench::proxy
