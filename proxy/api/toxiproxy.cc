// Toxiproxy's proxies and toxics over wrench (toxiproxy.h): JSON in and out with
// Toxiproxy's fields, defaults and error texts (its api.go, toxic_collection.go,
// proxy_collection.go), realized as TUN mappings with scoped rules, or kernel-socket
// relays, each with its stream toxics.
#include "proxy/api/toxiproxy.h"

#include <algorithm>
#include <cmath>

#include <boost/asio.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "proxy/api/api_host.h"
#include "proxy/fault/rule.h"
#include "proxy/os/address.h"
#include "proxy/os/dnat.h"
#include "proxy/os/host_lookup.h"
#include "proxy/relay/stream_relay.h"
#include "stack/status_macros.h"

namespace wrench::proxy {

namespace asio = boost::asio;
using asio::ip::tcp;
using Json = ToxiproxyCollection::Json;

int HttpStatusOf(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
      return 400;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
      return 409;
    default:
      return 500;
  }
}

namespace {

// Toxiproxy's error texts (api.go).
constexpr absl::string_view kMissingField = "missing required field";
constexpr absl::string_view kProxyNotFound = "proxy not found";
constexpr absl::string_view kProxyExists = "proxy already exists";
constexpr absl::string_view kInvalidStream =
    "stream was invalid, can be either upstream or downstream";
constexpr absl::string_view kInvalidType = "invalid toxic type";
constexpr absl::string_view kToxicExists = "toxic already exists";
constexpr absl::string_view kToxicNotFound = "toxic not found";

absl::Status BadBody(absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("bad request body: ", why));
}

// nlohmann::json reports a syntax error only by exception; it is caught here.
absl::StatusOr<Json> ParseBody(const std::string& body) {
  if (absl::StripAsciiWhitespace(body).empty()) return BadBody("EOF");  // Go's decoder says EOF
  try {
    return Json::parse(body);
  } catch (const Json::exception& e) {
    return BadBody(e.what());
  }
}

// A request body that must be one JSON object: `what` ("a proxy") names it if not.
absl::StatusOr<Json> ParseObject(const std::string& body, absl::string_view what) {
  auto in = ParseBody(body);
  if (in.ok() && !in->is_object())
    return BadBody(absl::StrCat(what, " must be a JSON object, got ", in->dump()));
  return in;
}

// The attribute `key` of `j`, or nullptr when it is absent or null (left unset).
const Json* Attribute(const Json& j, const char* key) {
  auto it = j.find(key);
  return it == j.end() || it->is_null() ? nullptr : &*it;
}

// Reads the attribute `key` into *out when it is set; `is` tells whether a value has
// the type wanted, which `must_be` names in the bad body's message.
template <typename T>
absl::Status GetAs(const Json& j, const char* key, bool (Json::*is)() const noexcept,
                   absl::string_view must_be, T* out) {
  const Json* v = Attribute(j, key);
  if (!v) return absl::OkStatus();
  if (!(v->*is)())
    return BadBody(absl::StrCat("\"", key, "\" must be ", must_be, ", got ", v->dump()));
  *out = v->get<T>();
  return absl::OkStatus();
}

absl::Status GetString(const Json& j, const char* key, std::string* out) {
  return GetAs(j, key, &Json::is_string, "a string", out);
}

absl::Status GetBool(const Json& j, const char* key, bool* out) {
  return GetAs(j, key, &Json::is_boolean, "true or false", out);
}

absl::Status GetInt(const Json& j, const char* key, int64_t* out) {
  const Json* v = Attribute(j, key);
  if (!v) return absl::OkStatus();
  if (v->is_number_integer()) {
    *out = v->get<int64_t>();
    return absl::OkStatus();
  }
  if (v->is_number_float() && std::floor(v->get<double>()) == v->get<double>() &&
      std::abs(v->get<double>()) < 9e15) {
    *out = static_cast<int64_t>(v->get<double>());
    return absl::OkStatus();
  }
  return BadBody(absl::StrCat("attribute \"", key, "\" must be an integer, got ", v->dump()));
}

Json NumberJson(double v) {
  if (std::floor(v) == v && std::abs(v) < 9e15) return static_cast<int64_t>(v);
  return v;
}

// ---- addresses ----

// A listen host: an IP literal, "" (every address, IPv4 and IPv6: [::], as Go's
// listeners), or a name looked up now (host_lookup.h).
absl::StatusOr<asio::ip::address> Resolve(const std::string& host) {
  if (host.empty()) return asio::ip::address(asio::ip::address_v6::any());
  auto addr = LookUpHost(host);
  if (!addr.ok())
    return absl::InvalidArgumentError(absl::StrCat("lookup ", host, ": ", addr.status().message()));
  return *addr;
}

// Whether two listen addresses are the same socket address: "localhost:26379" is
// "127.0.0.1:26379", so populating or updating with it restarts nothing (as 2.12).
bool SameListen(const std::string& a, const std::string& b) {
  if (a == b) return true;
  auto x = SplitHostPort(a, "address", 0), y = SplitHostPort(b, "address", 0);
  if (!x.ok() || !y.ok() || x->port != y->port || x->port == 0) return false;
  auto xa = Resolve(x->host), ya = Resolve(y->host);
  return xa.ok() && ya.ok() && *xa == *ya;
}

