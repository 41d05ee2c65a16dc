// The eleven connection states of RFC 9293 §3.3.2, named as the RFC names them.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>

#include "absl/strings/string_view.h"

namespace wrench::stack {

enum class TcpState : uint8_t {
  kClosed,
  kListen,
  kSynSent,
  kSynReceived,
  kEstablished,
  kFinWait1,
  kFinWait2,
  kCloseWait,
  kClosing,
  kLastAck,
  kTimeWait,
};

inline constexpr int kTcpStateCount = 11;

// "CLOSED", "LISTEN", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1",
// "FIN-WAIT-2", "CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT".
absl::string_view StateName(TcpState s);
// Inverse of StateName; case-insensitive, '_' accepted for '-'.
std::optional<TcpState> ParseStateName(absl::string_view name);

// True when `from` -> `to` is an edge of the RFC 9293 state diagram (Figure 5),
// including the edges every state has to CLOSED by RST or abort, and
// SYN-RECEIVED -> LISTEN for a passive open reset.
bool IsLegalTransition(TcpState from, TcpState to);

inline std::ostream& operator<<(std::ostream& os, TcpState s) { return os << StateName(s); }

}  // namespace wrench::stack
