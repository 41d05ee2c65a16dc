// Tests for rtnetlink configuration (proxy/os/netlink.h) against the real kernel, each in
// a fresh network namespace. Results are checked through other kernel interfaces
// (ioctl, getifaddrs, a UDP socket's route lookup) rather than through netlink itself.
#include "proxy/os/netlink.h"

#include <ifaddrs.h>
#include <net/if.h>
#include <sys/ioctl.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proxy/os/tun_device.h"
#include "tests/netns_testing.h"

namespace wrench::proxy {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using stack::IpAddress;
using testing::ErrnoOf;

constexpr char kTun[] = "wrench-t0";
const IpAddress kTunV4 = *IpAddress::Parse("10.89.7.1");
const IpAddress kTunV6 = *IpAddress::Parse("fd00:89:7::1");

IpAddress Ip(const char* text) { return *IpAddress::Parse(text); }

// SIOCGIFFLAGS / SIOCGIFMTU: the kernel's view, not our netlink code's.
int IfFlags(const std::string& name) {
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  return ::ioctl(s.get(), SIOCGIFFLAGS, &ifr) == 0 ? ifr.ifr_flags : -1;
}
int IfMtu(const std::string& name) {
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  return ::ioctl(s.get(), SIOCGIFMTU, &ifr) == 0 ? ifr.ifr_mtu : -1;
}

// Whether getifaddrs lists addr with that prefix length on `name`.
bool HasAddress(const std::string& name, const IpAddress& addr, int prefix_len) {
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return false;
  bool found = false;
  for (ifaddrs* i = list; i != nullptr && !found; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || name != i->ifa_name) continue;
    const int family = i->ifa_addr->sa_family;
    if (family != (addr.is_v6() ? AF_INET6 : AF_INET)) continue;
    const void* a =
        family == AF_INET6
            ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr)
            : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr);
    const void* m =
        family == AF_INET6
            ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(i->ifa_netmask)->sin6_addr)
            : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(i->ifa_netmask)->sin_addr);
    if (std::memcmp(a, addr.bytes().data(), addr.bytes().size()) != 0) continue;
    int bits = 0;
    for (size_t k = 0; k < addr.bytes().size(); ++k) {
      bits += __builtin_popcount(static_cast<const uint8_t*>(m)[k]);
    }
    found = bits == prefix_len;
  }
  ::freeifaddrs(list);
  return found;
}

// The kernel's route lookup, without sending anything: connect() on a UDP socket picks
// the route and the source address. Returns the source, or the connect error.
absl::StatusOr<IpAddress> SourceFor(const IpAddress& dst) {
  UniqueFd s(::socket(dst.is_v6() ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_storage ss;
  const socklen_t len = testing::ToSockaddr(dst, 9, &ss);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    return testing::ErrnoStatus(errno, "udp connect");
  }
  sockaddr_storage local{};
  socklen_t llen = sizeof local;
  ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&local), &llen);
  if (local.ss_family == AF_INET6) {
    return IpAddress::FromBytes(
        {reinterpret_cast<const uint8_t*>(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr),
         16});
  }
  return IpAddress::FromBytes(
      {reinterpret_cast<const uint8_t*>(&reinterpret_cast<sockaddr_in*>(&local)->sin_addr), 4});
}

TunDevice MakeConfiguredTun() {
  absl::StatusOr<TunDevice> tun = TunDevice::Create(kTun, 1500);
  EXPECT_TRUE(tun.ok()) << tun.status();
  absl::Status s = ConfigureTun(*tun, kTunV4, 24);
  EXPECT_TRUE(s.ok()) << s;
  s = AddAddress(kTun, kTunV6, 64);
  EXPECT_TRUE(s.ok()) << s;
  return std::move(tun).value();
}

TEST(Netlink, FreshNamespaceHasLoopbackUpAndNothingElse) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  EXPECT_EQ(InterfaceIndex("lo").value_or(-1), 1);
  EXPECT_TRUE(IfFlags("lo") & IFF_UP);
  // Loopback carries TCP: a server on 127.0.0.1 and ::1 is reachable.
  for (const char* addr : {"127.0.0.1", "::1"}) {
    absl::StatusOr<std::unique_ptr<testing::TcpServer>> server =
        testing::TcpServer::Start(Ip(addr), 0, [](int fd) {
          EXPECT_TRUE(testing::WriteAll(fd, "hi", absl::Seconds(5)).ok());
        });
    ASSERT_TRUE(server.ok()) << server.status();
    absl::StatusOr<UniqueFd> c = testing::ConnectTo(Ip(addr), (*server)->port(), absl::Seconds(5));
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(testing::ReadAll(c->get(), absl::Seconds(5)).value_or("?"), "hi");
  }
}

