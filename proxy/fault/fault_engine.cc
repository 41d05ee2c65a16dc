// The fault engine: rules compiled into per-hook, per-flags candidate sets, one
// segment's evaluation (matchers, counters, draws, mutations, the deciding action),
// and the pool and heap that hold segments until they are due.
#include "proxy/fault/fault_engine.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <memory>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"

namespace wrench::proxy {

using stack::ConstDatagramView;
using stack::DatagramView;
using stack::Instant;
using stack::Segment;
using stack::TcpRepr;

// One segment's trip through the rules: the datagram as offered, and the changed
// copy (FaultEngine::changed_) once a mutation touched it, patched through a view.
struct FaultEngine::Work {
  Work(Instant t, const SegmentMeta& m, ConstDatagramView d) : now(t), meta(m), offered(d) {}

  Instant now;
  const SegmentMeta& meta;
  ConstDatagramView offered;
  std::optional<DatagramView> copy;  // made on the first change only
  int64_t corrupt_payload_at = -1;   // applied by Seal, after every field change
  bool corrupt_checksum = false;
  bool sealed = false;
  uint32_t held_slot = kNoSlot;  // the slot a reorder of this segment holds

  ConstDatagramView current() const { return copy ? ConstDatagramView(*copy) : offered; }
};

namespace {

bool IsMutation(ActionKind k) {
  return k == ActionKind::kSet || k == ActionKind::kAdd || k == ActionKind::kCorrupt;
}

// The flags of a wire segment cut from a TCP super-segment: ACK, and only PSH, FIN
// (the last piece), ECE or CWR (the first piece) beside it.
bool CanCarrySuperSegmentData(uint8_t flags) {
  constexpr uint8_t kAllowed = stack::kAck | stack::kPsh | stack::kFin | stack::kEce | stack::kCwr;
  return (flags & stack::kAck) != 0 && (flags & ~kAllowed) == 0;
}

// Whether the rule's len= lets a segment with a payload through.
bool AllowsPayload(const Rule& r) {
  if (!r.len) return true;
  switch (r.len->op) {
    case LenMatch::Op::kEqual:
      return r.len->value > 0;
    case LenMatch::Op::kLess:
      return r.len->value > 1;
    case LenMatch::Op::kGreater:
      return true;
  }
  return true;
}

bool FlagsMatch(const Rule& r, uint8_t flags) {
  if (r.flags_exact && flags != r.flags_exact->bits()) return false;
  if (r.flags_has && (flags & r.flags_has->bits()) != r.flags_has->bits()) return false;
  return true;
}

bool HasField(ConstDatagramView s, Field f) {
  if (f == Field::kMss) return s.mss().has_value();
  if (f == Field::kWscale) return s.window_scale().has_value();
  return true;
}

uint32_t GetField(ConstDatagramView s, Field f) {
  switch (f) {
    case Field::kSeq:
      return s.seq().raw();
    case Field::kAck:
      return s.ack().raw();
    case Field::kWin:
      return s.window();
    case Field::kUrg:
      return s.urgent();
    case Field::kFlags:
      return s.flags().bits();
    case Field::kTtl:
      return s.ttl();
    case Field::kMss:
      return s.mss().value_or(0);  // mutate: equivalent (HasField was checked)
    case Field::kWscale:
      return s.window_scale().value_or(0);  // mutate: equivalent (HasField was checked)
  }
  return 0;  // mutate: equivalent (the switch covers every field)
}

// Patches the field in place; the view keeps both checksums right.
void PutField(DatagramView& s, Field f, uint32_t v) {
  switch (f) {
    case Field::kSeq: return s.set_seq(stack::SeqNum(v));
    case Field::kAck: return s.set_ack(stack::SeqNum(v));
    case Field::kWin: return s.set_window(static_cast<uint16_t>(v));
    case Field::kUrg: return s.set_urgent(static_cast<uint16_t>(v));
    case Field::kFlags: return s.set_flags(stack::TcpFlags(static_cast<uint8_t>(v)));
    case Field::kTtl: return s.set_ttl(static_cast<uint8_t>(v));
    // HasField was checked: the option is there to patch.
    case Field::kMss: return (void)s.set_mss(static_cast<uint16_t>(v));
    case Field::kWscale: return (void)s.set_window_scale(static_cast<uint8_t>(v));
  }
}

std::string FieldValueText(Field f, uint32_t v) {
  if (f == Field::kFlags) {
    return v == 0 ? std::string("none") : stack::TcpFlags(static_cast<uint8_t>(v)).ToString();
  }
  return absl::StrCat(v);
}

// (v + delta) modulo the field's width.
uint32_t Wrap(uint32_t v, int64_t delta, Field f) {
  const int64_t m = int64_t{FieldMax(f)} + 1;
  int64_t x = (int64_t{v} + delta) % m;
  if (x < 0) x += m;
  return static_cast<uint32_t>(x);
}

}  // namespace

SegmentSummary Summarize(const TcpRepr& tcp) {
  return SegmentSummary{tcp.src_port, tcp.dst_port, tcp.flags,
                        tcp.seq,      tcp.ack,      static_cast<uint32_t>(tcp.payload.size())};
}

SegmentSummary Summarize(ConstDatagramView d) {
  return SegmentSummary{d.src_port(), d.dst_port(), d.flags(), d.seq(), d.ack(),
                        static_cast<uint32_t>(d.payload().size())};
}

std::string ToString(const Decision& d) {
  const SegmentSummary& s = d.segment;
  const absl::string_view rule_text(d.rule_text.data(), d.rule_text.size());
  const std::string flags = s.flags.bits() == 0 ? std::string("none") : s.flags.ToString();
  std::string text = absl::StrCat(
      absl::FormatTime("%H:%M:%E6S", d.at, absl::UTCTimeZone()), " conn ", d.meta.conn, " ",
      HookName(d.meta.hook), " ", stack::StateName(d.meta.state), " rule ", d.rule_id, " (",
      rule_text, "): ", flags, " ", s.src_port, ">", s.dst_port, " seq ", s.seq.raw());
  if (s.flags.has(stack::kAck)) absl::StrAppend(&text, " ack ", s.ack.raw());
  absl::StrAppend(&text, " len ", s.payload_len);
  if (!d.detail.empty()) absl::StrAppend(&text, ": ", d.detail);
  return text;
}

FaultEngine::FaultEngine(Options opts) : opts_(opts), rng_(opts.seed) { Rebuild(); }

// ---------------------------------------------------------------------------
// Rules.

absl::StatusOr<int> FaultEngine::AddRule(Rule rule, uint64_t scope) {
  absl::Status valid = ValidateRule(rule);
  if (!valid.ok()) return valid;
  Filter f;
  // conn= and port= are checked twice, by the indexes (AddressedTo) and by StaticMatch.
  f.conn = rule.conn.value_or(0);  // mutate: equivalent (by_conn_ alone limits the rule)
  f.scope = scope;
  f.port = rule.port.value_or(0);  // mutate: equivalent (by_port_ alone limits the rule)
  if (rule.state) f.states = static_cast<uint16_t>(1u << static_cast<int>(*rule.state));
  if (rule.len) {
    const uint32_t v = rule.len->value;
    switch (rule.len->op) {
      case LenMatch::Op::kEqual:
        f.len_lo = f.len_hi = v;
        break;
      case LenMatch::Op::kLess:
        f.len_hi = v - 1;
        break;  // len<0 is refused by ValidateRule
      case LenMatch::Op::kGreater:
        f.len_lo = v + 1;
        break;
    }
  }
  if (rule.idle) f.idle_ns = absl::ToInt64Nanoseconds(*rule.idle);
  f.counted = rule.nth || rule.every || rule.after || rule.count;
  f.drawn = rule.probability.has_value();
  const int id = next_id_++;
  std::string text = ToString(rule);
  rules_.push_back(Compiled{id, std::move(rule),
                            std::make_unique<const std::string>(std::move(text)), 0, scope});
  filters_.push_back(f);
  Rebuild();
  return id;
}

bool FaultEngine::RemoveRule(int id) {
  auto it =
      std::find_if(rules_.begin(), rules_.end(), [id](const Compiled& c) { return c.id == id; });
  if (it == rules_.end()) return false;
  const size_t index = static_cast<size_t>(it - rules_.begin());
  rules_.erase(it);
  filters_.erase(filters_.begin() + static_cast<ptrdiff_t>(index));
  Rebuild();
  // Its counters and blackholes go with it; what it holds stays on the wire.
  for (auto& [conn, state] : conns_) {
    // mutate: equivalent 0 (a removed rule's counters are never read again: ids are not reused)
    for (int h = 0; h < kHookCount; ++h) state.counters.erase(uint64_t(id) << 2 | uint64_t(h));
    const size_t before = state.blackholes.size();
    state.blackholes.erase(std::remove_if(state.blackholes.begin(), state.blackholes.end(),
                                          [id](const Blackhole& b) { return b.rule_id == id; }),
                           state.blackholes.end());
    // mutate: equivalent (the count ends too high or wraps far from 0: it gates a fast path)
    blackholes_ -= before - state.blackholes.size();
  }
  return true;
}

std::vector<FaultEngine::RuleInfo> FaultEngine::Rules() const {
  std::vector<RuleInfo> out;
  out.reserve(rules_.size());  // mutate: equivalent (capacity only)
  for (const Compiled& c : rules_) out.push_back(RuleInfo{c.id, c.rule, *c.text, c.hits, c.scope});
  return out;
}

// Bit i of the set for (hook, flags) says rule i can fire on such a segment, so a
// segment no rule is interested in costs one lookup, and rule order is bit order.
void FaultEngine::Rebuild() {
  words_ = std::max<size_t>(1, (rules_.size() + 63) / 64);  // mutate: equivalent 63 (a spare word)
  candidates_.assign(size_t{2 * kHookCount} * 256 * words_, 0);  // mutate: equivalent 2,256 (size)
  socket_watched_ = {};
  data_watched_ = {};
  ack_watched_ = {};
  // mutate: equivalent 0 (an extra candidate is refused by StaticMatch)
  any_conn_.assign(words_, 0);
  // mutate: equivalent 0 (an extra candidate is refused by StaticMatch)
  any_port_.assign(words_, 0);
  // The two indexes only narrow the candidates: StaticMatch checks conn and port again.
  by_conn_.clear();  // mutate: equivalent (stale bits add candidates StaticMatch refuses)
  by_port_.clear();  // mutate: equivalent (stale bits add candidates StaticMatch refuses)
  idle_rules_ = 0;
  for (size_t i = 0; i < rules_.size(); ++i) {
    const Rule& r = rules_[i].rule;
    if (r.idle) ++idle_rules_;  // mutate: equivalent ++ (only zero or not matters)
    const uint64_t bit = uint64_t{1} << (i % 64);
    const ActionKind kind = KindOf(r.action);
    const bool socket_ok = kind == ActionKind::kDelay || kind == ActionKind::kRst;
    for (int h = 0; h < kHookCount; ++h) {  // mutate: equivalent < (no rule has a fifth hook)
      if (!r.hooks.has(static_cast<Hook>(h))) continue;
      for (int f = 0; f < 256; ++f) {
        if (!FlagsMatch(r, static_cast<uint8_t>(f))) continue;
        candidates_[(size_t(h) * 256 + size_t(f)) * words_ + i / 64] |= bit;
        if (CanCarrySuperSegmentData(static_cast<uint8_t>(f)) && AllowsPayload(r))
          data_watched_[h] = true;
        if ((f & stack::kAck) != 0 && (f & (stack::kSyn | stack::kRst)) == 0)
          ack_watched_[h] = true;
        if (socket_ok) {
          candidates_[(size_t(h + kHookCount) * 256 + size_t(f)) * words_ + i / 64] |= bit;
          socket_watched_[h] = true;
          // idle> needs the leg's events both ways, to know when it last carried one.
          if (r.idle) socket_watched_[h ^ 1] = true;
        }
      }
    }
    // By its conn= and port=; a rule without one is in the words for any.
    auto index = [&](auto& by_key, std::vector<uint64_t>& any, const auto& key) {
      std::vector<uint64_t>& words = key ? by_key[*key] : any;
      words.resize(words_);
      words[i / 64] |= bit;
    };
    index(by_conn_, any_conn_, r.conn);
    index(by_port_, any_port_, r.port);
  }
}

// ---------------------------------------------------------------------------
// Deciding.

Offered FaultEngine::Offer(Instant now, const SegmentMeta& meta, ConstDatagramView datagram) {
  decisions_made_ = 0;
  // mutate: equivalent 1 (without idle rules no filter reads it)
  offer_idle_ns_ = idle_rules_ != 0 ? TouchLeg(now, meta) : -1;
  if (blackholes_ != 0 && !meta.socket && DropIfBlackholed(now, meta, datagram)) {
    return Offered{Verdict::kTaken, {}, {decisions_.data(), decisions_made_}};
  }
  const uint64_t* candidates = CandidatesFor(SlotOf(meta), datagram.flags().bits());
  bool any = candidates[0] != 0;
  // mutate: equivalent &&,<,++,1 (reading on or word 0 again finds no rule Decide tries: a pass)
  for (size_t w = 1; !any && w < words_; ++w) any = candidates[w] != 0;
  if (!any) {
    if (reorder_holds_ != 0) ReleaseReorderedAfter(now, meta, kNoSlot);
    return Offered{Verdict::kPass, datagram.bytes(), {}};
  }
  Work w(now, meta, datagram);
  const Verdict v = Decide(w, candidates);
  return Answer(v, w);
}

// A pass sends the changed copy when there is one (sealed by then).
Offered FaultEngine::Answer(Verdict v, const Work& w) {
  Offered o{v, {}, {decisions_.data(), decisions_made_}};
  if (v == Verdict::kPass) o.datagram = w.current().bytes();
  return o;
}

// The matchers beyond hook and flags that never change while a segment is decided,
// for a segment's fixed parts: a few compares, no branch into the rule itself.
struct FaultEngine::Probe {
  uint64_t conn;
  uint64_t scope;
  uint32_t len;
  uint16_t src_port, dst_port;
  uint16_t state_bit;
  int64_t idle_ns;  // -1: the leg's first segment
};

inline bool FaultEngine::StaticMatch(const Filter& f, const Probe& p) {
  const bool conn_ok = (f.conn == 0 || f.conn == p.conn) & (f.scope == 0 || f.scope == p.scope);
  const bool port_ok = f.port == 0 || f.port == p.src_port || f.port == p.dst_port;
  const bool len_ok = p.len >= f.len_lo && p.len <= f.len_hi;
  const bool idle_ok = f.idle_ns < 0 || p.idle_ns > f.idle_ns;
  return conn_ok & port_ok & len_ok & idle_ok & ((f.states & p.state_bit) != 0);
}

// Stamps the segment's leg with `now` and returns how long it was silent before, in
// ns (-1 for the leg's first segment). Hooks 0-1 are the client's leg, 2-3 the server's.
int64_t FaultEngine::TouchLeg(Instant now, const SegmentMeta& meta) {
  Instant& last = conns_[meta.conn].last_seen[(static_cast<unsigned>(meta.hook) & 3) >> 1];
  const Instant before = last;
  last = std::max(last, now);
  if (before == absl::InfinitePast()) return -1;  // mutate: equivalent 1 (0 > idle_ns is false too)
  return std::max<int64_t>(0, absl::ToInt64Nanoseconds(now - before));
}

// The rules whose conn= and port= this segment can meet (rules naming neither
// included): three hash lookups at most, and none while no rule names either.
struct FaultEngine::Addressed {
  const FaultEngine& engine;
  const uint64_t* conn = nullptr;
  const uint64_t* src = nullptr;
  const uint64_t* dst = nullptr;

