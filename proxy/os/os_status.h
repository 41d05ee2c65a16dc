// absl::Status from a failed system call: the code mapped from errno, the message
// "<what>: <strerror>", and the errno itself as a payload, so callers and tests can
// tell ECONNREFUSED from ECONNRESET without parsing text.
#pragma once

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace wrench::proxy {

inline constexpr char kErrnoPayloadUrl[] = "wrench/errno";

// `hint`, when given, follows the errno text: "what: Operation not permitted (hint)".
inline absl::Status ErrnoStatus(int err, absl::string_view what, absl::string_view hint = {}) {
  std::string msg = absl::StrCat(what, ": ", std::strerror(err));
  if (!hint.empty()) absl::StrAppend(&msg, " (", hint, ")");
  // Not absl::ErrnoToStatus: it appends the errno text a second time.
  absl::Status s(absl::ErrnoToStatusCode(err), msg);
  s.SetPayload(kErrnoPayloadUrl, absl::Cord(std::to_string(err)));
  return s;
}

// `s` with another code, message and payloads kept: for an errno whose usual
// mapping misleads (EBUSY for a taken name is AlreadyExists, not FailedPrecondition).
inline absl::Status WithCode(const absl::Status& s, absl::StatusCode code) {
  absl::Status out(code, s.message());
  s.ForEachPayload([&](absl::string_view url, const absl::Cord& p) { out.SetPayload(url, p); });
  return out;
}

// The errno behind `s`, or 0 when it carries none.
inline int ErrnoOf(const absl::Status& s) {
  const auto p = s.GetPayload(kErrnoPayloadUrl);  // an absl::optional<absl::Cord>
  return p ? std::atoi(std::string(*p).c_str()) : 0;
}

}  // namespace wrench::proxy
