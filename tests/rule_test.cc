// The fault rule language (proxy/fault/rule.h): every action and matcher, the issue's
// examples, canonical printing, a seeded round trip over generated rules, and one
// test per kind of mistake pinning the exact error text.
#include "proxy/fault/rule.h"

#include <cstdint>
#include <limits>
#include <random>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace wrench::proxy {
namespace {

using stack::TcpFlags;
using stack::TcpState;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr TcpFlags kSyn(stack::kSyn);
constexpr TcpFlags kAck(stack::kAck);
constexpr TcpFlags kFin(stack::kFin);
constexpr TcpFlags kSynAck(stack::kSyn | stack::kAck);

Rule MustParse(absl::string_view line) {
  absl::StatusOr<Rule> r = ParseRule(line);
  EXPECT_TRUE(r.ok()) << line << ": " << r.status();
  return r.ok() ? *r : Rule{};
}

// The error message ParseRule gives for `line` as rule `n`; "" when it parses.
std::string ErrorOf(absl::string_view line, int n = 1) {
  absl::StatusOr<Rule> r = ParseRule(line, n);
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(r.status().message());
}

// ---- Actions ----

TEST(RuleParser, ParsesDrop) {
  Rule r = MustParse("drop");
  EXPECT_EQ(KindOf(r.action), ActionKind::kDrop);
  EXPECT_EQ(r, Rule{});
}

TEST(RuleParser, ParsesDelay) {
  Rule r = MustParse("delay 250ms");
  EXPECT_EQ(r.action, Action(DelayAction{absl::Milliseconds(250), absl::ZeroDuration()}));
}

TEST(RuleParser, ParsesDelayWithJitter) {
  Rule r = MustParse("delay 1.5s~100us");
  EXPECT_EQ(r.action, Action(DelayAction{absl::Milliseconds(1500), absl::Microseconds(100)}));
}

TEST(RuleParser, DelayUnitsAreCaseInsensitiveAndFractional) {
  EXPECT_EQ(MustParse("delay 2S").action, Action(DelayAction{absl::Seconds(2), {}}));
  EXPECT_EQ(MustParse("delay 0.25ms").action, Action(DelayAction{absl::Microseconds(250), {}}));
  EXPECT_EQ(MustParse("delay 1.000001s").action,
            Action(DelayAction{absl::Microseconds(1000001), {}}));
  EXPECT_EQ(MustParse("delay 0s").action, Action(DelayAction{}));
  EXPECT_EQ(MustParse("delay 3600s").action, Action(DelayAction{absl::Seconds(3600), {}}));
}

TEST(RuleParser, ParsesDupWithDefaultOfOne) {
  EXPECT_EQ(MustParse("dup").action, Action(DupAction{1}));
  EXPECT_EQ(MustParse("dup on=to-server").action, Action(DupAction{1}));
  EXPECT_EQ(MustParse("dup 3").action, Action(DupAction{3}));
}

TEST(RuleParser, ParsesReorderRstBlackhole) {
  EXPECT_EQ(MustParse("reorder").action, Action(ReorderAction{}));
  EXPECT_EQ(MustParse("rst").action, Action(RstAction{}));
  EXPECT_EQ(MustParse("blackhole").action, Action(BlackholeAction{}));
}

TEST(RuleParser, ParsesSetOfEveryNumericField) {
  EXPECT_EQ(MustParse("set seq=4294967295").action, Action(SetAction{Field::kSeq, 0xffffffff}));
  EXPECT_EQ(MustParse("set ack=7").action, Action(SetAction{Field::kAck, 7}));
  EXPECT_EQ(MustParse("set win=0").action, Action(SetAction{Field::kWin, 0}));
  EXPECT_EQ(MustParse("set urg=65535").action, Action(SetAction{Field::kUrg, 65535}));
  EXPECT_EQ(MustParse("set ttl=1").action, Action(SetAction{Field::kTtl, 1}));
  EXPECT_EQ(MustParse("set mss=536").action, Action(SetAction{Field::kMss, 536}));
  EXPECT_EQ(MustParse("set wscale=14").action, Action(SetAction{Field::kWscale, 14}));
}

TEST(RuleParser, ParsesSetFlagsAsAFlagSet) {
  EXPECT_EQ(MustParse("set flags=SYN+ACK").action,
            Action(SetAction{Field::kFlags, kSynAck.bits()}));
  EXPECT_EQ(MustParse("set flags=none").action, Action(SetAction{Field::kFlags, 0}));
  // The field assignment belongs to the action; a later flags= is the matcher.
  Rule r = MustParse("set flags=RST flags=SYN");
  EXPECT_EQ(r.action, Action(SetAction{Field::kFlags, stack::kRst}));
  EXPECT_EQ(r.flags_exact, kSyn);
}

TEST(RuleParser, ParsesAddWithSignedDelta) {
  EXPECT_EQ(MustParse("add seq=-1").action, Action(AddAction{Field::kSeq, -1}));
  EXPECT_EQ(MustParse("add ack=+5").action, Action(AddAction{Field::kAck, 5}));
  EXPECT_EQ(MustParse("add win=-65535").action, Action(AddAction{Field::kWin, -65535}));
  EXPECT_EQ(MustParse("add seq=4294967295").action, Action(AddAction{Field::kSeq, 4294967295}));
}

TEST(RuleParser, ParsesCorruptWithDefaultPayload) {
  EXPECT_EQ(MustParse("corrupt").action, Action(CorruptAction{CorruptTarget::kPayload}));
  EXPECT_EQ(MustParse("corrupt payload").action, Action(CorruptAction{CorruptTarget::kPayload}));
  EXPECT_EQ(MustParse("corrupt checksum").action, Action(CorruptAction{CorruptTarget::kChecksum}));
}

// ---- Matchers ----

TEST(RuleParser, NoOnMeansAllFourHooks) {
  EXPECT_EQ(MustParse("drop").hooks, HookSet::All());
  for (int i = 0; i < kHookCount; ++i) EXPECT_TRUE(HookSet::All().has(static_cast<Hook>(i)));
}

TEST(RuleParser, ParsesOnWithSeveralHooks) {
  Rule r = MustParse("drop on=to-client,from-server");
  EXPECT_EQ(r.hooks, HookSet::Of(Hook::kToClient).with(Hook::kFromServer));
  EXPECT_FALSE(r.hooks.has(Hook::kFromClient));
  EXPECT_EQ(MustParse("drop on=FROM-CLIENT").hooks, HookSet::Of(Hook::kFromClient));
}

TEST(RuleParser, ParsesExactAndPresentFlags) {
  Rule r = MustParse("drop flags=syn+ack has=ACK");
  EXPECT_EQ(r.flags_exact, kSynAck);
  EXPECT_EQ(r.flags_has, kAck);
  EXPECT_EQ(MustParse("drop flags=none").flags_exact, TcpFlags());
  EXPECT_EQ(MustParse("drop flags=CWR+ECE+URG+PSH+RST+FIN").flags_exact,
            TcpFlags(0xff).without(stack::kSyn).without(stack::kAck));
}

TEST(RuleParser, ParsesCountingMatchers) {
  EXPECT_EQ(MustParse("drop nth=3").nth, 3u);
  Rule r = MustParse("drop every=2 after=10 count=5");
  EXPECT_EQ(r.every, 2u);
  EXPECT_EQ(r.after, 10u);
  EXPECT_EQ(r.count, 5u);
  EXPECT_EQ(MustParse("drop after=0").after, 0u);
  EXPECT_EQ(MustParse("drop nth=18446744073709551615").nth, std::numeric_limits<uint64_t>::max());
}

TEST(RuleParser, ParsesConnPortState) {
  Rule r = MustParse("drop conn=2 port=8080 state=FIN-WAIT-1");
  EXPECT_EQ(r.conn, 2u);
  EXPECT_EQ(r.port, 8080);
  EXPECT_EQ(r.state, TcpState::kFinWait1);
  EXPECT_EQ(MustParse("drop state=close_wait").state, TcpState::kCloseWait);
}

TEST(RuleParser, ParsesLenComparisons) {
  EXPECT_EQ(MustParse("drop len=0").len, (LenMatch{LenMatch::Op::kEqual, 0}));
  EXPECT_EQ(MustParse("drop len>100").len, (LenMatch{LenMatch::Op::kGreater, 100}));
  EXPECT_EQ(MustParse("drop len<10").len, (LenMatch{LenMatch::Op::kLess, 10}));
  EXPECT_EQ(MustParse("drop len=65535").len, (LenMatch{LenMatch::Op::kEqual, 65535}));
}

TEST(RuleParser, ParsesIdle) {
  EXPECT_EQ(MustParse("rst idle>350s").idle, absl::Seconds(350));
  EXPECT_EQ(MustParse("blackhole on=from-client idle>500ms").idle, absl::Milliseconds(500));
  EXPECT_EQ(MustParse("drop IDLE>1.5S").idle, absl::Milliseconds(1500));
  EXPECT_EQ(MustParse("drop idle>0s").idle, absl::ZeroDuration());
  EXPECT_EQ(MustParse("drop").idle, std::nullopt);
}

TEST(RuleParser, IdleCombinesWithEveryActionAndMatcher) {
  for (absl::string_view action : {"drop", "delay 1s", "dup", "reorder", "rst", "set win=0",
                                   "add seq=1", "corrupt", "blackhole"}) {
    const std::string line =
        absl::StrCat(action, " on=to-client has=FIN len=0 idle>2s after=1 count=3 p=0.5");
    EXPECT_EQ(MustParse(line).idle, absl::Seconds(2)) << line;
  }
}

TEST(RuleParser, IdleComparesWithGreaterOnly) {
  EXPECT_EQ(ErrorOf("drop idle=1s"),
            "rule 1, col 10: idle compares with '>': idle>1s matches a segment after more than "
            "1s without one on its leg");
  EXPECT_EQ(ErrorOf("drop idle<1s"),
            "rule 1, col 10: idle compares with '>': idle>1s matches a segment after more than "
            "1s without one on its leg");
}

TEST(RuleParser, IdleNeedsADurationWithAUnit) {
  EXPECT_EQ(ErrorOf("drop idle>"), "rule 1, col 11: idle needs a duration, e.g. idle>350s or "
                                   "idle>500ms");
  EXPECT_EQ(ErrorOf("drop idle>5"),
            "rule 1, col 12: duration \"5\" needs a unit right after the number: us, ms or s");
  EXPECT_EQ(ErrorOf("drop idle>3601s"), "rule 1, col 11: delays are at most 3600s");
  EXPECT_EQ(ErrorOf("drop idle"), "rule 1, col 6: expected a matcher KEY=VALUE, got \"idle\"; "
                                  "a matcher needs a value, e.g. idle>1s");
  EXPECT_EQ(ErrorOf("drop quiet>1s"), "rule 1, col 6: unknown matcher \"quiet\"; did you mean "
                                      "idle?");
}

TEST(RulePrinter, PrintsIdleAfterLen) {
  EXPECT_EQ(ToString(MustParse("rst count=1 idle>350000ms len>0 on=from-client")),
            "rst on=from-client len>0 idle>350s count=1");
}

TEST(RuleParser, ParsesProbability) {
  EXPECT_EQ(MustParse("drop p=0.1").probability, 0.1);
  EXPECT_EQ(MustParse("drop p=0").probability, 0.0);
  EXPECT_EQ(MustParse("drop p=1").probability, 1.0);
  EXPECT_EQ(MustParse("drop p=.5").probability, 0.5);
  EXPECT_EQ(MustParse("drop p=1e-3").probability, 0.001);
}

TEST(RuleParser, KeywordsAreCaseInsensitive) {
  Rule r = MustParse("DROP ON=To-Client FLAGS=Syn NTH=1");
  EXPECT_EQ(r.hooks, HookSet::Of(Hook::kToClient));
  EXPECT_EQ(r.flags_exact, kSyn);
  EXPECT_EQ(r.nth, 1u);
}

TEST(RuleParser, BlanksAndCommentsAreIgnored) {
  Rule r = MustParse("\t drop   on=to-client\tnth=1   # lose it\r");
  EXPECT_EQ(r.hooks, HookSet::Of(Hook::kToClient));
  EXPECT_EQ(r.nth, 1u);
  EXPECT_EQ(MustParse("drop#comment right after"), Rule{});
  // A trailing line break is allowed; a second line is not (see MultiLineRuleIsAnError).
  EXPECT_EQ(MustParse("drop\n"), Rule{});
}

TEST(RuleParser, EveryAfterAndCountCombine) {
  Rule r = MustParse("drop after=2 every=3 count=4 p=0.5");
  EXPECT_EQ(r.after, 2u);
  EXPECT_EQ(r.every, 3u);
  EXPECT_EQ(r.count, 4u);
}

// ---- The examples, exactly as written ----

struct Example {
  const char* line;
  const char* canonical;
};
constexpr Example kExamples[] = {
    {"drop on=to-client flags=SYN+ACK nth=1     # the first SYN-ACK toward the client is lost",
     "drop on=to-client flags=SYN+ACK nth=1"},
    {"delay 2s on=from-server has=FIN           # the server's FIN arrives two seconds late",
     "delay 2s on=from-server has=FIN"},
    {"rst on=to-client has=FIN                  # the client gets RST where FIN was due",
     "rst on=to-client has=FIN"},
    {"add ack=1 on=to-client flags=ACK p=0.1    # one pure ACK in ten acknowledges a byte too far",
     "add ack=1 on=to-client flags=ACK p=0.1"},
    {"blackhole on=from-server after=3          # the server vanishes after its third segment",
     "blackhole on=from-server after=3"},
    {"dup 2 on=from-client flags=SYN            # every SYN arrives three times",
     "dup 2 on=from-client flags=SYN"},
};

TEST(RuleExamples, ParseToTheIntendedRules) {
  Rule lost_syn_ack;
  lost_syn_ack.hooks = HookSet::Of(Hook::kToClient);
  lost_syn_ack.flags_exact = kSynAck;
  lost_syn_ack.nth = 1;
  EXPECT_EQ(MustParse(kExamples[0].line), lost_syn_ack);

  Rule late_fin;
  late_fin.action = DelayAction{absl::Seconds(2), absl::ZeroDuration()};
  late_fin.hooks = HookSet::Of(Hook::kFromServer);
  late_fin.flags_has = kFin;
  EXPECT_EQ(MustParse(kExamples[1].line), late_fin);

  Rule rst_for_fin;
  rst_for_fin.action = RstAction{};
  rst_for_fin.hooks = HookSet::Of(Hook::kToClient);
  rst_for_fin.flags_has = kFin;
  EXPECT_EQ(MustParse(kExamples[2].line), rst_for_fin);

  Rule ack_too_far;
  ack_too_far.action = AddAction{Field::kAck, 1};
  ack_too_far.hooks = HookSet::Of(Hook::kToClient);
  ack_too_far.flags_exact = kAck;
  ack_too_far.probability = 0.1;
  EXPECT_EQ(MustParse(kExamples[3].line), ack_too_far);

  Rule vanish;
  vanish.action = BlackholeAction{};
  vanish.hooks = HookSet::Of(Hook::kFromServer);
  vanish.after = 3;
  EXPECT_EQ(MustParse(kExamples[4].line), vanish);

  Rule triple_syn;
  triple_syn.action = DupAction{2};
  triple_syn.hooks = HookSet::Of(Hook::kFromClient);
  triple_syn.flags_exact = kSyn;
  EXPECT_EQ(MustParse(kExamples[5].line), triple_syn);
}

TEST(RuleExamples, PrintCanonically) {
  for (const Example& e : kExamples) EXPECT_EQ(ToString(MustParse(e.line)), e.canonical);
}

TEST(RuleExamples, ParseAsOneFile) {
  std::string file = "# the issue's examples\n\n";
  for (const Example& e : kExamples) absl::StrAppend(&file, e.line, "\n");
  absl::StatusOr<std::vector<Rule>> rules = ParseRules(file);
  ASSERT_TRUE(rules.ok()) << rules.status();
  ASSERT_EQ(rules->size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(ToString((*rules)[i]), kExamples[i].canonical);
}

// ---- Canonical printing ----

TEST(RulePrinter, PutsMatchersInFixedOrder) {
  EXPECT_EQ(ToString(MustParse("drop p=0.5 count=2 every=3 after=1 len>9 has=ACK flags=SYN "
                               "state=LISTEN port=80 conn=4 on=to-server")),
            "drop on=to-server conn=4 port=80 state=LISTEN flags=SYN has=ACK len>9 every=3 "
            "after=1 count=2 p=0.5");
}

TEST(RulePrinter, WritesDurationsInTheLargestWholeUnit) {
  EXPECT_EQ(DurationToString(absl::Milliseconds(1500)), "1.5s");
  EXPECT_EQ(DurationToString(absl::Milliseconds(250)), "250ms");
  EXPECT_EQ(DurationToString(absl::Microseconds(100)), "100us");
  EXPECT_EQ(DurationToString(absl::Microseconds(1500)), "1.5ms");
  EXPECT_EQ(DurationToString(absl::Microseconds(1000001)), "1.000001s");
  EXPECT_EQ(DurationToString(absl::Seconds(2)), "2s");
  EXPECT_EQ(DurationToString(absl::ZeroDuration()), "0s");
  EXPECT_EQ(ToString(MustParse("delay 1500ms~0.05s")), "delay 1.5s~50ms");
  EXPECT_EQ(ToString(MustParse("delay 2.000s~0ms")), "delay 2s");
}

TEST(RulePrinter, SpellsOutDefaultsOfActionsButNotAllHooks) {
  EXPECT_EQ(ToString(MustParse("dup")), "dup 1");
  EXPECT_EQ(ToString(MustParse("corrupt")), "corrupt payload");
  EXPECT_EQ(ToString(MustParse("drop on=to-server,from-client,to-client,from-server")), "drop");
  EXPECT_EQ(ToString(MustParse("drop on=to-server,from-client")), "drop on=from-client,to-server");
}

TEST(RulePrinter, NormalizesCaseAndFlagOrder) {
  EXPECT_EQ(ToString(MustParse("SET Flags=ack+syn ON=TO-CLIENT state=fin_wait_2")),
            "set flags=SYN+ACK on=to-client state=FIN-WAIT-2");
  EXPECT_EQ(ToString(MustParse("drop flags=NONE")), "drop flags=none");
  EXPECT_EQ(ToString(MustParse("add seq=+1")), "add seq=1");
}

TEST(RulePrinter, WritesTheShortestExactProbability) {
  EXPECT_EQ(ToString(MustParse("drop p=0.10")), "drop p=0.1");
  EXPECT_EQ(ToString(MustParse("drop p=1.0")), "drop p=1");
  EXPECT_EQ(ToString(MustParse("drop p=1e-5")), "drop p=0.00001");
  Rule r;
  r.probability = 1.0 / 3;
  EXPECT_EQ(ParseRule(ToString(r)).value(), r);
}

// A seeded generator of valid rules: every action, matcher and value range.
class RuleGenerator {
 public:
  explicit RuleGenerator(uint64_t seed) : rng_(seed) {}

  Rule Next() {
    Rule r;
    r.action = NextAction();
    r.hooks = HookSet(static_cast<uint8_t>(Uniform(1, 15)));
    if (Chance()) r.conn = Uniform(1, Chance() ? 10 : kMax);
    if (Chance()) r.port = static_cast<uint16_t>(Uniform(1, 65535));
    if (Chance()) r.state = static_cast<TcpState>(Uniform(0, stack::kTcpStateCount - 1));
    if (Chance()) r.flags_exact = TcpFlags(static_cast<uint8_t>(Uniform(0, 255)));
    if (Chance()) r.flags_has = TcpFlags(static_cast<uint8_t>(Uniform(0, 255)));
    if (Chance()) {
      const auto op = static_cast<LenMatch::Op>(Uniform(0, 2));
      r.len = LenMatch{op, static_cast<uint16_t>(Uniform(op == LenMatch::Op::kLess, 65535))};
    }
    if (Chance()) {
      r.nth = Uniform(1, Chance() ? 10 : kMax);
    } else {
      if (Chance()) r.every = Uniform(1, Chance() ? 10 : kMax);
      if (Chance()) r.after = Uniform(0, Chance() ? 10 : kMax);
      if (Chance()) r.count = Uniform(1, Chance() ? 10 : kMax);
    }
    if (Chance()) r.probability = NextProbability();
    if (Chance()) r.idle = NextDuration(int64_t{3600} * 1000000);
    return r;
  }

 private:
  static constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

  uint64_t Uniform(uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi)(rng_);
  }
  bool Chance() { return Uniform(0, 2) == 0; }

  absl::Duration NextDuration(int64_t max_us) {
    const int64_t units[] = {1, 1000, 1000000};
    const int64_t unit = units[Uniform(0, 2)];
    return absl::Microseconds(static_cast<int64_t>(Uniform(0, max_us / unit)) * unit);
  }

  double NextProbability() {
    switch (Uniform(0, 3)) {
      case 0: return static_cast<double>(Uniform(0, 1000)) / 1000;
      case 1: return std::uniform_real_distribution<double>(0, 1)(rng_);
      case 2: return std::ldexp(1.0, -static_cast<int>(Uniform(0, 1074)));
      default: return static_cast<double>(Uniform(0, 1));
    }
  }

  Action NextAction() {
    switch (static_cast<ActionKind>(Uniform(0, kActionKindCount - 1))) {
      case ActionKind::kDrop: return DropAction{};
      case ActionKind::kDelay: {
        DelayAction a;
        a.delay = NextDuration(int64_t{3600} * 1000000);
        if (Chance()) a.jitter = NextDuration(absl::ToInt64Microseconds(a.delay));
        return a;
      }
      case ActionKind::kDup: return DupAction{static_cast<uint32_t>(Uniform(1, 100))};
      case ActionKind::kReorder: return ReorderAction{};
      case ActionKind::kRst: return RstAction{};
      case ActionKind::kSet: {
        const auto f = static_cast<Field>(Uniform(0, kFieldCount - 1));
        return SetAction{f, static_cast<uint32_t>(Uniform(0, FieldMax(f)))};
      }
      case ActionKind::kAdd: {
        Field f = static_cast<Field>(Uniform(0, kFieldCount - 1));
        if (f == Field::kFlags) f = Field::kTtl;
        const int64_t magnitude = static_cast<int64_t>(Uniform(1, FieldMax(f)));
        return AddAction{f, Chance() ? -magnitude : magnitude};
      }
      case ActionKind::kCorrupt:
        return CorruptAction{Chance() ? CorruptTarget::kChecksum : CorruptTarget::kPayload};
      case ActionKind::kBlackhole: return BlackholeAction{};
    }
    return DropAction{};
  }

  std::mt19937_64 rng_;
};

TEST(RulePrinter, RoundTripsManyGeneratedRules) {
  RuleGenerator gen(20240601);
  for (int i = 0; i < 20000; ++i) {
    const Rule r = gen.Next();
    ASSERT_TRUE(ValidateRule(r).ok()) << ValidateRule(r);
    const std::string text = ToString(r);
    absl::StatusOr<Rule> back = ParseRule(text);
    ASSERT_TRUE(back.ok()) << text << ": " << back.status();
    ASSERT_EQ(*back, r) << text;
    ASSERT_EQ(ToString(*back), text);
  }
}

TEST(RuleParser, MutatedRulesParseCleanlyOrFailWithAColumn) {
  RuleGenerator gen(7);
  std::mt19937 rng(11);
  const std::string alphabet = "=<>+,~.#- \t0123456789abcdefghinoprstuwxyACFGHKNSRW\n";
  for (int i = 0; i < 20000; ++i) {
    std::string text = ToString(gen.Next());
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % (text.size() + 1);
      const char c = alphabet[rng() % alphabet.size()];
      switch (rng() % 3) {
        case 0: text.insert(pos, 1, c); break;
        case 1:
          if (pos < text.size()) text.erase(pos, 1);
          break;
        default:
          if (pos < text.size()) text[pos] = c;
          break;
      }
    }
    absl::StatusOr<Rule> r = ParseRule(text, 9);
    if (r.ok()) {
      EXPECT_TRUE(ValidateRule(*r).ok()) << text;
      EXPECT_EQ(ParseRule(ToString(*r)).value(), *r) << text;
    } else {
      EXPECT_THAT(std::string(r.status().message()), StartsWith("rule 9, col ")) << text;
    }
  }
}

