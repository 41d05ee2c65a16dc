// Toxiproxy's stream toxics (latency, bandwidth, slicer, limit_data, slow_close,
// timeout, reset_peer) as a sans-I/O pipeline over one direction of a relayed byte
// stream: chunks and the end of the stream go in with the time and come out when due.
// Both relays of the control API's proxies drive one per direction: the TUN relay
// (proxy.cc) and the kernel-socket relay (stream_relay.cc).
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "stack/time.h"

namespace wrench::proxy {

enum class StreamToxicType : uint8_t {
  kLatency,
  kBandwidth,
  kSlowClose,
  kTimeout,
  kResetPeer,
  kSlicer,
  kLimitData,
};

// One toxic's settings, in Toxiproxy's attribute names and units.
struct StreamToxic {
  StreamToxicType type = StreamToxicType::kLatency;
  int64_t latency = 0, jitter = 0;  // latency: ms; each chunk waits latency ± jitter
  int64_t rate = 0;                 // bandwidth: KB/s (1 KB = 1000 bytes), <= 0: unlimited
  int64_t delay = 0;                // slow_close: ms; slicer: us between slices
  int64_t timeout = 0;              // timeout, reset_peer: ms
  int64_t average_size = 0, size_variation = 0;  // slicer: bytes
  int64_t bytes = 0;                // limit_data
  // Probability that the toxic acts on a given connection (drawn once per connection
  // and toxic, when either starts), as Toxiproxy's toxicity.
  double toxicity = 1.0;
};

// Checks attribute ranges (negative durations, a slicer that cannot slice, ...) with
// a message naming the attribute.
absl::Status ValidateStreamToxic(const StreamToxic& t);

// The toxics of one direction of one proxy, in the order they were added, shared by
// the proxy's connections; each notices a change by `version`.
struct ToxicChain {
  struct Entry {
    uint64_t id = 0;  // unique over the process: a re-added toxic is a new one
    StreamToxic toxic;
  };
  std::vector<Entry> entries;
  uint64_t version = 0;
};

// One direction of one connection through its proxy's toxics.
//
// A chunk written at time t is what one read from the source returned, as in
// Toxiproxy, where a chunk is the unit of latency and slicing. Each toxic handles its
// chunks in order, one at a time, so the stream never reorders bytes:
//   latency     a chunk leaves at max(free, t + latency ± jitter), jitter uniform in ms.
//   bandwidth   a chunk takes len / rate to pass (split into 100 ms pieces if larger).
//   slicer      a chunk is cut into slices of about average_size ± size_variation
//               bytes, `delay` us apart.
//   limit_data  passes `bytes` bytes in all, then closes the connection.
//   slow_close  holds the end of the stream for `delay` ms; data passes.
//   timeout     drops all data; closes the connection `timeout` ms after the toxic
//               started (0: never); removing it closes the connection (Toxiproxy's
//               Cleanup).
//   reset_peer  at the first chunk (or end of stream), waits `timeout` ms and resets
//               the connection; data is dropped.
// The end of the source's stream passes through the toxics after the data before it
// and comes out as End::kEof: a half-close for the relay to pass on (Toxiproxy
// closes the whole connection instead). A close or reset by a toxic also passes
// through the toxics after it (slow_close delays it) before it comes out.
//
// When the chain changes, a removed toxic's held chunks move on at once (Toxiproxy
// does not drop data on the floor); toxics that stay keep their state (limit_data's
// count); added ones start now. Randomness (toxicity, jitter, slice sizes) comes from
// one generator seeded from --seed, shared by every stream.
class ToxicStream {
 public:
  enum class End : uint8_t { kNone, kEof, kClose, kReset };
  // What the toxics may hold at once; then room() is 0 and the relay stops reading, so
  // a long latency closes the source's window instead of growing memory.
  static constexpr size_t kCapacity = 8 << 20;

  ToxicStream(std::shared_ptr<const ToxicChain> chain, std::shared_ptr<std::mt19937_64> rng,
              stack::Instant now);

  size_t room() const { return held_bytes_ >= kCapacity ? 0 : kCapacity - held_bytes_; }
  // One chunk read from the source at `now`.
  void Write(stack::Instant now, absl::Span<const uint8_t> bytes);
  // The source's end of stream (FIN).
  void WriteEof(stack::Instant now);
  // Picks up a changed chain and moves every chunk due at `now`.
  void Advance(stack::Instant now);

  // Bytes due for the destination.
  size_t readable() const { return out_bytes_; }
  size_t Read(absl::Span<uint8_t> out);
  // What follows the readable bytes. kReset should be acted on at once; kEof and
  // kClose once readable() is 0.
  End end() const { return end_; }
  // When Advance next has something to do (stack::kNever: nothing is waiting).
  stack::Instant NextDeadline() const;
  // No toxic, nothing held and nothing ended: a relay may move bytes past the stream.
  bool Transparent(stack::Instant now);

 private:
  struct Item {
    End kind = End::kNone;  // kNone: data
    std::vector<uint8_t> data;
    size_t off = 0;         // bytes of `data` already read (output only)
    stack::Instant ts;      // when the source's read returned it
    stack::Instant due;
  };
  struct Stage {
    uint64_t id = 0;
    StreamToxic toxic;
    bool active = true;  // won the toxicity draw
    bool ended = false;  // a close, reset or end of stream went through
    std::deque<Item> held;  // due times never decrease
    stack::Instant free_at = absl::InfinitePast();  // one chunk at a time
    stack::Instant timer = stack::kNever;           // timeout's close, reset_peer's reset
    int64_t passed = 0;                             // limit_data
  };

  void Refresh(stack::Instant now);
  Stage MakeStage(const ToxicChain::Entry& e, stack::Instant now);
  void Enter(size_t stage, Item item, stack::Instant t);
  void Hold(Stage& s, Item item, stack::Instant due);
  void Output(Item item);
  void Slice(const Stage& s, int64_t start, int64_t end, std::vector<int64_t>& cuts);
  int64_t JitterMs(int64_t jitter);

  std::shared_ptr<const ToxicChain> chain_;
  std::shared_ptr<std::mt19937_64> rng_;
  uint64_t version_ = ~uint64_t{0};
  std::vector<Stage> stages_;
  std::deque<Item> out_;
  size_t out_bytes_ = 0;
  size_t held_bytes_ = 0;  // in stages and out_
  End end_ = End::kNone;
  bool source_ended_ = false;
};

// Both directions of one connection of a control-API proxy, as its relay keeps them.
struct ConnectionToxics {
  ConnectionToxics(std::shared_ptr<const ToxicChain> up_chain, std::shared_ptr<const ToxicChain> down_chain,
                   std::shared_ptr<std::mt19937_64> rng, stack::Instant now)
      : up(std::move(up_chain), rng, now), down(std::move(down_chain), rng, now) {}
  ToxicStream up;    // client -> server ("upstream" in Toxiproxy)
  ToxicStream down;  // server -> client ("downstream")
  // Bytes go through the toxics from the first toxic on, for good: a relay that
  // switched back could reorder bytes still held against new ones.
  bool engaged = false;
  bool up_eof = false, down_eof = false;  // the source's FIN went in
  bool ended = false;                     // a toxic closed or reset the connection
  bool Engage(stack::Instant now) {
    if (!engaged && !(up.Transparent(now) && down.Transparent(now))) engaged = true;
    return engaged;
  }
  stack::Instant NextDeadline() const { return std::min(up.NextDeadline(), down.NextDeadline()); }
};

}  // namespace wrench::proxy