// Whether this host has IPv6 sockets (not so with ipv6.disable=1 on the kernel's
// command line): a proxy without a listen address listens on [::] only then.
bool Ipv6Available() {
  asio::io_context io;
  tcp::acceptor probe(io);
  boost::system::error_code ec;
  probe.open(tcp::v6(), ec);
  return !ec;
}

// ---- toxic types ----

constexpr absl::string_view kSegmentActions[] = {"drop", "delay", "dup",     "reorder",  "rst",
                                                 "set",  "add",   "corrupt", "blackhole"};
constexpr absl::string_view kMatcherKeys[] = {"on",  "conn", "port",  "state", "flags", "has",
                                              "len", "nth",  "every", "after", "count", "p"};

bool IsSegmentType(absl::string_view type) {
  if (type == "segment") return true;
  if (!absl::ConsumePrefix(&type, "segment_")) return false;
  return std::find(std::begin(kSegmentActions), std::end(kSegmentActions), type) !=
         std::end(kSegmentActions);
}

std::string ValueText(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  return v.dump();
}

// A duration attribute: a number is milliseconds (Toxiproxy's unit), a string is
// wrench's duration ("250ms", "1.5s").
std::string DurationText(const Json& v) {
  return v.is_number() ? absl::StrCat(v.dump(), "ms") : ValueText(v);
}

// The rule texts a segment toxic's attributes stand for: "segment" takes whole rules
// ("rule", or "rules" as a list or lines); segment_ACTION builds one from the action's
// arguments and the matchers.
absl::StatusOr<std::vector<std::string>> SegmentRuleTexts(absl::string_view type,
                                                          const Json& attrs) {
  std::vector<std::string> texts;
  if (type == "segment") {
    for (const auto& item : attrs.items()) {
      const std::string key = item.key();
      const Json& value = item.value();
      if (key != "rule" && key != "rules") {
        return BadBody(absl::StrCat("unknown attribute \"", key,
                                    "\" for segment; it takes \"rule\" (or \"rules\")"));
      }
      auto add = [&](const Json& v) -> absl::Status {
        if (!v.is_string())
          return BadBody(absl::StrCat("\"", key, "\" must be rule text, got ", v.dump()));
        for (absl::string_view line : absl::StrSplit(v.get<std::string>(), '\n')) {
          line = absl::StripAsciiWhitespace(line);
          if (!line.empty() && line[0] != '#') texts.emplace_back(line);
        }
        return absl::OkStatus();
      };
      if (value.is_array()) {
        for (const Json& v : value) {
          if (auto s = add(v); !s.ok()) return s;
        }
      } else if (auto s = add(value); !s.ok()) {
        return s;
      }
    }
    if (texts.empty()) {
      return BadBody(
          "a segment toxic needs attributes {\"rule\": \"...\"}, e.g. \"drop flags=SYN+ACK "
          "nth=1\"");
    }
    return texts;
  }
  const std::string action(type.substr(std::string_view("segment_").size()));
  std::string text = action;
  std::vector<std::string> args;
  auto take = [&](const char* key) { return Attribute(attrs, key); };
  if (action == "delay") {
    const Json* d = take("delay");
    if (!d)
      return BadBody(
          "segment_delay needs attribute \"delay\" (milliseconds, or a duration such as "
          "\"250ms\")");
    absl::StrAppend(&text, " ", DurationText(*d));
    if (const Json* j = take("jitter")) absl::StrAppend(&text, "~", DurationText(*j));
  } else if (action == "dup") {
    if (const Json* n = take("copies")) absl::StrAppend(&text, " ", ValueText(*n));
  } else if (action == "set" || action == "add") {
    const Json* f = take("field");
    const Json* v = take("value");
    if (!f || !v)
      return BadBody(absl::StrCat("segment_", action, " needs attributes \"field\" and \"value\""));
    absl::StrAppend(&text, " ", ValueText(*f), "=", ValueText(*v));
  } else if (action == "corrupt") {
    const Json* t = take("target");
    absl::StrAppend(&text, " ", t ? ValueText(*t) : "payload");
  }
  for (const auto& [key, value] : attrs.items()) {
    const bool matcher =
        std::find(std::begin(kMatcherKeys), std::end(kMatcherKeys), key) != std::end(kMatcherKeys);
    const bool argument =
        (action == "delay" && (key == "delay" || key == "jitter")) ||
        (action == "dup" && key == "copies") ||
        ((action == "set" || action == "add") && (key == "field" || key == "value")) ||
        (action == "corrupt" && key == "target");
    if (argument || value.is_null()) continue;
    if (!matcher) {
      return BadBody(absl::StrCat("unknown attribute \"", key, "\" for segment_", action,
                                  "; matchers are ", absl::StrJoin(kMatcherKeys, ", ")));
    }
    std::string v = ValueText(value);
    if (key == "len" && !v.empty() && (v[0] == '<' || v[0] == '>' || v[0] == '=')) {
      absl::StrAppend(&text, " len", v);
    } else {
      absl::StrAppend(&text, " ", key, "=", v);
    }
  }
  texts.push_back(std::move(text));
  return texts;
}

}  // namespace

// ---------------------------------------------------------------------------

