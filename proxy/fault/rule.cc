// The rule language of rule.h: a tokenizer that keeps 1-based columns, a parser with
// one function per part of the grammar, did-you-mean suggestions, the range checks
// shared by the parser and ValidateRule, and the canonical printer.
#include "proxy/fault/rule.h"

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cmath>
#include <limits>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/types/span.h"
#include "stack/status_macros.h"

namespace wrench::proxy {
namespace {

using stack::Duration;
using stack::TcpFlags;
using stack::TcpState;

constexpr absl::string_view kHookNames[kHookCount] = {"from-client", "to-client", "from-server",
                                                      "to-server"};
constexpr absl::string_view kFieldNames[kFieldCount] = {"seq",   "ack", "win", "urg",
                                                        "flags", "ttl", "mss", "wscale"};
constexpr absl::string_view kActionNames[kActionKindCount] = {
    "drop", "delay", "dup", "reorder", "rst", "set", "add", "corrupt", "blackhole"};
constexpr absl::string_view kCorruptNames[] = {"payload", "checksum"};

// Matcher keys in canonical print order.
enum class Key : uint8_t {
  kOn,
  kConn,
  kPort,
  kState,
  kFlags,
  kHas,
  kLen,
  kIdle,
  kNth,
  kEvery,
  kAfter,
  kCount,
  kP,
};
constexpr int kKeyCount = 13;
constexpr absl::string_view kKeyNames[kKeyCount] = {"on",  "conn", "port",  "state", "flags",
                                                    "has", "len",  "idle",  "nth",   "every",
                                                    "after", "count", "p"};

constexpr absl::string_view kUnitNames[] = {"us", "ms", "s"};
constexpr int64_t kUnitMicros[] = {1, 1000, 1000000};

constexpr uint64_t kMaxDupCopies = 100;
constexpr int64_t kMaxDelayMicros = int64_t{3600} * 1000000;
constexpr uint64_t kMaxLen = 65535;
constexpr size_t kMaxFileErrors = 20;

// Words people reach for, mapped to ours; consulted only for suggestions.
struct Alias {
  absl::string_view from, to;
};
constexpr Alias kActionAliases[] = {
    {"duplicate", "dup"},        {"dupe", "dup"},     {"reset", "rst"},
    {"sleep", "delay"},          {"wait", "delay"},   {"lose", "drop"},
    {"discard", "drop"},         {"swap", "reorder"}, {"mangle", "corrupt"},
    {"black-hole", "blackhole"}, {"modify", "set"},
};
constexpr Alias kKeyAliases[] = {
    {"hook", "on"},      {"hooks", "on"},        {"at", "on"},      {"dir", "on"},
    {"direction", "on"}, {"flag", "flags"},      {"prob", "p"},     {"probability", "p"},
    {"chance", "p"},     {"connection", "conn"}, {"length", "len"}, {"size", "len"},
    {"limit", "count"},  {"times", "count"},     {"skip", "after"}, {"tcpstate", "state"},
    {"idle-for", "idle"}, {"quiet", "idle"},     {"silence", "idle"},
};
constexpr Alias kFieldAliases[] = {
    {"sequence", "seq"}, {"seqno", "seq"},           {"ackno", "ack"},    {"window", "win"},
    {"wnd", "win"},      {"urgent", "urg"},          {"hoplimit", "ttl"}, {"hop-limit", "ttl"},
    {"ws", "wscale"},    {"window-scale", "wscale"}, {"flag", "flags"},
};
constexpr Alias kUnitAliases[] = {
    {"sec", "s"},   {"secs", "s"},   {"msec", "ms"},      {"msecs", "ms"},
    {"usec", "us"}, {"usecs", "us"}, {"\xC2\xB5s", "us"},  // "µs"
};
constexpr Alias kCorruptAliases[] = {
    {"data", "payload"}, {"csum", "checksum"}, {"cksum", "checksum"}};

template <size_t N>
std::optional<int> Lookup(const absl::string_view (&names)[N], absl::string_view word) {
  for (size_t i = 0; i < N; ++i) {
    if (absl::EqualsIgnoreCase(names[i], word)) return static_cast<int>(i);
  }
  return std::nullopt;
}

// Optimal string alignment distance (Levenshtein plus adjacent transpositions),
// ASCII case-insensitive.
int EditDistance(absl::string_view a, absl::string_view b) {
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<int>> d(n + 1, std::vector<int>(m + 1));
  // d[n][0] feeds only d[n][1], and a distance through it is at least the candidate's
  // length, which Suggest never takes.
  // mutate: equivalent <= (see above)
  for (size_t i = 0; i <= n; ++i) d[i][0] = static_cast<int>(i);
  for (size_t j = 0; j <= m; ++j) d[0][j] = static_cast<int>(j);
  auto lower = [](char c) { return absl::ascii_tolower(static_cast<unsigned char>(c)); };
  for (size_t i = 1; i <= n; ++i) {
    for (size_t j = 1; j <= m; ++j) {
      const int cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) &&
          lower(a[i - 2]) == lower(b[j - 1])) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[n][m];
}

// The candidate `word` most likely misspells, or "" when none is close: an alias, or
// the nearest candidate within a third of its length (at least 1, less than all of it).
std::string Suggest(absl::string_view word, const std::vector<std::string>& candidates,
                    absl::Span<const Alias> aliases = {}) {
  for (const Alias& a : aliases) {
    if (absl::EqualsIgnoreCase(a.from, word)) return std::string(a.to);
  }
  // mutate: equivalent >,64 (no candidate is within a third of its length of 64 letters)
  if (word.size() > 64) return "";
  std::string best;
  int best_distance = std::numeric_limits<int>::max();
  for (const std::string& c : candidates) {
    const int d = EditDistance(word, c);
    const int limit = std::max<int>(1, static_cast<int>(c.size()) / 3);
    if (d <= limit && d < static_cast<int>(c.size()) && d < best_distance) {
      best = c;
      best_distance = d;
    }
  }
  return best;
}

template <size_t N>
std::vector<std::string> Names(const absl::string_view (&names)[N]) {
  return std::vector<std::string>(std::begin(names), std::end(names));
}

std::vector<std::string> FlagNames() {
  std::vector<std::string> out;
  for (int bit = 0; bit < 8; ++bit) out.push_back(TcpFlags(uint8_t(1u << bit)).ToString());
  return out;
}

std::vector<std::string> StateNames() {
  std::vector<std::string> out;
  for (int i = 0; i < stack::kTcpStateCount; ++i) {
    out.emplace_back(StateName(static_cast<TcpState>(i)));
  }
  return out;
}

std::string Quote(absl::string_view s) { return absl::StrCat("\"", absl::CHexEscape(s), "\""); }

// `unknown WHAT "word"; did you mean X?` or `...; expected a, b or c`.
std::string Unknown(absl::string_view what, absl::string_view word,
                    const std::vector<std::string>& candidates,
                    absl::Span<const Alias> aliases = {}) {
  const std::string guess = Suggest(word, candidates, aliases);
  if (!guess.empty())
    return absl::StrFormat("unknown %s %s; did you mean %s?", what, Quote(word), guess);
  return absl::StrFormat("unknown %s %s; expected %s", what, Quote(word), OneOf(candidates));
}

bool LooksLikeMatcher(absl::string_view token) {
  return token.find_first_of("=<>") != absl::string_view::npos;
}

enum class NumResult { kOk, kNotNumber, kTooLarge };

// Plain decimal digits only: no sign, no blanks, no base prefix.
NumResult ParseDecimal(absl::string_view s, uint64_t max, uint64_t* out) {
  if (s.empty()) return NumResult::kNotNumber;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return NumResult::kNotNumber;
    const uint64_t digit = static_cast<uint64_t>(c - '0');
    if (v > (max - digit) / 10) {
      // Keep scanning so that "12x" with a huge prefix still reads as not-a-number.
      for (char rest : s) {
        if (rest < '0' || rest > '9') return NumResult::kNotNumber;
      }
      return NumResult::kTooLarge;
    }
    v = v * 10 + digit;
  }
  *out = v;
  return NumResult::kOk;
}

// Shortest fixed-notation text that reads back as exactly `p`.
std::string FormatProbability(double p) {
  char buf[400];  // mutate: equivalent (room to spare)
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), p, std::chars_format::fixed);
  if (ec != std::errc()) return absl::StrFormat("%.17g", p);
  return std::string(buf, end);
}

