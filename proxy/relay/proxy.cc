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

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "proxy/os/address.h"
#include "proxy/os/host_lookup.h"
#include "proxy/relay/capture.h"
#include "proxy/relay/proxy_connection.h"
#include "proxy/relay/relay_loop.h"

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
// Connections.

Proxy::Proxy(asio::io_context& io, DatagramSink& sink, FaultEngine& engine, ProxyOptions opts)
    : io_(io), sink_(sink), engine_(engine), opts_(std::move(opts)) {
  relay_buf_.resize(64 * 1024);
}

Proxy::~Proxy() = default;

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
    event_log_(absl::StrCat(
        "conn ", c.id, " ", FormatHostPort(c.client.key.remote_addr, c.client.key.remote_port),
        " -> ", FormatHostPort(c.client.key.local_addr, c.client.key.local_port), ": ", what));
  }
}

Proxy::Connection* Proxy::NewConnection(const Segment& syn, const Mapping* map,
                                        IpAddress upstream_addr, uint16_t upstream_port) {
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

void Proxy::OnDatagram(absl::Span<const uint8_t> datagram, bool whole_super_segment) {
  ++stats_.datagrams_in;
  Instant now = MonotonicNow();
  if (TunSide::NotTcp(datagram)) {
    ++stats_.not_tcp;
    return;
  }
  auto parsed = stack::ParseSegment(datagram, {.verify_checksums = !whole_super_segment});
  if (!parsed.ok()) {
    // Not ours to answer (a kernel would drop it too); counted and logged.
    if (stats_.bad_datagrams++ < 10 && event_log_) {
      event_log_(absl::StrCat("dropped a datagram from the TUN: ", parsed.status().message()));
    }
    return;
  }
  const Segment& seg = *parsed;
  if (!whole_super_segment) tun_.Capture(now, datagram);
  TupleKey key{seg.src(), seg.dst(), seg.tcp.src_port, seg.tcp.dst_port};
  Connection* c = nullptr;
  Leg* leg = FindLeg(key, &c);
  if (leg && leg == &c->client && leg->ep && !shutting_down_ &&
      leg->ep->TimeWaitAcceptsSyn(seg.tcp)) {
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
      IpAddress target = seg.dst() == opts_.gateway_addr    ? opts_.gateway_target
                         : seg.dst() == opts_.gateway_addr6 ? opts_.gateway_target6
                                                            : seg.dst();
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
  tun_.EndOfEntry();
}

void Proxy::Inbound(Connection& c, Leg& leg, const Segment& seg, absl::Span<const uint8_t> bytes) {
  Instant now = MonotonicNow();
  TcpState before =
      leg.ep ? leg.ep->state() : (&leg == &c.client ? TcpState::kListen : TcpState::kClosed);
  std::optional<Decision> decision =
      tun_.Receive(now, {c.id, leg.in_hook, before, c.scope}, bytes, seg,
                   [&](const Segment& s) { DeliverToLeg(c, leg, s); });
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
  if (!tun_.DeferService(c.id)) Service(c);
}

// ---------------------------------------------------------------------------
// The upstream leg.

void Proxy::StartUpstream(Connection& c) {
  if (c.map && c.map->resolve_per_connection && c.upstream_addr == IpAddress()) {
    // Look the name up first; meanwhile retransmitted SYNs wait with the first.
    if (c.resolving) return;
    c.resolving = true;
    const std::string host = c.map->upstream_host;
    uint64_t id = c.id;
    resolver_.Resolve(host, [this, id, host](const absl::StatusOr<asio::ip::address>& addr) {
      auto it = conns_.find(id);
      if (it == conns_.end()) return;
      Connection& conn = *it->second;
      conn.resolving = false;
      if (!addr.ok()) {
        // As a refused upstream: the client gets RST.
        const std::string why = absl::StrCat("cannot resolve upstream ", host, ":",
                                             conn.upstream_port, ": ", addr.status().message());
        if (warning_log_) {
          warning_log_(
              absl::StrCat("wrench: connection ", conn.id, ": ", why, "; the client gets a reset"));
        }
        OnUpstreamFailed(conn, true, why);
      } else {
        conn.upstream_addr = ToIpAddress(*addr);
        StartUpstream(conn);
      }
      tun_.EndOfEntry();
    });
    return;
  }
  c.phase = Connection::Phase::kConnecting;
  ++stats_.connections;
  Instant now = MonotonicNow();
  c.expire_at = stack::kNever;
  Event(c, absl::StrCat("SYN: connecting to upstream ",
                        FormatHostPort(c.upstream_addr, c.upstream_port)));
  if (opts_.upstream_via == UpstreamVia::kTun) {
    // Our own endpoint, from the front address, to the server over the TUN.
    const uint16_t port = tun_.FreePort([&](uint16_t p) {
      return by_tuple_.contains(
          TupleKey{c.upstream_addr, c.client.key.local_addr, c.upstream_port, p});
    });
    if (port == 0) {
      OnUpstreamFailed(c, false, "no free local port for the upstream leg");
      return;
    }
    c.server.key = {c.upstream_addr, c.client.key.local_addr, c.upstream_port, port};
    stack::TcpConfig cfg = opts_.tcp;
    cfg.tuple = {c.server.key.local_addr, port, c.upstream_addr, c.upstream_port};
    if (c.upstream_addr.is_v6()) cfg.mss -= 20;  // as the client leg's
    c.server.ep = std::make_unique<TcpEndpoint>(cfg);
    by_tuple_[c.server.key] = {&c, &c.server};
    WatchStates(c, c.server, "server", &ConnectionRecord::server_visited);
    (void)c.server.ep->Connect(now);
    Service(c);
    return;
  }
  c.socket_gate = std::make_unique<SocketGate>(*this, c);
  c.sock = std::make_unique<KernelSocketLeg>(tcp::socket(io_),
                                             static_cast<KernelSocketLeg::Owner&>(*this), c.id);
  c.sock->set_gate(c.socket_gate.get());
  c.connect_timer = std::make_unique<asio::steady_timer>(io_);
  if (Gated(c, Hook::kToServer)) {
    // The connect is the to-server SYN: a rule may delay it or turn it into a reset.
    OfferSocketEvent(c, Hook::kToServer, stack::kSyn, {});
    DrainSocketGates(c);
    return;
  }
  ConnectSocket(c);
}

void Proxy::WatchStates(Connection& c, Leg& leg, const char* name,
                        uint16_t ConnectionRecord::*visited) {
  uint64_t id = c.id;
  leg.ep->set_state_observer([this, id, name, visited](const stack::StateChange& ch) {
    if (auto r = records_.find(id); r != records_.end()) r->second.*visited |= 1u << int(ch.to);
    auto it = conns_.find(id);
    if (it != conns_.end()) {
      Event(*it->second, absl::StrCat(name, " leg ", StateName(ch.from), " -> ", StateName(ch.to),
                                      " (", ch.cause, ")"));
    }
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
      Segment s = stack::MakeSegment(c.client.key.local_addr, c.client.key.remote_addr, rst,
                                     tun_.NextIdent());
      if (auto bytes = tun_.Emit(s); bytes.ok()) {
        Transmit(&c, {c.id, Hook::kToClient, TcpState::kClosed, c.scope}, *bytes, s);
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
    c.sock->socket().close(ignored);
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
    if (warning_log_)
      warning_log_(
          absl::StrCat("wrench: out of file descriptors (", why, "; the limit is ", lim.rlim_cur,
                       "): connections beyond it are not relayed; raise it with ulimit -n"));
  }
  Event(c, absl::StrCat("out of file descriptors: ", why));
  // The client's SYN goes unanswered, as a full accept queue leaves it: its
  // retransmission tries again, once descriptors may have been freed.
  if (c.sock) {
    boost::system::error_code ignored;
    c.sock->socket().close(ignored);
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
  if (cfg.tuple.local_addr.is_v6())
    cfg.mss -= 20;  // the MSS is IPv4's; IPv6's header is 20 bytes longer
  c.client.ep = std::make_unique<TcpEndpoint>(cfg);
  WatchStates(c, c.client, "client", &ConnectionRecord::client_visited);
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
      OnUpstreamFailed(c, refused,
                       refused ? "upstream refused the connection"
                               : absl::StrCat("upstream connect failed: ", c.server.ep->error()));
      return;
    }
  }
  if (c.phase == Connection::Phase::kOpen) {
    // A second round when a rule's RST ended a leg in the first: the relay passes the
    // reset on to the other leg at once.
    for (int round = 0; round < 2; ++round) {
      Relay(c);
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
  return tun_.Flush(*leg.ep, leg.key, {c.id, leg.out_hook, TcpState::kClosed, c.scope},
                    [&](const Segment& s, const SegmentMeta& meta, const Offered& o) {
                      LogSegment(&c, meta.hook, s, meta.state, meta.state, o.last());
                    });
}

bool Proxy::Transmit(Connection* c, const SegmentMeta& meta, absl::Span<const uint8_t> datagram,
                     const Segment& seg) {
  const Offered o = tun_.Transmit(MonotonicNow(), meta, datagram);
  LogSegment(c, meta.hook, seg, meta.state, meta.state, o.last());
  return o.replaced_by_rst();
}

void Proxy::OnReleased(const SegmentMeta& meta, absl::Span<const uint8_t> bytes) {
  auto it = conns_.find(meta.conn);
  if (it == conns_.end()) return;
  Connection& c = *it->second;
  if (meta.socket) {
    // A socket-leg event the rules held (or turned into a reset): released now.
    auto parsed = stack::ParseSegment(bytes, {.verify_checksums = false});
    if (!parsed.ok()) return;
    auto& gate = c.gate[meta.hook == Hook::kToServer ? 0 : 1];
    for (auto& e : gate) {
      if (e.released || e.seq != parsed->tcp.seq.raw()) continue;
      e.released = true;
      e.reset = parsed->tcp.flags.has(stack::kRst) && !(e.flags & stack::kRst);
      break;
    }
    DrainSocketGates(c);
    if (conns_.contains(meta.conn)) Service(c);
    return;
  }
  // A corrupted segment fails its checksum here, as it would in a kernel.
  auto parsed = stack::ParseSegment(bytes);
  if (!parsed.ok()) return;
  DeliverToLeg(c, meta.hook == Hook::kFromClient ? c.client : c.server, *parsed);
}

void Proxy::Relay(Connection& c) {
  Instant now = MonotonicNow();
  EndpointLeg client(*c.client.ep);
  auto toxic_end = [&](ToxicStream::End end) {
    if (end == ToxicStream::End::kReset) ++stats_.resets;
    Event(c, end == ToxicStream::End::kReset ? "stream toxic: reset" : "stream toxic: close");
  };
  RelayRun run;
  if (opts_.upstream_via == UpstreamVia::kTun) {
    if (!c.server.ep) return;
    EndpointLeg server(*c.server.ep);
    run = RunRelay(client, c.client.relay, server, c.server.relay, c.toxics.get(), now,
                   absl::MakeSpan(relay_buf_), toxic_end);
    c.bytes_to_server += run.to_b;
    stats_.bytes_to_server += run.to_b;
  } else {
    // Socket events the engine released since go first; bytes to the server are
    // counted as the socket takes them (OnSocketCompletion).
    DrainSocketGates(c);
    if (!c.sock) return;
    run = RunRelay(client, c.client.relay, *c.sock, c.server.relay, c.toxics.get(), now,
                   absl::MakeSpan(relay_buf_), toxic_end);
  }
  c.bytes_to_client += run.to_a;
  stats_.bytes_to_client += run.to_a;
  if (run.reset_from_a || run.reset_from_b) ++stats_.resets;
}

void Proxy::MaybeFinish(Connection& c) {
  if (c.phase != Connection::Phase::kOpen) return;
  bool client_done = c.client.ep->state() == TcpState::kClosed;
  bool server_done;
  if (opts_.upstream_via == UpstreamVia::kTun) {
    server_done = !c.server.ep || c.server.ep->state() == TcpState::kClosed;
    // A leg that ended while the other still waits on it: nothing more can come.
    if (client_done && !server_done && c.server.ep->state() == TcpState::kListen)
      server_done = true;
  } else {
    const KernelSocketLeg* s = c.sock.get();
    server_done = !s || !s->open() || (s->eof_received() && s->shutdown_sent() && !s->writing()) ||
                  s->reset();
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
      const char* how =
          ep->close_reason() == stack::CloseReason::kReset     ? "reset by the peer (RST received)"
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
  if (c.sock && c.sock->open()) {
    boost::system::error_code ignored;
    c.sock->socket().close(ignored);
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
  tun_.Schedule(id, stack::kNever);
  // Out of the table now; the object itself lives until the entry point that got
  // here returns (Reap), so callers up the stack may still read it.
  auto it = conns_.find(id);
  graveyard_.push_back(std::move(it->second));
  conns_.erase(it);
  stats_.active = conns_.size();
}

void Proxy::SendStrayRst(const Segment& seg) {
  ++stats_.stray_segments;
  tun_.SendStrayRst(seg);
}

void Proxy::Reschedule(Connection& c) {
  Instant d = c.expire_at;
  if (c.client.ep) d = std::min(d, c.client.ep->NextDeadline());
  if (c.server.ep) d = std::min(d, c.server.ep->NextDeadline());
  if (c.toxics) d = std::min(d, c.toxics->NextDeadline());
  tun_.Schedule(c.id, d);
}

void Proxy::Reap() { graveyard_.clear(); }

void Proxy::OnDeadline(uint64_t id, Instant now) {
  auto it = conns_.find(id);
  if (it == conns_.end()) return;
  Connection& c = *it->second;
  if (c.expire_at <= now) return Remove(c);
  if (c.client.ep && c.client.ep->NextDeadline() <= now) c.client.ep->OnTick(now);
  if (c.server.ep && c.server.ep->NextDeadline() <= now) c.server.ep->OnTick(now);
  Service(c);
}

void Proxy::OnBurstEnd(uint64_t id) {
  auto it = conns_.find(id);
  if (it != conns_.end()) Service(*it->second);
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
    if (c.sock && c.sock->open()) {
      boost::system::error_code ignored;
      c.sock->socket().set_option(asio::socket_base::linger(true, 0), ignored);
    }
    FlushLeg(c, c.client);
    FlushLeg(c, c.server);
    if (conns_.contains(id)) Remove(*conns_.at(id));
  }
  tun_.Stop();
}

// ---------------------------------------------------------------------------
// Observation.

void Proxy::LogSegment(const Connection* c, Hook hook, const Segment& seg,
                       std::optional<TcpState> before, std::optional<TcpState> after,
                       const Decision* decision, Instant at) {
  if (!log_) return;
  const Leg* leg = nullptr;
  if (c) leg = (hook == Hook::kFromClient || hook == Hook::kToClient) ? &c->client : &c->server;
  // An arriving segment is stamped with its arrival, before what it caused.
  SegmentRecord r = RecordOf(at == Instant() ? MonotonicNow() : at, c ? c->id : 0, hook, seg,
                             before, after, leg ? leg->ep.get() : nullptr, decision);
  if (c && leg == &c->server && !leg->ep) {
    r.note = "socket";  // a socket-leg event, numbered from 0 both ways
  } else if (!leg || !leg->ep) {
    // No endpoint yet: numbered from the client's SYN.
    if (c && c->held_syn) {
      r.seq_base = c->held_syn->seq.raw();
    } else if (seg.tcp.flags.has(stack::kSyn)) {
      r.seq_base = seg.tcp.seq.raw();
    }
  }
  log_->Write(r);
}

void Proxy::RecordError(const Connection& c, std::string what) {
  if (shutting_down_) return;
  if (auto r = records_.find(c.id); r != records_.end())
    r->second.errors.push_back(std::move(what));
}

std::vector<ConnectionRecord> Proxy::Records() const {
  std::vector<ConnectionRecord> out;
  out.reserve(records_.size());
  for (const auto& [id, r] : records_) {
    out.push_back(r);
    if (auto it = conns_.find(id); it != conns_.end() && !r.closed)
      out.back().info = Info(*it->second);
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
    const KernelSocketLeg& s = *c->sock;
    i.server_leg_state = !s.open()                                    ? "socket closed"
                         : c->phase == Connection::Phase::kConnecting ? "socket connecting"
                         : s.eof_received() && s.shutdown_sent()      ? "socket closed both ways"
                         : s.eof_received()                           ? "socket: server closed"
                         : s.shutdown_sent()                          ? "socket: we closed"
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
  const std::string rules = tun_.RuleHits();
  return absl::StrFormat(
      "connections %d (%d active, %d refused, %d unreachable, %d reset%s), "
      "bytes to server %d, to client %d, "
      "datagrams in %d out %d (%d not TCP, %d unparsable, %d stray)%s%s",
      stats_.connections, stats_.active, stats_.refused, stats_.unreachable, stats_.resets,
      stats_.out_of_fds == 0 ? ""
                             : absl::StrCat(", ", stats_.out_of_fds, " out of file descriptors"),
      stats_.bytes_to_server, stats_.bytes_to_client, stats_.datagrams_in, stats_.datagrams_out,
      stats_.not_tcp, stats_.bad_datagrams, stats_.stray_segments,
      rules.empty() ? "" : ", rules: ", rules);
}

// ---------------------------------------------------------------------------
// The control API's proxies: mappings added while the loop runs, and the stream
// toxics between the legs (proxy/fault/stream_toxics.h). A connection's bytes go through
// its toxics from the first toxic on; until then it is relayed as any other.

absl::Status Proxy::AddMapping(Mapping m) {
  if (FindMapping(m.front_addr, m.front_port)) {
    return absl::AlreadyExistsError(
        absl::StrCat(FormatHostPort(m.front_addr, m.front_port), " is mapped already"));
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
    c.client.relay.reset_forwarded = c.server.relay.reset_forwarded = true;
    if (c.sock) c.sock->End(now, /*reset=*/true);
    Event(c, "proxy removed: reset");
    Service(c);
  }
  runtime_maps_.erase(it);
  tun_.EndOfEntry();  // an entry point (the control API's)
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
  tun_.EndOfEntry();  // an entry point (the control API's)
}

}  // namespace wrench::proxy
