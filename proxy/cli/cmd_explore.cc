// `wrench explore`: runs the user's test command under `wrench exec` again and again
// with fault schedules (proxy/cli/explore.h), shrinks each failing one to a minimal
// reproducer, re-runs it to tell deterministic from flaky, and writes a directory per
// finding, a one-page HTML report and a JSON summary.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "proxy/cli/commands.h"
#include "proxy/cli/explore.h"

namespace wrench::proxy {

namespace {

constexpr const char* kUsage =
    "usage: wrench explore [--budget=RUNS|DURATION] [--seed=N] [--timeout=DURATION]\n"
    "                      [--reruns=N] [--out=DIR] [--] TEST_COMMAND [ARGS...]\n\n"
    "Searches for the fault that breaks a test. Runs TEST_COMMAND under `wrench exec`\n"
    "once without faults (it must pass), then again and again, each time with a fault\n"
    "schedule: first every scenario of the library, then seeded random combinations of\n"
    "one to three rules. A run fails when TEST_COMMAND exits non-zero or is still running\n"
    "at the timeout. Each failing schedule is shrunk to a minimal one (fewer rules,\n"
    "simpler matchers, smaller delays, the first connection only), which is re-run to\n"
    "tell a deterministic failure from a flaky one.\n\n"
    "  --budget=RUNS|DURATION  schedules to try (a number), or how long to search (60s,\n"
    "                          10m); shrinking a finding is not counted (default: 50)\n"
    "  --seed=N                seed of the random schedules and of every run (default: 1)\n"
    "  --timeout=DURATION      a run still going after this has failed (default: 4 times\n"
    "                          the fault-free run, at least 5s)\n"
    "  --reruns=N              re-runs of each minimal schedule (default: 3)\n"
    "  --out=DIR               where findings go (default: wrench-explore)\n\n"
    "DIR gets a directory per finding (rules, seed, replay.sh, output.txt, capture.pcap,\n"
    "log.jsonl, and ladder.txt of the failing connection), report.html and summary.json;\n"
    "the JSON summary is also printed on stdout, progress on stderr.\n\n"
    "exit status: 0 nothing found; 1 a failure was found; 2 a bad command line, or the\n"
    "             test fails without faults; 4 wrench exec itself could not run";

constexpr int kExitFound = 1;
constexpr int kExitUsage = 2;
constexpr int kExitCannotRun = 4;

struct Options {
  int budget_runs = 50;
  absl::Duration budget_time = absl::ZeroDuration();  // nonzero: a time budget
  std::string budget_text = "50";
  uint64_t seed = 1;
  absl::Duration timeout = absl::ZeroDuration();  // zero: from the baseline
  int reruns = 3;
  std::string out = "wrench-explore";
  std::vector<std::string> command;
};

int Usage(const std::string& problem) {
  std::fprintf(stderr, "wrench explore: %s\n(wrench explore --help)\n", problem.c_str());
  return kExitUsage;
}

// Parses the options; returns -1 to go on, otherwise the exit status.
int ParseOptions(int argc, char** argv, Options& o) {
  int i = 1;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") {
      ++i;
      break;
    }
    if (a == "-h" || a == "--help") {
      std::printf("%s\n", kUsage);
      return 0;
    }
    if (!absl::StartsWith(a, "--")) break;
    std::string key = a.substr(2), value;
    if (size_t eq = key.find('='); eq != std::string::npos) {
      value = key.substr(eq + 1);
      key = key.substr(0, eq);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      return Usage(absl::StrCat("--", key, " needs a value"));
    }
    if (key == "budget") {
      o.budget_text = value;
      if (absl::SimpleAtoi(value, &o.budget_runs) && o.budget_runs > 0) continue;
      if (absl::ParseDuration(value, &o.budget_time) && o.budget_time > absl::ZeroDuration()) {
        o.budget_runs = 0;
        continue;
      }
      return Usage(
          absl::StrCat("--budget=", value, ": give a number of runs (50) or a duration (10m)"));
    } else if (key == "seed") {
      if (!absl::SimpleAtoi(value, &o.seed))
        return Usage(absl::StrCat("--seed=", value, ": not a number"));
    } else if (key == "timeout") {
      if (!absl::ParseDuration(value, &o.timeout) || o.timeout <= absl::ZeroDuration()) {
        return Usage(absl::StrCat("--timeout=", value, ": give a duration such as 10s"));
      }
    } else if (key == "reruns") {
      if (!absl::SimpleAtoi(value, &o.reruns) || o.reruns < 1 || o.reruns > 100) {
        return Usage(absl::StrCat("--reruns=", value, ": give a number from 1 to 100"));
      }
    } else if (key == "out") {
      o.out = value;
    } else {
      return Usage(absl::StrCat("unknown option --", key));
    }
  }
  for (; i < argc; ++i) o.command.emplace_back(argv[i]);
  if (o.command.empty())
    return Usage("no test command given (wrench explore [OPTIONS] -- TEST_COMMAND)");
  return -1;
}

