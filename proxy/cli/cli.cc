// See cli.h.
#include "proxy/cli/cli.h"

#include <cstdio>
#include <cstdlib>
#include <map>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "proxy/fault/rule.h"

namespace wrench::proxy {

// Each value is followed by a NUL, so that one empty value ("\0") differs from none
// (""); a text without a final NUL is one value (or several separated by NULs).
bool AbslParseFlag(absl::string_view text, Repeated* out, std::string* /*error*/) {
  out->clear();
  if (text.empty()) return true;
  if (text.back() == '\0') text.remove_suffix(1);
  for (absl::string_view v : absl::StrSplit(text, absl::ByChar('\0'))) out->emplace_back(v);
  return true;
}

std::string AbslUnparseFlag(const Repeated& values) {
  std::string out;
  for (const std::string& v : values) absl::StrAppend(&out, v, std::string(1, '\0'));
  return out;
}

namespace {

constexpr const char* kCommonExitStatus =
    "exit status: 0 done; 1 a run-time error (a file, a privilege, the network);\n"
    "             2 a bad command line (an option, a value, a rule)";

bool IsRepeated(const absl::CommandLineFlag& f) {
  return f.IsOfType<Repeated>() || f.IsOfType<std::vector<std::string>>();
}

const FlagHelp* Find(absl::Span<const FlagHelp> flags, absl::string_view name) {
  for (const FlagHelp& f : flags) {
    if (name == f.name) return &f;
  }
  return nullptr;
}

// The default --help shows for a flag whose text names none.
std::string DefaultNote(const absl::CommandLineFlag& f) {
  if (IsRepeated(f)) return "";
  std::string d = f.DefaultValue();
  if (f.IsOfType<bool>()) return d == "true" ? "(default: on)" : "(default: off)";
  if (d.empty()) return "(default: none)";
  return absl::StrCat("(default ", d, ")");
}

}  // namespace

std::string HelpText(const char* usage, absl::Span<const FlagHelp> flags,
                     const ParseOptions& options) {
  std::string out = absl::StrCat(usage, "\n");
  if (!flags.empty()) absl::StrAppend(&out, "\noptions:\n");
  for (const FlagHelp& f : flags) {
    std::string text = f.text;
    if (const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(f.name)) {
      if (IsRepeated(*flag) && !absl::StrContains(text, "repeatable"))
        absl::StrAppend(&text, " (repeatable)");
      if (!absl::StrContains(text, "default")) {
        std::string note = DefaultNote(*flag);
        if (!note.empty()) absl::StrAppend(&text, " ", note);
      }
    }
    absl::StrAppend(&out, "  ", text, "\n");
  }
  absl::StrAppend(&out, "\n", options.exit_status ? options.exit_status : kCommonExitStatus, "\n");
  return out;
}

absl::StatusOr<ParsedArgs> ParseArgs(int argc, char* const* argv, absl::Span<const FlagHelp> flags,
                                     const ParseOptions& options) {
  ParsedArgs out;
  // Every flag starts from its default, so a parse depends on its own argv only.
  for (const FlagHelp& f : flags) {
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(f.name);
    if (flag == nullptr)
      return absl::InternalError(absl::StrCat("option --", f.name, " is not defined"));
    std::string ignored;
    flag->ParseFrom(flag->DefaultValue(), &ignored);
  }
  std::map<std::string, std::vector<std::string>> repeated;  // in the order given
  std::map<std::string, std::string> single;                 // name -> the value first given
  for (int i = 1; i < argc; ++i) {
    const absl::string_view arg = argv[i];
    if (arg == "--") {
      for (++i; i < argc; ++i) out.arguments.emplace_back(argv[i]);
      break;
    }
    if (arg == "-" || !absl::StartsWith(arg, "-")) {
      out.arguments.emplace_back(arg);
      if (options.stop_at_first_argument) {
        for (++i; i < argc; ++i) out.arguments.emplace_back(argv[i]);
        break;
      }
      continue;
    }
    if (arg == "--help" || arg == "-h" || arg == "-help") {
      out.help = true;
      return out;
    }
    absl::string_view body = arg.substr(arg[1] == '-' ? 2 : 1);
    const size_t eq = body.find('=');
    std::string name = absl::StrReplaceAll(body.substr(0, eq), {{"-", "_"}});
    std::optional<std::string> value;
    if (eq != absl::string_view::npos) value = std::string(body.substr(eq + 1));
    // The spelling the user wrote, for messages.
    const std::string shown = absl::StrCat("--", body.substr(0, eq));

    absl::CommandLineFlag* flag = nullptr;
    if (Find(flags, name)) flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr && absl::StartsWith(name, "no") && Find(flags, name.substr(2))) {
      absl::CommandLineFlag* b = absl::FindCommandLineFlag(name.substr(2));
      if (b != nullptr && b->IsOfType<bool>()) {
        if (value) return absl::InvalidArgumentError(absl::StrCat(shown, " takes no value"));
        flag = b;
        name = name.substr(2);
        value = "false";
      }
    }
    if (flag == nullptr) {
      std::vector<std::string> names;
      for (const FlagHelp& f : flags) names.push_back(absl::StrReplaceAll(f.name, {{"_", "-"}}));
      std::string guess = DidYouMean(body.substr(0, eq), names);
      if (guess.empty()) guess = DidYouMean(absl::StrReplaceAll(name, {{"_", "-"}}), names);
      return absl::InvalidArgumentError(
          absl::StrCat("unknown option \"", arg, "\"",
                       guess.empty() ? "" : absl::StrCat("; did you mean --", guess, "?")));
    }
    if (!value) {
      if (flag->IsOfType<bool>()) {
        value = "true";
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return absl::InvalidArgumentError(absl::StrCat(shown, " needs a value"));
      }
    }
    if (IsRepeated(*flag)) {
      repeated[name].push_back(*value);
      continue;
    }
    auto [it, first] = single.emplace(name, *value);
    if (!first && it->second != *value) {
      return absl::InvalidArgumentError(absl::StrCat(shown, " is given twice (\"", it->second,
                                                     "\" and \"", *value,
                                                     "\"); it takes one value"));
    }
    std::string error;
    if (!flag->ParseFrom(*value, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat(shown, "=", *value, ": not a valid value (", error, ")"));
    }
  }
  for (const auto& [name, values] : repeated) {
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    // A Repeated flag keeps each value whole; abseil's own vector type splits on commas.
    const std::string joined = flag->IsOfType<Repeated>()
                                   ? AbslUnparseFlag(Repeated(values.begin(), values.end()))
                                   : absl::StrJoin(values, ",");
    std::string error;
    if (!flag->ParseFrom(joined, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, ": not a valid value (", error, ")"));
    }
  }
  return out;
}

