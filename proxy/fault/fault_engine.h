// The sans-I/O fault engine of docs/ARCHITECTURE.md "Fault injection": datagrams go in with the
// time, a hook and a connection number, the rules of proxy/fault/rule.h decide, and what
// survives comes out when due. The same engine runs in the simulator and the proxy.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "proxy/fault/rule.h"
#include "stack/datagram_view.h"
#include "stack/segment.h"
#include "stack/tcp_state.h"
#include "stack/time.h"

namespace wrench::proxy {

// Where a datagram is seen: which connection, at which hook, and the state of the
// proxy's endpoint on that leg at that moment (what `state=` matches).
struct SegmentMeta {
  uint64_t conn = 0;  // 1-based connection number (what `conn=` matches)
  Hook hook = Hook::kFromClient;
  stack::TcpState state = stack::TcpState::kClosed;
  // The control API's proxy the connection belongs to (0: none). A rule added with a
  // scope sees only segments of that scope, so one proxy's toxics leave the others'
  // connections alone without the rule language knowing about proxies.
  uint64_t scope = 0;
  // A socket-leg event (proxy/relay/proxy.h): the proxy's upstream is a kernel socket, and
  // the "segment" stands for a connect, a write or read, a shutdown or a reset of it.
  // Only the actions a socket can express (delay, rst) are tried on such events; the
  // kernel retransmits, orders and checksums beneath the socket, so drop, dup,
  // reorder, the mutations and blackhole never apply to them.
  bool socket = false;
};

// The header fields a log line needs, copied out of a segment.
struct SegmentSummary {
  uint16_t src_port = 0, dst_port = 0;
  stack::TcpFlags flags;
  stack::SeqNum seq, ack;
  uint32_t payload_len = 0;
};
SegmentSummary Summarize(const stack::TcpRepr& tcp);
SegmentSummary Summarize(stack::ConstDatagramView datagram);

// One rule firing on one segment, for captures and logs. `rule_text` stays valid
// until the rule is removed (adding rules does not move it).
struct Decision {
  stack::Instant at;
  SegmentMeta meta;
  int rule_id = 0;
  std::string_view rule_text;  // canonical, ToString(rule)
  ActionKind action = ActionKind::kDrop;
  SegmentSummary segment;  // as the rule saw it (after earlier rules' mutations)
  std::string detail;      // "seq 1000 -> 1001", "delayed 2s", "original + 2 copies"
};
// "00:00:01.250000 conn 1 from-server FIN-WAIT-1 rule 2 (delay 2s on=from-server
// has=FIN): FIN+ACK 80>40000 seq 5001 ack 1001 len 0: delayed 2s" (time of day, UTC)
std::string ToString(const Decision& d);
inline std::ostream& operator<<(std::ostream& os, const Decision& d) { return os << ToString(d); }

// What Offer did with a datagram.
enum class Verdict : uint8_t {
  kPass,   // goes on now: the caller sends Offered::datagram
  kTaken,  // the engine holds what it needs; results, if any, come out of Poll
};

// Offer's answer for one datagram. The spans stay valid until the next call into the
// engine.
struct Offered {
  Verdict verdict = Verdict::kPass;
  // With kPass, what to send now: the caller's own bytes when no rule changed them
  // (nothing was copied), else the engine's changed copy of them.
  absl::Span<const uint8_t> datagram;
  // Every rule that fired on it, in order: mutations first, the deciding rule last.
  absl::Span<const Decision> decisions;

