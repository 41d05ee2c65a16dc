// `wrench ladder`: a --log capture read back, checked line by line, and laid out as
// rows (time flowing down, one arrow per segment, states at each change) for the
// renderers of ladder_render.cc. The kernel peers' states are inferred (the log has ours).
#include "proxy/ladder/ladder.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "proxy/relay/capture.h"
#include "stack/status_macros.h"

namespace wrench::proxy {
namespace {

using stack::TcpFlags;
using stack::TcpState;
using json = nlohmann::json;

// ---------------------------------------------------------------------------
// Reading the log.

// A value as the user wrote it, cut short, for "must be ..., not X" messages.
std::string Show(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() > 40 ? s.substr(0, 37) + "..." : s;
}

// Typed access to one log object that reports instead of throwing; the first
// problem is kept, prefixed with "file:line: ", and checked once at the end.
class FieldReader {
 public:
  FieldReader(const json& j, std::string where) : j_(j), where_(std::move(where)) {}

  bool Has(const char* key) const { return j_.contains(key); }
  void Require(const char* key, const char* why) {
    if (!Has(key)) Fail(absl::StrCat("no \"", key, "\" field (", why, ")"));
  }
  std::optional<uint64_t> Unsigned(const char* key, uint64_t max) {
    auto it = j_.find(key);
    if (it == j_.end()) return std::nullopt;
    if (it->is_number_unsigned() && it->get<uint64_t>() <= max) return it->get<uint64_t>();
    Fail(absl::StrCat("\"", key, "\" must be a whole number from 0 to ", max, ", not ", Show(*it)));
    return std::nullopt;
  }
  std::optional<double> Number(const char* key) {
    auto it = j_.find(key);
    if (it == j_.end()) return std::nullopt;
    if (it->is_number() && std::isfinite(it->get<double>())) return it->get<double>();
    Fail(absl::StrCat("\"", key, "\" must be a number, not ", Show(*it)));
    return std::nullopt;
  }
  std::optional<std::string> String(const char* key) {
    auto it = j_.find(key);
    if (it == j_.end()) return std::nullopt;
    if (it->is_string()) return it->get<std::string>();
    Fail(absl::StrCat("\"", key, "\" must be a string, not ", Show(*it)));
    return std::nullopt;
  }
  std::optional<TcpState> State(const char* key) {
    std::optional<std::string> s = String(key);
    if (!s) return std::nullopt;
    std::optional<TcpState> st = stack::ParseStateName(*s);
    if (!st)
      Fail(absl::StrCat("\"", key, "\" is not a TCP state: \"", *s,
                        "\" (expected e.g. ESTABLISHED)"));
    return st;
  }
  void Fail(const std::string& message) {
    if (status_.ok()) status_ = absl::InvalidArgumentError(where_ + message);
  }
  const absl::Status& status() const { return status_; }

