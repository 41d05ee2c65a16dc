// The relay loop (relay_loop.h).
#include "proxy/relay/relay_loop.h"

#include <algorithm>

namespace wrench::proxy {

using stack::Instant;
using stack::TcpState;
using End = ToxicStream::End;

bool CanSend(TcpState s) { return s == TcpState::kEstablished || s == TcpState::kCloseWait; }

bool EndedAbnormally(const stack::TcpEndpoint& ep) {
  auto r = ep.close_reason();
  bool abnormal = r == stack::CloseReason::kReset || r == stack::CloseReason::kAborted ||
                  r == stack::CloseReason::kTimeout || r == stack::CloseReason::kRefused;
  return ep.state() == TcpState::kClosed && abnormal && !(ep.fin_received() && ep.fin_acked());
}

void EndpointLeg::End(Instant now, bool reset) {
  if (reset) {
    if (ep_.state() != TcpState::kClosed) ep_.Abort(now);
  } else if (CanSend(ep_.state())) {
    (void)ep_.Close(now);
  }
}

namespace {

// Where bytes for `to` are put: its own buffer when it lends one, else `scratch`.
absl::Span<uint8_t> Destination(ByteLeg& to, size_t want, absl::Span<uint8_t> scratch) {
  absl::Span<uint8_t> dst = to.WriteBuffer(want);
  return dst.empty() ? scratch.first(std::min(want, scratch.size())) : dst;
}

// Bytes from one leg to the other while the receiver has room (back-pressure: what
// it cannot take stays with the sender, whose window closes).
uint64_t Move(ByteLeg& from, ByteLeg& to, Instant now, absl::Span<uint8_t> scratch) {
  uint64_t moved = 0;
  while (from.readable() > 0 && to.writable()) {
    size_t want = std::min(from.readable(), to.write_space());
    if (want == 0) break;
    if (absl::Span<const uint8_t> held = from.Peek(); !held.empty()) {
      size_t n = std::min(want, held.size());
      to.Write(now, held.first(n));
      from.Consume(n);
      moved += n;
      continue;
    }
    absl::Span<uint8_t> dst = Destination(to, want, scratch);
    size_t n = from.Read(dst);
    if (n == 0) break;
    to.Write(now, dst.first(n));
    moved += n;
  }
  return moved;
}

// A FIN is relayed once every byte before it was handed over and written.
void HalfClose(ByteLeg& from, RelaySide& side, ByteLeg& to, Instant now) {
  if (side.eof_forwarded || !from.eof() || to.writing() || !to.closable()) return;
  side.eof_forwarded = true;
  to.Close(now);
}

// A leg that ended abnormally resets the other, once.
bool ForwardReset(ByteLeg& from, RelaySide& fs, ByteLeg& to, RelaySide& ts, Instant now) {
  if (fs.reset_forwarded || !from.reset()) return false;
  fs.reset_forwarded = ts.reset_forwarded = true;
  to.End(now, /*reset=*/true);
  return true;
}

// One direction into its toxics: what the leg received, then its FIN.
void Feed(ByteLeg& from, ToxicStream& s, bool& eof_in, Instant now, absl::Span<uint8_t> scratch) {
  while (from.readable() > 0 && s.room() > 0) {
    if (absl::Span<const uint8_t> held = from.Peek(); !held.empty()) {
      size_t n = std::min(held.size(), s.room());
      s.Write(now, held.first(n));
      from.Consume(n);
      continue;
    }
    size_t n = from.Read(scratch.first(std::min(scratch.size(), s.room())));
    if (n == 0) break;
    s.Write(now, scratch.first(n));
  }
  if (from.eof() && !eof_in) {
    eof_in = true;
    s.WriteEof(now);
  }
}

// One direction out of its toxics to the receiving leg. False when what came out was
// a toxic's close.
bool Drain(ToxicStream& s, ByteLeg& to, RelaySide& from_side, Instant now,
           absl::Span<uint8_t> scratch, uint64_t& moved) {
  while (s.readable() > 0 && to.writable()) {
    size_t want = std::min(s.readable(), to.write_space());
    if (want == 0) break;
    absl::Span<uint8_t> dst = Destination(to, want, scratch);
    size_t n = s.Read(dst);
    if (n == 0) break;
    to.Write(now, dst.first(n));
    moved += n;
  }
  if (s.readable() > 0 || s.end() == End::kNone || to.writing()) return true;
  if (s.end() == End::kClose) return false;
  if (!from_side.eof_forwarded && to.closable()) {
    from_side.eof_forwarded = true;
    to.Close(now);
  }
  return true;
}

void EndBoth(ByteLeg& a, RelaySide& as, ByteLeg& b, RelaySide& bs, ConnectionToxics& t, End end,
             Instant now, absl::FunctionRef<void(End)> on_toxic_end) {
  t.ended = true;
  as.reset_forwarded = bs.reset_forwarded = true;  // ended here: nothing left to relay
  as.eof_forwarded = bs.eof_forwarded = true;
  on_toxic_end(end);
  a.End(now, end == End::kReset);
  b.End(now, end == End::kReset);
}

void RunToxics(ByteLeg& a, RelaySide& as, ByteLeg& b, RelaySide& bs, ConnectionToxics& t,
               Instant now, absl::Span<uint8_t> scratch, absl::FunctionRef<void(End)> on_toxic_end,
               RelayRun& run) {
  if (t.ended) {
    // Closed by a toxic: what either peer still sends goes nowhere, as to a closed socket.
    while (a.readable() > 0 && a.Read(scratch) > 0) {
    }
    while (b.readable() > 0 && b.Read(scratch) > 0) {
    }
    return;
  }
  Feed(a, t.up, t.up_eof, now, scratch);
  Feed(b, t.down, t.down_eof, now, scratch);
  t.up.Advance(now);
  t.down.Advance(now);
  if (t.up.end() == End::kReset || t.down.end() == End::kReset) {
    return EndBoth(a, as, b, bs, t, End::kReset, now, on_toxic_end);
  }
  if (!Drain(t.up, b, as, now, scratch, run.to_b) ||
      !Drain(t.down, a, bs, now, scratch, run.to_a)) {
    return EndBoth(a, as, b, bs, t, End::kClose, now, on_toxic_end);
  }
  if (a.readable() == 0 && !a.eof() && t.up.room() > 0) a.WantRead(t.up.room());
  if (b.readable() == 0 && !b.eof() && t.down.room() > 0) b.WantRead(t.down.room());
}

// Asks a leg with nothing readable for as much as the other leg can take.
void Demand(ByteLeg& from, ByteLeg& to) {
  if (from.readable() > 0 || from.eof() || !to.writable()) return;
  if (size_t room = to.write_space(); room > 0) from.WantRead(room);
}

}  // namespace

RelayRun RunRelay(ByteLeg& a, RelaySide& as, ByteLeg& b, RelaySide& bs, ConnectionToxics* toxics,
                  Instant now, absl::Span<uint8_t> scratch,
                  absl::FunctionRef<void(End)> on_toxic_end) {
  RelayRun run;
  run.reset_from_a = ForwardReset(a, as, b, bs, now);
  if (!run.reset_from_a) run.reset_from_b = ForwardReset(b, bs, a, as, now);
  if (run.reset_from_a || run.reset_from_b) return run;
  if (toxics && toxics->Engage(now)) {
    RunToxics(a, as, b, bs, *toxics, now, scratch, on_toxic_end, run);
    return run;
  }
  run.to_b = Move(a, b, now, scratch);
  run.to_a = Move(b, a, now, scratch);
  HalfClose(a, as, b, now);
  HalfClose(b, bs, a, now);
  Demand(a, b);
  Demand(b, a);
  return run;
}

}  // namespace wrench::proxy
