// nftables DNAT into the TUN (dnat.h), through libnftables: the commands are nft's
// language, run as one atomic batch each; the sysctls through /proc/sys.
#include "proxy/os/dnat.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/netlink.h>
#include <net/if.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "nlohmann/json.hpp"
#include "proxy/os/os_status.h"
#include "proxy/os/unique_fd.h"
#include "stack/status_macros.h"

#ifdef WRENCH_HAVE_NFTABLES
#include <nftables/libnftables.h>
#endif

namespace wrench::proxy {

namespace {

// A small file whole: /proc and /sys entries, wrench's host records.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return ErrnoStatus(errno, absl::StrCat("open ", path));
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) return ErrnoStatus(errno, absl::StrCat("read ", path));
    if (n == 0) return text;
    text.append(buf, static_cast<size_t>(n));
  }
}

absl::StatusOr<std::string> ReadSysctl(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadWholeFile(path));
  return std::string(absl::StripAsciiWhitespace(text));
}

absl::Status WriteSysctl(const std::string& path, absl::string_view value) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("open ", path));
  ssize_t n = ::write(fd, value.data(), value.size());
  const int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size()))
    return ErrnoStatus(err, absl::StrCat("write ", path));
  return absl::OkStatus();
}

constexpr char kIpForward[] = "/proc/sys/net/ipv4/ip_forward";

std::string DevSysctl(const std::string& dev, absl::string_view key) {
  return absl::StrCat("/proc/sys/net/ipv4/conf/", dev, "/", key);
}

// The nft key of a listen address: the map and the element's key.
std::pair<const char*, std::string> MapKey(const stack::IpAddress& listen, uint16_t port) {
  const auto b = listen.bytes();
  if (std::all_of(b.begin(), b.end(), [](uint8_t x) { return x == 0; }))
    return {"any_to_front", absl::StrCat(port)};
  return {"to_front", absl::StrCat(listen.ToString(), " . ", port)};
}

// The IPv6 table beside the IPv4 one: the same name, family ip6 ("ip wrench_X" ->
// "ip6 wrench_X"). A record names the IPv4 table; its IPv6 twin goes with it.
std::string Ip6Twin(absl::string_view table) {
  absl::ConsumePrefix(&table, "ip ");
  return absl::StrCat("ip6 ", table);
}

// The table's maps and chains in nft's language. Both maps take listen address and
// port to a front; any_to_front serves the wildcard (every local destination but
// loopback's, and for IPv6 but link-local ones too, whose replies could not leave
// through the TUN). The prerouting chain skips the TUN's own traffic (wrench's server
// legs), so a front never loops back into itself. The forward chain accepts what
// wrench steers and ends without a verdict: the host's policy decides the rest.
std::string TableRules(const std::string& table, const std::string& tun_name, bool ipv6) {
  const char* addr_type = ipv6 ? "ipv6_addr" : "ipv4_addr";
  const char* family = ipv6 ? "ip6" : "ip";
  const char* not_loopback = ipv6 ? "ip6 daddr != { ::1, fe80::/10 }" : "ip daddr != 127.0.0.0/8";
  return absl::StrCat(
      "add table ", table, "\ndelete table ", table, "\ntable ", table, " {\n",
      "  map to_front { type ", addr_type, " . inet_service : ", addr_type, " . inet_service; }\n",
      "  map any_to_front { type inet_service : ", addr_type, " . inet_service; }\n",
      "  chain prerouting { type nat hook prerouting priority dstnat; policy accept;\n",
      "    iifname \"", tun_name, "\" return\n",
      "    dnat to ", family, " daddr . tcp dport map @to_front\n",
      "    fib daddr type local ", not_loopback, " dnat to tcp dport map @any_to_front\n  }\n",
      "  chain output { type nat hook output priority -100; policy accept;\n",
      "    dnat to ", family, " daddr . tcp dport map @to_front\n",
      "    fib daddr type local ", not_loopback, " dnat to tcp dport map @any_to_front\n  }\n",
      "  chain forward { type filter hook forward priority filter; policy accept;\n",
      "    iifname \"", tun_name, "\" ct status dnat accept\n",
      "    oifname \"", tun_name, "\" ct status dnat accept\n  }\n", "}\n");
}