std::string SelfPath() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "wrench";
  return std::string(buf, static_cast<size_t>(n));
}

bool WriteFile(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  return static_cast<bool>(f);
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Runs a process with stdout and stderr into `output`, killing it at `timeout`
// (SIGTERM, which wrench exec forwards to the test; SIGKILL 3 s later).
TestRun RunProcess(const std::vector<std::string>& args, const std::string& output,
                   absl::Duration timeout) {
  TestRun r;
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  pid_t pid = ::fork();
  if (pid < 0) {
    r.failed = true;
    r.exit_status = -1;
    return r;
  }
  if (pid == 0) {
    int fd = ::open(output.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null >= 0) ::dup2(null, 0);
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  const double limit = absl::ToDoubleSeconds(timeout);
  int status = 0;
  bool termed = false;
  double killed_at = 0;
  // Bounded: the timeout, then at most 3 s more before SIGKILL, then the reaping.
  for (int spins = 0; spins < 10'000'000; ++spins) {
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) break;
    const double t = elapsed();
    if (!termed && t > limit) {
      ::kill(pid, SIGTERM);
      termed = true;
      killed_at = t;
      r.timed_out = true;
    } else if (termed && t > killed_at + 3) {
      ::kill(pid, SIGKILL);
    }
    ::usleep(10'000);
  }
  r.seconds = r.timed_out ? killed_at : elapsed();
  if (WIFEXITED(status)) {
    r.exit_status = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    r.exit_status = 128 + WTERMSIG(status);
  }
  r.failed = r.timed_out || r.exit_status != 0;
  return r;
}

// The connection the first fired rule acted on, from a --log capture (0: none).
uint64_t FailingConnection(const std::string& log_path) {
  std::ifstream f(log_path);
  std::string line;
  for (int i = 0; i < 1'000'000 && std::getline(f, line); ++i) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.contains("rule") && j.contains("conn") && j["conn"].is_number()) {
      return j["conn"].get<uint64_t>();
    }
  }
  return 0;
}

class Explorer {
 public:
  explicit Explorer(Options o) : o_(std::move(o)), self_(SelfPath()) {}

