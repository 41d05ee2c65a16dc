// Tiny HTTP servers for tests that drive real HTTP clients (Node, python3, curl)
// through wrench: handlers for tu::TcpServer (tests/netns_testing.h).
#pragma once

#include <sys/socket.h>

#include <string>

#include "absl/strings/match.h"
#include "absl/time/time.h"
#include "tests/netns_testing.h"

namespace wrench::proxy::testing {

// Reads one HTTP request head (up to the blank line) within `timeout`; false on
// end-of-file, error or timeout.
inline bool ReadRequestHead(int fd, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string head;
  for (int i = 0; i < 65536 && !absl::EndsWith(head, "\r\n\r\n"); ++i) {
    if (!WaitFor(fd, POLLIN, deadline, "request").ok()) return false;
    char c;
    if (::recv(fd, &c, 1, 0) != 1) return false;
    head += c;
  }
  return absl::EndsWith(head, "\r\n\r\n");
}

// An HTTP/1.1 server that keeps connections alive and closes one once it has been
// idle for `idle`, without a Keep-Alive: timeout hint (nginx's default behaviour).
inline TcpServer::Handler KeepAliveServer(absl::Duration idle) {
  return [idle](int fd) {
    for (int request = 0; request < 100; ++request) {
      if (!ReadRequestHead(fd, request == 0 ? absl::Seconds(10) : idle)) return;
      if (!WriteAll(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", absl::Seconds(5)).ok())
        return;
    }
  };
}

// An HTTP/1.0 server: one request, the answer, close.
inline TcpServer::Handler OneShotServer() {
  return [](int fd) {
    if (!ReadRequestHead(fd, absl::Seconds(10))) return;
    (void)WriteAll(fd, "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello", absl::Seconds(5));
  };
}

}  // namespace wrench::proxy::testing
