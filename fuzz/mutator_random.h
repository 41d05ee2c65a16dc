// The seeded draws both structure-aware mutators make. libFuzzer passes a seed with
// each call, so one seed makes one mutation.
#pragma once

#include <cstdint>
#include <random>

namespace wrench::fuzz {

class MutatorRandom {
 public:
  explicit MutatorRandom(unsigned seed = 1) : rng_(seed) {}

  void Seed(unsigned seed) { rng_.seed(seed); }
  uint32_t Next() { return static_cast<uint32_t>(rng_()); }
  // Uniform in [0, n); 0 when n is 0.
  uint32_t Below(uint32_t n) { return n == 0 ? 0 : Next() % n; }
  // True with probability num/den.
  bool Chance(uint32_t num, uint32_t den) { return Below(den) < num; }

 private:
  std::minstd_rand rng_;
};

}  // namespace wrench::fuzz
