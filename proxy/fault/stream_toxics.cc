// The stream toxics' chain (stream_toxics.h): one stage per toxic, each holding what
// its toxic emitted in due order; Advance moves what is due from stage to stage in
// time order. What a toxic does is its own class (stream_toxics_types.cc).
#include "proxy/fault/stream_toxics.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace wrench::proxy {

using stack::Instant;
using Kind = ToxicChunk::Kind;

const ToxicType* FindStreamToxicType(absl::string_view name) {
  for (const ToxicType& t : StreamToxicTypes()) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

absl::Status ValidateStreamToxic(const StreamToxic& t) {
  if (t.type == nullptr) return absl::InvalidArgumentError("no toxic type");
  if (!(t.toxicity >= 0 && t.toxicity <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("toxicity must be from 0 to 1, got ", t.toxicity));
  }
  if (t.values.size() != t.type->attributes.size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        t.type->name, " takes ", t.type->attributes.size(), " attributes, got ", t.values.size()));
  }
  for (size_t i = 0; i < t.values.size(); ++i) {
    if (t.values[i] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(t.type->attributes[i], " must not be negative, got ", t.values[i]));
    }
  }
  std::unique_ptr<Toxic> toxic = t.type->make();
  toxic->Configure(t.values);
  return toxic->Check();
}

absl::StatusOr<StreamToxic> MakeStreamToxic(
    absl::string_view type, const std::vector<std::pair<absl::string_view, int64_t>>& attributes,
    double toxicity) {
  StreamToxic t;
  t.type = FindStreamToxicType(type);
  if (t.type == nullptr)
    return absl::InvalidArgumentError(absl::StrCat("no stream toxic type \"", type, "\""));
  t.values.assign(t.type->attributes.size(), 0);
  t.toxicity = toxicity;
  for (const auto& [name, value] : attributes) {
    auto it = std::find(t.type->attributes.begin(), t.type->attributes.end(), name);
    if (it == t.type->attributes.end()) {
      return absl::InvalidArgumentError(absl::StrCat(type, " has no attribute \"", name, "\""));
    }
    t.values[static_cast<size_t>(it - t.type->attributes.begin())] = value;
  }
  if (auto s = ValidateStreamToxic(t); !s.ok()) return s;
  return t;
}

// A stage's side of the ToxicContext. A removed stage's emissions skip the holding
// and go on to `next`, the stage that followed it.
class ToxicStream::StageContext final : public ToxicContext {
 public:
  StageContext(ToxicStream& s, size_t index, Stage& stage, bool removed)
      : s_(s), index_(index), stage_(stage), removed_(removed) {}
  void Emit(ToxicChunk chunk, Instant at) override {
    if (!chunk.is_data()) stage_.ended = true;
    if (removed_) return s_.Enter(index_, std::move(chunk), at);
    if (!stage_.held.empty()) at = std::max(at, stage_.held.back().due);
    stage_.held.push_back({std::move(chunk), 0, at});
  }
  void Discard(size_t bytes) override { s_.held_bytes_ -= bytes; }
  void SetTimer(Instant at) override { stage_.timer = at; }
  std::mt19937_64& rng() override { return *s_.rng_; }

 private:
  ToxicStream& s_;
  size_t index_;  // of the stage, or (removed) of the one after it
  Stage& stage_;
  bool removed_;
};

ToxicStream::ToxicStream(std::shared_ptr<const ToxicChain> chain,
                         std::shared_ptr<std::mt19937_64> rng, Instant now)
    : chain_(std::move(chain)), rng_(std::move(rng)) {
  Refresh(now);
}

// Toxiproxy draws rand.Float32() < toxicity: 0 never acts, 1 always.
bool ToxicStream::Draw(double toxicity) {
  return toxicity >= 1 || static_cast<double>((*rng_)() >> 11) * 0x1.0p-53 < toxicity;
}

ToxicStream::Stage ToxicStream::MakeStage(const ToxicChain::Entry& e) {
  Stage s;
  s.id = e.id;
  s.toxicity = e.toxic.toxicity;
  s.toxic = e.toxic.type->make();
  s.toxic->Configure(e.toxic.values);
  s.active = Draw(e.toxic.toxicity);
  return s;
}

