// Every stream toxic type, one small class each behind the Toxic interface
// (stream_toxics.h), and the table the API finds them in. Each behaves as the
// Toxiproxy 2.x toxic of its name; a chunk is what one read from the source returned.
// A new toxic is a class here and a line in StreamToxicTypes().
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "proxy/fault/stream_toxics.h"

namespace wrench::proxy {
namespace {

using stack::Instant;

ToxicChunk EndChunk(ToxicChunk::Kind kind, Instant t) {
  ToxicChunk c;
  c.kind = kind;
  c.ts = t;
  return c;
}

// latency (ms), jitter (ms): a chunk leaves latency ± jitter after its timestamp (when
// it was read, or when the latency toxic before it let it go), one chunk at a time.
// Leaving moves the chunk's timestamp on by that delay, so two latency toxics of
// 300 ms delay it 600 ms, as in Toxiproxy; a bandwidth or slicer toxic between them
// keeps the timestamp, so a latency after it overlaps the time it took.
class Latency final : public Toxic {
 public:
  void Configure(absl::Span<const int64_t> v) override {
    latency_ = v[0];
    jitter_ = v[1];
  }
  void Enter(ToxicChunk c, Instant t, ToxicContext& cx) override {
    Instant due = std::max(t, free_at_);
    if (c.is_data()) {
      // Toxiproxy: latency + rand.Int63n(2 * jitter) - jitter.
      int64_t ms = latency_;
      if (jitter_ > 0)
        ms += static_cast<int64_t>(cx.rng()() % static_cast<uint64_t>(2 * jitter_)) - jitter_;
      c.ts += absl::Milliseconds(ms);
      due = std::max(due, c.ts);
    }
    free_at_ = due;
    cx.Emit(std::move(c), due);
  }

 private:
  int64_t latency_ = 0, jitter_ = 0;
  Instant free_at_ = absl::InfinitePast();
};

// rate (KB/s, 1 KB = 1000 bytes; 0: unlimited): a chunk of len bytes takes len / rate
// to pass, after the one before it; more than 100 ms worth goes out in pieces of
// 100 ms, as Toxiproxy sends it.
class Bandwidth final : public Toxic {
 public:
  void Configure(absl::Span<const int64_t> v) override { rate_ = v[0]; }
  void Enter(ToxicChunk c, Instant t, ToxicContext& cx) override {
    const Instant start = std::max(t, free_at_);
    if (!c.is_data() || rate_ <= 0) {
      free_at_ = start;
      return cx.Emit(std::move(c), start);
    }
    const size_t piece = static_cast<size_t>(rate_) * 100;
    const Instant done =
        start + absl::Nanoseconds(static_cast<int64_t>(c.data.size()) * 1'000'000 / rate_);
    size_t off = 0;
    for (int k = 1; c.data.size() - off > piece; ++k) {
      ToxicChunk p;
      p.ts = c.ts;
      p.data.assign(c.data.begin() + static_cast<ptrdiff_t>(off),
                    c.data.begin() + static_cast<ptrdiff_t>(off + piece));
      off += piece;
      cx.Emit(std::move(p), start + absl::Milliseconds(100) * k);
    }
    if (off > 0) c.data.erase(c.data.begin(), c.data.begin() + static_cast<ptrdiff_t>(off));
    free_at_ = done;
    cx.Emit(std::move(c), done);
  }

 private:
  int64_t rate_ = 0;
  Instant free_at_ = absl::InfinitePast();
};

// delay (ms): holds the end of the stream for `delay`; data passes.
class SlowClose final : public Toxic {
 public:
  void Configure(absl::Span<const int64_t> v) override { delay_ = v[0]; }
  void Enter(ToxicChunk c, Instant t, ToxicContext& cx) override {
    const Instant due = c.is_data() ? t : t + absl::Milliseconds(delay_);
    cx.Emit(std::move(c), due);
  }

 private:
  int64_t delay_ = 0;
};

// timeout (ms): drops all data; closes the connection once `timeout` has passed
// since the toxic started or the last chunk reached it, whichever is later (0: never),
// as Toxiproxy's loop, which waits a fresh time.After(timeout) after each chunk.
// Removing it closes the connection (Toxiproxy's Cleanup).
class Timeout final : public Toxic {
 public:
  void Configure(absl::Span<const int64_t> v) override { timeout_ = v[0]; }
  void Start(Instant now, ToxicContext& cx) override {
    if (timeout_ > 0) cx.SetTimer(now + absl::Milliseconds(timeout_));
  }
  void Enter(ToxicChunk c, Instant t, ToxicContext& cx) override {
    if (c.is_data()) {
      Start(t, cx);
      return cx.Discard(c.data.size());
    }
    cx.SetTimer(stack::kNever);
    cx.Emit(std::move(c), t);
  }
  void OnTimer(Instant t, ToxicContext& cx) override {
    cx.Emit(EndChunk(ToxicChunk::Kind::kClose, t), t);
  }
  void Remove(Instant t, ToxicContext& cx) override { OnTimer(t, cx); }

