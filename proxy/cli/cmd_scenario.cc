// `wrench scenario list|show|check`: the embedded scenario library
// (proxy/fault/scenarios.h) on the command line.
#include <cstdio>
#include <string>
#include <vector>

#include "proxy/cli/cli.h"
#include "proxy/cli/commands.h"
#include "proxy/cli/scenario_check.h"
#include "proxy/fault/scenarios.h"

namespace wrench::proxy {

int RunScenario(int argc, char** argv) {
  std::vector<std::string> args =
      ParseFlags(argc, argv,
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
    for (const Scenario& s : Scenarios())
      std::printf("%-22s %s\n", s.name, ScenarioSummary(s).c_str());
    return 0;
  }
  if (args[0] == "show" && args.size() == 2) {
    const Scenario* s = FindScenario(args[1]);
    if (!s) {
      std::fprintf(stderr, "wrench scenario: no scenario \"%s\"; %s\n", args[1].c_str(),
                   ScenarioNames(args[1]).c_str());
      return 2;
    }
    std::printf("%s", s->text);
    return 0;
  }
  if (args[0] == "check")
    return RunScenarioCheck(std::vector<std::string>(args.begin() + 1, args.end()));
  std::fprintf(
      stderr,
      "wrench scenario: expected \"list\", \"show NAME\" or \"check [NAME...]\" (see --help)\n");
  return 2;
}

}  // namespace wrench::proxy
