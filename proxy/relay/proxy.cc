// The proxy's connection table, both legs and the relay between them (proxy.h).
// Every entry point (a datagram, a timer, an upstream socket completion) ends by
// servicing the connections it touched: endpoint output goes through the fault
// engine to the TUN, bytes move between the legs, and the one timer is re-armed.
#include "proxy/relay/proxy.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "proxy/os/address.h"
#include "proxy/os/host_lookup.h"
#include "proxy/relay/capture.h"

namespace wrench::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;
using stack::Instant;
using stack::IpAddress;
using stack::Segment;
using stack::TcpEndpoint;
using stack::TcpRepr;
using stack::TcpState;

// ---------------------------------------------------------------------------
// Mappings and time.

namespace {


// The most one socket-leg event carries (a write or read), so it fits one datagram.
constexpr size_t kSocketEventMax = 65000;
// What a gate holds per direction before the proxy stops reading its source.
constexpr size_t kGateRoom = 256 * 1024;

IpAddress FromAsio(const asio::ip::address& a) {
  if (a.is_v4()) return IpAddress::V4(a.to_v4().to_uint());
  auto b = a.to_v6().to_bytes();
  std::array<uint8_t, 16> bytes;
  std::copy(b.begin(), b.end(), bytes.begin());
  return IpAddress::V6(bytes);
}

// The kernel socket's own state (Linux numbering, include/net/tcp_states.h).
TcpState KernelSocketState(tcp::socket& sock) {
  if (!sock.is_open()) return TcpState::kClosed;
  tcp_info info{};
  socklen_t len = sizeof info;
  if (::getsockopt(sock.native_handle(), IPPROTO_TCP, TCP_INFO, &info, &len) != 0) return TcpState::kClosed;
  switch (info.tcpi_state) {
    case 1: return TcpState::kEstablished;
    case 2: return TcpState::kSynSent;
    case 3: case 12: return TcpState::kSynReceived;
    case 4: return TcpState::kFinWait1;
    case 5: return TcpState::kFinWait2;
    case 6: return TcpState::kTimeWait;
    case 8: return TcpState::kCloseWait;
    case 9: return TcpState::kLastAck;
    case 10: return TcpState::kListen;
    case 11: return TcpState::kClosing;
    default: return TcpState::kClosed;
  }
}

bool CanSend(TcpState s) {
  return s == TcpState::kEstablished || s == TcpState::kCloseWait;
}

// A leg that ended by reset, abort or timeout before both byte streams were
// complete. A RST in TIME-WAIT (RFC 9293 lets it end TIME-WAIT early) comes after
// both FINs were exchanged and acknowledged: nothing is lost, nothing to relay.
bool EndedAbnormally(const TcpEndpoint& ep) {
  auto r = ep.close_reason();
  bool abnormal = r == stack::CloseReason::kReset || r == stack::CloseReason::kAborted ||
                  r == stack::CloseReason::kTimeout || r == stack::CloseReason::kRefused;
  return ep.state() == TcpState::kClosed && abnormal && !(ep.fin_received() && ep.fin_acked());
}

}  // namespace

absl::StatusOr<Mapping> ParseMapping(absl::string_view text) {
  std::vector<absl::string_view> sides = absl::StrSplit(text, absl::MaxSplits('=', 1));
  if (sides.size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("--map \"", text, "\": expected FRONT_IP:PORT=UPSTREAM_HOST:PORT"));
  }
  auto front = SplitHostPort(sides[0], "--map front");
  if (!front.ok()) return front.status();
  auto up = SplitHostPort(sides[1], "--map upstream");
  if (!up.ok()) return up.status();
  for (auto [side, what] : {std::pair{sides[0], "front"}, std::pair{sides[1], "upstream"}}) {
    if (absl::StartsWith(side, ":")) {
      return absl::InvalidArgumentError(
          absl::StrCat("--map ", what, " \"", side, "\": expected HOST:PORT"));
    }
  }
  Mapping m;
  m.text = std::string(text);
  auto fa = IpAddress::Parse(front->host);
  if (!fa) {
    return absl::InvalidArgumentError(
        absl::StrCat("--map \"", text, "\": front \"", front->host, "\" is not an IP address"));
  }
  m.front_addr = *fa;
  m.front_port = front->port;
  m.upstream_host = up->host;
  m.upstream_port = up->port;
  if (auto ua = IpAddress::Parse(up->host)) {
    m.upstream_addr = *ua;
    return m;
  }
  // A host name: resolve it now, once (the event loop never blocks on DNS).
  auto looked_up = LookUpHost(up->host);
  if (!looked_up.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--map \"", text, "\": cannot resolve \"",
                                                   up->host, "\": ", looked_up.status().message()));
  }
  const asio::ip::address& addr = *looked_up;
  if (addr.is_v4()) {
    m.upstream_addr = IpAddress::V4(addr.to_v4().to_uint());
  } else {
    auto b = addr.to_v6().to_bytes();
    std::array<uint8_t, 16> a;
    std::copy(b.begin(), b.end(), a.begin());
    m.upstream_addr = IpAddress::V6(a);
  }
  return m;
}

Instant MonotonicNow() {
  return absl::UnixEpoch() + absl::FromChrono(std::chrono::steady_clock::now().time_since_epoch());
}

// ---------------------------------------------------------------------------
// Connections.

struct Proxy::Leg {
  Hook in_hook = Hook::kFromClient;
  Hook out_hook = Hook::kToClient;
  TupleKey key;  // remote: the peer; local: our side
  std::unique_ptr<TcpEndpoint> ep;
  bool eof_forwarded = false;    // its FIN became the other leg's FIN / shutdown
  bool reset_forwarded = false;  // its reset became the other leg's reset
};

struct Proxy::Connection {
  enum class Phase { kSynSeen, kConnecting, kOpen, kFailed };
  uint64_t id = 0;
  const Mapping* map = nullptr;
  IpAddress upstream_addr;
  uint16_t upstream_port = 0;
  Phase phase = Phase::kSynSeen;
  Leg client;
  Leg server;  // upstream over the TUN
  std::optional<TcpRepr> held_syn;  // the client's SYN, answered once upstream is up
  Instant expire_at = stack::kNever;
  uint64_t timer_gen = 0;
  Instant scheduled_at = stack::kNever;

  // Upstream through a kernel socket.
  std::unique_ptr<tcp::socket> sock;
  std::unique_ptr<asio::steady_timer> connect_timer;
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
  uint32_t gate_seq[2] = {0, 0};  // next sequence number per direction: every byte, FIN and SYN, gated or not
  size_t gate_bytes[2] = {0, 0};

  uint64_t bytes_to_server = 0, bytes_to_client = 0;

  // A control-API proxy's connection (Mapping::scope, Mapping::toxics).
  uint64_t scope = 0;
  std::unique_ptr<ConnectionToxics> toxics;
};

Proxy::Proxy(asio::io_context& io, DatagramSink& sink, FaultEngine& engine, ProxyOptions opts)
    : io_(io), sink_(sink), engine_(engine), opts_(std::move(opts)), timer_(io, [this] { OnTimer(); }) {
  out_buf_.resize(65536 + 120);
  relay_buf_.resize(64 * 1024);
  engine_.set_decision_observer([this](const Decision& d) { decision_ = d; });
}

Proxy::~Proxy() {
  engine_.set_decision_observer({});
}

const Mapping* Proxy::FindMapping(const IpAddress& addr, uint16_t port) const {
  for (const Mapping& m : opts_.maps) {
    if (m.front_addr == addr && m.front_port == port) return &m;
  }
  for (const Mapping& m : runtime_maps_) {
    if (m.front_addr == addr && m.front_port == port) return &m;
  }
  return nullptr;
}

Proxy::Leg* Proxy::FindLeg(const TupleKey& key, Connection** conn) {
  auto it = by_tuple_.find(key);
  if (it == by_tuple_.end()) return nullptr;
  *conn = it->second.first;
  return it->second.second;
}

void Proxy::Event(const Connection& c, const std::string& what) {
  if (event_log_) {
    event_log_(absl::StrCat("conn ", c.id, " ", FormatHostPort(c.client.key.remote_addr, c.client.key.remote_port),
                            " -> ", FormatHostPort(c.client.key.local_addr, c.client.key.local_port), ": ", what));
  }
}

