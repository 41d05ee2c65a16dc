// The differential harness (docs/stack.md, "Compared
// with Linux"): one packetdrill-style script of inbound segments and application
// calls is played into wrench's TcpEndpoint on a virtual clock and into a Linux
// kernel socket behind a TUN device in a fresh network namespace, and what each
// sends back is compared segment by segment.
//
// Script format (tests/diff/*.pkt), one event a line, `#` starts a comment:
//
//   mode passive              the kernel listens / the endpoint Listen()s (default)
//   mode active               the kernel connects / the endpoint Connect()s at `connect`
//   compare window            also compare advertised windows (off by default: the
//                             receive buffers differ by design)
//   tail 2.5                  seconds to keep watching after the last event (default 1)
//
//   0.000 < S 0:0(0) win 65535 <mss 1460,sackOK,TS val 100 ecr 0,nop,wscale 7>
//   +0    > S. 0:0(0) ack 1 <mss 1460,sackOK,TS val * ecr 100,nop,wscale *>
//   +0.01 < . 1:1(0) ack 1 win 1000
//   +0    write 2920          the application sends that many bytes
//   +0    read                it reads everything readable; the result is compared
//   +0    close               half-close: Close() / shutdown(SHUT_WR)
//   +0    abort               Abort() / SO_LINGER 0 and close()
//   +0    connect             active open
//   +0    state               the connection's state is compared
//
// A time is absolute (seconds from the start) or `+` relative to the previous line.
// `<` lines are the peer's segments: seq relative to the peer's ISN, ack and SACK
// blocks relative to the system under test's ISN, `TS ecr` replaced by the last TSval
// that system sent (a real peer echoes it). `>` lines are optional assertions about
// the kernel's answer (the reference): every field written must match a segment the
// kernel sent in order and in time (`*` for a TSval or window scale: any value).
// Flags: S F R P . (ACK) E W, as packetdrill.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "stack/tcp_endpoint.h"
#include "stack/tcp_wire.h"

namespace wrench::tcpdiff {

// The endpoint configuration under comparison: change this one line to compare
// another profile with Linux.
inline stack::TcpConfig DiffConfig() { return stack::TcpConfig{}; }

struct SegmentSpec {
  stack::TcpFlags flags;
  uint32_t seq = 0;  // relative
  uint32_t len = 0;
  std::optional<uint32_t> ack;  // relative; set when written
  std::optional<uint16_t> window;
  bool options_given = false;   // a <...> list was written
  std::optional<uint16_t> mss;
  std::optional<uint8_t> wscale;
  bool wscale_any = false;  // assertions: `wscale *`, present with any shift
  bool sack_ok = false;
  bool ts = false;
  uint32_t ts_val = 0;
  bool ts_val_any = false;
  std::optional<uint32_t> ts_ecr;  // assertions only (inbound ecr is substituted)
  std::vector<std::pair<uint32_t, uint32_t>> sack;  // relative
};

enum class EventKind { kInbound, kExpect, kWrite, kRead, kClose, kAbort, kConnect, kState };

struct Event {
  EventKind kind = EventKind::kInbound;
  absl::Duration at;
  int line = 0;
  std::string text;  // the line as written, for reports
  SegmentSpec seg;   // kInbound, kExpect
  size_t bytes = 0;  // kWrite
};

struct Script {
  std::string name;
  std::string description;  // the leading comment block
  bool passive = true;
  bool compare_window = false;
  absl::Duration tail = absl::Seconds(1);
  std::vector<Event> events;
};

absl::StatusOr<Script> ParseScript(absl::string_view name, absl::string_view text);

// A segment the system under test sent, with numbers made relative.
struct OutSegment {
  absl::Duration at;
  stack::TcpFlags flags;
  uint32_t seq = 0;  // relative to the sender's ISN (absolute before it is known)
  uint32_t len = 0;
  uint32_t ack = 0;  // relative to the peer's ISN
  uint16_t window = 0;
  std::optional<uint16_t> mss;
  std::optional<uint8_t> wscale;
  bool sack_ok = false;
  bool ts = false;
  uint32_t ts_ecr = 0;
  std::vector<std::pair<uint32_t, uint32_t>> sack;  // relative to the peer's ISN
};

// What an application call returned, per event: "read 1460", "read EOF",
// "read error reset", "state ESTABLISHED", "write 2920".
struct AppResult {
  int line = 0;
  std::string text;
};

struct Trace {
  std::vector<OutSegment> segments;
  std::vector<AppResult> app;
  std::string error;  // the harness could not play the script (set up, I/O)
};

// The peer's fixed numbers and addresses (the same for both systems).
inline constexpr uint32_t kPeerIsn = 1'000'000;
inline constexpr uint16_t kSutPort = 8080;
inline constexpr uint16_t kPeerPort = 40000;

Trace RunWrench(const Script& s, const stack::TcpConfig& cfg);
// Call inside a fresh network namespace (it creates its TUN device there).
Trace RunLinux(const Script& s);

struct Difference {
  std::string kind;  // time, psh, window, mss, wscale, sackOK, ts, ecr, sack, only-linux,
                     // only-wrench, app, assert, harness
  std::string text;
};

struct KnownDifference {
  const char* script;  // a script name, or "*"
  const char* kind;
  const char* contains;  // a substring of the difference's text ("" for any)
  const char* reason;
};

struct Comparison {
  std::vector<Difference> differences;
  std::string report;  // side by side, readable
};

Comparison Compare(const Script& s, const Trace& linux_trace, const Trace& wrench_trace);

// The known difference `d` is an instance of, or nullptr.
const KnownDifference* FindKnown(absl::Span<const KnownDifference> known,
                                 absl::string_view script, const Difference& d);

std::string FormatSegment(const OutSegment& s);

}  // namespace wrench::tcpdiff
