// The fault rule language of docs/ARCHITECTURE.md "Fault injection": a Rule of plain fields (one
// action, a set of matchers), its one-line grammar with column-precise errors, and its
// canonical text form. The engine that applies rules to segments lives elsewhere.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "stack/tcp_state.h"
#include "stack/tcp_wire.h"
#include "stack/time.h"

namespace wrench::proxy {

// The four places a rule can act, named from the proxy's seat in the middle.
enum class Hook : uint8_t { kFromClient, kToClient, kFromServer, kToServer };
inline constexpr int kHookCount = 4;

// "from-client", "to-client", "from-server", "to-server".
absl::string_view HookName(Hook h);
// Inverse of HookName, case-insensitive.
std::optional<Hook> ParseHookName(absl::string_view name);

// A set of hooks; bit i is Hook(i).
class HookSet {
 public:
  constexpr HookSet() = default;  // no hook
  constexpr explicit HookSet(uint8_t bits) : bits_(bits & kAllBits) {}
  static constexpr HookSet All() { return HookSet(kAllBits); }
  static constexpr HookSet Of(Hook h) { return HookSet().with(h); }

  constexpr uint8_t bits() const { return bits_; }
  constexpr bool empty() const { return bits_ == 0; }
  constexpr bool has(Hook h) const { return (bits_ & Bit(h)) != 0; }
  constexpr HookSet with(Hook h) const { return HookSet(bits_ | Bit(h)); }
  constexpr bool operator==(const HookSet&) const = default;
  // "to-client,from-server": names in enum order joined by ','; "" for no hook.
  std::string ToString() const;

