// Tests for the TUN device (proxy/os/tun_device.h) against the real kernel, each inside a
// fresh network namespace: the kernel's SYN comes out of the device and parses, a
// SYN-ACK or RST written back completes or refuses its connect, busy names fail.
#include "proxy/os/tun_device.h"

#include <net/if.h>
#include <sys/ioctl.h>

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proxy/os/netlink.h"
#include "stack/segment.h"
#include "tests/netns_testing.h"

namespace wrench::proxy {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using stack::IpAddress;
using stack::SeqNum;
using stack::TcpFlags;
using stack::TcpState;
using testing::ErrnoOf;
using testing::ReadTunSegment;

constexpr char kTunName[] = "wrench-t0";
const IpAddress kKernelV4 = *IpAddress::Parse("10.89.7.1");
const IpAddress kPeerV4 = *IpAddress::Parse("10.89.7.2");
const IpAddress kKernelV6 = *IpAddress::Parse("fd00:89:7::1");
const IpAddress kPeerV6 = *IpAddress::Parse("fd00:89:7::2");
constexpr absl::Duration kWait = absl::Seconds(5);

TunDevice MakeTun(int mtu = 1500) {
  absl::StatusOr<TunDevice> tun = TunDevice::Create(kTunName, mtu);
  EXPECT_TRUE(tun.ok()) << tun.status();
  return std::move(tun).value();
}

// The device's MTU as the kernel has it (SIOCGIFMTU), independent of our netlink code.
int KernelMtu(const std::string& name) {
  UniqueFd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  return ::ioctl(s.get(), SIOCGIFMTU, &ifr) == 0 ? ifr.ifr_mtu : -1;
}

// Starts a kernel connect that the test answers through the TUN; non-blocking.
UniqueFd StartConnect(const IpAddress& dst, uint16_t port) {
  UniqueFd fd(::socket(dst.is_v6() ? AF_INET6 : AF_INET,
                       SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  EXPECT_TRUE(fd.valid());
  sockaddr_storage ss;
  const socklen_t len = testing::ToSockaddr(dst, port, &ss);
  EXPECT_EQ(::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len), -1);
  EXPECT_EQ(errno, EINPROGRESS);
  return fd;
}

// Reads from the TUN the first segment to dst:port with exactly `flags`.
stack::Segment ExpectSegmentTo(const TunDevice& tun, const IpAddress& dst, uint16_t port,
                               TcpFlags flags, std::vector<uint8_t>* storage) {
  absl::StatusOr<std::vector<uint8_t>> d =
      ReadTunSegment(tun, kWait, [&](const stack::Segment& s) {
        return s.dst() == dst && s.tcp.dst_port == port && s.tcp.flags == flags;
      });
  EXPECT_TRUE(d.ok()) << d.status() << " (wanted " << flags << " to " << dst << ":" << port
                      << ")";
  if (!d.ok()) return {};
  *storage = std::move(d).value();
  return *stack::ParseSegment(*storage);
}

// The peer's answer to `to`: addresses and ports swapped.
std::vector<uint8_t> Answer(const stack::Segment& to, TcpFlags flags, SeqNum seq, SeqNum ack,
                            std::string_view payload = {}) {
  stack::Segment s;
  if (to.is_v6()) {
    stack::Ipv6Repr ip;
    ip.src = to.dst();
    ip.dst = to.src();
    s.ip = ip;
  } else {
    stack::Ipv4Repr ip;
    ip.src = to.dst();
    ip.dst = to.src();
    s.ip = ip;
  }
  s.tcp.src_port = to.tcp.dst_port;
  s.tcp.dst_port = to.tcp.src_port;
  s.tcp.seq = seq;
  s.tcp.ack = ack;
  s.tcp.flags = flags;
  s.tcp.window = 65535;
  if (flags.has(stack::kSyn)) s.tcp.options.mss = 1460;
  s.tcp.payload = {reinterpret_cast<const uint8_t*>(payload.data()), payload.size()};
  std::vector<uint8_t> out(s.BufferLen());
  absl::StatusOr<size_t> n = stack::EmitSegment(s, absl::MakeSpan(out));
  EXPECT_TRUE(n.ok()) << n.status();
  return out;
}

// The kernel socket's state once it reached ESTABLISHED, or whatever it was stuck in.
TcpState StateOf(int fd) {
  absl::StatusOr<TcpState> s = testing::WaitForTcpState(fd, TcpState::kEstablished, kWait);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.value_or(TcpState::kClosed);
}

const TcpFlags kSyn(stack::kSyn);
const TcpFlags kSynAck(stack::kSyn | stack::kAck);
const TcpFlags kAck(stack::kAck);
const TcpFlags kRstAck(stack::kRst | stack::kAck);

TEST(TunDevice, ExistsWhileTheObjectLivesAndVanishesWithIt) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  {
    TunDevice tun = MakeTun(1400);
    EXPECT_EQ(tun.name(), kTunName);
    EXPECT_EQ(tun.mtu(), 1400);
    EXPECT_GE(tun.fd(), 0);
    EXPECT_TRUE(InterfaceIndex(kTunName).ok());
    EXPECT_EQ(KernelMtu(kTunName), 1400);

    TunDevice moved = std::move(tun);  // the device follows its descriptor
    EXPECT_TRUE(InterfaceIndex(kTunName).ok());
  }
  EXPECT_TRUE(absl::IsNotFound(InterfaceIndex(kTunName).status()));
}

TEST(TunDevice, BusyNameFailsInsteadOfAttaching) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  TunDevice first = MakeTun();
  absl::StatusOr<TunDevice> second = TunDevice::Create(kTunName, 1500);
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(absl::IsAlreadyExists(second.status())) << second.status();
  EXPECT_THAT(second.status().message(),
              AllOf(HasSubstr("cannot create TUN device wrench-t0"), HasSubstr("already exists"),
                    HasSubstr("is another wrench running?")));

