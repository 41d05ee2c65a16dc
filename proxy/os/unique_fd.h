// An owned file descriptor: closed when it goes out of scope, moved never copied.
// The OS-facing modules (TUN device, rtnetlink socket) and the netns tests hold
// their descriptors in one of these so no error path leaks one.
#pragma once

#include <unistd.h>

#include <utility>

namespace wrench::proxy {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }
  // Gives up ownership (e.g. to an Asio descriptor that will close it).
  int release() { return std::exchange(fd_, -1); }
  // close() errors are ignored on purpose: Linux releases the descriptor even when
  // close reports one, so there is nothing left to retry.
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace wrench::proxy