// ---- Rule files ----

TEST(RuleFile, SkipsBlankAndCommentLines) {
  absl::StatusOr<std::vector<Rule>> rules =
      ParseRules("# header\n\n   \n\t# indented comment\r\ndrop nth=1\r\nrst # end\n");
  ASSERT_TRUE(rules.ok()) << rules.status();
  ASSERT_EQ(rules->size(), 2u);
  EXPECT_EQ(ToString((*rules)[0]), "drop nth=1");
  EXPECT_EQ(ToString((*rules)[1]), "rst");
  EXPECT_TRUE(ParseRules("").value().empty());
}

TEST(RuleFile, ErrorsNameTheLineAndNoRuleIsReturned) {
  absl::StatusOr<std::vector<Rule>> rules = ParseRules("drop\n# two\ndrop flags=SYNACK\n");
  ASSERT_FALSE(rules.ok());
  EXPECT_EQ(rules.status().message(),
            "line 3, col 12: unknown flag \"SYNACK\"; did you mean SYN+ACK?");
}

TEST(RuleFile, ReportsEveryBadLine) {
  absl::StatusOr<std::vector<Rule>> rules = ParseRules("dorp\nrst\ndrop nth=0\n");
  ASSERT_FALSE(rules.ok());
  EXPECT_EQ(rules.status().message(),
            "line 1, col 1: unknown action \"dorp\"; did you mean drop?\n"
            "line 3, col 10: nth counts matches from 1; nth=0 would never fire");
}

