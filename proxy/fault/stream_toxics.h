// Toxiproxy's stream toxics (latency, bandwidth, slicer, limit_data, slow_close,
// timeout, reset_peer) as a sans-I/O chain over one direction of a relayed byte
// stream: chunks and the end of the stream go in with the time and come out when due.
// Each toxic type is one class behind the Toxic interface (stream_toxics_types.cc).
// Both relays of the control API's proxies drive one per direction: the relay loop of
// the TUN proxies (relay_loop.cc) and the kernel-socket relay (stream_relay.cc).
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "stack/time.h"

namespace wrench::proxy {

// What moves through a stream's toxics: a chunk of data (what one read from the source
// returned, as in Toxiproxy, where a chunk is the unit of latency and slicing) or the
// end of the stream.
struct ToxicChunk {
  enum class Kind : uint8_t { kData, kEof, kClose, kReset };
  Kind kind = Kind::kData;
  std::vector<uint8_t> data;
  // Toxiproxy's chunk timestamp: when the source's read returned it, moved on by each
  // latency toxic it passed (so two latency toxics add up).
  stack::Instant ts;
  bool is_data() const { return kind == Kind::kData; }
};

// What a toxic acts through: the next toxic in the chain, a timer and the stream's
// random generator. One per toxic per stream.
class ToxicContext {
 public:
  virtual ~ToxicContext() = default;
  // Hands `chunk` to the next toxic at `at` (no earlier than the chunks handed on
  // before it: a toxic never reorders the stream).
  virtual void Emit(ToxicChunk chunk, stack::Instant at) = 0;
  // Forgets `bytes` bytes of data the toxic swallowed.
  virtual void Discard(size_t bytes) = 0;
  // Calls OnTimer at `at` (stack::kNever: not at all).
  virtual void SetTimer(stack::Instant at) = 0;
  virtual std::mt19937_64& rng() = 0;
};

// One toxic on one direction of one connection: its settings and its state. Each type
// is one small class in stream_toxics_types.cc, listed in its table of types; adding a
// toxic touches that file only. The stream around it (ToxicStream) handles toxicity,
// what follows an end, holding chunks until due, and a toxic's removal.
class Toxic {
 public:
  virtual ~Toxic() = default;
  // The attribute values, in the order of the type's attribute names. A change while
  // the stream runs keeps the state (limit_data's count) and acts on chunks to come.
  virtual void Configure(absl::Span<const int64_t> values) = 0;
  // Range checks beyond "not negative", with a message naming the attribute.
  virtual absl::Status Check() const { return absl::OkStatus(); }
  // The toxic starts acting on a stream at `now` (its connection starts, or it is added).
  virtual void Start(stack::Instant /*now*/, ToxicContext& /*cx*/) {}
  // A chunk reaches the toxic at `t`. An end of stream reaches it once; after it
  // nothing more does.
  virtual void Enter(ToxicChunk chunk, stack::Instant t, ToxicContext& cx) = 0;
  // The timer set with cx.SetTimer fires.
  virtual void OnTimer(stack::Instant /*t*/, ToxicContext& /*cx*/) {}
  // The toxic is removed from a running stream before an end went through it; what
  // it emits goes on to the toxic that followed it (Toxiproxy's Cleanup).
  virtual void Remove(stack::Instant /*t*/, ToxicContext& /*cx*/) {}
};

// A kind of toxic, as the API names it.
struct ToxicType {
  absl::string_view name;
  std::vector<absl::string_view> attributes;  // Toxiproxy's names, in its JSON order
  std::unique_ptr<Toxic> (*make)();
};
// Every stream toxic type: latency, bandwidth, slow_close, timeout, reset_peer,
// slicer, limit_data.
const std::vector<ToxicType>& StreamToxicTypes();
// The type of that name, or nullptr.
const ToxicType* FindStreamToxicType(absl::string_view name);

// One toxic's settings, in Toxiproxy's attribute names and units.
struct StreamToxic {
  const ToxicType* type = nullptr;
  std::vector<int64_t> values;  // in the order of type->attributes; unset ones 0
  // Probability that the toxic acts on a given connection (drawn once per connection
  // and toxic, when either starts), as Toxiproxy's toxicity.
  double toxicity = 1.0;
};

// A toxic of the named type with the given attributes (the others 0), checked.
absl::StatusOr<StreamToxic> MakeStreamToxic(
    absl::string_view type, const std::vector<std::pair<absl::string_view, int64_t>>& attributes,
    double toxicity = 1.0);

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

// One direction of one connection through its proxy's toxics, in the order they were
// added: each toxic's output is the next one's input, as in Toxiproxy's chain. Each
// toxic handles its chunks in order, so the stream never reorders bytes; what each
// type does is written beside its class (stream_toxics_types.cc).
//
// The end of the source's stream passes through the toxics after the data before it
// and comes out as End::kEof: a half-close for the relay to pass on (Toxiproxy
// closes the whole connection instead). A close or reset by a toxic also passes
// through the toxics after it (slow_close delays it) before it comes out; a toxic
// that an end went through drops what still reaches it.
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
  struct Held {
    ToxicChunk chunk;
    size_t off = 0;  // bytes of chunk.data already read (output only)
    stack::Instant due;
  };
  class StageContext;
  struct Stage {
    uint64_t id = 0;
    std::unique_ptr<Toxic> toxic;
    double toxicity = 1.0;
    bool active = true;  // won the toxicity draw
    bool ended = false;  // an end went in or came out
    std::deque<Held> held;  // due times never decrease
    stack::Instant timer = stack::kNever;
  };

  void Refresh(stack::Instant now);
  bool Draw(double toxicity);
  Stage MakeStage(const ToxicChain::Entry& e);
  // Hands `chunk` to stage `index` (stages_.size(): the output) at `t`.
  void Enter(size_t index, ToxicChunk chunk, stack::Instant t);
  void Output(ToxicChunk chunk);

  std::shared_ptr<const ToxicChain> chain_;
  std::shared_ptr<std::mt19937_64> rng_;
  uint64_t version_ = ~uint64_t{0};
  std::vector<Stage> stages_;
  std::deque<Held> out_;
  size_t out_bytes_ = 0;
  size_t held_bytes_ = 0;  // in stages and out_
  End end_ = End::kNone;
  bool source_ended_ = false;
};

// Both directions of one connection of a control-API proxy, as its relay keeps them.
struct ConnectionToxics {
  ConnectionToxics(std::shared_ptr<const ToxicChain> up_chain,
                   std::shared_ptr<const ToxicChain> down_chain,
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
