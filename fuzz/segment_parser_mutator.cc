// segment_parser's LLVMFuzzerCustomMutator: the structure-aware mutator of
// segment_mutator.cc, which edits parsed fields and re-emits valid datagrams.
#include <cstddef>
#include <cstdint>

#include "fuzz/targets.h"

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

extern "C" size_t LLVMFuzzerCustomMutator(uint8_t* data, size_t size, size_t max_size,
                                          unsigned int seed) {
  return wrench::fuzz::MutateSegment(data, size, max_size, seed, &LLVMFuzzerMutate);
}
