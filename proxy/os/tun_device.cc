// TUN device creation (open /dev/net/tun, TUNSETIFF with IFF_TUN_EXCL), datagram
// read/write with the non-blocking conventions of tun_device.h, and the rtnetlink
// configuration that makes the kernel route the proxy's subnet into it.
#include "proxy/os/tun_device.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstring>

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

absl::StatusOr<TunDevice> TunDevice::Create(std::string name, int mtu) {
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
  ifr.ifr_flags = static_cast<short>(IFF_TUN | IFF_NO_PI | IFF_TUN_EXCL);
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) < 0) {
    return CreateError(name, errno);
  }
  // The kernel may have rewritten the name (a "%d" template); keep what it chose.
  name.assign(ifr.ifr_name, strnlen(ifr.ifr_name, IFNAMSIZ));

  TunDevice tun(std::move(fd), std::move(name), mtu);
  if (absl::Status s = SetLinkMtu(tun.name(), mtu); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("cannot create TUN device ", tun.name(), ": ",
                                               s.message()));
  }
  return tun;
}

ssize_t TunDevice::Read(absl::Span<uint8_t> buf) const {
  const ssize_t n = ::read(fd_.get(), buf.data(), buf.size());
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
  return n;
}

ssize_t TunDevice::Write(absl::Span<const uint8_t> datagram) const {
  const ssize_t n = ::write(fd_.get(), datagram.data(), datagram.size());
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
