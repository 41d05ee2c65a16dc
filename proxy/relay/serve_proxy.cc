// The serve-mode relay (serve_proxy.h): an accepted kernel socket on one side, our
// endpoint to the wrapped server over the TUN on the other. It follows Proxy's socket
// relay with the roles swapped: the socket is the client, the endpoint the server.
#include "proxy/relay/serve_proxy.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "proxy/relay/capture.h"
#include "proxy/relay/kernel_socket_leg.h"
#include "proxy/relay/relay_loop.h"
#include "stack/tcp_state.h"

namespace wrench::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;
using stack::TcpState;

struct ServeProxy::Connection {
  Connection(ServeProxy& serve, uint64_t id, tcp::socket sock)
      : id(id), client_leg(std::move(sock), serve, id) {}
  uint64_t id = 0;
  std::string client;          // "127.0.0.1:43512", for event lines
  TupleKey key;                // remote: the server; local: our gateway address and port
  KernelSocketLeg client_leg;  // the accepted socket
  std::unique_ptr<stack::TcpEndpoint> ep;
  bool connected = false;
  RelaySide client_side, server_side;  // what the relay loop keeps of each leg
  uint64_t bytes_to_server = 0, bytes_to_client = 0;
};

ServeProxy::ServeProxy(asio::io_context& io, DatagramSink& sink, FaultEngine& engine,
                       ServeOptions opts)
    : io_(io),
      sink_(sink),
      engine_(engine),
      opts_(std::move(opts)),
      acceptor_(io),
      accept_(acceptor_, [this](tcp::socket s) {
        if (shutting_down_) return;
        OnAccepted(std::move(s));
        tun_.EndOfEntry();
      }) {
  relay_buf_.resize(64 * 1024);
}

ServeProxy::~ServeProxy() = default;

