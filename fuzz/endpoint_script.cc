// Encoding of the tcp_endpoint script (fuzz/endpoint_script.h), and the
// structure-aware mutator that inserts, deletes, repeats and edits whole events
// instead of flipping bytes that would mostly decode to garbage.
#include "fuzz/endpoint_script.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "fuzz/mutator_random.h"
#include "fuzz/targets.h"
#include "stack/tcp_wire.h"

namespace wrench::fuzz {
namespace {

// Low nibble of an event's first byte: the kind. Several values decode to a
// segment, so random bytes mostly make segments, the event that matters most.
constexpr EventKind kKindOfNibble[16] = {
    EventKind::kSegment, EventKind::kSegment, EventKind::kSegment, EventKind::kSegment,
    EventKind::kSegment, EventKind::kSegment, EventKind::kSend,    EventKind::kReceive,
    EventKind::kClose,   EventKind::kAbort,   EventKind::kAdvance, EventKind::kToDeadline,
    EventKind::kPoll,    EventKind::kSend,    EventKind::kReceive, EventKind::kAdvance,
};
constexpr uint8_t NibbleOf(EventKind k) {
  switch (k) {
    case EventKind::kSegment: return 0;
    case EventKind::kSend: return 6;
    case EventKind::kReceive: return 7;
    case EventKind::kClose: return 8;
    case EventKind::kAbort: return 9;
    case EventKind::kAdvance: return 10;
    case EventKind::kToDeadline: return 11;
    case EventKind::kPoll: return 12;
  }
  return 12;
}
constexpr uint8_t kHoldBit = 0x10;

class Reader {
 public:
  explicit Reader(absl::Span<const uint8_t> b) : b_(b) {}
  bool done() const { return pos_ >= b_.size(); }
  uint8_t U8() { return pos_ < b_.size() ? b_[pos_++] : 0; }
  uint16_t U16() { return static_cast<uint16_t>((U8() << 8) | U8()); }
  uint32_t U32() { return (uint32_t{U16()} << 16) | U16(); }

 private:
  absl::Span<const uint8_t> b_;
  size_t pos_ = 0;
};

void Put16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}
void Put32(std::vector<uint8_t>& out, uint32_t v) {
  Put16(out, static_cast<uint16_t>(v >> 16));
  Put16(out, static_cast<uint16_t>(v));
}

std::string FlagLetters(uint8_t bits) {
  std::string s = stack::TcpFlags(bits).ToString();
  return s;
}

constexpr const char* kSeqModeNames[] = {"next", "next+", "next-", "stream+", "raw", "edge-"};
constexpr const char* kAckModeNames[] = {"snd.nxt", "snd.una", "snd.una+", "snd.nxt+",
                                         "snd.una-", "iss+1+", "raw"};

}  // namespace

Script ParseScript(absl::Span<const uint8_t> bytes) {
  Script s;
  Reader r(bytes);
  ScriptHeader& h = s.header;
  h.bits = r.U8();
  h.send_buffer = r.U8();
  h.recv_buffer = r.U8();
  h.mss = r.U8();
  h.own_iss = r.U32();
  h.peer_iss = r.U32();
  while (!r.done()) {
    Event e;
    uint8_t op = r.U8();
    e.kind = kKindOfNibble[op & 0x0f];
    e.hold = (op & kHoldBit) != 0;
    switch (e.kind) {
      case EventKind::kSegment: {
        SegmentEvent& g = e.seg;
        g.flags = r.U8();
        g.seq_mode = static_cast<SeqMode>(r.U8() % static_cast<uint8_t>(SeqMode::kCount));
        g.seq_arg = r.U16();
        g.ack_mode = static_cast<AckMode>(r.U8() % static_cast<uint8_t>(AckMode::kCount));
        g.ack_arg = r.U16();
        g.window = r.U16();
        g.len = r.U16() & SegmentEvent::kMaxPayload;
        g.options = r.U8();
        g.option_arg = r.U16();
        break;
      }
      case EventKind::kSend:
      case EventKind::kReceive:
      case EventKind::kAdvance:
        e.arg = r.U16();
        break;
      default:
        break;
    }
    s.events.push_back(e);
  }
  return s;
}

