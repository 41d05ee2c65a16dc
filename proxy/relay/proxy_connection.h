// Proxy's connection as its files share it (proxy.cc: the TUN side and the relay;
// socket_gate.cc: the upstream socket's connect and the gates between its events and
// the rules). Not for other users.
#pragma once

#include <boost/asio.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <vector>

#include "proxy/relay/kernel_socket_leg.h"
#include "proxy/relay/proxy.h"
#include "proxy/relay/relay_loop.h"

namespace wrench::proxy {

// The most one socket-leg event carries (a write or read), so it fits one datagram.
constexpr size_t kSocketEventMax = 65000;
// What a gate holds per direction before the proxy stops reading its source.
constexpr size_t kGateRoom = 256 * 1024;

struct Proxy::Leg {
  Hook in_hook = Hook::kFromClient;
  Hook out_hook = Hook::kToClient;
  TupleKey key;  // remote: the peer; local: our side
  std::unique_ptr<stack::TcpEndpoint> ep;
  RelaySide relay;  // what the relay loop keeps of this leg
};

struct Proxy::Connection {
  enum class Phase { kSynSeen, kConnecting, kOpen, kFailed };
  uint64_t id = 0;
  const Mapping* map = nullptr;
  stack::IpAddress upstream_addr;
  uint16_t upstream_port = 0;
  Phase phase = Phase::kSynSeen;
  Leg client;
  Leg server;                              // upstream over the TUN
  std::optional<stack::TcpRepr> held_syn;  // the client's SYN, answered once upstream is up
  bool resolving = false;                  // the mapping's upstream name is being looked up
  stack::Instant expire_at = stack::kNever;

  // Upstream through a kernel socket, with its gates (below) between it and the rules.
  std::unique_ptr<SocketGate> socket_gate;
  std::unique_ptr<KernelSocketLeg> sock;
  std::unique_ptr<boost::asio::steady_timer> connect_timer;

  // The socket leg as the rules see it (README "Which rules act on which leg"): each
  // connect, write, read, shutdown and reset is an event shaped as a segment, offered
  // at to-server or from-server while some rule watches that hook. Per direction
  // (0: to-server, 1: from-server) the events wait in stream order; one executes once
  // the engine released it and everything before it.
  struct SocketEvent {
    uint32_t seq = 0;
    uint8_t flags = 0;
    bool released = false;
    bool reset = false;  // an rst rule replaced it
    std::vector<uint8_t> data;
  };
  std::deque<SocketEvent> gate[2];
  uint32_t gate_seq[2] = {
      0, 0};  // next sequence number per direction: every byte, FIN and SYN, gated or not
  size_t gate_bytes[2] = {0, 0};

  uint64_t bytes_to_server = 0, bytes_to_client = 0;

  // A control-API proxy's connection (Mapping::scope, Mapping::toxics).
  uint64_t scope = 0;
  std::unique_ptr<ConnectionToxics> toxics;
};

// The upstream socket's gates as its leg sees them (socket_gate.cc): a direction is
// held while a rule watches its hook or events of it still wait; an event taken is
// offered to the engine as a segment and applied once released, in stream order.
class Proxy::SocketGate final : public KernelSocketLeg::Gate {
 public:
  SocketGate(Proxy& proxy, Connection& c) : proxy_(proxy), c_(c) {}
  bool Holds(Direction d) const override { return proxy_.Gated(c_, HookOf(d)); }
  size_t Room(Direction d) const override;
  void Take(Direction d, uint8_t flags, absl::Span<const uint8_t> data) override;
  void Passed(Direction d, uint8_t flags, size_t bytes) override;
  static Hook HookOf(Direction d) { return d == kOut ? Hook::kToServer : Hook::kFromServer; }

 private:
  Proxy& proxy_;
  Connection& c_;
};

}  // namespace wrench::proxy
