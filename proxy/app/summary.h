// A run's report for CI: what happened (connections with their final leg states and
// errors, bytes each way, hits per rule), the facts the expectations of
// proxy/fault/expect.h are checked against, and the `--summary-json` file. The
// command line's verdict over it is proxy/cli/verdict.h.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proxy/fault/expect.h"
#include "proxy/relay/proxy.h"

namespace wrench::proxy {

class FaultEngine;
class ServeProxy;

struct RunReport {
  uint64_t connections = 0, refused = 0, unreachable = 0, resets = 0;
  uint64_t bytes_to_server = 0, bytes_to_client = 0;
  struct RuleHits {
    int id = 0;
    std::string text;
    uint64_t hits = 0;
  };
  std::vector<RuleHits> rules;
  std::vector<ConnectionRecord> conns;  // by id
  bool conns_recorded = true;           // false with exec --serve, which keeps none
  uint64_t conns_forgotten = 0;
};

// The report as things stand, on the loop's thread (Service::Shutdown takes it before
// it resets what is still open). `serve` is wrench exec --serve's proxy, else null.
RunReport CollectReport(const Proxy& proxy, const ServeProxy* serve, const FaultEngine& engine);

// Resolves expectations against a report (which must outlive the facts). Scenario
// checks add the client's and the server's facts on top (proxy/cli/scenario_check.h).
ExpectFacts FactsOf(const RunReport& report);

// The end of a run as the summary records it.
struct RunOutcome {
  RunOutcome(std::string command, std::optional<int> command_status = std::nullopt,
             std::string error = "")
      : command(std::move(command)), command_status(command_status), error(std::move(error)) {}
  std::string command;                // "proxy", "exec", "serve"
  std::optional<int> command_status;  // exec: COMMAND's exit status (128+N for a signal)
  int exit_status = 0;
  std::vector<ExpectResult> results;
  std::vector<std::string> warnings;
  std::string error;  // wrench could not run (start-up failed)
};

// The summary as JSON (README "Using wrench in CI" lists the fields).
std::string SummaryJson(const RunReport* report, const RunOutcome& outcome);
absl::Status WriteSummaryJson(const std::string& path, const RunReport* report,
                              const RunOutcome& outcome);

}  // namespace wrench::proxy
