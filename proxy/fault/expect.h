// Expectations: what a run must have shown for CI to call it a pass (`--expect` on
// proxy, exec and serve; the `# Expect:` lines of the scenario library).
//
// A fault-injection run that injects nothing goes green while proving nothing; an
// expectation such as `rule 1 hits>=1` turns that into a failure. The grammar:
//
//   EXPR    := SUBJECT OP VALUE          (spaces around OP are optional)
//   OP      := == | = | != | >= | <= | > | <
//   SUBJECT := connections | refused | unreachable | resets | bytes
//            | bytes-to-server | bytes-to-client                      (counts of the run)
//            | rule N hits                                            (decisions of rule N)
//            | conn N client | conn N server                          (the leg's final state)
//            | conn N client-visited | conn N server-visited          (a state it went through)
//            | conn N bytes-to-server | conn N bytes-to-client | conn N errors
//   and, in scenario headers only:
//            | client connect-s | client upload-s | client eof-after-data-s | client bytes
//            | client error | client state | client state-later | client state-at-data
//            | client eof
//            | server accepted
//
// Connections and rules are numbered from 1 as wrench numbers them (the log's "conn",
// the rule ids `wrench` prints at start). "client" and "server" name wrench's legs: the
// client leg is wrench's endpoint facing the program that connected, the server leg the
// one facing the server (a kernel socket with --upstream-via socket, whose states are
// SOCKET-OPEN, SOCKET-SERVER-CLOSED, SOCKET-WE-CLOSED, SOCKET-CLOSED-BOTH-WAYS,
// SOCKET-CLOSED, SOCKET-CONNECTING). A final state is the one at the end of the run,
// before wrench's own shutdown resets what is still open; a connection that closed
// before that keeps the state it closed in (CLOSED). States compare with = and !=
// only; `-visited=S` holds when the leg was ever in S, `-visited!=S` when never.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace wrench::proxy {

enum class ExpectOp { kEq, kNe, kGe, kLe, kGt, kLt };

// Where an expectation may appear: the command line, or a scenario's header.
enum class ExpectContext { kRun, kScenario };

struct Expectation {
  std::string text;                  // as written, trimmed
  std::vector<std::string> subject;  // {"rule", "1", "hits"}, {"resets"}, {"conn", "2", "client"}
  ExpectOp op = ExpectOp::kEq;
  bool numeric = true;  // a count or seconds; otherwise a word (a state, an errno name)
  double number = 0;
  std::string word;  // upper case for states, as written otherwise
};

// Parses one expression. Errors name the column (1-based) and, for a misspelt word,
// the word probably meant: `column 8: unknown field "hist" after "rule 1"; did you mean
// hits?`, followed by the text and a caret under the column.
absl::StatusOr<Expectation> ParseExpectation(absl::string_view text,
                                             ExpectContext context = ExpectContext::kRun);

// What a subject came to: a number, or words (one for a final state, every state
// visited for `-visited`); `shown` is how the result line prints it.
struct ExpectActual {
  std::optional<double> number;
  std::vector<std::string> words;
  std::string shown;
};
// Resolves a subject; an error (NotFound) says what is missing: "no connection 3
// (the run had 2)". An unresolved expectation fails.
using ExpectFacts = std::function<absl::StatusOr<ExpectActual>(const Expectation&)>;

struct ExpectResult {
  std::string text;
  bool pass = false;
  std::string actual;  // "3", "CLOSED", or why there is no value
};

ExpectResult Evaluate(const Expectation& e, const ExpectFacts& facts);
std::vector<ExpectResult> EvaluateAll(const std::vector<Expectation>& es, const ExpectFacts& facts);
// "expect rule 1 hits>=1: pass (3)" / "expect conn 1 client=TIME-WAIT: FAIL (CLOSED)".
std::string ToString(const ExpectResult& r);

// The exit status when COMMAND (exec) succeeded, or proxy/serve ended cleanly, but an
// expectation failed.
inline constexpr int kExitExpectationFailed = 3;

// Canonical state word: upper case, each run of other characters one '-'
// ("socket: server closed" -> "SOCKET-SERVER-CLOSED", "time_wait" -> "TIME-WAIT").
std::string StateWord(absl::string_view s);

}  // namespace wrench::proxy