Proxy::Connection* Proxy::NewConnection(const Segment& syn, const Mapping* map, IpAddress upstream_addr,
                                        uint16_t upstream_port) {
  auto c = std::make_unique<Connection>();
  c->id = ++next_id_;
  c->map = map;
  if (map) {
    c->scope = map->scope;
    if (map->toxics) c->toxics = map->toxics(MonotonicNow());
  }
  c->upstream_addr = upstream_addr;
  c->upstream_port = upstream_port;
  c->client.in_hook = Hook::kFromClient;
  c->client.out_hook = Hook::kToClient;
  c->client.key = {syn.src(), syn.dst(), syn.tcp.src_port, syn.tcp.dst_port};
  c->server.in_hook = Hook::kFromServer;
  c->server.out_hook = Hook::kToServer;
  // A SYN the rules drop leaves a connection that never starts; it goes away
  // unless a retransmitted SYN gets through.
  c->expire_at = MonotonicNow() + opts_.connect_timeout;
  Connection* raw = c.get();
  records_[raw->id].info = Info(*raw);
  while (records_.size() > kMaxRecords && records_.begin()->second.closed) {
    records_.erase(records_.begin());
    ++records_forgotten_;
  }
  by_tuple_[c->client.key] = {raw, &raw->client};
  conns_[raw->id] = std::move(c);
  stats_.active = conns_.size();
  return raw;
}

// ---------------------------------------------------------------------------
// Inbound.

void Proxy::OnDatagram(absl::Span<const uint8_t> datagram, bool checksum_done) {
  ++stats_.datagrams_in;
  Instant now = MonotonicNow();
  // Not TCP (the kernel's IPv6 neighbour discovery, ICMP, UDP): not ours.
  if (!datagram.empty() && ((datagram[0] >> 4 == 4 && datagram.size() > 9 && datagram[9] != stack::kIpProtoTcp) ||
                            (datagram[0] >> 4 == 6 && datagram.size() > 6 && datagram[6] != stack::kIpProtoTcp))) {
    ++stats_.not_tcp;
    return;
  }
  auto parsed = stack::ParseSegment(datagram, {.verify_checksums = !checksum_done});
  if (!parsed.ok()) {
    // Not ours to answer (a kernel would drop it too); counted and logged.
    if (stats_.bad_datagrams++ < 10 && event_log_) {
      event_log_(absl::StrCat("dropped a datagram from the TUN: ", parsed.status().message()));
    }
    return;
  }
  const Segment& seg = *parsed;
  if (pcap_) pcap_->Write(now, datagram);
  TupleKey key{seg.src(), seg.dst(), seg.tcp.src_port, seg.tcp.dst_port};
  Connection* c = nullptr;
  Leg* leg = FindLeg(key, &c);
  if (leg && leg == &c->client && leg->ep && !shutting_down_ && leg->ep->TimeWaitAcceptsSyn(seg.tcp)) {
    // RFC 6191: a new SYN for a client leg in TIME-WAIT (the client reuses its
    // port). The old connection ends here; the SYN opens a new one below.
    Event(*c, "SYN in TIME-WAIT: the connection ends, a new one starts");
    c->client.ep->OnSegment(now, seg.tcp);
    if (conns_.contains(c->id)) Remove(*c);
    leg = nullptr;
    c = nullptr;
  }
  if (leg) {
    Inbound(*c, *leg, seg, datagram);
  } else if (seg.tcp.flags.has(stack::kSyn) && !seg.tcp.flags.any(stack::kAck | stack::kRst) &&
             !shutting_down_) {
    const Mapping* map = FindMapping(seg.dst(), seg.tcp.dst_port);
    if (map) {
      c = NewConnection(seg, map, map->upstream_addr, map->upstream_port);
    } else if (opts_.transparent) {
      IpAddress target = seg.dst() == opts_.gateway_addr ? opts_.gateway_target : seg.dst();
      c = NewConnection(seg, nullptr, target, seg.tcp.dst_port);
    }
    if (c) {
      Inbound(*c, c->client, seg, datagram);
    } else {
      SendStrayRst(seg);
    }
  } else if (!seg.tcp.flags.has(stack::kRst)) {
    SendStrayRst(seg);
  }
  PollEngine();
  ArmTimer();
  graveyard_.clear();
}

void Proxy::Inbound(Connection& c, Leg& leg, const Segment& seg, absl::Span<const uint8_t> bytes) {
  Instant now = MonotonicNow();
  TcpState before = leg.ep ? leg.ep->state() : (&leg == &c.client ? TcpState::kListen : TcpState::kClosed);
  decision_.reset();
  Verdict v = engine_.Offer(now, {c.id, leg.in_hook, before, c.scope}, seg, bytes);
  std::optional<Decision> decision = std::move(decision_);
  decision_.reset();
  if (v == Verdict::kPass) DeliverToLeg(c, leg, seg);
  // (Removed from the table by now, perhaps, but alive until the entry point returns.)
  std::optional<TcpState> after;
  if (leg.ep) after = leg.ep->state();
  LogSegment(&c, leg.in_hook, seg, before, after, decision ? &*decision : nullptr, now);
}

void Proxy::DeliverToLeg(Connection& c, Leg& leg, const Segment& seg) {
  Instant now = MonotonicNow();
  if (!leg.ep) {
    if (&leg != &c.client) return;
    if (seg.tcp.flags.has(stack::kSyn) && !seg.tcp.flags.any(stack::kAck | stack::kRst)) {
      // Keep the SYN to answer once the upstream is up; its options are copied,
      // unknown ones (views into the datagram) are not needed.
      TcpRepr syn = seg.tcp;
      syn.payload = {};
      syn.options.raw_count = 0;
      c.held_syn = syn;
      if (c.phase == Connection::Phase::kSynSeen) StartUpstream(c);
    }
    return;
  }
  leg.ep->OnSegment(now, seg.tcp);
  Service(c);
}

// ---------------------------------------------------------------------------
// The upstream leg.

void Proxy::StartUpstream(Connection& c) {
  c.phase = Connection::Phase::kConnecting;
  ++stats_.connections;
  Instant now = MonotonicNow();
  c.expire_at = stack::kNever;
  Event(c, absl::StrCat("SYN: connecting to upstream ", FormatHostPort(c.upstream_addr, c.upstream_port)));
  if (opts_.upstream_via == UpstreamVia::kTun) {
    // Our own endpoint, from the front address, to the server over the TUN.
    uint16_t port = 0;
    for (int tries = 0; tries < 30000 && port == 0; ++tries) {
      uint16_t p = next_ephemeral_;
      next_ephemeral_ = next_ephemeral_ >= 60999 ? 40000 : next_ephemeral_ + 1;
      TupleKey k{c.upstream_addr, c.client.key.local_addr, c.upstream_port, p};
      if (!by_tuple_.contains(k)) port = p;
    }
    if (port == 0) {
      OnUpstreamFailed(c, false, "no free local port for the upstream leg");
      return;
    }
    c.server.key = {c.upstream_addr, c.client.key.local_addr, c.upstream_port, port};
    stack::TcpConfig cfg = opts_.tcp;
    cfg.tuple = {c.server.key.local_addr, port, c.upstream_addr, c.upstream_port};
    c.server.ep = std::make_unique<TcpEndpoint>(cfg);
    by_tuple_[c.server.key] = {&c, &c.server};
    uint64_t id = c.id;
    c.server.ep->set_state_observer([this, id](const stack::StateChange& ch) {
      if (auto r = records_.find(id); r != records_.end()) r->second.server_visited |= 1u << int(ch.to);
      auto it = conns_.find(id);
      if (it != conns_.end()) {
        Event(*it->second, absl::StrCat("server leg ", StateName(ch.from), " -> ", StateName(ch.to), " (",
                                        ch.cause, ")"));
      }
    });
    (void)c.server.ep->Connect(now);
    Service(c);
    return;
  }
  c.sock = std::make_unique<tcp::socket>(io_);
  c.connect_timer = std::make_unique<asio::steady_timer>(io_);
  if (Gated(c, Hook::kToServer)) {
    // The connect is the to-server SYN: a rule may delay it or turn it into a reset.
    OfferSocketEvent(c, Hook::kToServer, stack::kSyn, {});
    DrainSocketGates(c);
    return;
  }
  ConnectSocket(c);
}

