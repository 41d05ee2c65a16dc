// Host name look-up (host_lookup.h).
#include "proxy/os/host_lookup.h"

#include <boost/asio.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace wrench::proxy {

namespace asio = boost::asio;

absl::StatusOr<asio::ip::address> LookUpHost(const std::string& host) {
  boost::system::error_code ec;
  auto literal = asio::ip::make_address(host, ec);
  if (!ec) return literal;
  std::string lower = absl::AsciiStrToLower(host);
  absl::string_view name = lower;
  absl::ConsumeSuffix(&name, ".");  // the fully qualified "localhost." too
  if (name == "localhost" || absl::EndsWith(name, ".localhost")) {
    return asio::ip::address(asio::ip::address_v4::loopback());
  }
  asio::io_context io;
  asio::ip::tcp::resolver resolver(io);
  auto results = resolver.resolve(host, "", ec);
  if (ec || results.empty()) {
    return absl::InvalidArgumentError(ec ? ec.message() : "no address");
  }
  for (const auto& r : results) {
    if (r.endpoint().address().is_v4()) return r.endpoint().address();
  }
  return results.begin()->endpoint().address();
}

}  // namespace wrench::proxy