TEST(RuleFile, CapsTheNumberOfReportedErrors) {
  std::string file;
  for (int i = 0; i < 25; ++i) file += "bogus\n";
  absl::StatusOr<std::vector<Rule>> rules = ParseRules(file);
  ASSERT_FALSE(rules.ok());
  EXPECT_THAT(std::string(rules.status().message()), HasSubstr("line 20, col 1"));
  EXPECT_THAT(std::string(rules.status().message()), ::testing::EndsWith("\n... and 5 more"));
}

// ---- Errors: one kind of mistake per test, with the exact text ----

TEST(RuleParser, UnknownFlagSuggestsSynAck) {
  EXPECT_EQ(ErrorOf("drop flags=SYNACK", 2),
            "rule 2, col 12: unknown flag \"SYNACK\"; did you mean SYN+ACK?");
  EXPECT_EQ(ErrorOf("drop has=fin-ack"),
            "rule 1, col 10: unknown flag \"fin-ack\"; did you mean FIN+ACK?");
}

TEST(RuleParser, UnknownFlagInAListSuggestsTheNearestName) {
  EXPECT_EQ(ErrorOf("drop has=SYN+AKC"), "rule 1, col 14: unknown flag \"AKC\"; did you mean ACK?");
  EXPECT_EQ(ErrorOf("set flags=SYM"), "rule 1, col 11: unknown flag \"SYM\"; did you mean SYN?");
}

