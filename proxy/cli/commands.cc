// The subcommand table (see commands.h).
#include "proxy/cli/commands.h"

namespace wrench::proxy {

const std::vector<Command>& Commands() {
  static const std::vector<Command> commands = {
      {"proxy", "relay real connections through a TUN device, with fault rules", RunProxy},
      {"serve", "serve the control API (wrench's and Toxiproxy's) with no mappings", RunServe},
      {"exec", "run a command in a namespace whose connections all go through wrench", RunExec},
      {"cleanup", "undo what killed wrench runs left on the host (sysctls, nftables tables)",
       RunCleanup},
      {"scenario", "list and show the teardown scenario library", RunScenario},
      {"explore", "search for the fault schedule that breaks a test command, and shrink it",
       RunExplore},
      {"simulate", "run a connection between two simulated endpoints and print its ladder",
       RunSimulate},
      {"ladder", "draw the connections of a --log capture as sequence diagrams (text, SVG, HTML)",
       RunLadder},
  };
  return commands;
}

}  // namespace wrench::proxy
