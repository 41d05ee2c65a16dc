// The internet checksum (RFC 1071) and the TCP pseudo-header sums for IPv4 and
// IPv6. Used by the wire format (stack/ip.h, stack/tcp_wire.h) on every segment,
// so it is written for speed: 64-bit accumulation, folded once at the end.
#pragma once

#include <cstdint>

#include "absl/types/span.h"

namespace wrench::stack {

class IpAddress;

// One's-complement sum of `data` (big-endian 16-bit words) added to `initial`,
// not yet folded or inverted. Chain calls to sum discontiguous pieces; every piece
// but the last must have an even length.
uint64_t ChecksumAccumulate(absl::Span<const uint8_t> data, uint64_t initial = 0);

// Folds a 64-bit accumulator to 16 bits and inverts it: the value that goes on the wire.
uint16_t ChecksumFinish(uint64_t sum);

// RFC 1624 eqn. 3, HC' = ~(~HC + ~m + m'): the checksum `checksum` after the words
// that summed to `old_sum` were replaced by words that sum to `new_sum` (both
// ChecksumAccumulate results over the same even-aligned range).
uint16_t ChecksumUpdate(uint16_t checksum, uint64_t old_sum, uint64_t new_sum);

// ChecksumFinish(ChecksumAccumulate(data)).
uint16_t InternetChecksum(absl::Span<const uint8_t> data);

// Sum of the pseudo-header (RFC 9293 §3.1 for IPv4, RFC 8200 §8.1 for IPv6).
uint64_t PseudoHeaderSum(const IpAddress& src, const IpAddress& dst, uint8_t protocol,
                         uint32_t upper_layer_length);

}  // namespace wrench::stack