// A probability written as digits, '.', and an optional exponent; nullopt otherwise.
std::optional<double> ParseProbabilityText(absl::string_view s) {
  if (s.empty() || !(absl::ascii_isdigit(static_cast<unsigned char>(s[0])) || s[0] == '.')) {
    return std::nullopt;
  }
  for (char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c)) && !absl::StrContains(".eE+-", c)) {
      return std::nullopt;
    }
  }
  double v = 0;  // mutate: equivalent (from_chars sets it when it succeeds)
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

std::string FlagsText(TcpFlags f) { return f.bits() == 0 ? "none" : f.ToString(); }

// Splits "SYNACK" or "syn-ack" into known flag names; nullopt when it does not split.
std::optional<TcpFlags> SegmentFlags(absl::string_view word) {
  std::string letters;
  for (char c : word) {
    if (absl::ascii_isalpha(static_cast<unsigned char>(c))) letters += absl::ascii_toupper(c);
  }
  if (letters.empty()) return std::nullopt;
  const std::vector<std::string> names = FlagNames();
  // reach[i]: the flag bits of some split of letters[0, i), when one exists.
  std::vector<std::optional<uint8_t>> reach(letters.size() + 1);
  reach[0] = 0;
  // mutate: equivalent < (at the end nothing is left to match)
  for (size_t i = 0; i < letters.size(); ++i) {
    if (!reach[i]) continue;
    for (size_t bit = 0; bit < names.size(); ++bit) {
      if (absl::string_view(letters).substr(i).substr(0, names[bit].size()) == names[bit] &&
          !reach[i + names[bit].size()]) {
        reach[i + names[bit].size()] = uint8_t(*reach[i] | (1u << bit));
      }
    }
  }
  if (!reach.back()) return std::nullopt;
  return TcpFlags(*reach.back());
}

// ---- Range checks shared by the parser and ValidateRule; "" means fine. ----

std::string DurationProblem(Duration d) {
  if (d < absl::ZeroDuration()) return "a duration cannot be negative";
  if (d > absl::Microseconds(kMaxDelayMicros)) return "delays are at most 3600s";
  if (d % absl::Microseconds(1) != absl::ZeroDuration()) {
    return "durations go down to 1us, no finer";
  }
  return "";
}

std::string JitterProblem(const DelayAction& a) {
  if (a.jitter <= a.delay) return "";
  return absl::StrFormat(
      "jitter %s exceeds the delay %s; the delay is drawn from [delay-jitter, "
      "delay+jitter] and cannot go below zero",
      DurationToString(a.jitter), DurationToString(a.delay));
}

std::string DupProblem(uint64_t copies) {
  if (copies == 0) return "dup 0 would not duplicate anything; give 1 to 100 extra copies";
  if (copies > kMaxDupCopies) return "dup takes at most 100 extra copies";
  return "";
}

std::string SetProblem(Field f, uint64_t value) {
  if (value <= FieldMax(f)) return "";
  if (f == Field::kFlags) return "flags are 8 bits";
  return absl::StrFormat("set %s takes a value from 0 to %d", FieldName(f), FieldMax(f));
}

std::string AddProblem(Field f, int64_t delta) {
  if (f == Field::kFlags) return "add cannot change flags; use set flags=F+F";
  if (delta == 0) return absl::StrFormat("add %s=0 changes nothing", FieldName(f));
  const int64_t max = FieldMax(f);
  if (delta < -max || delta > max) {
    return absl::StrFormat("add %s takes a delta from -%d to %d", FieldName(f), max, max);
  }
  return "";
}

std::string ProbabilityProblem(double p) {
  if (std::isfinite(p) && p >= 0 && p <= 1) return "";
  return absl::StrFormat("p is a probability from 0 to 1, got %s", FormatProbability(p));
}

