// A running wrench: the TUN device configured through rtnetlink, the fault engine,
// the proxy, captures and the control API, all on one Asio io_context. `wrench
// proxy`, `wrench exec` and the integration tests start one of these.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio.hpp>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "proxy/api/api_host.h"
#include "proxy/app/summary.h"
#include "proxy/app/version.h"
#include "proxy/fault/fault_engine.h"
#include "proxy/fault/rule.h"
#include "proxy/os/tun_device.h"
#include "proxy/relay/capture.h"
#include "proxy/relay/proxy.h"

namespace wrench::proxy {

class ControlApi;
class Dnat;
class ServeProxy;

// Parses --net6: "fd89:2e6c:4f1a:5900::/64"; host bits are refused as --net's are.
absl::StatusOr<std::pair<stack::IpAddress, int>> ParseNet6(absl::string_view text);
// --net6's default for a --net: the unique local prefix (RFC 4193) fd89:2e6c:4f1a::/48,
// global ID 89:2e6c:4f1a, with the second and third bytes of --net as its subnet ID:
// 10.89.0.0/24 gives fd89:2e6c:4f1a:5900::/64, so two wrenches with different --net
// get different IPv6 prefixes too.
std::pair<stack::IpAddress, int> DefaultNet6(const stack::IpAddress& net);

struct ServiceOptions {
  std::vector<Mapping> maps;
  std::string tun_name = "wrench0";
  stack::IpAddress net_addr = stack::IpAddress::V4(0x0a590000);  // --net 10.89.0.0/24
  int prefix_len = 24;
  // --net6: the TUN's IPv6 prefix beside --net (DefaultNet6 of --net unless given);
  // the kernel gets its first address. prefix6_len 0: the TUN is IPv4 only (--net6 none).
  stack::IpAddress net6_addr = DefaultNet6(stack::IpAddress::V4(0x0a590000)).first;
  int prefix6_len = 64;
  int mtu = 1500;
  // Checksum and TCP segmentation offload on the TUN (proxy/os/tun_device.h), as far as
  // the kernel grants them; --offload=false turns them off.
  bool offload = true;
  UpstreamVia upstream_via = UpstreamVia::kSocket;
  std::vector<Rule> rules;
  uint64_t seed = 1;
  std::string pcap_path;
  std::string log_path;
  std::string api_address;  // HOST:PORT, empty: no API
  stack::TcpConfig tcp;
  // wrench exec: connections to any address are accepted and relayed to the same
  // destination; the gateway address (the first of --net) reaches 127.0.0.1, the
  // first of --net6 reaches ::1.
  bool transparent = false;
  // A TUN device already created and configured elsewhere (wrench exec's child
  // made it inside the command's namespace); -1: create and configure one here.
  int tun_fd = -1;
  // Where lines about connections and the summary go (stderr in the CLI).
  std::function<void(const std::string&)> log_line;
  bool verbose = false;  // a line for every connection event
  // wrench exec --serve (proxy/relay/serve_proxy.h): accept on `serve_listen` here and relay
  // each connection over the TUN to the command's address, port `serve_port`; 0: off.
  uint16_t serve_port = 0;
  boost::asio::ip::tcp::endpoint serve_listen;
  // --allow-idle-rules: a rule that can never fire on this run's legs (README, "Which
  // rules act on which leg") is kept with a warning instead of refused.
  bool allow_idle_rules = false;
  // wrench serve: when the TUN cannot be created for want of /dev/net/tun or
  // CAP_NET_ADMIN (a container started without them), run on without it, one log line
  // saying so: the API's proxies are kernel sockets with the stream toxics only.
  bool tun_optional = false;
};

// Parses --net: "10.89.0.0/24"; an address with bits set past the prefix
// ("10.89.0.0/8") is refused with the subnet it would have meant.
absl::StatusOr<std::pair<stack::IpAddress, int>> ParseNet(absl::string_view text);
// FailedPrecondition naming the route or address of this network namespace that
// overlaps net/prefix_len (the default route aside); the TUN's subnet must be free.
// IPv4 (--net) or IPv6 (--net6), by net's family.
absl::Status CheckNetIsFree(const stack::IpAddress& net, int prefix_len);
// Raises the soft RLIMIT_NOFILE to the hard limit; "" when done (or nothing to do),
// else what went wrong.
std::string RaiseFileLimit();
// The first address of the subnet (IPv4 or IPv6): the kernel's side of the TUN.
stack::IpAddress KernelAddress(const stack::IpAddress& net, int prefix_len);

class Service final : public ApiHost {
 public:
  // Creates and configures the device, opens captures, binds the API. Errors are
  // for the user: a missing privilege, a busy device name, a bad file.
  static absl::StatusOr<std::unique_ptr<Service>> Start(ServiceOptions opts);
  ~Service();

  // Runs the loop until Stop() (or SIGINT/SIGTERM when HandleSignals() was called).
  void Run();
  // Thread-safe: asks the loop to shut down cleanly.
  void Stop();
  // SIGINT/SIGTERM stop cleanly; SIGUSR1 prints a summary line.
  void HandleSignals();

