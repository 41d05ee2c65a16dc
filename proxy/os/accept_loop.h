// One accept loop for every listening socket wrench serves (the HTTP API, the
// Toxiproxy API's socket proxies, `exec --serve`).
#pragma once

#include <boost/asio.hpp>
#include <cstdint>
#include <functional>
#include <memory>

#include "absl/time/time.h"

namespace wrench::proxy {

// Accepts connections on an acceptor its owner opened, and hands each socket to
// `on_accept`, until the acceptor is closed or the loop is destroyed.
//
// A failed accept does not end the loop. When the process is out of descriptors or
// memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) the connection stays in the listen queue,
// so accepting again at once fails again at once and the loop would spin; it waits
// `kRetry` first, as servers such as nginx do, and the client's connection is
// accepted once a descriptor is free. Other errors (a connection aborted while it
// queued) retry at once.
class AcceptLoop {
 public:
  using Handler = std::function<void(boost::asio::ip::tcp::socket)>;
  static constexpr absl::Duration kRetry = absl::Milliseconds(100);

  AcceptLoop(boost::asio::ip::tcp::acceptor& acceptor, Handler on_accept);
  ~AcceptLoop();
  AcceptLoop(const AcceptLoop&) = delete;
  AcceptLoop& operator=(const AcceptLoop&) = delete;

  void Start();
  // The address it accepts on; an unspecified endpoint once the acceptor is closed.
  boost::asio::ip::tcp::endpoint local_endpoint() const;
  // Accepts that failed because the process was out of descriptors or memory.
  uint64_t exhausted() const { return exhausted_; }

 private:
  void Accept();

  boost::asio::ip::tcp::acceptor& acceptor_;
  Handler on_accept_;
  boost::asio::steady_timer retry_;
  uint64_t exhausted_ = 0;
  // Handlers still queued when the loop is destroyed find this false.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace wrench::proxy
