// `wrench exec` as a process: COMMAND runs in a PID namespace of its own, so nothing
// it starts outlives the run however wrench ends (SIGTERM, SIGKILL, COMMAND exiting
// first); rules that can never fire on exec's legs are refused before COMMAND runs.
// wrench runs inside a network namespace this test creates; its own namespace for
// COMMAND nests in it.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/netns_testing.h"

namespace wrench::proxy {
namespace {

using ::testing::HasSubstr;
namespace tu = ::wrench::proxy::testing;

// A sleep duration no other process on the machine has on its command line: the
// marker that finds the sleeps this test started.
std::string Marker(int n) { return absl::StrCat("300.", ::getpid(), n); }

// How many processes have `marker` as an argument.
int ProcessesWith(const std::string& marker) {
  int count = 0;
  DIR* d = ::opendir("/proc");
  if (!d) return -1;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::ifstream f(absl::StrCat("/proc/", e->d_name, "/cmdline"));
    std::stringstream ss;
    ss << f.rdbuf();
    std::string args = ss.str();
    for (char& c : args) c = c == '\0' ? ' ' : c;
    if (absl::StrContains(args, marker) && !absl::StrContains(args, "sh -c")) ++count;
  }
  ::closedir(d);
  return count;
}

// Waits (bounded) until exactly `n` processes carry the marker; returns the last count.
int WaitForProcesses(const std::string& marker, int n, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  int now = ProcessesWith(marker);
  while (now != n && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
    now = ProcessesWith(marker);
  }
  return now;
}

// Starts `wrench exec ARGS...` with its stderr in `err_path`; returns its PID.
pid_t StartWrench(const std::vector<std::string>& args, const std::string& err_path) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) ::dup2(fd, 2);
    std::vector<char*> argv{const_cast<char*>(WRENCH_BINARY), const_cast<char*>("exec")};
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(WRENCH_BINARY, argv.data());
    _exit(127);
  }
  return pid;
}

// waitpid, bounded; the status, or -1 when it did not end in time (it is killed then).
int WaitBounded(pid_t pid, absl::Duration timeout) {
  absl::Time deadline = absl::Now() + timeout;
  int status = 0;
  while (absl::Now() < deadline) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return status;
    absl::SleepFor(absl::Milliseconds(20));
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, &status, 0);
  return -1;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class ExecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::Status st = tu::EnterFreshNetworkNamespace();
    if (!st.ok()) GTEST_SKIP() << "needs a network namespace of its own: " << st;
    char dir[] = "/tmp/wrench-exec-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    err_ = dir_ + "/stderr";
  }
  void TearDown() override {
    if (!dir_.empty()) std::system(absl::StrCat("rm -rf ", dir_).c_str());
  }

  // Runs COMMAND `sleep M & sleep M` under wrench (`sleep M & exec sleep M` with
  // `exec_last`), waits until both sleeps run, sends `sig` to wrench, and expects
  // every sleep gone soon after.
  void ExpectSignalEndsTheWholeTree(int sig, bool exec_last = false) {
    const std::string m = Marker(sig);
    pid_t wrench = StartWrench(
        {"--", "sh", "-c", absl::StrCat("sleep ", m, " & ", exec_last ? "exec " : "", "sleep ", m)},
        err_);
    ASSERT_GT(wrench, 0);
    ASSERT_EQ(WaitForProcesses(m, 2, absl::Seconds(10)), 2) << ReadFile(err_);
    ASSERT_EQ(::kill(wrench, sig), 0);
    int status = WaitBounded(wrench, absl::Seconds(10));
    EXPECT_NE(status, -1) << "wrench did not end";
    EXPECT_EQ(WaitForProcesses(m, 0, absl::Seconds(5)), 0) << "a sleep outlived wrench\n"
                                                           << ReadFile(err_);
    if (sig != SIGKILL) {
      // Forwarded to COMMAND, which the signal ended; wrench then cleaned up and
      // exited with COMMAND's status.
      EXPECT_TRUE(WIFEXITED(status)) << status;
      EXPECT_EQ(WEXITSTATUS(status), 128 + sig) << ReadFile(err_);
      EXPECT_THAT(ReadFile(err_), HasSubstr("wrench: "));
    }
  }

  std::string dir_, err_;
};

TEST_F(ExecTest, SigtermEndsCommandAndEverythingItStarted) {
  ExpectSignalEndsTheWholeTree(SIGTERM);
}

// SIGINT goes to COMMAND alone, as `kill -INT` would: a shell waiting for a child
// goes on waiting (only Ctrl-C at a terminal reaches the whole process group), so
// COMMAND here is the last sleep itself.
TEST_F(ExecTest, SigintEndsCommandAndEverythingItStarted) {
  ExpectSignalEndsTheWholeTree(SIGINT, true);
}

TEST_F(ExecTest, SigkillOfWrenchEndsCommandAndEverythingItStarted) {
  ExpectSignalEndsTheWholeTree(SIGKILL);
}

TEST_F(ExecTest, AChildThatOutlivesCommandEndsWithIt) {
  const std::string m = Marker(100);
  absl::Time start = absl::Now();
  pid_t wrench = StartWrench({"--", "sh", "-c", absl::StrCat("sleep ", m, " & exit 3")}, err_);
  int status = WaitBounded(wrench, absl::Seconds(10));
  ASSERT_NE(status, -1) << "wrench waited for COMMAND's child";
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 3);
  EXPECT_EQ(WaitForProcesses(m, 0, absl::Seconds(5)), 0) << "the background sleep outlived the run";
}

TEST_F(ExecTest, ARuleThatCanNeverFireOnExecsLegsIsRefusedBeforeCommandRuns) {
  const std::string marker = dir_ + "/ran";
  pid_t wrench =
      StartWrench({"--rule=blackhole on=from-server after=50", "--", "touch", marker}, err_);
  int status = WaitBounded(wrench, absl::Seconds(10));
  ASSERT_NE(status, -1);
  EXPECT_NE(WEXITSTATUS(status), 0);
  const std::string err = ReadFile(err_);
  EXPECT_THAT(err, HasSubstr("\"blackhole on=from-server after=50\" can never fire"));
  EXPECT_THAT(err, HasSubstr("under wrench exec the server leg is a kernel socket"));
  EXPECT_THAT(err, HasSubstr("--allow-idle-rules"));
  EXPECT_NE(::access(marker.c_str(), F_OK), 0) << "COMMAND ran";

  wrench = StartWrench(
      {"--allow-idle-rules", "--rule=blackhole on=from-server after=50", "--", "touch", marker},
      err_);
  status = WaitBounded(wrench, absl::Seconds(10));
  ASSERT_NE(status, -1);
  EXPECT_EQ(WEXITSTATUS(status), 0) << ReadFile(err_);
  EXPECT_THAT(ReadFile(err_),
              HasSubstr("warning: rule #1 \"blackhole on=from-server after=50\" can never fire"));
  EXPECT_EQ(::access(marker.c_str(), F_OK), 0) << "COMMAND did not run";
}

}  // namespace
}  // namespace wrench::proxy
