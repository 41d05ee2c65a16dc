// Reading a rule file (rules_file.h).
#include "proxy/cli/rules_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "proxy/os/os_status.h"
#include "proxy/os/unique_fd.h"

namespace wrench::proxy {

absl::StatusOr<std::vector<Rule>> LoadRulesFile(const std::string& path) {
  const std::string what = absl::StrCat("--rules ", path);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK));
  if (!fd) return ErrnoStatus(errno, what);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, what);
  // A device or a pipe could be endless (/dev/zero) and a directory reads as nothing.
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": not a regular file (",
                     S_ISDIR(st.st_mode) ? "a directory" : "a device, pipe or socket",
                     "); give a file of rules, one a line"));
  }
  auto too_big = [&] {
    return absl::InvalidArgumentError(absl::StrCat(
        what, ": larger than ", kMaxRulesFileBytes / 1024, " KiB; a rule file is one rule a line"));
  };
  if (static_cast<uint64_t>(st.st_size) > kMaxRulesFileBytes) return too_big();
  // Read at most one byte past the cap, in case the file grows while it is read.
  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(errno, absl::StrCat(what, ": reading"));
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxRulesFileBytes) return too_big();
  }
  absl::StatusOr<std::vector<Rule>> rules = ParseRules(text);
  if (!rules.ok())
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", rules.status().message()));
  return rules;
}

}  // namespace wrench::proxy
