// The relay between the two legs of a connection (docs/ARCHITECTURE.md "The relay
// loop"): one byte-leg interface with two implementations, our TCP endpoint over the
// TUN (EndpointLeg) and a kernel socket (the relays' own, beside their connections),
// and one loop that moves bytes between two legs with back-pressure, half-close and
// resets, through a connection's stream toxics when it has any.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/functional/function_ref.h"
#include "absl/types/span.h"
#include "proxy/fault/stream_toxics.h"
#include "stack/tcp_endpoint.h"
#include "stack/tcp_state.h"
#include "stack/time.h"

namespace wrench::proxy {

// A leg's endpoint takes bytes to send: its connection is open and it has not sent
// its FIN.
bool CanSend(stack::TcpState s);

// A leg that ended by reset, abort or timeout before both byte streams were
// complete. A RST in TIME-WAIT (RFC 9293 lets it end TIME-WAIT early) comes after
// both FINs were exchanged and acknowledged: nothing is lost, nothing to relay.
bool EndedAbnormally(const stack::TcpEndpoint& ep);

// One side of a relayed connection as the relay loop sees it: the byte stream from
// its peer, ended by a FIN or a reset, and the byte stream toward its peer.
class ByteLeg {
 public:
  virtual ~ByteLeg() = default;

  // From the peer. Bytes the relay may take now.
  virtual size_t readable() const = 0;
  // Copies up to out.size() readable bytes into `out`; returns how many.
  virtual size_t Read(absl::Span<uint8_t> out) = 0;
  // The readable bytes in place when the leg holds them in one buffer (what a socket
  // read), else empty; Consume(n) takes the first n of them.
  virtual absl::Span<const uint8_t> Peek() { return {}; }
  virtual void Consume(size_t) {}
  // The peer's FIN came, after every byte the relay took.
  virtual bool eof() const = 0;
  // The leg ended abnormally (the peer's reset, an error, a timeout): the relay
  // resets the other leg.
  virtual bool reset() const = 0;
  // Nothing is readable and the relay has room for `room` bytes: a socket starts
  // its next read, sized so (a slow receiver closes the sender's window instead of
  // growing wrench's memory).
  virtual void WantRead(size_t room) { (void)room; }

  // Toward the peer. The leg takes bytes (it is open and has not sent its FIN).
  virtual bool writable() const = 0;
  virtual size_t write_space() const = 0;
  // A buffer of the leg's own for at most n bytes that Write then takes without a
  // copy (a socket's write buffer), or empty: Write copies.
  virtual absl::Span<uint8_t> WriteBuffer(size_t n) {
    (void)n;
    return {};
  }
  // Takes all of `data`, at most write_space() bytes.
  virtual void Write(stack::Instant now, absl::Span<const uint8_t> data) = 0;
  // A write is still on its way to the peer: a FIN or a close waits for it.
  virtual bool writing() const { return false; }
  // Close can send the FIN now.
  virtual bool closable() const = 0;
  // The half-close: a FIN after every byte written; the other direction flows on.
  virtual void Close(stack::Instant now) = 0;
  // The relay ends the leg: by a reset (RST), or by closing it both ways.
  virtual void End(stack::Instant now, bool reset) = 0;
};

// Our endpoint over the TUN as a byte leg.
class EndpointLeg final : public ByteLeg {
 public:
  explicit EndpointLeg(stack::TcpEndpoint& ep) : ep_(ep) {}
  size_t readable() const override { return ep_.readable(); }
  size_t Read(absl::Span<uint8_t> out) override { return ep_.Receive(out); }
  bool eof() const override { return ep_.eof(); }
  bool reset() const override { return EndedAbnormally(ep_); }
  bool writable() const override { return CanSend(ep_.state()); }
  size_t write_space() const override { return ep_.send_space(); }
  void Write(stack::Instant, absl::Span<const uint8_t> data) override { (void)ep_.Send(data); }
  // RFC 9293 §3.10.4: a CLOSE in SYN-RECEIVED sends the FIN once nothing is queued.
  bool closable() const override {
    return CanSend(ep_.state()) || ep_.state() == stack::TcpState::kSynReceived;
  }
  void Close(stack::Instant now) override { (void)ep_.Close(now); }
  void End(stack::Instant now, bool reset) override;

 private:
  stack::TcpEndpoint& ep_;
};

// What the loop keeps of one leg between its runs.
struct RelaySide {
  bool eof_forwarded = false;    // its FIN became the other leg's FIN
  bool reset_forwarded = false;  // its end, or the other's, was relayed as a reset
};

// What one run did, for the caller's counters and log.
struct RelayRun {
  uint64_t to_b = 0, to_a = 0;                      // bytes handed to each leg
  bool reset_from_a = false, reset_from_b = false;  // a leg's reset was relayed to the other
};

// Moves what can move now between leg `a` (the client's side: the toxics' "up" stream
// leaves it) and leg `b`, in this order: a reset on one leg resets the other; bytes
// flow each way as far as the receiving leg has room (or through `toxics`, from its
// first toxic on); a FIN is relayed once every byte before it was handed over; a
// leg with nothing readable is asked for as much as the other side can take.
// `scratch` carries bytes that neither leg can lend in place.
// A close or reset that comes out of the toxics (limit_data, timeout, reset_peer)
// ends both legs, once what came out before it was handed over; `on_toxic_end` hears
// of it first.
RelayRun RunRelay(ByteLeg& a, RelaySide& as, ByteLeg& b, RelaySide& bs, ConnectionToxics* toxics,
                  stack::Instant now, absl::Span<uint8_t> scratch,
                  absl::FunctionRef<void(ToxicStream::End)> on_toxic_end);

}  // namespace wrench::proxy