  bool changed(absl::Span<const uint8_t> offered) const {
    return datagram.data() != offered.data();
  }
  // The last rule that fired, or null.
  const Decision* last() const { return decisions.empty() ? nullptr : &decisions.back(); }
  // An `rst` rule replaced the datagram with a RST.
  bool replaced_by_rst() const {
    return !decisions.empty() && decisions.back().action == ActionKind::kRst;
  }
};

// Decides, per the rules, the fate of each datagram offered at a hook.
//
// Evaluation. Rules are tried in the order they were added. A rule fires when all
// its matchers hold (proxy/fault/rule.h, "Occurrence counting"). The actions split in two:
//   - mutations (set, add, corrupt) change the segment and evaluation goes on with
//     the next rule, which sees the segment as changed (its flags, for flags= and
//     has=). So `add seq=1 ...` followed by `delay 1s ...` delays the changed segment.
//   - the others (drop, delay, dup, reorder, rst, blackhole) decide: evaluation
//     stops there. Rules after it never see the segment and do not count it.
// A segment that only mutations touched goes out at once, changed.
//
// Counting. Each rule with nth/every/after/count keeps, per connection and hook, how
// many segments passed its other matchers and how often it fired; a rule only counts
// segments that reach it (an earlier deciding rule hides them).
//
// Randomness. One std::mt19937_64 seeded from the seed serves every draw, in decision
// order: p= (one draw each time a rule's other matchers all hold), delay jitter (when
// nonzero) and the corrupted payload byte. The same seed and the same offered traffic
// give the same decisions, hit for hit.
//
// The actions:
//   drop       the segment is gone.
//   delay D~J  out at now + D + u, u uniform in [-J, +J] at 1 ns resolution. Equal due
//              times come out in the order they were taken; jitter may reorder.
//   dup N      the segment goes on now, followed by N copies.
//   reorder    held until the next segment of the same connection at the same hook
//              has been decided (whatever its fate), then released right after it.
//              If that next segment is itself picked for reorder, it goes first and
//              the held one right after it (the pair swaps; nothing waits twice).
//              A held segment nothing follows is released after
//              Options::reorder_timeout (500 ms: below the 1 s minimum RTO of
//              RFC 6298, so the hold alone does not provoke a retransmission).
//   rst        replaced by <SEQ=seq><CTL=RST> (RST+ACK with the same ack when the
//              segment had ACK): same addresses, ports and IP header, window 0, no
//              options, no payload, valid checksums.
//   set/add F  the field changes (add wraps modulo the field's width), patched in a
//              copy of the datagram with both checksums updated (RFC 1624). mss and wscale change
//              only a segment carrying that option; otherwise nothing changes and the decision's
//              detail says so. ttl is the IPv4 TTL or the IPv6 hop limit.
//   corrupt payload  one payload byte, chosen by the generator, is inverted and the
//              checksum is left as it was, so the receiver must find it bad (a single
//              changed byte always changes the internet checksum). No payload:
//              nothing changes (the detail says so).
//   corrupt checksum  the TCP checksum's low byte is inverted: the receiver drops it.
//   blackhole  this segment is dropped, and from then on every segment of the
//              connection at the rule's hooks is dropped before any rule is tried,
//              until the rule is removed or the connection forgotten. Each such drop
//              is a decision (and a hit) of the blackhole rule.
// A changed segment is the offered bytes patched in place through a datagram view
// (stack/datagram_view.h): options, IPv4 options and IPv6 extension headers stay
// where they were; link padding after the IP length is left out.
//
// Rules may be added and removed while traffic flows. Removing a rule does not
// recall what it already holds (delayed or reordered segments are on the wire); it
// does lift its blackholes. Ids are never reused.
//
// Idle time (idle>D). While some rule has idle>, every offered segment (blackholed,
// passed or decided) stamps its connection's leg with `now`; the matcher compares the
// time since the previous stamp.
//
// Cost. A segment whose hook and flags no rule accepts costs one table lookup (the
// rules are compiled into a bit set of candidate rules per hook and flags byte);
// rules naming a conn= or port= are indexed by it, and the remaining candidates
// are checked on conn, scope, port, len and state before any counter or draw is
// touched. Held segments live in a pool of reusable buffers: once warm, no path
// allocates per segment (the Decisions Offer returns reuse their detail strings).
class FaultEngine {
 public:
  struct Options {
    uint64_t seed = 1;
    stack::Duration reorder_timeout = absl::Milliseconds(500);
  };

  explicit FaultEngine(uint64_t seed) : FaultEngine(Options{.seed = seed}) {}
  explicit FaultEngine(Options opts);
  FaultEngine(const FaultEngine&) = delete;
  FaultEngine& operator=(const FaultEngine&) = delete;

  // Appends a rule and returns its id (1, 2, ...), or the ValidateRule error: an
  // invalid rule is never applied. With a nonzero scope the rule sees only segments
  // whose SegmentMeta::scope is the same.
  absl::StatusOr<int> AddRule(Rule rule, uint64_t scope = 0);
  // Removes the rule with this id; false when there is none.
  bool RemoveRule(int id);

  struct RuleInfo {
    int id = 0;
    Rule rule;
    std::string text;    // canonical
    uint64_t hits = 0;   // decisions it made (firings, plus blackhole drops)
    uint64_t scope = 0;  // 0: every segment
  };
  // The rules in evaluation order.
  std::vector<RuleInfo> Rules() const;
  // Whether any rule is in place (a cheap test, for every datagram).
  bool has_rules() const { return !rules_.empty(); }