struct ToxiproxyCollection::Toxic {
  std::string name, type, stream;
  double toxicity = 1.0;
  Json attributes = Json::object();
  bool segment = false;
  std::vector<Rule> rules;    // segment: as applied (hooks from the stream, p from toxicity)
  std::vector<int> rule_ids;  // their engine ids
  StreamToxic stream_toxic;   // stream toxics
  uint64_t id = 0;            // ToxicChain::Entry::id
};

struct ToxiproxyCollection::Proxy {
  std::string name, listen, upstream;
  bool enabled = false;
  uint64_t scope = 0;
  bool tun = false;  // listen is inside the TUN subnet
  // Another listen address, served by `relay`; with `dnat`, nftables also steers
  // connections arriving for dnat_listen:dnat_port (0.0.0.0: any but loopback) to the
  // TUN front dnat_front, which carries this proxy's scope. Without it, `no_segments`
  // says why segment toxics cannot act.
  bool dnat = false;
  std::vector<stack::IpAddress> dnat_listen;  // [::]: 0.0.0.0 and ::, one per IP version
  uint16_t dnat_port = 0;
  std::string dnat_front;
  std::string no_segments;
  std::shared_ptr<ToxicChain> up = std::make_shared<ToxicChain>();
  std::shared_ptr<ToxicChain> down = std::make_shared<ToxicChain>();
  std::vector<std::unique_ptr<Toxic>> toxics;  // in the order added
  std::unique_ptr<StreamRelay> relay;
};

ToxiproxyCollection::ToxiproxyCollection(ApiHost& service)
    : service_(service),
      rng_(std::make_shared<std::mt19937_64>(service.seed() * 0x9e3779b97f4a7c15ULL + 0x70c1c)) {}

ToxiproxyCollection::~ToxiproxyCollection() {
  for (auto& [name, p] : proxies_) {
    if (p->relay) p->relay->Stop();
  }
}

ToxiproxyCollection::Proxy* ToxiproxyCollection::Find(const std::string& name) const {
  auto it = proxies_.find(name);
  return it == proxies_.end() ? nullptr : it->second.get();
}

absl::StatusOr<ToxiproxyCollection::Proxy*> ToxiproxyCollection::Lookup(
    const std::string& name) const {
  Proxy* p = Find(name);
  if (!p) return absl::NotFoundError(kProxyNotFound);
  return p;
}

Json ToxiproxyCollection::ToxicJson(const Toxic& t) const {
  return {{"attributes", t.attributes},
          {"name", t.name},
          {"type", t.type},
          {"stream", t.stream},
          {"toxicity", NumberJson(t.toxicity)}};
}

Json ToxiproxyCollection::ProxyJson(const Proxy& p) const {
  // Toxiproxy lists the upstream chain, then the downstream one.
  Json toxics = Json::array();
  for (const char* stream : {"upstream", "downstream"}) {
    for (const auto& t : p.toxics) {
      if (t->stream == stream) toxics.push_back(ToxicJson(*t));
    }
  }
  return {{"name", p.name},
          {"listen", p.listen},
          {"upstream", p.upstream},
          {"enabled", p.enabled},
          {"toxics", std::move(toxics)}};
}

// ---- starting and stopping ----

absl::Status ToxiproxyCollection::Start(Proxy& p) {
  if (p.enabled) return absl::OkStatus();
  auto listen = SplitHostPort(p.listen, "address", 0);
  if (!listen.ok())
    return absl::UnavailableError(absl::StrCat("listen tcp: ", listen.status().message()));
  auto listen_addr = Resolve(listen->host);
  if (!listen_addr.ok())
    return absl::UnavailableError(absl::StrCat("listen tcp: ", listen_addr.status().message()));
  auto up = SplitHostPort(p.upstream, "address", 0);
  if (!up.ok() || up->port == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("upstream ", p.upstream, ": ",
                     up.ok() ? "port 0 is not a server's port" : up.status().message()));
  }
  // An upstream name is looked up per connection (as Toxiproxy dials it), so a name
  // that does not resolve yet (a container still starting) is accepted.
  std::optional<asio::ip::address> up_addr = LiteralHost(up->host);
  if (*listen_addr == asio::ip::address(asio::ip::address_v6::any()) && !Ipv6Available()) {
    listen_addr = asio::ip::address(asio::ip::address_v4::any());
    service_.Log(absl::StrCat("wrench: proxy ", p.name,
                              ": IPv6 is unavailable on this host, so it listens on 0.0.0.0"
                              " (IPv4) instead of [::]"));
  }
  auto factory = [upc = p.up, downc = p.down, rng = rng_](stack::Instant now) {
    return std::make_unique<ConnectionToxics>(upc, downc, rng, now);
  };
  p.tun = service_.InTunSubnet(ToIpAddress(*listen_addr));
  if (p.tun) {
    Mapping m;
    m.front_addr = ToIpAddress(*listen_addr);
    m.upstream_host = up->host;
    if (up_addr) m.upstream_addr = ToIpAddress(*up_addr);
    m.resolve_per_connection = !up_addr;
    m.upstream_port = up->port;
    m.scope = p.scope;
    m.toxics = factory;
    // Port 0 picks one, as the kernel would for a socket.
    uint16_t port = listen->port;
    for (uint32_t candidate = listen->port == 0 ? 10000 : listen->port; candidate <= 65535;
         ++candidate) {
      port = static_cast<uint16_t>(candidate);
      m.front_port = port;
      m.text = absl::StrCat(FormatHostPort(*listen_addr, port), "=", p.upstream, " (proxy ", p.name,
                            ")");
      absl::Status st =
          service_.AddMapping(m, absl::StrCat("listen ", FormatHostPort(*listen_addr, port)));
      if (st.ok()) break;
      if (!absl::IsAlreadyExists(st) || listen->port != 0) {
        // Go's wording for a busy address, which Toxiproxy returns.
        if (absl::IsAlreadyExists(st)) {
          return absl::UnavailableError(absl::StrCat(
              "listen tcp ", FormatHostPort(*listen_addr, port), ": bind: address already in use"));
        }
        return absl::UnavailableError(st.message());
      }
    }
    p.listen = FormatHostPort(*listen_addr, port);
  } else {
    auto relay = StreamRelay::Start(
        service_.io(), tcp::endpoint(*listen_addr, listen->port), {up->host, up->port}, factory,
        [this, name = p.name](const std::string& line) {
          service_.Log(absl::StrCat("wrench: proxy ", name, ": ", line));
        });
    if (!relay.ok()) return relay.status();
    p.relay = std::move(*relay);
    auto bound = p.relay->local_endpoint();
    p.listen = FormatHostPort(bound.address(), bound.port());
    Mapping m;
    m.upstream_host = up->host;
    if (up_addr) m.upstream_addr = ToIpAddress(*up_addr);
    m.resolve_per_connection = !up_addr;
    m.upstream_port = up->port;
    m.toxics = factory;
    StartDnat(p, bound.address(), bound.port(), m);
  }
  p.enabled = true;
  return absl::OkStatus();
}

