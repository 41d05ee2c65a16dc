// Captures of both legs (docs/ARCHITECTURE.md "Proxy data flow"): a pcap of every datagram as it
// crossed the wire (LINKTYPE_RAW, so Wireshark and tshark open it) and a JSON-lines
// log with one object per segment: hook, flags, seq/ack, states, and the rule that fired.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "nlohmann/json.hpp"
#include "proxy/fault/fault_engine.h"
#include "proxy/fault/rule.h"
#include "stack/segment.h"
#include "stack/tcp_endpoint.h"
#include "stack/tcp_state.h"
#include "stack/time.h"

struct pcap;
struct pcap_dumper;

namespace wrench::proxy {

// Writes raw IP datagrams to a pcap file (microsecond timestamps, snap length 65535).
class PcapWriter {
 public:
  // Creates or truncates `path` ("-" is stdout). The one error is a file that cannot
  // be opened: "cannot open --pcap file X: <reason>". `wall_offset` is added to every
  // record's time: a proxy that runs on a monotonic clock passes absl::Now() minus its
  // monotonic now, so Wireshark shows wall-clock dates rather than 1970.
  static absl::StatusOr<PcapWriter> Open(const std::string& path,
                                         stack::Duration wall_offset = absl::ZeroDuration());

  PcapWriter(PcapWriter&&) noexcept = default;
  PcapWriter& operator=(PcapWriter&&) noexcept = default;
  ~PcapWriter();  // flushes and closes; Close() first to see a write error

  // One record stamped `at` (wall time in the proxy, virtual time in a simulation).
  // Buffered: write errors surface at Flush() or Close().
  void Write(stack::Instant at, absl::Span<const uint8_t> datagram);
  absl::Status Flush();
  // Flushes and closes; later Writes are ignored.
  absl::Status Close();

 private:
  struct Deleter {
    void operator()(pcap* p) const;
    void operator()(pcap_dumper* d) const;
  };
  PcapWriter(std::string path, stack::Duration wall_offset, std::unique_ptr<pcap, Deleter> pcap,
             std::unique_ptr<pcap_dumper, Deleter> dumper)
      : path_(std::move(path)),
        wall_offset_(wall_offset),
        pcap_(std::move(pcap)),
        dumper_(std::move(dumper)) {}

  std::string path_;
  stack::Duration wall_offset_;
  std::unique_ptr<pcap, Deleter> pcap_;  // the "dead" handle the dumper belongs to
  std::unique_ptr<pcap_dumper, Deleter> dumper_;
};

// What the JSON log says about one segment at one hook. Views only: nothing is
// copied until Write. (std::string_view, not absl's: Debian's abseil keeps its own
// type, and convert an absl::string_view with {s.data(), s.size()}.)
struct SegmentRecord {
  // Every member has an initializer so that designated initializers may leave any
  // out (GCC's -Wmissing-field-initializers otherwise flags each omission).
  stack::Instant at{};
  uint64_t conn = 0;  // connection id, as the control API lists it
  Hook hook = Hook::kFromClient;
  // The segment; null for a record that is only a note about the connection.
  const stack::Segment* seg = nullptr;
  // The sender's and the receiver's ISN, so relative numbers read as tcpdump's: the
  // SYN is seq 0, the first data byte seq 1.
  uint32_t seq_base = 0;
  uint32_t ack_base = 0;
  // The proxy endpoint on this hook's leg, around the segment; empty where the leg
  // has no endpoint (the upstream leg on a kernel socket).
  std::optional<stack::TcpState> state_before{};
  std::optional<stack::TcpState> state_after{};
  int rule_id = 0;  // 0: no rule fired
  std::string_view rule_text{};
  std::string_view action{};  // the action's name, "drop", "delay"; may be set without a rule
  std::string_view detail{};  // what it did: "delayed 20ms", "seq 1000 -> 1001"
  std::string_view note{};
};

// A segment's record: numbered from `ep`'s ISNs when given (its own for what it sends,
// its peer's for what it receives), with what the rule that fired on it did.
SegmentRecord RecordOf(stack::Instant at, uint64_t conn, Hook hook, const stack::Segment& seg,
                       std::optional<stack::TcpState> before, std::optional<stack::TcpState> after,
                       const stack::TcpEndpoint* ep, const Decision* decision);

struct JsonLogOptions {
  // Adds "wall": "2024-05-01T12:00:00.123456Z" (UTC) to every line. Off by default
  // so that a simulated run's log is the same on every run.
  bool wall_time = false;
  // Added to a record's time for "wall" (see PcapWriter::Open); "t" is unaffected.
  stack::Duration wall_offset = absl::ZeroDuration();
};

// One JSON object per line, keys in this order (absent ones left out):
//   t           seconds since `start`, microsecond resolution (12.345678)
//   wall        ISO 8601 UTC time, with JsonLogOptions::wall_time
//   conn, hook  connection id, "from-client" | "to-client" | "from-server" | "to-server"
//   src, dst    "10.89.0.1:40000", "[fd00::1]:80"
//   flags       "SYN+ACK"
//   seq, rseq   absolute and relative (seq - seq_base)
//   ack, rack   absolute and relative (ack - ack_base), only when ACK is set
//   len, win    payload length, window as on the wire (unscaled)
//   mss, wscale options, when present
//   before, after  endpoint states, "ESTABLISHED"
//   rule, rule_text  when a rule fired (rule != 0)
//   action, detail, note  when not empty: action is the rule's action name ("drop",
//                    "delay"), detail what it did ("delayed 200ms", "seq 1 -> 2")
class JsonLog {
 public:
  // Creates or truncates `path` ("-" is stdout); "cannot open --log file X: <reason>".
  static absl::StatusOr<JsonLog> Open(const std::string& path, stack::Instant start,
                                      JsonLogOptions opts = {});

  JsonLog(JsonLog&&) noexcept = default;
  JsonLog& operator=(JsonLog&&) noexcept = default;
  ~JsonLog();  // flushes and closes

  // Buffered, like PcapWriter::Write.
  void Write(const SegmentRecord& r);
  // The object Write would print, for tests and the control API.
  nlohmann::ordered_json ToJson(const SegmentRecord& r) const;
  absl::Status Flush();
  absl::Status Close();

 private:
  struct FileCloser {
    void operator()(std::FILE* f) const;
  };
  JsonLog(std::string path, std::unique_ptr<std::FILE, FileCloser> file, stack::Instant start,
          JsonLogOptions opts)
      : path_(std::move(path)), file_(std::move(file)), start_(start), opts_(opts) {}

  std::string path_;
  std::unique_ptr<std::FILE, FileCloser> file_;
  stack::Instant start_;
  JsonLogOptions opts_;
};

// Reads a JSON-lines log back (for `wrench ladder` and tests): one object per
// non-blank line. Errors name the file and line: "log.jsonl:17: not JSON: ...".
// `line_numbers`, when given, receives each object's line in the file, so that a
// caller checking the objects can name the line too.
absl::StatusOr<std::vector<nlohmann::json>> ReadJsonLog(const std::string& path,
                                                        std::vector<int>* line_numbers = nullptr);

}  // namespace wrench::proxy
