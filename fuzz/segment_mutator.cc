// segment_parser's structure-aware mutator: it parses the input, edits headers and
// options as fields, and re-emits a datagram with valid checksums; now and then it
// breaks one on purpose. The fuzz build also compiles this file, with the parser
// and emitter it calls, uninstrumented under another namespace name for the
// fuzzer itself (fuzz/CMakeLists.txt).
#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <utility>
#include <variant>
#include <vector>

#include "fuzz/mutator_random.h"
#include "fuzz/targets.h"
#include "stack/checksum.h"
#include "stack/segment.h"

namespace wrench::fuzz {
namespace {

using stack::IpAddress;
using stack::Ipv4Repr;
using stack::Ipv6Repr;
using stack::ParseSegment;
using stack::Segment;
using stack::TcpOptions;

constexpr size_t kMaxDatagram = 65535 + 60;

class Mutator : MutatorRandom {
 public:
  Mutator() { arena_.resize(kArenaSize); }

  // The mutator is reused across calls, so its buffers are allocated once.
  size_t Run(uint8_t* data, size_t size, size_t max_size, unsigned seed, RawMutator raw) {
    Seed(seed);
    raw_ = raw;
    used_ = 0;
    input_.assign(data, data + size);
    auto parsed = ParseSegment(input_, {.verify_checksums = false});
    Segment seg;
    if (parsed.ok() && Chance(15, 16)) {
      seg = *parsed;  // its spans point into input_, stable for this Run
      int n = 1 + static_cast<int>(Below(3));
      for (int i = 0; i < n; ++i) MutateField(seg);
    } else if (Chance(1, 2)) {
      return Raw(data, size, max_size);
    } else {
      seg = Fresh();
    }
    FitOptions(seg);
    out_.resize(seg.BufferLen());
    auto n = stack::EmitSegment(seg, absl::MakeSpan(out_));
    if (!n.ok()) return Raw(data, size, max_size);
    out_.resize(*n);
    // Most of the time the result is valid; sometimes a targeted break follows.
    if (Chance(1, 4)) Break(seg);
    size_t len = std::min(out_.size(), max_size);
    std::memcpy(data, out_.data(), len);
    return len;
  }

 private:
  size_t Raw(uint8_t* data, size_t size, size_t max_size) {
    if (raw_ == nullptr) return size;
    return raw_(data, size, max_size);
  }

  uint32_t Interesting32() {
    static constexpr uint32_t kValues[] = {0,          1,          0x7fffffff, 0x80000000,
                                           0xffffffff, 0xfffffffe, 0x10000,    0xffff};
    return Chance(1, 2) ? kValues[Below(std::size(kValues))] : Next();
  }
  uint16_t Interesting16() {
    static constexpr uint16_t kValues[] = {0, 1, 536, 1220, 1460, 8960, 0x7fff, 0x8000, 0xffff};
    return Chance(1, 2) ? kValues[Below(std::size(kValues))] : static_cast<uint16_t>(Next());
  }

  // Bytes in the arena, valid until the next Run. Every span a segment holds is
  // copied there; a Run needs a few datagrams' worth at most.
  absl::Span<uint8_t> Alloc(size_t n) {
    if (used_ + n > arena_.size()) n = arena_.size() - used_;
    absl::Span<uint8_t> out(arena_.data() + used_, n);
    used_ += n;
    return out;
  }
  absl::Span<const uint8_t> Keep(absl::Span<const uint8_t> b) {
    absl::Span<uint8_t> out = Alloc(b.size());
    if (!out.empty()) std::memcpy(out.data(), b.data(), out.size());
    return out;
  }
  absl::Span<const uint8_t> RandomBytes(size_t n) {
    absl::Span<uint8_t> out = Alloc(n);
    for (auto& c : out) c = static_cast<uint8_t>(Next());
    return out;
  }


  IpAddress RandomAddress(bool v6) {
    if (!v6) return IpAddress::V4(Chance(1, 2) ? 0x0a000001 + Below(4) : Next());
    std::array<uint8_t, 16> b{};
    if (Chance(1, 2)) {
      b[0] = 0xfd;
      b[15] = static_cast<uint8_t>(1 + Below(3));
    } else {
      for (auto& c : b) c = Chance(1, 2) ? 0 : static_cast<uint8_t>(Next());
    }
    return IpAddress::V6(b);
  }

