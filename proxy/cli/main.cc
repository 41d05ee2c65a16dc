// The `wrench` command: dispatches to a subcommand. Each subcommand lives in its
// own file (proxy/cli/cmd_*.cc) and registers itself in the table below.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "proxy/app/version.h"
#include "proxy/cli/cli.h"
#include "proxy/cli/commands.h"
#include "proxy/fault/rule.h"

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
  std::fprintf(out, "  %-10s %s\n  %-10s %s\n", "help",
               "describe a command's options (wrench help COMMAND)", "version",
               "print wrench's version");
  std::fprintf(out,
               "\n'wrench COMMAND --help' describes a command's options.\n"
               "exit status: 0 done; 1 a run-time error; 2 a bad command line (wrench exec: its\n"
               "COMMAND's own status)\n");
}

const wrench::proxy::Command* FindCommand(const std::string& name) {
  for (const wrench::proxy::Command& c : wrench::proxy::Commands()) {
    if (name == c.name) return &c;
  }
  return nullptr;
}

int UnknownCommand(const std::string& name) {
  std::vector<std::string> names;
  for (const wrench::proxy::Command& c : wrench::proxy::Commands()) names.emplace_back(c.name);
  std::string guess = wrench::proxy::DidYouMean(name, names);
  std::fprintf(stderr, "wrench: unknown command \"%s\"%s\n\n", name.c_str(),
               guess.empty() ? "" : ("; did you mean " + guess + "?").c_str());
  PrintUsage(stderr);
  return wrench::proxy::kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  using wrench::proxy::kExitOk;
  using wrench::proxy::kExitUsage;
  if (argc < 2) {
    PrintUsage(stderr);
    return kExitUsage;
  }
  const std::string first = argv[1];
  if (first == "--help" || first == "-h") {
    PrintUsage(stdout);
    return kExitOk;
  }
  if (first == "help") {
    if (argc == 2 || first == argv[2] || std::string(argv[2]) == "version") {
      PrintUsage(stdout);
      return kExitOk;
    }
    // `wrench help CMD` is `wrench CMD --help`.
    const wrench::proxy::Command* c = FindCommand(argv[2]);
    if (c == nullptr) return UnknownCommand(argv[2]);
    char help[] = "--help";
    char* args[] = {argv[2], help, nullptr};
    return c->run(2, args);
  }
  if (first == "--version" || first == "version") {
    std::printf("wrench %s\n", wrench::proxy::kVersion);
    return kExitOk;
  }
  if (const wrench::proxy::Command* c = FindCommand(first)) return c->run(argc - 1, argv + 1);
  return UnknownCommand(first);
}
