// The stream toxics' pipeline (stream_toxics.h): one stage per toxic, each holding
// its chunks in due order; Advance moves what is due from stage to stage in time order.
#include "proxy/fault/stream_toxics.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace wrench::proxy {

using stack::Instant;

absl::Status ValidateStreamToxic(const StreamToxic& t) {
  auto non_negative = [](int64_t v, const char* name) -> absl::Status {
    if (v < 0) return absl::InvalidArgumentError(absl::StrCat(name, " must not be negative, got ", v));
    return absl::OkStatus();
  };
  if (!(t.toxicity >= 0 && t.toxicity <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("toxicity must be from 0 to 1, got ", t.toxicity));
  }
  switch (t.type) {
    case StreamToxicType::kLatency:
      if (auto s = non_negative(t.latency, "latency"); !s.ok()) return s;
      return non_negative(t.jitter, "jitter");
    case StreamToxicType::kBandwidth:
      return non_negative(t.rate, "rate");
    case StreamToxicType::kSlowClose:
      return non_negative(t.delay, "delay");
    case StreamToxicType::kTimeout:
    case StreamToxicType::kResetPeer:
      return non_negative(t.timeout, "timeout");
    case StreamToxicType::kLimitData:
      return non_negative(t.bytes, "bytes");
    case StreamToxicType::kSlicer:
      // As Toxiproxy 2.13: anything else cannot slice, or recurses without end.
      if (t.average_size <= 0) {
        return absl::InvalidArgumentError(absl::StrCat("average_size must be above 0, got ", t.average_size));
      }
      if (t.size_variation < 0 || t.size_variation > t.average_size) {
        return absl::InvalidArgumentError(absl::StrCat("size_variation must be from 0 to average_size (",
                                                       t.average_size, "), got ", t.size_variation));
      }
      return non_negative(t.delay, "delay");
  }
  return absl::OkStatus();
}

ToxicStream::ToxicStream(std::shared_ptr<const ToxicChain> chain, std::shared_ptr<std::mt19937_64> rng,
                         Instant now)
    : chain_(std::move(chain)), rng_(std::move(rng)) {
  Refresh(now);
}

ToxicStream::Stage ToxicStream::MakeStage(const ToxicChain::Entry& e, Instant now) {
  Stage s;
  s.id = e.id;
  s.toxic = e.toxic;
  // Toxiproxy draws rand.Float32() < toxicity: 0 never acts, 1 always.
  s.active = e.toxic.toxicity >= 1 ||
             static_cast<double>((*rng_)() >> 11) * 0x1.0p-53 < e.toxic.toxicity;
  if (s.active && e.toxic.type == StreamToxicType::kTimeout && e.toxic.timeout > 0) {
    s.timer = now + absl::Milliseconds(e.toxic.timeout);
  }
  return s;
}

void ToxicStream::Refresh(Instant now) {
  if (chain_->version == version_) return;
  version_ = chain_->version;
  std::vector<Stage> next;
  next.reserve(chain_->entries.size());
  std::vector<bool> kept(stages_.size(), false);
  for (const ToxicChain::Entry& e : chain_->entries) {
    auto it = std::find_if(stages_.begin(), stages_.end(), [&](const Stage& s) { return s.id == e.id; });
    if (it == stages_.end()) {
      next.push_back(MakeStage(e, now));
      continue;
    }
    kept[static_cast<size_t>(it - stages_.begin())] = true;
    Stage s = std::move(*it);
    if (s.toxic.toxicity != e.toxic.toxicity) {
      s.active = e.toxic.toxicity >= 1 || static_cast<double>((*rng_)() >> 11) * 0x1.0p-53 < e.toxic.toxicity;
    }
    s.toxic = e.toxic;  // an update: new attributes for the chunks to come
    next.push_back(std::move(s));
  }
  std::vector<Stage> old = std::move(stages_);
  stages_ = std::move(next);
  // A removed toxic's chunks go on at once to the stage that followed it. Toxics are
  // appended and removed, never moved, so that is the survivors' count before it.
  size_t survivors = 0;
  for (size_t k = 0; k < old.size(); ++k) {
    if (kept[k]) {
      ++survivors;
      continue;
    }
    Stage& gone = old[k];
    for (Item& item : gone.held) Enter(survivors, std::move(item), now);
    if (gone.active && !gone.ended && gone.toxic.type == StreamToxicType::kTimeout) {
      Item close;
      close.kind = End::kClose;
      close.ts = now;
      Enter(survivors, std::move(close), now);
    }
  }
}