  // Offers one checked datagram (IPv4 or IPv6 with TCP) at a hook and returns its
  // fate: kPass with the bytes to send now, or kTaken when the engine dropped it or
  // holds what it needs. Either way, call Poll(now) next: a kPass may be followed by
  // copies of it or by a segment released after it.
  Offered Offer(stack::Instant now, const SegmentMeta& meta, stack::ConstDatagramView datagram);

  using Output = absl::FunctionRef<void(const SegmentMeta&, absl::Span<const uint8_t> datagram)>;
  // Hands out every held datagram due at or before `now`, by due time, then in the
  // order taken. The bytes are valid during the call only. The callback may call
  // Offer, AddRule, RemoveRule and ForgetConnection, but not Poll.
  void Poll(stack::Instant now, Output out);
  // When Poll next has something to hand out (stack::kNever when nothing is held).
  stack::Instant NextDeadline() const { return heap_.empty() ? stack::kNever : heap_.front().due; }
  // Segments held now (delayed, reordered, or waiting to go out).
  size_t held() const { return held_slots_; }
  // Whether any rule could act on a socket-leg event at this hook (SegmentMeta::socket),
  // or a delay or rst rule with idle> watches the other direction of the same leg (its
  // idle time counts both): when neither, the proxy skips building such events at all.
  bool WatchesSocketLeg(Hook h) const { return socket_watched_[static_cast<int>(h) & 3]; }
  // Whether any rule at this hook could match a data segment of a TCP super-segment
  // (ACK set, perhaps PSH, FIN, ECE or CWR; never SYN, RST or URG; a payload): its
  // hooks include h, its flags allow such a segment and its len= allows a payload.
  // Such a rule must see the wire segments one by one (its counts, draws and changes
  // are per segment), so a super-segment read from the TUN is split first; with none,
  // the super-segment stays whole. Every other matcher (conn, port, state, idle,
  // counts, p) is taken to match: the answer errs toward splitting.
  bool MatchesDataOn(Hook h) const { return data_watched_[static_cast<int>(h) & 3]; }
  // Whether any rule at this hook could match a segment with ACK and without SYN or
  // RST (data, a pure ACK, a window update, a FIN), whatever its length. How many of
  // these an endpoint sends depends on how the peer's data came in (one ACK per
  // super-segment taken whole, about one per two wire segments), so such a rule on
  // the hook that answers the TUN's input also asks for wire segments.
  bool MatchesAckOn(Hook h) const { return ack_watched_[static_cast<int>(h) & 3]; }

  // Frees the connection's counters, blackholes and held segments (they are never
  // released). Its number may then start afresh.
  void ForgetConnection(uint64_t conn);

 private:
  static constexpr uint32_t kNoSlot = std::numeric_limits<uint32_t>::max();

  // The matchers the candidate table does not cover, flattened so a candidate is
  // rejected with a few compares.
  struct Filter {
    uint64_t conn = 0;  // 0: any (connections count from 1)
    uint64_t scope = 0;  // 0: any
    uint32_t len_lo = 0, len_hi = std::numeric_limits<uint32_t>::max();
    uint16_t port = 0;         // 0: any (port=0 is not a valid rule)
    uint16_t states = 0xffff;  // bit i: TcpState(i) matches
    int64_t idle_ns = -1;      // idle>: more than this many ns of silence; -1: any
    bool counted = false;      // has nth, every, after or count
    bool drawn = false;        // has p
  };
  struct Compiled {
    int id = 0;
    Rule rule;
    std::unique_ptr<const std::string> text;  // stable: Decision::rule_text points here
    uint64_t hits = 0;
    uint64_t scope = 0;
  };
  struct Counter {
    uint64_t seen = 0;  // segments that passed the other matchers
    uint64_t fired = 0;
  };
  struct Blackhole {
    int rule_id;
    uint8_t hooks;
  };
  // What the engine knows of one connection; created on first need.
  struct ConnState {
    absl::flat_hash_map<uint64_t, Counter> counters;  // key: rule id << 2 | hook
    absl::InlinedVector<Blackhole, 1> blackholes;
    std::array<uint32_t, kHookCount> reorder_held = {kNoSlot, kNoSlot, kNoSlot, kNoSlot};
    // When each leg (0: the client's, 1: the server's) last carried a segment, for idle>.
    std::array<stack::Instant, 2> last_seen = {absl::InfinitePast(), absl::InfinitePast()};
  };
  // A pooled datagram buffer. `ticket` is the order of the heap entry that releases
  // it; entries whose order differs are stale (the slot was re-timed or freed).
  struct Slot {
    std::vector<uint8_t> bytes;
    size_t len = 0;
    SegmentMeta meta;
    uint64_t ticket = 0;
    bool in_use = false;
    bool reorder_held = false;
  };
  struct Pending {
    stack::Instant due;
    uint64_t order;
    uint32_t slot;
    // std heap functions build a max-heap: "greater" puts the earliest first.
    bool operator<(const Pending& o) const { return due != o.due ? due > o.due : order > o.order; }
  };
  struct Work;       // one segment's evaluation (fault_engine.cc)
  struct Probe;      // a segment's parts the static matchers read
  struct Addressed;  // the rules a segment's conn and ports can meet

