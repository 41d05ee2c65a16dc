// wrench's version: `wrench --version`, the control API's GET /version, summaries.
#pragma once

namespace wrench::proxy {

inline constexpr const char* kVersion = "0.1.0";

}  // namespace wrench::proxy