TEST(RuleParser, UnknownFlagListsTheNames) {
  EXPECT_EQ(ErrorOf("drop flags=XMAS"),
            "rule 1, col 12: unknown flag \"XMAS\"; expected FIN, SYN, RST, PSH, ACK, URG, "
            "ECE or CWR, joined by '+'");
}

TEST(RuleParser, FlagListedTwice) {
  EXPECT_EQ(ErrorOf("drop flags=SYN+syn"), "rule 1, col 16: flag SYN is listed twice");
}

TEST(RuleParser, EmptyFlagName) {
  EXPECT_EQ(ErrorOf("drop flags=SYN++ACK"),
            "rule 1, col 16: expected a flag name on each side of '+'");
  EXPECT_EQ(ErrorOf("drop has="),
            "rule 1, col 10: has needs flag names joined by '+', e.g. SYN+ACK");
}

TEST(RuleParser, UnknownActionSuggestsTheNearest) {
  EXPECT_EQ(ErrorOf("dorp on=to-client"),
            "rule 1, col 1: unknown action \"dorp\"; did you mean drop?");
  EXPECT_EQ(ErrorOf("  blakhole"),
            "rule 1, col 3: unknown action \"blakhole\"; did you mean blackhole?");
}

TEST(RuleParser, UnknownActionKnowsCommonSynonyms) {
  EXPECT_EQ(ErrorOf("reset"), "rule 1, col 1: unknown action \"reset\"; did you mean rst?");
  EXPECT_EQ(ErrorOf("duplicate 2"),
            "rule 1, col 1: unknown action \"duplicate\"; did you mean dup?");
}

TEST(RuleParser, UnknownActionListsTheActions) {
  EXPECT_EQ(ErrorOf("explode"),
            "rule 1, col 1: unknown action \"explode\"; expected drop, delay, dup, reorder, "
            "rst, set, add, corrupt or blackhole");
}

TEST(RuleParser, RuleMustStartWithAnAction) {
  EXPECT_EQ(ErrorOf("on=to-client drop"),
            "rule 1, col 1: a rule starts with an action: drop, delay, dup, reorder, rst, "
            "set, add, corrupt or blackhole");
}

TEST(RuleParser, EmptyRule) {
  EXPECT_EQ(ErrorOf("   # nothing"),
            "rule 1, col 1: empty rule; expected an action: drop, delay, dup, reorder, rst, "
            "set, add, corrupt or blackhole");
}

TEST(RuleParser, UnknownMatcherSuggestsOn) {
  EXPECT_EQ(ErrorOf("drop hook=to-client"),
            "rule 1, col 6: unknown matcher \"hook\"; did you mean on?");
  EXPECT_EQ(ErrorOf("drop falgs=SYN"),
            "rule 1, col 6: unknown matcher \"falgs\"; did you mean flags?");
}

TEST(RuleParser, UnknownMatcherListsTheKeys) {
  EXPECT_EQ(ErrorOf("drop colour=red"),
            "rule 1, col 6: unknown matcher \"colour\"; expected on, conn, port, state, flags, "
            "has, len, idle, nth, every, after, count or p");
}

TEST(RuleParser, FieldUsedAsMatcher) {
  EXPECT_EQ(ErrorOf("drop seq=5"),
            "rule 1, col 6: unknown matcher \"seq\"; a field is changed by the action, e.g. "
            "set seq=VALUE or add seq=DELTA");
}