  // Not only TUNs: any interface's name is refused.
  absl::StatusOr<TunDevice> lo = TunDevice::Create("lo", 1500);
  EXPECT_TRUE(absl::IsAlreadyExists(lo.status())) << lo.status();
}

TEST(TunDevice, RefusesBadNamesAndMtus) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  EXPECT_THAT(TunDevice::Create("", 1500).status().message(), HasSubstr("bad TUN device name"));
  EXPECT_THAT(TunDevice::Create("a-name-of-16-chr", 1500).status().message(),
              HasSubstr("1 to 15 characters"));
  EXPECT_THAT(TunDevice::Create(kTunName, 67).status().message(), HasSubstr("68..65535"));
  EXPECT_THAT(TunDevice::Create(kTunName, 65536).status().message(), HasSubstr("68..65535"));
  EXPECT_TRUE(TunDevice::Create(kTunName, 65535).ok());
}

TEST(TunDevice, NeedsCapNetAdmin) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  absl::StatusOr<std::string> out = testing::RunInChild([] {
    absl::Status s = testing::DropEffectiveCapability(CAP_NET_ADMIN);
    if (!s.ok()) return s.ToString();
    return TunDevice::Create(kTunName, 1500).status().ToString();
  });
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(*out, AllOf(HasSubstr("PERMISSION_DENIED"),
                          HasSubstr("creating a TUN device needs CAP_NET_ADMIN: run as root")));
}

TEST(TunDevice, ReadReturnsZeroWhenNothingIsQueued) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  TunDevice tun = MakeTun();
  std::vector<uint8_t> buf(1500);
  EXPECT_EQ(tun.Read(absl::MakeSpan(buf)), 0);
}

TEST(TunDevice, WriteWhileTheLinkIsDownIsEio) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  TunDevice tun = MakeTun();
  stack::Segment syn;
  stack::Ipv4Repr ip;
  ip.src = kPeerV4;
  ip.dst = kKernelV4;
  syn.ip = ip;
  std::vector<uint8_t> d = Answer(syn, kSyn, SeqNum(1), SeqNum(0));
  EXPECT_EQ(tun.Write(d), -1);
  EXPECT_EQ(errno, EIO);
}