std::vector<std::string> ParseFlags(int argc, char** argv, const char* usage,
                                    absl::Span<const FlagHelp> flags, const ParseOptions& options) {
  absl::StatusOr<ParsedArgs> parsed = ParseArgs(argc, argv, flags, options);
  if (!parsed.ok()) {
    std::fprintf(stderr, "wrench %s: %s\n(wrench %s --help lists the options)\n", argv[0],
                 std::string(parsed.status().message()).c_str(), argv[0]);
    std::exit(kExitUsage);
  }
  if (parsed->help) {
    std::fputs(HelpText(usage, flags, options).c_str(), stdout);
    std::exit(std::fflush(stdout) == 0 ? kExitOk : kExitFailure);
  }
  return std::move(parsed->arguments);
}

int ReportError(absl::string_view command, const absl::Status& status) {
  std::fprintf(stderr, "wrench %s: %s\n", std::string(command).c_str(),
               std::string(status.message()).c_str());
  return absl::IsInvalidArgument(status) || absl::IsOutOfRange(status) ? kExitUsage : kExitFailure;
}

bool NoArguments(absl::string_view command, const std::vector<std::string>& positional) {
  if (positional.empty()) return true;
  const std::string name(command);
  std::fprintf(stderr, "wrench %s: unexpected argument \"%s\" (see wrench %s --help)\n",
               name.c_str(), positional[0].c_str(), name.c_str());
  return false;
}

}  // namespace wrench::proxy