TEST(RuleParser, EmptyMatcherName) {
  EXPECT_EQ(ErrorOf("drop =5"), "rule 1, col 6: expected a matcher name before '='");
}

TEST(RuleParser, DuplicateMatcher) {
  EXPECT_EQ(ErrorOf("drop nth=1 nth=2"),
            "rule 1, col 12: nth is given twice (first at col 6); a rule takes each matcher "
            "once");
  EXPECT_EQ(ErrorOf("drop len>10 len<100"),
            "rule 1, col 13: len is given twice (first at col 6); a rule takes each matcher "
            "once");
}

TEST(RuleParser, UnknownHookSuggestsTheNearest) {
  EXPECT_EQ(ErrorOf("drop on=to-client,from-sever"),
            "rule 1, col 19: unknown hook \"from-sever\"; did you mean from-server?");
}

TEST(RuleParser, UnknownHookListsTheHooks) {
  EXPECT_EQ(ErrorOf("drop on=upstream"),
            "rule 1, col 9: unknown hook \"upstream\"; expected from-client, to-client, "
            "from-server or to-server");
}

TEST(RuleParser, AllIsNotAHook) {
  EXPECT_EQ(ErrorOf("drop on=all"),
            "rule 1, col 9: unknown hook \"all\"; leave out on= to match all four hooks");
}

TEST(RuleParser, HookListedTwiceOrEmpty) {
  EXPECT_EQ(ErrorOf("drop on=to-client,to-client"),
            "rule 1, col 19: hook to-client is listed twice");
  EXPECT_EQ(ErrorOf("drop on=to-client,"),
            "rule 1, col 19: expected a hook name on each side of ','");
  EXPECT_EQ(ErrorOf("drop on="),
            "rule 1, col 9: on needs hooks joined by ',': from-client, to-client, from-server "
            "or to-server");
}

TEST(RuleParser, UnknownStateSuggestsTheNearest) {
  EXPECT_EQ(ErrorOf("drop state=FIN-WAIT1"),
            "rule 1, col 12: unknown state \"FIN-WAIT1\"; did you mean FIN-WAIT-1?");
  EXPECT_EQ(ErrorOf("drop state=ESTABLISH"),
            "rule 1, col 12: unknown state \"ESTABLISH\"; did you mean ESTABLISHED?");
}

TEST(RuleParser, UnknownStateListsTheStates) {
  EXPECT_THAT(ErrorOf("drop state=OPEN"),
              StartsWith("rule 1, col 12: unknown state \"OPEN\"; expected CLOSED, LISTEN, "));
}

TEST(RuleParser, UnknownFieldSuggestsTheNearest) {
  EXPECT_EQ(ErrorOf("set window=0"), "rule 1, col 5: unknown field \"window\"; did you mean win?");
  EXPECT_EQ(ErrorOf("add sqe=1"), "rule 1, col 5: unknown field \"sqe\"; did you mean seq?");
}

TEST(RuleParser, UnknownFieldListsTheFields) {
  EXPECT_EQ(ErrorOf("set colour=1"),
            "rule 1, col 5: unknown field \"colour\"; expected seq, ack, win, urg, flags, ttl, "
            "mss or wscale");
}

TEST(RuleParser, SetNeedsFieldAndValue) {
  EXPECT_EQ(ErrorOf("set"), "rule 1, col 4: set needs FIELD=VALUE, e.g. set win=0");
  EXPECT_EQ(ErrorOf("set win 0"),
            "rule 1, col 5: set needs FIELD=VALUE, e.g. set win=0; got \"win\"");
  EXPECT_EQ(ErrorOf("add"), "rule 1, col 4: add needs FIELD=DELTA, e.g. add seq=-1");
  EXPECT_EQ(ErrorOf("set win="), "rule 1, col 9: set win takes a value from 0 to 65535, got \"\"");
}

TEST(RuleParser, SetValueOutOfRange) {
  EXPECT_EQ(ErrorOf("set ttl=256"), "rule 1, col 9: set ttl takes a value from 0 to 255");
  EXPECT_EQ(ErrorOf("set win=65536"), "rule 1, col 9: set win takes a value from 0 to 65535");
  EXPECT_EQ(ErrorOf("set seq=4294967296"),
            "rule 1, col 9: set seq takes a value from 0 to 4294967295");
  EXPECT_EQ(ErrorOf("set wscale=x"),
            "rule 1, col 12: set wscale takes a value from 0 to 255, got \"x\"");
}

TEST(RuleParser, NegativeSetSuggestsAdd) {
  EXPECT_EQ(ErrorOf("set seq=-1"),
            "rule 1, col 9: set seq takes a value from 0 to 4294967295; for a change relative "
            "to the segment write add seq=-1");
}

TEST(RuleParser, AddCannotChangeFlags) {
  EXPECT_EQ(ErrorOf("add flags=SYN"), "rule 1, col 5: add cannot change flags; use set flags=F+F");
}

TEST(RuleParser, AddOfZeroChangesNothing) {
  EXPECT_EQ(ErrorOf("add seq=-0"), "rule 1, col 9: add seq=0 changes nothing");
}

TEST(RuleParser, AddDeltaOutOfRange) {
  EXPECT_EQ(ErrorOf("add ttl=-256"), "rule 1, col 9: add ttl takes a delta from -255 to 255");
  EXPECT_EQ(ErrorOf("add mss=lots"),
            "rule 1, col 9: add mss takes a delta from -65535 to 65535, got \"lots\"");
}

TEST(RuleParser, NthZeroNeverFires) {
  EXPECT_EQ(ErrorOf("drop nth=0"),
            "rule 1, col 10: nth counts matches from 1; nth=0 would never fire");
}

TEST(RuleParser, EveryZeroNeverFires) {
  EXPECT_EQ(ErrorOf("drop every=0"),
            "rule 1, col 12: every=0 would never fire; every=1 fires on each match");
}

TEST(RuleParser, CountZeroNeverFires) {
  EXPECT_EQ(ErrorOf("drop count=0"),
            "rule 1, col 12: count=0 would never fire; count caps how often the rule fires");
}

TEST(RuleParser, ConnCountsFromOne) {
  EXPECT_EQ(ErrorOf("drop conn=0"), "rule 1, col 11: conn counts connections from 1");
}

TEST(RuleParser, PortOutOfRange) {
  EXPECT_EQ(ErrorOf("drop port=0"), "rule 1, col 11: port takes a value from 1 to 65535");
  EXPECT_EQ(ErrorOf("drop port=65536"), "rule 1, col 11: port is at most 65535");
}

TEST(RuleParser, CountNeedsAWholeNumber) {
  EXPECT_EQ(ErrorOf("drop nth=abc"), "rule 1, col 10: nth needs a whole number, got \"abc\"");
  EXPECT_EQ(ErrorOf("drop after="), "rule 1, col 12: after needs a number");
  EXPECT_EQ(ErrorOf("drop every=-1"), "rule 1, col 12: every needs a whole number, got \"-1\"");
  EXPECT_EQ(ErrorOf("drop count=18446744073709551616"),
            "rule 1, col 12: count is at most 18446744073709551615");
}

TEST(RuleParser, ProbabilityOutOfRange) {
  EXPECT_EQ(ErrorOf("drop p=1.5"), "rule 1, col 8: p is a probability from 0 to 1, got 1.5");
}

TEST(RuleParser, ProbabilityNotANumber) {
  EXPECT_EQ(ErrorOf("drop p=often"),
            "rule 1, col 8: p needs a probability from 0 to 1, e.g. p=0.1; got \"often\"");
  EXPECT_EQ(ErrorOf("drop p=-0.5"),
            "rule 1, col 8: p needs a probability from 0 to 1, e.g. p=0.1; got \"-0.5\"");
  EXPECT_EQ(ErrorOf("drop p=nan"),
            "rule 1, col 8: p needs a probability from 0 to 1, e.g. p=0.1; got \"nan\"");
}