  const char* version() const override { return kVersion; }
  boost::asio::io_context& io() override { return io_; }
  Proxy& proxy() override { return *proxy_; }
  FaultEngine& engine() override { return engine_; }
  const ServiceOptions& options() const { return opts_; }
  uint64_t seed() const override { return opts_.seed; }
  void Log(const std::string& line) const override { opts_.log_line(line); }
  std::string TunSubnet() const override;
  stack::IpAddress kernel_address() const override {
    return KernelAddress(opts_.net_addr, opts_.prefix_len);
  }
  // The kernel's IPv6 address on the TUN; nullopt when the TUN is IPv4 only.
  std::optional<stack::IpAddress> kernel_address6() const override;
  // The API's bound port (useful with port 0), 0 without an API.
  uint16_t api_port() const;
  // The run's report, taken at shutdown before open connections are reset (null
  // until then).
  const RunReport* final_report() const { return final_report_ ? &*final_report_ : nullptr; }
  // Runs `f` on the loop's thread and waits for it (for tests and the API).
  void RunOnLoop(std::function<void()> f);

  // The control API's proxies on the TUN (proxy/api/control_api.h), on the loop's thread:
  // the front is checked as --map's are (`what` names it in errors), then mapped.
  absl::Status AddMapping(Mapping m, absl::string_view what) override;
  // Every mapping of the scope: a proxy DNATed from [::] has an IPv4 and an IPv6 front.
  bool RemoveMapping(uint64_t scope) override {
    bool removed = false;
    while (proxy_->RemoveMapping(scope)) removed = true;
    return removed;
  }
  // Inside --net or --net6: reached through the TUN.
  bool InTunSubnet(const stack::IpAddress& addr) const override;
  // False when tun_optional let the service start without its TUN device.
  bool has_tun() const { return tun_.has_value(); }
  // Whether a rule could match a data segment read from the TUN: then super-segments
  // are split into their wire segments before the engine sees them.
  bool RuleSeesTunData() const;
  // Whether a rule may act on the ACKs and data wrench's endpoint sends on a TUN leg.
  bool RuleSeesTunAcks() const;
  // Cuts a super-segment into its wire segments for `deliver`, as a burst unless
  // RuleSeesTunAcks; false when it is not one SplitSuperSegment can cut.
  bool SplitAndDeliver(absl::Span<const uint8_t> datagram, const stack::VnetHdr& hdr,
                       absl::FunctionRef<void(absl::Span<const uint8_t>)> deliver);
  // What the TUN negotiated with the kernel (none without a TUN).
  TunOffloads tun_offloads() const { return tun_ ? tun_->offloads() : TunOffloads{}; }
  // nftables DNAT into the TUN (proxy/os/dnat.h), set up on first use and torn down at
  // shutdown; the error (kept, and logged once) says why it is unavailable.
  absl::StatusOr<Dnat*> dnat() override;
  // The front that DNATed connections reach: the subnet's last host address (of
  // --net6 for IPv6 clients; nullopt when the TUN is IPv4 only).
  stack::IpAddress DnatFront() const override;
  std::optional<stack::IpAddress> DnatFront6() const override;

  // Whether `rule` can fire on the legs of this run: some hook of its on= must be on a
  // leg where its action acts, with flags a segment or socket event there can carry.
  // Without, an InvalidArgument error says which actions act on which leg; with
  // allow_idle_rules, a warning goes to the log and the result is OK. `what` names
  // the rule in the message ("rule #2", "--rule").
  absl::Status CheckRuleCanFire(const Rule& rule, absl::string_view what) const override;

 private:
  explicit Service(ServiceOptions opts);
  // The --net6 address on the TUN; without IPv6 in the namespace, the TUN stays IPv4
  // only (prefix6_len 0) unless a --map front needs it.
  absl::Status ConfigureTun6();
  void ReadTun();
  // Writes the wire segments of a super-segment passed whole to the capture, if one
  // is kept; false when `datagram` is not a TCP super-segment (it is split instead,
  // which refuses it too, and delivered as it came).
  bool SplitIntoCapture(absl::Span<const uint8_t> datagram, const stack::VnetHdr& hdr);
  void Shutdown();
  void OnSignal(boost::system::error_code ec, int sig);

  class TunSink;
  ServiceOptions opts_;
  boost::asio::io_context io_;
  std::optional<TunDevice> tun_;
  std::unique_ptr<TunSink> sink_;
  std::unique_ptr<boost::asio::posix::stream_descriptor> tun_stream_;
  FaultEngine engine_;
  std::unique_ptr<Proxy> proxy_;
  std::unique_ptr<ServeProxy> serve_;  // --serve: all of the TUN's traffic is its
  std::optional<PcapWriter> pcap_;
  std::optional<JsonLog> log_;
  std::unique_ptr<Dnat> dnat_;
  absl::Status dnat_error_;
  std::unique_ptr<ControlApi> api_;
  std::unique_ptr<boost::asio::signal_set> signals_;
  std::vector<uint8_t> read_buf_;
  std::atomic<bool> stopped_{false};
  std::optional<RunReport> final_report_;
};

}  // namespace wrench::proxy
