// Tests for the captures (proxy/relay/capture.h): a pcap read back with libpcap (and, when
// installed, tshark, which must not complain), and the JSON-lines log written and
// read back with ReadJsonLog.
#include "proxy/relay/capture.h"

#include <pcap/pcap.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "stack/segment.h"

namespace wrench::proxy {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using stack::IpAddress;
using stack::SeqNum;
using stack::TcpFlags;

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "wrench_capture_test_" + std::to_string(::getpid()) + "_" + name;
}

// A segment between 10.89.0.1:40000 and 10.89.0.2:80 (or IPv6), emitted to bytes.
struct Datagram {
  stack::Segment seg;
  std::vector<uint8_t> bytes;
};

Datagram Make(bool to_server, TcpFlags flags, uint32_t seq, uint32_t ack,
              std::string_view payload = {}, bool v6 = false) {
  const IpAddress client = *IpAddress::Parse(v6 ? "fd00:89::1" : "10.89.0.1");
  const IpAddress server = *IpAddress::Parse(v6 ? "fd00:89::2" : "10.89.0.2");
  Datagram d;
  if (v6) {
    stack::Ipv6Repr ip;
    ip.src = to_server ? client : server;
    ip.dst = to_server ? server : client;
    d.seg.ip = ip;
  } else {
    stack::Ipv4Repr ip;
    ip.src = to_server ? client : server;
    ip.dst = to_server ? server : client;
    d.seg.ip = ip;
  }
  d.seg.tcp.src_port = to_server ? 40000 : 80;
  d.seg.tcp.dst_port = to_server ? 80 : 40000;
  d.seg.tcp.seq = SeqNum(seq);
  d.seg.tcp.ack = SeqNum(ack);
  d.seg.tcp.flags = flags;
  d.seg.tcp.window = 64240;
  if (flags.has(stack::kSyn)) {
    d.seg.tcp.options.mss = 1460;
    d.seg.tcp.options.window_scale = 7;
  }
  d.seg.tcp.payload = {reinterpret_cast<const uint8_t*>(payload.data()), payload.size()};
  d.bytes.resize(d.seg.BufferLen());
  EXPECT_TRUE(stack::EmitSegment(d.seg, absl::MakeSpan(d.bytes)).ok());
  return d;
}