absl::Status ServeProxy::Start() {
  boost::system::error_code ec;
  std::string where = absl::StrCat(opts_.listen.address().to_string(), ":", opts_.listen.port());
  acceptor_.open(opts_.listen.protocol(), ec);
  if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_.bind(opts_.listen, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return absl::UnavailableError(
        absl::StrCat("--serve: cannot listen on ", where, ": ", ec.message()));
  accept_.Start();
  return absl::OkStatus();
}

void ServeProxy::Event(const Connection& c, const std::string& what) {
  if (event_log_) event_log_(absl::StrCat("serve conn ", c.id, " ", c.client, ": ", what));
}

// ---------------------------------------------------------------------------
// The client side: accepted kernel sockets.

void ServeProxy::OnAccepted(tcp::socket sock) {
  const uint16_t port = tun_.FreePort([&](uint16_t p) {
    return by_tuple_.contains(
        TupleKey{opts_.server_addr, opts_.gateway_addr, opts_.server_port, p});
  });
  boost::system::error_code ec;
  if (port == 0) {
    sock.set_option(asio::socket_base::linger(true, 0), ec);
    return;  // closed here: the client sees a reset
  }
  auto peer = sock.remote_endpoint(ec);
  std::string client = ec ? "?" : absl::StrCat(peer.address().to_string(), ":", peer.port());
  sock.set_option(tcp::no_delay(true), ec);
  auto c = std::make_unique<Connection>(*this, ++next_id_, std::move(sock));
  c->client = std::move(client);
  c->key = {opts_.server_addr, opts_.gateway_addr, opts_.server_port, port};
  stack::TcpConfig cfg = opts_.tcp;
  cfg.tuple = {opts_.gateway_addr, port, opts_.server_addr, opts_.server_port};
  c->ep = std::make_unique<stack::TcpEndpoint>(cfg);
  uint64_t id = c->id;
  c->ep->set_state_observer([this, id](const stack::StateChange& ch) {
    auto it = conns_.find(id);
    if (it != conns_.end()) {
      Event(*it->second, absl::StrCat("server leg ", StateName(ch.from), " -> ", StateName(ch.to),
                                      " (", ch.cause, ")"));
    }
  });
  Connection& raw = *c;
  by_tuple_[c->key] = &raw;
  conns_[id] = std::move(c);
  ++stats_.connections;
  stats_.active = conns_.size();
  Event(raw, absl::StrCat("accepted: connecting to ", opts_.server_addr.ToString(), ":",
                          opts_.server_port, " from port ", port));
  (void)raw.ep->Connect(MonotonicNow());
  Service(raw);
}

void ServeProxy::OnSocketCompletion(uint64_t conn, const KernelSocketLeg&,
                                    const KernelSocketLeg::Completion& done) {
  auto it = conns_.find(conn);
  if (it == conns_.end()) return;
  Connection& c = *it->second;
  if (std::string what = done.Describe("client"); !what.empty()) Event(c, what);
  if (done.kind == KernelSocketLeg::Completion::Kind::kWritten) {
    c.bytes_to_client += done.bytes;
    stats_.bytes_to_client += done.bytes;
  }
  Service(c);
  tun_.EndOfEntry();
}

// ---------------------------------------------------------------------------
// The relay.

void ServeProxy::Service(Connection& c) {
  uint64_t id = c.id;
  Flush(c);
  if (!c.connected && c.ep->state() == TcpState::kEstablished) {
    c.connected = true;
    Event(c, "server leg connected");
  }
  Relay(c);
  // What the relay queued (data, FIN, RST) goes out now; when a rule's RST ended the
  // server leg there, the relay resets the client at once.
  if (Flush(c)) {
    Relay(c);
    Flush(c);
  }
  if (conns_.contains(id)) MaybeFinish(c);
  if (conns_.contains(id)) tun_.Schedule(id, c.ep->NextDeadline());
}

void ServeProxy::Relay(Connection& c) {
  EndpointLeg server(*c.ep);
  // Serve mode has no stream toxics.
  RelayRun run = RunRelay(c.client_leg, c.client_side, server, c.server_side, nullptr,
                          MonotonicNow(), absl::MakeSpan(relay_buf_), [](ToxicStream::End) {});
  // Bytes to the client are counted as the socket takes them (OnSocketCompletion).
  c.bytes_to_server += run.to_b;
  stats_.bytes_to_server += run.to_b;
  if (run.reset_from_a) {
    ++stats_.resets;
    c.client_leg.End(MonotonicNow(), /*reset=*/false);
  }
  if (run.reset_from_b) {
    // Refused, reset or gave up: the client got a reset (an abortive close).
    if (c.ep->close_reason() == stack::CloseReason::kRefused) {
      ++stats_.refused;
    } else {
      ++stats_.resets;
    }
    Event(c, absl::StrCat("server leg ended: ", c.ep->error(), "; resetting the client"));
  }
}

void ServeProxy::MaybeFinish(Connection& c) {
  if (c.ep->state() != TcpState::kClosed) return;
  const KernelSocketLeg& s = c.client_leg;
  bool client_done =
      !s.open() || s.reset() || (s.eof_received() && s.shutdown_sent() && !s.writing());
  // The server's side ended normally but the client never closed: nothing more can
  // come from the server, so the client gets a FIN (already sent) and we stop here.
  if (!client_done && s.shutdown_sent() && !s.writing() && !s.reading()) client_done = true;
  if (client_done) Remove(c);
}

void ServeProxy::Remove(Connection& c) {
  Event(c, "closed");
  c.client_leg.End(MonotonicNow(), /*reset=*/false);
  by_tuple_.erase(c.key);
  tun_.Schedule(c.id, stack::kNever);
  auto it = conns_.find(c.id);
  graveyard_.push_back(std::move(it->second));
  conns_.erase(it);
  stats_.active = conns_.size();
}

// ---------------------------------------------------------------------------
// The server side: segments over the TUN, through the fault engine.

bool ServeProxy::Flush(Connection& c) {
  return tun_.Flush(*c.ep, c.key, {c.id, Hook::kToServer, TcpState::kClosed, 0},
                    [&](const stack::Segment& s, const SegmentMeta& meta, const Offered& o) {
                      Log(&c, meta.hook, s, meta.state, meta.state, o.last(), MonotonicNow());
                    });
}

void ServeProxy::OnDatagram(absl::Span<const uint8_t> datagram, bool whole_super_segment) {
  ++stats_.datagrams_in;
  stack::Instant now = MonotonicNow();
  if (TunSide::NotTcp(datagram)) return;
  auto parsed = stack::ParseSegment(datagram, {.verify_checksums = !whole_super_segment});
  if (!parsed.ok()) return;
  const stack::Segment& seg = *parsed;
  if (!whole_super_segment) tun_.Capture(now, datagram);
  auto it = by_tuple_.find(TupleKey{seg.src(), seg.dst(), seg.tcp.src_port, seg.tcp.dst_port});
  if (it != by_tuple_.end()) {
    Connection& c = *it->second;
    TcpState before = c.ep->state();
    std::optional<Decision> decision =
        tun_.Receive(now, {c.id, Hook::kFromServer, before, 0}, datagram, seg,
                     [&](const stack::Segment& s) { Deliver(c, s); });
    // (Perhaps removed by now, but alive until the end of the entry point.)
    Log(&c, Hook::kFromServer, seg, before, c.ep->state(), decision ? &*decision : nullptr, now);
  } else if (!seg.tcp.flags.has(stack::kRst) && !seg.is_v6()) {
    // The wrapped command's own outbound connections are not relayed in serve mode.
    ++stats_.stray_segments;
    tun_.SendStrayRst(seg);
  }
  tun_.EndOfEntry();
}

void ServeProxy::Deliver(Connection& c, const stack::Segment& seg) {
  c.ep->OnSegment(MonotonicNow(), seg.tcp);
  if (!tun_.DeferService(c.id)) Service(c);
}

void ServeProxy::OnReleased(const SegmentMeta& meta, absl::Span<const uint8_t> bytes) {
  auto it = conns_.find(meta.conn);
  if (it == conns_.end()) return;
  auto parsed = stack::ParseSegment(bytes);  // a corrupted one fails its checksum here
  if (parsed.ok()) Deliver(*it->second, *parsed);
}

void ServeProxy::Reap() { graveyard_.clear(); }

void ServeProxy::OnDeadline(uint64_t id, stack::Instant now) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  it->second->ep->OnTick(now);
  Service(*it->second);
}