int64_t ToxicStream::JitterMs(int64_t jitter) {
  if (jitter <= 0) return 0;
  return static_cast<int64_t>((*rng_)() % static_cast<uint64_t>(2 * jitter + 1)) - jitter;
}

// Toxiproxy's slicer: halve around the middle ± size_variation until a piece is
// within size_variation of average_size (or smaller).
void ToxicStream::Slice(const Stage& s, int64_t start, int64_t end, std::vector<int64_t>& cuts) {
  const int64_t avg = s.toxic.average_size, var = s.toxic.size_variation;
  if ((end - start) - avg <= var) {
    cuts.push_back(end);
    return;
  }
  int64_t mid = start + (end - start) / 2;
  if (var > 0) mid += static_cast<int64_t>((*rng_)() % static_cast<uint64_t>(2 * var)) - var;
  if (mid <= start || mid >= end) {
    cuts.push_back(end);
    return;
  }
  Slice(s, start, mid, cuts);
  Slice(s, mid, end, cuts);
}

void ToxicStream::Hold(Stage& s, Item item, Instant due) {
  item.due = due;
  s.held.push_back(std::move(item));
}

void ToxicStream::Output(Item item) {
  if (item.kind == End::kNone) {
    if (end_ != End::kNone || item.data.empty()) {
      held_bytes_ -= item.data.size();
      return;
    }
    out_bytes_ += item.data.size();
    out_.push_back(std::move(item));
    return;
  }
  // A reset may follow a half-close (RST after FIN is legal TCP); nothing else follows an end.
  if (end_ == End::kNone || (item.kind == End::kReset && end_ == End::kEof)) end_ = item.kind;
}

void ToxicStream::Enter(size_t index, Item item, Instant t) {
  if (index == stages_.size()) {
    Output(std::move(item));
    return;
  }
  Stage& s = stages_[index];
  const bool data = item.kind == End::kNone;
  auto drop = [&] {
    if (data) held_bytes_ -= item.data.size();
  };
  if (s.ended) return drop();
  if (!s.active) {
    if (!data) s.ended = true;
    return Enter(index + 1, std::move(item), t);
  }
  const StreamToxic& x = s.toxic;
  switch (x.type) {
    case StreamToxicType::kLatency: {
      Instant due = std::max(t, s.free_at);
      if (data) due = std::max(due, item.ts + absl::Milliseconds(x.latency + JitterMs(x.jitter)));
      if (!data) s.ended = true;
      s.free_at = due;
      return Hold(s, std::move(item), due);
    }
    case StreamToxicType::kBandwidth: {
      const Instant start = std::max(t, s.free_at);
      if (!data || x.rate <= 0) {
        if (!data) s.ended = true;
        s.free_at = start;
        return Hold(s, std::move(item), start);
      }
      // len bytes at `rate` KB/s take len / rate ms; more than 100 ms worth goes out
      // in pieces of 100 ms, as Toxiproxy sends it.
      const size_t piece = static_cast<size_t>(x.rate) * 100;
      const Instant done = start + absl::Nanoseconds(static_cast<int64_t>(item.data.size()) * 1'000'000 / x.rate);
      size_t off = 0;
      for (int k = 1; item.data.size() - off > piece; ++k) {
        Item p;
        p.ts = item.ts;
        p.data.assign(item.data.begin() + static_cast<ptrdiff_t>(off),
                      item.data.begin() + static_cast<ptrdiff_t>(off + piece));
        off += piece;
        Hold(s, std::move(p), start + absl::Milliseconds(100) * k);
      }
      if (off > 0) item.data.erase(item.data.begin(), item.data.begin() + static_cast<ptrdiff_t>(off));
      s.free_at = done;
      return Hold(s, std::move(item), done);
    }
    case StreamToxicType::kSlicer: {
      const Instant start = std::max(t, s.free_at);
      if (!data) {
        s.ended = true;
        s.free_at = start;
        return Hold(s, std::move(item), start);
      }
      std::vector<int64_t> cuts;
      Slice(s, 0, static_cast<int64_t>(item.data.size()), cuts);
      const absl::Duration gap = absl::Microseconds(x.delay);
      int64_t from = 0;
      for (size_t j = 0; j < cuts.size(); ++j) {
        Item p;
        p.ts = item.ts;
        p.data.assign(item.data.begin() + from, item.data.begin() + cuts[j]);
        from = cuts[j];
        Hold(s, std::move(p), start + gap * static_cast<int64_t>(j));
      }
      // Toxiproxy waits `delay` after the last slice too before taking the next chunk.
      s.free_at = start + gap * static_cast<int64_t>(cuts.size());
      return;
    }
    case StreamToxicType::kLimitData: {
      if (!data) {
        s.ended = true;
        return Enter(index + 1, std::move(item), t);
      }
      const int64_t left = std::max<int64_t>(0, x.bytes - s.passed);
      if (static_cast<int64_t>(item.data.size()) > left) {
        held_bytes_ -= item.data.size() - static_cast<size_t>(left);
        item.data.resize(static_cast<size_t>(left));
      }
      s.passed += static_cast<int64_t>(item.data.size());
      const bool done = s.passed >= x.bytes;
      if (!item.data.empty()) Enter(index + 1, std::move(item), t);
      if (done) {
        s.ended = true;
        Item close;
        close.kind = End::kClose;
        close.ts = t;
        Enter(index + 1, std::move(close), t);
      }
      return;
    }
    case StreamToxicType::kTimeout:
      if (data) return drop();
      s.ended = true;
      s.timer = stack::kNever;
      return Enter(index + 1, std::move(item), t);
    case StreamToxicType::kResetPeer:
      if (s.timer == stack::kNever) s.timer = t + absl::Milliseconds(x.timeout);
      return drop();
    case StreamToxicType::kSlowClose:
      if (data) return Enter(index + 1, std::move(item), t);
      s.ended = true;
      return Hold(s, std::move(item), t + absl::Milliseconds(x.delay));
  }
}

