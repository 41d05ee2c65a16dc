// The kernel-socket relay of stream_relay.h. Each direction reads from one socket and
// writes to the other; with no toxic a read is written as it is (one buffer, no
// copy), with toxics it goes through the direction's ToxicStream, reads and writes
// overlapping. One timer per connection wakes it when the toxics next have work.
#include "proxy/relay/stream_relay.h"

#include <cctype>
#include <chrono>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "proxy/os/address.h"
#include "proxy/relay/loop_timer.h"

namespace wrench::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;
using stack::Instant;
using End = ToxicStream::End;

namespace {

constexpr size_t kChunk = 256 * 1024;


}  // namespace

// One direction: `from` -> (toxics) -> `to`.
struct StreamRelay::Dir {
  tcp::socket* from = nullptr;
  tcp::socket* to = nullptr;
  ToxicStream* stream = nullptr;
  bool upstream = true;             // client -> server
  std::vector<uint8_t> rbuf, wbuf;  // rbuf: last read; wbuf: what leaves the toxics
  size_t pending = 0;               // bytes in rbuf not yet written or handed to the toxics
  bool reading = false, writing = false;
  bool direct_write = false;  // the write in flight is rbuf itself
  bool eof_in = false;        // `from` sent FIN
  bool eof_fed = false;       // ... and the toxics have it
  bool eof_out = false;       // `to` was shut down for sending
  uint64_t bytes = 0;         // written to `to`
};

struct StreamRelay::Conn {
  Conn(asio::io_context& io, tcp::socket c) : client(std::move(c)), server(io), timer(io) {}
  uint64_t id = 0;
  tcp::socket client, server;
  asio::steady_timer timer;
  Instant timer_at = stack::kNever;
  std::unique_ptr<ConnectionToxics> toxics;
  Dir up, down;
  bool connected = false;
  bool closed = false;
  std::string client_text;
};

absl::StatusOr<std::unique_ptr<StreamRelay>> StreamRelay::Start(asio::io_context& io, const tcp::endpoint& listen,
                                                               Upstream upstream, ToxicsFactory toxics,
                                                               std::function<void(const std::string&)> log) {
  std::unique_ptr<StreamRelay> r(new StreamRelay(io, std::move(upstream), std::move(toxics), std::move(log)));
  boost::system::error_code ec;
  r->acceptor_.open(listen.protocol(), ec);
  if (!ec) r->acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  // [::] takes IPv4 connections too (as Go's listeners), whatever bindv6only says.
  if (!ec && listen.address().is_v6()) r->acceptor_.set_option(asio::ip::v6_only(false), ec);
  if (!ec) r->acceptor_.bind(listen, ec);
  if (!ec) r->acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    // Go's wording, which Toxiproxy returns: "listen tcp 127.0.0.1:80: bind: address already in use".
    std::string why = ec.message();
    if (!why.empty()) why[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(why[0])));
    return absl::UnavailableError(absl::StrCat("listen tcp ", FormatHostPort(listen), ": bind: ", why));
  }
  r->Accept();
  return r;
}

StreamRelay::StreamRelay(asio::io_context& io, Upstream upstream, ToxicsFactory toxics,
                         std::function<void(const std::string&)> log)
    : io_(io),
      acceptor_(io),
      upstream_(std::move(upstream)),
      upstream_text_(absl::StrCat(absl::StrContains(upstream_.host, ':') ? absl::StrCat("[", upstream_.host, "]")
                                                                         : upstream_.host,
                                  ":", upstream_.port)),
      toxics_(std::move(toxics)),
      log_(std::move(log)),
      resolver_(io) {}

StreamRelay::~StreamRelay() { Stop(); }

tcp::endpoint StreamRelay::local_endpoint() const {
  boost::system::error_code ec;
  return acceptor_.local_endpoint(ec);
}

