// libFuzzer entry of endpoint_pair (body in endpoint_pair_target.cc). Its input is
// a 16-byte header and one link verdict byte per segment, which libFuzzer's own
// byte mutations already edit well.
#include <cstddef>
#include <cstdint>

#include "fuzz/targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return wrench::fuzz::FuzzEndpointPair(data, size);
}
