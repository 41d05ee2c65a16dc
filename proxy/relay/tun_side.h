// What Proxy and ServeProxy share on the TUN side of their connections
// (docs/ARCHITECTURE.md "The path of one datagram"): the check of what the TUN
// gives, segments offered to the fault engine at their hook on their way in and out,
// the datagrams the engine releases later, the answer to a segment for no
// connection, and the one timer over every connection's deadline and the engine's.
// Every entry point of theirs (a datagram, a timer, a socket completion, an API
// call) ends with EndOfEntry.
#pragma once

#include <boost/asio.hpp>
#include <cstdint>
#include <optional>
#include <queue>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/types/span.h"
#include "proxy/fault/fault_engine.h"
#include "proxy/relay/loop_timer.h"
#include "proxy/relay/tuple_key.h"
#include "stack/segment.h"
#include "stack/tcp_endpoint.h"
#include "stack/time.h"

namespace wrench::proxy {

class PcapWriter;

// Where the relays' datagrams go: the TUN device (or a test's in-memory link).
class DatagramSink {
 public:
  virtual ~DatagramSink() = default;
  virtual void WriteDatagram(absl::Span<const uint8_t> datagram) = 0;
};

class TunSide {
 public:
  // The relay that owns the connections.
  class Owner {
   public:
    // A datagram the engine held at an inbound hook, or a socket-leg event
    // (SegmentMeta::socket), released now. Called after the engine's Poll returned, so
    // delivering it may offer more segments.
    virtual void OnReleased(const SegmentMeta& meta, absl::Span<const uint8_t> datagram) = 0;
    // The deadline Schedule set for `conn` came.
    virtual void OnDeadline(uint64_t conn, stack::Instant now) = 0;
    // The burst that delivered segments to `conn` ended (EndBurst): what its endpoints
    // owe goes out, and the relay moves what they took.
    virtual void OnBurstEnd(uint64_t conn) = 0;
    // An entry point's last step: frees the connections it removed from the table,
    // which callers up its stack could still read until then.
    virtual void Reap() = 0;

   protected:
    ~Owner() = default;
  };

  // `datagrams_out` counts what is written to the sink (the owner's stats).
  TunSide(boost::asio::io_context& io, DatagramSink& sink, FaultEngine& engine, Owner& owner,
          uint64_t& datagrams_out);

  void set_pcap(PcapWriter* pcap) { pcap_ = pcap; }
  // Writes a datagram read from the TUN to the capture, if there is one.
  void Capture(stack::Instant now, absl::Span<const uint8_t> datagram);

  // An IP datagram that carries no TCP (the kernel's neighbour discovery, ICMP, UDP):
  // not the relays'.
  static bool NotTcp(absl::Span<const uint8_t> datagram);

  // Offers a TCP datagram read from the TUN (checked: `seg` is its parse) at its
  // inbound hook; `deliver` gets what passes: `seg`, or the rules' changed copy parsed
  // again (a corrupted one fails its checksum there, as in a kernel, and goes
  // nowhere). Returns the rules' last decision, copied: delivery may offer more.
  std::optional<Decision> Receive(stack::Instant now, const SegmentMeta& meta,
                                  absl::Span<const uint8_t> datagram, const stack::Segment& seg,
                                  absl::FunctionRef<void(const stack::Segment&)> deliver);

  // Offers a datagram just emitted (`datagram`) at its outbound hook and writes what
  // passes to the sink.
  Offered Transmit(stack::Instant now, const SegmentMeta& meta, absl::Span<const uint8_t> datagram);

  // Sends what an endpoint of ours (with `key`'s addresses: remote, the peer) has due
  // through Transmit, at `meta`'s hook with the endpoint's state; `log` hears each
  // segment and its fate. True when an `rst` rule sent a RST in place of one: for the
  // peer the connection is reset, so the endpoint ends as one that sent it, by ABORT
  // (RFC 9293 §3.10.5), and never retransmits what the RST replaced. The RST ABORT
  // queues is the one already on the wire: it is discarded, not sent a second time.
  bool Flush(
      stack::TcpEndpoint& ep, const TupleKey& key, SegmentMeta meta,
      absl::FunctionRef<void(const stack::Segment&, const SegmentMeta&, const Offered&)> log);

  // Answers a segment that belongs to no connection with a RST (RFC 9293 §3.10.7.1,
  // as for a CLOSED port).
  void SendStrayRst(const stack::Segment& seg);

  // Builds `seg` into the one outgoing buffer; valid until the next call.
  absl::StatusOr<absl::Span<const uint8_t>> Emit(const stack::Segment& seg);
  // The IP identification for the next datagram of ours.
  uint16_t NextIdent() { return next_ident_++; }
  // A local port from 40000 to 60999 that `taken` says is free, or 0.
  uint16_t FreePort(absl::FunctionRef<bool(uint16_t)> taken);

  // The connection's next deadline (stack::kNever: none); what was set before for it
  // is forgotten. One min-heap holds them all.
  void Schedule(uint64_t conn, stack::Instant at);
  // Releases what the engine holds that is due, arms the timer for the earliest
  // deadline, and lets the owner reap.
  void EndOfEntry();
  // A burst: the wire segments cut from one super-segment, delivered one by one (the
  // rules see each) and answered once at its end, as a kernel answers what GRO merged:
  // one ACK for a run of in-order segments rather than one for every second. Between
  // BeginBurst and EndBurst, EndOfEntry waits for the end, and the owner asks
  // DeferService before answering a connection's delivery.
  void BeginBurst() { burst_ = true; }
  // In a burst: remembers `conn` for OnBurstEnd and returns true; otherwise false.
  bool DeferService(uint64_t conn);
  // Ends the burst: OnBurstEnd for each connection that took segments, in the order
  // they first did, then EndOfEntry.
  void EndBurst();
  // No more timer, and what the owner removed is freed: it is shutting down.
  void Stop();

  // Each rule's hits ("#1 3 hits, #2 0 hits"), for the relays' summaries.
  std::string RuleHits() const;

 private:
  void PollEngine();
  void ArmTimer();
  void OnTimer();

  DatagramSink& sink_;
  FaultEngine& engine_;
  Owner& owner_;
  uint64_t& datagrams_out_;
  PcapWriter* pcap_ = nullptr;
  std::vector<uint8_t> out_buf_;  // one datagram being emitted
  uint16_t next_ident_ = 1;
  uint16_t next_ephemeral_ = 40000;

  // Every connection's deadline: a min-heap of (deadline, connection, generation);
  // an entry whose generation is no longer the connection's is stale and skipped.
  struct TimerEntry {
    stack::Instant at;
    uint64_t conn;
    uint64_t gen;
    bool operator>(const TimerEntry& o) const { return at > o.at; }
  };
  struct Scheduled {
    stack::Instant at = stack::kNever;
    uint64_t gen = 0;
  };
  std::priority_queue<TimerEntry, std::vector<TimerEntry>, std::greater<>> timers_;
  absl::flat_hash_map<uint64_t, Scheduled> scheduled_;
  uint64_t next_gen_ = 0;
  LoopTimer timer_;
  bool stopped_ = false;
  bool burst_ = false;
  std::vector<uint64_t> burst_conns_;  // the connections a burst delivered to
};

}  // namespace wrench::proxy