TEST(RuleParser, ProbabilityAsPercentSuggestsFraction) {
  EXPECT_EQ(ErrorOf("drop p=10%"),
            "rule 1, col 8: p is a fraction from 0 to 1; for 10% write p=0.1");
}

TEST(RuleParser, DupCountOutOfRange) {
  EXPECT_EQ(ErrorOf("dup 0"),
            "rule 1, col 5: dup 0 would not duplicate anything; give 1 to 100 extra copies");
  EXPECT_EQ(ErrorOf("dup 101"), "rule 1, col 5: dup takes at most 100 extra copies");
  EXPECT_EQ(ErrorOf("dup twice"),
            "rule 1, col 5: dup takes a number of extra copies (1 to 100), got \"twice\"");
}

TEST(RuleParser, DelayWithoutDuration) {
  EXPECT_EQ(ErrorOf("delay on=to-client"),
            "rule 1, col 7: delay needs a duration, e.g. delay 250ms or delay 250ms~50ms");
  EXPECT_EQ(ErrorOf("delay   # soon"),
            "rule 1, col 6: delay needs a duration, e.g. delay 250ms or delay 250ms~50ms");
}

TEST(RuleParser, DurationWithoutUnit) {
  EXPECT_EQ(ErrorOf("delay 250"),
            "rule 1, col 10: duration \"250\" needs a unit right after the number: us, ms or s");
  EXPECT_EQ(ErrorOf("delay 2 s"),
            "rule 1, col 8: duration \"2\" needs a unit right after the number: us, ms or s");
}

TEST(RuleParser, DurationNotANumber) {
  EXPECT_EQ(ErrorOf("delay soon"),
            "rule 1, col 7: expected a duration such as 100us, 250ms or 1.5s, got \"soon\"");
}

TEST(RuleParser, UnknownDurationUnitSuggestsTheNearest) {
  EXPECT_EQ(ErrorOf("delay 2sec"), "rule 1, col 8: unknown duration unit \"sec\"; did you mean s?");
  EXPECT_EQ(ErrorOf("delay 5msec"),
            "rule 1, col 8: unknown duration unit \"msec\"; did you mean ms?");
  EXPECT_EQ(ErrorOf("delay 5d"),
            "rule 1, col 8: unknown duration unit \"d\"; expected us, ms or s");
}

TEST(RuleParser, NanosecondsAndMinutesAreNotUnits) {
  EXPECT_EQ(ErrorOf("delay 100ns"), "rule 1, col 10: durations go down to 1us; use us, ms or s");
  EXPECT_EQ(ErrorOf("delay 2m"),
            "rule 1, col 8: unknown duration unit \"m\"; write longer delays in seconds, e.g. "
            "120s (at most 3600s)");
}

TEST(RuleParser, DurationTooLongOrTooFine) {
  EXPECT_EQ(ErrorOf("delay 3601s"), "rule 1, col 7: delays are at most 3600s");
  EXPECT_EQ(ErrorOf("delay 3600.5s"), "rule 1, col 7: delays are at most 3600s");
  EXPECT_EQ(ErrorOf("delay 99999999999999999999999ms"), "rule 1, col 7: delays are at most 3600s");
  EXPECT_EQ(ErrorOf("delay 1.5us"), "rule 1, col 7: durations go down to 1us, no finer");
  EXPECT_EQ(ErrorOf("delay 0.0000001s"), "rule 1, col 7: durations go down to 1us, no finer");
}

TEST(RuleParser, JitterExceedsDelay) {
  EXPECT_EQ(ErrorOf("delay 10ms~20ms"),
            "rule 1, col 12: jitter 20ms exceeds the delay 10ms; the delay is drawn from "
            "[delay-jitter, delay+jitter] and cannot go below zero");
}

TEST(RuleParser, EmptyDelayBeforeJitter) {
  EXPECT_EQ(ErrorOf("delay ~5ms"),
            "rule 1, col 7: expected a duration before '~', e.g. 250ms~50ms");
}

TEST(RuleParser, MatcherNameWithoutValue) {
  EXPECT_EQ(ErrorOf("drop on=to-client flags"),
            "rule 1, col 19: expected a matcher KEY=VALUE, got \"flags\"; a matcher needs a "
            "value, e.g. flags=VALUE");
}

TEST(RuleParser, EmptyJitter) {
  EXPECT_EQ(ErrorOf("delay 10ms~"), "rule 1, col 12: expected a jitter after '~', e.g. 250ms~50ms");
}

TEST(RuleParser, CorruptUnknownTarget) {
  EXPECT_EQ(ErrorOf("corrupt foo"),
            "rule 1, col 9: unknown corrupt target \"foo\"; expected payload or checksum");
  EXPECT_EQ(ErrorOf("corrupt chksum"),
            "rule 1, col 9: unknown corrupt target \"chksum\"; did you mean checksum?");
}

TEST(RuleParser, LenMissingNumber) {
  EXPECT_EQ(ErrorOf("drop len>"), "rule 1, col 10: len> needs a number");
  EXPECT_EQ(ErrorOf("drop len=big"), "rule 1, col 10: len= needs a whole number, got \"big\"");
}

TEST(RuleParser, LenGreaterOrEqualIsNotAnOperator) {
  EXPECT_EQ(ErrorOf("drop len>=5"),
            "rule 1, col 9: len compares with =, < or >; for len>=N write len>N-1");
}

TEST(RuleParser, LenOutOfRange) {
  EXPECT_EQ(ErrorOf("drop len<0"),
            "rule 1, col 10: len<0 never matches: a payload is never shorter than 0");
  EXPECT_EQ(ErrorOf("drop len=65536"), "rule 1, col 10: len is at most 65535");
}

TEST(RuleParser, OnlyLenCompares) {
  EXPECT_EQ(ErrorOf("drop nth>3"), "rule 1, col 9: nth takes '=': only len compares with < or >");
}

TEST(RuleParser, DropTakesNoValue) {
  EXPECT_EQ(ErrorOf("drop 2"),
            "rule 1, col 6: drop takes no value, got \"2\"; matchers are KEY=VALUE");
  EXPECT_EQ(ErrorOf("blackhole now"),
            "rule 1, col 11: blackhole takes no value, got \"now\"; matchers are KEY=VALUE");
}

TEST(RuleParser, SecondActionIsAnError) {
  EXPECT_EQ(ErrorOf("drop rst"), "rule 1, col 6: a rule has one action, and rst is another");
  EXPECT_EQ(ErrorOf("dup 2 on=to-client delay"),
            "rule 1, col 20: a rule has one action, and delay is another");
}

TEST(RuleParser, BareWordGetsAMatcherHint) {
  EXPECT_EQ(ErrorOf("drop syn+ack"),
            "rule 1, col 6: expected a matcher KEY=VALUE, got \"syn+ack\"; did you mean "
            "has=SYN+ACK or flags=SYN+ACK?");
  EXPECT_EQ(ErrorOf("drop nth=1 to-client"),
            "rule 1, col 12: expected a matcher KEY=VALUE, got \"to-client\"; did you mean "
            "on=to-client?");
  EXPECT_EQ(ErrorOf("rst TIME-WAIT"),
            "rule 1, col 5: expected a matcher KEY=VALUE, got \"TIME-WAIT\"; did you mean "
            "state=TIME-WAIT?");
  EXPECT_EQ(ErrorOf("drop nth=1 whenever"),
            "rule 1, col 12: expected a matcher KEY=VALUE, got \"whenever\"");
}

TEST(RuleParser, NthWithEveryIsContradictory) {
  EXPECT_EQ(ErrorOf("drop every=2 nth=1"),
            "rule 1, col 14: nth and every do not combine: nth fires once, on the N-th match; "
            "every fires on each N-th");
}

