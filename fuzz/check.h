// The fuzz targets' invariant check. WRENCH_CHECK(cond) << "what" prints the broken
// condition, the context the running target registered and the input being
// replayed, then calls abort(): libFuzzer and the g++ corpus replay both stop on it.
#pragma once

#include <functional>
#include <ostream>
#include <sstream>
#include <string>

namespace wrench::fuzz {

class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition);
  CheckFailure(const CheckFailure&) = delete;
  CheckFailure& operator=(const CheckFailure&) = delete;
  // Prints everything and aborts.
  [[noreturn]] ~CheckFailure();
  std::ostream& stream() { return message_; }

 private:
  const char* file_;
  int line_;
  const char* condition_;
  std::ostringstream message_;
};

// While alive, a failing check prints `print`'s output after its own message (a
// target's script so far, say). Scopes nest; the innermost prints last.
class FailureContext {
 public:
  explicit FailureContext(std::function<void(std::ostream&)> print);
  ~FailureContext();
  FailureContext(const FailureContext&) = delete;
  FailureContext& operator=(const FailureContext&) = delete;

 private:
  std::function<void(std::ostream&)> print_;
  FailureContext* outer_;
  friend class CheckFailure;
};

// The name of the input being run (the replay test sets the corpus file's path).
void SetCurrentInputName(std::string name);

}  // namespace wrench::fuzz

// Aborts with a message when `cond` is false; stream more context into it.
#define WRENCH_CHECK(cond) \
  while (!(cond)) ::wrench::fuzz::CheckFailure(__FILE__, __LINE__, #cond).stream()
