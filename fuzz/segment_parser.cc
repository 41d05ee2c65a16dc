// libFuzzer entry of segment_parser (body in segment_parser_target.cc). Its custom
// mutator's entry is segment_parser_mutator.cc.
#include <cstddef>
#include <cstdint>

#include "fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return wrench::fuzz::FuzzSegmentParser(data, size);
}
