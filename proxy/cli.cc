// See cli.h.
#include "proxy/cli.h"

#include <cstdio>
#include <algorithm>
#include <cstdlib>

#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace wrench::proxy {

std::vector<std::string> ParseFlags(int argc, char** argv, const char* usage,
                                    absl::Span<const FlagHelp> flags) {
  auto print_help = [&](FILE* out) {
    std::fprintf(out, "%s\n", usage);
    if (!flags.empty()) std::fprintf(out, "\noptions:\n");
    for (const FlagHelp& f : flags) std::fprintf(out, "  %s\n", f.text);
  };
  // Flag names are written with dashes (--upstream-via); abseil's are identifiers
  // (upstream_via). Both spellings are accepted.
  std::vector<std::string> storage(argv, argv + argc);
  for (int i = 1; i < argc; ++i) {
    std::string& a = storage[i];
    if (a == "--") break;
    if (a.size() > 2 && a[0] == '-') {
      size_t start = a[1] == '-' ? 2 : 1;
      size_t end = std::min(a.find('='), a.size());
      for (size_t k = start; k < end; ++k) {
        if (a[k] == '-') a[k] = '_';
      }
    }
  }
  std::vector<char*> rewritten;
  for (std::string& a : storage) rewritten.push_back(a.data());
  argv = rewritten.data();
  for (int i = 1; i < argc; ++i) {
    absl::string_view a = argv[i];
    if (a == "--") break;
    if (a == "--help" || a == "-h" || a == "-help") {
      print_help(stdout);
      std::exit(0);
    }
    if (!absl::StartsWith(a, "-")) continue;
    a.remove_prefix(a.size() > 1 && a[1] == '-' ? 2 : 1);
    absl::string_view key = a.substr(0, a.find('='));
    auto is_flag = [&](absl::string_view n) {
      for (const FlagHelp& f : flags) {
        if (n == f.name) return true;
      }
      return false;
    };
    // --noNAME turns a boolean off.
    bool known = is_flag(key) || (absl::StartsWith(key, "no") && is_flag(key.substr(2)));
    if (!known) {
      std::fprintf(stderr, "wrench %s: unknown option \"%s\"\n\n", argv[0], argv[i]);
      print_help(stderr);
      std::exit(2);
    }
  }
  absl::SetProgramUsageMessage(usage);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  std::vector<std::string> positional;
  for (size_t i = 1; i < args.size(); ++i) positional.emplace_back(args[i]);
  return positional;
}

}  // namespace wrench::proxy
