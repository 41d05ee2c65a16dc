// The relays' clock, and their one timer on the Asio loop, set to the earliest deadline their
// endpoints and the fault engine ask for (stack::Instant), and the conversion of that
// time to the loop's clock.
#pragma once

#include <boost/asio.hpp>
#include <chrono>
#include <functional>
#include <utility>

#include "absl/time/time.h"
#include "stack/time.h"

namespace wrench::proxy {

// The clock the relays run on: monotonic, expressed as a stack::Instant.
inline stack::Instant MonotonicNow() {
  return absl::UnixEpoch() + absl::FromChrono(std::chrono::steady_clock::now().time_since_epoch());
}

inline std::chrono::steady_clock::time_point ToSteady(stack::Instant t) {
  return std::chrono::steady_clock::time_point(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          absl::ToChronoNanoseconds(t - absl::UnixEpoch())));
}

class LoopTimer {
 public:
  LoopTimer(boost::asio::io_context& io, std::function<void()> on_fire)
      : timer_(io), on_fire_(std::move(on_fire)) {}

  // Fires once at `at`; stack::kNever cancels. Asking again for the time already set
  // costs nothing, so callers re-arm after every event.
  void ArmAt(stack::Instant at) {
    if (at == at_) return;
    at_ = at;
    if (at == stack::kNever) {
      timer_.cancel();
      return;
    }
    timer_.expires_at(ToSteady(at));
    timer_.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      at_ = stack::kNever;
      on_fire_();
    });
  }
  void Cancel() { timer_.cancel(); }

 private:
  boost::asio::steady_timer timer_;
  stack::Instant at_ = stack::kNever;
  std::function<void()> on_fire_;
};

}  // namespace wrench::proxy