namespace {

// Why connections to `listen` cannot be steered into the TUN; empty when they can be.
std::string WhyNoDnat(const asio::ip::address& listen, bool tun_has_v6) {
  if (listen.is_loopback()) {
    return "connections to loopback cannot be steered into the TUN (the kernel drops a packet from "
           "127.0.0.0/8 "
           "that leaves through another device), so the kernel terminates them";
  }
  if (listen.is_v6() && !listen.is_unspecified() && !tun_has_v6) {
    return "the TUN is IPv4 only (--net6 none, or no IPv6 in its namespace), so connections to an "
           "IPv6 address "
           "stay with the kernel, which terminates them";
  }
  if (listen.is_v6() && listen.to_v6().is_link_local()) {
    return "connections to a link-local address cannot be steered into the TUN (their replies "
           "could not leave "
           "through it), so the kernel terminates them";
  }
  return "";
}

}  // namespace

void ToxiproxyCollection::StartDnat(Proxy& p, const asio::ip::address& listen, uint16_t port,
                                    const Mapping& upstream) {
  const std::optional<stack::IpAddress> front6 = service_.DnatFront6();
  p.no_segments = WhyNoDnat(listen, front6.has_value());
  if (!p.no_segments.empty()) return;
  auto dnat = service_.dnat();
  if (!dnat.ok()) {
    p.no_segments = absl::StrCat("DNAT into the TUN is unavailable (", dnat.status().message(),
                                 "), so the kernel terminates the connections");
    return;
  }
  // The addresses the rules match, one per IP version steered: 0.0.0.0 for 0.0.0.0,
  // 0.0.0.0 and :: for [::] (a dual-stack socket), or the one address.
  std::vector<stack::IpAddress> matches;
  if (listen.is_unspecified()) {
    matches.push_back(stack::IpAddress::V4(0));
    if (listen.is_v6() && front6 && (*dnat)->ipv6().ok())
      matches.push_back(stack::IpAddress::V6({}));
  } else {
    matches.push_back(ToIpAddress(listen));
  }
  absl::Status st;
  std::vector<std::string> fronts;
  for (const stack::IpAddress& match : matches) {
    Mapping m = upstream;
    m.front_addr = match.is_v6() ? *front6 : service_.DnatFront();
    m.scope = p.scope;
    st = absl::ResourceExhaustedError("no free port on the DNAT front");
    // The listen port on the front if free (another proxy may hold it), else the next.
    for (uint32_t candidate = port, tries = 0; candidate <= 65535 && tries < 1000;
         ++candidate, ++tries) {
      m.front_port = static_cast<uint16_t>(candidate);
      m.text = absl::StrCat(p.listen, " via ", FormatHostPort(m.front_addr, m.front_port), "=",
                            p.upstream, " (proxy ", p.name, ")");
      st = service_.AddMapping(m, absl::StrCat("DNAT front of ", p.listen));
      if (!absl::IsAlreadyExists(st)) break;
    }
    if (st.ok()) st = (*dnat)->Add(match, port, m.front_addr, m.front_port);
    if (!st.ok()) break;
    p.dnat_listen.push_back(match);
    fronts.push_back(FormatHostPort(m.front_addr, m.front_port));
  }
  if (!st.ok()) {
    for (const stack::IpAddress& match : p.dnat_listen) (void)(*dnat)->Remove(match, port);
    p.dnat_listen.clear();
    service_.RemoveMapping(p.scope);
    p.no_segments = absl::StrCat("DNAT into the TUN failed (", st.message(),
                                 "), so the kernel terminates them");
    service_.Log(
        absl::StrCat("wrench: proxy ", p.name, ": ", p.no_segments, "; stream toxics only"));
    return;
  }
  p.dnat = true;
  p.dnat_port = port;
  p.dnat_front = absl::StrJoin(fronts, ", ");
  service_.Log(absl::StrCat("wrench: proxy ", p.name, ": connections to ", p.listen,
                            listen.is_unspecified() ? " (but loopback's)" : "", " are DNATed to ",
                            p.dnat_front, " in the TUN"));
}

