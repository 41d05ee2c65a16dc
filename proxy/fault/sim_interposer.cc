// The simulator adapter: TcpRepr -> IPv4 datagram -> engine at the first hook ->
// engine at the second hook -> parsed back (checksums verified) -> delivered.
#include "proxy/fault/sim_interposer.h"

#include <utility>

#include "stack/segment.h"

namespace wrench::proxy {

using stack::Side;

namespace {

bool IsFirstHook(Hook h) { return h == Hook::kFromClient || h == Hook::kFromServer; }
Hook SecondHook(Hook first) {
  return first == Hook::kFromClient ? Hook::kToServer : Hook::kToClient;
}
Side SenderOf(Hook h) {
  return h == Hook::kFromClient || h == Hook::kToServer ? Side::kA : Side::kB;
}

}  // namespace

SimInterposer::SimInterposer(FaultEngine& engine, stack::Simulator& sim, uint64_t conn,
                             stack::IpAddress client, stack::IpAddress server)
    : engine_(engine), sim_(sim), conn_(conn), client_(client), server_(server) {}

stack::TcpState SimInterposer::StateAt(Hook hook) {
  const bool client_leg = hook == Hook::kFromClient || hook == Hook::kToClient;
  return client_leg ? sim_.b().state() : sim_.a().state();
}

void SimInterposer::Submit(stack::Instant now, Side from, const stack::TcpRepr& seg) {
  stack::Segment s;
  stack::Ipv4Repr ip;
  ip.src = from == Side::kA ? client_ : server_;
  ip.dst = from == Side::kA ? server_ : client_;
  s.ip = ip;
  s.tcp = seg;
  scratch_.resize(s.BufferLen());
  absl::StatusOr<size_t> n = stack::EmitSegment(s, absl::MakeSpan(scratch_));
  if (!n.ok()) return;  // the endpoint never makes a segment that does not fit
  std::vector<uint8_t> bytes(scratch_.begin(), scratch_.begin() + static_cast<ptrdiff_t>(*n));
  OfferAt(now, from == Side::kA ? Hook::kFromClient : Hook::kFromServer, bytes);
  Drain(now);
}

void SimInterposer::OfferAt(stack::Instant now, Hook hook, absl::Span<const uint8_t> bytes) {
  absl::StatusOr<stack::ConstDatagramView> view = stack::ConstDatagramView::Check(bytes);
  if (!view.ok()) {
    // Corrupted at the first hook: the proxy's own stack would drop it here.
    ++bad_datagrams_;
    return;
  }
  SegmentMeta meta{conn_, hook, StateAt(hook)};
  const Offered o = engine_.Offer(now, meta, *view);
  if (decision_log_) {
    for (const Decision& d : o.decisions) decision_log_(d);
  }
  if (o.verdict != Verdict::kPass) return;
  if (!o.changed(bytes)) {
    Forward(now, hook, bytes);
    return;
  }
  // The engine's changed copy lives until its next Offer, which Forward may make.
  const std::vector<uint8_t> changed(o.datagram.begin(), o.datagram.end());
  Forward(now, hook, changed);
}

void SimInterposer::Forward(stack::Instant now, Hook hook, absl::Span<const uint8_t> bytes) {
  if (IsFirstHook(hook)) {
    OfferAt(now, SecondHook(hook), bytes);
  } else {
    ready_.push_back(Datagram{hook, std::vector<uint8_t>(bytes.begin(), bytes.end())});
  }
}

// What the engine releases now goes on to its next hook, which may release more
// (copies, a reordered segment) at the same instant.
void SimInterposer::Drain(stack::Instant now) {
  std::vector<Datagram> released;
  for (int round = 0; round < 1000; ++round) {
    released.clear();
    engine_.Poll(now, [&](const SegmentMeta& meta, absl::Span<const uint8_t> d) {
      released.push_back(Datagram{meta.hook, std::vector<uint8_t>(d.begin(), d.end())});
    });
    if (released.empty()) return;
    for (const Datagram& d : released) Forward(now, d.hook, d.bytes);
  }
}

void SimInterposer::Poll(stack::Instant now,
                         absl::FunctionRef<void(Side from, const stack::TcpRepr& seg)> deliver) {
  Drain(now);
  std::vector<Datagram> out = std::move(ready_);
  ready_.clear();
  for (const Datagram& d : out) {
    absl::StatusOr<stack::Segment> parsed = stack::ParseSegment(d.bytes);
    if (!parsed.ok()) {
      ++bad_datagrams_;
      continue;
    }
    deliver(SenderOf(d.hook), parsed->tcp);
  }
}

stack::Instant SimInterposer::NextDeadline() const {
  // Ready datagrams go at the simulator's next instant, which is now.
  return ready_.empty() ? engine_.NextDeadline() : absl::InfinitePast();
}

}  // namespace wrench::proxy