void ServeProxy::OnBurstEnd(uint64_t id) {
  auto it = conns_.find(id);
  if (it != conns_.end()) Service(*it->second);
}

void ServeProxy::Shutdown() {
  shutting_down_ = true;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  stack::Instant now = MonotonicNow();
  std::vector<uint64_t> ids;
  for (const auto& [id, c] : conns_) ids.push_back(id);
  for (uint64_t id : ids) {
    Connection& c = *conns_.at(id);
    if (c.ep->state() != TcpState::kClosed) c.ep->Abort(now);
    Flush(c);
    c.client_leg.End(now, /*reset=*/true);
    Remove(c);
  }
  tun_.Stop();
}

// ---------------------------------------------------------------------------
// Observation.

void ServeProxy::Log(const Connection* c, Hook hook, const stack::Segment& seg,
                     std::optional<TcpState> before, std::optional<TcpState> after,
                     const Decision* decision, stack::Instant at) {
  if (!log_) return;
  log_->Write(RecordOf(at, c ? c->id : 0, hook, seg, before, after, c ? c->ep.get() : nullptr,
                       decision));
}

std::string ServeProxy::Summary() const {
  const std::string rules = tun_.RuleHits();
  return absl::StrFormat(
      "serve: connections %d (%d active, %d refused, %d reset), "
      "bytes to server %d, to client %d, datagrams in %d out %d (%d stray)%s%s",
      stats_.connections, stats_.active, stats_.refused, stats_.resets, stats_.bytes_to_server,
      stats_.bytes_to_client, stats_.datagrams_in, stats_.datagrams_out, stats_.stray_segments,
      rules.empty() ? "" : ", rules: ", rules);
}

}  // namespace wrench::proxy
