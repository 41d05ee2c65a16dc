// A kernel socket as a relay leg (kernel_socket_leg.h).
#include "proxy/relay/kernel_socket_leg.h"

#include <algorithm>
#include <cstring>

namespace wrench::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;
using Kind = KernelSocketLeg::Completion::Kind;

KernelSocketLeg::KernelSocketLeg(tcp::socket sock, Owner& owner, uint64_t conn)
    : sock_(std::move(sock)), owner_(owner), conn_(conn) {}

KernelSocketLeg::~KernelSocketLeg() { *alive_ = false; }

size_t KernelSocketLeg::Read(absl::Span<uint8_t> out) {
  size_t n = std::min(out.size(), readable());
  if (n > 0) std::memcpy(out.data(), in_.get() + in_off_, n);
  in_off_ += n;
  return n;
}

void KernelSocketLeg::WantRead(size_t room) {
  if (!open() || reading_ || eof_in_ || reset_ || room == 0) return;
  boost::system::error_code ec;
  // The read that readiness starts must not block.
  if (!sock_.non_blocking()) sock_.non_blocking(true, ec);
  reading_ = true;
  read_room_ = std::min(room, kMaxIo);
  sock_.async_wait(tcp::socket::wait_read, [this, alive = alive_](boost::system::error_code ec) {
    if (!*alive) return;
    reading_ = false;
    // Aborted: the socket was closed here, by the relay that ended the leg.
    if (ec == asio::error::operation_aborted) return;
    if (ec) {
      reset_ = true;
      return Done({Kind::kReadError, 0, ec});
    }
    if (in_cap_ < read_room_) {
      in_ = std::make_unique_for_overwrite<uint8_t[]>(read_room_);
      in_cap_ = read_room_;
    }
    in_off_ = in_len_ = 0;
    boost::system::error_code rec;
    size_t n = sock_.read_some(asio::buffer(in_.get(), read_room_), rec);
    if (rec == asio::error::eof) {
      eof_in_ = true;
      return Done({Kind::kEof, 0, {}});
    }
    if (rec && rec != asio::error::would_block && rec != asio::error::try_again) {
      reset_ = true;  // the peer reset the connection, or the socket failed
      return Done({Kind::kReadError, 0, rec});
    }
    in_len_ = rec ? 0 : n;
    Done({Kind::kRead, in_len_, {}});
  });
}

absl::Span<uint8_t> KernelSocketLeg::WriteBuffer(size_t n) {
  out_.resize(n);
  return absl::MakeSpan(out_);
}

void KernelSocketLeg::Write(stack::Instant, absl::Span<const uint8_t> data) {
  if (data.data() == out_.data()) {
    out_.resize(data.size());
  } else {
    out_.assign(data.begin(), data.end());
  }
  if (data.empty()) return;
  writing_ = true;
  asio::async_write(sock_, asio::buffer(out_),
                    [this, alive = alive_](boost::system::error_code ec, size_t n) {
                      if (!*alive) return;
                      writing_ = false;
                      if (ec == asio::error::operation_aborted) return;
                      if (ec) {
                        reset_ = true;
                        return Done({Kind::kWriteError, 0, ec});
                      }
                      Done({Kind::kWritten, n, {}});
                    });
}

void KernelSocketLeg::Close(stack::Instant) {
  shutdown_sent_ = true;
  boost::system::error_code ignored;
  sock_.shutdown(tcp::socket::shutdown_send, ignored);
}

void KernelSocketLeg::End(stack::Instant, bool reset) {
  if (!open()) return;
  boost::system::error_code ignored;
  if (reset) sock_.set_option(asio::socket_base::linger(true, 0), ignored);
  sock_.close(ignored);
}

}  // namespace wrench::proxy
