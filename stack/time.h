// The one time type of the stack. Nothing in stack/ reads a clock: time comes in
// as an argument, so the proxy passes the wall clock and the simulator a virtual one.
#pragma once

#include "absl/time/time.h"

namespace wrench::stack {

using Instant = absl::Time;
using Duration = absl::Duration;

// The far future: "no deadline".
inline constexpr Instant kNever = absl::InfiniteFuture();

}  // namespace wrench::stack