std::vector<uint8_t> SerializeScript(const Script& s) {
  std::vector<uint8_t> out;
  const ScriptHeader& h = s.header;
  out.push_back(h.bits);
  out.push_back(h.send_buffer);
  out.push_back(h.recv_buffer);
  out.push_back(h.mss);
  Put32(out, h.own_iss);
  Put32(out, h.peer_iss);
  for (const Event& e : s.events) {
    out.push_back(static_cast<uint8_t>(NibbleOf(e.kind) | (e.hold ? kHoldBit : 0)));
    switch (e.kind) {
      case EventKind::kSegment: {
        const SegmentEvent& g = e.seg;
        out.push_back(g.flags);
        out.push_back(static_cast<uint8_t>(g.seq_mode));
        Put16(out, g.seq_arg);
        out.push_back(static_cast<uint8_t>(g.ack_mode));
        Put16(out, g.ack_arg);
        Put16(out, g.window);
        Put16(out, g.len);
        out.push_back(g.options);
        Put16(out, g.option_arg);
        break;
      }
      case EventKind::kSend:
      case EventKind::kReceive:
      case EventKind::kAdvance:
        Put16(out, e.arg);
        break;
      default:
        break;
    }
  }
  return out;
}

std::string ToString(const ScriptHeader& h) {
  return absl::StrCat(
      h.bits & kPassiveOpen ? "listen" : "connect", h.bits & kNoWindowScaling ? " no-wscale" : "",
      h.bits & kNoSack ? " no-sack" : "", h.bits & kNoTimestamps ? " no-ts" : "", " cc=",
      stack::CongestionAlgorithmName(
          kCongestionChoices[(h.bits & kCongestionBits) >> kCongestionShift]),
      " sndbuf=", kBufferSizes[h.send_buffer % std::size(kBufferSizes)],
      " rcvbuf=", kBufferSizes[h.recv_buffer % std::size(kBufferSizes)],
      " mss=", kMssValues[h.mss % std::size(kMssValues)], " iss=", h.own_iss,
      " peer-iss=", h.peer_iss);
}

std::string ToString(const Event& e) {
  std::string hold = e.hold ? " (hold)" : "";
  switch (e.kind) {
    case EventKind::kSegment: {
      const SegmentEvent& g = e.seg;
      std::string s = absl::StrCat("< ", FlagLetters(g.flags), " seq=",
                                   kSeqModeNames[static_cast<int>(g.seq_mode)]);
      if (g.seq_mode != SeqMode::kNext) absl::StrAppend(&s, g.seq_arg);
      absl::StrAppend(&s, " ack=", kAckModeNames[static_cast<int>(g.ack_mode)]);
      if (g.ack_mode != AckMode::kSndNxt && g.ack_mode != AckMode::kSndUna) {
        absl::StrAppend(&s, g.ack_arg);
      }
      absl::StrAppend(&s, " win=", g.window, " len=", g.len);
      if (g.options) absl::StrAppend(&s, " opts=0x", absl::Hex(g.options), "/", g.option_arg);
      return s + hold;
    }
    case EventKind::kSend: return absl::StrCat("app send ", e.arg) + hold;
    case EventKind::kReceive: return absl::StrCat("app receive ", e.arg) + hold;
    case EventKind::kClose: return "app close" + hold;
    case EventKind::kAbort: return "app abort" + hold;
    case EventKind::kAdvance: return absl::StrCat("advance ", e.arg, "ms") + hold;
    case EventKind::kToDeadline: return "advance to deadline" + hold;
    case EventKind::kPoll: return "poll" + hold;
  }
  return "?";
}

Event Segment(uint8_t flags, SeqMode seq, uint16_t seq_arg, AckMode ack, uint16_t ack_arg,
              uint16_t len) {
  Event e;
  e.kind = EventKind::kSegment;
  e.seg.flags = flags;
  e.seg.seq_mode = seq;
  e.seg.seq_arg = seq_arg;
  e.seg.ack_mode = ack;
  e.seg.ack_arg = ack_arg;
  e.seg.len = len;
  return e;
}

