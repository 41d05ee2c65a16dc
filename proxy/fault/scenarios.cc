// Lookup in the embedded scenario library (scenarios.h).
#include "proxy/fault/scenarios.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace wrench::proxy {

// Names are matched case-insensitively (SYN-LOST is syn-lost).
const Scenario* FindScenario(absl::string_view name) {
  for (const Scenario& s : Scenarios()) {
    if (absl::EqualsIgnoreCase(name, s.name)) return &s;
  }
  return nullptr;
}

// "did you mean syn-lost?" for a near miss, else the list of names.
std::string ScenarioNames(absl::string_view wanted) {
  std::vector<std::string> names;
  for (const Scenario& s : Scenarios()) names.push_back(s.name);
  if (std::string guess = DidYouMean(wanted, names); !guess.empty())
    return absl::StrCat("did you mean ", guess, "?");
  return absl::StrCat("the scenarios are: ", absl::StrJoin(names, ", "));
}

absl::StatusOr<std::vector<Rule>> ScenarioRules(absl::string_view name) {
  const Scenario* s = FindScenario(name);
  if (!s) {
    return absl::NotFoundError(absl::StrCat("no scenario \"", name, "\"; ", ScenarioNames(name)));
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

}  // namespace wrench::proxy