void ToxiproxyCollection::Stop(Proxy& p) {
  if (!p.enabled) return;
  p.enabled = false;
  if (p.tun) {
    service_.RemoveMapping(p.scope);
  } else if (p.relay) {
    p.relay->Stop();
    p.relay.reset();
  }
  if (p.dnat) {
    p.dnat = false;
    if (auto d = service_.dnat(); d.ok()) {
      for (const stack::IpAddress& listen : p.dnat_listen) {
        if (auto st = (*d)->Remove(listen, p.dnat_port); !st.ok()) {
          service_.Log(absl::StrCat("wrench: proxy ", p.name, ": ", st.message()));
        }
      }
      p.dnat_listen.clear();
    }
    service_.RemoveMapping(p.scope);
  }
}

void ToxiproxyCollection::Touch(Proxy& p) {
  if (!p.enabled) return;
  if (p.tun || p.dnat) service_.proxy().Refresh(p.scope);
  if (p.relay) p.relay->Refresh();
}

// ---- proxies ----

Json ToxiproxyCollection::Proxies() const {
  Json j = Json::object();
  for (const auto& [name, p] : proxies_) j[name] = ProxyJson(*p);
  return j;
}

absl::StatusOr<std::unique_ptr<ToxiproxyCollection::Proxy>> ToxiproxyCollection::MakeProxy(
    const Json& in, bool enabled_default) {
  if (!in.is_object())
    return BadBody(absl::StrCat("a proxy must be a JSON object, got ", in.dump()));
  auto p = std::make_unique<Proxy>();
  p->enabled = enabled_default;
  if (auto s = GetString(in, "name", &p->name); !s.ok()) return s;
  if (auto s = GetString(in, "listen", &p->listen); !s.ok()) return s;
  if (auto s = GetString(in, "upstream", &p->upstream); !s.ok()) return s;
  if (auto s = GetBool(in, "enabled", &p->enabled); !s.ok()) return s;
  if (p->listen.empty()) p->listen = ":0";  // Go listens on every address, a port it picks
  return p;
}

absl::StatusOr<Json> ToxiproxyCollection::CreateProxy(const std::string& body) {
  auto in = ParseBody(body);
  if (!in.ok()) return in.status();
  auto made = MakeProxy(*in, true);
  if (!made.ok()) return made.status();
  std::unique_ptr<Proxy> p = std::move(*made);
  if (p->name.empty()) return absl::InvalidArgumentError(absl::StrCat(kMissingField, ": name"));
  if (p->upstream.empty())
    return absl::InvalidArgumentError(absl::StrCat(kMissingField, ": upstream"));
  if (Find(p->name)) return absl::AlreadyExistsError(kProxyExists);
  p->scope = ++next_scope_;
  const bool start = p->enabled;
  p->enabled = false;
  if (start) {
    if (auto s = Start(*p); !s.ok()) return s;
  }
  Json out = ProxyJson(*p);
  proxies_[p->name] = std::move(p);
  return out;
}

absl::StatusOr<Json> ToxiproxyCollection::Populate(const std::string& body) {
  auto in = ParseBody(body);
  if (!in.ok()) return in.status();
  if (!in->is_array())
    return BadBody(absl::StrCat("expected a JSON array of proxies, got ", in->dump()));
  // First check the whole request, then change anything (as Toxiproxy 2.12).
  std::vector<std::unique_ptr<Proxy>> wanted;
  for (size_t i = 0; i < in->size(); ++i) {
    auto made = MakeProxy((*in)[i], true);
    if (!made.ok()) return made.status();
    if ((*made)->name.empty())
      return absl::InvalidArgumentError(absl::StrCat(kMissingField, ": name at proxy ", i + 1));
    if ((*made)->upstream.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(kMissingField, ": upstream at proxy ", i + 1));
    }
    for (const auto& w : wanted) {
      if (w->name == (*made)->name) {
        return absl::InvalidArgumentError(absl::StrCat("duplicate proxy name \"", w->name, "\""));
      }
    }
    wanted.push_back(std::move(*made));
  }
  Json out = Json::array();
  for (auto& w : wanted) {
    Proxy* existing = Find(w->name);
    if (existing && SameListen(existing->listen, w->listen) && existing->upstream == w->upstream) {
      out.push_back(ProxyJson(*existing));
      continue;
    }
    if (existing) {
      if (auto s = DeleteProxy(existing->name); !s.ok()) return s;
    }
    w->scope = ++next_scope_;
    const bool start = w->enabled;
    w->enabled = false;
    if (start) {
      if (auto s = Start(*w); !s.ok()) return s;
    }
    out.push_back(ProxyJson(*w));
    proxies_[w->name] = std::move(w);
  }
  Json j;
  j["proxies"] = std::move(out);
  return j;
}

