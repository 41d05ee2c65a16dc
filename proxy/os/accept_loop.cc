#include "proxy/os/accept_loop.h"

#include <utility>

namespace wrench::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;

AcceptLoop::AcceptLoop(tcp::acceptor& acceptor, Handler on_accept)
    : acceptor_(acceptor),
      on_accept_(std::move(on_accept)),
      retry_(acceptor.get_executor()) {}

AcceptLoop::~AcceptLoop() {
  *alive_ = false;
  retry_.cancel();
}

void AcceptLoop::Start() { Accept(); }

tcp::endpoint AcceptLoop::local_endpoint() const {
  boost::system::error_code ec;
  return acceptor_.local_endpoint(ec);
}

void AcceptLoop::Accept() {
  acceptor_.async_accept([this, alive = alive_](boost::system::error_code ec, tcp::socket s) {
    if (!*alive || ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (!ec) {
      on_accept_(std::move(s));
      if (*alive && acceptor_.is_open()) Accept();
      return;
    }
    const bool exhausted =
        ec == asio::error::no_descriptors || ec == asio::error::no_buffer_space ||
        ec == asio::error::no_memory || ec == boost::system::errc::too_many_files_open_in_system;
    if (!exhausted) return Accept();
    ++exhausted_;
    retry_.expires_after(absl::ToChronoNanoseconds(kRetry));
    retry_.async_wait([this, alive](boost::system::error_code wait_ec) {
      if (*alive && !wait_ec && acceptor_.is_open()) Accept();
    });
  });
}

}  // namespace wrench::proxy
