// Running the real `wrench` binary from a test: once to its end, or in the
// background until it says "wrench: ready". Every wait is bounded; stdout and stderr
// go to files in a temporary directory the fixture owns.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace wrench::proxy::testing {

inline std::string ReadWholeFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

inline void WriteWholeFile(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
}

struct WrenchRun {
  int status = -1;  // the exit status, 128+N for signal N, -1 when it never ended
  std::string out, err;
};

class WrenchProcess {
 public:
  // Starts `wrench ARGS...` with stdin from `stdin_path` (or /dev/null) and its output
  // in dir/NAME.out and dir/NAME.err.
  // `nofile`, when given, is the child's RLIMIT_NOFILE (lowering a hard limit cannot
  // be undone without CAP_SYS_RESOURCE, so only the child's is changed).
  WrenchProcess(const std::string& dir, const std::string& name,
                const std::vector<std::string>& args, const std::string& stdin_path = "/dev/null",
                std::optional<rlimit> nofile = std::nullopt)
      : out_path_(absl::StrCat(dir, "/", name, ".out")),
        err_path_(absl::StrCat(dir, "/", name, ".err")) {
    std::vector<std::string> argv = {WRENCH_BINARY};
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      ::setpgid(0, 0);
      if (nofile && ::setrlimit(RLIMIT_NOFILE, &*nofile) != 0) _exit(125);
      int in = ::open(stdin_path.c_str(), O_RDONLY);
      int out = ::open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int err = ::open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (in < 0 || out < 0 || err < 0) _exit(125);
      ::dup2(in, 0);
      ::dup2(out, 1);
      ::dup2(err, 2);
      std::vector<char*> a;
      for (std::string& s : argv) a.push_back(s.data());
      a.push_back(nullptr);
      ::execv(a[0], a.data());
      _exit(125);
    }
  }
  ~WrenchProcess() {
    if (pid_ > 0 && status_ < 0) {
      ::kill(-pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  pid_t pid() const { return pid_; }
  std::string Stdout() const { return ReadWholeFile(out_path_); }
  std::string Stderr() const { return ReadWholeFile(err_path_); }

  // Waits for `text` on stderr, or for the process to end, within `timeout`.
  bool WaitForStderr(const std::string& text, absl::Duration timeout = absl::Seconds(10)) {
    const absl::Time deadline = absl::Now() + timeout;
    for (int i = 0; i < 10000 && absl::Now() < deadline; ++i) {
      if (absl::StrContains(Stderr(), text)) return true;
      if (Ended(absl::ZeroDuration())) return absl::StrContains(Stderr(), text);
      absl::SleepFor(absl::Milliseconds(20));
    }
    return false;
  }

  // Whether it ended within `timeout` (the status is then in status()).
  bool Ended(absl::Duration timeout) {
    if (status_ >= 0) return true;
    const absl::Time deadline = absl::Now() + timeout;
    for (int i = 0; i < 100000; ++i) {
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        return true;
      }
      if (absl::Now() >= deadline) return false;
      absl::SleepFor(absl::Milliseconds(10));
    }
    return false;
  }

  // SIGTERM (SIGKILL to the group after 10 s); the exit status.
  int Stop() {
    if (status_ >= 0) return status_;
    ::kill(pid_, SIGTERM);
    if (!Ended(absl::Seconds(10))) {
      ADD_FAILURE() << "wrench did not stop within 10 s of SIGTERM";
      ::kill(-pid_, SIGKILL);
      Ended(absl::Seconds(5));
    }
    return status_;
  }

  int status() const { return status_; }

 private:
  std::string out_path_, err_path_;
  pid_t pid_ = -1;
  int status_ = -1;
};

// Runs `wrench ARGS...` to its end (at most `timeout`).
inline WrenchRun RunWrench(const std::string& dir, const std::vector<std::string>& args,
                           const std::string& stdin_path = "/dev/null",
                           absl::Duration timeout = absl::Seconds(20)) {
  static int n = 0;
  WrenchProcess p(dir, absl::StrCat("run", ++n), args, stdin_path);
  WrenchRun r;
  if (!p.Ended(timeout)) {
    ADD_FAILURE() << "wrench did not end within " << timeout;
    p.Stop();
  }
  r.status = p.status();
  r.out = p.Stdout();
  r.err = p.Stderr();
  return r;
}

// A fresh temporary directory, removed with everything in it at the end.
class TempDir {
 public:
  TempDir() {
    char t[] = "/tmp/wrench-cli-XXXXXX";
    if (::mkdtemp(t) != nullptr) path_ = t;
  }
  ~TempDir() {
    if (!path_.empty()) std::system(absl::StrCat("rm -rf '", path_, "'").c_str());
  }
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return absl::StrCat(path_, "/", name); }

 private:
  std::string path_;
};

}  // namespace wrench::proxy::testing
