// The expectation grammar and its evaluation (expect.h).
#include "proxy/fault/expect.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "proxy/fault/rule.h"
#include "stack/tcp_state.h"

namespace wrench::proxy {

namespace {

enum class Kind { kNumber, kLegState, kClientState, kWord, kYesNo };

struct Field {
  const char* name;
  Kind kind;
  bool scenario_only = false;
};

// The counts of the whole run.
constexpr Field kRunFields[] = {
    {"connections", Kind::kNumber},     {"refused", Kind::kNumber},
    {"unreachable", Kind::kNumber},     {"resets", Kind::kNumber},
    {"bytes", Kind::kNumber},           {"bytes-to-server", Kind::kNumber},
    {"bytes-to-client", Kind::kNumber},
};
constexpr Field kConnFields[] = {
    {"client", Kind::kLegState},          {"server", Kind::kLegState},
    {"client-visited", Kind::kLegState},  {"server-visited", Kind::kLegState},
    {"bytes-to-server", Kind::kNumber},   {"bytes-to-client", Kind::kNumber},
    {"errors", Kind::kNumber},
};
constexpr Field kClientFields[] = {
    {"connect-s", Kind::kNumber},
    {"upload-s", Kind::kNumber},
    {"eof-after-data-s", Kind::kNumber},
    {"bytes", Kind::kNumber},
    {"error", Kind::kWord},
    {"state", Kind::kClientState},
    {"state-later", Kind::kClientState},
    {"state-at-data", Kind::kClientState},
    {"eof", Kind::kYesNo},
};
constexpr Field kServerFields[] = {{"accepted", Kind::kNumber}};

// The words a leg's state may be besides the RFC's: a socket leg's, and a
// connection whose client leg has not been created yet.
constexpr const char* kExtraLegStates[] = {"SYN-SEEN",           "NONE",
                                           "SOCKET-CONNECTING",  "SOCKET-OPEN",
                                           "SOCKET-SERVER-CLOSED", "SOCKET-WE-CLOSED",
                                           "SOCKET-CLOSED-BOTH-WAYS", "SOCKET-CLOSED"};

struct Word {
  std::string text;
  int column;  // 1-based
};

template <size_t N>
std::vector<std::string> NamesOf(const Field (&fields)[N], ExpectContext ctx) {
  std::vector<std::string> out;
  for (const Field& f : fields) {
    if (!f.scenario_only || ctx == ExpectContext::kScenario) out.emplace_back(f.name);
  }
  return out;
}

template <size_t N>
const Field* FindField(const Field (&fields)[N], absl::string_view name) {
  for (const Field& f : fields) {
    if (absl::EqualsIgnoreCase(f.name, name)) return &f;
  }
  return nullptr;
}

std::vector<std::string> StateWords(bool leg) {
  std::vector<std::string> out;
  for (int i = 0; i < stack::kTcpStateCount; ++i)
    out.emplace_back(stack::StateName(static_cast<stack::TcpState>(i)));
  if (leg) {
    for (const char* w : kExtraLegStates) out.emplace_back(w);
  }
  return out;
}

class Parser {
 public:
  Parser(absl::string_view text, ExpectContext ctx) : text_(text), ctx_(ctx) {}