// What libnftables would otherwise find out badly: without CAP_NET_ADMIN it prints to
// stderr, and without nf_tables in the kernel (no NETLINK_NETFILTER socket) it exits
// the process.
absl::Status CheckNftablesUsable() {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct caps[_LINUX_CAPABILITY_U32S_3] = {};
  if (::syscall(SYS_capget, &hdr, caps) == 0 &&
      (caps[CAP_NET_ADMIN / 32].effective & (1u << (CAP_NET_ADMIN % 32))) == 0) {
    return absl::PermissionDeniedError("nftables needs CAP_NET_ADMIN (root)");
  }
  int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
  if (fd < 0) return ErrnoStatus(errno, "nftables: netlink socket", "no nf_tables in this kernel?");
  ::close(fd);
  return absl::OkStatus();
}

}  // namespace

namespace {

#ifdef WRENCH_HAVE_NFTABLES

class NftContext {
 public:
  NftContext() : ctx_(nft_ctx_new(NFT_CTX_DEFAULT)) {
    if (ctx_) {
      nft_ctx_buffer_output(ctx_);
      nft_ctx_buffer_error(ctx_);
    }
  }
  ~NftContext() {
    if (ctx_) nft_ctx_free(ctx_);
  }
  NftContext(const NftContext&) = delete;
  NftContext& operator=(const NftContext&) = delete;
  absl::Status Run(const std::string& commands) {
    if (!ctx_) return absl::InternalError("nftables: nft_ctx_new failed");
    if (nft_run_cmd_from_buffer(ctx_, commands.c_str()) == 0) return absl::OkStatus();
    // libnftables quotes the failing command under its error; the first line says it.
    absl::string_view err = absl::StripAsciiWhitespace(nft_ctx_get_error_buffer(ctx_));
    err = err.substr(0, err.find('\n'));
    absl::ConsumePrefix(&err, "Error: ");
    return absl::UnavailableError(absl::StrCat("nftables: ", err.empty() ? "command failed" : err));
  }
  // What the last command printed ("list tables": one "table FAMILY NAME" a line).
  std::string Output() {
    const char* out = ctx_ ? nft_ctx_get_output_buffer(ctx_) : nullptr;
    return out ? out : "";
  }

 private:
  nft_ctx* ctx_;
};

#else

class NftContext {
 public:
  absl::Status Run(const std::string&) {
    return absl::UnimplementedError(
        "this wrench was built without libnftables (Debian: libnftables-dev)");
  }
  std::string Output() { return ""; }
};

#endif

}  // namespace

class Dnat::Nft : public NftContext {};

// ---------------------------------------------------------------------------
// The host record (dnat.h).

std::string RunDirectory() {
  const char* dir = std::getenv("WRENCH_RUN_DIR");
  return dir && *dir ? dir : "/run/wrench";
}