 private:
  const json& j_;
  std::string where_;
  absl::Status status_;
};

absl::StatusOr<LadderRecord> ParseRecord(const json& j, int line, const std::string& path) {
  const std::string where = absl::StrCat(path, ":", line, ": ");
  if (!j.is_object())
    return absl::InvalidArgumentError(where + "not a JSON object but " + j.type_name());
  FieldReader f(j, where);
  LadderRecord r;
  r.line = line;
  for (const char* key : {"t", "conn", "hook"}) f.Require(key, "every record has t, conn and hook");
  r.t = f.Number("t").value_or(0);
  r.conn = f.Unsigned("conn", std::numeric_limits<uint64_t>::max()).value_or(0);
  if (std::optional<std::string> h = f.String("hook")) {
    std::optional<Hook> hook = ParseHookName(*h);
    if (hook) {
      r.hook = *hook;
    } else {
      f.Fail(absl::StrCat(
          "\"hook\" must be from-client, to-client, from-server or to-server, not \"", *h, "\""));
    }
  }
  r.note = f.String("note").value_or("");
  r.has_segment = f.Has("flags");
  if (!r.has_segment && r.note.empty() && f.status().ok()) {
    f.Fail("no \"flags\" field (a record is a segment, with flags, seq, ack and len, or a note)");
  }
  if (r.has_segment) {
    if (std::optional<std::string> fl = f.String("flags")) {
      std::optional<TcpFlags> flags = TcpFlags::Parse(*fl);
      if (flags) {
        r.flags = *flags;
        r.flags_text = *fl;
      } else {
        f.Fail(absl::StrCat("\"flags\" is not a set of TCP flags: \"", *fl,
                            "\" (expected e.g. SYN+ACK)"));
      }
    }
    constexpr uint64_t kMax32 = std::numeric_limits<uint32_t>::max();
    auto u32 = [&](const char* key) -> std::optional<uint32_t> {
      std::optional<uint64_t> v = f.Unsigned(key, kMax32);
      return v ? std::optional<uint32_t>(static_cast<uint32_t>(*v)) : std::nullopt;
    };
    r.seq = u32("seq");
    r.rseq = u32("rseq");
    r.ack = u32("ack");
    r.rack = u32("rack");
    if (!r.seq && !r.rseq) f.Require("rseq", "a segment needs its seq or rseq");
    if (r.flags.has(stack::kAck) && !r.ack && !r.rack)
      f.Require("rack", "a segment with ACK needs its ack or rack");
    f.Require("len", "a segment needs its payload length");
    r.len = static_cast<uint32_t>(f.Unsigned("len", kMax32).value_or(0));
    r.src = f.String("src").value_or("");
    r.dst = f.String("dst").value_or("");
  }
  r.before = f.State("before");
  r.after = f.State("after");
  r.rule = static_cast<int>(f.Unsigned("rule", std::numeric_limits<int>::max()).value_or(0));
  r.rule_text = f.String("rule_text").value_or("");
  r.action = f.String("action").value_or("");
  r.detail = f.String("detail").value_or("");
  RETURN_IF_ERROR(f.status());
  return r;
}

// ---------------------------------------------------------------------------
// What a rule's action did to a segment, read back from the log's "action" and
// "detail" ("drop" "dropped", "delay" "delayed 2s", "dup" "original + 1 copy", "add"
// "seq 1 -> 2"...). A log that has the detail inside "action" ("delay delayed 2s")
// reads the same.

struct Effect {
  enum class Fate : uint8_t { kPass, kDrop, kHeld } fate = Fate::kPass;
  double delay = 0;      // seconds a delay held it
  bool reorder = false;  // held until the next segment at its hook
  int copies = 0;        // extra copies a dup made
  bool mutated = false;
  bool discarded = false;             // corrupted: the receiver's checksum drops it
  std::optional<TcpFlags> flags;      // as delivered, when a rule changed them
  int64_t seq_delta = 0, ack_delta = 0;
  std::string note;  // "dropped  [rule 1: drop on=to-client ...]"
};

// The action's text as a reader wants it: "delayed 2s" rather than "delay delayed 2s".
std::string ActionText(absl::string_view kind, absl::string_view rest, absl::string_view whole) {
  if (rest.empty()) return std::string(kind);
  if (kind == "set" || kind == "add" || kind == "corrupt" || absl::ascii_isdigit(rest[0])) {
    return std::string(whole);
  }
  if (absl::StartsWith(rest, kind)) return std::string(rest);  // "dropped", "delayed 2s"
  return absl::StrCat(kind, ": ", rest);
}

Effect ParseEffect(const LadderRecord& r) {
  Effect e;
  const std::string whole = r.detail.empty() ? r.action : absl::StrCat(r.action, " ", r.detail);
  const absl::string_view action = absl::StripAsciiWhitespace(whole);
  if (!action.empty()) {
    const absl::string_view kind = action.substr(0, action.find(' '));
    const absl::string_view rest = absl::StripAsciiWhitespace(action.substr(kind.size()));
    std::vector<absl::string_view> words = absl::StrSplit(rest, ' ', absl::SkipEmpty());
    if (kind == "drop" || kind == "blackhole") {
      e.fate = Effect::Fate::kDrop;
    } else if (kind == "delay") {
      e.fate = Effect::Fate::kHeld;
      for (absl::string_view w : words) {
        absl::Duration d;
        if (absl::ParseDuration(absl::StripSuffix(absl::StripSuffix(w, ","), ")"), &d)) {
          e.delay = std::max(0.0, absl::ToDoubleSeconds(d));
          break;
        }
      }
    } else if (kind == "reorder") {
      // The second of a swapped pair goes at once; the first waits for the next.
      if (!absl::StrContains(rest, "goes ahead")) {
        e.fate = Effect::Fate::kHeld;
        e.reorder = true;
      }
    } else if (kind == "dup") {
      e.copies = 1;
      for (absl::string_view w : words) {
        int n;
        if (absl::SimpleAtoi(w, &n) && n > 0) {
          e.copies = std::min(n, 100);
          break;
        }
      }
    } else if (kind == "rst") {
      e.mutated = true;
      e.flags =
          r.flags.has(stack::kAck) ? TcpFlags(stack::kRst | stack::kAck) : TcpFlags(stack::kRst);
    } else if ((kind == "set" || kind == "add") && !absl::StrContains(rest, "unchanged")) {
      // "FIELD BEFORE -> AFTER"
      if (words.size() >= 4 && words[2] == "->" && words[1] != words[3]) {
        e.mutated = true;
        uint32_t a = 0, b = 0;
        if (words[0] == "flags") {
          e.flags = TcpFlags::Parse(words[3]);
        } else if ((words[0] == "seq" || words[0] == "ack") && absl::SimpleAtoi(words[1], &a) &&
                   absl::SimpleAtoi(words[3], &b)) {
          (words[0] == "seq" ? e.seq_delta : e.ack_delta) = static_cast<int32_t>(b - a);
        }
      }
    } else if (kind == "corrupt" && !absl::StrContains(rest, "unchanged")) {
      e.mutated = true;
      e.discarded = true;
    }
    e.note = ActionText(kind, rest, action);
  }
  if (r.rule != 0) {
    const std::string rule = r.rule_text.empty()
                                 ? absl::StrCat("[rule ", r.rule, "]")
                                 : absl::StrCat("[rule ", r.rule, ": ", r.rule_text, "]");
    e.note = e.note.empty() ? rule : absl::StrCat(e.note, "  ", rule);
  }
  return e;
}

// ---------------------------------------------------------------------------
// The kernel peers' states, inferred.

// Wrapping comparisons of sequence numbers (RFC 9293 §3.4).
bool SeqLt(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) < 0; }
bool SeqLe(uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) <= 0; }

