// The control API's proxies on addresses outside the TUN subnet (0.0.0.0:PORT,
// localhost:PORT, as Toxiproxy users write them): a kernel listening socket and, per
// connection, a kernel socket to the upstream, with the stream toxics between them
// (stream_toxics.h), moved by the relay loop (relay_loop.h) between two kernel socket
// legs. The kernel owns both TCP endpoints here, so no segment faults.
#pragma once

#include <boost/asio.hpp>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proxy/fault/stream_toxics.h"
#include "proxy/os/accept_loop.h"
#include "proxy/os/host_lookup.h"
#include "proxy/relay/kernel_socket_leg.h"

namespace wrench::proxy {

class StreamRelay : private KernelSocketLeg::Owner {
 public:
  using ToxicsFactory = std::function<std::unique_ptr<ConnectionToxics>(stack::Instant)>;
  struct Stats {
    uint64_t connections = 0;  // accepted
    uint64_t refused = 0;      // upstream lookup or connect failed: the client got RST
    uint64_t resets = 0;       // ended by a reset (either peer's, or reset_peer)
    // Toxiproxy's metrics: received from the source, sent to the destination.
    uint64_t received_up = 0, sent_up = 0;      // client -> server
    uint64_t received_down = 0, sent_down = 0;  // server -> client
  };
  struct ConnectionInfo {
    uint64_t id = 0;
    std::string client, upstream;
    std::string state;  // "connecting", "open", "client closed", "server closed"
    uint64_t bytes_to_server = 0, bytes_to_client = 0;
  };

  // Where connections go: a host (an IP literal or a name, looked up per connection
  // through HostResolver) and a port.
  struct Upstream {
    std::string host;
    uint16_t port = 0;
  };
  // Listens on `listen` at once (a busy port is the caller's error to report). Each
  // accepted connection looks `upstream` up, dials it and starts with `toxics(now)`;
  // a name that does not resolve is treated as a refused upstream (the client gets
  // RST), and `log` says why.
  static absl::StatusOr<std::unique_ptr<StreamRelay>> Start(
      boost::asio::io_context& io, const boost::asio::ip::tcp::endpoint& listen, Upstream upstream,
      ToxicsFactory toxics, std::function<void(const std::string&)> log = {});
  ~StreamRelay();
  StreamRelay(const StreamRelay&) = delete;
  StreamRelay& operator=(const StreamRelay&) = delete;

  boost::asio::ip::tcp::endpoint local_endpoint() const;
  // Stops listening and closes every connection (FIN both ways, as Toxiproxy does).
  void Stop();
  // Services every connection now: a changed toxic takes effect without traffic.
  void Refresh();
  const Stats& stats() const { return *stats_; }
  std::vector<ConnectionInfo> Connections() const;

 private:
  struct Conn;
  StreamRelay(boost::asio::io_context& io, Upstream upstream, ToxicsFactory toxics,
              std::function<void(const std::string&)> log);
  void OnAccepted(boost::asio::ip::tcp::socket socket);
  void Connect(const std::shared_ptr<Conn>& c);
  void OnSocketCompletion(uint64_t conn, const KernelSocketLeg& leg,
                          const KernelSocketLeg::Completion& done) override;
  void OnTimer(uint64_t conn);
  // Runs the relay loop for the connection and ends it when both sides closed, a
  // side reset, or a toxic closed it.
  void Pump(const std::shared_ptr<Conn>& c);
  void End(const std::shared_ptr<Conn>& c, bool reset);

  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  Upstream upstream_;
  std::string upstream_text_;  // HOST:PORT
  ToxicsFactory toxics_;
  std::function<void(const std::string&)> log_;
  HostResolver resolver_;
  // Shared with pending completions, which may run after the relay is gone.
  std::shared_ptr<Stats> stats_ = std::make_shared<Stats>();
  std::shared_ptr<bool> stopped_ = std::make_shared<bool>(false);
  uint64_t next_id_ = 0;
  std::map<uint64_t, std::shared_ptr<Conn>> conns_;
  std::vector<uint8_t> scratch_ = std::vector<uint8_t>(64 * 1024);  // the relay loop's
  AcceptLoop accept_;  // last: its handlers use the members above
};

}  // namespace wrench::proxy
