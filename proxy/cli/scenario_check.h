// `wrench scenario check [NAME...]`: each scenario of the library run against a
// built-in client and server, through the real proxy path (a TUN device and wrench's
// own endpoints) in a network namespace of its own, and its promised symptoms checked.
//
// A scenario declares, in its header, how it is checked:
//   # Check: client=MODE server=MODE response=N [upload=N] [read-timeout=SECONDS]
//   # Expect: EXPR            (one a line; proxy/fault/expect.h, scenario context)
// The client (a kernel socket) connects to the front, sends `upload` bytes and "GET\n",
// and then, by MODE:
//   request      reads until end-of-file, an error or the read timeout
//   close-first  reads the N-byte response and closes first
//   sim-close    the same, as the server closes too (crossing FINs)
//   close-wait   reads until end-of-file and keeps the socket open (a CLOSE-WAIT leak)
//   half-close   shuts down its sending side after the request, then reads to the end
//   fin-wait-2   the same, expecting the end never to come
//   keepalive    reads the N-byte response, waits `reuse-after` seconds on the idle
//                connection, sends "GET\n" again and reads the second response
// The server (a kernel socket on loopback) answers N bytes; by MODE it then
//   close        closes at once
//   wait-eof     waits for the client's end-of-file (at most 10 s), then closes
//   read-eof     reads the request to end-of-file before answering, then closes
//   keepalive    answers every request on the connection and closes once it has been
//                idle for `server-idle` seconds (as a keep-alive HTTP server does)
// What the client saw is `client connect-s`, `upload-s`, `bytes`, `eof` (yes/no),
// `eof-after-data-s`, `error` (an errno name such as ECONNRESET, "timeout" or "none"),
// `state-at-data` (its TCP state when the whole response had arrived), `state` (after
// reading) and `state-later` (0.5 s later); `server accepted` counts the server's
// connections. Every other expectation is about wrench's run, as with --expect.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proxy/fault/expect.h"
#include "proxy/fault/scenarios.h"

namespace wrench::proxy {

enum class CheckClientMode {
  kRequest,
  kCloseFirst,
  kSimClose,
  kCloseWait,
  kHalfClose,
  kFinWait2,
  kKeepAlive
};
enum class CheckServerMode { kClose, kWaitEof, kReadEof, kKeepAlive };

struct ScenarioCheck {
  CheckClientMode client = CheckClientMode::kRequest;
  CheckServerMode server = CheckServerMode::kClose;
  size_t response = 100;
  size_t upload = 0;
  double read_timeout_s = 10;
  double reuse_after_s = 1.5;  // keepalive client: idle time before the second request
  double server_idle_s = 1;    // keepalive server: idle time before it closes
  std::vector<Expectation> expectations;
};

// The scenario's `# Check:` and `# Expect:` lines; an error names the line.
absl::StatusOr<ScenarioCheck> ParseScenarioCheck(const Scenario& s);

// The command: runs the named scenarios (all when none is named) one after the
// other and prints a pass/fail line per expectation. 0 when all pass, 3 (as a failed
// --expect) when one fails, 2 for an unknown name, 1 when no namespace can be made.
int RunScenarioCheck(const std::vector<std::string>& names);

}  // namespace wrench::proxy
