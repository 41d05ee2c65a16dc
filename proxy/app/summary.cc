// Reports, facts and the summary file (summary.h).
#include "proxy/app/summary.h"

#include <cstdio>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"
#include "proxy/app/version.h"
#include "proxy/fault/fault_engine.h"
#include "proxy/relay/serve_proxy.h"
#include "stack/tcp_state.h"


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
        return absl::NotFoundError(
            absl::StrCat("no rule ", n, " (the run had ", report.rules.size(), ")"));
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
          a.shown = c->errors.empty()
                        ? "0"
                        : absl::StrCat(c->errors.size(), ": ", absl::StrJoin(c->errors, "; "));
          return a;
        }
        ExpectActual a;
        if (f == "client") {
          a.words = {StateWord(c->info.client_leg_state)};
        } else if (f == "server") {
          a.words = {StateWord(c->info.server_leg_state)};
        } else if (f == "client-visited" || f == "server-visited") {
          a.words = Visited(f == "client-visited" ? c->client_visited : c->server_visited);
          a.shown = a.words.empty() ? "no state of an endpoint of ours"
                                    : absl::StrCat("visited ", absl::StrJoin(a.words, ", "));
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
    for (const RunReport::RuleHits& r : report->rules)
      rules.push_back({{"id", r.id}, {"text", r.text}, {"hits", r.hits}});
    j["rules"] = std::move(rules);
    j["totals"] = {
        {"connections", report->connections},         {"refused", report->refused},
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

absl::Status WriteSummaryJson(const std::string& path, const RunReport* report,
                              const RunOutcome& outcome) {
  std::ofstream f(path, std::ios::trunc);
  if (!f)
    return absl::InvalidArgumentError(
        absl::StrCat("--summary-json ", path, ": cannot write the file"));
  f << SummaryJson(report, outcome);
  f.close();
  if (!f) return absl::InternalError(absl::StrCat("--summary-json ", path, ": write failed"));
  return absl::OkStatus();
}

}  // namespace wrench::proxy
