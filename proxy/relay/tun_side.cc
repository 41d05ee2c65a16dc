// The relays' shared TUN side (tun_side.h).
#include "proxy/relay/tun_side.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "proxy/relay/capture.h"

namespace wrench::proxy {

using stack::Instant;
using stack::Segment;
using stack::TcpRepr;
using stack::TcpState;

TunSide::TunSide(boost::asio::io_context& io, DatagramSink& sink, FaultEngine& engine, Owner& owner,
                 uint64_t& datagrams_out)
    : sink_(sink),
      engine_(engine),
      owner_(owner),
      datagrams_out_(datagrams_out),
      out_buf_(65536 + 120),
      timer_(io, [this] { OnTimer(); }) {}

void TunSide::Capture(Instant now, absl::Span<const uint8_t> datagram) {
  if (pcap_) pcap_->Write(now, datagram);
}

bool TunSide::NotTcp(absl::Span<const uint8_t> d) {
  if (d.empty()) return false;
  return (d[0] >> 4 == 4 && d.size() > 9 && d[9] != stack::kIpProtoTcp) ||
         (d[0] >> 4 == 6 && d.size() > 6 && d[6] != stack::kIpProtoTcp);
}

std::optional<Decision> TunSide::Receive(Instant now, const SegmentMeta& meta,
                                         absl::Span<const uint8_t> datagram, const Segment& seg,
                                         absl::FunctionRef<void(const Segment&)> deliver) {
  // The caller parsed the bytes: the view only finds the parts again.
  auto view = stack::ConstDatagramView::Check(datagram, {.verify_checksums = false});
  if (!view.ok()) return std::nullopt;
  const Offered o = engine_.Offer(now, meta, *view);
  std::optional<Decision> decision;
  if (o.last()) decision = *o.last();
  if (o.verdict != Verdict::kPass) return decision;
  if (!o.changed(datagram)) {
    deliver(seg);
    return decision;
  }
  // The engine's changed copy lives until its next Offer, which delivery may make.
  const std::vector<uint8_t> changed(o.datagram.begin(), o.datagram.end());
  if (auto parsed = stack::ParseSegment(changed); parsed.ok()) deliver(*parsed);
  return decision;
}

Offered TunSide::Transmit(Instant now, const SegmentMeta& meta,
                          absl::Span<const uint8_t> datagram) {
  // The bytes were just emitted: the view finds their parts without a parse.
  auto view = stack::ConstDatagramView::Check(datagram, {.verify_checksums = false});
  if (!view.ok()) return Offered{Verdict::kTaken, {}, {}};  // not for what EmitSegment wrote
  Offered o = engine_.Offer(now, meta, *view);
  if (o.verdict == Verdict::kPass) {
    sink_.WriteDatagram(o.datagram);
    ++datagrams_out_;
    Capture(now, o.datagram);
  }
  return o;
}

bool TunSide::Flush(
    stack::TcpEndpoint& ep, const TupleKey& key, SegmentMeta meta,
    absl::FunctionRef<void(const Segment&, const SegmentMeta&, const Offered&)> log) {
  Instant now = MonotonicNow();
  bool reset_by_rule = false;
  ep.Poll(now, [&](const TcpRepr& r) {
    // After a RST the peer has nothing more to see from this endpoint.
    if (reset_by_rule) return;
    Segment s = stack::MakeSegment(key.local_addr, key.remote_addr, r, NextIdent());
    auto bytes = Emit(s);
    if (!bytes.ok()) return;  // cannot happen for what the endpoint builds
    meta.state = ep.state();
    const Offered o = Transmit(now, meta, *bytes);
    log(s, meta, o);
    reset_by_rule = o.replaced_by_rst() && !r.flags.has(stack::kRst);
  });
  if (reset_by_rule && ep.state() != TcpState::kClosed) {
    ep.Abort(now);
    ep.Poll(now, [](const TcpRepr&) {});
  }
  return reset_by_rule;
}

void TunSide::SendStrayRst(const Segment& seg) {
  auto bytes = Emit(stack::ClosedPortReset(seg, NextIdent()));
  if (!bytes.ok()) return;
  sink_.WriteDatagram(*bytes);
  ++datagrams_out_;
  Capture(MonotonicNow(), *bytes);
}

absl::StatusOr<absl::Span<const uint8_t>> TunSide::Emit(const Segment& seg) {
  auto n = stack::EmitSegment(seg, absl::MakeSpan(out_buf_));
  if (!n.ok()) return n.status();
  return absl::MakeConstSpan(out_buf_.data(), *n);
}

uint16_t TunSide::FreePort(absl::FunctionRef<bool(uint16_t)> taken) {
  for (int tries = 0; tries < 30000; ++tries) {
    uint16_t p = next_ephemeral_;
    next_ephemeral_ = next_ephemeral_ >= 60999 ? 40000 : next_ephemeral_ + 1;
    if (!taken(p)) return p;
  }
  return 0;
}

void TunSide::Schedule(uint64_t conn, Instant at) {
  if (at == stack::kNever) {
    scheduled_.erase(conn);
    return;
  }
  Scheduled& s = scheduled_[conn];
  if (s.at == at) return;
  s.at = at;
  s.gen = ++next_gen_;
  timers_.push({at, conn, s.gen});
}

void TunSide::PollEngine() {
  Instant now = MonotonicNow();
  for (int round = 0; round < 16 && engine_.NextDeadline() <= now; ++round) {
    std::vector<std::pair<SegmentMeta, std::vector<uint8_t>>> inbound;
    engine_.Poll(now, [&](const SegmentMeta& meta, absl::Span<const uint8_t> datagram) {
      if (!meta.socket && (meta.hook == Hook::kToClient || meta.hook == Hook::kToServer)) {
        sink_.WriteDatagram(datagram);
        ++datagrams_out_;
        Capture(now, datagram);
      } else {
        // Delivered after Poll returns: delivery offers new segments to the engine.
        inbound.emplace_back(meta, std::vector<uint8_t>(datagram.begin(), datagram.end()));
      }
    });
    for (auto& [meta, bytes] : inbound) owner_.OnReleased(meta, bytes);
  }
}

void TunSide::ArmTimer() {
  if (stopped_) return;
  while (!timers_.empty()) {
    const TimerEntry& top = timers_.top();
    auto it = scheduled_.find(top.conn);
    if (it != scheduled_.end() && it->second.gen == top.gen) break;
    timers_.pop();  // stale
  }
  Instant next = engine_.NextDeadline();
  if (!timers_.empty()) next = std::min(next, timers_.top().at);
  timer_.ArmAt(next);
}

void TunSide::OnTimer() {
  Instant now = MonotonicNow();
  while (!timers_.empty() && timers_.top().at <= now) {
    TimerEntry e = timers_.top();
    timers_.pop();
    auto it = scheduled_.find(e.conn);
    if (it == scheduled_.end() || it->second.gen != e.gen) continue;
    scheduled_.erase(it);
    owner_.OnDeadline(e.conn, now);
  }
  EndOfEntry();
}

bool TunSide::DeferService(uint64_t conn) {
  if (!burst_) return false;
  if (std::find(burst_conns_.begin(), burst_conns_.end(), conn) == burst_conns_.end()) {
    burst_conns_.push_back(conn);
  }
  return true;
}

void TunSide::EndBurst() {
  burst_ = false;
  // OnBurstEnd may start another entry point's work; the list is taken first.
  std::vector<uint64_t> conns;
  conns.swap(burst_conns_);
  for (uint64_t conn : conns) owner_.OnBurstEnd(conn);
  EndOfEntry();
}

void TunSide::EndOfEntry() {
  if (burst_) return;  // EndBurst ends the entry
  PollEngine();
  ArmTimer();
  owner_.Reap();
}

std::string TunSide::RuleHits() const {
  std::string out;
  for (const auto& r : engine_.Rules())
    absl::StrAppend(&out, out.empty() ? "" : ", ", "#", r.id, " ", r.hits, " hits");
  return out;
}

void TunSide::Stop() {
  stopped_ = true;
  timer_.Cancel();
  owner_.Reap();
}

}  // namespace wrench::proxy
