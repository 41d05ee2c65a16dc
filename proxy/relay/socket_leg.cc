// Proxy's upstream leg through a kernel socket (proxy_connection.h): the connect,
// reads on readiness sized by what the client leg can take, writes one at a time,
// the shutdown and the abortive close, and the gates through which each of them is
// offered to the fault engine as a segment while a rule watches the socket leg.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "proxy/os/address.h"
#include "proxy/relay/proxy_connection.h"

namespace wrench::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;
using stack::Instant;
using stack::IpAddress;
using stack::TcpState;

// The kernel socket's own state (Linux numbering, include/net/tcp_states.h).
stack::TcpState KernelSocketState(tcp::socket& sock) {
  if (!sock.is_open()) return TcpState::kClosed;
  tcp_info info{};
  socklen_t len = sizeof info;
  if (::getsockopt(sock.native_handle(), IPPROTO_TCP, TCP_INFO, &info, &len) != 0)
    return TcpState::kClosed;
  switch (info.tcpi_state) {
    case 1: return TcpState::kEstablished;
    case 2: return TcpState::kSynSent;
    case 3:
    case 12: return TcpState::kSynReceived;
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

void Proxy::ConnectSocket(Connection& c) {
  c.gate_seq[0] = std::max<uint32_t>(c.gate_seq[0], 1);
  uint64_t id = c.id;
  c.sock->async_connect(
      tcp::endpoint(ToAsioAddress(c.upstream_addr), c.upstream_port),
      [this, id](boost::system::error_code ec) {
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
        tun_.EndOfEntry();
      });
  c.connect_timer->expires_after(absl::ToChronoNanoseconds(opts_.connect_timeout));
  c.connect_timer->async_wait([this, id](boost::system::error_code ec) {
    if (ec) return;
    auto it = conns_.find(id);
    if (it != conns_.end() && it->second->sock) it->second->sock->close(ec);
  });
}

size_t Proxy::SocketLeg::Read(absl::Span<uint8_t> out) {
  size_t n = std::min(out.size(), readable());
  if (n > 0) std::memcpy(out.data(), c_.to_client.get() + c_.to_client_off, n);
  c_.to_client_off += n;
  return n;
}

void Proxy::SocketLeg::WantRead(size_t) {
  // StartSocketRead sizes the read when the socket is readable, by the room then.
  if (open() && !c_.reading && !c_.read_closed && !c_.upstream_eof &&
      c_.gate_bytes[1] < kGateRoom) {
    proxy_.StartSocketRead(c_);
  }
}

size_t Proxy::SocketLeg::write_space() const {
  // Through the gate, each chunk is one to-server event, while the gate has room.
  if (proxy_.Gated(c_, Hook::kToServer)) return c_.gate_bytes[0] < kGateRoom ? kSocketEventMax : 0;
  return c_.writing ? 0 : 256 * 1024;
}

absl::Span<uint8_t> Proxy::SocketLeg::WriteBuffer(size_t n) {
  if (proxy_.Gated(c_, Hook::kToServer)) return {};
  c_.to_server.resize(n);
  return absl::MakeSpan(c_.to_server);
}

void Proxy::SocketLeg::Write(Instant, absl::Span<const uint8_t> data) {
  if (proxy_.Gated(c_, Hook::kToServer)) {
    // Written once the rules let it go, after every event before it.
    proxy_.OfferSocketEvent(c_, Hook::kToServer, stack::kPsh | stack::kAck, data);
    if (proxy_.conns_.contains(c_.id)) proxy_.DrainSocketGates(c_);
    return;
  }
  if (data.data() == c_.to_server.data()) {
    c_.to_server.resize(data.size());
  } else {
    c_.to_server.assign(data.begin(), data.end());
  }
  if (data.empty()) return;
  c_.gate_seq[0] +=
      static_cast<uint32_t>(data.size());  // socket events count every byte, gated or not
  proxy_.WriteToServer(c_);
}

void Proxy::SocketLeg::Close(Instant) { proxy_.ShutdownToServer(c_); }

void Proxy::SocketLeg::End(Instant, bool reset) {
  // A reset is an abortive close: the server gets a RST.
  if (!open()) return;
  boost::system::error_code ignored;
  if (reset) c_.sock->set_option(asio::socket_base::linger(true, 0), ignored);
  c_.sock->close(ignored);
  c_.shutdown_sent = true;
}

void Proxy::WriteToServer(Connection& c) {
  c.writing = true;
  uint64_t id = c.id;
  asio::async_write(*c.sock, asio::buffer(c.to_server),
                    [this, id](boost::system::error_code ec, size_t n) {
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
                      tun_.EndOfEntry();
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
      size_t room =
          std::min<size_t>(conn.toxics && conn.toxics->engaged ? conn.toxics->down.room()
                                                               : conn.client.ep->send_space(),
                           256 * 1024);
      // Through the gate, a read is one from-server event, while the gate has room.
      if (gated)
        room =
            std::min({room, kSocketEventMax, kGateRoom - std::min(kGateRoom, conn.gate_bytes[1])});
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
        SocketLeg::WatchErrors(*this, conn);
      } else if (rec && rec != asio::error::would_block && rec != asio::error::try_again) {
        conn.read_closed = true;
        Event(conn, absl::StrCat("upstream socket: ", rec.message()));
        if (gated) {
          OfferSocketEvent(conn, Hook::kFromServer, stack::kRst | stack::kAck, {});
        } else {
          conn.upstream_reset = true;
        }
      } else if (gated) {
        if (n > 0)
          OfferSocketEvent(conn, Hook::kFromServer, stack::kPsh | stack::kAck,
                           absl::MakeConstSpan(into, n));
      } else {
        conn.to_client_len = n;
        conn.gate_seq[1] += static_cast<uint32_t>(n);
      }
      if (!conns_.contains(id)) return;
    }
    Service(conn);
    tun_.EndOfEntry();
  });
}

