// The pcap writer (libpcap's dumper on a "dead" DLT_RAW handle), the JSON-lines
// segment log (nlohmann::ordered_json, so keys keep a readable order), and its reader.
#include "proxy/relay/capture.h"

#include <pcap/pcap.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "proxy/os/os_status.h"

namespace wrench::proxy {
namespace {

// The largest IP datagram; also the largest MTU a TUN takes, so nothing is cut.
constexpr int kSnapLen = 65535;

std::string Endpoint(const stack::IpAddress& a, uint16_t port) {
  return a.is_v6() ? absl::StrCat("[", a.ToString(), "]:", port)
                   : absl::StrCat(a.ToString(), ":", port);
}

// Seconds since `start`, rounded to the microsecond so the log shows 12.345678
// rather than 12.345677999999999.
double RelativeSeconds(stack::Instant at, stack::Instant start) {
  const int64_t us = absl::ToInt64Microseconds(at - start);
  return static_cast<double>(us) / 1e6;
}

}  // namespace

// ---- PcapWriter ----

void PcapWriter::Deleter::operator()(pcap* p) const { pcap_close(p); }
void PcapWriter::Deleter::operator()(pcap_dumper* d) const { pcap_dump_close(d); }

absl::StatusOr<PcapWriter> PcapWriter::Open(const std::string& path, stack::Duration wall_offset) {
  std::unique_ptr<pcap, Deleter> p(pcap_open_dead(DLT_RAW, kSnapLen));
  if (!p)
    return absl::ResourceExhaustedError("cannot open --pcap file " + path + ": out of memory");
  std::unique_ptr<pcap_dumper, Deleter> d(pcap_dump_open(p.get(), path.c_str()));
  if (!d) {
    // libpcap's text already has the reason ("x.pcap: No such file or directory").
    return absl::UnavailableError(
        absl::StrCat("cannot open --pcap file ", path, ": ", pcap_geterr(p.get())));
  }
  return PcapWriter(path, wall_offset, std::move(p), std::move(d));
}

// Members go in reverse order: the dumper (which flushes) before its pcap handle.
PcapWriter::~PcapWriter() = default;

void PcapWriter::Write(stack::Instant at, absl::Span<const uint8_t> datagram) {
  if (!dumper_) return;
  pcap_pkthdr h{};
  h.ts = absl::ToTimeval(at + wall_offset_);
  h.len = static_cast<bpf_u_int32>(datagram.size());
  h.caplen = static_cast<bpf_u_int32>(std::min<size_t>(datagram.size(), kSnapLen));
  pcap_dump(reinterpret_cast<u_char*>(dumper_.get()), &h, datagram.data());
}

absl::Status PcapWriter::Flush() {
  if (!dumper_) return absl::OkStatus();
  errno = 0;
  if (pcap_dump_flush(dumper_.get()) != 0 || std::ferror(pcap_dump_file(dumper_.get()))) {
    const int err = errno != 0 ? errno : EIO;
    return ErrnoStatus(err, absl::StrCat("writing --pcap file ", path_));
  }
  return absl::OkStatus();
}

absl::Status PcapWriter::Close() {
  absl::Status s = Flush();
  dumper_.reset();
  pcap_.reset();
  return s;
}

// ---- JsonLog ----

void JsonLog::FileCloser::operator()(std::FILE* f) const {
  if (f != stdout) std::fclose(f);
}

absl::StatusOr<JsonLog> JsonLog::Open(const std::string& path, stack::Instant start,
                                      JsonLogOptions opts) {
  std::FILE* f = path == "-" ? stdout : std::fopen(path.c_str(), "we");
  if (f == nullptr) {
    const int err = errno;
    return ErrnoStatus(err, absl::StrCat("cannot open --log file ", path));
  }
  return JsonLog(path, std::unique_ptr<std::FILE, FileCloser>(f), start, opts);
}

JsonLog::~JsonLog() {
  if (file_) std::fflush(file_.get());
}

nlohmann::ordered_json JsonLog::ToJson(const SegmentRecord& r) const {
  nlohmann::ordered_json j;
  j["t"] = RelativeSeconds(r.at, start_);
  if (opts_.wall_time) {
    j["wall"] =
        absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", r.at + opts_.wall_offset, absl::UTCTimeZone());
  }
  j["conn"] = r.conn;
  j["hook"] = std::string(HookName(r.hook));
  if (r.seg != nullptr) {
    const stack::TcpRepr& tcp = r.seg->tcp;
    j["src"] = Endpoint(r.seg->src(), tcp.src_port);
    j["dst"] = Endpoint(r.seg->dst(), tcp.dst_port);
    j["flags"] = tcp.flags.ToString();
    j["seq"] = tcp.seq.raw();
    j["rseq"] = static_cast<uint32_t>(tcp.seq.raw() - r.seq_base);
    if (tcp.flags.has(stack::kAck)) {
      j["ack"] = tcp.ack.raw();
      j["rack"] = static_cast<uint32_t>(tcp.ack.raw() - r.ack_base);
    }
    j["len"] = tcp.payload.size();
    j["win"] = tcp.window;
    if (tcp.options.mss) j["mss"] = *tcp.options.mss;
    if (tcp.options.window_scale) j["wscale"] = *tcp.options.window_scale;
  }
  if (r.state_before) j["before"] = std::string(stack::StateName(*r.state_before));
  if (r.state_after) j["after"] = std::string(stack::StateName(*r.state_after));
  if (r.rule_id != 0) {
    j["rule"] = r.rule_id;
    j["rule_text"] = std::string(r.rule_text);
  }
  if (!r.action.empty()) j["action"] = std::string(r.action);
  if (!r.detail.empty()) j["detail"] = std::string(r.detail);
  if (!r.note.empty()) j["note"] = std::string(r.note);
  return j;
}

void JsonLog::Write(const SegmentRecord& r) {
  if (!file_) return;
  // `replace`: a rule text or note with invalid UTF-8 must not throw from dump().
  std::string line =
      ToJson(r).dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
  line.push_back('\n');
  std::fwrite(line.data(), 1, line.size(), file_.get());
}

absl::Status JsonLog::Flush() {
  if (!file_) return absl::OkStatus();
  errno = 0;
  if (std::fflush(file_.get()) != 0 || std::ferror(file_.get())) {
    const int err = errno != 0 ? errno : EIO;
    return ErrnoStatus(err, absl::StrCat("writing --log file ", path_));
  }
  return absl::OkStatus();
}

absl::Status JsonLog::Close() {
  absl::Status s = Flush();
  if (file_ && file_.get() != stdout) {
    std::FILE* f = file_.release();
    if (std::fclose(f) != 0 && s.ok()) {
      const int err = errno;
      s = ErrnoStatus(err, absl::StrCat("closing --log file ", path_));
    }
  }
  file_.reset();
  return s;
}

// ---- ReadJsonLog ----

absl::StatusOr<std::vector<nlohmann::json>> ReadJsonLog(const std::string& path,
                                                        std::vector<int>* line_numbers) {
  std::ifstream file;
  const bool standard_input = path == "-";
  if (!standard_input) {
    errno = 0;
    file.open(path);
    if (!file) {
      const int err = errno != 0 ? errno : ENOENT;
      return ErrnoStatus(err, absl::StrCat("cannot open log file ", path));
    }
  }
  std::istream& in = standard_input ? std::cin : file;
  const std::string name = standard_input ? "stdin" : path;
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) {
    return absl::DataLossError(absl::StrCat("reading log file ", name, ": I/O error"));
  }
  // A capture of the same run is the likeliest wrong file: say which file is wanted.
  static constexpr uint32_t kPcapMagics[] = {0xa1b2c3d4, 0xd4c3b2a1, 0xa1b23c4d, 0x4d3cb2a1,
                                             0x0a0d0d0a};
  uint32_t magic = 0;
  if (text.size() >= 4) std::memcpy(&magic, text.data(), 4);
  for (uint32_t k : kPcapMagics) {
    if (magic == k) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, " is a pcap; give the --log file (the JSON lines wrench wrote with --log=FILE)"));
    }
  }
  std::vector<nlohmann::json> out;
  int lineno = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == absl::string_view::npos) continue;
    // nlohmann reports a parse error only as an exception; it stays inside this loop.
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line.begin(), line.end());
    } catch (const nlohmann::json::parse_error& e) {
      return absl::InvalidArgumentError(absl::StrCat(name, ":", lineno, ": not JSON: ", e.what()));
    }
    if (!j.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ":", lineno, ": not a JSON object but ", j.type_name()));
    }
    out.push_back(std::move(j));
    if (line_numbers != nullptr) line_numbers->push_back(lineno);
  }
  return out;
}

SegmentRecord RecordOf(stack::Instant at, uint64_t conn, Hook hook, const stack::Segment& seg,
                       std::optional<stack::TcpState> before, std::optional<stack::TcpState> after,
                       const stack::TcpEndpoint* ep, const Decision* decision) {
  SegmentRecord r{.at = at, .conn = conn, .hook = hook, .seg = &seg};
  r.state_before = before;
  r.state_after = after;
  if (ep) {
    // Relative numbers: the sender's ISN for seq, the receiver's for ack.
    uint32_t ours = ep->tcb().iss.raw(), theirs = ep->tcb().irs.raw();
    bool inbound = hook == Hook::kFromClient || hook == Hook::kFromServer;
    r.seq_base = inbound ? theirs : ours;
    r.ack_base = inbound ? ours : theirs;
  }
  if (decision) {
    r.rule_id = decision->rule_id;
    r.rule_text = decision->rule_text;
    const absl::string_view name = ActionName(decision->action);
    r.action = {name.data(), name.size()};
    r.detail = decision->detail;
  }
  return r;
}

}  // namespace wrench::proxy
