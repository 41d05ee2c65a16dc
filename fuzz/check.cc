// WRENCH_CHECK's failure path: one report on stderr, then abort(), so a violated
// invariant looks like a crash to libFuzzer and fails the replay test.
#include "fuzz/check.h"

#include <cstdio>
#include <cstdlib>
#include <vector>

namespace wrench::fuzz {
namespace {

FailureContext* g_innermost = nullptr;

std::string& CurrentInput() {
  static std::string* name = new std::string;
  return *name;
}

}  // namespace

CheckFailure::CheckFailure(const char* file, int line, const char* condition)
    : file_(file), line_(line), condition_(condition) {}

CheckFailure::~CheckFailure() {
  std::ostringstream out;
  out << "\n=== wrench fuzz invariant violated: " << condition_ << "\n    at " << file_ << ":"
      << line_ << "\n";
  std::string msg = message_.str();
  if (!msg.empty()) out << "    " << msg << "\n";
  if (!CurrentInput().empty()) out << "    input: " << CurrentInput() << "\n";
  std::vector<FailureContext*> chain;
  for (FailureContext* c = g_innermost; c != nullptr; c = c->outer_) chain.push_back(c);
  for (auto it = chain.rbegin(); it != chain.rend(); ++it) (*it)->print_(out);
  std::string text = out.str();
  std::fwrite(text.data(), 1, text.size(), stderr);
  std::fflush(stderr);
  std::abort();
}

FailureContext::FailureContext(std::function<void(std::ostream&)> print)
    : print_(std::move(print)), outer_(g_innermost) {
  g_innermost = this;
}

FailureContext::~FailureContext() { g_innermost = outer_; }

void SetCurrentInputName(std::string name) { CurrentInput() = std::move(name); }

}  // namespace wrench::fuzz
