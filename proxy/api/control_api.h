// The HTTP/JSON control API of a running wrench, one server for two vocabularies:
// wrench's own (rules, connections, counters: GET/POST /rules, DELETE /rules/{id},
// GET /connections, GET /counters) and Toxiproxy 2.x's (/proxies, /populate, toxics,
// /reset, /version, /metrics; toxiproxy.h). It runs on the proxy's io_context
// (http_server.h), so handlers need no locks.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <boost/asio.hpp>

#include "absl/status/statusor.h"
#include "proxy/api/http_server.h"

namespace wrench::proxy {

class ApiHost;

// The Toxiproxy API version wrench answers GET /version with: the one whose paths,
// fields and errors it follows.
inline constexpr const char* kToxiproxyApiVersion = "2.12.0";

class ControlApi {
 public:
  // Binds ADDR:PORT ("127.0.0.1:8474"; a bare ":PORT" binds loopback, so the API is
  // never reachable from elsewhere unless an address is given).
  static absl::StatusOr<std::unique_ptr<ControlApi>> Start(boost::asio::io_context& io,
                                                           const std::string& address,
                                                           ApiHost& service);
  virtual ~ControlApi() = default;
  virtual uint16_t port() const = 0;
  virtual void Stop() = 0;
  // Answers one request, as the server does (tests call it without a socket).
  virtual HttpResponse Handle(const HttpRequest& request) = 0;
};

}  // namespace wrench::proxy