namespace {

struct Sysctl {
  std::string path;      // under /proc/sys
  std::string original;  // its value before wrench changed it
};

struct Record {
  int64_t pid = 0;
  std::string start;  // the process's start time (/proc/PID/stat field 22)
  std::string netns;  // inode of the network namespace
  std::string tun;
  int ifindex = 0;    // the TUN's, so a later device of the same name is not taken for it
  std::string table;  // "ip wrench_NAME", empty: none
  std::vector<Sysctl> sysctls;  // in the order they were changed
};

// net.ipv4.ip_forward for /proc/sys/net/ipv4/ip_forward.
std::string SysctlName(absl::string_view path) {
  absl::ConsumePrefix(&path, "/proc/sys/");
  return absl::StrReplaceAll(path, {{"/", "."}});
}

// The calling thread's network namespace (threads may be in different ones).
std::string NetnsId() {
  struct stat st {};
  if (::stat("/proc/thread-self/ns/net", &st) != 0) return "0";
  return absl::StrCat(st.st_ino);
}

// Field 22 of /proc/PID/stat (start time in clock ticks since boot), empty when the
// process is gone or a zombie.
std::string StartTimeOf(int64_t pid) {
  auto stat = ReadWholeFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!stat.ok()) return "";
  // "PID (COMM) STATE ..." where COMM may hold spaces and parentheses.
  size_t paren = stat->rfind(')');
  if (paren == std::string::npos) return "";
  std::vector<absl::string_view> f =
      absl::StrSplit(absl::string_view(*stat).substr(paren + 1), ' ', absl::SkipEmpty());
  // f[0] is field 3 (state), so field 22 is f[19].
  if (f.size() < 20 || f[0] == "Z" || f[0] == "X") return "";
  return std::string(f[19]);
}

bool IsAlive(const Record& r) { return !r.start.empty() && StartTimeOf(r.pid) == r.start; }

std::string RecordPath(const std::string& netns, const std::string& tun) {
  return absl::StrCat(RunDirectory(), "/", netns, "-", tun, ".state");
}

// The record is a JSON object (nlohmann::ordered_json, keys in this order).
std::string Serialize(const Record& r) {
  nlohmann::ordered_json sysctls = nlohmann::ordered_json::array();
  for (const Sysctl& s : r.sysctls) sysctls.push_back({{"path", s.path}, {"original", s.original}});
  const nlohmann::ordered_json j = {
      {"what", "what a wrench run changed on this host (wrench cleanup undoes it)"},
      {"pid", r.pid}, {"start", r.start}, {"netns", r.netns}, {"tun", r.tun},
      {"ifindex", r.ifindex}, {"table", r.table}, {"sysctls", std::move(sysctls)}};
  return j.dump(2) + "\n";
}

absl::StatusOr<Record> ReadRecord(const std::string& path) {
  auto text = ReadWholeFile(path);
  if (!text.ok()) return text.status();
  const nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  Record r;
  // Fields of the wrong type are left empty, never thrown on: a damaged record is
  // reported as incomplete below.
  auto text_of = [&](const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  auto number_of = [&](const char* key) {
    auto it = j.find(key);
    return it != j.end() && it->is_number_integer() ? it->get<int64_t>() : int64_t{0};
  };
  if (j.is_object()) {
    r.pid = number_of("pid");
    r.start = text_of("start");
    r.netns = text_of("netns");
    r.tun = text_of("tun");
    r.ifindex = static_cast<int>(number_of("ifindex"));
    r.table = text_of("table");
    if (auto it = j.find("sysctls"); it != j.end() && it->is_array()) {
      for (const nlohmann::json& s : *it) {
        if (!s.is_object() || !s.contains("path") || !s["path"].is_string() ||
            !s.contains("original") || !s["original"].is_string()) {
          continue;
        }
        // Only network sysctls, named plainly: a record never steers a write elsewhere.
        std::string sysctl = s["path"].get<std::string>();
        if (absl::StartsWith(sysctl, "/proc/sys/net/") && sysctl.find("..") == std::string::npos) {
          r.sysctls.push_back({std::move(sysctl), s["original"].get<std::string>()});
        }
      }
    }
  }
  if (r.pid <= 0 || r.tun.empty() || r.netns.empty()) {
    return absl::DataLossError(absl::StrCat("host record ", path, " is incomplete"));
  }
  return r;
}

// A new file renamed over the old: a reader sees the old record or the new one.
absl::Status WriteRecord(const std::string& path, const Record& r) {
  const std::string tmp = absl::StrCat(path, ".tmp");
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("cannot record the host's settings in ", tmp));
  const std::string text = Serialize(r);
  ssize_t n = ::write(fd, text.data(), text.size());
  const int err = errno;
  if (n != static_cast<ssize_t>(text.size()) || ::fsync(fd) != 0) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return ErrnoStatus(n < 0 ? err : EIO,
                       absl::StrCat("cannot record the host's settings in ", tmp));
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus(e, absl::StrCat("cannot record the host's settings in ", path));
  }
  return absl::OkStatus();
}