 private:
  static constexpr uint8_t kAllBits = (1u << kHookCount) - 1;
  static constexpr uint8_t Bit(Hook h) { return uint8_t(1u << static_cast<int>(h)); }
  uint8_t bits_ = 0;
};

// Header fields `set` and `add` can change.
enum class Field : uint8_t { kSeq, kAck, kWin, kUrg, kFlags, kTtl, kMss, kWscale };
inline constexpr int kFieldCount = 8;
// "seq", "ack", "win", "urg", "flags", "ttl", "mss", "wscale".
absl::string_view FieldName(Field f);
// Largest value the field holds: 2^32-1 for seq/ack, 65535 for win/urg/mss,
// 255 for ttl/wscale and flags (the flag bits).
uint32_t FieldMax(Field f);

enum class CorruptTarget : uint8_t { kPayload, kChecksum };

// The actions. Each alternative holds only its own parameters, so two equal Rules
// are equal field for field.
struct DropAction {
  bool operator==(const DropAction&) const = default;
};
// Holds the segment for a time drawn uniformly from [delay - jitter, delay + jitter].
struct DelayAction {
  stack::Duration delay = absl::ZeroDuration();
  stack::Duration jitter = absl::ZeroDuration();  // <= delay
  bool operator==(const DelayAction&) const = default;
};
// Passes the segment on plus `copies` extra copies.
struct DupAction {
  uint32_t copies = 1;
  bool operator==(const DupAction&) const = default;
};
// Holds the segment until the next one on the same hook has passed.
struct ReorderAction {
  bool operator==(const ReorderAction&) const = default;
};
// Replaces the segment with a valid RST in the same connection and sequence space.
struct RstAction {
  bool operator==(const RstAction&) const = default;
};
// Sets a field; for Field::kFlags `value` is the flag bits (stack::TcpFlags::bits()).
struct SetAction {
  Field field = Field::kSeq;
  uint32_t value = 0;
  bool operator==(const SetAction&) const = default;
};
// Adds a signed delta to a field, wrapping modulo the field's width. Not for flags.
struct AddAction {
  Field field = Field::kSeq;
  int64_t delta = 0;  // nonzero, |delta| <= FieldMax(field)
  bool operator==(const AddAction&) const = default;
};
// Damages payload bytes or the checksum; the checksums are not refreshed.
struct CorruptAction {
  CorruptTarget target = CorruptTarget::kPayload;
  bool operator==(const CorruptAction&) const = default;
};
// Drops this segment and every later one the rule's hooks see on the connection.
struct BlackholeAction {
  bool operator==(const BlackholeAction&) const = default;
};

using Action = std::variant<DropAction, DelayAction, DupAction, ReorderAction, RstAction, SetAction,
                            AddAction, CorruptAction, BlackholeAction>;

// In the order of Action's alternatives: KindOf(a) == ActionKind(a.index()).
enum class ActionKind : uint8_t {
  kDrop,
  kDelay,
  kDup,
  kReorder,
  kRst,
  kSet,
  kAdd,
  kCorrupt,
  kBlackhole,
};
inline constexpr int kActionKindCount = 9;
inline ActionKind KindOf(const Action& a) { return static_cast<ActionKind>(a.index()); }
// "drop", "delay", "dup", "reorder", "rst", "set", "add", "corrupt", "blackhole".
absl::string_view ActionName(ActionKind k);

// len=N, len<N, len>N on the payload length.
struct LenMatch {
  enum class Op : uint8_t { kEqual, kLess, kGreater };
  Op op = Op::kEqual;
  uint16_t value = 0;
  bool operator==(const LenMatch&) const = default;
};

// One rule: an action and the matchers that must all hold for it to fire. An unset
// optional matches everything.
//
// Occurrence counting is per connection and hook. Number the segments that pass every
// other matcher (hooks, conn, port, state, flags, has, len) k = 1, 2, ... Then
//   after=M  lets through only k > M, and renumbers those j = k - M (else j = k);
//   every=N  fires when j is a multiple of N;
//   nth=N    fires when j == N (once); nth excludes every, after and count;
//   count=C  stops the rule after it has fired C times;
//   p=X      is the last test: a draw from the seeded generator, made only for
//            segments every other matcher accepted.
//
// idle>D holds for a segment that comes more than D after the previous segment on the
// same leg of the connection, in either direction: the client's leg (from-client and
// to-client) or the server's leg (from-server and to-server), each the one TCP
// connection a middlebox on that side would track. A leg's first segment has no idle
// time and never matches. Every segment offered counts, whatever the rules do to it.
struct Rule {
  Action action = DropAction{};
  HookSet hooks = HookSet::All();
  std::optional<uint64_t> conn;  // 1-based connection number
  std::optional<uint16_t> port;  // either port
  std::optional<stack::TcpState> state;
  std::optional<stack::TcpFlags> flags_exact;
  std::optional<stack::TcpFlags> flags_has;
  std::optional<LenMatch> len;
  std::optional<stack::Duration> idle;  // idle>D: more than D since the leg's last segment
  std::optional<uint64_t> nth;
  std::optional<uint64_t> every;
  std::optional<uint64_t> after;
  std::optional<uint64_t> count;
  std::optional<double> probability;  // in [0, 1]
  bool operator==(const Rule&) const = default;
};

// Parses one rule (an action, then matchers, separated by blanks; '#' starts a
// comment). Errors read "rule N, col C: what was expected", with a did-you-mean
// suggestion for misspelled names; on any error no rule is returned.
absl::StatusOr<Rule> ParseRule(absl::string_view line, int rule_number = 1);

// Parses a rule file: one rule a line; blank and comment-only lines are skipped.
// Errors say "line N, col C: ..." by the file's line number; every bad line is
// reported (one per line of the message) and then no rule at all is returned.
absl::StatusOr<std::vector<Rule>> ParseRules(absl::string_view text);

// The name among `candidates` that `word` most likely misspells (case-insensitive edit
// distance, within a third of the name's length), or "" when none is close.
std::string DidYouMean(absl::string_view word, const std::vector<std::string>& candidates);

// Checks a Rule built in code against what the parser accepts. For every rule this
// accepts, ParseRule(ToString(rule)) == rule.
absl::Status ValidateRule(const Rule& rule);

// The canonical text: action and its arguments, then the set matchers in the fixed
// order on conn port state flags has len idle nth every after count p; `on=` is left out
// when it names all four hooks.
std::string ToString(const Rule& rule);
std::string ToString(const Action& action);
// Canonical duration: "0s", "100us", "1.5ms", "250ms", "2s", "1.000001s".
std::string DurationToString(stack::Duration d);

// The candidate `word` most likely misspells (case-insensitive edit distance within a
// third of the candidate's length), or "" when none is close: the parser's "did you
// mean", for other small languages of the command line.
std::string ClosestWord(absl::string_view word, const std::vector<std::string>& candidates);
// "a, b or c": the list of what an error message expected.
std::string OneOf(const std::vector<std::string>& names);

inline std::ostream& operator<<(std::ostream& os, const Rule& r) { return os << ToString(r); }
inline std::ostream& operator<<(std::ostream& os, Hook h) { return os << HookName(h); }

}  // namespace wrench::proxy
