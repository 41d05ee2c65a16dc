// The teardown scenario library: proxy/fault/scenarios/*.rules, embedded in the binary. Each
// file is a rule file whose leading comments say the bug it reproduces, what client
// and server will see, and the command to run it.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "proxy/fault/rule.h"

namespace wrench::proxy {

struct Scenario {
  const char* name;
  const char* text;  // the whole file
};

// Every scenario, sorted by name (generated from proxy/fault/scenarios/*.rules).
absl::Span<const Scenario> Scenarios();
// The scenario named `name`, matched case-insensitively (SYN-LOST is syn-lost); null
// when there is none.
const Scenario* FindScenario(absl::string_view name);
// "did you mean syn-lost?" for a near miss of `wanted`, else the list of names.
std::string ScenarioNames(absl::string_view wanted = {});
// The scenario's rules; NotFound with the list of names when there is none.
absl::StatusOr<std::vector<Rule>> ScenarioRules(absl::string_view name);
// The first comment line of the scenario: what it reproduces.
std::string ScenarioSummary(const Scenario& s);

}  // namespace wrench::proxy