TEST(Netlink, BringUpLoopbackMakesAFreshNamespacesLoopbackRoutable) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  // Another fresh namespace, this time without the helper's BringUpLoopback.
  ASSERT_EQ(::unshare(CLONE_NEWNET), 0) << std::strerror(errno);
  EXPECT_FALSE(IfFlags("lo") & IFF_UP);
  EXPECT_EQ(ErrnoOf(SourceFor(Ip("127.0.0.1")).status()), ENETUNREACH);
  ASSERT_TRUE(BringUpLoopback().ok());
  EXPECT_TRUE(IfFlags("lo") & IFF_UP);
  EXPECT_EQ(SourceFor(Ip("127.0.0.1")).value_or(IpAddress()), Ip("127.0.0.1"));
}

TEST(Netlink, SetLinkUpAndDown) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  ASSERT_TRUE(SetLinkUp("lo", false).ok());
  EXPECT_FALSE(IfFlags("lo") & IFF_UP);
  ASSERT_TRUE(SetLinkUp("lo", true).ok());
  EXPECT_TRUE(IfFlags("lo") & IFF_UP);
  ASSERT_TRUE(SetLinkUp("lo", true).ok());  // idempotent
}

TEST(Netlink, SetLinkMtu) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  ASSERT_TRUE(SetLinkMtu("lo", 9000).ok());
  EXPECT_EQ(IfMtu("lo"), 9000);
  EXPECT_THAT(SetLinkMtu("lo", 67).message(), HasSubstr("an MTU must be 68..65535"));
}

TEST(Netlink, UnknownInterfaceIsNotFoundNamingTheOperation) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  EXPECT_TRUE(absl::IsNotFound(InterfaceIndex("nope0").status()));
  const absl::Status s = SetLinkUp("nope0", true);
  EXPECT_TRUE(absl::IsNotFound(s)) << s;
  EXPECT_EQ(s.message(), "setting link nope0 up: no network interface named nope0");
  EXPECT_THAT(AddAddress("nope0", kTunV4, 24).message(),
              HasSubstr("adding address 10.89.7.1/24 to nope0"));
  EXPECT_TRUE(absl::IsInvalidArgument(SetLinkUp("a-name-of-16-chr", true)));
}

TEST(Netlink, AddAddressV4AndV6) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  TunDevice tun = MakeConfiguredTun();
  EXPECT_TRUE(HasAddress(kTun, kTunV4, 24));
  EXPECT_TRUE(HasAddress(kTun, kTunV6, 64));
  EXPECT_TRUE(IsLocalAddress(kTunV4).value_or(false));
  // The prefix route sends the rest of the subnet into the device.
  EXPECT_EQ(SourceFor(Ip("10.89.7.200")).value_or(IpAddress()), kTunV4);
  EXPECT_FALSE(IsLocalAddress(Ip("10.89.7.200")).value_or(true));
  EXPECT_EQ(SourceFor(Ip("fd00:89:7::99")).value_or(IpAddress()), kTunV6);
}

TEST(Netlink, AddingAnAddressTwiceIsAlreadyExists) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  TunDevice tun = MakeConfiguredTun();
  const absl::Status s = AddAddress(kTun, kTunV4, 24);
  EXPECT_TRUE(absl::IsAlreadyExists(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("adding address 10.89.7.1/24 to wrench-t0: File exists"));
  EXPECT_TRUE(absl::IsInvalidArgument(AddAddress(kTun, Ip("10.1.1.1"), 33)));
  EXPECT_TRUE(absl::IsInvalidArgument(AddAddress(kTun, Ip("fd00::1"), 129)));
}