absl::StatusOr<Json> ToxiproxyCollection::GetProxy(const std::string& name) const {
  ASSIGN_OR_RETURN(Proxy* p, Lookup(name));
  return ProxyJson(*p);
}

absl::StatusOr<Json> ToxiproxyCollection::UpdateProxy(const std::string& name,
                                                      const std::string& body) {
  ASSIGN_OR_RETURN(Proxy* p, Lookup(name));
  ASSIGN_OR_RETURN(const Json in, ParseObject(body, "a proxy"));
  // Unset fields keep their values (Toxiproxy decodes over the current proxy).
  std::string listen = p->listen, upstream = p->upstream;
  bool enabled = p->enabled;
  if (auto s = GetString(in, "listen", &listen); !s.ok()) return s;
  if (auto s = GetString(in, "upstream", &upstream); !s.ok()) return s;
  if (auto s = GetBool(in, "enabled", &enabled); !s.ok()) return s;
  if (!SameListen(listen, p->listen) || upstream != p->upstream) {
    Stop(*p);
    p->listen = listen;
    p->upstream = upstream;
  }
  if (enabled && !p->enabled) {
    if (auto s = Start(*p); !s.ok()) return s;
  } else if (!enabled) {
    Stop(*p);
  }
  return ProxyJson(*p);
}

absl::Status ToxiproxyCollection::DeleteProxy(const std::string& name) {
  ASSIGN_OR_RETURN(Proxy* p, Lookup(name));
  Stop(*p);
  for (auto& t : p->toxics) UnapplyToxic(*p, *t);
  proxies_.erase(name);
  return absl::OkStatus();
}

