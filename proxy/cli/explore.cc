// `wrench explore`'s search (explore.h).
#include "proxy/cli/explore.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "nlohmann/json.hpp"
#include "proxy/fault/scenarios.h"

namespace wrench::proxy {

namespace {

constexpr stack::Duration kShortestDelay = absl::Milliseconds(10);

std::string HtmlEscape(const std::string& s) {
  return absl::StrReplaceAll(s, {{"&", "&amp;"}, {"<", "&lt;"}, {">", "&gt;"}, {"\"", "&quot;"}});
}

std::vector<std::string> Texts(const std::vector<Rule>& rules) {
  std::vector<std::string> out;
  for (const Rule& r : rules) out.push_back(ToString(r));
  return out;
}

}  // namespace

Rule ScheduleSource::RandomRule() {
  Rule r;
  const bool server_leg = Below(4) == 0;
  if (server_leg) {
    // wrench exec's server leg is a kernel socket: only delay and rst reach it.
    r.hooks = HookSet::Of(Below(2) == 0 ? Hook::kFromServer : Hook::kToServer);
    if (Below(2) == 0) {
      r.action = RstAction{};
    } else {
      r.action = DelayAction{absl::Milliseconds(50 * static_cast<int64_t>(1 + Below(40)))};
    }
  } else {
    r.hooks = HookSet::Of(Below(2) == 0 ? Hook::kToClient : Hook::kFromClient);
    switch (Below(6)) {
      case 0: r.action = DropAction{}; break;
      case 1:
        r.action = DelayAction{absl::Milliseconds(50 * static_cast<int64_t>(1 + Below(40)))};
        break;
      case 2: r.action = DupAction{1}; break;
      case 3: r.action = ReorderAction{}; break;
      case 4: r.action = RstAction{}; break;
      default: r.action = BlackholeAction{}; break;
    }
  }
  switch (Below(6)) {
    case 0: r.flags_has = stack::TcpFlags(stack::kFin); break;
    case 1: r.flags_has = stack::TcpFlags(stack::kSyn); break;
    case 2: r.flags_exact = stack::TcpFlags(stack::kAck); break;
    case 3: r.len = LenMatch{LenMatch::Op::kGreater, 0}; break;
    case 4: r.idle = absl::Milliseconds(250 * static_cast<int64_t>(1 + Below(4))); break;
    default: break;
  }
  switch (Below(4)) {
    case 0: r.nth = 1 + Below(3); break;
    case 1: r.probability = 0.5; break;
    case 2: r.after = 1 + Below(5); break;
    default: break;
  }
  return r;
}

Schedule ScheduleSource::Next() {
  const auto scenarios = Scenarios();
  while (next_scenario_ < scenarios.size()) {
    const Scenario& s = scenarios[next_scenario_++];
    absl::StatusOr<std::vector<Rule>> rules = ScenarioRules(s.name);
    if (rules.ok() && !rules->empty())
      return Schedule{absl::StrCat("scenario ", s.name), *std::move(rules)};
  }
  Schedule s;
  s.origin = absl::StrCat("random ", next_random_++);
  const uint64_t n = 1 + Below(3);
  for (uint64_t i = 0; i < n; ++i) s.rules.push_back(RandomRule());
  return s;
}

std::vector<std::vector<Rule>> Simplifications(const std::vector<Rule>& rules) {
  std::vector<std::vector<Rule>> out;
  auto add = [&](std::vector<Rule> candidate) {
    for (const Rule& r : candidate) {
      if (!ValidateRule(r).ok()) return;
    }
    out.push_back(std::move(candidate));
  };
  if (rules.size() > 1) {
    for (size_t i = 0; i < rules.size(); ++i) {
      std::vector<Rule> fewer = rules;
      fewer.erase(fewer.begin() + static_cast<std::ptrdiff_t>(i));
      add(std::move(fewer));
    }
  }
  auto each = [&](auto change) {
    for (size_t i = 0; i < rules.size(); ++i) {
      std::vector<Rule> c = rules;
      if (change(c[i])) add(std::move(c));
    }
  };
  each([](Rule& r) { return r.probability ? (r.probability.reset(), true) : false; });
  each([](Rule& r) { return r.every ? (r.every.reset(), true) : false; });
  each([](Rule& r) { return r.after ? (r.after.reset(), true) : false; });
  each([](Rule& r) { return r.conn ? false : (r.conn = 1, true); });
  each([](Rule& r) {
    if (r.count || r.nth || KindOf(r.action) == ActionKind::kBlackhole) return false;
    r.count = 1;
    return true;
  });
  each([](Rule& r) {
    auto* d = std::get_if<DelayAction>(&r.action);
    if (d == nullptr || d->jitter == absl::ZeroDuration()) return false;
    d->jitter = absl::ZeroDuration();
    return true;
  });
  each([](Rule& r) {
    auto* d = std::get_if<DelayAction>(&r.action);
    if (d == nullptr || d->delay <= kShortestDelay) return false;
    d->delay = std::max(kShortestDelay, absl::Floor(d->delay / 2, absl::Milliseconds(1)));
    d->jitter = std::min(d->jitter, d->delay);
    return true;
  });
  return out;
}

std::vector<Rule> Shrink(const std::vector<Rule>& failing, const RunFn& run, int max_runs,
                         int* runs_spent) {
  std::vector<Rule> best = failing;
  int spent = 0;
  bool progress = true;
  while (progress && spent < max_runs) {
    progress = false;
    for (std::vector<Rule>& candidate : Simplifications(best)) {
      if (spent >= max_runs) break;
      ++spent;
      if (run(candidate).failed) {
        best = std::move(candidate);
        progress = true;
        break;
      }
    }
  }
  if (runs_spent != nullptr) *runs_spent = spent;
  return best;
}

std::string RulesFileText(const std::vector<Rule>& rules) {
  std::string out;
  for (const Rule& r : rules) absl::StrAppend(&out, ToString(r), "\n");
  return out;
}

std::string ShellQuote(const std::string& s) {
  if (!s.empty() &&
      s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                          "_-./:=,+@%") == std::string::npos) {
    return s;
  }
  return absl::StrCat("'", absl::StrReplaceAll(s, {{"'", "'\\''"}}), "'");
}