  int Run() {
    const auto start = std::chrono::steady_clock::now();
    auto elapsed = [&] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    std::error_code ec;
    std::filesystem::create_directories(o_.out, ec);
    scratch_ = absl::StrCat(o_.out, "/.runs");
    std::filesystem::create_directories(scratch_, ec);
    if (ec) return Usage(absl::StrCat("--out=", o_.out, ": ", ec.message()));
    summary_.command = o_.command;
    summary_.seed = o_.seed;
    summary_.budget = o_.budget_text;

    // The fault-free run: it must pass, and it sets the timeout.
    Progress(absl::StrCat("baseline run without faults: ", absl::StrJoin(o_.command, " ")));
    const absl::Duration baseline_limit =
        o_.timeout > absl::ZeroDuration() ? o_.timeout : absl::Seconds(60);
    TestRun base = RunOnce({}, o_.seed, baseline_limit, scratch_);
    summary_.baseline_s = base.seconds;
    if (ExecFailed(scratch_, base)) return kExitCannotRun;
    if (base.failed) {
      std::fprintf(stderr,
                   "wrench explore: the test fails without any fault (%s); fix that first:\n%s",
                   Describe(base).c_str(), ReadFile(scratch_ + "/output.txt").c_str());
      return kExitUsage;
    }
    timeout_ = o_.timeout > absl::ZeroDuration()
                   ? o_.timeout
                   : std::max(absl::Seconds(5), absl::Seconds(4 * base.seconds));
    summary_.timeout_s = absl::ToDoubleSeconds(timeout_);
    Progress(absl::StrFormat("baseline passed in %.2f s; a run still going after %.1f s fails",
                             base.seconds, summary_.timeout_s));

    ScheduleSource source(o_.seed);
    std::set<std::string> seen;
    for (int run = 1;; ++run) {
      if (o_.budget_runs > 0 && run > o_.budget_runs) break;
      if (o_.budget_runs == 0 && elapsed() > absl::ToDoubleSeconds(o_.budget_time)) break;
      Schedule s = source.Next();
      const uint64_t seed = o_.seed + static_cast<uint64_t>(run);
      Progress(absl::StrCat(
          "run ", run, o_.budget_runs > 0 ? absl::StrCat("/", o_.budget_runs) : "", " (",
          summary_.findings.size(), " found) ", s.origin, ": ", OneLine(s.rules)));
      TestRun r = RunOnce(s.rules, seed, timeout_, scratch_);
      ++summary_.runs;
      if (ExecFailed(scratch_, r)) return kExitCannotRun;
      if (!r.failed) continue;
      Progress(absl::StrCat("  failed (", Describe(r), "); shrinking"));
      int spent = 0;
      std::vector<Rule> minimal = Shrink(
          s.rules,
          [&](const std::vector<Rule>& rules) {
            TestRun o = RunOnce(rules, seed, timeout_, scratch_);
            Progress(
                absl::StrCat("  shrink: ", OneLine(rules), " -> ", o.failed ? "fails" : "passes"));
            return o;
          },
          40, &spent);
      summary_.shrink_runs += spent;
      const std::string key = RulesFileText(minimal);
      if (!seen.insert(key).second) {
        Progress(
            absl::StrCat("  the same minimal schedule as an earlier finding: ", OneLine(minimal)));
        continue;
      }
      Record(s, minimal, seed);
    }
    std::filesystem::remove_all(scratch_, ec);
    summary_.elapsed_s = elapsed();
    WriteFile(absl::StrCat(o_.out, "/summary.json"), ExploreJson(summary_) + "\n");
    WriteFile(absl::StrCat(o_.out, "/report.html"), ExploreReportHtml(summary_));
    std::printf("%s\n", ExploreJson(summary_).c_str());
    std::fflush(stdout);
    Progress(absl::StrCat(summary_.runs, " schedules tried, ", summary_.findings.size(),
                          " found; report: ", o_.out, "/report.html"));
    return summary_.findings.empty() ? 0 : kExitFound;
  }

 private:
  static std::string OneLine(const std::vector<Rule>& rules) {
    if (rules.empty()) return "(no rule)";
    std::vector<std::string> t;
    for (const Rule& r : rules) t.push_back(ToString(r));
    return absl::StrJoin(t, " | ");
  }
  static std::string Describe(const TestRun& r) {
    if (r.timed_out) return absl::StrFormat("still running after %.1f s", r.seconds);
    return absl::StrFormat("exit status %d after %.2f s", r.exit_status, r.seconds);
  }
  void Progress(const std::string& line) {
    std::fprintf(stderr, "wrench explore: %s\n", line.c_str());
    std::fflush(stderr);
  }

  std::vector<std::string> ExecArgs(const std::string& rules_path, uint64_t seed,
                                    const std::string& dir, bool capture) const {
    std::vector<std::string> a = {self_, "exec", absl::StrCat("--seed=", seed)};
    if (!rules_path.empty()) a.push_back(absl::StrCat("--rules=", rules_path));
    if (capture) {
      a.push_back(absl::StrCat("--pcap=", dir, "/capture.pcap"));
      a.push_back(absl::StrCat("--log=", dir, "/log.jsonl"));
    }
    a.push_back("--");
    a.insert(a.end(), o_.command.begin(), o_.command.end());
    return a;
  }

