// Command-line parsing shared by the subcommands: abseil flags, with each
// subcommand accepting only its own flags and printing its own --help.
//
// The parser is wrench's own (abseil's ParseCommandLine prints its errors in its own
// words and exits 1); it sets abseil flags through their reflection interface, so a
// flag is still defined with ABSL_FLAG and read with absl::GetFlag. Forms accepted:
// --name=VALUE, --name VALUE, -name=VALUE; a boolean as --name, --name=false or
// --noname; dashes and underscores alike inside a name (--upstream-via,
// --upstream_via). A flag of type Repeated (or std::vector<std::string>) may be
// given any number of times and keeps every value; any other flag given twice with
// different values is an error.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace wrench::proxy {

// Exit statuses, the same for every command (exec passes on its COMMAND's own).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // a run-time error: a file, a privilege, the network
inline constexpr int kExitUsage = 2;    // the command line is wrong: an option, a value, a rule

// The value of a flag that may be given any number of times (--rule, --map): one
// string per occurrence, in order, each taken whole: a value is never split on
// commas. ParseFlags collects the occurrences and hands abseil their join by NUL,
// a character no argument can contain.
struct Repeated : std::vector<std::string> {
  using std::vector<std::string>::vector;
};
bool AbslParseFlag(absl::string_view text, Repeated* out, std::string* error);
std::string AbslUnparseFlag(const Repeated& values);

struct FlagHelp {
  const char* name;  // without dashes
  const char* text;  // "--name=VALUE  what it does"; --help appends the default when
                     // the text does not mention one
};

struct ParseOptions {
  // Stop at the first argument that is not an option, as sudo, strace and unshare
  // do: the rest (its options included) belongs to the command that follows.
  bool stop_at_first_argument = false;
  // The "exit status" part of --help; null: the common one (0, 1, 2).
  const char* exit_status = nullptr;
};

struct ParsedArgs {
  bool help = false;                   // --help, -h: print the help and exit 0
  std::vector<std::string> arguments;  // the positional ones, "--" not included
};

// Sets the abseil flags named in `flags` from argv (argv[0] is the subcommand);
// every flag of `flags` that is not given is reset to its default first. An error
// (InvalidArgument) says which argument is wrong and why, with a suggestion for a
// misspelled option.
absl::StatusOr<ParsedArgs> ParseArgs(int argc, char* const* argv, absl::Span<const FlagHelp> flags,
                                     const ParseOptions& options = {});

// The text --help prints: `usage`, then each flag's text with its default, then
// the exit statuses.
std::string HelpText(const char* usage, absl::Span<const FlagHelp> flags,
                     const ParseOptions& options = {});

// ParseArgs for a command's main: prints the help and exits 0 on --help; prints the
// error ("wrench CMD: ...") and exits 2 on a bad command line. Returns the
// positional arguments.
std::vector<std::string> ParseFlags(int argc, char** argv, const char* usage,
                                    absl::Span<const FlagHelp> flags,
                                    const ParseOptions& options = {});

// Prints "wrench CMD: message" on stderr and returns the exit status for it: 2 for
// a bad command line (InvalidArgument, OutOfRange), 1 for anything else.
int ReportError(absl::string_view command, const absl::Status& status);

// For a command that takes no arguments: false, after saying so for the first of
// `positional` (then the exit status is kExitUsage).
bool NoArguments(absl::string_view command, const std::vector<std::string>& positional);

}  // namespace wrench::proxy
