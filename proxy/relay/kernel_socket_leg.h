// A kernel socket as a relay leg (relay_loop.h): the accepted client of ServeProxy,
// both sides of StreamRelay, and Proxy's upstream socket, whose events also pass
// through fault gates while a rule watches that socket leg (Gate, below).
#pragma once

#include <boost/asio.hpp>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "proxy/relay/relay_loop.h"
#include "stack/tcp_state.h"
#include "stack/time.h"

namespace wrench::proxy {

// Reads wait for readiness and only then take a buffer, sized by the room the relay
// last asked for (an idle connection holds none; a slow receiver closes the sender's
// window instead of growing wrench's memory). Writes go one at a time, from a buffer
// the leg lends the relay. Close is a shutdown of the sending side; a reset is an
// abortive close (SO_LINGER 0), which the peer sees as a RST. After the peer's FIN the
// socket is still watched for errors: a peer that resets the connection after its FIN
// resets the leg.
class KernelSocketLeg final : public ByteLeg {
 public:
  // The most one read or write moves.
  static constexpr size_t kMaxIo = 256 * 1024;

  // How a read or a write ended, told to the owner once the leg has taken it in.
  struct Completion {
    enum class Kind { kRead, kEof, kReadError, kErrorAfterEof, kWritten, kWriteError };
    Kind kind = Kind::kRead;
    size_t bytes = 0;  // read, or written
    boost::system::error_code error;
    // What an event line says of it ("client closed its side (FIN)", "client socket:
    // Connection reset by peer"), for the peer named `peer`; empty for reads and writes.
    std::string Describe(absl::string_view peer) const;
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

  // Stands between the socket and the relay. While it holds a direction, every event
  // of that direction (toward the peer: a write, the shutdown; from the peer: what a
  // read returned, EOF, an error) is handed to it instead of taking effect, and the
  // gate applies it later in stream order (Deliver, DeliverEof, Send, Shutdown,
  // Abort). Proxy's upstream socket has one (proxy_connection.h).
  class Gate {
   public:
    enum Direction { kOut = 0, kIn = 1 };  // toward the peer; from the peer
    virtual bool Holds(Direction d) const = 0;
    // While it holds `d`: the most bytes one event may carry now (0: none now).
    virtual size_t Room(Direction d) const = 0;
    // An event while the gate holds its direction; `flags` as a segment's
    // (stack::kPsh for bytes, kFin for EOF or the shutdown, kRst for an error).
    virtual void Take(Direction d, uint8_t flags, absl::Span<const uint8_t> data) = 0;
    // An event that took effect without the gate.
    virtual void Passed(Direction d, uint8_t flags, size_t bytes) = 0;

   protected:
    ~Gate() = default;
  };

  // `conn` is passed back with each completion, so the owner finds its connection.
  KernelSocketLeg(boost::asio::ip::tcp::socket sock, Owner& owner, uint64_t conn);
  ~KernelSocketLeg() override;
  KernelSocketLeg(const KernelSocketLeg&) = delete;
  KernelSocketLeg& operator=(const KernelSocketLeg&) = delete;

  void set_gate(Gate* gate) { gate_ = gate; }
  boost::asio::ip::tcp::socket& socket() { return sock_; }
  bool open() const { return sock_.is_open(); }
  // The peer's FIN took effect (after the gate, if any).
  bool eof_received() const { return eof_in_; }
  bool shutdown_sent() const { return shutdown_sent_; }
  bool reading() const { return reading_; }
  // The kernel socket's TCP state, in the endpoint's terms (for logs and rules).
  stack::TcpState kernel_state();

  size_t readable() const override { return open() ? in_len_ - in_off_ : 0; }
  size_t Read(absl::Span<uint8_t> out) override;
  absl::Span<const uint8_t> Peek() override { return {in_.get() + in_off_, readable()}; }
  void Consume(size_t n) override { in_off_ += n; }
  bool eof() const override { return open() && eof_in_ && readable() == 0; }
  bool reset() const override { return reset_; }
  void WantRead(size_t room) override;

  bool writable() const override { return open(); }
  size_t write_space() const override;
  absl::Span<uint8_t> WriteBuffer(size_t n) override;
  void Write(stack::Instant now, absl::Span<const uint8_t> data) override;
  bool writing() const override { return writing_; }
  bool closable() const override { return open() && !shutdown_sent_; }
  void Close(stack::Instant now) override;
  void End(stack::Instant now, bool reset) override;

  // What a gate releases, taking effect now. Deliver makes bytes from the peer
  // readable, once those before them were read (unread() == 0).
  size_t unread() const { return in_len_ - in_off_; }
  void Deliver(absl::Span<const uint8_t> data);
  void DeliverEof() { eof_in_ = true; }
  // A socket write (one at a time: not while writing()), and the shutdown.
  void Send(std::vector<uint8_t> data);
  void Shutdown();
  // An abortive close that ends the leg as reset.
  void Abort();

 private:
  void Done(const Completion& done) { owner_.OnSocketCompletion(conn_, *this, done); }
  // A wait or write that did not complete: aborted (true, nothing to tell), or an
  // error that resets the leg (true, told to the owner as `kind`).
  bool Failed(const boost::system::error_code& ec, Completion::Kind kind);
  // Whether the gate took the event (else it takes effect now).
  bool Gated(Gate::Direction d, uint8_t flags, absl::Span<const uint8_t> data);
  void OnReadable();
  void StartWrite();
  void WatchErrors();
  void ReserveIn(size_t n);

  boost::asio::ip::tcp::socket sock_;
  Owner& owner_;
  uint64_t conn_;
  Gate* gate_ = nullptr;
  // False once the leg is gone: a completion that runs after that touches nothing.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  // What the last read returned (or the gate delivered). Never zero-filled: a read
  // overwrites it.
  std::unique_ptr<uint8_t[]> in_;
  size_t in_cap_ = 0, in_off_ = 0, in_len_ = 0;
  size_t read_room_ = 0;      // the size of the read that readiness starts
  std::vector<uint8_t> out_;  // being written
  bool reading_ = false, writing_ = false;
  bool read_ended_ = false;  // the socket returned EOF or an error (perhaps held in the gate)
  bool eof_in_ = false, reset_ = false, shutdown_sent_ = false;
};

}  // namespace wrench::proxy
