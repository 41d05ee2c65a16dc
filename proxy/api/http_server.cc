// The HTTP server of http_server.h: one Session per connection, reading a request,
// answering it through the handler, and reading the next while the client keeps the
// connection alive. Beast lives in this file only.
#include "proxy/api/http_server.h"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <optional>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace wrench::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using asio::ip::tcp;

// What the server and its sessions share: sessions outlive neither the loop nor a
// Stop(), and check `stopped` before touching anything else.
struct HttpServer::Shared {
  HttpHandler handler;
  Options opts;
  bool stopped = false;
  std::vector<std::weak_ptr<Session>> sessions;
};

class HttpServer::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<Shared> shared)
      : stream_(std::move(socket)), shared_(std::move(shared)) {}

  void Read() {
    parser_.emplace();
    parser_->body_limit(shared_->opts.max_body);
    parser_->header_limit(static_cast<uint32_t>(shared_->opts.max_header));
    stream_.expires_after(absl::ToChronoNanoseconds(shared_->opts.idle_timeout));
    http::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
  }

 private:
  void OnRead(beast::error_code ec) {
    if (shared_->stopped) return;
    if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted) {
      return Close();
    }
    if (ec == http::error::body_limit) {
      return Reply(
          Error(413, absl::StrCat("request body larger than ", shared_->opts.max_body, " bytes")),
          false,
          /*drain=*/true);
    }
    if (ec == http::error::header_limit) {
      return Reply(Error(431, absl::StrCat("request header larger than ", shared_->opts.max_header,
                                           " bytes")),
                   false, /*drain=*/true);
    }
    if (ec) {
      // A connection reset, or a request that is not HTTP/1.1: nothing to answer when
      // nothing was read, a 400 otherwise.
      if (buffer_.size() == 0 && !parser_->got_some()) return Close();
      return Reply(Error(400, absl::StrCat("bad HTTP request: ", ec.message())), false,
                   /*drain=*/true);
    }
    const auto& req = parser_->get();
    HttpRequest r;
    r.method = std::string(req.method_string());
    r.target = std::string(req.target());
    r.body = req.body();
    if (auto ua = req.find(http::field::user_agent); ua != req.end())
      r.user_agent = std::string(ua->value());
    version_ = req.version();
    Reply(shared_->handler(r), req.keep_alive());
  }

  static HttpResponse Error(int status, const std::string& message) {
    HttpResponse r;
    r.status = status;
    r.body = nlohmann::json{{"error", message}, {"status", status}}.dump() + "\n";
    return r;
  }

  // After an error answered before the whole request was read, the rest of it is read
  // and thrown away (for a bounded time) before closing: closing with unread data would
  // send a RST, and the client would lose the answer.
  void Drain() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    if (drained_ > (64u << 20)) return Close();
    stream_.expires_after(std::chrono::seconds(5));
    scratch_.resize(64 * 1024);
    stream_.async_read_some(asio::buffer(scratch_),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              if (self->shared_->stopped) return;
                              self->drained_ += n;
                              if (ec) return self->Close();
                              self->Drain();
                            });
  }

  void Reply(HttpResponse out, bool keep_alive, bool drain = false) {
    res_ = {};
    res_.version(version_);
    res_.result(static_cast<unsigned>(out.status));
    res_.set(http::field::server, "wrench");
    if (!out.body.empty() || out.status != 204)
      res_.set(http::field::content_type, out.content_type);
    for (const auto& [k, v] : out.headers) res_.set(k, v);
    res_.body() = std::move(out.body);
    res_.keep_alive(keep_alive);
    res_.prepare_payload();
    stream_.expires_after(absl::ToChronoNanoseconds(shared_->opts.idle_timeout));
    http::async_write(stream_, res_,
                      [self = shared_from_this(), keep_alive, drain](beast::error_code ec, size_t) {
                        if (self->shared_->stopped) return;
                        if (!ec && drain) return self->Drain();
                        if (ec || !keep_alive) return self->Close();
                        self->Read();
                      });
  }

  beast::tcp_stream stream_;
  std::shared_ptr<Shared> shared_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  http::response<http::string_body> res_;
  unsigned version_ = 11;
  std::vector<uint8_t> scratch_;  // what Drain throws away
  size_t drained_ = 0;
};

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(asio::io_context& io,
                                                              const tcp::endpoint& at,
                                                              HttpHandler handler, Options opts) {
  auto shared = std::make_shared<Shared>();
  shared->handler = std::move(handler);
  shared->opts = opts;
  std::unique_ptr<HttpServer> s(new HttpServer(io, std::move(shared)));
  boost::system::error_code ec;
  const std::string where = absl::StrCat(at.address().to_string(), ":", at.port());
  s->acceptor_.open(at.protocol(), ec);
  if (!ec) s->acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) s->acceptor_.bind(at, ec);
  if (!ec) s->acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", where, ": ", ec.message()));
  }
  s->accept_.Start();
  return s;
}

HttpServer::HttpServer(asio::io_context& io, std::shared_ptr<Shared> shared)
    : acceptor_(io),
      shared_(std::move(shared)),
      accept_(acceptor_, [this](tcp::socket s) { OnAccepted(std::move(s)); }) {}

HttpServer::~HttpServer() { Stop(); }

tcp::endpoint HttpServer::local_endpoint() const { return accept_.local_endpoint(); }

void HttpServer::OnAccepted(tcp::socket socket) {
  if (shared_->stopped) return;
  boost::system::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  auto session = std::make_shared<Session>(std::move(socket), shared_);
  auto& live = shared_->sessions;
  live.erase(std::remove_if(live.begin(), live.end(), [](const auto& w) { return w.expired(); }),
             live.end());
  live.push_back(session);
  session->Read();
}

void HttpServer::Stop() {
  if (shared_->stopped) return;
  shared_->stopped = true;
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  for (auto& w : shared_->sessions) {
    if (auto s = w.lock()) s->Close();
  }
  shared_->sessions.clear();
}

}  // namespace wrench::proxy