void Proxy::ConnectSocket(Connection& c) {
  c.gate_seq[0] = std::max<uint32_t>(c.gate_seq[0], 1);
  asio::ip::address addr;
  if (c.upstream_addr.is_v6()) {
    asio::ip::address_v6::bytes_type b;
    std::copy(c.upstream_addr.bytes().begin(), c.upstream_addr.bytes().end(), b.begin());
    addr = asio::ip::address_v6(b);
  } else {
    addr = asio::ip::address_v4(c.upstream_addr.v4_host_order());
  }
  uint64_t id = c.id;
  c.sock->async_connect(tcp::endpoint(addr, c.upstream_port), [this, id](boost::system::error_code ec) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    Connection& conn = *it->second;
    conn.connect_timer->cancel();
    if (!ec) {
      boost::system::error_code ignored;
      conn.sock->set_option(tcp::no_delay(true), ignored);
      conn.sock->non_blocking(true, ignored);  // reads happen on readiness (StartSocketRead)
      if (Gated(conn, Hook::kFromServer)) {
        OfferSocketEvent(conn, Hook::kFromServer, stack::kSyn | stack::kAck, {});
        DrainSocketGates(conn);
      } else {
        conn.gate_seq[1] = 1;
        OnUpstreamConnected(conn);
      }
    } else if (ec == asio::error::connection_refused) {
      if (Gated(conn, Hook::kFromServer)) {
        // The server's RST answering the SYN: a rule may delay the refusal.
        OfferSocketEvent(conn, Hook::kFromServer, stack::kRst | stack::kAck, {});
        DrainSocketGates(conn);
      } else {
        OnUpstreamFailed(conn, true, "upstream refused the connection");
      }
    } else if (ec == asio::error::operation_aborted) {
      OnUpstreamFailed(conn, false, "upstream connect timed out");
    } else if (ec == asio::error::no_descriptors ||
               ec == boost::system::error_code(ENFILE, boost::system::system_category())) {
      OnOutOfDescriptors(conn, ec);
    } else {
      OnUpstreamFailed(conn, false, absl::StrCat("upstream connect failed: ", ec.message()));
    }
    PollEngine();
    ArmTimer();
    graveyard_.clear();
  });
  c.connect_timer->expires_after(absl::ToChronoNanoseconds(opts_.connect_timeout));
  c.connect_timer->async_wait([this, id](boost::system::error_code ec) {
    if (ec) return;
    auto it = conns_.find(id);
    if (it != conns_.end() && it->second->sock) it->second->sock->close(ec);
  });
}

void Proxy::OnUpstreamConnected(Connection& c) {
  Event(c, "upstream connected");
  AcceptClient(c);
}

void Proxy::OnUpstreamFailed(Connection& c, bool refused, const std::string& why) {
  Event(c, why);
  RecordError(c, why);
  c.phase = Connection::Phase::kFailed;
  if (refused) {
    ++stats_.refused;
    // As the server's kernel would have: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
    if (c.held_syn) {
      TcpRepr rst;
      rst.src_port = c.client.key.local_port;
      rst.dst_port = c.client.key.remote_port;
      rst.seq = stack::SeqNum(0);
      rst.ack = c.held_syn->seq + 1;
      rst.flags = stack::TcpFlags(stack::kRst | stack::kAck);
      Segment s = stack::MakeSegment(c.client.key.local_addr, c.client.key.remote_addr, rst, next_ident_++);
      auto n = stack::EmitSegment(s, absl::MakeSpan(out_buf_));
      if (n.ok()) {
        auto parsed = stack::ParseSegment(absl::MakeConstSpan(out_buf_.data(), *n));
        if (parsed.ok()) {
          Transmit(&c, {c.id, Hook::kToClient, TcpState::kClosed, c.scope}, absl::MakeConstSpan(out_buf_.data(), *n),
                   &*parsed);
        }
      }
    }
    Remove(c);
    return;
  }
  ++stats_.unreachable;
  // Unreachable: silence, as without the proxy. The entry stays a while to absorb
  // the client's retransmitted SYNs instead of dialling again for each.
  if (c.sock) {
    boost::system::error_code ignored;
    c.sock->close(ignored);
  }
  c.expire_at = MonotonicNow() + absl::Seconds(30);
  Reschedule(c);
}

void Proxy::OnOutOfDescriptors(Connection& c, const boost::system::error_code& ec) {
  ++stats_.out_of_fds;
  // EMFILE or ENFILE: the system's text, without a virtual call into the category.
  const std::string why = std::strerror(ec.value());
  // Said once, not per connection: it is the process's limit, not the upstream.
  if (stats_.out_of_fds == 1) {
    rlimit lim{};
    ::getrlimit(RLIMIT_NOFILE, &lim);
    if (warning_log_) warning_log_(absl::StrCat("wrench: out of file descriptors (", why, "; the limit is ", lim.rlim_cur,
                           "): connections beyond it are not relayed; raise it with ulimit -n"));
  }
  Event(c, absl::StrCat("out of file descriptors: ", why));
  // The client's SYN goes unanswered, as a full accept queue leaves it: its
  // retransmission tries again, once descriptors may have been freed.
  if (c.sock) {
    boost::system::error_code ignored;
    c.sock->close(ignored);
  }
  c.phase = Connection::Phase::kFailed;
  Remove(c);
}

void Proxy::AcceptClient(Connection& c) {
  Instant now = MonotonicNow();
  c.phase = Connection::Phase::kOpen;
  stack::TcpConfig cfg = opts_.tcp;
  cfg.tuple = {c.client.key.local_addr, c.client.key.local_port, c.client.key.remote_addr,
               c.client.key.remote_port};
  c.client.ep = std::make_unique<TcpEndpoint>(cfg);
  uint64_t id = c.id;
  c.client.ep->set_state_observer([this, id](const stack::StateChange& ch) {
    if (auto r = records_.find(id); r != records_.end()) r->second.client_visited |= 1u << int(ch.to);
    auto it = conns_.find(id);
    if (it != conns_.end()) {
      Event(*it->second,
            absl::StrCat("client leg ", StateName(ch.from), " -> ", StateName(ch.to), " (", ch.cause, ")"));
    }
  });
  (void)c.client.ep->Listen(now);
  if (c.held_syn) c.client.ep->OnSegment(now, *c.held_syn);
  Service(c);
}

// ---------------------------------------------------------------------------
// Output, relay, timers.

void Proxy::Service(Connection& c) {
  uint64_t id = c.id;
  FlushLeg(c, c.client);
  if (!conns_.contains(id)) return;
  FlushLeg(c, c.server);
  if (!conns_.contains(id)) return;
  if (c.phase == Connection::Phase::kConnecting && c.server.ep) {
    if (c.server.ep->state() == TcpState::kEstablished) {
      OnUpstreamConnected(c);  // services the connection again
      return;
    }
    if (c.server.ep->state() == TcpState::kClosed) {
      bool refused = c.server.ep->close_reason() == stack::CloseReason::kRefused;
      OnUpstreamFailed(c, refused, refused ? "upstream refused the connection"
                                           : absl::StrCat("upstream connect failed: ", c.server.ep->error()));
      return;
    }
  }
  if (c.phase == Connection::Phase::kOpen) {
    // A second round when a rule's RST ended a leg in the first: the relay passes the
    // reset on to the other leg at once.
    for (int round = 0; round < 2; ++round) {
      if (opts_.upstream_via == UpstreamVia::kTun) {
        PumpTunRelay(c);
      } else {
        PumpSocketRelay(c);
      }
      // What the relay queued (data, FIN, RST) goes out now.
      bool reset_by_rule = FlushLeg(c, c.client);
      if (!conns_.contains(id)) return;
      reset_by_rule |= FlushLeg(c, c.server);
      if (!conns_.contains(id)) return;
      if (!reset_by_rule) break;
    }
    MaybeFinish(c);
    if (!conns_.contains(id)) return;
  }
  Reschedule(c);
}

