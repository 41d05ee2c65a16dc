// Stack bugs the fuzzers have found. While a bug is open its flag relaxes exactly
// its invariant, so the CI fuzz runs keep looking for new bugs, and its reproducer
// waits in fuzz/repro/<target>/; when the fix lands (and a strict fuzz run agrees)
// the flag becomes false and the reproducer moves to corpus/<target>-crashes/,
// replayed in every build. -DWRENCH_FUZZ_STRICT turns every open flag off.
#pragma once

namespace wrench::fuzz {

#ifdef WRENCH_FUZZ_STRICT
inline constexpr bool kTolerateKnown = false;
#else
inline constexpr bool kTolerateKnown = true;
#endif

// segment_parser: a segment whose options were packed densely (no alignment NOPs)
// parses, but its canonical re-emission needs more than 40 option bytes.
inline constexpr bool kKnownDenseOptionsDoNotReEmit =
    false;  // fixed: a dense layout when the canonical one needs > 40 bytes; reproducer in
            // corpus/segment_parser-crashes

// tcp_endpoint: HasPendingOutput() ("true when Poll would emit something now") is
// true while sender SWS avoidance (RFC 9293 §3.8.6.2.1) makes Poll hold the data
// back: an event loop that polls while output is pending spins until an ACK comes.
// While set, only the other direction (Poll emits what was not announced) is checked.
inline constexpr bool kKnownPendingOutputWithoutOutput =
    false;  // fixed (628328a, c241815); reproducer in corpus/*-crashes

// tcp_endpoint: in TIME-WAIT, a FIN at RCV.NXT (one past the peer's first FIN)
// advances RCV.NXT again, so the endpoint acknowledges sequence space the peer
// never sent. CLOSE-WAIT, CLOSING and LAST-ACK leave RCV.NXT alone, as Linux does
// in TIME-WAIT too. While set, the ACK bound is not checked in TIME-WAIT.
inline constexpr bool kKnownTimeWaitTakesSecondFin =
    false;  // fixed (628328a, c241815); reproducer in corpus/*-crashes

// tcp_endpoint: a passive connection that goes from SYN-RECEIVED back to LISTEN on
// an in-window SYN keeps the bytes the application queued for it (the RST path
// flushes them), and the next connection sends them as its own first bytes.
inline constexpr bool kKnownListenKeepsQueuedData =
    false;  // fixed (628328a, c241815); reproducer in corpus/*-crashes

// tcp_endpoint: a SYN with MSS 0 (or below 13) and timestamps: AcceptSynOptions
// subtracts the 12 timestamp bytes from the MSS without a floor, the unsigned value
// wraps, and SND.MSS becomes 65524: segments too big for any datagram. While set,
// the script does not advertise an MSS below 13 next to timestamps.
inline constexpr bool kKnownSmallMssUnderflows =
    false;  // fixed (628328a); reproducer in corpus/*-crashes

// tcp_endpoint: the SYN-RECEIVED shortcut for a simultaneous-open SYN-ACK
// (OnSegment, seq == IRS and ack == SND.NXT) also takes SYN-ACKs that carry RST,
// data or FIN: it clears the payload, keeps the FIN at SEG.SEQ+1 (before the data
// it dropped) and ignores RST. While set, such SYN-ACKs in SYN-RECEIVED are sent
// without RST, FIN and data.
inline constexpr bool kKnownSynAckShortcutTakesAnything =
    false;  // fixed (628328a, c241815); reproducer in corpus/*-crashes

// endpoint_pair, tcp_endpoint: a retransmission timeout that sends nothing, so the
// timer fires again and again until max_retries ends a live connection:
//  (a) the peer's whole window is smaller than the MSS and than the data queued:
//      sender SWS avoidance (EmitData: room < min(queued, SND.MSS) while SND.UNA !=
//      SND.NXT) holds back the retransmission too; one lost ACK and nothing more
//      is sent. RFC 9293 §3.8.6.2.1 sizes the test by Max(SND.WND).
//  (b) the peer shrank its window to zero with data in flight: the window check
//      stops the retransmission, and the persist timer only starts with nothing in
//      flight. RFC 9293 §3.8.6.1: keep retransmitting even if the window is zero.
// RFC 6298 §5.4: on a timeout, retransmit the earliest unacknowledged segment.
// While set, endpoint_pair accepts a side stuck that way (data in flight, a window
// below the MSS, 20 or more timeouts), and tcp_endpoint does not require a
// segment after a retransmission timeout.
inline constexpr bool kKnownTimeoutSendsNothing =
    false;  // fixed (628328a, c241815); reproducer in corpus/*-crashes

// tcp_endpoint: syn_needs_send_ (a SYN or SYN-ACK is due) is not cleared when the
// handshake completes before the next Poll — a SYN retransmission timeout and then
// the SYN-ACK, or in a simultaneous open the peer's SYN and then its ACK, both
// before Poll (an event loop that reads a batch of packets does that). The
// ESTABLISHED endpoint then sends a SYN-ACK, and that arms the retransmission
// timer with nothing outstanding: it fires and re-arms forever, and after
// max_retries the idle connection is closed as timed out. While set, the script
// polls after every event that starts or ends in SYN-SENT or SYN-RECEIVED.
inline constexpr bool kKnownStaleSynRetransmit =
    false;  // fixed (628328a, c241815); reproducer in corpus/*-crashes

// endpoint_pair, tcp_endpoint: retransmit_one_ (fast retransmit, NewReno partial
// ACK) outlives the ACK that ends recovery: the next Poll "retransmits" at the new
// SND.UNA, which is new data, ignoring the send window — here beyond a zero
// window. With (b) above the pair then deadlocks once the window update is lost.
// While set, tcp_endpoint does not check new data against the window.
inline constexpr bool kKnownFastRetransmitIgnoresWindow =
    false;  // fixed (628328a, c241815); reproducer in corpus/*-crashes

// tcp_endpoint: data segments that carry SACK blocks are not shortened for them:
// SND.MSS only allows for the timestamp option, so payload + options can exceed
// the MSS the peer announced (RFC 6691: the sender MUST reduce the data length by
// the options it includes) — past a 1500-byte MTU when the MSS is 1460. While set,
// payload + options is not checked against the peer's MSS.
inline constexpr bool kKnownSackBlocksNotCountedInMss =
    false;  // fixed (628328a); reproducer in corpus/*-crashes

}  // namespace wrench::fuzz