  uint8_t RandomFlags() {
    using namespace stack;
    static constexpr uint8_t kCommon[] = {kSyn, kSyn | kAck, kAck, kFin | kAck, kRst, kRst | kAck,
                                          kPsh | kAck, kFin | kPsh | kAck, kSyn | kFin, 0};
    return Chance(3, 4) ? kCommon[Below(std::size(kCommon))] : static_cast<uint8_t>(Next());
  }

  Segment Fresh() {
    Segment s;
    if (Chance(1, 3)) {
      Ipv6Repr h;
      h.src = RandomAddress(true);
      h.dst = RandomAddress(true);
      h.flow_label = Chance(1, 2) ? 0 : Next() & 0xfffff;
      s.ip = h;
    } else {
      Ipv4Repr h;
      h.src = RandomAddress(false);
      h.dst = RandomAddress(false);
      h.ident = static_cast<uint16_t>(Next());
      s.ip = h;
    }
    s.tcp.src_port = Chance(1, 2) ? 80 : static_cast<uint16_t>(Next());
    s.tcp.dst_port = Chance(1, 2) ? 40000 : static_cast<uint16_t>(Next());
    s.tcp.seq = stack::SeqNum(Interesting32());
    s.tcp.ack = stack::SeqNum(Interesting32());
    s.tcp.flags = stack::TcpFlags(RandomFlags());
    s.tcp.window = Interesting16();
    for (int i = 0, n = static_cast<int>(Below(4)); i < n; ++i) MutateOptions(s.tcp.options);
    if (Chance(1, 2)) s.tcp.payload = RandomBytes(Below(64));
    return s;
  }

  void MutateOptions(TcpOptions& o) {
    switch (Below(7)) {
      case 0:
        o.mss = o.mss && Chance(1, 3) ? std::nullopt : std::optional<uint16_t>(Interesting16());
        break;
      case 1:
        o.window_scale = o.window_scale && Chance(1, 3)
                             ? std::nullopt
                             : std::optional<uint8_t>(Chance(3, 4) ? Below(16) : Next());
        break;
      case 2:
        o.sack_permitted = !o.sack_permitted;
        break;
      case 3:
        o.timestamps = o.timestamps && Chance(1, 3)
                           ? std::nullopt
                           : std::optional<stack::Timestamps>({Interesting32(), Interesting32()});
        break;
      case 4: {
        o.sack_count = static_cast<uint8_t>(Below(TcpOptions::kMaxSackBlocks + 1));
        for (size_t k = 0; k < o.sack_count; ++k) {
          uint32_t left = Interesting32();
          o.sack[k] = {stack::SeqNum(left), stack::SeqNum(left + Below(3000))};
        }
        break;
      }
      case 5: {
        // Kinds the parser keeps raw: experimental (253/254), MPTCP (30), TFO (34),
        // MD5 (19), AccECN (172/174), old ones (6, 7, 9...).
        static constexpr uint8_t kKinds[] = {6, 7, 9, 19, 28, 29, 30, 34, 69, 172, 174, 253, 254};
        if (o.raw_count < TcpOptions::kMaxRawOptions && Chance(2, 3)) {
          o.raw[o.raw_count++] = {kKinds[Below(std::size(kKinds))], RandomBytes(Below(11))};
        } else if (o.raw_count > 0) {
          o.raw[--o.raw_count] = {};
        }
        break;
      }
      default:
        o = TcpOptions{};
        break;
    }
  }

  // Sheds options until the canonical layout fits in 40 bytes.
  static void FitOptions(Segment& s) {
    TcpOptions& o = s.tcp.options;
    while (o.EmittedLen() > 40 && o.raw_count > 0) o.raw[--o.raw_count] = {};
    while (o.EmittedLen() > 40 && o.sack_count > 0) o.sack[--o.sack_count] = {};
    if (o.EmittedLen() > 40) o.timestamps.reset();
  }

