// The scoreboard's bookkeeping: flags per record and byte counters kept in step,
// so that pipe is known without walking the records.
#include "stack/sack_scoreboard.h"

#include <algorithm>

namespace wrench::stack {

SackScoreboard::SackScoreboard(size_t capacity)
    : ring_(std::min<size_t>(std::max<size_t>(capacity, 1), kInitialRecords)),
      capacity_(std::max<size_t>(capacity, 1)) {}

void SackScoreboard::Grow() {
  std::vector<SentSegment> bigger(std::min(capacity_, 2 * ring_.size()));
  for (size_t i = 0; i < count_; ++i) bigger[i] = (*this)[i];
  ring_.swap(bigger);
  head_ = 0;
}

bool SackScoreboard::OnSend(SeqNum start, SeqNum end, Instant now) {
  if (full() || end <= start) return false;
  if (count_ == ring_.size()) Grow();
  SentSegment& s = ring_[(head_ + count_) % ring_.size()];
  s = SentSegment{};
  s.start = start;
  s.end = end;
  s.sent = now;
  ++count_;
  total_bytes_ += s.len();
  return true;
}

void SackScoreboard::OnRetransmit(size_t i, Instant now) {
  SentSegment& s = (*this)[i];
  s.sent = now;
  s.retransmitted = true;
  if (!s.in_flight_retx && !s.sacked) {
    s.in_flight_retx = true;
    retx_bytes_ += s.len();
  }
}

uint32_t SackScoreboard::OnCumulativeAck(SeqNum ack,
                                         absl::FunctionRef<void(const SentSegment&)> delivered) {
  uint32_t freed = 0;
  while (count_ > 0) {
    SentSegment& s = ring_[head_];
    if (s.start >= ack) break;  // mutate: equivalent >= (an ACK at a record's start trims nothing)
    // mutate: equivalent <= (at s.end == ack both arms give len())
    uint32_t n = s.end <= ack ? s.len() : static_cast<uint32_t>(ack - s.start);
    if (!s.sacked) freed += n;
    total_bytes_ -= n;
    if (s.sacked) sacked_bytes_ -= n;
    if (s.lost) lost_bytes_ -= n;
    if (s.in_flight_retx) retx_bytes_ -= n;
    if (s.end > ack) {
      s.start = ack;  // a record the ACK covers in part is trimmed
      break;
    }
    if (!s.sacked) delivered(s);
    if (s.sacked) --sacked_count_;
    head_ = (head_ + 1) % ring_.size();
    --count_;
  }
  if (count_ == 0) head_ = 0;
  return freed;
}

void SackScoreboard::SetSacked(SentSegment& s) {
  s.sacked = true;
  ++sacked_count_;
  sacked_bytes_ += s.len();
  if (s.lost) lost_bytes_ -= s.len();
  if (s.in_flight_retx) retx_bytes_ -= s.len();
  s.lost = false;
  s.in_flight_retx = false;
}

SackScoreboard::SackResult SackScoreboard::OnSackBlocks(
    absl::Span<const SackBlock> blocks, SeqNum snd_una, SeqNum snd_nxt,
    absl::FunctionRef<void(const SentSegment&)> delivered) {
  SackResult r;
  for (size_t b = 0; b < blocks.size(); ++b) {
    SeqNum left = blocks[b].left, right = blocks[b].right;
    if (b == 0) {
      // RFC 2883 §4: a first block below the cumulative ACK, or inside the second
      // block, reports a duplicate segment.
      bool below = left < snd_una;
      bool inside = blocks.size() > 1 && blocks[1].left <= left && right <= blocks[1].right;
      if ((below || inside) && left < right) {
        r.dsack = true;
        r.dsack_left = left;
        r.dsack_right = right;
        continue;
      }
    }
    // RFC 2018 §3 / RFC 6675 §5: a block must lie within SND.UNA..SND.NXT.
    if (!(left < right) || left < snd_una || right > snd_nxt) continue;
    // mutate: equivalent > (an equal edge stores the same value)
    if (!any_sacked_ever_ || right > high_sacked_) high_sacked_ = right;
    any_sacked_ever_ = true;
    // Records are sorted by sequence number: find the first that ends past `left`.
    size_t lo = 0, hi = count_;
    while (lo < hi) {
      size_t mid = (lo + hi) / 2;
      // mutate: equivalent <= (a record ending at `left` found first is skipped below: it starts
      // before)
      if ((*this)[mid].end <= left) lo = mid + 1; else hi = mid;
    }
    for (size_t i = lo; i < count_; ++i) {
      SentSegment& s = (*this)[i];
      // mutate: equivalent >= (one starting at `right` ends past it: skipped)
      if (s.start >= right) break;
      if (s.sacked || s.start < left || s.end > right) continue;  // only records covered in full
      SetSacked(s);
      r.newly_sacked += s.len();
      delivered(s);
    }
  }
  return r;
}

uint32_t SackScoreboard::MarkLost(size_t i) {
  SentSegment& s = (*this)[i];
  if (s.sacked) return 0;
  if (s.in_flight_retx) {
    s.in_flight_retx = false;  // that retransmission is lost too
    retx_bytes_ -= s.len();
  }
  if (s.lost) return 0;
  s.lost = true;
  lost_bytes_ += s.len();
  return s.len();
}

uint32_t SackScoreboard::MarkLostByDupThresh(int dup_thresh, uint32_t smss) {
  if (sacked_count_ == 0) return 0;
  uint32_t marked = 0;
  size_t sacked_above = 0;
  uint64_t sacked_bytes_above = 0;
  uint64_t byte_limit = static_cast<uint64_t>(dup_thresh - 1) * smss;
  for (size_t k = count_; k-- > 0;) {
    SentSegment& s = (*this)[k];
    if (s.sacked) {
      ++sacked_above;
      sacked_bytes_above += s.len();
      continue;
    }
    if (sacked_above >= static_cast<size_t>(dup_thresh) || sacked_bytes_above > byte_limit) {
      // Everything below is lost as well; retransmitted records are left to RACK
      // and the timer (IsLost speaks of the original transmission).
      for (size_t j = 0; j <= k; ++j) {
        SentSegment& t = (*this)[j];
        if (!t.sacked && !t.lost && !t.in_flight_retx) marked += MarkLost(j);
      }
      break;
    }
  }
  return marked;
}

void SackScoreboard::MarkAllLost() {
  for (size_t i = 0; i < count_; ++i) MarkLost(i);
}

void SackScoreboard::ClearSacks() {
  for (size_t i = 0; i < count_; ++i) {
    SentSegment& s = (*this)[i];
    if (s.sacked) {
      s.sacked = false;
      sacked_bytes_ -= s.len();
    }
  }
  sacked_count_ = 0;
}

size_t SackScoreboard::NextLost() const {
  if (lost_bytes_ == 0) return count_;
  // mutate: equivalent < (one more turn can only return count_, as the loop's end does)
  for (size_t i = 0; i < count_; ++i) {
    const SentSegment& s = (*this)[i];
    if (s.lost && !s.in_flight_retx) return i;
  }
  return count_;
}

uint32_t SackScoreboard::Pipe() const {
  return total_bytes_ - sacked_bytes_ - lost_bytes_ + retx_bytes_;
}

}  // namespace wrench::stack