TEST(RuleParser, NthWithAfterSuggestsASingleNth) {
  EXPECT_EQ(ErrorOf("drop nth=2 after=3"),
            "rule 1, col 12: nth and after do not combine: nth counts from the first match, "
            "so write nth=5 instead");
}

TEST(RuleParser, NthWithCountHasNoEffect) {
  EXPECT_EQ(ErrorOf("drop nth=2 count=1"),
            "rule 1, col 12: count has no effect with nth, which fires only once");
}

TEST(RuleParser, MultiLineRuleIsAnError) {
  EXPECT_EQ(ErrorOf("drop\nrst"),
            "rule 1, col 6: a rule is one line, but it goes on after the line break at col 5");
  EXPECT_EQ(ErrorOf("drop # comment\nrst"),
            "rule 1, col 16: a rule is one line, but it goes on after the line break at col 15");
}

TEST(RuleParser, UnprintableTextIsEscapedInMessages) {
  EXPECT_EQ(ErrorOf(absl::string_view("dr\0p", 4)),
            "rule 1, col 1: unknown action \"dr\\x00p\"; did you mean drop?");
}

// ---- ValidateRule, for rules built in code ----

TEST(RuleValidate, AcceptsWhatTheParserProduces) {
  for (const Example& e : kExamples) EXPECT_TRUE(ValidateRule(MustParse(e.line)).ok());
}

TEST(RuleValidate, RejectsWhatTheParserWouldReject) {
  Rule no_hooks;
  no_hooks.hooks = HookSet();
  EXPECT_EQ(ValidateRule(no_hooks).message(), "invalid rule: no hook; leave out on= for all four");

  Rule nth0;
  nth0.nth = 0;
  EXPECT_EQ(ValidateRule(nth0).message(),
            "invalid rule: nth counts matches from 1; nth=0 would never fire");

  Rule jitter;
  jitter.action = DelayAction{absl::Milliseconds(1), absl::Milliseconds(2)};
  EXPECT_THAT(std::string(ValidateRule(jitter).message()),
              HasSubstr("jitter 2ms exceeds the delay 1ms"));

  Rule fine;
  fine.action = DelayAction{absl::Nanoseconds(1500), {}};
  EXPECT_EQ(ValidateRule(fine).message(), "invalid rule: durations go down to 1us, no finer");

  Rule big_set;
  big_set.action = SetAction{Field::kTtl, 256};
  EXPECT_EQ(ValidateRule(big_set).message(), "invalid rule: set ttl takes a value from 0 to 255");

  Rule add_flags;
  add_flags.action = AddAction{Field::kFlags, 1};
  EXPECT_FALSE(ValidateRule(add_flags).ok());

  Rule p;
  p.probability = std::numeric_limits<double>::quiet_NaN();
  EXPECT_FALSE(ValidateRule(p).ok());

  Rule combo;
  combo.nth = 1;
  combo.every = 2;
  EXPECT_FALSE(ValidateRule(combo).ok());

  Rule dup0;
  dup0.action = DupAction{0};
  EXPECT_FALSE(ValidateRule(dup0).ok());
}

TEST(Hooks, NamesRoundTrip) {
  for (int i = 0; i < kHookCount; ++i) {
    const Hook h = static_cast<Hook>(i);
    EXPECT_EQ(ParseHookName(HookName(h)), h);
  }
  EXPECT_EQ(HookName(Hook::kFromClient), "from-client");
  EXPECT_EQ(HookName(Hook::kToServer), "to-server");
  EXPECT_EQ(ParseHookName("sideways"), std::nullopt);
  EXPECT_EQ(HookSet::All().ToString(), "from-client,to-client,from-server,to-server");
  EXPECT_EQ(HookSet().ToString(), "");
}

// ---- The edges of the grammar's numbers, durations and names ----

TEST(RuleEdges, SuggestionsStayWithinAThirdOfTheName) {
  const std::string actions =
      "expected drop, delay, dup, reorder, rst, set, add, corrupt or blackhole";
  // Far from every action, however the edit distance is counted.
  EXPECT_EQ(ErrorOf("zz"), "rule 1, col 1: unknown action \"zz\"; " + actions);
  EXPECT_EQ(ErrorOf("k"), "rule 1, col 1: unknown action \"k\"; " + actions);
  EXPECT_EQ(ErrorOf("dropxxxx"), "rule 1, col 1: unknown action \"dropxxxx\"; " + actions);
  // Two transpositions and two substitutions: 4 edits, one more than a third of "blackhole".
  EXPECT_EQ(ErrorOf("lbcakhoxx"), "rule 1, col 1: unknown action \"lbcakhoxx\"; " + actions);
  // Two edits from the 7 letters of "corrupt": exactly a third, rounded down.
  EXPECT_EQ(ErrorOf("corxupx"), "rule 1, col 1: unknown action \"corxupx\"; did you mean corrupt?");
  // One transposition is one edit.
  EXPECT_EQ(ErrorOf("dorp"), "rule 1, col 1: unknown action \"dorp\"; did you mean drop?");
  // Equally near to rst and set: the first in the grammar's order wins.
  EXPECT_EQ(ErrorOf("sst"), "rule 1, col 1: unknown action \"sst\"; did you mean rst?");
  EXPECT_EQ(ClosestWord("sst", {"set", "rst"}), "set");
}

TEST(RuleEdges, ShortNamesTakeOneEditButNotAllOfThem) {
  // A two-letter unit is one edit away (a third of it, at least 1).
  EXPECT_EQ(ErrorOf("delay 5mx"), "rule 1, col 8: unknown duration unit \"mx\"; did you mean ms?");
  // A one-letter name is never suggested for another letter: that would replace all of it.
  EXPECT_EQ(ErrorOf("drop x=1"),
            "rule 1, col 6: unknown matcher \"x\"; expected on, conn, port, state, flags, has, "
            "len, idle, nth, every, after, count or p");
  EXPECT_EQ(ClosestWord("x", {"p"}), "");
  EXPECT_EQ(ClosestWord("xy", {"p"}), "");
}

TEST(RuleEdges, UnknownStateListsEveryState) {
  EXPECT_EQ(ErrorOf("drop state=FOO"),
            "rule 1, col 12: unknown state \"FOO\"; expected CLOSED, LISTEN, SYN-SENT, "
            "SYN-RECEIVED, ESTABLISHED, FIN-WAIT-1, FIN-WAIT-2, CLOSE-WAIT, CLOSING, LAST-ACK "
            "or TIME-WAIT");
}

TEST(RuleEdges, AnOverlongNumberWithALetterIsNoNumber) {
  EXPECT_EQ(ErrorOf("drop count=99999999999999999999x"),
            "rule 1, col 12: count needs a whole number, got \"99999999999999999999x\"");
  EXPECT_EQ(ErrorOf("drop count=99999999999999999999"),
            "rule 1, col 12: count is at most 18446744073709551615");
  EXPECT_EQ(MustParse("drop count=18446744073709551615").count,
            std::numeric_limits<uint64_t>::max());
}

TEST(RuleEdges, AProbabilityIsOneNumberAndNothingAfterIt) {
  EXPECT_EQ(ErrorOf("drop p=0.5.5"),
            "rule 1, col 8: p needs a probability from 0 to 1, e.g. p=0.1; got \"0.5.5\"");
  EXPECT_EQ(ErrorOf("drop p=1e"),
            "rule 1, col 8: p needs a probability from 0 to 1, e.g. p=0.1; got \"1e\"");
  EXPECT_EQ(MustParse("drop p=1").probability, 1.0);
  EXPECT_EQ(MustParse("drop p=0").probability, 0.0);
  EXPECT_EQ(MustParse("drop p=5e-1").probability, 0.5);
  EXPECT_EQ(MustParse("drop p=.25").probability, 0.25);
}

