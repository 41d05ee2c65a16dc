// Proxy's upstream kernel socket (proxy_connection.h): the connect, what each event of
// the socket does to the connection, and the gates through which each event is
// offered to the fault engine as a segment while a rule watches the socket leg.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "proxy/os/address.h"
#include "proxy/relay/proxy_connection.h"

namespace wrench::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;
using stack::IpAddress;

void Proxy::ConnectSocket(Connection& c) {
  c.gate_seq[0] = std::max<uint32_t>(c.gate_seq[0], 1);
  uint64_t id = c.id;
  c.sock->socket().async_connect(
      tcp::endpoint(ToAsioAddress(c.upstream_addr), c.upstream_port),
      [this, id](boost::system::error_code ec) {
        auto it = conns_.find(id);
        if (it == conns_.end()) return;
        Connection& conn = *it->second;
        conn.connect_timer->cancel();
        if (!ec) {
          boost::system::error_code ignored;
          conn.sock->socket().set_option(tcp::no_delay(true), ignored);
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
        tun_.EndOfEntry();
      });
  c.connect_timer->expires_after(absl::ToChronoNanoseconds(opts_.connect_timeout));
  c.connect_timer->async_wait([this, id](boost::system::error_code ec) {
    if (ec) return;
    auto it = conns_.find(id);
    if (it != conns_.end() && it->second->sock) it->second->sock->socket().close(ec);
  });
}

size_t Proxy::SocketGate::Room(Direction d) const {
  const size_t held = c_.gate_bytes[d];
  if (d == kOut) return held < kGateRoom ? kSocketEventMax : 0;
  return std::min(kSocketEventMax, kGateRoom - std::min(kGateRoom, held));
}

void Proxy::SocketGate::Take(Direction d, uint8_t flags, absl::Span<const uint8_t> data) {
  proxy_.OfferSocketEvent(c_, HookOf(d), flags, data);
  // Toward the server, the event goes at once when the rules let it pass.
  if (d == kOut && proxy_.conns_.contains(c_.id)) proxy_.DrainSocketGates(c_);
}

void Proxy::SocketGate::Passed(Direction d, uint8_t flags, size_t bytes) {
  // Socket events count every byte, gated or not.
  c_.gate_seq[d] += static_cast<uint32_t>(bytes) + ((flags & stack::kSyn) ? 1 : 0) +
                    ((flags & stack::kFin) ? 1 : 0);
}

void Proxy::OnSocketCompletion(uint64_t conn, const KernelSocketLeg&,
                               const KernelSocketLeg::Completion& done) {
  auto it = conns_.find(conn);
  if (it == conns_.end()) return;
  Connection& c = *it->second;
  if (std::string what = done.Describe("upstream"); !what.empty()) Event(c, what);
  if (done.kind == KernelSocketLeg::Completion::Kind::kWritten) {
    c.bytes_to_server += done.bytes;
    stats_.bytes_to_server += done.bytes;
  }
  Service(c);
  tun_.EndOfEntry();
}

bool Proxy::Gated(const Connection& c, Hook hook) const {
  const int dir = hook == Hook::kToServer ? 0 : 1;
  return c.sock && (engine_.WatchesSocketLeg(hook) || !c.gate[dir].empty());
}

void Proxy::OfferSocketEvent(Connection& c, Hook hook, uint8_t flags,
                             absl::Span<const uint8_t> data) {
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
  if (c.sock && c.sock->open()) {
    auto ep = c.sock->socket().local_endpoint(ec);
    if (!ec && ep.port() != 0) {
      local = ToIpAddress(ep.address());
      local_port = ep.port();
    }
  }
  stack::TcpRepr r;
  const bool out = dir == 0;
  r.src_port = out ? local_port : c.upstream_port;
  r.dst_port = out ? c.upstream_port : local_port;
  r.seq = stack::SeqNum(e.seq);
  r.ack = stack::SeqNum(c.gate_seq[1 - dir]);
  r.flags = stack::TcpFlags(flags);
  r.window = 65535;
  r.payload = data;
  stack::Segment seg =
      stack::MakeSegment(out ? local : server, out ? server : local, r, tun_.NextIdent());
  auto bytes = tun_.Emit(seg);
  std::optional<stack::ConstDatagramView> view;
  if (bytes.ok()) {
    auto v = stack::ConstDatagramView::Check(*bytes, {.verify_checksums = false});
    if (v.ok()) view = *v;
  }
  c.gate_bytes[dir] += data.size();
  if (!view) {  // cannot happen for what is built here; the event goes on unjudged
    e.released = true;
    c.gate[dir].push_back(std::move(e));
    return;
  }
  const stack::TcpState state =
      c.phase == Connection::Phase::kOpen || c.phase == Connection::Phase::kConnecting
          ? c.sock->kernel_state()
          : stack::TcpState::kClosed;
  stack::Instant now = MonotonicNow();
  SegmentMeta meta{c.id, hook, state, c.scope, /*socket=*/true};
  const Offered o = engine_.Offer(now, meta, *view);
  e.released = o.verdict == Verdict::kPass;
  c.gate[dir].push_back(std::move(e));
  LogSegment(&c, hook, seg, state, state, o.last(), now);
}

void Proxy::AbortSocket(Connection& c, const std::string& why) {
  Event(c, why);
  RecordError(c, why);
  if (c.sock) c.sock->Abort();
  for (auto& g : c.gate) g.clear();
  c.gate_bytes[0] = c.gate_bytes[1] = 0;
}

void Proxy::DrainSocketGates(Connection& c) {
  if (!c.sock) return;
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
    if (c.sock->writing() || !c.sock->open()) break;
    if (e.flags & stack::kFin) {
      up.pop_front();
      c.sock->Shutdown();
      continue;
    }
    c.gate_bytes[0] -= e.data.size();
    std::vector<uint8_t> data = std::move(e.data);
    up.pop_front();
    c.sock->Send(std::move(data));
  }
  // From the server, in order: the connect's answer, reads, EOF or reset.
  auto& down = c.gate[1];
  while (!down.empty() && down.front().released && conns_.contains(id)) {
    Connection::SocketEvent& e = down.front();
    const bool refusal = c.phase == Connection::Phase::kConnecting && (e.flags & stack::kRst);
    if (refusal || (c.phase == Connection::Phase::kConnecting && e.reset)) {
      down.clear();
      c.sock->End(MonotonicNow(), /*reset=*/true);
      OnUpstreamFailed(c, /*refused=*/true,
                       refusal ? "upstream refused the connection"
                               : "socket leg: rst instead of the connect's answer");
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
    if (c.sock->unread() > 0) break;
    if (e.flags & stack::kFin) {
      down.pop_front();
      c.sock->DeliverEof();
      continue;
    }
    c.gate_bytes[1] -= e.data.size();
    c.sock->Deliver(e.data);
    down.pop_front();
  }
}

}  // namespace wrench::proxy
