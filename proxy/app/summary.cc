// Reports, facts, the summary file and the end-of-run verdict (summary.h).
#include "proxy/app/summary.h"

#include <cstdio>
#include <fstream>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "proxy/cli/commands.h"
#include "proxy/fault/fault_engine.h"
#include "proxy/relay/serve_proxy.h"
#include "stack/tcp_state.h"

ABSL_FLAG(std::vector<std::string>, expect, {}, "an expectation checked at the end of the run (repeatable)");
ABSL_FLAG(bool, expect_all_rules_fire, false, "expect every rule to fire at least once");
ABSL_FLAG(std::string, summary_json, "", "write the run's summary as JSON to this file");

namespace wrench::proxy {

namespace {

using Json = nlohmann::ordered_json;

std::vector<std::string> Visited(uint16_t bits) {
  std::vector<std::string> out;
  for (int i = 0; i < stack::kTcpStateCount; ++i) {
    if (bits & (1u << i)) out.emplace_back(stack::StateName(static_cast<stack::TcpState>(i)));
  }
  return out;
}

const ConnectionRecord* FindConn(const RunReport& r, uint64_t id) {
  for (const ConnectionRecord& c : r.conns) {
    if (c.info.id == id) return &c;
  }
  return nullptr;
}

ExpectActual Count(uint64_t n) {
  ExpectActual a;
  a.number = static_cast<double>(n);
  return a;
}

}  // namespace

RunReport CollectReport(const Proxy& proxy, const ServeProxy* serve, const FaultEngine& engine) {
  RunReport r;
  if (serve) {
    const ServeStats& s = serve->stats();
    r.connections = s.connections;
    r.refused = s.refused;
    r.resets = s.resets;
    r.bytes_to_server = s.bytes_to_server;
    r.bytes_to_client = s.bytes_to_client;
    r.conns_recorded = false;
  } else {
    const ProxyStats& s = proxy.stats();
    r.connections = s.connections;
    r.refused = s.refused;
    r.unreachable = s.unreachable;
    r.resets = s.resets;
    r.bytes_to_server = s.bytes_to_server;
    r.bytes_to_client = s.bytes_to_client;
    r.conns = proxy.Records();
    r.conns_forgotten = proxy.records_forgotten();
  }
  for (const auto& rule : engine.Rules()) r.rules.push_back({rule.id, rule.text, rule.hits});
  return r;
}

ExpectFacts FactsOf(const RunReport& report) {
  return [&report](const Expectation& e) -> absl::StatusOr<ExpectActual> {
    const std::vector<std::string>& s = e.subject;
    const std::string& head = s[0];
    if (head == "connections") return Count(report.connections);
    if (head == "refused") return Count(report.refused);
    if (head == "unreachable") return Count(report.unreachable);
    if (head == "resets") return Count(report.resets);
    if (head == "bytes") return Count(report.bytes_to_server + report.bytes_to_client);
    if (head == "bytes-to-server") return Count(report.bytes_to_server);
    if (head == "bytes-to-client") return Count(report.bytes_to_client);
    uint64_t n = 0;
    if (s.size() == 3 && absl::SimpleAtoi(s[1], &n)) {
      if (head == "rule") {
        for (const RunReport::RuleHits& r : report.rules) {
          if (r.id == static_cast<int>(n)) return Count(r.hits);
        }
        return absl::NotFoundError(absl::StrCat("no rule ", n, " (the run had ", report.rules.size(), ")"));
      }
      if (head == "conn") {
        if (!report.conns_recorded) {
          return absl::UnimplementedError("connections are not recorded one by one with --serve");
        }
        const ConnectionRecord* c = FindConn(report, n);
        if (!c) {
          return absl::NotFoundError(
              absl::StrCat("no connection ", n, " (the run had ", report.connections, ")"));
        }
        const std::string& f = s[2];
        if (f == "bytes-to-server") return Count(c->info.bytes_to_server);
        if (f == "bytes-to-client") return Count(c->info.bytes_to_client);
        if (f == "errors") {
          ExpectActual a = Count(c->errors.size());
          a.shown = c->errors.empty() ? "0" : absl::StrCat(c->errors.size(), ": ", absl::StrJoin(c->errors, "; "));
          return a;
        }
        ExpectActual a;
        if (f == "client") {
          a.words = {StateWord(c->info.client_leg_state)};
        } else if (f == "server") {
          a.words = {StateWord(c->info.server_leg_state)};
        } else if (f == "client-visited" || f == "server-visited") {
          a.words = Visited(f == "client-visited" ? c->client_visited : c->server_visited);
          a.shown = a.words.empty() ? "no state of an endpoint of ours" : absl::StrCat("visited ", absl::StrJoin(a.words, ", "));
        }
        return a;
      }
    }
    return absl::UnimplementedError(absl::StrCat("\"", e.text, "\" cannot be checked in this run"));
  };
}

std::string SummaryJson(const RunReport* report, const RunOutcome& outcome) {
  Json j;
  j["wrench"] = kVersion;
  j["command"] = outcome.command;
  bool pass = outcome.error.empty();
  for (const ExpectResult& r : outcome.results) pass = pass && r.pass;
  j["verdict"] = pass ? "pass" : "fail";
  j["exit_status"] = outcome.exit_status;
  if (outcome.command_status) j["command_status"] = *outcome.command_status;
  if (!outcome.error.empty()) j["error"] = outcome.error;
  Json ex = Json::array();
  for (const ExpectResult& r : outcome.results) {
    ex.push_back({{"expect", r.text}, {"pass", r.pass}, {"actual", r.actual}});
  }
  j["expectations"] = std::move(ex);
  j["warnings"] = outcome.warnings;
  if (report) {
    Json rules = Json::array();
    for (const RunReport::RuleHits& r : report->rules) rules.push_back({{"id", r.id}, {"text", r.text}, {"hits", r.hits}});
    j["rules"] = std::move(rules);
    j["totals"] = {{"connections", report->connections},         {"refused", report->refused},
                   {"unreachable", report->unreachable},         {"resets", report->resets},
                   {"bytes_to_server", report->bytes_to_server}, {"bytes_to_client", report->bytes_to_client}};
    Json conns = Json::array();
    for (const ConnectionRecord& c : report->conns) {
      conns.push_back({{"id", c.info.id},
                       {"client", c.info.client},
                       {"front", c.info.front},
                       {"upstream", c.info.upstream},
                       {"client_leg", c.info.client_leg_state},
                       {"server_leg", c.info.server_leg_state},
                       {"client_leg_visited", Visited(c.client_visited)},
                       {"server_leg_visited", Visited(c.server_visited)},
                       {"closed_before_end", c.closed},
                       {"bytes_to_server", c.info.bytes_to_server},
                       {"bytes_to_client", c.info.bytes_to_client},
                       {"errors", c.errors}});
    }
    j["connections"] = std::move(conns);
    j["connections_forgotten"] = report->conns_forgotten;
  }
  return j.dump(2) + "\n";
}

absl::Status WriteSummaryJson(const std::string& path, const RunReport* report, const RunOutcome& outcome) {
  std::ofstream f(path, std::ios::trunc);
  if (!f) return absl::InvalidArgumentError(absl::StrCat("--summary-json ", path, ": cannot write the file"));
  f << SummaryJson(report, outcome);
  f.close();
  if (!f) return absl::InternalError(absl::StrCat("--summary-json ", path, ": write failed"));
  return absl::OkStatus();
}


absl::StatusOr<RunVerdict> RunVerdict::FromFlags(size_t rule_count, bool rules_may_change) {
  RunVerdict v;
  v.summary_path_ = absl::GetFlag(FLAGS_summary_json);
  v.all_rules_fire_ = absl::GetFlag(FLAGS_expect_all_rules_fire);
  for (const std::string& text : absl::GetFlag(FLAGS_expect)) {
    auto e = ParseExpectation(text);
    if (!e.ok()) return absl::InvalidArgumentError(absl::StrCat("--expect: ", e.status().message()));
    uint64_t n = 0;
    if (!rules_may_change && e->subject[0] == "rule" && absl::SimpleAtoi(e->subject[1], &n) && n > rule_count) {
      return absl::InvalidArgumentError(absl::StrCat("--expect \"", e->text, "\": there is no rule ", n, " (the run has ",
                                                     rule_count, rule_count == 1 ? " rule" : " rules",
                                                     ", numbered from 1 in the order given)"));
    }
    v.expectations_.push_back(std::move(*e));
  }
  if (v.all_rules_fire_ && rule_count == 0 && !rules_may_change) {
    return absl::InvalidArgumentError("--expect-all-rules-fire: the run has no rule");
  }
  if (!v.summary_path_.empty()) {
    // Fail at start, not after the run, when the file cannot be written.
    std::ofstream f(v.summary_path_, std::ios::app);
    if (!f) return absl::InvalidArgumentError(absl::StrCat("--summary-json ", v.summary_path_, ": cannot write the file"));
  }
  return v;
}

int RunVerdict::Finish(const RunReport* report, RunOutcome outcome,
                       const std::function<void(const std::string&)>& log) const {
  std::vector<Expectation> all = expectations_;
  if (all_rules_fire_ && report) {
    for (const RunReport::RuleHits& r : report->rules) {
      auto e = ParseExpectation(absl::StrCat("rule ", r.id, " hits>=1"));
      if (e.ok()) all.push_back(std::move(*e));
    }
  }
  bool failed = false;
  if (report) {
    outcome.results = EvaluateAll(all, FactsOf(*report));
  } else {
    for (const Expectation& e : all) outcome.results.push_back({e.text, false, "wrench did not run"});
  }
  for (const ExpectResult& r : outcome.results) {
    log(absl::StrCat("wrench: ", ToString(r)));
    failed = failed || !r.pass;
  }
  int status = outcome.command_status.value_or(0);
  if (!outcome.error.empty() && status == 0) status = 1;
  if (status == 0 && failed) status = kExitExpectationFailed;
  outcome.exit_status = status;
  if (!summary_path_.empty()) {
    if (auto st = WriteSummaryJson(summary_path_, report, outcome); !st.ok()) {
      log(absl::StrCat("wrench: ", st.message()));
      if (status == 0) status = 1;
    }
  }
  return status;
}

}  // namespace wrench::proxy
