// The bodies of the libFuzzer targets (fuzz/<name>.cc only wraps them), compiled in
// every build so the g++ corpus replay test runs each corpus file through them.
// Each returns 0; a violated invariant aborts (fuzz/check.h).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace wrench::fuzz {

// Bytes as an IPv4 or IPv6 datagram: whatever parses is emitted again and re-parsed,
// and both parses must be equal.
int FuzzSegmentParser(const uint8_t* data, size_t size);
// Bytes as an event script for one endpoint (fuzz/endpoint_script.h), every
// invariant checked after every step.
int FuzzTcpEndpoint(const uint8_t* data, size_t size);
// Two endpoints in the simulator; the input is a configuration and then one link
// verdict per segment. Once the verdicts run out, the link is clean: every byte
// must arrive and both ends must reach CLOSED.
int FuzzEndpointPair(const uint8_t* data, size_t size);
// Any text: what parses prints back canonically and re-parses equal.
int FuzzRuleParser(const uint8_t* data, size_t size);

// libFuzzer's LLVMFuzzerMutate, or a stand-in outside libFuzzer.
using RawMutator = size_t (*)(uint8_t* data, size_t size, size_t max_size);

// Structure-aware mutators for LLVMFuzzerCustomMutator: they parse the input,
// change a field, an option or an event, and write it back valid (checksums
// right) most of the time; `raw` does the rest.
size_t MutateSegment(uint8_t* data, size_t size, size_t max_size, unsigned seed, RawMutator raw);
size_t MutateEndpointScript(uint8_t* data, size_t size, size_t max_size, unsigned seed,
                            RawMutator raw);

// Recomputes the IPv4 header checksum and the TCP checksum of a datagram after a
// byte-level edit (no IPv6 extension headers); leaves what it cannot locate alone.
void FixChecksums(uint8_t* datagram, size_t size);

// How often each RFC 9293 state, and each state change, was reached by
// FuzzTcpEndpoint in this process (indexes are stack::TcpState values).
struct StateReach {
  std::array<uint64_t, 11> state{};
  std::array<std::array<uint64_t, 11>, 11> edge{};
};
const StateReach& TcpEndpointStateReach();
// "states reached 11/11: CLOSED 12, LISTEN 3, ...; edges 19/20 ..." for the exit summary.
std::string StateReachSummary(const StateReach& r);

}  // namespace wrench::fuzz
