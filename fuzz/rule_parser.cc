// libFuzzer entry of rule_parser (body in rule_parser_target.cc); rule_parser.dict
// gives the mutator the language's words.
#include <cstddef>
#include <cstdint>

#include "fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return wrench::fuzz::FuzzRuleParser(data, size);
}
