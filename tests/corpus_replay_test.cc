// Replays every seed and every crash input ever found (corpus/<target>/ and
// corpus/<target>-crashes/) through the fuzz targets' bodies, so the ordinary
// g++ build guards against regressions without libFuzzer. A violation aborts.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz/check.h"
#include "fuzz/targets.h"
#include "gtest/gtest.h"

namespace wrench::fuzz {
namespace {

namespace fs = std::filesystem;

using Target = int (*)(const uint8_t*, size_t);

// Runs every file of the target's seed and crash folders, and the reproducers of
// known bugs (fuzz/repro/<target>/, tolerated until fixed: see known_issues.h);
// returns how many seeds ran.
size_t Replay(const std::string& target, Target fn) {
  size_t seeds = 0;
  const fs::path root(WRENCH_SOURCE_DIR);
  for (const fs::path& path : {root / "corpus" / target, root / "corpus" / (target + "-crashes"),
                               root / "fuzz" / "repro" / target}) {
    if (!fs::is_directory(path)) continue;
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(path)) {
      if (entry.is_regular_file()) files.push_back(entry.path());
    }
    std::sort(files.begin(), files.end());
    for (const fs::path& f : files) {
      std::ifstream in(f, std::ios::binary);
      std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                 std::istreambuf_iterator<char>());
      SetCurrentInputName(f.string());
      // libFuzzer never passes a null pointer, even for an empty input.
      uint8_t empty = 0;
      fn(bytes.empty() ? &empty : bytes.data(), bytes.size());
      if (path == root / "corpus" / target) ++seeds;
    }
  }
  SetCurrentInputName("");
  return seeds;
}

TEST(CorpusReplay, SegmentParser) { EXPECT_GT(Replay("segment_parser", FuzzSegmentParser), 20u); }
TEST(CorpusReplay, TcpEndpoint) { EXPECT_GT(Replay("tcp_endpoint", FuzzTcpEndpoint), 20u); }
TEST(CorpusReplay, EndpointPair) { EXPECT_GT(Replay("endpoint_pair", FuzzEndpointPair), 5u); }
TEST(CorpusReplay, RuleParser) { EXPECT_GT(Replay("rule_parser", FuzzRuleParser), 10u); }

// The seeds are meant to cover the state diagram: every state, replayed.
TEST(CorpusReplay, TcpEndpointSeedsReachEveryState) {
  Replay("tcp_endpoint", FuzzTcpEndpoint);
  const StateReach& r = TcpEndpointStateReach();
  std::cout << "tcp_endpoint seeds: " << StateReachSummary(r) << "\n";
  for (size_t i = 0; i < r.state.size(); ++i) {
    EXPECT_GT(r.state[i], 0u) << "state " << i << " never reached\n" << StateReachSummary(r);
  }
}

}  // namespace
}  // namespace wrench::fuzz
