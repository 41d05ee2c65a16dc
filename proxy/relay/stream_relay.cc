// The kernel-socket relay of stream_relay.h: per connection, the relay loop between
// the client's socket and the upstream's, through the connection's toxics from its
// first toxic on. One timer per connection wakes it when the toxics next have work.
#include "proxy/relay/stream_relay.h"

#include <cctype>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "proxy/os/address.h"
#include "proxy/relay/loop_timer.h"
#include "proxy/relay/relay_loop.h"

namespace wrench::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;
using stack::Instant;
using ToxicEnd = ToxicStream::End;
using Kind = KernelSocketLeg::Completion::Kind;

struct StreamRelay::Conn {
  Conn(StreamRelay& relay, uint64_t id, tcp::socket c)
      : id(id),
        client(std::move(c), relay, id),
        server(tcp::socket(relay.io_), relay, id),
        timer(relay.io_, [&relay, id] { relay.OnTimer(id); }) {}
  uint64_t id = 0;
  KernelSocketLeg client, server;
  RelaySide client_side, server_side;  // what the relay loop keeps of each leg
  LoopTimer timer;
  std::unique_ptr<ConnectionToxics> toxics;
  bool connected = false;
  bool closed = false;
  uint64_t bytes_to_server = 0, bytes_to_client = 0;  // written to each socket
  std::string client_text;
};

absl::StatusOr<std::unique_ptr<StreamRelay>> StreamRelay::Start(
    asio::io_context& io, const tcp::endpoint& listen, Upstream upstream, ToxicsFactory toxics,
    std::function<void(const std::string&)> log) {
  std::unique_ptr<StreamRelay> r(
      new StreamRelay(io, std::move(upstream), std::move(toxics), std::move(log)));
  boost::system::error_code ec;
  r->acceptor_.open(listen.protocol(), ec);
  if (!ec) r->acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  // [::] takes IPv4 connections too (as Go's listeners), whatever bindv6only says.
  if (!ec && listen.address().is_v6()) r->acceptor_.set_option(asio::ip::v6_only(false), ec);
  if (!ec) r->acceptor_.bind(listen, ec);
  if (!ec) r->acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    // Go's wording, which Toxiproxy returns: "listen tcp 127.0.0.1:80: bind: address already in
    // use".
    std::string why = ec.message();
    if (!why.empty()) why[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(why[0])));
    return absl::UnavailableError(
        absl::StrCat("listen tcp ", FormatHostPort(listen), ": bind: ", why));
  }
  r->accept_.Start();
  return r;
}

StreamRelay::StreamRelay(asio::io_context& io, Upstream upstream, ToxicsFactory toxics,
                         std::function<void(const std::string&)> log)
    : io_(io),
      acceptor_(io),
      upstream_(std::move(upstream)),
      upstream_text_(absl::StrCat(absl::StrContains(upstream_.host, ':')
                                      ? absl::StrCat("[", upstream_.host, "]")
                                      : upstream_.host,
                                  ":", upstream_.port)),
      toxics_(std::move(toxics)),
      log_(std::move(log)),
      resolver_(io),
      accept_(acceptor_, [this](tcp::socket s) { OnAccepted(std::move(s)); }) {}

StreamRelay::~StreamRelay() { Stop(); }

tcp::endpoint StreamRelay::local_endpoint() const { return accept_.local_endpoint(); }

void StreamRelay::OnAccepted(tcp::socket socket) {
  if (*stopped_) return;
  auto c = std::make_shared<Conn>(*this, ++next_id_, std::move(socket));
  ++stats_->connections;
  boost::system::error_code ignored;
  c->client.socket().set_option(tcp::no_delay(true), ignored);
  auto peer = c->client.socket().remote_endpoint(ignored);
  if (peer.address().is_v6() && peer.address().to_v6().is_v4_mapped()) {
    // An IPv4 client of a [::] listener, shown as IPv4.
    peer.address(asio::ip::make_address_v4(asio::ip::v4_mapped, peer.address().to_v6()));
  }
  c->client_text = FormatHostPort(peer);
  c->toxics = toxics_(MonotonicNow());
  conns_[c->id] = c;
  Connect(c);
}