bool Proxy::FlushLeg(Connection& c, Leg& leg) {
  if (!leg.ep) return false;
  Instant now = MonotonicNow();
  bool reset_by_rule = false;
  leg.ep->Poll(now, [&](const TcpRepr& r) {
    // After a RST the peer has nothing more to see from this leg.
    if (reset_by_rule) return;
    Segment s = stack::MakeSegment(leg.key.local_addr, leg.key.remote_addr, r, next_ident_++);
    auto n = stack::EmitSegment(s, absl::MakeSpan(out_buf_));
    if (!n.ok()) return;  // cannot happen for what the endpoint builds
    absl::Span<const uint8_t> bytes(out_buf_.data(), *n);
    // The engine wants views into the datagram itself.
    auto parsed = stack::ParseSegment(bytes, {.verify_checksums = false});
    if (!parsed.ok()) return;
    reset_by_rule = Transmit(&c, {c.id, leg.out_hook, leg.ep->state(), c.scope}, bytes, &*parsed) &&
                    !r.flags.has(stack::kRst);
  });
  if (reset_by_rule && leg.ep->state() != TcpState::kClosed) {
    // An `rst` rule sent a RST in place of the leg's segment: for the peer the
    // connection is reset, so the leg ends as one that sent it, by ABORT (RFC 9293
    // §3.10.5), and never retransmits what the RST replaced. The RST ABORT queues is
    // the one already on the wire: it is discarded, not sent a second time.
    leg.ep->Abort(now);
    leg.ep->Poll(now, [](const TcpRepr&) {});
  }
  return reset_by_rule;
}

bool Proxy::Transmit(Connection* c, const SegmentMeta& meta, absl::Span<const uint8_t> datagram,
                     const Segment* parsed) {
  Instant now = MonotonicNow();
  decision_.reset();
  Verdict v = engine_.Offer(now, meta, *parsed, datagram);
  std::optional<Decision> decision = std::move(decision_);
  decision_.reset();
  if (v == Verdict::kPass) {
    sink_.WriteDatagram(datagram);
    ++stats_.datagrams_out;
    if (pcap_) pcap_->Write(now, datagram);
  }
  LogSegment(c, meta.hook, *parsed, meta.state, meta.state, decision ? &*decision : nullptr);
  return decision && decision->action == ActionKind::kRst;
}

void Proxy::PollEngine() {
  Instant now = MonotonicNow();
  for (int round = 0; round < 16 && engine_.NextDeadline() <= now; ++round) {
    std::vector<std::pair<SegmentMeta, std::vector<uint8_t>>> inbound;
    engine_.Poll(now, [&](const SegmentMeta& meta, absl::Span<const uint8_t> datagram) {
      if (meta.socket) {
        // A socket-leg event the rules held (or turned into a reset): released below.
        inbound.emplace_back(meta, std::vector<uint8_t>(datagram.begin(), datagram.end()));
      } else if (meta.hook == Hook::kToClient || meta.hook == Hook::kToServer) {
        sink_.WriteDatagram(datagram);
        ++stats_.datagrams_out;
        if (pcap_) pcap_->Write(now, datagram);
      } else {
        // Delivered after Poll returns: delivery offers new segments to the engine.
        inbound.emplace_back(meta, std::vector<uint8_t>(datagram.begin(), datagram.end()));
      }
    });
    for (auto& [meta, bytes] : inbound) {
      auto it = conns_.find(meta.conn);
      if (it == conns_.end()) continue;
      if (meta.socket) {
        auto parsed = stack::ParseSegment(bytes, {.verify_checksums = false});
        if (!parsed.ok()) continue;
        Connection& c = *it->second;
        auto& gate = c.gate[meta.hook == Hook::kToServer ? 0 : 1];
        for (auto& e : gate) {
          if (e.released || e.seq != parsed->tcp.seq.raw()) continue;
          e.released = true;
          e.reset = parsed->tcp.flags.has(stack::kRst) && !(e.flags & stack::kRst);
          break;
        }
        DrainSocketGates(c);
        if (conns_.contains(meta.conn)) Service(c);
        continue;
      }
      // A corrupted segment fails its checksum here, as it would in a kernel.
      auto parsed = stack::ParseSegment(bytes);
      if (!parsed.ok()) continue;
      Connection& c = *it->second;
      DeliverToLeg(c, meta.hook == Hook::kFromClient ? c.client : c.server, *parsed);
    }
  }
}

// Resets, and legs that gave up, end the other leg with a reset too.
void Proxy::ForwardResets(Connection& c, Instant now) {
  auto reset = [&](Leg& from, Leg& to) {
    if (!from.reset_forwarded && EndedAbnormally(*from.ep)) {
      from.reset_forwarded = true;
      ++stats_.resets;
      if (to.ep->state() != TcpState::kClosed) to.ep->Abort(now);
    }
  };
  reset(c.client, c.server);
  reset(c.server, c.client);
}

void Proxy::PumpTunRelay(Connection& c) {
  TcpEndpoint& cl = *c.client.ep;
  if (!c.server.ep) return;
  TcpEndpoint& sv = *c.server.ep;
  Instant now = MonotonicNow();
  if (c.toxics && c.toxics->Engage(now)) return PumpToxicTunRelay(c);
  auto move = [&](TcpEndpoint& from, TcpEndpoint& to, uint64_t& counter, uint64_t& total) {
    while (from.readable() > 0 && CanSend(to.state()) && to.send_space() > 0) {
      size_t n = std::min({from.readable(), to.send_space(), relay_buf_.size()});
      n = from.Receive(absl::MakeSpan(relay_buf_.data(), n));
      (void)to.Send(absl::MakeConstSpan(relay_buf_.data(), n));
      counter += n;
      total += n;
    }
  };
  move(cl, sv, c.bytes_to_server, stats_.bytes_to_server);
  move(sv, cl, c.bytes_to_client, stats_.bytes_to_client);
  // Half-close: a FIN is relayed once every byte before it was handed over.
  auto half_close = [&](Leg& from, TcpEndpoint& to) {
    if (!from.eof_forwarded && from.ep->eof()) {
      from.eof_forwarded = true;
      if (CanSend(to.state()) || to.state() == TcpState::kSynReceived) (void)to.Close(now);
    }
  };
  half_close(c.client, sv);
  half_close(c.server, cl);
  ForwardResets(c, now);
}

void Proxy::PumpSocketRelay(Connection& c) {
  TcpEndpoint& cl = *c.client.ep;
  Instant now = MonotonicNow();
  DrainSocketGates(c);
  if (EndedAbnormally(cl) && !c.client.reset_forwarded) {
    // The client reset (or its leg gave up): an abortive close sends RST upstream.
    c.client.reset_forwarded = true;
    ++stats_.resets;
    if (c.sock && c.sock->is_open()) {
      boost::system::error_code ignored;
      c.sock->set_option(asio::socket_base::linger(true, 0), ignored);
      c.sock->close(ignored);
    }
    return;
  }
  if (c.upstream_reset && !c.server.reset_forwarded) {
    c.server.reset_forwarded = true;
    ++stats_.resets;
    cl.Abort(now);
    return;
  }
  if (c.toxics && c.toxics->Engage(now)) return PumpToxicSocketRelay(c);
  if (!c.sock || !c.sock->is_open()) return;
  // Client -> server.
  if (cl.readable() > 0) StartSocketWrite(c);
  if (!c.writing && cl.eof() && cl.readable() == 0) ShutdownToServer(c);
  // Server -> client: what was read goes into the client leg as space allows.
  if (c.to_client_off < c.to_client_len && CanSend(cl.state())) {
    auto taken = cl.Send(absl::MakeConstSpan(c.to_client.get() + c.to_client_off,
                                             c.to_client_len - c.to_client_off));
    if (taken.ok()) {
      c.to_client_off += *taken;
      c.bytes_to_client += *taken;
      stats_.bytes_to_client += *taken;
    }
  }
  if (c.to_client_off == c.to_client_len) {
    if (c.upstream_eof) {
      if (!c.server.eof_forwarded && CanSend(cl.state())) {
        c.server.eof_forwarded = true;
        (void)cl.Close(now);
      }
    } else if (!c.reading && !c.read_closed && c.gate_bytes[1] < kGateRoom && CanSend(cl.state()) &&
               cl.send_space() > 0) {
      StartSocketRead(c);
    }
  }
}

