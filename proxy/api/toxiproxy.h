// Toxiproxy 2.x's model on top of wrench: named proxies and their toxics,
// as the control API (control_api.cc) serves them with Toxiproxy's paths, JSON and
// errors. A proxy whose listen address is inside the TUN subnet is a runtime mapping
// of the TUN man in the middle, so segment toxics (wrench rules scoped to it) act on
// its connections; any other listen address is a kernel socket (stream_relay.h), and
// for a non-loopback one nftables also DNATs arriving connections to a TUN front
// (dnat.h), where segment toxics act. Stream toxics (latency, bandwidth, ...) work on
// all of them, as stream_toxics.h.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include <boost/asio/ip/address.hpp>

#include "nlohmann/json.hpp"
#include "proxy/fault/stream_toxics.h"
#include "proxy/relay/proxy.h"

namespace wrench::proxy {

class ApiHost;
class StreamRelay;
struct Mapping;

// Errors carry Toxiproxy's status through absl codes: InvalidArgument 400, NotFound
// 404, AlreadyExists 409, anything else 500; the message is Toxiproxy's text.
int HttpStatusOf(const absl::Status& s);

class ToxiproxyCollection {
 public:
  using Json = nlohmann::ordered_json;  // Toxiproxy's field order

  explicit ToxiproxyCollection(ApiHost& service);
  ~ToxiproxyCollection();  // stops the socket proxies; the Service is not touched
  ToxiproxyCollection(const ToxiproxyCollection&) = delete;
  ToxiproxyCollection& operator=(const ToxiproxyCollection&) = delete;

  // The endpoints, one each; bodies are Toxiproxy's JSON.
  Json Proxies() const;                                    // GET /proxies
  absl::StatusOr<Json> CreateProxy(const std::string& body);  // POST /proxies (201)
  // POST /populate (201): {"proxies": [...]}; on error the error's fields and
  // "proxies": null, as Toxiproxy.
  absl::StatusOr<Json> Populate(const std::string& body);
  absl::StatusOr<Json> GetProxy(const std::string& name) const;
  absl::StatusOr<Json> UpdateProxy(const std::string& name, const std::string& body);
  absl::Status DeleteProxy(const std::string& name);
  absl::StatusOr<Json> Toxics(const std::string& proxy) const;
  absl::StatusOr<Json> CreateToxic(const std::string& proxy, const std::string& body);  // 200
  absl::StatusOr<Json> GetToxic(const std::string& proxy, const std::string& toxic) const;
  absl::StatusOr<Json> UpdateToxic(const std::string& proxy, const std::string& toxic,
                                   const std::string& body);
  absl::Status DeleteToxic(const std::string& proxy, const std::string& toxic);
  absl::Status Reset();  // POST /reset: every proxy enabled, every toxic removed
  // GET /metrics: Toxiproxy's proxy byte counters in Prometheus text.
  std::string Metrics() const;

  // For the native API: which proxy and toxic a scope or a rule belongs to.
  std::string ProxyOfScope(uint64_t scope) const;
  std::string ToxicOfRule(int rule_id) const;
  // The socket proxies' connections, for GET /connections: "NAME/ID", the proxy's
  // name, and the connection as the TUN proxy's are described.
  struct SocketConnection {
    std::string id, proxy;
    ConnectionInfo info;
  };
  std::vector<SocketConnection> SocketConnections() const;

 private:
  struct Toxic;
  struct Proxy;
  absl::Status Start(Proxy& p);
  // For a listen address outside the TUN subnet: DNAT its connections to a front in
  // the TUN (proxy/os/dnat.h), mapped with `upstream`'s fields; on failure, logs why and
  // leaves the proxy to its kernel socket.
  void StartDnat(Proxy& p, const boost::asio::ip::address& listen, uint16_t port,
                 const Mapping& upstream);
  void Stop(Proxy& p);
  absl::StatusOr<std::unique_ptr<Proxy>> MakeProxy(const Json& in, bool enabled_default);
  absl::Status ApplyToxic(Proxy& p, Toxic& t);
  void UnapplyToxic(Proxy& p, Toxic& t);
  void Touch(Proxy& p);
  Json ProxyJson(const Proxy& p) const;
  Json ToxicJson(const Toxic& t) const;
  Proxy* Find(const std::string& name) const;
  // Find, or Toxiproxy's "proxy not found".
  absl::StatusOr<Proxy*> Lookup(const std::string& name) const;

  ApiHost& service_;
  std::shared_ptr<std::mt19937_64> rng_;
  uint64_t next_scope_ = 0;
  uint64_t next_toxic_id_ = 0;
  std::map<std::string, std::unique_ptr<Proxy>> proxies_;  // by name: GET /proxies's order
};

}  // namespace wrench::proxy
