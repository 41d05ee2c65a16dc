// The --expect, --expect-all-rules-fire and --summary-json flags of proxy, exec and
// serve: the expectations a run must meet (proxy/fault/expect.h), checked against its
// report (proxy/app/summary.h) at the end, and the exit status they lead to.
//
// Exit status (`wrench proxy`, `serve`, `exec`): kExitExpectationFailed (3) when an
// expectation failed and nothing else did; for `exec`, COMMAND's own non-zero status
// takes precedence (it is what a CI job already interprets), and the failed
// expectations are printed and written to the summary all the same.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proxy/app/summary.h"
#include "proxy/cli/cli.h"
#include "proxy/fault/expect.h"

namespace wrench::proxy {

// The --help lines of the --expect, --expect-all-rules-fire and --summary-json flags.
inline constexpr FlagHelp kVerdictFlags[3] = {
    {"expect",
     "--expect=EXPR       checked at the end of the run; repeatable. EXPR: `rule N hits>=1`,\n"
     "                      `conn N client=STATE` / `conn N server=STATE` (the final state of\n"
     "                      wrench's leg facing the client / the server; CLOSED once it closed),\n"
     "                      `conn N client-visited=STATE` (it was ever in STATE), `conn N "
     "errors==0`,\n"
     "                      `resets==0`, `connections>=3`, `refused`, `unreachable`, `bytes>=N`,\n"
     "                      `bytes-to-server`, `bytes-to-client`; OP: == = != >= <= > <. A failed\n"
     "                      expectation makes the exit status 3 (for exec: when COMMAND exited 0)"},
    {"expect_all_rules_fire", "--expect-all-rules-fire   expect `rule N hits>=1` for every rule"},
    {"summary_json",
     "--summary-json=FILE  write the run's summary as JSON on every exit: connections with their\n"
     "                      final leg states and errors, bytes, hits per rule, expectations"},
};

// The --expect, --expect-all-rules-fire and --summary-json flags, shared by proxy,
// exec and serve, and what a command does with them at its end.
class RunVerdict {
 public:
  // Parses the flags. `rule_count`: the rules the run starts with; an expectation
  // naming a rule beyond them is an error at start unless rules may be added later
  // (the control API: `rules_may_change`).
  static absl::StatusOr<RunVerdict> FromFlags(size_t rule_count, bool rules_may_change);

  bool empty() const { return expectations_.empty() && summary_path_.empty(); }
  const std::vector<Expectation>& expectations() const { return expectations_; }

  // Evaluates the expectations against `report` (null: wrench never ran), prints one
  // line each through `log`, writes the summary when asked, and returns the exit
  // status: `status` (the command's, or 0), or 3 when it is 0 and an expectation
  // failed. `outcome` carries the command's name, status and warnings.
  int Finish(const RunReport* report, RunOutcome outcome,
             const std::function<void(const std::string&)>& log) const;
  // A run that could not start (`why`): says so (ReportError), writes the summary
  // with that reason, and returns the exit status that tells a bad command line (2)
  // from a run that could not start (1).
  int NotStarted(const std::string& command, const absl::Status& why,
                 const std::function<void(const std::string&)>& log) const;

 private:
  std::vector<Expectation> expectations_;
  std::string summary_path_;
  bool all_rules_fire_ = false;
};

}  // namespace wrench::proxy