void Proxy::SocketLeg::WatchErrors(Proxy& p, Connection& c) {
  // After the server's FIN nothing more is read, but the server may still reset the
  // connection (a close with unread data, SO_LINGER 0): the socket reports that as an
  // error (POLLERR), which the client leg is to hear as a RST.
  uint64_t id = c.id;
  c.sock->async_wait(tcp::socket::wait_error, [&p, id](boost::system::error_code ec) {
    auto it = p.conns_.find(id);
    if (ec || it == p.conns_.end()) return;
    Connection& conn = *it->second;
    if (!conn.sock || !conn.sock->is_open()) return;
    int err = 0;
    socklen_t len = sizeof err;
    // Without an error it is the end of both directions (POLLHUP): nothing to relay.
    if (::getsockopt(conn.sock->native_handle(), SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err == 0)
      return;
    p.Event(conn, absl::StrCat("upstream socket after its FIN: ", std::strerror(err)));
    if (p.Gated(conn, Hook::kFromServer)) {
      p.OfferSocketEvent(conn, Hook::kFromServer, stack::kRst | stack::kAck, {});
    } else {
      conn.upstream_reset = true;
    }
    p.Service(conn);
    p.tun_.EndOfEntry();
  });
}

void Proxy::ShutdownToServer(Connection& c) {
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
  if (c.sock && c.sock->is_open()) {
    auto ep = c.sock->local_endpoint(ec);
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
  const TcpState state =
      c.phase == Connection::Phase::kOpen || c.phase == Connection::Phase::kConnecting
          ? KernelSocketState(*c.sock)
          : TcpState::kClosed;
  Instant now = MonotonicNow();
  SegmentMeta meta{c.id, hook, state, c.scope, /*socket=*/true};
  const Offered o = engine_.Offer(now, meta, *view);
  e.released = o.verdict == Verdict::kPass;
  c.gate[dir].push_back(std::move(e));
  LogSegment(&c, hook, seg, state, state, o.last(), now);
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

}  // namespace wrench::proxy
