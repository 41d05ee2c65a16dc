// The timing profiles: names, and every figure each one sets.
#include "stack/tcp_profile.h"

#include "gtest/gtest.h"

namespace wrench::stack {
namespace {

TEST(TcpProfile, NamesParseAndAnythingElseIsAnError) {
  EXPECT_EQ(*ParseTcpProfile("linux"), TcpProfile::kLinux);
  EXPECT_EQ(*ParseTcpProfile("rfc"), TcpProfile::kRfc);
  auto bad = ParseTcpProfile("bsd");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().message(), "unknown TCP profile 'bsd': expected 'linux' or 'rfc'");
  EXPECT_EQ(TcpProfileName(TcpProfile::kLinux), "linux");
  EXPECT_EQ(TcpProfileName(TcpProfile::kRfc), "rfc");
}

TEST(TcpProfile, LinuxIsTheDefaultConfig) {
  TcpConfig defaults, linux_cfg;
  ApplyProfile(TcpProfile::kRfc, linux_cfg);
  ApplyProfile(TcpProfile::kLinux, linux_cfg);
  EXPECT_EQ(linux_cfg.min_rto, defaults.min_rto);
  EXPECT_EQ(linux_cfg.initial_rto, defaults.initial_rto);
  EXPECT_EQ(linux_cfg.max_rto, defaults.max_rto);
  EXPECT_EQ(linux_cfg.congestion, defaults.congestion);
  EXPECT_EQ(linux_cfg.rack, defaults.rack);
  EXPECT_EQ(linux_cfg.tlp, defaults.tlp);
  EXPECT_EQ(linux_cfg.time_wait_accepts_syn, defaults.time_wait_accepts_syn);
  EXPECT_EQ(linux_cfg.delayed_ack, defaults.delayed_ack);
  EXPECT_EQ(linux_cfg.delayed_ack_timeout, defaults.delayed_ack_timeout);
  EXPECT_EQ(linux_cfg.quickacks, defaults.quickacks);
}

TEST(TcpProfile, FiguresOfBothProfiles) {
  TcpConfig linux_cfg, rfc;
  ApplyProfile(TcpProfile::kLinux, linux_cfg);
  ApplyProfile(TcpProfile::kRfc, rfc);
  EXPECT_EQ(linux_cfg.min_rto, absl::Milliseconds(200));
  EXPECT_EQ(rfc.min_rto, absl::Seconds(1));
  for (const TcpConfig* c : {&linux_cfg, &rfc}) {
    EXPECT_EQ(c->initial_rto, absl::Seconds(1));
    EXPECT_EQ(c->max_rto, absl::Seconds(60));
    EXPECT_EQ(c->dup_thresh, 3);
  }
  EXPECT_EQ(linux_cfg.congestion, CongestionAlgorithm::kCubic);
  EXPECT_EQ(rfc.congestion, CongestionAlgorithm::kNewReno);
  EXPECT_TRUE(linux_cfg.rack && linux_cfg.tlp && linux_cfg.time_wait_accepts_syn);
  EXPECT_FALSE(rfc.rack || rfc.tlp || rfc.time_wait_accepts_syn);
  EXPECT_EQ(linux_cfg.tlp_one_segment_allowance, absl::Milliseconds(200));
  EXPECT_TRUE(linux_cfg.delayed_ack);
  EXPECT_EQ(linux_cfg.delayed_ack_timeout, absl::Milliseconds(40));
  EXPECT_EQ(linux_cfg.quickacks, 16);
  EXPECT_FALSE(rfc.delayed_ack);
}

TEST(TcpProfile, LeavesBuffersOptionsAndAddressesAlone) {
  TcpConfig c;
  c.send_buffer = 1234;
  c.sack = false;
  c.msl = absl::Seconds(3);
  c.tuple.local_port = 99;
  ApplyProfile(TcpProfile::kRfc, c);
  EXPECT_EQ(c.send_buffer, 1234u);
  EXPECT_FALSE(c.sack);
  EXPECT_EQ(c.msl, absl::Seconds(3));
  EXPECT_EQ(c.tuple.local_port, 99);
}

}  // namespace
}  // namespace wrench::stack