void ToxicStream::Refresh(Instant now) {
  if (chain_->version == version_) return;
  version_ = chain_->version;
  std::vector<Stage> next;
  next.reserve(chain_->entries.size());
  std::vector<bool> kept(stages_.size(), false);
  std::vector<size_t> started;
  for (const ToxicChain::Entry& e : chain_->entries) {
    auto it =
        std::find_if(stages_.begin(), stages_.end(), [&](const Stage& s) { return s.id == e.id; });
    if (it == stages_.end()) {
      started.push_back(next.size());
      next.push_back(MakeStage(e));
      continue;
    }
    kept[static_cast<size_t>(it - stages_.begin())] = true;
    Stage s = std::move(*it);
    if (s.toxicity != e.toxic.toxicity) s.active = Draw(e.toxic.toxicity);
    s.toxicity = e.toxic.toxicity;
    s.toxic->Configure(e.toxic.values);  // an update: new attributes for the chunks to come
    next.push_back(std::move(s));
  }
  std::vector<Stage> old = std::move(stages_);
  stages_ = std::move(next);
  for (size_t i : started) {
    if (!stages_[i].active) continue;
    StageContext cx(*this, i, stages_[i], /*removed=*/false);
    stages_[i].toxic->Start(now, cx);
  }
  // A removed toxic's chunks go on at once to the stage that followed it. Toxics are
  // appended and removed, never moved, so that is the survivors' count before it.
  size_t survivors = 0;
  for (size_t k = 0; k < old.size(); ++k) {
    if (kept[k]) {
      ++survivors;
      continue;
    }
    Stage& gone = old[k];
    for (Held& h : gone.held) Enter(survivors, std::move(h.chunk), now);
    if (gone.active && !gone.ended) {
      StageContext cx(*this, survivors, gone, /*removed=*/true);
      gone.toxic->Remove(now, cx);
    }
  }
}

void ToxicStream::Output(ToxicChunk chunk) {
  if (chunk.is_data()) {
    if (end_ != End::kNone || chunk.data.empty()) {
      held_bytes_ -= chunk.data.size();
      return;
    }
    out_bytes_ += chunk.data.size();
    out_.push_back({std::move(chunk), 0, {}});
    return;
  }
  const End e = chunk.kind == Kind::kEof     ? End::kEof
                : chunk.kind == Kind::kClose ? End::kClose
                                             : End::kReset;
  // A reset may follow a half-close (RST after FIN is legal TCP); nothing else follows an end.
  if (end_ == End::kNone || (e == End::kReset && end_ == End::kEof)) end_ = e;
}

void ToxicStream::Enter(size_t index, ToxicChunk chunk, Instant t) {
  if (index == stages_.size()) return Output(std::move(chunk));
  Stage& s = stages_[index];
  if (s.ended) {
    if (chunk.is_data()) held_bytes_ -= chunk.data.size();
    return;
  }
  if (!chunk.is_data()) s.ended = true;
  if (!s.active) return Enter(index + 1, std::move(chunk), t);
  StageContext cx(*this, index, s, /*removed=*/false);
  s.toxic->Enter(std::move(chunk), t, cx);
}

void ToxicStream::Write(Instant now, absl::Span<const uint8_t> bytes) {
  Refresh(now);
  if (source_ended_ || bytes.empty()) return;
  ToxicChunk chunk;
  chunk.data.assign(bytes.begin(), bytes.end());
  chunk.ts = now;
  held_bytes_ += bytes.size();
  Enter(0, std::move(chunk), now);
  Advance(now);
}

void ToxicStream::WriteEof(Instant now) {
  Refresh(now);
  if (source_ended_) return;
  source_ended_ = true;
  ToxicChunk chunk;
  chunk.kind = Kind::kEof;
  chunk.ts = now;
  Enter(0, std::move(chunk), now);
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
        Held h = std::move(stages_[i].held.front());
        stages_[i].held.pop_front();
        Enter(i + 1, std::move(h.chunk), h.due);
      }
      Stage& s = stages_[i];
      if (s.timer > now) continue;
      const Instant t = s.timer;
      s.timer = stack::kNever;
      StageContext cx(*this, i, s, /*removed=*/false);
      s.toxic->OnTimer(t, cx);
      again = true;
    }
  }
}

size_t ToxicStream::Read(absl::Span<uint8_t> out) {
  size_t n = 0;
  while (n < out.size() && !out_.empty()) {
    Held& front = out_.front();
    const std::vector<uint8_t>& data = front.chunk.data;
    const size_t take = std::min(out.size() - n, data.size() - front.off);
    std::copy_n(data.data() + front.off, take, out.data() + n);
    front.off += take;
    n += take;
    if (front.off == data.size()) out_.pop_front();
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