void Proxy::StartSocketWrite(Connection& c) {
  TcpEndpoint& cl = *c.client.ep;
  // With stream toxics, what leaves them (PumpToxicSocketRelay).
  ToxicStream* up = c.toxics && c.toxics->engaged ? &c.toxics->up : nullptr;
  if (Gated(c, Hook::kToServer)) {
    // Each chunk is one to-server event; it is written once the rules let it go.
    uint64_t id = c.id;
    while (c.gate_bytes[0] < kGateRoom && conns_.contains(id) && c.sock && c.sock->is_open()) {
      size_t want = std::min({up ? up->readable() : cl.readable(), kSocketEventMax, relay_buf_.size()});
      if (want == 0) break;
      size_t n = up ? up->Read(absl::MakeSpan(relay_buf_.data(), want))
                    : cl.Receive(absl::MakeSpan(relay_buf_.data(), want));
      if (n == 0) break;
      OfferSocketEvent(c, Hook::kToServer, stack::kPsh | stack::kAck, absl::MakeConstSpan(relay_buf_.data(), n));
    }
    if (conns_.contains(id)) DrainSocketGates(c);
    return;
  }
  if (c.writing) return;
  c.to_server.resize(std::min<size_t>(up ? up->readable() : cl.readable(), 256 * 1024));
  size_t n = up ? up->Read(absl::MakeSpan(c.to_server)) : cl.Receive(absl::MakeSpan(c.to_server));
  c.to_server.resize(n);
  if (n == 0) return;
  c.gate_seq[0] += static_cast<uint32_t>(n);  // socket events count every byte, gated or not
  WriteToServer(c);
}

void Proxy::WriteToServer(Connection& c) {
  c.writing = true;
  uint64_t id = c.id;
  asio::async_write(*c.sock, asio::buffer(c.to_server), [this, id](boost::system::error_code ec, size_t n) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    Connection& conn = *it->second;
    conn.writing = false;
    if (ec) {
      if (ec != asio::error::operation_aborted) conn.upstream_reset = true;
    } else {
      conn.bytes_to_server += n;
      stats_.bytes_to_server += n;
    }
    Service(conn);
    PollEngine();
    ArmTimer();
    graveyard_.clear();
  });
}

void Proxy::StartSocketRead(Connection& c) {
  // Wait for readability first and size the buffer only then: an idle connection
  // holds no read buffer (10,000 idle connections would otherwise pin 2.5 GiB).
  c.reading = true;
  uint64_t id = c.id;
  c.sock->async_wait(tcp::socket::wait_read, [this, id](boost::system::error_code ec) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    Connection& conn = *it->second;
    conn.reading = false;
    if (ec) {
      if (ec != asio::error::operation_aborted) {
        conn.upstream_reset = true;
        Event(conn, absl::StrCat("upstream socket: ", ec.message()));
      }
    } else if (conn.client.ep) {
      // Read no more than the client leg (or the toxics) can take: a slow client
      // closes the server's window instead of growing our memory.
      const bool gated = Gated(conn, Hook::kFromServer);
      size_t room = std::min<size_t>(
          conn.toxics && conn.toxics->engaged ? conn.toxics->down.room() : conn.client.ep->send_space(),
          256 * 1024);
      // Through the gate, a read is one from-server event, while the gate has room.
      if (gated) room = std::min({room, kSocketEventMax, kGateRoom - std::min(kGateRoom, conn.gate_bytes[1])});
      if (!gated) conn.ReserveToClient(room);
      if (!gated) conn.to_client_off = conn.to_client_len = 0;
      uint8_t* into = gated ? relay_buf_.data() : conn.to_client.get();
      if (gated) room = std::min(room, relay_buf_.size());
      boost::system::error_code rec;
      size_t n = room == 0 ? 0 : conn.sock->read_some(asio::buffer(into, room), rec);
      if (rec == asio::error::eof) {
        conn.read_closed = true;
        Event(conn, "upstream closed its side (FIN)");
        if (gated) {
          OfferSocketEvent(conn, Hook::kFromServer, stack::kFin | stack::kAck, {});
        } else {
          conn.upstream_eof = true;
          conn.gate_seq[1] += 1;
        }
      } else if (rec && rec != asio::error::would_block && rec != asio::error::try_again) {
        conn.read_closed = true;
        Event(conn, absl::StrCat("upstream socket: ", rec.message()));
        if (gated) {
          OfferSocketEvent(conn, Hook::kFromServer, stack::kRst | stack::kAck, {});
        } else {
          conn.upstream_reset = true;
        }
      } else if (gated) {
        if (n > 0) OfferSocketEvent(conn, Hook::kFromServer, stack::kPsh | stack::kAck, absl::MakeConstSpan(into, n));
      } else {
        conn.to_client_len = n;
        conn.gate_seq[1] += static_cast<uint32_t>(n);
      }
      if (!conns_.contains(id)) return;
    }
    Service(conn);
    PollEngine();
    ArmTimer();
    graveyard_.clear();
  });
}

void Proxy::ShutdownToServer(Connection& c) {
  if (c.client.eof_forwarded) return;
  c.client.eof_forwarded = true;
  if (Gated(c, Hook::kToServer)) {
    // The shutdown is the to-server FIN: it follows the data before it out of the gate.
    OfferSocketEvent(c, Hook::kToServer, stack::kFin | stack::kAck, {});
    DrainSocketGates(c);
    return;
  }
  c.shutdown_sent = true;
  c.gate_seq[0] += 1;
  boost::system::error_code ignored;
  c.sock->shutdown(tcp::socket::shutdown_send, ignored);
}

bool Proxy::Gated(const Connection& c, Hook hook) const {
  const int dir = hook == Hook::kToServer ? 0 : 1;
  return c.sock && (engine_.WatchesSocketLeg(hook) || !c.gate[dir].empty());
}

void Proxy::OfferSocketEvent(Connection& c, Hook hook, uint8_t flags, absl::Span<const uint8_t> data) {
  const int dir = hook == Hook::kToServer ? 0 : 1;
  Connection::SocketEvent e;
  e.seq = c.gate_seq[dir];
  e.flags = flags;
  e.data.assign(data.begin(), data.end());
  c.gate_seq[dir] += static_cast<uint32_t>(data.size()) + ((flags & stack::kSyn) ? 1 : 0) +
                     ((flags & stack::kFin) ? 1 : 0);
  // The event as a segment between the socket's two ends: seq and ack count the bytes
  // of each direction (SYN = 0, first byte = 1), so relative and absolute agree.
  IpAddress server = c.upstream_addr;
  IpAddress local = server.is_v6() ? IpAddress::V6({}) : IpAddress::V4(0);
  uint16_t local_port = c.client.key.remote_port;
  boost::system::error_code ec;
  if (c.sock && c.sock->is_open()) {
    auto ep = c.sock->local_endpoint(ec);
    if (!ec && ep.port() != 0) {
      local = FromAsio(ep.address());
      local_port = ep.port();
    }
  }
  TcpRepr r;
  const bool out = dir == 0;
  r.src_port = out ? local_port : c.upstream_port;
  r.dst_port = out ? c.upstream_port : local_port;
  r.seq = stack::SeqNum(e.seq);
  r.ack = stack::SeqNum(c.gate_seq[1 - dir]);
  r.flags = stack::TcpFlags(flags);
  r.window = 65535;
  r.payload = data;
  Segment seg = stack::MakeSegment(out ? local : server, out ? server : local, r, next_ident_++);
  auto n = stack::EmitSegment(seg, absl::MakeSpan(out_buf_));
  std::optional<Segment> parsed;
  if (n.ok()) {
    auto p = stack::ParseSegment(absl::MakeConstSpan(out_buf_.data(), *n), {.verify_checksums = false});
    if (p.ok()) parsed = *p;
  }
  c.gate_bytes[dir] += data.size();
  if (!parsed) {  // cannot happen for what is built here; the event goes on unjudged
    e.released = true;
    c.gate[dir].push_back(std::move(e));
    return;
  }
  const TcpState state = c.phase == Connection::Phase::kOpen || c.phase == Connection::Phase::kConnecting
                             ? KernelSocketState(*c.sock)
                             : TcpState::kClosed;
  Instant now = MonotonicNow();
  decision_.reset();
  SegmentMeta meta{c.id, hook, state, c.scope, /*socket=*/true};
  Verdict v = engine_.Offer(now, meta, *parsed, absl::MakeConstSpan(out_buf_.data(), *n));
  std::optional<Decision> decision = std::move(decision_);
  decision_.reset();
  e.released = v == Verdict::kPass;
  c.gate[dir].push_back(std::move(e));
  LogSegment(&c, hook, *parsed, state, state, decision ? &*decision : nullptr, now);
}

