// `wrench explore`'s search, apart from running anything: the fault schedules it
// tries (the scenario library, then seeded random rule combinations), the shrinking
// of a failing schedule to a minimal one, and the report of what it found.
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "proxy/fault/rule.h"

namespace wrench::proxy {

// A fault schedule: the rules of one run, and where they came from.
struct Schedule {
  std::string origin;  // "scenario fin-lost" or "random 3"
  std::vector<Rule> rules;
};

// The schedules to try, in order: every scenario of the library (sorted by name),
// then random combinations of one to three rules drawn from a generator seeded with
// `seed`. Random rules act only where `wrench exec` lets them fire: any action on the
// client's leg, delay and rst on the server's.
class ScheduleSource {
 public:
  explicit ScheduleSource(uint64_t seed) : rng_(seed) {}
  Schedule Next();

 private:
  Rule RandomRule();
  uint64_t Below(uint64_t n) { return rng_() % n; }

  std::mt19937_64 rng_;
  size_t next_scenario_ = 0;
  int next_random_ = 1;
};

// The one-step simplifications of a failing schedule, the biggest step first: one
// rule fewer; a rule without p=, every= or after=; a rule limited to the first
// connection (conn=1) or to firing once (count=1); a delay without jitter or half as
// long (not below 10 ms). Every one is a valid rule set and injects less than `rules`.
std::vector<std::vector<Rule>> Simplifications(const std::vector<Rule>& rules);

// The result of one run of the test command.
struct TestRun {
  bool failed = false;     // exit status not 0, or killed at the timeout
  bool timed_out = false;  // killed at the timeout
  int exit_status = 0;     // of the test command (128+N for a signal)
  double seconds = 0;
};
using RunFn = std::function<TestRun(const std::vector<Rule>&)>;

// Greedy shrinking: takes the first simplification that still fails, again and again,
// until none does or `max_runs` runs were spent. Returns the smallest failing schedule.
std::vector<Rule> Shrink(const std::vector<Rule>& failing, const RunFn& run, int max_runs,
                         int* runs_spent = nullptr);

// A rule file: one canonical rule a line.
std::string RulesFileText(const std::vector<Rule>& rules);
// `s` quoted for a POSIX shell when it needs to be.
std::string ShellQuote(const std::string& s);

// One minimal failing schedule.
struct Finding {
  std::string dir;     // relative to the output directory: "finding-1"
  std::string origin;  // the schedule it was shrunk from
  std::vector<Rule> original, minimal;
  uint64_t seed = 0;
  TestRun outcome;  // of the minimal schedule's first re-run
  int reruns = 0, rerun_failures = 0;
  std::string replay;  // the exact command that replays it
  bool deterministic() const { return reruns > 0 && rerun_failures == reruns; }
};

struct ExploreSummary {
  std::vector<std::string> command;
  uint64_t seed = 0;
  std::string budget;
  int runs = 0;          // schedules tried
  int shrink_runs = 0;   // runs spent shrinking and re-running
  double baseline_s = 0;
  double timeout_s = 0;
  double elapsed_s = 0;
  std::vector<Finding> findings;
};

// The JSON summary (one object) and the one-page HTML report.
std::string ExploreJson(const ExploreSummary& s);
std::string ExploreReportHtml(const ExploreSummary& s);

}  // namespace wrench::proxy
