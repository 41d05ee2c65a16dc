// HTTP requests to wrench's control API and an echo server, for the tests that drive
// wrench through the API (control_api_test, dnat_test).
#pragma once

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/netns_testing.h"

namespace wrench::proxy::testing {

struct HttpResult {
  int status = 0;
  std::string headers;
  std::string body;
  nlohmann::json json() const {
    return nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  }
};

// One request to 127.0.0.1:port on its own connection, as a client library sends it.
inline absl::StatusOr<HttpResult> Http(uint16_t port, const std::string& method,
                                       const std::string& path, const std::string& body = "",
                                       const std::string& extra_headers = "") {
  auto fd = ConnectTo(stack::IpAddress::V4(0x7f000001), port, absl::Seconds(5));
  if (!fd.ok()) return fd.status();
  const char* agent =
      absl::StrContains(extra_headers, "User-Agent:") ? "" : "User-Agent: wrench-test\r\n";
  std::string req =
      absl::StrCat(method, " ", path, " HTTP/1.1\r\nHost: localhost\r\n", agent, extra_headers,
                   "Content-Length: ", body.size(), "\r\nConnection: close\r\n\r\n", body);
  if (auto s = WriteAll(fd->get(), req, absl::Seconds(5)); !s.ok()) return s;
  auto raw = ReadAll(fd->get(), absl::Seconds(10));
  if (!raw.ok()) return raw.status();
  size_t split = raw->find("\r\n\r\n");
  if (split == std::string::npos || raw->size() < 12)
    return absl::InternalError(absl::StrCat("no HTTP answer: ", *raw));
  HttpResult r;
  if (!absl::SimpleAtoi(raw->substr(9, 3), &r.status))
    return absl::InternalError("bad status line");
  r.headers = raw->substr(0, split);
  r.body = raw->substr(split + 4);
  return r;
}

// Http, expected to get an answer: a failure is reported and an empty result returned.
inline HttpResult HttpOrFail(uint16_t port, const std::string& method, const std::string& path,
                             const std::string& body = "") {
  auto r = Http(port, method, path, body);
  EXPECT_TRUE(r.ok()) << method << " " << path << ": " << r.status();
  return r.ok() ? *r : HttpResult{};
}

// Echoes what arrives, as it arrives, until EOF; then closes its side.
inline void ChunkEcho(int fd) {
  char buf[65536];
  for (int i = 0; i < kMaxLoopIterations; ++i) {
    if (!WaitFor(fd, POLLIN, absl::Now() + absl::Seconds(30), "echo").ok()) return;
    ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) break;
    if (!WriteAll(fd, absl::string_view(buf, static_cast<size_t>(n)), absl::Seconds(30)).ok())
      return;
  }
  ::shutdown(fd, SHUT_WR);
}

}  // namespace wrench::proxy::testing
