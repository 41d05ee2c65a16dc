// Proxy's connection as its files share it (proxy.cc: the TUN side and the relay;
// socket_leg.cc: the upstream leg through a kernel socket). Not for other users.
#pragma once

#include <boost/asio.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <vector>

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

  // Upstream through a kernel socket.
  std::unique_ptr<boost::asio::ip::tcp::socket> sock;
  std::unique_ptr<boost::asio::steady_timer> connect_timer;
  std::vector<uint8_t> to_server;  // being written to the socket
  // Read from the socket, being handed to the client leg. Never zero-filled: a new
  // connection's first read would otherwise clear up to 256 KiB it may not use.
  std::unique_ptr<uint8_t[]> to_client;
  size_t to_client_cap = 0;
  void ReserveToClient(size_t n) {
    if (to_client_cap >= n) return;
    to_client = std::make_unique_for_overwrite<uint8_t[]>(n);
    to_client_cap = n;
  }
  size_t to_client_off = 0, to_client_len = 0;
  bool writing = false, reading = false;
  bool upstream_eof = false, shutdown_sent = false;
  bool upstream_reset = false;
  bool read_closed = false;  // EOF or an error was read (perhaps still held in the gate)

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

// The upstream kernel socket as the relay loop's leg: what was read (or released
// from the from-server gate) is readable; a write is one socket write at a time, or
// to-server events while a rule watches that hook (socket_leg.cc).
class Proxy::SocketLeg final : public ByteLeg {
 public:
  SocketLeg(Proxy& proxy, Connection& c) : proxy_(proxy), c_(c) {}
  size_t readable() const override { return open() ? c_.to_client_len - c_.to_client_off : 0; }
  size_t Read(absl::Span<uint8_t> out) override;
  absl::Span<const uint8_t> Peek() override {
    return {c_.to_client.get() + c_.to_client_off, readable()};
  }
  void Consume(size_t n) override { c_.to_client_off += n; }
  bool eof() const override { return open() && c_.upstream_eof && readable() == 0; }
  bool reset() const override { return c_.upstream_reset; }
  void WantRead(size_t room) override;
  bool writable() const override { return open(); }
  size_t write_space() const override;
  absl::Span<uint8_t> WriteBuffer(size_t n) override;
  void Write(stack::Instant now, absl::Span<const uint8_t> data) override;
  bool writing() const override { return c_.writing; }
  bool closable() const override { return open(); }
  void Close(stack::Instant now) override;
  void End(stack::Instant now, bool reset) override;
  // After the server's FIN: a reset it sends later still resets the client leg.
  static void WatchErrors(Proxy& proxy, Connection& c);

 private:
  bool open() const { return c_.sock && c_.sock->is_open(); }
  Proxy& proxy_;
  Connection& c_;
};

// The kernel socket's TCP state, in the endpoint's terms (for logs and rules).
stack::TcpState KernelSocketState(boost::asio::ip::tcp::socket& sock);

}  // namespace wrench::proxy