void Proxy::AbortSocket(Connection& c, const std::string& why) {
  Event(c, why);
  RecordError(c, why);
  if (c.sock && c.sock->is_open()) {
    boost::system::error_code ignored;
    c.sock->set_option(asio::socket_base::linger(true, 0), ignored);
    c.sock->close(ignored);
  }
  c.upstream_reset = true;
  c.read_closed = true;
  for (auto& g : c.gate) g.clear();
  c.gate_bytes[0] = c.gate_bytes[1] = 0;
}

void Proxy::DrainSocketGates(Connection& c) {
  uint64_t id = c.id;
  // To the server, in order: the connect, writes (one at a time), the shutdown.
  auto& up = c.gate[0];
  while (!up.empty() && up.front().released) {
    Connection::SocketEvent& e = up.front();
    if (e.reset) {
      // An rst rule: an abortive close reaches the server as RST; the client leg is
      // reset as the server's answer to our next segment would have done.
      if (c.phase == Connection::Phase::kConnecting && (e.flags & stack::kSyn)) {
        up.clear();
        OnUpstreamFailed(c, /*refused=*/true, "socket leg: rst instead of the connect");
        return;
      }
      AbortSocket(c, "socket leg: rst rule, abortive close toward the server");
      return;
    }
    if (e.flags & stack::kSyn) {
      up.pop_front();
      ConnectSocket(c);
      continue;
    }
    if (c.writing || !c.sock || !c.sock->is_open()) break;
    if (e.flags & stack::kFin) {
      up.pop_front();
      c.shutdown_sent = true;
      boost::system::error_code ignored;
      c.sock->shutdown(tcp::socket::shutdown_send, ignored);
      continue;
    }
    c.gate_bytes[0] -= e.data.size();
    c.to_server = std::move(e.data);
    up.pop_front();
    if (!c.to_server.empty()) WriteToServer(c);
  }
  // From the server, in order: the connect's answer, reads, EOF or reset.
  auto& down = c.gate[1];
  while (!down.empty() && down.front().released && conns_.contains(id)) {
    Connection::SocketEvent& e = down.front();
    const bool refusal = c.phase == Connection::Phase::kConnecting && (e.flags & stack::kRst);
    if (refusal || (c.phase == Connection::Phase::kConnecting && e.reset)) {
      down.clear();
      if (c.sock && c.sock->is_open()) {
        boost::system::error_code ignored;
        c.sock->set_option(asio::socket_base::linger(true, 0), ignored);
        c.sock->close(ignored);
      }
      OnUpstreamFailed(c, /*refused=*/true,
                       refusal ? "upstream refused the connection" : "socket leg: rst instead of the connect's answer");
      return;
    }
    if (e.reset || (e.flags & stack::kRst)) {
      AbortSocket(c, e.reset ? "socket leg: rst rule, abortive close toward the server"
                             : "socket leg: the server reset the connection");
      return;
    }
    if (e.flags & stack::kSyn) {
      down.pop_front();
      OnUpstreamConnected(c);
      return;  // that serviced the connection, gates included
    }
    if (c.to_client_off != c.to_client_len) break;
    if (e.flags & stack::kFin) {
      down.pop_front();
      c.upstream_eof = true;
      continue;
    }
    c.gate_bytes[1] -= e.data.size();
    c.ReserveToClient(e.data.size());
    if (!e.data.empty()) std::memcpy(c.to_client.get(), e.data.data(), e.data.size());
    c.to_client_off = 0;
    c.to_client_len = e.data.size();
    down.pop_front();
  }
}

void Proxy::MaybeFinish(Connection& c) {
  if (c.phase != Connection::Phase::kOpen) return;
  bool client_done = c.client.ep->state() == TcpState::kClosed;
  bool server_done;
  if (opts_.upstream_via == UpstreamVia::kTun) {
    server_done = !c.server.ep || c.server.ep->state() == TcpState::kClosed;
    // A leg that ended while the other still waits on it: nothing more can come.
    if (client_done && !server_done && c.server.ep->state() == TcpState::kListen) server_done = true;
  } else {
    server_done = !c.sock || !c.sock->is_open() ||
                  (c.upstream_eof && c.shutdown_sent && !c.writing) || c.upstream_reset;
  }
  if (client_done && server_done) Remove(c);
}

void Proxy::Remove(Connection& c) {
  Event(c, "closed");
  if (auto r = records_.find(c.id); r != records_.end() && !shutting_down_) {
    r->second.info = Info(c);
    r->second.closed = true;
    // How each leg of ours ended, when not by the exchange of FINs.
    auto ended = [&](const char* leg, const TcpEndpoint* ep) {
      if (!ep || !EndedAbnormally(*ep)) return;
      const char* how = ep->close_reason() == stack::CloseReason::kReset     ? "reset by the peer (RST received)"
                        : ep->close_reason() == stack::CloseReason::kAborted ? "aborted by wrench (RST sent)"
                        : ep->close_reason() == stack::CloseReason::kTimeout ? "gave up (retransmission limit)"
                                                                             : "refused (RST to our SYN)";
      std::string why = absl::StrCat(leg, " leg: ", how);
      if (!ep->error().empty()) absl::StrAppend(&why, " (", ep->error(), ")");
      r->second.errors.push_back(std::move(why));
    };
    ended("client", c.client.ep.get());
    ended("server", c.server.ep.get());
  }
  if (c.sock && c.sock->is_open()) {
    boost::system::error_code ignored;
    c.sock->close(ignored);
  }
  if (c.connect_timer) c.connect_timer->cancel();
  if (c.scope != 0) {
    auto& done = scope_bytes_[c.scope];
    done.first += c.bytes_to_server;
    done.second += c.bytes_to_client;
  }
  by_tuple_.erase(c.client.key);
  if (c.server.ep) by_tuple_.erase(c.server.key);
  uint64_t id = c.id;
  // Out of the table now; the object itself lives until the entry point that got
  // here returns (Reap), so callers up the stack may still read it.
  auto it = conns_.find(id);
  graveyard_.push_back(std::move(it->second));
  conns_.erase(it);
  stats_.active = conns_.size();
}

void Proxy::SendStrayRst(const Segment& seg) {
  // RFC 9293 §3.10.7.1, as for a CLOSED port.
  ++stats_.stray_segments;
  Segment s = stack::ClosedPortReset(seg, next_ident_++);
  auto n = stack::EmitSegment(s, absl::MakeSpan(out_buf_));
  if (!n.ok()) return;
  sink_.WriteDatagram(absl::MakeConstSpan(out_buf_.data(), *n));
  ++stats_.datagrams_out;
  if (pcap_) pcap_->Write(MonotonicNow(), absl::MakeConstSpan(out_buf_.data(), *n));
}

void Proxy::Reschedule(Connection& c) {
  Instant d = c.expire_at;
  if (c.client.ep) d = std::min(d, c.client.ep->NextDeadline());
  if (c.server.ep) d = std::min(d, c.server.ep->NextDeadline());
  if (c.toxics) d = std::min(d, c.toxics->NextDeadline());
  if (d == c.scheduled_at) return;
  c.scheduled_at = d;
  ++c.timer_gen;
  if (d != stack::kNever) timers_.push({d, c.id, c.timer_gen});
}

void Proxy::ArmTimer() {
  Instant next = engine_.NextDeadline();
  while (!timers_.empty()) {
    const TimerEntry& top = timers_.top();
    auto it = conns_.find(top.conn);
    if (it != conns_.end() && it->second->timer_gen == top.gen) break;
    timers_.pop();  // stale
  }
  if (!timers_.empty()) next = std::min(next, timers_.top().at);
  timer_.ArmAt(next);
}

