// The `wrench` command: dispatches to a subcommand. Each subcommand lives in its
// own file (proxy/cmd_*.cc) and registers itself in the table below.
#include <cstdio>
#include <cstring>
#include <string>

#include "proxy/commands.h"

namespace {

void PrintUsage(FILE* out) {
  std::fprintf(out,
               "wrench — a TCP fault-injection and fuzzing proxy\n"
               "\n"
               "usage: wrench COMMAND [OPTIONS]\n"
               "\n"
               "commands:\n");
  for (const wrench::proxy::Command& c : wrench::proxy::Commands()) {
    std::fprintf(out, "  %-10s %s\n", c.name, c.summary);
  }
  std::fprintf(out, "\n'wrench COMMAND --help' describes a command's options.\n");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0 ||
      std::strcmp(argv[1], "help") == 0) {
    PrintUsage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (std::strcmp(argv[1], "--version") == 0) {
    std::printf("wrench %s\n", wrench::proxy::kVersion);
    return 0;
  }
  for (const wrench::proxy::Command& c : wrench::proxy::Commands()) {
    if (argv[1] == std::string(c.name)) return c.run(argc - 1, argv + 1);
  }
  std::fprintf(stderr, "wrench: unknown command \"%s\"\n\n", argv[1]);
  PrintUsage(stderr);
  return 2;
}
