// The end-of-run verdict from the --expect, --expect-all-rules-fire and
// --summary-json flags (verdict.h).
#include "proxy/cli/verdict.h"

#include <cstdio>
#include <fstream>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

ABSL_FLAG(std::vector<std::string>, expect, {},
          "an expectation checked at the end of the run (repeatable)");
ABSL_FLAG(bool, expect_all_rules_fire, false, "expect every rule to fire at least once");
ABSL_FLAG(std::string, summary_json, "", "write the run's summary as JSON to this file");

namespace wrench::proxy {

absl::StatusOr<RunVerdict> RunVerdict::FromFlags(size_t rule_count, bool rules_may_change) {
  RunVerdict v;
  v.summary_path_ = absl::GetFlag(FLAGS_summary_json);
  v.all_rules_fire_ = absl::GetFlag(FLAGS_expect_all_rules_fire);
  for (const std::string& text : absl::GetFlag(FLAGS_expect)) {
    auto e = ParseExpectation(text);
    if (!e.ok())
      return absl::InvalidArgumentError(absl::StrCat("--expect: ", e.status().message()));
    uint64_t n = 0;
    if (!rules_may_change && e->subject[0] == "rule" && absl::SimpleAtoi(e->subject[1], &n) &&
        n > rule_count) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--expect \"", e->text, "\": there is no rule ", n, " (the run has ", rule_count,
          rule_count == 1 ? " rule" : " rules", ", numbered from 1 in the order given)"));
    }
    v.expectations_.push_back(std::move(*e));
  }
  if (v.all_rules_fire_ && rule_count == 0 && !rules_may_change) {
    return absl::InvalidArgumentError("--expect-all-rules-fire: the run has no rule");
  }
  if (!v.summary_path_.empty()) {
    // Fail at start, not after the run, when the file cannot be written.
    std::ofstream f(v.summary_path_, std::ios::app);
    if (!f)
      return absl::InvalidArgumentError(
          absl::StrCat("--summary-json ", v.summary_path_, ": cannot write the file"));
  }
  return v;
}

int RunVerdict::Finish(const RunReport* report, RunOutcome outcome,
                       const std::function<void(const std::string&)>& log) const {
  std::vector<Expectation> all = expectations_;
  if (all_rules_fire_ && report) {
    for (const RunReport::RuleHits& r : report->rules) {
      auto e = ParseExpectation(absl::StrCat("rule ", r.id, " hits>=1"));
      if (e.ok()) all.push_back(std::move(*e));
    }
  }
  bool failed = false;
  if (report) {
    outcome.results = EvaluateAll(all, FactsOf(*report));
  } else {
    for (const Expectation& e : all)
      outcome.results.push_back({e.text, false, "wrench did not run"});
  }
  for (const ExpectResult& r : outcome.results) {
    log(absl::StrCat("wrench: ", ToString(r)));
    failed = failed || !r.pass;
  }
  int status = outcome.command_status.value_or(0);
  if (!outcome.error.empty() && status == 0) status = 1;
  if (status == 0 && failed) status = kExitExpectationFailed;
  outcome.exit_status = status;
  if (!summary_path_.empty()) {
    if (auto st = WriteSummaryJson(summary_path_, report, outcome); !st.ok()) {
      log(absl::StrCat("wrench: ", st.message()));
      if (status == 0) status = 1;
    }
  }
  return status;
}

int RunVerdict::NotStarted(const std::string& command, const absl::Status& why,
                           const std::function<void(const std::string&)>& log) const {
  const int code = ReportError(command, why);
  Finish(nullptr, RunOutcome(command, std::nullopt, std::string(why.message())), log);
  return code;
}

}  // namespace wrench::proxy
