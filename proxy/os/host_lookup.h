// Host names in wrench's addresses: looked up once when they are given (--map, --api,
// Toxiproxy's listen), or per connection without blocking the event loop
// (HostResolver: Toxiproxy's upstream).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>

#include "absl/status/statusor.h"

namespace wrench::proxy {

// An IP literal as it is; "localhost" and any name under ".localhost" as 127.0.0.1
// without asking the resolver (RFC 6761 §6.3), so they work where /etc/hosts is
// missing, as in a bare container; any other name through the system resolver,
// IPv4 first when it has both (all the TUN speaks, and what most clients mean).
// The error carries the resolver's message.
absl::StatusOr<boost::asio::ip::address> LookUpHost(const std::string& host);

// The answer for an IP literal, "localhost" and names under ".localhost", as
// LookUpHost gives it without a resolver; nullopt for any other name.
std::optional<boost::asio::ip::address> LiteralHost(const std::string& host);

// Looks host names up as connections need them, on an io_context without blocking it:
// Asio's async_resolve runs getaddrinfo on a thread of its own. An answer, an address
// or a failure, is kept for kCacheFor, so a burst of connections asks once and a name
// that starts to resolve (a container that comes up) is found a second later.
// Lookups of one name while one is under way wait for it. The same address is chosen
// as LookUpHost's.
class HostResolver {
 public:
  static constexpr std::chrono::seconds kCacheFor{1};
  using Done = std::function<void(const absl::StatusOr<boost::asio::ip::address>&)>;

  explicit HostResolver(boost::asio::io_context& io) : io_(io) {}
  ~HostResolver();
  HostResolver(const HostResolver&) = delete;
  HostResolver& operator=(const HostResolver&) = delete;

  // Calls `done` with the address of `host`: at once for literals (LiteralHost), from
  // the io_context for names, cached or not, so never inside this call. Never after
  // the resolver is gone.
  void Resolve(const std::string& host, Done done);

 private:
  struct Entry {
    absl::StatusOr<boost::asio::ip::address> answer = absl::UnavailableError("pending");
    std::chrono::steady_clock::time_point expires;
    bool pending = false;
    std::vector<Done> waiting;
  };
  boost::asio::io_context& io_;
  std::map<std::string, Entry> cache_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace wrench::proxy