  void MutateField(Segment& s) {
    stack::TcpRepr& t = s.tcp;
    switch (Below(12)) {
      case 0:
        t.flags = Chance(1, 2) ? stack::TcpFlags(RandomFlags())
                               : stack::TcpFlags(t.flags.bits() ^ (1u << Below(8)));
        break;
      case 1:
        t.seq = Chance(1, 2) ? stack::SeqNum(Interesting32()) : t.seq + (Below(3000) - 1500);
        break;
      case 2:
        t.ack = Chance(1, 2) ? stack::SeqNum(Interesting32()) : t.ack + (Below(3000) - 1500);
        break;
      case 3:
        t.window = Interesting16();
        break;
      case 4:
        t.urgent = Interesting16();
        break;
      case 5:
        if (Chance(1, 2)) {
          t.src_port = Interesting16();
        } else {
          t.dst_port = Interesting16();
        }
        break;
      case 6:
      case 7:
        MutateOptions(t.options);
        break;
      case 8: {
        // The payload: resized, or its bytes handed to the raw mutator.
        size_t max = Chance(1, 8) ? 2000 : 128;
        if (Chance(1, 2) || t.payload.empty() || raw_ == nullptr) {
          t.payload = RandomBytes(Below(static_cast<uint32_t>(max)));
        } else {
          absl::Span<uint8_t> p = Alloc(std::max(t.payload.size(), max));
          size_t n = std::min(t.payload.size(), p.size());
          std::memcpy(p.data(), t.payload.data(), n);
          t.payload = p.first(raw_(p.data(), n, p.size()));
        }
        break;
      }
      case 9:
        SwitchIpVersion(s);
        break;
      default:
        MutateIp(s);
        break;
    }
  }

  void SwitchIpVersion(Segment& s) {
    if (s.is_v6()) {
      Ipv4Repr h;
      h.src = RandomAddress(false);
      h.dst = RandomAddress(false);
      s.ip = h;
    } else {
      Ipv6Repr h;
      h.src = RandomAddress(true);
      h.dst = RandomAddress(true);
      s.ip = h;
    }
  }

  void MutateIp(Segment& s) {
    if (auto* v4 = std::get_if<Ipv4Repr>(&s.ip)) {
      switch (Below(6)) {
        case 0: v4->ttl = static_cast<uint8_t>(Next()); break;
        case 1: v4->ident = static_cast<uint16_t>(Next()); break;
        case 2: v4->dscp_ecn = static_cast<uint8_t>(Next()); break;
        case 3:
          // Rarely a fragment (refused), usually DF toggled.
          if (Chance(1, 4)) {
            v4->more_fragments = Chance(1, 2);
            v4->fragment_offset = static_cast<uint16_t>(Below(4));
          } else {
            v4->dont_fragment = !v4->dont_fragment;
          }
          break;
        case 4: {
          // RFC 791 options: NOP, EOL, record route, timestamp; any bytes will do.
          size_t n = 4 * Below(11);
          v4->options = RandomBytes(n);
          break;
        }
        default:
          v4->protocol = Chance(3, 4) ? stack::kIpProtoTcp : static_cast<uint8_t>(Next());
          break;
      }
    } else {
      auto& v6 = std::get<Ipv6Repr>(s.ip);
      switch (Below(4)) {
        case 0: v6.hop_limit = static_cast<uint8_t>(Next()); break;
        case 1: v6.flow_label = Next() & 0xfffff; break;
        case 2: v6.traffic_class = static_cast<uint8_t>(Next()); break;
        default:
          v6.next_header = Chance(3, 4) ? stack::kIpProtoTcp : static_cast<uint8_t>(Next());
          break;
      }
    }
  }

  // ---- Byte-level breaks of the emitted datagram ----

  size_t IpHeaderLen() const {
    return (out_[0] >> 4) == 6 ? 40 : static_cast<size_t>(out_[0] & 0x0f) * 4;
  }

  void FixChecksums(size_t tcp_off) {
    (void)tcp_off;
    fuzz::FixChecksums(out_.data(), out_.size());
  }

