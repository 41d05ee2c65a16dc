// nftables DNAT into the TUN (dnat.h), through libnftables: the commands are nft's
// language, run as one atomic batch each; the sysctls through /proc/sys.
#include "proxy/dnat.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "proxy/os_status.h"

#ifdef WRENCH_HAVE_NFTABLES
#include <nftables/libnftables.h>
#endif

namespace wrench::proxy {

namespace {

absl::StatusOr<std::string> ReadSysctl(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("open ", path));
  char buf[64];
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  const int err = errno;
  ::close(fd);
  if (n < 0) return ErrnoStatus(err, absl::StrCat("read ", path));
  return std::string(absl::StripAsciiWhitespace(absl::string_view(buf, static_cast<size_t>(n))));
}

absl::Status WriteSysctl(const std::string& path, absl::string_view value) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("open ", path));
  ssize_t n = ::write(fd, value.data(), value.size());
  const int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size())) return ErrnoStatus(err, absl::StrCat("write ", path));
  return absl::OkStatus();
}

constexpr char kIpForward[] = "/proc/sys/net/ipv4/ip_forward";

std::string DevSysctl(const std::string& dev, absl::string_view key) {
  return absl::StrCat("/proc/sys/net/ipv4/conf/", dev, "/", key);
}

// The nft key of a listen address: the map and the element's key.
std::pair<const char*, std::string> MapKey(const stack::IpAddress& listen, uint16_t port) {
  if (listen.v4_host_order() == 0) return {"any_to_front", absl::StrCat(port)};
  return {"to_front", absl::StrCat(listen.ToString(), " . ", port)};
}

// What libnftables would otherwise find out badly: without CAP_NET_ADMIN it prints to
// stderr, and without nf_tables in the kernel (no NETLINK_NETFILTER socket) it exits
// the process.
absl::Status CheckNftablesUsable() {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct caps[_LINUX_CAPABILITY_U32S_3] = {};
  if (::syscall(SYS_capget, &hdr, caps) == 0 &&
      (caps[CAP_NET_ADMIN / 32].effective & (1u << (CAP_NET_ADMIN % 32))) == 0) {
    return absl::PermissionDeniedError("nftables needs CAP_NET_ADMIN (root)");
  }
  int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) return ErrnoStatus(errno, "nftables: netlink socket", "no nf_tables in this kernel?");
  ::close(fd);
  return absl::OkStatus();
}

}  // namespace

#ifdef WRENCH_HAVE_NFTABLES

class Dnat::Nft {
 public:
  Nft() : ctx_(nft_ctx_new(NFT_CTX_DEFAULT)) {
    if (ctx_) {
      nft_ctx_buffer_output(ctx_);
      nft_ctx_buffer_error(ctx_);
    }
  }
  ~Nft() {
    if (ctx_) nft_ctx_free(ctx_);
  }
  absl::Status Run(const std::string& commands) {
    if (!ctx_) return absl::InternalError("nftables: nft_ctx_new failed");
    if (nft_run_cmd_from_buffer(ctx_, commands.c_str()) == 0) return absl::OkStatus();
    // libnftables quotes the failing command under its error; the first line says it.
    absl::string_view err = absl::StripAsciiWhitespace(nft_ctx_get_error_buffer(ctx_));
    err = err.substr(0, err.find('\n'));
    absl::ConsumePrefix(&err, "Error: ");
    return absl::UnavailableError(absl::StrCat("nftables: ", err.empty() ? "command failed" : err));
  }

 private:
  nft_ctx* ctx_;
};

#else

class Dnat::Nft {
 public:
  absl::Status Run(const std::string&) {
    return absl::UnimplementedError("this wrench was built without libnftables (Debian: libnftables-dev)");
  }
};

#endif

Dnat::Dnat(std::unique_ptr<Nft> nft, std::string table, std::string tun)
    : nft_(std::move(nft)), table_(std::move(table)), tun_(std::move(tun)) {}

