// The sender's record of every segment in flight (RFC 6675 §2 "scoreboard"): its
// sequence range, when it was last sent, and whether the peer SACKed it, the
// sender deems it lost (RFC 6675 IsLost, RFC 8985 RACK) or retransmitted it.
// The records live in a ring that starts small and doubles, up to the capacity the
// connection was given, as its flight grows: an idle connection holds a few records,
// not hundreds (memory per connection), and once grown nothing is allocated per
// segment. A ring at its capacity holds back new data until ACKs free records.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/types/span.h"
#include "stack/seq.h"
#include "stack/tcp_wire.h"
#include "stack/time.h"

namespace wrench::stack {

struct SentSegment {
  SeqNum start, end;     // [start, end) in sequence space; a FIN counts as one
  Instant sent;          // the latest (re)transmission
  bool sacked = false;   // the peer's SACK blocks cover it all
  bool lost = false;     // deemed lost and not yet retransmitted since
  bool retransmitted = false;  // sent more than once (Karn; RACK's RTT ambiguity)
  bool in_flight_retx = false; // a retransmission of it is in flight (RFC 6675 pipe)
  uint32_t len() const { return static_cast<uint32_t>(end - start); }
};

class SackScoreboard {
 public:
  explicit SackScoreboard(size_t capacity);

  size_t size() const { return count_; }
  size_t capacity() const { return capacity_; }
  bool full() const { return count_ == capacity_; }
  bool empty() const { return count_ == 0; }
  SentSegment& operator[](size_t i) { return ring_[(head_ + i) % ring_.size()]; }
  const SentSegment& operator[](size_t i) const { return ring_[(head_ + i) % ring_.size()]; }
  SentSegment& back() { return (*this)[count_ - 1]; }

  // A new segment [start, end) went out at `now`; it must follow the last one.
  // Returns false (and records nothing) when the ring is full.
  bool OnSend(SeqNum start, SeqNum end, Instant now);
  // Segment i was sent again at `now`.
  void OnRetransmit(size_t i, Instant now);

  // The cumulative ACK reached `ack`: records below it go, one straddling it is
  // trimmed. `delivered` sees each record the ACK covers in full that was not
  // SACKed before. Returns the bytes no longer in the scoreboard that were not SACKed.
  uint32_t OnCumulativeAck(SeqNum ack, absl::FunctionRef<void(const SentSegment&)> delivered);

  // The SACK blocks of an ACK (RFC 2018), after its cumulative ACK was applied.
  // A block outside SND.UNA..SND.NXT or empty is ignored (RFC 6675 §5 rule and
  // RFC 2018 §3); a first block below the cumulative ACK or inside the second is
  // a D-SACK (RFC 2883 §4) and reported, not applied. Records a block covers in
  // full become SACKed; `delivered` sees each. Returns the newly SACKed bytes.
  struct SackResult {
    uint32_t newly_sacked = 0;
    bool dsack = false;
    SeqNum dsack_left, dsack_right;
  };
  SackResult OnSackBlocks(absl::Span<const SackBlock> blocks, SeqNum snd_una, SeqNum snd_nxt,
                          absl::FunctionRef<void(const SentSegment&)> delivered);

  // RFC 6675 §4 IsLost: marks every record below which DupThresh SACKed records, or
  // more than (DupThresh - 1) * SMSS SACKed bytes, lie. Returns the bytes newly marked.
  uint32_t MarkLostByDupThresh(int dup_thresh, uint32_t smss);
  // Marks record i lost (a retransmission of it may go again). Returns its bytes if newly marked.
  uint32_t MarkLost(size_t i);
  // Every record not SACKed becomes lost (a retransmission timeout, RFC 6675 §5.1).
  void MarkAllLost();
  // Clears every SACK mark: the receiver may have reneged (RFC 2018 §8).
  void ClearSacks();

  // Index of the first record deemed lost and not retransmitted since (RFC 6675
  // NextSeg rule 1), or size() if none.
  size_t NextLost() const;

  uint32_t sacked_bytes() const { return sacked_bytes_; }
  uint32_t lost_bytes() const { return lost_bytes_; }
  size_t sacked_count() const { return sacked_count_; }
  // Bytes in flight (RFC 6675 §4 SetPipe): every record not SACKed and not deemed
  // lost counts once, and a retransmission in flight once more.
  uint32_t Pipe() const;
  // The highest sequence number any SACK block covered (RFC 6675 HighACK of SACK).
  SeqNum high_sacked() const { return high_sacked_; }

 private:
  // The records a ring starts with.
  static constexpr size_t kInitialRecords = 16;

  void SetSacked(SentSegment& s);
  // Doubles the ring (at most to capacity_), the records in order from index 0.
  void Grow();
  std::vector<SentSegment> ring_;
  size_t capacity_;
  size_t head_ = 0, count_ = 0;
  uint32_t total_bytes_ = 0;     // sum of len() over the records
  uint32_t sacked_bytes_ = 0;    // records SACKed
  uint32_t lost_bytes_ = 0;      // records deemed lost (lost == true)
  uint32_t retx_bytes_ = 0;      // records whose retransmission is in flight
  size_t sacked_count_ = 0;
  SeqNum high_sacked_;
  bool any_sacked_ever_ = false;
};

}  // namespace wrench::stack
