// Stack bugs the fuzzers have found and that are still open. While a bug is open its
// flag relaxes exactly its invariant, so the CI fuzz runs keep looking for new bugs,
// and its reproducer waits in fuzz/repro/<target>/; when the fix lands (and a strict
// fuzz run agrees) the flag and its uses go and the reproducer moves to
// corpus/<target>-crashes/, replayed in every build. -DWRENCH_FUZZ_STRICT turns every
// open flag off. A flag is declared as
//   inline constexpr bool kKnownShortName = kTolerateKnown;
// after a comment that says what goes wrong, where, and what the flag relaxes.
#pragma once

namespace wrench::fuzz {

#ifdef WRENCH_FUZZ_STRICT
inline constexpr bool kTolerateKnown = false;
#else
inline constexpr bool kTolerateKnown = true;
#endif

// No bug is open: every one found so far is fixed, and its reproducer is in
// corpus/<target>-crashes/ (make_corpus writes the scripted ones).

}  // namespace wrench::fuzz
