// The simulator's event loop: at each virtual instant, deliver due segments, fire
// due timers, let the scripted applications move bytes, then collect what the
// endpoints want to send and put it on the link.
#include "stack/simulator.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace wrench::stack {

Simulator::Simulator(TcpConfig a, TcpConfig b, Options opts)
    : opts_(opts), now_(opts.start), rng_(opts.seed) {
  slots_.resize(opts_.preallocate_packets);  // mutate: equivalent (the pool grows on demand)
  // mutate: equivalent 0,++ (a slot left out of the free list is never used: allocation only)
  for (uint32_t i = 0; i < slots_.size(); ++i) {
    slots_[i].payload.reserve(opts_.packet_room);  // mutate: equivalent (capacity only)
    // mutate: equivalent (an unlisted slot is never reused: allocation, not behaviour)
    free_slots_.push_back(static_cast<uint32_t>(slots_.size()) - 1 - i);
  }
  queue_.reserve(opts_.preallocate_packets);  // mutate: equivalent (capacity only)
  a_ = std::make_unique<TcpEndpoint>(std::move(a));
  b_ = std::make_unique<TcpEndpoint>(std::move(b));
  a_->set_state_observer([this](const StateChange& c) {
    changes_[0].push_back(c);
    change_order_[0].push_back(event_order_++);
  });
  b_->set_state_observer([this](const StateChange& c) {
    changes_[1].push_back(c);
    change_order_[1].push_back(event_order_++);
  });
}

// The checks only need both ends to agree on a pattern that differs by side, so
// changes to the mixing are equivalent.
uint8_t Simulator::PatternByte(Side s, uint64_t i) {
  // mutate: equivalent (either side's constant)
  uint64_t x = i * 0x9E3779B97F4A7C15ULL + (s == Side::kA ? 0x1234567 : 0x7654321);
  x ^= x >> 29;  // mutate: equivalent (mixing)
  return static_cast<uint8_t>(x ^ (x >> 8) ^ (x >> 17));  // mutate: equivalent (mixing)
}

void Simulator::StartTransfer(Side s, uint64_t bytes, bool close_after) {
  App& app = app_[Index(s)];
  app.active = true;
  app.to_send = bytes;
  app.close_after = close_after;
}

void Simulator::PumpApps() {
  for (Side s : {Side::kA, Side::kB}) {
    App& app = app_[Index(s)];
    TcpEndpoint& ep = endpoint(s);
    if (app.auto_read) {
      uint8_t* buf = scratch_.data();
      // mutate: equivalent (a bound no receive buffer reaches: 1024 reads of 64 KiB each)
      for (int guard = 0; guard < 1024; ++guard) {
        size_t n = ep.Receive({buf, scratch_.size()});
        if (n == 0) break;
        if (!opts_.check_data) {
          app.received += n;
          continue;
        }
        for (size_t i = 0; i < n; ++i) {
          if (buf[i] == PatternByte(Other(s), app.received + app.corrupt)) {
            ++app.received;
          } else {
            ++app.corrupt;
          }
        }
      }
    }
    if (!app.active) continue;
    // mutate: equivalent <,&&,> (with nothing to send or no room, Send takes 0 bytes and the loop
    // ends)
    while (app.sent < app.to_send && ep.send_space() > 0) {
      uint8_t* buf = scratch_.data();
      size_t n = static_cast<size_t>(
          std::min<uint64_t>({scratch_.size(), app.to_send - app.sent, ep.send_space()}));
      if (opts_.check_data) {
        // mutate: equivalent < (the byte past n is not sent)
        for (size_t i = 0; i < n; ++i) buf[i] = PatternByte(s, app.sent + i);
      }
      auto taken = ep.Send({buf, n});
      if (!taken.ok() || *taken == 0) break;
      app.sent += *taken;
    }
    if (app.close_after && !app.closed && app.sent == app.to_send) {
      TcpState st = ep.state();
      if (st == TcpState::kEstablished || st == TcpState::kCloseWait ||
          st == TcpState::kSynReceived) {
        app.closed = ep.Close(now_).ok();
      }
    }
  }
}

void Simulator::PollAll() {
  for (Side s : {Side::kA, Side::kB}) {
    endpoint(s).Poll(now_, [&](const TcpRepr& seg) { Emit(s, seg); });
  }
}