// The message for a counting matcher given 0, or "" when 0 is fine for the key.
std::string ZeroProblem(Key k) {
  switch (k) {
    case Key::kNth: return "nth counts matches from 1; nth=0 would never fire";
    case Key::kEvery: return "every=0 would never fire; every=1 fires on each match";
    case Key::kCount: return "count=0 would never fire; count caps how often the rule fires";
    case Key::kConn: return "conn counts connections from 1";
    case Key::kPort: return "port takes a value from 1 to 65535";
    default: return "";
  }
}

struct ComboProblem {
  Key first, second;
  std::string message;
};

std::optional<ComboProblem> FindComboProblem(const Rule& r) {
  if (!r.nth) return std::nullopt;
  if (r.every) {
    return ComboProblem{Key::kNth, Key::kEvery,
                        "nth and every do not combine: nth fires once, on the N-th match; "
                        "every fires on each N-th"};
  }
  if (r.after) {
    std::string message = "nth and after do not combine: nth counts from the first match";
    if (*r.nth <= std::numeric_limits<uint64_t>::max() - *r.after) {
      absl::StrAppend(&message, ", so write nth=", *r.nth + *r.after, " instead");
    }
    return ComboProblem{Key::kNth, Key::kAfter, message};
  }
  if (r.count) {
    return ComboProblem{Key::kNth, Key::kCount,
                        "count has no effect with nth, which fires only once"};
  }
  return std::nullopt;
}

// ---- The parser. ----

struct Token {
  absl::string_view text;
  int col = 0;  // 1-based
};

class RuleParser {
 public:
  RuleParser(absl::string_view line, std::string where) : line_(line), where_(std::move(where)) {}

  absl::StatusOr<Rule> Parse() {
    RETURN_IF_ERROR(Tokenize());
    if (tokens_.empty()) {
      return Error(1, absl::StrCat("empty rule; expected an action: ", OneOf(Names(kActionNames))));
    }
    RETURN_IF_ERROR(ParseAction());
    while (!AtEnd()) RETURN_IF_ERROR(ParseMatcher(Next()));
    if (std::optional<ComboProblem> p = FindComboProblem(rule_)) {
      const int col = std::max(key_col_[int(p->first)], key_col_[int(p->second)]);
      return Error(col, p->message);
    }
    return rule_;
  }

 private:
  absl::Status Error(int col, absl::string_view message) const {
    return absl::InvalidArgumentError(absl::StrFormat("%s, col %d: %s", where_, col, message));
  }

  // Blanks separate tokens; '#' comments out the rest of its line; text on a second
  // line is an error, since a rule is one line.
  absl::Status Tokenize() {
    size_t i = 0;
    int newline_col = 0;
    while (i < line_.size()) {
      const char c = line_[i];
      if (c == '#') {
        while (i < line_.size() && line_[i] != '\n') ++i;
      } else if (c == '\n') {
        if (newline_col == 0) newline_col = static_cast<int>(i) + 1;
        ++i;
      } else if (c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f') {
        ++i;
      } else {
        if (newline_col != 0) {
          return Error(static_cast<int>(i) + 1,
                       absl::StrFormat("a rule is one line, but it goes on after the line "
                                       "break at col %d",
                                       newline_col));
        }
        const size_t start = i;
        while (i < line_.size() && !absl::StrContains(" \t\r\v\f\n#", line_[i])) ++i;
        tokens_.push_back({line_.substr(start, i - start), static_cast<int>(start) + 1});
      }
    }
    return absl::OkStatus();
  }

  bool AtEnd() const { return next_ == tokens_.size(); }
  const Token& Peek() const { return tokens_[next_]; }
  const Token& Next() { return tokens_[next_++]; }
  // An optional action argument is present when the next token is no matcher.
  bool ArgumentFollows() const { return !AtEnd() && !LooksLikeMatcher(Peek().text); }
  // The column just past the last token: where a missing argument belongs.
  int EndCol() const {
    const Token& last = tokens_[next_ - 1];
    return last.col + static_cast<int>(last.text.size());
  }

  absl::Status ParseAction() {
    const Token& t = Next();
    std::optional<int> kind = Lookup(kActionNames, t.text);
    if (!kind) {
      if (LooksLikeMatcher(t.text)) {
        return Error(t.col,
                     absl::StrCat("a rule starts with an action: ", OneOf(Names(kActionNames))));
      }
      return Error(t.col, Unknown("action", t.text, Names(kActionNames), kActionAliases));
    }
    switch (static_cast<ActionKind>(*kind)) {
      case ActionKind::kDrop: rule_.action = DropAction{}; return NoArgument(t);
      case ActionKind::kReorder: rule_.action = ReorderAction{}; return NoArgument(t);
      case ActionKind::kRst: rule_.action = RstAction{}; return NoArgument(t);
      case ActionKind::kBlackhole: rule_.action = BlackholeAction{}; return NoArgument(t);
      case ActionKind::kDelay: return ParseDelay();
      case ActionKind::kDup: return ParseDup();
      case ActionKind::kSet: return ParseFieldChange(/*add=*/false);
      case ActionKind::kAdd: return ParseFieldChange(/*add=*/true);
      case ActionKind::kCorrupt: return ParseCorrupt();
    }
    return absl::OkStatus();
  }

  absl::Status NoArgument(const Token& action) {
    if (!ArgumentFollows()) return absl::OkStatus();
    const Token& arg = Peek();
    const std::string hint = BareWordHint(arg.text);
    if (!hint.empty()) return BareWordError(arg);
    return Error(arg.col, absl::StrFormat("%s takes no value, got %s; matchers are KEY=VALUE",
                                          absl::AsciiStrToLower(action.text), Quote(arg.text)));
  }

  absl::Status ParseDelay() {
    if (!ArgumentFollows()) {
      return Error(AtEnd() ? EndCol() : Peek().col,
                   "delay needs a duration, e.g. delay 250ms or delay 250ms~50ms");
    }
    const Token& t = Next();
    const size_t tilde = t.text.find('~');
    DelayAction a;
    ASSIGN_OR_RETURN(a.delay, ParseDuration({t.text.substr(0, tilde), t.col}));
    if (tilde != absl::string_view::npos) {
      const Token jitter{t.text.substr(tilde + 1), t.col + static_cast<int>(tilde) + 1};
      if (jitter.text.empty()) {
        return Error(jitter.col, "expected a jitter after '~', e.g. 250ms~50ms");
      }
      ASSIGN_OR_RETURN(a.jitter, ParseDuration(jitter));
      if (std::string p = JitterProblem(a); !p.empty()) return Error(jitter.col, p);
    }
    rule_.action = a;
    return absl::OkStatus();
  }

