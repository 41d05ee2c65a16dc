// The control API's routes (control_api.h): wrench's rules, connections and counters
// next to Toxiproxy's proxies and toxics, with one error shape for both, Toxiproxy's
// {"error": "...", "status": N}.
#include "proxy/api/control_api.h"

#include <boost/asio.hpp>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "nlohmann/json.hpp"
#include "proxy/api/toxiproxy.h"
#include "proxy/api/api_host.h"
#include "proxy/os/address.h"
#include "proxy/os/host_lookup.h"

namespace wrench::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;
using Json = nlohmann::ordered_json;

namespace {

HttpResponse JsonReply(int status, const Json& j) {
  HttpResponse r;
  r.status = status;
  r.body = j.dump();
  return r;
}

// Toxiproxy writes errors with Go's http.Error: the JSON and a newline.
HttpResponse ErrorReply(int status, absl::string_view message) {
  HttpResponse r;
  r.status = status;
  Json j;
  j["error"] = std::string(message);
  j["status"] = status;
  r.body = j.dump() + "\n";
  return r;
}

HttpResponse ErrorReply(const absl::Status& s) { return ErrorReply(HttpStatusOf(s), s.message()); }

HttpResponse NoContent() {
  HttpResponse r;
  r.status = 204;
  return r;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string PercentDecode(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 && HexValue(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

class ControlApiImpl : public ControlApi {
 public:
  explicit ControlApiImpl(ApiHost& service) : service_(service), toxiproxy_(service) {}

  absl::Status Listen(asio::io_context& io, const tcp::endpoint& at) {
    auto server = HttpServer::Start(io, at, [this](const HttpRequest& r) { return Handle(r); });
    if (!server.ok()) return server.status();
    server_ = std::move(*server);
    return absl::OkStatus();
  }

  uint16_t port() const override { return server_ ? server_->local_endpoint().port() : 0; }

  void Stop() override {
    if (server_) server_->Stop();
  }

  HttpResponse Handle(const HttpRequest& req) override {
    // As Toxiproxy: a browser's request is refused, so a web page cannot reach the
    // API on localhost (DNS rebinding, cross-site POSTs).
    if (absl::StartsWith(req.user_agent, "Mozilla/"))
      return ErrorReply(403, "User agent not allowed");
    absl::string_view path = req.target;
    path = path.substr(0, path.find('?'));
    std::vector<std::string> parts;
    for (absl::string_view p : absl::StrSplit(path, '/', absl::SkipEmpty()))
      parts.push_back(PercentDecode(p));
    return Route(req, parts);
  }

 private:
  // 405 for a known path and an unknown method, with the methods it takes.
  static HttpResponse MethodNotAllowed(const HttpRequest& req, absl::string_view allow) {
    HttpResponse r =
        ErrorReply(405, absl::StrCat("method ", req.method, " not allowed here; allowed: ", allow));
    r.headers.emplace_back("Allow", std::string(allow));
    return r;
  }

  HttpResponse Route(const HttpRequest& req, const std::vector<std::string>& p) {
    const std::string& m = req.method;
    const bool get = m == "GET", post = m == "POST", del = m == "DELETE", patch = m == "PATCH";
    const size_t n = p.size();
    auto reply = [](int status, const absl::StatusOr<Json>& j) {
      return j.ok() ? JsonReply(status, *j) : ErrorReply(j.status());
    };
    auto done = [](const absl::Status& s) { return s.ok() ? NoContent() : ErrorReply(s); };
    if (n == 0) return get ? Index() : MethodNotAllowed(req, "GET");
    const std::string& top = p[0];
    // ---- Toxiproxy ----
    if (top == "version" && n == 1) {
      if (!get) return MethodNotAllowed(req, "GET");
      HttpResponse r;
      r.content_type = "application/json;charset=utf-8";
      r.body = absl::StrCat("{\"version\": \"", kToxiproxyApiVersion, "\", \"wrench\": \"",
                            service_.version(), "\"}\n");
      return r;
    }
    if (top == "metrics" && n == 1) {
      if (!get) return MethodNotAllowed(req, "GET");
      HttpResponse r;
      r.content_type = "text/plain; version=0.0.4; charset=utf-8";
      r.body = toxiproxy_.Metrics() + WrenchMetrics();
      return r;
    }
    if (top == "reset" && n == 1)
      return post ? done(toxiproxy_.Reset()) : MethodNotAllowed(req, "POST");
    if (top == "populate" && n == 1) {
      if (!post) return MethodNotAllowed(req, "POST");
      auto j = toxiproxy_.Populate(req.body);
      if (j.ok()) return JsonReply(201, *j);
      // Toxiproxy embeds the error in the populate answer: error, status, proxies.
      Json e;
      e["error"] = std::string(j.status().message());
      e["status"] = HttpStatusOf(j.status());
      e["proxies"] = nullptr;
      return JsonReply(HttpStatusOf(j.status()), e);
    }
    if (top == "proxies") {
      if (n == 1) {
        if (get) return JsonReply(200, toxiproxy_.Proxies());
        if (post) return reply(201, toxiproxy_.CreateProxy(req.body));
        return MethodNotAllowed(req, "GET, POST");
      }
      const std::string& name = p[1];
      if (n == 2) {
        if (get) return reply(200, toxiproxy_.GetProxy(name));
        if (post || patch) return reply(200, toxiproxy_.UpdateProxy(name, req.body));
        if (del) return done(toxiproxy_.DeleteProxy(name));
        return MethodNotAllowed(req, "GET, POST, PATCH, DELETE");
      }
      if (p[2] == "toxics" && n == 3) {
        if (get) return reply(200, toxiproxy_.Toxics(name));
        if (post) return reply(200, toxiproxy_.CreateToxic(name, req.body));
        return MethodNotAllowed(req, "GET, POST");
      }
      if (p[2] == "toxics" && n == 4) {
        if (get) return reply(200, toxiproxy_.GetToxic(name, p[3]));
        if (post || patch) return reply(200, toxiproxy_.UpdateToxic(name, p[3], req.body));
        if (del) return done(toxiproxy_.DeleteToxic(name, p[3]));
        return MethodNotAllowed(req, "GET, POST, PATCH, DELETE");
      }
    }
    // ---- wrench ----
    if (top == "rules" && n == 1) {
      if (get) return JsonReply(200, RulesJson());
      if (post) return AddRules(req.body);
      return MethodNotAllowed(req, "GET, POST");
    }
    if (top == "rules" && n == 2) {
      if (del) return DeleteRule(p[1]);
      return MethodNotAllowed(req, "DELETE");
    }
    if (top == "connections" && n == 1)
      return get ? JsonReply(200, ConnectionsJson()) : MethodNotAllowed(req, "GET");
    if (top == "counters" && n == 1)
      return get ? JsonReply(200, CountersJson()) : MethodNotAllowed(req, "GET");
    return ErrorReply(404, absl::StrCat("no such endpoint: ", req.method, " ", req.target,
                                        " (GET / lists them)"));
  }

  HttpResponse Index() const {
    Json j;
    j["wrench"] = service_.version();
    j["toxiproxy_api"] = kToxiproxyApiVersion;
    j["endpoints"] = {"GET /rules",
                      "POST /rules",
                      "DELETE /rules/{id}",
                      "GET /connections",
                      "GET /counters",
                      "GET /proxies",
                      "POST /proxies",
                      "POST /populate",
                      "GET /proxies/{name}",
                      "POST /proxies/{name}",
                      "DELETE /proxies/{name}",
                      "GET /proxies/{name}/toxics",
                      "POST /proxies/{name}/toxics",
                      "GET /proxies/{name}/toxics/{toxic}",
                      "POST /proxies/{name}/toxics/{toxic}",
                      "DELETE /proxies/{name}/toxics/{toxic}",
                      "POST /reset",
                      "GET /version",
                      "GET /metrics"};
    return JsonReply(200, j);
  }

  Json RuleJson(const FaultEngine::RuleInfo& r) const {
    Json j;
    j["id"] = r.id;
    j["text"] = r.text;
    j["hits"] = r.hits;
    if (r.scope != 0) {
      j["proxy"] = toxiproxy_.ProxyOfScope(r.scope);
      j["toxic"] = toxiproxy_.ToxicOfRule(r.id);
    }
    return j;
  }

  Json RulesJson() const {
    Json out = Json::array();
    for (const auto& r : service_.engine().Rules()) out.push_back(RuleJson(r));
    return out;
  }

  // The body is rule text, one rule a line, as --rules reads it; all or nothing.
  HttpResponse AddRules(const std::string& body) {
    auto rules = ParseRules(body);
    if (!rules.ok()) return ErrorReply(400, rules.status().message());
    if (rules->empty())
      return ErrorReply(400, "no rule in the request body (one rule a line, e.g. \"drop nth=3\")");
    for (size_t i = 0; i < rules->size(); ++i) {
      auto st = service_.CheckRuleCanFire((*rules)[i], absl::StrCat("line ", i + 1, ":"));
      if (!st.ok()) return ErrorReply(400, st.message());
    }
    std::vector<int> ids;
    for (Rule& r : *rules) {
      auto id = service_.engine().AddRule(std::move(r));
      if (!id.ok()) {
        for (int added : ids) service_.engine().RemoveRule(added);
        return ErrorReply(400, id.status().message());
      }
      ids.push_back(*id);
    }
    Json out = Json::array();
    for (const auto& r : service_.engine().Rules()) {
      if (std::find(ids.begin(), ids.end(), r.id) != ids.end()) out.push_back(RuleJson(r));
    }
    Json j;
    j["rules"] = std::move(out);
    return JsonReply(201, j);
  }

  HttpResponse DeleteRule(const std::string& text) {
    int id = 0;
    if (!absl::SimpleAtoi(text, &id))
      return ErrorReply(400, absl::StrCat("rule id \"", text, "\" is not a number"));
    if (!service_.engine().RemoveRule(id))
      return ErrorReply(404, absl::StrCat("no rule with id ", id));
    return NoContent();
  }

  Json ConnectionsJson() const {
    Json out = Json::array();
    for (const ConnectionInfo& c : service_.proxy().Connections()) {
      Json proxy = nullptr;
      if (c.scope != 0) proxy = toxiproxy_.ProxyOfScope(c.scope);
      out.push_back(ConnectionJson(c.id, "tun", std::move(proxy), c));
    }
    for (const auto& c : toxiproxy_.SocketConnections()) {
      out.push_back(ConnectionJson(c.id, "socket", c.proxy, c.info));
    }
    return out;
  }

  // One row of GET /connections.
  static Json ConnectionJson(Json id, const char* kind, Json proxy, const ConnectionInfo& c) {
    return {{"id", std::move(id)},
            {"kind", kind},
            {"proxy", std::move(proxy)},
            {"client", c.client},
            {"front", c.front},
            {"upstream", c.upstream},
            {"client_leg", c.client_leg_state},
            {"server_leg", c.server_leg_state},
            {"bytes_to_server", c.bytes_to_server},
            {"bytes_to_client", c.bytes_to_client}};
  }

  Json CountersJson() const {
    const ProxyStats& s = service_.proxy().stats();
    Json j = {{"connections", s.connections},         {"active", s.active},
              {"refused", s.refused},                 {"unreachable", s.unreachable},
              {"out_of_fds", s.out_of_fds},           {"resets", s.resets},
              {"bytes_to_server", s.bytes_to_server}, {"bytes_to_client", s.bytes_to_client},
              {"datagrams_in", s.datagrams_in},       {"datagrams_out", s.datagrams_out},
              {"not_tcp", s.not_tcp},                 {"bad_datagrams", s.bad_datagrams},
              {"stray_segments", s.stray_segments},   {"held_segments", service_.engine().held()}};
    Json rules = Json::array();
    for (const auto& r : service_.engine().Rules()) {
      Json rj;
      rj["id"] = r.id;
      rj["hits"] = r.hits;
      rules.push_back(std::move(rj));
    }
    j["rules"] = std::move(rules);
    return j;
  }

  std::string WrenchMetrics() const {
    const ProxyStats& s = service_.proxy().stats();
    std::string out;
    auto counter = [&](const char* name, const char* help, uint64_t v) {
      absl::StrAppend(&out, "# HELP ", name, " ", help, "\n# TYPE ", name, " counter\n", name, " ",
                      v, "\n");
    };
    counter("wrench_connections_total", "Connections accepted on the TUN", s.connections);
    counter("wrench_refused_total", "Connections whose upstream refused", s.refused);
    counter("wrench_unreachable_total", "Connections whose upstream did not answer", s.unreachable);
    counter("wrench_out_of_fds_total", "Connections not relayed for want of a file descriptor",
            s.out_of_fds);
    counter("wrench_resets_total", "Connections that ended in a reset", s.resets);
    counter("wrench_stray_segments_total", "Segments for no connection, answered with RST",
            s.stray_segments);
    absl::StrAppend(&out, "# HELP wrench_active_connections Connections open on the TUN now\n",
                    "# TYPE wrench_active_connections gauge\nwrench_active_connections ", s.active,
                    "\n");
    absl::StrAppend(
        &out,
        "# HELP wrench_bytes_total Bytes relayed on the TUN\n# TYPE wrench_bytes_total counter\n",
        "wrench_bytes_total{direction=\"to_server\"} ", s.bytes_to_server, "\n",
        "wrench_bytes_total{direction=\"to_client\"} ", s.bytes_to_client, "\n");
    absl::StrAppend(&out, "# HELP wrench_rule_hits_total Decisions each fault rule made\n",
                    "# TYPE wrench_rule_hits_total counter\n");
    for (const auto& r : service_.engine().Rules()) {
      std::string text;
      for (char c : r.text) {
        if (c == '\\' || c == '"') text.push_back('\\');
        text.push_back(c);
      }
      absl::StrAppend(&out, "wrench_rule_hits_total{id=\"", r.id, "\",rule=\"", text, "\"} ",
                      r.hits, "\n");
    }
    return out;
  }

  ApiHost& service_;
  ToxiproxyCollection toxiproxy_;
  std::unique_ptr<HttpServer> server_;
};

// "HOST:PORT", "[V6]:PORT", ":PORT" (loopback).
absl::StatusOr<tcp::endpoint> ApiEndpoint(const std::string& address) {
  auto hp = SplitHostPort(address, "--api", 0);
  if (!hp.ok()) return hp.status();
  const std::string& host = hp->host;
  const uint16_t p = hp->port;
  if (host.empty())
    return tcp::endpoint(asio::ip::address_v4::loopback(), static_cast<uint16_t>(p));
  auto addr = LookUpHost(host);
  if (!addr.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--api \"", address, "\": cannot resolve \"",
                                                   host, "\": ", addr.status().message()));
  }
  return tcp::endpoint(*addr, static_cast<uint16_t>(p));
}

}  // namespace

absl::StatusOr<std::unique_ptr<ControlApi>> ControlApi::Start(asio::io_context& io,
                                                              const std::string& address,
                                                              ApiHost& service) {
  auto at = ApiEndpoint(address);
  if (!at.ok()) return at.status();
  auto api = std::make_unique<ControlApiImpl>(service);
  if (auto s = api->Listen(io, *at); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("--api: ", s.message()));
  }
  return api;
}

}  // namespace wrench::proxy