// The textbook state of a kernel peer (RFC 9293 Figure 5), from the segments it
// sent and received: the log records only the proxy's endpoints. Good enough to
// write "~FIN-WAIT-2" on a diagram; not a TCP implementation.
class PeerModel {
 public:
  void set_state(TcpState s) { state_ = s; }
  std::optional<TcpState> state() const { return state_; }

  // Each returns the state when it changed.
  std::optional<TcpState> Sent(TcpFlags flags, uint32_t seq, uint32_t len) {
    if (flags.has(stack::kRst)) return Set(TcpState::kClosed);
    if (flags.has(stack::kSyn)) {
      if (!flags.has(stack::kAck) && (!state_ || state_ == TcpState::kClosed))
        return Set(TcpState::kSynSent);
      if (flags.has(stack::kAck) && (!state_ || state_ == TcpState::kListen))
        return Set(TcpState::kSynReceived);
      return std::nullopt;
    }
    if (flags.has(stack::kFin)) {
      fin_end_ = seq + len + 1;
      if (state_ == TcpState::kEstablished || state_ == TcpState::kSynReceived)
        return Set(TcpState::kFinWait1);
      if (state_ == TcpState::kCloseWait) return Set(TcpState::kLastAck);
      return std::nullopt;
    }
    // An ACK from SYN-SENT: it must have had the SYN-ACK.
    if (flags.has(stack::kAck) && state_ == TcpState::kSynSent) return Set(TcpState::kEstablished);
    return std::nullopt;
  }

  std::optional<TcpState> Received(TcpFlags flags, uint32_t seq, uint32_t ack, uint32_t len) {
    if (flags.has(stack::kRst)) {
      if (!state_ || state_ == TcpState::kListen || state_ == TcpState::kClosed)
        return std::nullopt;
      return Set(TcpState::kClosed);
    }
    if (flags.has(stack::kSyn)) {
      rcv_nxt_ = seq + 1 + len;
      if (!flags.has(stack::kAck)) {
        if (!state_ || state_ == TcpState::kListen || state_ == TcpState::kSynSent) {
          return Set(TcpState::kSynReceived);
        }
      } else if (state_ == TcpState::kSynSent || state_ == TcpState::kSynReceived) {
        return Set(TcpState::kEstablished);
      }
      return std::nullopt;
    }
    if (!state_) return std::nullopt;  // joined mid-connection: nothing to go on
    TcpState s = *state_;
    if (flags.has(stack::kAck)) {
      if (s == TcpState::kSynReceived) s = TcpState::kEstablished;
      if (fin_end_ && SeqLe(*fin_end_, ack)) {
        if (s == TcpState::kFinWait1) s = TcpState::kFinWait2;
        if (s == TcpState::kClosing) s = TcpState::kTimeWait;
        if (s == TcpState::kLastAck) s = TcpState::kClosed;
      }
    }
    if (ReceiveText(flags, seq, len)) {
      if (s == TcpState::kEstablished || s == TcpState::kSynReceived) s = TcpState::kCloseWait;
      if (s == TcpState::kFinWait1) s = TcpState::kClosing;
      if (s == TcpState::kFinWait2) s = TcpState::kTimeWait;
    }
    return Set(s);
  }