  absl::StatusOr<Expectation> Parse() {
    Expectation e;
    e.text = std::string(absl::StripAsciiWhitespace(text_));
    // The subject ends where the operator starts.
    size_t op_at = text_.find_first_of("=!<>");
    std::vector<Word> words =
        Split(text_.substr(0, op_at == absl::string_view::npos ? text_.size() : op_at), 0);
    if (words.empty()) {
      return Error(1, absl::StrCat("expected what to check (", OneOf(TopWords()),
                                   ") before the comparison"));
    }
    if (op_at == absl::string_view::npos) {
      return Error(static_cast<int>(text_.size()) + 1,
                   absl::StrCat("expected a comparison (==, !=, >=, <=, > or <) after \"",
                                JoinWords(words, words.size()), "\""));
    }
    Kind kind;
    if (auto st = Subject(words, e, kind); !st.ok()) return st;
    // The operator.
    absl::string_view rest = text_.substr(op_at);
    int op_column = static_cast<int>(op_at) + 1;
    struct OpText {
      const char* text;
      ExpectOp op;
    };
    static constexpr OpText kOps[] = {
        {"==", ExpectOp::kEq}, {"!=", ExpectOp::kNe}, {">=", ExpectOp::kGe}, {"<=", ExpectOp::kLe},
        {"=", ExpectOp::kEq},  {">", ExpectOp::kGt},  {"<", ExpectOp::kLt}};
    size_t op_len = 0;
    for (const OpText& o : kOps) {
      if (absl::StartsWith(rest, o.text)) {
        e.op = o.op;
        op_len = std::strlen(o.text);
        break;
      }
    }
    if (op_len == 0) {
      return Error(op_column,
                   "expected a comparison: ==, !=, >=, <=, > or < (\"!\" alone is none)");
    }
    std::vector<Word> value = Split(rest.substr(op_len), op_at + op_len);
    if (value.empty()) {
      return Error(static_cast<int>(text_.size()) + 1, "expected a value after the comparison");
    }
    if (value.size() > 1) {
      return Error(value[1].column,
                   absl::StrCat("unexpected \"", value[1].text, "\" after the value"));
    }
    const Word& v = value[0];
    if (v.text.find_first_of("=!<>") != std::string::npos) {
      return Error(v.column,
                   absl::StrCat("\"", v.text, "\" is not a value; one comparison per expectation"));
    }
    e.numeric = kind == Kind::kNumber;
    if (e.numeric) {
      if (!absl::SimpleAtod(v.text, &e.number) || !std::isfinite(e.number) || e.number < 0) {
        return Error(v.column, absl::StrCat("expected a number, got \"", v.text, "\""));
      }
      return e;
    }
    if (e.op != ExpectOp::kEq && e.op != ExpectOp::kNe) {
      return Error(op_column, absl::StrCat(JoinWords(words, words.size()),
                                           " is a word: it compares with = or != only"));
    }
    if (kind == Kind::kLegState || kind == Kind::kClientState) {
      std::vector<std::string> states = StateWords(kind == Kind::kLegState);
      std::string w = StateWord(v.text);
      if (std::find(states.begin(), states.end(), w) == states.end()) {
        std::string guess = ClosestWord(v.text, states);
        return Error(v.column,
                     absl::StrCat("unknown state \"", v.text, "\"",
                                  guess.empty() ? absl::StrCat("; expected ", OneOf(states))
                                                : absl::StrCat("; did you mean ", guess, "?")));
      }
      e.word = w;
    } else if (kind == Kind::kYesNo) {
      std::string w = absl::AsciiStrToLower(v.text);
      if (w != "yes" && w != "no")
        return Error(v.column, absl::StrCat("expected yes or no, got \"", v.text, "\""));
      e.word = w;
    } else {
      e.word = v.text;
    }
    return e;
  }

 private:
  std::vector<std::string> TopWords() const {
    std::vector<std::string> out = NamesOf(kRunFields, ctx_);
    out.insert(out.begin(), {"rule", "conn"});
    if (ctx_ == ExpectContext::kScenario) out.insert(out.end(), {"client", "server"});
    return out;
  }

  static std::vector<Word> Split(absl::string_view s, size_t offset) {
    std::vector<Word> out;
    size_t i = 0;
    while (i < s.size()) {
      while (i < s.size() && absl::ascii_isspace(static_cast<unsigned char>(s[i]))) ++i;
      size_t start = i;
      while (i < s.size() && !absl::ascii_isspace(static_cast<unsigned char>(s[i]))) ++i;
      if (i > start)
        out.push_back(
            {std::string(s.substr(start, i - start)), static_cast<int>(offset + start) + 1});
    }
    return out;
  }

  static std::string JoinWords(const std::vector<Word>& w, size_t n) {
    std::vector<std::string> t;
    for (size_t i = 0; i < n && i < w.size(); ++i) t.push_back(w[i].text);
    return absl::StrJoin(t, " ");
  }

  absl::Status Error(int column, const std::string& message) const {
    return absl::InvalidArgumentError(
        absl::StrCat("column ", column, ": ", message, "\n  ", text_, "\n  ",
                     std::string(static_cast<size_t>(column - 1), ' '), "^"));
  }

  absl::Status Unknown(const Word& w, absl::string_view what,
                       const std::vector<std::string>& names) const {
    std::string guess = ClosestWord(w.text, names);
    return Error(w.column,
                 absl::StrCat("unknown ", what, " \"", w.text, "\"",
                              guess.empty() ? absl::StrCat("; expected ", OneOf(names))
                                            : absl::StrCat("; did you mean ", guess, "?")));
  }

  // A connection or rule number: 1, 2, ...
  absl::Status Number(const std::vector<Word>& words, size_t i, const char* what) const {
    if (i >= words.size()) {
      return Error(static_cast<int>(words.back().column + words.back().text.size()) + 1,
                   absl::StrCat("expected a ", what, " number after \"", words[i - 1].text,
                                "\" (1, 2, ...)"));
    }
    uint64_t n = 0;
    if (!absl::SimpleAtoi(words[i].text, &n) || n == 0) {
      return Error(words[i].column, absl::StrCat("expected a ", what, " number (1, 2, ...), got \"",
                                                 words[i].text, "\""));
    }
    return absl::OkStatus();
  }

