// HOST:PORT parsing and formatting (address.h).
#include "proxy/os/address.h"

#include <algorithm>
#include <array>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace wrench::proxy {

absl::StatusOr<HostPort> SplitHostPort(absl::string_view text, absl::string_view what,
                                       uint16_t min_port) {
  HostPort hp;
  absl::string_view port;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find(']');
    if (close == absl::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " \"", text, "\": expected [IPV6]:PORT"));
    }
    hp.host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(what, " \"", text, "\": expected HOST:PORT"));
    }
    hp.host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
  }
  uint32_t p = 0;
  if (!absl::SimpleAtoi(port, &p) || p < min_port || p > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " \"", text, "\": port \"", port, "\" is not a number from ", min_port, " to 65535"));
  }
  hp.port = static_cast<uint16_t>(p);
  return hp;
}

std::string FormatHostPort(const stack::IpAddress& addr, uint16_t port) {
  return addr.is_v6() ? absl::StrCat("[", addr.ToString(), "]:", port)
                      : absl::StrCat(addr.ToString(), ":", port);
}

std::string FormatHostPort(const boost::asio::ip::address& addr, uint16_t port) {
  return addr.is_v6() ? absl::StrCat("[", addr.to_string(), "]:", port)
                      : absl::StrCat(addr.to_string(), ":", port);
}

std::string FormatHostPort(const boost::asio::ip::tcp::endpoint& e) {
  return FormatHostPort(e.address(), e.port());
}

stack::IpAddress ToIpAddress(const boost::asio::ip::address& a) {
  if (a.is_v4()) return stack::IpAddress::V4(a.to_v4().to_uint());
  auto b = a.to_v6().to_bytes();
  std::array<uint8_t, 16> bytes;
  std::copy(b.begin(), b.end(), bytes.begin());
  return stack::IpAddress::V6(bytes);
}

boost::asio::ip::address ToAsioAddress(const stack::IpAddress& a) {
  if (!a.is_v6()) return boost::asio::ip::address_v4(a.v4_host_order());
  boost::asio::ip::address_v6::bytes_type b;
  std::copy(a.bytes().begin(), a.bytes().end(), b.begin());
  return boost::asio::ip::address_v6(b);
}

}  // namespace wrench::proxy