TEST(TunDevice, ConfigureTunChecksItsMtu) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  {
    TunDevice tun = MakeTun(1500);
    EXPECT_THAT(ConfigureTun(tun, kKernelV4, 24, 9000).message(),
                HasSubstr("MTU 9000 differs from the device's 1500"));
  }
  TunDevice small = MakeTun(1000);
  EXPECT_THAT(ConfigureTun(small, kKernelV6, 64).message(),
              HasSubstr("IPv6 needs an MTU of at least 1280"));
}

// The core promise: the kernel routes the subnet into the device, its SYN parses,
// and what the test writes back is taken as the network's answer.
TEST(TunDevice, KernelSynComesOutAndAWrittenSynAckCompletesTheHandshake) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  TunDevice tun = MakeTun();
  ASSERT_TRUE(ConfigureTun(tun, kKernelV4, 24).ok());

  UniqueFd client = StartConnect(kPeerV4, 9);
  std::vector<uint8_t> syn_bytes;
  stack::Segment syn = ExpectSegmentTo(tun, kPeerV4, 9, kSyn, &syn_bytes);
  EXPECT_EQ(syn.src(), kKernelV4);
  EXPECT_FALSE(syn.is_v6());
  EXPECT_TRUE(syn.tcp.options.mss.has_value());
  EXPECT_EQ(*syn.tcp.options.mss, 1460);  // MTU 1500 - 40

  const SeqNum iss(0x10000000);
  ASSERT_GT(tun.Write(Answer(syn, kSynAck, iss, syn.tcp.seq + 1)), 0);

  std::vector<uint8_t> ack_bytes;
  stack::Segment ack = ExpectSegmentTo(tun, kPeerV4, 9, kAck, &ack_bytes);
  EXPECT_EQ(ack.tcp.seq, syn.tcp.seq + 1);
  EXPECT_EQ(ack.tcp.ack, iss + 1);
  EXPECT_EQ(StateOf(client.get()), TcpState::kEstablished);

  // Data from the kernel comes out with the payload in place.
  ASSERT_TRUE(testing::WriteAll(client.get(), "hello", kWait).ok());
  std::vector<uint8_t> data_bytes;
  stack::Segment data =
      ExpectSegmentTo(tun, kPeerV4, 9, TcpFlags(stack::kPsh | stack::kAck), &data_bytes);
  EXPECT_EQ(std::string(data.tcp.payload.begin(), data.tcp.payload.end()), "hello");
  EXPECT_EQ(data.tcp.seq, syn.tcp.seq + 1);

  // And data written into the device reaches the socket, even a datagram larger than
  // the device's MTU (the MTU only limits what the kernel sends).
  const std::string big(2000, 'x');
  std::vector<uint8_t> in = Answer(data, TcpFlags(stack::kPsh | stack::kAck), iss + 1,
                                   data.tcp.seq + 5, big);
  ASSERT_EQ(tun.Write(in), static_cast<ssize_t>(in.size()));
  EXPECT_EQ(testing::ReadAll(client.get(), kWait, big.size()).value_or(""), big);
}

// A burst of connects while nobody reads: the device queues every SYN (its queue
// is deeper than the kernel's default of 500 for a TUN), so none waits for its 1 s
// retransmission.
TEST(TunDevice, QueuesABurstOfThousandsOfSynsForItsReader) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  TunDevice tun = MakeTun();
  ASSERT_TRUE(ConfigureTun(tun, kKernelV4, 24).ok());
  constexpr int kConnects = 3000;
  std::vector<UniqueFd> clients;
  for (int i = 0; i < kConnects; ++i)
    clients.push_back(StartConnect(kPeerV4, static_cast<uint16_t>(10000 + i)));
  int syns = 0;
  std::vector<uint8_t> buf(65536);
  for (int i = 0; i < 2 * kConnects; ++i) {
    const ssize_t n = tun.Read(absl::MakeSpan(buf));
    if (n <= 0) break;
    auto seg = stack::ParseSegment(absl::MakeConstSpan(buf.data(), static_cast<size_t>(n)));
    if (seg.ok() && seg->tcp.flags == kSyn) ++syns;
  }
  EXPECT_EQ(syns, kConnects);
}