namespace {
Event Of(EventKind kind, uint16_t arg = 0) {
  Event e;
  e.kind = kind;
  e.arg = arg;
  return e;
}
}  // namespace

Event AppSend(uint16_t n) { return Of(EventKind::kSend, n); }
Event AppReceive(uint16_t n) { return Of(EventKind::kReceive, n); }
Event AppClose() { return Of(EventKind::kClose); }
Event AppAbort() { return Of(EventKind::kAbort); }
Event Advance(uint16_t ms) { return Of(EventKind::kAdvance, ms); }
Event ToDeadline() { return Of(EventKind::kToDeadline); }
Event PollOnly() { return Event{}; }

// ---------------------------------------------------------------------------
// The structure-aware mutator.

namespace {

constexpr size_t kMaxEvents = 120;

class ScriptMutator : MutatorRandom {
 public:
  ScriptMutator(unsigned seed, RawMutator raw) : MutatorRandom(seed), raw_(raw) {}

  size_t Run(uint8_t* data, size_t size, size_t max_size) {
    if (raw_ != nullptr && Chance(1, 10)) return raw_(data, size, max_size);
    Script s = ParseScript({data, size});
    int n = 1 + static_cast<int>(Below(3));
    for (int i = 0; i < n; ++i) MutateOnce(s);
    std::vector<uint8_t> out = SerializeScript(s);
    // Drop events from the end until the script fits.
    while (out.size() > max_size && !s.events.empty()) {
      s.events.pop_back();
      out = SerializeScript(s);
    }
    size_t len = std::min(out.size(), max_size);
    std::memcpy(data, out.data(), len);
    return len;
  }

 private:
  uint16_t SmallArg() {
    static constexpr uint16_t kValues[] = {0, 1, 2, 100, 536, 1000, 1460, 4095, 65535};
    return Chance(1, 2) ? kValues[Below(std::size(kValues))] : static_cast<uint16_t>(Below(3000));
  }

  // Half the time a value of SmallArg's, else `v` moved by up to 32 either way.
  uint16_t Nudge(uint16_t v) {
    return Chance(1, 2) ? SmallArg() : static_cast<uint16_t>(v + Below(64) - 32);
  }

  uint8_t Flags() {
    using namespace stack;
    static constexpr uint8_t kCommon[] = {
        kAck, kAck, kPsh | kAck, kFin | kAck, kSyn, kSyn | kAck, kRst, kRst | kAck,
        kFin | kPsh | kAck, kFin, kSyn | kFin, kAck | kUrg,
    };
    return Chance(7, 8) ? kCommon[Below(std::size(kCommon))] : static_cast<uint8_t>(Next());
  }

  Event RandomEvent() {
    switch (Below(16)) {
      case 0: return AppSend(SmallArg());
      case 1: return AppReceive(Chance(1, 2) ? 0 : SmallArg());
      case 2: return AppClose();
      case 3: return Chance(1, 3) ? AppAbort() : PollOnly();
      case 4: return Advance(Chance(1, 2) ? static_cast<uint16_t>(Below(2000)) : SmallArg());
      case 5: return ToDeadline();
      default: break;
    }
    Event e = Segment(Flags());
    // Mostly in order and acknowledging everything: that is what moves the
    // connection through its states.
    e.seg.seq_mode = Chance(2, 3)
                         ? SeqMode::kNext
                         : static_cast<SeqMode>(Below(static_cast<uint32_t>(SeqMode::kCount)));
    e.seg.seq_arg = SmallArg();
    e.seg.ack_mode = Chance(2, 3)
                         ? AckMode::kSndNxt
                         : static_cast<AckMode>(Below(static_cast<uint32_t>(AckMode::kCount)));
    e.seg.ack_arg = SmallArg();
    e.seg.window = Chance(3, 4) ? 65535 : SmallArg();
    e.seg.len = Chance(1, 2) ? 0 : static_cast<uint16_t>(SmallArg() & SegmentEvent::kMaxPayload);
    if (e.seg.flags & stack::kSyn) {
      e.seg.options = static_cast<uint8_t>(Next() & 0x4f);
      e.seg.option_arg = static_cast<uint16_t>(Chance(1, 2) ? 1460 : Next());
    } else if (Chance(1, 4)) {
      e.seg.options = static_cast<uint8_t>(Next());
      e.seg.option_arg = static_cast<uint16_t>(Next());
    }
    e.hold = Chance(1, 8);
    return e;
  }