absl::Status ToxiproxyCollection::Reset() {
  for (auto& [name, p] : proxies_) {
    for (auto& t : p->toxics) UnapplyToxic(*p, *t);
    p->toxics.clear();
    Touch(*p);
    if (auto s = Start(*p); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// ---- toxics ----

absl::Status ToxiproxyCollection::ApplyToxic(Proxy& p, Toxic& t) {
  if (!t.segment) {
    ToxicChain& chain = t.stream == "upstream" ? *p.up : *p.down;
    auto it = std::find_if(chain.entries.begin(), chain.entries.end(),
                           [&](const ToxicChain::Entry& e) { return e.id == t.id; });
    if (it == chain.entries.end()) {
      chain.entries.push_back({t.id, t.stream_toxic});
    } else {
      it->toxic = t.stream_toxic;  // an update keeps its place and its state
    }
    ++chain.version;
    return absl::OkStatus();
  }
  for (const Rule& r : t.rules) {
    auto id = service_.engine().AddRule(r, p.scope);
    if (!id.ok()) {
      for (int added : t.rule_ids) service_.engine().RemoveRule(added);
      t.rule_ids.clear();
      return BadBody(id.status().message());
    }
    t.rule_ids.push_back(*id);
  }
  return absl::OkStatus();
}

void ToxiproxyCollection::UnapplyToxic(Proxy& p, Toxic& t) {
  if (!t.segment) {
    ToxicChain& chain = t.stream == "upstream" ? *p.up : *p.down;
    chain.entries.erase(std::remove_if(chain.entries.begin(), chain.entries.end(),
                                       [&](const ToxicChain::Entry& e) { return e.id == t.id; }),
                        chain.entries.end());
    ++chain.version;
    return;
  }
  for (int id : t.rule_ids) service_.engine().RemoveRule(id);
  t.rule_ids.clear();
}

namespace {

// Fills a toxic's realization from its type, stream, toxicity and attributes.
absl::Status BuildToxic(ToxiproxyCollection::Json attrs, absl::string_view type,
                        absl::string_view stream, double toxicity, bool segments,
                        absl::string_view no_segments, absl::string_view proxy_listen,
                        const ApiHost& service, bool* segment, std::vector<Rule>* rules,
                        StreamToxic* stream_toxic, Json* shown) {
  if (!attrs.is_object())
    return BadBody(absl::StrCat("\"attributes\" must be an object, got ", attrs.dump()));
  if (!(toxicity >= 0 && toxicity <= 1))
    return BadBody(absl::StrCat("toxicity must be from 0 to 1, got ", toxicity));
  if (const ToxicType* st = FindStreamToxicType(type)) {
    StreamToxic t;
    t.type = st;
    t.toxicity = toxicity;
    t.values.assign(st->attributes.size(), 0);
    Json out = Json::object();
    for (size_t i = 0; i < st->attributes.size(); ++i) {
      const std::string attr(st->attributes[i]);
      if (auto s = GetInt(attrs, attr.c_str(), &t.values[i]); !s.ok()) return s;
      out[attr] = t.values[i];
    }
    if (auto s = ValidateStreamToxic(t); !s.ok()) return BadBody(s.message());
    *segment = false;
    *stream_toxic = t;
    *shown = std::move(out);
    return absl::OkStatus();
  }
  // A segment toxic: wrench rules, scoped to this proxy.
  if (!segments) {
    return BadBody(
        absl::StrCat(type,
                     " acts on TCP segments, which wrench sees only on connections it terminates "
                     "itself: a listen address "
                     "inside wrench's TUN subnet ",
                     service.TunSubnet(), " (for example ",
                     stack::IpAddress::V4(service.kernel_address().v4_host_order() + 1).ToString(),
                     ":PORT), or a non-loopback address of this host or 0.0.0.0:PORT, whose "
                     "connections wrench DNATs into the "
                     "TUN (nftables, root or CAP_NET_ADMIN); this proxy listens on ",
                     proxy_listen, ": ",
                     no_segments.empty() ? "the kernel terminates its connections" : no_segments));
  }
  auto texts = SegmentRuleTexts(type, attrs);
  if (!texts.ok()) return texts.status();
  const bool upstream = stream == "upstream";
  const HookSet want = upstream ? HookSet::Of(Hook::kFromClient).with(Hook::kToServer)
                                : HookSet::Of(Hook::kToClient).with(Hook::kFromServer);
  // One toxic acts in one place: on the client's leg, the stream's segments as the
  // client sends or receives them. That leg is wrench's own TCP on every kind of
  // proxy, so every action works there; with the server leg too, a segment_delay on
  // the SYN-ACK would hold both the upstream connect and the client's SYN-ACK, twice
  // the delay asked for.
  const HookSet client_leg = HookSet::Of(upstream ? Hook::kFromClient : Hook::kToClient);
  rules->clear();
  int n = 0;
  for (const std::string& text : *texts) {
    auto r = ParseRule(text, ++n);
    if (!r.ok()) return BadBody(absl::StrCat("rule \"", text, "\": ", r.status().message()));
    if (r->hooks == HookSet::All()) {
      r->hooks = client_leg;
    } else if ((r->hooks.bits() & ~want.bits()) != 0) {
      return BadBody(absl::StrCat("rule \"", text, "\": on=", r->hooks.ToString(),
                                  " is not on the ", stream, " stream (",
                                  upstream ? "client to server: from-client, to-server"
                                           : "server to client: to-client, from-server",
                                  "); use stream ", upstream ? "downstream" : "upstream"));
    }
    if (auto st = service.CheckRuleCanFire(*r, "rule"); !st.ok()) return BadBody(st.message());
    if (toxicity < 1) r->probability = r->probability.value_or(1.0) * toxicity;
    rules->push_back(*r);
  }
  *segment = true;
  *shown = std::move(attrs);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Json> ToxiproxyCollection::Toxics(const std::string& proxy) const {
  ASSIGN_OR_RETURN(Proxy* p, Lookup(proxy));
  return ProxyJson(*p)["toxics"];
}

absl::StatusOr<Json> ToxiproxyCollection::CreateToxic(const std::string& proxy,
                                                      const std::string& body) {
  ASSIGN_OR_RETURN(Proxy* p, Lookup(proxy));
  ASSIGN_OR_RETURN(const Json in, ParseObject(body, "a toxic"));
  auto t = std::make_unique<Toxic>();
  t->stream = "downstream";  // Toxiproxy's defaults: downstream, toxicity 1
  if (auto s = GetString(in, "name", &t->name); !s.ok()) return s;
  if (auto s = GetString(in, "type", &t->type); !s.ok()) return s;
  if (auto s = GetString(in, "stream", &t->stream); !s.ok()) return s;
  if (auto s = GetAs(in, "toxicity", &Json::is_number, "a number", &t->toxicity); !s.ok())
    return s;
  t->stream = absl::AsciiStrToLower(t->stream);
  if (t->stream != "upstream" && t->stream != "downstream")
    return absl::InvalidArgumentError(kInvalidStream);
  if (t->name.empty()) t->name = absl::StrCat(t->type, "_", t->stream);
  if (!FindStreamToxicType(t->type) && !IsSegmentType(t->type))
    return absl::InvalidArgumentError(kInvalidType);
  for (const auto& other : p->toxics) {
    if (other->name == t->name) return absl::AlreadyExistsError(kToxicExists);
  }
  Json attrs = Json::object();
  if (const Json* a = Attribute(in, "attributes")) attrs = *a;
  if (auto s =
          BuildToxic(attrs, t->type, t->stream, t->toxicity, p->tun || p->dnat, p->no_segments,
                     p->listen, service_, &t->segment, &t->rules, &t->stream_toxic, &t->attributes);
      !s.ok()) {
    return s;
  }
  t->id = ++next_toxic_id_;
  if (auto s = ApplyToxic(*p, *t); !s.ok()) return s;
  Json out = ToxicJson(*t);
  p->toxics.push_back(std::move(t));
  Touch(*p);
  return out;
}

absl::StatusOr<Json> ToxiproxyCollection::GetToxic(const std::string& proxy,
                                                   const std::string& toxic) const {
  ASSIGN_OR_RETURN(Proxy* p, Lookup(proxy));
  for (const auto& t : p->toxics) {
    if (t->name == toxic) return ToxicJson(*t);
  }
  return absl::NotFoundError(kToxicNotFound);
}

absl::StatusOr<Json> ToxiproxyCollection::UpdateToxic(const std::string& proxy,
                                                      const std::string& toxic,
                                                      const std::string& body) {
  ASSIGN_OR_RETURN(Proxy* p, Lookup(proxy));
  auto found = std::find_if(p->toxics.begin(), p->toxics.end(),
                            [&](const auto& t) { return t->name == toxic; });
  if (found == p->toxics.end()) return absl::NotFoundError(kToxicNotFound);
  Toxic& t = **found;
  ASSIGN_OR_RETURN(const Json in, ParseObject(body, "a toxic"));
  // Given attributes replace the current ones one by one (Toxiproxy decodes over a copy).
  Json attrs = t.attributes;
  if (const Json* a = Attribute(in, "attributes")) {
    if (!a->is_object())
      return BadBody(absl::StrCat("\"attributes\" must be an object, got ", a->dump()));
    for (const auto& [k, v] : a->items()) attrs[k] = v;
  }
  double toxicity = t.toxicity;
  if (auto s = GetAs(in, "toxicity", &Json::is_number, "a number", &toxicity); !s.ok()) return s;
  Toxic next = t;
  next.toxicity = toxicity;
  next.rule_ids.clear();
  if (auto s = BuildToxic(attrs, t.type, t.stream, toxicity, p->tun || p->dnat, p->no_segments,
                          p->listen, service_, &next.segment, &next.rules, &next.stream_toxic,
                          &next.attributes);
      !s.ok()) {
    return s;
  }
  if (t.segment) UnapplyToxic(*p, t);  // stream toxics are updated in place
  if (auto s = ApplyToxic(*p, next); !s.ok()) {
    (void)ApplyToxic(*p, t);  // put the old rules back
    return s;
  }
  t = std::move(next);
  Touch(*p);
  return ToxicJson(t);
}

absl::Status ToxiproxyCollection::DeleteToxic(const std::string& proxy, const std::string& toxic) {
  ASSIGN_OR_RETURN(Proxy* p, Lookup(proxy));
  auto found = std::find_if(p->toxics.begin(), p->toxics.end(),
                            [&](const auto& t) { return t->name == toxic; });
  if (found == p->toxics.end()) return absl::NotFoundError(kToxicNotFound);
  UnapplyToxic(*p, **found);
  p->toxics.erase(found);
  Touch(*p);
  return absl::OkStatus();
}

// ---- observation ----

std::string ToxiproxyCollection::Metrics() const {
  std::string out;
  auto escape = [](const std::string& s) {
    std::string e;
    for (char c : s) {
      if (c == '\\' || c == '"') e.push_back('\\');
      if (c == '\n') {
        e += "\\n";
        continue;
      }
      e.push_back(c);
    }
    return e;
  };
  for (const char* metric : {"received", "sent"}) {
    absl::StrAppend(&out, "# HELP toxiproxy_proxy_", metric, "_bytes_total Bytes ", metric,
                    metric == std::string("received") ? " from the source" : " to the destination",
                    " of each proxy and direction\n# TYPE toxiproxy_proxy_", metric,
                    "_bytes_total counter\n");
    for (const auto& [name, p] : proxies_) {
      uint64_t up = 0, down = 0;
      if (p->tun || p->dnat) {
        // The TUN relay counts what it handed to each side.
        auto bytes = service_.proxy().ScopeBytes(p->scope);
        up = bytes.first;
        down = bytes.second;
      }
      if (p->relay) {
        const auto& s = p->relay->stats();
        up += metric == std::string("received") ? s.received_up : s.sent_up;
        down += metric == std::string("received") ? s.received_down : s.sent_down;
      }
      for (const char* dir : {"upstream", "downstream"}) {
        absl::StrAppend(&out, "toxiproxy_proxy_", metric, "_bytes_total{direction=\"", dir,
                        "\",listener=\"", escape(p->listen), "\",proxy=\"", escape(name),
                        "\",upstream=\"", escape(p->upstream), "\"} ",
                        dir == std::string("upstream") ? up : down, "\n");
      }
    }
  }
  return out;
}

std::string ToxiproxyCollection::ProxyOfScope(uint64_t scope) const {
  for (const auto& [name, p] : proxies_) {
    if (p->scope == scope) return name;
  }
  return "";
}

std::string ToxiproxyCollection::ToxicOfRule(int rule_id) const {
  for (const auto& [name, p] : proxies_) {
    for (const auto& t : p->toxics) {
      if (std::find(t->rule_ids.begin(), t->rule_ids.end(), rule_id) != t->rule_ids.end())
        return t->name;
    }
  }
  return "";
}

std::vector<ToxiproxyCollection::SocketConnection> ToxiproxyCollection::SocketConnections() const {
  std::vector<SocketConnection> out;
  for (const auto& [name, p] : proxies_) {
    if (!p->relay) continue;
    for (const auto& c : p->relay->Connections()) {
      // The kernel holds both legs: one state says where the relay stands.
      ConnectionInfo i{.client = c.client, .front = p->listen, .upstream = c.upstream,
                       .client_leg_state = c.state, .server_leg_state = c.state,
                       .bytes_to_server = c.bytes_to_server, .bytes_to_client = c.bytes_to_client};
      out.push_back({absl::StrCat(name, "/", c.id), name, std::move(i)});
    }
  }
  return out;
}

}  // namespace wrench::proxy
