// Command-line parsing shared by the subcommands: abseil flags, with each
// subcommand accepting only its own flags and printing its own --help.
#pragma once

#include <string>
#include <vector>

#include "absl/types/span.h"

namespace wrench::proxy {

struct FlagHelp {
  const char* name;  // without dashes
  const char* text;  // "--name=VALUE  what it does"
};

// Parses argv (argv[0] is the subcommand) with absl::ParseCommandLine after
// checking that only `flags` are used. Prints `usage` and the flag texts on
// --help and exits 0; on a bad flag, prints why and exits 2. Returns positional
// arguments (everything after "--" included, without the "--").
std::vector<std::string> ParseFlags(int argc, char** argv, const char* usage,
                                    absl::Span<const FlagHelp> flags);

}  // namespace wrench::proxy
