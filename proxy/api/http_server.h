// A small HTTP/1.1 server (Boost.Beast) on the service's io_context: asynchronous
// accept, read and write, keep-alive, bounded requests, idle connections closed. The
// control API (control_api.h) gives it one handler; all of it runs on the loop's
// thread, so the handler reads and changes the proxy without locks.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio.hpp>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proxy/os/accept_loop.h"

namespace wrench::proxy {

struct HttpRequest {
  std::string method;  // "GET"
  std::string target;  // as sent: "/proxies/redis?x=1"
  std::string body;
  std::string user_agent;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra ones
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

class HttpServer {
 public:
  struct Options {
    size_t max_body = 1 << 20;     // a bigger request gets 413
    size_t max_header = 16 << 10;  // a bigger header gets 431
    absl::Duration idle_timeout = absl::Seconds(60);
  };

  // Binds and listens at once (errors are the user's: a busy port, a bad address),
  // then accepts on the loop.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(boost::asio::io_context& io,
                                                           const boost::asio::ip::tcp::endpoint& at,
                                                           HttpHandler handler, Options opts);
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(boost::asio::io_context& io,
                                                           const boost::asio::ip::tcp::endpoint& at,
                                                           HttpHandler handler) {
    return Start(io, at, std::move(handler), Options());
  }
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  boost::asio::ip::tcp::endpoint local_endpoint() const;
  // Stops accepting and closes every connection; handlers are not called again.
  void Stop();

 private:
  class Session;
  struct Shared;
  HttpServer(boost::asio::io_context& io, std::shared_ptr<Shared> shared);
  void OnAccepted(boost::asio::ip::tcp::socket socket);

  boost::asio::ip::tcp::acceptor acceptor_;
  std::shared_ptr<Shared> shared_;
  AcceptLoop accept_;  // after acceptor_, which it uses
};

}  // namespace wrench::proxy
