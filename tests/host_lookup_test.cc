// Tests for host name look-up (proxy/os/host_lookup.h): the names that never ask the
// resolver, so they hold on any machine, with or without /etc/hosts.
#include "proxy/os/host_lookup.h"

#include "gtest/gtest.h"

namespace wrench::proxy {
namespace {

using boost::asio::ip::make_address;

TEST(LookUpHost, LocalhostIsIpv4LoopbackWithoutTheResolver) {
  for (const char* name :
       {"localhost", "LocalHost", "localhost.", "db.localhost", "a.b.LOCALHOST."}) {
    auto a = LookUpHost(name);
    ASSERT_TRUE(a.ok()) << name << ": " << a.status();
    EXPECT_EQ(*a, make_address("127.0.0.1")) << name;
  }
}

TEST(LookUpHost, LiteralsAreTakenAsTheyAre) {
  for (const char* literal : {"127.0.0.2", "10.89.0.1", "::1", "fd00:89::1"}) {
    auto a = LookUpHost(literal);
    ASSERT_TRUE(a.ok()) << literal << ": " << a.status();
    EXPECT_EQ(*a, make_address(literal));
  }
}

TEST(HostResolver, LiteralsAndLocalhostAnswerAtOnceWithoutTheLoop) {
  // A name that needs the resolver is answered from the loop; control_api_test looks
  // names up through it inside a network namespace of its own.
  boost::asio::io_context io;
  HostResolver resolver(io);
  for (const char* host : {"127.0.0.2", "::1", "localhost", "db.localhost"}) {
    bool answered = false;
    resolver.Resolve(host, [&](const absl::StatusOr<boost::asio::ip::address>& a) {
      answered = true;
      ASSERT_TRUE(a.ok()) << host << ": " << a.status();
      EXPECT_EQ(*a, *LookUpHost(host)) << host;
    });
    EXPECT_TRUE(answered) << host;
  }
}

}  // namespace
}  // namespace wrench::proxy