const TcpFlags kSyn(stack::kSyn);
const TcpFlags kSynAck(stack::kSyn | stack::kAck);
const TcpFlags kPshAck(stack::kPsh | stack::kAck);
const stack::Instant kStart = absl::FromUnixMicros(1'700'000'000'000'000);

std::vector<Datagram> Handshake() {
  std::vector<Datagram> d;
  d.push_back(Make(true, kSyn, 1000, 0));
  d.push_back(Make(false, kSynAck, 5000, 1001));
  d.push_back(Make(true, kPshAck, 1001, 5001, "GET / HTTP/1.0\r\n\r\n", /*v6=*/true));
  return d;
}

TEST(PcapWriter, WritesRawIpRecordsThatLibpcapReadsBack) {
  const std::string path = TempPath("roundtrip.pcap");
  std::vector<Datagram> d = Handshake();
  {
    absl::StatusOr<PcapWriter> w = PcapWriter::Open(path);
    ASSERT_TRUE(w.ok()) << w.status();
    for (size_t i = 0; i < d.size(); ++i) {
      w->Write(kStart + absl::Microseconds(1500 * i), d[i].bytes);
    }
    ASSERT_TRUE(w->Close().ok());
  }

  // The file header says LINKTYPE_RAW (101), whatever DLT_RAW is on this platform.
  std::ifstream raw(path, std::ios::binary);
  std::vector<uint8_t> header(24);
  raw.read(reinterpret_cast<char*>(header.data()), 24);
  ASSERT_TRUE(raw);
  const uint32_t magic = header[0] | header[1] << 8 | header[2] << 16 | uint32_t{header[3]} << 24;
  ASSERT_EQ(magic, 0xa1b2c3d4u);  // microsecond pcap, little-endian (this host)
  EXPECT_EQ(header[20] | header[21] << 8, 101);

  char err[PCAP_ERRBUF_SIZE];
  pcap_t* p = pcap_open_offline(path.c_str(), err);
  ASSERT_NE(p, nullptr) << err;
  EXPECT_EQ(pcap_datalink(p), DLT_RAW);
  for (size_t i = 0; i < d.size(); ++i) {
    pcap_pkthdr* h = nullptr;
    const u_char* data = nullptr;
    ASSERT_EQ(pcap_next_ex(p, &h, &data), 1) << "record " << i;
    EXPECT_EQ(absl::TimeFromTimeval(h->ts), kStart + absl::Microseconds(1500 * i));
    ASSERT_EQ(h->caplen, d[i].bytes.size());
    EXPECT_EQ(h->len, d[i].bytes.size());
    EXPECT_EQ(std::vector<uint8_t>(data, data + h->caplen), d[i].bytes);
  }
  pcap_pkthdr* h = nullptr;
  const u_char* data = nullptr;
  EXPECT_EQ(pcap_next_ex(p, &h, &data), PCAP_ERROR_BREAK);  // end of file
  pcap_close(p);
  std::remove(path.c_str());
}

TEST(PcapWriter, WallOffsetShiftsEveryTimestamp) {
  const std::string path = TempPath("offset.pcap");
  const stack::Instant monotonic = absl::UnixEpoch() + absl::Hours(5);  // hours since boot
  {
    PcapWriter w = std::move(PcapWriter::Open(path, kStart - monotonic)).value();
    w.Write(monotonic + absl::Milliseconds(2), Handshake()[0].bytes);
  }
  char err[PCAP_ERRBUF_SIZE];
  pcap_t* p = pcap_open_offline(path.c_str(), err);
  ASSERT_NE(p, nullptr) << err;
  pcap_pkthdr* h = nullptr;
  const u_char* data = nullptr;
  ASSERT_EQ(pcap_next_ex(p, &h, &data), 1);
  EXPECT_EQ(absl::TimeFromTimeval(h->ts), kStart + absl::Milliseconds(2));
  pcap_close(p);
  std::remove(path.c_str());
}

TEST(PcapWriter, UnopenablePathIsAnErrorNamingTheFlagAndFile) {
  absl::StatusOr<PcapWriter> w = PcapWriter::Open("/nonexistent-dir/x.pcap");
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(w.status().message(),
              AllOf(HasSubstr("cannot open --pcap file /nonexistent-dir/x.pcap"),
                    HasSubstr("No such file or directory")));
}

// tshark's verdict on a pcap, with IP and TCP checksum validation on (off by default).
std::string Tshark(const std::string& path) {
  const std::string cmd = "tshark -n -r '" + path +
                          "' -o ip.check_checksum:TRUE -o tcp.check_checksum:TRUE"
                          " -z expert,warn 2>&1";
  std::string out;
  if (FILE* f = ::popen(cmd.c_str(), "r")) {
    char buf[4096];
    for (int i = 0; i < 1000; ++i) {
      const size_t n = std::fread(buf, 1, sizeof buf, f);
      if (n == 0) break;
      out.append(buf, n);
    }
    ::pclose(f);
  }
  return out;
}

bool HaveTshark() { return std::system("command -v tshark >/dev/null 2>&1") == 0; }

TEST(PcapWriter, TsharkOpensItWithoutComplaint) {
  if (!HaveTshark()) GTEST_SKIP() << "tshark is not installed (scripts/install-deps.sh)";
  const std::string good = TempPath("good.pcap");
  const std::string bad = TempPath("bad.pcap");
  std::vector<Datagram> d = Handshake();
  {
    PcapWriter g = std::move(PcapWriter::Open(good)).value();
    PcapWriter b = std::move(PcapWriter::Open(bad)).value();
    for (size_t i = 0; i < d.size(); ++i) {
      g.Write(kStart + absl::Milliseconds(i), d[i].bytes);
      std::vector<uint8_t> corrupt = d[i].bytes;
      corrupt.back() ^= 0xff;  // any one changed byte breaks the TCP checksum
      b.Write(kStart + absl::Milliseconds(i), corrupt);
    }
  }
  const std::string verdict = Tshark(good);
  EXPECT_THAT(verdict, AllOf(HasSubstr("10.89.0.1"), HasSubstr("fd00:89::2")));
  EXPECT_THAT(verdict, AllOf(Not(HasSubstr("Malformed")), Not(HasSubstr("hecksum")),
                             Not(HasSubstr("INCORRECT"))))
      << verdict;
  // The control: the same check does see a damaged segment.
  EXPECT_THAT(Tshark(bad), HasSubstr("hecksum"));
  std::remove(good.c_str());
  std::remove(bad.c_str());
}

TEST(JsonLog, RoundTripsThroughReadJsonLog) {
  const std::string path = TempPath("log.jsonl");
  std::vector<Datagram> d = Handshake();
  {
    // The proxy's clock is monotonic (hours since boot); the offset maps it to kStart's
    // date for "wall", while "t" counts from the start given here.
    const stack::Instant kMonotonic = absl::UnixEpoch() + absl::Hours(5);
    absl::StatusOr<JsonLog> log = JsonLog::Open(
        path, kMonotonic, {.wall_time = true, .wall_offset = kStart - kMonotonic});
    ASSERT_TRUE(log.ok()) << log.status();
    SegmentRecord syn{.at = kMonotonic + absl::Microseconds(12'345'678),
                      .conn = 7,
                      .hook = Hook::kFromClient,
                      .seg = &d[0].seg,
                      .seq_base = 1000,
                      .ack_base = 0,
                      .state_before = stack::TcpState::kListen,
                      .state_after = stack::TcpState::kSynReceived};
    log->Write(syn);
    SegmentRecord dropped{.at = kMonotonic + absl::Seconds(13),
                          .conn = 7,
                          .hook = Hook::kToClient,
                          .seg = &d[1].seg,
                          .seq_base = 5000,
                          .ack_base = 1000,
                          .state_before = stack::TcpState::kSynReceived,
                          .state_after = stack::TcpState::kSynReceived,
                          .rule_id = 2,
                          .rule_text = "drop on=to-client flags=SYN+ACK \"quoted\"",
                          .action = "drop"};
    log->Write(dropped);
    SegmentRecord data{.at = kMonotonic + absl::Seconds(14),
                       .conn = 7,
                       .hook = Hook::kFromServer,
                       .seg = &d[2].seg,
                       .seq_base = 1000,
                       .ack_base = 5000};
    log->Write(data);
    log->Write({.at = kMonotonic + absl::Seconds(15), .conn = 7, .hook = Hook::kToServer,
                .note = "upstream connect refused"});
    ASSERT_TRUE(log->Close().ok());
  }

  absl::StatusOr<std::vector<nlohmann::json>> lines = ReadJsonLog(path);
  ASSERT_TRUE(lines.ok()) << lines.status();
  ASSERT_EQ(lines->size(), 4u);
  const nlohmann::json& syn = (*lines)[0];
  EXPECT_EQ(syn["t"], 12.345678);
  EXPECT_EQ(syn["wall"], "2023-11-14T22:13:32.345678Z");
  EXPECT_EQ(syn["conn"], 7);
  EXPECT_EQ(syn["hook"], "from-client");
  EXPECT_EQ(syn["src"], "10.89.0.1:40000");
  EXPECT_EQ(syn["dst"], "10.89.0.2:80");
  EXPECT_EQ(syn["flags"], "SYN");
  EXPECT_EQ(syn["seq"], 1000);
  EXPECT_EQ(syn["rseq"], 0);
  EXPECT_FALSE(syn.contains("ack"));  // no ACK flag, no ack field
  EXPECT_EQ(syn["len"], 0);
  EXPECT_EQ(syn["win"], 64240);
  EXPECT_EQ(syn["mss"], 1460);
  EXPECT_EQ(syn["wscale"], 7);
  EXPECT_EQ(syn["before"], "LISTEN");
  EXPECT_EQ(syn["after"], "SYN-RECEIVED");
  EXPECT_FALSE(syn.contains("rule"));

  const nlohmann::json& dropped = (*lines)[1];
  EXPECT_EQ(dropped["flags"], "SYN+ACK");
  EXPECT_EQ(dropped["ack"], 1001);
  EXPECT_EQ(dropped["rack"], 1);
  EXPECT_EQ(dropped["rule"], 2);
  EXPECT_EQ(dropped["rule_text"], "drop on=to-client flags=SYN+ACK \"quoted\"");
  EXPECT_EQ(dropped["action"], "drop");

  const nlohmann::json& data = (*lines)[2];
  EXPECT_EQ(data["src"], "[fd00:89::1]:40000");
  EXPECT_EQ(data["rseq"], 1);
  EXPECT_EQ(data["rack"], 1);
  EXPECT_EQ(data["len"], 18);
  EXPECT_FALSE(data.contains("before"));  // a leg without an endpoint

  const nlohmann::json& note = (*lines)[3];
  EXPECT_EQ(note["note"], "upstream connect refused");
  EXPECT_FALSE(note.contains("flags"));
  std::remove(path.c_str());
}

TEST(JsonLog, KeysComeInADocumentedOrder) {
  JsonLog log = std::move(JsonLog::Open("/dev/null", kStart)).value();
  std::vector<Datagram> d = Handshake();
  SegmentRecord r{.at = kStart, .conn = 1, .hook = Hook::kToServer, .seg = &d[1].seg,
                  .seq_base = 5000, .ack_base = 1000};
  EXPECT_EQ(log.ToJson(r).dump(),
            R"({"t":0.0,"conn":1,"hook":"to-server","src":"10.89.0.2:80",)"
            R"("dst":"10.89.0.1:40000","flags":"SYN+ACK","seq":5000,"rseq":0,"ack":1001,)"
            R"("rack":1,"len":0,"win":64240,"mss":1460,"wscale":7})");
}

TEST(JsonLog, UnopenablePathIsAnErrorNamingTheFlagAndFile) {
  absl::StatusOr<JsonLog> log = JsonLog::Open("/nonexistent-dir/x.jsonl", kStart);
  ASSERT_FALSE(log.ok());
  EXPECT_THAT(log.status().message(),
              HasSubstr("cannot open --log file /nonexistent-dir/x.jsonl: No such file"));
}

TEST(ReadJsonLog, ErrorsNameTheLine) {
  const std::string path = TempPath("bad.jsonl");
  {
    std::ofstream f(path);
    f << R"({"t":0.5})" << "\n\n" << R"({"t":1.0})" << "\n" << R"({"t": oops})" << "\n";
  }
  absl::StatusOr<std::vector<nlohmann::json>> r = ReadJsonLog(path);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status()));
  EXPECT_THAT(r.status().message(), HasSubstr(path + ":4: not JSON"));
  {
    std::ofstream f(path);
    f << R"({"t":0.5})" << "\n" << "[1,2]\n";
  }
  EXPECT_THAT(ReadJsonLog(path).status().message(),
              HasSubstr(path + ":2: not a JSON object but array"));
  std::remove(path.c_str());
  EXPECT_THAT(ReadJsonLog(path).status().message(), HasSubstr("cannot open log file"));
}

}  // namespace
}  // namespace wrench::proxy