 private:
  std::optional<TcpState> Set(TcpState s) {
    if (state_ == s) return std::nullopt;
    state_ = s;
    return s;
  }
  // Accounts for the segment's bytes and FIN; true when this segment lets the FIN
  // be processed: a FIN that overtook data waits for the gap to fill, as in a kernel.
  bool ReceiveText(TcpFlags flags, uint32_t seq, uint32_t len) {
    const bool fin = flags.has(stack::kFin);
    if (!rcv_nxt_) return fin;
    const uint32_t end = seq + len + (fin ? 1 : 0);
    if (fin) fin_at_ = seq + len;
    if (end != seq) ooo_.emplace_back(seq, end);
    // Merge what is contiguous with RCV.NXT; keep the rest for later.
    bool moved = true;
    while (moved) {
      moved = false;
      for (size_t i = 0; i < ooo_.size(); ++i) {
        if (SeqLe(ooo_[i].first, *rcv_nxt_)) {
          if (SeqLt(*rcv_nxt_, ooo_[i].second)) rcv_nxt_ = ooo_[i].second;
          ooo_.erase(ooo_.begin() + static_cast<std::ptrdiff_t>(i));
          moved = true;
          break;
        }
      }
    }
    if (ooo_.size() > 64) ooo_.erase(ooo_.begin());  // a confused model must not grow
    if (fin_at_ && SeqLt(*fin_at_, *rcv_nxt_) && !fin_done_) {
      fin_done_ = true;
      return true;
    }
    // A retransmitted FIN in CLOSE-WAIT or TIME-WAIT changes nothing either way.
    return false;
  }

  std::optional<TcpState> state_;
  std::optional<uint32_t> fin_end_;  // just after the FIN it sent
  std::optional<uint32_t> rcv_nxt_;
  std::optional<uint32_t> fin_at_;   // the FIN it received
  bool fin_done_ = false;
  std::vector<std::pair<uint32_t, uint32_t>> ooo_;
};

// ---------------------------------------------------------------------------
// Layout.

LadderLine Sender(Hook h) {
  switch (h) {
    case Hook::kFromClient: return LadderLine::kClient;
    case Hook::kToClient: return LadderLine::kClientLeg;
    case Hook::kFromServer: return LadderLine::kServer;
    case Hook::kToServer: return LadderLine::kServerLeg;
  }
  return LadderLine::kClient;
}
LadderLine Receiver(Hook h) {
  switch (h) {
    case Hook::kFromClient: return LadderLine::kClientLeg;
    case Hook::kToClient: return LadderLine::kClient;
    case Hook::kFromServer: return LadderLine::kServerLeg;
    case Hook::kToServer: return LadderLine::kServer;
  }
  return LadderLine::kClientLeg;
}
bool IsKernel(LadderLine l) { return l == LadderLine::kClient || l == LadderLine::kServer; }
LadderLine ProxyLine(Hook h) {
  return h == Hook::kFromClient || h == Hook::kToClient ? LadderLine::kClientLeg
                                                        : LadderLine::kServerLeg;
}
size_t Idx(LadderLine l) { return static_cast<size_t>(l); }

// One segment as drawn: relative numbers (tcpdump style, from each sender's ISN on
// its leg) and what a rule did.
struct Drawn {
  const LadderRecord* r = nullptr;
  double t = 0;  // r->t, or earlier where RestoreCausalOrder moved it up
  uint32_t seq = 0, ack = 0;
  Effect effect;
  std::string label;
};

