// libFuzzer entry of tcp_endpoint (body in tcp_endpoint_target.cc), with the
// script-aware mutator; at exit it prints which RFC 9293 states were reached.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "fuzz/targets.h"

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace {
void PrintStateReach() {
  std::string s = wrench::fuzz::StateReachSummary(wrench::fuzz::TcpEndpointStateReach());
  std::fprintf(stderr, "tcp_endpoint %s\n", s.c_str());
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  std::atexit(PrintStateReach);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return wrench::fuzz::FuzzTcpEndpoint(data, size);
}

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned int seed) {
  return wrench::fuzz::MutateEndpointScript(data, size, max_size, seed, &LLVMFuzzerMutate);
}
