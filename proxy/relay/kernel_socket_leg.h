// A kernel socket as a relay leg (relay_loop.h), for the relays whose socket side no
// rule watches: the accepted client of ServeProxy and both sides of StreamRelay.
// (Proxy's upstream socket is a leg of its own, socket_leg.cc: its events may be held
// by the fault engine.)
#pragma once

#include <boost/asio.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/types/span.h"
#include "proxy/relay/relay_loop.h"
#include "stack/time.h"

namespace wrench::proxy {

// Reads wait for readiness and only then take a buffer, sized by the room the relay
// asked for (an idle connection holds none; a slow receiver closes the sender's
// window instead of growing wrench's memory). Writes go one at a time. Close is a
// shutdown of the sending side; a reset is an abortive close (SO_LINGER 0), which
// the peer sees as a RST.
class KernelSocketLeg final : public ByteLeg {
 public:
  // The most one read or write moves.
  static constexpr size_t kMaxIo = 256 * 1024;

  // How a read or a write ended, told to the owner once the leg has taken it in.
  struct Completion {
    enum class Kind { kRead, kEof, kReadError, kWritten, kWriteError };
    Kind kind = Kind::kRead;
    size_t bytes = 0;  // read, or written
    boost::system::error_code error;
  };
  // Hears every completion and then runs its relay. It outlives its legs; the call
  // may destroy the leg that makes it.
  class Owner {
   public:
    virtual void OnSocketCompletion(uint64_t conn, const KernelSocketLeg& leg,
                                    const Completion& done) = 0;

   protected:
    ~Owner() = default;
  };

  // `conn` is passed back with each completion, so the owner finds its connection.
  KernelSocketLeg(boost::asio::ip::tcp::socket sock, Owner& owner, uint64_t conn);
  ~KernelSocketLeg() override;
  KernelSocketLeg(const KernelSocketLeg&) = delete;
  KernelSocketLeg& operator=(const KernelSocketLeg&) = delete;

  boost::asio::ip::tcp::socket& socket() { return sock_; }
  bool open() const { return sock_.is_open(); }
  bool eof_received() const { return eof_in_; }
  bool shutdown_sent() const { return shutdown_sent_; }
  bool reading() const { return reading_; }

  size_t readable() const override { return open() ? in_len_ - in_off_ : 0; }
  size_t Read(absl::Span<uint8_t> out) override;
  absl::Span<const uint8_t> Peek() override { return {in_.get() + in_off_, readable()}; }
  void Consume(size_t n) override { in_off_ += n; }
  bool eof() const override { return open() && eof_in_ && readable() == 0; }
  bool reset() const override { return reset_; }
  void WantRead(size_t room) override;

  bool writable() const override { return open(); }
  size_t write_space() const override { return writing_ ? 0 : kMaxIo; }
  absl::Span<uint8_t> WriteBuffer(size_t n) override;
  void Write(stack::Instant now, absl::Span<const uint8_t> data) override;
  bool writing() const override { return writing_; }
  bool closable() const override { return open() && !shutdown_sent_; }
  void Close(stack::Instant now) override;
  void End(stack::Instant now, bool reset) override;

 private:
  void Done(const Completion& done) { owner_.OnSocketCompletion(conn_, *this, done); }

  boost::asio::ip::tcp::socket sock_;
  Owner& owner_;
  uint64_t conn_;
  // False once the leg is gone: a completion that runs after that touches nothing.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  // What the last read returned. Never zero-filled: a read overwrites it.
  std::unique_ptr<uint8_t[]> in_;
  size_t in_cap_ = 0, in_off_ = 0, in_len_ = 0;
  size_t read_room_ = 0;      // the size of the read that readiness starts
  std::vector<uint8_t> out_;  // being written
  bool reading_ = false, writing_ = false;
  bool eof_in_ = false, reset_ = false, shutdown_sent_ = false;
};

}  // namespace wrench::proxy