// A rule is the text it is given, not what follows it in memory.
TEST(RuleEdges, ParsingStopsAtTheEndOfTheText) {
  const absl::string_view line = "drop p=0.25125 nth=3";
  EXPECT_EQ(MustParse(line.substr(0, 11)).probability, 0.25);
  EXPECT_EQ(ErrorOf(line.substr(0, 19)), "rule 1, col 20: nth needs a number");
}

TEST(RuleEdges, JitterMayEqualTheDelay) {
  EXPECT_EQ(MustParse("delay 100ms~100ms").action,
            Action(DelayAction{absl::Milliseconds(100), absl::Milliseconds(100)}));
  EXPECT_EQ(ErrorOf("delay 100ms~100001us"),
            "rule 1, col 13: jitter 100.001ms exceeds the delay 100ms; the delay is drawn from "
            "[delay-jitter, delay+jitter] and cannot go below zero");
}

TEST(RuleEdges, DurationsAtTheirLimits) {
  EXPECT_EQ(MustParse("delay 3600s").action, Action(DelayAction{absl::Seconds(3600), {}}));
  EXPECT_EQ(MustParse("delay 3600000ms").action, Action(DelayAction{absl::Seconds(3600), {}}));
  EXPECT_EQ(ErrorOf("delay 3600.000001s"), "rule 1, col 7: delays are at most 3600s");
  EXPECT_EQ(ErrorOf("delay 3601s"), "rule 1, col 7: delays are at most 3600s");
  EXPECT_EQ(MustParse("delay 0.000001s").action, Action(DelayAction{absl::Microseconds(1), {}}));
  EXPECT_EQ(MustParse("delay 1.500ms").action, Action(DelayAction{absl::Microseconds(1500), {}}));
  EXPECT_EQ(ErrorOf("delay 0.0000001s"), "rule 1, col 7: durations go down to 1us, no finer");
  EXPECT_EQ(ErrorOf("delay 1.5us"), "rule 1, col 7: durations go down to 1us, no finer");
  EXPECT_EQ(MustParse("delay 0s").action, Action(DelayAction{}));
}

TEST(RuleEdges, NthAfterSuggestsTheSumWhenItFits) {
  EXPECT_EQ(ErrorOf("drop nth=5 after=3"),
            "rule 1, col 12: nth and after do not combine: nth counts from the first match, so "
            "write nth=8 instead");
  EXPECT_EQ(ErrorOf("drop nth=1 after=18446744073709551614"),
            "rule 1, col 12: nth and after do not combine: nth counts from the first match, so "
            "write nth=18446744073709551615 instead");
  EXPECT_EQ(ErrorOf("drop nth=2 after=18446744073709551614"),
            "rule 1, col 12: nth and after do not combine: nth counts from the first match");
}

TEST(RuleEdges, NoneStandsAloneOutsideAList) {
  EXPECT_EQ(ErrorOf("set flags=SYN+none"),
            "rule 1, col 15: flag \"none\" means no flags and stands alone; leave it out of a "
            "list joined by '+'");
  EXPECT_EQ(ErrorOf("drop has=none+ACK"),
            "rule 1, col 10: flag \"none\" means no flags and stands alone; leave it out of a "
            "list joined by '+'");
  // A bare word with "none" in it gets no flags hint.
  EXPECT_EQ(ErrorOf("drop SYN+none"),
            "rule 1, col 6: drop takes no value, got \"SYN+none\"; matchers are KEY=VALUE");
  EXPECT_EQ(ErrorOf("drop SYN+ACK"),
            "rule 1, col 6: expected a matcher KEY=VALUE, got \"SYN+ACK\"; did you mean "
            "has=SYN+ACK or flags=SYN+ACK?");
  EXPECT_EQ(MustParse("set flags=none").action, Action(SetAction{Field::kFlags, 0}));
}

TEST(RuleFile, TwentyErrorsAreAllReportedWithoutATail) {
  std::string file;
  for (int i = 0; i < 20; ++i) file += "bogus\n";
  absl::StatusOr<std::vector<Rule>> rules = ParseRules(file);
  ASSERT_FALSE(rules.ok());
  const std::string message(rules.status().message());
  EXPECT_THAT(message, ::testing::EndsWith("line 20, col 1: unknown action \"bogus\"; expected "
                                           "drop, delay, dup, reorder, rst, set, add, corrupt "
                                           "or blackhole"));
  EXPECT_THAT(message, ::testing::Not(HasSubstr("more")));
}

TEST(RuleNames, OneOfJoinsWithCommasAndOr) {
  EXPECT_EQ(OneOf({}), "");
  EXPECT_EQ(OneOf({"a"}), "a");
  EXPECT_EQ(OneOf({"a", "b"}), "a or b");
  EXPECT_EQ(OneOf({"a", "b", "c"}), "a, b or c");
}

TEST(RuleNames, OutOfRangeEnumsHaveNoName) {
  EXPECT_EQ(FieldName(static_cast<Field>(kFieldCount)), "?");
  EXPECT_EQ(FieldMax(static_cast<Field>(kFieldCount)), 0u);
  EXPECT_EQ(ActionName(static_cast<ActionKind>(kActionKindCount)), "?");
  EXPECT_EQ(FieldName(Field::kWscale), "wscale");
  EXPECT_EQ(ActionName(ActionKind::kBlackhole), "blackhole");
}

TEST(RuleDurations, PrintInTheLargestUnitTheyReach) {
  EXPECT_EQ(DurationToString(absl::Seconds(1)), "1s");
  EXPECT_EQ(DurationToString(absl::Microseconds(999999)), "999.999ms");
  EXPECT_EQ(DurationToString(absl::Milliseconds(1)), "1ms");
  EXPECT_EQ(DurationToString(absl::Microseconds(999)), "999us");
  EXPECT_EQ(DurationToString(absl::Milliseconds(-5)), "-5ms");
  EXPECT_EQ(DurationToString(absl::InfiniteDuration()), "inf");
  EXPECT_EQ(DurationToString(absl::Nanoseconds(1500)), "1.5us");
}

TEST(RuleValidate, RejectsValuesOutsideTheirEnumsAndRanges) {
  Rule set;
  set.action = SetAction{static_cast<Field>(kFieldCount), 0};
  EXPECT_EQ(ValidateRule(set).message(), "invalid rule: unknown field");
  Rule add;
  add.action = AddAction{static_cast<Field>(kFieldCount), 1};
  EXPECT_EQ(ValidateRule(add).message(), "invalid rule: unknown field");
  Rule state;
  state.state = static_cast<TcpState>(stack::kTcpStateCount);
  EXPECT_EQ(ValidateRule(state).message(), "invalid rule: unknown state");
  state.state = TcpState::kTimeWait;
  EXPECT_TRUE(ValidateRule(state).ok());

  Rule port;
  port.port = 0;
  EXPECT_EQ(ValidateRule(port).message(), "invalid rule: port takes a value from 1 to 65535");
  port.port = 1;
  EXPECT_TRUE(ValidateRule(port).ok());

  Rule p;
  p.probability = -0.25;
  EXPECT_EQ(ValidateRule(p).message(), "invalid rule: p is a probability from 0 to 1, got -0.25");
  p.probability = 1.5;
  EXPECT_EQ(ValidateRule(p).message(), "invalid rule: p is a probability from 0 to 1, got 1.5");
  p.probability = 1;
  EXPECT_TRUE(ValidateRule(p).ok());

  Rule jitter;
  jitter.action = DelayAction{absl::Milliseconds(2), absl::Milliseconds(2)};
  EXPECT_TRUE(ValidateRule(jitter).ok());
}

}  // namespace
}  // namespace wrench::proxy
