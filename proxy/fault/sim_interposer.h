// Puts the fault engine on the deterministic simulator's link (stack/simulator.h):
// side A plays the client and B the server; each segment is wrapped in an IPv4
// datagram and offered at the two hooks on its way, as it would cross the proxy.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "proxy/fault/fault_engine.h"
#include "stack/ip.h"
#include "stack/simulator.h"

namespace wrench::proxy {

// A's segments are offered at from-client, then what passes at to-server; B's at
// from-server, then to-client. Released datagrams are parsed back with their
// checksums checked, and one that fails is dropped, as a receiving kernel would.
//
// The state given with each hook is that of the endpoint standing where the proxy's
// own endpoint would on that leg: B (serving the client) on the client leg, A
// (connecting to the server) on the server leg, read when the segment is offered.
class SimInterposer : public stack::Interposer {
 public:
  SimInterposer(FaultEngine& engine, stack::Simulator& sim, uint64_t conn = 1,
                stack::IpAddress client = stack::IpAddress::V4({10, 0, 0, 1}),
                stack::IpAddress server = stack::IpAddress::V4({10, 0, 0, 2}));

  void Submit(stack::Instant now, stack::Side from, const stack::TcpRepr& seg) override;
  void Poll(stack::Instant now,
            absl::FunctionRef<void(stack::Side from, const stack::TcpRepr& seg)> deliver) override;
  stack::Instant NextDeadline() const override;

  // Hears every decision the engine returns, in order (a run's record of its faults).
  void set_decision_log(std::function<void(const Decision&)> log) {
    decision_log_ = std::move(log);
  }

  // Datagrams the engine released that failed to parse (corrupted): never delivered.
  uint64_t bad_datagrams() const { return bad_datagrams_; }

 private:
  struct Datagram {
    Hook hook;
    std::vector<uint8_t> bytes;
  };
  void OfferAt(stack::Instant now, Hook hook, absl::Span<const uint8_t> bytes);
  void Forward(stack::Instant now, Hook hook, absl::Span<const uint8_t> bytes);
  void Drain(stack::Instant now);
  stack::TcpState StateAt(Hook hook);

  FaultEngine& engine_;
  stack::Simulator& sim_;
  uint64_t conn_;
  stack::IpAddress client_, server_;
  std::vector<Datagram> ready_;  // through both hooks, to deliver at the next Poll
  uint64_t bad_datagrams_ = 0;
  std::function<void(const Decision&)> decision_log_;
  std::vector<uint8_t> scratch_;
};

}  // namespace wrench::proxy