TEST(TunDevice, TheKernelDropsASegmentWithABadChecksumSilently) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  TunDevice tun = MakeTun();
  ASSERT_TRUE(ConfigureTun(tun, kKernelV4, 24).ok());
  UniqueFd client = StartConnect(kPeerV4, 9);
  std::vector<uint8_t> syn_bytes;
  stack::Segment syn = ExpectSegmentTo(tun, kPeerV4, 9, kSyn, &syn_bytes);

  std::vector<uint8_t> bad = Answer(syn, kSynAck, SeqNum(77), syn.tcp.seq + 1);
  bad[bad.size() - 1] ^= 0xff;  // an option byte: the TCP checksum no longer matches
  ASSERT_EQ(tun.Write(bad), static_cast<ssize_t>(bad.size()));  // accepted, then dropped
  absl::StatusOr<std::vector<uint8_t>> ack = ReadTunSegment(
      tun, absl::Milliseconds(200), [](const stack::Segment& s) { return s.tcp.dst_port == 9; });
  EXPECT_TRUE(absl::IsDeadlineExceeded(ack.status())) << "the kernel answered a bad segment";

  ASSERT_GT(tun.Write(Answer(syn, kSynAck, SeqNum(77), syn.tcp.seq + 1)), 0);
  std::vector<uint8_t> ack_bytes;
  EXPECT_EQ(ExpectSegmentTo(tun, kPeerV4, 9, kAck, &ack_bytes).tcp.ack, SeqNum(78));
}

TEST(TunDevice, AWrittenRstRefusesTheKernelsConnect) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  TunDevice tun = MakeTun();
  ASSERT_TRUE(ConfigureTun(tun, kKernelV4, 24).ok());

  UniqueFd client = StartConnect(kPeerV4, 9);
  std::vector<uint8_t> syn_bytes;
  stack::Segment syn = ExpectSegmentTo(tun, kPeerV4, 9, kSyn, &syn_bytes);
  ASSERT_GT(tun.Write(Answer(syn, kRstAck, SeqNum(0), syn.tcp.seq + 1)), 0);

  ASSERT_TRUE(testing::WaitFor(client.get(), POLLOUT, absl::Now() + kWait, "connect").ok());
  int err = 0;
  socklen_t len = sizeof err;
  ASSERT_EQ(::getsockopt(client.get(), SOL_SOCKET, SO_ERROR, &err, &len), 0);
  EXPECT_EQ(err, ECONNREFUSED);
}

TEST(TunDevice, ConnectToHelperReportsRefusalAsEconnrefused) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  TunDevice tun = MakeTun();
  ASSERT_TRUE(ConfigureTun(tun, kKernelV4, 24).ok());
  // Nobody listens on the kernel's own address: the kernel refuses by itself.
  absl::StatusOr<UniqueFd> fd = testing::ConnectTo(kKernelV4, 9, kWait);
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(ErrnoOf(fd.status()), ECONNREFUSED) << fd.status();
  // Silence (nobody answers the SYN coming out of the TUN) is a timeout.
  fd = testing::ConnectTo(kPeerV4, 9, absl::Milliseconds(200));
  EXPECT_TRUE(absl::IsDeadlineExceeded(fd.status())) << fd.status();
}

TEST(TunDevice, Ipv6SynComesOutAndTheHandshakeCompletes) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  TunDevice tun = MakeTun();
  ASSERT_TRUE(ConfigureTun(tun, kKernelV6, 64).ok());
  // ConfigureTun waited for the kernel to accept packets for the address: without
  // that, an answer written at once is sometimes dropped (see WaitUntilLocal).
  EXPECT_TRUE(IsLocalAddress(kKernelV6).value_or(false));

  UniqueFd client = StartConnect(kPeerV6, 9);
  std::vector<uint8_t> syn_bytes;
  stack::Segment syn = ExpectSegmentTo(tun, kPeerV6, 9, kSyn, &syn_bytes);
  EXPECT_TRUE(syn.is_v6());
  EXPECT_EQ(syn.src(), kKernelV6);
  EXPECT_EQ(*syn.tcp.options.mss, 1440);  // MTU 1500 - 60

  const SeqNum iss(0xfffffff0);  // the ACK wraps past 2^32
  ASSERT_GT(tun.Write(Answer(syn, kSynAck, iss, syn.tcp.seq + 1)), 0);
  std::vector<uint8_t> ack_bytes;
  stack::Segment ack = ExpectSegmentTo(tun, kPeerV6, 9, kAck, &ack_bytes);
  EXPECT_EQ(ack.tcp.ack, iss + 1);
  EXPECT_EQ(StateOf(client.get()), TcpState::kEstablished);
}

