// `wrench ladder`: draws the connections of a --log capture as sequence diagrams
// (proxy/ladder/ladder.h), as text for the terminal or as SVG/HTML for a browser. Needs no
// privileges and no network: it only reads the log.
#include <cstdio>
#include <fstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "proxy/cli/cli.h"
#include "proxy/cli/commands.h"
#include "proxy/cli/common_flags.h"
#include "proxy/ladder/ladder.h"

ABSL_FLAG(std::string, format, "",
          "text, svg or html (default: from --out's extension, else text)");
ABSL_FLAG(uint64_t, conn, 0, "draw only this connection (0: all)");
ABSL_FLAG(std::string, out, "", "write to this file instead of stdout");

namespace wrench::proxy {

namespace {

constexpr FlagHelp kLadderFlags[] = {
    {"format",
     "--format=text|svg|html   text for the terminal (default), or SVG, or an HTML page\n"
     "                           with the SVG inline; without it, --out's extension decides"},
    {"conn",
     "--conn=N                 only connection N (as the log and the control API number them)\n"
     "                           (default: all)"},
    {"out",
     "--out=FILE               write there instead of to stdout (default: stdout); without\n"
     "                           --format, FILE ends in .txt, .svg or .html"},
};

constexpr const char* kUsage =
    "usage: wrench ladder [--format=text|svg|html] [--conn=N] [--out=FILE] LOGFILE\n\n"
    "Draws every connection of a --log capture as a sequence diagram: the client, the\n"
    "proxy's client and server legs, and the server as vertical lines; each segment an\n"
    "arrow with its flags and relative seq/ack/len; time flowing down; the states of the\n"
    "proxy's endpoints at each change (and the kernel peers' states, inferred: ~STATE).\n"
    "Dropped segments end in a cross, held ones (delay, reorder) slant to their arrival,\n"
    "duplicates are extra arrows, and every rule that fired is named. LOGFILE is the file\n"
    "a --log run wrote, or \"-\" for standard input.";

absl::StatusOr<LadderFormat> FormatFromFlags(const std::string& out) {
  std::string f = absl::GetFlag(FLAGS_format);
  if (f.empty()) {
    if (out.empty() || out == "-") return LadderFormat::kText;
    if (absl::EndsWithIgnoreCase(out, ".svg")) return LadderFormat::kSvg;
    if (absl::EndsWithIgnoreCase(out, ".html") || absl::EndsWithIgnoreCase(out, ".htm"))
      return LadderFormat::kHtml;
    if (absl::EndsWithIgnoreCase(out, ".txt") || absl::EndsWithIgnoreCase(out, ".text"))
      return LadderFormat::kText;
    return absl::InvalidArgumentError(absl::StrCat(
        "--out=", out,
        ": the format follows the extension, .txt, .svg or .html (or .htm); give one of "
        "those or --format=text|svg|html"));
  }
  if (f == "text") return LadderFormat::kText;
  if (f == "svg") return LadderFormat::kSvg;
  if (f == "html") return LadderFormat::kHtml;
  return absl::InvalidArgumentError(
      absl::StrCat("--format must be text, svg or html, not \"", f, "\""));
}

}  // namespace

int RunLadder(int argc, char** argv) {
  std::vector<std::string> args = ParseFlags(argc, argv, kUsage, kLadderFlags);
  if (args.size() != 1) {
    std::fprintf(
        stderr, "wrench ladder: %s\n\n%s\n",
        args.empty() ? "which log? give the file a --log run wrote" : "give exactly one LOGFILE",
        kUsage);
    return kExitUsage;
  }
  const std::string out_path = absl::GetFlag(FLAGS_out);
  absl::StatusOr<LadderFormat> format = FormatFromFlags(out_path);
  if (!format.ok()) return ReportError("ladder", format.status());
  const uint64_t conn = absl::GetFlag(FLAGS_conn);
  absl::StatusOr<std::string> drawing =
      DrawLadder(args[0], *format, conn == 0 ? std::nullopt : std::optional<uint64_t>(conn));
  if (!drawing.ok()) {
    std::fprintf(stderr, "wrench ladder: %s\n", std::string(drawing.status().message()).c_str());
    return kExitFailure;
  }
  if (out_path.empty() || out_path == "-") {
    std::fwrite(drawing->data(), 1, drawing->size(), stdout);
    return std::fflush(stdout) == 0 ? 0 : 1;
  }
  std::ofstream out(out_path, std::ios::binary | std::ios::trunc);
  out << *drawing;
  out.close();
  if (!out) {
    std::fprintf(stderr, "wrench ladder: cannot write --out file %s\n", out_path.c_str());
    return 1;
  }
  return 0;
}

}  // namespace wrench::proxy
