// The tcp_endpoint fuzz input: a header configuring one endpoint, then a script of
// events — inbound segments whose seq and ack are chosen relative to the endpoint's
// own sequence space, application calls, and time. The target, its mutator and the
// corpus generator share this encoding.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "stack/congestion.h"

namespace wrench::fuzz {

// Byte 0 of the header.
enum HeaderBits : uint8_t {
  kPassiveOpen = 0x01,     // Listen (else Connect)
  kNoWindowScaling = 0x02,
  kNoSack = 0x04,
  kNoTimestamps = 0x08,
  kCongestionBits = 0x30,  // index into kCongestionChoices
};
inline constexpr int kCongestionShift = 4;
inline constexpr stack::CongestionAlgorithm kCongestionChoices[] = {
    stack::CongestionAlgorithm::kCubic, stack::CongestionAlgorithm::kNewReno,
    stack::CongestionAlgorithm::kBbr, stack::CongestionAlgorithm::kCubic};

struct ScriptHeader {
  uint8_t bits = kPassiveOpen;
  uint8_t send_buffer = 4;  // index into kBufferSizes
  uint8_t recv_buffer = 4;
  uint8_t mss = 0;          // index into kMssValues
  uint32_t own_iss = 1000;  // the endpoint's ISS
  uint32_t peer_iss = 5000; // the script's ISS: where its SYN and stream start
  static constexpr size_t kSize = 12;
};

inline constexpr uint32_t kBufferSizes[] = {4096, 1, 16, 100, 1000, 16384, 70000, 65535};
// 65495: the largest MSS an IPv4 datagram can carry (65535 - 20 - 20).
inline constexpr uint16_t kMssValues[] = {1460, 536, 100, 1, 9000, 1220, 65495, 64};

// Where an inbound segment's seq goes. "E" is RCV.NXT once the endpoint knows the
// script's ISS, else the script's ISS (for a SYN) or ISS+1.
enum class SeqMode : uint8_t {
  kNext,        // E
  kAhead,       // E + arg: out of order
  kBehind,      // E - arg: old or overlapping
  kStream,      // the script's ISS + 1 + arg: a retransmission from anywhere
  kRaw,         // arg * 65537: anywhere in the sequence space
  kWindowEdge,  // E + RCV.WND - arg: at the right edge of the window
  kCount,
};

// Where its ack goes, relative to what the endpoint has sent.
enum class AckMode : uint8_t {
  kSndNxt,    // everything sent
  kSndUna,    // a duplicate ACK
  kUnaPlus,   // SND.UNA + arg: partial, or past SND.NXT
  kNxtPlus,   // SND.NXT + arg: data never sent
  kUnaMinus,  // SND.UNA - arg: old
  kIssPlus,   // ISS + 1 + arg
  kRaw,       // arg * 65537
  kCount,
};

// Bits of SegmentEvent::options; values come from option_arg.
enum OptionBits : uint8_t {
  kOptMss = 0x01,        // MSS = option_arg
  kOptWscale = 0x02,     // window scale = option_arg & 15 (1460: 4)
  kOptSackOk = 0x04,
  kOptTs = 0x08,         // TSval from the script's clock, TSecr = the last TSval seen
  kOptSackMask = 0x30,   // 0-3 SACK blocks above SND.UNA
  kOptUnknown = 0x40,    // an option kind the stack does not know (30, MPTCP)
  kOptTsEcrZero = 0x80,  // TSecr = 0
};

struct SegmentEvent {
  uint8_t flags = 0x10;  // stack::TcpFlag bits; ACK
  SeqMode seq_mode = SeqMode::kNext;
  uint16_t seq_arg = 0;
  AckMode ack_mode = AckMode::kSndNxt;
  uint16_t ack_arg = 0;
  uint16_t window = 65535;
  uint16_t len = 0;  // payload bytes (at most kMaxPayload)
  uint8_t options = 0;
  uint16_t option_arg = 0;
  static constexpr size_t kSize = 14;
  static constexpr uint16_t kMaxPayload = 4095;
};

enum class EventKind : uint8_t {
  kSegment,     // an inbound segment
  kSend,        // the application sends arg bytes
  kReceive,     // the application reads up to arg bytes (0: everything)
  kClose,
  kAbort,
  kAdvance,     // time moves arg milliseconds; a due timer fires
  kToDeadline,  // time moves to the endpoint's next deadline and it fires
  kPoll,        // only collect output
};

struct Event {
  EventKind kind = EventKind::kPoll;
  // Do not poll the endpoint after this event (several segments arrive at once).
  bool hold = false;
  SegmentEvent seg;
  uint16_t arg = 0;
};

struct Script {
  ScriptHeader header;
  std::vector<Event> events;
};

// Decodes any bytes: a short header is zero-padded, a truncated last event too.
Script ParseScript(absl::Span<const uint8_t> bytes);
std::vector<uint8_t> SerializeScript(const Script& s);

// "SYN seq=next ack=snd.nxt win=65535 len=0 <mss 1460>", "send 100", "advance 200ms".
std::string ToString(const Event& e);
std::string ToString(const ScriptHeader& h);

// Builders for hand-written scripts (the corpus generator and tests).
Event Segment(uint8_t flags, SeqMode seq = SeqMode::kNext, uint16_t seq_arg = 0,
              AckMode ack = AckMode::kSndNxt, uint16_t ack_arg = 0, uint16_t len = 0);
Event AppSend(uint16_t n);
Event AppReceive(uint16_t n = 0);
Event AppClose();
Event AppAbort();
Event Advance(uint16_t ms);
Event ToDeadline();
Event PollOnly();

}  // namespace wrench::fuzz