  TestRun RunOnce(const std::vector<Rule>& rules, uint64_t seed, absl::Duration timeout,
                  const std::string& dir, bool capture = false) {
    std::string rules_path;
    if (!rules.empty()) {
      rules_path = absl::StrCat(dir, "/rules");
      WriteFile(rules_path, RulesFileText(rules));
    }
    return RunProcess(ExecArgs(rules_path, seed, dir, capture), absl::StrCat(dir, "/output.txt"),
                      timeout);
  }

  // wrench exec's own refusal (a privilege, a bad rule), told apart from the test's
  // failure by its message.
  bool ExecFailed(const std::string& dir, const TestRun& r) {
    // wrench exec fails to start with 1 (a privilege, the network) or 2 (a bad rule).
    if (r.timed_out || (r.exit_status != 1 && r.exit_status != 2)) return false;
    const std::string out = ReadFile(dir + "/output.txt");
    if (absl::StartsWith(out, "wrench exec: ") || absl::StrContains(out, "\nwrench exec: ")) {
      if (absl::StrContains(out, "warning")) return false;
      std::fprintf(stderr, "wrench explore: wrench exec could not run the test:\n%s", out.c_str());
      return true;
    }
    return false;
  }

  void Record(const Schedule& s, const std::vector<Rule>& minimal, uint64_t seed) {
    Finding f;
    f.dir = absl::StrCat("finding-", summary_.findings.size() + 1);
    const std::string dir = absl::StrCat(o_.out, "/", f.dir);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    f.origin = s.origin;
    f.original = s.rules;
    f.minimal = minimal;
    f.seed = seed;
    // The first re-run keeps its capture, its log and its output in the finding.
    for (int i = 0; i < o_.reruns; ++i) {
      TestRun r = RunOnce(minimal, seed, timeout_, i == 0 ? dir : scratch_, /*capture=*/i == 0);
      ++summary_.shrink_runs;
      if (i == 0) f.outcome = r;
      ++f.reruns;
      if (r.failed) ++f.rerun_failures;
    }
    std::error_code abs_ec;
    const std::filesystem::path rules_abs = std::filesystem::absolute(dir + "/rules", abs_ec);
    std::vector<std::string> replay = {
        "wrench", "exec", absl::StrCat("--seed=", seed),
        absl::StrCat("--rules=", abs_ec ? dir + "/rules" : rules_abs.string()), "--"};
    replay.insert(replay.end(), o_.command.begin(), o_.command.end());
    std::vector<std::string> quoted;
    for (const std::string& a : replay) quoted.push_back(ShellQuote(a));
    f.replay = absl::StrJoin(quoted, " ");
    WriteFile(dir + "/seed", absl::StrCat(seed, "\n"));
    WriteFile(dir + "/replay.sh",
              absl::StrCat("#!/bin/sh\n# ", s.origin, ", shrunk; ",
                           f.deterministic() ? "deterministic" : "flaky", "\n", f.replay, "\n"));
    ::chmod((dir + "/replay.sh").c_str(), 0755);
    // The ladder of the connection the first rule acted on.
    const uint64_t conn = FailingConnection(dir + "/log.jsonl");
    std::vector<std::string> ladder = {self_, "ladder", absl::StrCat("--out=", dir, "/ladder.txt")};
    if (conn != 0) ladder.push_back(absl::StrCat("--conn=", conn));
    ladder.push_back(dir + "/log.jsonl");
    RunProcess(ladder, dir + "/ladder-errors.txt", absl::Seconds(30));
    if (ReadFile(dir + "/ladder-errors.txt").empty())
      std::filesystem::remove(dir + "/ladder-errors.txt", ec);
    Progress(absl::StrCat("  found: ", OneLine(minimal), " (",
                          f.deterministic() ? "deterministic" : "flaky", ", ", f.rerun_failures,
                          " of ", f.reruns, " re-runs failed) in ", dir));
    summary_.findings.push_back(std::move(f));
  }

  Options o_;
  std::string self_;
  std::string scratch_;
  absl::Duration timeout_ = absl::Seconds(5);
  ExploreSummary summary_;
};

}  // namespace

int RunExplore(int argc, char** argv) {
  Options o;
  if (int st = ParseOptions(argc, argv, o); st >= 0) return st;
  return Explorer(std::move(o)).Run();
}

}  // namespace wrench::proxy
