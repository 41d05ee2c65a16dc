// The TUN device: the proxy's wire (docs/ARCHITECTURE.md "Proxy data flow"). Every datagram the
// kernel routes into the device is read here as a bare IPv4/IPv6 packet, and every
// datagram written here enters the kernel as if it had arrived from a network.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "proxy/os/unique_fd.h"
#include "stack/ip.h"
#include "stack/offload.h"

namespace wrench::proxy {

// What a TUN device opened with offloads negotiated with the kernel (TUNSETOFFLOAD).
struct TunOffloads {
  bool vnet_hdr = false;  // every datagram carries a virtio_net_hdr (stack/offload.h)
  bool csum = false;      // checksums may be left partial (TUN_F_CSUM)
  bool tso4 = false;      // TCP super-segments over IPv4 (TUN_F_TSO4)
  bool tso6 = false;      // and over IPv6 (TUN_F_TSO6)
  // "csum tso4 tso6", or "none".
  std::string ToString() const;
};

class TunDevice {
 public:
  // Creates the (non-persistent) TUN device `name` with IFF_TUN | IFF_NO_PI and sets
  // its MTU. The device exists as long as this object: it vanishes from the system
  // when the descriptor closes. Fails, rather than attaching to someone else's
  // device, when an interface of that name already exists (AlreadyExists, "is another
  // wrench running?"); PermissionDenied without CAP_NET_ADMIN; InvalidArgument for a
  // name of more than 15 characters or an MTU outside 68..65535.
  //
  // With `offload`, the device is opened with IFF_VNET_HDR and asks the kernel for
  // checksum and TCP segmentation offload, taking what the kernel grants (offloads()):
  // the kernel then hands over TCP super-segments of up to 64 KiB and takes such
  // super-segments to cut into MTU-sized segments itself (stack/offload.h).
  static absl::StatusOr<TunDevice> Create(std::string name, int mtu, bool offload = false);
  // The transmit queue Create gives the device (the kernel's default for a TUN is 500).
  static constexpr uint32_t kTxQueueLen = 10000;
  // Takes over the descriptor of a TUN device created elsewhere — by `wrench exec`'s
  // child, inside the network namespace the command runs in.
  // A device created with offloads (IFF_VNET_HDR) is used with them.
  static TunDevice Adopt(UniqueFd fd, std::string name, int mtu);

  TunDevice(TunDevice&&) noexcept = default;
  TunDevice& operator=(TunDevice&&) noexcept = default;
  TunDevice(const TunDevice&) = delete;
  TunDevice& operator=(const TunDevice&) = delete;
  ~TunDevice() = default;

  // Non-blocking, close-on-exec. Readable when a datagram is queued; hand it to an
  // event loop, but keep ownership here (e.g. release() the Asio descriptor before it
  // is destroyed) so the device is not closed twice.
  int fd() const { return fd_.get(); }
  const std::string& name() const { return name_; }
  int mtu() const { return mtu_; }
  const TunOffloads& offloads() const { return offloads_; }

  // Reads one datagram into `buf`, which should hold mtu() bytes.
  //   > 0  the datagram's length;
  //     0  nothing queued (EAGAIN): wait for readability and call again;
  //    -1  an error, errno set. A datagram longer than `buf` is not an error: the
  //        kernel returns its first buf.size() bytes and discards the rest, so a short
  //        buffer shows up as a datagram whose IP total length exceeds what was read.
  // Never blocks. One call, one datagram (no partial reads across calls).
  // With offloads, the datagram's virtio_net_hdr goes to *hdr; a super-segment can be
  // 64 KiB long, so `buf` should hold 65535 bytes. Without `hdr`, a partial checksum is
  // finished before returning, and a super-segment is returned as it came.
  ssize_t Read(absl::Span<uint8_t> buf, stack::VnetHdr* hdr = nullptr) const;

  // Writes one whole IPv4 or IPv6 datagram into the kernel.
  //   > 0  bytes accepted (always the whole datagram);
  //     0  the kernel is momentarily out of room (EAGAIN/ENOBUFS): the caller treats
  //        the datagram as lost on the wire, which TCP retransmission covers;
  //    -1  an error, errno set: EINVAL when the first nibble is neither 4 nor 6 or
  //        the datagram is larger than 65535 bytes; EIO while the link is down.
  // The kernel accepts a datagram longer than the MTU (the MTU only limits what it
  // sends into the device), and it checks the IP and TCP checksums itself: a bad one
  // is counted and dropped silently, not reported here.
  ssize_t Write(absl::Span<const uint8_t> datagram) const;
  // With offloads: writes `datagram` with `hdr` in front, e.g. a super-segment of
  // stack::GsoBatch for the kernel to cut. Without, `hdr` must be all zero.
  ssize_t Write(absl::Span<const uint8_t> datagram, const stack::VnetHdr& hdr) const;

 private:
  TunDevice(UniqueFd fd, std::string name, int mtu)
      : fd_(std::move(fd)), name_(std::move(name)), mtu_(mtu) {}
  // Asks for the most the kernel grants: TSO needs checksum offload, TSO6 may be missing.
  void NegotiateOffloads();

  UniqueFd fd_;
  std::string name_;
  int mtu_ = 0;
  TunOffloads offloads_;
};

// Gives the kernel side of the TUN its address (the first address of the proxy's
// subnet, e.g. 10.89.0.1/24), sets the MTU and brings the link up, so the kernel
// routes every other address of the subnet into the device. `mtu` must equal
// tun.mtu() (it is there so a caller states the value it configures); IPv6 needs an
// MTU of at least 1280.
absl::Status ConfigureTun(const TunDevice& tun, const stack::IpAddress& kernel_addr,
                          int prefix_len, int mtu);
// The same with tun.mtu().
absl::Status ConfigureTun(const TunDevice& tun, const stack::IpAddress& kernel_addr,
                          int prefix_len);

}  // namespace wrench::proxy