  Verdict Decide(Work& w, const uint64_t* candidates);
  Offered Answer(Verdict v, const Work& w);
  static bool StaticMatch(const Filter& f, const Probe& p);
  Addressed AddressedTo(const Probe& probe) const;
  int64_t TouchLeg(stack::Instant now, const SegmentMeta& meta);
  bool CountAndDraw(size_t index, const SegmentMeta& meta, ConnState*& conn);
  Verdict Act(Work& w, size_t index, ConnState*& conn);
  void Mutate(Work& w, size_t index);
  void CopyForChange(Work& w);
  void Seal(Work& w);
  bool DropIfBlackholed(stack::Instant now, const SegmentMeta& meta,
                        stack::ConstDatagramView datagram);
  void ReleaseReorderedAfter(stack::Instant now, const SegmentMeta& meta, uint32_t except);
  void Report(stack::Instant now, const SegmentMeta& meta, stack::ConstDatagramView seg,
              size_t index, absl::FunctionRef<void(std::string*)> detail);
  void Rebuild();
  // Candidate sets per slot: the hook for real segments, the hook + kHookCount for
  // socket-leg events (only delay and rst rules).
  static int SlotOf(const SegmentMeta& meta) {
    return (static_cast<int>(meta.hook) & 3) + (meta.socket ? kHookCount : 0);
  }
  const uint64_t* CandidatesFor(int slot, uint8_t flags) const {
    return &candidates_[(static_cast<size_t>(slot) * 256 + flags) * words_];
  }

  uint32_t Materialize(Work& w);
  uint32_t MaterializeRst(const Work& w);
  uint32_t AcquireSlot(const SegmentMeta& meta, size_t len);
  void FreeSlot(uint32_t slot);
  void Schedule(uint32_t slot, stack::Instant due);
  void PruneStale();

  uint64_t UniformBelow(uint64_t n);  // n > 0
  double UniformUnit() { return static_cast<double>(rng_() >> 11) * 0x1.0p-53; }

  Options opts_;
  std::mt19937_64 rng_;
  int next_id_ = 1;
  std::vector<Compiled> rules_;       // evaluation order; bit i of a candidate set is rules_[i]
  std::vector<Filter> filters_;       // parallel to rules_
  size_t words_ = 1;                  // 64-bit words per candidate set
  std::vector<uint64_t> candidates_;  // [slot][flags][word]
  std::array<bool, kHookCount> socket_watched_ = {};
  std::array<bool, kHookCount> data_watched_ = {};
  std::array<bool, kHookCount> ack_watched_ = {};
  // Rules naming a connection or a port, indexed by it, so a big rule set aimed at
  // many connections or ports costs each segment only the rules that can be its.
  std::vector<uint64_t> any_conn_, any_port_;  // rules without conn= / port=
  absl::flat_hash_map<uint64_t, std::vector<uint64_t>> by_conn_;
  absl::flat_hash_map<uint16_t, std::vector<uint64_t>> by_port_;

  absl::flat_hash_map<uint64_t, ConnState> conns_;
  size_t blackholes_ = 0;     // Blackhole entries over all connections
  size_t reorder_holds_ = 0;  // reorder_held entries over all connections
  size_t idle_rules_ = 0;     // rules with idle>: while 0, no leg's time is kept
  int64_t offer_idle_ns_ = -1;  // the offered segment's leg's silence before it; -1: none

  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
  std::vector<Pending> heap_;  // std::push_heap order; the front is never stale
  uint64_t next_order_ = 1;
  size_t held_slots_ = 0;

  std::vector<uint8_t> changed_;  // the offered datagram's changed copy, patched in place
  std::vector<Decision> decisions_;  // the offered datagram's; reused, so reporting does
  size_t decisions_made_ = 0;        // not allocate once warm
};

}  // namespace wrench::proxy