// Relative numbers from the first SYN each sender sent on its leg: those hold even
// where the log's rseq/rack could not (a SYN-ACK dropped before the proxy saw it).
// Without a SYN in the log (a capture joined late), the log's own rseq/rack.
void Number(std::vector<Drawn>& segs) {
  std::optional<uint32_t> isn[4];
  for (const Drawn& d : segs) {
    const LadderRecord& r = *d.r;
    if (r.has_segment && r.flags.has(stack::kSyn) && r.seq && !isn[Idx(Sender(r.hook))]) {
      isn[Idx(Sender(r.hook))] = *r.seq;
    }
  }
  for (Drawn& d : segs) {
    const LadderRecord& r = *d.r;
    if (!r.has_segment) continue;
    const auto& s_isn = isn[Idx(Sender(r.hook))];
    const auto& r_isn = isn[Idx(Receiver(r.hook))];
    d.seq = r.seq && s_isn ? *r.seq - *s_isn : r.rseq.value_or(r.seq.value_or(0));
    d.ack = r.ack && r_isn ? *r.ack - *r_isn : r.rack.value_or(r.ack.value_or(0));
    d.label = absl::StrCat(r.flags.ToString(), " seq=", d.seq);
    if (r.flags.has(stack::kAck)) absl::StrAppend(&d.label, " ack=", d.ack);
    if (r.len > 0) absl::StrAppend(&d.label, " len=", r.len);
  }
}

bool IsInbound(const Drawn& d) {
  return d.r->has_segment && (d.r->hook == Hook::kFromClient || d.r->hook == Hook::kFromServer);
}

// The proxy writes a from-* line once it has handled the segment, so what the
// segment caused (the ACK of it, its bytes or FIN relayed to the other leg, the
// upstream SYN it opened, the SYN-ACK the upstream's answer allowed) is logged
// before it. Moves each inbound line up, among the lines since the connection's
// previous inbound one, to just before the first line that provably depends on it,
// and dates it no later than that line. Lines that cannot be shown to depend on it
// keep their place, and a log already in causal order is left as it is.
void RestoreCausalOrder(std::vector<Drawn>& segs) {
  // What each kernel peer had sent before the segment at hand, in log order.
  struct Sent {
    std::optional<uint32_t> end;       // its sequence space: seq + len + SYN + FIN
    std::optional<uint32_t> data_end;  // just after its last new byte
    bool syn = false, fin = false, syn_ack = false;
  };
  Sent sent[4];
  std::vector<std::pair<size_t, size_t>> moves;  // inbound at .first goes to .second
  for (size_t i = 0; i < segs.size(); ++i) {
    if (!IsInbound(segs[i])) continue;
    const Drawn& r = segs[i];
    const LadderLine from = Sender(r.r->hook);
    Sent& before = sent[Idx(from)];
    const TcpFlags f = r.r->flags;
    const uint32_t data_start = r.seq + (f.has(stack::kSyn) ? 1 : 0),
                   data_end = data_start + r.r->len;
    const uint32_t end = data_end + (f.has(stack::kFin) ? 1 : 0);
    // Only what this segment brought first can be what a later line answers.
    const bool new_space = !before.end || SeqLt(*before.end, end);
    const uint32_t new_from =
        before.data_end && SeqLt(data_start, *before.data_end) ? *before.data_end : data_start;
    const bool new_data = r.r->len > 0 && SeqLt(new_from, data_end);
    const bool first_fin = f.has(stack::kFin) && !before.fin;
    const bool first_syn = f.has(stack::kSyn) && !f.has(stack::kAck) && !before.syn;
    const bool first_syn_ack = f.has(stack::kSyn) && f.has(stack::kAck) && !before.syn_ack;
    auto depends = [&](const Drawn& s) {
      if (!s.r->has_segment) return false;
      const TcpFlags sf = s.r->flags;
      if (Receiver(s.r->hook) == from) {
        // The same leg, back to the sender: an ACK of what it brought first.
        return new_space && sf.has(stack::kAck) && SeqLe(end, s.ack);
      }
      // The other leg, away from the proxy: its bytes, FIN or SYN relayed.
      const bool other_leg =
          ProxyLine(s.r->hook) != ProxyLine(r.r->hook) && !IsKernel(Sender(s.r->hook));
      if (!other_leg) return false;
      const uint32_t s_start = s.seq + (sf.has(stack::kSyn) ? 1 : 0), s_end = s_start + s.r->len;
      if (new_data && s.r->len > 0 && SeqLt(s_start, data_end) && SeqLt(new_from, s_end))
        return true;
      if (first_fin && sf.has(stack::kFin)) return true;
      if (first_syn && sf.has(stack::kSyn) && !sf.has(stack::kAck)) return true;
      return first_syn_ack && sf.has(stack::kSyn) && sf.has(stack::kAck);
    };
    size_t start = i;
    while (start > 0 && !IsInbound(segs[start - 1])) --start;
    for (size_t j = start; j < i; ++j) {
      if (depends(segs[j])) {
        moves.emplace_back(i, j);
        break;
      }
    }
    if (!before.end || SeqLt(*before.end, end)) before.end = end;
    if (r.r->len > 0 && (!before.data_end || SeqLt(*before.data_end, data_end)))
      before.data_end = data_end;
    before.fin = before.fin || f.has(stack::kFin);
    before.syn = before.syn || (f.has(stack::kSyn) && !f.has(stack::kAck));
    before.syn_ack = before.syn_ack || (f.has(stack::kSyn) && f.has(stack::kAck));
  }
  // Each move stays inside its own run of lines, so they do not interfere.
  for (const auto& [from, to] : moves) {
    segs[from].t = std::min(segs[from].t, segs[to].t);
    std::rotate(segs.begin() + static_cast<std::ptrdiff_t>(to),
                segs.begin() + static_cast<std::ptrdiff_t>(from),
                segs.begin() + static_cast<std::ptrdiff_t>(from) + 1);
  }
}