  uint64_t Mask(size_t word) const {
    uint64_t m = ~uint64_t{0};
    // mutate: equivalent 0 (an extra candidate is refused by StaticMatch's conn check)
    if (!engine.by_conn_.empty()) m &= engine.any_conn_[word] | (conn ? conn[word] : 0);
    if (!engine.by_port_.empty()) {
      // mutate: equivalent 0,del (StaticMatch checks the port again)
      m &= engine.any_port_[word] | (src ? src[word] : 0) | (dst ? dst[word] : 0);
    }
    return m;
  }
};

FaultEngine::Addressed FaultEngine::AddressedTo(const Probe& probe) const {
  Addressed a{*this};
  auto find = [](const auto& index, auto key) -> const uint64_t* {
    auto it = index.find(key);
    return it == index.end() ? nullptr : it->second.data();
  };
  if (!by_conn_.empty()) a.conn = find(by_conn_, probe.conn);
  if (!by_port_.empty()) {
    a.src = find(by_port_, probe.src_port);
    a.dst = find(by_port_, probe.dst_port);
  }
  return a;
}

Verdict FaultEngine::Decide(Work& w, const uint64_t* candidates) {
  const Instant now = w.now;
  const SegmentMeta& meta = w.meta;
  const ConstDatagramView parsed = w.offered;
  ConnState* conn = nullptr;
  const int slot = SlotOf(meta);
  const Probe probe{meta.conn, meta.scope, static_cast<uint32_t>(parsed.payload().size()),
                    parsed.src_port(), parsed.dst_port(),
                    static_cast<uint16_t>(1u << (static_cast<unsigned>(meta.state) & 15)),
                    offer_idle_ns_};
  const Filter* filters = filters_.data();
  const Addressed addressed = AddressedTo(probe);
  uint8_t flags = parsed.flags().bits();
  for (size_t word = 0; word < words_; ++word) {
    const uint64_t mask = addressed.Mask(word);
    uint64_t bits = candidates[word] & mask;
    while (bits != 0) {
      const size_t i = word * 64 + static_cast<size_t>(std::countr_zero(bits));
      bits &= bits - 1;
      const Filter& f = filters[i];
      if (!StaticMatch(f, probe)) continue;
      if ((f.counted || f.drawn) && !CountAndDraw(i, meta, conn)) continue;
      ++rules_[i].hits;
      if (!IsMutation(KindOf(rules_[i].rule.action))) {
        const Verdict v = Act(w, i, conn);
        ReleaseReorderedAfter(now, meta, w.held_slot);
        return v;
      }
      Mutate(w, i);
      // Later rules match the changed flags: continue with their candidates past i.
      if (const uint8_t changed = w.current().flags().bits(); changed != flags) {
        flags = changed;
        candidates = CandidatesFor(slot, flags);
        const size_t next = i % 64 + 1;
        bits = next == 64 ? 0 : candidates[word] & mask & (~uint64_t{0} << next);
      }
    }
  }
  // Only mutations fired (or none): the changed copy goes on now.
  Seal(w);
  ReleaseReorderedAfter(now, meta, kNoSlot);
  return Verdict::kPass;
}

// Occurrence counting, then the draw (proxy/fault/rule.h): only for segments every other
// matcher accepted.
bool FaultEngine::CountAndDraw(size_t index, const SegmentMeta& meta, ConnState*& conn) {
  const Compiled& rule = rules_[index];
  const Rule& r = rule.rule;
  Counter* c = nullptr;
  if (filters_[index].counted) {
    if (conn == nullptr) conn = &conns_[meta.conn];
    // mutate: equivalent 2 (any injective key)
    c = &conn->counters[uint64_t(rule.id) << 2 | (static_cast<uint64_t>(meta.hook) & 3)];
    uint64_t k = ++c->seen;
    if (r.after) {
      if (k <= *r.after) return false;
      k -= *r.after;
    }
    if (r.nth && k != *r.nth) return false;
    if (r.every && k % *r.every != 0) return false;
    if (r.count && c->fired >= *r.count) return false;
  }
  // mutate: equivalent < (a draw equal to p has probability 2^-53)
  if (r.probability && !(UniformUnit() < *r.probability)) return false;
  if (c != nullptr) ++c->fired;
  return true;
}

void FaultEngine::Mutate(Work& w, size_t index) {
  const Action& action = rules_[index].rule.action;
  const ConstDatagramView tcp = w.current();
  if (const auto* c = std::get_if<CorruptAction>(&action)) {
    if (c->target == CorruptTarget::kChecksum) {
      w.corrupt_checksum = true;
      Report(w.now, w.meta, tcp, index,
             [](std::string* d) { d->append("TCP checksum low byte inverted"); });
    } else if (tcp.payload().empty()) {
      Report(w.now, w.meta, tcp, index, [](std::string* d) { d->append("no payload: unchanged"); });
    } else {
      w.corrupt_payload_at = static_cast<int64_t>(UniformBelow(tcp.payload().size()));
      Report(w.now, w.meta, tcp, index, [&](std::string* d) {
        absl::StrAppend(d, "payload byte ", w.corrupt_payload_at, " inverted, checksum kept");
      });
    }
    return;
  }
  Field field;
  uint32_t after_value = 0;  // mutate: equivalent (assigned on every path before use)
  int64_t delta = 0;  // mutate: equivalent (assigned before use)
  const bool is_set = std::holds_alternative<SetAction>(action);
  if (is_set) {
    field = std::get<SetAction>(action).field;
    after_value = std::get<SetAction>(action).value;
  } else {
    field = std::get<AddAction>(action).field;
    delta = std::get<AddAction>(action).delta;
  }
  if (!HasField(w.current(), field)) {
    Report(w.now, w.meta, tcp, index, [&](std::string* d) {
      absl::StrAppend(d, "no ", field == Field::kMss ? "MSS" : "window scale",
                      " option: unchanged");
    });
    return;
  }
  const uint32_t before = GetField(w.current(), field);
  if (!is_set) after_value = Wrap(before, delta, field);
  Report(w.now, w.meta, tcp, index, [&](std::string* d) {
    absl::StrAppend(d, FieldName(field), " ", FieldValueText(field, before), " -> ",
                    FieldValueText(field, after_value));
  });
  if (after_value == before) return;
  if (!w.copy) CopyForChange(w);
  PutField(*w.copy, field, after_value);
}

// The first change copies the offered bytes once; every change then patches the copy.
void FaultEngine::CopyForChange(Work& w) {
    const absl::Span<const uint8_t> bytes = w.offered.bytes();
    // mutate: equivalent 2048,< (capacity only)
    if (changed_.size() < bytes.size()) changed_.resize(std::max<size_t>(bytes.size(), 2048));
    std::memcpy(changed_.data(), bytes.data(), bytes.size());
    w.copy.emplace(absl::MakeSpan(changed_.data(), bytes.size()), w.offered.layout());
}

// The corruptions go on last, over the fields as every rule left them: a payload
// byte inverted under the checksum as it was, or the checksum's low byte inverted.
void FaultEngine::Seal(Work& w) {
  if (w.sealed || (w.corrupt_payload_at < 0 && !w.corrupt_checksum)) return;
  w.sealed = true;
  if (!w.copy) CopyForChange(w);
  uint8_t* b = changed_.data();
  const size_t payload = w.copy->payload().size();
  // mutate: equivalent <,&& (the byte was drawn below the payload's length; -1 is huge unsigned)
  if (w.corrupt_payload_at >= 0 && static_cast<size_t>(w.corrupt_payload_at) < payload) {
    b[w.copy->layout().payload + static_cast<size_t>(w.corrupt_payload_at)] ^= 0xff;
  }
  if (w.corrupt_checksum) b[w.copy->layout().tcp + 17] ^= 0xff;  // bytes 16-17 of the header
}

Verdict FaultEngine::Act(Work& w, size_t index, ConnState*& conn) {
  const Compiled& rule = rules_[index];
  const ConstDatagramView tcp = w.current();
  const int hook = static_cast<int>(w.meta.hook) & 3;
  switch (KindOf(rule.rule.action)) {
    case ActionKind::kDrop:
      Report(w.now, w.meta, tcp, index, [](std::string* d) { d->append("dropped"); });
      return Verdict::kTaken;
    case ActionKind::kDelay: {
      const auto& a = std::get<DelayAction>(rule.rule.action);
      stack::Duration delay = a.delay;
      if (a.jitter > absl::ZeroDuration()) {
        const int64_t j = absl::ToInt64Nanoseconds(a.jitter);
        delay += absl::Nanoseconds(static_cast<int64_t>(UniformBelow(2 * uint64_t(j) + 1)) - j);
      }
      delay = std::max(delay, absl::ZeroDuration());  // mutate: equivalent (jitter <= delay)
      Schedule(Materialize(w), w.now + delay);
      Report(w.now, w.meta, tcp, index,
             [&](std::string* d) { absl::StrAppend(d, "delayed ", DurationToString(delay)); });
      return Verdict::kTaken;
    }
    case ActionKind::kDup: {
      // The segment (changed, if a mutation changed it) goes on now, its copies
      // right after it.
      const uint32_t copies = std::get<DupAction>(rule.rule.action).copies;
      Seal(w);  // mutate: equivalent (Materialize seals; copies >= 1)
      for (uint32_t k = 0; k < copies; ++k) Schedule(Materialize(w), w.now);
      Report(w.now, w.meta, tcp, index, [&](std::string* d) {
        absl::StrAppend(d, "original + ", copies, copies == 1 ? " copy" : " copies");
      });
      return Verdict::kPass;
    }
    case ActionKind::kReorder: {
      if (conn == nullptr) conn = &conns_[w.meta.conn];
      if (conn->reorder_held[hook] != kNoSlot) {
        // The pair swaps: this one goes now, the held one right after it.
        Report(w.now, w.meta, tcp, index,
               [](std::string* d) { d->append("goes ahead of the segment already held"); });
        Seal(w);
        return Verdict::kPass;
      }
      const uint32_t s = Materialize(w);
      slots_[s].reorder_held = true;
      conn->reorder_held[hook] = s;
      ++reorder_holds_;  // mutate: equivalent ++ (a wrapped count is never 0 either)
      w.held_slot = s;
      Schedule(s, w.now + opts_.reorder_timeout);
      Report(w.now, w.meta, tcp, index, [&](std::string* d) {
        absl::StrAppend(d, "held until the next segment (at most ",
                        DurationToString(opts_.reorder_timeout), ")");
      });
      return Verdict::kTaken;
    }
    case ActionKind::kRst: {
      Schedule(MaterializeRst(w), w.now);
      Report(w.now, w.meta, tcp, index, [&](std::string* d) {
        absl::StrAppend(d, "replaced by RST seq ", tcp.seq().raw());
        if (tcp.flags().has(stack::kAck)) absl::StrAppend(d, " ack ", tcp.ack().raw());
      });
      return Verdict::kTaken;
    }
    case ActionKind::kBlackhole: {
      if (conn == nullptr) conn = &conns_[w.meta.conn];
      conn->blackholes.push_back(Blackhole{rule.id, rule.rule.hooks.bits()});
      ++blackholes_;  // mutate: equivalent ++ (a wrapped count is never 0 either)
      Report(w.now, w.meta, tcp, index, [&](std::string* d) {
        absl::StrAppend(d, "dropped; connection blackholed at ", rule.rule.hooks.ToString());
      });
      return Verdict::kTaken;
    }
    default:  // mutations are not deciding actions
      return Verdict::kPass;
  }
}

// Blackholes act before any rule: the connection has vanished at those hooks.
bool FaultEngine::DropIfBlackholed(Instant now, const SegmentMeta& meta,
                                   ConstDatagramView parsed) {
  auto it = conns_.find(meta.conn);
  if (it == conns_.end()) return false;
  const unsigned hook_bit = 1u << (static_cast<unsigned>(meta.hook) & 3);
  for (const Blackhole& b : it->second.blackholes) {
    if ((b.hooks & hook_bit) == 0) continue;
    // mutate: equivalent < (a blackhole's rule is always present: removing it lifts the blackhole)
    for (size_t i = 0; i < rules_.size(); ++i) {
      if (rules_[i].id != b.rule_id) continue;
      ++rules_[i].hits;
      Report(now, meta, parsed, i,
             [](std::string* d) { d->append("dropped: connection blackholed"); });
      break;
    }
    ReleaseReorderedAfter(now, meta, kNoSlot);
    return true;
  }
  return false;
}

// The segment held by a reorder at this connection and hook goes out now, after
// whatever the segment just decided put on the heap.
void FaultEngine::ReleaseReorderedAfter(Instant now, const SegmentMeta& meta, uint32_t except) {
  if (reorder_holds_ == 0) return;
  auto it = conns_.find(meta.conn);
  if (it == conns_.end()) return;
  uint32_t& held = it->second.reorder_held[static_cast<int>(meta.hook) & 3];
  if (held == kNoSlot || held == except) return;
  const uint32_t s = held;
  held = kNoSlot;
  // mutate: equivalent (the count gates a fast path only: too high costs a lookup)
  --reorder_holds_;
  slots_[s].reorder_held = false;
  Schedule(s, now);  // its timeout entry goes stale
  PruneStale();  // mutate: equivalent (the new entry is due first)
}

void FaultEngine::Report(Instant now, const SegmentMeta& meta, ConstDatagramView seg,
                         size_t index, absl::FunctionRef<void(std::string*)> detail) {
  if (decisions_made_ == decisions_.size()) decisions_.emplace_back();
  Decision& d = decisions_[decisions_made_++];
  const Compiled& rule = rules_[index];
  d.at = now;
  d.meta = meta;
  d.rule_id = rule.id;
  d.rule_text = *rule.text;
  d.action = KindOf(rule.rule.action);
  d.segment = Summarize(seg);
  d.detail.clear();
  detail(&d.detail);
}

// ---------------------------------------------------------------------------
// Held segments: a pool of buffers, and a heap by due time then arrival.

uint32_t FaultEngine::AcquireSlot(const SegmentMeta& meta, size_t len) {
  uint32_t s;
  if (!free_slots_.empty()) {
    s = free_slots_.back();
    free_slots_.pop_back();
  } else {
    s = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  Slot& slot = slots_[s];
  // Room for a full Ethernet-MTU datagram from the start, so buffers rarely grow.
  // mutate: equivalent 2048,< (capacity only)
  if (slot.bytes.size() < len) slot.bytes.resize(std::max<size_t>(len, 2048));
  slot.len = len;
  slot.meta = meta;
  slot.ticket = 0;  // mutate: equivalent (Schedule follows every AcquireSlot)
  slot.in_use = true;
  slot.reorder_held = false;  // mutate: equivalent (FreeSlot cleared it; a new slot starts clear)
  ++held_slots_;
  return s;
}

void FaultEngine::FreeSlot(uint32_t s) {
  Slot& slot = slots_[s];
  slot.in_use = false;  // mutate: equivalent (read only with ticket != 0, which is 0 below)
  slot.ticket = 0;
  slot.reorder_held = false;  // mutate: equivalent (AcquireSlot clears it)
  free_slots_.push_back(s);  // mutate: equivalent (a slot not reused is memory, not behaviour)
  --held_slots_;
}

// A held copy of the segment as the rules left it.
uint32_t FaultEngine::Materialize(Work& w) {
  Seal(w);
  const absl::Span<const uint8_t> bytes = w.current().bytes();
  const uint32_t s = AcquireSlot(w.meta, bytes.size());
  std::memcpy(slots_[s].bytes.data(), bytes.data(), bytes.size());
  return s;
}

// <SEQ=SEG.SEQ><CTL=RST>, or <SEQ=SEG.SEQ><ACK=SEG.ACK><CTL=RST,ACK>: in the
// sequence space of the segment it replaces, so the receiver finds it acceptable
// exactly when it would have found that segment's first byte in order.
uint32_t FaultEngine::MaterializeRst(const Work& w) {
  const ConstDatagramView from = w.current();
  Segment rst;
  absl::Span<const uint8_t> tcp;
  // The IP header of the segment it replaces, read once for this rare action.
  // mutate: equivalent false (the view was checked: its IP checksum is right)
  (void)stack::ParseIpLayer(from.bytes(), /*verify_checksum=*/false, &rst.ip, &tcp);
  if (auto* v4 = std::get_if<stack::Ipv4Repr>(&rst.ip)) v4->options = {};
  rst.tcp.src_port = from.src_port();
  rst.tcp.dst_port = from.dst_port();
  rst.tcp.seq = from.seq();
  rst.tcp.flags = stack::TcpFlags(stack::kRst);
  if (from.flags().has(stack::kAck)) {
    rst.tcp.flags = rst.tcp.flags.with(stack::kAck);
    rst.tcp.ack = from.ack();
  }
  const uint32_t s = AcquireSlot(w.meta, rst.BufferLen());
  Slot& slot = slots_[s];
  absl::StatusOr<size_t> n = EmitSegment(rst, absl::MakeSpan(slot.bytes.data(), slot.len));
  // Cannot fail for the header of a checked datagram; an empty slot is dropped.
  slot.len = n.ok() ? *n : 0;  // mutate: equivalent 0 (cannot fail, see above)
  return s;
}

void FaultEngine::Schedule(uint32_t s, Instant due) {
  const uint64_t order = next_order_++;
  slots_[s].ticket = order;
  heap_.push_back(Pending{due, order, s});
  std::push_heap(heap_.begin(), heap_.end());
}

void FaultEngine::PruneStale() {
  while (!heap_.empty() && slots_[heap_.front().slot].ticket != heap_.front().order) {
    std::pop_heap(heap_.begin(), heap_.end());
    heap_.pop_back();
  }
}

void FaultEngine::Poll(Instant now, Output out) {
  PruneStale();  // mutate: equivalent (every path that leaves a stale entry prunes after it)
  while (!heap_.empty() && heap_.front().due <= now) {
    const Pending top = heap_.front();
    std::pop_heap(heap_.begin(), heap_.end());
    heap_.pop_back();
    Slot& slot = slots_[top.slot];
    slot.ticket = 0;  // delivering: ForgetConnection leaves it to us
    if (slot.reorder_held) {
      // Nothing followed it in time.
      slot.reorder_held = false;  // mutate: equivalent (FreeSlot below clears it too)
      auto it = conns_.find(slot.meta.conn);
      if (it != conns_.end()) {
        it->second.reorder_held[static_cast<int>(slot.meta.hook) & 3] = kNoSlot;
        // mutate: equivalent (the count gates a fast path only: too high costs a lookup)
        --reorder_holds_;
      }
    }
    const SegmentMeta meta = slot.meta;
    // The callback may add slots (moving slots_), but a vector's move keeps its bytes.
    const absl::Span<const uint8_t> bytes(slot.bytes.data(), slot.len);
    if (!bytes.empty()) out(meta, bytes);
    FreeSlot(top.slot);
    PruneStale();
  }
}

void FaultEngine::ForgetConnection(uint64_t conn) {
  if (auto it = conns_.find(conn); it != conns_.end()) {
    // mutate: equivalent (the count gates a fast path only: too high costs a lookup)
    blackholes_ -= it->second.blackholes.size();
    for (uint32_t held : it->second.reorder_held) {
      // mutate: equivalent --,del (the count gates a fast path: too high costs a lookup)
      if (held != kNoSlot) --reorder_holds_;
    }
    conns_.erase(it);
  }
  for (uint32_t s = 0; s < slots_.size(); ++s) {
    if (slots_[s].in_use && slots_[s].ticket != 0 && slots_[s].meta.conn == conn) FreeSlot(s);
  }
  PruneStale();
}

uint64_t FaultEngine::UniformBelow(uint64_t n) {
  // Rejection keeps it exactly uniform and identical on every platform.
  const uint64_t limit =
      std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % n;
  uint64_t x;
  do {
    x = rng_();
  } while (x >= limit);  // mutate: equivalent >= (x == limit has probability 2^-64)
  return x % n;
}

}  // namespace wrench::proxy
