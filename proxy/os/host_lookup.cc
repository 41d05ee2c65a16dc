// Host name look-up (host_lookup.h).
#include "proxy/os/host_lookup.h"

#include <boost/asio.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace wrench::proxy {

namespace asio = boost::asio;

namespace {

// IPv4 first when the name has both.
absl::StatusOr<asio::ip::address> Choose(const boost::system::error_code& ec,
                                        const asio::ip::tcp::resolver::results_type& results) {
  if (ec || results.empty()) {
    return absl::InvalidArgumentError(ec ? ec.message() : "no address");
  }
  for (const auto& r : results) {
    if (r.endpoint().address().is_v4()) return r.endpoint().address();
  }
  return results.begin()->endpoint().address();
}

}  // namespace

std::optional<asio::ip::address> LiteralHost(const std::string& host) {
  boost::system::error_code ec;
  auto literal = asio::ip::make_address(host, ec);
  if (!ec) return literal;
  std::string lower = absl::AsciiStrToLower(host);
  absl::string_view name = lower;
  absl::ConsumeSuffix(&name, ".");  // the fully qualified "localhost." too
  if (name == "localhost" || absl::EndsWith(name, ".localhost")) {
    return asio::ip::address(asio::ip::address_v4::loopback());
  }
  return std::nullopt;
}

absl::StatusOr<asio::ip::address> LookUpHost(const std::string& host) {
  if (auto literal = LiteralHost(host)) return *literal;
  asio::io_context io;
  asio::ip::tcp::resolver resolver(io);
  boost::system::error_code ec;
  auto results = resolver.resolve(host, "", ec);
  return Choose(ec, results);
}

HostResolver::~HostResolver() { *alive_ = false; }

void HostResolver::Resolve(const std::string& host, Done done) {
  if (auto literal = LiteralHost(host)) return done(*literal);
  const auto now = std::chrono::steady_clock::now();
  Entry& e = cache_[host];
  if (e.pending) {
    e.waiting.push_back(std::move(done));
    return;
  }
  if (now < e.expires) {
    // From the loop, as a lookup's answer: the caller may be in the middle of an event.
    asio::post(io_, [done = std::move(done), answer = e.answer, alive = alive_] {
      if (*alive) done(answer);
    });
    return;
  }
  e.pending = true;
  e.waiting.push_back(std::move(done));
  // The resolver lives in the handler: its lookup is not cancelled when this returns.
  auto resolver = std::make_shared<asio::ip::tcp::resolver>(io_);
  resolver->async_resolve(
      host, "",
      [this, host, resolver, alive = alive_](const boost::system::error_code& ec,
                                             asio::ip::tcp::resolver::results_type results) {
        if (!*alive) return;
        Entry& entry = cache_[host];
        entry.pending = false;
        entry.answer = Choose(ec, results);
        entry.expires = std::chrono::steady_clock::now() + kCacheFor;
        std::vector<Done> waiting = std::move(entry.waiting);
        entry.waiting.clear();
        const absl::StatusOr<asio::ip::address> answer = entry.answer;
        for (Done& d : waiting) d(answer);
      });
}

}  // namespace wrench::proxy