struct Mark {
  LadderLine line;
  TcpState state;
  bool inferred;
};

// An event in time order: a segment offered at a hook, or a held one arriving.
struct Item {
  double time;
  int64_t sub;  // order among equal times: arrivals first, then log order
  bool arrival;
  size_t seg;
  std::vector<Mark> pre, post;  // states written before / after it
};

std::vector<Item> Schedule(const std::vector<Drawn>& segs) {
  std::vector<Item> items;
  for (size_t i = 0; i < segs.size(); ++i) {
    const LadderRecord& r = *segs[i].r;
    const double t = segs[i].t;
    const int64_t order = 2 * static_cast<int64_t>(i) + 1;
    items.push_back({t, order, false, i, {}, {}});
    const Effect& e = segs[i].effect;
    if (e.fate != Effect::Fate::kHeld) continue;
    if (!e.reorder) {
      items.push_back({t + e.delay, -1, true, i, {}, {}});
      continue;
    }
    // Released right after the next segment at the same hook, or at the timeout.
    Item release{t + 0.5, -1, true, i, {}, {}};
    for (size_t j = i + 1; j < segs.size(); ++j) {
      if (segs[j].r->has_segment && segs[j].r->hook == r.hook) {
        release.time = segs[j].t;
        release.sub = 2 * static_cast<int64_t>(j) + 2;
        break;
      }
    }
    items.push_back(release);
  }
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    return a.time != b.time ? a.time < b.time : a.sub < b.sub;
  });
  return items;
}