  void Break(const Segment& s) {
    size_t ip_len = IpHeaderLen();
    size_t tcp_off = ip_len;
    switch (Below(8)) {
      case 0:  // an IPv6 extension header chain (or an IPv4 length field off by a bit)
        if (s.is_v6()) {
          InsertExtensionHeaders();
          return;
        }
        out_[2 + Below(2)] ^= static_cast<uint8_t>(1u << Below(8));
        return;
      case 1: {  // the TCP options rewritten in a dense, odd or duplicated layout
        RewriteOptions(tcp_off);
        FixChecksums(tcp_off);
        return;
      }
      case 2:  // data offset or IHL off
        if (Chance(1, 2) && out_.size() > tcp_off + 12) {
          out_[tcp_off + 12] = static_cast<uint8_t>((Below(16) << 4) | (out_[tcp_off + 12] & 15));
        } else if (!s.is_v6()) {
          out_[0] = static_cast<uint8_t>(0x40 | Below(16));
        }
        if (Chance(1, 2)) FixChecksums(tcp_off);
        return;
      case 3:  // truncated
        out_.resize(Below(static_cast<uint32_t>(out_.size())));
        return;
      case 4:  // trailing link-layer padding or junk
        for (size_t i = 0, n = 1 + Below(16); i < n; ++i)
          out_.push_back(static_cast<uint8_t>(Next()));
        return;
      case 5:  // one byte anywhere, checksums fixed so the edit is seen
        out_[Below(static_cast<uint32_t>(out_.size()))] = static_cast<uint8_t>(Next());
        FixChecksums(tcp_off);
        return;
      case 6:  // a bad checksum
        if (out_.size() > tcp_off + 17)
          out_[tcp_off + 16 + Below(2)] ^= static_cast<uint8_t>(1 + Below(255));
        return;
      default:
        if (raw_ != nullptr) {
          size_t n = out_.size();
          out_.resize(n + 64);
          out_.resize(raw_(out_.data(), n, out_.size()));
        }
        return;
    }
  }

  // Options as a sender other than Linux might lay them out: no alignment NOPs,
  // duplicates (the last wins), EOL early, odd lengths.
  void RewriteOptions(size_t tcp_off) {
    if (out_.size() < tcp_off + 20) return;
    std::vector<uint8_t> opts;
    int n = 1 + static_cast<int>(Below(6));
    for (int i = 0; i < n && opts.size() < 40; ++i) {
      switch (Below(9)) {
        case 0:
          opts.insert(opts.end(),
                      {2, 4, static_cast<uint8_t>(Next()), static_cast<uint8_t>(Next())});
          break;
        case 1: opts.insert(opts.end(), {3, 3, static_cast<uint8_t>(Below(20))}); break;
        case 2: opts.insert(opts.end(), {4, 2}); break;
        case 3: {
          opts.insert(opts.end(), {8, 10});
          for (int k = 0; k < 8; ++k) opts.push_back(static_cast<uint8_t>(Next()));
          break;
        }
        case 4: {
          uint8_t blocks = static_cast<uint8_t>(1 + Below(4));
          opts.insert(opts.end(), {5, static_cast<uint8_t>(2 + 8 * blocks)});
          for (int k = 0; k < 8 * blocks; ++k) opts.push_back(static_cast<uint8_t>(Next()));
          break;
        }
        case 5: opts.push_back(1); break;
        case 6: opts.push_back(0); break;
        case 7: {  // a bad length for a known or unknown kind
          opts.insert(opts.end(),
                      {static_cast<uint8_t>(Below(10)), static_cast<uint8_t>(Below(12))});
          break;
        }
        default: {
          uint8_t len = static_cast<uint8_t>(2 + Below(8));
          opts.insert(opts.end(), {static_cast<uint8_t>(20 + Below(200)), len});
          for (int k = 2; k < len; ++k) opts.push_back(static_cast<uint8_t>(Next()));
          break;
        }
      }
    }
    if (opts.size() > 40) opts.resize(40);
    while (opts.size() % 4 != 0) opts.push_back(Chance(1, 2) ? 0 : 1);
    size_t old_hlen = static_cast<size_t>(out_[tcp_off + 12] >> 4) * 4;
    if (old_hlen < 20 || tcp_off + old_hlen > out_.size()) return;
    std::vector<uint8_t> rebuilt(out_.begin(), out_.begin() + static_cast<long>(tcp_off + 20));
    rebuilt.insert(rebuilt.end(), opts.begin(), opts.end());
    rebuilt.insert(rebuilt.end(), out_.begin() + static_cast<long>(tcp_off + old_hlen), out_.end());
    rebuilt[tcp_off + 12] = static_cast<uint8_t>(((20 + opts.size()) / 4) << 4);
    out_ = std::move(rebuilt);
    FixIpLength();
  }