void StreamRelay::Accept() {
  acceptor_.async_accept([this, stopped = stopped_](boost::system::error_code ec, tcp::socket socket) {
    if (*stopped) return;
    if (ec == asio::error::operation_aborted) return;
    if (!ec) {
      auto c = std::make_shared<Conn>(io_, std::move(socket));
      c->id = ++next_id_;
      ++stats_->connections;
      boost::system::error_code ignored;
      c->client.set_option(tcp::no_delay(true), ignored);
      auto peer = c->client.remote_endpoint(ignored);
      if (peer.address().is_v6() && peer.address().to_v6().is_v4_mapped()) {
        // An IPv4 client of a [::] listener, shown as IPv4.
        peer.address(asio::ip::make_address_v4(asio::ip::v4_mapped, peer.address().to_v6()));
      }
      c->client_text = FormatHostPort(peer);
      c->toxics = toxics_(MonotonicNow());
      c->up.from = c->down.to = &c->client;
      c->up.to = c->down.from = &c->server;
      c->up.stream = &c->toxics->up;
      c->down.stream = &c->toxics->down;
      c->down.upstream = false;
      conns_[c->id] = c;
      Connect(c);
    }
    Accept();
  });
}

void StreamRelay::Connect(const std::shared_ptr<Conn>& c) {
  resolver_.Resolve(upstream_.host, [this, c, stopped = stopped_](const absl::StatusOr<asio::ip::address>& addr) {
    if (*stopped || c->closed) return;
    if (!addr.ok()) {
      // As a refused upstream: the client sees a reset.
      ++stats_->refused;
      if (log_) {
        log_(absl::StrCat("connection from ", c->client_text, ": cannot resolve upstream ", upstream_text_, ": ",
                          addr.status().message(), "; the client gets a reset"));
      }
      return End(c, /*reset=*/true);
    }
    c->server.async_connect(tcp::endpoint(*addr, upstream_.port), [this, c, stopped](boost::system::error_code ec) {
      if (*stopped || c->closed) return;
      if (ec) {
        // Refused or unreachable: the client sees a reset, as the server's refusal
        // would have looked without the proxy (Toxiproxy closes it with a FIN).
        ++stats_->refused;
        return End(c, /*reset=*/true);
      }
      boost::system::error_code ignored;
      c->server.set_option(tcp::no_delay(true), ignored);
      c->connected = true;
      Pump(c);
    });
  });
}

void StreamRelay::StartRead(const std::shared_ptr<Conn>& c, Dir& d, size_t max) {
  d.reading = true;
  if (d.rbuf.size() < kChunk) d.rbuf.resize(kChunk);
  d.from->async_read_some(asio::buffer(d.rbuf.data(), std::min(max, kChunk)),
                          [this, c, &d, stopped = stopped_](boost::system::error_code ec, size_t n) {
                            if (*stopped || c->closed) return;
                            d.reading = false;
                            if (ec == asio::error::eof) {
                              d.eof_in = true;
                            } else if (ec) {
                              // The peer reset: relay it as a reset (RST to the other peer).
                              return End(c, /*reset=*/true);
                            } else {
                              d.pending = n;
                              (d.upstream ? stats_->received_up : stats_->received_down) += n;
                            }
                            Pump(c);
                          });
}

void StreamRelay::StartWrite(const std::shared_ptr<Conn>& c, Dir& d, const uint8_t* data, size_t len) {
  d.writing = true;
  asio::async_write(*d.to, asio::buffer(data, len),
                    [this, c, &d, stopped = stopped_](boost::system::error_code ec, size_t n) {
                      if (*stopped || c->closed) return;
                      d.writing = false;
                      if (d.direct_write) {
                        d.direct_write = false;
                        d.pending = 0;
                      }
                      if (ec) return End(c, /*reset=*/true);
                      d.bytes += n;
                      (d.upstream ? stats_->sent_up : stats_->sent_down) += n;
                      Pump(c);
                    });
}