// Decides which state is written where: the proxy's from the log's before/after,
// the kernel peers' from PeerModel.
void AssignStates(const std::vector<Drawn>& segs, std::vector<Item>& items, bool server_leg) {
  PeerModel peer[4];
  std::optional<TcpState> proxy[4];
  // A held segment arriving at a proxy leg changes its state unlogged; the next
  // record's "before" shows the change, written at the arrival.
  std::optional<size_t> arrival_at[4];
  for (const Drawn& d : segs) {
    if (server_leg && d.r->has_segment && d.r->hook == Hook::kToServer) {
      if (d.r->flags.has(stack::kSyn) && !d.r->flags.has(stack::kAck) && !items.empty()) {
        peer[Idx(LadderLine::kServer)].set_state(TcpState::kListen);
        items.front().pre.push_back({LadderLine::kServer, TcpState::kListen, true});
      }
      break;
    }
  }
  auto receive = [&](const Drawn& d, std::vector<Mark>& marks, int times) {
    const LadderLine to = Receiver(d.r->hook);
    if (!IsKernel(to) || d.effect.discarded) return;
    const TcpFlags flags = d.effect.flags.value_or(d.r->flags);
    const uint32_t seq = d.seq + static_cast<uint32_t>(d.effect.seq_delta);
    const uint32_t ack = d.ack + static_cast<uint32_t>(d.effect.ack_delta);
    std::optional<TcpState> changed;
    for (int k = 0; k < times; ++k) {
      if (auto s = peer[Idx(to)].Received(flags, seq, ack, d.r->len)) changed = s;
    }
    if (changed) marks.push_back({to, *changed, true});
  };
  for (size_t i = 0; i < items.size(); ++i) {
    Item& it = items[i];
    const Drawn& d = segs[it.seg];
    const LadderRecord& r = *d.r;
    const LadderLine leg = ProxyLine(r.hook);
    if (it.arrival) {
      receive(d, it.post, 1);
      if (!IsKernel(Receiver(r.hook))) arrival_at[Idx(leg)] = i;
      continue;
    }
    if (r.has_segment && IsKernel(Sender(r.hook))) {
      if (auto s = peer[Idx(Sender(r.hook))].Sent(r.flags, d.seq, r.len)) {
        it.pre.push_back({Sender(r.hook), *s, true});
      }
    }
    if (r.before && r.before != proxy[Idx(leg)]) {
      std::vector<Mark>& at = arrival_at[Idx(leg)] ? items[*arrival_at[Idx(leg)]].post : it.pre;
      at.push_back({leg, *r.before, false});
      proxy[Idx(leg)] = r.before;
    }
    arrival_at[Idx(leg)].reset();
    if (r.has_segment && d.effect.fate == Effect::Fate::kPass)
      receive(d, it.post, 1 + d.effect.copies);
    if (r.after && r.after != proxy[Idx(leg)]) {
      it.post.push_back({leg, *r.after, false});
      proxy[Idx(leg)] = r.after;
    }
  }
}

// Rows from the scheduled items.
void LayOut(const std::vector<Drawn>& segs, const std::vector<Item>& items, Ladder& out) {
  auto add_marks = [&](const std::vector<Mark>& marks, double t) {
    for (const Mark& m : marks) {
      // Shares the last row when that holds only states and none on this line.
      bool reuse = !out.rows.empty() && out.rows.back().kind == LadderRow::Kind::kStates;
      for (auto s = out.states.rbegin();
           reuse && s != out.states.rend() && s->row + 1 == out.rows.size(); ++s) {
        if (s->line == m.line) reuse = false;
      }
      if (!reuse) out.rows.push_back({LadderRow::Kind::kStates, t, ""});
      out.states.push_back({out.rows.size() - 1, m.line, m.state, m.inferred});
    }
  };
  std::map<size_t, size_t> held_arrow;  // seg -> its arrow
  for (const Item& it : items) {
    const Drawn& d = segs[it.seg];
    const LadderRecord& r = *d.r;
    add_marks(it.pre, it.time);
    if (it.arrival) {
      out.rows.push_back({LadderRow::Kind::kArrival, it.time, ""});
      auto h = held_arrow.find(it.seg);
      if (h != held_arrow.end()) out.arrows[h->second].end_row = out.rows.size() - 1;
    } else if (!r.has_segment) {
      out.rows.push_back({LadderRow::Kind::kNote, d.t, r.note});
    } else {
      out.rows.push_back({LadderRow::Kind::kArrow, d.t, ""});
      LadderArrow a;
      a.from = Sender(r.hook);
      a.to = Receiver(r.hook);
      a.row = a.end_row = out.rows.size() - 1;
      a.mutated = d.effect.mutated;
      a.label = d.label;
      switch (d.effect.fate) {
        case Effect::Fate::kPass: a.fate = LadderArrow::Fate::kDelivered; break;
        case Effect::Fate::kDrop: a.fate = LadderArrow::Fate::kDropped; break;
        case Effect::Fate::kHeld: a.fate = LadderArrow::Fate::kHeld; break;
      }
      if (!d.effect.note.empty()) a.notes.push_back(d.effect.note);
      if (!r.note.empty()) a.notes.push_back(r.note);
      if (a.fate == LadderArrow::Fate::kHeld) held_arrow[it.seg] = out.arrows.size();
      out.arrows.push_back(a);
      for (int k = 0; k < d.effect.copies; ++k) {
        out.rows.push_back({LadderRow::Kind::kArrow, d.t, ""});
        LadderArrow copy = a;
        copy.row = copy.end_row = out.rows.size() - 1;
        copy.fate = LadderArrow::Fate::kCopy;
        copy.notes.clear();
        out.arrows.push_back(copy);
      }
    }
    add_marks(it.post, it.time);
  }
}