  void FixIpLength() {
    if ((out_[0] >> 4) == 6) {
      size_t plen = out_.size() - 40;
      out_[4] = static_cast<uint8_t>(plen >> 8);
      out_[5] = static_cast<uint8_t>(plen);
    } else {
      out_[2] = static_cast<uint8_t>(out_.size() >> 8);
      out_[3] = static_cast<uint8_t>(out_.size());
    }
  }

  // Hop-by-hop (first only), routing (segments left 0 or not), destination
  // options, and sometimes a fragment or an AH/ESP header the parser refuses.
  void InsertExtensionHeaders() {
    static constexpr uint8_t kKinds[] = {0, 43, 60, 60, 43, 44, 51, 50, 135};
    std::vector<uint8_t> chain;
    std::vector<uint8_t> kinds;
    if (Chance(1, 2)) kinds.push_back(0);
    for (int i = 0, n = 1 + static_cast<int>(Below(3)); i < n; ++i) {
      kinds.push_back(kKinds[Below(std::size(kKinds))]);
    }
    uint8_t first = out_[6];
    for (size_t i = 0; i < kinds.size(); ++i) {
      uint8_t next = i + 1 < kinds.size() ? kinds[i + 1] : first;
      uint8_t units = static_cast<uint8_t>(Below(3));
      size_t start = chain.size();
      chain.resize(start + 8 * (units + 1u));
      chain[start] = next;
      chain[start + 1] = units;
      if (kinds[i] == 43) chain[start + 3] = Chance(3, 4) ? 0 : static_cast<uint8_t>(1 + Below(3));
      if (kinds[i] == 0 || kinds[i] == 60)
        chain[start + 2] = 1;  // PadN-ish bytes; contents are skipped
    }
    out_[6] = kinds[0];
    out_.insert(out_.begin() + 40, chain.begin(), chain.end());
    FixIpLength();
  }

  static constexpr size_t kArenaSize = 4 * kMaxDatagram;
  RawMutator raw_ = nullptr;
  std::vector<uint8_t> input_;
  std::vector<uint8_t> out_;
  std::vector<uint8_t> arena_;
  size_t used_ = 0;
};

}  // namespace

void FixChecksums(uint8_t* d, size_t size) {
  if (size < 20) return;
  bool v6 = (d[0] >> 4) == 6;
  size_t tcp_off = 40;
  if (!v6) {
    tcp_off = static_cast<size_t>(d[0] & 0x0f) * 4;
    if (tcp_off < 20 || tcp_off > size) return;
    d[10] = d[11] = 0;
    uint16_t sum = stack::InternetChecksum({d, tcp_off});
    d[10] = static_cast<uint8_t>(sum >> 8);
    d[11] = static_cast<uint8_t>(sum);
  }
  if (size < tcp_off + 20) return;
  absl::Span<const uint8_t> all(d, size);
  IpAddress src = IpAddress::FromBytes(v6 ? all.subspan(8, 16) : all.subspan(12, 4));
  IpAddress dst = IpAddress::FromBytes(v6 ? all.subspan(24, 16) : all.subspan(16, 4));
  // The IP length field bounds the segment (bytes after it are link padding).
  size_t end = v6 ? 40 + ((size_t{d[4]} << 8) | d[5]) : (size_t{d[2]} << 8) | d[3];
  end = std::min(end, size);
  if (end < tcp_off + 20) return;
  uint8_t* tcp = d + tcp_off;
  size_t tcp_len = end - tcp_off;
  tcp[16] = tcp[17] = 0;
  uint64_t sum = stack::ChecksumAccumulate(
      {tcp, tcp_len},
      stack::PseudoHeaderSum(src, dst, stack::kIpProtoTcp, static_cast<uint32_t>(tcp_len)));
  uint16_t c = stack::ChecksumFinish(sum);
  tcp[16] = static_cast<uint8_t>(c >> 8);
  tcp[17] = static_cast<uint8_t>(c);
}

size_t MutateSegment(uint8_t* data, size_t size, size_t max_size, unsigned seed, RawMutator raw) {
  static Mutator* m = new Mutator;
  return m->Run(data, size, max_size, seed, raw);
}

}  // namespace wrench::fuzz