  // DIGITS[.DIGITS]UNIT with UNIT one of us, ms, s (any case).
  absl::StatusOr<Duration> ParseDuration(const Token& t) {
    const absl::string_view s = t.text;
    size_t i = 0;
    while (i < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[i]))) ++i;
    const absl::string_view whole = s.substr(0, i);
    absl::string_view frac;
    if (i < s.size() && s[i] == '.') {
      const size_t start = ++i;
      while (i < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[i]))) ++i;
      frac = s.substr(start, i - start);
    }
    const absl::string_view unit = s.substr(i);
    const int unit_col = t.col + static_cast<int>(i);
    if (s.empty()) return Error(t.col, "expected a duration before '~', e.g. 250ms~50ms");
    if (whole.empty() && frac.empty()) {
      return Error(t.col, absl::StrFormat("expected a duration such as 100us, 250ms or 1.5s, "
                                          "got %s",
                                          Quote(s)));
    }
    if (unit.empty()) {
      return Error(unit_col, absl::StrFormat("duration %s needs a unit right after the number: "
                                             "us, ms or s",
                                             Quote(s)));
    }
    std::optional<int> u = Lookup(kUnitNames, unit);
    if (!u) return Error(unit_col, UnknownUnit(unit));
    // Exact integer arithmetic in microseconds; trailing zeros of the fraction are free.
    while (!frac.empty() && frac.back() == '0') frac.remove_suffix(1);
    const int64_t per_unit = kUnitMicros[*u];
    int64_t scale = 1;
    for (size_t k = 0; k < frac.size() && scale <= per_unit; ++k) scale *= 10;
    uint64_t w = 0;  // mutate: equivalent (ParseDecimal sets it or the parse fails)
    uint64_t f = 0;
    if (ParseDecimal(whole.empty() ? "0" : whole, kMaxDelayMicros, &w) != NumResult::kOk ||
        static_cast<int64_t>(w) > kMaxDelayMicros / per_unit) {
      return Error(t.col, "delays are at most 3600s");
    }
    if (!frac.empty()) {
      // mutate: equivalent || (scale and the unit are powers of ten: the first test decides)
      if (scale > per_unit || (per_unit % scale) != 0) {
        return Error(t.col, "durations go down to 1us, no finer");
      }
      ParseDecimal(frac, std::numeric_limits<uint64_t>::max(), &f);
    }
    const int64_t micros =
        static_cast<int64_t>(w) * per_unit + static_cast<int64_t>(f) * (per_unit / scale);
    const Duration d = absl::Microseconds(micros);
    if (std::string p = DurationProblem(d); !p.empty()) return Error(t.col, p);
    return d;
  }

  static std::string UnknownUnit(absl::string_view unit) {
    if (absl::EqualsIgnoreCase(unit, "ns")) {
      return "durations go down to 1us; use us, ms or s";
    }
    for (absl::string_view longer : {"m", "min", "mins", "h", "hr", "hour", "hours"}) {
      if (absl::EqualsIgnoreCase(unit, longer)) {
        return absl::StrFormat(
            "unknown duration unit %s; write longer delays in seconds, "
            "e.g. 120s (at most 3600s)",
            Quote(unit));
      }
    }
    return Unknown("duration unit", unit, Names(kUnitNames), kUnitAliases);
  }

  absl::Status ParseDup() {
    DupAction a;
    if (ArgumentFollows()) {
      const Token& t = Next();
      uint64_t n = 0;  // mutate: equivalent (set when ParseDecimal succeeds)
      switch (ParseDecimal(t.text, kMaxDupCopies, &n)) {
        case NumResult::kNotNumber:
          return Error(t.col, absl::StrFormat("dup takes a number of extra copies (1 to 100), "
                                              "got %s",
                                              Quote(t.text)));
        case NumResult::kTooLarge: return Error(t.col, DupProblem(kMaxDupCopies + 1));
        case NumResult::kOk: break;
      }
      if (std::string p = DupProblem(n); !p.empty()) return Error(t.col, p);
      a.copies = static_cast<uint32_t>(n);
    }
    rule_.action = a;
    return absl::OkStatus();
  }

  absl::Status ParseCorrupt() {
    CorruptAction a;
    if (ArgumentFollows()) {
      const Token& t = Next();
      std::optional<int> target = Lookup(kCorruptNames, t.text);
      if (!target) {
        return Error(t.col,
                     Unknown("corrupt target", t.text, Names(kCorruptNames), kCorruptAliases));
      }
      a.target = static_cast<CorruptTarget>(*target);
    }
    rule_.action = a;
    return absl::OkStatus();
  }

  // set FIELD=VALUE / add FIELD=DELTA.
  absl::Status ParseFieldChange(bool add) {
    const absl::string_view verb = add ? "add" : "set";
    const absl::string_view example = add ? "add seq=-1" : "set win=0";
    if (AtEnd()) {
      return Error(EndCol(), absl::StrFormat("%s needs FIELD=%s, e.g. %s", verb,
                                             add ? "DELTA" : "VALUE", example));
    }
    const Token& t = Next();
    const size_t eq = t.text.find('=');
    if (eq == absl::string_view::npos) {
      return Error(t.col, absl::StrFormat("%s needs FIELD=%s, e.g. %s; got %s", verb,
                                          add ? "DELTA" : "VALUE", example, Quote(t.text)));
    }
    const absl::string_view name = t.text.substr(0, eq);
    const Token value{t.text.substr(eq + 1), t.col + static_cast<int>(eq) + 1};
    std::optional<int> index = Lookup(kFieldNames, name);
    if (!index) {
      if (name.empty()) return Error(t.col, absl::StrFormat("expected a field before '='"));
      return Error(t.col, Unknown("field", name, Names(kFieldNames), kFieldAliases));
    }
    const Field field = static_cast<Field>(*index);
    if (add) {
      // mutate: equivalent 1 (flags are refused whatever the delta)
      if (field == Field::kFlags) return Error(t.col, AddProblem(field, 1));
      ASSIGN_OR_RETURN(int64_t delta, ParseDelta(field, value));
      rule_.action = AddAction{field, delta};
      return absl::OkStatus();
    }
    if (field == Field::kFlags) {
      ASSIGN_OR_RETURN(TcpFlags flags, ParseFlags(value, "set flags"));
      rule_.action = SetAction{field, flags.bits()};
      return absl::OkStatus();
    }
    const std::string range =
        absl::StrFormat("set %s takes a value from 0 to %d", FieldName(field), FieldMax(field));
    uint64_t v = 0;  // mutate: equivalent (set when ParseDecimal succeeds)
    switch (ParseDecimal(value.text, FieldMax(field), &v)) {
      case NumResult::kNotNumber:
        if (absl::StartsWith(value.text, "-") || absl::StartsWith(value.text, "+")) {
          return Error(value.col, absl::StrCat(range,
                                               "; for a change relative to the "
                                               "segment write add ",
                                               FieldName(field), "=", value.text));
        }
        return Error(value.col, absl::StrCat(range, ", got ", Quote(value.text)));
      case NumResult::kTooLarge: return Error(value.col, range);
      case NumResult::kOk: break;
    }
    rule_.action = SetAction{field, static_cast<uint32_t>(v)};
    return absl::OkStatus();
  }

  absl::StatusOr<int64_t> ParseDelta(Field field, const Token& value) {
    absl::string_view digits = value.text;
    bool negative = false;
    if (!digits.empty() && (digits[0] == '-' || digits[0] == '+')) {
      negative = digits[0] == '-';
      digits.remove_prefix(1);
    }
    uint64_t magnitude = 0;  // mutate: equivalent (set when ParseDecimal succeeds)
    const std::string range = AddProblem(field, int64_t{FieldMax(field)} + 1);
    switch (ParseDecimal(digits, FieldMax(field), &magnitude)) {
      case NumResult::kNotNumber:
        return Error(value.col, absl::StrCat(range, ", got ", Quote(value.text)));
      case NumResult::kTooLarge: return Error(value.col, range);
      case NumResult::kOk: break;
    }
    const int64_t delta =
        negative ? -static_cast<int64_t>(magnitude) : static_cast<int64_t>(magnitude);
    if (std::string p = AddProblem(field, delta); !p.empty()) return Error(value.col, p);
    return delta;
  }

  // F[+F...] with flag names in any case, or "none".
  absl::StatusOr<TcpFlags> ParseFlags(const Token& value, absl::string_view what) {
    if (value.text.empty()) {
      return Error(value.col,
                   absl::StrFormat("%s needs flag names joined by '+', e.g. SYN+ACK", what));
    }
    if (absl::EqualsIgnoreCase(value.text, "none")) return TcpFlags();
    uint8_t bits = 0;
    int col = value.col;
    for (absl::string_view name : absl::StrSplit(value.text, '+')) {
      if (name.empty()) {
        return Error(col, "expected a flag name on each side of '+'");
      }
      std::optional<TcpFlags> f = TcpFlags::Parse(name);
      if (!f || std::popcount(f->bits()) != 1) return Error(col, UnknownFlag(name));
      if ((bits & f->bits()) != 0) {
        return Error(col, absl::StrFormat("flag %s is listed twice", f->ToString()));
      }
      bits |= f->bits();
      col += static_cast<int>(name.size()) + 1;
    }
    return TcpFlags(bits);
  }

  static std::string UnknownFlag(absl::string_view name) {
    if (absl::EqualsIgnoreCase(name, "none")) {
      return absl::StrFormat("flag %s means no flags and stands alone; leave it out of a list "
                             "joined by '+'",
                             Quote(name));
    }
    // Two names run together ("SYNACK", "FIN-ACK") are the common slip.
    if (std::optional<TcpFlags> split = SegmentFlags(name)) {
      return absl::StrFormat("unknown flag %s; did you mean %s?", Quote(name), split->ToString());
    }
    const std::string guess = Suggest(name, FlagNames());
    if (!guess.empty()) {
      return absl::StrFormat("unknown flag %s; did you mean %s?", Quote(name), guess);
    }
    return absl::StrFormat("unknown flag %s; expected %s, joined by '+'", Quote(name),
                           OneOf(FlagNames()));
  }

  // What a bare word (no '=') probably meant, or "".
  std::string BareWordHint(absl::string_view word) const {
    if (Lookup(kActionNames, word)) {
      return absl::StrFormat("a rule has one action, and %s is another",
                             absl::AsciiStrToLower(word));
    }
    std::optional<TcpFlags> flags;
    // mutate: equivalent && (an empty name fails TcpFlags::Parse below too)
    if (!absl::StrContains(word, "++") && !absl::StartsWith(word, "+") &&
        !absl::EndsWith(word, "+")) {
      bool all_known = true;
      uint8_t bits = 0;
      for (absl::string_view name : absl::StrSplit(word, '+')) {
        std::optional<TcpFlags> f = TcpFlags::Parse(name);
        if (!f || std::popcount(f->bits()) != 1) {
          all_known = false;
          break;
        }
        bits |= f->bits();
      }
      if (all_known) flags = TcpFlags(bits);
    }
    if (flags) {
      return absl::StrFormat("did you mean has=%s or flags=%s?", flags->ToString(),
                             flags->ToString());
    }
    if (std::optional<int> key = Lookup(kKeyNames, word)) {
      if (*key == int(Key::kIdle)) return "a matcher needs a value, e.g. idle>1s";
      return absl::StrFormat("a matcher needs a value, e.g. %s=%s", kKeyNames[*key],
                             *key == int(Key::kLen) ? "0" : "VALUE");
    }
    if (std::optional<Hook> h = ParseHookName(word)) {
      return absl::StrFormat("did you mean on=%s?", HookName(*h));
    }
    if (std::optional<TcpState> s = stack::ParseStateName(word)) {
      return absl::StrFormat("did you mean state=%s?", StateName(*s));
    }
    return "";
  }

  absl::Status BareWordError(const Token& t) const {
    const std::string hint = BareWordHint(t.text);
    if (Lookup(kActionNames, t.text)) return Error(t.col, hint);
    std::string message = absl::StrFormat("expected a matcher KEY=VALUE, got %s", Quote(t.text));
    if (!hint.empty()) absl::StrAppend(&message, "; ", hint);
    return Error(t.col, message);
  }

  absl::Status ParseMatcher(const Token& t) {
    const size_t op_pos = t.text.find_first_of("=<>");
    if (op_pos == absl::string_view::npos) return BareWordError(t);
    const absl::string_view name = t.text.substr(0, op_pos);
    const char op = t.text[op_pos];
    const Token value{t.text.substr(op_pos + 1), t.col + static_cast<int>(op_pos) + 1};
    if (name.empty()) {
      return Error(t.col, absl::StrFormat("expected a matcher name before '%c'", op));
    }
    std::optional<int> index = Lookup(kKeyNames, name);
    if (!index) return Error(t.col, UnknownKey(name));
    const Key key = static_cast<Key>(*index);
    if (key == Key::kIdle && op != '>') {
      return Error(value.col - 1, "idle compares with '>': idle>1s matches a segment after more "
                                  "than 1s without one on its leg");
    }
    if (op != '=' && key != Key::kLen && key != Key::kIdle) {
      return Error(value.col - 1, absl::StrFormat("%s takes '=': only len compares with < or >",
                                                  kKeyNames[*index]));
    }
    if (int first = key_col_[*index]; first != 0) {
      return Error(t.col, absl::StrFormat("%s is given twice (first at col %d); a rule takes "
                                          "each matcher once",
                                          kKeyNames[*index], first));
    }
    key_col_[*index] = t.col;
    switch (key) {
      case Key::kOn: return ParseHooks(value);
      case Key::kFlags: {
        ASSIGN_OR_RETURN(rule_.flags_exact, ParseFlags(value, "flags"));
        return absl::OkStatus();
      }
      case Key::kHas: {
        ASSIGN_OR_RETURN(rule_.flags_has, ParseFlags(value, "has"));
        return absl::OkStatus();
      }
      case Key::kState: return ParseState(value);
      case Key::kLen: return ParseLen(op, value);
      case Key::kIdle: {
        if (value.text.empty()) {
          return Error(value.col, "idle needs a duration, e.g. idle>350s or idle>500ms");
        }
        ASSIGN_OR_RETURN(rule_.idle, ParseDuration(value));
        return absl::OkStatus();
      }
      case Key::kP: return ParseProbability(value);
      case Key::kPort: {
        ASSIGN_OR_RETURN(uint64_t port, ParseCount(key, value, 65535));
        rule_.port = static_cast<uint16_t>(port);
        return absl::OkStatus();
      }
      case Key::kConn: return AssignCount(key, value, &rule_.conn);
      case Key::kNth: return AssignCount(key, value, &rule_.nth);
      case Key::kEvery: return AssignCount(key, value, &rule_.every);
      case Key::kAfter: return AssignCount(key, value, &rule_.after);
      case Key::kCount: return AssignCount(key, value, &rule_.count);
    }
    return absl::OkStatus();
  }

  static std::string UnknownKey(absl::string_view name) {
    if (Lookup(kFieldNames, name)) {
      return absl::StrFormat(
          "unknown matcher %s; a field is changed by the action, e.g. "
          "set %s=VALUE or add %s=DELTA",
          Quote(name), absl::AsciiStrToLower(name), absl::AsciiStrToLower(name));
    }
    return Unknown("matcher", name, Names(kKeyNames), kKeyAliases);
  }

  absl::StatusOr<uint64_t> ParseCount(Key key, const Token& value, uint64_t max) {
    const absl::string_view name = kKeyNames[int(key)];
    uint64_t v = 0;  // mutate: equivalent (set when ParseDecimal succeeds)
    switch (ParseDecimal(value.text, max, &v)) {
      case NumResult::kNotNumber:
        if (value.text.empty()) {
          return Error(value.col, absl::StrFormat("%s needs a number", name));
        }
        return Error(value.col,
                     absl::StrFormat("%s needs a whole number, got %s", name, Quote(value.text)));
      case NumResult::kTooLarge:
        return Error(value.col, absl::StrFormat("%s is at most %d", name, max));
      case NumResult::kOk: break;
    }
    if (v == 0) {
      if (std::string p = ZeroProblem(key); !p.empty()) return Error(value.col, p);
    }
    return v;
  }

  absl::Status AssignCount(Key key, const Token& value, std::optional<uint64_t>* out) {
    ASSIGN_OR_RETURN(*out, ParseCount(key, value, std::numeric_limits<uint64_t>::max()));
    return absl::OkStatus();
  }

  absl::Status ParseHooks(const Token& value) {
    if (value.text.empty()) {
      return Error(value.col,
                   absl::StrCat("on needs hooks joined by ',': ", OneOf(Names(kHookNames))));
    }
    HookSet set;
    int col = value.col;
    for (absl::string_view name : absl::StrSplit(value.text, ',')) {
      if (name.empty()) return Error(col, "expected a hook name on each side of ','");
      std::optional<Hook> h = ParseHookName(name);
      if (!h) {
        if (absl::EqualsIgnoreCase(name, "all") || absl::EqualsIgnoreCase(name, "any")) {
          return Error(col, absl::StrFormat("unknown hook %s; leave out on= to match all four "
                                            "hooks",
                                            Quote(name)));
        }
        return Error(col, Unknown("hook", name, Names(kHookNames)));
      }
      if (set.has(*h)) {
        return Error(col, absl::StrFormat("hook %s is listed twice", HookName(*h)));
      }
      set = set.with(*h);
      col += static_cast<int>(name.size()) + 1;
    }
    rule_.hooks = set;
    return absl::OkStatus();
  }

  absl::Status ParseState(const Token& value) {
    if (value.text.empty()) {
      return Error(value.col, absl::StrCat("state needs a state name: ", OneOf(StateNames())));
    }
    std::optional<TcpState> s = stack::ParseStateName(value.text);
    if (!s) return Error(value.col, Unknown("state", value.text, StateNames()));
    rule_.state = *s;
    return absl::OkStatus();
  }

  absl::Status ParseLen(char op, const Token& value) {
    const std::string spelled = absl::StrCat("len", std::string(1, op));
    if (op != '=' && absl::StartsWith(value.text, "=")) {
      return Error(value.col - 1, absl::StrFormat("len compares with =, < or >; for %s=N "
                                                  "write %sN%s1",
                                                  spelled, spelled, op == '>' ? "-" : "+"));
    }
    uint64_t v = 0;  // mutate: equivalent (set when ParseDecimal succeeds)
    switch (ParseDecimal(value.text, kMaxLen, &v)) {
      case NumResult::kNotNumber:
        if (value.text.empty()) {
          return Error(value.col, absl::StrFormat("%s needs a number", spelled));
        }
        return Error(value.col, absl::StrFormat("%s needs a whole number, got %s", spelled,
                                                Quote(value.text)));
      case NumResult::kTooLarge: return Error(value.col, "len is at most 65535");
      case NumResult::kOk: break;
    }
    LenMatch m;
    m.op = op == '<' ? LenMatch::Op::kLess
                     : (op == '>' ? LenMatch::Op::kGreater : LenMatch::Op::kEqual);
    m.value = static_cast<uint16_t>(v);
    if (m.op == LenMatch::Op::kLess && v == 0) {
      return Error(value.col, "len<0 never matches: a payload is never shorter than 0");
    }
    rule_.len = m;
    return absl::OkStatus();
  }

  absl::Status ParseProbability(const Token& value) {
    if (absl::EndsWith(value.text, "%")) {
      if (std::optional<double> percent =
              ParseProbabilityText(value.text.substr(0, value.text.size() - 1))) {
        return Error(value.col, absl::StrFormat("p is a fraction from 0 to 1; for %s write p=%s",
                                                value.text, FormatProbability(*percent / 100)));
      }
    }
    std::optional<double> p = ParseProbabilityText(value.text);
    if (!p) {
      return Error(value.col, absl::StrFormat("p needs a probability from 0 to 1, e.g. p=0.1; "
                                              "got %s",
                                              Quote(value.text)));
    }
    if (std::string problem = ProbabilityProblem(*p); !problem.empty()) {
      return Error(value.col, problem);
    }
    rule_.probability = *p;
    return absl::OkStatus();
  }

  absl::string_view line_;
  std::string where_;
  std::vector<Token> tokens_;
  size_t next_ = 0;
  Rule rule_;
  std::array<int, kKeyCount> key_col_{};  // column of each matcher seen; 0 = not seen
};