// The IP header's idea of the datagram's length.
size_t IpTotalLen(absl::Span<const uint8_t> d) {
  const size_t field = (size_t{d[2]} << 8) | d[3];
  if (d[0] >> 4 == 4) return field;
  return 40 + ((size_t{d[4]} << 8) | d[5]);  // IPv6: fixed header + payload length
}

TEST(TunDevice, AShortReadBufferTruncatesTheDatagramAndDropsItsTail) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  TunDevice tun = MakeTun();
  ASSERT_TRUE(ConfigureTun(tun, kKernelV4, 24).ok());
  UniqueFd first = StartConnect(kPeerV4, 9);
  ASSERT_TRUE(testing::WaitFor(tun.fd(), POLLIN, absl::Now() + kWait, "tun").ok());
  std::vector<uint8_t> small(20);
  ASSERT_EQ(tun.Read(absl::MakeSpan(small)), 20);
  EXPECT_GT(IpTotalLen(small), 20u);  // a SYN, or an IPv6 router solicitation

  // No tail of it is left queued: every later read starts a whole datagram, up to
  // the SYN of a second connect.
  UniqueFd second = StartConnect(kPeerV4, 10);
  std::vector<uint8_t> buf(1500);
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(testing::WaitFor(tun.fd(), POLLIN, absl::Now() + kWait, "tun").ok());
    const ssize_t n = tun.Read(absl::MakeSpan(buf));
    ASSERT_GT(n, 0);
    ASSERT_EQ(IpTotalLen(buf), static_cast<size_t>(n));
    absl::StatusOr<stack::Segment> seg = stack::ParseSegment(absl::MakeSpan(buf).first(n));
    if (seg.ok() && seg->tcp.dst_port == 10) break;
  }
}

TEST(TunDevice, WriteRefusesWhatIsNotIp) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  TunDevice tun = MakeTun();
  ASSERT_TRUE(ConfigureTun(tun, kKernelV4, 24).ok());
  std::vector<uint8_t> junk(40, 0x00);  // version nibble 0
  EXPECT_EQ(tun.Write(junk), -1);
  EXPECT_EQ(errno, EINVAL);
}

class TunOffload : public ::testing::TestWithParam<bool> {};