void Proxy::OnTimer() {
  Instant now = MonotonicNow();
  while (!timers_.empty() && timers_.top().at <= now) {
    TimerEntry e = timers_.top();
    timers_.pop();
    auto it = conns_.find(e.conn);
    if (it == conns_.end() || it->second->timer_gen != e.gen) continue;
    Connection& c = *it->second;
    c.scheduled_at = stack::kNever;
    if (c.expire_at <= now) {
      Remove(c);
      continue;
    }
    if (c.client.ep && c.client.ep->NextDeadline() <= now) c.client.ep->OnTick(now);
    if (c.server.ep && c.server.ep->NextDeadline() <= now) c.server.ep->OnTick(now);
    Service(c);
  }
  PollEngine();
  ArmTimer();
  graveyard_.clear();
}

void Proxy::Shutdown() {
  shutting_down_ = true;
  Instant now = MonotonicNow();
  std::vector<uint64_t> ids;
  for (auto& [id, c] : conns_) ids.push_back(id);
  for (uint64_t id : ids) {
    auto it = conns_.find(id);
    if (it == conns_.end()) continue;
    Connection& c = *it->second;
    if (c.client.ep) c.client.ep->Abort(now);
    if (c.server.ep) c.server.ep->Abort(now);
    if (c.sock && c.sock->is_open()) {
      boost::system::error_code ignored;
      c.sock->set_option(asio::socket_base::linger(true, 0), ignored);
    }
    FlushLeg(c, c.client);
    FlushLeg(c, c.server);
    if (conns_.contains(id)) Remove(*conns_.at(id));
  }
  timer_.Cancel();
  graveyard_.clear();
}

// ---------------------------------------------------------------------------
// Observation.

void Proxy::LogSegment(const Connection* c, Hook hook, const Segment& seg, std::optional<TcpState> before,
                       std::optional<TcpState> after, const Decision* decision, Instant at) {
  if (!log_) return;
  SegmentRecord r;
  // An arriving segment is stamped with its arrival, before what it caused.
  r.at = at == Instant() ? MonotonicNow() : at;
  r.conn = c ? c->id : 0;
  r.hook = hook;
  r.seg = &seg;
  r.state_before = before;
  r.state_after = after;
  // Relative numbers: the sender's ISN for seq, the receiver's for ack.
  const Leg* leg = nullptr;
  if (c) leg = (hook == Hook::kFromClient || hook == Hook::kToClient) ? &c->client : &c->server;
  if (c && leg == &c->server && !leg->ep) {
    r.note = "socket";  // a socket-leg event, numbered from 0 both ways
  } else if (leg && leg->ep) {
    uint32_t ours = leg->ep->tcb().iss.raw(), theirs = leg->ep->tcb().irs.raw();
    bool inbound = hook == Hook::kFromClient || hook == Hook::kFromServer;
    r.seq_base = inbound ? theirs : ours;
    r.ack_base = inbound ? ours : theirs;
  } else if (c && c->held_syn) {
    r.seq_base = c->held_syn->seq.raw();
  } else if (seg.tcp.flags.has(stack::kSyn)) {
    r.seq_base = seg.tcp.seq.raw();
  }
  if (decision) {
    r.rule_id = decision->rule_id;
    r.rule_text = decision->rule_text;
    const absl::string_view name = ActionName(decision->action);
    r.action = {name.data(), name.size()};
    r.detail = decision->detail;
  }
  log_->Write(r);
}

void Proxy::RecordError(const Connection& c, std::string what) {
  if (shutting_down_) return;
  if (auto r = records_.find(c.id); r != records_.end()) r->second.errors.push_back(std::move(what));
}

std::vector<ConnectionRecord> Proxy::Records() const {
  std::vector<ConnectionRecord> out;
  out.reserve(records_.size());
  for (const auto& [id, r] : records_) {
    out.push_back(r);
    if (auto it = conns_.find(id); it != conns_.end() && !r.closed) out.back().info = Info(*it->second);
  }
  return out;
}

std::vector<ConnectionInfo> Proxy::Connections() const {
  std::vector<ConnectionInfo> out;
  for (const auto& [id, c] : conns_) out.push_back(Info(*c));
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return out;
}

ConnectionInfo Proxy::Info(const Connection& conn) const {
  const Connection* c = &conn;
  ConnectionInfo i;
  i.id = c->id;
  i.client = FormatHostPort(c->client.key.remote_addr, c->client.key.remote_port);
  i.front = FormatHostPort(c->client.key.local_addr, c->client.key.local_port);
  i.upstream = FormatHostPort(c->upstream_addr, c->upstream_port);
  i.client_leg_state = c->client.ep ? std::string(StateName(c->client.ep->state())) : "SYN-SEEN";
  if (c->server.ep) {
    i.server_leg_state = std::string(StateName(c->server.ep->state()));
  } else if (c->sock) {
    i.server_leg_state = !c->sock->is_open()      ? "socket closed"
                         : c->phase == Connection::Phase::kConnecting ? "socket connecting"
                         : c->upstream_eof && c->shutdown_sent        ? "socket closed both ways"
                         : c->upstream_eof                            ? "socket: server closed"
                         : c->shutdown_sent                           ? "socket: we closed"
                                                                      : "socket open";
  } else {
    i.server_leg_state = "none";
  }
  i.bytes_to_server = c->bytes_to_server;
  i.bytes_to_client = c->bytes_to_client;
  i.scope = c->scope;
  return i;
}

std::string Proxy::Summary() const {
  std::string rules;
  for (const auto& r : engine_.Rules()) {
    absl::StrAppend(&rules, rules.empty() ? "" : ", ", "#", r.id, " ", r.hits, " hits");
  }
  return absl::StrFormat(
      "connections %d (%d active, %d refused, %d unreachable, %d reset%s), bytes to server %d, to client "
      "%d, datagrams in %d out %d (%d not TCP, %d unparsable, %d stray)%s%s",
      stats_.connections, stats_.active, stats_.refused, stats_.unreachable, stats_.resets,
      stats_.out_of_fds == 0 ? "" : absl::StrCat(", ", stats_.out_of_fds, " out of file descriptors"),
      stats_.bytes_to_server, stats_.bytes_to_client, stats_.datagrams_in, stats_.datagrams_out,
      stats_.not_tcp, stats_.bad_datagrams, stats_.stray_segments, rules.empty() ? "" : ", rules: ", rules);
}

// ---------------------------------------------------------------------------
// The control API's proxies: mappings added while the loop runs, and the stream
// toxics between the legs (proxy/fault/stream_toxics.h). A connection's bytes go through
// its toxics from the first toxic on; until then it is relayed as any other.

absl::Status Proxy::AddMapping(Mapping m) {
  if (FindMapping(m.front_addr, m.front_port)) {
    return absl::AlreadyExistsError(absl::StrCat(FormatHostPort(m.front_addr, m.front_port), " is mapped already"));
  }
  runtime_maps_.push_back(std::move(m));
  return absl::OkStatus();
}

bool Proxy::RemoveMapping(uint64_t scope) {
  auto it = std::find_if(runtime_maps_.begin(), runtime_maps_.end(),
                         [scope](const Mapping& m) { return m.scope == scope; });
  if (it == runtime_maps_.end()) return false;
  Instant now = MonotonicNow();
  std::vector<uint64_t> ids;
  for (auto& [id, c] : conns_) {
    if (c->map == &*it) ids.push_back(id);
  }
  for (uint64_t id : ids) {
    auto found = conns_.find(id);
    if (found == conns_.end()) continue;
    Connection& c = *found->second;
    c.map = nullptr;
    // As a closed listener: a connection still in its handshake is refused; an open
    // one is reset on both legs (Toxiproxy closes them; a reset reaches a client
    // that is not reading too).
    if (c.phase != Connection::Phase::kOpen) {
      OnUpstreamFailed(c, /*refused=*/true, "proxy removed");
      continue;
    }
    if (c.client.ep) c.client.ep->Abort(now);
    if (c.server.ep) c.server.ep->Abort(now);
    c.client.reset_forwarded = c.server.reset_forwarded = true;
    if (c.sock && c.sock->is_open()) {
      boost::system::error_code ignored;
      c.sock->set_option(asio::socket_base::linger(true, 0), ignored);
      c.sock->close(ignored);
    }
    Event(c, "proxy removed: reset");
    Service(c);
  }
  runtime_maps_.erase(it);
  PollEngine();
  ArmTimer();
  graveyard_.clear();  // an entry point (the control API's)
  return true;
}