// The JSON summary's objects (nlohmann::json: keys sorted), found by nlohmann through ADL.
void to_json(nlohmann::json& j, const Finding& f) {
  j = {{"dir", f.dir},                 {"origin", f.origin},
       {"seed", f.seed},               {"replay", f.replay},
       {"reruns", f.reruns},           {"rerun_failures", f.rerun_failures},
       {"seconds", f.outcome.seconds}, {"timed_out", f.outcome.timed_out},
       {"exit_status", f.outcome.exit_status},
       {"original_rules", Texts(f.original)},
       {"rules", Texts(f.minimal)},
       {"verdict", f.deterministic() ? "deterministic" : "flaky"}};
}

void to_json(nlohmann::json& j, const ExploreSummary& s) {
  j = {{"command", s.command},       {"seed", s.seed},
       {"budget", s.budget},         {"runs", s.runs},
       {"baseline_s", s.baseline_s}, {"timeout_s", s.timeout_s},
       {"elapsed_s", s.elapsed_s},   {"shrink_runs", s.shrink_runs},
       {"findings", s.findings}};
}

std::string ExploreJson(const ExploreSummary& s) { return nlohmann::json(s).dump(2); }

std::string ExploreReportHtml(const ExploreSummary& s) {
  std::vector<std::string> quoted;
  for (const std::string& a : s.command) quoted.push_back(ShellQuote(a));
  std::string h = absl::StrCat(
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>wrench explore</title>\n"
      "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}pre{background:#f4f4f4;"
      "padding:.5em;white-space:pre-wrap}table{border-collapse:collapse}td,th{border:1px solid "
      "#ccc;"
      "padding:.3em "
      ".6em;text-align:left;vertical-align:top}.det{color:#b00}.flaky{color:#a60}</style>\n"
      "</head><body>\n<h1>wrench explore</h1>\n<p>Test command: <code>",
      HtmlEscape(absl::StrJoin(quoted, " ")), "</code><br>\n",
      absl::StrFormat(
          "Seed %d, budget %s: %d schedules tried, %d more runs shrinking; baseline %.2f s, "
          "timeout %.1f s, %.0f s in all.",
          s.seed, HtmlEscape(s.budget), s.runs, s.shrink_runs, s.baseline_s, s.timeout_s,
          s.elapsed_s),
      "</p>\n");
  if (s.findings.empty()) {
    absl::StrAppend(&h, "<p><b>No failure found.</b></p>\n");
  } else {
    absl::StrAppend(
        &h, "<h2>", s.findings.size(), s.findings.size() == 1 ? " finding" : " findings",
        "</h2>\n<table><tr><th>#</th><th>minimal rules</th><th>verdict</th><th>how it failed</th>"
        "<th>shrunk from</th><th>files</th></tr>\n");
    for (size_t i = 0; i < s.findings.size(); ++i) {
      const Finding& f = s.findings[i];
      const std::string how = f.outcome.timed_out
                                  ? absl::StrFormat("hung: killed after %.1f s", f.outcome.seconds)
                                  : absl::StrFormat("exit status %d after %.1f s",
                                                    f.outcome.exit_status, f.outcome.seconds);
      absl::StrAppend(&h, "<tr><td>", i + 1, "</td><td><pre>", HtmlEscape(RulesFileText(f.minimal)),
                      "</pre>Replay:<pre>", HtmlEscape(f.replay), "</pre></td><td class=\"",
                      f.deterministic() ? "det" : "flaky", "\">",
                      f.deterministic() ? "deterministic" : "flaky",
                      absl::StrFormat(" (%d of %d re-runs failed)", f.rerun_failures, f.reruns),
                      "</td><td>", HtmlEscape(how), "</td><td>", HtmlEscape(f.origin), "<pre>",
                      HtmlEscape(RulesFileText(f.original)), "</pre></td><td>");
      for (const char* file :
           {"rules", "replay.sh", "output.txt", "capture.pcap", "log.jsonl", "ladder.txt"}) {
        absl::StrAppend(&h, "<a href=\"", f.dir, "/", file, "\">", file, "</a><br>");
      }
      absl::StrAppend(&h, "</td></tr>\n");
    }
    absl::StrAppend(&h, "</table>\n");
  }
  absl::StrAppend(&h, "</body></html>\n");
  return h;
}

}  // namespace wrench::proxy
