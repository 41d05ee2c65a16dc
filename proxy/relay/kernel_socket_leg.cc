// A kernel socket as a relay leg (kernel_socket_leg.h).
#include "proxy/relay/kernel_socket_leg.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "stack/tcp_wire.h"

namespace wrench::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;
using stack::TcpState;
using Kind = KernelSocketLeg::Completion::Kind;
using Direction = KernelSocketLeg::Gate::Direction;

std::string KernelSocketLeg::Completion::Describe(absl::string_view peer) const {
  switch (kind) {
    case Kind::kEof: return absl::StrCat(peer, " closed its side (FIN)");
    case Kind::kReadError: return absl::StrCat(peer, " socket: ", error.message());
    case Kind::kErrorAfterEof:
      return absl::StrCat(peer, " socket after its FIN: ", std::strerror(error.value()));
    default: return "";
  }
}

KernelSocketLeg::KernelSocketLeg(tcp::socket sock, Owner& owner, uint64_t conn)
    : sock_(std::move(sock)), owner_(owner), conn_(conn) {}

KernelSocketLeg::~KernelSocketLeg() { *alive_ = false; }

TcpState KernelSocketLeg::kernel_state() {
  if (!open()) return TcpState::kClosed;
  tcp_info info{};
  socklen_t len = sizeof info;
  if (::getsockopt(sock_.native_handle(), IPPROTO_TCP, TCP_INFO, &info, &len) != 0)
    return TcpState::kClosed;
  // Linux numbering, include/net/tcp_states.h.
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

bool KernelSocketLeg::Gated(Direction d, uint8_t flags, absl::Span<const uint8_t> data) {
  if (!gate_) return false;
  if (gate_->Holds(d)) {
    gate_->Take(d, flags, data);
    return true;
  }
  gate_->Passed(d, flags, data.size());
  return false;
}

void KernelSocketLeg::ReserveIn(size_t n) {
  if (in_cap_ >= n) return;
  in_ = std::make_unique_for_overwrite<uint8_t[]>(n);
  in_cap_ = n;
}

size_t KernelSocketLeg::Read(absl::Span<uint8_t> out) {
  size_t n = std::min(out.size(), readable());
  if (n > 0) std::memcpy(out.data(), in_.get() + in_off_, n);
  in_off_ += n;
  return n;
}

void KernelSocketLeg::WantRead(size_t room) {
  if (room == 0) return;
  // A read already waiting for readiness takes the latest room.
  read_room_ = std::min(room, kMaxIo);
  if (!open() || reading_ || read_ended_ || reset_) return;
  if (gate_ && gate_->Holds(Gate::kIn) && gate_->Room(Gate::kIn) == 0) return;
  boost::system::error_code ec;
  // The read that readiness starts must not block.
  if (!sock_.non_blocking()) sock_.non_blocking(true, ec);
  reading_ = true;
  sock_.async_wait(tcp::socket::wait_read, [this, alive = alive_](boost::system::error_code ec) {
    if (!*alive) return;
    reading_ = false;
    if (!Failed(ec, Kind::kReadError)) OnReadable();
  });
}

bool KernelSocketLeg::Failed(const boost::system::error_code& ec, Kind kind) {
  // Aborted: the socket was closed here, by the relay that ended the leg.
  if (ec == asio::error::operation_aborted) return true;
  if (!ec) return false;
  reset_ = true;
  Done({kind, 0, ec});
  return true;
}

void KernelSocketLeg::OnReadable() {
  size_t room = read_room_;
  // Through the gate, a read is one event, while the gate has room.
  if (gate_ && gate_->Holds(Gate::kIn)) room = std::min(room, gate_->Room(Gate::kIn));
  ReserveIn(room);
  in_off_ = in_len_ = 0;
  boost::system::error_code rec;
  size_t n = room == 0 ? 0 : sock_.read_some(asio::buffer(in_.get(), room), rec);
  if (rec == asio::error::eof) {
    read_ended_ = true;
    if (!Gated(Gate::kIn, stack::kFin | stack::kAck, {})) eof_in_ = true;
    WatchErrors();
    return Done({Kind::kEof, 0, {}});
  }
  if (rec && rec != asio::error::would_block && rec != asio::error::try_again) {
    // The peer reset the connection, or the socket failed.
    read_ended_ = true;
    if (!Gated(Gate::kIn, stack::kRst | stack::kAck, {})) reset_ = true;
    return Done({Kind::kReadError, 0, rec});
  }
  if (rec) n = 0;
  in_len_ = n;
  if (n > 0 && Gated(Gate::kIn, stack::kPsh | stack::kAck, {in_.get(), n})) in_len_ = 0;
  Done({Kind::kRead, n, {}});
}

void KernelSocketLeg::WatchErrors() {
  // After the peer's FIN nothing more is read, but the peer may still reset the
  // connection (a close with unread data, SO_LINGER 0): the socket reports that as an
  // error (POLLERR), which the other leg is to hear as a RST.
  sock_.async_wait(tcp::socket::wait_error, [this, alive = alive_](boost::system::error_code ec) {
    if (!*alive || ec || !open()) return;
    int err = 0;
    socklen_t len = sizeof err;
    // Without an error it is the end of both directions (POLLHUP): nothing to relay.
    if (::getsockopt(sock_.native_handle(), SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err == 0)
      return;
    if (!Gated(Gate::kIn, stack::kRst | stack::kAck, {})) reset_ = true;
    Done({Kind::kErrorAfterEof, 0, {err, boost::system::system_category()}});
  });
}

void KernelSocketLeg::Deliver(absl::Span<const uint8_t> data) {
  ReserveIn(data.size());
  if (!data.empty()) std::memcpy(in_.get(), data.data(), data.size());
  in_off_ = 0;
  in_len_ = data.size();
}

size_t KernelSocketLeg::write_space() const {
  if (gate_ && gate_->Holds(Gate::kOut)) return gate_->Room(Gate::kOut);
  return writing_ ? 0 : kMaxIo;
}

absl::Span<uint8_t> KernelSocketLeg::WriteBuffer(size_t n) {
  // Through the gate, the event keeps its own copy.
  if (gate_ && gate_->Holds(Gate::kOut)) return {};
  out_.resize(n);
  return absl::MakeSpan(out_);
}

void KernelSocketLeg::Write(stack::Instant, absl::Span<const uint8_t> data) {
  if (Gated(Gate::kOut, stack::kPsh | stack::kAck, data)) return;
  if (data.data() == out_.data()) {
    out_.resize(data.size());
  } else {
    out_.assign(data.begin(), data.end());
  }
  if (!data.empty()) StartWrite();
}

void KernelSocketLeg::Send(std::vector<uint8_t> data) {
  out_ = std::move(data);
  if (!out_.empty()) StartWrite();
}

void KernelSocketLeg::StartWrite() {
  writing_ = true;
  asio::async_write(sock_, asio::buffer(out_),
                    [this, alive = alive_](boost::system::error_code ec, size_t n) {
                      if (!*alive) return;
                      writing_ = false;
                      if (!Failed(ec, Kind::kWriteError)) Done({Kind::kWritten, n, {}});
                    });
}

void KernelSocketLeg::Close(stack::Instant) {
  if (!Gated(Gate::kOut, stack::kFin | stack::kAck, {})) Shutdown();
}

void KernelSocketLeg::Shutdown() {
  shutdown_sent_ = true;
  boost::system::error_code ignored;
  sock_.shutdown(tcp::socket::shutdown_send, ignored);
}

void KernelSocketLeg::End(stack::Instant, bool reset) {
  if (!open()) return;
  boost::system::error_code ignored;
  if (reset) sock_.set_option(asio::socket_base::linger(true, 0), ignored);
  sock_.close(ignored);
  shutdown_sent_ = true;
}

void KernelSocketLeg::Abort() {
  End(stack::Instant(), /*reset=*/true);
  reset_ = true;
  read_ended_ = true;
}

}  // namespace wrench::proxy