 private:
  int64_t timeout_ = 0;
};

// timeout (ms): at the first chunk (or the end of the stream), waits `timeout` and
// resets the connection; data is dropped.
class ResetPeer final : public Toxic {
 public:
  void Configure(absl::Span<const int64_t> v) override { timeout_ = v[0]; }
  void Enter(ToxicChunk c, Instant t, ToxicContext& cx) override {
    if (!armed_) {
      armed_ = true;
      cx.SetTimer(t + absl::Milliseconds(timeout_));
    }
    if (c.is_data()) cx.Discard(c.data.size());
  }
  void OnTimer(Instant t, ToxicContext& cx) override {
    cx.Emit(EndChunk(ToxicChunk::Kind::kReset, t), t);
  }

 private:
  int64_t timeout_ = 0;
  bool armed_ = false;
};

// average_size, size_variation (bytes), delay (us): a chunk is cut into slices of
// about average_size ± size_variation bytes, `delay` apart, and the next chunk waits
// `delay` after the last slice, as in Toxiproxy.
class Slicer final : public Toxic {
 public:
  void Configure(absl::Span<const int64_t> v) override {
    average_size_ = v[0];
    size_variation_ = v[1];
    delay_ = v[2];
  }
  // As Toxiproxy 2.13: anything else cannot slice, or recurses without end.
  absl::Status Check() const override {
    if (average_size_ <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("average_size must be above 0, got ", average_size_));
    }
    if (size_variation_ > average_size_) {
      return absl::InvalidArgumentError(
          absl::StrCat("size_variation must be from 0 to average_size (", average_size_, "), got ",
                       size_variation_));
    }
    return absl::OkStatus();
  }
  void Enter(ToxicChunk c, Instant t, ToxicContext& cx) override {
    const Instant start = std::max(t, free_at_);
    if (!c.is_data()) {
      free_at_ = start;
      return cx.Emit(std::move(c), start);
    }
    std::vector<int64_t> cuts;
    Slice(cx, 0, static_cast<int64_t>(c.data.size()), cuts);
    const absl::Duration gap = absl::Microseconds(delay_);
    int64_t from = 0;
    for (size_t j = 0; j < cuts.size(); ++j) {
      ToxicChunk p;
      p.ts = c.ts;
      p.data.assign(c.data.begin() + from, c.data.begin() + cuts[j]);
      from = cuts[j];
      cx.Emit(std::move(p), start + gap * static_cast<int64_t>(j));
    }
    free_at_ = start + gap * static_cast<int64_t>(cuts.size());
  }

 private:
  // Toxiproxy's slicer: halve around the middle ± size_variation until a piece is
  // within size_variation of average_size (or smaller).
  void Slice(ToxicContext& cx, int64_t start, int64_t end, std::vector<int64_t>& cuts) {
    if ((end - start) - average_size_ <= size_variation_) {
      cuts.push_back(end);
      return;
    }
    int64_t mid = start + (end - start) / 2;
    if (size_variation_ > 0) {
      mid += static_cast<int64_t>(cx.rng()() % static_cast<uint64_t>(2 * size_variation_)) -
             size_variation_;
    }
    if (mid <= start || mid >= end) {
      cuts.push_back(end);
      return;
    }
    Slice(cx, start, mid, cuts);
    Slice(cx, mid, end, cuts);
  }

  int64_t average_size_ = 0, size_variation_ = 0, delay_ = 0;
  Instant free_at_ = absl::InfinitePast();
};

// bytes: passes that many bytes in all, then closes the connection.
class LimitData final : public Toxic {
 public:
  void Configure(absl::Span<const int64_t> v) override { bytes_ = v[0]; }
  void Enter(ToxicChunk c, Instant t, ToxicContext& cx) override {
    if (!c.is_data()) return cx.Emit(std::move(c), t);
    const int64_t left = std::max<int64_t>(0, bytes_ - passed_);
    if (static_cast<int64_t>(c.data.size()) > left) {
      cx.Discard(c.data.size() - static_cast<size_t>(left));
      c.data.resize(static_cast<size_t>(left));
    }
    passed_ += static_cast<int64_t>(c.data.size());
    if (!c.data.empty()) cx.Emit(std::move(c), t);
    if (passed_ >= bytes_) cx.Emit(EndChunk(ToxicChunk::Kind::kClose, t), t);
  }

 private:
  int64_t bytes_ = 0;
  int64_t passed_ = 0;
};

template <class T>
std::unique_ptr<Toxic> New() {
  return std::make_unique<T>();
}

}  // namespace

const std::vector<ToxicType>& StreamToxicTypes() {
  static const std::vector<ToxicType> types = {
      {"latency", {"latency", "jitter"}, &New<Latency>},
      {"bandwidth", {"rate"}, &New<Bandwidth>},
      {"slow_close", {"delay"}, &New<SlowClose>},
      {"timeout", {"timeout"}, &New<Timeout>},
      {"reset_peer", {"timeout"}, &New<ResetPeer>},
      {"slicer", {"average_size", "size_variation", "delay"}, &New<Slicer>},
      {"limit_data", {"bytes"}, &New<LimitData>},
  };
  return types;
}

}  // namespace wrench::proxy