void StreamRelay::PumpDir(const std::shared_ptr<Conn>& c, Dir& d, Instant now) {
  boost::system::error_code ignored;
  if (!c->toxics->engaged) {
    // No toxic: what was read is written as it is, then the next read starts.
    if (d.pending > 0 && !d.writing) {
      d.direct_write = true;
      StartWrite(c, d, d.rbuf.data(), d.pending);
    }
    if (d.pending == 0 && d.eof_in && !d.eof_out && !d.writing) {
      d.eof_out = true;
      d.to->shutdown(tcp::socket::shutdown_send, ignored);
    }
    if (!d.reading && !d.writing && d.pending == 0 && !d.eof_in) StartRead(c, d, kChunk);
    return;
  }
  ToxicStream& s = *d.stream;
  if (d.pending > 0 && !d.direct_write && s.room() > 0) {
    s.Write(now, absl::MakeConstSpan(d.rbuf.data(), d.pending));
    d.pending = 0;
  }
  if (d.eof_in && d.pending == 0 && !d.eof_fed) {
    d.eof_fed = true;
    s.WriteEof(now);
  }
  s.Advance(now);
  if (!d.writing && s.readable() > 0) {
    d.wbuf.resize(std::min(s.readable(), kChunk));
    d.wbuf.resize(s.Read(absl::MakeSpan(d.wbuf)));
    StartWrite(c, d, d.wbuf.data(), d.wbuf.size());
  }
  if (!d.writing && s.readable() == 0 && s.end() == End::kEof && !d.eof_out) {
    d.eof_out = true;
    d.to->shutdown(tcp::socket::shutdown_send, ignored);
  }
  if (!d.reading && !d.eof_in && d.pending == 0 && s.room() > 0) StartRead(c, d, s.room());
}

void StreamRelay::Pump(const std::shared_ptr<Conn>& c) {
  if (c->closed || !c->connected) return;
  Instant now = MonotonicNow();
  ConnectionToxics& t = *c->toxics;
  t.Engage(now);
  PumpDir(c, c->up, now);
  PumpDir(c, c->down, now);
  if (t.engaged) {
    if (t.up.end() == End::kReset || t.down.end() == End::kReset) return End(c, /*reset=*/true);
    auto closed = [](const Dir& d) { return !d.writing && d.stream->readable() == 0 && d.stream->end() == End::kClose; };
    if (closed(c->up) || closed(c->down)) return End(c, /*reset=*/false);
  }
  if (c->up.eof_out && c->down.eof_out && !c->up.writing && !c->down.writing) return End(c, /*reset=*/false);
  Instant next = t.engaged ? t.NextDeadline() : stack::kNever;
  if (next != c->timer_at) {
    c->timer_at = next;
    if (next == stack::kNever) {
      c->timer.cancel();
    } else {
      c->timer.expires_at(ToSteady(next));
      c->timer.async_wait([this, c, stopped = stopped_](boost::system::error_code ec) {
        if (ec || *stopped || c->closed) return;
        c->timer_at = stack::kNever;
        Pump(c);
      });
    }
  }
}

void StreamRelay::End(const std::shared_ptr<Conn>& c, bool reset) {
  if (c->closed) return;
  c->closed = true;
  boost::system::error_code ignored;
  if (reset) {
    if (c->connected) ++stats_->resets;  // else: the upstream refused (stats_->refused)
    c->client.set_option(asio::socket_base::linger(true, 0), ignored);
    if (c->server.is_open()) c->server.set_option(asio::socket_base::linger(true, 0), ignored);
  }
  c->client.close(ignored);
  c->server.close(ignored);
  c->timer.cancel();
  conns_.erase(c->id);
}

void StreamRelay::Stop() {
  if (*stopped_) return;
  *stopped_ = true;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  auto conns = std::move(conns_);
  for (auto& [id, c] : conns) {
    c->closed = true;
    c->client.close(ignored);
    c->server.close(ignored);
    c->timer.cancel();
  }
}

void StreamRelay::Refresh() {
  std::vector<std::shared_ptr<Conn>> all;
  for (auto& [id, c] : conns_) all.push_back(c);
  for (auto& c : all) Pump(c);
}

std::vector<StreamRelay::ConnectionInfo> StreamRelay::Connections() const {
  std::vector<ConnectionInfo> out;
  for (const auto& [id, c] : conns_) {
    ConnectionInfo i;
    i.id = id;
    i.client = c->client_text;
    i.upstream = upstream_text_;
    i.state = !c->connected          ? "connecting"
              : c->up.eof_out && c->down.eof_out ? "closing"
              : c->up.eof_out        ? "client closed"
              : c->down.eof_out      ? "server closed"
                                     : "open";
    i.bytes_to_server = c->up.bytes;
    i.bytes_to_client = c->down.bytes;
    out.push_back(std::move(i));
  }
  return out;
}

}  // namespace wrench::proxy
