// TCP sequence numbers: 32-bit values compared modulo 2^32 (RFC 9293 §3.4).
// The endpoint only ever compares SeqNum values, never raw integers.
#pragma once

#include <cstdint>
#include <ostream>

namespace wrench::stack {

class SeqNum {
 public:
  constexpr SeqNum() = default;
  constexpr explicit SeqNum(uint32_t v) : v_(v) {}

  constexpr uint32_t raw() const { return v_; }

  constexpr SeqNum operator+(uint32_t n) const { return SeqNum(v_ + n); }
  constexpr SeqNum operator-(uint32_t n) const { return SeqNum(v_ - n); }
  constexpr SeqNum& operator+=(uint32_t n) { v_ += n; return *this; }
  // Distance from `other` to this, as a signed number: positive when this is after.
  constexpr int32_t operator-(SeqNum other) const {
    return static_cast<int32_t>(v_ - other.v_);
  }

  constexpr bool operator==(const SeqNum&) const = default;
  constexpr bool operator<(SeqNum o) const { return (*this - o) < 0; }
  constexpr bool operator<=(SeqNum o) const { return (*this - o) <= 0; }
  constexpr bool operator>(SeqNum o) const { return (*this - o) > 0; }
  constexpr bool operator>=(SeqNum o) const { return (*this - o) >= 0; }

  friend std::ostream& operator<<(std::ostream& os, SeqNum s) { return os << s.v_; }

 private:
  uint32_t v_ = 0;
};

constexpr SeqNum Max(SeqNum a, SeqNum b) { return a < b ? b : a; }  // mutate: equivalent < (a == b)
constexpr SeqNum Min(SeqNum a, SeqNum b) { return a < b ? a : b; }  // mutate: equivalent < (a == b)

// a <= x < b, modulo 2^32.
constexpr bool InWindow(SeqNum x, SeqNum a, SeqNum b) { return a <= x && x < b; }

}  // namespace wrench::stack