  template <size_t N>
  absl::Status Field2(const std::vector<Word>& words, size_t i, const Field (&fields)[N],
                      Expectation& e, Kind& kind) const {
    std::vector<std::string> names = NamesOf(fields, ctx_);
    std::string after = JoinWords(words, i);
    if (i >= words.size()) {
      return Error(static_cast<int>(words.back().column + words.back().text.size()) + 1,
                   absl::StrCat("expected what of \"", after, "\" to check: ", OneOf(names)));
    }
    const Field* f = FindField(fields, words[i].text);
    if (!f || (f->scenario_only && ctx_ != ExpectContext::kScenario)) {
      std::string guess = ClosestWord(words[i].text, names);
      return Error(words[i].column,
                   absl::StrCat("\"", words[i].text, "\" is not a field of \"", after, "\"",
                                guess.empty() ? absl::StrCat("; expected ", OneOf(names))
                                              : absl::StrCat("; did you mean ", guess, "?")));
    }
    if (i + 1 < words.size()) {
      return Error(words[i + 1].column,
                   absl::StrCat("unexpected \"", words[i + 1].text, "\" after \"",
                                JoinWords(words, i + 1), "\"; expected a comparison"));
    }
    e.subject.emplace_back(f->name);
    kind = f->kind;
    return absl::OkStatus();
  }

  absl::Status Subject(const std::vector<Word>& words, Expectation& e, Kind& kind) const {
    const Word& first = words[0];
    std::string head = absl::AsciiStrToLower(first.text);
    if (head == "rule" || head == "conn" ||
        (ctx_ == ExpectContext::kScenario && (head == "client" || head == "server"))) {
      e.subject.push_back(head);
      if (head == "client") return Field2(words, 1, kClientFields, e, kind);
      if (head == "server") return Field2(words, 1, kServerFields, e, kind);
      if (auto st = Number(words, 1, head == "rule" ? "rule" : "connection"); !st.ok()) return st;
      e.subject.push_back(words[1].text);
      if (head == "rule") {
        static constexpr Field kRuleFields[] = {{"hits", Kind::kNumber}};
        return Field2(words, 2, kRuleFields, e, kind);
      }
      return Field2(words, 2, kConnFields, e, kind);
    }
    const Field* f = FindField(kRunFields, first.text);
    if (!f) return Unknown(first, "subject", TopWords());
    if (words.size() > 1) {
      return Error(words[1].column, absl::StrCat("unexpected \"", words[1].text, "\" after \"",
                                                 first.text, "\"; expected a comparison"));
    }
    e.subject.emplace_back(f->name);
    kind = f->kind;
    return absl::OkStatus();
  }

  absl::string_view text_;
  ExpectContext ctx_;
};

std::string FormatNumber(double d) {
  if (d == std::floor(d) && std::fabs(d) < 1e15) return absl::StrCat(static_cast<int64_t>(d));
  return absl::StrFormat("%.3f", d);
}

}  // namespace

std::string StateWord(absl::string_view s) {
  std::string out;
  bool dash = false;
  for (char c : s) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(c))) {
      if (dash && !out.empty()) out.push_back('-');
      dash = false;
      out.push_back(absl::ascii_toupper(static_cast<unsigned char>(c)));
    } else {
      dash = true;
    }
  }
  return out;
}

absl::StatusOr<Expectation> ParseExpectation(absl::string_view text, ExpectContext context) {
  return Parser(text, context).Parse();
}

ExpectResult Evaluate(const Expectation& e, const ExpectFacts& facts) {
  ExpectResult r;
  r.text = e.text;
  absl::StatusOr<ExpectActual> a = facts(e);
  if (!a.ok()) {
    r.pass = false;
    r.actual = std::string(a.status().message());
    return r;
  }
  if (e.numeric) {
    if (!a->number) {
      r.actual = a->shown.empty() ? "no value" : a->shown;
      return r;
    }
    double x = *a->number;
    switch (e.op) {
      case ExpectOp::kEq: r.pass = x == e.number; break;
      case ExpectOp::kNe: r.pass = x != e.number; break;
      case ExpectOp::kGe: r.pass = x >= e.number; break;
      case ExpectOp::kLe: r.pass = x <= e.number; break;
      case ExpectOp::kGt: r.pass = x > e.number; break;
      case ExpectOp::kLt: r.pass = x < e.number; break;
    }
    r.actual = a->shown.empty() ? FormatNumber(x) : a->shown;
    return r;
  }
  bool found = false;
  for (const std::string& w : a->words) {
    if (absl::EqualsIgnoreCase(w, e.word)) found = true;
  }
  r.pass = e.op == ExpectOp::kEq ? found : !found;
  r.actual = !a->shown.empty()  ? a->shown
             : a->words.empty() ? "none"
                                : absl::StrJoin(a->words, ", ");
  return r;
}

std::vector<ExpectResult> EvaluateAll(const std::vector<Expectation>& es,
                                      const ExpectFacts& facts) {
  std::vector<ExpectResult> out;
  out.reserve(es.size());
  for (const Expectation& e : es) out.push_back(Evaluate(e, facts));
  return out;
}

std::string ToString(const ExpectResult& r) {
  return absl::StrCat("expect ", r.text, ": ", r.pass ? "pass" : "FAIL", " (", r.actual, ")");
}

}  // namespace wrench::proxy