  void TweakEvent(Event& e) {
    if (e.kind != EventKind::kSegment) {
      if (Chance(1, 4)) {
        e.hold = !e.hold;
      } else {
        e.arg = Nudge(e.arg);
      }
      return;
    }
    SegmentEvent& g = e.seg;
    switch (Below(10)) {
      case 0: g.flags = Flags(); break;
      case 1: g.flags ^= static_cast<uint8_t>(1u << Below(8)); break;
      case 2:
        g.seq_mode = static_cast<SeqMode>(Below(static_cast<uint32_t>(SeqMode::kCount)));
        break;
      case 3: g.seq_arg = Nudge(g.seq_arg); break;
      case 4:
        g.ack_mode = static_cast<AckMode>(Below(static_cast<uint32_t>(AckMode::kCount)));
        break;
      case 5: g.ack_arg = Nudge(g.ack_arg); break;
      case 6: g.window = SmallArg(); break;
      case 7: g.len = static_cast<uint16_t>(SmallArg() & SegmentEvent::kMaxPayload); break;
      case 8: g.options ^= static_cast<uint8_t>(1u << Below(8)); break;
      default: g.option_arg = static_cast<uint16_t>(Next()); break;
    }
  }

  void TweakHeader(ScriptHeader& h) {
    switch (Below(5)) {
      case 0: h.bits ^= static_cast<uint8_t>(1u << Below(4)); break;
      case 1: h.send_buffer = static_cast<uint8_t>(Below(std::size(kBufferSizes))); break;
      case 2: h.recv_buffer = static_cast<uint8_t>(Below(std::size(kBufferSizes))); break;
      case 3: h.mss = static_cast<uint8_t>(Below(std::size(kMssValues))); break;
      default:
        // ISS near the wrap point tests modulo-2^32 arithmetic.
        if (Chance(1, 2)) {
          h.own_iss = Chance(1, 2) ? 0xffffffffu - Below(4000) : Next();
        } else {
          h.peer_iss = Chance(1, 2) ? 0xffffffffu - Below(4000) : Next();
        }
        break;
    }
  }

  void MutateOnce(Script& s) {
    auto& ev = s.events;
    size_t n = ev.size();
    switch (Below(8)) {
      case 0:
      case 1:  // insert a new event
        if (n < kMaxEvents)
          ev.insert(ev.begin() + Below(static_cast<uint32_t>(n + 1)), RandomEvent());
        break;
      case 2:  // delete one
        if (n > 0) ev.erase(ev.begin() + Below(static_cast<uint32_t>(n)));
        break;
      case 3:  // repeat one (a retransmission, a duplicate)
        if (n > 0 && n < kMaxEvents) {
          size_t i = Below(static_cast<uint32_t>(n));
          Event copy = ev[i];
          ev.insert(ev.begin() + Below(static_cast<uint32_t>(n + 1)), copy);
        }
        break;
      case 4:  // swap two (reordering)
        if (n > 1)
          std::swap(ev[Below(static_cast<uint32_t>(n))], ev[Below(static_cast<uint32_t>(n))]);
        break;
      case 5:
        TweakHeader(s.header);
        break;
      default:
        if (n > 0) {
          TweakEvent(ev[Below(static_cast<uint32_t>(n))]);
        } else {
          ev.push_back(RandomEvent());
        }
        break;
    }
  }

  RawMutator raw_;
};

}  // namespace

size_t MutateEndpointScript(uint8_t* data, size_t size, size_t max_size, unsigned seed,
                            RawMutator raw) {
  ScriptMutator m(seed, raw);
  return m.Run(data, size, max_size);
}

}  // namespace wrench::fuzz
