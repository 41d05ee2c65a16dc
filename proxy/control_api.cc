// The control API's server (control_api.h).
#include "proxy/control_api.h"

namespace wrench::proxy {

absl::StatusOr<std::unique_ptr<ControlApi>> ControlApi::Start(boost::asio::io_context&, const std::string&,
                                                              Service&) {
  return absl::UnimplementedError("--api is not available yet");
}

}  // namespace wrench::proxy
