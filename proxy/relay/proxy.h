// The man in the middle (docs/ARCHITECTURE.md "Proxy data flow"): datagrams from the TUN are
// parsed, offered to the fault engine at their hook, and handed to the proxy's own
// TCP endpoints; the relay moves bytes between the client leg and the upstream leg
// (a kernel socket through Asio, or a second endpoint of ours over the same TUN).
// One single-threaded Asio loop drives it all, with one timer for every deadline.
#pragma once

#include <boost/asio.hpp>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "proxy/fault/fault_engine.h"
#include "proxy/fault/stream_toxics.h"
#include "proxy/os/host_lookup.h"
#include "proxy/relay/kernel_socket_leg.h"
#include "proxy/relay/mapping.h"
#include "proxy/relay/tun_side.h"
#include "proxy/relay/tuple_key.h"
#include "stack/ip.h"
#include "stack/segment.h"
#include "stack/tcp_endpoint.h"
#include "stack/time.h"

namespace wrench::proxy {

class JsonLog;
class PcapWriter;

enum class UpstreamVia { kSocket, kTun };

struct ProxyOptions {
  std::vector<Mapping> maps;
  UpstreamVia upstream_via = UpstreamVia::kSocket;
  // Endpoint settings for both legs (buffers, MSL, RTO...). Ports and addresses are
  // filled in per connection.
  stack::TcpConfig tcp;
  // Transparent mode (wrench exec): a SYN to any address not mapped is accepted too,
  // and relayed to the same destination — or to `gateway_target` when it is sent to
  // the gateway address itself (the kernel's TUN address, as slirp's 10.0.2.2).
  bool transparent = false;
  stack::IpAddress gateway_addr;
  stack::IpAddress gateway_target = stack::IpAddress::V4(0x7f000001);
  // The same for IPv6: the kernel's --net6 address reaches ::1 (unset: no IPv6).
  std::optional<stack::IpAddress> gateway_addr6;
  stack::IpAddress gateway_target6 =
      stack::IpAddress::V6({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
  // How long an upstream connect may take before the client is left to time out.
  stack::Duration connect_timeout = absl::Seconds(75);
};

struct ConnectionInfo {
  uint64_t id = 0;
  std::string client;    // "10.89.0.1:43512"
  std::string front;     // "10.89.0.2:80"
  std::string upstream;  // "127.0.0.1:8080"
  std::string client_leg_state;
  std::string server_leg_state;  // endpoint state (tun), or socket state
  uint64_t bytes_to_server = 0, bytes_to_client = 0;
  uint64_t scope = 0;  // Mapping::scope
};

// One connection's story for a run's verdict (proxy/app/summary.h): its description as
// it stood when it closed (or at the end of the run), the states each leg of ours
// went through, and what went wrong.
struct ConnectionRecord {
  ConnectionInfo info;
  bool closed = false;  // left the table before the end of the run
  // Bit i: the leg's endpoint was in stack::TcpState(i) at some point (the client
  // leg, and the server leg when it is one of our endpoints; a socket leg has none).
  uint16_t client_visited = 0, server_visited = 0;
  // "upstream refused the connection", "client leg: reset (...)", in order.
  std::vector<std::string> errors;
};

struct ProxyStats {
  uint64_t connections = 0;  // accepted (upstream connect started)
  uint64_t active = 0;
  uint64_t refused = 0;      // upstream refused: client got RST
  uint64_t unreachable = 0;  // upstream connect timed out or failed otherwise
  uint64_t out_of_fds = 0;   // no socket for the upstream: EMFILE or ENFILE
  uint64_t resets = 0;       // connections that ended in a reset, either side
  uint64_t bytes_to_server = 0, bytes_to_client = 0;
  uint64_t datagrams_in = 0, datagrams_out = 0;
  uint64_t not_tcp = 0;         // other protocols (neighbour discovery, ICMP, UDP): ignored
  uint64_t bad_datagrams = 0;   // TCP that could not be parsed (the first reasons are logged)
  uint64_t stray_segments = 0;  // for no connection: answered with RST
};

class Proxy : private KernelSocketLeg::Owner, private TunSide::Owner {
 public:
  Proxy(boost::asio::io_context& io, DatagramSink& sink, FaultEngine& engine, ProxyOptions opts);
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  void set_pcap(PcapWriter* pcap) { tun_.set_pcap(pcap); }
  void set_log(JsonLog* log) { log_ = log; }
  // A line for every connection event ("conn 3 10.89.0.1:4242 -> ... ESTABLISHED").
  void set_event_log(std::function<void(const std::string&)> f) { event_log_ = std::move(f); }
  // Lines worth saying without --verbose (running out of file descriptors).
  void set_warning_log(std::function<void(const std::string&)> f) { warning_log_ = std::move(f); }

  // One datagram read from the TUN.
  // `whole_super_segment`: a TCP super-segment read with offloads and passed whole
  // because no rule looks at its data segments. The kernel left its checksum to the
  // device and vouches for the bytes, so it is not verified; its wire segments are in
  // the capture already (the caller wrote them).
  void OnDatagram(absl::Span<const uint8_t> datagram, bool whole_super_segment = false);
  // The wire segments of one super-segment: OnDatagram for each between these two,
  // answered once at the end (TunSide::BeginBurst).
  void BeginBurst() { tun_.BeginBurst(); }
  void EndBurst() { tun_.EndBurst(); }
  // Aborts every connection (RST on both legs) — for a clean exit.
  void Shutdown();

  // Mappings added and removed while the loop runs (the control API's proxies). The
  // caller has checked the front address (Service::AddMapping); AlreadyExists when
  // the front is mapped already.
  absl::Status AddMapping(Mapping m);
  // Removes the mapping with this scope and resets its connections; false if none.
  bool RemoveMapping(uint64_t scope);
  // Services the connections of a scope now: a changed toxic takes effect (a timeout's
  // timer starts, a removed latency releases what it held) without waiting for traffic.
  void Refresh(uint64_t scope);
  // Bytes relayed to the server and to the client by a scope's connections, closed
  // ones included (the API's metrics).
  std::pair<uint64_t, uint64_t> ScopeBytes(uint64_t scope) const;

  const ProxyStats& stats() const { return stats_; }
  std::vector<ConnectionInfo> Connections() const;
  std::string Summary() const;
  // Every connection of the run by id, open ones as they stand now. The oldest closed
  // ones beyond kMaxRecords are forgotten (records_forgotten() counts them).
  std::vector<ConnectionRecord> Records() const;
  uint64_t records_forgotten() const { return records_forgotten_; }
  static constexpr size_t kMaxRecords = 10000;

 private:
  struct Connection;
  struct Leg;
  class SocketGate;
  Connection* NewConnection(const stack::Segment& syn, const Mapping* map,
                            stack::IpAddress upstream_addr, uint16_t upstream_port);
  void Inbound(Connection& c, Leg& leg, const stack::Segment& seg, absl::Span<const uint8_t> bytes);
  void DeliverToLeg(Connection& c, Leg& leg, const stack::Segment& seg);
  void StartUpstream(Connection& c);
  // Logs the leg's state changes and records the states it visits in `visited`.
  void WatchStates(Connection& c, Leg& leg, const char* name, uint16_t ConnectionRecord::*visited);
  void OnUpstreamConnected(Connection& c);
  void OnUpstreamFailed(Connection& c, bool refused, const std::string& why);
  void OnOutOfDescriptors(Connection& c, const boost::system::error_code& ec);
  void AcceptClient(Connection& c);
  void Service(Connection& c);
  // Sends what the leg's endpoint has due; true when a rule's RST ended the leg.
  bool FlushLeg(Connection& c, Leg& leg);
  // Returns true when a rule replaced the segment with a RST.
  // `datagram` is `seg` as just emitted; the engine reads it through a view.
  bool Transmit(Connection* c, const SegmentMeta& meta, absl::Span<const uint8_t> datagram,
                const stack::Segment& seg);
  // Moves bytes, FIN and RST between the two legs (relay_loop.h).
  void Relay(Connection& c);
  void OnSocketCompletion(uint64_t conn, const KernelSocketLeg& leg,
                          const KernelSocketLeg::Completion& done) override;
  void ConnectSocket(Connection& c);
  bool Gated(const Connection& c, Hook hook) const;
  void OfferSocketEvent(Connection& c, Hook hook, uint8_t flags, absl::Span<const uint8_t> data);
  void DrainSocketGates(Connection& c);
  void AbortSocket(Connection& c, const std::string& why);
  void MaybeFinish(Connection& c);
  void Remove(Connection& c);
  void SendStrayRst(const stack::Segment& seg);
  void Reschedule(Connection& c);
  // TunSide::Owner.
  void OnReleased(const SegmentMeta& meta, absl::Span<const uint8_t> datagram) override;
  void Reap() override;
  void OnDeadline(uint64_t conn, stack::Instant now) override;
  void OnBurstEnd(uint64_t conn) override;
  void LogSegment(const Connection* c, Hook hook, const stack::Segment& seg,
                  std::optional<stack::TcpState> before, std::optional<stack::TcpState> after,
                  const Decision* decision, stack::Instant at = stack::Instant());
  void Event(const Connection& c, const std::string& what);
  ConnectionInfo Info(const Connection& c) const;
  void RecordError(const Connection& c, std::string what);
  const Mapping* FindMapping(const stack::IpAddress& addr, uint16_t port) const;
  Leg* FindLeg(const TupleKey& key, Connection** conn);

  boost::asio::io_context& io_;
  HostResolver resolver_{io_};
  DatagramSink& sink_;
  FaultEngine& engine_;
  ProxyOptions opts_;
  std::list<Mapping> runtime_maps_;  // a list: connections point at their mapping
  absl::flat_hash_map<uint64_t, std::pair<uint64_t, uint64_t>>
      scope_bytes_;  // of closed connections
  JsonLog* log_ = nullptr;
  std::function<void(const std::string&)> event_log_;
  std::function<void(const std::string&)> warning_log_;
  ProxyStats stats_;
  std::map<uint64_t, ConnectionRecord> records_;  // by id: ordered, the oldest first
  uint64_t records_forgotten_ = 0;

  uint64_t next_id_ = 0;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Connection>> conns_;
  std::vector<std::unique_ptr<Connection>> graveyard_;  // removed, freed by the entry point
  absl::flat_hash_map<TupleKey, std::pair<Connection*, Leg*>> by_tuple_;

  std::vector<uint8_t> relay_buf_;  // bytes moving between legs
  TunSide tun_{io_, sink_, engine_, *this, stats_.datagrams_out};
  bool shutting_down_ = false;
};

}  // namespace wrench::proxy
