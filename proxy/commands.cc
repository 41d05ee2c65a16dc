// The subcommand table (see commands.h).
#include "proxy/commands.h"

namespace wrench::proxy {

const std::vector<Command>& Commands() {
  static const std::vector<Command> commands = {
      {"proxy", "relay real connections through a TUN device, with fault rules", RunProxy},
      {"simulate", "run a connection between two simulated endpoints and print its ladder",
       RunSimulate},
  };
  return commands;
}

}  // namespace wrench::proxy
