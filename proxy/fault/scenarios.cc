// Lookup and the `wrench scenario` command over the embedded library (scenarios.h).
#include "proxy/fault/scenarios.h"

#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "proxy/cli/cli.h"
#include "proxy/cli/commands.h"
#include "proxy/cli/scenario_check.h"

namespace wrench::proxy {

namespace {
// Names are matched case-insensitively (SYN-LOST is syn-lost).
const Scenario* Find(absl::string_view name) {
  for (const Scenario& s : Scenarios()) {
    if (absl::EqualsIgnoreCase(name, s.name)) return &s;
  }
  return nullptr;
}

// "did you mean syn-lost?" for a near miss, else the list of names.
std::string Names(absl::string_view wanted = {}) {
  std::vector<std::string> names;
  for (const Scenario& s : Scenarios()) names.push_back(s.name);
  if (std::string guess = DidYouMean(wanted, names); !guess.empty()) return absl::StrCat("did you mean ", guess, "?");
  return absl::StrCat("the scenarios are: ", absl::StrJoin(names, ", "));
}
}  // namespace

absl::StatusOr<std::vector<Rule>> ScenarioRules(absl::string_view name) {
  const Scenario* s = Find(name);
  if (!s) {
    return absl::NotFoundError(absl::StrCat("no scenario \"", name, "\"; ", Names(name)));
  }
  auto rules = ParseRules(s->text);
  if (!rules.ok()) {
    return absl::InternalError(absl::StrCat("scenario ", name, ": ", rules.status().message()));
  }
  return rules;
}

std::string ScenarioSummary(const Scenario& s) {
  for (absl::string_view line : absl::StrSplit(s.text, '\n')) {
    if (absl::ConsumePrefix(&line, "#")) {
      line = absl::StripAsciiWhitespace(line);
      // "name: what it reproduces" -> "what it reproduces"
      if (absl::ConsumePrefix(&line, s.name)) absl::ConsumePrefix(&line, ":");
      return std::string(absl::StripAsciiWhitespace(line));
    }
  }
  return "";
}

int RunScenario(int argc, char** argv) {
  std::vector<std::string> args = ParseFlags(argc, argv,
                                             "usage: wrench scenario list\n"
                                             "       wrench scenario show NAME\n"
                                             "       wrench scenario check [NAME...]\n\n"
                                             "The teardown scenario library. Run one with\n"
                                             "  wrench exec --scenario NAME -- COMMAND...\n"
                                             "`check` runs each scenario (all when none is named) against a built-in\n"
                                             "client and server through wrench's TUN, in a network namespace of its own,\n"
                                             "and checks the symptoms its header promises (# Check:, # Expect: lines).\n"
                                             "Exit status: 0 when every check passes, 3 when one fails.",
                                             {});
  if (args.empty() || args[0] == "list") {
    for (const Scenario& s : Scenarios()) std::printf("%-22s %s\n", s.name, ScenarioSummary(s).c_str());
    return 0;
  }
  if (args[0] == "show" && args.size() == 2) {
    const Scenario* s = Find(args[1]);
    if (!s) {
      std::fprintf(stderr, "wrench scenario: no scenario \"%s\"; %s\n", args[1].c_str(), Names(args[1]).c_str());
      return 2;
    }
    std::printf("%s", s->text);
    return 0;
  }
  if (args[0] == "check") return RunScenarioCheck(std::vector<std::string>(args.begin() + 1, args.end()));
  std::fprintf(stderr, "wrench scenario: expected \"list\", \"show NAME\" or \"check [NAME...]\" (see --help)\n");
  return 2;
}

}  // namespace wrench::proxy