absl::StatusOr<std::unique_ptr<Dnat>> Dnat::Open(const std::string& tun_name) {
  std::string id;
  for (char c : tun_name) {
    if (c == '"' || c == '\\' || c == '\n') {
      return absl::InvalidArgumentError(absl::StrCat("TUN device name \"", tun_name, "\" cannot be named in nftables"));
    }
    id.push_back(absl::ascii_isalnum(static_cast<unsigned char>(c)) ? c : '_');
  }
  if (auto st = CheckNftablesUsable(); !st.ok()) return st;
  auto nft = std::make_unique<Nft>();
  const std::string table = absl::StrCat("ip wrench_", id);
  auto forward = ReadSysctl(kIpForward);
  // A forward chain in a table left by a wrench that was killed means forwarding was
  // off before it: the guard stays, and ip_forward goes back to 0 at exit.
  const bool stale_guard = nft->Run(absl::StrCat("list chain ", table, " forward\n")).ok();
  const bool turn_on_forwarding = (forward.ok() && *forward == "0") || stale_guard;
  // Both maps take listen address and port to a front; any_to_front serves 0.0.0.0.
  // The prerouting chain skips the TUN's own traffic (wrench's server legs), so a
  // front never loops back into itself.
  std::string rules = absl::StrCat(
      "add table ", table, "\ndelete table ", table, "\ntable ", table, " {\n",
      "  map to_front { type ipv4_addr . inet_service : ipv4_addr . inet_service; }\n",
      "  map any_to_front { type inet_service : ipv4_addr . inet_service; }\n",
      "  chain prerouting { type nat hook prerouting priority dstnat; policy accept;\n",
      "    iifname \"", tun_name, "\" return\n",
      "    dnat to ip daddr . tcp dport map @to_front\n",
      "    fib daddr type local ip daddr != 127.0.0.0/8 dnat to tcp dport map @any_to_front\n  }\n",
      "  chain output { type nat hook output priority -100; policy accept;\n",
      "    dnat to ip daddr . tcp dport map @to_front\n",
      "    fib daddr type local ip daddr != 127.0.0.0/8 dnat to tcp dport map @any_to_front\n  }\n");
  if (turn_on_forwarding) {
    absl::StrAppend(&rules, "  chain forward { type filter hook forward priority filter; policy accept;\n",
                    "    iifname \"", tun_name, "\" ct status dnat accept\n", "    oifname \"", tun_name,
                    "\" ct status dnat accept\n", "    drop\n  }\n");
  }
  absl::StrAppend(&rules, "}\n");
  if (auto st = nft->Run(rules); !st.ok()) return st;
  std::unique_ptr<Dnat> d(new Dnat(std::move(nft), table, tun_name));
  // The replies come out of the TUN from a front address: the reverse path must not be
  // checked strictly (2, loose, whatever conf/all says), and for other hosts' clients
  // the TUN and their device forward.
  if (auto st = WriteSysctl(DevSysctl(tun_name, "rp_filter"), "2"); !st.ok()) return st;
  if (turn_on_forwarding) {
    if (auto st = WriteSysctl(kIpForward, "1"); !st.ok()) return st;
    d->restore_ip_forward_ = true;
  } else if (auto st = WriteSysctl(DevSysctl(tun_name, "forwarding"), "1"); !st.ok()) {
    return st;
  }
  return d;
}

Dnat::~Dnat() {
  if (restore_ip_forward_) (void)WriteSysctl(kIpForward, "0");
  (void)nft_->Run(absl::StrCat("delete table ", table_, "\n"));
}

absl::Status Dnat::Add(const stack::IpAddress& listen, uint16_t port, const stack::IpAddress& front,
                       uint16_t front_port) {
  if (listen.is_v6() || front.is_v6()) return absl::InvalidArgumentError("DNAT into the TUN is IPv4 only");
  auto [map, key] = MapKey(listen, port);
  return nft_->Run(absl::StrCat("add element ", table_, " ", map, " { ", key, " : ", front.ToString(), " . ",
                                front_port, " }\n"));
}

absl::Status Dnat::Remove(const stack::IpAddress& listen, uint16_t port) {
  auto [map, key] = MapKey(listen, port);
  return nft_->Run(absl::StrCat("delete element ", table_, " ", map, " { ", key, " }\n"));
}

}  // namespace wrench::proxy
