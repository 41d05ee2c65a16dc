// The HTTP/JSON control API (Boost.Beast) of a running wrench: rules, connections
// and counters, on the same io_context as the proxy, so handlers need no locks.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <boost/asio.hpp>

#include "absl/status/statusor.h"

namespace wrench::proxy {

class Service;

class ControlApi {
 public:
  // Binds ADDR:PORT ("127.0.0.1:8474"; a bare ":PORT" binds loopback).
  static absl::StatusOr<std::unique_ptr<ControlApi>> Start(boost::asio::io_context& io,
                                                           const std::string& address, Service& service);
  virtual ~ControlApi() = default;
  virtual uint16_t port() const = 0;
  virtual void Stop() = 0;
};

}  // namespace wrench::proxy