TEST(Netlink, AddRouteSendsAnotherSubnetIntoTheDevice) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  TunDevice tun = MakeConfiguredTun();
  EXPECT_EQ(ErrnoOf(SourceFor(Ip("10.99.1.2")).status()), ENETUNREACH);
  ASSERT_TRUE(AddRoute(Ip("10.99.0.0"), 16, kTun).ok());
  EXPECT_EQ(SourceFor(Ip("10.99.1.2")).value_or(IpAddress()), kTunV4);

  ASSERT_TRUE(AddRoute(Ip("fd00:99::"), 32, kTun).ok());
  EXPECT_EQ(SourceFor(Ip("fd00:99::5")).value_or(IpAddress()), kTunV6);

  const absl::Status again = AddRoute(Ip("10.99.0.0"), 16, kTun);
  EXPECT_TRUE(absl::IsAlreadyExists(again)) << again;
  EXPECT_THAT(again.message(), HasSubstr("adding route 10.99.0.0/16 dev wrench-t0"));
}

TEST(Netlink, ListsTheRoutesAndAddressesItAdded) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  TunDevice tun = MakeConfiguredTun();
  ASSERT_TRUE(AddRoute(Ip("10.99.0.0"), 16, kTun).ok());
  absl::StatusOr<std::vector<Ipv4Prefix>> routes = ListIpv4Routes();
  ASSERT_TRUE(routes.ok()) << routes.status();
  std::vector<std::string> seen;
  for (const Ipv4Prefix& r : *routes)
    seen.push_back(absl::StrCat(r.addr.ToString(), "/", r.prefix_len, " ", r.ifname));
  EXPECT_THAT(seen,
              ::testing::UnorderedElementsAre("10.89.7.0/24 wrench-t0", "10.99.0.0/16 wrench-t0"));
  absl::StatusOr<std::vector<Ipv4Prefix>> addresses = ListIpv4Addresses();
  ASSERT_TRUE(addresses.ok()) << addresses.status();
  seen.clear();
  for (const Ipv4Prefix& a : *addresses)
    seen.push_back(absl::StrCat(a.addr.ToString(), "/", a.prefix_len, " ", a.ifname));
  EXPECT_THAT(seen, ::testing::UnorderedElementsAre("127.0.0.1/8 lo", "10.89.7.1/24 wrench-t0"));
}

TEST(Netlink, AddRouteViaAGateway) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  TunDevice tun = MakeConfiguredTun();
  ASSERT_TRUE(AddRoute(Ip("10.98.0.0"), 16, kTun, Ip("10.89.7.254")).ok());
  EXPECT_EQ(SourceFor(Ip("10.98.3.4")).value_or(IpAddress()), kTunV4);
  // A gateway outside every connected subnet is refused by the kernel, with its reason.
  const absl::Status s = AddRoute(Ip("10.97.0.0"), 16, kTun, Ip("192.0.2.1"));
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("adding route 10.97.0.0/16 dev wrench-t0 via 192.0.2.1"));
  EXPECT_TRUE(absl::IsInvalidArgument(AddRoute(Ip("10.97.0.0"), 16, kTun, Ip("fd00::1"))));
}

TEST(Netlink, HostBitsPastThePrefixAreRefusedWithTheKernelsReason) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  TunDevice tun = MakeConfiguredTun();
  const absl::Status s = AddRoute(Ip("10.99.1.2"), 16, kTun);
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  // The extended ACK's text, when the kernel gives one, follows the errno text.
  EXPECT_THAT(s.message(), AllOf(HasSubstr("adding route 10.99.1.2/16"),
                                 HasSubstr("Invalid argument")));
}

TEST(Netlink, AddDefaultRoute) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  TunDevice tun = MakeConfiguredTun();
  EXPECT_EQ(ErrnoOf(SourceFor(Ip("203.0.113.5")).status()), ENETUNREACH);
  ASSERT_TRUE(AddDefaultRoute(kTun).ok());
  EXPECT_EQ(SourceFor(Ip("203.0.113.5")).value_or(IpAddress()), kTunV4);
  ASSERT_TRUE(AddDefaultRoute(kTun, /*ipv6=*/true).ok());
  EXPECT_EQ(SourceFor(Ip("2001:db8::5")).value_or(IpAddress()), kTunV6);
}

TEST(Netlink, WithoutCapNetAdminTheErrorSaysRunAsRoot) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  absl::StatusOr<std::string> out = testing::RunInChild([] {
    absl::Status s = testing::DropEffectiveCapability(CAP_NET_ADMIN);
    if (!s.ok()) return s.ToString();
    return SetLinkUp("lo", false).ToString();
  });
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(*out, AllOf(HasSubstr("PERMISSION_DENIED"), HasSubstr("setting link lo down"),
                          HasSubstr("needs CAP_NET_ADMIN: run as root")));
}

}  // namespace
}  // namespace wrench::proxy
