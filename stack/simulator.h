// The deterministic simulator: two TcpEndpoints joined by an in-memory link on a
// virtual clock. Tests drop, duplicate, reorder or delay any segment through a
// filter, random faults from a seeded generator, or an Interposer (the fault
// engine plugs in there). Nothing here reads a clock or touches the network.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <random>
#include "stack/tcp_endpoint.h"

namespace wrench::stack {

enum class Side : uint8_t { kA, kB };
inline Side Other(Side s) { return s == Side::kA ? Side::kB : Side::kA; }
inline const char* SideName(Side s) { return s == Side::kA ? "A" : "B"; }

// What the link does with one segment.
struct LinkVerdict {
  bool drop = false;
  int extra_copies = 0;                            // duplicates delivered after it
  Duration extra_delay = absl::ZeroDuration();     // on top of the link latency
};

// A segment as the trace keeps it: the header (payload view cleared) and its length.
struct TraceEntry {
  Instant at;
  Side from;
  TcpRepr seg;         // payload is empty; payload_len says how long it was
  uint32_t payload_len = 0;
  bool dropped = false;  // mutate: equivalent (Record sets every field)
  int extra_copies = 0;
  Duration extra_delay = absl::ZeroDuration();
  uint64_t order = 0;  // position among trace entries and state changes
};

// Sits in the link: sees every segment as it leaves an endpoint and releases what
// it wants delivered, when it wants. Segments are copied in; released ones are
// valid during the deliver callback only.
class Interposer {
 public:
  virtual ~Interposer() = default;
  virtual void Submit(Instant now, Side from, const TcpRepr& seg) = 0;
  virtual void Poll(Instant now,
                    absl::FunctionRef<void(Side from, const TcpRepr& seg)> deliver) = 0;
  virtual Instant NextDeadline() const = 0;
};

// Random link faults, all drawn from the simulator's seeded generator.
struct RandomFaults {
  double loss = 0;       // probability a segment is dropped
  double duplicate = 0;  // probability it is delivered twice
  double reorder = 0;    // probability it is held back by up to max_extra_delay
  Duration max_extra_delay = absl::Milliseconds(20);
  Instant until = kNever;  // the link is clean from this time on
};

class Simulator {
 public:
  struct Options {
    Duration latency = absl::Milliseconds(1);
    uint64_t seed = 1;
    bool trace = true;
    // Applications send the checkable pattern and verify every byte; off, they
    // move bytes without looking (benchmarks).
    bool check_data = true;
    // Packets the link can hold before its pool grows (each with room for an
    // Ethernet-sized payload). Sized up front, the link never allocates.
    size_t preallocate_packets = 64;
    size_t packet_room = 2048;
    Instant start = absl::UnixEpoch();
  };

  Simulator(TcpConfig a, TcpConfig b, Options opts);
  explicit Simulator(TcpConfig a, TcpConfig b) : Simulator(std::move(a), std::move(b), Options{}) {}

  TcpEndpoint& a() { return *a_; }
  TcpEndpoint& b() { return *b_; }
  TcpEndpoint& endpoint(Side s) { return s == Side::kA ? *a_ : *b_; }
  Instant now() const { return now_; }
  Duration elapsed() const { return now_ - opts_.start; }

  void set_filter(std::function<LinkVerdict(Side from, const TcpRepr&)> f) {
    filter_ = std::move(f);
  }
  void set_random_faults(RandomFaults f) { faults_ = f; }
  void set_interposer(Interposer* i) { interposer_ = i; }

  // Automatic application on one side: sends `bytes` of a deterministic pattern as
  // send space allows, then closes if close_after; reads and checks everything
  // that arrives. Without a transfer, the test drives the side by hand.
  void StartTransfer(Side s, uint64_t bytes, bool close_after);
  // Bytes received on side s that matched the pattern; mismatches counted apart.
  uint64_t received_ok(Side s) const { return app_[Index(s)].received; }
  uint64_t received_bad(Side s) const { return app_[Index(s)].corrupt; }
  void set_auto_read(Side s, bool on) { app_[Index(s)].auto_read = on; }
  // The byte the pattern has at offset i of side s's stream.
  static uint8_t PatternByte(Side s, uint64_t i);

  // Runs events up to and including `t`. Returns false if it stopped on the step limit.
  bool RunUntil(Instant t, int max_steps = 10'000'000);
  bool RunFor(Duration d, int max_steps = 10'000'000) { return RunUntil(now_ + d, max_steps); }
  // Runs until pred() holds or `limit` of virtual time passes; true if pred held.
  bool RunUntil(const std::function<bool()>& pred, Duration limit, int max_steps = 10'000'000);
  // Processes output without advancing time (after the test called Send/Close...).
  void Flush();

  const std::vector<TraceEntry>& trace() const { return trace_; }
  const std::vector<StateChange>& changes(Side s) const { return changes_[Index(s)]; }
  // The trace, one segment a line, packetdrill style with relative numbers, and the
  // state changes interleaved.
  std::string Ladder() const;

 private:
  struct InFlight {
    Instant due;
    uint64_t order;
    uint32_t slot;
    // mutate: equivalent > (the due times differ where compared, and orders are unique)
    bool operator>(const InFlight& o) const { return due != o.due ? due > o.due : order > o.order; }
  };
  struct Packet {
    Side to;
    TcpRepr seg;
    std::vector<uint8_t> payload;
  };
  struct App {
    // Until StartTransfer sets all three, the app neither sends nor closes.
    bool active = false;  // mutate: equivalent (nothing to send while to_send is 0)
    uint64_t to_send = 0;  // mutate: equivalent (read only once active)
    uint64_t sent = 0;
    bool close_after = false;  // mutate: equivalent (read only once active)
    bool closed = false;
    bool auto_read = true;
    uint64_t received = 0, corrupt = 0;
  };
  static size_t Index(Side s) { return s == Side::kA ? 0 : 1; }

  void Emit(Side from, const TcpRepr& seg);
  void Schedule(Side to, const TcpRepr& seg, Duration delay);
  void Deliver(Side to, const TcpRepr& seg);
  void PumpApps();
  void PollAll();
  Instant NextEvent() const;
  void RunInstant();

  Options opts_;
  std::unique_ptr<TcpEndpoint> a_, b_;
  Instant now_;
  std::mt19937_64 rng_;
  std::function<LinkVerdict(Side, const TcpRepr&)> filter_;
  RandomFaults faults_;
  Interposer* interposer_ = nullptr;
  std::vector<InFlight> queue_;  // a min-heap on (due, order)
  std::vector<Packet> slots_;
  std::vector<uint32_t> free_slots_;
  uint64_t order_ = 0;
  App app_[2];  // mutate: equivalent (an array's spare element)
  std::vector<TraceEntry> trace_;
  std::vector<StateChange> changes_[2];      // mutate: equivalent (an array's spare element)
  std::vector<uint64_t> change_order_[2];  // mutate: equivalent (an array's spare element)
  uint64_t event_order_ = 0;
  void Record(Side from, const TcpRepr& seg, const LinkVerdict& v);
  std::vector<uint8_t> scratch_ = std::vector<uint8_t>(65536);
};

// "S. 0:0(0) ack 1 win 65535" with seq relative to `seq_base` and ack to `ack_base`.
std::string FormatRelative(const TcpRepr& seg, uint32_t payload_len, SeqNum seq_base,
                           SeqNum ack_base);

}  // namespace wrench::stack