std::pair<uint64_t, uint64_t> Proxy::ScopeBytes(uint64_t scope) const {
  std::pair<uint64_t, uint64_t> total;
  if (auto it = scope_bytes_.find(scope); it != scope_bytes_.end()) total = it->second;
  for (const auto& [id, c] : conns_) {
    if (c->scope != scope) continue;
    total.first += c->bytes_to_server;
    total.second += c->bytes_to_client;
  }
  return total;
}

void Proxy::Refresh(uint64_t scope) {
  std::vector<uint64_t> ids;
  for (auto& [id, c] : conns_) {
    if (c->scope == scope) ids.push_back(id);
  }
  for (uint64_t id : ids) {
    auto it = conns_.find(id);
    if (it != conns_.end()) Service(*it->second);
  }
  PollEngine();
  ArmTimer();
  graveyard_.clear();  // an entry point (the control API's)
}

// A close (limit_data, timeout) or reset (reset_peer) that came out of the toxics ends
// both legs, once what came out before it was delivered. True once that happened.
bool Proxy::ToxicEnd(Connection& c, ToxicStream::End end) {
  using End = ToxicStream::End;
  if (end == End::kNone || end == End::kEof) return false;
  ConnectionToxics& t = *c.toxics;
  if (t.ended) return true;
  t.ended = true;
  Instant now = MonotonicNow();
  TcpEndpoint& cl = *c.client.ep;
  TcpEndpoint* sv = c.server.ep.get();
  c.client.reset_forwarded = c.server.reset_forwarded = true;  // ended here, nothing to relay
  c.client.eof_forwarded = c.server.eof_forwarded = true;
  boost::system::error_code ignored;
  if (end == End::kReset) {
    ++stats_.resets;
    Event(c, "stream toxic: reset");
    if (cl.state() != TcpState::kClosed) cl.Abort(now);
    if (sv && sv->state() != TcpState::kClosed) sv->Abort(now);
    if (c.sock && c.sock->is_open()) c.sock->set_option(asio::socket_base::linger(true, 0), ignored);
  } else {
    Event(c, "stream toxic: close");
    if (CanSend(cl.state())) (void)cl.Close(now);
    if (sv && CanSend(sv->state())) (void)sv->Close(now);
  }
  if (c.sock && c.sock->is_open()) c.sock->close(ignored);
  c.shutdown_sent = true;
  return true;
}

void Proxy::PumpToxicSocketRelay(Connection& c) {
  using End = ToxicStream::End;
  TcpEndpoint& cl = *c.client.ep;
  ConnectionToxics& t = *c.toxics;
  Instant now = MonotonicNow();
  if (t.ended) {
    // Closed by a toxic: what the client still sends goes nowhere, as to a closed socket.
    while (cl.readable() > 0) cl.Receive(absl::MakeSpan(relay_buf_));
    return;
  }
  // Into the toxics: what the client leg received, what the socket read, and FINs.
  while (cl.readable() > 0 && t.up.room() > 0) {
    size_t n = cl.Receive(absl::MakeSpan(relay_buf_.data(), std::min(relay_buf_.size(), t.up.room())));
    if (n == 0) break;
    t.up.Write(now, absl::MakeConstSpan(relay_buf_.data(), n));
  }
  if (cl.eof() && cl.readable() == 0 && !t.up_eof) {
    t.up_eof = true;
    t.up.WriteEof(now);
  }
  if (c.to_client_off < c.to_client_len && t.down.room() > 0) {
    size_t n = std::min(c.to_client_len - c.to_client_off, t.down.room());
    t.down.Write(now, absl::MakeConstSpan(c.to_client.get() + c.to_client_off, n));
    c.to_client_off += n;
  }
  if (c.upstream_eof && c.to_client_off == c.to_client_len && !t.down_eof) {
    t.down_eof = true;
    t.down.WriteEof(now);
  }
  t.up.Advance(now);
  t.down.Advance(now);
  if (t.up.end() == End::kReset || t.down.end() == End::kReset) {
    ToxicEnd(c, End::kReset);
    return;
  }
  // Out of the toxics, to the server...
  if (c.sock && c.sock->is_open()) {
    if (t.up.readable() > 0) StartSocketWrite(c);
    if (!c.writing && t.up.readable() == 0 && t.up.end() != End::kNone) {
      if (t.up.end() == End::kClose) return (void)ToxicEnd(c, End::kClose);
      ShutdownToServer(c);
    }
  }
  // ... and to the client.
  while (t.down.readable() > 0 && CanSend(cl.state()) && cl.send_space() > 0) {
    size_t n = t.down.Read(absl::MakeSpan(relay_buf_.data(), std::min(relay_buf_.size(), cl.send_space())));
    (void)cl.Send(absl::MakeConstSpan(relay_buf_.data(), n));
    c.bytes_to_client += n;
    stats_.bytes_to_client += n;
  }
  if (t.down.readable() == 0 && t.down.end() != End::kNone) {
    if (t.down.end() == End::kClose) return (void)ToxicEnd(c, End::kClose);
    if (!c.server.eof_forwarded && CanSend(cl.state())) {
      c.server.eof_forwarded = true;
      (void)cl.Close(now);
    }
  }
  if (c.sock && c.sock->is_open() && !c.reading && !c.read_closed && c.to_client_off == c.to_client_len &&
      c.gate_bytes[1] < kGateRoom && t.down.room() > 0) {
    StartSocketRead(c);
  }
}

void Proxy::PumpToxicTunRelay(Connection& c) {
  using End = ToxicStream::End;
  TcpEndpoint& cl = *c.client.ep;
  TcpEndpoint& sv = *c.server.ep;
  ConnectionToxics& t = *c.toxics;
  Instant now = MonotonicNow();
  if (t.ended) {
    while (cl.readable() > 0) cl.Receive(absl::MakeSpan(relay_buf_));
    while (sv.readable() > 0) sv.Receive(absl::MakeSpan(relay_buf_));
    return;
  }
  auto feed = [&](TcpEndpoint& from, ToxicStream& s, bool& eof_in) {
    while (from.readable() > 0 && s.room() > 0) {
      size_t n = from.Receive(absl::MakeSpan(relay_buf_.data(), std::min(relay_buf_.size(), s.room())));
      if (n == 0) break;
      s.Write(now, absl::MakeConstSpan(relay_buf_.data(), n));
    }
    if (from.eof() && from.readable() == 0 && !eof_in) {
      eof_in = true;
      s.WriteEof(now);
    }
    s.Advance(now);
  };
  feed(cl, t.up, t.up_eof);
  feed(sv, t.down, t.down_eof);
  if (t.up.end() == End::kReset || t.down.end() == End::kReset) {
    ToxicEnd(c, End::kReset);
    return;
  }
  // Returns false when a toxic closed the connection.
  auto drain = [&](ToxicStream& s, TcpEndpoint& to, Leg& from_leg, uint64_t& counter, uint64_t& total) {
    while (s.readable() > 0 && CanSend(to.state()) && to.send_space() > 0) {
      size_t n = s.Read(absl::MakeSpan(relay_buf_.data(), std::min(relay_buf_.size(), to.send_space())));
      (void)to.Send(absl::MakeConstSpan(relay_buf_.data(), n));
      counter += n;
      total += n;
    }
    if (s.readable() > 0 || s.end() == End::kNone) return true;
    if (s.end() == End::kClose) return !ToxicEnd(c, End::kClose);
    if (!from_leg.eof_forwarded && (CanSend(to.state()) || to.state() == TcpState::kSynReceived)) {
      from_leg.eof_forwarded = true;
      (void)to.Close(now);
    }
    return true;
  };
  if (!drain(t.up, sv, c.client, c.bytes_to_server, stats_.bytes_to_server)) return;
  if (!drain(t.down, cl, c.server, c.bytes_to_client, stats_.bytes_to_client)) return;
  ForwardResets(c, now);
}

}  // namespace wrench::proxy
