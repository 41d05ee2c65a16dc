// Ladder diagrams of a --log capture (`wrench ladder`): every connection drawn as the
// textbooks' sequence diagram — client, the proxy's two legs and server as vertical
// lines, one arrow per segment — as monospace text for the terminal, or as SVG/HTML.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "nlohmann/json.hpp"
#include "proxy/fault/rule.h"
#include "stack/tcp_state.h"
#include "stack/tcp_wire.h"

namespace wrench::proxy {

// One line of a JSON log (proxy/relay/capture.h), checked: a segment at a hook, or a note.
struct LadderRecord {
  int line = 0;  // in the log file, for messages
  double t = 0;  // seconds since the log started
  uint64_t conn = 0;
  Hook hook = Hook::kFromClient;
  bool has_segment = false;  // false: a note about the connection only
  std::string src, dst;      // "10.89.0.2:40000"; may be empty
  stack::TcpFlags flags;
  std::string flags_text;              // as logged: "SYN+ACK"
  std::optional<uint32_t> seq, ack;    // absolute, when logged
  std::optional<uint32_t> rseq, rack;  // relative, as the proxy computed them
  uint32_t len = 0;
  std::optional<stack::TcpState> before, after;  // the proxy endpoint on this leg
  int rule = 0;
  std::string rule_text, action, detail, note;  // action: "delay"; detail: "delayed 2s"
};

// Checks the objects ReadJsonLog returned (`line_numbers` parallel to `objects`).
// Every record needs t, conn and hook; a segment needs flags, seq or rseq, ack or
// rack when ACK is set, and len. Errors name the file and line:
// "log.jsonl:17: no \"hook\" field (every record has t, conn and hook)".
absl::StatusOr<std::vector<LadderRecord>> ParseLadderRecords(
    absl::Span<const nlohmann::json> objects, absl::Span<const int> line_numbers,
    const std::string& path);
// ReadJsonLog + ParseLadderRecords. An empty log is an error that says so.
absl::StatusOr<std::vector<LadderRecord>> ReadLadderLog(const std::string& path);

// The vertical lines, left to right.
enum class LadderLine : uint8_t { kClient, kClientLeg, kServerLeg, kServer };

// One segment's arrow. It leaves `from` at `row` and reaches `to` at `end_row`:
// the same row unless a rule held it (delay, reorder), which slants it.
struct LadderArrow {
  enum class Fate : uint8_t {
    kDelivered,
    kDropped,  // ends halfway in a cross
    kHeld,     // delayed or reordered: arrives at end_row
    kCopy,     // an extra copy a dup rule made
  };
  LadderLine from = LadderLine::kClient, to = LadderLine::kClientLeg;
  size_t row = 0, end_row = 0;
  Fate fate = Fate::kDelivered;
  bool mutated = false;  // a set/add/corrupt/rst rule changed it
  std::string label;     // "FIN+ACK seq=101 ack=1001", relative numbers
  std::vector<std::string> notes;  // what a rule did: "dropped [rule 1: drop on=...]"
};

// A state written on a line at a row: the proxy endpoint's (from the log) or a
// kernel peer's (inferred from the segments it sent and received).
struct LadderState {
  size_t row = 0;
  LadderLine line = LadderLine::kClient;
  stack::TcpState state = stack::TcpState::kClosed;
  bool inferred = false;
};

struct LadderRow {
  enum class Kind : uint8_t {
    kArrow,    // an arrow leaves here
    kArrival,  // a held arrow arrives here
    kStates,   // only state labels
    kNote,     // a note record
  };
  Kind kind = Kind::kStates;
  double t = 0;
  std::string note;  // kNote
};

// One connection, laid out in rows (time flows down), format-independent.
struct Ladder {
  uint64_t conn = 0;
  bool server_leg = false;  // false: the upstream was a kernel socket, not logged
  std::string client_addr, front_addr, upstream_local_addr, server_addr;
  std::vector<LadderRow> rows;
  std::vector<LadderArrow> arrows;  // in row order
  std::vector<LadderState> states;
};

// Lays out every connection (conn 0, segments outside any connection, is left out),
// or only `only_conn`. Connections in order of their number.
std::vector<Ladder> BuildLadders(absl::Span<const LadderRecord> records,
                                 std::optional<uint64_t> only_conn = std::nullopt);

// Monospace text, at most `width` columns per line (the label and note columns
// shrink to fit; 100 by default), ends with a legend.
std::string RenderLadderText(absl::Span<const Ladder> ladders, int width = 100);
// One standalone SVG document, the connections one under another.
std::string RenderLadderSvg(absl::Span<const Ladder> ladders);
// A self-contained HTML page: a title, a legend and one inline SVG per connection.
std::string RenderLadderHtml(absl::Span<const Ladder> ladders, const std::string& title);

enum class LadderFormat : uint8_t { kText, kSvg, kHtml };
// The whole of `wrench ladder`: reads `path` and renders it. Errors: the file, a bad
// line, an empty log, or a `conn` the log does not have (the message lists those it has).
absl::StatusOr<std::string> DrawLadder(const std::string& path, LadderFormat format,
                                       std::optional<uint64_t> conn = std::nullopt);

}  // namespace wrench::proxy
