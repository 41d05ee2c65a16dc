// Counts heap allocations in a benchmark program: replaces the global operator new
// (include this header in exactly one file of a benchmark executable) and reports
// allocations per iteration, so the hot paths can show 0.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>

#include "benchmark/benchmark.h"

namespace wrench::bench {
inline std::atomic<uint64_t> g_allocs{0};

inline void* CountedAlloc(std::size_t n) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}

inline void* CountedAlignedAlloc(std::size_t n, std::align_val_t al) {
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  auto a = static_cast<std::size_t>(al);
  if (void* p = std::aligned_alloc(a, (n + a - 1) / a * a)) return p;
  throw std::bad_alloc();
}

// Counts allocations from construction to Report(); construct it just before the
// timing loop and report just after it, before the benchmark adds its own counters
// (which allocate).
class AllocCounter {
 public:
  explicit AllocCounter(benchmark::State& state)
      : state_(state), start_(g_allocs.load(std::memory_order_relaxed)) {}
  void Report() {
    uint64_t n = g_allocs.load(std::memory_order_relaxed) - start_;
    state_.counters["allocs_per_iter"] =
        benchmark::Counter(static_cast<double>(n), benchmark::Counter::kAvgIterations);
  }

 private:
  benchmark::State& state_;
  uint64_t start_;
};
}  // namespace wrench::bench

void* operator new(std::size_t n) { return wrench::bench::CountedAlloc(n); }
void* operator new[](std::size_t n) { return wrench::bench::CountedAlloc(n); }
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
  wrench::bench::g_allocs.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n == 0 ? 1 : n);
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
  wrench::bench::g_allocs.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n == 0 ? 1 : n);
}
void* operator new(std::size_t n, std::align_val_t al) {
  return wrench::bench::CountedAlignedAlloc(n, al);
}
void* operator new[](std::size_t n, std::align_val_t al) {
  return wrench::bench::CountedAlignedAlloc(n, al);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
