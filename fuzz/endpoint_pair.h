// The endpoint_pair fuzz input's header: how the two simulated endpoints are set up
// and what their applications do. The link verdicts follow it, one byte a segment.
// The target and the corpus generator share this encoding.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/types/span.h"

namespace wrench::fuzz {

enum class PairMode : uint8_t {
  kBothSendAndClose,   // both send, then close: crossing FINs, maybe simultaneous close
  kHalfCloseRequest,   // A sends and closes; B answers after A's FIN, then closes
  kRequestResponse,    // A sends; B answers and closes; A closes after B's FIN
  kServerClosesFirst,  // B sends and closes at once; A sends after B's FIN, then closes
};

// Kept under 24 KiB: the simulator moves bytes one by one, and speed is coverage.
inline constexpr uint32_t kPairSizes[16] = {0,    1,    10,    100,   536,   1000,  1460,  2920,
                                            4000, 5000, 8192, 10000, 12000, 16384, 24000, 3};

struct PairConfig {
  bool simultaneous_open = false;
  PairMode mode = PairMode::kBothSendAndClose;
  bool trace = false;           // keep the trace and print the ladder
  uint8_t msl = 1;              // MSL = 500 ms * (1 + msl % 8)
  uint8_t a_options_off = 0;  // bit 0 window scaling, 1 SACK, 2 timestamps off; 3 BBR (else CUBIC)
  uint8_t b_options_off = 0;
  uint8_t a_size = 3;           // index into kPairSizes: bytes A sends
  uint8_t b_size = 5;
  uint8_t a_buffers = 0;        // bits 0-1 send, 2-3 receive buffer size index
  uint8_t b_buffers = 0;
  uint8_t a_mss = 0;
  uint8_t b_mss = 0;
  uint8_t a_read_stall = 0;     // the application reads nothing for 100 ms * this
  uint8_t b_read_stall = 0;
  uint8_t latency = 0;
  uint32_t a_iss = 1000;
  uint32_t b_iss = 5000;
  static constexpr size_t kSize = 16;

  uint64_t a_bytes() const { return kPairSizes[a_size & 15]; }
  uint64_t b_bytes() const { return kPairSizes[b_size & 15]; }
};

PairConfig ParsePairConfig(absl::Span<const uint8_t> bytes);
std::vector<uint8_t> SerializePairConfig(const PairConfig& c);
std::string ToString(const PairConfig& c);

// Link verdict bytes: below 0x80 pass; 0x80-0x9f drop; 0xa0-0xbf duplicate
// (1 + bit 0 extra copies, 5 ms * bits 1-4 later); 0xc0-0xfe delay 10 ms * (1 +
// low 6 bits); 0xff delay 5 s.
inline constexpr uint8_t kPass = 0x00;
inline constexpr uint8_t kDrop = 0x80;
inline constexpr uint8_t kDuplicate = 0xa0;
inline constexpr uint8_t kDelay50ms = 0xc4;
inline constexpr uint8_t kDelay5s = 0xff;

}  // namespace wrench::fuzz