// With offloads the kernel's bulk send comes out of the device as TCP super-segments
// larger than the MTU, which cut into MSS-sized wire segments holding the bytes in
// order; and a super-segment of the peer's written with its GSO header reaches the
// socket whole.
TEST_P(TunOffload, SuperSegmentsComeOutAndGoIn) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  const bool v6 = GetParam();
  absl::StatusOr<TunDevice> made = TunDevice::Create(kTunName, 1500, /*offload=*/true);
  ASSERT_TRUE(made.ok()) << made.status();
  TunDevice tun = std::move(made).value();
  ASSERT_TRUE(tun.offloads().vnet_hdr);
  if (!(v6 ? tun.offloads().tso6 : tun.offloads().tso4)) {
    GTEST_SKIP() << "this kernel grants no TSO" << (v6 ? "6" : "4") << " on a TUN device ("
                 << tun.offloads().ToString() << ")";
  }
  const IpAddress kernel = v6 ? kKernelV6 : kKernelV4;
  const IpAddress peer = v6 ? kPeerV6 : kPeerV4;
  ASSERT_TRUE(ConfigureTun(tun, kernel, v6 ? 64 : 24).ok());

  UniqueFd client = StartConnect(peer, 9);
  std::vector<uint8_t> syn_bytes;
  stack::Segment syn = ExpectSegmentTo(tun, peer, 9, kSyn, &syn_bytes);
  const SeqNum iss(0x20000000);
  ASSERT_GT(tun.Write(Answer(syn, kSynAck, iss, syn.tcp.seq + 1)), 0);
  std::vector<uint8_t> ack_bytes;
  stack::Segment ack = ExpectSegmentTo(tun, peer, 9, kAck, &ack_bytes);
  ASSERT_EQ(StateOf(client.get()), TcpState::kEstablished);
  const size_t mss = *syn.tcp.options.mss;

  // The kernel's first flight: ten segments' worth, in super-segments.
  std::string sent(10 * mss, '\0');
  for (size_t i = 0; i < sent.size(); ++i) sent[i] = static_cast<char>('a' + i % 23);
  ASSERT_TRUE(testing::WriteAll(client.get(), sent, kWait).ok());
  std::string got;
  size_t largest = 0, wire_segments = 0;
  std::vector<uint8_t> buf(65535);
  const absl::Time deadline = absl::Now() + kWait;
  for (int i = 0; i < 1000 && got.size() < sent.size() && absl::Now() < deadline; ++i) {
    stack::VnetHdr hdr;
    const ssize_t n = tun.Read(absl::MakeSpan(buf), &hdr);
    ASSERT_GE(n, 0) << std::strerror(errno);
    if (n == 0) {
      absl::SleepFor(absl::Milliseconds(1));
      continue;
    }
    // The kernel's IPv6 link chatter (router and MLD messages) is not the test's.
    const bool tcp = (buf[0] >> 4 == 4 && buf[9] == stack::kIpProtoTcp) ||
                     (buf[0] >> 4 == 6 && buf[6] == stack::kIpProtoTcp);
    if (!tcp) continue;
    largest = std::max(largest, static_cast<size_t>(n));
    absl::StatusOr<size_t> cut = stack::SplitSuperSegment(
        absl::MakeConstSpan(buf.data(), static_cast<size_t>(n)), hdr,
        [&](absl::Span<const uint8_t> wire) {
          absl::StatusOr<stack::Segment> s = stack::ParseSegment(wire);
          ASSERT_TRUE(s.ok()) << s.status();
          if (s->tcp.dst_port != 9 || s->tcp.payload.empty()) return;
          EXPECT_LE(s->tcp.payload.size(), mss);
          EXPECT_LE(wire.size(), 1500u);
          EXPECT_EQ(s->tcp.seq, syn.tcp.seq + 1 + static_cast<uint32_t>(got.size()));
          got.append(s->tcp.payload.begin(), s->tcp.payload.end());
          ++wire_segments;
        });
    ASSERT_TRUE(cut.ok()) << cut.status();
  }
  EXPECT_EQ(got, sent);
  EXPECT_EQ(wire_segments, 10u);
  EXPECT_GT(largest, 1500u) << "no super-segment came out of the device";

  // The peer's ten segments, merged, in one write.
  std::string payload(10 * 1400, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>('A' + i % 19);
  stack::GsoBatch batch;
  for (size_t i = 0; i < 10; ++i) {
    ASSERT_TRUE(
        batch.Append(Answer(ack, kAck, iss + 1 + static_cast<uint32_t>(i * 1400), ack.tcp.seq,
                            std::string_view(payload).substr(i * 1400, 1400))));
  }
  stack::VnetHdr hdr;
  const absl::Span<const uint8_t> super = batch.Finish(&hdr);
  EXPECT_EQ(hdr.gso_size, 1400);
  ASSERT_EQ(tun.Write(super, hdr), static_cast<ssize_t>(super.size()));
  EXPECT_EQ(testing::ReadAll(client.get(), kWait, payload.size()).value_or(""), payload);
}

INSTANTIATE_TEST_SUITE_P(V4AndV6, TunOffload, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "V6" : "V4"; });

// Without offloads there is no header to carry GSO fields: such a write is refused.
TEST(TunDevice, AGsoWriteWithoutOffloadsIsRefused) {
  WRENCH_ENTER_NETNS_OR_SKIP();
  TunDevice tun = MakeTun();
  EXPECT_FALSE(tun.offloads().vnet_hdr);
  EXPECT_EQ(tun.offloads().ToString(), "none");
  stack::VnetHdr hdr;
  hdr.gso_type = stack::VnetHdr::kGsoTcpV4;
  const std::vector<uint8_t> d(40, 0x45);
  EXPECT_EQ(tun.Write(d, hdr), -1);
  EXPECT_EQ(errno, EINVAL);
}

}  // namespace
}  // namespace wrench::proxy