void StreamRelay::Connect(const std::shared_ptr<Conn>& c) {
  resolver_.Resolve(
      upstream_.host, [this, c, stopped = stopped_](const absl::StatusOr<asio::ip::address>& addr) {
        if (*stopped || c->closed) return;
        if (!addr.ok()) {
          // As a refused upstream: the client sees a reset.
          ++stats_->refused;
          if (log_) {
            log_(absl::StrCat("connection from ", c->client_text, ": cannot resolve upstream ",
                              upstream_text_, ": ", addr.status().message(),
                              "; the client gets a reset"));
          }
          return End(c, /*reset=*/true);
        }
        c->server.socket().async_connect(
            tcp::endpoint(*addr, upstream_.port), [this, c, stopped](boost::system::error_code ec) {
              if (*stopped || c->closed) return;
              if (ec) {
                // Refused or unreachable: the client sees a reset, as the server's refusal
                // would have looked without the proxy (Toxiproxy closes it with a FIN).
                ++stats_->refused;
                return End(c, /*reset=*/true);
              }
              boost::system::error_code ignored;
              c->server.socket().set_option(tcp::no_delay(true), ignored);
              c->connected = true;
              Pump(c);
            });
      });
}

void StreamRelay::OnSocketCompletion(uint64_t conn, const KernelSocketLeg& leg,
                                     const KernelSocketLeg::Completion& done) {
  auto it = conns_.find(conn);
  if (*stopped_ || it == conns_.end()) return;
  std::shared_ptr<Conn> c = it->second;  // alive until this returns, ended or not
  const bool from_client = &leg == &c->client;
  if (done.kind == Kind::kRead) {
    (from_client ? stats_->received_up : stats_->received_down) += done.bytes;
  } else if (done.kind == Kind::kWritten) {
    (from_client ? c->bytes_to_client : c->bytes_to_server) += done.bytes;
    (from_client ? stats_->sent_down : stats_->sent_up) += done.bytes;
  }
  Pump(c);
}

void StreamRelay::OnTimer(uint64_t conn) {
  auto it = conns_.find(conn);
  if (*stopped_ || it == conns_.end()) return;
  std::shared_ptr<Conn> c = it->second;
  Pump(c);
}

void StreamRelay::Pump(const std::shared_ptr<Conn>& c) {
  if (c->closed || !c->connected) return;
  Instant now = MonotonicNow();
  ConnectionToxics& t = *c->toxics;
  std::optional<ToxicEnd> toxic_end;
  RelayRun run = RunRelay(c->client, c->client_side, c->server, c->server_side, &t, now,
                          absl::MakeSpan(scratch_), [&](ToxicEnd end) { toxic_end = end; });
  if (toxic_end) return End(c, /*reset=*/*toxic_end == ToxicEnd::kReset);
  if (run.reset_from_a || run.reset_from_b) return End(c, /*reset=*/true);
  if (c->client.shutdown_sent() && c->server.shutdown_sent() && !c->client.writing() &&
      !c->server.writing()) {
    return End(c, /*reset=*/false);
  }
  c->timer.ArmAt(t.engaged ? t.NextDeadline() : stack::kNever);
}

void StreamRelay::End(const std::shared_ptr<Conn>& c, bool reset) {
  if (c->closed) return;
  c->closed = true;
  if (reset && c->connected) ++stats_->resets;  // else: the upstream refused (stats_->refused)
  Instant now = MonotonicNow();
  c->client.End(now, reset);
  c->server.End(now, reset);
  c->timer.Cancel();
  conns_.erase(c->id);
}

void StreamRelay::Stop() {
  if (*stopped_) return;
  *stopped_ = true;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  auto conns = std::move(conns_);
  Instant now = MonotonicNow();
  for (auto& [id, c] : conns) {
    c->closed = true;
    c->client.End(now, /*reset=*/false);
    c->server.End(now, /*reset=*/false);
    c->timer.Cancel();
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
    // The client's FIN became the shutdown toward the server, and the server's the
    // shutdown toward the client.
    const bool client_closed = c->server.shutdown_sent(), server_closed = c->client.shutdown_sent();
    i.state = !c->connected                    ? "connecting"
              : client_closed && server_closed ? "closing"
              : client_closed                  ? "client closed"
              : server_closed                  ? "server closed"
                                               : "open";
    i.bytes_to_server = c->bytes_to_server;
    i.bytes_to_client = c->bytes_to_client;
    out.push_back(std::move(i));
  }
  return out;
}

}  // namespace wrench::proxy