Ladder BuildOne(uint64_t conn, const std::vector<const LadderRecord*>& records) {
  Ladder out;
  out.conn = conn;
  std::vector<Drawn> segs;
  for (const LadderRecord* r : records) {
    Drawn d;
    d.r = r;
    d.t = r->t;
    if (r->has_segment) d.effect = ParseEffect(*r);
    segs.push_back(std::move(d));
    const bool server_side = r->hook == Hook::kToServer || r->hook == Hook::kFromServer;
    if (r->has_segment) {
      // What wrench sends (to-client, to-server) goes from its address to the peer's.
      const bool sent = r->hook == Hook::kToClient || r->hook == Hook::kToServer;
      const std::string& ours = sent ? r->src : r->dst;
      const std::string& peer = sent ? r->dst : r->src;
      std::string& peer_addr = server_side ? out.server_addr : out.client_addr;
      if (peer_addr.empty()) {
        peer_addr = peer;
        (server_side ? out.upstream_local_addr : out.front_addr) = ours;
      }
    }
    if (server_side) out.server_leg = true;
  }
  Number(segs);
  RestoreCausalOrder(segs);
  std::vector<Item> items = Schedule(segs);
  AssignStates(segs, items, out.server_leg);
  LayOut(segs, items, out);
  return out;
}

}  // namespace

// ---------------------------------------------------------------------------
// Public.

absl::StatusOr<std::vector<LadderRecord>> ParseLadderRecords(absl::Span<const json> objects,
                                                             absl::Span<const int> line_numbers,
                                                             const std::string& path) {
  std::vector<LadderRecord> out;
  out.reserve(objects.size());
  for (size_t i = 0; i < objects.size(); ++i) {
    const int line = i < line_numbers.size() ? line_numbers[i] : static_cast<int>(i) + 1;
    ASSIGN_OR_RETURN(LadderRecord r, ParseRecord(objects[i], line, path));
    out.push_back(std::move(r));
  }
  return out;
}

absl::StatusOr<std::vector<LadderRecord>> ReadLadderLog(const std::string& path) {
  // An ifstream opens a directory and then reads nothing: say what it is instead.
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is a directory, not a --log file"));
  }
  std::vector<int> lines;
  ASSIGN_OR_RETURN(std::vector<json> objects, ReadJsonLog(path, &lines));
  if (objects.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path,
                     " is empty: no segments to draw (write one with wrench proxy --log=FILE, then "
                     "make a connection)"));
  }
  return ParseLadderRecords(objects, lines, path);
}

std::vector<Ladder> BuildLadders(absl::Span<const LadderRecord> records,
                                 std::optional<uint64_t> only_conn) {
  std::map<uint64_t, std::vector<const LadderRecord*>> by_conn;
  for (const LadderRecord& r : records) {
    if (r.conn == 0 || (only_conn && r.conn != *only_conn)) continue;
    by_conn[r.conn].push_back(&r);
  }
  std::vector<Ladder> out;
  for (const auto& [conn, recs] : by_conn) out.push_back(BuildOne(conn, recs));
  return out;
}

absl::StatusOr<std::string> DrawLadder(const std::string& path, LadderFormat format,
                                       std::optional<uint64_t> conn) {
  ASSIGN_OR_RETURN(std::vector<LadderRecord> records, ReadLadderLog(path));
  std::vector<Ladder> ladders = BuildLadders(records, conn);
  if (ladders.empty()) {
    std::set<uint64_t> have;
    for (const LadderRecord& r : records) {
      if (r.conn != 0) have.insert(r.conn);
    }
    if (have.empty()) {
      return absl::NotFoundError(
          absl::StrCat(path, " has ", records.size(),
                       " records but none belongs to a connection: nothing to draw"));
    }
    return absl::NotFoundError(absl::StrCat(path, " has no connection ", *conn, "; it has ",
                                            have.size() == 1 ? "connection " : "connections ",
                                            absl::StrJoin(have, ", ")));
  }
  switch (format) {
    case LadderFormat::kText: return RenderLadderText(ladders);
    case LadderFormat::kSvg: return RenderLadderSvg(ladders);
    case LadderFormat::kHtml:
      return RenderLadderHtml(ladders, absl::StrCat("wrench ladder: ", path));
  }
  return RenderLadderText(ladders);
}

}  // namespace wrench::proxy