// flock on RunDirectory()/lock for the records' whole read-change-write.
class RunLock {
 public:
  // create: make the directory when it is missing (writers); readers find nothing then.
  static absl::StatusOr<RunLock> Acquire(bool create) {
    const std::string dir = RunDirectory();
    if (create && ::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return ErrnoStatus(errno, absl::StrCat("cannot create ", dir, " for wrench's host record"),
                         "set WRENCH_RUN_DIR to a writable directory");
    }
    int fd = ::open(absl::StrCat(dir, "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      if (!create && errno == ENOENT) return RunLock(-1);
      return ErrnoStatus(errno, absl::StrCat("cannot lock ", dir, "/lock"));
    }
    while (::flock(fd, LOCK_EX) != 0 && errno == EINTR) {
    }
    return RunLock(fd);
  }
  RunLock(RunLock&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  ~RunLock() {
    if (fd_ >= 0) ::close(fd_);  // releases the lock
  }
  bool held() const { return fd_ >= 0; }

 private:
  explicit RunLock(int fd) : fd_(fd) {}
  int fd_;
};

// The records of this network namespace, with their paths.
std::vector<std::pair<std::string, Record>> RecordsOf(const std::string& netns) {
  std::vector<std::pair<std::string, Record>> out;
  const std::string dir = RunDirectory();
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  const std::string prefix = absl::StrCat(netns, "-");
  while (dirent* e = ::readdir(d)) {
    absl::string_view name = e->d_name;
    if (!absl::StartsWith(name, prefix) || !absl::EndsWith(name, ".state")) continue;
    const std::string path = absl::StrCat(dir, "/", name);
    auto r = ReadRecord(path);
    if (r.ok() && r->netns == netns) out.emplace_back(path, std::move(*r));
  }
  ::closedir(d);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return out;
}

// "wrench_NAME" for a TUN device name, or an error for a name nftables cannot quote.
absl::StatusOr<std::string> TableId(absl::string_view tun_name) {
  std::string id;
  for (char c : tun_name) {
    if (c == '"' || c == '\\' || c == '\n') {
      return absl::InvalidArgumentError(
          absl::StrCat("TUN device name \"", tun_name, "\" cannot be named in nftables"));
    }
    id.push_back(absl::ascii_isalnum(static_cast<unsigned char>(c)) ? c : '_');
  }
  return absl::StrCat("wrench_", id);
}

// Whether `path` is one of the TUN's own sysctls (conf/TUN/...).
bool IsDeviceSysctl(const std::string& path, const std::string& tun) {
  return absl::StartsWith(path, absl::StrCat("/proc/sys/net/ipv4/conf/", tun, "/"));
}

// Puts back the sysctls of `r` (a record whose run is over, or the caller's own at
// exit), newest first. A host-wide one that another live run of this namespace may
// rely on moves into that run's record instead, which restores it when it ends.
void RestoreSysctls(const Record& r, const std::string& own_path, CleanupReport& report) {
  std::vector<std::pair<std::string, Record>> live;
  for (auto& [path, other] : RecordsOf(r.netns)) {
    if (path != own_path && IsAlive(other)) live.emplace_back(path, std::move(other));
  }
  for (auto it = r.sysctls.rbegin(); it != r.sysctls.rend(); ++it) {
    const Sysctl& s = *it;
    const std::string name = SysctlName(s.path);
    if (IsDeviceSysctl(s.path, r.tun)) {
      const int index = static_cast<int>(::if_nametoindex(r.tun.c_str()));
      if (index == 0 || index != r.ifindex) {
        report.skipped.push_back(
            absl::StrCat(name, ": the device ", r.tun, " is gone, and its settings with it"));
        continue;
      }
    } else if (!live.empty()) {
      auto& [path, heir] = live.front();
      if (std::none_of(heir.sysctls.begin(), heir.sysctls.end(),
                       [&](const Sysctl& h) { return h.path == s.path; })) {
        heir.sysctls.push_back(s);
        if (auto st = WriteRecord(path, heir); !st.ok()) {
          report.skipped.push_back(absl::StrCat(name, ": ", st.message()));
          continue;
        }
      }
      report.skipped.push_back(absl::StrCat(name, " left as it is: wrench pid ", heir.pid, " (TUN ",
                                            heir.tun, ") still runs and restores it to ",
                                            s.original, " when it ends"));
      continue;
    }
    auto now = ReadSysctl(s.path);
    if (auto st = WriteSysctl(s.path, s.original); !st.ok()) {
      report.skipped.push_back(absl::StrCat(name, ": ", st.message()));
    } else if (!now.ok() || *now != s.original) {
      report.done.push_back(absl::StrCat("restored ", name, " to ", s.original, " (was ",
                                         now.ok() ? *now : "?", ")"));
    }
  }
}

// False only where the kernel has modules and nf_tables is not among the loaded ones.
bool NfTablesMayBeLoaded() {
  if (::access("/sys/module/nf_tables", F_OK) == 0) return true;
  auto text = ReadWholeFile("/proc/modules");
  if (!text.ok()) return true;  // no module support: built in, or absent (then nothing to do)
  return absl::StartsWith(*text, "nf_tables ") || absl::StrContains(*text, "\nnf_tables ");
}

bool HasNetAdmin() {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct caps[_LINUX_CAPABILITY_U32S_3] = {};
  return ::syscall(SYS_capget, &hdr, caps) == 0 &&
         (caps[CAP_NET_ADMIN / 32].effective & (1u << (CAP_NET_ADMIN % 32))) != 0;
}

}  // namespace

absl::StatusOr<CleanupReport> CleanUpAfterDeadRuns(std::optional<std::string> only_tun) {
  CleanupReport report;
  if (!HasNetAdmin())
    return absl::PermissionDeniedError("cleaning up after wrench needs CAP_NET_ADMIN (root)");
  std::optional<std::string> only_table;
  if (only_tun) {
    auto id = TableId(*only_tun);
    if (!id.ok()) return id.status();
    only_table = absl::StrCat("ip ", *id);
  }
  auto lock = RunLock::Acquire(/*create=*/false);
  if (!lock.ok()) return lock.status();
  const std::string netns = NetnsId();
  std::vector<std::string> live_tables;
  // Asking nftables anything loads its modules. On a kernel with modules where
  // nf_tables is not loaded, no table can exist, and a clean-up must not be what
  // loads it (unless a record names a table).
  bool tables_possible = NfTablesMayBeLoaded();
  if (lock->held()) {
    for (const auto& [path, r] : RecordsOf(netns)) tables_possible |= !r.table.empty();
  }
  std::optional<NftContext> nft;
  if (tables_possible && CheckNftablesUsable().ok()) nft.emplace();
  const bool nft_usable = nft.has_value();
  if (lock->held()) {
    for (auto& [path, r] : RecordsOf(netns)) {
      if (IsAlive(r)) {
        if (!r.table.empty()) live_tables.push_back(r.table);
        if (!only_tun || r.tun == *only_tun) {
          report.skipped.push_back(absl::StrCat("TUN ", r.tun, ": in use by wrench pid ", r.pid));
        }
      }
    }
    for (auto& [path, r] : RecordsOf(netns)) {
      if (IsAlive(r) || (only_tun && r.tun != *only_tun)) continue;
      RestoreSysctls(r, path, report);
      if (!r.table.empty() && nft_usable &&
          std::find(live_tables.begin(), live_tables.end(), r.table) == live_tables.end()) {
        for (const std::string& table : {r.table, Ip6Twin(r.table)}) {
          if (nft->Run(absl::StrCat("delete table ", table, "\n")).ok()) {
            report.done.push_back(
                absl::StrCat("deleted nftables table ", table, " (TUN ", r.tun, ")"));
          }
        }
      }
      ::unlink(path.c_str());
      report.done.push_back(absl::StrCat("removed the record of wrench pid ", r.pid, " (TUN ",
                                         r.tun, "), which is gone"));
    }
  }
  // Tables no record names: left by a wrench that kept none, or whose record is lost.
  if (nft_usable && nft->Run("list tables\n").ok()) {
    std::vector<std::string> ids;  // the table ids of the devices that exist
    if (struct if_nameindex* names = ::if_nameindex()) {
      for (struct if_nameindex* n = names; n->if_index != 0; ++n) {
        if (auto id = TableId(n->if_name); id.ok()) ids.push_back(*id);
      }
      ::if_freenameindex(names);
    }
    const std::string listing = nft->Output();
    for (absl::string_view line : absl::StrSplit(listing, '\n', absl::SkipEmpty())) {
      line = absl::StripAsciiWhitespace(line);
      const char* family = absl::ConsumePrefix(&line, "table ip ")    ? "ip"
                           : absl::ConsumePrefix(&line, "table ip6 ") ? "ip6"
                                                                      : nullptr;
      if (family == nullptr || !absl::StartsWith(line, "wrench_")) continue;
      const std::string table = absl::StrCat(family, " ", line);
      // A record and --tun name the IPv4 table; its IPv6 twin goes with it.
      const std::string v4_table = absl::StrCat("ip ", line);
      if (only_table && v4_table != *only_table) continue;
      if (std::find(live_tables.begin(), live_tables.end(), v4_table) != live_tables.end())
        continue;
      if (std::find(ids.begin(), ids.end(), line) != ids.end()) {
        report.skipped.push_back(absl::StrCat("nftables table ", table, ": its TUN exists"));
        continue;
      }
      if (nft->Run(absl::StrCat("delete table ", table, "\n")).ok()) {
        report.done.push_back(absl::StrCat("deleted nftables table ", table, ": its TUN is gone"));
      }
    }
  }
  return report;
}

// ---------------------------------------------------------------------------

Dnat::Dnat(std::unique_ptr<Nft> nft, std::string table, std::string tun)
    : nft_(std::move(nft)), table_(std::move(table)), tun_(std::move(tun)) {}

absl::StatusOr<std::unique_ptr<Dnat>> Dnat::Open(const std::string& tun_name) {
  auto id = TableId(tun_name);
  if (!id.ok()) return id.status();
  if (auto st = CheckNftablesUsable(); !st.ok()) return st;
  const std::string table = absl::StrCat("ip ", *id);
  std::unique_ptr<Dnat> d(new Dnat(std::make_unique<Nft>(), table, tun_name));
  Nft& nft = *d->nft_;
  absl::Status st = [&]() -> absl::Status {
    auto lock = RunLock::Acquire(/*create=*/true);
    if (!lock.ok()) return lock.status();
    // The record, with every value about to change, is on disk before the first change.
    Record rec;
    rec.pid = ::getpid();
    rec.start = StartTimeOf(rec.pid);
    rec.netns = NetnsId();
    rec.tun = tun_name;
    rec.ifindex = static_cast<int>(::if_nametoindex(tun_name.c_str()));
    rec.table = table;
    const std::string rp_filter = DevSysctl(tun_name, "rp_filter");
    const std::string dev_forwarding = DevSysctl(tun_name, "forwarding");
    auto forward = ReadSysctl(kIpForward);
    const bool turn_on_forwarding = forward.ok() && *forward == "0";
    const std::string forwarding = turn_on_forwarding ? std::string(kIpForward) : dev_forwarding;
    // Under a read-only /proc/sys (a container's, whose namespace starts with the
    // host's forwarding, on where Docker or podman runs, and rp_filter off), a sysctl
    // that already allows DNAT is left alone, neither recorded nor written.
    std::vector<std::pair<std::string, std::string>> changes;
    for (const std::string& path : {rp_filter, forwarding}) {
      auto value = ReadSysctl(path);
      if (!value.ok()) return value.status();
      const bool read_only = ::access(path.c_str(), W_OK) != 0 && errno == EROFS;
      if (path == rp_filter) {
        // The kernel checks the larger of conf/all and the device's: 1 is strict.
        auto all = ReadSysctl(DevSysctl("all", "rp_filter"));
        if (read_only && all.ok() && *all != "1" && *value != "1") continue;
        changes.emplace_back(path, "2");
      } else {
        if (read_only && *value == "1") continue;
        changes.emplace_back(path, "1");
      }
      rec.sysctls.push_back({path, *value});
    }
    const std::string path = RecordPath(rec.netns, tun_name);
    if (auto w = WriteRecord(path, rec); !w.ok()) return w;
    d->record_path_ = path;
    std::string rules = TableRules(table, tun_name, /*ipv6=*/false);
    if (auto r = nft.Run(rules); !r.ok()) return r;
    // The IPv6 twin: without it (no IPv6 NAT in this kernel) IPv4 DNAT still works.
    d->ipv6_ = nft.Run(TableRules(Ip6Twin(table), tun_name, /*ipv6=*/true));
    // The replies come out of the TUN from a front address: the reverse path must not
    // be checked strictly (2, loose, whatever conf/all says), and for other hosts'
    // clients the TUN and their device forward.
    for (const auto& [path, value] : changes) {
      if (auto w = WriteSysctl(path, value); !w.ok()) return w;
    }
    return absl::OkStatus();
  }();
  if (!st.ok()) return st;  // d's destructor undoes what was done
  return d;
}

Dnat::~Dnat() {
  auto lock = RunLock::Acquire(/*create=*/false);
  if (!record_path_.empty()) {
    // Read back: a run that ended before this one may have handed a setting over.
    if (auto rec = ReadRecord(record_path_); rec.ok()) {
      CleanupReport ignored;
      RestoreSysctls(*rec, record_path_, ignored);
    }
  }
  (void)nft_->Run(absl::StrCat("delete table ", table_, "\n"));
  (void)nft_->Run(absl::StrCat("delete table ", Ip6Twin(table_), "\n"));
  if (!record_path_.empty()) ::unlink(record_path_.c_str());
}

absl::Status Dnat::Add(const stack::IpAddress& listen, uint16_t port, const stack::IpAddress& front,
                       uint16_t front_port) {
  if (listen.is_v6() != front.is_v6()) {
    return absl::InvalidArgumentError(
        "DNAT keeps the IP version: an IPv6 listen address needs an IPv6 front");
  }
  if (listen.is_v6() && !ipv6_.ok()) return ipv6_;
  auto [map, key] = MapKey(listen, port);
  return nft_->Run(absl::StrCat("add element ", listen.is_v6() ? table6() : table_, " ", map, " { ",
                                key, " : ", front.ToString(), " . ", front_port, " }\n"));
}

absl::Status Dnat::Remove(const stack::IpAddress& listen, uint16_t port) {
  auto [map, key] = MapKey(listen, port);
  return nft_->Run(absl::StrCat("delete element ", listen.is_v6() ? table6() : table_, " ", map,
                                " { ", key, " }\n"));
}

std::string Dnat::table6() const { return Ip6Twin(table_); }

}  // namespace wrench::proxy