void Simulator::Emit(Side from, const TcpRepr& seg) {
  if (interposer_) {
    interposer_->Submit(now_, from, seg);
    return;
  }
  LinkVerdict v;
  if (filter_) v = filter_(from, seg);
  if (now_ < faults_.until) {
    std::uniform_real_distribution<double> u(0, 1);
    // A draw equal to the probability has a chance of 2^-53.
    if (u(rng_) < faults_.loss) v.drop = true;  // mutate: equivalent < (a draw equal to it)
    // mutate: equivalent < (a draw equal to it)
    if (u(rng_) < faults_.duplicate) v.extra_copies += 1;
    if (u(rng_) < faults_.reorder) {  // mutate: equivalent < (a draw equal to it)
      v.extra_delay += absl::Nanoseconds(static_cast<int64_t>(
          u(rng_) * static_cast<double>(absl::ToInt64Nanoseconds(faults_.max_extra_delay))));
    }
  }
  Record(from, seg, v);
  if (v.drop) return;
  for (int i = 0; i <= v.extra_copies; ++i)
    Schedule(Other(from), seg, opts_.latency + v.extra_delay);
}

void Simulator::Record(Side from, const TcpRepr& seg, const LinkVerdict& v) {
  if (!opts_.trace) return;
  TraceEntry e{now_, from, seg, static_cast<uint32_t>(seg.payload.size()), v.drop, v.extra_copies,
               v.extra_delay, event_order_++};
  e.seg.payload = {};
  trace_.push_back(e);
}

void Simulator::Schedule(Side to, const TcpRepr& seg, Duration delay) {
  uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back();
    // Room for an Ethernet-sized segment from the start, so that a slot that
    // carried an ACK can carry data next without allocating.
    slots_.back().payload.reserve(opts_.packet_room);  // mutate: equivalent (capacity only)
  }
  Packet& p = slots_[slot];
  p.to = to;
  p.seg = seg;
  p.payload.assign(seg.payload.begin(), seg.payload.end());
  p.seg.payload = {};
  queue_.push_back({now_ + delay, order_++, slot});
  std::push_heap(queue_.begin(), queue_.end(), std::greater<>());
}

void Simulator::Deliver(Side to, const TcpRepr& seg) { endpoint(to).OnSegment(now_, seg); }

Instant Simulator::NextEvent() const {
  Instant t = std::min(a_->NextDeadline(), b_->NextDeadline());
  if (!queue_.empty()) t = std::min(t, queue_.front().due);
  if (interposer_) t = std::min(t, interposer_->NextDeadline());
  return t;
}

void Simulator::RunInstant() {
  while (!queue_.empty() && queue_.front().due <= now_) {
    std::pop_heap(queue_.begin(), queue_.end(), std::greater<>());
    InFlight f = queue_.back();
    queue_.pop_back();
    Packet& p = slots_[f.slot];
    p.seg.payload = absl::MakeConstSpan(p.payload);
    Deliver(p.to, p.seg);
    free_slots_.push_back(f.slot);  // mutate: equivalent (a slot not reused: allocation only)
  }
  if (interposer_) {
    interposer_->Poll(now_, [&](Side from, const TcpRepr& seg) {
      Record(from, seg, {});
      Schedule(Other(from), seg, opts_.latency);
    });
  }
  for (Side s : {Side::kA, Side::kB}) {
    if (endpoint(s).NextDeadline() <= now_) endpoint(s).OnTick(now_);
  }
  Flush();
}

void Simulator::Flush() {
  // Applications and endpoints may answer each other within one instant; a bound
  // keeps a misbehaving endpoint from spinning forever.
  // mutate: equivalent (Poll empties an endpoint's output, so no endpoint comes near the bound)
  for (int round = 0; round < 64; ++round) {
    PumpApps();
    // A round after PollAll finds nothing new: sending frees no send space and Poll
    // changes no state, so one pending side or both run alike.
    // mutate: equivalent || (see above)
    bool pending = a_->HasPendingOutput() || b_->HasPendingOutput();
    PollAll();
    if (!pending) break;
  }
  if (interposer_) {
    // Segments the interposer releases at once go out in the same instant.
    interposer_->Poll(now_, [&](Side from, const TcpRepr& seg) {
      Record(from, seg, {});
      Schedule(Other(from), seg, opts_.latency);
    });
  }
}

