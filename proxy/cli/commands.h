// The table of `wrench` subcommands. A subcommand is a function taking its own
// argv (argv[0] is the subcommand's name) and returning the exit status.
#pragma once

#include <vector>

namespace wrench::proxy {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(int argc, char** argv);
};

const std::vector<Command>& Commands();

int RunSimulate(int argc, char** argv);
int RunProxy(int argc, char** argv);
int RunServe(int argc, char** argv);
int RunLadder(int argc, char** argv);
int RunExec(int argc, char** argv);
int RunScenario(int argc, char** argv);
int RunCleanup(int argc, char** argv);
int RunExplore(int argc, char** argv);

}  // namespace wrench::proxy
