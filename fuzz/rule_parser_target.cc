// rule_parser: any text through the rule language (proxy/fault/rule.h) and the names it
// is built from. What parses prints back canonically and re-parses equal; what
// does not parse says where (column) and why.
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "fuzz/check.h"
#include "fuzz/targets.h"
#include "proxy/fault/rule.h"
#include "stack/ip.h"
#include "stack/tcp_state.h"
#include "stack/tcp_wire.h"

namespace wrench::fuzz {
namespace {

void CheckRule(const proxy::Rule& rule, absl::string_view source) {
  WRENCH_CHECK(proxy::ValidateRule(rule).ok())
      << "parsed rule fails ValidateRule: " << proxy::ValidateRule(rule)
      << "\n    text: " << source;
  std::string canonical = proxy::ToString(rule);
  auto again = proxy::ParseRule(canonical);
  WRENCH_CHECK(again.ok()) << "canonical text does not parse: " << again.status()
                           << "\n    text:      " << source << "\n    canonical: " << canonical;
  WRENCH_CHECK(*again == rule) << "canonical text parses to another rule\n    text:      " << source
                               << "\n    canonical: " << canonical
                               << "\n    re-parsed: " << proxy::ToString(*again);
  WRENCH_CHECK(proxy::ToString(*again) == canonical)
      << "canonical text is not stable: " << canonical;
}

// The smaller parsers the rule language and the command line share.
void CheckNames(absl::string_view text) {
  if (auto flags = stack::TcpFlags::Parse(text)) {
    auto back = stack::TcpFlags::Parse(flags->ToString());
    WRENCH_CHECK(back && *back == *flags) << "flags " << flags->ToString() << " do not parse back";
  }
  if (auto state = stack::ParseStateName(text)) {
    WRENCH_CHECK(stack::ParseStateName(stack::StateName(*state)) == state);
  }
  if (auto hook = proxy::ParseHookName(text)) {
    WRENCH_CHECK(proxy::ParseHookName(proxy::HookName(*hook)) == hook);
  }
  if (auto addr = stack::IpAddress::Parse(text)) {
    auto back = stack::IpAddress::Parse(addr->ToString());
    WRENCH_CHECK(back && *back == *addr) << "address " << text << " prints as " << addr->ToString()
                                         << ", which does not parse back";
  }
}

}  // namespace

int FuzzRuleParser(const uint8_t* data, size_t size) {
  absl::string_view text(reinterpret_cast<const char*>(data), size);
  // One rule, as on the command line.
  auto rule = proxy::ParseRule(text);
  if (rule.ok()) {
    CheckRule(*rule, text);
  } else {
    WRENCH_CHECK(absl::StartsWith(rule.status().message(), "rule 1, col "))
        << "error without a column: " << rule.status() << "\n    text: " << text;
  }
  // A rule file: every line's rule round-trips on its own.
  auto rules = proxy::ParseRules(text);
  if (rules.ok()) {
    for (const proxy::Rule& r : *rules) CheckRule(r, text);
  } else {
    WRENCH_CHECK(absl::StartsWith(rules.status().message(), "line "))
        << "file error without a line: " << rules.status();
  }
  if (size <= 64) CheckNames(text);
  return 0;
}

}  // namespace wrench::fuzz