bool Simulator::RunUntil(Instant t, int max_steps) {
  Flush();
  for (int step = 0; step < max_steps; ++step) {
    Instant next = NextEvent();
    if (next > t) {
      now_ = std::max(now_, t);
      return true;
    }
    now_ = std::max(now_, next);
    RunInstant();
  }
  return false;
}

bool Simulator::RunUntil(const std::function<bool()>& pred, Duration limit, int max_steps) {
  Instant end = now_ + limit;
  Flush();
  for (int step = 0; step < max_steps; ++step) {
    if (pred()) return true;
    Flush();  // pred() may have called the endpoints (Send, Close...)
    Instant next = NextEvent();
    if (next > end) {
      now_ = end;
      return pred();
    }
    now_ = std::max(now_, next);
    RunInstant();
  }
  return pred();
}

std::string FormatRelative(const TcpRepr& seg, uint32_t payload_len, SeqNum seq_base,
                           SeqNum ack_base) {
  std::string flags;
  if (seg.flags.has(kSyn)) flags += 'S';
  if (seg.flags.has(kFin)) flags += 'F';
  if (seg.flags.has(kRst)) flags += 'R';
  if (seg.flags.has(kPsh)) flags += 'P';
  if (seg.flags.has(kAck)) flags += '.';
  if (flags.empty()) flags = "none";
  uint32_t seq = static_cast<uint32_t>(seg.seq - seq_base);
  std::string out = absl::StrFormat("%-3s %u:%u(%u)", flags, seq, seq + payload_len, payload_len);
  if (seg.flags.has(kAck))
    absl::StrAppend(&out, " ack ", static_cast<uint32_t>(seg.ack - ack_base));
  absl::StrAppend(&out, " win ", seg.window);
  // SACK blocks name the peer's sequence space, as tcpdump prints them.
  for (uint8_t k = 0; k < seg.options.sack_count; ++k) {
    const SackBlock& b = seg.options.sack[k];
    absl::StrAppend(&out, k == 0 ? " sack " : ",", static_cast<uint32_t>(b.left - ack_base), ":",
                    static_cast<uint32_t>(b.right - ack_base));
  }
  return out;
}

std::string Simulator::Ladder() const {
  // Relative numbers start at each side's ISN: the seq of the first SYN it sent.
  SeqNum isn[2];                    // mutate: equivalent (an array's spare element)
  bool known[2] = {false, false};  // mutate: equivalent 2 (an array's spare element)
  for (const TraceEntry& e : trace_) {
    size_t i = Index(e.from);
    if (!known[i] && e.seg.flags.has(kSyn)) {
      isn[i] = e.seg.seq;
      known[i] = true;
    }
  }
  struct Line {
    Instant at;
    uint64_t order;
    std::string text;
  };
  std::vector<Line> lines;
  for (const TraceEntry& e : trace_) {
    size_t i = Index(e.from);
    std::string arrow = e.from == Side::kA ? "A > B" : "A < B";
    std::string text =
        absl::StrCat(arrow, "  ", FormatRelative(e.seg, e.payload_len, isn[i], isn[1 - i]));
    if (e.dropped) absl::StrAppend(&text, "   [dropped]");
    if (e.extra_copies) absl::StrAppend(&text, "   [+", e.extra_copies, " copies]");
    if (e.extra_delay > absl::ZeroDuration())
      absl::StrAppend(&text, "   [+", absl::FormatDuration(e.extra_delay), "]");
    lines.push_back({e.at, e.order, std::move(text)});
  }
  for (Side s : {Side::kA, Side::kB}) {
    for (size_t k = 0; k < changes_[Index(s)].size(); ++k) {
      const StateChange& c = changes_[Index(s)][k];
      lines.push_back({c.at, change_order_[Index(s)][k],
                       absl::StrCat("      ", SideName(s), ": ", StateName(c.from), " -> ",
                                    StateName(c.to), " (", c.cause, ")")});
    }
  }
  // mutate: equivalent < (orders are unique)
  std::sort(lines.begin(), lines.end(),
            [](const Line& x, const Line& y) { return x.order < y.order; });
  std::string out;
  for (const Line& l : lines) {
    absl::StrAppend(&out, absl::StrFormat("%9.3f  ", absl::ToDoubleSeconds(l.at - opts_.start)),
                    l.text, "\n");
  }
  return out;
}

}  // namespace wrench::stack