void ToxicStream::Write(Instant now, absl::Span<const uint8_t> bytes) {
  Refresh(now);
  if (source_ended_ || bytes.empty()) return;
  Item item;
  item.data.assign(bytes.begin(), bytes.end());
  item.ts = now;
  held_bytes_ += bytes.size();
  Enter(0, std::move(item), now);
  Advance(now);
}

void ToxicStream::WriteEof(Instant now) {
  Refresh(now);
  if (source_ended_) return;
  source_ended_ = true;
  Item item;
  item.kind = End::kEof;
  item.ts = now;
  Enter(0, std::move(item), now);
  Advance(now);
}

void ToxicStream::Advance(Instant now) {
  Refresh(now);
  // Each pass moves everything due out of every stage, in stage order, so what a
  // stage releases reaches the later ones in the same pass; a second pass is only
  // needed when a timer fired.
  for (bool again = true; again;) {
    again = false;
    for (size_t i = 0; i < stages_.size(); ++i) {
      while (!stages_[i].held.empty() && stages_[i].held.front().due <= now) {
        Item item = std::move(stages_[i].held.front());
        stages_[i].held.pop_front();
        const Instant t = item.due;
        Enter(i + 1, std::move(item), t);
      }
      Stage& s = stages_[i];
      if (s.timer > now) continue;
      const Instant t = s.timer;
      s.timer = stack::kNever;
      s.ended = true;
      Item end;
      end.kind = s.toxic.type == StreamToxicType::kResetPeer ? End::kReset : End::kClose;
      end.ts = t;
      Enter(i + 1, std::move(end), t);
      again = true;
    }
  }
}

size_t ToxicStream::Read(absl::Span<uint8_t> out) {
  size_t n = 0;
  while (n < out.size() && !out_.empty()) {
    Item& front = out_.front();
    const size_t take = std::min(out.size() - n, front.data.size() - front.off);
    std::copy_n(front.data.data() + front.off, take, out.data() + n);
    front.off += take;
    n += take;
    if (front.off == front.data.size()) out_.pop_front();
  }
  out_bytes_ -= n;
  held_bytes_ -= n;
  return n;
}

Instant ToxicStream::NextDeadline() const {
  Instant next = stack::kNever;
  for (const Stage& s : stages_) {
    if (!s.held.empty()) next = std::min(next, s.held.front().due);
    next = std::min(next, s.timer);
  }
  return next;
}

bool ToxicStream::Transparent(Instant now) {
  Refresh(now);
  return stages_.empty() && out_.empty() && end_ == End::kNone;
}

}  // namespace wrench::proxy
