// State names and the edges of the RFC 9293 connection state diagram (§3.3.2,
// Figure 5). The endpoint asserts its transitions against this table, and logs and
// the rule language use the names.
#include "stack/tcp_state.h"

#include <array>

#include "absl/strings/ascii.h"

namespace wrench::stack {
namespace {

constexpr std::array<absl::string_view, kTcpStateCount> kNames = {
    "CLOSED",     "LISTEN",     "SYN-SENT",   "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1",
    "FIN-WAIT-2", "CLOSE-WAIT", "CLOSING",    "LAST-ACK",     "TIME-WAIT",
};

constexpr uint16_t Bit(TcpState s) { return static_cast<uint16_t>(1u << static_cast<int>(s)); }

using S = TcpState;

// kEdges[from] has a bit per state reachable in one step. Every state but CLOSED
// also reaches CLOSED: by RST (§3.10.7.4 second check), ABORT (§3.10.5) or a user
// timeout (§3.10.8); that edge is added in IsLegalTransition.
constexpr std::array<uint16_t, kTcpStateCount> kEdges = [] {
  std::array<uint16_t, kTcpStateCount> e{};
  auto add = [&e](S from, S to) { e[static_cast<int>(from)] |= Bit(to); };
  add(S::kClosed, S::kListen);             // passive OPEN
  add(S::kClosed, S::kSynSent);            // active OPEN, send SYN
  add(S::kListen, S::kSynReceived);        // rcv SYN, send SYN,ACK
  add(S::kListen, S::kSynSent);            // SEND: a listener turned active (§3.10.2)
  add(S::kSynSent, S::kSynReceived);       // rcv SYN (simultaneous open), send SYN,ACK
  add(S::kSynSent, S::kEstablished);       // rcv SYN,ACK, send ACK
  add(S::kSynReceived, S::kEstablished);   // rcv ACK of SYN
  add(S::kSynReceived, S::kFinWait1);      // CLOSE, send FIN
  add(S::kSynReceived, S::kListen);        // rcv RST after a passive open (§3.10.7.4)
  add(S::kEstablished, S::kFinWait1);      // CLOSE, send FIN
  add(S::kEstablished, S::kCloseWait);     // rcv FIN, send ACK
  add(S::kFinWait1, S::kFinWait2);         // rcv ACK of FIN
  add(S::kFinWait1, S::kClosing);          // rcv FIN (simultaneous close), send ACK
  add(S::kFinWait1, S::kTimeWait);         // rcv FIN together with the ACK of our FIN
  add(S::kFinWait2, S::kTimeWait);         // rcv FIN, send ACK
  add(S::kCloseWait, S::kLastAck);         // CLOSE, send FIN
  add(S::kClosing, S::kTimeWait);          // rcv ACK of FIN
  add(S::kLastAck, S::kClosed);            // rcv ACK of FIN
  add(S::kTimeWait, S::kClosed);           // 2 MSL timeout
  return e;
}();

}  // namespace

absl::string_view StateName(TcpState s) {
  auto i = static_cast<size_t>(s);
  return i < kNames.size() ? kNames[i] : absl::string_view("UNKNOWN");
}

std::optional<TcpState> ParseStateName(absl::string_view name) {
  for (int i = 0; i < kTcpStateCount; ++i) {
    absl::string_view want = kNames[i];
    if (want.size() != name.size()) continue;
    bool match = true;
    for (size_t j = 0; j < want.size() && match; ++j) {
      char c = absl::ascii_toupper(static_cast<unsigned char>(name[j]));
      match = c == want[j] || (c == '_' && want[j] == '-');
    }
    if (match) return static_cast<TcpState>(i);
  }
  return std::nullopt;
}

// A state to itself is not an edge: callers ask about changes.
bool IsLegalTransition(TcpState from, TcpState to) {
  auto f = static_cast<size_t>(from);
  auto t = static_cast<size_t>(to);
  if (f >= kEdges.size() || f == t) return false;
  if (t >= kEdges.size()) return false;  // mutate: equivalent >= (one past the end is in no row)
  if (to == TcpState::kClosed) return true;
  return (kEdges[f] & Bit(to)) != 0;
}

}  // namespace wrench::stack
