// `wrench exec --serve`: the inverse of the transparent proxy. Connections accepted on
// a kernel socket in the caller's namespace are re-opened by one of our own TCP
// endpoints over the TUN to a server in the command's namespace, so the server leg
// carries real segments that the fault engine's to-server/from-server hooks act on.
#pragma once

#include <boost/asio.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "proxy/fault/fault_engine.h"
#include "proxy/os/accept_loop.h"
#include "proxy/relay/kernel_socket_leg.h"
#include "proxy/relay/tun_side.h"
#include "proxy/relay/tuple_key.h"
#include "stack/ip.h"
#include "stack/segment.h"
#include "stack/tcp_endpoint.h"
#include "stack/time.h"

namespace wrench::proxy {

class JsonLog;
class PcapWriter;

struct ServeOptions {
  boost::asio::ip::tcp::endpoint listen;  // in the caller's namespace, e.g. 127.0.0.1:8000
  stack::IpAddress gateway_addr;          // our side on the TUN (10.89.0.1)
  stack::IpAddress server_addr;           // the command's address (10.89.0.2)
  uint16_t server_port = 0;
  stack::TcpConfig tcp;  // the server leg's endpoint settings; the tuple is filled in
};

struct ServeStats {
  uint64_t connections = 0, active = 0, refused = 0, resets = 0;
  uint64_t bytes_to_server = 0, bytes_to_client = 0;
  uint64_t datagrams_in = 0, datagrams_out = 0, stray_segments = 0;
};

class ServeProxy : private KernelSocketLeg::Owner, private TunSide::Owner {
 public:
  ServeProxy(boost::asio::io_context& io, DatagramSink& sink, FaultEngine& engine,
             ServeOptions opts);
  ~ServeProxy();
  ServeProxy(const ServeProxy&) = delete;
  ServeProxy& operator=(const ServeProxy&) = delete;

  // Binds and listens; an error is for the user (port in use, bad address).
  absl::Status Start();
  void set_pcap(PcapWriter* pcap) { tun_.set_pcap(pcap); }
  void set_log(JsonLog* log) { log_ = log; }
  void set_event_log(std::function<void(const std::string&)> f) { event_log_ = std::move(f); }

  // One datagram read from the TUN (all of them, in serve mode).
  // `whole_super_segment` as for Proxy::OnDatagram.
  void OnDatagram(absl::Span<const uint8_t> datagram, bool whole_super_segment = false);
  // As Proxy's: the wire segments of one super-segment, answered once at the end.
  void BeginBurst() { tun_.BeginBurst(); }
  void EndBurst() { tun_.EndBurst(); }
  // Stops accepting and resets every connection (RST on both legs).
  void Shutdown();
  const ServeStats& stats() const { return stats_; }
  std::string Summary() const;

 private:
  struct Connection;
  void Event(const Connection& c, const std::string& what);
  void Log(const Connection* c, Hook hook, const stack::Segment& seg,
           std::optional<stack::TcpState> before, std::optional<stack::TcpState> after,
           const Decision* decision, stack::Instant at);
  void OnAccepted(boost::asio::ip::tcp::socket sock);
  void Service(Connection& c);
  // Moves bytes, FIN and RST between the client's socket and the server leg
  // (relay_loop.h).
  void Relay(Connection& c);
  void MaybeFinish(Connection& c);
  void Remove(Connection& c);
  // Sends what the endpoint has due; true when a rule's RST ended the server leg.
  bool Flush(Connection& c);
  void Deliver(Connection& c, const stack::Segment& seg);

  // KernelSocketLeg::Owner.
  void OnSocketCompletion(uint64_t conn, const KernelSocketLeg& leg,
                          const KernelSocketLeg::Completion& done) override;
  // TunSide::Owner.
  void OnReleased(const SegmentMeta& meta, absl::Span<const uint8_t> datagram) override;
  void Reap() override;
  void OnDeadline(uint64_t conn, stack::Instant now) override;
  void OnBurstEnd(uint64_t conn) override;

  boost::asio::io_context& io_;
  DatagramSink& sink_;
  FaultEngine& engine_;
  ServeOptions opts_;
  boost::asio::ip::tcp::acceptor acceptor_;
  JsonLog* log_ = nullptr;
  std::function<void(const std::string&)> event_log_;
  ServeStats stats_;
  uint64_t next_id_ = 0;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Connection>> conns_;
  std::vector<std::unique_ptr<Connection>> graveyard_;  // removed, freed at the entry point's end
  absl::flat_hash_map<TupleKey, Connection*> by_tuple_;
  std::vector<uint8_t> relay_buf_;  // bytes moving between legs
  TunSide tun_{io_, sink_, engine_, *this, stats_.datagrams_out};
  bool shutting_down_ = false;
  AcceptLoop accept_;  // last: its handler uses the members above
};

}  // namespace wrench::proxy
