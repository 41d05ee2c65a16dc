// A fixed-capacity byte ring, allocated once when a connection is set up. The
// endpoint's send and receive buffers are rings, so the steady state allocates
// nothing per segment. Offsets are relative to the oldest byte held. The storage
// is not zero-filled: an idle connection's large buffers stay untouched pages.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>

#include "absl/types/span.h"

namespace wrench::stack {

class RingBuffer {
 public:
  explicit RingBuffer(size_t capacity) : buf_(new uint8_t[capacity]), capacity_(capacity) {}

  size_t capacity() const { return capacity_; }
  size_t size() const { return size_; }
  size_t free() const { return capacity_ - size_; }
  bool empty() const { return size_ == 0; }

  // Appends as much of `data` as fits; returns the number of bytes taken.
  size_t Append(absl::Span<const uint8_t> data) {
    size_t n = std::min(data.size(), free());
    WriteAt(size_, data.first(n));
    size_ += n;
    return n;
  }

  // Writes `data` at `offset` past the oldest byte without changing size(): the
  // receive side places out-of-order data where it belongs. offset + data.size()
  // must not exceed capacity().
  void WriteAt(size_t offset, absl::Span<const uint8_t> data) {
    size_t pos = Wrap(head_ + offset);
    size_t first = std::min(data.size(), capacity_ - pos);
    if (first) std::memcpy(&buf_[pos], data.data(), first);
    // mutate: equivalent > (copies nothing when equal)
    if (data.size() > first) std::memcpy(&buf_[0], data.data() + first, data.size() - first);
  }

  // Counts bytes already written by WriteAt as held (they become readable).
  void Commit(size_t n) { size_ = std::min(capacity_, size_ + n); }

  // The longest contiguous run of held bytes starting at `offset`, at most `max` long.
  absl::Span<const uint8_t> Contiguous(size_t offset, size_t max) const {
    // mutate: equivalent >= (at size_ the run below is empty too)
    if (offset >= size_) return {};
    size_t pos = Wrap(head_ + offset);
    size_t n = std::min({max, size_ - offset, capacity_ - pos});
    return {&buf_[pos], n};
  }

  // Copies up to out.size() bytes from `offset` without consuming them.
  size_t Peek(size_t offset, absl::Span<uint8_t> out) const {
    size_t done = 0;
    // mutate: equivalent < (a run of at most 0 bytes is empty: the loop breaks)
    while (done < out.size()) {
      auto run = Contiguous(offset + done, out.size() - done);
      if (run.empty()) break;
      std::memcpy(out.data() + done, run.data(), run.size());
      done += run.size();
    }
    return done;
  }

  // Drops the oldest n bytes.
  void Consume(size_t n) {
    n = std::min(n, size_);
    head_ = Wrap(head_ + n);
    size_ -= n;
  }

  size_t Read(absl::Span<uint8_t> out) {
    size_t n = Peek(0, out);
    Consume(n);
    return n;
  }

 private:
  size_t Wrap(size_t i) const { return i >= capacity_ ? i - capacity_ : i; }

  std::unique_ptr<uint8_t[]> buf_;
  size_t capacity_;
  size_t head_ = 0;
  size_t size_ = 0;
};

}  // namespace wrench::stack