bool IsBlankOrComment(absl::string_view line) {
  for (char c : line) {
    if (c == '#') return true;
    if (!absl::ascii_isspace(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

absl::string_view HookName(Hook h) { return kHookNames[static_cast<int>(h) & 3]; }

std::optional<Hook> ParseHookName(absl::string_view name) {
  std::optional<int> i = Lookup(kHookNames, name);
  if (!i) return std::nullopt;
  return static_cast<Hook>(*i);
}

std::string HookSet::ToString() const {
  std::vector<absl::string_view> names;
  // mutate: equivalent < (a HookSet holds only the four hooks' bits)
  for (int i = 0; i < kHookCount; ++i) {
    if (has(static_cast<Hook>(i))) names.push_back(kHookNames[i]);
  }
  return absl::StrJoin(names, ",");
}

absl::string_view FieldName(Field f) {
  const int i = static_cast<int>(f);
  return i < kFieldCount ? kFieldNames[i] : "?";
}

uint32_t FieldMax(Field f) {
  switch (f) {
    case Field::kSeq:
    case Field::kAck: return 0xffffffffu;
    case Field::kWin:
    case Field::kUrg:
    case Field::kMss: return 0xffff;
    case Field::kFlags:
    case Field::kTtl:
    case Field::kWscale: return 0xff;
  }
  return 0;
}

absl::string_view ActionName(ActionKind k) {
  const int i = static_cast<int>(k);
  return i < kActionKindCount ? kActionNames[i] : "?";
}

std::string OneOf(const std::vector<std::string>& names) {
  if (names.size() <= 1) return absl::StrJoin(names, "");
  return absl::StrCat(absl::StrJoin(names.begin(), names.end() - 1, ", "), " or ", names.back());
}

std::string ClosestWord(absl::string_view word, const std::vector<std::string>& candidates) {
  return Suggest(word, candidates);
}

absl::StatusOr<Rule> ParseRule(absl::string_view line, int rule_number) {
  return RuleParser(line, absl::StrCat("rule ", rule_number)).Parse();
}

absl::StatusOr<std::vector<Rule>> ParseRules(absl::string_view text) {
  std::vector<Rule> rules;
  std::vector<std::string> errors;
  size_t error_count = 0;
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    if (IsBlankOrComment(line)) continue;
    absl::StatusOr<Rule> rule = RuleParser(line, absl::StrCat("line ", line_number)).Parse();
    if (rule.ok()) {
      rules.push_back(*std::move(rule));
    } else if (++error_count <= kMaxFileErrors) {
      errors.emplace_back(rule.status().message());
    }
  }
  if (error_count > kMaxFileErrors) {
    errors.push_back(absl::StrFormat("... and %d more", error_count - kMaxFileErrors));
  }
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  return rules;
}

std::string DidYouMean(absl::string_view word, const std::vector<std::string>& candidates) {
  return Suggest(word, candidates);
}

absl::Status ValidateRule(const Rule& r) {
  auto invalid = [](absl::string_view message) {
    return absl::InvalidArgumentError(absl::StrCat("invalid rule: ", message));
  };
  std::string problem;
  switch (KindOf(r.action)) {
    case ActionKind::kDelay: {
      const auto& a = std::get<DelayAction>(r.action);
      problem = DurationProblem(a.delay);
      if (problem.empty()) problem = DurationProblem(a.jitter);
      if (problem.empty()) problem = JitterProblem(a);
      break;
    }
    case ActionKind::kDup: problem = DupProblem(std::get<DupAction>(r.action).copies); break;
    case ActionKind::kSet: {
      const auto& a = std::get<SetAction>(r.action);
      if (static_cast<int>(a.field) >= kFieldCount) return invalid("unknown field");
      problem = SetProblem(a.field, a.value);
      break;
    }
    case ActionKind::kAdd: {
      const auto& a = std::get<AddAction>(r.action);
      if (static_cast<int>(a.field) >= kFieldCount) return invalid("unknown field");
      problem = AddProblem(a.field, a.delta);
      break;
    }
    case ActionKind::kCorrupt: {
      const auto t = std::get<CorruptAction>(r.action).target;
      if (t != CorruptTarget::kPayload && t != CorruptTarget::kChecksum) {
        return invalid("unknown corrupt target");
      }
      break;
    }
    default: break;
  }
  if (!problem.empty()) return invalid(problem);
  if (r.hooks.empty()) return invalid("no hook; leave out on= for all four");
  const std::pair<Key, const std::optional<uint64_t>*> counts[] = {
      {Key::kConn, &r.conn},
      {Key::kNth, &r.nth},
      {Key::kEvery, &r.every},
      {Key::kCount, &r.count},
  };
  for (const auto& [key, value] : counts) {
    if (*value == uint64_t{0}) return invalid(ZeroProblem(key));
  }
  if (r.port == uint16_t{0}) return invalid(ZeroProblem(Key::kPort));
  if (r.state && static_cast<int>(*r.state) >= stack::kTcpStateCount) {
    return invalid("unknown state");
  }
  if (r.len) {
    if (r.len->op != LenMatch::Op::kEqual && r.len->op != LenMatch::Op::kLess &&
        r.len->op != LenMatch::Op::kGreater) {
      return invalid("unknown len comparison");
    }
    if (r.len->op == LenMatch::Op::kLess && r.len->value == 0) {
      return invalid("len<0 never matches: a payload is never shorter than 0");
    }
  }
  if (r.probability) {
    if (problem = ProbabilityProblem(*r.probability); !problem.empty()) return invalid(problem);
  }
  if (r.idle) {
    if (problem = DurationProblem(*r.idle); !problem.empty()) return invalid(problem);
  }
  if (std::optional<ComboProblem> p = FindComboProblem(r)) return invalid(p->message);
  return absl::OkStatus();
}

std::string DurationToString(Duration d) {
  if (d == absl::ZeroDuration()) return "0s";
  // mutate: equivalent < (zero returned above)
  if (d < absl::ZeroDuration() || d == absl::InfiniteDuration() ||
      d % absl::Microseconds(1) != absl::ZeroDuration()) {
    return absl::FormatDuration(d);
  }
  const int64_t us = absl::ToInt64Microseconds(d);
  auto in_unit = [us](int64_t per_unit, int digits, absl::string_view suffix) {
    std::string text = absl::StrCat(us / per_unit);
    if (const int64_t frac = us % per_unit; frac != 0) {
      std::string f = absl::StrFormat("%0*d", digits, frac);
      while (f.back() == '0') f.pop_back();
      absl::StrAppend(&text, ".", f);
    }
    return absl::StrCat(text, suffix);
  };
  if (us >= 1000000) return in_unit(1000000, 6, "s");
  if (us >= 1000) return in_unit(1000, 3, "ms");
  return absl::StrCat(us, "us");
}

std::string ToString(const Action& action) {
  const absl::string_view name = ActionName(KindOf(action));
  switch (KindOf(action)) {
    case ActionKind::kDelay: {
      const auto& a = std::get<DelayAction>(action);
      std::string text = absl::StrCat(name, " ", DurationToString(a.delay));
      if (a.jitter != absl::ZeroDuration()) absl::StrAppend(&text, "~", DurationToString(a.jitter));
      return text;
    }
    case ActionKind::kDup: return absl::StrCat(name, " ", std::get<DupAction>(action).copies);
    case ActionKind::kSet: {
      const auto& a = std::get<SetAction>(action);
      if (a.field == Field::kFlags) {
        return absl::StrCat(name, " flags=", FlagsText(TcpFlags(uint8_t(a.value))));
      }
      return absl::StrCat(name, " ", FieldName(a.field), "=", a.value);
    }
    case ActionKind::kAdd: {
      const auto& a = std::get<AddAction>(action);
      return absl::StrCat(name, " ", FieldName(a.field), "=", a.delta);
    }
    case ActionKind::kCorrupt: {
      const int target = static_cast<int>(std::get<CorruptAction>(action).target);
      return absl::StrCat(name, " ", kCorruptNames[target & 1]);
    }
    default: return std::string(name);
  }
}

std::string ToString(const Rule& r) {
  std::string text = ToString(r.action);
  auto add = [&text](Key key, absl::string_view op, const auto& value) {
    absl::StrAppend(&text, " ", kKeyNames[int(key)], op, value);
  };
  if (r.hooks != HookSet::All()) add(Key::kOn, "=", r.hooks.ToString());
  if (r.conn) add(Key::kConn, "=", *r.conn);
  if (r.port) add(Key::kPort, "=", *r.port);
  if (r.state) add(Key::kState, "=", StateName(*r.state));
  if (r.flags_exact) add(Key::kFlags, "=", FlagsText(*r.flags_exact));
  if (r.flags_has) add(Key::kHas, "=", FlagsText(*r.flags_has));
  if (r.len) {
    const absl::string_view op =
        r.len->op == LenMatch::Op::kLess ? "<" : (r.len->op == LenMatch::Op::kGreater ? ">" : "=");
    add(Key::kLen, op, r.len->value);
  }
  if (r.idle) add(Key::kIdle, ">", DurationToString(*r.idle));
  if (r.nth) add(Key::kNth, "=", *r.nth);
  if (r.every) add(Key::kEvery, "=", *r.every);
  if (r.after) add(Key::kAfter, "=", *r.after);
  if (r.count) add(Key::kCount, "=", *r.count);
  if (r.probability) add(Key::kP, "=", FormatProbability(*r.probability));
  return text;
}

}  // namespace wrench::proxy
